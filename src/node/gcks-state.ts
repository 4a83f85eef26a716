/**
 * The key server's durable state for the daemon (`gikev2 gcks --state DIR`,
 * issue 6): opens the SQLite store under the state directory with the
 * key-encryption key and gives GcksService what makes it survive a crash:
 *
 *  - `counters`: SPIs, Sender-IDs and Rekey SA Message IDs are reserved in
 *    blocks, each reservation committed (fsync) before a value is used; LKH
 *    Key IDs likewise (`persistence.keyIds`);
 *  - `persistence` (src/gcks/persistence.ts): groups restored at start-up,
 *    and one transaction per service call, committed before its datagrams
 *    leave: the current and previous SAs with their keys (sealed under the
 *    KEK by the store), members with their leaves and registration history,
 *    the LKH tree in 64-node chunks of IDs and keys (only the changed ones
 *    are rewritten; member counts are derived on restore, so a join
 *    rewrites just the chunks of the nodes it created, usually its leaf's),
 *    the planner's announced next SPIs and pending content, operator
 *    exclusions, the rekey signing key in use, the GSA_REKEY datagrams still
 *    to be transmitted, and the audit log.
 *
 * Layout in the store: the group record's `policy` holds the configuration
 * digest and the planner's (non-secret) state; the LKH table holds the tree's
 * metadata under the group's id and its chunks under `<id>#lkh/<h>/<i>`;
 * the multicast queue under `#service/multicast-queue`. Times are stored as
 * wall-clock milliseconds (the service runs on the monotonic clock).
 *
 * Any failure to write stops the key server from sending: the save throws,
 * and every later save throws too (the daemon must be restarted).
 */
import { createHash, createPrivateKey } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Identity } from '../gcks/config-identities.ts';
import type { MemberRecord as GroupMember, PersistedSa } from '../gcks/group.ts';
import { keyIdCounter, type KeyIdSource } from '../gcks/lkh-storage.ts';
import type { LkhTreeMeta } from '../gcks/lkh.ts';
import type { Checkpoint, GcksPersistence, GroupCheckpoint, GroupDescriptor, LoadedGroup, PersistedDatagram } from '../gcks/persistence.ts';
import type { PlannerState } from '../gcks/rekey-planner.ts';
import type { GcksServiceDeps } from '../gcks/service.ts';
import { rekeySigningKeyFrom, type RekeySigningKey } from '../gcks/signing-key.ts';
import { formatIdentity } from '../ike/identity.ts';
import { PayloadType } from '../wire/iana.ts';
import type { DeletePayload } from '../wire/payloads/delete.ts';
import type { WrappedKey } from '../wire/wrapped-key.ts';
import { counterReservation, keyIdCounterOptions } from '../store/counters.ts';
import { loadKek } from '../store/encryption.ts';
import { RESTORE_ADVICE, StateError } from '../store/errors.ts';
import { SqliteStore } from '../store/sqlite.ts';
import type { JsonValue, KeyServerStore, MemberRecord, SaRecord } from '../store/store.ts';
import type { Logger } from './log.ts';

export interface GcksStateOptions {
  readonly stateDir: string;
  readonly keyFile?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly log: Logger;
}

export interface GcksStateHandle {
  readonly deps: Partial<GcksServiceDeps>;
  close(): void;
}

/**
 * Opens the state directory (creating it on first use); throws StateError
 * (with `recovery` and `exitCode`) when it cannot be trusted: no KEK, wrong
 * KEK, a corrupt, truncated, foreign or newer database. An older schema is
 * migrated (after a copy of the file is set aside).
 */
export function openGcksState(opts: GcksStateOptions): GcksStateHandle {
  const loaded = loadKek({ stateDir: opts.stateDir, keyFile: opts.keyFile, env: opts.env ?? process.env });
  const log = opts.log.child({ component: 'state' });
  for (const w of loaded?.warnings ?? []) log.warn(w, { event: 'state-warning' });
  const store = SqliteStore.open({ stateDir: opts.stateDir, kek: loaded?.kek });
  if (store.migratedFrom !== undefined) {
    log.warn(`state schema migrated from version ${store.migratedFrom} to ${store.schemaVersion}`, { event: 'state-migrated', from: store.migratedFrom, to: store.schemaVersion, backup: store.preMigrationBackup ?? null });
  }
  log.info(`state in ${opts.stateDir} (key-encryption key ${loaded?.kek.id ?? '?'} from ${loaded?.source ?? '?'})`, {
    event: 'state-opened',
    stateDir: opts.stateDir,
    kekId: loaded?.kek.id ?? null,
    kekSource: loaded?.source ?? null,
    schema: store.schemaVersion,
  });
  const handle = storeDeps(store, { log });
  return {
    deps: handle.deps,
    close: () => store.close(),
  };
}

/** Service dependencies on any store (tests use MemoryStore or a simulated clock). */
export function storeDeps(
  store: KeyServerStore,
  options: { readonly log: Logger; readonly timeOffset?: number },
): { readonly deps: Pick<GcksServiceDeps, 'counters' | 'persistence'>; readonly persistence: StorePersistence } {
  const persistence = new StorePersistence(store, options.log, options.timeOffset ?? Date.now() - performance.now());
  return { deps: { counters: counterReservation(store), persistence }, persistence };
}

const QUEUE_RECORD = '#service/multicast-queue';
const chunkRecord = (groupId: string, h: number, i: number): string => `${groupId}#lkh/${h}/${i}`;

type Json = { [key: string]: JsonValue };

interface PersistedRuntime {
  readonly configHash: string;
  readonly senderIdCounter: string;
  readonly barred: string[];
  readonly signingKeyId: string | null;
  readonly hasTree: boolean;
  readonly planner: Json;
}

interface CommittedRuntime {
  readonly runtime: PersistedRuntime;
  readonly json: string;
}

function corrupt(what: string, cause?: unknown): StateError {
  return new StateError('CORRUPT', `the key server state is inconsistent: ${what}`, RESTORE_ADVICE, cause === undefined ? {} : { cause });
}

function hex(b: Buffer | undefined): string | null {
  return b ? b.toString('hex') : null;
}

function obj(v: JsonValue | undefined, what: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw corrupt(`${what} is not an object`);
  return v;
}

function num(v: JsonValue | undefined, what: string): number {
  if (typeof v !== 'number') throw corrupt(`${what} is not a number`);
  return v;
}

function str(v: JsonValue | undefined, what: string): string {
  if (typeof v !== 'string') throw corrupt(`${what} is not a string`);
  return v;
}

function arr(v: JsonValue | undefined, what: string): JsonValue[] {
  if (!Array.isArray(v)) throw corrupt(`${what} is not a list`);
  return v;
}

function signingKeyId(key: RekeySigningKey): string {
  return `rekey-signing/${createHash('sha256').update(key.publicKeySpki).digest('hex').slice(0, 32)}`;
}

function identityJson(id: Identity): Json {
  return { idType: id.idType, data: id.data.toString('hex'), text: formatIdentity(id) };
}

function identityOf(v: JsonValue, what: string): Identity {
  const o = obj(v, what);
  return { idType: num(o.idType, `${what}.idType`), data: Buffer.from(str(o.data, `${what}.data`), 'hex') };
}

export class StorePersistence implements GcksPersistence {
  /** Group name -> group id, for audit entries. */
  private readonly groupIds = new Map<string, string>();
  /** Chunks per row as last written, per group id (to void the rest when a tree is replaced). */
  private readonly chunkCounts = new Map<string, readonly number[]>();
  private readonly storedSigningKeys = new Set<string>();
  /** The runtime record of each group as last committed, with its JSON (to tell a plain registration's checkpoint). */
  private readonly runtimes = new Map<string, CommittedRuntime>();
  private failure: unknown;

  constructor(
    readonly store: KeyServerStore,
    private readonly log: Logger,
    /** stored time = service time + offset. */
    private readonly offset: number,
  ) {}

  private toStored(t: number): number {
    return Math.round(t + this.offset);
  }

  private fromStored(t: number): number {
    return t - this.offset;
  }

  // ------------------------------------------------------------ loading

  loadGroup(d: GroupDescriptor): LoadedGroup {
    this.groupIds.set(d.name, d.groupId);
    const record = this.store.getGroup(d.groupId);
    if (!record) return { kind: 'new' };
    const runtime = obj(record.policy, `group ${d.name}`) as unknown as PersistedRuntime;
    if (runtime.configHash !== d.configHash) {
      const members = this.store.listMembers(d.groupId, { status: 'active' });
      this.store.transaction(() => {
        for (const m of members) this.store.putMember({ ...m, status: 'excluded' });
      });
      this.log.warn(`group ${d.name}: its configuration changed since the state was written; it starts afresh and its ${members.length} member(s) must register again`, {
        event: 'state-policy-changed',
        group: d.name,
      });
      return { kind: 'policy-changed' };
    }
    try {
      const current = this.store.listSas(d.groupId, { role: 'current' });
      const teks = current
        .filter((s) => s.kind === 'data-security')
        .sort((a, b) => num(obj(a.attributes, 'SA attributes').index, 'SA index') - num(obj(b.attributes, 'SA attributes').index, 'SA index'))
        .map((s) => this.saOf(s));
      const kekRecord = current.find((s) => s.kind === 'rekey');
      if (teks.length === 0) throw corrupt(`group ${d.name} has no current Data-Security SA`);
      const members: GroupMember[] = [];
      const leaves: { id: Identity; leaf: number }[] = [];
      for (const m of this.store.listMembers(d.groupId, { status: 'active' })) {
        const id = identityOf(m.identity, `member ${m.memberId}`);
        members.push({ id, registeredAt: this.fromStored(m.registeredAt), sender: m.sender, senderIds: m.senderIds });
        if (m.leaf !== undefined && m.leaf !== null) leaves.push({ id, leaf: m.leaf });
      }
      const treeRecord = runtime.hasTree ? this.store.getLkhSnapshot(d.groupId) : undefined;
      const meta = treeRecord ? (treeRecord.meta as unknown as LkhTreeMeta) : undefined;
      if (meta) this.chunkCounts.set(d.groupId, meta.chunks);
      this.runtimes.set(d.groupId, { runtime, json: JSON.stringify(runtime) });
      let signingKey: RekeySigningKey | undefined;
      if (runtime.signingKeyId) {
        const stored = this.store.getSigningKey(runtime.signingKeyId);
        if (!stored) throw corrupt(`group ${d.name}: signing key ${runtime.signingKeyId} is missing`);
        signingKey = rekeySigningKeyFrom(createPrivateKey({ key: stored.privateKey, format: 'der', type: 'pkcs8' }));
        this.storedSigningKeys.add(runtime.signingKeyId);
      }
      this.log.info(`group ${d.name} restored: ${members.length} member(s), ${teks.length} Data-Security SA(s)${kekRecord ? `, Rekey SA 0x${kekRecord.saId}` : ''}`, {
        event: 'state-restored',
        group: d.name,
        members: members.length,
      });
      return {
        kind: 'restored',
        state: {
          group: { teks, kek: kekRecord && this.saOf(kekRecord), members, senderIdCounter: runtime.senderIdCounter },
          leaves,
          planner: this.plannerOf(runtime.planner),
          tree: meta && {
            meta,
            chunk: (h, i) => {
              const c = this.store.getLkhSnapshot(chunkRecord(d.groupId, h, i));
              return c && c.tree.length > 0 ? c.tree : undefined;
            },
          },
          barred: runtime.barred,
          signingKey,
        },
      };
    } catch (e) {
      if (e instanceof StateError) throw e;
      throw corrupt(`group ${d.name} cannot be restored (${(e as Error).message})`, e);
    }
  }

  loadQueue(): PersistedDatagram[] {
    const record = this.store.getLkhSnapshot(QUEUE_RECORD);
    if (!record || record.tree.length === 0) return [];
    const list = arr(JSON.parse(record.tree.toString('utf8')) as JsonValue, 'multicast queue');
    return list.map((v, i) => {
      const o = obj(v, `queue[${i}]`);
      const to = obj(o.to, 'queue to');
      const local = o.local === null || o.local === undefined ? undefined : obj(o.local, 'queue local');
      const report = o.report === null || o.report === undefined ? undefined : obj(o.report, 'queue report');
      return {
        at: this.fromStored(num(o.at, 'queue at')),
        to: { address: str(to.address, 'address'), port: num(to.port, 'port') },
        local: local && { address: str(local.address, 'address'), port: num(local.port, 'port') },
        data: Buffer.from(str(o.data, 'queue data'), 'base64'),
        report: report && {
          group: str(report.group, 'group'),
          reason: str(report.reason, 'reason'),
          rekeySpi: typeof report.rekeySpi === 'string' ? report.rekeySpi : undefined,
          messageId: typeof report.messageId === 'number' ? report.messageId : undefined,
          octets: num(report.octets, 'octets'),
          copies: num(report.copies, 'copies'),
        },
      };
    });
  }

  keyIds(counter: string): KeyIdSource {
    return keyIdCounter(keyIdCounterOptions(this.store, counter));
  }

  private saOf(s: SaRecord): PersistedSa {
    return { spi: s.spi, keymat: s.keymat, createdAt: this.fromStored(s.createdAt), expiresAt: this.fromStored(s.expiresAt) };
  }

  private plannerOf(p: Json): PlannerState {
    const buf = (v: JsonValue | undefined): Buffer | undefined => (typeof v === 'string' ? Buffer.from(v, 'hex') : undefined);
    return {
      nextTekSpis: arr(p.nextTekSpis, 'nextTekSpis').map((v) => buf(v)),
      nextKekSpi: buf(p.nextKekSpi),
      pendingWrapKeys: arr(p.pendingWrapKeys, 'pendingWrapKeys').map((v): WrappedKey => {
        const o = obj(v, 'wrapped key');
        return { keyId: num(o.keyId, 'keyId'), kwkId: num(o.kwkId, 'kwkId'), encryptedKey: Buffer.from(str(o.encryptedKey, 'encryptedKey'), 'hex') };
      }),
      pendingAuthKey: buf(p.pendingAuthKey),
      pendingDeletes: arr(p.pendingDeletes, 'pendingDeletes').map((v) => {
        const o = obj(v, 'pending delete');
        return {
          dueAt: this.fromStored(num(o.dueAt, 'dueAt')),
          deletes: arr(o.deletes, 'deletes').map((dv): DeletePayload => {
            const dd = obj(dv, 'delete');
            return {
              type: PayloadType.DELETE,
              critical: dd.critical === true,
              protocolId: num(dd.protocolId, 'protocolId'),
              spiSize: num(dd.spiSize, 'spiSize'),
              spis: arr(dd.spis, 'spis').map((x) => Buffer.from(str(x, 'spi'), 'hex')),
            };
          }),
        };
      }),
      channelFreeAt: typeof p.channelFreeAt === 'number' ? this.fromStored(p.channelFreeAt) : -Infinity,
    };
  }

  // ------------------------------------------------------------ saving

  save(c: Checkpoint, now: number): void {
    if (this.failure !== undefined) throw new Error('the key server state could not be written earlier; restart the key server', { cause: this.failure });
    // Signing keys first: a group record never names a key that is not stored.
    const written = new Map<string, CommittedRuntime>();
    const newKeys = c.groups.flatMap((g) => (g.signingKey && !this.storedSigningKeys.has(signingKeyId(g.signingKey)) ? [g.signingKey] : []));
    try {
      this.store.transaction(() => {
        for (const key of newKeys) {
          this.store.putSigningKey({
            keyId: signingKeyId(key),
            algorithm: JSON.stringify(key.algorithm),
            privateKey: key.privateKey.export({ format: 'der', type: 'pkcs8' }),
            publicKey: key.publicKeySpki,
            createdAt: this.toStored(now),
          });
        }
        for (const g of c.groups) this.saveGroup(g, now, written);
        if (c.queue) this.saveQueue(c.queue, now);
        for (const r of c.registrations) {
          this.store.appendRegistration({ groupId: this.groupIds.get(r.group) ?? r.group, memberId: identityKeyOf(r.member), at: this.toStored(r.at), details: { ...r.details, member: formatIdentity(r.member) } as Json });
        }
        for (const a of c.audit) {
          this.store.appendAudit({
            at: this.toStored(a.at),
            kind: a.kind,
            groupId: a.group === undefined ? undefined : (this.groupIds.get(a.group) ?? a.group),
            memberId: a.memberKey ?? a.member,
            reason: a.reason,
            details: { ...(a.details ?? {}), group: a.group ?? null, member: a.member ?? null } as Json,
          });
        }
      });
    } catch (e) {
      this.failure = e;
      this.log.error(`cannot write the key server state: ${(e as Error).message}; nothing more is sent until the key server is restarted`, { event: 'state-write-failed' });
      throw e;
    }
    for (const key of newKeys) this.storedSigningKeys.add(signingKeyId(key));
    for (const [groupId, runtime] of written) this.runtimes.set(groupId, runtime);
  }

  private saveGroup(g: GroupCheckpoint, now: number, written: Map<string, CommittedRuntime>): void {
    const d = g.descriptor;
    this.groupIds.set(d.name, d.groupId);
    const at = this.toStored(now);
    const runtime: PersistedRuntime = {
      configHash: d.configHash,
      senderIdCounter: g.senderIdCounter,
      barred: [...g.barred],
      signingKeyId: g.signingKey ? signingKeyId(g.signingKey) : null,
      hasTree: g.hasTree,
      planner: this.plannerJson(g.planner),
    };
    const json = JSON.stringify(runtime);
    const before = this.runtimes.get(d.groupId);
    // Only what a plain registration changes may be committed without an
    // fsync (see "Durability" in src/store/sqlite.ts); anything else in the
    // transaction makes the whole commit critical.
    const critical = !this.joinOnly(before, g, runtime, json);
    const durability = { critical };
    if (g.sas) {
      const teks: SaRecord[] = g.sas.teks.map((t, index) => this.saRecord(d.groupId, 'data-security', t, { index }));
      this.rotateIfChanged(d.groupId, 'data-security', teks);
      if (g.sas.kek) this.rotateIfChanged(d.groupId, 'rekey', [this.saRecord(d.groupId, 'rekey', g.sas.kek, {})]);
    }
    for (const m of g.members.put) {
      const memberId = identityKeyOf(m.id);
      const record: MemberRecord = {
        groupId: d.groupId,
        memberId,
        identity: identityJson(m.id),
        status: 'active',
        registeredAt: this.toStored(m.registeredAt),
        sender: m.sender,
        senderIds: m.senderIds,
        leaf: g.leafOf(m.id),
      };
      this.store.putMember(record);
    }
    for (const id of g.members.removed) {
      const old = this.store.getMember(d.groupId, identityKeyOf(id));
      if (old && old.status === 'active') this.store.putMember({ ...old, status: 'excluded', leaf: undefined });
    }
    if (g.tree) {
      for (const chunk of g.tree.chunks) {
        this.store.putLkhSnapshot({ groupId: chunkRecord(d.groupId, chunk.height, chunk.index), meta: { height: chunk.height, index: chunk.index }, tree: chunk.data, savedAt: at }, durability);
      }
      const before = this.chunkCounts.get(d.groupId);
      if (g.tree.replaced && before) this.voidChunks(d.groupId, before, g.tree.meta.chunks, at);
      this.store.putLkhSnapshot({ groupId: d.groupId, meta: g.tree.meta as unknown as JsonValue, tree: Buffer.alloc(0), savedAt: at }, durability);
      this.chunkCounts.set(d.groupId, g.tree.meta.chunks);
    } else if (!g.hasTree) {
      const before = this.chunkCounts.get(d.groupId);
      if (before) this.voidChunks(d.groupId, before, [], at);
      this.chunkCounts.delete(d.groupId);
    }
    // A registration usually leaves the group record as it is: then it is not rewritten.
    if (json !== before?.json) this.store.putGroup({ groupId: d.groupId, name: d.name, policy: runtime as unknown as JsonValue, appliedAt: at }, durability);
    written.set(d.groupId, { runtime, json });
  }

  /**
   * True when this checkpoint of a group holds only what admitting members
   * changes: members put (none removed), the tree's bookkeeping and the
   * changed chunks of the same tree (the nodes their joins created: fresh
   * Key IDs from fsynced reservations),
   * and wrap keys appended to the planner's pending ones; the SAs, the
   * planner's SPIs, deletes and timing, the barred list, the signing key,
   * the configuration and whether there is a tree all unchanged since the
   * last commit. Losing such a commit (power loss) leaves the state of the
   * commit before it: those members are unknown and register again.
   */
  private joinOnly(committed: CommittedRuntime | undefined, g: GroupCheckpoint, runtime: PersistedRuntime, json: string): boolean {
    if (!committed || g.sas || g.members.removed.length > 0 || g.tree?.replaced === true) return false;
    if (committed.json === json) return true;
    const before = committed.runtime;
    const strip = (r: PersistedRuntime): string => JSON.stringify({ ...r, planner: { ...r.planner, pendingWrapKeys: null } });
    if (strip(before) !== strip(runtime)) return false;
    const was = before.planner.pendingWrapKeys;
    const now = runtime.planner.pendingWrapKeys;
    if (!Array.isArray(was) || !Array.isArray(now) || now.length < was.length) return false;
    return was.every((w, i) => JSON.stringify(w) === JSON.stringify(now[i]));
  }

  /** Old chunks beyond the new tree's rows are overwritten empty: no stale keys stay behind. */
  private voidChunks(groupId: string, before: readonly number[], after: readonly number[], at: number): void {
    before.forEach((count, h) => {
      for (let i = after[h] ?? 0; i < count; i++) this.store.putLkhSnapshot({ groupId: chunkRecord(groupId, h, i), meta: { height: h, index: i, void: true }, tree: Buffer.alloc(0), savedAt: at });
    });
  }

  private rotateIfChanged(groupId: string, kind: SaRecord['kind'], next: SaRecord[]): void {
    const current = this.store.listSas(groupId, { kind, role: 'current' }).map((s) => s.saId).sort().join(',');
    if (current === next.map((s) => s.saId).sort().join(',')) return;
    // An SA that comes back as current (never happens with fresh SPIs) would collide with its old row.
    for (const s of next) if (this.store.getSa(groupId, s.saId)) this.store.deleteSa(groupId, s.saId);
    this.store.rotateSas(groupId, kind, next);
  }

  private saRecord(groupId: string, kind: SaRecord['kind'], sa: PersistedSa, attributes: Json): SaRecord {
    return {
      groupId,
      saId: sa.spi.toString('hex'),
      kind,
      role: 'current',
      spi: sa.spi,
      attributes,
      keymat: sa.keymat,
      createdAt: this.toStored(sa.createdAt),
      expiresAt: this.toStored(sa.expiresAt),
    };
  }

  private plannerJson(p: PlannerState): Json {
    return {
      nextTekSpis: p.nextTekSpis.map((s) => hex(s)),
      nextKekSpi: hex(p.nextKekSpi),
      pendingWrapKeys: p.pendingWrapKeys.map((w) => ({ keyId: w.keyId, kwkId: w.kwkId, encryptedKey: w.encryptedKey.toString('hex') })),
      pendingAuthKey: hex(p.pendingAuthKey),
      pendingDeletes: p.pendingDeletes.map((d) => ({
        dueAt: this.toStored(d.dueAt),
        deletes: d.deletes.map((x) => ({ critical: x.critical, protocolId: x.protocolId, spiSize: x.spiSize, spis: x.spis.map((s) => s.toString('hex')) })),
      })),
      channelFreeAt: Number.isFinite(p.channelFreeAt) ? this.toStored(p.channelFreeAt) : null,
    };
  }

  private saveQueue(queue: readonly PersistedDatagram[], now: number): void {
    const json = queue.map((q) => ({
      at: this.toStored(q.at),
      to: q.to,
      local: q.local ?? null,
      data: q.data.toString('base64'),
      report: q.report ?? null,
    }));
    this.store.putLkhSnapshot({ groupId: QUEUE_RECORD, meta: { datagrams: queue.length }, tree: Buffer.from(JSON.stringify(json), 'utf8'), savedAt: this.toStored(now) });
  }
}

function identityKeyOf(id: Identity): string {
  return `${id.idType}:${id.data.toString('hex')}`;
}
