/**
 * The group member daemon: a GmService (sans-I/O) on a UDP socket.
 *
 *  - one socket per address family of the configured key servers, bound to
 *    the local address the kernel routes to the first key server of that
 *    family (a specific address, so NAT detection sees the truth) and an
 *    ephemeral port;
 *  - credentials read from the files the configuration names, relative to
 *    the configuration file; errors name their field;
 *  - structured log lines: key server contact, registrations, the installed
 *    SAs in plain words (SPIs, traffic, algorithms, Sender-IDs; never keys),
 *    refusals and retries;
 *  - the key log (`keylogFile`), as for the key server;
 *  - stop(): deletes the registration IKE SA (the member is going away),
 *    closes the socket and the key log.
 *
 * Reload (SIGHUP): the new configuration and its files are validated first;
 * on errors they are logged and the member carries on unchanged. A valid,
 * different configuration replaces the member: new sockets and service, the
 * old IKE SA deleted, every group registered again (the key server hands
 * out the group's current keys, so nothing is lost).
 *
 * Multicast rekeying: after every `keys` event (registrations and KEK
 * rekeys change them) the daemon compares the service's multicastGroups()
 * with the sockets it has joined: each new (group address, port) gets a
 * receive socket bound to it (SO_REUSEADDR, so several members on one host
 * share the port) that joins the group on the member's unicast address's
 * interface; sockets for groups that dropped out are closed. GSA_REKEY
 * messages arriving there go to the service like any datagram.
 */
import dgram from 'node:dgram';
import { systemRandom, type RandomSource } from '../crypto/random.ts';
import { InvalidConfigError } from '../gcks/config-fields.ts';
import { ipFamily } from '../ike/address.ts';
import { formatIdentity } from '../ike/identity.ts';
import { EMPTY_OUTPUT, type DatagramEngine, type LocalEndpoint } from '../ike/io-types.ts';
import { loadGmConfig, type GmConfig } from '../gm/config.ts';
import { GmService, type GmRekeyEvent, type GmServiceDeps, type GmServiceEvent } from '../gm/service.ts';
import { monotonicClock, type Clock } from './clock.ts';
import { configErrorFields, CredentialFiles, loadCertificateFiles, loadForReload, KeylogFile, readConfigText } from './daemon-support.ts';
import { describeLocal } from './gcks-daemon.ts';
import { describeGroupTable, groupTableFields } from './gm-summary.ts';
import type { Logger } from './log.ts';
import { XfrmBackend, type XfrmOutcome } from '../dataplane/xfrm.ts';
import { xfrmSyncFromMember, type XfrmMemberSync } from '../dataplane/xfrm-member.ts';
import { describeEngineEvent, ServiceHost } from './service-host.ts';
import { isMulticastAddress, type SocketSpec } from './udp.ts';

export interface GmSetup {
  readonly config: GmConfig;
  readonly certificate?: GmServiceDeps['certificate'];
  readonly trustAnchors: readonly string[];
}

export function loadGmSetup(text: string, configFile: string): GmSetup {
  const config = loadGmConfig(text, configFile);
  const files = new CredentialFiles(configFile);
  const { certificate, trustAnchors } = loadCertificateFiles(files, config.credentials);
  files.assertOk();
  return { config, ...(certificate ? { certificate } : {}), trustAnchors };
}

export function loadGmSetupFile(configFile: string): GmSetup {
  return loadGmSetup(readConfigText(configFile), configFile);
}

export interface GmDaemonOptions {
  readonly load: () => GmSetup;
  readonly logger: Logger;
  readonly keylogFile?: string | undefined;
  readonly clock?: Clock;
  readonly rng?: RandomSource;
  /** Replaces the automatic choice of local sockets. */
  readonly sockets?: readonly SocketSpec[];
  readonly serviceOptions?: Partial<Pick<GmServiceDeps, 'retransmit' | 'authExchange' | 'engine'>>;
  readonly onEvent?: (event: GmServiceEvent, daemon: GmDaemon) => void;
  /** Keep Linux XFRM states and policies in step with the SA table ('dry-run' only logs the `ip xfrm` commands). */
  readonly xfrm?: 'apply' | 'dry-run' | undefined;
}

export type GmReloadOutcome =
  | { readonly kind: 'invalid'; readonly error: InvalidConfigError }
  | { readonly kind: 'unchanged' }
  | { readonly kind: 'replaced' };

/** The local address the kernel would use towards `address` (no packet is sent). */
export function localAddressTowards(address: string): Promise<string> {
  const family = ipFamily(address) === 6 ? 'udp6' : 'udp4';
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(family);
    s.once('error', (e) => {
      s.close();
      reject(e);
    });
    s.connect(9, address, () => {
      const local = s.address().address;
      s.close();
      resolve(local);
    });
  });
}

/** One socket per family of the configured key servers, towards the first server of each. */
export async function memberSockets(config: GmConfig): Promise<SocketSpec[]> {
  const specs: SocketSpec[] = [];
  const seen = new Set<number>();
  for (const ks of config.keyServers) {
    const family = ipFamily(ks.address);
    if (family === undefined || seen.has(family)) continue;
    seen.add(family);
    let address: string;
    try {
      address = await localAddressTowards(ks.address);
    } catch {
      address = family === 6 ? '::' : '0.0.0.0';
    }
    specs.push({ address, port: 0, marker: false });
  }
  return specs;
}

interface Running {
  readonly setup: GmSetup;
  readonly service: GmService;
  readonly host: ServiceHost<GmServiceEvent>;
  /** Joined multicast receive sockets by `address|port`. */
  readonly multicast: Map<string, JoinedGroup>;
  /** Socket changes run one after the other. */
  multicastSync: Promise<void>;
  /** One XFRM sync per group when `--xfrm` is on. */
  readonly xfrm: readonly XfrmMemberSync[];
}

interface JoinedGroup {
  readonly local: LocalEndpoint;
  readonly address: string;
  readonly port: number;
  /** The groups (IDg text) whose Rekey SAs use it. */
  groups: readonly string[];
}

/** The unicast address whose interface joins multicast groups of `family` (undefined: the kernel's choice). */
function joinInterface(locals: readonly LocalEndpoint[], family: 4 | 6 | undefined): string | undefined {
  const l = locals.find((x) => ipFamily(x.address) === family && x.address !== '0.0.0.0' && x.address !== '::' && !isMulticastAddress(x.address));
  return l?.address;
}

export class GmDaemon {
  private running: Running;
  private readonly log: Logger;
  /** Set by stop(): what the service says about its closing IKE SA is not news then. */
  private stopping = false;

  private constructor(
    running: Running,
    private readonly options: GmDaemonOptions,
    log: Logger,
  ) {
    this.running = running;
    this.log = log;
  }

  /** Loads, binds and starts registering. Throws InvalidConfigError for configuration/file problems. */
  static async start(options: GmDaemonOptions): Promise<GmDaemon> {
    const setup = options.load();
    const log = options.logger.child({ component: 'gm' });
    // Events can only arrive once start() has called begin(), after the daemon exists.
    const ref: { daemon?: GmDaemon } = {};
    const running = await launch(setup, options, log, (e) => ref.daemon?.onEvent(e));
    const daemon = new GmDaemon(running, options, log);
    ref.daemon = daemon;
    daemon.begin();
    return daemon;
  }

  get service(): GmService {
    return this.running.service;
  }

  get config(): GmConfig {
    return this.running.setup.config;
  }

  get locals(): readonly LocalEndpoint[] {
    return this.running.host.locals;
  }

  get keylogLines(): number {
    return this.running.host.keylogLines;
  }

  /** Leaves a group (by IDg text) and forgets its keys. */
  leave(group: string): void {
    const service = this.running.service;
    this.running.host.act((now) => service.leave(group, now));
  }

  async reload(): Promise<GmReloadOutcome> {
    const next = loadForReload(() => this.options.load(), this.log);
    if (next instanceof InvalidConfigError) return { kind: 'invalid', error: next };
    if (sameSetup(next, this.running.setup)) {
      this.log.info('configuration reloaded: no changes', { event: 'reload-unchanged' });
      return { kind: 'unchanged' };
    }
    let replacement: Running;
    try {
      replacement = await launch(next, this.options, this.log, (e) => this.onEvent(e));
    } catch (e) {
      const errors = e instanceof InvalidConfigError ? configErrorFields(e) : [{ field: '<document>', reason: e instanceof Error ? e.message : String(e) }];
      this.log.error('configuration reload refused: the new configuration could not be started; still running with the previous one', {
        event: 'reload-failed',
        errors,
      });
      return { kind: 'invalid', error: e instanceof InvalidConfigError ? e : new InvalidConfigError(next.config.source, []) };
    }
    const old = this.running;
    this.running = replacement;
    await stopRunning(old, 1000, this.log);
    this.log.info('configuration reloaded: registering again with the new configuration', { event: 'reloaded' });
    this.begin();
    return { kind: 'replaced' };
  }

  /** Deletes the IKE SA (waiting up to `graceMs` for the answer), then closes the socket. */
  async stop(graceMs = 1000): Promise<void> {
    this.stopping = true;
    await stopRunning(this.running, graceMs, this.log);
  }

  private begin(): void {
    const { setup, service, host } = this.running;
    const c = setup.config;
    this.log.info(
      `member ${formatIdentity(c.identity)} on ${host.locals.map(describeLocal).join(', ')}: joining ${c.groups.map((g) => formatIdentity(g.id)).join(', ')} ` +
        `via key server ${c.keyServers.map((k) => `${k.address}:${k.port}`).join(', then ')}`,
      {
        event: 'started',
        identity: formatIdentity(c.identity),
        local: host.locals.map(describeLocal),
        keyServers: c.keyServers.map((k) => `${k.address}:${k.port}`),
        groups: c.groups.map((g) => ({ id: formatIdentity(g.id), role: g.role, senderIds: g.senderIds })),
        keylog: this.options.keylogFile ?? null,
      },
    );
    host.act((now) => service.start(now));
  }

  /** The multicast receive sockets joined now (address, port, groups). */
  get multicastSockets(): readonly { readonly address: string; readonly port: number; readonly groups: readonly string[]; readonly local: LocalEndpoint }[] {
    return [...this.running.multicast.values()];
  }

  /** Resolves when the socket changes asked for so far are done. */
  multicastSettled(): Promise<void> {
    return this.running.multicastSync;
  }

  /**
   * Joins the multicast groups multicastGroups() lists and leaves those it
   * no longer lists. Queued: each run sees the state after the previous one.
   */
  private syncMulticast(): void {
    const r = this.running;
    r.multicastSync = r.multicastSync.then(async () => {
      if (this.stopping || this.running !== r) return;
      const wanted = new Map<string, { address: string; port: number; groups: string[] }>();
      for (const g of r.service.multicastGroups()) {
        const key = `${g.address}|${g.port}`;
        const w = wanted.get(key) ?? { address: g.address, port: g.port, groups: [] };
        if (!w.groups.includes(g.group)) w.groups.push(g.group);
        wanted.set(key, w);
      }
      for (const [key, joined] of [...r.multicast]) {
        if (wanted.has(key)) continue;
        r.multicast.delete(key);
        try {
          await r.host.removeSocket(joined.local);
          this.log.info(`left multicast group ${joined.address} port ${joined.port} (no Rekey SA uses it any more)`, {
            event: 'multicast-left',
            address: joined.address,
            port: joined.port,
            groups: joined.groups,
          });
        } catch (e) {
          this.log.error(`cannot leave multicast group ${joined.address}: ${e instanceof Error ? e.message : String(e)}`, { event: 'internal-error', context: 'multicast', error: e });
        }
      }
      for (const [key, w] of wanted) {
        const joined = r.multicast.get(key);
        if (joined) {
          joined.groups = w.groups;
          continue;
        }
        const iface = joinInterface(r.host.locals, ipFamily(w.address));
        try {
          const local = await r.host.addSocket({
            address: w.address,
            port: w.port,
            marker: false,
            reuseAddr: true,
            multicast: { join: [w.address], ...(iface ? { interface: iface } : {}) },
          });
          if (this.stopping || this.running !== r) {
            await r.host.removeSocket(local);
            return;
          }
          r.multicast.set(key, { local, address: w.address, port: w.port, groups: w.groups });
          this.log.info(`listening for rekeys of group ${w.groups.join(', ')} on multicast ${w.address} port ${w.port}${iface ? ` (interface ${iface})` : ''}`, {
            event: 'multicast-joined',
            address: w.address,
            port: w.port,
            interface: iface ?? null,
            groups: w.groups,
          });
        } catch (e) {
          this.log.error(`cannot join multicast group ${w.address} port ${w.port} for group ${w.groups.join(', ')}: ${e instanceof Error ? e.message : String(e)}; rekeys will be missed`, {
            event: 'multicast-join-failed',
            address: w.address,
            port: w.port,
            groups: w.groups,
            error: e,
          });
        }
      }
    });
  }

  private onEvent(e: GmServiceEvent): void {
    if (this.stopping && e.type === 'error') return;
    if (e.type === 'keys' || e.type === 'left' || e.type === 'excluded' || e.type === 'kek-updated') this.syncMulticast();
    for (const sync of this.running.xfrm) reportXfrm(this.log, sync.group, () => sync.onEvent(e));
    logGmEvent(this.log, e, this.running.service, (this.options.clock ?? monotonicClock).now());
    try {
      this.options.onEvent?.(e, this);
    } catch (err) {
      this.log.error('event listener failed', { event: 'internal-error', error: err });
    }
  }
}

async function launch(setup: GmSetup, options: GmDaemonOptions, log: Logger, onEvent: (e: GmServiceEvent) => void): Promise<Running> {
  const clock = options.clock ?? monotonicClock;
  // The service is told which socket it talks from (for NAT detection), so the
  // sockets are bound first and the adapter drives the service through this
  // forwarder once it exists.
  let service: GmService | undefined;
  const forwarder: DatagramEngine<GmServiceEvent> = {
    receive: (data, from, local, now) => (service ? service.receive(data, from, local, now) : EMPTY_OUTPUT),
    timeout: (now) => (service ? service.timeout(now) : EMPTY_OUTPUT),
    nextTimeout: () => service?.nextTimeout(),
  };
  const keylog = options.keylogFile === undefined ? undefined : KeylogFile.open(options.keylogFile);
  let host: ServiceHost<GmServiceEvent> | undefined;
  try {
    host = await ServiceHost.open<GmServiceEvent>({
      engine: forwarder,
      sockets: options.sockets ?? (await memberSockets(setup.config)),
      clock,
      log,
      keylog,
      describe: () => undefined, // the daemon logs (it needs the SA table for the words)
      onEvent,
    });
    const local = host.locals.length === 1 ? host.locals[0] : undefined;
    const files = new CredentialFiles(setup.config.source);
    service = files.check('credentials', () => {
      const deps: GmServiceDeps = {
        ...options.serviceOptions,
        rng: options.rng ?? systemRandom,
        certificateTime: () => new Date(),
        keylog: options.keylogFile !== undefined,
        ...(setup.certificate ? { certificate: setup.certificate } : {}),
        trustAnchors: setup.trustAnchors,
        ...(local ? { local } : {}),
      };
      return new GmService(setup.config, deps);
    });
    files.assertOk();
    const xfrm =
      options.xfrm === undefined
        ? []
        : setup.config.groups.map((g) =>
            xfrmSyncFromMember(
              service!,
              new XfrmBackend({ dryRun: options.xfrm === 'dry-run', log: (line) => log.info(line, { event: 'xfrm', dryRun: options.xfrm === 'dry-run' }) }),
              { group: g.id, localAddress: local?.address },
            ),
          );
    return { setup, service: service!, host, multicast: new Map(), multicastSync: Promise.resolve(), xfrm };
  } catch (e) {
    if (host) await host.stop(undefined, () => true, 0);
    else keylog?.close();
    throw e;
  }
}

async function stopRunning(r: Running, graceMs: number, log: Logger): Promise<void> {
  await r.multicastSync;
  for (const sync of r.xfrm) reportXfrm(log, sync.group, () => sync.close());
  const saId = r.service.status().ikeSa?.saId;
  await r.host.stop(
    saId === undefined ? undefined : (now) => r.service.engine.deleteSa(saId, now),
    () => r.service.engine.list().length === 0,
    graceMs,
  );
}

function sameSetup(a: GmSetup, b: GmSetup): boolean {
  const norm = (s: GmSetup): string =>
    JSON.stringify({
      config: { ...s.config, source: '' },
      cert: s.certificate ? { chain: s.certificate.chain, key: s.certificate.privateKey.export({ format: 'der', type: 'pkcs8' }).toString('hex') } : null,
      anchors: s.trustAnchors,
    });
  return norm(a) === norm(b);
}

/** Runs an XFRM step; a kernel refusal is logged, never fatal (the member keeps its keys). */
function reportXfrm(log: Logger, group: string, step: () => readonly XfrmOutcome[]): void {
  try {
    for (const o of step()) {
      if (!o.ok) log.warn(`xfrm: ${o.error ?? 'command failed'}`, { event: 'xfrm-failed', group, error: o.error ?? null });
    }
  } catch (e) {
    log.error(`xfrm: ${e instanceof Error ? e.message : String(e)}`, { event: 'xfrm-failed', group, error: e });
  }
}

/** One log line per member event, in words; the SA table supplies the words for `keys`. */
export function logGmEvent(log: Logger, e: GmServiceEvent, service: GmService, now: number): void {
  switch (e.type) {
    case 'registered':
      log.info(`${e.replaced ? 're-registered' : 'registered'} to group ${e.group} as ${e.role}`, {
        event: 'registered',
        group: e.group,
        role: e.role,
        replaced: e.replaced,
      });
      return;
    case 'policy':
      log.info(
        `group ${e.group} policy: ${e.mode} mode, ${e.rekey === 'multicast' ? `multicast rekey (${e.rekeyAuthentication ?? 'implicit'})` : 'inband rekey'}` +
          `${e.senderIdBits !== undefined ? `, ${e.senderIdBits}-bit Sender-IDs` : ''}`,
        { event: 'policy', group: e.group, mode: e.mode, rekey: e.rekey, rekeyAuthentication: e.rekeyAuthentication, senderIdBits: e.senderIdBits },
      );
      return;
    case 'keys': {
      const table = [...service.saTable().groups].find((t) => formatIdentity(t.groupId) === e.group);
      const words = table ? describeGroupTable(table) : [];
      log.info(`group ${e.group} SAs installed: ${words.join('; ')}`, {
        event: 'keys',
        ...(table ? groupTableFields(table) : { group: e.group, rekeySpi: e.rekeySpi, dataSecurity: e.dataSecurity, senderIds: e.senderIds }),
      });
      return;
    }
    case 'error': {
      const wait = e.retryAt === undefined ? '' : `; trying again in ${Math.max(0, Math.round((e.retryAt - now) / 1000))} s`;
      log.warn(`group ${e.group}: ${e.reason}${wait}`, { event: 'registration-error', group: e.group, reason: e.reason, notify: e.notify, action: e.action });
      return;
    }
    case 'left':
      log.info(`left group ${e.group}`, { event: 'left', group: e.group });
      return;
    case 'key-server': {
      const words = { trying: 'contacting', connected: 'connected to', failed: 'no luck with' }[e.state];
      const level = e.state === 'failed' ? 'warn' : 'info';
      log[level](`${words} key server ${e.address}:${e.port}${e.reason ? ` (${e.reason})` : ''}`, {
        event: 'key-server',
        state: e.state,
        index: e.index,
        server: `${e.address}:${e.port}`,
        reason: e.reason,
      });
      return;
    }
    case 'tek-installed':
    case 'tek-activated':
    case 'tek-retired':
    case 'kek-updated':
    case 'excluded':
    case 'resync-needed':
    case 'rekey-rejected':
      logRekeyEvent(log, e);
      return;
    default:
      describeEngineEvent(log, e);
  }
}

const PROTOCOL_NAMES: Readonly<Record<number, string>> = { 2: 'AH', 3: 'ESP' };

function protocolName(p: number): string {
  return PROTOCOL_NAMES[p] ?? `protocol ${p}`;
}

function inSeconds(from: number, to: number): string {
  const s = Math.max(0, Math.round((to - from) / 1000));
  return s === 0 ? 'now' : `in ${s} s`;
}

/** Rekey events carry group names, SPIs and reasons only (never keys). */
function logRekeyEvent(log: Logger, e: GmRekeyEvent): void {
  const fields = { ...e, event: e.type };
  switch (e.type) {
    case 'tek-installed':
      log.info(`group ${e.group}: new ${protocolName(e.protocol)} SA 0x${e.spi} (${e.direction}) installed, in use ${inSeconds(e.at, e.activatesAt)}`, fields);
      return;
    case 'tek-activated':
      log.info(`group ${e.group}: ${protocolName(e.protocol)} SA 0x${e.spi} (${e.direction}) now in use`, fields);
      return;
    case 'tek-retired':
      log.info(`group ${e.group}: ${protocolName(e.protocol)} SA 0x${e.spi} (${e.direction}) removed (${e.cause === 'deleted' ? 'the key server deleted it' : 'it expired'})`, fields);
      return;
    case 'kek-updated':
      log.info(
        `group ${e.group}: Rekey SA now 0x${e.spi}${e.previous ? ` (was 0x${e.previous})` : ''}` +
          `${e.newKeyIds.length ? `; ${e.newKeyIds.length} new key-tree key${e.newKeyIds.length === 1 ? '' : 's'}` : ''}` +
          `${e.authKeyChanged ? "; the key server's rekey signing key changed" : ''}`,
        fields,
      );
      return;
    case 'excluded':
      log.warn(`group ${e.group}: excluded by the key server (${e.cause === 'key-path' ? 'the new keys are not for us' : 'it deleted our SAs'}); registering again later`, fields);
      return;
    case 'resync-needed':
      log.warn(`group ${e.group}: a rekey was missed; registering again`, fields);
      return;
    case 'rekey-rejected':
      // Every GSA_REKEY is sent several times (Section 2.4.1.3): the copies after the
      // first arrive as replays, and copies sent over a KEK we already replaced as an
      // unknown SPI. Expected, so not worth a warning; forged or damaged ones are.
      if (e.reason === 'replay' || e.reason === 'unknown-spi') {
        log.debug(`${e.group === undefined ? e.exchange : `group ${e.group}`}: rekey message ignored (${e.reason}: ${e.detail})`, fields);
        return;
      }
      log.warn(`${e.group === undefined ? `${e.exchange}` : `group ${e.group}`}: rekey message rejected (${e.reason}); nothing changed`, fields);
      return;
    default: {
      const unknown: { readonly type: string } = e;
      log.info(`rekey event ${unknown.type}`, fields);
    }
  }
}
