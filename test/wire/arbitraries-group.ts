/**
 * fast-check arbitraries for the G-IKEv2 payloads (GSA, KD) and the wrapped
 * key format, for the round-trip tests and the fuzzers. Values are shaped
 * exactly as the decoders return them, so `decode(encode(x))` compares with
 * deepStrictEqual. They cover structure, not policy: most generated values
 * break some RFC 9838 rule, which is what the validator is for.
 */
import fc from 'fast-check';
import type { GroupPolicy, GroupWidePolicy, GsaPayload, SaPolicy } from '../../src/wire/gsa.ts';
import { GroupKeyBagAttr, MemberKeyBagAttr, PayloadType, ProtocolId } from '../../src/wire/iana.ts';
import type { GroupKeyBag, KdPayload, KeyBag, MemberKeyBag } from '../../src/wire/kd.ts';
import { encodeWrappedKey, type WrappedKey } from '../../src/wire/wrapped-key.ts';
import { arbAttribute, arbBytes, arbTrafficSelector, arbTransform, arbU32 } from './arbitraries.ts';

/** Mostly the registered protocols, sometimes any non-zero value (kept by the decoder). */
export const arbGroupProtocol = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(ProtocolId.GIKE_UPDATE, ProtocolId.AH, ProtocolId.ESP) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 0xff }) },
);

/** The SPI size the protocol uses (16 / 4), or occasionally any size. */
export function arbSpiFor(protocol: number): fc.Arbitrary<Buffer> {
  const size = protocol === ProtocolId.GIKE_UPDATE ? 16 : 4;
  return fc.oneof({ weight: 4, arbitrary: arbBytes(size, size) }, { weight: 1, arbitrary: arbBytes(0, 20) });
}

/** fc.record may build null-prototype objects, which deepStrictEqual tells from decoded ones. */
const PLAIN = { noNullPrototype: true } as const;

export const arbWrappedKey: fc.Arbitrary<WrappedKey> = fc.record(
  { keyId: fc.oneof(fc.constant(0), arbU32), kwkId: fc.oneof(fc.constant(0), arbU32), encryptedKey: arbBytes(0, 48) },
  PLAIN,
);

// ---------- GSA ----------

export const arbSaPolicy: fc.Arbitrary<SaPolicy> = arbGroupProtocol.chain((protocol) =>
  fc
    .record({
      spi: arbSpiFor(protocol),
      source: arbTrafficSelector,
      destination: arbTrafficSelector,
      transforms: fc.array(arbTransform, { minLength: 1, maxLength: 6 }),
      attributes: fc.array(arbAttribute, { maxLength: 4 }),
    }, PLAIN)
    .map((p): SaPolicy => ({ kind: 'sa', protocol, ...p })),
);

/** The one encodable shape without transforms: nothing after the selectors. */
export const arbBareSaPolicy: fc.Arbitrary<SaPolicy> = arbSaPolicy.map((p) => ({ ...p, transforms: [], attributes: [] }));

export const arbGroupWidePolicy: fc.Arbitrary<GroupWidePolicy> = fc
  .array(arbAttribute, { maxLength: 4 })
  .map((attributes) => ({ kind: 'group-wide', attributes }));

export const arbGroupPolicy: fc.Arbitrary<GroupPolicy> = fc.oneof(
  { weight: 4, arbitrary: arbSaPolicy },
  { weight: 1, arbitrary: arbBareSaPolicy },
  { weight: 2, arbitrary: arbGroupWidePolicy },
);

export const arbGsaPayload: fc.Arbitrary<GsaPayload> = fc.record(
  { type: fc.constant(PayloadType.GSA), critical: fc.boolean(), policies: fc.array(arbGroupPolicy, { maxLength: 5 }) },
  PLAIN,
);

// ---------- KD ----------

/** SA_KEY carrying a wrapped key most of the time, any attribute sometimes. */
const arbGroupKeyBagAttribute = fc.oneof(
  { weight: 3, arbitrary: arbWrappedKey.map((k) => ({ type: GroupKeyBagAttr.SA_KEY, format: 'TLV' as const, value: encodeWrappedKey(k) })) },
  { weight: 1, arbitrary: arbAttribute },
);

const arbMemberKeyBagAttribute = fc.oneof(
  {
    weight: 3,
    arbitrary: arbWrappedKey.map((k) => ({ type: MemberKeyBagAttr.WRAP_KEY, format: 'TLV' as const, value: encodeWrappedKey(k) })),
  },
  { weight: 1, arbitrary: arbBytes(1, 48).map((v) => ({ type: MemberKeyBagAttr.AUTH_KEY, format: 'TLV' as const, value: v })) },
  { weight: 1, arbitrary: arbBytes(0, 4).map((v) => ({ type: MemberKeyBagAttr.GM_SENDER_ID, format: 'TLV' as const, value: v })) },
  { weight: 1, arbitrary: arbAttribute },
);

export const arbGroupKeyBag: fc.Arbitrary<GroupKeyBag> = arbGroupProtocol.chain((protocol) =>
  fc
    .record({ spi: arbSpiFor(protocol), attributes: fc.array(arbGroupKeyBagAttribute, { maxLength: 4 }) }, PLAIN)
    .map((b): GroupKeyBag => ({ kind: 'group', protocol, ...b })),
);

export const arbMemberKeyBag: fc.Arbitrary<MemberKeyBag> = fc
  .array(arbMemberKeyBagAttribute, { maxLength: 6 })
  .map((attributes) => ({ kind: 'member', attributes }));

export const arbKeyBag: fc.Arbitrary<KeyBag> = fc.oneof(arbGroupKeyBag, arbMemberKeyBag);

export const arbKdPayload: fc.Arbitrary<KdPayload> = fc.record(
  { type: fc.constant(PayloadType.KD), critical: fc.boolean(), keyBags: fc.array(arbKeyBag, { maxLength: 5 }) },
  PLAIN,
);
