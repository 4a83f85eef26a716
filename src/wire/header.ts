import { DecodeError, Limits } from './errors.ts';
import { Reader } from './reader.ts';
import { EncodeError, type Writer } from './writer.ts';

/**
 * The IKE header (RFC 7296 Section 3.1; RFC 9838 Section 4.1 reuses it).
 *
 *   IKE SA Initiator's SPI (8) | IKE SA Responder's SPI (8)
 *   Next Payload (1) | MjVer (4 bits) | MnVer (4 bits) | Exchange Type (1) | Flags (1)
 *   Message ID (4) | Length (4)
 */
export interface IkeHeader {
  readonly spiI: Buffer;
  readonly spiR: Buffer;
  /** Type of the first payload; computed by the message encoder. */
  readonly nextPayload: number;
  readonly majorVersion: number;
  readonly minorVersion: number;
  readonly exchangeType: number;
  readonly flags: IkeHeaderFlags;
  readonly messageId: number;
  /** Total message length, header included; computed by the message encoder. */
  readonly length: number;
}

export interface IkeHeaderFlags {
  /** I: set by the original initiator of the IKE SA. */
  readonly initiator: boolean;
  /** V: the sender can speak a higher major version. */
  readonly version: boolean;
  /** R: this message is a response. */
  readonly response: boolean;
}

/** The header as a sender fills it in: next payload and length come from the encoder. */
export type IkeHeaderFields = Omit<IkeHeader, 'nextPayload' | 'length'>;

export const IKE_HEADER_LENGTH = 28;
/** Where the Length field sits, for encoders that patch it after the payloads. */
export const IKE_HEADER_LENGTH_OFFSET = 24;
export const IKE_SPI_LENGTH = 8;
export const IKE_MAJOR_VERSION = 2;

const FLAG_INITIATOR = 0x08;
const FLAG_VERSION = 0x10;
const FLAG_RESPONSE = 0x20;

/** Path used for every header error, so the engine can tell header faults from payload faults. */
export const HEADER_PATH = 'HDR';
const MAJOR_VERSION_DETAIL = 'INVALID_MAJOR_VERSION';

export interface DecodeHeaderOptions {
  /**
   * false: accept any major version. The engine needs the SPIs and Message
   * ID of a wrong-version message to answer it with INVALID_MAJOR_VERSION.
   */
  readonly checkVersion?: boolean;
}

/**
 * Decodes the header at the start of `buf` (one whole datagram, the NAT-T
 * non-ESP marker already removed). Checks that Length covers the header,
 * does not exceed Limits.maxMessage and equals the datagram length (octets
 * beyond Length would escape authentication).
 */
export function decodeHeader(buf: Uint8Array, options: DecodeHeaderOptions = {}): IkeHeader {
  const r = new Reader(buf, HEADER_PATH);
  const spiI = r.bytes(IKE_SPI_LENGTH, "initiator's SPI");
  const spiR = r.bytes(IKE_SPI_LENGTH, "responder's SPI");
  const nextPayload = r.u8('next payload');
  const versionAt = r.offset;
  const version = r.u8('version');
  const majorVersion = version >> 4;
  const minorVersion = version & 0x0f;
  if (options.checkVersion !== false && majorVersion !== IKE_MAJOR_VERSION) {
    throw new DecodeError(
      'bad-value',
      HEADER_PATH,
      `major version ${majorVersion} is not ${IKE_MAJOR_VERSION} (${MAJOR_VERSION_DETAIL})`,
      versionAt,
    );
  }
  const exchangeType = r.u8('exchange type');
  // Unknown flag bits are reserved: ignored here, written as zero by the encoder.
  const flagBits = r.u8('flags');
  const messageId = r.u32('message ID');
  const lengthAt = r.offset;
  const length = r.u32('length');
  const lengthError = checkLength(length, buf.length);
  if (lengthError) throw new DecodeError(lengthError.kind, HEADER_PATH, lengthError.detail, lengthAt);
  return {
    spiI,
    spiR,
    nextPayload,
    majorVersion,
    minorVersion,
    exchangeType,
    flags: {
      initiator: (flagBits & FLAG_INITIATOR) !== 0,
      version: (flagBits & FLAG_VERSION) !== 0,
      response: (flagBits & FLAG_RESPONSE) !== 0,
    },
    messageId,
    length,
  };
}

function checkLength(
  length: number,
  available: number,
): { kind: 'bad-length' | 'truncated' | 'limit'; detail: string } | undefined {
  if (length < IKE_HEADER_LENGTH) return { kind: 'bad-length', detail: `length ${length} < ${IKE_HEADER_LENGTH}` };
  if (length > Limits.maxMessage) return { kind: 'limit', detail: `length ${length} > ${Limits.maxMessage}` };
  if (length > available) return { kind: 'truncated', detail: `length ${length} but only ${available} octet(s)` };
  if (length < available) {
    return { kind: 'bad-length', detail: `length ${length} but ${available - length} octet(s) follow the message` };
  }
  return undefined;
}

/** True for the header error the engine answers with INVALID_MAJOR_VERSION. */
export function isInvalidMajorVersion(e: unknown): e is DecodeError {
  return (
    e instanceof DecodeError &&
    e.kind === 'bad-value' &&
    e.path === HEADER_PATH &&
    e.detail.includes(MAJOR_VERSION_DETAIL)
  );
}

/** Writes the header exactly as given (the message encoder supplies nextPayload and length). */
export function encodeHeader(w: Writer, h: IkeHeader): void {
  if (h.spiI.length !== IKE_SPI_LENGTH || h.spiR.length !== IKE_SPI_LENGTH) {
    throw new EncodeError(`IKE SPIs must be ${IKE_SPI_LENGTH} octets`);
  }
  if (!isNibble(h.majorVersion) || !isNibble(h.minorVersion)) {
    throw new EncodeError(`version ${h.majorVersion}.${h.minorVersion} does not fit in 4 bits each`);
  }
  const flags =
    (h.flags.initiator ? FLAG_INITIATOR : 0) |
    (h.flags.version ? FLAG_VERSION : 0) |
    (h.flags.response ? FLAG_RESPONSE : 0);
  w.bytes(h.spiI).bytes(h.spiR);
  w.u8(h.nextPayload).u8((h.majorVersion << 4) | h.minorVersion).u8(h.exchangeType).u8(flags);
  w.u32(h.messageId).u32(h.length);
}

function isNibble(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 15;
}
