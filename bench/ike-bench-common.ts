/**
 * What the responder benchmark and its load generator (a separate process)
 * share: the suites, their credentials in a form that crosses the IPC
 * channel, and the engine configurations of both sides.
 */
import { createPrivateKey } from 'node:crypto';
import { createSelfSignedCa, issueEndEntity } from '../src/crypto/x509-builder.ts';
import type { IkeEngineConfig } from '../src/ike/config.ts';

export const PROPOSAL = 'aes256gcm16-prfsha256-x25519';
export const PSK = 'bench-psk-0123456789abcdef';
export const RESPONDER_ID = 'responder@bench.example';
export const INITIATOR_ID = 'initiator@bench.example';

export type SuiteName = 'x25519-psk' | 'x25519-ecdsa-p256';
export const SUITES: readonly SuiteName[] = ['x25519-psk', 'x25519-ecdsa-p256'];

/** Certificates as DER (base64) and private keys as PKCS#8 PEM: plain JSON for IPC. */
export interface Credentials {
  readonly suite: SuiteName;
  readonly caDer?: string;
  readonly responder?: { readonly chain: string[]; readonly keyPem: string };
  readonly initiator?: { readonly chain: string[]; readonly keyPem: string };
}

export function makeCredentials(suite: SuiteName): Credentials {
  if (suite === 'x25519-psk') return { suite };
  const notBefore = new Date(Date.now() - 86_400_000);
  const notAfter = new Date(Date.now() + 365 * 86_400_000);
  const ca = createSelfSignedCa({ subject: { O: 'gikev2 bench', CN: 'Bench Root' }, keySpec: 'ec-p256', notBefore, notAfter });
  const ee = (id: string): { chain: string[]; keyPem: string } => {
    const c = issueEndEntity(ca, { subject: { O: 'gikev2 bench', CN: id }, keySpec: 'ec-p256', notBefore, notAfter, subjectAltName: { email: [id] } });
    return { chain: [c.der.toString('base64')], keyPem: c.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
  };
  return { suite, caDer: ca.der.toString('base64'), responder: ee(RESPONDER_ID), initiator: ee(INITIATOR_ID) };
}

/** One side's engine configuration (without rng/retransmit/half-open tuning). */
export function engineConfig(creds: Credentials, side: 'responder' | 'initiator'): IkeEngineConfig {
  const localId = side === 'responder' ? RESPONDER_ID : INITIATOR_ID;
  const own = side === 'responder' ? creds.responder : creds.initiator;
  const base: IkeEngineConfig = { localId, proposals: [PROPOSAL], certificateTime: () => new Date() };
  if (!own || !creds.caDer) return { ...base, psks: { '*': PSK } };
  return {
    ...base,
    certificate: { chain: own.chain.map((c) => Buffer.from(c, 'base64')), privateKey: createPrivateKey(own.keyPem) },
    trustAnchors: [Buffer.from(creds.caDer, 'base64')],
  };
}

/** Parent -> load generator. */
export interface LoadRequest {
  readonly type: 'run';
  readonly creds: Credentials;
  readonly address: string;
  readonly port: number;
  readonly sas: number;
  readonly concurrency: number;
}

/** Load generator -> parent. */
export type LoadReport =
  | { readonly type: 'ready' }
  /** The run is over; the process stays for 'burn'. */
  | { readonly type: 'idle' }
  | { readonly type: 'stopped' }
  | {
      readonly type: 'done';
      readonly established: number;
      readonly failed: number;
      readonly retransmissions: number;
      readonly wallMs: number;
      /** The load generator's own CPU (user + system), µs. */
      readonly cpuMicros: number;
    };
