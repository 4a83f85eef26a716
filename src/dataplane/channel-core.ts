/**
 * The sans-I/O group channel: which SA a datagram is sent on, which SA a
 * received packet belongs to, replay checks, and rekey rollover (RFC 5374
 * 4.2.1 as RFC 9838 4.4.3.1.1 parameterises it with GWP_ATD / GWP_DTD):
 *
 *   - a new SA is accepted on receive as soon as the member has it;
 *   - a sender starts sending on it ATD after it appeared (or at the
 *     `activateAt` the SA table gives) and from then on never uses an older
 *     SA again;
 *   - an SA that left the table (deleted, replaced) is still accepted for DTD
 *     (or until the `deactivateAt` the table gives); after that its packets
 *     are dropped as 'stale-sa' and its keys forgotten.
 *
 * Each datagram goes out on exactly one SA, so nothing is delivered twice in
 * an overlap; with "32-bit Sequential Numbers" each SA has a replay window,
 * so a packet replayed by the network or an attacker is not delivered twice
 * either. With "32-bit Unspecified Numbers" (several senders share the SA)
 * there is no replay protection (RFC 9838 2.6).
 *
 * IV uniqueness (RFC 9838 2.5): a sender builds every AEAD IV from one of its
 * Sender-IDs and a counter that belongs to that (SA keys, Sender-ID) pair.
 * The counters live in an `IvCounterRegistry` shared by every channel of the
 * process, so closing and reopening a channel on the same SA continues the
 * counter instead of restarting it. When a Sender-ID's counter space is used
 * up the next Sender-ID is taken (RFC 9838 2.5.1 "use them serially"); when
 * all are used up the channel refuses to send ('iv-exhausted').
 * Across process restarts the counters are not kept: a restarted member must
 * re-register, which gives it new Sender-IDs (RFC 9838 2.5.1), before
 * sending on counter-mode SAs again.
 *
 * No clock inside: every call takes `now` in milliseconds.
 */
import { createHash } from 'node:crypto';
import { SnId } from '../wire/iana.ts';
import {
  checkSenderId,
  checkSnTransform,
  createEspSa,
  createInnerEncoder,
  decodeInner,
  EspConfigError,
  ivCounterLimit,
  peekSpi,
  peekSeq,
  readSenderId,
  type EspAlgorithm,
  type EspFramingMode,
  type EspKeys,
  type EspSa,
  type InnerEncoder,
  type SenderIv,
} from './esp.ts';
import { DEFAULT_REPLAY_WINDOW, ReplayWindow } from './replay.ts';
import type { RandomSource } from '../crypto/random.ts';

/**
 * One Data-Security SA as the channel needs it: the narrow view of the GM's
 * SA table (src/gm/sa-table.ts) that the data plane consumes.
 */
export interface GroupSa {
  /** ESP SPI (the GSA's 4-octet SPI as a number). */
  readonly spi: number;
  readonly algorithm: EspAlgorithm;
  readonly keys: EspKeys;
  /** SnId.SEQ32 or SnId.UNSPECIFIED32 (the SN transform). */
  readonly sn: number;
  /** This member may send on the SA (it registered as a sender and the SA covers its traffic). */
  readonly outbound?: boolean | undefined;
  /** When senders may start using it (ms since epoch); default: first seen by the channel + ATD. */
  readonly activateAt?: number | undefined;
  /** When receivers stop accepting it (ms); default: when it left the table + DTD. */
  readonly deactivateAt?: number | undefined;
}

/** The member's sender credentials, group-wide (RFC 9838 2.5.1: one Sender-ID for every counter-mode SA). */
export interface SenderIdentity {
  /** GWP_SENDER_ID_BITS; 0 when the GCKS sent none (single sender). */
  readonly senderIdBits: number;
  /** GM_SENDER_ID values, used serially. Empty with bits 0 means the implicit Sender-ID 0. */
  readonly senderIds: readonly number[];
}

export interface GroupSaTable {
  readonly sas: readonly GroupSa[];
  /** GWP_ATD in milliseconds (0/absent: none). */
  readonly atdMs?: number | undefined;
  /** GWP_DTD in milliseconds (0/absent: none). */
  readonly dtdMs?: number | undefined;
  /** Absent for a receive-only member. */
  readonly sender?: SenderIdentity | undefined;
}

export type ChannelDropReason =
  /** ICV/tag mismatch or bad padding. */
  | 'corrupted'
  /** Too short / misaligned to be an ESP packet of its SA. */
  | 'malformed'
  /** Seen before, or left of the replay window. */
  | 'replayed'
  /** No SA with this SPI was ever known to the channel (or forgotten long ago). */
  | 'unknown-spi'
  /** The SA was known but its DTD has passed. */
  | 'stale-sa'
  /** Next Header 59: TFC dummy packet, discarded (RFC 4303 2.6). */
  | 'dummy'
  /** Authenticated, but the inner header does not parse or names another group/port. */
  | 'bad-inner';

export type SendRefusal =
  /** No active SA this member may send on. */
  | 'no-outbound-sa'
  /** Every Sender-ID's IV counter is used up for the current SA: sending would repeat an IV. */
  | 'iv-exhausted'
  /** "32-bit Sequential Numbers" must not cycle (RFC 4303 3.3.3); the SA needs a rekey. */
  | 'sequence-exhausted';

export const DROP_REASONS: readonly ChannelDropReason[] = [
  'corrupted',
  'malformed',
  'replayed',
  'unknown-spi',
  'stale-sa',
  'dummy',
  'bad-inner',
];
export const SEND_REFUSALS: readonly SendRefusal[] = ['no-outbound-sa', 'iv-exhausted', 'sequence-exhausted'];

export interface ReceivedDatagram {
  readonly data: Buffer;
  readonly spi: number;
  readonly seq: number;
  /** Sender-ID field of the IV (counter-mode SAs with a known GWP_SENDER_ID_BITS). */
  readonly senderId: number | undefined;
  readonly sourcePort: number;
  /** Tunnel mode: the preserved inner source address. */
  readonly innerSource: string | undefined;
}

export type OpenResult =
  | { readonly ok: true; readonly datagram: ReceivedDatagram }
  | { readonly ok: false; readonly reason: ChannelDropReason; readonly spi: number | undefined };

export type SealResult =
  | { readonly ok: true; readonly packet: Buffer; readonly spi: number; readonly seq: number }
  | { readonly ok: false; readonly reason: SendRefusal };

export interface SaStatus {
  readonly spi: number;
  readonly outbound: boolean;
  /** 'pending': not yet active for sending; 'active'; 'draining': left the table, within DTD. */
  readonly state: 'pending' | 'active' | 'draining';
  readonly activateAt: number;
  readonly deactivateAt: number | undefined;
  readonly replayHighest: number | undefined;
}

export interface ChannelCoreStats {
  readonly sent: number;
  readonly delivered: number;
  readonly dropped: Readonly<Record<ChannelDropReason, number>>;
  readonly refused: Readonly<Record<SendRefusal, number>>;
  /** SPI the next datagram would go out on (undefined if none). */
  readonly outboundSpi: number | undefined;
  readonly sas: readonly SaStatus[];
}

/** The last sequence number sent on one SA; shared by every channel using the SA. */
export interface SeqCell {
  last: number;
}

/** The next unused IV counter of one (SA, Sender-ID); shared by every channel using the SA. */
export interface IvCell {
  readonly senderId: number;
  next: number;
}

/**
 * Per-(SA keys) sequence numbers and per-(SA keys, Sender-ID) IV counters,
 * shared by the process's channels. Channels hold the cells themselves, so
 * the hot path touches no map.
 */
export class IvCounterRegistry {
  private readonly seqs = new Map<string, SeqCell>();
  private readonly ivs = new Map<string, IvCell>();

  seqCell(saKey: string): SeqCell {
    let c = this.seqs.get(saKey);
    if (!c) this.seqs.set(saKey, (c = { last: 0 }));
    return c;
  }
  ivCell(saKey: string, senderId: number): IvCell {
    const k = `${saKey}/${senderId}`;
    let c = this.ivs.get(k);
    if (!c) this.ivs.set(k, (c = { senderId, next: 0 }));
    return c;
  }
  /** Last sequence number used on the SA (0 = none). */
  lastSeq(saKey: string): number {
    return this.seqCell(saKey).last;
  }
  setLastSeq(saKey: string, seq: number): void {
    this.seqCell(saKey).last = seq;
  }
  /** Next unused counter of (SA, Sender-ID). */
  nextCounter(saKey: string, senderId: number): number {
    return this.ivCell(saKey, senderId).next;
  }
  setNextCounter(saKey: string, senderId: number, next: number): void {
    this.ivCell(saKey, senderId).next = next;
  }
}

const processCounters = new IvCounterRegistry();

export interface ChannelCoreOptions {
  /** Group address and port: UDP destination inside ESP, inner destination in tunnel mode. */
  readonly groupAddress: string;
  readonly groupPort: number;
  /** 'transport' (default) or 'tunnel' with address preservation; see esp.ts. */
  readonly mode?: EspFramingMode | undefined;
  /** This member's address (inner source in tunnel mode); default '0.0.0.0'. */
  readonly sourceAddress?: string | undefined;
  /** Source port written into the inner UDP header; default the group port. */
  readonly sourcePort?: number | undefined;
  /** Replay window for "32-bit Sequential Numbers" SAs; default 128; 0 disables (a local matter, RFC 9838 2.6). */
  readonly replayWindow?: number | undefined;
  /** Retired SPIs remembered to tell 'stale-sa' from 'unknown-spi'; default 256. */
  readonly retiredMemory?: number | undefined;
  /** Shared IV counters; the process-wide registry by default (tests inject their own). */
  readonly ivCounters?: IvCounterRegistry | undefined;
  readonly random?: RandomSource | undefined;
  /** TFC padding of sent packets (esp.ts CreateEspSaOptions.tfcPadTo); none by default. Receivers always strip it. */
  readonly tfcPadTo?: number | undefined;
}

interface SaState {
  readonly entry: GroupSa;
  readonly esp: EspSa;
  /** sha256 over SPI and keys: identifies "these keys" in the IV counter registry. */
  readonly counterKey: string;
  readonly seenAt: number;
  removedAt: number | undefined;
  activateAt: number;
  deactivateAt: number;
  readonly replay: ReplayWindow | undefined;
  /** The table's `outbound` flag as last seen. */
  outbound: boolean;
  readonly seq: SeqCell;
  readonly senderSlots: IvCell[];
  slotIndex: number;
  readonly senderIdBits: number;
  readonly ivLimit: number;
}

/** The IV counter registry's key for an SA: a hash of its SPI and keys (never the keys themselves). */
export function ivCounterKey(sa: GroupSa): string {
  const h = createHash('sha256');
  const spi = Buffer.alloc(4);
  spi.writeUInt32BE(sa.spi);
  h.update(spi).update(sa.keys.encrKey).update(sa.keys.integKey);
  return h.digest('base64');
}

function sameKeys(a: GroupSa, b: GroupSa): boolean {
  return (
    a.algorithm.encr === b.algorithm.encr &&
    Buffer.compare(Buffer.from(a.keys.encrKey), Buffer.from(b.keys.encrKey)) === 0 &&
    Buffer.compare(Buffer.from(a.keys.integKey), Buffer.from(b.keys.integKey)) === 0
  );
}

export class GroupChannelCore {
  private readonly sas = new Map<number, SaState>();
  /** SPI -> time it went stale, insertion-ordered for bounded memory. */
  private readonly retired = new Map<number, number>();
  private readonly encoder: InnerEncoder;
  private readonly counters: IvCounterRegistry;
  private readonly replaySize: number;
  private readonly retiredMemory: number;
  private table: GroupSaTable = { sas: [] };
  private outbound: SaState | undefined;
  /** Time at which the outbound choice or the SA set may change by itself. */
  private nextEvent = Number.NEGATIVE_INFINITY;
  private sent = 0;
  private delivered = 0;
  private readonly dropped: Record<ChannelDropReason, number> = {
    corrupted: 0,
    malformed: 0,
    replayed: 0,
    'unknown-spi': 0,
    'stale-sa': 0,
    dummy: 0,
    'bad-inner': 0,
  };
  private readonly refused: Record<SendRefusal, number> = {
    'no-outbound-sa': 0,
    'iv-exhausted': 0,
    'sequence-exhausted': 0,
  };

  constructor(
    private readonly opts: ChannelCoreOptions,
    table: GroupSaTable,
    now: number,
  ) {
    this.encoder = createInnerEncoder(opts.mode ?? 'transport', {
      groupAddress: opts.groupAddress,
      groupPort: opts.groupPort,
      sourceAddress: opts.sourceAddress ?? '0.0.0.0',
      sourcePort: opts.sourcePort ?? opts.groupPort,
    });
    this.counters = opts.ivCounters ?? processCounters;
    this.replaySize = opts.replayWindow ?? DEFAULT_REPLAY_WINDOW;
    this.retiredMemory = opts.retiredMemory ?? 256;
    // The SAs a member gets at registration are the ones the group already
    // uses: nobody is waiting for them, so ATD does not apply to them.
    this.apply(table, now, 0);
  }

  /**
   * Follows a new SA table (after a registration or a rekey): new SAs are
   * accepted at once and used for sending after ATD; SAs that left the table
   * drain for DTD. Throws EspConfigError (before changing anything) if an SA
   * or the sender identity is unusable.
   */
  updateSas(table: GroupSaTable, now: number): void {
    this.apply(table, now, table.atdMs ?? 0);
  }

  private apply(table: GroupSaTable, now: number, atd: number): void {
    const sender = table.sender;
    if (sender) {
      for (const id of sender.senderIds) checkSenderId(sender.senderIdBits, id);
      checkSenderId(sender.senderIdBits, 0);
    }
    const dtd = table.dtdMs ?? 0;
    const prepared: SaState[] = [];
    const present = new Set<number>();
    for (const entry of table.sas) {
      if (present.has(entry.spi)) throw new EspConfigError('bad-spi', `SPI ${entry.spi} appears twice in the SA table`);
      present.add(entry.spi);
      checkSnTransform(entry.sn);
      const existing = this.sas.get(entry.spi);
      if (existing && sameKeys(existing.entry, entry)) continue;
      prepared.push(this.prepare(entry, sender, now, atd));
    }
    // Validated: apply.
    this.table = table;
    for (const st of prepared) {
      this.retired.delete(st.entry.spi);
      this.sas.set(st.entry.spi, st);
    }
    for (const entry of table.sas) {
      const st = this.sas.get(entry.spi)!;
      // Explicit times in the table win; a returning SA is no longer draining.
      st.removedAt = undefined;
      if (entry.activateAt !== undefined) st.activateAt = entry.activateAt;
      st.deactivateAt = entry.deactivateAt ?? Number.POSITIVE_INFINITY;
      st.outbound = entry.outbound === true;
      if (st.outbound && sender && st.senderSlots.length === 0) this.fillSlots(st, sender);
    }
    for (const st of this.sas.values()) {
      if (present.has(st.entry.spi)) continue;
      if (st.removedAt === undefined) {
        st.removedAt = now;
        st.deactivateAt = Math.min(st.deactivateAt, now + dtd);
      }
    }
    this.nextEvent = Number.NEGATIVE_INFINITY;
    this.refresh(now);
  }

  private prepare(entry: GroupSa, sender: SenderIdentity | undefined, now: number, atd: number): SaState {
    const esp = createEspSa(entry.spi, entry.algorithm, entry.keys, { random: this.opts.random, tfcPadTo: this.opts.tfcPadTo });
    const counterKey = ivCounterKey(entry);
    const senderIdBits = esp.aead ? (sender?.senderIdBits ?? 0) : 0;
    const st: SaState = {
      entry,
      esp,
      counterKey,
      seq: this.counters.seqCell(counterKey),
      seenAt: now,
      removedAt: undefined,
      activateAt: entry.activateAt ?? now + atd,
      deactivateAt: entry.deactivateAt ?? Number.POSITIVE_INFINITY,
      replay: entry.sn === SnId.SEQ32 && this.replaySize > 0 ? new ReplayWindow(this.replaySize) : undefined,
      outbound: entry.outbound === true,
      senderSlots: [],
      slotIndex: 0,
      senderIdBits,
      ivLimit: ivCounterLimit(senderIdBits),
    };
    if (entry.outbound && sender) this.fillSlots(st, sender);
    return st;
  }

  private fillSlots(st: SaState, sender: SenderIdentity): void {
    const ids = !st.esp.aead ? [0] : sender.senderIds.length > 0 ? sender.senderIds : sender.senderIdBits === 0 ? [0] : [];
    for (const senderId of ids) {
      st.senderSlots.push(this.counters.ivCell(st.counterKey, senderId));
    }
  }

  /** Forgets SAs past DTD and recomputes the outbound SA; cheap unless a deadline passed. */
  private refresh(now: number): void {
    if (now < this.nextEvent) return;
    let next = Number.POSITIVE_INFINITY;
    for (const [spi, st] of this.sas) {
      if (now >= st.deactivateAt) {
        this.sas.delete(spi);
        this.retired.set(spi, now);
        if (this.retired.size > this.retiredMemory) {
          const oldest = this.retired.keys().next();
          if (!oldest.done) this.retired.delete(oldest.value);
        }
        continue;
      }
      if (st.deactivateAt < next) next = st.deactivateAt;
      if (st.activateAt > now && st.activateAt < next) next = st.activateAt;
    }
    this.nextEvent = next;
    // Outbound: the most recently activated SA still in the table; an SA that
    // is draining is used only when nothing in the table is active yet.
    let best: SaState | undefined;
    let bestDraining: SaState | undefined;
    for (const st of this.sas.values()) {
      if (!st.outbound || st.senderSlots.length === 0 || st.activateAt > now) continue;
      if (st.removedAt === undefined) {
        if (!best || st.activateAt > best.activateAt || (st.activateAt === best.activateAt && st.seenAt > best.seenAt)) {
          best = st;
        }
      } else if (!bestDraining || st.activateAt > bestDraining.activateAt) {
        bestDraining = st;
      }
    }
    this.outbound = best ?? bestDraining;
  }

  /** Builds the ESP packet for one application datagram. */
  seal(data: Uint8Array, now: number): SealResult {
    this.refresh(now);
    const st = this.outbound;
    if (!st) return this.refuse('no-outbound-sa');
    let seq = st.seq.last;
    if (seq === 0xffffffff) {
      if (st.entry.sn === SnId.SEQ32) return this.refuse('sequence-exhausted');
      seq = 0; // "Unspecified": receivers do not check; skip 0, which is never sent
    }
    seq += 1;
    let iv: SenderIv | undefined;
    if (st.esp.aead) {
      let slot = st.senderSlots[st.slotIndex];
      while (slot && slot.next >= st.ivLimit) slot = st.senderSlots[++st.slotIndex];
      if (!slot) return this.refuse('iv-exhausted');
      iv = { senderIdBits: st.senderIdBits, senderId: slot.senderId, counter: slot.next };
      // Advanced before the packet exists: a failure below skips a value, never repeats one.
      slot.next += 1;
    }
    st.seq.last = seq;
    const packet = st.esp.seal(seq, iv, this.encoder.nextHeader, data, this.encoder.header(data.length));
    this.sent++;
    return { ok: true, packet, spi: st.entry.spi, seq };
  }

  private refuse(reason: SendRefusal): SealResult {
    this.refused[reason]++;
    return { ok: false, reason };
  }

  /** Verifies one received ESP packet; returns the datagram or why it was dropped. */
  open(packet: Uint8Array, now: number): OpenResult {
    this.refresh(now);
    const spi = peekSpi(packet);
    if (spi === undefined) return this.drop('malformed', undefined);
    const st = this.sas.get(spi);
    if (!st) return this.drop(this.retired.has(spi) ? 'stale-sa' : 'unknown-spi', spi);
    const seq = peekSeq(packet);
    if (st.replay) {
      const v = st.replay.check(seq);
      if (v !== 'ok') return this.drop(v === 'invalid' ? 'malformed' : 'replayed', spi);
    }
    const opened = st.esp.open(packet);
    if (!opened.ok) return this.drop(opened.reason, spi);
    const inner = decodeInner(opened.packet.nextHeader, opened.packet.payload, this.opts.groupAddress, this.opts.groupPort);
    // Only an authenticated packet with acceptable content (a datagram for
    // this group, or a dummy) moves the window; a bad inner packet changes nothing.
    if (!inner.ok && inner.reason !== 'dummy') return this.drop(inner.reason, spi);
    if (st.replay && st.replay.accept(seq) !== 'ok') return this.drop('replayed', spi);
    if (!inner.ok) return this.drop(inner.reason, spi);
    this.delivered++;
    const iv = opened.packet.iv;
    const bits = this.table.sender?.senderIdBits;
    return {
      ok: true,
      datagram: {
        data: inner.datagram.data,
        spi,
        seq,
        senderId: iv && bits !== undefined ? readSenderId(iv, bits) : undefined,
        sourcePort: inner.datagram.sourcePort,
        innerSource: inner.datagram.innerSource,
      },
    };
  }

  private drop(reason: ChannelDropReason, spi: number | undefined): OpenResult {
    this.dropped[reason]++;
    return { ok: false, reason, spi };
  }

  /** Earliest time at which the outbound SA or the set of accepted SAs changes by itself. */
  nextDeadline(): number | undefined {
    return Number.isFinite(this.nextEvent) ? this.nextEvent : undefined;
  }

  stats(now: number): ChannelCoreStats {
    this.refresh(now);
    const sas: SaStatus[] = [];
    for (const st of this.sas.values()) {
      sas.push({
        spi: st.entry.spi,
        outbound: st.outbound,
        state: st.removedAt !== undefined ? 'draining' : st.activateAt > now ? 'pending' : 'active',
        activateAt: st.activateAt,
        deactivateAt: Number.isFinite(st.deactivateAt) ? st.deactivateAt : undefined,
        replayHighest: st.replay?.highest,
      });
    }
    return {
      sent: this.sent,
      delivered: this.delivered,
      dropped: { ...this.dropped },
      refused: { ...this.refused },
      outboundSpi: this.outbound?.entry.spi,
      sas,
    };
  }
}
