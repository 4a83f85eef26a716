import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { deterministicRandom } from '../../src/crypto/random.ts';
import { type ConfigError } from '../../src/gcks/config-fields.ts';
import { registerMember } from '../../src/gcks/registration.ts';
import { checkGmConfig, loadGmConfig } from '../../src/gm/config.ts';
import { buildSag, checkGroupPolicy } from '../../src/gm/policy.ts';
import { excludedReregistrationTime, reregistrationTime, retryDelay } from '../../src/gm/schedule.ts';
import type { GroupSaTable } from '../../src/gm/sa-table.ts';
import { isGsaPayload } from '../../src/wire/validator.ts';
import { EncrId, ExchangeType, GcauthId, KwaId, ProtocolId, SnId, TransformType } from '../../src/wire/iana.ts';
import { directory, fqdn, gskWFor, NOW, SMALL, TELEMETRY, VIDEO } from '../gcks/fixtures.ts';

const BASE = 'identity: gm@x.example\ncredentials: {psk: {secret: "0123456789abcdef"}}\nkeyServers: [{address: 192.0.2.1}, {address: "2001:db8::2", port: 848, id: "@gcks.example"}]\n';

function errorsOf(text: string): readonly ConfigError[] {
  const r = checkGmConfig(text, 'gm.yaml');
  assert.equal(r.ok, false);
  return r.ok ? [] : r.errors;
}
function hasError(errors: readonly ConfigError[], path: string, reason: RegExp): void {
  assert.ok(errors.some((e) => e.path === path && reason.test(e.reason)), `no ${path} ~ ${reason} in:\n${errors.map((e) => e.message).join('\n')}`);
}

describe('GM configuration', () => {
  it('reads key servers in order, roles and defaults', () => {
    const c = loadGmConfig(`${BASE}groups:\n  - {id: {type: ID_KEY_ID, value: video}, role: sender, senderIds: 2}\n  - {id: "@telemetry.example"}\n`, 'gm.yaml');
    assert.deepEqual(c.keyServers.map((k) => `${k.address}:${k.port}`), ['192.0.2.1:500', '2001:db8::2:848']);
    assert.equal(c.groups[0]!.role, 'sender');
    assert.equal(c.groups[0]!.senderIds, 2);
    assert.equal(c.groups[1]!.role, 'receiver');
    assert.equal(c.groups[1]!.senderIds, 0);
    const a = c.groups[1]!.accept[0]!;
    assert.deepEqual(a.rekey.keyWrap, [KwaId.KW_5649_256, KwaId.KW_ARX]);
    assert.deepEqual(a.rekey.authentication, [GcauthId.DIGITAL_SIGNATURE]);
    assert.deepEqual(a.dataSecurity.sequenceNumbers, [SnId.SEQ32, SnId.UNSPECIFIED32]);
  });

  it('names every bad field', () => {
    const errors = errorsOf(`identity: gm@x.example
credentials: {psk: {secret: short}}
keyServers: [{address: gcks.example}, {port: 0}]
groups:
  - {id: "@g", role: receiver, senderIds: 2, accept: [{rekey: {keyWrap: kw_5649_64}}, {dataSecurity: {protocols: [esp, gre]}}]}
  - {id: "@g", role: listener}
`);
    hasError(errors, 'credentials.psk.secret', /at least 16 octets/);
    hasError(errors, 'keyServers[0].address', /IP address/);
    hasError(errors, 'keyServers[1].address', /is required/);
    hasError(errors, 'keyServers[1].port', /between 1/);
    hasError(errors, 'groups[0].senderIds', /only a sender/);
    hasError(errors, 'groups[0].accept[0].rekey.keyWrap', /must be one of/);
    hasError(errors, 'groups[0].accept[1].dataSecurity.protocols[1]', /esp, ah/);
    hasError(errors, 'groups[1].role', /receiver, sender, both/);
    hasError(errorsOf('identity: gm@x\nkeyServers: []\ngroups: []\n'), 'credentials', /is required/);
  });
});

describe('SAg and policy check', () => {
  const accept = loadGmConfig(
    `${BASE}groups:
  - id: "@g"
    accept:
      - {rekey: {encryption: aes256gcm16, keyWrap: kw_5649_256}, dataSecurity: {encryption: aes256gcm16}}
      - {rekey: {encryption: chacha20poly1305, keyWrap: kw_arx, authentication: [signature, implicit]}, dataSecurity: {encryption: [chacha20poly1305, aes256], integrity: sha256, protocols: [esp, ah]}}
`,
    'gm.yaml',
  ).groups[0]!.accept;

  it('links dependent proposals by Proposal Num, SPI Size 0, INTEG only where needed', () => {
    const sag = buildSag(accept);
    assert.deepEqual(sag.proposals.map((p) => [p.num, p.protocolId]), [
      [1, ProtocolId.GIKE_UPDATE],
      [1, ProtocolId.ESP],
      [2, ProtocolId.GIKE_UPDATE],
      [2, ProtocolId.ESP],
      [2, ProtocolId.AH],
    ]);
    assert.ok(sag.proposals.every((p) => p.spi.length === 0));
    assert.ok(!sag.proposals[1]!.transforms.some((t) => t.type === TransformType.INTEG), 'AEAD-only ESP lists no INTEG');
    assert.ok(sag.proposals[3]!.transforms.some((t) => t.type === TransformType.INTEG), 'AES-CBC needs INTEG');
    assert.deepEqual(sag.proposals[2]!.transforms.filter((t) => t.type === TransformType.KWA).map((t) => t.id), [KwaId.KW_ARX]);
  });

  it('the key server honours the linking: set 1 covers video, neither set covers mixed ciphers', () => {
    const sag = buildSag(accept).proposals;
    const d = directory();
    const reg = (groupId: typeof VIDEO) =>
      registerMember(d, { member: { id: fqdn('a.plant1.example') }, groupId, sag, unicastKwa: KwaId.KW_5649_256, gskW: gskWFor(KwaId.KW_5649_256), exchange: ExchangeType.GSA_AUTH, now: NOW });
    // video: AES-GCM KEK + one AES-GCM TEK and one ChaCha TEK: set 1 lacks ChaCha, set 2 lacks AES-GCM.
    const o = reg(VIDEO);
    assert.ok(o.kind === 'rejected' && /proposal set 1: .*CHACHA20.*; proposal set 2: .*AES_GCM_16/.test(o.reason), o.kind === 'rejected' ? o.reason : '');
  });

  it('checks a received GSA and says what is not acceptable', () => {
    const d = directory();
    const o = registerMember(d, { member: { id: fqdn('x.example') }, groupId: SMALL, unicastKwa: KwaId.KW_5649_256, gskW: gskWFor(KwaId.KW_5649_256), exchange: ExchangeType.GSA_AUTH, now: NOW });
    const gsa = o.kind === 'registered' ? o.payloads.find(isGsaPayload)! : undefined;
    assert.ok(gsa);
    // small: ESP AES-CBC/SHA-256 + AH SHA-256, inband: only alternative 2 fits.
    assert.deepEqual(checkGroupPolicy(gsa, 'tunnel', accept), { acceptable: true, alternative: 1 });
    const v = checkGroupPolicy(gsa, 'tunnel', [accept[0]!]);
    assert.ok(!v.acceptable && /cipher AES_CBC\/256 is not acceptable/.test(v.reason));
    const t = registerMember(d, { member: { id: fqdn('x.example') }, groupId: TELEMETRY, unicastKwa: KwaId.KW_ARX, gskW: gskWFor(KwaId.KW_ARX), exchange: ExchangeType.GSA_AUTH, now: NOW });
    const tg = t.kind === 'registered' ? t.payloads.find(isGsaPayload)! : undefined;
    assert.ok(tg);
    const onlyTunnel = [{ ...accept[1]!, modes: ['tunnel' as const] }];
    assert.match((checkGroupPolicy(tg, 'transport', onlyTunnel) as { reason: string }).reason, /transport mode is not acceptable/);
    assert.match((checkGroupPolicy(tg, 'transport', [accept[0]!]) as { reason: string }).reason, /Rekey SA cipher AES_GCM_16\/256|KWA|GCAUTH/);
    assert.equal(EncrId.AES_GCM_16, 20);
  });
});

describe('re-registration timing', () => {
  const table = (lifetimes: number[]): GroupSaTable => ({
    groupId: VIDEO,
    role: 'receiver',
    registeredAt: NOW,
    mode: 'tunnel',
    senderIds: [],
    dataSecurity: lifetimes.map((l, i) => ({
      protocolId: ProtocolId.ESP,
      spi: Buffer.from([0, 0, 1, i]),
      source: { type: 7, raw: Buffer.alloc(0) },
      destination: { type: 7, raw: Buffer.alloc(0) },
      integrity: 0,
      sequenceNumbers: 2,
      keys: { encrKey: Buffer.alloc(0), integKey: Buffer.alloc(0) },
      direction: 'inbound' as const,
      mode: 'tunnel' as const,
      installedAt: NOW,
      expiresAt: NOW + l * 1000,
    })),
  });

  it('before the earliest lifetime runs out, with jitter, never in the past', () => {
    const rng = deterministicRandom('soft');
    for (let i = 0; i < 100; i++) {
      const t = reregistrationTime(table([3600, 7200]), NOW, rng)!;
      // margin 360 s plus up to 180 s of jitter before the 3600 s expiry.
      assert.ok(t <= NOW + 3_240_000 && t >= NOW + 3_060_000, String(t - NOW));
    }
    assert.equal(reregistrationTime(table([60]), NOW + 59_000, rng), NOW + 59_000);
    assert.equal(reregistrationTime({ ...table([]), dataSecurity: [] }, NOW, rng), undefined);
  });

  it('backs off exponentially with jitter after errors, and a few seconds after exclusion', () => {
    const rng = deterministicRandom('retry');
    for (let attempt = 0; attempt < 12; attempt++) {
      const step = Math.min(300_000, 2000 * 2 ** attempt);
      const d = retryDelay(attempt, rng);
      assert.ok(d >= step / 2 && d <= step, `${attempt}: ${d}`);
    }
    const t = excludedReregistrationTime(NOW, rng) - NOW;
    assert.ok(t >= 1000 && t <= 5000);
  });
});
