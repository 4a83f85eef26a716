import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { ExchangeType, KwaId, PayloadType } from '../../src/wire/iana.ts';
import { decodeHeader } from '../../src/wire/header.ts';
import { randomFaults, SimNat, type SimDatagram } from '../sim/network.ts';
import { makePair, PSK, pskConfigs, type Pair } from './sim-helpers.ts';

function exchangeOf(d: SimDatagram): { type: number; response: boolean; id: number; first: number } {
  const h = decodeHeader(d.data);
  return { type: h.exchangeType, response: h.flags.response, id: h.messageId, first: h.nextPayload };
}

function establish(p: Pair, options = {}): string {
  const saId = p.initiate({ remoteId: 'responder@test', ...options });
  p.sim.run();
  assert.equal(p.initiator.of('sa-established').length, 1, JSON.stringify(p.initiator.events));
  assert.equal(p.responder.of('sa-established').length, 1, JSON.stringify(p.responder.events));
  return saId;
}

function responderSaId(p: Pair): string {
  return p.responder.of('sa-established')[0]!.saId;
}

describe('IKE engine in simulation: negotiation failures and retries', () => {
  it('retries with the KE method named in INVALID_KE_PAYLOAD', () => {
    const p = makePair(
      { localId: 'initiator@test', psks: { 'responder@test': PSK }, proposals: ['aes256gcm16-prfsha256-x25519-ecp256'] },
      { localId: 'responder@test', psks: { 'initiator@test': PSK }, proposals: ['aes256gcm16-prfsha256-ecp256'] },
    );
    establish(p);
    const inits = p.sim.network.sent.filter((d) => exchangeOf(d).type === ExchangeType.IKE_SA_INIT && !exchangeOf(d).response);
    assert.equal(inits.length, 2);
    assert.equal(p.initiator.of('sa-established')[0]!.algorithms.ke, 'ECP_256');
    // The responder kept no state for the refused first attempt.
    assert.equal(p.responder.engine.list().length, 1);
  });

  it('fails with NO_PROPOSAL_CHOSEN and keeps no state', () => {
    const p = makePair(
      { localId: 'initiator@test', psks: { '*': PSK }, proposals: ['aes256-sha256-ecp256'] },
      { localId: 'responder@test', psks: { '*': PSK }, proposals: ['aes256gcm16-prfsha256-x25519'] },
    );
    p.initiate();
    p.sim.run();
    const f = p.initiator.of('exchange-failed');
    assert.equal(f.length, 1);
    assert.equal(f[0]!.notify, 'NO_PROPOSAL_CHOSEN');
    assert.equal(f[0]!.detectedLocally, false);
    assert.equal(p.responder.of('exchange-failed')[0]?.notify, 'NO_PROPOSAL_CHOSEN');
    assert.deepEqual(p.initiator.engine.list(), []);
    assert.deepEqual(p.responder.engine.list(), []);
  });

  it('reports AUTHENTICATION_FAILED for a wrong PSK on both sides', () => {
    const p = makePair(
      { localId: 'initiator@test', psks: { 'responder@test': 'wrong-secret' } },
      { localId: 'responder@test', psks: { 'initiator@test': PSK } },
    );
    p.initiate({ remoteId: 'responder@test' });
    p.sim.run();
    assert.equal(p.responder.of('exchange-failed')[0]?.notify, 'AUTHENTICATION_FAILED');
    const f = p.initiator.of('exchange-failed')[0];
    assert.equal(f?.notify, 'AUTHENTICATION_FAILED');
    assert.equal(f?.detectedLocally, false);
    assert.equal(p.initiator.of('sa-established').length + p.responder.of('sa-established').length, 0);
    assert.deepEqual(p.initiator.engine.list(), []);
    assert.deepEqual(p.responder.engine.list(), []);
  });

  it('answers a retransmitted IKE_AUTH after an authentication failure from the cache', () => {
    let dropped = false;
    const p = makePair(
      { localId: 'initiator@test', psks: { 'responder@test': 'wrong-secret' } },
      { localId: 'responder@test', psks: { 'initiator@test': PSK } },
      {
        policy: (d) => {
          const x = exchangeOf(d);
          if (!dropped && x.type === ExchangeType.IKE_AUTH && x.response) {
            dropped = true;
            return { kind: 'drop' };
          }
          return { kind: 'deliver' };
        },
      },
    );
    p.initiate({ remoteId: 'responder@test' });
    p.sim.run();
    assert.ok(dropped);
    assert.equal(p.initiator.of('exchange-failed')[0]?.notify, 'AUTHENTICATION_FAILED');
    assert.equal(p.responder.of('exchange-failed').length, 1, 'the retransmission was not processed again');
    assert.deepEqual(p.responder.engine.list(), []);
    assert.equal(p.responder.engine.nextTimeout(), undefined, 'the failed SA was finally dropped');
  });

  it('rejects a responder with the wrong identity and tells it (INFORMATIONAL AUTHENTICATION_FAILED)', () => {
    const p = makePair(
      { localId: 'initiator@test', psks: { '*': PSK } },
      { localId: 'responder@test', psks: { '*': PSK } },
    );
    p.initiate({ remoteId: 'someone-else@test' });
    p.sim.run();
    const f = p.initiator.of('exchange-failed')[0];
    assert.equal(f?.notify, 'AUTHENTICATION_FAILED');
    assert.equal(f?.detectedLocally, true);
    assert.equal(p.initiator.of('sa-established').length, 0);
    // The responder had established, then learnt from the notify that the peer gave up.
    assert.equal(p.responder.of('exchange-failed')[0]?.notify, 'AUTHENTICATION_FAILED');
    assert.deepEqual(p.responder.engine.list(), []);
  });

  it('answers N(COOKIE) when told to and the initiator retries with the cookie first', () => {
    const [i, r] = pskConfigs();
    const p = makePair(i, { ...r, cookieThreshold: 0 });
    establish(p);
    const requests = p.sim.network.sent.filter((d) => exchangeOf(d).type === ExchangeType.IKE_SA_INIT && !exchangeOf(d).response);
    assert.equal(requests.length, 2);
    assert.equal(exchangeOf(requests[1]!).first, PayloadType.NOTIFY, 'COOKIE notify must be the first payload');
  });

  it('gives up after the retransmission budget when the peer is silent', () => {
    const [i, r] = pskConfigs();
    const p = makePair(i, r, { policy: () => ({ kind: 'drop' }) });
    const saId = p.initiate();
    p.sim.run();
    const f = p.initiator.of('exchange-failed');
    assert.equal(f[0]?.notify, 'TIMEOUT');
    assert.equal(f[0]?.saId, saId);
    assert.equal(p.sim.network.sent.length, 4, 'one transmission plus three retransmissions');
    assert.deepEqual(p.initiator.engine.list(), []);
  });
});

describe('IKE engine in simulation: established SA', () => {
  it('liveness, then Delete from the initiator', () => {
    const [i, r] = pskConfigs();
    const p = makePair(i, r);
    const saId = establish(p);
    p.emit(p.initiator, p.initiator.engine.sendLiveness(saId, p.sim.now));
    p.sim.run();
    assert.equal(p.initiator.of('liveness-ok').length, 1);
    assert.equal(p.initiator.engine.sa(saId)?.nextRequestId, 3);
    p.emit(p.initiator, p.initiator.engine.deleteSa(saId, p.sim.now));
    p.sim.run();
    assert.equal(p.initiator.of('sa-deleted')[0]?.reason, 'local');
    assert.equal(p.responder.of('sa-deleted')[0]?.reason, 'remote');
    assert.deepEqual(p.initiator.engine.list(), []);
    assert.deepEqual(p.responder.engine.list(), []);
  });

  it('liveness and Delete from the responder', () => {
    const [i, r] = pskConfigs();
    const p = makePair(i, r);
    establish(p);
    const rid = responderSaId(p);
    p.emit(p.responder, p.responder.engine.sendLiveness(rid, p.sim.now));
    p.sim.run();
    assert.equal(p.responder.of('liveness-ok').length, 1);
    p.emit(p.responder, p.responder.engine.deleteSa(rid, p.sim.now));
    p.sim.run();
    assert.equal(p.responder.of('sa-deleted')[0]?.reason, 'local');
    assert.equal(p.initiator.of('sa-deleted')[0]?.reason, 'remote');
    assert.deepEqual(p.initiator.engine.list(), []);
    assert.deepEqual(p.responder.engine.list(), []);
  });

  it('queues a second request until the first is answered (window size 1)', () => {
    const [i, r] = pskConfigs();
    const p = makePair(i, r);
    const saId = establish(p);
    p.emit(p.initiator, p.initiator.engine.sendLiveness(saId, p.sim.now));
    p.emit(p.initiator, p.initiator.engine.sendLiveness(saId, p.sim.now));
    const inFlight = p.sim.network.inFlight;
    assert.equal(inFlight, 1);
    p.sim.run();
    assert.equal(p.initiator.of('liveness-ok').length, 2);
  });

  for (const side of ['initiator', 'responder'] as const) {
    it(`rekeys the IKE SA from the ${side}`, () => {
      const [i, r] = pskConfigs('aes256-sha256-ecp256');
      const p = makePair(i, r);
      const saId = establish(p);
      const node = side === 'initiator' ? p.initiator : p.responder;
      const id = side === 'initiator' ? saId : responderSaId(p);
      p.emit(node, node.engine.rekeySa(id, p.sim.now));
      p.sim.run();
      const ri = p.initiator.of('sa-rekeyed');
      const rr = p.responder.of('sa-rekeyed');
      assert.equal(ri.length, 1, JSON.stringify(p.initiator.events));
      assert.equal(rr.length, 1, JSON.stringify(p.responder.events));
      assert.equal(ri[0]!.spiI, rr[0]!.spiI);
      assert.equal(ri[0]!.spiR, rr[0]!.spiR);
      const li = p.initiator.engine.list();
      const lr = p.responder.engine.list();
      assert.equal(li.length, 1);
      assert.equal(lr.length, 1);
      assert.equal(li[0]!.spiI, lr[0]!.spiI);
      assert.notEqual(li[0]!.spiI, p.initiator.of('sa-established')[0]!.spiI);
      // The old SA is gone on both sides; the new one carries traffic.
      assert.equal(p.initiator.of('sa-deleted')[0]?.reason, 'rekeyed');
      assert.equal(p.responder.of('sa-deleted')[0]?.reason, 'rekeyed');
      p.emit(p.initiator, p.initiator.engine.sendLiveness(li[0]!.saId, p.sim.now));
      p.sim.run();
      assert.equal(p.initiator.of('liveness-ok').length, 1);
    });
  }

  it('resolves simultaneous IKE SA rekeys to one surviving SA (RFC 7296 2.8.2)', () => {
    for (const seed of ['a', 'b', 'c', 'd', 'e', 'f']) {
      const [i, r] = pskConfigs();
      const p = makePair(i, r, { seed });
      const saId = establish(p);
      p.emit(p.initiator, p.initiator.engine.rekeySa(saId, p.sim.now));
      p.emit(p.responder, p.responder.engine.rekeySa(responderSaId(p), p.sim.now));
      p.sim.run();
      const li = p.initiator.engine.list();
      const lr = p.responder.engine.list();
      assert.equal(li.length, 1, `${seed}: ${JSON.stringify(p.initiator.events)}`);
      assert.equal(lr.length, 1, `${seed}: ${JSON.stringify(p.responder.events)}`);
      assert.equal(li[0]!.spiI, lr[0]!.spiI);
      assert.equal(li[0]!.spiR, lr[0]!.spiR);
      assert.equal(li[0]!.state, 'established');
      const survivor = p.initiator.of('sa-rekeyed').at(-1)!;
      assert.equal(survivor.spiI, li[0]!.spiI);
      p.emit(p.initiator, p.initiator.engine.sendLiveness(li[0]!.saId, p.sim.now));
      p.sim.run();
      assert.equal(p.initiator.of('liveness-ok').length, 1);
    }
  });
});

describe('IKE engine in simulation: lossy network', () => {
  it('retransmits a lost IKE_AUTH request', () => {
    const [i, r] = pskConfigs();
    let dropped = false;
    const p = makePair(i, r, {
      policy: (d) => {
        const x = exchangeOf(d);
        if (!dropped && x.type === ExchangeType.IKE_AUTH && !x.response) {
          dropped = true;
          return { kind: 'drop' };
        }
        return { kind: 'deliver' };
      },
    });
    establish(p);
    assert.ok(dropped);
  });

  it('answers a retransmitted request from the cache when the response was lost', () => {
    const [i, r] = pskConfigs();
    let dropped = 0;
    const p = makePair(i, r, {
      policy: (d) => {
        const x = exchangeOf(d);
        if (dropped < 2 && x.type === ExchangeType.IKE_AUTH && x.response) {
          dropped++;
          return { kind: 'drop' };
        }
        return { kind: 'deliver' };
      },
    });
    establish(p);
    const responses = p.sim.network.sent.filter((d) => exchangeOf(d).type === ExchangeType.IKE_AUTH && exchangeOf(d).response);
    assert.equal(responses.length, 3);
    // Resent from cache: byte-identical, and processed once.
    assert.ok(responses[0]!.data.equals(responses[2]!.data));
    assert.equal(p.responder.of('sa-established').length, 1);
  });

  it('answers a duplicated IKE_SA_INIT with the same response and keeps one SA', () => {
    const [i, r] = pskConfigs();
    const p = makePair(i, r, { policy: () => ({ kind: 'duplicate', copyDelay: 1 }) });
    establish(p);
    const initResponses = p.sim.network.sent.filter((d) => exchangeOf(d).type === ExchangeType.IKE_SA_INIT && exchangeOf(d).response);
    assert.equal(initResponses.length, 2);
    assert.ok(initResponses[0]!.data.equals(initResponses[1]!.data));
    assert.equal(p.responder.engine.list().length, 1);
  });

  it('survives random loss, duplication and reordering through a full SA lifetime', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const [i, r] = pskConfigs('aes256-sha256-ecp256');
      const p = makePair(i, r, { policy: randomFaults({ seed, drop: 0.15, duplicate: 0.15, maxExtraDelay: 40 }), seed: String(seed) });
      const saId = p.initiate({ remoteId: 'responder@test' });
      p.sim.run();
      if (p.initiator.of('sa-established').length === 0) {
        // Allowed only if the initiator ran out of retransmissions.
        assert.equal(p.initiator.of('exchange-failed')[0]?.notify, 'TIMEOUT', `seed ${seed}`);
        continue;
      }
      assert.equal(p.responder.of('sa-established').length, 1, `seed ${seed}`);
      p.emit(p.initiator, p.initiator.engine.rekeySa(saId, p.sim.now));
      p.sim.run();
      const li = p.initiator.engine.list();
      if (li.length === 1 && p.initiator.of('sa-rekeyed').length === 1) {
        p.emit(p.initiator, p.initiator.engine.deleteSa(li[0]!.saId, p.sim.now));
        p.sim.run();
      }
      for (const n of [p.initiator, p.responder]) {
        for (const e of n.events) if (e.type === 'dropped') assert.doesNotMatch(e.reason, /internal error/, `seed ${seed}`);
      }
    }
  });
});

describe('IKE engine in simulation: NAT traversal', () => {
  it('detects a NAT in front of the initiator and moves the SA to port 4500 (RFC 7296 2.23)', () => {
    const [i, r] = pskConfigs();
    const inside = { address: '192.168.1.10', port: 500 };
    const p = makePair(i, r, { initiatorEndpoint: inside, natT: true });
    p.sim.network.nat = new SimNat('192.168.1.10', '10.0.0.1');
    const saId = establish(p);
    const ei = p.initiator.of('sa-established')[0]!;
    const er = p.responder.of('sa-established')[0]!;
    assert.equal(ei.natLocal, true);
    assert.equal(er.natRemote, true);
    assert.equal(ei.peer.port, 4500);
    assert.deepEqual(er.peer, { address: '10.0.0.1', port: 4500 + 10_000 });
    // IKE_AUTH went over 4500 with the marker framing the adapter adds.
    const auth = p.sim.network.delivered.filter((d) => exchangeOf(d).type === ExchangeType.IKE_AUTH);
    assert.ok(auth.every((d) => d.to.port === 4500 || d.from.port === 4500));
    p.emit(p.responder, p.responder.engine.sendLiveness(er.saId, p.sim.now));
    p.sim.run();
    p.emit(p.initiator, p.initiator.engine.deleteSa(saId, p.sim.now));
    p.sim.run();
    assert.equal(p.responder.of('liveness-ok').length, 1);
    assert.equal(p.responder.of('sa-deleted')[0]?.reason, 'remote');
  });
});

describe('IKE engine in simulation: G-IKEv2 hooks', () => {
  it('negotiates the Key Wrap Algorithm in IKE_SA_INIT when both want it', () => {
    const [i, r] = pskConfigs();
    const p = makePair({ ...i, keyWrap: [KwaId.KW_ARX, KwaId.KW_5649_256] }, { ...r, keyWrap: [KwaId.KW_5649_256] });
    establish(p);
    assert.equal(p.initiator.of('sa-established')[0]!.algorithms.kwa, 'KW_5649_256');
  });

  it('a responder wanting KWA still accepts a peer that does not offer it', () => {
    const [i, r] = pskConfigs();
    const p = makePair(i, { ...r, keyWrap: [KwaId.KW_5649_256] });
    establish(p);
    assert.equal(p.responder.of('sa-established')[0]!.algorithms.kwa, undefined);
  });
});
