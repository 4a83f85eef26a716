/**
 * Compact storage for the LKH key tree (lkh.ts): one row of typed arrays per
 * tree height, so a group of a million members costs a few dozen megabytes
 * (key octets + 8 octets per node) instead of millions of small objects.
 */
import type { RandomSource } from '../crypto/random.ts';

/** Where key IDs come from. Structurally compatible with counters.ts's ReservedCounter. */
export interface KeyIdSource {
  /** The next never-used ID, or undefined once the 32-bit space is exhausted. */
  take(): number | undefined;
}

export const MAX_KEY_ID = 0xffffffff;

/**
 * An in-memory key ID counter from 1 upward (Key ID 0 means SA keying
 * material, RFC 9838 Section 3.3). `reserve(upTo)` is called before any ID
 * up to `upTo` is handed out, in blocks, so a durable store can make a
 * restart resume above every ID that may have been used.
 */
export function keyIdCounter(options: { start?: number; block?: number; reserve?: (upTo: number) => void } = {}): KeyIdSource {
  let next = Math.max(1, options.start ?? 1);
  let reservedTo = next - 1;
  const block = options.block ?? 4096;
  return {
    take(): number | undefined {
      if (next > MAX_KEY_ID) return undefined;
      if (next > reservedTo) {
        reservedTo = Math.min(MAX_KEY_ID, next + block - 1);
        options.reserve?.(reservedTo);
      }
      return next++;
    },
  };
}

/**
 * Fresh node keys drawn from the RandomSource in batches: one call per 128
 * keys keeps building a million-member tree fast while staying reproducible
 * with a deterministic source.
 */
export class NodeKeySource {
  private pool: Buffer = Buffer.alloc(0);
  private offset = 0;

  constructor(
    private readonly random: RandomSource,
    readonly keyLength: number,
    private readonly batch = 128,
  ) {}

  /** Writes one fresh key into `target` at `at`. */
  fill(target: Buffer, at: number): void {
    if (this.offset + this.keyLength > this.pool.length) {
      this.pool.fill(0);
      this.pool = this.random.bytes(this.keyLength * this.batch);
      this.offset = 0;
    }
    this.pool.copy(target, at, this.offset, this.offset + this.keyLength);
    this.pool.fill(0, this.offset, this.offset + this.keyLength);
    this.offset += this.keyLength;
  }
}

/**
 * The nodes of one tree height. A node exists when its ID is non-zero;
 * `members` counts the members in its subtree (1 or 0 for a leaf). Arrays
 * grow geometrically as positions are used, since members fill leaves from
 * the left.
 *
 * Only IDs and keys are persisted (see encodeRowChunk): member counts are
 * derived from the tree's leaves when it is restored, so a join that only
 * fills a leaf rewrites one chunk, not one per tree level.
 */
/** Positions per persisted chunk of a tree row (see LkhTree.takeChangedChunks). */
export const LKH_CHUNK_POSITIONS = 64;

/**
 * Persisted chunk formats. 1 (no marker): IDs, member counts, keys, in
 * n * (8 + keyLength) octets. 2: a format octet, IDs, keys, in
 * 1 + n * (4 + keyLength) octets. The lengths never coincide (one is even,
 * the other odd), so every chunk says which format it is in and a tree
 * written by an older release, or partly rewritten since, still loads.
 */
export const LKH_CHUNK_FORMAT = 2;

export class TreeRow {
  ids: Uint32Array;
  members: Uint32Array;
  keys: Buffer;
  /** Chunks (LKH_CHUNK_POSITIONS positions each) whose IDs or keys changed since they were last taken for persistence. */
  readonly changedChunks = new Set<number>();

  constructor(readonly keyLength: number, initialCapacity = 4) {
    this.ids = new Uint32Array(initialCapacity);
    this.members = new Uint32Array(initialCapacity);
    this.keys = Buffer.alloc(initialCapacity * keyLength);
  }

  get capacity(): number {
    return this.ids.length;
  }

  ensure(pos: number): void {
    if (pos < this.ids.length) return;
    let capacity = this.ids.length;
    while (capacity <= pos) capacity *= 2;
    const ids = new Uint32Array(capacity);
    ids.set(this.ids);
    const members = new Uint32Array(capacity);
    members.set(this.members);
    const keys = Buffer.alloc(capacity * this.keyLength);
    this.keys.copy(keys);
    this.keys.fill(0);
    this.ids = ids;
    this.members = members;
    this.keys = keys;
  }

  idAt(pos: number): number {
    return pos < this.ids.length ? this.ids[pos]! : 0;
  }

  membersAt(pos: number): number {
    return pos < this.members.length ? this.members[pos]! : 0;
  }

  /** A view of the stored key (valid until the row grows); copy before keeping it. */
  keyAt(pos: number): Buffer {
    return this.keys.subarray(pos * this.keyLength, (pos + 1) * this.keyLength);
  }

  /** Records that the node at `pos` changed its ID or key (member counts are not persisted). */
  touch(pos: number): void {
    this.changedChunks.add(Math.floor(pos / LKH_CHUNK_POSITIONS));
  }

  /** Gives the node a new ID and a fresh key, wiping the old key. */
  renew(pos: number, id: number, keys: NodeKeySource): void {
    this.ensure(pos);
    this.touch(pos);
    this.ids[pos] = id;
    keys.fill(this.keys, pos * this.keyLength);
  }

  /** Deletes the node: its ID is retired for good and its key wiped. */
  remove(pos: number): void {
    if (pos >= this.ids.length) return;
    this.touch(pos);
    this.ids[pos] = 0;
    this.members[pos] = 0;
    this.keys.fill(0, pos * this.keyLength, (pos + 1) * this.keyLength);
  }
}

/**
 * One chunk of a row as persisted (format 2): the format octet, then
 * LKH_CHUNK_POSITIONS IDs (32-bit big-endian) and keys. Secret (holds node
 * keys).
 */
export function encodeRowChunk(row: TreeRow, index: number): Buffer {
  const n = LKH_CHUNK_POSITIONS;
  const out = Buffer.alloc(1 + n * (4 + row.keyLength));
  out[0] = LKH_CHUNK_FORMAT;
  const first = index * n;
  for (let i = 0; i < n; i++) out.writeUInt32BE(row.idAt(first + i), 1 + i * 4);
  const end = Math.min(row.capacity, first + n);
  if (end > first) row.keys.copy(out, 1 + n * 4, first * row.keyLength, end * row.keyLength);
  return out;
}

/**
 * Loads a persisted chunk (format 2, or format 1 of older releases) into the
 * row's IDs and keys; member counts are left to the caller (format 1's are
 * ignored). False when the chunk fits neither format for this row.
 */
export function decodeRowChunk(row: TreeRow, index: number, data: Buffer): boolean {
  const n = LKH_CHUNK_POSITIONS;
  let keysAt: number;
  if (data.length === 1 + n * (4 + row.keyLength) && data[0] === LKH_CHUNK_FORMAT) keysAt = 1 + n * 4;
  else if (data.length === n * (8 + row.keyLength)) keysAt = n * 8;
  else return false;
  const idsAt = keysAt === n * 8 ? 0 : 1;
  const first = index * n;
  row.ensure(first + n - 1);
  for (let i = 0; i < n; i++) row.ids[first + i] = data.readUInt32BE(idsAt + i * 4);
  data.copy(row.keys, first * row.keyLength, keysAt, keysAt + n * row.keyLength);
  return true;
}
