/**
 * Hand-built, deterministic G-IKEv2 messages shaped like a real registration
 * (RFC 9838 Section 2.3): IKE_SA_INIT request/response, then GSA_AUTH
 * request/response whose SK payloads carry opaque "ciphertext". The inner
 * payload chains (what SK would decrypt to) are given separately. Used by
 * scripts/make-samples.ts, the CLI and tshark tests and as fuzz seeds.
 */
import { createHash } from 'node:crypto';
import { tlv, tv } from '../../src/wire/attributes.ts';
import type { IkeHeaderFields } from '../../src/wire/header.ts';
import {
  AuthMethod,
  EncrId,
  ExchangeType,
  GcauthId,
  HashAlgorithm,
  IdType,
  KeId,
  KwaId,
  NotifyType,
  PayloadType,
  PrfId,
  ProtocolId,
  SnId,
  TransformAttr,
  TransformType,
  TsType,
} from '../../src/wire/iana.ts';
import {
  activationTimeDelayAttribute,
  initialMessageIdAttribute,
  keyLifetimeAttribute,
  senderIdBitsAttribute,
  type GsaPayload,
} from '../../src/wire/gsa.ts';
import { authKeyAttribute, senderIdAttribute, type KdPayload } from '../../src/wire/kd.ts';
import { encodeMessage, type IkeMessageInput } from '../../src/wire/message.ts';
import { encodePayloadChain, type Payload } from '../../src/wire/payload.ts';
import type { NotifyPayload, NotifyData } from '../../src/wire/payloads/notify.ts';
import type { SaPayload } from '../../src/wire/payloads/sa.ts';
import type { TrafficSelector } from '../../src/wire/traffic-selector.ts';
import { saKeyAttribute, wrapKeyAttribute } from '../../src/wire/wrapped-key.ts';

/** Deterministic filler octets: SHA-256 in counter mode over a label. */
export function octets(label: string, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0, block = 0; i < n; block++) {
    const h = createHash('sha256').update(`${label}/${block}`).digest();
    i += h.copy(out, i);
  }
  return out;
}

export const GM = '192.0.2.10';
export const GCKS = '192.0.2.1';
export const GROUP_ADDRESS = '239.1.1.1';
export const SPI_I = Buffer.from('5a3c1e0f2b4d6a78', 'hex');
export const SPI_R = Buffer.from('c0ffee0123456789', 'hex');

function notify(notifyType: number, data: NotifyData, protocolId = 0): NotifyPayload {
  return { type: PayloadType.NOTIFY, critical: false, protocolId, spi: Buffer.alloc(0), notifyType, data };
}

function header(exchangeType: number, messageId: number, response: boolean): IkeHeaderFields {
  return {
    spiI: SPI_I,
    spiR: exchangeType === ExchangeType.IKE_SA_INIT && !response ? Buffer.alloc(8) : SPI_R,
    majorVersion: 2,
    minorVersion: 0,
    exchangeType,
    flags: { initiator: !response, version: false, response },
    messageId,
  };
}

const ikeProposal: SaPayload = {
  type: PayloadType.SA,
  critical: false,
  proposals: [
    {
      num: 1,
      protocolId: ProtocolId.IKE,
      spi: Buffer.alloc(0),
      transforms: [
        { type: TransformType.ENCR, id: EncrId.AES_GCM_16, attributes: [tv(TransformAttr.KEY_LENGTH, 256)] },
        { type: TransformType.PRF, id: PrfId.HMAC_SHA2_256, attributes: [] },
        { type: TransformType.KE, id: KeId.CURVE25519, attributes: [] },
        { type: TransformType.KWA, id: KwaId.KW_5649_256, attributes: [] },
      ],
    },
  ],
};

function saInit(response: boolean): IkeMessageInput {
  const who = response ? 'r' : 'i';
  return {
    header: header(ExchangeType.IKE_SA_INIT, 0, response),
    payloads: [
      ikeProposal,
      { type: PayloadType.KE, critical: false, group: KeId.CURVE25519, data: octets(`ke-${who}`, 32) },
      { type: PayloadType.NONCE, critical: false, nonce: octets(`nonce-${who}`, 32) },
      notify(NotifyType.NAT_DETECTION_SOURCE_IP, { kind: 'nat-hash', hash: octets(`natd-src-${who}`, 20) }),
      notify(NotifyType.NAT_DETECTION_DESTINATION_IP, { kind: 'nat-hash', hash: octets(`natd-dst-${who}`, 20) }),
      notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, {
        kind: 'hash-algorithms',
        algorithms: [HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512],
      }),
      notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED, { kind: 'empty' }),
    ],
  };
}

export const ikeSaInitRequest = (): IkeMessageInput => saInit(false);
export const ikeSaInitResponse = (): IkeMessageInput => saInit(true);

const idg: Payload = { type: PayloadType.IDg, critical: false, idType: IdType.ID_KEY_ID, data: Buffer.from('group-1001') };

/** What the GM's GSA_AUTH request encrypts: IDi, AUTH, IDg, SAg, N(GROUP_SENDER). */
export function gsaAuthRequestInner(): Payload[] {
  return [
    { type: PayloadType.IDi, critical: false, idType: IdType.ID_FQDN, data: Buffer.from('gm1.example.net') },
    { type: PayloadType.AUTH, critical: false, method: AuthMethod.SHARED_KEY_MIC, data: octets('auth-i', 32) },
    idg,
    {
      type: PayloadType.SA,
      critical: false,
      proposals: [
        {
          num: 1,
          protocolId: ProtocolId.ESP,
          spi: Buffer.alloc(0),
          transforms: [
            { type: TransformType.ENCR, id: EncrId.AES_GCM_16, attributes: [tv(TransformAttr.KEY_LENGTH, 256)] },
            { type: TransformType.ENCR, id: EncrId.AES_CBC, attributes: [tv(TransformAttr.KEY_LENGTH, 128)] },
            { type: TransformType.INTEG, id: 12, attributes: [] },
            { type: TransformType.SN, id: SnId.SEQ32, attributes: [] },
          ],
        },
      ],
    },
    notify(NotifyType.GROUP_SENDER, { kind: 'sender-id-count', count: 1 }),
  ];
}

const KEK_SPI = octets('kek-spi', 16);
const TEK_SPI = octets('tek-spi', 4);

function ts(address: string, ipProtocol: number, port: number, endAddress = address, endPort = port): TrafficSelector {
  return {
    type: TsType.TS_IPV4_ADDR_RANGE,
    ipProtocol,
    startPort: port,
    endPort,
    startAddress: address,
    endAddress,
  };
}

export function gsaPayload(): GsaPayload {
  return {
    type: PayloadType.GSA,
    critical: false,
    policies: [
      {
        kind: 'sa',
        protocol: ProtocolId.GIKE_UPDATE,
        spi: KEK_SPI,
        source: ts(GCKS, 17, 848),
        destination: ts(GROUP_ADDRESS, 17, 848),
        transforms: [
          { type: TransformType.ENCR, id: EncrId.AES_GCM_16, attributes: [tv(TransformAttr.KEY_LENGTH, 256)] },
          { type: TransformType.PRF, id: PrfId.HMAC_SHA2_256, attributes: [] },
          { type: TransformType.KWA, id: KwaId.KW_5649_256, attributes: [] },
          {
            type: TransformType.GCAUTH,
            id: GcauthId.DIGITAL_SIGNATURE,
            attributes: [tlv(TransformAttr.SIGNATURE_ALGORITHM_IDENTIFIER, Buffer.from('300a06082a8648ce3d040302', 'hex'))],
          },
        ],
        attributes: [keyLifetimeAttribute(86400), initialMessageIdAttribute(1)],
      },
      {
        kind: 'sa',
        protocol: ProtocolId.ESP,
        spi: TEK_SPI,
        source: ts('0.0.0.0', 0, 0, '255.255.255.255', 0xffff),
        destination: ts(GROUP_ADDRESS, 0, 0),
        transforms: [
          { type: TransformType.ENCR, id: EncrId.AES_GCM_16, attributes: [tv(TransformAttr.KEY_LENGTH, 256)] },
          { type: TransformType.SN, id: SnId.SEQ32, attributes: [] },
        ],
        attributes: [keyLifetimeAttribute(3600)],
      },
      { kind: 'group-wide', attributes: [activationTimeDelayAttribute(0), senderIdBitsAttribute(8)] },
    ],
  };
}

export function kdPayload(): KdPayload {
  return {
    type: PayloadType.KD,
    critical: false,
    keyBags: [
      {
        kind: 'group',
        protocol: ProtocolId.GIKE_UPDATE,
        spi: KEK_SPI,
        attributes: [saKeyAttribute({ keyId: 0, kwkId: 0, encryptedKey: octets('kek-key', 40) })],
      },
      {
        kind: 'group',
        protocol: ProtocolId.ESP,
        spi: TEK_SPI,
        attributes: [saKeyAttribute({ keyId: 0, kwkId: 0, encryptedKey: octets('tek-key', 48) })],
      },
      {
        kind: 'member',
        attributes: [
          wrapKeyAttribute({ keyId: 7, kwkId: 0, encryptedKey: octets('wrap-key', 40) }),
          authKeyAttribute(octets('spki', 91)),
          senderIdAttribute(Buffer.from([0x01])),
        ],
      },
    ],
  };
}

/** What the GCKS's GSA_AUTH response encrypts: IDr, AUTH, GSA, KD. */
export function gsaAuthResponseInner(): Payload[] {
  return [
    { type: PayloadType.IDr, critical: false, idType: IdType.ID_FQDN, data: Buffer.from('gcks.example.net') },
    { type: PayloadType.AUTH, critical: false, method: AuthMethod.SHARED_KEY_MIC, data: octets('auth-r', 32) },
    gsaPayload(),
    kdPayload(),
  ];
}

/**
 * An SK payload standing in for the encryption of `inner` with AES-GCM-16:
 * 8-octet IV, ciphertext of the padded plaintext, 16-octet ICV (all filler).
 */
function skFor(inner: readonly Payload[], label: string): Payload {
  const plain = encodePayloadChain(inner);
  return {
    type: PayloadType.SK,
    critical: false,
    innerFirst: plain.firstType,
    encrypted: octets(label, 8 + plain.bytes.length + 1 + 16),
  };
}

export function gsaAuthRequest(): IkeMessageInput {
  return { header: header(ExchangeType.GSA_AUTH, 1, false), payloads: [skFor(gsaAuthRequestInner(), 'sk-i')] };
}

export function gsaAuthResponse(): IkeMessageInput {
  return { header: header(ExchangeType.GSA_AUTH, 1, true), payloads: [skFor(gsaAuthResponseInner(), 'sk-r')] };
}

/**
 * GSA_AUTH-shaped message with IDg, SAg, N(GROUP_SENDER) in the clear and an
 * SK payload after them (legal framing, unusual content: for chain walking).
 */
export function gsaAuthWithCleartextPrefix(): IkeMessageInput {
  const inner = gsaAuthRequestInner();
  return {
    header: header(ExchangeType.GSA_AUTH, 1, false),
    payloads: [...inner.slice(2), skFor(inner.slice(0, 2), 'sk-prefix')],
  };
}

/** The response's inner payloads in the clear (never sent like this; exercises GSA/KD dissection). */
export function gsaAuthResponsePlain(): IkeMessageInput {
  return { header: header(ExchangeType.GSA_AUTH, 1, true), payloads: gsaAuthResponseInner() };
}

/** A GSA_REKEY-shaped message: Rekey SA SPI in both SPI fields, SK only. */
export function gsaRekey(): IkeMessageInput {
  const spi = octets('kek-spi', 16);
  const inner: Payload[] = [gsaPayload(), kdPayload(), { type: PayloadType.AUTH, critical: false, method: AuthMethod.DIGITAL_SIGNATURE, data: octets('sig', 80) }];
  return {
    header: {
      spiI: spi.subarray(0, 8),
      spiR: spi.subarray(8),
      majorVersion: 2,
      minorVersion: 0,
      exchangeType: ExchangeType.GSA_REKEY,
      flags: { initiator: true, version: false, response: false },
      messageId: 2,
    },
    payloads: [skFor(inner, 'sk-rekey')],
  };
}

/** The four datagrams of a registration, in order, with their direction. */
export function registrationExchange(): { from: 'gm' | 'gcks'; message: Buffer }[] {
  return [
    { from: 'gm', message: encodeMessage(ikeSaInitRequest()) },
    { from: 'gcks', message: encodeMessage(ikeSaInitResponse()) },
    { from: 'gm', message: encodeMessage(gsaAuthRequest()) },
    { from: 'gcks', message: encodeMessage(gsaAuthResponse()) },
  ];
}
