import { EncrId, IntegId, TransformType } from './iana.ts';
import type { Transform } from './transform.ts';

/**
 * Which transform IDs are AEAD, counter-based or implicit-IV, as the
 * validator needs to know (RFC 9838 Sections 2.5, 2.7, 4.4.2.1). Kept in
 * wire/ because the rules are about code points, not about running ciphers.
 */

/** Combined-mode ciphers: INTEG must be absent or NONE with them (RFC 7296 3.3). */
const AEAD_ENCR: ReadonlySet<number> = new Set([
  EncrId.AES_CCM_8,
  EncrId.AES_CCM_12,
  EncrId.AES_CCM_16,
  EncrId.AES_GCM_8,
  EncrId.AES_GCM_12,
  EncrId.AES_GCM_16,
  EncrId.NULL_AUTH_AES_GMAC,
  EncrId.CAMELLIA_CCM_8,
  EncrId.CAMELLIA_CCM_12,
  EncrId.CAMELLIA_CCM_16,
  EncrId.CHACHA20_POLY1305,
  EncrId.AES_CCM_8_IIV,
  EncrId.AES_GCM_16_IIV,
  EncrId.CHACHA20_POLY1305_IIV,
]);

/** Ciphers that rely on the ESP Sequence Number for their IV (RFC 8750). */
const IMPLICIT_IV_ENCR: ReadonlySet<number> = new Set([
  EncrId.AES_CCM_8_IIV,
  EncrId.AES_GCM_16_IIV,
  EncrId.CHACHA20_POLY1305_IIV,
]);

/**
 * Counter-based modes whose IV space senders must split by Sender-ID
 * (Section 2.5: CTR, GCM, CCM, ChaCha20-Poly1305, GMAC; with their
 * Camellia and implicit-IV variants).
 */
const COUNTER_ENCR: ReadonlySet<number> = new Set([
  ...AEAD_ENCR,
  EncrId.AES_CTR,
  EncrId.CAMELLIA_CTR,
]);
/** AES-GMAC as an integrity algorithm (AH, RFC 4543) is counter-based too. */
const COUNTER_INTEG: ReadonlySet<number> = new Set([
  IntegId.AES_128_GMAC,
  IntegId.AES_192_GMAC,
  IntegId.AES_256_GMAC,
]);

export function isAeadEncr(id: number): boolean {
  return AEAD_ENCR.has(id);
}
export function isImplicitIvEncr(id: number): boolean {
  return IMPLICIT_IV_ENCR.has(id);
}

/** True if any transform makes the SA counter-based (Section 2.5). */
export function usesCounterMode(transforms: readonly Transform[]): boolean {
  return transforms.some(
    (t) =>
      (t.type === TransformType.ENCR && COUNTER_ENCR.has(t.id)) ||
      (t.type === TransformType.INTEG && COUNTER_INTEG.has(t.id)),
  );
}
