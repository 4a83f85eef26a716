/**
 * The SQLite schema of the key server state, as an ordered list of forward
 * migrations. `PRAGMA user_version` holds the version a file is at and
 * `PRAGMA application_id` marks the file as ours, so a foreign SQLite file
 * is recognized instead of being "migrated" into a key server.
 *
 * Rules for new versions: append a migration, never edit a shipped one;
 * each runs inside the start-up transaction, so a crash mid-migration leaves
 * the file at the old version.
 */
import type Database from 'better-sqlite3';
import { StateError } from './errors.ts';

type Db = Database.Database;

/** "GIK2" in ASCII. */
export const APPLICATION_ID = 0x47494b32;

export interface Migration {
  /** The version the file is at after this migration. */
  readonly version: number;
  readonly description: string;
  up(db: Db): void;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'initial schema: counters, groups, SAs, members, registrations, LKH trees, signing keys, audit log',
    up(db) {
      db.exec(`
        CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
        CREATE TABLE counters (name TEXT PRIMARY KEY, mark INTEGER NOT NULL CHECK (mark >= 0));
        CREATE TABLE groups (
          group_id TEXT PRIMARY KEY, name TEXT NOT NULL, policy TEXT NOT NULL, applied_at INTEGER NOT NULL);
        CREATE TABLE sas (
          group_id TEXT NOT NULL, sa_id TEXT NOT NULL,
          kind TEXT NOT NULL CHECK (kind IN ('data-security', 'rekey')),
          role TEXT NOT NULL CHECK (role IN ('current', 'previous')),
          spi BLOB NOT NULL, attributes TEXT NOT NULL, keymat BLOB NOT NULL,
          created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, last_message_id INTEGER,
          PRIMARY KEY (group_id, sa_id));
        CREATE TABLE members (
          group_id TEXT NOT NULL, member_id TEXT NOT NULL, identity TEXT NOT NULL,
          status TEXT NOT NULL CHECK (status IN ('active', 'excluded', 'left')),
          registered_at INTEGER NOT NULL, sender INTEGER NOT NULL, sender_ids TEXT NOT NULL, leaf INTEGER,
          PRIMARY KEY (group_id, member_id));
        CREATE TABLE registrations (
          seq INTEGER PRIMARY KEY, group_id TEXT NOT NULL, member_id TEXT NOT NULL,
          at INTEGER NOT NULL, details TEXT NOT NULL);
        CREATE TABLE lkh_trees (group_id TEXT PRIMARY KEY, meta TEXT NOT NULL, tree BLOB NOT NULL, saved_at INTEGER NOT NULL);
        CREATE TABLE signing_keys (
          key_id TEXT PRIMARY KEY, algorithm TEXT NOT NULL, private_key BLOB NOT NULL, public_key BLOB NOT NULL,
          created_at INTEGER NOT NULL, retired_at INTEGER);
        -- seq is the rowid: max + 1, so never reused in an append-only table, without
        -- AUTOINCREMENT's extra page write per insert (half the insert rate).
        CREATE TABLE audit (
          seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, kind TEXT NOT NULL,
          member_id TEXT, reason TEXT, details TEXT);
      `);
    },
  },
  {
    version: 2,
    description: 'audit entries name their group; indexes for audit queries and registration history',
    up(db) {
      db.exec(`
        ALTER TABLE audit ADD COLUMN group_id TEXT;
        CREATE INDEX audit_at ON audit (at);
        CREATE INDEX audit_member ON audit (member_id, seq);
        CREATE INDEX audit_group ON audit (group_id, seq);
        CREATE INDEX registrations_member ON registrations (group_id, member_id, seq);
      `);
    },
  },
];

export const CURRENT_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** Tables in dependency-free order, as export and import walk them. */
export const TABLES = ['meta', 'counters', 'groups', 'sas', 'members', 'registrations', 'lkh_trees', 'signing_keys', 'audit'] as const;
export type TableName = (typeof TABLES)[number];

export interface SchemaInfo {
  readonly applicationId: number;
  readonly version: number;
}

export function readSchemaInfo(db: Db): SchemaInfo {
  return {
    applicationId: (db.pragma('application_id', { simple: true }) as number) >>> 0,
    version: db.pragma('user_version', { simple: true }) as number,
  };
}

/**
 * Refuses a file that is not ours or is newer than this code. `file` names
 * the database in messages.
 */
export function checkSchema(info: SchemaInfo, file: string, target = CURRENT_SCHEMA_VERSION): void {
  if (info.applicationId !== APPLICATION_ID) {
    throw new StateError(
      'FOREIGN_DATABASE',
      `${file} is an SQLite database of another application (application_id 0x${info.applicationId.toString(16).padStart(8, '0')}, gikev2 uses 0x${APPLICATION_ID.toString(16)}); refusing to touch it`,
      'point --state at a directory holding a gikev2 state (or an empty one to start afresh); do not reuse another program\'s database file',
      { path: file },
    );
  }
  if (info.version > target) {
    throw new StateError(
      'NEWER_SCHEMA',
      `${file} was written by a newer gikev2: its schema is version ${info.version}, this gikev2 understands up to version ${target}`,
      `run the newer gikev2 release that wrote it, or restore a backup made by a version with schema ${target} or older`,
      { path: file },
    );
  }
  if (info.version < 1) {
    throw new StateError('CORRUPT', `${file} carries the gikev2 mark but no schema version`, 'the file was never fully created; move it aside and restore a backup', { path: file });
  }
}

/**
 * Brings the schema from its current version up to `target` (must be called
 * inside a transaction). A brand-new database (version 0) is initialized:
 * application_id set and every migration run. Returns the versions.
 */
export function migrate(db: Db, target = CURRENT_SCHEMA_VERSION): { from: number; to: number } {
  if (!db.inTransaction) throw new Error('migrate() must run inside a transaction');
  const from = db.pragma('user_version', { simple: true }) as number;
  if (from === 0) db.pragma(`application_id = ${APPLICATION_ID | 0}`);
  for (const m of MIGRATIONS) {
    if (m.version <= from || m.version > target) continue;
    m.up(db);
    db.pragma(`user_version = ${m.version}`);
  }
  return { from, to: Math.max(from, Math.min(target, CURRENT_SCHEMA_VERSION)) };
}
