/**
 * fast-check arbitraries for every wire value, shared by the round-trip
 * tests here, the GSA/KD tests and the fuzzers. Every arbitrary produces
 * values the encoders accept, shaped exactly as the decoders return them
 * (same fields, Buffers not Uint8Arrays), so `decode(encode(x))` can be
 * compared with deepStrictEqual.
 */
import fc from 'fast-check';
import type { Attribute } from '../../src/wire/attributes.ts';
import type { IkeHeader, IkeHeaderFields } from '../../src/wire/header.ts';
import { NotifyType, PayloadType, ProtocolId, TsType } from '../../src/wire/iana.ts';
import type { IkeMessageInput } from '../../src/wire/message.ts';
import { isKnownPayloadType, type Payload } from '../../src/wire/payload.ts';
import type { AuthPayload } from '../../src/wire/payloads/auth.ts';
import type { CertPayload } from '../../src/wire/payloads/cert.ts';
import type { CertReqPayload } from '../../src/wire/payloads/certreq.ts';
import { deleteSpiSizes, type DeletePayload } from '../../src/wire/payloads/delete.ts';
import type { IdPayload } from '../../src/wire/payloads/id.ts';
import type { KePayload } from '../../src/wire/payloads/ke.ts';
import type { NoncePayload } from '../../src/wire/payloads/nonce.ts';
import { notifyDataKind, type NotifyData, type NotifyPayload } from '../../src/wire/payloads/notify.ts';
import type { Proposal, SaPayload } from '../../src/wire/payloads/sa.ts';
import type { SkPayload } from '../../src/wire/payloads/sk.ts';
import type { SkfPayload } from '../../src/wire/payloads/skf.ts';
import type { TsPayload } from '../../src/wire/payloads/ts.ts';
import type { UnknownPayload } from '../../src/wire/payloads/unknown.ts';
import type { VendorIdPayload } from '../../src/wire/payloads/vendor-id.ts';
import { bytesToAddress, formatIPv6, type TrafficSelector } from '../../src/wire/traffic-selector.ts';
import type { Transform } from '../../src/wire/transform.ts';

/**
 * fc.record with ordinary objects: decoders build plain objects, and
 * deepStrictEqual compares prototypes.
 */
export function record<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model, { noNullPrototype: true });
}

export const arbU8 = fc.integer({ min: 0, max: 0xff });
export const arbU16 = fc.integer({ min: 0, max: 0xffff });
export const arbU32 = fc.integer({ min: 0, max: 0xffffffff });

/** Octets as a Buffer (decoders return Buffers). */
export function arbBytes(minLength = 0, maxLength = 32): fc.Arbitrary<Buffer> {
  return fc.uint8Array({ minLength, maxLength }).map((u) => Buffer.from(u));
}

// ---------- header ----------

export const arbHeaderFlags = record({ initiator: fc.boolean(), version: fc.boolean(), response: fc.boolean() });

/** Header fields a sender sets (major version 2, any minor version, any exchange type). */
export const arbHeaderFields: fc.Arbitrary<IkeHeaderFields> = record({
  spiI: arbBytes(8, 8),
  spiR: arbBytes(8, 8),
  majorVersion: fc.constant(2),
  minorVersion: fc.integer({ min: 0, max: 15 }),
  exchangeType: arbU8,
  flags: arbHeaderFlags,
  messageId: arbU32,
});

/** A full header; `length` in [28, maxLength] for header-only round trips. */
export function arbHeader(maxLength = 512): fc.Arbitrary<IkeHeader> {
  return fc
    .tuple(arbHeaderFields, arbU8, fc.integer({ min: 28, max: maxLength }))
    .map(([f, nextPayload, length]) => ({ ...f, nextPayload, length }));
}

// ---------- substructures ----------

export const arbAttribute: fc.Arbitrary<Attribute> = fc.oneof(
  record({ type: fc.integer({ min: 0, max: 0x7fff }), format: fc.constant('TV' as const), value: arbU16 }),
  record({ type: fc.integer({ min: 0, max: 0x7fff }), format: fc.constant('TLV' as const), value: arbBytes(0, 24) }),
);

export const arbTransform: fc.Arbitrary<Transform> = record({
  type: fc.oneof(fc.integer({ min: 1, max: 14 }), arbU8),
  id: arbU16,
  attributes: fc.array(arbAttribute, { maxLength: 3 }),
});

export const arbProposal: fc.Arbitrary<Proposal> = record({
  num: arbU8,
  protocolId: fc.oneof(fc.constantFrom(ProtocolId.IKE, ProtocolId.AH, ProtocolId.ESP), arbU8),
  spi: fc.oneof(fc.constantFrom(0, 4, 8).chain((n) => arbBytes(n, n)), arbBytes(0, 16)),
  transforms: fc.array(arbTransform, { maxLength: 6 }),
});

export const arbIpv4Selector: fc.Arbitrary<TrafficSelector> = record({
  type: fc.constant(TsType.TS_IPV4_ADDR_RANGE),
  ipProtocol: arbU8,
  startPort: arbU16,
  endPort: arbU16,
  startAddress: fc.uint8Array({ minLength: 4, maxLength: 4 }).map(bytesToAddress),
  endAddress: fc.uint8Array({ minLength: 4, maxLength: 4 }).map(bytesToAddress),
});

/** IPv6 addresses in RFC 5952 form, with zero runs likely so '::' compression is exercised. */
const arbIpv6Address = fc
  .array(fc.oneof(fc.constant(0), arbU16), { minLength: 8, maxLength: 8 })
  .map((groups) => {
    const b = Buffer.alloc(16);
    groups.forEach((g, i) => b.writeUInt16BE(g, i * 2));
    return formatIPv6(b);
  });

export const arbIpv6Selector: fc.Arbitrary<TrafficSelector> = record({
  type: fc.constant(TsType.TS_IPV6_ADDR_RANGE),
  ipProtocol: arbU8,
  startPort: arbU16,
  endPort: arbU16,
  startAddress: arbIpv6Address,
  endAddress: arbIpv6Address,
});

/** A TS type this implementation does not interpret, kept as its raw substructure. */
export const arbOpaqueSelector: fc.Arbitrary<TrafficSelector> = fc
  .tuple(
    arbU8.filter((t) => t !== TsType.TS_IPV4_ADDR_RANGE && t !== TsType.TS_IPV6_ADDR_RANGE),
    arbU8,
    arbBytes(0, 24),
  )
  .map(([type, proto, rest]) => {
    const raw = Buffer.concat([Buffer.of(type, proto, 0, 0), rest]);
    raw.writeUInt16BE(raw.length, 2);
    return { type, raw };
  });

export const arbTrafficSelector: fc.Arbitrary<TrafficSelector> = fc.oneof(
  { weight: 3, arbitrary: arbIpv4Selector },
  { weight: 3, arbitrary: arbIpv6Selector },
  { weight: 1, arbitrary: arbOpaqueSelector },
);

// ---------- payloads ----------

export const arbSaPayload: fc.Arbitrary<SaPayload> = record({
  type: fc.constant(PayloadType.SA),
  critical: fc.boolean(),
  proposals: fc.array(arbProposal, { minLength: 1, maxLength: 4 }),
});

export const arbKePayload: fc.Arbitrary<KePayload> = record({
  type: fc.constant(PayloadType.KE),
  critical: fc.boolean(),
  group: arbU16,
  data: arbBytes(0, 64),
});

export const arbIdPayload: fc.Arbitrary<IdPayload> = record({
  type: fc.constantFrom(PayloadType.IDi, PayloadType.IDr, PayloadType.IDg),
  critical: fc.boolean(),
  idType: arbU8,
  data: arbBytes(0, 40),
});

export const arbCertPayload: fc.Arbitrary<CertPayload> = record({
  type: fc.constant(PayloadType.CERT),
  critical: fc.boolean(),
  encoding: arbU8,
  data: arbBytes(0, 64),
});

export const arbCertReqPayload: fc.Arbitrary<CertReqPayload> = record({
  type: fc.constant(PayloadType.CERTREQ),
  critical: fc.boolean(),
  encoding: arbU8,
  authority: arbBytes(0, 60),
});

export const arbAuthPayload: fc.Arbitrary<AuthPayload> = record({
  type: fc.constant(PayloadType.AUTH),
  critical: fc.boolean(),
  method: arbU8,
  data: arbBytes(0, 64),
});

export const arbNoncePayload: fc.Arbitrary<NoncePayload> = record({
  type: fc.constant(PayloadType.NONCE),
  critical: fc.boolean(),
  nonce: arbBytes(16, 256),
});

/** Data of the shape `notifyType` carries. */
export function arbNotifyData(notifyType: number): fc.Arbitrary<NotifyData> {
  switch (notifyDataKind(notifyType)) {
    case 'empty':
      return fc.constant({ kind: 'empty' as const });
    case 'sender-id-count':
      return arbU32.map((count) => ({ kind: 'sender-id-count' as const, count }));
    case 'cookie':
      return arbBytes(1, 64).map((cookie) => ({ kind: 'cookie' as const, cookie }));
    case 'nat-hash':
      return arbBytes(20, 20).map((hash) => ({ kind: 'nat-hash' as const, hash }));
    case 'hash-algorithms':
      return fc.array(arbU16, { maxLength: 6 }).map((algorithms) => ({ kind: 'hash-algorithms' as const, algorithms }));
    case 'ke-method':
      return arbU16.map((group) => ({ kind: 'ke-method' as const, group }));
    case 'payload-type':
      return arbU8.map((payloadType) => ({ kind: 'payload-type' as const, payloadType }));
    case 'raw':
      return arbBytes(0, 32).map((data) => ({ kind: 'raw' as const, data }));
  }
}

/** Notify types with typed data, weighted up so every shape is exercised. */
const typedNotifyTypes = fc.constantFrom(
  NotifyType.GROUP_SENDER,
  NotifyType.COOKIE,
  NotifyType.NAT_DETECTION_SOURCE_IP,
  NotifyType.NAT_DETECTION_DESTINATION_IP,
  NotifyType.SIGNATURE_HASH_ALGORITHMS,
  NotifyType.INVALID_KE_PAYLOAD,
  NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
  NotifyType.IKEV2_FRAGMENTATION_SUPPORTED,
  NotifyType.INVALID_GROUP_ID,
  NotifyType.AUTHORIZATION_FAILED,
  NotifyType.REGISTRATION_FAILED,
  NotifyType.NO_PROPOSAL_CHOSEN,
  NotifyType.AUTHENTICATION_FAILED,
  NotifyType.INITIAL_CONTACT,
);

export const arbNotifyPayload: fc.Arbitrary<NotifyPayload> = fc
  .tuple(fc.oneof(typedNotifyTypes, arbU16), fc.boolean(), arbU8, fc.oneof(arbBytes(0, 0), arbBytes(4, 4), arbBytes(0, 16)))
  .chain(([notifyType, critical, protocolId, spi]) =>
    arbNotifyData(notifyType).map(
      (data): NotifyPayload => ({ type: PayloadType.NOTIFY, critical, protocolId, spi, notifyType, data }),
    ),
  );

export const arbDeletePayload: fc.Arbitrary<DeletePayload> = fc
  .tuple(
    fc.oneof(fc.constantFrom(ProtocolId.NONE, ProtocolId.IKE, ProtocolId.AH, ProtocolId.ESP, ProtocolId.GIKE_UPDATE), arbU8),
    fc.boolean(),
    fc.integer({ min: 0, max: 16 }),
  )
  .chain(([protocolId, critical, anySize]) => {
    const allowed = deleteSpiSizes(protocolId);
    const spiSize = allowed ? allowed[anySize % allowed.length]! : anySize;
    return fc
      .array(arbBytes(spiSize, spiSize), { maxLength: spiSize === 0 ? 0 : 6 })
      .map((spis): DeletePayload => ({ type: PayloadType.DELETE, critical, protocolId, spiSize, spis }));
  });

export const arbVendorIdPayload: fc.Arbitrary<VendorIdPayload> = record({
  type: fc.constant(PayloadType.VENDOR_ID),
  critical: fc.boolean(),
  vendorId: arbBytes(0, 32),
});

export const arbTsPayload: fc.Arbitrary<TsPayload> = record({
  type: fc.constantFrom(PayloadType.TSi, PayloadType.TSr),
  critical: fc.boolean(),
  selectors: fc.array(arbTrafficSelector, { maxLength: 5 }),
});

export const arbSkPayload: fc.Arbitrary<SkPayload> = record({
  type: fc.constant(PayloadType.SK),
  critical: fc.boolean(),
  innerFirst: fc.oneof(fc.constantFrom(0, PayloadType.IDi, PayloadType.GSA, PayloadType.DELETE), arbU8),
  encrypted: arbBytes(0, 96),
});

export const arbSkfPayload: fc.Arbitrary<SkfPayload> = fc
  .tuple(fc.integer({ min: 1, max: 0xffff }), fc.boolean(), arbU8, arbBytes(0, 96), fc.nat())
  .map(([totalFragments, critical, innerFirst, encrypted, pick]) => ({
    type: PayloadType.SKF,
    critical,
    innerFirst,
    fragmentNumber: (pick % totalFragments) + 1,
    totalFragments,
    encrypted,
  }));

export const arbUnknownPayloadType = fc.integer({ min: 1, max: 0xff }).filter((t) => !isKnownPayloadType(t));

export const arbUnknownPayload: fc.Arbitrary<UnknownPayload> = record({
  type: arbUnknownPayloadType,
  critical: fc.constant(false as const),
  unknown: fc.constant(true as const),
  body: arbBytes(0, 32),
});

/** Every payload that is not an encrypted container. Pass GSA/KD arbitraries in `extra`. */
export function arbCleartextPayload(extra: readonly fc.Arbitrary<Payload>[] = []): fc.Arbitrary<Payload> {
  return fc.oneof<fc.Arbitrary<Payload>[]>(
    arbSaPayload,
    arbKePayload,
    arbIdPayload,
    arbCertPayload,
    arbCertReqPayload,
    arbAuthPayload,
    arbNoncePayload,
    arbNotifyPayload,
    arbDeletePayload,
    arbVendorIdPayload,
    arbTsPayload,
    arbUnknownPayload,
    ...extra,
  );
}

export const arbContainerPayload: fc.Arbitrary<SkPayload | SkfPayload> = fc.oneof(arbSkPayload, arbSkfPayload);

/** A payload chain: cleartext payloads, optionally ending in SK or SKF. */
export function arbPayloadChain(
  options: { extra?: readonly fc.Arbitrary<Payload>[]; maxLength?: number } = {},
): fc.Arbitrary<Payload[]> {
  return fc
    .tuple(
      fc.array(arbCleartextPayload(options.extra), { maxLength: options.maxLength ?? 6 }),
      fc.option(arbContainerPayload, { nil: undefined }),
    )
    .map(([clear, container]) => (container ? [...clear, container] : clear));
}

export function arbMessage(options: { extra?: readonly fc.Arbitrary<Payload>[] } = {}): fc.Arbitrary<IkeMessageInput> {
  return record({ header: arbHeaderFields, payloads: arbPayloadChain(options) });
}
