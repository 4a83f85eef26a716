import type { PayloadType } from '../iana.ts';
import { Reader } from '../reader.ts';
import { EncodeError, type Writer } from '../writer.ts';

/** Authentication payload (RFC 7296 Section 3.8): Auth Method(1) | RESERVED(3) | data. */
export interface AuthPayload {
  readonly type: typeof PayloadType.AUTH;
  readonly critical: boolean;
  /** See AuthMethod. */
  readonly method: number;
  readonly data: Buffer;
}

export function decodeAuthBody(r: Reader, critical: boolean): AuthPayload {
  const method = r.u8('auth method');
  r.skip(3, 'reserved');
  return { type: 39, critical, method, data: r.rest() };
}

export function encodeAuthBody(w: Writer, p: AuthPayload): void {
  w.u8(p.method).u8(0).u16(0).bytes(p.data);
}

/**
 * Authentication Data of the Digital Signature method (RFC 7427 Section 3):
 *   ASN.1 Length(1) | AlgorithmIdentifier (DER) | Signature Value
 * The AlgorithmIdentifier is kept as DER so the crypto layer can compare it
 * with the ones it knows byte for byte.
 */
export interface DigitalSignatureData {
  readonly algorithmIdentifier: Buffer;
  readonly signature: Buffer;
}

const DER_SEQUENCE = 0x30;

/** Splits Digital Signature authentication data; `path` prefixes error paths. */
export function splitDigitalSignature(data: Uint8Array, path = 'AUTH'): DigitalSignatureData {
  const r = new Reader(data, path);
  const asn1Length = r.u8('ASN.1 length');
  const algorithmIdentifier = r.bytes(asn1Length, 'AlgorithmIdentifier');
  checkDerSequence(new Reader(algorithmIdentifier, `${path} > AlgorithmIdentifier`));
  return { algorithmIdentifier, signature: r.rest() };
}

/** Builds Digital Signature authentication data (the inverse of splitDigitalSignature). */
export function joinDigitalSignature(d: DigitalSignatureData): Buffer {
  if (d.algorithmIdentifier.length > 0xff) {
    throw new EncodeError(`AlgorithmIdentifier of ${d.algorithmIdentifier.length} octets does not fit a 1-octet length`);
  }
  return Buffer.concat([Buffer.of(d.algorithmIdentifier.length), d.algorithmIdentifier, d.signature]);
}

/** The AlgorithmIdentifier must be exactly one DER SEQUENCE (at most 255 octets, so at most a 0x81 length). */
function checkDerSequence(r: Reader): void {
  const tag = r.u8('tag');
  if (tag !== DER_SEQUENCE) r.fail('bad-value', `expected SEQUENCE (0x30), got 0x${tag.toString(16)}`);
  const first = r.u8('DER length');
  let contentLength = first;
  if (first === 0x81) {
    contentLength = r.u8('DER length');
    if (contentLength < 0x80) r.fail('bad-value', 'DER length not in shortest form');
  } else if (first > 0x80) {
    r.fail('bad-value', `DER length form 0x${first.toString(16)} too long for 255 octets`);
  } else if (first === 0x80) {
    r.fail('bad-value', 'indefinite length is not DER');
  }
  if (contentLength !== r.remaining) {
    r.fail('bad-length', `SEQUENCE content ${contentLength} octet(s), ASN.1 length leaves ${r.remaining}`);
  }
}
