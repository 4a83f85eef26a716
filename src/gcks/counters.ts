/**
 * Counters that must never go back: Data-Security SPIs, Rekey SA SPIs and
 * Message IDs, Sender-IDs (RFC 9838 2.5.1, NOTES point 8). The counter
 * reserves blocks ahead in a `CounterReservation` (durable state, later a
 * SQLite table) before handing values out of them, so a crash can skip the
 * rest of a block but never repeat a value.
 */

/** Durable high-water marks, one per counter name. */
export interface CounterReservation {
  /** Every value below this mark may already have been handed out (0 for a new counter). */
  reservedUpTo(name: string): number;
  /** Records that values below `mark` may be handed out; must be durable when it returns. */
  reserve(name: string, mark: number): void;
}

/** In-memory reservations: for tests and for state that is not meant to survive a restart. */
export function memoryCounterReservation(): CounterReservation & { readonly marks: ReadonlyMap<string, number> } {
  const marks = new Map<string, number>();
  return {
    marks,
    reservedUpTo: (name) => marks.get(name) ?? 0,
    reserve: (name, mark) => {
      if (mark < (marks.get(name) ?? 0)) throw new RangeError(`counter ${name} would go back`);
      marks.set(name, mark);
    },
  };
}

export interface ReservedCounterOptions {
  /** First value of a new counter. */
  readonly start: number;
  /** One past the last value the counter may hand out. */
  readonly limit: number;
  /** Values reserved per durable write: a crash loses at most this many. */
  readonly block: number;
}

export class ReservedCounter {
  private next: number;
  private reservedTo: number;

  constructor(
    private readonly store: CounterReservation,
    readonly name: string,
    private readonly options: ReservedCounterOptions,
  ) {
    // Resume above anything a previous run may have handed out.
    this.next = Math.max(options.start, store.reservedUpTo(name));
    this.reservedTo = this.next;
  }

  /** The value `take` would return next (not reserved by looking). */
  peek(): number {
    return this.next;
  }

  remaining(): number {
    return Math.max(0, this.options.limit - this.next);
  }

  /** The next value, or undefined once the counter reached its limit. */
  take(): number | undefined {
    if (this.next >= this.options.limit) return undefined;
    if (this.next >= this.reservedTo) {
      this.reservedTo = Math.min(this.options.limit, this.next + this.options.block);
      this.store.reserve(this.name, this.reservedTo);
    }
    return this.next++;
  }
}
