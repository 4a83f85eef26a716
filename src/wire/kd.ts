import { decodeAttributes, encodeAttributes, findAttribute, tlv, type Attribute } from './attributes.ts';
import { Limits } from './errors.ts';
import { MemberKeyBagAttr, nameOf, PayloadType, ProtocolId } from './iana.ts';
import type { Reader } from './reader.ts';
import { EncodeError, type Writer } from './writer.ts';

/**
 * Key Download payload (RFC 9838 Section 4.5): a sequence of key bags whose
 * first octet decides the kind (Section 4.5.1): zero is a Member Key Bag,
 * anything else is the Security Protocol ID of a Group Key Bag.
 *
 * Group Key Bag (Section 4.5.2):
 *
 *   |    Protocol   |   SPI Size    |            Length             |
 *   ~                              SPI                              ~
 *   ~                  <Group Key Bag Attributes>                   ~
 *
 * Member Key Bag (Section 4.5.3):
 *
 *   |  Protocol (0) |   RESERVED    |            Length             |
 *   ~                  <Member Key Bag Attributes>                  ~
 *
 * Attribute values stay raw here (SA_KEY / WRAP_KEY hold wrapped keys, see
 * wrapped-key.ts); what may appear where is validator.ts's job.
 */

/** Keys for one SA, matched to its GSA policy by (protocol, SPI). */
export interface GroupKeyBag {
  readonly kind: 'group';
  readonly protocol: number;
  /** SPI as sent; its length is the SPI Size field. */
  readonly spi: Buffer;
  readonly attributes: readonly Attribute[];
}

/** Keys and parameters for one member, tied to no SA. */
export interface MemberKeyBag {
  readonly kind: 'member';
  readonly attributes: readonly Attribute[];
}

export type KeyBag = GroupKeyBag | MemberKeyBag;

export interface KdPayload {
  readonly type: typeof PayloadType.KD;
  readonly critical: boolean;
  readonly keyBags: readonly KeyBag[];
}

const SUBSTRUCTURE_HEADER = 4;
const MEMBER_PROTOCOL = ProtocolId.NONE;

/** `key bag[1] (ESP)` / `key bag[2] (member)`, as used in error paths. */
function keyBagSegment(index: number, protocol: number): string {
  const label = protocol === MEMBER_PROTOCOL ? 'member' : nameOf(ProtocolId, protocol, 'protocol');
  return `key bag[${index}] (${label})`;
}

export function decodeKdBody(r: Reader, critical: boolean): KdPayload {
  const keyBags: KeyBag[] = [];
  while (!r.atEnd) {
    if (keyBags.length >= Limits.maxKeyBags) r.fail('limit', `more than ${Limits.maxKeyBags} key bags`);
    keyBags.push(decodeKeyBag(r, keyBags.length + 1));
  }
  return { type: PayloadType.KD, critical, keyBags };
}

function decodeKeyBag(r: Reader, index: number): KeyBag {
  const protocol = r.remaining >= 1 ? r.buf[r.offset]! : -1;
  const segment = keyBagSegment(index, protocol);
  const head = r.child(segment);
  head.u8('protocol');
  const spiSize = head.u8(protocol === MEMBER_PROTOCOL ? 'reserved' : 'spi size');
  const length = head.u16('length');
  // For the member key bag the second octet is RESERVED ("MUST be ignored on receipt").
  const minimum = SUBSTRUCTURE_HEADER + (protocol === MEMBER_PROTOCOL ? 0 : spiSize);
  if (length < minimum) head.fail('bad-length', `length ${length} < ${minimum}`);
  const body = r.sub(length, segment);
  body.skip(SUBSTRUCTURE_HEADER);
  if (protocol === MEMBER_PROTOCOL) return { kind: 'member', attributes: decodeAttributes(body) };
  const spi = body.bytes(spiSize, 'spi');
  return { kind: 'group', protocol, spi, attributes: decodeAttributes(body) };
}

export function encodeKdBody(w: Writer, p: KdPayload): void {
  for (const bag of p.keyBags) encodeKeyBag(w, bag);
}

function encodeKeyBag(w: Writer, bag: KeyBag): void {
  const start = w.length;
  if (bag.kind === 'member') {
    w.u8(MEMBER_PROTOCOL).u8(0);
  } else {
    if (bag.protocol === MEMBER_PROTOCOL) throw new EncodeError('group key bag protocol 0 is the member key bag');
    w.u8(bag.protocol).u8(bag.spi.length);
  }
  const lenAt = w.placeholder16();
  if (bag.kind === 'group') w.bytes(bag.spi);
  encodeAttributes(w, bag.attributes);
  w.patch16(lenAt, w.length - start);
}

// ---------------------------------------------------------------------------
// Typed accessors for the member key bag (wrapped keys: see wrapped-key.ts).

/** AUTH_KEY: the GCKS's DER SubjectPublicKeyInfo for GSA_REKEY signatures (Section 4.5.3.2). */
export function authKeyOf(bag: MemberKeyBag): Buffer | undefined {
  const a = findAttribute(bag.attributes, MemberKeyBagAttr.AUTH_KEY);
  return a?.format === 'TLV' ? Buffer.from(a.value) : undefined;
}

/** Every GM_SENDER_ID value, raw (Section 4.5.3.3 leaves the value's size to the policy). */
export function senderIdsOf(bag: MemberKeyBag): Buffer[] {
  return bag.attributes.flatMap((a) =>
    a.type === MemberKeyBagAttr.GM_SENDER_ID && a.format === 'TLV' ? [Buffer.from(a.value)] : [],
  );
}

export function authKeyAttribute(spki: Buffer): Attribute {
  return tlv(MemberKeyBagAttr.AUTH_KEY, Buffer.from(spki));
}

export function senderIdAttribute(senderId: Buffer): Attribute {
  return tlv(MemberKeyBagAttr.GM_SENDER_ID, Buffer.from(senderId));
}
