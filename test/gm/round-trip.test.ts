import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { splitRekeySaKeys } from '../../src/crypto/keys.ts';
import { verifyWithAlgorithm, signWithAlgorithm } from '../../src/crypto/signature.ts';
import { splitDataSecurityKeymat, rekeySaAlgorithms } from '../../src/gcks/keymat.ts';
import { registerMember, type RegistrationRequest } from '../../src/gcks/registration.ts';
import { loadGmConfig } from '../../src/gm/config.ts';
import { openRegistrationResponse } from '../../src/gm/keys.ts';
import { buildSag, checkGroupPolicy } from '../../src/gm/policy.ts';
import { SaTable } from '../../src/gm/sa-table.ts';
import { ExchangeType, KwaId } from '../../src/wire/iana.ts';
import { decodePayloadChain, encodePayloadChain } from '../../src/wire/payload.ts';
import { isGsaPayload, isKdPayload, validateExchange } from '../../src/wire/validator.ts';
import { isKekPolicy } from '../../src/wire/gsa.ts';
import { directory, ed25519, email, fqdn, gskWFor, NOW, TELEMETRY, VIDEO } from '../gcks/fixtures.ts';
import type { Identity } from '../../src/ike/identity.ts';
import type { MemberRole } from '../../src/gm/config.ts';

const gmAccept = loadGmConfig(
  `identity: gm@x.example
credentials: {psk: {secret: "0123456789abcdef"}}
keyServers: [{address: 192.0.2.1}]
groups:
  - id: "@g"
    accept:
      rekey: {authentication: [signature, implicit]}
`,
  'gm.yaml',
).groups[0]!.accept;

interface Case {
  readonly name: string;
  readonly kwa: number;
  readonly group: Identity;
  readonly member: Identity;
  readonly role: MemberRole;
  readonly senderIds?: number;
}

const CASES: readonly Case[] = [
  { name: 'receiver, KW_5649_256, signed rekeys', kwa: KwaId.KW_5649_256, group: VIDEO, member: fqdn('a.plant1.example'), role: 'receiver' },
  { name: 'receiver, KW_ARX, signed rekeys', kwa: KwaId.KW_ARX, group: VIDEO, member: fqdn('a.plant1.example'), role: 'receiver' },
  { name: 'sender with 3 Sender-IDs, KW_5649_256', kwa: KwaId.KW_5649_256, group: VIDEO, member: email('gm1@example.org'), role: 'sender', senderIds: 3 },
  { name: 'sender and receiver, KW_ARX, transport mode, implicit rekeys', kwa: KwaId.KW_ARX, group: TELEMETRY, member: fqdn('t.example'), role: 'both', senderIds: 2 },
];

describe('in-memory registration round trip: GCKS core -> bytes -> GM core', () => {
  for (const c of CASES) {
    it(c.name, () => {
      const d = directory();
      const gskW = gskWFor(c.kwa, c.name);
      const groupSender = c.role === 'receiver' ? undefined : (c.senderIds ?? 1);
      const sag = buildSag(gmAccept);
      const req: RegistrationRequest = {
        member: { id: c.member },
        groupId: c.group,
        sag: sag.proposals,
        groupSender,
        unicastKwa: c.kwa,
        gskW,
        exchange: ExchangeType.GSA_AUTH,
        now: NOW,
      };
      const outcome = registerMember(d, req);
      assert.equal(outcome.kind, 'registered', outcome.kind === 'rejected' ? outcome.reason : '');
      if (outcome.kind !== 'registered') return;

      // Over the wire and back.
      const { firstType, bytes } = encodePayloadChain(outcome.payloads);
      const received = decodePayloadChain(firstType, bytes);
      const gsa = received.find(isGsaPayload)!;
      const ctx = { rekeyStyle: gsa.policies.some(isKekPolicy) ? ('multicast' as const) : ('inband' as const), groupSender: groupSender !== undefined, keyTree: false, senderIdsRequested: groupSender };
      assert.deepEqual(validateExchange(ExchangeType.GSA_AUTH, received, ctx).map((v) => v.message), []);
      assert.ok(received.find(isKdPayload));

      // The member: open, check the policy, install.
      const material = openRegistrationResponse(received, { exchange: ExchangeType.GSA_AUTH, unicastKwa: c.kwa, gskW, groupSender });
      const verdict = checkGroupPolicy(material.gsa, material.mode, gmAccept);
      assert.ok(verdict.acceptable, verdict.acceptable ? '' : verdict.reason);
      const table = new SaTable();
      const events = table.install(c.group, c.role, material, NOW);
      assert.deepEqual(events.map((e) => e.type), ['registered', 'policy', 'keys']);
      assert.ok(!JSON.stringify(events, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)).includes(gskW.toString('hex')));
      const installed = table.get(c.group)!;

      // Exactly the keys the server generated.
      const group = d.find(c.group)!;
      const kek = group.rekeySa!;
      assert.ok(installed.rekeySa);
      assert.ok(installed.rekeySa.spi.equals(kek.spi));
      const serverKek = splitRekeySaKeys(kek.keymat, rekeySaAlgorithms(kek.policy.encryption, kek.policy.integrity, kek.policy.keyWrap));
      assert.ok(installed.rekeySa.keys.gskE.equals(serverKek.gskE));
      assert.ok(installed.rekeySa.keys.gskA.equals(serverKek.gskA));
      assert.ok(installed.rekeySa.keys.gskW.equals(serverKek.gskW));
      assert.equal(installed.rekeySa.expiresAt, kek.expiresAt);
      assert.equal(installed.rekeySa.nextMessageId, 0);

      const directions = c.role === 'receiver' ? ['inbound'] : c.role === 'sender' ? ['outbound'] : ['inbound', 'outbound'];
      assert.equal(installed.dataSecurity.length, group.dataSecuritySas.length * directions.length);
      for (const tek of group.dataSecuritySas) {
        const mine = installed.dataSecurity.filter((sa) => sa.spi.equals(tek.spi));
        assert.deepEqual(mine.map((sa) => sa.direction), directions);
        const expected = splitDataSecurityKeymat(tek.keymat, tek.policy);
        for (const sa of mine) {
          assert.ok(sa.keys.encrKey.equals(expected.encrKey) && sa.keys.integKey.equals(expected.integKey));
          assert.equal(sa.protocolId, tek.policy.protocolId);
          assert.equal(sa.expiresAt, tek.expiresAt);
          assert.deepEqual(sa.destination, tek.policy.destination);
          assert.equal(sa.mode, group.config.mode);
        }
      }

      // Sender-IDs, and the AUTH_KEY that verifies the key server's signatures.
      const record = group.member(c.member)!;
      assert.deepEqual(installed.senderIds, record.senderIds);
      assert.equal(installed.senderIds.length, c.role === 'receiver' ? 0 : c.senderIds);
      assert.equal(installed.senderIdBits, c.role === 'receiver' ? undefined : group.config.senderIdBits);
      if (group.signingKey) {
        const auth = installed.rekeySa.authKey!;
        const sig = signWithAlgorithm(ed25519.algorithm, ed25519.privateKey, Buffer.from('rekey'));
        verifyWithAlgorithm(auth.algorithm, auth.publicKey, Buffer.from('rekey'), sig);
      } else {
        assert.equal(installed.rekeySa.authKey, undefined);
      }
    });
  }

  it('a wrong GSK_w opens nothing', () => {
    const d = directory();
    const o = registerMember(d, { member: { id: fqdn('a.plant1.example') }, groupId: VIDEO, unicastKwa: KwaId.KW_ARX, gskW: gskWFor(KwaId.KW_ARX, 'right'), exchange: ExchangeType.GSA_AUTH, now: NOW });
    assert.equal(o.kind, 'registered');
    assert.throws(
      () => openRegistrationResponse(o.payloads, { exchange: ExchangeType.GSA_AUTH, unicastKwa: KwaId.KW_ARX, gskW: gskWFor(KwaId.KW_ARX, 'wrong') }),
      /cannot unwrap the keys/,
    );
  });

  it('a newer registration replaces the older one; a stale one is ignored', () => {
    const d = directory();
    const gskW = gskWFor(KwaId.KW_5649_256);
    const reg = (now: number) => {
      const o = registerMember(d, { member: { id: fqdn('a.plant1.example') }, groupId: VIDEO, unicastKwa: KwaId.KW_5649_256, gskW, exchange: ExchangeType.GSA_AUTH, now });
      assert.equal(o.kind, 'registered');
      return openRegistrationResponse(o.payloads, { exchange: ExchangeType.GSA_AUTH, unicastKwa: KwaId.KW_5649_256, gskW });
    };
    const table = new SaTable();
    const stale = reg(NOW); // initial Message ID 0
    d.find(VIDEO)!.rekeySa!.messageIds.take();
    d.find(VIDEO)!.replaceDataSecuritySas(NOW + 1);
    const fresh = reg(NOW + 2); // initial Message ID 1, new TEKs
    table.install(VIDEO, 'receiver', fresh, NOW + 2);
    const events = table.install(VIDEO, 'receiver', stale, NOW + 3);
    assert.deepEqual(events.map((e) => e.type === 'error' && e.action), ['ignore']);
    assert.ok(table.get(VIDEO)!.dataSecurity[0]!.spi.equals(d.find(VIDEO)!.dataSecuritySas[0]!.spi), 'the newer SAs stay');
    d.find(VIDEO)!.replaceDataSecuritySas(NOW + 4);
    const newest = reg(NOW + 5);
    assert.deepEqual(table.install(VIDEO, 'receiver', newest, NOW + 5).map((e) => e.type), ['registered', 'policy', 'keys']);
    const spis = table.get(VIDEO)!.dataSecurity.map((sa) => sa.spi.toString('hex'));
    assert.deepEqual(spis, d.find(VIDEO)!.dataSecuritySas.map((t) => t.spi.toString('hex')), 'nothing of the older registration is left');
  });
});
