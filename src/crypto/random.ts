/**
 * The one place the crypto layer gets random octets from.
 *
 * Everything that needs randomness (IVs, nonces, SPIs, key material) takes a
 * `RandomSource` so that the sans-I/O core and its tests can run
 * deterministically: a simulation injects `deterministicRandom(seed)` and
 * replays the exact same bytes. Production code uses `systemRandom`, which is
 * node's CSPRNG.
 */
import { createHash, randomBytes as nodeRandomBytes } from 'node:crypto';

export interface RandomSource {
  /** Returns `length` fresh octets. */
  bytes(length: number): Buffer;
}

/** node:crypto's CSPRNG. The only source to use outside tests and simulations. */
export const systemRandom: RandomSource = Object.freeze({
  bytes(length: number): Buffer {
    return nodeRandomBytes(length);
  },
});

/**
 * A reproducible stream: SHA-256(seed | counter) blocks. NOT for production —
 * anyone who knows the seed knows every output. Exists so tests and the
 * simulator can replay a run octet for octet.
 */
export function deterministicRandom(seed: string | Buffer): RandomSource {
  const seedBytes = typeof seed === 'string' ? Buffer.from(seed, 'utf8') : Buffer.from(seed);
  let counter = 0;
  let pool = Buffer.alloc(0);
  return {
    bytes(length: number): Buffer {
      while (pool.length < length) {
        const ctr = Buffer.alloc(8);
        ctr.writeBigUInt64BE(BigInt(counter++));
        pool = Buffer.concat([pool, createHash('sha256').update(seedBytes).update(ctr).digest()]);
      }
      const out = pool.subarray(0, length);
      pool = pool.subarray(length);
      return Buffer.from(out);
    },
  };
}

let current: RandomSource = systemRandom;

/**
 * Replaces the process-wide default source (used when a caller passes no
 * explicit source) and returns a function that restores the previous one.
 * Meant for tests; code that can take a `RandomSource` parameter should.
 */
export function setDefaultRandom(source: RandomSource): () => void {
  const previous = current;
  current = source;
  return () => {
    current = previous;
  };
}

/** The current default source (system CSPRNG unless a test replaced it). */
export function defaultRandom(): RandomSource {
  return current;
}

/** `length` octets from the current default source. */
export function randomBytes(length: number): Buffer {
  return current.bytes(length);
}
