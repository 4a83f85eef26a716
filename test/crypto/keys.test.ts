import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { EncrId, IntegId, KwaId, PrfId } from '../../src/wire/iana.ts';
import {
  GSK_W_LABEL,
  KeyDerivationError,
  deriveChildKeymat,
  deriveGskW,
  deriveIkeKeys,
  deriveRekeyedIkeKeys,
  ikeKeyLengths,
  rekeySaKeymatLength,
  rekeySaSkKeys,
  skKeysFor,
  splitRekeySaKeys,
  type IkeKeyInput,
} from '../../src/crypto/keys.ts';
import { createSkCipher, protect, unprotect } from '../../src/crypto/cipher.ts';
import { deterministicRandom } from '../../src/crypto/random.ts';

const rng = deterministicRandom('keys.test');
const NI = rng.bytes(32);
const NR = rng.bytes(32);
const GIR = rng.bytes(256);
const SPI_I = Buffer.from('0011223344556677', 'hex');
const SPI_R = Buffer.from('8899aabbccddeeff', 'hex');

/** RFC 7296 2.13 prf+ written out with raw HMAC, independently of src/crypto/prf.ts. */
function prfPlusByHand(hash: string, key: Buffer, seed: Buffer, length: number): Buffer {
  let out = Buffer.alloc(0);
  let t = Buffer.alloc(0);
  for (let n = 1; out.length < length; n++) {
    t = createHmac(hash, key).update(t).update(seed).update(Buffer.of(n)).digest();
    out = Buffer.concat([out, t]);
  }
  return out.subarray(0, length);
}

function input(over: Partial<IkeKeyInput> & Pick<IkeKeyInput, 'prf' | 'encr'>): IkeKeyInput {
  return { ni: NI, nr: NR, sharedSecret: GIR, spiI: SPI_I, spiR: SPI_R, ...over };
}

const CASES = [
  {
    name: 'AES-CBC-256 / HMAC-SHA2-256-128 / PRF-HMAC-SHA2-256',
    alg: { prf: PrfId.HMAC_SHA2_256, encr: EncrId.AES_CBC, encrKeyBits: 256, integ: IntegId.HMAC_SHA2_256_128 },
    hash: 'sha256',
    lengths: { d: 32, a: 32, e: 32 },
  },
  {
    name: 'AES-CBC-128 / HMAC-SHA1-96 / PRF-HMAC-SHA1',
    alg: { prf: PrfId.HMAC_SHA1, encr: EncrId.AES_CBC, encrKeyBits: 128, integ: IntegId.HMAC_SHA1_96 },
    hash: 'sha1',
    lengths: { d: 20, a: 20, e: 16 },
  },
  {
    name: 'AES-GCM-16-256 / PRF-HMAC-SHA2-384 (key + 4-octet salt, no SK_a)',
    alg: { prf: PrfId.HMAC_SHA2_384, encr: EncrId.AES_GCM_16, encrKeyBits: 256 },
    hash: 'sha384',
    lengths: { d: 48, a: 0, e: 36 },
  },
  {
    name: 'ChaCha20-Poly1305 / PRF-HMAC-SHA2-512 (32 + 4-octet salt)',
    alg: { prf: PrfId.HMAC_SHA2_512, encr: EncrId.CHACHA20_POLY1305, integ: IntegId.NONE },
    hash: 'sha512',
    lengths: { d: 64, a: 0, e: 36 },
  },
];

for (const c of CASES) {
  test(`IKE SA keys, ${c.name}: SKEYSEED and the SK_* slicing order match a by-hand derivation`, () => {
    const keys = deriveIkeKeys(input(c.alg));
    const skeyseed = createHmac(c.hash, Buffer.concat([NI, NR])).update(GIR).digest();
    assert.deepEqual(keys.skeyseed, skeyseed);
    const { d, a, e } = c.lengths;
    const total = 3 * d + 2 * a + 2 * e;
    assert.equal(ikeKeyLengths(c.alg).total, total);
    const stream = prfPlusByHand(c.hash, skeyseed, Buffer.concat([NI, NR, SPI_I, SPI_R]), total);
    let off = 0;
    const next = (n: number): Buffer => stream.subarray(off, (off += n));
    assert.deepEqual(keys.skD, next(d));
    assert.deepEqual(keys.skAi, next(a));
    assert.deepEqual(keys.skAr, next(a));
    assert.deepEqual(keys.skEi, next(e));
    assert.deepEqual(keys.skEr, next(e));
    assert.deepEqual(keys.skPi, next(d));
    assert.deepEqual(keys.skPr, next(d));
    assert.equal(off, total);
  });
}

test('the derived keys drive the SK cipher in each direction', () => {
  const alg = { prf: PrfId.HMAC_SHA2_256, encr: EncrId.AES_GCM_16, encrKeyBits: 128 };
  const keys = deriveIkeKeys(input(alg));
  const fromInitiator = createSkCipher(alg, skKeysFor(keys, 'initiator'));
  const atResponder = createSkCipher(alg, skKeysFor(keys, 'initiator'));
  const wrongDirection = createSkCipher(alg, skKeysFor(keys, 'responder'));
  const body = protect(fromInitiator, Buffer.alloc(32), Buffer.from('IDi AUTH'));
  assert.deepEqual(unprotect(atResponder, Buffer.alloc(32), body), Buffer.from('IDi AUTH'));
  assert.throws(() => unprotect(wrongDirection, Buffer.alloc(32), body));
});

test('IKE SA rekey: SKEYSEED = prf_old(SK_d old, g^ir new | Ni | Nr), then prf+ with the new PRF', () => {
  const oldKeys = deriveIkeKeys(input({ prf: PrfId.HMAC_SHA2_256, encr: EncrId.AES_GCM_16, encrKeyBits: 256 }));
  const newNi = rng.bytes(32);
  const newNr = rng.bytes(48);
  const newGir = rng.bytes(32);
  const newSpiI = rng.bytes(8);
  const newSpiR = rng.bytes(8);
  const alg = { prf: PrfId.HMAC_SHA2_512, encr: EncrId.AES_CBC, encrKeyBits: 256, integ: IntegId.HMAC_SHA2_512_256 };
  const keys = deriveRekeyedIkeKeys({
    ...alg,
    oldPrf: PrfId.HMAC_SHA2_256,
    oldSkD: oldKeys.skD,
    ni: newNi,
    nr: newNr,
    sharedSecret: newGir,
    spiI: newSpiI,
    spiR: newSpiR,
  });
  const skeyseed = createHmac('sha256', oldKeys.skD).update(Buffer.concat([newGir, newNi, newNr])).digest();
  assert.deepEqual(keys.skeyseed, skeyseed);
  const stream = prfPlusByHand('sha512', skeyseed, Buffer.concat([newNi, newNr, newSpiI, newSpiR]), 64);
  assert.deepEqual(keys.skD, stream);
  assert.equal(keys.skAi.length, 64);
  assert.equal(keys.skEr.length, 32);
  assert.equal(keys.skPr.length, 64);
});

test('GSK_w = prf+(SK_d, "Key Wrap for G-IKEv2"), label of 20 octets without NUL', () => {
  assert.equal(GSK_W_LABEL.length, 20);
  assert.equal(GSK_W_LABEL.toString('ascii'), 'Key Wrap for G-IKEv2');
  const skD = rng.bytes(32);
  for (const len of [16, 24, 32, 80]) {
    assert.deepEqual(
      deriveGskW(PrfId.HMAC_SHA2_256, skD, len),
      prfPlusByHand('sha256', skD, Buffer.from('Key Wrap for G-IKEv2'), len),
    );
  }
  // With a trailing NUL the key would differ: guard against a C-string habit.
  assert.notDeepEqual(
    deriveGskW(PrfId.HMAC_SHA2_256, skD, 32),
    prfPlusByHand('sha256', skD, Buffer.from('Key Wrap for G-IKEv2\0'), 32),
  );
});

test('Child SA KEYMAT = prf+(SK_d, [g^ir |] Ni | Nr)', () => {
  const skD = rng.bytes(48);
  assert.deepEqual(
    deriveChildKeymat(PrfId.HMAC_SHA2_384, skD, NI, NR, 100),
    prfPlusByHand('sha384', skD, Buffer.concat([NI, NR]), 100),
  );
  assert.deepEqual(
    deriveChildKeymat(PrfId.HMAC_SHA2_384, skD, NI, NR, 100, GIR),
    prfPlusByHand('sha384', skD, Buffer.concat([GIR, NI, NR]), 100),
  );
});

test('Rekey SA keys: GSK_e | GSK_a | GSK_w = KEYMAT, GSK_a empty with an AEAD (RFC 9838 3.4)', () => {
  const aead = { encr: EncrId.AES_GCM_16, encrKeyBits: 256, kwa: KwaId.KW_ARX };
  assert.equal(rekeySaKeymatLength(aead), 36 + 0 + 32);
  const km = rng.bytes(68);
  const k = splitRekeySaKeys(km, aead);
  assert.deepEqual(k.gskE, km.subarray(0, 36));
  assert.equal(k.gskA.length, 0);
  assert.deepEqual(k.gskW, km.subarray(36));
  const c = createSkCipher(aead, rekeySaSkKeys(k));
  assert.equal(c.encrKeyLength, 36);

  const cbc = { encr: EncrId.AES_CBC, encrKeyBits: 128, integ: IntegId.HMAC_SHA2_256_128, kwa: KwaId.KW_5649_128 };
  assert.equal(rekeySaKeymatLength(cbc), 16 + 32 + 16);
  const km2 = rng.bytes(64);
  const k2 = splitRekeySaKeys(km2, cbc);
  assert.deepEqual(k2.gskE, km2.subarray(0, 16));
  assert.deepEqual(k2.gskA, km2.subarray(16, 48));
  assert.deepEqual(k2.gskW, km2.subarray(48));

  // RFC 9838 4.5.2.1: the keying material MUST be exactly the size needed.
  for (const n of [63, 65]) {
    assert.throws(
      () => splitRekeySaKeys(rng.bytes(n), cbc),
      (e: unknown) => e instanceof KeyDerivationError && e.kind === 'bad-keymat-length',
    );
  }
});

test('bad inputs are rejected with typed errors', () => {
  const alg = { prf: PrfId.HMAC_SHA2_256, encr: EncrId.AES_GCM_16, encrKeyBits: 128 };
  assert.throws(
    () => deriveIkeKeys(input({ ...alg, spiI: Buffer.alloc(4) })),
    (e: unknown) => e instanceof KeyDerivationError && e.kind === 'bad-spi',
  );
  assert.throws(
    () => ikeKeyLengths({ ...alg, integ: IntegId.HMAC_SHA2_256_128 }),
    (e: unknown) => e instanceof KeyDerivationError && e.kind === 'bad-combination',
  );
  assert.throws(
    () => ikeKeyLengths({ prf: PrfId.HMAC_SHA2_256, encr: EncrId.AES_CBC, encrKeyBits: 128 }),
    (e: unknown) => e instanceof KeyDerivationError && e.kind === 'bad-combination',
  );
});
