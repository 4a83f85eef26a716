/**
 * The `gikev2 decode` command as a user runs it: a child process on the
 * shipped samples, checking output lines, --json, exit codes and that bad
 * input never produces a stack trace.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { writePcap, writePcapng } from '../../src/node/pcap.ts';
import { frameIkeMessage } from '../../src/node/udp-framing.ts';
import { encodeMessage } from '../../src/wire/message.ts';
import * as samples from '../helpers/sample-messages.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'gikev2-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function cli(args: string[], entry: 'main' | 'bin' = 'main'): { status: number | null; stdout: string; stderr: string } {
  const argv = entry === 'main' ? ['--import', 'tsx', 'src/cli/main.ts', ...args] : ['bin/gikev2.mjs', ...args];
  const r = spawnSync(process.execPath, argv, { cwd: root, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function assertNoStack(out: string): void {
  assert.doesNotMatch(out, /^\s+at .+:\d+:\d+\)?$/m, `stack trace in output:\n${out}`);
}

describe('gikev2 decode', () => {
  it('decodes the sample capture', () => {
    const r = cli(['decode', 'samples/gsa-auth.pcap']);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.split('\n');
    for (const want of [
      '== frame 1 2026-01-01T00:00:00.000Z 192.0.2.10:848 -> 192.0.2.1:848',
      'IKE_SA_INIT request #0 [I] SA KE No N(NAT_DETECTION_SOURCE_IP) N(NAT_DETECTION_DESTINATION_IP) N(SIGNATURE_HASH_ALGORITHMS) N(IKEV2_FRAGMENTATION_SUPPORTED)',
      '    exchange type: GSA_AUTH (39)',
      'GSA_AUTH request #1 [I] SK',
      'GSA_AUTH response #1 [R] SK',
      '      KWA KW_5649_256 (3)',
    ]) {
      assert.ok(lines.includes(want), `missing ${JSON.stringify(want)} in\n${r.stdout}`);
    }
    assert.ok(lines.some((l) => /^ {2}SK \(46\), \d+ octets: encrypted, \d+ octets \(inner first payload IDi \(35\)\)$/.test(l)));
    assert.ok(lines.some((l) => /^ {2}SK \(46\), \d+ octets: encrypted, \d+ octets \(inner first payload IDr \(36\)\)$/.test(l)));
  });

  it('prints JSON with --json', () => {
    const r = cli(['decode', '--json', 'samples/gsa-auth.pcap']);
    assert.equal(r.status, 0, r.stderr);
    const items = JSON.parse(r.stdout) as Record<string, unknown>[];
    assert.equal(items.length, 4);
    assert.deepEqual(
      items.map((i) => [i['kind'], i['exchange'], i['srcPort'], i['dstPort']]),
      [
        ['ike', 'IKE_SA_INIT', 848, 848],
        ['ike', 'IKE_SA_INIT', 848, 848],
        ['ike', 'GSA_AUTH', 848, 848],
        ['ike', 'GSA_AUTH', 848, 848],
      ],
    );
    const header = items[0]!['header'] as Record<string, unknown>;
    assert.equal(header['spiI'], '5a3c1e0f2b4d6a78');
  });

  it('decodes the hex sample and the decrypted inner chain', () => {
    const hex = cli(['decode', 'samples/ike-sa-init.hex']);
    assert.equal(hex.status, 0, hex.stderr);
    assert.match(hex.stdout, /^== samples\/ike-sa-init\.hex\nIKE_SA_INIT request #0 \[I\]/);
    const inner = cli(['decode', '--chain', 'IDr', 'samples/gsa-auth-response.inner.hex']);
    assert.equal(inner.status, 0, inner.stderr);
    assert.match(inner.stdout, /payload chain, first payload IDr \(36\), \d+ octets: IDr AUTH GSA KD/);
    assert.match(inner.stdout, /^ {6}SA_KEY \(1\): Key ID 0, KWK ID 0, encrypted key 40 octets$/m);
  });

  it('decodes --hex and a raw binary file', () => {
    const raw = encodeMessage(samples.ikeSaInitResponse());
    const r = cli(['decode', '--hex', raw.toString('hex')]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /IKE_SA_INIT response #0 \[R\]/);
    const bin = join(tmp, 'msg.bin');
    writeFileSync(bin, raw);
    const b = cli(['decode', bin]);
    assert.equal(b.status, 0, b.stderr);
    assert.match(b.stdout, /IKE_SA_INIT response #0 \[R\]/);
    const marked = cli(['decode', '--marker', '--hex', frameIkeMessage(raw, 'non-esp-marker').toString('hex')]);
    assert.equal(marked.status, 0, marked.stderr);
  });

  it('reports a DecodeError with its path, exits 1, continues, and prints no stack trace', () => {
    const good = encodeMessage(samples.ikeSaInitRequest());
    const bad = Buffer.from(good);
    bad.writeUInt16BE(3, 28 + 48 + 2); // KE payload length 3 < 4
    const r = cli(['decode', '--hex', bad.toString('hex'), '--hex', good.toString('hex')]);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /^DecodeError \(bad-length\) at KE: payload length 3 < 4 \(octet \d+ of 230\)$/m);
    assert.match(r.stdout, /== --hex #2\nIKE_SA_INIT request/, 'the next message is still decoded');
    assert.match(r.stderr, /1 of 2 message\(s\) failed to decode/);
    assertNoStack(r.stdout + r.stderr);
    const short = cli(['decode', '--hex', 'abcd']);
    assert.equal(short.status, 1);
    assert.match(short.stdout, /DecodeError \(truncated\) at HDR/);
    assertNoStack(short.stdout + short.stderr);
  });

  it('keeps going through a capture with bad packets, ESP and keepalives', () => {
    const good = encodeMessage(samples.gsaAuthRequest());
    const bad = Buffer.from(good.subarray(0, 40));
    const pkt = (port: number, payload: Buffer) => ({ src: samples.GM, dst: samples.GCKS, srcPort: port, dstPort: port, payload });
    const file = join(tmp, 'mixed.pcapng');
    writeFileSync(
      file,
      writePcapng([
        pkt(500, bad),
        pkt(4500, Buffer.from([0xff])),
        pkt(4500, Buffer.concat([Buffer.from('deadbeef', 'hex'), Buffer.alloc(32)])),
        pkt(4500, frameIkeMessage(good, 'non-esp-marker')),
        pkt(53, Buffer.from('not ike')),
      ]),
    );
    const r = cli(['decode', file]);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /frame 1 .*\nDecodeError \(truncated\) at HDR: length 202 but only 40 octet/);
    assert.match(r.stdout, /frame 2 .*\nNAT-keepalive/);
    assert.match(r.stdout, /frame 3 .*\nESP \(UDP-encapsulated\), SPI 0xdeadbeef/);
    assert.match(r.stdout, /frame 4 .*\(non-ESP marker\)\nGSA_AUTH request #1 \[I\] SK/);
    assert.doesNotMatch(r.stdout, /frame 5/);
    assertNoStack(r.stdout + r.stderr);
  });

  it('decodes extra ports with --port N[:marker]', () => {
    const msg = encodeMessage(samples.ikeSaInitRequest());
    const file = join(tmp, 'custom-ports.pcap');
    writeFileSync(
      file,
      writePcap([
        { src: samples.GM, dst: samples.GCKS, srcPort: 5000, dstPort: 5000, payload: msg },
        { src: samples.GM, dst: samples.GCKS, srcPort: 5001, dstPort: 5001, payload: frameIkeMessage(msg, 'non-esp-marker') },
      ]),
    );
    const none = cli(['decode', file]);
    assert.equal(none.status, 0);
    assert.match(none.stderr, /no datagrams on IKE ports/);
    const r = cli(['decode', '--port', '5000', '--port', '5001:marker', file]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.match(/IKE_SA_INIT request #0/g)?.length, 2);
  });

  it('exits 2 on usage errors', () => {
    for (const args of [[], ['decode'], ['frobnicate'], ['decode', '--bogus'], ['decode', '--hex', 'xyz'], ['decode', '--port', '99999', 'f'], ['decode', '--chain', 'NOPE', '--hex', '00']]) {
      const r = cli(args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assertNoStack(r.stdout + r.stderr);
    }
  });

  it('exits 1 for an unreadable file or a broken capture, without a stack trace', () => {
    const missing = cli(['decode', join(tmp, 'nope.pcap')]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /cannot read .*nope\.pcap: ENOENT/);
    const broken = join(tmp, 'broken.pcap');
    writeFileSync(broken, writePcap([{ src: samples.GM, dst: samples.GCKS, srcPort: 500, dstPort: 500, payload: Buffer.alloc(40) }]).subarray(0, 50));
    const r = cli(['decode', broken]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /pcap: .*need \d+ octet/);
    assertNoStack(missing.stderr + r.stdout + r.stderr);
  });

  it('prints help', () => {
    const r = cli(['decode', '--help']);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /usage: gikev2 decode/);
    const top = cli(['--help']);
    assert.equal(top.status, 0);
    assert.match(top.stdout, /decode +decode IKEv2/);
  });

  it('runs through the bin launcher', () => {
    const r = cli(['decode', 'samples/ike-sa-init.hex'], 'bin');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /IKE_SA_INIT request #0 \[I\]/);
  });
});
