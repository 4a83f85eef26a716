/**
 * Options shared by `gikev2 gcks` and `gikev2 gm`: the configuration file,
 * the key log, and the log format and level; the key server's own options:
 * its state directory and control socket.
 */
import { parseArgs } from 'node:util';
import type { LogLevel } from '../node/log.ts';
import { LOG_FORMATS, LOG_LEVELS, type LogFormat } from '../node/daemon-support.ts';
import { UsageError } from './command.ts';

export interface DaemonCliOptions {
  readonly help: boolean;
  readonly configFile: string;
  readonly keylogFile?: string | undefined;
  readonly logFormat: LogFormat;
  readonly logLevel: LogLevel;
  /** gcks: durable state directory. */
  readonly stateDir?: string | undefined;
  /** gcks: the state's key-encryption key file (else GIKEV2_STATE_KEY). */
  readonly stateKeyFile?: string | undefined;
  /** gcks: the control socket path, when given explicitly. */
  readonly controlSocket?: string | undefined;
  /** gm: keep Linux XFRM in step with the SA table, or only log the commands. */
  readonly xfrm?: 'apply' | 'dry-run' | undefined;
}

export const GM_OPTIONS_USAGE = `member options:
  --xfrm                   install the group SAs as Linux XFRM states and
                           policies (needs CAP_NET_ADMIN and the kernel's ESP
                           support) and remove them on rekey, exclusion and stop
  --xfrm-dry-run           only log the \`ip xfrm\` commands it would run (keys
                           masked)`;

export const GCKS_OPTIONS_USAGE = `key server options:
  --state DIR              keep the key server's state (groups, keys, never-
                           repeating counters) in DIR so that a restart goes on
                           where it stopped; default: in memory only
  --state-key-file FILE    the key that encrypts the state (32 octets, hex or
                           base64); default: the GIKEV2_STATE_KEY environment
                           variable
  --control PATH           the control socket for \`gikev2 ctl\` (mode 0600);
                           default gikev2-gcks.sock in the state directory, else
                           in $XDG_RUNTIME_DIR (/run for root, else the
                           temporary directory)
  a state directory that cannot be trusted stops the start with advice and a
  sysexits code: 65 damaged, 66 unreadable, 75 locked, 78 key missing or wrong`;

export const DAEMON_OPTIONS_USAGE = `options:
  -c, --config FILE        the YAML configuration (required); files it names
                           are found relative to its folder
  --keylog FILE            append Wireshark IKEv2 decryption-table lines (one
                           per IKE SA) to FILE, created with mode 0600; this
                           is the only way keys leave the process: off by default
  --log-format json|readable
                           JSON lines (default, for log shippers) or one
                           readable line per event
  --log-level debug|info|warn|error
                           least important level logged (default info)
  -h, --help               this text

signals: SIGTERM/SIGINT stop cleanly (exit 0), SIGHUP reloads the configuration
(validated first; on errors the running configuration stays and the errors
are logged)

exit status: 0 stopped by a signal, 1 bad configuration or files, 2 usage error`;

const COMMON_OPTIONS = {
  config: { type: 'string', short: 'c' },
  keylog: { type: 'string' },
  'log-format': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const GCKS_OPTIONS = {
  ...COMMON_OPTIONS,
  state: { type: 'string' },
  'state-key-file': { type: 'string' },
  control: { type: 'string' },
  xfrm: { type: 'boolean' },
  'xfrm-dry-run': { type: 'boolean' },
} as const;

/** `daemon`: 'gcks' accepts the key server's options too. */
export function parseDaemonOptions(argv: readonly string[], daemon: 'gcks' | 'gm' = 'gm'): DaemonCliOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      // The gm parser is given the same shape; it rejects the gcks-only options below.
      options: GCKS_OPTIONS,
      allowPositionals: false,
      strict: true,
    });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  const v = parsed.values;
  if (daemon !== 'gcks') {
    const gcksOnly = (['state', 'state-key-file', 'control'] as const).find((k) => v[k] !== undefined);
    if (gcksOnly) throw new UsageError(`Unknown option '--${gcksOnly}'`);
  } else {
    const gmOnly = (['xfrm', 'xfrm-dry-run'] as const).find((k) => v[k] !== undefined);
    if (gmOnly) throw new UsageError(`Unknown option '--${gmOnly}'`);
  }
  if (v.help) return { help: true, configFile: '', logFormat: 'json', logLevel: 'info' };
  if (v.config === undefined || v.config === '') throw new UsageError('-c/--config FILE is required');
  for (const k of ['state', 'state-key-file', 'control'] as const) {
    if (v[k] === '') throw new UsageError(`--${k} needs a value`);
  }
  if (v['state-key-file'] !== undefined && v.state === undefined) throw new UsageError('--state-key-file needs --state DIR');
  return {
    help: false,
    configFile: v.config,
    keylogFile: v.keylog,
    logFormat: oneOf('--log-format', v['log-format'] ?? 'json', LOG_FORMATS),
    logLevel: oneOf('--log-level', v['log-level'] ?? 'info', LOG_LEVELS),
    stateDir: v.state,
    stateKeyFile: v['state-key-file'],
    controlSocket: v.control,
    xfrm: v['xfrm-dry-run'] ? 'dry-run' : v.xfrm ? 'apply' : undefined,
  };
}

function oneOf<T extends string>(option: string, value: string, choices: readonly T[]): T {
  const hit = choices.find((c) => c === value.toLowerCase());
  if (hit === undefined) throw new UsageError(`${option} must be one of ${choices.join(', ')}, got "${value}"`);
  return hit;
}
