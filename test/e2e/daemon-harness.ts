/**
 * Runs the real `gikev2` CLI as child processes for end-to-end tests: JSON
 * log lines parsed as they arrive, waiting for events, signals, exit codes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export type LogLine = Readonly<Record<string, unknown>> & { readonly msg: string; readonly level: string };

export class CliProcess {
  readonly lines: LogLine[] = [];
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;
  private waiters: (() => void)[] = [];

  constructor(readonly name: string, args: readonly string[]) {
    this.child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let partial = '';
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdout += chunk;
      partial += chunk;
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      for (const p of parts) {
        if (p.trim() === '') continue;
        try {
          this.lines.push(JSON.parse(p) as LogLine);
        } catch {
          this.lines.push({ level: 'raw', msg: p });
        }
      }
      this.wake();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
      this.wake();
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => {
      this.wake();
      resolve({ code, signal });
    }));
  }

  get pid(): number {
    return this.child.pid!;
  }

  events(type: string): LogLine[] {
    return this.lines.filter((l) => l['event'] === type);
  }

  /** Resolves with the first moment `predicate` holds; rejects after `timeoutMs` with the output so far. */
  async waitFor<T>(what: string, predicate: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = predicate();
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`${this.name}: timed out waiting for ${what}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 100);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  waitForEvent(type: string, count = 1, filter: (l: LogLine) => boolean = () => true): Promise<LogLine[]> {
    return this.waitFor(`${count} x ${type}`, () => {
      const hits = this.events(type).filter(filter);
      return hits.length >= count ? hits : undefined;
    });
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  /** SIGKILL if still running (test cleanup). */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** A UDP port that was free a moment ago on 127.0.0.1. */
export async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export function assertNoStackTrace(text: string): void {
  if (/^\s+at .+:\d+:\d+\)?$/m.test(text)) throw new Error(`stack trace in output:\n${text}`);
}
