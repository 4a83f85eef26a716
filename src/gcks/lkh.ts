/**
 * Logical Key Hierarchy for one multicast group (RFC 9838 Section 3 and
 * Appendix A; RFC 2627 Section 5.4).
 *
 * Shape, as in Appendix A: the root of the tree is the Rekey SA keying
 * material (the KEK, Key ID 0) and has no Key ID of its own; every other
 * node holds a key wrap key with a non-zero Key ID, and each member owns one
 * leaf. A member holds the keys on the path from its leaf up to (not
 * including) the root: its Working Key Path. The KEK is wrapped under the
 * root's children ("level 1"), so a rekey that excludes members replaces
 * every key on their paths and wraps each new key only under the children
 * that remain uncompromised: O(arity * log n) wrapped keys.
 *
 * Heights count from the leaves (height 0) so that growing the tree by a new
 * level on top keeps every stored position, and member handles (leaf
 * positions) stay valid for the life of the group. A full tree grows one
 * level on top; the new level-1 node's key reaches existing members in the
 * next rekey (`takeUndeliveredWrapKeys`, included automatically by
 * `excludeMembers` and by joins with backward access control).
 *
 * Key IDs are unique and never reused within the group: a replaced key gets
 * a new ID, a removed node's ID is retired.
 */
import { kwaKeyLength, wrapKey } from '../crypto/keywrap.ts';
import { defaultRandom, type RandomSource } from '../crypto/random.ts';
import { DEFAULT_KWK_ID, SA_KEY_ID, type WrappedKey } from '../wire/wrapped-key.ts';
import { decodeRowChunk, encodeRowChunk, keyIdCounter, LKH_CHUNK_POSITIONS, NodeKeySource, TreeRow, type KeyIdSource } from './lkh-storage.ts';


/**
 * Ternary by default: a rekey that excludes one member carries about
 * arity * log_arity(n) wrapped keys, which is smallest near arity e, so a
 * ternary tree sends the fewest octets (1,941 against 2,045 for a binary
 * tree when excluding one of 100,000 members; see bench/rekey.ts).
 */
export const DEFAULT_LKH_ARITY = 3;

export interface LkhOptions {
  /** Key Wrap Algorithm of the Rekey SA: fixes the node key size. */
  readonly kwa: number;
  /** Children per node; 2 (binary) unless configured. */
  readonly arity?: number;
  /** Levels below the root to start with (1: the root's children are leaves). */
  readonly initialDepth?: number;
  /**
   * Create every node of the initial tree up front, with Key IDs assigned
   * breadth-first from the top (the complete tree of Appendix A.2).
   * Otherwise nodes are created on demand as members join.
   */
  readonly prebuild?: boolean;
  readonly random?: RandomSource;
  /** Source of never-reused Key IDs; plug in a durable counter to survive restarts. */
  readonly keyIds?: KeyIdSource;
}

/** A node key with its ID, as the GCKS or a member holds it. */
export interface TreeKey {
  readonly keyId: number;
  readonly key: Buffer;
}

/** How keys reach a member at registration: the unicast IKE SA's KWA and GSK_w. */
export interface UnicastDelivery {
  readonly kwa: number;
  readonly gskW: Uint8Array;
}

/** A leaf position: the handle of a member for the life of the group. */
export type LeafHandle = number;

export interface MemberPlacement {
  readonly leaf: LeafHandle;
  /**
   * Wrapped keys the other members need in the next GSA_REKEY (non-empty
   * only with backward access control): the renewed keys of the new
   * member's path, each wrapped under its children's keys.
   */
  readonly wrapKeys: WrappedKey[];
}

export interface ExclusionResult {
  /** WRAP_KEY values for the GSA_REKEY Member Key Bag: the new path keys under their remaining children. */
  readonly wrapKeys: WrappedKey[];
  /** Number of node keys that were replaced. */
  readonly renewedKeys: number;
}

/**
 * What a restart needs besides the rows' chunks: the shape and bookkeeping
 * of the tree (no keys). `chunks[h]` is how many chunks row h has.
 */
export interface LkhTreeMeta {
  readonly kwa: number;
  readonly arity: number;
  readonly depth: number;
  readonly nextLeaf: number;
  readonly members: number;
  readonly freeLeaves: readonly number[];
  readonly undelivered: readonly number[];
  readonly chunks: readonly number[];
}

/** One persisted piece of a row (see lkh-storage.ts encodeRowChunk). Secret. */
export interface LkhChunk {
  readonly height: number;
  readonly index: number;
  readonly data: Buffer;
}

export class LkhError extends Error {
  override readonly name = 'LkhError';
}

const MAX_ARITY = 256;
/** Per height, a node reference that survives growth: height * 2^32 + position. */
const REF_SCALE = 2 ** 32;

export class LkhTree {
  readonly kwa: number;
  readonly arity: number;
  readonly keyLength: number;
  /** rows[0] = leaves; rows[depth - 1] = the root's children (level 1). */
  private readonly rows: TreeRow[] = [];
  private readonly nodeKeys: NodeKeySource;
  private readonly keyIds: KeyIdSource;
  private readonly freeLeaves: number[] = [];
  private nextLeaf = 0;
  private members = 0;
  /** Nodes whose current key the members below them have not been sent yet (after growth). */
  private readonly undelivered = new Set<number>();
  /** The bookkeeping in persistenceMeta changed since the last takeChangedChunks. */
  private metaChanged = false;

  constructor(options: LkhOptions) {
    this.kwa = options.kwa;
    this.keyLength = kwaKeyLength(options.kwa);
    this.arity = options.arity ?? DEFAULT_LKH_ARITY;
    if (!Number.isInteger(this.arity) || this.arity < 2 || this.arity > MAX_ARITY) {
      throw new LkhError(`arity must be an integer in 2..${MAX_ARITY}, got ${this.arity}`);
    }
    const depth = options.initialDepth ?? 1;
    if (!Number.isInteger(depth) || depth < 1 || this.arity ** depth > 2 ** 32) {
      throw new LkhError(`initial depth ${depth} is out of range`);
    }
    this.nodeKeys = new NodeKeySource(options.random ?? defaultRandom(), this.keyLength);
    this.keyIds = options.keyIds ?? keyIdCounter();
    for (let h = 0; h < depth; h++) this.rows.push(new TreeRow(this.keyLength));
    if (options.prebuild) this.prebuild();
  }

  /** Levels below the root; a member's Working Key Path has this many keys. */
  get depth(): number {
    return this.rows.length;
  }

  get memberCount(): number {
    return this.members;
  }

  isMember(leaf: LeafHandle): boolean {
    return Number.isInteger(leaf) && leaf >= 0 && this.row(0).membersAt(leaf) === 1;
  }

  /**
   * Places a new member at a free leaf (the leftmost never-used one, or one
   * freed by an exclusion). With `backwardAccessControl` the keys on its
   * path that others already hold are replaced, so the new member cannot
   * read what was wrapped under them before it joined.
   */
  addMember(options: { backwardAccessControl?: boolean } = {}): MemberPlacement {
    if (this.freeLeaves.length === 0 && this.nextLeaf >= this.arity ** this.depth) this.grow();
    const leaf = this.freeLeaves.pop() ?? this.nextLeaf++;
    this.metaChanged = true;
    // Only keys others already hold need renewing for backward access control.
    const preexisting: Set<number>[] | undefined = options.backwardAccessControl ? this.rows.map(() => new Set<number>()) : undefined;
    for (let h = this.depth - 1, pos = this.ancestor(leaf, h); h >= 0; h--, pos = this.ancestor(leaf, h)) {
      if (this.row(h).idAt(pos) === 0) this.row(h).renew(pos, this.newKeyId(), this.nodeKeys);
      else if (h > 0) preexisting?.[h]!.add(pos);
    }
    // Member counts are not persisted (restore derives them): only the nodes created above changed a chunk.
    for (let h = 0, pos = leaf; h < this.depth; h++, pos = Math.floor(pos / this.arity)) this.row(h).members[pos]! += 1;
    this.members++;
    if (!preexisting) return { leaf, wrapKeys: [] };
    // Children that hold nothing but the new member need no wrapped copy: it gets its path at registration.
    const covers = (h: number, pos: number): boolean =>
      !(pos === this.ancestor(leaf, h) && this.row(h).membersAt(pos) === 1);
    const wrapKeys = this.renewNodes(preexisting, covers);
    return { leaf, wrapKeys: [...wrapKeys, ...this.takeUndeliveredWrapKeys()] };
  }

  /**
   * Excludes members in one operation (Appendix A.4): their leaves are
   * deleted, every key on their paths is replaced (or deleted when no member
   * is left below it), and each new key is wrapped under every remaining
   * child. The new KEK then goes under `saKeysForGroup`.
   */
  excludeMembers(leaves: readonly LeafHandle[]): ExclusionResult {
    const unique = [...new Set(leaves)];
    for (const leaf of unique) if (!this.isMember(leaf)) throw new LkhError(`leaf ${leaf} holds no member`);
    this.metaChanged = true;
    const targets: Set<number>[] = this.rows.map(() => new Set<number>());
    for (const leaf of unique) {
      for (let h = 0; h < this.depth; h++) {
        const pos = this.ancestor(leaf, h);
        this.row(h).members[pos]! -= 1;
        if (h > 0) targets[h]!.add(pos);
      }
      this.row(0).remove(leaf);
      this.freeLeaves.push(leaf);
      this.members--;
    }
    // Subtrees left without members go entirely: their keys are compromised and nobody needs them.
    for (let h = 1; h < this.depth; h++) {
      for (const pos of targets[h]!) {
        if (this.row(h).membersAt(pos) === 0) {
          this.row(h).remove(pos);
          this.undelivered.delete(ref(h, pos));
        }
      }
    }
    const renewed = this.countLive(targets);
    const wrapKeys = this.renewNodes(targets, () => true);
    return { wrapKeys: [...wrapKeys, ...this.takeUndeliveredWrapKeys()], renewedKeys: renewed };
  }

  /**
   * The Working Key Path of a member as WRAP_KEY values for its Member Key
   * Bag at registration (Appendix A.2: `MP(3{1},7{3},GSK_w{7})`): each path
   * key wrapped under the one below it, top first, and the leaf key under
   * the unicast SA's GSK_w (KWK ID 0) with the unicast SA's KWA.
   */
  workingKeyPath(leaf: LeafHandle, delivery: UnicastDelivery): WrappedKey[] {
    this.requireMember(leaf);
    const out: WrappedKey[] = [];
    for (let h = this.depth - 1; h >= 1; h--) {
      out.push(this.wrapNode(h, this.ancestor(leaf, h), h - 1, this.ancestor(leaf, h - 1)));
    }
    const leafKey = this.row(0).keyAt(leaf);
    out.push({ keyId: this.row(0).idAt(leaf), kwkId: DEFAULT_KWK_ID, encryptedKey: wrapKey(delivery.kwa, delivery.gskW, leafKey) });
    return out;
  }

  /** The SA_KEY of the current KEK for one member's registration: `1{K_sa1}` in Appendix A.2. */
  saKeyForMember(leaf: LeafHandle, keymat: Uint8Array): WrappedKey {
    this.requireMember(leaf);
    const h = this.depth - 1;
    return this.wrapUnder(keymat, SA_KEY_ID, h, this.ancestor(leaf, h));
  }

  /** The SA_KEY attributes of a new KEK for the whole group: one per remaining level-1 key (`1{K_sa3},15{K_sa3}`). */
  saKeysForGroup(keymat: Uint8Array): WrappedKey[] {
    const h = this.depth - 1;
    return this.livePositions(h).map((pos) => this.wrapUnder(keymat, SA_KEY_ID, h, pos));
  }

  /**
   * Wrapped keys that deliver node keys created by growth to the members
   * below them; empty when there are none. Include them in the next
   * GSA_REKEY; taking them marks them delivered.
   */
  takeUndeliveredWrapKeys(): WrappedKey[] {
    // Top-down by height, left to right within a height.
    if (this.undelivered.size > 0) this.metaChanged = true;
    const refs = [...this.undelivered].sort((a, b) => Math.floor(b / REF_SCALE) - Math.floor(a / REF_SCALE) || (a % REF_SCALE) - (b % REF_SCALE));
    this.undelivered.clear();
    const out: WrappedKey[] = [];
    for (const r of refs) {
      const h = Math.floor(r / REF_SCALE);
      const pos = r % REF_SCALE;
      if (h >= this.depth || this.row(h).membersAt(pos) === 0) continue;
      for (const child of this.children(h, pos)) {
        if (this.row(h - 1).membersAt(child) > 0) out.push(this.wrapNode(h, pos, h - 1, child));
      }
    }
    return out;
  }

  /** The keys a member holds, top (level 1) first, leaf last. Copies; for tests and simulations. */
  pathKeys(leaf: LeafHandle): TreeKey[] {
    this.requireMember(leaf);
    const out: TreeKey[] = [];
    for (let h = this.depth - 1; h >= 0; h--) out.push(this.nodeKey(h, this.ancestor(leaf, h)));
    return out;
  }

  /** The level-1 keys the KEK is wrapped under, left to right. */
  rootCover(): TreeKey[] {
    const h = this.depth - 1;
    return this.livePositions(h).map((pos) => this.nodeKey(h, pos));
  }

  /** Key ID of the leaf of a member. */
  leafKeyId(leaf: LeafHandle): number {
    this.requireMember(leaf);
    return this.row(0).idAt(leaf);
  }

  // -------------------------------------------------------------- persistence

  /** The tree's bookkeeping for a restart (no keys). */
  persistenceMeta(): LkhTreeMeta {
    return {
      kwa: this.kwa,
      arity: this.arity,
      depth: this.depth,
      nextLeaf: this.nextLeaf,
      members: this.members,
      freeLeaves: [...this.freeLeaves],
      undelivered: [...this.undelivered],
      chunks: this.rows.map((r) => Math.ceil(r.capacity / LKH_CHUNK_POSITIONS)),
    };
  }

  /**
   * The chunks changed since the last call (or every chunk with `all`), as
   * copies to persist with persistenceMeta(); taking them marks the tree
   * saved. A join that creates no node changes no chunk, only the meta.
   * Secret.
   */
  takeChangedChunks(all = false): LkhChunk[] {
    this.metaChanged = false;
    const out: LkhChunk[] = [];
    this.rows.forEach((row, height) => {
      const indices = all ? Array.from({ length: Math.ceil(row.capacity / LKH_CHUNK_POSITIONS) }, (_, i) => i) : [...row.changedChunks].sort((a, b) => a - b);
      row.changedChunks.clear();
      for (const index of indices) out.push({ height, index, data: encodeRowChunk(row, index) });
    });
    return out;
  }

  /** Whether anything persisted (a chunk or the meta) changed since the last takeChangedChunks. */
  get changed(): boolean {
    return this.metaChanged || this.rows.some((r) => r.changedChunks.size > 0);
  }

  /**
   * A tree as persisted: `chunk(h, i)` returns the stored chunk. Key IDs
   * continue from `options.keyIds` (a durable counter above every ID used).
   * Member counts are derived from the leaves: every leaf below `nextLeaf`
   * that is not free holds a member, and each needs every node on its path.
   * A chunk `chunk` does not return was never written: its positions hold
   * no node (rows grow in capacity before nodes are created there). Throws
   * LkhError when the pieces do not fit together.
   */
  static restore(meta: LkhTreeMeta, chunk: (height: number, index: number) => Buffer | undefined, options: Omit<LkhOptions, 'kwa' | 'arity' | 'initialDepth' | 'prebuild'>): LkhTree {
    const tree = new LkhTree({ ...options, kwa: meta.kwa, arity: meta.arity, initialDepth: 1 });
    if (!Number.isInteger(meta.depth) || meta.depth < 1 || meta.chunks.length !== meta.depth) throw new LkhError('stored key tree: bad depth');
    for (let h = 1; h < meta.depth; h++) tree.rows.push(new TreeRow(tree.keyLength));
    for (let h = 0; h < meta.depth; h++) {
      const count = meta.chunks[h]!;
      if (!Number.isSafeInteger(count) || count < 0 || count * LKH_CHUNK_POSITIONS > 2 ** 32) throw new LkhError(`stored key tree: bad chunk count for height ${h}`);
      if (count > 0) tree.row(h).ensure(count * LKH_CHUNK_POSITIONS - 1);
      for (let i = 0; i < count; i++) {
        // A chunk never written (the row grew past it, no node there changed) holds no node: it stays empty.
        // Whether every member's path is complete is checked below, from the leaves.
        const data = chunk(h, i);
        if (data && !decodeRowChunk(tree.row(h), i, data)) throw new LkhError(`stored key tree: chunk ${h}/${i} is malformed`);
      }
      tree.row(h).changedChunks.clear();
    }
    tree.nextLeaf = meta.nextLeaf;
    tree.members = meta.members;
    tree.freeLeaves.push(...meta.freeLeaves);
    tree.deriveMemberCounts();
    for (const r of meta.undelivered) tree.undelivered.add(r);
    return tree;
  }

  // -------------------------------------------------------------- internals

  /** Rebuilds every node's member count from the occupied leaves (restore). */
  private deriveMemberCounts(): void {
    const nextLeaf = this.nextLeaf;
    if (!Number.isSafeInteger(nextLeaf) || nextLeaf < 0 || nextLeaf > this.arity ** this.depth) throw new LkhError('stored key tree: bad next leaf');
    const free = new Set<number>();
    for (const leaf of this.freeLeaves) {
      if (!Number.isInteger(leaf) || leaf < 0 || leaf >= nextLeaf || free.has(leaf)) throw new LkhError(`stored key tree: bad free leaf ${leaf}`);
      free.add(leaf);
    }
    if (nextLeaf - free.size !== this.members) throw new LkhError(`stored key tree: ${this.members} members but ${nextLeaf - free.size} occupied leaves`);
    for (const row of this.rows) row.members.fill(0);
    for (let leaf = 0; leaf < nextLeaf; leaf++) {
      if (free.has(leaf)) continue;
      for (let h = 0, pos = leaf; h < this.depth; h++, pos = Math.floor(pos / this.arity)) {
        const row = this.row(h);
        if (row.idAt(pos) === 0) throw new LkhError(`stored key tree: the path of leaf ${leaf} lacks the node at height ${h}`);
        row.members[pos]! += 1;
      }
    }
  }

  private row(h: number): TreeRow {
    const r = this.rows[h];
    if (!r) throw new LkhError(`no tree height ${h}`);
    return r;
  }

  private requireMember(leaf: LeafHandle): void {
    if (!this.isMember(leaf)) throw new LkhError(`leaf ${leaf} holds no member`);
  }

  private ancestor(leaf: number, h: number): number {
    return Math.floor(leaf / this.arity ** h);
  }

  private children(h: number, pos: number): number[] {
    const first = pos * this.arity;
    return Array.from({ length: this.arity }, (_, i) => first + i);
  }

  private livePositions(h: number): number[] {
    const row = this.row(h);
    const out: number[] = [];
    for (let pos = 0; pos < row.capacity; pos++) if (row.membersAt(pos) > 0) out.push(pos);
    return out;
  }

  private newKeyId(): number {
    const id = this.keyIds.take();
    if (id === undefined) throw new LkhError('key IDs exhausted for this group; it must be re-created');
    return id;
  }

  private nodeKey(h: number, pos: number): TreeKey {
    return { keyId: this.row(h).idAt(pos), key: Buffer.from(this.row(h).keyAt(pos)) };
  }

  private wrapUnder(plaintext: Uint8Array, keyId: number, kwkHeight: number, kwkPos: number): WrappedKey {
    const row = this.row(kwkHeight);
    return { keyId, kwkId: row.idAt(kwkPos), encryptedKey: wrapKey(this.kwa, row.keyAt(kwkPos), plaintext) };
  }

  /** Node (h, pos)'s key wrapped under node (kh, kpos)'s key. */
  private wrapNode(h: number, pos: number, kh: number, kpos: number): WrappedKey {
    return this.wrapUnder(this.row(h).keyAt(pos), this.row(h).idAt(pos), kh, kpos);
  }

  private countLive(targets: readonly Set<number>[]): number {
    let n = 0;
    targets.forEach((set, h) => {
      for (const pos of set) if (this.row(h).membersAt(pos) > 0) n++;
    });
    return n;
  }

  /**
   * Gives every live node in `targets` a new ID and key (top-down, so IDs
   * ascend from the root as in Appendix A.4), then wraps each new key under
   * its live children that `covers` accepts: unchanged children first, then
   * renewed ones, reproducing Appendix A.4's `6{15},16{15},11{16}`.
   */
  private renewNodes(targets: readonly Set<number>[], covers: (h: number, pos: number) => boolean): WrappedKey[] {
    const renewed: number[][] = this.rows.map(() => []);
    for (let h = this.depth - 1; h >= 1; h--) {
      for (const pos of [...targets[h]!].sort((a, b) => a - b)) {
        if (this.row(h).membersAt(pos) === 0) continue;
        this.row(h).renew(pos, this.newKeyId(), this.nodeKeys);
        this.undelivered.delete(ref(h, pos));
        renewed[h]!.push(pos);
      }
    }
    const out: WrappedKey[] = [];
    for (let h = this.depth - 1; h >= 1; h--) {
      const renewedBelow = new Set(renewed[h - 1]);
      for (const pos of renewed[h]!) {
        const kids = this.children(h, pos).filter((c) => this.row(h - 1).membersAt(c) > 0 && covers(h - 1, c));
        const ordered = [...kids.filter((c) => !renewedBelow.has(c)), ...kids.filter((c) => renewedBelow.has(c))];
        for (const child of ordered) out.push(this.wrapNode(h, pos, h - 1, child));
      }
    }
    return out;
  }

  /** Adds a level on top: the old level-1 nodes become children of one new node. */
  private grow(): void {
    if (this.arity ** (this.depth + 1) > 2 ** 32) throw new LkhError('the key tree cannot grow further');
    this.rows.push(new TreeRow(this.keyLength));
    this.metaChanged = true;
    const h = this.depth - 1;
    if (this.members === 0) return;
    this.row(h).renew(0, this.newKeyId(), this.nodeKeys);
    this.row(h).members[0] = this.members;
    this.undelivered.add(ref(h, 0));
  }

  /** Every node of the initial complete tree, Key IDs breadth-first from level 1 (Appendix A.2). */
  private prebuild(): void {
    for (let h = this.depth - 1; h >= 0; h--) {
      const count = this.arity ** (this.depth - h);
      this.row(h).ensure(count - 1);
      for (let pos = 0; pos < count; pos++) this.row(h).renew(pos, this.newKeyId(), this.nodeKeys);
    }
  }
}

function ref(h: number, pos: number): number {
  return h * REF_SCALE + pos;
}
