/**
 * The member's key path at registration (RFC 9838 Sections 2.3.3, 3.3, 3.4):
 * match each GSA policy to its group key bag by (protocol, SPI), unwrap its
 * SA_KEY with the registration IKE SA's GSK_w, split the keying material,
 * and read the member key bag (AUTH_KEY, GM_SENDER_ID).
 *
 * Key IDs other than 0 (WRAP_KEY, LKH) go through `KeyWrapKeys`: at
 * registration it only holds GSK_w under KWK ID 0; a key tree adds its keys
 * there later without changing this code.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { splitRekeySaKeys, type RekeySaKeys } from '../crypto/keys.ts';
import { KeyUnwrapError, unwrapKey } from '../crypto/keywrap.ts';
import { keyFitsAlgorithm, parseAlgorithmIdentifier, signatureAlgorithmName, type SignatureAlgorithm } from '../crypto/signature.ts';
import type { Attribute } from '../wire/attributes.ts';
import {
  activationTimeDelay,
  deactivationTimeDelay,
  initialMessageId,
  isKekPolicy,
  isTekPolicy,
  keyLifetimeSeconds,
  senderIdBits,
  type GsaPayload,
  type SaPolicy,
} from '../wire/gsa.ts';
import { GcauthId, IntegId, nameOf, NotifyType, PayloadType, ProtocolId, TransformAttr, TransformType } from '../wire/iana.ts';
import { authKeyOf, senderIdsOf, type KdPayload } from '../wire/kd.ts';
import type { Payload } from '../wire/payload.ts';
import type { TrafficSelector } from '../wire/traffic-selector.ts';
import { validateExchange, isGsaPayload, isKdPayload } from '../wire/validator.ts';
import { saKeysOf, type WrappedKey } from '../wire/wrapped-key.ts';
import type { DataSecurityMode } from '../gcks/config.ts';
import { rekeySaAlgorithms, splitDataSecurityKeymat, type DataSecurityKeys } from '../gcks/keymat.ts';
import { encrOfTransform, type EncrAlgorithm } from '../gcks/transform-names.ts';

export class KeyDownloadError extends Error {
  override readonly name = 'KeyDownloadError';
}

/** Keys that may have wrapped other keys, by KWK ID (0 = GSK_w of the SA the message came over). */
export type KeyWrapKeys = ReadonlyMap<number, { readonly kwa: number; readonly key: Buffer }>;

export interface RekeySaMaterial {
  readonly spi: Buffer;
  readonly source: TrafficSelector;
  readonly destination: TrafficSelector;
  readonly encryption: EncrAlgorithm;
  readonly integrity: number;
  readonly keyWrap: number;
  /** GcauthId. */
  readonly authentication: number;
  readonly keys: RekeySaKeys;
  /** Digital Signature: the key and algorithm GSA_REKEY signatures must verify with. */
  readonly authKey?: { readonly spki: Buffer; readonly publicKey: KeyObject; readonly algorithm: SignatureAlgorithm } | undefined;
  readonly lifetimeSeconds?: number | undefined;
  /** GSA_INITIAL_MESSAGE_ID, 0 when absent (Section 4.4.2.2.2). */
  readonly initialMessageId: number;
}

export interface DataSecuritySaMaterial {
  readonly protocolId: number;
  readonly spi: Buffer;
  readonly source: TrafficSelector;
  readonly destination: TrafficSelector;
  readonly encryption?: EncrAlgorithm | undefined;
  readonly integrity: number;
  readonly sequenceNumbers: number;
  readonly keys: DataSecurityKeys;
  readonly lifetimeSeconds?: number | undefined;
}

/** Everything a registration response gave the member, keys unwrapped. */
export interface GroupKeyMaterial {
  readonly gsa: GsaPayload;
  readonly rekeySa?: RekeySaMaterial | undefined;
  readonly dataSecurity: readonly DataSecuritySaMaterial[];
  readonly mode: DataSecurityMode;
  readonly senderIds: readonly number[];
  readonly senderIdBits?: number | undefined;
  readonly activationDelaySeconds?: number | undefined;
  readonly deactivationDelaySeconds?: number | undefined;
}

export interface RegistrationResponseContext {
  /** GSA_AUTH or GSA_REGISTRATION. */
  readonly exchange: number;
  /** KWA of the registration IKE SA and its GSK_w. */
  readonly unicastKwa: number;
  readonly gskW: Buffer;
  /** The request carried N(GROUP_SENDER) with this count. */
  readonly groupSender?: number | undefined;
}

/** Reads, validates and unwraps a successful registration response. Throws KeyDownloadError. */
export function openRegistrationResponse(payloads: readonly Payload[], ctx: RegistrationResponseContext): GroupKeyMaterial {
  const gsa = payloads.find(isGsaPayload);
  const kd = payloads.find(isKdPayload);
  if (!gsa || !kd) throw new KeyDownloadError('the response carries no GSA and KD');
  const violations = validateExchange(ctx.exchange, payloads, {
    rekeyStyle: gsa.policies.some(isKekPolicy) ? 'multicast' : 'inband',
    groupSender: ctx.groupSender !== undefined,
    keyTree: false,
    senderIdsRequested: ctx.groupSender,
  });
  if (violations[0]) throw new KeyDownloadError(`invalid GSA/KD: ${violations[0].message}`);
  const kwks: KeyWrapKeys = new Map([[0, { kwa: ctx.unicastKwa, key: ctx.gskW }]]);
  const memberBags = kd.keyBags.flatMap((b) => (b.kind === 'member' ? [b] : []));
  const authKeySpki = memberBags.map(authKeyOf).find((k) => k !== undefined);
  const gw = gsa.policies.find((p) => p.kind === 'group-wide');
  const bits = gw && gw.kind === 'group-wide' ? senderIdBits(gw) : undefined;
  const kek = gsa.policies.find(isKekPolicy);
  return {
    gsa,
    rekeySa: kek && openRekeySa(kek, kd, kwks, authKeySpki),
    dataSecurity: gsa.policies.filter(isTekPolicy).map((p) => openDataSecuritySa(p, kd, kwks)),
    mode: payloads.some((p) => p.type === PayloadType.NOTIFY && 'notifyType' in p && p.notifyType === NotifyType.USE_TRANSPORT_MODE) ? 'transport' : 'tunnel',
    senderIds: readSenderIds(memberBags.flatMap(senderIdsOf), bits),
    senderIdBits: bits,
    activationDelaySeconds: gw && gw.kind === 'group-wide' ? activationTimeDelay(gw) : undefined,
    deactivationDelaySeconds: gw && gw.kind === 'group-wide' ? deactivationTimeDelay(gw) : undefined,
  };
}

/** Section 2.5.2: a Sender-ID that does not fit GWP_SENDER_ID_BITS is fatal (re-register). */
function readSenderIds(values: readonly Buffer[], bits: number | undefined): number[] {
  return values.map((v) => {
    if (v.length === 0 || v.length > 4) throw new KeyDownloadError(`GM_SENDER_ID of ${v.length} octets`);
    const id = v.readUIntBE(0, v.length);
    if (bits === undefined || (bits < 32 && id >= 2 ** bits)) {
      throw new KeyDownloadError(`Sender-ID ${id} does not fit GWP_SENDER_ID_BITS ${bits ?? 'absent'}`);
    }
    return id;
  });
}

/** The SA's keying material: the first SA_KEY whose KWK we hold (Section 3.3). */
function unwrapSaKey(p: SaPolicy, kd: KdPayload, kwks: KeyWrapKeys): Buffer {
  const label = `${nameOf(ProtocolId, p.protocol)} SA ${p.spi.toString('hex')}`;
  const bag = kd.keyBags.find((b) => b.kind === 'group' && b.protocol === p.protocol && b.spi.equals(p.spi));
  if (!bag || bag.kind !== 'group') throw new KeyDownloadError(`no key bag for the ${label}`);
  const candidates: WrappedKey[] = saKeysOf(bag).filter((k) => kwks.has(k.kwkId));
  for (const k of candidates) {
    const kwk = kwks.get(k.kwkId)!;
    try {
      return unwrapKey(kwk.kwa, kwk.key, k.encryptedKey);
    } catch (e) {
      if (!(e instanceof KeyUnwrapError)) throw e;
    }
  }
  throw new KeyDownloadError(`cannot unwrap the keys of the ${label}`);
}

function transformId(p: SaPolicy, type: number): number | undefined {
  return p.transforms.find((t) => t.type === type)?.id;
}

function openRekeySa(p: SaPolicy, kd: KdPayload, kwks: KeyWrapKeys, authKeySpki: Buffer | undefined): RekeySaMaterial {
  const encrT = p.transforms.find((t) => t.type === TransformType.ENCR)!;
  const encryption = encrOfTransform(encrT);
  const integrity = transformId(p, TransformType.INTEG) ?? IntegId.NONE;
  const keyWrap = transformId(p, TransformType.KWA)!;
  const gcauth = p.transforms.find((t) => t.type === TransformType.GCAUTH)!;
  const keymat = unwrapSaKey(p, kd, kwks);
  let keys: RekeySaKeys;
  try {
    keys = splitRekeySaKeys(keymat, rekeySaAlgorithms(encryption, integrity, keyWrap));
  } catch (e) {
    throw new KeyDownloadError(`Rekey SA: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    keymat.fill(0);
  }
  return {
    spi: p.spi,
    source: p.source,
    destination: p.destination,
    encryption,
    integrity,
    keyWrap,
    authentication: gcauth.id,
    keys,
    authKey: gcauth.id === GcauthId.DIGITAL_SIGNATURE ? readAuthKey(gcauth.attributes, authKeySpki) : undefined,
    lifetimeSeconds: keyLifetimeSeconds(p),
    initialMessageId: initialMessageId(p) ?? 0,
  };
}

/** Section 4.5.3.2: the AUTH_KEY must be usable with the GCAUTH AlgorithmIdentifier. */
function readAuthKey(attributes: readonly Attribute[], spki: Buffer | undefined): RekeySaMaterial['authKey'] {
  const attr = attributes.find((a) => a.type === TransformAttr.SIGNATURE_ALGORITHM_IDENTIFIER);
  if (!attr || attr.format !== 'TLV' || !spki) throw new KeyDownloadError('Digital Signature rekeys without AlgorithmIdentifier or AUTH_KEY');
  let algorithm: SignatureAlgorithm;
  let publicKey: KeyObject;
  try {
    algorithm = parseAlgorithmIdentifier(attr.value);
    publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (e) {
    throw new KeyDownloadError(`AUTH_KEY / AlgorithmIdentifier: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!keyFitsAlgorithm(algorithm, publicKey)) {
    throw new KeyDownloadError(`AUTH_KEY is a ${publicKey.asymmetricKeyType ?? '?'} key, GCAUTH says ${signatureAlgorithmName(algorithm)}`);
  }
  return { spki, publicKey, algorithm };
}

function openDataSecuritySa(p: SaPolicy, kd: KdPayload, kwks: KeyWrapKeys): DataSecuritySaMaterial {
  const encrT = p.transforms.find((t) => t.type === TransformType.ENCR);
  const encryption = encrT ? encrOfTransform(encrT) : undefined;
  const integrity = transformId(p, TransformType.INTEG) ?? IntegId.NONE;
  const keymat = unwrapSaKey(p, kd, kwks);
  let keys: DataSecurityKeys;
  try {
    keys = splitDataSecurityKeymat(keymat, { encryption, integrity });
  } catch (e) {
    throw new KeyDownloadError(`${nameOf(ProtocolId, p.protocol)} SA ${p.spi.toString('hex')}: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    keymat.fill(0);
  }
  return {
    protocolId: p.protocol,
    spi: p.spi,
    source: p.source,
    destination: p.destination,
    encryption,
    integrity,
    sequenceNumbers: transformId(p, TransformType.SN)!,
    keys,
    lifetimeSeconds: keyLifetimeSeconds(p),
  };
}
