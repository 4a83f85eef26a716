/**
 * Protection of the Encrypted (SK) and Encrypted Fragment (SKF) payloads:
 * RFC 7296 Section 3.14 (AES-CBC + HMAC), RFC 5282 (AES-GCM), RFC 7634
 * (ChaCha20-Poly1305).
 *
 * Layout of an SK payload and which octets each algorithm covers:
 *
 *   message = IKE header | [unencrypted payloads] | SK generic header (4) | body
 *   body    = IV | E(inner payloads | Padding | Pad Length) | ICV
 *
 *   "aad" below = every octet of the message from the first octet of the IKE
 *   header (without the 4 zero octets of the port-4500 non-ESP marker) up to
 *   and including the last octet of the SK generic payload header (for SKF,
 *   the 8-octet SKF header). Its Length fields must already hold their FINAL
 *   values, which is why `skOverhead` exists: the encoder computes the SK
 *   payload length first, writes the headers, then calls `encrypt`/`protect`.
 *
 *   - AEAD (GCM, ChaCha20-Poly1305): Associated Data = aad; nonce = salt (last
 *     4 octets of the keying material) | IV (8 octets on the wire). The ICV is
 *     the AEAD tag.
 *   - AES-CBC + HMAC (encrypt-then-MAC): ICV = truncated HMAC(SK_a, aad | IV |
 *     ciphertext), i.e. everything from the IKE header through the Pad Length
 *     as it appears on the wire (RFC 7296 Section 3.14).
 *
 * GSA_REKEY (RFC 9838 Section 2.4.1.1) signs before encrypting with *adjusted*
 * lengths; that is the engine's business: it restores the real lengths and
 * then calls `encrypt` with the real aad exactly as for any other message.
 */
import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual, type CipherGCMTypes } from 'node:crypto';
import { EncrId, IntegId, nameOf } from '../wire/iana.ts';
import { defaultRandom, type RandomSource } from './random.ts';

/** Negotiated algorithms protecting one direction of an IKE SA or a Rekey SA. */
export interface SkAlgorithm {
  /** ENCR transform ID. */
  readonly encr: number;
  /** Key Length attribute in bits; required for AES, absent (or 256) for ChaCha20-Poly1305. */
  readonly encrKeyBits?: number | undefined;
  /** INTEG transform ID; IntegId.NONE (or absent) with an AEAD. */
  readonly integ?: number | undefined;
}

/** One direction's keys: SK_ei/SK_ai, SK_er/SK_ar, or GSK_e/GSK_a. */
export interface SkKeys {
  /** Encryption key; for AEAD this includes the 4-octet salt at its end. */
  readonly encrKey: Uint8Array;
  /** Integrity key; empty with an AEAD. */
  readonly integKey: Uint8Array;
}

export type SkCipherErrorKind = 'unsupported' | 'bad-combination' | 'bad-key-length' | 'bad-iv' | 'not-aligned';

/** A configuration problem (not attacker input): unsupported algorithm or wrong key size. */
export class SkCipherError extends Error {
  override readonly name = 'SkCipherError';
  constructor(
    readonly kind: SkCipherErrorKind,
    detail: string,
  ) {
    super(detail);
  }
}

export type IntegrityErrorKind =
  /** Body too short or ciphertext not a whole number of blocks. */
  | 'length'
  /** ICV / AEAD tag mismatch. */
  | 'icv'
  /** Authenticated, but the Pad Length points outside the plaintext. */
  | 'padding';

/** The SK body failed verification; the message must be dropped (RFC 7296 2.21.2). */
export class IntegrityError extends Error {
  override readonly name = 'IntegrityError';
  constructor(
    readonly kind: IntegrityErrorKind,
    detail: string,
  ) {
    super(detail);
  }
}

interface EncrInfo {
  readonly aead: boolean;
  /** node cipher name by key size in octets (without salt). */
  readonly nodeNames: ReadonlyMap<number, string>;
  readonly ivLength: number;
  /** Alignment of (inner | Padding | Pad Length). */
  readonly blockSize: number;
  /** AEAD tag length (0 for CBC, whose ICV comes from INTEG). */
  readonly tagLength: number;
  readonly saltLength: number;
  /** Key size used when the Key Length attribute is absent; undefined = attribute required. */
  readonly defaultKeyBits?: number;
}

const AES_CBC = new Map([
  [16, 'aes-128-cbc'],
  [24, 'aes-192-cbc'],
  [32, 'aes-256-cbc'],
]);
const AES_GCM = new Map([
  [16, 'aes-128-gcm'],
  [24, 'aes-192-gcm'],
  [32, 'aes-256-gcm'],
]);

// AEADs have no alignment need; block size 1 means Pad Length 0 (as strongSwan sends).
const ENCRS: ReadonlyMap<number, EncrInfo> = new Map<number, EncrInfo>([
  [EncrId.AES_CBC, { aead: false, nodeNames: AES_CBC, ivLength: 16, blockSize: 16, tagLength: 0, saltLength: 0 }],
  [EncrId.AES_GCM_8, { aead: true, nodeNames: AES_GCM, ivLength: 8, blockSize: 1, tagLength: 8, saltLength: 4 }],
  [EncrId.AES_GCM_12, { aead: true, nodeNames: AES_GCM, ivLength: 8, blockSize: 1, tagLength: 12, saltLength: 4 }],
  [EncrId.AES_GCM_16, { aead: true, nodeNames: AES_GCM, ivLength: 8, blockSize: 1, tagLength: 16, saltLength: 4 }],
  [
    EncrId.CHACHA20_POLY1305,
    {
      aead: true,
      nodeNames: new Map([[32, 'chacha20-poly1305']]),
      ivLength: 8,
      blockSize: 1,
      tagLength: 16,
      saltLength: 4,
      defaultKeyBits: 256,
    },
  ],
]);

interface IntegInfo {
  readonly hash: string;
  readonly keyLength: number;
  readonly icvLength: number;
}

const INTEGS: ReadonlyMap<number, IntegInfo> = new Map([
  [IntegId.HMAC_SHA1_96, { hash: 'sha1', keyLength: 20, icvLength: 12 }],
  [IntegId.HMAC_SHA2_256_128, { hash: 'sha256', keyLength: 32, icvLength: 16 }],
  [IntegId.HMAC_SHA2_384_192, { hash: 'sha384', keyLength: 48, icvLength: 24 }],
  [IntegId.HMAC_SHA2_512_256, { hash: 'sha512', keyLength: 64, icvLength: 32 }],
]);

function encrInfo(encr: number): EncrInfo {
  const e = ENCRS.get(encr);
  if (!e) throw new SkCipherError('unsupported', `unsupported ENCR ${nameOf(EncrId, encr, 'ENCR')}`);
  return e;
}

function integInfo(integ: number): IntegInfo {
  const i = INTEGS.get(integ);
  if (!i) throw new SkCipherError('unsupported', `unsupported INTEG ${nameOf(IntegId, integ, 'INTEG')}`);
  return i;
}

export function isSupportedEncr(encr: number): boolean {
  return ENCRS.has(encr);
}

export function isSupportedInteg(integ: number): boolean {
  return INTEGS.has(integ);
}

export function isAeadEncr(encr: number): boolean {
  return encrInfo(encr).aead;
}

/** Cipher key size in octets, salt excluded; validates the Key Length attribute. */
function cipherKeyLength(encr: number, keyBits: number | undefined): number {
  const e = encrInfo(encr);
  const bits = keyBits ?? e.defaultKeyBits;
  if (bits === undefined) {
    throw new SkCipherError('bad-key-length', `${nameOf(EncrId, encr)} needs a Key Length attribute`);
  }
  if (bits % 8 !== 0 || !e.nodeNames.has(bits / 8)) {
    throw new SkCipherError('bad-key-length', `${nameOf(EncrId, encr)} does not support ${bits}-bit keys`);
  }
  return bits / 8;
}

/**
 * Octets of keying material the ENCR transform takes from prf+ / KEYMAT:
 * the key plus, for AEADs, the 4-octet salt (RFC 5282 Section 7.1, RFC 7634 Section 2).
 */
export function encrKeyLength(encr: number, keyBits?: number): number {
  return cipherKeyLength(encr, keyBits) + encrInfo(encr).saltLength;
}

/** Octets of keying material the INTEG transform takes (0 for NONE). */
export function integKeyLength(integ: number | undefined): number {
  if (integ === undefined || integ === IntegId.NONE) return 0;
  return integInfo(integ).keyLength;
}

/** Static sizes of one algorithm combination, for encoders and key derivation. */
export interface SkParameters {
  readonly aead: boolean;
  readonly ivLength: number;
  readonly icvLength: number;
  readonly blockSize: number;
  /** Octets of SK_e (salt included for AEAD). */
  readonly encrKeyLength: number;
  /** Octets of SK_a (0 for AEAD). */
  readonly integKeyLength: number;
}

/** Validates the ENCR/INTEG combination (AEAD needs INTEG NONE, CBC needs a MAC). */
export function skParameters(alg: SkAlgorithm): SkParameters {
  const e = encrInfo(alg.encr);
  const integ = alg.integ ?? IntegId.NONE;
  if (e.aead && integ !== IntegId.NONE) {
    throw new SkCipherError('bad-combination', `${nameOf(EncrId, alg.encr)} is an AEAD; INTEG must be NONE`);
  }
  if (!e.aead && integ === IntegId.NONE) {
    throw new SkCipherError('bad-combination', `${nameOf(EncrId, alg.encr)} needs an INTEG transform`);
  }
  return {
    aead: e.aead,
    ivLength: e.ivLength,
    icvLength: e.aead ? e.tagLength : integInfo(integ).icvLength,
    blockSize: e.blockSize,
    encrKeyLength: encrKeyLength(alg.encr, alg.encrKeyBits),
    integKeyLength: integKeyLength(integ),
  };
}

/** Length of (inner | Padding | Pad Length) with the minimal padding we send. */
export function skPaddedLength(alg: SkAlgorithm, innerLength: number): number {
  const { blockSize } = skParameters(alg);
  return Math.ceil((innerLength + 1) / blockSize) * blockSize;
}

/**
 * Octets the SK body adds to the inner payloads: IV + Padding + Pad Length + ICV.
 * SK Payload Length = 4 + innerLength + skOverhead(alg, innerLength).
 */
export function skOverhead(alg: SkAlgorithm, innerLength: number): number {
  const p = skParameters(alg);
  return p.ivLength + (skPaddedLength(alg, innerLength) - innerLength) + p.icvLength;
}

export interface SkEncrypted {
  readonly iv: Buffer;
  /** E(inner | Padding | Pad Length). */
  readonly ciphertextWithPadding: Buffer;
  readonly icv: Buffer;
}

export interface SkCipher extends SkParameters {
  /** Pads `inner`, encrypts and authenticates it. `iv` only for known-answer tests. */
  encrypt(inner: Uint8Array, aad: Uint8Array, iv?: Uint8Array): SkEncrypted;
  /** Verifies (constant time) and decrypts; returns the inner payloads without padding. */
  decrypt(iv: Uint8Array, ciphertextWithPadding: Uint8Array, icv: Uint8Array, aad: Uint8Array): Buffer;
  /** Raw primitive without padding: `plaintext` must already be block aligned. */
  seal(iv: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): { ciphertext: Buffer; icv: Buffer };
  /** Inverse of seal; throws IntegrityError. */
  open(iv: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, icv: Uint8Array): Buffer;
}

/**
 * One SkCipher per key and direction for the SA's lifetime: AEAD IVs come from
 * a per-instance counter (XOR a random mask, as strongSwan's iv_gen_seq does),
 * which never repeats within the instance; CBC IVs are random as RFC 7296
 * requires them to be unpredictable.
 */
export function createSkCipher(alg: SkAlgorithm, keys: SkKeys, rng: RandomSource = defaultRandom()): SkCipher {
  const params = skParameters(alg);
  const e = encrInfo(alg.encr);
  if (keys.encrKey.length !== params.encrKeyLength) {
    throw new SkCipherError(
      'bad-key-length',
      `encryption key is ${keys.encrKey.length} octets, ${nameOf(EncrId, alg.encr)} needs ${params.encrKeyLength}`,
    );
  }
  if (keys.integKey.length !== params.integKeyLength) {
    throw new SkCipherError(
      'bad-key-length',
      `integrity key is ${keys.integKey.length} octets, expected ${params.integKeyLength}`,
    );
  }
  const cipherKeyLen = params.encrKeyLength - e.saltLength;
  const nodeName = e.nodeNames.get(cipherKeyLen);
  if (nodeName === undefined) throw new SkCipherError('bad-key-length', 'no cipher for key size');
  const integ = params.aead ? undefined : integInfo(alg.integ ?? IntegId.NONE);
  return new SkCipherInstance(alg.encr, params, nodeName, cipherKeyLen, integ, keys, rng);
}

/**
 * The cipher of one key and direction. A class, not closures: an IKE SA keeps
 * two for its lifetime, and one shape with shared methods costs a fraction of
 * the memory (and garbage collection time) of seven closures per instance.
 */
class SkCipherInstance implements SkCipher {
  readonly aead: boolean;
  readonly ivLength: number;
  readonly icvLength: number;
  readonly blockSize: number;
  readonly encrKeyLength: number;
  readonly integKeyLength: number;
  /** key | salt | integKey in one allocation of their own (not slices of node's shared pool, kept as long as the SA). */
  private readonly keyMaterial: Buffer;
  private readonly key: Buffer;
  private readonly salt: Buffer;
  private readonly integKey: Buffer;
  private readonly ivMask: bigint;
  private ivCounter = 0n;

  constructor(
    private readonly encr: number,
    params: SkParameters,
    private readonly nodeName: string,
    cipherKeyLen: number,
    private readonly integ: IntegInfo | undefined,
    keys: SkKeys,
    private readonly rng: RandomSource,
  ) {
    this.aead = params.aead;
    this.ivLength = params.ivLength;
    this.icvLength = params.icvLength;
    this.blockSize = params.blockSize;
    this.encrKeyLength = params.encrKeyLength;
    this.integKeyLength = params.integKeyLength;
    const encrLength = keys.encrKey.length;
    this.keyMaterial = Buffer.allocUnsafeSlow(encrLength + keys.integKey.length);
    this.keyMaterial.set(keys.encrKey, 0);
    this.keyMaterial.set(keys.integKey, encrLength);
    this.key = this.keyMaterial.subarray(0, cipherKeyLen);
    this.salt = this.keyMaterial.subarray(cipherKeyLen, encrLength);
    this.integKey = this.keyMaterial.subarray(encrLength);
    this.ivMask = params.aead ? rng.bytes(8).readBigUInt64BE() : 0n;
  }

  private nextIv(): Buffer {
    if (!this.aead) return this.rng.bytes(this.ivLength);
    const iv = Buffer.alloc(8);
    iv.writeBigUInt64BE(this.ivCounter ^ this.ivMask);
    this.ivCounter++;
    return iv;
  }

  private mac(aad: Uint8Array, iv: Uint8Array, ciphertext: Uint8Array): Buffer {
    const integ = this.integ;
    if (!integ) throw new SkCipherError('bad-combination', 'no INTEG');
    return createHmac(integ.hash, this.integKey)
      .update(aad)
      .update(iv)
      .update(ciphertext)
      .digest()
      .subarray(0, integ.icvLength);
  }

  seal(iv: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): { ciphertext: Buffer; icv: Buffer } {
    if (iv.length !== this.ivLength) {
      throw new SkCipherError('bad-iv', `IV must be ${this.ivLength} octets, got ${iv.length}`);
    }
    if (plaintext.length % this.blockSize !== 0) {
      throw new SkCipherError('not-aligned', 'plaintext is not block aligned');
    }
    if (!this.aead) {
      const c = createCipheriv(this.nodeName, this.key, iv).setAutoPadding(false);
      const ciphertext = Buffer.concat([c.update(plaintext), c.final()]);
      return { ciphertext, icv: this.mac(aad, iv, ciphertext) };
    }
    const nonce = Buffer.concat([this.salt, iv]);
    if (this.encr === EncrId.CHACHA20_POLY1305) {
      const c = createCipheriv('chacha20-poly1305', this.key, nonce, { authTagLength: 16 });
      c.setAAD(aad, { plaintextLength: plaintext.length });
      const ciphertext = Buffer.concat([c.update(plaintext), c.final()]);
      return { ciphertext, icv: c.getAuthTag() };
    }
    const c = createCipheriv(this.nodeName as CipherGCMTypes, this.key, nonce, { authTagLength: this.icvLength });
    c.setAAD(aad);
    const ciphertext = Buffer.concat([c.update(plaintext), c.final()]);
    return { ciphertext, icv: c.getAuthTag() };
  }

  open(iv: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, icv: Uint8Array): Buffer {
    if (iv.length !== this.ivLength || icv.length !== this.icvLength) {
      throw new IntegrityError('length', 'IV or ICV has the wrong length');
    }
    if (ciphertext.length === 0 || ciphertext.length % this.blockSize !== 0) {
      throw new IntegrityError('length', `ciphertext of ${ciphertext.length} octets is not whole blocks`);
    }
    if (!this.aead) {
      // Encrypt-then-MAC: check the MAC before touching the ciphertext.
      const expected = this.mac(aad, iv, ciphertext);
      if (!timingSafeEqual(expected, icv)) throw new IntegrityError('icv', 'integrity check failed');
      const d = createDecipheriv(this.nodeName, this.key, iv).setAutoPadding(false);
      return Buffer.concat([d.update(ciphertext), d.final()]);
    }
    const nonce = Buffer.concat([this.salt, iv]);
    try {
      if (this.encr === EncrId.CHACHA20_POLY1305) {
        const d = createDecipheriv('chacha20-poly1305', this.key, nonce, { authTagLength: 16 });
        d.setAAD(aad, { plaintextLength: ciphertext.length });
        d.setAuthTag(icv);
        return Buffer.concat([d.update(ciphertext), d.final()]);
      }
      const d = createDecipheriv(this.nodeName as CipherGCMTypes, this.key, nonce, { authTagLength: this.icvLength });
      d.setAAD(aad);
      d.setAuthTag(icv);
      return Buffer.concat([d.update(ciphertext), d.final()]);
    } catch {
      // OpenSSL compares the tag in constant time and fails final().
      throw new IntegrityError('icv', 'integrity check failed');
    }
  }

  encrypt(inner: Uint8Array, aad: Uint8Array, iv?: Uint8Array): SkEncrypted {
    const ivBytes = iv ? Buffer.from(iv) : this.nextIv();
    const paddedLength = Math.ceil((inner.length + 1) / this.blockSize) * this.blockSize;
    const padLength = paddedLength - inner.length - 1;
    // Padding octets are zero: RFC 7296 lets the sender choose any value.
    const plaintext = Buffer.alloc(paddedLength);
    plaintext.set(inner);
    plaintext[paddedLength - 1] = padLength;
    const { ciphertext, icv } = this.seal(ivBytes, aad, plaintext);
    return { iv: ivBytes, ciphertextWithPadding: ciphertext, icv };
  }

  decrypt(iv: Uint8Array, ciphertextWithPadding: Uint8Array, icv: Uint8Array, aad: Uint8Array): Buffer {
    const plaintext = this.open(iv, aad, ciphertextWithPadding, icv);
    const padLength = plaintext[plaintext.length - 1] ?? 0;
    // Any padding that keeps the alignment is acceptable (RFC 7296 3.14).
    if (padLength + 1 > plaintext.length) {
      throw new IntegrityError('padding', 'Pad Length exceeds the decrypted data');
    }
    return plaintext.subarray(0, plaintext.length - padLength - 1);
  }
}

/** Encrypts `inner` and returns the SK body IV | ciphertext | ICV. */
export function protect(cipher: SkCipher, aad: Uint8Array, inner: Uint8Array): Buffer {
  const { iv, ciphertextWithPadding, icv } = cipher.encrypt(inner, aad);
  return Buffer.concat([iv, ciphertextWithPadding, icv]);
}

/**
 * Inverse of protect: `body` is everything after the SK generic header.
 * Throws IntegrityError for any failure, without saying which octet was wrong.
 */
export function unprotect(cipher: SkCipher, aad: Uint8Array, body: Uint8Array): Buffer {
  if (body.length < cipher.ivLength + cipher.icvLength + 1) {
    throw new IntegrityError('length', `SK body of ${body.length} octets is too short`);
  }
  const iv = body.subarray(0, cipher.ivLength);
  const icv = body.subarray(body.length - cipher.icvLength);
  const ciphertext = body.subarray(cipher.ivLength, body.length - cipher.icvLength);
  return cipher.decrypt(iv, ciphertext, icv, aad);
}
