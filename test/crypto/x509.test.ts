import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, randomBytes } from 'node:crypto';
import { IdType } from '../../src/wire/iana.ts';
import { derOid, derSequence } from '../../src/crypto/asn1.ts';
import { signingKeyType } from '../../src/crypto/signature.ts';
import {
  Certificate,
  CertificateError,
  ExtendedKeyUsageOid,
  assertIdentityMatchesCertificate,
  identityMatchesCertificate,
  ipAddressBytes,
  parseCertificate,
  parsePemCertificates,
  publicKeyToSpki,
  validateCertificateChain,
  type CertificateErrorReason,
  type ChainValidationOptions,
} from '../../src/crypto/x509.ts';
import {
  buildCertificate,
  createSelfSignedCa,
  encodeName,
  generateSigningKeyPair,
  issueEndEntity,
  issueIntermediateCa,
  type CertificateAuthority,
} from '../../src/crypto/x509-builder.ts';

const T0 = new Date('2025-01-01T00:00:00Z');
const T1 = new Date('2030-01-01T00:00:00Z');
const NOW = new Date('2026-06-01T12:00:00Z');

const root = createSelfSignedCa({ subject: { C: 'DE', O: 'gikev2 test', CN: 'Root CA' }, notBefore: T0, notAfter: T1, keySpec: 'ec-p384' });
const inter = issueIntermediateCa(root, { subject: { O: 'gikev2 test', CN: 'Intermediate CA' }, notBefore: T0, notAfter: T1, keySpec: 'ec-p256' });
const ee = issueEndEntity(inter, {
  subject: { O: 'gikev2 test', CN: 'gcks.example.net' },
  notBefore: T0,
  notAfter: T1,
  keySpec: 'ed25519',
  subjectAltName: { dns: ['GCKS.example.net', 'alt.example.net'], email: ['Admin@Example.NET'], ip: ['192.0.2.10', '2001:db8::a'] },
});
const opts: ChainValidationOptions = { trustAnchors: [root.certificate], now: NOW };

function reasonOf(fn: () => unknown): CertificateErrorReason {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof CertificateError, `expected CertificateError, got ${String(e)}`);
    return e.reason;
  }
  assert.fail('expected a CertificateError');
}

test('a valid chain validates, end entity first and anchor last', () => {
  const { path, trustAnchor } = validateCertificateChain(ee.certificate, [inter.certificate], opts);
  assert.deepEqual(
    path.map((c) => c.subject),
    [ee.certificate.subject, inter.certificate.subject, root.certificate.subject],
  );
  assert.equal(trustAnchor, root.certificate);
  // Irrelevant extra intermediates do not disturb path building.
  const stray = issueIntermediateCa(root, { subject: { CN: 'Other CA' }, notBefore: T0, notAfter: T1 });
  assert.equal(validateCertificateChain(ee.certificate, [stray.certificate, inter.certificate], opts).path.length, 3);
  // An end entity that is itself a configured anchor (pinned) validates alone.
  assert.equal(validateCertificateChain(ee.certificate, [], { ...opts, trustAnchors: [ee.certificate] }).path.length, 1);
});

test('parsed fields: names as DER, validity, constraints, key usage, SANs, SPKI', () => {
  const c = ee.certificate;
  assert.equal(c.version, 3);
  assert.deepEqual(c.subjectDer, encodeName({ O: 'gikev2 test', CN: 'gcks.example.net' }));
  assert.deepEqual(c.issuerDer, inter.certificate.subjectDer);
  assert.equal(c.notBefore.toISOString(), T0.toISOString());
  assert.equal(c.notAfter.toISOString(), T1.toISOString());
  assert.deepEqual(c.basicConstraints, { ca: false });
  assert.deepEqual([...(c.keyUsage ?? [])], ['digitalSignature']);
  assert.deepEqual(root.certificate.basicConstraints, { ca: true });
  assert.ok(root.certificate.keyUsage?.has('keyCertSign'));
  assert.ok(root.certificate.isSelfIssued && !c.isSelfIssued);
  assert.equal(c.serialNumber.length, 16);
  // SubjectPublicKeyInfo: exactly node's export of the key, and usable as a KeyObject.
  assert.deepEqual(c.subjectPublicKeyInfo, publicKeyToSpki(ee.publicKey));
  assert.deepEqual(publicKeyToSpki(c.publicKey), c.subjectPublicKeyInfo);
  assert.equal(createPublicKey({ key: c.subjectPublicKeyInfo, format: 'der', type: 'spki' }).asymmetricKeyType, 'ed25519');
  assert.equal(c.signatureAlgorithm?.scheme, 'ecdsa');
  // PEM in and out.
  assert.deepEqual(parseCertificate(c.toPem()).der, c.der);
  assert.equal(parsePemCertificates(ee.pem + inter.pem + root.pem).length, 3);
  assert.equal(reasonOf(() => parseCertificate(ee.pem + inter.pem)), 'malformed');
});

test('expired and not-yet-valid, judged at the supplied time', () => {
  assert.equal(reasonOf(() => validateCertificateChain(ee.certificate, [inter.certificate], { ...opts, now: new Date('2031-01-01T00:00:00Z') })), 'expired');
  assert.equal(reasonOf(() => validateCertificateChain(ee.certificate, [inter.certificate], { ...opts, now: new Date('2024-12-31T23:59:59Z') })), 'not-yet-valid');
  // Only the end entity out of its window.
  const late = issueEndEntity(inter, { subject: { CN: 'late' }, notBefore: new Date('2027-01-01T00:00:00Z'), notAfter: T1 });
  assert.equal(reasonOf(() => validateCertificateChain(late.certificate, [inter.certificate], opts)), 'not-yet-valid');
  const old = issueEndEntity(inter, { subject: { CN: 'old' }, notBefore: T0, notAfter: new Date('2026-01-01T00:00:00Z') });
  assert.equal(reasonOf(() => validateCertificateChain(old.certificate, [inter.certificate], opts)), 'expired');
  // Boundaries are inclusive.
  validateCertificateChain(old.certificate, [inter.certificate], { ...opts, now: new Date('2026-01-01T00:00:00Z') });
});

test('untrusted: other anchor, missing intermediate, self-signed end entity', () => {
  const otherRoot = createSelfSignedCa({ subject: { CN: 'Other Root' }, notBefore: T0, notAfter: T1 });
  assert.equal(reasonOf(() => validateCertificateChain(ee.certificate, [inter.certificate], { ...opts, trustAnchors: [otherRoot.certificate] })), 'untrusted');
  assert.equal(reasonOf(() => validateCertificateChain(ee.certificate, [], opts)), 'untrusted');
  assert.equal(reasonOf(() => validateCertificateChain(otherRoot.certificate, [], opts)), 'untrusted');
  assert.equal(reasonOf(() => validateCertificateChain(ee.certificate, [inter.certificate], { ...opts, trustAnchors: [] })), 'untrusted');
});

test('bad-signature: a flipped signature bit, and an impostor issuer with the same name', () => {
  const der = Buffer.from(ee.der);
  der[der.length - 5]! ^= 0x01; // inside the ECDSA signature value
  const tampered = Certificate.fromDer(der);
  assert.equal(reasonOf(() => validateCertificateChain(tampered, [inter.certificate], opts)), 'bad-signature');
  // Same subject as the real intermediate, different key, not issued by the root.
  const impostorKeys = generateSigningKeyPair('ec-p256');
  const impostorCa: CertificateAuthority = {
    privateKey: impostorKeys.privateKey,
    certificate: buildCertificate(
      { subject: { O: 'gikev2 test', CN: 'Intermediate CA' }, publicKey: impostorKeys.publicKey, notBefore: T0, notAfter: T1, basicConstraints: { ca: true }, keyUsage: ['keyCertSign'] },
      { privateKey: impostorKeys.privateKey },
    ).certificate,
  };
  const forged = issueEndEntity(impostorCa, { subject: { CN: 'forged' }, notBefore: T0, notAfter: T1 });
  assert.equal(reasonOf(() => validateCertificateChain(forged.certificate, [inter.certificate], opts)), 'bad-signature');
});

test('not-a-ca: an issuer without cA=TRUE', () => {
  const keys = generateSigningKeyPair('ec-p256');
  const notCa = buildCertificate(
    { subject: { CN: 'Not a CA' }, publicKey: keys.publicKey, notBefore: T0, notAfter: T1, basicConstraints: { ca: false }, keyUsage: ['keyCertSign', 'digitalSignature'] },
    { privateKey: root.privateKey, certificate: root.certificate },
  );
  const leaf = issueEndEntity({ certificate: notCa.certificate, privateKey: keys.privateKey }, { subject: { CN: 'leaf' }, notBefore: T0, notAfter: T1 });
  assert.equal(reasonOf(() => validateCertificateChain(leaf.certificate, [notCa.certificate], opts)), 'not-a-ca');
  // No basicConstraints at all is not a CA either.
  const keys2 = generateSigningKeyPair('ec-p256');
  const noBc = buildCertificate(
    { subject: { CN: 'No BC' }, publicKey: keys2.publicKey, notBefore: T0, notAfter: T1, keyUsage: ['keyCertSign'] },
    { privateKey: root.privateKey, certificate: root.certificate },
  );
  const leaf2 = issueEndEntity({ certificate: noBc.certificate, privateKey: keys2.privateKey }, { subject: { CN: 'leaf2' }, notBefore: T0, notAfter: T1 });
  assert.equal(reasonOf(() => validateCertificateChain(leaf2.certificate, [noBc.certificate], opts)), 'not-a-ca');
});

test('key-usage: CA without keyCertSign; end entity without a signing bit; critical EKU without IKE', () => {
  const keys = generateSigningKeyPair('ec-p256');
  const weakCa = buildCertificate(
    { subject: { CN: 'No keyCertSign' }, publicKey: keys.publicKey, notBefore: T0, notAfter: T1, basicConstraints: { ca: true }, keyUsage: ['digitalSignature', 'cRLSign'] },
    { privateKey: root.privateKey, certificate: root.certificate },
  );
  const leaf = issueEndEntity({ certificate: weakCa.certificate, privateKey: keys.privateKey }, { subject: { CN: 'leaf' }, notBefore: T0, notAfter: T1 });
  assert.equal(reasonOf(() => validateCertificateChain(leaf.certificate, [weakCa.certificate], opts)), 'key-usage');

  const encOnly = issueEndEntity(inter, { subject: { CN: 'enc only' }, notBefore: T0, notAfter: T1, keyUsage: ['keyEncipherment'] });
  assert.equal(reasonOf(() => validateCertificateChain(encOnly.certificate, [inter.certificate], opts)), 'key-usage');
  validateCertificateChain(encOnly.certificate, [inter.certificate], { ...opts, requireSigningKeyUsage: false });
  // nonRepudiation alone is acceptable (RFC 4945 5.1.3.2).
  const nr = issueEndEntity(inter, { subject: { CN: 'nr' }, notBefore: T0, notAfter: T1, keyUsage: ['nonRepudiation'] });
  validateCertificateChain(nr.certificate, [inter.certificate], opts);

  const k3 = generateSigningKeyPair('ec-p256');
  const ekuLeaf = (oids: string[], critical: boolean): Certificate =>
    buildCertificate(
      {
        subject: { CN: 'eku' },
        publicKey: k3.publicKey,
        notBefore: T0,
        notAfter: T1,
        basicConstraints: { ca: false },
        keyUsage: ['digitalSignature'],
        extraExtensions: [{ oid: '2.5.29.37', critical, value: derSequence(...oids.map((o) => derOid(o))) }],
      },
      { privateKey: inter.privateKey, certificate: inter.certificate },
    ).certificate;
  assert.equal(reasonOf(() => validateCertificateChain(ekuLeaf([ExtendedKeyUsageOid.serverAuth], true), [inter.certificate], opts)), 'key-usage');
  validateCertificateChain(ekuLeaf([ExtendedKeyUsageOid.serverAuth], false), [inter.certificate], opts);
  validateCertificateChain(ekuLeaf([ExtendedKeyUsageOid.ipsecIKE], true), [inter.certificate], opts);
});

test('path-too-long: pathLenConstraint and the configured maximum chain length', () => {
  const root0 = createSelfSignedCa({ subject: { CN: 'Root pathlen 0' }, notBefore: T0, notAfter: T1, pathLenConstraint: 0 });
  const int0 = issueIntermediateCa(root0, { subject: { CN: 'Int under pathlen 0' }, notBefore: T0, notAfter: T1 });
  const leaf0 = issueEndEntity(int0, { subject: { CN: 'leaf0' }, notBefore: T0, notAfter: T1 });
  const o0 = { ...opts, trustAnchors: [root0.certificate] };
  assert.equal(reasonOf(() => validateCertificateChain(leaf0.certificate, [int0.certificate], o0)), 'path-too-long');
  // Directly under the pathlen-0 root is fine.
  const direct = issueEndEntity(root0, { subject: { CN: 'direct' }, notBefore: T0, notAfter: T1 });
  validateCertificateChain(direct.certificate, [], o0);
  // An intermediate with pathLenConstraint 0 issuing a further CA.
  const intA = issueIntermediateCa(root, { subject: { CN: 'A' }, notBefore: T0, notAfter: T1, pathLenConstraint: 0 });
  const intB = issueIntermediateCa(intA, { subject: { CN: 'B' }, notBefore: T0, notAfter: T1 });
  const leafB = issueEndEntity(intB, { subject: { CN: 'leafB' }, notBefore: T0, notAfter: T1 });
  assert.equal(reasonOf(() => validateCertificateChain(leafB.certificate, [intA.certificate, intB.certificate], opts)), 'path-too-long');
  // Maximum chain length: the good 3-certificate chain with a limit of 2.
  assert.equal(reasonOf(() => validateCertificateChain(ee.certificate, [inter.certificate], { ...opts, maxChainLength: 2 })), 'path-too-long');
  validateCertificateChain(ee.certificate, [inter.certificate], { ...opts, maxChainLength: 3 });
});

test('malformed: garbage, truncation, unknown critical extension, duplicate extension', () => {
  assert.equal(reasonOf(() => Certificate.fromDer(randomBytes(200))), 'malformed');
  assert.equal(reasonOf(() => Certificate.fromDer(ee.der.subarray(0, ee.der.length - 1))), 'malformed');
  assert.equal(reasonOf(() => Certificate.fromDer(Buffer.concat([ee.der, Buffer.from([0])]))), 'malformed');
  assert.equal(reasonOf(() => parseCertificate('no pem here')), 'malformed');
  const k = generateSigningKeyPair('ec-p256');
  const crit = buildCertificate(
    {
      subject: { CN: 'critical unknown' },
      publicKey: k.publicKey,
      notBefore: T0,
      notAfter: T1,
      basicConstraints: { ca: false },
      extraExtensions: [{ oid: '1.3.6.1.4.1.99999.1', critical: true, value: Buffer.from([0x05, 0x00]) }],
    },
    { privateKey: inter.privateKey, certificate: inter.certificate },
  );
  assert.deepEqual(crit.certificate.unhandledCriticalExtensions, ['1.3.6.1.4.1.99999.1']);
  assert.equal(reasonOf(() => validateCertificateChain(crit.certificate, [inter.certificate], opts)), 'malformed');
  assert.equal(
    reasonOf(() =>
      buildCertificate(
        {
          subject: { CN: 'dup' },
          publicKey: k.publicKey,
          notBefore: T0,
          notAfter: T1,
          basicConstraints: { ca: false },
          extraExtensions: [{ oid: '2.5.29.19', critical: true, value: derSequence() }],
        },
        { privateKey: inter.privateKey, certificate: inter.certificate },
      ),
    ),
    'malformed',
  );
  // Random mutations of a good certificate only ever give CertificateError or a certificate.
  for (let i = 0; i < 300; i++) {
    const m = Buffer.from(ee.der);
    m[(i * 7919) % m.length]! ^= 1 << (i % 8);
    try {
      Certificate.fromDer(m);
    } catch (e) {
      assert.ok(e instanceof CertificateError, String(e));
    }
  }
});

test('identity matching (RFC 4945 3.1) and id-mismatch', () => {
  const c = ee.certificate;
  const ascii = (s: string): Buffer => Buffer.from(s, 'ascii');
  // ID_DER_ASN1_DN: the subject's DER, octet for octet.
  assert.ok(identityMatchesCertificate(IdType.ID_DER_ASN1_DN, c.subjectDer, c));
  assert.ok(!identityMatchesCertificate(IdType.ID_DER_ASN1_DN, inter.certificate.subjectDer, c));
  assert.ok(!identityMatchesCertificate(IdType.ID_DER_ASN1_DN, Buffer.alloc(0), c));
  // ID_FQDN: dNSName, case-insensitive, no wildcards, not the CN.
  assert.ok(identityMatchesCertificate(IdType.ID_FQDN, ascii('gcks.example.net'), c));
  assert.ok(identityMatchesCertificate(IdType.ID_FQDN, ascii('ALT.Example.Net'), c));
  assert.ok(!identityMatchesCertificate(IdType.ID_FQDN, ascii('other.example.net'), c));
  assert.ok(!identityMatchesCertificate(IdType.ID_FQDN, ascii('*.example.net'), c));
  const cnOnly = issueEndEntity(inter, { subject: { CN: 'cn-only.example.net' }, notBefore: T0, notAfter: T1 });
  assert.ok(!identityMatchesCertificate(IdType.ID_FQDN, ascii('cn-only.example.net'), cnOnly.certificate));
  // ID_RFC822_ADDR: rfc822Name; domain case-insensitive, local part exact.
  assert.ok(identityMatchesCertificate(IdType.ID_RFC822_ADDR, ascii('Admin@example.net'), c));
  assert.ok(!identityMatchesCertificate(IdType.ID_RFC822_ADDR, ascii('admin@example.net'), c));
  assert.ok(!identityMatchesCertificate(IdType.ID_RFC822_ADDR, ascii('gcks.example.net'), c));
  // ID_IPV4_ADDR / ID_IPV6_ADDR: iPAddress of the same family.
  assert.ok(identityMatchesCertificate(IdType.ID_IPV4_ADDR, ipAddressBytes('192.0.2.10'), c));
  assert.ok(!identityMatchesCertificate(IdType.ID_IPV4_ADDR, ipAddressBytes('192.0.2.11'), c));
  assert.ok(identityMatchesCertificate(IdType.ID_IPV6_ADDR, ipAddressBytes('2001:db8:0::a'), c));
  assert.ok(!identityMatchesCertificate(IdType.ID_IPV6_ADDR, ipAddressBytes('192.0.2.10'), c));
  assert.ok(!identityMatchesCertificate(IdType.ID_IPV4_ADDR, ipAddressBytes('2001:db8::a'), c));
  // Types that never match a certificate.
  assert.ok(!identityMatchesCertificate(IdType.ID_KEY_ID, ascii('gcks.example.net'), c));
  assert.ok(!identityMatchesCertificate(IdType.ID_NULL, Buffer.alloc(0), c));
  assertIdentityMatchesCertificate(IdType.ID_FQDN, ascii('gcks.example.net'), c);
  assert.equal(reasonOf(() => assertIdentityMatchesCertificate(IdType.ID_FQDN, ascii('evil.example'), c)), 'id-mismatch');
});

test('ipAddressBytes expands IPv6 forms', () => {
  assert.equal(ipAddressBytes('::1').toString('hex'), '00000000000000000000000000000001');
  assert.equal(ipAddressBytes('2001:db8::').toString('hex'), '20010db8000000000000000000000000');
  assert.equal(ipAddressBytes('::ffff:192.0.2.1').toString('hex'), '00000000000000000000ffffc0000201');
  assert.equal(ipAddressBytes('1:2:3:4:5:6:7:8').toString('hex'), '00010002000300040005000600070008');
  assert.throws(() => ipAddressBytes('not-an-ip'), RangeError);
});

test('an EC certificate key carries its curve from the SubjectPublicKeyInfo, without asking node for key details', () => {
  for (const [cert, type] of [
    [root.certificate, 'ec-p384'],
    [inter.certificate, 'ec-p256'],
  ] as const) {
    const parsed = parseCertificate(cert.der);
    // Any call for the key details now fails: the type must come from what the parser read.
    Object.defineProperty(parsed.publicKey, 'asymmetricKeyDetails', {
      get() {
        throw new Error('key details asked for');
      },
    });
    assert.equal(signingKeyType(parsed.publicKey), type);
  }
  // A key not read from a certificate is still typed the usual way.
  assert.equal(signingKeyType(createPublicKey(inter.certificate.publicKey.export({ format: 'pem', type: 'spki' }))), 'ec-p256');
});
