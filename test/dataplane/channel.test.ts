import { strict as assert } from 'node:assert';
import { randomBytes, randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { describe, it } from 'node:test';
import { openGroupChannel, type GroupChannel, type MessageMeta } from '../../src/dataplane/channel.ts';
import type { GroupSa, GroupSaTable } from '../../src/dataplane/channel-core.ts';
import type { EspFramingMode } from '../../src/dataplane/esp.ts';
import { EncrId, SnId } from '../../src/wire/iana.ts';

// Real UDP multicast on the loopback interface (IP_MULTICAST_LOOP): one
// sender and two receivers, each with its own sockets, as three members on one host.
const IFACE = '127.0.0.1';

function gcmSa(spi: number, outbound = false): GroupSa {
  return {
    spi,
    algorithm: { encr: EncrId.AES_GCM_16, encrKeyBits: 256 },
    keys: { encrKey: randomBytes(36), integKey: Buffer.alloc(0) },
    sn: SnId.SEQ32,
    outbound,
  };
}

interface Received {
  readonly text: string;
  readonly meta: MessageMeta;
}

function collect(ch: GroupChannel): Received[] {
  const out: Received[] = [];
  ch.on('message', (data, meta) => out.push({ text: data.toString(), meta }));
  return out;
}

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function runGroup(mode: EspFramingMode): Promise<void> {
  const group = `239.${randomInt(1, 255)}.${randomInt(0, 255)}.${randomInt(1, 255)}`;
  const port = randomInt(20000, 60000);
  const sa1 = gcmSa(0x10001);
  const sa2 = gcmSa(0x10002);
  const sender = { senderIdBits: 8, senderIds: [5] };
  const senderTable = (sas: GroupSa[]): GroupSaTable => ({ sas: sas.map((s) => ({ ...s, outbound: true })), sender });
  const common = { multicastAddress: group, port, interface: IFACE, mode };
  const tx = await openGroupChannel({ ...common, sas: senderTable([sa1]) });
  const rx1 = await openGroupChannel({ ...common, sas: { sas: [sa1] } });
  const rx2 = await openGroupChannel({ ...common, sas: { sas: [sa1] } });
  try {
    const got1 = collect(rx1);
    const got2 = collect(rx2);
    const echo = collect(tx);
    for (let i = 0; i < 50; i++) await tx.send(Buffer.from(`a${i}`));
    await until(() => got1.length >= 50 && got2.length >= 50, 'first 50 datagrams');

    // Rekey: receivers take the new SA first, the sender switches (ATD 0), the old SA goes (DTD 0).
    rx1.updateSas({ sas: [sa1, sa2] });
    rx2.updateSas({ sas: [sa1, sa2] });
    tx.updateSas(senderTable([sa1, sa2]));
    for (let i = 0; i < 50; i++) await tx.send(Buffer.from(`b${i}`));
    await until(() => got1.length >= 100 && got2.length >= 100, 'second 50 datagrams');
    rx1.updateSas({ sas: [sa2] });
    rx2.updateSas({ sas: [sa2] });
    tx.updateSas(senderTable([sa2]));

    // An unauthenticated datagram to the group is dropped and counted.
    const intruder = dgram.createSocket('udp4');
    await new Promise<void>((r) => intruder.bind(0, IFACE, () => r()));
    intruder.setMulticastInterface(IFACE);
    const forged = Buffer.alloc(64, 7);
    forged.writeUInt32BE(0x10002, 0);
    await new Promise<void>((r) => intruder.send(forged, port, group, () => r()));
    await until(() => rx1.stats().dropped.corrupted === 1 && rx2.stats().dropped.corrupted === 1, 'forged packet drop');
    intruder.close();
    await tx.send(Buffer.from('c0'));
    await until(() => got1.length >= 101 && got2.length >= 101, 'last datagram');

    const expected = [...Array.from({ length: 50 }, (_, i) => `a${i}`), ...Array.from({ length: 50 }, (_, i) => `b${i}`), 'c0'];
    for (const got of [got1, got2]) {
      assert.deepEqual(
        got.map((g) => g.text),
        expected,
      );
      assert.deepEqual(
        [...new Set(got.map((g) => g.meta.spi))],
        [0x10001, 0x10002],
      );
      assert.ok(got.every((g) => g.meta.senderId === undefined || g.meta.senderId === 5));
      if (mode === 'tunnel') assert.ok(got.every((g) => g.meta.innerSource === IFACE));
    }
    assert.equal(echo.length, 0, 'the sender does not deliver its own packets');
    assert.equal(tx.stats().ownLoopback, 101);
    assert.equal(tx.stats().sent, 101);
    for (const rx of [rx1, rx2]) {
      const s = rx.stats();
      assert.equal(s.delivered, 101);
      assert.equal(s.dropped.corrupted, 1);
      assert.equal(s.dropped.replayed + s.dropped['unknown-spi'] + s.dropped['stale-sa'], 0);
    }
  } finally {
    tx.close();
    rx1.close();
    rx2.close();
  }
}

describe('group channel over loopback UDP multicast', () => {
  it('transport framing: one sender, two receivers, through an SA change', () => runGroup('transport'));
  it('tunnel framing (address preservation): the same through an SA change', () => runGroup('tunnel'));

  it('a receive-only member cannot send; a closed channel refuses', async () => {
    const ch = await openGroupChannel({
      sas: { sas: [gcmSa(0x20001)] },
      multicastAddress: '239.200.1.1',
      port: randomInt(20000, 60000),
      interface: IFACE,
    });
    await assert.rejects(ch.send(Buffer.from('x')), { name: 'GroupChannelError', reason: 'no-outbound-sa' });
    ch.close();
    await assert.rejects(ch.send(Buffer.from('x')), { name: 'GroupChannelError', reason: 'closed' });
  });
});
