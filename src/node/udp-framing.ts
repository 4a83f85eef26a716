/**
 * How IKE messages sit in UDP datagrams (RFC 7296 Section 2.23, RFC 3948).
 *
 * On port 500 (and G-IKEv2's 848) a datagram is exactly one IKE message. On
 * port 4500 datagrams are shared with UDP-encapsulated ESP: IKE messages are
 * prefixed by a 4-octet non-ESP marker of zeros, a datagram whose first four
 * octets are non-zero is ESP (they are its SPI), and the single octet 0xFF is
 * a NAT-keepalive. Pure functions; the socket layer and the CLI share them.
 */

export type MarkerStyle =
  /** Ports 500 / 848: the datagram is the IKE message. */
  | 'none'
  /** Port 4500 style: non-ESP marker before IKE, ESP and keepalives alongside. */
  | 'non-esp-marker';

export const NON_ESP_MARKER_LENGTH = 4;
export const NAT_KEEPALIVE = 0xff;

export type DatagramClass =
  /** `message` is the IKE message (a view into the datagram, marker removed). */
  | { readonly kind: 'ike'; readonly message: Buffer; readonly markerLength: 0 | 4 }
  /** UDP-encapsulated ESP (RFC 3948); `spi` is its first four octets. */
  | { readonly kind: 'esp'; readonly spi: number }
  | { readonly kind: 'nat-keepalive' }
  /** Too short to be anything on a marker port. */
  | { readonly kind: 'invalid'; readonly reason: string };

/** Says what a UDP payload is, given the framing its port uses. */
export function classifyDatagram(payload: Uint8Array, markerStyle: MarkerStyle): DatagramClass {
  const b = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  if (markerStyle === 'none') return { kind: 'ike', message: b, markerLength: 0 };
  if (b.length === 1 && b[0] === NAT_KEEPALIVE) return { kind: 'nat-keepalive' };
  if (b.length < NON_ESP_MARKER_LENGTH) {
    return { kind: 'invalid', reason: `${b.length}-octet datagram on a non-ESP-marker port` };
  }
  const first = b.readUInt32BE(0);
  if (first !== 0) return { kind: 'esp', spi: first };
  return { kind: 'ike', message: b.subarray(NON_ESP_MARKER_LENGTH), markerLength: NON_ESP_MARKER_LENGTH };
}

/** The datagram that carries `message` with the given framing. */
export function frameIkeMessage(message: Uint8Array, markerStyle: MarkerStyle): Buffer {
  if (markerStyle === 'none') return Buffer.from(message);
  const out = Buffer.alloc(NON_ESP_MARKER_LENGTH + message.length);
  out.set(message, NON_ESP_MARKER_LENGTH);
  return out;
}

/** The framing of the well-known IKE ports: 500 and 848 bare, 4500 with the marker. */
export const DEFAULT_IKE_PORTS: ReadonlyMap<number, MarkerStyle> = new Map<number, MarkerStyle>([
  [500, 'none'],
  [848, 'none'],
  [4500, 'non-esp-marker'],
]);

/**
 * The framing for a datagram between two ports, or undefined if neither is
 * an IKE port. The lower-numbered matching port wins when both match with
 * different styles (500 -> 4500 never happens in practice).
 */
export function markerStyleFor(
  srcPort: number,
  dstPort: number,
  ports: ReadonlyMap<number, MarkerStyle> = DEFAULT_IKE_PORTS,
): MarkerStyle | undefined {
  return ports.get(dstPort) ?? ports.get(srcPort);
}

export class PortSpecError extends Error {
  override readonly name = 'PortSpecError';
}

/** Parses `N`, `N:marker` or `N:none` (as given to `--port`). */
export function parsePortSpec(spec: string): { port: number; style: MarkerStyle } {
  const m = /^(\d{1,5})(?::(marker|none))?$/.exec(spec.trim());
  const port = m ? Number(m[1]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new PortSpecError(`bad port "${spec}": expected N or N:marker with 1 <= N <= 65535`);
  }
  return { port, style: m[2] === 'marker' ? 'non-esp-marker' : 'none' };
}
