/**
 * Responder throughput benchmark (issue 3, "Speed"): our responder behind
 * the UdpAdapter on loopback, driven by a separate load-generator process
 * (bench/ike-load.ts) with many concurrent initiators, for X25519 + PSK and
 * X25519 + ECDSA P-256 certificates (aes256gcm16-prfsha256-x25519).
 *
 * Printed per suite: completed IKE SAs per second (wall clock), responder
 * CPU per SA (user + system of this process / SAs), memory per established
 * SA (heap + external, and RSS, after GC, / SAs), and the ceiling: the
 * responder-side crypto of one SA alone in a tight loop on one core
 * (X25519 keygen + shared secret, SKEYSEED/prf+, the AUTH computations,
 * AES-GCM of the IKE_AUTH request and response, the random SPI and nonce
 * and the four NAT-D SHA-1 hashes; for ECDSA also one sign,
 * one verify and the chain validation), as SAs/s. "of ceiling" compares
 * SAs per responder CPU-second with that ceiling (target >= 60 %).
 *
 * Both sides are measured warm: the ceiling's loops run 50 times before
 * timing starts, and the responder first establishes `--warmup` IKE SAs
 * (not counted) so that the run measures steady state, not V8 compiling the
 * code paths (optimising compilation on a background thread adds several
 * hundred µs of CPU per SA over the first thousand SAs). The warm-up SAs stay
 * established during the measured run, as a busy server's would.
 *
 * The machine may be shared: the measured batch runs `--rounds` times (3)
 * and the median round is reported, next to the median of as many ceiling
 * measurements.
 *
 * The responder and the ceiling run the compiled build (dist/, rebuilt at
 * start), which is what `gikev2` runs; `--code src` runs the sources
 * through tsx instead.
 *
 *   npx tsx bench/ike-responder.ts [--sas N] [--warmup N] [--rounds N] [--concurrency N] [--suite x25519-psk|x25519-ecdsa-p256] [--code dist|src]
 *   node --expose-gc --import tsx bench/ike-responder.ts
 *
 * Writes bench/results/ike-responder.json. Not a test: nothing is asserted.
 */
import { execFileSync, fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parseArgs } from 'node:util';
import type { AuthSigner } from '../src/crypto/auth.ts';
import type * as AuthModule from '../src/crypto/auth.ts';
import type * as CipherModule from '../src/crypto/cipher.ts';
import type * as KeModule from '../src/crypto/ke.ts';
import type * as KeysModule from '../src/crypto/keys.ts';
import type * as PrfModule from '../src/crypto/prf.ts';
import type * as RandomModule from '../src/crypto/random.ts';
import type * as SignatureModule from '../src/crypto/signature.ts';
import type * as X509Module from '../src/crypto/x509.ts';
import type * as EngineModule from '../src/ike/engine.ts';
import type { EngineEvent } from '../src/ike/engine.ts';
import type * as IdentityModule from '../src/ike/identity.ts';
import type * as NatdModule from '../src/ike/natd.ts';
import type { DatagramEngine } from '../src/ike/io-types.ts';
import type * as UdpModule from '../src/node/udp.ts';
import { EncrId, IntegId, KeId, PrfId } from '../src/wire/iana.ts';
import { engineConfig, INITIATOR_ID, makeCredentials, RESPONDER_ID, SUITES, type Credentials, type LoadReport, type LoadRequest, type SuiteName } from './ike-bench-common.ts';

const { values: args } = parseArgs({
  options: {
    sas: { type: 'string' },
    warmup: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '64' },
    suite: { type: 'string' },
    code: { type: 'string', default: 'dist' },
  },
});
const DEFAULT_SAS: Record<SuiteName, number> = { 'x25519-psk': 4000, 'x25519-ecdsa-p256': 2000 };
const DEFAULT_WARMUP: Record<SuiteName, number> = { 'x25519-psk': 3000, 'x25519-ecdsa-p256': 1500 };
const concurrency = Number(args.concurrency);
const rounds = Number(args.rounds);
const suites = args.suite ? (SUITES.filter((s) => s === args.suite) as SuiteName[]) : [...SUITES];
if (suites.length === 0 || !(concurrency >= 1) || !(rounds >= 1) || (args.code !== 'dist' && args.code !== 'src')) {
  console.error(`usage: ike-responder [--sas N] [--warmup N] [--rounds N] [--concurrency N] [--suite ${SUITES.join('|')}] [--code dist|src]`);
  process.exit(2);
}

// The responder and the ceiling's crypto run from the code the daemons run:
// the compiled build in dist/ (rebuilt here first), or with --code src the
// TypeScript sources through tsx's loader, whose module wrappers add a few
// per cent to every call. The load generator always runs from src/.
const projectRoot = new URL('../', import.meta.url);
if (args.code === 'dist') {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: projectRoot, stdio: 'inherit' });
}
const codeBase = new URL(args.code === 'dist' ? 'dist/' : 'src/', projectRoot);
const codeExt = args.code === 'dist' ? '.js' : '.ts';
async function load<T>(path: string): Promise<T> {
  return (await import(new URL(`${path}${codeExt}`, codeBase).href)) as T;
}
const { buildAuthData, restOfIdPayload, signedOctets, verifyAuthData } = await load<typeof AuthModule>('crypto/auth');
const { createSkCipher, protect, unprotect } = await load<typeof CipherModule>('crypto/cipher');
const { createKeyExchange } = await load<typeof KeModule>('crypto/ke');
const { deriveIkeKeys, skKeysFor } = await load<typeof KeysModule>('crypto/keys');
const { prf } = await load<typeof PrfModule>('crypto/prf');
const { defaultRandom } = await load<typeof RandomModule>('crypto/random');
const { chooseSignatureAlgorithm } = await load<typeof SignatureModule>('crypto/signature');
const { assertIdentityMatchesCertificate, parseCertificate, validateCertificateChain } = await load<typeof X509Module>('crypto/x509');
const { IkeEngine } = await load<typeof EngineModule>('ike/engine');
const { parseIdentity } = await load<typeof IdentityModule>('ike/identity');
const { natDetectionHash } = await load<typeof NatdModule>('ike/natd');
const { UdpAdapter } = await load<typeof UdpModule>('node/udp');

// ---------------------------------------------------------------- helpers

const gc: () => void = (() => {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

function memory(): { heapExt: number; rss: number } {
  gc();
  gc();
  const m = process.memoryUsage();
  return { heapExt: m.heapUsed + m.external, rss: m.rss };
}

/** Mean µs per call of `f`, run until `ms` of CPU time have passed (after a warm-up). */
function timeIt(f: () => void, ms = 400): number {
  for (let i = 0; i < 50; i++) f();
  let n = 0;
  const t0 = process.cpuUsage();
  let spent = 0;
  while (spent < ms * 1000) {
    for (let i = 0; i < 20; i++) f();
    n += 20;
    const d = process.cpuUsage(t0);
    spent = d.user + d.system;
  }
  return spent / n;
}

/** Sizes of the four messages of one exchange, taken from an in-process run of the same configuration. */
function messageSizes(creds: Credentials): { initReq: number; initRes: number; authReq: number; authRes: number } {
  const r = new IkeEngine(engineConfig(creds, 'responder'));
  const i = new IkeEngine(engineConfig(creds, 'initiator'));
  const ep = { address: '127.0.0.1', port: 500 };
  const local = { ...ep, marker: false };
  const sizes: number[] = [];
  let out = i.initiate({ ...ep, remoteId: RESPONDER_ID }, 0).send.map((s) => s.data);
  for (let k = 0; k < 2; k++) {
    const req = out[0]!;
    const res = r.receive(req, ep, local, k).send[0]!.data;
    sizes.push(req.length, res.length);
    out = i.receive(res, ep, local, k).send.map((s) => s.data);
  }
  return { initReq: sizes[0]!, initRes: sizes[1]!, authReq: sizes[2]!, authRes: sizes[3]! };
}

/**
 * The responder engine alone, no sockets: an initiator engine and a responder
 * engine in this process, timing only the responder's receive() calls.
 * Separates the engine's cost from the UDP path and the event loop.
 */
function engineOnly(creds: Credentials, sas: number): { microsPerSa: number; sasPerSecond: number } {
  const responder = new IkeEngine({ ...engineConfig(creds, 'responder'), cookieThreshold: Infinity, halfOpen: { maxTotal: 1_000_000, maxPerSource: 1_000_000, maxBytes: 2 ** 40 } });
  const initiator = new IkeEngine(engineConfig(creds, 'initiator'));
  const rEp = { address: '127.0.0.1', port: 500 };
  const iEp = { address: '127.0.0.2', port: 500 };
  let spent = 0;
  let established = 0;
  for (let k = 0; k < sas; k++) {
    let toR = initiator.initiate({ ...rEp, remoteId: RESPONDER_ID }, k).send.map((s) => s.data);
    while (toR.length > 0) {
      const next: Buffer[] = [];
      for (const d of toR) {
        const c0 = process.cpuUsage();
        const out = responder.receive(d, iEp, { ...rEp, marker: false }, k);
        const c = process.cpuUsage(c0);
        spent += c.user + c.system;
        established += out.events.filter((e) => e.type === 'sa-established').length;
        for (const o of out.send) next.push(...initiator.receive(o.data, rEp, { ...iEp, marker: false }, k).send.map((x) => x.data));
      }
      toR = next;
    }
  }
  return { microsPerSa: spent / Math.max(1, established), sasPerSecond: (established / spent) * 1e6 };
}

interface Ceiling {
  readonly parts: Record<string, number>;
  readonly microsPerSa: number;
  readonly sasPerSecond: number;
}

/** The responder-side crypto of one SA, each part timed in its own loop. */
function cryptoCeiling(creds: Credentials): Ceiling {
  const sizes = messageSizes(creds);
  const alg = { prf: PrfId.HMAC_SHA2_256, encr: EncrId.AES_GCM_16, encrKeyBits: 256, integ: IntegId.NONE };
  const peerKe = createKeyExchange(KeId.CURVE25519);
  const ni = Buffer.alloc(32, 1);
  const nr = Buffer.alloc(32, 2);
  const spiI = Buffer.alloc(8, 3);
  const spiR = Buffer.alloc(8, 4);
  const initReq = Buffer.alloc(sizes.initReq, 5);
  const initRes = Buffer.alloc(sizes.initRes, 6);
  const parts: Record<string, number> = {};

  const rng = defaultRandom();
  const from = { address: '127.0.0.2', port: 500 };
  const to = { address: '127.0.0.1', port: 500 };
  parts['SPI + nonce (random), NAT-D (4 x SHA-1)'] = timeIt(() => {
    rng.bytes(8);
    rng.bytes(32);
    natDetectionHash(spiI, spiR, from.address, from.port);
    natDetectionHash(spiI, spiR, to.address, to.port);
    natDetectionHash(spiI, spiR, to.address, to.port);
    natDetectionHash(spiI, spiR, from.address, from.port);
  });
  parts['x25519 keygen + shared secret'] = timeIt(() => {
    createKeyExchange(KeId.CURVE25519).computeSecret(peerKe.publicValue);
  });
  const secret = createKeyExchange(KeId.CURVE25519).computeSecret(peerKe.publicValue);
  parts['SKEYSEED + prf+ + cipher setup'] = timeIt(() => {
    const keys = deriveIkeKeys({ ...alg, ni, nr, sharedSecret: secret, spiI, spiR });
    createSkCipher(alg, skKeysFor(keys, 'responder'));
    createSkCipher(alg, skKeysFor(keys, 'initiator'));
  });
  const keys = deriveIkeKeys({ ...alg, ni, nr, sharedSecret: secret, spiI, spiR });
  const prfFn = (k: Buffer, d: Buffer): Buffer => prf(alg.prf, k, d);
  const idI = parseIdentity(INITIATOR_ID);
  const idR = parseIdentity(RESPONDER_ID);
  const peerOctets = (): Buffer => signedOctets({ realMessage: initReq, peerNonce: nr, idPayloadBody: restOfIdPayload(idI.idType, idI.data), skP: keys.skPi, prf: prfFn });
  const ownOctets = (): Buffer => signedOctets({ realMessage: initRes, peerNonce: ni, idPayloadBody: restOfIdPayload(idR.idType, idR.data), skP: keys.skPr, prf: prfFn });

  // AES-GCM: verify + decrypt the IKE_AUTH request, encrypt + authenticate the response.
  const toResponder = createSkCipher(alg, skKeysFor(keys, 'initiator'));
  const inbound = createSkCipher(alg, skKeysFor(keys, 'initiator'));
  const outbound = createSkCipher(alg, skKeysFor(keys, 'responder'));
  const overhead = 28 + 4 + 8 + 16 + 1;
  const aad = Buffer.alloc(32, 7);
  const reqBody = protect(toResponder, aad, Buffer.alloc(Math.max(16, sizes.authReq - overhead), 8));
  const resPlain = Buffer.alloc(Math.max(16, sizes.authRes - overhead), 9);
  parts['AES-GCM (IKE_AUTH request + response)'] = timeIt(() => {
    unprotect(inbound, aad, reqBody);
    protect(outbound, aad, resPlain);
  });

  if (!creds.responder || !creds.initiator || !creds.caDer) {
    const signer: AuthSigner = { kind: 'psk', sharedSecret: Buffer.from('bench-psk-0123456789abcdef'), prf: prfFn };
    const peerAuth = buildAuthData(signer, peerOctets());
    parts['PSK MICs (verify AUTHi, make AUTHr)'] = timeIt(() => {
      verifyAuthData(peerAuth, signer, peerOctets());
      buildAuthData(signer, ownOctets());
    });
  } else {
    const cfg = engineConfig(creds, 'responder');
    const ownKey = cfg.certificate!.privateKey;
    const peerCfg = engineConfig(creds, 'initiator');
    const peerKey = peerCfg.certificate!.privateKey;
    const algorithm = chooseSignatureAlgorithm(ownKey, { peerHashes: [2] });
    const peerAuth = buildAuthData({ kind: 'digital-signature', privateKey: peerKey, algorithm }, peerOctets());
    const anchors = [parseCertificate(Buffer.from(creds.caDer, 'base64'))];
    const peerDer = Buffer.from(creds.initiator.chain[0]!, 'base64');
    const now = new Date();
    parts['chain validation (parse + 1 verify)'] = timeIt(() => {
      const ee = parseCertificate(peerDer);
      validateCertificateChain(ee, [], { trustAnchors: anchors, now });
      assertIdentityMatchesCertificate(idI.idType, idI.data, ee);
    });
    const peerPub = parseCertificate(peerDer).publicKey;
    parts['ECDSA P-256 verify AUTHi'] = timeIt(() => {
      verifyAuthData(peerAuth, { kind: 'public-key', publicKey: peerPub }, peerOctets());
    });
    parts['ECDSA P-256 sign AUTHr'] = timeIt(() => {
      buildAuthData({ kind: 'digital-signature', privateKey: ownKey, algorithm }, ownOctets());
    });
  }
  const microsPerSa = Object.values(parts).reduce((a, b) => a + b, 0);
  return { parts, microsPerSa, sasPerSecond: 1e6 / microsPerSa };
}

interface Measured {
  readonly suite: SuiteName;
  readonly sas: number;
  /** Measured rounds (the median one is reported) and each round's CPU per SA. */
  readonly rounds: number;
  readonly roundCpuMicrosPerSa: readonly number[];
  readonly failed: number;
  readonly retransmissions: number;
  readonly concurrency: number;
  readonly wallMs: number;
  readonly sasPerSecond: number;
  readonly responderCpuMicrosPerSa: number;
  /** Of which inside engine.receive (sans-I/O core). */
  readonly engineReceiveMicrosPerSa: number;
  readonly responderCpuUtilisation: number;
  readonly sasPerCpuSecond: number;
  readonly loadGeneratorCpuUtilisation: number;
  readonly heapExternalBytesPerSa: number;
  readonly rssBytesPerSa: number;
  readonly engineErrors: number;
}

/** The load generator process and its reports, awaited by type. */
class LoadGenerator {
  private readonly child = fork(new URL('./ike-load.ts', import.meta.url), [], { execArgv: ['--import', import.meta.resolve('tsx')] });
  private readonly reports: LoadReport[] = [];
  private wake: () => void = () => undefined;
  constructor() {
    this.child.on('message', (m: LoadReport) => {
      this.reports.push(m);
      this.wake();
    });
    this.child.on('exit', (code) => {
      if (code) console.error(`load generator exited with ${code}`);
    });
  }
  send(m: LoadRequest | { type: 'burn' | 'stop' }): void {
    this.child.send(m);
  }
  async next<T extends LoadReport['type']>(type: T): Promise<Extract<LoadReport, { type: T }>> {
    for (;;) {
      const i = this.reports.findIndex((x) => x.type === type);
      if (i >= 0) return this.reports.splice(i, 1)[0] as Extract<LoadReport, { type: T }>;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
  kill(): void {
    this.child.kill();
  }
}

/** One run: a responder here, the load generator in a child process. */
async function runSuite(suite: SuiteName, creds: Credentials, sas: number, warmup: number, load: LoadGenerator): Promise<Measured> {
  const engine = new IkeEngine({
    ...engineConfig(creds, 'responder'),
    // Every initiator comes from 127.0.0.1: no per-source limit, no cookies (the flood test covers those).
    cookieThreshold: Infinity,
    halfOpen: { maxTotal: 1_000_000, maxPerSource: 1_000_000, maxBytes: 2 ** 40 },
  });
  let established = 0;
  let target = 0;
  let onAll: () => void = () => undefined;
  // The engine's own share of the responder's time, the rest being sockets,
  // event loop and GC: wall time inside the synchronous receive(), which is
  // its CPU time unless the process is preempted. (process.cpuUsage() here
  // would add two getrusage calls per datagram to the measured CPU.)
  let engineMicros = 0;
  const timed: DatagramEngine<EngineEvent> = {
    receive: (data, from, local, now) => {
      const t0 = performance.now();
      const out = engine.receive(data, from, local, now);
      engineMicros += (performance.now() - t0) * 1000;
      return out;
    },
    timeout: (now) => engine.timeout(now),
    nextTimeout: () => engine.nextTimeout(),
  };
  const adapter = await UdpAdapter.open<EngineEvent>(timed, [{ address: '127.0.0.1', port: 0, marker: false }], {
    onEvent: (e) => {
      if (e.type === 'sa-established' && ++established === target) onAll();
    },
  });
  await load.next('ready');
  /** One batch of `count` SAs from the load generator; resolves when both sides are done. */
  const batch = async (count: number): Promise<Extract<LoadReport, { type: 'done' }>> => {
    established = 0;
    target = count;
    const allDone = new Promise<void>((resolve) => (onAll = resolve));
    load.send({ type: 'run', creds, address: '127.0.0.1', port: adapter.locals[0]!.port, sas: count, concurrency });
    const done = await load.next('done');
    if (done.established === count) await allDone;
    await load.next('idle');
    return done;
  };
  if (warmup > 0) await batch(warmup);
  // Rounds of `sas` each; the round with the median CPU per SA is reported
  // (the machine is shared: single runs vary by a third). Memory per SA is
  // taken over all rounds, the SAs of every round staying established.
  const mem0 = memory();
  const measuredRounds: RoundResult[] = [];
  for (let r = 0; r < rounds; r++) {
    engineMicros = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const done = await batch(sas);
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    measuredRounds.push({ done, established, wallMs, cpuMicros: cpu.user + cpu.system, engineMicros });
  }
  const mem1 = memory();
  const counters = adapter.counters;
  await adapter.close();
  const all = measuredRounds.reduce((a, r) => a + r.established, 0);
  const m = median(measuredRounds, (r) => r.cpuMicros / Math.max(1, r.established));
  const n = Math.max(1, m.established);
  return {
    suite,
    sas: m.established,
    rounds,
    roundCpuMicrosPerSa: measuredRounds.map((r) => r.cpuMicros / Math.max(1, r.established)),
    failed: m.done.failed,
    retransmissions: m.done.retransmissions,
    concurrency,
    wallMs: m.wallMs,
    sasPerSecond: (m.established / m.wallMs) * 1000,
    responderCpuMicrosPerSa: m.cpuMicros / n,
    engineReceiveMicrosPerSa: m.engineMicros / n,
    responderCpuUtilisation: m.cpuMicros / 1000 / m.wallMs,
    sasPerCpuSecond: (m.established / m.cpuMicros) * 1e6,
    loadGeneratorCpuUtilisation: m.done.cpuMicros / 1000 / m.done.wallMs,
    heapExternalBytesPerSa: (mem1.heapExt - mem0.heapExt) / Math.max(1, all),
    rssBytesPerSa: (mem1.rss - mem0.rss) / Math.max(1, all),
    engineErrors: counters.engineErrors,
  };
}

interface RoundResult {
  readonly done: Extract<LoadReport, { type: 'done' }>;
  readonly established: number;
  readonly wallMs: number;
  readonly cpuMicros: number;
  readonly engineMicros: number;
}

/** The element with the median key (the lower middle one for an even count). */
function median<T>(items: readonly T[], key: (t: T) => number): T {
  const sorted = [...items].sort((a, b) => key(a) - key(b));
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

/** The ceiling measured `rounds` times; the median one. */
function medianCeiling(creds: Credentials): Ceiling {
  const list: Ceiling[] = [];
  for (let r = 0; r < rounds; r++) list.push(cryptoCeiling(creds));
  return median(list, (c) => c.microsPerSa);
}

// ---------------------------------------------------------------- main

interface SuiteResult {
  readonly measured: Measured;
  readonly engineOnly: { microsPerSa: number; sasPerSecond: number };
  /** Crypto alone with the other core idle. */
  readonly ceiling: Ceiling;
  /** Crypto alone while the load generator's core is busy, as it was during the run. */
  readonly ceilingBusyNeighbour: Ceiling;
  readonly ratio: number;
  readonly ratioBusyNeighbour: number;
  readonly engineOnlyRatio: number;
}

const results: SuiteResult[] = [];
for (const suite of suites) {
  const creds = makeCredentials(suite);
  const sas = args.sas ? Number(args.sas) : DEFAULT_SAS[suite];
  const load = new LoadGenerator();
  const warmup = args.warmup ? Number(args.warmup) : DEFAULT_WARMUP[suite];
  const measured = await runSuite(suite, creds, sas, warmup, load);
  load.send({ type: 'burn' });
  const ceilingBusyNeighbour = medianCeiling(creds);
  load.send({ type: 'stop' });
  await load.next('stopped');
  load.kill();
  const ceiling = medianCeiling(creds);
  const inProcess = engineOnly(creds, Math.min(sas, 1000));
  results.push({
    measured,
    engineOnly: inProcess,
    ceiling,
    ceilingBusyNeighbour,
    ratio: measured.sasPerCpuSecond / ceiling.sasPerSecond,
    ratioBusyNeighbour: measured.sasPerCpuSecond / ceilingBusyNeighbour.sasPerSecond,
    engineOnlyRatio: inProcess.sasPerSecond / ceiling.sasPerSecond,
  });
}

const fmt = (v: number, d = 0): string => v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
const rows: [string, ...string[]][] = [
  ['', ...results.map((r) => r.measured.suite)],
  ['IKE SAs established (failed)', ...results.map((r) => `${fmt(r.measured.sas)} (${r.measured.failed})`)],
  ['rounds: CPU per SA each (µs)', ...results.map((r) => r.measured.roundCpuMicrosPerSa.map((v) => fmt(v)).join(' / '))],
  ['concurrent initiators', ...results.map((r) => fmt(r.measured.concurrency))],
  ['completed IKE SAs / s (wall)', ...results.map((r) => fmt(r.measured.sasPerSecond))],
  ['responder CPU per SA (µs)', ...results.map((r) => fmt(r.measured.responderCpuMicrosPerSa))],
  ['  of which in engine.receive (µs)', ...results.map((r) => fmt(r.measured.engineReceiveMicrosPerSa))],
  ['responder CPU use (cores)', ...results.map((r) => fmt(r.measured.responderCpuUtilisation, 2))],
  ['load generator CPU use (cores)', ...results.map((r) => fmt(r.measured.loadGeneratorCpuUtilisation, 2))],
  ['SAs per responder CPU-second', ...results.map((r) => fmt(r.measured.sasPerCpuSecond))],
  ['memory per SA: heap+external (B)', ...results.map((r) => fmt(r.measured.heapExternalBytesPerSa))],
  ['memory per SA: RSS (B)', ...results.map((r) => fmt(r.measured.rssBytesPerSa))],
  ['crypto-only cost per SA (µs)', ...results.map((r) => fmt(r.ceiling.microsPerSa, 1))],
  ['ceiling: SAs / s on one core', ...results.map((r) => fmt(r.ceiling.sasPerSecond))],
  ['achieved / ceiling', ...results.map((r) => `${fmt(r.ratio * 100, 1)} %`)],
  ['ceiling, other core busy: SAs / s', ...results.map((r) => fmt(r.ceilingBusyNeighbour.sasPerSecond))],
  ['achieved / ceiling (other core busy)', ...results.map((r) => `${fmt(r.ratioBusyNeighbour * 100, 1)} %`)],
  ['engine alone, no UDP: CPU per SA (µs)', ...results.map((r) => fmt(r.engineOnly.microsPerSa))],
  ['engine alone / ceiling', ...results.map((r) => `${fmt(r.engineOnlyRatio * 100, 1)} %`)],
  ['retransmissions / engine errors', ...results.map((r) => `${r.measured.retransmissions} / ${r.measured.engineErrors}`)],
];
const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
for (const r of rows) console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('   '));
console.log('\nceiling breakdown (µs per SA):');
for (const r of results) {
  console.log(`  ${r.measured.suite}:`);
  for (const [k, v] of Object.entries(r.ceiling.parts)) console.log(`    ${k.padEnd(40)} ${fmt(v, 1).padStart(8)}`);
}

const out = new URL('./results/ike-responder.json', import.meta.url);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(
  out,
  `${JSON.stringify({ date: new Date().toISOString(), code: args.code, node: process.version, cpu: cpus()[0]?.model, cores: cpus().length, loadAverage: loadavg(), results }, null, 2)}\n`,
);
console.log(`\nload average ${loadavg().map((x) => x.toFixed(1)).join(' ')} on ${cpus().length} cores (other work on the machine inflates CPU figures)`);
console.log(`written ${out.pathname}`);
