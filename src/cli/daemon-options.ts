/**
 * Options shared by `gikev2 gcks` and `gikev2 gm`: the configuration file,
 * the key log, and the log format and level.
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
}

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

export function parseDaemonOptions(argv: readonly string[]): DaemonCliOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        config: { type: 'string', short: 'c' },
        keylog: { type: 'string' },
        'log-format': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
      strict: true,
    });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  const v = parsed.values;
  if (v.help) return { help: true, configFile: '', logFormat: 'json', logLevel: 'info' };
  if (v.config === undefined || v.config === '') throw new UsageError('-c/--config FILE is required');
  return {
    help: false,
    configFile: v.config,
    keylogFile: v.keylog,
    logFormat: oneOf('--log-format', v['log-format'] ?? 'json', LOG_FORMATS),
    logLevel: oneOf('--log-level', v['log-level'] ?? 'info', LOG_LEVELS),
  };
}

function oneOf<T extends string>(option: string, value: string, choices: readonly T[]): T {
  const hit = choices.find((c) => c === value.toLowerCase());
  if (hit === undefined) throw new UsageError(`${option} must be one of ${choices.join(', ')}, got "${value}"`);
  return hit;
}
