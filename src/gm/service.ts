/**
 * The group member as one sans-I/O service (RFC 9838 Sections 2.3.2, 2.3.3):
 * an IKE engine as initiator plus the registration client. It registers to
 * every configured group (the first in GSA_AUTH, the rest with
 * GSA_REGISTRATION over the same IKE SA), checks each policy against what it
 * accepts, unwraps the keys and installs them in its SA table, re-registers
 * before a TEK/KEK soft lifetime runs out and with random back-off after an
 * error, and fails over to the next key server when one does not answer.
 *
 * Readings (docs/conformance.md):
 *  - A policy the member cannot accept is reported with IDg +
 *    N(NO_PROPOSAL_CHOSEN) in GSA_REGISTRATION (Section 2.3.2) and retried
 *    with back-off; leaving on request sends N(REGISTRATION_FAILED).
 *  - The member never closes the IKE SA (Section 2.3.3: "the GM SHOULD NOT
 *    close it"). When the key server closes it, groups without a Rekey SA
 *    count as excluded and are registered again after a back-off.
 *  - Failover: a key server that does not answer within the retransmission
 *    budget (or fails authentication) is skipped for the next one; the last
 *    one that worked stays the first choice; after a round where none
 *    answered, the member backs off before the next round.
 *
 * Rekeying (Section 2.4): after each registration a RekeyFollower takes the
 * group over. GSA_REKEY datagrams (exchange type 41, from the multicast
 * sockets the adapter joined for `multicastGroups()`) reach `receive` like
 * any datagram and are routed to the follower holding their Rekey SA SPI;
 * GSA_INBAND_REKEY requests are answered on the IKE SA (HDR, SK{}). The SA
 * table follows every accepted rekey (`saTable()`, with a 'keys' event), and
 * the follower decides when to register again: after exclusion (a random
 * few seconds), when a lost rekey is detected (GSA_NEXT_SPI) or a soft
 * lifetime passes without a replacement.
 *
 *  - Reading: GSA_INBAND_REKEY carries no IDg. With one inband group on the
 *    IKE SA it is that group's; with several, the one whose SAs the Delete
 *    payloads or the policies' traffic selectors name; a request naming
 *    none of them is answered and ignored.
 */
import type { KeyObject } from 'node:crypto';
import { deriveGskW } from '../crypto/keys.ts';
import { kwaKeyLength } from '../crypto/keywrap.ts';
import type { RandomSource } from '../crypto/random.ts';
import type { AuthExtensionContext, AuthPayloadProvider, ExtensionRequest, ProviderRefusal } from '../ike/auth-extension.ts';
import type { IkeEngineConfig } from '../ike/config.ts';
import { IkeEngine, type EngineEvent, type EngineOutput } from '../ike/engine.ts';
import type { ReassemblyConfig } from '../ike/fragments.ts';
import { formatIdentity, sameIdentity } from '../ike/identity.ts';
import { type DatagramEngine, type Endpoint, type LocalEndpoint, type Output } from '../ike/io-types.ts';
import type { RetransmitConfig } from '../ike/retransmit.ts';
import { parseAlgorithmIdentifier } from '../crypto/signature.ts';
import type { GsaPayload } from '../wire/gsa.ts';
import { ExchangeType, GcauthId, nameOf, NotifyType, PayloadType, ProtocolId } from '../wire/iana.ts';
import type { DeletePayload } from '../wire/payloads/delete.ts';
import type { TrafficSelector } from '../wire/traffic-selector.ts';
import type { Payload } from '../wire/payload.ts';
import { isErrorNotify, makeNotify } from '../wire/payloads/notify.ts';
import type { Identity } from '../gcks/config-identities.ts';
import type { GmConfig, GmGroupConfig, KeyServerConfig } from './config.ts';
import { KeyDownloadError, openRegistrationResponse, type GroupKeyMaterial } from './keys.ts';
import { buildSag, checkGroupPolicy } from './policy.ts';
import { RekeyFollower, type FollowedRekeySa, type FollowerEvent, type FollowerRejection, type FollowerState } from './rekey-follower.ts';
import { keysEvent, SaTable, type GmEvent, type GroupSaTable, type InstalledRekeySa } from './sa-table.ts';
import { reregistrationTime, retryTime } from './schedule.ts';

export interface GmServiceDeps {
  readonly rng: RandomSource;
  /** Wall-clock time for certificate validity (`now` is the adapter's clock, often monotonic). */
  readonly certificateTime?: (now: number) => Date;
  /** Emit `keylog` events (Wireshark ikev2_decryption_table lines). Default false. */
  readonly keylog?: boolean;
  /** Our certificate (chain, end-entity first) and key, read from credentials.certificate/privateKey. */
  readonly certificate?: { readonly chain: readonly (Buffer | string)[]; readonly privateKey: KeyObject };
  /** CA certificates the key server's chain must end in, read from credentials.trustAnchors. */
  readonly trustAnchors?: readonly (Buffer | string)[];
  /**
   * Retransmission of our requests. With the engine default (4 s x1.8, 5
   * retransmissions) a silent key server is given up after ~165 s; tests and
   * impatient deployments shorten it to fail over sooner.
   */
  readonly retransmit?: Partial<RetransmitConfig>;
  /** The socket to talk from (as the adapter reports it); default the adapter's first socket. */
  readonly local?: LocalEndpoint;
  /**
   * 'GSA_AUTH' (default): the first due group registers inside GSA_AUTH.
   * 'IKE_AUTH': a standard childless IKE_AUTH first, every group then with
   * GSA_REGISTRATION (as a GM built on another IKEv2 stack would).
   */
  readonly authExchange?: 'GSA_AUTH' | 'IKE_AUTH';
  readonly engine?: Partial<Pick<IkeEngineConfig, 'fragmentation' | 'maxDatagramSize' | 'nonceLength' | 'staleSaTimeoutMs'>>;
  /** Reassembly limits for fragmented GSA_REKEY messages (Section 2.4.1.2). */
  readonly rekeyReassembly?: ReassemblyConfig;
}

type WithGroup<E> = E extends unknown ? E & { readonly group: string } : never;

/** What the member reports about rekeys (never key material). */
export type GmRekeyEvent =
  | WithGroup<Exclude<FollowerEvent, { type: 'rejected' }>>
  | {
      /** A GSA_REKEY or GSA_INBAND_REKEY that was not applied (it changed nothing). */
      readonly type: 'rekey-rejected';
      readonly at: number;
      /** Undefined when no group holds the Rekey SA SPI it came over. */
      readonly group: string | undefined;
      readonly exchange: 'GSA_REKEY' | 'GSA_INBAND_REKEY';
      readonly reason: FollowerRejection;
      readonly detail: string;
    };

/** A group to join on the multicast sockets: where its Rekey SA's GSA_REKEY messages arrive. */
export interface GmMulticastGroup {
  /** IDg as formatIdentity prints it. */
  readonly group: string;
  /** The KEK policy's destination: a multicast address and UDP port. */
  readonly address: string;
  readonly port: number;
  /** The KEK policy's source address, when it names one (source-specific multicast). */
  readonly source?: string | undefined;
  readonly rekeySpi: string;
}

export type GmServiceEvent =
  | EngineEvent
  | Exclude<GmEvent, { type: 'error' }>
  | (Extract<GmEvent, { type: 'error' }> & {
      /** The key server's error notify, when it refused (INVALID_GROUP_ID, AUTHORIZATION_FAILED, ...). */
      readonly notify?: string | undefined;
      /** When the member will try again, if it will. */
      readonly retryAt?: number | undefined;
    })
  | { readonly type: 'left'; readonly at: number; readonly group: string }
  | {
      readonly type: 'key-server';
      readonly at: number;
      /** Index in config.keyServers. */
      readonly index: number;
      readonly address: string;
      readonly port: number;
      /** trying: IKE_SA_INIT sent; connected: IKE SA up; failed: no answer or authentication failed. */
      readonly state: 'trying' | 'connected' | 'failed';
      readonly reason?: string | undefined;
    }
  | GmRekeyEvent;

export type GmGroupStatus =
  /** Waiting for its registration time (first, re-registration or retry). */
  | 'waiting'
  /** A registration request is in flight. */
  | 'registering'
  | 'registered'
  /** Left on request; nothing happens until join(). */
  | 'left';

export interface GmGroupState {
  readonly group: string;
  readonly groupId: Identity;
  readonly status: GmGroupStatus;
  /** Next (re-)registration attempt, when scheduled. */
  readonly nextRegistrationAt?: number | undefined;
  /** Consecutive failed attempts (back-off step). */
  readonly failures: number;
}

export interface GmStatus {
  readonly keyServer: { readonly index: number; readonly address: string; readonly port: number };
  readonly ikeSa?: { readonly saId: string; readonly established: boolean } | undefined;
  readonly groups: readonly GmGroupState[];
}

interface GroupState {
  readonly config: GmGroupConfig;
  readonly name: string;
  status: GmGroupStatus;
  dueAt: number | undefined;
  failures: number;
  /** Follows the group's rekeys from its latest registration on. */
  follower?: RekeyFollower | undefined;
  /** What that registration installed (the Rekey SA's AUTH_KEY as received, senderIdBits). */
  registration?: { readonly material: GroupKeyMaterial; readonly at: number } | undefined;
}

interface CurrentSa {
  id: string;
  established: boolean;
  readonly server: number;
}

const LEAVE = NotifyType.REGISTRATION_FAILED;
const IKE_HEADER_LENGTH = 28;
/** SPIs (16) + Next Payload + Version. */
const EXCHANGE_TYPE_OFFSET = 18;
/** Never re-register for a group more often than this (unless an error back-off says so). */
const MIN_REREGISTRATION_INTERVAL_MS = 1_000;

export class GmService implements DatagramEngine<GmServiceEvent> {
  readonly config: GmConfig;
  readonly engine: IkeEngine;
  private readonly rng: RandomSource;
  private readonly local: LocalEndpoint | undefined;
  private readonly authExchange: 'GSA_AUTH' | 'IKE_AUTH';
  private readonly table = new SaTable();
  private readonly states: GroupState[];
  private serverIndex = 0;
  /** Servers that failed in the current round (reset when one answers). */
  private failedInRound = 0;
  /** Rounds in which no server answered (back-off step). */
  private failedRounds = 0;
  /** No connection attempt before this time (after a round of failures). */
  private connectNotBefore = 0;
  private sa: CurrentSa | undefined;
  /** Leave requests (IDg + notify) waiting for an IKE SA. */
  private leaves: { readonly groupId: Identity; readonly notify: number }[] = [];
  private started = false;
  private pending: GmServiceEvent[] = [];
  private readonly reassembly: ReassemblyConfig | undefined;

  constructor(config: GmConfig, deps: GmServiceDeps) {
    if (config.keyServers.length === 0) throw new Error('GmService: no key servers configured');
    this.config = config;
    this.rng = deps.rng;
    this.local = deps.local;
    this.authExchange = deps.authExchange ?? 'GSA_AUTH';
    this.reassembly = deps.rekeyReassembly;
    this.states = config.groups.map((g) => ({ config: g, name: formatIdentity(g.id), status: 'waiting', dueAt: undefined, failures: 0 }));
    this.engine = new IkeEngine({
      ...deps.engine,
      localId: config.identity,
      proposals: config.ike.proposals,
      keyWrap: config.ike.keyWrap,
      ...(config.credentials.psk ? { psks: { '*': config.credentials.psk } } : {}),
      ...(deps.certificate ? { certificate: deps.certificate } : {}),
      trustAnchors: deps.trustAnchors ?? [],
      exchangeResponders: new Map([[ExchangeType.GSA_INBAND_REKEY, (ctx: AuthExtensionContext, payloads: readonly Payload[]) => this.onInbandRekey(ctx, payloads)]]),
      ...(deps.retransmit ? { retransmit: deps.retransmit } : {}),
      keylog: deps.keylog ?? false,
      rng: deps.rng,
      ...(deps.certificateTime ? { certificateTime: deps.certificateTime } : {}),
    });
  }

  // ------------------------------------------------------------------ API

  /** Registers to every configured group, starting with the first key server. */
  start(now: number): Output<GmServiceEvent> {
    return this.drive(now, [], () => {
      if (this.started) return;
      this.started = true;
      for (const s of this.states) s.dueAt = now;
    });
  }

  /**
   * Leaves a group (GSA_REGISTRATION with IDg + N(REGISTRATION_FAILED)) and
   * forgets its keys. `group`: an Identity, the IDg as formatIdentity prints
   * it (`keyid:766964656f`, `telemetry.example`), or the ID's octets as text
   * (`video`). Over the current IKE SA, or a new childless IKE_AUTH one.
   */
  leave(group: string | Identity, now: number): Output<GmServiceEvent> {
    return this.drive(now, [], () => {
      const s = this.find(group);
      if (!s || s.status === 'left') return;
      s.status = 'left';
      s.dueAt = undefined;
      s.failures = 0;
      s.follower = undefined;
      s.registration = undefined;
      this.table.remove(s.config.id);
      this.leaves.push({ groupId: s.config.id, notify: LEAVE });
      this.pending.push({ type: 'left', at: now, group: s.name });
    });
  }

  /** Joins a configured group again after leave(). */
  join(group: string | Identity, now: number): Output<GmServiceEvent> {
    return this.drive(now, [], () => {
      const s = this.find(group);
      if (!s || s.status !== 'left') return;
      s.status = 'waiting';
      s.dueAt = now;
    });
  }

  /** The installed SAs, per group, for the data plane (read only; follows registrations and rekeys, see 'keys' events). */
  saTable(): SaTable {
    return this.table;
  }

  /**
   * Where GSA_REKEY messages for the registered multicast-rekeyed groups
   * arrive: join each (address, port) on a receive socket and pass what
   * arrives to `receive`. Changes after registrations and KEK rekeys (check
   * after 'keys' events); a retiring Rekey SA's group stays listed until it
   * is gone.
   */
  multicastGroups(): GmMulticastGroup[] {
    const out: GmMulticastGroup[] = [];
    const seen = new Set<string>();
    for (const s of this.states) {
      const st = s.follower?.state;
      if (!st) continue;
      for (const k of [st.rekeySa, ...st.retiringRekeySas]) {
        const d = k?.destination;
        if (!k || !d || 'raw' in d) continue;
        const key = `${s.name}|${d.startAddress}|${d.startPort}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const src = k.source;
        const source = src && !('raw' in src) && src.startAddress === src.endAddress ? src.startAddress : undefined;
        out.push({ group: s.name, address: d.startAddress, port: d.startPort, source, rekeySpi: k.spi.toString('hex') });
      }
    }
    return out;
  }

  /** TEST / DIAGNOSTIC: the rekey follower's state for a group (keys in the clear; never log it). */
  rekeyState(group: string | Identity): FollowerState | undefined {
    return this.find(group)?.follower?.state;
  }

  /**
   * The data plane saw ESP/AH for an SPI it has no SA for: if the key server
   * announced it (GSA_NEXT_SPI) a rekey was lost and the member registers
   * again (Section 4.4.2.2.3).
   */
  unknownDataSpi(group: string | Identity, protocol: number, spi: Buffer, now: number): Output<GmServiceEvent> {
    return this.drive(now, [], () => {
      const s = this.find(group);
      const f = s?.follower;
      if (s && f) this.followed(s, f.onUnknownDataSpi(protocol, spi, now), now);
    });
  }

  status(): GmStatus {
    const server = this.server(this.serverIndex);
    return {
      keyServer: { index: this.serverIndex, address: server.address, port: server.port },
      ikeSa: this.sa && { saId: this.sa.id, established: this.sa.established },
      groups: this.states.map((s) => ({ group: s.name, groupId: s.config.id, status: s.status, nextRegistrationAt: s.dueAt, failures: s.failures })),
    };
  }

  // ------------------------------------------------------------------ DatagramEngine

  receive(data: Buffer, from: Endpoint, local: LocalEndpoint, now: number): Output<GmServiceEvent> {
    // GSA_REKEY is no exchange of the IKE SA: it goes to the group's follower (Section 2.4.1).
    if (data.length >= IKE_HEADER_LENGTH && data[EXCHANGE_TYPE_OFFSET] === ExchangeType.GSA_REKEY) {
      return this.drive(now, [], () => this.onRekeyDatagram(data, now));
    }
    return this.drive(now, [this.engine.receive(data, from, local, now)]);
  }

  timeout(now: number): Output<GmServiceEvent> {
    return this.drive(now, [this.engine.timeout(now)], () => {
      for (const s of this.states) {
        const f = s.follower;
        const due = f?.nextDeadline();
        if (f && due !== undefined && due <= now) this.followed(s, f.tick(now), now);
      }
    });
  }

  nextTimeout(): number | undefined {
    let t = this.engine.nextTimeout();
    for (const s of this.states) {
      const due = s.follower?.nextDeadline();
      if (due !== undefined && (t === undefined || due < t)) t = due;
    }
    // While the IKE SA comes up, due groups wait for it (sa-established), not for a timer.
    if (this.sa && !this.sa.established) return t;
    for (const s of this.states) {
      if (s.status === 'registering' || s.status === 'left' || s.dueAt === undefined) continue;
      const at = Math.max(s.dueAt, this.sa ? s.dueAt : this.connectNotBefore);
      if (t === undefined || at < t) t = at;
    }
    return t;
  }

  // ------------------------------------------------------------------ the loop

  /**
   * Runs `action`, then follows every engine event and starts whatever is
   * due (which may produce more engine output) until nothing new happens.
   */
  private drive(now: number, initial: EngineOutput[], action?: () => void): Output<GmServiceEvent> {
    const send: EngineOutput['send'] = [];
    const events: GmServiceEvent[] = [];
    const work = [...initial];
    action?.();
    for (let round = 0; round < 1000; round++) {
      while (work.length > 0) {
        const out = work.shift()!;
        send.push(...out.send);
        for (const e of out.events) {
          events.push(e);
          this.follow(e, now);
        }
        events.push(...this.pending);
        this.pending = [];
      }
      events.push(...this.pending);
      this.pending = [];
      const more = this.pump(now);
      if (more.length === 0) break;
      work.push(...more);
    }
    return { send, events };
  }

  /** Starts what is due: a connection, registrations, leaves. */
  private pump(now: number): EngineOutput[] {
    const due = this.states.filter((s) => s.status !== 'registering' && s.status !== 'left' && s.dueAt !== undefined && s.dueAt <= now);
    if (due.length === 0 && this.leaves.length === 0) return [];
    if (!this.sa) {
      if (now < this.connectNotBefore) return [];
      return [this.connect(now, due[0])];
    }
    if (!this.sa.established) return [];
    const outputs: EngineOutput[] = [];
    const saId = this.sa.id;
    for (const leave of this.leaves.splice(0)) {
      const out = this.engine.requestExchange(saId, this.leaveRequest(leave.groupId, leave.notify), now);
      if (!out.queued) return this.unusableSa(leave, outputs);
      outputs.push(out);
    }
    for (const s of due) {
      const out = this.engine.requestExchange(saId, this.registrationRequest(s), now);
      if (!out.queued) return this.unusableSa(undefined, outputs);
      s.status = 'registering';
      outputs.push(out);
    }
    return outputs;
  }

  /** The engine no longer takes requests on our SA (being deleted): forget it, connect anew. */
  private unusableSa(leave: { readonly groupId: Identity; readonly notify: number } | undefined, outputs: EngineOutput[]): EngineOutput[] {
    if (leave) this.leaves.unshift(leave);
    this.sa = undefined;
    return outputs;
  }

  private connect(now: number, first: GroupState | undefined): EngineOutput {
    const index = this.serverIndex;
    const server = this.server(index);
    const gsaAuth = this.authExchange === 'GSA_AUTH' && first !== undefined;
    if (gsaAuth) first.status = 'registering';
    const out = this.engine.initiate(
      {
        address: server.address,
        port: server.port,
        ...(this.local ? { local: this.local } : {}),
        ...(server.id ? { remoteId: server.id } : {}),
        exchange: gsaAuth ? 'GSA_AUTH' : 'IKE_AUTH',
        ...(gsaAuth ? { providers: [this.gsaAuthProvider(first)] } : {}),
      },
      now,
    );
    this.sa = { id: out.saId, established: false, server: index };
    this.pending.push({ type: 'key-server', at: now, index, address: server.address, port: server.port, state: 'trying' });
    return out;
  }

  private server(index: number): KeyServerConfig {
    return this.config.keyServers[index] ?? this.config.keyServers[0]!;
  }

  private find(group: string | Identity): GroupState | undefined {
    if (typeof group !== 'string') return this.states.find((s) => sameIdentity(s.config.id, group));
    // IDg text as formatIdentity prints it, or the ID's octets as text (`video` for ID_KEY_ID "video").
    return this.states.find((s) => s.name === group) ?? this.states.find((s) => s.config.id.data.toString('utf8') === group);
  }

  // ------------------------------------------------------------------ engine events

  private follow(e: EngineEvent, now: number): void {
    const sa = this.sa;
    switch (e.type) {
      case 'sa-established': {
        if (!sa || e.saId !== sa.id) return;
        sa.established = true;
        this.failedInRound = 0;
        this.failedRounds = 0;
        const server = this.server(sa.server);
        this.pending.push({ type: 'key-server', at: now, index: sa.server, address: server.address, port: server.port, state: 'connected' });
        return;
      }
      case 'sa-rekeyed':
        if (sa && e.oldSaId === sa.id) sa.id = e.saId;
        return;
      case 'exchange-failed':
        if (!sa || e.saId !== sa.id || sa.established) return;
        // Before authentication the SA is gone without an sa-deleted event.
        this.serverFailed(now, `${e.exchange}: ${e.notify}${e.reason ? ` (${e.reason})` : ''}`);
        return;
      case 'sa-deleted':
        if (!sa || e.saId !== sa.id) return;
        if (e.reason === 'timeout') {
          this.serverFailed(now, 'no answer to a request on the IKE SA', true);
          return;
        }
        this.sa = undefined;
        this.saClosed(now);
        return;
      default:
        return;
    }
  }

  /** The current key server did not answer or failed authentication: try the next one. */
  private serverFailed(now: number, reason: string, wasEstablished = false): void {
    const failed = this.sa?.server ?? this.serverIndex;
    this.sa = undefined;
    const server = this.server(failed);
    this.pending.push({ type: 'key-server', at: now, index: failed, address: server.address, port: server.port, state: 'failed', reason });
    for (const s of this.states) {
      if (s.status === 'registering') {
        s.status = 'waiting';
        s.dueAt = now;
      }
    }
    if (wasEstablished) this.excludeInbandGroups(now);
    this.serverIndex = (failed + 1) % this.config.keyServers.length;
    this.failedInRound++;
    if (this.failedInRound >= this.config.keyServers.length) {
      this.failedInRound = 0;
      this.connectNotBefore = retryTime(now, this.failedRounds++, this.rng);
      for (const s of this.states) {
        if (s.status !== 'waiting' || s.dueAt === undefined || s.dueAt > now) continue;
        this.pending.push({
          type: 'error',
          at: now,
          group: s.name,
          reason: 'no key server answered',
          action: 'retry',
          retryAt: this.connectNotBefore,
        });
      }
    }
  }

  /** The key server closed the IKE SA (by convention it does, Section 2.3.3). */
  private saClosed(now: number): void {
    for (const s of this.states) {
      if (s.status === 'registering') {
        s.status = 'waiting';
        s.dueAt = now;
      }
    }
    this.excludeInbandGroups(now);
  }

  /** Section 2.3.3: IKE SA closed and no GIKE_UPDATE policy -> excluded; re-register. */
  private excludeInbandGroups(now: number): void {
    for (const s of this.states) {
      const t = this.table.get(s.config.id);
      if (s.status !== 'registered' || !t || t.rekeySa) continue;
      this.table.remove(s.config.id);
      s.follower = undefined;
      s.registration = undefined;
      this.fail(s, now, 'the IKE SA of an inband-rekeyed group was closed: excluded, registering again', undefined);
    }
  }

  // ------------------------------------------------------------------ registration

  private requestPayloads(s: GroupState): Payload[] {
    const g = s.config;
    const out: Payload[] = [{ type: PayloadType.IDg, critical: false, idType: g.id.idType, data: g.id.data }, buildSag(g.accept)];
    if (g.role !== 'receiver') out.push(makeNotify(NotifyType.GROUP_SENDER, { kind: 'sender-id-count', count: g.senderIds }));
    return out;
  }

  private groupSender(s: GroupState): number | undefined {
    return s.config.role === 'receiver' ? undefined : s.config.senderIds;
  }

  private gsaAuthProvider(s: GroupState): AuthPayloadProvider {
    return {
      name: 'gm-registration',
      buildRequest: () => this.requestPayloads(s),
      processResponse: (ctx, payloads) => this.onResponse(s, ctx, payloads),
    };
  }

  private registrationRequest(s: GroupState): ExtensionRequest {
    return {
      exchangeType: ExchangeType.GSA_REGISTRATION,
      build: () => this.requestPayloads(s),
      onResponse: (ctx, payloads) => {
        this.onResponse(s, ctx, payloads);
      },
    };
  }

  private leaveRequest(groupId: Identity, notify: number): ExtensionRequest {
    return {
      exchangeType: ExchangeType.GSA_REGISTRATION,
      build: () => [{ type: PayloadType.IDg, critical: false, idType: groupId.idType, data: groupId.data }, makeNotify(notify)],
      // Section 2.3.2: the answer is an empty SK{}; nothing to do with it.
      onResponse: () => undefined,
    };
  }

  /** A GSA_AUTH or GSA_REGISTRATION response for group `s`. */
  private onResponse(s: GroupState, ctx: AuthExtensionContext, payloads: readonly Payload[]): ProviderRefusal | undefined {
    const now = ctx.now;
    if (s.status === 'left') return undefined;
    const error = payloads.find((p) => p.type === PayloadType.NOTIFY && 'notifyType' in p && isErrorNotify(p));
    if (error && 'notifyType' in error) {
      const name = nameOf(NotifyType, error.notifyType);
      this.fail(s, now, `the key server refused: ${name}`, name);
      return { notify: error.notifyType, reason: `key server refused ${s.name}` };
    }
    const kwa = ctx.transforms.kwa;
    if (kwa === undefined) {
      this.fail(s, now, 'no Key Wrap Algorithm was negotiated with the key server', undefined);
      return { notify: NotifyType.NO_PROPOSAL_CHOSEN, reason: 'no KWA' };
    }
    const gskW = deriveGskW(ctx.transforms.prf, ctx.skD, kwaKeyLength(kwa));
    try {
      return this.installRegistration(s, ctx, payloads, kwa, gskW);
    } finally {
      gskW.fill(0);
    }
  }

  private installRegistration(s: GroupState, ctx: AuthExtensionContext, payloads: readonly Payload[], kwa: number, gskW: Buffer): ProviderRefusal | undefined {
    const now = ctx.now;
    let material: GroupKeyMaterial;
    try {
      material = openRegistrationResponse(payloads, { exchange: ctx.exchangeType, unicastKwa: kwa, gskW, groupSender: this.groupSender(s) });
    } catch (e) {
      if (!(e instanceof KeyDownloadError)) throw e;
      this.fail(s, now, `unusable registration response: ${e.message}`, undefined);
      return { notify: NotifyType.INVALID_SYNTAX, reason: e.message };
    }
    const verdict = checkGroupPolicy(material.gsa, material.mode, s.config.accept);
    if (!verdict.acceptable) {
      // Section 2.3.3: tell the key server with NO_PROPOSAL_CHOSEN in GSA_REGISTRATION.
      this.table.remove(s.config.id);
      s.follower = undefined;
      s.registration = undefined;
      this.leaves.push({ groupId: s.config.id, notify: NotifyType.NO_PROPOSAL_CHOSEN });
      this.fail(s, now, `policy not acceptable: ${verdict.reason}`, undefined, 'report-no-proposal-chosen');
      return { notify: NotifyType.NO_PROPOSAL_CHOSEN, reason: verdict.reason };
    }
    let follower: RekeyFollower;
    try {
      follower = RekeyFollower.fromRegistration({
        groupId: s.config.id,
        role: s.config.role,
        material,
        payloads,
        unicastKwa: kwa,
        gskW,
        now,
        rng: this.rng,
        reassembly: this.reassembly,
      });
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      this.fail(s, now, `unusable registration response: ${e.message}`, undefined);
      return { notify: NotifyType.INVALID_SYNTAX, reason: e.message };
    }
    const events = this.table.install(s.config.id, s.config.role, material, now);
    this.pending.push(...events);
    if (events.some((e) => e.type === 'error')) {
      // A stale registration (Section 2.3.3): what is installed stays; try again later.
      this.fail(s, now, 'stale registration ignored', undefined, 'ignore');
      return undefined;
    }
    s.follower = follower;
    s.registration = { material, at: now };
    s.status = 'registered';
    s.failures = 0;
    const table = this.table.get(s.config.id);
    // The follower asks to register again (exclusion, a lost rekey, a soft lifetime without replacement).
    // Keys handed out past their soft lifetime (the key server's rekey is due) are asked for again at expiry.
    const soft = table ? reregistrationTime(table, now, this.rng) : undefined;
    s.dueAt = table && soft !== undefined && soft <= now ? this.nextRegistration(table, now) : undefined;
    return undefined;
  }

  // ------------------------------------------------------------------ rekeys

  /** A GSA_REKEY datagram: to the group holding its Rekey SA, or that was told its SPI (GSA_NEXT_SPI). */
  private onRekeyDatagram(data: Buffer, now: number): void {
    const spi = data.subarray(0, 16);
    const following = this.states.filter((s) => s.follower !== undefined);
    const holds = (st: FollowerState): boolean => [st.rekeySa, ...st.retiringRekeySas].some((k) => k?.spi.equals(spi));
    let targets = following.filter((s) => holds(s.follower!.state));
    if (targets.length === 0) targets = following.filter((s) => s.follower!.state.announcedSpis.includes(`kek:${spi.toString('hex')}`));
    if (targets.length === 0) {
      this.pending.push({ type: 'rekey-rejected', at: now, group: undefined, exchange: 'GSA_REKEY', reason: 'unknown-spi', detail: `no group holds Rekey SA ${spi.toString('hex')}` });
      return;
    }
    for (const s of targets) this.followed(s, s.follower!.onDatagram(data, now), now, 'GSA_REKEY');
  }

  /** GSA_INBAND_REKEY (Section 2.4.2): applied like a registration's GSA/KD/Delete; the answer is SK{}. */
  private onInbandRekey(ctx: AuthExtensionContext, payloads: readonly Payload[]): Payload[] {
    const now = ctx.now;
    const s = this.inbandGroupFor(payloads);
    const kwa = ctx.transforms.kwa;
    if (!s?.follower || kwa === undefined) {
      const detail = kwa === undefined ? 'no Key Wrap Algorithm on the IKE SA' : 'names no inband group of this member';
      this.pending.push({ type: 'rekey-rejected', at: now, group: s?.name, exchange: 'GSA_INBAND_REKEY', reason: 'not-applicable', detail });
      return [];
    }
    const gskW = deriveGskW(ctx.transforms.prf, ctx.skD, kwaKeyLength(kwa));
    try {
      const result = s.follower.onInbandRekey(payloads, now, { kwa, key: gskW });
      this.followed(s, result.events, now, 'GSA_INBAND_REKEY');
      return [...result.response];
    } finally {
      gskW.fill(0);
    }
  }

  /** The inband group a GSA_INBAND_REKEY is for (see the module note). */
  private inbandGroupFor(payloads: readonly Payload[]): GroupState | undefined {
    const inband = this.states.filter((s) => s.follower && !s.follower.state.rekeySa && s.status !== 'left');
    if (inband.length <= 1) return inband[0];
    const deletes = payloads.filter((p): p is DeletePayload => p.type === PayloadType.DELETE && 'spis' in p);
    const gsa = payloads.find((p): p is GsaPayload => p.type === PayloadType.GSA && 'policies' in p);
    const named = inband.filter((s) => {
      const sas = s.follower!.state.dataSecurity;
      const byDelete = deletes.some((d) => d.protocolId !== ProtocolId.GIKE_UPDATE && d.spis.some((spi) => sas.some((sa) => sa.protocolId === d.protocolId && sa.spi.equals(spi))));
      const byTraffic = (gsa?.policies ?? []).some(
        (p) => p.kind === 'sa' && p.protocol !== ProtocolId.GIKE_UPDATE && sas.some((sa) => sa.protocolId === p.protocol && sameSelector(sa.destination, p.destination) && sameSelector(sa.source, p.source)),
      );
      return byDelete || byTraffic;
    });
    return named.length === 1 ? named[0] : undefined;
  }

  /** Follower events -> service events, re-registration times, and the SA table. */
  private followed(s: GroupState, events: readonly FollowerEvent[], now: number, exchange: 'GSA_REKEY' | 'GSA_INBAND_REKEY' = 'GSA_REKEY'): void {
    let changed = false;
    for (const e of events) {
      switch (e.type) {
        case 'rejected':
          this.pending.push({ type: 'rekey-rejected', at: e.at, group: s.name, exchange, reason: e.reason, detail: e.detail });
          continue;
        case 'excluded':
          // Section 2.4.3 / NOTES point 7: register again after a random few seconds.
          if (s.status !== 'left' && s.status !== 'registering') {
            s.status = 'waiting';
            s.dueAt = e.reregisterAt;
          }
          changed = true;
          break;
        case 'resync-needed':
          if (s.status === 'registered' || s.status === 'waiting') s.dueAt = Math.min(s.dueAt ?? Infinity, Math.max(now, e.reregisterAt));
          break;
        default:
          changed = true;
      }
      this.pending.push({ ...e, group: s.name });
    }
    if (changed) this.syncTable(s, now);
  }

  /** The group's SA table as its follower holds it now. */
  private syncTable(s: GroupState, now: number): void {
    const st = s.follower?.state;
    const reg = s.registration;
    if (!st || !reg) return;
    const table: GroupSaTable = {
      groupId: s.config.id,
      role: s.config.role,
      registeredAt: reg.at,
      mode: st.mode,
      rekeySa: st.rekeySa && installedRekeySa(st.rekeySa, reg.material),
      dataSecurity: st.dataSecurity,
      senderIds: st.senderIds,
      senderIdBits: reg.material.senderIdBits,
      activationDelaySeconds: st.activationDelaySeconds,
      deactivationDelaySeconds: st.deactivationDelaySeconds,
    };
    this.table.replace(table);
    this.pending.push(keysEvent(table, now));
  }

  /**
   * Before the soft lifetime (schedule.ts). When that has passed already the
   * key server handed out SAs close to their end (its rekey is due but has
   * not happened): asking again at once would get the same ones, so ask
   * when they expire, when the key server replaces them.
   */
  private nextRegistration(table: GroupSaTable, now: number): number | undefined {
    const soft = reregistrationTime(table, now, this.rng);
    if (soft === undefined || soft > now) return soft;
    const expiries = [table.rekeySa?.expiresAt, ...table.dataSecurity.map((sa) => sa.expiresAt)].filter((t): t is number => t !== undefined);
    return Math.max(now + MIN_REREGISTRATION_INTERVAL_MS, Math.min(...expiries) + MIN_REREGISTRATION_INTERVAL_MS);
  }

  /** A failed registration: report it and retry after a random back-off. */
  private fail(
    s: GroupState,
    now: number,
    reason: string,
    notify: string | undefined,
    action: 'retry' | 'report-no-proposal-chosen' | 'ignore' = 'retry',
  ): void {
    s.status = 'waiting';
    s.dueAt = retryTime(now, s.failures++, this.rng);
    this.pending.push({ type: 'error', at: now, group: s.name, reason, action, ...(notify ? { notify } : {}), retryAt: s.dueAt });
  }
}

function sameSelector(a: TrafficSelector, b: TrafficSelector): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The follower's Rekey SA in the SA table's shape (AUTH_KEY as the registration gave it, unless rolled over). */
function installedRekeySa(k: FollowedRekeySa, material: GroupKeyMaterial): InstalledRekeySa {
  const registered = material.rekeySa;
  let authKey: InstalledRekeySa['authKey'];
  if (k.auth.kind === 'signature') {
    const publicKey = k.auth.publicKey;
    authKey =
      registered?.authKey && registered.authKey.publicKey === publicKey
        ? registered.authKey
        : {
            spki: publicKey.export({ type: 'spki', format: 'der' }),
            publicKey,
            algorithm: parseAlgorithmIdentifier(k.auth.algorithmIdentifier),
          };
  }
  const nextMessageId = k.lastMessageId === undefined ? k.initialMessageId : k.lastMessageId + 1;
  return {
    spi: k.spi,
    source: k.source ?? registered!.source,
    destination: k.destination ?? registered!.destination,
    encryption: k.encryption,
    integrity: k.integrity,
    keyWrap: k.keyWrap,
    authentication: k.auth.kind === 'signature' ? GcauthId.DIGITAL_SIGNATURE : GcauthId.IMPLICIT,
    keys: k.keys,
    authKey,
    lifetimeSeconds: k.expiresAt === undefined ? undefined : Math.round((k.expiresAt - k.installedAt) / 1000),
    initialMessageId: k.initialMessageId,
    installedAt: k.installedAt,
    expiresAt: k.expiresAt,
    nextMessageId,
  };
}
