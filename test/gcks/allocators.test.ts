import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { deterministicRandom } from '../../src/crypto/random.ts';
import { memoryCounterReservation, ReservedCounter } from '../../src/gcks/counters.ts';
import { encodeSenderId, SenderIdAllocator } from '../../src/gcks/sender-ids.ts';
import { SpiAllocator } from '../../src/gcks/spi.ts';
import { directory, NOW, VIDEO } from './fixtures.ts';

describe('Sender-ID allocator (RFC 9838 2.5.1)', () => {
  it('allocates sequentially from zero, never repeats, caps per request, one by default', () => {
    const a = new SenderIdAllocator(memoryCounterReservation(), 'tek-1', 8);
    assert.deepEqual(a.allocateSenderIds(0, 4).senderIds, [0]);
    assert.deepEqual(a.allocateSenderIds(1, 4).senderIds, [1]);
    assert.deepEqual(a.allocateSenderIds(10, 4).senderIds, [2, 3, 4, 5], 'policy cap');
    const seen = new Set<number>();
    for (let i = 0; i < 100; i++) for (const id of a.allocateSenderIds(3, 3).senderIds) seen.add(id);
    assert.equal(seen.size, 250, 'every remaining value exactly once');
    assert.ok([...seen].every((id) => id >= 6 && id < 256));
  });

  it('returns fewer when running out, then signals exhaustion', () => {
    const a = new SenderIdAllocator(memoryCounterReservation(), 'tek-1', 2);
    assert.deepEqual(a.allocateSenderIds(3, 8), { senderIds: [0, 1, 2], exhausted: false });
    assert.deepEqual(a.allocateSenderIds(3, 8), { senderIds: [3], exhausted: true });
    assert.deepEqual(a.allocateSenderIds(1, 8), { senderIds: [], exhausted: true });
  });

  it('resumes above everything reserved after a restart (a crash skips values, never repeats them)', () => {
    const store = memoryCounterReservation();
    const before = new SenderIdAllocator(store, 'tek-1', 16);
    const given = before.allocateSenderIds(5, 5).senderIds;
    const after = new SenderIdAllocator(store, 'tek-1', 16);
    const next = after.allocateSenderIds(1, 1).senderIds[0]!;
    assert.ok(next > Math.max(...given), `${next} must be above ${given.join(',')}`);
    assert.ok(store.marks.get('tek-1')! <= 256 + 256, 'reserves in blocks, not per value');
    assert.deepEqual(new SenderIdAllocator(store, 'tek-2', 16).allocateSenderIds(1, 1).senderIds, [0], 'new TEKs, new space');
  });

  it('encodes GM_SENDER_ID as 4 octets big-endian', () => {
    assert.equal(encodeSenderId(0x0102).toString('hex'), '00000102');
  });

  it('a reserved counter refuses to go back', () => {
    const store = memoryCounterReservation();
    const c = new ReservedCounter(store, 'x', { start: 5, limit: 7, block: 10 });
    assert.deepEqual([c.take(), c.take(), c.take()], [5, 6, undefined]);
    assert.throws(() => store.reserve('x', 1), RangeError);
  });
});

describe('SPI allocation', () => {
  it('ESP/AH SPIs are unique, above the reserved range, and survive restarts', () => {
    const store = memoryCounterReservation();
    const seen = new Set<string>();
    for (let run = 0; run < 3; run++) {
      const spis = new SpiAllocator(store, 'group/x', deterministicRandom('same seed every run'));
      for (let i = 0; i < 300; i++) {
        const spi = spis.allocateDataSecuritySpi();
        assert.equal(spi.length, 4);
        assert.ok(spi.readUInt32BE(0) >= 0x100);
        assert.ok(!seen.has(spi.toString('hex')), `SPI ${spi.toString('hex')} repeated`);
        seen.add(spi.toString('hex'));
      }
      const kek = spis.allocateRekeySpi();
      assert.equal(kek.length, 16);
      assert.ok(!kek.subarray(0, 8).every((b) => b === 0) && !kek.subarray(8).every((b) => b === 0));
      assert.ok(!seen.has(kek.toString('hex')));
      seen.add(kek.toString('hex'));
    }
  });

  it('a group never hands out an SPI twice when its TEKs and KEK are replaced', () => {
    const store = memoryCounterReservation();
    const group = directory(store).find(VIDEO)!;
    const seen = new Set<string>();
    const note = (): void => {
      for (const t of group.dataSecuritySas) {
        assert.ok(!seen.has(t.spi.toString('hex')));
        seen.add(t.spi.toString('hex'));
      }
      assert.ok(!seen.has(group.rekeySa!.spi.toString('hex')));
      seen.add(group.rekeySa!.spi.toString('hex'));
    };
    note();
    for (let i = 1; i <= 20; i++) {
      group.replaceDataSecuritySas(NOW + i);
      group.replaceRekeySa(NOW + i);
      note();
    }
    // A restarted key server with the same durable counters continues above them.
    directory(store).find(VIDEO)!;
    const restarted = directory(store).find(VIDEO)!;
    for (const t of restarted.dataSecuritySas) assert.ok(!seen.has(t.spi.toString('hex')));
  });
});
