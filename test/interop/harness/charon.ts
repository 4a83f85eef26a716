/**
 * strongSwan's charon as an independent IKEv2 peer for interop tests.
 *
 *     const a = await startCharon({ name: 'init', port: 5000, portNatT: 5001, connections: [...], psks: [...] });
 *     try { await a.initiate('t1'); const [sa] = await a.listSas('t1'); } finally { await a.stop(); }
 *
 * Facts the engine author needs (verified with strongSwan 5.9.8, Debian 12):
 * - If neither of charon's ports is 500 (e.g. 5000/5001 on loopback) charon
 *   prefixes EVERY IKE message with the 4-octet non-ESP marker (as on port
 *   4500) and expects it on receipt; a datagram without it is taken for ESP
 *   and silently dropped. `handle.usesNonEspMarker` says which case applies.
 *   Inside a network namespace leave both ports unset to get 500/4500.
 * - No `children` => `--initiate --ike` sends a childless IKE_AUTH (no
 *   SA/TSi/TSr, RFC 6023); as responder charon sends CHILDLESS_IKEV2_SUPPORTED.
 * - With log.ike >= 4 (default here) charon logs SKEYSEED and Sk_d/ei/er/
 *   (ai/ar)/pi/pr as hex dumps; charonIkeKeys() parses them so the engine's
 *   SK_* derivation can be compared with charon's, and capture.ts can
 *   decrypt captures. For AEAD, Sk_ei/Sk_er include the salt (36 bytes for
 *   AES-GCM-256) and there is no Sk_ai/Sk_ar. Such logs contain secrets
 *   (also the PSK): test use only.
 * - AES-GCM needs the `gcm` (or `openssl`) plugin from Debian's
 *   libstrongswan-standard-plugins; ChaCha20-Poly1305 is `chapoly`; `kdf`
 *   is required for any IKE SA ("key derivation failed" without it).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync, existsSync, fstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, watch, writeFileSync,
  type FSWatcher,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { isRoot, requireTool } from '../../helpers/tools.ts';

// ---------------------------------------------------------------------------
// process helpers (also used by capture.ts)
// ---------------------------------------------------------------------------
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a command with a hard timeout (SIGKILL); never rejects. */
export function runCmd(file: string, args: readonly string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      [...args],
      { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: env ?? process.env },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { killed?: boolean; signal?: NodeJS.Signals | null; code?: unknown }) | null;
        const code = e === null ? 0 : typeof e.code === 'number' ? e.code : null;
        resolve({
          code,
          signal: e?.signal ?? null,
          stdout,
          stderr: e !== null && code === null && e.killed !== true ? `${stderr}${e.message}` : stderr,
          timedOut: e?.killed === true,
        });
      },
    );
  });
}

/** Resolves when `child` has exited (immediately if it already has). */
export function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = (): void => {
      clearTimeout(t);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

/** SIGTERM (or `first`), wait up to graceMs, then SIGKILL and wait again. */
export async function terminate(child: ChildProcess, graceMs = 5000, first: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(first);
  if (await waitExit(child, graceMs)) return;
  child.kill('SIGKILL');
  await waitExit(child, 5000);
}

/**
 * Waits until `check()` returns a value (not undefined), re-checking on fs
 * events in the directory of `watchPath` and every `pollMs` as a fallback.
 * Rejects after `timeoutMs`, or as soon as `abort()` returns an error message.
 */
export function waitFor<T>(
  check: () => T | undefined,
  opts: { watchPath?: string; timeoutMs: number; pollMs?: number; what: string; abort?: () => string | undefined },
): Promise<T> {
  return new Promise((resolve, reject) => {
    let watcher: FSWatcher | undefined;
    let done = false;
    const finish = (err: Error | undefined, v?: T): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      clearInterval(poll);
      watcher?.close();
      if (err) reject(err);
      else resolve(v as T);
    };
    const tick = (): void => {
      if (done) return;
      let v: T | undefined;
      try {
        v = check();
      } catch (e) {
        finish(e instanceof Error ? e : new Error(String(e)));
        return;
      }
      if (v !== undefined) return finish(undefined, v);
      const why = opts.abort?.();
      if (why !== undefined) finish(new Error(`while waiting for ${opts.what}: ${why}`));
    };
    const deadline = setTimeout(() => finish(new Error(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what}`)), opts.timeoutMs);
    const poll = setInterval(tick, opts.pollMs ?? 25);
    if (opts.watchPath !== undefined) {
      const dir = existsSync(opts.watchPath) ? opts.watchPath : dirname(opts.watchPath);
      const name = basename(opts.watchPath);
      try {
        watcher = watch(dir, { persistent: false }, (_ev, f) => {
          if (dir !== opts.watchPath && f !== null && f !== name) return;
          tick();
        });
        watcher.on('error', () => undefined);
      } catch {
        // directory not there yet: the poll covers it
      }
    }
    tick();
  });
}

/** Last `n` lines of a text, for error messages. */
export function tail(text: string, n = 40): string {
  const lines = text.split('\n');
  return lines.slice(Math.max(0, lines.length - n)).join('\n');
}

// ---------------------------------------------------------------------------
// charon
// ---------------------------------------------------------------------------

export const CHARON_BIN = '/usr/sbin/charon-systemd';
export const SWANCTL_BIN = '/usr/sbin/swanctl';
export const PLUGIN_DIR = '/usr/lib/ipsec/plugins';

/**
 * Plugins loaded by default. `gcm` and `openssl` come from Debian's
 * libstrongswan-standard-plugins (without them charon has no AES-GCM);
 * `chapoly` (ChaCha20-Poly1305) and `kdf` from libstrongswan(-extra-plugins).
 * Plugins whose .so is missing are dropped from the list (see
 * missingCharonPlugins() to gate a test on them).
 */
export const DEFAULT_PLUGINS = [
  'random', 'nonce', 'openssl', 'pem', 'pkcs1', 'pkcs8', 'x509', 'pubkey', 'constraints', 'revocation',
  'curve25519', 'aes', 'sha1', 'sha2', 'hmac', 'gcm', 'chapoly', 'kdf',
  'kernel-netlink', 'socket-default', 'vici',
] as const;

/** Plugins (by strongswan name) whose shared object is not installed. */
export function missingCharonPlugins(names: readonly string[]): string[] {
  return names.filter((n) => !existsSync(join(PLUGIN_DIR, `libstrongswan-${n}.so`)));
}

/**
 * requireTool-style gate for charon: root, charon-systemd, swanctl and the
 * given plugins (default: the ones AES-GCM/X25519/PSK tests need).
 */
export function charonUnavailable(plugins: readonly string[] = ['gcm', 'openssl', 'kdf', 'curve25519', 'vici']): string | undefined {
  if (!isRoot()) return requireTool('root', ['false'], 'charon needs root (CAP_NET_ADMIN for kernel-netlink)');
  const r = requireTool('charon-systemd', ['test', '-x', CHARON_BIN], 'strongSwan interop peer');
  if (r !== undefined) return r;
  const s = requireTool('swanctl', ['test', '-x', SWANCTL_BIN], 'strongSwan control tool');
  if (s !== undefined) return s;
  const missing = missingCharonPlugins(plugins);
  if (missing.length === 0) return undefined;
  const probe = ['sh', '-c', missing.map((m) => `test -f ${PLUGIN_DIR}/libstrongswan-${m}.so`).join(' && ')];
  return requireTool(`strongSwan plugins ${missing.join(',')}`, probe, 'libstrongswan-standard-plugins (gcm, openssl) / -extra-plugins');
}

/** One authentication round (swanctl `local {}` / `remote {}`). */
export interface CharonAuthRound {
  /** 'psk', 'pubkey', or any swanctl auth value (e.g. 'ecdsa-256', 'ike:ed25519'). */
  auth: string;
  /** IKE identity; DNs like 'CN=x, O=y' are quoted automatically. */
  id: string;
  /** Local certificate file names, relative to swanctl/x509/ (see CharonOptions.files). */
  certs?: string[];
  /** Trusted CA file names, relative to swanctl/x509ca/ (remote rounds). */
  cacerts?: string[];
  /** Raw public key file names, relative to swanctl/pubkey/. */
  pubkeys?: string[];
  /** Extra raw `key = value` lines in this round. */
  extra?: Record<string, string>;
}

/** One IKE connection; no `children` section, so IKE_AUTH is childless (RFC 6023). */
export interface CharonConnection {
  name: string;
  localAddrs?: string[];
  remoteAddrs?: string[];
  localPort?: number;
  remotePort?: number;
  /** charon proposal strings, default ['aes256gcm16-prfsha256-x25519']. */
  proposals?: string[];
  local: CharonAuthRound;
  remote: CharonAuthRound;
  /** Default false (with MOBIKE the initiator moves to port_nat_t for IKE_AUTH). */
  mobike?: boolean;
  /** RFC 7383: 'yes' (default in charon), 'accept', 'force' (fragment even small messages), 'no'. */
  fragmentation?: 'yes' | 'accept' | 'force' | 'no';
  /** Send CERTREQ payloads (charon default yes). */
  sendCertreq?: boolean;
  /** When to send our certificate (charon default ifasked). */
  sendCert?: 'always' | 'ifasked' | 'never';
  /** rekey_time (e.g. '0' disables IKE rekeying, '30s'). */
  rekeyTime?: string;
  /** dpd_delay (e.g. '5s'); unset = no DPD. */
  dpdDelay?: string;
  /** Extra raw `key = value` lines at the connection level. */
  extra?: Record<string, string>;
}

export interface CharonOptions {
  /** Label used in the temp dir name and errors. */
  name?: string;
  /** IKE port (charon `port`). Omit both ports for 500/4500. Not 500 => non-ESP marker on every message. */
  port?: number;
  /** NAT-T port (charon `port_nat_t`). */
  portNatT?: number;
  /** Run inside this network namespace (`ip netns exec`). */
  netns?: string;
  connections: CharonConnection[];
  /** IKE pre-shared keys: each becomes a swanctl `secrets { ike-N {} }` entry. */
  psks?: Array<{ ids: string[]; secret: string }>;
  /** Credential files written under swanctl/<dir>/<file name> (PEM text). */
  files?: Partial<Record<'x509' | 'x509ca' | 'private' | 'pubkey' | 'ecdsa' | 'rsa' | 'pkcs8', Record<string, string>>>;
  /** charon retransmit_tries / retransmit_timeout (s) / retransmit_base; defaults 2 / 1.0 / 1.8. */
  retransmit?: { tries?: number; timeout?: number; base?: number };
  /** false => dos_protection = no (no COOKIE demands / half-open blocking). Default: charon's default (yes). */
  dosProtection?: boolean;
  /** filelog levels; defaults { default: 1, mgr: 2, ike: 4, enc: 1 }. ike >= 4 is needed for charonIkeKeys(). */
  log?: Partial<Record<'default' | 'ike' | 'mgr' | 'enc' | 'net' | 'cfg' | 'knl' | 'lib' | 'job' | 'chd' | 'asn' | 'dmn', number>>;
  /** Plugins to load (default DEFAULT_PLUGINS); missing .so files are dropped. */
  plugins?: readonly string[];
  /** Raw lines appended inside the `charon-systemd { }` block of strongswan.conf. */
  extraCharonConf?: string;
  /** Start-up deadline (daemon + vici socket + config load), default 10 s. */
  startTimeoutMs?: number;
}

export interface SwanctlResult extends RunResult {
  args: string[];
}

/** An IKE SA as listed by `swanctl --list-sas`. SPIs are 16 lowercase hex digits. */
export interface IkeSaInfo {
  name: string;
  uniqueId: number;
  state: string;
  version: number;
  /** true when this charon is the original initiator. */
  initiator: boolean;
  localHost: string;
  localPort: number;
  localId: string;
  remoteHost: string;
  remotePort: number;
  remoteId: string;
  spiI: string;
  spiR: string;
  encrAlg: string | undefined;
  encrKeysize: number | undefined;
  integAlg: string | undefined;
  prfAlg: string | undefined;
  dhGroup: string | undefined;
  /** Everything swanctl printed for this SA. */
  raw: VicePretty;
}

/** Keys charon logged (ike level >= 4) for one IKE SA; hex, lowercase. */
export interface CharonIkeKeys {
  /** Connection name from the log prefix; '(unnamed)' before the config is known. */
  name: string;
  uniqueId: number;
  spiI: string;
  spiR: string;
  /** charon's proposal string as logged, e.g. 'AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519'. */
  proposal: string | undefined;
  skeyseed: string | undefined;
  skD: string;
  /** For AEAD: key || salt (e.g. 36 bytes for AES-GCM-256), exactly as Wireshark wants it. */
  skEi: string;
  skEr: string;
  /** Absent for AEAD. */
  skAi: string | undefined;
  skAr: string | undefined;
  skPi: string;
  skPr: string;
  /**
   * 0 for the keys of the SA's own IKE_SA_INIT; >0 for later derivations in
   * the same SA's log context (an IKE rekey): their SPIs are NOT the ones given.
   */
  generation: number;
}

export type VicePretty = { [key: string]: string | string[] | VicePretty };

export interface CharonHandle {
  readonly name: string;
  /** Temp dir holding everything of this instance. */
  readonly dir: string;
  readonly confPath: string;
  readonly swanctlConfPath: string;
  readonly logPath: string;
  readonly viciUri: string;
  readonly pid: number;
  readonly ports: { ike: number; natT: number };
  /** true if the ports are not 500: charon then sends/expects the 4-octet non-ESP marker on every IKE message. */
  readonly usesNonEspMarker: boolean;
  /** Runs swanctl with --uri added; never throws. */
  swanctl(args: readonly string[], timeoutMs?: number): Promise<SwanctlResult>;
  /** swanctl --initiate --ike NAME; throws (with log tail) unless it succeeds. */
  initiate(ikeName: string, timeoutS?: number): Promise<SwanctlResult>;
  /** Like initiate() but returns the result, for expected failures. */
  tryInitiate(ikeName: string, timeoutS?: number): Promise<SwanctlResult>;
  /** swanctl --terminate --ike NAME (waits for the DELETE exchange up to timeoutS; `force` skips it). */
  terminate(ikeName: string, opts?: { timeoutS?: number; force?: boolean }): Promise<SwanctlResult>;
  /** Parsed `swanctl --list-sas --noblock --pretty`. */
  listSas(ikeName?: string): Promise<IkeSaInfo[]>;
  /** Re-runs `swanctl --load-all` (e.g. after editing files in dir). */
  loadAll(): Promise<SwanctlResult>;
  /** Current log text. */
  log(): string;
  /** Current log size in bytes; pass to waitForLog to only look at later lines. */
  logMark(): number;
  /** Resolves with the first match of `re` in the log (after `since`), rejects after timeoutMs or if charon dies. */
  waitForLog(re: RegExp, timeoutMs?: number, since?: number): Promise<RegExpMatchArray>;
  /** SK_* keys charon logged, in log order. Needs log.ike >= 4 (the default). */
  charonIkeKeys(): CharonIkeKeys[];
  /** true once the daemon process has exited. */
  readonly exited: boolean;
  /** SIGTERM, up to 5 s, SIGKILL; removes dir unless KEEP_INTEROP=1. Idempotent. */
  stop(): Promise<void>;
}

const liveCharons = new Set<ChildProcess>();
let charonExitHook = false;

function confValue(v: string): string {
  if (/^[A-Za-z0-9@._:/+,=*-]+$/.test(v)) return v;
  return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function confKey(k: string): string {
  if (!/^[A-Za-z0-9_-]+$/.test(k)) throw new Error(`bad swanctl key '${k}'`);
  return k;
}

function renderRound(r: CharonAuthRound, indent: string): string[] {
  const out = [`${indent}auth = ${confValue(r.auth)}`, `${indent}id = ${confValue(r.id)}`];
  if (r.certs?.length) out.push(`${indent}certs = ${r.certs.map(confValue).join(',')}`);
  if (r.cacerts?.length) out.push(`${indent}cacerts = ${r.cacerts.map(confValue).join(',')}`);
  if (r.pubkeys?.length) out.push(`${indent}pubkeys = ${r.pubkeys.map(confValue).join(',')}`);
  for (const [k, v] of Object.entries(r.extra ?? {})) out.push(`${indent}${confKey(k)} = ${confValue(v)}`);
  return out;
}

/** swanctl.conf text for the given connections and PSKs (exported for tests/debugging). */
export function renderSwanctlConf(conns: readonly CharonConnection[], psks: CharonOptions['psks'] = []): string {
  const l: string[] = ['connections {'];
  for (const c of conns) {
    l.push(`  ${confKey(c.name)} {`, '    version = 2');
    if (c.localAddrs?.length) l.push(`    local_addrs = ${c.localAddrs.map(confValue).join(',')}`);
    if (c.remoteAddrs?.length) l.push(`    remote_addrs = ${c.remoteAddrs.map(confValue).join(',')}`);
    if (c.localPort !== undefined) l.push(`    local_port = ${c.localPort}`);
    if (c.remotePort !== undefined) l.push(`    remote_port = ${c.remotePort}`);
    l.push(`    proposals = ${(c.proposals ?? ['aes256gcm16-prfsha256-x25519']).map(confValue).join(',')}`);
    l.push(`    mobike = ${c.mobike === true ? 'yes' : 'no'}`);
    if (c.fragmentation !== undefined) l.push(`    fragmentation = ${c.fragmentation}`);
    if (c.sendCertreq !== undefined) l.push(`    send_certreq = ${c.sendCertreq ? 'yes' : 'no'}`);
    if (c.sendCert !== undefined) l.push(`    send_cert = ${c.sendCert}`);
    if (c.rekeyTime !== undefined) l.push(`    rekey_time = ${confValue(c.rekeyTime)}`);
    if (c.dpdDelay !== undefined) l.push(`    dpd_delay = ${confValue(c.dpdDelay)}`);
    for (const [k, v] of Object.entries(c.extra ?? {})) l.push(`    ${confKey(k)} = ${confValue(v)}`);
    l.push('    local {', ...renderRound(c.local, '      '), '    }');
    l.push('    remote {', ...renderRound(c.remote, '      '), '    }');
    l.push('  }');
  }
  l.push('}', 'secrets {');
  (psks ?? []).forEach((p, i) => {
    l.push(`  ike-${i + 1} {`);
    p.ids.forEach((id, j) => l.push(`    id-${j + 1} = ${confValue(id)}`));
    l.push(`    secret = ${confValue(p.secret)}`, '  }');
  });
  l.push('}');
  return `${l.join('\n')}\n`;
}

function renderStrongswanConf(o: CharonOptions, dir: string, plugins: readonly string[]): string {
  const lv = { default: 1, mgr: 2, ike: 4, enc: 1, ...(o.log ?? {}) };
  const l: string[] = [
    '# written by test/interop/harness/charon.ts',
    'charon-systemd {',
    '  load_modular = no',
    `  load = ${plugins.join(' ')}`,
  ];
  if (o.port !== undefined) l.push(`  port = ${o.port}`);
  if (o.portNatT !== undefined) l.push(`  port_nat_t = ${o.portNatT}`);
  l.push(
    '  install_routes = no',
    '  install_virtual_ip = no',
    '  routing_table = 0',
    '  reuse_ikesa = no',
    `  retransmit_tries = ${o.retransmit?.tries ?? 2}`,
    `  retransmit_timeout = ${o.retransmit?.timeout ?? 1.0}`,
    `  retransmit_base = ${o.retransmit?.base ?? 1.8}`,
  );
  if (o.dosProtection === false) l.push('  dos_protection = no');
  l.push(
    '  plugins {',
    '    vici {',
    `      socket = unix://${dir}/charon.vici`,
    '    }',
    '  }',
    '  journal {',
    '    default = -1',
    '  }',
    '  filelog {',
    '    harness {',
    `      path = ${dir}/charon.log`,
    '      append = no',
    '      flush_line = yes',
    '      ike_name = yes',
  );
  for (const [k, v] of Object.entries(lv)) l.push(`      ${k} = ${v}`);
  l.push('    }', '  }');
  if (o.extraCharonConf !== undefined) l.push(o.extraCharonConf);
  l.push('}');
  return `${l.join('\n')}\n`;
}

/** Parses swanctl --pretty output into nested objects (sections) and arrays (lists). */
export function parseSwanctlPretty(text: string): VicePretty[] {
  const events: VicePretty[] = [];
  const stack: Array<VicePretty | string[]> = [];
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '') continue;
    const top = stack[stack.length - 1];
    let m: RegExpMatchArray | null;
    if ((m = /^(.*?) \{$/.exec(line)) !== null) {
      const sec: VicePretty = {};
      if (top === undefined) {
        sec['__event'] = m[1]!;
        events.push(sec);
      } else if (!Array.isArray(top)) top[m[1]!] = sec;
      stack.push(sec);
    } else if ((m = /^(.*?) \[$/.exec(line)) !== null) {
      const list: string[] = [];
      if (top !== undefined && !Array.isArray(top)) top[m[1]!] = list;
      stack.push(list);
    } else if (line === '}' || line === ']') {
      stack.pop();
    } else if (Array.isArray(top)) {
      top.push(line);
    } else if (top !== undefined && (m = /^(.*?) = (.*)$/.exec(line)) !== null) {
      top[m[1]!] = m[2]!;
    }
  }
  return events;
}

function str(v: VicePretty[string] | undefined): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function toIkeSa(name: string, s: VicePretty): IkeSaInfo {
  const num = (k: string): number => Number(str(s[k]) ?? NaN);
  const ks = str(s['encr-keysize']);
  return {
    name,
    uniqueId: num('uniqueid'),
    state: str(s['state']) ?? '',
    version: num('version'),
    initiator: str(s['initiator']) === 'yes',
    localHost: str(s['local-host']) ?? '',
    localPort: num('local-port'),
    localId: str(s['local-id']) ?? '',
    remoteHost: str(s['remote-host']) ?? '',
    remotePort: num('remote-port'),
    remoteId: str(s['remote-id']) ?? '',
    spiI: (str(s['initiator-spi']) ?? '').toLowerCase(),
    spiR: (str(s['responder-spi']) ?? '').toLowerCase(),
    encrAlg: str(s['encr-alg']),
    encrKeysize: ks === undefined ? undefined : Number(ks),
    integAlg: str(s['integ-alg']),
    prfAlg: str(s['prf-alg']),
    dhGroup: str(s['dh-group']),
    raw: s,
  };
}

const LOG_LINE = /^(\d+)\[([A-Z]+)\] (?:<(?:([^|>]*)\|)?(\d+)> )?(.*)$/; // '<name|uid> ' or '<uid> ' (unnamed)
const HEX_ROW = /^\s*\d+: ([0-9A-F]{2}(?: [0-9A-F]{2}){0,15})(?: {2,}|$)/;

/** Parses SK_* keys out of a charon log written with ike >= 4 and ike_name = yes. */
export function parseCharonIkeKeys(log: string): CharonIkeKeys[] {
  interface Pending { uid: number; name: string; field: string; bytes: number; hex: string }
  const collecting = new Map<string, Pending>(); // by thread id
  const spis = new Map<number, { i: string; r: string }>();
  const proposals = new Map<number, string>();
  const names = new Map<number, string>();
  interface Acc { uid: number; k: Partial<Record<string, string>> }
  const sets: Acc[] = [];
  const current = new Map<number, Acc>(); // uid -> set being filled
  const finish = (p: Pending): void => {
    if (p.hex.length !== p.bytes * 2) return; // truncated dump: ignore
    let acc = current.get(p.uid);
    if (acc === undefined || ((p.field === 'SKEYSEED' || p.field === 'Sk_d') && acc.k[p.field] !== undefined)) {
      acc = { uid: p.uid, k: {} };
      current.set(p.uid, acc);
      sets.push(acc);
    }
    acc.k[p.field] = p.hex.toLowerCase();
  };
  for (const line of log.split('\n')) {
    const m = LOG_LINE.exec(line);
    if (m === null) continue;
    const [, thread, , name, uidS, msg] = m as unknown as [string, string, string, string | undefined, string | undefined, string];
    const pending = collecting.get(thread);
    if (pending !== undefined) {
      const h = HEX_ROW.exec(msg);
      if (h !== null) {
        pending.hex += h[1]!.replace(/ /g, '');
        continue;
      }
      collecting.delete(thread);
      finish(pending);
    }
    if (uidS === undefined) continue;
    const uid = Number(uidS);
    if (name !== undefined && name !== '(unnamed)') names.set(uid, name);
    const k = /^(SKEYSEED|Sk_(?:d|ei|er|ai|ar|pi|pr)) secret => (\d+) bytes|^(SKEYSEED) => (\d+) bytes/.exec(msg);
    if (k !== null) {
      collecting.set(thread, { uid, name: name ?? '', field: k[1] ?? k[3]!, bytes: Number(k[2] ?? k[4]), hex: '' });
      continue;
    }
    const s = /IKEv2 SA .*\[(\d+)\] with SPIs ([0-9a-f]{16})_i ([0-9a-f]{16})_r/.exec(msg);
    if (s !== null && s[3] !== '0000000000000000') spis.set(Number(s[1]), { i: s[2]!, r: s[3]! });
    const p = /selected proposal: IKE:(\S+)/.exec(msg);
    if (p !== null) proposals.set(uid, p[1]!);
  }
  for (const p of collecting.values()) finish(p);
  const generation = new Map<number, number>();
  const out: CharonIkeKeys[] = [];
  for (const { uid, k: a } of sets) {
    if (a['Sk_d'] === undefined || a['Sk_ei'] === undefined || a['Sk_er'] === undefined) continue;
    const g = generation.get(uid) ?? 0;
    generation.set(uid, g + 1);
    const sp = spis.get(uid);
    out.push({
      name: names.get(uid) ?? '(unnamed)',
      uniqueId: uid,
      spiI: sp?.i ?? '',
      spiR: sp?.r ?? '',
      proposal: proposals.get(uid),
      skeyseed: a['SKEYSEED'],
      skD: a['Sk_d'],
      skEi: a['Sk_ei'],
      skEr: a['Sk_er'],
      skAi: a['Sk_ai'],
      skAr: a['Sk_ar'],
      skPi: a['Sk_pi'] ?? '',
      skPr: a['Sk_pr'] ?? '',
      generation: g,
    });
  }
  return out;
}

/** Starts a private charon instance and loads its configuration. Always stop() it (in finally/after). */
export async function startCharon(opts: CharonOptions): Promise<CharonHandle> {
  const label = (opts.name ?? 'charon').replace(/[^A-Za-z0-9_-]/g, '_');
  const dir = mkdtempSync(join(tmpdir(), `gk-charon-${label}-`));
  const swanctlDir = join(dir, 'swanctl');
  const credDirs = ['x509', 'x509ca', 'x509ocsp', 'x509aa', 'x509ac', 'x509crl', 'pubkey', 'private', 'rsa', 'ecdsa', 'bliss', 'pkcs8', 'pkcs12'];
  for (const d of credDirs) mkdirSync(join(swanctlDir, d), { recursive: true });
  for (const [sub, files] of Object.entries(opts.files ?? {})) {
    for (const [file, pem] of Object.entries(files ?? {})) {
      if (file.includes('/') || file.startsWith('.')) throw new Error(`bad credential file name '${file}'`);
      writeFileSync(join(swanctlDir, sub, file), pem, { mode: 0o600 });
    }
  }
  const plugins = (opts.plugins ?? DEFAULT_PLUGINS).filter((p) => missingCharonPlugins([p]).length === 0);
  const confPath = join(dir, 'strongswan.conf');
  const swanctlConfPath = join(swanctlDir, 'swanctl.conf');
  const logPath = join(dir, 'charon.log');
  const viciPath = join(dir, 'charon.vici');
  const viciUri = `unix://${viciPath}`;
  writeFileSync(confPath, renderStrongswanConf(opts, dir, plugins));
  writeFileSync(swanctlConfPath, renderSwanctlConf(opts.connections, opts.psks), { mode: 0o600 });
  writeFileSync(logPath, '');

  const outFd = openSync(join(dir, 'charon.stdout'), 'w');
  const env = { ...process.env, STRONGSWAN_CONF: confPath };
  const argv = opts.netns !== undefined ? ['/usr/sbin/ip', 'netns', 'exec', opts.netns, CHARON_BIN] : [CHARON_BIN];
  const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', outFd, outFd] });
  closeSync(outFd);
  let spawnError: Error | undefined;
  child.on('error', (e) => (spawnError = e));
  liveCharons.add(child);
  child.once('exit', () => liveCharons.delete(child));
  if (!charonExitHook) {
    charonExitHook = true;
    process.once('exit', () => {
      for (const c of liveCharons) c.kill('SIGKILL');
    });
  }
  const exitedWhy = (): string | undefined => {
    if (spawnError !== undefined) return `spawn failed: ${spawnError.message}`;
    if (child.exitCode !== null || child.signalCode !== null) return `charon exited (${child.exitCode ?? child.signalCode})`;
    return undefined;
  };
  const readLog = (): string => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : '');
  /** Log text from byte offset `from` (reads only the new part). */
  const readLogFrom = (from: number): string => {
    let fd: number;
    try {
      fd = openSync(logPath, 'r');
    } catch {
      return '';
    }
    try {
      const size = fstatSync(fd).size;
      if (size <= from) return '';
      const buf = Buffer.alloc(size - from);
      const n = readSync(fd, buf, 0, buf.length, from);
      return buf.subarray(0, n).toString('utf8');
    } finally {
      closeSync(fd);
    }
  };
  const swanctl = async (args: readonly string[], timeoutMs = 10_000): Promise<SwanctlResult> => {
    const full = [...args, '--uri', viciUri];
    return { ...(await runCmd(SWANCTL_BIN, full, timeoutMs)), args: full };
  };
  const fail = (what: string, detail: string): Error =>
    new Error(`charon '${label}' ${what}\n${detail}\n--- ${logPath} (tail) ---\n${tail(readLog())}`);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await terminate(child, 5000);
      liveCharons.delete(child);
      if (process.env['KEEP_INTEROP'] === '1') console.warn(`KEEP_INTEROP=1: kept ${dir}`);
      else rmSync(dir, { recursive: true, force: true });
    })();
    return stopping;
  };

  const loadAll = (): Promise<SwanctlResult> => swanctl(['--load-all', '--noprompt', '--file', swanctlConfPath], 15_000);
  try {
    const startTimeoutMs = opts.startTimeoutMs ?? 10_000;
    const deadline = Date.now() + startTimeoutMs;
    await waitFor(() => (existsSync(viciPath) ? true : undefined), {
      watchPath: dir,
      timeoutMs: startTimeoutMs,
      what: `vici socket ${viciPath}`,
      abort: exitedWhy,
    });
    const sockErr = /could not (?:open|create any) sockets?|unable to (?:bind|create) socket|failed to bind/i.exec(readLog());
    if (sockErr !== null) throw new Error(`socket problem: '${sockErr[0]}' (port in use by another charon?)`);
    // The socket file exists from bind(); listen() follows at once, but retry briefly on a refused connect.
    let r = await loadAll();
    while (r.code !== 0 && /connecting to .* failed/.test(r.stderr + r.stdout) && Date.now() < deadline && exitedWhy() === undefined) {
      await new Promise((res) => setTimeout(res, 25));
      r = await loadAll();
    }
    if (r.code !== 0) throw new Error(`swanctl --load-all failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
    const conns = /successfully loaded (\d+) connections/.exec(r.stdout);
    if (conns === null || Number(conns[1]) !== opts.connections.length) {
      throw new Error(`swanctl --load-all did not load all ${opts.connections.length} connections:\n${r.stdout}\n${r.stderr}`);
    }
  } catch (e) {
    const err = fail('failed to start', e instanceof Error ? e.message : String(e));
    await stop();
    throw err;
  }

  const ikePort = opts.port ?? 500;
  const natT = opts.portNatT ?? 4500;
  const handle: CharonHandle = {
    name: label,
    dir,
    confPath,
    swanctlConfPath,
    logPath,
    viciUri,
    pid: child.pid ?? -1,
    ports: { ike: ikePort, natT },
    usesNonEspMarker: ikePort !== 500,
    swanctl,
    async tryInitiate(ikeName, timeoutS = 10) {
      return swanctl(['--initiate', '--ike', ikeName, '--timeout', String(timeoutS)], timeoutS * 1000 + 5000);
    },
    async initiate(ikeName, timeoutS = 10) {
      const r = await handle.tryInitiate(ikeName, timeoutS);
      if (r.code !== 0 || !/initiate completed successfully/.test(r.stdout)) {
        throw fail(`initiate ${ikeName} failed (exit ${r.code}${r.timedOut ? ', timed out' : ''})`, `${r.stdout}\n${r.stderr}`);
      }
      return r;
    },
    async terminate(ikeName, o = {}) {
      const timeoutS = o.timeoutS ?? 5;
      const args = ['--terminate', '--ike', ikeName, '--timeout', String(timeoutS)];
      if (o.force === true) args.push('--force');
      return swanctl(args, timeoutS * 1000 + 5000);
    },
    async listSas(ikeName) {
      const args = ['--list-sas', '--noblock', '--pretty'];
      if (ikeName !== undefined) args.push('--ike', ikeName);
      const r = await swanctl(args);
      if (r.code !== 0) throw fail('list-sas failed', `${r.stdout}\n${r.stderr}`);
      const out: IkeSaInfo[] = [];
      for (const ev of parseSwanctlPretty(r.stdout)) {
        if (ev['__event'] !== 'list-sa event') continue;
        for (const [n, v] of Object.entries(ev)) {
          if (n !== '__event' && typeof v === 'object' && !Array.isArray(v)) out.push(toIkeSa(n, v));
        }
      }
      return out;
    },
    loadAll,
    log: readLog,
    logMark: () => (existsSync(logPath) ? statSync(logPath).size : 0),
    waitForLog(re, timeoutMs = 5000, since = 0) {
      // Re-reads from `since` each time so a match spanning several writes is still found.
      return waitFor(() => {
        re.lastIndex = 0;
        return re.exec(readLogFrom(since)) ?? undefined;
      }, {
        watchPath: logPath,
        timeoutMs,
        what: `${re} in ${logPath}`,
        abort: exitedWhy,
      });
    },
    charonIkeKeys: () => parseCharonIkeKeys(readLog()),
    get exited() {
      return child.exitCode !== null || child.signalCode !== null;
    },
    stop,
  };
  return handle;
}

/**
 * Runs `fn` with started charon instances and always stops them.
 * Usage: await withCharons([optsA, optsB], async ([a, b]) => { ... }).
 */
export async function withCharons<T>(all: readonly CharonOptions[], fn: (h: CharonHandle[]) => Promise<T>): Promise<T> {
  const handles: CharonHandle[] = [];
  try {
    for (const o of all) handles.push(await startCharon(o));
    return await fn(handles);
  } finally {
    await Promise.all(handles.map((h) => h.stop()));
  }
}
