/**
 * Structured logging for the daemons: one JSON object per line by default
 * (for log shippers), or a readable single-line form for people at a
 * terminal. Fields whose names suggest secrets are replaced before anything
 * is written, as a second line of defence: code must not pass key material
 * to the logger in the first place (keys leave only through the key log).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Readonly<Record<string, unknown>>;

const LEVELS: Readonly<Record<LogLevel, number>> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (e.g. the component name). */
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  readonly level?: LogLevel;
  readonly format?: 'json' | 'readable';
  readonly write?: (line: string) => void;
  readonly now?: () => Date;
}

const SECRET_LAST_WORD = new Set(['key', 'keys', 'secret', 'secrets', 'psk', 'password', 'passphrase', 'keymat', 'skeyseed']);
const SECRET_ANY_WORD = new Set(['private', 'psk', 'password', 'secret', 'passphrase']);

/**
 * Whether a field name suggests a secret: `psk`, `privateKey`, `sk_ei`,
 * `gskW`, `wrapKey` are; `keyId`, `keyLength`, `spi` are not.
 */
export function isSecretName(name: string): boolean {
  if (/^g?sk_?[a-z]{1,2}$/i.test(name) || /^gsk/i.test(name)) return true;
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .split(/[_\-\s.]+/)
    .filter((w) => w.length > 0);
  const last = words[words.length - 1];
  return (last !== undefined && SECRET_LAST_WORD.has(last)) || words.some((w) => SECRET_ANY_WORD.has(w));
}

export function redact(value: unknown, depth = 0): unknown {
  if (depth > 6) return '[deep]';
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return `[${value.length} octets]`;
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  if (value instanceof Error) return { name: value.name, message: value.message };
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = isSecretName(k) ? '[redacted]' : redact(v, depth + 1);
    }
    return out;
  }
  if (typeof value === 'bigint') return value.toString();
  return value;
}

export function createLogger(opts: LoggerOptions = {}, bound: LogFields = {}): Logger {
  const min = LEVELS[opts.level ?? 'info'];
  const format = opts.format ?? 'json';
  const write = opts.write ?? ((line: string) => void process.stderr.write(line + '\n'));
  const now = opts.now ?? (() => new Date());

  const emit = (level: LogLevel, msg: string, fields: LogFields = {}): void => {
    if (LEVELS[level] < min) return;
    const safe = redact({ ...bound, ...fields }) as Record<string, unknown>;
    const time = now().toISOString();
    if (format === 'json') {
      write(JSON.stringify({ time, level, msg, ...safe }));
      return;
    }
    const extras = Object.entries(safe)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    write(`${time} ${level.toUpperCase().padEnd(5)} ${msg}${extras ? '  ' + extras : ''}`);
  };

  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger(opts, { ...bound, ...fields }),
  };
}

/** A logger that drops everything (library default). */
export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};
