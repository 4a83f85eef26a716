import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  checkSenderId,
  createEspSa,
  createInnerEncoder,
  decodeInner,
  EspConfigError,
  ivCounterLimit,
  NEXT_HEADER_IPV4,
  NEXT_HEADER_NONE,
  NEXT_HEADER_UDP,
  readSenderId,
  writeSenderIv,
  type EspAlgorithm,
  type EspKeys,
} from '../../src/dataplane/esp.ts';
import { EncrId, IntegId } from '../../src/wire/iana.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/**
 * Published ESP packets. AES-GCM: draft-mcgrew-gcm-test-01 Section 4 ("Test
 * Cases for the use of GCM and GMAC in IPsec ESP"), the cases with 32-bit
 * sequence numbers (the others use ESN, which multicast SAs never do).
 * ChaCha20-Poly1305: RFC 7634 Appendix A. Each `plaintext` is Payload |
 * Padding | Pad Length | Next Header as the document prints it; the IV is
 * written as Sender-ID field | counter for a matching GWP_SENDER_ID_BITS.
 */
const VECTORS = [
  {
    name: 'draft-mcgrew-gcm-test-01 case 2 (AES-128-GCM, SPI 0000a5f8)',
    alg: { encr: EncrId.AES_GCM_16, encrKeyBits: 128 },
    keymat: 'feffe9928665731c6d6a8f9467308308' + 'cafebabe',
    spi: 0x0000a5f8,
    seq: 0x0a,
    iv: { senderIdBits: 32, senderId: 0xfacedbad, counter: 0xdecaf888 },
    plaintext: `4500003e698f000080114dccc0a80102 c0a801010a980035002a2343b2d00100
                00010000000000000373697009637962 65726369747902646b00000100010001`,
    packet: `0000a5f80000000afacedbaddecaf888 deb22cd9b07c72c16e3a65beeb8df304
             a5a5897d33ae530f1ba76d5d114d2a5c 3de81827c10e9a4f51330d0eec416642
             cfbb85a5b47e48a4ec3b9ba95d918bd1 83b70d3aa8bc6ee4c309e9d85a41ad4a`,
  },
  {
    name: 'draft-mcgrew-gcm-test-01 case 3 (AES-256-GCM, SPI 4a2cbfe3)',
    alg: { encr: EncrId.AES_GCM_16, encrKeyBits: 256 },
    keymat: 'abbccddef00112233445566778899aababbccddef00112233445566778899aab' + '11223344',
    spi: 0x4a2cbfe3,
    seq: 2,
    iv: { senderIdBits: 8, senderId: 0x01, counter: 0x02030405060708 },
    plaintext: `4500003069a6400080062690c0a80102 9389155e0a9e008b2dc57ee000000000
                7002400020bf0000020405b401010402 01020201`,
    packet: `4a2cbfe3000000020102030405060708 ff425c9b724599df7a3bcd510194e00d
             6a78107f1b0b1cbf06efae9d65a5d763 748a637985771d347f0545659f14e99d
             ef842d8eb335f4eecfdbf831824b4c49 15956c96`,
  },
  {
    name: 'draft-mcgrew-gcm-test-01 case 12 (AES-128-GCM, SPI 335467ae, empty payload)',
    alg: { encr: EncrId.AES_GCM_16, encrKeyBits: 128 },
    keymat: '7d773d00c144c525ac619d18c84a3f47' + 'd9664267',
    spi: 0x335467ae,
    seq: 0xffffffff,
    iv: { senderIdBits: 16, senderId: 0x4345, counter: 0x7e9182443bc6 },
    plaintext: '01020201',
    packet: `335467aeffffffff43457e9182443bc6 437f866bcb3f699fe9b0822bac961c45 04bef270`,
  },
  {
    name: 'RFC 7634 Appendix A (ChaCha20-Poly1305, SPI 01020304)',
    alg: { encr: EncrId.CHACHA20_POLY1305 },
    keymat: '808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f' + 'a0a1a2a3',
    spi: 0x01020304,
    seq: 5,
    iv: { senderIdBits: 8, senderId: 0x10, counter: 0x11121314151617 },
    plaintext: `450000 54a6f2 00004001e778c6336405 c0000205 08005b7a3a080000553bec10
                00073627 08090a0b0c0d0e0f1011121314151617 18191a1b1c1d1e1f2021222324252627
                28292a2b2c2d2e2f3031323334353637 01020204`,
    packet: `01020304 00000005 1011121314151617
             24039428b97f417e3c13753a4f05087b 67c352e6a7fab1b982d466ef407ae5c6
             14ee8099d52844eb61aa95dfab4c02f7 2aa71e7c4c4f64c9befe2facc638e8f3
             cbec163fac469b502773f6fb94e664da 9165b82829f641e0 76aaa8266b7fb0f7b11b369907e1ad43`,
  },
];

describe('ESP known answers', () => {
  for (const v of VECTORS) {
    it(`${v.name}: seal reproduces the published packet`, () => {
      const sa = createEspSa(v.spi, v.alg, { encrKey: hex(v.keymat), integKey: Buffer.alloc(0) });
      const pt = hex(v.plaintext);
      const nextHeader = pt[pt.length - 1]!;
      const padLength = pt[pt.length - 2]!;
      const payload = pt.subarray(0, pt.length - 2 - padLength);
      assert.equal(sa.seal(v.seq, v.iv, nextHeader, payload).toString('hex'), hex(v.packet).toString('hex'));
    });
    it(`${v.name}: open recovers payload and Next Header`, () => {
      const sa = createEspSa(v.spi, v.alg, { encrKey: hex(v.keymat), integKey: Buffer.alloc(0) });
      const pt = hex(v.plaintext);
      const r = sa.open(hex(v.packet));
      assert.ok(r.ok);
      assert.equal(r.packet.spi, v.spi);
      assert.equal(r.packet.seq, v.seq);
      assert.equal(r.packet.nextHeader, pt[pt.length - 1]);
      assert.deepEqual(r.packet.payload, pt.subarray(0, pt.length - 2 - pt[pt.length - 2]!));
      assert.equal(readSenderId(r.packet.iv!, v.iv.senderIdBits), v.iv.senderId);
    });
  }
});

interface Suite {
  readonly name: string;
  readonly alg: EspAlgorithm;
  readonly encrKeyLength: number;
  readonly integKeyLength: number;
}

export const SUITES: readonly Suite[] = [
  { name: 'AES-GCM-128/16', alg: { encr: EncrId.AES_GCM_16, encrKeyBits: 128 }, encrKeyLength: 20, integKeyLength: 0 },
  { name: 'AES-GCM-192/12', alg: { encr: EncrId.AES_GCM_12, encrKeyBits: 192 }, encrKeyLength: 28, integKeyLength: 0 },
  { name: 'AES-GCM-256/8', alg: { encr: EncrId.AES_GCM_8, encrKeyBits: 256 }, encrKeyLength: 36, integKeyLength: 0 },
  { name: 'AES-GCM-256/16', alg: { encr: EncrId.AES_GCM_16, encrKeyBits: 256 }, encrKeyLength: 36, integKeyLength: 0 },
  { name: 'ChaCha20-Poly1305', alg: { encr: EncrId.CHACHA20_POLY1305 }, encrKeyLength: 36, integKeyLength: 0 },
  {
    name: 'AES-CBC-128 + HMAC-SHA1-96',
    alg: { encr: EncrId.AES_CBC, encrKeyBits: 128, integ: IntegId.HMAC_SHA1_96 },
    encrKeyLength: 16,
    integKeyLength: 20,
  },
  {
    name: 'AES-CBC-256 + HMAC-SHA2-256-128',
    alg: { encr: EncrId.AES_CBC, encrKeyBits: 256, integ: IntegId.HMAC_SHA2_256_128 },
    encrKeyLength: 32,
    integKeyLength: 32,
  },
  {
    name: 'AES-CBC-192 + HMAC-SHA2-384-192',
    alg: { encr: EncrId.AES_CBC, encrKeyBits: 192, integ: IntegId.HMAC_SHA2_384_192 },
    encrKeyLength: 24,
    integKeyLength: 48,
  },
  {
    name: 'AES-CBC-256 + HMAC-SHA2-512-256',
    alg: { encr: EncrId.AES_CBC, encrKeyBits: 256, integ: IntegId.HMAC_SHA2_512_256 },
    encrKeyLength: 32,
    integKeyLength: 64,
  },
];

function keysFor(s: Suite): EspKeys {
  return { encrKey: randomBytes(s.encrKeyLength), integKey: randomBytes(s.integKeyLength) };
}

describe('ESP round trips', () => {
  for (const s of SUITES) {
    it(`${s.name}: every payload length 0..80 and 1400 round-trips with aligned trailer`, () => {
      const sa = createEspSa(0x1234, s.alg, keysFor(s));
      const block = s.alg.encr === EncrId.AES_CBC ? 16 : 4;
      for (const n of [...Array.from({ length: 81 }, (_, i) => i), 1400, 65000]) {
        const payload = randomBytes(n);
        const pkt = sa.seal(n + 1, { senderIdBits: 8, senderId: 3, counter: n }, NEXT_HEADER_UDP, payload);
        assert.equal(pkt.length, n + sa.overhead(n));
        assert.equal((pkt.length - 8 - sa.ivLength - sa.icvLength) % block, 0);
        const r = sa.open(pkt);
        assert.ok(r.ok, `length ${n}`);
        assert.deepEqual(r.packet.payload, payload);
        assert.equal(r.packet.nextHeader, NEXT_HEADER_UDP);
        assert.equal(r.packet.seq, n + 1);
      }
    });

    it(`${s.name}: any flipped bit, truncation or wrong key is dropped`, () => {
      const keys = keysFor(s);
      const sa = createEspSa(0x1234, s.alg, keys);
      const pkt = sa.seal(7, { senderIdBits: 8, senderId: 1, counter: 9 }, NEXT_HEADER_UDP, randomBytes(100));
      for (let i = 0; i < pkt.length; i++) {
        const bad = Buffer.from(pkt);
        bad[i]! ^= 1 << i % 8;
        const r = sa.open(bad);
        assert.equal(r.ok, false, `bit flip at octet ${i}`);
        if (!r.ok) assert.equal(r.reason, 'corrupted');
      }
      for (const cut of [0, 1, 8, 20, pkt.length - 1]) {
        const r = sa.open(pkt.subarray(0, cut));
        assert.equal(r.ok, false);
      }
      const other = createEspSa(0x1234, s.alg, keysFor(s));
      assert.equal(other.open(pkt).ok, false);
    });
  }

  it('AES-CBC IVs are fresh per packet', () => {
    const s = SUITES.find((x) => x.alg.encr === EncrId.AES_CBC)!;
    const sa = createEspSa(0x1234, s.alg, keysFor(s));
    const ivs = new Set<string>();
    for (let i = 0; i < 1000; i++) ivs.add(sa.seal(i + 1, undefined, 17, Buffer.alloc(10)).subarray(8, 24).toString('hex'));
    assert.equal(ivs.size, 1000);
  });

  it('rejects inconsistent configurations with typed errors', () => {
    const bad = (f: () => unknown, kind: string): void =>
      assert.throws(f, (e: unknown) => e instanceof EspConfigError && e.kind === kind);
    bad(() => createEspSa(0, { encr: EncrId.AES_GCM_16 }, { encrKey: Buffer.alloc(20), integKey: Buffer.alloc(0) }), 'bad-spi');
    bad(() => createEspSa(256, { encr: EncrId.AES_CTR }, { encrKey: Buffer.alloc(20), integKey: Buffer.alloc(0) }), 'unsupported-algorithm');
    bad(() => createEspSa(256, { encr: EncrId.AES_GCM_16 }, { encrKey: Buffer.alloc(16), integKey: Buffer.alloc(0) }), 'bad-key-length');
    bad(
      () => createEspSa(256, { encr: EncrId.AES_GCM_16, encrKeyBits: 256 }, { encrKey: Buffer.alloc(20), integKey: Buffer.alloc(0) }),
      'bad-key-length',
    );
    bad(
      () =>
        createEspSa(256, { encr: EncrId.AES_GCM_16, integ: IntegId.HMAC_SHA2_256_128 }, { encrKey: Buffer.alloc(20), integKey: Buffer.alloc(32) }),
      'bad-combination',
    );
    bad(() => createEspSa(256, { encr: EncrId.AES_CBC }, { encrKey: Buffer.alloc(16), integKey: Buffer.alloc(0) }), 'bad-combination');
    const gcm = createEspSa(256, { encr: EncrId.AES_GCM_16 }, { encrKey: Buffer.alloc(20), integKey: Buffer.alloc(0) });
    bad(() => gcm.seal(1, undefined, 17, Buffer.alloc(1)), 'bad-sender-id');
  });
});

describe('Sender-ID IV (RFC 6054, RFC 9838 2.5.2)', () => {
  it('puts the Sender-ID in the most significant bits, right-aligned, counter below', () => {
    const iv = Buffer.alloc(8);
    writeSenderIv(iv, 0, { senderIdBits: 12, senderId: 0xabc, counter: 5 });
    assert.equal(iv.toString('hex'), 'abc0000000000005');
    writeSenderIv(iv, 0, { senderIdBits: 16, senderId: 1, counter: 0x1_0000_0002 });
    assert.equal(iv.toString('hex'), '0001000100000002');
    writeSenderIv(iv, 0, { senderIdBits: 0, senderId: 0, counter: 2 ** 53 - 1 });
    assert.equal(iv.toString('hex'), '001fffffffffffff');
    writeSenderIv(iv, 0, { senderIdBits: 32, senderId: 0xffffffff, counter: 0xffffffff });
    assert.equal(iv.toString('hex'), 'ffffffffffffffff');
    assert.equal(readSenderId(Buffer.from('abc0000000000005', 'hex'), 12), 0xabc);
  });

  it('counter space is 2^(64-bits), capped at 2^53', () => {
    assert.equal(ivCounterLimit(16), 2 ** 48);
    assert.equal(ivCounterLimit(32), 2 ** 32);
    assert.equal(ivCounterLimit(8), 2 ** 53);
  });

  it('a Sender-ID that does not fit is a fatal configuration error', () => {
    assert.throws(() => checkSenderId(8, 256), (e: unknown) => e instanceof EspConfigError && e.kind === 'bad-sender-id');
    assert.throws(() => checkSenderId(33, 1), EspConfigError);
    checkSenderId(8, 255);
    checkSenderId(0, 0);
  });
});

describe('inner framing', () => {
  const addressing = { groupAddress: '239.1.2.3', groupPort: 5000, sourceAddress: '10.0.0.7', sourcePort: 4000 };

  it('transport: UDP header + data, Next Header 17', () => {
    const enc = createInnerEncoder('transport', addressing);
    assert.equal(enc.nextHeader, NEXT_HEADER_UDP);
    const inner = enc.encode(Buffer.from('hello'));
    assert.equal(inner.toString('hex'), '0fa01388000d0000' + Buffer.from('hello').toString('hex'));
    const r = decodeInner(NEXT_HEADER_UDP, inner, '239.1.2.3', 5000);
    assert.ok(r.ok);
    assert.equal(r.datagram.data.toString(), 'hello');
    assert.equal(r.datagram.sourcePort, 4000);
    assert.equal(decodeInner(NEXT_HEADER_UDP, inner, '239.1.2.3', 5001).ok, false);
  });

  it('tunnel: IPv4 header with preserved addresses and a valid checksum, Next Header 4', () => {
    const enc = createInnerEncoder('tunnel', addressing);
    assert.equal(enc.nextHeader, NEXT_HEADER_IPV4);
    const inner = enc.encode(Buffer.from('hi'));
    let sum = 0;
    for (let i = 0; i < 20; i += 2) sum += inner.readUInt16BE(i);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    assert.equal(sum, 0xffff, 'IPv4 header checksum verifies');
    assert.equal(inner.readUInt16BE(2), inner.length);
    const r = decodeInner(NEXT_HEADER_IPV4, inner, '239.1.2.3', 5000);
    assert.ok(r.ok);
    assert.equal(r.datagram.innerSource, '10.0.0.7');
    assert.equal(r.datagram.innerDestination, '239.1.2.3');
    assert.equal(r.datagram.data.toString(), 'hi');
    const other = decodeInner(NEXT_HEADER_IPV4, inner, '239.9.9.9', 5000);
    assert.equal(other.ok, false);
    if (!other.ok) assert.equal(other.reason, 'bad-inner');
  });

  it('Next Header 59 is a dummy packet, anything else is rejected', () => {
    const dummy = decodeInner(NEXT_HEADER_NONE, Buffer.alloc(10), '239.1.2.3', 5000);
    assert.equal(!dummy.ok && dummy.reason, 'dummy');
    const tcp = decodeInner(6, Buffer.alloc(30), '239.1.2.3', 5000);
    assert.equal(!tcp.ok && tcp.reason, 'bad-inner');
    const short = decodeInner(NEXT_HEADER_UDP, Buffer.alloc(4), '239.1.2.3', 5000);
    assert.equal(!short.ok && short.reason, 'bad-inner');
  });
});
