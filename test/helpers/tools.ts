import { spawnSync } from 'node:child_process';

/**
 * For tests that need an external tool (tshark, charon, ip netns, ...).
 * Returns undefined when the tool is there. Otherwise returns a loud skip
 * reason locally, and in CI (CI=true) throws so the run fails: CI installs
 * every tool, so a skip there means a broken install, not a choice.
 */
export function requireTool(name: string, probe: string[], why: string): string | undefined {
  const r = spawnSync(probe[0]!, probe.slice(1), { stdio: 'ignore', timeout: 10_000 });
  if (r.status === 0 && !r.error) return undefined;
  const msg = `SKIPPED: ${name} not available (${why}); install with scripts/install-test-deps.sh`;
  if (process.env['CI'] === 'true') throw new Error(`CI requires ${name}: ${msg}`);
  console.warn(`\n*** ${msg} ***\n`);
  return msg;
}

/** True when running as root (network namespaces, charon). */
export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}
