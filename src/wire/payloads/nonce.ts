import type { PayloadType } from '../iana.ts';
import type { Reader } from '../reader.ts';
import { EncodeError, type Writer } from '../writer.ts';

/** Nonce payload (RFC 7296 Section 3.9): the nonce, 16..256 octets. */
export interface NoncePayload {
  readonly type: typeof PayloadType.NONCE;
  readonly critical: boolean;
  readonly nonce: Buffer;
}

export const NONCE_MIN = 16;
export const NONCE_MAX = 256;

export function decodeNonceBody(r: Reader, critical: boolean): NoncePayload {
  const n = r.remaining;
  if (n < NONCE_MIN || n > NONCE_MAX) r.fail('bad-length', `nonce of ${n} octet(s), must be ${NONCE_MIN}..${NONCE_MAX}`);
  return { type: 40, critical, nonce: r.rest() };
}

export function encodeNonceBody(w: Writer, p: NoncePayload): void {
  const n = p.nonce.length;
  if (n < NONCE_MIN || n > NONCE_MAX) throw new EncodeError(`nonce of ${n} octet(s), must be ${NONCE_MIN}..${NONCE_MAX}`);
  w.bytes(p.nonce);
}
