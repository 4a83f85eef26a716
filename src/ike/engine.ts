/**
 * The IKEv2 engine facade: sans-I/O, rustls style. The caller feeds
 * datagrams and API calls in with the current time and gets back the
 * datagrams to send, the events that happened, and when to call `timeout`.
 * Nothing here opens a socket, reads a clock or sets a timer.
 *
 * Exchanges are composed of tasks (src/ike/tasks/); this module does the
 * rest of RFC 7296: SA lookup by SPI, Message IDs with a window of one
 * (Section 2.3), retransmission by the requester and answering duplicate
 * requests from a cache (Section 2.1), protection (SK) and fragmentation
 * (RFC 7383), cookies and half-open accounting (Section 2.6), error
 * handling (Section 2.21: unprotected errors only in IKE_SA_INIT, INVALID_IKE_SPI
 * for unknown SAs, everything unverifiable dropped), and IKE SA rekey
 * collisions (Section 2.8.2). It never throws on a packet.
 */
import { IntegrityError, protect, unprotect } from '../crypto/cipher.ts';
import { formatIkev2KeyLine } from './keylog.ts';
import { DecodeError } from '../wire/errors.ts';
import { decodeHeader, IKE_MAJOR_VERSION, type IkeHeader, type IkeHeaderFields } from '../wire/header.ts';
import { EncrId, ExchangeType, IntegId, KeId, KwaId, NotifyType, PayloadType, PrfId, nameOf } from '../wire/iana.ts';
import {
  decodeMessage,
  encodeMessage,
  encodeProtectedPrefix,
  splitProtectedMessage,
  type IkeMessage,
} from '../wire/message.ts';
import {
  decodePayloadChain,
  encodePayloadChain,
  findNotify,
  findPayload,
  isEncryptedContainer,
  notifyTypeName,
  type Payload,
} from '../wire/payload.ts';
import { makeNotify, type NotifyData } from '../wire/payloads/notify.ts';
import type { AuthExtensionContext, AuthPayloadProvider, ExchangeResponder, ExtensionRequest } from './auth-extension.ts';
import { resolveConfig, type IkeEngineConfig, type ResolvedConfig } from './config.ts';
import { CookieGuard, DEFAULT_COOKIE_CONFIG } from './cookies.ts';
import { fitsInDatagram, fragmentMessage, Reassembler, skfProtector, type DatagramLimits } from './fragments.ts';
import { HalfOpenTable } from './half-open.ts';
import { decideFloat, floatedPeer, NAT_T_PORT, responderFollowsPeer } from './natd.ts';
import { formatIdentity, toIdentity, type Identity } from './identity.ts';
import { IkeSa, type IkeRole } from './ike-sa.ts';
import { endpointKey, type DatagramEngine, type Endpoint, type LocalEndpoint, type Output, type Outgoing } from './io-types.ts';
import type { NegotiatedIkeTransforms } from './proposal.ts';
import { earliest, RequestTimer, shouldResendForFragment } from './retransmit.ts';
import { IkeAuthTask } from './tasks/ike-auth.ts';
import { IkeCertPreTask } from './tasks/ike-cert-pre.ts';
import { extensionContext, ExtensionTask } from './tasks/extension.ts';
import { IkeFragTask } from './tasks/ike-frag.ts';
import { IkeInitTask } from './tasks/ike-init.ts';
import { IkeNatdTask } from './tasks/ike-natd.ts';
import { IkeRekeyTask } from './tasks/ike-rekey.ts';
import { InformationalTask } from './tasks/informational.ts';
import { TaskError, type Exchange, type ReceivedMessage, type Task, type TaskEnv, type TaskOutcome } from './tasks/task.ts';

/** Negotiated algorithms by name, for events and logs. */
export interface SaAlgorithms {
  readonly encr: string;
  readonly encrKeyLength?: number;
  readonly integ: string;
  readonly prf: string;
  readonly ke: string;
  readonly kwa?: string;
}

export type SaDeleteReason =
  /** We deleted it (deleteSa). */
  | 'local'
  /** The peer sent a Delete. */
  | 'remote'
  /** Retransmissions ran out. */
  | 'timeout'
  /** Replaced by a rekey; the peer's or our Delete completed. */
  | 'rekeyed'
  /** The losing SA of a rekey collision (RFC 7296 2.8.2). */
  | 'redundant'
  /** The peer reported an error about it, or a protocol error ended it. */
  | 'error';

export type EngineEvent =
  | {
      readonly type: 'sa-established';
      readonly saId: string;
      readonly role: IkeRole;
      readonly spiI: string;
      readonly spiR: string;
      readonly exchange: string;
      readonly localId: string;
      readonly peerId: string;
      readonly peer: Endpoint;
      readonly algorithms: SaAlgorithms;
      readonly natLocal: boolean;
      readonly natRemote: boolean;
      readonly fragmentation: boolean;
      /** A CHILD_SA was asked for and refused with this notify; the IKE SA is up regardless. */
      readonly childSaRefused?: string;
      /** An auth extension (e.g. G-IKEv2 registration) was refused with this notify. */
      readonly extensionRefused?: string;
    }
  | {
      readonly type: 'sa-deleted';
      readonly saId: string;
      readonly spiI: string;
      readonly spiR: string;
      readonly reason: SaDeleteReason;
    }
  | {
      readonly type: 'sa-rekeyed';
      readonly oldSaId: string;
      readonly saId: string;
      readonly spiI: string;
      readonly spiR: string;
      readonly algorithms: SaAlgorithms;
    }
  | {
      readonly type: 'exchange-failed';
      readonly saId: string;
      readonly exchange: string;
      /** Notify name (AUTHENTICATION_FAILED, ...) or TIMEOUT. */
      readonly notify: string;
      readonly notifyType: number | undefined;
      /** true: we found the problem; false: the peer reported it. */
      readonly detectedLocally: boolean;
      readonly reason: string;
    }
  | { readonly type: 'liveness-ok'; readonly saId: string }
  | { readonly type: 'keylog'; readonly saId: string; readonly line: string }
  /** A datagram that was not acted on, with why (for diagnostics; never contains secrets). */
  | { readonly type: 'dropped'; readonly from: Endpoint; readonly reason: string };

export interface EngineOutput extends Output<EngineEvent> {
  readonly send: Outgoing[];
  readonly events: EngineEvent[];
}

export interface InitiateOptions extends Endpoint {
  /** The socket to use; absent: the adapter's default (NAT detection then assumes nothing). */
  readonly local?: LocalEndpoint;
  /** The identity the responder must prove; also selects the PSK. */
  readonly remoteId?: string | Identity;
  /** IKE_AUTH (default) or GSA_AUTH (RFC 9838). */
  readonly exchange?: 'IKE_AUTH' | 'GSA_AUTH';
  /** Extra payloads in the authentication exchange (G-IKEv2 registration). */
  readonly providers?: readonly AuthPayloadProvider[];
  /** Ask for a CHILD_SA in IKE_AUTH instead of a childless IKE SA (RFC 6023). */
  readonly requestChildSa?: boolean;
  /**
   * Our NAT-T socket (marker framing): after IKE_SA_INIT, when a NAT is
   * detected, the SA moves to it and to the peer's `peerNatTPort`
   * (RFC 7296 2.23). Without it the SA stays where it started.
   */
  readonly natT?: LocalEndpoint;
  /** Default 4500. */
  readonly peerNatTPort?: number;
}

/** Sizes of the engine's tables: what it holds in memory, for monitoring and load tests. */
export interface EngineStats {
  /** Every SA the engine holds, failed ones kept to answer retransmissions included. */
  readonly sas: number;
  /** Responder SAs between IKE_SA_INIT and IKE_AUTH (RFC 7296 2.6), and failed ones kept to answer retransmissions. */
  readonly halfOpen: number;
  /** The half-open table's estimate of the octets they hold. */
  readonly halfOpenBytes: number;
  /** Entries recognising retransmitted IKE_SA_INIT requests. */
  readonly initIndex: number;
  /** SAs kept only until a deadline (failed, or rekeyed and waiting for a Delete). */
  readonly expiring: number;
  /** Messages being reassembled from fragments. */
  readonly reassembling: number;
}

/** Read-only view of an SA for callers and tests. */
export interface SaInfo {
  readonly saId: string;
  readonly role: IkeRole;
  readonly state: IkeSa['state'];
  readonly spiI: string;
  readonly spiR: string;
  readonly peer: Endpoint;
  readonly peerId: string | undefined;
  readonly fragmentation: boolean;
  readonly natLocal: boolean;
  readonly natRemote: boolean;
  readonly nextRequestId: number;
  readonly expectedRequestId: number;
  readonly transforms: NegotiatedIkeTransforms | undefined;
}

type Decrypted =
  | { readonly kind: 'complete'; readonly payloads: Payload[] }
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'invalid'; readonly reason: string }
  /** Integrity held but the plaintext does not decode: answerable with a notify. */
  | { readonly kind: 'malformed'; readonly error: DecodeError };

/** Per old SA: what is known about rekeys of it (RFC 7296 2.8.2 collisions). */
interface RekeyTracking {
  /** Our CREATE_CHILD_SA to rekey it is in flight. */
  own: boolean;
  /** The SA the peer created by rekeying it while ours was in flight. */
  peerSa?: IkeSa;
}

const ZERO_SPI = Buffer.alloc(8);

/**
 * A copy of `b` in memory of its own. Small Buffers are slices of node's
 * shared 8 KiB pool, and a slice kept for an SA's lifetime keeps the whole
 * slab alive; what an SA holds long-term is copied out of it.
 */
function own(b: Buffer): Buffer {
  if (b.byteOffset === 0 && b.buffer.byteLength === b.length) return b;
  const copy = Buffer.allocUnsafeSlow(b.length);
  b.copy(copy);
  return copy;
}
const EXCHANGE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(ExchangeType).map(([k, v]) => [v, k]),
);

function exchangeName(type: number): string {
  return EXCHANGE_NAMES[type] ?? `EXCHANGE(${type})`;
}

export function describeAlgorithms(t: NegotiatedIkeTransforms): SaAlgorithms {
  return {
    encr: nameOf(EncrId, t.encr.id, 'ENCR'),
    ...(t.encr.keyLength === undefined ? {} : { encrKeyLength: t.encr.keyLength }),
    integ: nameOf(IntegId, t.integ, 'INTEG'),
    prf: nameOf(PrfId, t.prf, 'PRF'),
    ke: nameOf(KeId, t.ke, 'KE'),
    ...(t.kwa === undefined ? {} : { kwa: nameOf(KwaId, t.kwa, 'KWA') }),
  };
}

export class IkeEngine implements DatagramEngine<EngineEvent> {
  readonly config: ResolvedConfig;
  /** Every live SA by our SPI (hex). */
  private readonly bySpi = new Map<string, IkeSa>();
  private readonly byId = new Map<string, IkeSa>();
  /** Responder SAs before IKE_AUTH, by SPIi and peer, to recognise retransmitted IKE_SA_INITs. */
  private readonly initIndex = new Map<string, IkeSa>();
  private readonly halfOpen: HalfOpenTable<string>;
  private readonly cookies: CookieGuard;
  private readonly reassembler = new Reassembler();
  private readonly authTasks = new Map<IkeSa, IkeAuthTask>();
  private readonly natT = new Map<IkeSa, { local: LocalEndpoint; peerPort: number }>();
  private readonly rekeys = new Map<IkeSa, RekeyTracking>();
  /**
   * SAs kept only for a while: an old SA waiting for the peer's Delete, or a
   * failed one kept so a retransmitted request gets the cached error response.
   */
  private readonly expiries = new Map<IkeSa, { at: number; reason: SaDeleteReason; announce: boolean }>();
  /**
   * SAs with a request of ours in flight, the only ones with a retransmission
   * timer: timeout/nextTimeout look at these instead of scanning every SA,
   * which the adapter would otherwise do after each datagram.
   */
  private readonly inFlight = new Set<IkeSa>();
  private saCounter = 0;

  private now = 0;
  private send: Outgoing[] = [];
  private events: EngineEvent[] = [];

  constructor(config: IkeEngineConfig) {
    this.config = resolveConfig(config);
    this.halfOpen = new HalfOpenTable<string>(this.config.halfOpen);
    this.cookies = new CookieGuard(
      { ...DEFAULT_COOKIE_CONFIG, halfOpenThreshold: this.config.cookieThreshold },
      this.config.rng,
    );
  }

  // ------------------------------------------------------------------ API

  receive(datagram: Buffer, from: Endpoint, local: LocalEndpoint, now: number): EngineOutput {
    return this.run(now, () => this.handleDatagram(datagram, from, local));
  }

  initiate(options: InitiateOptions, now: number): EngineOutput & { readonly saId: string } {
    let saId = '';
    const out = this.run(now, () => {
      const sa = this.createSa('initiator', { address: options.address, port: options.port }, options.local);
      saId = sa.id;
      this.register(sa);
      if (options.natT) this.natT.set(sa, { local: options.natT, peerPort: options.peerNatTPort ?? NAT_T_PORT });
      const remoteId = options.remoteId === undefined ? undefined : toIdentity(options.remoteId);
      this.authTasks.set(
        sa,
        new IkeAuthTask('initiator', {
          exchangeType: options.exchange === 'GSA_AUTH' ? ExchangeType.GSA_AUTH : ExchangeType.IKE_AUTH,
          ...(options.providers ? { providers: options.providers } : {}),
          ...(remoteId ? { remoteId } : {}),
          ...(options.requestChildSa ? { requestChildSa: true } : {}),
        }),
      );
      this.request(sa, {
        kind: 'ike-sa-init',
        exchangeType: ExchangeType.IKE_SA_INIT,
        tasks: [new IkeInitTask('initiator'), new IkeNatdTask('initiator'), new IkeCertPreTask('initiator'), new IkeFragTask('initiator')],
      });
    });
    return { ...out, saId };
  }

  /** An empty INFORMATIONAL request; `liveness-ok` when answered, SA deleted on timeout. */
  sendLiveness(saId: string, now: number): EngineOutput {
    return this.run(now, () => {
      const sa = this.usableSa(saId);
      if (sa) this.request(sa, { kind: 'liveness', exchangeType: ExchangeType.INFORMATIONAL, tasks: [new InformationalTask('initiator', 'liveness')] });
    });
  }

  /** Deletes the IKE SA (INFORMATIONAL with D(IKE)); `sa-deleted` when answered or timed out. */
  deleteSa(saId: string, now: number): EngineOutput {
    return this.run(now, () => {
      const sa = this.byId.get(saId);
      if (!sa) return;
      if (!sa.established) {
        // Nothing authenticated to tell: just forget it.
        this.removeSa(sa, 'local', false);
        return;
      }
      this.startDelete(sa);
    });
  }

  /**
   * Sends a request of another exchange type (GSA_REGISTRATION, ...) over an
   * established IKE SA, queued behind any request in flight. `queued` is
   * false when the SA is unknown or not usable (nothing is sent).
   */
  requestExchange(saId: string, request: ExtensionRequest, now: number): EngineOutput & { readonly queued: boolean } {
    let queued = false;
    const out = this.run(now, () => {
      const sa = this.usableSa(saId);
      if (!sa) return;
      queued = true;
      this.request(sa, { kind: 'extension', exchangeType: request.exchangeType, tasks: [new ExtensionTask(request)] });
    });
    return { ...out, queued };
  }

  /** Rekeys the IKE SA with CREATE_CHILD_SA; `sa-rekeyed` when done. */
  rekeySa(saId: string, now: number): EngineOutput {
    return this.run(now, () => {
      const sa = this.usableSa(saId);
      if (!sa || sa.state !== 'established') return;
      const tracking = this.rekeys.get(sa) ?? { own: false };
      if (tracking.own) return;
      tracking.own = true;
      this.rekeys.set(sa, tracking);
      this.request(sa, {
        kind: 'ike-rekey',
        exchangeType: ExchangeType.CREATE_CHILD_SA,
        tasks: [new IkeRekeyTask('initiator', (role) => this.createSa(role, sa.peer, sa.local))],
      });
    });
  }

  timeout(now: number): EngineOutput {
    return this.run(now, () => {
      for (const sa of [...this.inFlight]) {
        const o = sa.outstanding;
        if (!o) {
          this.inFlight.delete(sa);
          continue;
        }
        const r = o.timer.onTimeout(now);
        if (r.action === 'resend') this.transmit(sa, r.packets);
        else if (r.action === 'give-up') this.giveUp(sa);
      }
      for (const id of this.halfOpen.expire(now)) {
        const sa = this.byId.get(id);
        if (sa) this.removeSa(sa, 'timeout', false);
      }
      this.reassembler.expire(now);
      for (const [sa, e] of [...this.expiries]) if (e.at <= now) this.removeSa(sa, e.reason, e.announce);
    });
  }

  nextTimeout(): number | undefined {
    // Loops, not spread arguments: there may be more entries than a call takes arguments.
    let next = earliest(this.halfOpen.nextExpiry(), this.reassembler.nextExpiry());
    for (const sa of this.inFlight) next = earliest(next, sa.outstanding?.timer.nextDeadline());
    for (const e of this.expiries.values()) next = earliest(next, e.at);
    return next;
  }

  sa(saId: string): SaInfo | undefined {
    const sa = this.byId.get(saId);
    return sa ? this.info(sa) : undefined;
  }

  stats(): EngineStats {
    return {
      sas: this.byId.size,
      halfOpen: this.halfOpen.size,
      halfOpenBytes: this.halfOpen.bytes,
      initIndex: this.initIndex.size,
      expiring: this.expiries.size,
      reassembling: this.reassembler.size,
    };
  }

  /** The authenticated peer identity of an SA, as received (undefined before IKE_AUTH/GSA_AUTH). */
  peerIdentity(saId: string): Identity | undefined {
    return this.byId.get(saId)?.peerId;
  }

  /**
   * What an extension exchange over this SA would see (transforms, SK_d for
   * GSK_w, RFC 9838 Section 3.1.1), for content prepared before the request
   * is queued (GSA_INBAND_REKEY key wrapping); undefined unless established.
   */
  extensionContext(saId: string, exchangeType: number, now: number): AuthExtensionContext | undefined {
    const sa = this.usableSa(saId);
    if (!sa?.keys || !sa.transforms) return undefined;
    return extensionContext(sa, { ...this.env(), now }, exchangeType);
  }

  /** Live SAs (failed ones kept only to answer retransmissions are left out). */
  list(): SaInfo[] {
    return [...this.byId.values()].filter((sa) => sa.state !== 'deleted').map((sa) => this.info(sa));
  }

  // ------------------------------------------------------------------ plumbing

  private run(now: number, f: () => void): EngineOutput {
    this.now = now;
    this.send = [];
    this.events = [];
    try {
      f();
    } catch (e) {
      // A bug must not take the process down with it, nor leak an exception to a socket loop.
      this.events.push({ type: 'dropped', from: { address: '', port: 0 }, reason: `internal error: ${e instanceof Error ? e.message : String(e)}` });
    }
    const out = { send: this.send, events: this.events };
    this.send = [];
    this.events = [];
    return out;
  }

  private env(): TaskEnv {
    return { config: this.config, rng: this.config.rng, now: this.now };
  }

  private info(sa: IkeSa): SaInfo {
    return {
      saId: sa.id,
      role: sa.role,
      state: sa.state,
      spiI: sa.spiI.toString('hex'),
      spiR: sa.spiR.toString('hex'),
      peer: sa.peer,
      peerId: sa.peerId ? formatIdentity(sa.peerId) : undefined,
      fragmentation: sa.fragmentation,
      natLocal: sa.natLocal,
      natRemote: sa.natRemote,
      nextRequestId: sa.nextRequestId,
      expectedRequestId: sa.responses.expected,
      transforms: sa.transforms,
    };
  }

  private drop(from: Endpoint, reason: string): void {
    this.events.push({ type: 'dropped', from, reason });
  }

  private newSpi(): Buffer {
    for (;;) {
      const spi = this.config.rng.bytes(8);
      if (!spi.equals(ZERO_SPI) && !this.bySpi.has(spi.toString('hex'))) return spi;
    }
  }

  /** A new SA with our SPI in place; not registered until it is worth keeping. */
  private createSa(role: IkeRole, peer: Endpoint, local: LocalEndpoint | undefined): IkeSa {
    const spi = this.newSpi();
    return new IkeSa({
      id: `ike-${++this.saCounter}`,
      role,
      spiI: role === 'initiator' ? spi : Buffer.alloc(8),
      spiR: role === 'responder' ? spi : Buffer.alloc(8),
      state: role === 'initiator' ? 'init-sent' : 'init-done',
      peer,
      local: local ?? { address: '0.0.0.0', port: 0, marker: false },
      now: this.now,
    });
  }

  private register(sa: IkeSa): void {
    this.bySpi.set(sa.localSpi.toString('hex'), sa);
    this.byId.set(sa.id, sa);
  }

  private usableSa(saId: string): IkeSa | undefined {
    const sa = this.byId.get(saId);
    return sa && sa.state === 'established' ? sa : undefined;
  }

  /** The socket to send from: the one given at initiate/receive, or the adapter's default. */
  private outgoing(to: Endpoint, local: LocalEndpoint, data: Buffer): Outgoing {
    const unknownLocal = local.port === 0;
    return unknownLocal ? { to, data } : { to, local: { address: local.address, port: local.port }, data };
  }

  private emitKeylog(sa: IkeSa): void {
    if (!this.config.keylog || !sa.keys || !sa.transforms) return;
    const line = formatIkev2KeyLine({
      spiI: sa.spiI,
      spiR: sa.spiR,
      encr: sa.transforms.encr.id,
      encrKeyBits: sa.transforms.encr.keyLength,
      integ: sa.transforms.integ,
      skEi: sa.keys.skEi,
      skEr: sa.keys.skEr,
      skAi: sa.keys.skAi,
      skAr: sa.keys.skAr,
    });
    if (line !== undefined) this.events.push({ type: 'keylog', saId: sa.id, line });
  }

  // ------------------------------------------------------------------ encoding

  private header(sa: IkeSa, exchangeType: number, messageId: number, response: boolean): IkeHeaderFields {
    return {
      spiI: sa.spiI,
      spiR: sa.spiR,
      majorVersion: IKE_MAJOR_VERSION,
      minorVersion: 0,
      exchangeType,
      flags: { initiator: sa.role === 'initiator', version: false, response },
      messageId,
    };
  }

  /** SK-protected message, cut into SKF fragments when negotiated and too large (RFC 7383). */
  private protectedPackets(sa: IkeSa, header: IkeHeaderFields, inner: readonly Payload[]): Buffer[] {
    const cipher = sa.ciphers!.outbound;
    const { firstType, bytes } = encodePayloadChain(inner);
    const padded = Math.ceil((bytes.length + 1) / cipher.blockSize) * cipher.blockSize;
    const bodyLength = cipher.ivLength + padded + cipher.icvLength;
    const limits: DatagramLimits = {
      maxDatagramSize: this.config.maxDatagramSize,
      ipVersion: sa.peer.address.includes(':') ? 6 : 4,
      marker: sa.local.marker,
    };
    const whole = 28 + 4 + bodyLength;
    if (sa.fragmentation && header.exchangeType !== ExchangeType.IKE_SA_INIT && !fitsInDatagram(whole, limits)) {
      return fragmentMessage({ header, innerFirst: firstType, inner: bytes, limits, protector: skfProtector(cipher) });
    }
    const prefix = encodeProtectedPrefix({
      header,
      container: { type: PayloadType.SK, critical: false, innerFirst: firstType },
      bodyLength,
    });
    const body = protect(cipher, prefix, bytes);
    // Memory of its own (see `own`): the packet is kept, cached for retransmission or until answered.
    const packet = Buffer.allocUnsafeSlow(prefix.length + body.length);
    prefix.copy(packet);
    body.copy(packet, prefix.length);
    return [packet];
  }

  /** Verifies and decrypts one SK or SKF message; SKF chunks go to the reassembler. */
  private decrypt(sa: IkeSa, raw: Buffer, msg: IkeMessage, reassemble: boolean): Decrypted {
    const last = msg.payloads[msg.payloads.length - 1];
    const split = splitProtectedMessage(raw, msg);
    if (!last || !split || !sa.ciphers || !isEncryptedContainer(last)) return { kind: 'invalid', reason: 'not protected' };
    if (msg.payloads.length > 1) return { kind: 'invalid', reason: 'cleartext payloads before SK' };
    let plain: Buffer;
    try {
      plain = unprotect(sa.ciphers.inbound, split.prefix, split.encrypted);
    } catch (e) {
      if (e instanceof IntegrityError) return { kind: 'invalid', reason: `integrity check failed (${e.kind})` };
      throw e;
    }
    let innerFirst: number;
    if (last.type === PayloadType.SKF) {
      if (!sa.fragmentation) return { kind: 'invalid', reason: 'fragment without negotiated fragmentation' };
      if (!reassemble) return { kind: 'complete', payloads: [] };
      // Requests and responses number their messages independently.
      const r = this.reassembler.add(
        `${sa.id}/${msg.header.flags.response ? 'response' : 'request'}`,
        msg.header.messageId,
        { fragmentNumber: last.fragmentNumber, totalFragments: last.totalFragments, innerFirst: last.innerFirst, plaintext: plain },
        this.now,
      );
      if (r.status === 'rejected') return { kind: 'invalid', reason: `fragment rejected: ${r.reason}` };
      if (r.status !== 'complete') return { kind: 'incomplete' };
      innerFirst = r.innerFirst;
      plain = r.plaintext;
    } else {
      innerFirst = last.innerFirst;
    }
    try {
      return { kind: 'complete', payloads: decodePayloadChain(innerFirst, plain, 'SK') };
    } catch (e) {
      if (e instanceof DecodeError) return { kind: 'malformed', error: e };
      throw e;
    }
  }

  // ------------------------------------------------------------------ requests we send

  private request(sa: IkeSa, exchange: Exchange): void {
    if (sa.outstanding) {
      sa.queue.push(exchange);
      return;
    }
    this.startExchange(sa, exchange);
  }

  private startExchange(sa: IkeSa, exchange: Exchange): void {
    const payloads: Payload[] = [];
    try {
      for (const t of exchange.tasks) t.build(sa, this.env(), payloads);
    } catch (e) {
      if (e instanceof TaskError) {
        this.exchangeFailed(sa, exchange, { kind: 'fail', notify: e.notify, reason: e.reason }, true);
        return;
      }
      throw e;
    }
    const header = this.header(sa, exchange.exchangeType, sa.nextRequestId, false);
    let packets: Buffer[];
    if (exchange.exchangeType === ExchangeType.IKE_SA_INIT) {
      const m = encodeMessage({ header, payloads });
      sa.initRequest = m;
      packets = [m];
    } else {
      packets = this.protectedPackets(sa, header, payloads);
    }
    sa.outstanding = {
      messageId: header.messageId,
      exchangeType: exchange.exchangeType,
      exchange,
      timer: new RequestTimer(packets, this.config.retransmit, this.now),
    };
    this.inFlight.add(sa);
    this.transmit(sa, packets);
  }

  private transmit(sa: IkeSa, packets: readonly Buffer[]): void {
    for (const p of packets) this.send.push(this.outgoing(sa.peer, sa.local, p));
  }

  private nextFromQueue(sa: IkeSa): void {
    if (sa.outstanding || !this.byId.has(sa.id)) return;
    const next = sa.queue.shift();
    if (next) this.startExchange(sa, next);
  }

  private giveUp(sa: IkeSa): void {
    const o = sa.outstanding!;
    this.events.push({
      type: 'exchange-failed',
      saId: sa.id,
      exchange: exchangeName(o.exchangeType),
      notify: 'TIMEOUT',
      notifyType: undefined,
      detectedLocally: true,
      reason: `no response after ${o.timer.retransmissions} retransmission(s)`,
    });
    this.removeSa(sa, o.exchange.kind === 'delete' ? 'local' : 'timeout', sa.established);
  }

  // ------------------------------------------------------------------ incoming

  private handleDatagram(raw: Buffer, from: Endpoint, local: LocalEndpoint): void {
    let header: IkeHeader;
    try {
      header = decodeHeader(raw, { checkVersion: false });
    } catch (e) {
      this.drop(from, `bad header: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    if (header.majorVersion !== IKE_MAJOR_VERSION) {
      // RFC 7296 2.5: tell a newer-version peer which version we speak (never in reply to a response).
      if (!header.flags.response) {
        this.sendUnprotectedReply(header, from, local, NotifyType.INVALID_MAJOR_VERSION);
      }
      this.drop(from, `major version ${header.majorVersion}`);
      return;
    }
    if (header.exchangeType === ExchangeType.IKE_SA_INIT && !header.flags.response) {
      this.handleInitRequest(raw, header, from, local);
      return;
    }
    const ourSpi = header.flags.initiator ? header.spiR : header.spiI;
    const sa = this.bySpi.get(ourSpi.toString('hex'));
    const expectedRole: IkeRole = header.flags.initiator ? 'responder' : 'initiator';
    if (!sa || sa.role !== expectedRole || (!sa.remoteSpi.equals(ZERO_SPI) && !sa.remoteSpi.equals(header.flags.initiator ? header.spiI : header.spiR))) {
      // RFC 7296 2.21.4: a request for an unknown SA may get INVALID_IKE_SPI, a response never.
      if (!header.flags.response && header.exchangeType !== ExchangeType.IKE_SA_INIT) {
        this.sendUnprotectedReply(header, from, local, NotifyType.INVALID_IKE_SPI);
      }
      this.drop(from, 'unknown IKE SA');
      return;
    }
    if (header.flags.response) this.handleResponse(sa, raw, header, from, local);
    else this.handleRequest(sa, raw, header, from, local);
  }

  /** An unprotected notify-only response with the request's SPIs and Message ID. */
  private sendUnprotectedReply(
    req: IkeHeader,
    to: Endpoint,
    local: LocalEndpoint,
    notify: number,
    data?: NotifyData,
    spiR: Buffer = req.spiR,
  ): void {
    const m = encodeMessage({
      header: {
        spiI: req.spiI,
        spiR,
        majorVersion: IKE_MAJOR_VERSION,
        minorVersion: 0,
        exchangeType: notify === NotifyType.INVALID_IKE_SPI ? ExchangeType.INFORMATIONAL : req.exchangeType,
        flags: { initiator: !req.flags.initiator, version: false, response: true },
        messageId: req.messageId,
      },
      payloads: [makeNotify(notify, data)],
    });
    this.send.push(this.outgoing(to, local, m));
  }

  private handleInitRequest(raw: Buffer, header: IkeHeader, from: Endpoint, local: LocalEndpoint): void {
    if (header.messageId !== 0 || !header.flags.initiator || !header.spiR.equals(ZERO_SPI)) {
      this.drop(from, 'malformed IKE_SA_INIT request header');
      return;
    }
    const key = `${header.spiI.toString('hex')}/${endpointKey(from)}`;
    const existing = this.initIndex.get(key);
    if (existing) {
      // RFC 7296 2.1: a retransmitted IKE_SA_INIT gets the same response; a different one is ignored.
      const cached = existing.responses.get(0);
      if (cached && existing.initRequest?.equals(raw)) for (const p of cached) this.send.push(this.outgoing(from, local, p));
      else this.drop(from, 'second, different IKE_SA_INIT for a half-open SA');
      return;
    }
    let msg: IkeMessage;
    try {
      msg = decodeMessage(raw);
    } catch (e) {
      if (e instanceof DecodeError && e.kind === 'unsupported-critical') {
        this.sendUnprotectedReply(header, from, local, NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, {
          kind: 'payload-type',
          payloadType: e.payloadType ?? 0,
        });
      } else {
        this.sendUnprotectedReply(header, from, local, NotifyType.INVALID_SYNTAX);
      }
      this.drop(from, `malformed IKE_SA_INIT: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    const nonce = findPayload(msg.payloads, PayloadType.NONCE);
    if (!nonce) {
      this.sendUnprotectedReply(header, from, local, NotifyType.INVALID_SYNTAX);
      return;
    }
    const cookie = findNotify(msg.payloads, NotifyType.COOKIE);
    const cookieOk =
      cookie !== undefined &&
      cookie.data.kind === 'cookie' &&
      this.cookies.verifyCookie(cookie.data.cookie, nonce.nonce, from.address, header.spiI, this.now);
    const decision = this.halfOpen.admit(from.address, this.now, cookieOk);
    if (decision === 'reject') {
      this.drop(from, 'too many half-open SAs from this source');
      return;
    }
    if (decision === 'cookie') {
      this.sendUnprotectedReply(header, from, local, NotifyType.COOKIE, {
        kind: 'cookie',
        cookie: this.cookies.makeCookie(nonce.nonce, from.address, header.spiI, this.now),
      }, ZERO_SPI);
      return;
    }
    const sa = this.createSa('responder', from, local);
    sa.spiI = header.spiI;
    sa.initRequest = Buffer.from(raw);
    const tasks: Task[] = [new IkeInitTask('responder'), new IkeNatdTask('responder'), new IkeCertPreTask('responder'), new IkeFragTask('responder')];
    const received: ReceivedMessage = { header, payloads: msg.payloads, raw, from, local };
    const outcome = this.processAll(sa, tasks, received);
    if (outcome.kind !== 'ok') {
      // Stateless refusal: no SA is kept (RFC 7296 1.2 / 2.6).
      const notify = outcome.kind === 'fail' ? outcome.notify : NotifyType.INVALID_SYNTAX;
      this.sendUnprotectedReply(header, from, local, notify, outcome.kind === 'fail' ? outcome.data : undefined, ZERO_SPI);
      this.events.push({
        type: 'exchange-failed',
        saId: sa.id,
        exchange: 'IKE_SA_INIT',
        notify: notifyTypeName(notify),
        notifyType: notify,
        detectedLocally: true,
        reason: outcome.kind === 'fail' ? outcome.reason : 'unexpected retry',
      });
      return;
    }
    const payloads: Payload[] = [];
    for (const t of tasks) t.build(sa, this.env(), payloads);
    const response = encodeMessage({ header: this.header(sa, ExchangeType.IKE_SA_INIT, 0, true), payloads });
    sa.initResponse = response;
    sa.responses.store(0, [response]);
    this.register(sa);
    this.initIndex.set(key, sa);
    for (const evicted of this.halfOpen.add(sa.id, from.address, this.now)) {
      const victim = this.byId.get(evicted);
      if (victim) this.removeSa(victim, 'timeout', false);
    }
    this.emitKeylog(sa);
    this.send.push(this.outgoing(from, local, response));
  }

  private processAll(sa: IkeSa, tasks: readonly Task[], msg: ReceivedMessage): TaskOutcome {
    for (const t of tasks) {
      const r = t.process(sa, this.env(), msg);
      if (r.kind !== 'ok') return r;
    }
    return { kind: 'ok' };
  }

  private handleResponse(sa: IkeSa, raw: Buffer, header: IkeHeader, from: Endpoint, local: LocalEndpoint): void {
    const o = sa.outstanding;
    if (!o || o.messageId !== header.messageId || o.exchangeType !== header.exchangeType) {
      this.drop(from, `unexpected response #${header.messageId}`);
      return;
    }
    let payloads: Payload[];
    if (header.exchangeType === ExchangeType.IKE_SA_INIT) {
      let msg: IkeMessage;
      try {
        msg = decodeMessage(raw);
      } catch (e) {
        // Unauthenticated garbage must not end the exchange: keep waiting (RFC 7296 2.4).
        this.drop(from, `malformed IKE_SA_INIT response: ${e instanceof Error ? e.message : String(e)}`);
        return;
      }
      payloads = [...msg.payloads];
      if (findPayload(payloads, PayloadType.SA)) sa.spiR = header.spiR;
      sa.initResponse = Buffer.from(raw);
    } else {
      let msg: IkeMessage;
      try {
        msg = decodeMessage(raw);
      } catch (e) {
        this.drop(from, `malformed response: ${e instanceof Error ? e.message : String(e)}`);
        return;
      }
      const d = this.decrypt(sa, raw, msg, true);
      if (d.kind === 'incomplete') return;
      if (d.kind === 'invalid') {
        this.drop(from, d.reason);
        return;
      }
      if (d.kind === 'malformed') {
        o.timer.stop();
        sa.outstanding = undefined;
        this.inFlight.delete(sa);
        sa.nextRequestId++;
        this.exchangeFailed(sa, o.exchange, { kind: 'fail', notify: NotifyType.INVALID_SYNTAX, reason: d.error.message }, true);
        return;
      }
      payloads = d.payloads;
    }
    sa.lastHeardAt = this.now;
    const outcome = this.processAll(sa, o.exchange.tasks, { header, payloads, raw, from, local });
    o.timer.stop();
    sa.outstanding = undefined;
    this.inFlight.delete(sa);
    if (outcome.kind === 'retry') {
      if (o.exchangeType === ExchangeType.IKE_SA_INIT) {
        // Same Message ID 0, no responder SPI yet (RFC 7296 2.6).
        sa.spiR = Buffer.alloc(8);
        sa.initResponse = undefined;
      } else {
        sa.nextRequestId++;
      }
      this.startExchange(sa, o.exchange);
      return;
    }
    sa.nextRequestId++;
    if (outcome.kind === 'fail') {
      const peerReported = payloads.some((p) => p.type === PayloadType.NOTIFY && 'notifyType' in p && p.notifyType === outcome.notify);
      this.exchangeFailed(sa, o.exchange, outcome, !peerReported);
    } else {
      this.exchangeDone(sa, o.exchange);
    }
    this.nextFromQueue(sa);
  }

  private handleRequest(sa: IkeSa, raw: Buffer, header: IkeHeader, from: Endpoint, local: LocalEndpoint): void {
    const cls = sa.responses.classify(header.messageId);
    if (cls.kind === 'drop') {
      this.drop(from, `request #${header.messageId} outside the window (${cls.reason})`);
      return;
    }
    let msg: IkeMessage;
    try {
      msg = decodeMessage(raw);
    } catch (e) {
      this.drop(from, `malformed request: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    const last = msg.payloads[msg.payloads.length - 1];
    if (cls.kind === 'retransmit') {
      // Only a verified copy may trigger a resend, or forged headers would make us an amplifier.
      const d = this.decrypt(sa, raw, msg, false);
      const fragment = last && isEncryptedContainer(last) && last.type === PayloadType.SKF ? last.fragmentNumber : undefined;
      if (d.kind !== 'invalid' && shouldResendForFragment(fragment)) {
        for (const p of cls.packets) this.send.push(this.outgoing(from, local, p));
      }
      return;
    }
    if (sa.state === 'deleted') {
      this.drop(from, 'request on a failed IKE SA');
      return;
    }
    const d = this.decrypt(sa, raw, msg, true);
    if (d.kind === 'incomplete') return;
    if (d.kind === 'invalid') {
      this.drop(from, d.reason);
      return;
    }
    sa.lastHeardAt = this.now;
    // RFC 7296 2.23: behind a NAT, answer and send to where the last valid request came from.
    if (sa.role === 'responder' && responderFollowsPeer(
      { peerSupportsNatT: sa.peerNatT, localBehindNat: sa.natLocal, peerBehindNat: sa.natRemote },
      local.marker && !sa.local.marker,
    )) {
      sa.peer = from;
      sa.local = local;
    }
    const received = (payloads: Payload[]): ReceivedMessage => ({ header, payloads, raw, from, local });
    if (d.kind === 'malformed') {
      // RFC 7296 2.21.2/2.21.3: the ICV held, so the error can be reported (protected).
      const critical = d.error.kind === 'unsupported-critical';
      this.respond(sa, header, from, local, [
        critical
          ? makeNotify(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, { kind: 'payload-type', payloadType: d.error.payloadType ?? 0 })
          : makeNotify(NotifyType.INVALID_SYNTAX),
      ]);
      if (!sa.established) this.retireFailed(sa);
      return;
    }
    switch (header.exchangeType) {
      case ExchangeType.IKE_AUTH:
      case ExchangeType.GSA_AUTH:
        this.handleAuthRequest(sa, header, received(d.payloads));
        return;
      case ExchangeType.INFORMATIONAL:
        this.handleInformationalRequest(sa, header, received(d.payloads));
        return;
      case ExchangeType.CREATE_CHILD_SA:
        this.handleCreateChildRequest(sa, header, received(d.payloads));
        return;
      default: {
        const responder = this.config.exchangeResponders.get(header.exchangeType);
        if (!responder) {
          this.drop(from, `unsupported exchange ${exchangeName(header.exchangeType)}`);
          return;
        }
        this.handleExtensionRequest(sa, header, received(d.payloads), responder);
      }
    }
  }

  /** Protected response to request `req`, cached for retransmissions. */
  private respond(sa: IkeSa, req: IkeHeader, to: Endpoint, local: LocalEndpoint, payloads: readonly Payload[]): void {
    const packets = this.protectedPackets(sa, this.header(sa, req.exchangeType, req.messageId, true), payloads).map(own);
    sa.responses.store(req.messageId, packets);
    for (const p of packets) this.send.push(this.outgoing(to, local, p));
  }

  private respondWithTasks(sa: IkeSa, msg: ReceivedMessage, tasks: readonly Task[]): void {
    const payloads: Payload[] = [];
    for (const t of tasks) t.build(sa, this.env(), payloads);
    this.respond(sa, msg.header, msg.from, msg.local, payloads);
  }

  private handleAuthRequest(sa: IkeSa, header: IkeHeader, msg: ReceivedMessage): void {
    if (sa.role !== 'responder' || sa.state !== 'init-done') {
      this.drop(msg.from, `${exchangeName(header.exchangeType)} in state ${sa.state}`);
      return;
    }
    const gsa = header.exchangeType === ExchangeType.GSA_AUTH;
    const providers = gsa ? this.config.gsaAuthProviders : this.config.ikeAuthProviders;
    const exchange: Exchange = {
      kind: 'ike-auth',
      exchangeType: header.exchangeType,
      tasks: [],
    };
    if (!providers) {
      // Not a GCKS: GSA_AUTH is an exchange we do not do.
      this.respond(sa, header, msg.from, msg.local, [makeNotify(NotifyType.INVALID_SYNTAX)]);
      this.exchangeFailed(sa, exchange, { kind: 'fail', notify: NotifyType.INVALID_SYNTAX, reason: 'GSA_AUTH is not enabled' }, true);
      return;
    }
    const task = new IkeAuthTask('responder', { exchangeType: header.exchangeType, providers });
    const outcome = task.process(sa, this.env(), msg);
    if (outcome.kind !== 'ok') {
      const notify = outcome.kind === 'fail' ? outcome.notify : NotifyType.INVALID_SYNTAX;
      this.respond(sa, header, msg.from, msg.local, [makeNotify(notify)]);
      this.exchangeFailed(sa, exchange, outcome.kind === 'fail' ? outcome : { kind: 'fail', notify, reason: 'retry' }, true);
      return;
    }
    try {
      this.respondWithTasks(sa, msg, [task]);
    } catch (e) {
      if (!(e instanceof TaskError)) throw e;
      this.respond(sa, header, msg.from, msg.local, [makeNotify(e.notify)]);
      this.exchangeFailed(sa, exchange, { kind: 'fail', notify: e.notify, reason: e.reason }, true);
      return;
    }
    this.established(sa, header.exchangeType, task);
  }

  private handleInformationalRequest(sa: IkeSa, header: IkeHeader, msg: ReceivedMessage): void {
    const task = new InformationalTask('responder');
    task.process(sa, this.env(), msg);
    this.respondWithTasks(sa, msg, [task]);
    if (task.deleteRequested) {
      const reason: SaDeleteReason = sa.state === 'rekeyed' ? 'rekeyed' : sa.redundant ? 'redundant' : 'remote';
      this.removeSa(sa, reason, sa.established);
    } else if (task.errorReceived !== undefined) {
      this.events.push({
        type: 'exchange-failed',
        saId: sa.id,
        exchange: exchangeName(header.exchangeType),
        notify: notifyTypeName(task.errorReceived),
        notifyType: task.errorReceived,
        detectedLocally: false,
        reason: 'peer reported an error about the IKE SA',
      });
      this.removeSa(sa, 'error', sa.established);
    }
  }

  private handleExtensionRequest(
    sa: IkeSa,
    header: IkeHeader,
    msg: ReceivedMessage,
    responder: ExchangeResponder,
  ): void {
    if (sa.state !== 'established') {
      this.drop(msg.from, `${exchangeName(header.exchangeType)} in state ${sa.state}`);
      return;
    }
    this.respond(sa, header, msg.from, msg.local, responder(extensionContext(sa, this.env(), header.exchangeType), msg.payloads));
  }

  private handleCreateChildRequest(sa: IkeSa, header: IkeHeader, msg: ReceivedMessage): void {
    if (!sa.established) {
      this.drop(msg.from, `CREATE_CHILD_SA in state ${sa.state}`);
      return;
    }
    if (sa.state !== 'established') {
      // RFC 7296 2.25: a rekey of an SA being rekeyed or deleted is refused for now.
      this.respond(sa, header, msg.from, msg.local, [makeNotify(NotifyType.TEMPORARY_FAILURE)]);
      return;
    }
    const task = new IkeRekeyTask('responder', (role) => this.createSa(role, sa.peer, sa.local));
    const outcome = task.process(sa, this.env(), msg);
    if (outcome.kind !== 'ok') {
      const notify = outcome.kind === 'fail' ? outcome.notify : NotifyType.INVALID_SYNTAX;
      this.respond(sa, header, msg.from, msg.local, [makeNotify(notify, outcome.kind === 'fail' ? outcome.data : undefined)]);
      return;
    }
    this.respondWithTasks(sa, msg, [task]);
    const newSa = task.newSa!;
    this.adoptRekeyedSa(sa, newSa);
    const tracking = this.rekeys.get(sa);
    if (tracking?.own) {
      // Collision: decide when our own exchange completes (RFC 7296 2.8.2).
      tracking.peerSa = newSa;
      return;
    }
    this.finishRekey(sa, newSa);
  }

  // ------------------------------------------------------------------ outcomes

  private exchangeDone(sa: IkeSa, exchange: Exchange): void {
    switch (exchange.kind) {
      case 'ike-sa-init': {
        sa.state = 'auth-sent';
        this.emitKeylog(sa);
        this.maybeFloat(sa);
        const auth = this.authTasks.get(sa)!;
        this.startExchange(sa, { kind: 'ike-auth', exchangeType: auth.exchangeType, tasks: [auth] });
        return;
      }
      case 'ike-auth':
        this.authTasks.delete(sa);
        this.established(sa, exchange.exchangeType, exchange.tasks[0] as IkeAuthTask);
        return;
      case 'liveness':
        this.events.push({ type: 'liveness-ok', saId: sa.id });
        return;
      case 'extension':
        // The task handed the response to its ExtensionRequest.
        return;
      case 'delete':
        this.removeSa(sa, sa.state === 'rekeyed' ? 'rekeyed' : sa.redundant ? 'redundant' : 'local', true);
        return;
      case 'error-notify':
        this.removeSa(sa, 'error', false);
        return;
      case 'ike-rekey': {
        const task = exchange.tasks[0] as IkeRekeyTask;
        const newSa = task.newSa!;
        this.adoptRekeyedSa(sa, newSa);
        const tracking = this.rekeys.get(sa);
        if (tracking) tracking.own = false;
        const peerSa = tracking?.peerSa;
        if (peerSa && this.byId.has(peerSa.id)) {
          // Both sides rekeyed: the SA holding the lowest of the four nonces is redundant and is
          // deleted by its creator; the creator of the survivor deletes the old SA.
          const ours = [newSa.nonceI!, newSa.nonceR!];
          const theirs = [peerSa.nonceI!, peerSa.nonceR!];
          const lowest = [...ours, ...theirs].sort(Buffer.compare)[0]!;
          if (ours.some((n) => n.equals(lowest))) {
            newSa.redundant = true;
            this.rekeyed(sa, peerSa, false);
            this.startDelete(newSa);
          } else {
            peerSa.redundant = true;
            this.rekeyed(sa, newSa, true);
          }
          return;
        }
        this.rekeyed(sa, newSa, true);
        return;
      }
    }
  }

  private exchangeFailed(sa: IkeSa, exchange: Exchange, outcome: TaskOutcome & { kind: 'fail' }, detectedLocally: boolean): void {
    this.events.push({
      type: 'exchange-failed',
      saId: sa.id,
      exchange: exchangeName(exchange.exchangeType),
      notify: notifyTypeName(outcome.notify),
      notifyType: outcome.notify,
      detectedLocally,
      reason: outcome.reason,
    });
    switch (exchange.kind) {
      case 'ike-sa-init':
        this.removeSa(sa, 'error', false);
        return;
      case 'ike-auth':
        if (sa.role === 'initiator' && detectedLocally && sa.keys) {
          // RFC 7296 2.21.2: the initiator may report the failure in an INFORMATIONAL; best effort.
          this.sendOneShotNotify(sa, outcome.notify);
        }
        if (sa.role === 'responder') this.retireFailed(sa);
        else this.removeSa(sa, 'error', false);
        return;
      case 'ike-rekey': {
        const tracking = this.rekeys.get(sa);
        if (tracking) tracking.own = false;
        // The peer won a collision and refused ours: its SA replaces the old one.
        if (tracking?.peerSa && this.byId.has(tracking.peerSa.id)) this.finishRekey(sa, tracking.peerSa);
        return;
      }
      default:
        if (!outcome.keepSa) this.removeSa(sa, 'error', sa.established);
    }
  }

  /** Initiator after IKE_SA_INIT: move to the NAT-T socket and port if a NAT is in the way. */
  private maybeFloat(sa: IkeSa): void {
    const natT = this.natT.get(sa);
    this.natT.delete(sa);
    const decision = decideFloat({
      detection: { peerSupportsNatT: sa.peerNatT, localBehindNat: sa.natLocal, peerBehindNat: sa.natRemote },
      alwaysFloat: false,
      currentSocketUsesMarker: sa.local.marker,
    });
    if (!decision.float || !natT) return;
    sa.local = natT.local;
    sa.peer = floatedPeer(sa.peer, natT.peerPort);
  }

  /**
   * A responder SA whose authentication failed stays a while, so that a
   * retransmitted request gets the cached error response instead of
   * INVALID_IKE_SPI (RFC 7296 2.1). It accepts nothing new. It keeps its
   * place in the half-open table: it costs what a half-open SA costs, and
   * failing IKE_AUTH on purpose must not be a way around the half-open caps
   * (count, per source, octets). Evicted or expired from there, it goes.
   */
  private retireFailed(sa: IkeSa): void {
    sa.state = 'deleted';
    // Only the cached response and the ciphers that verify a retransmission are needed now.
    sa.keyExchange = undefined;
    sa.initRequest = undefined;
    sa.initResponse = undefined;
    this.dropFromInitIndex(sa);
    this.expiries.set(sa, { at: this.now + this.config.staleSaTimeoutMs, reason: 'error', announce: false });
  }

  /** An INFORMATIONAL request we do not wait for (the SA is about to go). */
  private sendOneShotNotify(sa: IkeSa, notify: number): void {
    const header = this.header(sa, ExchangeType.INFORMATIONAL, sa.nextRequestId++, false);
    this.transmit(sa, this.protectedPackets(sa, header, [makeNotify(notify)]));
  }

  private established(sa: IkeSa, exchangeType: number, task: IkeAuthTask): void {
    sa.state = 'established';
    // Needed only to compute and check AUTH: not worth keeping for the SA's lifetime.
    sa.keyExchange = undefined;
    sa.initRequest = undefined;
    sa.initResponse = undefined;
    sa.spiI = own(sa.spiI);
    sa.spiR = own(sa.spiR);
    if (sa.nonceI) sa.nonceI = own(sa.nonceI);
    if (sa.nonceR) sa.nonceR = own(sa.nonceR);
    if (sa.peerId) sa.peerId = { ...sa.peerId, data: own(sa.peerId.data) };
    sa.peerCertReqs = sa.peerCertReqs.map(own);
    this.halfOpen.remove(sa.id);
    this.dropFromInitIndex(sa);
    this.events.push({
      type: 'sa-established',
      saId: sa.id,
      role: sa.role,
      spiI: sa.spiI.toString('hex'),
      spiR: sa.spiR.toString('hex'),
      exchange: exchangeName(exchangeType),
      localId: formatIdentity(this.config.localId),
      peerId: sa.peerId ? formatIdentity(sa.peerId) : '',
      peer: sa.peer,
      algorithms: describeAlgorithms(sa.transforms!),
      natLocal: sa.natLocal,
      natRemote: sa.natRemote,
      fragmentation: sa.fragmentation,
      ...(task.childRefused !== undefined ? { childSaRefused: notifyTypeName(task.childRefused) } : {}),
      ...(task.providerRefusal ? { extensionRefused: notifyTypeName(task.providerRefusal.notify) } : {}),
    });
  }

  /** A new SA from a rekey inherits what was learnt about the peer and becomes reachable. */
  private adoptRekeyedSa(old: IkeSa, sa: IkeSa): void {
    sa.state = 'established';
    sa.peerId = old.peerId;
    if (old.peerCertificate) sa.peerCertificate = old.peerCertificate;
    sa.natLocal = old.natLocal;
    sa.natRemote = old.natRemote;
    sa.peerNatT = old.peerNatT;
    sa.fragmentation = old.fragmentation;
    sa.peerChildless = old.peerChildless;
    sa.peerSignatureHashes = old.peerSignatureHashes;
    sa.keyExchange = undefined;
    this.register(sa);
    this.emitKeylog(sa);
  }

  /** Without a collision: the new SA replaces `old`; its initiator deletes `old` (RFC 7296 2.18). */
  private finishRekey(old: IkeSa, sa: IkeSa): void {
    this.rekeyed(old, sa, sa.role === 'initiator');
  }

  private rekeyed(old: IkeSa, sa: IkeSa, weDeleteOld: boolean): void {
    old.state = 'rekeyed';
    this.rekeys.delete(old);
    // Whatever was queued on the old SA now belongs on the new one.
    for (const e of old.queue.splice(0)) if (e.kind === 'liveness' || e.kind === 'extension') sa.queue.push(e);
    this.events.push({
      type: 'sa-rekeyed',
      oldSaId: old.id,
      saId: sa.id,
      spiI: sa.spiI.toString('hex'),
      spiR: sa.spiR.toString('hex'),
      algorithms: describeAlgorithms(sa.transforms!),
    });
    if (weDeleteOld) this.startDelete(old);
    // The peer owes us a Delete for the old SA; do not wait forever.
    else this.expiries.set(old, { at: this.now + this.config.staleSaTimeoutMs, reason: 'rekeyed', announce: true });
    this.nextFromQueue(sa);
  }

  private startDelete(sa: IkeSa): void {
    if (sa.state === 'established') sa.state = 'deleting';
    // A Delete supersedes whatever else was queued.
    sa.queue.length = 0;
    this.request(sa, { kind: 'delete', exchangeType: ExchangeType.INFORMATIONAL, tasks: [new InformationalTask('initiator', 'delete')] });
  }

  private dropFromInitIndex(sa: IkeSa): void {
    if (sa.role !== 'responder') return;
    const key = `${sa.spiI.toString('hex')}/${endpointKey(sa.peer)}`;
    if (this.initIndex.get(key) === sa) this.initIndex.delete(key);
  }

  private removeSa(sa: IkeSa, reason: SaDeleteReason, announce: boolean): void {
    if (!this.byId.has(sa.id)) return;
    if (announce) {
      this.events.push({ type: 'sa-deleted', saId: sa.id, spiI: sa.spiI.toString('hex'), spiR: sa.spiR.toString('hex'), reason });
    }
    this.byId.delete(sa.id);
    this.bySpi.delete(sa.localSpi.toString('hex'));
    this.dropFromInitIndex(sa);
    this.halfOpen.remove(sa.id);
    this.reassembler.discard(`${sa.id}/request`);
    this.reassembler.discard(`${sa.id}/response`);
    this.authTasks.delete(sa);
    this.natT.delete(sa);
    this.rekeys.delete(sa);
    this.expiries.delete(sa);
    this.inFlight.delete(sa);
    sa.state = 'deleted';
    sa.wipe();
  }
}
