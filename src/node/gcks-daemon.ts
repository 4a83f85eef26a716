/**
 * The key server daemon: a GcksService (sans-I/O) on UDP sockets.
 *
 *  - sockets from the configuration's `listen` list (500, 4500 with the
 *    non-ESP marker, 848, or test ports);
 *  - credentials read from the files the configuration names, relative to
 *    the configuration file (certificate chain, private key, trust anchors,
 *    rekey signing keys); every unreadable or unusable file is reported as a
 *    configuration error naming its field;
 *  - structured log lines for every registration, refusal, departure and IKE
 *    SA event; key material never reaches the log;
 *  - the key log (`keylogFile`): the engine's Wireshark lines, appended to a
 *    0600 file; the only way keys leave the process;
 *  - multicast rekeying: the socket each group's GSA_REKEY leaves from (the
 *    KEK policy's source) is set up for multicast sending (interface, TTL 1,
 *    loopback); a source that is no listen socket gets a send socket;
 *  - durable state (`state`, `--state DIR`): src/node/gcks-state.ts supplies
 *    the service dependencies that persist counters and groups;
 *  - the control socket (`control`, `gikev2 ctl`): status, members, rekey,
 *    exclude, readmit, rotate-signing-key, reload-policy, each mapped onto
 *    the service's operator API (src/node/control.ts has the protocol);
 *  - stop(): closes the control socket, every IKE SA (Delete sent, answers
 *    awaited briefly), the sockets, the key log, the state.
 *
 * Reload (SIGHUP): the new file and its credential files are read and
 * validated first; errors are logged with their field paths and the running
 * configuration stays. A valid new configuration is NOT applied by SIGHUP:
 * groups, keys and members live in the GcksService, and replacing it would
 * hand out new keys to new members while old members keep the old ones.
 * `gikev2 ctl reload-policy` applies changed group policies in place
 * (GcksService.changePolicy: a rekey the members follow); added or removed
 * groups, sockets and credentials need a restart.
 */
import { readFileSync } from 'node:fs';
import { systemRandom, type RandomSource } from '../crypto/random.ts';
import { GcksOperatorError, GcksService, type GcksRekeyEvent, type GcksServiceDeps, type GcksServiceEvent } from '../gcks/service.ts';
import { InvalidConfigError, joinField } from '../gcks/config-fields.ts';
import { loadGcksConfig, type GcksConfig, type GroupConfig } from '../gcks/config.ts';
import { RekeyPlannerError } from '../gcks/rekey-planner.ts';
import { loadRekeySigningKey, rekeySigningKeyFrom, type RekeySigningKey } from '../gcks/signing-key.ts';
import { ipFamily } from '../ike/address.ts';
import { formatIdentity } from '../ike/identity.ts';
import { EMPTY_OUTPUT, type LocalEndpoint, type Output } from '../ike/io-types.ts';
import { monotonicClock, type Clock } from './clock.ts';
import { ControlError, ControlServer, ControlSocketInUseError, type ControlRequest, type JsonValue } from './control.ts';
import { configErrorFields, CredentialFiles, loadCertificateFiles, loadForReload, KeylogFile, readConfigText } from './daemon-support.ts';
import { openGcksState, type GcksStateHandle } from './gcks-state.ts';
import { describeEngineEvent, ServiceHost, type HostedLog } from './service-host.ts';
import type { Logger } from './log.ts';
import type { SocketSpec } from './udp.ts';

/** A validated configuration with the contents of the files it names. */
export interface GcksSetup {
  readonly config: GcksConfig;
  readonly certificate?: GcksServiceDeps['certificate'];
  readonly trustAnchors: readonly string[];
  readonly signingKeys: ReadonlyMap<string, RekeySigningKey>;
}

/**
 * Parses the configuration text and reads every file it names (relative to
 * `configFile`). Throws InvalidConfigError with every problem found.
 */
export function loadGcksSetup(text: string, configFile: string): GcksSetup {
  const config = loadGcksConfig(text, configFile);
  const files = new CredentialFiles(configFile);
  const { certificate, trustAnchors } = loadCertificateFiles(files, config.credentials);
  const signingKeys = new Map<string, RekeySigningKey>();
  config.groups.forEach((g, i) => {
    if (g.rekey.kind !== 'multicast' || g.rekey.signingKeyFile === undefined) return;
    const field = joinField(joinField(`groups[${i}]`, 'rekey'), 'signingKey');
    const pem = files.read(field, g.rekey.signingKeyFile);
    const key = pem && files.check(field, () => loadRekeySigningKey(pem));
    if (key) signingKeys.set(g.name, key);
  });
  files.assertOk();
  return { config, ...(certificate ? { certificate } : {}), trustAnchors, signingKeys };
}

/** Reads and validates a configuration file and its credential files. */
export function loadGcksSetupFile(configFile: string): GcksSetup {
  return loadGcksSetup(readConfigText(configFile), configFile);
}

/** A setup from an in-memory configuration and keys (demo, tests, bench). */
export function gcksSetupFromConfig(config: GcksConfig, signingKeys: ReadonlyMap<string, RekeySigningKey> = new Map()): GcksSetup {
  return { config, trustAnchors: [], signingKeys };
}

export { rekeySigningKeyFrom };

export interface GcksDaemonOptions {
  /** Reads (and re-reads on reload) the configuration; throws InvalidConfigError. */
  readonly load: () => GcksSetup;
  readonly logger: Logger;
  readonly keylogFile?: string | undefined;
  readonly clock?: Clock;
  readonly rng?: RandomSource;
  /** Replaces the configuration's listen sockets (demo and tests bind port 0). */
  readonly sockets?: readonly SocketSpec[];
  /** Passed to the service (close grace, engine tuning). */
  readonly serviceOptions?: Partial<Pick<GcksServiceDeps, 'closeGraceMs' | 'unusedSaTimeoutMs' | 'engine' | 'retransmit'>>;
  /** Every service event, after it was logged (demo, bench). */
  readonly onEvent?: (event: GcksServiceEvent) => void;
  /**
   * Durable state (`--state DIR`): never-repeating counters and groups
   * survive a restart. Without it everything is in memory.
   */
  readonly state?: { readonly stateDir: string; readonly keyFile?: string | undefined; readonly env?: NodeJS.ProcessEnv } | undefined;
  /**
   * The operator's control socket (`gikev2 ctl`). `required`: failing to
   * open it stops the start; otherwise (the default path, another key
   * server already answering there) it is logged and the daemon runs
   * without one.
   */
  readonly control?: { readonly path: string; readonly required: boolean } | undefined;
}

export type ReloadOutcome =
  | { readonly kind: 'invalid'; readonly error: InvalidConfigError }
  | { readonly kind: 'unchanged' }
  | { readonly kind: 'restart-needed' };

export function socketsOf(config: GcksConfig): SocketSpec[] {
  return config.listen.map((l) => ({ address: l.address, port: l.port, marker: l.nonEspMarker }));
}

function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}

/** Where a multicast group's GSA_REKEY leaves from: the KEK policy's source (address, port or 0 for any). */
export function rekeySourceOf(group: GroupConfig): { readonly address: string; readonly port: number } | undefined {
  if (group.rekey.kind !== 'multicast') return undefined;
  const s = group.rekey.source;
  return { address: s.startAddress, port: s.startPort === s.endPort ? s.startPort : 0 };
}

/**
 * The sockets with what multicast rekeying needs (RFC 9838 Section 2.4.1):
 * the socket each group's GSA_REKEY is sent from (the KEK policy's source)
 * gets the multicast interface (that address), TTL 1 and loopback (members
 * on this host hear it too). A source that is no listen socket gets a send
 * socket of its own; a wildcard source uses the first plain listen socket
 * of its family. Marker sockets (4500) never send GSA_REKEY: the marker
 * would precede the message.
 */
export function withRekeySenders(sockets: readonly SocketSpec[], groups: readonly GroupConfig[]): SocketSpec[] {
  const out: SocketSpec[] = sockets.map((s) => ({ ...s }));
  const sender = (address: string): NonNullable<SocketSpec['multicast']> => ({ ...(isWildcard(address) ? {} : { interface: address }), ttl: 1, loopback: true });
  const configure = (i: number, iface: string): void => {
    const s = out[i]!;
    if (s.multicast === undefined) out[i] = { ...s, multicast: sender(iface) };
  };
  for (const g of groups) {
    const source = rekeySourceOf(g);
    if (!source) continue;
    const family = ipFamily(source.address);
    if (isWildcard(source.address)) {
      const i = out.findIndex((s) => !s.marker && ipFamily(s.address) === family && !s.multicast?.join?.length);
      if (i >= 0) configure(i, out[i]!.address);
      else out.push({ address: source.address, port: 0, marker: false, multicast: sender(source.address) });
      continue;
    }
    const exact = out.findIndex((s) => !s.marker && s.address === source.address && (source.port === 0 || s.port === source.port));
    if (exact >= 0) {
      configure(exact, source.address);
      continue;
    }
    const wild = source.port === 0 ? -1 : out.findIndex((s) => !s.marker && isWildcard(s.address) && ipFamily(s.address) === family && s.port === source.port);
    if (wild >= 0) configure(wild, source.address);
    else out.push({ address: source.address, port: source.port, marker: false, multicast: sender(source.address) });
  }
  return out;
}

/** A group's policy as comparable text (the signing key file is rotated separately, not by a policy change). */
function policyText(g: GroupConfig): string {
  const rekey = g.rekey.kind === 'multicast' ? { ...g.rekey, signingKeyFile: undefined } : g.rekey;
  return JSON.stringify({ ...g, rekey }, (_k, v: unknown) => (v instanceof RegExp ? v.source : v instanceof Map ? [...v] : v instanceof Set ? [...v] : v));
}

export class GcksDaemon {
  /** The group policies the service runs with (changed by reload-policy), by group name. */
  private readonly policies = new Map<string, GroupConfig>();
  private control: ControlServer | undefined;
  private readonly clock: Clock;
  private readonly startedAt = Date.now();

  private constructor(
    private readonly host: ServiceHost<GcksServiceEvent>,
    readonly service: GcksService,
    private setup: GcksSetup,
    private readonly options: GcksDaemonOptions,
    private readonly log: Logger,
    private readonly state: GcksStateHandle | undefined,
  ) {
    this.clock = options.clock ?? monotonicClock;
    for (const g of setup.config.groups) this.policies.set(g.name, g);
  }

  /**
   * Loads the configuration, builds the service and binds its sockets.
   * Throws InvalidConfigError for configuration and file problems (the
   * caller prints them and exits 1) and socket errors as they are.
   */
  static async start(options: GcksDaemonOptions): Promise<GcksDaemon> {
    const setup = options.load();
    const clock = options.clock ?? monotonicClock;
    const log = options.logger.child({ component: 'gcks' });
    const state = options.state === undefined ? undefined : openGcksState({ ...options.state, log });
    let keylog: KeylogFile | undefined;
    let service: GcksService;
    try {
      keylog = options.keylogFile === undefined ? undefined : KeylogFile.open(options.keylogFile);
      service = createService(setup, options, clock, keylog !== undefined, state?.deps ?? {});
    } catch (e) {
      keylog?.close();
      state?.close();
      throw e;
    }
    const hostedLog: HostedLog<GcksServiceEvent> = (event) => logGcksEvent(log, event);
    let host: ServiceHost<GcksServiceEvent>;
    try {
      host = await ServiceHost.open({
        engine: service,
        sockets: withRekeySenders(options.sockets ?? socketsOf(setup.config), setup.config.groups),
        clock,
        log,
        keylog,
        describe: hostedLog,
        onEvent: options.onEvent,
      });
    } catch (e) {
      keylog?.close();
      state?.close();
      throw e;
    }
    const daemon = new GcksDaemon(host, service, setup, options, log, state);
    if (options.control) {
      try {
        await daemon.openControl(options.control.path);
      } catch (e) {
        if (options.control.required || !(e instanceof ControlSocketInUseError)) {
          await daemon.stop(0);
          throw new Error(`control socket ${options.control.path}: ${e instanceof Error ? e.message : String(e)}`);
        }
        log.warn(`no control socket: ${e.message}`, { event: 'control-unavailable', path: options.control.path });
      }
    }
    log.info(`key server ${formatId(setup)} listening on ${host.locals.map(describeLocal).join(', ')}`, {
      event: 'started',
      identity: formatId(setup),
      listen: host.locals.map(describeLocal),
      groups: service.groups().map((g) => ({ name: g.name, id: g.id, rekey: g.rekey, mode: g.mode, capacity: g.capacity })),
      keylog: options.keylogFile ?? null,
      control: daemon.control?.path ?? null,
      state: options.state?.stateDir ?? null,
    });
    for (const g of service.groups()) {
      log.info(
        `group ${g.name} (${g.id}): ${g.rekey === 'multicast' ? `multicast rekey, Rekey SA ${g.rekeySpi ?? '?'}` : 'inband rekey'}, ${g.mode} mode, Data-Security SAs ${g.dataSecuritySpis.map((s) => `0x${s}`).join(', ') || 'none'}`,
        { event: 'group', group: g.name, id: g.id, rekey: g.rekey, mode: g.mode, rekeySpi: g.rekeySpi, dataSecuritySpis: g.dataSecuritySpis },
      );
    }
    return daemon;
  }

  get locals(): readonly LocalEndpoint[] {
    return this.host.locals;
  }

  /** The control socket's path while it is open. */
  get controlPath(): string | undefined {
    return this.control?.path;
  }

  get config(): GcksConfig {
    return this.setup.config;
  }

  /** Key log lines written so far. */
  get keylogLines(): number {
    return this.host.keylogLines;
  }

  /** The UDP adapter's counters (messages, errors, engine exceptions). */
  get counters(): ServiceHost<GcksServiceEvent>['counters'] {
    return this.host.counters;
  }

  /**
   * Re-reads the configuration. Invalid: logged field by field, nothing
   * changes. Valid and different: logged as needing a restart (see the
   * module comment for why a live swap would be wrong).
   */
  reload(): ReloadOutcome {
    const next = loadForReload(() => this.options.load(), this.log);
    if (next instanceof InvalidConfigError) return { kind: 'invalid', error: next };
    if (sameSetup(next, this.setup)) {
      this.log.info('configuration reloaded: no changes', { event: 'reload-unchanged' });
      return { kind: 'unchanged' };
    }
    this.log.warn(
      'configuration file is valid but SIGHUP does not apply changes to a running key server: `gikev2 ctl reload-policy` applies changed group policies; anything else needs a restart',
      { event: 'reload-needs-restart' },
    );
    return { kind: 'restart-needed' };
  }

  /** Closes the control socket and the IKE SAs (waiting up to `graceMs` for the Deletes to be answered), then the sockets and the state. */
  async stop(graceMs = 1000): Promise<void> {
    await this.control?.close();
    this.control = undefined;
    await this.host.stop((now) => this.service.closeAll(now), () => this.service.ikeSas().length === 0, graceMs);
    this.state?.close();
  }

  private async openControl(path: string): Promise<void> {
    this.control = await ControlServer.open({ path, log: this.log, handler: (request) => this.handleControl(request) });
    this.log.info(`control socket ${path}`, { event: 'control-listening', path });
  }

  // ------------------------------------------------------------------ operator requests (gikev2 ctl)

  /** Answers one control request; throws ControlError for requests it refuses. Results never hold keys. */
  async handleControl(request: ControlRequest): Promise<JsonValue> {
    switch (request.command) {
      case 'status':
        return this.status();
      case 'members': {
        const group = this.groupName(request.group);
        return {
          group,
          members: this.service.members(group).map((m) => ({
            member: m.member,
            sender: m.sender,
            senderIds: [...m.senderIds],
            registeredAt: this.wallTime(m.registeredAt),
          })),
        };
      }
      case 'rekey': {
        const group = this.groupName(request.group);
        this.operator(`rekey ${request.kind} of group ${group}`, { command: 'rekey', group, kind: request.kind }, (now) =>
          this.service.rekeyGroup(group, request.kind, now),
        );
        return this.groupStatus(group);
      }
      case 'exclude': {
        const group = this.groupName(request.group);
        this.operator(`exclude ${request.member} from group ${group}${request.readmit ? ' (may register again)' : ''}`, { command: 'exclude', group, member: request.member, readmit: request.readmit }, (now) =>
          this.service.excludeMember(group, request.member, now, { readmit: request.readmit }),
        );
        return { ...this.groupStatus(group), excluded: request.member, barred: !request.readmit };
      }
      case 'readmit': {
        const group = this.groupName(request.group);
        const wasBarred = this.service.readmitMember(group, request.member);
        this.log.info(`operator: ${request.member} may register to group ${group} again${wasBarred ? '' : ' (it was not barred)'}`, {
          event: 'operator',
          command: 'readmit',
          group,
          member: request.member,
          wasBarred,
        });
        return { group, member: request.member, wasBarred };
      }
      case 'rotate-signing-key': {
        const group = this.groupName(request.group);
        let key: RekeySigningKey;
        try {
          key = loadRekeySigningKey(readFileSync(request.keyFile));
        } catch (e) {
          throw new ControlError(`cannot use ${request.keyFile} as a rekey signing key: ${e instanceof Error ? e.message : String(e)}`);
        }
        this.operator(`new rekey signing key for group ${group} from ${request.keyFile}`, { command: 'rotate-signing-key', group, keyFile: request.keyFile }, (now) =>
          this.service.rotateSigningKey(group, key, now),
        );
        return this.groupStatus(group);
      }
      case 'reload-policy':
        return this.reloadPolicy();
    }
  }

  /**
   * Re-reads the configuration and applies changed group policies with
   * changePolicy (new KEK and TEKs under it, or everyone re-registers when
   * members cannot follow). Added or removed groups, sockets, credentials
   * and signing key files are not applied (listed in `notApplied`).
   */
  async reloadPolicy(): Promise<JsonValue> {
    let next: GcksSetup;
    try {
      next = this.options.load();
    } catch (e) {
      if (!(e instanceof InvalidConfigError)) throw e;
      const errors = configErrorFields(e);
      this.log.error(`policy reload refused: ${errors.length} error(s); nothing changed`, { event: 'reload-failed', source: e.source, errors });
      throw new ControlError(`the configuration has errors, nothing changed:\n${errors.map((x) => `  ${x.field}: ${x.reason}`).join('\n')}`);
    }
    const changed: string[] = [];
    const unchanged: string[] = [];
    const notApplied: string[] = [];
    const failed: { group: string; error: string }[] = [];
    for (const g of next.config.groups) {
      const running = this.policies.get(g.name);
      if (!running) {
        notApplied.push(`group ${g.name} is new: a restart adds it`);
        continue;
      }
      if (running.rekey.kind === 'multicast' && g.rekey.kind === 'multicast' && running.rekey.signingKeyFile !== g.rekey.signingKeyFile) {
        notApplied.push(`group ${g.name}: a new signing key is introduced with \`gikev2 ctl rotate-signing-key\``);
      }
      if (policyText(running) === policyText(g)) {
        unchanged.push(g.name);
        continue;
      }
      try {
        await this.ensureRekeySender(g);
        this.operator(`policy of group ${g.name} changed`, { command: 'reload-policy', group: g.name }, (now) => this.service.changePolicy(g, now));
        this.policies.set(g.name, g);
        changed.push(g.name);
      } catch (e) {
        failed.push({ group: g.name, error: e instanceof Error ? e.message : String(e) });
      }
    }
    for (const name of this.policies.keys()) {
      if (!next.config.groups.some((g) => g.name === name)) notApplied.push(`group ${name} was removed: a restart removes it`);
    }
    const rest = (s: GcksSetup): string => JSON.stringify({ identity: s.config.identity, listen: s.config.listen, credentials: s.config.credentials, ike: s.config.ike });
    if (rest(next) !== rest(this.setup)) notApplied.push('identity, listen sockets, credentials or IKE settings changed: a restart applies them');
    this.log.info(`policy reload: ${changed.length ? `changed ${changed.join(', ')}` : 'no group policy changed'}${failed.length ? `; failed ${failed.map((f) => f.group).join(', ')}` : ''}`, {
      event: 'policy-reloaded',
      changed,
      unchanged,
      notApplied,
      failed,
    });
    return { changed, unchanged, notApplied, failed };
  }

  /** A source address added by a policy change gets its send socket. */
  private async ensureRekeySender(g: GroupConfig): Promise<void> {
    const source = rekeySourceOf(g);
    if (!source || isWildcard(source.address)) return;
    if (this.host.locals.some((l) => l.address === source.address || (isWildcard(l.address) && ipFamily(l.address) === ipFamily(source.address)))) return;
    const [spec] = withRekeySenders([], [g]);
    if (spec) await this.host.addSocket(spec);
  }

  /** Runs an operator action on the service; what it throws becomes the request's error. */
  private operator(words: string, fields: Readonly<Record<string, unknown>>, call: (now: number) => Output<GcksServiceEvent>): void {
    let failure: unknown;
    let ran = false;
    this.host.act((now) => {
      ran = true;
      try {
        return call(now);
      } catch (e) {
        failure = e;
        return EMPTY_OUTPUT;
      }
    });
    if (!ran) throw new ControlError('the key server is stopping');
    if (failure !== undefined) {
      const message = failure instanceof Error ? failure.message : String(failure);
      this.log.warn(`operator: ${words} refused: ${message}`, { event: 'operator-refused', ...fields, reason: message });
      if (failure instanceof GcksOperatorError || failure instanceof RekeyPlannerError) throw new ControlError(message);
      throw failure;
    }
    this.log.info(`operator: ${words}`, { event: 'operator', ...fields });
  }

  /** The configured name of a group given by name or IDg text; ControlError when there is none. */
  private groupName(nameOrId: string): string {
    const g = this.service.groups().find((x) => x.name === nameOrId) ?? this.service.groups().find((x) => x.id === nameOrId);
    if (!g) throw new ControlError(`no group ${nameOrId} (groups: ${this.service.groups().map((x) => x.name).join(', ') || 'none'})`);
    return g.name;
  }

  /** A time on the service clock as ISO wall time. */
  private wallTime(t: number): string {
    return new Date(Date.now() + (t - this.clock.now())).toISOString();
  }

  private groupStatus(name: string): { [key: string]: JsonValue } {
    const g = this.service.groups().find((x) => x.name === name);
    if (!g) throw new ControlError(`no group ${name}`);
    const due = this.service.planner(name)?.nextDeadline();
    return {
      name: g.name,
      id: g.id,
      rekey: g.rekey,
      mode: g.mode,
      members: g.members,
      capacity: g.capacity,
      rekeySpi: g.rekeySpi ?? null,
      dataSecuritySpis: [...g.dataSecuritySpis],
      nextRekeyAt: due === undefined ? null : this.wallTime(due),
      nextRekeyInSeconds: due === undefined ? null : Math.max(0, Math.round((due - this.clock.now()) / 1000)),
    };
  }

  private status(): JsonValue {
    return {
      identity: formatId(this.setup),
      pid: process.pid,
      startedAt: new Date(this.startedAt).toISOString(),
      listen: this.host.locals.map(describeLocal),
      state: this.options.state?.stateDir ?? null,
      ikeSas: this.service.ikeSas().length,
      groups: this.service.groups().map((g) => this.groupStatus(g.name)),
    };
  }
}

function createService(setup: GcksSetup, options: GcksDaemonOptions, clock: Clock, keylog: boolean, stateDeps: Partial<GcksServiceDeps>): GcksService {
  const files = new CredentialFiles(setup.config.source);
  const service = files.check('credentials', () => {
    const deps: GcksServiceDeps = {
      ...stateDeps,
      ...options.serviceOptions,
      rng: options.rng ?? systemRandom,
      certificateTime: () => new Date(),
      keylog,
      now: clock.now(),
      ...(setup.certificate ? { certificate: setup.certificate } : {}),
      trustAnchors: setup.trustAnchors,
      signingKeyFor: (name) => setup.signingKeys.get(name),
    };
    return new GcksService(setup.config, deps);
  });
  files.assertOk();
  return service!;
}

function formatId(setup: GcksSetup): string {
  return formatIdentity(setup.config.identity);
}

export function describeLocal(l: LocalEndpoint): string {
  const a = l.address.includes(':') ? `[${l.address}]` : l.address;
  return `${a}:${l.port}${l.marker ? ' (non-ESP marker)' : ''}`;
}

/** Configuration equality for reload: the text-derived config and the file contents. */
function sameSetup(a: GcksSetup, b: GcksSetup): boolean {
  const norm = (s: GcksSetup): string =>
    JSON.stringify(
      {
        config: { ...s.config, source: '' },
        cert: s.certificate ? { chain: s.certificate.chain, key: s.certificate.privateKey.export({ format: 'der', type: 'pkcs8' }).toString('hex') } : null,
        anchors: s.trustAnchors,
        signing: [...s.signingKeys].map(([k, v]) => [k, v.publicKeySpki.toString('hex')]),
      },
      (_k, v: unknown) => (v instanceof RegExp ? v.source : v instanceof Map ? [...v] : v),
    );
  return norm(a) === norm(b);
}

/** One log line per service event, in words, with the facts as fields. Never keys. */
export function logGcksEvent(log: Logger, e: GcksServiceEvent): void {
  switch (e.type) {
    case 'member-registered': {
      const sas = [e.rekeySpi ? `Rekey SA 0x${e.rekeySpi}` : undefined, ...e.dataSecuritySpis.map((s) => `Data-Security SA 0x${s}`)].filter(Boolean);
      log.info(
        `${e.member} ${e.reregistration ? 're-registered' : 'joined'} group ${e.group} as ${e.sender ? 'sender' : 'receiver'} via ${e.exchange}` +
          `${sas.length ? `: ${sas.join(', ')}` : ''}${e.senderIds.length ? `; Sender-IDs ${e.senderIds.join(', ')}` : ''}`,
        {
          event: 'member-registered',
          group: e.group,
          member: e.member,
          exchange: e.exchange,
          rule: e.rule,
          sender: e.sender,
          senderIds: e.senderIds,
          reregistration: e.reregistration,
          rekeySpi: e.rekeySpi,
          dataSecuritySpis: e.dataSecuritySpis,
          saId: e.saId,
        },
      );
      return;
    }
    case 'registration-rejected':
      log.warn(`${e.member} refused${e.group ? ` for group ${e.group}` : ''}: ${e.notify} (${e.reason})`, {
        event: 'registration-rejected',
        group: e.group ?? null,
        member: e.member,
        notify: e.notify,
        reason: e.reason,
        exchange: e.exchange,
        saId: e.saId,
      });
      return;
    case 'member-left':
      log.info(`${e.member} left group ${e.group} (${e.cause === 'member-request' ? `asked with ${e.notify}` : 'its IKE SA closed'})`, {
        event: 'member-left',
        group: e.group,
        member: e.member,
        notify: e.notify,
        cause: e.cause,
        wasMember: e.wasMember,
        saId: e.saId ?? null,
      });
      return;
    case 'sender-ids-exhausted':
      log.warn(`group ${e.group} has used up its Sender-IDs: its members must be excluded and the TEKs replaced`, {
        event: 'sender-ids-exhausted',
        group: e.group,
      });
      return;
    case 'rekey-sent':
    case 'rekey-planned':
    case 'member-excluded':
    case 'inband-rekey-failed':
    case 'all-members-excluded':
    case 'signing-key-rolled-over':
      logRekeyEvent(log, e);
      return;
    default:
      describeEngineEvent(log, e);
  }
}

/** Rekey events carry names, SPIs, Message IDs and sizes only (never keys). */
function logRekeyEvent(log: Logger, e: GcksRekeyEvent): void {
  const fields = { ...e, event: e.type };
  switch (e.type) {
    case 'rekey-sent':
      log.info(`group ${e.group}: ${e.reason} rekey sent (${e.transport}, ${e.octets} octets, ${e.copies} transmission(s))`, fields);
      return;
    case 'member-excluded':
      log.info(`group ${e.group}: ${e.member} excluded (${e.cause})`, fields);
      return;
    case 'inband-rekey-failed':
      log.warn(`group ${e.group}: ${e.member} did not answer GSA_INBAND_REKEY and was removed (${e.reason})`, fields);
      return;
    case 'all-members-excluded':
      log.warn(`group ${e.group}: every member excluded (${e.reason})`, fields);
      return;
    case 'signing-key-rolled-over':
      log.info(`group ${e.group}: rekey signing key rolled over`, fields);
      return;
    case 'rekey-planned': {
      const parts = [
        e.newKek ? `new Rekey SA 0x${e.newKek}` : undefined,
        e.newTeks.length ? `new Data-Security SA${e.newTeks.length === 1 ? '' : 's'} ${e.newTeks.map((s) => `0x${s}`).join(', ')}` : undefined,
        e.deletes.length ? `deleting ${e.deletes.join(', ')}` : undefined,
      ].filter(Boolean);
      log.info(`group ${e.group}: ${e.reason} rekey${e.messageId === undefined ? '' : ` (Message ID ${e.messageId})`}: ${parts.join('; ') || 'no SA changes'}`, fields);
      return;
    }
  }
}
