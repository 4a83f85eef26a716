/**
 * The key server restarted from its state (src/node/gcks-state.ts on the
 * SQLite store), in simulation: members registered before the "crash" keep
 * following rekeys and exclusions afterwards without registering again,
 * Message IDs go on increasing, and nothing is handed out twice.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadGcksConfig } from '../../src/gcks/config.ts';
import type { GcksService, GcksServiceEvent } from '../../src/gcks/service.ts';
import { GmService, type GmServiceEvent } from '../../src/gm/service.ts';
import { silentLogger } from '../../src/node/log.ts';
import { storeDeps } from '../../src/node/gcks-state.ts';
import { StateKek } from '../../src/store/encryption.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { SimClock, SimNetwork, Simulation, type SimEndpoint, type SimNode, type SimOutput } from '../sim/network.ts';
import { EPOCH, gmConfig, inSync, makeGcks, makeGm, rekeyGcksYaml, ServiceNode, type GmNode } from '../registration/fixtures.ts';

const GCKS_EP = { address: '10.0.0.1', port: 500 };
const GROUP: SimEndpoint = { address: '239.0.0.9', port: 848 };
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

class Hub implements SimNode {
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

/** The key server node; `service` is replaced on a restart. */
class GcksNode implements SimNode {
  readonly events: GcksServiceEvent[] = [];
  constructor(
    public service: GcksService,
    readonly endpoint: SimEndpoint,
  ) {}
  take(out: { send: SimOutput['send']; events: readonly GcksServiceEvent[] }): SimOutput {
    this.events.push(...out.events);
    return out;
  }
  receive(data: Buffer, from: SimEndpoint, now: number): SimOutput {
    return this.take(this.service.receive(data, from, { ...this.endpoint, marker: false }, now));
  }
  timeout(now: number): SimOutput {
    return this.take(this.service.timeout(now));
  }
  nextTimeout(): number | undefined {
    return this.service.nextTimeout();
  }
}

/**
 * A key server on a fresh SQLite state directory, in a simulation with the
 * group's multicast hub. `restart()` is a crash: no shutdown, the store is
 * reopened from its file and a new server starts from it.
 */
class RestoreHarness {
  readonly dir: string;
  readonly kek = StateKek.generate();
  store: SqliteStore;
  readonly sim = new Simulation(new SimNetwork({ clock: new SimClock(EPOCH), latency: 5 }));
  readonly gcks: GcksNode;
  readonly hub = this.sim.add(new Hub(GROUP));
  private readonly config = loadGcksConfig(rekeyGcksYaml({ group: GROUP.address, port: GROUP.port, source: GCKS_EP.address, tekLifetime: 3600, atd: 2, dtd: 5 }), 'restore.yaml');
  private runs = 0;

  constructor(private readonly name: string) {
    this.dir = mkdtempSync(join(tmpdir(), `gikev2-${name}-`));
    dirs.push(this.dir);
    this.store = SqliteStore.open({ stateDir: this.dir, kek: this.kek });
    this.gcks = this.sim.add(new GcksNode(this.start(EPOCH), GCKS_EP));
  }

  restart(): void {
    this.store.close();
    this.store = SqliteStore.open({ stateDir: this.dir, kek: this.kek });
    this.gcks.service = this.start(this.sim.now);
  }

  private start(now: number): GcksService {
    const deps = storeDeps(this.store, { log: silentLogger, timeOffset: 0 }).deps;
    return makeGcks(this.config, { ...deps, now, rekey: { retransmit: { copies: 2, spacingMs: 500 } } }, `gcks-${this.name}-${++this.runs}`);
  }
}

describe('key server restarted from its state directory', () => {
  it('members keep following rekeys and exclusions across restarts, without registering again', () => {
    const h = new RestoreHarness('restore');
    const { dir, kek, sim, gcks, hub } = h;
    const gms = ['a', 'b', 'c', 'd', 'f'].map((name, i) => {
      const node: GmNode = sim.add(new ServiceNode<GmService, GmServiceEvent>(makeGm(gmConfig(`${name}@example.org`, [GCKS_EP], ['video'])), { address: `10.0.1.${i + 1}`, port: 500 }));
      hub.members.push(node);
      sim.emit(node, node.take(node.service.start(sim.now)));
      return node;
    });
    sim.run(EPOCH + 3_000);
    for (const g of gms) assert.ok(inSync(gcks.service, g.service, 'mc'));
    const barriers = (): number => Number(h.store.database.prepare<[], { value: Buffer }>("SELECT value FROM meta WHERE key = 'sync-barrier'").get()?.value.toString() ?? 0);
    // Only the group's first commit (its SAs and tree) is fsynced, not each registration (issue 6).
    assert.ok(barriers() <= 1, `${barriers()} fsynced commits for 5 registrations`);
    const act = (call: (now: number) => ReturnType<GcksService['timeout']>): void => sim.emit(gcks, gcks.take(call(sim.now)));


    const before = gcks.service.groupKeys('mc')!;
    h.restart();
    const restored = gcks.service.groupKeys('mc')!;
    assert.ok(restored.rekeySa!.spi.equals(before.rekeySa!.spi), 'same Rekey SA');
    assert.ok(restored.rekeySa!.keys.gskW.equals(before.rekeySa!.keys.gskW), 'same KEK keys');
    assert.ok(restored.rekeySa!.nextMessageId >= before.rekeySa!.nextMessageId, "Message IDs never go back");
    assert.deepEqual(restored.dataSecurity.map((t) => t.spi.toString('hex')), before.dataSecurity.map((t) => t.spi.toString('hex')));
    assert.equal(gcks.service.members('mc').length, 5);

    act((now) => gcks.service.rekeyGroup('mc', 'all', now));
    sim.run(sim.now + 5_000);
    for (const g of gms) assert.ok(inSync(gcks.service, g.service, 'mc'), 'followed a rekey after the restart');
    h.restart();
    act((now) => gcks.service.excludeMember('mc', 'f@example.org', now));
    sim.run(sim.now + 5_000);
    for (const g of gms.slice(0, 4)) assert.ok(inSync(gcks.service, g.service, 'mc'), 'followed the LKH exclusion after a restart');
    assert.ok(!inSync(gcks.service, gms[4]!.service, 'mc'), 'the excluded member cannot follow');
    h.restart();
    assert.equal(gcks.service.members('mc').length, 4);
    act((now) => gcks.service.rekeyGroup('mc', 'tek', now));
    sim.run(sim.now + 5_000);
    h.restart();
    // Scheduled rekeys after a restart: hours of them.
    sim.run(sim.now + 3 * 3_600_000);
    for (const g of gms.slice(0, 4)) {
      assert.ok(inSync(gcks.service, g.service, 'mc'), 'followed scheduled rekeys');
      assert.equal(g.of('registered').length, 1, 'never registered again');
      assert.equal(g.of('resync-needed').length, 0);
      assert.ok(g.of('rekey-rejected').every((e) => e.reason === 'replay'), JSON.stringify(g.of('rekey-rejected')));
    }
    // Message IDs on the wire: strictly increasing per Rekey SA.
    const sent = gcks.events.filter((e): e is Extract<GcksServiceEvent, { type: 'rekey-planned' }> => e.type === 'rekey-planned' && e.transport === 'multicast');
    assert.ok(sent.length >= 5);
    // Audit and registration history.
    const audit = h.store.queryAudit({ kind: 'registration' });
    assert.equal(audit.length, 5);
    assert.ok(h.store.queryAudit({ kind: 'exclusion' }).some((a) => a.reason === 'operator'));
    assert.ok(h.store.queryAudit({ kind: 'rekey' }).length >= 5);
    // Key material at rest is sealed.
    const keys = gcks.service.groupKeys('mc')!;
    h.store.close();
    const files = readdirSync(dir).map((f) => readFileSync(join(dir, f)));
    for (const secret of [keys.rekeySa!.keys.gskW, keys.rekeySa!.keys.gskE, ...keys.dataSecurity.map((t) => t.keys.encrKey)]) {
      for (const f of files) assert.equal(f.indexOf(secret), -1, 'raw key found in the state directory');
    }
    SqliteStore.open({ stateDir: dir, kek }).close();
  });

  it('restores a key tree stored in the older chunk format (with member counts), and registrations rewrite only leaf chunks', () => {
    const h = new RestoreHarness('restore-v1');
    const { sim, gcks, hub } = h;
    const chunkSaves = (): Map<string, number> =>
      new Map(h.store.database.prepare<[], { group_id: string; saved_at: number }>("SELECT group_id, saved_at FROM lkh_trees WHERE group_id LIKE '%#lkh/%'").all().map((r) => [r.group_id, r.saved_at]));
    const joinAt = new Map<string, number>();
    const gms = ['a', 'b', 'c', 'd', 'e'].map((name, i) => {
      const node: GmNode = sim.add(new ServiceNode<GmService, GmServiceEvent>(makeGm(gmConfig(`${name}@example.org`, [GCKS_EP], ['video'])), { address: `10.0.2.${i + 1}`, port: 500 }));
      hub.members.push(node);
      // One member at a time, so each registration's commit can be told apart.
      sim.run(sim.now + 1_000);
      joinAt.set(name, sim.now);
      sim.emit(node, node.take(node.service.start(sim.now)));
      sim.run(sim.now + 2_000);
      return node;
    });
    for (const g of gms) assert.ok(inSync(gcks.service, g.service, 'mc'));
    // The ternary tree grew a level when d joined (leaf 3, under a new level-1 node); e took leaf 4 under
    // that same node, so its registration rewrote the leaf row's chunk only (member counts are not stored).
    const saves = chunkSaves();
    const treeOf = [...saves.keys()][0]!.split('#lkh/')[0]!;
    const level1 = saves.get(`${treeOf}#lkh/1/0`)!;
    assert.ok(level1 >= joinAt.get('d')! && level1 < joinAt.get('e')!, `level 1 last written at ${level1 - EPOCH}, joins at ${[...joinAt.values()].map((t) => t - EPOCH).join(', ')}`);
    assert.ok(saves.get(`${treeOf}#lkh/0/0`)! >= joinAt.get('e')!);

    // Rewrite every chunk as an older release wrote it: IDs, member counts, keys.
    const meta = h.store.getLkhSnapshot(treeOf)!.meta as { arity: number };
    const leaves = h.store.listMembers(treeOf, { status: 'active' }).map((m) => m.leaf!);
    assert.equal(leaves.length, 5);
    for (const [record] of saves) {
      const [height, index] = record.split('#lkh/')[1]!.split('/').map(Number) as [number, number];
      const current = h.store.getLkhSnapshot(record)!;
      h.store.putLkhSnapshot({ ...current, tree: toFormat1(current.tree, height, index, meta.arity, leaves) });
    }
    h.restart();
    assert.equal(gcks.service.members('mc').length, 5);
    const act = (call: (now: number) => ReturnType<GcksService['timeout']>): void => sim.emit(gcks, gcks.take(call(sim.now)));
    act((now) => gcks.service.excludeMember('mc', 'e@example.org', now));
    sim.run(sim.now + 5_000);
    for (const g of gms.slice(0, 4)) assert.ok(inSync(gcks.service, g.service, 'mc'), 'followed the LKH exclusion on a tree restored from the older format');
    assert.ok(!inSync(gcks.service, gms[4]!.service, 'mc'));
    for (const g of gms) assert.equal(g.of('registered').length, 1, 'never registered again');
    h.store.close();
  });
});

/** A format-2 chunk (format octet, 64 IDs, keys) as format 1 (64 IDs, 64 member counts, keys). */
function toFormat1(chunk: Buffer, height: number, index: number, arity: number, memberLeaves: readonly number[]): Buffer {
  const n = 64;
  assert.equal(chunk[0], 2);
  const keyLength = (chunk.length - 1) / n - 4;
  const out = Buffer.alloc(n * (8 + keyLength));
  chunk.copy(out, 0, 1, 1 + n * 4);
  for (const leaf of memberLeaves) {
    const pos = Math.floor(leaf / arity ** height) - index * n;
    if (pos >= 0 && pos < n) out.writeUInt32BE(out.readUInt32BE(n * 4 + pos * 4) + 1, n * 4 + pos * 4);
  }
  chunk.copy(out, n * 8, 1 + n * 4);
  return out;
}
