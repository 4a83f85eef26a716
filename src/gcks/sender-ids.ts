/**
 * Sender-ID allocation (RFC 9838 Section 2.5.1, RFC 6054): sequential from
 * zero, each value to one sender only, new values on every registration,
 * never a value twice under the same TEKs. One allocator belongs to one set
 * of TEKs (a "TEK generation"); replacing the TEKs starts a new allocator.
 */
import { ReservedCounter, type CounterReservation } from './counters.ts';

export interface SenderIdAllocation {
  /** Possibly fewer than asked for when the space runs out (Section 4.5.3.3 allows that); empty when none is left. */
  readonly senderIds: readonly number[];
  /**
   * No Sender-ID is left under these TEKs: before distributing any more the
   * GCKS MUST exclude every member and replace the TEKs (Section 2.5.1).
   */
  readonly exhausted: boolean;
}

/** Sender-IDs reserved per durable write. */
const RESERVATION_BLOCK = 256;

export class SenderIdAllocator {
  private readonly counter: ReservedCounter;

  constructor(
    store: CounterReservation,
    /** Unique per TEK generation, so a restart with the same TEKs resumes the same counter. */
    readonly counterName: string,
    /** GWP_SENDER_ID_BITS: the space is 0 .. 2^bits - 1. */
    readonly bits: number,
  ) {
    this.counter = new ReservedCounter(store, counterName, { start: 0, limit: 2 ** bits, block: RESERVATION_BLOCK });
  }

  get exhausted(): boolean {
    return this.counter.remaining() === 0;
  }

  get remaining(): number {
    return this.counter.remaining();
  }

  /**
   * `requested` is the GROUP_SENDER count (0 or 1: one, Section 2.5.1);
   * `cap` is the policy's upper bound per registration. Never more than asked.
   */
  allocateSenderIds(requested: number, cap: number): SenderIdAllocation {
    const wanted = Math.min(Math.max(requested, 1), cap);
    const senderIds: number[] = [];
    while (senderIds.length < wanted) {
      const id = this.counter.take();
      if (id === undefined) break;
      senderIds.push(id);
    }
    return { senderIds, exhausted: this.exhausted };
  }
}

/** GM_SENDER_ID value: 4 octets, big-endian (as GDOI's and this project's vectors carry it). */
export function encodeSenderId(senderId: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(senderId);
  return b;
}
