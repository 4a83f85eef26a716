/**
 * 10,000 members, 100 random joins and exclusions in 4 rekey rounds (each
 * excluding about a dozen members at once; fewer rounds keep the test fast,
 * since all 10,000 members process every rekey): every
 * member follows every rekey with its own Working Key Path only, and at the
 * end holds the current KEK and its current path keys; the excluded members,
 * pooling every key any of them ever held, derive nothing current from every
 * wrapped key ever sent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeyUnwrapError, unwrapKey, wrapKey } from '../../src/crypto/keywrap.ts';
import { splitRekeySaKeys } from '../../src/crypto/keys.ts';
import { deterministicRandom } from '../../src/crypto/random.ts';
import { LkhTree, type LeafHandle } from '../../src/gcks/lkh.ts';
import { WorkingKeyPath, type KeyDownload } from '../../src/gm/key-path.ts';
import { KwaId } from '../../src/wire/iana.ts';
import type { WrappedKey } from '../../src/wire/wrapped-key.ts';
import { KEK_ALG } from '../gcks/rekey-fixtures.ts';

const KWA = KwaId.KW_5649_256;
const MEMBERS = 10_000;
const ROUNDS = 4;
const OPS_PER_ROUND = 25;

test('LKH simulation: 10,000 members, 100 random joins and exclusions', () => {
  const rng = deterministicRandom('lkh-10k');
  let seed = 12345;
  const random = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return Math.floor(seed / 65536) % n; // the low bits of an LCG are not random
  };
  const tree = new LkhTree({ kwa: KWA, random: rng });
  const members = new Map<LeafHandle, WorkingKeyPath>();
  for (let i = 0; i < MEMBERS; i++) {
    const { leaf } = tree.addMember();
    members.set(leaf, new WorkingKeyPath(KWA));
  }
  for (const leaf of members.keys()) members.set(leaf, new WorkingKeyPath(KWA, tree.pathKeys(leaf)));
  let kek = rng.bytes(68);
  const gskWOf = (keymat: Buffer): Buffer => splitRekeySaKeys(keymat, KEK_ALG).gskW;

  const sent: WrappedKey[] = [];
  const stolen = new Map<number, Buffer>(); // every key any excluded member ever held, by Key ID
  const stolenKeks: Buffer[] = [];
  let joins = 0;
  let exclusions = 0;

  const deliver = (download: KeyDownload, over: Buffer): void => {
    sent.push(...download.saKeys, ...download.wrapKeys);
    const defaultKwk = { kwa: KWA, key: gskWOf(over) };
    for (const [leaf, path] of members) {
      const out = path.apply(download, defaultKwk);
      assert.equal(out.status, 'updated', `member at leaf ${leaf}`);
      if (out.status === 'updated') members.set(leaf, out.path);
    }
  };

  for (let round = 0; round < ROUNDS; round++) {
    const excluded: LeafHandle[] = [];
    for (let op = 0; op < OPS_PER_ROUND; op++) {
      if (random(2) === 0) {
        // Registration: the Working Key Path under the unicast GSK_w, the current KEK under its level-1 key.
        const { leaf } = tree.addMember();
        const unicast = rng.bytes(32);
        const download = { saKeys: [tree.saKeyForMember(leaf, kek)], wrapKeys: tree.workingKeyPath(leaf, { kwa: KWA, gskW: unicast }) };
        const out = new WorkingKeyPath(KWA).apply(download, { kwa: KWA, key: unicast });
        assert.ok(out.status === 'updated' && out.saKeymat?.equals(kek));
        if (out.status === 'updated') members.set(leaf, out.path);
        joins++;
      } else {
        const candidates = [...members.keys()].filter((l) => !excluded.includes(l));
        const leaf = candidates[random(candidates.length)]!;
        excluded.push(leaf);
        for (const k of members.get(leaf)!.keys) stolen.set(k.keyId, k.key);
        stolenKeks.push(kek);
        exclusions++;
      }
    }
    const previous = kek;
    kek = rng.bytes(68);
    if (excluded.length > 0) {
      const { wrapKeys } = tree.excludeMembers(excluded);
      for (const leaf of excluded) {
        const out = members.get(leaf)!.apply({ saKeys: tree.saKeysForGroup(kek), wrapKeys }, { kwa: KWA, key: gskWOf(previous) });
        assert.equal(out.status, 'excluded');
        members.delete(leaf);
      }
      deliver({ saKeys: tree.saKeysForGroup(kek), wrapKeys }, previous);
    } else {
      // Joins only: a simple rekey under the current GSK_w (Appendix A.3), plus keys made by growth.
      const saKey: WrappedKey = { keyId: 0, kwkId: 0, encryptedKey: wrapKey(KWA, gskWOf(previous), kek) };
      deliver({ saKeys: [saKey], wrapKeys: tree.takeUndeliveredWrapKeys() }, previous);
    }
  }
  assert.equal(joins + exclusions, ROUNDS * OPS_PER_ROUND);
  assert.ok(joins > 20 && exclusions > 20, `${joins} joins, ${exclusions} exclusions`);
  assert.equal(tree.memberCount, members.size);

  // Every current member holds the current KEK's wrapping keys and exactly the GCKS's path for it.
  const cover = new Set(tree.rootCover().map((k) => k.key.toString('hex')));
  for (const [leaf, path] of members) {
    assert.deepEqual(path.keys, tree.pathKeys(leaf), `leaf ${leaf}`);
    assert.ok(cover.has(path.keys[0]!.key.toString('hex')));
  }

  // The excluded members together: unwrap everything reachable from what they held, to a fixed point.
  const gskWs = stolenKeks.map(gskWOf);
  const kekHex = new Set(stolenKeks.map((k) => k.toString('hex')));
  for (let grew = true; grew; ) {
    grew = false;
    for (const w of sent) {
      if (w.keyId !== 0 && stolen.has(w.keyId)) continue;
      const kwks = w.kwkId === 0 ? gskWs : stolen.has(w.kwkId) ? [stolen.get(w.kwkId)!] : [];
      for (const kwk of kwks) {
        let k: Buffer;
        try {
          k = unwrapKey(KWA, kwk, w.encryptedKey);
        } catch (e) {
          if (e instanceof KeyUnwrapError) continue;
          throw e;
        }
        if (w.keyId !== 0) stolen.set(w.keyId, k);
        else if (!kekHex.has(k.toString('hex'))) {
          kekHex.add(k.toString('hex'));
          gskWs.push(gskWOf(k));
        } else continue;
        grew = true;
      }
    }
  }
  assert.equal(kekHex.has(kek.toString('hex')), false, 'the excluded members cannot derive the current KEK');
  for (const [leaf] of members) {
    for (const k of tree.pathKeys(leaf)) assert.equal(stolen.has(k.keyId), false, `current key ${k.keyId} leaked`);
  }
});
