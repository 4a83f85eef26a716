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
 * - `memberTimes`: the member's own activation and deactivation times (the
 *   rekey follower's `activatesAt` / `deactivatesAt`, on the member's clock)
 *   become the SA's `activateAt` / `deactivateAt`, so a channel on the same
 *   clock switches and drains exactly when the member's SA table says, not
 *   ATD/DTD after it happened to be told. SAs a registration installed carry
 *   no such times and are active from their installation.
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

export interface ChannelTableOptions {
  /** Take the member's activation/deactivation times (see the module note); default false. */
  readonly memberTimes?: boolean | undefined;
}

type MemberSa = MemberSaTable['dataSecurity'][number];

/** The rekey follower's times, present on SAs a rekey installed or a Delete named (FollowedDataSecuritySa). */
function followerTime(sa: MemberSa, field: 'activatesAt' | 'deactivatesAt'): number | undefined {
  if (!(field in sa)) return undefined;
  const v: unknown = (sa as MemberSa & Partial<Record<typeof field, unknown>>)[field];
  return typeof v === 'number' ? v : undefined;
}

/** When one direction of an SA stops being usable: a Delete's deactivation or its lifetime. */
function directionEnd(sa: MemberSa, memberTimes: boolean): number {
  const ends = [sa.expiresAt, memberTimes ? followerTime(sa, 'deactivatesAt') : undefined].filter((t): t is number => t !== undefined);
  return ends.length === 0 ? Number.POSITIVE_INFINITY : Math.min(...ends);
}

export function channelTableFromMember(table: MemberSaTable, destination?: FlowFilter, options: ChannelTableOptions = {}): GroupSaTable {
  const memberTimes = options.memberTimes === true;
  const bySpi = new Map<number, GroupSa>();
  for (const sa of table.dataSecurity) {
    if (sa.protocolId !== ProtocolId.ESP || !sa.encryption || sa.spi.length !== 4) continue;
    if (destination && !covers(sa.destination, destination)) continue;
    const spi = sa.spi.readUInt32BE(0);
    const previous = bySpi.get(spi);
    const outbound = sa.direction === 'outbound' || previous?.outbound === true;
    let activateAt: number | undefined;
    let deactivateAt = sa.expiresAt;
    if (memberTimes) {
      // Sending follows the outbound direction's activation; receiving lasts as long as any direction does.
      const own = followerTime(sa, 'activatesAt') ?? sa.installedAt;
      activateAt = sa.direction === 'outbound' || previous?.activateAt === undefined ? own : previous.activateAt;
      const end = Math.max(directionEnd(sa, true), previous ? (previous.deactivateAt ?? Number.POSITIVE_INFINITY) : Number.NEGATIVE_INFINITY);
      deactivateAt = Number.isFinite(end) ? end : undefined;
    }
    bySpi.set(spi, {
      spi,
      algorithm: { encr: sa.encryption.id, encrKeyBits: sa.encryption.keyBits, integ: sa.integrity },
      keys: sa.keys,
      sn: sa.sequenceNumbers,
      outbound,
      deactivateAt,
      ...(activateAt !== undefined ? { activateAt } : {}),
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
