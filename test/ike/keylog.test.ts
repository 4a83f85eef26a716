import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import {
  espAuthName,
  espEncrName,
  formatEspSaLine,
  formatIkev2KeyLine,
  ikev2EncrName,
  ikev2IntegName,
} from '../../src/ike/keylog.ts';
import { EncrId, IntegId } from '../../src/wire/iana.ts';

const h = (s: string): Buffer => Buffer.from(s, 'hex');

describe('Wireshark IKEv2 decryption table names (4.0)', () => {
  it('names every AES-CBC and AES-GCM variant we support exactly', () => {
    for (const bits of [128, 192, 256]) {
      assert.equal(ikev2EncrName(EncrId.AES_CBC, bits), `AES-CBC-${bits} [RFC3602]`);
      for (const icv of [8, 12, 16]) {
        const id = icv === 8 ? EncrId.AES_GCM_8 : icv === 12 ? EncrId.AES_GCM_12 : EncrId.AES_GCM_16;
        assert.equal(ikev2EncrName(id, bits), `AES-GCM-${bits} with ${icv} octet ICV [RFC5282]`);
      }
    }
    assert.equal(ikev2EncrName(EncrId.AES_GCM_16, 256), 'AES-GCM-256 with 16 octet ICV [RFC5282]');
  });

  it('has no name for ChaCha20-Poly1305 or a missing / odd key size', () => {
    assert.equal(ikev2EncrName(EncrId.CHACHA20_POLY1305, 256), undefined);
    assert.equal(ikev2EncrName(EncrId.AES_CBC, undefined), undefined);
    assert.equal(ikev2EncrName(EncrId.AES_CBC, 64), undefined);
  });

  it('names the integrity algorithms exactly', () => {
    assert.equal(ikev2IntegName(IntegId.HMAC_SHA1_96), 'HMAC_SHA1_96 [RFC2404]');
    assert.equal(ikev2IntegName(IntegId.HMAC_SHA2_256_128), 'HMAC_SHA2_256_128 [RFC4868]');
    assert.equal(ikev2IntegName(IntegId.HMAC_SHA2_384_192), 'HMAC_SHA2_384_192 [RFC4868]');
    assert.equal(ikev2IntegName(IntegId.HMAC_SHA2_512_256), 'HMAC_SHA2_512_256 [RFC4868]');
    assert.equal(ikev2IntegName(IntegId.NONE), 'NONE [RFC4306]');
    assert.equal(ikev2IntegName(undefined), 'NONE [RFC4306]');
    assert.equal(ikev2IntegName(IntegId.AES_XCBC_96), undefined);
  });

  it('formats a CBC + HMAC line', () => {
    const line = formatIkev2KeyLine({
      spiI: h('0011223344556677'),
      spiR: h('8899aabbccddeeff'),
      encr: EncrId.AES_CBC,
      encrKeyBits: 256,
      integ: IntegId.HMAC_SHA2_256_128,
      skEi: h('01'.repeat(32)),
      skEr: h('02'.repeat(32)),
      skAi: h('03'.repeat(32)),
      skAr: h('04'.repeat(32)),
    });
    assert.equal(
      line,
      '0011223344556677,8899aabbccddeeff,' +
        '01'.repeat(32) +
        ',' +
        '02'.repeat(32) +
        ',"AES-CBC-256 [RFC3602]",' +
        '03'.repeat(32) +
        ',' +
        '04'.repeat(32) +
        ',"HMAC_SHA2_256_128 [RFC4868]"',
    );
  });

  it('formats an AEAD line with salted keys and empty integrity keys', () => {
    const line = formatIkev2KeyLine({
      spiI: h('0011223344556677'),
      spiR: h('8899aabbccddeeff'),
      encr: EncrId.AES_GCM_16,
      encrKeyBits: 128,
      skEi: h('aa'.repeat(20)),
      skEr: h('bb'.repeat(20)),
      skAi: Buffer.alloc(0),
      skAr: Buffer.alloc(0),
    });
    assert.equal(
      line,
      `0011223344556677,8899aabbccddeeff,${'aa'.repeat(20)},${'bb'.repeat(20)},"AES-GCM-128 with 16 octet ICV [RFC5282]",,,"NONE [RFC4306]"`,
    );
  });

  it('gives no line for what Wireshark 4.0 cannot decrypt', () => {
    const k = { spiI: h('01'.repeat(8)), spiR: h('02'.repeat(8)), skEi: h('00'.repeat(36)), skEr: h('00'.repeat(36)), skAi: Buffer.alloc(0), skAr: Buffer.alloc(0) };
    assert.equal(formatIkev2KeyLine({ ...k, encr: EncrId.CHACHA20_POLY1305, encrKeyBits: 256 }), undefined);
    assert.equal(formatIkev2KeyLine({ ...k, encr: EncrId.AES_CBC, encrKeyBits: 128, integ: IntegId.AES_CMAC_96 }), undefined);
  });
});

describe('Wireshark ESP SA table lines (4.0)', () => {
  it('names ESP algorithms exactly', () => {
    assert.equal(espEncrName(EncrId.AES_CBC), 'AES-CBC [RFC3602]');
    assert.equal(espEncrName(EncrId.AES_GCM_16), 'AES-GCM with 16 octet ICV [RFC4106]');
    assert.equal(espEncrName(EncrId.AES_GCM_8), 'AES-GCM with 8 octet ICV [RFC4106]');
    assert.equal(espEncrName(EncrId.NULL), 'NULL');
    assert.equal(espEncrName(EncrId.CHACHA20_POLY1305), undefined);
    assert.equal(espAuthName(IntegId.HMAC_SHA2_256_128), 'HMAC-SHA-256-128 [RFC4868]');
    assert.equal(espAuthName(IntegId.HMAC_SHA1_96), 'HMAC-SHA-1-96 [RFC2404]');
    assert.equal(espAuthName(undefined), 'NULL');
  });

  it('formats a multicast group SA line with every field quoted', () => {
    assert.equal(
      formatEspSaLine({
        src: '*',
        dst: '239.1.1.1',
        spi: 0x0000abcd,
        encr: EncrId.AES_GCM_16,
        encrKey: h('11'.repeat(36)),
        integKey: Buffer.alloc(0),
      }),
      `"IPv4","*","239.1.1.1","0x0000abcd","AES-GCM with 16 octet ICV [RFC4106]","0x${'11'.repeat(36)}","NULL","0x"`,
    );
    assert.equal(
      formatEspSaLine({
        src: '2001:db8::1',
        dst: 'ff3e::1234',
        spi: 0xdeadbeef,
        encr: EncrId.AES_CBC,
        encrKey: h('22'.repeat(16)),
        integ: IntegId.HMAC_SHA2_256_128,
        integKey: h('33'.repeat(32)),
      }),
      `"IPv6","2001:db8::1","ff3e::1234","0xdeadbeef","AES-CBC [RFC3602]","0x${'22'.repeat(16)}","HMAC-SHA-256-128 [RFC4868]","0x${'33'.repeat(32)}"`,
    );
    assert.throws(
      () => formatEspSaLine({ src: '*', dst: '*', spi: -1, encr: EncrId.AES_CBC, encrKey: Buffer.alloc(16), integKey: Buffer.alloc(0) }),
      RangeError,
    );
  });
});
