/**
 * Rekeying through the daemons as an operator drives them: a `gikev2 gcks`
 * process and three `gikev2 gm` processes on loopback, GSA_REKEY over real
 * multicast (a 239.x group, sent from 127.0.0.1 with loopback on, joined by
 * each member on 127.0.0.1), and `gikev2 ctl` over the control socket.
 *
 *  - `ctl rekey GROUP all`: every member logs the new Rekey SA (kek-updated)
 *    and the new Data-Security SAs (tek-installed), with exactly the SPIs
 *    `ctl status` reports;
 *  - `ctl exclude GROUP MEMBER`: that member logs that it was excluded, the
 *    others follow to the new KEK and TEKs, which the excluded one never
 *    installs;
 *  - bad requests (unknown group, unknown command, not JSON, an oversized
 *    line) get error responses and the daemon keeps answering;
 *  - `ctl reload-policy` applies a changed group policy (members follow to
 *    the new KEK) and changes nothing when the file did not change;
 *  - the control socket has mode 0600.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { sendControlRequest } from '../../src/node/control.ts';
import { CliProcess, freeUdpPort, ROOT, type LogLine } from './daemon-harness.ts';

const tmp = mkdtempSync(join(tmpdir(), 'gikev2-rk-'));
const running: CliProcess[] = [];
after(() => {
  for (const p of running) p.kill();
  rmSync(tmp, { recursive: true, force: true });
});

const PSK = 'daemon rekey e2e pre-shared key, long enough';
const GROUP_ID = 'keyid:766964656f'; // ID_KEY_ID "video", as members log it

function write(name: string, text: string): string {
  const path = join(tmp, name);
  writeFileSync(path, text);
  return path;
}

function start(name: string, args: readonly string[]): CliProcess {
  const p = new CliProcess(name, args);
  running.push(p);
  return p;
}

function gcksYaml(port: number, group: string, rekeyPort: number): string {
  return `
identity: "@gcks.rk.example"
listen:
  - {address: 127.0.0.1, port: ${port}}
credentials:
  psks:
    - member: "*.rk.example"
      secret: "${PSK}"
groups:
  - name: video
    id: {type: ID_KEY_ID, value: video}
    members: {patterns: ["*.rk.example"]}
    deactivationDelay: 1
    dataSecurity:
      - destination: {address: 239.1.1.1, protocol: udp, port: 5000}
    rekey:
      destination: {address: ${group}, port: ${rekeyPort}}
      source: {address: 127.0.0.1}
      signingKey: rekey.pem
`;
}

function gmYaml(identity: string, port: number): string {
  return `identity: "${identity}"
credentials: {psk: {secret: "${PSK}"}}
keyServers: [{address: 127.0.0.1, port: ${port}, id: "@gcks.rk.example"}]
groups:
  - {id: {type: ID_KEY_ID, value: video}}
`;
}

interface CtlResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function ctl(socket: string, ...args: string[]): Promise<CtlResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'ctl', '--socket', socket, ...args], { cwd: ROOT, timeout: 15_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

interface GroupStatus {
  readonly name: string;
  readonly members: number;
  readonly rekeySpi: string;
  readonly dataSecuritySpis: string[];
  readonly nextRekeyAt: string | null;
}

/** The group's status from `gikev2 ctl --json status`, or (quicker, same request) straight from the socket. */
async function status(socket: string, via: 'cli' | 'socket' = 'cli'): Promise<GroupStatus> {
  let text: string;
  if (via === 'cli') {
    const r = await ctl(socket, '--json', 'status');
    assert.equal(r.code, 0, r.stderr);
    text = r.stdout;
  } else {
    const response = await sendControlRequest(socket, { command: 'status' });
    assert.ok(response.ok, JSON.stringify(response));
    text = JSON.stringify(response.result);
  }
  const groups = (JSON.parse(text) as { groups: GroupStatus[] }).groups;
  assert.equal(groups.length, 1);
  return groups[0]!;
}

/** Sends raw lines to the control socket and collects one response line per request. */
function rawRequest(socket: string, payload: string, responses: number): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(socket);
    let data = '';
    c.setEncoding('utf8');
    c.on('data', (chunk: string) => {
      data += chunk;
      const lines = data.split('\n').filter((l) => l !== '');
      if (lines.length >= responses && data.endsWith('\n')) {
        c.destroy();
        resolve(lines.map((l) => JSON.parse(l) as Record<string, unknown>));
      }
    });
    c.on('error', reject);
    c.on('connect', () => c.write(payload));
  });
}

const videoLines = (p: CliProcess, type: string, filter: (l: LogLine) => boolean = () => true): LogLine[] =>
  p.events(type).filter((l) => l['group'] === GROUP_ID && filter(l));

describe('rekeying through the daemons and gikev2 ctl (real multicast on loopback)', { timeout: 60_000 }, () => {
  it('ctl rekey, exclude and reload-policy reach every member over multicast; bad requests are refused; the socket is 0600', async () => {
    writeFileSync(join(tmp, 'rekey.pem'), generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const port = await freeUdpPort();
    const rekeyPort = await freeUdpPort();
    const group = `239.${100 + (process.pid % 100)}.${randomBytes(1)[0]!}.${1 + (randomBytes(1)[0]! % 250)}`;
    const socket = join(tmp, 'ctl.sock');
    const gcks = start('gcks', ['gcks', '-c', write('gcks.yaml', gcksYaml(port, group, rekeyPort)), '--control', socket]);
    const [started] = await gcks.waitForEvent('started');
    assert.equal(started!['control'], socket);
    assert.equal(statSync(socket).mode & 0o777, 0o600);

    const names = ['a', 'b', 'c'];
    const gms = names.map((n) => start(n, ['gm', '-c', write(`${n}.yaml`, gmYaml(`${n}.rk.example`, port))]));
    for (const gm of gms) {
      await gm.waitForEvent('keys');
      const [joined] = await gm.waitForEvent('multicast-joined');
      assert.equal(joined!['address'], group);
      assert.equal(joined!['port'], rekeyPort);
    }
    const before = await status(socket, 'socket');
    assert.equal(before.members, 3);
    assert.ok(before.nextRekeyAt !== null);

    // --- rekey everything: new KEK and TEKs reach every member.
    const rekeyed = await ctl(socket, '--json', 'rekey', 'video', 'all');
    assert.equal(rekeyed.code, 0, rekeyed.stderr);
    const after1 = await status(socket);
    assert.deepEqual(JSON.parse(rekeyed.stdout).rekeySpi, after1.rekeySpi);
    assert.notEqual(after1.rekeySpi, before.rekeySpi);
    const newTeks = after1.dataSecuritySpis.filter((s) => !before.dataSecuritySpis.includes(s));
    assert.ok(newTeks.length >= 1, JSON.stringify({ before, after1 }));
    for (const gm of gms) {
      await gm.waitFor('the new KEK', () => videoLines(gm, 'kek-updated', (l) => l['spi'] === after1.rekeySpi).length > 0);
      for (const spi of newTeks) await gm.waitFor(`new TEK ${spi}`, () => videoLines(gm, 'tek-installed', (l) => l['spi'] === spi).length > 0);
      assert.equal(gm.events('rekey-rejected').length, 0, gm.stdout);
    }
    await gcks.waitForEvent('rekey-sent', 1, (l) => l['reason'] === 'operator');

    // --- exclude c: it learns it is out, a and b follow, c never gets the new keys.
    const [a, b, c] = gms as [CliProcess, CliProcess, CliProcess];
    const excluded = await ctl(socket, 'exclude', 'video', 'c.rk.example');
    assert.equal(excluded.code, 0, excluded.stderr);
    assert.match(excluded.stdout, /c\.rk\.example excluded/);
    const after2 = await status(socket);
    assert.equal(after2.members, 2);
    assert.notEqual(after2.rekeySpi, after1.rekeySpi);
    const teks2 = after2.dataSecuritySpis.filter((s) => !after1.dataSecuritySpis.includes(s));
    assert.ok(teks2.length >= 1);
    await c.waitForEvent('excluded');
    for (const gm of [a, b]) {
      await gm.waitFor('the KEK after the exclusion', () => videoLines(gm, 'kek-updated', (l) => l['spi'] === after2.rekeySpi).length > 0);
      for (const spi of teks2) await gm.waitFor(`TEK ${spi}`, () => videoLines(gm, 'tek-installed', (l) => l['spi'] === spi).length > 0);
      assert.equal(gm.events('excluded').length, 0);
    }
    assert.equal(videoLines(c, 'kek-updated', (l) => l['spi'] === after2.rekeySpi).length, 0);
    assert.equal(videoLines(c, 'tek-installed', (l) => teks2.includes(String(l['spi']))).length, 0);
    const members = await ctl(socket, '--json', 'members', 'video');
    assert.deepEqual((JSON.parse(members.stdout) as { members: { member: string }[] }).members.map((m) => m.member).sort(), ['a.rk.example', 'b.rk.example']);

    // --- bad requests: error responses, the daemon goes on.
    const unknownGroup = await ctl(socket, 'rekey', 'nosuchgroup');
    assert.equal(unknownGroup.code, 1);
    assert.match(unknownGroup.stderr, /no group nosuchgroup/);
    const unknownMember = await ctl(socket, 'exclude', 'video', 'nobody.rk.example');
    assert.equal(unknownMember.code, 1);
    assert.match(unknownMember.stderr, /no member/);
    const usage = await ctl(socket, 'rekey', 'video', 'sideways');
    assert.equal(usage.code, 2);
    const raw = await rawRequest(socket, 'this is not json\n{"command":"frobnicate"}\n{"command":"rekey","group":7}\n{"id":9,"command":"status","extra":1}\n', 4);
    assert.deepEqual(raw.map((r) => r['ok']), [false, false, false, false]);
    assert.match(String(raw[0]!['error']), /not valid JSON/);
    assert.match(String(raw[1]!['error']), /unknown command/);
    assert.match(String(raw[2]!['error']), /"group"/);
    assert.equal(raw[3]!['id'], 9);
    const [tooLong] = await rawRequest(socket, `{"command":"status","pad":"${'x'.repeat(70_000)}`, 1);
    assert.equal(tooLong!['ok'], false);
    const still = await status(socket, 'socket');
    assert.equal(still.rekeySpi, after2.rekeySpi);
    assert.equal(gcks.events('internal-error').length, 0, gcks.stdout);

    // --- reload-policy: a changed group policy is applied with a rekey the members follow.
    write('gcks.yaml', gcksYaml(port, group, rekeyPort).replace('deactivationDelay: 1', 'deactivationDelay: 2'));
    const reloaded = await ctl(socket, '--json', 'reload-policy');
    assert.equal(reloaded.code, 0, reloaded.stderr);
    assert.deepEqual(JSON.parse(reloaded.stdout).changed, ['video']);
    const after3 = await status(socket, 'socket');
    assert.notEqual(after3.rekeySpi, after2.rekeySpi);
    for (const gm of [a, b]) await gm.waitFor('the KEK after the policy change', () => videoLines(gm, 'kek-updated', (l) => l['spi'] === after3.rekeySpi).length > 0);
    const again = await ctl(socket, '--json', 'reload-policy');
    assert.deepEqual(JSON.parse(again.stdout).changed, []);

    for (const p of [...gms, gcks]) p.signal('SIGTERM');
    for (const p of [...gms, gcks]) assert.deepEqual(await p.exited, { code: 0, signal: null }, p.stderr);
    assert.throws(() => statSync(socket), /ENOENT/);
  });
});
