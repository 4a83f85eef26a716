/**
 * The key server's GSA_REKEY signing key (GCAUTH Digital Signature,
 * RFC 9838 4.4.2.1.1): the algorithm follows from the key, and members get
 * its SubjectPublicKeyInfo as AUTH_KEY (Section 4.5.3.2).
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import {
  chooseSignatureAlgorithm,
  encodeAlgorithmIdentifier,
  signingKeyType,
  type SignatureAlgorithm,
} from '../crypto/signature.ts';
import { publicKeyToSpki } from '../crypto/x509.ts';

export interface RekeySigningKey {
  readonly privateKey: KeyObject;
  readonly algorithm: SignatureAlgorithm;
  /** DER AlgorithmIdentifier: GCAUTH attribute 18 and the AUTH payload's (they MUST match). */
  readonly algorithmIdentifier: Buffer;
  /** DER SubjectPublicKeyInfo: the AUTH_KEY attribute. */
  readonly publicKeySpki: Buffer;
}

export class SigningKeyError extends Error {
  override readonly name = 'SigningKeyError';
}

/**
 * Accepts Ed25519, ECDSA (P-256/384/521, hash matched to the curve) and RSA
 * (always RSASSA-PSS: PKCS#1 v1.5 signatures have no security proof and
 * RFC 8247 prefers PSS). Throws SigningKeyError for anything else.
 */
export function loadRekeySigningKey(pem: string | Buffer): RekeySigningKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch {
    throw new SigningKeyError('not a PEM or DER private key');
  }
  return rekeySigningKeyFrom(privateKey);
}

export function rekeySigningKeyFrom(privateKey: KeyObject): RekeySigningKey {
  const type = signingKeyType(privateKey);
  if (type === undefined || type === 'ed448') {
    throw new SigningKeyError(`a ${privateKey.asymmetricKeyType ?? 'secret'} key cannot sign rekeys (use Ed25519, ECDSA or RSA)`);
  }
  const algorithm = chooseSignatureAlgorithm(privateKey, { rsaPadding: 'pss' });
  return {
    privateKey,
    algorithm,
    algorithmIdentifier: encodeAlgorithmIdentifier(algorithm),
    publicKeySpki: publicKeyToSpki(createPublicKey(privateKey)),
  };
}
