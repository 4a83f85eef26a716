import { test } from 'node:test';
import assert from 'node:assert/strict';
import { unwrapKey, wrapKey } from '../../src/crypto/keywrap.ts';
import { deterministicRandom } from '../../src/crypto/random.ts';
import { LkhError, LkhTree } from '../../src/gcks/lkh.ts';
import { keyIdCounter } from '../../src/gcks/lkh-storage.ts';
import { WorkingKeyPath } from '../../src/gm/key-path.ts';
import { KwaId } from '../../src/wire/iana.ts';
import type { WrappedKey } from '../../src/wire/wrapped-key.ts';

const KWA = KwaId.KW_5649_256;
const ids = (keys: readonly WrappedKey[]): [number, number][] => keys.map((k) => [k.keyId, k.kwkId]);
const pathIds = (tree: LkhTree, leaf: number): number[] => tree.pathKeys(leaf).map((k) => k.keyId);

/** The tree of Appendix A.2: complete, depth 3, Key IDs 1..14 breadth-first, members A..H at leaves 7..14. */
function appendixTree(): { tree: LkhTree; leaf: Record<string, number> } {
  const tree = new LkhTree({ kwa: KWA, arity: 2, initialDepth: 3, prebuild: true, random: deterministicRandom('appendix-a') });
  const leaf: Record<string, number> = {};
  for (const name of 'ABCDEFGH') leaf[name] = tree.addMember().leaf;
  return { tree, leaf };
}

test('Appendix A.2: initial tree, leaves and Working Key Paths', () => {
  const { tree, leaf } = appendixTree();
  assert.equal(tree.depth, 3);
  const expected: Record<string, number[]> = {
    A: [1, 3, 7], B: [1, 3, 8], C: [1, 4, 9], D: [1, 4, 10],
    E: [2, 5, 11], F: [2, 5, 12], G: [2, 6, 13], H: [2, 6, 14],
  };
  for (const [name, path] of Object.entries(expected)) {
    assert.deepEqual(pathIds(tree, leaf[name]!), path, `member ${name}`);
    assert.equal(tree.leafKeyId(leaf[name]!), path[2]);
  }
  assert.deepEqual(tree.rootCover().map((k) => k.keyId), [1, 2]);
});

test('Appendix A.2: GSA_AUTH for A is KD(GP(SA1)(1{K_sa1}),MP(3{1},7{3},GSK_w{7})) and builds A: 1->3->7', () => {
  const { tree, leaf } = appendixTree();
  const gskW = Buffer.alloc(16, 0x77); // unicast SA negotiated AES-KW-128: a different KWA than the tree's
  const kSa1 = Buffer.alloc(68, 0x51);
  const saKey = tree.saKeyForMember(leaf['A']!, kSa1);
  const mp = tree.workingKeyPath(leaf['A']!, { kwa: KwaId.KW_5649_128, gskW });
  assert.deepEqual(ids([saKey]), [[0, 1]]);
  assert.deepEqual(ids(mp), [[1, 3], [3, 7], [7, 0]]);

  const out = new WorkingKeyPath(KWA).apply({ saKeys: [saKey], wrapKeys: mp }, { kwa: KwaId.KW_5649_128, key: gskW });
  assert.equal(out.status, 'updated');
  if (out.status !== 'updated') return;
  assert.deepEqual(out.path.keyIds, [1, 3, 7]);
  assert.deepEqual(out.saKeymat, kSa1);
  assert.deepEqual(out.path.keys, tree.pathKeys(leaf['A']!));
});

test('Appendix A.4: excluding F sends exactly KD(GP(SA3)(1{K_sa3},15{K_sa3}),MP(6{15},16{15},11{16}))', () => {
  const { tree, leaf } = appendixTree();
  const before = new Map(Object.entries(leaf).map(([n, l]) => [n, new WorkingKeyPath(KWA, tree.pathKeys(l))]));
  const gskWsa1 = Buffer.alloc(32, 0x11);
  const result = tree.excludeMembers([leaf['F']!]);
  assert.deepEqual(ids(result.wrapKeys), [[15, 6], [15, 16], [16, 11]]);
  assert.equal(result.renewedKeys, 2);
  const kSa3 = Buffer.alloc(68, 0x53);
  const saKeys = tree.saKeysForGroup(kSa3);
  assert.deepEqual(ids(saKeys), [[0, 1], [0, 15]]);

  const expected: Record<string, number[] | 'excluded'> = {
    A: [1, 3, 7], B: [1, 3, 8], C: [1, 4, 9], D: [1, 4, 10],
    E: [15, 16, 11], F: 'excluded', G: [15, 6, 13], H: [15, 6, 14],
  };
  for (const [name, want] of Object.entries(expected)) {
    const out = before.get(name)!.apply({ saKeys, wrapKeys: result.wrapKeys }, { kwa: KWA, key: gskWsa1 });
    if (want === 'excluded') {
      assert.equal(out.status, 'excluded', name);
      assert.equal(tree.isMember(leaf[name]!), false);
      continue;
    }
    assert.equal(out.status, 'updated', name);
    if (out.status !== 'updated') continue;
    assert.deepEqual(out.path.keyIds, want, name);
    assert.deepEqual(out.saKeymat, kSa3, name);
    assert.deepEqual(out.path.keys, tree.pathKeys(leaf[name]!), `${name} holds the GCKS's current path keys`);
  }
});

test('Appendix A.3: a simple rekey under GSK_w changes no Working Key Path', () => {
  const { tree, leaf } = appendixTree();
  const gskW = Buffer.alloc(32, 0x11);
  const kSa2 = Buffer.alloc(68, 0x52);
  const saKey: WrappedKey = { keyId: 0, kwkId: 0, encryptedKey: wrapKey(KWA, gskW, kSa2) }; // GSK_w{K_sa2}
  const out = new WorkingKeyPath(KWA, tree.pathKeys(leaf['C']!)).apply({ saKeys: [saKey], wrapKeys: [] }, { kwa: KWA, key: gskW });
  assert.equal(out.status, 'updated');
  if (out.status !== 'updated') return;
  assert.deepEqual(out.saKeymat, kSa2);
  assert.deepEqual(out.path.keyIds, [1, 4, 9]);
  assert.deepEqual(out.newKeyIds, []);
});

/** Tries every key against every wrapped key, ignoring IDs, until nothing more opens. */
function attackerClosure(keys: readonly Buffer[], wrapped: readonly WrappedKey[]): Buffer[] {
  const pool = keys.filter((k) => k.length === 32);
  const found: Buffer[] = [];
  const opened = new Set<number>();
  for (let grew = true; grew; ) {
    grew = false;
    wrapped.forEach((w, i) => {
      if (opened.has(i)) return;
      for (const k of pool) {
        try {
          const key = unwrapKey(KWA, k, w.encryptedKey);
          opened.add(i);
          found.push(key);
          pool.push(key);
          grew = true;
          return;
        } catch {
          /* not this key */
        }
      }
    });
  }
  return found;
}

function snapshot(tree: LkhTree, leaf: Record<string, number>): Map<string, WorkingKeyPath> {
  return new Map(Object.entries(leaf).map(([n, l]) => [n, new WorkingKeyPath(KWA, tree.pathKeys(l))]));
}

for (const excluded of [['F'], ['B', 'G'], ['E', 'F'], ['A', 'C', 'H']]) {
  test(`exclusion of ${excluded.join('+')} is cryptographic: their every key opens nothing, every other member gets the new KEK`, () => {
    const { tree, leaf } = appendixTree();
    const unicastGskW = Buffer.alloc(32, 0xf0);
    const kek1 = Buffer.alloc(68, 0xa1);
    const paths = snapshot(tree, leaf);
    // Everything the excluded members ever held: path keys, unicast GSK_w, the current KEK (GSK_e, GSK_w).
    const stolen = [
      ...excluded.flatMap((n) => paths.get(n)!.keys.map((k) => k.key)),
      unicastGskW,
      kek1.subarray(0, 32),
      kek1.subarray(36),
    ];
    const result = tree.excludeMembers(excluded.map((n) => leaf[n]!));
    const kek2 = Buffer.alloc(68, 0xa2);
    const saKeys = tree.saKeysForGroup(kek2);
    assert.deepEqual(attackerClosure(stolen, [...result.wrapKeys, ...saKeys]), [], 'excluded members unwrap nothing');

    for (const [name, path] of paths) {
      const out = path.apply({ saKeys, wrapKeys: result.wrapKeys }, { kwa: KWA, key: kek1.subarray(36) });
      if (excluded.includes(name)) {
        assert.equal(out.status, 'excluded', name);
        continue;
      }
      assert.equal(out.status, 'updated', name);
      if (out.status !== 'updated') continue;
      assert.deepEqual(out.saKeymat, kek2, name);
      assert.deepEqual(out.path.keys, tree.pathKeys(leaf[name]!), name);
    }
  });
}

test('excluding a whole subtree deletes its keys; O(log n) wrapped keys for one member of 1024', () => {
  const tree = new LkhTree({ kwa: KWA, arity: 2, random: deterministicRandom('big') });
  const leaves = Array.from({ length: 1024 }, () => tree.addMember().leaf);
  assert.equal(tree.depth, 10);
  // Nine growths made nine nodes whose keys the older members were not sent yet, each with two children.
  assert.equal(tree.takeUndeliveredWrapKeys().length, 18);
  assert.equal(tree.takeUndeliveredWrapKeys().length, 0);
  const one = tree.excludeMembers([leaves[500]!]);
  assert.equal(one.wrapKeys.length, 2 * 9 - 1);
  assert.equal(tree.saKeysForGroup(Buffer.alloc(68)).length, 2);
  // Both members under one node at height 1 go, so that node goes: the 8 keys above it are renewed.
  const pair = tree.excludeMembers([leaves[2]!, leaves[3]!]);
  assert.equal(pair.renewedKeys, 8);
  assert.equal(tree.memberCount, 1021);
});

test('growth keeps leaves stable and delivers the new level-1 key with the next rekey', () => {
  const tree = new LkhTree({ kwa: KWA, arity: 2, random: deterministicRandom('grow') });
  const gskW = Buffer.alloc(32, 9);
  const a = tree.addMember().leaf;
  const b = tree.addMember().leaf;
  let pa = new WorkingKeyPath(KWA, tree.pathKeys(a));
  const pb = new WorkingKeyPath(KWA, tree.pathKeys(b));
  const c = tree.addMember().leaf; // tree grows to depth 2
  assert.equal(tree.depth, 2);
  assert.deepEqual([a, b, c], [0, 1, 2]);
  const pc = new WorkingKeyPath(KWA, tree.pathKeys(c));
  const result = tree.excludeMembers([b]);
  const kek = Buffer.alloc(68, 3);
  const saKeys = tree.saKeysForGroup(kek);
  for (const [path, leafOf] of [[pa, a], [pc, c]] as const) {
    const out = path.apply({ saKeys, wrapKeys: result.wrapKeys }, { kwa: KWA, key: gskW });
    assert.equal(out.status, 'updated');
    if (out.status !== 'updated') continue;
    assert.deepEqual(out.saKeymat, kek);
    assert.deepEqual(out.path.keys, tree.pathKeys(leafOf));
    if (leafOf === a) pa = out.path;
  }
  assert.equal(pb.apply({ saKeys, wrapKeys: result.wrapKeys }, { kwa: KWA, key: gskW }).status, 'excluded');
  assert.equal(pa.length, 2);
});

test('backward access control: a join renews the shared path keys, wrapped for the others only', () => {
  const tree = new LkhTree({ kwa: KWA, arity: 2, initialDepth: 2, prebuild: true, random: deterministicRandom('join') });
  const a = tree.addMember().leaf;
  const pa = new WorkingKeyPath(KWA, tree.pathKeys(a));
  const oldKeys = pa.keys.map((k) => k.key);
  const joined = tree.addMember({ backwardAccessControl: true });
  // Level-1 node 1 (shared with A) renewed as 7, wrapped under A's leaf only.
  assert.deepEqual(ids(joined.wrapKeys), [[7, 3]]);
  assert.ok(!tree.pathKeys(joined.leaf).some((k) => oldKeys.some((o) => o.equals(k.key))), 'the new member gets no old key');
  const out = pa.apply({ saKeys: [], wrapKeys: joined.wrapKeys }, { kwa: KWA, key: Buffer.alloc(32) });
  assert.equal(out.status, 'updated');
  if (out.status === 'updated') assert.deepEqual(out.path.keys, tree.pathKeys(a));
});

test('key IDs are never reused and reservations run ahead of use', () => {
  const reserved: number[] = [];
  const tree = new LkhTree({ kwa: KWA, keyIds: keyIdCounter({ block: 8, reserve: (n) => reserved.push(n) }) });
  const leaves = Array.from({ length: 20 }, () => tree.addMember().leaf);
  const seen = new Set<number>();
  const record = (): void => {
    for (const l of leaves) if (tree.isMember(l)) for (const k of tree.pathKeys(l)) seen.add(k.keyId);
  };
  record();
  const before = seen.size;
  tree.excludeMembers([leaves[3]!, leaves[17]!]);
  const renewedIds = new Set<number>();
  for (const l of leaves) if (tree.isMember(l)) for (const k of tree.pathKeys(l)) if (!seen.has(k.keyId)) renewedIds.add(k.keyId);
  assert.ok(renewedIds.size > 0 && before > 0);
  assert.ok(Math.min(...renewedIds) > Math.max(...seen), 'new IDs are above every earlier one');
  assert.deepEqual(reserved, reserved.slice().sort((x, y) => x - y));
  assert.ok(reserved.at(-1)! >= Math.max(...renewedIds));
  assert.throws(() => tree.excludeMembers([leaves[3]!]), LkhError);
});

test('the default tree is ternary and excludes one member with fewer wrapped keys than a binary tree', () => {
  const sizes = [2, 3].map((arity) => {
    const tree = arity === 3 ? new LkhTree({ kwa: KWA, random: deterministicRandom('default') }) : new LkhTree({ kwa: KWA, arity, random: deterministicRandom('default') });
    const leaves = Array.from({ length: 729 }, () => tree.addMember().leaf);
    return { arity: tree.arity, wrapped: tree.excludeMembers([leaves[100]!]).wrapKeys.length };
  });
  assert.equal(sizes[1]!.arity, 3);
  assert.ok(sizes[1]!.wrapped < sizes[0]!.wrapped, JSON.stringify(sizes));
});
