import type { PayloadType } from '../iana.ts';
import type { Reader } from '../reader.ts';
import type { Writer } from '../writer.ts';

/** Vendor ID payload (RFC 7296 Section 3.12): an opaque identifier. */
export interface VendorIdPayload {
  readonly type: typeof PayloadType.VENDOR_ID;
  readonly critical: boolean;
  readonly vendorId: Buffer;
}

export function decodeVendorIdBody(r: Reader, critical: boolean): VendorIdPayload {
  return { type: 43, critical, vendorId: r.rest() };
}

export function encodeVendorIdBody(w: Writer, p: VendorIdPayload): void {
  w.bytes(p.vendorId);
}
