import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSkCipher } from '../../src/crypto/cipher.ts';
import { rekeySaSkKeys } from '../../src/crypto/keys.ts';
import { unwrapKey } from '../../src/crypto/keywrap.ts';
import { createRekeySigner } from '../../src/crypto/auth.ts';
import { splitDataSecurityKeymat } from '../../src/gcks/keymat.ts';
import { buildRekey } from '../../src/gcks/rekey-message.ts';
import type { Group } from '../../src/gcks/group.ts';
import { deleteSas } from '../../src/gcks/rekey-content.ts';
import type { FollowerEvent } from '../../src/gm/rekey-follower.ts';
import { ProtocolId } from '../../src/wire/iana.ts';
import { SA_KEY_ID } from '../../src/wire/wrapped-key.ts';
import { groupConfig, newSigningKey, World, type Member } from './rekey-harness.ts';

const ESP = ProtocolId.ESP;

function ofType<T extends FollowerEvent['type']>(m: Member, type: T): Extract<FollowerEvent, { type: T }>[] {
  return m.events.filter((e): e is Extract<FollowerEvent, { type: T }> => e.type === type);
}

/** The member holds exactly the group's current KEK and TEKs (keys compared octet for octet). */
function assertInSync(world: World, m: Member): void {
  const s = m.follower.state;
  const g = world.group;
  assert.equal(s.status, 'following', `${m.name} follows`);
  assert.ok(s.rekeySa, `${m.name} has a Rekey SA`);
  assert.deepEqual(s.rekeySa.spi, g.rekeySa!.spi, `${m.name}: current KEK`);
  assert.deepEqual(s.rekeySa.keys, g.rekeySa!.keys, `${m.name}: KEK keys`);
  for (const tek of g.dataSecuritySas) {
    const held = s.dataSecurity.find((sa) => sa.spi.equals(tek.spi));
    assert.ok(held, `${m.name} holds TEK ${tek.spi.toString('hex')}`);
    assert.deepEqual(held.keys, splitDataSecurityKeymat(tek.keymat, { encryption: tek.policy.encryption, integrity: tek.policy.integrity }));
  }
  assert.deepEqual(ofType(m, 'rejected'), [], `${m.name}: nothing rejected`);
}

test('scheduled TEK rekey ahead of expiry: the sender switches only after ATD, receivers accept the old TEK until DTD', () => {
  const world = new World(groupConfig({ rekey: 'signature', atd: 5, dtd: 10, tekLifetime: 600 }));
  const sender = world.register('sender', 'sender');
  const receiver = world.register('receiver');
  const oldTek = world.group.dataSecuritySas[0]!;
  const due = world.planner.nextDeadline()!;
  assert.ok(due < oldTek.expiresAt - 5_000, 'rekey planned ahead of expiry, at least ATD before');
  world.advance(due);
  const newTek = world.group.dataSecuritySas[0]!;
  assert.notDeepEqual(newTek.spi, oldTek.spi);
  const t0 = world.now;
  // Sender: old outbound until ATD, then the new one.
  assert.deepEqual(sender.follower.outboundSa(ESP, t0)!.spi, oldTek.spi);
  assert.deepEqual(sender.follower.outboundSa(ESP, t0 + 4_999)!.spi, oldTek.spi);
  world.advance(t0 + 5_000);
  assert.deepEqual(sender.follower.outboundSa(ESP, world.now)!.spi, newTek.spi);
  assert.ok(ofType(sender, 'tek-activated').some((e) => e.spi === newTek.spi.toString('hex') && e.direction === 'outbound' && e.at === t0 + 5_000), 'tek-activated at ATD');
  // Receiver: both inbound until DTD, then the new one only.
  const inbound = (t: number): string[] => receiver.follower.usableSas('inbound', t).map((sa) => sa.spi.toString('hex')).sort();
  assert.deepEqual(inbound(t0), [oldTek.spi.toString('hex'), newTek.spi.toString('hex')].sort());
  world.advance(t0 + 9_999);
  assert.equal(inbound(world.now).length, 2);
  world.advance(t0 + 10_000);
  assert.deepEqual(inbound(world.now), [newTek.spi.toString('hex')]);
  assert.ok(ofType(receiver, 'tek-retired').some((e) => e.spi === oldTek.spi.toString('hex') && e.cause === 'deleted'), 'old TEK retired at DTD');
  for (const m of [sender, receiver]) {
    assertInSync(world, m);
    assert.deepEqual(ofType(m, 'resync-needed'), [], 'a scheduled rekey comes before any soft lifetime');
  }
});

test('forced KEK rekey: every member moves to the new Rekey SA; the old one goes after DTD', () => {
  const world = new World(groupConfig({ rekey: 'signature', dtd: 10 }));
  const members = ['a', 'b', 'c'].map((n) => world.register(n));
  const old = world.group.rekeySa!.spi;
  world.deliver(world.planner.rekeyNow('kek', world.now));
  for (const m of members) {
    assertInSync(world, m);
    assert.equal(ofType(m, 'kek-updated').length, 1);
    assert.ok(m.follower.state.retiringRekeySas.some((k) => k.spi.equals(old)), 'as expected');
  }
  world.advance(world.now + 10_001);
  for (const m of members) assert.equal(m.follower.state.retiringRekeySas.length, 0);
});

test('five members (LKH) follow scheduled and forced rekeys; excluded F cannot obtain the new KEK or TEKs', () => {
  const world = new World(groupConfig({ rekey: 'signature', atd: 2, dtd: 4, tekLifetime: 900, kekLifetime: 1800 }));
  const members = ['a', 'b', 'c', 'd', 'f'].map((n) => world.register(n, n === 'a' ? 'both' : 'receiver'));
  for (const m of members) assert.ok(m.follower.state.path!.length >= 1, 'a Working Key Path from registration');
  world.advance(world.planner.nextDeadline()!); // scheduled TEK rekey
  world.deliver(world.planner.rekeyNow('kek', world.now));
  world.deliver(world.planner.rekeyNow('all', world.now));
  world.advance(world.now + 4_000_000); // more scheduled TEK and KEK rekeys
  assert.ok(world.sent.length >= 5, `${world.sent.length} rekeys`);
  for (const m of members) {
    assertInSync(world, m);
    assert.deepEqual(ofType(m, 'resync-needed'), []);
  }

  const f = world.member('f');
  const fBefore = f.follower.state;
  const fPath = fBefore.path!.keys;
  const fLeaf = world.planner.leafOf(f.id)!;
  const out = world.planner.excludeMembers([f.id], world.now);
  assert.equal(out.actions.length, 2, 'Section 3.2.1: new KEK first, then the TEKs under it');
  world.deliver(out);
  assert.equal(ofType(f, 'excluded').length, 1);
  assert.equal(f.follower.state.status, 'excluded');
  const excludedAt = ofType(f, 'excluded')[0]!;
  assert.ok(excludedAt.reregisterAt >= excludedAt.at + 1_000 && excludedAt.reregisterAt <= excludedAt.at + 5_000, 'NOTES point 7: a few seconds');
  assert.equal(f.follower.state.reregisterAt, excludedAt.reregisterAt);
  const newTek = world.group.dataSecuritySas[0]!;
  assert.ok(!f.follower.state.dataSecurity.some((sa) => sa.spi.equals(newTek.spi)), 'F has not the new TEK');
  for (const m of members.filter((x) => x !== f)) assertInSync(world, m);
  assert.equal(world.planner.keyTree!.isMember(fLeaf), false);

  // Cryptographically: every key F ever held opens none of the new KEK's SA_KEYs.
  const first = world.sent[world.sent.length - 2]!;
  assert.equal(first.kind, 'multicast');
  const fKeys = [fBefore.rekeySa!.keys.gskW, ...fPath.map((k) => k.key)];
  const newKek = world.group.rekeySa!;
  const saKeys = world.planner.keyTree!.saKeysForGroup(newKek.keymat);
  for (const sa of saKeys) {
    assert.equal(sa.keyId, SA_KEY_ID);
    for (const key of fKeys) assert.throws(() => unwrapKey(newKek.policy.keyWrap, key, sa.encryptedKey));
  }
  // And the second message (over the new KEK) is unreadable to F: unknown SPI, state unchanged.
  const stateAfter = f.follower.state;
  const second = world.sent[world.sent.length - 1]!;
  assert.equal(second.kind, 'multicast');
  if (second.kind === 'multicast') {
    const events = f.follower.onDatagram(second.datagrams[0]!, world.now);
    assert.equal(events[0]?.type, 'rejected');
  }
  assert.equal(f.follower.state, stateAfter);
  // The four others keep following.
  world.deliver(world.planner.rekeyNow('all', world.now));
  for (const m of members.filter((x) => x !== f)) assertInSync(world, m);
});

function forge(world: World, over: Group['rekeySa'], messageId: number, signer = world.signingKey): Buffer {
  const kek = over!;
  const cipher = createSkCipher({ encr: kek.policy.encryption.id, encrKeyBits: kek.policy.encryption.keyBits, integ: kek.policy.integrity }, rekeySaSkKeys(kek.keys));
  const built = buildRekey({
    sa: { spi: kek.spi, cipher, signer: signer && createRekeySigner(signer.privateKey, signer.algorithm) },
    messageId,
    deletes: [deleteSas(ESP, [world.group.dataSecuritySas[0]!.spi])],
  });
  return built.datagrams[0]!;
}

test('replayed, wrongly signed, bad ICV, reused Message ID and unknown SPI GSA_REKEYs are rejected and change nothing', () => {
  const world = new World(groupConfig({ rekey: 'signature' }));
  const m = world.register('m');
  const rekey = world.planner.rekeyNow('tek', world.now);
  world.deliver(rekey);
  assertInSync(world, m);
  const action = rekey.actions[0]!;
  assert.equal(action.kind, 'multicast');
  if (action.kind !== 'multicast') return;
  const kek = world.group.rekeySa;
  const next = kek!.messageIds.peek();
  const flipped = forge(world, kek, next);
  flipped[flipped.length - 1]! ^= 1;
  const unknown = Buffer.from(action.datagrams[0]!);
  unknown.fill(0x5a, 0, 16);
  const cases: [string, Buffer][] = [
    ['replay', action.datagrams[0]!],
    ['bad-signature', forge(world, kek, next, newSigningKey())],
    ['bad-icv', flipped],
    ['replay', forge(world, kek, action.messageId)],
    ['unknown-spi', unknown],
  ];
  for (const [reason, datagram] of cases) {
    const before = m.follower.state;
    const snapshot = structuredClone({ ...before, path: before.path?.keys, rekeySa: { ...before.rekeySa, auth: undefined } });
    const events = m.follower.onDatagram(datagram, world.now);
    assert.deepEqual(events.map((e) => (e.type === 'rejected' ? e.reason : e.type)), [reason]);
    assert.equal(m.follower.state, before, `${reason}: state is the same object`);
    assert.deepEqual(structuredClone({ ...before, path: before.path?.keys, rekeySa: { ...before.rekeySa, auth: undefined } }), snapshot);
  }
  // A correctly signed message with the next Message ID is still accepted afterwards.
  assert.deepEqual(m.follower.onDatagram(forge(world, kek, next), world.now).map((e) => e.type), []);
  assert.equal(m.follower.state.rekeySa!.lastMessageId, next);
});

test('a member that misses a rekey detects it: GSA_NEXT_SPI on the Rekey SA and on data, and soft lifetimes', () => {
  const world = new World(groupConfig({ rekey: 'signature', tekLifetime: 600 }));
  const a = world.register('a');
  const lost = world.register('lost');
  world.deliver(world.planner.rekeyNow('all', world.now)); // announces the next KEK and TEK SPIs
  const announced = world.planner.announcedNextSpis;
  world.deliver(world.planner.rekeyNow('kek', world.now), { drop: ['lost'] });
  assert.deepEqual(world.group.rekeySa!.spi, announced.kek, 'the announced SPI was used');
  world.deliver(world.planner.rekeyNow('tek', world.now), { drop: [] });
  assertInSync(world, a);
  const resync = ofType(lost, 'resync-needed');
  assert.equal(resync.length, 1);
  assert.equal(resync[0]!.reason, 'missed-rekey');
  assert.ok(resync[0]!.reregisterAt > world.now, 'as expected');
  // Data on an announced TEK SPI that no rekey installed.
  const w2 = new World(groupConfig({ rekey: 'signature', tekLifetime: 600 }), undefined, {}, 'w2');
  const b = w2.register('b');
  w2.deliver(w2.planner.rekeyNow('tek', w2.now));
  const nextTek = w2.planner.announcedNextSpis.teks[0]!;
  w2.deliver(w2.planner.rekeyNow('tek', w2.now), { drop: ['b'] });
  assert.deepEqual(w2.group.dataSecuritySas[0]!.spi, nextTek);
  const ev = b.follower.onUnknownDataSpi(ESP, nextTek, w2.now);
  assert.equal(ev[0]?.type === 'resync-needed' && ev[0].reason, 'missed-rekey');
  assert.deepEqual(b.follower.onUnknownDataSpi(ESP, Buffer.from('deadbeef', 'hex'), w2.now), []);
  // Soft lifetime: a member that missed the scheduled TEK rekey asks before the old TEK runs out.
  const w3 = new World(groupConfig({ rekey: 'signature', tekLifetime: 600 }), undefined, {}, 'w3');
  const ok = w3.register('ok');
  const deaf = w3.register('deaf');
  const oldTek = w3.group.dataSecuritySas[0]!;
  w3.deliver(w3.planner.tick(w3.planner.nextDeadline()!), { drop: ['deaf'] });
  w3.advance(oldTek.expiresAt - 1);
  const soft = ofType(deaf, 'resync-needed');
  assert.equal(soft.length, 1);
  assert.equal(soft[0]!.reason, 'soft-lifetime');
  assert.ok(soft[0]!.at < oldTek.expiresAt - 10_000, 'as expected');
  assert.deepEqual(ofType(ok, 'resync-needed'), []);
});

test('Sender-ID exhaustion excludes everyone; members re-register under new TEKs with Sender-IDs from 0', () => {
  const world = new World(groupConfig({ rekey: 'signature', senderIdBits: 2, dtd: 3 }));
  const senders = ['s1', 's2', 's3', 's4'].map((n) => world.register(n, 'sender'));
  const oldTek = world.group.dataSecuritySas[0]!.spi;
  assert.equal(world.group.senderIds.exhausted, true);
  const out = world.planner.tick(world.now);
  assert.ok(out.events.some((e) => e.type === 'all-members-excluded' && e.reason === 'sender-ids-exhausted'), 'all excluded');
  world.deliver(out);
  for (const s of senders) {
    assert.equal(ofType(s, 'excluded').length, 1);
    assert.equal(s.follower.state.status, 'excluded');
    assert.equal(s.follower.outboundSa(ESP, world.now), undefined, 'senders stop at once');
  }
  assert.equal(world.group.members.size, 0);
  assert.notDeepEqual(world.group.dataSecuritySas[0]!.spi, oldTek);
  const again = world.register('s1-again', 'sender');
  assert.deepEqual(again.follower.state.senderIds, [0]);
  assertInSync(world, again);
});

test('signing key rollover: AUTH_KEY arrives in a KEK rekey signed with the old key; later rekeys verify with the new one', () => {
  const world = new World(groupConfig({ rekey: 'signature' }));
  const members = ['a', 'b'].map((n) => world.register(n));
  const oldKey = world.signingKey!;
  const newKey = newSigningKey();
  world.deliver(world.planner.rotateSigningKey(newKey, world.now));
  for (const m of members) assert.ok(ofType(m, 'kek-updated').some((e) => e.authKeyChanged), 'AUTH_KEY changed');
  assert.equal(world.group.signingKey, newKey);
  world.deliver(world.planner.rekeyNow('tek', world.now));
  for (const m of members) assertInSync(world, m);
  const kek = world.group.rekeySa;
  const events = members[0]!.follower.onDatagram(forge(world, kek, kek!.messageIds.peek(), oldKey), world.now);
  assert.deepEqual(events.map((e) => (e.type === 'rejected' ? e.reason : e.type)), ['bad-signature']);
  // A member registering now gets the new AUTH_KEY.
  const late = world.register('late');
  world.deliver(world.planner.rekeyNow('tek', world.now));
  assertInSync(world, late);
});

test('implicit authentication and IKE fragmentation: members reassemble and follow', () => {
  const world = new World(groupConfig({ rekey: 'implicit' }), undefined, { fragmentation: { maxDatagramSize: 576, ipVersion: 4, marker: false } });
  const members = Array.from({ length: 40 }, (_, i) => world.register(`m${i}`));
  const out = world.planner.excludeMembers(members.slice(0, 13).map((m) => m.id), world.now);
  assert.ok(out.actions.some((a) => a.kind === 'multicast' && a.fragmented && a.datagrams.length > 1), 'the exclusion rekey is fragmented');
  world.deliver(out);
  for (const m of members.slice(13)) assertInSync(world, m);
  for (const m of members.slice(0, 13)) assert.equal(m.follower.state.status, 'excluded');
});

test('inband groups: GSA_INBAND_REKEY contents are applied, the response is empty, exclusion by Delete GIKE_UPDATE SPI 0', () => {
  const world = new World(groupConfig({ rekey: 'inband', atd: 1, dtd: 2 }));
  const [a, b, c] = ['a', 'b', 'c'].map((n) => world.register(n, 'both'));
  const old = world.group.dataSecuritySas[0]!.spi;
  const out = world.planner.rekeyNow('tek', world.now);
  const action = out.actions[0]!;
  assert.equal(action.kind, 'inband');
  if (action.kind === 'inband') assert.equal(action.deliveries.length, 3);
  world.deliver(out);
  const fresh = world.group.dataSecuritySas[0]!;
  for (const m of [a!, b!, c!]) {
    assert.deepEqual(ofType(m, 'rejected'), []);
    const held = m.follower.state.dataSecurity.filter((sa) => sa.spi.equals(fresh.spi));
    assert.deepEqual(held.map((sa) => sa.direction).sort(), ['inbound', 'outbound']);
    assert.deepEqual(m.follower.outboundSa(ESP, world.now)!.spi, old, 'ATD not over yet');
  }
  world.advance(world.now + 1_000);
  assert.deepEqual(a!.follower.outboundSa(ESP, world.now)!.spi, fresh.spi);
  world.deliver(world.planner.excludeMembers([c!.id], world.now));
  assert.equal(ofType(c!, 'excluded')[0]?.cause, 'delete');
  const newest = world.group.dataSecuritySas[0]!.spi;
  assert.ok(!c!.follower.state.dataSecurity.some((sa) => sa.spi.equals(newest)), 'as expected');
  for (const m of [a!, b!]) assert.ok(m.follower.state.dataSecurity.some((sa) => sa.spi.equals(newest)), 'others have the new TEK');
  // Malformed inband content: rejected, state unchanged, still an empty response.
  const before = a!.follower.state;
  const bad = a!.follower.onInbandRekey([world.sent[0]!.kind === 'inband' ? world.sent[0]!.deliveries[0]!.payloads[0]! : deleteSas(ESP, [old])], world.now, { kwa: a!.kwa, key: a!.gskW });
  assert.deepEqual(bad.response, []);
  assert.equal(bad.events[0]?.type, 'rejected');
  assert.equal(a!.follower.state, before);
});
