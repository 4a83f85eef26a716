/**
 * Key Wrap Algorithms (transform type 13, RFC 9838 Section 4.4.2.1.2): how
 * SA keys and KWKs travel inside KD payloads (RFC 9838 Section 4.5.4).
 *
 *  - KW_5649_128/192/256: AES Key Wrap with Padding (RFC 5649), via node's
 *    id-aesNNN-wrap-pad with the RFC 5649 alternative IV A65959A6.
 *  - KW_ARX: ARX-KW-8-2-4-GX (IACR ePrint 2020/059), see NOTES.md:
 *      K1 | K2 = first 48 octets of ChaCha8(K, counter 0, nonce 0)
 *      T       = SipHash-2-4-128(K1, P)
 *      C       = P XOR XChaCha8(K2, "arbitrGX" | T)
 *      output  = T | C
 *
 * Unwrap failures are deliberately uninformative: one KeyUnwrapError whatever
 * went wrong, so a GM probing key paths learns nothing but "not this KWK".
 */
import { createCipheriv, createDecipheriv, timingSafeEqual } from 'node:crypto';
import { KwaId, nameOf } from '../wire/iana.ts';
import { chachaKeystream, xchachaXor } from './chacha.ts';
import { siphash24 } from './siphash.ts';

export type KeyWrapErrorKind = 'unsupported' | 'bad-kek-length' | 'bad-input';

/** Misuse on the wrapping side (unsupported KWA, wrong KEK size, empty key). */
export class KeyWrapError extends Error {
  override readonly name = 'KeyWrapError';
  constructor(
    readonly kind: KeyWrapErrorKind,
    detail: string,
  ) {
    super(detail);
  }
}

/** The wrapped key is not authentic under this KEK (or is malformed). */
export class KeyUnwrapError extends Error {
  override readonly name = 'KeyUnwrapError';
  constructor(readonly kwa: number) {
    super(`${nameOf(KwaId, kwa, 'KWA')}: unwrap failed`);
  }
}

interface KwaInfo {
  readonly keyLength: number;
  /** node cipher name for the RFC 5649 variants. */
  readonly nodeName?: string;
}

const KWAS: ReadonlyMap<number, KwaInfo> = new Map<number, KwaInfo>([
  [KwaId.KW_5649_128, { keyLength: 16, nodeName: 'id-aes128-wrap-pad' }],
  [KwaId.KW_5649_192, { keyLength: 24, nodeName: 'id-aes192-wrap-pad' }],
  [KwaId.KW_5649_256, { keyLength: 32, nodeName: 'id-aes256-wrap-pad' }],
  [KwaId.KW_ARX, { keyLength: 32 }],
]);

/** RFC 5649 Section 3: the Alternative Initial Value's constant half. */
const RFC5649_AIV = Buffer.from('a65959a6', 'hex');
/** ARX-KW-8-2-4-GX nonce prefix, ASCII "arbitrGX". */
const ARX_GX_PREFIX = Buffer.from('arbitrGX', 'ascii');
const ARX_ROUNDS = 8;
const ARX_TAG_LENGTH = 16;

function kwaInfo(kwa: number): KwaInfo {
  const k = KWAS.get(kwa);
  if (!k) throw new KeyWrapError('unsupported', `unsupported key wrap algorithm ${nameOf(KwaId, kwa, 'KWA')}`);
  return k;
}

export function isSupportedKwa(kwa: number): boolean {
  return KWAS.has(kwa);
}

/** KEK (KWK) size in octets: 16/24/32 for KW_5649_*, 32 for KW_ARX. */
export function kwaKeyLength(kwa: number): number {
  return kwaInfo(kwa).keyLength;
}

/** Size of the wrapped form of a `keyLength`-octet key (for encoders and caps). */
export function wrappedLength(kwa: number, keyLength: number): number {
  const info = kwaInfo(kwa);
  if (info.nodeName) return 8 + Math.ceil(keyLength / 8) * 8;
  return ARX_TAG_LENGTH + keyLength;
}

function checkKek(kwa: number, kek: Uint8Array): KwaInfo {
  const info = kwaInfo(kwa);
  if (kek.length !== info.keyLength) {
    throw new KeyWrapError(
      'bad-kek-length',
      `${nameOf(KwaId, kwa)} needs a ${info.keyLength}-octet KEK, got ${kek.length}`,
    );
  }
  return info;
}

export function wrapKey(kwa: number, kek: Uint8Array, plaintext: Uint8Array): Buffer {
  const info = checkKek(kwa, kek);
  if (plaintext.length === 0) throw new KeyWrapError('bad-input', 'cannot wrap an empty key');
  if (info.nodeName) {
    // One update call: the wrap modes work on the whole input at once.
    const c = createCipheriv(info.nodeName, kek, RFC5649_AIV);
    return Buffer.concat([c.update(plaintext), c.final()]);
  }
  const { k1, k2 } = arxSubkeys(kek);
  const tag = siphash24(k1, plaintext, 16);
  const ciphertext = xchachaXor(k2, Buffer.concat([ARX_GX_PREFIX, tag]), plaintext, ARX_ROUNDS);
  return Buffer.concat([tag, ciphertext]);
}

export function unwrapKey(kwa: number, kek: Uint8Array, wrapped: Uint8Array): Buffer {
  const info = checkKek(kwa, kek);
  if (info.nodeName) {
    // RFC 5649: at least two 64-bit blocks, whole blocks only.
    if (wrapped.length < 16 || wrapped.length % 8 !== 0) throw new KeyUnwrapError(kwa);
    try {
      const d = createDecipheriv(info.nodeName, kek, RFC5649_AIV);
      return Buffer.concat([d.update(wrapped), d.final()]);
    } catch {
      throw new KeyUnwrapError(kwa);
    }
  }
  if (wrapped.length <= ARX_TAG_LENGTH) throw new KeyUnwrapError(kwa);
  const { k1, k2 } = arxSubkeys(kek);
  const tag = wrapped.subarray(0, ARX_TAG_LENGTH);
  const plaintext = xchachaXor(
    k2,
    Buffer.concat([ARX_GX_PREFIX, tag]),
    wrapped.subarray(ARX_TAG_LENGTH),
    ARX_ROUNDS,
  );
  const expected = siphash24(k1, plaintext, 16);
  if (!timingSafeEqual(expected, tag)) {
    plaintext.fill(0);
    throw new KeyUnwrapError(kwa);
  }
  return plaintext;
}

/** ARX-KW "G" subkeys: ChaCha8 keystream under K with counter 0 and zero nonce. */
function arxSubkeys(kek: Uint8Array): { k1: Buffer; k2: Buffer } {
  const g = chachaKeystream(kek, Buffer.alloc(12), 48, ARX_ROUNDS);
  return { k1: g.subarray(0, 16), k2: g.subarray(16, 48) };
}
