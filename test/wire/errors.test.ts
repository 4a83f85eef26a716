/**
 * Hostile and malformed input: every failure is a DecodeError with the
 * right kind and a path naming the payload (and substructure) at fault.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DecodeError, Limits, type DecodeErrorKind } from '../../src/wire/errors.ts';
import { decodeHeader, isInvalidMajorVersion } from '../../src/wire/header.ts';
import { NotifyType, PayloadType } from '../../src/wire/iana.ts';
import { decodeMessage, encodeMessage } from '../../src/wire/message.ts';
import { decodePayloadChain, encodePayloadChain, isPayloadOf, type Payload } from '../../src/wire/payload.ts';
import { splitDigitalSignature } from '../../src/wire/payloads/auth.ts';
import { Reader } from '../../src/wire/reader.ts';
import { makeNotify } from '../../src/wire/payloads/notify.ts';
import { EncodeError } from '../../src/wire/writer.ts';

function hex(...parts: string[]): Buffer {
  return Buffer.from(parts.join('').replace(/\s+/g, ''), 'hex');
}

function decodeError(f: () => unknown): DecodeError {
  try {
    f();
  } catch (e) {
    if (e instanceof DecodeError) return e;
    throw e;
  }
  assert.fail('expected a DecodeError');
}

function expectError(f: () => unknown, kind: DecodeErrorKind, path: string): DecodeError {
  const e = decodeError(f);
  assert.equal(e.kind, kind, `kind (${e.message})`);
  assert.equal(e.path, path, `path (${e.message})`);
  return e;
}

const HEADER = (next: string, length: number): string =>
  `0102030405060708 1112131415161718 ${next} 20 22 08 00000000 ${length.toString(16).padStart(8, '0')}`;

// SA(1 proposal, 2 transforms) | KE | Nonce, as one chain starting with SA.
const chain = hex(
  '22 00 0024', // SA, next KE, length 36
  '00 00 0020 01 01 00 02', // proposal length 32, IKE, 2 transforms
  '03 00 000c 01 00 0014 800e 0080', // ENCR AES_GCM_16 keylen 128
  '00 00 000c 02 00 0005 800e 0080', // PRF with an attribute (odd but well-formed)
  '28 00 0010 0013 0000 0102030405060708', // KE, next Nonce, length 16, ECP-256 (short data)
  '00 00 0014',
  '000102030405060708090a0b0c0d0e0f', // Nonce, 16 octets
);

describe('truncation', () => {
  it('chain: every proper prefix fails with truncated', () => {
    decodePayloadChain(PayloadType.SA, chain); // the whole chain is fine
    for (let cut = 0; cut < chain.length; cut++) {
      const e = decodeError(() => decodePayloadChain(PayloadType.SA, chain.subarray(0, cut)));
      assert.equal(e.kind, 'truncated', `cut at ${cut}: ${e.message}`);
    }
  });

  it('message: every proper prefix fails, with or without the header length fixed up', () => {
    const msg = Buffer.concat([hex(HEADER('21', 28 + chain.length)), chain]);
    decodeMessage(msg);
    for (let cut = 0; cut < msg.length; cut++) {
      const cutMsg = Buffer.from(msg.subarray(0, cut));
      assert.equal(decodeError(() => decodeMessage(cutMsg)).kind, 'truncated', `cut at ${cut}`);
      if (cut >= 28) {
        cutMsg.writeUInt32BE(cut, 24);
        assert.ok(decodeError(() => decodeMessage(cutMsg)), `fixed-up cut at ${cut}`);
      }
    }
  });

  it('error offsets are absolute within the datagram', () => {
    const msg = Buffer.concat([hex(HEADER('21', 28 + chain.length)), chain]);
    msg[28 + 36 + 2] = 0xff; // KE payload length far too large
    msg[28 + 36 + 3] = 0xff;
    const e = expectError(() => decodeMessage(msg), 'truncated', 'KE');
    assert.equal(e.offset, 28 + 36 + 2, 'the Payload Length field');
  });
});

describe('IKE header', () => {
  const header = hex(HEADER('00', 28));

  it('major version other than 2 -> INVALID_MAJOR_VERSION', () => {
    const v1 = Buffer.from(header);
    v1[17] = 0x10;
    const e = expectError(() => decodeMessage(v1), 'bad-value', 'HDR');
    assert.ok(isInvalidMajorVersion(e));
    assert.match(e.detail, /major version 1.*INVALID_MAJOR_VERSION/);
    assert.equal(e.offset, 17);
    const v3 = Buffer.from(header);
    v3[17] = 0x30;
    assert.ok(isInvalidMajorVersion(decodeError(() => decodeHeader(v3))));
    // The engine can still read the SPIs and Message ID to answer it.
    assert.equal(decodeHeader(v3, { checkVersion: false }).majorVersion, 3);
  });

  it('minor version is accepted (RFC 7296: ignore)', () => {
    const minor = Buffer.from(header);
    minor[17] = 0x21;
    assert.equal(decodeHeader(minor).minorVersion, 1);
  });

  it('length checks', () => {
    const withLength = (len: number, total = 28): Buffer => {
      const b = Buffer.concat([header, Buffer.alloc(total - 28)]);
      b.writeUInt32BE(len, 24);
      return b;
    };
    assert.equal(expectError(() => decodeHeader(withLength(27)), 'bad-length', 'HDR').offset, 24);
    expectError(() => decodeHeader(withLength(29)), 'truncated', 'HDR');
    expectError(() => decodeHeader(withLength(28, 32)), 'bad-length', 'HDR');
    expectError(() => decodeHeader(withLength(Limits.maxMessage + 1)), 'limit', 'HDR');
    expectError(() => decodeHeader(header.subarray(0, 27)), 'truncated', 'HDR');
    assert.ok(isInvalidMajorVersion(new Error('x')) === false);
  });

  it('payload chain empty but header says more, or Next Payload 0 with octets left', () => {
    expectError(() => decodeMessage(hex(HEADER('29', 28))), 'truncated', 'N');
    expectError(() => decodeMessage(hex(HEADER('00', 32), '00000000')), 'bad-length', '');
  });
});

describe('generic payload header', () => {
  it('payload length below 4', () => {
    expectError(() => decodePayloadChain(PayloadType.VENDOR_ID, hex('00 00 0003')), 'bad-length', 'V');
  });

  it('payload length beyond the chain', () => {
    expectError(() => decodePayloadChain(PayloadType.VENDOR_ID, hex('00 00 0009 01')), 'truncated', 'V');
  });

  it('a body shorter than its fields', () => {
    expectError(() => decodePayloadChain(PayloadType.KE, hex('00 00 0006 0013')), 'truncated', 'KE');
  });

  it('too many payloads', () => {
    const one = hex('2b 00 0004'); // empty Vendor ID, next Vendor ID
    const many = Buffer.concat(Array.from({ length: Limits.maxPayloads + 1 }, () => one));
    expectError(() => decodePayloadChain(PayloadType.VENDOR_ID, many), 'limit', '');
  });
});

describe('unknown payloads', () => {
  it('critical -> unsupported-critical with payloadType, also inside SK', () => {
    const bytes = hex('00 80 0008 deadbeef');
    const e = expectError(() => decodePayloadChain(200, bytes), 'unsupported-critical', 'UNKNOWN(200)');
    assert.equal(e.payloadType, 200);
    const inner = hex('c8 00 0004', '00 80 0004'); // an empty Vendor ID, then critical type 200
    const e2 = expectError(() => decodePayloadChain(PayloadType.VENDOR_ID, inner, 'SK'), 'unsupported-critical', 'SK > UNKNOWN(200)');
    assert.equal(e2.payloadType, 200);
    assert.equal(e2.offset, 4);
  });

  it('CP with the Critical bit is unsupported (not implemented)', () => {
    const e = expectError(() => decodePayloadChain(PayloadType.CP, hex('00 80 0004')), 'unsupported-critical', 'CP');
    assert.equal(e.payloadType, PayloadType.CP);
  });

  it('non-critical -> kept and re-encoded unchanged', () => {
    const bytes = hex('28 00 0008 deadbeef', '00 00 0014', '000102030405060708090a0b0c0d0e0f');
    const payloads = decodePayloadChain(200, bytes);
    assert.deepStrictEqual(payloads[0], { type: 200, critical: false, unknown: true, body: hex('deadbeef') });
    assert.equal(payloads[1]?.type, PayloadType.NONCE);
    assert.deepStrictEqual(encodePayloadChain(payloads).bytes, bytes);
  });

  it('an unknown payload cannot be encoded under a known type', () => {
    const fake: Payload = { type: PayloadType.SA, critical: false, unknown: true, body: Buffer.alloc(0) };
    assert.throws(() => encodePayloadChain([fake]), EncodeError);
  });

  it('the Critical bit on a known payload is kept', () => {
    const [p] = decodePayloadChain(PayloadType.VENDOR_ID, hex('00 80 0005 01'));
    assert.equal(p?.critical, true);
  });
});

describe('SA payload', () => {
  it('error path names proposal, transform and attribute', () => {
    const bad = Buffer.from(chain);
    const attr = 4 + 8 + 12 + 8; // SA header, proposal header, transform[1], transform[2] header
    bad[attr] = 0x00; // the TV Key Length attribute becomes TLV type 14 ...
    assert.equal(bad.readUInt16BE(attr + 2), 0x80); // ... whose length 128 exceeds the transform
    expectError(() => decodePayloadChain(PayloadType.SA, bad), 'truncated', 'SA > proposal[1] > transform[2] > PRF > attr 14');
  });

  it('proposal length too small / too large', () => {
    const small = Buffer.from(chain);
    small.writeUInt16BE(7, 6);
    expectError(() => decodePayloadChain(PayloadType.SA, small), 'bad-length', 'SA > proposal[1]');
    const large = Buffer.from(chain);
    large.writeUInt16BE(33, 6);
    expectError(() => decodePayloadChain(PayloadType.SA, large), 'truncated', 'SA');
  });

  it('transform count disagreeing with the transforms', () => {
    const more = Buffer.from(chain);
    more[11] = 3; // transform[2] is marked last, but the count says one more follows
    expectError(() => decodePayloadChain(PayloadType.SA, more), 'bad-value', 'SA > proposal[1]');
    const missing = Buffer.from(chain);
    missing[11] = 3;
    missing[4 + 8 + 12] = 3; // transform[2] now says more follow, but the proposal ends
    expectError(() => decodePayloadChain(PayloadType.SA, missing), 'truncated', 'SA > proposal[1]');
    const fewer = Buffer.from(chain);
    fewer[11] = 1;
    expectError(() => decodePayloadChain(PayloadType.SA, fewer), 'bad-value', 'SA > proposal[1]');
  });

  it('Last Substruc values', () => {
    const notLast = Buffer.from(chain);
    notLast[4] = 2;
    expectError(() => decodePayloadChain(PayloadType.SA, notLast), 'bad-value', 'SA');
    const bogus = Buffer.from(chain);
    bogus[4] = 1;
    expectError(() => decodePayloadChain(PayloadType.SA, bogus), 'bad-value', 'SA > proposal[1]');
  });

  it('no proposals', () => {
    expectError(() => decodePayloadChain(PayloadType.SA, hex('00 00 0004')), 'bad-length', 'SA');
  });
});

describe('Notify payload', () => {
  const notify = (type: number, data: string): Buffer => {
    const body = hex('00 00', type.toString(16).padStart(4, '0'), data);
    return Buffer.concat([hex('00 00', (4 + body.length).toString(16).padStart(4, '0')), body]);
  };

  it('COOKIE must be 1..64 octets', () => {
    expectError(() => decodePayloadChain(41, notify(NotifyType.COOKIE, '')), 'bad-length', 'N(COOKIE)');
    expectError(() => decodePayloadChain(41, notify(NotifyType.COOKIE, '00'.repeat(65))), 'bad-length', 'N(COOKIE)');
    assert.throws(
      () => encodePayloadChain([makeNotify(NotifyType.COOKIE, { kind: 'cookie', cookie: Buffer.alloc(65) })]),
      EncodeError,
    );
  });

  it('GROUP_SENDER must carry 4 octets; INVALID_KE_PAYLOAD 2; SIGNATURE_HASH_ALGORITHMS an even number', () => {
    expectError(() => decodePayloadChain(41, notify(NotifyType.GROUP_SENDER, '000001'), 'SK'), 'bad-length', 'SK > N(GROUP_SENDER)');
    expectError(() => decodePayloadChain(41, notify(NotifyType.INVALID_KE_PAYLOAD, '00')), 'bad-length', 'N(INVALID_KE_PAYLOAD)');
    expectError(
      () => decodePayloadChain(41, notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, '000200')),
      'bad-length',
      'N(SIGNATURE_HASH_ALGORITHMS)',
    );
  });

  it('typed data', () => {
    const [sha] = decodePayloadChain(41, notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, '0002 0003 0004'));
    assert.deepStrictEqual(sha && isPayloadOf(sha, PayloadType.NOTIFY) && sha.data, { kind: 'hash-algorithms', algorithms: [2, 3, 4] });
    const [ke] = decodePayloadChain(41, notify(NotifyType.INVALID_KE_PAYLOAD, '001f'));
    assert.deepStrictEqual(ke && isPayloadOf(ke, PayloadType.NOTIFY) && ke.data, { kind: 'ke-method', group: 31 });
  });

  it('error notifies whose data must be ignored decode to empty', () => {
    const [n] = decodePayloadChain(41, notify(NotifyType.AUTHORIZATION_FAILED, 'ffff'));
    assert.deepStrictEqual(n && isPayloadOf(n, PayloadType.NOTIFY) && n.data, { kind: 'empty' });
  });

  it('unknown notify types keep raw data, and name themselves by number', () => {
    const [n] = decodePayloadChain(41, notify(40961, 'abcd'));
    assert.deepStrictEqual(n && isPayloadOf(n, PayloadType.NOTIFY) && n.data, { kind: 'raw', data: hex('abcd') });
    const short = hex('00 00 0008 00 04 a001'); // SPI size 4 but no SPI
    expectError(() => decodePayloadChain(41, short), 'truncated', 'N(40961)');
  });

  it('data of the wrong shape for the type is refused by the encoder', () => {
    assert.throws(
      () => encodePayloadChain([makeNotify(NotifyType.GROUP_SENDER, { kind: 'raw', data: Buffer.alloc(4) })]),
      EncodeError,
    );
  });
});

describe('other payloads', () => {
  it('Nonce outside 16..256', () => {
    expectError(() => decodePayloadChain(40, hex('00 00 0013', '00'.repeat(15))), 'bad-length', 'No');
    const long = Buffer.concat([hex('00 00 0105'), Buffer.alloc(257)]);
    expectError(() => decodePayloadChain(40, long), 'bad-length', 'No');
    assert.throws(
      () => encodePayloadChain([{ type: PayloadType.NONCE, critical: false, nonce: Buffer.alloc(15) }]),
      EncodeError,
    );
  });

  it('Delete: SPI size wrong for the protocol, count disagreeing with the length', () => {
    expectError(() => decodePayloadChain(42, hex('00 00 0010', '03 08 0001', '0000000000000000')), 'bad-value', 'D');
    expectError(() => decodePayloadChain(42, hex('00 00 000c', '03 04 0002', '00000000')), 'bad-length', 'D');
    expectError(() => decodePayloadChain(42, hex('00 00 0008', '06 04 0000')), 'bad-value', 'D');
    const tooMany = hex('00 00 0008', '00 00', (Limits.maxDeleteSpis + 1).toString(16).padStart(4, '0'));
    expectError(() => decodePayloadChain(42, tooMany), 'limit', 'D');
  });

  it('TS: count disagreeing with the selectors; bad selector length', () => {
    const one = '07 00 0010 0000 ffff 0a000001 0a0000ff';
    expectError(() => decodePayloadChain(44, hex('00 00 0018', '02 000000', one)), 'truncated', 'TSi > ts[2]');
    expectError(() => decodePayloadChain(44, hex('00 00 0028', '01 000000', one, one)), 'bad-length', 'TSi');
    expectError(
      () => decodePayloadChain(44, hex('00 00 001c', '01 000000', '07 00 0014 0000 ffff 0a000001 0a0000ff 00000000')),
      'bad-length',
      'TSi > ts[1]',
    );
  });

  it('SKF fragment numbers', () => {
    expectError(() => decodePayloadChain(53, hex('00 00 0008', '0000 0001')), 'bad-value', 'SKF');
    expectError(() => decodePayloadChain(53, hex('00 00 0008', '0003 0002')), 'bad-value', 'SKF');
  });

  it('RFC 7427 signature data', () => {
    expectError(() => splitDigitalSignature(hex('06 3003020100')), 'truncated', 'AUTH');
    expectError(() => splitDigitalSignature(hex('03 310100')), 'bad-value', 'AUTH > AlgorithmIdentifier');
    expectError(() => splitDigitalSignature(hex('04 30030500 aa')), 'bad-length', 'AUTH > AlgorithmIdentifier');
    expectError(() => splitDigitalSignature(hex('03 30 8100')), 'bad-value', 'AUTH > AlgorithmIdentifier');
  });
});

describe('SK / SKF must be last', () => {
  const sk = '29 00 0008 01020304'; // SK, first inner payload Notify
  const vendor = '00 00 0004';

  it('decoding: octets after SK are an error', () => {
    decodePayloadChain(PayloadType.SK, hex(sk));
    expectError(() => decodePayloadChain(PayloadType.SK, hex(sk, vendor)), 'bad-length', '');
    expectError(() => decodePayloadChain(PayloadType.SKF, hex('00 00 000a 0001 0001 abcd', vendor)), 'bad-length', '');
  });

  it("decoding: SK's Next Payload is the inner type, not a following outer payload", () => {
    const [p] = decodePayloadChain(PayloadType.SK, hex(sk));
    assert.deepStrictEqual(p, { type: 46, critical: false, innerFirst: 41, encrypted: hex('01020304') });
  });

  it('encoding: SK followed by anything is refused', () => {
    const [p] = decodePayloadChain(PayloadType.SK, hex(sk));
    const v: Payload = { type: PayloadType.VENDOR_ID, critical: false, vendorId: Buffer.alloc(0) };
    assert.throws(() => encodePayloadChain([p!, v]), EncodeError);
    assert.throws(
      () =>
        encodeMessage({
          header: {
            spiI: Buffer.alloc(8),
            spiR: Buffer.alloc(8),
            majorVersion: 2,
            minorVersion: 0,
            exchangeType: 37,
            flags: { initiator: true, version: false, response: false },
            messageId: 2,
          },
          payloads: [p!, v],
        }),
      EncodeError,
    );
  });
});

describe('decoded values own their memory', () => {
  it('a decoded octet string is a copy that does not share a pooled slab', () => {
    const input = Buffer.from('0102030405060708', 'hex');
    const value = new Reader(input).bytes(4);
    assert.equal(value.byteLength, 4);
    assert.equal(value.buffer.byteLength, 4, 'no 8 KiB pool slab kept alive by a 4-octet value');
    input[0] = 0xff;
    assert.equal(value[0], 0x01, 'not an alias of the input');
  });
});
