/**
 * The key server process of bench/registration.ts: the real GcksDaemon on a
 * loopback port, driven over IPC (start, stats, stop) so that its CPU time
 * and memory can be measured apart from the load generators. Run with
 * --expose-gc so that memory is measured after a full collection.
 */
import { createPrivateKey, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Session } from 'node:inspector/promises';
import { loadGcksConfig } from '../src/gcks/config.ts';
import type { GcksServiceEvent } from '../src/gcks/service.ts';
import { GcksDaemon } from '../src/node/gcks-daemon.ts';
import { silentLogger } from '../src/node/log.ts';
import { KEK_ENV_VARIABLE } from '../src/store/encryption.ts';
import { gcksYaml, type ServerReply, type ServerRequest, type ServerStart } from './registration-common.ts';

let daemon: GcksDaemon | undefined;
let rejected = 0;
let profiler: Session | undefined;
let profileFile: string | undefined;
let stateDir: string | undefined;

function reply(m: ServerReply): void {
  process.send?.(m);
}

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) {
    g();
    g();
  }
}

async function start(m: ServerStart): Promise<void> {
  const config = loadGcksConfig(gcksYaml(m.auth, m.capacity), 'bench-gcks.yaml');
  daemon = await GcksDaemon.start({
    load: () => ({
      config,
      trustAnchors: m.pki ? [m.pki.ca] : [],
      signingKeys: new Map(),
      ...(m.pki ? { certificate: { chain: [m.pki.cert], privateKey: createPrivateKey(m.pki.key) } } : {}),
    }),
    logger: silentLogger,
    sockets: [{ address: '127.0.0.1', port: 0, marker: false }],
    // --state: a fresh state directory with a generated KEK (in the environment given to the daemon only).
    ...(m.state ? { state: { stateDir: (stateDir = join(mkdtempSync(join(tmpdir(), 'gikev2-bench-state-')), 'state')), env: { [KEK_ENV_VARIABLE]: randomBytes(32).toString('hex') } } } : {}),
    onEvent: (e: GcksServiceEvent) => {
      if (e.type === 'registration-rejected') rejected++;
    },
  });
  if (m.profile) {
    profiler = new Session();
    profiler.connect();
    await profiler.post('Profiler.enable');
    await profiler.post('Profiler.start');
    profileFile = m.profile;
  }
  reply({ kind: 'listening', port: daemon.locals[0]!.port });
}

function stats(): void {
  gc();
  const mem = process.memoryUsage();
  const cpu = process.cpuUsage();
  const service = daemon?.service;
  reply({
    kind: 'stats',
    memory: mem.heapUsed + mem.external,
    heapUsed: mem.heapUsed,
    external: mem.external,
    rss: mem.rss,
    cpuMicros: cpu.user + cpu.system,
    members: service ? service.groups().reduce((n, g) => n + g.members, 0) : 0,
    ikeSas: service ? service.ikeSas().length : 0,
    rejected,
    engineErrors: daemon?.counters.engineErrors ?? 0,
    ikeReceived: daemon?.counters.ikeReceived ?? 0,
    ikeSent: daemon?.counters.ikeSent ?? 0,
  });
}

process.on('message', (raw: ServerRequest) => {
  void (async () => {
    try {
      switch (raw.kind) {
        case 'start':
          await start(raw);
          return;
        case 'stats':
          stats();
          return;
        case 'stop':
          if (profiler && profileFile) {
            const { profile } = await profiler.post('Profiler.stop');
            writeFileSync(profileFile, JSON.stringify(profile));
          }
          await daemon?.stop(0);
          if (stateDir) rmSync(join(stateDir, '..'), { recursive: true, force: true });
          reply({ kind: 'stopped' });
          process.disconnect?.();
          return;
      }
    } catch (e) {
      reply({ kind: 'error', message: e instanceof Error ? (e.stack ?? e.message) : String(e) });
    }
  })();
});
