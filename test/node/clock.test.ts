import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { monotonicClock, Timer, wallClock } from '../../src/node/clock.ts';

const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('Timer', () => {
  it('fires once at the deadline with the clock time', async () => {
    const fired: number[] = [];
    const t = new Timer(monotonicClock, (now) => fired.push(now));
    const at = monotonicClock.now() + 20;
    t.armAt(at);
    assert.equal(t.armedAt, at);
    await tick(60);
    assert.equal(fired.length, 1);
    assert.ok(fired[0]! >= at);
    assert.equal(t.armedAt, undefined);
  });

  it('re-arming replaces the deadline; undefined and cancel disarm', async () => {
    const fired: number[] = [];
    const t = new Timer(monotonicClock, (now) => fired.push(now));
    t.armAt(monotonicClock.now() + 10);
    t.armAt(monotonicClock.now() + 10_000);
    await tick(40);
    assert.equal(fired.length, 0);
    t.armAt(undefined);
    assert.equal(t.armedAt, undefined);
    t.armAt(monotonicClock.now() - 5); // already due: fires promptly
    await tick(20);
    assert.equal(fired.length, 1);
    t.armAt(monotonicClock.now() + 10);
    t.cancel();
    await tick(30);
    assert.equal(fired.length, 1);
  });

  it('waits again when woken before the deadline (clock behind the timer)', async () => {
    let offset = 0;
    const clock = { now: () => performance.now() - offset };
    const fired: number[] = [];
    const t = new Timer(clock, (now) => fired.push(now));
    t.armAt(clock.now() + 10);
    offset = 30; // the clock now runs 30 ms behind: the first wake-up is early
    await tick(25);
    assert.equal(fired.length, 0);
    await tick(50);
    assert.equal(fired.length, 1);
  });

  it('accepts deadlines beyond setTimeout range without firing early', async () => {
    const fired: number[] = [];
    const t = new Timer(monotonicClock, (now) => fired.push(now), true);
    t.armAt(monotonicClock.now() + 2 ** 33);
    await tick(20);
    assert.equal(fired.length, 0);
    t.cancel();
  });

  it('a deadline that became due while a later wake-up is pending fires at once', async () => {
    let offset = 0;
    const clock = { now: () => performance.now() + offset };
    const fired: number[] = [];
    const timer = new Timer(clock, (now) => fired.push(now));
    timer.armAt(clock.now() + 10_000); // a node timer wakes in 10 s
    const deadline = clock.now() + 15_000;
    timer.armAt(deadline); // later deadline: the 10 s wake-up is kept
    offset += 20_000; // the clock moves past the deadline (suspend, test clock jump)
    const started = performance.now();
    timer.armAt(deadline); // re-armed for the same deadline, now already due
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(fired.length, 1, 'fired without waiting for the old 10 s wake-up');
    assert.ok(performance.now() - started < 5_000);
    timer.cancel();
  });

  it('clocks: monotonic is relative, wall is the epoch', () => {
    assert.ok(Math.abs(wallClock.now() - Date.now()) < 1000);
    const a = monotonicClock.now();
    assert.ok(monotonicClock.now() >= a);
  });
});
