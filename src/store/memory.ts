/**
 * The key server's state in memory: for tests and for the "no persistence"
 * mode (a restart starts every group afresh, so members must re-register).
 * Behaves like SqliteStore in every observable way the contract suite checks,
 * transactions and their rollback included (an undo log).
 */
import { StoreUsageError } from './errors.ts';
import {
  checkMark,
  checkReserveArguments,
  nextBlock,
  type AuditEntry,
  type AuditInput,
  type AuditQuery,
  type GroupRecord,
  type KeyServerStore,
  type LkhSnapshot,
  type MemberRecord,
  type MemberStatus,
  type RegistrationEntry,
  type RegistrationInput,
  type Reservation,
  type ReserveOptions,
  type SaKind,
  type SaRecord,
  type SaRole,
  type SigningKeyRecord,
} from './store.ts';

const pair = (a: string, b: string): string => JSON.stringify([a, b]);

/** Deep copy: Buffers stay Buffers (structuredClone would turn them into Uint8Arrays). */
function copy<T>(value: T): T {
  if (Buffer.isBuffer(value)) return Buffer.from(value) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => copy(v)) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = copy(v);
    return out as T;
  }
  return value;
}

export class MemoryStore implements KeyServerStore {
  readonly kind = 'memory';
  private readonly counters = new Map<string, number>();
  private readonly groups = new Map<string, GroupRecord>();
  private readonly sas = new Map<string, SaRecord>();
  private readonly members = new Map<string, MemberRecord>();
  private readonly registrations: RegistrationEntry[] = [];
  private readonly trees = new Map<string, LkhSnapshot>();
  private readonly signingKeys = new Map<string, SigningKeyRecord>();
  private readonly audit: AuditEntry[] = [];
  private registrationSeq = 0;
  private auditSeq = 0;
  /** Undo actions of the open transactions; `marks` holds where each nesting level starts. */
  private undo: Array<() => void> | undefined;
  private readonly marks: number[] = [];
  private closed = false;

  get inTransaction(): boolean {
    return this.undo !== undefined;
  }

  transaction<T>(fn: () => T): T {
    this.checkOpen();
    const outer = this.undo === undefined;
    if (outer) this.undo = [];
    this.marks.push(this.undo!.length);
    try {
      const result = fn();
      this.marks.pop();
      if (outer) this.undo = undefined;
      return result;
    } catch (e) {
      const mark = this.marks.pop()!;
      const log = this.undo!;
      while (log.length > mark) log.pop()!();
      if (outer) this.undo = undefined;
      throw e;
    }
  }

  reserve(counter: string, blockSize: number, options?: ReserveOptions): Reservation {
    this.checkOpen();
    checkReserveArguments(counter, blockSize, options);
    this.refuseInTransaction('reserve');
    const block = nextBlock(counter, this.counters.get(counter) ?? 0, blockSize, options);
    this.counters.set(counter, block.end);
    return block;
  }

  advanceCounter(counter: string, mark: number): void {
    this.checkOpen();
    checkMark(counter, mark);
    this.refuseInTransaction('advanceCounter');
    const current = this.counters.get(counter) ?? 0;
    if (mark < current) throw new RangeError(`counter ${counter} would go back from ${current} to ${mark}`);
    this.counters.set(counter, mark);
  }

  counterMark(counter: string): number {
    return this.counters.get(counter) ?? 0;
  }

  listCounters(): Array<{ counter: string; mark: number }> {
    return [...this.counters].map(([counter, mark]) => ({ counter, mark })).sort((a, b) => (a.counter < b.counter ? -1 : a.counter > b.counter ? 1 : 0));
  }

  putGroup(group: GroupRecord): void {
    this.set(this.groups, group.groupId, copy(group));
  }
  getGroup(groupId: string): GroupRecord | undefined {
    return copy(this.groups.get(groupId));
  }
  listGroups(): GroupRecord[] {
    return [...this.groups.values()].sort((a, b) => cmp(a.groupId, b.groupId)).map(copy);
  }
  deleteGroup(groupId: string): boolean {
    this.checkOpen();
    return this.transaction(() => {
      const existed = this.delete(this.groups, groupId);
      for (const [k, sa] of [...this.sas]) if (sa.groupId === groupId) this.delete(this.sas, k);
      for (const [k, m] of [...this.members]) if (m.groupId === groupId) this.delete(this.members, k);
      this.delete(this.trees, groupId);
      const kept = this.registrations.filter((r) => r.groupId !== groupId);
      const before = this.registrations.splice(0, this.registrations.length, ...kept);
      this.log(() => void this.registrations.splice(0, this.registrations.length, ...before));
      return existed;
    });
  }

  putSa(sa: SaRecord): void {
    this.set(this.sas, pair(sa.groupId, sa.saId), copy(sa));
  }
  getSa(groupId: string, saId: string): SaRecord | undefined {
    return copy(this.sas.get(pair(groupId, saId)));
  }
  listSas(groupId: string, filter: { kind?: SaKind; role?: SaRole } = {}): SaRecord[] {
    return [...this.sas.values()]
      .filter((s) => s.groupId === groupId && (filter.kind === undefined || s.kind === filter.kind) && (filter.role === undefined || s.role === filter.role))
      .sort((a, b) => a.createdAt - b.createdAt || cmp(a.saId, b.saId))
      .map(copy);
  }
  rotateSas(groupId: string, kind: SaKind, next: readonly SaRecord[]): void {
    this.transaction(() => {
      for (const sa of this.listSas(groupId, { kind })) {
        if (sa.role === 'previous') this.delete(this.sas, pair(groupId, sa.saId));
        else this.set(this.sas, pair(groupId, sa.saId), { ...sa, role: 'previous' });
      }
      for (const sa of next) {
        if (sa.groupId !== groupId || sa.kind !== kind) throw new StoreUsageError(`rotateSas(${groupId}, ${kind}) given an SA of ${sa.groupId}/${sa.kind}`);
        this.putSa({ ...sa, role: 'current' });
      }
    });
  }
  deleteSa(groupId: string, saId: string): boolean {
    return this.delete(this.sas, pair(groupId, saId));
  }
  recordRekeyMessageId(groupId: string, saId: string, messageId: number): void {
    const sa = this.sas.get(pair(groupId, saId));
    if (!sa) throw new StoreUsageError(`no SA ${saId} in group ${groupId}`);
    if (sa.lastMessageId !== undefined && messageId <= sa.lastMessageId) {
      throw new RangeError(`Rekey SA ${saId}: Message ID ${messageId} does not increase on ${sa.lastMessageId}`);
    }
    this.set(this.sas, pair(groupId, saId), { ...sa, lastMessageId: messageId });
  }

  putMember(member: MemberRecord): void {
    this.set(this.members, pair(member.groupId, member.memberId), copy(member));
  }
  getMember(groupId: string, memberId: string): MemberRecord | undefined {
    return copy(this.members.get(pair(groupId, memberId)));
  }
  listMembers(groupId: string, filter: { status?: MemberStatus } = {}): MemberRecord[] {
    return [...this.members.values()]
      .filter((m) => m.groupId === groupId && (filter.status === undefined || m.status === filter.status))
      .sort((a, b) => cmp(a.memberId, b.memberId))
      .map(copy);
  }
  deleteMember(groupId: string, memberId: string): boolean {
    return this.delete(this.members, pair(groupId, memberId));
  }
  appendRegistration(entry: RegistrationInput): number {
    this.checkOpen();
    const seq = ++this.registrationSeq;
    this.registrations.push({ ...copy(entry), seq });
    this.log(() => void this.registrations.pop());
    // Sequence numbers are not given back on rollback, as in SQLite AUTOINCREMENT.
    return seq;
  }
  registrationHistory(groupId: string, memberId: string): RegistrationEntry[] {
    return this.registrations.filter((r) => r.groupId === groupId && r.memberId === memberId).map(copy);
  }

  putLkhSnapshot(snapshot: LkhSnapshot): void {
    this.set(this.trees, snapshot.groupId, copy(snapshot));
  }
  getLkhSnapshot(groupId: string): LkhSnapshot | undefined {
    return copy(this.trees.get(groupId));
  }

  putSigningKey(key: SigningKeyRecord): void {
    this.set(this.signingKeys, key.keyId, copy(key));
  }
  getSigningKey(keyId: string): SigningKeyRecord | undefined {
    return copy(this.signingKeys.get(keyId));
  }
  listSigningKeys(): SigningKeyRecord[] {
    return [...this.signingKeys.values()].sort((a, b) => a.createdAt - b.createdAt || cmp(a.keyId, b.keyId)).map(copy);
  }

  appendAudit(entry: AuditInput): number {
    this.checkOpen();
    const seq = ++this.auditSeq;
    this.audit.push({ ...copy(entry), seq });
    this.log(() => void this.audit.pop());
    return seq;
  }
  queryAudit(query: AuditQuery = {}): AuditEntry[] {
    const kinds = query.kind === undefined ? undefined : typeof query.kind === 'string' ? [query.kind] : query.kind;
    const out: AuditEntry[] = [];
    for (const e of this.audit) {
      if (query.limit !== undefined && out.length >= query.limit) break;
      if (query.afterSeq !== undefined && e.seq <= query.afterSeq) continue;
      if (query.since !== undefined && e.at < query.since) continue;
      if (query.until !== undefined && e.at >= query.until) continue;
      if (kinds && !kinds.includes(e.kind)) continue;
      if (query.groupId !== undefined && e.groupId !== query.groupId) continue;
      if (query.memberId !== undefined && e.memberId !== query.memberId) continue;
      out.push(copy(e));
    }
    return out;
  }

  close(): void {
    this.closed = true;
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreUsageError('the store is closed');
  }

  private refuseInTransaction(what: string): void {
    if (this.inTransaction) {
      throw new StoreUsageError(`${what}() inside a transaction: a reservation must be durable before any value from it is used`);
    }
  }

  private log(undo: () => void): void {
    this.undo?.push(undo);
  }

  private set<V>(map: Map<string, V>, key: string, value: V): void {
    this.checkOpen();
    const had = map.has(key);
    const old = map.get(key);
    map.set(key, value);
    this.log(() => (had ? map.set(key, old as V) : map.delete(key)));
  }

  private delete<V>(map: Map<string, V>, key: string): boolean {
    this.checkOpen();
    if (!map.has(key)) return false;
    const old = map.get(key) as V;
    map.delete(key);
    this.log(() => map.set(key, old));
    return true;
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
