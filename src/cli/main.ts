import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ctlCommand } from './ctl.ts';
import { decodeCommand } from './decode.ts';
import { gcksCommand, gmCommand } from './daemons.ts';
import { demoCommand } from './demo.ts';
import { stateCommand } from './state.ts';
import { EXIT_OK, EXIT_USAGE, UsageError, type CliIo, type Command } from './command.ts';

/**
 * The `gikev2` command: a small dispatcher over subcommands. Each command
 * parses its own options (node:util parseArgs) and returns an exit code:
 * 0 success, 1 the input was bad or an operation failed, 2 usage error.
 * Add a command by adding it to `commands`.
 */
export const commands: Readonly<Record<string, Command>> = {
  decode: decodeCommand,
  gcks: gcksCommand,
  gm: gmCommand,
  ctl: ctlCommand,
  demo: demoCommand,
  state: stateCommand,
};

export const processIo: CliIo = {
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
};

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return ['usage: gikev2 <command> [options]', '', 'commands:', ...lines, '', 'gikev2 <command> --help for details', ''].join(
    '\n',
  );
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function run(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.err : io.out)(usage());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const command = commands[name];
  if (!command) {
    io.err(`gikev2: unknown command "${name}"\n\n${usage()}`);
    return EXIT_USAGE;
  }
  try {
    return await command.run(rest, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`gikev2 ${name}: ${e.message}\n${command.usage}\n`);
      return EXIT_USAGE;
    }
    throw e;
  }
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  process.exitCode = await run(process.argv.slice(2));
}
