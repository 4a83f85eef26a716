import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { PrfId } from '../../src/wire/iana.ts';
import {
  PRF_PLUS_MAX_ITERATIONS,
  PrfError,
  isSupportedPrf,
  prf,
  prfOutputLength,
  prfPlus,
} from '../../src/crypto/prf.ts';

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('HMAC-SHA2 PRFs match RFC 4231 test cases 1 and 2', () => {
  // RFC 4231 Section 4.2 (test case 1) and 4.3 (test case 2).
  const tc1 = { key: Buffer.alloc(20, 0x0b), data: Buffer.from('Hi There') };
  const tc2 = { key: Buffer.from('Jefe'), data: Buffer.from('what do ya want for nothing?') };
  const cases: [number, typeof tc1, string][] = [
    [PrfId.HMAC_SHA2_256, tc1, 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7'],
    [
      PrfId.HMAC_SHA2_384,
      tc1,
      'afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6',
    ],
    [
      PrfId.HMAC_SHA2_512,
      tc1,
      '87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854',
    ],
    [PrfId.HMAC_SHA2_256, tc2, '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'],
    [
      PrfId.HMAC_SHA2_384,
      tc2,
      'af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649',
    ],
    [
      PrfId.HMAC_SHA2_512,
      tc2,
      '164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737',
    ],
  ];
  for (const [id, tc, want] of cases) {
    assert.equal(prf(id, tc.key, tc.data).toString('hex'), want);
  }
});

test('HMAC-SHA1 PRF matches RFC 2202 test case 1', () => {
  // RFC 2202 Section 3, test_case 1.
  assert.equal(
    prf(PrfId.HMAC_SHA1, Buffer.alloc(20, 0x0b), Buffer.from('Hi There')).toString('hex'),
    'b617318655057264e28bc0b6fb378c8ef146be00',
  );
});

test('prf concatenates its data arguments', () => {
  const key = h('0102');
  assert.deepEqual(prf(PrfId.HMAC_SHA2_256, key, h('aa'), h('bbcc')), prf(PrfId.HMAC_SHA2_256, key, h('aabbcc')));
});

test('output lengths and support table', () => {
  assert.equal(prfOutputLength(PrfId.HMAC_SHA1), 20);
  assert.equal(prfOutputLength(PrfId.HMAC_SHA2_256), 32);
  assert.equal(prfOutputLength(PrfId.HMAC_SHA2_384), 48);
  assert.equal(prfOutputLength(PrfId.HMAC_SHA2_512), 64);
  assert.equal(isSupportedPrf(PrfId.HMAC_MD5), false);
  assert.throws(() => prf(PrfId.HMAC_MD5, h('00'), h('00')), (e: unknown) => e instanceof PrfError && e.kind === 'unsupported');
});

/** prf+ written out from RFC 7296 2.13 with raw node HMAC, independently of the module. */
function prfPlusByHand(hash: string, key: Buffer, seed: Buffer, length: number): Buffer {
  const blocks: Buffer[] = [];
  let t = Buffer.alloc(0);
  for (let n = 1; Buffer.concat(blocks).length < length; n++) {
    t = createHmac(hash, key).update(Buffer.concat([t, seed, Buffer.from([n])])).digest();
    blocks.push(t);
  }
  return Buffer.concat(blocks).subarray(0, length);
}

test('prf+ follows T1 = prf(K, S|0x01), Tn = prf(K, Tn-1|S|n)', () => {
  const key = h('000102030405060708090a0b0c0d0e0f');
  const seed = Buffer.from('some seed');
  const t1 = createHmac('sha256', key).update(Buffer.concat([seed, Buffer.of(1)])).digest();
  const t2 = createHmac('sha256', key).update(Buffer.concat([t1, seed, Buffer.of(2)])).digest();
  const t3 = createHmac('sha256', key).update(Buffer.concat([t2, seed, Buffer.of(3)])).digest();
  assert.deepEqual(prfPlus(PrfId.HMAC_SHA2_256, key, seed, 80), Buffer.concat([t1, t2, t3]).subarray(0, 80));
  assert.deepEqual(prfPlus(PrfId.HMAC_SHA1, key, seed, 50), prfPlusByHand('sha1', key, seed, 50));
  assert.equal(prfPlus(PrfId.HMAC_SHA2_512, key, seed, 0).length, 0);
});

test('prf+ allows 255 iterations and refuses the 256th', () => {
  const key = h('01');
  const max = PRF_PLUS_MAX_ITERATIONS * 32;
  const out = prfPlus(PrfId.HMAC_SHA2_256, key, h('02'), max);
  assert.equal(out.length, max);
  assert.deepEqual(out, prfPlusByHand('sha256', key, h('02'), max));
  assert.throws(
    () => prfPlus(PrfId.HMAC_SHA2_256, key, h('02'), max + 1),
    (e: unknown) => e instanceof PrfError && e.kind === 'too-long',
  );
});

test('property: prf+ equals the by-hand construction and shorter outputs are prefixes', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 80 }),
      fc.uint8Array({ maxLength: 100 }),
      fc.integer({ min: 0, max: 400 }),
      fc.integer({ min: 0, max: 400 }),
      (key, seed, a, b) => {
        const long = prfPlus(PrfId.HMAC_SHA2_384, key, seed, Math.max(a, b));
        const short = prfPlus(PrfId.HMAC_SHA2_384, key, seed, Math.min(a, b));
        assert.deepEqual(short, long.subarray(0, short.length));
        assert.deepEqual(long, prfPlusByHand('sha384', Buffer.from(key), Buffer.from(seed), long.length));
      },
    ),
    { numRuns: 50 },
  );
});
