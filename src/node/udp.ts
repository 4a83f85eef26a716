/**
 * The UDP socket adapter: binds the IKE sockets and drives a sans-I/O engine
 * (src/ike/io-types.ts `DatagramEngine`) with what arrives and with one timer.
 *
 * Each socket declares its framing. A plain socket (500, 848, test ports)
 * carries one IKE message per datagram. A marker socket (4500, or custom
 * ports configured like it, as charon does when neither port is 500) carries
 * IKE messages behind the 4-octet non-ESP marker, which this adapter strips
 * on receipt and adds on sending; NAT-keepalives (0xFF) and UDP-encapsulated
 * ESP (non-zero marker position) are not IKE and never reach the engine
 * (ESP goes to `onEsp` if given, for a future data plane).
 *
 * After every call into the engine the adapter sends what it returned,
 * passes its events to the listener, and re-arms its single timer for
 * `engine.nextTimeout()`.
 *
 * Note: a socket bound to a wildcard address (0.0.0.0, ::) reports that
 * address as `local`; node gives no per-datagram destination address, so
 * NAT detection needs sockets bound to specific addresses.
 *
 * Multicast (GSA_REKEY, RFC 9838 Section 2.4.1): a socket may join groups
 * (`multicast.join`, on `multicast.interface`) to receive, usually bound to
 * the group address and port with `reuseAddr` so that several members on
 * one host share the port; such receive sockets are never picked to send
 * from. A sender socket sets the outgoing interface, TTL and loopback; a
 * datagram to a multicast address without `local` goes out of the first
 * socket that has those settings. Sockets can be added and removed while
 * running (`addSocket`, `removeSocket`), since a member learns its groups
 * only when it registers.
 */
import dgram from 'node:dgram';
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns';
import { isIP } from 'node:net';
import type { DatagramEngine, Endpoint, LocalEndpoint, Output, Outgoing } from '../ike/io-types.ts';
import { ipFamily } from '../ike/address.ts';
import { classifyDatagram, frameIkeMessage, NAT_KEEPALIVE, type MarkerStyle } from './udp-framing.ts';
import { monotonicClock, Timer, type Clock } from './clock.ts';

export interface SocketSpec {
  /** Address to bind: a specific address (recommended, see module note) or 0.0.0.0 / ::. */
  readonly address: string;
  /** 0 = any free port (tests). */
  readonly port: number;
  /** The socket frames IKE with the non-ESP marker (port 4500 style). */
  readonly marker: boolean;
  /** SO_REUSEADDR: several sockets (processes) share the address and port, as multicast receivers do. */
  readonly reuseAddr?: boolean | undefined;
  readonly multicast?: MulticastSocketOptions | undefined;
}

export interface MulticastSocketOptions {
  /** Groups to join (IP_ADD_MEMBERSHIP); the socket then only receives, it is not picked to send from. */
  readonly join?: readonly string[] | undefined;
  /** Local interface address for joining and for sending to groups (IP_MULTICAST_IF); default: the kernel's choice. */
  readonly interface?: string | undefined;
  /** IP_MULTICAST_TTL for sending (default 1: the local link). */
  readonly ttl?: number | undefined;
  /** IP_MULTICAST_LOOP: deliver our own multicast to sockets on this host (default true). */
  readonly loopback?: boolean | undefined;
}

export interface UdpCounters {
  /** IKE messages handed to the engine. */
  ikeReceived: number;
  /** IKE messages (and fragments) handed to the kernel. */
  ikeSent: number;
  /** IKE octets received / sent (without the marker). */
  ikeOctetsReceived: number;
  ikeOctetsSent: number;
  natKeepalivesReceived: number;
  natKeepalivesSent: number;
  /** UDP-encapsulated ESP seen on marker sockets. */
  espReceived: number;
  /** Datagrams too short to classify on a marker socket. */
  invalidDropped: number;
  /** Sends that failed or named no known local socket. */
  sendErrors: number;
  /** Exceptions thrown by the engine (the datagram is dropped, the adapter goes on). */
  engineErrors: number;
  /** Calls of engine.timeout. */
  timeouts: number;
}

export interface UdpAdapterOptions<E> {
  /** Time source for `now` (default: monotonic). */
  readonly clock?: Clock;
  /** Receives every event the engine emits, in order. */
  readonly onEvent?: (event: E) => void;
  /** Socket errors, send failures and engine exceptions. */
  readonly onError?: (error: Error, context: string) => void;
  /** UDP-encapsulated ESP arriving on a marker socket (the whole datagram). */
  readonly onEsp?: (datagram: Buffer, from: Endpoint, local: LocalEndpoint) => void;
}

interface BoundSocket {
  readonly socket: dgram.Socket;
  readonly local: LocalEndpoint;
  readonly family: 4 | 6;
  readonly style: MarkerStyle;
  readonly wildcard: boolean;
  /** Joined multicast groups: receive only. */
  readonly receiveOnly: boolean;
  /** Configured to send multicast (interface/TTL/loopback set). */
  readonly multicastSender: boolean;
}

/**
 * Address lookup for our sockets: every address the engine sends to is an IP
 * literal, which dgram would otherwise pass through dns.lookup and a
 * process.nextTick before the datagram leaves; answering synchronously sends
 * it at once. Names (never produced by the engine) still go to dns.lookup.
 */
function literalLookup(
  hostname: string,
  options: LookupOneOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  const family = isIP(hostname);
  if (family !== 0) callback(null, hostname, family);
  else dnsLookup(hostname, options, callback);
}

/** 224.0.0.0/4 or ff00::/8. */
export function isMulticastAddress(address: string): boolean {
  const family = ipFamily(address);
  if (family === 4) {
    const first = Number(address.split('.')[0]);
    return first >= 224 && first <= 239;
  }
  return family === 6 && address.toLowerCase().startsWith('ff');
}

export class UdpAdapterError extends Error {
  override readonly name = 'UdpAdapterError';
}

export class UdpAdapter<E = unknown> {
  private readonly sockets: BoundSocket[] = [];
  private readonly timer: Timer;
  private readonly clock: Clock;
  private closed = false;
  private readonly stats: UdpCounters = {
    ikeReceived: 0,
    ikeSent: 0,
    ikeOctetsReceived: 0,
    ikeOctetsSent: 0,
    natKeepalivesReceived: 0,
    natKeepalivesSent: 0,
    espReceived: 0,
    invalidDropped: 0,
    sendErrors: 0,
    engineErrors: 0,
    timeouts: 0,
  };

  private constructor(
    private readonly engine: DatagramEngine<E>,
    private readonly options: UdpAdapterOptions<E>,
  ) {
    this.clock = options.clock ?? monotonicClock;
    this.timer = new Timer(this.clock, (now) => this.onTimer(now));
  }

  /** Binds every socket (all or nothing) and arms the engine's first timeout. */
  static async open<E>(
    engine: DatagramEngine<E>,
    specs: readonly SocketSpec[],
    options: UdpAdapterOptions<E> = {},
  ): Promise<UdpAdapter<E>> {
    if (specs.length === 0) throw new UdpAdapterError('no sockets to open');
    const adapter = new UdpAdapter(engine, options);
    try {
      for (const spec of specs) adapter.sockets.push(await adapter.bind(spec));
    } catch (e) {
      await adapter.close();
      throw e;
    }
    adapter.rearm();
    return adapter;
  }

  /** The bound sockets, with the ports the kernel chose for port 0. */
  get locals(): readonly LocalEndpoint[] {
    return this.sockets.map((s) => s.local);
  }

  /** A snapshot of the counters. */
  get counters(): Readonly<UdpCounters> {
    return { ...this.stats };
  }

  /**
   * Runs an engine call made outside receive/timeout (e.g. starting an
   * exchange) with the current time, and dispatches its output.
   */
  act(call: (now: number) => Output<E>): void {
    if (this.closed) return;
    let out: Output<E>;
    try {
      out = call(this.clock.now());
    } catch (e) {
      this.stats.engineErrors++;
      this.report(e, 'engine call');
      this.rearm();
      return;
    }
    this.dispatch(out);
  }

  /** Sends an output, emits its events and re-arms the timer. */
  dispatch(out: Output<E>): void {
    if (this.closed) return;
    for (const o of out.send) this.send(o);
    for (const ev of out.events) {
      try {
        this.options.onEvent?.(ev);
      } catch (e) {
        this.report(e, 'event listener');
      }
    }
    this.rearm();
  }

  /**
   * Binds one more socket while running (e.g. a member's multicast receive
   * socket once it knows its Rekey SA's group) and returns its endpoint.
   */
  async addSocket(spec: SocketSpec): Promise<LocalEndpoint> {
    if (this.closed) throw new UdpAdapterError('adapter is closed');
    const bound = await this.bind(spec);
    if (this.closed) {
      bound.socket.close();
      throw new UdpAdapterError('adapter is closed');
    }
    this.sockets.push(bound);
    return bound.local;
  }

  /** Closes one socket (as reported by `locals` / `addSocket`); false when there is none. */
  async removeSocket(local: Endpoint): Promise<boolean> {
    const i = this.sockets.findIndex((s) => s.local.address === local.address && s.local.port === local.port);
    if (i < 0) return false;
    const [s] = this.sockets.splice(i, 1);
    await new Promise<void>((resolve) => {
      try {
        s!.socket.close(() => resolve());
      } catch {
        resolve(); // already closed
      }
    });
    return true;
  }

  /** Closes every socket and cancels the timer; the engine is not called again. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.timer.cancel();
    await Promise.all(
      this.sockets.map(
        (s) =>
          new Promise<void>((resolve) => {
            try {
              s.socket.close(() => resolve());
            } catch {
              resolve(); // already closed
            }
          }),
      ),
    );
  }

  private bind(spec: SocketSpec): Promise<BoundSocket> {
    const family = ipFamily(spec.address);
    if (family === undefined) return Promise.reject(new UdpAdapterError(`bad bind address "${spec.address}"`));
    const reuseAddr = spec.reuseAddr === true;
    const socket = dgram.createSocket(
      family === 6 ? { type: 'udp6', ipv6Only: true, reuseAddr, lookup: literalLookup } : { type: 'udp4', reuseAddr, lookup: literalLookup },
    );
    const style: MarkerStyle = spec.marker ? 'non-esp-marker' : 'none';
    const mc = spec.multicast;
    return new Promise<BoundSocket>((resolve, reject) => {
      const onBindError = (err: Error): void => {
        socket.close();
        reject(err);
      };
      socket.once('error', onBindError);
      socket.bind({ address: spec.address, port: spec.port, exclusive: true }, () => {
        socket.off('error', onBindError);
        const a = socket.address();
        const joins = mc?.join ?? [];
        try {
          if (mc) {
            if (mc.interface !== undefined) socket.setMulticastInterface(mc.interface);
            socket.setMulticastTTL(mc.ttl ?? 1);
            socket.setMulticastLoopback(mc.loopback ?? true);
            for (const group of joins) socket.addMembership(group, mc.interface);
          }
        } catch (e) {
          socket.close();
          reject(e instanceof Error ? e : new UdpAdapterError(String(e)));
          return;
        }
        const bound: BoundSocket = {
          socket,
          local: { address: a.address, port: a.port, marker: spec.marker },
          family,
          style,
          wildcard: a.address === '0.0.0.0' || a.address === '::',
          receiveOnly: joins.length > 0 || isMulticastAddress(a.address),
          multicastSender: mc !== undefined && joins.length === 0,
        };
        socket.on('error', (err) => this.report(err, `socket ${a.address}:${a.port}`));
        socket.on('message', (msg, rinfo) => this.onMessage(bound, msg, { address: rinfo.address, port: rinfo.port }));
        resolve(bound);
      });
    });
  }

  private onMessage(s: BoundSocket, datagram: Buffer, from: Endpoint): void {
    if (this.closed) return;
    const c = classifyDatagram(datagram, s.style);
    switch (c.kind) {
      case 'nat-keepalive':
        this.stats.natKeepalivesReceived++;
        return;
      case 'esp':
        this.stats.espReceived++;
        try {
          this.options.onEsp?.(datagram, from, s.local);
        } catch (e) {
          this.report(e, 'ESP listener');
        }
        return;
      case 'invalid':
        this.stats.invalidDropped++;
        return;
      case 'ike':
        break;
    }
    this.stats.ikeReceived++;
    this.stats.ikeOctetsReceived += c.message.length;
    let out: Output<E>;
    try {
      out = this.engine.receive(c.message, from, s.local, this.clock.now());
    } catch (e) {
      this.stats.engineErrors++;
      this.report(e, 'engine.receive');
      this.rearm();
      return;
    }
    this.dispatch(out);
  }

  private onTimer(now: number): void {
    if (this.closed) return;
    this.stats.timeouts++;
    let out: Output<E>;
    try {
      out = this.engine.timeout(now);
    } catch (e) {
      this.stats.engineErrors++;
      this.report(e, 'engine.timeout');
      this.rearm();
      return;
    }
    this.dispatch(out);
  }

  private rearm(): void {
    if (this.closed) return;
    let next: number | undefined;
    try {
      next = this.engine.nextTimeout();
    } catch (e) {
      this.stats.engineErrors++;
      this.report(e, 'engine.nextTimeout');
      next = undefined;
    }
    this.timer.armAt(next);
  }

  private pickSocket(o: Outgoing): BoundSocket | undefined {
    // The common case, a reply from the socket the request came in on.
    const l0 = o.local;
    if (l0 && l0.port !== 0) {
      for (const s of this.sockets) if (s.local.port === l0.port && s.local.address === l0.address) return s;
    }
    const family = ipFamily(o.to.address);
    const senders = this.sockets.filter((s) => !s.receiveOnly);
    // Multicast: prefer a socket set up for it (interface, TTL, loopback).
    const ordered = isMulticastAddress(o.to.address) ? [...senders.filter((s) => s.multicastSender), ...senders.filter((s) => !s.multicastSender)] : senders;
    if (o.local) {
      const l = o.local;
      // Port 0: any sending socket on that address (a GSA_REKEY source selector without a port).
      const candidates = l.port === 0 ? ordered : this.sockets;
      const port = (s: BoundSocket): boolean => l.port === 0 || s.local.port === l.port;
      return (
        candidates.find((s) => port(s) && s.local.address === l.address) ??
        candidates.find((s) => port(s) && s.wildcard && s.family === ipFamily(l.address))
      );
    }
    return ordered.find((s) => s.family === family && !s.local.marker) ?? ordered.find((s) => s.family === family);
  }

  private send(o: Outgoing): void {
    const s = this.pickSocket(o);
    if (!s) {
      this.stats.sendErrors++;
      this.report(
        new UdpAdapterError(
          `no socket for ${o.local ? `local ${o.local.address}:${o.local.port}` : `destination ${o.to.address}`}`,
        ),
        'send',
      );
      return;
    }
    let datagram: Buffer;
    if (o.kind === 'nat-keepalive') {
      datagram = Buffer.from([NAT_KEEPALIVE]);
      this.stats.natKeepalivesSent++;
    } else {
      datagram = frameIkeMessage(o.data, s.style);
      this.stats.ikeSent++;
      this.stats.ikeOctetsSent += o.data.length;
    }
    try {
      // One shared callback: node's send error already names the destination.
      s.socket.send(datagram, o.to.port, o.to.address, this.afterSend);
    } catch (e) {
      this.stats.sendErrors++;
      this.report(e, `send to ${o.to.address}:${o.to.port}`);
    }
  }

  private readonly afterSend = (err: Error | null): void => {
    if (err) {
      this.stats.sendErrors++;
      this.report(err, 'send');
    }
  };

  private report(e: unknown, context: string): void {
    const err = e instanceof Error ? e : new Error(String(e));
    this.options.onError?.(err, context);
  }
}
