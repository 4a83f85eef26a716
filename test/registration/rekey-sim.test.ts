/**
 * Rekeying in simulation: GcksService and GmService on the in-memory
 * network with a simulated clock, GSA_REKEY fanned out to the members by a
 * multicast "hub" node standing at the Rekey SA's group address. Hours of
 * protocol time in milliseconds, and the same run every time.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { loadGcksConfig } from '../../src/gcks/config.ts';
import type { GcksService, GcksServiceEvent } from '../../src/gcks/service.ts';
import type { GmService, GmServiceEvent } from '../../src/gm/service.ts';
import { ExchangeType } from '../../src/wire/iana.ts';
import { SimClock, SimNetwork, Simulation, type SimEndpoint, type SimNode, type SimOutput } from '../sim/network.ts';
import { EPOCH, gmConfig, inSync, makeGcks, makeGm, rekeyGcksYaml, ServiceNode, type GcksNode, type GmNode } from './fixtures.ts';

const GCKS_EP = { address: '10.0.0.1', port: 500 };
const GROUP: SimEndpoint = { address: '239.0.0.9', port: 848 };

/** The multicast group: whatever reaches it goes on to every member that joined, from the original source. */
class MulticastHub implements SimNode {
  readonly members: GmNode[] = [];
  constructor(readonly endpoint: SimEndpoint) {}
  receive(data: Buffer, from: SimEndpoint): SimOutput {
    return { send: this.members.map((m) => ({ to: m.endpoint, from, data })) };
  }
  timeout(): SimOutput {
    return { send: [] };
  }
  nextTimeout(): undefined {
    return undefined;
  }
}

interface World {
  readonly sim: Simulation;
  readonly gcks: GcksNode;
  readonly hub: MulticastHub;
  /** Datagrams the network drops: return true to lose it. */
  lose: (to: SimEndpoint, data: Buffer) => boolean;
  member(name: string, group: 'video' | 'small'): GmNode;
}

function world(opts: { tekLifetime?: number } = {}): World {
  const network = new SimNetwork({ clock: new SimClock(EPOCH), latency: 5 });
  const sim = new Simulation(network);
  const config = loadGcksConfig(rekeyGcksYaml({ group: GROUP.address, port: GROUP.port, source: GCKS_EP.address, tekLifetime: opts.tekLifetime ?? 3600, atd: 2, dtd: 5 }), 'rekey-sim.yaml');
  const gcks: GcksNode = sim.add(
    new ServiceNode<GcksService, GcksServiceEvent>(
      makeGcks(config, { rekey: { retransmit: { copies: 3, spacingMs: 500 } }, retransmit: { initialMs: 500, factor: 2, maxMs: 2000, maxTries: 3 } }),
      GCKS_EP,
    ),
  );
  const hub = sim.add(new MulticastHub(GROUP));
  let n = 0;
  const w: World = {
    sim,
    gcks,
    hub,
    lose: () => false,
    member(name, group) {
      const node: GmNode = sim.add(new ServiceNode<GmService, GmServiceEvent>(makeGm(gmConfig(`${name}@example.org`, [GCKS_EP], [group])), { address: `10.0.1.${++n}`, port: 500 }));
      if (group === 'video') hub.members.push(node);
      sim.emit(node, node.take(node.service.start(sim.now)));
      return node;
    },
  };
  network.policy = (d) => (w.lose(d.to, d.data) ? { kind: 'drop' } : { kind: 'deliver' });
  return w;
}

const isRekey = (data: Buffer): boolean => data[18] === ExchangeType.GSA_REKEY;
const act = (w: World, call: (now: number) => ReturnType<GcksService['timeout']>): void => w.sim.emit(w.gcks, w.gcks.take(call(w.sim.now)));

function five(w: World): GmNode[] {
  const gms = ['a', 'b', 'c', 'd', 'f'].map((n) => w.member(n, 'video'));
  w.sim.run(EPOCH + 3_000);
  for (const g of gms) assert.ok(inSync(w.gcks.service, g.service, 'mc'), `${g.service.config.identity.data.toString()} registered`);
  return gms;
}

describe('rekeying in simulation (GcksService + GmService)', () => {
  it('five members follow ten hours of scheduled TEK and KEK rekeys without registering again', () => {
    const w = world();
    const gms = five(w);
    const checkpoints: boolean[] = [];
    for (let h = 1; h <= 10; h++) {
      w.sim.run(EPOCH + h * 3_600_000);
      checkpoints.push(gms.every((g) => inSync(w.gcks.service, g.service, 'mc')));
    }
    assert.deepEqual(checkpoints, Array(10).fill(true));
    const reasons = w.gcks.of('rekey-sent').map((e) => e.reason);
    assert.ok(reasons.filter((r) => r === 'tek-expiry').length >= 9, reasons.join(','));
    assert.ok(reasons.filter((r) => r === 'kek-expiry').length >= 4, reasons.join(','));
    for (const g of gms) {
      assert.equal(g.of('registered').length, 1, 'never re-registered');
      assert.equal(g.of('resync-needed').length, 0);
      assert.ok(g.of('rekey-rejected').every((e) => e.reason === 'replay'), 'only the planned copies are dropped, as replays');
    }
    // Each message went out `copies` times, bitwise identical, to the group from the configured source.
    const onWire = w.sim.network.sent.filter((d) => d.to.address === GROUP.address && isRekey(d.data));
    assert.equal(onWire.length, w.gcks.of('rekey-sent').length * 3);
    assert.ok(onWire.every((d) => d.from.address === GCKS_EP.address));
  });

  it('a member that misses a rekey detects it and registers again; the others are unaffected', () => {
    const w = world();
    const gms = five(w);
    const lost = gms[1]!;
    w.lose = (to, data) => to.address === lost.endpoint.address && isRekey(data);
    act(w, (now) => w.gcks.service.rekeyGroup('mc', 'kek', now));
    w.sim.run(w.sim.now + 3_000);
    w.lose = () => false;
    assert.ok(!inSync(w.gcks.service, lost.service, 'mc'));
    act(w, (now) => w.gcks.service.rekeyGroup('mc', 'tek', now));
    w.sim.run(w.sim.now + 10_000);
    assert.deepEqual(lost.of('resync-needed').map((e) => e.reason), ['missed-rekey']);
    assert.equal(lost.of('registered').length, 2);
    for (const g of gms) assert.ok(inSync(w.gcks.service, g.service, 'mc'));
  });

  it('operator exclusion: F is excluded by the key tree, refused while barred, back after readmission', () => {
    const w = world();
    const gms = five(w);
    const f = gms[4]!;
    act(w, (now) => w.gcks.service.excludeMember('mc', 'f@example.org', now));
    w.sim.run(w.sim.now + 2_000);
    for (const g of gms.slice(0, 4)) assert.ok(inSync(w.gcks.service, g.service, 'mc'));
    assert.deepEqual(f.of('excluded').map((e) => e.cause), ['key-path']);
    assert.ok(!inSync(w.gcks.service, f.service, 'mc'));
    w.sim.run(w.sim.now + 30_000);
    assert.ok(f.of('error').some((e) => e.notify === 'AUTHORIZATION_FAILED'), 'refused while barred');
    assert.equal(w.gcks.service.members('mc').length, 4);
    assert.ok(w.gcks.service.readmitMember('mc', 'f@example.org'));
    w.sim.run(w.sim.now + 400_000); // its back-off runs out
    assert.ok(inSync(w.gcks.service, f.service, 'mc'), 'F registered again');
    assert.equal(w.gcks.service.members('mc').length, 5);
    // Leaving is an exclusion too: the others move to keys the leaver never held.
    const kek = w.gcks.service.groupKeys('mc')!.rekeySa!.spi;
    w.sim.emit(gms[0]!, gms[0]!.take(gms[0]!.service.leave('video', w.sim.now)));
    w.sim.run(w.sim.now + 5_000);
    assert.ok(w.gcks.of('member-excluded').some((e) => e.member === 'a@example.org' && e.cause === 'left'));
    assert.ok(!w.gcks.service.groupKeys('mc')!.rekeySa!.spi.equals(kek));
    for (const g of gms.slice(1)) assert.ok(inSync(w.gcks.service, g.service, 'mc'));
  });

  it('inband group: scheduled rekeys reach every member; a member that stops answering is removed and the rest rekeyed', () => {
    const w = world({ tekLifetime: 600 });
    const gms = ['p', 'q', 'r'].map((n) => w.member(n, 'small'));
    w.sim.run(EPOCH + 3_000);
    w.sim.run(EPOCH + 1_200_000);
    for (const g of gms) {
      assert.ok(inSync(w.gcks.service, g.service, 'ib'));
      assert.ok(g.of('tek-installed').length >= 2, 'followed the scheduled inband rekeys');
      assert.equal(g.of('registered').length, 1);
    }
    const silent = gms[1]!;
    w.lose = (to) => to.address === silent.endpoint.address;
    act(w, (now) => w.gcks.service.rekeyGroup('ib', 'tek', now));
    w.sim.run(w.sim.now + 30_000);
    assert.deepEqual(w.gcks.of('inband-rekey-failed').map((e) => e.member), ['q@example.org']);
    assert.ok(w.gcks.of('member-excluded').some((e) => e.member === 'q@example.org' && e.cause === 'ike-sa-lost'));
    assert.deepEqual(w.gcks.service.members('ib').map((m) => m.member).sort(), ['p@example.org', 'r@example.org']);
    for (const g of [gms[0]!, gms[2]!]) assert.ok(inSync(w.gcks.service, g.service, 'ib'));
  });
});
