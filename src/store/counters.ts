/**
 * Handing out never-repeating counter values on top of block reservations.
 *
 * The allocator only ever returns a value inside a block that `reserve` has
 * committed, and reserves the next block ahead, when fewer than `lowWater`
 * values are left, so that a request rarely waits for a durable write and
 * never has to reserve inside a transaction (where reserving is refused).
 */
import { CounterExhaustedError } from './errors.ts';
import type { KeyServerStore, Reservation } from './store.ts';

export interface CounterAllocatorOptions {
  /** Values reserved per durable write: a crash skips at most this many. */
  readonly blockSize: number;
  /** First value of a new counter. */
  readonly floor?: number;
  /** One past the last value the counter may hand out. */
  readonly limit?: number;
  /** Reserve the next block once this many values or fewer are left (default: a quarter block). */
  readonly lowWater?: number;
}

type ReservingStore = Pick<KeyServerStore, 'reserve' | 'inTransaction'>;

export class CounterAllocator {
  private readonly blocks: Array<{ next: number; end: number }> = [];
  private exhausted = false;
  private readonly lowWater: number;
  /** Blocks reserved so far by this allocator (diagnostics, tests). */
  reservations = 0;

  constructor(
    private readonly store: ReservingStore,
    readonly counter: string,
    private readonly options: CounterAllocatorOptions,
  ) {
    if (!Number.isSafeInteger(options.blockSize) || options.blockSize < 1) throw new RangeError('blockSize must be a positive integer');
    this.lowWater = Math.min(options.blockSize, Math.max(0, options.lowWater ?? Math.floor(options.blockSize / 4)));
  }

  /** Values reserved and not yet handed out. */
  available(): number {
    let n = 0;
    for (const b of this.blocks) n += b.end - b.next;
    return n;
  }

  /** The next value; throws CounterExhaustedError at the limit. */
  next(): number {
    const v = this.tryNext();
    if (v === undefined) throw new CounterExhaustedError(this.counter, this.options.limit ?? Number.MAX_SAFE_INTEGER);
    return v;
  }

  /** The next value, or undefined once the counter reached its limit. */
  tryNext(): number | undefined {
    if (this.available() === 0 && !this.reserveBlock()) return undefined;
    const block = this.blocks[0]!;
    const value = block.next++;
    if (block.next === block.end) this.blocks.shift();
    if (this.available() <= this.lowWater && !this.store.inTransaction) this.reserveBlock();
    return value;
  }

  /** Makes sure at least `count` values are reserved (call before a transaction that will take them). */
  ensure(count: number): void {
    while (this.available() < count && this.reserveBlock()) {
      // keep reserving
    }
  }

  private reserveBlock(): boolean {
    if (this.exhausted) return false;
    const r: Reservation = this.store.reserve(this.counter, this.options.blockSize, { floor: this.options.floor ?? 0, limit: this.options.limit ?? Number.MAX_SAFE_INTEGER });
    this.reservations++;
    if (r.end === r.start) {
      this.exhausted = true;
      return false;
    }
    const last = this.blocks[this.blocks.length - 1];
    if (last && last.end === r.start) last.end = r.end;
    else this.blocks.push({ next: r.start, end: r.end });
    return true;
  }
}

/**
 * The durable high-water-mark view that src/gcks/counters.ts's
 * `ReservedCounter` and `SpiAllocator`/`SenderIdAllocator` take
 * (structurally its `CounterReservation`).
 */
export function counterReservation(store: Pick<KeyServerStore, 'counterMark' | 'advanceCounter'>): {
  reservedUpTo(name: string): number;
  reserve(name: string, mark: number): void;
} {
  return {
    reservedUpTo: (name) => store.counterMark(name),
    reserve: (name, mark) => store.advanceCounter(name, mark),
  };
}

/**
 * Options for src/gcks/lkh-storage.ts's `keyIdCounter` (whose `reserve(upTo)`
 * bound is inclusive): a restarted tree resumes above every Key ID a
 * previous run may have used.
 */
export function keyIdCounterOptions(
  store: Pick<KeyServerStore, 'counterMark' | 'advanceCounter'>,
  counter: string,
  block = 4096,
): { start: number; block: number; reserve: (upTo: number) => void } {
  return {
    start: Math.max(1, store.counterMark(counter)),
    block,
    reserve: (upTo) => store.advanceCounter(counter, upTo + 1),
  };
}
