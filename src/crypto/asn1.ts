/**
 * A minimal DER reader and writer: enough ASN.1 for AlgorithmIdentifiers,
 * SubjectPublicKeyInfo and X.509 certificates, and nothing more.
 *
 * The reader is a bounded cursor like the wire Reader: every element it
 * returns lies inside the range its container declared, so a hostile length
 * can neither read past the enclosing structure nor drive an allocation
 * (element contents are views, never copies). Only DER is accepted: definite,
 * minimal lengths; indefinite lengths and high tag numbers are refused.
 */

export type Asn1ErrorKind =
  /** Fewer octets than a header or a declared length needs. */
  | 'truncated'
  /** A length that is indefinite, not minimal, or too large. */
  | 'bad-length'
  /** A different tag from the one the structure requires. */
  | 'unexpected-tag'
  /** A value DER forbids (non-minimal INTEGER, BOOLEAN not 00/FF, bad time...). */
  | 'bad-value'
  /** Octets left over after a structure that must fill its container. */
  | 'trailing-data'
  /** Nesting or size above the reader's safety caps. */
  | 'limit';

export class Asn1Error extends Error {
  override readonly name = 'Asn1Error';
  constructor(
    readonly kind: Asn1ErrorKind,
    /** What was being read, e.g. `tbsCertificate > validity > notBefore`. */
    readonly what: string,
    readonly detail: string,
    /** Offset, in octets, from the start of the outermost buffer. */
    readonly offset: number,
  ) {
    super(`ASN.1 ${what || '<value>'}: ${detail} (at octet ${offset})`);
  }
}

/** Universal tags (first identifier octet, with the constructed bit where DER requires it). */
export const Tag = Object.freeze({
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  T61_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  VISIBLE_STRING: 0x1a,
  UNIVERSAL_STRING: 0x1c,
  BMP_STRING: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
});

/** Identifier octet of a context-specific tag [n] (n < 31). */
export function contextTag(n: number, constructed: boolean): number {
  if (!Number.isInteger(n) || n < 0 || n > 30) throw new RangeError(`context tag [${n}] out of range`);
  return 0x80 | (constructed ? 0x20 : 0) | n;
}

/** One decoded TLV. `bytes` and `content` are views into the source buffer. */
export interface Asn1Element {
  /** The identifier octet (class, constructed bit and tag number < 31). */
  readonly tag: number;
  readonly constructed: boolean;
  /** Absolute offset of the identifier octet. */
  readonly offset: number;
  /** Absolute offset of the first content octet. */
  readonly contentOffset: number;
  /** The whole TLV (identifier, length, content): the element's DER encoding. */
  readonly bytes: Uint8Array;
  readonly content: Uint8Array;
}

/** Lengths above this are refused outright: nothing we parse is larger. */
const MAX_ELEMENT_LENGTH = 1 << 24;

/**
 * A cursor over a run of consecutive DER elements inside [start, end).
 * `what` names the structure for error messages.
 */
export class DerReader {
  private pos: number;

  constructor(
    readonly buf: Uint8Array,
    readonly what = '',
    start = 0,
    readonly end = buf.length,
  ) {
    if (start < 0 || end > buf.length || start > end) {
      throw new Asn1Error('bad-length', what, 'reader range outside its buffer', start);
    }
    this.pos = start;
  }

  get offset(): number {
    return this.pos;
  }
  get atEnd(): boolean {
    return this.pos >= this.end;
  }

  fail(kind: Asn1ErrorKind, detail: string, at = this.pos): never {
    throw new Asn1Error(kind, this.what, detail, at);
  }

  /** The identifier octet of the next element, or undefined at the end. */
  peekTag(): number | undefined {
    return this.atEnd ? undefined : this.buf[this.pos];
  }

  /** Reads the next element, whatever its tag. */
  next(what = 'element'): Asn1Element {
    const start = this.pos;
    if (start >= this.end) this.fail('truncated', `${what}: no element left`);
    const tag = this.buf[start]!;
    if ((tag & 0x1f) === 0x1f) this.fail('bad-value', `${what}: high tag numbers are not supported`);
    let p = start + 1;
    if (p >= this.end) this.fail('truncated', `${what}: missing length octet`);
    const first = this.buf[p++]!;
    let length: number;
    if (first < 0x80) {
      length = first;
    } else if (first === 0x80) {
      this.fail('bad-length', `${what}: indefinite length is not DER`);
    } else {
      const n = first & 0x7f;
      if (n > 4) this.fail('bad-length', `${what}: length of ${n} octets is too large`);
      if (p + n > this.end) this.fail('truncated', `${what}: length needs ${n} octet(s)`);
      length = 0;
      for (let i = 0; i < n; i++) length = length * 256 + this.buf[p + i]!;
      if (this.buf[p] === 0 || length < 0x80) this.fail('bad-length', `${what}: length not minimally encoded`);
      p += n;
    }
    if (length > MAX_ELEMENT_LENGTH) this.fail('limit', `${what}: length ${length} above cap`);
    if (length > this.end - p) {
      this.fail('truncated', `${what}: declares ${length} octet(s), ${this.end - p} left in container`);
    }
    const contentEnd = p + length;
    this.pos = contentEnd;
    return {
      tag,
      constructed: (tag & 0x20) !== 0,
      offset: start,
      contentOffset: p,
      bytes: this.buf.subarray(start, contentEnd),
      content: this.buf.subarray(p, contentEnd),
    };
  }

  /** Reads the next element and requires `tag`. */
  expect(tag: number, what: string): Asn1Element {
    const t = this.peekTag();
    if (t !== tag) {
      this.fail(
        t === undefined ? 'truncated' : 'unexpected-tag',
        `${what}: expected tag 0x${hex2(tag)}, found ${t === undefined ? 'end of data' : `0x${hex2(t)}`}`,
      );
    }
    return this.next(what);
  }

  /** Reads the next element only if it has `tag`. */
  optional(tag: number, what: string): Asn1Element | undefined {
    return this.peekTag() === tag ? this.next(what) : undefined;
  }

  /** Reads a SEQUENCE and returns a reader over its contents. */
  sequence(what: string): DerReader {
    return DerReader.inside(this.buf, this.expect(Tag.SEQUENCE, what), this.qualify(what));
  }

  /** Reads a SET and returns a reader over its contents. */
  set(what: string): DerReader {
    return DerReader.inside(this.buf, this.expect(Tag.SET, what), this.qualify(what));
  }

  /** Requires that nothing is left. */
  finish(what = 'structure'): void {
    if (!this.atEnd) this.fail('trailing-data', `${what}: ${this.end - this.pos} unexpected trailing octet(s)`);
  }

  private qualify(what: string): string {
    return this.what ? `${this.what} > ${what}` : what;
  }

  /** A reader over the contents of a constructed element previously read from `buf`. */
  static inside(buf: Uint8Array, el: Asn1Element, what: string): DerReader {
    if (!el.constructed) throw new Asn1Error('bad-value', what, 'primitive element where a constructed one is required', el.offset);
    return new DerReader(buf, what, el.contentOffset, el.contentOffset + el.content.length);
  }
}

/** Parses exactly one element filling `der` (no trailing octets). */
export function parseDer(der: Uint8Array, what = 'value'): Asn1Element {
  const r = new DerReader(der, what);
  const el = r.next(what);
  r.finish(what);
  return el;
}

/** A reader over the children of a constructed element (`el` must come from `buf`). */
export function childrenOf(buf: Uint8Array, el: Asn1Element, what: string): DerReader {
  return DerReader.inside(buf, el, what);
}

/** Octets as Latin-1 text, without spreading a possibly large array into arguments. */
function latin1(c: Uint8Array): string {
  return Buffer.from(c.buffer, c.byteOffset, c.byteLength).toString('latin1');
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

function bad(el: Asn1Element, what: string, detail: string): never {
  throw new Asn1Error('bad-value', what, detail, el.offset);
}

// ---------------------------------------------------------------- value decoders

export function decodeBoolean(el: Asn1Element, what = 'BOOLEAN'): boolean {
  if (el.tag !== Tag.BOOLEAN) bad(el, what, 'not a BOOLEAN');
  if (el.content.length !== 1) bad(el, what, 'BOOLEAN must be one octet');
  const v = el.content[0]!;
  if (v !== 0x00 && v !== 0xff) bad(el, what, 'DER BOOLEAN must be 00 or FF');
  return v === 0xff;
}

export function decodeNull(el: Asn1Element, what = 'NULL'): null {
  if (el.tag !== Tag.NULL || el.content.length !== 0) bad(el, what, 'not a DER NULL');
  return null;
}

/** Checks DER minimality of an INTEGER's content octets (also used for implicit tags). */
function checkIntegerContent(el: Asn1Element, what: string): Uint8Array {
  const c = el.content;
  if (c.length === 0) bad(el, what, 'empty INTEGER');
  if (c.length > 1 && ((c[0] === 0x00 && (c[1]! & 0x80) === 0) || (c[0] === 0xff && (c[1]! & 0x80) !== 0))) {
    bad(el, what, 'INTEGER not minimally encoded');
  }
  return c;
}

export function decodeInteger(el: Asn1Element, what = 'INTEGER'): bigint {
  if (el.tag !== Tag.INTEGER) bad(el, what, 'not an INTEGER');
  const c = checkIntegerContent(el, what);
  let v = 0n;
  for (const b of c) v = (v << 8n) | BigInt(b);
  if ((c[0]! & 0x80) !== 0) v -= 1n << BigInt(c.length * 8);
  return v;
}

/** A small non-negative INTEGER as a number (counts, versions, path lengths). */
export function decodeSmallInteger(el: Asn1Element, what = 'INTEGER', max = 0xffff): number {
  const v = decodeInteger(el, what);
  if (v < 0n || v > BigInt(max)) bad(el, what, `INTEGER ${v} outside 0..${max}`);
  return Number(v);
}

export interface BitString {
  readonly unusedBits: number;
  readonly bytes: Uint8Array;
}

export function decodeBitString(el: Asn1Element, what = 'BIT STRING'): BitString {
  if (el.tag !== Tag.BIT_STRING) bad(el, what, 'not a BIT STRING');
  const c = el.content;
  if (c.length === 0) bad(el, what, 'BIT STRING without unused-bits octet');
  const unusedBits = c[0]!;
  if (unusedBits > 7) bad(el, what, 'unused bits above 7');
  if (c.length === 1 && unusedBits !== 0) bad(el, what, 'empty BIT STRING with unused bits');
  if (unusedBits !== 0 && (c[c.length - 1]! & ((1 << unusedBits) - 1)) !== 0) bad(el, what, 'unused bits not zero');
  return { unusedBits, bytes: c.subarray(1) };
}

/** Bit `i` (0 = most significant bit of the first octet), as used by named-bit lists. */
export function bitIsSet(bits: BitString, i: number): boolean {
  const byte = i >> 3;
  if (byte >= bits.bytes.length) return false;
  if (byte === bits.bytes.length - 1 && 7 - (i & 7) < bits.unusedBits) return false;
  return (bits.bytes[byte]! & (0x80 >> (i & 7))) !== 0;
}

export function decodeOctetString(el: Asn1Element, what = 'OCTET STRING'): Uint8Array {
  if (el.tag !== Tag.OCTET_STRING) bad(el, what, 'not an OCTET STRING');
  return el.content;
}

/** Dotted-decimal OBJECT IDENTIFIER. */
export function decodeOid(el: Asn1Element, what = 'OBJECT IDENTIFIER'): string {
  if (el.tag !== Tag.OID) bad(el, what, 'not an OBJECT IDENTIFIER');
  const c = el.content;
  if (c.length === 0) bad(el, what, 'empty OBJECT IDENTIFIER');
  if (c.length > 64) bad(el, what, 'OBJECT IDENTIFIER too long');
  if ((c[c.length - 1]! & 0x80) !== 0) bad(el, what, 'OBJECT IDENTIFIER ends inside an arc');
  const arcs: bigint[] = [];
  let v = 0n;
  let arcStart = true;
  for (const b of c) {
    if (arcStart && b === 0x80) bad(el, what, 'OBJECT IDENTIFIER arc not minimally encoded');
    v = (v << 7n) | BigInt(b & 0x7f);
    arcStart = (b & 0x80) === 0;
    if (arcStart) {
      arcs.push(v);
      v = 0n;
    }
  }
  const first = arcs[0]!;
  const head = first < 40n ? [0n, first] : first < 80n ? [1n, first - 40n] : [2n, first - 80n];
  return [...head, ...arcs.slice(1)].join('.');
}

const STRING_TAGS = new Set<number>([
  Tag.UTF8_STRING,
  Tag.PRINTABLE_STRING,
  Tag.T61_STRING,
  Tag.IA5_STRING,
  Tag.VISIBLE_STRING,
  Tag.BMP_STRING,
  Tag.UNIVERSAL_STRING,
]);

/** A character string of any of the X.520 / RFC 5280 string types. */
export function decodeString(el: Asn1Element, what = 'string'): string {
  if (!STRING_TAGS.has(el.tag)) bad(el, what, `tag 0x${hex2(el.tag)} is not a string type`);
  const c = el.content;
  switch (el.tag) {
    case Tag.UTF8_STRING: {
      try {
        return new TextDecoder('utf-8', { fatal: true }).decode(c);
      } catch {
        return bad(el, what, 'invalid UTF-8');
      }
    }
    case Tag.BMP_STRING: {
      if (c.length % 2 !== 0) bad(el, what, 'BMPString of odd length');
      let s = '';
      for (let i = 0; i < c.length; i += 2) s += String.fromCharCode((c[i]! << 8) | c[i + 1]!);
      return s;
    }
    case Tag.UNIVERSAL_STRING: {
      if (c.length % 4 !== 0) bad(el, what, 'UniversalString length not a multiple of 4');
      let s = '';
      for (let i = 0; i < c.length; i += 4) {
        const cp = ((c[i]! << 24) >>> 0) + ((c[i + 1]! << 16) | (c[i + 2]! << 8) | c[i + 3]!);
        if (cp > 0x10ffff) bad(el, what, 'UniversalString code point out of range');
        s += String.fromCodePoint(cp);
      }
      return s;
    }
    case Tag.IA5_STRING:
    case Tag.PRINTABLE_STRING:
    case Tag.VISIBLE_STRING:
      for (const b of c) if (b > 0x7f) bad(el, what, 'non-ASCII octet in an ASCII string type');
      return latin1(c);
    default:
      // T61String: treat as Latin-1, which is what it carries in practice.
      return latin1(c);
  }
}

/** UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ), as RFC 5280 restricts them. */
export function decodeTime(el: Asn1Element, what = 'Time'): Date {
  if (el.content.length > 24) bad(el, what, 'time value too long');
  const s = latin1(el.content);
  let m: RegExpExecArray | null;
  let year: number;
  if (el.tag === Tag.UTC_TIME) {
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (!m) bad(el, what, 'UTCTime must be YYMMDDHHMMSSZ');
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else if (el.tag === Tag.GENERALIZED_TIME) {
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (!m) bad(el, what, 'GeneralizedTime must be YYYYMMDDHHMMSSZ');
    year = Number(m[1]);
  } else {
    return bad(el, what, 'not a UTCTime or GeneralizedTime');
  }
  const [mo, d, h, mi, se] = [m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number];
  const t = Date.UTC(year, mo - 1, d, h, mi, se);
  const back = new Date(t);
  if (
    back.getUTCFullYear() !== year ||
    back.getUTCMonth() !== mo - 1 ||
    back.getUTCDate() !== d ||
    back.getUTCHours() !== h ||
    back.getUTCMinutes() !== mi ||
    back.getUTCSeconds() !== se
  ) {
    bad(el, what, 'calendar value out of range');
  }
  return back;
}

// ---------------------------------------------------------------- writer

function encodeLength(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`bad DER length ${n}`);
  if (n < 0x80) return Buffer.from([n]);
  const octets: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) octets.unshift(v & 0xff);
  return Buffer.from([0x80 | octets.length, ...octets]);
}

/** One TLV. */
export function derTlv(tag: number, content: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(content.length), content]);
}

export function derSequence(...children: Uint8Array[]): Buffer {
  return derTlv(Tag.SEQUENCE, Buffer.concat(children));
}

/** SET OF: DER orders the element encodings (X.690 11.6). */
export function derSetOf(...children: Uint8Array[]): Buffer {
  const sorted = [...children].map((c) => Buffer.from(c)).sort(Buffer.compare);
  return derTlv(Tag.SET, Buffer.concat(sorted));
}

export function derBoolean(v: boolean): Buffer {
  return derTlv(Tag.BOOLEAN, Buffer.from([v ? 0xff : 0x00]));
}

export function derNull(): Buffer {
  return Buffer.from([Tag.NULL, 0x00]);
}

/** Minimal two's-complement content octets of `v`. */
function integerContent(v: bigint): Buffer {
  if (v === 0n) return Buffer.from([0]);
  const octets: number[] = [];
  let x = v;
  for (;;) {
    octets.unshift(Number(x & 0xffn));
    x >>= 8n; // arithmetic shift keeps the sign
    const top = octets[0]!;
    if ((x === 0n && (top & 0x80) === 0) || (x === -1n && (top & 0x80) !== 0)) break;
  }
  return Buffer.from(octets);
}

export function derInteger(v: bigint | number): Buffer {
  return derTlv(Tag.INTEGER, integerContent(BigInt(v)));
}

/** An INTEGER whose value is the unsigned big-endian `magnitude` (serial numbers, key parts). */
export function derUnsignedInteger(magnitude: Uint8Array): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  const content = m.length === 0 ? Buffer.from([0]) : (m[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), m]) : Buffer.from(m);
  return derTlv(Tag.INTEGER, content);
}

export function derOctetString(v: Uint8Array): Buffer {
  return derTlv(Tag.OCTET_STRING, v);
}

export function derBitString(v: Uint8Array, unusedBits = 0): Buffer {
  if (unusedBits < 0 || unusedBits > 7 || (v.length === 0 && unusedBits !== 0)) throw new RangeError('bad unused bit count');
  return derTlv(Tag.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), v]));
}

/**
 * A named-bit list (KeyUsage and the like) as DER requires: trailing zero
 * bits removed and the unused-bit count set accordingly (X.690 11.2.2).
 */
export function derNamedBits(bits: readonly number[]): Buffer {
  if (bits.length === 0) return derBitString(Buffer.alloc(0));
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc((highest >> 3) + 1);
  for (const b of bits) bytes[b >> 3]! |= 0x80 >> (b & 7);
  return derBitString(bytes, 7 - (highest & 7));
}

export function derOid(dotted: string): Buffer {
  if (!/^[0-2](\.\d+)+$/.test(dotted)) throw new RangeError(`bad OBJECT IDENTIFIER ${dotted}`);
  const arcs = dotted.split('.').map((a) => BigInt(a));
  const [a0, a1] = arcs as [bigint, bigint];
  if (a0 < 2n && a1 > 39n) throw new RangeError(`bad OBJECT IDENTIFIER ${dotted}`);
  const out: number[] = [];
  for (const arc of [a0 * 40n + a1, ...arcs.slice(2)]) {
    const groups: number[] = [Number(arc & 0x7fn)];
    for (let v = arc >> 7n; v > 0n; v >>= 7n) groups.unshift(Number(v & 0x7fn) | 0x80);
    out.push(...groups);
  }
  return derTlv(Tag.OID, Buffer.from(out));
}

export function derUtf8String(s: string): Buffer {
  return derTlv(Tag.UTF8_STRING, Buffer.from(s, 'utf8'));
}

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

export function derPrintableString(s: string): Buffer {
  if (!PRINTABLE.test(s)) throw new RangeError('not a PrintableString');
  return derTlv(Tag.PRINTABLE_STRING, Buffer.from(s, 'ascii'));
}

export function derIa5String(s: string): Buffer {
  // eslint-disable-next-line no-control-regex
  if (!/^[\x00-\x7f]*$/.test(s)) throw new RangeError('not an IA5String');
  return derTlv(Tag.IA5_STRING, Buffer.from(s, 'ascii'));
}

function pad(n: number, w: number): string {
  return String(n).padStart(w, '0');
}

function timeDigits(d: Date): string {
  return `${pad(d.getUTCMonth() + 1, 2)}${pad(d.getUTCDate(), 2)}${pad(d.getUTCHours(), 2)}${pad(d.getUTCMinutes(), 2)}${pad(d.getUTCSeconds(), 2)}Z`;
}

export function derUtcTime(d: Date): Buffer {
  const y = d.getUTCFullYear();
  if (y < 1950 || y > 2049) throw new RangeError('UTCTime covers 1950..2049 only');
  return derTlv(Tag.UTC_TIME, Buffer.from(`${pad(y % 100, 2)}${timeDigits(d)}`, 'ascii'));
}

export function derGeneralizedTime(d: Date): Buffer {
  const y = d.getUTCFullYear();
  if (y < 0 || y > 9999) throw new RangeError('year out of range');
  return derTlv(Tag.GENERALIZED_TIME, Buffer.from(`${pad(y, 4)}${timeDigits(d)}`, 'ascii'));
}

/** RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
export function derTime(d: Date): Buffer {
  if (Number.isNaN(d.getTime())) throw new RangeError('invalid date');
  const y = d.getUTCFullYear();
  return y >= 1950 && y <= 2049 ? derUtcTime(d) : derGeneralizedTime(d);
}

/** [n] EXPLICIT: a constructed context tag around one complete encoding. */
export function derExplicit(n: number, inner: Uint8Array): Buffer {
  return derTlv(contextTag(n, true), inner);
}

/** [n] IMPLICIT: the context tag replaces the inner tag; `constructed` must match the inner type. */
export function derImplicit(n: number, content: Uint8Array, constructed = false): Buffer {
  return derTlv(contextTag(n, constructed), content);
}
