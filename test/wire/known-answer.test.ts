/**
 * Known-answer tests: messages written out octet by octet from the figures
 * of RFC 7296 (Sections 3.1-3.14), RFC 7427 and RFC 9838, decoded and
 * checked field by field, then re-encoded to the same octets.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeHeader } from '../../src/wire/header.ts';
import {
  AuthMethod,
  EncrId,
  ExchangeType,
  IdType,
  KeId,
  KwaId,
  NotifyType,
  PayloadType,
  PrfId,
  ProtocolId,
  TransformAttr,
  TransformType,
  TsType,
} from '../../src/wire/iana.ts';
import {
  decodeMessage,
  encodeMessage,
  encodeProtectedPrefix,
  messageSummary,
  splitProtectedMessage,
} from '../../src/wire/message.ts';
import {
  decodePayloadChain,
  encodePayloadChain,
  findNotify,
  findPayload,
  isPayloadOf,
  type Payload,
} from '../../src/wire/payload.ts';
import { splitDigitalSignature } from '../../src/wire/payloads/auth.ts';

/** Hex with spaces and newlines for readability. */
function hex(...parts: string[]): Buffer {
  return Buffer.from(parts.join('').replace(/\s+/g, ''), 'hex');
}
const rep = (octet: string, n: number): string => octet.repeat(n);

describe('IKE_SA_INIT request: HDR, SA, KE, Ni, N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP)', () => {
  const msg = hex(
    // IKE header (RFC 7296 3.1)
    '0102030405060708', //   IKE SA Initiator's SPI
    '0000000000000000', //   IKE SA Responder's SPI (zero in the first message)
    '21', //                  Next Payload: SA (33)
    '20', //                  MjVer 2, MnVer 0
    '22', //                  Exchange Type: IKE_SA_INIT (34)
    '08', //                  Flags: Initiator
    '00000000', //            Message ID 0
    '000000d0', //            Length 208
    // SA payload (3.3)
    '22 00 0030', //          Next: KE (34), C=0, length 48
    '00 00 002c', //          Proposal: last (0), reserved, length 44
    '01 01 00 04', //         Proposal Num 1, Protocol IKE, SPI Size 0, 4 transforms
    '03 00 000c 01 00 0014', // Transform: more (3), length 12, ENCR, AES_GCM_16 (20)
    '800e 0100', //            attribute TV Key Length (14) = 256
    '03 00 0008 02 00 0007', // PRF_HMAC_SHA2_512
    '03 00 0008 04 00 001f', // KE: Curve25519 (31)
    '00 00 0008 0d 00 0003', // last: KWA (13) KW_5649_256
    // KE payload (3.4)
    '28 00 0028', //          Next: Nonce (40), length 40
    '001f 0000', //           KE method 31, reserved
    rep('11', 32), //         key exchange data
    // Nonce payload (3.9)
    '29 00 0024', //          Next: Notify (41), length 36
    rep('22', 32),
    // Notify payload (3.10): NAT_DETECTION_SOURCE_IP (16388 = 0x4004)
    '29 00 001c', //          Next: Notify, length 28
    '00 00 4004', //          Protocol 0, SPI Size 0, type
    rep('33', 20), //         SHA-1 hash
    // Notify: NAT_DETECTION_DESTINATION_IP (16389 = 0x4005)
    '00 00 001c',
    '00 00 4005',
    rep('44', 20),
  );

  it('decodes every field', () => {
    assert.equal(msg.length, 208);
    const m = decodeMessage(msg);
    assert.deepStrictEqual(m.header, {
      spiI: hex('0102030405060708'),
      spiR: Buffer.alloc(8),
      nextPayload: PayloadType.SA,
      majorVersion: 2,
      minorVersion: 0,
      exchangeType: ExchangeType.IKE_SA_INIT,
      flags: { initiator: true, version: false, response: false },
      messageId: 0,
      length: 208,
    });
    assert.deepStrictEqual(
      m.payloads.map((p) => p.type),
      [33, 34, 40, 41, 41],
    );
    const sa = findPayload(m.payloads, PayloadType.SA);
    assert.deepStrictEqual(sa, {
      type: 33,
      critical: false,
      proposals: [
        {
          num: 1,
          protocolId: ProtocolId.IKE,
          spi: Buffer.alloc(0),
          transforms: [
            {
              type: TransformType.ENCR,
              id: EncrId.AES_GCM_16,
              attributes: [{ type: TransformAttr.KEY_LENGTH, format: 'TV', value: 256 }],
            },
            { type: TransformType.PRF, id: PrfId.HMAC_SHA2_512, attributes: [] },
            { type: TransformType.KE, id: KeId.CURVE25519, attributes: [] },
            { type: TransformType.KWA, id: KwaId.KW_5649_256, attributes: [] },
          ],
        },
      ],
    });
    assert.deepStrictEqual(findPayload(m.payloads, PayloadType.KE), {
      type: 34,
      critical: false,
      group: KeId.CURVE25519,
      data: Buffer.alloc(32, 0x11),
    });
    assert.deepStrictEqual(findPayload(m.payloads, PayloadType.NONCE)?.nonce, Buffer.alloc(32, 0x22));
    assert.deepStrictEqual(findNotify(m.payloads, NotifyType.NAT_DETECTION_SOURCE_IP), {
      type: 41,
      critical: false,
      protocolId: 0,
      spi: Buffer.alloc(0),
      notifyType: NotifyType.NAT_DETECTION_SOURCE_IP,
      data: { kind: 'nat-hash', hash: Buffer.alloc(20, 0x33) },
    });
    assert.deepStrictEqual(findNotify(m.payloads, NotifyType.NAT_DETECTION_DESTINATION_IP)?.data, {
      kind: 'nat-hash',
      hash: Buffer.alloc(20, 0x44),
    });
  });

  it('re-encodes to the same octets', () => {
    assert.deepStrictEqual(encodeMessage(decodeMessage(msg)), msg);
  });

  it('summarises for logs', () => {
    assert.equal(
      messageSummary(decodeMessage(msg)).text,
      'IKE_SA_INIT request #0 [I] SA KE No N(NAT_DETECTION_SOURCE_IP) N(NAT_DETECTION_DESTINATION_IP)',
    );
  });

  it('ignores reserved bits (header flags, generic header, transform and KE reserved)', () => {
    const dirty = Buffer.from(msg);
    dirty[19] = 0x08 | 0x01 | 0x80; // flag bits other than I, V, R
    dirty[28 + 1] = 0x7f; // SA generic header: reserved bits, C clear
    dirty[28 + 48 + 4 + 2] = 0xff; // KE reserved
    const m = decodeMessage(dirty);
    assert.deepStrictEqual(m, decodeMessage(msg));
    assert.deepStrictEqual(encodeMessage(m), msg, 'the encoder writes zeros');
  });
});

describe('Delete payloads (RFC 7296 3.11, RFC 9838 2.4.3 / 4.6)', () => {
  it('ESP, two SPIs', () => {
    const bytes = hex(
      '00 00 0010', // Next: none, length 16
      '03 04 0002', // Protocol ESP, SPI Size 4, 2 SPIs
      'aabbccdd 11223344',
    );
    const [d] = decodePayloadChain(PayloadType.DELETE, bytes);
    assert.deepStrictEqual(d, {
      type: 42,
      critical: false,
      protocolId: ProtocolId.ESP,
      spiSize: 4,
      spis: [hex('aabbccdd'), hex('11223344')],
    });
    assert.deepStrictEqual(encodePayloadChain([d!]).bytes, bytes);
  });

  it('IKE SA: SPI Size 0, no SPIs', () => {
    const bytes = hex('00 00 0008', '01 00 0000');
    const [d] = decodePayloadChain(PayloadType.DELETE, bytes);
    assert.deepStrictEqual(d, { type: 42, critical: false, protocolId: 1, spiSize: 0, spis: [] });
  });

  it('G-IKEv2 member exclusion: ESP zero SPI, then GIKE_UPDATE zero 16-octet SPI', () => {
    const bytes = hex(
      '2a 00 000c', // Next: Delete, length 12
      '03 04 0001 00000000', // ESP, zero SPI: all Data-Security SAs
      '00 00 0018', // length 24
      '06 10 0001', // GIKE_UPDATE (6), SPI Size 16, 1 SPI
      rep('00', 16),
    );
    const ds = decodePayloadChain(PayloadType.DELETE, bytes);
    assert.equal(ds.length, 2);
    assert.deepStrictEqual(ds[1], {
      type: 42,
      critical: false,
      protocolId: ProtocolId.GIKE_UPDATE,
      spiSize: 16,
      spis: [Buffer.alloc(16)],
    });
    assert.deepStrictEqual(encodePayloadChain(ds).bytes, bytes);
  });

  it('protocol 0 (whole group SA) accepts any SPI size', () => {
    const [d] = decodePayloadChain(PayloadType.DELETE, hex('00 00 0008', '00 00 0000'));
    assert.ok(d && isPayloadOf(d, PayloadType.DELETE));
    assert.equal(d.protocolId, 0);
  });
});

describe('Traffic Selector payloads (RFC 7296 3.13)', () => {
  it('TSi with one IPv4 range', () => {
    const bytes = hex(
      '00 00 0018', // Next: none, length 24
      '01 000000', // 1 selector, reserved
      '07 11 0010', // TS_IPV4_ADDR_RANGE, UDP, selector length 16
      '0000 ffff', // ports 0-65535
      'c0000201 c00002ff', // 192.0.2.1 - 192.0.2.255
    );
    const [ts] = decodePayloadChain(PayloadType.TSi, bytes);
    assert.deepStrictEqual(ts, {
      type: 44,
      critical: false,
      selectors: [
        {
          type: TsType.TS_IPV4_ADDR_RANGE,
          ipProtocol: 17,
          startPort: 0,
          endPort: 65535,
          startAddress: '192.0.2.1',
          endAddress: '192.0.2.255',
        },
      ],
    });
    assert.deepStrictEqual(encodePayloadChain([ts!]).bytes, bytes);
  });

  it('TSr with an IPv6 range and an opaque (unknown type) selector', () => {
    const bytes = hex(
      '00 00 0038', // length 56
      '02 000000', // 2 selectors
      '08 00 0028', // TS_IPV6_ADDR_RANGE, any protocol, length 40
      '01f4 01f4', // port 500 only
      '20010db8000000000000000000000001', // 2001:db8::1
      '20010db800000000000000000000ffff', // 2001:db8::ffff
      '09 00 0008 01020304', // type 9 (FC), kept raw
    );
    const [ts] = decodePayloadChain(PayloadType.TSr, bytes);
    assert.deepStrictEqual(ts, {
      type: 45,
      critical: false,
      selectors: [
        {
          type: TsType.TS_IPV6_ADDR_RANGE,
          ipProtocol: 0,
          startPort: 500,
          endPort: 500,
          startAddress: '2001:db8::1',
          endAddress: '2001:db8::ffff',
        },
        { type: 9, raw: hex('09 00 0008 01020304') },
      ],
    });
    assert.deepStrictEqual(encodePayloadChain([ts!]).bytes, bytes);
  });
});

describe('AUTH payload with RFC 7427 Digital Signature', () => {
  // ecdsa-with-SHA256 AlgorithmIdentifier, RFC 7427 Appendix A.3.1.
  const ecdsaSha256 = hex('300a06082a8648ce3d040302');
  const bytes = hex(
    '00 00 0055', // Next: none, length 85
    '0e 000000', // Auth Method 14 (Digital Signature), reserved
    '0c', // ASN.1 Length 12
    '300a06082a8648ce3d040302', // AlgorithmIdentifier
    rep('5a', 64), // signature value
  );

  it('decodes method and data, and splits the signature data', () => {
    const [auth] = decodePayloadChain(PayloadType.AUTH, bytes);
    assert.ok(auth && isPayloadOf(auth, PayloadType.AUTH));
    assert.equal(auth.method, AuthMethod.DIGITAL_SIGNATURE);
    assert.deepStrictEqual(splitDigitalSignature(auth.data), {
      algorithmIdentifier: ecdsaSha256,
      signature: Buffer.alloc(64, 0x5a),
    });
    assert.deepStrictEqual(encodePayloadChain([auth]).bytes, bytes);
  });
});

describe('GSA_AUTH request: HDR, SK{IDi, AUTH, IDg, SAg, N(GROUP_SENDER)}', () => {
  const encrypted = Buffer.alloc(40, 0xee); // IV | ciphertext | ICV, opaque here
  const msg = hex(
    'a1a2a3a4a5a6a7a8', // SPIi
    'b1b2b3b4b5b6b7b8', // SPIr
    '2e', //               Next Payload: SK (46)
    '20', //               version 2.0
    '27', //               Exchange Type: GSA_AUTH (39)
    '08', //               Flags: Initiator
    '00000001', //         Message ID 1
    '00000048', //         Length 72 = 28 + 4 + 40
    '23 00 002c', //       SK: Next = IDi (35, the first inner payload), length 44
    rep('ee', 40),
  );
  // The decrypted plaintext of the SK payload.
  const inner = hex(
    '27 00 0013', // IDi: Next AUTH (39), length 19
    '02 000000', // ID_FQDN
    Buffer.from('gm1.example').toString('hex'),
    '32 00 0028', // AUTH: Next IDg (50), length 40
    '02 000000', // Shared Key MIC
    rep('77', 32),
    '21 00 000c', // IDg: Next SA (33, here SAg), length 12
    '0b 000000', // ID_KEY_ID
    '000004d2', // group 1234
    '29 00 0020', // SAg: Next Notify, length 32
    '00 00 001c', // proposal: last, length 28
    '01 03 00 02', // num 1, ESP, SPI size 0 (SAg), 2 transforms
    '03 00 000c 01 00 0014 800e 0100', // ENCR AES_GCM_16, key length 256
    '00 00 0008 0d 00 0003', // KWA KW_5649_256
    '00 00 000c', // N: last, length 12
    '00 00 402d', // protocol 0, SPI size 0, GROUP_SENDER (16429)
    '00000002', // two Sender-IDs wanted
  );

  it('decodes the header and the SK container', () => {
    const m = decodeMessage(msg);
    assert.equal(m.header.exchangeType, ExchangeType.GSA_AUTH);
    assert.equal(m.header.messageId, 1);
    assert.deepStrictEqual(m.header.flags, { initiator: true, version: false, response: false });
    assert.deepStrictEqual(m.payloads, [
      { type: PayloadType.SK, critical: false, innerFirst: PayloadType.IDi, encrypted },
    ]);
    assert.deepStrictEqual(encodeMessage(m), msg);
  });

  it('decodes the inner payloads, IDg and SAg included', () => {
    const payloads = decodePayloadChain(PayloadType.IDi, inner, 'SK');
    assert.deepStrictEqual(
      payloads.map((p) => p.type),
      [35, 39, 50, 33, 41],
    );
    assert.deepStrictEqual(findPayload(payloads, PayloadType.IDg), {
      type: 50,
      critical: false,
      idType: IdType.ID_KEY_ID,
      data: hex('000004d2'),
    });
    assert.deepStrictEqual(findPayload(payloads, PayloadType.IDi)?.data, Buffer.from('gm1.example'));
    assert.equal(findPayload(payloads, PayloadType.SA)?.proposals[0]?.protocolId, ProtocolId.ESP);
    assert.deepStrictEqual(findNotify(payloads, NotifyType.GROUP_SENDER)?.data, { kind: 'sender-id-count', count: 2 });
    const reencoded = encodePayloadChain(payloads);
    assert.equal(reencoded.firstType, PayloadType.IDi);
    assert.deepStrictEqual(reencoded.bytes, inner);
    assert.equal(
      messageSummary(decodeMessage(msg), payloads).text,
      'GSA_AUTH request #1 [I] SK{IDi AUTH IDg SA N(GROUP_SENDER)}',
    );
  });

  it('gives the engine the authenticated prefix, on both sides', () => {
    const m = decodeMessage(msg);
    const split = splitProtectedMessage(msg, m);
    assert.deepStrictEqual(split, { prefix: msg.subarray(0, 32), encrypted });
    const header = decodeHeader(msg);
    const prefix = encodeProtectedPrefix({
      header,
      container: { type: PayloadType.SK, critical: false, innerFirst: PayloadType.IDi },
      bodyLength: encrypted.length,
    });
    assert.deepStrictEqual(prefix, split?.prefix);
  });
});

describe('SKF (RFC 7383 2.5)', () => {
  it('fragment 2 of 3', () => {
    const bytes = hex(
      '00 00 000e', // Next: 0 (not the first fragment), length 14
      '0002 0003', // Fragment Number 2, Total Fragments 3
      'c0c1c2c3c4c5',
    );
    const [f] = decodePayloadChain(PayloadType.SKF, bytes);
    assert.deepStrictEqual(f, {
      type: 53,
      critical: false,
      innerFirst: 0,
      fragmentNumber: 2,
      totalFragments: 3,
      encrypted: hex('c0c1c2c3c4c5'),
    });
    const chain: Payload[] = [f!];
    assert.deepStrictEqual(encodePayloadChain(chain).bytes, bytes);
  });
});
