/**
 * The key server as one sans-I/O service (RFC 9838 Sections 2.3.1, 2.3.2,
 * 2.3.4): an IKE engine that answers IKE_SA_INIT, GSA_AUTH (and a childless
 * IKE_AUTH from a standard IKEv2 stack), GSA_REGISTRATION over an
 * established IKE SA, and the group directory that admits members and hands
 * out keys. It implements DatagramEngine, so src/node/udp.ts or the
 * simulator drives it unchanged.
 *
 * The registration IKE SA's life (Section 2.3.4, "after a short period of
 * time the GCKS SHOULD close the IKE SA"): after every registration exchange
 * the SA is closed `closeGraceMs` later unless the member holds a membership
 * on it in an inband-rekeyed group (those keep it for GSA_INBAND_REKEY); a
 * further exchange restarts the wait. An SA on which nothing is registered
 * (a bare childless IKE_AUTH) is closed after `unusedSaTimeoutMs`. When an SA
 * of an inband group goes, its member is removed from that group: without
 * the SA it cannot get rekeys and considers itself excluded (Section 2.3.3).
 *
 * Files named in the configuration (certificate, private key, trust
 * anchors, rekey signing keys) are read by the caller and passed in `deps`.
 */
import type { KeyObject } from 'node:crypto';
import type { RekeySaKeys } from '../crypto/keys.ts';
import { deriveGskW } from '../crypto/keys.ts';
import { kwaKeyLength } from '../crypto/keywrap.ts';
import type { RandomSource } from '../crypto/random.ts';
import type { AuthExtensionContext, AuthPayloadProvider, ProviderRefusal } from '../ike/auth-extension.ts';
import type { IkeEngineConfig } from '../ike/config.ts';
import { IkeEngine, type EngineEvent, type SaInfo } from '../ike/engine.ts';
import { formatIdentity } from '../ike/identity.ts';
import { mergeOutputs, type DatagramEngine, type Endpoint, type LocalEndpoint, type Output, type Outgoing } from '../ike/io-types.ts';
import type { RetransmitConfig } from '../ike/retransmit.ts';
import { ExchangeType, nameOf, NotifyType } from '../wire/iana.ts';
import type { Payload } from '../wire/payload.ts';
import { makeNotify } from '../wire/payloads/notify.ts';
import { pskForMember } from './authorize.ts';
import type { Identity } from './config-identities.ts';
import type { DataSecurityMode, GcksConfig } from './config.ts';
import { memoryCounterReservation, type CounterReservation } from './counters.ts';
import { identityKey, type Group } from './group.ts';
import { splitDataSecurityKeymat, type DataSecurityKeys } from './keymat.ts';
import {
  createGroupDirectory,
  leaveGroup,
  parseRegistrationRequest,
  registerMember,
  type GcksEvent,
  type GroupDirectory,
  type RegistrationExchange,
  type RegistrationOutcome,
} from './registration.ts';
import type { RekeySigningKey } from './signing-key.ts';

/** Default wait before closing a registration IKE SA of a multicast-rekeyed group. */
export const DEFAULT_CLOSE_GRACE_MS = 5_000;
/** Default life of an IKE SA on which nothing was ever registered. */
export const DEFAULT_UNUSED_SA_TIMEOUT_MS = 60_000;

export interface GcksServiceDeps {
  readonly rng: RandomSource;
  /** Wall-clock time for certificate validity (`now` is the adapter's clock, often monotonic). */
  readonly certificateTime?: (now: number) => Date;
  /** Emit `keylog` events (Wireshark ikev2_decryption_table lines). Default false. */
  readonly keylog?: boolean;
  /** The adapter clock's time at construction: group keys are created then. Default 0. */
  readonly now?: number;
  /** Our certificate (chain, end-entity first) and key, read from credentials.certificate/privateKey. */
  readonly certificate?: { readonly chain: readonly (Buffer | string)[]; readonly privateKey: KeyObject };
  /** CA certificates members' chains must end in, read from credentials.trustAnchors. */
  readonly trustAnchors?: readonly (Buffer | string)[];
  /** Rekey signing key per group name (groups with `authentication: signature`). */
  readonly signingKeyFor?: (groupName: string) => RekeySigningKey | undefined;
  /** Where never-repeating counters are reserved; default in memory (a restart may repeat them). */
  readonly counters?: CounterReservation;
  /** Wait after a registration exchange before closing the IKE SA (multicast groups). */
  readonly closeGraceMs?: number;
  /** Life of an IKE SA without any registration. */
  readonly unusedSaTimeoutMs?: number;
  readonly retransmit?: Partial<RetransmitConfig>;
  /** Further engine tuning (cookies, half-open limits, fragmentation). */
  readonly engine?: Partial<Pick<IkeEngineConfig, 'cookieThreshold' | 'halfOpen' | 'fragmentation' | 'maxDatagramSize' | 'nonceLength' | 'staleSaTimeoutMs'>>;
  /**
   * Diagnostic tap: the payloads of every successful registration response
   * (GSA, KD, [N]) just before they are encrypted. For tests and `--dump`;
   * the KD holds only wrapped keys.
   */
  readonly inspectResponse?: (exchange: RegistrationExchange, payloads: readonly Payload[], context: { readonly saId: string; readonly group: string; readonly member: string; readonly groupSender: number | undefined }) => void;
}

type MemberRegistered = Extract<GcksEvent, { type: 'member-registered' }>;
type RegistrationRejected = Extract<GcksEvent, { type: 'registration-rejected' }>;
type MemberLeft = Extract<GcksEvent, { type: 'member-left' }>;

/** Everything the key server reports: registration outcomes and the engine's own events. */
export type GcksServiceEvent =
  | EngineEvent
  | (MemberRegistered & {
      readonly saId: string;
      /** Rekey SA SPI (hex, 16 octets) when the group has one. */
      readonly rekeySpi?: string | undefined;
      /** Data-Security SA SPIs (hex) handed out. */
      readonly dataSecuritySpis: readonly string[];
    })
  | (RegistrationRejected & { readonly saId: string; readonly exchange: string })
  | (MemberLeft & {
      readonly saId?: string | undefined;
      /** The member asked (GSA_REGISTRATION with IDg + notify), or its inband group's IKE SA went away. */
      readonly cause: 'member-request' | 'ike-sa-closed';
    })
  | Extract<GcksEvent, { type: 'sender-ids-exhausted' }>;

export interface GcksGroupSummary {
  readonly name: string;
  /** IDg as text (formatIdentity). */
  readonly id: string;
  readonly rekey: 'multicast' | 'inband';
  readonly mode: DataSecurityMode;
  readonly capacity: number;
  readonly members: number;
  readonly rekeySpi?: string | undefined;
  readonly dataSecuritySpis: readonly string[];
}

export interface GcksMemberInfo {
  readonly group: string;
  readonly member: string;
  readonly memberId: Identity;
  readonly registeredAt: number;
  readonly sender: boolean;
  readonly senderIds: readonly number[];
  /** The registration IKE SA while it exists (kept for inband groups). */
  readonly saId?: string | undefined;
}

/** TEST / DIAGNOSTIC ONLY: a group's current keys in the clear. Never log or export this. */
export interface GcksGroupKeys {
  readonly name: string;
  readonly id: string;
  readonly rekeySa?: {
    readonly spi: Buffer;
    readonly keys: RekeySaKeys;
    readonly expiresAt: number;
    /** GSA_INITIAL_MESSAGE_ID a member joining now gets (0: attribute absent). */
    readonly nextMessageId: number;
  } | undefined;
  readonly dataSecurity: readonly {
    readonly protocolId: number;
    readonly spi: Buffer;
    readonly keys: DataSecurityKeys;
    readonly expiresAt: number;
  }[];
}

/** Per registration IKE SA. */
interface Session {
  /** The authenticated member on this SA. */
  readonly peerId: Identity;
  /** Group name -> member identity key, for what was registered on this SA. */
  readonly groups: Set<string>;
  /** Inband groups held over this SA: while any, the SA stays. */
  readonly inband: Set<string>;
  closeAt: number | undefined;
}

export class GcksService implements DatagramEngine<GcksServiceEvent> {
  readonly config: GcksConfig;
  /** The groups at run time; for the rekey planner and the daemon. */
  readonly directory: GroupDirectory;
  /** The IKE engine; e.g. for GSA_INBAND_REKEY over a member's SA (engine.requestExchange). */
  readonly engine: IkeEngine;
  private readonly closeGraceMs: number;
  private readonly unusedSaTimeoutMs: number;
  private readonly inspect: GcksServiceDeps['inspectResponse'];
  private readonly sessions = new Map<string, Session>();
  /** `${group}|${memberKey}` -> the SA an inband member registered over. */
  private readonly inbandSa = new Map<string, string>();
  /** Service events produced inside an engine call (provider callbacks), flushed with its output. */
  private pending: GcksServiceEvent[] = [];
  /** GSA_AUTH: the provider's answer between processRequest and buildResponse, by SA. */
  private readonly authAnswers = new Map<string, readonly Payload[]>();

  constructor(config: GcksConfig, deps: GcksServiceDeps) {
    this.config = config;
    this.closeGraceMs = deps.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS;
    this.unusedSaTimeoutMs = deps.unusedSaTimeoutMs ?? DEFAULT_UNUSED_SA_TIMEOUT_MS;
    this.inspect = deps.inspectResponse;
    this.directory = createGroupDirectory(
      config.groups,
      { counters: deps.counters ?? memoryCounterReservation(), rng: deps.rng, ...(deps.signingKeyFor ? { signingKeyFor: deps.signingKeyFor } : {}) },
      deps.now ?? 0,
    );
    const provider: AuthPayloadProvider = {
      name: 'gcks-registration',
      processRequest: (ctx, payloads) => this.onGsaAuth(ctx, payloads),
      buildResponse: (ctx) => {
        const payloads = this.authAnswers.get(ctx.saId) ?? [];
        this.authAnswers.delete(ctx.saId);
        return [...payloads];
      },
    };
    this.engine = new IkeEngine({
      ...deps.engine,
      localId: config.identity,
      proposals: config.ike.proposals,
      keyWrap: config.ike.keyWrap,
      pskLookup: (peer) => pskForMember(config.credentials, peer),
      ...(deps.certificate ? { certificate: deps.certificate } : {}),
      trustAnchors: deps.trustAnchors ?? [],
      gsaAuthProviders: [provider],
      // A standard IKEv2 stack's childless IKE_AUTH is accepted; GSA_REGISTRATION follows on it.
      ikeAuthProviders: [],
      exchangeResponders: new Map([[ExchangeType.GSA_REGISTRATION, (ctx, payloads) => this.onGsaRegistration(ctx, payloads)]]),
      ...(deps.retransmit ? { retransmit: deps.retransmit } : {}),
      keylog: deps.keylog ?? false,
      rng: deps.rng,
      ...(deps.certificateTime ? { certificateTime: deps.certificateTime } : {}),
    });
  }

  // ------------------------------------------------------------------ DatagramEngine

  receive(data: Buffer, from: Endpoint, local: LocalEndpoint, now: number): Output<GcksServiceEvent> {
    return this.wrap(now, this.engine.receive(data, from, local, now));
  }

  timeout(now: number): Output<GcksServiceEvent> {
    const outputs: Output<GcksServiceEvent>[] = [this.wrap(now, this.engine.timeout(now))];
    for (const [saId, s] of [...this.sessions]) {
      if (s.closeAt !== undefined && s.closeAt <= now) {
        s.closeAt = undefined;
        outputs.push(this.wrap(now, this.engine.deleteSa(saId, now)));
      }
    }
    return mergeOutputs(...outputs);
  }

  nextTimeout(): number | undefined {
    let t = this.engine.nextTimeout();
    for (const s of this.sessions.values()) if (s.closeAt !== undefined && (t === undefined || s.closeAt < t)) t = s.closeAt;
    return t;
  }

  /** Closes every IKE SA (shutdown); members of multicast groups keep their keys. */
  closeAll(now: number): Output<GcksServiceEvent> {
    return mergeOutputs(...this.engine.list().map((sa) => this.wrap(now, this.engine.deleteSa(sa.saId, now))));
  }

  // ------------------------------------------------------------------ queries

  groups(): GcksGroupSummary[] {
    return [...this.directory.groups].map((g) => ({
      name: g.name,
      id: formatIdentity(g.config.id),
      rekey: g.rekeySa ? 'multicast' : 'inband',
      mode: g.config.mode,
      capacity: g.config.capacity,
      members: g.members.size,
      rekeySpi: g.rekeySa?.spi.toString('hex'),
      dataSecuritySpis: g.dataSecuritySas.map((t) => t.spi.toString('hex')),
    }));
  }

  /** Members of one group (by name or IDg text), or of all groups. */
  members(group?: string): GcksMemberInfo[] {
    const groups = group === undefined ? [...this.directory.groups] : [this.findGroup(group)].flatMap((g) => (g ? [g] : []));
    return groups.flatMap((g) =>
      [...g.members.values()].map((m) => ({
        group: g.name,
        member: formatIdentity(m.id),
        memberId: m.id,
        registeredAt: m.registeredAt,
        sender: m.sender,
        senderIds: m.senderIds,
        saId: this.inbandSa.get(`${g.name}|${identityKey(m.id)}`),
      })),
    );
  }

  /**
   * TEST / DIAGNOSTIC API: the group's current SAs with their keys in the
   * clear, so tests can compare them with what members installed. Never
   * log, print or export the result.
   */
  groupKeys(group: string): GcksGroupKeys | undefined {
    const g = this.findGroup(group);
    if (!g) return undefined;
    const kek = g.rekeySa;
    return {
      name: g.name,
      id: formatIdentity(g.config.id),
      rekeySa: kek && { spi: kek.spi, keys: kek.keys, expiresAt: kek.expiresAt, nextMessageId: kek.messageIds.peek() },
      dataSecurity: g.dataSecuritySas.map((t) => ({
        protocolId: t.policy.protocolId,
        spi: t.spi,
        keys: splitDataSecurityKeymat(t.keymat, t.policy),
        expiresAt: t.expiresAt,
      })),
    };
  }

  /** The live IKE SAs (registration and childless ones). */
  ikeSas(): SaInfo[] {
    return this.engine.list();
  }

  /** A group by configured name or by IDg text (formatIdentity). */
  private findGroup(nameOrId: string): Group | undefined {
    const all = [...this.directory.groups];
    return all.find((g) => g.name === nameOrId) ?? all.find((g) => formatIdentity(g.config.id) === nameOrId);
  }

  // ------------------------------------------------------------------ registration

  private onGsaAuth(ctx: AuthExtensionContext, payloads: readonly Payload[]): ProviderRefusal | undefined {
    const answer = this.handleRegistration(ctx, payloads, ExchangeType.GSA_AUTH);
    if (answer.refusal) return answer.refusal;
    this.authAnswers.set(ctx.saId, answer.payloads);
    return undefined;
  }

  private onGsaRegistration(ctx: AuthExtensionContext, payloads: readonly Payload[]): Payload[] {
    const answer = this.handleRegistration(ctx, payloads, ExchangeType.GSA_REGISTRATION);
    return answer.refusal ? [makeNotify(answer.refusal.notify)] : [...answer.payloads];
  }

  /** One GSA_AUTH or GSA_REGISTRATION request: register, leave, or refuse. */
  private handleRegistration(
    ctx: AuthExtensionContext,
    payloads: readonly Payload[],
    exchange: RegistrationExchange,
  ): { readonly payloads: readonly Payload[]; readonly refusal?: ProviderRefusal } {
    const peerId = ctx.peerId!;
    const member = formatIdentity(peerId);
    const session = this.session(ctx.saId, peerId);
    const exchangeName = nameOf(ExchangeType, exchange);
    const refuse = (notify: number, reason: string, group: string | undefined): { payloads: readonly Payload[]; refusal: ProviderRefusal } => {
      this.pending.push({ type: 'registration-rejected', at: ctx.now, group, member, notify: nameOf(NotifyType, notify), reason, saId: ctx.saId, exchange: exchangeName });
      this.scheduleClose(session, ctx.now);
      return { payloads: [], refusal: { notify, reason } };
    };

    const request = parseRegistrationRequest(payloads);
    if (request.kind === 'malformed') return refuse(NotifyType.INVALID_SYNTAX, request.reason, undefined);
    if (request.kind === 'leave') {
      // Section 2.3.2: only over an existing IKE SA; in GSA_AUTH it makes no sense.
      if (exchange === ExchangeType.GSA_AUTH) return refuse(NotifyType.INVALID_SYNTAX, 'a leave notify in GSA_AUTH', undefined);
      const left = leaveGroup(this.directory, { member: { id: peerId }, groupId: request.groupId, notify: request.notify, now: ctx.now });
      for (const e of left.events) {
        if (e.type !== 'member-left') continue;
        this.forgetMembership(e.group, peerId, ctx.saId);
        this.pending.push({ ...e, saId: ctx.saId, cause: 'member-request' });
      }
      this.scheduleClose(session, ctx.now);
      return { payloads: left.payloads };
    }

    const kwa = ctx.transforms.kwa;
    if (kwa === undefined) {
      // RFC 9838 Section 4.5.4: the KWA MUST be negotiated in IKE_SA_INIT; without one no key can be sent.
      return refuse(NotifyType.NO_PROPOSAL_CHOSEN, 'no Key Wrap Algorithm was negotiated in IKE_SA_INIT', this.directory.find(request.groupId)?.name);
    }
    const gskW = deriveGskW(ctx.transforms.prf, ctx.skD, kwaKeyLength(kwa));
    let outcome: RegistrationOutcome;
    try {
      outcome = registerMember(this.directory, {
        member: { id: peerId, certificate: ctx.peerCertificate },
        groupId: request.groupId,
        sag: request.sag,
        groupSender: request.groupSender,
        unicastKwa: kwa,
        gskW,
        exchange,
        now: ctx.now,
      });
    } finally {
      gskW.fill(0);
    }
    for (const e of outcome.events) {
      if (e.type === 'sender-ids-exhausted') this.pending.push(e);
    }
    if (outcome.kind === 'rejected') {
      const rejected = outcome.events.find((e): e is RegistrationRejected => e.type === 'registration-rejected');
      return refuse(outcome.notify, outcome.reason, rejected?.group);
    }
    const group = this.directory.find(request.groupId)!;
    session.groups.add(group.name);
    if (group.rekeySa) {
      // Re-registered over another SA: an earlier inband binding of this member no longer applies.
      this.inbandSa.delete(`${group.name}|${identityKey(peerId)}`);
      session.inband.delete(group.name);
    } else {
      this.rebindInband(group.name, peerId, ctx.saId, ctx.now);
    }
    for (const e of outcome.events) {
      if (e.type !== 'member-registered') continue;
      this.pending.push({
        ...e,
        saId: ctx.saId,
        rekeySpi: group.rekeySa?.spi.toString('hex'),
        dataSecuritySpis: group.dataSecuritySas.map((t) => t.spi.toString('hex')),
      });
    }
    this.inspect?.(exchange, outcome.payloads, { saId: ctx.saId, group: group.name, member, groupSender: request.groupSender });
    this.scheduleClose(session, ctx.now);
    return { payloads: outcome.payloads };
  }

  private session(saId: string, peerId: Identity): Session {
    let s = this.sessions.get(saId);
    if (!s) {
      s = { peerId, groups: new Set(), inband: new Set(), closeAt: undefined };
      this.sessions.set(saId, s);
    }
    return s;
  }

  /** After any registration exchange: close soon unless an inband group needs the SA. */
  private scheduleClose(s: Session, now: number): void {
    s.closeAt = s.inband.size > 0 ? undefined : now + this.closeGraceMs;
  }

  private rebindInband(groupName: string, id: Identity, saId: string, now: number): void {
    const key = `${groupName}|${identityKey(id)}`;
    const previous = this.inbandSa.get(key);
    if (previous !== undefined && previous !== saId) {
      const old = this.sessions.get(previous);
      if (old) {
        old.inband.delete(groupName);
        old.groups.delete(groupName);
        if (old.inband.size === 0 && old.closeAt === undefined) old.closeAt = now + this.closeGraceMs;
      }
    }
    this.inbandSa.set(key, saId);
    this.sessions.get(saId)?.inband.add(groupName);
  }

  private forgetMembership(groupName: string, id: Identity, saId: string): void {
    const key = `${groupName}|${identityKey(id)}`;
    const bound = this.inbandSa.get(key);
    if (bound !== undefined) {
      this.inbandSa.delete(key);
      const s = this.sessions.get(bound);
      s?.inband.delete(groupName);
      s?.groups.delete(groupName);
    }
    this.sessions.get(saId)?.groups.delete(groupName);
  }

  // ------------------------------------------------------------------ engine events

  /** Adds the service's events to an engine output and follows SA life. */
  private wrap(now: number, out: { readonly send: readonly Outgoing[]; readonly events: readonly EngineEvent[] }): Output<GcksServiceEvent> {
    const events: GcksServiceEvent[] = [...out.events];
    for (const e of out.events) this.follow(e, now, events);
    events.push(...this.pending);
    this.pending = [];
    return { send: out.send, events };
  }

  private follow(e: EngineEvent, now: number, events: GcksServiceEvent[]): void {
    switch (e.type) {
      case 'sa-established':
        if (e.role === 'responder' && !this.sessions.has(e.saId)) {
          // IKE_AUTH without registration yet (a GSA_AUTH already made its session).
          const peerId = this.engine.peerIdentity(e.saId);
          if (peerId) this.sessions.set(e.saId, { peerId, groups: new Set(), inband: new Set(), closeAt: now + this.unusedSaTimeoutMs });
        }
        return;
      case 'sa-rekeyed': {
        const s = this.sessions.get(e.oldSaId);
        if (!s) return;
        this.sessions.delete(e.oldSaId);
        this.sessions.set(e.saId, s);
        for (const groupName of s.inband) {
          const key = `${groupName}|${identityKey(s.peerId)}`;
          if (this.inbandSa.get(key) === e.oldSaId) this.inbandSa.set(key, e.saId);
        }
        return;
      }
      case 'sa-deleted':
        this.sessionGone(e.saId, now, events);
        return;
      case 'exchange-failed':
        // A responder SA that failed authentication never had a session; an SA that timed out is gone.
        if (e.notify === 'TIMEOUT') this.sessionGone(e.saId, now, events);
        return;
      default:
        return;
    }
  }

  private sessionGone(saId: string, now: number, events: GcksServiceEvent[]): void {
    const s = this.sessions.get(saId);
    if (!s) return;
    this.sessions.delete(saId);
    this.authAnswers.delete(saId);
    for (const groupName of s.inband) {
      const key = `${groupName}|${identityKey(s.peerId)}`;
      if (this.inbandSa.get(key) !== saId) continue;
      this.inbandSa.delete(key);
      const wasMember = this.findGroup(groupName)?.removeMember(s.peerId) ?? false;
      if (!wasMember) continue;
      events.push({
        type: 'member-left',
        at: now,
        group: groupName,
        member: formatIdentity(s.peerId),
        notify: 'NONE',
        wasMember,
        saId,
        cause: 'ike-sa-closed',
      });
    }
  }
}
