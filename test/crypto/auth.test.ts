import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { AuthMethod, IdType } from '../../src/wire/iana.ts';
import {
  AuthError,
  KEY_PAD_FOR_IKEV2,
  buildAuthData,
  createRekeySigner,
  encodeRfc7427AuthData,
  parseRfc7427AuthData,
  restOfIdPayload,
  sharedKeyMic,
  signedOctets,
  verifyAuthData,
  verifyRekeySignature,
  zeroedRfc7427AuthData,
  type AuthSigner,
  type Prf,
} from '../../src/crypto/auth.ts';
import { SignatureAlgorithms, chooseSignatureAlgorithm, encodeAlgorithmIdentifier, parseAlgorithmIdentifier } from '../../src/crypto/signature.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const hmacPrf =
  (hash: string): Prf =>
  (key, data) =>
    createHmac(hash, key).update(data).digest();
const prf256 = hmacPrf('sha256');

function authKind(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof AuthError, `expected AuthError, got ${String(e)}`);
    return e.kind;
  }
  assert.fail('expected an AuthError');
}

function flipBit(b: Uint8Array, i: number): Buffer {
  const c = Buffer.from(b);
  c[i % c.length]! ^= 0x01;
  return c;
}

// Fixed inputs for the known-answer test.
const realMessage = Buffer.from(Array.from({ length: 80 }, (_, i) => i));
const nonce = Buffer.alloc(32, 0x11);
const skPi = Buffer.alloc(32, 0x22);
const idBody = restOfIdPayload(IdType.ID_FQDN, Buffer.from('gm1.example.com', 'ascii'));
const secret = Buffer.from('correct horse battery staple', 'ascii');

test('RestOfInitIDPayload is ID Type | 3 RESERVED | ID data', () => {
  assert.equal(idBody.toString('hex'), '02000000' + Buffer.from('gm1.example.com').toString('hex'));
  assert.throws(() => restOfIdPayload(256, Buffer.alloc(0)), RangeError);
});

test('"Key Pad for IKEv2" is 17 ASCII octets without NUL', () => {
  assert.equal(KEY_PAD_FOR_IKEV2.length, 17);
  assert.equal(KEY_PAD_FOR_IKEV2.toString('hex'), '4b65792050616420666f7220494b457632');
});

test('Shared Key MIC known answer (HMAC-SHA-256 and HMAC-SHA-384), step by step', () => {
  // Expected values computed independently with Python's hmac module:
  //   maced = HMAC(SK_pi, idBody); octets = msg | Nr | maced
  //   AUTH  = HMAC(HMAC(secret, "Key Pad for IKEv2"), octets)
  const vectors = [
    {
      hash: 'sha256',
      maced: '0807bd3f478b200934ffbb6d1edcd36f35ae8f9366f2ccaed3f54dc32191ce54',
      auth: '175f71cb0bd3ad561badb9d78158e784c99d6493638caf0091aef83883120ece',
    },
    {
      hash: 'sha384',
      maced: '098c4bc35b2423cc077b49004b6a971f1269fa749fa353f38bade02be5b430992346c5d1319b31327497ee4992168b03',
      auth: '925d987db79e7c79d31b4e4037743ef98b30252791e87acb16abe721ddd37c01bd56f863b67abc08b133b2bf5a630393',
    },
  ];
  for (const v of vectors) {
    const prf = hmacPrf(v.hash);
    // Step by step with node's HMAC directly, not through the module.
    const maced = createHmac(v.hash, skPi).update(idBody).digest();
    assert.equal(maced.toString('hex'), v.maced);
    const octetsByHand = Buffer.concat([realMessage, nonce, maced]);
    const padKey = createHmac(v.hash, secret).update(Buffer.from('Key Pad for IKEv2', 'ascii')).digest();
    const micByHand = createHmac(v.hash, padKey).update(octetsByHand).digest();
    assert.equal(micByHand.toString('hex'), v.auth);
    // The module.
    const octets = signedOctets({ realMessage, peerNonce: nonce, idPayloadBody: idBody, skP: skPi, prf });
    assert.deepEqual(octets, octetsByHand);
    assert.equal(sharedKeyMic(prf, secret, octets).toString('hex'), v.auth);
    const auth = buildAuthData({ kind: 'psk', sharedSecret: secret, prf }, octets);
    assert.equal(auth.method, AuthMethod.SHARED_KEY_MIC);
    assert.equal(auth.data.toString('hex'), v.auth);
    assert.deepEqual(verifyAuthData(auth, { kind: 'psk', sharedSecret: secret, prf }, octets), { method: AuthMethod.SHARED_KEY_MIC });
  }
});

test('PSK verification: tampering, wrong secret, wrong length and wrong method are rejected', () => {
  const octets = signedOctets({ realMessage, peerNonce: nonce, idPayloadBody: idBody, skP: skPi, prf: prf256 });
  const verifier = { kind: 'psk', sharedSecret: secret, prf: prf256 } as const;
  const auth = buildAuthData(verifier, octets);
  assert.equal(authKind(() => verifyAuthData({ ...auth, data: flipBit(auth.data, 0) }, verifier, octets)), 'auth-failed');
  assert.equal(authKind(() => verifyAuthData(auth, verifier, flipBit(octets, 100))), 'auth-failed');
  assert.equal(authKind(() => verifyAuthData(auth, { ...verifier, sharedSecret: Buffer.from('x') }, octets)), 'auth-failed');
  assert.equal(authKind(() => verifyAuthData({ ...auth, data: auth.data.subarray(0, 16) }, verifier, octets)), 'auth-failed');
  assert.equal(authKind(() => verifyAuthData({ ...auth, method: AuthMethod.DIGITAL_SIGNATURE }, verifier, octets)), 'unsupported-method');
  // Initiator and responder octets differ: the responder's MIC does not verify as the initiator's.
  const respOctets = signedOctets({ realMessage: Buffer.from('resp'), peerNonce: Buffer.alloc(32, 0x33), idPayloadBody: idBody, skP: Buffer.alloc(32, 0x44), prf: prf256 });
  assert.equal(authKind(() => verifyAuthData(buildAuthData(verifier, respOctets), verifier, octets)), 'auth-failed');
});

const kp = {
  rsa: generateKeyPairSync('rsa', { modulusLength: 2048 }),
  p256: generateKeyPairSync('ec', { namedCurve: 'prime256v1' }),
  p384: generateKeyPairSync('ec', { namedCurve: 'secp384r1' }),
  p521: generateKeyPairSync('ec', { namedCurve: 'secp521r1' }),
  ed25519: generateKeyPairSync('ed25519'),
  ed448: generateKeyPairSync('ed448'),
};

const SIGNERS: [string, AuthSigner, KeyObject, number][] = [
  ['method 1 RSA', { kind: 'legacy-signature', method: AuthMethod.RSA_SIGNATURE, privateKey: kp.rsa.privateKey }, kp.rsa.publicKey, 1],
  ['method 9 P-256', { kind: 'legacy-signature', method: AuthMethod.ECDSA_SHA256_P256, privateKey: kp.p256.privateKey }, kp.p256.publicKey, 9],
  ['method 10 P-384', { kind: 'legacy-signature', method: AuthMethod.ECDSA_SHA384_P384, privateKey: kp.p384.privateKey }, kp.p384.publicKey, 10],
  ['method 11 P-521', { kind: 'legacy-signature', method: AuthMethod.ECDSA_SHA512_P521, privateKey: kp.p521.privateKey }, kp.p521.publicKey, 11],
  ...(
    [
      ['RSA PKCS#1 SHA-256', SignatureAlgorithms.RSA_PKCS1_SHA256, kp.rsa],
      ['RSA PKCS#1 SHA-384', SignatureAlgorithms.RSA_PKCS1_SHA384, kp.rsa],
      ['RSA PKCS#1 SHA-512', SignatureAlgorithms.RSA_PKCS1_SHA512, kp.rsa],
      ['RSA PSS SHA-256', SignatureAlgorithms.RSA_PSS_SHA256, kp.rsa],
      ['RSA PSS SHA-384', SignatureAlgorithms.RSA_PSS_SHA384, kp.rsa],
      ['RSA PSS SHA-512', SignatureAlgorithms.RSA_PSS_SHA512, kp.rsa],
      ['ECDSA SHA-256', SignatureAlgorithms.ECDSA_SHA256, kp.p256],
      ['ECDSA SHA-384', SignatureAlgorithms.ECDSA_SHA384, kp.p384],
      ['ECDSA SHA-512', SignatureAlgorithms.ECDSA_SHA512, kp.p521],
      ['Ed25519', SignatureAlgorithms.ED25519, kp.ed25519],
      ['Ed448', SignatureAlgorithms.ED448, kp.ed448],
    ] as const
  ).map(([n, algorithm, k]): [string, AuthSigner, KeyObject, number] => [
    `method 14 ${n}`,
    { kind: 'digital-signature', privateKey: k.privateKey, algorithm },
    k.publicKey,
    14,
  ]),
];

test('every signature auth method: build, verify, and one flipped bit anywhere fails', () => {
  const octets = signedOctets({ realMessage, peerNonce: nonce, idPayloadBody: idBody, skP: skPi, prf: prf256 });
  for (const [name, signer, publicKey, method] of SIGNERS) {
    const auth = buildAuthData(signer, octets);
    assert.equal(auth.method, method, name);
    const verified = verifyAuthData(auth, { kind: 'public-key', publicKey }, octets);
    assert.equal(verified.method, method);
    if (signer.kind === 'digital-signature') {
      const { algorithmIdentifier, signature } = parseRfc7427AuthData(auth.data);
      assert.deepEqual(algorithmIdentifier, encodeAlgorithmIdentifier(signer.algorithm), `${name}: AlgorithmIdentifier`);
      assert.equal(auth.data[0], algorithmIdentifier.length, `${name}: ASN.1 Length octet`);
      assert.ok(signature.length > 0);
      assert.ok(verified.algorithm && verified.algorithm.scheme === signer.algorithm.scheme);
    }
    assert.equal(authKind(() => verifyAuthData(auth, { kind: 'public-key', publicKey }, flipBit(octets, 5))), 'auth-failed', `${name}: octets`);
    assert.equal(
      authKind(() => verifyAuthData({ ...auth, data: flipBit(auth.data, auth.data.length - 2) }, { kind: 'public-key', publicKey }, octets)),
      'auth-failed',
      `${name}: signature`,
    );
  }
});

test('method 14 with a tampered AlgorithmIdentifier or length octet is refused with a typed error', () => {
  const octets = Buffer.from('octets');
  const signer: AuthSigner = { kind: 'digital-signature', privateKey: kp.rsa.privateKey, algorithm: SignatureAlgorithms.RSA_PKCS1_SHA256 };
  const auth = buildAuthData(signer, octets);
  const v = { kind: 'public-key', publicKey: kp.rsa.publicKey } as const;
  // Change sha256WithRSAEncryption (…01 0b) to sha384WithRSAEncryption (…01 0c): same key, other hash -> bad signature.
  const swapped = Buffer.from(auth.data);
  assert.equal(swapped[1 + 12], 0x0b);
  swapped[1 + 12] = 0x0c;
  assert.equal(authKind(() => verifyAuthData({ ...auth, data: swapped }, v, octets)), 'auth-failed');
  // Unknown OID arc -> unsupported algorithm.
  const unknown = Buffer.from(auth.data);
  unknown[1 + 12] = 0x7f;
  assert.equal(authKind(() => verifyAuthData({ ...auth, data: unknown }, v, octets)), 'algorithm-not-allowed');
  // Length octet too large / too small / zero.
  const tooLong = Buffer.from(auth.data);
  tooLong[0] = 0xff;
  assert.equal(authKind(() => verifyAuthData({ ...auth, data: tooLong.subarray(0, 100) }, v, octets)), 'malformed');
  const tooShort = Buffer.from(auth.data);
  tooShort[0] = 14;
  assert.equal(authKind(() => verifyAuthData({ ...auth, data: tooShort }, v, octets)), 'malformed');
  assert.equal(authKind(() => parseRfc7427AuthData(hex('00'))), 'malformed');
  assert.equal(authKind(() => parseRfc7427AuthData(Buffer.alloc(0))), 'malformed');
  assert.equal(authKind(() => parseRfc7427AuthData(hex('07 300506032b6570'))), 'malformed'); // no signature
  // A policy that refuses PKCS#1 v1.5.
  assert.equal(
    authKind(() => verifyAuthData(auth, { ...v, acceptAlgorithm: (a) => a.scheme !== 'rsa-pkcs1' }, octets)),
    'algorithm-not-allowed',
  );
  // Method not allowed by the verifier; key of the wrong type.
  assert.equal(authKind(() => verifyAuthData(auth, { ...v, allowedMethods: [AuthMethod.RSA_SIGNATURE] }, octets)), 'unsupported-method');
  assert.equal(authKind(() => verifyAuthData(auth, { kind: 'public-key', publicKey: kp.p256.publicKey }, octets)), 'key-mismatch');
  assert.equal(authKind(() => verifyAuthData({ method: AuthMethod.NULL_AUTH, data: Buffer.alloc(0) }, { ...v, allowedMethods: [13] }, octets)), 'unsupported-method');
  // Legacy method with a key of the wrong curve.
  const p256sig = buildAuthData({ kind: 'legacy-signature', method: 9, privateKey: kp.p256.privateKey }, octets);
  assert.equal(authKind(() => verifyAuthData(p256sig, { kind: 'public-key', publicKey: kp.p384.publicKey }, octets)), 'key-mismatch');
  assert.equal(authKind(() => buildAuthData({ kind: 'legacy-signature', method: 14, privateKey: kp.p256.privateKey }, octets)), 'unsupported-method');
});

test('RFC 7427 layout helpers', () => {
  const alg = encodeAlgorithmIdentifier(SignatureAlgorithms.ED25519);
  const data = encodeRfc7427AuthData(alg, hex('aabb'));
  assert.equal(data.toString('hex'), '07300506032b6570aabb');
  assert.deepEqual(parseRfc7427AuthData(data), { algorithmIdentifier: alg, signature: hex('aabb') });
  assert.equal(zeroedRfc7427AuthData(alg, 3).toString('hex'), '07300506032b6570000000');
  assert.throws(() => encodeRfc7427AuthData(Buffer.alloc(256, 0x30), hex('00')), RangeError);
});

test('GSA_REKEY signer: signature over a message containing its own zeroed AUTH data', () => {
  for (const [k, alg] of [
    [kp.p256, SignatureAlgorithms.ECDSA_SHA256],
    [kp.p521, SignatureAlgorithms.ECDSA_SHA512],
    [kp.rsa, SignatureAlgorithms.RSA_PSS_SHA256],
    [kp.ed25519, SignatureAlgorithms.ED25519],
  ] as const) {
    const signer = createRekeySigner(k.privateKey, alg);
    assert.deepEqual(signer.algorithmIdentifier, encodeAlgorithmIdentifier(alg));
    // A stand-in for "A | P" whose AUTH payload is the template.
    const message = (authData: Buffer): Buffer => Buffer.concat([Buffer.from('header+payloads|'), authData, Buffer.from('|rest')]);
    for (let i = 0; i < 10; i++) {
      const authData = signer.signWithTemplate(message);
      const { algorithmIdentifier, signature } = parseRfc7427AuthData(authData);
      // The receiver zeroes the signature in place and verifies.
      const covered = message(zeroedRfc7427AuthData(algorithmIdentifier, signature.length));
      const got = verifyRekeySignature(k.publicKey, algorithmIdentifier, covered, signature, signer.algorithmIdentifier);
      assert.equal(got.scheme, alg.scheme);
      assert.equal(authKind(() => verifyRekeySignature(k.publicKey, algorithmIdentifier, flipBit(covered, 3), signature)), 'auth-failed');
    }
    const raw = signer.sign(Buffer.from('arbitrary octets'));
    verifyRekeySignature(k.publicKey, signer.algorithmIdentifier, Buffer.from('arbitrary octets'), raw);
  }
  // The announced AlgorithmIdentifier must equal the negotiated one.
  const s = createRekeySigner(kp.p256.privateKey, SignatureAlgorithms.ECDSA_SHA256);
  const sig = s.sign(Buffer.from('m'));
  assert.equal(
    authKind(() => verifyRekeySignature(kp.p256.publicKey, s.algorithmIdentifier, Buffer.from('m'), sig, encodeAlgorithmIdentifier(SignatureAlgorithms.ECDSA_SHA384))),
    'algorithm-not-allowed',
  );
  assert.equal(authKind(() => createRekeySigner(kp.p256.privateKey, SignatureAlgorithms.ED25519).sign(Buffer.from('m'))), 'key-mismatch');
});

test('chooseSignatureAlgorithm output feeds buildAuthData', () => {
  const octets = Buffer.from('o');
  for (const k of [kp.rsa, kp.p384, kp.ed25519]) {
    const algorithm = chooseSignatureAlgorithm(k.privateKey, { peerHashes: [2, 3, 4, 5] });
    const auth = buildAuthData({ kind: 'digital-signature', privateKey: k.privateKey, algorithm }, octets);
    const parsed = parseAlgorithmIdentifier(parseRfc7427AuthData(auth.data).algorithmIdentifier);
    assert.equal(parsed.scheme, algorithm.scheme);
    verifyAuthData(auth, { kind: 'public-key', publicKey: k.publicKey }, octets);
  }
});
