/**
 * The member side of GSA_REKEY (RFC 9838 Section 2.4.1.4): checks a received
 * datagram against the current Rekey SA and hands back what it says. In
 * order, each failure a typed rejection:
 *
 *   malformed      not a GSA_REKEY request (Response flag set, NOTES point 2),
 *                  undecodable, or GSA/KD breaking the Section 5 rules
 *   unknown-spi    no Rekey SA with this 16-octet SPI
 *   replay         Message ID not above the last accepted one (the first
 *                  must be at least GSA_INITIAL_MESSAGE_ID, or 0)
 *   bad-icv        decryption / ICV failure under GSK_e / GSK_a
 *   bad-signature  AUTH missing, not RFC 7427, AlgorithmIdentifier not the
 *                  one of the GCAUTH transform, or the signature over A | P
 *                  (Section 2.4.1.1) does not verify with AUTH_KEY
 *
 * Nothing is changed by a rejection or by an acceptance: the caller applies
 * the returned GSA / KD / Deletes and records the Message ID. The only state
 * here is fragment reassembly (Section 2.4.1.2): fragments are verified one
 * by one, the signature is checked over the reassembled message.
 */
import type { KeyObject } from 'node:crypto';
import { AuthError, parseRfc7427AuthData, verifyRekeySignature } from '../crypto/auth.ts';
import { IntegrityError, unprotect, type SkCipher } from '../crypto/cipher.ts';
import { DEFAULT_REASSEMBLY, Reassembler, type ReassemblyConfig } from '../ike/fragments.ts';
import { DecodeError } from '../wire/errors.ts';
import type { GsaPayload } from '../wire/gsa.ts';
import { decodeHeader, IKE_HEADER_LENGTH, IKE_HEADER_LENGTH_OFFSET, type IkeHeader } from '../wire/header.ts';
import { AuthMethod, ExchangeType, GcauthId, PayloadType } from '../wire/iana.ts';
import type { KdPayload } from '../wire/kd.ts';
import { decodeMessage, splitProtectedMessage } from '../wire/message.ts';
import { decodePayloadChain, findPayload, findPayloads, isPayloadOf, isUnknownPayload, type Payload } from '../wire/payload.ts';
import type { DeletePayload } from '../wire/payloads/delete.ts';
import type { NotifyPayload } from '../wire/payloads/notify.ts';
import { validateExchange } from '../wire/validator.ts';

/** How GSA_REKEY messages of a Rekey SA are authenticated (from the GCAUTH transform and AUTH_KEY). */
export type RekeyAuthentication =
  | { readonly kind: 'implicit' }
  | {
      readonly kind: 'signature';
      /** AUTH_KEY. */
      readonly publicKey: KeyObject;
      /** The GCAUTH transform's Signature Algorithm Identifier attribute: AUTH must carry exactly this. */
      readonly algorithmIdentifier: Buffer;
    };

/** What the member knows of one Rekey SA. */
export interface RekeySaReceiver {
  readonly spi: Buffer;
  /** Built from GSK_e / GSK_a. */
  readonly cipher: SkCipher;
  readonly auth: RekeyAuthentication;
  /** GSA_INITIAL_MESSAGE_ID, 0 when absent. */
  readonly initialMessageId: number;
  /** The highest Message ID accepted on this SA; undefined before the first. */
  readonly lastMessageId: number | undefined;
}

export type RekeyRejection = 'unknown-spi' | 'bad-icv' | 'replay' | 'bad-signature' | 'malformed';

export type RekeyReceipt =
  | {
      readonly status: 'accepted';
      readonly spi: Buffer;
      readonly messageId: number;
      readonly gsa: GsaPayload | undefined;
      readonly kd: KdPayload | undefined;
      readonly deletes: DeletePayload[];
      readonly notifies: NotifyPayload[];
      readonly payloads: Payload[];
    }
  /** A verified fragment was stored; the message is not complete yet. */
  | { readonly status: 'incomplete' }
  | { readonly status: 'rejected'; readonly reason: RekeyRejection; readonly detail: string };

/** Looks a Rekey SA up by its 16-octet SPI. */
export type RekeySaLookup = (spi: Buffer) => RekeySaReceiver | undefined;

const SK_HEADER_LENGTH = 4;
const SKF_FLAGS_OFFSET = IKE_HEADER_LENGTH + 1;
const ALLOWED_INNER: ReadonlySet<number> = new Set([PayloadType.GSA, PayloadType.KD, PayloadType.DELETE, PayloadType.NOTIFY, PayloadType.AUTH]);

class Rejected extends Error {
  constructor(
    readonly reason: RekeyRejection,
    readonly detail: string,
  ) {
    super(detail);
  }
}

export class RekeyReceiver {
  private readonly reassembler: Reassembler;
  /** Header and SKF flags of fragment 1, needed to rebuild chunk A (Section 2.4.1.2). */
  private readonly firstFragmentPrefix = new Map<string, Buffer>();

  constructor(reassembly: ReassemblyConfig = DEFAULT_REASSEMBLY) {
    this.reassembler = new Reassembler(reassembly);
  }

  /** Checks one datagram (IKE message without the non-ESP marker); see the module comment. */
  receive(datagram: Uint8Array, lookup: RekeySaLookup, now: number): RekeyReceipt {
    try {
      return this.check(Buffer.from(datagram), lookup, now);
    } catch (e) {
      if (e instanceof Rejected) return { status: 'rejected', reason: e.reason, detail: e.detail };
      if (e instanceof DecodeError) return { status: 'rejected', reason: 'malformed', detail: e.message };
      throw e;
    }
  }

  private check(raw: Buffer, lookup: RekeySaLookup, now: number): RekeyReceipt {
    const header = decodeHeader(raw);
    if (header.exchangeType !== ExchangeType.GSA_REKEY) throw new Rejected('malformed', `exchange type ${header.exchangeType}`);
    if (header.flags.response) throw new Rejected('malformed', 'GSA_REKEY with the Response flag set');
    const spi = Buffer.concat([header.spiI, header.spiR]);
    const sa = lookup(spi);
    if (!sa) throw new Rejected('unknown-spi', `no Rekey SA ${spi.toString('hex')}`);
    checkMessageId(sa, header.messageId);

    const message = decodeMessage(raw);
    const container = message.payloads[0];
    if (message.payloads.length !== 1 || !container) throw new Rejected('malformed', 'GSA_REKEY must carry exactly one SK or SKF payload');
    const split = splitProtectedMessage(raw, message);
    if (!split) throw new Rejected('malformed', 'GSA_REKEY without SK or SKF payload');
    const plaintext = decrypt(sa.cipher, split.prefix, split.encrypted);

    let innerFirst: number;
    let p: Buffer;
    let headerAndFlags: Buffer;
    if (isPayloadOf(container, PayloadType.SKF)) {
      const key = `${spi.toString('hex')}/${header.messageId}`;
      if (container.fragmentNumber === 1) this.rememberFirstFragment(key, raw);
      const r = this.reassembler.add(spi.toString('hex'), header.messageId, { ...container, plaintext }, now);
      if (r.status === 'rejected') throw new Rejected('malformed', `fragment: ${r.reason}`);
      if (r.status !== 'complete') return { status: 'incomplete' };
      const first = this.firstFragmentPrefix.get(key);
      this.firstFragmentPrefix.delete(key);
      if (!first) throw new Rejected('malformed', 'fragment 1 missing');
      ({ innerFirst, plaintext: p } = r);
      headerAndFlags = first;
    } else {
      innerFirst = raw[IKE_HEADER_LENGTH]!;
      p = plaintext;
      headerAndFlags = raw.subarray(0, SKF_FLAGS_OFFSET + 1);
    }
    const payloads = decodePayloadChain(innerFirst, p, 'SK');
    checkStructure(payloads);
    checkAuthentication(sa.auth, payloads, signedOctets(headerAndFlags, innerFirst, p));
    const violations = validateExchange(ExchangeType.GSA_REKEY, payloads, {
      rekeyStyle: 'multicast',
      groupSender: false,
      keyTree: true,
      gcauth: sa.auth.kind === 'signature' ? GcauthId.DIGITAL_SIGNATURE : GcauthId.IMPLICIT,
    });
    if (violations[0]) throw new Rejected('malformed', violations[0].message);
    return accepted(spi, header, payloads);
  }

  private rememberFirstFragment(key: string, raw: Buffer): void {
    // Bounded like the reassembler itself: the oldest entry goes first.
    while (this.firstFragmentPrefix.size >= this.reassembler.config.maxPending) {
      const oldest = this.firstFragmentPrefix.keys().next();
      if (oldest.done) break;
      this.firstFragmentPrefix.delete(oldest.value);
    }
    this.firstFragmentPrefix.set(key, Buffer.from(raw.subarray(0, SKF_FLAGS_OFFSET + 1)));
  }
}

/** Section 2.4.1.4: above the last accepted ID; the first at least GSA_INITIAL_MESSAGE_ID. */
function checkMessageId(sa: RekeySaReceiver, messageId: number): void {
  if (sa.lastMessageId !== undefined ? messageId <= sa.lastMessageId : messageId < sa.initialMessageId) {
    const floor = sa.lastMessageId !== undefined ? `last accepted ${sa.lastMessageId}` : `initial ${sa.initialMessageId}`;
    throw new Rejected('replay', `Message ID ${messageId}, ${floor}`);
  }
}

function decrypt(cipher: SkCipher, prefix: Buffer, encrypted: Buffer): Buffer {
  try {
    return unprotect(cipher, prefix, encrypted);
  } catch (e) {
    if (e instanceof IntegrityError) throw new Rejected('bad-icv', e.message);
    throw e;
  }
}

/**
 * Only GSA, KD, D, N and AUTH; at most one AUTH, and it comes last so the
 * signature covers everything. Unsupported non-critical payloads are skipped
 * (RFC 7296 3.2; a critical one already failed decoding), but still signed.
 */
function checkStructure(payloads: readonly Payload[]): void {
  payloads.forEach((p, i) => {
    if (!isUnknownPayload(p) && !ALLOWED_INNER.has(p.type)) throw new Rejected('malformed', `payload type ${p.type} in GSA_REKEY`);
    if (p.type === PayloadType.AUTH && i !== payloads.length - 1) throw new Rejected('malformed', 'AUTH is not the last payload');
  });
}

/**
 * A | P of Section 2.4.1.1 as the sender signed it: the received header and
 * SK (or fragment 1's SKF) flags, with the Length fields counting only P and
 * the SK payload in place of SKF (Section 2.4.1.2).
 */
function signedOctets(headerAndFlags: Buffer, innerFirst: number, p: Buffer): Buffer {
  const a = Buffer.alloc(IKE_HEADER_LENGTH + SK_HEADER_LENGTH);
  headerAndFlags.copy(a, 0, 0, IKE_HEADER_LENGTH);
  a[16] = PayloadType.SK; // the header's Next Payload
  a.writeUInt32BE(a.length + p.length, IKE_HEADER_LENGTH_OFFSET);
  a[IKE_HEADER_LENGTH] = innerFirst;
  a[IKE_HEADER_LENGTH + 1] = headerAndFlags[SKF_FLAGS_OFFSET]!;
  a.writeUInt16BE(SK_HEADER_LENGTH + p.length, IKE_HEADER_LENGTH + 2);
  return Buffer.concat([a, zeroSignatureValue(p)]);
}

/** P with the AUTH payload's Signature Value zeroed (ASN.1 Length and AlgorithmIdentifier kept). */
function zeroSignatureValue(p: Buffer): Buffer {
  // The chain already decoded, so walking its generic headers is safe; AUTH is last.
  let offset = 0;
  let last = 0;
  while (offset < p.length) {
    last = offset;
    offset += p.readUInt16BE(offset + 2);
  }
  const copy = Buffer.from(p);
  const authData = last + 8; // generic header (4) + Auth Method and RESERVED (4)
  if (authData >= copy.length) return copy;
  const signatureAt = authData + 1 + copy[authData]!;
  if (signatureAt < copy.length) copy.fill(0, signatureAt);
  return copy;
}

function checkAuthentication(auth: RekeyAuthentication, payloads: readonly Payload[], signed: Buffer): void {
  const payload = findPayload(payloads, PayloadType.AUTH);
  if (findPayloads(payloads, PayloadType.AUTH).length > 1) throw new Rejected('malformed', 'more than one AUTH');
  if (auth.kind === 'implicit') {
    if (payload) throw new Rejected('malformed', 'AUTH with GCAUTH Implicit (Section 2.4.1: MUST NOT be included)');
    return;
  }
  if (!payload) throw new Rejected('bad-signature', 'no AUTH payload');
  if (payload.method !== AuthMethod.DIGITAL_SIGNATURE) throw new Rejected('bad-signature', `auth method ${payload.method}`);
  try {
    const { algorithmIdentifier, signature } = parseRfc7427AuthData(payload.data);
    verifyRekeySignature(auth.publicKey, algorithmIdentifier, signed, signature, auth.algorithmIdentifier);
  } catch (e) {
    if (e instanceof AuthError) throw new Rejected('bad-signature', e.message);
    throw e;
  }
}

function accepted(spi: Buffer, header: IkeHeader, payloads: Payload[]): RekeyReceipt {
  return {
    status: 'accepted',
    spi,
    messageId: header.messageId,
    gsa: findPayload(payloads, PayloadType.GSA),
    kd: findPayload(payloads, PayloadType.KD),
    deletes: findPayloads(payloads, PayloadType.DELETE),
    notifies: findPayloads(payloads, PayloadType.NOTIFY),
    payloads,
  };
}
