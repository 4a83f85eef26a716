/**
 * Operator-facing transform names (strongSwan's proposal keywords where one
 * exists, so proposals read the same on both sides of an interop setup) and
 * the IANA transform IDs they stand for. Only algorithms the crypto layer can
 * key are listed: a name here always yields a policy we can generate keys for.
 */
import { tv } from '../wire/attributes.ts';
import { cipherKeywordsWhere, isGroupCipherKeyword } from '../wire/cipher-keywords.ts';
import { EncrId, GcauthId, IntegId, KwaId, nameOf, SnId, TransformAttr, TransformType } from '../wire/iana.ts';
import type { Transform } from '../wire/transform.ts';

export interface EncrAlgorithm {
  readonly id: number;
  /** Key Length attribute in bits; undefined for fixed-size ciphers (ChaCha20-Poly1305). */
  readonly keyBits?: number | undefined;
}

/**
 * Cipher names: the shared strongSwan keyword table (src/wire/cipher-keywords.ts)
 * without its aliases, so a policy names each algorithm one way.
 */
export const ENCR_NAMES: Readonly<Record<string, EncrAlgorithm>> = cipherKeywordsWhere(isGroupCipherKeyword, (k) =>
  k.keyBits === undefined ? { id: k.id } : { id: k.id, keyBits: k.keyBits },
);

export const INTEG_NAMES: Readonly<Record<string, number>> = {
  none: IntegId.NONE,
  sha1: IntegId.HMAC_SHA1_96,
  sha256: IntegId.HMAC_SHA2_256_128,
  sha384: IntegId.HMAC_SHA2_384_192,
  sha512: IntegId.HMAC_SHA2_512_256,
};

/** ESN64_PARTIAL is left out on purpose: RFC 9838 4.4.2.1.3 forbids it for multicast SAs. */
export const SN_NAMES: Readonly<Record<string, number>> = {
  seq32: SnId.SEQ32,
  unspecified32: SnId.UNSPECIFIED32,
};

export const KWA_NAMES: Readonly<Record<string, number>> = {
  kw_5649_128: KwaId.KW_5649_128,
  kw_5649_192: KwaId.KW_5649_192,
  kw_5649_256: KwaId.KW_5649_256,
  kw_arx: KwaId.KW_ARX,
};

export type RekeyAuthenticationName = 'signature' | 'implicit';
export const GCAUTH_NAMES: Readonly<Record<RekeyAuthenticationName, number>> = {
  signature: GcauthId.DIGITAL_SIGNATURE,
  implicit: GcauthId.IMPLICIT,
};

/** `AES_GCM_16/256`, `CHACHA20_POLY1305`: how logs and refusal reasons name an ENCR. */
export function encrLabel(e: EncrAlgorithm): string {
  return `${nameOf(EncrId, e.id, 'ENCR')}${e.keyBits !== undefined ? `/${e.keyBits}` : ''}`;
}

export function sameEncr(a: EncrAlgorithm, b: EncrAlgorithm): boolean {
  return a.id === b.id && (a.keyBits ?? 0) === (b.keyBits ?? 0);
}

export function encrTransform(e: EncrAlgorithm): Transform {
  return {
    type: TransformType.ENCR,
    id: e.id,
    attributes: e.keyBits !== undefined ? [tv(TransformAttr.KEY_LENGTH, e.keyBits)] : [],
  };
}

/** The ENCR algorithm a transform names (Key Length attribute read when present). */
export function encrOfTransform(t: Transform): EncrAlgorithm {
  const kl = t.attributes.find((a) => a.type === TransformAttr.KEY_LENGTH);
  return { id: t.id, keyBits: kl?.format === 'TV' ? kl.value : undefined };
}

export function simpleTransform(type: number, id: number): Transform {
  return { type, id, attributes: [] };
}
