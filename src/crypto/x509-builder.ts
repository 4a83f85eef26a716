/**
 * A small X.509 v3 certificate builder: self-signed CAs, intermediates and
 * end-entity certificates for ECDSA P-256/P-384/P-521, RSA (PKCS#1 v1.5 or
 * PSS signatures) and EdDSA. Used by tests and by the operator PKI command;
 * it is deliberately not a general-purpose CA (no CRLs, no policies).
 */
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import {
  DerReader,
  Tag,
  decodeBitString,
  derBitString,
  derBoolean,
  derExplicit,
  derImplicit,
  derInteger,
  derNamedBits,
  derOctetString,
  derOid,
  derPrintableString,
  derSequence,
  derSetOf,
  derTime,
  derUnsignedInteger,
  derUtf8String,
} from './asn1.ts';
import {
  chooseSignatureAlgorithm,
  encodeAlgorithmIdentifier,
  signWithAlgorithm,
  type AlgorithmChoice,
  type SignatureAlgorithm,
} from './signature.ts';
import {
  Certificate,
  ExtensionOid,
  KeyUsageBit,
  derToPem,
  ipAddressBytes,
  publicKeyToSpki,
  type KeyUsageName,
} from './x509.ts';

export type KeySpec = 'ec-p256' | 'ec-p384' | 'ec-p521' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096' | 'ed25519' | 'ed448';

export interface SigningKeyPair {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

/** A fresh key pair of the given kind. */
export function generateSigningKeyPair(spec: KeySpec): SigningKeyPair {
  switch (spec) {
    case 'ec-p256':
      return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    case 'ec-p384':
      return generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    case 'ec-p521':
      return generateKeyPairSync('ec', { namedCurve: 'secp521r1' });
    case 'rsa-2048':
      return generateKeyPairSync('rsa', { modulusLength: 2048 });
    case 'rsa-3072':
      return generateKeyPairSync('rsa', { modulusLength: 3072 });
    case 'rsa-4096':
      return generateKeyPairSync('rsa', { modulusLength: 4096 });
    case 'ed25519':
      return generateKeyPairSync('ed25519');
    case 'ed448':
      return generateKeyPairSync('ed448');
  }
}

/** The subject attributes the builder supports, encoded in the order C, O, OU, CN. */
export interface DistinguishedName {
  readonly C?: string;
  readonly O?: string;
  readonly OU?: string;
  readonly CN?: string;
}

const ATTRIBUTE_OID = { C: '2.5.4.6', O: '2.5.4.10', OU: '2.5.4.11', CN: '2.5.4.3' } as const;

/** DER Name: one single-valued RDN per attribute; countryName as PrintableString, the rest UTF8String (RFC 5280 4.1.2.4). */
export function encodeName(dn: DistinguishedName): Buffer {
  const rdns: Buffer[] = [];
  for (const key of ['C', 'O', 'OU', 'CN'] as const) {
    const value = dn[key];
    if (value === undefined) continue;
    if (key === 'C' && !/^[A-Z]{2}$/.test(value)) throw new RangeError('countryName must be two capital letters');
    if (value.length === 0 || value.length > 64) throw new RangeError(`${key} must be 1..64 characters`);
    const encoded = key === 'C' ? derPrintableString(value) : derUtf8String(value);
    rdns.push(derSetOf(derSequence(derOid(ATTRIBUTE_OID[key]), encoded)));
  }
  return derSequence(...rdns);
}

export interface SubjectAltNames {
  readonly dns?: readonly string[];
  readonly email?: readonly string[];
  /** IPv4 or IPv6 address text. */
  readonly ip?: readonly string[];
}

export interface RawExtension {
  readonly oid: string;
  readonly critical: boolean;
  /** extnValue contents. */
  readonly value: Uint8Array;
}

export interface CertificateTemplate {
  readonly subject: DistinguishedName;
  readonly publicKey: KeyObject;
  /** Unsigned magnitude; default 16 random octets (positive, non-zero). */
  readonly serialNumber?: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Written critical. Absent: no basicConstraints extension. */
  readonly basicConstraints?: { readonly ca: boolean; readonly pathLenConstraint?: number };
  /** Written critical. */
  readonly keyUsage?: readonly KeyUsageName[];
  readonly extendedKeyUsage?: readonly string[];
  readonly subjectAltName?: SubjectAltNames;
  /** Further extensions, appended as given (tests use this for odd cases). */
  readonly extraExtensions?: readonly RawExtension[];
}

/** The signer of a certificate: no `certificate` means self-signed with the template's subject. */
export interface IssuerCredentials {
  readonly privateKey: KeyObject;
  readonly certificate?: Certificate;
  /** The signature algorithm; default chosen by key (PKCS#1 v1.5 for RSA, natural hash for ECDSA). */
  readonly signatureAlgorithm?: SignatureAlgorithm;
}

export interface BuiltCertificate {
  readonly certificate: Certificate;
  readonly der: Buffer;
  readonly pem: string;
}

function extension(oid: string, critical: boolean, value: Uint8Array): Buffer {
  return critical ? derSequence(derOid(oid), derBoolean(true), derOctetString(value)) : derSequence(derOid(oid), derOctetString(value));
}

/** RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING value. */
export function keyIdentifier(spki: Uint8Array): Buffer {
  const top = new DerReader(spki, 'SubjectPublicKeyInfo');
  const seq = top.sequence('SubjectPublicKeyInfo');
  seq.expect(Tag.SEQUENCE, 'algorithm');
  const key = decodeBitString(seq.expect(Tag.BIT_STRING, 'subjectPublicKey'), 'subjectPublicKey');
  return createHash('sha1').update(key.bytes).digest();
}

function randomSerial(): Buffer {
  const s = randomBytes(16);
  s[0] = (s[0]! & 0x7f) | 0x01; // positive and exactly 16 octets long
  return s;
}

/** IA5String content for dNSName / rfc822Name: printable ASCII only (IDNs must be given as A-labels). */
function ia5(s: string, what: string): Buffer {
  if (!/^[\x21-\x7e]+$/.test(s)) throw new RangeError(`${what} must be non-empty printable ASCII: ${JSON.stringify(s)}`);
  return Buffer.from(s, 'ascii');
}

function generalNames(san: SubjectAltNames): Buffer {
  const names: Buffer[] = [
    ...(san.dns ?? []).map((d) => derImplicit(2, ia5(d, 'dNSName'))),
    ...(san.email ?? []).map((e) => derImplicit(1, ia5(e, 'rfc822Name'))),
    ...(san.ip ?? []).map((ip) => derImplicit(7, ipAddressBytes(ip))),
  ];
  if (names.length === 0) throw new RangeError('subjectAltName needs at least one name');
  return derSequence(...names);
}

/** Builds and signs one certificate. */
export function buildCertificate(template: CertificateTemplate, issuer: IssuerCredentials): BuiltCertificate {
  if (template.notAfter.getTime() < template.notBefore.getTime()) throw new RangeError('notAfter precedes notBefore');
  const spki = publicKeyToSpki(template.publicKey);
  const subjectName = encodeName(template.subject);
  const issuerSpki = publicKeyToSpki(createPublicKey(issuer.privateKey));
  let issuerName: Buffer;
  let authorityKeyId: Buffer;
  if (issuer.certificate) {
    if (!issuer.certificate.subjectPublicKeyInfo.equals(issuerSpki)) throw new RangeError("issuer private key does not match the issuer certificate's public key");
    issuerName = issuer.certificate.subjectDer;
    const ski = issuer.certificate.extension(ExtensionOid.subjectKeyIdentifier);
    authorityKeyId = ski ? Buffer.from(new DerReader(ski.value).expect(Tag.OCTET_STRING, 'SubjectKeyIdentifier').content) : keyIdentifier(issuerSpki);
  } else {
    if (!issuerSpki.equals(spki)) throw new RangeError('a self-signed certificate must carry the signing key');
    issuerName = subjectName;
    authorityKeyId = keyIdentifier(spki);
  }

  const choice: AlgorithmChoice = { rsaPadding: 'pkcs1' };
  const algorithm = issuer.signatureAlgorithm ?? chooseSignatureAlgorithm(issuer.privateKey, choice);
  const algId = encodeAlgorithmIdentifier(algorithm);

  const exts: Buffer[] = [];
  const bc = template.basicConstraints;
  if (bc) {
    const parts: Buffer[] = [];
    if (bc.ca) parts.push(derBoolean(true)); // DEFAULT FALSE is omitted in DER
    if (bc.pathLenConstraint !== undefined) {
      if (!bc.ca) throw new RangeError('pathLenConstraint needs cA=TRUE');
      parts.push(derInteger(bc.pathLenConstraint));
    }
    exts.push(extension(ExtensionOid.basicConstraints, true, derSequence(...parts)));
  }
  if (template.keyUsage) {
    if (template.keyUsage.length === 0) throw new RangeError('keyUsage must name at least one bit');
    exts.push(extension(ExtensionOid.keyUsage, true, derNamedBits(template.keyUsage.map((k) => KeyUsageBit[k]))));
  }
  if (template.extendedKeyUsage) {
    exts.push(extension(ExtensionOid.extKeyUsage, false, derSequence(...template.extendedKeyUsage.map((o) => derOid(o)))));
  }
  if (template.subjectAltName) {
    // RFC 5280 4.2.1.6: critical when the subject name is empty.
    const critical = Object.keys(template.subject).length === 0;
    exts.push(extension(ExtensionOid.subjectAltName, critical, generalNames(template.subjectAltName)));
  }
  exts.push(extension(ExtensionOid.subjectKeyIdentifier, false, derOctetString(keyIdentifier(spki))));
  exts.push(extension(ExtensionOid.authorityKeyIdentifier, false, derSequence(derImplicit(0, authorityKeyId))));
  for (const x of template.extraExtensions ?? []) exts.push(extension(x.oid, x.critical, x.value));

  const tbs = derSequence(
    derExplicit(0, derInteger(2)),
    derUnsignedInteger(template.serialNumber ?? randomSerial()),
    algId,
    issuerName,
    derSequence(derTime(template.notBefore), derTime(template.notAfter)),
    subjectName,
    spki,
    derExplicit(3, derSequence(...exts)),
  );
  const signature = signWithAlgorithm(algorithm, issuer.privateKey, tbs);
  const der = derSequence(tbs, algId, derBitString(signature));
  const certificate = Certificate.fromDer(der);
  return { certificate, der, pem: derToPem(der, 'CERTIFICATE') };
}

/** A CA certificate together with its signing key. */
export interface CertificateAuthority {
  readonly certificate: Certificate;
  readonly privateKey: KeyObject;
}

export interface IssueOptions {
  readonly subject: DistinguishedName;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The key to certify; default a new key of `keySpec` (itself default ec-p256). */
  readonly keyPair?: SigningKeyPair;
  readonly keySpec?: KeySpec;
  readonly serialNumber?: Uint8Array;
  /** How the issuer signs; default PKCS#1 v1.5 for RSA and the natural hash for ECDSA. */
  readonly signature?: AlgorithmChoice;
}

export interface IssuedCertificate extends BuiltCertificate {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

function keysFor(opts: IssueOptions): SigningKeyPair {
  return opts.keyPair ?? generateSigningKeyPair(opts.keySpec ?? 'ec-p256');
}

function algorithmFor(signer: KeyObject, choice: AlgorithmChoice | undefined): SignatureAlgorithm {
  return chooseSignatureAlgorithm(signer, { rsaPadding: 'pkcs1', ...choice });
}

const CA_KEY_USAGE: readonly KeyUsageName[] = ['keyCertSign', 'cRLSign', 'digitalSignature'];

/** A self-signed root CA (cA=TRUE, keyCertSign|cRLSign|digitalSignature). */
export function createSelfSignedCa(opts: IssueOptions & { readonly pathLenConstraint?: number }): IssuedCertificate {
  const keys = keysFor(opts);
  const built = buildCertificate(
    {
      subject: opts.subject,
      publicKey: keys.publicKey,
      notBefore: opts.notBefore,
      notAfter: opts.notAfter,
      basicConstraints: opts.pathLenConstraint === undefined ? { ca: true } : { ca: true, pathLenConstraint: opts.pathLenConstraint },
      keyUsage: CA_KEY_USAGE,
      ...(opts.serialNumber ? { serialNumber: opts.serialNumber } : {}),
    },
    { privateKey: keys.privateKey, signatureAlgorithm: algorithmFor(keys.privateKey, opts.signature) },
  );
  return { ...built, ...keys };
}

/** An intermediate CA certificate issued by `issuer`. */
export function issueIntermediateCa(issuer: CertificateAuthority, opts: IssueOptions & { readonly pathLenConstraint?: number }): IssuedCertificate {
  const keys = keysFor(opts);
  const built = buildCertificate(
    {
      subject: opts.subject,
      publicKey: keys.publicKey,
      notBefore: opts.notBefore,
      notAfter: opts.notAfter,
      basicConstraints: opts.pathLenConstraint === undefined ? { ca: true } : { ca: true, pathLenConstraint: opts.pathLenConstraint },
      keyUsage: CA_KEY_USAGE,
      ...(opts.serialNumber ? { serialNumber: opts.serialNumber } : {}),
    },
    { privateKey: issuer.privateKey, certificate: issuer.certificate, signatureAlgorithm: algorithmFor(issuer.privateKey, opts.signature) },
  );
  return { ...built, ...keys };
}

/** An end-entity certificate (cA=FALSE, digitalSignature) for IKE authentication. */
export function issueEndEntity(
  issuer: CertificateAuthority,
  opts: IssueOptions & { readonly subjectAltName?: SubjectAltNames; readonly keyUsage?: readonly KeyUsageName[]; readonly extendedKeyUsage?: readonly string[] },
): IssuedCertificate {
  const keys = keysFor(opts);
  const built = buildCertificate(
    {
      subject: opts.subject,
      publicKey: keys.publicKey,
      notBefore: opts.notBefore,
      notAfter: opts.notAfter,
      basicConstraints: { ca: false },
      keyUsage: opts.keyUsage ?? ['digitalSignature'],
      ...(opts.subjectAltName ? { subjectAltName: opts.subjectAltName } : {}),
      ...(opts.extendedKeyUsage ? { extendedKeyUsage: opts.extendedKeyUsage } : {}),
      ...(opts.serialNumber ? { serialNumber: opts.serialNumber } : {}),
    },
    { privateKey: issuer.privateKey, certificate: issuer.certificate, signatureAlgorithm: algorithmFor(issuer.privateKey, opts.signature) },
  );
  return { ...built, ...keys };
}
