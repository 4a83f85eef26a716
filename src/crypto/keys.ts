/**
 * Key derivation for IKE SAs (RFC 7296 Sections 2.14, 2.17, 2.18) and the
 * G-IKEv2 additions (RFC 9838 Sections 3.1.1 and 3.4).
 *
 *   SKEYSEED = prf(Ni | Nr, g^ir)
 *   {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
 *            = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
 *
 * Ni and Nr are the nonce payload *data* (no payload header); SPIs are the
 * 8-octet IKE SPIs. AEAD encryption keys carry their 4-octet salt at the end
 * (RFC 5282 7.1, RFC 7634 2), and SK_ai/SK_ar are empty with an AEAD.
 */
import { IntegId } from '../wire/iana.ts';
import { encrKeyLength, integKeyLength, isAeadEncr, type SkKeys } from './cipher.ts';
import { kwaKeyLength } from './keywrap.ts';
import { prf, prfOutputLength, prfPlus } from './prf.ts';

export type KeyDerivationErrorKind = 'bad-spi' | 'bad-keymat-length' | 'bad-combination';

export class KeyDerivationError extends Error {
  override readonly name = 'KeyDerivationError';
  constructor(
    readonly kind: KeyDerivationErrorKind,
    detail: string,
  ) {
    super(detail);
  }
}

/** The transforms of an IKE SA that shape its keys. */
export interface IkeSaAlgorithms {
  readonly prf: number;
  readonly encr: number;
  /** Key Length attribute in bits (required for AES). */
  readonly encrKeyBits?: number | undefined;
  /** INTEG transform; omit or IntegId.NONE with an AEAD. */
  readonly integ?: number | undefined;
}

export interface IkeKeyInput extends IkeSaAlgorithms {
  readonly ni: Uint8Array;
  readonly nr: Uint8Array;
  /** g^ir from the KE method (already padded as the method requires). */
  readonly sharedSecret: Uint8Array;
  readonly spiI: Uint8Array;
  readonly spiR: Uint8Array;
}

export interface IkeSaKeys {
  readonly skeyseed: Buffer;
  readonly skD: Buffer;
  readonly skAi: Buffer;
  readonly skAr: Buffer;
  readonly skEi: Buffer;
  readonly skEr: Buffer;
  readonly skPi: Buffer;
  readonly skPr: Buffer;
}

export interface IkeKeyLengths {
  /** SK_d, SK_pi, SK_pr: the PRF's preferred key size = its output length. */
  readonly d: number;
  readonly a: number;
  readonly e: number;
  readonly p: number;
  readonly total: number;
}

export function ikeKeyLengths(alg: IkeSaAlgorithms): IkeKeyLengths {
  const d = prfOutputLength(alg.prf);
  const aead = isAeadEncr(alg.encr);
  const integ = alg.integ ?? IntegId.NONE;
  if (aead !== (integ === IntegId.NONE)) {
    throw new KeyDerivationError('bad-combination', 'an AEAD needs INTEG NONE, any other ENCR needs an INTEG');
  }
  const a = integKeyLength(integ);
  const e = encrKeyLength(alg.encr, alg.encrKeyBits);
  return { d, a, e, p: d, total: 3 * d + 2 * a + 2 * e };
}

function checkSpis(spiI: Uint8Array, spiR: Uint8Array): void {
  if (spiI.length !== 8 || spiR.length !== 8) {
    throw new KeyDerivationError('bad-spi', 'IKE SPIs must be 8 octets each');
  }
}

/** Slices prf+ output in the RFC 7296 order SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr. */
function expandIkeKeys(alg: IkeSaAlgorithms, skeyseed: Buffer, input: IkeKeyInput): IkeSaKeys {
  checkSpis(input.spiI, input.spiR);
  const len = ikeKeyLengths(alg);
  const seed = Buffer.concat([input.ni, input.nr, input.spiI, input.spiR]);
  const stream = prfPlus(alg.prf, skeyseed, seed, len.total);
  let offset = 0;
  const take = (n: number): Buffer => {
    const out = Buffer.from(stream.subarray(offset, offset + n));
    offset += n;
    return out;
  };
  const keys: IkeSaKeys = {
    skeyseed,
    skD: take(len.d),
    skAi: take(len.a),
    skAr: take(len.a),
    skEi: take(len.e),
    skEr: take(len.e),
    skPi: take(len.p),
    skPr: take(len.p),
  };
  stream.fill(0);
  return keys;
}

/** Initial IKE SA keys (IKE_SA_INIT). */
export function deriveIkeKeys(input: IkeKeyInput): IkeSaKeys {
  const skeyseed = prf(input.prf, Buffer.concat([input.ni, input.nr]), input.sharedSecret);
  return expandIkeKeys(input, skeyseed, input);
}

export interface IkeRekeyInput extends IkeKeyInput {
  /** PRF of the IKE SA being rekeyed: the exchange belongs to it (RFC 7296 2.18). */
  readonly oldPrf: number;
  readonly oldSkD: Uint8Array;
}

/**
 * Keys of a new IKE SA created by rekeying with CREATE_CHILD_SA:
 * SKEYSEED = prf_old(SK_d (old), g^ir (new) | Ni | Nr), then prf+ with the
 * NEW SA's PRF over Ni | Nr | SPIi | SPIr of the new SA.
 */
export function deriveRekeyedIkeKeys(input: IkeRekeyInput): IkeSaKeys {
  const skeyseed = prf(input.oldPrf, input.oldSkD, input.sharedSecret, input.ni, input.nr);
  return expandIkeKeys(input, skeyseed, input);
}

/** SK_e/SK_a for the messages `sender` sends (and the peer receives). */
export function skKeysFor(keys: IkeSaKeys, sender: 'initiator' | 'responder'): SkKeys {
  return sender === 'initiator'
    ? { encrKey: keys.skEi, integKey: keys.skAi }
    : { encrKey: keys.skEr, integKey: keys.skAr };
}

/**
 * KEYMAT for a Child SA (RFC 7296 2.17): prf+(SK_d, [g^ir (new) |] Ni | Nr).
 * Pass `sharedSecret` only when the CREATE_CHILD_SA carried KE payloads.
 */
export function deriveChildKeymat(
  prfId: number,
  skD: Uint8Array,
  ni: Uint8Array,
  nr: Uint8Array,
  length: number,
  sharedSecret?: Uint8Array,
): Buffer {
  const seed = sharedSecret ? Buffer.concat([sharedSecret, ni, nr]) : Buffer.concat([ni, nr]);
  return prfPlus(prfId, skD, seed, length);
}

/** RFC 9838 3.1.1: the label is 20 ASCII octets, no terminating NUL. */
export const GSK_W_LABEL = Buffer.from('Key Wrap for G-IKEv2', 'ascii');

/**
 * Default KWK of a unicast IKE SA: GSK_w = prf+(SK_d, "Key Wrap for G-IKEv2"),
 * `keyLength` = kwaKeyLength of the negotiated Key Wrap Algorithm.
 */
export function deriveGskW(prfId: number, skD: Uint8Array, keyLength: number): Buffer {
  return prfPlus(prfId, skD, GSK_W_LABEL, keyLength);
}

/** The transforms of a Rekey SA (GIKE_UPDATE policy) that shape its keys. */
export interface RekeySaAlgorithms {
  readonly encr: number;
  readonly encrKeyBits?: number | undefined;
  /** Omit or IntegId.NONE with an AEAD. */
  readonly integ?: number | undefined;
  readonly kwa: number;
}

export interface RekeySaKeys {
  /** Encryption key, salt included for AEAD. */
  readonly gskE: Buffer;
  /** Integrity key; empty with an AEAD. */
  readonly gskA: Buffer;
  /** The Rekey SA's default KWK. */
  readonly gskW: Buffer;
}

/** Exact SA_KEY keying material size for a Rekey SA (RFC 9838 4.5.2.1: MUST be equal). */
export function rekeySaKeymatLength(alg: RekeySaAlgorithms): number {
  const aead = isAeadEncr(alg.encr);
  const integ = alg.integ ?? IntegId.NONE;
  if (aead !== (integ === IntegId.NONE)) {
    throw new KeyDerivationError('bad-combination', 'an AEAD needs INTEG NONE, any other ENCR needs an INTEG');
  }
  return encrKeyLength(alg.encr, alg.encrKeyBits) + integKeyLength(integ) + kwaKeyLength(alg.kwa);
}

/** GSK_e | GSK_a | GSK_w = KEYMAT (RFC 9838 Section 3.4). */
export function splitRekeySaKeys(keymat: Uint8Array, alg: RekeySaAlgorithms): RekeySaKeys {
  const expected = rekeySaKeymatLength(alg);
  if (keymat.length !== expected) {
    throw new KeyDerivationError(
      'bad-keymat-length',
      `Rekey SA keying material is ${keymat.length} octets, the policy needs exactly ${expected}`,
    );
  }
  const e = encrKeyLength(alg.encr, alg.encrKeyBits);
  const a = integKeyLength(alg.integ);
  return {
    gskE: Buffer.from(keymat.subarray(0, e)),
    gskA: Buffer.from(keymat.subarray(e, e + a)),
    gskW: Buffer.from(keymat.subarray(e + a)),
  };
}

/** The SK keys a Rekey SA protects GSA_REKEY messages with (same for every sender). */
export function rekeySaSkKeys(keys: RekeySaKeys): SkKeys {
  return { encrKey: keys.gskE, integKey: keys.gskA };
}
