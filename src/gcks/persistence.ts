/**
 * How the key server keeps its state across restarts (issue 6, DESIGN.md
 * "state that must never go back is persisted before it is used"). The
 * service stays sans-I/O: it calls a synchronous GcksPersistence (the
 * daemon's is src/node/gcks-state.ts on the SQLite store).
 *
 * When. Every service entry point (receive, timeout, the operator actions)
 * ends with one checkpoint, made before it returns its output: whatever a
 * datagram about to be sent depends on (the SAs a registration hands out,
 * the member's leaf and tree keys, the SAs a GSA_REKEY announces, the
 * GSA_NEXT_SPI values, the GSA_REKEY datagrams still to be transmitted) is
 * committed before the adapter gets the datagram. A crash before the commit
 * loses the call's work as a whole and sends nothing of it. Never-repeating
 * counters (SPIs, Sender-IDs, Message IDs, Key IDs) are block reservations
 * in the CounterReservation, committed before any value is used.
 *
 * Times are in the service's clock (often monotonic and process-relative);
 * the persistence converts them to and from absolute time.
 */
import type { Identity } from './config-identities.ts';
import type { GroupState, MemberChanges, PersistedSa } from './group.ts';
import type { KeyIdSource } from './lkh-storage.ts';
import type { LkhChunk, LkhTreeMeta } from './lkh.ts';
import type { PlannerState } from './rekey-planner.ts';
import type { RekeySigningKey } from './signing-key.ts';

/** Names a configured group for persistence. */
export interface GroupDescriptor {
  /** identityKey(IDg): stable across renames. */
  readonly groupId: string;
  readonly name: string;
  /** A digest of the group's configuration: persisted state is only restored under the same policy. */
  readonly configHash: string;
}

/** A group as persisted, ready to restore. */
export interface PersistedGroup {
  readonly group: GroupState;
  /** Each member's leaf in the key tree. */
  readonly leaves: readonly { readonly id: Identity; readonly leaf: number }[];
  readonly planner: PlannerState;
  readonly tree?: { readonly meta: LkhTreeMeta; readonly chunk: (height: number, index: number) => Buffer | undefined } | undefined;
  /** Identity keys the operator excluded and that stay refused. */
  readonly barred: readonly string[];
  /** The signing key in use (after a rollover it differs from the configured one). */
  readonly signingKey?: RekeySigningKey | undefined;
}

export type LoadedGroup =
  | { readonly kind: 'restored'; readonly state: PersistedGroup }
  /** Nothing persisted for this group yet. */
  | { readonly kind: 'new' }
  /** Persisted under another configuration: the group starts afresh (counters still go on). */
  | { readonly kind: 'policy-changed' };

/** A GSA_REKEY datagram waiting for its transmission time. */
export interface PersistedDatagram {
  readonly at: number;
  readonly to: { readonly address: string; readonly port: number };
  readonly local?: { readonly address: string; readonly port: number } | undefined;
  readonly data: Buffer;
  /** Set on a message's first datagram: reported as rekey-sent when it leaves. */
  readonly report?: {
    readonly group: string;
    readonly reason: string;
    readonly rekeySpi?: string | undefined;
    readonly messageId?: number | undefined;
    readonly octets: number;
    readonly copies: number;
  } | undefined;
}

export interface GroupCheckpoint {
  readonly descriptor: GroupDescriptor;
  /** The current SAs, when they changed since the last checkpoint (with keys: seal them). */
  readonly sas?: { readonly teks: readonly PersistedSa[]; readonly kek?: PersistedSa | undefined } | undefined;
  readonly members: MemberChanges;
  /** Leaf of each member put (by identity key). */
  readonly leafOf: (id: Identity) => number | undefined;
  readonly senderIdCounter: string;
  readonly planner: PlannerState;
  /** Changed chunks; `replaced`: a new tree, every chunk given (older ones are void). */
  readonly tree?: { readonly meta: LkhTreeMeta; readonly chunks: readonly LkhChunk[]; readonly replaced: boolean } | undefined;
  /** Undefined when the group has no key tree (any more). */
  readonly hasTree: boolean;
  readonly barred: readonly string[];
  readonly signingKey?: RekeySigningKey | undefined;
}

export type AuditRecordKind = 'registration' | 'rejection' | 'rekey' | 'exclusion' | 'group';

/** One audit log entry (never key material). */
export interface AuditRecord {
  readonly at: number;
  readonly kind: AuditRecordKind;
  readonly group?: string | undefined;
  /** The member as formatIdentity prints it. */
  readonly member?: string | undefined;
  /** identityKey of the member, when known. */
  readonly memberKey?: string | undefined;
  readonly reason?: string | undefined;
  readonly details?: Readonly<Record<string, string | number | boolean | null | readonly (string | number)[]>> | undefined;
}

/** A completed registration, for the member's history. */
export interface RegistrationRecord {
  readonly at: number;
  readonly group: string;
  readonly member: Identity;
  readonly details: Readonly<Record<string, string | number | boolean | null | readonly (string | number)[]>>;
}

export interface Checkpoint {
  readonly groups: readonly GroupCheckpoint[];
  /** The whole multicast queue, when it changed. */
  readonly queue?: readonly PersistedDatagram[] | undefined;
  readonly registrations: readonly RegistrationRecord[];
  readonly audit: readonly AuditRecord[];
}

export interface GcksPersistence {
  /** What was persisted for a configured group (called once per group at construction). */
  loadGroup(descriptor: GroupDescriptor, now: number): LoadedGroup;
  /** GSA_REKEY datagrams not yet transmitted when the last run stopped. */
  loadQueue(now: number): PersistedDatagram[];
  /** A durable never-reused LKH Key ID counter. */
  keyIds(counter: string): KeyIdSource;
  /** Commits atomically and durably before it returns; throws when it cannot (the caller must not send). */
  save(checkpoint: Checkpoint, now: number): void;
}
