import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deterministicRandom } from '../../src/crypto/random.ts';
import { LkhTree } from '../../src/gcks/lkh.ts';
import { planMembershipRekey } from '../../src/gcks/membership-rekey.ts';
import { protect } from '../../src/crypto/cipher.ts';
import { buildRekey, rekeyHeader, rekeySignedOctets, type RekeyContent } from '../../src/gcks/rekey-message.ts';
import { keyDownloadFrom, WorkingKeyPath } from '../../src/gm/key-path.ts';
import { RekeyReceiver, type RekeyReceipt, type RekeySaReceiver } from '../../src/gm/rekey-receiver.ts';
import { AuthMethod, KwaId, PayloadType } from '../../src/wire/iana.ts';
import { encodeProtectedPrefix } from '../../src/wire/message.ts';
import { encodePayloadChain, type Payload } from '../../src/wire/payload.ts';
import { newRekeySa, rekeyViolations, testSigner, type SignerKind, type TestRekeySa } from '../gcks/rekey-fixtures.ts';

const KWA = KwaId.KW_5649_256;
const rng = deterministicRandom('rekey-receiver');

interface Setup {
  current: TestRekeySa;
  next: TestRekeySa;
  content: RekeyContent;
  paths: WorkingKeyPath[];
}

function setup(): Setup {
  const current = newRekeySa(rng);
  const next = newRekeySa(rng);
  const tree = new LkhTree({ kwa: KWA, arity: 2, initialDepth: 2, prebuild: true, random: rng });
  const leaves = Array.from({ length: 4 }, () => tree.addMember().leaf);
  const paths = leaves.map((l) => new WorkingKeyPath(KWA, tree.pathKeys(l)));
  const content = planMembershipRekey({ tree, exclude: [leaves[2]!], kek: { policy: next.policy, keymat: next.keymat }, teks: [] }).first;
  return { current, next, content, paths };
}

function reason(r: RekeyReceipt): string {
  return r.status === 'rejected' ? r.reason : r.status;
}

for (const kind of ['ed25519', 'ecdsa-p256', 'rsa-pss', 'implicit'] as const) {
  test(`round trip (${kind}): build -> receive -> every remaining member gets the new KEK`, () => {
    const s = setup();
    const signed = kind === 'implicit' ? undefined : testSigner(kind as SignerKind);
    const auth = signed?.auth ?? { kind: 'implicit' as const };
    const built = buildRekey({ sa: s.current.sender(signed?.signer), messageId: 5, ...s.content });
    const view = s.current.receiver(auth, 4);
    const r = new RekeyReceiver().receive(built.datagrams[0]!, (spi) => (spi.equals(s.current.spi) ? view : undefined), 0);
    assert.equal(r.status, 'accepted', JSON.stringify(r));
    if (r.status !== 'accepted') return;
    assert.equal(r.messageId, 5);
    assert.deepEqual(r.spi, s.current.spi);
    assert.deepEqual(r.gsa, s.content.gsa);
    assert.deepEqual(r.kd, s.content.kd);
    assert.deepEqual(rekeyViolations(r.payloads, kind !== 'implicit'), []);
    const statuses = s.paths.map((p) => p.apply(keyDownloadFrom(r.kd!), { kwa: KWA, key: s.current.gskW }));
    assert.deepEqual(statuses.map((o) => o.status), ['updated', 'updated', 'excluded', 'updated']);
    for (const o of statuses) if (o.status === 'updated') assert.deepEqual(o.saKeymat, s.next.keymat);
  });
}

test('rejections: replay, older/reused Message ID, wrong signature, wrong ICV, unknown SPI, each changing nothing', () => {
  const s = setup();
  const { signer, auth } = testSigner('ecdsa-p256');
  const receiver = new RekeyReceiver();
  let view: RekeySaReceiver = s.current.receiver(auth, undefined, 10);
  const lookup = (spi: Buffer): RekeySaReceiver | undefined => (spi.equals(s.current.spi) ? view : undefined);
  const build = (messageId: number, sig = signer): Buffer => buildRekey({ sa: s.current.sender(sig), messageId, ...s.content }).datagrams[0]!;

  // Below GSA_INITIAL_MESSAGE_ID before anything was accepted.
  assert.equal(reason(receiver.receive(build(9), lookup, 0)), 'replay');
  const good = build(12);
  const first = receiver.receive(good, lookup, 0);
  assert.equal(first.status, 'accepted');
  view = { ...view, lastMessageId: 12 }; // the caller records the ID after applying
  const snapshot = { ...view };

  const cases: [string, Buffer, string][] = [];
  cases.push(['replayed datagram', good, 'replay']);
  cases.push(['reused Message ID', build(12), 'replay']);
  cases.push(['older Message ID', build(11), 'replay']);
  cases.push(['wrong signing key', build(13, testSigner('ecdsa-p256').signer), 'bad-signature']);
  cases.push(['wrong algorithm (Ed25519 where GCAUTH says ECDSA)', build(13, testSigner('ed25519').signer), 'bad-signature']);
  cases.push(['no AUTH', buildRekey({ sa: s.current.sender(), messageId: 13, ...s.content }).datagrams[0]!, 'bad-signature']);
  const flipped = Buffer.from(build(13));
  flipped[flipped.length - 20]! ^= 1;
  cases.push(['ciphertext bit flipped', flipped, 'bad-icv']);
  const badAad = Buffer.from(build(13));
  badAad[19]! ^= 0x08; // the Initiator flag is authenticated too
  cases.push(['header flag flipped', badAad, 'bad-icv']);
  const other = newRekeySa(rng);
  cases.push(['unknown SPI', buildRekey({ sa: other.sender(signer), messageId: 13, ...s.content }).datagrams[0]!, 'unknown-spi']);
  const foreignKeys = buildRekey({ sa: { ...other.sender(signer), spi: s.current.spi }, messageId: 13, ...s.content }).datagrams[0]!;
  cases.push(['right SPI, wrong KEK', foreignKeys, 'bad-icv']);
  const response = Buffer.from(build(13));
  response[19]! |= 0x20;
  cases.push(['Response flag set', response, 'malformed']);
  cases.push(['truncated', build(13).subarray(0, 40), 'malformed']);

  for (const [name, datagram, want] of cases) {
    const r = receiver.receive(datagram, lookup, 0);
    assert.equal(reason(r), want, `${name}: ${JSON.stringify(r)}`);
    assert.deepEqual(view, snapshot, `${name} changed nothing`);
  }
  // The next genuine message still goes through.
  assert.equal(receiver.receive(build(13), lookup, 0).status, 'accepted');
});

test('Implicit authentication rejects a message that carries AUTH', () => {
  const s = setup();
  const { signer } = testSigner('ed25519');
  const built = buildRekey({ sa: s.current.sender(signer), messageId: 0, ...s.content });
  const r = new RekeyReceiver().receive(built.datagrams[0]!, () => s.current.receiver({ kind: 'implicit' }), 0);
  assert.equal(reason(r), 'malformed');
});

test('an unsupported non-critical payload inside SK is skipped (RFC 7296 3.2); a critical one is malformed', () => {
  const s = setup();
  const { signer, auth } = testSigner('ed25519');
  const header = rekeyHeader(s.current.spi, 3);
  const build = (critical: boolean): Buffer => {
    const unknown: Payload = { type: 200, critical: false, unknown: true, body: Buffer.from('future extension') };
    const body: Payload[] = [s.content.gsa!, s.content.kd!, unknown];
    const authPayload = (data: Buffer): Payload => ({ type: PayloadType.AUTH, critical: false, method: AuthMethod.DIGITAL_SIGNATURE, data });
    const data = signer.signWithTemplate((t) => {
      const { firstType, bytes } = encodePayloadChain([...body, authPayload(t)]);
      return rekeySignedOctets(header, firstType, bytes);
    });
    const { firstType, bytes: p } = encodePayloadChain([...body, authPayload(data)]);
    if (critical) {
      // The unknown payload's Critical bit sits right after its generic header's Next Payload octet.
      const gsaKd = encodePayloadChain([s.content.gsa!, s.content.kd!]).bytes.length;
      p[gsaKd + 1] = 0x80;
    }
    const cipher = s.current.sender().cipher;
    const bodyLength = cipher.ivLength + p.length + 1 + cipher.icvLength;
    const prefix = encodeProtectedPrefix({ header, container: { type: PayloadType.SK, critical: false, innerFirst: firstType }, bodyLength });
    return Buffer.concat([prefix, protect(cipher, prefix, p)]);
  };
  const lookup = (): RekeySaReceiver => s.current.receiver(auth);
  const r = new RekeyReceiver().receive(build(false), lookup, 0);
  assert.equal(r.status, 'accepted', JSON.stringify(r));
  if (r.status === 'accepted') assert.deepEqual(r.kd, s.content.kd);
  assert.equal(reason(new RekeyReceiver().receive(build(true), lookup, 0)), 'malformed');
});
