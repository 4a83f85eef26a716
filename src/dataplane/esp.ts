/**
 * ESP (RFC 4303) for group Data-Security SAs (RFC 5374, RFC 9838): packet
 * protection and verification for one SA, plus the framing of what a
 * user-space group channel carries inside ESP. Pure functions over buffers:
 * no sockets, no clock, no SA selection (that is channel-core.ts).
 *
 * Packet layout (no ESN: RFC 9838 4.4.2.1.3 forbids it for multicast SAs):
 *
 *   SPI (4) | Sequence Number (4) | IV | E(Payload | Padding | Pad Length | Next Header) | ICV
 *
 * Algorithms:
 *   - AES-GCM with an 8/12/16-octet ICV (RFC 4106) and ChaCha20-Poly1305
 *     (RFC 7634): nonce = salt (last 4 octets of the keying material) | IV
 *     (8 octets on the wire); AAD = SPI | Sequence Number. The IV follows
 *     RFC 6054 / RFC 9838 2.5.2: its GWP_SENDER_ID_BITS most significant bits
 *     are the Sender-ID field (Sender-ID right-aligned in it, unused high bits
 *     zero), the remaining bits are a per-(SA, Sender-ID) counter.
 *   - AES-CBC (RFC 3602) with a random 16-octet IV and HMAC-SHA2 (RFC 4868;
 *     HMAC-SHA1-96 too): ICV = truncated HMAC over SPI | SN | IV | ciphertext
 *     (encrypt-then-MAC, RFC 4303 3.3.2 / 3.4.4).
 * Padding is the RFC 4303 default (1, 2, 3, ...), to the cipher's block size
 * and at least 4-octet alignment of the ciphertext (RFC 4303 2.4); receivers
 * check it (RFC 4303 2.4: "the receiver SHOULD inspect the Padding field").
 *
 * What the ESP payload carries in the user-space channel (ESP inside UDP
 * datagrams sent to the group address and port, no non-ESP marker since no
 * IKE shares that port):
 *   - 'transport': Next Header 17, payload = UDP header (source port, group
 *     port, length, checksum 0) | application datagram. The UDP header is
 *     covered by the ICV, so the checksum adds nothing (RFC 6936 reasoning);
 *     receivers check the length field, not the checksum.
 *   - 'tunnel' (RFC 5374 tunnel mode with address preservation): Next Header
 *     4, payload = IPv4 header (source = the sender's address, destination =
 *     the group address, protocol 17, TTL 1, header checksum set) | UDP
 *     header | datagram. The receiver checks that the inner destination is
 *     its group (RFC 5374 3.2: the inner header's addresses must match the
 *     SA's selectors) and reports the inner source.
 * Next Header 59 is never used for data: RFC 4303 2.6 makes it a dummy (TFC)
 * packet that receivers MUST discard, which decodeInner does.
 *
 * TFC padding (RFC 4303 2.7): octets between the inner packet and the ESP
 * Padding, allowed when the inner packet states its own length. decodeInner
 * strips them: in tunnel mode after the inner IP packet (IPv4 Total Length,
 * IPv6 Payload Length), in transport mode after the UDP datagram (UDP Length,
 * the "next layer protocol ... explicit length information" case of 2.7).
 * A stated length larger than what arrived is a malformed packet. Senders add
 * TFC padding only when asked (CreateEspSaOptions.tfcPadTo).
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createSecretKey,
  timingSafeEqual,
  type CipherGCMTypes,
  type KeyObject,
} from 'node:crypto';
import { isIPv6 } from 'node:net';
import { defaultRandom, type RandomSource } from '../crypto/random.ts';
import { EncrId, IntegId, nameOf, SnId } from '../wire/iana.ts';
import { formatIPv6 } from '../wire/traffic-selector.ts';

export const ESP_HEADER_LENGTH = 8;
export const NEXT_HEADER_IPV4 = 4;
export const NEXT_HEADER_UDP = 17;
export const NEXT_HEADER_IPV6 = 41;
/** RFC 4303 2.6: "no next header", a dummy packet. */
export const NEXT_HEADER_NONE = 59;
const UDP_HEADER_LENGTH = 8;
const IPV4_HEADER_LENGTH = 20;
const IPV6_HEADER_LENGTH = 40;

/** The ENCR/INTEG/SN transforms of a Data-Security SA. */
export interface EspAlgorithm {
  /** EncrId: AES_GCM_8/12/16, CHACHA20_POLY1305 or AES_CBC. */
  readonly encr: number;
  /** Key Length attribute; absent (= 256) for ChaCha20-Poly1305. */
  readonly encrKeyBits?: number | undefined;
  /** IntegId; NONE/absent with an AEAD. */
  readonly integ?: number | undefined;
}

/** Keys exactly as KEYMAT splits them (src/gcks/keymat.ts). */
export interface EspKeys {
  /** Cipher key, with the 4-octet salt at its end for AEADs. */
  readonly encrKey: Uint8Array;
  /** Empty with an AEAD. */
  readonly integKey: Uint8Array;
}

export type EspConfigErrorKind =
  | 'unsupported-algorithm'
  | 'bad-combination'
  | 'bad-key-length'
  | 'bad-spi'
  | 'bad-sender-id'
  | 'bad-sn'
  | 'bad-tfc-padding';

/** A configuration problem (never caused by packets): the SA cannot be used. */
export class EspConfigError extends Error {
  override readonly name = 'EspConfigError';
  constructor(
    readonly kind: EspConfigErrorKind,
    detail: string,
  ) {
    super(detail);
  }
}

/** Why a received packet was not accepted by the ESP layer. */
export type EspDropReason =
  /** Shorter than header + IV + minimal trailer + ICV, or not block aligned. */
  | 'malformed'
  /** ICV / AEAD tag mismatch, or bad padding after authentication. */
  | 'corrupted';

interface AeadInfo {
  readonly kind: 'aead';
  readonly chacha: boolean;
  readonly icvLength: number;
}
interface CbcInfo {
  readonly kind: 'cbc';
}

function encrInfo(encr: number): AeadInfo | CbcInfo {
  switch (encr) {
    case EncrId.AES_GCM_8:
      return { kind: 'aead', chacha: false, icvLength: 8 };
    case EncrId.AES_GCM_12:
      return { kind: 'aead', chacha: false, icvLength: 12 };
    case EncrId.AES_GCM_16:
      return { kind: 'aead', chacha: false, icvLength: 16 };
    case EncrId.CHACHA20_POLY1305:
      return { kind: 'aead', chacha: true, icvLength: 16 };
    case EncrId.AES_CBC:
      return { kind: 'cbc' };
    default:
      throw new EspConfigError('unsupported-algorithm', `ESP does not support ${nameOf(EncrId, encr, 'ENCR')}`);
  }
}

const HMACS: ReadonlyMap<number, { hash: string; keyLength: number; icvLength: number }> = new Map([
  [IntegId.HMAC_SHA1_96, { hash: 'sha1', keyLength: 20, icvLength: 12 }],
  [IntegId.HMAC_SHA2_256_128, { hash: 'sha256', keyLength: 32, icvLength: 16 }],
  [IntegId.HMAC_SHA2_384_192, { hash: 'sha384', keyLength: 48, icvLength: 24 }],
  [IntegId.HMAC_SHA2_512_256, { hash: 'sha512', keyLength: 64, icvLength: 32 }],
]);

/** True for the counter-based ciphers whose IV carries a Sender-ID (RFC 9838 2.5). */
export function isCounterModeEsp(alg: EspAlgorithm): boolean {
  return encrInfo(alg.encr).kind === 'aead';
}

/** Checks the SN transform: ESN is forbidden for multicast SAs (RFC 9838 4.4.2.1.3). */
export function checkSnTransform(sn: number): void {
  if (sn !== SnId.SEQ32 && sn !== SnId.UNSPECIFIED32) {
    throw new EspConfigError('bad-sn', `SN transform ${nameOf(SnId, sn, 'SN')} is not allowed on a multicast SA`);
  }
}

/** Where the IV of one AEAD packet comes from: Sender-ID field and counter (RFC 6054). */
export interface SenderIv {
  /** GWP_SENDER_ID_BITS, 0..32 (0 = single sender, no Sender-ID field). */
  readonly senderIdBits: number;
  readonly senderId: number;
  /** 0 .. ivCounterLimit(senderIdBits) - 1. */
  readonly counter: number;
}

/**
 * Number of counter values one Sender-ID has: 2^(64 - bits), capped at 2^53
 * so that the counter stays an exact JS number (2^53 packets outlast any SA).
 */
export function ivCounterLimit(senderIdBits: number): number {
  return 2 ** Math.min(64 - senderIdBits, 53);
}

/** Validates GWP_SENDER_ID_BITS and a Sender-ID (RFC 9838 2.5.2: a value that does not fit is fatal). */
export function checkSenderId(senderIdBits: number, senderId: number): void {
  if (!Number.isInteger(senderIdBits) || senderIdBits < 0 || senderIdBits > 32) {
    throw new EspConfigError('bad-sender-id', `GWP_SENDER_ID_BITS ${senderIdBits} is outside 0..32`);
  }
  if (!Number.isInteger(senderId) || senderId < 0 || senderId >= 2 ** senderIdBits) {
    throw new EspConfigError(
      'bad-sender-id',
      `Sender-ID ${senderId} does not fit in ${senderIdBits} bits: the member must re-register (RFC 9838 2.5.2)`,
    );
  }
}

/** Writes the 8-octet IV: Sender-ID in the top `senderIdBits` bits, counter below. */
export function writeSenderIv(out: Buffer, offset: number, iv: SenderIv): void {
  const lowBits = 64 - iv.senderIdBits;
  const lo = iv.counter % 0x1_0000_0000;
  const hiCounter = Math.floor(iv.counter / 0x1_0000_0000);
  // lowBits >= 32 here (bits <= 32): the Sender-ID lives wholly in the high word.
  const hi = iv.senderId * 2 ** (lowBits - 32) + hiCounter;
  out.writeUInt32BE(hi >>> 0, offset);
  out.writeUInt32BE(lo >>> 0, offset + 4);
}

/** Reads the Sender-ID field of an AEAD IV (diagnostics and own-packet detection). */
export function readSenderId(iv: Uint8Array, senderIdBits: number): number {
  if (senderIdBits === 0) return 0;
  const b = Buffer.from(iv.buffer, iv.byteOffset, iv.byteLength);
  return Math.floor(b.readUInt32BE(0) / 2 ** (32 - senderIdBits));
}

export interface EspOpened {
  readonly spi: number;
  readonly seq: number;
  readonly nextHeader: number;
  /** The 8-octet AEAD IV, a view into the packet (undefined for CBC). */
  readonly iv: Buffer | undefined;
  /** A view into the decrypted plaintext (Payload Data without padding and trailer). */
  readonly payload: Buffer;
}

export type EspOpenResult = { readonly ok: true; readonly packet: EspOpened } | { readonly ok: false; readonly reason: EspDropReason };

/**
 * The crypto state of one ESP SA: keys prepared once, per-packet work only.
 * Sequence numbers and IV counters are the caller's (channel-core keeps them
 * per SA and Sender-ID); this object never chooses an AEAD IV itself.
 */
export interface EspSa {
  readonly spi: number;
  readonly aead: boolean;
  readonly ivLength: number;
  readonly icvLength: number;
  /** Octets added to a payload of `length` octets (an upper bound with TFC padding, which not every Next Header gets). */
  overhead(payloadLength: number): number;
  /**
   * Builds a complete ESP packet whose Payload Data is `prefix | payload`
   * (the prefix saves the caller a copy of the datagram to put an inner
   * header in front of it). `iv` is required for AEADs and ignored for CBC
   * (random IV).
   */
  seal(seq: number, iv: SenderIv | undefined, nextHeader: number, payload: Uint8Array, prefix?: Uint8Array): Buffer;
  /** Verifies and decrypts; never throws on hostile input. */
  open(packet: Uint8Array): EspOpenResult;
}

/** SPI of an ESP packet, or undefined when it is too short to have one. */
export function peekSpi(packet: Uint8Array): number | undefined {
  if (packet.length < ESP_HEADER_LENGTH) return undefined;
  return ((packet[0]! << 24) | (packet[1]! << 16) | (packet[2]! << 8) | packet[3]!) >>> 0;
}

/** Sequence number of an ESP packet (caller checked the length with peekSpi). */
export function peekSeq(packet: Uint8Array): number {
  return ((packet[4]! << 24) | (packet[5]! << 16) | (packet[6]! << 8) | packet[7]!) >>> 0;
}

function checkSpi(spi: number): void {
  // RFC 4303 2.1: 0 is reserved, 1..255 reserved by IANA.
  if (!Number.isInteger(spi) || spi < 256 || spi > 0xffffffff) {
    throw new EspConfigError('bad-spi', `SPI ${spi} is not a usable ESP SPI (256 .. 2^32-1)`);
  }
}

/** Default RFC 4303 padding bytes 1, 2, 3, ... (at most 255). */
const DEFAULT_PADDING = Buffer.from(Array.from({ length: 255 }, (_, i) => i + 1));

/** CBC IVs come from the CSPRNG in blocks to keep the per-packet cost down. */
class IvPool {
  private pool: Buffer = Buffer.alloc(0);
  private used = 0;
  constructor(private readonly rng: RandomSource) {}
  take(out: Buffer, offset: number, length: number): void {
    if (this.used + length > this.pool.length) {
      this.pool = this.rng.bytes(4096);
      this.used = 0;
    }
    this.pool.copy(out, offset, this.used, this.used + length);
    this.used += length;
  }
}

export interface CreateEspSaOptions {
  /** For CBC IVs; node's CSPRNG by default. */
  readonly random?: RandomSource | undefined;
  /**
   * TFC padding (RFC 4303 2.7): zero octets appended to the Payload Data of
   * a packet until it is this long, for the Next Headers whose payload
   * states its own length (IPv4, IPv6, UDP) and for dummy packets (59).
   * 0 or absent (the default): none. Every receiver must strip it (RFC 4303
   * 2.7 wants the use agreed first), so it is off unless asked for.
   */
  readonly tfcPadTo?: number | undefined;
}

/** Next Headers whose Payload Data may carry TFC padding (its length is inside it, or it is a dummy). */
const TFC_NEXT_HEADERS: ReadonlySet<number> = new Set([NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, NEXT_HEADER_UDP, NEXT_HEADER_NONE]);

/** Payload Data length of a packet carrying `dataLength` octets: with TFC padding when it applies. */
function bodyLength(tfcPadTo: number, nextHeader: number, dataLength: number): number {
  return tfcPadTo > dataLength && TFC_NEXT_HEADERS.has(nextHeader) ? tfcPadTo : dataLength;
}

function checkTfcPadTo(tfcPadTo: number | undefined): number {
  const n = tfcPadTo ?? 0;
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) {
    throw new EspConfigError('bad-tfc-padding', `TFC padding target ${tfcPadTo} is outside 0..65535`);
  }
  return n;
}

/** Prepares one SA's keys; throws EspConfigError for unsupported or inconsistent parameters. */
export function createEspSa(spi: number, alg: EspAlgorithm, keys: EspKeys, opts: CreateEspSaOptions = {}): EspSa {
  checkSpi(spi);
  const tfcPadTo = checkTfcPadTo(opts.tfcPadTo);
  const info = encrInfo(alg.encr);
  const integ = alg.integ ?? IntegId.NONE;
  if (info.kind === 'aead') {
    if (integ !== IntegId.NONE) {
      throw new EspConfigError('bad-combination', `${nameOf(EncrId, alg.encr)} is an AEAD; INTEG must be NONE`);
    }
    if (keys.integKey.length !== 0) throw new EspConfigError('bad-key-length', 'an AEAD SA has no integrity key');
    return createAeadSa(spi, alg, info, keys, tfcPadTo);
  }
  const hmac = HMACS.get(integ);
  if (hmac === undefined) {
    throw new EspConfigError('bad-combination', `AES-CBC needs HMAC-SHA1/SHA2 integrity, not ${nameOf(IntegId, integ)}`);
  }
  if (keys.integKey.length !== hmac.keyLength) {
    throw new EspConfigError('bad-key-length', `integrity key is ${keys.integKey.length} octets, need ${hmac.keyLength}`);
  }
  return createCbcSa(spi, alg, hmac, keys, new IvPool(opts.random ?? defaultRandom()), tfcPadTo);
}

function keyBitsFor(alg: EspAlgorithm, keyLength: number): void {
  if (alg.encrKeyBits !== undefined && alg.encrKeyBits !== keyLength * 8) {
    throw new EspConfigError(
      'bad-key-length',
      `key is ${keyLength * 8} bits but the Key Length attribute says ${alg.encrKeyBits}`,
    );
  }
}

function createAeadSa(spi: number, alg: EspAlgorithm, info: AeadInfo, keys: EspKeys, tfcPadTo: number): EspSa {
  const keyLength = keys.encrKey.length - 4;
  if (info.chacha ? keyLength !== 32 : keyLength !== 16 && keyLength !== 24 && keyLength !== 32) {
    throw new EspConfigError(
      'bad-key-length',
      `${nameOf(EncrId, alg.encr)} keying material is ${keys.encrKey.length} octets (key + 4-octet salt expected)`,
    );
  }
  keyBitsFor(alg, keyLength);
  const key: KeyObject = createSecretKey(Buffer.from(keys.encrKey.subarray(0, keyLength)));
  const gcmName = `aes-${keyLength * 8}-gcm` as CipherGCMTypes;
  const icvLength = info.icvLength;
  const options = { authTagLength: icvLength };
  const newCipher = info.chacha
    ? () => createCipheriv('chacha20-poly1305', key, nonce, options)
    : () => createCipheriv(gcmName, key, nonce, options);
  const newDecipher = info.chacha
    ? () => createDecipheriv('chacha20-poly1305', key, nonce, options)
    : () => createDecipheriv(gcmName, key, nonce, options);
  // Nonce scratch: salt | IV. createCipheriv copies it, so one buffer serves every packet.
  const nonce = Buffer.alloc(12);
  Buffer.from(keys.encrKey.subarray(keyLength)).copy(nonce, 0);
  const ivLength = 8;
  const headerLength = ESP_HEADER_LENGTH + ivLength;

  const paddedLength = (payloadLength: number): number => Math.ceil((payloadLength + 2) / 4) * 4;

  return {
    spi,
    aead: true,
    ivLength,
    icvLength,
    overhead: (n) => headerLength + paddedLength(Math.max(n, tfcPadTo)) - n + icvLength,
    seal(seq, iv, nextHeader, payload, prefix) {
      if (iv === undefined) throw new EspConfigError('bad-sender-id', 'an AEAD packet needs a Sender-ID IV');
      const prefixLength = prefix?.length ?? 0;
      const dataLength = prefixLength + payload.length;
      const body = bodyLength(tfcPadTo, nextHeader, dataLength);
      const ptLength = paddedLength(body);
      const padLength = ptLength - body - 2;
      const out = Buffer.allocUnsafe(headerLength + ptLength + icvLength);
      out.writeUInt32BE(spi, 0);
      out.writeUInt32BE(seq, 4);
      writeSenderIv(out, ESP_HEADER_LENGTH, iv);
      out.copy(nonce, 4, ESP_HEADER_LENGTH, headerLength);
      if (prefix) out.set(prefix, headerLength);
      out.set(payload, headerLength + prefixLength);
      let p = headerLength + dataLength;
      if (body > dataLength) {
        out.fill(0, p, p + body - dataLength);
        p += body - dataLength;
      }
      DEFAULT_PADDING.copy(out, p, 0, padLength);
      p += padLength;
      out[p++] = padLength;
      out[p++] = nextHeader;
      const c = newCipher();
      const pt = out.subarray(headerLength, p);
      c.setAAD(out.subarray(0, ESP_HEADER_LENGTH), { plaintextLength: ptLength });
      const ct = c.update(pt);
      ct.copy(out, headerLength);
      c.final();
      c.getAuthTag().copy(out, p);
      return out;
    },
    open(packet) {
      const ctLength = packet.length - headerLength - icvLength;
      if (ctLength < 4 || ctLength % 4 !== 0) return { ok: false, reason: 'malformed' };
      const buf = Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
      buf.copy(nonce, 4, ESP_HEADER_LENGTH, headerLength);
      let pt: Buffer;
      try {
        const d = newDecipher();
        d.setAAD(buf.subarray(0, ESP_HEADER_LENGTH), { plaintextLength: ctLength });
        d.setAuthTag(buf.subarray(packet.length - icvLength));
        pt = d.update(buf.subarray(headerLength, headerLength + ctLength));
        d.final(); // OpenSSL compares the tag in constant time here
      } catch {
        return { ok: false, reason: 'corrupted' };
      }
      return finishOpen(buf, pt, buf.subarray(ESP_HEADER_LENGTH, headerLength));
    },
  };
}

function createCbcSa(
  spi: number,
  alg: EspAlgorithm,
  hmac: { hash: string; keyLength: number; icvLength: number },
  keys: EspKeys,
  ivs: IvPool,
  tfcPadTo: number,
): EspSa {
  const keyLength = keys.encrKey.length;
  if (keyLength !== 16 && keyLength !== 24 && keyLength !== 32) {
    throw new EspConfigError('bad-key-length', `AES-CBC key is ${keyLength} octets`);
  }
  keyBitsFor(alg, keyLength);
  const key: KeyObject = createSecretKey(Buffer.from(keys.encrKey));
  const macKey: KeyObject = createSecretKey(Buffer.from(keys.integKey));
  const cipherName = `aes-${keyLength * 8}-cbc`;
  const ivLength = 16;
  const icvLength = hmac.icvLength;
  const headerLength = ESP_HEADER_LENGTH + ivLength;
  const paddedLength = (payloadLength: number): number => Math.ceil((payloadLength + 2) / 16) * 16;
  const iv = Buffer.alloc(ivLength);

  return {
    spi,
    aead: false,
    ivLength,
    icvLength,
    overhead: (n) => headerLength + paddedLength(Math.max(n, tfcPadTo)) - n + icvLength,
    seal(seq, _iv, nextHeader, payload, prefix) {
      const prefixLength = prefix?.length ?? 0;
      const dataLength = prefixLength + payload.length;
      const body = bodyLength(tfcPadTo, nextHeader, dataLength);
      const ptLength = paddedLength(body);
      const padLength = ptLength - body - 2;
      const out = Buffer.allocUnsafe(headerLength + ptLength + icvLength);
      out.writeUInt32BE(spi, 0);
      out.writeUInt32BE(seq, 4);
      ivs.take(out, ESP_HEADER_LENGTH, ivLength);
      out.copy(iv, 0, ESP_HEADER_LENGTH, headerLength);
      if (prefix) out.set(prefix, headerLength);
      out.set(payload, headerLength + prefixLength);
      let p = headerLength + dataLength;
      if (body > dataLength) {
        out.fill(0, p, p + body - dataLength);
        p += body - dataLength;
      }
      DEFAULT_PADDING.copy(out, p, 0, padLength);
      p += padLength;
      out[p++] = padLength;
      out[p++] = nextHeader;
      const c = createCipheriv(cipherName, key, iv).setAutoPadding(false);
      c.update(out.subarray(headerLength, p)).copy(out, headerLength);
      c.final();
      const mac = createHmac(hmac.hash, macKey).update(out.subarray(0, p)).digest();
      mac.copy(out, p, 0, icvLength);
      return out;
    },
    open(packet) {
      const ctLength = packet.length - headerLength - icvLength;
      if (ctLength < 16 || ctLength % 16 !== 0) return { ok: false, reason: 'malformed' };
      const buf = Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
      const end = headerLength + ctLength;
      // Encrypt-then-MAC: authenticate before decrypting anything.
      const mac = createHmac(hmac.hash, macKey).update(buf.subarray(0, end)).digest();
      if (!timingSafeEqual(mac.subarray(0, icvLength), buf.subarray(end))) return { ok: false, reason: 'corrupted' };
      const d = createDecipheriv(cipherName, key, buf.subarray(ESP_HEADER_LENGTH, headerLength)).setAutoPadding(false);
      const pt = d.update(buf.subarray(headerLength, end));
      d.final();
      return finishOpen(buf, pt, undefined);
    },
  };
}

/** Strips and checks the trailer of an authenticated plaintext. */
function finishOpen(packet: Buffer, pt: Buffer, iv: Buffer | undefined): EspOpenResult {
  const padLength = pt[pt.length - 2]!;
  const nextHeader = pt[pt.length - 1]!;
  const payloadLength = pt.length - 2 - padLength;
  if (payloadLength < 0) return { ok: false, reason: 'corrupted' };
  // Default padding (RFC 4303 2.4): the receiver SHOULD check it. Authenticated
  // already, so a mismatch means a sender bug, not an attack; drop all the same.
  for (let i = 0; i < padLength; i++) {
    if (pt[payloadLength + i] !== i + 1) return { ok: false, reason: 'corrupted' };
  }
  return {
    ok: true,
    packet: {
      spi: packet.readUInt32BE(0),
      seq: packet.readUInt32BE(4),
      nextHeader,
      iv,
      payload: pt.subarray(0, payloadLength),
    },
  };
}

// ---------------------------------------------------------------------------
// Inner framing for the user-space channel (see the module comment).

export type EspFramingMode = 'transport' | 'tunnel';

export interface InnerAddressing {
  /** Group (multicast) IPv4 address: inner destination in tunnel mode. */
  readonly groupAddress: string;
  readonly groupPort: number;
  /** Sender's IPv4 address: inner source in tunnel mode ('0.0.0.0' if unknown). */
  readonly sourceAddress: string;
  readonly sourcePort: number;
}

export interface InnerDatagram {
  readonly data: Buffer;
  readonly sourcePort: number;
  readonly destinationPort: number;
  /** Tunnel mode only: the preserved inner addresses. */
  readonly innerSource?: string | undefined;
  readonly innerDestination?: string | undefined;
}

export type InnerDropReason =
  /** Next Header 59: a dummy packet (RFC 4303 2.6), discarded silently. */
  | 'dummy'
  /** An inner header that does not parse or does not match the group. */
  | 'bad-inner';

export type InnerResult = { readonly ok: true; readonly datagram: InnerDatagram } | { readonly ok: false; readonly reason: InnerDropReason };

function parseIpv4(addr: string): number {
  const parts = addr.split('.');
  if (parts.length !== 4) throw new EspConfigError('bad-combination', `'${addr}' is not an IPv4 address`);
  let v = 0;
  for (const p of parts) {
    const n = Number(p);
    if (!/^\d{1,3}$/.test(p) || n > 255) throw new EspConfigError('bad-combination', `'${addr}' is not an IPv4 address`);
    v = v * 256 + n;
  }
  return v;
}

function formatIpv4(b: Buffer, offset: number): string {
  return `${b[offset]}.${b[offset + 1]}.${b[offset + 2]}.${b[offset + 3]}`;
}

function ipv4Checksum(b: Buffer, offset: number): number {
  let sum = 0;
  for (let i = 0; i < IPV4_HEADER_LENGTH; i += 2) sum += b.readUInt16BE(offset + i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Precomputed headers for one sender: per packet only lengths and the IPv4 checksum change. */
export interface InnerEncoder {
  readonly nextHeader: number;
  readonly headerLength: number;
  /** The inner packet (headers | data) in a fresh buffer. */
  encode(data: Uint8Array): Buffer;
  /**
   * Only the headers for `dataLength` octets of data, in a scratch buffer
   * that the next call overwrites (the hot path: EspSa.seal's `prefix`).
   */
  header(dataLength: number): Buffer;
}

export function createInnerEncoder(mode: EspFramingMode, a: InnerAddressing): InnerEncoder {
  const groupAddress = parseIpv4(a.groupAddress);
  const sourceAddress = parseIpv4(a.sourceAddress);
  const maxData = 0xffff - UDP_HEADER_LENGTH - (mode === 'tunnel' ? IPV4_HEADER_LENGTH : 0);
  const headerLength = UDP_HEADER_LENGTH + (mode === 'tunnel' ? IPV4_HEADER_LENGTH : 0);
  const scratch = Buffer.alloc(headerLength);
  const writeHeader = (out: Buffer, dataLength: number): void => {
    if (dataLength > maxData) throw new RangeError(`datagram of ${dataLength} octets exceeds ${maxData}`);
    let u = 0;
    if (mode === 'tunnel') {
      out[0] = 0x45; // version 4, IHL 5
      out[1] = 0;
      out.writeUInt16BE(headerLength + dataLength, 2);
      out.writeUInt32BE(0x4000, 4); // ID 0, DF: never fragmented inside ESP
      out[8] = 1; // TTL: a link-local hop; the outer packet is what travels
      out[9] = NEXT_HEADER_UDP;
      out.writeUInt16BE(0, 10);
      out.writeUInt32BE(sourceAddress, 12);
      out.writeUInt32BE(groupAddress, 16);
      out.writeUInt16BE(ipv4Checksum(out, 0), 10);
      u = IPV4_HEADER_LENGTH;
    }
    out.writeUInt16BE(a.sourcePort, u);
    out.writeUInt16BE(a.groupPort, u + 2);
    out.writeUInt16BE(UDP_HEADER_LENGTH + dataLength, u + 4);
    out.writeUInt16BE(0, u + 6);
  };
  return {
    nextHeader: mode === 'tunnel' ? NEXT_HEADER_IPV4 : NEXT_HEADER_UDP,
    headerLength,
    encode(data) {
      const out = Buffer.allocUnsafe(headerLength + data.length);
      writeHeader(out, data.length);
      out.set(data, headerLength);
      return out;
    },
    header(dataLength) {
      writeHeader(scratch, dataLength);
      return scratch;
    },
  };
}

/** The 16 octets of an IPv6 address in text form; undefined if it is not one (zone IDs included). */
function ipv6Octets(addr: string): Buffer | undefined {
  if (!isIPv6(addr) || addr.includes('%')) return undefined;
  let text = addr;
  const v4 = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(addr);
  if (v4) {
    const [a, b, c, d] = [v4[2], v4[3], v4[4], v4[5]].map(Number) as [number, number, number, number];
    text = `${v4[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves[1] ? halves[1].split(':') : [];
  const groups = halves.length === 2 ? [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail] : head;
  if (groups.length !== 8) return undefined;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** The group address as IPv6 octets, parsed once per address (decodeInner runs per packet). */
let lastGroup: { readonly text: string; readonly octets: Buffer | undefined } | undefined;
function groupIpv6(groupAddress: string): Buffer | undefined {
  if (lastGroup?.text !== groupAddress) lastGroup = { text: groupAddress, octets: ipv6Octets(groupAddress) };
  return lastGroup.octets;
}

const BAD_INNER: InnerResult = { ok: false, reason: 'bad-inner' };

/**
 * Parses what an ESP packet carried. `groupAddress` (tunnel mode) must equal
 * the inner destination; `groupPort` must equal the UDP destination port.
 *
 * Octets after the inner packet are TFC padding and are dropped (RFC 4303
 * 2.7): after the IP packet in tunnel mode (IPv4 or IPv6, as its header
 * states its length), after the UDP datagram in transport mode. Inside an
 * inner IP packet the UDP length must match the IP length exactly. Inner
 * IPv4 fragments and IPv6 extension headers are not accepted. Pure: the
 * caller decides what a rejected packet changes (channel-core: nothing).
 */
export function decodeInner(nextHeader: number, payload: Buffer, groupAddress: string, groupPort: number): InnerResult {
  if (nextHeader === NEXT_HEADER_NONE) return { ok: false, reason: 'dummy' };
  let packet = payload;
  let u = 0;
  let innerSource: string | undefined;
  let innerDestination: string | undefined;
  if (nextHeader === NEXT_HEADER_IPV4) {
    if (payload.length < IPV4_HEADER_LENGTH + UDP_HEADER_LENGTH) return BAD_INNER;
    const ihl = (payload[0]! & 0x0f) * 4;
    if (payload[0]! >> 4 !== 4 || ihl < IPV4_HEADER_LENGTH || payload[9] !== NEXT_HEADER_UDP) return BAD_INNER;
    // More Fragments or a fragment offset: no reassembly here.
    if ((payload.readUInt16BE(6) & 0x3fff) !== 0) return BAD_INNER;
    const totalLength = payload.readUInt16BE(2);
    if (totalLength > payload.length || totalLength < ihl + UDP_HEADER_LENGTH) return BAD_INNER;
    packet = payload.subarray(0, totalLength);
    innerSource = formatIpv4(payload, 12);
    innerDestination = formatIpv4(payload, 16);
    if (innerDestination !== groupAddress) return BAD_INNER;
    u = ihl;
  } else if (nextHeader === NEXT_HEADER_IPV6) {
    if (payload.length < IPV6_HEADER_LENGTH + UDP_HEADER_LENGTH) return BAD_INNER;
    if (payload[0]! >> 4 !== 6 || payload[6] !== NEXT_HEADER_UDP) return BAD_INNER;
    // Payload Length 0 (a jumbogram) fails the minimum too.
    const totalLength = IPV6_HEADER_LENGTH + payload.readUInt16BE(4);
    if (totalLength > payload.length || totalLength < IPV6_HEADER_LENGTH + UDP_HEADER_LENGTH) return BAD_INNER;
    const group = groupIpv6(groupAddress);
    if (group === undefined || !group.equals(payload.subarray(24, 40))) return BAD_INNER;
    packet = payload.subarray(0, totalLength);
    innerSource = formatIPv6(payload.subarray(8, 24));
    innerDestination = formatIPv6(payload.subarray(24, 40));
    u = IPV6_HEADER_LENGTH;
  } else if (nextHeader !== NEXT_HEADER_UDP) {
    return BAD_INNER;
  }
  if (packet.length < u + UDP_HEADER_LENGTH) return BAD_INNER;
  const udpLength = packet.readUInt16BE(u + 4);
  const destinationPort = packet.readUInt16BE(u + 2);
  if (udpLength < UDP_HEADER_LENGTH || destinationPort !== groupPort) return BAD_INNER;
  // Tunnel: the IP length already cut the TFC padding off. Transport: the UDP length does.
  if (u > 0 ? udpLength !== packet.length - u : udpLength > packet.length) return BAD_INNER;
  return {
    ok: true,
    datagram: {
      data: packet.subarray(u + UDP_HEADER_LENGTH, u + udpLength),
      sourcePort: packet.readUInt16BE(u),
      destinationPort,
      innerSource,
      innerDestination,
    },
  };
}
