/**
 * Sizes and layout of Data-Security SA keying material (RFC 9838 Section 3.4,
 * RFC 7296 Section 2.17): the encryption key first (with its 4-octet salt for
 * GCM and ChaCha20-Poly1305, RFC 4106 / RFC 7634), then the integrity key.
 * Shared by the GCKS (which generates it) and the GM (which splits it).
 * Rekey SA keying material (GSK_e | GSK_a | GSK_w) is in src/crypto/keys.ts.
 */
import { encrKeyLength, integKeyLength } from '../crypto/cipher.ts';
import type { RekeySaAlgorithms } from '../crypto/keys.ts';
import type { EncrAlgorithm } from './transform-names.ts';

export interface DataSecurityAlgorithms {
  /** Absent for AH. */
  readonly encryption?: EncrAlgorithm | undefined;
  /** IntegId; NONE with an AEAD. */
  readonly integrity: number;
}

export interface DataSecurityKeys {
  /** Cipher key with the AEAD salt at its end; empty for AH. */
  readonly encrKey: Buffer;
  /** Empty with an AEAD. */
  readonly integKey: Buffer;
}

export class KeymatLengthError extends Error {
  override readonly name = 'KeymatLengthError';
}

export function dataSecurityKeymatLength(alg: DataSecurityAlgorithms): number {
  const e = alg.encryption ? encrKeyLength(alg.encryption.id, alg.encryption.keyBits) : 0;
  return e + integKeyLength(alg.integrity);
}

/** Section 4.5.2.1: the keying material MUST be exactly the size the SA needs. */
export function splitDataSecurityKeymat(keymat: Uint8Array, alg: DataSecurityAlgorithms): DataSecurityKeys {
  const expected = dataSecurityKeymatLength(alg);
  if (keymat.length !== expected) {
    throw new KeymatLengthError(`Data-Security SA keying material is ${keymat.length} octets, the policy needs ${expected}`);
  }
  const e = alg.encryption ? encrKeyLength(alg.encryption.id, alg.encryption.keyBits) : 0;
  return { encrKey: Buffer.from(keymat.subarray(0, e)), integKey: Buffer.from(keymat.subarray(e)) };
}

export function rekeySaAlgorithms(encryption: EncrAlgorithm, integrity: number, keyWrap: number): RekeySaAlgorithms {
  return { encr: encryption.id, encrKeyBits: encryption.keyBits, integ: integrity, kwa: keyWrap };
}
