/**
 * Extra payloads in the authentication exchange, so that G-IKEv2's GSA_AUTH
 * (RFC 9838 Section 2.3.1) can reuse IKE_AUTH's machinery: the group member
 * adds IDg / SAg / N(GROUP_SENDER) to the request and reads GSA / KD from
 * the response; the GCKS does the reverse. The auth task calls providers
 * only after the peer's AUTH payload verified, so a provider may rely on
 * `peerId` being authenticated.
 */
import type { Certificate } from '../crypto/x509.ts';
import type { Payload } from '../wire/payload.ts';
import type { NotifyData } from '../wire/payloads/notify.ts';
import type { Identity } from './identity.ts';
import type { IkeRole } from './ike-sa.ts';
import type { NegotiatedIkeTransforms } from './proposal.ts';

export interface AuthExtensionContext {
  readonly saId: string;
  /** Our role in the IKE SA (initiator = group member in G-IKEv2). */
  readonly role: IkeRole;
  /** IKE_AUTH or GSA_AUTH (or, for ExtensionRequest/ExchangeResponder, their exchange). */
  readonly exchangeType: number;
  /** The authenticated peer (undefined only in buildRequest, before the peer authenticated). */
  readonly peerId: Identity | undefined;
  /** The peer's validated end-entity certificate, when it authenticated with one. */
  readonly peerCertificate?: Certificate | undefined;
  readonly localId: Identity;
  /** Negotiated in IKE_SA_INIT, including the Key Wrap Algorithm when there was one. */
  readonly transforms: NegotiatedIkeTransforms;
  /** SK_d, e.g. for GSK_w = prf+(SK_d, "Key Wrap for G-IKEv2") (RFC 9838 Section 3.1.1). */
  readonly skD: Buffer;
  readonly now: number;
}

/**
 * Refuses the exchange's extension part: the response carries N(notify)
 * and, because the IKE SA itself authenticated, the IKE SA stays up
 * (RFC 7296 Section 2.21.2 treats refused add-ons that way).
 */
export interface ProviderRefusal {
  readonly notify: number;
  readonly reason: string;
  readonly data?: NotifyData;
}

export interface AuthPayloadProvider {
  readonly name: string;
  /** Requester: payloads to append after AUTH. */
  buildRequest?(ctx: AuthExtensionContext): Payload[];
  /** Requester: every payload of the response (after AUTH verified). */
  processResponse?(ctx: AuthExtensionContext, payloads: readonly Payload[]): ProviderRefusal | undefined;
  /** Responder: every payload of the request (after AUTH verified). */
  processRequest?(ctx: AuthExtensionContext, payloads: readonly Payload[]): ProviderRefusal | undefined;
  /** Responder: payloads to append to a successful response. */
  buildResponse?(ctx: AuthExtensionContext): Payload[];
}

/**
 * A request of another exchange type over an established IKE SA (RFC 9838
 * GSA_REGISTRATION, GSA_INBAND_REKEY): the engine numbers, protects,
 * retransmits and matches it like any request; these callbacks only supply
 * and read the payloads. `onResponse` runs inside the engine call that
 * received the response. If the IKE SA dies first (timeout, deletion) no
 * callback runs: the engine's `exchange-failed` / `sa-deleted` events say so.
 */
export interface ExtensionRequest {
  readonly exchangeType: number;
  build(ctx: AuthExtensionContext): Payload[];
  onResponse(ctx: AuthExtensionContext, payloads: readonly Payload[]): void;
}

/**
 * Responder side of an extension exchange over an established IKE SA: the
 * decrypted request in, the response payloads out (possibly none: SK{}).
 */
export type ExchangeResponder = (ctx: AuthExtensionContext, payloads: readonly Payload[]) => Payload[];
