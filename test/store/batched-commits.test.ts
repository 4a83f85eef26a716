/**
 * Batched commits (GcksServiceDeps.batchCommits, on for the daemon's store):
 * `receive` holds its output; the next call that commits (the timeout that
 * nextTimeout makes due at once) commits for every held call in one
 * transaction and only then returns their datagrams. Nothing leaves before
 * the commit that covers it, and what a failed commit covered is never sent.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { loadGcksConfig } from '../../src/gcks/config.ts';
import type { GcksService } from '../../src/gcks/service.ts';
import type { GmService } from '../../src/gm/service.ts';
import type { Output } from '../../src/ike/io-types.ts';
import { silentLogger } from '../../src/node/log.ts';
import { storeDeps } from '../../src/node/gcks-state.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { EPOCH, gmConfig, makeGcks, makeGm, rekeyGcksYaml } from '../registration/fixtures.ts';

const GCKS = { address: '10.0.0.1', port: 500 };

/** A store that counts its transactions and can be made to fail the next one. */
class ObservedStore extends MemoryStore {
  commits = 0;
  failNext = false;
  override transaction<T>(fn: () => T): T {
    if (this.failNext && !this.inTransaction) {
      this.failNext = false;
      throw new Error('disk full');
    }
    const outer = !this.inTransaction;
    const result = super.transaction(fn);
    if (outer) this.commits++;
    return result;
  }
}

interface Member {
  readonly gm: GmService;
  readonly at: { readonly address: string; readonly port: number };
}

function setup(): { gcks: GcksService; store: ObservedStore; members: Member[] } {
  const store = new ObservedStore();
  const config = loadGcksConfig(rekeyGcksYaml({ group: '239.0.0.9', port: 848, source: GCKS.address }), 'batch.yaml');
  const gcks = makeGcks(config, { ...storeDeps(store, { log: silentLogger, timeOffset: 0 }).deps, now: EPOCH });
  const members = ['a', 'b', 'c'].map((name, i) => ({ gm: makeGm(gmConfig(`${name}@example.org`, [GCKS], ['video'])), at: { address: `10.0.1.${i + 1}`, port: 500 } }));
  return { gcks, store, members };
}

type Datagram = { readonly to: { readonly address: string; readonly port: number }; readonly data: Buffer };

/** Gives each member's datagrams to the key server in one "turn"; returns what the key server sent back at once. */
function deliver(gcks: GcksService, batch: readonly { readonly from: Member; readonly datagrams: readonly Datagram[] }[], now: number): Datagram[] {
  const out: Datagram[] = [];
  for (const { from, datagrams } of batch) {
    for (const d of datagrams) out.push(...gcks.receive(d.data, from.at, { ...GCKS, marker: false }, now).send);
  }
  return out;
}

/** Hands the key server's datagrams to the members; returns each member's answer. */
function answer(members: readonly Member[], datagrams: readonly Datagram[], now: number): { from: Member; datagrams: Datagram[] }[] {
  return members.map((m) => ({
    from: m,
    datagrams: datagrams.filter((d) => d.to.address === m.at.address).flatMap((d) => m.gm.receive(d.data, GCKS, { ...m.at, marker: false }, now).send),
  }));
}

const sends = (o: Output<unknown>): Datagram[] => [...o.send];

describe('batched commits', () => {
  it('holds every response until one commit covers the whole turn, then releases them in order', () => {
    const { gcks, store, members } = setup();
    const now = EPOCH + 10;
    const before = store.commits;
    // IKE_SA_INIT from three members in one turn: nothing leaves yet, the key server wants a timeout now.
    const inits = members.map((m) => ({ from: m, datagrams: sends(m.gm.start(now)) }));
    assert.deepEqual(deliver(gcks, inits, now), []);
    assert.equal(gcks.nextTimeout(), now);
    const initResponses = sends(gcks.timeout(now));
    assert.deepEqual(initResponses.map((d) => d.to.address), members.map((m) => m.at.address), 'released in arrival order');
    // GSA_AUTH from all three in one turn: no response before the commit, one commit for the three.
    const auths = answer(members, initResponses, now);
    const commitsBefore = store.commits;
    assert.deepEqual(deliver(gcks, auths, now), []);
    assert.equal(store.listMembers('11:' + Buffer.from('video').toString('hex')).length, 0, 'nothing committed yet');
    assert.equal(gcks.nextTimeout(), now);
    const authResponses = sends(gcks.timeout(now));
    assert.equal(store.commits, commitsBefore + 1, 'one transaction for the three registrations');
    assert.equal(store.listMembers('11:' + Buffer.from('video').toString('hex')).length, 3);
    assert.equal(store.queryAudit({ kind: 'registration' }).length, 3);
    assert.deepEqual(authResponses.map((d) => d.to.address), members.map((m) => m.at.address));
    for (const r of answer(members, authResponses, now)) assert.equal(r.from.gm.status().groups.some((g) => g.status === 'registered'), true);
    assert.ok(store.commits > before);
    // Nothing held: no timeout is due now any more.
    const next = gcks.nextTimeout();
    assert.ok(next === undefined || next > now);
  });

  it('a failed commit drops the responses it would have covered', () => {
    const { gcks, store, members } = setup();
    const now = EPOCH + 10;
    const [a] = members;
    assert.deepEqual(deliver(gcks, [{ from: a!, datagrams: sends(a!.gm.start(now)) }], now), []);
    const initResponse = sends(gcks.timeout(now));
    const auth = answer([a!], initResponse, now);
    assert.deepEqual(deliver(gcks, auth, now), []);
    store.failNext = true;
    assert.throws(() => gcks.timeout(now), /disk full/);
    // The response was never released: not now, not by a later call (every later commit fails too).
    assert.equal(gcks.nextTimeout() === now, false, 'nothing held any more');
    assert.throws(() => gcks.rekeyGroup('mc', 'tek', now + 1), /could not be written/);
  });
});
