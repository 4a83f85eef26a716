import type { Attribute } from './attributes.ts';
import { occurrence, occurrenceRule, type TableAttribute, type ValidationContext } from './attribute-table.ts';
import { DecodeError, ValidationError } from './errors.ts';
import { ExchangeType, GroupKeyBagAttr, MemberKeyBagAttr, nameOf, ProtocolId } from './iana.ts';
import type { GroupKeyBag, KdPayload, KeyBag } from './kd.ts';
import { joinPath } from './reader.ts';
import { senderNoteDetail, SPI_SIZE, tableNote } from './validate-gsa.ts';
import { decodeWrappedKey, SA_KEY_ID, DEFAULT_KWK_ID, type WrappedKey } from './wrapped-key.ts';

/**
 * Rules of RFC 9838 Sections 4.5 and 5 (and NOTES.md point 1) for one KD
 * payload. Every finding is returned; rule names are stable.
 */

type Report = (rule: string, path: string, detail: string) => void;

/** DER SEQUENCE tag: the first octet of any SubjectPublicKeyInfo. */
const DER_SEQUENCE = 0x30;

const MEMBER_ATTRIBUTES: readonly { type: number; name: TableAttribute }[] = [
  { type: MemberKeyBagAttr.WRAP_KEY, name: 'WRAP_KEY' },
  { type: MemberKeyBagAttr.AUTH_KEY, name: 'AUTH_KEY' },
  { type: MemberKeyBagAttr.GM_SENDER_ID, name: 'GM_SENDER_ID' },
];

function protocolName(protocol: number): string {
  return nameOf(ProtocolId, protocol, 'protocol');
}

export function validateKd(kd: KdPayload, ctx: ValidationContext, path = 'KD'): ValidationError[] {
  const out: ValidationError[] = [];
  const report: Report = (rule, p, detail) => out.push(new ValidationError(rule, p, detail));
  const segment = (i: number, bag: KeyBag): string =>
    joinPath(path, `key bag[${i + 1}] (${bag.kind === 'member' ? 'member' : protocolName(bag.protocol)})`);

  kd.keyBags.forEach((bag, i) => {
    if (bag.kind === 'group') checkGroupKeyBag(bag, ctx, segment(i, bag), report);
  });
  checkMemberKeyBags(kd.keyBags, ctx, path, segment, report);
  return out;
}

function checkGroupKeyBag(bag: GroupKeyBag, ctx: ValidationContext, path: string, report: Report): void {
  const spiSize = SPI_SIZE[bag.protocol];
  if (spiSize === undefined) {
    report('RFC9838 4.5.2: key bag protocol must be GIKE_UPDATE, AH or ESP', path, `protocol ${bag.protocol}`);
    return;
  }
  const proto = protocolName(bag.protocol);
  if (bag.spi.length !== spiSize) {
    report(`RFC9838 4.5.2: ${proto} SPI Size must be ${spiSize}`, path, `SPI Size ${bag.spi.length}`);
  }
  const rekeySa = bag.protocol === ProtocolId.GIKE_UPDATE;
  const saKeys = bag.attributes.filter((a) => a.type === GroupKeyBagAttr.SA_KEY);
  const rule = occurrenceRule('SA_KEY', occurrence('SA_KEY', ctx, rekeySa), saKeys.length, ctx.exchange);
  if (rule) {
    const kind = rekeySa ? `Rekey SA, key tree ${ctx.keyTree ? 'yes' : 'no'}` : 'Data-Security SA';
    report(rule, path, `${saKeys.length} found (${kind})`);
  }

  const kwkIds = new Set<number>();
  bag.attributes.forEach((a) => {
    const at = joinPath(path, `attr ${a.type}`);
    if (a.type === 0) return report('RFC9838 4.5.2: Group Key Bag attribute type 0 is reserved', at, 'type 0');
    if (a.type !== GroupKeyBagAttr.SA_KEY) return; // Unregistered or private use.
    const key = readWrappedKey(a, 'SA_KEY', at, report);
    if (!key) return;
    if (key.keyId !== SA_KEY_ID) report('RFC9838 4.5.2.1: SA_KEY Key ID must be zero', at, `Key ID ${key.keyId}`);
    if (!rekeySa && key.kwkId !== DEFAULT_KWK_ID) {
      report('RFC9838 4.5.2.1: Data-Security SA_KEY KWK ID must be zero', at, `KWK ID ${key.kwkId}`);
    }
    // Section 3.3: several SA_KEYs carry the same keying material under different KWKs.
    if (kwkIds.has(key.kwkId)) report('RFC9838 3.3: SA_KEY attributes must use distinct KWKs', at, `KWK ID ${key.kwkId} repeated`);
    kwkIds.add(key.kwkId);
  });
}

/** Decodes a TLV wrapped key, reporting instead of throwing. */
function readWrappedKey(a: Attribute, name: string, path: string, report: Report): WrappedKey | undefined {
  if (a.format !== 'TLV') {
    report(`RFC9838 4.5: ${name} must be TLV`, path, 'TV format');
    return undefined;
  }
  let key: WrappedKey;
  try {
    key = decodeWrappedKey(a.value, path);
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
    report('RFC9838 4.5.4: a wrapped key starts with Key ID and KWK ID', path, `${a.value.length} octets`);
    return undefined;
  }
  if (key.encryptedKey.length === 0) report('RFC9838 4.5.4: Encrypted Key must not be empty', path, 'no key bits');
  return key;
}

/** Member Key Bag rules; table counts are per member, i.e. over all member bags of the KD. */
function checkMemberKeyBags(
  bags: readonly KeyBag[],
  ctx: ValidationContext,
  path: string,
  segment: (i: number, bag: KeyBag) => string,
  report: Report,
): void {
  const attrs: { attr: Attribute; path: string }[] = [];
  let firstPath: string | undefined;
  bags.forEach((bag, i) => {
    if (bag.kind !== 'member') return;
    const at = segment(i, bag);
    firstPath ??= at;
    if (ctx.exchange === ExchangeType.GSA_INBAND_REKEY) {
      report('RFC9838 4.5.3: Member Key Bag must not be sent in GSA_INBAND_REKEY', at, 'member key bag');
    }
    for (const attr of bag.attributes) attrs.push({ attr, path: joinPath(at, `attr ${attr.type}`) });
  });

  for (const { type, name } of MEMBER_ATTRIBUTES) {
    const count = attrs.filter((a) => a.attr.type === type).length;
    const rule = occurrenceRule(name, occurrence(name, ctx), count, ctx.exchange);
    if (rule) {
      const why = name === 'GM_SENDER_ID' ? senderNoteDetail(ctx) : `${tableNote(ctx)}, ${conditionDetail(name, ctx)}`;
      report(rule, firstPath ?? path, `${count} found (${why})`);
    }
    if (name === 'GM_SENDER_ID' && ctx.senderIdsRequested !== undefined) {
      const allowed = Math.max(1, ctx.senderIdsRequested);
      if (count > allowed) {
        report('RFC9838 4.5.3.3: GM_SENDER_ID must not exceed the number requested', firstPath ?? path, `${count} > ${allowed}`);
      }
    }
  }

  for (const { attr, path: at } of attrs) checkMemberAttribute(attr, ctx, at, report);
}

function conditionDetail(name: TableAttribute, ctx: ValidationContext): string {
  if (name === 'WRAP_KEY') return `key tree ${ctx.keyTree ? 'yes' : 'no'}`;
  return `GCAUTH ${ctx.gcauth ?? 'none'}`;
}

function checkMemberAttribute(a: Attribute, ctx: ValidationContext, path: string, report: Report): void {
  if (a.type === 0) return report('RFC9838 4.5.3: Member Key Bag attribute type 0 is reserved', path, 'type 0');
  if (
    ctx.exchange === ExchangeType.GSA_REKEY &&
    a.type !== MemberKeyBagAttr.WRAP_KEY &&
    a.type !== MemberKeyBagAttr.AUTH_KEY &&
    a.type !== MemberKeyBagAttr.GM_SENDER_ID // reported by the Section 5 table rule
  ) {
    report('RFC9838 4.5.3 (NOTES 1): Member Key Bag in GSA_REKEY carries only WRAP_KEY and AUTH_KEY', path, `attribute ${a.type}`);
  }
  const known = MEMBER_ATTRIBUTES.find((k) => k.type === a.type);
  if (!known) return;
  if (a.type === MemberKeyBagAttr.WRAP_KEY) {
    const key = readWrappedKey(a, 'WRAP_KEY', path, report);
    if (key?.keyId === SA_KEY_ID) report('RFC9838 4.5.3.1: WRAP_KEY Key ID must not be zero', path, 'Key ID 0');
    return;
  }
  if (a.format !== 'TLV') return report(`RFC9838 4.5: ${known.name} must be TLV`, path, 'TV format');
  if (a.type === MemberKeyBagAttr.AUTH_KEY && a.value[0] !== DER_SEQUENCE) {
    report('RFC9838 4.5.3.2: AUTH_KEY must be a DER SubjectPublicKeyInfo', path, `${a.value.length} octets`);
  }
}
