/**
 * `gikev2 demo`, the README's "run it" command, as a user runs it: a child
 * process that must finish quickly with exit 0 and tell in plain words which
 * member joined which group with which SAs, show protected frames reaching
 * both displays before and after a TEK rekey (on a new SPI), and never
 * print a key.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'gikev2-demo-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function demo(args: string[] = []): { status: number | null; stdout: string; stderr: string; ms: number } {
  const t = Date.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'demo', ...args], { cwd: root, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t };
}

describe('gikev2 demo', () => {
  it('starts a key server and three members and says who joined what', () => {
    const keylog = join(tmp, 'keys.txt');
    const r = demo(['--keylog', keylog]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const out = r.stdout;
    assert.match(out, /^Key server keyserver\.demo\.example listening on 127\.0\.0\.1:\d+/m);
    assert.match(out, /group "video" \(keyid:766964656f\): new keys by multicast to 239\.0\.0\.1 port 8848, signed with Ed25519/);
    assert.match(out, /group "control" \(control\.demo\.example\): new keys over each member.s IKE SA \(inband\)/);
    for (const who of ['camera', 'display-1', 'display-2']) assert.match(out, new RegExp(`^${who} joined group "video" as (sender|receiver):$`, 'm'));
    assert.match(out, /^display-1 joined group "control" as both:$/m);
    assert.match(out, /^display-2 joined group "control" as receiver:$/m);
    assert.match(out, /^ {4}ESP SA 0x[0-9a-f]{8} outbound .*239\.1\.1\.1 udp\/5000: AES_GCM_16\/256/m);
    assert.match(out, /^ {4}Rekey SA 0x[0-9a-f]{32} inbound/m);
    assert.match(out, /^ {4}Sender-IDs 0, 1 \(16 bits\)$/m);
    assert.match(out, /IKE SA [0-9a-f]{16}\/[0-9a-f]{16} with the key server, AES_GCM_16\/256, PRF HMAC_SHA2_256, key exchange CURVE25519/);
    assert.match(out, /^All 3 members registered \(5 group memberships\) in [\d.]+ s\. Members per group: video: 3, control: 2\.$/m);

    // The data plane: frames before the rekey on the first SPI, after it on a new one, each received by both displays.
    const sentLines = [...out.matchAll(/^camera sent "frame (\d+)" \(ESP SPI (0x[0-9a-f]{8})\)$/gm)].map((m) => ({ n: Number(m[1]), spi: m[2]! }));
    assert.ok(sentLines.length >= 5, out);
    const spis = [...new Set(sentLines.map((l) => l.spi))];
    assert.equal(spis.length, 2, `one SPI before the rekey, one after: ${spis.join(', ')}`);
    const rekeyAt = out.indexOf('Key server rekeys group "video": new ESP SA');
    assert.ok(rekeyAt > 0);
    assert.ok(out.indexOf(`camera sent "frame 3" (ESP SPI ${spis[0]})`) < rekeyAt, 'three frames before the rekey');
    assert.match(out, new RegExp(`new ESP SA ${spis[1]} sent by multicast GSA_REKEY`));
    assert.match(out, new RegExp(`^camera switched to ESP SA ${spis[1]} `, 'm'));
    for (const { n, spi } of sentLines) {
      for (const who of ['display-1', 'display-2']) {
        const lines = out.split('\n').filter((l) => l === `${who} received "frame ${n}" (ESP SPI ${spi})`);
        assert.equal(lines.length, 1, `${who} received frame ${n} once on ${spi}`);
      }
    }
    assert.ok(sentLines.filter((l) => l.spi === spis[1]).length >= 2, 'frames keep flowing on the new SPI');
    assert.match(out, new RegExp(`^display-1 received (\\d+) of \\1 frames, display-2 received \\1 of \\1 frames; ESP SPI ${spis[0]} -> ${spis[1]}, nothing lost or repeated through the rekey\\.$`, 'm'));

    // Keys went to the key log (one line per IKE SA, 0600) and nowhere else.
    const lines = readFileSync(keylog, 'utf8').trim().split('\n');
    assert.equal(lines.length, 3);
    assert.equal(statSync(keylog).mode & 0o777, 0o600);
    for (const l of lines) {
      for (const k of l.split(',').slice(2, 4)) assert.ok(!out.includes(k) && !r.stderr.includes(k), 'a key was printed');
    }
    assert.ok(r.ms < 10_000, `took ${r.ms} ms`);
    assert.ok(r.ms < 6_000, `the demo should stay quick: ${r.ms} ms`);
  });

  it('prints its usage with --help and refuses unknown options', () => {
    const help = demo(['--help']);
    assert.equal(help.status, 0);
    assert.match(help.stdout, /usage: gikev2 demo/);
    const bad = demo(['--bogus']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /usage: gikev2 demo/);
  });
});
