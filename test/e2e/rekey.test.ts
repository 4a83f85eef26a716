/**
 * Rekeying end to end on real UDP multicast over loopback: GcksService and
 * GmService driven by UdpAdapter, GSA_REKEY sent to a 239.x group from the
 * key server's socket (multicast interface 127.0.0.1, loop on) and received
 * by members on sockets bound to the group and port (SO_REUSEADDR, joined on
 * 127.0.0.1), GSA_INBAND_REKEY over the members' IKE SAs.
 *
 * Time: every adapter runs on one clock that the test can move forward
 * (`jump`), so lifetimes of a minute pass in milliseconds of real time while
 * the sockets and timers are real.
 */
import { strict as assert } from 'node:assert';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { after, describe, it } from 'node:test';
import { createRekeySigner } from '../../src/crypto/auth.ts';
import { createSkCipher } from '../../src/crypto/cipher.ts';
import { rekeySaSkKeys } from '../../src/crypto/keys.ts';
import { unwrapKey } from '../../src/crypto/keywrap.ts';
import { loadGcksConfig, type GcksConfig } from '../../src/gcks/config.ts';
import { deleteSas } from '../../src/gcks/rekey-content.ts';
import { buildRekey } from '../../src/gcks/rekey-message.ts';
import type { RekeyPlannerOptions } from '../../src/gcks/rekey-planner.ts';
import type { GcksService, GcksServiceEvent } from '../../src/gcks/service.ts';
import { rekeySigningKeyFrom, type RekeySigningKey } from '../../src/gcks/signing-key.ts';
import type { FollowedRekeySa, FollowerState } from '../../src/gm/rekey-follower.ts';
import { RekeyReceiver } from '../../src/gm/rekey-receiver.ts';
import type { GmService, GmServiceEvent } from '../../src/gm/service.ts';
import { EMPTY_OUTPUT, type DatagramEngine, type Endpoint, type LocalEndpoint, type Output } from '../../src/ike/io-types.ts';
import type { Clock } from '../../src/node/clock.ts';
import { UdpAdapter } from '../../src/node/udp.ts';
import { ExchangeType, ProtocolId } from '../../src/wire/iana.ts';
import { saKeysOf, wrapKeysOf } from '../../src/wire/wrapped-key.ts';
import { gmConfig, inSync, makeGcks, makeGm, rekeyGcksYaml, signingKey } from '../registration/fixtures.ts';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** The adapters' clock: real monotonic time plus whatever the test skipped. */
class JumpClock implements Clock {
  offset = 0;
  now(): number {
    return performance.now() + this.offset;
  }
}

/** Lets the test lose GSA_REKEY datagrams on their way into one member. */
class Inlet<E> implements DatagramEngine<E> {
  dropRekeys = false;
  constructor(private readonly inner: DatagramEngine<E>) {}
  receive(data: Buffer, from: Endpoint, local: LocalEndpoint, now: number): Output<E> {
    if (this.dropRekeys && data[18] === ExchangeType.GSA_REKEY) return EMPTY_OUTPUT;
    return this.inner.receive(data, from, local, now);
  }
  timeout(now: number): Output<E> {
    return this.inner.timeout(now);
  }
  nextTimeout(): number | undefined {
    return this.inner.nextTimeout();
  }
}

interface Node<S, E> {
  readonly service: S;
  readonly adapter: UdpAdapter<E>;
  readonly events: E[];
  of<T extends string>(type: T): Extract<E, { type: T }>[];
}

type Gm = Node<GmService, GmServiceEvent> & { readonly inlet: Inlet<GmServiceEvent>; readonly name: string; joined: Promise<void> };
type Gcks = Node<GcksService, GcksServiceEvent>;

const PLANNER: RekeyPlannerOptions = { jitterMs: 0, retransmit: { copies: 2, spacingMs: 100 } };
const GCKS_RETRANSMIT = { initialMs: 200, factor: 1.5, maxMs: 400, maxTries: 2 } as const;

async function freePort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

class World {
  readonly clock = new JumpClock();
  readonly group = `239.${100 + (process.pid % 100)}.${randomBytes(1)[0]!}.${1 + (randomBytes(1)[0]! % 250)}`;
  port = 0;
  config!: GcksConfig;
  gcks!: Gcks;
  readonly gms: Gm[] = [];
  private nextHost = 2;

  async start(): Promise<void> {
    this.port = await freePort();
    this.config = loadGcksConfig(rekeyGcksYaml({ group: this.group, port: this.port, source: '127.0.0.1' }), 'rekey-e2e.yaml');
    const service = makeGcks(this.config, { now: this.clock.now(), rekey: PLANNER, retransmit: GCKS_RETRANSMIT, closeGraceMs: 3_000 });
    const events: GcksServiceEvent[] = [];
    const adapter = await UdpAdapter.open<GcksServiceEvent>(service, [{ address: '127.0.0.1', port: 0, marker: false, multicast: { interface: '127.0.0.1', loopback: true, ttl: 1 } }], {
      clock: this.clock,
      onEvent: (e) => events.push(e),
    });
    cleanups.push(() => adapter.close());
    this.gcks = { service, adapter, events, of: ofType(events) };
  }

  get gcksEndpoint(): Endpoint {
    return { address: '127.0.0.1', port: this.gcks.adapter.locals[0]!.port };
  }

  async member(name: string, groups: readonly ('video' | 'small')[]): Promise<Gm> {
    const service = makeGm(gmConfig(`${name}@example.org`, [this.gcksEndpoint], groups), { retransmit: GCKS_RETRANSMIT });
    const inlet = new Inlet<GmServiceEvent>(service);
    const events: GmServiceEvent[] = [];
    const self: { gm?: Gm } = {};
    const joinedSockets = new Set<string>();
    const adapter = await UdpAdapter.open<GmServiceEvent>(inlet, [{ address: `127.0.0.${this.nextHost++}`, port: 0, marker: false }], {
      clock: this.clock,
      onEvent: (e) => {
        events.push(e);
        // As a daemon would: join the Rekey SAs' multicast groups as registrations and KEK rekeys name them.
        const m = self.gm;
        if (e.type !== 'keys' || !m) return;
        for (const g of service.multicastGroups()) {
          const key = `${g.address}:${g.port}`;
          if (joinedSockets.has(key)) continue;
          joinedSockets.add(key);
          m.joined = m.joined.then(async () => {
            await m.adapter.addSocket({ address: g.address, port: g.port, marker: false, reuseAddr: true, multicast: { join: [g.address], interface: '127.0.0.1' } });
          });
        }
      },
    });
    cleanups.push(() => adapter.close());
    const gm: Gm = { service, adapter, events, of: ofType(events), inlet, name, joined: Promise.resolve() };
    self.gm = gm;
    this.gms.push(gm);
    adapter.act((now) => service.start(now));
    return gm;
  }

  /** Moves every adapter's clock forward and lets their timers fire. */
  async jump(ms: number): Promise<void> {
    this.clock.offset += ms;
    for (const a of [this.gcks.adapter, ...this.gms.map((g) => g.adapter)]) a.act(() => EMPTY_OUTPUT);
    await settle();
  }

  /** Jumps to the planner's next deadline for the group. */
  async jumpToPlannerDeadline(group: string): Promise<void> {
    const due = this.gcks.service.planner(group)!.nextDeadline()!;
    await this.jump(Math.max(0, due - this.clock.now()));
  }
}

function ofType<E>(events: E[]) {
  return <T extends string>(type: T): Extract<E, { type: T }>[] => events.filter((e): e is Extract<E, { type: T }> => (e as { type: string }).type === type);
}

const settle = (ms = 30): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 8_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await settle(10);
  }
}

async function allInSync(w: World, gms: readonly Gm[], group: string, what: string): Promise<void> {
  await waitFor(what, () => gms.every((g) => inSync(w.gcks.service, g.service, group)));
}

/** Everything a member's state says about the group, keys included, as comparable text. */
function snapshot(gm: Gm, group: string): string {
  const st = gm.service.rekeyState(group);
  const table = [...gm.service.saTable().groups].map((t) => ({
    kek: t.rekeySa?.spi.toString('hex'),
    next: t.rekeySa?.nextMessageId,
    ds: t.dataSecurity.map((sa) => `${sa.direction}:${sa.spi.toString('hex')}:${sa.keys.encrKey.toString('hex')}`),
  }));
  const kek = (k: FollowedRekeySa | undefined) => k && { spi: k.spi.toString('hex'), last: k.lastMessageId, e: k.keys.gskE.toString('hex'), retireAt: k.retireAt };
  return JSON.stringify({
    status: st?.status,
    kek: kek(st?.rekeySa),
    retiring: st?.retiringRekeySas.map(kek),
    path: st?.path?.keys.map((k) => `${k.keyId}:${k.key.toString('hex')}`),
    ds: st?.dataSecurity.map((sa) => `${sa.spi.toString('hex')}:${sa.direction}:${sa.activated}:${sa.deactivatesAt}`),
    announced: st?.announcedSpis,
    table,
  });
}

/** A GSA_REKEY over the group's current Rekey SA built by the test (valid unless told otherwise). */
function forge(w: World, opts: { messageId: number; signer?: RekeySigningKey; spi?: Buffer }): Buffer {
  const keys = w.gcks.service.groupKeys('mc')!;
  const kek = keys.rekeySa!;
  const policy = w.config.groups[0]!.rekey;
  assert.equal(policy.kind, 'multicast');
  if (policy.kind !== 'multicast') throw new Error('unreachable');
  const cipher = createSkCipher({ encr: policy.encryption.id, encrKeyBits: policy.encryption.keyBits, integ: policy.integrity }, rekeySaSkKeys(kek.keys));
  const signer = opts.signer ?? signingKey;
  return buildRekey({
    sa: { spi: opts.spi ?? kek.spi, cipher, signer: createRekeySigner(signer.privateKey, signer.algorithm) },
    messageId: opts.messageId,
    // Accepted, this would retire the group's TEK at once.
    deletes: [deleteSas(ProtocolId.ESP, [keys.dataSecurity[0]!.spi])],
  }).datagrams[0]!;
}

/** A socket on the group that records every GSA_REKEY on the wire and can inject datagrams. */
async function wiretap(w: World): Promise<{ readonly seen: Buffer[]; inject(data: Buffer): void }> {
  const listener = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((r) => listener.bind(w.port, w.group, r));
  listener.addMembership(w.group, '127.0.0.1');
  const seen: Buffer[] = [];
  listener.on('message', (m) => seen.push(m));
  const sender = dgram.createSocket('udp4');
  await new Promise<void>((r) => sender.bind(0, '127.0.0.1', r));
  sender.setMulticastInterface('127.0.0.1');
  sender.setMulticastLoopback(true);
  cleanups.push(async () => {
    await new Promise<void>((r) => listener.close(() => r()));
    await new Promise<void>((r) => sender.close(() => r()));
  });
  return { seen, inject: (data) => sender.send(data, w.port, w.group) };
}

function rejections(gm: Gm): string[] {
  return gm.of('rekey-rejected').map((e) => e.reason);
}

async function fiveMembers(w: World): Promise<Gm[]> {
  const gms: Gm[] = [];
  for (const n of ['a', 'b', 'c', 'd', 'f']) gms.push(await w.member(n, ['video']));
  await waitFor('five registrations', () => gms.every((g) => g.of('registered').length === 1));
  await Promise.all(gms.map((g) => g.joined));
  await allInSync(w, gms, 'mc', 'registration keys');
  return gms;
}

describe('rekeying end to end on loopback UDP multicast', () => {
  it('five members follow forced and scheduled rekeys of the TEKs and the KEK', async () => {
    const w = new World();
    await w.start();
    const gms = await fiveMembers(w);
    const rekeys = (): string[] => w.gcks.of('rekey-sent').map((e) => e.reason);

    for (const kind of ['tek', 'kek', 'all'] as const) {
      const before = w.gcks.service.groupKeys('mc')!;
      w.gcks.adapter.act((now) => w.gcks.service.rekeyGroup('mc', kind, now));
      const after = w.gcks.service.groupKeys('mc')!;
      assert.equal(after.rekeySa!.spi.equals(before.rekeySa!.spi), kind === 'tek', `${kind}: KEK replaced or not`);
      assert.equal(after.dataSecurity[0]!.spi.equals(before.dataSecurity[0]!.spi), kind === 'kek', `${kind}: TEK replaced or not`);
      await allInSync(w, gms, 'mc', `forced ${kind} rekey`);
    }
    assert.deepEqual(rekeys(), ['operator', 'operator', 'operator']);
    for (const g of gms) assert.ok(g.of('kek-updated').length === 2 && g.of('tek-installed').length === 2, `${g.name} followed every rekey`);

    // Scheduled: TEKs live 60 s (rekeyed 20 s ahead), the KEK 120 s (24 s ahead).
    const tekSpi = w.gcks.service.groupKeys('mc')!.dataSecurity[0]!.spi;
    await w.jumpToPlannerDeadline('mc');
    await waitFor('scheduled TEK rekey', () => rekeys().includes('tek-expiry'));
    assert.ok(!w.gcks.service.groupKeys('mc')!.dataSecurity[0]!.spi.equals(tekSpi));
    await allInSync(w, gms, 'mc', 'scheduled TEK rekey');
    for (let i = 0; i < 6 && !rekeys().includes('kek-expiry'); i++) {
      await w.jumpToPlannerDeadline('mc');
      await settle(100);
    }
    assert.ok(rekeys().includes('kek-expiry'), `KEK rekeyed on schedule: ${rekeys().join(',')}`);
    await allInSync(w, gms, 'mc', 'scheduled KEK rekey');
    // Past the deactivation delay the members hold exactly the server's SAs, nothing older.
    await w.jump(3_000);
    for (const g of gms) {
      const table = [...g.service.saTable().groups][0]!;
      assert.deepEqual(table.dataSecurity.map((sa) => sa.spi.toString('hex')), w.gcks.service.groupKeys('mc')!.dataSecurity.map((t) => t.spi.toString('hex')));
      assert.deepEqual(g.of("resync-needed").map((e) => `${e.reason}: ${e.detail}`), [], `${g.name} never needed to register again`);
      assert.equal(g.of('registered').length, 1);
    }
    const sent = w.gcks.of('rekey-sent');
    assert.ok(sent.every((e) => e.transport === 'multicast' && e.destination?.address === w.group && e.destination.port === w.port));
  });

  it('replayed, wrongly signed, bad-ICV, reused-Message-ID and unknown-SPI GSA_REKEYs are rejected by every member and change nothing', async () => {
    const w = new World();
    await w.start();
    const gms = await fiveMembers(w);
    const tap = await wiretap(w);
    w.gcks.adapter.act((now) => w.gcks.service.rekeyGroup('mc', 'tek', now));
    await allInSync(w, gms, 'mc', 'TEK rekey');
    await waitFor('the wiretap saw the rekey', () => tap.seen.length >= 2);
    await w.jump(3_000); // past DTD: nothing changes on its own from here

    const next = w.gcks.service.groupKeys('mc')!.rekeySa!.nextMessageId;
    assert.ok(next >= 1);
    const badIcv = forge(w, { messageId: next + 10 });
    badIcv[badIcv.length - 1]! ^= 0x01;
    const otherKey = rekeySigningKeyFrom(generateKeyPairSync('ed25519').privateKey);
    const cases: [string, Buffer][] = [
      ['replay', tap.seen[0]!],
      ['bad-signature', forge(w, { messageId: next + 10, signer: otherKey })],
      ['bad-icv', badIcv],
      ['replay', forge(w, { messageId: next - 1 })],
      ['unknown-spi', forge(w, { messageId: next + 10, spi: randomBytes(16) })],
    ];
    for (const [reason, datagram] of cases) {
      const before = gms.map((g) => snapshot(g, 'mc'));
      const counts = gms.map((g) => rejections(g).length);
      tap.inject(datagram);
      await waitFor(`${reason} rejected by every member`, () => gms.every((g, i) => rejections(g).length > counts[i]!));
      await settle(50);
      gms.forEach((g, i) => {
        assert.deepEqual(rejections(g).slice(counts[i]), [reason], `${g.name}: ${reason}`);
        assert.equal(snapshot(g, 'mc'), before[i], `${g.name}: ${reason} changed nothing`);
      });
    }
    // The key server's next real rekey is accepted by all.
    w.gcks.adapter.act((now) => w.gcks.service.rekeyGroup('mc', 'tek', now));
    await allInSync(w, gms, 'mc', 'a real rekey after the forgeries');
  });

  it('a member that misses a KEK rekey notices on the next one (GSA_NEXT_SPI), registers again and catches up', async () => {
    const w = new World();
    await w.start();
    const gms = await fiveMembers(w);
    const lost = gms[2]!;
    lost.inlet.dropRekeys = true;
    w.gcks.adapter.act((now) => w.gcks.service.rekeyGroup('mc', 'kek', now));
    await allInSync(w, gms.filter((g) => g !== lost), 'mc', 'the others follow the KEK rekey');
    await settle(300);
    lost.inlet.dropRekeys = false;
    assert.ok(!inSync(w.gcks.service, lost.service, 'mc'), 'the lost member is behind');
    w.gcks.adapter.act((now) => w.gcks.service.rekeyGroup('mc', 'tek', now));
    await waitFor('missed rekey detected', () => lost.of('resync-needed').some((e) => e.reason === 'missed-rekey'));
    const at = lost.of('resync-needed')[0]!.reregisterAt;
    await w.jump(Math.max(0, at - w.clock.now()));
    await waitFor('re-registration', () => lost.of('registered').length === 2);
    await allInSync(w, gms, 'mc', 'everyone in sync again');
  });

  it('excluding member F: the other four get the new keys, F cannot unwrap them, reports exclusion and is refused', async () => {
    const w = new World();
    await w.start();
    const gms = await fiveMembers(w);
    const tap = await wiretap(w);
    const f = gms[4]!;
    const others = gms.slice(0, 4);
    const fState = f.service.rekeyState('video') as FollowerState;
    const oldKek = fState.rekeySa!;
    const fKeys = [...fState.path!.keys.map((k) => k.key), oldKek.keys.gskW];

    w.gcks.adapter.act((now) => w.gcks.service.excludeMember('mc', 'f@example.org', now));
    assert.deepEqual(w.gcks.of('member-excluded').map((e) => `${e.member}:${e.cause}`), ['f@example.org:operator']);
    assert.deepEqual(w.gcks.service.members('mc').map((m) => m.member).sort(), ['a@example.org', 'b@example.org', 'c@example.org', 'd@example.org']);
    await allInSync(w, others, 'mc', 'the four follow the exclusion rekey');
    await waitFor('F learns it is excluded', () => f.of('excluded').length === 1);
    assert.equal(f.of('excluded')[0]!.cause, 'key-path');
    assert.equal(f.service.rekeyState('video')!.status, 'excluded');
    assert.ok(!inSync(w.gcks.service, f.service, 'mc'), 'F does not hold the new keys');
    const newTek = w.gcks.service.groupKeys('mc')!.dataSecurity[0]!.spi;
    assert.ok(![...f.service.saTable().groups][0]!.dataSecurity.some((sa) => sa.spi.equals(newTek)));

    // Cryptographically: message 1 (over the old KEK, which F holds) carries the new KEK under keys F lacks.
    await waitFor('both exclusion messages seen', () => tap.seen.length >= 2);
    const receiver = new RekeyReceiver();
    const sa = {
      spi: oldKek.spi,
      cipher: createSkCipher({ encr: oldKek.encryption.id, encrKeyBits: oldKek.encryption.keyBits, integ: oldKek.integrity }, rekeySaSkKeys(oldKek.keys)),
      auth: oldKek.auth,
      initialMessageId: 0,
      lastMessageId: undefined,
    };
    const first = tap.seen.find((d) => d.subarray(0, 16).equals(oldKek.spi))!;
    const receipt = receiver.receive(first, (spi) => (spi.equals(oldKek.spi) ? sa : undefined), 0);
    assert.equal(receipt.status, 'accepted');
    if (receipt.status !== 'accepted') return;
    const kekBag = receipt.kd!.keyBags.find((b) => b.kind === 'group' && b.protocol === ProtocolId.GIKE_UPDATE)!;
    assert.equal(kekBag.kind, 'group');
    const wrapped = [...(kekBag.kind === 'group' ? saKeysOf(kekBag) : []), ...receipt.kd!.keyBags.flatMap((b) => (b.kind === 'member' ? wrapKeysOf(b) : []))];
    assert.ok(wrapped.length > 0);
    for (const k of wrapped) for (const key of fKeys) assert.throws(() => unwrapKey(oldKek.keyWrap, key, k.encryptedKey));
    // Message 2 travels over the new KEK: F does not even know its SPI.
    assert.ok(tap.seen.some((d) => !d.subarray(0, 16).equals(oldKek.spi)));

    // F registers again after a few seconds and is refused until readmitted.
    const reregisterAt = f.of('excluded')[0]!.reregisterAt;
    await w.jump(Math.max(0, reregisterAt - w.clock.now()));
    await waitFor('F refused', () => f.of('error').some((e) => e.notify === 'AUTHORIZATION_FAILED'));
    assert.equal(w.gcks.of('registration-rejected').at(-1)?.member, 'f@example.org');
    w.gcks.adapter.act((now) => w.gcks.service.rekeyGroup('mc', 'all', now));
    await allInSync(w, others, 'mc', 'the four keep following');
    assert.ok(!inSync(w.gcks.service, f.service, 'mc'));
  });

  it('inband group: a rekey reaches every member over its IKE SA; a silent member is removed', async () => {
    const w = new World();
    await w.start();
    const gms = [await w.member('p', ['small']), await w.member('q', ['small']), await w.member('r', ['small'])];
    await waitFor('registrations', () => gms.every((g) => g.of('registered').length === 1));
    await allInSync(w, gms, 'ib', 'registration keys');
    w.gcks.adapter.act((now) => w.gcks.service.rekeyGroup('ib', 'tek', now));
    assert.deepEqual(w.gcks.of('rekey-sent').map((e) => `${e.transport}:${e.copies}`), ['inband:3']);
    await allInSync(w, gms, 'ib', 'inband rekey');
    for (const g of gms) assert.equal(g.of('tek-installed').length, 1);

    const silent = gms[1]!;
    await silent.adapter.close();
    w.gcks.adapter.act((now) => w.gcks.service.rekeyGroup('ib', 'tek', now));
    await waitFor('the silent member gives up', () => w.gcks.of('inband-rekey-failed').length === 1, 10_000);
    assert.equal(w.gcks.of('inband-rekey-failed')[0]!.member, 'q@example.org');
    await waitFor('removed', () => w.gcks.of('member-excluded').some((e) => e.member === 'q@example.org' && e.cause === 'ike-sa-lost'));
    assert.deepEqual(w.gcks.service.members('ib').map((m) => m.member).sort(), ['p@example.org', 'r@example.org']);
    // Its exclusion rekeyed the TEKs once more for the two that remain.
    const live = [gms[0]!, gms[2]!];
    await allInSync(w, live, 'ib', 'the remaining members follow');
    for (const g of live) assert.equal(g.of('tek-installed').length, 3);
  });
});
