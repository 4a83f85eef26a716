import type { PayloadType } from '../iana.ts';
import type { Reader } from '../reader.ts';
import type { Writer } from '../writer.ts';

/**
 * Encrypted and Authenticated payload (RFC 7296 Section 3.14). A container:
 * its generic header's Next Payload names the first payload *inside* the
 * ciphertext, and it must be the last payload of the message. The engine
 * decrypts `encrypted` and decodes the plaintext with
 * `decodePayloadChain(innerFirst, plaintext, 'SK')`.
 */
export interface SkPayload {
  readonly type: typeof PayloadType.SK;
  readonly critical: boolean;
  /** Type of the first inner payload (0 for an empty SK{}). */
  readonly innerFirst: number;
  /** IV | ciphertext (inner payloads, padding, pad length) | ICV, as on the wire. */
  readonly encrypted: Buffer;
}

export function decodeSkBody(r: Reader, innerFirst: number, critical: boolean): SkPayload {
  return { type: 46, critical, innerFirst, encrypted: r.rest() };
}

export function encodeSkBody(w: Writer, p: SkPayload): void {
  w.bytes(p.encrypted);
}
