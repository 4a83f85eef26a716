/**
 * Anti-replay window (RFC 4303 Section 3.4.3, the bitmap of its Appendix A2
 * kept as 32-bit words): the highest sequence number seen so far and one bit
 * per number in the `size` numbers ending at it.
 *
 * Two steps, as RFC 4303 orders them: `check` before the ICV is verified
 * (cheap rejection, no state change), `accept` only after the packet
 * authenticated, so forged packets can never move the window.
 *
 * 32-bit sequence numbers only (no ESN: RFC 9838 4.4.2.1.3 forbids it on
 * multicast SAs). Sequence number 0 is never sent (RFC 4303 3.3.3).
 */

export type ReplayVerdict =
  /** New and inside or ahead of the window. */
  | 'ok'
  /** Seen before. */
  | 'replayed'
  /** Left of the window: too old to tell, dropped as RFC 4303 requires. */
  | 'too-old'
  /** Zero: never a valid sequence number. */
  | 'invalid';

export const DEFAULT_REPLAY_WINDOW = 128;
export const MAX_REPLAY_WINDOW = 65536;

export class ReplayWindow {
  /** Bitmap; bit (seq % size) is set when seq was accepted and seq is within the window. */
  private readonly bits: Uint32Array;
  private top = 0;
  readonly size: number;

  /** `size` is rounded up to a multiple of 32; 32 .. 65536. */
  constructor(size: number = DEFAULT_REPLAY_WINDOW) {
    if (!Number.isInteger(size) || size < 32 || size > MAX_REPLAY_WINDOW) {
      throw new RangeError(`replay window size ${size} is outside 32..${MAX_REPLAY_WINDOW}`);
    }
    this.size = Math.ceil(size / 32) * 32;
    this.bits = new Uint32Array(this.size / 32);
  }

  /** Highest sequence number accepted so far (0 = none). */
  get highest(): number {
    return this.top;
  }

  check(seq: number): ReplayVerdict {
    if (seq === 0) return 'invalid';
    if (seq > this.top) return 'ok';
    if (this.top - seq >= this.size) return 'too-old';
    return this.isSet(seq) ? 'replayed' : 'ok';
  }

  /** Records an authenticated packet; returns its verdict (only 'ok' changes the state). */
  accept(seq: number): ReplayVerdict {
    const verdict = this.check(seq);
    if (verdict !== 'ok') return verdict;
    if (seq > this.top) {
      const shift = seq - this.top;
      if (shift >= this.size) {
        this.bits.fill(0);
      } else {
        // Clear the bits of the numbers that enter the window between top+1 and seq.
        for (let s = this.top + 1; s <= seq; s++) this.clear(s);
      }
      this.top = seq;
    }
    this.set(seq);
    return 'ok';
  }

  private isSet(seq: number): boolean {
    const i = seq % this.size;
    return (this.bits[i >>> 5]! & (1 << (i & 31))) !== 0;
  }

  private set(seq: number): void {
    const i = seq % this.size;
    this.bits[i >>> 5]! |= 1 << (i & 31);
  }

  private clear(seq: number): void {
    const i = seq % this.size;
    this.bits[i >>> 5]! &= ~(1 << (i & 31));
  }
}
