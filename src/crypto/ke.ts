/**
 * Key exchange methods (transform type 4) by KeId: the KE payload's
 * "Key Exchange Data" and the shared secret g^ir that feeds SKEYSEED.
 *
 * Encodings follow the RFCs that put each group into IKEv2, not node's
 * defaults:
 *  - MODP (RFC 3526): big-endian, left-padded with zeros to the modulus length,
 *    both the public value and the shared secret (RFC 7296 Section 3.4).
 *  - ECP (RFC 5903): public value is x | y without SEC1's 0x04 prefix, each
 *    coordinate padded to the field size; the shared secret is the x
 *    coordinate only.
 *  - Curve25519/Curve448 (RFC 8031): the raw 32/56-octet u-coordinate; an
 *    all-zero shared secret (a low-order peer point) MUST be rejected.
 *
 * Peer values are hostile input: every check RFC 6989 asks for is done here
 * and reported as a KeyExchangeError that the engine maps to
 * INVALID_SYNTAX / INVALID_KE_PAYLOAD as the exchange requires.
 */
import {
  createDiffieHellman,
  createECDH,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  getDiffieHellman,
  type KeyObject,
} from 'node:crypto';
import { KeId, nameOf } from '../wire/iana.ts';

export type KeyExchangeErrorKind =
  /** A KE method this project does not support. */
  | 'unsupported'
  /** Peer public value (or an imported private key) has the wrong size. */
  | 'bad-length'
  /** MODP peer value outside [2, p-2]. */
  | 'out-of-range'
  /** ECP peer value is not a point on the curve. */
  | 'not-on-curve'
  /** X25519/X448 produced the all-zero secret (low-order peer point). */
  | 'zero-secret'
  /** A caller-supplied private key the group cannot use. */
  | 'bad-private-key';

export class KeyExchangeError extends Error {
  override readonly name = 'KeyExchangeError';
  constructor(
    readonly kind: KeyExchangeErrorKind,
    readonly keId: number,
    detail: string,
  ) {
    super(`${nameOf(KeId, keId, 'KE')}: ${detail}`);
  }
}

export interface KeyExchange {
  readonly id: number;
  /** Octets for the KE payload's Key Exchange Data field. */
  readonly publicValue: Buffer;
  /** g^ir from the peer's Key Exchange Data; throws KeyExchangeError on bad input. */
  computeSecret(peerPublic: Uint8Array): Buffer;
}

export interface KeyExchangeOptions {
  /**
   * Use this private key instead of a fresh one. For known-answer tests and
   * deterministic simulation only; a real exchange always generates its own.
   * MODP: big-endian exponent; ECP: big-endian scalar; X25519/X448: raw octets.
   */
  privateKey?: Uint8Array;
}

type Family = 'modp' | 'ecp' | 'montgomery';

interface KeMethod {
  readonly family: Family;
  /** node name: 'modp14' | curve name | 'x25519'/'x448'. */
  readonly nodeName: string;
  readonly publicLength: number;
}

const METHODS: ReadonlyMap<number, KeMethod> = new Map([
  [KeId.MODP_2048, { family: 'modp', nodeName: 'modp14', publicLength: 256 }],
  [KeId.MODP_3072, { family: 'modp', nodeName: 'modp15', publicLength: 384 }],
  [KeId.MODP_4096, { family: 'modp', nodeName: 'modp16', publicLength: 512 }],
  [KeId.ECP_256, { family: 'ecp', nodeName: 'prime256v1', publicLength: 64 }],
  [KeId.ECP_384, { family: 'ecp', nodeName: 'secp384r1', publicLength: 96 }],
  [KeId.ECP_521, { family: 'ecp', nodeName: 'secp521r1', publicLength: 132 }],
  [KeId.CURVE25519, { family: 'montgomery', nodeName: 'x25519', publicLength: 32 }],
  [KeId.CURVE448, { family: 'montgomery', nodeName: 'x448', publicLength: 56 }],
]);

function method(id: number): KeMethod {
  const m = METHODS.get(id);
  if (!m) throw new KeyExchangeError('unsupported', id, 'key exchange method not supported');
  return m;
}

export function isSupportedKe(id: number): boolean {
  return METHODS.has(id);
}

/** Length in octets of the Key Exchange Data for `id` (what a KE payload must carry). */
export function keLength(id: number): number {
  return method(id).publicLength;
}

/** Length in octets of the shared secret g^ir for `id`. */
export function keSecretLength(id: number): number {
  const m = method(id);
  return m.family === 'ecp' ? m.publicLength / 2 : m.publicLength;
}

export function createKeyExchange(id: number, options: KeyExchangeOptions = {}): KeyExchange {
  const m = method(id);
  switch (m.family) {
    case 'modp':
      return modpExchange(id, m, options.privateKey);
    case 'ecp':
      return ecpExchange(id, m, options.privateKey);
    case 'montgomery':
      return montgomeryExchange(id, m, options.privateKey);
  }
}

/** Left-pads a big-endian integer to `length` octets (node strips leading zeros). */
function leftPad(value: Buffer, length: number): Buffer {
  if (value.length === length) return value;
  if (value.length > length) throw new RangeError('value longer than its field');
  const out = Buffer.alloc(length);
  value.copy(out, length - value.length);
  return out;
}

function checkLength(id: number, m: KeMethod, peer: Uint8Array): void {
  if (peer.length !== m.publicLength) {
    throw new KeyExchangeError(
      'bad-length',
      id,
      `Key Exchange Data is ${peer.length} octets, expected ${m.publicLength}`,
    );
  }
}

function modpExchange(id: number, m: KeMethod, privateKey: Uint8Array | undefined): KeyExchange {
  // The RFC 3526 prime from node's built-in table; createDiffieHellman (not the
  // group object) so that a private key can be imported for known-answer tests.
  const prime = getDiffieHellman(m.nodeName).getPrime();
  const p = BigInt('0x' + prime.toString('hex'));
  const dh = createDiffieHellman(prime, Buffer.from([2]));
  if (privateKey) {
    const x = BigInt('0x' + (Buffer.from(privateKey).toString('hex') || '0'));
    if (x < 2n || x > p - 2n) throw new KeyExchangeError('bad-private-key', id, 'exponent out of range');
    dh.setPrivateKey(Buffer.from(privateKey));
  }
  const publicValue = leftPad(dh.generateKeys(), m.publicLength);
  return {
    id,
    publicValue,
    computeSecret(peerPublic: Uint8Array): Buffer {
      checkLength(id, m, peerPublic);
      // RFC 6989 Section 2.1: 1 < y < p-1 rules out the trivial subgroups
      // {1} and {1, p-1}; the groups are safe primes, so that suffices.
      const y = BigInt('0x' + Buffer.from(peerPublic).toString('hex'));
      if (y < 2n || y > p - 2n) {
        throw new KeyExchangeError('out-of-range', id, 'peer public value not in [2, p-2]');
      }
      return leftPad(dh.computeSecret(Buffer.from(peerPublic)), m.publicLength);
    },
  };
}

function ecpExchange(id: number, m: KeMethod, privateKey: Uint8Array | undefined): KeyExchange {
  const ecdh = createECDH(m.nodeName);
  if (privateKey) {
    try {
      ecdh.setPrivateKey(Buffer.from(privateKey));
    } catch {
      throw new KeyExchangeError('bad-private-key', id, 'scalar not valid for the curve');
    }
  } else {
    ecdh.generateKeys();
  }
  // SEC1 uncompressed is 0x04 | x | y; IKEv2 drops the prefix (RFC 5903 Section 7).
  const publicValue = ecdh.getPublicKey(null, 'uncompressed').subarray(1);
  const coordLength = m.publicLength / 2;
  return {
    id,
    publicValue: Buffer.from(publicValue),
    computeSecret(peerPublic: Uint8Array): Buffer {
      checkLength(id, m, peerPublic);
      const sec1 = Buffer.concat([Buffer.of(0x04), peerPublic]);
      let secret: Buffer;
      try {
        // OpenSSL's point decoding rejects coordinates >= p and points off the
        // curve (the RFC 6989 Section 2.3 checks); the identity has no x|y form.
        secret = ecdh.computeSecret(sec1);
      } catch {
        throw new KeyExchangeError('not-on-curve', id, 'peer public value is not a point on the curve');
      }
      return leftPad(secret, coordLength);
    },
  };
}

/** The JWK curve names (RFC 8037) of the Montgomery curves. */
const MONTGOMERY_JWK_CURVE: Readonly<Record<string, 'X25519' | 'X448'>> = { x25519: 'X25519', x448: 'X448' };

/** PKCS#8 prefix that wraps a raw X25519/X448 private key (RFC 8410), for known-answer tests only. */
const MONTGOMERY_PKCS8: Readonly<Record<string, string>> = {
  x25519: '302e020100300506032b656e04220420',
  x448: '3046020100300506032b656f043a0438',
};

/*
 * Raw keys cross into and out of node as JWK ({kty: 'OKP', crv, x}, RFC 8037),
 * not SPKI DER: with OpenSSL 3 the DER encoder and decoder cost ~100 µs each
 * per call, more than the X25519 scalar multiplication itself, while the JWK
 * form maps to the raw-key calls (EVP_PKEY_new_raw_public_key / get_raw).
 */
function montgomeryExchange(id: number, m: KeMethod, privateKey: Uint8Array | undefined): KeyExchange {
  const crv = MONTGOMERY_JWK_CURVE[m.nodeName];
  const pkcs8 = MONTGOMERY_PKCS8[m.nodeName];
  if (!crv || !pkcs8) throw new KeyExchangeError('unsupported', id, 'no key template');
  let priv: KeyObject;
  let pub: KeyObject;
  if (privateKey) {
    if (privateKey.length !== m.publicLength) {
      throw new KeyExchangeError('bad-private-key', id, `private key must be ${m.publicLength} octets`);
    }
    priv = createPrivateKey({
      key: Buffer.concat([Buffer.from(pkcs8, 'hex'), privateKey]),
      format: 'der',
      type: 'pkcs8',
    });
    pub = createPublicKey(priv);
  } else {
    const pair =
      m.nodeName === 'x25519' ? generateKeyPairSync('x25519') : generateKeyPairSync('x448');
    priv = pair.privateKey;
    pub = pair.publicKey;
  }
  const publicValue = Buffer.from(pub.export({ format: 'jwk' }).x ?? '', 'base64url');
  if (publicValue.length !== m.publicLength) throw new KeyExchangeError('bad-private-key', id, 'unexpected public key size');
  return {
    id,
    publicValue,
    computeSecret(peerPublic: Uint8Array): Buffer {
      checkLength(id, m, peerPublic);
      const x = Buffer.from(peerPublic.buffer, peerPublic.byteOffset, peerPublic.byteLength).toString('base64url');
      const peer = createPublicKey({ key: { kty: 'OKP', crv, x }, format: 'jwk' });
      let secret: Buffer;
      try {
        secret = diffieHellman({ privateKey: priv, publicKey: peer });
      } catch {
        // OpenSSL refuses to return the all-zero result itself.
        throw new KeyExchangeError('zero-secret', id, 'shared secret is all zero (low-order peer point)');
      }
      if (secret.every((b) => b === 0)) {
        throw new KeyExchangeError('zero-secret', id, 'shared secret is all zero (low-order peer point)');
      }
      return secret;
    },
  };
}
