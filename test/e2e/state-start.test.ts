/**
 * The real key server daemon with `--state DIR`: an older schema migrates at
 * start-up, a truncated or foreign database file is refused with a clear
 * message and its exit code, and a restart restores the groups' SAs.
 */
import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { StateKek } from '../../src/store/encryption.ts';
import { openStateDatabase } from '../../src/store/sqlite.ts';
import { assertNoStackTrace, CliProcess, freeUdpPort } from './daemon-harness.ts';

const tmp = mkdtempSync(join(tmpdir(), 'gikev2-state-start-'));
const running: CliProcess[] = [];
after(() => {
  for (const p of running) p.kill();
  rmSync(tmp, { recursive: true, force: true });
});

const keyHex = 'a1'.repeat(32);
const keyFile = join(tmp, 'state.key');
writeFileSync(keyFile, `${keyHex}\n`, { mode: 0o600 });

function config(port: number): string {
  const file = join(tmp, `gcks-${port}.yaml`);
  writeFileSync(
    file,
    `
identity: "@gcks.e2e.example"
listen:
  - {address: 127.0.0.1, port: ${port}}
credentials:
  psks:
    - member: any
      secret: "state test pre-shared key, long enough"
groups:
  - name: video
    id: {type: ID_KEY_ID, value: video}
    members: {any: true}
    dataSecurity:
      - destination: {address: 239.1.1.1, protocol: udp, port: 5000}
    rekey:
      destination: {address: 239.0.0.1}
      authentication: implicit
`,
  );
  return file;
}

async function gcks(stateDir: string): Promise<CliProcess> {
  const p = new CliProcess('gcks', ['gcks', '-c', config(await freeUdpPort()), '--state', stateDir, '--state-key-file', keyFile]);
  running.push(p);
  return p;
}

describe('gikev2 gcks --state (real daemon)', { timeout: 60_000 }, () => {
  it('restores its groups after SIGKILL: same Rekey SA and Data-Security SPIs', async () => {
    const dir = join(tmp, 'restart');
    const first = await gcks(dir);
    const [g1] = await first.waitForEvent('group');
    first.signal('SIGKILL');
    await first.exited;
    const second = await gcks(dir);
    const [g2] = await second.waitForEvent('group');
    assert.equal(g2!['rekeySpi'], g1!['rekeySpi']);
    assert.deepEqual(g2!['dataSecuritySpis'], g1!['dataSecuritySpis']);
    second.signal('SIGTERM');
    await second.exited;
  });

  it('migrates a database of an older schema at start-up', async () => {
    const dir = join(tmp, 'old');
    const { db } = openStateDatabase(dir, { create: true, kek: new StateKek(Buffer.from(keyHex, 'hex')), createVersion: 1 });
    db.close();
    const p = await gcks(dir);
    const [migrated] = await p.waitForEvent('state-migrated');
    assert.equal(migrated!['from'], 1);
    await p.waitForEvent('started');
    p.signal('SIGTERM');
    await p.exited;
  });

  for (const [label, make, code, words] of [
    ['truncated', (file: string) => writeFileSync(file, readFileSync(file).subarray(0, 1000)), 65, /truncated|malformed|corrupt|damaged/i],
    ['foreign', (file: string) => {
      rmSync(file);
      const db = new Database(file);
      db.exec('CREATE TABLE recipes (name TEXT)');
      db.close();
    }, 65, /another application|not a gikev2|foreign/i],
  ] as const) {
    it(`refuses a ${label} database file with a clear message and exit code ${code}`, async () => {
      const dir = join(tmp, label);
      mkdirSync(dir, { recursive: true });
      const first = await gcks(dir);
      await first.waitForEvent('started');
      first.signal('SIGTERM');
      await first.exited;
      rmSync(join(dir, 'gcks.db-wal'), { force: true });
      rmSync(join(dir, 'gcks.db-shm'), { force: true });
      make(join(dir, 'gcks.db'));
      const p = await gcks(dir);
      const exit = await p.exited;
      const text = p.stdout + p.stderr;
      assert.equal(exit.code, code, text);
      assert.match(text, words);
      assert.match(text, /recover/i);
      assertNoStackTrace(text);
    });
  }
});
