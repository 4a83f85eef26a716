/**
 * Accounting of half-open IKE SAs (responder side: IKE_SA_INIT answered,
 * IKE_AUTH / GSA_AUTH not yet completed, or failed and kept a while to
 * answer retransmissions), the state a flood of IKE_SA_INIT requests makes a
 * responder keep (RFC 7296 Section 2.6, RFC 8019).
 *
 * Limits: a total count, a count per source IP, and an estimate of the
 * memory they hold. `admit` is asked before a new IKE_SA_INIT is processed;
 * `add` records the SA once it was created, evicting the oldest half-open SAs
 * if a cap would be exceeded; `remove` when it completes or dies; `expire`
 * drops those older than `timeoutMs`.
 *
 * All operations are O(1) (expire and eviction amortised O(1) per SA):
 * entries live in a Map, whose iteration order is insertion order, so the
 * oldest is always first. This assumes `now` does not go backwards between
 * calls, which holds for the monotonic clock the adapter supplies.
 */

export interface HalfOpenConfig {
  /** Hard cap on half-open SAs; adding one more evicts the oldest. */
  readonly maxTotal: number;
  /** Half-open SAs allowed per source IP; a new request beyond it is rejected. */
  readonly maxPerSource: number;
  /** Cap on the estimated octets held by half-open SAs; adding beyond it evicts the oldest. */
  readonly maxBytes: number;
  /** A half-open SA older than this is dropped. */
  readonly timeoutMs: number;
  /** From this many half-open SAs on, requests without a valid cookie get 'cookie' (Infinity: never). */
  readonly cookieThreshold: number;
  /** Estimated octets of one half-open SA when `add` is given none. */
  readonly defaultCostBytes?: number;
}

/**
 * A rough size of one half-open responder SA: key-exchange private value,
 * both nonces, SA proposal, and the IKE_SA_INIT request and response kept
 * for AUTH computation and retransmission (~2 x 1.2 KiB with a 3072-bit
 * MODP group; less with X25519).
 */
export const DEFAULT_HALF_OPEN_COST_BYTES = 4096;

export const DEFAULT_HALF_OPEN_CONFIG: HalfOpenConfig = Object.freeze({
  maxTotal: 10_000,
  // strongSwan's defaults: block_threshold 5, cookie_threshold 10, half_open_timeout 30 s.
  maxPerSource: 5,
  maxBytes: 64 * 1024 * 1024,
  timeoutMs: 30_000,
  cookieThreshold: 10,
});

export type AdmitDecision =
  /** Process the request; `add` the SA if one is created. */
  | 'ok'
  /** Answer with N(COOKIE) only, keep no state (RFC 7296 2.6). */
  | 'cookie'
  /** Drop silently: this source already holds its share. */
  | 'reject';

interface Entry {
  readonly source: string;
  readonly createdAt: number;
  readonly cost: number;
}

export class HalfOpenTable<K = string> {
  private readonly entries = new Map<K, Entry>();
  private readonly perSource = new Map<string, number>();
  private totalBytes = 0;
  private readonly defaultCost: number;

  constructor(readonly config: HalfOpenConfig = DEFAULT_HALF_OPEN_CONFIG) {
    for (const k of ['maxTotal', 'maxPerSource', 'maxBytes', 'timeoutMs'] as const) {
      if (!(config[k] > 0)) throw new RangeError(`half-open ${k} must be > 0`);
    }
    this.defaultCost = config.defaultCostBytes ?? DEFAULT_HALF_OPEN_COST_BYTES;
  }

  /** Number of half-open SAs (after the last expire). */
  get size(): number {
    return this.entries.size;
  }

  /** Estimated octets held. */
  get bytes(): number {
    return this.totalBytes;
  }

  countFor(source: string): number {
    return this.perSource.get(source) ?? 0;
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }

  /**
   * Whether to process a new IKE_SA_INIT request from `source`.
   * `cookieVerified`: the request carried a cookie that CookieGuard accepted.
   * Expired SAs are dropped first; call `expire` to learn which.
   */
  admit(source: string, now: number, cookieVerified = false): AdmitDecision {
    this.expire(now);
    if (this.countFor(source) >= this.config.maxPerSource) return 'reject';
    if (!cookieVerified && this.entries.size >= this.config.cookieThreshold) return 'cookie';
    return 'ok';
  }

  /**
   * Records a new half-open SA. Returns the keys of the SAs evicted (oldest
   * first) to stay within maxTotal / maxBytes; the caller destroys them.
   * Adding an existing key replaces it (and moves it to the newest place).
   */
  add(key: K, source: string, now: number, costBytes: number = this.defaultCost): K[] {
    this.remove(key);
    const evicted: K[] = [];
    const cost = Math.max(0, costBytes);
    while (
      this.entries.size > 0 &&
      (this.entries.size + 1 > this.config.maxTotal || this.totalBytes + cost > this.config.maxBytes)
    ) {
      const oldest = this.oldestKey();
      if (oldest === undefined) break;
      this.remove(oldest);
      evicted.push(oldest);
    }
    this.entries.set(key, { source, createdAt: now, cost });
    this.perSource.set(source, this.countFor(source) + 1);
    this.totalBytes += cost;
    return evicted;
  }

  /** The SA completed (or failed, or was deleted): it no longer counts. Returns whether it was there. */
  remove(key: K): boolean {
    const e = this.entries.get(key);
    if (!e) return false;
    this.entries.delete(key);
    this.totalBytes -= e.cost;
    const n = this.countFor(e.source) - 1;
    if (n > 0) this.perSource.set(e.source, n);
    else this.perSource.delete(e.source);
    return true;
  }

  /** Drops SAs half-open for timeoutMs or longer; returns their keys (oldest first). */
  expire(now: number): K[] {
    const out: K[] = [];
    for (const [key, e] of this.entries) {
      if (now - e.createdAt < this.config.timeoutMs) break;
      out.push(key);
    }
    for (const k of out) this.remove(k);
    return out;
  }

  /** When the oldest half-open SA expires, for the engine's nextTimeout. */
  nextExpiry(): number | undefined {
    for (const e of this.entries.values()) return e.createdAt + this.config.timeoutMs;
    return undefined;
  }

  private oldestKey(): K | undefined {
    for (const k of this.entries.keys()) return k;
    return undefined;
  }
}
