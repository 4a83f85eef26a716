import type { Attribute } from '../wire/attributes.ts';
import { DecodeError } from '../wire/errors.ts';
import type { GroupPolicy } from '../wire/gsa.ts';
import {
  AuthMethod,
  CertEncoding,
  EncrId,
  ExchangeType,
  GcauthId,
  GroupKeyBagAttr,
  GsaAttr,
  GwpAttr,
  HashAlgorithm,
  IdType,
  IntegId,
  KeId,
  KwaId,
  MemberKeyBagAttr,
  nameOf,
  NotifyType,
  PayloadType,
  PrfId,
  ProtocolId,
  SnId,
  TransformAttr,
  TransformType,
  TsType,
} from '../wire/iana.ts';
import type { KeyBag } from '../wire/kd.ts';
import { messageSummary, type IkeMessage } from '../wire/message.ts';
import { isUnknownPayload, payloadName, payloadTypeName, type Payload } from '../wire/payload.ts';
import type { NotifyData } from '../wire/payloads/notify.ts';
import type { Proposal } from '../wire/payloads/sa.ts';
import type { TrafficSelector } from '../wire/traffic-selector.ts';
import type { Transform } from '../wire/transform.ts';
import { decodeWrappedKey } from '../wire/wrapped-key.ts';

/**
 * Turns decoded messages into an indented text tree for people and a JSON
 * value for programs. Pure: no I/O, so tests can check the exact lines.
 * Names come from the IANA tables; unknown values print as `UNKNOWN(n)`.
 */

/** Where a decoded item came from: a capture frame, a hex argument or a file. */
export interface ItemOrigin {
  readonly source: string;
  /** 1-based position among several messages of one hex argument or file. */
  readonly index?: number | undefined;
  readonly frame?: number;
  readonly time?: number;
  readonly src?: string;
  readonly srcPort?: number;
  readonly dst?: string;
  readonly dstPort?: number;
  /** 4 when a non-ESP marker was stripped. */
  readonly markerLength?: number;
}

export type ItemResult =
  | {
      readonly kind: 'ike';
      readonly message: IkeMessage;
      readonly octets: number;
      /** Each outer payload's Payload Length as on the wire (see wirePayloadLengths). */
      readonly payloadLengths?: readonly number[];
    }
  /** A bare payload chain (e.g. decrypted SK content), decoded with --chain. */
  | {
      readonly kind: 'chain';
      readonly firstType: number;
      readonly payloads: readonly Payload[];
      readonly octets: number;
      readonly payloadLengths?: readonly number[];
    }
  | { readonly kind: 'error'; readonly error: DecodeError; readonly octets: number }
  | { readonly kind: 'internal-error'; readonly detail: string; readonly octets: number }
  | { readonly kind: 'esp'; readonly spi: number; readonly octets: number }
  | { readonly kind: 'nat-keepalive' }
  | { readonly kind: 'invalid'; readonly reason: string };

export interface DecodedItem {
  readonly origin: ItemOrigin;
  readonly result: ItemResult;
}

const INDENT = '  ';
/** Octet strings longer than this are shortened in the tree (never in JSON). */
const HEX_PREVIEW = 32;

export function hexPreview(b: Uint8Array): string {
  const hex = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
  if (b.length === 0) return '(empty)';
  if (b.length <= HEX_PREVIEW) return hex;
  return `${hex.slice(0, HEX_PREVIEW * 2)}... (${b.length} octets)`;
}

/** `NAME (n)` from an IANA table; `UNKNOWN(n)` if not registered. */
function named(table: Readonly<Record<string, number>>, value: number): string {
  const name = nameOf(table, value);
  return name.startsWith('UNKNOWN(') ? name : `${name} (${value})`;
}

function protocolName(id: number): string {
  return id === 0 ? 'none (0)' : named(ProtocolId, id);
}

/** The table naming the transform IDs of a transform type. */
function transformIdTable(type: number): Readonly<Record<string, number>> | undefined {
  switch (type) {
    case TransformType.ENCR:
      return EncrId;
    case TransformType.PRF:
      return PrfId;
    case TransformType.INTEG:
      return IntegId;
    case TransformType.SN:
      return SnId;
    case TransformType.KWA:
      return KwaId;
    case TransformType.GCAUTH:
      return GcauthId;
    default:
      // KE and ADDKE1..7 share the key exchange method registry.
      return type === TransformType.KE || (type >= TransformType.ADDKE1 && type <= TransformType.ADDKE7) ? KeId : undefined;
  }
}

/** A tree under construction: lines with their depth. */
class Tree {
  readonly lines: string[] = [];
  line(depth: number, text: string): void {
    this.lines.push(INDENT.repeat(depth) + text);
  }
  field(depth: number, label: string, value: string): void {
    this.line(depth, `${label}: ${value}`);
  }
}

function flagsText(h: IkeMessage['header']): string {
  const names = [h.flags.initiator ? 'Initiator' : '', h.flags.version ? 'Version' : '', h.flags.response ? 'Response' : '']
    .filter(Boolean)
    .join(', ');
  const bits = (h.flags.initiator ? 0x08 : 0) | (h.flags.version ? 0x10 : 0) | (h.flags.response ? 0x20 : 0);
  return `0x${bits.toString(16).padStart(2, '0')}${names ? ` (${names})` : ''}`;
}

/**
 * Octets of each payload of the outer chain, as declared on the wire. Only
 * for bytes that decoded into `m` (the chain is known to be consistent).
 */
export function wirePayloadLengths(raw: Uint8Array, m: IkeMessage): number[] {
  return chainPayloadLengths(raw, 28, m.payloads.length);
}

/** Payload Length of each of `count` chained payloads starting at `start` in `raw`. */
export function chainPayloadLengths(raw: Uint8Array, start: number, count: number): number[] {
  const out: number[] = [];
  let at = start;
  for (let i = 0; i < count && at + 4 <= raw.length; i++) {
    const len = (raw[at + 2]! << 8) | raw[at + 3]!;
    out.push(len);
    at += len;
  }
  return out;
}

/** The tree for one message: header, then each payload with its fields. */
export function renderMessage(m: IkeMessage, payloadLengths?: readonly number[]): string[] {
  const t = new Tree();
  const h = m.header;
  t.line(0, messageSummary(m).text);
  t.line(1, 'header');
  t.field(2, "initiator's SPI", h.spiI.toString('hex'));
  t.field(2, "responder's SPI", h.spiR.toString('hex'));
  t.field(2, 'next payload', payloadRef(h.nextPayload));
  t.field(2, 'version', `${h.majorVersion}.${h.minorVersion}`);
  t.field(2, 'exchange type', named(ExchangeType, h.exchangeType));
  t.field(2, 'flags', flagsText(h));
  t.field(2, 'message ID', String(h.messageId));
  t.field(2, 'length', String(h.length));
  m.payloads.forEach((p, i) => renderPayload(t, 1, p, payloadLengths?.[i]));
  return t.lines;
}

/** Payloads of a chain decoded on its own (e.g. the decrypted content of SK). */
export function renderPayloads(payloads: readonly Payload[], depth = 0, payloadLengths?: readonly number[]): string[] {
  const t = new Tree();
  payloads.forEach((p, i) => renderPayload(t, depth, p, payloadLengths?.[i]));
  return t.lines;
}

function payloadRef(type: number): string {
  return type === 0 ? 'NONE (0)' : `${payloadTypeName(type)} (${type})`;
}

function renderPayload(t: Tree, d: number, p: Payload, length: number | undefined): void {
  const head = `${payloadName(p)} (${p.type})${length !== undefined ? `, ${length} octets` : ''}${p.critical ? ', critical' : ''}`;
  if (isUnknownPayload(p)) {
    t.line(d, `${head}, not understood (skipped)`);
    t.field(d + 1, 'body', hexPreview(p.body));
    return;
  }
  switch (p.type) {
    case PayloadType.SA:
      t.line(d, head);
      p.proposals.forEach((prop) => renderProposal(t, d + 1, prop));
      return;
    case PayloadType.KE:
      t.line(d, head);
      t.field(d + 1, 'key exchange method', named(KeId, p.group));
      t.field(d + 1, 'key exchange data', hexPreview(p.data));
      return;
    case PayloadType.IDi:
    case PayloadType.IDr:
    case PayloadType.IDg:
      t.line(d, head);
      t.field(d + 1, 'ID type', named(IdType, p.idType));
      t.field(d + 1, 'data', idText(p.idType, p.data));
      return;
    case PayloadType.CERT:
      t.line(d, head);
      t.field(d + 1, 'encoding', named(CertEncoding, p.encoding));
      t.field(d + 1, 'data', hexPreview(p.data));
      return;
    case PayloadType.CERTREQ:
      t.line(d, head);
      t.field(d + 1, 'encoding', named(CertEncoding, p.encoding));
      t.field(d + 1, 'authority', hexPreview(p.authority));
      return;
    case PayloadType.AUTH:
      t.line(d, head);
      t.field(d + 1, 'method', named(AuthMethod, p.method));
      t.field(d + 1, 'data', hexPreview(p.data));
      return;
    case PayloadType.NONCE:
      t.line(d, head);
      t.field(d + 1, 'nonce', hexPreview(p.nonce));
      return;
    case PayloadType.NOTIFY:
      t.line(d, head);
      t.field(d + 1, 'notify type', named(NotifyType, p.notifyType));
      t.field(d + 1, 'protocol', protocolName(p.protocolId));
      if (p.spi.length > 0) t.field(d + 1, 'SPI', p.spi.toString('hex'));
      renderNotifyData(t, d + 1, p.data);
      return;
    case PayloadType.DELETE:
      t.line(d, head);
      t.field(d + 1, 'protocol', protocolName(p.protocolId));
      t.field(d + 1, 'SPI size', String(p.spiSize));
      t.field(d + 1, 'SPIs', p.spis.length === 0 ? '(none)' : p.spis.map((s) => s.toString('hex')).join(' '));
      return;
    case PayloadType.VENDOR_ID:
      t.line(d, head);
      t.field(d + 1, 'vendor ID', hexPreview(p.vendorId));
      return;
    case PayloadType.TSi:
    case PayloadType.TSr:
      t.line(d, head);
      p.selectors.forEach((s, i) => t.field(d + 1, `TS[${i + 1}]`, tsText(s)));
      return;
    case PayloadType.SK:
      t.line(d, `${head}: encrypted, ${p.encrypted.length} octets (inner first payload ${payloadRef(p.innerFirst)})`);
      return;
    case PayloadType.SKF:
      t.line(
        d,
        `${head}: fragment ${p.fragmentNumber} of ${p.totalFragments}, encrypted, ${p.encrypted.length} octets` +
          (p.fragmentNumber === 1 ? ` (inner first payload ${payloadRef(p.innerFirst)})` : ''),
      );
      return;
    case PayloadType.GSA:
      t.line(d, head);
      p.policies.forEach((pol, i) => renderPolicy(t, d + 1, pol, i + 1));
      return;
    case PayloadType.KD:
      t.line(d, head);
      p.keyBags.forEach((bag, i) => renderKeyBag(t, d + 1, bag, i + 1));
      return;
  }
}

function renderProposal(t: Tree, d: number, p: Proposal): void {
  const spi = p.spi.length > 0 ? `SPI ${p.spi.toString('hex')}` : 'no SPI';
  t.line(d, `proposal ${p.num}: ${protocolName(p.protocolId)}, ${spi}, ${p.transforms.length} transform(s)`);
  for (const tr of p.transforms) renderTransform(t, d + 1, tr);
}

function renderTransform(t: Tree, d: number, tr: Transform): void {
  const table = transformIdTable(tr.type);
  const id = table ? named(table, tr.id) : String(tr.id);
  t.line(d, `${nameOf(TransformType, tr.type)} ${id}`);
  renderAttributes(t, d + 1, tr.attributes, TransformAttr);
}

function renderAttributes(
  t: Tree,
  d: number,
  attrs: readonly Attribute[],
  table: Readonly<Record<string, number>>,
  special?: (a: Attribute) => boolean,
): void {
  for (const a of attrs) {
    if (special?.(a)) continue;
    const name = nameOf(table, a.type, 'attr');
    if (a.format === 'TV') {
      t.line(d, `${name} (${a.type}) = ${a.value}`);
    } else {
      const num = a.value.length > 0 && a.value.length <= 4 ? ` = ${a.value.readUIntBE(0, a.value.length)}` : '';
      t.line(d, `${name} (${a.type}) = ${hexPreview(a.value)}${num}`);
    }
  }
}

function renderNotifyData(t: Tree, d: number, data: NotifyData): void {
  switch (data.kind) {
    case 'empty':
      return;
    case 'sender-id-count':
      t.field(d, 'Sender-IDs requested', String(data.count));
      return;
    case 'cookie':
      t.field(d, 'cookie', hexPreview(data.cookie));
      return;
    case 'nat-hash':
      t.field(d, 'SHA-1 hash', hexPreview(data.hash));
      return;
    case 'hash-algorithms':
      t.field(d, 'hash algorithms', data.algorithms.map((a) => named(HashAlgorithm, a)).join(', ') || '(none)');
      return;
    case 'ke-method':
      t.field(d, 'accepted key exchange method', named(KeId, data.group));
      return;
    case 'payload-type':
      t.field(d, 'payload type', payloadRef(data.payloadType));
      return;
    case 'raw':
      if (data.data.length > 0) t.field(d, 'data', hexPreview(data.data));
      return;
  }
}

function renderPolicy(t: Tree, d: number, pol: GroupPolicy, index: number): void {
  if (pol.kind === 'group-wide') {
    t.line(d, `policy ${index}: group-wide`);
    renderAttributes(t, d + 1, pol.attributes, GwpAttr);
    return;
  }
  const role = pol.protocol === ProtocolId.GIKE_UPDATE ? ', Rekey SA' : ', Data-Security SA';
  t.line(d, `policy ${index}: ${protocolName(pol.protocol)}${role}, SPI ${pol.spi.length > 0 ? pol.spi.toString('hex') : '(none)'}`);
  t.field(d + 1, 'source', tsText(pol.source));
  t.field(d + 1, 'destination', tsText(pol.destination));
  for (const tr of pol.transforms) renderTransform(t, d + 1, tr);
  renderAttributes(t, d + 1, pol.attributes, GsaAttr);
}

function renderKeyBag(t: Tree, d: number, bag: KeyBag, index: number): void {
  if (bag.kind === 'member') {
    t.line(d, `key bag ${index}: member`);
    renderAttributes(t, d + 1, bag.attributes, MemberKeyBagAttr, (a) =>
      a.type === MemberKeyBagAttr.WRAP_KEY ? renderWrappedKey(t, d + 1, 'WRAP_KEY', a) : false,
    );
    return;
  }
  t.line(d, `key bag ${index}: group, ${protocolName(bag.protocol)}, SPI ${bag.spi.length > 0 ? bag.spi.toString('hex') : '(none)'}`);
  renderAttributes(t, d + 1, bag.attributes, GroupKeyBagAttr, (a) =>
    a.type === GroupKeyBagAttr.SA_KEY ? renderWrappedKey(t, d + 1, 'SA_KEY', a) : false,
  );
}

/** Shows a wrapped key's IDs; returns false (render as plain attribute) if it does not parse. */
function renderWrappedKey(t: Tree, d: number, name: string, a: Attribute): boolean {
  if (a.format !== 'TLV') return false;
  try {
    const k = decodeWrappedKey(a.value, name);
    t.line(d, `${name} (${a.type}): Key ID ${k.keyId}, KWK ID ${k.kwkId}, encrypted key ${k.encryptedKey.length} octets`);
    return true;
  } catch (e) {
    if (e instanceof DecodeError) {
      t.line(d, `${name} (${a.type}): malformed wrapped key (${e.detail}): ${hexPreview(a.value)}`);
      return true;
    }
    throw e;
  }
}

function tsText(s: TrafficSelector): string {
  if ('raw' in s) return `${nameOf(TsType, s.type)} ${hexPreview(s.raw)}`;
  const ports = s.startPort === 0 && s.endPort === 0xffff ? 'any port' : `ports ${s.startPort}-${s.endPort}`;
  const proto = s.ipProtocol === 0 ? 'any protocol' : `protocol ${s.ipProtocol}`;
  const addr = s.startAddress === s.endAddress ? s.startAddress : `${s.startAddress}-${s.endAddress}`;
  return `${nameOf(TsType, s.type)} ${addr}, ${proto}, ${ports}`;
}

function idText(idType: number, data: Buffer): string {
  if (idType === IdType.ID_IPV4_ADDR && data.length === 4) return Array.from(data).join('.');
  if (
    (idType === IdType.ID_FQDN || idType === IdType.ID_RFC822_ADDR || idType === IdType.ID_KEY_ID) &&
    data.length > 0 &&
    data.every((c) => c >= 0x20 && c < 0x7f)
  ) {
    return `"${data.toString('latin1')}"`;
  }
  return hexPreview(data);
}

function originText(o: ItemOrigin): string {
  if (o.frame !== undefined) {
    const time = o.time !== undefined && o.time > 0 ? ` ${new Date(o.time * 1000).toISOString()}` : '';
    const marker = o.markerLength ? ' (non-ESP marker)' : '';
    return `frame ${o.frame}${time} ${o.src}:${o.srcPort} -> ${o.dst}:${o.dstPort}${marker}`;
  }
  return o.index !== undefined ? `${o.source} #${o.index}` : o.source;
}

/** One item as text: an origin line, then the tree or the error. Ends with a newline. */
export function renderItem(item: DecodedItem): string {
  const r = item.result;
  const lines = [`== ${originText(item.origin)}`];
  switch (r.kind) {
    case 'ike':
      lines.push(...renderMessage(r.message, r.payloadLengths));
      break;
    case 'chain':
      lines.push(`payload chain, first payload ${payloadRef(r.firstType)}, ${r.octets} octets: ${r.payloads.map(payloadName).join(' ')}`);
      lines.push(...renderPayloads(r.payloads, 1, r.payloadLengths));
      break;
    case 'error':
      lines.push(`DecodeError (${r.error.kind}) at ${r.error.path || '<message>'}: ${r.error.detail} (octet ${r.error.offset} of ${r.octets})`);
      break;
    case 'internal-error':
      lines.push(`internal decoder error (please report): ${r.detail}`);
      break;
    case 'esp':
      lines.push(`ESP (UDP-encapsulated), SPI 0x${r.spi.toString(16).padStart(8, '0')}, ${r.octets} octets (not decoded)`);
      break;
    case 'nat-keepalive':
      lines.push('NAT-keepalive');
      break;
    case 'invalid':
      lines.push(`not IKE: ${r.reason}`);
      break;
  }
  return `${lines.join('\n')}\n`;
}

/** A JSON-safe copy: Buffers become hex strings, bigints decimal strings. */
export function toJsonValue(v: unknown): unknown {
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return v.map(toJsonValue);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = toJsonValue(x);
    return out;
  }
  return v;
}

/** The machine-readable form of one item. */
export function itemToJson(item: DecodedItem): Record<string, unknown> {
  const r = item.result;
  const base: Record<string, unknown> = { ...toJsonValue(item.origin) as Record<string, unknown>, kind: r.kind };
  switch (r.kind) {
    case 'ike': {
      const m = r.message;
      return {
        ...base,
        octets: r.octets,
        summary: messageSummary(m).text,
        exchange: nameOf(ExchangeType, m.header.exchangeType),
        header: toJsonValue(m.header),
        payloads: m.payloads.map((p, i) => ({
          name: payloadName(p),
          ...(r.payloadLengths?.[i] !== undefined ? { length: r.payloadLengths[i] } : {}),
          ...(toJsonValue(p) as Record<string, unknown>),
        })),
      };
    }
    case 'chain':
      return {
        ...base,
        octets: r.octets,
        firstType: r.firstType,
        payloads: r.payloads.map((p, i) => ({
          name: payloadName(p),
          ...(r.payloadLengths?.[i] !== undefined ? { length: r.payloadLengths[i] } : {}),
          ...(toJsonValue(p) as Record<string, unknown>),
        })),
      };
    case 'error':
      return {
        ...base,
        octets: r.octets,
        error: { name: 'DecodeError', kind: r.error.kind, path: r.error.path, detail: r.error.detail, offset: r.error.offset },
      };
    case 'internal-error':
      return { ...base, octets: r.octets, error: { name: 'InternalError', detail: r.detail } };
    case 'esp':
      return { ...base, spi: r.spi, octets: r.octets };
    case 'nat-keepalive':
      return base;
    case 'invalid':
      return { ...base, reason: r.reason };
  }
}
