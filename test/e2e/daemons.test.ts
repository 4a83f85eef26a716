/**
 * The daemons as an operator runs them: `gikev2 gcks` and `gikev2 gm` child
 * processes with generated configuration files on loopback ports. Observed
 * through their JSON log lines (parsed, structured events) and key log
 * files: members register, SIGHUP with a broken file keeps the server
 * running, SIGTERM stops cleanly, bad configurations exit 1 naming the
 * field, and no key octet ever reaches a log.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createSelfSignedCa, issueEndEntity } from '../../src/crypto/x509-builder.ts';
import { assertNoStackTrace, CliProcess, freeUdpPort, type LogLine } from './daemon-harness.ts';

const tmp = mkdtempSync(join(tmpdir(), 'gikev2-e2e-'));
const running: CliProcess[] = [];
after(() => {
  for (const p of running) p.kill();
  rmSync(tmp, { recursive: true, force: true });
});

const PSK = 'e2e test pre-shared key, long enough';

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

writeFileSync(join(tmp, 'rekey.pem'), generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }));

function gcksYaml(port: number, nattPort: number, credentials = `  psks:\n    - member: "*.e2e.example"\n      secret: "${PSK}"`): string {
  return `
identity: "@gcks.e2e.example"
listen:
  - {address: 127.0.0.1, port: ${port}}
  - {address: 127.0.0.1, port: ${nattPort}, nonEspMarker: true}
credentials:
${credentials}
groups:
  - name: video
    id: {type: ID_KEY_ID, value: video}
    members: {patterns: ["*.e2e.example"]}
    senders: {ids: ["@sender.e2e.example"]}
    dataSecurity:
      - destination: {address: 239.1.1.1, protocol: udp, port: 5000}
    rekey:
      destination: {address: 239.0.0.1}
      signingKey: rekey.pem
  - name: control
    id: "@control.e2e.example"
    members: {any: true}
    senders: {any: true}
    dataSecurity:
      - destination: 239.2.2.2
    rekey: inband
`;
}

function gmYaml(identity: string, port: number, groups: string, credentials = `{psk: {secret: "${PSK}"}}`): string {
  return `identity: "${identity}"
credentials: ${credentials}
keyServers: [{address: 127.0.0.1, port: ${port}, id: "@gcks.e2e.example"}]
groups:
${groups}`;
}

const VIDEO_SENDER = '  - {id: {type: ID_KEY_ID, value: video}, role: sender, senderIds: 2}\n  - {id: "@control.e2e.example", role: both}\n';
const VIDEO_RECEIVER = '  - {id: {type: ID_KEY_ID, value: video}}\n';

/** The hex key fields (SK_ei, SK_er, SK_ai, SK_ar) of the key log lines. */
function keylogKeys(text: string): string[] {
  return text
    .trim()
    .split('\n')
    .flatMap((l) => {
      const f = l.split(',');
      return [f[2], f[3], f[5], f[6]].filter((x): x is string => x !== undefined && x.length >= 16);
    });
}

describe('gikev2 gcks and gikev2 gm daemons (real sockets)', { timeout: 90_000 }, () => {
  it('members register, a broken reload is refused, SIGTERM stops cleanly, keys only in the key log', async () => {
    const [port, nattPort] = [await freeUdpPort(), await freeUdpPort()];
    const gcksFile = write('gcks.yaml', gcksYaml(port, nattPort));
    const gcksKeylog = join(tmp, 'gcks.keylog');
    const gcks = start('gcks', ['gcks', '-c', gcksFile, '--keylog', gcksKeylog, '--log-level', 'debug']);
    const [started] = await gcks.waitForEvent('started');
    assert.deepEqual(started!['listen'], [`127.0.0.1:${port}`, `127.0.0.1:${nattPort} (non-ESP marker)`]);

    const senderKeylog = join(tmp, 'sender.keylog');
    const sender = start('sender', ['gm', '-c', write('sender.yaml', gmYaml('@sender.e2e.example', port, VIDEO_SENDER)), '--keylog', senderKeylog]);
    const receiver = start('receiver', ['gm', '-c', write('receiver.yaml', gmYaml('@receiver.e2e.example', port, VIDEO_RECEIVER))]);

    const senderKeys = await sender.waitForEvent('keys', 2);
    const [receiverKeys] = await receiver.waitForEvent('keys');
    const registered = await gcks.waitForEvent('member-registered', 3);

    // What the server handed out is what the members installed.
    const video = registered.find((l) => l['member'] === 'sender.e2e.example' && l['group'] === 'video')!;
    assert.equal(video['sender'], true);
    assert.deepEqual(video['senderIds'], [0, 1]);
    const senderVideo = senderKeys.find((l) => l['group'] === 'keyid:766964656f')!;
    assert.deepEqual(senderVideo['senderIds'], [0, 1]);
    const sas = senderVideo['dataSecuritySas'] as { spi: string; direction: string }[];
    assert.deepEqual(sas.map((s) => [s.spi, s.direction]), (video['dataSecuritySpis'] as string[]).map((s) => [s, 'outbound']));
    assert.equal((senderVideo['rekeySa'] as { spi: string }).spi, video['rekeySpi']);
    assert.equal((receiverKeys!['dataSecuritySas'] as { direction: string }[])[0]!.direction, 'inbound');
    assert.ok(registered.some((l) => l['member'] === 'sender.e2e.example' && l['group'] === 'control' && l['exchange'] === 'GSA_REGISTRATION'));

    // SIGHUP with a broken file: refused with the field named, the server keeps serving.
    writeFileSync(gcksFile, gcksYaml(port, nattPort).replace('rekey: inband', 'rekey: inbound'));
    gcks.signal('SIGHUP');
    const [refused] = await gcks.waitForEvent('reload-failed');
    assert.ok((refused!['errors'] as { field: string }[]).some((e) => e.field === 'groups[1].rekey'), JSON.stringify(refused));
    const late = start('late', ['gm', '-c', write('late.yaml', gmYaml('@late.e2e.example', port, VIDEO_RECEIVER))]);
    await late.waitForEvent('keys');
    await gcks.waitForEvent('member-registered', 4);

    for (const p of [sender, receiver, late]) p.signal('SIGTERM');
    for (const p of [sender, receiver, late]) {
      assert.deepEqual(await p.exited, { code: 0, signal: null }, p.stderr);
      assert.ok(p.events('stopped').length === 1);
    }
    gcks.signal('SIGTERM');
    assert.deepEqual(await gcks.exited, { code: 0, signal: null }, gcks.stderr);
    assert.equal(gcks.events('stopped').length, 1);

    // One key log line per IKE SA, naming its SPIs; file mode 0600.
    const established = gcks.events('sa-established');
    assert.equal(established.length, 3);
    const lines = readFileSync(gcksKeylog, 'utf8').trim().split('\n');
    assert.equal(lines.length, established.length);
    assert.deepEqual(
      lines.map((l) => l.split(',').slice(0, 2).join('/')).sort(),
      established.map((e) => `${String(e['spiI'])}/${String(e['spiR'])}`).sort(),
    );
    assert.equal(statSync(gcksKeylog).mode & 0o777, 0o600);
    assert.equal(readFileSync(senderKeylog, 'utf8').trim().split('\n').length, 1);

    // No key octets in any log: neither the IKE keys nor anything else from the key log.
    const allOutput = [gcks, sender, receiver, late].map((p) => p.stdout + p.stderr).join('\n');
    const keys = keylogKeys(readFileSync(gcksKeylog, 'utf8') + readFileSync(senderKeylog, 'utf8'));
    assert.ok(keys.length >= 6);
    for (const k of keys) assert.ok(!allOutput.includes(k), `key ${k} appears in a log`);
    assert.ok(gcks.events('keylog').length === 3, 'debug log notes each key log line without its content');
    for (const p of [gcks, sender, receiver, late]) assertNoStackTrace(p.stdout + p.stderr);
  });

  it('registers with ECDSA certificates read from files relative to the configuration', async () => {
    const now = Date.now();
    const validity = { notBefore: new Date(now - 3600_000), notAfter: new Date(now + 86400_000) };
    const ca = createSelfSignedCa({ subject: { O: 'gikev2 e2e', CN: 'e2e CA' }, keySpec: 'ec-p256', ...validity });
    const issue = (name: string) => issueEndEntity(ca, { subject: { O: 'gikev2 e2e', CN: name }, keySpec: 'ec-p256', subjectAltName: { dns: [name] }, ...validity });
    const server = issue('gcks.e2e.example');
    const member = issue('cert.e2e.example');
    const pki = join(tmp, 'pki');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(pki, { recursive: true });
    writeFileSync(join(pki, 'ca.pem'), ca.pem);
    for (const [n, c] of [['gcks', server], ['gm', member]] as const) {
      writeFileSync(join(pki, `${n}.crt`), c.pem);
      writeFileSync(join(pki, `${n}.key`), c.privateKey.export({ format: 'pem', type: 'pkcs8' }));
    }
    const [port, nattPort] = [await freeUdpPort(), await freeUdpPort()];
    const gcksFile = write('pki/gcks.yaml', gcksYaml(port, nattPort, '  certificate: gcks.crt\n  privateKey: gcks.key\n  trustAnchors: [ca.pem]').replace('signingKey: rekey.pem', 'signingKey: ../rekey.pem'));
    const gcks = start('gcks-cert', ['gcks', '-c', gcksFile]);
    await gcks.waitForEvent('started');
    const gm = start('gm-cert', ['gm', '-c', write('pki/gm.yaml', gmYaml('@cert.e2e.example', port, VIDEO_RECEIVER, '{certificate: gm.crt, privateKey: gm.key, trustAnchors: [ca.pem]}'))]);
    await gm.waitForEvent('keys');
    const [reg] = await gcks.waitForEvent('member-registered');
    assert.equal(reg!['member'], 'cert.e2e.example');
    gm.signal('SIGTERM');
    gcks.signal('SIGINT');
    assert.equal((await gm.exited).code, 0);
    assert.equal((await gcks.exited).code, 0);
  });

  it('a bad configuration stops the start with exit 1, every field named, no stack trace', async () => {
    const port = await freeUdpPort();
    const bad = gcksYaml(port, port + 1)
      .replace('signingKey: rekey.pem', 'signingKey: missing.pem')
      .replace('rekey: inband', 'rekey: inband\n    capacity: -1');
    const gcks = start('gcks-bad', ['gcks', '-c', write('bad-gcks.yaml', bad)]);
    const r = await gcks.exited;
    assert.equal(r.code, 1, gcks.stderr);
    assert.match(gcks.stderr, /groups\[1\]\.capacity: must be between 1 and/);
    assertNoStackTrace(gcks.stderr + gcks.stdout);

    // Valid YAML whose file is missing: reported at its field.
    const missing = start('gcks-missing', ['gcks', '-c', write('missing-gcks.yaml', gcksYaml(port, port + 1).replace('signingKey: rekey.pem', 'signingKey: missing.pem'))]);
    assert.equal((await missing.exited).code, 1);
    assert.match(missing.stderr, /groups\[0\]\.rekey\.signingKey: cannot read .*missing\.pem \(ENOENT\)/);
    assertNoStackTrace(missing.stderr);

    const gm = start('gm-bad', ['gm', '-c', write('bad-gm.yaml', gmYaml('@x.e2e.example', port, '  - {id: "@g", role: receiver, senderIds: 2}\n', '{psk: {secret: short}}'))]);
    assert.equal((await gm.exited).code, 1);
    assert.match(gm.stderr, /credentials\.psk\.secret: must be at least 16 octets/);
    assert.match(gm.stderr, /groups\[0\]\.senderIds: only a sender asks for Sender-IDs/);
    assertNoStackTrace(gm.stderr);

    const none = start('gm-none', ['gm', '-c', join(tmp, 'does-not-exist.yaml')]);
    assert.equal((await none.exited).code, 1);
    assert.match(none.stderr, /cannot read the file \(ENOENT\)/);

    const usage = start('gm-usage', ['gm', '--log-format', 'xml', '-c', 'x']);
    assert.equal((await usage.exited).code, 2);
    assert.match(usage.stderr, /--log-format must be one of json, readable/);
  });

  it('readable logs tell in words which SAs a member installed', async () => {
    const [port, nattPort] = [await freeUdpPort(), await freeUdpPort()];
    const gcks = start('gcks-readable', ['gcks', '-c', write('gcks-r.yaml', gcksYaml(port, nattPort))]);
    await gcks.waitForEvent('started');
    const gm = start('gm-readable', ['gm', '-c', write('gm-r.yaml', gmYaml('@sender.e2e.example', port, VIDEO_SENDER)), '--log-format', 'readable']);
    const line = await gm.waitFor('the video SAs in words', () => gm.lines.find((l: LogLine) => l.msg.includes('group keyid:766964656f SAs installed')));
    assert.match(line.msg, /ESP SA 0x[0-9a-f]{8} outbound any udp -> 239\.1\.1\.1 udp\/5000: AES_GCM_16\/256/);
    assert.match(line.msg, /Rekey SA 0x[0-9a-f]{32} inbound .* signed \(ed25519\)/);
    assert.match(line.msg, /Sender-IDs 0, 1 \(16 bits\)/);
    gm.signal('SIGTERM');
    gcks.signal('SIGTERM');
    assert.equal((await gm.exited).code, 0);
    assert.equal((await gcks.exited).code, 0);
  });

  it('--xfrm-dry-run logs the ip xfrm commands for the member\'s SAs, keys masked, and removes them on stop', async () => {
    const [port, nattPort] = [await freeUdpPort(), await freeUdpPort()];
    const gcks = start('gcks-xfrm', ['gcks', '-c', write('gcks-x.yaml', gcksYaml(port, nattPort))]);
    await gcks.waitForEvent('started');
    const keylog = join(tmp, 'gm-xfrm.keys');
    const gm = start('gm-xfrm', ['gm', '-c', write('gm-x.yaml', gmYaml('@sender.e2e.example', port, VIDEO_SENDER)), '--xfrm-dry-run', '--keylog', keylog]);
    const xfrm = (): LogLine[] => gm.lines.filter((l: LogLine) => l['event'] === 'xfrm');
    await gm.waitFor('an outbound XFRM policy', () => xfrm().find((l) => /ip xfrm policy add .*dir out/.test(l.msg)));
    const state = await gm.waitFor('a state for the ESP SA', () => xfrm().find((l) => /ip xfrm state add .* proto esp spi 0x[0-9a-f]{8}/.test(l.msg)));
    assert.match(state.msg, /<key \d+ octets>/, 'keys are masked in the dry run');
    assert.ok(xfrm().every((l) => l['dryRun'] === true));
    gm.signal('SIGTERM');
    assert.equal((await gm.exited).code, 0);
    assert.ok(xfrm().some((l) => /ip xfrm policy del/.test(l.msg)), 'policies removed on stop');
    assert.ok(xfrm().some((l) => /ip xfrm state del/.test(l.msg)), 'states removed on stop');
    gcks.signal('SIGTERM');
    assert.equal((await gcks.exited).code, 0);
  });
});
