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
 * Rekeying (Section 2.4): one RekeyPlanner per group. A registration that
 * passed every check (`checkRegistration`) places the member in the group's
 * key tree and adds its Working Key Path to the Member Key Bag (Appendix
 * A.2); a refused one leaves the tree alone. A member that leaves, an inband
 * member whose IKE SA goes and an operator's exclusion are excluded through
 * the planner (new keys the excluded cannot read, Section 3.2.1); Sender-ID
 * exhaustion excludes everyone (Section 2.5.1). Multicast GSA_REKEY
 * datagrams go to the KEK policy's destination from its source, each copy
 * at its planned time (queued here, released by `timeout`);
 * GSA_INBAND_REKEY goes over each member's IKE SA with the engine's
 * retransmission, and a member that does not answer loses the SA and with
 * it its membership (it is excluded).
 *
 * Operator actions (`rekeyGroup`, `excludeMember`, `readmitMember`,
 * `changePolicy`, `rotateSigningKey`) return the Output to send like the
 * DatagramEngine calls; call them through the adapter (`act`). An excluded
 * member is refused (AUTHORIZATION_FAILED) until it is readmitted.
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
import { nextSpiAttribute } from '../wire/gsa.ts';
import { ExchangeType, nameOf, NotifyType, PayloadType, ProtocolId } from '../wire/iana.ts';
import { encodePayloadChain, type Payload } from '../wire/payload.ts';
import { isErrorNotify, makeNotify } from '../wire/payloads/notify.ts';
import { pskForMember } from './authorize.ts';
import type { Identity } from './config-identities.ts';
import { DEFAULT_REKEY_PORT, type DataSecurityMode, type GcksConfig, type GroupConfig } from './config.ts';
import { memoryCounterReservation, type CounterReservation } from './counters.ts';
import { createHash } from 'node:crypto';
import { Group, identityKey } from './group.ts';
import { LkhTree } from './lkh.ts';
import type { AuditRecord, Checkpoint, GcksPersistence, GroupCheckpoint, GroupDescriptor, PersistedDatagram, PersistedGroup, RegistrationRecord } from './persistence.ts';
import { splitDataSecurityKeymat, type DataSecurityKeys } from './keymat.ts';
import {
  checkRegistration,
  completeRegistration,
  createGroupDirectory,
  GroupDirectory,
  leaveGroup,
  parseRegistrationRequest,
  type GcksEvent,
  type RegistrationExchange,
  type RegistrationOutcome,
  type RegistrationRequest,
} from './registration.ts';
import {
  RekeyPlanner,
  withWorkingKeyPath,
  type Admission,
  type PlannerEvent,
  type PlannerOutput,
  type RekeyEndpoint,
  type RekeyKind,
  type RekeyPlannerOptions,
  type RekeyReason,
} from './rekey-planner.ts';
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
  readonly inspectResponse?: (
    exchange: RegistrationExchange,
    payloads: readonly Payload[],
    context: {
      readonly saId: string;
      readonly group: string;
      readonly member: string;
      readonly groupSender: number | undefined;
      /** The Member Key Bag carries the member's Working Key Path (LKH). */
      readonly keyTree: boolean;
    },
  ) => void;
  /**
   * Durable state (src/node/gcks-state.ts): groups are restored at
   * construction and every call commits its changes before it returns.
   */
  readonly persistence?: GcksPersistence | undefined;
  /**
   * Rekey planner tuning (lead time, jitter, copies and spacing of GSA_REKEY,
   * fragmentation, LKH arity, rekey on join, GSA_NEXT_SPI), for every group
   * or per group name. Default: the planner's defaults.
   */
  readonly rekey?: RekeyPlannerOptions | ((groupName: string) => RekeyPlannerOptions | undefined);
}

/** Why a member was excluded from a group. */
export type ExclusionCause =
  /** excludeMember. */
  | 'operator'
  /** It left (GSA_REGISTRATION with IDg + notify). */
  | 'left'
  /** Inband group: its IKE SA went away (closed, or it stopped answering). */
  | 'ike-sa-lost'
  /** Inband group: no IKE SA to send a GSA_INBAND_REKEY over. */
  | 'unreachable'
  /** Everyone went: Sender-IDs exhausted or a policy change members cannot follow. */
  | 'start-over';

/** What the rekey side of the key server reports (never key material). */
export type GcksRekeyEvent =
  | {
      /** A GSA_REKEY's first transmission left, or GSA_INBAND_REKEY requests were queued. */
      readonly type: 'rekey-sent';
      readonly at: number;
      readonly group: string;
      readonly reason: RekeyReason;
      readonly transport: 'multicast' | 'inband';
      /** Multicast: the Rekey SA it was protected with and its Message ID. */
      readonly rekeySpi?: string | undefined;
      readonly messageId?: number | undefined;
      /** Multicast: message size (unfragmented); inband: total request payload octets over all members. */
      readonly octets: number;
      /** Multicast: transmissions planned (first + copies); inband: members sent to. */
      readonly copies: number;
      readonly destination?: RekeyEndpoint | undefined;
    }
  | { readonly type: 'member-excluded'; readonly at: number; readonly group: string; readonly member: string; readonly cause: ExclusionCause }
  | {
      /** A member did not acknowledge a GSA_INBAND_REKEY (its IKE SA timed out or went); it is removed. */
      readonly type: 'inband-rekey-failed';
      readonly at: number;
      readonly group: string;
      readonly member: string;
      readonly saId: string;
      readonly reason: string;
    }
  | Exclude<PlannerEvent, { type: 'members-excluded' }>;

export class GcksOperatorError extends Error {
  override readonly name = 'GcksOperatorError';
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
  | Extract<GcksEvent, { type: 'sender-ids-exhausted' }>
  | GcksRekeyEvent;

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

/** One datagram of a GSA_REKEY waiting for its planned transmission time. */
interface QueuedDatagram {
  readonly at: number;
  readonly order: number;
  readonly send: Outgoing;
  /** Set on the first datagram of the first transmission: reported as rekey-sent when it leaves. */
  readonly report?: Extract<GcksRekeyEvent, { type: 'rekey-sent' }> | undefined;
}

/** A GSA_INBAND_REKEY in flight over an SA. */
interface InbandInFlight {
  readonly group: string;
  readonly member: Identity;
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
  /** Every session's closeAt (and stale entries of earlier ones), earliest first. */
  private readonly closes = new CloseSchedule();
  /** `${group}|${memberKey}` -> the SA an inband member registered over. */
  private readonly inbandSa = new Map<string, string>();
  /** Service events produced inside an engine call (provider callbacks), flushed with its output. */
  private pending: GcksServiceEvent[] = [];
  /** GSA_AUTH: the provider's answer between processRequest and buildResponse, by SA. */
  private readonly authAnswers = new Map<string, readonly Payload[]>();
  /** One rekey planner per group, by group name. */
  private readonly planners = new Map<string, RekeyPlanner>();
  /** GSA_REKEY datagrams with their transmission times, in order. */
  private multicastQueue: QueuedDatagram[] = [];
  private queueOrder = 0;
  /** Planner work arising inside an engine call (registration, leave), done once the engine returned. */
  private deferred: ((now: number) => Output<GcksServiceEvent>)[] = [];
  /** GSA_INBAND_REKEY requests awaiting their response, by SA. */
  private readonly inbandInFlight = new Map<string, InbandInFlight[]>();
  /** Members the operator excluded: refused until readmitted (group name -> identity keys). */
  private readonly barred = new Map<string, Set<string>>();
  /** GSK_w values handed to the planner for inband wrapping; zeroed after each planner call. */
  private issuedKeys: Buffer[] = [];
  /** The `now` of the call in progress (planner callbacks need it). */
  private currentNow: number;
  private readonly persistence: GcksPersistence | undefined;
  /** Per group name: what the last checkpoint wrote. */
  private readonly saved = new Map<string, SavedGroup>();
  private queueChanged = false;
  private pendingAudit: AuditRecord[] = [];
  private pendingRegistrations: RegistrationRecord[] = [];

  constructor(config: GcksConfig, deps: GcksServiceDeps) {
    this.config = config;
    this.closeGraceMs = deps.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS;
    this.unusedSaTimeoutMs = deps.unusedSaTimeoutMs ?? DEFAULT_UNUSED_SA_TIMEOUT_MS;
    this.inspect = deps.inspectResponse;
    this.currentNow = deps.now ?? 0;
    this.persistence = deps.persistence;
    const now = deps.now ?? 0;
    const counters = deps.counters ?? memoryCounterReservation();
    const restored = new Map<string, PersistedGroup>();
    if (this.persistence) {
      for (const c of config.groups) {
        const loaded = this.persistence.loadGroup(describeGroup(c), now);
        if (loaded.kind === 'restored') restored.set(c.name, loaded.state);
        else if (loaded.kind === 'policy-changed') {
          this.pendingAudit.push({ at: now, kind: 'group', group: c.name, reason: 'policy changed since the state was written: the group starts afresh and its members register again' });
        }
      }
    }
    this.directory = restored.size === 0
      ? createGroupDirectory(config.groups, { counters, rng: deps.rng, ...(deps.signingKeyFor ? { signingKeyFor: deps.signingKeyFor } : {}) }, now)
      : new GroupDirectory(
          config.groups.map((c) => {
            const r = restored.get(c.name);
            return new Group(c, { counters, rng: deps.rng, signingKey: r?.signingKey ?? deps.signingKeyFor?.(c.name), restore: r?.group }, now);
          }),
        );
    for (const group of this.directory.groups) {
      const configured = typeof deps.rekey === 'function' ? deps.rekey(group.name) : deps.rekey;
      const keyIds = configured?.keyIds ?? this.persistence?.keyIds(`group/${identityKey(group.config.id)}/lkh-key-id`);
      const options: RekeyPlannerOptions = { ...configured, ...(keyIds ? { keyIds } : {}) };
      const planner = new RekeyPlanner(group, { rng: deps.rng, inbandDelivery: (member) => this.inbandDelivery(group.name, member) }, options, now);
      this.planners.set(group.name, planner);
      const r = restored.get(group.name);
      if (r) {
        const tree = r.tree && group.rekeySa && options.keyTree !== false
          ? LkhTree.restore(r.tree.meta, r.tree.chunk, { random: deps.rng, ...(keyIds ? { keyIds } : {}) })
          : undefined;
        planner.restoreState(r.planner, tree, r.leaves, now);
        if (r.barred.length > 0) this.barred.set(group.name, new Set(r.barred));
        this.saved.set(group.name, { sas: saFingerprint(group), tree: planner.keyTree, planner: plannerFingerprint(planner), barred: r.barred.join(','), signingKey: group.signingKey });
      }
    }
    if (this.persistence) {
      this.multicastQueue = this.persistence.loadQueue(now).map((d) => ({
        at: d.at,
        order: this.queueOrder++,
        send: d.local ? { to: d.to, local: d.local, data: d.data } : { to: d.to, data: d.data },
        report: d.report && { type: 'rekey-sent' as const, at: d.at, transport: 'multicast' as const, destination: d.to, ...d.report, reason: d.report.reason as RekeyReason },
      }));
      // Groups that start afresh are on disk before any of their keys can be handed out.
      this.checkpoint([], now);
    }
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
      exchangeResponders: new Map([[ExchangeType.GSA_REGISTRATION, (ctx: AuthExtensionContext, payloads: readonly Payload[]) => this.onGsaRegistration(ctx, payloads)]]),
      ...(deps.retransmit ? { retransmit: deps.retransmit } : {}),
      keylog: deps.keylog ?? false,
      rng: deps.rng,
      ...(deps.certificateTime ? { certificateTime: deps.certificateTime } : {}),
    });
  }

  // ------------------------------------------------------------------ DatagramEngine

  receive(data: Buffer, from: Endpoint, local: LocalEndpoint, now: number): Output<GcksServiceEvent> {
    this.currentNow = now;
    return this.settle(now, [this.wrap(now, this.engine.receive(data, from, local, now))]);
  }

  timeout(now: number): Output<GcksServiceEvent> {
    this.currentNow = now;
    const outputs: Output<GcksServiceEvent>[] = [this.wrap(now, this.engine.timeout(now))];
    for (const saId of this.closes.takeDue(now)) {
      const s = this.sessions.get(saId);
      if (s?.closeAt === undefined || s.closeAt > now) continue;
      s.closeAt = undefined;
      outputs.push(this.wrap(now, this.engine.deleteSa(saId, now)));
    }
    for (const planner of this.planners.values()) {
      const due = planner.nextDeadline();
      if (due !== undefined && due <= now) outputs.push(this.applyPlan(this.withIssuedKeys(() => planner.tick(now)), now));
    }
    return this.settle(now, outputs);
  }

  nextTimeout(): number | undefined {
    let t = this.engine.nextTimeout();
    const earlier = (x: number | undefined): void => {
      if (x !== undefined && (t === undefined || x < t)) t = x;
    };
    earlier(this.closes.earliest((at, saId) => this.sessions.get(saId)?.closeAt === at));
    for (const p of this.planners.values()) earlier(p.nextDeadline());
    earlier(this.multicastQueue[0]?.at);
    if (this.deferred.length > 0) earlier(this.currentNow);
    return t;
  }

  /** Closes every IKE SA (shutdown); members of multicast groups keep their keys. */
  closeAll(now: number): Output<GcksServiceEvent> {
    this.currentNow = now;
    return this.settle(now, this.engine.list().map((sa) => this.wrap(now, this.engine.deleteSa(sa.saId, now))));
  }

  // ------------------------------------------------------------------ operator actions

  /**
   * Rekeys a group now: 'tek' (Data-Security SAs), 'kek' (the Rekey SA,
   * multicast groups) or 'all'. `group`: name or IDg text. Throws
   * GcksOperatorError for an unknown group, RekeyPlannerError for 'kek' or
   * 'all' on an inband group.
   */
  rekeyGroup(group: string, kind: RekeyKind, now: number): Output<GcksServiceEvent> {
    const planner = this.plannerOf(group);
    this.currentNow = now;
    return this.settle(now, [this.applyPlan(this.withIssuedKeys(() => planner.rekeyNow(kind, now)), now)]);
  }

  /**
   * Excludes a member (identity as formatIdentity prints it, or an Identity)
   * so that it cannot read the group's traffic from now on: LKH rekey for
   * multicast groups (two messages, Section 3.2.1), new TEKs to the others
   * and a Delete GIKE_UPDATE SPI 0 to it for inband groups. It is refused
   * when it registers again until `readmitMember`, unless `readmit` is true.
   */
  excludeMember(group: string, member: string | Identity, now: number, options: { readonly readmit?: boolean } = {}): Output<GcksServiceEvent> {
    const planner = this.plannerOf(group);
    const g = planner.group;
    const id = typeof member === 'string' ? this.memberIdentity(g, member) : member;
    if (!id) throw new GcksOperatorError(`group ${g.name} has no member ${String(member)}`);
    this.currentNow = now;
    if (!options.readmit) {
      const set = this.barred.get(g.name) ?? new Set<string>();
      set.add(identityKey(id));
      this.barred.set(g.name, set);
    }
    return this.settle(now, [this.excludeThrough(planner, [id], 'operator', now)]);
  }

  /** Lets an excluded member register again. True when it was barred. */
  readmitMember(group: string, member: string | Identity): boolean {
    const g = this.plannerOf(group).group;
    const set = this.barred.get(g.name);
    if (!set) return false;
    let found: string | undefined;
    if (typeof member !== 'string') found = set.has(identityKey(member)) ? identityKey(member) : undefined;
    else {
      for (const key of set) {
        const [idType, hex] = key.split(':');
        if (formatIdentity({ idType: Number(idType), data: Buffer.from(hex ?? '', 'hex') }) === member) found = key;
      }
    }
    if (found === undefined) return false;
    set.delete(found);
    if (this.persistence) this.checkpoint([], this.currentNow);
    return true;
  }

  /**
   * A changed policy for a configured group (same name and IDg): new KEK and
   * TEKs under it in one rekey, or, when members cannot follow (Sender-ID
   * bits, the key tree's KWA), everyone is excluded and registers again.
   */
  changePolicy(config: GroupConfig, now: number): Output<GcksServiceEvent> {
    const planner = this.plannerOf(config.name);
    const g = planner.group;
    if (identityKey(g.config.id) !== identityKey(config.id)) throw new GcksOperatorError(`group ${g.name}: the IDg cannot change (define a new group)`);
    if ((g.config.rekey.kind === 'multicast') !== (config.rekey.kind === 'multicast')) {
      throw new GcksOperatorError(`group ${g.name}: cannot switch between multicast and inband rekey (define a new group)`);
    }
    this.currentNow = now;
    return this.settle(now, [this.applyPlan(this.withIssuedKeys(() => planner.changePolicy(config, now)), now, 'start-over')]);
  }

  /**
   * AUTH_KEY rollover (Section 2.4.1): a KEK rekey carrying the new public
   * key, signed with the current one; later rekeys and registrations use the
   * new key. Same signature algorithm only.
   */
  rotateSigningKey(group: string, key: RekeySigningKey, now: number): Output<GcksServiceEvent> {
    const planner = this.plannerOf(group);
    this.currentNow = now;
    return this.settle(now, [this.applyPlan(planner.rotateSigningKey(key, now), now)]);
  }

  /** The group's rekey planner (key tree, announced SPIs, next deadline); for diagnostics and tests. */
  planner(group: string): RekeyPlanner | undefined {
    const g = this.findGroup(group);
    return g && this.planners.get(g.name);
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
      if (this.persistence) {
        this.pendingAudit.push({ at: ctx.now, kind: 'rejection', group, member, memberKey: identityKey(peerId), reason: `${nameOf(NotifyType, notify)}: ${reason}`, details: { exchange: exchangeName } });
      }
      this.scheduleClose(ctx.saId, session, ctx.now);
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
        // Forward access control (Section 3.2.1): what it held must not read what comes next.
        const planner = this.planners.get(e.group);
        if (planner) this.deferred.push((now) => this.excludeThrough(planner, [peerId], 'left', now));
        this.forgetMembership(e.group, peerId, ctx.saId);
        this.pending.push({ ...e, saId: ctx.saId, cause: 'member-request' });
      }
      this.scheduleClose(ctx.saId, session, ctx.now);
      return { payloads: left.payloads };
    }

    const kwa = ctx.transforms.kwa;
    if (kwa === undefined) {
      // RFC 9838 Section 4.5.4: the KWA MUST be negotiated in IKE_SA_INIT; without one no key can be sent.
      return refuse(NotifyType.NO_PROPOSAL_CHOSEN, 'no Key Wrap Algorithm was negotiated in IKE_SA_INIT', this.directory.find(request.groupId)?.name);
    }
    const target = this.directory.find(request.groupId);
    if (target && this.barred.get(target.name)?.has(identityKey(peerId))) {
      return refuse(NotifyType.AUTHORIZATION_FAILED, 'excluded from the group by the operator', target.name);
    }
    const gskW = deriveGskW(ctx.transforms.prf, ctx.skD, kwaKeyLength(kwa));
    let outcome: RegistrationOutcome;
    let admission: Admission | undefined;
    try {
      const registration: RegistrationRequest = {
        member: { id: peerId, certificate: ctx.peerCertificate },
        groupId: request.groupId,
        sag: request.sag,
        groupSender: request.groupSender,
        unicastKwa: kwa,
        gskW,
        exchange,
        now: ctx.now,
      };
      // registerMember in two steps around admitMember, so the key tree places only members
      // registration accepts: checkRegistration makes every refusal (used-up Sender-IDs
      // included) before anything is allocated, and completeRegistration does not refuse.
      const checked = checkRegistration(this.directory, registration);
      if (checked.kind === 'admissible') {
        admission = this.planners.get(checked.group.name)?.admitMember(peerId, { kwa, gskW }, ctx.now);
        const joined = admission?.output;
        if (joined && joined.actions.length + joined.events.length > 0) this.deferred.push((now) => this.applyPlan(joined, now));
        outcome = completeRegistration(checked, registration);
      } else {
        outcome = checked;
      }
    } finally {
      gskW.fill(0);
    }
    for (const e of outcome.events) {
      if (e.type !== 'sender-ids-exhausted') continue;
      this.pending.push(e);
      // Section 2.5.1: start over; every member registers again and gets Sender-IDs under new TEKs.
      const planner = this.planners.get(e.group);
      if (planner) this.deferred.push((now) => this.applyPlan(this.withIssuedKeys(() => planner.excludeEveryone(now, 'sender-ids-exhausted')), now, 'start-over'));
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
      if (this.persistence) {
        const details = {
          exchange: e.exchange,
          rule: e.rule,
          sender: e.sender,
          senderIds: [...e.senderIds],
          reregistration: e.reregistration,
          rekeySpi: group.rekeySa?.spi.toString('hex') ?? null,
          initialMessageId: group.rekeySa?.messageIds.peek() ?? null,
          dataSecuritySpis: group.dataSecuritySas.map((t) => t.spi.toString('hex')),
          leaf: admission?.leaf ?? null,
        };
        this.pendingRegistrations.push({ at: e.at, group: group.name, member: peerId, details });
        this.pendingAudit.push({ at: e.at, kind: 'registration', group: group.name, member, memberKey: identityKey(peerId), details });
      }
      this.pending.push({
        ...e,
        saId: ctx.saId,
        rekeySpi: group.rekeySa?.spi.toString('hex'),
        dataSecuritySpis: group.dataSecuritySas.map((t) => t.spi.toString('hex')),
      });
    }
    const wrapKeys = admission?.wrapKeys ?? [];
    const announced = this.planners.get(group.name)?.announcedNextSpis;
    const response = withWorkingKeyPath(announced ? withNextSpis(outcome.payloads, group, announced) : outcome.payloads, wrapKeys, exchange, request.groupSender);
    this.inspect?.(exchange, response, { saId: ctx.saId, group: group.name, member, groupSender: request.groupSender, keyTree: wrapKeys.length > 0 });
    this.scheduleClose(ctx.saId, session, ctx.now);
    return { payloads: response };
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
  private scheduleClose(saId: string, s: Session, now: number): void {
    this.setClose(saId, s, s.inband.size > 0 ? undefined : now + this.closeGraceMs);
  }

  /** Sets when the session's SA closes (undefined: it stays); every change goes through here. */
  private setClose(saId: string, s: Session, at: number | undefined): void {
    s.closeAt = at;
    if (at !== undefined) this.closes.add(at, saId);
  }

  private rebindInband(groupName: string, id: Identity, saId: string, now: number): void {
    const key = `${groupName}|${identityKey(id)}`;
    const previous = this.inbandSa.get(key);
    if (previous !== undefined && previous !== saId) {
      const old = this.sessions.get(previous);
      if (old) {
        old.inband.delete(groupName);
        old.groups.delete(groupName);
        if (old.inband.size === 0 && old.closeAt === undefined) this.setClose(previous, old, now + this.closeGraceMs);
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
          if (peerId) {
            const s: Session = { peerId, groups: new Set(), inband: new Set(), closeAt: undefined };
            this.sessions.set(e.saId, s);
            this.setClose(e.saId, s, now + this.unusedSaTimeoutMs);
          }
        }
        return;
      case 'sa-rekeyed': {
        const s = this.sessions.get(e.oldSaId);
        if (!s) return;
        this.sessions.delete(e.oldSaId);
        this.sessions.set(e.saId, s);
        this.setClose(e.saId, s, s.closeAt);
        for (const groupName of s.inband) {
          const key = `${groupName}|${identityKey(s.peerId)}`;
          if (this.inbandSa.get(key) === e.oldSaId) this.inbandSa.set(key, e.saId);
        }
        return;
      }
      case 'sa-deleted':
        this.inbandFailed(e.saId, `IKE SA deleted (${e.reason})`, now, events);
        this.sessionGone(e.saId, now, events);
        return;
      case 'exchange-failed':
        // A responder SA that failed authentication never had a session; an SA that timed out is gone.
        if (e.notify === 'TIMEOUT') {
          this.inbandFailed(e.saId, `${e.exchange}: ${e.reason}`, now, events);
          this.sessionGone(e.saId, now, events);
        }
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
      const wasMember = this.findGroup(groupName)?.member(s.peerId) !== undefined;
      if (!wasMember) continue;
      // Without the SA it gets no rekeys (Section 2.3.3): excluded, the others get new TEKs.
      const planner = this.planners.get(groupName);
      const peerId = s.peerId;
      if (planner) this.deferred.push((at) => this.excludeThrough(planner, [peerId], 'ike-sa-lost', at));
      else this.findGroup(groupName)?.removeMember(peerId);
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

  // ------------------------------------------------------------------ persistence

  /**
   * Commits what this call changed (see persistence.ts) before its output
   * leaves. A failure throws: the caller must not send the output.
   */
  private checkpoint(events: readonly GcksServiceEvent[], now: number): void {
    const persistence = this.persistence;
    if (!persistence) return;
    const groups: GroupCheckpoint[] = [];
    const saved = new Map<string, SavedGroup>();
    for (const g of this.directory.groups) {
      const planner = this.planners.get(g.name)!;
      const prev = this.saved.get(g.name);
      const members = g.takeMemberChanges();
      const sas = saFingerprint(g);
      const tree = planner.keyTree;
      const plannerPrint = plannerFingerprint(planner);
      const barredList = [...(this.barred.get(g.name) ?? [])].sort();
      const barred = barredList.join(',');
      const treeReplaced = tree !== prev?.tree;
      const unchanged =
        prev !== undefined &&
        prev.sas === sas &&
        members.put.length === 0 &&
        members.removed.length === 0 &&
        !treeReplaced &&
        !(tree?.changed ?? false) &&
        prev.planner === plannerPrint &&
        prev.barred === barred &&
        prev.signingKey === g.signingKey;
      if (unchanged) continue;
      const state = prev?.sas === sas ? undefined : g.persistentState();
      groups.push({
        descriptor: describeGroup(g.config),
        sas: state && { teks: state.teks, kek: state.kek },
        members,
        leafOf: (id) => planner.leafOf(id),
        senderIdCounter: g.senderIds.counterName,
        planner: planner.persistentState(),
        tree: tree && (treeReplaced || tree.changed) ? { meta: tree.persistenceMeta(), chunks: tree.takeChangedChunks(treeReplaced), replaced: treeReplaced } : undefined,
        hasTree: tree !== undefined,
        barred: barredList,
        signingKey: g.signingKey,
      });
      saved.set(g.name, { sas, tree, planner: plannerPrint, barred, signingKey: g.signingKey });
    }
    const audit = [...this.pendingAudit];
    for (const e of events) {
      const a = auditOf(e);
      if (a) audit.push(a);
    }
    const registrations = this.pendingRegistrations;
    this.pendingAudit = [];
    this.pendingRegistrations = [];
    const queue: PersistedDatagram[] | undefined = this.queueChanged
      ? this.multicastQueue.map((q) => ({
          at: q.at,
          to: q.send.to,
          local: q.send.local,
          data: q.send.data,
          report: q.report && {
            group: q.report.group,
            reason: q.report.reason,
            rekeySpi: q.report.rekeySpi,
            messageId: q.report.messageId,
            octets: q.report.octets,
            copies: q.report.copies,
          },
        }))
      : undefined;
    this.queueChanged = false;
    if (groups.length === 0 && !queue && registrations.length === 0 && audit.length === 0) return;
    const checkpoint: Checkpoint = { groups, queue, registrations, audit };
    persistence.save(checkpoint, now);
    for (const [name, v] of saved) this.saved.set(name, v);
  }

  // ------------------------------------------------------------------ rekeying

  /** Drains deferred planner work and releases due GSA_REKEY datagrams. */
  private settle(now: number, outputs: Output<GcksServiceEvent>[]): Output<GcksServiceEvent> {
    for (let guard = 0; this.deferred.length > 0 && guard < 10_000; guard++) {
      const work = this.deferred.shift()!;
      outputs.push(work(now));
    }
    outputs.push(this.releaseDue(now));
    const out = mergeOutputs(...outputs);
    if (this.persistence) this.checkpoint(out.events, now);
    return out;
  }

  private plannerOf(group: string): RekeyPlanner {
    const g = this.findGroup(group);
    const planner = g && this.planners.get(g.name);
    if (!planner) throw new GcksOperatorError(`no group ${group}`);
    return planner;
  }

  private memberIdentity(g: Group, text: string): Identity | undefined {
    for (const m of g.members.values()) if (formatIdentity(m.id) === text) return m.id;
    return undefined;
  }

  /** Excludes through the planner, then forgets the members' inband bindings. */
  private excludeThrough(planner: RekeyPlanner, members: readonly Identity[], cause: ExclusionCause, now: number): Output<GcksServiceEvent> {
    const out = this.applyPlan(this.withIssuedKeys(() => planner.excludeMembers(members, now)), now, cause);
    for (const id of members) this.unbindInband(planner.group.name, id, now);
    return out;
  }

  /** An inband member's binding to its SA goes; the SA closes after the grace period if nothing else holds it. */
  private unbindInband(groupName: string, id: Identity, now: number): void {
    const key = `${groupName}|${identityKey(id)}`;
    const saId = this.inbandSa.get(key);
    if (saId === undefined) return;
    this.inbandSa.delete(key);
    const s = this.sessions.get(saId);
    if (!s) return;
    s.inband.delete(groupName);
    s.groups.delete(groupName);
    if (s.inband.size === 0 && s.closeAt === undefined) this.setClose(saId, s, now + this.closeGraceMs);
  }

  /** Planner callback: KWA and GSK_w of the inband member's current IKE SA (Section 3.1.1). */
  private inbandDelivery(groupName: string, member: Identity): { readonly kwa: number; readonly gskW: Buffer } | undefined {
    const saId = this.inbandSa.get(`${groupName}|${identityKey(member)}`);
    if (saId === undefined) return undefined;
    const ctx = this.engine.extensionContext(saId, ExchangeType.GSA_INBAND_REKEY, this.currentNow);
    const kwa = ctx?.transforms.kwa;
    if (!ctx || kwa === undefined) return undefined;
    const gskW = deriveGskW(ctx.transforms.prf, ctx.skD, kwaKeyLength(kwa));
    this.issuedKeys.push(gskW);
    return { kwa, gskW };
  }

  private withIssuedKeys(plan: () => PlannerOutput): PlannerOutput {
    try {
      return plan();
    } finally {
      for (const k of this.issuedKeys) k.fill(0);
      this.issuedKeys = [];
    }
  }

  /** Turns a planner's actions into datagrams (queued by time) and GSA_INBAND_REKEY requests. */
  private applyPlan(plan: PlannerOutput, now: number, cause: ExclusionCause = 'operator'): Output<GcksServiceEvent> {
    const events: GcksServiceEvent[] = [];
    const outputs: Output<GcksServiceEvent>[] = [];
    for (const e of plan.events) {
      if (e.type === 'members-excluded') {
        for (const member of e.members) events.push({ type: 'member-excluded', at: e.at, group: e.group, member, cause });
        continue;
      }
      if (e.type === 'all-members-excluded') this.forgetInbandGroup(e.group, now);
      events.push(e);
    }
    for (const action of plan.actions) {
      if (action.kind === 'multicast') {
        const to = { address: action.destination.address, port: action.destination.port || DEFAULT_REKEY_PORT };
        const wildcard = action.source.address === '0.0.0.0' || action.source.address === '::';
        const local = wildcard ? undefined : { address: action.source.address, port: action.source.port };
        action.sendAt.forEach((at, copy) => {
          action.datagrams.forEach((data, i) => {
            const report =
              copy === 0 && i === 0
                ? {
                    type: 'rekey-sent' as const,
                    at,
                    group: action.group,
                    reason: action.reason,
                    transport: 'multicast' as const,
                    rekeySpi: action.rekeySpi.toString('hex'),
                    messageId: action.messageId,
                    octets: action.messageLength,
                    copies: action.sendAt.length,
                    destination: to,
                  }
                : undefined;
            this.multicastQueue.push({ at, order: this.queueOrder++, send: local ? { to, local, data } : { to, data }, report });
          });
        });
        continue;
      }
      let octets = 0;
      let sent = 0;
      const unreachable = [...action.unreachable];
      for (const d of action.deliveries) {
        const saId = this.inbandSa.get(`${action.group}|${identityKey(d.member)}`);
        const payloads = [...d.payloads];
        const queued =
          saId !== undefined &&
          this.requestInband(saId, action.group, d.member, payloads, now, (out) => {
            outputs.push(out);
          });
        if (!queued) {
          unreachable.push(d.member);
          continue;
        }
        sent++;
        octets += payloads.length === 0 ? 0 : encodePayloadChain(payloads).bytes.length;
      }
      for (const id of unreachable) {
        // Helper note: members without an IKE SA are removed; they re-register.
        if (this.findGroup(action.group)?.removeMember(id)) {
          events.push({ type: 'member-excluded', at: now, group: action.group, member: formatIdentity(id), cause: 'unreachable' });
        }
        this.unbindInband(action.group, id, now);
      }
      if (sent > 0) events.push({ type: 'rekey-sent', at: now, group: action.group, reason: action.reason, transport: 'inband', octets, copies: sent });
    }
    this.multicastQueue.sort((a, b) => a.at - b.at || a.order - b.order);
    if (plan.actions.some((a) => a.kind === 'multicast')) this.queueChanged = true;
    return mergeOutputs({ send: [], events }, ...outputs, this.releaseDue(now));
  }

  /** Queues a GSA_INBAND_REKEY over the member's SA; false when the SA cannot take it. */
  private requestInband(saId: string, group: string, member: Identity, payloads: readonly Payload[], now: number, emit: (out: Output<GcksServiceEvent>) => void): boolean {
    const out = this.engine.requestExchange(
      saId,
      {
        exchangeType: ExchangeType.GSA_INBAND_REKEY,
        build: () => [...payloads],
        onResponse: (ctx, response) => {
          this.settleInband(ctx.saId, group, member);
          const error = response.find((p) => p.type === PayloadType.NOTIFY && 'notifyType' in p && isErrorNotify(p));
          if (error && 'notifyType' in error) {
            // The member could not apply it: it holds stale keys, so it goes (and registers again).
            this.pending.push({ type: 'inband-rekey-failed', at: ctx.now, group, member: formatIdentity(member), saId: ctx.saId, reason: `member answered ${nameOf(NotifyType, error.notifyType)}` });
            const planner = this.planners.get(group);
            if (planner) this.deferred.push((at) => this.excludeThrough(planner, [member], 'unreachable', at));
          }
        },
      },
      now,
    );
    if (!out.queued) return false;
    const list = this.inbandInFlight.get(saId) ?? [];
    list.push({ group, member });
    this.inbandInFlight.set(saId, list);
    emit(this.wrap(now, out));
    return true;
  }

  private settleInband(saId: string, group: string, member: Identity): void {
    const list = this.inbandInFlight.get(saId);
    if (!list) return;
    const i = list.findIndex((x) => x.group === group && identityKey(x.member) === identityKey(member));
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.inbandInFlight.delete(saId);
  }

  private inbandFailed(saId: string, reason: string, now: number, events: GcksServiceEvent[]): void {
    const list = this.inbandInFlight.get(saId);
    if (!list) return;
    this.inbandInFlight.delete(saId);
    for (const x of list) events.push({ type: 'inband-rekey-failed', at: now, group: x.group, member: formatIdentity(x.member), saId, reason });
  }

  /** After excluding everyone: no inband member holds the group over its SA any more. */
  private forgetInbandGroup(groupName: string, now: number): void {
    for (const key of [...this.inbandSa.keys()]) {
      if (!key.startsWith(`${groupName}|`)) continue;
      const saId = this.inbandSa.get(key)!;
      this.inbandSa.delete(key);
      const s = this.sessions.get(saId);
      if (!s) continue;
      s.inband.delete(groupName);
      s.groups.delete(groupName);
      if (s.inband.size === 0 && s.closeAt === undefined) this.setClose(saId, s, now + this.closeGraceMs);
    }
  }

  /** Sends the GSA_REKEY datagrams whose time has come. */
  private releaseDue(now: number): Output<GcksServiceEvent> {
    const send: Outgoing[] = [];
    const events: GcksServiceEvent[] = [];
    let n = 0;
    while (n < this.multicastQueue.length && this.multicastQueue[n]!.at <= now) {
      const q = this.multicastQueue[n++]!;
      send.push(q.send);
      if (q.report) events.push({ ...q.report, at: now });
    }
    if (n > 0) {
      this.multicastQueue = this.multicastQueue.slice(n);
      this.queueChanged = true;
    }
    return { send, events };
  }
}

/**
 * Session close times, earliest first: a binary heap with lazy deletion, so
 * that nextTimeout and timeout need not visit every session. Each time a
 * session's closeAt is set an entry is added; entries that no longer match
 * their session are dropped when they come to the top.
 */
class CloseSchedule {
  private readonly heap: { readonly at: number; readonly saId: string }[] = [];

  add(at: number, saId: string): void {
    const h = this.heap;
    h.push({ at, saId });
    for (let i = h.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.at <= h[i]!.at) break;
      [h[parent], h[i]] = [h[i]!, h[parent]!];
      i = parent;
    }
  }

  /** The earliest entry that `live` accepts; stale ones before it are dropped. */
  earliest(live: (at: number, saId: string) => boolean): number | undefined {
    while (this.heap.length > 0) {
      const top = this.heap[0]!;
      if (live(top.at, top.saId)) return top.at;
      this.pop();
    }
    return undefined;
  }

  /** Removes and returns the SAs of every entry due at `now` (stale ones included: the caller checks). */
  takeDue(now: number): string[] {
    const due = new Set<string>();
    while (this.heap.length > 0 && this.heap[0]!.at <= now) due.add(this.pop().saId);
    return [...due];
  }

  private pop(): { readonly at: number; readonly saId: string } {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && h[l]!.at < h[m]!.at) m = l;
        if (r < h.length && h[r]!.at < h[m]!.at) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }
}

/** What the last checkpoint wrote for a group (to write only what changed). */
interface SavedGroup {
  readonly sas: string;
  readonly tree: LkhTree | undefined;
  readonly planner: string;
  readonly barred: string;
  readonly signingKey: RekeySigningKey | undefined;
}

/** describeGroup per configuration object (configurations are never changed in place). */
const descriptors = new WeakMap<GroupConfig, GroupDescriptor>();

/** A group's persistence name and a digest of its configuration (restored only under the same policy). */
export function describeGroup(config: GroupConfig): GroupDescriptor {
  let d = descriptors.get(config);
  if (!d) {
    d = digestGroup(config);
    descriptors.set(config, d);
  }
  return d;
}

function digestGroup(config: GroupConfig): GroupDescriptor {
  const json = JSON.stringify({ ...config, name: undefined }, (_k, v: unknown) => {
    if (v instanceof RegExp) return `/${v.source}/${v.flags}`;
    if (v instanceof Map) return [...v];
    if (v instanceof Set) return [...v];
    if (typeof v === 'bigint') return v.toString();
    return v;
  });
  return { groupId: identityKey(config.id), name: config.name, configHash: createHash('sha256').update(json).digest('hex').slice(0, 32) };
}

function saFingerprint(g: Group): string {
  return [g.rekeySa?.spi.toString('hex') ?? '', ...g.dataSecuritySas.map((t) => t.spi.toString('hex')), g.senderIds.counterName].join(',');
}

function plannerFingerprint(p: RekeyPlanner): string {
  const s = p.persistentState();
  return JSON.stringify([
    s.nextTekSpis.map((x) => x?.toString('hex') ?? null),
    s.nextKekSpi?.toString('hex') ?? null,
    s.pendingWrapKeys.length,
    s.pendingAuthKey?.toString('hex') ?? null,
    s.pendingDeletes.map((d) => d.dueAt),
    Number.isFinite(s.channelFreeAt) ? s.channelFreeAt : null,
  ]);
}

/** Audit entries for what a call did (registrations and rejections are recorded where they happen). */
function auditOf(e: GcksServiceEvent): AuditRecord | undefined {
  switch (e.type) {
    case 'rekey-planned':
      return {
        at: e.at,
        kind: 'rekey',
        group: e.group,
        reason: e.reason,
        details: { transport: e.transport, messageId: e.messageId ?? null, newKek: e.newKek ?? null, newTeks: [...e.newTeks], deletes: [...e.deletes] },
      };
    case 'member-excluded':
      return { at: e.at, kind: 'exclusion', group: e.group, member: e.member, reason: e.cause };
    case 'all-members-excluded':
      return { at: e.at, kind: 'exclusion', group: e.group, reason: `every member: ${e.reason}` };
    case 'member-left':
      return { at: e.at, kind: 'exclusion', group: e.group, member: e.member, reason: e.cause === 'member-request' ? `left (${e.notify})` : 'left: its IKE SA closed' };
    case 'inband-rekey-failed':
      return { at: e.at, kind: 'exclusion', group: e.group, member: e.member, reason: `GSA_INBAND_REKEY failed: ${e.reason}` };
    case 'signing-key-rolled-over':
      return { at: e.at, kind: 'rekey', group: e.group, reason: 'signing-key-rollover' };
    case 'sender-ids-exhausted':
      return { at: e.at, kind: 'group', group: e.group, reason: 'Sender-IDs exhausted' };
    default:
      return undefined;
  }
}

/**
 * GSA_NEXT_SPI in a registration's GSA (allowed there with multicast rekey,
 * Section 5 table): a member that misses the very next rekey can then tell
 * from the new Rekey SA's SPI (Section 4.4.2.2.3).
 */
function withNextSpis(payloads: readonly Payload[], group: Group, next: RekeyPlanner['announcedNextSpis']): Payload[] {
  if (!group.rekeySa) return [...payloads];
  return payloads.map((p): Payload => {
    if (p.type !== PayloadType.GSA || !('policies' in p)) return p;
    const policies = p.policies.map((policy) => {
      if (policy.kind !== 'sa') return policy;
      const spi = policy.protocol === ProtocolId.GIKE_UPDATE ? next.kek : next.teks[group.dataSecuritySas.findIndex((t) => t.spi.equals(policy.spi))];
      return spi ? { ...policy, attributes: [...policy.attributes, nextSpiAttribute(spi)] } : policy;
    });
    return { ...p, policies };
  });
}
