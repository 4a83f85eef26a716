import { isIPv4, isIPv6 } from 'node:net';
import { TsType } from './iana.ts';
import type { Reader } from './reader.ts';
import { EncodeError, type Writer } from './writer.ts';

/**
 * Traffic Selector substructure (RFC 7296 Section 3.13.1). Addresses are kept
 * as text in canonical form (dotted quad; RFC 5952 for IPv6) because that is
 * how operators write them in configuration and read them in logs.
 * Unknown TS types are kept as opaque bytes so they survive a round trip.
 */
export type TrafficSelector =
  | {
      readonly type: typeof TsType.TS_IPV4_ADDR_RANGE | typeof TsType.TS_IPV6_ADDR_RANGE;
      readonly ipProtocol: number;
      readonly startPort: number;
      readonly endPort: number;
      readonly startAddress: string;
      readonly endAddress: string;
    }
  /** An unknown TS type: `raw` is the whole substructure, header included. */
  | { readonly type: number; readonly raw: Buffer };

const HEADER = 8;

export function encodeTrafficSelector(w: Writer, ts: TrafficSelector): void {
  if ('raw' in ts) {
    if (ts.raw.length < 4 || ts.raw[0] !== ts.type || ts.raw.readUInt16BE(2) !== ts.raw.length) {
      throw new EncodeError(`opaque traffic selector type ${ts.type}: inconsistent raw bytes`);
    }
    w.bytes(ts.raw);
    return;
  }
  const v6 = ts.type === TsType.TS_IPV6_ADDR_RANGE;
  const start = addressToBytes(ts.startAddress, v6);
  const end = addressToBytes(ts.endAddress, v6);
  w.u8(ts.type).u8(ts.ipProtocol).u16(HEADER + start.length + end.length);
  w.u16(ts.startPort).u16(ts.endPort).bytes(start).bytes(end);
}

export function decodeTrafficSelector(r: Reader, segment: string): TrafficSelector {
  const head = r.child(segment);
  const type = head.u8('ts type');
  head.u8('ip protocol');
  const len = head.u16('selector length');
  if (len < 4) head.fail('bad-length', `selector length ${len} < 4`);
  const body = r.sub(len, segment);
  if (type !== TsType.TS_IPV4_ADDR_RANGE && type !== TsType.TS_IPV6_ADDR_RANGE) {
    return { type, raw: body.rest() };
  }
  body.skip(1);
  const addrLen = type === TsType.TS_IPV4_ADDR_RANGE ? 4 : 16;
  if (len !== HEADER + 2 * addrLen) body.fail('bad-length', `selector length ${len} != ${HEADER + 2 * addrLen}`);
  const ipProtocol = body.u8('ip protocol');
  body.skip(2);
  const startPort = body.u16('start port');
  const endPort = body.u16('end port');
  const startAddress = bytesToAddress(body.bytes(addrLen, 'starting address'));
  const endAddress = bytesToAddress(body.bytes(addrLen, 'ending address'));
  return { type, ipProtocol, startPort, endPort, startAddress, endAddress };
}

export function addressToBytes(addr: string, v6: boolean): Buffer {
  if (!v6) {
    if (!isIPv4(addr)) throw new EncodeError(`not an IPv4 address: ${addr}`);
    return Buffer.from(addr.split('.').map((p) => Number(p)));
  }
  if (!isIPv6(addr)) throw new EncodeError(`not an IPv6 address: ${addr}`);
  return ipv6ToBytes(addr);
}

export function bytesToAddress(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length === 16) return formatIPv6(b);
  throw new EncodeError(`address must be 4 or 16 octets, got ${b.length}`);
}

function ipv6ToBytes(addr: string): Buffer {
  let text = addr;
  const out = Buffer.alloc(16);
  // Embedded IPv4 tail (::ffff:1.2.3.4).
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let tail: number[] = [];
  if (v4) {
    const parts = v4[1]!.split('.').map(Number);
    tail = [(parts[0]! << 8) | parts[1]!, (parts[2]! << 8) | parts[3]!];
    text = text.slice(0, -v4[1]!.length) + '0:0';
  }
  const [headText, tailText] = text.includes('::') ? text.split('::') : [text, undefined];
  const head = headText ? headText.split(':').filter((s) => s.length > 0) : [];
  const rest = tailText !== undefined && tailText.length > 0 ? tailText.split(':') : [];
  const groups = [...head.map((g) => parseInt(g, 16))];
  const fill = 8 - head.length - rest.length;
  for (let i = 0; i < fill && tailText !== undefined; i++) groups.push(0);
  groups.push(...rest.map((g) => parseInt(g, 16)));
  if (tail.length) {
    groups[6] = tail[0]!;
    groups[7] = tail[1]!;
  }
  for (let i = 0; i < 8; i++) out.writeUInt16BE(groups[i] ?? 0, i * 2);
  return out;
}

/** RFC 5952 canonical text: lower case, longest run (>= 2) of zero groups compressed. */
export function formatIPv6(b: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}
