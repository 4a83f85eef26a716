/**
 * Retransmission (RFC 7296 Sections 2.1, 2.3, 2.4).
 *
 * The initiator of an exchange owns retransmission: it resends the very
 * same datagrams (every fragment, RFC 7383 Section 2.6) with exponentially
 * growing intervals until a response arrives or it gives up, after which
 * the IKE SA is considered dead. The responder never retransmits on a
 * timer; it keeps its last response(s) and resends them when a request it
 * already answered arrives again (`ResponseCache`).
 *
 * Pure: the caller passes `now` and schedules `nextDeadline()`.
 */

export interface RetransmitConfig {
  /** Wait after the first transmission. */
  readonly initialMs: number;
  /** Each wait is the previous one times this (>= 1). */
  readonly factor: number;
  /** No single wait exceeds this. */
  readonly maxMs: number;
  /**
   * Retransmissions after the first transmission; when the wait after the
   * last one expires without a response, the exchange gives up. 0 = send once.
   */
  readonly maxTries: number;
}

/** strongSwan's charon defaults: 4 s, x1.8, 5 retransmissions (~165 s to give up). */
export const DEFAULT_RETRANSMIT: RetransmitConfig = Object.freeze({
  initialMs: 4000,
  factor: 1.8,
  // charon has no cap by default; this one is above its last wait (75.6 s).
  maxMs: 120_000,
  maxTries: 5,
});

/** The wait after transmission number `attempt` (0 = the first transmission). */
export function retransmitDelay(config: RetransmitConfig, attempt: number): number {
  return Math.min(config.maxMs, config.initialMs * Math.pow(config.factor, attempt));
}

/** Time from the first transmission until giving up, if nothing answers. */
export function giveUpAfter(config: RetransmitConfig): number {
  let t = 0;
  for (let i = 0; i <= config.maxTries; i++) t += retransmitDelay(config, i);
  return t;
}

export type TimeoutResult<P> =
  /** Not yet due (or already stopped): nothing to do. */
  | { readonly action: 'wait' }
  /** Send `packets` again; `attempt` counts retransmissions (1 = first retransmission). */
  | { readonly action: 'resend'; readonly packets: readonly P[]; readonly attempt: number }
  /** No response after maxTries retransmissions: the exchange (and the IKE SA) failed. */
  | { readonly action: 'give-up'; readonly attempts: number };

/**
 * The retransmission state of one outstanding request. `P` is whatever the
 * engine resends: the datagram buffers, or `Outgoing` records with their
 * destination. Create it when the request is first sent.
 */
export class RequestTimer<P = Buffer> {
  private deadline: number | undefined;
  private attempts = 0;
  private current: readonly P[];

  constructor(
    packets: readonly P[],
    readonly config: RetransmitConfig,
    /** Time of the first transmission. */
    readonly sentAt: number,
  ) {
    if (packets.length === 0) throw new RangeError('a request has at least one packet');
    if (!(config.initialMs > 0) || !(config.factor >= 1) || !(config.maxMs > 0) || !(config.maxTries >= 0)) {
      throw new RangeError('bad retransmit config');
    }
    this.current = [...packets];
    this.deadline = sentAt + retransmitDelay(config, 0);
  }

  /** All the datagrams of the request (every fragment when fragmented). */
  get packets(): readonly P[] {
    return this.current;
  }

  /** Retransmissions made so far. */
  get retransmissions(): number {
    return this.attempts;
  }

  /** True once stopped or given up. */
  get done(): boolean {
    return this.deadline === undefined;
  }

  /** When onTimeout must be called next; undefined when stopped or given up. */
  nextDeadline(): number | undefined {
    return this.deadline;
  }

  onTimeout(now: number): TimeoutResult<P> {
    if (this.deadline === undefined || now < this.deadline) return { action: 'wait' };
    if (this.attempts >= this.config.maxTries) {
      this.deadline = undefined;
      return { action: 'give-up', attempts: this.attempts };
    }
    this.attempts++;
    this.deadline = now + retransmitDelay(this.config, this.attempts);
    return { action: 'resend', packets: this.current, attempt: this.attempts };
  }

  /**
   * Replaces what later retransmissions send, e.g. the same message cut
   * into smaller fragments after repeated losses (RFC 7383 Section 2.5.2).
   * The schedule is unchanged.
   */
  replacePackets(packets: readonly P[]): void {
    if (packets.length === 0) throw new RangeError('a request has at least one packet');
    this.current = [...packets];
  }

  /** The response arrived (or the SA is going away): no more retransmissions. */
  stop(): void {
    this.deadline = undefined;
  }
}

/**
 * The earliest of several deadlines (e.g. all timers of all IKE SAs), for
 * `nextTimeout`. Undefined entries are ignored.
 */
export function earliest(...deadlines: readonly (number | undefined)[]): number | undefined {
  let best: number | undefined;
  for (const d of deadlines) if (d !== undefined && (best === undefined || d < best)) best = d;
  return best;
}

export type RequestClassification<P> =
  /** The next request(s) in the window: process it. */
  | { readonly kind: 'new' }
  /** Already answered and still remembered: resend these packets, do not process again. */
  | { readonly kind: 'retransmit'; readonly packets: readonly P[] }
  /**
   * Already answered but the response is no longer kept, or outside the
   * window: drop silently (RFC 7296 Section 2.3).
   */
  | { readonly kind: 'drop'; readonly reason: 'old' | 'beyond-window' };

/**
 * The responder's memory of its last responses, one per Message ID within
 * the window (RFC 7296 Section 2.3: with window size N it keeps the last N).
 * Only verified requests (ICV good, or IKE_SA_INIT matched by SPIi and
 * content) may be classified; a forged Message ID must never trigger a
 * resend amplification.
 */
export class ResponseCache<P = Buffer> {
  private readonly responses = new Map<number, readonly P[]>();
  /** Lowest Message ID not yet answered: the window starts here. */
  private nextExpected: number;

  constructor(
    readonly windowSize = 1,
    firstMessageId = 0,
  ) {
    if (!Number.isInteger(windowSize) || windowSize < 1) throw new RangeError('window size must be >= 1');
    this.nextExpected = firstMessageId;
  }

  /** Lowest Message ID the responder has not answered yet. */
  get expected(): number {
    return this.nextExpected;
  }

  classify(messageId: number): RequestClassification<P> {
    const kept = this.responses.get(messageId);
    if (kept) return { kind: 'retransmit', packets: kept };
    if (messageId < this.nextExpected) return { kind: 'drop', reason: 'old' };
    if (messageId >= this.nextExpected + this.windowSize) return { kind: 'drop', reason: 'beyond-window' };
    return { kind: 'new' };
  }

  /** Keeps the response sent to request `messageId` (all its datagrams) and moves the window. */
  store(messageId: number, packets: readonly P[]): void {
    this.responses.set(messageId, [...packets]);
    while (this.responses.has(this.nextExpected)) this.nextExpected++;
    // Keep the last windowSize answered IDs: older ones can no longer be
    // retransmitted by a peer that respects the window.
    const floor = this.nextExpected - this.windowSize;
    for (const id of this.responses.keys()) if (id < floor) this.responses.delete(id);
  }

  /** The response to `messageId`, if still kept. */
  get(messageId: number): readonly P[] | undefined {
    return this.responses.get(messageId);
  }
}

/**
 * RFC 7383 Section 2.6.1: when a fragmented request is retransmitted, the
 * responder resends its response once per retransmission, on the fragment
 * with Fragment Number 1, and ignores the other fragments of the
 * retransmitted request. Unfragmented requests (fragmentNumber undefined)
 * always trigger the resend.
 */
export function shouldResendForFragment(fragmentNumber: number | undefined): boolean {
  return fragmentNumber === undefined || fragmentNumber === 1;
}
