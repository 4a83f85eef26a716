import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultRandom, deterministicRandom, randomBytes, setDefaultRandom, systemRandom } from '../../src/crypto/random.ts';

test('deterministicRandom replays the same stream for the same seed, regardless of chunking', () => {
  const a = deterministicRandom('seed');
  const b = deterministicRandom('seed');
  const whole = a.bytes(100);
  const parts = Buffer.concat([b.bytes(1), b.bytes(31), b.bytes(33), b.bytes(35)]);
  assert.deepEqual(parts, whole);
  assert.notDeepEqual(deterministicRandom('other').bytes(100), whole);
});

test('setDefaultRandom swaps the source used by randomBytes and restores it', () => {
  assert.equal(defaultRandom(), systemRandom);
  const restore = setDefaultRandom(deterministicRandom('x'));
  try {
    assert.deepEqual(randomBytes(16), deterministicRandom('x').bytes(16));
  } finally {
    restore();
  }
  assert.equal(defaultRandom(), systemRandom);
  assert.equal(randomBytes(32).length, 32);
  assert.notDeepEqual(randomBytes(32), randomBytes(32));
});
