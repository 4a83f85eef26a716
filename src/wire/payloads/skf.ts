import type { PayloadType } from '../iana.ts';
import type { Reader } from '../reader.ts';
import { EncodeError, type Writer } from '../writer.ts';

/**
 * Encrypted Fragment payload (RFC 7383 Section 2.5):
 *   Fragment Number(2) | Total Fragments(2) | IV | ciphertext | ICV
 * Like SK it is a container and the last payload. Its Next Payload field is
 * the first inner payload type in fragment 1 and zero in the others.
 * Fragment Number and Total Fragments are covered by the ICV (they are part
 * of the AAD), so they belong to the protected prefix.
 */
export interface SkfPayload {
  readonly type: typeof PayloadType.SKF;
  readonly critical: boolean;
  /** Only meaningful in fragment 1; 0 in the others. */
  readonly innerFirst: number;
  /** 1-based. */
  readonly fragmentNumber: number;
  readonly totalFragments: number;
  readonly encrypted: Buffer;
}

/** Octets of SKF body before the encrypted part. */
export const SKF_FIXED_LENGTH = 4;

export function decodeSkfBody(r: Reader, innerFirst: number, critical: boolean): SkfPayload {
  const fragmentNumber = r.u16('fragment number');
  const totalFragments = r.u16('total fragments');
  if (fragmentNumber === 0 || fragmentNumber > totalFragments) {
    r.fail('bad-value', `fragment ${fragmentNumber} of ${totalFragments}`);
  }
  return { type: 53, critical, innerFirst, fragmentNumber, totalFragments, encrypted: r.rest() };
}

export function encodeSkfBody(w: Writer, p: SkfPayload): void {
  checkFragmentNumbers(p.fragmentNumber, p.totalFragments);
  w.u16(p.fragmentNumber).u16(p.totalFragments).bytes(p.encrypted);
}

export function checkFragmentNumbers(fragmentNumber: number, totalFragments: number): void {
  if (fragmentNumber < 1 || fragmentNumber > totalFragments) {
    throw new EncodeError(`fragment ${fragmentNumber} of ${totalFragments}`);
  }
}
