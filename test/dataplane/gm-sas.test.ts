import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { GroupChannelCore, IvCounterRegistry } from '../../src/dataplane/channel-core.ts';
import { channelTableFromMember } from '../../src/dataplane/gm-sas.ts';
import type { GroupSaTable as MemberSaTable, InstalledDataSecuritySa } from '../../src/gm/sa-table.ts';
import { EncrId, IdType, IntegId, ProtocolId, SnId, TsType } from '../../src/wire/iana.ts';

function installed(spi: number, direction: 'inbound' | 'outbound', group: string, port: number): InstalledDataSecuritySa {
  const any = { type: TsType.TS_IPV4_ADDR_RANGE, ipProtocol: 17, startPort: 0, endPort: 65535, startAddress: '0.0.0.0', endAddress: '255.255.255.255' };
  return {
    protocolId: ProtocolId.ESP,
    spi: Buffer.from(spi.toString(16).padStart(8, '0'), 'hex'),
    source: any,
    destination: { ...any, startPort: port, endPort: port, startAddress: group, endAddress: group },
    encryption: { id: EncrId.AES_GCM_16, keyBits: 128 },
    integrity: IntegId.NONE,
    sequenceNumbers: SnId.SEQ32,
    keys: { encrKey: KEYS.get(spi)!, integKey: Buffer.alloc(0) },
    direction,
    mode: 'transport',
    installedAt: 0,
    expiresAt: 3_600_000,
  };
}
const KEYS = new Map([0x111, 0x222].map((spi) => [spi, randomBytes(20)]));

function member(role: 'receiver' | 'both'): MemberSaTable {
  const dirs = role === 'both' ? (['inbound', 'outbound'] as const) : (['inbound'] as const);
  return {
    groupId: { idType: IdType.ID_KEY_ID, data: Buffer.from('g1') },
    role,
    registeredAt: 0,
    mode: 'transport',
    dataSecurity: dirs.flatMap((d) => [installed(0x111, d, '239.1.1.1', 5000), installed(0x222, d, '239.2.2.2', 6000)]),
    senderIds: role === 'both' ? [3] : [],
    senderIdBits: 8,
    activationDelaySeconds: 2,
    deactivationDelaySeconds: 10,
  };
}

describe('GM SA table -> channel table', () => {
  it('one entry per SPI, outbound for senders, ATD/DTD in ms, lifetime as deactivation', () => {
    const t = channelTableFromMember(member('both'));
    assert.deepEqual(t.sas.map((s) => [s.spi, s.outbound, s.deactivateAt]), [
      [0x111, true, 3_600_000],
      [0x222, true, 3_600_000],
    ]);
    assert.equal(t.atdMs, 2000);
    assert.equal(t.dtdMs, 10_000);
    assert.deepEqual(t.sender, { senderIdBits: 8, senderIds: [3] });
    const rx = channelTableFromMember(member('receiver'));
    assert.equal(rx.sender, undefined);
    assert.ok(rx.sas.every((s) => !s.outbound));
  });

  it('filters by the destination selector and drives a channel end to end', () => {
    const tx = new GroupChannelCore(
      { groupAddress: '239.2.2.2', groupPort: 6000, ivCounters: new IvCounterRegistry() },
      channelTableFromMember(member('both'), { address: '239.2.2.2', port: 6000 }),
      0,
    );
    const rxTable = channelTableFromMember(member('receiver'), { address: '239.2.2.2', port: 6000 });
    assert.deepEqual(rxTable.sas.map((s) => s.spi), [0x222]);
    const rx = new GroupChannelCore({ groupAddress: '239.2.2.2', groupPort: 6000, ivCounters: new IvCounterRegistry() }, rxTable, 0);
    const s = tx.seal(Buffer.from('hi'), 1);
    assert.ok(s.ok && s.spi === 0x222);
    const r = rx.open(s.packet, 1);
    assert.ok(r.ok && r.datagram.data.toString() === 'hi');
    // GWP_SENDER_ID_BITS only reaches senders (RFC 9838 Section 5 table), so a receiver cannot name the Sender-ID.
    assert.equal(r.datagram.senderId, undefined);
    assert.deepEqual(channelTableFromMember(member('both'), { address: '239.9.9.9' }).sas, []);
  });
});
