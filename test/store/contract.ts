/**
 * The KeyServerStore contract: every implementation runs this same suite
 * (memory.test.ts, sqlite.test.ts).
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { CounterAllocator, counterReservation, keyIdCounterOptions } from '../../src/store/counters.ts';
import { CounterExhaustedError, StoreUsageError } from '../../src/store/errors.ts';
import type { KeyServerStore, MemberRecord, Reservation, SaRecord } from '../../src/store/store.ts';
import type { StoreHarness } from './helpers.ts';

const G = 'group:1:0a000001';

function sa(saId: string, kind: SaRecord['kind'], createdAt: number, keyByte: number): SaRecord {
  return {
    groupId: G,
    saId,
    kind,
    role: 'current',
    spi: Buffer.from(saId, 'hex'),
    attributes: { encr: 'AES-GCM-16', keyBits: 256, nested: [1, 'two', null, true] },
    keymat: Buffer.alloc(36, keyByte),
    createdAt,
    expiresAt: createdAt + 3_600_000,
  };
}

function member(memberId: string, extra: Partial<MemberRecord> = {}): MemberRecord {
  return { groupId: G, memberId, identity: { type: 'FQDN', data: memberId }, status: 'active', registeredAt: 1000, sender: true, senderIds: [1, 2], ...extra };
}

/**
 * The behaviour every KeyServerStore must have. `persistent` stores also run
 * the reopen/crash-image test (an in-memory store has nothing to reopen).
 */
export function storeContract(name: string, create: () => StoreHarness, opts: { persistent: boolean } = { persistent: true }): void {
  const withStore = (fn: (s: KeyServerStore, h: StoreHarness) => void) => () => {
    const h = create();
    try {
      fn(h.store, h);
    } finally {
      h.dispose();
    }
  };

  describe(`${name}: KeyServerStore contract`, () => {
    it('reserves contiguous blocks above floor, cut at the limit, empty when exhausted', withStore((s) => {
      assert.equal(s.counterMark('c'), 0);
      assert.deepEqual(s.reserve('c', 10), { counter: 'c', start: 0, end: 10 });
      assert.deepEqual(s.reserve('c', 5), { counter: 'c', start: 10, end: 15 });
      assert.equal(s.counterMark('c'), 15);
      assert.deepEqual(s.reserve('spi', 256, { floor: 0x100 }), { counter: 'spi', start: 0x100, end: 0x200 });
      assert.deepEqual(s.reserve('small', 10, { limit: 4 }), { counter: 'small', start: 0, end: 4 });
      assert.deepEqual(s.reserve('small', 10, { limit: 4 }), { counter: 'small', start: 4, end: 4 });
      assert.deepEqual(s.listCounters(), [
        { counter: 'c', mark: 15 },
        { counter: 'small', mark: 4 },
        { counter: 'spi', mark: 0x200 },
      ]);
      assert.throws(() => s.reserve('c', 0), RangeError);
      assert.throws(() => s.reserve('', 1), RangeError);
    }));

    it('advanceCounter raises the mark and refuses to go back', withStore((s) => {
      s.advanceCounter('k', 100);
      s.advanceCounter('k', 100);
      assert.equal(s.counterMark('k'), 100);
      assert.throws(() => s.advanceCounter('k', 99), RangeError);
      assert.equal(s.reserve('k', 1).start, 100);
    }));

    it('refuses reservations inside a transaction (they must be durable before use)', withStore((s) => {
      assert.throws(() => s.transaction(() => s.reserve('c', 1)), StoreUsageError);
      assert.throws(() => s.transaction(() => s.advanceCounter('c', 5)), StoreUsageError);
      assert.equal(s.counterMark('c'), 0);
    }));

    it('CounterAllocator hands out unique values, reserves ahead, never beyond a committed block', withStore((s) => {
      const reservations: Reservation[] = [];
      const spy = {
        get inTransaction() {
          return s.inTransaction;
        },
        reserve: (c: string, n: number, o?: { floor?: number; limit?: number }) => {
          const r = s.reserve(c, n, o);
          reservations.push(r);
          return r;
        },
      };
      const a = new CounterAllocator(spy, 'sender-id', { blockSize: 8, floor: 0 });
      const seen: number[] = [];
      for (let i = 0; i < 40; i++) {
        const v = a.next();
        // Every value handed out lies inside a block reserved before it was returned.
        assert.ok(reservations.some((r) => v >= r.start && v < r.end), `value ${v} not covered`);
        seen.push(v);
        assert.ok(a.available() > 0, 'the next block is reserved before the current one runs out');
      }
      assert.deepEqual(seen, [...Array(40).keys()]);
      // A second allocator on the same counter (a restart) continues above every reservation.
      const b = new CounterAllocator(s, 'sender-id', { blockSize: 8 });
      assert.ok(b.next() >= Math.max(...reservations.map((r) => r.end)));
    }));

    it('CounterAllocator stops at the limit and works inside transactions while values are reserved', withStore((s) => {
      const a = new CounterAllocator(s, 'msgid', { blockSize: 4, limit: 6 });
      a.ensure(6);
      const values = s.transaction(() => [a.next(), a.next(), a.next(), a.next(), a.next(), a.next()]);
      assert.deepEqual(values, [0, 1, 2, 3, 4, 5]);
      assert.equal(a.tryNext(), undefined);
      assert.throws(() => a.next(), CounterExhaustedError);
      const b = new CounterAllocator(s, 'empty-in-tx', { blockSize: 4 });
      assert.throws(() => s.transaction(() => b.next()), StoreUsageError);
    }));

    it('adapters: gcks CounterReservation and LKH keyIdCounter options', withStore((s) => {
      const cr = counterReservation(s);
      assert.equal(cr.reservedUpTo('x'), 0);
      cr.reserve('x', 64);
      assert.equal(cr.reservedUpTo('x'), 64);
      const opts = keyIdCounterOptions(s, 'lkh');
      assert.equal(opts.start, 1);
      opts.reserve(4096); // IDs 1..4096 reserved (inclusive bound)
      assert.equal(keyIdCounterOptions(s, 'lkh').start, 4097);
    }));

    it('groups: put, update, list, delete', withStore((s) => {
      s.putGroup({ groupId: 'b', name: 'beta', policy: { capacity: 10, rekey: { kind: 'multicast' } }, appliedAt: 5 });
      s.putGroup({ groupId: 'a', name: 'alpha', policy: [1, 2, 3], appliedAt: 6 });
      s.putGroup({ groupId: 'b', name: 'beta2', policy: { capacity: 20 }, appliedAt: 7 });
      assert.deepEqual(s.getGroup('b'), { groupId: 'b', name: 'beta2', policy: { capacity: 20 }, appliedAt: 7 });
      assert.deepEqual(s.listGroups().map((g) => g.groupId), ['a', 'b']);
      assert.equal(s.getGroup('zz'), undefined);
      assert.equal(s.deleteGroup('a'), true);
      assert.equal(s.deleteGroup('a'), false);
      assert.deepEqual(s.listGroups().map((g) => g.name), ['beta2']);
    }));

    it('SAs: key material round trip, rotation current -> previous -> gone, Message IDs increase', withStore((s) => {
      const t1 = sa('00000101', 'data-security', 1, 0x11);
      const k1 = { ...sa('aa'.repeat(16), 'rekey', 1, 0x22) };
      s.putSa(t1);
      s.putSa(k1);
      assert.deepEqual(s.getSa(G, t1.saId), t1);
      const t2 = sa('00000102', 'data-security', 2, 0x33);
      s.rotateSas(G, 'data-security', [t2]);
      assert.deepEqual(s.listSas(G, { kind: 'data-security' }).map((x) => [x.saId, x.role]), [
        ['00000101', 'previous'],
        ['00000102', 'current'],
      ]);
      const t3 = sa('00000103', 'data-security', 3, 0x44);
      s.rotateSas(G, 'data-security', [t3]);
      assert.deepEqual(s.listSas(G, { kind: 'data-security' }).map((x) => [x.saId, x.role]), [
        ['00000102', 'previous'],
        ['00000103', 'current'],
      ]);
      assert.deepEqual(s.listSas(G, { role: 'current' }).map((x) => x.saId), [k1.saId, '00000103']);
      assert.throws(() => s.rotateSas(G, 'rekey', [t3]), StoreUsageError);
      assert.equal(s.listSas(G, { kind: 'rekey' }).length, 1, 'a failed rotation changes nothing');
      s.recordRekeyMessageId(G, k1.saId, 0);
      s.recordRekeyMessageId(G, k1.saId, 5);
      assert.throws(() => s.recordRekeyMessageId(G, k1.saId, 5), RangeError);
      assert.equal(s.getSa(G, k1.saId)?.lastMessageId, 5);
      assert.equal(s.deleteSa(G, k1.saId), true);
      assert.equal(s.getSa(G, k1.saId), undefined);
    }));

    it('members, leaves and registration history', withStore((s) => {
      s.putMember(member('gm2'));
      s.putMember(member('gm1', { leaf: 7, senderIds: [] }));
      s.putMember(member('gm3', { status: 'excluded', sender: false }));
      assert.deepEqual(s.getMember(G, 'gm1'), member('gm1', { leaf: 7, senderIds: [] }));
      assert.equal(s.getMember(G, 'gm2')?.leaf, undefined);
      assert.ok(!('leaf' in s.getMember(G, 'gm2')!), 'absent optional fields are absent, not undefined');
      assert.deepEqual(s.listMembers(G).map((m) => m.memberId), ['gm1', 'gm2', 'gm3']);
      assert.deepEqual(s.listMembers(G, { status: 'excluded' }).map((m) => m.memberId), ['gm3']);
      const r1 = s.appendRegistration({ groupId: G, memberId: 'gm1', at: 10, details: { senderIds: [3] } });
      s.appendRegistration({ groupId: G, memberId: 'gm2', at: 11, details: {} });
      const r3 = s.appendRegistration({ groupId: G, memberId: 'gm1', at: 12, details: { senderIds: [9] } });
      assert.ok(r3 > r1);
      assert.deepEqual(s.registrationHistory(G, 'gm1'), [
        { seq: r1, groupId: G, memberId: 'gm1', at: 10, details: { senderIds: [3] } },
        { seq: r3, groupId: G, memberId: 'gm1', at: 12, details: { senderIds: [9] } },
      ]);
      assert.equal(s.deleteMember(G, 'gm3'), true);
      assert.equal(s.deleteMember(G, 'gm3'), false);
    }));

    it('LKH snapshot and signing keys round trip', withStore((s) => {
      const tree = Buffer.from(Array.from({ length: 1000 }, (_, i) => i & 0xff));
      s.putLkhSnapshot({ groupId: G, meta: { arity: 2, height: 4, members: 9 }, tree, savedAt: 42 });
      assert.deepEqual(s.getLkhSnapshot(G), { groupId: G, meta: { arity: 2, height: 4, members: 9 }, tree, savedAt: 42 });
      assert.equal(s.getLkhSnapshot('other'), undefined);
      const key = { keyId: 'k1', algorithm: 'ed25519', privateKey: Buffer.alloc(48, 7), publicKey: Buffer.alloc(44, 8), createdAt: 1 };
      s.putSigningKey(key);
      s.putSigningKey({ ...key, keyId: 'k0', createdAt: 0, retiredAt: 5 });
      assert.deepEqual(s.getSigningKey('k1'), key);
      assert.deepEqual(s.listSigningKeys().map((k) => [k.keyId, k.retiredAt]), [
        ['k0', 5],
        ['k1', undefined],
      ]);
    }));

    it('audit log: append-only, queried by time, member, group and kind', withStore((s) => {
      const seqs = [
        s.appendAudit({ at: 100, kind: 'registration', groupId: G, memberId: 'gm1', details: { senderIds: [0] } }),
        s.appendAudit({ at: 110, kind: 'rejection', groupId: G, memberId: 'gm9', reason: 'not authorized' }),
        s.appendAudit({ at: 120, kind: 'rekey', groupId: G, details: { messageId: 1 } }),
        s.appendAudit({ at: 130, kind: 'exclusion', groupId: G, memberId: 'gm1', reason: 'operator' }),
        s.appendAudit({ at: 140, kind: 'registration', groupId: 'other', memberId: 'gm1' }),
      ];
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
      assert.equal(new Set(seqs).size, 5);
      assert.deepEqual(s.queryAudit().map((e) => e.at), [100, 110, 120, 130, 140]);
      assert.deepEqual(s.queryAudit({ since: 110, until: 130 }).map((e) => e.kind), ['rejection', 'rekey']);
      assert.deepEqual(s.queryAudit({ memberId: 'gm1' }).map((e) => e.kind), ['registration', 'exclusion', 'registration']);
      assert.deepEqual(s.queryAudit({ memberId: 'gm1', groupId: G }).map((e) => e.at), [100, 130]);
      assert.deepEqual(s.queryAudit({ kind: ['rejection', 'exclusion'] }).map((e) => e.reason), ['not authorized', 'operator']);
      assert.deepEqual(s.queryAudit({ kind: 'registration', limit: 1 }).map((e) => e.at), [100]);
      assert.deepEqual(s.queryAudit({ afterSeq: seqs[3]! }).map((e) => e.at), [140]);
      assert.deepEqual(s.queryAudit({ kind: 'rekey' })[0], { seq: seqs[2], at: 120, kind: 'rekey', groupId: G, details: { messageId: 1 } });
    }));

    it('transactions commit together, roll back on throw, and nest', withStore((s) => {
      s.transaction(() => {
        s.putMember(member('a'));
        s.appendAudit({ at: 1, kind: 'registration', memberId: 'a' });
      });
      assert.throws(
        () =>
          s.transaction(() => {
            s.putMember(member('b'));
            s.putMember(member('a', { status: 'excluded' }));
            s.putSa(sa('0000beef', 'data-security', 1, 1));
            s.appendAudit({ at: 2, kind: 'exclusion', memberId: 'a' });
            s.putGroup({ groupId: G, name: 'x', policy: null, appliedAt: 0 });
            throw new Error('boom');
          }),
        /boom/,
      );
      assert.equal(s.getMember(G, 'b'), undefined);
      assert.equal(s.getMember(G, 'a')?.status, 'active');
      assert.equal(s.getSa(G, '0000beef'), undefined);
      assert.equal(s.getGroup(G), undefined);
      assert.equal(s.queryAudit().length, 1);
      assert.equal(s.inTransaction, false);
      const result = s.transaction(() => {
        s.putMember(member('c'));
        assert.equal(s.inTransaction, true);
        assert.throws(() =>
          s.transaction(() => {
            s.putMember(member('d'));
            throw new Error('inner');
          }),
        );
        return 'done';
      });
      assert.equal(result, 'done');
      assert.ok(s.getMember(G, 'c'));
      assert.equal(s.getMember(G, 'd'), undefined);
    }));

    it('returns copies: mutating a result does not change the store', withStore((s) => {
      const t = sa('00000201', 'data-security', 1, 0x55);
      s.putSa(t);
      const got = s.getSa(G, t.saId)!;
      got.keymat.fill(0);
      (got.attributes as { encr: string }).encr = 'changed';
      assert.deepEqual(s.getSa(G, t.saId), t);
    }));

    it('deleting a group removes its SAs, members, history and tree but not counters or audit', withStore((s) => {
      s.putGroup({ groupId: G, name: 'g', policy: {}, appliedAt: 0 });
      s.putSa(sa('00000301', 'data-security', 1, 1));
      s.putMember(member('m'));
      s.appendRegistration({ groupId: G, memberId: 'm', at: 1, details: null });
      s.putLkhSnapshot({ groupId: G, meta: null, tree: Buffer.alloc(4), savedAt: 0 });
      s.reserve(`group/${G}/spi`, 10);
      s.appendAudit({ at: 1, kind: 'group', groupId: G, reason: 'created' });
      s.deleteGroup(G);
      assert.deepEqual([s.listSas(G), s.listMembers(G), s.registrationHistory(G, 'm'), s.getLkhSnapshot(G)], [[], [], [], undefined]);
      assert.equal(s.counterMark(`group/${G}/spi`), 10);
      assert.equal(s.queryAudit({ groupId: G }).length, 1);
    }));

    if (opts.persistent) it('persists everything across a clean reopen and a crash image', () => {
      const h = create();
      try {
        assert.ok(h.reopen && h.crashImage, 'a persistent store harness offers reopen and crashImage');
        const s = h.store;
        s.putGroup({ groupId: G, name: 'g', policy: { a: 1 }, appliedAt: 3 });
        s.putSa(sa('00000401', 'data-security', 1, 0x66));
        s.putMember(member('m', { leaf: 3 }));
        const r = s.reserve('msgid', 64);
        s.appendAudit({ at: 9, kind: 'registration', memberId: 'm' });
        const crashed = h.crashImage();
        for (const view of [crashed, h.reopen()]) {
          assert.deepEqual(view.getGroup(G), { groupId: G, name: 'g', policy: { a: 1 }, appliedAt: 3 });
          assert.deepEqual(view.getSa(G, '00000401'), sa('00000401', 'data-security', 1, 0x66));
          assert.equal(view.getMember(G, 'm')?.leaf, 3);
          assert.equal(view.queryAudit({ memberId: 'm' }).length, 1);
          assert.equal(view.reserve('msgid', 64).start, r.end, 'the next reservation starts above the last one');
        }
      } finally {
        h.dispose();
      }
    });
  });
}
