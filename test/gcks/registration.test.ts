import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { memoryCounterReservation } from '../../src/gcks/counters.ts';
import {
  checkRegistration,
  completeRegistration,
  leaveGroup,
  parseRegistrationRequest,
  registerMember,
  type GroupDirectory,
  type RegistrationOutcome,
  type RegistrationRequest,
} from '../../src/gcks/registration.ts';
import { buildSag } from '../../src/gm/policy.ts';
import { loadGmConfig } from '../../src/gm/config.ts';
import { isGsaPayload, isKdPayload, validateExchange } from '../../src/wire/validator.ts';
import { initialMessageId, isKekPolicy, keyLifetimeSeconds } from '../../src/wire/gsa.ts';
import { ExchangeType, GcauthId, IdType, KwaId, NotifyType, PayloadType, ProtocolId, TransformAttr, TransformType } from '../../src/wire/iana.ts';
import { makeNotify, type NotifyPayload } from '../../src/wire/payloads/notify.ts';
import type { Payload } from '../../src/wire/payload.ts';
import { directory, email, fqdn, gskWFor, NOW, SMALL, TELEMETRY, VIDEO } from './fixtures.ts';

function request(over: Partial<RegistrationRequest>): RegistrationRequest {
  return {
    member: { id: fqdn('a.plant1.example') },
    groupId: VIDEO,
    unicastKwa: KwaId.KW_5649_256,
    gskW: gskWFor(KwaId.KW_5649_256),
    exchange: ExchangeType.GSA_AUTH,
    now: NOW,
    ...over,
  };
}

function rejectedWith(o: RegistrationOutcome, notify: number, reason: RegExp): void {
  assert.equal(o.kind, 'rejected', 'expected a refusal');
  if (o.kind !== 'rejected') return;
  assert.equal(o.notify, notify);
  assert.match(o.reason, reason);
  assert.equal(o.payloads.length, 1);
  const n = o.payloads[0] as NotifyPayload;
  assert.deepEqual([n.type, n.notifyType, n.protocolId, n.spi.length, n.data.kind], [PayloadType.NOTIFY, notify, 0, 0, 'empty']);
  const event = o.events.at(-1)!;
  assert.equal(event.type, 'registration-rejected');
}

/** Every GSA/KD the key server emits passes the Section 5 validator (checked here independently). */
function assertValidResponse(o: RegistrationOutcome, req: RegistrationRequest): void {
  assert.equal(o.kind, 'registered');
  const gsa = o.payloads.find(isGsaPayload)!;
  const violations = validateExchange(req.exchange, o.payloads, {
    rekeyStyle: gsa.policies.some(isKekPolicy) ? 'multicast' : 'inband',
    groupSender: req.groupSender !== undefined,
    keyTree: false,
    senderIdsRequested: req.groupSender,
  });
  assert.deepEqual(violations.map((v) => v.message), []);
}

const GM_DEFAULTS = loadGmConfig(
  'identity: gm@x.example\ncredentials: {psk: {secret: "0123456789abcdef"}}\nkeyServers: [{address: 192.0.2.1}]\ngroups: [{id: "@g"}]\n',
  'gm.yaml',
).groups[0]!.accept;

describe('registration: error notifies (RFC 9838 2.3.1)', () => {
  it('INVALID_GROUP_ID for an unknown group', () => {
    rejectedWith(registerMember(directory(), request({ groupId: fqdn('nope.example') })), NotifyType.INVALID_GROUP_ID, /no group with ID nope\.example/);
  });

  it('AUTHORIZATION_FAILED for a member not allowed to join, or to send', () => {
    const d = directory();
    rejectedWith(registerMember(d, request({ member: { id: fqdn('intruder.example') } })), NotifyType.AUTHORIZATION_FAILED, /not allowed to join/);
    rejectedWith(registerMember(d, request({ groupSender: 1 })), NotifyType.AUTHORIZATION_FAILED, /not allowed to send/);
  });

  it('NO_PROPOSAL_CHOSEN when the SAg cannot carry the policy, or the registration KWK is too short', () => {
    const d = directory();
    const chachaOnly = loadGmConfig(
      `identity: gm@x.example
credentials: {psk: {secret: "0123456789abcdef"}}
keyServers: [{address: 192.0.2.1}]
groups: [{id: "@g", accept: {dataSecurity: {encryption: chacha20poly1305}}}]
`,
      'gm.yaml',
    ).groups[0]!.accept;
    rejectedWith(
      registerMember(d, request({ sag: buildSag(chachaOnly).proposals })),
      NotifyType.NO_PROPOSAL_CHOSEN,
      /Data-Security SA 1 uses ENCR AES_GCM_16\/256, not in the ESP proposal/,
    );
    const noRekey = buildSag(GM_DEFAULTS).proposals.filter((p) => p.protocolId !== ProtocolId.GIKE_UPDATE);
    rejectedWith(registerMember(d, request({ sag: noRekey })), NotifyType.NO_PROPOSAL_CHOSEN, /no GIKE_UPDATE proposal/);
    rejectedWith(
      registerMember(d, request({ unicastKwa: KwaId.KW_5649_128, gskW: gskWFor(KwaId.KW_5649_128) })),
      NotifyType.NO_PROPOSAL_CHOSEN,
      /128-bit key wrap key is shorter/,
    );
    assert.equal(registerMember(d, request({ sag: buildSag(GM_DEFAULTS).proposals })).kind, 'registered', 'defaults fit defaults');
  });

  it('a GM that lists GCAUTH must list ours; one that lists none is not restricted', () => {
    const d = directory();
    const sag = buildSag(GM_DEFAULTS).proposals; // lists Digital Signature only
    rejectedWith(
      registerMember(d, request({ groupId: TELEMETRY, sag })),
      NotifyType.NO_PROPOSAL_CHOSEN,
      /GCAUTH 1/,
    );
    const withoutGcauth = sag.map((p) => ({ ...p, transforms: p.transforms.filter((t) => t.type !== TransformType.GCAUTH) }));
    // telemetry uses KW_ARX and seq32, both in the defaults.
    assert.equal(registerMember(d, request({ groupId: TELEMETRY, sag: withoutGcauth })).kind, 'registered');
  });

  it('REGISTRATION_FAILED when the group is full; a re-registration does not count twice', () => {
    const d = directory();
    for (const n of ['a', 'b', 'c']) assert.equal(registerMember(d, request({ member: { id: fqdn(`${n}.plant1.example`) } })).kind, 'registered');
    rejectedWith(registerMember(d, request({ member: { id: fqdn('d.plant1.example') } })), NotifyType.REGISTRATION_FAILED, /full \(capacity 3\)/);
    const again = registerMember(d, request({ member: { id: fqdn('b.plant1.example') } }));
    assert.equal(again.kind, 'registered');
    assert.equal(again.events[0]?.type === 'member-registered' && again.events[0].reregistration, true);
  });

  it('REGISTRATION_FAILED when Sender-IDs run out, with the exclude-all signal', () => {
    const d = directory(); // telemetry: 2 Sender-ID bits = 4 Sender-IDs, 2 per member
    const sender = (n: string, count: number): RegistrationOutcome =>
      registerMember(d, request({ groupId: TELEMETRY, member: { id: fqdn(`${n}.example`) }, groupSender: count }));
    const first = sender('s1', 2);
    assert.deepEqual(first.kind === 'registered' && first.member.senderIds, [0, 1]);
    const second = sender('s2', 5);
    assert.deepEqual(second.kind === 'registered' && second.member.senderIds, [2, 3]);
    assert.ok(second.events.some((e) => e.type === 'sender-ids-exhausted'), 'the last ones signal exhaustion');
    const third = sender('s3', 1);
    rejectedWith(third, NotifyType.REGISTRATION_FAILED, /no Sender-ID left/);
    assert.ok(third.events.some((e) => e.type === 'sender-ids-exhausted'));
    assert.equal(registerMember(d, request({ groupId: TELEMETRY, member: { id: fqdn('r.example') } })).kind, 'registered', 'receivers still join');
  });
});

describe('registration: responses', () => {
  it('signed multicast group: KEK with GCAUTH + attribute 18, TEKs, GW policy, AUTH_KEY and Sender-IDs', () => {
    const req = request({ member: { id: email('gm1@example.org') }, groupSender: 3 });
    const o = registerMember(directory(), req);
    assertValidResponse(o, req);
    if (o.kind !== 'registered') return;
    assert.deepEqual(o.payloads.map((p) => p.type), [PayloadType.GSA, PayloadType.KD], 'tunnel mode: no USE_TRANSPORT_MODE');
    const gsa = o.payloads.find(isGsaPayload)!;
    const kek = gsa.policies.find(isKekPolicy)!;
    const gcauth = kek.transforms.find((t) => t.type === TransformType.GCAUTH)!;
    assert.equal(gcauth.id, GcauthId.DIGITAL_SIGNATURE);
    assert.ok(gcauth.attributes.some((a) => a.type === TransformAttr.SIGNATURE_ALGORITHM_IDENTIFIER));
    assert.equal(keyLifetimeSeconds(kek), 86400);
    assert.equal(initialMessageId(kek), undefined, 'a fresh Rekey SA starts at Message ID 0');
    assert.deepEqual(o.member.senderIds, [0, 1, 2]);
    const kd = o.payloads.find(isKdPayload)!;
    assert.deepEqual(kd.keyBags.map((b) => b.kind === 'group' ? b.protocol : 'member'), [ProtocolId.GIKE_UPDATE, ProtocolId.ESP, ProtocolId.ESP, 'member']);
    const ev = o.events.find((e) => e.type === 'member-registered');
    assert.ok(ev && ev.type === 'member-registered' && ev.rule === 'id gm1@example.org' && ev.sender);
  });

  it('GSA_INITIAL_MESSAGE_ID once the Rekey SA has been used, remaining lifetimes for late joiners', () => {
    const d = directory();
    const video = d.find(VIDEO)!;
    for (let i = 0; i < 5; i++) video.rekeySa!.messageIds.take();
    const req = request({ now: NOW + 600_000, exchange: ExchangeType.GSA_REGISTRATION });
    const o = registerMember(d, req);
    assertValidResponse(o, req);
    const kek = o.kind === 'registered' ? o.payloads.find(isGsaPayload)!.policies.find(isKekPolicy)! : undefined;
    assert.equal(kek && initialMessageId(kek), 5);
    assert.equal(kek && keyLifetimeSeconds(kek), 86400 - 600);
  });

  it('transport mode adds N(USE_TRANSPORT_MODE); inband groups carry no KEK and no lifetimes', () => {
    const t = request({ groupId: TELEMETRY, member: { id: fqdn('x.example') } });
    const to = registerMember(directory(), t);
    assertValidResponse(to, t);
    assert.ok(to.kind === 'registered' && to.payloads.some((p) => p.type === PayloadType.NOTIFY && (p as NotifyPayload).notifyType === NotifyType.USE_TRANSPORT_MODE));
    const s = request({ groupId: SMALL, member: { id: fqdn('x.example') } });
    const so = registerMember(directory(), s);
    assertValidResponse(so, s);
    const gsa = so.kind === 'registered' ? so.payloads.find(isGsaPayload)! : undefined;
    assert.ok(gsa && !gsa.policies.some(isKekPolicy));
    assert.ok(gsa && gsa.policies.every((p) => p.kind !== 'sa' || p.attributes.length === 0));
  });

  it('leave: IDg + NO_PROPOSAL_CHOSEN or REGISTRATION_FAILED removes the member, empty response', () => {
    const d = directory();
    registerMember(d, request({}));
    assert.equal(d.find(VIDEO)!.members.size, 1);
    const left = leaveGroup(d, { member: { id: fqdn('a.plant1.example') }, groupId: VIDEO, notify: NotifyType.NO_PROPOSAL_CHOSEN, now: NOW });
    assert.deepEqual(left.payloads, []);
    assert.equal(d.find(VIDEO)!.members.size, 0);
    assert.deepEqual(left.events.map((e) => e.type === 'member-left' && e.wasMember), [true]);
    assert.deepEqual(leaveGroup(d, { member: { id: fqdn('a.plant1.example') }, groupId: fqdn('nope'), notify: NotifyType.REGISTRATION_FAILED, now: NOW }).payloads, []);
  });

  it('parses registration and leave requests', () => {
    const idg: Payload = { type: PayloadType.IDg, critical: false, idType: IdType.ID_KEY_ID, data: Buffer.from('video') };
    const sag = buildSag(GM_DEFAULTS);
    const reg = parseRegistrationRequest([idg, sag, makeNotify(NotifyType.GROUP_SENDER, { kind: 'sender-id-count', count: 3 })]);
    assert.ok(reg.kind === 'register' && reg.groupSender === 3 && reg.sag?.length === sag.proposals.length);
    assert.deepEqual(parseRegistrationRequest([idg, makeNotify(NotifyType.REGISTRATION_FAILED)]), { kind: 'leave', groupId: VIDEO, notify: NotifyType.REGISTRATION_FAILED });
    assert.equal(parseRegistrationRequest([sag]).kind, 'malformed');
    assert.equal(memoryCounterReservation().reservedUpTo('x'), 0);
  });
});

describe('registration: checks before anything is allocated', () => {
  const chachaOnly = (): RegistrationRequest['sag'] =>
    buildSag(
      loadGmConfig(
        'identity: gm@x.example\ncredentials: {psk: {secret: "0123456789abcdef"}}\nkeyServers: [{address: 192.0.2.1}]\ngroups: [{id: "@g", accept: {dataSecurity: {encryption: chacha20poly1305}}}]\n',
        'gm.yaml',
      ).groups[0]!.accept,
    ).proposals;
  const fill = (d: GroupDirectory): void => {
    for (const n of ['a', 'b', 'c']) registerMember(d, request({ member: { id: fqdn(`${n}.plant1.example`) } }));
  };
  const exhaust = (d: GroupDirectory): void => {
    registerMember(d, request({ groupId: TELEMETRY, member: { id: fqdn('s1.example') }, groupSender: 2 }));
    registerMember(d, request({ groupId: TELEMETRY, member: { id: fqdn('s2.example') }, groupSender: 2 }));
  };
  const cases: readonly { readonly name: string; readonly setup?: (d: GroupDirectory) => void; readonly req: RegistrationRequest }[] = [
    { name: 'unknown group', req: request({ groupId: fqdn('nope.example') }) },
    { name: 'not allowed to join', req: request({ member: { id: fqdn('intruder.example') } }) },
    { name: 'not allowed to send', req: request({ groupSender: 1 }) },
    { name: 'SAg', req: request({ sag: chachaOnly() }) },
    { name: 'weak key wrap', req: request({ unicastKwa: KwaId.KW_5649_128, gskW: gskWFor(KwaId.KW_5649_128) }) },
    { name: 'full', setup: fill, req: request({ member: { id: fqdn('d.plant1.example') } }) },
    { name: 'Sender-IDs used up', setup: exhaust, req: request({ groupId: TELEMETRY, member: { id: fqdn('s3.example') }, groupSender: 1 }) },
  ];

  it('checkRegistration refuses whatever registerMember refuses, with the same notify, reason and events', () => {
    for (const c of cases) {
      const checked = directory();
      const registered = directory();
      c.setup?.(checked);
      c.setup?.(registered);
      const verdict = checkRegistration(checked, c.req);
      const outcome = registerMember(registered, c.req);
      assert.equal(outcome.kind, 'rejected', c.name);
      assert.equal(verdict.kind, 'rejected', c.name);
      if (verdict.kind !== 'rejected' || outcome.kind !== 'rejected') continue;
      assert.deepEqual([verdict.notify, verdict.reason, verdict.events, verdict.payloads], [outcome.notify, outcome.reason, outcome.events, outcome.payloads], c.name);
    }
  });

  it('used-up Sender-IDs are refused before allocating, with the exclude-all signal', () => {
    const d = directory();
    exhaust(d);
    const verdict = checkRegistration(d, request({ groupId: TELEMETRY, member: { id: fqdn('s3.example') }, groupSender: 1 }));
    assert.equal(verdict.kind, 'rejected');
    if (verdict.kind !== 'rejected') return;
    rejectedWith(verdict, NotifyType.REGISTRATION_FAILED, /no Sender-ID left/);
    assert.deepEqual(verdict.events.map((e) => e.type), ['sender-ids-exhausted', 'registration-rejected']);
    assert.equal(d.find(TELEMETRY)!.members.size, 2, 'nobody recorded');
    assert.equal(checkRegistration(d, request({ groupId: TELEMETRY, member: { id: fqdn('r.example') } })).kind, 'admissible', 'receivers still pass');
  });

  it('an admissible check allocates no Sender-ID and records no member; completeRegistration then registers', () => {
    const d = directory();
    const telemetry = d.find(TELEMETRY)!;
    const req = request({ groupId: TELEMETRY, member: { id: fqdn('s1.example') }, groupSender: 2 });
    const verdict = checkRegistration(d, req);
    assert.equal(verdict.kind, 'admissible');
    if (verdict.kind !== 'admissible') return;
    assert.deepEqual([verdict.group, verdict.rule, verdict.sender, verdict.needsSenderIds, verdict.reregistration], [telemetry, 'any', true, true, false]);
    assert.equal(checkRegistration(d, req).kind, 'admissible', 'asking again changes nothing');
    assert.equal(telemetry.senderIds.remaining, 4);
    assert.equal(telemetry.members.size, 0);
    const o = completeRegistration(verdict, req);
    assertValidResponse(o, req);
    assert.deepEqual(o.member.senderIds, [0, 1]);
    assert.equal(telemetry.members.size, 1);
  });
});
