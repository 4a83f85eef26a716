/**
 * The one place the crypto layer gets random octets from.
 *
 * Everything that needs randomness (IVs, nonces, SPIs, key material) takes a
 * `RandomSource` so that the sans-I/O core and its tests can run
 * deterministically: a simulation injects `deterministicRandom(seed)` and
 * replays the exact same bytes. Production code uses `systemRandom`, which is
 * node's CSPRNG.
 */
import { createHash, randomBytes as nodeRandomBytes, randomFillSync } from 'node:crypto';

export interface RandomSource {
  /** Returns `length` fresh octets. */
  bytes(length: number): Buffer;
}

/*
 * Small requests (SPIs, nonces, IV masks: several per IKE SA) are served from
 * a block refilled 4 KiB at a time: each node:crypto call costs ~4 µs of
 * fixed overhead however few octets it returns, while the bulk fill costs
 * about as much as one small call. Octets handed out are copied and wiped
 * from the block, so no two callers ever see the same octets and none stay
 * behind once used.
 */
const BLOCK_SIZE = 4096;
const BLOCK_MAX_REQUEST = 256;
const block = Buffer.allocUnsafeSlow(BLOCK_SIZE);
let blockOffset = BLOCK_SIZE;

/** node:crypto's CSPRNG. The only source to use outside tests and simulations. */
export const systemRandom: RandomSource = Object.freeze({
  bytes(length: number): Buffer {
    // Large and invalid requests go straight to node (which throws for the latter).
    if (!(Number.isInteger(length) && length >= 0 && length <= BLOCK_MAX_REQUEST)) return nodeRandomBytes(length);
    if (blockOffset + length > BLOCK_SIZE) {
      randomFillSync(block);
      blockOffset = 0;
    }
    const end = blockOffset + length;
    const out = Buffer.from(block.subarray(blockOffset, end));
    block.fill(0, blockOffset, end);
    blockOffset = end;
    return out;
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
