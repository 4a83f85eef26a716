import type { PayloadType } from '../iana.ts';
import type { Reader } from '../reader.ts';
import type { Writer } from '../writer.ts';

/** Certificate payload (RFC 7296 Section 3.6): Cert Encoding(1) | data. */
export interface CertPayload {
  readonly type: typeof PayloadType.CERT;
  readonly critical: boolean;
  /** See CertEncoding. */
  readonly encoding: number;
  readonly data: Buffer;
}

export function decodeCertBody(r: Reader, critical: boolean): CertPayload {
  const encoding = r.u8('cert encoding');
  return { type: 37, critical, encoding, data: r.rest() };
}

export function encodeCertBody(w: Writer, p: CertPayload): void {
  w.u8(p.encoding).bytes(p.data);
}
