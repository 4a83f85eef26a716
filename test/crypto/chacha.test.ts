import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import fc from 'fast-check';
import { chachaBlock, chachaKeystream, hchacha, xchachaXor } from '../../src/crypto/chacha.ts';

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const KEY = h('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');

test('20 rounds reproduce the RFC 8439 Section 2.3.2 block function vector', () => {
  const block = chachaBlock(KEY, 1, h('000000090000004a00000000'), 20);
  assert.equal(
    block.toString('hex'),
    '10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e' +
      'd2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e',
  );
});

test('20-round HChaCha reproduces draft-irtf-cfrg-xchacha-03 Section 2.2.1', () => {
  assert.equal(
    hchacha(KEY, h('000000090000004a0000000031415927'), 20).toString('hex'),
    '82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc',
  );
});

test('property: 20-round keystream equals node chacha20 (OpenSSL IV = counter LE | nonce)', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ minLength: 12, maxLength: 12 }),
      fc.integer({ min: 0, max: 1000 }),
      fc.integer({ min: 0, max: 300 }),
      (key, nonce, counter, length) => {
        const iv = Buffer.alloc(16);
        iv.writeUInt32LE(counter, 0);
        Buffer.from(nonce).copy(iv, 4);
        const c = createCipheriv('chacha20', key, iv);
        const expected = Buffer.concat([c.update(Buffer.alloc(length)), c.final()]);
        assert.deepEqual(chachaKeystream(key, nonce, length, 20, counter), expected);
      },
    ),
    { numRuns: 50 },
  );
});

test('the round count matters and must be a positive even number', () => {
  const n = Buffer.alloc(12);
  assert.notDeepEqual(chachaBlock(KEY, 0, n, 8), chachaBlock(KEY, 0, n, 20));
  assert.throws(() => chachaBlock(KEY, 0, n, 7), RangeError);
  assert.throws(() => chachaBlock(KEY, 0, n, 0), RangeError);
  assert.throws(() => chachaBlock(KEY.subarray(1), 0, n, 8), RangeError);
  assert.throws(() => chachaBlock(KEY, 0, Buffer.alloc(8), 8), RangeError);
});

test('XChaCha XOR is an involution and depends on every nonce octet', () => {
  const nonce = Buffer.alloc(24, 3);
  const data = Buffer.from('sixty-four octets and then some more to cross a block boundary...');
  const ct = xchachaXor(KEY, nonce, data, 8);
  assert.deepEqual(xchachaXor(KEY, nonce, ct, 8), data);
  for (const i of [0, 15, 16, 23]) {
    const n2 = Buffer.from(nonce);
    n2[i] = (n2[i] ?? 0) ^ 1;
    assert.notDeepEqual(xchachaXor(KEY, n2, data, 8), ct);
  }
});
