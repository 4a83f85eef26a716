/**
 * Runs a sans-I/O service on UDP sockets for a daemon: the UdpAdapter, the
 * key log, logging of every event and of every exception (a daemon never
 * crashes on a packet: what the service throws is caught, counted by the
 * adapter and logged), and an orderly stop.
 */
import type { EngineEvent } from '../ike/engine.ts';
import type { DatagramEngine, LocalEndpoint, Output } from '../ike/io-types.ts';
import type { Clock } from './clock.ts';
import type { KeylogFile } from './daemon-support.ts';
import type { Logger } from './log.ts';
import { UdpAdapter, type SocketSpec } from './udp.ts';

/** Logs one event (never with key material). */
export type HostedLog<E> = (event: E) => void;

export interface ServiceHostOptions<E> {
  readonly engine: DatagramEngine<E>;
  readonly sockets: readonly SocketSpec[];
  readonly clock: Clock;
  readonly log: Logger;
  /** Where `keylog` events go; without it they are dropped (and should not be produced). */
  readonly keylog?: KeylogFile | undefined;
  readonly describe: HostedLog<E>;
  readonly onEvent?: ((event: E) => void) | undefined;
}

function isKeylogEvent(e: unknown): e is Extract<EngineEvent, { type: 'keylog' }> {
  return typeof e === 'object' && e !== null && (e as { type?: unknown }).type === 'keylog' && typeof (e as { line?: unknown }).line === 'string';
}

export class ServiceHost<E> {
  private stopping: Promise<void> | undefined;

  private constructor(
    private readonly adapter: UdpAdapter<E>,
    private readonly options: ServiceHostOptions<E>,
  ) {}

  static async open<E>(options: ServiceHostOptions<E>): Promise<ServiceHost<E>> {
    const { log } = options;
    // The adapter calls onEvent, which needs the host; bind late.
    const ref: { host?: ServiceHost<E> } = {};
    const adapter = await UdpAdapter.open<E>(options.engine, options.sockets, {
      clock: options.clock,
      onEvent: (e) => ref.host?.handle(e),
      onError: (err, context) => log.error(`${context} failed: ${err.message}`, { event: 'internal-error', context, error: err }),
    });
    const host = new ServiceHost(adapter, options);
    ref.host = host;
    return host;
  }

  get locals(): readonly LocalEndpoint[] {
    return this.adapter.locals;
  }

  get counters(): UdpAdapter<E>['counters'] {
    return this.adapter.counters;
  }

  /** Key log lines written so far. */
  get keylogLines(): number {
    return this.options.keylog?.lines ?? 0;
  }

  /** Runs a service call outside receive/timeout (start, leave, shutdown). */
  act(call: (now: number) => Output<E>): void {
    this.adapter.act(call);
  }

  /** Binds one more socket while running (multicast receive or send sockets). */
  addSocket(spec: SocketSpec): Promise<LocalEndpoint> {
    return this.adapter.addSocket(spec);
  }

  /** Closes a socket added with `addSocket` (or opened at start). */
  removeSocket(local: LocalEndpoint): Promise<boolean> {
    return this.adapter.removeSocket(local);
  }

  /**
   * Stops: `farewell` (Deletes for the IKE SAs) is sent, then we wait until
   * `done()` or `graceMs`, then the sockets and the key log close.
   */
  stop(farewell: ((now: number) => Output<E>) | undefined, done: () => boolean, graceMs: number): Promise<void> {
    this.stopping ??= (async () => {
      if (farewell) this.adapter.act(farewell);
      const deadline = Date.now() + graceMs;
      while (Date.now() < deadline) {
        let finished = false;
        try {
          finished = done();
        } catch {
          finished = true;
        }
        if (finished) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      await this.adapter.close();
      this.options.keylog?.close();
    })();
    return this.stopping;
  }

  private handle(e: E): void {
    if (isKeylogEvent(e)) {
      // The line itself holds keys: it goes to the key log file and nowhere else.
      if (this.options.keylog) {
        try {
          this.options.keylog.write(e.line);
          this.options.log.debug('key log line written', { event: 'keylog', saId: e.saId, file: this.options.keylog.path });
        } catch (err) {
          this.options.log.error('cannot write the key log', { event: 'internal-error', context: 'keylog', error: err });
        }
      }
      this.options.onEvent?.(e);
      return;
    }
    try {
      this.options.describe(e);
    } catch (err) {
      this.options.log.error('cannot log an event', { event: 'internal-error', context: 'log', error: err });
    }
    this.options.onEvent?.(e);
  }
}

/** Log lines for the IKE engine's own events (SA life, failures, drops). */
export function describeEngineEvent(log: Logger, e: EngineEvent): void {
  switch (e.type) {
    case 'sa-established': {
      const a = e.algorithms;
      const alg = [`${a.encr}${a.encrKeyLength ? `/${a.encrKeyLength}` : ''}`, a.integ, a.prf, a.ke, a.kwa].filter((x) => x && x !== 'NONE').join(', ');
      log.info(
        `IKE SA ${e.spiI}/${e.spiR} with ${e.peerId} (${e.peer.address}:${e.peer.port}) established by ${e.exchange}: ${alg}` +
          `${e.extensionRefused ? `; registration refused with ${e.extensionRefused}` : ''}`,
        {
          event: 'sa-established',
          saId: e.saId,
          role: e.role,
          spiI: e.spiI,
          spiR: e.spiR,
          exchange: e.exchange,
          localId: e.localId,
          peerId: e.peerId,
          peer: `${e.peer.address}:${e.peer.port}`,
          algorithms: e.algorithms,
          nat: { local: e.natLocal, remote: e.natRemote },
          fragmentation: e.fragmentation,
          extensionRefused: e.extensionRefused,
          childSaRefused: e.childSaRefused,
        },
      );
      return;
    }
    case 'sa-deleted':
      log.info(`IKE SA ${e.spiI}/${e.spiR} closed (${e.reason})`, { event: 'sa-deleted', saId: e.saId, spiI: e.spiI, spiR: e.spiR, reason: e.reason });
      return;
    case 'sa-rekeyed':
      log.info(`IKE SA rekeyed, now ${e.spiI}/${e.spiR}`, { event: 'sa-rekeyed', oldSaId: e.oldSaId, saId: e.saId, spiI: e.spiI, spiR: e.spiR, algorithms: e.algorithms });
      return;
    case 'exchange-failed':
      log.warn(`${e.exchange} failed: ${e.notify} (${e.reason}; ${e.detectedLocally ? 'detected here' : 'reported by the peer'})`, {
        event: 'exchange-failed',
        saId: e.saId,
        exchange: e.exchange,
        notify: e.notify,
        detectedLocally: e.detectedLocally,
        reason: e.reason,
      });
      return;
    case 'liveness-ok':
      log.debug('peer is alive', { event: 'liveness-ok', saId: e.saId });
      return;
    case 'keylog':
      // Handled by the host; never logged.
      return;
    case 'dropped':
      log.debug(`dropped a datagram from ${e.from.address}:${e.from.port}: ${e.reason}`, { event: 'dropped', from: `${e.from.address}:${e.from.port}`, reason: e.reason });
      return;
  }
}
