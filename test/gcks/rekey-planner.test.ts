import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { createSkCipher } from '../../src/crypto/cipher.ts';
import { rekeySaSkKeys } from '../../src/crypto/keys.ts';
import type { RekeySa } from '../../src/gcks/group.ts';
import type { MulticastRekeyAction, PlannerOutput, RekeyAction } from '../../src/gcks/rekey-planner.ts';
import type { RekeySigningKey } from '../../src/gcks/signing-key.ts';
import { RekeyReceiver } from '../../src/gm/rekey-receiver.ts';
import { isKekPolicy, isTekPolicy, nextSpis } from '../../src/wire/gsa.ts';
import { EncrId, TransformType } from '../../src/wire/iana.ts';
import { groupConfig, World } from '../gm/rekey-harness.ts';

function multicast(out: PlannerOutput | RekeyAction[]): MulticastRekeyAction[] {
  const actions = Array.isArray(out) ? out : out.actions;
  return actions.filter((a): a is MulticastRekeyAction => a.kind === 'multicast');
}

/** Decrypts and checks one GSA_REKEY as a member holding `kek` would (Section 5 validation included). */
function open(action: MulticastRekeyAction, kek: RekeySa, signingKey: RekeySigningKey | undefined) {
  const receiver = new RekeyReceiver();
  const sa = {
    spi: kek.spi,
    cipher: createSkCipher({ encr: kek.policy.encryption.id, encrKeyBits: kek.policy.encryption.keyBits, integ: kek.policy.integrity }, rekeySaSkKeys(kek.keys)),
    auth: signingKey
      ? { kind: 'signature' as const, publicKey: createPublicKey(signingKey.privateKey), algorithmIdentifier: signingKey.algorithmIdentifier }
      : { kind: 'implicit' as const },
    initialMessageId: 0,
    lastMessageId: undefined,
  };
  let receipt;
  for (const d of action.datagrams) receipt = receiver.receive(d, (spi) => (spi.equals(kek.spi) ? sa : undefined), 0);
  assert.ok(receipt && receipt.status === 'accepted', `accepted: ${receipt && receipt.status === 'rejected' ? receipt.detail : receipt?.status}`);
  return receipt;
}

test('scheduling: TEK and KEK rekeys lead their expiry by 20% of the lifetime (minus jitter), raised for ATD', () => {
  const world = new World(groupConfig({ rekey: 'signature', tekLifetime: 3600, kekLifetime: 86400 }));
  const tek = world.group.dataSecuritySas[0]!;
  const due = world.planner.nextDeadline()!;
  const lead = 720_000;
  assert.ok(due <= tek.expiresAt - lead && due >= tek.expiresAt - lead * 1.1, `TEK rekey at expiry - ${(tek.expiresAt - due) / 1000} s`);
  const configured = new World(groupConfig({ rekey: 'signature', atd: 30, tekLifetime: 3600 }), undefined, { leadTimeMs: 10_000, jitterMs: 0 }, 'lead');
  const t = configured.group.dataSecuritySas[0]!;
  assert.equal(configured.planner.nextDeadline(), t.expiresAt - (30_000 + 2 * 2_000 + 1_000), 'lead raised to ATD + two retransmission spans + 1 s');
  // The KEK is rekeyed on its own schedule, the TEKs on theirs.
  world.advance(world.group.rekeySa!.expiresAt);
  assert.ok(world.sent.some((a) => a.reason === 'kek-expiry'), 'KEK rekeyed');
  assert.ok(world.sent.filter((a) => a.reason === 'tek-expiry').length >= 20, 'TEKs rekeyed hourly');
});

test('Message IDs from 0 per Rekey SA, never reused; bitwise-identical copies on a configurable schedule, messages never overlap', () => {
  // DTD keeps the old KEK long enough for the copies of the message that replaced it.
  const world = new World(groupConfig({ rekey: 'signature', dtd: 10 }), undefined, { retransmit: { copies: 4, spacingMs: 250 } });
  world.register('a');
  const first = multicast(world.planner.rekeyNow('tek', world.now))[0]!;
  const second = multicast(world.planner.rekeyNow('tek', world.now))[0]!;
  assert.deepEqual([first.messageId, second.messageId], [0, 1]);
  assert.deepEqual(first.sendAt, [world.now, world.now + 250, world.now + 500, world.now + 750]);
  assert.equal(second.sendAt[0], world.now + 1000, 'the next message starts after the last copy');
  assert.equal(first.destination.address, '239.0.0.1');
  assert.equal(first.destination.port, 848);
  assert.equal(first.source.address, '192.0.2.1');
  const oldSpi = world.group.rekeySa!.spi;
  const kekMessage = multicast(world.planner.rekeyNow('kek', world.now))[0]!;
  assert.deepEqual(kekMessage.rekeySpi, oldSpi, 'the new KEK travels over the current one');
  assert.equal(kekMessage.messageId, 2);
  const overNew = multicast(world.planner.rekeyNow('tek', world.now))[0]!;
  assert.deepEqual(overNew.rekeySpi, world.group.rekeySa!.spi);
  assert.equal(overNew.messageId, 0, 'Section 2.4.1.3: the first message over a new Rekey SA has Message ID 0');
  world.deliver({ actions: [first, second, kekMessage, overNew], events: [] }, { copies: true });
  assert.deepEqual(
    world.member('a').events.filter((e) => e.type === 'rejected').map((e) => (e.type === 'rejected' ? e.reason : '')),
    Array(3 * 4).fill('replay'),
    'every copy after the first is a replay of identical octets',
  );
});

test('exclusion follows the two-message rule: message 1 (old KEK) carries no TEKs, message 2 (new KEK) does', () => {
  const world = new World(groupConfig({ rekey: 'signature', atd: 1, dtd: 2 }));
  const members = ['a', 'b', 'c', 'd'].map((n) => world.register(n));
  const oldKek = world.group.rekeySa!;
  const oldTek = world.group.dataSecuritySas[0]!;
  const out = world.planner.excludeMembers([members[1]!.id], world.now);
  const [m1, m2] = multicast(out);
  assert.ok(m1 && m2, 'two messages');
  assert.deepEqual(m1.rekeySpi, oldKek.spi);
  const newKek = world.group.rekeySa!;
  assert.deepEqual(m2.rekeySpi, newKek.spi);
  const r1 = open(m1, oldKek, world.signingKey);
  assert.equal(r1.status === 'accepted' && r1.gsa?.policies.filter(isTekPolicy).length, 0, 'no TEK under the old KEK');
  assert.equal(r1.status === 'accepted' && r1.gsa?.policies.filter(isKekPolicy).length, 1);
  assert.ok(r1.status === 'accepted' && r1.kd!.keyBags.some((b) => b.kind === 'member'), 'the tree keys go in a Member Key Bag');
  const r2 = open(m2, newKek, world.signingKey);
  assert.ok(r2.status === 'accepted', 'message 2 opens with the new KEK');
  if (r2.status !== 'accepted') return;
  assert.equal(r2.gsa?.policies.filter(isTekPolicy).length, 1);
  assert.deepEqual(r2.deletes[0]?.spis, [oldTek.spi], 'retired TEK deleted');
  assert.equal(world.group.member(members[1]!.id), undefined);
  assert.ok(out.events.some((e) => e.type === 'members-excluded'), 'audited');
});

test('DTD shorter than ATD: the Deletes of replaced TEKs are held back by ATD - DTD', () => {
  const world = new World(groupConfig({ rekey: 'signature', atd: 20, dtd: 5 }));
  world.register('a');
  const kek = world.group.rekeySa!;
  const oldTek = world.group.dataSecuritySas[0]!;
  const out = world.planner.rekeyNow('tek', world.now);
  const r = open(multicast(out)[0]!, kek, world.signingKey);
  assert.equal(r.status === 'accepted' && r.deletes.length, 0);
  const at = world.planner.nextDeadline()!;
  assert.equal(at, world.now + 2_000 + 15_000, 'after the copies, ATD - DTD later');
  const later = world.planner.tick(at);
  const deferred = multicast(later)[0]!;
  assert.equal(deferred.reason, 'deferred-delete');
  const rd = open(deferred, kek, world.signingKey);
  assert.deepEqual(rd.status === 'accepted' && rd.deletes[0]?.spis, [oldTek.spi]);
});

test('GSA_NEXT_SPI announces the SPIs the next KEK and TEKs then use', () => {
  const world = new World(groupConfig({ rekey: 'signature' }));
  world.register('a');
  const kek = world.group.rekeySa!;
  const out = multicast(world.planner.rekeyNow('all', world.now))[0]!;
  const r = open(out, kek, world.signingKey);
  assert.ok(r.status === 'accepted', 'accepted');
  if (r.status !== 'accepted') return;
  const kekPolicy = r.gsa!.policies.find(isKekPolicy)!;
  const tekPolicy = r.gsa!.policies.find(isTekPolicy)!;
  assert.ok(kekPolicy.kind === 'sa' && tekPolicy.kind === 'sa', 'SA policies');
  assert.equal(kekPolicy.transforms.some((t) => t.type === TransformType.GCAUTH), false, 'GCAUTH only at registration');
  const [nextKek] = nextSpis(kekPolicy);
  const [nextTek] = nextSpis(tekPolicy);
  world.planner.rekeyNow('all', world.now);
  assert.deepEqual(world.group.rekeySa!.spi, nextKek);
  assert.deepEqual(world.group.dataSecuritySas[0]!.spi, nextTek);
  const quiet = new World(groupConfig({ rekey: 'signature' }), undefined, { announceNextSpis: false }, 'quiet');
  const k2 = quiet.group.rekeySa!;
  const r2 = open(multicast(quiet.planner.rekeyNow('all', quiet.now))[0]!, k2, quiet.signingKey);
  assert.equal(r2.status === 'accepted' && r2.gsa!.policies.flatMap((p) => (p.kind === 'sa' ? nextSpis(p) : [])).length, 0);
});

test('policy change: one message with a new KEK and the new TEK policy, old TEKs deleted; members follow', () => {
  const world = new World(groupConfig({ rekey: 'signature' }));
  const a = world.register('a');
  const kek = world.group.rekeySa!;
  const oldTek = world.group.dataSecuritySas[0]!;
  const out = world.planner.changePolicy(groupConfig({ rekey: 'signature', encryption: 'chacha20poly1305' }), world.now);
  const msgs = multicast(out);
  assert.equal(msgs.length, 1);
  const r = open(msgs[0]!, kek, world.signingKey);
  assert.ok(r.status === 'accepted', 'accepted');
  if (r.status !== 'accepted') return;
  assert.equal(r.gsa!.policies.filter(isKekPolicy).length, 1, 'Section 3.2.1: a policy change creates a new KEK');
  const tek = r.gsa!.policies.find(isTekPolicy)!;
  assert.equal(tek.kind === 'sa' && tek.transforms.find((t) => t.type === TransformType.ENCR)?.id, EncrId.CHACHA20_POLY1305);
  assert.deepEqual(r.deletes[0]?.spis, [oldTek.spi]);
  world.deliver(out);
  assert.equal(a.follower.state.dataSecurity.find((sa) => !sa.superseded)?.encryption?.id, EncrId.CHACHA20_POLY1305);
  // A change members cannot follow through a rekey starts over.
  const again = world.planner.changePolicy(groupConfig({ rekey: 'signature', senderIdBits: 8 }), world.now);
  assert.ok(again.events.some((e) => e.type === 'all-members-excluded'), 'Sender-ID bits changed: everyone re-registers');
});

test('rekey on join (backward access control): keys are renewed before the new member gets them', () => {
  const world = new World(groupConfig({ rekey: 'signature' }), undefined, { rekeyOnJoin: true });
  const a = world.register('a');
  const b = world.register('b');
  const e = world.register('e');
  const f = world.register('f'); // the ternary tree grows a level
  const beforeKek = world.group.rekeySa!.spi;
  const beforeTek = world.group.dataSecuritySas[0]!.spi;
  const paths = (): string => [a, b, e, f].map((m) => world.planner.keyTree!.pathKeys(world.planner.leafOf(m.id)!).map((k) => k.keyId).join('/')).join(' ');
  const pathsBefore = paths();
  const c = world.register('c');
  assert.notDeepEqual(world.group.rekeySa!.spi, beforeKek);
  assert.notDeepEqual(world.group.dataSecuritySas[0]!.spi, beforeTek);
  assert.notEqual(paths(), pathsBefore, 'tree keys the newcomer shares were renewed');
  for (const m of [a, b, e, f]) assert.deepEqual(m.follower.state.rekeySa!.spi, world.group.rekeySa!.spi, `${m.name} followed the join rekey`);
  assert.ok(!c.follower.state.dataSecurity.some((sa) => sa.spi.equals(beforeTek)), 'the newcomer never saw the old TEK');
  world.deliver(world.planner.excludeMembers([b.id], world.now));
  for (const m of [a, c, e, f]) {
    assert.equal(m.follower.state.status, 'following');
    assert.deepEqual(m.follower.state.rekeySa!.spi, world.group.rekeySa!.spi);
  }
  assert.equal(b.follower.state.status, 'excluded');
});

test('inband: members without an IKE SA are reported unreachable; the key server does not sign or multicast', () => {
  const world = new World(groupConfig({ rekey: 'inband' }));
  const a = world.register('a');
  world.register('b');
  world.members.delete('b');
  const out = world.planner.rekeyNow('tek', world.now);
  const action = out.actions[0]!;
  assert.equal(action.kind, 'inband');
  if (action.kind !== 'inband') return;
  assert.deepEqual(action.deliveries.map((d) => d.member.data.toString()), [a.id.data.toString()]);
  assert.deepEqual(action.unreachable.map((m) => m.data.toString()), ['b.example']);
  assert.throws(() => world.planner.rekeyNow('kek', world.now), /no Rekey SA/);
  assert.equal(world.planner.announcedNextSpis.kek, undefined);
});
