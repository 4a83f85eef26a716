/**
 * When the member should talk to the key server again. Pure functions of
 * `now` and a RandomSource, so the daemon's timers and the simulator agree.
 *
 *  - Soft lifetime: re-register before the earliest TEK or KEK lifetime runs
 *    out, in case no rekey reached us. The margin is 10% of the SA's lifetime,
 *    clamped to 10 s .. 10 min, plus up to half as much again at random so
 *    that a whole group does not hit the key server in the same second.
 *  - After an error: exponential back-off from 2 s, doubling to a 5 min
 *    ceiling, drawn uniformly from the upper half of the current step.
 *  - After exclusion (Delete GIKE_UPDATE SPI 0, NOTES point 7): a random
 *    delay of a few seconds (1..5 s).
 */
import type { RandomSource } from '../crypto/random.ts';
import type { GroupSaTable } from './sa-table.ts';

const SOFT_MARGIN_FRACTION = 0.1;
const MIN_SOFT_MARGIN_MS = 10_000;
const MAX_SOFT_MARGIN_MS = 600_000;
const FIRST_RETRY_MS = 2_000;
const MAX_RETRY_MS = 300_000;
const EXCLUDED_MIN_MS = 1_000;
const EXCLUDED_MAX_MS = 5_000;

/** Uniform in [0, 1) from 32 random bits. */
export function uniform(rng: RandomSource): number {
  return rng.bytes(4).readUInt32BE(0) / 2 ** 32;
}

/** Soft-lifetime deadline of one SA installed at `installedAt` that expires at `expiresAt`. */
export function softDeadline(installedAt: number, expiresAt: number, rng: RandomSource): number {
  const lifetime = Math.max(0, expiresAt - installedAt);
  const margin = Math.min(MAX_SOFT_MARGIN_MS, Math.max(MIN_SOFT_MARGIN_MS, lifetime * SOFT_MARGIN_FRACTION));
  return expiresAt - margin - uniform(rng) * (margin / 2);
}

/** When to re-register for this group, or undefined when nothing in it expires (inband rekey). */
export function reregistrationTime(table: GroupSaTable, now: number, rng: RandomSource): number | undefined {
  const sas = [...(table.rekeySa ? [table.rekeySa] : []), ...table.dataSecurity];
  const deadlines = sas.flatMap((sa) => (sa.expiresAt === undefined ? [] : [softDeadline(sa.installedAt, sa.expiresAt, rng)]));
  if (deadlines.length === 0) return undefined;
  return Math.max(now, Math.floor(Math.min(...deadlines)));
}

/** Delay before retry number `attempt` (0 for the first retry) after a failed registration. */
export function retryDelay(attempt: number, rng: RandomSource): number {
  const step = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.min(attempt, 30));
  return Math.floor(step / 2 + uniform(rng) * (step / 2));
}

export function retryTime(now: number, attempt: number, rng: RandomSource): number {
  return now + retryDelay(attempt, rng);
}

/** NOTES point 7: an excluded member re-registers after a random delay of a few seconds. */
export function excludedReregistrationTime(now: number, rng: RandomSource): number {
  return now + Math.floor(EXCLUDED_MIN_MS + uniform(rng) * (EXCLUDED_MAX_MS - EXCLUDED_MIN_MS));
}
