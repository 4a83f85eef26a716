import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  Asn1Error,
  DerReader,
  Tag,
  bitIsSet,
  decodeBitString,
  decodeBoolean,
  decodeInteger,
  decodeNull,
  decodeOid,
  decodeString,
  decodeTime,
  derBitString,
  derBoolean,
  derGeneralizedTime,
  derIa5String,
  derInteger,
  derNamedBits,
  derNull,
  derOctetString,
  derOid,
  derPrintableString,
  derSequence,
  derSetOf,
  derTime,
  derTlv,
  derUnsignedInteger,
  derUtf8String,
  parseDer,
} from '../../src/crypto/asn1.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function asn1Kind(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof Asn1Error, `expected Asn1Error, got ${String(e)}`);
    return e.kind;
  }
  assert.fail('expected an Asn1Error');
}

test('INTEGER encodings are minimal two’s complement (X.690 8.3)', () => {
  const cases: [bigint, string][] = [
    [0n, '020100'],
    [1n, '020101'],
    [127n, '02017f'],
    [128n, '02020080'],
    [256n, '02020100'],
    [-1n, '0201ff'],
    [-128n, '020180'],
    [-129n, '0202ff7f'],
    [65537n, '0203010001'],
  ];
  for (const [v, h] of cases) {
    assert.equal(derInteger(v).toString('hex'), h, `encode ${v}`);
    assert.equal(decodeInteger(parseDer(hex(h))), v, `decode ${h}`);
  }
  assert.equal(derUnsignedInteger(hex('00ff01')).toString('hex'), '020300ff01');
  assert.equal(derUnsignedInteger(hex('0000')).toString('hex'), '020100');
  assert.equal(asn1Kind(() => decodeInteger(parseDer(hex('02020001')))), 'bad-value');
  assert.equal(asn1Kind(() => decodeInteger(parseDer(hex('0202ff80')))), 'bad-value');
  assert.equal(asn1Kind(() => decodeInteger(parseDer(hex('0200')))), 'bad-value');
});

test('OBJECT IDENTIFIER encode/decode (rsadsi, ecdsa-with-SHA256, id-Ed25519)', () => {
  // Well-known encodings: 1.2.840.113549 = 2a 86 48 86 f7 0d; 1.3.101.112 = 2b 65 70.
  assert.equal(derOid('1.2.840.113549').toString('hex'), '06062a864886f70d');
  assert.equal(derOid('1.2.840.10045.4.3.2').toString('hex'), '06082a8648ce3d040302');
  assert.equal(derOid('1.3.101.112').toString('hex'), '06032b6570');
  assert.equal(derOid('2.999.3').toString('hex'), '0603883703');
  for (const o of ['1.2.840.113549.1.1.11', '2.16.840.1.101.3.4.2.1', '1.3.132.0.34', '2.5.29.19', '0.9.2342.19200300.100.1.25']) {
    assert.equal(decodeOid(parseDer(derOid(o))), o);
  }
  assert.equal(asn1Kind(() => decodeOid(parseDer(hex('0602 8001')))), 'bad-value'); // non-minimal arc
  assert.equal(asn1Kind(() => decodeOid(parseDer(hex('0602 2a86')))), 'bad-value'); // ends inside an arc
  assert.throws(() => derOid('1.40.1'), RangeError);
});

test('lengths: short and long form, minimality, indefinite and truncation are checked', () => {
  for (const n of [0, 1, 127, 128, 255, 256, 65535, 65536]) {
    const enc = derOctetString(Buffer.alloc(n, 0xab));
    const el = parseDer(enc);
    assert.equal(el.content.length, n);
    assert.equal(el.tag, Tag.OCTET_STRING);
  }
  assert.equal(derOctetString(Buffer.alloc(128)).subarray(0, 3).toString('hex'), '048180');
  assert.equal(derOctetString(Buffer.alloc(256)).subarray(0, 4).toString('hex'), '04820100');
  assert.equal(asn1Kind(() => parseDer(hex('04 8105 0102030405'))), 'bad-length'); // long form for < 128
  assert.equal(asn1Kind(() => parseDer(hex('04 820005 0102030405'))), 'bad-length'); // leading zero
  assert.equal(asn1Kind(() => parseDer(hex('30 80 0500 0000'))), 'bad-length'); // indefinite
  assert.equal(asn1Kind(() => parseDer(hex('04 85 0100000000'))), 'bad-length'); // 5 length octets
  assert.equal(asn1Kind(() => parseDer(hex('04 05 0102'))), 'truncated');
  assert.equal(asn1Kind(() => parseDer(hex('04'))), 'truncated');
  assert.equal(asn1Kind(() => parseDer(hex('04 01 00 00'))), 'trailing-data');
  assert.equal(asn1Kind(() => parseDer(hex('1f 22 00'))), 'bad-value'); // high tag number
});

test('a nested element cannot read past its container even when the buffer continues', () => {
  // SEQUENCE (len 3) { OCTET STRING declaring 4 octets } followed by more octets in the buffer.
  const buf = hex('30 03 04 04 aa bb cc dd ee');
  const outer = new DerReader(buf, 'outer');
  const seq = outer.sequence('seq');
  assert.equal(asn1Kind(() => seq.next('inner')), 'truncated');
});

test('reader: expect/optional/finish and sequence walking', () => {
  const der = derSequence(derInteger(5), derBoolean(true), derNull(), derUtf8String('hé'));
  const r = new DerReader(der, 'top').sequence('S');
  assert.equal(decodeInteger(r.expect(Tag.INTEGER, 'i')), 5n);
  assert.equal(r.optional(Tag.OCTET_STRING, 'absent'), undefined);
  assert.equal(decodeBoolean(r.expect(Tag.BOOLEAN, 'b')), true);
  assert.equal(decodeNull(r.next('n')), null);
  assert.equal(asn1Kind(() => r.expect(Tag.INTEGER, 'x')), 'unexpected-tag');
  assert.equal(decodeString(r.next('s')), 'hé');
  r.finish('S');
  assert.equal(asn1Kind(() => r.next('past end')), 'truncated');
});

test('BOOLEAN must be 00 or FF; NULL must be empty', () => {
  assert.equal(derBoolean(false).toString('hex'), '010100');
  assert.equal(derBoolean(true).toString('hex'), '0101ff');
  assert.equal(asn1Kind(() => decodeBoolean(parseDer(hex('010101')))), 'bad-value');
  assert.equal(asn1Kind(() => decodeNull(parseDer(hex('050100')))), 'bad-value');
});

test('BIT STRING and named bits (KeyUsage encodings)', () => {
  // digitalSignature alone: 03 02 07 80; keyCertSign|cRLSign: 03 02 01 06 (RFC 5280 named-bit DER).
  assert.equal(derNamedBits([0]).toString('hex'), '03020780');
  assert.equal(derNamedBits([5, 6]).toString('hex'), '03020106');
  assert.equal(derNamedBits([0, 8]).toString('hex'), '0303078080');
  const bits = decodeBitString(parseDer(derNamedBits([0, 5, 6])));
  assert.ok(bitIsSet(bits, 0) && bitIsSet(bits, 5) && bitIsSet(bits, 6));
  assert.ok(!bitIsSet(bits, 1) && !bitIsSet(bits, 8) && !bitIsSet(bits, 100));
  assert.equal(asn1Kind(() => decodeBitString(parseDer(hex('0302 0781')))), 'bad-value'); // unused bit set
  assert.equal(asn1Kind(() => decodeBitString(parseDer(hex('0301 01')))), 'bad-value');
  assert.equal(asn1Kind(() => decodeBitString(parseDer(hex('0300')))), 'bad-value');
  assert.equal(derBitString(hex('00ff')).toString('hex'), '030300' + '00ff');
});

test('times: UTCTime through 2049, GeneralizedTime from 2050, strict formats', () => {
  const d1 = new Date('2049-12-31T23:59:59Z');
  const d2 = new Date('2050-01-01T00:00:00Z');
  assert.equal(derTime(d1).toString('latin1').slice(2), '491231235959Z');
  assert.equal(derTime(d1)[0], Tag.UTC_TIME);
  assert.equal(derTime(d2)[0], Tag.GENERALIZED_TIME);
  assert.equal(derTime(d2).toString('latin1').slice(2), '20500101000000Z');
  assert.equal(decodeTime(parseDer(derTime(d1))).getTime(), d1.getTime());
  assert.equal(decodeTime(parseDer(derTime(d2))).getTime(), d2.getTime());
  assert.equal(decodeTime(parseDer(derGeneralizedTime(new Date('1999-02-03T04:05:06Z')))).toISOString(), '1999-02-03T04:05:06.000Z');
  const utc = (s: string): Buffer => derTlv(Tag.UTC_TIME, Buffer.from(s, 'latin1'));
  assert.equal(decodeTime(parseDer(utc('500101000000Z'))).getUTCFullYear(), 1950);
  assert.equal(asn1Kind(() => decodeTime(parseDer(utc('2501010000Z')))), 'bad-value'); // no seconds
  assert.equal(asn1Kind(() => decodeTime(parseDer(utc('250101000000+0100')))), 'bad-value');
  assert.equal(asn1Kind(() => decodeTime(parseDer(utc('250230000000Z')))), 'bad-value'); // Feb 30
});

test('strings and SET OF ordering', () => {
  assert.equal(decodeString(parseDer(derPrintableString('DE'))), 'DE');
  assert.equal(decodeString(parseDer(derIa5String('a@b.example'))), 'a@b.example');
  assert.throws(() => derPrintableString('a@b'), RangeError);
  assert.equal(asn1Kind(() => decodeString(parseDer(hex('0c02 c328')))), 'bad-value'); // invalid UTF-8
  assert.equal(asn1Kind(() => decodeString(parseDer(hex('1602 80 41')))), 'bad-value'); // non-ASCII IA5
  assert.equal(decodeString(parseDer(hex('1e04 0048 0069'))), 'Hi'); // BMPString
  assert.equal(derSetOf(hex('0201 02'), hex('0201 01')).toString('hex'), '3106' + '020101' + '020102');
});

test('random input only ever raises Asn1Error', () => {
  for (let i = 0; i < 2000; i++) {
    const b = randomBytes(1 + (i % 40));
    try {
      const r = new DerReader(b, 'fuzz');
      while (!r.atEnd) {
        const el = r.next();
        if (el.constructed && (el.tag === Tag.SEQUENCE || el.tag === Tag.SET)) {
          const inner = DerReader.inside(b, el, 'inner');
          while (!inner.atEnd) inner.next();
        }
      }
    } catch (e) {
      assert.ok(e instanceof Asn1Error, String(e));
    }
  }
});
