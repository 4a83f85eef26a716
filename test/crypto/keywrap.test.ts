import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { KwaId } from '../../src/wire/iana.ts';
import {
  KeyUnwrapError,
  KeyWrapError,
  isSupportedKwa,
  kwaKeyLength,
  unwrapKey,
  wrapKey,
  wrappedLength,
} from '../../src/crypto/keywrap.ts';
import { deterministicRandom } from '../../src/crypto/random.ts';

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const KWAS = [KwaId.KW_5649_128, KwaId.KW_5649_192, KwaId.KW_5649_256, KwaId.KW_ARX];

function unwrapFails(fn: () => unknown): void {
  assert.throws(fn, (e: unknown) => e instanceof KeyUnwrapError);
}

// RFC 5649 Section 6: both examples use this 192-bit KEK.
const RFC5649_KEK = h('5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8');

test('RFC 5649 Section 6: 20 octets of key data with a 192-bit KEK', () => {
  const key = h('c37b7e6492584340 bed1220780894115 5068f738');
  const wrapped = h('138bdeaa9b8fa7fc 61f97742e72248ee 5ae6ae5360d1ae6a 5f54f373fa543b6a');
  assert.deepEqual(wrapKey(KwaId.KW_5649_192, RFC5649_KEK, key), wrapped);
  assert.deepEqual(unwrapKey(KwaId.KW_5649_192, RFC5649_KEK, wrapped), key);
});

test('RFC 5649 Section 6: 7 octets of key data with a 192-bit KEK', () => {
  const key = h('466f7250617369');
  const wrapped = h('afbeb0f07dfbf541 9200f2ccb50bb24f');
  assert.deepEqual(wrapKey(KwaId.KW_5649_192, RFC5649_KEK, key), wrapped);
  assert.deepEqual(unwrapKey(KwaId.KW_5649_192, RFC5649_KEK, wrapped), key);
});

test('ARX-KW-8-2-4-GX vector (ePrint 2020/059, NOTES.md): T | C, and back', () => {
  // Also the 8-round check of the ChaCha/HChaCha code: K1|K2 come from ChaCha8,
  // C from XChaCha8 (HChaCha8 subkey), T from SipHash-2-4-128.
  const kek = Buffer.from([...Array(32).keys()]);
  const key = h('deadbeef'.repeat(8));
  const t = '016325cf6a3c4b2e3b039675e1ccbc65';
  const c = '2f83f391c97f3606ccd5709c6ee15d66cd7e65a2aeb7dc3066636e8f6b0d39c3';
  assert.equal(wrapKey(KwaId.KW_ARX, kek, key).toString('hex'), t + c);
  assert.deepEqual(unwrapKey(KwaId.KW_ARX, kek, h(t + c)), key);
});

test('KEK lengths and support', () => {
  assert.deepEqual(KWAS.map(kwaKeyLength), [16, 24, 32, 32]);
  assert.equal(isSupportedKwa(5), false);
  assert.throws(() => kwaKeyLength(5), (e: unknown) => e instanceof KeyWrapError && e.kind === 'unsupported');
  for (const kwa of KWAS) {
    assert.throws(
      () => wrapKey(kwa, Buffer.alloc(kwaKeyLength(kwa) - 1), Buffer.alloc(16)),
      (e: unknown) => e instanceof KeyWrapError && e.kind === 'bad-kek-length',
    );
    assert.throws(
      () => unwrapKey(kwa, Buffer.alloc(kwaKeyLength(kwa) + 1), Buffer.alloc(24)),
      (e: unknown) => e instanceof KeyWrapError && e.kind === 'bad-kek-length',
    );
    assert.throws(
      () => wrapKey(kwa, Buffer.alloc(kwaKeyLength(kwa)), Buffer.alloc(0)),
      (e: unknown) => e instanceof KeyWrapError && e.kind === 'bad-input',
    );
  }
});

test('property: every KWA round-trips keys of 1..80 octets; wrappedLength predicts the size', () => {
  for (const kwa of KWAS) {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: kwaKeyLength(kwa), maxLength: kwaKeyLength(kwa) }),
        fc.uint8Array({ minLength: 1, maxLength: 80 }),
        (kek, key) => {
          const wrapped = wrapKey(kwa, kek, key);
          assert.equal(wrapped.length, wrappedLength(kwa, key.length));
          assert.deepEqual(unwrapKey(kwa, kek, wrapped), Buffer.from(key));
        },
      ),
      { numRuns: 60 },
    );
  }
});

test('every single-bit modification of a wrapped key fails to unwrap', () => {
  const rng = deterministicRandom('keywrap tamper');
  for (const kwa of KWAS) {
    const kek = rng.bytes(kwaKeyLength(kwa));
    for (const keyLength of [7, 16, 32, 36]) {
      const wrapped = wrapKey(kwa, kek, rng.bytes(keyLength));
      for (let i = 0; i < wrapped.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const bad = Buffer.from(wrapped);
          bad[i] = (bad[i] ?? 0) ^ (1 << bit);
          unwrapFails(() => unwrapKey(kwa, kek, bad));
        }
      }
    }
  }
});

test('truncated, extended, empty or foreign wrapped keys fail to unwrap', () => {
  const rng = deterministicRandom('keywrap shape');
  for (const kwa of KWAS) {
    const kek = rng.bytes(kwaKeyLength(kwa));
    const wrapped = wrapKey(kwa, kek, rng.bytes(32));
    unwrapFails(() => unwrapKey(kwa, kek, wrapped.subarray(0, wrapped.length - 1)));
    unwrapFails(() => unwrapKey(kwa, kek, wrapped.subarray(0, wrapped.length - 8)));
    unwrapFails(() => unwrapKey(kwa, kek, Buffer.concat([wrapped, Buffer.alloc(8)])));
    unwrapFails(() => unwrapKey(kwa, kek, Buffer.concat([wrapped, Buffer.of(0)])));
    unwrapFails(() => unwrapKey(kwa, kek, Buffer.alloc(0)));
    unwrapFails(() => unwrapKey(kwa, kek, Buffer.alloc(16)));
    unwrapFails(() => unwrapKey(kwa, rng.bytes(kwaKeyLength(kwa)), wrapped));
  }
  // A key wrapped with one KWA does not unwrap as another of the same KEK size.
  const kek32 = rng.bytes(32);
  unwrapFails(() => unwrapKey(KwaId.KW_ARX, kek32, wrapKey(KwaId.KW_5649_256, kek32, rng.bytes(32))));
  unwrapFails(() => unwrapKey(KwaId.KW_5649_256, kek32, wrapKey(KwaId.KW_ARX, kek32, rng.bytes(32))));
});
