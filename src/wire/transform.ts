import { decodeAttributes, encodeAttributes, type Attribute } from './attributes.ts';
import { nameOf, TransformType } from './iana.ts';
import type { Reader } from './reader.ts';
import type { Writer } from './writer.ts';

/**
 * Transform substructure (RFC 7296 Section 3.3.2), shared by SA/SAg proposals
 * and GSA policies (RFC 9838 Section 4.4.2.1).
 *
 *   Last Substruc(1) | RESERVED(1) | Transform Length(2)
 *   Transform Type(1) | RESERVED(1) | Transform ID(2) | Attributes
 */
export interface Transform {
  readonly type: number;
  readonly id: number;
  readonly attributes: readonly Attribute[];
}

export const LAST_TRANSFORM = 0;
export const MORE_TRANSFORMS = 3;
const HEADER = 8;

export function encodeTransform(w: Writer, t: Transform, isLast: boolean): void {
  w.u8(isLast ? LAST_TRANSFORM : MORE_TRANSFORMS).u8(0);
  const lenAt = w.placeholder16();
  const start = lenAt - 2;
  w.u8(t.type).u8(0).u16(t.id);
  encodeAttributes(w, t.attributes);
  w.patch16(lenAt, w.length - start);
}

/**
 * Decodes one transform; returns it with the Last Substruc value so the
 * caller can check the chain. `index` is 1-based for the error path.
 */
export function decodeTransform(r: Reader, index: number): { transform: Transform; last: boolean } {
  const tr = r.child(`transform[${index}]`);
  const lastSub = tr.u8('last substruc');
  if (lastSub !== LAST_TRANSFORM && lastSub !== MORE_TRANSFORMS) {
    tr.fail('bad-value', `last substruc must be 0 or 3, got ${lastSub}`);
  }
  tr.u8('reserved');
  const len = tr.u16('transform length');
  if (len < HEADER) tr.fail('bad-length', `transform length ${len} < ${HEADER}`);
  // Re-read the whole transform as a bounded sub-reader.
  const body = r.sub(len, `transform[${index}]`);
  body.skip(4);
  const type = body.u8('transform type');
  body.u8('reserved');
  const id = body.u16('transform id');
  const attrs = decodeAttributes(body.child(nameOf(TransformType, type, 'type')));
  return { transform: { type, id, attributes: attrs }, last: lastSub === LAST_TRANSFORM };
}
