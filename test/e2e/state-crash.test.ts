/**
 * Issue 6, "Shown by": the real key server daemon (`gikev2 gcks --state DIR
 * --state-key-file FILE --control SOCK`) on a fixed loopback port, one group
 * with a multicast Rekey SA (239.x, loopback on); members in this process
 * following its rekeys over real loopback multicast (wiring as in
 * rekey.test.ts). Rekeys go through the control socket (what `gikev2 ctl`
 * sends); the key server's facts come from its JSON log lines
 * (member-registered, rekey-sent, group) and `status`. The process is
 * killed with SIGKILL at random points (idle, a few milliseconds after a
 * rekey command: before, during or after its commit, or while the
 * GSA_REKEY's copies are still going out) and restarted on the same state
 * directory with the same KEK, over and over; now and then a new sender
 * registers.
 *
 * Afterwards: every member's accepted GSA_REKEY Message IDs increased
 * strictly per Rekey SA, no (TEK, Sender-ID) pair was held by two senders,
 * no SPI came back, no member registered again, and the audit log holds
 * every registration that completed.
 *
 * The daemon sends each GSA_REKEY 3 times, 1 s apart, and the next one only
 * after that (RekeyPlanner defaults), so every rekey costs 3 s: the run
 * keeps to about one rekey per kill.
 *
 * Randomness is seeded: STATE_CRASH_SEED=<n> repeats a run (the seed is printed).
 */
import { strict as assert } from 'node:assert';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { systemRandom } from '../../src/crypto/random.ts';
import { GmService, type GmServiceEvent } from '../../src/gm/service.ts';
import type { DatagramEngine, Endpoint, LocalEndpoint, Output } from '../../src/ike/io-types.ts';
import { monotonicClock } from '../../src/node/clock.ts';
import { sendControlRequest, type ControlRekeyKind } from '../../src/node/control.ts';
import { UdpAdapter } from '../../src/node/udp.ts';
import { StateKek } from '../../src/store/encryption.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { ExchangeType } from '../../src/wire/iana.ts';
import { gmConfig } from '../registration/fixtures.ts';
import { CliProcess, freeUdpPort } from './daemon-harness.ts';

const KILLS = 22;
const SEED = Number(process.env['STATE_CRASH_SEED'] ?? randomBytes(4).readUInt32BE(0));
const PSK = 'state crash test pre-shared key';
const GROUP = 'mc';

/** mulberry32: small, seedable. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(SEED);
const between = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;

const tmp = mkdtempSync(join(tmpdir(), 'gikev2-state-crash-'));
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(tmp, { recursive: true, force: true });
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 8_000, detail: () => string = () => ''): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what} (seed ${SEED})\n${detail()}`);
    await sleep(10);
  }
}

// ------------------------------------------------------------ the key server daemon

interface ServerKeys {
  readonly teks: readonly string[];
  readonly kek?: string | undefined;
}

interface DaemonSpec {
  readonly config: string;
  readonly stateDir: string;
  readonly keyFile: string;
  readonly socket: string;
}

function gcksYaml(port: number, rekeyGroup: string, rekeyPort: number): string {
  return `
identity: "@gcks.example"
listen:
  - {address: 127.0.0.1, port: ${port}}
credentials:
  psks:
    - member: any
      secret: "${PSK}"
groups:
  - name: ${GROUP}
    id: {type: ID_KEY_ID, value: video}
    capacity: 64
    members: {any: true}
    senders: {any: true}
    activationDelay: 0
    deactivationDelay: 2
    dataSecurity:
      - destination: {address: 239.1.1.1, protocol: udp, port: 5000}
        lifetime: 3600
    rekey:
      destination: {address: ${rekeyGroup}, port: ${rekeyPort}}
      source: {address: 127.0.0.1}
      signingKey: rekey.pem
      lifetime: 7200
`;
}

interface GroupStatus {
  readonly rekeySpi: string | null;
  readonly dataSecuritySpis: string[];
}

const keysOf = (g: GroupStatus): ServerKeys => ({ teks: [...g.dataSecuritySpis], kek: g.rekeySpi ?? undefined });

async function control(socket: string, request: Readonly<Record<string, unknown>>): Promise<Record<string, unknown>> {
  const response = await sendControlRequest(socket, request, 5_000);
  if (!response.ok) throw new Error(`control ${JSON.stringify(request)}: ${response.error}`);
  return response.result as Record<string, unknown>;
}

async function groupStatus(socket: string): Promise<GroupStatus> {
  const groups = (await control(socket, { command: 'status' }))['groups'] as (GroupStatus & { name: string })[];
  const g = groups.find((x) => x.name === GROUP);
  assert.ok(g, JSON.stringify(groups));
  return g;
}

/** One `gikev2 gcks` process; resolves once it listens and its control socket answers, with the group's SPIs. */
async function launchDaemon(spec: DaemonSpec, n: number): Promise<{ server: CliProcess; keys: ServerKeys }> {
  const server = new CliProcess(`gcks#${n}`, ['gcks', '-c', spec.config, '--state', spec.stateDir, '--state-key-file', spec.keyFile, '--control', spec.socket, '--log-format', 'json']);
  cleanups.push(() => server.kill());
  const [group] = await server.waitForEvent('group', 1, (l) => l['group'] === GROUP);
  await server.waitForEvent('started');
  const logged: ServerKeys = { teks: group!['dataSecuritySpis'] as string[], kek: group!['rekeySpi'] as string | undefined };
  const keys = keysOf(await groupStatus(spec.socket));
  assert.deepEqual(keys, logged, 'status and the start-up log agree on the group SAs');
  return { server, keys };
}

// ------------------------------------------------------------ members

/** Records, after every GSA_REKEY, the Message IDs the member's state has accepted per Rekey SA SPI. */
class Recorder<E> implements DatagramEngine<E> {
  /** SPI (hex) -> Message IDs in the order accepted. */
  readonly accepted = new Map<string, number[]>();
  constructor(
    private readonly inner: DatagramEngine<E>,
    private readonly state: () => { spi: string; last: number | undefined }[],
  ) {}
  receive(data: Buffer, from: Endpoint, local: LocalEndpoint, now: number): Output<E> {
    const out = this.inner.receive(data, from, local, now);
    if (data[18] === ExchangeType.GSA_REKEY) {
      for (const { spi, last } of this.state()) {
        if (last === undefined) continue;
        const list = this.accepted.get(spi) ?? [];
        if (list.at(-1) !== last) list.push(last);
        this.accepted.set(spi, list);
      }
    }
    return out;
  }
  timeout(now: number): Output<E> {
    return this.inner.timeout(now);
  }
  nextTimeout(): number | undefined {
    return this.inner.nextTimeout();
  }
}

interface Member {
  readonly name: string;
  readonly sender: boolean;
  readonly service: GmService;
  readonly adapter: UdpAdapter<GmServiceEvent>;
  readonly recorder: Recorder<GmServiceEvent>;
  readonly events: GmServiceEvent[];
  joined: Promise<void>;
  of<T extends GmServiceEvent['type']>(type: T): Extract<GmServiceEvent, { type: T }>[];
}

async function member(name: string, server: Endpoint, sender: boolean): Promise<Member> {
  const config = gmConfig(`${name}@example.org`, [server], [sender ? { id: 'video', role: 'sender', senderIds: 1 } : 'video'], PSK);
  const service = new GmService(config, { rng: systemRandom, retransmit: { initialMs: 300, factor: 2, maxMs: 1000, maxTries: 3 } });
  const recorder = new Recorder<GmServiceEvent>(service, () => {
    const st = service.rekeyState('video');
    const list = [...(st?.retiringRekeySas ?? []), ...(st?.rekeySa ? [st.rekeySa] : [])];
    return list.map((k) => ({ spi: k.spi.toString('hex'), last: k.lastMessageId }));
  });
  const events: GmServiceEvent[] = [];
  const joinedSockets = new Set<string>();
  const self: { m?: Member } = {};
  const adapter = await UdpAdapter.open<GmServiceEvent>(recorder, [{ address: '127.0.0.1', port: 0, marker: false }], {
    clock: monotonicClock,
    onEvent: (e) => {
      events.push(e);
      const m = self.m;
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
  const m: Member = {
    name,
    sender,
    service,
    adapter,
    recorder,
    events,
    joined: Promise.resolve(),
    of: <T extends GmServiceEvent['type']>(type: T) => events.filter((e): e is Extract<GmServiceEvent, { type: T }> => e.type === type),
  };
  self.m = m;
  adapter.act((now) => service.start(now));
  return m;
}

function heldKeys(m: Member): ServerKeys {
  const table = [...m.service.saTable().groups][0];
  return { teks: table?.dataSecurity.map((sa) => sa.spi.toString('hex')) ?? [], kek: table?.rekeySa?.spi.toString('hex') };
}

/** The member holds the server's Rekey SA and every current TEK (older TEKs may linger for DTD). */
function follows(m: Member, k: ServerKeys): boolean {
  const held = heldKeys(m);
  return held.kek === k.kek && k.teks.every((t) => held.teks.includes(t));
}

// ------------------------------------------------------------ the test

describe('the real key server daemon with durable state, killed with SIGKILL at random points', { timeout: 150_000 }, () => {
  it(`members follow rekeys across ${KILLS} crashes; nothing repeats; the audit log is complete`, async () => {
    console.log(`state-crash seed ${SEED} (STATE_CRASH_SEED=${SEED} repeats it)`);
    const started = Date.now();
    const kekHex = randomBytes(32).toString('hex');
    const port = await freeUdpPort();
    const spec: DaemonSpec = {
      config: join(tmp, 'gcks.yaml'),
      stateDir: join(tmp, 'state'),
      keyFile: join(tmp, 'state.key'),
      socket: join(tmp, 'ctl.sock'),
    };
    writeFileSync(spec.keyFile, `${kekHex}\n`, { mode: 0o600 });
    writeFileSync(join(tmp, 'rekey.pem'), generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    writeFileSync(spec.config, gcksYaml(port, `239.${100 + (process.pid % 100)}.${between(0, 255)}.${between(1, 250)}`, await freeUdpPort()));
    const endpoint: Endpoint = { address: '127.0.0.1', port };
    const servers: CliProcess[] = [];
    const launch = async (): Promise<{ server: CliProcess; keys: ServerKeys }> => {
      const launched = await launchDaemon(spec, servers.length);
      servers.push(launched.server);
      return launched;
    };
    /** Every Rekey SA / TEK set the server reported as current, in order. */
    const history: ServerKeys[] = [];
    const members: Member[] = [];
    const detail = (k: ServerKeys) => (): string => `server ${JSON.stringify(k)}\n${members.map((m) => `${m.name}: ${JSON.stringify(heldKeys(m))} ${JSON.stringify(m.events.filter((e) => e.type !== 'keys').slice(-4))}`).join('\n')}`;
    const inSync = (k: ServerKeys, what: string): Promise<void> => waitFor(what, () => members.every((m) => follows(m, k)), 10_000, detail(k));
    const addMember = async (name: string, sender: boolean): Promise<void> => {
      const m = await member(name, endpoint, sender);
      members.push(m);
      await waitFor(`${name} registered`, () => m.of('registered').length === 1 && m.of('keys').length > 0, 10_000);
      await m.joined;
    };
    /** Rekeys the control socket confirmed (each was committed, hence audited). */
    let confirmed = 0;
    const rekeyCommand = async (kind: ControlRekeyKind): Promise<ServerKeys> => {
      const k = keysOf((await control(spec.socket, { command: 'rekey', group: GROUP, kind })) as unknown as GroupStatus);
      confirmed++;
      history.push(k);
      return k;
    };

    let { server, keys } = await launch();
    history.push(keys);
    for (const [name, sender] of [['a', false], ['b', false], ['c', false], ['s0', true]] as const) await addMember(name, sender);
    let senders = 1;

    const modes: string[] = [];
    for (let kill = 1; kill <= KILLS; kill++) {
      if (kill % 5 === 0) await addMember(`s${senders++}`, true);
      // The kill: idle, a random few milliseconds after a rekey command (before, during or after
      // its commit), or while the GSA_REKEY's copies go out.
      const mode = pick(['idle', 'idle', 'mid-command', 'mid-command', 'mid-copies']);
      modes.push(mode);
      let pending: Promise<unknown> = Promise.resolve();
      if (mode === 'mid-command') {
        pending = rekeyCommand(pick(['tek', 'kek', 'all'] as const)).catch(() => undefined);
        await sleep(between(0, 120));
      } else if (mode === 'mid-copies') {
        await rekeyCommand(pick(['tek', 'kek', 'all'] as const));
        await sleep(between(0, 2_200));
      } else {
        await sleep(between(0, 200));
      }
      server.signal('SIGKILL');
      const exit = await server.exited;
      assert.equal(exit.signal, 'SIGKILL');
      await pending;
      ({ server, keys } = await launch());
      history.push(keys);
      // Whatever the killed process committed is what the new one has; queued GSA_REKEYs go out from it.
      await inSync(keys, `members follow the restored key server (kill ${kill}, ${mode})`);
    }
    keys = await rekeyCommand('all');
    await inSync(keys, 'members follow the last rekey');
    await sleep(300); // late retransmissions
    server.signal('SIGTERM');
    assert.equal((await server.exited).code, 0, server.stderr);
    console.log(
      `state-crash: ${KILLS} kills (${modes.filter((m) => m === 'mid-command').length} a few ms after a rekey command, ${modes.filter((m) => m === 'mid-copies').length} while copies went out), ` +
        `${confirmed} rekeys confirmed, ${members.length} members, ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );

    // 1. Rekey SA Message IDs strictly increased per SPI, as every member accepted them.
    let accepted = 0;
    for (const m of members) {
      for (const [spi, ids] of m.recorder.accepted) {
        accepted += ids.length;
        for (let i = 1; i < ids.length; i++) assert.ok(ids[i]! > ids[i - 1]!, `${m.name}: Message IDs over Rekey SA ${spi} went ${ids.join(',')} (seed ${SEED})`);
      }
    }
    assert.ok(accepted >= KILLS * 2, `members accepted ${accepted} GSA_REKEYs`);
    const wire = servers.flatMap((s) => s.events('rekey-sent')).filter((e) => e['group'] === GROUP);
    assert.ok(wire.length >= confirmed, `the key servers logged ${wire.length} GSA_REKEYs sent, ${confirmed} rekeys confirmed`);
    const perSpi = new Map<string, number[]>();
    for (const e of wire) perSpi.set(String(e['rekeySpi']), [...(perSpi.get(String(e['rekeySpi'])) ?? []), Number(e['messageId'])]);
    for (const [spi, ids] of perSpi) for (let i = 1; i < ids.length; i++) assert.ok(ids[i]! > ids[i - 1]!, `server sent Message IDs ${ids.join(',')} over ${spi}`);

    // 2. No Sender-ID twice under the same TEK: no (TEK SPI, Sender-ID) pair held by two senders.
    const holder = new Map<string, string>();
    const senderMembers = members.filter((m) => m.sender);
    assert.equal(senderMembers.length, senders);
    for (const m of senderMembers) {
      const ids = m.of('keys').at(-1)!.senderIds;
      assert.ok(ids.length > 0, `${m.name} got a Sender-ID`);
      const teks = new Set(m.of('keys').flatMap((e) => e.dataSecurity.map((sa) => sa.spi)));
      for (const tek of teks) {
        for (const id of ids) {
          const other = holder.get(`${tek}/${id}`);
          assert.equal(other, undefined, `Sender-ID ${id} under TEK ${tek} issued to ${other} and ${m.name} (seed ${SEED})`);
          holder.set(`${tek}/${id}`, m.name);
        }
      }
    }
    const registered = servers.flatMap((s) => s.events('member-registered'));
    const issued = registered.filter((e) => e['sender'] === true);
    assert.equal(issued.length, senders, 'the key servers logged every sender registration');
    const seen = new Set<string>();
    for (const e of issued) {
      for (const tek of e['dataSecuritySpis'] as string[]) {
        for (const id of e['senderIds'] as number[]) {
          assert.ok(!seen.has(`${tek}/${id}`), `the key server issued Sender-ID ${id} under TEK ${tek} twice`);
          seen.add(`${tek}/${id}`);
        }
      }
    }

    // 3. No SPI came back: each TEK and Rekey SA SPI is current in one stretch of the history only,
    //    and no member installed a TEK or a Rekey SA twice.
    for (const [label, spisOf] of [['TEK', (k: ServerKeys) => k.teks], ['Rekey SA', (k: ServerKeys) => (k.kek ? [k.kek] : [])]] as const) {
      const done = new Set<string>();
      let current = new Set<string>();
      for (const k of history) {
        const now = new Set(spisOf(k));
        for (const spi of now) assert.ok(current.has(spi) || !done.has(spi), `${label} SPI ${spi} came back (seed ${SEED})`);
        for (const spi of current) if (!now.has(spi)) done.add(spi);
        current = now;
      }
    }
    for (const m of members) {
      const installed = m.of('tek-installed').map((e) => `${e.spi}/${e.direction}`);
      assert.equal(new Set(installed).size, installed.length, `${m.name} installed a TEK SPI twice: ${installed.join(',')}`);
      const keks = m.of('kek-updated').map((e) => e.spi);
      assert.equal(new Set(keks).size, keks.length, `${m.name} was given a Rekey SA SPI twice: ${keks.join(',')}`);
    }

    // 4. Members kept following without registering again.
    for (const m of members) {
      assert.ok(follows(m, keys), `${m.name} follows the last rekey`);
      assert.equal(m.of('registered').length, 1, `${m.name} registered once`);
      assert.deepEqual(m.of('key-server').filter((e) => e.state !== 'connected').map((e) => e.state), ['trying'], `${m.name}: one GSA_AUTH exchange only`);
      assert.deepEqual(m.of('resync-needed').map((e) => `${e.reason}: ${e.detail}`), [], `${m.name} never needed to register again`);
      assert.deepEqual(m.of('excluded'), []);
      // Rejected: only retransmitted copies (replays), or late copies over a Rekey SA of the
      // group that the member never held (it registered after) or had already retired.
      const stale = (e: Extract<GmServiceEvent, { type: 'rekey-rejected' }>): boolean =>
        e.reason === 'replay' || (e.reason === 'unknown-spi' && history.some((k) => k.kek !== undefined && e.detail.includes(k.kek) && k.kek !== keys.kek));
      assert.deepEqual(m.of('rekey-rejected').filter((e) => !stale(e)).map((e) => `${e.reason}: ${e.detail}`), [], `${m.name}: only stale copies were rejected`);
    }
    for (const s of servers) assert.deepEqual(s.events('member-registered').filter((e) => e['reregistration'] === true), [], `${s.name}: nobody re-registered`);

    // 5. The audit log has every completed registration (as members and the key server saw them).
    const store = SqliteStore.open({ stateDir: spec.stateDir, kek: new StateKek(Buffer.from(kekHex, 'hex')) });
    try {
      const audit = store.queryAudit({ kind: 'registration' });
      const audited = audit.map((a) => String((a.details as Record<string, unknown>)['member']));
      for (const m of members) assert.equal(audited.filter((x) => x === `${m.name}@example.org`).length, 1, `${m.name}'s registration in the audit log: ${audited.join(',')}`);
      assert.equal(audit.length, registered.length, 'every registration the key server logged is audited');
      assert.ok(store.queryAudit({ kind: 'rekey' }).length >= confirmed, 'every confirmed rekey is audited');
    } finally {
      store.close();
    }
  });
});
