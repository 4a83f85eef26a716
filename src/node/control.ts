/**
 * The key server's control socket: a Unix domain socket (mode 0600, so only
 * the daemon's user can connect) carrying JSON lines, one request and one
 * response each, for `gikev2 ctl`.
 *
 *   request:  {"id": 1, "command": "rekey", "group": "video", "kind": "all"}
 *   response: {"id": 1, "ok": true, "result": {...}}
 *             {"id": 1, "ok": false, "error": "group video has no member x"}
 *
 * Requests are validated here (unknown commands, missing or mistyped fields,
 * oversized lines, bad JSON all get an error response) before the daemon's
 * handler sees a typed `ControlRequest`; whatever the handler throws becomes
 * an error response. Nothing a client sends can stop the daemon. Results
 * carry names, counts, SPIs and times only: never key material (the one
 * request that involves a key, rotate-signing-key, names a file the daemon
 * reads itself).
 */
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from './log.ts';

/** Longest request line accepted (a request is a few hundred octets). */
export const CONTROL_MAX_LINE = 64 * 1024;
/** Connections served at once. */
const MAX_CONNECTIONS = 16;
/** An idle connection is closed after this long. */
const IDLE_TIMEOUT_MS = 60_000;

export type ControlRekeyKind = 'tek' | 'kek' | 'all';

export type ControlRequest =
  | { readonly command: 'status' }
  | { readonly command: 'members'; readonly group: string }
  | { readonly command: 'rekey'; readonly group: string; readonly kind: ControlRekeyKind }
  | { readonly command: 'exclude'; readonly group: string; readonly member: string; readonly readmit: boolean }
  | { readonly command: 'readmit'; readonly group: string; readonly member: string }
  | { readonly command: 'rotate-signing-key'; readonly group: string; readonly keyFile: string }
  | { readonly command: 'reload-policy' };

export type ControlCommand = ControlRequest['command'];

export const CONTROL_COMMANDS: readonly ControlCommand[] = ['status', 'members', 'rekey', 'exclude', 'readmit', 'rotate-signing-key', 'reload-policy'];

export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };

export type ControlResponse =
  | { readonly id?: number | string | undefined; readonly ok: true; readonly result: JsonValue }
  | { readonly id?: number | string | undefined; readonly ok: false; readonly error: string };

/** A request the daemon refuses (bad fields, unknown group or member); its message is the error response. */
export class ControlError extends Error {
  override readonly name = 'ControlError';
}

const TEXT_LIMIT = 1024;

function text(o: Readonly<Record<string, unknown>>, field: string): string {
  const v = o[field];
  if (typeof v !== 'string' || v.length === 0) throw new ControlError(`"${field}" must be a non-empty string`);
  if (v.length > TEXT_LIMIT) throw new ControlError(`"${field}" is longer than ${TEXT_LIMIT} characters`);
  return v;
}

function onlyFields(o: Readonly<Record<string, unknown>>, allowed: readonly string[]): void {
  const extra = Object.keys(o).filter((k) => k !== 'id' && k !== 'command' && !allowed.includes(k));
  if (extra.length > 0) throw new ControlError(`unknown field${extra.length === 1 ? '' : 's'} ${extra.map((k) => `"${k}"`).join(', ')}`);
}

/** Checks a decoded JSON value and returns the typed request; throws ControlError saying what is wrong. */
export function parseControlRequest(value: unknown): ControlRequest {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ControlError('a request is a JSON object');
  const o = value as Readonly<Record<string, unknown>>;
  const command = o['command'];
  if (typeof command !== 'string') throw new ControlError('"command" must be a string');
  switch (command) {
    case 'status':
    case 'reload-policy':
      onlyFields(o, []);
      return { command };
    case 'members':
      onlyFields(o, ['group']);
      return { command, group: text(o, 'group') };
    case 'rekey': {
      onlyFields(o, ['group', 'kind']);
      const kind = o['kind'] ?? 'all';
      if (kind !== 'tek' && kind !== 'kek' && kind !== 'all') throw new ControlError('"kind" must be tek, kek or all');
      return { command, group: text(o, 'group'), kind };
    }
    case 'exclude': {
      onlyFields(o, ['group', 'member', 'readmit']);
      const readmit = o['readmit'] ?? false;
      if (typeof readmit !== 'boolean') throw new ControlError('"readmit" must be true or false');
      return { command, group: text(o, 'group'), member: text(o, 'member'), readmit };
    }
    case 'readmit':
      onlyFields(o, ['group', 'member']);
      return { command, group: text(o, 'group'), member: text(o, 'member') };
    case 'rotate-signing-key':
      onlyFields(o, ['group', 'keyFile']);
      return { command, group: text(o, 'group'), keyFile: text(o, 'keyFile') };
    default:
      throw new ControlError(`unknown command "${command.slice(0, 64)}" (commands: ${CONTROL_COMMANDS.join(', ')})`);
  }
}

function requestId(value: unknown): number | string | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const id = (value as { id?: unknown }).id;
  return (typeof id === 'number' && Number.isFinite(id)) || (typeof id === 'string' && id.length <= 128) ? id : undefined;
}

export type ControlHandler = (request: ControlRequest) => JsonValue | Promise<JsonValue>;

/** One request line -> one response (never throws). */
export async function answerControlLine(line: string, handler: ControlHandler, log: Logger): Promise<ControlResponse> {
  let decoded: unknown;
  try {
    decoded = JSON.parse(line);
  } catch {
    return { ok: false, error: 'the request is not valid JSON' };
  }
  const id = requestId(decoded);
  try {
    const request = parseControlRequest(decoded);
    const result = await handler(request);
    return { id, ok: true, result };
  } catch (e) {
    if (!(e instanceof ControlError)) log.error('control request failed', { event: 'internal-error', context: 'control', error: e });
    return { id, ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}

/**
 * Where the control socket lives by default: inside the state directory
 * when there is one, else $XDG_RUNTIME_DIR, /run for root, or the system's
 * temporary directory.
 */
export function defaultControlPath(opts: { readonly stateDir?: string | undefined; readonly env?: NodeJS.ProcessEnv } = {}): string {
  const name = 'gikev2-gcks.sock';
  if (opts.stateDir !== undefined) return join(opts.stateDir, name);
  const env = opts.env ?? process.env;
  const runtime = env['XDG_RUNTIME_DIR'];
  if (runtime) return join(runtime, name);
  if (typeof process.getuid === 'function' && process.getuid() === 0) return join('/run', name);
  return join(tmpdir(), name);
}

/** The path holds a control socket some process still answers on. */
export class ControlSocketInUseError extends Error {
  override readonly name = 'ControlSocketInUseError';
}

function isSocketAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

export interface ControlServerOptions {
  readonly path: string;
  readonly handler: ControlHandler;
  readonly log: Logger;
}

export class ControlServer {
  private readonly connections = new Set<net.Socket>();
  private closing: Promise<void> | undefined;

  private constructor(
    readonly path: string,
    private readonly server: net.Server,
  ) {}

  /**
   * Listens on `path` with mode 0600. A stale socket file (nobody answering)
   * is replaced; a live one is left alone (ControlSocketInUseError); any
   * other file there is an error.
   */
  static async open(options: ControlServerOptions): Promise<ControlServer> {
    const { path, log } = options;
    let existing;
    try {
      existing = lstatSync(path);
    } catch {
      existing = undefined;
    }
    if (existing) {
      if (!existing.isSocket()) throw new Error(`${path} exists and is not a socket`);
      if (await isSocketAlive(path)) throw new ControlSocketInUseError(`${path} is in use by another process (is another key server running?)`);
      unlinkSync(path);
    }
    const server = net.createServer();
    server.maxConnections = MAX_CONNECTIONS;
    const control = new ControlServer(path, server);
    server.on('connection', (socket) => control.serve(socket, options.handler, log));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // The socket file is created with the umask applied: no moment with a wider mode.
      let previous: number | undefined;
      try {
        previous = process.umask(0o177);
      } catch {
        previous = undefined; // worker threads cannot change the umask; chmod below still applies
      }
      try {
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      } finally {
        if (previous !== undefined) process.umask(previous);
      }
    });
    try {
      chmodSync(path, 0o600);
    } catch (e) {
      await control.close();
      throw e;
    }
    server.on('error', (e) => log.error(`control socket ${path}: ${e.message}`, { event: 'internal-error', context: 'control', error: e }));
    return control;
  }

  /** Stops listening, drops the connections and removes the socket file. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      for (const c of this.connections) c.destroy();
      this.server.close(() => resolve());
    }).then(() => {
      try {
        if (lstatSync(this.path).isSocket()) unlinkSync(this.path);
      } catch {
        // already gone
      }
    });
    return this.closing;
  }

  private serve(socket: net.Socket, handler: ControlHandler, log: Logger): void {
    this.connections.add(socket);
    socket.setEncoding('utf8');
    socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.destroy());
    socket.on('close', () => this.connections.delete(socket));
    socket.on('error', () => socket.destroy());
    let buffered = '';
    let refused = false;
    // One request at a time per connection, answered in order.
    let queue = Promise.resolve();
    const reply = (response: ControlResponse): void => {
      if (!socket.destroyed) socket.write(`${JSON.stringify(response)}\n`);
    };
    socket.on('data', (chunk: string) => {
      if (refused) return;
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line === '') continue;
        queue = queue.then(async () => reply(await answerControlLine(line, handler, log)));
      }
      if (buffered.length > CONTROL_MAX_LINE) {
        buffered = '';
        refused = true;
        void queue.then(() => {
          reply({ ok: false, error: `request longer than ${CONTROL_MAX_LINE} octets` });
          socket.end();
        });
      }
    });
  }
}

/** Sends one request and resolves with the response (client side, `gikev2 ctl`). */
export function sendControlRequest(path: string, request: ControlRequest | Readonly<Record<string, unknown>>, timeoutMs = 15_000): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(path);
    let buffered = '';
    let settled = false;
    const finish = (f: () => void): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      f();
    };
    socket.setEncoding('utf8');
    socket.setTimeout(timeoutMs, () => finish(() => reject(new Error(`no answer from ${path} within ${timeoutMs} ms`))));
    socket.once('error', (e) => finish(() => reject(e)));
    socket.once('connect', () => socket.write(`${JSON.stringify({ id: 1, ...request })}\n`));
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      const line = buffered.slice(0, nl);
      finish(() => {
        try {
          const value = JSON.parse(line) as unknown;
          if (value === null || typeof value !== 'object' || typeof (value as { ok?: unknown }).ok !== 'boolean') throw new Error('not a response');
          resolve(value as ControlResponse);
        } catch {
          reject(new Error(`${path} answered something that is not a control response`));
        }
      });
    });
    socket.once('end', () => finish(() => reject(new Error(`${path} closed the connection without an answer`))));
  });
}
