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

  /** Arms for `deadline`; undefined cancels. */
  armAt(deadline: number | undefined): void {
    this.cancel();
    if (deadline === undefined) return;
    this.deadline = deadline;
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
    const delay = Math.min(MAX_TIMER_DELAY, Math.max(0, deadline - this.clock.now()));
    this.handle = setTimeout(() => {
      this.handle = undefined;
      const now = this.clock.now();
      if (now < deadline) {
        // Woke early (long waits are split, or timer granularity): wait again.
        this.schedule();
        return;
      }
      this.deadline = undefined;
      this.fire(now);
    }, Math.ceil(delay));
    if (this.unref) this.handle.unref();
  }
}
