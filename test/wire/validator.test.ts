/**
 * One passing and at least one failing case per validator rule. Passing
 * cases start from `validMessage(ctx)` and must be entirely clean; failing
 * cases break one thing and must report the named rule.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { tlv, tv } from '../../src/wire/attributes.ts';
import { decodeGsaBody, initialMessageIdAttribute, keyLifetimeAttribute, nextSpiAttribute, type GroupPolicy, type GsaPayload, type SaPolicy } from '../../src/wire/gsa.ts';
import { ValidationError } from '../../src/wire/errors.ts';
import { EncrId, ExchangeType, GcauthId, GsaAttr, GwpAttr, KwaId, MemberKeyBagAttr, PayloadType, ProtocolId, SnId, TransformAttr, TransformType, TsType } from '../../src/wire/iana.ts';
import type { TrafficSelector } from '../../src/wire/traffic-selector.ts';
import { authKeyAttribute, decodeKdBody, senderIdAttribute, type KdPayload, type KeyBag } from '../../src/wire/kd.ts';
import { Reader } from '../../src/wire/reader.ts';
import { assertValid, validateExchange, validateGsa, validateKd, type ValidationContext } from '../../src/wire/validator.ts';
import { arbGsaPayload, arbKdPayload } from './arbitraries-group.ts';
import {
  AES_CBC_256,
  AES_GCM_256,
  ahPolicy,
  ANY,
  ED25519_SPKI,
  ESP_SPI,
  espPolicy,
  GCAUTH_IMPLICIT,
  GCAUTH_SIGNATURE,
  groupBag,
  gsa,
  gwPolicy,
  HMAC_SHA256,
  INTEG_NONE,
  ipv4,
  kd,
  KEK_SPI,
  kekPolicy,
  KWA_256,
  memberBag,
  REGISTRATION,
  saKey,
  SN_UNSPECIFIED,
  transform,
  validMessage,
  wrapKey,
} from './group-fixtures.ts';
import { GSA_KAT, KD_KAT } from './group-vectors.ts';

const rulesOf = (v: readonly ValidationError[]): string[] => v.map((e) => e.rule);
function fails(v: readonly ValidationError[], rule: string): void {
  assert.ok(rulesOf(v).includes(rule), `expected "${rule}", got ${JSON.stringify(rulesOf(v), null, 1)}`);
}
function clean(v: readonly ValidationError[]): void {
  assert.deepEqual(rulesOf(v), []);
}
function context(over: Partial<ValidationContext> = {}): ValidationContext {
  return { ...REGISTRATION, ...over };
}
const REKEY = context({ exchange: ExchangeType.GSA_REKEY });
const INBAND_REG = context({ exchange: ExchangeType.GSA_REGISTRATION, rekeyStyle: 'inband' });
const INBAND_REKEY = context({ exchange: ExchangeType.GSA_INBAND_REKEY, rekeyStyle: 'inband' });
const SENDER = context({ groupSender: true, counterMode: true });

/** The valid GSA for `ctx` with policy `index` replaced (or appended). */
function gsaWith(ctx: ValidationContext, index: number, policy: GroupPolicy): GsaPayload {
  const policies = [...validMessage(ctx).gsa.policies];
  policies[index] = policy;
  return gsa(...policies);
}
function kekGsa(ctx: ValidationContext, over: Partial<SaPolicy>): GsaPayload {
  const base = validMessage(ctx).gsa.policies[0] as SaPolicy;
  return gsaWith(ctx, 0, { ...base, ...over });
}
function espGsa(ctx: ValidationContext, over: Partial<SaPolicy>): GsaPayload {
  const policies = validMessage(ctx).gsa.policies;
  const i = policies.findIndex((p) => p.kind === 'sa' && p.protocol === ProtocolId.ESP);
  return gsaWith(ctx, i, { ...(policies[i] as SaPolicy), ...over });
}
/** The valid KD for `ctx` with its member key bag (added if absent) replaced. */
function kdWithMember(ctx: ValidationContext, attributes: KeyBag['attributes']): KdPayload {
  const bags = validMessage(ctx).kd.keyBags.filter((b) => b.kind === 'group');
  return kd(...bags, memberBag([...attributes]));
}
function kdWithBag(ctx: ValidationContext, index: number, bag: KeyBag): KdPayload {
  const bags = [...validMessage(ctx).kd.keyBags];
  bags[index] = bag;
  return kd(...bags);
}

describe('validator: baselines', () => {
  const contexts: [string, ValidationContext][] = [
    ['GSA_AUTH multicast, signatures', REGISTRATION],
    ['GSA_AUTH multicast, sender, key tree', context({ groupSender: true, keyTree: true })],
    ['GSA_REGISTRATION multicast, implicit', context({ exchange: ExchangeType.GSA_REGISTRATION, gcauth: GcauthId.IMPLICIT })],
    ['GSA_REKEY', REKEY],
    ['GSA_REGISTRATION inband, sender', context({ exchange: ExchangeType.GSA_REGISTRATION, rekeyStyle: 'inband', groupSender: true })],
    ['GSA_INBAND_REKEY', INBAND_REKEY],
  ];
  for (const [name, ctx] of contexts) {
    it(`a well-formed ${name} message is clean`, () => {
      const { gsa: g, kd: k } = validMessage(ctx);
      clean(validateGsa(g, ctx));
      clean(validateKd(k, ctx));
      clean(validateExchange(ctx.exchange, [g, k], ctx));
    });
  }

  it('the hand-written GSA_AUTH vectors are clean', () => {
    const g = decodeGsaBody(new Reader(GSA_KAT, 'GSA'), false);
    const k = decodeKdBody(new Reader(KD_KAT, 'KD'), false);
    clean(validateExchange(ExchangeType.GSA_AUTH, [g, k], { rekeyStyle: 'multicast', groupSender: true, keyTree: true }));
  });

  it('never throws on arbitrary decoded payloads', () => {
    const ctx = fc.record({
      exchange: fc.constantFrom(ExchangeType.GSA_AUTH, ExchangeType.GSA_REGISTRATION, ExchangeType.GSA_REKEY, ExchangeType.GSA_INBAND_REKEY),
      rekeyStyle: fc.constantFrom('multicast' as const, 'inband' as const),
      groupSender: fc.boolean(),
      counterMode: fc.boolean(),
      gcauth: fc.constantFrom(GcauthId.IMPLICIT, GcauthId.DIGITAL_SIGNATURE, undefined),
      keyTree: fc.boolean(),
    });
    fc.assert(
      fc.property(arbGsaPayload, arbKdPayload, ctx, (g, k, c) => {
        for (const v of [validateGsa(g, c), validateKd(k, c), validateExchange(c.exchange, [g, k], c)]) {
          assert.ok(v.every((e) => e instanceof ValidationError && e.rule.startsWith('RFC9838 ')));
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('validator: group policies (RFC 9838 4.4.1, 4.4.2)', () => {
  it('at most one KEK policy', () => {
    fails(validateGsa(gsa(kekPolicy(), kekPolicy(), espPolicy()), REGISTRATION), 'RFC9838 4.4.1: at most one GSA KEK policy');
  });
  it('at most one GW policy', () => {
    fails(validateGsa(gsa(kekPolicy(), espPolicy(), gwPolicy(), gwPolicy()), REGISTRATION), 'RFC9838 4.4.1: at most one GW policy');
  });
  it('a KEK or TEK policy must be present (a TEK alone is enough)', () => {
    fails(validateGsa(gsa(gwPolicy()), REGISTRATION), 'RFC9838 4.4.1: a GSA KEK or GSA TEK policy must be present');
    fails(validateGsa(gsa(espPolicy({ protocol: 200 })), REGISTRATION), 'RFC9838 4.4.1: a GSA KEK or GSA TEK policy must be present');
    clean(validateGsa(gsa(espPolicy({ attributes: [] })), INBAND_REKEY));
  });
  it('policy protocol must be GIKE_UPDATE, AH or ESP', () => {
    fails(validateGsa(gsaWith(REGISTRATION, 3, espPolicy({ protocol: 200 })), REGISTRATION), 'RFC9838 4.4.2: policy protocol must be GIKE_UPDATE, AH or ESP');
  });
  it('SPI sizes: 16 for GIKE_UPDATE, 4 for AH and ESP', () => {
    fails(validateGsa(kekGsa(REGISTRATION, { spi: Buffer.alloc(8) }), REGISTRATION), 'RFC9838 4.4.2: GIKE_UPDATE SPI Size must be 16');
    fails(validateGsa(espGsa(REGISTRATION, { spi: Buffer.alloc(8) }), REGISTRATION), 'RFC9838 4.4.2: ESP SPI Size must be 4');
    fails(validateGsa(gsaWith(REGISTRATION, 3, ahPolicy({ spi: Buffer.alloc(2) })), REGISTRATION), 'RFC9838 4.4.2: AH SPI Size must be 4');
    clean(validateGsa(gsaWith(REGISTRATION, 3, ahPolicy()), REGISTRATION));
  });
  it('GIKE_UPDATE destination: one multicast address, one port, UDP', () => {
    const single = 'RFC9838 4.4.2: GIKE_UPDATE destination TS must be a single multicast address';
    fails(validateGsa(kekGsa(REGISTRATION, { destination: ipv4('239.192.0.1', '239.192.0.9', 17, 848, 848) }), REGISTRATION), single);
    fails(validateGsa(kekGsa(REGISTRATION, { destination: ipv4('192.0.2.9', '192.0.2.9', 17, 848, 848) }), REGISTRATION), single);
    fails(validateGsa(kekGsa(REGISTRATION, { destination: { type: 9, raw: Buffer.from('09000004', 'hex') } }), REGISTRATION), single);
    fails(
      validateGsa(kekGsa(REGISTRATION, { destination: ipv4('239.192.0.1', '239.192.0.1', 17, 848, 849) }), REGISTRATION),
      'RFC9838 4.4.2: GIKE_UPDATE destination TS must be a single port',
    );
    fails(
      validateGsa(kekGsa(REGISTRATION, { destination: ipv4('239.192.0.1', '239.192.0.1', 6, 848, 848) }), REGISTRATION),
      'RFC9838 4.4.2: GIKE_UPDATE destination TS protocol must be UDP',
    );
    const v6: TrafficSelector = { type: TsType.TS_IPV6_ADDR_RANGE, ipProtocol: 17, startPort: 848, endPort: 848, startAddress: 'ff15::1', endAddress: 'ff15::1' };
    clean(validateGsa(kekGsa(REGISTRATION, { destination: v6 }), REGISTRATION));
  });
  it('ESP and AH policies must not share traffic selectors', () => {
    const rule = 'RFC9838 4.4.2: ESP and AH policies must not share traffic selectors';
    fails(validateGsa(gsaWith(REGISTRATION, 3, ahPolicy({ destination: ipv4('239.192.0.2') })), REGISTRATION), rule);
    clean(validateGsa(gsaWith(REGISTRATION, 3, ahPolicy({ source: ANY, destination: ipv4('239.192.0.3') })), REGISTRATION));
  });
});

describe('validator: GSA transforms (RFC 9838 4.4.2.1)', () => {
  it('ESP requires exactly one SN transform (and one ENCR)', () => {
    fails(validateGsa(espGsa(REGISTRATION, { transforms: [AES_GCM_256] }), REGISTRATION), 'RFC9838 4.4.2.1: ESP requires exactly one SN transform');
    fails(
      validateGsa(espGsa(REGISTRATION, { transforms: [AES_GCM_256, AES_GCM_256, SN_UNSPECIFIED] }), REGISTRATION),
      'RFC9838 4.4.2.1: ESP requires exactly one ENCR transform',
    );
  });
  it('AH requires INTEG and SN; GIKE_UPDATE requires ENCR and KWA', () => {
    fails(validateGsa(gsaWith(REGISTRATION, 3, ahPolicy({ transforms: [SN_UNSPECIFIED] })), REGISTRATION), 'RFC9838 4.4.2.1: AH requires exactly one INTEG transform');
    fails(validateGsa(kekGsa(REGISTRATION, { transforms: [AES_GCM_256, GCAUTH_SIGNATURE] }), REGISTRATION), 'RFC9838 4.4.2.1: GIKE_UPDATE requires exactly one KWA transform');
    fails(validateGsa(kekGsa(REGISTRATION, { transforms: [KWA_256, GCAUTH_SIGNATURE] }), REGISTRATION), 'RFC9838 4.4.2.1: GIKE_UPDATE requires exactly one ENCR transform');
  });
  it('optional types at most once', () => {
    fails(
      validateGsa(espGsa(REGISTRATION, { transforms: [AES_CBC_256, HMAC_SHA256, HMAC_SHA256, SN_UNSPECIFIED] }), REGISTRATION),
      'RFC9838 4.4.2.1: ESP allows at most one INTEG transform',
    );
    clean(validateGsa(espGsa(REGISTRATION, { transforms: [AES_CBC_256, HMAC_SHA256, SN_UNSPECIFIED] }), REGISTRATION));
  });
  it('types outside the table are not allowed', () => {
    fails(validateGsa(espGsa(REGISTRATION, { transforms: [AES_GCM_256, SN_UNSPECIFIED, KWA_256] }), REGISTRATION), 'RFC9838 4.4.2.1: KWA transform is not allowed in ESP');
    fails(
      validateGsa(kekGsa(REGISTRATION, { transforms: [AES_GCM_256, KWA_256, GCAUTH_SIGNATURE, SN_UNSPECIFIED] }), REGISTRATION),
      'RFC9838 4.4.2.1: SN transform is not allowed in GIKE_UPDATE',
    );
  });
  it('AEAD: INTEG absent or NONE', () => {
    const rule = 'RFC9838 4.4.2.1: with AEAD encryption INTEG must be absent or NONE';
    fails(validateGsa(espGsa(REGISTRATION, { transforms: [AES_GCM_256, HMAC_SHA256, SN_UNSPECIFIED] }), REGISTRATION), rule);
    fails(validateGsa(kekGsa(REGISTRATION, { transforms: [AES_GCM_256, HMAC_SHA256, KWA_256, GCAUTH_SIGNATURE] }), REGISTRATION), rule);
    clean(validateGsa(kekGsa(REGISTRATION, { transforms: [AES_GCM_256, INTEG_NONE, KWA_256, GCAUTH_SIGNATURE] }), REGISTRATION));
  });
  it('GIKE_UPDATE without AEAD: INTEG present and not NONE', () => {
    const rule = 'RFC9838 4.4.2.1: GIKE_UPDATE without AEAD requires an INTEG transform other than NONE';
    fails(validateGsa(kekGsa(REGISTRATION, { transforms: [AES_CBC_256, KWA_256, GCAUTH_SIGNATURE] }), REGISTRATION), rule);
    fails(validateGsa(kekGsa(REGISTRATION, { transforms: [AES_CBC_256, INTEG_NONE, KWA_256, GCAUTH_SIGNATURE] }), REGISTRATION), rule);
    clean(validateGsa(kekGsa(REGISTRATION, { transforms: [AES_CBC_256, HMAC_SHA256, KWA_256, GCAUTH_SIGNATURE] }), REGISTRATION));
  });
  it('AH INTEG must not be NONE', () => {
    fails(
      validateGsa(gsaWith(REGISTRATION, 3, ahPolicy({ transforms: [INTEG_NONE, SN_UNSPECIFIED] })), REGISTRATION),
      'RFC9838 4.4.2.1: AH requires an INTEG transform other than NONE',
    );
  });
  it('GCAUTH: exactly one at registration, none in rekeys', () => {
    fails(validateGsa(kekGsa(REGISTRATION, { transforms: [AES_GCM_256, KWA_256] }), REGISTRATION), 'RFC9838 4.4.2.1: GIKE_UPDATE requires exactly one GCAUTH transform');
    fails(
      validateGsa(kekGsa(REKEY, { transforms: [AES_GCM_256, KWA_256, GCAUTH_SIGNATURE] }), REKEY),
      'RFC9838 4.4.2.1: GCAUTH may only appear in GSA_AUTH and GSA_REGISTRATION',
    );
  });
  it('Signature Algorithm Identifier: required with, and only with, GCAUTH Digital Signature', () => {
    const required = 'RFC9838 4.4.2.1.1: GCAUTH Digital Signature requires one Signature Algorithm Identifier (TLV)';
    const bare = transform(TransformType.GCAUTH, GcauthId.DIGITAL_SIGNATURE);
    fails(validateGsa(kekGsa(REGISTRATION, { transforms: [AES_GCM_256, KWA_256, bare] }), REGISTRATION), required);
    const asTv = transform(TransformType.GCAUTH, GcauthId.DIGITAL_SIGNATURE, [tv(TransformAttr.SIGNATURE_ALGORITHM_IDENTIFIER, 1)]);
    fails(validateGsa(kekGsa(REGISTRATION, { transforms: [AES_GCM_256, KWA_256, asTv] }), REGISTRATION), required);
    const only = 'RFC9838 4.4.2.1.1: Signature Algorithm Identifier only with GCAUTH Digital Signature';
    const implicitWithAlg = transform(TransformType.GCAUTH, GcauthId.IMPLICIT, [tlv(TransformAttr.SIGNATURE_ALGORITHM_IDENTIFIER, Buffer.from('3000', 'hex'))]);
    const ctx = context({ gcauth: GcauthId.IMPLICIT });
    fails(validateGsa(kekGsa(ctx, { transforms: [AES_GCM_256, KWA_256, implicitWithAlg] }), ctx), only);
    clean(validateGsa(kekGsa(ctx, { transforms: [AES_GCM_256, KWA_256, GCAUTH_IMPLICIT] }), ctx));
  });
  it('transform ID 0 is reserved for GCAUTH and KWA', () => {
    fails(
      validateGsa(kekGsa(REGISTRATION, { transforms: [AES_GCM_256, KWA_256, transform(TransformType.GCAUTH, 0)] }), REGISTRATION),
      'RFC9838 4.4.2.1.1: GCAUTH transform ID 0 is reserved',
    );
    fails(
      validateGsa(kekGsa(REGISTRATION, { transforms: [AES_GCM_256, transform(TransformType.KWA, 0), GCAUTH_SIGNATURE] }), REGISTRATION),
      'RFC9838 4.4.2.1.2: KWA transform ID 0 is reserved',
    );
    clean(validateGsa(kekGsa(REGISTRATION, { transforms: [AES_GCM_256, transform(TransformType.KWA, KwaId.KW_ARX), GCAUTH_SIGNATURE] }), REGISTRATION));
  });
  it('SN: Partially Transmitted 64-bit Sequential Numbers is not for multicast SAs', () => {
    fails(
      validateGsa(espGsa(REGISTRATION, { transforms: [AES_GCM_256, transform(TransformType.SN, SnId.ESN64_PARTIAL)] }), REGISTRATION),
      'RFC9838 4.4.2.1.3: Partially Transmitted 64-bit Sequential Numbers must not be used',
    );
    clean(validateGsa(espGsa(REGISTRATION, { transforms: [AES_GCM_256, transform(TransformType.SN, SnId.SEQ32)] }), REGISTRATION));
  });
  it('implicit IV: never for the Rekey SA, and only with 32-bit Sequential Numbers', () => {
    const iiv = transform(TransformType.ENCR, EncrId.AES_GCM_16_IIV, [tv(TransformAttr.KEY_LENGTH, 256)]);
    fails(
      validateGsa(kekGsa(REGISTRATION, { transforms: [iiv, KWA_256, GCAUTH_SIGNATURE] }), REGISTRATION),
      'RFC9838 2.7: implicit-IV encryption must not be used for the Rekey SA',
    );
    fails(
      validateGsa(espGsa(REGISTRATION, { transforms: [iiv, SN_UNSPECIFIED] }), REGISTRATION),
      'RFC9838 2.7: implicit-IV encryption requires 32-bit Sequential Numbers',
    );
    clean(validateGsa(espGsa(REGISTRATION, { transforms: [iiv, transform(TransformType.SN, SnId.SEQ32)] }), REGISTRATION));
  });
});

describe('validator: GSA attributes (RFC 9838 4.4.2.2 and Section 5)', () => {
  it('GSA_KEY_LIFETIME: S with multicast rekey, [S] with inband', () => {
    fails(validateGsa(espGsa(REGISTRATION, { attributes: [] }), REGISTRATION), 'RFC9838 5: GSA_KEY_LIFETIME must appear exactly once in GSA_AUTH');
    fails(validateGsa(kekGsa(REKEY, { attributes: [] }), REKEY), 'RFC9838 5: GSA_KEY_LIFETIME must appear exactly once in GSA_REKEY');
    const twice = [keyLifetimeAttribute(1), keyLifetimeAttribute(2)];
    fails(validateGsa(espGsa(INBAND_REKEY, { attributes: twice }), INBAND_REKEY), 'RFC9838 5: GSA_KEY_LIFETIME must appear at most once in GSA_INBAND_REKEY');
    clean(validateGsa(espGsa(INBAND_REKEY, { attributes: [keyLifetimeAttribute(3600)] }), INBAND_REKEY));
  });
  it('GSA_INITIAL_MESSAGE_ID: [S] with multicast rekey, - with inband, GIKE_UPDATE only', () => {
    const once = [keyLifetimeAttribute(60), initialMessageIdAttribute(9)];
    clean(validateGsa(kekGsa(REGISTRATION, { attributes: once }), REGISTRATION));
    fails(
      validateGsa(kekGsa(REGISTRATION, { attributes: [...once, initialMessageIdAttribute(10)] }), REGISTRATION),
      'RFC9838 5: GSA_INITIAL_MESSAGE_ID must appear at most once in GSA_AUTH',
    );
    const inbandKek = gsa(kekPolicy({ attributes: [initialMessageIdAttribute(9)] }), espPolicy({ attributes: [] }));
    fails(validateGsa(inbandKek, INBAND_REG), 'RFC9838 5: GSA_INITIAL_MESSAGE_ID must not appear in GSA_REGISTRATION');
    fails(
      validateGsa(espGsa(REGISTRATION, { attributes: [keyLifetimeAttribute(60), initialMessageIdAttribute(1)] }), REGISTRATION),
      'RFC9838 4.4.2.2: GSA_INITIAL_MESSAGE_ID is only used with GIKE_UPDATE',
    );
  });
  it('GSA_NEXT_SPI: [M] with multicast rekey, - with inband', () => {
    const spis = [keyLifetimeAttribute(60), nextSpiAttribute(Buffer.alloc(4, 1)), nextSpiAttribute(Buffer.alloc(4, 2))];
    clean(validateGsa(espGsa(REKEY, { attributes: spis }), REKEY));
    fails(
      validateGsa(espGsa(INBAND_REKEY, { attributes: [nextSpiAttribute(Buffer.alloc(4, 1))] }), INBAND_REKEY),
      'RFC9838 5: GSA_NEXT_SPI must not appear in GSA_INBAND_REKEY',
    );
  });
  it('formats and sizes', () => {
    fails(
      validateGsa(espGsa(REGISTRATION, { attributes: [tv(GsaAttr.GSA_KEY_LIFETIME, 60)] }), REGISTRATION),
      'RFC9838 4.4.2.2: GSA_KEY_LIFETIME must be TLV',
    );
    fails(
      validateGsa(espGsa(REGISTRATION, { attributes: [tlv(GsaAttr.GSA_KEY_LIFETIME, Buffer.alloc(2))] }), REGISTRATION),
      'RFC9838 4.4.2.2.1: GSA_KEY_LIFETIME value must be 4 octets',
    );
    fails(
      validateGsa(kekGsa(REGISTRATION, { attributes: [keyLifetimeAttribute(1), tlv(GsaAttr.GSA_INITIAL_MESSAGE_ID, Buffer.alloc(3))] }), REGISTRATION),
      'RFC9838 4.4.2.2.2: GSA_INITIAL_MESSAGE_ID value must be 4 octets',
    );
    fails(
      validateGsa(espGsa(REGISTRATION, { attributes: [keyLifetimeAttribute(1), nextSpiAttribute(Buffer.alloc(16))] }), REGISTRATION),
      'RFC9838 4.4.2.2.3: GSA_NEXT_SPI value must be SPI Size octets',
    );
    clean(validateGsa(kekGsa(REGISTRATION, { attributes: [keyLifetimeAttribute(1), nextSpiAttribute(Buffer.alloc(16))] }), REGISTRATION));
  });
  it('type 0 is reserved; unregistered types are left alone', () => {
    fails(
      validateGsa(espGsa(REGISTRATION, { attributes: [keyLifetimeAttribute(1), tv(0, 1)] }), REGISTRATION),
      'RFC9838 4.4.2.2: GSA attribute type 0 is reserved',
    );
    clean(validateGsa(espGsa(REGISTRATION, { attributes: [keyLifetimeAttribute(1), tv(16384, 1)] }), REGISTRATION));
  });
});

describe('validator: GW policy (RFC 9838 4.4.3.1 and Section 5)', () => {
  const gwIndex = 2;
  it('GWP_ATD and GWP_DTD: at most one', () => {
    fails(
      validateGsa(gsaWith(REGISTRATION, gwIndex, gwPolicy([tv(GwpAttr.GWP_ATD, 1), tv(GwpAttr.GWP_ATD, 2)])), REGISTRATION),
      'RFC9838 5: GWP_ATD must appear at most once in GSA_AUTH',
    );
    fails(
      validateGsa(gsaWith(REKEY, gwIndex, gwPolicy([tv(GwpAttr.GWP_DTD, 1), tv(GwpAttr.GWP_DTD, 2)])), REKEY),
      'RFC9838 5: GWP_DTD must appear at most once in GSA_REKEY',
    );
    clean(validateGsa(gsaWith(REKEY, gwIndex, gwPolicy([tv(GwpAttr.GWP_ATD, 1), tv(GwpAttr.GWP_DTD, 2)])), REKEY));
  });
  it('GWP_SENDER_ID_BITS: S for a counter-mode sender at registration (note 1), - otherwise', () => {
    fails(validateGsa(gsaWith(SENDER, gwIndex, gwPolicy()), SENDER), 'RFC9838 5: GWP_SENDER_ID_BITS must appear exactly once in GSA_AUTH');
    fails(validateGsa(gsa(kekPolicy(), espPolicy()), SENDER), 'RFC9838 5: GWP_SENDER_ID_BITS must appear exactly once in GSA_AUTH');
    const bits = gwPolicy([tv(GwpAttr.GWP_SENDER_ID_BITS, 8)]);
    fails(validateGsa(gsaWith(REGISTRATION, gwIndex, bits), REGISTRATION), 'RFC9838 5: GWP_SENDER_ID_BITS must not appear in GSA_AUTH');
    fails(validateGsa(gsaWith(REKEY, gwIndex, bits), REKEY), 'RFC9838 5: GWP_SENDER_ID_BITS must not appear in GSA_REKEY');
    fails(validateGsa(gsaWith(INBAND_REKEY, 1, bits), INBAND_REKEY), 'RFC9838 5: GWP_SENDER_ID_BITS must not appear in GSA_INBAND_REKEY');
    clean(validateGsa(validMessage(SENDER).gsa, SENDER));
  });
  it('format TV and reserved type 0', () => {
    fails(
      validateGsa(gsaWith(REGISTRATION, gwIndex, gwPolicy([tlv(GwpAttr.GWP_ATD, Buffer.alloc(2))])), REGISTRATION),
      'RFC9838 4.4.3.1: GWP_ATD must be TV',
    );
    fails(validateGsa(gsaWith(REGISTRATION, gwIndex, gwPolicy([tv(0, 0)])), REGISTRATION), 'RFC9838 4.4.3.1: GW policy attribute type 0 is reserved');
  });
});

describe('validator: group key bags (RFC 9838 4.5.2, 4.5.4, Section 5)', () => {
  it('protocol and SPI size', () => {
    fails(validateKd(kdWithBag(REGISTRATION, 1, groupBag(200, ESP_SPI)), REGISTRATION), 'RFC9838 4.5.2: key bag protocol must be GIKE_UPDATE, AH or ESP');
    fails(validateKd(kdWithBag(REGISTRATION, 0, groupBag(ProtocolId.GIKE_UPDATE, Buffer.alloc(4))), REGISTRATION), 'RFC9838 4.5.2: GIKE_UPDATE SPI Size must be 16');
    fails(validateKd(kdWithBag(REGISTRATION, 1, groupBag(ProtocolId.ESP, KEK_SPI)), REGISTRATION), 'RFC9838 4.5.2: ESP SPI Size must be 4');
    fails(validateKd(kdWithBag(REGISTRATION, 1, groupBag(ProtocolId.AH, KEK_SPI)), REGISTRATION), 'RFC9838 4.5.2: AH SPI Size must be 4');
  });
  it('SA_KEY: exactly one for a Data-Security SA', () => {
    fails(validateKd(kdWithBag(REGISTRATION, 1, groupBag(ProtocolId.ESP, ESP_SPI, [])), REGISTRATION), 'RFC9838 5: SA_KEY must appear exactly once in GSA_AUTH');
    fails(validateKd(kdWithBag(REKEY, 1, groupBag(ProtocolId.ESP, ESP_SPI, [saKey(), saKey()])), context({ ...REKEY, keyTree: true })), 'RFC9838 5: SA_KEY must appear exactly once in GSA_REKEY');
  });
  it('SA_KEY: one for the Rekey SA, several only in GSA_REKEY with a key tree', () => {
    const twoKeks = groupBag(ProtocolId.GIKE_UPDATE, KEK_SPI, [saKey(1), saKey(15)]);
    const keyTreeRekey = context({ exchange: ExchangeType.GSA_REKEY, keyTree: true });
    clean(validateKd(kdWithBag(keyTreeRekey, 0, twoKeks), keyTreeRekey));
    fails(validateKd(kdWithBag(REKEY, 0, twoKeks), REKEY), 'RFC9838 5: SA_KEY must appear exactly once in GSA_REKEY');
    fails(validateKd(kdWithBag(REGISTRATION, 0, twoKeks), context({ keyTree: true })), 'RFC9838 5: SA_KEY must appear exactly once in GSA_AUTH');
    fails(
      validateKd(kdWithBag(keyTreeRekey, 0, groupBag(ProtocolId.GIKE_UPDATE, KEK_SPI, [])), keyTreeRekey),
      'RFC9838 5: SA_KEY must appear at least once in GSA_REKEY',
    );
    fails(
      validateKd(kdWithBag(keyTreeRekey, 0, groupBag(ProtocolId.GIKE_UPDATE, KEK_SPI, [saKey(1), saKey(1)])), keyTreeRekey),
      'RFC9838 3.3: SA_KEY attributes must use distinct KWKs',
    );
  });
  it('SA_KEY IDs: Key ID 0; KWK ID 0 for Data-Security SAs', () => {
    fails(validateKd(kdWithBag(REGISTRATION, 0, groupBag(ProtocolId.GIKE_UPDATE, KEK_SPI, [saKey(0, 5)])), REGISTRATION), 'RFC9838 4.5.2.1: SA_KEY Key ID must be zero');
    fails(validateKd(kdWithBag(REGISTRATION, 1, groupBag(ProtocolId.ESP, ESP_SPI, [saKey(3)])), REGISTRATION), 'RFC9838 4.5.2.1: Data-Security SA_KEY KWK ID must be zero');
    clean(validateKd(kdWithBag(REGISTRATION, 0, groupBag(ProtocolId.GIKE_UPDATE, KEK_SPI, [saKey(3)])), REGISTRATION));
  });
  it('wrapped key shape and format', () => {
    fails(validateKd(kdWithBag(REGISTRATION, 1, groupBag(ProtocolId.ESP, ESP_SPI, [tv(1, 0)])), REGISTRATION), 'RFC9838 4.5: SA_KEY must be TLV');
    fails(
      validateKd(kdWithBag(REGISTRATION, 1, groupBag(ProtocolId.ESP, ESP_SPI, [tlv(1, Buffer.alloc(6))])), REGISTRATION),
      'RFC9838 4.5.4: a wrapped key starts with Key ID and KWK ID',
    );
    fails(
      validateKd(kdWithBag(REGISTRATION, 1, groupBag(ProtocolId.ESP, ESP_SPI, [tlv(1, Buffer.alloc(8))])), REGISTRATION),
      'RFC9838 4.5.4: Encrypted Key must not be empty',
    );
  });
  it('attribute type 0 is reserved', () => {
    fails(
      validateKd(kdWithBag(REGISTRATION, 1, groupBag(ProtocolId.ESP, ESP_SPI, [saKey(), tv(0, 0)])), REGISTRATION),
      'RFC9838 4.5.2: Group Key Bag attribute type 0 is reserved',
    );
  });
});

describe('validator: member key bag (RFC 9838 4.5.3, Section 5, NOTES.md point 1)', () => {
  const auth = authKeyAttribute(ED25519_SPKI);
  const senderId = senderIdAttribute(Buffer.from('00000002', 'hex'));
  it('WRAP_KEY: required at registration with a key tree, [M] in GSA_REKEY, - with inband', () => {
    const keyTree = context({ keyTree: true });
    fails(validateKd(kdWithMember(keyTree, [auth]), keyTree), 'RFC9838 5: WRAP_KEY must appear at least once in GSA_AUTH');
    clean(validateKd(kdWithMember(keyTree, [wrapKey(7), wrapKey(3, 7), auth]), keyTree));
    clean(validateKd(kdWithMember(REKEY, [wrapKey(15, 6), wrapKey(16, 11)]), REKEY));
    fails(validateKd(kdWithMember(INBAND_REG, [wrapKey(7)]), INBAND_REG), 'RFC9838 5: WRAP_KEY must not appear in GSA_REGISTRATION');
  });
  it('WRAP_KEY Key ID must not be zero, and must be TLV', () => {
    fails(validateKd(kdWithMember(REGISTRATION, [wrapKey(0), auth]), REGISTRATION), 'RFC9838 4.5.3.1: WRAP_KEY Key ID must not be zero');
    fails(validateKd(kdWithMember(REGISTRATION, [tv(MemberKeyBagAttr.WRAP_KEY, 1), auth]), REGISTRATION), 'RFC9838 4.5: WRAP_KEY must be TLV');
  });
  it('AUTH_KEY: S at registration with signatures, [S] in GSA_REKEY, - when implicit or inband', () => {
    fails(validateKd(kdWithMember(REGISTRATION, []), REGISTRATION), 'RFC9838 5: AUTH_KEY must appear exactly once in GSA_AUTH');
    fails(validateKd(kdWithMember(REGISTRATION, [auth, auth]), REGISTRATION), 'RFC9838 5: AUTH_KEY must appear exactly once in GSA_AUTH');
    const implicit = context({ gcauth: GcauthId.IMPLICIT });
    fails(validateKd(kdWithMember(implicit, [auth]), implicit), 'RFC9838 5: AUTH_KEY must not appear in GSA_AUTH');
    clean(validateKd(kdWithMember(REKEY, [auth]), REKEY));
    fails(validateKd(kdWithMember(REKEY, [auth, auth]), REKEY), 'RFC9838 5: AUTH_KEY must appear at most once in GSA_REKEY');
    const implicitRekey = context({ exchange: ExchangeType.GSA_REKEY, gcauth: GcauthId.IMPLICIT });
    fails(validateKd(kdWithMember(implicitRekey, [auth]), implicitRekey), 'RFC9838 5: AUTH_KEY must not appear in GSA_REKEY');
    fails(validateKd(kdWithMember(INBAND_REG, [auth]), INBAND_REG), 'RFC9838 5: AUTH_KEY must not appear in GSA_REGISTRATION');
  });
  it('AUTH_KEY must be a TLV DER SubjectPublicKeyInfo', () => {
    fails(validateKd(kdWithMember(REGISTRATION, [authKeyAttribute(Buffer.from('0401', 'hex'))]), REGISTRATION), 'RFC9838 4.5.3.2: AUTH_KEY must be a DER SubjectPublicKeyInfo');
    fails(validateKd(kdWithMember(REGISTRATION, [tv(MemberKeyBagAttr.AUTH_KEY, 0)]), REGISTRATION), 'RFC9838 4.5: AUTH_KEY must be TLV');
  });
  it('GM_SENDER_ID: S[M] for a counter-mode sender at registration, never in rekeys', () => {
    fails(validateKd(kdWithMember(SENDER, [auth]), SENDER), 'RFC9838 5: GM_SENDER_ID must appear at least once in GSA_AUTH');
    clean(validateKd(kdWithMember(SENDER, [auth, senderId, senderId]), SENDER));
    fails(validateKd(kdWithMember(REGISTRATION, [auth, senderId]), REGISTRATION), 'RFC9838 5: GM_SENDER_ID must not appear in GSA_AUTH');
    fails(validateKd(kdWithMember(REKEY, [senderId]), REKEY), 'RFC9838 5: GM_SENDER_ID must not appear in GSA_REKEY');
    const inbandSender = context({ ...INBAND_REKEY, groupSender: true });
    fails(validateKd(kdWithMember(inbandSender, [senderId]), inbandSender), 'RFC9838 5: GM_SENDER_ID must not appear in GSA_INBAND_REKEY');
  });
  it('GM_SENDER_ID: no more than requested (0 means one)', () => {
    const rule = 'RFC9838 4.5.3.3: GM_SENDER_ID must not exceed the number requested';
    const two = context({ ...SENDER, senderIdsRequested: 2 });
    clean(validateKd(kdWithMember(two, [auth, senderId, senderId]), two));
    fails(validateKd(kdWithMember(two, [auth, senderId, senderId, senderId]), two), rule);
    const zero = context({ ...SENDER, senderIdsRequested: 0 });
    clean(validateKd(kdWithMember(zero, [auth, senderId]), zero));
    fails(validateKd(kdWithMember(zero, [auth, senderId, senderId]), zero), rule);
  });
  it('in GSA_REKEY a member key bag carries only WRAP_KEY and AUTH_KEY', () => {
    fails(
      validateKd(kdWithMember(REKEY, [wrapKey(9), tlv(16384, Buffer.alloc(1))]), REKEY),
      'RFC9838 4.5.3 (NOTES 1): Member Key Bag in GSA_REKEY carries only WRAP_KEY and AUTH_KEY',
    );
    clean(validateKd(kdWithMember(REGISTRATION, [auth, tlv(16384, Buffer.alloc(1))]), REGISTRATION));
  });
  it('no member key bag in GSA_INBAND_REKEY', () => {
    fails(validateKd(kdWithMember(INBAND_REKEY, []), INBAND_REKEY), 'RFC9838 4.5.3: Member Key Bag must not be sent in GSA_INBAND_REKEY');
  });
  it('attribute type 0 is reserved', () => {
    fails(validateKd(kdWithMember(REGISTRATION, [auth, tv(0, 0)]), REGISTRATION), 'RFC9838 4.5.3: Member Key Bag attribute type 0 is reserved');
  });
});

describe('validator: whole exchange', () => {
  const base = { rekeyStyle: 'multicast' as const, groupSender: false, gcauth: GcauthId.DIGITAL_SIGNATURE, keyTree: false };
  const { gsa: g, kd: k } = validMessage(REGISTRATION);

  it('GSA and KD only in G-IKEv2 exchanges', () => {
    fails(validateExchange(ExchangeType.IKE_AUTH, [g, k], base), 'RFC9838 2.2: GSA and KD appear only in G-IKEv2 exchanges');
    clean(validateExchange(ExchangeType.IKE_AUTH, [{ type: PayloadType.NONCE }], base));
  });
  it('one GSA and one KD, together', () => {
    fails(validateExchange(ExchangeType.GSA_AUTH, [g, g, k], base), 'RFC9838 2.3.1: at most one GSA payload');
    fails(validateExchange(ExchangeType.GSA_AUTH, [g, k, k], base), 'RFC9838 2.3.1: at most one KD payload');
    fails(validateExchange(ExchangeType.GSA_AUTH, [g], base), 'RFC9838 2.3.1: GSA and KD are sent together');
    clean(validateExchange(ExchangeType.GSA_REKEY, [{ type: PayloadType.DELETE }], base)); // deletion-only rekey
  });
  it('every group key bag matches a GSA policy', () => {
    const stray = kd(...k.keyBags, groupBag(ProtocolId.ESP, Buffer.from('deadbeef', 'hex')));
    fails(validateExchange(ExchangeType.GSA_AUTH, [g, stray], base), 'RFC9838 2.3.3: a group key bag must match a GSA policy (protocol, SPI)');
  });
  it('at registration every SA policy has its key bag; rekeys may restate policy', () => {
    const extra = gsa(...g.policies, ahPolicy());
    fails(validateExchange(ExchangeType.GSA_AUTH, [extra, k], base), 'RFC9838 2.3.3: at registration every GSA policy needs a group key bag');
    const rekey = validMessage(REKEY);
    clean(validateExchange(ExchangeType.GSA_REKEY, [gsa(...rekey.gsa.policies, ahPolicy()), rekey.kd], base));
  });
  it('derives counter mode and GCAUTH from the message when the caller does not know them', () => {
    // The TEK uses AES-GCM and the GM is a sender: Sender-ID bits and IDs are due.
    fails(validateExchange(ExchangeType.GSA_AUTH, [g, k], { ...base, groupSender: true }), 'RFC9838 5: GWP_SENDER_ID_BITS must appear exactly once in GSA_AUTH');
    // The caller says no counter mode: then nothing is due.
    clean(validateExchange(ExchangeType.GSA_AUTH, [g, k], { ...base, groupSender: true, counterMode: false }));
    // GCAUTH Implicit in the GSA wins over the caller's Digital Signature: AUTH_KEY must go.
    const implicit = gsa(kekPolicy({ transforms: [AES_GCM_256, KWA_256, GCAUTH_IMPLICIT] }), ...g.policies.slice(1));
    fails(validateExchange(ExchangeType.GSA_AUTH, [implicit, k], base), 'RFC9838 5: AUTH_KEY must not appear in GSA_AUTH');
  });
  it('assertValid throws the first violation and accepts none', () => {
    assert.doesNotThrow(() => assertValid(validateExchange(ExchangeType.GSA_AUTH, [g, k], base)));
    const v = validateGsa(gsa(gwPolicy()), REGISTRATION);
    assert.throws(() => assertValid(v), (e: unknown) => e === v[0]);
  });
  it('reports paths like the decoder does', () => {
    const v = validateGsa(espGsa(REGISTRATION, { transforms: [AES_GCM_256] }), REGISTRATION);
    assert.equal(v.find((e) => e.rule === 'RFC9838 4.4.2.1: ESP requires exactly one SN transform')?.path, 'GSA > policy[2] (ESP)');
  });
});
