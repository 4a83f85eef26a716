/**
 * Counters never repeat across crashes: a child process takes values in a
 * loop and is killed with SIGKILL at random points, again and again, on the
 * same state directory; every value it printed (used) must be unique and
 * each run must continue above everything earlier runs used.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { KEK_ENV_VARIABLE, StateKek } from '../../src/store/encryption.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { tempDir } from './helpers.ts';
import { randomBytes } from 'node:crypto';

const FIXTURE = fileURLToPath(new URL('./fixtures/reserve-loop.ts', import.meta.url));
const RUNS = 24;

interface RunResult {
  readonly values: Map<string, number[]>;
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string;
}

function runAndKill(stateDir: string, keyHex: string, killAfterReadyMs: number | undefined, killAfterSpawnMs: number): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, stateDir], {
      env: { ...process.env, [KEK_ENV_VARIABLE]: keyHex },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let stderr = '';
    let armed = false;
    const kill = (): void => void child.kill('SIGKILL');
    if (killAfterReadyMs === undefined) setTimeout(kill, killAfterSpawnMs);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      if (!armed && killAfterReadyMs !== undefined && out.includes('ready\n')) {
        armed = true;
        setTimeout(kill, killAfterReadyMs);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (_code, signal) => {
      const values = new Map<string, number[]>();
      // Only complete lines: a value counts as used once its line is out.
      for (const line of out.split('\n').slice(0, -1)) {
        const [name, v] = line.split(' ');
        if (name === 'ready' || v === undefined) continue;
        const list = values.get(name!) ?? [];
        list.push(Number(v));
        values.set(name!, list);
      }
      resolvePromise({ values, signal, stderr });
    });
  });
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('SqliteStore: SIGKILL during a reserve loop', () => {
  it(`values never repeat across ${RUNS} kills at random points`, { timeout: 180_000 }, async () => {
    const stateDir = join(tempDir('crash'), 'state');
    dirs.push(stateDir, join(stateDir, '..'));
    const key = randomBytes(32);
    const seen = new Map<string, Set<number>>();
    const maxSoFar = new Map<string, number>();
    let killedMidLoop = 0;
    for (let run = 0; run < RUNS; run++) {
      // Mostly kill while the loop runs; sometimes during start-up (creation, checks).
      const duringStartup = run % 6 === 5;
      const result = await runAndKill(stateDir, key.toString('hex'), duringStartup ? undefined : Math.random() * 120, Math.random() * 800);
      assert.equal(result.signal, 'SIGKILL', `run ${run} ended by itself: ${result.stderr}`);
      if (result.values.size > 0) killedMidLoop++;
      for (const [name, values] of result.values) {
        const set = seen.get(name) ?? new Set<number>();
        const floor = maxSoFar.get(name) ?? -1;
        for (const v of values) {
          assert.ok(!set.has(v), `run ${run}: ${name} value ${v} was used before`);
          assert.ok(v > floor, `run ${run}: ${name} value ${v} is not above ${floor}, the highest of earlier runs`);
          set.add(v);
        }
        seen.set(name, set);
        maxSoFar.set(name, Math.max(floor, ...values));
      }
    }
    assert.ok(killedMidLoop >= 15, `only ${killedMidLoop} runs were killed inside the loop`);
    // The state is intact and the next reservation is above everything used.
    const store = SqliteStore.open({ stateDir, kek: new StateKek(key) });
    try {
      for (const [name, max] of maxSoFar) assert.ok(store.reserve(name, 1).start > max);
      assert.ok(store.queryAudit({ kind: 'registration' }).length > 0);
    } finally {
      store.close();
    }
  });
});
