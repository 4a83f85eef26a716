import Database from 'better-sqlite3';
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { StateKek } from '../../src/store/encryption.ts';
import { APPLICATION_ID, CURRENT_SCHEMA_VERSION, MIGRATIONS, readSchemaInfo } from '../../src/store/schema.ts';
import { DATABASE_FILE, openStateDatabase, SqliteStore } from '../../src/store/sqlite.ts';
import { expectStateError, tempDir } from './helpers.ts';

const dirs: string[] = [];
const fresh = (): string => {
  const d = tempDir('schema');
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('schema versions and migrations', () => {
  it('migrations are numbered 1, 2, ... in order, and there are at least two', () => {
    assert.ok(MIGRATIONS.length >= 2);
    MIGRATIONS.forEach((m, i) => assert.equal(m.version, i + 1));
    assert.equal(CURRENT_SCHEMA_VERSION, MIGRATIONS.length);
  });

  it('a new database carries our application_id and the current version', () => {
    const dir = fresh();
    SqliteStore.open({ stateDir: dir, kek: StateKek.generate() }).close();
    const db = new Database(join(dir, DATABASE_FILE), { readonly: true });
    assert.deepEqual(readSchemaInfo(db), { applicationId: APPLICATION_ID, version: CURRENT_SCHEMA_VERSION });
    db.close();
  });

  it('a version 1 database (only the v1 migration run) migrates to the current version, keeping its data', () => {
    const dir = fresh();
    const kek = StateKek.generate();
    const { db } = openStateDatabase(dir, { create: true, kek, createVersion: 1 });
    assert.equal(readSchemaInfo(db).version, 1);
    // Rows as a v1 server wrote them (its audit table had no group_id).
    db.prepare('INSERT INTO counters (name, mark) VALUES (?, ?)').run('group/x/rekey-message-id', 128);
    db.prepare("INSERT INTO audit (at, kind, member_id, reason) VALUES (5, 'rejection', 'gm7', 'bad cert')").run();
    assert.throws(() => db.prepare('SELECT group_id FROM audit').all(), /no such column/);
    db.close();

    const store = SqliteStore.open({ stateDir: dir, kek });
    try {
      assert.equal(store.migratedFrom, 1);
      assert.equal(store.schemaVersion, CURRENT_SCHEMA_VERSION);
      assert.equal(store.reserve('group/x/rekey-message-id', 8).start, 128, 'counters survive the migration');
      assert.deepEqual(store.queryAudit({ memberId: 'gm7' }), [{ seq: 1, at: 5, kind: 'rejection', memberId: 'gm7', reason: 'bad cert' }]);
      store.appendAudit({ at: 6, kind: 'rekey', groupId: 'x' });
      assert.equal(store.queryAudit({ groupId: 'x' }).length, 1, 'the v2 column is in use');
      const indexes = store.database.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'audit_%'").all();
      assert.equal(indexes.length, 3);
      // The file was copied aside before migrating; the copy is still at v1.
      assert.ok(store.preMigrationBackup && existsSync(store.preMigrationBackup));
      const backup = new Database(store.preMigrationBackup, { readonly: true });
      assert.equal(readSchemaInfo(backup).version, 1);
      backup.close();
    } finally {
      store.close();
    }
    const again = SqliteStore.open({ stateDir: dir, kek });
    assert.equal(again.migratedFrom, undefined, 'a second start has nothing to migrate');
    again.close();
  });

  it('a database from a newer schema is refused, naming both versions, and left untouched', () => {
    const dir = fresh();
    const kek = StateKek.generate();
    SqliteStore.open({ stateDir: dir, kek }).close();
    const file = join(dir, DATABASE_FILE);
    const db = new Database(file);
    db.pragma(`user_version = ${CURRENT_SCHEMA_VERSION + 7}`);
    db.close();
    const before = readFileSync(file);
    const e = expectStateError(() => SqliteStore.open({ stateDir: dir, kek }), 'NEWER_SCHEMA');
    assert.match(e.message, new RegExp(`version ${CURRENT_SCHEMA_VERSION + 7}`));
    assert.match(e.message, new RegExp(`up to version ${CURRENT_SCHEMA_VERSION}`));
    assert.deepEqual(readFileSync(file), before);
  });
});
