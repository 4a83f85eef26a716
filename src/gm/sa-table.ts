/**
 * The member's SA table (RFC 9838 Section 2.3.3): per group, what the latest
 * registration installed. Data-Security SAs go inbound only for a receiver
 * and outbound only for a sender that does not receive its own traffic
 * ("both" installs both); the Rekey SA is always inbound only. A newer
 * registration replaces everything an older one installed.
 *
 * No key octets leave through events; the table itself holds them for the
 * data plane.
 */
import { formatIdentity } from '../ike/identity.ts';
import { nameOf, ProtocolId } from '../wire/iana.ts';
import type { Identity } from '../gcks/config-identities.ts';
import type { DataSecurityMode } from '../gcks/config.ts';
import { encrLabel } from '../gcks/transform-names.ts';
import type { MemberRole } from './config.ts';
import type { DataSecuritySaMaterial, GroupKeyMaterial, RekeySaMaterial } from './keys.ts';

export type Direction = 'inbound' | 'outbound';

export interface InstalledDataSecuritySa extends DataSecuritySaMaterial {
  readonly direction: Direction;
  readonly mode: DataSecurityMode;
  readonly installedAt: number;
  /** From GSA_KEY_LIFETIME; undefined with inband rekey (the key server replaces or deletes it). */
  readonly expiresAt?: number | undefined;
}

export interface InstalledRekeySa extends RekeySaMaterial {
  readonly installedAt: number;
  readonly expiresAt?: number | undefined;
  /** Lowest GSA_REKEY Message ID still acceptable; the rekey receiver raises it. */
  readonly nextMessageId: number;
}

export interface GroupSaTable {
  readonly groupId: Identity;
  readonly role: MemberRole;
  readonly registeredAt: number;
  readonly mode: DataSecurityMode;
  readonly rekeySa?: InstalledRekeySa | undefined;
  readonly dataSecurity: readonly InstalledDataSecuritySa[];
  readonly senderIds: readonly number[];
  readonly senderIdBits?: number | undefined;
  readonly activationDelaySeconds?: number | undefined;
  readonly deactivationDelaySeconds?: number | undefined;
}

interface SaSummary {
  readonly protocol: string;
  readonly spi: string;
  readonly direction: Direction;
  readonly algorithm: string;
  readonly expiresAt?: number | undefined;
}

export type GmEvent =
  | { readonly type: 'registered'; readonly at: number; readonly group: string; readonly role: MemberRole; readonly replaced: boolean }
  | {
      readonly type: 'policy';
      readonly at: number;
      readonly group: string;
      readonly mode: DataSecurityMode;
      readonly rekey: 'multicast' | 'inband';
      readonly rekeyAuthentication?: string | undefined;
      readonly senderIdBits?: number | undefined;
    }
  | {
      readonly type: 'keys';
      readonly at: number;
      readonly group: string;
      readonly rekeySpi?: string | undefined;
      readonly dataSecurity: readonly SaSummary[];
      readonly senderIds: readonly number[];
    }
  | {
      readonly type: 'error';
      readonly at: number;
      readonly group: string;
      readonly reason: string;
      /** What the member should do: tell the key server (NO_PROPOSAL_CHOSEN), retry later, or nothing. */
      readonly action: 'report-no-proposal-chosen' | 'retry' | 'ignore';
    };

function groupKey(id: Identity): string {
  return `${id.idType}:${id.data.toString('hex')}`;
}

export function directionsFor(role: MemberRole): readonly Direction[] {
  return role === 'receiver' ? ['inbound'] : role === 'sender' ? ['outbound'] : ['inbound', 'outbound'];
}

const expiry = (now: number, seconds: number | undefined): number | undefined => (seconds === undefined ? undefined : now + seconds * 1000);

/** Builds the table a registration installs (pure). */
export function buildGroupSaTable(groupId: Identity, role: MemberRole, material: GroupKeyMaterial, now: number): GroupSaTable {
  const directions = directionsFor(role);
  return {
    groupId,
    role,
    registeredAt: now,
    mode: material.mode,
    rekeySa: material.rekeySa && {
      ...material.rekeySa,
      installedAt: now,
      expiresAt: expiry(now, material.rekeySa.lifetimeSeconds),
      nextMessageId: material.rekeySa.initialMessageId,
    },
    dataSecurity: material.dataSecurity.flatMap((sa) =>
      directions.map((direction) => ({ ...sa, direction, mode: material.mode, installedAt: now, expiresAt: expiry(now, sa.lifetimeSeconds) })),
    ),
    senderIds: role === 'receiver' ? [] : material.senderIds,
    senderIdBits: material.senderIdBits,
    activationDelaySeconds: material.activationDelaySeconds,
    deactivationDelaySeconds: material.deactivationDelaySeconds,
  };
}

/** The 'keys' event for a group's table: what is installed, without key octets. */
export function keysEvent(table: GroupSaTable, now: number): Extract<GmEvent, { type: 'keys' }> {
  return {
    type: 'keys',
    at: now,
    group: formatIdentity(table.groupId),
    rekeySpi: table.rekeySa?.spi.toString('hex'),
    dataSecurity: table.dataSecurity.map((sa) => ({
      protocol: nameOf(ProtocolId, sa.protocolId),
      spi: sa.spi.toString('hex'),
      direction: sa.direction,
      algorithm: sa.encryption ? encrLabel(sa.encryption) : `INTEG ${sa.integrity}`,
      expiresAt: sa.expiresAt,
    })),
    senderIds: table.senderIds,
  };
}

/** Per-group tables of one member. */
export class SaTable {
  private readonly tables = new Map<string, GroupSaTable>();

  get(groupId: Identity): GroupSaTable | undefined {
    return this.tables.get(groupKey(groupId));
  }

  get groups(): Iterable<GroupSaTable> {
    return this.tables.values();
  }

  /**
   * Installs a registration's result, replacing the group's previous one.
   * Section 2.3.3: a GSA_INITIAL_MESSAGE_ID below what the member already
   * expects on the same Rekey SA marks a stale registration (two ran in
   * parallel); it is ignored. Reading: only comparable for the same Rekey SA
   * SPI, since Message IDs belong to one Rekey SA.
   */
  install(groupId: Identity, role: MemberRole, material: GroupKeyMaterial, now: number): readonly GmEvent[] {
    const group = formatIdentity(groupId);
    const previous = this.get(groupId);
    const kek = material.rekeySa;
    if (previous?.rekeySa && kek && previous.rekeySa.spi.equals(kek.spi) && kek.initialMessageId < previous.rekeySa.nextMessageId) {
      return [
        {
          type: 'error',
          at: now,
          group,
          reason: `stale registration: initial Message ID ${kek.initialMessageId} < ${previous.rekeySa.nextMessageId} already expected`,
          action: 'ignore',
        },
      ];
    }
    const table = buildGroupSaTable(groupId, role, material, now);
    this.tables.set(groupKey(groupId), table);
    return [
      { type: 'registered', at: now, group, role, replaced: previous !== undefined },
      {
        type: 'policy',
        at: now,
        group,
        mode: table.mode,
        rekey: table.rekeySa ? 'multicast' : 'inband',
        rekeyAuthentication: table.rekeySa?.authKey ? table.rekeySa.authKey.algorithm.scheme : table.rekeySa ? 'implicit' : undefined,
        senderIdBits: table.senderIdBits,
      },
      keysEvent(table, now),
    ];
  }

  /**
   * Puts a group's table as the rekey follower holds it now (GSA_REKEY and
   * GSA_INBAND_REKEY change SAs between registrations).
   */
  replace(table: GroupSaTable): void {
    this.tables.set(groupKey(table.groupId), table);
  }

  /** Leaving, or exclusion: forget everything about the group. */
  remove(groupId: Identity): boolean {
    return this.tables.delete(groupKey(groupId));
  }
}
