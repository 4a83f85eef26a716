import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { SimClock, SimNetwork, Simulation } from '../sim/network.ts';
import {
  assertSameKeys,
  ecdsaPki,
  EPOCH,
  gcksConfig,
  gmConfig,
  makeGcks,
  makeGm,
  ServiceNode,
  validatingTap,
  type GcksNode,
  type GmNode,
} from './fixtures.ts';
import type { GcksService, GcksServiceDeps, GcksServiceEvent } from '../../src/gcks/service.ts';
import type { GmService, GmServiceDeps, GmServiceEvent } from '../../src/gm/service.ts';
import type { GroupSpec } from './fixtures.ts';

const GCKS_EP = { address: '10.0.0.1', port: 500 };

interface World {
  readonly sim: Simulation;
  readonly gcks: GcksNode;
  readonly taps: { exchange: number; group: string; violations: string[] }[];
  member(identity: string, groups: readonly (string | GroupSpec)[], opts?: { deps?: Partial<GmServiceDeps>; servers?: { address: string; port: number }[]; psk?: string }): GmNode;
}

function world(opts: { gcks?: Partial<GcksServiceDeps>; config?: Parameters<typeof gcksConfig>[0] } = {}): World {
  const sim = new Simulation(new SimNetwork({ clock: new SimClock(EPOCH), latency: 5 }));
  const taps: World['taps'] = [];
  const gcks: GcksNode = sim.add(new ServiceNode<GcksService, GcksServiceEvent>(makeGcks(gcksConfig(opts.config), { inspectResponse: validatingTap(taps), ...opts.gcks }), GCKS_EP));
  let n = 0;
  return {
    sim,
    gcks,
    taps,
    member(identity, groups, o = {}) {
      const cfg = gmConfig(identity, o.servers ?? [GCKS_EP], groups, o.psk);
      const node: GmNode = sim.add(new ServiceNode<GmService, GmServiceEvent>(makeGm(cfg, o.deps), { address: `10.0.1.${++n}`, port: 500 }));
      sim.emit(node, node.take(node.service.start(sim.now)));
      return node;
    },
  };
}

function registeredGroups(gm: GmNode): string[] {
  return gm.of('registered').map((e) => e.group);
}

describe('registration in simulation (GcksService + GmService)', () => {
  it('a member joins one group with GSA_AUTH and holds exactly the keys the server generated', () => {
    const w = world();
    const gm = w.member('gm2@example.org', ['video']);
    w.sim.run(EPOCH + 2_000);
    assert.deepEqual(registeredGroups(gm), ['keyid:' + Buffer.from('video').toString('hex')]);
    const reg = w.gcks.of('member-registered');
    assert.equal(reg.length, 1);
    assert.equal(reg[0]!.exchange, 'GSA_AUTH');
    assert.equal(reg[0]!.member, 'gm2@example.org');
    assert.equal(reg[0]!.rekeySpi, w.gcks.service.groupKeys('video')!.rekeySa!.spi.toString('hex'));
    assertSameKeys(w.gcks.service, gm.service, 'video', 'video');
    assert.deepEqual(w.taps.map((t) => t.violations), [[]]);
    assert.deepEqual(gm.of('error'), []);
    assert.deepEqual(w.gcks.service.members('video').map((m) => m.member), ['gm2@example.org']);
  });

  it('a member joins several groups: the first in GSA_AUTH, the rest with GSA_REGISTRATION on the same IKE SA', () => {
    const w = world();
    const gm = w.member('gm1@example.org', [{ id: 'video', role: 'both', senderIds: 2 }, { id: 'telemetry', role: 'sender' }, 'small', 'vip']);
    w.sim.run(EPOCH + 2_000);
    const reg = w.gcks.of('member-registered');
    assert.deepEqual(reg.map((e) => [e.group, e.exchange]), [
      ['video', 'GSA_AUTH'],
      ['telemetry', 'GSA_REGISTRATION'],
      ['small', 'GSA_REGISTRATION'],
      ['vip', 'GSA_REGISTRATION'],
    ]);
    assert.equal(new Set(reg.map((e) => e.saId)).size, 1, 'one IKE SA');
    assert.deepEqual(reg[0]!.senderIds.length, 2);
    for (const g of ['video', 'telemetry', 'small', 'vip']) assertSameKeys(w.gcks.service, gm.service, g, g);
    const video = [...gm.service.saTable().groups][0]!;
    assert.deepEqual(video.senderIds, reg[0]!.senderIds);
    assert.deepEqual(video.dataSecurity.map((s) => s.direction), ['inbound', 'outbound', 'inbound', 'outbound']);
    const telemetry = [...gm.service.saTable().groups][1]!;
    assert.equal(telemetry.mode, 'transport');
    assert.deepEqual(telemetry.dataSecurity.map((s) => s.direction), ['outbound']);
    assert.ok(w.taps.length === 4 && w.taps.every((t) => t.violations.length === 0), JSON.stringify(w.taps));
    assert.deepEqual(gm.of('error'), []);
  });

  it('members and key server authenticate with ECDSA certificates; a certificate rule admits a member', () => {
    const pki = ecdsaPki();
    const server = pki.issue('gcks.example', { dns: ['gcks.example'] });
    const w = world({ config: { certRule: true }, gcks: { certificate: server, trustAnchors: [pki.ca.der] } });
    const deps = (id: string): Partial<GmServiceDeps> => ({ certificate: pki.issue(id, { email: [id] }), trustAnchors: [pki.ca.der] });
    const byPattern = w.member('gm7@example.org', ['video', 'telemetry'], { psk: 'certificate', deps: deps('gm7@example.org') });
    // Not matched by any ID pattern of the video group: admitted by its certificate subject rule.
    const byCertificate = w.member('cert-only@other.example', ['video'], { psk: 'certificate', deps: deps('cert-only@other.example') });
    w.sim.run(EPOCH + 2_000);
    assert.deepEqual(w.gcks.of('member-registered').map((e) => [e.member, e.group, e.rule]), [
      ['gm7@example.org', 'video', 'pattern gm*@example.org'],
      ['cert-only@other.example', 'video', 'certificates[0]'],
      ['gm7@example.org', 'telemetry', 'any'],
    ]);
    assertSameKeys(w.gcks.service, byPattern.service, 'video', 'video');
    assertSameKeys(w.gcks.service, byPattern.service, 'telemetry', 'telemetry');
    assertSameKeys(w.gcks.service, byCertificate.service, 'video', 'video');
    assert.ok(w.taps.every((t) => t.violations.length === 0));
  });

  it('each error notify comes from the situation that should produce it; the IKE SA survives the refusal', () => {
    const w = world();
    const unknown = w.member('gm2@example.org', ['unknown']);
    const unauthorized = w.member('gm3@example.org', ['vip']);
    const first = w.member('gm4@example.org', ['solo']);
    w.sim.run(EPOCH + 500);
    const second = w.member('gm5@example.org', ['solo']);
    const incompatible = w.member('gm6@example.org', [
      { id: 'video', accept: '      rekey: {authentication: [signature]}\n      dataSecurity: {encryption: [aes128gcm16]}' },
    ]);
    w.sim.run(EPOCH + 1_500);
    // First refusal per member (later ones are its back-off retries).
    const rejected = w.gcks.of('registration-rejected').filter((e, i, all) => all.findIndex((x) => x.member === e.member) === i).map((e) => [e.member, e.notify, e.exchange]);
    assert.deepEqual(rejected, [
      ['gm2@example.org', 'INVALID_GROUP_ID', 'GSA_AUTH'],
      ['gm3@example.org', 'AUTHORIZATION_FAILED', 'GSA_AUTH'],
      ['gm5@example.org', 'REGISTRATION_FAILED', 'GSA_AUTH'],
      ['gm6@example.org', 'NO_PROPOSAL_CHOSEN', 'GSA_AUTH'],
    ]);
    for (const [node, notify] of [[unknown, 'INVALID_GROUP_ID'], [unauthorized, 'AUTHORIZATION_FAILED'], [second, 'REGISTRATION_FAILED'], [incompatible, 'NO_PROPOSAL_CHOSEN']] as const) {
      const err = node.of('error')[0];
      assert.equal(err?.notify, notify);
      assert.equal(err.action, 'retry');
      assert.ok(err.retryAt! > err.at, 'retries after a back-off');
      // Section 2.3.1 error response: IDr, AUTH, N -> the IKE SA is up, the registration is not.
      const up = node.of('sa-established')[0];
      assert.equal(up?.extensionRefused, notify);
      assert.equal([...node.service.saTable().groups].length, 0);
    }
    assert.equal(registeredGroups(first).length, 1);
  });

  it('a refused member tries again with a random back-off', () => {
    const w = world();
    const gm = w.member('gm3@example.org', ['vip']);
    w.sim.run(EPOCH + 20_000);
    const at = w.gcks.of('registration-rejected').map((e) => e.at - EPOCH);
    assert.ok(at.length >= 3, `${at.length} attempts`);
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    assert.ok(gaps[0]! >= 1_000 && gaps[0]! <= 2_100, `first gap ${gaps[0]}`);
    assert.ok(gaps[1]! >= 2_000 && gaps[1]! <= 4_100, `second gap ${gaps[1]}`);
    assert.ok(gm.of('error').length >= 3);
  });

  it('leaving a group: the member is removed and forgets the keys (over the registration IKE SA)', () => {
    const w = world({ gcks: { closeGraceMs: 60_000 } });
    const gm = w.member('gm2@example.org', ['video', 'telemetry']);
    w.sim.run(EPOCH + 2_000);
    assert.equal(w.gcks.service.members().length, 2);
    w.sim.emit(gm, gm.take(gm.service.leave('video', w.sim.now)));
    w.sim.run(EPOCH + 4_000);
    const left = w.gcks.of('member-left');
    assert.deepEqual(left.map((e) => [e.group, e.member, e.notify, e.cause, e.wasMember]), [['video', 'gm2@example.org', 'REGISTRATION_FAILED', 'member-request', true]]);
    assert.deepEqual(w.gcks.service.members().map((m) => m.group), ['telemetry']);
    assert.deepEqual([...gm.service.saTable().groups].map((t) => t.groupId.data.toString()), ['telemetry.example']);
    assert.equal(gm.of('left').length, 1);
  });

  it('leaving after the key server closed the IKE SA opens a childless IKE_AUTH SA for the GSA_REGISTRATION', () => {
    const w = world({ gcks: { closeGraceMs: 1_000 } });
    const gm = w.member('gm2@example.org', ['video']);
    w.sim.run(EPOCH + 5_000);
    assert.equal(w.gcks.of('sa-deleted').length, 1, 'multicast group: the server closed the SA');
    assert.equal(gm.of('sa-deleted')[0]?.reason, 'remote');
    assert.equal([...gm.service.saTable().groups].length, 1, 'keys kept after the close');
    w.sim.emit(gm, gm.take(gm.service.leave('keyid:' + Buffer.from('video').toString('hex'), w.sim.now)));
    w.sim.run(EPOCH + 10_000);
    assert.deepEqual(gm.of('sa-established').map((e) => e.exchange), ['GSA_AUTH', 'IKE_AUTH']);
    assert.equal(w.gcks.of('member-left').length, 1);
    assert.equal(w.gcks.service.members().length, 0);
  });

  it('the server closes the registration IKE SA after the grace period for multicast groups, keeps it for inband ones', () => {
    const w = world({ gcks: { closeGraceMs: 2_000 } });
    const multicast = w.member('gm2@example.org', ['video']);
    const inband = w.member('gm3@example.org', ['small']);
    w.sim.run(EPOCH + 1_000);
    assert.equal(w.gcks.service.ikeSas().length, 2);
    w.sim.run(EPOCH + 10_000);
    const live = w.gcks.service.ikeSas();
    assert.equal(live.length, 1);
    assert.equal(live[0]!.peerId, 'gm3@example.org');
    assert.equal(multicast.of('sa-deleted').length, 1);
    assert.equal(inband.of('sa-deleted').length, 0);
    assert.equal(w.gcks.service.members('small')[0]?.saId, live[0]!.saId);
  });

  it('PSKs are looked up per member: an exact entry wins over the catch-all', () => {
    const w = world();
    const wrong = w.member('gm-bad@example.org', ['video']);
    const right = w.member('gm-bad2@example.org', ['video']);
    const exact = w.member('gm-bad@example.org', ['video'], { psk: 'a different secret, sixteen+' });
    w.sim.run(EPOCH + 1_000);
    assert.equal(wrong.of('exchange-failed')[0]?.notify, 'AUTHENTICATION_FAILED');
    assert.equal(registeredGroups(right).length, 1);
    assert.equal(registeredGroups(exact).length, 1);
  });

  it("closing an inband group's IKE SA removes the member; the member counts itself excluded and registers again", () => {
    const w = world();
    const gm = w.member('gm2@example.org', ['small', 'video']);
    w.sim.runTo(EPOCH + 1_000);
    assert.equal(w.gcks.service.ikeSas().length, 1, 'kept for the inband group');
    w.sim.emit(w.gcks, w.gcks.take(w.gcks.service.closeAll(w.sim.now)));
    w.sim.run(EPOCH + 1_100);
    assert.deepEqual(w.gcks.of('member-left').map((e) => [e.group, e.cause]), [['small', 'ike-sa-closed']]);
    assert.deepEqual(w.gcks.service.members().map((m) => m.group), ['video'], 'multicast membership outlives the IKE SA');
    const err = gm.of('error')[0];
    assert.ok(err?.reason.includes('excluded'), JSON.stringify(err));
    assert.deepEqual([...gm.service.saTable().groups].map((t) => t.groupId.data.toString()), ['video']);
    w.sim.run(EPOCH + 10_000);
    assert.deepEqual(w.gcks.service.members().map((m) => m.group).sort(), ['small', 'video']);
    assertSameKeys(w.gcks.service, gm.service, 'small', 'small');
  });

  it('a member on a standard childless IKE_AUTH SA registers with GSA_REGISTRATION', () => {
    const w = world();
    const gm = w.member('gm2@example.org', ['video', 'small'], { deps: { authExchange: 'IKE_AUTH' } });
    w.sim.run(EPOCH + 2_000);
    assert.deepEqual(w.gcks.of('sa-established').map((e) => e.exchange), ['IKE_AUTH']);
    assert.deepEqual(w.gcks.of('member-registered').map((e) => e.exchange), ['GSA_REGISTRATION', 'GSA_REGISTRATION']);
    assertSameKeys(w.gcks.service, gm.service, 'video', 'video');
    assertSameKeys(w.gcks.service, gm.service, 'small', 'small');
  });

  it('a policy the member cannot accept is reported with NO_PROPOSAL_CHOSEN in GSA_REGISTRATION (Section 2.3.3)', () => {
    const w = world({ gcks: { closeGraceMs: 60_000 } });
    // The SAg cannot say "tunnel mode only", so the server accepts and the member refuses.
    const gm = w.member('gm2@example.org', [{ id: 'telemetry', accept: '      rekey: {authentication: [implicit]}\n      modes: [tunnel]' }]);
    w.sim.run(EPOCH + 1_500);
    assert.equal(w.gcks.of('member-registered').length, 1);
    const err = gm.of('error')[0];
    assert.equal(err?.action, 'report-no-proposal-chosen');
    const left = w.gcks.of('member-left');
    assert.deepEqual(left.map((e) => e.notify), ['NO_PROPOSAL_CHOSEN']);
    assert.equal(w.gcks.service.members('telemetry').length, 0);
    assert.equal([...gm.service.saTable().groups].length, 0);
  });

  it('fails over to the second key server when the first does not answer', () => {
    const w = world();
    const silent = { address: '10.0.0.99', port: 500 };
    const gm = w.member('gm2@example.org', ['video'], { servers: [silent, GCKS_EP] });
    w.sim.run(EPOCH + 10_000);
    const ks = gm.of('key-server').map((e) => [e.index, e.state]);
    assert.deepEqual(ks, [[0, 'trying'], [0, 'failed'], [1, 'trying'], [1, 'connected']]);
    assert.equal(registeredGroups(gm).length, 1);
    assertSameKeys(w.gcks.service, gm.service, 'video', 'video');
    assert.equal(gm.service.status().keyServer.index, 1);
  });

  it('re-registers before the soft lifetime runs out and replaces everything from the older registration', () => {
    const w = world({ config: { lifetime: 120 }, gcks: { closeGraceMs: 1_000 } });
    const gm = w.member('gm2@example.org', ['video']);
    w.sim.run(EPOCH + 5_000);
    const firstSpis = w.gcks.service.groupKeys('video')!.dataSecurity.map((t) => t.spi.toString('hex'));
    // Past the TEK lifetime: the server replaces expired TEKs at the next registration.
    w.sim.run(EPOCH + 125_000);
    const reg = w.gcks.of('member-registered');
    assert.ok(reg.length >= 2, `${reg.length} registrations`);
    assert.ok(reg[1]!.reregistration);
    assert.ok(reg[1]!.at - EPOCH < 120_000 - 10_000 + 1, `re-registered at ${reg[1]!.at - EPOCH} ms, before the soft lifetime`);
    assertSameKeys(w.gcks.service, gm.service, 'video', 'video');
    assert.equal(gm.of('registered').filter((e) => e.replaced).length, reg.length - 1);
    const nowSpis = w.gcks.service.groupKeys('video')!.dataSecurity.map((t) => t.spi.toString('hex'));
    assert.notDeepEqual(nowSpis, firstSpis, 'the expired TEKs were replaced and the member holds the new ones only');
    assert.ok(reg.length <= 6, `no re-registration storm (${reg.length})`);
  });
});
