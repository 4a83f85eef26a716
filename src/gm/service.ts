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
 */
import type { KeyObject } from 'node:crypto';
import { deriveGskW } from '../crypto/keys.ts';
import { kwaKeyLength } from '../crypto/keywrap.ts';
import type { RandomSource } from '../crypto/random.ts';
import type { AuthExtensionContext, AuthPayloadProvider, ExtensionRequest, ProviderRefusal } from '../ike/auth-extension.ts';
import type { IkeEngineConfig } from '../ike/config.ts';
import { IkeEngine, type EngineEvent, type EngineOutput } from '../ike/engine.ts';
import { formatIdentity, sameIdentity } from '../ike/identity.ts';
import { type DatagramEngine, type Endpoint, type LocalEndpoint, type Output } from '../ike/io-types.ts';
import type { RetransmitConfig } from '../ike/retransmit.ts';
import { ExchangeType, nameOf, NotifyType, PayloadType } from '../wire/iana.ts';
import type { Payload } from '../wire/payload.ts';
import { isErrorNotify, makeNotify } from '../wire/payloads/notify.ts';
import type { Identity } from '../gcks/config-identities.ts';
import type { GmConfig, GmGroupConfig, KeyServerConfig } from './config.ts';
import { KeyDownloadError, openRegistrationResponse, type GroupKeyMaterial } from './keys.ts';
import { buildSag, checkGroupPolicy } from './policy.ts';
import { SaTable, type GmEvent, type GroupSaTable } from './sa-table.ts';
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
    };

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
}

interface CurrentSa {
  id: string;
  established: boolean;
  readonly server: number;
}

const LEAVE = NotifyType.REGISTRATION_FAILED;
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

  constructor(config: GmConfig, deps: GmServiceDeps) {
    if (config.keyServers.length === 0) throw new Error('GmService: no key servers configured');
    this.config = config;
    this.rng = deps.rng;
    this.local = deps.local;
    this.authExchange = deps.authExchange ?? 'GSA_AUTH';
    this.states = config.groups.map((g) => ({ config: g, name: formatIdentity(g.id), status: 'waiting', dueAt: undefined, failures: 0 }));
    this.engine = new IkeEngine({
      ...deps.engine,
      localId: config.identity,
      proposals: config.ike.proposals,
      keyWrap: config.ike.keyWrap,
      ...(config.credentials.psk ? { psks: { '*': config.credentials.psk } } : {}),
      ...(deps.certificate ? { certificate: deps.certificate } : {}),
      trustAnchors: deps.trustAnchors ?? [],
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

  /** The installed SAs, per group, for the data plane (read only; replaced on every registration). */
  saTable(): SaTable {
    return this.table;
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
    return this.drive(now, [this.engine.receive(data, from, local, now)]);
  }

  timeout(now: number): Output<GmServiceEvent> {
    return this.drive(now, [this.engine.timeout(now)]);
  }

  nextTimeout(): number | undefined {
    let t = this.engine.nextTimeout();
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
    let material: GroupKeyMaterial;
    try {
      material = openRegistrationResponse(payloads, { exchange: ctx.exchangeType, unicastKwa: kwa, gskW, groupSender: this.groupSender(s) });
    } catch (e) {
      if (!(e instanceof KeyDownloadError)) throw e;
      this.fail(s, now, `unusable registration response: ${e.message}`, undefined);
      return { notify: NotifyType.INVALID_SYNTAX, reason: e.message };
    } finally {
      gskW.fill(0);
    }
    const verdict = checkGroupPolicy(material.gsa, material.mode, s.config.accept);
    if (!verdict.acceptable) {
      // Section 2.3.3: tell the key server with NO_PROPOSAL_CHOSEN in GSA_REGISTRATION.
      this.table.remove(s.config.id);
      this.leaves.push({ groupId: s.config.id, notify: NotifyType.NO_PROPOSAL_CHOSEN });
      this.fail(s, now, `policy not acceptable: ${verdict.reason}`, undefined, 'report-no-proposal-chosen');
      return { notify: NotifyType.NO_PROPOSAL_CHOSEN, reason: verdict.reason };
    }
    const events = this.table.install(s.config.id, s.config.role, material, now);
    this.pending.push(...events);
    if (events.some((e) => e.type === 'error')) {
      // A stale registration (Section 2.3.3): what is installed stays; try again later.
      this.fail(s, now, 'stale registration ignored', undefined, 'ignore');
      return undefined;
    }
    s.status = 'registered';
    s.failures = 0;
    const table = this.table.get(s.config.id);
    s.dueAt = table ? this.nextRegistration(table, now) : undefined;
    return undefined;
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
