/**
 * Certificate public keys and signatures without node's X509Certificate:
 * the key imported from our parse of the SubjectPublicKeyInfo, signatures
 * verified over the tbsCertificate octets, and X509Certificate built only on
 * demand. Every verdict is compared with what X509Certificate itself says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ECDH, X509Certificate, generateKeyPairSync, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { DerReader, derBitString, derNull, derOid, derSequence, derTlv } from '../../src/crypto/asn1.ts';
import {
  Oid,
  SignatureAlgorithms,
  encodeAlgorithmIdentifier,
  signWithAlgorithm,
  signingKeyType,
  type AlgorithmChoice,
  type SignatureAlgorithm,
  type SigningKeyType,
} from '../../src/crypto/signature.ts';
import {
  Certificate,
  CertificateError,
  assertIdentityMatchesCertificate,
  identityMatchesCertificate,
  validateCertificateChain,
} from '../../src/crypto/x509.ts';
import {
  buildCertificate,
  createSelfSignedCa,
  generateSigningKeyPair,
  issueEndEntity,
  issueIntermediateCa,
  type CertificateAuthority,
  type KeySpec,
  type SigningKeyPair,
} from '../../src/crypto/x509-builder.ts';
import { certificateMatches } from '../../src/gcks/authorize.ts';
import { HashAlgorithm, IdType } from '../../src/wire/iana.ts';

const T0 = new Date('2025-01-01T00:00:00Z');
const T1 = new Date('2030-01-01T00:00:00Z');
const NOW = new Date('2026-06-01T12:00:00Z');

// RSA key generation is slow: one pair for every RSA issuer, one more for impostors.
const RSA = generateSigningKeyPair('rsa-2048');
const RSA_OTHER = generateSigningKeyPair('rsa-2048');

function keyPairFor(spec: KeySpec): SigningKeyPair {
  return spec === 'rsa-2048' ? RSA : generateSigningKeyPair(spec);
}

function spkiOf(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

function parses(der: Uint8Array): boolean {
  try {
    Certificate.fromDer(der);
    return true;
  } catch (e) {
    assert.ok(e instanceof CertificateError, String(e));
    return false;
  }
}

function nodeParses(der: Uint8Array): boolean {
  try {
    new X509Certificate(der);
    return true;
  } catch {
    return false;
  }
}

/** The tbsCertificate fields of a v3 certificate with extensions, as DER. */
const F = { serialNumber: 1, signature: 2, issuer: 3, subject: 5, subjectPublicKeyInfo: 6 } as const;
function tbsFields(c: Certificate): Buffer[] {
  const seq = new DerReader(c.tbsCertificate, 'tbsCertificate').sequence('tbsCertificate');
  const out: Buffer[] = [];
  while (!seq.atEnd) out.push(Buffer.from(seq.next().bytes));
  return out;
}

interface Reissue {
  readonly replace?: Partial<Record<keyof typeof F, Buffer>>;
  /** Inserted before the extensions (issuerUniqueID, subjectUniqueID). */
  readonly insert?: readonly Buffer[];
  /** The signature BIT STRING's unused-bits octet. */
  readonly unusedBits?: number;
}

/** `base` with some tbsCertificate fields replaced, signed again by `signTbs` under the AlgorithmIdentifier `algId`. */
function reissue(base: Certificate, algId: Buffer, signTbs: (tbs: Buffer) => Buffer, opts: Reissue = {}): Buffer {
  const fields = tbsFields(base);
  fields[F.signature] = algId;
  for (const name of Object.keys(F) as (keyof typeof F)[]) {
    const v = opts.replace?.[name];
    if (v) fields[F[name]] = v;
  }
  fields.splice(fields.length - 1, 0, ...(opts.insert ?? []));
  const tbs = derSequence(...fields);
  return derSequence(tbs, algId, derBitString(signTbs(tbs), opts.unusedBits ?? 0));
}

function signedBy(ca: CertificateAuthority, alg: SignatureAlgorithm): [Buffer, (tbs: Buffer) => Buffer] {
  return [encodeAlgorithmIdentifier(alg), (tbs) => signWithAlgorithm(alg, ca.privateKey, tbs)];
}

/** One bit of the serial number flipped: the tbsCertificate still parses, the signature no longer covers it. */
function flipTbsBit(c: Certificate): Buffer {
  const m = Buffer.from(c.der);
  const at = m.indexOf(c.serialNumber);
  assert.ok(at > 0 && m.indexOf(c.serialNumber, at + 1) < 0);
  m[at + c.serialNumber.length - 1]! ^= 0x01;
  return m;
}

/** One bit of the last signature octet flipped (the signature is the certificate's last element). */
function flipSignatureBit(c: Certificate): Buffer {
  const m = Buffer.from(c.der);
  m[m.length - 1]! ^= 0x01;
  return m;
}

/** isSignedBy against X509Certificate.verify; returns the (common) verdict. */
function verdict(der: Buffer, issuer: Certificate, label: string): boolean {
  const c = Certificate.fromDer(der);
  const ours = c.isSignedBy(issuer);
  assert.equal(ours, new X509Certificate(der).verify(issuer.publicKey), `${label}: isSignedBy disagrees with X509Certificate.verify`);
  return ours;
}

// ------------------------------------------------------------------ keys

const KEY_TYPES: readonly (readonly [KeySpec, SigningKeyType, string])[] = [
  ['ec-p256', 'ec-p256', 'ec'],
  ['ec-p384', 'ec-p384', 'ec'],
  ['ec-p521', 'ec-p521', 'ec'],
  ['rsa-2048', 'rsa', 'rsa'],
  ['ed25519', 'ed25519', 'ed25519'],
  ['ed448', 'ed448', 'ed448'],
];

test('subject public keys: the certificate SPKI, the same key node reads, typed without node key details', () => {
  const ca = createSelfSignedCa({ subject: { CN: 'Key CA' }, notBefore: T0, notAfter: T1 });
  for (const [spec, type, nodeType] of KEY_TYPES) {
    const ee = issueEndEntity(ca, { subject: { CN: `key ${spec}` }, notBefore: T0, notAfter: T1, keyPair: keyPairFor(spec) });
    const c = Certificate.fromDer(ee.der);
    const node = new X509Certificate(ee.der).publicKey;
    assert.deepEqual(spkiOf(c.publicKey), c.subjectPublicKeyInfo, spec);
    assert.deepEqual(spkiOf(c.publicKey), spkiOf(node), spec);
    assert.equal(c.publicKey.type, 'public');
    assert.equal(c.publicKey.asymmetricKeyType, nodeType, spec);
    assert.equal(signingKeyType(c.publicKey), type, spec);
    // The key works: a signature by the private key verifies with it.
    const data = Buffer.from(`signed by ${spec}`);
    const hash = spec.startsWith('ed') ? null : 'sha256';
    assert.ok(nodeVerify(hash, data, c.publicKey, nodeSign(hash, data, ee.privateKey)), spec);
    assert.equal(c.x509Built, false, spec);
  }
});

test('keys the JWK path leaves to node: RSASSA-PSS (with and without parameters) and a compressed EC point', () => {
  const ca = createSelfSignedCa({ subject: { CN: 'Fallback CA' }, notBefore: T0, notAfter: T1 });
  const pssKeys = [
    generateKeyPairSync('rsa-pss', { modulusLength: 2048 }),
    generateKeyPairSync('rsa-pss', { modulusLength: 2048, hashAlgorithm: 'sha256', mgf1HashAlgorithm: 'sha256' }),
  ];
  for (const keyPair of pssKeys) {
    const ee = issueEndEntity(ca, { subject: { CN: 'pss key' }, notBefore: T0, notAfter: T1, keyPair });
    const c = Certificate.fromDer(ee.der);
    assert.equal(c.publicKey.asymmetricKeyType, 'rsa-pss');
    assert.deepEqual(spkiOf(c.publicKey), c.subjectPublicKeyInfo);
    assert.deepEqual(spkiOf(c.publicKey), spkiOf(new X509Certificate(ee.der).publicKey));
    assert.equal(c.x509Built, false);
  }

  // A P-256 key whose certificate carries the compressed point (RFC 5480 allows it; nobody sends it).
  const keyPair = generateSigningKeyPair('ec-p256');
  const jwk = keyPair.publicKey.export({ format: 'jwk' });
  const uncompressed = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
  const compressed = ECDH.convertKey(uncompressed, 'prime256v1', undefined, undefined, 'compressed') as Buffer;
  assert.equal(compressed.length, 33);
  const spki = derSequence(derSequence(derOid(Oid.ecPublicKey), derOid('1.2.840.10045.3.1.7')), derBitString(compressed));
  const base = issueEndEntity(ca, { subject: { CN: 'compressed' }, notBefore: T0, notAfter: T1, keyPair, subjectAltName: { dns: ['compressed.example'] } });
  const der = reissue(base.certificate, ...signedBy(ca, SignatureAlgorithms.ECDSA_SHA256), { replace: { subjectPublicKeyInfo: spki } });
  const c = Certificate.fromDer(der);
  assert.deepEqual(c.subjectPublicKeyInfo, spki);
  // The same key, which node exports in the form it was read in.
  assert.deepEqual(c.publicKey.export({ format: 'jwk' }), jwk);
  assert.deepEqual(spkiOf(c.publicKey), spki);
  assert.deepEqual(spkiOf(c.publicKey), spkiOf(new X509Certificate(der).publicKey));
  assert.equal(signingKeyType(c.publicKey), 'ec-p256');
  validateCertificateChain(c, [], { trustAnchors: [ca.certificate], now: NOW });
  assertIdentityMatchesCertificate(IdType.ID_FQDN, Buffer.from('compressed.example'), c);
});

test('a key node cannot read is malformed, as before', () => {
  const ca = createSelfSignedCa({ subject: { CN: 'Bad key CA' }, notBefore: T0, notAfter: T1 });
  const base = issueEndEntity(ca, { subject: { CN: 'bad key' }, notBefore: T0, notAfter: T1 });
  const point = Buffer.from(base.certificate.subjectPublicKeyInfo.subarray(-65));
  point[64]! ^= 0x01; // off the curve
  const offCurve = derSequence(derSequence(derOid(Oid.ecPublicKey), derOid('1.2.840.10045.3.1.7')), derBitString(point));
  const unknown = derSequence(derSequence(derOid('1.3.6.1.4.1.99999.7')), derBitString(Buffer.alloc(32, 7)));
  const shortEd = derSequence(derSequence(derOid(Oid.ed25519)), derBitString(Buffer.alloc(31, 7)));
  for (const spki of [offCurve, unknown, shortEd]) {
    const der = reissue(base.certificate, ...signedBy(ca, SignatureAlgorithms.ECDSA_SHA256), { replace: { subjectPublicKeyInfo: spki } });
    assert.throws(() => Certificate.fromDer(der), (e: unknown) => e instanceof CertificateError && e.reason === 'malformed');
    assert.throws(() => new X509Certificate(der).publicKey);
  }
});

// ------------------------------------------------------------------ signatures

const ISSUERS: readonly { name: string; key: KeySpec; other: KeySpec; signature?: AlgorithmChoice }[] = [
  { name: 'ECDSA P-256, SHA-256', key: 'ec-p256', other: 'ed25519' },
  { name: 'ECDSA P-384, SHA-384', key: 'ec-p384', other: 'rsa-2048' },
  { name: 'ECDSA P-521, SHA-512', key: 'ec-p521', other: 'ec-p256' },
  { name: 'ECDSA P-256, SHA-512', key: 'ec-p256', other: 'ec-p384', signature: { preferredHashes: [HashAlgorithm.SHA2_512] } },
  { name: 'RSA PKCS#1 v1.5, SHA-256', key: 'rsa-2048', other: 'ec-p256' },
  { name: 'RSA PKCS#1 v1.5, SHA-384', key: 'rsa-2048', other: 'ec-p256', signature: { preferredHashes: [HashAlgorithm.SHA2_384] } },
  { name: 'RSASSA-PSS, SHA-256', key: 'rsa-2048', other: 'ed25519', signature: { rsaPadding: 'pss' } },
  { name: 'RSASSA-PSS, SHA-512', key: 'rsa-2048', other: 'ed25519', signature: { rsaPadding: 'pss', preferredHashes: [HashAlgorithm.SHA2_512] } },
  { name: 'Ed25519', key: 'ed25519', other: 'ed448' },
  { name: 'Ed448', key: 'ed448', other: 'ed25519' },
];

for (const p of ISSUERS) {
  test(`isSignedBy agrees with X509Certificate.verify: ${p.name}`, () => {
    const subject = { CN: `${p.name} CA` };
    const signature = p.signature ? { signature: p.signature } : {};
    const ca = createSelfSignedCa({ subject, notBefore: T0, notAfter: T1, keyPair: keyPairFor(p.key), ...signature });
    // Same name, another key of the same type; and a key of another type.
    const impostor = createSelfSignedCa({ subject, notBefore: T0, notAfter: T1, keyPair: p.key === 'rsa-2048' ? RSA_OTHER : generateSigningKeyPair(p.key) });
    const otherType = createSelfSignedCa({ subject, notBefore: T0, notAfter: T1, keyPair: keyPairFor(p.other) });
    const ee = issueEndEntity(ca, { subject: { CN: 'signed' }, notBefore: T0, notAfter: T1, ...signature });

    assert.equal(verdict(ee.der, ca.certificate, 'right issuer'), true);
    assert.equal(verdict(ca.der, ca.certificate, 'self-signed'), true);
    assert.equal(verdict(ee.der, impostor.certificate, 'impostor key'), false);
    assert.equal(verdict(ee.der, otherType.certificate, 'key of another type'), false);
    assert.equal(verdict(flipTbsBit(ee.certificate), ca.certificate, 'flipped tbsCertificate bit'), false);
    assert.equal(verdict(flipSignatureBit(ee.certificate), ca.certificate, 'flipped signature bit'), false);
    // A signature that is not whole octets never verifies.
    const [algId] = signedBy(ca, ee.certificate.signatureAlgorithm!);
    const bits = reissue(ee.certificate, algId, () => Buffer.from(ee.certificate.signatureValue.map((b, i, a) => (i === a.length - 1 ? b & 0xfe : b))), { unusedBits: 1 });
    assert.equal(verdict(bits, ca.certificate, 'unused bits in the signature'), false);

    // All of it without node's X509Certificate.
    const c = Certificate.fromDer(ee.der);
    for (const issuer of [ca, impostor, otherType]) c.isSignedBy(Certificate.fromDer(issuer.der));
    assert.equal(c.x509Built, false);
  });
}

test('signatures outside the RFC 7427 set: SHA-1 verified natively, the rest by X509Certificate as before', () => {
  const ec = createSelfSignedCa({ subject: { CN: 'EC CA' }, notBefore: T0, notAfter: T1 });
  const rsa = createSelfSignedCa({ subject: { CN: 'RSA CA' }, notBefore: T0, notAfter: T1, keyPair: RSA });
  const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
  const base = issueEndEntity(ec, { subject: { CN: 'legacy' }, notBefore: T0, notAfter: T1 }).certificate;
  // An issuer certificate for the secp256k1 key (its own signature does not matter here).
  const k1Ca = Certificate.fromDer(reissue(ec.certificate, ...signedBy(ec, SignatureAlgorithms.ECDSA_SHA256), { replace: { subjectPublicKeyInfo: spkiOf(k1.publicKey) } }));
  assert.deepEqual(spkiOf(k1Ca.publicKey), spkiOf(k1.publicKey));

  const cases: readonly { name: string; issuer: Certificate; algId: Buffer; sign: (tbs: Buffer) => Buffer; viaNode: boolean }[] = [
    {
      name: 'sha1WithRSAEncryption',
      issuer: rsa.certificate,
      algId: derSequence(derOid('1.2.840.113549.1.1.5'), derNull()),
      sign: (tbs) => nodeSign('sha1', tbs, RSA.privateKey),
      viaNode: false,
    },
    {
      name: 'ecdsa-with-SHA1',
      issuer: ec.certificate,
      algId: derSequence(derOid('1.2.840.10045.4.1')),
      sign: (tbs) => nodeSign('sha1', tbs, { key: ec.privateKey, dsaEncoding: 'der' }),
      viaNode: false,
    },
    {
      name: 'sha224WithRSAEncryption (not an RFC 7427 algorithm here)',
      issuer: rsa.certificate,
      algId: derSequence(derOid('1.2.840.113549.1.1.14'), derNull()),
      sign: (tbs) => nodeSign('sha224', tbs, RSA.privateKey),
      viaNode: true,
    },
    {
      name: 'ECDSA on secp256k1 (an issuer key type signature.ts does not know)',
      issuer: k1Ca,
      algId: encodeAlgorithmIdentifier(SignatureAlgorithms.ECDSA_SHA256),
      sign: (tbs) => nodeSign('sha256', tbs, { key: k1.privateKey, dsaEncoding: 'der' }),
      viaNode: true,
    },
  ];
  for (const k of cases) {
    const der = reissue(base, k.algId, k.sign);
    const c = Certificate.fromDer(der);
    assert.equal(verdict(der, k.issuer, k.name), true, k.name);
    assert.equal(verdict(flipTbsBit(c), k.issuer, k.name), false, k.name);
    assert.equal(verdict(flipSignatureBit(c), k.issuer, k.name), false, k.name);
    assert.equal(c.isSignedBy(k.issuer), true);
    assert.equal(c.x509Built, k.viaNode, `${k.name}: X509Certificate built`);
  }
});

test('an RSASSA-PSS issuer key (id-RSASSA-PSS SPKI) verifies natively', () => {
  const keyPair = generateKeyPairSync('rsa-pss', { modulusLength: 2048, hashAlgorithm: 'sha256', mgf1HashAlgorithm: 'sha256' });
  const ca = createSelfSignedCa({ subject: { CN: 'PSS key CA' }, notBefore: T0, notAfter: T1, keyPair });
  const ee = issueEndEntity(ca, { subject: { CN: 'under a PSS key' }, notBefore: T0, notAfter: T1 });
  assert.equal(verdict(ee.der, ca.certificate, 'PSS key'), true);
  assert.equal(verdict(flipSignatureBit(ee.certificate), ca.certificate, 'PSS key, flipped'), false);
  // PKCS#1 v1.5 with an RSASSA-PSS key: refused by both.
  const pkcs1 = reissue(ee.certificate, encodeAlgorithmIdentifier(SignatureAlgorithms.RSA_PKCS1_SHA256), (tbs) => nodeSign('sha256', tbs, RSA.privateKey));
  const rsaSpkiCa = Certificate.fromDer(reissue(ca.certificate, ...signedBy(ca, SignatureAlgorithms.RSA_PSS_SHA256), { replace: { subjectPublicKeyInfo: spkiOf(RSA.publicKey) } }));
  assert.equal(verdict(pkcs1, rsaSpkiCa, 'PKCS#1 with rsaEncryption key'), true);
  assert.equal(verdict(pkcs1, ca.certificate, 'PKCS#1 with an RSASSA-PSS key'), false);
  const c = Certificate.fromDer(ee.der);
  assert.ok(c.isSignedBy(Certificate.fromDer(ca.der)));
  assert.equal(c.x509Built, false);
});

// ------------------------------------------------------------------ laziness

test("fromDer, chain validation and identity matching never build node's X509Certificate", () => {
  const root = createSelfSignedCa({ subject: { C: 'DE', O: 'lazy', CN: 'Root' }, notBefore: T0, notAfter: T1, keySpec: 'ec-p384' });
  const inter = issueIntermediateCa(root, { subject: { O: 'lazy', CN: 'Intermediate' }, notBefore: T0, notAfter: T1 });
  const ee = issueEndEntity(inter, { subject: { O: 'lazy', CN: 'gm' }, notBefore: T0, notAfter: T1, subjectAltName: { email: ['gm@example.net'] } });
  const anchor = Certificate.fromDer(root.der);
  const intermediate = Certificate.fromDer(inter.der);
  const c = Certificate.fromDer(ee.der);
  const { path } = validateCertificateChain(c, [intermediate], { trustAnchors: [anchor], now: NOW });
  assert.equal(path.length, 3);
  assertIdentityMatchesCertificate(IdType.ID_RFC822_ADDR, Buffer.from('gm@example.net'), c);
  assert.ok(identityMatchesCertificate(IdType.ID_DER_ASN1_DN, c.subjectDer, c));
  for (const x of [anchor, intermediate, c]) assert.equal(x.x509Built, false);

  // Built on first use, once, and the display strings are node's as before.
  const node = new X509Certificate(ee.der);
  assert.equal(c.subject, node.subject.replace(/\n/g, ', '));
  assert.equal(c.issuer, node.issuer.replace(/\n/g, ', '));
  assert.equal(c.subject, 'O=lazy, CN=gm');
  assert.equal(c.x509Built, true);
  assert.equal(c.x509, c.x509);
  assert.equal(c.x509.fingerprint256, node.fingerprint256);
});

test('a certificate with an empty subject (names in subjectAltName only) parses and renders as empty', () => {
  const ca = createSelfSignedCa({ subject: { CN: 'CA' }, notBefore: T0, notAfter: T1 });
  const k = generateSigningKeyPair('ec-p256');
  const built = buildCertificate(
    { subject: {}, publicKey: k.publicKey, notBefore: T0, notAfter: T1, basicConstraints: { ca: false }, subjectAltName: { dns: ['no-subject.example'] } },
    { privateKey: ca.privateKey, certificate: ca.certificate },
  );
  const c = built.certificate;
  assert.deepEqual(c.subjectDer, derSequence());
  assert.equal(c.extension('2.5.29.17')?.critical, true);
  validateCertificateChain(c, [], { trustAnchors: [ca.certificate], now: NOW });
  assertIdentityMatchesCertificate(IdType.ID_FQDN, Buffer.from('no-subject.example'), c);
  assert.equal(c.subject, '');
  assert.equal(c.issuer, 'CN=CA');
  // An access rule on subject attributes simply does not match.
  assert.equal(certificateMatches({ subject: new Map([['CN', /.*/]]) }, c), false);
});

// ------------------------------------------------------------------ what X509Certificate refuses

const PARITY_CA = createSelfSignedCa({ subject: { CN: 'Parity CA' }, notBefore: T0, notAfter: T1 });
const PARITY_BASE = issueEndEntity(PARITY_CA, { subject: { CN: 'parity' }, notBefore: T0, notAfter: T1 }).certificate;
const PARITY_SIGN = signedBy(PARITY_CA, SignatureAlgorithms.ECDSA_SHA256);

function withSubjectValue(valueHex: string, rdnTag = 0x31): Buffer {
  const atv = derSequence(derOid('2.5.4.3'), Buffer.from(valueHex.replace(/ /g, ''), 'hex'));
  return reissue(PARITY_BASE, ...PARITY_SIGN, { replace: { subject: derSequence(derTlv(rdnTag, atv)) } });
}

test('DER node refuses is refused, DER node reads is read: names, AlgorithmIdentifier parameters, serial, unique IDs', () => {
  const ecdsa = (params: string): Buffer => derSequence(derOid('1.2.840.10045.4.3.2'), Buffer.from(params.replace(/ /g, ''), 'hex'));
  const cases: readonly [string, Buffer, boolean][] = [
    ['UTF8String', withSubjectValue('0c 03 616263'), true],
    ['UTF8String, invalid UTF-8', withSubjectValue('0c 01 ff'), false],
    ['UTF8String, encoded surrogate', withSubjectValue('0c 03 eda080'), false],
    ['BMPString', withSubjectValue('1e 02 0041'), true],
    ['BMPString, surrogate', withSubjectValue('1e 04 d83dde00'), false],
    ['BMPString, odd length', withSubjectValue('1e 01 00'), false],
    ['UniversalString beyond U+10FFFF', withSubjectValue('1c 04 00110000'), false],
    ['PrintableString with a non-printable octet', withSubjectValue('13 01 ff'), true],
    ['T61String', withSubjectValue('14 01 ff'), true],
    ['VisibleString (not a type OpenSSL takes in names)', withSubjectValue('1a 01 61'), false],
    ['INTEGER value', withSubjectValue('02 01 01'), false],
    ['context-specific value', withSubjectValue('8c 01 61'), false],
    ['SEQUENCE value', withSubjectValue('30 00'), true],
    ['constructed UTF8String (BER)', withSubjectValue('2c 05 0c0161 0c00'), true],
    ['non-minimal length (BER)', withSubjectValue('0c 81 01 61'), true],
    ['long-form zero length closing the name', withSubjectValue('2c 81 00'), false],
    ['RDN SET in the primitive form', withSubjectValue('0c 01 61', 0x11), true],
    ['RDN as a SEQUENCE', withSubjectValue('0c 01 61', 0x30), false],
    ['ECDSA with NULL parameters', reissue(PARITY_BASE, ecdsa('05 00'), PARITY_SIGN[1]), true],
    ['ECDSA with a BOOLEAN of two octets', reissue(PARITY_BASE, ecdsa('01 02 0000'), PARITY_SIGN[1]), false],
    ['ECDSA with NULL carrying contents', reissue(PARITY_BASE, ecdsa('05 01 00'), PARITY_SIGN[1]), false],
    ['negative serial number', reissue(PARITY_BASE, ...PARITY_SIGN, { replace: { serialNumber: Buffer.from('0201ff', 'hex') } }), true],
    ['serial number with a needless sign octet', reissue(PARITY_BASE, ...PARITY_SIGN, { replace: { serialNumber: Buffer.from('02020001', 'hex') } }), false],
    ['empty serial number', reissue(PARITY_BASE, ...PARITY_SIGN, { replace: { serialNumber: Buffer.from('0200', 'hex') } }), false],
    ['issuerUniqueID', reissue(PARITY_BASE, ...PARITY_SIGN, { insert: [Buffer.from('81020780', 'hex')] }), true],
    ['issuerUniqueID with 8 unused bits', reissue(PARITY_BASE, ...PARITY_SIGN, { insert: [Buffer.from('81020880', 'hex')] }), false],
  ];
  for (const [name, der, accepted] of cases) {
    assert.equal(nodeParses(der), accepted, `${name}: X509Certificate`);
    assert.equal(parses(der), accepted, `${name}: Certificate.fromDer`);
  }
  // Where the signature algorithm is not one signature.ts reads, X509Certificate still decides.
  const nullParams = Certificate.fromDer(reissue(PARITY_BASE, ecdsa('05 00'), PARITY_SIGN[1]));
  assert.equal(nullParams.isSignedBy(PARITY_CA.certificate), new X509Certificate(nullParams.der).verify(PARITY_CA.publicKey));
});

test('random attribute values: fromDer accepts exactly what X509Certificate accepts', () => {
  // A small deterministic generator (xorshift32), so that a failure is reproducible.
  let s = 0x9e3779b9;
  const rnd = (n: number): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
  const contents = ['', '61', 'ff', '00', '00000041', '0041', 'd800', 'eda080', 'f09f9880', 'c080', 'f4908080', '0010ffff', '2a03', '0780', '08'];
  const len = (n: number): string => {
    const form = rnd(4);
    if (form === 1) return `81${n.toString(16).padStart(2, '0')}`;
    if (form === 2) return `8200${n.toString(16).padStart(2, '0')}`;
    return n.toString(16).padStart(2, '0');
  };
  const tlv = (tag: number, hex: string): string => `${tag.toString(16).padStart(2, '0')}${len(hex.length / 2)}${hex}`;
  const value = (depth: number): string => {
    const tag = rnd(10) === 0 ? [0x80, 0x40, 0xa0][rnd(3)]! : rnd(31);
    if (depth < 3 && rnd(4) === 0) {
      let parts = '';
      for (let i = rnd(3); i > 0; i--) parts += rnd(3) === 0 ? value(depth + 1) : tlv(tag & 0x1f, contents[rnd(contents.length)]!);
      return rnd(5) === 0 ? `${(tag | 0x20).toString(16).padStart(2, '0')}80${parts}0000` : tlv(tag | 0x20, parts);
    }
    return tlv(tag, contents[rnd(contents.length)]!);
  };
  let accepted = 0;
  for (let i = 0; i < 400; i++) {
    const v = value(0);
    const der = withSubjectValue(v);
    const ours = parses(der);
    assert.equal(ours, nodeParses(der), `attribute value ${v}`);
    if (ours) accepted++;
  }
  assert.ok(accepted > 50 && accepted < 350, `a useful mix (${accepted} of 400 accepted)`);
});
