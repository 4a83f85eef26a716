/**
 * Errors about the key server's persistent state. Every one says what is
 * wrong (`message`) and what the operator can do about it (`recovery`):
 * a key server that cannot trust its state must stop, never start an empty
 * group in its place (issue 6).
 */

export type StateErrorCode =
  /** The state directory (or a file in it) cannot be read or written. */
  | 'STATE_DIR_UNREADABLE'
  /** The database file is not an SQLite file at all (text, garbage). */
  | 'NOT_A_DATABASE'
  /** An SQLite file that is truncated, malformed or fails its integrity check. */
  | 'CORRUPT'
  /** A valid SQLite file that belongs to another application. */
  | 'FOREIGN_DATABASE'
  /** Written by a newer gikev2 with a schema this version does not know. */
  | 'NEWER_SCHEMA'
  /** No key-encryption key was configured. */
  | 'KEK_MISSING'
  /** The key-encryption key is not 32 octets of hex or base64. */
  | 'KEK_INVALID'
  /** The key-encryption key is not the one the state was written under. */
  | 'KEK_WRONG'
  /** The key-encryption key file lies inside the state directory. */
  | 'KEK_BESIDE_DATA'
  /** Another process holds the state database. */
  | 'LOCKED'
  /** An import target already holds state. */
  | 'IMPORT_TARGET_NOT_EMPTY'
  /** A backup document is malformed, truncated or from an unknown format. */
  | 'BACKUP_INVALID';

/** sysexits(3)-style exit codes, so scripts can tell the cases apart. */
const EXIT_CODES: Readonly<Record<StateErrorCode, number>> = {
  STATE_DIR_UNREADABLE: 66, // EX_NOINPUT
  NOT_A_DATABASE: 65, // EX_DATAERR
  CORRUPT: 65,
  FOREIGN_DATABASE: 65,
  NEWER_SCHEMA: 65,
  BACKUP_INVALID: 65,
  KEK_MISSING: 78, // EX_CONFIG
  KEK_INVALID: 78,
  KEK_WRONG: 78,
  KEK_BESIDE_DATA: 78,
  IMPORT_TARGET_NOT_EMPTY: 73, // EX_CANTCREAT
  LOCKED: 75, // EX_TEMPFAIL
};

export class StateError extends Error {
  override readonly name = 'StateError';
  readonly code: StateErrorCode;
  /** What the operator can do about it. */
  readonly recovery: string;
  /** The file or directory concerned, when there is one. */
  readonly path: string | undefined;

  constructor(code: StateErrorCode, message: string, recovery: string, options: { path?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.recovery = recovery;
    this.path = options.path;
  }

  get exitCode(): number {
    return EXIT_CODES[this.code];
  }

  /** Message and recovery advice, for a log line or stderr. */
  describe(): string {
    return `${this.message}\n  To recover: ${this.recovery}`;
  }
}

/** A caller broke the store's contract (a programming error, not bad state). */
export class StoreUsageError extends Error {
  override readonly name = 'StoreUsageError';
}

/** A counter reached its limit: no value is left to hand out. */
export class CounterExhaustedError extends Error {
  override readonly name = 'CounterExhaustedError';
  constructor(readonly counter: string, readonly limit: number) {
    super(`counter ${counter} is exhausted (limit ${limit})`);
  }
}

export const RESTORE_ADVICE =
  'stop the server, move the state directory aside, and restore the last backup with `gikev2 state import --state DIR BACKUP.jsonl` (made by `gikev2 state export`)';
