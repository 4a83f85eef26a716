import { decodeAttributes, encodeAttributes, findAttribute, tlv, tv, type Attribute } from './attributes.ts';
import { Limits } from './errors.ts';
import { GsaAttr, GwpAttr, nameOf, PayloadType, ProtocolId } from './iana.ts';
import type { Reader } from './reader.ts';
import { decodeTrafficSelector, encodeTrafficSelector, type TrafficSelector } from './traffic-selector.ts';
import { decodeTransform, encodeTransform, type Transform } from './transform.ts';
import { EncodeError, type Writer } from './writer.ts';

/**
 * Group Security Association payload (RFC 9838 Section 4.4). The body is a
 * sequence of policy substructures; the first octet of each decides its kind
 * (Section 4.4.1): zero is the Group-wide policy, anything else is a GSA
 * policy whose first octet is its Security Protocol ID.
 *
 * GSA policy substructure (Section 4.4.2, Figure "GSA Policy Substructure
 * Format"):
 *
 *   |    Protocol   |   SPI Size    |            Length             |
 *   ~                              SPI                              ~
 *   ~                  Source Traffic Selector                      ~
 *   ~                Destination Traffic Selector                   ~
 *   ~                       <GSA Transforms>                        ~
 *   ~                       <GSA Attributes>                        ~
 *
 * Neither the transform list nor the attribute list has its own length or
 * count: the transforms end at the one whose Last Substruc is 0, and the
 * attributes fill the rest of Length. Each traffic selector is a single
 * RFC 7296 Section 3.13.1 substructure (no TS payload header, no count).
 *
 * Group-wide policy substructure (Section 4.4.3):
 *
 *   |  Protocol (0) |   RESERVED    |            Length             |
 *   ~                      <GW Policy Attributes>                   ~
 *
 * The decoder checks structure only; which transforms and attributes a
 * policy must or must not carry is validator.ts's job.
 */

/** A Rekey SA (GIKE_UPDATE, "KEK") or Data-Security SA (AH/ESP, "TEK") policy. */
export interface SaPolicy {
  readonly kind: 'sa';
  /** Security Protocol ID; values other than GIKE_UPDATE/AH/ESP are kept for the validator to reject. */
  readonly protocol: number;
  /** SPI as sent; its length is the SPI Size field. */
  readonly spi: Buffer;
  readonly source: TrafficSelector;
  readonly destination: TrafficSelector;
  /** In wire order. Empty only when nothing follows the traffic selectors. */
  readonly transforms: readonly Transform[];
  /** GSA attributes (Section 4.4.2.2) in wire order, unknown ones included. */
  readonly attributes: readonly Attribute[];
}

/** Group-wide policy (Section 4.4.3): attributes that belong to no single SA. */
export interface GroupWidePolicy {
  readonly kind: 'group-wide';
  readonly attributes: readonly Attribute[];
}

export type GroupPolicy = SaPolicy | GroupWidePolicy;

export interface GsaPayload {
  readonly type: typeof PayloadType.GSA;
  readonly critical: boolean;
  readonly policies: readonly GroupPolicy[];
}

const SUBSTRUCTURE_HEADER = 4;
const GROUP_WIDE_PROTOCOL = ProtocolId.NONE;

/** `policy[2] (ESP)` / `policy[3] (GW)`, as used in error paths. */
function policySegment(index: number, protocol: number): string {
  const label = protocol === GROUP_WIDE_PROTOCOL ? 'GW' : nameOf(ProtocolId, protocol, 'protocol');
  return `policy[${index}] (${label})`;
}

export function decodeGsaBody(r: Reader, critical: boolean): GsaPayload {
  const policies: GroupPolicy[] = [];
  while (!r.atEnd) {
    if (policies.length >= Limits.maxPolicies) r.fail('limit', `more than ${Limits.maxPolicies} policies`);
    policies.push(decodeGroupPolicy(r, policies.length + 1));
  }
  return { type: PayloadType.GSA, critical, policies };
}

function decodeGroupPolicy(r: Reader, index: number): GroupPolicy {
  const protocol = r.remaining >= 1 ? r.buf[r.offset]! : -1;
  const segment = policySegment(index, protocol);
  const head = r.child(segment);
  head.u8('protocol');
  const spiSize = head.u8(protocol === GROUP_WIDE_PROTOCOL ? 'reserved' : 'spi size');
  const length = head.u16('length');
  // For the GW policy the second octet is RESERVED ("MUST be ignored on receipt").
  const minimum = SUBSTRUCTURE_HEADER + (protocol === GROUP_WIDE_PROTOCOL ? 0 : spiSize);
  if (length < minimum) head.fail('bad-length', `length ${length} < ${minimum}`);
  const body = r.sub(length, segment);
  body.skip(SUBSTRUCTURE_HEADER);
  if (protocol === GROUP_WIDE_PROTOCOL) return { kind: 'group-wide', attributes: decodeAttributes(body) };

  const spi = body.bytes(spiSize, 'spi');
  const source = decodeTrafficSelector(body, 'source TS');
  const destination = decodeTrafficSelector(body, 'destination TS');
  const transforms = decodeTransformChain(body);
  const attributes = decodeAttributes(body);
  return { kind: 'sa', protocol, spi, source, destination, transforms, attributes };
}

/** Transforms up to and including the one marked last (Last Substruc 0). */
function decodeTransformChain(r: Reader): Transform[] {
  const transforms: Transform[] = [];
  if (r.atEnd) return transforms;
  for (;;) {
    if (transforms.length >= Limits.maxTransforms) r.fail('limit', `more than ${Limits.maxTransforms} transforms`);
    const { transform, last } = decodeTransform(r, transforms.length + 1);
    transforms.push(transform);
    if (last) return transforms;
    if (r.atEnd) r.fail('truncated', `transform[${transforms.length}] says more transforms follow`);
  }
}

export function encodeGsaBody(w: Writer, p: GsaPayload): void {
  for (const policy of p.policies) encodeGroupPolicy(w, policy);
}

function encodeGroupPolicy(w: Writer, policy: GroupPolicy): void {
  const start = w.length;
  if (policy.kind === 'group-wide') {
    w.u8(GROUP_WIDE_PROTOCOL).u8(0);
    const lenAt = w.placeholder16();
    encodeAttributes(w, policy.attributes);
    w.patch16(lenAt, w.length - start);
    return;
  }
  if (policy.protocol === GROUP_WIDE_PROTOCOL) throw new EncodeError('GSA policy protocol 0 is the group-wide policy');
  // With no transforms the first attribute would be read as a transform.
  if (policy.transforms.length === 0 && policy.attributes.length > 0) {
    throw new EncodeError('GSA policy with attributes needs at least one transform');
  }
  w.u8(policy.protocol).u8(policy.spi.length);
  const lenAt = w.placeholder16();
  w.bytes(policy.spi);
  encodeTrafficSelector(w, policy.source);
  encodeTrafficSelector(w, policy.destination);
  policy.transforms.forEach((t, i) => encodeTransform(w, t, i === policy.transforms.length - 1));
  encodeAttributes(w, policy.attributes);
  w.patch16(lenAt, w.length - start);
}

// ---------------------------------------------------------------------------
// Classification and typed attribute accessors. The payload keeps attributes
// as a list so that unknown and repeated ones round-trip; these read the
// registered ones (first instance; repetition is a validator finding).

export function isKekPolicy(p: GroupPolicy): p is SaPolicy {
  return p.kind === 'sa' && p.protocol === ProtocolId.GIKE_UPDATE;
}
export function isTekPolicy(p: GroupPolicy): p is SaPolicy {
  return p.kind === 'sa' && (p.protocol === ProtocolId.AH || p.protocol === ProtocolId.ESP);
}

/** A TLV attribute's 4-octet value, or undefined if absent or not 4 octets. */
function u32Attribute(attrs: readonly Attribute[], type: number): number | undefined {
  const a = findAttribute(attrs, type);
  return a?.format === 'TLV' && a.value.length === 4 ? a.value.readUInt32BE(0) : undefined;
}
function u16Attribute(attrs: readonly Attribute[], type: number): number | undefined {
  const a = findAttribute(attrs, type);
  return a?.format === 'TV' ? a.value : undefined;
}
function u32Value(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** GSA_KEY_LIFETIME in seconds (Section 4.4.2.2.1). */
export function keyLifetimeSeconds(p: SaPolicy): number | undefined {
  return u32Attribute(p.attributes, GsaAttr.GSA_KEY_LIFETIME);
}
/** GSA_INITIAL_MESSAGE_ID (Section 4.4.2.2.2); the GM assumes 0 when absent. */
export function initialMessageId(p: SaPolicy): number | undefined {
  return u32Attribute(p.attributes, GsaAttr.GSA_INITIAL_MESSAGE_ID);
}
/** Every GSA_NEXT_SPI value (Section 4.4.2.2.3). */
export function nextSpis(p: SaPolicy): Buffer[] {
  return p.attributes.flatMap((a) =>
    a.type === GsaAttr.GSA_NEXT_SPI && a.format === 'TLV' ? [Buffer.from(a.value)] : [],
  );
}
export function keyLifetimeAttribute(seconds: number): Attribute {
  return tlv(GsaAttr.GSA_KEY_LIFETIME, u32Value(seconds));
}
export function initialMessageIdAttribute(messageId: number): Attribute {
  return tlv(GsaAttr.GSA_INITIAL_MESSAGE_ID, u32Value(messageId));
}
export function nextSpiAttribute(spi: Buffer): Attribute {
  return tlv(GsaAttr.GSA_NEXT_SPI, Buffer.from(spi));
}

/** GWP_ATD in seconds (Section 4.4.3.1.1). */
export function activationTimeDelay(p: GroupWidePolicy): number | undefined {
  return u16Attribute(p.attributes, GwpAttr.GWP_ATD);
}
/** GWP_DTD in seconds (Section 4.4.3.1.1). */
export function deactivationTimeDelay(p: GroupWidePolicy): number | undefined {
  return u16Attribute(p.attributes, GwpAttr.GWP_DTD);
}
/** GWP_SENDER_ID_BITS (Section 4.4.3.1.2). */
export function senderIdBits(p: GroupWidePolicy): number | undefined {
  return u16Attribute(p.attributes, GwpAttr.GWP_SENDER_ID_BITS);
}
export function activationTimeDelayAttribute(seconds: number): Attribute {
  return tv(GwpAttr.GWP_ATD, seconds);
}
export function deactivationTimeDelayAttribute(seconds: number): Attribute {
  return tv(GwpAttr.GWP_DTD, seconds);
}
export function senderIdBitsAttribute(bits: number): Attribute {
  return tv(GwpAttr.GWP_SENDER_ID_BITS, bits);
}
