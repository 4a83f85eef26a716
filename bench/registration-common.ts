/**
 * Shared by the registration benchmark's processes: the configurations and
 * the messages exchanged over IPC.
 */
export type AuthKind = 'psk' | 'ecdsa';

export const BENCH_PSK = 'registration benchmark pre-shared key';
export const GROUP_ID = 'bench-group';

export interface ServerStart {
  readonly kind: 'start';
  readonly auth: AuthKind;
  readonly capacity: number;
  /** PEM: CA certificate and the server's certificate and key (ecdsa). */
  readonly pki?: { readonly ca: string; readonly cert: string; readonly key: string } | undefined;
  /** Write a CPU profile of the server to this file (--cpu-prof style). */
  readonly profile?: string | undefined;
  /** Durable state (`--state`): the daemon's SQLite store in a fresh temporary directory, a generated KEK. */
  readonly state?: boolean | undefined;
}

export interface ServerStats {
  readonly kind: 'stats';
  /** After a full GC: heapUsed + external (includes ArrayBuffers) in octets. */
  readonly memory: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly rss: number;
  /** process.cpuUsage() user + system, microseconds. */
  readonly cpuMicros: number;
  readonly members: number;
  readonly ikeSas: number;
  readonly rejected: number;
  readonly engineErrors: number;
  readonly ikeReceived: number;
  readonly ikeSent: number;
}

export type ServerRequest = ServerStart | { readonly kind: 'stats' } | { readonly kind: 'stop' };
export type ServerReply = { readonly kind: 'listening'; readonly port: number } | ServerStats | { readonly kind: 'stopped' } | { readonly kind: 'error'; readonly message: string };

export interface LoadStart {
  readonly kind: 'start';
  readonly auth: AuthKind;
  readonly port: number;
  readonly first: number;
  readonly count: number;
  /** Members registering at the same time from one source address (the server allows 5 half-open per source). */
  readonly perSource: number;
  /** Source addresses (127.x.y.z) this generator uses. */
  readonly sources: readonly string[];
  readonly pki?: { readonly ca: string; readonly caKey: string } | undefined;
  /** Report after this long even if not every member registered. */
  readonly deadlineMs: number;
}

export type LoadRequest = LoadStart;
export type LoadReply =
  | { readonly kind: 'ready'; readonly prepareMs: number }
  | { readonly kind: 'done'; readonly latenciesMs: readonly number[]; readonly errors: number; readonly errorSamples: readonly string[]; readonly firstStart: number; readonly lastDone: number; readonly cpuMicros: number }
  | { readonly kind: 'error'; readonly message: string };

export function gcksYaml(auth: AuthKind, capacity: number): string {
  return `
identity: "@gcks.bench.example"
listen: [{address: 127.0.0.1, port: 1}]
credentials:
${auth === 'psk' ? `  psks:\n    - member: any\n      secret: "${BENCH_PSK}"` : '  certificate: server.crt\n  privateKey: server.key\n  trustAnchors: [ca.crt]'}
groups:
  - name: bench
    id: {type: ID_KEY_ID, value: ${GROUP_ID}}
    capacity: ${capacity}
    members: {any: true}
    dataSecurity:
      - destination: {address: 239.1.1.1, protocol: udp, port: 5000}
    rekey:
      destination: {address: 239.0.0.1}
      authentication: implicit
`;
}

export function gmYaml(auth: AuthKind, port: number): string {
  return `
identity: "@m0.bench.example"
credentials: ${auth === 'psk' ? `{psk: {secret: "${BENCH_PSK}"}}` : '{certificate: m.crt, privateKey: m.key}'}
keyServers: [{address: 127.0.0.1, port: ${port}, id: "@gcks.bench.example"}]
groups:
  - id: {type: ID_KEY_ID, value: ${GROUP_ID}}
    accept:
      rekey: {authentication: [implicit, signature]}
`;
}
