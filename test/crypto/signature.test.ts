import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, createHash, generateKeyPairSync, publicDecrypt, type KeyObject } from 'node:crypto';
import { AuthMethod, HashAlgorithm } from '../../src/wire/iana.ts';
import { derExplicit, derInteger, derNull, derOid, derSequence } from '../../src/crypto/asn1.ts';
import {
  DEFAULT_SIGNATURE_HASHES,
  SignatureAlgorithms,
  SignatureError,
  chooseSignatureAlgorithm,
  decodeSignatureHashAlgorithms,
  encodeAlgorithmIdentifier,
  encodeSignatureHashAlgorithms,
  hashAlgorithmIdOf,
  legacyMethodForKey,
  parseAlgorithmIdentifier,
  sameSignatureAlgorithm,
  selectSignatureHash,
  signLegacy,
  signWithAlgorithm,
  verifyLegacy,
  verifyWithAlgorithm,
  type SignatureAlgorithm,
} from '../../src/crypto/signature.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/**
 * Published AlgorithmIdentifier octets. Source: CA/Browser Forum Baseline
 * Requirements 7.1.3.1.3 / 7.1.3.2.1 / 7.1.3.2.2 ("MUST be byte-for-byte
 * identical with the following hex-encoded bytes"), which list the same
 * encodings as RFC 7427 Appendix A (PKCS#1 1.5 with NULL parameters, ECDSA
 * with absent parameters, RSASSA-PSS with hash = MGF1 hash and salt = hash
 * length) and RFC 8420 (id-Ed25519, absent parameters). The RFC 7427 text
 * itself could not be retrieved here to cross-check each octet against it.
 */
const PUBLISHED: [keyof typeof SignatureAlgorithms, string][] = [
  ['RSA_PKCS1_SHA256', '300d06092a864886f70d01010b0500'],
  ['RSA_PKCS1_SHA384', '300d06092a864886f70d01010c0500'],
  ['RSA_PKCS1_SHA512', '300d06092a864886f70d01010d0500'],
  [
    'RSA_PSS_SHA256',
    '304106092a864886f70d01010a3034a00f300d0609608648016503040201' + '0500a11c301a06092a864886f70d010108300d0609608648016503040201' + '0500a203020120',
  ],
  [
    'RSA_PSS_SHA384',
    '304106092a864886f70d01010a3034a00f300d0609608648016503040202' + '0500a11c301a06092a864886f70d010108300d0609608648016503040202' + '0500a203020130',
  ],
  [
    'RSA_PSS_SHA512',
    '304106092a864886f70d01010a3034a00f300d0609608648016503040203' + '0500a11c301a06092a864886f70d010108300d0609608648016503040203' + '0500a203020140',
  ],
  ['ECDSA_SHA256', '300a06082a8648ce3d040302'],
  ['ECDSA_SHA384', '300a06082a8648ce3d040303'],
  ['ECDSA_SHA512', '300a06082a8648ce3d040304'],
  ['ED25519', '300506032b6570'],
  ['ED448', '300506032b6571'],
];

function sigKind(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof SignatureError, `expected SignatureError, got ${String(e)}`);
    return e.kind;
  }
  assert.fail('expected a SignatureError');
}

function flipBit(b: Uint8Array, i = 0): Buffer {
  const c = Buffer.from(b);
  c[i % c.length]! ^= 0x01;
  return c;
}

test('AlgorithmIdentifier encodings equal the published octets, and parse back', () => {
  for (const [name, h] of PUBLISHED) {
    const alg = SignatureAlgorithms[name];
    assert.equal(encodeAlgorithmIdentifier(alg).toString('hex'), h, name);
    assert.ok(sameSignatureAlgorithm(parseAlgorithmIdentifier(hex(h)), alg), `parse ${name}`);
  }
});

test('parser accepts the other encodings PKIX allows and rejects the rest', () => {
  // sha256WithRSAEncryption with absent parameters (RFC 4055 says accept).
  assert.ok(sameSignatureAlgorithm(parseAlgorithmIdentifier(derSequence(derOid('1.2.840.113549.1.1.11'))), SignatureAlgorithms.RSA_PKCS1_SHA256));
  // PSS with a 20-octet salt and explicit trailer field 1.
  const sha256Id = derSequence(derOid('2.16.840.1.101.3.4.2.1'), derNull());
  const pss20 = derSequence(
    derOid('1.2.840.113549.1.1.10'),
    derSequence(
      derExplicit(0, sha256Id),
      derExplicit(1, derSequence(derOid('1.2.840.113549.1.1.8'), sha256Id)),
      derExplicit(2, derInteger(20)),
      derExplicit(3, derInteger(1)),
    ),
  );
  const alg = parseAlgorithmIdentifier(pss20);
  assert.deepEqual({ ...alg }, { scheme: 'rsa-pss', hash: 'sha256', saltLength: 20 });
  // PSS with default (SHA-1) parameters: unsupported; MGF1 hash different from the digest: unsupported.
  assert.equal(sigKind(() => parseAlgorithmIdentifier(hex('300d06092a864886f70d01010a3000'))), 'unsupported-algorithm');
  const mixed = derSequence(
    derOid('1.2.840.113549.1.1.10'),
    derSequence(
      derExplicit(0, sha256Id),
      derExplicit(1, derSequence(derOid('1.2.840.113549.1.1.8'), derSequence(derOid('2.16.840.1.101.3.4.2.3'), derNull()))),
    ),
  );
  const trailer2 = derSequence(derOid('1.2.840.113549.1.1.10'), derSequence(derExplicit(0, sha256Id), derExplicit(3, derInteger(2))));
  assert.equal(sigKind(() => parseAlgorithmIdentifier(trailer2)), 'unsupported-algorithm');
  assert.equal(sigKind(() => parseAlgorithmIdentifier(mixed)), 'unsupported-algorithm');
  // sha1WithRSAEncryption and unknown OIDs: unsupported. ECDSA with NULL parameters: malformed (must be absent).
  assert.equal(sigKind(() => parseAlgorithmIdentifier(hex('300d06092a864886f70d0101050500'))), 'unsupported-algorithm');
  assert.equal(sigKind(() => parseAlgorithmIdentifier(hex('300c06082a8648ce3d0403020500'))), 'malformed');
  // Truncated, trailing octets, not a SEQUENCE.
  assert.equal(sigKind(() => parseAlgorithmIdentifier(hex('300d06092a864886f70d01010b05'))), 'malformed');
  assert.equal(sigKind(() => parseAlgorithmIdentifier(hex('300a06082a8648ce3d04030200'))), 'malformed');
  assert.equal(sigKind(() => parseAlgorithmIdentifier(hex('0500'))), 'malformed');
});

const keys = {
  rsa: generateKeyPairSync('rsa', { modulusLength: 2048 }),
  rsaPss: generateKeyPairSync('rsa-pss', { modulusLength: 2048 }),
  p256: generateKeyPairSync('ec', { namedCurve: 'prime256v1' }),
  p384: generateKeyPairSync('ec', { namedCurve: 'secp384r1' }),
  p521: generateKeyPairSync('ec', { namedCurve: 'secp521r1' }),
  ed25519: generateKeyPairSync('ed25519'),
  ed448: generateKeyPairSync('ed448'),
};

const ROUND_TRIPS: [string, SignatureAlgorithm, { privateKey: KeyObject; publicKey: KeyObject }][] = [
  ['RSA PKCS#1 SHA-256', SignatureAlgorithms.RSA_PKCS1_SHA256, keys.rsa],
  ['RSA PKCS#1 SHA-384', SignatureAlgorithms.RSA_PKCS1_SHA384, keys.rsa],
  ['RSA PKCS#1 SHA-512', SignatureAlgorithms.RSA_PKCS1_SHA512, keys.rsa],
  ['RSA PSS SHA-256', SignatureAlgorithms.RSA_PSS_SHA256, keys.rsa],
  ['RSA PSS SHA-384', SignatureAlgorithms.RSA_PSS_SHA384, keys.rsa],
  ['RSA PSS SHA-512', SignatureAlgorithms.RSA_PSS_SHA512, keys.rsa],
  ['RSA-PSS key, PSS SHA-256', SignatureAlgorithms.RSA_PSS_SHA256, keys.rsaPss],
  ['ECDSA P-256 SHA-256', SignatureAlgorithms.ECDSA_SHA256, keys.p256],
  ['ECDSA P-384 SHA-384', SignatureAlgorithms.ECDSA_SHA384, keys.p384],
  ['ECDSA P-521 SHA-512', SignatureAlgorithms.ECDSA_SHA512, keys.p521],
  ['ECDSA P-256 SHA-512 (RFC 7427 decouples hash and curve)', SignatureAlgorithms.ECDSA_SHA512, keys.p256],
  ['Ed25519', SignatureAlgorithms.ED25519, keys.ed25519],
  ['Ed448', SignatureAlgorithms.ED448, keys.ed448],
];

test('sign/verify round trip for every RFC 7427 algorithm; one flipped bit fails with a typed error', () => {
  const data = Buffer.from('InitiatorSignedOctets stand-in');
  for (const [name, alg, kp] of ROUND_TRIPS) {
    const sig = signWithAlgorithm(alg, kp.privateKey, data);
    verifyWithAlgorithm(alg, kp.publicKey, data, sig);
    assert.equal(sigKind(() => verifyWithAlgorithm(alg, kp.publicKey, flipBit(data, 3), sig)), 'bad-signature', `${name}: data`);
    assert.equal(sigKind(() => verifyWithAlgorithm(alg, kp.publicKey, data, flipBit(sig, sig.length - 1))), 'bad-signature', `${name}: sig`);
    assert.equal(sigKind(() => verifyWithAlgorithm(alg, kp.publicKey, data, sig.subarray(0, 5))), 'bad-signature', `${name}: truncated`);
  }
});

test('ECDSA signatures in RFC 7427 are DER ECDSA-Sig-Value', () => {
  const sig = signWithAlgorithm(SignatureAlgorithms.ECDSA_SHA256, keys.p256.privateKey, Buffer.from('x'));
  assert.equal(sig[0], 0x30);
  assert.equal(sig[1], sig.length - 2);
  // The raw r||s form must not verify as method 14.
  const raw = signLegacy(AuthMethod.ECDSA_SHA256_P256, keys.p256.privateKey, Buffer.from('x'));
  assert.equal(sigKind(() => verifyWithAlgorithm(SignatureAlgorithms.ECDSA_SHA256, keys.p256.publicKey, Buffer.from('x'), raw)), 'bad-signature');
});

test('keys that do not fit the algorithm are rejected as key-mismatch', () => {
  const d = Buffer.from('d');
  assert.equal(sigKind(() => signWithAlgorithm(SignatureAlgorithms.ECDSA_SHA256, keys.rsa.privateKey, d)), 'key-mismatch');
  assert.equal(sigKind(() => signWithAlgorithm(SignatureAlgorithms.RSA_PKCS1_SHA256, keys.rsaPss.privateKey, d)), 'key-mismatch');
  assert.equal(sigKind(() => signWithAlgorithm(SignatureAlgorithms.ED25519, keys.ed448.privateKey, d)), 'key-mismatch');
  assert.equal(sigKind(() => signWithAlgorithm(SignatureAlgorithms.ED25519, keys.ed25519.publicKey, d)), 'key-mismatch');
  const sig = signWithAlgorithm(SignatureAlgorithms.ED25519, keys.ed25519.privateKey, d);
  assert.equal(sigKind(() => verifyWithAlgorithm(SignatureAlgorithms.ECDSA_SHA256, keys.ed25519.publicKey, d, sig)), 'key-mismatch');
  // Another key of the right type: bad signature, not a crash.
  const other = generateKeyPairSync('ed25519');
  assert.equal(sigKind(() => verifyWithAlgorithm(SignatureAlgorithms.ED25519, other.publicKey, d, sig)), 'bad-signature');
});

test('legacy methods 1, 9, 10, 11: round trip, layout, tamper, key checks', () => {
  const data = Buffer.from('signed octets');
  // Method 1: RSASSA-PKCS1-v1_5 over SHA-1; the recovered block carries the SHA-1 DigestInfo.
  const rsaSig = signLegacy(AuthMethod.RSA_SIGNATURE, keys.rsa.privateKey, data);
  verifyLegacy(AuthMethod.RSA_SIGNATURE, keys.rsa.publicKey, data, rsaSig);
  const recovered = publicDecrypt({ key: keys.rsa.publicKey, padding: constants.RSA_PKCS1_PADDING }, rsaSig);
  // DigestInfo prefix for SHA-1 from RFC 8017 9.2, Note 1.
  assert.equal(recovered.toString('hex'), '3021300906052b0e03021a05000414' + createHash('sha1').update(data).digest('hex'));
  assert.equal(sigKind(() => verifyLegacy(AuthMethod.RSA_SIGNATURE, keys.rsa.publicKey, data, flipBit(rsaSig, 10))), 'bad-signature');

  const ec: [number, { privateKey: KeyObject; publicKey: KeyObject }, number, string][] = [
    [AuthMethod.ECDSA_SHA256_P256, keys.p256, 64, 'sha256'],
    [AuthMethod.ECDSA_SHA384_P384, keys.p384, 96, 'sha384'],
    [AuthMethod.ECDSA_SHA512_P521, keys.p521, 132, 'sha512'],
  ];
  for (const [method, kp, len] of ec) {
    const sig = signLegacy(method, kp.privateKey, data);
    assert.equal(sig.length, len, `RFC 4754: r||s is ${len} octets`);
    verifyLegacy(method, kp.publicKey, data, sig);
    assert.equal(sigKind(() => verifyLegacy(method, kp.publicKey, flipBit(data), sig)), 'bad-signature');
    assert.equal(sigKind(() => verifyLegacy(method, kp.publicKey, data, flipBit(sig, 7))), 'bad-signature');
    assert.equal(sigKind(() => verifyLegacy(method, kp.publicKey, data, Buffer.concat([sig, Buffer.from([0])]))), 'bad-signature');
  }
  // Curve bound to the method.
  assert.equal(sigKind(() => signLegacy(AuthMethod.ECDSA_SHA256_P256, keys.p384.privateKey, data)), 'key-mismatch');
  assert.equal(sigKind(() => signLegacy(AuthMethod.RSA_SIGNATURE, keys.p256.privateKey, data)), 'key-mismatch');
  assert.equal(sigKind(() => signLegacy(AuthMethod.SHARED_KEY_MIC, keys.p256.privateKey, data)), 'unsupported-algorithm');
  assert.equal(legacyMethodForKey(keys.rsa.publicKey), AuthMethod.RSA_SIGNATURE);
  assert.equal(legacyMethodForKey(keys.p384.publicKey), AuthMethod.ECDSA_SHA384_P384);
  assert.equal(legacyMethodForKey(keys.ed25519.publicKey), undefined);
});

test('SIGNATURE_HASH_ALGORITHMS notify data and hash selection', () => {
  const data = encodeSignatureHashAlgorithms([HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512, HashAlgorithm.IDENTITY]);
  assert.equal(data.toString('hex'), '0002000300040005');
  assert.deepEqual(decodeSignatureHashAlgorithms(data), [2, 3, 4, 5]);
  assert.deepEqual(decodeSignatureHashAlgorithms(hex('0001ffff')), [1, 0xffff]);
  assert.deepEqual(decodeSignatureHashAlgorithms(Buffer.alloc(0)), []);
  assert.equal(sigKind(() => decodeSignatureHashAlgorithms(hex('000200'))), 'malformed');
  assert.throws(() => encodeSignatureHashAlgorithms([0x10000]), RangeError);
  assert.equal(selectSignatureHash(DEFAULT_SIGNATURE_HASHES, [1, 4, 3]), HashAlgorithm.SHA2_384);
  assert.equal(selectSignatureHash(DEFAULT_SIGNATURE_HASHES, [1]), undefined);
  assert.ok(!DEFAULT_SIGNATURE_HASHES.includes(HashAlgorithm.SHA1));
});

test('choosing the algorithm for a key and a peer hash list', () => {
  assert.deepEqual({ ...chooseSignatureAlgorithm(keys.p384.privateKey) }, { scheme: 'ecdsa', hash: 'sha384' });
  assert.deepEqual({ ...chooseSignatureAlgorithm(keys.p521.privateKey) }, { scheme: 'ecdsa', hash: 'sha512' });
  assert.deepEqual({ ...chooseSignatureAlgorithm(keys.p384.privateKey, { peerHashes: [2] }) }, { scheme: 'ecdsa', hash: 'sha256' });
  assert.deepEqual({ ...chooseSignatureAlgorithm(keys.rsa.privateKey) }, { scheme: 'rsa-pss', hash: 'sha256', saltLength: 32 });
  assert.deepEqual({ ...chooseSignatureAlgorithm(keys.rsa.privateKey, { rsaPadding: 'pkcs1', peerHashes: [4] }) }, { scheme: 'rsa-pkcs1', hash: 'sha512' });
  assert.deepEqual({ ...chooseSignatureAlgorithm(keys.rsaPss.privateKey, { rsaPadding: 'pkcs1' }) }, { scheme: 'rsa-pss', hash: 'sha256', saltLength: 32 });
  assert.equal(chooseSignatureAlgorithm(keys.ed25519.privateKey, { peerHashes: [2, 5] }), SignatureAlgorithms.ED25519);
  assert.equal(sigKind(() => chooseSignatureAlgorithm(keys.ed25519.privateKey, { peerHashes: [2, 3] })), 'unsupported-algorithm');
  assert.equal(sigKind(() => chooseSignatureAlgorithm(keys.p256.privateKey, { peerHashes: [1] })), 'unsupported-algorithm');
  assert.equal(hashAlgorithmIdOf(SignatureAlgorithms.ED448), HashAlgorithm.IDENTITY);
  assert.equal(hashAlgorithmIdOf(SignatureAlgorithms.RSA_PSS_SHA384), HashAlgorithm.SHA2_384);
  const secp256k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
  assert.equal(sigKind(() => chooseSignatureAlgorithm(secp256k1.privateKey)), 'key-mismatch');
});
