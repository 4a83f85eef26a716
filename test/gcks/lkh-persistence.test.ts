/**
 * The LKH tree as persisted (lkh.ts persistenceMeta / takeChangedChunks /
 * restore, lkh-storage.ts chunk formats): member counts are not stored but
 * derived from the leaves on restore, a plain join rewrites only the chunks
 * of nodes it created, and chunks in the older format (with member counts)
 * still load.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deterministicRandom } from '../../src/crypto/random.ts';
import { LkhError, LkhTree, type LkhChunk, type LkhTreeMeta } from '../../src/gcks/lkh.ts';
import { LKH_CHUNK_FORMAT, LKH_CHUNK_POSITIONS, type KeyIdSource } from '../../src/gcks/lkh-storage.ts';
import { KwaId } from '../../src/wire/iana.ts';
import type { WrappedKey } from '../../src/wire/wrapped-key.ts';

const KWA = KwaId.KW_5649_256;
const KEY_LENGTH = 32;
const ids = (keys: readonly WrappedKey[]): [number, number][] => keys.map((k) => [k.keyId, k.kwkId]);

/** A Key ID source whose position the test can read and copy. */
class Ids implements KeyIdSource {
  constructor(public next = 1) {}
  take(): number {
    return this.next++;
  }
}

interface Saved {
  readonly meta: LkhTreeMeta;
  readonly chunks: Map<string, Buffer>;
}

/** Applies what takeChangedChunks returns onto a stored copy, as the key server's store does. */
function persist(tree: LkhTree, into?: Saved, all = false): Saved {
  const chunks = new Map(into?.chunks ?? []);
  for (const c of tree.takeChangedChunks(all)) chunks.set(`${c.height}/${c.index}`, c.data);
  return { meta: tree.persistenceMeta(), chunks };
}

function restore(saved: Saved, keyIds: KeyIdSource, seed = 'restored'): LkhTree {
  return LkhTree.restore(saved.meta, (h, i) => saved.chunks.get(`${h}/${i}`), { keyIds, random: deterministicRandom(seed) });
}

/** Member leaves as the meta says: below nextLeaf and not free. */
function memberLeaves(meta: LkhTreeMeta): number[] {
  const free = new Set(meta.freeLeaves);
  return Array.from({ length: meta.nextLeaf }, (_, i) => i).filter((l) => !free.has(l));
}

/** The chunk in the format older releases wrote: IDs, member counts, keys (no format octet). */
function toFormat1(chunk: Buffer, height: number, index: number, meta: LkhTreeMeta): Buffer {
  const n = LKH_CHUNK_POSITIONS;
  assert.equal(chunk.length, 1 + n * (4 + KEY_LENGTH));
  assert.equal(chunk[0], LKH_CHUNK_FORMAT);
  const out = Buffer.alloc(n * (8 + KEY_LENGTH));
  chunk.copy(out, 0, 1, 1 + n * 4);
  const counts = new Map<number, number>();
  for (const leaf of memberLeaves(meta)) {
    const pos = Math.floor(leaf / meta.arity ** height);
    counts.set(pos, (counts.get(pos) ?? 0) + 1);
  }
  for (let i = 0; i < n; i++) out.writeUInt32BE(counts.get(index * n + i) ?? 0, n * 4 + i * 4);
  chunk.copy(out, n * 8, 1 + n * 4);
  return out;
}

/** Everything observable about the tree's membership and keys, for comparing two trees. */
function shape(tree: LkhTree, upTo: number): unknown {
  const members: unknown[] = [];
  for (let leaf = 0; leaf < upTo; leaf++) {
    if (tree.isMember(leaf)) members.push([leaf, tree.pathKeys(leaf).map((k) => [k.keyId, k.key.toString('hex')])]);
  }
  return { depth: tree.depth, count: tree.memberCount, members, cover: tree.rootCover().map((k) => k.keyId) };
}

/** A tree that went through joins, exclusions (some emptying a whole subtree), re-used leaves and growth. */
function busyTree(keyIds: Ids): { tree: LkhTree; leaves: number[] } {
  const tree = new LkhTree({ kwa: KWA, keyIds, random: deterministicRandom('busy') });
  const leaves = Array.from({ length: 40 }, () => tree.addMember().leaf);
  tree.excludeMembers([4, 9, 10, 11, 30]);
  while (tree.depth < 5) leaves.push(tree.addMember().leaf);
  // Leaves 51..53 share their parent: that subtree goes; the free leaves stay free.
  tree.excludeMembers([0, 51, 52, 53]);
  return { tree, leaves: leaves.filter((l) => tree.isMember(l)) };
}

test('a restored tree has the same members, paths and cover: member counts come from the leaves', () => {
  const keyIds = new Ids();
  const { tree } = busyTree(keyIds);
  const saved = persist(tree, undefined, true);
  const restored = restore(saved, new Ids(keyIds.next));
  const upTo = saved.meta.nextLeaf + 10;
  assert.deepEqual(shape(restored, upTo), shape(tree, upTo));
  assert.equal(restored.changed, false, 'a restored tree has nothing to write');
});

test('a restored tree goes on exactly like the original: joins, exclusions, undelivered keys', () => {
  const keyIds = new Ids();
  const { tree, leaves } = busyTree(keyIds);
  const saved = persist(tree, undefined, true);
  const restoredIds = new Ids(keyIds.next);
  const restored = restore(saved, restoredIds);
  // Same operations on both: Key IDs continue alike, so every wrapped key must name the same keys.
  const victims = [leaves[1]!, leaves[2]!, leaves.at(-1)!];
  const a = tree.excludeMembers(victims);
  const b = restored.excludeMembers(victims);
  assert.deepEqual(ids(b.wrapKeys), ids(a.wrapKeys));
  assert.equal(b.renewedKeys, a.renewedKeys);
  const joinA = tree.addMember({ backwardAccessControl: true });
  const joinB = restored.addMember({ backwardAccessControl: true });
  assert.equal(joinB.leaf, joinA.leaf, 'the same free leaf is reused');
  assert.deepEqual(ids(joinB.wrapKeys), ids(joinA.wrapKeys));
  assert.equal(restored.memberCount, tree.memberCount);
  for (const leaf of victims) assert.equal(restored.isMember(leaf), tree.isMember(leaf));
});

test('a plain join rewrites only the chunks of nodes it created', () => {
  const tree = new LkhTree({ kwa: KWA, random: deterministicRandom('join') });
  let saved = persist(tree, undefined, true);
  const written: LkhChunk[][] = [];
  for (let i = 0; i < 300; i++) {
    tree.addMember();
    assert.ok(tree.changed, 'a join always changes the meta');
    const chunks = tree.takeChangedChunks();
    written.push(chunks);
    for (const c of chunks) saved.chunks.set(`${c.height}/${c.index}`, c.data);
    saved = { meta: tree.persistenceMeta(), chunks: saved.chunks };
  }
  // Leaf 1 shares its parent with leaf 0: only the leaf row's chunk changes.
  assert.deepEqual(written[1]!.map((c) => [c.height, c.index]), [[0, 0]]);
  const total = written.reduce((n, w) => n + w.length, 0);
  // Every join writes its leaf's chunk; a node above it only when created (a third, a ninth... of joins), or on growth.
  assert.ok(total <= 300 * 1.6, `${total} chunks written for 300 joins in a tree of depth ${tree.depth}`);
  // The leaf row has grown to 512 positions, past the chunks ever written (300 leaves): those hold no node.
  assert.ok(saved.meta.chunks[0]! * LKH_CHUNK_POSITIONS > 320 && !saved.chunks.has(`0/${saved.meta.chunks[0]! - 1}`));
  const restored = restore(saved, new Ids(10_000));
  assert.deepEqual(shape(restored, 310), shape(tree, 310));
});

test('a join onto a node that already exists changes no chunk, only the meta', () => {
  const tree = new LkhTree({ kwa: KWA, arity: 2, initialDepth: 3, prebuild: true, random: deterministicRandom('prebuilt') });
  const before = persist(tree, undefined, true);
  const leaf = tree.addMember().leaf;
  assert.ok(tree.changed);
  const saved = persist(tree, before);
  assert.deepEqual(saved.chunks, before.chunks, 'no chunk rewritten');
  assert.equal(tree.changed, false);
  const restored = restore(saved, new Ids(100));
  assert.ok(restored.isMember(leaf));
  assert.equal(restored.memberCount, 1);
  assert.deepEqual(shape(restored, 8), shape(tree, 8));
});

test('chunks in the older format (with member counts) still restore, also mixed with current ones', () => {
  const keyIds = new Ids();
  const { tree } = busyTree(keyIds);
  const current = persist(tree, undefined, true);
  const upTo = current.meta.nextLeaf + 10;
  const format1 = new Map([...current.chunks].map(([k, v]) => {
    const [h, i] = k.split('/').map(Number);
    return [k, toFormat1(v, h!, i!, current.meta)];
  }));
  const old = restore({ meta: current.meta, chunks: format1 }, new Ids(keyIds.next));
  assert.deepEqual(shape(old, upTo), shape(tree, upTo));
  // A state written by an older release, then partly rewritten in the current format.
  const mixed = new Map(format1);
  for (const [k, v] of current.chunks) if (k.startsWith('0/')) mixed.set(k, v);
  assert.deepEqual(shape(restore({ meta: current.meta, chunks: mixed }, new Ids(keyIds.next)), upTo), shape(tree, upTo));
  // Member counts in a format-1 chunk are not trusted: they are derived anyway.
  const wrongCounts = new Map(format1);
  const top = `${current.meta.depth - 1}/0`;
  const bad = Buffer.from(wrongCounts.get(top)!);
  bad.writeUInt32BE(12345, LKH_CHUNK_POSITIONS * 4);
  wrongCounts.set(top, bad);
  assert.deepEqual(shape(restore({ meta: current.meta, chunks: wrongCounts }, new Ids(keyIds.next)), upTo), shape(tree, upTo));
});

test('a stored tree that does not fit together is refused', () => {
  const keyIds = new Ids();
  const { tree } = busyTree(keyIds);
  const saved = persist(tree, undefined, true);
  const attempt = (meta: Partial<LkhTreeMeta>, chunks = saved.chunks): (() => LkhTree) => () => restore({ meta: { ...saved.meta, ...meta }, chunks }, new Ids(keyIds.next));
  assert.throws(attempt({ members: saved.meta.members + 1 }), LkhError, 'member count disagrees with the leaves');
  assert.throws(attempt({ freeLeaves: [...saved.meta.freeLeaves, saved.meta.freeLeaves[0]!] }), LkhError, 'a free leaf listed twice');
  assert.throws(attempt({ freeLeaves: [saved.meta.nextLeaf + 1], members: saved.meta.members }), LkhError, 'a free leaf beyond nextLeaf');
  const noKey = new Map(saved.chunks);
  const leafChunk = Buffer.from(noKey.get('0/0')!);
  leafChunk.fill(0, 1, 1 + 4 * 3); // leaves 0..2: no ID, although leaf 1 holds a member
  noKey.set('0/0', leafChunk);
  assert.throws(attempt({}, noKey), LkhError, 'a member leaf without a node');
  const truncated = new Map(saved.chunks);
  truncated.set('0/0', saved.chunks.get('0/0')!.subarray(1));
  assert.throws(attempt({}, truncated), LkhError, 'a chunk of neither format');
});
