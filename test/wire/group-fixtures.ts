/**
 * Builders for valid G-IKEv2 GSA / KD payloads, for validator tests: start
 * from `validMessage(ctx)` (which satisfies every rule for that context)
 * and break one thing.
 */
import { tlv, tv, type Attribute } from '../../src/wire/attributes.ts';
import {
  activationTimeDelayAttribute,
  keyLifetimeAttribute,
  senderIdBitsAttribute,
  type GroupPolicy,
  type GroupWidePolicy,
  type GsaPayload,
  type SaPolicy,
} from '../../src/wire/gsa.ts';
import {
  EncrId,
  ExchangeType,
  GcauthId,
  GroupKeyBagAttr,
  IntegId,
  KwaId,
  MemberKeyBagAttr,
  PayloadType,
  ProtocolId,
  SnId,
  TransformAttr,
  TransformType,
  TsType,
} from '../../src/wire/iana.ts';
import { authKeyAttribute, senderIdAttribute, type GroupKeyBag, type KdPayload, type KeyBag, type MemberKeyBag } from '../../src/wire/kd.ts';
import type { TrafficSelector } from '../../src/wire/traffic-selector.ts';
import type { Transform } from '../../src/wire/transform.ts';
import type { ValidationContext } from '../../src/wire/validator.ts';
import { encodeWrappedKey } from '../../src/wire/wrapped-key.ts';

export const KEK_SPI = Buffer.from('0102030405060708a1a2a3a4a5a6a7a8', 'hex');
export const ESP_SPI = Buffer.from('11223344', 'hex');
export const AH_SPI = Buffer.from('55667788', 'hex');
/** DER AlgorithmIdentifier for Ed25519, and an Ed25519 SubjectPublicKeyInfo. */
export const ED25519_ALG_ID = Buffer.from('300506032b6570', 'hex');
export const ED25519_SPKI = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.alloc(32, 0xc1)]);

export function transform(type: number, id: number, attributes: Attribute[] = []): Transform {
  return { type, id, attributes };
}
export const AES_GCM_256 = transform(TransformType.ENCR, EncrId.AES_GCM_16, [tv(TransformAttr.KEY_LENGTH, 256)]);
export const AES_CBC_256 = transform(TransformType.ENCR, EncrId.AES_CBC, [tv(TransformAttr.KEY_LENGTH, 256)]);
export const HMAC_SHA256 = transform(TransformType.INTEG, IntegId.HMAC_SHA2_256_128);
export const INTEG_NONE = transform(TransformType.INTEG, IntegId.NONE);
export const KWA_256 = transform(TransformType.KWA, KwaId.KW_5649_256);
export const GCAUTH_SIGNATURE = transform(TransformType.GCAUTH, GcauthId.DIGITAL_SIGNATURE, [
  tlv(TransformAttr.SIGNATURE_ALGORITHM_IDENTIFIER, ED25519_ALG_ID),
]);
export const GCAUTH_IMPLICIT = transform(TransformType.GCAUTH, GcauthId.IMPLICIT);
export const SN_UNSPECIFIED = transform(TransformType.SN, SnId.UNSPECIFIED32);

export function ipv4(start: string, end = start, ipProtocol = 0, startPort = 0, endPort = 0xffff): TrafficSelector {
  return { type: TsType.TS_IPV4_ADDR_RANGE, ipProtocol, startPort, endPort, startAddress: start, endAddress: end };
}
export const REKEY_SOURCE = ipv4('192.0.2.1', '192.0.2.1', 17, 848, 848);
export const REKEY_DESTINATION = ipv4('239.192.0.1', '239.192.0.1', 17, 848, 848);
export const ANY = ipv4('0.0.0.0', '255.255.255.255');

export function kekPolicy(over: Partial<SaPolicy> = {}): SaPolicy {
  return {
    kind: 'sa',
    protocol: ProtocolId.GIKE_UPDATE,
    spi: KEK_SPI,
    source: REKEY_SOURCE,
    destination: REKEY_DESTINATION,
    transforms: [AES_GCM_256, KWA_256, GCAUTH_SIGNATURE],
    attributes: [keyLifetimeAttribute(86400)],
    ...over,
  };
}
export function espPolicy(over: Partial<SaPolicy> = {}): SaPolicy {
  return {
    kind: 'sa',
    protocol: ProtocolId.ESP,
    spi: ESP_SPI,
    source: ANY,
    destination: ipv4('239.192.0.2'),
    transforms: [AES_GCM_256, SN_UNSPECIFIED],
    attributes: [keyLifetimeAttribute(3600)],
    ...over,
  };
}
export function ahPolicy(over: Partial<SaPolicy> = {}): SaPolicy {
  return {
    kind: 'sa',
    protocol: ProtocolId.AH,
    spi: AH_SPI,
    source: ANY,
    destination: ipv4('239.192.0.3'),
    transforms: [HMAC_SHA256, SN_UNSPECIFIED],
    attributes: [keyLifetimeAttribute(3600)],
    ...over,
  };
}
export function gwPolicy(attributes: Attribute[] = [activationTimeDelayAttribute(10)]): GroupWidePolicy {
  return { kind: 'group-wide', attributes };
}
export function gsa(...policies: GroupPolicy[]): GsaPayload {
  return { type: PayloadType.GSA, critical: false, policies };
}

/** SA_KEY / WRAP_KEY built raw, so that tests can also break their Key ID rules. */
export function saKey(kwkId = 0, keyId = 0): Attribute {
  return tlv(GroupKeyBagAttr.SA_KEY, encodeWrappedKey({ keyId, kwkId, encryptedKey: Buffer.alloc(40, 0xe0 + (kwkId & 0xf)) }));
}
export function wrapKey(keyId: number, kwkId = 0): Attribute {
  return tlv(MemberKeyBagAttr.WRAP_KEY, encodeWrappedKey({ keyId, kwkId, encryptedKey: Buffer.alloc(40, keyId & 0xff) }));
}
export function groupBag(protocol: number, spi: Buffer, attributes: Attribute[] = [saKey()]): GroupKeyBag {
  return { kind: 'group', protocol, spi, attributes };
}
export function memberBag(attributes: Attribute[]): MemberKeyBag {
  return { kind: 'member', attributes };
}
export function kd(...keyBags: KeyBag[]): KdPayload {
  return { type: PayloadType.KD, critical: false, keyBags };
}

export const REGISTRATION: ValidationContext = {
  exchange: ExchangeType.GSA_AUTH,
  rekeyStyle: 'multicast',
  groupSender: false,
  counterMode: true,
  gcauth: GcauthId.DIGITAL_SIGNATURE,
  keyTree: false,
};

/** A GSA and KD that satisfy every rule for `ctx`. */
export function validMessage(ctx: ValidationContext): { gsa: GsaPayload; kd: KdPayload } {
  const registration = ctx.exchange === ExchangeType.GSA_AUTH || ctx.exchange === ExchangeType.GSA_REGISTRATION;
  const multicast =
    ctx.exchange === ExchangeType.GSA_REKEY || (registration && ctx.rekeyStyle === 'multicast');
  const signatures = ctx.gcauth === GcauthId.DIGITAL_SIGNATURE;
  const sender = registration && ctx.groupSender && ctx.counterMode;

  const gcauth = signatures ? GCAUTH_SIGNATURE : GCAUTH_IMPLICIT;
  const kek = kekPolicy({ transforms: registration ? [AES_GCM_256, KWA_256, gcauth] : [AES_GCM_256, KWA_256] });
  const policies: GroupPolicy[] = multicast ? [kek, espPolicy()] : [espPolicy({ attributes: [] })];
  if (sender) policies.push(gwPolicy([activationTimeDelayAttribute(10), senderIdBitsAttribute(8)]));
  else policies.push(gwPolicy());

  const bags: KeyBag[] = multicast ? [groupBag(ProtocolId.GIKE_UPDATE, KEK_SPI), groupBag(ProtocolId.ESP, ESP_SPI)] : [groupBag(ProtocolId.ESP, ESP_SPI)];
  const member: Attribute[] = [];
  if (multicast && registration && ctx.keyTree) member.push(wrapKey(7));
  if (multicast && registration && signatures) member.push(authKeyAttribute(ED25519_SPKI));
  if (sender) member.push(senderIdAttribute(Buffer.from('00000001', 'hex')));
  if (member.length > 0) bags.push(memberBag(member));
  return { gsa: gsa(...policies), kd: kd(...bags) };
}
