/**
 * Registration benchmark: members registering concurrently to one group of
 * one key server over loopback.
 *
 *   npx tsx bench/registration.ts [--members N (default 5000; 10000 for the target)] [--auth psk|ecdsa|both]
 *       [--concurrency C] [--generators G] [--profile] [--state]
 *
 * --state runs every case twice, in memory and with durable state (the
 * daemon's SQLite store in a temporary directory, a generated KEK, as
 * `gikev2 gcks --state DIR`), and prints them side by side with the ratio
 * (issue 6: persistence within 80 % of the in-memory figure); results go to
 * bench/results/registration-state.json.
 *
 * The key server (the real GcksDaemon) runs in its own process so that its
 * CPU time and memory are its own; G load generator processes run the
 * members (real GmService instances, many per process, sharing one socket
 * per loopback source address). Prints registrations per second, p50/p99
 * latency and the key server's memory per registered member (heap + external
 * after a full GC, minus the idle server) right after the last registration
 * (registration IKE SAs still open) and after the key server closed them
 * (steady state). Writes bench/results/registration.json.
 *
 * Target (issue 4): 10,000 members to one group in under 30 s on a 2-core
 * machine, under 4 KiB of server memory per registered member.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { createSelfSignedCa, issueEndEntity } from '../src/crypto/x509-builder.ts';
import type { AuthKind, LoadReply, LoadStart, ServerReply, ServerRequest, ServerStats } from './registration-common.ts';

const here = fileURLToPath(new URL('.', import.meta.url));

interface Options {
  readonly members: number;
  readonly auths: readonly AuthKind[];
  readonly concurrency: number;
  readonly generators: number;
  readonly profile: boolean;
  readonly state: boolean;
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      members: { type: 'string' },
      auth: { type: 'string' },
      concurrency: { type: 'string' },
      generators: { type: 'string' },
      profile: { type: 'boolean' },
      state: { type: 'boolean' },
    },
  });
  const auth = values.auth ?? 'both';
  if (!['psk', 'ecdsa', 'both'].includes(auth)) throw new Error('--auth psk|ecdsa|both');
  return {
    members: Number(values.members ?? 5_000),
    auths: auth === 'both' ? ['psk', 'ecdsa'] : [auth as AuthKind],
    concurrency: Number(values.concurrency ?? 128),
    generators: Number(values.generators ?? 1),
    profile: values.profile ?? false,
    state: values.state ?? false,
  };
}

/** A child process spoken to over IPC. */
class Child<Req, Rep extends { kind: string }> {
  private readonly queue: Rep[] = [];
  private waiters: ((m: Rep) => void)[] = [];
  constructor(readonly proc: ChildProcess) {
    proc.on('message', (m: Rep) => {
      const w = this.waiters.shift();
      if (w) w(m);
      else this.queue.push(m);
    });
    proc.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
  }
  send(m: Req): void {
    this.proc.send(m as object);
  }
  next(): Promise<Rep> {
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  async expect<K extends Rep['kind']>(kind: K): Promise<Extract<Rep, { kind: K }>> {
    const m = await this.next();
    if (m.kind !== kind) throw new Error(`expected ${kind}, got ${JSON.stringify(m).slice(0, 2000)}`);
    return m as Extract<Rep, { kind: K }>;
  }
}

function spawnChild<Req, Rep extends { kind: string }>(script: string, extraArgs: string[] = []): Child<Req, Rep> {
  return new Child(fork(`${here}${script}`, [], { execArgv: ['--import', 'tsx', ...extraArgs, ...(process.env['BENCH_CHILD_ARGS'] ?? '').split(' ').filter(Boolean)], stdio: ['ignore', 'inherit', 'pipe', 'ipc'] }));
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function sourceAddresses(count: number, generator: number): string[] {
  // 127.0.0.0/8 is all loopback on Linux; each generator gets its own /16.
  return Array.from({ length: count }, (_, i) => `127.${10 + generator}.${Math.floor(i / 250)}.${(i % 250) + 1}`);
}

type Persistence = 'memory' | 'sqlite';

interface Result {
  readonly auth: AuthKind;
  readonly persistence: Persistence;
  readonly members: number;
  readonly registered: number;
  readonly serverMembers: number;
  readonly errors: number;
  readonly seconds: number;
  readonly registrationsPerSecond: number;
  readonly latencyMs: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly server: {
    readonly cpuSeconds: number;
    readonly cpuUtilisation: number;
    readonly bytesPerMemberWithIkeSas: number;
    readonly bytesPerMemberSteady: number;
    readonly ikeSasAtEnd: number;
    readonly ikeSasSteady: number;
    readonly rssMiB: number;
    readonly rejected: number;
    readonly engineErrors: number;
    readonly messagesReceivedPerMember: number;
    readonly messagesSentPerMember: number;
  };
  readonly loadGeneratorCpuSeconds: number;
  readonly errorSamples: readonly string[];
}

async function runOne(auth: AuthKind, persistence: Persistence, o: Options): Promise<Result> {
  let pki: { ca: string; caKey: string; cert: string; key: string } | undefined;
  if (auth === 'ecdsa') {
    const now = Date.now();
    const validity = { notBefore: new Date(now - 3600_000), notAfter: new Date(now + 86400_000) };
    const ca = createSelfSignedCa({ subject: { O: 'gikev2 bench', CN: 'bench CA' }, keySpec: 'ec-p256', ...validity });
    const server = issueEndEntity(ca, { subject: { O: 'gikev2 bench', CN: 'gcks.bench.example' }, keySpec: 'ec-p256', subjectAltName: { dns: ['gcks.bench.example'] }, ...validity });
    pki = {
      ca: ca.pem,
      caKey: ca.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      cert: server.pem,
      key: server.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    };
  }
  const server = spawnChild<ServerRequest, ServerReply>('registration-server.ts', ['--expose-gc']);
  const profileFile = o.profile ? `${here}results/registration-${auth}${persistence === 'sqlite' ? '-state' : ''}.cpuprofile` : undefined;
  server.send({ kind: 'start', auth, capacity: o.members + 10, pki: pki && { ca: pki.ca, cert: pki.cert, key: pki.key }, profile: profileFile, state: persistence === 'sqlite' });
  const { port } = await server.expect('listening');
  server.send({ kind: 'stats' });
  const idle = await server.expect('stats');

  const perSource = 4;
  const sourcesTotal = Math.max(1, Math.ceil(o.concurrency / perSource));
  const generators = Array.from({ length: o.generators }, () => spawnChild<LoadStart | { kind: 'go' } | { kind: 'stop' }, LoadReply>('registration-load.ts'));
  const per = Math.ceil(o.members / o.generators);
  generators.forEach((g, i) => {
    const count = Math.max(0, Math.min(per, o.members - i * per));
    g.send({
      kind: 'start',
      auth,
      port,
      first: i * per,
      count,
      perSource,
      sources: sourceAddresses(Math.ceil(sourcesTotal / o.generators), i),
      pki: pki && { ca: pki.ca, caKey: pki.caKey },
      deadlineMs: 240_000,
    });
  });
  for (const g of generators) await g.expect('ready');
  server.send({ kind: 'stats' });
  const before = await server.expect('stats');
  for (const g of generators) g.send({ kind: 'go' });
  const done = await Promise.all(generators.map((g) => g.expect('done')));
  server.send({ kind: 'stats' });
  const atEnd = await server.expect('stats');

  // Steady state: the key server closes registration IKE SAs ~5 s after the last exchange.
  let steady: ServerStats = atEnd;
  for (let i = 0; i < 40 && steady.ikeSas > 0; i++) {
    await new Promise((r) => setTimeout(r, 500));
    server.send({ kind: 'stats' });
    steady = await server.expect('stats');
  }
  for (const g of generators) g.send({ kind: 'stop' });
  server.send({ kind: 'stop' });
  await server.expect('stopped');

  const latencies = done.flatMap((d) => d.latenciesMs).sort((a, b) => a - b);
  const seconds = (Math.max(...done.map((d) => d.lastDone)) - Math.min(...done.map((d) => d.firstStart))) / 1000;
  const registered = atEnd.members;
  const perMember = (s: ServerStats): number => (registered > 0 ? Math.round((s.memory - idle.memory) / registered) : NaN);
  const cpuSeconds = (atEnd.cpuMicros - before.cpuMicros) / 1e6;
  return {
    auth,
    persistence,
    members: o.members,
    serverMembers: registered,
    errors: done.reduce((n, d) => n + d.errors, 0),
    seconds: round(seconds, 2),
    registered: latencies.length,
    registrationsPerSecond: Math.round(latencies.length / seconds),
    latencyMs: { p50: round(percentile(latencies, 50), 1), p99: round(percentile(latencies, 99), 1), max: round(latencies[latencies.length - 1] ?? NaN, 1) },
    server: {
      cpuSeconds: round(cpuSeconds, 2),
      cpuUtilisation: round(cpuSeconds / seconds, 2),
      bytesPerMemberWithIkeSas: perMember(atEnd),
      bytesPerMemberSteady: perMember(steady),
      ikeSasAtEnd: atEnd.ikeSas,
      ikeSasSteady: steady.ikeSas,
      rssMiB: round(steady.rss / 2 ** 20, 1),
      rejected: steady.rejected,
      engineErrors: steady.engineErrors,
      messagesReceivedPerMember: round((atEnd.ikeReceived - before.ikeReceived) / Math.max(1, registered), 2),
      messagesSentPerMember: round((atEnd.ikeSent - before.ikeSent) / Math.max(1, registered), 2),
    },
    loadGeneratorCpuSeconds: round(done.reduce((n, d) => n + d.cpuMicros, 0) / 1e6, 2),
    errorSamples: done.flatMap((d) => d.errorSamples).slice(0, 5),
  };
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

async function main(): Promise<void> {
  const o = options();
  const results: Result[] = [];
  const modes: Persistence[] = o.state ? ['memory', 'sqlite'] : ['memory'];
  for (const auth of o.auths) {
    for (const persistence of modes) {
      process.stderr.write(`registering ${o.members} members with ${auth}, state ${persistence} (concurrency ${o.concurrency}, ${o.generators} load generator(s))...\n`);
      results.push(await runOne(auth, persistence, o));
    }
  }
  const rows = results.map((r) => [
    r.auth === 'psk' ? 'X25519 + PSK' : 'X25519 + ECDSA P-256 certs',
    r.persistence === 'sqlite' ? 'SQLite' : 'in memory',
    `${r.registered}/${r.members}`,
    r.seconds.toFixed(1),
    String(r.registrationsPerSecond),
    r.latencyMs.p50.toFixed(1),
    r.latencyMs.p99.toFixed(1),
    `${r.server.cpuSeconds.toFixed(1)} (${Math.round(r.server.cpuUtilisation * 100)}%)`,
    String(r.server.bytesPerMemberWithIkeSas),
    String(r.server.bytesPerMemberSteady),
    String(r.errors),
  ]);
  const head = ['authentication', 'state', 'registered', 'seconds', 'reg/s', 'p50 ms', 'p99 ms', 'server CPU s', 'B/member (SAs open)', 'B/member (steady)', 'errors'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  console.log(line(head));
  for (const r of rows) console.log(line(r));
  for (const r of results) for (const s of r.errorSamples) console.log(`  ${r.auth}: ${s}`);
  const ratios = o.auths.flatMap((auth) => {
    const mem = results.find((r) => r.auth === auth && r.persistence === 'memory');
    const db = results.find((r) => r.auth === auth && r.persistence === 'sqlite');
    return mem && db ? [{ auth, memory: mem.registrationsPerSecond, sqlite: db.registrationsPerSecond, ratio: round(db.registrationsPerSecond / mem.registrationsPerSecond, 3) }] : [];
  });
  for (const r of ratios) {
    console.log(`${r.auth}: persistent ${r.sqlite} reg/s vs in-memory ${r.memory} reg/s = ${(r.ratio * 100).toFixed(0)} % (target >= 80 %: ${r.ratio >= 0.8 ? 'met' : 'NOT met'})`);
  }
  mkdirSync(`${here}results`, { recursive: true });
  const out = {
    benchmark: 'registration',
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    concurrency: o.concurrency,
    generators: o.generators,
    target: { members: 10_000, seconds: 30, bytesPerMember: 4096, persistentRatio: 0.8 },
    results,
    ...(o.state ? { persistentVsMemory: ratios } : {}),
  };
  const file = o.state ? 'registration-state.json' : 'registration.json';
  writeFileSync(`${here}results/${file}`, JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote bench/results/${file}`);
  process.exit(0);
}

await main();
