/**
 * Traffic selectors in configuration files, turned into the wire form
 * (RFC 7296 Section 3.13.1) that GSA policies carry.
 *
 *   destination: 239.1.1.1                       # address only: any protocol, any port
 *   destination: {address: 239.1.1.1, protocol: udp, port: 5000}
 *   source: {address: 192.0.2.0/24}              # prefix
 *   source: {address: 192.0.2.1-192.0.2.9, port: 1024-65535}
 *   source: any                                  # the other selector's family, all addresses
 */
import { isIPv4, isIPv6 } from 'node:net';
import { TsType } from '../wire/iana.ts';
import { addressToBytes, bytesToAddress, type TrafficSelector } from '../wire/traffic-selector.ts';
import { describe, joinField, type FieldReader } from './config-fields.ts';
import { parsePrefix } from './config-identities.ts';

export type AddressRange = { readonly v6: boolean; readonly start: string; readonly end: string };
export type RangeTrafficSelector = Extract<TrafficSelector, { readonly startAddress: string }>;

const IP_PROTOCOLS: Readonly<Record<string, number>> = { any: 0, icmp: 1, tcp: 6, udp: 17, ipv6icmp: 58, sctp: 132 };
export const UDP = IP_PROTOCOLS['udp']!;

/** A selector before the family of `any` is known. */
export interface SelectorSpec {
  readonly range: AddressRange | 'any';
  readonly ipProtocol: number;
  readonly startPort: number;
  readonly endPort: number;
}

export function readSelector(r: FieldReader, path: string, value: unknown): SelectorSpec | undefined {
  if (value === undefined || value === null) return { range: 'any', ipProtocol: 0, startPort: 0, endPort: 0xffff };
  if (typeof value === 'string') {
    const range = readAddressRange(r, path, value);
    return range && { range, ipProtocol: 0, startPort: 0, endPort: 0xffff };
  }
  const m = r.map(path, value, ['address', 'protocol', 'port']);
  if (!m) return undefined;
  const range = m['address'] === undefined ? 'any' : readAddressRange(r, joinField(path, 'address'), m['address']);
  const ipProtocol = m['protocol'] === undefined ? 0 : readIpProtocol(r, joinField(path, 'protocol'), m['protocol']);
  const ports = m['port'] === undefined ? { start: 0, end: 0xffff } : readPortRange(r, joinField(path, 'port'), m['port']);
  if (range === undefined || ipProtocol === undefined || ports === undefined) return undefined;
  return { range, ipProtocol, startPort: ports.start, endPort: ports.end };
}

function readAddressRange(r: FieldReader, path: string, value: unknown): AddressRange | 'any' | undefined {
  const text = r.string(path, value);
  if (text === undefined) return undefined;
  if (text.toLowerCase() === 'any') return 'any';
  const prefix = parsePrefix(text);
  if (prefix) {
    const last = Buffer.from(prefix.network);
    for (let i = 0; i < last.length; i++) {
      const keep = Math.max(0, Math.min(8, prefix.prefixLength - 8 * i));
      last[i] = last[i]! | (0xff >> keep);
    }
    return { v6: prefix.network.length === 16, start: bytesToAddress(prefix.network), end: bytesToAddress(last) };
  }
  const [a, b, extra] = text.split('-').map((s) => s.trim());
  const start = a ?? '';
  const end = b ?? start;
  const v6 = isIPv6(start);
  const ok = extra === undefined && (v6 ? isIPv6(end) : isIPv4(start) && isIPv4(end));
  if (!ok) return r.fail(path, `must be an address, prefix (a.b.c.d/n), range (a-b) or any, got ${describe(text)}`);
  const s = addressToBytes(start, v6);
  const e = addressToBytes(end, v6);
  if (Buffer.compare(s, e) > 0) return r.fail(path, 'range start is above its end');
  return { v6, start: bytesToAddress(s), end: bytesToAddress(e) };
}

function readIpProtocol(r: FieldReader, path: string, value: unknown): number | undefined {
  if (typeof value === 'number') return r.integer(path, value, 0, 255);
  const name = typeof value === 'string' ? value.trim().toLowerCase().replace(/-/g, '') : undefined;
  const id = name === undefined ? undefined : IP_PROTOCOLS[name];
  if (id === undefined) return r.fail(path, `must be ${Object.keys(IP_PROTOCOLS).join(', ')} or a number 0..255, got ${describe(value)}`);
  return id;
}

function readPortRange(r: FieldReader, path: string, value: unknown): { start: number; end: number } | undefined {
  if (typeof value === 'number') {
    const p = r.integer(path, value, 0, 0xffff);
    return p === undefined ? undefined : { start: p, end: p };
  }
  const text = r.string(path, value);
  if (text === undefined) return undefined;
  if (text.toLowerCase() === 'any') return { start: 0, end: 0xffff };
  const m = /^(\d+)\s*-\s*(\d+)$/.exec(text);
  const start = m ? Number(m[1]) : NaN;
  const end = m ? Number(m[2]) : NaN;
  if (!(start >= 0 && end <= 0xffff && start <= end)) return r.fail(path, `must be a port, a range a-b or any, got ${describe(text)}`);
  return { start, end };
}

export function isSingleAddress(s: SelectorSpec): boolean {
  return s.range !== 'any' && s.range.start === s.range.end;
}

export function isMulticastRange(range: AddressRange): boolean {
  if (!range.v6) {
    const first = (a: string): number => Number(a.split('.')[0]);
    return first(range.start) >= 224 && first(range.end) <= 239;
  }
  return range.start.toLowerCase().startsWith('ff') && range.end.toLowerCase().startsWith('ff');
}

/**
 * Wire selectors for a source/destination pair. `any` takes the other
 * selector's family (IPv4 when both are `any`); a protocol given on one side
 * only applies to both, since a packet has one IP protocol.
 */
export function resolveSelectorPair(
  r: FieldReader,
  path: string,
  source: SelectorSpec,
  destination: SelectorSpec,
): { source: RangeTrafficSelector; destination: RangeTrafficSelector } | undefined {
  const family = (s: SelectorSpec): boolean | undefined => (s.range === 'any' ? undefined : s.range.v6);
  const v6 = family(destination) ?? family(source) ?? false;
  if (family(source) !== undefined && family(destination) !== undefined && family(source) !== family(destination)) {
    return r.fail(path, 'source and destination must be of the same address family');
  }
  if (source.ipProtocol !== 0 && destination.ipProtocol !== 0 && source.ipProtocol !== destination.ipProtocol) {
    return r.fail(path, 'source and destination name different IP protocols');
  }
  const ipProtocol = destination.ipProtocol || source.ipProtocol;
  const wire = (s: SelectorSpec): RangeTrafficSelector => {
    const range = s.range === 'any' ? anyRange(v6) : s.range;
    return {
      type: v6 ? TsType.TS_IPV6_ADDR_RANGE : TsType.TS_IPV4_ADDR_RANGE,
      ipProtocol,
      startPort: s.startPort,
      endPort: s.endPort,
      startAddress: range.start,
      endAddress: range.end,
    };
  };
  return { source: wire(source), destination: wire(destination) };
}

function anyRange(v6: boolean): AddressRange {
  return v6
    ? { v6, start: '::', end: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff' }
    : { v6, start: '0.0.0.0', end: '255.255.255.255' };
}
