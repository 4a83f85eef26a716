import { NOTIFY_STATUS_MIN, NotifyType, type PayloadType } from '../iana.ts';
import type { Reader } from '../reader.ts';
import { EncodeError, type Writer } from '../writer.ts';

/**
 * Notify payload (RFC 7296 Section 3.10):
 *   Protocol ID(1) | SPI Size(1) | Notify Message Type(2) | SPI | Notification Data
 * The data of the notify types this project acts on is decoded into a typed
 * value (`NotifyData`); every other type keeps its data as raw octets.
 */
export interface NotifyPayload {
  readonly type: typeof PayloadType.NOTIFY;
  readonly critical: boolean;
  readonly protocolId: number;
  /** Empty (SPI Size 0) for notifies about the IKE SA and for all G-IKEv2 notifies. */
  readonly spi: Buffer;
  /** See NotifyType. */
  readonly notifyType: number;
  readonly data: NotifyData;
}

/** Notification Data by shape; which shape a notify type has is fixed by `notifyDataKind`. */
export type NotifyData =
  /** No data; for error types whose data "MUST be ignored on receipt", any data is dropped. */
  | { readonly kind: 'empty' }
  /** GROUP_SENDER (RFC 9838 4.7.4): number of Sender-IDs wanted, 4 octets. */
  | { readonly kind: 'sender-id-count'; readonly count: number }
  /** COOKIE (RFC 7296 2.6): 1..64 octets. */
  | { readonly kind: 'cookie'; readonly cookie: Buffer }
  /** NAT_DETECTION_SOURCE_IP / _DESTINATION_IP (RFC 7296 2.23): SHA-1 hash. */
  | { readonly kind: 'nat-hash'; readonly hash: Buffer }
  /** SIGNATURE_HASH_ALGORITHMS (RFC 7427 Section 4): 2-octet hash algorithm IDs. */
  | { readonly kind: 'hash-algorithms'; readonly algorithms: readonly number[] }
  /** INVALID_KE_PAYLOAD (RFC 7296 3.10.1): the accepted KE method, 2 octets. */
  | { readonly kind: 'ke-method'; readonly group: number }
  /** UNSUPPORTED_CRITICAL_PAYLOAD (RFC 7296 3.10.1): the payload type, 1 octet. */
  | { readonly kind: 'payload-type'; readonly payloadType: number }
  /** Any other notify type: data as received. */
  | { readonly kind: 'raw'; readonly data: Buffer };

export type NotifyDataKind = NotifyData['kind'];

export const COOKIE_MIN = 1;
export const COOKIE_MAX = 64;

const EMPTY_DATA_TYPES: readonly number[] = [
  NotifyType.INVALID_MAJOR_VERSION,
  NotifyType.INVALID_SYNTAX,
  NotifyType.NO_PROPOSAL_CHOSEN,
  NotifyType.AUTHENTICATION_FAILED,
  NotifyType.SINGLE_PAIR_REQUIRED,
  NotifyType.NO_ADDITIONAL_SAS,
  NotifyType.TS_UNACCEPTABLE,
  NotifyType.TEMPORARY_FAILURE,
  NotifyType.CHILD_SA_NOT_FOUND,
  NotifyType.INVALID_GROUP_ID,
  NotifyType.AUTHORIZATION_FAILED,
  NotifyType.REGISTRATION_FAILED,
  NotifyType.IKEV2_FRAGMENTATION_SUPPORTED,
];

/** The data shape of a notify type. */
export function notifyDataKind(notifyType: number): NotifyDataKind {
  switch (notifyType) {
    case NotifyType.GROUP_SENDER:
      return 'sender-id-count';
    case NotifyType.COOKIE:
      return 'cookie';
    case NotifyType.NAT_DETECTION_SOURCE_IP:
    case NotifyType.NAT_DETECTION_DESTINATION_IP:
      return 'nat-hash';
    case NotifyType.SIGNATURE_HASH_ALGORITHMS:
      return 'hash-algorithms';
    case NotifyType.INVALID_KE_PAYLOAD:
      return 'ke-method';
    case NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD:
      return 'payload-type';
    default:
      return EMPTY_DATA_TYPES.includes(notifyType) ? 'empty' : 'raw';
  }
}

export function decodeNotifyBody(r: Reader, critical: boolean): NotifyPayload {
  const protocolId = r.u8('protocol ID');
  const spiSize = r.u8('SPI size');
  const notifyType = r.u16('notify type');
  const spi = r.bytes(spiSize, 'SPI');
  const data = decodeNotifyData(r, notifyType);
  return { type: 41, critical, protocolId, spi, notifyType, data };
}

function decodeNotifyData(r: Reader, notifyType: number): NotifyData {
  const n = r.remaining;
  const exactly = (want: number): void => {
    if (n !== want) r.fail('bad-length', `data must be ${want} octet(s), got ${n}`);
  };
  switch (notifyDataKind(notifyType)) {
    case 'empty':
      r.skip(n, 'ignored data');
      return { kind: 'empty' };
    case 'sender-id-count':
      exactly(4);
      return { kind: 'sender-id-count', count: r.u32('count') };
    case 'cookie':
      if (n < COOKIE_MIN || n > COOKIE_MAX) r.fail('bad-length', `cookie of ${n} octet(s), must be 1..64`);
      return { kind: 'cookie', cookie: r.rest() };
    case 'nat-hash':
      return { kind: 'nat-hash', hash: r.rest() };
    case 'hash-algorithms': {
      if (n % 2 !== 0) r.fail('bad-length', `odd data length ${n} for a list of 2-octet IDs`);
      const algorithms: number[] = [];
      while (!r.atEnd) algorithms.push(r.u16('hash algorithm'));
      return { kind: 'hash-algorithms', algorithms };
    }
    case 'ke-method':
      exactly(2);
      return { kind: 'ke-method', group: r.u16('KE method') };
    case 'payload-type':
      exactly(1);
      return { kind: 'payload-type', payloadType: r.u8('payload type') };
    case 'raw':
      return { kind: 'raw', data: r.rest() };
  }
}

export function encodeNotifyBody(w: Writer, p: NotifyPayload): void {
  const expected = notifyDataKind(p.notifyType);
  if (p.data.kind !== expected) {
    throw new EncodeError(`notify type ${p.notifyType} carries '${expected}' data, not '${p.data.kind}'`);
  }
  if (p.spi.length > 0xff) throw new EncodeError(`SPI too long: ${p.spi.length}`);
  w.u8(p.protocolId).u8(p.spi.length).u16(p.notifyType).bytes(p.spi);
  encodeNotifyData(w, p.data);
}

function encodeNotifyData(w: Writer, d: NotifyData): void {
  switch (d.kind) {
    case 'empty':
      return;
    case 'sender-id-count':
      w.u32(d.count);
      return;
    case 'cookie':
      if (d.cookie.length < COOKIE_MIN || d.cookie.length > COOKIE_MAX) {
        throw new EncodeError(`cookie of ${d.cookie.length} octet(s), must be 1..64`);
      }
      w.bytes(d.cookie);
      return;
    case 'nat-hash':
      w.bytes(d.hash);
      return;
    case 'hash-algorithms':
      for (const a of d.algorithms) w.u16(a);
      return;
    case 'ke-method':
      w.u16(d.group);
      return;
    case 'payload-type':
      w.u8(d.payloadType);
      return;
    case 'raw':
      w.bytes(d.data);
      return;
  }
}

export interface NotifyOptions {
  readonly critical?: boolean;
  readonly protocolId?: number;
  readonly spi?: Buffer;
}

/**
 * Builds a notify; without `data`, the type's empty form (no data at all,
 * or empty raw data for untyped notifies such as INITIAL_CONTACT).
 */
export function makeNotify(notifyType: number, data?: NotifyData, options: NotifyOptions = {}): NotifyPayload {
  return {
    type: 41,
    critical: options.critical ?? false,
    protocolId: options.protocolId ?? 0,
    spi: options.spi ?? Buffer.alloc(0),
    notifyType,
    data: data ?? (notifyDataKind(notifyType) === 'empty' ? { kind: 'empty' } : { kind: 'raw', data: Buffer.alloc(0) }),
  };
}

/** True for error notifies (types below 16384, RFC 7296 Section 3.10.1). */
export function isErrorNotify(p: NotifyPayload): boolean {
  return p.notifyType < NOTIFY_STATUS_MIN;
}
