import { EncrId } from './iana.ts';

/**
 * strongSwan's cipher keywords (`aes256gcm16`, `chacha20poly1305`, `aes128`)
 * and the ENCR transform each stands for: the one table behind IKE proposal
 * strings (src/ike/proposal.ts) and group policy names
 * (src/gcks/transform-names.ts). The ICV of an AEAD is part of its transform
 * ID (AES_GCM_8/12/16), so ID and key length say everything.
 *
 * Each user takes an explicitly filtered view, so a keyword added here shows
 * up only where its filter lets it through:
 *   - IKE proposals: every keyword except the short-ICV GCM variants (the
 *     IKE SA is only offered 16-octet ICVs);
 *   - group policy: every keyword except the aliases (one name per
 *     algorithm in policy files and logs).
 */
export interface CipherKeyword {
  /** EncrId. */
  readonly id: number;
  /** Key Length attribute in bits; absent for fixed-size ciphers (ChaCha20-Poly1305). */
  readonly keyBits?: number;
  /** Set on strongSwan's alternative spellings: the keyword this one means. */
  readonly aliasOf?: string;
}

/** In the order group policy lists its choices in error messages. */
export const CIPHER_KEYWORDS: Readonly<Record<string, CipherKeyword>> = {
  aes128gcm16: { id: EncrId.AES_GCM_16, keyBits: 128 },
  aes192gcm16: { id: EncrId.AES_GCM_16, keyBits: 192 },
  aes256gcm16: { id: EncrId.AES_GCM_16, keyBits: 256 },
  aes128gcm12: { id: EncrId.AES_GCM_12, keyBits: 128 },
  aes256gcm12: { id: EncrId.AES_GCM_12, keyBits: 256 },
  aes128gcm8: { id: EncrId.AES_GCM_8, keyBits: 128 },
  aes256gcm8: { id: EncrId.AES_GCM_8, keyBits: 256 },
  chacha20poly1305: { id: EncrId.CHACHA20_POLY1305 },
  aes128: { id: EncrId.AES_CBC, keyBits: 128 },
  aes192: { id: EncrId.AES_CBC, keyBits: 192 },
  aes256: { id: EncrId.AES_CBC, keyBits: 256 },
  aes128gcm: { id: EncrId.AES_GCM_16, keyBits: 128, aliasOf: 'aes128gcm16' },
  aes256gcm: { id: EncrId.AES_GCM_16, keyBits: 256, aliasOf: 'aes256gcm16' },
};

/** The keywords `keep` accepts, mapped by `shape`, in table order. */
export function cipherKeywordsWhere<T>(
  keep: (k: CipherKeyword, keyword: string) => boolean,
  shape: (k: CipherKeyword) => T,
): Readonly<Record<string, T>> {
  const out: Record<string, T> = {};
  for (const [keyword, k] of Object.entries(CIPHER_KEYWORDS)) {
    if (keep(k, keyword)) out[keyword] = shape(k);
  }
  return Object.freeze(out);
}

/** Short-ICV AEADs: valid for ESP group SAs, not offered for the IKE SA. */
const SHORT_ICV_ENCR: ReadonlySet<number> = new Set([EncrId.AES_GCM_8, EncrId.AES_GCM_12]);

/** Filter of the IKE proposal keywords. */
export function isIkeCipherKeyword(k: CipherKeyword): boolean {
  return !SHORT_ICV_ENCR.has(k.id);
}

/** Filter of the group policy names. */
export function isGroupCipherKeyword(k: CipherKeyword): boolean {
  return k.aliasOf === undefined;
}
