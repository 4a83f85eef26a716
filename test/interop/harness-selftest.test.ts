/**
 * Proves the interop harness works without our engine: charon talks to
 * charon, tshark captures, and Wireshark decrypts with the keys charon logged.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { charonUnavailable, withCharons, type CharonHandle, type IkeSaInfo } from './harness/charon.ts';
import { decryptCheck, ikev2DecryptionLine, startCapture, tsharkUnavailable } from './harness/capture.ts';
import { makeTestPki, opensslUnavailable, pkiFilesFor } from './harness/certs-openssl.ts';
import { netnsUnavailable, withTestNet } from './harness/netns.ts';

const PSK = 'interop-test-psk-0123456789';
const GCM = 'aes256gcm16-prfsha256-x25519';
const CBC = 'aes256-sha256-x25519';

function findSa(list: IkeSaInfo[], spiI: string, spiR: string): IkeSaInfo | undefined {
  return list.find((s) => s.spiI === spiI && s.spiR === spiR);
}

/** Same SPIs and same SK_* on both charons; returns the initiator's key sets. */
function crossCheckKeys(a: CharonHandle, b: CharonHandle, sas: IkeSaInfo[]): ReturnType<CharonHandle['charonIkeKeys']> {
  const ka = a.charonIkeKeys();
  const kb = b.charonIkeKeys();
  const out = [];
  for (const sa of sas) {
    const x = ka.find((k) => k.spiI === sa.spiI && k.spiR === sa.spiR);
    const y = kb.find((k) => k.spiI === sa.spiI && k.spiR === sa.spiR);
    assert.ok(x, `initiator logged keys for ${sa.spiI}/${sa.spiR}`);
    assert.ok(y, `responder logged keys for ${sa.spiI}/${sa.spiR}`);
    assert.deepEqual(
      { d: x.skD, ei: x.skEi, er: x.skEr, ai: x.skAi, ar: x.skAr, pi: x.skPi, pr: x.skPr, p: x.proposal },
      { d: y.skD, ei: y.skEi, er: y.skEr, ai: y.skAi, ar: y.skAr, pi: y.skPi, pr: y.skPr, p: y.proposal },
    );
    out.push(x);
  }
  return out;
}

const loopbackSkip = charonUnavailable() ?? tsharkUnavailable();

test('harness: two charons on loopback, childless PSK IKE SAs, tshark decrypts with charon-logged keys', { skip: loopbackSkip, timeout: 30_000 }, async () => {
  const cap = await startCapture({ iface: 'lo', filter: 'udp portrange 5000-5003' });
  try {
    await withCharons(
      [
        {
          name: 'init',
          port: 5000,
          portNatT: 5001,
          connections: [GCM, CBC].map((p, i) => ({
            name: i === 0 ? 'gcm' : 'cbc',
            localAddrs: ['127.0.0.1'],
            remoteAddrs: ['127.0.0.2'],
            remotePort: 5002,
            proposals: [p],
            local: { auth: 'psk', id: 'initiator@test' },
            remote: { auth: 'psk', id: 'responder@test' },
          })),
          psks: [{ ids: ['initiator@test', 'responder@test'], secret: PSK }],
        },
        {
          name: 'resp',
          port: 5002,
          portNatT: 5003,
          dosProtection: false,
          connections: [
            {
              name: 'r',
              localAddrs: ['127.0.0.2'],
              remoteAddrs: ['127.0.0.1'],
              remotePort: 5000,
              proposals: [GCM, CBC],
              local: { auth: 'psk', id: 'responder@test' },
              remote: { auth: 'psk', id: 'initiator@test' },
            },
          ],
          psks: [{ ids: ['initiator@test', 'responder@test'], secret: PSK }],
        },
      ],
      async ([a, b]) => {
        assert.ok(a && b);
        assert.equal(a.usesNonEspMarker, true);
        await a.initiate('gcm', 5);
        await a.initiate('cbc', 5);

        const la = await a.listSas();
        const lb = await b.listSas();
        assert.equal(la.length, 2, JSON.stringify(la));
        assert.equal(lb.length, 2, JSON.stringify(lb));
        for (const sa of la) {
          assert.equal(sa.state, 'ESTABLISHED');
          assert.equal(sa.initiator, true);
          assert.match(sa.spiI, /^[0-9a-f]{16}$/);
          assert.equal(sa.localPort, 5000); // mobike = no: IKE_AUTH stays on the IKE port
          assert.equal(sa.remotePort, 5002);
          const peer = findSa(lb, sa.spiI, sa.spiR);
          assert.ok(peer, `responder lists ${sa.spiI}/${sa.spiR}`);
          assert.equal(peer.state, 'ESTABLISHED');
          assert.equal(peer.initiator, false);
          assert.equal(peer.name, 'r');
          assert.equal(peer.remoteId, 'initiator@test');
        }
        const gcm = la.find((s) => s.name === 'gcm');
        assert.equal(gcm?.encrAlg, 'AES_GCM_16');
        assert.equal(gcm?.encrKeysize, 256);
        // Childless: the responder advertised CHILDLESS_IKEV2_SUPPORTED and IKE_AUTH carried no SA.
        await a.waitForLog(/parsed IKE_SA_INIT response 0 \[[^\]]*N\(CHDLESS_SUP\)/, 2000);
        assert.doesNotMatch(a.log(), /generating IKE_AUTH request 1 \[[^\]]* SA /);

        const keys = crossCheckKeys(a, b, la);
        const gk = keys.find((k) => k.name === 'gcm');
        assert.equal(gk?.skEi.length, 72, 'AES-GCM-256 Sk_ei is 32-byte key + 4-byte salt');
        assert.equal(gk?.skAi, undefined);
        const ck = keys.find((k) => k.name === 'cbc');
        assert.equal(ck?.skAi?.length, 64);

        const stopped = await cap.stop();
        assert.equal(stopped.packets, 8, cap.stderr()); // 2 x (IKE_SA_INIT + IKE_AUTH), request + response
        const lines = keys.map((k) => ikev2DecryptionLine(k));
        const rep = decryptCheck(cap.path, lines, [5000, 5002]);
        assert.equal(rep.frames.length, 8);
        assert.ok(rep.frames.every((f) => f.nonEspMarker), 'every message carries the non-ESP marker');
        assert.equal(rep.encryptedCount, 4);
        assert.equal(rep.decryptedCount, 4, JSON.stringify(rep.frames, null, 1));
        assert.equal(rep.badIcvCount, 0);
        const authReqs = rep.frames.filter((f) => f.exchange === 'IKE_AUTH' && !f.isResponse);
        assert.equal(authReqs.length, 2);
        for (const f of authReqs) {
          assert.ok(f.innerPayloads.includes('IDi') && f.innerPayloads.includes('AUTH'), f.innerPayloads.join(','));
          assert.ok(!f.innerPayloads.includes('SA'), 'childless IKE_AUTH has no SA payload');
        }
        // The check is not vacuous: a wrong key is reported as a bad ICV.
        const wrong = keys.map((k) => ikev2DecryptionLine({ ...k, skEr: `00${k.skEr.slice(2)}`, skAr: k.skAr && `00${k.skAr.slice(2)}` }));
        const bad = decryptCheck(cap.path, wrong, [5000, 5002]);
        assert.equal(bad.badIcvCount, 2, 'both IKE_AUTH responses fail with a wrong SK_er/SK_ar');

        const t = await a.terminate('gcm');
        assert.equal(t.code, 0, t.stdout + t.stderr);
        assert.equal(findSa(await b.listSas(), gcm!.spiI, gcm!.spiR), undefined, 'responder deleted the SA');
        assert.deepEqual((await a.listSas()).map((s) => s.name), ['cbc']);
      },
    );
  } finally {
    await cap.dispose();
  }
});

const nsSkip = charonUnavailable() ?? tsharkUnavailable() ?? netnsUnavailable() ?? opensslUnavailable();

test('harness: charons in two network namespaces on 500/4500 with certificates and IKE fragmentation', { skip: nsSkip, timeout: 30_000 }, async () => {
  const pki = makeTestPki({ leaves: [{ name: 'gm', dns: 'gm.test' }, { name: 'gcks', dns: 'gcks.test' }] });
  await withTestNet({ hosts: ['a', 'b'] }, async (net) => {
    const ha = net.host('a');
    const hb = net.host('b');
    const cap = await startCapture({ netns: net.switchNs, iface: net.bridge, filter: 'udp port 500 or udp port 4500' });
    try {
      await withCharons(
        [
          {
            name: 'ns-init',
            netns: ha.ns,
            files: pkiFilesFor(pki, 'gm'),
            extraCharonConf: '  fragment_size = 400',
            connections: [
              {
                name: 'c',
                localAddrs: [ha.addr],
                remoteAddrs: [hb.addr],
                fragmentation: 'yes',
                sendCert: 'always',
                local: { auth: 'pubkey', id: 'gm.test', certs: ['gm.crt'] },
                remote: { auth: 'pubkey', id: 'gcks.test', cacerts: ['ca.crt'] },
              },
            ],
          },
          {
            name: 'ns-resp',
            netns: hb.ns,
            files: pkiFilesFor(pki, 'gcks'),
            extraCharonConf: '  fragment_size = 400',
            connections: [
              {
                name: 'r',
                localAddrs: [hb.addr],
                remoteAddrs: [ha.addr],
                fragmentation: 'yes',
                local: { auth: 'pubkey', id: 'gcks.test', certs: ['gcks.crt'] },
                remote: { auth: 'pubkey', id: 'gm.test', cacerts: ['ca.crt'] },
              },
            ],
          },
        ],
        async ([a, b]) => {
          assert.ok(a && b);
          assert.equal(a.usesNonEspMarker, false);
          await a.initiate('c', 5);
          const [sa] = await a.listSas('c');
          assert.ok(sa);
          assert.equal(sa.state, 'ESTABLISHED');
          assert.equal(sa.localHost, ha.addr);
          assert.equal(sa.localPort, 500);
          assert.equal(sa.remotePort, 500);
          const peer = findSa(await b.listSas(), sa.spiI, sa.spiR);
          assert.ok(peer, 'responder lists the same SPIs');
          assert.equal(peer.remoteId, 'gm.test');
          const keys = crossCheckKeys(a, b, [sa]);
          await cap.stop();
          const rep = decryptCheck(cap.path, keys.map((k) => ikev2DecryptionLine(k)));
          assert.ok(rep.frames.every((f) => !f.nonEspMarker && f.srcPort === 500));
          assert.ok(rep.frames.some((f) => f.payloads.includes('SKF')), 'IKE_AUTH went fragmented (SKF)');
          assert.ok(rep.decryptedCount > 0, JSON.stringify(rep.frames, null, 1));
          assert.equal(rep.badIcvCount, 0);
        },
      );
    } finally {
      await cap.dispose();
    }
  });
});
