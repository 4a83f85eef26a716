import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { makePair, pskConfigs } from './sim-helpers.ts';

describe('IKE engine in simulation: PSK', () => {
  for (const proposal of ['aes256gcm16-prfsha256-x25519', 'aes256-sha256-ecp256', 'chacha20poly1305-prfsha384-modp3072']) {
    it(`establishes a childless IKE SA with ${proposal}`, () => {
      const [i, r] = pskConfigs(proposal);
      const p = makePair(i, r);
      const saId = p.initiate({ remoteId: 'responder@test' });
      p.sim.run();
      const ei = p.initiator.of('sa-established');
      const er = p.responder.of('sa-established');
      assert.equal(ei.length, 1, JSON.stringify(p.initiator.events));
      assert.equal(er.length, 1, JSON.stringify(p.responder.events));
      assert.equal(ei[0]!.saId, saId);
      assert.equal(ei[0]!.spiI, er[0]!.spiI);
      assert.equal(ei[0]!.spiR, er[0]!.spiR);
      assert.equal(ei[0]!.peerId, 'responder@test');
      assert.equal(er[0]!.peerId, 'initiator@test');
      assert.deepEqual(ei[0]!.algorithms, er[0]!.algorithms);
    });
  }
});
