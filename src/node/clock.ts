/**
 * The clock the sans-I/O core is driven by, and a single re-armable timer.
 * Only src/node/ reads real time; the core receives `now` values from here.
 */
import { performance } from 'node:perf_hooks';

export interface Clock {
  /** Milliseconds; only differences matter to the core. */
  now(): number;
}

/**
 * Monotonic milliseconds (immune to wall-clock steps): the default for
 * protocol timers. Starts near 0 at process start.
 */
export const monotonicClock: Clock = Object.freeze({
  now: (): number => performance.now(),
});

/** Wall-clock milliseconds since the epoch, for what must be absolute (certificate validity). */
export const wallClock: Clock = Object.freeze({
  now: (): number => Date.now(),
});

/** Node clamps longer delays to 1 ms; longer waits are re-armed in steps. */
const MAX_TIMER_DELAY = 2 ** 31 - 1;

/**
 * One pending callback at an absolute time on `clock`, re-armed freely:
 * arming again replaces the previous deadline. Unlike a bare setTimeout it
 * handles deadlines further away than ~24.8 days.
 */
export class Timer {
  private handle: ReturnType<typeof setTimeout> | undefined;
  /** When the pending setTimeout wakes, on `clock`; may be before `deadline`. */
  private handleAt = 0;
  private deadline: number | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly fire: (now: number) => void,
    /** unref: the timer alone does not keep the process alive. */
    private readonly unref = false,
  ) {}

  /** The armed deadline, if any. */
  get armedAt(): number | undefined {
    return this.deadline;
  }

  /**
   * Arms for `deadline`; undefined cancels. The adapter re-arms after every
   * datagram, usually for the same or a later deadline: a pending wake-up
   * that is not later than the new deadline is kept (it finds it early and
   * waits again) instead of clearing and creating a node timer each time.
   */
  armAt(deadline: number | undefined): void {
    if (deadline === undefined) {
      this.cancel();
      return;
    }
    this.deadline = deadline;
    if (this.handle !== undefined) {
      // Keep the pending wake-up only for a deadline still ahead: one that is
      // already due (the clock moved on, e.g. after a suspend or a clock
      // jump) fires now, not when the old node timer happens to wake.
      if (this.handleAt <= deadline && deadline > this.clock.now()) return;
      clearTimeout(this.handle);
      this.handle = undefined;
    }
    this.schedule();
  }

  cancel(): void {
    if (this.handle !== undefined) clearTimeout(this.handle);
    this.handle = undefined;
    this.deadline = undefined;
  }

  private schedule(): void {
    const deadline = this.deadline;
    if (deadline === undefined) return;
    const now = this.clock.now();
    const delay = Math.ceil(Math.min(MAX_TIMER_DELAY, Math.max(0, deadline - now)));
    this.handleAt = now + delay;
    this.handle = setTimeout(() => {
      this.handle = undefined;
      const due = this.deadline;
      if (due === undefined) return;
      const at = this.clock.now();
      if (at < due) {
        // Woke early (long waits are split, the deadline moved later, or timer granularity): wait again.
        this.schedule();
        return;
      }
      this.deadline = undefined;
      this.fire(at);
    }, delay);
    if (this.unref) this.handle.unref();
  }
}
