/**
 * Store throughput: durable block reservations per second, counter values
 * per second through CounterAllocator, and registration-style writes per
 * second (member row + registration history + audit entry in one
 * transaction, plus a Sender-ID), MemoryStore against SqliteStore in both
 * durability modes. Run: node --import tsx bench/store.ts
 * Prints a table and writes bench/results/store.json.
 */
import { mkdirSync, rmSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CounterAllocator } from '../src/store/counters.ts';
import { StateKek } from '../src/store/encryption.ts';
import { MemoryStore } from '../src/store/memory.ts';
import { SqliteStore, type Durability } from '../src/store/sqlite.ts';
import type { KeyServerStore } from '../src/store/store.ts';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 1.5);

function rate(fn: (i: number) => void): number {
  const end = performance.now() + SECONDS * 1000;
  let n = 0;
  const start = performance.now();
  while (performance.now() < end) {
    for (let k = 0; k < 16; k++) fn(n++);
  }
  return n / ((performance.now() - start) / 1000);
}

interface Row {
  readonly store: string;
  readonly reservationsPerSecond: number;
  readonly allocatorValuesPerSecond: number;
  readonly registrationWritesPerSecond: number;
}

function measure(label: string, open: () => { store: KeyServerStore; dispose: () => void }): Row {
  const { store, dispose } = open();
  try {
    const reservationsPerSecond = rate(() => void store.reserve('bench/reserve', 64));
    const values = new CounterAllocator(store, 'bench/values', { blockSize: 256 });
    const allocatorValuesPerSecond = rate(() => void values.next());
    const senderIds = new CounterAllocator(store, 'bench/sender-id', { blockSize: 256 });
    const registrationWritesPerSecond = rate((i) => {
      const memberId = `gm-${i % 10_000}`;
      const senderId = senderIds.next();
      store.transaction(() => {
        store.putMember({ groupId: 'bench', memberId, identity: { type: 'FQDN', data: `${memberId}.example.net` }, status: 'active', registeredAt: i, sender: true, senderIds: [senderId], leaf: i % 10_000 });
        store.appendRegistration({ groupId: 'bench', memberId, at: i, details: { senderIds: [senderId], spis: ['00000101'], messageId: 7 } });
        store.appendAudit({ at: i, kind: 'registration', groupId: 'bench', memberId });
      });
    });
    return { store: label, reservationsPerSecond, allocatorValuesPerSecond, registrationWritesPerSecond };
  } finally {
    dispose();
  }
}

function sqlite(durability: Durability) {
  return () => {
    const dir = mkdtempSync(join(tmpdir(), 'gikev2-bench-store-'));
    const store = SqliteStore.open({ stateDir: dir, kek: StateKek.generate(), durability });
    return { store, dispose: () => (store.close(), rmSync(dir, { recursive: true, force: true })) };
  };
}

const rows: Row[] = [
  measure('memory', () => {
    const store = new MemoryStore();
    return { store, dispose: () => store.close() };
  }),
  measure('sqlite (durability critical)', sqlite('critical')),
  measure('sqlite (durability full)', sqlite('full')),
];

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US').padStart(12);
console.log(`Store throughput (${SECONDS} s per cell, state in ${tmpdir()})\n`);
console.log('store                          reserve/s   values/s  registrations/s');
for (const r of rows) console.log(`${r.store.padEnd(28)}${fmt(r.reservationsPerSecond)}${fmt(r.allocatorValuesPerSecond)}${fmt(r.registrationWritesPerSecond)}`);
const out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'store.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), node: process.version, seconds: SECONDS, rows }, null, 2) + '\n');
console.log(`\nwrote ${out}`);
