import type { Reader } from '../reader.ts';
import type { Writer } from '../writer.ts';

/**
 * A payload type this implementation does not understand, sent without the
 * Critical bit: RFC 7296 Section 2.5 says to skip it. It is kept, body and
 * all, so a message can be logged or re-encoded unchanged. (An unknown
 * payload with the Critical bit fails decoding with 'unsupported-critical'.)
 */
export interface UnknownPayload {
  readonly type: number;
  readonly critical: false;
  readonly unknown: true;
  readonly body: Buffer;
}

export function decodeUnknownBody(r: Reader, type: number): UnknownPayload {
  return { type, critical: false, unknown: true, body: r.rest() };
}

export function encodeUnknownBody(w: Writer, p: UnknownPayload): void {
  w.bytes(p.body);
}
