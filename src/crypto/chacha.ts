/**
 * The ChaCha permutation with a caller-chosen round count, HChaCha and an
 * XChaCha keystream — only what KW_ARX (ARX-KW-8-2-4-GX) needs with 8 rounds.
 * node:crypto offers ChaCha20 only, hence this small implementation. The same
 * code run with 20 rounds is checked against RFC 8439, which is what gives
 * confidence in the 8-round use.
 */

/** "expand 32-byte k" as four little-endian words. */
const SIGMA = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574] as const;

function rotl(v: number, n: number): number {
  return ((v << n) | (v >>> (32 - n))) >>> 0;
}

function quarterRound(x: Uint32Array, a: number, b: number, c: number, d: number): void {
  let xa = x[a] ?? 0;
  let xb = x[b] ?? 0;
  let xc = x[c] ?? 0;
  let xd = x[d] ?? 0;
  xa = (xa + xb) >>> 0;
  xd = rotl(xd ^ xa, 16);
  xc = (xc + xd) >>> 0;
  xb = rotl(xb ^ xc, 12);
  xa = (xa + xb) >>> 0;
  xd = rotl(xd ^ xa, 8);
  xc = (xc + xd) >>> 0;
  xb = rotl(xb ^ xc, 7);
  x[a] = xa;
  x[b] = xb;
  x[c] = xc;
  x[d] = xd;
}

/** Applies `rounds` rounds (column + diagonal = 2 rounds) to a copy of `state`. */
function permute(state: Uint32Array, rounds: number): Uint32Array {
  if (rounds <= 0 || rounds % 2 !== 0) throw new RangeError('ChaCha round count must be a positive even number');
  const x = Uint32Array.from(state);
  for (let i = 0; i < rounds; i += 2) {
    quarterRound(x, 0, 4, 8, 12);
    quarterRound(x, 1, 5, 9, 13);
    quarterRound(x, 2, 6, 10, 14);
    quarterRound(x, 3, 7, 11, 15);
    quarterRound(x, 0, 5, 10, 15);
    quarterRound(x, 1, 6, 11, 12);
    quarterRound(x, 2, 7, 8, 13);
    quarterRound(x, 3, 4, 9, 14);
  }
  return x;
}

function initialState(key: Uint8Array, words12to15: Uint8Array): Uint32Array {
  if (key.length !== 32) throw new RangeError('ChaCha key must be 32 octets');
  if (words12to15.length !== 16) throw new RangeError('ChaCha counter|nonce block must be 16 octets');
  const s = new Uint32Array(16);
  s.set(SIGMA, 0);
  const k = Buffer.from(key.buffer, key.byteOffset, key.length);
  for (let i = 0; i < 8; i++) s[4 + i] = k.readUInt32LE(4 * i);
  const n = Buffer.from(words12to15.buffer, words12to15.byteOffset, words12to15.length);
  for (let i = 0; i < 4; i++) s[12 + i] = n.readUInt32LE(4 * i);
  return s;
}

/**
 * One 64-octet keystream block, RFC 8439 layout: 32-bit block counter and a
 * 12-octet nonce. With counter < 2^32 this equals the original 64-bit-counter,
 * 8-octet-nonce layout when the nonce is prefixed with 4 zero octets.
 */
export function chachaBlock(key: Uint8Array, counter: number, nonce: Uint8Array, rounds: number): Buffer {
  if (nonce.length !== 12) throw new RangeError('ChaCha nonce must be 12 octets');
  if (!Number.isInteger(counter) || counter < 0 || counter > 0xffffffff) throw new RangeError('bad block counter');
  const tail = Buffer.alloc(16);
  tail.writeUInt32LE(counter, 0);
  Buffer.from(nonce).copy(tail, 4);
  const input = initialState(key, tail);
  const x = permute(input, rounds);
  const out = Buffer.alloc(64);
  for (let i = 0; i < 16; i++) out.writeUInt32LE(((x[i] ?? 0) + (input[i] ?? 0)) >>> 0, 4 * i);
  return out;
}

/** `length` octets of keystream starting at block `counter`. */
export function chachaKeystream(
  key: Uint8Array,
  nonce: Uint8Array,
  length: number,
  rounds: number,
  counter = 0,
): Buffer {
  const blocks = Math.ceil(length / 64);
  const out = Buffer.alloc(blocks * 64);
  for (let i = 0; i < blocks; i++) chachaBlock(key, counter + i, nonce, rounds).copy(out, 64 * i);
  return out.subarray(0, length);
}

/**
 * HChaCha (the XChaCha subkey derivation): the permutation of
 * (constants, key, 16-octet nonce) WITHOUT the feed-forward addition; the
 * output is words 0..3 and 12..15.
 */
export function hchacha(key: Uint8Array, nonce16: Uint8Array, rounds: number): Buffer {
  const x = permute(initialState(key, nonce16), rounds);
  const out = Buffer.alloc(32);
  for (let i = 0; i < 4; i++) {
    out.writeUInt32LE(x[i] ?? 0, 4 * i);
    out.writeUInt32LE(x[12 + i] ?? 0, 16 + 4 * i);
  }
  return out;
}

/**
 * XChaCha keystream for a 24-octet nonce: subkey = HChaCha(key, nonce[0..16]),
 * then ChaCha(subkey) with counter 0 and nonce 0^4 | nonce[16..24].
 */
export function xchachaKeystream(key: Uint8Array, nonce24: Uint8Array, length: number, rounds: number): Buffer {
  if (nonce24.length !== 24) throw new RangeError('XChaCha nonce must be 24 octets');
  const subkey = hchacha(key, nonce24.subarray(0, 16), rounds);
  const nonce = Buffer.concat([Buffer.alloc(4), nonce24.subarray(16, 24)]);
  return chachaKeystream(subkey, nonce, length, rounds);
}

/** XORs `data` with the XChaCha keystream (encryption and decryption alike). */
export function xchachaXor(key: Uint8Array, nonce24: Uint8Array, data: Uint8Array, rounds: number): Buffer {
  const ks = xchachaKeystream(key, nonce24, data.length, rounds);
  const out = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) out[i] = (data[i] ?? 0) ^ (ks[i] ?? 0);
  return out;
}
