/**
 * Pseudorandom functions (transform type 2) and prf+ (RFC 7296 Section 2.13).
 *
 * Only the HMAC PRFs are offered: they accept keys of any length, so the
 * "Ni | Nr" key of SKEYSEED needs no special case (AES-XCBC/CMAC PRFs would).
 */
import { createHmac } from 'node:crypto';
import { PrfId, nameOf } from '../wire/iana.ts';

export type PrfErrorKind = 'unsupported' | 'too-long';

export class PrfError extends Error {
  override readonly name = 'PrfError';
  constructor(
    readonly kind: PrfErrorKind,
    detail: string,
  ) {
    super(detail);
  }
}

interface PrfInfo {
  readonly hash: string;
  readonly outputLength: number;
}

const PRFS: ReadonlyMap<number, PrfInfo> = new Map([
  [PrfId.HMAC_SHA1, { hash: 'sha1', outputLength: 20 }],
  [PrfId.HMAC_SHA2_256, { hash: 'sha256', outputLength: 32 }],
  [PrfId.HMAC_SHA2_384, { hash: 'sha384', outputLength: 48 }],
  [PrfId.HMAC_SHA2_512, { hash: 'sha512', outputLength: 64 }],
]);

/** prf+ stops after 255 blocks because the counter is one octet (RFC 7296 2.13). */
export const PRF_PLUS_MAX_ITERATIONS = 255;

function info(id: number): PrfInfo {
  const p = PRFS.get(id);
  if (!p) throw new PrfError('unsupported', `unsupported PRF ${nameOf(PrfId, id, 'PRF')}`);
  return p;
}

export function isSupportedPrf(id: number): boolean {
  return PRFS.has(id);
}

/** Output length in octets; also the key length of SK_d, SK_pi and SK_pr. */
export function prfOutputLength(id: number): number {
  return info(id).outputLength;
}

/** prf(key, data...) — the parts are concatenated, saving a copy at call sites. */
export function prf(id: number, key: Uint8Array, ...data: Uint8Array[]): Buffer {
  const h = createHmac(info(id).hash, key);
  for (const d of data) h.update(d);
  return h.digest();
}

/**
 * prf+(K, S) = T1 | T2 | ... truncated to `length`, where
 * T1 = prf(K, S | 0x01) and Tn = prf(K, Tn-1 | S | n).
 */
export function prfPlus(id: number, key: Uint8Array, seed: Uint8Array, length: number): Buffer {
  const outLen = prfOutputLength(id);
  if (!Number.isInteger(length) || length < 0) {
    throw new PrfError('too-long', `prf+ length must be a non-negative integer, got ${length}`);
  }
  const blocks = Math.ceil(length / outLen);
  if (blocks > PRF_PLUS_MAX_ITERATIONS) {
    throw new PrfError(
      'too-long',
      `prf+ of ${length} octets needs ${blocks} iterations; at most ${PRF_PLUS_MAX_ITERATIONS} are defined`,
    );
  }
  const out = Buffer.alloc(blocks * outLen);
  let previous: Buffer = Buffer.alloc(0);
  for (let n = 1; n <= blocks; n++) {
    previous = prf(id, key, previous, seed, Uint8Array.of(n));
    previous.copy(out, (n - 1) * outLen);
  }
  return out.subarray(0, length);
}
