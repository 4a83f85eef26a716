/**
 * Linux kernel data plane: turns a member's group SAs into XFRM states and
 * policies through `ip xfrm` (iproute2), and removes them again on delete,
 * exclusion and shutdown.
 *
 * A group SA (RFC 5374) is an ESP state whose destination is the group
 * address:
 *
 *   ip xfrm state add src <S> dst <group> proto esp spi 0x<spi> reqid <r>
 *      mode transport|tunnel replay-window <w>
 *      aead 'rfc4106(gcm(aes))' 0x<key|salt> <icv bits>          (AES-GCM)
 *      aead 'rfc7539esp(chacha20,poly1305)' 0x<key|salt> 128     (ChaCha20-Poly1305)
 *      enc 'cbc(aes)' 0x<key> auth-trunc 'hmac(sha256)' 0x<key> 128   (AES-CBC + HMAC)
 *
 * <S> is this member's address when it sends (the kernel matches an outbound
 * state on its source), else 0.0.0.0: inbound lookup uses (dst, SPI, proto)
 * only, so one receive state serves every sender. replay-window is 0 for
 * "32-bit Unspecified Numbers" and for "Sequential" SAs the member only
 * sends on; the kernel's non-ESN window holds at most 32 numbers.
 *
 * Policies: `dir out` (senders) and `dir in` (receivers), selector
 * dst <group>/32 [proto udp [dport <port>]], template `tmpl [src <S>] dst
 * <group> proto esp mode <mode>`.
 *
 * Keys never reach a log: every command has a `display` form with keys
 * replaced by `<key N octets>` (what dry-run prints), unless `showKeys`.
 * Commands run without a shell (argv straight to execFile of `ip`), with
 * `-n <netns>` when a namespace is given. Deletes are idempotent: "No such
 * process" (state) and "No such file or directory" (policy) count as done.
 */
import { spawnSync } from 'node:child_process';
import { EncrId, IntegId, nameOf, SnId } from '../wire/iana.ts';
import type { GroupSa } from './channel-core.ts';
import { checkSnTransform, EspConfigError, type EspFramingMode } from './esp.ts';

export interface XfrmGroupConfig {
  /** IPv4 group address: state and template destination. */
  readonly groupAddress: string;
  /** Narrows the policies to UDP to this port; absent: every protocol to the group. */
  readonly port?: number | undefined;
  readonly mode: EspFramingMode;
  /** This member's address: outbound state source and template source. Required when `send`. */
  readonly localAddress?: string | undefined;
  readonly send: boolean;
  readonly receive: boolean;
  /** SAs to install. SAs that were installed and are absent now are removed. */
  readonly sas: readonly GroupSa[];
  /** For "32-bit Sequential Numbers" receive states; default 32 (the kernel's non-ESN maximum). */
  readonly replayWindow?: number | undefined;
}

export type XfrmCommandKind = 'state-add' | 'state-delete' | 'policy-add' | 'policy-delete';

export interface XfrmCommand {
  readonly kind: XfrmCommandKind;
  /** Arguments after `ip` (including `-n NS`). Contains keys for state-add: never log it. */
  readonly argv: readonly string[];
  /** Shell-quoted `ip ...` line with keys masked (or shown with showKeys). */
  readonly display: string;
}

export interface XfrmOutcome {
  readonly command: XfrmCommand;
  /** True also for a delete of something already gone; in dry-run always true. */
  readonly ok: boolean;
  /** The `ip` error text (stderr) when it failed. */
  readonly error?: string | undefined;
  readonly dryRun: boolean;
}

export interface XfrmRunResult {
  readonly status: number | null;
  readonly stderr: string;
}

export interface XfrmBackendOptions {
  readonly netns?: string | undefined;
  /** Only render (and log) the commands. */
  readonly dryRun?: boolean | undefined;
  /** Put real keys into the display form (`--show-keys`). */
  readonly showKeys?: boolean | undefined;
  /** Receives one display line per command (dry-run output, audit log). */
  readonly log?: ((line: string) => void) | undefined;
  /** Path of `ip`; default 'ip' from PATH. */
  readonly ipPath?: string | undefined;
  /** Replaces process execution (tests). */
  readonly run?: ((ipPath: string, argv: readonly string[]) => XfrmRunResult) | undefined;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function checkIpv4(addr: string, what: string): void {
  const m = IPV4.exec(addr);
  if (!m || m.slice(1).some((o) => Number(o) > 255)) {
    throw new EspConfigError('bad-combination', `${what} '${addr}' is not an IPv4 address`);
  }
}

/** A masked argument: printed as <key N octets> unless keys are shown. */
interface Secret {
  readonly secret: string;
}
type Arg = string | Secret;

function keyArg(key: Uint8Array): Secret {
  return { secret: `0x${Buffer.from(key).toString('hex')}` };
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=,@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

const HMAC_NAMES: ReadonlyMap<number, { name: string; bits: number }> = new Map([
  [IntegId.HMAC_SHA1_96, { name: 'hmac(sha1)', bits: 96 }],
  [IntegId.HMAC_SHA2_256_128, { name: 'hmac(sha256)', bits: 128 }],
  [IntegId.HMAC_SHA2_384_192, { name: 'hmac(sha384)', bits: 192 }],
  [IntegId.HMAC_SHA2_512_256, { name: 'hmac(sha512)', bits: 256 }],
]);

/** The algorithm part of `ip xfrm state add` for one SA. */
function algorithmArgs(sa: GroupSa): Arg[] {
  const { encr } = sa.algorithm;
  const key = sa.keys.encrKey;
  const gcmIcv: Record<number, number> = { [EncrId.AES_GCM_8]: 64, [EncrId.AES_GCM_12]: 96, [EncrId.AES_GCM_16]: 128 };
  const icvBits = gcmIcv[encr];
  if (icvBits !== undefined) return ['aead', 'rfc4106(gcm(aes))', keyArg(key), String(icvBits)];
  if (encr === EncrId.CHACHA20_POLY1305) return ['aead', 'rfc7539esp(chacha20,poly1305)', keyArg(key), '128'];
  if (encr === EncrId.AES_CBC) {
    const h = HMAC_NAMES.get(sa.algorithm.integ ?? IntegId.NONE);
    if (!h) throw new EspConfigError('bad-combination', `no XFRM name for ${nameOf(IntegId, sa.algorithm.integ ?? 0)}`);
    return ['enc', 'cbc(aes)', keyArg(key), 'auth-trunc', h.name, keyArg(sa.keys.integKey), String(h.bits)];
  }
  throw new EspConfigError('unsupported-algorithm', `no XFRM mapping for ${nameOf(EncrId, encr, 'ENCR')}`);
}

function spiHex(spi: number): string {
  return `0x${spi.toString(16).padStart(8, '0')}`;
}

interface StateId {
  readonly src: string;
  readonly dst: string;
  readonly spi: number;
}

interface PolicyId {
  readonly dir: 'in' | 'out';
  readonly src: string;
  readonly dst: string;
  readonly port: number | undefined;
}

function policySelector(p: PolicyId): string[] {
  const sel = ['src', p.src, 'dst', p.dst];
  if (p.port !== undefined) sel.push('proto', 'udp', 'dport', String(p.port));
  return sel;
}

function policyKey(p: PolicyId): string {
  return `${p.dir} ${p.src} ${p.dst} ${p.port ?? '*'}`;
}

/** Renders and (unless dry-run) runs `ip xfrm` commands; remembers what it installed. */
export class XfrmBackend {
  private readonly states = new Map<number, StateId>();
  private readonly policies = new Map<string, PolicyId>();
  private readonly ipPath: string;

  constructor(private readonly opts: XfrmBackendOptions = {}) {
    this.ipPath = opts.ipPath ?? 'ip';
  }

  private command(kind: XfrmCommandKind, args: readonly Arg[]): XfrmCommand {
    const prefix = this.opts.netns !== undefined ? ['-n', this.opts.netns] : [];
    const argv = [...prefix, 'xfrm', ...args.map((a) => (typeof a === 'string' ? a : a.secret))];
    const shown = args.map((a) => {
      if (typeof a === 'string') return shellQuote(a);
      return this.opts.showKeys ? a.secret : `<key ${(a.secret.length - 2) / 2} octets>`;
    });
    return { kind, argv, display: ['ip', ...prefix, 'xfrm', ...shown].join(' ') };
  }

  private exec(cmd: XfrmCommand): XfrmOutcome {
    this.opts.log?.(this.opts.dryRun ? `[dry-run] ${cmd.display}` : cmd.display);
    if (this.opts.dryRun) return { command: cmd, ok: true, dryRun: true };
    const run =
      this.opts.run ??
      ((ip: string, argv: readonly string[]): XfrmRunResult => {
        const r = spawnSync(ip, argv, { encoding: 'utf8', timeout: 10_000 });
        return { status: r.error ? null : r.status, stderr: r.error ? r.error.message : r.stderr };
      });
    const r = run(this.ipPath, cmd.argv);
    if (r.status === 0) return { command: cmd, ok: true, dryRun: false };
    const error = r.stderr.trim();
    const gone =
      (cmd.kind === 'state-delete' && /No such process/.test(error)) ||
      (cmd.kind === 'policy-delete' && /No such file or directory/.test(error));
    return { command: cmd, ok: gone, error, dryRun: false };
  }

  /** The commands that install one SA as a state (exposed for tests and documentation). */
  renderStateAdd(cfg: XfrmGroupConfig, sa: GroupSa, reqid = 1): XfrmCommand {
    checkSnTransform(sa.sn);
    const src = cfg.send && cfg.localAddress !== undefined ? cfg.localAddress : '0.0.0.0';
    const window = cfg.receive && sa.sn === SnId.SEQ32 ? Math.min(cfg.replayWindow ?? 32, 32) : 0;
    return this.command('state-add', [
      'state',
      'add',
      'src',
      src,
      'dst',
      cfg.groupAddress,
      'proto',
      'esp',
      'spi',
      spiHex(sa.spi),
      'reqid',
      String(reqid),
      'mode',
      cfg.mode,
      'replay-window',
      String(window),
      ...algorithmArgs(sa),
    ]);
  }

  private wantedPolicies(cfg: XfrmGroupConfig): PolicyId[] {
    const out: PolicyId[] = [];
    const group = `${cfg.groupAddress}/32`;
    if (cfg.send) {
      const src = cfg.localAddress !== undefined ? `${cfg.localAddress}/32` : '0.0.0.0/0';
      out.push({ dir: 'out', src, dst: group, port: cfg.port });
    }
    if (cfg.receive) out.push({ dir: 'in', src: '0.0.0.0/0', dst: group, port: cfg.port });
    return out;
  }

  private renderPolicyAdd(cfg: XfrmGroupConfig, p: PolicyId, reqid = 1): XfrmCommand {
    const tmpl: string[] = ['tmpl'];
    if (p.dir === 'out' && cfg.localAddress !== undefined) tmpl.push('src', cfg.localAddress);
    tmpl.push('dst', cfg.groupAddress, 'proto', 'esp', 'reqid', String(reqid), 'mode', cfg.mode);
    return this.command('policy-add', ['policy', 'add', ...policySelector(p), 'dir', p.dir, ...tmpl]);
  }

  /** Every command `apply(cfg)` would run on an empty kernel, in order (policies first). */
  render(cfg: XfrmGroupConfig): XfrmCommand[] {
    this.validate(cfg);
    return [
      ...this.wantedPolicies(cfg).map((p) => this.renderPolicyAdd(cfg, p)),
      ...cfg.sas.map((sa) => this.renderStateAdd(cfg, sa)),
    ];
  }

  private validate(cfg: XfrmGroupConfig): void {
    checkIpv4(cfg.groupAddress, 'group address');
    if (cfg.localAddress !== undefined) checkIpv4(cfg.localAddress, 'local address');
    if (cfg.port !== undefined && (!Number.isInteger(cfg.port) || cfg.port < 1 || cfg.port > 65535)) {
      throw new EspConfigError('bad-combination', `port ${cfg.port} is not a UDP port`);
    }
    for (const sa of cfg.sas) algorithmArgs(sa); // unsupported algorithms fail before anything runs
  }

  /**
   * Makes the kernel match `cfg`: adds policies and states that are new,
   * deletes states whose SA left the table and policies no longer wanted.
   * Returns one outcome per command; a failed add is not remembered as installed.
   */
  apply(cfg: XfrmGroupConfig): XfrmOutcome[] {
    this.validate(cfg);
    const outcomes: XfrmOutcome[] = [];
    const wanted = new Map(this.wantedPolicies(cfg).map((p) => [policyKey(p), p]));
    for (const [key, p] of this.policies) {
      if (!wanted.has(key)) outcomes.push(this.deletePolicy(key, p));
    }
    for (const [key, p] of wanted) {
      if (this.policies.has(key)) continue;
      const o = this.exec(this.renderPolicyAdd(cfg, p));
      outcomes.push(o);
      if (o.ok) this.policies.set(key, p);
    }
    const spis = new Set(cfg.sas.map((sa) => sa.spi));
    for (const [spi, id] of this.states) {
      if (!spis.has(spi)) outcomes.push(this.deleteState(id));
    }
    for (const sa of cfg.sas) {
      if (this.states.has(sa.spi)) continue;
      const cmd = this.renderStateAdd(cfg, sa);
      const o = this.exec(cmd);
      outcomes.push(o);
      if (o.ok) this.states.set(sa.spi, { src: cmd.argv[cmd.argv.indexOf('src') + 1]!, dst: cfg.groupAddress, spi: sa.spi });
    }
    return outcomes;
  }

  private deleteState(id: StateId): XfrmOutcome {
    const o = this.exec(
      this.command('state-delete', ['state', 'delete', 'src', id.src, 'dst', id.dst, 'proto', 'esp', 'spi', spiHex(id.spi)]),
    );
    if (o.ok) this.states.delete(id.spi);
    return o;
  }

  private deletePolicy(key: string, p: PolicyId): XfrmOutcome {
    const o = this.exec(this.command('policy-delete', ['policy', 'delete', ...policySelector(p), 'dir', p.dir]));
    if (o.ok) this.policies.delete(key);
    return o;
  }

  /** Deletes one SA's state (a Delete payload for that SPI). */
  removeSa(spi: number): XfrmOutcome[] {
    const id = this.states.get(spi);
    return id ? [this.deleteState(id)] : [];
  }

  /** Exclusion or shutdown: deletes every state and policy this backend installed. Idempotent. */
  removeAll(): XfrmOutcome[] {
    const outcomes: XfrmOutcome[] = [];
    for (const [key, p] of [...this.policies]) outcomes.push(this.deletePolicy(key, p));
    for (const id of [...this.states.values()]) outcomes.push(this.deleteState(id));
    return outcomes;
  }

  /** What this backend believes is installed. */
  installed(): { readonly spis: readonly number[]; readonly policies: readonly string[] } {
    return { spis: [...this.states.keys()], policies: [...this.policies.keys()] };
  }
}
