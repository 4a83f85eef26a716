import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  classifyDatagram,
  frameIkeMessage,
  markerStyleFor,
  parsePortSpec,
  PortSpecError,
} from '../../src/node/udp-framing.ts';

const ike = Buffer.concat([Buffer.from('0102030405060708', 'hex'), Buffer.alloc(20)]);

describe('classifyDatagram', () => {
  it('takes a port-500 datagram as the IKE message itself', () => {
    const c = classifyDatagram(ike, 'none');
    assert.equal(c.kind, 'ike');
    assert.ok(c.kind === 'ike' && c.markerLength === 0 && c.message.equals(ike));
  });

  it('strips the non-ESP marker on a 4500-style port', () => {
    const framed = frameIkeMessage(ike, 'non-esp-marker');
    assert.deepEqual(framed.subarray(0, 4), Buffer.alloc(4));
    const c = classifyDatagram(framed, 'non-esp-marker');
    assert.ok(c.kind === 'ike' && c.markerLength === 4 && c.message.equals(ike));
  });

  it('recognises ESP by its non-zero SPI', () => {
    const esp = Buffer.concat([Buffer.from('c0ffee01', 'hex'), Buffer.alloc(40)]);
    assert.deepEqual(classifyDatagram(esp, 'non-esp-marker'), { kind: 'esp', spi: 0xc0ffee01 });
  });

  it('recognises the NAT-keepalive', () => {
    assert.deepEqual(classifyDatagram(Buffer.from([0xff]), 'non-esp-marker'), { kind: 'nat-keepalive' });
  });

  it('flags datagrams too short for a marker', () => {
    assert.equal(classifyDatagram(Buffer.from([0, 0]), 'non-esp-marker').kind, 'invalid');
    assert.equal(classifyDatagram(Buffer.alloc(0), 'non-esp-marker').kind, 'invalid');
  });

  it('leaves short datagrams on port 500 to the IKE decoder', () => {
    assert.equal(classifyDatagram(Buffer.from([0xff]), 'none').kind, 'ike');
  });

  it('frames without marker as a copy', () => {
    const f = frameIkeMessage(ike, 'none');
    assert.ok(f.equals(ike));
    f[0] = 0xee;
    assert.equal(ike[0], 0x01, 'the frame does not alias the message');
  });
});

describe('ports', () => {
  it('maps the well-known ports', () => {
    assert.equal(markerStyleFor(500, 500), 'none');
    assert.equal(markerStyleFor(12345, 848), 'none');
    assert.equal(markerStyleFor(4500, 33000), 'non-esp-marker');
    assert.equal(markerStyleFor(53, 53), undefined);
  });

  it('parses --port specs', () => {
    assert.deepEqual(parsePortSpec('5000'), { port: 5000, style: 'none' });
    assert.deepEqual(parsePortSpec('5001:marker'), { port: 5001, style: 'non-esp-marker' });
    assert.deepEqual(parsePortSpec('848:none'), { port: 848, style: 'none' });
    for (const bad of ['', '0', '65536', 'abc', '500:esp', '-1']) {
      assert.throws(() => parsePortSpec(bad), PortSpecError, bad);
    }
  });
});
