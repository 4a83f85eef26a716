import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { seededRandom } from '../sim/network.ts';
import { IkeEngine } from '../../src/ike/engine.ts';
import { decodeHeader } from '../../src/wire/header.ts';
import { ExchangeType, NotifyType } from '../../src/wire/iana.ts';
import { decodeMessage } from '../../src/wire/message.ts';
import { findNotify } from '../../src/wire/payload.ts';
import { INITIATOR_EP, makePair, pskConfigs, RESPONDER_EP } from './sim-helpers.ts';

const LOCAL = { ...RESPONDER_EP, marker: false };

describe('IKE engine: hostile and stale input', () => {
  it('never throws and never reports an internal error on mutated datagrams', () => {
    const [i, r] = pskConfigs('aes256-sha256-ecp256');
    const p = makePair(i, r);
    p.initiate({ remoteId: 'responder@test' });
    p.sim.run();
    const recorded = p.sim.network.sent.map((d) => d);
    const rnd = seededRandom(7);
    for (let n = 0; n < 3000; n++) {
      const d = recorded[n % recorded.length]!;
      const data = Buffer.from(d.data);
      const flips = 1 + Math.floor(rnd() * 4);
      for (let k = 0; k < flips; k++) {
        const at = Math.floor(rnd() * data.length);
        data[at] = data[at]! ^ (1 << Math.floor(rnd() * 8));
      }
      const cut = rnd() < 0.2 ? data.subarray(0, Math.floor(rnd() * data.length)) : data;
      const target = d.to.port === RESPONDER_EP.port && d.to.address === RESPONDER_EP.address ? p.responder : p.initiator;
      const out = target.engine.receive(cut, d.from, { ...target.endpoint, marker: false }, p.sim.now + n);
      for (const e of out.events) if (e.type === 'dropped') assert.doesNotMatch(e.reason, /internal error/);
    }
    // The established SA is unaffected by the noise.
    assert.equal(p.initiator.engine.list().filter((s) => s.state === 'established').length, 1);
  });

  it('answers a request for an unknown IKE SA with an unprotected INVALID_IKE_SPI', () => {
    const [i, r] = pskConfigs();
    const p = makePair(i, r);
    const saId = p.initiate({ remoteId: 'responder@test' });
    p.sim.run();
    // A restarted responder knows nothing of the SA.
    const restarted = new IkeEngine(r);
    const out = p.initiator.engine.sendLiveness(saId, p.sim.now);
    const reply = restarted.receive(out.send[0]!.data, INITIATOR_EP, LOCAL, p.sim.now);
    assert.equal(reply.send.length, 1);
    const m = decodeMessage(reply.send[0]!.data);
    assert.equal(m.header.flags.response, true);
    assert.equal(m.header.exchangeType, ExchangeType.INFORMATIONAL);
    assert.ok(findNotify(m.payloads, NotifyType.INVALID_IKE_SPI));
  });

  it('drops requests with stale or future Message IDs and responses nobody asked for', () => {
    const [i, r] = pskConfigs();
    const p = makePair(i, r);
    const saId = p.initiate({ remoteId: 'responder@test' });
    p.sim.run();
    const out = p.initiator.engine.sendLiveness(saId, p.sim.now);
    const req = Buffer.from(out.send[0]!.data);
    // Message ID 7 instead of 2: outside the window.
    req.writeUInt32BE(7, 20);
    const res = p.responder.engine.receive(req, INITIATOR_EP, LOCAL, p.sim.now);
    assert.equal(res.send.length, 0);
    assert.match(res.events.map((e) => (e.type === 'dropped' ? e.reason : '')).join(), /outside the window/);
    // A response to nothing.
    const fake = Buffer.from(out.send[0]!.data);
    fake[19] = fake[19]! | 0x20;
    const res2 = p.initiator.engine.receive(fake, RESPONDER_EP, { ...INITIATOR_EP, marker: false }, p.sim.now);
    assert.equal(res2.send.length, 0);
  });

  it('answers a newer major version with INVALID_MAJOR_VERSION', () => {
    const [, r] = pskConfigs();
    const p = makePair(pskConfigs()[0], r);
    const out = p.initiator.engine.initiate({ ...RESPONDER_EP }, p.sim.now);
    const req = Buffer.from(out.send[0]!.data);
    req[17] = 0x30;
    const res = p.responder.engine.receive(req, INITIATOR_EP, LOCAL, p.sim.now);
    assert.equal(res.send.length, 1);
    const h = decodeHeader(res.send[0]!.data);
    assert.equal(h.majorVersion, 2);
    assert.ok(findNotify(decodeMessage(res.send[0]!.data).payloads, NotifyType.INVALID_MAJOR_VERSION));
  });
});

describe('IKE engine: key log', () => {
  it('emits Wireshark lines for AES-GCM and AES-CBC, none for ChaCha20-Poly1305', () => {
    for (const [proposal, re] of [
      ['aes256gcm16-prfsha256-x25519', /^[0-9a-f]{16},[0-9a-f]{16},[0-9a-f]{72},[0-9a-f]{72},"AES-GCM-256 with 16 octet ICV \[RFC5282\]",,,"NONE \[RFC4306\]"$/],
      ['aes256-sha256-ecp256', /^[0-9a-f]{16},[0-9a-f]{16},[0-9a-f]{64},[0-9a-f]{64},"AES-CBC-256 \[RFC3602\]",[0-9a-f]{64},[0-9a-f]{64},"HMAC_SHA2_256_128 \[RFC4868\]"$/],
    ] as const) {
      const [i, r] = pskConfigs(proposal);
      const p = makePair({ ...i, keylog: true }, { ...r, keylog: true });
      p.initiate({ remoteId: 'responder@test' });
      p.sim.run();
      const li = p.initiator.of('keylog');
      const lr = p.responder.of('keylog');
      assert.equal(li.length, 1);
      assert.equal(li[0]!.line, lr[0]!.line);
      assert.match(li[0]!.line, re);
      const est = p.initiator.of('sa-established')[0]!;
      assert.ok(li[0]!.line.startsWith(`${est.spiI},${est.spiR},`));
    }
    const [i, r] = pskConfigs('chacha20poly1305-prfsha384-modp3072');
    const p = makePair({ ...i, keylog: true }, { ...r, keylog: true });
    p.initiate({ remoteId: 'responder@test' });
    p.sim.run();
    assert.equal(p.initiator.of('keylog').length, 0);
    assert.equal(p.initiator.of('sa-established').length, 1);
  });

  it('is off by default', () => {
    const [i, r] = pskConfigs();
    const p = makePair(i, r);
    p.initiate({ remoteId: 'responder@test' });
    p.sim.run();
    assert.equal(p.initiator.of('keylog').length, 0);
  });
});
