/**
 * The key server's persistent state behind one interface (issue 6,
 * DESIGN.md: "state that must never go back is persisted before it is
 * used"). Two implementations: SqliteStore (sqlite.ts, the default) and
 * MemoryStore (memory.ts, tests and the "no persistence" mode). Both pass
 * the same contract suite (test/store/contract.ts).
 *
 * Counters that must never repeat (Rekey SA Message IDs, Sender-IDs per TEK
 * generation, SPIs per group, LKH Key IDs) are reserved in blocks: `reserve`
 * commits the new high-water mark durably before it returns, so a crash can
 * skip the unused rest of a block but never hand out a value twice.
 * CounterAllocator (counters.ts) hands values out one by one on top of it.
 *
 * Records carry plain data: JSON documents for policies and attributes,
 * Buffers for SPIs and key material. Key material (SA keymat, the LKH tree,
 * signing private keys) is encrypted at rest by SqliteStore; callers pass
 * and receive plaintext. Every getter returns a copy the caller may mutate.
 */

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A committed block of counter values: `start` up to, not including, `end`. Empty (start === end) when the limit is reached. */
export interface Reservation {
  readonly counter: string;
  readonly start: number;
  readonly end: number;
}

export interface ReserveOptions {
  /** Smallest value the counter may hand out (e.g. 0x100 for ESP SPIs, 1 for Key IDs). */
  readonly floor?: number;
  /** One past the largest value the counter may hand out; the block is cut short there. */
  readonly limit?: number;
}

/** A group's policy as applied (the validated configuration, as JSON). */
export interface GroupRecord {
  /** Stable key: the IDg (e.g. `identityKey(config.id)`), not the display name. */
  readonly groupId: string;
  readonly name: string;
  readonly policy: JsonValue;
  readonly appliedAt: number;
}

export type SaKind = 'data-security' | 'rekey';
/** `current` is handed out; `previous` is kept until members have moved over (overlap). */
export type SaRole = 'current' | 'previous';

export interface SaRecord {
  readonly groupId: string;
  /** Unique within the group and never reused: the SPI in hex is a good choice. */
  readonly saId: string;
  readonly kind: SaKind;
  readonly role: SaRole;
  readonly spi: Buffer;
  /** Policy and transforms, as JSON. */
  readonly attributes: JsonValue;
  /** Secret: encrypted at rest. */
  readonly keymat: Buffer;
  readonly createdAt: number;
  readonly expiresAt: number;
  /** Rekey SAs: the Message ID of the last GSA_REKEY sent (the counter itself is a reservation). */
  readonly lastMessageId?: number | undefined;
}

export type MemberStatus = 'active' | 'excluded' | 'left';

export interface MemberRecord {
  readonly groupId: string;
  /** Stable key of the member's identity (e.g. `identityKey(id)`). */
  readonly memberId: string;
  /** The identity as JSON (type and data), for operators and audits. */
  readonly identity: JsonValue;
  readonly status: MemberStatus;
  readonly registeredAt: number;
  readonly sender: boolean;
  /** Sender-IDs of its latest registration (under the current TEKs). */
  readonly senderIds: readonly number[];
  /** Its LKH leaf, when the group has a key tree. */
  readonly leaf?: number | undefined;
}

export interface RegistrationInput {
  readonly groupId: string;
  readonly memberId: string;
  readonly at: number;
  /** What was handed out: SPIs, Sender-IDs, Message ID, leaf... (no keys). */
  readonly details: JsonValue;
}

export interface RegistrationEntry extends RegistrationInput {
  readonly seq: number;
}

/** The LKH key tree of one group: `tree` is the opaque serialized tree (secret), `meta` what can be read without keys. */
export interface LkhSnapshot {
  readonly groupId: string;
  readonly meta: JsonValue;
  /** Secret: encrypted at rest. */
  readonly tree: Buffer;
  readonly savedAt: number;
}

/**
 * Per-write durability, for stores that distinguish (SqliteStore with
 * `durability: 'critical'`). `critical: false` says this write may be lost
 * on a power loss (never on a process crash) without anything that must
 * never repeat going back: use it only for writes a member's registration
 * makes (see src/store/sqlite.ts). Default: critical.
 */
export interface WriteOptions {
  readonly critical?: boolean | undefined;
}

export interface SigningKeyRecord {
  readonly keyId: string;
  readonly algorithm: string;
  /** PKCS#8 DER. Secret: encrypted at rest. */
  readonly privateKey: Buffer;
  /** SubjectPublicKeyInfo DER. */
  readonly publicKey: Buffer;
  readonly createdAt: number;
  readonly retiredAt?: number | undefined;
}

export type AuditKind = 'registration' | 'rejection' | 'rekey' | 'exclusion' | 'group' | 'state';

export interface AuditInput {
  readonly at: number;
  readonly kind: AuditKind;
  readonly groupId?: string | undefined;
  readonly memberId?: string | undefined;
  /** Rejections and exclusions: why. */
  readonly reason?: string | undefined;
  readonly details?: JsonValue | undefined;
}

export interface AuditEntry extends AuditInput {
  /** Position in the log: strictly increasing, never reused. */
  readonly seq: number;
}

export interface AuditQuery {
  /** Inclusive lower bound on `at`. */
  readonly since?: number;
  /** Exclusive upper bound on `at`. */
  readonly until?: number;
  readonly kind?: AuditKind | readonly AuditKind[];
  readonly groupId?: string;
  readonly memberId?: string;
  /** Only entries after this sequence number (paging). */
  readonly afterSeq?: number;
  readonly limit?: number;
}

export interface KeyServerStore {
  readonly kind: 'memory' | 'sqlite';

  /**
   * Runs `fn` atomically: all of its writes or none (a throw rolls back and
   * rethrows). Nests: an inner transaction that throws rolls back only its
   * own writes. `reserve` and `advanceCounter` are refused inside, because a
   * reservation must be durable before any value from it is used.
   */
  transaction<T>(fn: () => T): T;
  readonly inTransaction: boolean;

  // Counters that must never repeat.
  /** Reserves the next `blockSize` values and commits durably before returning. */
  reserve(counter: string, blockSize: number, options?: ReserveOptions): Reservation;
  /** Raises the high-water mark to `mark` durably (a no-op when already there); going back throws. */
  advanceCounter(counter: string, mark: number): void;
  /** One past every value ever reserved (0 for a new counter). */
  counterMark(counter: string): number;
  listCounters(): Array<{ readonly counter: string; readonly mark: number }>;

  // Groups and their policies as applied.
  putGroup(group: GroupRecord, options?: WriteOptions): void;
  getGroup(groupId: string): GroupRecord | undefined;
  listGroups(): GroupRecord[];
  /** Deletes the group and its SAs, members, registrations and tree (counters and audit stay). */
  deleteGroup(groupId: string): boolean;

  // SAs with key material.
  putSa(sa: SaRecord): void;
  getSa(groupId: string, saId: string): SaRecord | undefined;
  listSas(groupId: string, filter?: { readonly kind?: SaKind; readonly role?: SaRole }): SaRecord[];
  /** Atomically: drops the `previous` SAs of this kind, demotes `current` to `previous`, stores `next` as `current`. */
  rotateSas(groupId: string, kind: SaKind, next: readonly SaRecord[]): void;
  deleteSa(groupId: string, saId: string): boolean;
  /** Records the last GSA_REKEY Message ID sent under a Rekey SA; it must increase. */
  recordRekeyMessageId(groupId: string, saId: string, messageId: number): void;

  // Members and their registration history.
  putMember(member: MemberRecord): void;
  getMember(groupId: string, memberId: string): MemberRecord | undefined;
  listMembers(groupId: string, filter?: { readonly status?: MemberStatus }): MemberRecord[];
  deleteMember(groupId: string, memberId: string): boolean;
  appendRegistration(entry: RegistrationInput): number;
  registrationHistory(groupId: string, memberId: string): RegistrationEntry[];

  // LKH key tree.
  putLkhSnapshot(snapshot: LkhSnapshot, options?: WriteOptions): void;
  getLkhSnapshot(groupId: string): LkhSnapshot | undefined;

  // Server signing keys.
  putSigningKey(key: SigningKeyRecord): void;
  getSigningKey(keyId: string): SigningKeyRecord | undefined;
  listSigningKeys(): SigningKeyRecord[];

  // Append-only audit log.
  appendAudit(entry: AuditInput): number;
  queryAudit(query?: AuditQuery): AuditEntry[];

  close(): void;
}

/** Checks a counter request the same way in every implementation. */
export function checkReserveArguments(counter: string, blockSize: number, options: ReserveOptions | undefined): void {
  if (counter.length === 0) throw new RangeError('counter name is empty');
  if (!Number.isSafeInteger(blockSize) || blockSize < 1) throw new RangeError(`block size must be a positive integer, got ${blockSize}`);
  const floor = options?.floor ?? 0;
  if (!Number.isSafeInteger(floor) || floor < 0) throw new RangeError(`floor must be a non-negative integer, got ${floor}`);
  if (options?.limit !== undefined && (!Number.isSafeInteger(options.limit) || options.limit < floor)) {
    throw new RangeError(`limit must be an integer not below the floor, got ${options.limit}`);
  }
}

/** The block `reserve` hands out given the current high-water mark. */
export function nextBlock(counter: string, mark: number, blockSize: number, options: ReserveOptions | undefined): Reservation {
  const start = Math.max(mark, options?.floor ?? 0);
  const limit = options?.limit ?? Number.MAX_SAFE_INTEGER;
  const end = Math.max(start, Math.min(limit, start + blockSize));
  if (!Number.isSafeInteger(end)) throw new RangeError(`counter ${counter} would pass 2^53`);
  return { counter, start, end };
}

export function checkMark(counter: string, mark: number): void {
  if (!Number.isSafeInteger(mark) || mark < 0) throw new RangeError(`counter ${counter}: mark must be a non-negative integer, got ${mark}`);
}
