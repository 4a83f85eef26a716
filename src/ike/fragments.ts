/**
 * IKE message fragmentation (RFC 7383).
 *
 * Both sides announce N(IKEV2_FRAGMENTATION_SUPPORTED) in IKE_SA_INIT (the
 * engine's business). After that, a message whose SK payload would make the
 * IP datagram too large is sent as N messages, each carrying one Encrypted
 * Fragment payload (SKF) that is encrypted and authenticated on its own:
 *
 *   IKE header (Next Payload = SKF, Length = this fragment)
 *   SKF header: Next Payload (first inner payload type in fragment 1, 0 in
 *               the others) | C | Payload Length | Fragment Number (1..N) |
 *               Total Fragments (N)
 *   IV | E(chunk_i | Padding | Pad Length) | ICV
 *
 * The AAD (AEAD) or the MAC input (CBC+HMAC) covers the IKE header and the
 * 8-octet SKF header with their final lengths (cipher.ts documents it).
 *
 * Receiving: the caller decodes each SKF, verifies and decrypts it with the
 * SA's inbound cipher FIRST (a fragment whose ICV fails is dropped and never
 * reaches the Reassembler, RFC 7383 Section 2.6), then hands the chunk to a
 * `Reassembler`, which returns the inner payload chain once all fragments
 * are there.
 */
import type { SkCipher } from '../crypto/cipher.ts';
import { encodeHeader, IKE_HEADER_LENGTH, type IkeHeaderFields } from '../wire/header.ts';
import { PayloadType } from '../wire/iana.ts';
import { Writer } from '../wire/writer.ts';

/** Generic payload header (4) + Fragment Number (2) + Total Fragments (2). */
export const SKF_HEADER_LENGTH = 8;
export const MAX_TOTAL_FRAGMENTS = 0xffff;

/**
 * How a fragment's chunk gets encrypted: `protect` returns IV | E(chunk |
 * Padding | Pad Length) | ICV for the given AAD, and `overhead(n)` says how
 * many octets it adds to an n-octet chunk (so that lengths can be written
 * into the AAD before encrypting). `skfProtector` builds one from an SkCipher.
 */
export interface FragmentProtector {
  protect(aad: Buffer, plaintext: Buffer): Buffer;
  overhead(plaintextLength: number): number;
}

/** The protector for an SA's outbound SkCipher (cipher.ts). */
export function skfProtector(cipher: SkCipher): FragmentProtector {
  return {
    protect(aad: Buffer, plaintext: Buffer): Buffer {
      const { iv, ciphertextWithPadding, icv } = cipher.encrypt(plaintext, aad);
      return Buffer.concat([iv, ciphertextWithPadding, icv]);
    },
    overhead(n: number): number {
      const padded = Math.ceil((n + 1) / cipher.blockSize) * cipher.blockSize;
      return cipher.ivLength + (padded - n) + cipher.icvLength;
    },
  };
}

/** What sits between an IKE message and the link MTU (RFC 7383 Section 2.5.1). */
export interface DatagramLimits {
  /** Largest IP datagram to produce, IP and UDP headers and marker included. */
  readonly maxDatagramSize: number;
  /** IPv4 (20-octet header, no options) or IPv6 (40 octets, no extension headers). */
  readonly ipVersion: 4 | 6;
  /** The socket prefixes the 4-octet non-ESP marker (port 4500 style). */
  readonly marker: boolean;
}

/**
 * RFC 7383 Section 2.5.1's conservative sizes: 576 octets for IPv4 and
 * 1280 for IPv6 (the minimum IPv6 MTU). strongSwan uses 1280 for both.
 */
export const DEFAULT_MAX_DATAGRAM: Readonly<Record<4 | 6, number>> = Object.freeze({ 4: 576, 6: 1280 });

export const IPV4_HEADER_LENGTH = 20;
export const IPV6_HEADER_LENGTH = 40;
export const UDP_HEADER_LENGTH = 8;
export const NON_ESP_MARKER_LENGTH = 4;

/** Largest IKE message (header included, marker excluded) that fits the limits. */
export function ikeMessageBudget(limits: DatagramLimits): number {
  const ip = limits.ipVersion === 6 ? IPV6_HEADER_LENGTH : IPV4_HEADER_LENGTH;
  return limits.maxDatagramSize - ip - UDP_HEADER_LENGTH - (limits.marker ? NON_ESP_MARKER_LENGTH : 0);
}

/** Whether an unfragmented IKE message of `messageLength` octets fits in one datagram. */
export function fitsInDatagram(messageLength: number, limits: DatagramLimits): boolean {
  return messageLength <= ikeMessageBudget(limits);
}

export class FragmentationError extends Error {
  override readonly name = 'FragmentationError';
}

/**
 * The largest chunk of inner payload octets one fragment can carry:
 * IKE header + SKF header + chunk + overhead(chunk) <= budget.
 */
export function maxFragmentChunk(limits: DatagramLimits, protector: FragmentProtector): number {
  const room = ikeMessageBudget(limits) - IKE_HEADER_LENGTH - SKF_HEADER_LENGTH;
  // overhead(c) + c never decreases with c, so walk down to the first fit
  // (a few dozen steps: the IV, one cipher block and the ICV at most).
  let c = room;
  while (c > 0 && c + protector.overhead(c) > room) c--;
  return c;
}

export interface FragmentRequest {
  /** The message's header fields; Next Payload and Length are set per fragment. */
  readonly header: IkeHeaderFields;
  /** Type of the first payload in `inner` (what SK's Next Payload would be). */
  readonly innerFirst: number;
  /** The plaintext inner payload chain of the SK payload being fragmented. */
  readonly inner: Buffer;
  readonly limits: DatagramLimits;
  readonly protector: FragmentProtector;
}

/**
 * Cuts the message into complete, protected IKE messages (without the
 * non-ESP marker, which the socket adapter adds). Fragment i carries the
 * i-th chunk of `inner`; every fragment but possibly the last is full.
 * An empty `inner` yields one fragment. Used for retransmissions too: the
 * same list is resent whole (RFC 7383 Section 2.6).
 */
export function fragmentMessage(req: FragmentRequest): Buffer[] {
  const chunk = maxFragmentChunk(req.limits, req.protector);
  if (chunk < 1) {
    throw new FragmentationError(
      `a ${req.limits.maxDatagramSize}-octet datagram leaves no room for fragment data`,
    );
  }
  const total = Math.max(1, Math.ceil(req.inner.length / chunk));
  if (total > MAX_TOTAL_FRAGMENTS) throw new FragmentationError(`${total} fragments exceed ${MAX_TOTAL_FRAGMENTS}`);
  const out: Buffer[] = [];
  for (let i = 0; i < total; i++) {
    const plain = req.inner.subarray(i * chunk, Math.min(req.inner.length, (i + 1) * chunk));
    const bodyLength = req.protector.overhead(plain.length) + plain.length;
    const messageLength = IKE_HEADER_LENGTH + SKF_HEADER_LENGTH + bodyLength;
    const w = new Writer(messageLength);
    encodeHeader(w, { ...req.header, nextPayload: PayloadType.SKF, length: messageLength });
    w.u8(i === 0 ? req.innerFirst : PayloadType.NONE)
      .u8(0)
      .u16(SKF_HEADER_LENGTH + bodyLength)
      .u16(i + 1)
      .u16(total);
    const aad = w.finish();
    const body = req.protector.protect(aad, Buffer.from(plain));
    if (body.length !== bodyLength) {
      throw new FragmentationError(`protector produced ${body.length} octets, overhead() promised ${bodyLength}`);
    }
    out.push(Buffer.concat([aad, body]));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Reassembly

export interface ReassemblyConfig {
  /** Highest Total Fragments accepted. */
  readonly maxFragments: number;
  /** Cap on the sum of the decrypted chunks of one message. */
  readonly maxBytes: number;
  /** A message not complete this long after its first fragment is dropped. */
  readonly timeoutMs: number;
  /** Messages reassembled at once (all SAs); beyond it the oldest is dropped. */
  readonly maxPending: number;
}

export const DEFAULT_REASSEMBLY: ReassemblyConfig = Object.freeze({
  maxFragments: 64,
  maxBytes: 64 * 1024,
  timeoutMs: 30_000,
  maxPending: 64,
});

/** One fragment after the caller verified its ICV and decrypted it. */
export interface VerifiedFragment {
  readonly fragmentNumber: number;
  readonly totalFragments: number;
  /** The SKF header's Next Payload; only fragment 1's value is used. */
  readonly innerFirst: number;
  /** The decrypted chunk (padding removed). */
  readonly plaintext: Buffer;
}

export type ReassemblyRejection =
  /** Fragment Number 0, above Total Fragments, or Total Fragments 0. */
  | 'bad-number'
  /** Total Fragments above maxFragments. */
  | 'too-many-fragments'
  /** The chunks together exceed maxBytes; the whole message was dropped. */
  | 'too-large'
  /** Total Fragments lower than that of the fragments already held (an older fragmentation). */
  | 'stale-total';

export type ReassemblyResult =
  | { readonly status: 'complete'; readonly innerFirst: number; readonly plaintext: Buffer; readonly fragments: number }
  | { readonly status: 'incomplete'; readonly received: number; readonly total: number }
  | { readonly status: 'duplicate' }
  | { readonly status: 'rejected'; readonly reason: ReassemblyRejection };

interface Pending {
  readonly sa: string;
  readonly messageId: number;
  total: number;
  startedAt: number;
  bytes: number;
  innerFirst: number | undefined;
  chunks: (Buffer | undefined)[];
  received: number;
}

/**
 * Collects verified fragments per (SA, Message ID). Rules (RFC 7383 Section
 * 2.6): a duplicate Fragment Number is ignored; a fragment whose Total
 * Fragments is greater than that of the fragments held means the sender
 * re-fragmented (smaller fragments after losses), so what was held is
 * discarded and reassembly restarts; a lower Total Fragments is an older
 * fragmentation and the fragment is dropped.
 *
 * The caller must check the Message ID against its window first (a request
 * already answered is a retransmission, handled by ResponseCache), so that
 * old fragments do not open reassemblies.
 */
export class Reassembler {
  private readonly pending = new Map<string, Pending>();

  constructor(readonly config: ReassemblyConfig = DEFAULT_REASSEMBLY) {
    if (!(config.maxFragments >= 1 && config.maxFragments <= MAX_TOTAL_FRAGMENTS)) {
      throw new RangeError('maxFragments must be in 1..65535');
    }
    if (!(config.maxBytes > 0 && config.timeoutMs > 0 && config.maxPending >= 1)) {
      throw new RangeError('bad reassembly config');
    }
  }

  /** Messages being reassembled. */
  get size(): number {
    return this.pending.size;
  }

  /** `sa` identifies the IKE SA (e.g. SPIi|SPIr in hex), `messageId` the message. */
  add(sa: string, messageId: number, frag: VerifiedFragment, now: number): ReassemblyResult {
    this.expire(now);
    const { fragmentNumber: num, totalFragments: total } = frag;
    if (!Number.isInteger(total) || !Number.isInteger(num) || total < 1 || num < 1 || num > total) {
      return { status: 'rejected', reason: 'bad-number' };
    }
    if (total > this.config.maxFragments) return { status: 'rejected', reason: 'too-many-fragments' };
    if (frag.plaintext.length > this.config.maxBytes) {
      this.discard(sa, messageId);
      return { status: 'rejected', reason: 'too-large' };
    }
    const key = keyOf(sa, messageId);
    let p = this.pending.get(key);
    if (p && total < p.total) return { status: 'rejected', reason: 'stale-total' };
    if (p && total > p.total) {
      this.pending.delete(key);
      p = undefined;
    }
    if (!p) {
      while (this.pending.size >= this.config.maxPending) {
        const oldest = this.pending.keys().next();
        if (oldest.done) break;
        this.pending.delete(oldest.value);
      }
      p = {
        sa,
        messageId,
        total,
        startedAt: now,
        bytes: 0,
        innerFirst: undefined,
        chunks: new Array<Buffer | undefined>(total).fill(undefined),
        received: 0,
      };
      this.pending.set(key, p);
    }
    if (p.chunks[num - 1] !== undefined) return { status: 'duplicate' };
    if (p.bytes + frag.plaintext.length > this.config.maxBytes) {
      this.pending.delete(key);
      return { status: 'rejected', reason: 'too-large' };
    }
    p.chunks[num - 1] = Buffer.from(frag.plaintext);
    p.bytes += frag.plaintext.length;
    p.received++;
    if (num === 1) p.innerFirst = frag.innerFirst;
    if (p.received < p.total) return { status: 'incomplete', received: p.received, total: p.total };
    this.pending.delete(key);
    const chunks = p.chunks.filter((c): c is Buffer => c !== undefined);
    return {
      status: 'complete',
      innerFirst: p.innerFirst ?? PayloadType.NONE,
      plaintext: Buffer.concat(chunks, p.bytes),
      fragments: p.total,
    };
  }

  /** Drops the reassembly of one message, or of every message of `sa` (SA deleted). */
  discard(sa: string, messageId?: number): void {
    if (messageId !== undefined) {
      this.pending.delete(keyOf(sa, messageId));
      return;
    }
    for (const [k, p] of this.pending) if (p.sa === sa) this.pending.delete(k);
  }

  /** Drops reassemblies older than timeoutMs; returns which. */
  expire(now: number): { sa: string; messageId: number }[] {
    const out: { sa: string; messageId: number }[] = [];
    for (const [k, p] of this.pending) {
      if (now - p.startedAt >= this.config.timeoutMs) {
        this.pending.delete(k);
        out.push({ sa: p.sa, messageId: p.messageId });
      }
    }
    return out;
  }

  /** When the oldest pending reassembly times out, for nextTimeout. */
  nextExpiry(): number | undefined {
    let best: number | undefined;
    for (const p of this.pending.values()) {
      const t = p.startedAt + this.config.timeoutMs;
      if (best === undefined || t < best) best = t;
    }
    return best;
  }
}

function keyOf(sa: string, messageId: number): string {
  return `${sa}/${messageId}`;
}
