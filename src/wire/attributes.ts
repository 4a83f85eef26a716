import { Limits } from './errors.ts';
import type { Reader } from './reader.ts';
import { EncodeError, type Writer } from './writer.ts';

/**
 * Data attributes (RFC 7296 Section 3.3.5), used by transforms, GSA policies,
 * group-wide policy and key bags. The AF bit selects the format: TV carries a
 * 16-bit value in place of the length; TLV carries a length and a value.
 */
export type Attribute =
  | { readonly type: number; readonly format: 'TV'; readonly value: number }
  | { readonly type: number; readonly format: 'TLV'; readonly value: Buffer };

const AF = 0x8000;

export function tv(type: number, value: number): Attribute {
  return { type, format: 'TV', value };
}
export function tlv(type: number, value: Buffer): Attribute {
  return { type, format: 'TLV', value };
}

export function encodeAttribute(w: Writer, a: Attribute): void {
  if (a.type < 0 || a.type > 0x7fff) throw new EncodeError(`attribute type out of range: ${a.type}`);
  if (a.format === 'TV') {
    w.u16(AF | a.type).u16(a.value);
  } else {
    if (a.value.length > 0xffff) throw new EncodeError(`attribute ${a.type} value too long: ${a.value.length}`);
    w.u16(a.type).u16(a.value.length).bytes(a.value);
  }
}

export function decodeAttribute(r: Reader): Attribute {
  const head = r.u16('attribute type');
  const type = head & 0x7fff;
  if (head & AF) return { type, format: 'TV', value: r.u16(`attr ${type} value`) };
  const len = r.u16(`attr ${type} length`);
  return { type, format: 'TLV', value: r.bytes(len, `attr ${type} value`) };
}

/** Decodes attributes until the reader is exhausted; each failure names `attr N`. */
export function decodeAttributes(r: Reader): Attribute[] {
  const out: Attribute[] = [];
  while (!r.atEnd) {
    if (out.length >= Limits.maxAttributes) r.fail('limit', `more than ${Limits.maxAttributes} attributes`);
    // Peek the type so an error inside the attribute names it.
    const peekType = r.remaining >= 2 ? ((r.buf[r.offset]! << 8) | r.buf[r.offset + 1]!) & 0x7fff : -1;
    const child = r.child(peekType >= 0 ? `attr ${peekType}` : `attr[${out.length + 1}]`);
    const a = decodeAttribute(child);
    r.skip(child.consumed);
    out.push(a);
  }
  return out;
}

export function encodeAttributes(w: Writer, attrs: readonly Attribute[]): void {
  for (const a of attrs) encodeAttribute(w, a);
}

/** The first attribute of `type`, if any. */
export function findAttribute(attrs: readonly Attribute[], type: number): Attribute | undefined {
  return attrs.find((a) => a.type === type);
}
