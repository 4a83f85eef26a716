import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import {
  DEFAULT_RETRANSMIT,
  earliest,
  giveUpAfter,
  RequestTimer,
  ResponseCache,
  retransmitDelay,
  shouldResendForFragment,
  type RetransmitConfig,
} from '../../src/ike/retransmit.ts';

const cfg: RetransmitConfig = { initialMs: 1000, factor: 2, maxMs: 5000, maxTries: 4 };

describe('retransmission schedule', () => {
  it('backs off exponentially up to maxMs', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5].map((i) => retransmitDelay(cfg, i)), [1000, 2000, 4000, 5000, 5000, 5000]);
    assert.equal(giveUpAfter(cfg), 1000 + 2000 + 4000 + 5000 + 5000);
    // charon's defaults: 4 s, 7.2 s, 12.96 s, 23.33 s, 41.99 s, 75.58 s = ~165 s.
    assert.ok(Math.abs(giveUpAfter(DEFAULT_RETRANSMIT) - 165_060) < 1000);
  });

  it('resends every packet at each deadline, then gives up', () => {
    const frags = [Buffer.from('f1'), Buffer.from('f2'), Buffer.from('f3')];
    const t = new RequestTimer(frags, cfg, 100);
    assert.equal(t.nextDeadline(), 1100);
    assert.deepEqual(t.onTimeout(1099), { action: 'wait' });
    const times: number[] = [];
    let now = 100;
    for (;;) {
      now = t.nextDeadline()!;
      const r = t.onTimeout(now);
      if (r.action === 'give-up') {
        assert.equal(r.attempts, 4);
        break;
      }
      assert.equal(r.action, 'resend');
      if (r.action === 'resend') {
        assert.deepEqual(r.packets, frags);
        assert.equal(r.attempt, times.length + 1);
      }
      times.push(now);
    }
    assert.deepEqual(times, [1100, 3100, 7100, 12100]);
    assert.equal(now, 17100);
    assert.equal(t.done, true);
    assert.equal(t.nextDeadline(), undefined);
    assert.deepEqual(t.onTimeout(1e9), { action: 'wait' });
  });

  it('measures the next wait from when the timeout was handled', () => {
    const t = new RequestTimer([Buffer.from('x')], cfg, 0);
    assert.equal(t.onTimeout(1500).action, 'resend'); // handled late
    assert.equal(t.nextDeadline(), 3500);
  });

  it('stops when the response arrives', () => {
    const t = new RequestTimer([Buffer.from('x')], cfg, 0);
    t.stop();
    assert.equal(t.nextDeadline(), undefined);
    assert.deepEqual(t.onTimeout(5000), { action: 'wait' });
  });

  it('maxTries 0 sends once and gives up after initialMs', () => {
    const t = new RequestTimer([Buffer.from('x')], { ...cfg, maxTries: 0 }, 0);
    assert.deepEqual(t.onTimeout(1000), { action: 'give-up', attempts: 0 });
  });

  it('can switch to re-fragmented packets', () => {
    const t = new RequestTimer(['a'], cfg, 0);
    t.replacePackets(['b1', 'b2']);
    const r = t.onTimeout(1000);
    assert.equal(r.action, 'resend');
    if (r.action === 'resend') assert.deepEqual(r.packets, ['b1', 'b2']);
    assert.throws(() => t.replacePackets([]), RangeError);
  });

  it('rejects bad configurations and empty requests', () => {
    assert.throws(() => new RequestTimer([], cfg, 0), RangeError);
    assert.throws(() => new RequestTimer(['a'], { ...cfg, factor: 0.5 }, 0), RangeError);
    assert.throws(() => new RequestTimer(['a'], { ...cfg, initialMs: 0 }, 0), RangeError);
  });

  it('earliest picks the smallest defined deadline', () => {
    assert.equal(earliest(), undefined);
    assert.equal(earliest(undefined, 5, 3, undefined, 9), 3);
  });
});

describe('ResponseCache (responder)', () => {
  it('window 1: new, then retransmit of the last response, old ones dropped', () => {
    const c = new ResponseCache<string>();
    assert.deepEqual(c.classify(0), { kind: 'new' });
    assert.deepEqual(c.classify(1), { kind: 'drop', reason: 'beyond-window' });
    c.store(0, ['r0a', 'r0b']);
    assert.equal(c.expected, 1);
    assert.deepEqual(c.classify(0), { kind: 'retransmit', packets: ['r0a', 'r0b'] });
    assert.deepEqual(c.classify(1), { kind: 'new' });
    c.store(1, ['r1']);
    assert.deepEqual(c.classify(0), { kind: 'drop', reason: 'old' });
    assert.deepEqual(c.classify(1), { kind: 'retransmit', packets: ['r1'] });
    assert.deepEqual(c.classify(7), { kind: 'drop', reason: 'beyond-window' });
  });

  it('larger windows keep one response per outstanding ID', () => {
    const c = new ResponseCache<string>(3, 10);
    assert.deepEqual(c.classify(12), { kind: 'new' });
    assert.deepEqual(c.classify(13).kind, 'drop');
    c.store(11, ['r11']);
    assert.equal(c.expected, 10); // 10 still unanswered
    c.store(10, ['r10']);
    assert.equal(c.expected, 12);
    assert.deepEqual(c.classify(10), { kind: 'retransmit', packets: ['r10'] });
    assert.deepEqual(c.classify(14), { kind: 'new' });
    c.store(12, ['r12']);
    c.store(13, ['r13']);
    assert.equal(c.get(10), undefined);
    assert.deepEqual(c.classify(10), { kind: 'drop', reason: 'old' });
    assert.deepEqual(c.classify(11), { kind: 'retransmit', packets: ['r11'] });
    assert.throws(() => new ResponseCache(0), RangeError);
  });

  it('a retransmitted fragmented request is answered on fragment 1 only', () => {
    assert.equal(shouldResendForFragment(undefined), true);
    assert.equal(shouldResendForFragment(1), true);
    assert.equal(shouldResendForFragment(2), false);
  });
});
