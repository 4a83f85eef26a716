import { test } from 'node:test';
import assert from 'node:assert/strict';
import { verify } from 'node:crypto';
import { parseRfc7427AuthData } from '../../src/crypto/auth.ts';
import { unwrapKey } from '../../src/crypto/keywrap.ts';
import { deterministicRandom } from '../../src/crypto/random.ts';
import { ikeMessageBudget } from '../../src/ike/fragments.ts';
import { LkhTree } from '../../src/gcks/lkh.ts';
import { planMembershipRekey, rekeySaAlgorithmsOf } from '../../src/gcks/membership-rekey.ts';
import {
  deleteAllDataSecuritySas,
  deleteSas,
  excludeEveryMember,
  rekeyKeyDownload,
  startOverDeletes,
  withNextSpis,
} from '../../src/gcks/rekey-content.ts';
import { buildRekey, rekeySignedOctets, type RekeyContent } from '../../src/gcks/rekey-message.ts';
import { keyDownloadFrom, WorkingKeyPath } from '../../src/gm/key-path.ts';
import { RekeyReceiver } from '../../src/gm/rekey-receiver.ts';
import { encodeDeleteBody } from '../../src/wire/payloads/delete.ts';
import { Writer } from '../../src/wire/writer.ts';
import { decodeMessage, splitProtectedMessage } from '../../src/wire/message.ts';
import { decodePayloadChain, encodePayloadChain, isPayloadOf } from '../../src/wire/payload.ts';
import { ExchangeType, GsaAttr, KwaId, PayloadType, ProtocolId } from '../../src/wire/iana.ts';
import { saKeysOf } from '../../src/wire/wrapped-key.ts';
import { createSkCipher, unprotect } from '../../src/crypto/cipher.ts';
import { rekeySaSkKeys, splitRekeySaKeys } from '../../src/crypto/keys.ts';
import { espPolicy, KEK_ALG, newRekeySa, rekeyViolations, testSigner, type TestRekeySa } from './rekey-fixtures.ts';

const KWA = KwaId.KW_5649_256;
const rng = deterministicRandom('rekey-message');

function exclusionContent(tree: LkhTree, leaves: number[], next: TestRekeySa): RekeyContent {
  return planMembershipRekey({ tree, exclude: leaves, kek: { policy: next.policy, keymat: next.keymat }, teks: [] }).first;
}

function treeOf(n: number): { tree: LkhTree; leaves: number[] } {
  const tree = new LkhTree({ kwa: KWA, random: rng });
  const leaves = Array.from({ length: n }, () => tree.addMember().leaf);
  tree.takeUndeliveredWrapKeys();
  return { tree, leaves };
}

/** Decrypts a single-datagram GSA_REKEY with the SA's keys: the inner payload octets P. */
function decryptP(datagram: Buffer, sa: TestRekeySa): { p: Buffer; innerFirst: number } {
  const m = decodeMessage(datagram);
  const sk = m.payloads[0]!;
  assert.ok(isPayloadOf(sk, PayloadType.SK));
  const { prefix, encrypted } = splitProtectedMessage(datagram, m)!;
  const cipher = createSkCipher(KEK_ALG, rekeySaSkKeys(splitRekeySaKeys(sa.keymat, KEK_ALG)));
  return { p: unprotect(cipher, prefix, encrypted), innerFirst: sk.innerFirst };
}

test('header: Rekey SA SPI over both SPI fields, GSA_REKEY, Initiator set, Response clear, caller Message ID', () => {
  const current = newRekeySa(rng);
  const { tree, leaves } = treeOf(8);
  const built = buildRekey({ sa: current.sender(), messageId: 7, ...exclusionContent(tree, [leaves[5]!], newRekeySa(rng)) });
  const m = decodeMessage(built.datagrams[0]!);
  assert.deepEqual(Buffer.concat([m.header.spiI, m.header.spiR]), current.spi);
  assert.equal(m.header.exchangeType, ExchangeType.GSA_REKEY);
  assert.deepEqual(m.header.flags, { initiator: true, version: false, response: false });
  assert.equal(m.header.messageId, 7);
  assert.equal(built.messageLength, built.datagrams[0]!.length);
  assert.equal(built.fragmented, false);
});

for (const kind of ['ed25519', 'ecdsa-p256', 'rsa-pss'] as const) {
  test(`AUTH (${kind}) is a signature over A | P with adjusted lengths and a zeroed Signature Value`, () => {
    const { signer, publicKey } = testSigner(kind);
    const current = newRekeySa(rng);
    const { tree, leaves } = treeOf(16);
    const content: RekeyContent = {
      ...exclusionContent(tree, [leaves[3]!], newRekeySa(rng)),
      deletes: [deleteSas(ProtocolId.ESP, [Buffer.from('01020304', 'hex')])],
    };
    // ECDSA signatures vary in length; every build must still verify.
    for (let i = 0; i < (kind === 'ecdsa-p256' ? 12 : 2); i++) {
      const built = buildRekey({ sa: current.sender(signer), messageId: i, ...content });
      const { p, innerFirst } = decryptP(built.datagrams[0]!, current);
      const inner = decodePayloadChain(innerFirst, p, 'SK');
      assert.deepEqual(inner.map((x) => x.type), [PayloadType.GSA, PayloadType.KD, PayloadType.DELETE, PayloadType.AUTH]);
      assert.deepEqual(rekeyViolations(inner, true), []);
      const auth = inner[3]!;
      assert.ok(isPayloadOf(auth, PayloadType.AUTH));
      const { algorithmIdentifier, signature } = parseRfc7427AuthData(auth.data);
      assert.deepEqual(algorithmIdentifier, signer.algorithmIdentifier);
      // Rebuild A | P independently: P with the Signature Value zeroed, lengths counting P only.
      const zeroed = encodePayloadChain([...inner.slice(0, 3), { ...auth, data: Buffer.concat([auth.data.subarray(0, auth.data.length - signature.length), Buffer.alloc(signature.length)]) }]).bytes;
      const signed = rekeySignedOctets(decodeMessage(built.datagrams[0]!).header, innerFirst, zeroed);
      assert.equal(signed.readUInt32BE(24), 28 + 4 + p.length, 'AdjustedLen');
      assert.equal(signed.readUInt16BE(30), 4 + p.length, 'AdjustedPldLen');
      const alg = kind === 'ed25519' ? null : 'sha256';
      const options = kind === 'rsa-pss' ? { key: publicKey, padding: 6, saltLength: 32 } : kind === 'ecdsa-p256' ? { key: publicKey, dsaEncoding: 'der' as const } : publicKey;
      assert.ok(verify(alg, signed, options, signature), 'signature verifies over A | P');
    }
  });
}

test('GCAUTH Implicit: no AUTH payload', () => {
  const current = newRekeySa(rng);
  const { tree, leaves } = treeOf(4);
  const built = buildRekey({ sa: current.sender(), messageId: 0, ...exclusionContent(tree, [leaves[0]!], newRekeySa(rng)) });
  const { p, innerFirst } = decryptP(built.datagrams[0]!, current);
  const inner = decodePayloadChain(innerFirst, p, 'SK');
  assert.deepEqual(inner.map((x) => x.type), [PayloadType.GSA, PayloadType.KD]);
  assert.deepEqual(rekeyViolations(inner, false), []);
});

test('IKE fragmentation: signature over the whole message, each fragment within the limit, receiver reassembles', () => {
  const { signer, auth } = testSigner('ed25519');
  const current = newRekeySa(rng);
  const { tree, leaves } = treeOf(4096);
  const content = exclusionContent(tree, leaves.filter((_, i) => i % 400 === 7), newRekeySa(rng));
  const limits = { maxDatagramSize: 576, ipVersion: 4 as const, marker: false };
  const built = buildRekey({ sa: current.sender(signer), messageId: 3, fragmentation: limits, ...content });
  assert.ok(built.fragmented && built.datagrams.length > 3, `${built.datagrams.length} fragments`);
  for (const d of built.datagrams) assert.ok(d.length <= ikeMessageBudget(limits));
  const receiver = new RekeyReceiver();
  const lookup = (): ReturnType<TestRekeySa['receiver']> => current.receiver(auth);
  const order = built.datagrams.map((_, i) => i).reverse();
  const results = order.map((i) => receiver.receive(built.datagrams[i]!, lookup, 0));
  assert.ok(results.slice(0, -1).every((r) => r.status === 'incomplete'));
  const last = results.at(-1)!;
  assert.equal(last.status, 'accepted', JSON.stringify(last));
  if (last.status === 'accepted') assert.deepEqual(last.kd, content.kd);
  // Unfragmented, the same content fits no 576-octet datagram.
  assert.ok(built.messageLength > ikeMessageBudget(limits));
});

test('Delete payloads: retired SAs and the SPI-0 forms of Section 2.4.3', () => {
  const esp = deleteSas(ProtocolId.ESP, [Buffer.from('0a0b0c0d', 'hex')]);
  assert.equal(esp.spiSize, 4);
  const kek = deleteSas(ProtocolId.GIKE_UPDATE, [Buffer.alloc(16, 1)]);
  assert.equal(kek.spiSize, 16);
  assert.throws(() => deleteSas(ProtocolId.ESP, [Buffer.alloc(4)]), /SPI 0/);
  assert.throws(() => deleteSas(ProtocolId.ESP, [Buffer.alloc(16, 1)]), /octets/);
  const all = deleteAllDataSecuritySas(ProtocolId.AH);
  assert.deepEqual([all.protocolId, all.spiSize, all.spis], [ProtocolId.AH, 4, [Buffer.alloc(4)]]);
  const out = excludeEveryMember();
  assert.deepEqual([out.protocolId, out.spiSize, out.spis], [ProtocolId.GIKE_UPDATE, 16, [Buffer.alloc(16)]]);
  assert.deepEqual(startOverDeletes().map((d) => d.protocolId), [ProtocolId.ESP, ProtocolId.GIKE_UPDATE]);
  for (const d of [esp, kek, all, out]) encodeDeleteBody(new Writer(), d); // encodable
  // HDR, SK{D, D, AUTH}: a deletion-only GSA_REKEY is valid.
  const { signer } = testSigner('ed25519');
  const current = newRekeySa(rng);
  const built = buildRekey({ sa: current.sender(signer), messageId: 1, deletes: startOverDeletes() });
  const { p, innerFirst } = decryptP(built.datagrams[0]!, current);
  const inner = decodePayloadChain(innerFirst, p, 'SK');
  assert.deepEqual(inner.map((x) => x.type), [PayloadType.DELETE, PayloadType.DELETE, PayloadType.AUTH]);
  assert.deepEqual(rekeyViolations(inner, true), []);
  assert.throws(() => buildRekey({ sa: current.sender(), messageId: 2 }), /needs/);
});

test('GSA_NEXT_SPI on the new KEK policy passes the validator', () => {
  const current = newRekeySa(rng);
  const next = newRekeySa(rng);
  const { tree, leaves } = treeOf(8);
  const spis = [rng.bytes(16), rng.bytes(16)];
  const plan = planMembershipRekey({ tree, exclude: [leaves[1]!], kek: { policy: withNextSpis(next.policy, spis), keymat: next.keymat }, teks: [] });
  const policy = plan.first.gsa!.policies[0]!;
  assert.ok(policy.kind === 'sa');
  assert.deepEqual(policy.attributes.filter((a) => a.type === GsaAttr.GSA_NEXT_SPI).map((a) => a.value), spis);
  const built = buildRekey({ sa: current.sender(), messageId: 0, ...plan.first });
  const { p, innerFirst } = decryptP(built.datagrams[0]!, current);
  assert.deepEqual(rekeyViolations(decodePayloadChain(innerFirst, p, 'SK'), false), []);
  assert.throws(() => withNextSpis(next.policy, [Buffer.alloc(4, 1)]), RangeError);
});

test('forward access control: message 1 changes the KEK only; message 2 brings TEKs under the new KEK', () => {
  const { signer, auth } = testSigner('ed25519');
  const current = newRekeySa(rng);
  const kek2 = newRekeySa(rng);
  const tree = new LkhTree({ kwa: KWA, arity: 2, initialDepth: 3, prebuild: true, random: rng });
  const leaves = Array.from({ length: 8 }, () => tree.addMember().leaf);
  const paths = leaves.map((l) => new WorkingKeyPath(KWA, tree.pathKeys(l)));
  const f = 5;
  const stolen = [...paths[f]!.keys.map((k) => k.key), current.gskW];
  const tekKeymat = rng.bytes(36);
  const retired = deleteSas(ProtocolId.ESP, [Buffer.from('00000101', 'hex')]);
  const plan = planMembershipRekey({
    tree,
    exclude: [leaves[f]!],
    kek: { policy: kek2.policy, keymat: kek2.keymat },
    teks: [{ policy: espPolicy(Buffer.from('00000202', 'hex')), keymat: tekKeymat }],
    retire: [retired],
  });
  assert.deepEqual(plan.first.gsa!.policies.map((p) => p.kind === 'sa' && p.protocol), [ProtocolId.GIKE_UPDATE]);
  assert.equal(plan.first.deletes, undefined);
  assert.ok(plan.second);
  const m1 = buildRekey({ sa: current.sender(signer), messageId: 4, ...plan.first });
  const m2 = buildRekey({ sa: kek2.sender(signer), messageId: 0, ...plan.second });

  const receiver = new RekeyReceiver();
  const r1 = receiver.receive(m1.datagrams[0]!, () => current.receiver(auth), 0);
  assert.equal(r1.status, 'accepted');
  if (r1.status !== 'accepted') return;
  assert.deepEqual(rekeyViolations(r1.payloads, true), []);
  const download = keyDownloadFrom(r1.kd!);
  paths.forEach((path, i) => {
    const out = path.apply(download, { kwa: KWA, key: current.gskW });
    if (i === f) return assert.equal(out.status, 'excluded');
    assert.equal(out.status, 'updated');
    if (out.status === 'updated') assert.deepEqual(out.saKeymat, kek2.keymat);
  });

  // Members that got kek2 open message 2 and its TEK; F has no SA for it, and its old keys fail the ICV.
  const r2 = receiver.receive(m2.datagrams[0]!, (spi) => (spi.equals(kek2.spi) ? kek2.receiver(auth) : undefined), 0);
  assert.equal(r2.status, 'accepted');
  if (r2.status !== 'accepted') return;
  assert.deepEqual(rekeyViolations(r2.payloads, true), []);
  assert.deepEqual(r2.deletes, [retired]);
  const espBag = r2.kd!.keyBags.find((b) => b.kind === 'group' && b.protocol === ProtocolId.ESP);
  assert.ok(espBag && espBag.kind === 'group');
  const tekSaKey = saKeysOf(espBag)[0]!;
  assert.deepEqual([tekSaKey.keyId, tekSaKey.kwkId], [0, 0]);
  assert.deepEqual(paths[0]!.unwrap(tekSaKey, { kwa: KWA, key: splitRekeySaKeys(kek2.keymat, rekeySaAlgorithmsOf(kek2.policy)).gskW }), tekKeymat);

  const fView = { ...current.receiver(auth), spi: kek2.spi };
  assert.equal(receiver.receive(m2.datagrams[0]!, () => undefined, 0).status, 'rejected');
  const fTry = receiver.receive(m2.datagrams[0]!, () => fView, 0);
  assert.ok(fTry.status === 'rejected' && fTry.reason === 'bad-icv');
  for (const k of stolen) {
    if (k.length !== 32) continue;
    assert.throws(() => unwrapKey(KWA, k, tekSaKey.encryptedKey));
  }
});

test('rekeyKeyDownload splits WRAP_KEYs over Member Key Bags within the decoder cap and adds AUTH_KEY', () => {
  const wrapKeys = Array.from({ length: 600 }, (_, i) => ({ keyId: i + 1, kwkId: i + 2, encryptedKey: Buffer.alloc(40) }));
  const kd = rekeyKeyDownload({ bags: [{ protocol: ProtocolId.GIKE_UPDATE, spi: Buffer.alloc(16, 1), saKeys: [] }], wrapKeys, authKey: Buffer.from('3000', 'hex') });
  assert.deepEqual(kd.keyBags.map((b) => b.attributes.length), [0, 256, 256, 89]);
  assert.equal(keyDownloadFrom(kd).wrapKeys.length, 600);
});
