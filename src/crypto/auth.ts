/**
 * The IKEv2 AUTH payload computation (RFC 7296 2.15) and the RFC 7427
 * Authentication Data layout, plus the signing helper G-IKEv2 uses for
 * GSA_REKEY messages (RFC 9838 2.4.1.1).
 *
 * The PRF is passed in as a function so this module does not depend on how
 * the negotiated PRF is implemented; the wire codec carries the AUTH payload
 * as { method, data } and this module produces and consumes `data`.
 */
import { timingSafeEqual, type KeyObject } from 'node:crypto';
import { AuthMethod, nameOf } from '../wire/iana.ts';
import { Asn1Error, parseDer } from './asn1.ts';
import {
  SignatureError,
  encodeAlgorithmIdentifier,
  isLegacySignatureMethod,
  parseAlgorithmIdentifier,
  signLegacy,
  signWithAlgorithm,
  signatureAlgorithmName,
  verifyLegacy,
  verifyWithAlgorithm,
  type SignatureAlgorithm,
} from './signature.ts';

/** prf(key, data) of the negotiated PRF transform. */
export type Prf = (key: Buffer, data: Buffer) => Buffer;

export type AuthErrorKind =
  /** The MIC or signature does not match: send AUTHENTICATION_FAILED. */
  | 'auth-failed'
  /** An auth method we do not implement (or not with this credential). */
  | 'unsupported-method'
  /** The key or secret cannot be used with the method/algorithm. */
  | 'key-mismatch'
  /** The algorithm parses but local policy does not accept it. */
  | 'algorithm-not-allowed'
  /** Authentication Data that does not parse. */
  | 'malformed';

export class AuthError extends Error {
  override readonly name = 'AuthError';
  constructor(
    readonly kind: AuthErrorKind,
    readonly detail: string,
  ) {
    super(`${kind}: ${detail}`);
  }
}

/** RFC 7296 2.15: the 17 ASCII octets "Key Pad for IKEv2", no terminating NUL. */
export const KEY_PAD_FOR_IKEV2: Buffer = Buffer.from('Key Pad for IKEv2', 'ascii');

function buf(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/**
 * RestOfInitIDPayload / RestOfRespIDPayload: the ID payload body without its
 * generic header, i.e. ID Type | three RESERVED octets | Identification Data.
 */
export function restOfIdPayload(idType: number, idData: Uint8Array): Buffer {
  if (!Number.isInteger(idType) || idType < 0 || idType > 255) throw new RangeError(`ID type ${idType} is not one octet`);
  return Buffer.concat([Buffer.from([idType, 0, 0, 0]), idData]);
}

export interface SignedOctetsInput {
  /**
   * The whole first message this party sent (IKE_SA_INIT request for the
   * initiator, response for the responder), exactly as sent, from the IKE
   * header on; without the four zero octets of a port-4500 non-ESP marker.
   */
  readonly realMessage: Uint8Array;
  /** The peer's nonce data (Nr when the initiator signs, Ni when the responder signs). */
  readonly peerNonce: Uint8Array;
  /** This party's ID payload body: see restOfIdPayload. */
  readonly idPayloadBody: Uint8Array;
  /** SK_pi for the initiator, SK_pr for the responder. */
  readonly skP: Uint8Array;
  readonly prf: Prf;
}

/**
 * InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI, with
 * MACedIDForI = prf(SK_pi, RestOfInitIDPayload); the responder's octets are
 * built the same way from its own message, Ni and SK_pr (RFC 7296 2.15).
 */
export function signedOctets(input: SignedOctetsInput): Buffer {
  const macedId = input.prf(buf(input.skP), buf(input.idPayloadBody));
  return Buffer.concat([input.realMessage, input.peerNonce, macedId]);
}

/** Shared Key MIC (method 2): prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>). */
export function sharedKeyMic(prf: Prf, sharedSecret: Uint8Array, octets: Uint8Array): Buffer {
  return prf(prf(buf(sharedSecret), KEY_PAD_FOR_IKEV2), buf(octets));
}

// ------------------------------------------------------- RFC 7427 layout

export interface Rfc7427AuthData {
  /** The DER AlgorithmIdentifier, exactly as received. */
  readonly algorithmIdentifier: Buffer;
  readonly signature: Buffer;
}

/** ASN.1 Length (1 octet) | AlgorithmIdentifier | Signature Value (RFC 7427 3). */
export function encodeRfc7427AuthData(algorithmIdentifier: Uint8Array, signature: Uint8Array): Buffer {
  if (algorithmIdentifier.length === 0 || algorithmIdentifier.length > 255) {
    throw new RangeError(`AlgorithmIdentifier of ${algorithmIdentifier.length} octets does not fit the 1-octet ASN.1 Length`);
  }
  return Buffer.concat([Buffer.from([algorithmIdentifier.length]), algorithmIdentifier, signature]);
}

/**
 * Splits method-14 Authentication Data. The AlgorithmIdentifier must be one
 * complete DER element of exactly the announced length and the signature
 * must not be empty; otherwise AuthError 'malformed'.
 */
export function parseRfc7427AuthData(data: Uint8Array): Rfc7427AuthData {
  if (data.length < 1) throw new AuthError('malformed', 'empty Authentication Data');
  const len = data[0]!;
  if (len === 0) throw new AuthError('malformed', 'ASN.1 Length is zero');
  if (data.length < 1 + len) throw new AuthError('malformed', `ASN.1 Length ${len} exceeds the ${data.length - 1} octet(s) present`);
  const algorithmIdentifier = buf(data).subarray(1, 1 + len);
  try {
    parseDer(algorithmIdentifier, 'AlgorithmIdentifier');
  } catch (e) {
    if (e instanceof Asn1Error) throw new AuthError('malformed', `AlgorithmIdentifier: ${e.message}`);
    throw e;
  }
  const signature = buf(data).subarray(1 + len);
  if (signature.length === 0) throw new AuthError('malformed', 'no Signature Value');
  return { algorithmIdentifier, signature };
}

// ------------------------------------------------------- build / verify

/** What a party authenticates itself with. */
export type AuthSigner =
  | { readonly kind: 'psk'; readonly sharedSecret: Uint8Array; readonly prf: Prf }
  /** Legacy methods 1 (RSA), 9, 10, 11 (ECDSA P-256/384/521, RFC 4754). */
  | { readonly kind: 'legacy-signature'; readonly method: number; readonly privateKey: KeyObject }
  /** Method 14 (RFC 7427) with the algorithm chosen by chooseSignatureAlgorithm. */
  | { readonly kind: 'digital-signature'; readonly privateKey: KeyObject; readonly algorithm: SignatureAlgorithm };

/** What a party checks the peer's AUTH payload with. */
export type AuthVerifier =
  | { readonly kind: 'psk'; readonly sharedSecret: Uint8Array; readonly prf: Prf }
  | {
      readonly kind: 'public-key';
      readonly publicKey: KeyObject;
      /** Auth methods accepted (default: 14 and the legacy methods 1, 9, 10, 11). */
      readonly allowedMethods?: readonly number[];
      /** Policy on RFC 7427 algorithms (default: everything parseAlgorithmIdentifier supports). */
      readonly acceptAlgorithm?: (alg: SignatureAlgorithm) => boolean;
    };

export interface AuthPayloadData {
  readonly method: number;
  readonly data: Buffer;
}

function fromSignatureError(e: unknown): never {
  if (e instanceof SignatureError) {
    const kind: AuthErrorKind =
      e.kind === 'bad-signature'
        ? 'auth-failed'
        : e.kind === 'key-mismatch'
          ? 'key-mismatch'
          : e.kind === 'unsupported-algorithm'
            ? 'algorithm-not-allowed'
            : 'malformed';
    throw new AuthError(kind, e.detail);
  }
  throw e;
}

/** Computes the AUTH payload's method and Authentication Data over `octets` (see signedOctets). */
export function buildAuthData(signer: AuthSigner, octets: Uint8Array): AuthPayloadData {
  try {
    switch (signer.kind) {
      case 'psk':
        return { method: AuthMethod.SHARED_KEY_MIC, data: sharedKeyMic(signer.prf, signer.sharedSecret, octets) };
      case 'legacy-signature':
        if (!isLegacySignatureMethod(signer.method)) {
          throw new AuthError('unsupported-method', `${nameOf(AuthMethod, signer.method)} is not a legacy signature method`);
        }
        return { method: signer.method, data: signLegacy(signer.method, signer.privateKey, octets) };
      case 'digital-signature': {
        const algId = encodeAlgorithmIdentifier(signer.algorithm);
        const sig = signWithAlgorithm(signer.algorithm, signer.privateKey, octets);
        return { method: AuthMethod.DIGITAL_SIGNATURE, data: encodeRfc7427AuthData(algId, sig) };
      }
    }
  } catch (e) {
    return fromSignatureError(e);
  }
}

export interface VerifiedAuth {
  readonly method: number;
  /** For method 14: the algorithm the peer used. */
  readonly algorithm?: SignatureAlgorithm;
}

const DEFAULT_SIGNATURE_METHODS: readonly number[] = [
  AuthMethod.DIGITAL_SIGNATURE,
  AuthMethod.RSA_SIGNATURE,
  AuthMethod.ECDSA_SHA256_P256,
  AuthMethod.ECDSA_SHA384_P384,
  AuthMethod.ECDSA_SHA512_P521,
];

/**
 * Checks the peer's AUTH payload over `octets`. Returns what was verified;
 * throws AuthError otherwise ('auth-failed' for a wrong MIC or signature).
 * MICs are compared in constant time.
 */
export function verifyAuthData(auth: AuthPayloadData, verifier: AuthVerifier, octets: Uint8Array): VerifiedAuth {
  const method = auth.method;
  if (verifier.kind === 'psk') {
    if (method !== AuthMethod.SHARED_KEY_MIC) {
      throw new AuthError('unsupported-method', `expected Shared Key MIC, got ${nameOf(AuthMethod, method)}`);
    }
    const expected = sharedKeyMic(verifier.prf, verifier.sharedSecret, octets);
    if (auth.data.length !== expected.length || !timingSafeEqual(auth.data, expected)) {
      throw new AuthError('auth-failed', 'Shared Key MIC does not match');
    }
    return { method };
  }
  const allowed = verifier.allowedMethods ?? DEFAULT_SIGNATURE_METHODS;
  if (!allowed.includes(method)) throw new AuthError('unsupported-method', `${nameOf(AuthMethod, method)} is not accepted here`);
  try {
    if (method === AuthMethod.DIGITAL_SIGNATURE) {
      const { algorithmIdentifier, signature } = parseRfc7427AuthData(auth.data);
      const algorithm = parseAlgorithmIdentifier(algorithmIdentifier);
      if (verifier.acceptAlgorithm && !verifier.acceptAlgorithm(algorithm)) {
        throw new AuthError('algorithm-not-allowed', `${signatureAlgorithmName(algorithm)} is not accepted by policy`);
      }
      verifyWithAlgorithm(algorithm, verifier.publicKey, octets, signature);
      return { method, algorithm };
    }
    if (isLegacySignatureMethod(method)) {
      verifyLegacy(method, verifier.publicKey, octets, auth.data);
      return { method };
    }
  } catch (e) {
    return fromSignatureError(e);
  }
  throw new AuthError('unsupported-method', `${nameOf(AuthMethod, method)} is not a supported authentication method`);
}

// ------------------------------------------------------- GSA_REKEY signing

/**
 * Signs arbitrary octets with a fixed key and algorithm and announces the
 * algorithm's AlgorithmIdentifier: the GCKS side of G-IKEv2 rekey
 * authentication (RFC 9838 2.4.1.1, 4.4.2.1.1).
 */
export interface RekeySigner {
  readonly algorithm: SignatureAlgorithm;
  /** The DER AlgorithmIdentifier (the Signature Algorithm Identifier attribute value). */
  readonly algorithmIdentifier: Buffer;
  sign(data: Uint8Array): Buffer;
  /**
   * Builds method-14 Authentication Data whose signature covers a message
   * that itself contains the AUTH payload with the signature zeroed. The
   * caller's `signedData(template)` returns the octets to sign given the
   * Authentication Data with the Signature Value all zero. Because ECDSA
   * DER signatures vary in length, the template length is guessed, and the
   * message re-signed with the observed length until the two agree.
   */
  signWithTemplate(signedData: (templateAuthData: Buffer) => Uint8Array): Buffer;
}

/** The Authentication Data with its Signature Value zeroed, as the GSA_REKEY signature covers it. */
export function zeroedRfc7427AuthData(algorithmIdentifier: Uint8Array, signatureLength: number): Buffer {
  return encodeRfc7427AuthData(algorithmIdentifier, Buffer.alloc(signatureLength));
}

/** Nominal signature length for the first template guess. */
function nominalSignatureLength(alg: SignatureAlgorithm, key: KeyObject): number {
  switch (alg.scheme) {
    case 'rsa-pkcs1':
    case 'rsa-pss':
      return Math.ceil((key.asymmetricKeyDetails?.modulusLength ?? 2048) / 8);
    case 'ed25519':
      return 64;
    case 'ed448':
      return 114;
    case 'ecdsa': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      const n = curve === 'secp384r1' ? 48 : curve === 'secp521r1' ? 66 : 32;
      // SEQUENCE { INTEGER r, INTEGER s }, each usually with a sign octet about half the time.
      const int = n + 2 + 1;
      const body = 2 * int;
      return body + (body < 128 ? 2 : 3);
    }
  }
}

const MAX_TEMPLATE_ATTEMPTS = 64;

export function createRekeySigner(privateKey: KeyObject, algorithm: SignatureAlgorithm): RekeySigner {
  const algorithmIdentifier = encodeAlgorithmIdentifier(algorithm);
  const sign = (data: Uint8Array): Buffer => {
    try {
      return signWithAlgorithm(algorithm, privateKey, data);
    } catch (e) {
      return fromSignatureError(e);
    }
  };
  return {
    algorithm,
    algorithmIdentifier,
    sign,
    signWithTemplate(signedData) {
      let length = nominalSignatureLength(algorithm, privateKey);
      for (let i = 0; i < MAX_TEMPLATE_ATTEMPTS; i++) {
        const sig = sign(signedData(zeroedRfc7427AuthData(algorithmIdentifier, length)));
        if (sig.length === length) return encodeRfc7427AuthData(algorithmIdentifier, sig);
        length = sig.length;
      }
      throw new AuthError('key-mismatch', 'signature length did not settle');
    },
  };
}

/**
 * The GM side: checks a rekey signature made with `publicKey` (from AUTH_KEY)
 * and the announced AlgorithmIdentifier. `expectedAlgorithmIdentifier`, when
 * given, must equal the received one octet for octet (RFC 9838 4.4.2.1.1:
 * the AUTH payload's AlgorithmIdentifier MUST match the transform attribute).
 */
export function verifyRekeySignature(
  publicKey: KeyObject,
  algorithmIdentifier: Uint8Array,
  data: Uint8Array,
  signature: Uint8Array,
  expectedAlgorithmIdentifier?: Uint8Array,
): SignatureAlgorithm {
  if (expectedAlgorithmIdentifier && !buf(expectedAlgorithmIdentifier).equals(buf(algorithmIdentifier))) {
    throw new AuthError('algorithm-not-allowed', 'AlgorithmIdentifier differs from the negotiated Signature Algorithm Identifier');
  }
  try {
    const algorithm = parseAlgorithmIdentifier(algorithmIdentifier);
    verifyWithAlgorithm(algorithm, publicKey, data, signature);
    return algorithm;
  } catch (e) {
    return fromSignatureError(e);
  }
}
