import Database from 'better-sqlite3';
import { strict as assert } from 'node:assert';
import { randomBytes, createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { StateKek } from '../../src/store/encryption.ts';
import { DATABASE_FILE, SqliteStore } from '../../src/store/sqlite.ts';
import { copyCrashImage, expectStateError, tempDir } from './helpers.ts';
import { isRoot } from '../helpers/tools.ts';

const dirs: string[] = [];
const fresh = (): string => {
  const d = tempDir('sqlite-t');
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const G = 'g1';

function populate(store: SqliteStore, keys: { tek: Buffer; kek: Buffer; tree: Buffer; signing: Buffer }): void {
  store.putGroup({ groupId: G, name: 'grp', policy: { capacity: 100 }, appliedAt: 1 });
  store.putSa({ groupId: G, saId: '00000100', kind: 'data-security', role: 'current', spi: Buffer.from('00000100', 'hex'), attributes: {}, keymat: keys.tek, createdAt: 1, expiresAt: 2 });
  store.putSa({ groupId: G, saId: 'ab'.repeat(16), kind: 'rekey', role: 'current', spi: Buffer.from('ab'.repeat(16), 'hex'), attributes: {}, keymat: keys.kek, createdAt: 1, expiresAt: 2 });
  store.putLkhSnapshot({ groupId: G, meta: { arity: 2 }, tree: keys.tree, savedAt: 1 });
  store.putSigningKey({ keyId: 'sig', algorithm: 'ed25519', privateKey: keys.signing, publicKey: Buffer.alloc(44, 1), createdAt: 1 });
  for (let i = 0; i < 200; i++) {
    store.transaction(() => {
      store.putMember({ groupId: G, memberId: `m${i}`, identity: { fqdn: `m${i}.example` }, status: 'active', registeredAt: i, sender: false, senderIds: [i], leaf: i });
      store.appendRegistration({ groupId: G, memberId: `m${i}`, at: i, details: { senderIds: [i] } });
      store.appendAudit({ at: i, kind: 'registration', groupId: G, memberId: `m${i}` });
    });
  }
}

const knownKeys = () => ({ tek: randomBytes(36), kek: randomBytes(64), tree: randomBytes(32 * 40), signing: randomBytes(48) });

function assertAbsent(haystack: Buffer, secret: Buffer, what: string): void {
  for (let i = 0; i + 16 <= secret.length; i += 16) {
    assert.equal(haystack.indexOf(secret.subarray(i, i + 16)), -1, `${what}: raw key octets found at rest`);
  }
  assert.equal(haystack.indexOf(Buffer.from(secret.toString('hex').slice(0, 32))), -1, `${what}: hex key found at rest`);
  assert.equal(haystack.indexOf(Buffer.from(secret.toString('base64').slice(0, 20))), -1, `${what}: base64 key found at rest`);
}

describe('SqliteStore: key material at rest', () => {
  it('no raw key octets in the database file or its WAL, before and after a checkpoint', () => {
    const dir = fresh();
    const kek = StateKek.generate();
    const keys = knownKeys();
    const store = SqliteStore.open({ stateDir: dir, kek });
    populate(store, keys);
    const wal = readFileSync(join(dir, `${DATABASE_FILE}-wal`));
    assert.ok(wal.length > 0, 'the WAL holds the writes');
    const live = Buffer.concat([readFileSync(join(dir, DATABASE_FILE)), wal]);
    // Sanity: the test would see plaintext if it were there (member IDs are stored in clear).
    assert.notEqual(live.indexOf(Buffer.from('m199.example')), -1);
    for (const [name, secret] of Object.entries(keys)) assertAbsent(live, secret, name);
    // Reading back through the store gives the plaintext.
    assert.deepEqual(store.getSa(G, '00000100')?.keymat, keys.tek);
    assert.deepEqual(store.getLkhSnapshot(G)?.tree, keys.tree);
    store.close();
    const closed = readFileSync(join(dir, DATABASE_FILE));
    for (const [name, secret] of Object.entries(keys)) assertAbsent(closed, secret, name);
  });

  it('a record copied into another row fails authentication (the AAD binds table and key)', () => {
    const dir = fresh();
    const kek = StateKek.generate();
    const store = SqliteStore.open({ stateDir: dir, kek });
    populate(store, knownKeys());
    store.close();
    const db = new Database(join(dir, DATABASE_FILE));
    const sealed = db.prepare<[], { keymat: Buffer }>("SELECT keymat FROM sas WHERE sa_id = '00000100'").get()!.keymat;
    db.prepare('UPDATE sas SET keymat = ? WHERE kind = ?').run(sealed, 'rekey');
    db.close();
    const reopened = SqliteStore.open({ stateDir: dir, kek });
    assert.ok(reopened.getSa(G, '00000100'));
    expectStateError(() => reopened.getSa(G, 'ab'.repeat(16)), 'CORRUPT');
    reopened.close();
  });
});

describe('SqliteStore: start-up refuses what it cannot trust', () => {
  it('wrong KEK: StateError KEK_WRONG naming both KEK ids, nothing changed', () => {
    const dir = fresh();
    const kek = StateKek.generate();
    SqliteStore.open({ stateDir: dir, kek }).close();
    const other = StateKek.generate();
    const before = readFileSync(join(dir, DATABASE_FILE));
    const e = expectStateError(() => SqliteStore.open({ stateDir: dir, kek: other }), 'KEK_WRONG');
    assert.match(e.message, new RegExp(other.id));
    assert.match(e.message, new RegExp(kek.id));
    assert.equal(e.exitCode, 78);
    assert.deepEqual(readFileSync(join(dir, DATABASE_FILE)), before);
    SqliteStore.open({ stateDir: dir, kek }).close();
  });

  it('missing KEK: refused, and no database is created', () => {
    const dir = fresh();
    expectStateError(() => SqliteStore.open({ stateDir: dir, kek: undefined }), 'KEK_MISSING');
    assert.equal(existsSync(join(dir, DATABASE_FILE)), false);
  });

  it('truncated file (half, inside the header, zero length): CORRUPT', () => {
    const kek = StateKek.generate();
    for (const cut of [(n: number) => Math.floor(n / 2 / 4096) * 4096, (n: number) => Math.floor(n / 2) + 100, () => 50, () => 0]) {
      const dir = fresh();
      const store = SqliteStore.open({ stateDir: dir, kek });
      populate(store, knownKeys());
      store.close();
      const file = join(dir, DATABASE_FILE);
      truncateSync(file, cut(statSync(file).size));
      const e = expectStateError(() => SqliteStore.open({ stateDir: dir, kek }), 'CORRUPT');
      assert.match(e.recovery, /state import/);
      assert.equal(e.exitCode, 65);
    }
  });

  it("another application's SQLite file: FOREIGN_DATABASE, and the file is left untouched", () => {
    const dir = fresh();
    const file = join(dir, DATABASE_FILE);
    const db = new Database(file);
    db.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('alice');");
    db.close();
    const hash = createHash('sha256').update(readFileSync(file)).digest('hex');
    const e = expectStateError(() => SqliteStore.open({ stateDir: dir, kek: StateKek.generate() }), 'FOREIGN_DATABASE');
    assert.match(e.message, /another application/);
    assert.equal(createHash('sha256').update(readFileSync(file)).digest('hex'), hash);
  });

  it('a text file in place of the database: NOT_A_DATABASE', () => {
    const dir = fresh();
    writeFileSync(join(dir, DATABASE_FILE), 'groups:\n  - name: oops\n'.repeat(300));
    expectStateError(() => SqliteStore.open({ stateDir: dir, kek: StateKek.generate() }), 'NOT_A_DATABASE');
  });

  it('unusable state paths: STATE_DIR_UNREADABLE, never an empty group in their place', () => {
    const kek = StateKek.generate();
    const base = fresh();
    const notDir = join(base, 'file');
    writeFileSync(notDir, 'x');
    expectStateError(() => SqliteStore.open({ stateDir: notDir, kek }), 'STATE_DIR_UNREADABLE');
    const dbIsDir = join(base, 'd');
    mkdirSync(join(dbIsDir, DATABASE_FILE), { recursive: true });
    expectStateError(() => SqliteStore.open({ stateDir: dbIsDir, kek }), 'STATE_DIR_UNREADABLE');
    // A missing database next to its WAL is lost state, not "no state yet".
    const walOnly = join(base, 'w');
    mkdirSync(walOnly);
    writeFileSync(join(walOnly, `${DATABASE_FILE}-wal`), randomBytes(4096));
    expectStateError(() => SqliteStore.open({ stateDir: walOnly, kek }), 'CORRUPT');
    assert.equal(existsSync(join(walOnly, DATABASE_FILE)), false);
    if (!isRoot()) {
      const locked = join(base, 'l');
      SqliteStore.open({ stateDir: locked, kek }).close();
      chmodSync(locked, 0o000);
      try {
        expectStateError(() => SqliteStore.open({ stateDir: locked, kek }), 'STATE_DIR_UNREADABLE');
        expectStateError(() => SqliteStore.open({ stateDir: locked, kek: undefined }), 'STATE_DIR_UNREADABLE');
      } finally {
        chmodSync(locked, 0o700);
      }
    }
  });

  it('a second process on the same state: LOCKED', () => {
    const dir = fresh();
    const kek = StateKek.generate();
    const first = SqliteStore.open({ stateDir: dir, kek });
    try {
      const e = expectStateError(() => SqliteStore.open({ stateDir: dir, kek, busyTimeoutMs: 50 }), 'LOCKED');
      assert.equal(e.exitCode, 75);
    } finally {
      first.close();
    }
  });
});

describe('SqliteStore: reservations survive a crash', () => {
  it('a crash image resumes above the last reservation; values never repeat', () => {
    const dir = fresh();
    const kek = StateKek.generate();
    const store = SqliteStore.open({ stateDir: dir, kek });
    const handedOut = new Set<number>();
    let lastEnd = 0;
    for (let round = 0; round < 10; round++) {
      const r = store.reserve('rekey-message-id', 1 + round);
      assert.equal(r.start, lastEnd);
      // Use part of the block, then "crash".
      for (let v = r.start; v < r.start + Math.ceil((r.end - r.start) / 2); v++) handedOut.add(v);
      lastEnd = r.end;
      const image = copyCrashImage(dir);
      dirs.push(image);
      const after = SqliteStore.open({ stateDir: image, kek });
      const next = after.reserve('rekey-message-id', 4);
      assert.equal(next.start, lastEnd, 'resumes exactly above the last committed reservation');
      for (let v = next.start; v < next.end; v++) assert.ok(!handedOut.has(v));
      after.close();
    }
    store.close();
  });

  it('a transaction holding critical writes is followed by a durable (FULL) commit', () => {
    const dir = fresh();
    const kek = StateKek.generate();
    const store = SqliteStore.open({ stateDir: dir, kek });
    store.transaction(() => store.putMember({ groupId: G, memberId: 'm', identity: null, status: 'active', registeredAt: 0, sender: false, senderIds: [] }));
    const barrier = (): Buffer | undefined =>
      store.database.prepare<[], { value: Buffer }>("SELECT value FROM meta WHERE key = 'sync-barrier'").get()?.value;
    assert.equal(barrier(), undefined, 'members-only transactions need no fsync');
    store.transaction(() => store.putSa({ groupId: G, saId: '01', kind: 'data-security', role: 'current', spi: Buffer.of(1), attributes: null, keymat: Buffer.alloc(16), createdAt: 0, expiresAt: 1 }));
    assert.equal(barrier()?.toString(), '1');
    store.close();
  });

  it('group and tree writes marked non-critical (a registration) need no fsync; by default they are critical', () => {
    const dir = fresh();
    const store = SqliteStore.open({ stateDir: dir, kek: StateKek.generate() });
    const barrier = (): string | undefined =>
      store.database.prepare<[], { value: Buffer }>("SELECT value FROM meta WHERE key = 'sync-barrier'").get()?.value.toString();
    store.transaction(() => {
      store.putGroup({ groupId: G, name: 'grp', policy: { n: 1 }, appliedAt: 1 }, { critical: false });
      store.putLkhSnapshot({ groupId: `${G}#lkh/0/0`, meta: {}, tree: Buffer.of(1, 2), savedAt: 1 }, { critical: false });
    });
    assert.equal(barrier(), undefined);
    assert.deepEqual(store.getGroup(G)?.policy, { n: 1 });
    assert.deepEqual(store.getLkhSnapshot(`${G}#lkh/0/0`)?.tree, Buffer.of(1, 2));
    store.transaction(() => store.putLkhSnapshot({ groupId: `${G}#lkh/0/0`, meta: {}, tree: Buffer.of(3), savedAt: 2 }));
    assert.equal(barrier(), '1');
    store.transaction(() => store.putGroup({ groupId: G, name: 'grp', policy: { n: 2 }, appliedAt: 2 }, { critical: true }));
    assert.equal(barrier(), '2');
    store.close();
  });
});

describe('SqliteStore: file permissions', () => {
  it('the database and its WAL are readable by the owner only', () => {
    const dir = fresh();
    const store = SqliteStore.open({ stateDir: dir, kek: StateKek.generate() });
    try {
      store.putGroup({ groupId: G, name: 'grp', policy: {}, appliedAt: 1 });
      for (const name of [DATABASE_FILE, `${DATABASE_FILE}-wal`]) {
        const path = join(dir, name);
        if (!existsSync(path)) continue;
        assert.equal(statSync(path).mode & 0o777, 0o600, `${name} mode`);
      }
      assert.ok(existsSync(join(dir, DATABASE_FILE)));
    } finally {
      store.close();
    }
  });
});
