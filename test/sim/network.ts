/**
 * An in-process network and clock for driving sans-I/O engines.
 *
 * Time is a plain number of milliseconds that only moves when the simulation
 * says so, and every datagram goes through a fault policy that can drop,
 * duplicate, delay (and so reorder) it. Runs are reproducible: the policy's
 * randomness comes from a seeded generator, never from Math.random.
 */

export interface SimEndpoint {
  readonly address: string;
  readonly port: number;
}

export interface SimDatagram {
  readonly from: SimEndpoint;
  readonly to: SimEndpoint;
  readonly data: Buffer;
  /** Sequence number in sending order, so tests can name "the 3rd datagram". */
  readonly seq: number;
}

/** What the network does with one datagram. */
export type FaultAction =
  | { readonly kind: 'deliver'; readonly delay?: number }
  | { readonly kind: 'drop' }
  /** Deliver twice; the copy arrives `copyDelay` ms after the original. */
  | { readonly kind: 'duplicate'; readonly delay?: number; readonly copyDelay?: number };

export type FaultPolicy = (d: SimDatagram) => FaultAction;

export const deliverAll: FaultPolicy = () => ({ kind: 'deliver' });

/** Small seeded PRNG (mulberry32) so random fault patterns replay exactly. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Drops, duplicates and delays datagrams at the given rates (0..1). */
export function randomFaults(opts: { seed: number; drop?: number; duplicate?: number; maxExtraDelay?: number }): FaultPolicy {
  const rnd = seededRandom(opts.seed);
  return () => {
    const r = rnd();
    const delay = Math.floor(rnd() * (opts.maxExtraDelay ?? 0));
    if (r < (opts.drop ?? 0)) return { kind: 'drop' };
    if (r < (opts.drop ?? 0) + (opts.duplicate ?? 0)) {
      return { kind: 'duplicate', delay, copyDelay: Math.floor(rnd() * (opts.maxExtraDelay ?? 0)) + 1 };
    }
    return { kind: 'deliver', delay };
  };
}

interface InFlight {
  readonly at: number;
  readonly order: number;
  readonly datagram: SimDatagram;
}

export class SimClock {
  constructor(public now = 0) {}
  advanceTo(t: number): void {
    if (t < this.now) throw new Error(`clock cannot go back: ${t} < ${this.now}`);
    this.now = t;
  }
}

/**
 * A NAPT in front of the hosts with address `inside`: their datagrams leave
 * from `outside` with port + `portOffset`, and datagrams to those mapped
 * ports are delivered back inside. Enough for NAT detection and NAT-T.
 */
export class SimNat {
  constructor(
    readonly inside: string,
    readonly outside: string,
    readonly portOffset = 10_000,
  ) {}

  translate(from: SimEndpoint, to: SimEndpoint): { from: SimEndpoint; to: SimEndpoint } {
    let f = from;
    let t = to;
    if (from.address === this.inside) f = { address: this.outside, port: from.port + this.portOffset };
    if (to.address === this.outside && to.port >= this.portOffset) t = { address: this.inside, port: to.port - this.portOffset };
    return { from: f, to: t };
  }
}

export class SimNetwork {
  readonly clock: SimClock;
  nat: SimNat | undefined;
  /** Every datagram ever sent, in order (before faults). */
  readonly sent: SimDatagram[] = [];
  /** Every datagram delivered, in delivery order. */
  readonly delivered: SimDatagram[] = [];
  policy: FaultPolicy;
  private readonly latency: number;
  private queue: InFlight[] = [];
  private seq = 0;
  private order = 0;

  constructor(opts: { clock?: SimClock; latency?: number; policy?: FaultPolicy } = {}) {
    this.clock = opts.clock ?? new SimClock();
    this.latency = opts.latency ?? 5;
    this.policy = opts.policy ?? deliverAll;
  }

  send(from: SimEndpoint, to: SimEndpoint, data: Buffer): SimDatagram {
    // The NAT rewrites on the way; receivers see the translated addresses.
    const x = this.nat ? this.nat.translate(from, to) : { from, to };
    const d: SimDatagram = { from: x.from, to: x.to, data: Buffer.from(data), seq: this.seq++ };
    this.sent.push(d);
    const action = this.policy(d);
    const now = this.clock.now;
    switch (action.kind) {
      case 'drop':
        break;
      case 'deliver':
        this.enqueue(now + this.latency + (action.delay ?? 0), d);
        break;
      case 'duplicate': {
        const first = now + this.latency + (action.delay ?? 0);
        this.enqueue(first, d);
        this.enqueue(first + (action.copyDelay ?? 1), d);
        break;
      }
    }
    return d;
  }

  private enqueue(at: number, datagram: SimDatagram): void {
    this.queue.push({ at, order: this.order++, datagram });
    // Stable by time then by enqueue order, so equal delays keep sending order.
    this.queue.sort((a, b) => a.at - b.at || a.order - b.order);
  }

  /** When the next datagram arrives, if any is in flight. */
  nextArrival(): number | undefined {
    return this.queue[0]?.at;
  }

  /** Removes and returns every datagram due at or before `now`. */
  takeDue(now: number): SimDatagram[] {
    const due: SimDatagram[] = [];
    while (this.queue.length > 0 && this.queue[0]!.at <= now) {
      const d = this.queue.shift()!.datagram;
      due.push(d);
      this.delivered.push(d);
    }
    return due;
  }

  get inFlight(): number {
    return this.queue.length;
  }
}

/** What a node hands back after any input: datagrams to send. */
export interface SimOutput {
  /** `from` (or, as engines name it, `local`) picks one of the node's endpoints; default its first. */
  readonly send: ReadonlyArray<{
    readonly to: SimEndpoint;
    readonly data: Buffer;
    readonly from?: SimEndpoint;
    readonly local?: SimEndpoint | undefined;
  }>;
}

/** A sans-I/O participant bound to one endpoint (and optionally more, e.g. a NAT-T port). */
export interface SimNode {
  readonly endpoint: SimEndpoint;
  readonly extraEndpoints?: readonly SimEndpoint[];
  /** `to` is the endpoint of this node the datagram was addressed to. */
  receive(data: Buffer, from: SimEndpoint, now: number, to: SimEndpoint): SimOutput;
  timeout(now: number): SimOutput;
  nextTimeout(): number | undefined;
}

/**
 * Connects nodes through a SimNetwork and advances the clock from event to
 * event (next arrival or next node timeout), so a run of minutes of protocol
 * time takes milliseconds.
 */
export class Simulation {
  readonly network: SimNetwork;
  private readonly nodes: SimNode[] = [];

  constructor(network = new SimNetwork()) {
    this.network = network;
  }

  get now(): number {
    return this.network.clock.now;
  }

  add<N extends SimNode>(node: N): N {
    this.nodes.push(node);
    return node;
  }

  /** Puts a node's output on the wire. */
  emit(node: SimNode, out: SimOutput): void {
    for (const s of out.send) this.network.send(s.from ?? s.local ?? node.endpoint, s.to, s.data);
  }

  private nodeAt(ep: SimEndpoint): SimNode | undefined {
    const same = (a: SimEndpoint): boolean => a.address === ep.address && a.port === ep.port;
    return this.nodes.find((n) => same(n.endpoint) || (n.extraEndpoints ?? []).some(same));
  }

  /** The time of the next thing that will happen, or undefined when idle. */
  nextEvent(): number | undefined {
    let t = this.network.nextArrival();
    for (const n of this.nodes) {
      const nt = n.nextTimeout();
      if (nt !== undefined && (t === undefined || nt < t)) t = nt;
    }
    return t;
  }

  /** Processes one event time step; returns false when nothing is left before `until`. */
  step(until = Infinity): boolean {
    const t = this.nextEvent();
    if (t === undefined || t > until) return false;
    const clock = this.network.clock;
    clock.advanceTo(Math.max(t, clock.now));
    const now = clock.now;
    for (const d of this.network.takeDue(now)) {
      const node = this.nodeAt(d.to);
      if (node) this.emit(node, node.receive(d.data, d.from, now, d.to));
    }
    for (const n of this.nodes) {
      const nt = n.nextTimeout();
      if (nt !== undefined && nt <= now) this.emit(n, n.timeout(now));
    }
    return true;
  }

  /** Runs until idle or until `until` (absolute ms); guards against livelock. */
  run(until = Infinity, maxSteps = 100_000): void {
    for (let i = 0; i < maxSteps; i++) if (!this.step(until)) return;
    throw new Error(`simulation did not settle within ${maxSteps} steps`);
  }

  /** Runs until `predicate` holds or nothing is left to do; returns whether it holds. */
  runUntil(predicate: () => boolean, until = Infinity, maxSteps = 100_000): boolean {
    for (let i = 0; i < maxSteps; i++) {
      if (predicate()) return true;
      if (!this.step(until)) return predicate();
    }
    throw new Error(`simulation did not settle within ${maxSteps} steps`);
  }

  /** Advances the clock to `t` processing everything due before it. */
  runTo(t: number): void {
    this.run(t);
    if (this.network.clock.now < t) this.network.clock.advanceTo(t);
  }
}
