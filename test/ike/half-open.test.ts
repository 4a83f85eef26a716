import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { HalfOpenTable, type HalfOpenConfig } from '../../src/ike/half-open.ts';

const base: HalfOpenConfig = {
  maxTotal: 5,
  maxPerSource: 2,
  maxBytes: 1_000_000,
  timeoutMs: 1000,
  cookieThreshold: 3,
  defaultCostBytes: 100,
};

describe('HalfOpenTable', () => {
  it('admits, then demands cookies from the threshold on, unless the cookie was verified', () => {
    const t = new HalfOpenTable(base);
    assert.equal(t.admit('10.0.0.1', 0), 'ok');
    t.add('a', '10.0.0.1', 0);
    t.add('b', '10.0.0.2', 0);
    assert.equal(t.admit('10.0.0.3', 1), 'ok');
    t.add('c', '10.0.0.3', 1);
    assert.equal(t.size, 3);
    assert.equal(t.admit('10.0.0.4', 2), 'cookie');
    assert.equal(t.admit('10.0.0.4', 2, true), 'ok');
  });

  it('rejects a source at its cap even with a cookie', () => {
    const t = new HalfOpenTable(base);
    t.add('a', '10.0.0.1', 0);
    t.add('b', '10.0.0.1', 0);
    assert.equal(t.countFor('10.0.0.1'), 2);
    assert.equal(t.admit('10.0.0.1', 1, true), 'reject');
    assert.equal(t.admit('10.0.0.2', 1, true), 'ok');
    t.remove('a');
    assert.equal(t.countFor('10.0.0.1'), 1);
    assert.equal(t.admit('10.0.0.1', 1, true), 'ok');
  });

  it('evicts the oldest when the total cap is reached', () => {
    const t = new HalfOpenTable({ ...base, maxPerSource: 10 });
    for (let i = 0; i < 5; i++) assert.deepEqual(t.add(`sa${i}`, `10.0.0.${i}`, i), []);
    assert.deepEqual(t.add('sa5', '10.0.0.9', 5), ['sa0']);
    assert.equal(t.size, 5);
    assert.equal(t.has('sa0'), false);
    assert.equal(t.countFor('10.0.0.0'), 0);
    t.remove('sa1');
    assert.deepEqual(t.add('sa6', '10.0.0.9', 6), []);
    assert.deepEqual(t.add('sa7', '10.0.0.9', 7), ['sa2']);
  });

  it('evicts the oldest to stay under the memory estimate', () => {
    const t = new HalfOpenTable({ ...base, maxTotal: 100, maxPerSource: 100, maxBytes: 1000 });
    t.add('a', 's', 0, 400);
    t.add('b', 's', 1, 400);
    assert.equal(t.bytes, 800);
    assert.deepEqual(t.add('c', 's', 2, 400), ['a']);
    assert.equal(t.bytes, 800);
    assert.deepEqual(t.add('d', 's', 3, 900), ['b', 'c']);
    assert.equal(t.bytes, 900);
    // A single SA bigger than the cap is still recorded once the table is empty.
    assert.deepEqual(t.add('e', 's', 4, 5000), ['d']);
    assert.equal(t.size, 1);
  });

  it('expires half-open SAs after the timeout and reports when the next expires', () => {
    const t = new HalfOpenTable(base);
    assert.equal(t.nextExpiry(), undefined);
    t.add('a', 's1', 0);
    t.add('b', 's2', 500);
    assert.equal(t.nextExpiry(), 1000);
    assert.deepEqual(t.expire(999), []);
    assert.deepEqual(t.expire(1000), ['a']);
    assert.equal(t.nextExpiry(), 1500);
    assert.equal(t.countFor('s1'), 0);
    // admit expires too, so a source freed by expiry gets in again.
    t.add('c', 's2', 600);
    assert.equal(t.admit('s2', 1000), 'reject');
    assert.equal(t.admit('s2', 1500), 'ok');
    assert.equal(t.size, 1);
    assert.equal(t.bytes, 100);
  });

  it('re-adding a key replaces it without double counting', () => {
    const t = new HalfOpenTable(base);
    t.add('a', 's', 0);
    t.add('a', 's', 10);
    assert.equal(t.size, 1);
    assert.equal(t.countFor('s'), 1);
    assert.equal(t.bytes, 100);
    assert.equal(t.remove('a'), true);
    assert.equal(t.remove('a'), false);
    assert.equal(t.bytes, 0);
  });

  it('handles many SAs quickly (O(1) per operation)', () => {
    const t = new HalfOpenTable<number>({ ...base, maxTotal: 50_000, maxPerSource: 50_000, maxBytes: 1e12, cookieThreshold: Infinity });
    const start = performance.now();
    for (let i = 0; i < 200_000; i++) {
      t.admit(`10.${i % 250}.0.1`, i);
      t.add(i, `10.${i % 250}.0.1`, i);
    }
    assert.equal(t.size, 1000); // timeout 1000 ms at 1 SA per ms
    assert.ok(performance.now() - start < 3000);
  });

  it('validates its configuration', () => {
    assert.throws(() => new HalfOpenTable({ ...base, maxTotal: 0 }), RangeError);
    assert.throws(() => new HalfOpenTable({ ...base, timeoutMs: -1 }), RangeError);
  });
});
