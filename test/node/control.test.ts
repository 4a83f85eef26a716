/**
 * The control socket in-process: request validation, the server's answers
 * to bad input (never a crash), mode 0600, stale and live socket files, and
 * where the key server's rekey messages leave from (withRekeySenders).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadGcksConfig } from '../../src/gcks/config.ts';
import {
  ControlError,
  ControlServer,
  ControlSocketInUseError,
  defaultControlPath,
  parseControlRequest,
  sendControlRequest,
  type ControlRequest,
} from '../../src/node/control.ts';
import { withRekeySenders } from '../../src/node/gcks-daemon.ts';
import { createLogger } from '../../src/node/log.ts';

const tmp = mkdtempSync(join(tmpdir(), 'gikev2-ctl-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const log = createLogger({ format: 'json', level: 'error', write: () => undefined });

describe('parseControlRequest', () => {
  it('accepts every command with its fields', () => {
    assert.deepEqual(parseControlRequest({ command: 'status' }), { command: 'status' });
    assert.deepEqual(parseControlRequest({ id: 3, command: 'rekey', group: 'g' }), { command: 'rekey', group: 'g', kind: 'all' });
    assert.deepEqual(parseControlRequest({ command: 'rekey', group: 'g', kind: 'tek' }), { command: 'rekey', group: 'g', kind: 'tek' });
    assert.deepEqual(parseControlRequest({ command: 'exclude', group: 'g', member: 'm' }), { command: 'exclude', group: 'g', member: 'm', readmit: false });
    assert.deepEqual(parseControlRequest({ command: 'readmit', group: 'g', member: 'm' }), { command: 'readmit', group: 'g', member: 'm' });
    assert.deepEqual(parseControlRequest({ command: 'rotate-signing-key', group: 'g', keyFile: '/k.pem' }), { command: 'rotate-signing-key', group: 'g', keyFile: '/k.pem' });
    assert.deepEqual(parseControlRequest({ command: 'reload-policy' }), { command: 'reload-policy' });
  });

  it('refuses what is not a request, saying why', () => {
    const bad: [unknown, RegExp][] = [
      [null, /JSON object/],
      [[1], /JSON object/],
      [{}, /"command"/],
      [{ command: 'reboot' }, /unknown command/],
      [{ command: 'members' }, /"group"/],
      [{ command: 'members', group: '' }, /"group"/],
      [{ command: 'members', group: 'x'.repeat(5000) }, /longer/],
      [{ command: 'rekey', group: 'g', kind: 'everything' }, /tek, kek or all/],
      [{ command: 'exclude', group: 'g', member: 'm', readmit: 'yes' }, /readmit/],
      [{ command: 'status', group: 'g' }, /unknown field "group"/],
      [{ command: 'rotate-signing-key', group: 'g' }, /"keyFile"/],
    ];
    for (const [value, message] of bad) assert.throws(() => parseControlRequest(value), (e: unknown) => e instanceof ControlError && message.test(e.message), JSON.stringify(value));
  });
});

describe('ControlServer', () => {
  it('answers over a 0600 socket, turns bad input and handler errors into error responses, and removes its file', async () => {
    const path = join(tmp, 'a.sock');
    const seen: ControlRequest[] = [];
    const server = await ControlServer.open({
      path,
      log,
      handler: (r) => {
        seen.push(r);
        if (r.command === 'members') throw new ControlError(`no group ${r.group}`);
        if (r.command === 'readmit') throw new Error('unexpected');
        return { fine: true };
      },
    });
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(await sendControlRequest(path, { command: 'status' }), { id: 1, ok: true, result: { fine: true } });
    assert.deepEqual(await sendControlRequest(path, { command: 'members', group: 'x' }), { id: 1, ok: false, error: 'no group x' });
    assert.deepEqual(await sendControlRequest(path, { command: 'readmit', group: 'x', member: 'y' }), { id: 1, ok: false, error: 'unexpected' });
    assert.equal((await sendControlRequest(path, { command: 'nope' })).ok, false);

    const raw = await new Promise<string>((resolve) => {
      const c = net.createConnection(path);
      let data = '';
      c.setEncoding('utf8').on('data', (d: string) => (data += d));
      c.on('close', () => resolve(data));
      c.on('connect', () => c.write(`{"command":"status"}\n\n{oops\n${'y'.repeat(70_000)}`));
    });
    const answers = raw.trim().split('\n').map((l) => JSON.parse(l) as { ok: boolean; error?: string });
    assert.deepEqual(answers.map((a) => a.ok), [true, false, false]);
    assert.match(answers[2]!.error!, /longer than/);

    assert.equal((await sendControlRequest(path, { command: 'status' })).ok, true, 'still serving');
    assert.equal(seen.length, 5);
    await server.close();
    assert.throws(() => statSync(path), /ENOENT/);
  });

  it('replaces a stale socket file, refuses a live one and any other file', async () => {
    const path = join(tmp, 'b.sock');
    const first = await ControlServer.open({ path, log, handler: () => null });
    await assert.rejects(ControlServer.open({ path, log, handler: () => null }), ControlSocketInUseError);
    await first.close();
    // A crashed daemon leaves its socket file behind, with nobody answering there.
    const crashed = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.stdout.write('up'))`]);
    await new Promise<void>((r) => crashed.stdout.once('data', () => r()));
    crashed.kill('SIGKILL');
    await new Promise<void>((r) => crashed.once('exit', () => r()));
    assert.ok(statSync(path).isSocket());
    const second = await ControlServer.open({ path, log, handler: () => null });
    assert.equal((await sendControlRequest(path, { command: 'status' })).ok, true);
    await second.close();
    const plain = join(tmp, 'plain');
    writeFileSync(plain, 'not a socket');
    await assert.rejects(ControlServer.open({ path: plain, log, handler: () => null }), /not a socket/);
  });

  it('lives in the state directory, else the runtime directory', () => {
    assert.equal(defaultControlPath({ stateDir: '/var/lib/gikev2' }), '/var/lib/gikev2/gikev2-gcks.sock');
    assert.equal(defaultControlPath({ env: { XDG_RUNTIME_DIR: '/run/user/1000' } }), '/run/user/1000/gikev2-gcks.sock');
  });
});

describe('withRekeySenders', () => {
  const yaml = (listen: string, source: string) => `
identity: "@gcks.example"
listen:
${listen}
credentials: {psks: [{member: any, secret: "a long enough pre-shared key here"}]}
groups:
  - name: g
    id: "@g.example"
    members: {any: true}
    dataSecurity: [{destination: 239.1.1.1}]
    rekey:
      destination: {address: 239.0.0.9, port: 9000}
      ${source}
      authentication: implicit
`;
  const specs = (listen: string, source: string) => {
    const c = loadGcksConfig(yaml(listen, source), 't.yaml');
    return withRekeySenders(c.listen.map((l) => ({ address: l.address, port: l.port, marker: l.nonEspMarker })), c.groups);
  };

  it('sets up the listen socket the source names, or adds a send socket, never a marker socket', () => {
    const listen = '  - {address: 127.0.0.1, port: 500}\n  - {address: 127.0.0.1, port: 4500}';
    assert.deepEqual(specs(listen, 'source: {address: 127.0.0.1}'), [
      { address: '127.0.0.1', port: 500, marker: false, multicast: { interface: '127.0.0.1', ttl: 1, loopback: true } },
      { address: '127.0.0.1', port: 4500, marker: true },
    ]);
    assert.deepEqual(specs(listen, 'source: {address: 127.0.0.5}')[2], { address: '127.0.0.5', port: 0, marker: false, multicast: { interface: '127.0.0.5', ttl: 1, loopback: true } });
    // No source: any address; the first plain socket of the family sends.
    assert.deepEqual(specs(listen, '')[0]!.multicast, { interface: '127.0.0.1', ttl: 1, loopback: true });
    // A wildcard listen socket on the source's port sends from the source's interface.
    assert.deepEqual(specs('  - {address: 0.0.0.0, port: 848}', 'source: {address: 127.0.0.1, port: 848}'), [
      { address: '0.0.0.0', port: 848, marker: false, multicast: { interface: '127.0.0.1', ttl: 1, loopback: true } },
    ]);
  });
});
