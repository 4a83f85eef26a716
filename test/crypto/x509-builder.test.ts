import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTool } from '../helpers/tools.ts';
import { encodeAlgorithmIdentifier, SignatureAlgorithms, type AlgorithmChoice } from '../../src/crypto/signature.ts';
import { validateCertificateChain } from '../../src/crypto/x509.ts';
import {
  buildCertificate,
  createSelfSignedCa,
  encodeName,
  generateSigningKeyPair,
  issueEndEntity,
  issueIntermediateCa,
  type KeySpec,
} from '../../src/crypto/x509-builder.ts';

const T0 = new Date('2025-01-01T00:00:00Z');
const T1 = new Date('2035-06-30T12:34:56Z');
const NOW = new Date('2026-01-01T00:00:00Z');

const openssl = '/usr/bin/openssl';
const opensslSkip = requireTool('openssl', [openssl, 'version'], 'independent check that built certificates parse and chain');

function opensslText(pem: string): string {
  const r = spawnSync(openssl, ['x509', '-noout', '-text'], { input: pem, encoding: 'utf8' });
  assert.equal(r.status, 0, `openssl x509 rejected the certificate: ${r.stderr}`);
  return r.stdout;
}

/** Key types and issuer signature choices the builder must support. */
const PROFILES: { name: string; caKey: KeySpec; signature?: AlgorithmChoice; opensslAlg: RegExp }[] = [
  { name: 'ECDSA P-256', caKey: 'ec-p256', opensslAlg: /ecdsa-with-SHA256/ },
  { name: 'ECDSA P-384', caKey: 'ec-p384', opensslAlg: /ecdsa-with-SHA384/ },
  { name: 'RSA-2048 PKCS#1 v1.5', caKey: 'rsa-2048', opensslAlg: /sha256WithRSAEncryption/ },
  { name: 'RSA-2048 PSS', caKey: 'rsa-2048', signature: { rsaPadding: 'pss' }, opensslAlg: /rsassaPss/ },
  { name: 'Ed25519', caKey: 'ed25519', opensslAlg: /ED25519/ },
];

for (const p of PROFILES) {
  test(`builder: ${p.name} root -> intermediate -> end entity`, () => {
    const root = createSelfSignedCa({
      subject: { C: 'FI', O: 'gikev2', OU: 'tests', CN: `${p.name} Root` },
      notBefore: T0,
      notAfter: T1,
      keySpec: p.caKey,
      ...(p.signature ? { signature: p.signature } : {}),
      pathLenConstraint: 1,
    });
    const inter = issueIntermediateCa(root, {
      subject: { O: 'gikev2', CN: `${p.name} Intermediate` },
      notBefore: T0,
      notAfter: T1,
      keySpec: p.caKey,
      ...(p.signature ? { signature: p.signature } : {}),
    });
    const ee = issueEndEntity(inter, {
      subject: { O: 'gikev2', CN: 'gm.example.org' },
      notBefore: T0,
      notAfter: T1,
      keySpec: p.caKey,
      ...(p.signature ? { signature: p.signature } : {}),
      serialNumber: Buffer.from('0102030405', 'hex'),
      subjectAltName: { dns: ['gm.example.org'], email: ['ops@example.org'], ip: ['198.51.100.7', 'fe80::1'] },
    });

    // node parses what we build and agrees on the essentials.
    for (const c of [root, inter, ee]) {
      const x = new X509Certificate(c.der);
      assert.deepEqual(x.raw, c.der);
      assert.equal(x.validTo, 'Jun 30 12:34:56 2035 GMT');
      assert.ok(c.pem.startsWith('-----BEGIN CERTIFICATE-----\n'));
      assert.deepEqual(new X509Certificate(c.pem).raw, c.der);
    }
    const x = new X509Certificate(ee.der);
    assert.equal(x.serialNumber.toUpperCase(), '0102030405');
    assert.equal(x.subjectAltName, 'DNS:gm.example.org, email:ops@example.org, IP Address:198.51.100.7, IP Address:FE80:0:0:0:0:0:0:1');
    assert.ok(x.checkIssued(new X509Certificate(inter.der)));
    assert.ok(x.verify(inter.publicKey));
    assert.ok(new X509Certificate(root.der).ca && !x.ca);
    assert.deepEqual(ee.certificate.subjectDer, encodeName({ O: 'gikev2', CN: 'gm.example.org' }));

    // Our own validator accepts the chain.
    validateCertificateChain(ee.certificate, [inter.certificate], { trustAnchors: [root.certificate], now: NOW });

    if (opensslSkip) return;
    const text = opensslText(ee.pem);
    assert.match(text, p.opensslAlg);
    assert.match(text, /Subject: O ?= ?gikev2, CN ?= ?gm\.example\.org/);
    assert.match(text, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
    assert.match(text, /X509v3 Key Usage: critical\s+Digital Signature/);
    assert.match(text, /DNS:gm\.example\.org, email:ops@example\.org, IP Address:198\.51\.100\.7, IP Address:FE80:0:0:0:0:0:0:1/);
    const rootText = opensslText(root.pem);
    assert.match(rootText, /CA:TRUE, pathlen:1/);
    assert.match(rootText, /Certificate Sign, CRL Sign/);
    assert.match(rootText, /Subject: C ?= ?FI, O ?= ?gikev2, OU ?= ?tests, CN ?= ?/);
    // OpenSSL builds and verifies the same chain (signatures, CA flags, key usage).
    const dir = mkdtempSync(join(tmpdir(), 'gikev2-x509-'));
    try {
      writeFileSync(join(dir, 'root.pem'), root.pem);
      writeFileSync(join(dir, 'inter.pem'), inter.pem);
      writeFileSync(join(dir, 'ee.pem'), ee.pem);
      const r = spawnSync(
        openssl,
        ['verify', '-x509_strict', '-attime', String(NOW.getTime() / 1000), '-CAfile', join(dir, 'root.pem'), '-untrusted', join(dir, 'inter.pem'), join(dir, 'ee.pem')],
        { encoding: 'utf8' },
      );
      assert.equal(r.status, 0, `openssl verify: ${r.stdout}${r.stderr}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('builder: certificate signatureAlgorithm uses the RFC 7427 AlgorithmIdentifier octets', () => {
  const ec = createSelfSignedCa({ subject: { CN: 'ec' }, notBefore: T0, notAfter: T1, keySpec: 'ec-p384' });
  assert.deepEqual(ec.certificate.signatureAlgorithmIdentifier, encodeAlgorithmIdentifier(SignatureAlgorithms.ECDSA_SHA384));
  const pss = createSelfSignedCa({ subject: { CN: 'pss' }, notBefore: T0, notAfter: T1, keySpec: 'rsa-2048', signature: { rsaPadding: 'pss', preferredHashes: [4] } });
  assert.deepEqual(pss.certificate.signatureAlgorithmIdentifier, encodeAlgorithmIdentifier(SignatureAlgorithms.RSA_PSS_SHA512));
});

test('builder: refuses inconsistent input', () => {
  const k = generateSigningKeyPair('ec-p256');
  const other = generateSigningKeyPair('ec-p256');
  const base = { subject: { CN: 'x' }, publicKey: k.publicKey, notBefore: T0, notAfter: T1 };
  assert.throws(() => buildCertificate(base, { privateKey: other.privateKey }), RangeError); // self-signed with another key
  assert.throws(() => buildCertificate({ ...base, notAfter: new Date('2020-01-01T00:00:00Z') }, { privateKey: k.privateKey }), RangeError);
  assert.throws(() => buildCertificate({ ...base, basicConstraints: { ca: false, pathLenConstraint: 1 } }, { privateKey: k.privateKey }), RangeError);
  assert.throws(() => encodeName({ C: 'Germany' }), RangeError);
  const ca = createSelfSignedCa({ subject: { CN: 'ca' }, notBefore: T0, notAfter: T1 });
  assert.throws(() => buildCertificate(base, { privateKey: other.privateKey, certificate: ca.certificate }), RangeError); // key not the CA's
  // Far-future validity uses GeneralizedTime and still parses.
  const far = buildCertificate({ ...base, notAfter: new Date('2060-01-01T00:00:00Z') }, { privateKey: k.privateKey });
  assert.equal(far.certificate.notAfter.toISOString(), '2060-01-01T00:00:00.000Z');
  if (!opensslSkip) assert.match(opensslText(far.pem), /Not After : Jan {2}1 00:00:00 2060 GMT/);
});
