/**
 * X.509 certificates for IKEv2 authentication: parsing, chain validation to
 * configured trust anchors, and matching of IKE identities (RFC 7296 3.5,
 * RFC 4945 3.1 and 5.1.3).
 *
 * Everything the checks depend on is read with our own DER parser (names as
 * DER, validity, basicConstraints, keyUsage, subjectAltName, criticality), so
 * that it is exact rather than reconstructed from node's text output. The
 * subject public key is imported from the parsed SubjectPublicKeyInfo as a
 * JWK when it is one of the common forms (EC P-256 with an uncompressed
 * point, rsaEncryption, Ed25519, Ed448), and certificate signatures are
 * verified over the tbsCertificate octets with node:crypto: OpenSSL 3's key
 * decoder, which node's X509Certificate runs eagerly on every certificate,
 * costs several times a signature verification. Other keys (P-384, P-521,
 * RSASSA-PSS, compressed points...) go to node's SPKI decoder alone.
 *
 * node's X509Certificate is still used, built on first use only (`x509`),
 * for the subject and issuer display strings and the subject attributes the
 * access rules match, and to verify a signature whose algorithm or issuer key
 * type signature.ts does not handle (SHA-224, DSA, other curves, RSASSA-PSS
 * with SHA-1 or a different MGF1 hash), so that such certificates verify
 * exactly as before. x509-parity.ts keeps out the DER that X509Certificate
 * would refuse, since our parser reads the names and the signature algorithm
 * only as opaque octets.
 * Revocation (CRL/OCSP) is not checked here.
 */
import { X509Certificate, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { IdType } from '../wire/iana.ts';
import {
  Asn1Error,
  DerReader,
  Tag,
  bitIsSet,
  contextTag,
  decodeBitString,
  decodeBoolean,
  decodeNull,
  decodeOctetString,
  decodeOid,
  decodeSmallInteger,
  decodeString,
  decodeTime,
  type Asn1Element,
} from './asn1.ts';
import {
  Oid,
  keyFitsAlgorithm,
  parseAlgorithmIdentifier,
  rememberKeyType,
  signingKeyType,
  verifyWithAlgorithm,
  type SignatureAlgorithm,
  type SigningKeyType,
} from './signature.ts';
import { checkAlgorithmIdentifier, checkName, checkSerialNumber, checkUniqueId } from './x509-parity.ts';

export type CertificateErrorReason =
  | 'expired'
  | 'not-yet-valid'
  | 'untrusted'
  | 'bad-signature'
  | 'not-a-ca'
  | 'key-usage'
  | 'path-too-long'
  | 'id-mismatch'
  | 'malformed';

export class CertificateError extends Error {
  override readonly name = 'CertificateError';
  constructor(
    readonly reason: CertificateErrorReason,
    readonly detail: string,
    /** The subject of the certificate concerned, for logs (never key material). */
    readonly subject?: string,
  ) {
    super(`${reason}: ${detail}${subject ? ` [${subject}]` : ''}`);
  }
}

/** KeyUsage named bits (RFC 5280 4.2.1.3). */
export const KeyUsageBit = Object.freeze({
  digitalSignature: 0,
  nonRepudiation: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
  encipherOnly: 7,
  decipherOnly: 8,
});
export type KeyUsageName = keyof typeof KeyUsageBit;

export const ExtensionOid = Object.freeze({
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  cRLDistributionPoints: '2.5.29.31',
  certificatePolicies: '2.5.29.32',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  authorityInfoAccess: '1.3.6.1.5.5.7.1.1',
});

export const ExtendedKeyUsageOid = Object.freeze({
  anyExtendedKeyUsage: '2.5.29.37.0',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  ipsecIKE: '1.3.6.1.5.5.7.3.17',
});

/**
 * Extensions whose semantics we either enforce or may ignore safely when
 * critical. certificatePolicies is here because no policy is ever required
 * (RFC 5280 6.1 with user-initial-policy-set = any-policy); nameConstraints,
 * policyConstraints and inhibitAnyPolicy are not, so a critical one fails.
 */
const HANDLED_EXTENSIONS = new Set<string>(Object.values(ExtensionOid));

export type GeneralName =
  | { readonly type: 'dns'; readonly value: string }
  | { readonly type: 'email'; readonly value: string }
  | { readonly type: 'uri'; readonly value: string }
  /** 4 (IPv4) or 16 (IPv6) octets. */
  | { readonly type: 'ip'; readonly value: Buffer }
  /** A Name, as DER. */
  | { readonly type: 'directory'; readonly value: Buffer }
  /** otherName, x400Address, ediPartyName, registeredID: kept as the raw element. */
  | { readonly type: 'other'; readonly tag: number; readonly value: Buffer };

export interface CertificateExtension {
  readonly oid: string;
  readonly critical: boolean;
  /** extnValue contents (the DER of the extension's own type). */
  readonly value: Buffer;
}

export interface BasicConstraints {
  readonly ca: boolean;
  readonly pathLenConstraint?: number;
}

function bufOf(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

function malformed(detail: string): CertificateError {
  return new CertificateError('malformed', detail);
}

/** A parsed certificate. Construct with parseCertificate. */
export class Certificate {
  /** node's view of the same DER, built on first use (see `x509`). */
  #x509: X509Certificate | undefined;
  #subject: string | undefined;
  #issuer: string | undefined;
  /** The signature algorithm as isSignedBy verifies it: undefined until first needed, null when not one we verify. */
  #verifiedAlgorithm: SignatureAlgorithm | null | undefined;

  private constructor(
    readonly der: Buffer,
    /** The subject public key as a node KeyObject. */
    readonly publicKey: KeyObject,
    readonly version: number,
    /** serialNumber INTEGER content octets. */
    readonly serialNumber: Buffer,
    readonly tbsCertificate: Buffer,
    /** signatureAlgorithm, DER. */
    readonly signatureAlgorithmIdentifier: Buffer,
    /** signatureValue: the BIT STRING's octets after its unused-bits octet. */
    readonly signatureValue: Buffer,
    /** The unused-bits octet of signatureValue (0 in any certificate that verifies). */
    private readonly signatureUnusedBits: number,
    readonly issuerDer: Buffer,
    readonly subjectDer: Buffer,
    readonly notBefore: Date,
    readonly notAfter: Date,
    /** SubjectPublicKeyInfo exactly as in the certificate (what G-IKEv2 AUTH_KEY carries). */
    readonly subjectPublicKeyInfo: Buffer,
    readonly extensions: readonly CertificateExtension[],
    readonly basicConstraints: BasicConstraints | undefined,
    readonly keyUsage: ReadonlySet<KeyUsageName> | undefined,
    readonly extendedKeyUsage: readonly string[] | undefined,
    readonly subjectAltNames: readonly GeneralName[],
  ) {}

  /**
   * node's X509Certificate for the same DER, built on first use and kept.
   * Parsing, chain validation and identity matching do not need it; it costs
   * an OpenSSL decode of the whole certificate, public key included. Throws
   * node's error if OpenSSL cannot read the DER, which x509-parity.ts is
   * there to rule out.
   */
  get x509(): X509Certificate {
    this.#x509 ??= new X509Certificate(this.der);
    return this.#x509;
  }

  /** Whether `x509` has been built yet (it is built by `x509`, `subject` and `issuer`). */
  get x509Built(): boolean {
    return this.#x509 !== undefined;
  }

  /** Subject DN as node renders it; for logs and messages only. */
  get subject(): string {
    this.#subject ??= this.displayName('subject');
    return this.#subject;
  }

  /** Issuer DN as node renders it; for logs and messages only. */
  get issuer(): string {
    this.#issuer ??= this.displayName('issuer');
    return this.#issuer;
  }

  private displayName(which: 'subject' | 'issuer'): string {
    let text: string | undefined;
    try {
      text = this.x509[which];
    } catch {
      // DER our checks let through and OpenSSL does not read: a message must not fail for it.
      return `<${which} node:crypto cannot render>`;
    }
    // node gives undefined, not '', for an empty name.
    return (text ?? '').replace(/\n/g, ', ');
  }

  /** Subject and issuer names are the same (RFC 5280: "self-issued"). */
  get isSelfIssued(): boolean {
    return this.subjectDer.equals(this.issuerDer);
  }

  /** The signature algorithm, or undefined when this implementation does not support it. */
  get signatureAlgorithm(): SignatureAlgorithm | undefined {
    try {
      return parseAlgorithmIdentifier(this.signatureAlgorithmIdentifier);
    } catch {
      return undefined;
    }
  }

  /** Critical extensions this implementation does not process. */
  get unhandledCriticalExtensions(): string[] {
    return this.extensions.filter((e) => e.critical && !HANDLED_EXTENSIONS.has(e.oid)).map((e) => e.oid);
  }

  extension(oid: string): CertificateExtension | undefined {
    return this.extensions.find((e) => e.oid === oid);
  }

  /**
   * Whether `issuer`'s key verifies this certificate's signature. Never throws.
   * The signature over the tbsCertificate octets is checked with node:crypto
   * for the algorithms signature.ts knows (and the SHA-1 forms, which OpenSSL
   * accepts in certificates); only an algorithm or issuer key type outside
   * those goes to X509Certificate.verify, so every verdict is OpenSSL's.
   */
  isSignedBy(issuer: Certificate): boolean {
    // A signature is whole octets (RFC 5280 4.1.1.3); OpenSSL refuses any other.
    if (this.signatureUnusedBits !== 0) return false;
    this.#verifiedAlgorithm ??= certificateSignatureAlgorithm(this.signatureAlgorithmIdentifier);
    const alg = this.#verifiedAlgorithm;
    const key = issuer.publicKey;
    if (alg !== null && signingKeyType(key) !== undefined) {
      // A key type we know that cannot make this kind of signature: OpenSSL refuses it too.
      if (!keyFitsAlgorithm(alg, key)) return false;
      try {
        verifyWithAlgorithm(alg, key, this.tbsCertificate, this.signatureValue);
        return true;
      } catch {
        return false;
      }
    }
    try {
      return this.x509.verify(key);
    } catch {
      return false;
    }
  }

  toPem(): string {
    return derToPem(this.der, 'CERTIFICATE');
  }

  /** Parses DER. Throws CertificateError 'malformed'. */
  static fromDer(input: Uint8Array): Certificate {
    // Own copy, outside node's shared pool: the certificate outlives the datagram, and a pooled slice would keep an 8 KiB slab with it.
    const der = Buffer.allocUnsafeSlow(input.length);
    der.set(input);
    try {
      return Certificate.parseFields(der);
    } catch (e) {
      if (e instanceof CertificateError) throw e;
      throw malformed(e instanceof Asn1Error ? e.message : 'unreadable certificate field');
    }
  }

  private static parseFields(der: Buffer): Certificate {
    const top = new DerReader(der, 'Certificate');
    const cert = top.sequence('Certificate');
    top.finish('Certificate');
    const tbsEl = cert.expect(Tag.SEQUENCE, 'tbsCertificate');
    const sigAlgEl = cert.expect(Tag.SEQUENCE, 'signatureAlgorithm');
    const signature = decodeBitString(cert.expect(Tag.BIT_STRING, 'signatureValue'), 'signatureValue');
    cert.finish('Certificate');
    checkAlgorithmIdentifier(der, sigAlgEl, 'signatureAlgorithm');

    const tbs = DerReader.inside(der, tbsEl, 'tbsCertificate');
    let version = 1;
    const v = tbs.optional(contextTag(0, true), 'version');
    if (v) {
      const r = DerReader.inside(der, v, 'version');
      version = decodeSmallInteger(r.expect(Tag.INTEGER, 'version'), 'version', 2) + 1;
      r.finish('version');
    }
    const serialEl = tbs.expect(Tag.INTEGER, 'serialNumber');
    checkSerialNumber(serialEl);
    const innerSigAlg = tbs.expect(Tag.SEQUENCE, 'signature');
    if (!bufOf(innerSigAlg.bytes).equals(bufOf(sigAlgEl.bytes))) {
      throw malformed('tbsCertificate.signature differs from signatureAlgorithm (RFC 5280 4.1.1.2)');
    }
    const issuerEl = tbs.expect(Tag.SEQUENCE, 'issuer');
    checkName(der, issuerEl, 'issuer');
    const validity = tbs.sequence('validity');
    const notBefore = decodeTime(validity.next('notBefore'), 'notBefore');
    const notAfter = decodeTime(validity.next('notAfter'), 'notAfter');
    validity.finish('validity');
    const subjectEl = tbs.expect(Tag.SEQUENCE, 'subject');
    checkName(der, subjectEl, 'subject');
    const spkiEl = tbs.expect(Tag.SEQUENCE, 'subjectPublicKeyInfo');
    checkUniqueId(tbs.optional(contextTag(1, false), 'issuerUniqueID'), 'issuerUniqueID');
    checkUniqueId(tbs.optional(contextTag(2, false), 'subjectUniqueID'), 'subjectUniqueID');
    const extensions: CertificateExtension[] = [];
    const extsEl = tbs.optional(contextTag(3, true), 'extensions');
    tbs.finish('tbsCertificate');
    if (extsEl) {
      if (version !== 3) throw malformed('extensions in a certificate that is not version 3');
      const outer = DerReader.inside(der, extsEl, 'extensions');
      const list = outer.sequence('Extensions');
      outer.finish('extensions');
      while (!list.atEnd) {
        const ext = list.sequence('Extension');
        const oid = decodeOid(ext.expect(Tag.OID, 'extnID'), 'extnID');
        const critEl = ext.optional(Tag.BOOLEAN, 'critical');
        const critical = critEl ? decodeBoolean(critEl, 'critical') : false;
        const value = bufOf(decodeOctetString(ext.expect(Tag.OCTET_STRING, 'extnValue'), 'extnValue'));
        ext.finish('Extension');
        if (extensions.some((e) => e.oid === oid)) throw malformed(`extension ${oid} appears twice`);
        extensions.push({ oid, critical, value });
      }
      if (extensions.length === 0) throw malformed('empty extensions list');
    }

    const publicKey = importSubjectPublicKey(der, spkiEl);

    const find = (oid: string): Buffer | undefined => extensions.find((e) => e.oid === oid)?.value;
    const bcDer = find(ExtensionOid.basicConstraints);
    const kuDer = find(ExtensionOid.keyUsage);
    const ekuDer = find(ExtensionOid.extKeyUsage);
    const sanDer = find(ExtensionOid.subjectAltName);

    return new Certificate(
      der,
      publicKey,
      version,
      bufOf(serialEl.content),
      bufOf(tbsEl.bytes),
      bufOf(sigAlgEl.bytes),
      bufOf(signature.bytes),
      signature.unusedBits,
      bufOf(issuerEl.bytes),
      bufOf(subjectEl.bytes),
      notBefore,
      notAfter,
      bufOf(spkiEl.bytes),
      extensions,
      bcDer ? parseBasicConstraints(bcDer) : undefined,
      kuDer ? parseKeyUsage(kuDer) : undefined,
      ekuDer ? parseExtendedKeyUsage(ekuDer) : undefined,
      sanDer ? parseGeneralNames(sanDer, 'subjectAltName') : [],
    );
  }
}

// ------------------------------------------------------------------ public keys

const EC_PUBLIC_KEY = Oid.ecPublicKey;
interface NamedCurve {
  readonly type: SigningKeyType;
  readonly jwk: 'P-256' | 'P-384' | 'P-521';
  /** Octets of one coordinate. */
  readonly size: number;
  /**
   * Whether to import the key as a JWK. node's JWK import runs OpenSSL's full
   * key check, a scalar multiplication by the group order: cheap on P-256,
   * which OpenSSL optimises (about 80 µs against 250-300 µs for node's SPKI
   * decoder), but several times the decoder's cost on P-384 (about 800 µs
   * against 230 µs) and P-521 (1.4 ms against 160 µs). Those two are decoded
   * from the SubjectPublicKeyInfo instead.
   */
  readonly viaJwk: boolean;
}
const NAMED_CURVES: Readonly<Record<string, NamedCurve>> = {
  '1.2.840.10045.3.1.7': { type: 'ec-p256', jwk: 'P-256', size: 32, viaJwk: true },
  '1.3.132.0.34': { type: 'ec-p384', jwk: 'P-384', size: 48, viaJwk: false },
  '1.3.132.0.35': { type: 'ec-p521', jwk: 'P-521', size: 66, viaJwk: false },
};
/** RFC 8410: the public key is the raw encoding, 32 or 57 octets. */
const EDDSA_KEY_LENGTH: Readonly<Record<string, { readonly crv: 'Ed25519' | 'Ed448'; readonly type: SigningKeyType; readonly length: number }>> = {
  [Oid.ed25519]: { crv: 'Ed25519', type: 'ed25519', length: 32 },
  [Oid.ed448]: { crv: 'Ed448', type: 'ed448', length: 57 },
};

/** The curve of an id-ecPublicKey SubjectPublicKeyInfo with a named curve (RFC 5480), if one we sign with. */
function namedCurveType(der: Buffer, spkiEl: Asn1Element): SigningKeyType | undefined {
  const spki = DerReader.inside(der, spkiEl, 'subjectPublicKeyInfo');
  const alg = spki.sequence('algorithm');
  if (decodeOid(alg.expect(Tag.OID, 'algorithm'), 'algorithm') !== EC_PUBLIC_KEY) return undefined;
  if (alg.peekTag() !== Tag.OID) return undefined;
  return NAMED_CURVES[decodeOid(alg.expect(Tag.OID, 'namedCurve'), 'namedCurve')]?.type;
}

/** A positive INTEGER's magnitude without the sign octet; undefined for zero, negative or non-minimal encodings. */
function positiveMagnitude(el: Asn1Element): Buffer | undefined {
  const c = el.content;
  if (c.length === 0 || (c[0]! & 0x80) !== 0) return undefined;
  if (c[0] !== 0) return bufOf(c);
  if (c.length < 2 || (c[1]! & 0x80) === 0) return undefined;
  return bufOf(c.subarray(1));
}

function b64url(u: Uint8Array): string {
  return bufOf(u).toString('base64url');
}

interface JwkKey {
  readonly jwk: JsonWebKey;
  readonly type: SigningKeyType;
}

/**
 * The JWK of a SubjectPublicKeyInfo in one of the forms nearly every
 * certificate uses: id-ecPublicKey on P-256 with an uncompressed point
 * (RFC 5480), rsaEncryption with NULL or absent parameters (RFC 3279),
 * Ed25519 or Ed448 (RFC 8410), all in strict DER. Anything else (P-384 and
 * P-521 included, see NamedCurve.viaJwk) gives undefined and is left to
 * node's SPKI decoder.
 */
function spkiToJwk(der: Buffer, spkiEl: Asn1Element): JwkKey | undefined {
  try {
    const spki = DerReader.inside(der, spkiEl, 'subjectPublicKeyInfo');
    const alg = spki.sequence('algorithm');
    const oid = decodeOid(alg.expect(Tag.OID, 'algorithm'), 'algorithm');
    const params = alg.atEnd ? undefined : alg.next('parameters');
    alg.finish('algorithm');
    const bits = spki.expect(Tag.BIT_STRING, 'subjectPublicKey').content;
    spki.finish('subjectPublicKeyInfo');
    if (bits.length < 2 || bits[0] !== 0) return undefined;
    const key = bits.subarray(1);
    if (oid === EC_PUBLIC_KEY) {
      if (params?.tag !== Tag.OID) return undefined;
      const curve = NAMED_CURVES[decodeOid(params, 'namedCurve')];
      if (!curve?.viaJwk || key.length !== 1 + 2 * curve.size || key[0] !== 0x04) return undefined;
      const x = key.subarray(1, 1 + curve.size);
      const y = key.subarray(1 + curve.size);
      return { jwk: { kty: 'EC', crv: curve.jwk, x: b64url(x), y: b64url(y) }, type: curve.type };
    }
    if (oid === Oid.rsaEncryption) {
      if (params && (params.tag !== Tag.NULL || params.content.length !== 0)) return undefined;
      const r = new DerReader(key, 'RSAPublicKey');
      const seq = r.sequence('RSAPublicKey');
      r.finish('RSAPublicKey');
      const n = positiveMagnitude(seq.expect(Tag.INTEGER, 'modulus'));
      const e = positiveMagnitude(seq.expect(Tag.INTEGER, 'publicExponent'));
      seq.finish('RSAPublicKey');
      if (!n || !e) return undefined;
      return { jwk: { kty: 'RSA', n: b64url(n), e: b64url(e) }, type: 'rsa' };
    }
    const ed = EDDSA_KEY_LENGTH[oid];
    if (ed && !params && key.length === ed.length) return { jwk: { kty: 'OKP', crv: ed.crv, x: b64url(key) }, type: ed.type };
    return undefined;
  } catch {
    return undefined;
  }
}

/**
 * The subject public key. The common forms are imported as JWK (no OpenSSL
 * decoder); the rest, and anything the JWK import refuses, go through node's
 * SPKI import, whose verdict is the same one X509Certificate's eager decode
 * gave. Throws CertificateError 'malformed' when node cannot use the key.
 */
function importSubjectPublicKey(der: Buffer, spkiEl: Asn1Element): KeyObject {
  const fast = spkiToJwk(der, spkiEl);
  if (fast) {
    try {
      const key = createPublicKey({ key: fast.jwk, format: 'jwk' });
      rememberKeyType(key, fast.type);
      return key;
    } catch {
      // Not a valid key of its kind (a point off the curve, say): node's decoder has the last word.
    }
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: bufOf(spkiEl.bytes), format: 'der', type: 'spki' });
  } catch {
    throw malformed('not a public key node:crypto can read');
  }
  const curve = key.asymmetricKeyType === 'ec' ? namedCurveType(der, spkiEl) : undefined;
  if (curve) rememberKeyType(key, curve);
  return key;
}

// ------------------------------------------------------------------ signatures

const ECDSA_WITH_SHA1 = '1.2.840.10045.4.1';

/** The SHA-1 certificate signatures X509Certificate.verify accepts; RFC 7427 AUTH payloads never do (RFC 8247). */
const SHA1_CERTIFICATE_SIGNATURES: ReadonlyMap<string, SignatureAlgorithm> = new Map<string, SignatureAlgorithm>([
  [Oid.sha1WithRSAEncryption, Object.freeze<SignatureAlgorithm>({ scheme: 'rsa-pkcs1', hash: 'sha1' })],
  [ECDSA_WITH_SHA1, Object.freeze<SignatureAlgorithm>({ scheme: 'ecdsa', hash: 'sha1' })],
]);

/** A certificate's signature algorithm as isSignedBy verifies it itself, or null when it is left to OpenSSL. */
function certificateSignatureAlgorithm(der: Buffer): SignatureAlgorithm | null {
  try {
    return parseAlgorithmIdentifier(der);
  } catch {
    // Not an RFC 7427 algorithm; perhaps SHA-1.
  }
  try {
    const top = new DerReader(der, 'signatureAlgorithm');
    const seq = top.sequence('AlgorithmIdentifier');
    top.finish('signatureAlgorithm');
    const alg = SHA1_CERTIFICATE_SIGNATURES.get(decodeOid(seq.expect(Tag.OID, 'algorithm'), 'algorithm'));
    if (!alg) return null;
    // Parameters as parseAlgorithmIdentifier takes them: NULL or absent for RSA, absent for ECDSA.
    const p = alg.scheme === 'rsa-pkcs1' ? seq.optional(Tag.NULL, 'parameters') : undefined;
    if (p) decodeNull(p);
    seq.finish('AlgorithmIdentifier');
    return alg;
  } catch {
    return null;
  }
}

function parseBasicConstraints(der: Buffer): BasicConstraints {
  const top = new DerReader(der, 'basicConstraints');
  const seq = top.sequence('BasicConstraints');
  top.finish('basicConstraints');
  const caEl = seq.optional(Tag.BOOLEAN, 'cA');
  const ca = caEl ? decodeBoolean(caEl, 'cA') : false;
  const plEl = seq.optional(Tag.INTEGER, 'pathLenConstraint');
  seq.finish('BasicConstraints');
  const pathLenConstraint = plEl ? decodeSmallInteger(plEl, 'pathLenConstraint', 255) : undefined;
  return pathLenConstraint === undefined ? { ca } : { ca, pathLenConstraint };
}

function parseKeyUsage(der: Buffer): ReadonlySet<KeyUsageName> {
  const r = new DerReader(der, 'keyUsage');
  const bits = decodeBitString(r.expect(Tag.BIT_STRING, 'KeyUsage'), 'KeyUsage');
  r.finish('keyUsage');
  const out = new Set<KeyUsageName>();
  for (const [name, bit] of Object.entries(KeyUsageBit) as [KeyUsageName, number][]) {
    if (bitIsSet(bits, bit)) out.add(name);
  }
  return out;
}

function parseExtendedKeyUsage(der: Buffer): string[] {
  const top = new DerReader(der, 'extKeyUsage');
  const seq = top.sequence('ExtKeyUsageSyntax');
  top.finish('extKeyUsage');
  const out: string[] = [];
  while (!seq.atEnd) out.push(decodeOid(seq.expect(Tag.OID, 'KeyPurposeId'), 'KeyPurposeId'));
  return out;
}

function parseGeneralName(r: DerReader, el: Asn1Element): GeneralName {
  switch (el.tag) {
    case contextTag(1, false):
      return { type: 'email', value: decodeString({ ...el, tag: Tag.IA5_STRING }, 'rfc822Name') };
    case contextTag(2, false):
      return { type: 'dns', value: decodeString({ ...el, tag: Tag.IA5_STRING }, 'dNSName') };
    case contextTag(6, false):
      return { type: 'uri', value: decodeString({ ...el, tag: Tag.IA5_STRING }, 'uniformResourceIdentifier') };
    case contextTag(7, false):
      if (el.content.length !== 4 && el.content.length !== 16) {
        throw new Asn1Error('bad-value', 'iPAddress', `${el.content.length} octets is neither IPv4 nor IPv6`, el.offset);
      }
      return { type: 'ip', value: Buffer.from(el.content) };
    case contextTag(4, true): {
      const inner = DerReader.inside(r.buf, el, 'directoryName');
      const name = inner.expect(Tag.SEQUENCE, 'Name');
      inner.finish('directoryName');
      return { type: 'directory', value: Buffer.from(name.bytes) };
    }
    default:
      return { type: 'other', tag: el.tag, value: Buffer.from(el.bytes) };
  }
}

function parseGeneralNames(der: Buffer, what: string): GeneralName[] {
  const top = new DerReader(der, what);
  const seq = top.sequence('GeneralNames');
  top.finish(what);
  const out: GeneralName[] = [];
  while (!seq.atEnd) out.push(parseGeneralName(seq, seq.next('GeneralName')));
  if (out.length === 0) throw new Asn1Error('bad-value', what, 'GeneralNames must not be empty', 0);
  return out;
}

// ------------------------------------------------------------------ PEM

export function derToPem(der: Uint8Array, label: string): string {
  const b64 = bufOf(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]*?)-----END CERTIFICATE-----/g;

/** Every CERTIFICATE block in a PEM text, in order. Throws CertificateError 'malformed'. */
export function parsePemCertificates(pem: string): Certificate[] {
  const out: Certificate[] = [];
  for (const m of pem.matchAll(PEM_CERT)) out.push(Certificate.fromDer(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64')));
  return out;
}

/** A certificate from DER octets or a PEM text holding exactly one CERTIFICATE block. */
export function parseCertificate(input: Uint8Array | string): Certificate {
  if (typeof input !== 'string') return Certificate.fromDer(input);
  const certs = parsePemCertificates(input);
  if (certs.length !== 1) throw malformed(`expected one PEM certificate, found ${certs.length}`);
  return certs[0]!;
}

/** SubjectPublicKeyInfo DER of a key (the G-IKEv2 AUTH_KEY format, RFC 9838 4.5.3.2). */
export function publicKeyToSpki(key: KeyObject): Buffer {
  if (key.type === 'secret') throw new TypeError('a secret key has no SubjectPublicKeyInfo');
  return key.export({ type: 'spki', format: 'der' });
}

// ------------------------------------------------------------------ chain validation

export interface ChainValidationOptions {
  readonly trustAnchors: readonly Certificate[];
  /** The time to validate at; supplied by the caller (the core never reads the clock). */
  readonly now: Date;
  /** Most certificates in a path, end entity and trust anchor included. Default 8. */
  readonly maxChainLength?: number;
  /**
   * RFC 4945 5.1.3.2: an end-entity keyUsage, when present, must allow
   * digitalSignature or nonRepudiation. Default true.
   */
  readonly requireSigningKeyUsage?: boolean;
}

export interface ValidatedChain {
  /** End entity first, trust anchor last (one element when the end entity is itself an anchor). */
  readonly path: readonly Certificate[];
  readonly trustAnchor: Certificate;
}

const DEFAULT_MAX_CHAIN = 8;

/** Which failure to report when no path works: the one closest to success. */
const REASON_RANK: Readonly<Record<CertificateErrorReason, number>> = {
  expired: 5,
  'not-yet-valid': 5,
  'not-a-ca': 5,
  'key-usage': 5,
  malformed: 5,
  'id-mismatch': 5,
  'path-too-long': 4,
  'bad-signature': 3,
  untrusted: 1,
};

function checkValidity(c: Certificate, now: Date): void {
  if (now.getTime() < c.notBefore.getTime()) {
    throw new CertificateError('not-yet-valid', `valid from ${c.notBefore.toISOString()}`, c.subject);
  }
  if (now.getTime() > c.notAfter.getTime()) {
    throw new CertificateError('expired', `expired ${c.notAfter.toISOString()}`, c.subject);
  }
}

/** RFC 5280 6.1 checks on a complete path (end entity first, anchor last). */
function checkPath(path: readonly Certificate[], opts: ChainValidationOptions): void {
  const isAnchorOnly = path.length === 1;
  path.forEach((c, i) => {
    checkValidity(c, opts.now);
    const isAnchor = i === path.length - 1 && !isAnchorOnly;
    if (!isAnchor) {
      const unhandled = c.unhandledCriticalExtensions;
      if (unhandled.length > 0) throw new CertificateError('malformed', `unsupported critical extension(s) ${unhandled.join(', ')}`, c.subject);
    }
    if (i === 0) return;
    // An issuer: RFC 5280 6.1.4 (k), (l), (n).
    if (c.basicConstraints?.ca !== true) throw new CertificateError('not-a-ca', 'issuer lacks basicConstraints cA=TRUE', c.subject);
    if (c.keyUsage && !c.keyUsage.has('keyCertSign')) throw new CertificateError('key-usage', 'issuer keyUsage lacks keyCertSign', c.subject);
    const limit = c.basicConstraints.pathLenConstraint;
    if (limit !== undefined) {
      // Non-self-issued intermediates between this CA and the end entity.
      const below = path.slice(1, i).filter((x) => !x.isSelfIssued).length;
      if (below > limit) throw new CertificateError('path-too-long', `pathLenConstraint ${limit} allows ${limit} intermediate(s) below, found ${below}`, c.subject);
    }
  });
  const ee = path[0]!;
  if ((opts.requireSigningKeyUsage ?? true) && ee.keyUsage && !ee.keyUsage.has('digitalSignature') && !ee.keyUsage.has('nonRepudiation')) {
    throw new CertificateError('key-usage', 'end-entity keyUsage allows neither digitalSignature nor nonRepudiation', ee.subject);
  }
  // RFC 4945 5.1.3.12: a critical EKU must allow IKE (or any purpose).
  const eku = ee.extension(ExtensionOid.extKeyUsage);
  if (eku?.critical && ee.extendedKeyUsage) {
    const ok = ee.extendedKeyUsage.includes(ExtendedKeyUsageOid.ipsecIKE) || ee.extendedKeyUsage.includes(ExtendedKeyUsageOid.anyExtendedKeyUsage);
    if (!ok) throw new CertificateError('key-usage', 'critical extendedKeyUsage allows neither ipsecIKE nor any purpose', ee.subject);
  }
}

/**
 * Builds and validates a path from `endEntity` through `intermediates` to one
 * of `opts.trustAnchors`. Issuer and subject names are matched as DER octets;
 * each signature is verified with the issuer's key. Returns the path or
 * throws CertificateError with the most specific reason found.
 */
export function validateCertificateChain(
  endEntity: Certificate,
  intermediates: readonly Certificate[],
  opts: ChainValidationOptions,
): ValidatedChain {
  const max = opts.maxChainLength ?? DEFAULT_MAX_CHAIN;
  const anchors = opts.trustAnchors;
  const isAnchor = (c: Certificate): boolean => anchors.some((a) => a.der.equals(c.der));
  // The error to report if no path is found; made only then (an Error captures a stack trace, costly on every validation).
  let best: CertificateError | undefined;
  const note = (e: CertificateError): void => {
    if (REASON_RANK[e.reason] > REASON_RANK[best?.reason ?? 'untrusted']) best = e;
  };

  const search = (path: Certificate[]): Certificate[] | undefined => {
    const current = path[path.length - 1]!;
    if (isAnchor(current)) {
      try {
        checkPath(path, opts);
        return path;
      } catch (e) {
        if (e instanceof CertificateError) {
          note(e);
          return undefined;
        }
        throw e;
      }
    }
    const candidates = [
      ...anchors.filter((a) => a.subjectDer.equals(current.issuerDer)),
      ...intermediates.filter((c) => c.subjectDer.equals(current.issuerDer) && !isAnchor(c)),
    ].filter((c) => !path.some((p) => p.der.equals(c.der)));
    for (const issuer of candidates) {
      if (path.length + 1 > max) {
        note(new CertificateError('path-too-long', `more than ${max} certificates needed to reach a trust anchor`, endEntity.subject));
        continue;
      }
      if (!current.isSignedBy(issuer)) {
        note(new CertificateError('bad-signature', `signature does not verify with the key of ${issuer.subject}`, current.subject));
        continue;
      }
      const found = search([...path, issuer]);
      if (found) return found;
    }
    return undefined;
  };

  const path = search([endEntity]);
  if (!path) throw best ?? new CertificateError('untrusted', 'no path to a trust anchor', endEntity.subject);
  return { path, trustAnchor: path[path.length - 1]! };
}

// ------------------------------------------------------------------ identities

function ipBytes(text: string): Buffer | undefined {
  const v = isIP(text);
  if (v === 4) return Buffer.from(text.split('.').map(Number));
  if (v !== 6) return undefined;
  // Expand "::" and an embedded dotted quad.
  let s = text;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (dotted) {
    const b = Buffer.from(dotted[1]!.split('.').map(Number));
    s = `${s.slice(0, -dotted[1]!.length)}${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail] = s.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Parses an IPv4/IPv6 address text into its 4 or 16 octets (helper for configuration and tests). */
export function ipAddressBytes(text: string): Buffer {
  const b = ipBytes(text);
  if (!b) throw new RangeError(`not an IP address: ${text}`);
  return b;
}

function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

function emailMatches(id: string, san: string): boolean {
  // Local part exact, domain case-insensitive (RFC 5280 7.5).
  const a = id.lastIndexOf('@');
  const b = san.lastIndexOf('@');
  if (a <= 0 || b <= 0) return false;
  return id.slice(0, a) === san.slice(0, b) && asciiLower(id.slice(a + 1)) === asciiLower(san.slice(b + 1));
}

/**
 * Whether an IKE identity (ID payload type and data) is the certificate's
 * (RFC 4945 3.1): ID_DER_ASN1_DN equals the subject DN octets; ID_FQDN a
 * dNSName, ASCII case-insensitively and without wildcards; ID_RFC822_ADDR an
 * rfc822Name; ID_IPV4_ADDR / ID_IPV6_ADDR an iPAddress of the same family.
 * Other ID types never match a certificate.
 */
export function identityMatchesCertificate(idType: number, idData: Uint8Array, cert: Certificate): boolean {
  const data = bufOf(idData);
  switch (idType) {
    case IdType.ID_DER_ASN1_DN:
      return data.length > 0 && data.equals(cert.subjectDer);
    case IdType.ID_FQDN: {
      const fqdn = asciiLower(data.toString('latin1'));
      if (fqdn.length === 0) return false;
      return cert.subjectAltNames.some((n) => n.type === 'dns' && asciiLower(n.value) === fqdn);
    }
    case IdType.ID_RFC822_ADDR: {
      const addr = data.toString('latin1');
      return cert.subjectAltNames.some((n) => n.type === 'email' && emailMatches(addr, n.value));
    }
    case IdType.ID_IPV4_ADDR:
      return data.length === 4 && cert.subjectAltNames.some((n) => n.type === 'ip' && n.value.equals(data));
    case IdType.ID_IPV6_ADDR:
      return data.length === 16 && cert.subjectAltNames.some((n) => n.type === 'ip' && n.value.equals(data));
    default:
      return false;
  }
}

/** identityMatchesCertificate, throwing CertificateError 'id-mismatch' when it does not. */
export function assertIdentityMatchesCertificate(idType: number, idData: Uint8Array, cert: Certificate): void {
  if (!identityMatchesCertificate(idType, idData, cert)) {
    throw new CertificateError('id-mismatch', `ID of type ${idType} does not match the certificate`, cert.subject);
  }
}
