import type { PayloadType } from '../iana.ts';
import type { Reader } from '../reader.ts';
import { EncodeError, type Writer } from '../writer.ts';

/**
 * Certificate Request payload (RFC 7296 Section 3.7): Cert Encoding(1) |
 * Certification Authority. For X.509 the authority field is a concatenation
 * of SHA-1 hashes of CA public keys; `caKeyHashes` splits it.
 */
export interface CertReqPayload {
  readonly type: typeof PayloadType.CERTREQ;
  readonly critical: boolean;
  /** See CertEncoding. */
  readonly encoding: number;
  readonly authority: Buffer;
}

export const SHA1_LENGTH = 20;

export function decodeCertReqBody(r: Reader, critical: boolean): CertReqPayload {
  const encoding = r.u8('cert encoding');
  return { type: 38, critical, encoding, authority: r.rest() };
}

export function encodeCertReqBody(w: Writer, p: CertReqPayload): void {
  w.u8(p.encoding).bytes(p.authority);
}

/**
 * The 20-octet CA key hashes of an X.509 CERTREQ. Returns undefined when the
 * field is not a whole number of hashes: RFC 7296 leaves such a request to be
 * ignored, not to fail the exchange.
 */
export function caKeyHashes(p: CertReqPayload): Buffer[] | undefined {
  if (p.authority.length % SHA1_LENGTH !== 0) return undefined;
  const out: Buffer[] = [];
  for (let at = 0; at < p.authority.length; at += SHA1_LENGTH) {
    out.push(Buffer.from(p.authority.subarray(at, at + SHA1_LENGTH)));
  }
  return out;
}

export function joinCaKeyHashes(hashes: readonly Uint8Array[]): Buffer {
  for (const h of hashes) if (h.length !== SHA1_LENGTH) throw new EncodeError(`CA key hash must be 20 octets`);
  return Buffer.concat(hashes);
}
