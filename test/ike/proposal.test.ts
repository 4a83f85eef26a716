import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { EncrId, IntegId, KeId, KwaId, PrfId, TransformType } from '../../src/wire/iana.ts';
import {
  acceptedProposal,
  checkAcceptedProposal,
  offerProposals,
  parseIkeProposal,
  ProposalSyntaxError,
  selectProposal,
} from '../../src/ike/proposal.ts';

describe('IKE proposals', () => {
  it('parses strongSwan syntax for the three interop proposals', () => {
    assert.deepEqual(parseIkeProposal('aes256gcm16-prfsha256-x25519'), {
      encr: [{ id: EncrId.AES_GCM_16, keyLength: 256 }],
      prf: [PrfId.HMAC_SHA2_256],
      integ: [],
      ke: [KeId.CURVE25519],
      kwa: [],
    });
    assert.deepEqual(parseIkeProposal('aes256-sha256-ecp256'), {
      encr: [{ id: EncrId.AES_CBC, keyLength: 256 }],
      prf: [PrfId.HMAC_SHA2_256],
      integ: [IntegId.HMAC_SHA2_256_128],
      ke: [KeId.ECP_256],
      kwa: [],
    });
    const c = parseIkeProposal('chacha20poly1305-prfsha384-modp3072', [KwaId.KW_5649_256]);
    assert.deepEqual(c.encr, [{ id: EncrId.CHACHA20_POLY1305 }]);
    assert.deepEqual(c.kwa, [KwaId.KW_5649_256]);
  });

  it('rejects bad proposals with a message naming the problem', () => {
    assert.throws(() => parseIkeProposal('aes256-sha256-bogus'), /unknown keyword 'bogus'/);
    assert.throws(() => parseIkeProposal('aes256gcm16-sha256-x25519'), ProposalSyntaxError);
    assert.throws(() => parseIkeProposal('aes256-prfsha256-x25519'), /no integrity/);
    assert.throws(() => parseIkeProposal('aes256-sha256'), /no key exchange/);
  });

  it('selects in the peer order and the initiator accepts the answer', () => {
    const initiator = [parseIkeProposal('aes256-sha256-ecp256'), parseIkeProposal('aes256gcm16-prfsha256-x25519')];
    const responder = [parseIkeProposal('aes256gcm16-prfsha256-x25519-ecp256'), parseIkeProposal('aes256-sha256-ecp256')];
    const offered = offerProposals(initiator);
    const sel = selectProposal(offered, responder, 0);
    assert.ok(sel);
    assert.equal(sel.num, 1);
    assert.equal(sel.transforms.encr.id, EncrId.AES_CBC);
    const answer = acceptedProposal(sel.num, sel.transforms);
    const checked = checkAcceptedProposal([answer], offered, 0);
    assert.deepEqual(checked?.transforms, sel.transforms);
  });

  it('negotiates KWA when both sides have it and works without it when the peer does not send it', () => {
    const gm = offerProposals([parseIkeProposal('aes256gcm16-prfsha256-x25519', [KwaId.KW_ARX, KwaId.KW_5649_256])]);
    const gcks = [parseIkeProposal('aes256gcm16-prfsha256-x25519', [KwaId.KW_5649_256])];
    assert.equal(selectProposal(gm, gcks, 0)?.transforms.kwa, KwaId.KW_5649_256);
    const plain = offerProposals([parseIkeProposal('aes256gcm16-prfsha256-x25519')]);
    const sel = selectProposal(plain, gcks, 0);
    assert.ok(sel);
    assert.equal(sel.transforms.kwa, undefined);
    // A peer insisting on a KWA we do not have gets no proposal.
    assert.equal(selectProposal(gm, [parseIkeProposal('aes256gcm16-prfsha256-x25519')], 0), undefined);
  });

  it('rejects answers that were not offered or pick two of a type', () => {
    const offered = offerProposals([parseIkeProposal('aes256-sha256-ecp256')]);
    const bad = acceptedProposal(1, {
      encr: { id: EncrId.AES_CBC, keyLength: 128 },
      prf: PrfId.HMAC_SHA2_256,
      integ: IntegId.HMAC_SHA2_256_128,
      ke: KeId.ECP_256,
    });
    assert.equal(checkAcceptedProposal([bad], offered, 0), undefined);
    const good = offered[0]!;
    assert.ok(checkAcceptedProposal([good], offered, 0));
    const two = { ...good, transforms: [...good.transforms, { type: TransformType.KE, id: KeId.ECP_256, attributes: [] }] };
    assert.equal(checkAcceptedProposal([two], offered, 0), undefined);
  });
});
