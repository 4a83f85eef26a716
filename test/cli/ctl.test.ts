/**
 * `gikev2 ctl` in-process (src/cli/main.ts run): usage errors exit 2 with
 * the usage text, an unreachable key server exits 1 naming the socket, and
 * answers from a control socket are printed in words, or as JSON with
 * --json; an error response exits 1.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { run } from '../../src/cli/main.ts';
import { ControlError, ControlServer, type ControlRequest } from '../../src/node/control.ts';
import { createLogger } from '../../src/node/log.ts';

const tmp = mkdtempSync(join(tmpdir(), 'gikev2-ctlcli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

async function ctl(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await run(['ctl', ...args], { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}

describe('gikev2 ctl', () => {
  it('usage errors exit 2', async () => {
    for (const args of [[], ['rekey'], ['rekey', 'g', 'sideways'], ['members'], ['status', 'extra'], ['frob'], ['readmit', 'g', 'm', '--readmit'], ['--socket', 'a', '--state', 'b', 'status']]) {
      const r = await ctl(...args);
      assert.equal(r.code, 2, JSON.stringify(args));
      assert.match(r.err, /usage: gikev2 ctl/);
    }
    assert.equal((await ctl('--help')).code, 0);
  });

  it('an unreachable key server exits 1', async () => {
    const r = await ctl('--socket', join(tmp, 'none.sock'), 'status');
    assert.equal(r.code, 1);
    assert.match(r.err, /cannot reach the key server at .*none\.sock/);
  });

  it('sends the request, prints the answer; an error response exits 1', async () => {
    const path = join(tmp, 'k.sock');
    const seen: ControlRequest[] = [];
    const server = await ControlServer.open({
      path,
      log: createLogger({ format: 'json', level: 'error', write: () => undefined }),
      handler: (r) => {
        seen.push(r);
        if (r.command === 'readmit') throw new ControlError('no group nope');
        return { name: 'video', id: 'keyid:766964656f', rekey: 'multicast', mode: 'tunnel', members: 2, capacity: 10, rekeySpi: 'ab', dataSecuritySpis: ['0100'], nextRekeyAt: null, nextRekeyInSeconds: null };
      },
    });
    try {
      const rekey = await ctl('--socket', path, 'rekey', 'video', 'tek');
      assert.equal(rekey.code, 0, rekey.err);
      assert.match(rekey.out, /group video: tek rekey sent/);
      assert.match(rekey.out, /Rekey SA\s+0xab/);
      const excl = await ctl('--socket', path, '--json', 'exclude', 'video', 'c@example.org', '--readmit');
      assert.equal(JSON.parse(excl.out).members, 2);
      const refused = await ctl('--socket', path, 'readmit', 'nope', 'm');
      assert.equal(refused.code, 1);
      assert.match(refused.err, /no group nope/);
      await ctl('--socket', path, 'rotate-signing-key', 'video', 'key.pem');
      assert.deepEqual(seen.slice(0, 2), [
        { command: 'rekey', group: 'video', kind: 'tek' },
        { command: 'exclude', group: 'video', member: 'c@example.org', readmit: true },
      ]);
      // The key server reads the key file itself: it gets an absolute path.
      assert.deepEqual(seen[3], { command: 'rotate-signing-key', group: 'video', keyFile: join(process.cwd(), 'key.pem') });
    } finally {
      await server.close();
    }
  });
});
