import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { exportState, exportStateToFile, importState, importStateFromFile } from '../../src/store/backup.ts';
import { StateKek } from '../../src/store/encryption.ts';
import { CURRENT_SCHEMA_VERSION } from '../../src/store/schema.ts';
import { DATABASE_FILE, openStateDatabase, SqliteStore } from '../../src/store/sqlite.ts';
import type { KeyServerStore } from '../../src/store/store.ts';
import { expectStateError, tempDir } from './helpers.ts';

const dirs: string[] = [];
const fresh = (): string => {
  const d = tempDir('backup');
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const G = 'grp';
const tek = randomBytes(36);
const signing = randomBytes(48);

function populate(s: KeyServerStore): void {
  s.putGroup({ groupId: G, name: 'g', policy: { capacity: 5, tags: ['a', 'b'] }, appliedAt: 1 });
  s.putSa({ groupId: G, saId: '00000100', kind: 'data-security', role: 'current', spi: Buffer.from('00000100', 'hex'), attributes: { encr: 20 }, keymat: tek, createdAt: 1, expiresAt: 9 });
  s.putLkhSnapshot({ groupId: G, meta: { arity: 4 }, tree: randomBytes(320), savedAt: 2 });
  s.putSigningKey({ keyId: 'k', algorithm: 'ecdsa-p256', privateKey: signing, publicKey: randomBytes(91), createdAt: 3 });
  s.reserve(`${G}/spi`, 256, { floor: 0x100 });
  s.reserve(`${G}/sender-id/00000100`, 256);
  for (let i = 0; i < 20; i++) {
    s.putMember({ groupId: G, memberId: `m${i}`, identity: { id: i }, status: i % 5 === 0 ? 'excluded' : 'active', registeredAt: i, sender: true, senderIds: [i], leaf: i });
    s.appendRegistration({ groupId: G, memberId: `m${i}`, at: i, details: { senderIds: [i] } });
    s.appendAudit({ at: i, kind: 'registration', groupId: G, memberId: `m${i}` });
  }
  s.appendAudit({ at: 50, kind: 'rejection', memberId: 'intruder', reason: 'not in the group' });
}

function snapshot(s: KeyServerStore): unknown {
  return {
    groups: s.listGroups(),
    sas: s.listSas(G),
    members: s.listMembers(G),
    history: s.registrationHistory(G, 'm3'),
    tree: s.getLkhSnapshot(G),
    keys: s.listSigningKeys(),
    counters: s.listCounters(),
    audit: s.queryAudit({ kind: ['registration', 'rejection'] }),
  };
}

describe('state export and import', () => {
  it('round trip: everything comes back, key material stays sealed in the export', () => {
    const src = fresh();
    const kek = StateKek.generate();
    const store = SqliteStore.open({ stateDir: src, kek });
    populate(store);
    const expected = snapshot(store);
    const file = join(fresh(), 'backup.jsonl');
    const summary = exportStateToFile(store, file); // a live store exports through its own connection
    assert.equal(summary.schemaVersion, CURRENT_SCHEMA_VERSION);
    store.close();
    const text = readFileSync(file, 'utf8');
    const header = JSON.parse(text.split('\n')[0]!) as { schemaVersion: number; kekId: string };
    assert.equal(header.schemaVersion, CURRENT_SCHEMA_VERSION);
    assert.equal(header.kekId, kek.id);
    for (const secret of [tek, signing]) {
      assert.ok(!text.includes(secret.toString('base64').slice(0, 16)) && !text.includes(secret.toString('hex').slice(0, 16)), 'raw keys in the export');
    }

    const dst = join(fresh(), 'restored');
    const imported = importStateFromFile(dst, file, { kek });
    assert.equal(imported.rows, summary.rows);
    const restored = SqliteStore.open({ stateDir: dst, kek });
    assert.deepEqual(snapshot(restored), expected);
    assert.equal(restored.queryAudit({ kind: 'state' })[0]?.reason, 'imported from backup');
    assert.equal(restored.reserve(`${G}/spi`, 1).start, 0x200, 'counters continue above the backup');
    restored.close();
  });

  it('exports a closed state directory without the KEK; refuses while a daemon holds it', () => {
    const src = fresh();
    const kek = StateKek.generate();
    const store = SqliteStore.open({ stateDir: src, kek });
    populate(store);
    expectStateError(() => exportState(src, () => undefined), 'LOCKED');
    store.close();
    const lines: string[] = [];
    const summary = exportState(src, (l) => lines.push(l));
    assert.equal(lines.length, summary.rows + 2);
  });

  it('refuses a non-empty target unless forced; forcing moves the old database aside', () => {
    const kek = StateKek.generate();
    const src = fresh();
    const s = SqliteStore.open({ stateDir: src, kek });
    populate(s);
    s.close();
    const lines: string[] = [];
    exportState(src, (l) => lines.push(l));
    const text = `${lines.join('\n')}\n`;

    const target = fresh();
    SqliteStore.open({ stateDir: target, kek }).close();
    expectStateError(() => importState(target, text, { kek }), 'IMPORT_TARGET_NOT_EMPTY');
    const other = fresh();
    writeFileSync(join(other, 'notes.txt'), 'x');
    expectStateError(() => importState(other, text), 'IMPORT_TARGET_NOT_EMPTY');
    const result = importState(target, text, { kek, force: true });
    assert.ok(result.replaced && existsSync(result.replaced));
    const restored = SqliteStore.open({ stateDir: target, kek });
    assert.equal(restored.listMembers(G).length, 20);
    restored.close();
  });

  it('refuses a truncated or edited backup, and a KEK that does not match it', () => {
    const kek = StateKek.generate();
    const src = fresh();
    const s = SqliteStore.open({ stateDir: src, kek });
    populate(s);
    s.close();
    const lines: string[] = [];
    exportState(src, (l) => lines.push(l));
    const text = `${lines.join('\n')}\n`;
    expectStateError(() => importState(join(fresh(), 'a'), text.slice(0, Math.floor(text.length * 0.7))), 'BACKUP_INVALID');
    expectStateError(() => importState(join(fresh(), 'b'), text.replace('"m3"', '"m33"')), 'BACKUP_INVALID');
    expectStateError(() => importState(join(fresh(), 'c'), 'hello\nworld\n'), 'BACKUP_INVALID');
    const target = join(fresh(), 'd');
    expectStateError(() => importState(target, text, { kek: StateKek.generate() }), 'KEK_WRONG');
    assert.equal(existsSync(join(target, DATABASE_FILE)), false, 'a failed import leaves no database behind');
  });

  it('a backup from schema version 1 imports and migrates', () => {
    const kek = StateKek.generate();
    const src = fresh();
    const { db } = openStateDatabase(src, { create: true, kek, createVersion: 1 });
    db.prepare("INSERT INTO audit (at, kind, member_id, reason) VALUES (1, 'rejection', 'gm', 'expired cert')").run();
    db.prepare('INSERT INTO counters (name, mark) VALUES (?, ?)').run('c', 77);
    db.close();
    const lines: string[] = [];
    assert.equal(exportState(src, (l) => lines.push(l)).schemaVersion, 1);
    const dst = join(fresh(), 'x');
    const r = importState(dst, lines.join('\n'), { kek });
    assert.deepEqual([r.fromSchemaVersion, r.schemaVersion], [1, CURRENT_SCHEMA_VERSION]);
    const store = SqliteStore.open({ stateDir: dst, kek });
    assert.equal(store.counterMark('c'), 77);
    assert.equal(store.queryAudit({ memberId: 'gm' })[0]?.reason, 'expired cert');
    store.close();
  });
});
