/**
 * A small seeded mutation engine for the wire and pcap fuzzers: a fast PRNG
 * and structure-aware byte mutations (truncation, bit flips, overwrites,
 * length-field and payload-type corruption, insertion/duplication/deletion of
 * ranges, splicing two seeds). Deterministic for a given seed.
 */

/** sfc32: small, fast, good enough for fuzzing, seeded from one 32-bit value. */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d = 1;

  constructor(readonly seed: number) {
    this.a = seed >>> 0;
    this.b = 0x9e3779b9;
    this.c = 0x243f6a88;
    for (let i = 0; i < 15; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : this.u32() % n;
  }
  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
}

/** The seed: FUZZ_SEED if set (decimal or 0x hex), else random. */
export function fuzzSeed(): number {
  const env = process.env['FUZZ_SEED'];
  if (env !== undefined && env !== '') {
    const v = Number(env);
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`FUZZ_SEED must be a 32-bit unsigned integer, got ${env}`);
    return v;
  }
  return (Math.random() * 0x1_0000_0000) >>> 0;
}

export function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${v}`);
  return n;
}

/** Where a seed's length and type fields are, so mutations can aim at them. */
export interface SeedLayout {
  /** Offsets of 16-bit (size 2) and 32-bit (size 4) length fields. */
  readonly lengths: readonly { readonly at: number; readonly size: 2 | 4 }[];
  /** Offsets of Next Payload octets (the critical-flag octet follows each). */
  readonly nextPayloads: readonly number[];
}

export interface Seed {
  readonly name: string;
  readonly bytes: Buffer;
  readonly layout: SeedLayout;
}

/**
 * Finds length fields: exactly for the IKE header and the generic payload
 * headers of the chain, heuristically inside payloads (any 16-bit value that
 * could be the length of a substructure starting two octets before it).
 */
export function layoutOf(bytes: Buffer, chainStart: number): SeedLayout {
  const lengths: { at: number; size: 2 | 4 }[] = [];
  const nextPayloads: number[] = [];
  if (chainStart === 28 && bytes.length >= 28) {
    lengths.push({ at: 24, size: 4 });
    nextPayloads.push(16);
  }
  const exact = new Set<number>();
  let at = chainStart;
  while (at + 4 <= bytes.length) {
    if (at !== chainStart) nextPayloads.push(at);
    exact.add(at + 2);
    lengths.push({ at: at + 2, size: 2 });
    const len = bytes.readUInt16BE(at + 2);
    if (len < 4) break;
    at += len;
  }
  for (let p = chainStart + 2; p + 2 <= bytes.length; p++) {
    if (exact.has(p)) continue;
    const v = bytes.readUInt16BE(p);
    if (v >= 4 && v <= 0x4000 && p - 2 + v <= bytes.length) lengths.push({ at: p, size: 2 });
  }
  return { lengths, nextPayloads };
}

const INTERESTING_TYPES = [0, 1, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 127, 128, 200, 255];

export type MutationName =
  | 'truncate'
  | 'bitflip'
  | 'overwrite'
  | 'length'
  | 'payload-type'
  | 'critical-bit'
  | 'duplicate'
  | 'insert-random'
  | 'delete'
  | 'splice';

/** Applies 1-3 random mutations; returns the new bytes and what was done. */
export function mutate(rng: Prng, seed: Seed, others: readonly Seed[]): { bytes: Buffer; ops: string[] } {
  let b: Buffer = Buffer.from(seed.bytes);
  const ops: string[] = [];
  const n = rng.chance(0.6) ? 1 : rng.range(2, 3);
  for (let i = 0; i < n; i++) {
    const r = mutateOnce(rng, b, seed.layout, others);
    b = r.bytes;
    ops.push(r.op);
  }
  return { bytes: b, ops };
}

function mutateOnce(rng: Prng, b: Buffer, layout: SeedLayout, others: readonly Seed[]): { bytes: Buffer; op: string } {
  const len = b.length;
  const kind = rng.pick<MutationName>([
    'truncate',
    'bitflip',
    'bitflip',
    'overwrite',
    'length',
    'length',
    'length',
    'payload-type',
    'payload-type',
    'critical-bit',
    'duplicate',
    'insert-random',
    'delete',
    'splice',
  ]);
  switch (kind) {
    case 'truncate': {
      const to = rng.int(len + 1);
      return { bytes: b.subarray(0, to), op: `truncate@${to}` };
    }
    case 'bitflip': {
      if (len === 0) break;
      const flips = rng.range(1, 8);
      for (let i = 0; i < flips; i++) b[rng.int(len)]! ^= 1 << rng.int(8);
      return { bytes: b, op: `bitflip x${flips}` };
    }
    case 'overwrite': {
      if (len === 0) break;
      const count = rng.range(1, 4);
      for (let i = 0; i < count; i++) b[rng.int(len)] = rng.pick([0, 0xff, 0x7f, 0x80, 1, rng.int(256)]);
      return { bytes: b, op: `overwrite x${count}` };
    }
    case 'length': {
      const fields = layout.lengths.filter((f) => f.at + f.size <= len);
      if (fields.length === 0) break;
      const f = rng.pick(fields);
      const old = f.size === 2 ? b.readUInt16BE(f.at) : b.readUInt32BE(f.at);
      const max = f.size === 2 ? 0xffff : 0xffffffff;
      const v = rng.pick([0, rng.range(1, 3), rng.range(4, 8), max, max - rng.int(16), old - 1, old + 1, old - 4, old + 4, old * 2, rng.int(max + 1)]);
      const clamped = Math.min(max, Math.max(0, v));
      if (f.size === 2) b.writeUInt16BE(clamped, f.at);
      else b.writeUInt32BE(clamped, f.at);
      return { bytes: b, op: `length@${f.at}:${old}->${clamped}` };
    }
    case 'payload-type': {
      const at = layout.nextPayloads.filter((p) => p < len);
      if (at.length === 0) break;
      const p = rng.pick(at);
      const v = rng.chance(0.7) ? rng.pick(INTERESTING_TYPES) : rng.int(256);
      b[p] = v;
      return { bytes: b, op: `next-payload@${p}=${v}` };
    }
    case 'critical-bit': {
      const at = layout.nextPayloads.filter((p) => p > 16 && p + 1 < len);
      if (at.length === 0) break;
      const p = rng.pick(at) + 1;
      b[p]! ^= 0x80;
      return { bytes: b, op: `critical@${p}` };
    }
    case 'duplicate': {
      if (len === 0) break;
      const from = rng.int(len);
      const size = Math.min(len - from, rng.range(1, 64));
      const to = rng.int(len + 1);
      const chunk = b.subarray(from, from + size);
      return { bytes: Buffer.concat([b.subarray(0, to), chunk, b.subarray(to)]), op: `dup ${from}+${size}@${to}` };
    }
    case 'insert-random': {
      const to = rng.int(len + 1);
      const size = rng.range(1, 16);
      const chunk = Buffer.alloc(size);
      for (let i = 0; i < size; i++) chunk[i] = rng.int(256);
      return { bytes: Buffer.concat([b.subarray(0, to), chunk, b.subarray(to)]), op: `insert ${size}@${to}` };
    }
    case 'delete': {
      if (len === 0) break;
      const from = rng.int(len);
      const size = Math.min(len - from, rng.range(1, 32));
      return { bytes: Buffer.concat([b.subarray(0, from), b.subarray(from + size)]), op: `delete ${from}+${size}` };
    }
    case 'splice': {
      const other = rng.pick(others).bytes;
      const cut = rng.int(len + 1);
      const from = rng.int(other.length + 1);
      return { bytes: Buffer.concat([b.subarray(0, cut), other.subarray(from)]), op: `splice ${cut}|${from}` };
    }
  }
  // Nothing applicable (empty input): grow it instead.
  return { bytes: Buffer.concat([b, Buffer.from([rng.int(256)])]), op: 'append' };
}

/** Memory in use, for "no excessive allocation" checks. */
export function memorySnapshot(): { heapUsed: number; arrayBuffers: number } {
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers };
}
