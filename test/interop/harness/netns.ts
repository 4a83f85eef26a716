/**
 * Throw-away network namespaces for interop and end-to-end tests.
 *
 * Layout of `createTestNet({ hosts: ['a', 'b'] })`:
 *
 *     gk-<run>-a  eth0 10.99.0.1/24 ──veth── va ┐
 *     gk-<run>-b  eth0 10.99.0.2/24 ──veth── vb ┤ br0 (in gk-<run>-sw)
 *
 * Nothing is created in the root namespace: the bridge lives in its own
 * "switch" namespace, so concurrent runs (unique `gk-<random>` prefix) can
 * reuse the same 10.x addresses without clashing. Capture on `br0` inside
 * the switch namespace to see every host's traffic (see capture.ts).
 * Each host has `lo` up, a route for 224.0.0.0/4 via eth0 (for multicast
 * tests) and the bridge has multicast snooping off so group traffic floods.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { isRoot, requireTool } from '../../helpers/tools.ts';

export interface TestHost {
  /** Logical name given in `hosts` (e.g. 'a'). */
  readonly name: string;
  /** Network namespace name (for `ip netns exec`). */
  readonly ns: string;
  /** Interface inside the namespace. */
  readonly iface: string;
  /** IPv4 address of `iface`, without prefix length. */
  readonly addr: string;
  /** Prefix argv to run a command inside this namespace: [...host.execPrefix, 'cmd', ...]. */
  readonly execPrefix: readonly string[];
  /** Runs a command inside the namespace synchronously; throws on non-zero exit. Returns stdout. */
  exec(argv: readonly string[], timeoutMs?: number): string;
}

export interface TestNet {
  /** Unique prefix of every namespace of this net, e.g. 'gk-3fa9c2'. */
  readonly prefix: string;
  /** Namespace holding the bridge. */
  readonly switchNs: string;
  /** Bridge interface name inside `switchNs`. */
  readonly bridge: string;
  readonly hosts: Readonly<Record<string, TestHost>>;
  /** Host by name; throws if unknown (avoids `| undefined` at call sites). */
  host(name: string): TestHost;
  /** Deletes every namespace of this net. Idempotent; never throws. */
  destroy(): void;
}

export interface TestNetOptions {
  /** Logical host names; each becomes a namespace. 1..200 hosts. */
  hosts: readonly string[];
  /** First three octets of the /24 used, default '10.99.0'. Must start with '10.'. */
  subnet24?: string;
}

const IP = '/usr/sbin/ip';
const live = new Set<string>(); // namespaces created and not yet deleted
let exitHookInstalled = false;

function ip(args: readonly string[], timeoutMs = 10_000): string {
  const r = spawnSync(IP, args, { encoding: 'utf8', timeout: timeoutMs });
  if (r.error) throw new Error(`ip ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')} exited ${r.status}: ${r.stderr.trim()}`);
  return r.stdout;
}

function deleteNs(ns: string): void {
  spawnSync(IP, ['netns', 'del', ns], { stdio: 'ignore', timeout: 10_000 });
  live.delete(ns);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort if a test forgets destroy() or the process dies on an exception.
  process.once('exit', () => {
    for (const ns of [...live]) deleteNs(ns);
  });
}

/**
 * requireTool-style gate: undefined when namespaces can be created here,
 * else a skip reason (and a throw in CI, via requireTool).
 */
export function netnsUnavailable(): string | undefined {
  if (!isRoot()) {
    return requireTool('root', ['false'], 'network namespaces need root (CAP_NET_ADMIN)');
  }
  const probe = `gk-probe-${randomBytes(3).toString('hex')}`;
  const why = 'network namespaces (ip netns add) must work';
  const reason = requireTool('ip netns', ['sh', '-c', `${IP} netns add ${probe} && ${IP} netns del ${probe}`], why);
  if (reason !== undefined) spawnSync(IP, ['netns', 'del', probe], { stdio: 'ignore' });
  return reason;
}

/** Creates namespaces, veth pairs and a bridge; on any failure removes what it made and throws. */
export function createTestNet(opts: TestNetOptions): TestNet {
  const subnet = opts.subnet24 ?? '10.99.0';
  if (!/^10\.\d{1,3}\.\d{1,3}$/.test(subnet)) throw new Error(`subnet24 must be '10.x.y', got '${subnet}'`);
  if (opts.hosts.length < 1 || opts.hosts.length > 200) throw new Error('hosts: need 1..200 names');
  const seen = new Set<string>();
  for (const h of opts.hosts) {
    if (!/^[a-z0-9]{1,12}$/.test(h)) throw new Error(`host name '${h}': use 1-12 of [a-z0-9]`);
    if (h === 'sw') throw new Error("host name 'sw' is reserved for the switch namespace");
    if (seen.has(h)) throw new Error(`duplicate host name '${h}'`);
    seen.add(h);
  }
  installExitHook();
  const prefix = `gk-${randomBytes(3).toString('hex')}`;
  const switchNs = `${prefix}-sw`;
  const bridge = 'br0';
  const made: string[] = [];
  const destroy = (): void => {
    for (const ns of made.splice(0).reverse()) deleteNs(ns);
  };
  try {
    ip(['netns', 'add', switchNs]);
    made.push(switchNs);
    live.add(switchNs);
    ip(['-n', switchNs, 'link', 'set', 'lo', 'up']);
    ip(['-n', switchNs, 'link', 'add', bridge, 'type', 'bridge', 'mcast_snooping', '0']);
    ip(['-n', switchNs, 'link', 'set', bridge, 'up']);
    const hosts: Record<string, TestHost> = {};
    opts.hosts.forEach((name, i) => {
      const ns = `${prefix}-${name}`;
      ip(['netns', 'add', ns]);
      made.push(ns);
      live.add(ns);
      const port = `v${i}`; // inside the switch namespace: no clash with other runs
      ip(['link', 'add', 'name', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', switchNs]);
      ip(['-n', switchNs, 'link', 'set', port, 'master', bridge]);
      ip(['-n', switchNs, 'link', 'set', port, 'up']);
      const addr = `${subnet}.${i + 1}`;
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      ip(['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
      ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
      ip(['-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0']);
      const execPrefix = [IP, 'netns', 'exec', ns] as const;
      hosts[name] = {
        name,
        ns,
        iface: 'eth0',
        addr,
        execPrefix,
        exec(argv, timeoutMs = 10_000) {
          const r = spawnSync(execPrefix[0], [...execPrefix.slice(1), ...argv], {
            encoding: 'utf8',
            timeout: timeoutMs,
          });
          if (r.error) throw new Error(`[${ns}] ${argv.join(' ')}: ${r.error.message}`);
          if (r.status !== 0) throw new Error(`[${ns}] ${argv.join(' ')} exited ${r.status}: ${r.stderr.trim()}`);
          return r.stdout;
        },
      };
    });
    return {
      prefix,
      switchNs,
      bridge,
      hosts,
      host(name) {
        const h = hosts[name];
        if (h === undefined) throw new Error(`no host '${name}' in test net ${prefix}`);
        return h;
      },
      destroy,
    };
  } catch (e) {
    destroy();
    throw e;
  }
}

/** Runs `fn` with a fresh test net and always destroys it afterwards. */
export async function withTestNet<T>(opts: TestNetOptions, fn: (net: TestNet) => Promise<T>): Promise<T> {
  const net = createTestNet(opts);
  try {
    return await fn(net);
  } finally {
    net.destroy();
  }
}

/** Namespaces left by crashed runs (names starting 'gk-'); for manual cleanup/diagnostics. */
export function listTestNamespaces(): string[] {
  const r = spawnSync(IP, ['netns', 'list'], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) return [];
  return r.stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith('gk-'));
}
