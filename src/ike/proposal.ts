/**
 * IKE SA proposals: configuration syntax, what we offer, how a responder
 * picks one (RFC 7296 Section 2.7 / 3.3.6) and how an initiator checks the
 * choice it gets back.
 *
 * The configuration syntax is strongSwan's (`aes256gcm16-prfsha256-x25519`)
 * so operators can copy proposals between the two; the Key Wrap Algorithm
 * (RFC 9838 transform type 13) has no strongSwan keyword and is configured
 * separately as a list of KwaId values.
 */
import { tv } from '../wire/attributes.ts';
import {
  EncrId,
  IntegId,
  KeId,
  KwaId,
  PrfId,
  ProtocolId,
  TransformAttr,
  TransformType,
  nameOf,
} from '../wire/iana.ts';
import type { Proposal } from '../wire/payloads/sa.ts';
import type { Transform } from '../wire/transform.ts';
import { isAeadEncr } from '../wire/cipher-classes.ts';
import { cipherKeywordsWhere, isIkeCipherKeyword } from '../wire/cipher-keywords.ts';

/** One ENCR choice: the transform ID and, for variable-length ciphers, the key length in bits. */
export interface EncrChoice {
  readonly id: number;
  readonly keyLength?: number;
}

/** A configured IKE proposal: every listed choice is acceptable, in preference order. */
export interface IkeProposalConfig {
  readonly encr: readonly EncrChoice[];
  readonly prf: readonly number[];
  /** Empty for AEAD-only proposals. */
  readonly integ: readonly number[];
  readonly ke: readonly number[];
  /** Key Wrap Algorithms (RFC 9838); empty: none offered / none accepted. */
  readonly kwa: readonly number[];
}

/** The one transform of each type that a negotiation settled on. */
export interface NegotiatedIkeTransforms {
  readonly encr: EncrChoice;
  readonly prf: number;
  /** IntegId.NONE for AEAD. */
  readonly integ: number;
  readonly ke: number;
  readonly kwa?: number;
}

export class ProposalSyntaxError extends Error {
  override readonly name = 'ProposalSyntaxError';
}

/** Cipher keywords: the shared strongSwan table (src/wire/cipher-keywords.ts), IKE's view of it. */
const ENCR_KEYWORDS: Readonly<Record<string, EncrChoice>> = cipherKeywordsWhere(isIkeCipherKeyword, (k) =>
  k.keyBits === undefined ? { id: k.id } : { id: k.id, keyLength: k.keyBits },
);

/** Integrity keywords; strongSwan derives the matching PRF from them when no prfX is given. */
const INTEG_KEYWORDS: Readonly<Record<string, { integ: number; prf: number }>> = {
  sha1: { integ: IntegId.HMAC_SHA1_96, prf: PrfId.HMAC_SHA1 },
  sha256: { integ: IntegId.HMAC_SHA2_256_128, prf: PrfId.HMAC_SHA2_256 },
  sha384: { integ: IntegId.HMAC_SHA2_384_192, prf: PrfId.HMAC_SHA2_384 },
  sha512: { integ: IntegId.HMAC_SHA2_512_256, prf: PrfId.HMAC_SHA2_512 },
};

const PRF_KEYWORDS: Readonly<Record<string, number>> = {
  prfsha1: PrfId.HMAC_SHA1,
  prfsha256: PrfId.HMAC_SHA2_256,
  prfsha384: PrfId.HMAC_SHA2_384,
  prfsha512: PrfId.HMAC_SHA2_512,
};

const KE_KEYWORDS: Readonly<Record<string, number>> = {
  modp2048: KeId.MODP_2048,
  modp3072: KeId.MODP_3072,
  modp4096: KeId.MODP_4096,
  ecp256: KeId.ECP_256,
  ecp384: KeId.ECP_384,
  ecp521: KeId.ECP_521,
  x25519: KeId.CURVE25519,
  curve25519: KeId.CURVE25519,
  x448: KeId.CURVE448,
  curve448: KeId.CURVE448,
};

/** Own entries only: `constructor` or `__proto__` are unknown keywords, not Object members. */
function keyword<T>(table: Readonly<Record<string, T>>, word: string): T | undefined {
  return Object.hasOwn(table, word) ? table[word] : undefined;
}

/**
 * Parses `aes256gcm16-prfsha256-x25519` style text. `kwa` is appended to the
 * proposal (G-IKEv2). Throws ProposalSyntaxError naming the bad keyword.
 */
export function parseIkeProposal(text: string, kwa: readonly number[] = []): IkeProposalConfig {
  const encr: EncrChoice[] = [];
  const prf: number[] = [];
  const integ: number[] = [];
  const impliedPrf: number[] = [];
  const ke: number[] = [];
  for (const word of text.trim().toLowerCase().split('-')) {
    const e = keyword(ENCR_KEYWORDS, word);
    const i = keyword(INTEG_KEYWORDS, word);
    const p = keyword(PRF_KEYWORDS, word);
    const k = keyword(KE_KEYWORDS, word);
    if (e) encr.push(e);
    else if (i) {
      integ.push(i.integ);
      impliedPrf.push(i.prf);
    } else if (p !== undefined) prf.push(p);
    else if (k !== undefined) ke.push(k);
    else throw new ProposalSyntaxError(`proposal '${text}': unknown keyword '${word}'`);
  }
  if (encr.length === 0) throw new ProposalSyntaxError(`proposal '${text}': no encryption algorithm`);
  if (ke.length === 0) throw new ProposalSyntaxError(`proposal '${text}': no key exchange method`);
  const aead = encr.filter((c) => isAeadEncr(c.id)).length;
  if (aead !== 0 && aead !== encr.length) {
    throw new ProposalSyntaxError(`proposal '${text}': AEAD and non-AEAD ciphers cannot share a proposal`);
  }
  if (aead === 0 && integ.length === 0) throw new ProposalSyntaxError(`proposal '${text}': no integrity algorithm`);
  if (aead !== 0 && integ.length !== 0) {
    throw new ProposalSyntaxError(`proposal '${text}': AEAD ciphers take no integrity algorithm (use prfX)`);
  }
  const prfs = prf.length > 0 ? prf : impliedPrf;
  if (prfs.length === 0) throw new ProposalSyntaxError(`proposal '${text}': no PRF`);
  return { encr, prf: prfs, integ, ke, kwa: [...kwa] };
}

function encrTransform(c: EncrChoice): Transform {
  return {
    type: TransformType.ENCR,
    id: c.id,
    attributes: c.keyLength === undefined ? [] : [tv(TransformAttr.KEY_LENGTH, c.keyLength)],
  };
}

function simple(type: number, id: number): Transform {
  return { type, id, attributes: [] };
}

/** The SA payload proposals we offer, numbered from 1. `spi` is empty in IKE_SA_INIT, 8 octets in a rekey. */
export function offerProposals(configs: readonly IkeProposalConfig[], spi: Buffer = Buffer.alloc(0)): Proposal[] {
  return configs.map((c, i) => ({
    num: i + 1,
    protocolId: ProtocolId.IKE,
    spi,
    transforms: [
      ...c.encr.map(encrTransform),
      ...c.prf.map((id) => simple(TransformType.PRF, id)),
      ...c.integ.map((id) => simple(TransformType.INTEG, id)),
      ...c.ke.map((id) => simple(TransformType.KE, id)),
      ...c.kwa.map((id) => simple(TransformType.KWA, id)),
    ],
  }));
}

/** The single-transform-per-type proposal a responder answers with. */
export function acceptedProposal(num: number, t: NegotiatedIkeTransforms, spi: Buffer = Buffer.alloc(0)): Proposal {
  const transforms: Transform[] = [encrTransform(t.encr), simple(TransformType.PRF, t.prf)];
  if (t.integ !== IntegId.NONE) transforms.push(simple(TransformType.INTEG, t.integ));
  transforms.push(simple(TransformType.KE, t.ke));
  if (t.kwa !== undefined) transforms.push(simple(TransformType.KWA, t.kwa));
  return { num, protocolId: ProtocolId.IKE, spi, transforms };
}

function keyLengthOf(t: Transform): number | undefined | 'bad' {
  let found: number | undefined;
  for (const a of t.attributes) {
    // Unknown attributes make the transform unacceptable (RFC 7296 3.3.6).
    if (a.type !== TransformAttr.KEY_LENGTH || a.format !== 'TV') return 'bad';
    found = a.value;
  }
  return found;
}

function sameEncr(t: Transform, c: EncrChoice): boolean {
  if (t.id !== c.id) return false;
  const kl = keyLengthOf(t);
  if (kl === 'bad') return false;
  return kl === c.keyLength;
}

const KNOWN_TYPES: ReadonlySet<number> = new Set([
  TransformType.ENCR,
  TransformType.PRF,
  TransformType.INTEG,
  TransformType.KE,
  TransformType.KWA,
]);

/**
 * Responder side: the first offered proposal (peer's order) that one of our
 * configs accepts. For every transform type the peer's order wins, as
 * strongSwan does by default. A proposal with a transform type we do not
 * know, or with KWA when we want none, is skipped; a proposal without KWA is
 * fine even when we support KWA (the peer may not be a G-IKEv2 member).
 */
export function selectProposal(
  offered: readonly Proposal[],
  ours: readonly IkeProposalConfig[],
  expectedSpiSize: number,
  /** The KE method of the peer's KE payload: chosen when acceptable, to avoid a needless INVALID_KE_PAYLOAD round trip. */
  preferKe?: number,
): { num: number; spi: Buffer; transforms: NegotiatedIkeTransforms } | undefined {
  for (const p of offered) {
    if (p.protocolId !== ProtocolId.IKE || p.spi.length !== expectedSpiSize) continue;
    if (p.transforms.some((t) => !KNOWN_TYPES.has(t.type))) continue;
    const ofType = (type: number): Transform[] => p.transforms.filter((t) => t.type === type);
    for (const c of ours) {
      const encrT = ofType(TransformType.ENCR).find((t) => c.encr.some((e) => sameEncr(t, e)));
      if (!encrT) continue;
      const encr = c.encr.find((e) => sameEncr(encrT, e))!;
      const prf = ofType(TransformType.PRF).find((t) => c.prf.includes(t.id))?.id;
      if (prf === undefined) continue;
      const integs = ofType(TransformType.INTEG).filter((t) => t.id !== IntegId.NONE);
      let integ: number = IntegId.NONE;
      if (isAeadEncr(encr.id)) {
        if (integs.length > 0 && !ofType(TransformType.INTEG).some((t) => t.id === IntegId.NONE)) continue;
      } else {
        const chosen = integs.find((t) => c.integ.includes(t.id));
        if (!chosen) continue;
        integ = chosen.id;
      }
      const kes = ofType(TransformType.KE).filter((t) => c.ke.includes(t.id));
      const ke = (kes.find((t) => t.id === preferKe) ?? kes[0])?.id;
      if (ke === undefined) continue;
      const kwaOffered = ofType(TransformType.KWA);
      let kwa: number | undefined;
      if (kwaOffered.length > 0) {
        kwa = kwaOffered.find((t) => c.kwa.includes(t.id))?.id;
        if (kwa === undefined) continue;
      }
      return { num: p.num, spi: p.spi, transforms: { encr, prf, integ, ke, ...(kwa === undefined ? {} : { kwa }) } };
    }
  }
  return undefined;
}

/**
 * Initiator side: checks that the responder's single proposal picks exactly
 * one transform of each type from the proposal with the same number that we
 * offered (RFC 7296 2.7). Returns undefined for anything else.
 */
export function checkAcceptedProposal(
  accepted: readonly Proposal[],
  offered: readonly Proposal[],
  expectedSpiSize: number,
): { spi: Buffer; transforms: NegotiatedIkeTransforms } | undefined {
  if (accepted.length !== 1) return undefined;
  const a = accepted[0]!;
  if (a.protocolId !== ProtocolId.IKE || a.spi.length !== expectedSpiSize) return undefined;
  const mine = offered.find((p) => p.num === a.num);
  if (!mine) return undefined;
  const one = (type: number): Transform | undefined | 'many' => {
    const ts = a.transforms.filter((t) => t.type === type);
    return ts.length > 1 ? 'many' : ts[0];
  };
  const offeredHas = (t: Transform): boolean =>
    mine.transforms.some(
      (m) => m.type === t.type && m.id === t.id && keyLengthOf(m) === keyLengthOf(t) && keyLengthOf(t) !== 'bad',
    );
  if (a.transforms.some((t) => !KNOWN_TYPES.has(t.type) || !offeredHas(t))) return undefined;
  const encrT = one(TransformType.ENCR);
  const prfT = one(TransformType.PRF);
  const integT = one(TransformType.INTEG);
  const keT = one(TransformType.KE);
  const kwaT = one(TransformType.KWA);
  if (!encrT || encrT === 'many' || !prfT || prfT === 'many' || !keT || keT === 'many') return undefined;
  if (integT === 'many' || kwaT === 'many') return undefined;
  const kl = keyLengthOf(encrT);
  if (kl === 'bad') return undefined;
  const aead = isAeadEncr(encrT.id);
  if (!aead && (!integT || integT.id === IntegId.NONE)) return undefined;
  if (aead && integT && integT.id !== IntegId.NONE) return undefined;
  return {
    spi: a.spi,
    transforms: {
      encr: kl === undefined ? { id: encrT.id } : { id: encrT.id, keyLength: kl },
      prf: prfT.id,
      integ: aead ? IntegId.NONE : integT!.id,
      ke: keT.id,
      ...(kwaT ? { kwa: kwaT.id } : {}),
    },
  };
}

/** `AES_GCM_16-256/HMAC_SHA2_256/CURVE25519` style text for events and logs. */
export function describeTransforms(t: NegotiatedIkeTransforms): string {
  const encr = nameOf(EncrId, t.encr.id, 'ENCR') + (t.encr.keyLength ? `_${t.encr.keyLength}` : '');
  const parts = [encr];
  if (t.integ !== IntegId.NONE) parts.push(nameOf(IntegId, t.integ, 'INTEG'));
  parts.push(`PRF_${nameOf(PrfId, t.prf, 'PRF')}`, nameOf(KeId, t.ke, 'KE'));
  if (t.kwa !== undefined) parts.push(nameOf(KwaId, t.kwa, 'KWA'));
  return parts.join('/');
}
