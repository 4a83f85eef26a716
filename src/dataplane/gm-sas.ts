/**
 * From the member's SA table (src/gm/sa-table.ts) to the narrow view the
 * data plane consumes (channel-core.ts `GroupSaTable`, xfrm.ts `sas`).
 *
 * - Only ESP Data-Security SAs with an encryption transform are taken (AH is
 *   not part of the user-space channel).
 * - The member table lists an SA once per direction; here one entry per SPI,
 *   `outbound` when any of its directions is outbound.
 * - A lifetime (GSA_KEY_LIFETIME) becomes the SA's `deactivateAt`.
 * - ATD/DTD (GWP_ATD/GWP_DTD, seconds) become milliseconds; activation
 *   times are left to the channel (first seen + ATD, none at registration).
 * - `destination` optionally keeps only the SAs whose destination traffic
 *   selector covers a group address (and port), for one channel per flow.
 */
import type { GroupSaTable as MemberSaTable } from '../gm/sa-table.ts';
import { ProtocolId, TsType } from '../wire/iana.ts';
import type { GroupSa, GroupSaTable } from './channel-core.ts';

export interface FlowFilter {
  readonly address: string;
  readonly port?: number | undefined;
}

function ipv4ToNumber(a: string): number | undefined {
  const p = a.split('.').map(Number);
  if (p.length !== 4 || p.some((o) => !Number.isInteger(o) || o < 0 || o > 255)) return undefined;
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

function covers(ts: MemberSaTable['dataSecurity'][number]['destination'], flow: FlowFilter): boolean {
  if ('raw' in ts || ts.type !== TsType.TS_IPV4_ADDR_RANGE) return false;
  const a = ipv4ToNumber(flow.address);
  const lo = ipv4ToNumber(ts.startAddress);
  const hi = ipv4ToNumber(ts.endAddress);
  if (a === undefined || lo === undefined || hi === undefined || a < lo || a > hi) return false;
  return flow.port === undefined || (flow.port >= ts.startPort && flow.port <= ts.endPort);
}

export function channelTableFromMember(table: MemberSaTable, destination?: FlowFilter): GroupSaTable {
  const bySpi = new Map<number, GroupSa>();
  for (const sa of table.dataSecurity) {
    if (sa.protocolId !== ProtocolId.ESP || !sa.encryption || sa.spi.length !== 4) continue;
    if (destination && !covers(sa.destination, destination)) continue;
    const spi = sa.spi.readUInt32BE(0);
    const previous = bySpi.get(spi);
    const outbound = sa.direction === 'outbound' || previous?.outbound === true;
    bySpi.set(spi, {
      spi,
      algorithm: { encr: sa.encryption.id, encrKeyBits: sa.encryption.keyBits, integ: sa.integrity },
      keys: sa.keys,
      sn: sa.sequenceNumbers,
      outbound,
      deactivateAt: sa.expiresAt,
    });
  }
  const sends = table.role !== 'receiver';
  return {
    sas: [...bySpi.values()],
    atdMs: (table.activationDelaySeconds ?? 0) * 1000,
    dtdMs: (table.deactivationDelaySeconds ?? 0) * 1000,
    sender: sends ? { senderIdBits: table.senderIdBits ?? 0, senderIds: table.senderIds } : undefined,
  };
}
