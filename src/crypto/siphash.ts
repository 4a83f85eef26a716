/**
 * SipHash-2-4 (Aumasson & Bernstein) with 64- or 128-bit output, as in the
 * reference implementation (github.com/veorq/SipHash). KW_ARX uses the 128-bit
 * variant as its authentication tag. BigInt keeps the 64-bit arithmetic
 * obviously right; inputs are a few dozen octets of key material, so speed
 * does not matter here.
 */

const MASK = (1n << 64n) - 1n;

function rotl(v: bigint, n: bigint): bigint {
  return ((v << n) | (v >> (64n - n))) & MASK;
}

function readLE64(b: Buffer, offset: number): bigint {
  return b.readBigUInt64LE(offset);
}

/** SipHash-2-4 of `message` under a 16-octet key; `outputLength` 8 or 16 octets. */
export function siphash24(key: Uint8Array, message: Uint8Array, outputLength: 8 | 16 = 8): Buffer {
  if (key.length !== 16) throw new RangeError('SipHash key must be 16 octets');
  const k = Buffer.from(key);
  const k0 = readLE64(k, 0);
  const k1 = readLE64(k, 8);
  let v0 = 0x736f6d6570736575n ^ k0;
  let v1 = 0x646f72616e646f6dn ^ k1;
  let v2 = 0x6c7967656e657261n ^ k0;
  let v3 = 0x7465646279746573n ^ k1;
  if (outputLength === 16) v1 ^= 0xeen;

  const round = (): void => {
    v0 = (v0 + v1) & MASK;
    v1 = rotl(v1, 13n);
    v1 ^= v0;
    v0 = rotl(v0, 32n);
    v2 = (v2 + v3) & MASK;
    v3 = rotl(v3, 16n);
    v3 ^= v2;
    v0 = (v0 + v3) & MASK;
    v3 = rotl(v3, 21n);
    v3 ^= v0;
    v2 = (v2 + v1) & MASK;
    v1 = rotl(v1, 17n);
    v1 ^= v2;
    v2 = rotl(v2, 32n);
  };
  const compress = (m: bigint): void => {
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  };

  const msg = Buffer.from(message);
  const fullBlocks = Math.floor(msg.length / 8);
  for (let i = 0; i < fullBlocks; i++) compress(readLE64(msg, 8 * i));
  // Last block: remaining octets little-endian, message length mod 256 in the top octet.
  const last = Buffer.alloc(8);
  msg.copy(last, 0, 8 * fullBlocks);
  last[7] = msg.length & 0xff;
  compress(readLE64(last, 0));

  v2 ^= outputLength === 16 ? 0xeen : 0xffn;
  for (let i = 0; i < 4; i++) round();
  const out = Buffer.alloc(outputLength);
  out.writeBigUInt64LE(v0 ^ v1 ^ v2 ^ v3, 0);
  if (outputLength === 16) {
    v1 ^= 0xddn;
    for (let i = 0; i < 4; i++) round();
    out.writeBigUInt64LE(v0 ^ v1 ^ v2 ^ v3, 8);
  }
  return out;
}
