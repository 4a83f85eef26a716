/**
 * What both daemons (key server and group member) need from the operating
 * system: reading the configuration file and the credential files it names,
 * the key log file, the log sink, and signals. Everything here is I/O; the
 * services themselves stay sans-I/O.
 *
 * Errors about files are reported as ConfigErrors naming the configuration
 * field that named the file, so a missing certificate reads like any other
 * configuration mistake ("credentials.certificate: cannot read ...").
 */
import { closeSync, constants as fsConstants, fchmodSync, openSync, readFileSync, writeSync } from 'node:fs';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { dirname, isAbsolute, resolve } from 'node:path';
import { ConfigError, InvalidConfigError } from '../gcks/config-fields.ts';
import { createLogger, type LogFields, type Logger, type LogLevel } from './log.ts';

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
export const LOG_FORMATS = ['json', 'readable'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** A file named by the configuration resolves against the configuration file's folder. */
export function resolveConfigPath(configFile: string, file: string): string {
  return isAbsolute(file) ? file : resolve(dirname(resolve(configFile)), file);
}

/** Reads the configuration file as text; unreadable files are one ConfigError at the document. */
export function readConfigText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new InvalidConfigError(file, [new ConfigError('', `cannot read the file (${errorCode(e)})`)]);
  }
}

function errorCode(e: unknown): string {
  if (e !== null && typeof e === 'object' && 'code' in e && typeof e.code === 'string') return e.code;
  return e instanceof Error ? e.message : String(e);
}

/**
 * Reads the files a configuration names, collecting every failure as a
 * ConfigError (field path + reason) so that all of them are reported at once.
 */
export class CredentialFiles {
  readonly errors: ConfigError[] = [];

  constructor(private readonly configFile: string) {}

  /** The raw octets of `file`, or undefined after recording why not. */
  read(field: string, file: string): Buffer | undefined {
    const path = resolveConfigPath(this.configFile, file);
    try {
      return readFileSync(path);
    } catch (e) {
      this.errors.push(new ConfigError(field, `cannot read ${path} (${errorCode(e)})`));
      return undefined;
    }
  }

  /** Every PEM CERTIFICATE block of `file` (a chain: end entity first), at least one. */
  certificates(field: string, file: string): string[] | undefined {
    const data = this.read(field, file);
    if (!data) return undefined;
    const blocks = splitPemCertificates(data.toString('latin1'));
    if (blocks.length === 0) {
      // DER: one certificate. Parsing it is the engine's job; give the octets as PEM.
      if (data.length > 0 && data[0] === 0x30) return [derToPemCertificate(data)];
      this.errors.push(new ConfigError(field, `${file} holds no PEM CERTIFICATE block`));
      return undefined;
    }
    return blocks;
  }

  /** A PEM or DER private key. */
  privateKey(field: string, file: string): KeyObject | undefined {
    const data = this.read(field, file);
    if (!data) return undefined;
    try {
      return createPrivateKey(data.toString('latin1').includes('-----BEGIN') ? data : { key: data, format: 'der', type: 'pkcs8' });
    } catch {
      this.errors.push(new ConfigError(field, `${file} is not a PEM or PKCS#8 DER private key (encrypted keys are not supported)`));
      return undefined;
    }
  }

  /** Runs `check` and records what it throws as an error at `field`. */
  check<T>(field: string, check: () => T): T | undefined {
    try {
      return check();
    } catch (e) {
      this.errors.push(new ConfigError(field, e instanceof Error ? e.message : String(e)));
      return undefined;
    }
  }

  /** Throws InvalidConfigError if anything failed. */
  assertOk(): void {
    if (this.errors.length > 0) throw new InvalidConfigError(this.configFile, this.errors);
  }
}

/** The certificate file names both daemons' configurations share. */
export interface CertificateFileNames {
  readonly certificateFile?: string | undefined;
  readonly privateKeyFile?: string | undefined;
  readonly trustAnchorFiles: readonly string[];
}

/**
 * Reads our certificate chain, its private key and the trust anchors named
 * in `credentials`, recording every problem in `files` under its field.
 */
export function loadCertificateFiles(
  files: CredentialFiles,
  c: CertificateFileNames,
): { certificate?: { chain: string[]; privateKey: KeyObject }; trustAnchors: string[] } {
  let certificate: { chain: string[]; privateKey: KeyObject } | undefined;
  if (c.certificateFile !== undefined && c.privateKeyFile !== undefined) {
    const chain = files.certificates('credentials.certificate', c.certificateFile);
    const privateKey = files.privateKey('credentials.privateKey', c.privateKeyFile);
    if (chain && privateKey) certificate = { chain, privateKey };
  }
  const trustAnchors = c.trustAnchorFiles.flatMap((f, i) => files.certificates(`credentials.trustAnchors[${i}]`, f) ?? []);
  return { ...(certificate ? { certificate } : {}), trustAnchors };
}

export function splitPemCertificates(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

function derToPemCertificate(der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
}

/** Every problem of an InvalidConfigError, one "path: reason" line each. */
export function formatConfigErrors(e: InvalidConfigError): string {
  const lines = e.errors.map((x) => `  ${x.path || '<document>'}: ${x.reason}`);
  return `${e.source}: ${e.errors.length} configuration error${e.errors.length === 1 ? '' : 's'}\n${lines.join('\n')}\n`;
}

/** The errors as log fields: [{field, reason}]. */
export function configErrorFields(e: InvalidConfigError): { field: string; reason: string }[] {
  return e.errors.map((x) => ({ field: x.path || '<document>', reason: x.reason }));
}

/**
 * The key log: Wireshark decryption-table lines, appended to a file that
 * only the owner can read (0600, also when it existed with a wider mode).
 * Lines are written synchronously so that a line is on disk before the
 * exchange it decrypts can be captured, and nothing is lost at shutdown.
 */
export class KeylogFile {
  private fd: number | undefined;
  private count = 0;

  private constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
  }

  static open(path: string): KeylogFile {
    const fd = openSync(path, fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT, 0o600);
    try {
      fchmodSync(fd, 0o600);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    return new KeylogFile(path, fd);
  }

  /** Lines written so far. */
  get lines(): number {
    return this.count;
  }

  write(line: string): void {
    if (this.fd === undefined) return;
    writeSync(this.fd, line.endsWith('\n') ? line : `${line}\n`);
    this.count++;
  }

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}

export interface LogSink {
  readonly logger: Logger;
  /** Resolves when what was written has been handed to the OS. */
  flush(): Promise<void>;
}

/** The daemon log on `stream` (stdout by default): JSON lines or readable lines. */
export function createLogSink(
  opts: { readonly format: LogFormat; readonly level: LogLevel },
  stream: NodeJS.WritableStream = process.stdout,
): LogSink {
  const logger = withoutUndefinedFields(createLogger({ format: opts.format, level: opts.level, write: (line) => void stream.write(line + '\n') }));
  return {
    logger,
    flush: () =>
      new Promise<void>((done) => {
        // An empty write's callback runs after everything queued before it.
        if (!stream.write('', () => done())) stream.once('drain', () => done());
      }),
  };
}

export type SignalAction = 'stop' | 'reload';

/**
 * SIGTERM and SIGINT ask to stop, SIGHUP to reload. Returns the function that
 * removes the handlers again. A second stop signal while stopping is passed
 * on to `onSignal` too (the caller may decide to exit at once).
 */
export function handleSignals(onSignal: (action: SignalAction, signal: NodeJS.Signals) => void): () => void {
  const handlers: [NodeJS.Signals, () => void][] = [
    ['SIGTERM', () => onSignal('stop', 'SIGTERM')],
    ['SIGINT', () => onSignal('stop', 'SIGINT')],
    ['SIGHUP', () => onSignal('reload', 'SIGHUP')],
  ];
  for (const [sig, h] of handlers) process.on(sig, h);
  return () => {
    for (const [sig, h] of handlers) process.off(sig, h);
  };
}

export interface StoppableDaemon {
  reload(): unknown;
  stop(): Promise<void>;
}

/**
 * Serves signals until SIGTERM or SIGINT: SIGHUP calls `reload` (which logs
 * its own outcome); a stop signal stops the daemon and resolves. Errors
 * thrown by reload are logged, never fatal.
 */
export function serveUntilStopped(daemon: StoppableDaemon, log: Logger): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let stopping = false;
    let reloading = Promise.resolve();
    const uninstall = handleSignals((action, signal) => {
      if (action === 'reload') {
        if (stopping) return;
        log.info(`${signal}: reloading the configuration`, { event: 'reload', signal });
        reloading = reloading.then(async () => {
          try {
            await daemon.reload();
          } catch (e) {
            log.error('configuration reload failed', { event: 'reload-failed', error: e });
          }
        });
        return;
      }
      if (stopping) {
        log.warn(`${signal}: already stopping`, { event: 'stopping', signal });
        return;
      }
      stopping = true;
      log.info(`${signal}: stopping`, { event: 'stopping', signal });
      void reloading
        .then(() => daemon.stop())
        .catch((e: unknown) => log.error('error while stopping', { event: 'internal-error', error: e }))
        .finally(() => {
          uninstall();
          log.info('stopped', { event: 'stopped' });
          resolve(signal);
        });
    });
  });
}

/** A logger that leaves out fields whose value is undefined (readable lines would print "x=undefined"). */
export function withoutUndefinedFields(log: Logger): Logger {
  const clean = (f: LogFields | undefined): LogFields | undefined =>
    f === undefined ? undefined : Object.fromEntries(Object.entries(f).filter(([, v]) => v !== undefined));
  return {
    debug: (m, f) => log.debug(m, clean(f)),
    info: (m, f) => log.info(m, clean(f)),
    warn: (m, f) => log.warn(m, clean(f)),
    error: (m, f) => log.error(m, clean(f)),
    child: (f) => withoutUndefinedFields(log.child(f)),
  };
}

/**
 * Loads a configuration for a reload: the new setup, or the InvalidConfigError
 * after logging it field by field (the daemon keeps its running configuration).
 */
export function loadForReload<T>(load: () => T, log: Logger): T | InvalidConfigError {
  try {
    return load();
  } catch (e) {
    if (!(e instanceof InvalidConfigError)) throw e;
    log.error(`configuration reload refused: ${e.errors.length} error(s); still running with the previous configuration`, {
      event: 'reload-failed',
      source: e.source,
      errors: configErrorFields(e),
    });
    return e;
  }
}
