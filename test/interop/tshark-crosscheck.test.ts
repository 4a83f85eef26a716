/**
 * Independent cross-check of our encoder and decoder with Wireshark's IKEv2
 * dissector: messages we encode are written into a capture (UDP/500, /848
 * and /4500 with the non-ESP marker), tshark dissects them (-T pdml), and
 * for every message tshark must report the same exchange type, message ID,
 * length, outer payload chain (types in order, each Payload Length), notify
 * types, and SA proposal/transform structure as our decoder.
 *
 * tshark 4.0 does not dissect UDP/848 as ISAKMP by default, hence
 * `-d udp.port==848,isakmp`. It names GSA (51) and KD (52) but does not
 * dissect their bodies, so their insides are checked by the length only.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { wirePayloadLengths } from '../../src/cli/render.ts';
import { writePcap, type UdpPacket } from '../../src/node/pcap.ts';
import { frameIkeMessage } from '../../src/node/udp-framing.ts';
import { PayloadType } from '../../src/wire/iana.ts';
import { decodeMessage, encodeMessage, type IkeMessage, type IkeMessageInput } from '../../src/wire/message.ts';
import { isUnknownPayload } from '../../src/wire/payload.ts';
import * as samples from '../helpers/sample-messages.ts';
import { requireTool } from '../helpers/tools.ts';

// ------------------------------------------------------------ a tiny PDML reader

interface PdmlNode {
  readonly tag: string;
  readonly attrs: Readonly<Record<string, string>>;
  readonly children: PdmlNode[];
}

function unescapeXml(s: string): string {
  return s.replace(/&(quot|amp|lt|gt|apos|#(\d+)|#x([0-9a-fA-F]+));/g, (_m, name: string, dec?: string, hex?: string) => {
    if (dec) return String.fromCodePoint(Number(dec));
    if (hex) return String.fromCodePoint(parseInt(hex, 16));
    return { quot: '"', amp: '&', lt: '<', gt: '>', apos: "'" }[name] ?? '';
  });
}

/** Parses PDML (tshark's flat XML: elements with attributes, no text content). */
function parsePdml(xml: string): PdmlNode[] {
  const root: PdmlNode = { tag: '#root', attrs: {}, children: [] };
  const stack: PdmlNode[] = [root];
  const tagRe = /<(\/?)([A-Za-z_][\w.-]*)((?:\s+[\w.:-]+="[^"]*")*)\s*(\/?)>/g;
  for (let m = tagRe.exec(xml); m; m = tagRe.exec(xml)) {
    const [, closing, tag, attrText, selfClosing] = m;
    if (closing) {
      stack.pop();
      continue;
    }
    const attrs: Record<string, string> = {};
    for (const a of attrText!.matchAll(/([\w.:-]+)="([^"]*)"/g)) attrs[a[1]!] = unescapeXml(a[2]!);
    const node: PdmlNode = { tag: tag!, attrs, children: [] };
    stack[stack.length - 1]!.children.push(node);
    if (!selfClosing) stack.push(node);
  }
  return root.children.flatMap((c) => (c.tag === 'pdml' ? c.children : [c])).filter((n) => n.tag === 'packet');
}

function fields(n: PdmlNode, name: string): PdmlNode[] {
  return n.children.filter((c) => c.tag === 'field' && c.attrs['name'] === name);
}
function field(n: PdmlNode, name: string): PdmlNode | undefined {
  return fields(n, name)[0];
}
function showNumber(n: PdmlNode | undefined): number {
  assert.ok(n, 'field missing in tshark output');
  const v = n.attrs['show'] ?? '';
  return v.startsWith('0x') ? parseInt(v, 16) : Number(v);
}

/** What tshark says about one IKE message. */
interface TsharkView {
  exchangeType: number;
  messageId: number;
  length: number;
  payloads: { type: number; length: number; notifyType?: number; proposals?: number[] }[];
}

function tsharkView(isakmp: PdmlNode): TsharkView {
  return {
    exchangeType: showNumber(field(isakmp, 'isakmp.exchangetype')),
    messageId: showNumber(field(isakmp, 'isakmp.messageid')),
    length: showNumber(field(isakmp, 'isakmp.length')),
    payloads: fields(isakmp, 'isakmp.typepayload').map((p) => {
      const type = showNumber(p);
      const notify = field(p, 'isakmp.notify.msgtype');
      const proposals = fields(p, 'isakmp.typepayload').filter((c) => showNumber(c) === 2);
      return {
        type,
        length: showNumber(field(p, 'isakmp.payloadlength')),
        ...(notify ? { notifyType: showNumber(notify) } : {}),
        ...(type === PayloadType.SA
          ? { proposals: proposals.map((pr) => fields(pr, 'isakmp.typepayload').filter((t) => showNumber(t) === 3).length) }
          : {}),
      };
    }),
  };
}

function ourView(raw: Buffer, m: IkeMessage): TsharkView {
  const lengths = wirePayloadLengths(raw, m);
  return {
    exchangeType: m.header.exchangeType,
    messageId: m.header.messageId,
    length: m.header.length,
    payloads: m.payloads.map((p, i) => {
      const base = { type: p.type, length: lengths[i]! };
      if (isUnknownPayload(p)) return base;
      if (p.type === PayloadType.NOTIFY) return { ...base, notifyType: p.notifyType };
      if (p.type === PayloadType.SA) return { ...base, proposals: p.proposals.map((pr) => pr.transforms.length) };
      return base;
    }),
  };
}

// ------------------------------------------------------------ the test

const cases: [string, () => IkeMessageInput][] = [
  ['IKE_SA_INIT request', samples.ikeSaInitRequest],
  ['IKE_SA_INIT response', samples.ikeSaInitResponse],
  ['GSA_AUTH request (SK)', samples.gsaAuthRequest],
  ['GSA_AUTH response (SK)', samples.gsaAuthResponse],
  ['GSA_AUTH with IDg, SAg, N(GROUP_SENDER) before SK', samples.gsaAuthWithCleartextPrefix],
  ['GSA_AUTH chain with GSA and KD in the clear', samples.gsaAuthResponsePlain],
  ['GSA_REKEY (SK)', samples.gsaRekey],
];
const PORTS = [
  { port: 500, marker: false },
  { port: 848, marker: false },
  { port: 4500, marker: true },
];

describe('tshark cross-check of the wire codec', () => {
  const skip = requireTool('tshark', ['tshark', '--version'], 'independent dissection of our messages');
  let dir = '';
  let packets: PdmlNode[] = [];
  const expected: { name: string; port: number; raw: Buffer }[] = [];

  before(() => {
    if (skip) return;
    dir = mkdtempSync(join(tmpdir(), 'gikev2-tshark-'));
    const udp: UdpPacket[] = [];
    for (const { port, marker } of PORTS) {
      for (const [name, make] of cases) {
        const raw = encodeMessage(make());
        expected.push({ name, port, raw });
        udp.push({
          src: samples.GM,
          dst: samples.GCKS,
          srcPort: port,
          dstPort: port,
          payload: frameIkeMessage(raw, marker ? 'non-esp-marker' : 'none'),
          time: 1_700_000_000 + udp.length,
        });
      }
    }
    const file = join(dir, 'crosscheck.pcap');
    writeFileSync(file, writePcap(udp));
    const r = spawnSync('tshark', ['-n', '-r', file, '-d', 'udp.port==848,isakmp', '-T', 'pdml'], {
      encoding: 'utf8',
      timeout: 60_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    assert.equal(r.status, 0, `tshark failed: ${r.stderr}`);
    packets = parsePdml(r.stdout);
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('tshark dissects every datagram as ISAKMP', { skip }, () => {
    assert.equal(packets.length, expected.length);
    packets.forEach((p, i) => {
      const protos = p.children.filter((c) => c.tag === 'proto' && c.attrs['name'] === 'isakmp');
      assert.equal(protos.length, 1, `frame ${i + 1} (${expected[i]!.name} on ${expected[i]!.port}) not dissected as ISAKMP`);
    });
  });

  for (const { port } of PORTS) {
    for (const [name] of cases) {
      it(`${name} on UDP/${port}: same exchange, message ID, length, payload chain and lengths`, { skip }, () => {
        const index = expected.findIndex((e) => e.name === name && e.port === port);
        const isakmp = packets[index]?.children.find((c) => c.tag === 'proto' && c.attrs['name'] === 'isakmp');
        assert.ok(isakmp, 'no ISAKMP layer');
        const raw = expected[index]!.raw;
        const ours = ourView(raw, decodeMessage(raw));
        const theirs = tsharkView(isakmp);
        assert.deepStrictEqual(theirs, ours);
        // And the chain really is what the sample says it is (guards against a vacuous comparison).
        assert.ok(ours.payloads.length > 0);
      });
    }
  }

  it('the GSA_AUTH cleartext chain has the G-IKEv2 payloads tshark must walk through', { skip }, () => {
    const index = expected.findIndex((e) => e.name.startsWith('GSA_AUTH with IDg') && e.port === 848);
    const isakmp = packets[index]!.children.find((c) => c.attrs['name'] === 'isakmp')!;
    const view = tsharkView(isakmp);
    assert.equal(view.exchangeType, 39);
    assert.deepStrictEqual(
      view.payloads.map((p) => p.type),
      [PayloadType.IDg, PayloadType.SA, PayloadType.NOTIFY, PayloadType.SK],
    );
    assert.equal(view.payloads[2]!.notifyType, 16429);
    const plain = expected.findIndex((e) => e.name.startsWith('GSA_AUTH chain with GSA') && e.port === 848);
    const plainView = tsharkView(packets[plain]!.children.find((c) => c.attrs['name'] === 'isakmp')!);
    assert.deepStrictEqual(
      plainView.payloads.map((p) => p.type),
      [PayloadType.IDr, PayloadType.AUTH, PayloadType.GSA, PayloadType.KD],
    );
  });
});
