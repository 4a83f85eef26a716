/**
 * The data-plane scenario of dataplane-netns.test.ts on this host's
 * loopback (no root needed): the same child processes, every node on
 * 127.0.0.1, multicast through IP_MULTICAST_LOOP.
 */
import { randomInt } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { runDataplaneScenario, type NodeProcess } from './fixtures/dataplane-scenario.ts';

const children: NodeProcess[] = [];
after(async () => {
  await Promise.all(children.map((c) => c.stop()));
});

describe('data plane on loopback multicast', () => {
  it('a sender and two receivers in separate processes: every datagram through rekeys, nothing for the excluded one', { timeout: 60_000 }, async () => {
    const here = { execPrefix: [], addr: '127.0.0.1' };
    const report = await runDataplaneScenario(
      {
        keyServer: here,
        camera: here,
        display1: here,
        display2: here,
        rekeyGroup: `239.${randomInt(100, 200)}.${randomInt(0, 255)}.${randomInt(1, 255)}`,
        rekeyPort: randomInt(20_000, 30_000),
        dataGroup: `239.${randomInt(100, 200)}.${randomInt(0, 255)}.${randomInt(1, 255)}`,
        dataPort: randomInt(30_000, 40_000),
      },
      (p) => children.push(p),
    );
    console.log(`dataplane-loopback: ${report.streamed} datagrams, SPIs ${report.spis.join(' -> ')}, excluded receiver dropped ${JSON.stringify(report.excludedDrops)}, ${report.ms} ms`);
  });
});
