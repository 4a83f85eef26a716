import type { PayloadType } from '../iana.ts';
import type { Reader } from '../reader.ts';
import type { Writer } from '../writer.ts';

/** The payload types that carry an Identification body. */
export type IdPayloadType = typeof PayloadType.IDi | typeof PayloadType.IDr | typeof PayloadType.IDg;

/**
 * Identification payload (RFC 7296 Section 3.5): ID Type(1) | RESERVED(3) |
 * data. IDi, IDr and IDg (RFC 9838 Section 4.2) share this body.
 */
export interface IdPayload {
  readonly type: IdPayloadType;
  readonly critical: boolean;
  /** See IdType. */
  readonly idType: number;
  readonly data: Buffer;
}

export function decodeIdBody(r: Reader, type: IdPayloadType, critical: boolean): IdPayload {
  const idType = r.u8('ID type');
  r.skip(3, 'reserved');
  return { type, critical, idType, data: r.rest() };
}

export function encodeIdBody(w: Writer, p: IdPayload): void {
  w.u8(p.idType).u8(0).u16(0).bytes(p.data);
}
