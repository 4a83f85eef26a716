/**
 * Backup of the key server state as one JSONL document (`gikev2 state
 * export|import`): a header line (format, schema version, KEK id), one line
 * per row, and a trailer with the row count and a SHA-256 over every
 * preceding line, so a truncated or edited backup is refused.
 *
 * Rows are copied as stored: key material stays sealed under the KEK (the
 * AAD names table and primary key, which an import preserves), so exporting
 * needs no KEK and a backup file alone reveals no key. Importing only into
 * an empty state directory (unless forced, which moves the old database
 * aside) builds the database under a temporary name at the backup's schema
 * version, migrates it to the current one, and renames it into place.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { StateKek } from './encryption.ts';
import { StateError } from './errors.ts';
import { APPLICATION_ID, checkSchema, CURRENT_SCHEMA_VERSION, migrate, readSchemaInfo, TABLES, type TableName } from './schema.ts';
import { checkKek, DATABASE_FILE, openStateDatabase, SqliteStore, translateError } from './sqlite.ts';

export const EXPORT_FORMAT = 'gikev2-state-export';
export const EXPORT_FORMAT_VERSION = 1;

export interface ExportHeader {
  readonly format: typeof EXPORT_FORMAT;
  readonly formatVersion: number;
  readonly schemaVersion: number;
  readonly applicationId: number;
  /** Names the KEK the key material is sealed under (not the KEK). */
  readonly kekId: string | null;
  readonly exportedAt: string;
}

export interface ExportSummary {
  readonly schemaVersion: number;
  readonly rows: number;
  readonly sha256: string;
}

type Cell = string | number | bigint | null | Buffer;
type EncodedCell = string | number | null | { $b64: string };

function encodeCell(v: Cell): EncodedCell {
  if (Buffer.isBuffer(v)) return { $b64: v.toString('base64') };
  if (typeof v === 'bigint') return Number(v);
  return v;
}

function decodeCell(v: unknown, where: string): Cell {
  if (v === null || typeof v === 'string' || typeof v === 'number') return v;
  if (typeof v === 'object' && '$b64' in v && typeof v.$b64 === 'string') return Buffer.from(v.$b64, 'base64');
  throw invalid(`${where}: unexpected value`);
}

function invalid(detail: string): StateError {
  return new StateError('BACKUP_INVALID', `the backup is not a usable gikev2 state export: ${detail}`, 'use an untouched file written by `gikev2 state export`; a truncated or edited backup cannot be imported');
}

function exportFrom(db: Database.Database, sink: (line: string) => void): ExportSummary {
  const hash = createHash('sha256');
  const emit = (obj: unknown): void => {
    const line = JSON.stringify(obj);
    hash.update(`${line}\n`);
    sink(line);
  };
  const info = readSchemaInfo(db);
  db.exec('BEGIN'); // one consistent snapshot
  let rows = 0;
  try {
    const kekId = db.prepare<[string], { value: Buffer }>('SELECT value FROM meta WHERE key = ?').get('kek-id')?.value.toString('utf8') ?? null;
    const header: ExportHeader = { format: EXPORT_FORMAT, formatVersion: EXPORT_FORMAT_VERSION, schemaVersion: info.version, applicationId: info.applicationId, kekId, exportedAt: new Date().toISOString() };
    emit(header);
    for (const table of TABLES) {
      for (const row of db.prepare<[], Record<string, Cell>>(`SELECT * FROM ${table} ORDER BY rowid`).iterate()) {
        const out: Record<string, EncodedCell> = {};
        for (const [k, v] of Object.entries(row)) out[k] = encodeCell(v);
        emit({ table, row: out });
        rows++;
      }
    }
  } finally {
    db.exec('COMMIT');
  }
  const sha256 = hash.digest('hex');
  sink(JSON.stringify({ end: true, rows, sha256 }));
  return { schemaVersion: info.version, rows, sha256 };
}

/**
 * Exports the state of a directory (opened without the KEK; refused with
 * LOCKED while a daemon holds it) or of an open store, line by line.
 */
export function exportState(source: string | SqliteStore, sink: (line: string) => void): ExportSummary {
  if (source instanceof SqliteStore) {
    if (source.inTransaction) throw new Error('exportState() inside a transaction');
    return exportFrom(source.database, sink);
  }
  const { db, file } = openStateDatabase(source, { lock: 'shared' });
  try {
    return exportFrom(db, sink);
  } catch (e) {
    throw translateError(e, file);
  } finally {
    db.close();
  }
}

/** Writes the export to `file` (mode 0600, atomically: temporary name, fsync, rename). */
export function exportStateToFile(source: string | SqliteStore, file: string): ExportSummary {
  const target = resolve(file);
  const temp = `${target}.partial`;
  const fd = openSync(temp, 'w', 0o600);
  let summary: ExportSummary;
  try {
    summary = exportState(source, (line) => void writeSync(fd, `${line}\n`));
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(temp, target);
  return summary;
}

export interface ImportOptions {
  /** Replace existing state (the old database is moved aside, not deleted). */
  readonly force?: boolean;
  /** When given, the backup's key check value must match it. */
  readonly kek?: StateKek | undefined;
}

export interface ImportSummary {
  readonly rows: number;
  readonly fromSchemaVersion: number;
  readonly schemaVersion: number;
  /** Where a forced import moved the previous database. */
  readonly replaced: string | undefined;
}

interface ParsedBackup {
  readonly header: ExportHeader;
  readonly rows: Array<{ table: TableName; row: Record<string, Cell> }>;
}

export function parseBackup(text: string): ParsedBackup {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (lines.length < 2) throw invalid('too short (no header or no trailer)');
  const parse = (line: string, n: number): unknown => {
    try {
      return JSON.parse(line) as unknown;
    } catch {
      throw invalid(`line ${n} is not JSON`);
    }
  };
  const hash = createHash('sha256');
  for (const line of lines.slice(0, -1)) hash.update(`${line}\n`);
  const trailer = parse(lines[lines.length - 1]!, lines.length);
  if (typeof trailer !== 'object' || trailer === null || !('end' in trailer) || !('sha256' in trailer) || !('rows' in trailer)) {
    throw invalid('the trailer line is missing (truncated?)');
  }
  if (trailer.sha256 !== hash.digest('hex')) throw invalid('the checksum does not match (truncated or edited)');
  if (trailer.rows !== lines.length - 2) throw invalid('the row count does not match');
  const header = parse(lines[0]!, 1) as Partial<ExportHeader>;
  if (header.format !== EXPORT_FORMAT) throw invalid('no gikev2 export header');
  if (header.formatVersion !== EXPORT_FORMAT_VERSION) throw invalid(`export format version ${String(header.formatVersion)} is not supported`);
  if (typeof header.schemaVersion !== 'number' || header.applicationId !== APPLICATION_ID) throw invalid('the header has no schema version or a foreign application id');
  const rows: ParsedBackup['rows'] = [];
  lines.slice(1, -1).forEach((line, i) => {
    const entry = parse(line, i + 2) as { table?: unknown; row?: unknown };
    if (typeof entry.table !== 'string' || !(TABLES as readonly string[]).includes(entry.table)) throw invalid(`line ${i + 2}: unknown table`);
    if (typeof entry.row !== 'object' || entry.row === null) throw invalid(`line ${i + 2}: no row`);
    const row: Record<string, Cell> = {};
    for (const [k, v] of Object.entries(entry.row)) row[k] = decodeCell(v, `line ${i + 2}`);
    rows.push({ table: entry.table as TableName, row });
  });
  return { header: header as ExportHeader, rows };
}

/** Imports a backup document into an empty (or, with `force`, replaced) state directory. */
export function importState(stateDir: string, text: string, options: ImportOptions = {}): ImportSummary {
  const { header, rows } = parseBackup(text);
  const dir = resolve(stateDir);
  const file = join(dir, DATABASE_FILE);
  checkSchema({ applicationId: header.applicationId, version: header.schemaVersion }, 'the backup');
  let replaced: string | undefined;
  if (existsSync(dir)) {
    const entries = readdirSync(dir);
    if (entries.length > 0 && !options.force) {
      throw new StateError(
        'IMPORT_TARGET_NOT_EMPTY',
        `the state directory ${dir} is not empty (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', ...' : ''}); importing would replace live state`,
        'import into a new, empty directory, or pass --force to move the existing database aside',
        { path: dir },
      );
    }
  }
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw translateError(e, dir);
  }
  const temp = `${file}.importing`;
  for (const f of [temp, `${temp}-journal`]) rmSync(f, { force: true });
  const db = new Database(temp);
  try {
    db.pragma('journal_mode = DELETE');
    db.pragma('synchronous = FULL');
    db.exec('BEGIN IMMEDIATE');
    migrate(db, header.schemaVersion);
    const columns = new Map<string, Set<string>>();
    for (const table of TABLES) {
      columns.set(table, new Set(db.prepare<[], { name: string }>(`SELECT name FROM pragma_table_info('${table}')`).all().map((c) => c.name)));
    }
    const statements = new Map<string, Database.Statement<Cell[]>>();
    for (const { table, row } of rows) {
      const names = Object.keys(row);
      const known = columns.get(table)!;
      for (const n of names) if (!known.has(n)) throw invalid(`table ${table} has no column ${n} at schema version ${header.schemaVersion}`);
      const sql = `INSERT INTO ${table} (${names.map((n) => `"${n}"`).join(', ')}) VALUES (${names.map(() => '?').join(', ')})`;
      let stmt = statements.get(sql);
      if (!stmt) {
        stmt = db.prepare<Cell[]>(sql);
        statements.set(sql, stmt);
      }
      stmt.run(...names.map((n) => row[n] ?? null));
    }
    const migrated = migrate(db);
    if (options.kek) checkKek(db, options.kek, 'the backup');
    db.prepare('INSERT INTO audit (at, kind, reason, details) VALUES (?, ?, ?, ?)').run(
      Date.now(),
      'state',
      'imported from backup',
      JSON.stringify({ exportedAt: header.exportedAt, fromSchemaVersion: header.schemaVersion, schemaVersion: migrated.to, rows: rows.length }),
    );
    checkSchema(readSchemaInfo(db), temp);
    db.exec('COMMIT');
    db.close();
    const fd = openSync(temp, 'r');
    fsyncSync(fd);
    closeSync(fd);
    // Only now, with the new database complete, is the old one moved aside.
    if (existsSync(file)) {
      replaced = `${file}.replaced-${Date.now()}`;
      for (const suffix of ['', '-wal', '-shm']) if (existsSync(file + suffix)) renameSync(file + suffix, replaced + suffix);
    }
    renameSync(temp, file);
    const dfd = openSync(dir, 'r');
    fsyncSync(dfd);
    closeSync(dfd);
    return { rows: rows.length, fromSchemaVersion: header.schemaVersion, schemaVersion: CURRENT_SCHEMA_VERSION, replaced };
  } catch (e) {
    if (db.open) db.close();
    rmSync(temp, { force: true });
    if (e instanceof StateError) throw e;
    if (e instanceof Error && 'code' in e && typeof e.code === 'string' && e.code.startsWith('SQLITE_CONSTRAINT')) throw invalid(`a row violates the schema (${e.message})`);
    throw translateError(e, file);
  }
}

export function importStateFromFile(stateDir: string, backupFile: string, options: ImportOptions = {}): ImportSummary {
  let text: string;
  try {
    text = readFileSync(backupFile, 'utf8');
  } catch (e) {
    throw new StateError('BACKUP_INVALID', `cannot read the backup ${backupFile}: ${(e as Error).message}`, 'check the path and permissions of the backup file', { path: backupFile, cause: e });
  }
  return importState(stateDir, text, options);
}
