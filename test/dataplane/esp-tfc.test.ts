import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { GroupChannelCore, IvCounterRegistry, type GroupSa } from '../../src/dataplane/channel-core.ts';
import {
  createEspSa,
  createInnerEncoder,
  decodeInner,
  EspConfigError,
  NEXT_HEADER_IPV4,
  NEXT_HEADER_IPV6,
  NEXT_HEADER_NONE,
  NEXT_HEADER_UDP,
  type EspAlgorithm,
  type EspKeys,
  type EspSa,
} from '../../src/dataplane/esp.ts';
import { EncrId, IntegId, SnId } from '../../src/wire/iana.ts';

/**
 * Traffic Flow Confidentiality padding (RFC 4303 2.7): octets after the
 * inner packet, before the ESP Padding, which the receiver discards using
 * the length the inner packet states.
 */

const GROUP = '239.1.2.3';
const PORT = 5000;
const addressing = { groupAddress: GROUP, groupPort: PORT, sourceAddress: '10.0.0.7', sourcePort: 4000 };
const TFC = 37;

const GCM: EspAlgorithm = { encr: EncrId.AES_GCM_16, encrKeyBits: 128 };
const gcmKeys = (): EspKeys => ({ encrKey: randomBytes(20), integKey: Buffer.alloc(0) });
const CBC: EspAlgorithm = { encr: EncrId.AES_CBC, encrKeyBits: 256, integ: IntegId.HMAC_SHA2_256_128 };
const cbcKeys = (): EspKeys => ({ encrKey: randomBytes(32), integKey: randomBytes(32) });

const iv = (counter: number): { senderIdBits: number; senderId: number; counter: number } => ({ senderIdBits: 0, senderId: 0, counter });

/** Seals `payload` and opens it again; returns the decrypted Payload Data and Next Header. */
function throughEsp(sa: EspSa, nextHeader: number, payload: Buffer, seq = 1): { payload: Buffer; nextHeader: number } {
  const r = sa.open(sa.seal(seq, iv(seq), nextHeader, payload));
  assert.ok(r.ok);
  return { payload: r.packet.payload, nextHeader: r.packet.nextHeader };
}

/** An IPv6 | UDP packet as another implementation would put it into tunnel-mode ESP. */
function ipv6Udp(src: string, dst: string, data: Buffer, opts: { payloadLength?: number; nextHeader?: number } = {}): Buffer {
  const out = Buffer.alloc(40 + 8 + data.length);
  out.writeUInt32BE(0x60000000, 0); // version 6, traffic class 0, flow label 0
  out.writeUInt16BE(opts.payloadLength ?? 8 + data.length, 4);
  out[6] = opts.nextHeader ?? NEXT_HEADER_UDP;
  out[7] = 1;
  Buffer.from(src, 'hex').copy(out, 8);
  Buffer.from(dst, 'hex').copy(out, 24);
  out.writeUInt16BE(4000, 40);
  out.writeUInt16BE(PORT, 42);
  out.writeUInt16BE(8 + data.length, 44);
  data.copy(out, 48);
  return out;
}
const V6_SRC = '20010db8000000000000000000000007'; // 2001:db8::7
const V6_GROUP = 'ff0e0000000000000000000000010002'; // ff0e::1:2

describe('TFC padding in tunnel mode (RFC 4303 2.7)', () => {
  it('an IPv4 packet with 37 octets of TFC padding decrypts to exactly the inner packet', () => {
    const data = Buffer.from('market data tick');
    const inner = createInnerEncoder('tunnel', addressing).encode(data);
    for (const [alg, keys] of [
      [GCM, gcmKeys()],
      [CBC, cbcKeys()],
    ] as const) {
      const sa = createEspSa(0x1000, alg, keys);
      const opened = throughEsp(sa, NEXT_HEADER_IPV4, Buffer.concat([inner, randomBytes(TFC)]));
      assert.equal(opened.payload.length, inner.length + TFC);
      const r = decodeInner(opened.nextHeader, opened.payload, GROUP, PORT);
      assert.ok(r.ok, r.ok ? '' : r.reason);
      assert.deepEqual(r.datagram.data, data);
      assert.equal(r.datagram.innerSource, '10.0.0.7');
      assert.equal(r.datagram.innerDestination, GROUP);
      assert.equal(r.datagram.sourcePort, 4000);
    }
  });

  it('an IPv6 packet with TFC padding decrypts to exactly the inner packet', () => {
    const data = Buffer.from('v6 payload');
    const inner = ipv6Udp(V6_SRC, V6_GROUP, data);
    const sa = createEspSa(0x1001, GCM, gcmKeys());
    const opened = throughEsp(sa, NEXT_HEADER_IPV6, Buffer.concat([inner, Buffer.alloc(TFC)]));
    assert.equal(opened.nextHeader, NEXT_HEADER_IPV6);
    for (const group of ['ff0e::1:2', 'FF0E:0:0:0:0:0:1:2', 'ff0e:0000::0001:0002']) {
      const r = decodeInner(opened.nextHeader, opened.payload, group, PORT);
      assert.ok(r.ok, `${group}: ${r.ok ? '' : r.reason}`);
      assert.deepEqual(r.datagram.data, data);
      assert.equal(r.datagram.innerSource, '2001:db8::7');
      assert.equal(r.datagram.innerDestination, 'ff0e::1:2');
    }
    // Without padding as well, and the inner destination must be the group.
    assert.ok(decodeInner(NEXT_HEADER_IPV6, inner, 'ff0e::1:2', PORT).ok);
    for (const other of ['ff0e::1:3', GROUP, 'fe80::1%eth0', 'not an address']) {
      const r = decodeInner(NEXT_HEADER_IPV6, inner, other, PORT);
      assert.equal(!r.ok && r.reason, 'bad-inner', other);
    }
  });

  it('the sender adds TFC padding when asked (tfcPadTo) and the receiver strips it', () => {
    const enc = createInnerEncoder('tunnel', addressing);
    for (const [alg, keys] of [
      [GCM, gcmKeys()],
      [CBC, cbcKeys()],
    ] as const) {
      const tx = createEspSa(0x1002, alg, keys, { tfcPadTo: 200 });
      const rx = createEspSa(0x1002, alg, keys);
      for (const n of [0, 1, 50, 171, 172, 173, 300]) {
        const data = randomBytes(n);
        const packet = tx.seal(n + 1, iv(n), enc.nextHeader, data, enc.header(n));
        // Payload Data is padded to 200 octets (zeros after the 28-octet IPv4/UDP header and the data).
        const innerLength = enc.headerLength + n;
        assert.equal(packet.length, innerLength + tx.overhead(innerLength), `length ${n}`);
        const r = rx.open(packet);
        assert.ok(r.ok);
        assert.equal(r.packet.payload.length, Math.max(innerLength, 200), `length ${n}`);
        assert.ok(r.packet.payload.subarray(innerLength).every((b) => b === 0));
        const d = decodeInner(r.packet.nextHeader, r.packet.payload, GROUP, PORT);
        assert.ok(d.ok, `length ${n}: ${d.ok ? '' : d.reason}`);
        assert.deepEqual(d.datagram.data, data);
      }
    }
  });

  it('TFC padding is only added where the payload states its length, and the target is checked', () => {
    const keys = gcmKeys();
    const tx = createEspSa(0x1003, GCM, keys, { tfcPadTo: 64 });
    assert.equal(throughEsp(tx, 6, Buffer.alloc(10)).payload.length, 10, 'Next Header 6: no TFC padding');
    assert.equal(throughEsp(tx, NEXT_HEADER_UDP, Buffer.alloc(10)).payload.length, 64);
    assert.equal(throughEsp(tx, NEXT_HEADER_NONE, Buffer.alloc(0)).payload.length, 64);
    for (const bad of [-1, 1.5, 0x10000]) {
      assert.throws(
        () => createEspSa(0x1003, GCM, keys, { tfcPadTo: bad }),
        (e: unknown) => e instanceof EspConfigError && e.kind === 'bad-tfc-padding',
      );
    }
  });

  it('a stated inner length larger than the data, or malformed, is still rejected', () => {
    const inner = createInnerEncoder('tunnel', addressing).encode(Buffer.from('hello'));
    const padded = Buffer.concat([inner, Buffer.alloc(TFC)]);
    const withTotal = (total: number): Buffer => {
      const b = Buffer.from(padded);
      b.writeUInt16BE(total, 2);
      return b;
    };
    const rejected = (nh: number, b: Buffer, why: string): void => {
      const r = decodeInner(nh, b, GROUP, PORT);
      assert.equal(!r.ok && r.reason, 'bad-inner', why);
    };
    rejected(NEXT_HEADER_IPV4, withTotal(padded.length + 1), 'IPv4 total length beyond the data');
    rejected(NEXT_HEADER_IPV4, withTotal(0xffff), 'IPv4 total length 65535');
    rejected(NEXT_HEADER_IPV4, withTotal(27), 'IPv4 total length shorter than IPv4 + UDP headers');
    rejected(NEXT_HEADER_IPV4, withTotal(inner.length + 4), 'UDP length no longer matches the IP length');
    rejected(NEXT_HEADER_IPV4, inner.subarray(0, inner.length - 1), 'truncated inner packet');
    const fragment = Buffer.from(padded);
    fragment.writeUInt16BE(0x2000, 6); // More Fragments
    rejected(NEXT_HEADER_IPV4, fragment, 'IPv4 fragment');

    const v6 = Buffer.concat([ipv6Udp(V6_SRC, V6_GROUP, Buffer.from('hello')), Buffer.alloc(TFC)]);
    const v6WithLength = (n: number): Buffer => {
      const b = Buffer.from(v6);
      b.writeUInt16BE(n, 4);
      return b;
    };
    assert.ok(decodeInner(NEXT_HEADER_IPV6, v6, 'ff0e::1:2', PORT).ok);
    const rejected6 = (b: Buffer, why: string): void => {
      const r = decodeInner(NEXT_HEADER_IPV6, b, 'ff0e::1:2', PORT);
      assert.equal(!r.ok && r.reason, 'bad-inner', why);
    };
    rejected6(v6WithLength(v6.length - 40 + 1), 'IPv6 payload length beyond the data');
    rejected6(v6WithLength(0), 'IPv6 payload length 0 (jumbogram)');
    rejected6(v6WithLength(7), 'IPv6 payload shorter than a UDP header');
    rejected6(v6WithLength(8 + 5 + 1), 'UDP length no longer matches the IPv6 payload length');
    rejected6(Buffer.concat([ipv6Udp(V6_SRC, V6_GROUP, Buffer.from('hello'), { nextHeader: 0 }), Buffer.alloc(4)]), 'extension header');
    const v4InV6 = Buffer.from(v6);
    v4InV6[0] = 0x45;
    rejected6(v4InV6, 'version 4 under Next Header 41');
  });
});

describe('transport mode: the UDP length states the datagram size (RFC 4303 2.7)', () => {
  const enc = createInnerEncoder('transport', addressing);

  it('octets after the UDP datagram are TFC padding and are dropped', () => {
    const data = Buffer.from('transport');
    const r = decodeInner(NEXT_HEADER_UDP, Buffer.concat([enc.encode(data), randomBytes(TFC)]), GROUP, PORT);
    assert.ok(r.ok, r.ok ? '' : r.reason);
    assert.deepEqual(r.datagram.data, data);
  });

  it('a UDP length beyond the data or below the header is rejected', () => {
    const inner = enc.encode(Buffer.from('transport'));
    for (const udpLength of [inner.length + 1, 7, 0]) {
      const b = Buffer.from(inner);
      b.writeUInt16BE(udpLength, 4);
      const r = decodeInner(NEXT_HEADER_UDP, b, GROUP, PORT);
      assert.equal(!r.ok && r.reason, 'bad-inner', `UDP length ${udpLength}`);
    }
  });
});

describe('channel: TFC padding and rejected inner packets', () => {
  const sa = (spi: number): GroupSa => ({ spi, algorithm: GCM, keys: gcmKeys(), sn: SnId.SEQ32 });
  const opts = { groupAddress: GROUP, groupPort: PORT, mode: 'tunnel' as const };

  it('a tunnel-mode channel sending with tfcPadTo is understood by one that does not', () => {
    const s = sa(0x3000);
    const tx = new GroupChannelCore(
      { ...opts, sourceAddress: '10.0.0.7', tfcPadTo: 256, ivCounters: new IvCounterRegistry() },
      { sas: [{ ...s, outbound: true }], sender: { senderIdBits: 0, senderIds: [] } },
      0,
    );
    const rx = new GroupChannelCore({ ...opts, ivCounters: new IvCounterRegistry() }, { sas: [s] }, 0);
    const sent = tx.seal(Buffer.from('padded'), 0);
    assert.ok(sent.ok);
    assert.ok(sent.packet.length > 256);
    const r = rx.open(sent.packet, 0);
    assert.ok(r.ok, r.ok ? '' : r.reason);
    assert.equal(r.datagram.data.toString(), 'padded');
    assert.equal(r.datagram.innerSource, '10.0.0.7');
  });

  it('a bogus inner length is dropped as bad-inner and leaves the replay window alone', () => {
    const s = sa(0x3001);
    const rx = new GroupChannelCore({ ...opts, ivCounters: new IvCounterRegistry() }, { sas: [s] }, 0);
    const esp = createEspSa(s.spi, s.algorithm, s.keys);
    const inner = createInnerEncoder('tunnel', addressing).encode(Buffer.from('hello'));
    const bogus = Buffer.from(inner);
    bogus.writeUInt16BE(inner.length + 1, 2); // claims one octet more than was sent

    const r = rx.open(esp.seal(5, iv(0), NEXT_HEADER_IPV4, bogus), 0);
    assert.equal(!r.ok && r.reason, 'bad-inner');
    const after = rx.stats(0);
    assert.equal(after.sas[0]!.replayHighest, 0, 'window not advanced');
    assert.equal(after.dropped['bad-inner'], 1);
    assert.equal(after.delivered, 0);
    // Sequence number 5 is still unused: a genuine packet with it is delivered.
    const good = rx.open(esp.seal(5, iv(1), NEXT_HEADER_IPV4, Buffer.concat([inner, Buffer.alloc(TFC)])), 0);
    assert.ok(good.ok, good.ok ? '' : good.reason);
    assert.equal(good.datagram.data.toString(), 'hello');
    assert.equal(rx.stats(0).sas[0]!.replayHighest, 5);
  });

  it('a dummy packet (Next Header 59) is dropped silently but is a valid packet for the window', () => {
    const s = sa(0x3002);
    const rx = new GroupChannelCore({ ...opts, ivCounters: new IvCounterRegistry() }, { sas: [s] }, 0);
    const esp = createEspSa(s.spi, s.algorithm, s.keys, { tfcPadTo: 100 });
    const dummy = esp.seal(9, iv(0), NEXT_HEADER_NONE, Buffer.alloc(0));
    const first = rx.open(dummy, 0);
    assert.equal(!first.ok && first.reason, 'dummy');
    const again = rx.open(dummy, 0);
    assert.equal(!again.ok && again.reason, 'replayed');
    const s2 = rx.stats(0);
    assert.equal(s2.dropped.dummy, 1);
    assert.equal(s2.dropped.replayed, 1);
    assert.equal(s2.sas[0]!.replayHighest, 9);
    assert.equal(s2.delivered, 0);
  });
});
