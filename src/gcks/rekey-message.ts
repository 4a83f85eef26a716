/**
 * The GSA_REKEY pseudo-exchange message (RFC 9838 Section 2.4.1), built as
 * a pure function of its content, the current Rekey SA and the Message ID:
 *
 *   HDR, SK{ [GSA, KD,] [D...,] [N...,] [AUTH] }
 *
 * - HDR: the 16-octet Rekey SA SPI split over both SPI fields; exchange
 *   GSA_REKEY; Initiator flag set, Response flag clear (NOTES point 2).
 * - SK: protected with GSK_e / GSK_a of the current Rekey SA.
 * - AUTH (Section 2.4.1.1), unless the group uses GCAUTH Implicit: an RFC
 *   7427 signature over A | P, where A is the header and SK payload header
 *   with their Length fields adjusted to count only the plaintext inner
 *   payloads, and P is those inner payloads with the AUTH payload's
 *   Signature Value zeroed (its ASN.1 Length and AlgorithmIdentifier filled
 *   in). Then the real lengths, encryption and ICV.
 * - IKE fragmentation (Section 2.4.1.2, RFC 7383) above a configured size:
 *   the signature covers the whole message first, then ike/fragments.ts
 *   cuts P into SKF fragments protected one by one.
 *
 * Payload order follows the figures of Sections 2.4.1 and 2.4.3 (GSA, KD,
 * then Delete, then Notify, AUTH last so the signature covers all).
 */
import type { RekeySigner } from '../crypto/auth.ts';
import { protect, type SkCipher } from '../crypto/cipher.ts';
import {
  fitsInDatagram,
  fragmentMessage,
  skfProtector,
  type DatagramLimits,
} from '../ike/fragments.ts';
import type { GsaPayload } from '../wire/gsa.ts';
import type { IkeHeaderFields } from '../wire/header.ts';
import { AuthMethod, ExchangeType, PayloadType } from '../wire/iana.ts';
import type { KdPayload } from '../wire/kd.ts';
import { encodeProtectedPrefix } from '../wire/message.ts';
import { encodePayloadChain, type Payload } from '../wire/payload.ts';
import type { AuthPayload } from '../wire/payloads/auth.ts';
import type { DeletePayload } from '../wire/payloads/delete.ts';
import type { NotifyPayload } from '../wire/payloads/notify.ts';

export const REKEY_SPI_LENGTH = 16;

/** The GCKS's view of the Rekey SA a message is sent over. */
export interface RekeySaSender {
  /** The Rekey SA SPI (16 octets: SPIi | SPIr of the header). */
  readonly spi: Buffer;
  /**
   * Built once per Rekey SA from GSK_e / GSK_a (createSkCipher), so that AEAD
   * IVs come from one never-repeating counter for the SA's life.
   */
  readonly cipher: SkCipher;
  /** The group's rekey signing key (GCAUTH Digital Signature); absent for GCAUTH Implicit. */
  readonly signer?: RekeySigner | undefined;
}

/** What a rekey says; every part is optional, but a message says something. */
export interface RekeyContent {
  readonly gsa?: GsaPayload | undefined;
  readonly kd?: KdPayload | undefined;
  readonly deletes?: readonly DeletePayload[] | undefined;
  readonly notifies?: readonly NotifyPayload[] | undefined;
}

export interface BuildRekeyInput extends RekeyContent {
  readonly sa: RekeySaSender;
  /** From GSA_INITIAL_MESSAGE_ID (or 0) upward, one per message, never reused (persist before use). */
  readonly messageId: number;
  /** Fragment with SKF when the whole message would not fit these limits. */
  readonly fragmentation?: DatagramLimits | undefined;
}

export interface BuiltRekey {
  /** What to send (each retransmission resends these same octets). */
  readonly datagrams: Buffer[];
  /** Size of the message unfragmented, IKE header included. */
  readonly messageLength: number;
  readonly fragmented: boolean;
  /** The inner payloads as sent (AUTH with its real signature). */
  readonly inner: Payload[];
}

export class RekeyBuildError extends Error {
  override readonly name = 'RekeyBuildError';
}

/** HDR of a GSA_REKEY (Section 2.4.1 and NOTES point 2). */
export function rekeyHeader(spi: Buffer, messageId: number): IkeHeaderFields {
  if (spi.length !== REKEY_SPI_LENGTH) throw new RekeyBuildError(`Rekey SA SPI must be ${REKEY_SPI_LENGTH} octets, got ${spi.length}`);
  if (!Number.isInteger(messageId) || messageId < 0 || messageId > 0xffffffff) {
    throw new RekeyBuildError(`Message ID ${messageId} is not a 32-bit unsigned integer`);
  }
  return {
    spiI: Buffer.from(spi.subarray(0, 8)),
    spiR: Buffer.from(spi.subarray(8, 16)),
    majorVersion: 2,
    minorVersion: 0,
    exchangeType: ExchangeType.GSA_REKEY,
    flags: { initiator: true, version: false, response: false },
    messageId,
  };
}

/** The inner payloads in the order of Sections 2.4.1 / 2.4.3, without AUTH. */
export function rekeyPayloads(content: RekeyContent): Payload[] {
  const out: Payload[] = [];
  if (content.gsa) out.push(content.gsa);
  if (content.kd) out.push(content.kd);
  out.push(...(content.deletes ?? []), ...(content.notifies ?? []));
  return out;
}

/**
 * A | P of Section 2.4.1.1 for inner payloads `p` (encoded, AUTH included
 * with whatever Authentication Data it carries): the header and SK header
 * with lengths counting only P.
 */
export function rekeySignedOctets(header: IkeHeaderFields, innerFirst: number, p: Buffer): Buffer {
  const a = encodeProtectedPrefix({
    header,
    container: { type: PayloadType.SK, critical: false, innerFirst },
    bodyLength: p.length,
  });
  return Buffer.concat([a, p]);
}

function authPayload(data: Buffer): AuthPayload {
  return { type: PayloadType.AUTH, critical: false, method: AuthMethod.DIGITAL_SIGNATURE, data };
}

/** Builds one GSA_REKEY; see the module comment. */
export function buildRekey(input: BuildRekeyInput): BuiltRekey {
  const header = rekeyHeader(input.sa.spi, input.messageId);
  const body = rekeyPayloads(input);
  if (body.length === 0) throw new RekeyBuildError('a GSA_REKEY needs GSA/KD, Delete or Notify payloads');
  const signer = input.sa.signer;
  let inner = body;
  if (signer) {
    const authData = signer.signWithTemplate((template) => {
      const { firstType, bytes } = encodePayloadChain([...body, authPayload(template)]);
      return rekeySignedOctets(header, firstType, bytes);
    });
    inner = [...body, authPayload(authData)];
  }
  const { firstType, bytes: p } = encodePayloadChain(inner);
  const cipher = input.sa.cipher;
  const padded = Math.ceil((p.length + 1) / cipher.blockSize) * cipher.blockSize;
  const bodyLength = cipher.ivLength + padded + cipher.icvLength;
  const container = { type: PayloadType.SK, critical: false, innerFirst: firstType } as const;
  const messageLength = encodeProtectedPrefix({ header, container, bodyLength: 0 }).length + bodyLength;

  if (input.fragmentation && !fitsInDatagram(messageLength, input.fragmentation)) {
    const datagrams = fragmentMessage({
      header,
      innerFirst: firstType,
      inner: p,
      limits: input.fragmentation,
      protector: skfProtector(cipher),
    });
    return { datagrams, messageLength, fragmented: true, inner };
  }
  const prefix = encodeProtectedPrefix({ header, container, bodyLength });
  const message = Buffer.concat([prefix, protect(cipher, prefix, p)]);
  if (message.length !== messageLength) throw new RekeyBuildError('SK body length differs from the computed layout');
  return { datagrams: [message], messageLength, fragmented: false, inner };
}
