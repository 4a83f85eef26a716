import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { looksLikeHexText, parseHex, parseHexFile, parsePayloadType, decodeOne } from '../../src/cli/decode.ts';
import { UsageError } from '../../src/cli/command.ts';
import {
  hexPreview,
  itemToJson,
  renderItem,
  renderMessage,
  renderPayloads,
  wirePayloadLengths,
} from '../../src/cli/render.ts';
import { PayloadType } from '../../src/wire/iana.ts';
import { decodeMessage, encodeMessage } from '../../src/wire/message.ts';
import type { Payload } from '../../src/wire/payload.ts';
import * as samples from '../helpers/sample-messages.ts';

function decoded(make: () => Parameters<typeof encodeMessage>[0]) {
  const raw = encodeMessage(make());
  return { raw, m: decodeMessage(raw) };
}

describe('renderMessage', () => {
  it('shows the header and named SA transforms of IKE_SA_INIT', () => {
    const { raw, m } = decoded(samples.ikeSaInitRequest);
    const lines = renderMessage(m, wirePayloadLengths(raw, m));
    assert.match(lines[0]!, /^IKE_SA_INIT request #0 \[I\] SA KE No N\(NAT_DETECTION_SOURCE_IP\)/);
    for (const want of [
      "    initiator's SPI: 5a3c1e0f2b4d6a78",
      '    exchange type: IKE_SA_INIT (34)',
      '    flags: 0x08 (Initiator)',
      `    length: ${raw.length}`,
      '  SA (33), 48 octets',
      '    proposal 1: IKE (1), no SPI, 4 transform(s)',
      '      ENCR AES_GCM_16 (20)',
      '        KEY_LENGTH (14) = 256',
      '      KE CURVE25519 (31)',
      '      KWA KW_5649_256 (3)',
      '    key exchange method: CURVE25519 (31)',
      '    notify type: SIGNATURE_HASH_ALGORITHMS (16431)',
      '    hash algorithms: SHA2_256 (2), SHA2_384 (3), SHA2_512 (4)',
    ]) {
      assert.ok(lines.includes(want), `missing line ${JSON.stringify(want)} in\n${lines.join('\n')}`);
    }
  });

  it('shows SK as encrypted with its inner first payload', () => {
    const { raw, m } = decoded(samples.gsaAuthRequest);
    const lines = renderMessage(m, wirePayloadLengths(raw, m));
    const sk = m.payloads[0];
    assert.ok(sk && sk.type === PayloadType.SK && 'encrypted' in sk);
    assert.ok(
      lines.includes(`  SK (46), ${raw.length - 28} octets: encrypted, ${sk.encrypted.length} octets (inner first payload IDi (35))`),
      lines.join('\n'),
    );
    assert.ok(lines.includes('    exchange type: GSA_AUTH (39)'));
  });

  it('shows GSA policies, KD key bags and wrapped keys', () => {
    const lines = renderPayloads(samples.gsaAuthResponseInner());
    for (const want of [
      'GSA (51)',
      '  policy 1: GIKE_UPDATE (6), Rekey SA, SPI 8af31e9dde044245a1a3582a437926c8',
      '    source: TS_IPV4_ADDR_RANGE 192.0.2.1, protocol 17, ports 848-848',
      '    destination: TS_IPV4_ADDR_RANGE 239.1.1.1, protocol 17, ports 848-848',
      '    GCAUTH DIGITAL_SIGNATURE (2)',
      '    GSA_KEY_LIFETIME (1) = 00015180 = 86400',
      '  policy 2: ESP (3), Data-Security SA, SPI 2c62cce9',
      '  policy 3: group-wide',
      '    GWP_SENDER_ID_BITS (3) = 8',
      'KD (52)',
      '  key bag 1: group, GIKE_UPDATE (6), SPI 8af31e9dde044245a1a3582a437926c8',
      '    SA_KEY (1): Key ID 0, KWK ID 0, encrypted key 40 octets',
      '  key bag 3: member',
      '    WRAP_KEY (1): Key ID 7, KWK ID 0, encrypted key 40 octets',
      '    GM_SENDER_ID (3) = 01 = 1',
      'IDr (36)',
      '  data: "gcks.example.net"',
    ]) {
      assert.ok(lines.includes(want), `missing line ${JSON.stringify(want)} in\n${lines.join('\n')}`);
    }
  });

  it('shows GROUP_SENDER, IDg and an unknown payload', () => {
    const unknown: Payload = { type: 200, critical: false, unknown: true, body: Buffer.from('0102', 'hex') };
    const lines = renderPayloads([...samples.gsaAuthRequestInner(), unknown]);
    assert.ok(lines.includes('N(GROUP_SENDER) (41)'), lines.join('\n'));
    assert.ok(lines.includes('  notify type: GROUP_SENDER (16429)'));
    assert.ok(lines.includes('  Sender-IDs requested: 1'));
    assert.ok(lines.includes('IDg (50)'));
    assert.ok(lines.includes('  data: "group-1001"'));
    assert.ok(lines.includes('UNKNOWN(200) (200), not understood (skipped)'));
  });

  it('shows a malformed wrapped key without throwing', () => {
    const kd = samples.kdPayload();
    const bad: Payload = {
      ...kd,
      keyBags: [{ kind: 'group', protocol: 3, spi: Buffer.alloc(4), attributes: [{ type: 1, format: 'TLV', value: Buffer.from('0102', 'hex') }] }],
    };
    const lines = renderPayloads([bad]);
    assert.ok(lines.some((l) => l.includes('SA_KEY (1): malformed wrapped key')), lines.join('\n'));
  });

  it('shortens long octet strings', () => {
    assert.equal(hexPreview(Buffer.alloc(0)), '(empty)');
    assert.equal(hexPreview(Buffer.alloc(4, 0xab)), 'abababab');
    assert.match(hexPreview(Buffer.alloc(100)), /^0{64}\.\.\. \(100 octets\)$/);
  });
});

describe('renderItem and itemToJson', () => {
  it('prints a DecodeError with kind, path and offset', () => {
    const raw = encodeMessage(samples.ikeSaInitRequest());
    raw.writeUInt16BE(0xffff, 28 + 2);
    const item = decodeOne(raw, { source: 'test' });
    assert.equal(item.result.kind, 'error');
    const text = renderItem(item);
    assert.match(text, /^== test\nDecodeError \(truncated\) at SA: .* \(octet \d+ of 230\)\n$/);
  });

  it('gives JSON with hex octets, names and payload lengths', () => {
    const raw = encodeMessage(samples.ikeSaInitRequest());
    const json = itemToJson(decodeOne(raw, { source: 'x', frame: 3 }));
    const parsed = JSON.parse(JSON.stringify(json)) as Record<string, unknown>;
    assert.equal(parsed['kind'], 'ike');
    assert.equal(parsed['exchange'], 'IKE_SA_INIT');
    assert.equal(parsed['frame'], 3);
    const header = parsed['header'] as Record<string, unknown>;
    assert.equal(header['spiI'], '5a3c1e0f2b4d6a78');
    const payloads = parsed['payloads'] as Record<string, unknown>[];
    assert.deepEqual(
      payloads.map((p) => [p['name'], p['length']]),
      [['SA', 48], ['KE', 40], ['No', 36], ['N(NAT_DETECTION_SOURCE_IP)', 28], ['N(NAT_DETECTION_DESTINATION_IP)', 28], ['N(SIGNATURE_HASH_ALGORITHMS)', 14], ['N(IKEV2_FRAGMENTATION_SUPPORTED)', 8]],
    );
    assert.equal(typeof (payloads[1]!['data']), 'string');
  });

  it('gives JSON for errors', () => {
    const json = itemToJson(decodeOne(Buffer.from('00', 'hex'), { source: 'x' }));
    assert.deepEqual(json['error'], { name: 'DecodeError', kind: 'truncated', path: 'HDR', detail: "initiator's SPI: need 8 octet(s), 1 left", offset: 0 });
  });

  it('decodes a bare chain with --chain semantics', () => {
    const item = decodeOne(
      Buffer.from(encodeMessage(samples.gsaAuthResponsePlain()).subarray(28)),
      { source: 'x' },
      PayloadType.IDr,
    );
    assert.equal(item.result.kind, 'chain');
    assert.match(renderItem(item), /payload chain, first payload IDr \(36\), \d+ octets: IDr AUTH GSA KD/);
  });
});

describe('hex input', () => {
  it('parses hex with separators and 0x', () => {
    assert.deepEqual(parseHex('0x01 02:03\n04'), Buffer.from([1, 2, 3, 4]));
    assert.throws(() => parseHex('0g'), UsageError);
    assert.throws(() => parseHex('abc'), UsageError);
  });

  it('tells hex text from binary', () => {
    assert.equal(looksLikeHexText(Buffer.from('# comment\nabcd 01\n')), true);
    assert.equal(looksLikeHexText(Buffer.from([0x5a, 0x3c, 0x1e, 0x0f])), false);
    assert.equal(looksLikeHexText(Buffer.from('# only a comment\n')), false);
  });

  it('splits hex files into messages at blank lines', () => {
    assert.deepEqual(parseHexFile('# a\n0102\n03\n\n# b\n04\n'), [Buffer.from([1, 2, 3]), Buffer.from([4])]);
  });

  it('parses payload type names and numbers', () => {
    assert.equal(parsePayloadType('IDr'), 36);
    assert.equal(parsePayloadType('kd'), 52);
    assert.equal(parsePayloadType('NONCE'), 40);
    assert.equal(parsePayloadType('46'), 46);
    assert.throws(() => parsePayloadType('bogus'), UsageError);
  });
});
