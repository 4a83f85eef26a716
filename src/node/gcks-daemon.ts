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
 *  - stop(): closes every IKE SA (Delete sent, answers awaited briefly),
 *    the sockets, the key log.
 *
 * Reload (SIGHUP): the new file and its credential files are read and
 * validated first; errors are logged with their field paths and the running
 * configuration stays. A valid new configuration is NOT applied to the
 * running key server: groups, keys and members live in the GcksService and
 * it offers no way to change its configuration in place, and replacing it
 * would hand out new keys to new members while old members keep the old
 * ones. The daemon logs that a restart applies it.
 */
import { systemRandom, type RandomSource } from '../crypto/random.ts';
import { GcksService, type GcksRekeyEvent, type GcksServiceDeps, type GcksServiceEvent } from '../gcks/service.ts';
import { InvalidConfigError, joinField } from '../gcks/config-fields.ts';
import { loadGcksConfig, type GcksConfig } from '../gcks/config.ts';
import { loadRekeySigningKey, rekeySigningKeyFrom, type RekeySigningKey } from '../gcks/signing-key.ts';
import { formatIdentity } from '../ike/identity.ts';
import type { LocalEndpoint } from '../ike/io-types.ts';
import { monotonicClock, type Clock } from './clock.ts';
import { configErrorFields, CredentialFiles, KeylogFile, readConfigText } from './daemon-support.ts';
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
  const c = config.credentials;
  let certificate: GcksSetup['certificate'];
  if (c.certificateFile !== undefined && c.privateKeyFile !== undefined) {
    const chain = files.certificates('credentials.certificate', c.certificateFile);
    const privateKey = files.privateKey('credentials.privateKey', c.privateKeyFile);
    if (chain && privateKey) certificate = { chain, privateKey };
  }
  const trustAnchors = c.trustAnchorFiles.flatMap((f, i) => files.certificates(`credentials.trustAnchors[${i}]`, f) ?? []);
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
}

export type ReloadOutcome =
  | { readonly kind: 'invalid'; readonly error: InvalidConfigError }
  | { readonly kind: 'unchanged' }
  | { readonly kind: 'restart-needed' };

export function socketsOf(config: GcksConfig): SocketSpec[] {
  return config.listen.map((l) => ({ address: l.address, port: l.port, marker: l.nonEspMarker }));
}

export class GcksDaemon {
  private constructor(
    private readonly host: ServiceHost<GcksServiceEvent>,
    readonly service: GcksService,
    private setup: GcksSetup,
    private readonly options: GcksDaemonOptions,
    private readonly log: Logger,
  ) {}

  /**
   * Loads the configuration, builds the service and binds its sockets.
   * Throws InvalidConfigError for configuration and file problems (the
   * caller prints them and exits 1) and socket errors as they are.
   */
  static async start(options: GcksDaemonOptions): Promise<GcksDaemon> {
    const setup = options.load();
    const clock = options.clock ?? monotonicClock;
    const keylog = options.keylogFile === undefined ? undefined : KeylogFile.open(options.keylogFile);
    const log = options.logger.child({ component: 'gcks' });
    let service: GcksService;
    try {
      service = createService(setup, options, clock, keylog !== undefined);
    } catch (e) {
      keylog?.close();
      throw e;
    }
    const hostedLog: HostedLog<GcksServiceEvent> = (event) => logGcksEvent(log, event);
    let host: ServiceHost<GcksServiceEvent>;
    try {
      host = await ServiceHost.open({
        engine: service,
        sockets: options.sockets ?? socketsOf(setup.config),
        clock,
        log,
        keylog,
        describe: hostedLog,
        onEvent: options.onEvent,
      });
    } catch (e) {
      keylog?.close();
      throw e;
    }
    const daemon = new GcksDaemon(host, service, setup, options, log);
    log.info(`key server ${formatId(setup)} listening on ${host.locals.map(describeLocal).join(', ')}`, {
      event: 'started',
      identity: formatId(setup),
      listen: host.locals.map(describeLocal),
      groups: service.groups().map((g) => ({ name: g.name, id: g.id, rekey: g.rekey, mode: g.mode, capacity: g.capacity })),
      keylog: options.keylogFile ?? null,
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
    let next: GcksSetup;
    try {
      next = this.options.load();
    } catch (e) {
      if (!(e instanceof InvalidConfigError)) throw e;
      this.log.error(`configuration reload refused: ${e.errors.length} error(s); still running with the previous configuration`, {
        event: 'reload-failed',
        source: e.source,
        errors: configErrorFields(e),
      });
      return { kind: 'invalid', error: e };
    }
    if (sameSetup(next, this.setup)) {
      this.log.info('configuration reloaded: no changes', { event: 'reload-unchanged' });
      return { kind: 'unchanged' };
    }
    this.log.warn(
      'configuration file is valid but a running key server cannot apply changes (groups, keys and members are in memory): restart the key server to apply it',
      { event: 'reload-needs-restart' },
    );
    return { kind: 'restart-needed' };
  }

  /** Closes the IKE SAs (waiting up to `graceMs` for the Deletes to be answered), then the sockets. */
  async stop(graceMs = 1000): Promise<void> {
    await this.host.stop((now) => this.service.closeAll(now), () => this.service.ikeSas().length === 0, graceMs);
  }
}

function createService(setup: GcksSetup, options: GcksDaemonOptions, clock: Clock, keylog: boolean): GcksService {
  const files = new CredentialFiles(setup.config.source);
  const service = files.check('credentials', () => {
    const deps: GcksServiceDeps = {
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
    default:
      log.debug(`group ${e.group}: ${e.type}`, fields);
  }
}
