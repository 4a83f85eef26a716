import { isIPv4, isIPv6 } from 'node:net';
import { addressToBytes, bytesToAddress } from '../wire/traffic-selector.ts';

/**
 * Capture files in and out, as pure functions over Buffers (the CLI and tests
 * do the file I/O). Reads classic pcap (either byte order, microsecond or
 * nanosecond timestamps) and pcapng (SHB/IDB/EPB/SPB/obsolete PB, either byte
 * order, per-interface timestamp resolution), unwraps the link layer
 * (Ethernet with VLAN tags, raw IP, Linux SLL and SLL2, BSD null/loopback)
 * and IPv4/IPv6 down to UDP datagrams. Writes classic pcap of IPv4 or IPv6
 * UDP packets over Ethernet or raw IP.
 *
 * A capture is hostile input like any other: every length is checked against
 * the enclosing block before use, nothing is allocated from a length field,
 * and the only exception a reader throws is PcapError. Frames that are
 * well-formed but not UDP over IP (ARP, TCP, IP fragments, truncated by the
 * snap length) are not errors; they are counted in `skipped`.
 */

export type PcapErrorKind =
  /** Not a capture file we know (bad magic). */
  | 'bad-magic'
  /** The file ends inside a header, record or block. */
  | 'truncated'
  /** A length field inconsistent with its block or above a safety cap. */
  | 'bad-length'
  /** A field value the format forbids, or an unusable writer input. */
  | 'bad-value'
  /** A record count or size above the reader's caps. */
  | 'limit';

export class PcapError extends Error {
  override readonly name = 'PcapError';
  constructor(
    readonly kind: PcapErrorKind,
    readonly detail: string,
    /** Offset in the file, in octets, where the problem is. */
    readonly offset: number,
  ) {
    super(`pcap: ${detail} (at octet ${offset})`);
  }
}

export const PcapLimits = Object.freeze({
  /** Largest captured frame accepted (libpcap's own maximum snap length). */
  maxFrame: 262_144,
  /** Records read from one file. */
  maxRecords: 1_000_000,
  /** Interfaces described in one pcapng section. */
  maxInterfaces: 1024,
  /** Stacked VLAN tags / IPv6 extension headers walked before giving up. */
  maxVlanTags: 4,
  maxIpv6ExtHeaders: 8,
});

/** Link-layer header types (tcpdump.org/linktypes.html) that we unwrap. */
export const LinkType = Object.freeze({
  NULL: 0,
  ETHERNET: 1,
  RAW_ALT: 12,
  RAW: 101,
  LOOP: 108,
  LINUX_SLL: 113,
  IPV4: 228,
  IPV6: 229,
  LINUX_SLL2: 276,
});

export type CaptureFormat = 'pcap' | 'pcapng';

/** One UDP datagram found in a capture. */
export interface Datagram {
  /** 1-based number of the frame in the file (as Wireshark numbers them). */
  readonly frame: number;
  /** Seconds since the epoch (fractional). */
  readonly time: number;
  readonly src: string;
  readonly srcPort: number;
  readonly dst: string;
  readonly dstPort: number;
  readonly payload: Buffer;
}

export interface SkippedFrame {
  readonly frame: number;
  readonly reason: string;
}

export interface Capture {
  readonly format: CaptureFormat;
  /** Link types seen (one for classic pcap; one per interface for pcapng). */
  readonly linkTypes: readonly number[];
  readonly datagrams: readonly Datagram[];
  /** Frames that were not UDP over IPv4/IPv6 or were cut short by the snap length. */
  readonly skipped: readonly SkippedFrame[];
}

const PCAP_MAGIC_US = 0xa1b2c3d4;
const PCAP_MAGIC_NS = 0xa1b23c4d;
const PCAPNG_SHB = 0x0a0d0d0a;
const PCAPNG_BOM = 0x1a2b3c4d;

/** Recognises a capture by its first four octets; undefined if it is not one. */
export function detectCaptureFormat(buf: Uint8Array): CaptureFormat | undefined {
  if (buf.length < 4) return undefined;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const be = b.readUInt32BE(0);
  const le = b.readUInt32LE(0);
  if (be === PCAPNG_SHB) return 'pcapng';
  for (const m of [be, le]) if (m === PCAP_MAGIC_US || m === PCAP_MAGIC_NS) return 'pcap';
  return undefined;
}

/** Reads a classic pcap or pcapng capture, chosen by magic. */
export function readCapture(buf: Uint8Array): Capture {
  const format = detectCaptureFormat(buf);
  if (format === 'pcap') return readPcap(buf);
  if (format === 'pcapng') return readPcapng(buf);
  throw new PcapError('bad-magic', 'not a pcap or pcapng file', 0);
}

/** A bounds-checked little/big-endian view; every read failure is a PcapError. */
class Cursor {
  readonly b: Buffer;
  constructor(
    buf: Uint8Array,
    public le: boolean,
  ) {
    this.b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  need(at: number, n: number, what: string): void {
    if (at < 0 || n < 0 || at + n > this.b.length) {
      throw new PcapError('truncated', `${what}: need ${n} octet(s) at ${at}, file has ${this.b.length}`, at);
    }
  }
  u16(at: number, what: string): number {
    this.need(at, 2, what);
    return this.le ? this.b.readUInt16LE(at) : this.b.readUInt16BE(at);
  }
  u32(at: number, what: string): number {
    this.need(at, 4, what);
    return this.le ? this.b.readUInt32LE(at) : this.b.readUInt32BE(at);
  }
  i32(at: number, what: string): number {
    this.need(at, 4, what);
    return this.le ? this.b.readInt32LE(at) : this.b.readInt32BE(at);
  }
}

class Collector {
  readonly datagrams: Datagram[] = [];
  readonly skipped: SkippedFrame[] = [];
  frames = 0;

  add(linkType: number, time: number, frame: Uint8Array, at: number): void {
    this.frames++;
    if (this.frames > PcapLimits.maxRecords) {
      throw new PcapError('limit', `more than ${PcapLimits.maxRecords} records`, at);
    }
    const r = parseFrame(linkType, frame);
    if ('reason' in r) this.skipped.push({ frame: this.frames, reason: r.reason });
    else this.datagrams.push({ frame: this.frames, time, ...r });
  }
}

/** Classic libpcap format: 24-octet file header, 16-octet record headers. */
export function readPcap(buf: Uint8Array): Capture {
  if (buf.length < 24) throw new PcapError('truncated', `pcap file header needs 24 octets, have ${buf.length}`, 0);
  const c = new Cursor(buf, false);
  let magic = c.u32(0, 'magic');
  if (magic !== PCAP_MAGIC_US && magic !== PCAP_MAGIC_NS) {
    c.le = true;
    magic = c.u32(0, 'magic');
    if (magic !== PCAP_MAGIC_US && magic !== PCAP_MAGIC_NS) throw new PcapError('bad-magic', 'not a pcap file', 0);
  }
  const fracPerSecond = magic === PCAP_MAGIC_NS ? 1e9 : 1e6;
  const major = c.u16(4, 'version major');
  if (major !== 2) throw new PcapError('bad-value', `unsupported pcap version ${major}`, 4);
  // The FCS bits live in the top of the link-type word (since libpcap 1.x).
  const linkType = c.u32(20, 'link type') & 0xffff;
  const out = new Collector();
  let at = 24;
  while (at < c.b.length) {
    const sec = c.u32(at, 'record timestamp');
    const frac = c.u32(at + 4, 'record timestamp fraction');
    const incl = c.u32(at + 8, 'record captured length');
    c.u32(at + 12, 'record original length');
    if (incl > PcapLimits.maxFrame) {
      throw new PcapError('bad-length', `record captured length ${incl} > ${PcapLimits.maxFrame}`, at + 8);
    }
    c.need(at + 16, incl, `record of ${incl} octets`);
    out.add(linkType, sec + frac / fracPerSecond, c.b.subarray(at + 16, at + 16 + incl), at);
    at += 16 + incl;
  }
  return { format: 'pcap', linkTypes: [linkType], datagrams: out.datagrams, skipped: out.skipped };
}

interface NgInterface {
  readonly linkType: number;
  readonly snapLen: number;
  /** Timestamp units per second. */
  readonly unitsPerSecond: bigint;
  readonly offsetSeconds: bigint;
}

/** pcapng (draft-ietf-opsawg-pcapng): a sequence of sections, each SHB + blocks. */
export function readPcapng(buf: Uint8Array): Capture {
  const c = new Cursor(buf, false);
  const out = new Collector();
  const linkTypes: number[] = [];
  let interfaces: NgInterface[] = [];
  let at = 0;
  let sawSection = false;
  while (at < c.b.length) {
    c.need(at, 12, 'block header');
    const typeBE = c.b.readUInt32BE(at);
    if (typeBE === PCAPNG_SHB) {
      // The byte-order magic decides how to read this section, SHB included.
      c.need(at + 8, 4, 'section byte-order magic');
      const bomBE = c.b.readUInt32BE(at + 8);
      if (bomBE === PCAPNG_BOM) c.le = false;
      else if (c.b.readUInt32LE(at + 8) === PCAPNG_BOM) c.le = true;
      else throw new PcapError('bad-value', 'section header: bad byte-order magic', at + 8);
      sawSection = true;
      interfaces = [];
    } else if (!sawSection) {
      throw new PcapError('bad-magic', 'pcapng must start with a section header block', at);
    }
    const type = c.u32(at, 'block type');
    const total = c.u32(at + 4, 'block total length');
    if (total < 12 || total % 4 !== 0) {
      throw new PcapError('bad-length', `block total length ${total} (must be >= 12 and a multiple of 4)`, at + 4);
    }
    c.need(at, total, `block of ${total} octets`);
    if (c.u32(at + total - 4, 'trailing block length') !== total) {
      throw new PcapError('bad-length', 'trailing block length differs from leading one', at + total - 4);
    }
    const body = at + 8;
    const bodyEnd = at + total - 4;
    switch (type) {
      case PCAPNG_SHB: {
        if (bodyEnd - body < 16) throw new PcapError('bad-length', 'section header block too short', at);
        const major = c.u16(body + 4, 'section version major');
        if (major !== 1) throw new PcapError('bad-value', `unsupported pcapng version ${major}`, body + 4);
        break;
      }
      case 1: {
        // Interface Description Block.
        if (bodyEnd - body < 8) throw new PcapError('bad-length', 'interface description block too short', at);
        if (interfaces.length >= PcapLimits.maxInterfaces) {
          throw new PcapError('limit', `more than ${PcapLimits.maxInterfaces} interfaces`, at);
        }
        const linkType = c.u16(body, 'link type');
        const snapLen = c.u32(body + 4, 'snap length');
        const opts = readIdbOptions(c, body + 8, bodyEnd);
        interfaces.push({ linkType, snapLen, ...opts });
        linkTypes.push(linkType);
        break;
      }
      case 6: // Enhanced Packet Block
      case 2: {
        // Obsolete Packet Block: 16-bit interface id + 16-bit drop count.
        if (bodyEnd - body < 20) throw new PcapError('bad-length', 'packet block too short', at);
        const ifId = type === 6 ? c.u32(body, 'interface id') : c.u16(body, 'interface id');
        const iface = interfaces[ifId];
        if (!iface) throw new PcapError('bad-value', `packet block names undeclared interface ${ifId}`, body);
        const tsHigh = c.u32(body + 4, 'timestamp high');
        const tsLow = c.u32(body + 8, 'timestamp low');
        const capLen = c.u32(body + 12, 'captured length');
        if (capLen > PcapLimits.maxFrame) {
          throw new PcapError('bad-length', `captured length ${capLen} > ${PcapLimits.maxFrame}`, body + 12);
        }
        if (capLen > bodyEnd - (body + 20)) {
          throw new PcapError('bad-length', `captured length ${capLen} exceeds its block`, body + 12);
        }
        const time = timestampSeconds(tsHigh, tsLow, iface);
        out.add(iface.linkType, time, c.b.subarray(body + 20, body + 20 + capLen), at);
        break;
      }
      case 3: {
        // Simple Packet Block: interface 0, no timestamp.
        if (bodyEnd - body < 4) throw new PcapError('bad-length', 'simple packet block too short', at);
        const iface = interfaces[0];
        if (!iface) throw new PcapError('bad-value', 'simple packet block before any interface', at);
        const origLen = c.u32(body, 'original length');
        let capLen = Math.min(origLen, bodyEnd - (body + 4));
        if (iface.snapLen > 0) capLen = Math.min(capLen, iface.snapLen);
        out.add(iface.linkType, 0, c.b.subarray(body + 4, body + 4 + capLen), at);
        break;
      }
      default:
        // Name resolution, statistics, custom blocks...: nothing for us.
        break;
    }
    at += total;
  }
  if (!sawSection) throw new PcapError('truncated', 'empty pcapng file', 0);
  return { format: 'pcapng', linkTypes, datagrams: out.datagrams, skipped: out.skipped };
}

function readIdbOptions(c: Cursor, at: number, end: number): { unitsPerSecond: bigint; offsetSeconds: bigint } {
  let unitsPerSecond = 1_000_000n;
  let offsetSeconds = 0n;
  while (at + 4 <= end) {
    const code = c.u16(at, 'option code');
    const len = c.u16(at + 2, 'option length');
    if (code === 0) break;
    const v = at + 4;
    if (v + len > end) throw new PcapError('bad-length', `option ${code} length ${len} exceeds its block`, at + 2);
    if (code === 9 && len >= 1) {
      // if_tsresol: MSB clear -> 10^-n, set -> 2^-n. Cap n so the divisor stays sane.
      const r = c.b[v]!;
      const n = BigInt(Math.min(r & 0x7f, r & 0x80 ? 63 : 18));
      unitsPerSecond = r & 0x80 ? 1n << n : 10n ** n;
    } else if (code === 14 && len >= 8) {
      offsetSeconds = c.le ? c.b.readBigInt64LE(v) : c.b.readBigInt64BE(v);
    }
    at = v + ((len + 3) & ~3);
  }
  return { unitsPerSecond, offsetSeconds };
}

function timestampSeconds(high: number, low: number, iface: NgInterface): number {
  const ts = (BigInt(high) << 32n) | BigInt(low);
  const whole = ts / iface.unitsPerSecond + iface.offsetSeconds;
  const frac = ts % iface.unitsPerSecond;
  return Number(whole) + Number(frac) / Number(iface.unitsPerSecond);
}

type FrameResult = Omit<Datagram, 'frame' | 'time'> | { reason: string };

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = [0x8100, 0x88a8, 0x9100];
const IPPROTO_UDP = 17;

/**
 * Unwraps one captured frame down to a UDP datagram. Never throws: anything
 * that is not UDP over IP, or is cut short, comes back as a reason.
 */
export function parseFrame(linkType: number, frame: Uint8Array): FrameResult {
  const f = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  switch (linkType) {
    case LinkType.ETHERNET: {
      if (f.length < 14) return { reason: 'short Ethernet header' };
      let at = 12;
      let etherType = f.readUInt16BE(at);
      for (let tags = 0; ETHERTYPE_VLAN.includes(etherType); tags++) {
        if (tags >= PcapLimits.maxVlanTags) return { reason: 'too many VLAN tags' };
        at += 4;
        if (f.length < at + 2) return { reason: 'short VLAN tag' };
        etherType = f.readUInt16BE(at);
      }
      return parseByEtherType(etherType, f.subarray(at + 2));
    }
    case LinkType.RAW:
    case LinkType.RAW_ALT:
    case LinkType.IPV4:
    case LinkType.IPV6:
      return parseIp(f);
    case LinkType.NULL:
    case LinkType.LOOP: {
      if (f.length < 4) return { reason: 'short loopback header' };
      // NULL uses the capturing host's byte order; LOOP is always big-endian.
      const family = linkType === LinkType.LOOP ? f.readUInt32BE(0) : nullFamily(f);
      if (family === 2) return parseIpv4(f.subarray(4));
      if (family === 24 || family === 28 || family === 30 || family === 10) return parseIpv6(f.subarray(4));
      return { reason: `loopback address family ${family}` };
    }
    case LinkType.LINUX_SLL:
      if (f.length < 16) return { reason: 'short SLL header' };
      return parseByEtherType(f.readUInt16BE(14), f.subarray(16));
    case LinkType.LINUX_SLL2:
      if (f.length < 20) return { reason: 'short SLL2 header' };
      return parseByEtherType(f.readUInt16BE(0), f.subarray(20));
    default:
      return { reason: `unsupported link type ${linkType}` };
  }
}

function nullFamily(f: Buffer): number {
  const le = f.readUInt32LE(0);
  // Families are small numbers; whichever order gives one is the right one.
  return le < 0x10000 ? le : f.readUInt32BE(0);
}

function parseByEtherType(etherType: number, p: Buffer): FrameResult {
  if (etherType === ETHERTYPE_IPV4) return parseIpv4(p);
  if (etherType === ETHERTYPE_IPV6) return parseIpv6(p);
  return { reason: `ethertype 0x${etherType.toString(16).padStart(4, '0')}` };
}

function parseIp(p: Buffer): FrameResult {
  if (p.length < 1) return { reason: 'empty IP packet' };
  const version = p[0]! >> 4;
  if (version === 4) return parseIpv4(p);
  if (version === 6) return parseIpv6(p);
  return { reason: `IP version ${version}` };
}

function parseIpv4(p: Buffer): FrameResult {
  if (p.length < 20) return { reason: 'short IPv4 header' };
  if (p[0]! >> 4 !== 4) return { reason: 'IPv4 ethertype without IPv4 header' };
  const ihl = (p[0]! & 0x0f) * 4;
  if (ihl < 20) return { reason: `IPv4 header length ${ihl}` };
  const total = p.readUInt16BE(2);
  if (total < ihl) return { reason: `IPv4 total length ${total} < header ${ihl}` };
  if (total > p.length) return { reason: 'IPv4 packet truncated by snap length' };
  const fragment = p.readUInt16BE(6);
  if ((fragment & 0x3fff) !== 0) return { reason: 'IPv4 fragment (not reassembled)' };
  if (p[9] !== IPPROTO_UDP) return { reason: `IP protocol ${p[9]}` };
  const src = bytesToAddress(p.subarray(12, 16));
  const dst = bytesToAddress(p.subarray(16, 20));
  return parseUdp(p.subarray(ihl, total), src, dst);
}

function parseIpv6(p: Buffer): FrameResult {
  if (p.length < 40) return { reason: 'short IPv6 header' };
  if (p[0]! >> 4 !== 6) return { reason: 'IPv6 ethertype without IPv6 header' };
  const payloadLength = p.readUInt16BE(4);
  // A zero payload length means a jumbogram; not for IKE.
  if (payloadLength === 0) return { reason: 'IPv6 jumbogram' };
  if (40 + payloadLength > p.length) return { reason: 'IPv6 packet truncated by snap length' };
  const src = bytesToAddress(p.subarray(8, 24));
  const dst = bytesToAddress(p.subarray(24, 40));
  let next = p[6]!;
  let at = 40;
  const end = 40 + payloadLength;
  for (let n = 0; next !== IPPROTO_UDP; n++) {
    if (n >= PcapLimits.maxIpv6ExtHeaders) return { reason: 'too many IPv6 extension headers' };
    if (next === 44) return { reason: 'IPv6 fragment (not reassembled)' };
    // Hop-by-hop, routing, destination options: (len + 1) * 8 octets.
    if (next !== 0 && next !== 43 && next !== 60) return { reason: `IPv6 next header ${next}` };
    if (at + 2 > end) return { reason: 'short IPv6 extension header' };
    const nextNext = p[at]!;
    const len = (p[at + 1]! + 1) * 8;
    if (at + len > end) return { reason: 'short IPv6 extension header' };
    next = nextNext;
    at += len;
  }
  return parseUdp(p.subarray(at, end), src, dst);
}

function parseUdp(u: Buffer, src: string, dst: string): FrameResult {
  if (u.length < 8) return { reason: 'short UDP header' };
  const len = u.readUInt16BE(4);
  if (len < 8) return { reason: `UDP length ${len}` };
  if (len > u.length) return { reason: 'UDP datagram truncated' };
  return {
    src,
    srcPort: u.readUInt16BE(0),
    dst,
    dstPort: u.readUInt16BE(2),
    payload: Buffer.from(u.subarray(8, len)),
  };
}

// ---------------------------------------------------------------- writing

export interface UdpPacket {
  readonly src: string;
  readonly dst: string;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly payload: Uint8Array;
  /** Seconds since the epoch; defaults to 0 + the packet's index in ms. */
  readonly time?: number;
}

export interface WritePcapOptions {
  /** 'ethernet' (link type 1, the default) or 'raw' (link type 101). */
  readonly link?: 'ethernet' | 'raw';
  /** Write the nanosecond-resolution magic. */
  readonly nanosecond?: boolean;
  /** Write little-endian (the default, as on every common host) or big-endian. */
  readonly bigEndian?: boolean;
}

const SRC_MAC = Buffer.from('020000000001', 'hex');
const DST_MAC = Buffer.from('020000000002', 'hex');

/** A classic pcap file holding `packets` as UDP over IPv4/IPv6. */
export function writePcap(packets: readonly UdpPacket[], opts: WritePcapOptions = {}): Buffer {
  const ethernet = (opts.link ?? 'ethernet') === 'ethernet';
  const le = !opts.bigEndian;
  const fracPerSecond = opts.nanosecond ? 1e9 : 1e6;
  const parts: Buffer[] = [];
  const head = Buffer.alloc(24);
  const w32 = (b: Buffer, v: number, at: number): void => {
    if (le) b.writeUInt32LE(v, at);
    else b.writeUInt32BE(v, at);
  };
  const w16 = (b: Buffer, v: number, at: number): void => {
    if (le) b.writeUInt16LE(v, at);
    else b.writeUInt16BE(v, at);
  };
  w32(head, opts.nanosecond ? PCAP_MAGIC_NS : PCAP_MAGIC_US, 0);
  w16(head, 2, 4);
  w16(head, 4, 6);
  w32(head, 0, 8);
  w32(head, 0, 12);
  w32(head, 65535, 16);
  w32(head, ethernet ? LinkType.ETHERNET : LinkType.RAW, 20);
  parts.push(head);
  packets.forEach((p, i) => {
    const ip = buildUdpPacket(p, i);
    const frame = ethernet
      ? Buffer.concat([DST_MAC, SRC_MAC, u16be(ip[0]! >> 4 === 6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4), ip])
      : ip;
    const time = p.time ?? i / 1000;
    if (!Number.isFinite(time) || time < 0 || time >= 2 ** 32) {
      throw new PcapError('bad-value', `packet ${i + 1}: time ${time} not representable`, 0);
    }
    let sec = Math.floor(time);
    let frac = Math.round((time - sec) * fracPerSecond);
    if (frac >= fracPerSecond) {
      sec += 1;
      frac -= fracPerSecond;
    }
    const rec = Buffer.alloc(16);
    w32(rec, sec, 0);
    w32(rec, frac, 4);
    w32(rec, frame.length, 8);
    w32(rec, frame.length, 12);
    parts.push(rec, frame);
  });
  return Buffer.concat(parts);
}

function u16be(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
}

let ipId = 0x1000;

/** An IPv4 (header checksum set) or IPv6 packet carrying one UDP datagram with its checksum. */
export function buildUdpPacket(p: UdpPacket, index = 0): Buffer {
  const v6 = isIPv6(p.src);
  if (v6 !== isIPv6(p.dst) || (!v6 && (!isIPv4(p.src) || !isIPv4(p.dst)))) {
    throw new PcapError('bad-value', `packet ${index + 1}: addresses ${p.src} -> ${p.dst} are not both IPv4 or IPv6`, 0);
  }
  for (const port of [p.srcPort, p.dstPort]) {
    if (!Number.isInteger(port) || port < 0 || port > 0xffff) {
      throw new PcapError('bad-value', `packet ${index + 1}: port ${port} out of range`, 0);
    }
  }
  const src = addressToBytes(p.src, v6);
  const dst = addressToBytes(p.dst, v6);
  const udpLen = 8 + p.payload.length;
  const ipHeader = v6 ? 40 : 20;
  if (udpLen + (v6 ? 0 : ipHeader) > 0xffff) {
    throw new PcapError('bad-value', `packet ${index + 1}: payload of ${p.payload.length} octets too large`, 0);
  }
  const pkt = Buffer.alloc(ipHeader + udpLen);
  if (v6) {
    pkt.writeUInt32BE(0x60000000, 0);
    pkt.writeUInt16BE(udpLen, 4);
    pkt[6] = IPPROTO_UDP;
    pkt[7] = 64;
    src.copy(pkt, 8);
    dst.copy(pkt, 24);
  } else {
    pkt[0] = 0x45;
    pkt.writeUInt16BE(ipHeader + udpLen, 2);
    pkt.writeUInt16BE(ipId, 4);
    ipId = (ipId + 1) & 0xffff;
    pkt[8] = 64;
    pkt[9] = IPPROTO_UDP;
    src.copy(pkt, 12);
    dst.copy(pkt, 16);
    pkt.writeUInt16BE(internetChecksum(pkt.subarray(0, 20)), 10);
  }
  const u = ipHeader;
  pkt.writeUInt16BE(p.srcPort, u);
  pkt.writeUInt16BE(p.dstPort, u + 2);
  pkt.writeUInt16BE(udpLen, u + 4);
  pkt.set(p.payload, u + 8);
  // Pseudo-header: addresses, protocol, UDP length.
  const pseudo = Buffer.alloc(src.length * 2 + 4);
  src.copy(pseudo, 0);
  dst.copy(pseudo, src.length);
  pseudo.writeUInt16BE(IPPROTO_UDP, src.length * 2);
  pseudo.writeUInt16BE(udpLen, src.length * 2 + 2);
  let sum = internetChecksum(Buffer.concat([pseudo, pkt.subarray(u)]));
  if (sum === 0) sum = 0xffff;
  pkt.writeUInt16BE(sum, u + 6);
  return pkt;
}

/** RFC 1071 ones'-complement checksum. */
export function internetChecksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
  if (b.length % 2) sum += b[b.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export interface WritePcapngOptions {
  /** 'ethernet' (link type 1, the default) or 'raw' (link type 101). */
  readonly link?: 'ethernet' | 'raw';
  /** Write the section big-endian (the default is little-endian). */
  readonly bigEndian?: boolean;
}

/**
 * A pcapng file (one section, one interface with nanosecond timestamps,
 * one Enhanced Packet Block per packet) holding `packets` as UDP over IP.
 */
export function writePcapng(packets: readonly UdpPacket[], opts: WritePcapngOptions = {}): Buffer {
  const le = !opts.bigEndian;
  const ethernet = (opts.link ?? 'ethernet') === 'ethernet';
  const u32 = (v: number): Buffer => {
    const b = Buffer.alloc(4);
    if (le) b.writeUInt32LE(v);
    else b.writeUInt32BE(v);
    return b;
  };
  const u16 = (v: number): Buffer => {
    const b = Buffer.alloc(2);
    if (le) b.writeUInt16LE(v);
    else b.writeUInt16BE(v);
    return b;
  };
  const block = (type: number, body: Buffer): Buffer => {
    const pad = Buffer.alloc((4 - (body.length % 4)) % 4);
    const total = 12 + body.length + pad.length;
    return Buffer.concat([u32(type), u32(total), body, pad, u32(total)]);
  };
  const parts = [
    block(PCAPNG_SHB, Buffer.concat([u32(PCAPNG_BOM), u16(1), u16(0), Buffer.alloc(8, 0xff)])),
    // if_tsresol = 9 (nanoseconds), then opt_endofopt.
    block(
      1,
      Buffer.concat([
        u16(ethernet ? LinkType.ETHERNET : LinkType.RAW),
        u16(0),
        u32(0),
        u16(9),
        u16(1),
        Buffer.from([9, 0, 0, 0]),
        u16(0),
        u16(0),
      ]),
    ),
  ];
  packets.forEach((p, i) => {
    const ip = buildUdpPacket(p, i);
    const frame = ethernet
      ? Buffer.concat([DST_MAC, SRC_MAC, u16be(ip[0]! >> 4 === 6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4), ip])
      : ip;
    const time = p.time ?? i / 1000;
    if (!Number.isFinite(time) || time < 0) throw new PcapError('bad-value', `packet ${i + 1}: time ${time}`, 0);
    const sec = BigInt(Math.floor(time));
    const ns = sec * 1_000_000_000n + BigInt(Math.round((time - Math.floor(time)) * 1e9));
    parts.push(
      block(
        6,
        Buffer.concat([
          u32(0),
          u32(Number(ns >> 32n)),
          u32(Number(ns & 0xffffffffn)),
          u32(frame.length),
          u32(frame.length),
          frame,
        ]),
      ),
    );
  });
  return Buffer.concat(parts);
}
