/**
 * The key server's registration IKE SA machinery against independent
 * implementations:
 *  - strongSwan's charon (a standard IKEv2 stack, no G-IKEv2) establishes a
 *    childless IKE SA with our GcksService using a PSK; both sides list the
 *    same SPIs. This is the IKE SA a GM built on such a stack would then use
 *    for GSA_REGISTRATION.
 *  - tshark decrypts a capture of our GM registering with our GCKS (GSA_AUTH
 *    and a GSA_REGISTRATION) from the key server's key log; Wireshark names
 *    the G-IKEv2 payloads inside (IDg 50, GSA 51, KD 52) without dissecting
 *    them.
 * Ports 5300-5310 on 127.0.0.x (other interop tests use 5000-5003, 5100+).
 */
import { strict as assert } from 'node:assert';
import { after, describe, it } from 'node:test';
import { monotonicClock } from '../../src/node/clock.ts';
import { UdpAdapter } from '../../src/node/udp.ts';
import type { GcksServiceEvent } from '../../src/gcks/service.ts';
import type { GmServiceEvent } from '../../src/gm/service.ts';
import { gcksConfig, gmConfig, makeGcks, makeGm, PSK } from '../registration/fixtures.ts';
import { charonUnavailable, startCharon, waitFor } from './harness/charon.ts';
import { decryptCheck, startCapture, tsharkUnavailable } from './harness/capture.ts';

const skipCharon = charonUnavailable(['gcm', 'openssl', 'kdf', 'curve25519', 'vici']);
const skipTshark = tsharkUnavailable();

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function gcksOn(address: string, port: number) {
  const events: GcksServiceEvent[] = [];
  const service = makeGcks(gcksConfig(), { now: monotonicClock.now(), keylog: true, certificateTime: () => new Date() });
  // Not port 500/4500: frame with the non-ESP marker, as charon does on such ports.
  const adapter = await UdpAdapter.open<GcksServiceEvent>(service, [{ address, port, marker: true }], { onEvent: (e) => events.push(e) });
  cleanups.push(() => adapter.close());
  return { service, adapter, events };
}

describe('key server interop', () => {
  it('strongSwan charon establishes a childless IKE SA with our key server (PSK)', { skip: skipCharon }, async () => {
    const gcks = await gcksOn('127.0.0.2', 5302);
    const charon = await startCharon({
      name: 'gcks-childless',
      port: 5300,
      portNatT: 5301,
      connections: [
        {
          name: 'gm',
          localAddrs: ['127.0.0.1'],
          remoteAddrs: ['127.0.0.2'],
          remotePort: 5302,
          proposals: ['aes256gcm16-prfsha256-x25519'],
          local: { auth: 'psk', id: 'gm-charon@example.org' },
          remote: { auth: 'psk', id: 'gcks.example' },
          rekeyTime: '0',
        },
      ],
      psks: [{ ids: ['gm-charon@example.org', 'gcks.example'], secret: PSK }],
    });
    cleanups.push(() => charon.stop());
    await charon.initiate('gm', 15);
    const est = await waitFor(() => gcks.events.find((e) => e.type === 'sa-established'), { timeoutMs: 10_000, what: 'sa-established' });
    assert.equal(est.type === 'sa-established' && est.exchange, 'IKE_AUTH');
    assert.equal(est.type === 'sa-established' && est.peerId, 'gm-charon@example.org');
    const [sa] = await charon.listSas('gm');
    assert.ok(sa, 'charon lists the IKE SA');
    assert.equal(sa.state, 'ESTABLISHED');
    const ours = gcks.service.ikeSas();
    assert.equal(ours.length, 1);
    assert.equal(`${ours[0]!.spiI}/${ours[0]!.spiR}`, `${sa.spiI}/${sa.spiR}`);
    assert.ok(!gcks.events.some((e) => e.type === 'exchange-failed'), JSON.stringify(gcks.events));
  });

  it('tshark decrypts our GSA_AUTH and GSA_REGISTRATION with the key log and names IDg, GSA and KD', { skip: skipTshark }, async () => {
    const capture = await startCapture({ filter: 'udp portrange 5305-5306' });
    cleanups.push(() => capture.dispose());
    const gcks = await gcksOn('127.0.0.1', 5305);
    const gmEvents: GmServiceEvent[] = [];
    const gm = makeGm(gmConfig('gm1@example.org', [{ address: '127.0.0.1', port: 5305 }], [{ id: 'video', role: 'sender' }, 'telemetry']));
    const adapter = await UdpAdapter.open<GmServiceEvent>(gm, [{ address: '127.0.0.3', port: 5306, marker: true }], { onEvent: (e) => gmEvents.push(e) });
    cleanups.push(() => adapter.close());
    adapter.act((now) => gm.start(now));
    await waitFor(() => (gmEvents.filter((e) => e.type === 'registered').length === 2 ? true : undefined), { timeoutMs: 10_000, what: 'two registrations' });
    const { path } = await capture.stop();
    const lines = gcks.events.flatMap((e) => (e.type === 'keylog' ? [e.line] : []));
    assert.equal(lines.length, 1);
    const report = decryptCheck(path, lines, [5305, 5306]);
    assert.equal(report.badIcvCount, 0);
    assert.equal(report.decryptedCount, report.encryptedCount, `decrypted ${report.decryptedCount}/${report.encryptedCount}`);
    const frame = (exchange: string, response: boolean) => report.frames.find((f) => f.exchange === exchange && f.isResponse === response);
    const request = frame('GSA_AUTH', false);
    const response = frame('GSA_AUTH', true);
    assert.ok(request && response, JSON.stringify(report.frames.map((f) => [f.exchange, f.isResponse])));
    for (const p of ['IDi', 'AUTH', 'IDg', 'SA', 'N']) assert.ok(request.innerPayloads.includes(p), `GSA_AUTH request has ${p}: ${request.innerPayloads.join(',')}`);
    for (const p of ['IDr', 'AUTH', 'GSA', 'KD']) assert.ok(response.innerPayloads.includes(p), `GSA_AUTH response has ${p}: ${response.innerPayloads.join(',')}`);
    const registration = frame('GSA_REGISTRATION', true);
    assert.ok(registration?.innerPayloads.includes('GSA') && registration.innerPayloads.includes('KD'), 'GSA_REGISTRATION response with GSA and KD');
    assert.ok(frame('GSA_REGISTRATION', false)?.innerPayloads.includes('IDg'));
  });
});
