import {
  decodeHeader,
  encodeHeader,
  IKE_HEADER_LENGTH,
  IKE_HEADER_LENGTH_OFFSET,
  type IkeHeader,
  type IkeHeaderFields,
} from './header.ts';
import { ExchangeType, nameOf, PayloadType } from './iana.ts';
import {
  decodeChainFrom,
  encodeChainInto,
  encodePayload,
  GENERIC_HEADER_LENGTH,
  isEncryptedContainer,
  payloadName,
  type Payload,
  writeGenericHeader,
} from './payload.ts';
import type { SkPayload } from './payloads/sk.ts';
import { checkFragmentNumbers, SKF_FIXED_LENGTH, type SkfPayload } from './payloads/skf.ts';
import { Reader } from './reader.ts';
import { EncodeError, Writer } from './writer.ts';

/** An IKE message: header and the outer payload chain (SK/SKF still encrypted). */
export interface IkeMessage {
  readonly header: IkeHeader;
  readonly payloads: readonly Payload[];
}

/** What a sender provides: nextPayload and length of the header are computed. */
export interface IkeMessageInput {
  readonly header: IkeHeaderFields;
  readonly payloads: readonly Payload[];
}

/** Decodes one whole datagram (without the NAT-T non-ESP marker). */
export function decodeMessage(buf: Uint8Array): IkeMessage {
  const header = decodeHeader(buf);
  // The chain is read in place so error offsets stay relative to the datagram.
  const r = new Reader(buf, '', IKE_HEADER_LENGTH, header.length);
  return { header, payloads: decodeChainFrom(r, header.nextPayload) };
}

/** Encodes a message; the header's Next Payload and Length are computed, whatever the input says. */
export function encodeMessage(m: IkeMessageInput): Buffer {
  const w = new Writer(512);
  encodeHeader(w, { ...m.header, nextPayload: m.payloads[0]?.type ?? PayloadType.NONE, length: 0 });
  encodeChainInto(w, m.payloads);
  w.patch32(IKE_HEADER_LENGTH_OFFSET, w.length);
  return w.finish();
}

/**
 * The container an encrypting engine is about to fill. For SKF, fragment
 * numbers are part of the authenticated prefix (RFC 7383 Section 2.5).
 */
export type EncryptedContainerHeader =
  | Pick<SkPayload, 'type' | 'critical' | 'innerFirst'>
  | Pick<SkfPayload, 'type' | 'critical' | 'innerFirst' | 'fragmentNumber' | 'totalFragments'>;

export interface ProtectedMessageLayout {
  readonly header: IkeHeaderFields;
  /** Cleartext payloads before the SK/SKF payload (normally none). */
  readonly outer?: readonly Payload[];
  readonly container: EncryptedContainerHeader;
  /**
   * Octets that will follow the container's header (and, for SKF, its
   * fragment numbers). On the wire: IV + ciphertext (inner payloads,
   * padding, pad length) + ICV. For the GSA_REKEY signature (RFC 9838
   * Section 2.4.1.1, chunk A): the plaintext inner payloads' length only.
   */
  readonly bodyLength: number;
}

/**
 * The octets from the first octet of the IKE header through the end of the
 * SK header (SKF: through Total Fragments), with the final lengths filled in.
 *
 * Why: the integrity check covers the header and the SK header, and their
 * Length fields depend on the size of the ciphertext and ICV. The engine
 * computes `bodyLength` from the cipher (IV, block padding, ICV sizes),
 * gets this prefix, then:
 *   - AEAD (RFC 5282): AAD = prefix; message = prefix | IV | ciphertext | ICV.
 *   - encrypt-then-MAC: ICV = MAC(prefix | IV | ciphertext); message = ... | ICV.
 *   - GSA_REKEY signing: A = this prefix with bodyLength = length of P.
 * The result is byte-identical to the start of
 * `encodeMessage({ header, payloads: [...outer, container + encrypted] })`.
 */
export function encodeProtectedPrefix(layout: ProtectedMessageLayout): Buffer {
  const { container } = layout;
  const outer = layout.outer ?? [];
  if (!Number.isInteger(layout.bodyLength) || layout.bodyLength < 0) {
    throw new EncodeError(`body length must be a non-negative integer, got ${layout.bodyLength}`);
  }
  if (outer.some(isEncryptedContainer)) throw new EncodeError('outer payloads cannot contain SK/SKF');
  const w = new Writer(128);
  encodeHeader(w, { ...layout.header, nextPayload: outer[0]?.type ?? container.type, length: 0 });
  // The outer chain ends in the container, so the last outer Next Payload points at it.
  outer.forEach((p, i) => encodePayload(w, p, outer[i + 1]?.type ?? container.type));
  const containerStart = w.length;
  writeGenericHeader(w, container.innerFirst, container.critical);
  let fixed = GENERIC_HEADER_LENGTH;
  if (container.type === PayloadType.SKF) {
    checkFragmentNumbers(container.fragmentNumber, container.totalFragments);
    w.u16(container.fragmentNumber).u16(container.totalFragments);
    fixed += SKF_FIXED_LENGTH;
  }
  const payloadLength = fixed + layout.bodyLength;
  if (payloadLength > 0xffff) throw new EncodeError(`encrypted payload of ${payloadLength} octets is too long`);
  w.patch16(containerStart + 2, payloadLength);
  w.patch32(IKE_HEADER_LENGTH_OFFSET, w.length + layout.bodyLength);
  return w.finish();
}

/**
 * For a received message whose last payload is SK or SKF: the authenticated
 * prefix (header through the container header, exactly as received) and the
 * encrypted body. `raw` must be the datagram `m` was decoded from.
 * Undefined when the message has no SK/SKF payload.
 */
export function splitProtectedMessage(
  raw: Uint8Array,
  m: IkeMessage,
): { prefix: Buffer; encrypted: Buffer } | undefined {
  const last = m.payloads[m.payloads.length - 1];
  if (!last || !isEncryptedContainer(last)) return undefined;
  if (raw.length !== m.header.length) throw new RangeError('raw datagram does not match the decoded message length');
  const split = raw.length - last.encrypted.length;
  return { prefix: Buffer.from(raw.subarray(0, split)), encrypted: Buffer.from(raw.subarray(split)) };
}

export interface MessageSummary {
  readonly exchange: string;
  readonly role: 'request' | 'response';
  readonly initiator: boolean;
  readonly messageId: number;
  readonly payloads: readonly string[];
  /** One line, e.g. `GSA_AUTH request #1 [I] SK{IDi AUTH IDg SA N(GROUP_SENDER)}`. */
  readonly text: string;
}

/**
 * A log-safe summary: names only, never payload contents. Pass the
 * decrypted inner payloads as `inner` to show them inside SK{...}.
 */
export function messageSummary(m: IkeMessage | IkeMessageInput, inner?: readonly Payload[]): MessageSummary {
  const { header } = m;
  const payloads = m.payloads.map((p) => {
    const name = payloadName(p);
    return inner && isEncryptedContainer(p) ? `${name}{${inner.map(payloadName).join(' ')}}` : name;
  });
  const exchange = nameOf(ExchangeType, header.exchangeType);
  const role = header.flags.response ? 'response' : 'request';
  const flags = [header.flags.initiator ? 'I' : '', header.flags.version ? 'V' : '', header.flags.response ? 'R' : '']
    .filter(Boolean)
    .join('');
  const text = `${exchange} ${role} #${header.messageId} [${flags}] ${payloads.join(' ')}`.trimEnd();
  return { exchange, role, initiator: header.flags.initiator, messageId: header.messageId, payloads, text };
}
