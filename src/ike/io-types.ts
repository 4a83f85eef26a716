/**
 * The contract between the sans-I/O engine and whatever moves its bytes:
 * src/node/udp.ts on real sockets, the simulator in test/sim/ in memory.
 *
 * The engine never touches a socket or a clock. The adapter calls
 * `receive` for every IKE message that arrived (NAT-T framing already
 * removed), `timeout` when the time given by `nextTimeout` has come, and
 * sends whatever either returns. After every call it asks `nextTimeout`
 * again and re-arms its single timer.
 *
 * Times are milliseconds on the adapter's clock (`now` passed in); the engine
 * only compares and adds them.
 */

/** An IP address (text as node prints it: `192.0.2.1`, `2001:db8::1`) and a UDP port. */
export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

/**
 * A local socket's endpoint as the adapter reports it on receipt. `marker`
 * says whether that socket frames IKE with the 4-octet non-ESP marker
 * (port 4500 style); the engine needs it to know whether it has floated.
 */
export interface LocalEndpoint extends Endpoint {
  readonly marker: boolean;
}

/** One datagram the engine wants sent. */
export interface Outgoing {
  readonly to: Endpoint;
  /**
   * Which local socket to send from (address and port as reported in
   * `receive`'s `local` or by the adapter's list of sockets). Absent: the
   * adapter's first socket of the destination's address family that does
   * not use the marker. Replies should name the socket the request came in on.
   */
  readonly local?: Endpoint | undefined;
  /**
   * The IKE message, WITHOUT the non-ESP marker: the adapter adds it on
   * marker sockets. Ignored for a NAT keepalive.
   */
  readonly data: Buffer;
  /**
   * 'nat-keepalive': send the one-octet 0xFF NAT-keepalive (RFC 3948
   * Section 2.3) instead of `data`; only meaningful on a marker socket.
   * Default 'ike'.
   */
  readonly kind?: 'ike' | 'nat-keepalive';
}

/** What one call into the engine produced. */
export interface Output<E = unknown> {
  readonly send: readonly Outgoing[];
  readonly events: readonly E[];
}

/** The engine-side interface an adapter drives. */
export interface DatagramEngine<E = unknown> {
  /**
   * One IKE message (marker stripped) from `from`, received on `local`.
   * Must not throw on hostile input; an adapter still catches and counts.
   */
  receive(data: Buffer, from: Endpoint, local: LocalEndpoint, now: number): Output<E>;
  /** The time returned by nextTimeout has come (or passed). */
  timeout(now: number): Output<E>;
  /** Absolute time (same clock as `now`) of the next timer, or undefined for none. */
  nextTimeout(): number | undefined;
}

/** An Output with nothing in it. */
export const EMPTY_OUTPUT: Output<never> = Object.freeze({ send: Object.freeze([]), events: Object.freeze([]) });

/** Concatenates outputs, e.g. of several IKE SAs' timeouts. */
export function mergeOutputs<E>(...outputs: readonly Output<E>[]): Output<E> {
  return { send: outputs.flatMap((o) => o.send), events: outputs.flatMap((o) => o.events) };
}

export function endpointKey(e: Endpoint): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.address === b.address && a.port === b.port;
}
