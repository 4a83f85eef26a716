import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { EncrId, IntegId } from '../../src/wire/iana.ts';
import {
  IntegrityError,
  SkCipherError,
  createSkCipher,
  encrKeyLength,
  integKeyLength,
  protect,
  skOverhead,
  skParameters,
  unprotect,
  type SkAlgorithm,
  type SkCipherErrorKind,
  type IntegrityErrorKind,
} from '../../src/crypto/cipher.ts';
import { deterministicRandom } from '../../src/crypto/random.ts';

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function configError(fn: () => unknown, kind: SkCipherErrorKind): void {
  assert.throws(fn, (e: unknown) => e instanceof SkCipherError && e.kind === kind);
}
function integrityError(fn: () => unknown, kind?: IntegrityErrorKind): void {
  assert.throws(fn, (e: unknown) => e instanceof IntegrityError && (kind === undefined || e.kind === kind));
}

const CBC128_SHA256: SkAlgorithm = { encr: EncrId.AES_CBC, encrKeyBits: 128, integ: IntegId.HMAC_SHA2_256_128 };

test('RFC 3602 Section 4 cases 1 and 2 through AES-CBC-128; ICV = HMAC(SK_a, aad | IV | ciphertext)', () => {
  // RFC 3602 Section 4, Case #1 and Case #2.
  const cases = [
    {
      key: '06a9214036b8a15b512e03d534120006',
      iv: '3dafba429d9eb430b422da802c9fac41',
      pt: Buffer.from('Single block msg'),
      ct: 'e353779c1079aeb82708942dbe77181a',
    },
    {
      key: 'c286696d887c9aa0611bbb3e2025a45a',
      iv: '562e17996d093d28ddb3ba695a2e6f58',
      pt: h('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'),
      ct: 'd296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1',
    },
  ];
  const integKey = Buffer.alloc(32, 0x5a);
  const aad = Buffer.from('IKE header .. SK header');
  for (const c of cases) {
    const cipher = createSkCipher(CBC128_SHA256, { encrKey: h(c.key), integKey });
    const { ciphertext, icv } = cipher.seal(h(c.iv), aad, c.pt);
    assert.equal(ciphertext.toString('hex'), c.ct);
    const mac = createHmac('sha256', integKey).update(Buffer.concat([aad, h(c.iv), ciphertext])).digest();
    assert.deepEqual(icv, mac.subarray(0, 16));
    assert.deepEqual(cipher.open(h(c.iv), aad, ciphertext, icv), c.pt);
  }
});

// McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 2-4.
// The 12-octet GCM IV is split as IKEv2 does: salt (end of the key material) | 8-octet IV.
const GCM_K = 'feffe9928665731c6d6a8f9467308308';
const GCM_P =
  'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255';
const GCM_C =
  '42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985';
const GCM_CASES = [
  { name: 'TC2', key: '00'.repeat(16), salt: '00000000', iv: '0000000000000000', aad: '', pt: '00'.repeat(16), ct: '0388dace60b6a392f328c2b971b2fe78', tag: 'ab6e47d42cec13bdf53a67b21257bddf' },
  { name: 'TC3', key: GCM_K, salt: 'cafebabe', iv: 'facedbaddecaf888', aad: '', pt: GCM_P, ct: GCM_C, tag: '4d5c2af327cd64a62cf35abd2ba6fab4' },
  {
    name: 'TC4',
    key: GCM_K,
    salt: 'cafebabe',
    iv: 'facedbaddecaf888',
    aad: 'feedfacedeadbeeffeedfacedeadbeefabaddad2',
    pt: GCM_P.slice(0, 120),
    ct: GCM_C.slice(0, 120),
    tag: '5bc94fbc3221a5db94fae95ae7121a47',
  },
];

test('GCM spec test cases 2-4 through AES-GCM with 16, 12 and 8 octet ICVs (RFC 5282)', () => {
  for (const v of GCM_CASES) {
    // A t-octet GCM tag is the leftmost t octets of the full tag (NIST SP 800-38D).
    for (const [encr, icvLen] of [
      [EncrId.AES_GCM_16, 16],
      [EncrId.AES_GCM_12, 12],
      [EncrId.AES_GCM_8, 8],
    ] as const) {
      const cipher = createSkCipher({ encr, encrKeyBits: 128 }, { encrKey: h(v.key + v.salt), integKey: Buffer.alloc(0) });
      const { ciphertext, icv } = cipher.seal(h(v.iv), h(v.aad), h(v.pt));
      assert.equal(ciphertext.toString('hex'), v.ct, v.name);
      assert.equal(icv.toString('hex'), v.tag.slice(0, 2 * icvLen), `${v.name} ICV ${icvLen}`);
      assert.deepEqual(cipher.open(h(v.iv), h(v.aad), ciphertext, icv), h(v.pt));
    }
  }
});

test('RFC 8439 Section 2.8.2 AEAD vector through ChaCha20-Poly1305 (RFC 7634 salt | IV nonce)', () => {
  // The RFC's nonce 07000000 | 4041424344454647 is exactly RFC 7634's salt | IV.
  const key = h('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
  const cipher = createSkCipher({ encr: EncrId.CHACHA20_POLY1305 }, { encrKey: Buffer.concat([key, h('07000000')]), integKey: Buffer.alloc(0) });
  const pt = Buffer.from(
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
  );
  const { ciphertext, icv } = cipher.seal(h('4041424344454647'), h('50515253c0c1c2c3c4c5c6c7'), pt);
  assert.equal(
    ciphertext.toString('hex'),
    'd31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116',
  );
  assert.equal(icv.toString('hex'), '1ae10b594f09e26a7e902ecbd0600691');
});

const ALGORITHMS: SkAlgorithm[] = [
  { encr: EncrId.AES_CBC, encrKeyBits: 128, integ: IntegId.HMAC_SHA1_96 },
  CBC128_SHA256,
  { encr: EncrId.AES_CBC, encrKeyBits: 192, integ: IntegId.HMAC_SHA2_384_192 },
  { encr: EncrId.AES_CBC, encrKeyBits: 256, integ: IntegId.HMAC_SHA2_512_256 },
  { encr: EncrId.AES_GCM_8, encrKeyBits: 128 },
  { encr: EncrId.AES_GCM_12, encrKeyBits: 192 },
  { encr: EncrId.AES_GCM_16, encrKeyBits: 256 },
  { encr: EncrId.AES_GCM_16, encrKeyBits: 256, integ: IntegId.NONE },
  { encr: EncrId.CHACHA20_POLY1305 },
  { encr: EncrId.CHACHA20_POLY1305, encrKeyBits: 256 },
];

function keysFor(alg: SkAlgorithm, seed: string): { encrKey: Buffer; integKey: Buffer } {
  const p = skParameters(alg);
  const rng = deterministicRandom(seed);
  return { encrKey: rng.bytes(p.encrKeyLength), integKey: rng.bytes(p.integKeyLength) };
}

test('sizes: key lengths include the AEAD salt; ICV and IV sizes per RFC', () => {
  assert.equal(encrKeyLength(EncrId.AES_CBC, 128), 16);
  assert.equal(encrKeyLength(EncrId.AES_CBC, 256), 32);
  assert.equal(encrKeyLength(EncrId.AES_GCM_16, 128), 20);
  assert.equal(encrKeyLength(EncrId.AES_GCM_8, 192), 28);
  assert.equal(encrKeyLength(EncrId.AES_GCM_12, 256), 36);
  assert.equal(encrKeyLength(EncrId.CHACHA20_POLY1305), 36);
  assert.equal(integKeyLength(IntegId.HMAC_SHA1_96), 20);
  assert.equal(integKeyLength(IntegId.HMAC_SHA2_256_128), 32);
  assert.equal(integKeyLength(IntegId.HMAC_SHA2_384_192), 48);
  assert.equal(integKeyLength(IntegId.HMAC_SHA2_512_256), 64);
  assert.equal(integKeyLength(IntegId.NONE), 0);
  assert.deepEqual(skParameters({ encr: EncrId.AES_CBC, encrKeyBits: 256, integ: IntegId.HMAC_SHA2_512_256 }), {
    aead: false, ivLength: 16, icvLength: 32, blockSize: 16, encrKeyLength: 32, integKeyLength: 64,
  });
  assert.deepEqual(skParameters({ encr: EncrId.AES_GCM_8, encrKeyBits: 128 }), {
    aead: true, ivLength: 8, icvLength: 8, blockSize: 1, encrKeyLength: 20, integKeyLength: 0,
  });
  assert.equal(skParameters({ encr: EncrId.AES_CBC, encrKeyBits: 128, integ: IntegId.HMAC_SHA1_96 }).icvLength, 12);
  assert.equal(skParameters({ encr: EncrId.AES_CBC, encrKeyBits: 128, integ: IntegId.HMAC_SHA2_384_192 }).icvLength, 24);
});

test('skOverhead: IV + minimal padding + Pad Length + ICV', () => {
  // AES-CBC/HMAC-SHA2-256-128: 16 IV + pad to 16 (Pad Length included) + 16 ICV.
  assert.equal(skOverhead(CBC128_SHA256, 0), 16 + 16 + 16);
  assert.equal(skOverhead(CBC128_SHA256, 15), 16 + 1 + 16);
  assert.equal(skOverhead(CBC128_SHA256, 16), 16 + 16 + 16);
  assert.equal(skOverhead(CBC128_SHA256, 100), 16 + 12 + 16);
  // AEADs: 8 IV + Pad Length octet + tag.
  assert.equal(skOverhead({ encr: EncrId.AES_GCM_16, encrKeyBits: 128 }, 77), 8 + 1 + 16);
  assert.equal(skOverhead({ encr: EncrId.AES_GCM_8, encrKeyBits: 128 }, 77), 8 + 1 + 8);
  assert.equal(skOverhead({ encr: EncrId.CHACHA20_POLY1305 }, 0), 8 + 1 + 16);
});

test('property: protect/unprotect round-trips, the body has the predicted size', () => {
  for (const alg of ALGORITHMS) {
    const keys = keysFor(alg, `k${alg.encr}/${alg.encrKeyBits}`);
    const sender = createSkCipher(alg, keys, deterministicRandom('iv'));
    const receiver = createSkCipher(alg, keys);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ minLength: 28, maxLength: 60 }), (inner, aad) => {
        const body = protect(sender, aad, inner);
        assert.equal(body.length, inner.length + skOverhead(alg, inner.length));
        if (!sender.aead) assert.equal((body.length - sender.ivLength - sender.icvLength) % 16, 0);
        assert.deepEqual(unprotect(receiver, aad, body), Buffer.from(inner));
      }),
      { numRuns: 40 },
    );
  }
});

test('any modified octet of the body or of the AAD is detected', () => {
  const inner = Buffer.from('inner payloads: IDi, AUTH, SAi2, TSi, TSr');
  const aad = Buffer.alloc(32, 0x21);
  for (const alg of ALGORITHMS) {
    const cipher = createSkCipher(alg, keysFor(alg, 'tamper'));
    const body = protect(cipher, aad, inner);
    for (let i = 0; i < body.length; i++) {
      const bad = Buffer.from(body);
      bad[i] = (bad[i] ?? 0) ^ 0x01;
      integrityError(() => unprotect(cipher, aad, bad), 'icv');
    }
    for (let i = 0; i < aad.length; i++) {
      const badAad = Buffer.from(aad);
      badAad[i] = (badAad[i] ?? 0) ^ 0x80;
      integrityError(() => unprotect(cipher, badAad, body), 'icv');
    }
    integrityError(() => unprotect(cipher, aad, body.subarray(0, body.length - 1)));
    integrityError(() => unprotect(cipher, aad, Buffer.concat([body, Buffer.of(0)])));
    integrityError(() => unprotect(cipher, aad, body.subarray(0, cipher.ivLength + cipher.icvLength)), 'length');
  }
});

test('a wrong key fails the integrity check', () => {
  for (const alg of ALGORITHMS) {
    const body = protect(createSkCipher(alg, keysFor(alg, 'a')), Buffer.alloc(28), Buffer.from('x'));
    integrityError(() => unprotect(createSkCipher(alg, keysFor(alg, 'b')), Buffer.alloc(28), body), 'icv');
  }
});

test('receivers accept any padding that keeps the alignment, and reject a Pad Length beyond the data', () => {
  const keys = keysFor(CBC128_SHA256, 'pad');
  const cipher = createSkCipher(CBC128_SHA256, keys);
  const aad = Buffer.alloc(28, 7);
  const iv = Buffer.alloc(16, 9);
  // 3 inner octets + 28 padding octets + Pad Length 28 = 32 octets: legal, non-minimal.
  const inner = Buffer.from('abc');
  const padded = Buffer.concat([inner, Buffer.alloc(28, 0xee), Buffer.of(28)]);
  const sealed = cipher.seal(iv, aad, padded);
  assert.deepEqual(cipher.decrypt(iv, sealed.ciphertext, sealed.icv, aad), inner);
  // Authentic but Pad Length 32 > 31 available octets.
  const wrong = Buffer.concat([Buffer.alloc(31), Buffer.of(32)]);
  const sealedWrong = cipher.seal(iv, aad, wrong);
  integrityError(() => cipher.decrypt(iv, sealedWrong.ciphertext, sealedWrong.icv, aad), 'padding');
  // AEAD: block size 1, any Pad Length up to the data length works.
  const gcmAlg: SkAlgorithm = { encr: EncrId.AES_GCM_16, encrKeyBits: 128 };
  const gcm = createSkCipher(gcmAlg, keysFor(gcmAlg, 'pad'));
  const s = gcm.seal(Buffer.alloc(8), aad, Buffer.concat([inner, Buffer.alloc(5), Buffer.of(5)]));
  assert.deepEqual(gcm.decrypt(Buffer.alloc(8), s.ciphertext, s.icv, aad), inner);
});

test('AEAD IVs never repeat within one cipher; CBC IVs come from the random source', () => {
  const alg: SkAlgorithm = { encr: EncrId.AES_GCM_16, encrKeyBits: 256 };
  const cipher = createSkCipher(alg, keysFor(alg, 'iv'));
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) seen.add(cipher.encrypt(Buffer.of(i & 0xff), Buffer.alloc(28)).iv.toString('hex'));
  assert.equal(seen.size, 2000);
  const a = createSkCipher(CBC128_SHA256, keysFor(CBC128_SHA256, 'x'), deterministicRandom('same'));
  const b = createSkCipher(CBC128_SHA256, keysFor(CBC128_SHA256, 'x'), deterministicRandom('same'));
  const ea = a.encrypt(Buffer.from('hello'), Buffer.alloc(28));
  const eb = b.encrypt(Buffer.from('hello'), Buffer.alloc(28));
  assert.deepEqual(ea, eb);
  assert.deepEqual(ea.iv, deterministicRandom('same').bytes(16));
  assert.notDeepEqual(a.encrypt(Buffer.from('hello'), Buffer.alloc(28)).iv, ea.iv);
});

test('configuration errors are typed', () => {
  const none = Buffer.alloc(0);
  configError(() => createSkCipher({ encr: EncrId['3DES'], integ: IntegId.HMAC_SHA1_96 }, { encrKey: none, integKey: none }), 'unsupported');
  configError(() => skParameters({ encr: EncrId.AES_CBC, encrKeyBits: 128, integ: IntegId.AES_XCBC_96 }), 'unsupported');
  configError(() => skParameters({ encr: EncrId.AES_CBC, encrKeyBits: 128 }), 'bad-combination');
  configError(() => skParameters({ encr: EncrId.AES_GCM_16, encrKeyBits: 128, integ: IntegId.HMAC_SHA2_256_128 }), 'bad-combination');
  configError(() => skParameters({ encr: EncrId.AES_CBC, integ: IntegId.HMAC_SHA2_256_128 }), 'bad-key-length');
  configError(() => skParameters({ encr: EncrId.AES_CBC, encrKeyBits: 64, integ: IntegId.HMAC_SHA2_256_128 }), 'bad-key-length');
  configError(() => skParameters({ encr: EncrId.CHACHA20_POLY1305, encrKeyBits: 128 }), 'bad-key-length');
  configError(() => createSkCipher(CBC128_SHA256, { encrKey: Buffer.alloc(16), integKey: Buffer.alloc(20) }), 'bad-key-length');
  configError(() => createSkCipher({ encr: EncrId.AES_GCM_16, encrKeyBits: 128 }, { encrKey: Buffer.alloc(16), integKey: none }), 'bad-key-length');
  const cipher = createSkCipher(CBC128_SHA256, keysFor(CBC128_SHA256, 'c'));
  configError(() => cipher.encrypt(Buffer.from('x'), Buffer.alloc(28), Buffer.alloc(8)), 'bad-iv');
  configError(() => cipher.seal(Buffer.alloc(16), Buffer.alloc(28), Buffer.alloc(15)), 'not-aligned');
});
