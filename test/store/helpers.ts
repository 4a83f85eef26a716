import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StateKek } from '../../src/store/encryption.ts';
import { StateError, type StateErrorCode } from '../../src/store/errors.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { DATABASE_FILE, SqliteStore, type SqliteStoreOptions } from '../../src/store/sqlite.ts';
import type { KeyServerStore } from '../../src/store/store.ts';

export function tempDir(label = 'store'): string {
  return mkdtempSync(join(tmpdir(), `gikev2-${label}-`));
}

export interface StoreHarness {
  readonly store: KeyServerStore;
  /** Clean close and reopen; undefined for stores that do not persist. */
  readonly reopen?: () => KeyServerStore;
  /** Opens a copy of the files as they are on disk right now, without closing: what a crash leaves. */
  readonly crashImage?: () => KeyServerStore;
  dispose(): void;
}

export function memoryHarness(): StoreHarness {
  const store = new MemoryStore();
  return { store, dispose: () => store.close() };
}

/** Copies the database and its WAL as they are on disk (what SIGKILL or a power cut at this instant leaves, minus the page cache question). */
export function copyCrashImage(stateDir: string): string {
  const copy = tempDir('crash');
  for (const suffix of ['', '-wal']) {
    const f = join(stateDir, DATABASE_FILE + suffix);
    if (existsSync(f)) copyFileSync(f, join(copy, DATABASE_FILE + suffix));
  }
  return copy;
}

export function sqliteHarness(options: Partial<SqliteStoreOptions> = {}): StoreHarness & { readonly stateDir: string; readonly kek: StateKek } {
  const stateDir = tempDir('sqlite');
  const kek = StateKek.generate();
  const open = (dir: string): SqliteStore => SqliteStore.open({ stateDir: dir, kek, ...options });
  const opened: SqliteStore[] = [open(stateDir)];
  const dirs = [stateDir];
  const harness = {
    stateDir,
    kek,
    get store(): KeyServerStore {
      return opened[0]!;
    },
    reopen(): KeyServerStore {
      opened[0]!.close();
      opened[0] = open(stateDir);
      return opened[0];
    },
    crashImage(): KeyServerStore {
      const dir = copyCrashImage(stateDir);
      dirs.push(dir);
      const s = open(dir);
      opened.push(s);
      return s;
    },
    dispose(): void {
      for (const s of opened) s.close();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    },
  };
  return harness;
}

/** Asserts that `fn` throws a StateError with this code, and returns it. */
export function expectStateError(fn: () => unknown, code: StateErrorCode): StateError {
  try {
    fn();
  } catch (e) {
    if (e instanceof StateError && e.code === code) {
      if (e.message.length < 20 || e.recovery.length < 10) throw new Error(`StateError ${code} without a helpful message: ${e.describe()}`);
      return e;
    }
    throw new Error(`expected StateError ${code}, got ${e instanceof StateError ? `StateError ${e.code}: ${e.message}` : String(e)}`, { cause: e });
  }
  throw new Error(`expected StateError ${code}, nothing was thrown`);
}
