/**
 * The one error every decoder throws. `path` names where in the message the
 * problem is, e.g. `SK > GSA > policy[1] (ESP) > transform[2] > attr 14`, so
 * that operators and the engine can tell what was wrong without a debugger.
 */
export type DecodeErrorKind =
  /** Fewer octets than a field or a declared length needs. */
  | 'truncated'
  /** A length field that is inconsistent with its container or too small. */
  | 'bad-length'
  /** A field value the RFC forbids (reserved, wrong size, out of range). */
  | 'bad-value'
  /** An unknown payload with the Critical bit set (-> UNSUPPORTED_CRITICAL_PAYLOAD). */
  | 'unsupported-critical'
  /** A count or size above the decoder's safety cap. */
  | 'limit';

export class DecodeError extends Error {
  override readonly name = 'DecodeError';
  constructor(
    readonly kind: DecodeErrorKind,
    readonly path: string,
    readonly detail: string,
    /** Offset, in octets, from the start of the outermost buffer decoded. */
    readonly offset: number,
    /** For 'unsupported-critical': the payload type that was not understood. */
    readonly payloadType?: number,
  ) {
    super(`${path || '<message>'}: ${detail} (at octet ${offset})`);
  }
}

/**
 * A rule of RFC 9838 / RFC 7296 that a well-formed message breaks; raised by
 * the validator, never by decoders. `rule` names the section and the rule.
 */
export class ValidationError extends Error {
  override readonly name = 'ValidationError';
  constructor(
    readonly rule: string,
    readonly path: string,
    readonly detail: string,
  ) {
    super(`[${rule}] ${path || '<message>'}: ${detail}`);
  }
}

/** Caps that keep hostile lengths from driving allocation or loops. */
export const Limits = Object.freeze({
  /** Largest IKE message we accept (RFC 7296 allows up to 2^32-1; reassembled fragments included). */
  maxMessage: 64 * 1024,
  /** Payloads in one chain. */
  maxPayloads: 256,
  /** Proposals in one SA / transforms in one proposal / attributes in one list. */
  maxProposals: 64,
  maxTransforms: 128,
  maxAttributes: 256,
  /** Traffic selectors in one TS payload or GSA policy. */
  maxTrafficSelectors: 64,
  /** SPIs in one Delete payload. */
  maxDeleteSpis: 1024,
  /** Policies in one GSA payload; key bags in one KD payload. */
  maxPolicies: 256,
  maxKeyBags: 4096,
});
