/**
 * A load generator process of bench/registration.ts: many group members in
 * one process. Each member is a real GmService (its own IKE engine and
 * identity); members share UDP sockets, one per loopback source address
 * (127.x.y.z), and a multiplexer hands each arriving message to the member
 * whose IKE SA it belongs to (by the initiator SPI in the IKE header, which
 * the member chose). A few members register at a time per source address:
 * the key server accepts 5 half-open IKE SAs per source IP, as a deployment
 * with one member per address would see.
 */
import { createPrivateKey } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { systemRandom } from '../src/crypto/random.ts';
import { parseCertificate } from '../src/crypto/x509.ts';
import { issueEndEntity } from '../src/crypto/x509-builder.ts';
import { loadGmConfig, type GmConfig } from '../src/gm/config.ts';
import { GmService, type GmServiceEvent } from '../src/gm/service.ts';
import { IdType } from '../src/wire/iana.ts';
import type { DatagramEngine, Endpoint, LocalEndpoint, Output, Outgoing } from '../src/ike/io-types.ts';
import { UdpAdapter } from '../src/node/udp.ts';
import { gmYaml, type LoadReply, type LoadStart } from './registration-common.ts';

interface Member {
  readonly index: number;
  readonly service: GmService;
  startedAt: number;
  next: number | undefined;
  done: boolean;
}

interface Prepared {
  readonly config: GmConfig;
  readonly certificate?: { readonly chain: readonly string[]; readonly privateKey: ReturnType<typeof createPrivateKey> };
  readonly trustAnchors?: readonly string[];
}

const latencies: number[] = [];
let errors = 0;
const errorSamples: string[] = [];
let firstStart = Infinity;
let lastDone = 0;

/** Routes datagrams between one socket and the members using it. */
class MemberMux implements DatagramEngine<GmServiceEvent> {
  readonly bySpi = new Map<string, Member>();
  readonly members = new Set<Member>();
  private readonly waiting: Prepared[];
  private started = 0;
  adapter: UdpAdapter<GmServiceEvent> | undefined;
  local: LocalEndpoint | undefined;

  constructor(
    private readonly prepared: Prepared[],
    private readonly firstIndex: number,
    private readonly perSource: number,
    private readonly onFinished: () => void,
  ) {
    this.waiting = [...prepared];
  }

  get remaining(): number {
    return this.prepared.length - this.finished;
  }

  private finished = 0;

  receive(data: Buffer, from: Endpoint, local: LocalEndpoint, now: number): Output<GmServiceEvent> {
    const m = this.bySpi.get(data.subarray(0, 8).toString('hex'));
    if (!m) return { send: [], events: [] };
    return this.track(m, m.service.receive(data, from, local, now), now);
  }

  timeout(now: number): Output<GmServiceEvent> {
    const send: Outgoing[] = [];
    for (const m of this.members) {
      if (m.next !== undefined && m.next <= now) send.push(...this.track(m, m.service.timeout(now), now).send);
    }
    return { send, events: [] };
  }

  nextTimeout(): number | undefined {
    let t: number | undefined;
    for (const m of this.members) if (m.next !== undefined && (t === undefined || m.next < t)) t = m.next;
    return t;
  }

  /** Starts members until `perSource` are registering. */
  fill(now: number): Outgoing[] {
    const send: Outgoing[] = [];
    while (this.started - this.finished < this.perSource && this.waiting.length > 0) {
      const p = this.waiting.shift()!;
      const service = new GmService(p.config, {
        rng: systemRandom,
        // The adapter's clock is monotonic; certificates need the wall clock.
        certificateTime: () => new Date(),
        ...(p.certificate ? { certificate: p.certificate } : {}),
        ...(p.trustAnchors ? { trustAnchors: p.trustAnchors } : {}),
        ...(this.local ? { local: this.local } : {}),
        // Re-registration lies far beyond the run; a lost datagram is retried after 2 s.
        retransmit: { initialMs: 2000, factor: 2, maxTries: 4 },
      });
      const m: Member = { index: this.firstIndex + this.started, service, startedAt: now, next: undefined, done: false };
      this.started++;
      this.members.add(m);
      firstStart = Math.min(firstStart, now);
      send.push(...this.track(m, service.start(now), now).send);
    }
    return send;
  }

  private track(m: Member, out: Output<GmServiceEvent>, now: number): Output<GmServiceEvent> {
    for (const o of out.send) this.bySpi.set(o.data.subarray(0, 8).toString('hex'), m);
    let finishedNow = false;
    for (const e of out.events) {
      if (m.done) break;
      if (e.type === 'keys') {
        m.done = true;
        latencies.push(now - m.startedAt);
        lastDone = Math.max(lastDone, now);
        finishedNow = true;
      } else if (e.type === 'error') {
        errors++;
        if (errorSamples.length < 5) {
          errorSamples.push(`member ${m.index}: ${e.reason}`);
          process.stderr.write(`load generator: member ${m.index}: ${e.reason}\n`);
        }
      }
    }
    m.next = m.service.nextTimeout();
    let send = out.send;
    if (finishedNow) {
      this.finished++;
      send = [...send, ...this.fill(now)];
      if (this.remaining === 0) this.onFinished();
    }
    return { send, events: [] };
  }
}

function prepare(msg: LoadStart): Prepared[] {
  const base = loadGmConfig(gmYaml(msg.auth, msg.port), 'bench-gm.yaml');
  const pki = msg.pki;
  const ca = pki ? { certificate: parseCertificate(pki.ca), privateKey: createPrivateKey(pki.caKey) } : undefined;
  const now = Date.now();
  const out: Prepared[] = [];
  for (let i = 0; i < msg.count; i++) {
    const name = `m${msg.first + i}.bench.example`;
    const config: GmConfig = { ...base, identity: { idType: IdType.ID_FQDN, data: Buffer.from(name) } };
    if (!ca) {
      out.push({ config });
      continue;
    }
    const cert = issueEndEntity(ca, {
      subject: { O: 'gikev2 bench', CN: name },
      keySpec: 'ec-p256',
      subjectAltName: { dns: [name] },
      notBefore: new Date(now - 3600_000),
      notAfter: new Date(now + 86400_000),
    });
    out.push({ config, certificate: { chain: [cert.pem], privateKey: cert.privateKey }, trustAnchors: [pki!.ca] });
  }
  return out;
}

async function run(msg: LoadStart): Promise<void> {
  const t0 = performance.now();
  const prepared = prepare(msg);
  const prepareMs = performance.now() - t0;
  const muxes: MemberMux[] = [];
  let open = msg.sources.length;
  let resolveAll: () => void = () => undefined;
  const allDone = new Promise<void>((r) => (resolveAll = r));
  const per = Math.ceil(prepared.length / msg.sources.length);
  for (let s = 0; s < msg.sources.length; s++) {
    const slice = prepared.slice(s * per, (s + 1) * per);
    const mux = new MemberMux(slice, msg.first + s * per, msg.perSource, () => {
      if (--open === 0) resolveAll();
    });
    if (slice.length === 0) {
      open--;
      continue;
    }
    mux.adapter = await UdpAdapter.open(mux, [{ address: msg.sources[s]!, port: 0, marker: false }]);
    mux.local = mux.adapter.locals[0];
    muxes.push(mux);
  }
  if (open === 0) resolveAll();
  process.send?.({ kind: 'ready', prepareMs } satisfies LoadReply);
  await new Promise<void>((resolve) => process.once('message', () => resolve()));
  const cpuBefore = process.cpuUsage();
  for (const mux of muxes) mux.adapter!.act((now) => ({ send: mux.fill(now), events: [] }));
  // A run that cannot finish (every member failing) still reports what it has.
  const deadline = new Promise<void>((r) => setTimeout(r, msg.deadlineMs).unref());
  await Promise.race([allDone, deadline]);
  const cpu = process.cpuUsage(cpuBefore);
  process.send?.({ kind: 'done', latenciesMs: latencies, errors, errorSamples, firstStart: firstStart + performance.timeOrigin, lastDone: lastDone + performance.timeOrigin, cpuMicros: cpu.user + cpu.system } satisfies LoadReply);
  // Members stay up (answering the key server's Deletes) until told to stop.
  await new Promise<void>((resolve) => process.once('message', () => resolve()));
  await Promise.all(muxes.map((m) => m.adapter!.close()));
  process.disconnect?.();
}

process.once('message', (msg: LoadStart) => {
  run(msg).catch((e: unknown) => {
    process.send?.({ kind: 'error', message: e instanceof Error ? (e.stack ?? e.message) : String(e) } satisfies LoadReply);
  });
});
