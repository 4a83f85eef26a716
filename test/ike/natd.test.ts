import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import {
  decideFloat,
  detectNat,
  floatedPeer,
  natDetectionHash,
  natdNotifyData,
  responderFollowsPeer,
  type NatDetection,
} from '../../src/ike/natd.ts';

const spiI = Buffer.from('0102030405060708', 'hex');
const spiR = Buffer.from('a1a2a3a4a5a6a7a8', 'hex');

describe('NAT detection hashes', () => {
  it('matches SHA-1(SPIi | SPIr | IP | Port) computed independently (python hashlib)', () => {
    // SPIr zero in the IKE_SA_INIT request.
    assert.equal(
      natDetectionHash(spiI, undefined, '192.0.2.1', 500).toString('hex'),
      '644b4575455bd6fcc1efe2be8162a9218e448e5f',
    );
    assert.equal(
      natDetectionHash(spiI, spiR, '2001:db8::1', 4500).toString('hex'),
      '0e47d8075ac895ac341ac27d9f35d5d5a3391d76',
    );
    assert.equal(
      natDetectionHash(spiI, spiR, Buffer.from([198, 51, 100, 7]), 4500).toString('hex'),
      '23708babf363b60158f18383773108ca9c7fb5fb',
    );
    assert.deepEqual(natDetectionHash(spiI, undefined, '10.0.0.1', 500), natDetectionHash(spiI, Buffer.alloc(8), '10.0.0.1', 500));
    assert.throws(() => natDetectionHash(Buffer.alloc(4), undefined, '10.0.0.1', 500), RangeError);
    assert.throws(() => natDetectionHash(spiI, undefined, '10.0.0.1', 70000), RangeError);
  });

  const initiator = { address: '10.0.0.2', port: 500 };
  const responder = { address: '198.51.100.1', port: 500 };

  it('reports no NAT when addresses arrive unchanged', () => {
    const sent = natdNotifyData(spiI, undefined, initiator, responder);
    const d = detectNat({
      spiI,
      spiR: undefined,
      sourceHashes: [sent.source],
      destinationHashes: [sent.destination],
      from: initiator,
      local: responder,
    });
    assert.deepEqual(d, { peerSupportsNatT: true, localBehindNat: false, peerBehindNat: false });
  });

  it('sees the peer behind a NAT when its source was translated', () => {
    const sent = natdNotifyData(spiI, undefined, initiator, responder);
    const d = detectNat({
      spiI,
      spiR: undefined,
      sourceHashes: [sent.source],
      destinationHashes: [sent.destination],
      from: { address: '203.0.113.9', port: 61000 },
      local: responder,
    });
    assert.equal(d.peerBehindNat, true);
    assert.equal(d.localBehindNat, false);
  });

  it('sees itself behind a NAT when the destination the peer used is not our address', () => {
    // The responder answers; the initiator (10.0.0.2 behind a NAT) checks.
    const sentByResponder = natdNotifyData(spiI, spiR, responder, { address: '203.0.113.9', port: 61000 });
    const d = detectNat({
      spiI,
      spiR,
      sourceHashes: [sentByResponder.source],
      destinationHashes: [sentByResponder.destination],
      from: responder,
      local: initiator,
    });
    assert.deepEqual(d, { peerSupportsNatT: true, localBehindNat: true, peerBehindNat: false });
  });

  it('accepts any of several source hashes, and a changed port alone means NAT', () => {
    const a = natDetectionHash(spiI, undefined, '10.9.9.9', 500);
    const b = natDetectionHash(spiI, undefined, initiator.address, initiator.port);
    const dst = natDetectionHash(spiI, undefined, responder.address, responder.port);
    const base = { spiI, spiR: undefined, destinationHashes: [dst], local: responder };
    assert.equal(detectNat({ ...base, sourceHashes: [a, b], from: initiator }).peerBehindNat, false);
    assert.equal(detectNat({ ...base, sourceHashes: [b], from: { ...initiator, port: 1024 } }).peerBehindNat, true);
  });

  it('without NATD notifies the peer does not do NAT-T and nothing floats', () => {
    const d = detectNat({ spiI, spiR, sourceHashes: [], destinationHashes: [], from: initiator, local: responder });
    assert.equal(d.peerSupportsNatT, false);
    assert.deepEqual(decideFloat({ detection: d, alwaysFloat: true, currentSocketUsesMarker: false }), {
      float: false,
      reason: 'peer-no-natt',
    });
  });
});

describe('floating to the NAT-T port', () => {
  const none: NatDetection = { peerSupportsNatT: true, localBehindNat: false, peerBehindNat: false };
  it('floats on a NAT on either side, or when configured', () => {
    assert.deepEqual(decideFloat({ detection: { ...none, localBehindNat: true }, alwaysFloat: false, currentSocketUsesMarker: false }), {
      float: true,
      reason: 'local-nat',
    });
    assert.deepEqual(decideFloat({ detection: { ...none, peerBehindNat: true }, alwaysFloat: false, currentSocketUsesMarker: false }), {
      float: true,
      reason: 'peer-nat',
    });
    assert.deepEqual(decideFloat({ detection: none, alwaysFloat: true, currentSocketUsesMarker: false }), {
      float: true,
      reason: 'configured',
    });
    assert.deepEqual(decideFloat({ detection: none, alwaysFloat: false, currentSocketUsesMarker: false }), {
      float: false,
      reason: 'no-nat',
    });
  });

  it('does not float again from a marker socket', () => {
    assert.equal(
      decideFloat({ detection: { ...none, localBehindNat: true }, alwaysFloat: true, currentSocketUsesMarker: true }).float,
      false,
    );
  });

  it('keeps the peer address and takes the NAT-T port', () => {
    assert.deepEqual(floatedPeer({ address: '192.0.2.1', port: 500 }), { address: '192.0.2.1', port: 4500 });
    assert.deepEqual(floatedPeer({ address: '127.0.0.2', port: 5002 }, 5003), { address: '127.0.0.2', port: 5003 });
  });

  it('a responder follows the peer only with a NAT or after the peer floated', () => {
    assert.equal(responderFollowsPeer(none, false), false);
    assert.equal(responderFollowsPeer(undefined, false), false);
    assert.equal(responderFollowsPeer({ ...none, peerBehindNat: true }, false), true);
    assert.equal(responderFollowsPeer(none, true), true);
  });
});
