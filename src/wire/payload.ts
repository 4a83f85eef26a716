import { DecodeError, Limits } from './errors.ts';
import { decodeGsaBody, encodeGsaBody, type GsaPayload } from './gsa.ts';
import { NotifyType, PayloadType, reverseOf } from './iana.ts';
import { decodeKdBody, encodeKdBody, type KdPayload } from './kd.ts';
import { decodeAuthBody, encodeAuthBody, type AuthPayload } from './payloads/auth.ts';
import { decodeCertBody, encodeCertBody, type CertPayload } from './payloads/cert.ts';
import { decodeCertReqBody, encodeCertReqBody, type CertReqPayload } from './payloads/certreq.ts';
import { decodeDeleteBody, encodeDeleteBody, type DeletePayload } from './payloads/delete.ts';
import { decodeIdBody, encodeIdBody, type IdPayload } from './payloads/id.ts';
import { decodeKeBody, encodeKeBody, type KePayload } from './payloads/ke.ts';
import { decodeNonceBody, encodeNonceBody, type NoncePayload } from './payloads/nonce.ts';
import { decodeNotifyBody, encodeNotifyBody, type NotifyPayload } from './payloads/notify.ts';
import { decodeSaBody, encodeSaBody, type SaPayload } from './payloads/sa.ts';
import { decodeSkBody, encodeSkBody, type SkPayload } from './payloads/sk.ts';
import { decodeSkfBody, encodeSkfBody, type SkfPayload } from './payloads/skf.ts';
import { decodeTsBody, encodeTsBody, type TsPayload } from './payloads/ts.ts';
import { decodeUnknownBody, encodeUnknownBody, type UnknownPayload } from './payloads/unknown.ts';
import { decodeVendorIdBody, encodeVendorIdBody, type VendorIdPayload } from './payloads/vendor-id.ts';
import { joinPath, Reader } from './reader.ts';
import { EncodeError, Writer } from './writer.ts';

/**
 * Every payload this implementation understands, discriminated by the
 * numeric payload type. SA and SAg are both `SaPayload` (type 33).
 */
export type KnownPayload =
  | SaPayload
  | KePayload
  | IdPayload
  | CertPayload
  | CertReqPayload
  | AuthPayload
  | NoncePayload
  | NotifyPayload
  | DeletePayload
  | VendorIdPayload
  | TsPayload
  | SkPayload
  | SkfPayload
  | GsaPayload
  | KdPayload;

/** A decoded payload: a known one, or an unknown non-critical one kept as raw octets. */
export type Payload = KnownPayload | UnknownPayload;

export type KnownPayloadType = KnownPayload['type'];

/** The payload interface for a type number, narrowed to that number (IDi -> IdPayload & {type: 35}). */
export type PayloadOf<T extends KnownPayloadType> = KnownPayload extends infer P
  ? P extends { readonly type: infer U }
    ? T extends U
      ? P & { readonly type: T }
      : never
    : never
  : never;

/** The generic payload header (RFC 7296 Section 3.2): Next Payload(1) | C + RESERVED(1) | Payload Length(2). */
export const GENERIC_HEADER_LENGTH = 4;
const CRITICAL = 0x80;

const KNOWN_TYPES: ReadonlySet<number> = new Set<number>([
  PayloadType.SA,
  PayloadType.KE,
  PayloadType.IDi,
  PayloadType.IDr,
  PayloadType.CERT,
  PayloadType.CERTREQ,
  PayloadType.AUTH,
  PayloadType.NONCE,
  PayloadType.NOTIFY,
  PayloadType.DELETE,
  PayloadType.VENDOR_ID,
  PayloadType.TSi,
  PayloadType.TSr,
  PayloadType.SK,
  PayloadType.IDg,
  PayloadType.GSA,
  PayloadType.KD,
  PayloadType.SKF,
]);

/** True when this implementation decodes `type` (CP, EAP, GSPM, PS are not: they are skipped or rejected as unknown). */
export function isKnownPayloadType(type: number): type is KnownPayloadType {
  return KNOWN_TYPES.has(type);
}

export function isUnknownPayload(p: Payload): p is UnknownPayload {
  return 'unknown' in p;
}

/** SK and SKF hold the rest of the message; their Next Payload is the first inner payload. */
export function isEncryptedContainer(p: Payload): p is SkPayload | SkfPayload {
  return !isUnknownPayload(p) && (p.type === PayloadType.SK || p.type === PayloadType.SKF);
}

/** Short names as in RFC 7296 exchange diagrams; notifies show their type: `N(COOKIE)`. */
const SHORT_NAMES: Readonly<Record<number, string>> = {
  [PayloadType.SA]: 'SA',
  [PayloadType.KE]: 'KE',
  [PayloadType.IDi]: 'IDi',
  [PayloadType.IDr]: 'IDr',
  [PayloadType.CERT]: 'CERT',
  [PayloadType.CERTREQ]: 'CERTREQ',
  [PayloadType.AUTH]: 'AUTH',
  [PayloadType.NONCE]: 'No',
  [PayloadType.NOTIFY]: 'N',
  [PayloadType.DELETE]: 'D',
  [PayloadType.VENDOR_ID]: 'V',
  [PayloadType.TSi]: 'TSi',
  [PayloadType.TSr]: 'TSr',
  [PayloadType.SK]: 'SK',
  [PayloadType.CP]: 'CP',
  [PayloadType.EAP]: 'EAP',
  [PayloadType.GSPM]: 'GSPM',
  [PayloadType.IDg]: 'IDg',
  [PayloadType.GSA]: 'GSA',
  [PayloadType.KD]: 'KD',
  [PayloadType.SKF]: 'SKF',
  [PayloadType.PS]: 'PS',
};

export function payloadTypeName(type: number): string {
  return SHORT_NAMES[type] ?? `UNKNOWN(${type})`;
}

export function notifyTypeName(notifyType: number): string {
  return reverseOf(NotifyType).get(notifyType) ?? String(notifyType);
}

/** The name used in logs and error paths: `SA`, `N(COOKIE)`, `SKF(1/3)`. */
export function payloadName(p: Payload): string {
  if (isUnknownPayload(p)) return payloadTypeName(p.type);
  if (p.type === PayloadType.NOTIFY) return `N(${notifyTypeName(p.notifyType)})`;
  if (p.type === PayloadType.SKF) return `SKF(${p.fragmentNumber}/${p.totalFragments})`;
  return payloadTypeName(p.type);
}

/**
 * Decodes a payload chain: `firstType` is the Next Payload of the IKE header
 * (or of the SK payload, for a decrypted plaintext). `path` prefixes every
 * error path, e.g. 'SK' for inner payloads.
 */
export function decodePayloadChain(firstType: number, bytes: Uint8Array, path = ''): Payload[] {
  return decodeChainFrom(new Reader(bytes, path), firstType);
}

/** Decodes payloads from `r` until Next Payload 0 (or an SK/SKF container); `r` must then be exhausted. */
export function decodeChainFrom(r: Reader, firstType: number): Payload[] {
  const out: Payload[] = [];
  let type = firstType;
  while (type !== PayloadType.NONE) {
    const label = peekLabel(r, type);
    if (out.length >= Limits.maxPayloads) r.fail('limit', `more than ${Limits.maxPayloads} payloads (next: ${label})`);
    const payloadStart = r.offset;
    const head = r.child(label);
    const next = head.u8('next payload');
    // Only the Critical bit has a meaning; the other 7 bits are reserved and ignored.
    const critical = (head.u8('flags') & CRITICAL) !== 0;
    const lengthAt = head.offset;
    const length = head.u16('payload length');
    if (length < GENERIC_HEADER_LENGTH) {
      throw new DecodeError('bad-length', joinPath(r.path, label), `payload length ${length} < ${GENERIC_HEADER_LENGTH}`, lengthAt);
    }
    if (length > r.remaining) {
      throw new DecodeError('truncated', joinPath(r.path, label), `payload length ${length} but ${r.remaining} octet(s) left`, lengthAt);
    }
    if (critical && !isKnownPayloadType(type)) {
      throw new DecodeError(
        'unsupported-critical',
        joinPath(r.path, label),
        `payload type ${type} is not supported and has the Critical bit set`,
        payloadStart,
        type,
      );
    }
    const body = r.sub(length, label);
    body.skip(GENERIC_HEADER_LENGTH);
    const payload = decodeBody(body, type, next, critical);
    body.expectEnd('payload body');
    out.push(payload);
    if (isEncryptedContainer(payload)) {
      if (!r.atEnd) r.fail('bad-length', `${r.remaining} octet(s) after ${label}, which must be the last payload`);
      return out;
    }
    type = next;
  }
  r.expectEnd('after the last payload (Next Payload 0)');
  return out;
}

function decodeBody(r: Reader, type: number, next: number, critical: boolean): Payload {
  switch (type) {
    case PayloadType.SA:
      return decodeSaBody(r, critical);
    case PayloadType.KE:
      return decodeKeBody(r, critical);
    case PayloadType.IDi:
    case PayloadType.IDr:
    case PayloadType.IDg:
      return decodeIdBody(r, type, critical);
    case PayloadType.CERT:
      return decodeCertBody(r, critical);
    case PayloadType.CERTREQ:
      return decodeCertReqBody(r, critical);
    case PayloadType.AUTH:
      return decodeAuthBody(r, critical);
    case PayloadType.NONCE:
      return decodeNonceBody(r, critical);
    case PayloadType.NOTIFY:
      return decodeNotifyBody(r, critical);
    case PayloadType.DELETE:
      return decodeDeleteBody(r, critical);
    case PayloadType.VENDOR_ID:
      return decodeVendorIdBody(r, critical);
    case PayloadType.TSi:
    case PayloadType.TSr:
      return decodeTsBody(r, type, critical);
    case PayloadType.SK:
      return decodeSkBody(r, next, critical);
    case PayloadType.SKF:
      return decodeSkfBody(r, next, critical);
    case PayloadType.GSA:
      return decodeGsaBody(r, critical);
    case PayloadType.KD:
      return decodeKdBody(r, critical);
    default:
      return decodeUnknownBody(r, type);
  }
}

/** The error-path segment for the payload at `r`: its short name, and for a notify its type. */
function peekLabel(r: Reader, type: number): string {
  const name = payloadTypeName(type);
  if (type !== PayloadType.NOTIFY) return name;
  const at = r.offset + GENERIC_HEADER_LENGTH + 2;
  if (at + 2 > r.end) return name;
  return `N(${notifyTypeName((r.buf[at]! << 8) | r.buf[at + 1]!)})`;
}

/**
 * Encodes payloads in order, filling in each Next Payload (for SK/SKF: the
 * first inner type) and Payload Length. SK/SKF must be last.
 */
export function encodePayloadChain(payloads: readonly Payload[]): { firstType: number; bytes: Buffer } {
  const w = new Writer();
  encodeChainInto(w, payloads);
  return { firstType: payloads[0]?.type ?? PayloadType.NONE, bytes: w.finish() };
}

export function encodeChainInto(w: Writer, payloads: readonly Payload[]): void {
  payloads.forEach((p, i) => {
    const following = payloads[i + 1];
    if (isEncryptedContainer(p)) {
      if (following) throw new EncodeError(`${payloadName(p)} must be the last payload`);
      encodePayload(w, p, p.innerFirst);
    } else {
      encodePayload(w, p, following?.type ?? PayloadType.NONE);
    }
  });
}

/** One payload with its generic header; `nextType` goes into Next Payload. */
export function encodePayload(w: Writer, p: Payload, nextType: number): void {
  const start = w.length;
  encodeGenericHeader(w, p, nextType);
  encodeBody(w, p);
  const length = w.length - start;
  if (length > 0xffff) throw new EncodeError(`${payloadName(p)} is ${length} octets, more than a payload can hold`);
  w.patch16(start + 2, length);
}

function encodeGenericHeader(w: Writer, p: Payload, nextType: number): void {
  // An unknown payload with a known type would decode as something else.
  if (isUnknownPayload(p) && (p.type < 1 || p.type > 0xff || isKnownPayloadType(p.type))) {
    throw new EncodeError(`unknown payload cannot have type ${p.type}`);
  }
  writeGenericHeader(w, nextType, p.critical);
}

/** Next Payload, flags (reserved bits zero) and a zero Payload Length for the caller to patch at start + 2. */
export function writeGenericHeader(w: Writer, nextType: number, critical: boolean): void {
  w.u8(nextType).u8(critical ? CRITICAL : 0).u16(0);
}

function encodeBody(w: Writer, p: Payload): void {
  if (isUnknownPayload(p)) return encodeUnknownBody(w, p);
  switch (p.type) {
    case PayloadType.SA:
      return encodeSaBody(w, p);
    case PayloadType.KE:
      return encodeKeBody(w, p);
    case PayloadType.IDi:
    case PayloadType.IDr:
    case PayloadType.IDg:
      return encodeIdBody(w, p);
    case PayloadType.CERT:
      return encodeCertBody(w, p);
    case PayloadType.CERTREQ:
      return encodeCertReqBody(w, p);
    case PayloadType.AUTH:
      return encodeAuthBody(w, p);
    case PayloadType.NONCE:
      return encodeNonceBody(w, p);
    case PayloadType.NOTIFY:
      return encodeNotifyBody(w, p);
    case PayloadType.DELETE:
      return encodeDeleteBody(w, p);
    case PayloadType.VENDOR_ID:
      return encodeVendorIdBody(w, p);
    case PayloadType.TSi:
    case PayloadType.TSr:
      return encodeTsBody(w, p);
    case PayloadType.SK:
      return encodeSkBody(w, p);
    case PayloadType.SKF:
      return encodeSkfBody(w, p);
    case PayloadType.GSA:
      return encodeGsaBody(w, p);
    case PayloadType.KD:
      return encodeKdBody(w, p);
  }
}

/**
 * Narrows to the payload of `type`. Prefer this to `p.type === T`: an
 * UnknownPayload's `type` is any number, so comparing alone cannot exclude it.
 */
export function isPayloadOf<T extends KnownPayloadType>(p: Payload, type: T): p is PayloadOf<T> {
  return !isUnknownPayload(p) && p.type === type;
}

/** The first known payload of `type`, typed accordingly. */
export function findPayload<T extends KnownPayloadType>(payloads: readonly Payload[], type: T): PayloadOf<T> | undefined {
  return findPayloads(payloads, type)[0];
}

export function findPayloads<T extends KnownPayloadType>(payloads: readonly Payload[], type: T): PayloadOf<T>[] {
  return payloads.filter((p): p is PayloadOf<T> => isPayloadOf(p, type));
}

/** The first notify of `notifyType`, if any. */
export function findNotify(payloads: readonly Payload[], notifyType: number): NotifyPayload | undefined {
  return findPayloads(payloads, PayloadType.NOTIFY).find((n) => n.notifyType === notifyType);
}
