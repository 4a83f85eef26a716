/**
 * Load generator for bench/ike-responder.ts, run as a child process so that
 * the responder's process.cpuUsage() counts only the responder: our own
 * initiator engine behind a UdpAdapter on loopback, keeping `concurrency`
 * IKE SAs in flight until `sas` are established. Asked to 'burn', it keeps
 * its core busy with X25519 until told to stop, so that the crypto ceiling
 * can also be measured with a busy neighbour, as the responder had one.
 */
import { createKeyExchange } from '../src/crypto/ke.ts';
import { IkeEngine, type EngineEvent } from '../src/ike/engine.ts';
import { UdpAdapter } from '../src/node/udp.ts';
import { engineConfig, RESPONDER_ID, type LoadReport, type LoadRequest } from './ike-bench-common.ts';

function report(r: LoadReport): void {
  process.send?.(r);
}

async function run(req: LoadRequest): Promise<void> {
  const engine = new IkeEngine({
    ...engineConfig(req.creds, 'initiator'),
    retransmit: { initialMs: 2000, factor: 1.5, maxMs: 8000, maxTries: 4 },
  });
  let started = 0;
  let established = 0;
  let failed = 0;
  let retransmissions = 0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const adapter: UdpAdapter<EngineEvent> = await UdpAdapter.open<EngineEvent>(engine, [{ address: req.address, port: 0, marker: false }], {
    onEvent: (e) => {
      if (e.type === 'sa-established') established++;
      else if (e.type === 'exchange-failed' && e.saId.startsWith('ike-')) failed++;
      else return;
      if (established + failed >= req.sas) finish();
      else if (started < req.sas) startOne();
    },
  });
  const startOne = (): void => {
    started++;
    adapter.act((now) => engine.initiate({ address: req.address, port: req.port, remoteId: RESPONDER_ID }, now));
  };
  for (let k = 0; k < Math.min(req.concurrency, req.sas); k++) startOne();
  await finished;
  const cpu = process.cpuUsage(cpu0);
  const sent = adapter.counters.ikeSent;
  // Two requests per SA when nothing is lost; the rest are retransmissions.
  retransmissions = Math.max(0, sent - 2 * (established + failed));
  await adapter.close();
  report({ type: 'done', established, failed, retransmissions, wallMs: performance.now() - t0, cpuMicros: cpu.user + cpu.system });
}

let burning = false;
function burn(): void {
  const peer = createKeyExchange(31).publicValue;
  const t0 = performance.now();
  while (performance.now() - t0 < 20) createKeyExchange(31).computeSecret(peer);
  if (burning) setImmediate(burn);
}

process.on('message', (m: LoadRequest | { type: 'burn' | 'stop' }) => {
  if (m.type === 'burn') {
    burning = true;
    burn();
  } else if (m.type === 'stop') {
    burning = false;
    report({ type: 'stopped' });
  } else if (m.type === 'run') {
    run(m).then(
      () => report({ type: 'idle' }),
      (e: unknown) => {
        console.error(e);
        process.exit(1);
      },
    );
  }
});
report({ type: 'ready' });
