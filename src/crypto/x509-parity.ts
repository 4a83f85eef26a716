/**
 * What OpenSSL 3 refuses in a certificate that x509.ts's own parser would
 * otherwise let through.
 *
 * node's X509Certificate decodes the whole certificate and refuses some DER
 * that the fields x509.ts reads leave alone. x509.ts builds an
 * X509Certificate only on demand (subject and issuer strings, access rules,
 * rare signature algorithms), so it must not accept a certificate OpenSSL
 * cannot read: the set accepted stays the one both accepted when every
 * certificate went through X509Certificate first. The parts our parser reads
 * itself are strict DER already; what is left are the parts it keeps as
 * opaque octets: the names, the signature AlgorithmIdentifier, the unique
 * identifiers and the serial number. These are checked here the way
 * OpenSSL's template decoder reads them (crypto/asn1/tasn_dec.c,
 * crypto/x509/x_name.c): BER lengths are allowed, as OpenSSL allows them, and
 * the rules are OpenSSL's, not RFC 5280's (a VisibleString attribute value is
 * refused, a T61String taken).
 *
 * The subject public key is not checked here: x509.ts takes the common forms
 * only when they are strict DER and leaves everything else to node's own
 * SubjectPublicKeyInfo decoder.
 */
import { isUtf8 } from 'node:buffer';
import { Asn1Error, type Asn1Element } from './asn1.ts';

/** One element as OpenSSL's decoder reads it: any tag number, non-minimal and indefinite lengths. */
interface BerElement {
  /** Class bits of the identifier octet (0x00 universal, 0x40, 0x80, 0xc0). */
  readonly cls: number;
  readonly constructed: boolean;
  readonly number: number;
  readonly offset: number;
  readonly contentStart: number;
  /** End of the contents (the end-of-contents octets of an indefinite length excluded). */
  readonly contentEnd: number;
  /** End of the whole element. */
  readonly end: number;
  /** How far the headers inside may reach: the contents, or for an indefinite length the enclosing bound. */
  readonly innerBound: number;
}

/** Nesting of indefinite lengths followed to find an element's end (ASN1_MAX_CONSTRUCTED_NEST). */
const MAX_DEPTH = 30;
/** Nesting of a constructed string's parts (ASN1_MAX_STRING_NEST). */
const MAX_STRING_NEST = 5;
/** Largest tag number before its last octet (INT_MAX >> 7). */
const MAX_TAG_PREFIX = 0xffffff;

function refuse(at: number, what: string, detail: string): never {
  throw new Asn1Error('bad-value', what, detail, at);
}

function isEoc(buf: Uint8Array, pos: number, bound: number): boolean {
  return bound - pos >= 2 && buf[pos] === 0 && buf[pos + 1] === 0;
}

/**
 * Reads the element at `pos` whose header may reach up to `bound`
 * (ASN1_get_object, with its quirks: a tag or a long-form length must be
 * followed by at least one more octet inside the bound).
 */
function readElement(buf: Uint8Array, pos: number, bound: number, what: string, depth = 0): BerElement {
  let p = pos;
  if (p >= bound) refuse(pos, what, 'no element');
  const first = buf[p++]!;
  let number = first & 0x1f;
  if (number === 0x1f) {
    if (p >= bound) refuse(pos, what, 'truncated tag');
    number = 0;
    while ((buf[p]! & 0x80) !== 0) {
      number = number * 128 + (buf[p++]! & 0x7f);
      if (p >= bound || number > MAX_TAG_PREFIX) refuse(pos, what, 'bad tag number');
    }
    number = number * 128 + (buf[p++]! & 0x7f);
  }
  if (p >= bound) refuse(pos, what, 'truncated header');
  const constructed = (first & 0x20) !== 0;
  const l = buf[p++]!;
  let length = -1;
  if (l === 0x80) {
    if (!constructed) refuse(pos, what, 'indefinite length of a primitive element');
  } else if (l < 0x80) {
    length = l;
  } else {
    let n = l & 0x7f;
    if (bound - p < n + 1) refuse(pos, what, 'truncated length');
    while (n > 0 && buf[p] === 0) {
      p++;
      n--;
    }
    if (n > 4) refuse(pos, what, 'length too large');
    length = 0;
    for (; n > 0; n--) length = length * 256 + buf[p++]!;
  }
  const cls = first & 0xc0;
  if (length >= 0) {
    if (length > bound - p) refuse(pos, what, 'length beyond its container');
    return { cls, constructed, number, offset: pos, contentStart: p, contentEnd: p + length, end: p + length, innerBound: p + length };
  }
  // Indefinite: the contents run to the end-of-contents octets at this level.
  if (depth >= MAX_DEPTH) refuse(pos, what, 'indefinite lengths nested too deeply');
  let q = p;
  while (!isEoc(buf, q, bound)) q = readElement(buf, q, bound, what, depth + 1).end;
  return { cls, constructed, number, offset: pos, contentStart: p, contentEnd: q, end: q + 2, innerBound: bound };
}

/** The elements in [start, end), headers reaching up to `bound`; end-of-contents octets only close an indefinite length. */
function children(buf: Uint8Array, start: number, end: number, bound: number, what: string): BerElement[] {
  const out: BerElement[] = [];
  for (let p = start; p < end; ) {
    if (isEoc(buf, p, end)) refuse(p, what, 'end-of-contents inside a definite length');
    const el = readElement(buf, p, bound, what);
    out.push(el);
    p = el.end;
  }
  return out;
}

function childrenOf(buf: Uint8Array, el: BerElement, what: string): BerElement[] {
  return children(buf, el.contentStart, el.contentEnd, el.innerBound, what);
}

/** The elements inside a DER element our parser read. */
function childrenOfDer(buf: Uint8Array, el: Asn1Element, what: string): BerElement[] {
  const end = el.contentOffset + el.content.length;
  return children(buf, el.contentOffset, end, end, what);
}

/** A string value's octets: the contents, or for the constructed form its primitive parts joined, whatever their tags (asn1_collect). */
function stringOctets(buf: Uint8Array, el: BerElement, what: string): Uint8Array {
  if (!el.constructed) return buf.subarray(el.contentStart, el.contentEnd);
  const parts: Uint8Array[] = [];
  const collect = (outer: BerElement, depth: number): void => {
    for (const part of childrenOf(buf, outer, what)) {
      if (!part.constructed) parts.push(buf.subarray(part.contentStart, part.contentEnd));
      else if (depth >= MAX_STRING_NEST) refuse(part.offset, what, 'constructed string nested too deeply');
      else collect(part, depth + 1);
    }
  };
  collect(el, 0);
  return Buffer.concat(parts);
}

/** Universal tag numbers. */
const U = Object.freeze({ BOOLEAN: 1, INTEGER: 2, BIT_STRING: 3, NULL: 5, OID: 6, ENUMERATED: 10, UTF8: 12, SEQUENCE: 16, SET: 17, UNIVERSAL: 28, BMP: 30 });
/** Types OpenSSL refuses in the constructed form. */
const PRIMITIVE_ONLY = new Set<number>([U.BOOLEAN, U.INTEGER, U.NULL, U.OID, U.ENUMERATED]);

/** c2i_ibuf: not empty, and no sign octet where none is needed (what DER's minimal encoding amounts to). */
function checkIntegerContent(c: Uint8Array, at: number, what: string): void {
  if (c.length === 0) refuse(at, what, 'empty INTEGER');
  if (c.length > 1 && ((c[0] === 0x00 && (c[1]! & 0x80) === 0) || (c[0] === 0xff && (c[1]! & 0x80) !== 0))) {
    refuse(at, what, 'INTEGER not minimally encoded');
  }
}

/** OpenSSL's OBJECT IDENTIFIER rule: not empty, no arc begins with 0x80, the last octet ends an arc. */
function checkOidContent(c: Uint8Array, at: number, what: string): void {
  let ok = c.length > 0 && (c[c.length - 1]! & 0x80) === 0;
  for (let i = 0; ok && i < c.length; i++) if (c[i] === 0x80 && (i === 0 || (c[i - 1]! & 0x80) === 0)) ok = false;
  if (!ok) refuse(at, what, 'invalid OBJECT IDENTIFIER encoding');
}

/** What OpenSSL requires of the value octets of a universal type in any context (asn1_ex_c2i). */
function checkUniversalContent(type: number, c: Uint8Array, at: number, what: string): void {
  switch (type) {
    case U.BOOLEAN:
      if (c.length !== 1) refuse(at, what, 'BOOLEAN not one octet');
      return;
    case U.INTEGER:
    case U.ENUMERATED:
      checkIntegerContent(c, at, what);
      return;
    case U.BIT_STRING:
      if (c.length === 0 || c[0]! > 7) refuse(at, what, 'not a BIT STRING');
      return;
    case U.NULL:
      if (c.length !== 0) refuse(at, what, 'NULL with contents');
      return;
    case U.OID:
      checkOidContent(c, at, what);
      return;
    case U.UNIVERSAL:
      if (c.length % 4 !== 0) refuse(at, what, 'UniversalString length not a multiple of 4');
      return;
    case U.BMP:
      if (c.length % 2 !== 0) refuse(at, what, 'BMPString of odd length');
      return;
    default:
      return;
  }
}

/** An ASN.1 ANY, as OpenSSL decodes AlgorithmIdentifier parameters. */
function checkAny(buf: Uint8Array, el: BerElement, what: string): void {
  if (el.cls !== 0) return; // not universal: kept as it is
  if (el.number === U.SEQUENCE || el.number === U.SET) {
    if (!el.constructed) refuse(el.offset, what, 'SEQUENCE or SET in the primitive form');
    return;
  }
  if (el.constructed && PRIMITIVE_ONLY.has(el.number)) refuse(el.offset, what, 'constructed form of a primitive type');
  checkUniversalContent(el.number, stringOctets(buf, el, what), el.offset, what);
}

/** Universal types OpenSSL takes as an attribute value in a name (B_ASN1_PRINTABLE). */
const NAME_VALUE_TYPES = new Set<number>([3, 7, 8, 9, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22, 28, 29, 30]);

function isSurrogate(v: number): boolean {
  return v >= 0xd800 && v <= 0xdfff;
}

/** An AttributeTypeAndValue value: a type OpenSSL takes and, for the Unicode types, characters it can convert to UTF-8 (x509_name_canon). */
function checkNameValue(buf: Uint8Array, el: BerElement, what: string): void {
  if (el.cls !== 0 || !NAME_VALUE_TYPES.has(el.number)) refuse(el.offset, what, 'not a type OpenSSL takes as an attribute value');
  if (el.number === U.SEQUENCE) {
    if (!el.constructed) refuse(el.offset, what, 'SEQUENCE in the primitive form');
    return;
  }
  const c = stringOctets(buf, el, what);
  checkUniversalContent(el.number, c, el.offset, what);
  if (el.number === U.UTF8) {
    if (!isUtf8(c)) refuse(el.offset, what, 'invalid UTF-8');
  } else if (el.number === U.BMP) {
    for (let i = 0; i < c.length; i += 2) if (isSurrogate((c[i]! << 8) | c[i + 1]!)) refuse(el.offset, what, 'surrogate in a BMPString');
  } else if (el.number === U.UNIVERSAL) {
    for (let i = 0; i < c.length; i += 4) {
      const v = c[i]! * 0x1000000 + ((c[i + 1]! << 16) | (c[i + 2]! << 8) | c[i + 3]!);
      if (v > 0x10ffff || isSurrogate(v)) refuse(el.offset, what, 'UniversalString value not a Unicode scalar value');
    }
  }
}

function checkOid(buf: Uint8Array, el: BerElement | undefined, at: number, what: string): void {
  if (!el || el.cls !== 0 || el.number !== U.OID || el.constructed) refuse(el?.offset ?? at, what, 'not an OBJECT IDENTIFIER');
  checkOidContent(buf.subarray(el.contentStart, el.contentEnd), el.offset, what);
}

/**
 * Name ::= SEQUENCE OF SET OF SEQUENCE { type OBJECT IDENTIFIER, value ANY }
 * (RFC 5280 4.1.2.4), given as the element our parser read. Names are
 * compared as DER octets and never decoded further; this only refuses what
 * OpenSSL refuses. Throws Asn1Error.
 */
export function checkName(buf: Uint8Array, name: Asn1Element, what: string): void {
  for (const rdn of childrenOfDer(buf, name, what)) {
    // The SET OF is taken in the primitive form too.
    if (rdn.cls !== 0 || rdn.number !== U.SET) refuse(rdn.offset, what, 'RelativeDistinguishedName not a SET');
    for (const atv of childrenOf(buf, rdn, what)) {
      if (atv.cls !== 0 || atv.number !== U.SEQUENCE || !atv.constructed) refuse(atv.offset, what, 'AttributeTypeAndValue not a SEQUENCE');
      const fields = childrenOf(buf, atv, what);
      if (fields.length !== 2) refuse(atv.offset, what, 'AttributeTypeAndValue not a type and a value');
      checkOid(buf, fields[0], atv.offset, `${what} attribute type`);
      checkNameValue(buf, fields[1]!, `${what} attribute value`);
    }
  }
}

/** AlgorithmIdentifier ::= SEQUENCE { algorithm OBJECT IDENTIFIER, parameters ANY OPTIONAL }, given as the element our parser read. Throws Asn1Error. */
export function checkAlgorithmIdentifier(buf: Uint8Array, alg: Asn1Element, what: string): void {
  const fields = childrenOfDer(buf, alg, what);
  if (fields.length === 0 || fields.length > 2) refuse(alg.offset, what, 'not an algorithm and optional parameters');
  checkOid(buf, fields[0], alg.offset, `${what} algorithm`);
  if (fields[1]) checkAny(buf, fields[1], `${what} parameters`);
}

/** serialNumber INTEGER contents (the tag our parser has checked). Throws Asn1Error. */
export function checkSerialNumber(el: Asn1Element): void {
  checkIntegerContent(el.content, el.offset, 'serialNumber');
}

/** issuerUniqueID / subjectUniqueID, [1] / [2] IMPLICIT BIT STRING: an unused-bits octet of at most 7 (OpenSSL clears the padding bits, it does not check them). Throws Asn1Error. */
export function checkUniqueId(el: Asn1Element | undefined, what: string): void {
  if (el) checkUniversalContent(U.BIT_STRING, el.content, el.offset, what);
}
