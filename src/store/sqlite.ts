/**
 * The default key server store: one SQLite file, `gcks.db`, in the state
 * directory (better-sqlite3: synchronous, so a reservation is on disk when
 * `reserve` returns, with no event-loop turn in between).
 *
 * Durability. The database runs in WAL mode. A commit with
 * `synchronous = FULL` fsyncs the WAL (~1.4 ms here, ~700 commits/s); with
 * NORMAL it is durable against a process crash (SIGKILL included: the WAL
 * is in the OS page cache) but not against power loss, at ~40 000 commits/s.
 * With `durability: 'critical'` (the default) every commit that contains
 * state that must never go back (counter reservations, SAs and their keys,
 * group policies, the LKH tree, signing keys) is made with FULL; commits
 * holding only members, registration history and audit entries use NORMAL,
 * so after a power loss the last few of those may be missing (a member
 * re-registers) while counters and keys never go back. `putGroup` and
 * `putLkhSnapshot` are critical unless called with `{ critical: false }`:
 * the key server (src/node/gcks-state.ts) does so only for a plain
 * registration's commit (members added, the tree's metadata and the chunks
 * holding the nodes their joins created, the group record when nothing but
 * the pending wrap keys grew; it is not rewritten when nothing changed), so
 * a registration needs no fsync of its own. After a power loss the
 * last such commits may be missing, whole and in order (a WAL keeps a
 * prefix of the commits), leaving the state of an earlier commit, which is
 * consistent: those members are unknown and must register again. What must
 * never repeat is unaffected: the SPIs, Sender-IDs, Key IDs and Message IDs
 * they were given come from reservations fsynced before use, and the next
 * critical commit (rekey, SA rotation, exclusion, signing key, queued
 * GSA_REKEY datagrams, a new or replaced tree) fsyncs every commit before
 * it. A process crash (SIGKILL) loses nothing. Checkpoints (the WAL copied
 * back into the database file, every WAL_CHECKPOINT_PAGES pages) fsync both
 * files and change nothing about what is durable. `durability: 'full'`
 * fsyncs every commit. Because SQLite refuses to change the safety level
 * inside a transaction, a transaction that turns out to hold critical
 * writes is followed by a tiny FULL commit (a "sync barrier"): fsyncing the
 * WAL makes every earlier frame durable too.
 *
 * Start-up refuses, with a StateError saying how to recover: a state path
 * that is not a readable directory, a zero-length, truncated, non-SQLite or
 * damaged file, another application's SQLite file, a newer schema, and a
 * missing or wrong KEK. A database is only ever created where none exists,
 * and atomically (built under a temporary name, then renamed), so an
 * existing file is never mistaken for "no state yet".
 */
import Database from 'better-sqlite3';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmSync, statSync, accessSync, constants as fsConstants } from 'node:fs';
import { join, resolve } from 'node:path';
import { missingKekError, recordAad, type StateKek } from './encryption.ts';
import { RESTORE_ADVICE, StateError, StoreUsageError } from './errors.ts';
import { checkSchema, CURRENT_SCHEMA_VERSION, migrate, readSchemaInfo } from './schema.ts';
import {
  checkMark,
  checkReserveArguments,
  nextBlock,
  type AuditEntry,
  type AuditInput,
  type AuditKind,
  type AuditQuery,
  type GroupRecord,
  type JsonValue,
  type KeyServerStore,
  type LkhSnapshot,
  type MemberRecord,
  type MemberStatus,
  type RegistrationEntry,
  type RegistrationInput,
  type Reservation,
  type ReserveOptions,
  type SaKind,
  type SaRecord,
  type SaRole,
  type SigningKeyRecord,
  type WriteOptions,
} from './store.ts';

type Db = Database.Database;

export const DATABASE_FILE = 'gcks.db';
/**
 * WAL pages between automatic checkpoints (SQLite's default is 1000). Each
 * checkpoint fsyncs the WAL and the database file even with synchronous =
 * NORMAL; at the default those two fsyncs, every 80 or so registrations,
 * were about half the cost of a registration's commit. 8192 pages of 4 KiB
 * let the WAL grow to 32 MiB before it is copied back.
 */
const WAL_CHECKPOINT_PAGES = 8192;
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

export type Durability = 'critical' | 'full';

export interface OpenDatabaseOptions {
  /** Create the directory and an empty database when there is none (never over an existing file). */
  readonly create?: boolean;
  readonly readonly?: boolean;
  /** 'exclusive' (default for the daemon): a second process on the same state gets LOCKED. */
  readonly lock?: 'exclusive' | 'shared';
  /** Run `PRAGMA quick_check` (O(size); default true). */
  readonly integrityCheck?: boolean;
  readonly busyTimeoutMs?: number;
  /** Needed only to create a database: the key check value is written with the schema. */
  readonly kek?: StateKek | undefined;
  /** Schema version a new database is created at (tests create old ones). */
  readonly createVersion?: number;
}

export interface SqliteStoreOptions {
  readonly stateDir: string;
  readonly kek: StateKek | undefined;
  readonly durability?: Durability;
  readonly lock?: 'exclusive' | 'shared';
  readonly integrityCheck?: boolean;
  readonly busyTimeoutMs?: number;
  /** Copy the file aside (`gcks.db.pre-vN-<time>.bak`) before migrating it (default true). */
  readonly backupBeforeMigration?: boolean;
}

// ---------------------------------------------------------------- opening

function errnoOf(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

function unreadable(path: string, what: string, cause?: unknown): StateError {
  return new StateError(
    'STATE_DIR_UNREADABLE',
    `state ${what} ${path} cannot be used${cause instanceof Error ? `: ${cause.message}` : ''}; refusing to start without the state it may hold`,
    'fix the path, ownership or permissions (the daemon needs read, write and search access to the directory and its files); if the state is lost, ' + RESTORE_ADVICE,
    { path, cause },
  );
}

function corrupt(file: string, detail: string, cause?: unknown): StateError {
  return new StateError('CORRUPT', `state database ${file} is damaged: ${detail}`, RESTORE_ADVICE, { path: file, cause });
}

/** Translates an SQLite or file-system error met while opening or reading the state. */
export function translateError(e: unknown, file: string): unknown {
  if (e instanceof StateError) return e;
  const code = errnoOf(e) ?? '';
  if (code.startsWith('SQLITE_NOTADB')) return notADatabase(file, e);
  if (code.startsWith('SQLITE_CORRUPT')) return corrupt(file, (e as Error).message, e);
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new StateError(
      'LOCKED',
      `state database ${file} is in use by another process`,
      'stop the other gikev2 process using this state directory (only one key server may own a state), then retry',
      { path: file, cause: e },
    );
  }
  if (code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_PERM') || code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_AUTH') || ['EACCES', 'EPERM', 'EISDIR', 'ENOTDIR', 'EROFS'].includes(code)) {
    return unreadable(file, 'file', e);
  }
  if (code.startsWith('SQLITE_IOERR')) return unreadable(file, 'file', e);
  return e;
}

function notADatabase(file: string, cause?: unknown): StateError {
  return new StateError(
    'NOT_A_DATABASE',
    `${file} is not an SQLite database (wrong file header); it is not gikev2 state`,
    `check that --state points at the right directory; if ${DATABASE_FILE} was overwritten, ${RESTORE_ADVICE}`,
    { path: file, cause },
  );
}

function checkStateDir(dir: string, options: { create: boolean; write: boolean }): void {
  let st;
  try {
    st = statSync(dir);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT' && options.create) {
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        return;
      } catch (e2) {
        throw unreadable(dir, 'directory', e2);
      }
    }
    if (errnoOf(e) === 'ENOENT') {
      throw new StateError('STATE_DIR_UNREADABLE', `no state directory at ${dir}`, 'check the --state path', { path: dir, cause: e });
    }
    throw unreadable(dir, 'directory', e);
  }
  if (!st.isDirectory()) throw unreadable(dir, 'directory', new Error('not a directory'));
  try {
    accessSync(dir, fsConstants.R_OK | fsConstants.X_OK | (options.write ? fsConstants.W_OK : 0));
    readdirSync(dir);
  } catch (e) {
    throw unreadable(dir, 'directory', e);
  }
}

/** Checks the file header before SQLite sees it: empty, foreign and truncated files are told apart. */
function preflightFile(file: string): void {
  let st;
  try {
    st = statSync(file);
  } catch (e) {
    throw unreadable(file, 'file', e);
  }
  if (!st.isFile()) throw unreadable(file, 'file', new Error('not a regular file'));
  if (st.size === 0) throw corrupt(file, 'the file is empty (truncated to zero length)');
  const header = Buffer.alloc(100);
  let n: number;
  try {
    const fd = openSync(file, 'r');
    try {
      n = readSync(fd, header, 0, 100, 0);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    throw unreadable(file, 'file', e);
  }
  if (n < SQLITE_MAGIC.length || !header.subarray(0, SQLITE_MAGIC.length).equals(SQLITE_MAGIC)) throw notADatabase(file);
  if (n < 100) throw corrupt(file, `only ${n} octets: truncated inside the file header`);
  const rawPageSize = header.readUInt16BE(16);
  const pageSize = rawPageSize === 1 ? 65536 : rawPageSize;
  if (pageSize < 512 || (pageSize & (pageSize - 1)) !== 0) throw corrupt(file, `invalid page size ${rawPageSize} in the header`);
  if (st.size % pageSize !== 0) throw corrupt(file, `size ${st.size} is not a multiple of the page size ${pageSize} (truncated)`);
  // Without a WAL to complete it, the file must hold every page its header
  // counts. (With a WAL, a checkpoint interrupted by a crash may legitimately
  // leave it short; SQLite finishes it from the WAL.)
  let walSize = 0;
  try {
    walSize = statSync(`${file}-wal`).size;
  } catch {
    walSize = 0;
  }
  const pages = header.readUInt32BE(28);
  const sizeValid = header.readUInt32BE(24) === header.readUInt32BE(92) && pages > 0;
  if (walSize === 0 && sizeValid && st.size < pages * pageSize) {
    throw corrupt(file, `the header counts ${pages} pages of ${pageSize} octets but the file holds ${st.size / pageSize} (truncated)`);
  }
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Builds a new database under a temporary name and renames it into place: there is never a half-created gcks.db. */
function createDatabaseFile(file: string, kek: StateKek | undefined, version: number): void {
  const temp = `${file}.creating`;
  for (const f of [temp, `${temp}-journal`, `${temp}-wal`, `${temp}-shm`]) rmSync(f, { force: true });
  // Owner-only from the first byte: SQLite gives its -wal and -shm files the
  // database file's mode, so this covers them too.
  closeSync(openSync(temp, 'wx', 0o600));
  const db = new Database(temp);
  try {
    db.pragma('journal_mode = DELETE');
    db.pragma('synchronous = FULL');
    db.exec('BEGIN IMMEDIATE');
    migrate(db, version);
    if (kek) {
      db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('kek-check', kek.keyCheckValue());
      db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('kek-id', Buffer.from(kek.id, 'utf8'));
    }
    db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('created-at', Buffer.from(new Date().toISOString(), 'utf8'));
    db.exec('COMMIT');
  } finally {
    db.close();
  }
  fsyncPath(temp);
  renameSync(temp, file);
  fsyncPath(resolve(file, '..'));
}

export interface OpenedDatabase {
  readonly db: Db;
  readonly file: string;
  readonly created: boolean;
}

/**
 * Opens (and with `create`, creates) the state database with every check
 * that does not need the KEK: directory, file header, SQLite's own
 * integrity check, application_id and schema version not newer than ours.
 */
export function openStateDatabase(stateDir: string, options: OpenDatabaseOptions = {}): OpenedDatabase {
  const dir = resolve(stateDir);
  const file = join(dir, DATABASE_FILE);
  checkStateDir(dir, { create: options.create === true, write: options.readonly !== true });
  let created = false;
  if (!existsSync(file)) {
    let walSize = 0;
    try {
      walSize = statSync(`${file}-wal`).size;
    } catch {
      walSize = 0;
    }
    if (walSize > 0) throw corrupt(file, `the database file is missing but its write-ahead log ${file}-wal exists`);
    if (!options.create) throw new StateError('STATE_DIR_UNREADABLE', `no gikev2 state in ${dir} (${DATABASE_FILE} is missing)`, 'check the --state path', { path: file });
    if (!options.kek) throw missingKekError(dir);
    try {
      createDatabaseFile(file, options.kek, options.createVersion ?? CURRENT_SCHEMA_VERSION);
    } catch (e) {
      throw translateError(e, file);
    }
    created = true;
  }
  preflightFile(file);
  let db: Db | undefined;
  try {
    db = new Database(file, { fileMustExist: true, readonly: options.readonly === true, timeout: options.busyTimeoutMs ?? 2000 });
    // Exclusive locking before WAL: the WAL index then lives in process memory (no -shm file) and the lock is held until close.
    if ((options.lock ?? 'exclusive') === 'exclusive') db.pragma('locking_mode = EXCLUSIVE');
    // Recognize the file before changing anything in it (journal_mode = WAL writes the header).
    checkSchema(readSchemaInfo(db), file);
    if (!options.readonly) db.pragma('journal_mode = WAL');
    if (options.integrityCheck !== false) {
      const result = db.pragma('quick_check', { simple: true });
      if (result !== 'ok') throw corrupt(file, `SQLite integrity check failed: ${String(result)}`);
    }
    return { db, file, created };
  } catch (e) {
    db?.close();
    throw translateError(e, file);
  }
}

// ---------------------------------------------------------------- rows

interface SaRow {
  group_id: string;
  sa_id: string;
  kind: SaKind;
  role: SaRole;
  spi: Buffer;
  attributes: string;
  keymat: Buffer;
  created_at: number;
  expires_at: number;
  last_message_id: number | null;
}
interface GroupRow {
  group_id: string;
  name: string;
  policy: string;
  applied_at: number;
}
interface MemberRow {
  group_id: string;
  member_id: string;
  identity: string;
  status: MemberStatus;
  registered_at: number;
  sender: number;
  sender_ids: string;
  leaf: number | null;
}
interface RegistrationRow {
  seq: number;
  group_id: string;
  member_id: string;
  at: number;
  details: string;
}
interface TreeRow {
  group_id: string;
  meta: string;
  tree: Buffer;
  saved_at: number;
}
interface SigningKeyRow {
  key_id: string;
  algorithm: string;
  private_key: Buffer;
  public_key: Buffer;
  created_at: number;
  retired_at: number | null;
}
interface AuditRow {
  seq: number;
  at: number;
  kind: AuditKind;
  group_id: string | null;
  member_id: string | null;
  reason: string | null;
  details: string | null;
}

const parseJson = (text: string): JsonValue => JSON.parse(text) as JsonValue;

function statementsFor(db: Db) {
  return {
    counterGet: db.prepare<[string], { mark: number }>('SELECT mark FROM counters WHERE name = ?'),
    counterSet: db.prepare<[string, number]>('INSERT INTO counters (name, mark) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET mark = excluded.mark'),
    counterList: db.prepare<[], { name: string; mark: number }>('SELECT name, mark FROM counters ORDER BY name'),
    groupPut: db.prepare<[string, string, string, number]>(
      'INSERT INTO groups (group_id, name, policy, applied_at) VALUES (?, ?, ?, ?) ON CONFLICT (group_id) DO UPDATE SET name = excluded.name, policy = excluded.policy, applied_at = excluded.applied_at',
    ),
    groupGet: db.prepare<[string], GroupRow>('SELECT * FROM groups WHERE group_id = ?'),
    groupList: db.prepare<[], GroupRow>('SELECT * FROM groups ORDER BY group_id'),
    groupDelete: db.prepare<[string]>('DELETE FROM groups WHERE group_id = ?'),
    sasDeleteGroup: db.prepare<[string]>('DELETE FROM sas WHERE group_id = ?'),
    membersDeleteGroup: db.prepare<[string]>('DELETE FROM members WHERE group_id = ?'),
    registrationsDeleteGroup: db.prepare<[string]>('DELETE FROM registrations WHERE group_id = ?'),
    treeDelete: db.prepare<[string]>('DELETE FROM lkh_trees WHERE group_id = ?'),
    saPut: db.prepare<[string, string, string, string, Buffer, string, Buffer, number, number, number | null]>(
      `INSERT INTO sas (group_id, sa_id, kind, role, spi, attributes, keymat, created_at, expires_at, last_message_id)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (group_id, sa_id) DO UPDATE SET kind = excluded.kind, role = excluded.role, spi = excluded.spi,
         attributes = excluded.attributes, keymat = excluded.keymat, created_at = excluded.created_at,
         expires_at = excluded.expires_at, last_message_id = excluded.last_message_id`,
    ),
    saGet: db.prepare<[string, string], SaRow>('SELECT * FROM sas WHERE group_id = ? AND sa_id = ?'),
    saList: db.prepare<[string], SaRow>('SELECT * FROM sas WHERE group_id = ? ORDER BY created_at, sa_id'),
    saDelete: db.prepare<[string, string]>('DELETE FROM sas WHERE group_id = ? AND sa_id = ?'),
    saDeletePrevious: db.prepare<[string, string]>("DELETE FROM sas WHERE group_id = ? AND kind = ? AND role = 'previous'"),
    saDemoteCurrent: db.prepare<[string, string]>("UPDATE sas SET role = 'previous' WHERE group_id = ? AND kind = ? AND role = 'current'"),
    saMessageIdGet: db.prepare<[string, string], { last_message_id: number | null }>('SELECT last_message_id FROM sas WHERE group_id = ? AND sa_id = ?'),
    saMessageIdSet: db.prepare<[number, string, string]>('UPDATE sas SET last_message_id = ? WHERE group_id = ? AND sa_id = ?'),
    memberPut: db.prepare<[string, string, string, string, number, number, string, number | null]>(
      `INSERT INTO members (group_id, member_id, identity, status, registered_at, sender, sender_ids, leaf) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (group_id, member_id) DO UPDATE SET identity = excluded.identity, status = excluded.status,
         registered_at = excluded.registered_at, sender = excluded.sender, sender_ids = excluded.sender_ids, leaf = excluded.leaf`,
    ),
    memberGet: db.prepare<[string, string], MemberRow>('SELECT * FROM members WHERE group_id = ? AND member_id = ?'),
    memberList: db.prepare<[string], MemberRow>('SELECT * FROM members WHERE group_id = ? ORDER BY member_id'),
    memberListStatus: db.prepare<[string, string], MemberRow>('SELECT * FROM members WHERE group_id = ? AND status = ? ORDER BY member_id'),
    memberDelete: db.prepare<[string, string]>('DELETE FROM members WHERE group_id = ? AND member_id = ?'),
    registrationAdd: db.prepare<[string, string, number, string]>('INSERT INTO registrations (group_id, member_id, at, details) VALUES (?, ?, ?, ?)'),
    registrationList: db.prepare<[string, string], RegistrationRow>('SELECT * FROM registrations WHERE group_id = ? AND member_id = ? ORDER BY seq'),
    treePut: db.prepare<[string, string, Buffer, number]>(
      'INSERT INTO lkh_trees (group_id, meta, tree, saved_at) VALUES (?, ?, ?, ?) ON CONFLICT (group_id) DO UPDATE SET meta = excluded.meta, tree = excluded.tree, saved_at = excluded.saved_at',
    ),
    treeGet: db.prepare<[string], TreeRow>('SELECT * FROM lkh_trees WHERE group_id = ?'),
    keyPut: db.prepare<[string, string, Buffer, Buffer, number, number | null]>(
      `INSERT INTO signing_keys (key_id, algorithm, private_key, public_key, created_at, retired_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (key_id) DO UPDATE SET algorithm = excluded.algorithm, private_key = excluded.private_key,
         public_key = excluded.public_key, created_at = excluded.created_at, retired_at = excluded.retired_at`,
    ),
    keyGet: db.prepare<[string], SigningKeyRow>('SELECT * FROM signing_keys WHERE key_id = ?'),
    keyList: db.prepare<[], SigningKeyRow>('SELECT * FROM signing_keys ORDER BY created_at, key_id'),
    auditAdd: db.prepare<[number, string, string | null, string | null, string | null, string | null]>(
      'INSERT INTO audit (at, kind, group_id, member_id, reason, details) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    metaGet: db.prepare<[string], { value: Buffer }>('SELECT value FROM meta WHERE key = ?'),
    metaPut: db.prepare<[string, Buffer]>('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
  };
}

/** Whether the database holds any sealed record (a key check value is then required). */
function hasSealedRecords(db: Db): boolean {
  const row = db.prepare<[], { n: number }>('SELECT (SELECT count(*) FROM sas) + (SELECT count(*) FROM lkh_trees) + (SELECT count(*) FROM signing_keys) AS n').get();
  return (row?.n ?? 0) > 0;
}

/** Verifies the KEK against the stored key check value, writing one into a database that has none and no sealed data yet. */
export function checkKek(db: Db, kek: StateKek, file: string): void {
  const kcv = db.prepare<[string], { value: Buffer }>('SELECT value FROM meta WHERE key = ?').get('kek-check');
  if (!kcv) {
    if (hasSealedRecords(db)) throw corrupt(file, 'the key check value is missing although key material is stored');
    db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('kek-check', kek.keyCheckValue());
    db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run('kek-id', Buffer.from(kek.id, 'utf8'));
    return;
  }
  if (kek.matchesKeyCheckValue(kcv.value)) return;
  const stored = db.prepare<[string], { value: Buffer }>('SELECT value FROM meta WHERE key = ?').get('kek-id')?.value.toString('utf8') ?? 'unknown';
  throw new StateError(
    'KEK_WRONG',
    `the key-encryption key (id ${kek.id}) is not the one the state in ${file} was written under (id ${stored})`,
    'supply the original KEK via --state-key-file or GIKEV2_STATE_KEY; without it the stored keys cannot be recovered, so ' + RESTORE_ADVICE + ' (a backup needs its own KEK too)',
    { path: file },
  );
}

// ---------------------------------------------------------------- the store

export class SqliteStore implements KeyServerStore {
  readonly kind = 'sqlite';
  readonly file: string;
  readonly durability: Durability;
  /** Set when this open created the database. */
  readonly created: boolean;
  /** The schema version the file was at before this open migrated it (undefined when no migration ran). */
  readonly migratedFrom: number | undefined;
  /** Copy made before migrating, if any. */
  readonly preMigrationBackup: string | undefined;
  private readonly db: Db;
  private readonly kek: StateKek;
  private readonly sql: ReturnType<typeof statementsFor>;
  private readonly auditQueries = new Map<string, Database.Statement<unknown[], AuditRow>>();
  private depth = 0;
  private criticalInTransaction = false;
  private synchronous: 'FULL' | 'NORMAL';
  private barrier = 0;

  private constructor(opened: OpenedDatabase, kek: StateKek, durability: Durability, migratedFrom: number | undefined, backup: string | undefined) {
    this.db = opened.db;
    this.file = opened.file;
    this.created = opened.created;
    this.kek = kek;
    this.durability = durability;
    this.migratedFrom = migratedFrom;
    this.preMigrationBackup = backup;
    this.synchronous = durability === 'full' ? 'FULL' : 'NORMAL';
    this.db.pragma(`synchronous = ${this.synchronous}`);
    this.db.pragma(`wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`);
    this.sql = statementsFor(this.db);
  }

  /** Opens or creates the state in `stateDir`; throws StateError when it cannot be trusted. */
  static open(options: SqliteStoreOptions): SqliteStore {
    const stateDir = resolve(options.stateDir);
    if (!options.kek) {
      // An existing but unreadable state is reported as such, not as a configuration slip.
      if (existsSync(stateDir)) checkStateDir(stateDir, { create: false, write: false });
      throw missingKekError(stateDir);
    }
    const kek = options.kek;
    const opened = openStateDatabase(stateDir, { create: true, kek, lock: options.lock, integrityCheck: options.integrityCheck, busyTimeoutMs: options.busyTimeoutMs });
    const { db, file } = opened;
    try {
      // Schema and KEK checks read and write in one transaction: a wrong KEK changes nothing.
      db.pragma('synchronous = FULL');
      let from = 0;
      let backup: string | undefined;
      db.exec('BEGIN IMMEDIATE');
      try {
        const info = readSchemaInfo(db);
        checkSchema(info, file);
        checkKek(db, kek, file);
        from = info.version;
        db.exec('COMMIT');
      } catch (e) {
        if (db.inTransaction) db.exec('ROLLBACK');
        throw e;
      }
      if (from < CURRENT_SCHEMA_VERSION) {
        if (options.backupBeforeMigration !== false) {
          backup = `${file}.pre-v${CURRENT_SCHEMA_VERSION}-${Date.now()}.bak`;
          db.prepare('VACUUM INTO ?').run(backup);
        }
        db.exec('BEGIN IMMEDIATE');
        try {
          checkSchema(readSchemaInfo(db), file);
          migrate(db);
          db.exec('COMMIT');
        } catch (e) {
          if (db.inTransaction) db.exec('ROLLBACK');
          throw e;
        }
      }
      return new SqliteStore(opened, kek, options.durability ?? 'critical', from < CURRENT_SCHEMA_VERSION ? from : undefined, backup);
    } catch (e) {
      db.close();
      throw translateError(e, file);
    }
  }

  get inTransaction(): boolean {
    return this.depth > 0;
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  /** The underlying handle, for backup.ts (export of a live store). */
  get database(): Db {
    return this.db;
  }

  transaction<T>(fn: () => T): T {
    this.checkOpen();
    if (this.depth > 0) {
      const savepoint = `s${this.depth}`;
      this.db.exec(`SAVEPOINT ${savepoint}`);
      this.depth++;
      try {
        const result = fn();
        this.db.exec(`RELEASE ${savepoint}`);
        return result;
      } catch (e) {
        if (this.db.inTransaction) this.db.exec(`ROLLBACK TO ${savepoint}; RELEASE ${savepoint}`);
        throw e;
      } finally {
        this.depth--;
      }
    }
    this.criticalInTransaction = false;
    this.db.exec('BEGIN IMMEDIATE');
    this.depth = 1;
    let result: T;
    try {
      result = fn();
      this.db.exec('COMMIT');
    } catch (e) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      throw translateError(e, this.file);
    } finally {
      this.depth = 0;
    }
    if (this.criticalInTransaction) this.syncBarrier();
    return result;
  }

  reserve(counter: string, blockSize: number, options?: ReserveOptions): Reservation {
    checkReserveArguments(counter, blockSize, options);
    this.refuseInTransaction('reserve');
    return this.write(true, () => {
      const block = nextBlock(counter, this.counterMark(counter), blockSize, options);
      this.sql.counterSet.run(counter, block.end);
      return block;
    });
  }

  advanceCounter(counter: string, mark: number): void {
    checkMark(counter, mark);
    this.refuseInTransaction('advanceCounter');
    this.write(true, () => {
      const current = this.counterMark(counter);
      if (mark < current) throw new RangeError(`counter ${counter} would go back from ${current} to ${mark}`);
      if (mark > current) this.sql.counterSet.run(counter, mark);
    });
  }

  counterMark(counter: string): number {
    return this.sql.counterGet.get(counter)?.mark ?? 0;
  }

  listCounters(): Array<{ counter: string; mark: number }> {
    return this.sql.counterList.all().map((r) => ({ counter: r.name, mark: r.mark }));
  }

  putGroup(group: GroupRecord, options?: WriteOptions): void {
    this.write(options?.critical !== false, () => this.sql.groupPut.run(group.groupId, group.name, JSON.stringify(group.policy), group.appliedAt));
  }
  getGroup(groupId: string): GroupRecord | undefined {
    const r = this.sql.groupGet.get(groupId);
    return r && groupFromRow(r);
  }
  listGroups(): GroupRecord[] {
    return this.sql.groupList.all().map(groupFromRow);
  }
  deleteGroup(groupId: string): boolean {
    return this.write(true, () =>
      this.transaction(() => {
        const changed = this.sql.groupDelete.run(groupId).changes > 0;
        this.sql.sasDeleteGroup.run(groupId);
        this.sql.membersDeleteGroup.run(groupId);
        this.sql.registrationsDeleteGroup.run(groupId);
        this.sql.treeDelete.run(groupId);
        return changed;
      }),
    );
  }

  putSa(sa: SaRecord): void {
    this.write(true, () => this.insertSa(sa));
  }
  getSa(groupId: string, saId: string): SaRecord | undefined {
    const r = this.sql.saGet.get(groupId, saId);
    return r && this.saFromRow(r);
  }
  listSas(groupId: string, filter: { kind?: SaKind; role?: SaRole } = {}): SaRecord[] {
    return this.sql.saList
      .all(groupId)
      .filter((r) => (filter.kind === undefined || r.kind === filter.kind) && (filter.role === undefined || r.role === filter.role))
      .map((r) => this.saFromRow(r));
  }
  rotateSas(groupId: string, kind: SaKind, next: readonly SaRecord[]): void {
    this.write(true, () =>
      this.transaction(() => {
        this.sql.saDeletePrevious.run(groupId, kind);
        this.sql.saDemoteCurrent.run(groupId, kind);
        for (const sa of next) {
          if (sa.groupId !== groupId || sa.kind !== kind) throw new StoreUsageError(`rotateSas(${groupId}, ${kind}) given an SA of ${sa.groupId}/${sa.kind}`);
          this.insertSa({ ...sa, role: 'current' });
        }
      }),
    );
  }
  deleteSa(groupId: string, saId: string): boolean {
    return this.write(true, () => this.sql.saDelete.run(groupId, saId).changes > 0);
  }
  recordRekeyMessageId(groupId: string, saId: string, messageId: number): void {
    this.write(false, () => {
      const row = this.sql.saMessageIdGet.get(groupId, saId);
      if (!row) throw new StoreUsageError(`no SA ${saId} in group ${groupId}`);
      if (row.last_message_id !== null && messageId <= row.last_message_id) {
        throw new RangeError(`Rekey SA ${saId}: Message ID ${messageId} does not increase on ${row.last_message_id}`);
      }
      this.sql.saMessageIdSet.run(messageId, groupId, saId);
    });
  }

  putMember(m: MemberRecord): void {
    this.write(false, () =>
      this.sql.memberPut.run(m.groupId, m.memberId, JSON.stringify(m.identity), m.status, m.registeredAt, m.sender ? 1 : 0, JSON.stringify(m.senderIds), m.leaf ?? null),
    );
  }
  getMember(groupId: string, memberId: string): MemberRecord | undefined {
    const r = this.sql.memberGet.get(groupId, memberId);
    return r && memberFromRow(r);
  }
  listMembers(groupId: string, filter: { status?: MemberStatus } = {}): MemberRecord[] {
    const rows = filter.status === undefined ? this.sql.memberList.all(groupId) : this.sql.memberListStatus.all(groupId, filter.status);
    return rows.map(memberFromRow);
  }
  deleteMember(groupId: string, memberId: string): boolean {
    return this.write(false, () => this.sql.memberDelete.run(groupId, memberId).changes > 0);
  }
  appendRegistration(e: RegistrationInput): number {
    return this.write(false, () => Number(this.sql.registrationAdd.run(e.groupId, e.memberId, e.at, JSON.stringify(e.details)).lastInsertRowid));
  }
  registrationHistory(groupId: string, memberId: string): RegistrationEntry[] {
    return this.sql.registrationList.all(groupId, memberId).map((r) => ({ groupId: r.group_id, memberId: r.member_id, at: r.at, details: parseJson(r.details), seq: r.seq }));
  }

  putLkhSnapshot(s: LkhSnapshot, options?: WriteOptions): void {
    this.write(options?.critical !== false, () => this.sql.treePut.run(s.groupId, JSON.stringify(s.meta), this.kek.seal(s.tree, recordAad('lkh_trees', s.groupId)), s.savedAt));
  }
  getLkhSnapshot(groupId: string): LkhSnapshot | undefined {
    const r = this.sql.treeGet.get(groupId);
    if (!r) return undefined;
    return { groupId: r.group_id, meta: parseJson(r.meta), tree: this.unseal(r.tree, 'lkh_trees', r.group_id), savedAt: r.saved_at };
  }

  putSigningKey(k: SigningKeyRecord): void {
    this.write(true, () =>
      this.sql.keyPut.run(k.keyId, k.algorithm, this.kek.seal(k.privateKey, recordAad('signing_keys', k.keyId)), k.publicKey, k.createdAt, k.retiredAt ?? null),
    );
  }
  getSigningKey(keyId: string): SigningKeyRecord | undefined {
    const r = this.sql.keyGet.get(keyId);
    return r && this.signingKeyFromRow(r);
  }
  listSigningKeys(): SigningKeyRecord[] {
    return this.sql.keyList.all().map((r) => this.signingKeyFromRow(r));
  }

  appendAudit(e: AuditInput): number {
    return this.write(false, () =>
      Number(
        this.sql.auditAdd.run(e.at, e.kind, e.groupId ?? null, e.memberId ?? null, e.reason ?? null, e.details === undefined ? null : JSON.stringify(e.details))
          .lastInsertRowid,
      ),
    );
  }
  queryAudit(q: AuditQuery = {}): AuditEntry[] {
    const where: string[] = [];
    const params: Array<string | number> = [];
    if (q.afterSeq !== undefined) {
      where.push('seq > ?');
      params.push(q.afterSeq);
    }
    if (q.since !== undefined) {
      where.push('at >= ?');
      params.push(q.since);
    }
    if (q.until !== undefined) {
      where.push('at < ?');
      params.push(q.until);
    }
    if (q.groupId !== undefined) {
      where.push('group_id = ?');
      params.push(q.groupId);
    }
    if (q.memberId !== undefined) {
      where.push('member_id = ?');
      params.push(q.memberId);
    }
    if (q.kind !== undefined) {
      const kinds = typeof q.kind === 'string' ? [q.kind] : q.kind;
      where.push(`kind IN (${kinds.map(() => '?').join(', ') || 'NULL'})`);
      params.push(...kinds);
    }
    if (q.limit !== undefined) params.push(q.limit);
    const text = `SELECT * FROM audit${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY seq${q.limit !== undefined ? ' LIMIT ?' : ''}`;
    let stmt = this.auditQueries.get(text);
    if (!stmt) {
      stmt = this.db.prepare<unknown[], AuditRow>(text);
      this.auditQueries.set(text, stmt);
    }
    return stmt.all(...params).map(auditFromRow);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  // ---------------------------------------------------------------- internals

  private checkOpen(): void {
    if (!this.db.open) throw new StoreUsageError('the store is closed');
  }

  private refuseInTransaction(what: string): void {
    this.checkOpen();
    if (this.depth > 0) {
      throw new StoreUsageError(`${what}() inside a transaction: a reservation must be durable before any value from it is used`);
    }
  }

  /**
   * Runs one write: inside an open transaction it joins it (marking it
   * critical if need be); otherwise it is its own transaction, committed
   * with FULL when critical.
   */
  private write<T>(critical: boolean, fn: () => T): T {
    this.checkOpen();
    if (this.depth > 0) {
      if (critical) this.criticalInTransaction = true;
      return fn();
    }
    const full = critical && this.durability === 'critical';
    if (full) this.setSynchronous('FULL');
    try {
      this.db.exec('BEGIN IMMEDIATE');
      this.depth = 1;
      try {
        const result = fn();
        this.db.exec('COMMIT');
        return result;
      } catch (e) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw translateError(e, this.file);
      } finally {
        this.depth = 0;
      }
    } finally {
      if (full) this.setSynchronous('NORMAL');
    }
  }

  /** A FULL commit after NORMAL ones: fsyncing the WAL makes them durable too. */
  private syncBarrier(): void {
    if (this.durability === 'full') return;
    this.setSynchronous('FULL');
    try {
      this.sql.metaPut.run('sync-barrier', Buffer.from(String(++this.barrier)));
    } finally {
      this.setSynchronous('NORMAL');
    }
  }

  private setSynchronous(level: 'FULL' | 'NORMAL'): void {
    if (this.synchronous === level) return;
    this.db.pragma(`synchronous = ${level}`);
    this.synchronous = level;
  }

  private insertSa(sa: SaRecord): void {
    this.sql.saPut.run(
      sa.groupId,
      sa.saId,
      sa.kind,
      sa.role,
      sa.spi,
      JSON.stringify(sa.attributes),
      this.kek.seal(sa.keymat, recordAad('sas', sa.groupId, sa.saId)),
      sa.createdAt,
      sa.expiresAt,
      sa.lastMessageId ?? null,
    );
  }

  private unseal(sealed: Buffer, table: string, ...id: string[]): Buffer {
    const plain = this.kek.open(sealed, recordAad(table, ...id));
    if (!plain) {
      throw corrupt(this.file, `the key material of ${table} record ${JSON.stringify(id)} does not authenticate under the KEK (damaged, or copied from another record)`);
    }
    return plain;
  }

  private saFromRow(r: SaRow): SaRecord {
    const sa: SaRecord = {
      groupId: r.group_id,
      saId: r.sa_id,
      kind: r.kind,
      role: r.role,
      spi: r.spi,
      attributes: parseJson(r.attributes),
      keymat: this.unseal(r.keymat, 'sas', r.group_id, r.sa_id),
      createdAt: r.created_at,
      expiresAt: r.expires_at,
    };
    return r.last_message_id === null ? sa : { ...sa, lastMessageId: r.last_message_id };
  }

  private signingKeyFromRow(r: SigningKeyRow): SigningKeyRecord {
    const k: SigningKeyRecord = {
      keyId: r.key_id,
      algorithm: r.algorithm,
      privateKey: this.unseal(r.private_key, 'signing_keys', r.key_id),
      publicKey: r.public_key,
      createdAt: r.created_at,
    };
    return r.retired_at === null ? k : { ...k, retiredAt: r.retired_at };
  }
}

function groupFromRow(r: GroupRow): GroupRecord {
  return { groupId: r.group_id, name: r.name, policy: parseJson(r.policy), appliedAt: r.applied_at };
}

function memberFromRow(r: MemberRow): MemberRecord {
  const m: MemberRecord = {
    groupId: r.group_id,
    memberId: r.member_id,
    identity: parseJson(r.identity),
    status: r.status,
    registeredAt: r.registered_at,
    sender: r.sender !== 0,
    senderIds: JSON.parse(r.sender_ids) as number[],
  };
  return r.leaf === null ? m : { ...m, leaf: r.leaf };
}

function auditFromRow(r: AuditRow): AuditEntry {
  const e: { -readonly [K in keyof AuditEntry]: AuditEntry[K] } = { seq: r.seq, at: r.at, kind: r.kind };
  if (r.group_id !== null) e.groupId = r.group_id;
  if (r.member_id !== null) e.memberId = r.member_id;
  if (r.reason !== null) e.reason = r.reason;
  if (r.details !== null) e.details = parseJson(r.details);
  return e;
}
