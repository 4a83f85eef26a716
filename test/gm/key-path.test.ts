import { test } from 'node:test';
import assert from 'node:assert/strict';
import { wrapKey } from '../../src/crypto/keywrap.ts';
import { deterministicRandom } from '../../src/crypto/random.ts';
import { LkhTree } from '../../src/gcks/lkh.ts';
import { WorkingKeyPath, type HeldKey } from '../../src/gm/key-path.ts';
import { KwaId } from '../../src/wire/iana.ts';
import type { WrappedKey } from '../../src/wire/wrapped-key.ts';

const KWA = KwaId.KW_5649_256;
const rng = deterministicRandom('key-path');
const key = (): Buffer => rng.bytes(32);
const wrap = (keyId: number, kwkId: number, kwk: Buffer, k: Buffer): WrappedKey => ({ keyId, kwkId, encryptedKey: wrapKey(KWA, kwk, k) });
const gskW = { kwa: KWA, key: Buffer.alloc(32, 0xee) };

function shuffled<T>(xs: readonly T[], seed: number): T[] {
  const out = [...xs];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

test('a key path of any depth resolves whatever order the wrapped keys arrive in', () => {
  // The member holds leaf 100; the rekey brings a chain 105 -> 104 -> ... -> 101 -> 100 and the KEK under 105.
  const leaf: HeldKey = { keyId: 100, key: key() };
  const chain = [leaf, ...Array.from({ length: 5 }, (_, i) => ({ keyId: 101 + i, key: key() }))];
  const wraps = chain.slice(1).map((k, i) => wrap(k.keyId, chain[i]!.keyId, chain[i]!.key, k.key));
  const kek = rng.bytes(68);
  const saKeys = [wrap(0, 105, chain[5]!.key, kek)];
  for (let seed = 1; seed <= 5; seed++) {
    const out = new WorkingKeyPath(KWA, [leaf]).apply({ saKeys, wrapKeys: shuffled(wraps, seed) }, gskW);
    assert.equal(out.status, 'updated');
    if (out.status !== 'updated') continue;
    assert.deepEqual(out.saKeymat, kek);
    assert.deepEqual(out.path.keyIds, [105, 104, 103, 102, 101, 100]);
    assert.deepEqual(out.newKeyIds, [105, 104, 103, 102, 101]);
  }
});

test('Appendix A.4 processed in every order gives the same Working Key Paths', () => {
  const tree = new LkhTree({ kwa: KWA, arity: 2, initialDepth: 3, prebuild: true, random: rng });
  const leaves = Array.from({ length: 8 }, () => tree.addMember().leaf);
  const paths = leaves.map((l) => new WorkingKeyPath(KWA, tree.pathKeys(l)));
  const { wrapKeys } = tree.excludeMembers([leaves[5]!]);
  const saKeys = tree.saKeysForGroup(rng.bytes(68));
  for (let seed = 1; seed <= 6; seed++) {
    const ids = paths.map((p) => {
      const out = p.apply({ saKeys: shuffled(saKeys, seed), wrapKeys: shuffled(wrapKeys, seed + 7) }, gskW);
      return out.status === 'updated' ? out.path.keyIds.join('->') : out.status;
    });
    assert.deepEqual(ids, ['1->3->7', '1->3->8', '1->4->9', '1->4->10', '15->16->11', 'excluded', '15->6->13', '15->6->14']);
  }
});

test('apply never changes the path it is called on', () => {
  const tree = new LkhTree({ kwa: KWA, arity: 2, initialDepth: 2, prebuild: true, random: rng });
  const a = tree.addMember().leaf;
  const b = tree.addMember().leaf;
  const path = new WorkingKeyPath(KWA, tree.pathKeys(a));
  const before = path.keys;
  const { wrapKeys } = tree.excludeMembers([b]);
  const out = path.apply({ saKeys: tree.saKeysForGroup(rng.bytes(68)), wrapKeys }, gskW);
  assert.equal(out.status, 'updated');
  assert.deepEqual(path.keys, before);
  if (out.status === 'updated') assert.notDeepEqual(out.path.keyIds, path.keyIds);
});

test('exclusion is detected only when a new KEK came and none of its SA_KEYs opens', () => {
  const mine: HeldKey = { keyId: 9, key: key() };
  const path = new WorkingKeyPath(KWA, [mine]);
  const stranger = key();
  // Wrapped keys for others only, no KEK: not an exclusion.
  const noKek = path.apply({ saKeys: [], wrapKeys: [wrap(20, 21, stranger, key())] }, gskW);
  assert.equal(noKek.status, 'updated');
  // A KEK for others only: excluded.
  assert.equal(path.apply({ saKeys: [wrap(0, 21, stranger, rng.bytes(68))], wrapKeys: [] }, gskW).status, 'excluded');
  // A forged SA_KEY claiming my KWK ID fails to unwrap; a good one beside it still works.
  const kek = rng.bytes(68);
  const forged = wrap(0, 9, stranger, rng.bytes(68));
  const out = path.apply({ saKeys: [forged, wrap(0, 9, mine.key, kek)], wrapKeys: [] }, gskW);
  assert.ok(out.status === 'updated' && out.saKeymat?.equals(kek));
  assert.equal(path.apply({ saKeys: [forged], wrapKeys: [] }, gskW).status, 'excluded');
});

test('a Data-Security SA_KEY under GSK_w (KWK ID 0) unwraps with the default KWK', () => {
  const tek = rng.bytes(36);
  const path = new WorkingKeyPath(KWA, [{ keyId: 3, key: key() }]);
  assert.deepEqual(path.unwrap(wrap(0, 0, gskW.key, tek), gskW), tek);
  assert.equal(path.unwrap(wrap(0, 4, key(), tek), gskW), undefined);
});
