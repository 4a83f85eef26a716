import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { createSkCipher, IntegrityError, unprotect, type SkAlgorithm, type SkCipher } from '../../src/crypto/cipher.ts';
import { deterministicRandom } from '../../src/crypto/random.ts';
import {
  fitsInDatagram,
  FragmentationError,
  fragmentMessage,
  ikeMessageBudget,
  maxFragmentChunk,
  Reassembler,
  skfProtector,
  type DatagramLimits,
  type FragmentProtector,
  type ReassemblyConfig,
} from '../../src/ike/fragments.ts';
import { decodeHeader, type IkeHeaderFields } from '../../src/wire/header.ts';
import { EncrId, ExchangeType, IntegId, PayloadType } from '../../src/wire/iana.ts';

const header: IkeHeaderFields = {
  spiI: Buffer.from('1111111111111111', 'hex'),
  spiR: Buffer.from('2222222222222222', 'hex'),
  majorVersion: 2,
  minorVersion: 0,
  exchangeType: ExchangeType.IKE_AUTH,
  flags: { initiator: true, version: false, response: false },
  messageId: 1,
};

const rng = deterministicRandom('fragments');
const GCM: SkAlgorithm = { encr: EncrId.AES_GCM_16, encrKeyBits: 256 };
const CBC: SkAlgorithm = { encr: EncrId.AES_CBC, encrKeyBits: 128, integ: IntegId.HMAC_SHA2_256_128 };

function cipherPair(alg: SkAlgorithm): { out: SkCipher; in: SkCipher } {
  const keys = alg === GCM ? { encrKey: rng.bytes(36), integKey: Buffer.alloc(0) } : { encrKey: rng.bytes(16), integKey: rng.bytes(32) };
  return { out: createSkCipher(alg, keys, rng), in: createSkCipher(alg, keys, rng) };
}

interface Parsed {
  next: number;
  length: number;
  skfNext: number;
  skfLength: number;
  num: number;
  total: number;
  aad: Buffer;
  body: Buffer;
}

function parse(d: Buffer): Parsed {
  const h = decodeHeader(d);
  return {
    next: h.nextPayload,
    length: h.length,
    skfNext: d[28]!,
    skfLength: d.readUInt16BE(30),
    num: d.readUInt16BE(32),
    total: d.readUInt16BE(34),
    aad: d.subarray(0, 36),
    body: d.subarray(36),
  };
}

function shuffle<T>(xs: T[], seed: number): T[] {
  const a = [...xs];
  let s = seed;
  for (let i = a.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

describe('fragment sizing (RFC 7383 2.5.1)', () => {
  it('subtracts IP, UDP and marker overhead', () => {
    assert.equal(ikeMessageBudget({ maxDatagramSize: 1280, ipVersion: 6, marker: true }), 1228);
    assert.equal(ikeMessageBudget({ maxDatagramSize: 576, ipVersion: 4, marker: false }), 548);
    assert.equal(fitsInDatagram(548, { maxDatagramSize: 576, ipVersion: 4, marker: false }), true);
    assert.equal(fitsInDatagram(549, { maxDatagramSize: 576, ipVersion: 4, marker: false }), false);
  });

  it('fills fragments to the largest chunk the cipher allows', () => {
    const cbc = skfProtector(cipherPair(CBC).out);
    // room 1228-36 = 1192 = IV 16 + padded + ICV 16 -> padded <= 1160 -> 1152 -> chunk 1151
    assert.equal(maxFragmentChunk({ maxDatagramSize: 1280, ipVersion: 6, marker: true }, cbc), 1151);
    const gcm = skfProtector(cipherPair(GCM).out);
    // room 548-36 = 512 = IV 8 + chunk + pad length 1 + ICV 16 -> 487
    assert.equal(maxFragmentChunk({ maxDatagramSize: 576, ipVersion: 4, marker: false }, gcm), 487);
  });
});

for (const [name, alg] of [
  ['AES-GCM-16', GCM],
  ['AES-CBC + HMAC-SHA-256', CBC],
] as const) {
  describe(`fragmentMessage with ${name}`, () => {
    const limits: DatagramLimits = { maxDatagramSize: 576, ipVersion: 4, marker: true };
    const inner = rng.bytes(5000);

    it('produces complete fragments within the datagram size, numbered 1..N', () => {
      const { out } = cipherPair(alg);
      const frags = fragmentMessage({ header, innerFirst: PayloadType.IDi, inner, limits, protector: skfProtector(out) });
      const chunk = maxFragmentChunk(limits, skfProtector(out));
      assert.equal(frags.length, Math.ceil(5000 / chunk));
      frags.forEach((d, i) => {
        assert.ok(d.length + 20 + 8 + 4 <= 576, `fragment ${i + 1} is ${d.length} octets`);
        const p = parse(d);
        assert.equal(p.next, PayloadType.SKF);
        assert.equal(p.length, d.length);
        assert.equal(p.skfLength, d.length - 28);
        assert.equal(p.skfNext, i === 0 ? PayloadType.IDi : 0);
        assert.equal(p.num, i + 1);
        assert.equal(p.total, frags.length);
        assert.deepEqual(d.subarray(0, 16), Buffer.concat([header.spiI, header.spiR]));
      });
    });

    it('each fragment decrypts on its own and they reassemble in any order', () => {
      const pair = cipherPair(alg);
      const frags = fragmentMessage({ header, innerFirst: PayloadType.IDi, inner, limits, protector: skfProtector(pair.out) });
      for (const seed of [1, 2, 3]) {
        const r = new Reassembler();
        const order = shuffle(frags, seed);
        let result;
        for (const [k, d] of order.entries()) {
          const p = parse(d);
          const plaintext = unprotect(pair.in, p.aad, p.body);
          result = r.add('sa', 1, { fragmentNumber: p.num, totalFragments: p.total, innerFirst: p.skfNext, plaintext }, 0);
          if (k < order.length - 1) assert.equal(result.status, 'incomplete');
        }
        assert.ok(result && result.status === 'complete');
        assert.equal(result.innerFirst, PayloadType.IDi);
        assert.deepEqual(result.plaintext, inner);
        assert.equal(r.size, 0);
      }
    });

    it('authenticates the IKE and SKF headers (a changed Total Fragments fails the ICV)', () => {
      const pair = cipherPair(alg);
      const frags = fragmentMessage({ header, innerFirst: PayloadType.IDi, inner, limits, protector: skfProtector(pair.out) });
      const d = Buffer.from(frags[1]!);
      d.writeUInt16BE(99, 34);
      const p = parse(d);
      assert.throws(() => unprotect(pair.in, p.aad, p.body), IntegrityError);
      const e = Buffer.from(frags[0]!);
      e[19]! ^= 0x20; // the R flag
      assert.throws(() => unprotect(pair.in, e.subarray(0, 36), e.subarray(36)), IntegrityError);
    });
  });
}

describe('fragmentMessage edge cases', () => {
  it('an empty inner chain is one fragment', () => {
    const pair = cipherPair(GCM);
    const frags = fragmentMessage({
      header,
      innerFirst: PayloadType.NONE,
      inner: Buffer.alloc(0),
      limits: { maxDatagramSize: 1280, ipVersion: 6, marker: false },
      protector: skfProtector(pair.out),
    });
    assert.equal(frags.length, 1);
    const p = parse(frags[0]!);
    assert.equal(p.total, 1);
    assert.equal(unprotect(pair.in, p.aad, p.body).length, 0);
  });

  it('refuses a datagram size that leaves no room, and a protector that breaks its overhead promise', () => {
    const protector = skfProtector(cipherPair(GCM).out);
    assert.throws(
      () => fragmentMessage({ header, innerFirst: 35, inner: Buffer.alloc(10), limits: { maxDatagramSize: 80, ipVersion: 4, marker: false }, protector }),
      FragmentationError,
    );
    const liar: FragmentProtector = { protect: (_aad, p) => Buffer.concat([p, Buffer.alloc(3)]), overhead: () => 4 };
    assert.throws(
      () => fragmentMessage({ header, innerFirst: 35, inner: Buffer.alloc(10), limits: { maxDatagramSize: 576, ipVersion: 4, marker: false }, protector: liar }),
      FragmentationError,
    );
  });
});

describe('Reassembler', () => {
  const f = (num: number, total: number, text: string, innerFirst = num === 1 ? 35 : 0) => ({
    fragmentNumber: num,
    totalFragments: total,
    innerFirst,
    plaintext: Buffer.from(text),
  });

  it('ignores duplicates and takes the first payload type from fragment 1 only', () => {
    const r = new Reassembler();
    assert.deepEqual(r.add('sa', 5, f(2, 3, 'BB', 47), 0), { status: 'incomplete', received: 1, total: 3 });
    assert.deepEqual(r.add('sa', 5, f(2, 3, 'XX'), 0), { status: 'duplicate' });
    r.add('sa', 5, f(3, 3, 'CC'), 0);
    const done = r.add('sa', 5, f(1, 3, 'AA'), 0);
    assert.deepEqual(done, { status: 'complete', innerFirst: 35, plaintext: Buffer.from('AABBCC'), fragments: 3 });
  });

  it('keeps messages of different SAs and Message IDs apart', () => {
    const r = new Reassembler();
    r.add('sa1', 1, f(1, 2, 'a'), 0);
    r.add('sa2', 1, f(1, 2, 'x'), 0);
    r.add('sa1', 2, f(1, 2, 'p'), 0);
    assert.equal(r.size, 3);
    const done = r.add('sa2', 1, f(2, 2, 'y'), 0);
    assert.equal(done.status === 'complete' && done.plaintext.toString(), 'xy');
    r.discard('sa1');
    assert.equal(r.size, 0);
  });

  it('restarts on a higher Total Fragments and drops a fragment with a lower one', () => {
    const r = new Reassembler();
    r.add('sa', 1, f(1, 2, 'old1'), 0);
    assert.deepEqual(r.add('sa', 1, f(2, 3, 'n2'), 10), { status: 'incomplete', received: 1, total: 3 });
    assert.deepEqual(r.add('sa', 1, f(2, 2, 'old2'), 11), { status: 'rejected', reason: 'stale-total' });
    r.add('sa', 1, f(1, 3, 'n1'), 12);
    const done = r.add('sa', 1, f(3, 3, 'n3'), 13);
    assert.equal(done.status === 'complete' && done.plaintext.toString(), 'n1n2n3');
  });

  it('rejects bad numbers and too many fragments without keeping state', () => {
    const r = new Reassembler({ maxFragments: 64, maxBytes: 65536, timeoutMs: 1000, maxPending: 8 });
    assert.deepEqual(r.add('sa', 1, f(0, 2, 'x'), 0), { status: 'rejected', reason: 'bad-number' });
    assert.deepEqual(r.add('sa', 1, f(3, 2, 'x'), 0), { status: 'rejected', reason: 'bad-number' });
    assert.deepEqual(r.add('sa', 1, f(1, 0, 'x'), 0), { status: 'rejected', reason: 'bad-number' });
    assert.deepEqual(r.add('sa', 1, f(1, 65, 'x'), 0), { status: 'rejected', reason: 'too-many-fragments' });
    assert.equal(r.add('sa', 1, f(64, 64, 'x'), 0).status, 'incomplete');
    assert.equal(r.size, 1);
  });

  it('drops a message whose fragments exceed the size cap', () => {
    const r = new Reassembler({ maxFragments: 64, maxBytes: 1000, timeoutMs: 1000, maxPending: 8 });
    assert.equal(r.add('sa', 1, f(1, 3, 'a'.repeat(600)), 0).status, 'incomplete');
    assert.deepEqual(r.add('sa', 1, f(2, 3, 'b'.repeat(401)), 0), { status: 'rejected', reason: 'too-large' });
    assert.equal(r.size, 0);
    // A new attempt starts from scratch.
    assert.deepEqual(r.add('sa', 1, f(3, 3, 'c'), 0), { status: 'incomplete', received: 1, total: 3 });
    assert.deepEqual(r.add('sa', 2, f(1, 1, 'z'.repeat(1001)), 0), { status: 'rejected', reason: 'too-large' });
  });

  it('the 64 KiB default cap holds across 64 fragments', () => {
    const r = new Reassembler();
    const chunk = 'q'.repeat(1024);
    let last;
    for (let i = 1; i <= 64; i++) last = r.add('sa', 9, f(i, 64, chunk), 0);
    assert.equal(last?.status, 'complete');
    for (let i = 1; i <= 63; i++) r.add('sa', 10, f(i, 64, chunk), 0);
    assert.deepEqual(r.add('sa', 10, f(64, 64, chunk + 'x'), 0), { status: 'rejected', reason: 'too-large' });
  });

  it('times out incomplete messages', () => {
    const r = new Reassembler({ maxFragments: 64, maxBytes: 65536, timeoutMs: 1000, maxPending: 8 });
    r.add('sa', 1, f(1, 2, 'a'), 100);
    r.add('sa', 2, f(1, 2, 'a'), 500);
    assert.equal(r.nextExpiry(), 1100);
    assert.deepEqual(r.expire(1099), []);
    assert.deepEqual(r.expire(1100), [{ sa: 'sa', messageId: 1 }]);
    // Fragment 2 of the expired message starts a new, incomplete reassembly.
    assert.deepEqual(r.add('sa', 1, f(2, 2, 'b'), 1200), { status: 'incomplete', received: 1, total: 2 });
    assert.equal(r.nextExpiry(), 1500);
  });

  it('bounds the number of messages in reassembly, dropping the oldest', () => {
    const r = new Reassembler({ maxFragments: 64, maxBytes: 65536, timeoutMs: 1000, maxPending: 2 });
    r.add('a', 1, f(1, 2, 'a'), 0);
    r.add('b', 1, f(1, 2, 'b'), 1);
    r.add('c', 1, f(1, 2, 'c'), 2);
    assert.equal(r.size, 2);
    assert.deepEqual(r.add('a', 1, f(2, 2, 'x'), 3), { status: 'incomplete', received: 1, total: 2 });
  });

  it('validates its configuration', () => {
    const ok: ReassemblyConfig = { maxFragments: 64, maxBytes: 65536, timeoutMs: 1000, maxPending: 8 };
    assert.throws(() => new Reassembler({ ...ok, maxFragments: 0 }), RangeError);
    assert.throws(() => new Reassembler({ ...ok, maxFragments: 70000 }), RangeError);
    assert.throws(() => new Reassembler({ ...ok, maxPending: 0 }), RangeError);
  });
});
