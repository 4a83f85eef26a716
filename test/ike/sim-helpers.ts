/**
 * Two (or more) IkeEngines on a SimNetwork: each engine is bound to one
 * endpoint, its events are collected, and the simulation drives the clock.
 */
import { IkeEngine, type EngineEvent, type InitiateOptions } from '../../src/ike/engine.ts';
import type { IkeEngineConfig } from '../../src/ike/config.ts';
import { deterministicRandom } from '../../src/crypto/random.ts';
import { SimNetwork, SimClock, Simulation, type FaultPolicy, type SimEndpoint, type SimNode, type SimOutput } from '../sim/network.ts';

/** Simulated time starts at a real date so certificate validity checks behave. */
export const SIM_EPOCH = Date.UTC(2025, 0, 1);

export class EngineNode implements SimNode {
  readonly events: EngineEvent[] = [];
  constructor(
    readonly engine: IkeEngine,
    readonly endpoint: SimEndpoint,
    /** Further sockets; port 4500 ones use the non-ESP marker. */
    readonly extraEndpoints: readonly SimEndpoint[] = [],
  ) {}

  private take(out: { send: SimOutput['send']; events: readonly EngineEvent[] }): SimOutput {
    this.events.push(...out.events);
    return out;
  }
  receive(data: Buffer, from: SimEndpoint, now: number, to: SimEndpoint = this.endpoint): SimOutput {
    return this.take(this.engine.receive(data, from, { ...to, marker: to.port === 4500 }, now));
  }
  timeout(now: number): SimOutput {
    return this.take(this.engine.timeout(now));
  }
  nextTimeout(): number | undefined {
    return this.engine.nextTimeout();
  }
  /** Events of one type. */
  of<T extends EngineEvent['type']>(type: T): Extract<EngineEvent, { type: T }>[] {
    return this.events.filter((e): e is Extract<EngineEvent, { type: T }> => e.type === type);
  }
}

export const INITIATOR_EP: SimEndpoint = { address: '10.0.0.1', port: 500 };
export const RESPONDER_EP: SimEndpoint = { address: '10.0.0.2', port: 500 };

export interface Pair {
  readonly sim: Simulation;
  readonly initiator: EngineNode;
  readonly responder: EngineNode;
  /** Starts an IKE SA from the initiator and returns its id. */
  initiate(options?: Partial<InitiateOptions>): string;
  /** Feeds an engine API call's output into the network. */
  emit(node: EngineNode, out: { send: SimOutput['send']; events: readonly EngineEvent[] }): void;
}

export const FAST_RETRANSMIT = { initialMs: 500, factor: 2, maxMs: 4000, maxTries: 3 } as const;

export function makePair(
  initiatorConfig: IkeEngineConfig,
  responderConfig: IkeEngineConfig,
  opts: { policy?: FaultPolicy; seed?: string; initiatorEndpoint?: SimEndpoint; natT?: boolean } = {},
): Pair {
  const iep = opts.initiatorEndpoint ?? INITIATOR_EP;
  const natT = (ep: SimEndpoint): SimEndpoint[] => (opts.natT ? [{ address: ep.address, port: 4500 }] : []);
  const clock = new SimClock(SIM_EPOCH);
  const sim = new Simulation(new SimNetwork({ clock, latency: 5, ...(opts.policy ? { policy: opts.policy } : {}) }));
  const seed = opts.seed ?? 'sim';
  const initiator = sim.add(
    new EngineNode(
      new IkeEngine({ retransmit: FAST_RETRANSMIT, rng: deterministicRandom(`${seed}-i`), ...initiatorConfig }),
      iep,
      natT(iep),
    ),
  );
  const responder = sim.add(
    new EngineNode(
      new IkeEngine({ retransmit: FAST_RETRANSMIT, rng: deterministicRandom(`${seed}-r`), ...responderConfig }),
      RESPONDER_EP,
      natT(RESPONDER_EP),
    ),
  );
  const emit = (node: EngineNode, out: { send: SimOutput['send']; events: readonly EngineEvent[] }): void => {
    node.events.push(...out.events);
    sim.emit(node, out);
  };
  return {
    sim,
    initiator,
    responder,
    emit,
    initiate(options = {}) {
      const out = initiator.engine.initiate(
        {
          ...RESPONDER_EP,
          local: { ...iep, marker: false },
          ...(opts.natT ? { natT: { address: iep.address, port: 4500, marker: true } } : {}),
          ...options,
        },
        sim.now,
      );
      emit(initiator, out);
      return out.saId;
    },
  };
}

export const PSK = 'interop-test-psk-0123456789';

export function pskConfigs(proposal = 'aes256gcm16-prfsha256-x25519'): [IkeEngineConfig, IkeEngineConfig] {
  return [
    { localId: 'initiator@test', psks: { 'responder@test': PSK }, proposals: [proposal] },
    { localId: 'responder@test', psks: { 'initiator@test': PSK }, proposals: [proposal] },
  ];
}
