/**
 * `gikev2 state`: the key server's state directory from the command line.
 *
 *   init-key FILE                      a new key-encryption key (32 random octets, hex, mode 0600)
 *   export --state DIR [-o FILE]       a backup (JSONL; key material stays sealed under the KEK)
 *   import --state DIR FILE [--force]  restore a backup into an empty directory (--force: move the old one aside)
 *
 * State errors print what is wrong and how to recover, and exit with the
 * error's own code (sysexits: 65 bad data, 66 unreadable, 73 target not
 * empty, 75 locked, 78 key configuration); never a stack trace.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { exportState, exportStateToFile, importStateFromFile } from '../store/backup.ts';
import { KEK_ENV_VARIABLE, loadKek } from '../store/encryption.ts';
import { StateError } from '../store/errors.ts';
import { EXIT_FAILED, EXIT_OK, UsageError, type CliIo, type Command } from './command.ts';

const USAGE = `usage: gikev2 state init-key FILE
       gikev2 state export --state DIR [-o FILE]
       gikev2 state import --state DIR FILE [--force] [--state-key-file FILE]

The key server keeps its state (groups, SAs, members, the key tree, counters
that must never repeat, the audit log) in DIR/gcks.db (\`gikev2 gcks --state
DIR\`). Key material in it is encrypted under a key-encryption key that is
never stored beside the data: give it with --state-key-file FILE or the
environment variable ${KEK_ENV_VARIABLE} (64 hex digits).

  init-key FILE    write a new random key-encryption key to FILE (mode 0600;
                   refuses to overwrite); keep it outside the state directory
  export           write a backup of DIR to FILE (default: standard output);
                   key material stays encrypted, so no key is needed
  import           restore a backup into DIR, which must be empty unless
                   --force (the old database is moved aside, not deleted);
                   with a key (--state-key-file or ${KEK_ENV_VARIABLE}) the
                   backup is checked to be sealed under it

options:
  --state DIR            the state directory
  -o, --output FILE      export: where to write (mode 0600)
  --force                import: replace existing state
  --state-key-file FILE  import: check the backup against this key
  -h, --help             this text

exit status: 0 done, 2 usage error, otherwise the state error's code
(65 bad or foreign data, 66 unreadable, 73 import target not empty,
75 locked by a running key server, 78 key-encryption key problem)`;

function parse(argv: readonly string[]): { values: { state?: string; output?: string; force?: boolean; 'state-key-file'?: string; help?: boolean }; positionals: string[] } {
  try {
    return parseArgs({
      args: [...argv],
      options: {
        state: { type: 'string' },
        output: { type: 'string', short: 'o' },
        force: { type: 'boolean' },
        'state-key-file': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: true,
    });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

/** A StateError for people: the message, the way out, and its exit code. */
export function reportStateError(e: StateError, io: CliIo, prefix = 'gikev2 state'): number {
  io.err(`${prefix}: ${e.message}\n  To recover: ${e.recovery}\n`);
  return e.exitCode;
}

function initKey(file: string, io: CliIo): number {
  if (existsSync(file)) {
    io.err(`gikev2 state init-key: ${file} exists; a key-encryption key is never overwritten (the state written under it would be lost)\n`);
    return EXIT_FAILED;
  }
  const key = randomBytes(32);
  const fd = openSync(file, 'wx', 0o600);
  try {
    writeSync(fd, `${key.toString('hex')}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
    key.fill(0);
  }
  io.out(`wrote a new state key-encryption key to ${file} (mode 0600); start the key server with --state-key-file ${file}\n`);
  return EXIT_OK;
}

async function runState(argv: readonly string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    (sub === undefined ? io.err : io.out)(`${USAGE}\n`);
    return sub === undefined ? 2 : EXIT_OK;
  }
  const { values, positionals } = parse(rest);
  if (values.help) {
    io.out(`${USAGE}\n`);
    return EXIT_OK;
  }
  switch (sub) {
    case 'init-key': {
      if (positionals.length !== 1) throw new UsageError('init-key takes one FILE');
      return initKey(positionals[0]!, io);
    }
    case 'export': {
      if (values.state === undefined) throw new UsageError('export needs --state DIR');
      if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
      if (values.output !== undefined) {
        const summary = exportStateToFile(values.state, values.output);
        io.err(`exported ${summary.rows} row(s) at schema version ${summary.schemaVersion} to ${values.output} (sha256 ${summary.sha256})\n`);
      } else {
        const lines: string[] = [];
        exportState(values.state, (line) => lines.push(line));
        io.out(`${lines.join('\n')}\n`);
      }
      return EXIT_OK;
    }
    case 'import': {
      if (values.state === undefined) throw new UsageError('import needs --state DIR');
      if (positionals.length !== 1) throw new UsageError('import takes one backup FILE');
      const kek = loadKek({ keyFile: values['state-key-file'], stateDir: values.state })?.kek;
      const summary = importStateFromFile(values.state, positionals[0]!, { force: values.force === true, kek });
      io.out(
        `imported ${summary.rows} row(s) into ${values.state} (schema ${summary.fromSchemaVersion}${summary.fromSchemaVersion === summary.schemaVersion ? '' : ` migrated to ${summary.schemaVersion}`})` +
          `${summary.replaced ? `; the previous database was moved to ${summary.replaced}` : ''}\n`,
      );
      return EXIT_OK;
    }
    default:
      throw new UsageError(`unknown state command "${sub}"`);
  }
}

export const stateCommand: Command = {
  summary: 'key server state: init-key, export (backup), import (restore)',
  usage: USAGE,
  run: async (argv, io) => {
    try {
      return await runState(argv, io);
    } catch (e) {
      if (e instanceof StateError) return reportStateError(e, io);
      throw e;
    }
  },
};
