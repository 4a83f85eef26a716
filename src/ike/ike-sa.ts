/**
 * One IKE SA: who we are to it, what was negotiated, its keys and the
 * message-ID bookkeeping of RFC 7296 Section 2.3 with a window of one.
 *
 * The object is plain state; exchanges (src/ike/tasks/) read and update it,
 * and the engine owns the table of SAs. Nothing here does I/O or reads a
 * clock: times are the `now` values the engine was called with.
 */
import type { SkCipher } from '../crypto/cipher.ts';
import type { KeyExchange } from '../crypto/ke.ts';
import type { Certificate } from '../crypto/x509.ts';
import type { IkeSaKeys } from '../crypto/keys.ts';
import type { Identity } from './identity.ts';
import type { Endpoint, LocalEndpoint } from './io-types.ts';
import type { NegotiatedIkeTransforms } from './proposal.ts';
import { ResponseCache, type RequestTimer } from './retransmit.ts';
import type { Exchange } from './tasks/task.ts';

export type IkeRole = 'initiator' | 'responder';

/**
 * Life of an IKE SA. The initiator goes init-sent -> auth-sent ->
 * established; the responder init-done -> established. `rekeyed` is an old
 * SA that was replaced and only waits for its Delete; `deleting` has a
 * Delete request outstanding; `deleted` is gone (kept only until removed).
 */
export type IkeSaState =
  | 'init-sent'
  | 'init-done'
  | 'auth-sent'
  | 'established'
  | 'rekeyed'
  | 'deleting'
  | 'deleted';

/** Ciphers built from the keys, one per direction, living as long as the keys. */
export interface IkeSaCiphers {
  /** Protects what we send. */
  readonly outbound: SkCipher;
  /** Checks and decrypts what we receive. */
  readonly inbound: SkCipher;
}

/** A request we sent and whose response we still wait for. */
export interface OutstandingRequest {
  readonly messageId: number;
  readonly exchangeType: number;
  /** What the exchange is for: lets the engine pick the follow-up. */
  readonly exchange: Exchange;
  /** Retransmission schedule and the datagrams (every fragment) resent unchanged. */
  timer: RequestTimer<Buffer>;
}

export class IkeSa {
  /** Our handle for events and API calls; stable across nothing (a rekey makes a new SA). */
  readonly id: string;
  readonly role: IkeRole;
  spiI: Buffer;
  spiR: Buffer;
  state: IkeSaState;

  peer: Endpoint;
  local: LocalEndpoint;

  transforms?: NegotiatedIkeTransforms;
  nonceI?: Buffer;
  nonceR?: Buffer;
  /** Our KE state until the shared secret is computed. */
  keyExchange?: KeyExchange;
  keys?: IkeSaKeys;
  ciphers?: IkeSaCiphers;

  /** The IKE_SA_INIT messages as sent (for AUTH signed octets), without marker. */
  initRequest?: Buffer;
  initResponse?: Buffer;

  /** Message ID of our next request. */
  nextRequestId = 0;
  /** Our request in flight (window size 1: at most one). */
  outstanding?: OutstandingRequest;
  /** Exchanges asked for while another was in flight, in order. */
  readonly queue: Exchange[] = [];
  /** The peer's expected Message ID and our last response, for retransmitted requests (RFC 7296 2.1). */
  readonly responses = new ResponseCache<Buffer>(1, 0);

  /** NAT detected in front of us / in front of the peer (RFC 7296 2.23). */
  natLocal = false;
  natRemote = false;
  /** The peer sent NAT_DETECTION_* notifies (may move to the NAT-T port). */
  peerNatT = false;
  /** Both sides sent IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383). */
  fragmentation = false;
  /** The peer sent CHILDLESS_IKEV2_SUPPORTED (RFC 6023). */
  peerChildless = false;
  /** Hash algorithms from the peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427). */
  peerSignatureHashes: number[] = [];
  /** CA key hashes from the peer's CERTREQ payloads. */
  peerCertReqs: Buffer[] = [];
  /** The losing SA of a rekey collision, deleted by its creator (RFC 7296 2.8.2). */
  redundant = false;
  /** The peer's authenticated identity (after AUTH is verified). */
  peerId?: Identity;
  /** The peer's validated end-entity certificate, when it authenticated with one. */
  peerCertificate?: Certificate;
  /** Time of the last message received from the peer that passed verification. */
  lastHeardAt: number;
  readonly createdAt: number;

  constructor(init: {
    id: string;
    role: IkeRole;
    spiI: Buffer;
    spiR: Buffer;
    state: IkeSaState;
    peer: Endpoint;
    local: LocalEndpoint;
    now: number;
  }) {
    this.id = init.id;
    this.role = init.role;
    this.spiI = init.spiI;
    this.spiR = init.spiR;
    this.state = init.state;
    this.peer = init.peer;
    this.local = init.local;
    this.createdAt = init.now;
    this.lastHeardAt = init.now;
  }

  /** Our SPI: the one the peer puts in the field that names us. */
  get localSpi(): Buffer {
    return this.role === 'initiator' ? this.spiI : this.spiR;
  }

  get remoteSpi(): Buffer {
    return this.role === 'initiator' ? this.spiR : this.spiI;
  }

  /** The I flag of every message we send on this SA (RFC 7296 3.1). */
  get isOriginalInitiator(): boolean {
    return this.role === 'initiator';
  }

  get established(): boolean {
    return this.state === 'established' || this.state === 'rekeyed' || this.state === 'deleting';
  }

  /** Our nonce and the peer's. */
  get localNonce(): Buffer | undefined {
    return this.role === 'initiator' ? this.nonceI : this.nonceR;
  }
  get remoteNonce(): Buffer | undefined {
    return this.role === 'initiator' ? this.nonceR : this.nonceI;
  }

  /** Forgets secrets that are no longer needed; called when the SA dies. */
  wipe(): void {
    for (const k of Object.values(this.keys ?? {})) if (Buffer.isBuffer(k)) k.fill(0);
    this.keys = undefined;
    this.ciphers = undefined;
    this.keyExchange = undefined;
    this.outstanding?.timer.stop();
    this.outstanding = undefined;
    this.queue.length = 0;
  }
}
