/**
 * The data plane across three hosts (issue 7): network namespaces joined by
 * a bridge (createTestNet), the key server and the camera (sender) on host
 * a, display-1 and display-2 (receivers) on hosts b and c, each a child
 * process inside its namespace (dataplane-node.ts) running GcksService or
 * GmService + the member's group channel on real sockets, multicast routed
 * out of eth0. The receivers get every datagram of a steady stream through
 * two TEK rekeys and one KEK rekey, exactly once; after display-2 is
 * excluded it decrypts nothing new while display-1 carries on
 * (dataplane-scenario.ts has the steps and assertions).
 *
 * Needs root and `ip netns`: skipped loudly without them, a failure in CI.
 */
import { randomInt } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { createTestNet, netnsUnavailable, type TestNet } from '../interop/harness/netns.ts';
import { runDataplaneScenario, type NodeProcess } from './fixtures/dataplane-scenario.ts';

const skip = netnsUnavailable();
const children: NodeProcess[] = [];
let net: TestNet | undefined;
after(async () => {
  await Promise.all(children.map((c) => c.stop()));
  net?.destroy();
});

describe('data plane between three hosts in network namespaces', { skip }, () => {
  it('key server + sender on a, receivers on b and c: every datagram through two TEK rekeys and a KEK rekey; the excluded receiver goes dark', { timeout: 60_000 }, async () => {
    net = createTestNet({ hosts: ['a', 'b', 'c'] });
    const a = net.host('a');
    const b = net.host('b');
    const c = net.host('c');
    const report = await runDataplaneScenario(
      {
        keyServer: a,
        camera: a,
        display1: b,
        display2: c,
        rekeyGroup: '239.0.0.1',
        rekeyPort: 848,
        dataGroup: `239.1.${randomInt(0, 255)}.${randomInt(1, 255)}`,
        dataPort: 5000,
      },
      (p) => children.push(p),
    );
    console.log(`dataplane-netns: ${report.streamed} datagrams on SPIs ${report.spis.map((s) => `0x${s.toString(16).padStart(8, '0')}`).join(' -> ')}; excluded receiver dropped ${JSON.stringify(report.excludedDrops)}; ${report.ms} ms`);
  });
});
