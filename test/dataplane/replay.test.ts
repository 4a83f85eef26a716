import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ReplayWindow } from '../../src/dataplane/replay.ts';

describe('ReplayWindow (RFC 4303 3.4.3)', () => {
  it('accepts new numbers, rejects repeats and numbers left of the window', () => {
    const w = new ReplayWindow(64);
    assert.equal(w.check(0), 'invalid');
    assert.equal(w.accept(5), 'ok');
    assert.equal(w.accept(5), 'replayed');
    assert.equal(w.accept(3), 'ok');
    assert.equal(w.accept(3), 'replayed');
    assert.equal(w.accept(100), 'ok');
    assert.equal(w.check(36), 'too-old'); // 100 - 36 = 64 = size
    assert.equal(w.accept(37), 'ok'); // the oldest number inside the window
    assert.equal(w.accept(37), 'replayed');
    assert.equal(w.accept(0xffffffff), 'ok');
    assert.equal(w.check(0xffffffff), 'replayed');
    assert.equal(w.highest, 0xffffffff);
  });

  it('check does not change state', () => {
    const w = new ReplayWindow();
    assert.equal(w.check(10), 'ok');
    assert.equal(w.check(10), 'ok');
    assert.equal(w.highest, 0);
  });

  it('rounds the size up to 32 bits and bounds it', () => {
    assert.equal(new ReplayWindow(33).size, 64);
    assert.throws(() => new ReplayWindow(16), RangeError);
    assert.throws(() => new ReplayWindow(1 << 20), RangeError);
  });

  it('agrees with a reference model on random sequences (property)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(32, 64, 128, 1024),
        fc.array(fc.integer({ min: 1, max: 3000 }), { maxLength: 400 }),
        (size, seqs) => {
          const w = new ReplayWindow(size);
          const seen = new Set<number>();
          let top = 0;
          for (const s of seqs) {
            const expected = s > top ? 'ok' : top - s >= size ? 'too-old' : seen.has(s) ? 'replayed' : 'ok';
            assert.equal(w.accept(s), expected, `seq ${s} top ${top}`);
            if (expected === 'ok') {
              seen.add(s);
              top = Math.max(top, s);
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
