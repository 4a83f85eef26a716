/**
 * Signature algorithms for IKEv2 authentication and G-IKEv2 rekey signing.
 *
 * RFC 7427 (Digital Signature, auth method 14) names the algorithm with a DER
 * AlgorithmIdentifier; this module maps those octets to node:crypto sign and
 * verify calls and back. The legacy methods (RSA Digital Signature, 1, and the
 * RFC 4754 ECDSA methods 9/10/11) are here too because they differ only in
 * how the signature octets are laid out.
 *
 * Every failure leaving this module is a SignatureError: node's own errors
 * (unsupported key, malformed DER signature, wrong curve) are caught and
 * reported as such, so callers can map them to AUTHENTICATION_FAILED without
 * inspecting strings.
 */
import { constants, sign as nodeSign, verify as nodeVerify, type KeyObject, type SigningOptions } from 'node:crypto';
import { AuthMethod, HashAlgorithm } from '../wire/iana.ts';
import {
  Asn1Error,
  DerReader,
  Tag,
  contextTag,
  decodeNull,
  decodeOid,
  decodeSmallInteger,
  derExplicit,
  derInteger,
  derNull,
  derOid,
  derSequence,
} from './asn1.ts';

export type SignatureErrorKind =
  /** The signature does not verify. */
  | 'bad-signature'
  /** An AlgorithmIdentifier, hash or method this implementation does not support. */
  | 'unsupported-algorithm'
  /** The key cannot be used with the algorithm (wrong type, wrong curve). */
  | 'key-mismatch'
  /** Octets that do not parse (AlgorithmIdentifier DER, notify data, signature layout). */
  | 'malformed';

export class SignatureError extends Error {
  override readonly name = 'SignatureError';
  constructor(
    readonly kind: SignatureErrorKind,
    readonly detail: string,
  ) {
    super(`${kind}: ${detail}`);
  }
}

export type HashName = 'sha1' | 'sha256' | 'sha384' | 'sha512';
export type SignatureScheme = 'rsa-pkcs1' | 'rsa-pss' | 'ecdsa' | 'ed25519' | 'ed448';

/** One signature algorithm as an RFC 7427 AlgorithmIdentifier describes it. */
export interface SignatureAlgorithm {
  readonly scheme: SignatureScheme;
  /** The message digest; null for the EdDSA schemes, which hash internally. */
  readonly hash: HashName | null;
  /** RSASSA-PSS only: salt length in octets (MGF1 always uses `hash`). */
  readonly saltLength?: number;
}

export const Oid = Object.freeze({
  rsaEncryption: '1.2.840.113549.1.1.1',
  sha1WithRSAEncryption: '1.2.840.113549.1.1.5',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  sha384WithRSAEncryption: '1.2.840.113549.1.1.12',
  sha512WithRSAEncryption: '1.2.840.113549.1.1.13',
  rsassaPss: '1.2.840.113549.1.1.10',
  mgf1: '1.2.840.113549.1.1.8',
  sha1: '1.3.14.3.2.26',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  ecdsaWithSha512: '1.2.840.10045.4.3.4',
  ecPublicKey: '1.2.840.10045.2.1',
  ed25519: '1.3.101.112',
  ed448: '1.3.101.113',
});

const HASH_LENGTH: Readonly<Record<HashName, number>> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };
const HASH_OID: Readonly<Record<HashName, string>> = { sha1: Oid.sha1, sha256: Oid.sha256, sha384: Oid.sha384, sha512: Oid.sha512 };
const PKCS1_OID: Readonly<Partial<Record<HashName, string>>> = {
  sha256: Oid.sha256WithRSAEncryption,
  sha384: Oid.sha384WithRSAEncryption,
  sha512: Oid.sha512WithRSAEncryption,
};
const ECDSA_OID: Readonly<Partial<Record<HashName, string>>> = {
  sha256: Oid.ecdsaWithSha256,
  sha384: Oid.ecdsaWithSha384,
  sha512: Oid.ecdsaWithSha512,
};

function pss(hash: 'sha256' | 'sha384' | 'sha512'): SignatureAlgorithm {
  return Object.freeze({ scheme: 'rsa-pss', hash, saltLength: HASH_LENGTH[hash] });
}

/**
 * The algorithms this implementation signs with. SHA-1 is not among them:
 * RFC 8247 forbids it for RFC 7427 signatures; legacy method 1 still uses it
 * because RFC 7296 fixes it there.
 */
export const SignatureAlgorithms = Object.freeze({
  RSA_PKCS1_SHA256: Object.freeze<SignatureAlgorithm>({ scheme: 'rsa-pkcs1', hash: 'sha256' }),
  RSA_PKCS1_SHA384: Object.freeze<SignatureAlgorithm>({ scheme: 'rsa-pkcs1', hash: 'sha384' }),
  RSA_PKCS1_SHA512: Object.freeze<SignatureAlgorithm>({ scheme: 'rsa-pkcs1', hash: 'sha512' }),
  RSA_PSS_SHA256: pss('sha256'),
  RSA_PSS_SHA384: pss('sha384'),
  RSA_PSS_SHA512: pss('sha512'),
  ECDSA_SHA256: Object.freeze<SignatureAlgorithm>({ scheme: 'ecdsa', hash: 'sha256' }),
  ECDSA_SHA384: Object.freeze<SignatureAlgorithm>({ scheme: 'ecdsa', hash: 'sha384' }),
  ECDSA_SHA512: Object.freeze<SignatureAlgorithm>({ scheme: 'ecdsa', hash: 'sha512' }),
  ED25519: Object.freeze<SignatureAlgorithm>({ scheme: 'ed25519', hash: null }),
  ED448: Object.freeze<SignatureAlgorithm>({ scheme: 'ed448', hash: null }),
});

/** A readable name for logs and configuration, e.g. `rsassa-pss-sha256-salt32`. */
export function signatureAlgorithmName(alg: SignatureAlgorithm): string {
  switch (alg.scheme) {
    case 'rsa-pkcs1':
      return `${alg.hash ?? '?'}WithRSAEncryption`;
    case 'rsa-pss':
      return `rsassa-pss-${alg.hash ?? '?'}-salt${alg.saltLength ?? '?'}`;
    case 'ecdsa':
      return `ecdsa-with-${alg.hash ?? '?'}`;
    default:
      return alg.scheme;
  }
}

export function sameSignatureAlgorithm(a: SignatureAlgorithm, b: SignatureAlgorithm): boolean {
  return a.scheme === b.scheme && a.hash === b.hash && (a.saltLength ?? -1) === (b.saltLength ?? -1);
}

// ------------------------------------------------------------ AlgorithmIdentifier

function hashAlgorithmIdentifier(hash: HashName): Buffer {
  // RFC 4055 2.1: the hash AlgorithmIdentifiers are generated with NULL parameters.
  return derSequence(derOid(HASH_OID[hash]), derNull());
}

/**
 * The canonical DER AlgorithmIdentifier for `alg`: NULL parameters for
 * sha*WithRSAEncryption, absent parameters for ECDSA and EdDSA (RFC 5758,
 * RFC 8410), and full RSASSA-PSS-params with the trailer field omitted.
 */
export function encodeAlgorithmIdentifier(alg: SignatureAlgorithm): Buffer {
  switch (alg.scheme) {
    case 'rsa-pkcs1': {
      const oid = alg.hash ? PKCS1_OID[alg.hash] : undefined;
      if (!oid) throw new SignatureError('unsupported-algorithm', `PKCS#1 v1.5 with ${alg.hash}`);
      return derSequence(derOid(oid), derNull());
    }
    case 'ecdsa': {
      const oid = alg.hash ? ECDSA_OID[alg.hash] : undefined;
      if (!oid) throw new SignatureError('unsupported-algorithm', `ECDSA with ${alg.hash}`);
      return derSequence(derOid(oid));
    }
    case 'rsa-pss': {
      const hash = alg.hash;
      if (hash === null || hash === 'sha1') throw new SignatureError('unsupported-algorithm', `RSASSA-PSS with ${hash}`);
      const salt = alg.saltLength ?? HASH_LENGTH[hash];
      return derSequence(
        derOid(Oid.rsassaPss),
        derSequence(
          derExplicit(0, hashAlgorithmIdentifier(hash)),
          derExplicit(1, derSequence(derOid(Oid.mgf1), hashAlgorithmIdentifier(hash))),
          derExplicit(2, derInteger(salt)),
        ),
      );
    }
    case 'ed25519':
      return derSequence(derOid(Oid.ed25519));
    case 'ed448':
      return derSequence(derOid(Oid.ed448));
  }
}

const BY_OID = new Map<string, SignatureAlgorithm>([
  [Oid.sha256WithRSAEncryption, SignatureAlgorithms.RSA_PKCS1_SHA256],
  [Oid.sha384WithRSAEncryption, SignatureAlgorithms.RSA_PKCS1_SHA384],
  [Oid.sha512WithRSAEncryption, SignatureAlgorithms.RSA_PKCS1_SHA512],
  [Oid.ecdsaWithSha256, SignatureAlgorithms.ECDSA_SHA256],
  [Oid.ecdsaWithSha384, SignatureAlgorithms.ECDSA_SHA384],
  [Oid.ecdsaWithSha512, SignatureAlgorithms.ECDSA_SHA512],
  [Oid.ed25519, SignatureAlgorithms.ED25519],
  [Oid.ed448, SignatureAlgorithms.ED448],
]);

const HASH_BY_OID = new Map<string, HashName>([
  [Oid.sha1, 'sha1'],
  [Oid.sha256, 'sha256'],
  [Oid.sha384, 'sha384'],
  [Oid.sha512, 'sha512'],
]);

/** Largest PSS salt we accept: far above any real use, small enough to reject nonsense. */
const MAX_PSS_SALT = 1024;

function readHashAlgorithm(r: DerReader, what: string): HashName {
  const seq = r.sequence(what);
  const oid = decodeOid(seq.expect(Tag.OID, 'algorithm'), 'algorithm');
  // Parameters: NULL or absent (RFC 4055 2.1 says accept both).
  const p = seq.optional(Tag.NULL, 'parameters');
  if (p) decodeNull(p);
  seq.finish(what);
  const hash = HASH_BY_OID.get(oid);
  if (!hash) throw new SignatureError('unsupported-algorithm', `hash algorithm ${oid}`);
  return hash;
}

function parsePssParams(r: DerReader): SignatureAlgorithm {
  const params = r.sequence('RSASSA-PSS-params');
  let hash: HashName = 'sha1';
  let mgfHash: HashName = 'sha1';
  let salt = 20;
  const t0 = params.optional(contextTag(0, true), 'hashAlgorithm');
  if (t0) hash = readHashAlgorithm(DerReader.inside(params.buf, t0, 'hashAlgorithm'), 'hashAlgorithm');
  const t1 = params.optional(contextTag(1, true), 'maskGenAlgorithm');
  if (t1) {
    const mgf = DerReader.inside(params.buf, t1, 'maskGenAlgorithm').sequence('MaskGenAlgorithm');
    const mgfOid = decodeOid(mgf.expect(Tag.OID, 'algorithm'), 'algorithm');
    if (mgfOid !== Oid.mgf1) throw new SignatureError('unsupported-algorithm', `mask generation function ${mgfOid}`);
    mgfHash = readHashAlgorithm(mgf, 'MGF1 hash');
    mgf.finish('MaskGenAlgorithm');
  }
  const t2 = params.optional(contextTag(2, true), 'saltLength');
  if (t2) {
    const inner = DerReader.inside(params.buf, t2, 'saltLength');
    salt = decodeSmallInteger(inner.expect(Tag.INTEGER, 'saltLength'), 'saltLength', MAX_PSS_SALT);
    inner.finish('saltLength');
  }
  const t3 = params.optional(contextTag(3, true), 'trailerField');
  if (t3) {
    const inner = DerReader.inside(params.buf, t3, 'trailerField');
    const trailer = decodeSmallInteger(inner.expect(Tag.INTEGER, 'trailerField'), 'trailerField');
    inner.finish('trailerField');
    if (trailer !== 1) throw new SignatureError('unsupported-algorithm', `RSASSA-PSS trailer field ${trailer}`);
  }
  params.finish('RSASSA-PSS-params');
  if (hash === 'sha1') throw new SignatureError('unsupported-algorithm', 'RSASSA-PSS with SHA-1');
  // node:crypto uses the message digest for MGF1 too; anything else cannot be verified.
  if (mgfHash !== hash) throw new SignatureError('unsupported-algorithm', `RSASSA-PSS with MGF1-${mgfHash} and ${hash}`);
  return Object.freeze({ scheme: 'rsa-pss', hash, saltLength: salt });
}

/**
 * Parses a DER AlgorithmIdentifier naming a signature algorithm. Accepts the
 * encodings RFC 7427 and the PKIX profiles allow (for instance RSA PKCS#1 with
 * NULL or absent parameters, PSS with any salt length), not only the
 * canonical octets this implementation sends.
 */
export function parseAlgorithmIdentifier(der: Uint8Array): SignatureAlgorithm {
  try {
    const top = new DerReader(der, 'AlgorithmIdentifier');
    const seq = top.sequence('AlgorithmIdentifier');
    top.finish('AlgorithmIdentifier');
    const oid = decodeOid(seq.expect(Tag.OID, 'algorithm'), 'algorithm');
    if (oid === Oid.rsassaPss) {
      // RFC 4055 3.1: parameters MUST be present when used in a signature.
      const alg = parsePssParams(seq);
      seq.finish('AlgorithmIdentifier');
      return alg;
    }
    const alg = BY_OID.get(oid);
    if (!alg) throw new SignatureError('unsupported-algorithm', `signature algorithm ${oid}`);
    if (alg.scheme === 'rsa-pkcs1') {
      const p = seq.optional(Tag.NULL, 'parameters');
      if (p) decodeNull(p);
    }
    // ECDSA and EdDSA: parameters MUST be absent (RFC 5758 3.2, RFC 8410 3).
    seq.finish('AlgorithmIdentifier');
    return alg;
  } catch (e) {
    if (e instanceof SignatureError) throw e;
    if (e instanceof Asn1Error) throw new SignatureError('malformed', e.message);
    throw e;
  }
}

// ------------------------------------------------------------------ keys

/** What a node KeyObject can sign with, as far as this module is concerned. */
export type SigningKeyType = 'rsa' | 'rsa-pss' | 'ec-p256' | 'ec-p384' | 'ec-p521' | 'ed25519' | 'ed448';

/** Types learnt from where a key came from (a certificate's SubjectPublicKeyInfo), see rememberKeyType. */
const KNOWN_KEY_TYPES = new WeakMap<KeyObject, SigningKeyType>();

/**
 * Records the type of a public key whose encoding has already been read
 * (x509.ts does so for each certificate's key): node's key details, which
 * `signingKeyType` would otherwise ask for to tell the EC curve, cost about as
 * much as a signature verification for a key seen once.
 */
export function rememberKeyType(key: KeyObject, type: SigningKeyType): void {
  KNOWN_KEY_TYPES.set(key, type);
}

export function signingKeyType(key: KeyObject): SigningKeyType | undefined {
  const known = KNOWN_KEY_TYPES.get(key);
  if (known !== undefined) return known;
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return 'rsa';
    case 'rsa-pss':
      return 'rsa-pss';
    case 'ed25519':
      return 'ed25519';
    case 'ed448':
      return 'ed448';
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1' || curve === 'P-256') return 'ec-p256';
      if (curve === 'secp384r1' || curve === 'P-384') return 'ec-p384';
      if (curve === 'secp521r1' || curve === 'P-521') return 'ec-p521';
      return undefined;
    }
    default:
      return undefined;
  }
}

/** Whether `key` (private or public) can be used with `alg`. */
export function keyFitsAlgorithm(alg: SignatureAlgorithm, key: KeyObject): boolean {
  const t = signingKeyType(key);
  switch (alg.scheme) {
    case 'rsa-pkcs1':
      return t === 'rsa';
    case 'rsa-pss':
      return t === 'rsa' || t === 'rsa-pss';
    case 'ecdsa':
      return t === 'ec-p256' || t === 'ec-p384' || t === 'ec-p521';
    case 'ed25519':
      return t === 'ed25519';
    case 'ed448':
      return t === 'ed448';
  }
}

function requireFit(alg: SignatureAlgorithm, key: KeyObject): void {
  if (!keyFitsAlgorithm(alg, key)) {
    throw new SignatureError(
      'key-mismatch',
      `a ${key.asymmetricKeyType ?? 'symmetric'} key cannot be used with ${signatureAlgorithmName(alg)}`,
    );
  }
}

// ------------------------------------------------------------ sign / verify

type NodeSignKey = KeyObject | (SigningOptions & { key: KeyObject });

function nodeKeyInput(alg: SignatureAlgorithm, key: KeyObject): NodeSignKey {
  switch (alg.scheme) {
    case 'rsa-pkcs1':
      return { key, padding: constants.RSA_PKCS1_PADDING };
    case 'rsa-pss':
      return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: alg.saltLength ?? HASH_LENGTH[alg.hash ?? 'sha256'] };
    case 'ecdsa':
      // RFC 7427 3: ECDSA signatures are the DER ECDSA-Sig-Value.
      return { key, dsaEncoding: 'der' };
    default:
      return key;
  }
}

/** Signs `data` with `alg`. Throws SignatureError (never a raw node error). */
export function signWithAlgorithm(alg: SignatureAlgorithm, privateKey: KeyObject, data: Uint8Array): Buffer {
  if (privateKey.type !== 'private') throw new SignatureError('key-mismatch', 'signing needs a private key');
  requireFit(alg, privateKey);
  try {
    return nodeSign(alg.hash, data, nodeKeyInput(alg, privateKey));
  } catch {
    // The node message may quote key parameters; keep it out of the error.
    throw new SignatureError('key-mismatch', `the key refused to sign with ${signatureAlgorithmName(alg)}`);
  }
}

/**
 * Verifies `signature` over `data`. Returns normally on success; throws
 * SignatureError 'bad-signature' when it does not verify (including when
 * node rejects the signature octets as malformed), 'key-mismatch' when the
 * key cannot be used with the algorithm.
 */
export function verifyWithAlgorithm(alg: SignatureAlgorithm, publicKey: KeyObject, data: Uint8Array, signature: Uint8Array): void {
  requireFit(alg, publicKey);
  let ok: boolean;
  try {
    ok = nodeVerify(alg.hash, data, nodeKeyInput(alg, publicKey), signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new SignatureError('bad-signature', `${signatureAlgorithmName(alg)} signature does not verify`);
}

// ------------------------------------------------------------ choice of algorithm

const HASH_BY_IANA = new Map<number, HashName>([
  [HashAlgorithm.SHA1, 'sha1'],
  [HashAlgorithm.SHA2_256, 'sha256'],
  [HashAlgorithm.SHA2_384, 'sha384'],
  [HashAlgorithm.SHA2_512, 'sha512'],
]);
const IANA_BY_HASH: Readonly<Record<HashName, number>> = {
  sha1: HashAlgorithm.SHA1,
  sha256: HashAlgorithm.SHA2_256,
  sha384: HashAlgorithm.SHA2_384,
  sha512: HashAlgorithm.SHA2_512,
};

/** The SIGNATURE_HASH_ALGORITHMS value an algorithm needs the peer to support (RFC 7427 4, RFC 8420 2). */
export function hashAlgorithmIdOf(alg: SignatureAlgorithm): number {
  return alg.hash === null ? HashAlgorithm.IDENTITY : IANA_BY_HASH[alg.hash];
}

export function hashNameOf(hashAlgorithmId: number): HashName | undefined {
  return HASH_BY_IANA.get(hashAlgorithmId);
}

/** What we announce in SIGNATURE_HASH_ALGORITHMS by default: no SHA-1 (RFC 8247 3.2). */
export const DEFAULT_SIGNATURE_HASHES: readonly number[] = Object.freeze([
  HashAlgorithm.SHA2_256,
  HashAlgorithm.SHA2_384,
  HashAlgorithm.SHA2_512,
  HashAlgorithm.IDENTITY,
]);

export interface AlgorithmChoice {
  /** Hashes in order of our preference (IANA HashAlgorithm values). Default: the key's natural hash first, then SHA-256/384/512. */
  readonly preferredHashes?: readonly number[];
  /** The peer's SIGNATURE_HASH_ALGORITHMS list; undefined when we do not restrict by it. */
  readonly peerHashes?: readonly number[];
  /** For RSA keys: PKCS#1 v1.5 or RSASSA-PSS (default 'pss'; keys of type rsa-pss always use PSS). */
  readonly rsaPadding?: 'pkcs1' | 'pss';
}

function naturalHash(t: SigningKeyType): HashName {
  return t === 'ec-p384' ? 'sha384' : t === 'ec-p521' ? 'sha512' : 'sha256';
}

/**
 * Picks the RFC 7427 algorithm to sign with for `key`: EdDSA keys need the
 * peer to list IDENTITY; other keys take the first preferred hash the peer
 * also lists. Throws SignatureError 'unsupported-algorithm' when there is
 * no common choice, 'key-mismatch' for a key type we cannot sign with.
 */
export function chooseSignatureAlgorithm(key: KeyObject, choice: AlgorithmChoice = {}): SignatureAlgorithm {
  const t = signingKeyType(key);
  if (t === undefined) throw new SignatureError('key-mismatch', `no signature algorithm for a ${key.asymmetricKeyType ?? 'symmetric'} key`);
  const peerAccepts = (id: number): boolean => choice.peerHashes === undefined || choice.peerHashes.includes(id);
  if (t === 'ed25519' || t === 'ed448') {
    if (!peerAccepts(HashAlgorithm.IDENTITY)) throw new SignatureError('unsupported-algorithm', 'peer does not accept Identity hash (EdDSA)');
    return t === 'ed25519' ? SignatureAlgorithms.ED25519 : SignatureAlgorithms.ED448;
  }
  const natural = IANA_BY_HASH[naturalHash(t)];
  const preferred = choice.preferredHashes ?? [natural, ...[HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512].filter((h) => h !== natural)];
  for (const id of preferred) {
    const hash = HASH_BY_IANA.get(id);
    if (hash === undefined || hash === 'sha1' || !peerAccepts(id)) continue;
    if (t === 'rsa' || t === 'rsa-pss') {
      const usePss = t === 'rsa-pss' || (choice.rsaPadding ?? 'pss') === 'pss';
      return usePss ? pss(hash) : Object.freeze<SignatureAlgorithm>({ scheme: 'rsa-pkcs1', hash });
    }
    return Object.freeze<SignatureAlgorithm>({ scheme: 'ecdsa', hash });
  }
  throw new SignatureError('unsupported-algorithm', 'no hash algorithm in common with the peer');
}

// ------------------------------------------------------ SIGNATURE_HASH_ALGORITHMS

/** Notify data of SIGNATURE_HASH_ALGORITHMS: a list of 16-bit hash algorithm IDs (RFC 7427 4). */
export function encodeSignatureHashAlgorithms(ids: readonly number[]): Buffer {
  const out = Buffer.alloc(ids.length * 2);
  ids.forEach((id, i) => {
    if (!Number.isInteger(id) || id < 0 || id > 0xffff) throw new RangeError(`hash algorithm id ${id} is not 16-bit`);
    out.writeUInt16BE(id, i * 2);
  });
  return out;
}

/** Decodes the notify data; unknown IDs are kept (and ignored by selection). Odd lengths are malformed. */
export function decodeSignatureHashAlgorithms(data: Uint8Array): number[] {
  if (data.length % 2 !== 0) throw new SignatureError('malformed', `SIGNATURE_HASH_ALGORITHMS data of odd length ${data.length}`);
  const ids: number[] = [];
  for (let i = 0; i < data.length; i += 2) ids.push((data[i]! << 8) | data[i + 1]!);
  return ids;
}

/** The first of `ours` (in our order of preference) that the peer also lists. */
export function selectSignatureHash(ours: readonly number[], peers: readonly number[]): number | undefined {
  return ours.find((id) => peers.includes(id));
}

// ------------------------------------------------------ legacy auth methods

interface LegacyMethod {
  readonly alg: SignatureAlgorithm;
  readonly keyType: SigningKeyType;
  /** ECDSA r||s length (RFC 4754 7); undefined for RSA. */
  readonly ecdsaSignatureLength?: number;
}

const LEGACY: ReadonlyMap<number, LegacyMethod> = new Map<number, LegacyMethod>([
  // RFC 7296 3.8: RSASSA-PKCS1-v1_5; the digest is SHA-1 in every implementation (DigestInfo inside).
  [AuthMethod.RSA_SIGNATURE, { alg: { scheme: 'rsa-pkcs1', hash: 'sha1' }, keyType: 'rsa' }],
  [AuthMethod.ECDSA_SHA256_P256, { alg: SignatureAlgorithms.ECDSA_SHA256, keyType: 'ec-p256', ecdsaSignatureLength: 64 }],
  [AuthMethod.ECDSA_SHA384_P384, { alg: SignatureAlgorithms.ECDSA_SHA384, keyType: 'ec-p384', ecdsaSignatureLength: 96 }],
  [AuthMethod.ECDSA_SHA512_P521, { alg: SignatureAlgorithms.ECDSA_SHA512, keyType: 'ec-p521', ecdsaSignatureLength: 132 }],
]);

export function isLegacySignatureMethod(method: number): boolean {
  return LEGACY.has(method);
}

/** The legacy auth method a key would use (1 for RSA, 9/10/11 by curve), if any. */
export function legacyMethodForKey(key: KeyObject): number | undefined {
  const t = signingKeyType(key);
  for (const [method, m] of LEGACY) if (m.keyType === t) return method;
  return undefined;
}

function legacy(method: number, key: KeyObject): LegacyMethod {
  const m = LEGACY.get(method);
  if (!m) throw new SignatureError('unsupported-algorithm', `auth method ${method} is not a legacy signature method`);
  if (signingKeyType(key) !== m.keyType) {
    throw new SignatureError('key-mismatch', `auth method ${method} needs a ${m.keyType} key, not ${signingKeyType(key) ?? key.asymmetricKeyType ?? 'symmetric'}`);
  }
  return m;
}

/** Signs for auth method 1, 9, 10 or 11. */
export function signLegacy(method: number, privateKey: KeyObject, data: Uint8Array): Buffer {
  const m = legacy(method, privateKey);
  if (privateKey.type !== 'private') throw new SignatureError('key-mismatch', 'signing needs a private key');
  try {
    if (m.ecdsaSignatureLength !== undefined) return nodeSign(m.alg.hash, data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
    return nodeSign(m.alg.hash, data, { key: privateKey, padding: constants.RSA_PKCS1_PADDING });
  } catch {
    throw new SignatureError('key-mismatch', `the key refused to sign for auth method ${method}`);
  }
}

/** Verifies for auth method 1, 9, 10 or 11; throws SignatureError. */
export function verifyLegacy(method: number, publicKey: KeyObject, data: Uint8Array, signature: Uint8Array): void {
  const m = legacy(method, publicKey);
  if (m.ecdsaSignatureLength !== undefined && signature.length !== m.ecdsaSignatureLength) {
    throw new SignatureError('bad-signature', `auth method ${method} signature must be ${m.ecdsaSignatureLength} octets, got ${signature.length}`);
  }
  let ok: boolean;
  try {
    ok =
      m.ecdsaSignatureLength !== undefined
        ? nodeVerify(m.alg.hash, data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature)
        : nodeVerify(m.alg.hash, data, { key: publicKey, padding: constants.RSA_PKCS1_PADDING }, signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new SignatureError('bad-signature', `auth method ${method} signature does not verify`);
}
