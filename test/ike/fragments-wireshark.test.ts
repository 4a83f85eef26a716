/**
 * An independent check of fragments.ts and keylog.ts: Wireshark (tshark)
 * must decrypt every fragment with our key-log line, find every ICV right,
 * and reassemble the original inner payloads. Skipped (loudly) without tshark.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createSkCipher, type SkAlgorithm } from '../../src/crypto/cipher.ts';
import { deterministicRandom } from '../../src/crypto/random.ts';
import { fragmentMessage, skfProtector } from '../../src/ike/fragments.ts';
import { formatIkev2KeyLine } from '../../src/ike/keylog.ts';
import { writePcap } from '../../src/node/pcap.ts';
import { EncrId, ExchangeType, IntegId, NotifyType, PayloadType } from '../../src/wire/iana.ts';
import { requireTool } from '../helpers/tools.ts';

const skip = requireTool('tshark', ['tshark', '--version'], 'decrypts our fragments with our key log');
const dir = mkdtempSync(join(tmpdir(), 'gikev2-frag-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function tshark(pcap: string, keyLine: string, ...args: string[]): string[] {
  const r = spawnSync('tshark', ['-r', pcap, '-o', `uat:ikev2_decryption_table:${keyLine}`, ...args], {
    encoding: 'utf8',
    env: { ...process.env, WIRESHARK_CONFIG_DIR: dir },
    timeout: 30_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter((l) => l.trim() !== '');
}

const cases: [string, SkAlgorithm, number, number][] = [
  ['AES-GCM-16-256', { encr: EncrId.AES_GCM_16, encrKeyBits: 256 }, 36, 0],
  ['AES-CBC-128 + HMAC-SHA-256-128', { encr: EncrId.AES_CBC, encrKeyBits: 128, integ: IntegId.HMAC_SHA2_256_128 }, 16, 32],
];

describe('tshark decrypts and reassembles our fragments', { skip }, () => {
  for (const [name, alg, encrLen, integLen] of cases) {
    it(name, () => {
      const rng = deterministicRandom(name);
      const skEi = rng.bytes(encrLen);
      const skAi = rng.bytes(integLen);
      const spiI = Buffer.from('1122334455667788', 'hex');
      const spiR = Buffer.from('99aabbccddeeff00', 'hex');
      const cipher = createSkCipher(alg, { encrKey: skEi, integKey: skAi }, rng);
      // Inner chain: V(3000 octets of 'A') then N(INITIAL_CONTACT).
      const vid = Buffer.alloc(3004, 0x41);
      vid.writeUInt8(PayloadType.NOTIFY, 0);
      vid.writeUInt8(0, 1);
      vid.writeUInt16BE(3004, 2);
      const notify = Buffer.from([0, 0, 0, 8, 0, 0, 0, 0]);
      notify.writeUInt16BE(NotifyType.INITIAL_CONTACT, 6);
      const frags = fragmentMessage({
        header: {
          spiI,
          spiR,
          majorVersion: 2,
          minorVersion: 0,
          exchangeType: ExchangeType.IKE_AUTH,
          flags: { initiator: true, version: false, response: false },
          messageId: 1,
        },
        innerFirst: PayloadType.VENDOR_ID,
        inner: Buffer.concat([vid, notify]),
        limits: { maxDatagramSize: 576, ipVersion: 4, marker: false },
        protector: skfProtector(cipher),
      });
      assert.ok(frags.length >= 6);
      const line = formatIkev2KeyLine({
        spiI,
        spiR,
        ...alg,
        skEi,
        skEr: rng.bytes(encrLen),
        skAi,
        skAr: rng.bytes(integLen),
      });
      assert.ok(line);
      const packets = (list: Buffer[]) =>
        writePcap(list.map((payload) => ({ src: '10.0.0.1', dst: '10.0.0.2', srcPort: 500, dstPort: 500, payload })));
      const good = join(dir, `${encrLen}-good.pcap`);
      writeFileSync(good, packets(frags));
      assert.equal(tshark(good, line, '-Y', 'isakmp.enc.decrypted').length, frags.length);
      assert.equal(tshark(good, line, '-Y', 'isakmp.ikev2.integrity_checksum').length, 0);
      const fields = tshark(good, line, '-T', 'fields', '-e', 'isakmp.notify.msgtype').join(' ');
      assert.match(fields, new RegExp(`\\b${NotifyType.INITIAL_CONTACT}\\b`));

      // A flipped ICV octet must be caught by Wireshark too (so the check above means something).
      const bad = frags.map((f) => Buffer.from(f));
      bad[2]![bad[2]!.length - 1]! ^= 1;
      const badPath = join(dir, `${encrLen}-bad.pcap`);
      writeFileSync(badPath, packets(bad));
      assert.ok(tshark(badPath, line, '-Y', 'isakmp.ikev2.integrity_checksum').length >= 1);
    });
  }
});
