/**
 * xfrmSyncFromMember in a network namespace: a real key server and member on
 * loopback UDP (in this process), the member's events driving an
 * XfrmBackend whose `ip xfrm` commands run inside a throw-away namespace.
 * Policies are installed for real after registration, kept through a TEK
 * rekey and removed on exclusion and on shutdown. This kernel has XFRM but
 * no ESP: `ip xfrm state add` is refused, so states are checked as the
 * rendered commands (SPI, group, algorithm; keys masked) and where the
 * kernel accepts them, as installed states.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { XfrmBackend, type XfrmOutcome } from '../../src/dataplane/xfrm.ts';
import { xfrmSyncFromMember } from '../../src/dataplane/xfrm-member.ts';
import { loadGcksConfig } from '../../src/gcks/config.ts';
import type { GcksServiceEvent } from '../../src/gcks/service.ts';
import type { GmServiceEvent } from '../../src/gm/service.ts';
import { UdpAdapter } from '../../src/node/udp.ts';
import { createTestNet, netnsUnavailable, type TestNet } from '../interop/harness/netns.ts';
import { gmConfig, makeGcks, makeGm, rekeyGcksYaml } from '../registration/fixtures.ts';

const IP = '/usr/sbin/ip';
const skip = netnsUnavailable();
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function waitFor(what: string, p: () => boolean, ms = 8_000): Promise<void> {
  const until = Date.now() + ms;
  while (!p()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function policies(ns: string): string {
  return spawnSync(IP, ['-n', ns, 'xfrm', 'policy', 'list'], { encoding: 'utf8' }).stdout;
}

describe('XFRM from a member (xfrmSyncFromMember)', { skip }, () => {
  it('installs the group policies after registration, follows a TEK rekey, removes everything on exclusion and shutdown', { timeout: 30_000 }, async () => {
    const net: TestNet = createTestNet({ hosts: ['x'] });
    cleanups.push(() => net.destroy());
    const ns = net.host('x').ns;
    const group = `239.${200 + (process.pid % 50)}.${randomBytes(1)[0]!}.${1 + (randomBytes(1)[0]! % 250)}`;
    const config = loadGcksConfig(rekeyGcksYaml({ group, port: 20_000 + (process.pid % 20_000), source: '127.0.0.1', atd: 0, dtd: 0 }), 'xfrm-member.yaml');
    const gcks = makeGcks(config, { now: performance.now(), rekey: { jitterMs: 0, retransmit: { copies: 1, spacingMs: 100 } } });
    const gcksEvents: GcksServiceEvent[] = [];
    const ga = await UdpAdapter.open<GcksServiceEvent>(gcks, [{ address: '127.0.0.1', port: 0, marker: false, multicast: { interface: '127.0.0.1', loopback: true } }], { onEvent: (e) => gcksEvents.push(e) });
    cleanups.push(() => ga.close());

    const gm = makeGm(gmConfig('x@example.org', [{ address: '127.0.0.1', port: ga.locals[0]!.port }], ['video']));
    const events: GmServiceEvent[] = [];
    const outcomes: XfrmOutcome[] = [];
    const log: string[] = [];
    const sync = xfrmSyncFromMember(gm, new XfrmBackend({ netns: ns, ipPath: IP, log: (l) => log.push(l) }), { group: 'video' });
    const joined = new Set<string>();
    const self: { adapter?: UdpAdapter<GmServiceEvent> } = {};
    const adapter = await UdpAdapter.open<GmServiceEvent>(gm, [{ address: '127.0.0.3', port: 0, marker: false }], {
      onEvent: (e) => {
        events.push(e);
        // The one-line daemon hook:
        outcomes.push(...sync.onEvent(e));
        if (e.type !== 'keys' || !self.adapter) return;
        for (const g of gm.multicastGroups()) {
          if (joined.has(g.address)) continue;
          joined.add(g.address);
          void self.adapter.addSocket({ address: g.address, port: g.port, marker: false, reuseAddr: true, multicast: { join: [g.address], interface: '127.0.0.1' } });
        }
      },
    });
    self.adapter = adapter;
    cleanups.push(() => adapter.close());
    adapter.act((now) => gm.start(now));
    await waitFor('registration', () => events.some((e) => e.type === 'registered'));
    await sleep(100); // the multicast socket joins

    const tek = (): string => gcks.groupKeys('mc')!.dataSecurity[0]!.spi.toString('hex');
    const first = tek();
    let listed = policies(ns);
    assert.match(listed, /src 0\.0\.0\.0\/0 dst 239\.1\.1\.1\/32 proto udp dport 5000\s+dir in/);
    assert.match(listed, /tmpl src 0\.0\.0\.0 dst 239\.1\.1\.1\s+proto esp reqid 1 mode tunnel/);
    const stateAdds = (): XfrmOutcome[] => outcomes.filter((o) => o.command.kind === 'state-add');
    const rendered = (spi: string): XfrmOutcome | undefined => stateAdds().find((o) => o.command.display.includes(`spi 0x${spi}`));
    const firstAdd = rendered(first);
    assert.ok(firstAdd, `a state for the registration's TEK 0x${first}: ${log.join('\n')}`);
    assert.match(firstAdd.command.display, new RegExp(`^ip -n ${ns} xfrm state add src 0\\.0\\.0\\.0 dst 239\\.1\\.1\\.1 proto esp spi 0x${first} reqid 1 mode tunnel replay-window 0 aead 'rfc4106\\(gcm\\(aes\\)\\)' <key 36 octets> 128$`));
    // Documented: without ESP in the kernel the state is refused (and not remembered); with it, installed.
    if (!firstAdd.ok) assert.ok(firstAdd.error, 'the refusal names its reason');
    assert.ok(log.every((l) => !/0x[0-9a-f]{40,}/.test(l)), 'no key in the log');

    ga.act((now) => gcks.rekeyGroup('mc', 'tek', now));
    await waitFor('the rekey', () => events.some((e) => e.type === 'tek-installed'));
    const second = tek();
    assert.notEqual(second, first);
    assert.ok(rendered(second), `a state for the new TEK 0x${second}`);
    listed = policies(ns);
    assert.match(listed, /dst 239\.1\.1\.1\/32 proto udp dport 5000\s+dir in/, 'policies stay through the rekey');

    ga.act((now) => gcks.excludeMember('mc', 'x@example.org', now));
    await waitFor('the exclusion', () => events.some((e) => e.type === 'excluded'));
    assert.doesNotMatch(policies(ns), /239\.1\.1\.1/, 'no policy left after exclusion');
    assert.deepEqual(sync.backend.installed(), { spis: [], policies: [] });
    assert.deepEqual(sync.close(), [], 'shutdown after exclusion has nothing left to remove');
  });

  it('shutdown removes the policies of a registered member', { timeout: 30_000 }, async () => {
    const net: TestNet = createTestNet({ hosts: ['y'] });
    cleanups.push(() => net.destroy());
    const ns = net.host('y').ns;
    const config = loadGcksConfig(rekeyGcksYaml({ group: '239.250.0.9', port: 21_000 + (process.pid % 20_000), source: '127.0.0.1' }), 'xfrm-member2.yaml');
    const gcks = makeGcks(config, { now: performance.now() });
    const ga = await UdpAdapter.open<GcksServiceEvent>(gcks, [{ address: '127.0.0.1', port: 0, marker: false, multicast: { interface: '127.0.0.1' } }]);
    cleanups.push(() => ga.close());
    const gm = makeGm(gmConfig('y@example.org', [{ address: '127.0.0.1', port: ga.locals[0]!.port }], ['video']));
    const sync = xfrmSyncFromMember(gm, new XfrmBackend({ netns: ns, ipPath: IP }), { group: 'keyid:766964656f' });
    let registered = false;
    const adapter = await UdpAdapter.open<GmServiceEvent>(gm, [{ address: '127.0.0.4', port: 0, marker: false }], {
      onEvent: (e) => {
        sync.onEvent(e);
        if (e.type === 'registered') registered = true;
      },
    });
    cleanups.push(() => adapter.close());
    adapter.act((now) => gm.start(now));
    await waitFor('registration', () => registered);
    assert.match(policies(ns), /239\.1\.1\.1\/32/);
    const removed = sync.close();
    assert.ok(removed.some((o) => o.command.kind === 'policy-delete' && o.ok));
    assert.doesNotMatch(policies(ns), /239\.1\.1\.1/);
  });
});
