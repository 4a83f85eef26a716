import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  GroupChannelCore,
  IvCounterRegistry,
  ivCounterKey,
  type GroupSa,
  type GroupSaTable,
  type OpenResult,
} from '../../src/dataplane/channel-core.ts';
import { EspConfigError } from '../../src/dataplane/esp.ts';
import { EncrId, IntegId, SnId } from '../../src/wire/iana.ts';

const GROUP = { groupAddress: '239.1.2.3', groupPort: 5000 };

function gcmSa(spi: number, opts: Partial<GroupSa> = {}): GroupSa {
  return {
    spi,
    algorithm: { encr: EncrId.AES_GCM_16, encrKeyBits: 128 },
    keys: { encrKey: randomBytes(20), integKey: Buffer.alloc(0) },
    sn: SnId.SEQ32,
    ...opts,
  };
}

function cbcSa(spi: number, opts: Partial<GroupSa> = {}): GroupSa {
  return {
    spi,
    algorithm: { encr: EncrId.AES_CBC, encrKeyBits: 256, integ: IntegId.HMAC_SHA2_256_128 },
    keys: { encrKey: randomBytes(32), integKey: randomBytes(32) },
    sn: SnId.SEQ32,
    ...opts,
  };
}

const sendOn = (sa: GroupSa): GroupSa => ({ ...sa, outbound: true });

function mustSeal(core: GroupChannelCore, data: Uint8Array, now: number): Buffer {
  const r = core.seal(data, now);
  assert.ok(r.ok, r.ok ? '' : `seal refused: ${r.reason}`);
  return r.packet;
}

describe('IV uniqueness across senders (RFC 9838 2.5, RFC 6054)', () => {
  it('two senders with distinct Sender-IDs under one key never produce the same IV (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 3000 }),
        fc.integer({ min: 2, max: 16 }),
        (schedule, bits) => {
          const shared = gcmSa(0x1000, { sn: SnId.UNSPECIFIED32 });
          const registryA = new IvCounterRegistry();
          const registryB = new IvCounterRegistry();
          // Sender B holds two Sender-IDs and is close to the end of the first one's counter space.
          const a = new GroupChannelCore(
            { ...GROUP, ivCounters: registryA },
            { sas: [sendOn(shared)], sender: { senderIdBits: bits, senderIds: [0] } },
            0,
          );
          registryB.setNextCounter(ivCounterKey(shared), 1, 2 ** Math.min(64 - bits, 53) - 5);
          const b = new GroupChannelCore(
            { ...GROUP, ivCounters: registryB },
            { sas: [sendOn(shared)], sender: { senderIdBits: bits, senderIds: [1, 2] } },
            0,
          );
          const rx = new GroupChannelCore({ ...GROUP, ivCounters: new IvCounterRegistry() }, { sas: [shared] }, 0);
          const ivs = new Set<string>();
          let n = 0;
          for (const who of schedule) {
            const pkt = mustSeal(who === 0 ? a : b, Buffer.from(`m${n++}`), 1);
            const iv = pkt.subarray(8, 16).toString('hex');
            assert.ok(!ivs.has(iv), `IV ${iv} repeated`);
            ivs.add(iv);
            assert.ok(rx.open(pkt, 1).ok);
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('20,000 packets from two senders: all IVs distinct, Sender-ID field identifies the sender', () => {
    const shared = gcmSa(0x1001, { sn: SnId.UNSPECIFIED32 });
    const mk = (id: number): GroupChannelCore =>
      new GroupChannelCore(
        { ...GROUP, ivCounters: new IvCounterRegistry() },
        { sas: [sendOn(shared)], sender: { senderIdBits: 8, senderIds: [id] } },
        0,
      );
    const senders = [mk(7), mk(8)];
    const rx = new GroupChannelCore(
      { ...GROUP, ivCounters: new IvCounterRegistry() },
      { sas: [shared], sender: { senderIdBits: 8, senderIds: [] } },
      0,
    );
    const ivs = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const who = i % 3 === 0 ? 1 : 0;
      const pkt = mustSeal(senders[who]!, Buffer.alloc(16, i), 1);
      ivs.add(pkt.subarray(8, 16).toString('hex'));
      const r = rx.open(pkt, 1);
      assert.ok(r.ok);
      assert.equal(r.datagram.senderId, who === 0 ? 7 : 8);
    }
    assert.equal(ivs.size, 20_000);
  });

  it('reopening a channel on the same SA continues the IV counter and the sequence number', () => {
    const sa = sendOn(gcmSa(0x1002));
    const registry = new IvCounterRegistry();
    const table: GroupSaTable = { sas: [sa], sender: { senderIdBits: 8, senderIds: [4] } };
    const first = new GroupChannelCore({ ...GROUP, ivCounters: registry }, table, 0);
    const p1 = mustSeal(first, Buffer.from('a'), 0);
    const second = new GroupChannelCore({ ...GROUP, ivCounters: registry }, table, 0);
    const p2 = mustSeal(second, Buffer.from('b'), 0);
    assert.notEqual(p1.subarray(8, 16).toString('hex'), p2.subarray(8, 16).toString('hex'));
    assert.equal(p2.readUInt32BE(4), p1.readUInt32BE(4) + 1);
  });

  it('uses Sender-IDs serially and refuses to send when every counter is used up', () => {
    const sa = sendOn(gcmSa(0x1003));
    const registry = new IvCounterRegistry();
    const key = ivCounterKey(sa);
    registry.setNextCounter(key, 1, 2 ** 32 - 2);
    registry.setNextCounter(key, 2, 2 ** 32 - 1);
    const core = new GroupChannelCore(
      { ...GROUP, ivCounters: registry },
      { sas: [sa], sender: { senderIdBits: 32, senderIds: [1, 2] } },
      0,
    );
    const ivs = [0, 1, 2].map((i) => mustSeal(core, Buffer.from([i]), 0).subarray(8, 16).toString('hex'));
    assert.deepEqual(ivs, ['00000001fffffffe', '00000001ffffffff', '00000002ffffffff']);
    const r = core.seal(Buffer.from('x'), 0);
    assert.equal(!r.ok && r.reason, 'iv-exhausted');
    assert.equal(core.stats(0).refused['iv-exhausted'], 1);
  });

  it('"32-bit Sequential Numbers" never cycle; "Unspecified" wraps past 0', () => {
    const seq32 = sendOn(cbcSa(0x1004));
    const unspec = sendOn(cbcSa(0x1005, { sn: SnId.UNSPECIFIED32 }));
    const registry = new IvCounterRegistry();
    registry.setLastSeq(ivCounterKey(seq32), 0xfffffffe);
    registry.setLastSeq(ivCounterKey(unspec), 0xffffffff);
    const a = new GroupChannelCore({ ...GROUP, ivCounters: registry }, { sas: [seq32], sender: { senderIdBits: 0, senderIds: [] } }, 0);
    assert.equal(mustSeal(a, Buffer.from('x'), 0).readUInt32BE(4), 0xffffffff);
    const r = a.seal(Buffer.from('y'), 0);
    assert.equal(!r.ok && r.reason, 'sequence-exhausted');
    const b = new GroupChannelCore({ ...GROUP, ivCounters: registry }, { sas: [unspec], sender: { senderIdBits: 0, senderIds: [] } }, 0);
    assert.equal(mustSeal(b, Buffer.from('x'), 0).readUInt32BE(4), 1);
  });
});

describe('drops', () => {
  it('corrupted, replayed, unknown-SPI and stale-SA packets are counted and never delivered', () => {
    const sa = gcmSa(0x2000);
    const registry = new IvCounterRegistry();
    const tx = new GroupChannelCore(
      { ...GROUP, ivCounters: registry },
      { sas: [sendOn(sa)], sender: { senderIdBits: 8, senderIds: [1] } },
      0,
    );
    const rx = new GroupChannelCore({ ...GROUP, ivCounters: new IvCounterRegistry() }, { sas: [sa], dtdMs: 1000 }, 0);
    const delivered: string[] = [];
    const feed = (p: Uint8Array, now: number): OpenResult => {
      const r = rx.open(p, now);
      if (r.ok) delivered.push(r.datagram.data.toString());
      return r;
    };
    const good = mustSeal(tx, Buffer.from('good'), 0);
    const corrupt = Buffer.from(mustSeal(tx, Buffer.from('evil'), 0));
    corrupt[corrupt.length - 20]! ^= 0x40;
    const reason = (r: OpenResult): string => (r.ok ? 'delivered' : r.reason);
    assert.equal(reason(feed(corrupt, 1)), 'corrupted');
    assert.equal(reason(feed(good, 1)), 'delivered');
    assert.equal(reason(feed(good, 2)), 'replayed');
    const unknown = Buffer.from(good);
    unknown.writeUInt32BE(0x9999, 0);
    assert.equal(reason(feed(unknown, 3)), 'unknown-spi');
    assert.equal(reason(feed(Buffer.alloc(5), 3)), 'malformed');
    // A corrupted packet did not move the window: the genuine one with that number is still accepted.
    const late = mustSeal(tx, Buffer.from('late'), 0);
    rx.updateSas({ sas: [], dtdMs: 1000 }, 10);
    assert.equal(reason(feed(late, 500)), 'delivered'); // within DTD
    const later = mustSeal(tx, Buffer.from('later'), 0);
    assert.equal(reason(feed(later, 1010)), 'stale-sa');
    assert.deepEqual(delivered, ['good', 'late']);
    const s = rx.stats(1010);
    assert.deepEqual(
      { ...s.dropped },
      { corrupted: 1, malformed: 1, replayed: 1, 'unknown-spi': 1, 'stale-sa': 1, dummy: 0, 'bad-inner': 0 },
    );
    assert.equal(s.delivered, 2);
    assert.equal(s.sas.length, 0);
  });

  it('a packet for another group port is dropped after authentication as bad-inner', () => {
    const sa = gcmSa(0x2001);
    const tx = new GroupChannelCore(
      { groupAddress: '239.1.2.3', groupPort: 6000, ivCounters: new IvCounterRegistry() },
      { sas: [sendOn(sa)], sender: { senderIdBits: 0, senderIds: [] } },
      0,
    );
    const rx = new GroupChannelCore({ ...GROUP, ivCounters: new IvCounterRegistry() }, { sas: [sa] }, 0);
    const r = rx.open(mustSeal(tx, Buffer.from('x'), 0), 0);
    assert.equal(!r.ok && r.reason, 'bad-inner');
  });

  it('with "32-bit Unspecified Numbers" there is no replay window (RFC 9838 2.6)', () => {
    const sa = gcmSa(0x2002, { sn: SnId.UNSPECIFIED32 });
    const tx = new GroupChannelCore(
      { ...GROUP, ivCounters: new IvCounterRegistry() },
      { sas: [sendOn(sa)], sender: { senderIdBits: 4, senderIds: [3] } },
      0,
    );
    const rx = new GroupChannelCore({ ...GROUP, ivCounters: new IvCounterRegistry() }, { sas: [sa] }, 0);
    const p = mustSeal(tx, Buffer.from('x'), 0);
    assert.ok(rx.open(p, 0).ok);
    assert.ok(rx.open(p, 0).ok, 'duplicates cannot be detected without unique sequence numbers');
    assert.equal(rx.stats(0).sas[0]!.replayHighest, undefined);
  });
});

describe('configuration', () => {
  it('rejects ESN, a Sender-ID that does not fit, duplicate SPIs; a rejected table changes nothing', () => {
    const sa = gcmSa(0x3000);
    const core = new GroupChannelCore({ ...GROUP, ivCounters: new IvCounterRegistry() }, { sas: [sa] }, 0);
    assert.throws(() => core.updateSas({ sas: [gcmSa(0x3001, { sn: SnId.ESN64_PARTIAL })] }, 1), EspConfigError);
    assert.throws(() => core.updateSas({ sas: [sa], sender: { senderIdBits: 4, senderIds: [16] } }, 1), EspConfigError);
    assert.throws(() => core.updateSas({ sas: [sa, sa] }, 1), EspConfigError);
    assert.deepEqual(
      core.stats(1).sas.map((s) => [s.spi, s.state]),
      [[0x3000, 'active']],
    );
    const r = core.seal(Buffer.from('x'), 1);
    assert.equal(!r.ok && r.reason, 'no-outbound-sa');
  });
});

describe('rekey rollover through ATD and DTD (simulated clock)', () => {
  it('SAs of the first table (registration) are active at once; later ones wait ATD', () => {
    const tx = new GroupChannelCore(
      { ...GROUP, ivCounters: new IvCounterRegistry() },
      { sas: [sendOn(gcmSa(0x6001))], atdMs: 1000, sender: { senderIdBits: 0, senderIds: [] } },
      0,
    );
    assert.ok(tx.seal(Buffer.from('x'), 0).ok);
    tx.updateSas({ sas: [sendOn(gcmSa(0x6002))], atdMs: 1000, dtdMs: 0, sender: { senderIdBits: 0, senderIds: [] } }, 10);
    // The old SA left the table with DTD 0 and the new one is pending: nothing to send on for ATD.
    const r = tx.seal(Buffer.from('x'), 500);
    assert.equal(!r.ok && r.reason, 'no-outbound-sa');
    const r2 = tx.seal(Buffer.from('x'), 1010);
    assert.ok(r2.ok && r2.spi === 0x6002);
  });

  for (const make of [gcmSa, cbcSa]) {
    it(`${make === gcmSa ? 'AES-GCM' : 'AES-CBC'}: every datagram delivered exactly once to both receivers, in order`, () => {
      const atdMs = 2000;
      const dtdMs = 5000;
      const sa1 = make(0x4001);
      const sa2 = make(0x4002);
      const sa3 = make(0x4003);
      const sender = { senderIdBits: 8, senderIds: [9] };
      const tx = new GroupChannelCore(
        { ...GROUP, ivCounters: new IvCounterRegistry() },
        { sas: [sendOn(sa1)], atdMs, dtdMs, sender },
        0,
      );
      const receivers = [0, 1].map(
        () => new GroupChannelCore({ ...GROUP, ivCounters: new IvCounterRegistry() }, { sas: [sa1], atdMs, dtdMs }, 0),
      );
      const got: string[][] = [[], []];
      const spisUsed = new Map<number, number>();
      const capture: Buffer[] = [];
      // Rekeys reach members at slightly different times (receiver 1 late by 700 ms, still inside ATD).
      const events: [number, number, GroupSaTable][] = [
        [5000, -1, { sas: [sendOn(sa1), sendOn(sa2)], atdMs, dtdMs, sender }],
        [5000, 0, { sas: [sa1, sa2], atdMs, dtdMs }],
        [5700, 1, { sas: [sa1, sa2], atdMs, dtdMs }],
        // The GCKS deletes the old SA after the new one is active everywhere.
        [9000, -1, { sas: [sendOn(sa2)], atdMs, dtdMs, sender }],
        [9000, 0, { sas: [sa2], atdMs, dtdMs }],
        [9300, 1, { sas: [sa2], atdMs, dtdMs }],
        // Second rekey, with the old SA deleted in the same update.
        [15000, -1, { sas: [sendOn(sa3)], atdMs, dtdMs, sender }],
        [15000, 0, { sas: [sa3], atdMs, dtdMs }],
        [15400, 1, { sas: [sa3], atdMs, dtdMs }],
      ];
      let sent = 0;
      for (let now = 0; now <= 25_000; now += 50) {
        for (const [t, who, table] of events) {
          if (t !== now) continue;
          if (who < 0) tx.updateSas(table, now);
          else receivers[who]!.updateSas(table, now);
        }
        const r = tx.seal(Buffer.from(`d${sent}`), now);
        assert.ok(r.ok, `send at ${now}`);
        sent++;
        spisUsed.set(r.spi, (spisUsed.get(r.spi) ?? 0) + 1);
        capture.push(r.packet);
        // Delivery takes 1-3 ms; each receiver may see packets reordered within one tick.
        receivers.forEach((rx, i) => {
          const o = rx.open(r.packet, now + 1 + i);
          if (o.ok) got[i]!.push(o.datagram.data.toString());
        });
      }
      const expected = Array.from({ length: sent }, (_, i) => `d${i}`);
      assert.deepEqual(got[0], expected);
      assert.deepEqual(got[1], expected);
      // Sender switched exactly at ATD: sa1 up to 6950, sa2 from 7000, sa3 from 17000.
      assert.equal(spisUsed.get(0x4001), 7000 / 50);
      assert.equal(spisUsed.get(0x4002), (17000 - 7000) / 50);
      assert.equal(spisUsed.get(0x4003), (25000 - 17000) / 50 + 1);
      // Replaying the whole capture later delivers nothing: stale SAs and the replay window.
      for (const [i, rx] of receivers.entries()) {
        for (const p of capture) {
          const o = rx.open(p, 25_100);
          assert.equal(o.ok, false);
        }
        const st = rx.stats(25_100);
        assert.equal(st.delivered, sent);
        assert.equal(st.dropped['stale-sa'] + st.dropped.replayed, capture.length, `receiver ${i}`);
        assert.equal(st.dropped.replayed, (25000 - 17000) / 50 + 1);
      }
      // During the sender's switch, the receivers held both SAs.
      assert.deepEqual(tx.stats(25_000).sas.map((s) => s.spi), [0x4003]);
    });
  }

  it('an SA may carry explicit activation/deactivation times that override ATD/DTD', () => {
    const sa1 = sendOn(gcmSa(0x5001, { deactivateAt: 3000 }));
    const sa2 = sendOn(gcmSa(0x5002, { activateAt: 1000 }));
    const tx = new GroupChannelCore({ ...GROUP, ivCounters: new IvCounterRegistry() }, { sas: [] }, 0);
    tx.updateSas({ sas: [sa1, sa2], atdMs: 60_000, sender: { senderIdBits: 0, senderIds: [] } }, 0);
    // sa1's own activation is now + ATD (60 s) so nothing may be sent on it; sa2 activates at 1000.
    const r0 = tx.seal(Buffer.from('x'), 500);
    assert.equal(!r0.ok && r0.reason, 'no-outbound-sa');
    const r1 = tx.seal(Buffer.from('x'), 1000);
    assert.ok(r1.ok && r1.spi === 0x5002);
    assert.equal(tx.nextDeadline(), 3000);
    assert.deepEqual(tx.stats(3000).sas.map((s) => s.spi), [0x5002]);
  });
});
