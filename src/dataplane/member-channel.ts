/**
 * The group channel of a member: `openGroupChannel` bound to one group of a
 * GmService, following the member's SA table by itself (RFC 9838 2.4,
 * RFC 5374 4.2.1).
 *
 *   const hub = new GmEventHub();
 *   const adapter = await UdpAdapter.open(gm, sockets, { onEvent: hub.emit });
 *   adapter.act((now) => gm.start(now));
 *   const video = await openMemberChannel(gm, 'video', { events: hub, actor: adapter });
 *   video.on('message', (data, meta) => ...);
 *   await video.send(Buffer.from('frame 1'));
 *
 * The member's events reach the application through the adapter's
 * `onEvent`; a `GmEventHub` fans them out (a daemon's `onEvent` can feed
 * the same hub). On every event of the group that changes keys
 * (registered, keys, tek-installed/activated/retired, kek-updated,
 * excluded, left) the channel re-reads `gm.saTable()`.
 *
 * Timing: the channel takes the member's own activation and deactivation
 * times (gm-sas.ts `memberTimes`), so it must run on the clock the member's
 * adapter runs on (`clock`, default the monotonic clock both default to):
 * a sender switches to a new SA GWP_ATD after the rekey reached it and never
 * goes back; receivers accept a new SA at once and an SA a rekey deleted
 * until GWP_DTD after that rekey. Each datagram travels on exactly one SA,
 * so the overlap neither loses nor duplicates anything.
 *
 * Exclusion: once the member is excluded from the group (or leaves it) the
 * channel holds no SA at all: it stops sending at once and drops every
 * packet, old SPIs as 'stale-sa'. Traffic on the SAs the key server created
 * with the exclusion shows up as 'unknown-spi': the member never received
 * their keys. A later successful registration brings the channel back.
 *
 * Lost rekeys: with `actor` (the member's UdpAdapter or daemon host), the
 * first packet for an SPI the channel does not know is reported to the member
 * (`unknownDataSpi`), which registers again if the key server had announced
 * that SPI (Section 4.4.2.2.3).
 */
import { EventEmitter } from 'node:events';
import type { GmService, GmServiceEvent } from '../gm/service.ts';
import type { GroupSaTable as MemberSaTable } from '../gm/sa-table.ts';
import type { Identity } from '../gcks/config-identities.ts';
import { formatIdentity, sameIdentity } from '../ike/identity.ts';
import type { Output } from '../ike/io-types.ts';
import { monotonicClock, type Clock } from '../node/clock.ts';
import { ProtocolId, TsType } from '../wire/iana.ts';
import type { ChannelDropReason, GroupSaTable, IvCounterRegistry } from './channel-core.ts';
import { GroupChannelError, openGroupChannel, type GroupChannel, type GroupChannelStats, type MessageMeta } from './channel.ts';
import type { EspFramingMode } from './esp.ts';
import { channelTableFromMember, type FlowFilter } from './gm-sas.ts';

/** Where a member's events come from (see GmEventHub). */
export interface GmEventSource {
  /** Calls `listener` with every event of the member from now on; returns the unsubscribe function. */
  subscribe(listener: (event: GmServiceEvent) => void): () => void;
}

/**
 * Fans a member's events out to channels (and anything else): pass `emit`
 * as the UdpAdapter's (or daemon's) `onEvent`, the hub as `events`.
 */
export class GmEventHub implements GmEventSource {
  private readonly listeners = new Set<(event: GmServiceEvent) => void>();

  readonly emit = (event: GmServiceEvent): void => {
    for (const l of [...this.listeners]) l(event);
  };

  subscribe(listener: (event: GmServiceEvent) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }
}

/** Runs a member call and dispatches its output (UdpAdapter.act, ServiceHost.act). */
export interface GmActor {
  act(call: (now: number) => Output<GmServiceEvent>): void;
}

export interface MemberChannelOptions {
  readonly events: GmEventSource;
  /** Default: the destination of the group's first ESP Data-Security SA (a single address). */
  readonly multicastAddress?: string | undefined;
  /** Default: that SA's destination port (when the selector names one). */
  readonly port?: number | undefined;
  /** Local IPv4 address to join on and send from. */
  readonly interface?: string | undefined;
  readonly ttl?: number | undefined;
  /** Default: the group's mode from its policy. */
  readonly mode?: EspFramingMode | undefined;
  readonly replayWindow?: number | undefined;
  /** The member's clock (the one its adapter uses); default the monotonic clock. */
  readonly clock?: Clock | undefined;
  /** Reports unknown SPIs to the member (lost-rekey detection). */
  readonly actor?: GmActor | undefined;
  /** How long to wait for the member to register to the group; default 30 s. */
  readonly registrationTimeoutMs?: number | undefined;
  readonly ivCounters?: IvCounterRegistry | undefined;
}

export interface MemberChannelStats extends GroupChannelStats {
  /** The member is excluded from (or left) the group: the channel holds no SA. */
  readonly excluded: boolean;
  /** SA table updates applied. */
  readonly updates: number;
}

/** What changed after an SA table update ('sas' event). */
export interface MemberChannelUpdate {
  /** The member event that caused it. */
  readonly cause: GmServiceEvent['type'];
  readonly spis: readonly number[];
  readonly outboundSpi: number | undefined;
  readonly excluded: boolean;
}

export type MemberChannelErrorReason = 'unknown-group' | 'not-registered' | 'no-destination';

export class MemberChannelError extends Error {
  override readonly name = 'MemberChannelError';
  constructor(
    readonly reason: MemberChannelErrorReason,
    detail: string,
  ) {
    super(detail);
  }
}

export interface MemberChannel {
  /** IDg as formatIdentity prints it. */
  readonly group: string;
  readonly multicastAddress: string;
  readonly port: number;
  /** Encrypts and multicasts one datagram; rejects with GroupChannelError when it cannot be sent safely. */
  send(data: Uint8Array): Promise<void>;
  on(event: 'message', listener: (data: Buffer, meta: MessageMeta) => void): this;
  on(event: 'drop', listener: (reason: ChannelDropReason, spi: number | undefined) => void): this;
  on(event: 'sas', listener: (update: MemberChannelUpdate) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  off(event: 'message', listener: (data: Buffer, meta: MessageMeta) => void): this;
  stats(): MemberChannelStats;
  close(): void;
}

/** Events after which the group's SAs may have changed. */
const KEY_EVENTS: ReadonlySet<GmServiceEvent['type']> = new Set([
  'registered',
  'keys',
  'tek-installed',
  'tek-activated',
  'tek-retired',
  'kek-updated',
  'excluded',
  'left',
]);

function groupOf(e: GmServiceEvent): string | undefined {
  return 'group' in e && typeof e.group === 'string' ? e.group : undefined;
}

/** The configured group named by IDg text (`keyid:766964656f`) or its octets as text (`video`). */
function resolveGroup(gm: GmService, group: string | Identity): Identity {
  const groups = gm.config.groups;
  const found =
    typeof group !== 'string'
      ? groups.find((g) => sameIdentity(g.id, group))
      : (groups.find((g) => formatIdentity(g.id) === group) ?? groups.find((g) => g.id.data.toString('utf8') === group));
  if (!found) throw new MemberChannelError('unknown-group', `the member is not configured for group ${typeof group === 'string' ? group : formatIdentity(group)}`);
  return found.id;
}

/** The group's first ESP SA destination, when it is a single address (and port). */
function defaultFlow(table: MemberSaTable): { address?: string; port?: number } {
  for (const sa of table.dataSecurity) {
    const d = sa.destination;
    if (sa.protocolId !== ProtocolId.ESP || 'raw' in d || d.type !== TsType.TS_IPV4_ADDR_RANGE) continue;
    if (d.startAddress !== d.endAddress) continue;
    return { address: d.startAddress, ...(d.startPort === d.endPort ? { port: d.startPort } : {}) };
  }
  return {};
}

class MemberChannelImpl extends EventEmitter implements MemberChannel {
  private excluded: boolean;
  private updates = 0;
  private closed = false;
  private readonly reportedSpis = new Set<number>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly gm: GmService,
    private readonly groupId: Identity,
    readonly group: string,
    private readonly flow: FlowFilter & { readonly port: number },
    private readonly inner: GroupChannel,
    private readonly options: MemberChannelOptions,
    excluded: boolean,
  ) {
    super();
    this.excluded = excluded;
    inner.on('message', (data, meta) => this.emit('message', data, meta));
    inner.on('drop', (reason, spi) => this.onDrop(reason, spi));
    inner.on('error', (err) => this.emit('error', err));
    this.unsubscribe = options.events.subscribe((e) => this.onMemberEvent(e));
  }

  get multicastAddress(): string {
    return this.flow.address;
  }

  get port(): number {
    return this.flow.port;
  }

  /** The channel's view of the group's SAs now. */
  table(): GroupSaTable {
    const member = this.excluded ? undefined : this.gm.saTable().get(this.groupId);
    // Excluded or gone: nothing to send on, nothing to accept (no drain).
    if (!member) return { sas: [], dtdMs: 0 };
    return channelTableFromMember(member, this.flow, { memberTimes: true });
  }

  private onMemberEvent(e: GmServiceEvent): void {
    if (this.closed || groupOf(e) !== this.group || !KEY_EVENTS.has(e.type)) return;
    if (e.type === 'excluded' || e.type === 'left') this.excluded = true;
    else if (e.type === 'registered') this.excluded = false;
    this.sync(e.type);
  }

  sync(cause: GmServiceEvent['type']): void {
    try {
      this.inner.updateSas(this.table());
    } catch (err) {
      this.emit('error', err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.updates++;
    const s = this.inner.stats();
    this.emit('sas', { cause, spis: s.sas.map((sa) => sa.spi), outboundSpi: s.outboundSpi, excluded: this.excluded } satisfies MemberChannelUpdate);
  }

  private onDrop(reason: ChannelDropReason, spi: number | undefined): void {
    this.emit('drop', reason, spi);
    const actor = this.options.actor;
    if (reason !== 'unknown-spi' || spi === undefined || !actor || this.reportedSpis.has(spi)) return;
    // Once per SPI: a flood of unknown SPIs must not turn into a flood of registrations.
    this.reportedSpis.add(spi);
    if (this.reportedSpis.size > 1024) this.reportedSpis.clear();
    const octets = Buffer.alloc(4);
    octets.writeUInt32BE(spi);
    actor.act((now) => this.gm.unknownDataSpi(this.groupId, ProtocolId.ESP, octets, now));
  }

  send(data: Uint8Array): Promise<void> {
    return this.inner.send(data);
  }

  stats(): MemberChannelStats {
    return { ...this.inner.stats(), excluded: this.excluded, updates: this.updates };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    this.inner.close();
  }
}

/** Resolves with the group's table once the member holds one (registered), or rejects after `timeoutMs`. */
function registered(gm: GmService, groupId: Identity, group: string, events: GmEventSource, timeoutMs: number): Promise<MemberSaTable> {
  const now = gm.saTable().get(groupId);
  if (now) return Promise.resolve(now);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new MemberChannelError('not-registered', `the member did not register to ${group} within ${timeoutMs} ms`));
    }, timeoutMs);
    const stop = events.subscribe((e) => {
      if (e.type !== 'keys' || e.group !== group) return;
      const t = gm.saTable().get(groupId);
      if (!t) return;
      clearTimeout(timer);
      stop();
      resolve(t);
    });
  });
}

/**
 * Opens the group channel of `gm` for `group` (IDg text or its octets as
 * text, e.g. 'video'), waiting for the member to register first. See the
 * module note for how it follows rekeys and exclusion.
 */
export async function openMemberChannel(gm: GmService, group: string | Identity, options: MemberChannelOptions): Promise<MemberChannel> {
  const groupId = resolveGroup(gm, group);
  const name = formatIdentity(groupId);
  const clock = options.clock ?? monotonicClock;
  // Events that arrive while the sockets open are not lost: the channel re-reads the table after opening.
  const table = await registered(gm, groupId, name, options.events, options.registrationTimeoutMs ?? 30_000);
  const fallback = defaultFlow(table);
  const address = options.multicastAddress ?? fallback.address;
  const port = options.port ?? fallback.port;
  if (address === undefined || port === undefined) {
    throw new MemberChannelError('no-destination', `group ${name}: its SAs name no single multicast address and port; pass multicastAddress and port`);
  }
  const flow = { address, port };
  const excluded = gm.rekeyState(groupId)?.status === 'excluded';
  const initial: GroupSaTable = excluded ? { sas: [] } : channelTableFromMember(table, flow, { memberTimes: true });
  let inner: GroupChannel;
  try {
    inner = await openGroupChannel({
      sas: initial,
      multicastAddress: address,
      port,
      interface: options.interface,
      ttl: options.ttl,
      mode: options.mode ?? table.mode,
      replayWindow: options.replayWindow,
      clock: () => clock.now(),
      ivCounters: options.ivCounters,
    });
  } catch (e) {
    if (e instanceof GroupChannelError) throw e;
    throw new GroupChannelError('socket', e instanceof Error ? e.message : String(e));
  }
  const channel = new MemberChannelImpl(gm, groupId, name, flow, inner, options, excluded);
  channel.sync('keys');
  return channel;
}
