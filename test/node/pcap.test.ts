import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  buildUdpPacket,
  detectCaptureFormat,
  internetChecksum,
  LinkType,
  parseFrame,
  PcapError,
  readCapture,
  readPcap,
  readPcapng,
  writePcap,
  writePcapng,
  type UdpPacket,
} from '../../src/node/pcap.ts';
import { requireTool } from '../helpers/tools.ts';

const packets: UdpPacket[] = [
  { src: '192.0.2.1', dst: '192.0.2.2', srcPort: 500, dstPort: 500, payload: Buffer.from('hello'), time: 1700000000.25 },
  { src: '192.0.2.2', dst: '192.0.2.1', srcPort: 848, dstPort: 848, payload: Buffer.alloc(300, 7), time: 1700000001.5 },
  { src: '2001:db8::1', dst: '2001:db8::2', srcPort: 4500, dstPort: 4500, payload: Buffer.from([0, 0, 0, 0, 1]), time: 1700000002 },
  { src: '10.0.0.1', dst: '10.0.0.2', srcPort: 500, dstPort: 500, payload: Buffer.alloc(0), time: 1700000003.000001 },
];

function assertSameDatagrams(got: ReturnType<typeof readCapture>, want: readonly UdpPacket[]): void {
  assert.equal(got.datagrams.length, want.length, `skipped: ${JSON.stringify(got.skipped)}`);
  got.datagrams.forEach((d, i) => {
    const p = want[i]!;
    assert.equal(d.frame, i + 1);
    assert.equal(d.src, p.src);
    assert.equal(d.dst, p.dst);
    assert.equal(d.srcPort, p.srcPort);
    assert.equal(d.dstPort, p.dstPort);
    assert.deepEqual(d.payload, Buffer.from(p.payload));
    assert.ok(Math.abs(d.time - (p.time ?? 0)) < 2e-6, `time ${d.time} vs ${p.time}`);
  });
}

describe('pcap writer and classic reader', () => {
  for (const link of ['ethernet', 'raw'] as const) {
    for (const bigEndian of [false, true]) {
      for (const nanosecond of [false, true]) {
        it(`round-trips ${link} ${bigEndian ? 'BE' : 'LE'} ${nanosecond ? 'ns' : 'us'}`, () => {
          const file = writePcap(packets, { link, bigEndian, nanosecond });
          assert.equal(detectCaptureFormat(file), 'pcap');
          const cap = readCapture(file);
          assert.equal(cap.format, 'pcap');
          assert.deepEqual(cap.linkTypes, [link === 'ethernet' ? LinkType.ETHERNET : LinkType.RAW]);
          assertSameDatagrams(cap, packets);
        });
      }
    }
  }

  it('writes a correct IPv4 header checksum and UDP checksum', () => {
    const pkt = buildUdpPacket(packets[0]!);
    assert.equal(pkt[0], 0x45);
    assert.equal(internetChecksum(pkt.subarray(0, 20)), 0, 'header checksum verifies');
    const pseudo = Buffer.concat([pkt.subarray(12, 20), Buffer.from([0, 17]), pkt.subarray(24, 26)]);
    assert.equal(internetChecksum(Buffer.concat([pseudo, pkt.subarray(20)])), 0, 'UDP checksum verifies');
  });

  it('writes a correct IPv6 UDP checksum', () => {
    const pkt = buildUdpPacket(packets[2]!);
    assert.equal(pkt[0]! >> 4, 6);
    const udp = pkt.subarray(40);
    const pseudo = Buffer.concat([pkt.subarray(8, 40), Buffer.from([0, 0, 0, 17]), pkt.subarray(44, 46)]);
    assert.equal(internetChecksum(Buffer.concat([pseudo, udp])), 0);
  });

  it('rejects unusable writer input with PcapError', () => {
    assert.throws(() => buildUdpPacket({ ...packets[0]!, dst: '2001:db8::1' }), PcapError);
    assert.throws(() => buildUdpPacket({ ...packets[0]!, srcPort: 70000 }), PcapError);
    assert.throws(() => buildUdpPacket({ ...packets[0]!, payload: Buffer.alloc(70000) }), PcapError);
  });

  it('rejects garbage with PcapError only', () => {
    const file = writePcap(packets);
    assert.throws(() => readCapture(Buffer.from('not a capture')), (e) => e instanceof PcapError && e.kind === 'bad-magic');
    assert.throws(() => readPcap(file.subarray(0, 30)), (e) => e instanceof PcapError && e.kind === 'truncated');
    const huge = Buffer.from(file);
    huge.writeUInt32LE(0xfffffff0, 24 + 8);
    assert.throws(() => readPcap(huge), (e) => e instanceof PcapError && e.kind === 'bad-length');
    const badVersion = Buffer.from(file);
    badVersion.writeUInt16LE(9, 4);
    assert.throws(() => readPcap(badVersion), (e) => e instanceof PcapError && e.kind === 'bad-value');
  });
});

/** A pcapng block in the given byte order. */
function ngBlock(type: number, body: Buffer, le: boolean): Buffer {
  const pad = (4 - (body.length % 4)) % 4;
  const total = 12 + body.length + pad;
  const b = Buffer.alloc(total);
  const w = (v: number, at: number): void => void (le ? b.writeUInt32LE(v, at) : b.writeUInt32BE(v, at));
  w(type, 0);
  w(total, 4);
  body.copy(b, 8);
  w(total, total - 4);
  return b;
}

function u32(v: number, le: boolean): Buffer {
  const b = Buffer.alloc(4);
  if (le) b.writeUInt32LE(v);
  else b.writeUInt32BE(v);
  return b;
}
function u16(v: number, le: boolean): Buffer {
  const b = Buffer.alloc(2);
  if (le) b.writeUInt16LE(v);
  else b.writeUInt16BE(v);
  return b;
}

function buildPcapng(le: boolean, frames: { link: number; data: Buffer; timeNs: bigint }[]): Buffer {
  const shb = ngBlock(
    0x0a0d0d0a,
    Buffer.concat([u32(0x1a2b3c4d, le), u16(1, le), u16(0, le), Buffer.alloc(8, 0xff)]),
    le,
  );
  const blocks: Buffer[] = [shb];
  const links = [...new Set(frames.map((f) => f.link))];
  for (const link of links) {
    // if_tsresol = 9 (nanoseconds), then opt_endofopt.
    const opts = Buffer.concat([u16(9, le), u16(1, le), Buffer.from([9, 0, 0, 0]), u16(0, le), u16(0, le)]);
    blocks.push(ngBlock(1, Buffer.concat([u16(link, le), u16(0, le), u32(0, le), opts]), le));
  }
  // A name-resolution block we must skip.
  blocks.push(ngBlock(4, Buffer.alloc(4), le));
  for (const f of frames) {
    const ts = f.timeNs;
    blocks.push(
      ngBlock(
        6,
        Buffer.concat([
          u32(links.indexOf(f.link), le),
          u32(Number(ts >> 32n), le),
          u32(Number(ts & 0xffffffffn), le),
          u32(f.data.length, le),
          u32(f.data.length, le),
          f.data,
        ]),
        le,
      ),
    );
  }
  return Buffer.concat(blocks);
}

const ipPacket = buildUdpPacket(packets[0]!);
const ip6Packet = buildUdpPacket(packets[2]!);

describe('pcapng reader', () => {
  for (const le of [true, false]) {
    it(`reads EPB/SPB/IDB with ns resolution, ${le ? 'little' : 'big'}-endian`, () => {
      const eth = Buffer.concat([Buffer.alloc(12, 1), Buffer.from([0x08, 0x00]), ipPacket]);
      const file = buildPcapng(le, [
        { link: LinkType.ETHERNET, data: eth, timeNs: 1700000000_250000000n },
        { link: LinkType.RAW, data: ip6Packet, timeNs: 1700000002_000000000n },
      ]);
      // Simple packet block (interface 0 = Ethernet).
      const spb = ngBlock(3, Buffer.concat([u32(eth.length, le), eth]), le);
      const cap = readCapture(Buffer.concat([file, spb]));
      assert.equal(cap.format, 'pcapng');
      assert.deepEqual(cap.linkTypes, [LinkType.ETHERNET, LinkType.RAW]);
      assert.equal(cap.datagrams.length, 3);
      assertSameDatagrams({ ...cap, datagrams: cap.datagrams.slice(0, 2) }, [packets[0]!, packets[2]!]);
      assert.equal(cap.datagrams[2]!.time, 0);
      assert.deepEqual(cap.datagrams[2]!.payload, Buffer.from('hello'));
    });
  }

  it('rejects broken blocks with PcapError', () => {
    const good = buildPcapng(true, [{ link: LinkType.RAW, data: ipPacket, timeNs: 0n }]);
    const badTrailer = Buffer.from(good);
    badTrailer.writeUInt32LE(999, badTrailer.length - 4);
    assert.throws(() => readPcapng(badTrailer), (e) => e instanceof PcapError && e.kind === 'bad-length');
    assert.throws(() => readPcapng(good.subarray(0, good.length - 2)), PcapError);
    const noIface = buildPcapng(true, []);
    const epb = ngBlock(6, Buffer.concat([u32(3, true), Buffer.alloc(16)]), true);
    assert.throws(() => readPcapng(Buffer.concat([noIface, epb])), (e) => e instanceof PcapError && e.kind === 'bad-value');
    assert.throws(() => readPcapng(ngBlock(6, Buffer.alloc(20), true)), PcapError);
  });
});

describe('link layers and IP', () => {
  const want = { src: '192.0.2.1', dst: '192.0.2.2', srcPort: 500, dstPort: 500 };
  const cases: [string, number, Buffer][] = [
    ['Ethernet + 802.1Q', LinkType.ETHERNET, Buffer.concat([Buffer.alloc(12), Buffer.from('8100000a0800', 'hex'), ipPacket])],
    ['Linux SLL', LinkType.LINUX_SLL, Buffer.concat([Buffer.alloc(14), Buffer.from('0800', 'hex'), ipPacket])],
    ['Linux SLL2', LinkType.LINUX_SLL2, Buffer.concat([Buffer.from('0800', 'hex'), Buffer.alloc(18), ipPacket])],
    ['null LE', LinkType.NULL, Buffer.concat([Buffer.from('02000000', 'hex'), ipPacket])],
    ['null BE', LinkType.NULL, Buffer.concat([Buffer.from('00000002', 'hex'), ipPacket])],
    ['loop', LinkType.LOOP, Buffer.concat([Buffer.from('00000002', 'hex'), ipPacket])],
    ['raw', LinkType.RAW, ipPacket],
  ];
  for (const [name, link, frame] of cases) {
    it(`unwraps ${name}`, () => {
      const r = parseFrame(link, frame);
      assert.ok(!('reason' in r), JSON.stringify(r));
      assert.deepEqual({ src: r.src, dst: r.dst, srcPort: r.srcPort, dstPort: r.dstPort }, want);
      assert.deepEqual(r.payload, Buffer.from('hello'));
    });
  }

  it('unwraps IPv6 on null (family 30) and walks extension headers', () => {
    const withExt = Buffer.from(ip6Packet);
    // Insert an 8-octet destination-options header (next header 60) before UDP.
    const ext = Buffer.from([17, 0, 1, 4, 0, 0, 0, 0]);
    const p = Buffer.concat([withExt.subarray(0, 40), ext, withExt.subarray(40)]);
    p[6] = 60;
    p.writeUInt16BE(p.length - 40, 4);
    const r = parseFrame(LinkType.NULL, Buffer.concat([Buffer.from('1e000000', 'hex'), p]));
    assert.ok(!('reason' in r), JSON.stringify(r));
    assert.equal(r.src, '2001:db8::1');
    assert.equal(r.dstPort, 4500);
  });

  it('skips what is not UDP over IP, with a reason', () => {
    const tcp = Buffer.from(ipPacket);
    tcp[9] = 6;
    const frag = Buffer.from(ipPacket);
    frag.writeUInt16BE(0x2000, 6);
    const cut = ipPacket.subarray(0, ipPacket.length - 1);
    const arp = Buffer.concat([Buffer.alloc(12), Buffer.from('0806', 'hex'), Buffer.alloc(28)]);
    for (const [link, f, re] of [
      [LinkType.RAW, tcp, /protocol 6/],
      [LinkType.RAW, frag, /fragment/],
      [LinkType.RAW, cut, /truncated/],
      [LinkType.ETHERNET, arp, /0806/],
      [LinkType.RAW, Buffer.alloc(0), /empty/],
      [147, ipPacket, /link type 147/],
    ] as const) {
      const r = parseFrame(link, f);
      assert.ok('reason' in r);
      assert.match(r.reason, re);
    }
  });

  it('counts skipped frames in a capture', () => {
    const file = writePcap(packets.slice(0, 1), { link: 'raw' });
    const rec = Buffer.alloc(16);
    const junk = Buffer.from('600000000000ff40', 'hex'); // IPv6, too short
    rec.writeUInt32LE(junk.length, 8);
    rec.writeUInt32LE(junk.length, 12);
    const cap = readCapture(Buffer.concat([file, rec, junk]));
    assert.equal(cap.datagrams.length, 1);
    assert.deepEqual(cap.skipped, [{ frame: 2, reason: 'short IPv6 header' }]);
  });
});

describe('pcapng written by tshark', () => {
  const skip = requireTool('tshark', ['tshark', '--version'], 'pcapng produced by a real tool');
  it('reads what tshark converts our pcap into', { skip }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'gikev2-pcap-'));
    try {
      const src = join(dir, 'in.pcap');
      const dst = join(dir, 'out.pcapng');
      writeFileSync(src, writePcap(packets));
      const r = spawnSync('tshark', ['-r', src, '-F', 'pcapng', '-w', dst], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 0, r.stderr);
      const file = readFileSync(dst);
      assert.equal(detectCaptureFormat(file), 'pcapng');
      const cap = readCapture(file);
      assert.equal(cap.format, 'pcapng');
      assertSameDatagrams(cap, packets);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('pcapng writer', () => {
  for (const bigEndian of [false, true]) {
    for (const link of ['ethernet', 'raw'] as const) {
      it(`round-trips ${link} ${bigEndian ? 'BE' : 'LE'}`, () => {
        const file = writePcapng(packets, { bigEndian, link });
        assert.equal(detectCaptureFormat(file), 'pcapng');
        assertSameDatagrams(readCapture(file), packets);
      });
    }
  }
});
