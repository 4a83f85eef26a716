import type { PayloadType } from '../iana.ts';
import type { Reader } from '../reader.ts';
import type { Writer } from '../writer.ts';

/** Key Exchange payload (RFC 7296 Section 3.4): KE Method Num(2) | RESERVED(2) | data. */
export interface KePayload {
  readonly type: typeof PayloadType.KE;
  readonly critical: boolean;
  /** Key exchange method (transform type 4 ID), see KeId. */
  readonly group: number;
  readonly data: Buffer;
}

export function decodeKeBody(r: Reader, critical: boolean): KePayload {
  const group = r.u16('KE method');
  r.skip(2, 'reserved');
  return { type: 34, critical, group, data: r.rest() };
}

export function encodeKeBody(w: Writer, p: KePayload): void {
  w.u16(p.group).u16(0).bytes(p.data);
}
