/**
 * Registration over real UDP sockets on loopback (127.0.0.x, ports chosen by
 * the kernel): GcksService and GmService driven by UdpAdapter and the real
 * monotonic clock, exactly as the daemons run them.
 */
import { strict as assert } from 'node:assert';
import dgram from 'node:dgram';
import { after, describe, it } from 'node:test';
import type { DatagramEngine } from '../../src/ike/io-types.ts';
import { monotonicClock } from '../../src/node/clock.ts';
import { UdpAdapter } from '../../src/node/udp.ts';
import type { GcksService, GcksServiceDeps, GcksServiceEvent } from '../../src/gcks/service.ts';
import type { GmService, GmServiceDeps, GmServiceEvent } from '../../src/gm/service.ts';
import {
  assertSameKeys,
  ecdsaPki,
  EPOCH,
  gcksConfig,
  gmConfig,
  makeGcks,
  makeGm,
  validatingTap,
  type GroupSpec,
} from '../registration/fixtures.ts';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface Running<S, E> {
  readonly service: S;
  readonly adapter: UdpAdapter<E>;
  readonly events: E[];
  of<T extends string>(type: T): Extract<E, { type: T }>[];
}

async function run<S extends DatagramEngine<E>, E>(service: S, address: string): Promise<Running<S, E>> {
  const events: E[] = [];
  const adapter = await UdpAdapter.open<E>(service, [{ address, port: 0, marker: false }], {
    onEvent: (e) => events.push(e),
  });
  cleanups.push(() => adapter.close());
  return {
    service,
    adapter,
    events,
    of: <T extends string>(type: T) => events.filter((e): e is Extract<E, { type: T }> => (e as { type: string }).type === type),
  };
}

async function startGcks(deps: Partial<GcksServiceDeps> = {}, config = gcksConfig()) {
  const taps: Parameters<typeof validatingTap>[0] = [];
  const gcks = await run<GcksService, GcksServiceEvent>(
    makeGcks(config, { now: monotonicClock.now(), inspectResponse: validatingTap(taps), ...deps }),
    '127.0.0.1',
  );
  return { ...gcks, taps, endpoint: { address: '127.0.0.1', port: gcks.adapter.locals[0]!.port } };
}

let nextHost = 2;
async function startGm(
  identity: string,
  servers: readonly { address: string; port: number }[],
  groups: readonly (string | GroupSpec)[],
  opts: { deps?: Partial<GmServiceDeps>; credentials?: string } = {},
) {
  const gm = await run<GmService, GmServiceEvent>(makeGm(gmConfig(identity, servers, groups, opts.credentials), opts.deps), `127.0.0.${nextHost++}`);
  gm.adapter.act((now) => gm.service.start(now));
  return gm;
}

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 8_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('registration end to end on loopback UDP', () => {
  it('members join one and several groups with PSK and hold exactly the server keys', async () => {
    const gcks = await startGcks();
    const gm1 = await startGm('gm1@example.org', [gcks.endpoint], [{ id: 'video', role: 'both', senderIds: 2 }, 'small', 'telemetry']);
    const gm2 = await startGm('gm2@example.org', [gcks.endpoint], ['video']);
    await waitFor('registrations', () => gm1.of('registered').length === 3 && gm2.of('registered').length === 1);
    for (const g of ['video', 'small', 'telemetry']) assertSameKeys(gcks.service, gm1.service, g, g);
    assertSameKeys(gcks.service, gm2.service, 'video', 'video');
    assert.deepEqual(gcks.of('member-registered').map((e) => `${e.member}:${e.group}:${e.exchange}`).sort(), [
      'gm1@example.org:small:GSA_REGISTRATION',
      'gm1@example.org:telemetry:GSA_REGISTRATION',
      'gm1@example.org:video:GSA_AUTH',
      'gm2@example.org:video:GSA_AUTH',
    ]);
    assert.equal(gcks.of('member-registered').find((e) => e.member === 'gm1@example.org' && e.group === 'video')!.senderIds.length, 2);
    assert.equal(gcks.taps.length, 4);
    assert.ok(gcks.taps.every((t) => t.violations.length === 0), JSON.stringify(gcks.taps));
  });

  it('members authenticate with ECDSA certificates', async () => {
    const pki = ecdsaPki();
    const certificateTime = (): Date => new Date(EPOCH);
    const gcks = await startGcks({ certificate: pki.issue('gcks.example', { dns: ['gcks.example'] }), trustAnchors: [pki.ca.der], certificateTime });
    const gm = await startGm('gm3@example.org', [gcks.endpoint], ['video'], {
      credentials: 'certificate',
      deps: { certificate: pki.issue('gm3@example.org', { email: ['gm3@example.org'] }), trustAnchors: [pki.ca.der], certificateTime },
    });
    await waitFor('registration', () => gm.of('registered').length === 1);
    assertSameKeys(gcks.service, gm.service, 'video', 'video');
    assert.equal(gm.of('sa-established')[0]?.peerId, 'gcks.example');
  });

  it('each error notify is produced by its situation', async () => {
    const gcks = await startGcks();
    const first = await startGm('gm4@example.org', [gcks.endpoint], ['solo']);
    await waitFor('the first solo member', () => first.of('registered').length === 1);
    const cases = [
      ['INVALID_GROUP_ID', await startGm('gm5@example.org', [gcks.endpoint], ['unknown'])],
      ['AUTHORIZATION_FAILED', await startGm('gm6@example.org', [gcks.endpoint], ['vip'])],
      ['REGISTRATION_FAILED', await startGm('gm7@example.org', [gcks.endpoint], ['solo'])],
      [
        'NO_PROPOSAL_CHOSEN',
        await startGm('gm8@example.org', [gcks.endpoint], [{ id: 'video', accept: '      rekey: {authentication: [signature]}\n      dataSecurity: {encryption: [aes128gcm16]}' }]),
      ],
    ] as const;
    await waitFor('refusals', () => cases.every(([, gm]) => gm.of('error').length > 0));
    for (const [notify, gm] of cases) {
      assert.equal(gm.of('error')[0]!.notify, notify);
      assert.equal([...gm.service.saTable().groups].length, 0);
      const member = gm.service.config.identity.data.toString();
      assert.equal(gcks.of('registration-rejected').find((e) => e.member === member)?.notify, notify);
    }
  });

  it('a member leaves a group and the server removes it', async () => {
    const gcks = await startGcks({ closeGraceMs: 30_000 });
    const gm = await startGm('gm9@example.org', [gcks.endpoint], ['video', 'telemetry']);
    await waitFor('registrations', () => gm.of('registered').length === 2);
    gm.adapter.act((now) => gm.service.leave('video', now));
    await waitFor('member-left', () => gcks.of('member-left').length === 1);
    assert.deepEqual(gcks.service.members().map((m) => m.group), ['telemetry']);
    assert.deepEqual([...gm.service.saTable().groups].map((t) => t.groupId.data.toString()), ['telemetry.example']);
  });

  it('fails over to the second key server when the first is silent', async () => {
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => silent.close(() => resolve())));
    const gcks = await startGcks();
    const gm = await startGm('gm10@example.org', [{ address: '127.0.0.1', port: silent.address().port }, gcks.endpoint], ['video'], {
      deps: { retransmit: { initialMs: 200, factor: 1.5, maxMs: 500, maxTries: 2 } },
    });
    await waitFor('registration via the second server', () => gm.of('registered').length === 1);
    assert.deepEqual(gm.of('key-server').map((e) => `${e.index}:${e.state}`), ['0:trying', '0:failed', '1:trying', '1:connected']);
    assertSameKeys(gcks.service, gm.service, 'video', 'video');
  });
});
