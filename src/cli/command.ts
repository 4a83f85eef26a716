/** Where a command writes; the process streams by default, a buffer in tests. */
export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

export interface Command {
  /** One line for `gikev2 --help`. */
  readonly summary: string;
  /** The command's own usage text, printed with usage errors and --help. */
  readonly usage: string;
  /** Runs with the arguments after the command name; resolves to the exit code. */
  readonly run: (argv: readonly string[], io: CliIo) => Promise<number>;
}

export const EXIT_OK = 0;
/** The input was bad (a message failed to decode, a file could not be read). */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** Bad options or arguments: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
