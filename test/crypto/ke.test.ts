import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getDiffieHellman } from 'node:crypto';
import { KeId } from '../../src/wire/iana.ts';
import {
  KeyExchangeError,
  createKeyExchange,
  isSupportedKe,
  keLength,
  keSecretLength,
  type KeyExchangeErrorKind,
} from '../../src/crypto/ke.ts';

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function rejects(fn: () => unknown, kind: KeyExchangeErrorKind): void {
  assert.throws(fn, (e: unknown) => e instanceof KeyExchangeError && e.kind === kind);
}

// RFC 5903 Section 8.1-8.3: i, g^i = (gix, giy), r, g^r = (grx, gry), g^ir x-coordinate.
const RFC5903 = [
  {
    id: KeId.ECP_256,
    i: 'c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433',
    gix: 'dad0b65394221cf9b051e1feca5787d098dfe637fc90b9ef945d0c3772581180',
    giy: '5271a0461cdb8252d61f1c456fa3e59ab1f45b33accf5f58389e0577b8990bb3',
    r: 'c6ef9c5d78ae012a011164acb397ce2088685d8f06bf9be0b283ab46476bee53',
    grx: 'd12dfb5289c8d4f81208b70270398c342296970a0bccb74c736fc7554494bf63',
    gry: '56fbf3ca366cc23e8157854c13c58d6aac23f046ada30f8353e74f33039872ab',
    girx: 'd6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de',
  },
  {
    id: KeId.ECP_384,
    i: '099f3c7034d4a2c699884d73a375a67f7624ef7c6b3c0f160647b67414dce655e35b538041e649ee3faef896783ab194',
    gix: '667842d7d180ac2cde6f74f37551f55755c7645c20ef73e31634fe72b4c55ee6de3ac808acb4bdb4c88732aee95f41aa',
    giy: '9482ed1fc0eeb9cafc4984625ccfc23f65032149e0e144ada024181535a0f38eeb9fcff3c2c947dae69b4c634573a81c',
    r: '41cb0779b4bdb85d47846725fbec3c9430fab46cc8dc5060855cc9bda0aa2942e0308312916b8ed2960e4bd55a7448fc',
    grx: 'e558dbef53eecde3d3fccfc1aea08a89a987475d12fd950d83cfa41732bc509d0d1ac43a0336def96fda41d0774a3571',
    gry: 'dcfbec7aacf3196472169e838430367f66eebe3c6e70c416dd5f0c68759dd1fff83fa40142209dff5eaad96db9e6386c',
    girx: '11187331c279962d93d604243fd592cb9d0a926f422e47187521287e7156c5c4d603135569b9e9d09cf5d4a270f59746',
  },
  {
    id: KeId.ECP_521,
    i: '0037ade9319a89f4dabdb3ef411aaccca5123c61acab57b5393dce47608172a095aa85a30fe1c2952c6771d937ba9777f5957b2639bab072462f68c27a57382d4a52',
    gix: '0015417e84dbf28c0ad3c278713349dc7df153c897a1891bd98bab4357c9ecbee1e3bf42e00b8e380aeae57c2d107564941885942af5a7f4601723c4195d176ced3e',
    giy: '017cae20b6641d2eeb695786d8c946146239d099e18e1d5a514c739d7cb4a10ad8a788015ac405d7799dc75e7b7d5b6cf2261a6a7f1507438bf01beb6ca3926f9582',
    r: '0145ba99a847af43793fdd0e872e7cdfa16be30fdc780f97bccc3f078380201e9c677d600b343757a3bdbf2a3163e4c2f869cca7458aa4a4effc311f5cb151685eb9',
    grx: '00d0b3975ac4b799f5bea16d5e13e9af971d5e9b984c9f39728b5e5739735a219b97c356436adc6e95bb0352f6be64a6c2912d4ef2d0433ced2b6171640012d9460f',
    gry: '015c68226383956e3bd066e797b623c27ce0eac2f551a10c2c724d9852077b87220b6536c5c408a1d2aebb8e86d678ae49cb57091f4732296579ab44fcd17f0fc56a',
    girx: '01144c7d79ae6956bc8edb8e7c787c4521cb086fa64407f97894e5e6b2d79b04d1427e73ca4baa240a34786859810c06b3c715a3a8cc3151f2bee417996d19f3ddea',
  },
];

for (const v of RFC5903) {
  test(`RFC 5903 vector for ECP group ${v.id}: x|y public values and x-only shared secret`, () => {
    const initiator = createKeyExchange(v.id, { privateKey: h(v.i) });
    const responder = createKeyExchange(v.id, { privateKey: h(v.r) });
    assert.equal(initiator.publicValue.toString('hex'), v.gix + v.giy);
    assert.equal(responder.publicValue.toString('hex'), v.grx + v.gry);
    assert.equal(initiator.publicValue.length, keLength(v.id));
    assert.equal(initiator.computeSecret(h(v.grx + v.gry)).toString('hex'), v.girx);
    assert.equal(responder.computeSecret(h(v.gix + v.giy)).toString('hex'), v.girx);
    assert.equal(keSecretLength(v.id), h(v.girx).length);
  });
}

test('RFC 7748 Section 6.1: X25519 Diffie-Hellman', () => {
  const alice = createKeyExchange(KeId.CURVE25519, {
    privateKey: h('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'),
  });
  const bob = createKeyExchange(KeId.CURVE25519, {
    privateKey: h('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'),
  });
  assert.equal(alice.publicValue.toString('hex'), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
  assert.equal(bob.publicValue.toString('hex'), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
  const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
  assert.equal(alice.computeSecret(bob.publicValue).toString('hex'), shared);
  assert.equal(bob.computeSecret(alice.publicValue).toString('hex'), shared);
});

test('RFC 7748 Section 6.2: X448 Diffie-Hellman', () => {
  const alice = createKeyExchange(KeId.CURVE448, {
    privateKey: h(
      '9a8f4925d1519f5775cf46b04b5800d4ee9ee8bae8bc5565d498c28dd9c9baf574a9419744897391006382a6f127ab1d9ac2d8c0a598726b',
    ),
  });
  const bob = createKeyExchange(KeId.CURVE448, {
    privateKey: h(
      '1c306a7ac2a0e2e0990b294470cba339e6453772b075811d8fad0d1d6927c120bb5ee8972b0d3e21374c9c921b09d1b0366f10b65173992d',
    ),
  });
  assert.equal(
    alice.publicValue.toString('hex'),
    '9b08f7cc31b7e3e67d22d5aea121074a273bd2b83de09c63faa73d2c22c5d9bbc836647241d953d40c5b12da88120d53177f80e532c41fa0',
  );
  assert.equal(
    bob.publicValue.toString('hex'),
    '3eb7a829b0cd20f5bcfc0b599b6feccf6da4627107bdb0d4f345b43027d8b972fc3e34fb4232a13ca706dcb57aec3dae07bdc1c67bf33609',
  );
  const shared =
    '07fff4181ac6cc95ec1c16a94a0f74d12da232ce40a77552281d282bb60c0b56fd2464c335543936521c24403085d59a449a5037514a879d';
  assert.equal(alice.computeSecret(bob.publicValue).toString('hex'), shared);
  assert.equal(bob.computeSecret(alice.publicValue).toString('hex'), shared);
});

const ALL = [
  KeId.MODP_2048,
  KeId.MODP_3072,
  KeId.MODP_4096,
  KeId.ECP_256,
  KeId.ECP_384,
  KeId.ECP_521,
  KeId.CURVE25519,
  KeId.CURVE448,
];
const LENGTHS = [256, 384, 512, 64, 96, 132, 32, 56];

test('every supported method: fresh key pairs agree and have the RFC lengths', () => {
  ALL.forEach((id, n) => {
    assert.equal(isSupportedKe(id), true);
    assert.equal(keLength(id), LENGTHS[n]);
    const a = createKeyExchange(id);
    const b = createKeyExchange(id);
    assert.equal(a.id, id);
    assert.equal(a.publicValue.length, keLength(id));
    const s1 = a.computeSecret(b.publicValue);
    const s2 = b.computeSecret(a.publicValue);
    assert.deepEqual(s1, s2);
    assert.equal(s1.length, keSecretLength(id));
    assert.notDeepEqual(a.publicValue, b.publicValue);
  });
});

test('unsupported methods are refused with a typed error', () => {
  assert.equal(isSupportedKe(KeId.MODP_1024), false);
  rejects(() => createKeyExchange(KeId.MODP_1024), 'unsupported');
  rejects(() => keLength(KeId.ML_KEM_768), 'unsupported');
});

test('MODP values are left-padded to the modulus: g^2 and g^(2*2) with x = 2', () => {
  // With private exponent 2 the public value is 2^2 = 4 and the secret with
  // a peer value of 4 is 4^2 = 16: small numbers that must still fill 256 octets.
  const ke = createKeyExchange(KeId.MODP_2048, { privateKey: h('02') });
  const four = Buffer.alloc(256);
  four[255] = 4;
  assert.deepEqual(ke.publicValue, four);
  const sixteen = Buffer.alloc(256);
  sixteen[255] = 16;
  assert.deepEqual(ke.computeSecret(four), sixteen);
});

test('MODP peer values outside [2, p-2] and of the wrong length are rejected', () => {
  const p = getDiffieHellman('modp14').getPrime();
  const pBig = BigInt('0x' + p.toString('hex'));
  const enc = (v: bigint): Buffer => Buffer.from(v.toString(16).padStart(512, '0'), 'hex');
  const ke = createKeyExchange(KeId.MODP_2048);
  for (const bad of [0n, 1n, pBig - 1n, pBig, (1n << 2048n) - 1n]) rejects(() => ke.computeSecret(enc(bad)), 'out-of-range');
  assert.equal(ke.computeSecret(enc(2n)).length, 256);
  assert.equal(ke.computeSecret(enc(pBig - 2n)).length, 256);
  rejects(() => ke.computeSecret(Buffer.alloc(255, 1)), 'bad-length');
  rejects(() => ke.computeSecret(Buffer.alloc(257, 1)), 'bad-length');
});

test('ECP peer values off the curve or of the wrong length are rejected', () => {
  for (const id of [KeId.ECP_256, KeId.ECP_384, KeId.ECP_521]) {
    const ke = createKeyExchange(id);
    const peer = Buffer.from(createKeyExchange(id).publicValue);
    const last = peer.length - 1;
    peer[last] = (peer[last] ?? 0) ^ 1; // y changed: almost surely off the curve
    rejects(() => ke.computeSecret(peer), 'not-on-curve');
    rejects(() => ke.computeSecret(Buffer.alloc(keLength(id))), 'not-on-curve');
    rejects(() => ke.computeSecret(Buffer.alloc(keLength(id), 0xff)), 'not-on-curve');
    rejects(() => ke.computeSecret(Buffer.concat([Buffer.of(4), ke.publicValue])), 'bad-length');
  }
});

test('X25519/X448 low-order peer points yield the all-zero secret and are rejected (RFC 8031)', () => {
  for (const id of [KeId.CURVE25519, KeId.CURVE448]) {
    const ke = createKeyExchange(id);
    const zero = Buffer.alloc(keLength(id));
    const one = Buffer.alloc(keLength(id));
    one[0] = 1; // u = 1, little-endian
    rejects(() => ke.computeSecret(zero), 'zero-secret');
    rejects(() => ke.computeSecret(one), 'zero-secret');
    rejects(() => ke.computeSecret(Buffer.alloc(keLength(id) + 1)), 'bad-length');
  }
});

test('bad imported private keys are refused', () => {
  rejects(() => createKeyExchange(KeId.CURVE25519, { privateKey: Buffer.alloc(31) }), 'bad-private-key');
  rejects(() => createKeyExchange(KeId.ECP_256, { privateKey: Buffer.alloc(32) }), 'bad-private-key');
  rejects(() => createKeyExchange(KeId.MODP_2048, { privateKey: h('01') }), 'bad-private-key');
});

test('key exchange objects carry no private key material as properties', () => {
  // The private key lives in a closure; inspecting or serialising the object
  // (e.g. in a log line) can only ever show the id and the public value.
  for (const id of ALL) {
    const ke = createKeyExchange(id);
    assert.deepEqual(Object.keys(ke).sort(), ['computeSecret', 'id', 'publicValue']);
  }
});
