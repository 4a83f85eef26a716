/**
 * The key server's rekey planner for one group (RFC 9838 Sections 2.4, 2.5.1
 * and 3), sans-I/O: every entry point takes `now` and returns the messages
 * to send, with the times to send them, and the planner says when it wants
 * to be called again (`nextDeadline`, then `tick`).
 *
 * When it rekeys:
 *  - ahead of expiry: TEKs and the KEK `leadTime` (plus a random jitter drawn
 *    once per SA generation) before they expire. The default lead, 20% of
 *    the lifetime clamped to 20 s .. 20 min, is longer than a member's soft
 *    lifetime margin (gm/schedule.ts: at most 15% of the lifetime, 15 min),
 *    so members never ask to re-register ahead of a scheduled rekey; it is
 *    raised to cover GWP_ATD and the retransmissions so senders switch
 *    before the old TEKs expire.
 *  - on demand (`rekeyNow`), on a policy change (`changePolicy`: new KEK and
 *    TEKs in one message, Section 3.2.1 "MUST NOT change the policy without
 *    creating a new KEK"), on a signing key rollover (`rotateSigningKey`:
 *    a new KEK with the new AUTH_KEY, signed with the old key).
 *  - on membership change: `excludeMembers` replaces the key tree paths of
 *    the excluded members (LKH) and sends the two messages of Section 3.2.1:
 *    the new KEK over the current one, then the new TEKs over the new KEK.
 *    `admitMember` places a member in the key tree and, with
 *    `rekeyOnJoin` (backward access control), first renews the KEK, the TEKs
 *    and the tree keys the member will hold, so it cannot read what came
 *    before it joined.
 *  - Sender-IDs exhausted (Section 2.5.1): every member is excluded (Delete
 *    SPI 0 for AH/ESP, then GIKE_UPDATE) and the group starts over with new
 *    SAs and a new Sender-ID space.
 *
 * ATD/DTD (Section 4.4.3.1.1): new TEKs go out with the Deletes of the ones
 * they replace. Receivers keep an old SA DTD after the Delete; senders switch
 * ATD after receipt. When DTD < ATD the Deletes are held back by ATD - DTD
 * so that no receiver drops an SA a sender may still use.
 *
 * Multicast messages are built once and sent `copies` times, `spacing`
 * apart, bitwise identical (Section 2.4.1.3); the next message of the group
 * starts after the last copy of the previous one, so that no member sees a
 * later Message ID before an earlier message's copies are over. Message IDs
 * come from the Rekey SA's durable counter (from 0 for a new Rekey SA).
 * GSA_NEXT_SPI (Section 4.4.2.2.3) announces the SPIs reserved for the next
 * KEK and TEKs when `announceNextSpis` is on.
 */
import { createRekeySigner, type RekeySigner } from '../crypto/auth.ts';
import { createSkCipher, type SkCipher } from '../crypto/cipher.ts';
import { rekeySaSkKeys } from '../crypto/keys.ts';
import { wrapKey } from '../crypto/keywrap.ts';
import type { RandomSource } from '../crypto/random.ts';
import type { DatagramLimits } from '../ike/fragments.ts';
import { formatIdentity } from '../ike/identity.ts';
import type { Attribute } from '../wire/attributes.ts';
import {
  activationTimeDelayAttribute,
  deactivationTimeDelayAttribute,
  keyLifetimeAttribute,
  nextSpiAttribute,
  type GroupWidePolicy,
  type GsaPayload,
  type SaPolicy,
} from '../wire/gsa.ts';
import { ExchangeType, GcauthId, PayloadType, ProtocolId, TransformType } from '../wire/iana.ts';
import type { KdPayload } from '../wire/kd.ts';
import type { Payload } from '../wire/payload.ts';
import type { DeletePayload } from '../wire/payloads/delete.ts';
import { assertValid, validateExchange } from '../wire/validator.ts';
import { DEFAULT_KWK_ID, SA_KEY_ID, type WrappedKey } from '../wire/wrapped-key.ts';
import type { Identity } from './config-identities.ts';
import type { GroupConfig } from './config.ts';
import { identityKey, type DataSecuritySa, type Group, type RekeySa } from './group.ts';
import { remainingSeconds } from './key-download.ts';
import type { KeyIdSource } from './lkh-storage.ts';
import { LkhTree, type LeafHandle, type UnicastDelivery } from './lkh.ts';
import { planMembershipRekey } from './membership-rekey.ts';
import { deleteSas, rekeyKeyDownload, startOverDeletes, type SaKeyBag } from './rekey-content.ts';
import { buildRekey, type RekeyContent } from './rekey-message.ts';
import type { RekeySigningKey } from './signing-key.ts';

export type RekeyKind = 'tek' | 'kek' | 'all';

export type RekeyReason =
  | 'tek-expiry'
  | 'kek-expiry'
  | 'operator'
  | 'policy-change'
  | 'exclusion'
  | 'join'
  | 'signing-key-rollover'
  | 'sender-ids-exhausted'
  | 'deferred-delete';

export interface RekeyEndpoint {
  readonly address: string;
  /** 0: any port (the KEK selector names none). */
  readonly port: number;
}

/** One GSA_REKEY: send `datagrams` (all of them, in order) at each time in `sendAt`. */
export interface MulticastRekeyAction {
  readonly kind: 'multicast';
  readonly group: string;
  readonly reason: RekeyReason;
  /** The Rekey SA the message is protected with (16 octets). */
  readonly rekeySpi: Buffer;
  readonly messageId: number;
  /** One datagram, or the SKF fragments; every copy resends these same octets. */
  readonly datagrams: readonly Buffer[];
  /** Absolute times of the first transmission and the copies (Section 2.4.1.3). */
  readonly sendAt: readonly number[];
  /** From the KEK policy's traffic selectors (NOTES point 10). */
  readonly source: RekeyEndpoint;
  readonly destination: RekeyEndpoint;
  readonly messageLength: number;
  readonly fragmented: boolean;
}

export interface InbandDelivery {
  readonly member: Identity;
  /** The GSA_INBAND_REKEY request's inner payloads: GSA, KD, Delete (Section 2.4.2). */
  readonly payloads: readonly Payload[];
}

/** GSA_INBAND_REKEY to each member over its IKE SA; the engine retransmits. */
export interface InbandRekeyAction {
  readonly kind: 'inband';
  readonly group: string;
  readonly reason: RekeyReason;
  readonly sendAt: number;
  readonly deliveries: readonly InbandDelivery[];
  /** Members without an IKE SA to reach them: the caller removes them (they re-register). */
  readonly unreachable: readonly Identity[];
}

export type RekeyAction = MulticastRekeyAction | InbandRekeyAction;

/** Audit events; never key material. */
export type PlannerEvent =
  | {
      readonly type: 'rekey-planned';
      readonly at: number;
      readonly group: string;
      readonly reason: RekeyReason;
      readonly transport: 'multicast' | 'inband';
      readonly messageId?: number | undefined;
      readonly newKek?: string | undefined;
      readonly newTeks: readonly string[];
      readonly deletes: readonly string[];
    }
  | { readonly type: 'members-excluded'; readonly at: number; readonly group: string; readonly members: readonly string[] }
  | { readonly type: 'all-members-excluded'; readonly at: number; readonly group: string; readonly reason: RekeyReason }
  | { readonly type: 'signing-key-rolled-over'; readonly at: number; readonly group: string };

export interface PlannerOutput {
  readonly actions: RekeyAction[];
  readonly events: PlannerEvent[];
}

export interface RetransmitSchedule {
  /** Transmissions of each message, the first included (>= 1). */
  readonly copies: number;
  /** Time between two transmissions of the same message. */
  readonly spacingMs: number;
}

export interface RekeyPlannerOptions {
  /** Rekey this long before an SA expires; default 20% of its lifetime, 20 s .. 20 min. */
  readonly leadTimeMs?: number | undefined;
  /** Up to this much earlier still, at random per SA generation. Default 10% of the lead. */
  readonly jitterMs?: number | undefined;
  /** Default 3 copies, 1 s apart. */
  readonly retransmit?: RetransmitSchedule | undefined;
  /** IKE fragmentation of GSA_REKEY above these limits (Section 2.4.1.2). Default: never. */
  readonly fragmentation?: DatagramLimits | undefined;
  /** LKH for multicast groups (default true); without it excluding anyone excludes everyone. */
  readonly keyTree?: boolean | undefined;
  readonly lkhArity?: number | undefined;
  /** Durable never-reused LKH Key IDs (default: in memory). */
  readonly keyIds?: KeyIdSource | undefined;
  /** Backward access control: renew keys before a member joins (Section 3). Default false. */
  readonly rekeyOnJoin?: boolean | undefined;
  /** GSA_NEXT_SPI in GSA_REKEY (multicast only, Section 4.4.2.2.3). Default true. */
  readonly announceNextSpis?: boolean | undefined;
}

export interface RekeyPlannerDeps {
  readonly rng: RandomSource;
  /**
   * Inband groups: the KWA and GSK_w of the member's current IKE SA, or
   * undefined when it has none (it is then listed as unreachable).
   */
  readonly inbandDelivery?: ((member: Identity) => UnicastDelivery | undefined) | undefined;
}

export class RekeyPlannerError extends Error {
  override readonly name = 'RekeyPlannerError';
}

/** The WRAP_KEYs to add to a registering member's Member Key Bag, and any rekey that had to go first. */
export interface Admission {
  /** The member's Working Key Path (Appendix A.2); empty without a key tree. */
  readonly wrapKeys: readonly WrappedKey[];
  readonly leaf: LeafHandle | undefined;
  readonly output: PlannerOutput;
}

interface PendingDelete {
  readonly dueAt: number;
  readonly deletes: readonly DeletePayload[];
}

/**
 * The planner's own state a restart needs (src/node/gcks-state.ts): the
 * SPIs announced in GSA_NEXT_SPI (members expect exactly those), tree keys
 * and an AUTH_KEY waiting for the next GSA_REKEY, held-back Deletes. The
 * key tree and the members' leaves are persisted apart (chunks, member
 * records); the schedule follows from the SAs' times.
 */
export interface PlannerState {
  readonly nextTekSpis: readonly (Buffer | undefined)[];
  readonly nextKekSpi?: Buffer | undefined;
  /** Wrapped under tree keys: ciphertext. */
  readonly pendingWrapKeys: readonly WrappedKey[];
  readonly pendingAuthKey?: Buffer | undefined;
  readonly pendingDeletes: readonly PendingDelete[];
  /** The next multicast message may not go before this. */
  readonly channelFreeAt: number;
}

const DEFAULT_RETRANSMIT: RetransmitSchedule = { copies: 3, spacingMs: 1000 };
const MIN_LEAD_MS = 20_000;
const MAX_LEAD_MS = 1_200_000;
const LEAD_FRACTION = 0.2;

function emptyOutput(): { actions: RekeyAction[]; events: PlannerEvent[] } {
  return { actions: [], events: [] };
}

function uniform(rng: RandomSource): number {
  return rng.bytes(4).readUInt32BE(0) / 2 ** 32;
}

function endpointOf(selector: { readonly startAddress: string; readonly startPort: number; readonly endPort: number }): RekeyEndpoint {
  return { address: selector.startAddress, port: selector.startPort === selector.endPort ? selector.startPort : 0 };
}

export class RekeyPlanner {
  readonly group: Group;
  private readonly rng: RandomSource;
  private readonly options: RekeyPlannerOptions;
  private readonly retransmit: RetransmitSchedule;
  private readonly inbandDelivery: RekeyPlannerDeps['inbandDelivery'];
  private tree: LkhTree | undefined;
  private readonly leaves = new Map<string, { readonly id: Identity; readonly leaf: LeafHandle }>();
  /** Tree keys renewed for a join, for the members already there: sent in the next GSA_REKEY. */
  private pendingWrapKeys: WrappedKey[] = [];
  private pendingAuthKey: Buffer | undefined;
  private pendingDeletes: PendingDelete[] = [];
  private readonly ciphers = new Map<string, SkCipher>();
  private signer: { readonly key: RekeySigningKey; readonly signer: RekeySigner } | undefined;
  private nextTekSpis: (Buffer | undefined)[] = [];
  private nextKekSpi: Buffer | undefined;
  private tekDueAt = Infinity;
  private kekDueAt = Infinity;
  /** The first transmission of the next multicast message may not come before this. */
  private channelFreeAt = -Infinity;

  constructor(group: Group, deps: RekeyPlannerDeps, options: RekeyPlannerOptions = {}, now = 0) {
    this.group = group;
    this.rng = deps.rng;
    this.options = options;
    this.inbandDelivery = deps.inbandDelivery;
    this.retransmit = options.retransmit ?? DEFAULT_RETRANSMIT;
    if (!Number.isInteger(this.retransmit.copies) || this.retransmit.copies < 1 || this.retransmit.spacingMs < 0) {
      throw new RekeyPlannerError('retransmit: copies must be an integer >= 1 and spacing >= 0');
    }
    this.tree = this.newTree();
    this.reserveNextSpis();
    this.scheduleTeks(now);
    this.scheduleKek(now);
  }

  get multicast(): boolean {
    return this.group.rekeySa !== undefined;
  }

  /** The key tree (multicast groups with `keyTree`); for tests and the operator's view. */
  get keyTree(): LkhTree | undefined {
    return this.tree;
  }

  /** The planner's state for persistence (see PlannerState). */
  persistentState(): PlannerState {
    return {
      nextTekSpis: [...this.nextTekSpis],
      nextKekSpi: this.nextKekSpi,
      pendingWrapKeys: [...this.pendingWrapKeys],
      pendingAuthKey: this.pendingAuthKey,
      pendingDeletes: [...this.pendingDeletes],
      channelFreeAt: this.channelFreeAt,
    };
  }

  /**
   * Carries on from persisted state: the tree as it was (undefined: keep the
   * one built at construction, for a group without members), each member's
   * leaf, the planner's own state; the schedule is recomputed from the SAs.
   */
  restoreState(state: PlannerState, tree: LkhTree | undefined, leaves: Iterable<{ readonly id: Identity; readonly leaf: LeafHandle }>, now: number): void {
    if (tree) this.tree = tree;
    this.leaves.clear();
    if (this.tree) for (const l of leaves) if (this.tree.isMember(l.leaf)) this.leaves.set(identityKey(l.id), { id: l.id, leaf: l.leaf });
    if (this.announcing) {
      this.nextTekSpis = this.group.config.dataSecurity.map((_, i) => state.nextTekSpis[i] ?? this.group.allocateDataSecuritySpi());
      this.nextKekSpi = state.nextKekSpi ?? this.group.allocateRekeySpi();
    }
    this.pendingWrapKeys = this.tree ? [...state.pendingWrapKeys] : [];
    this.pendingAuthKey = state.pendingAuthKey;
    this.pendingDeletes = [...state.pendingDeletes];
    this.channelFreeAt = state.channelFreeAt;
    this.scheduleTeks(now);
    this.scheduleKek(now);
  }

  /** The member's leaf in the key tree, if placed. */
  leafOf(member: Identity): LeafHandle | undefined {
    return this.leaves.get(identityKey(member))?.leaf;
  }

  /** SPIs announced in GSA_NEXT_SPI for the successors of the current KEK and TEKs (Section 4.4.2.2.3). */
  get announcedNextSpis(): { readonly kek: Buffer | undefined; readonly teks: readonly (Buffer | undefined)[] } {
    return { kek: this.nextKekSpi, teks: [...this.nextTekSpis] };
  }

  /** When `tick` next has something to do; undefined when nothing is scheduled. */
  nextDeadline(): number | undefined {
    const times = [this.tekDueAt, this.kekDueAt, ...this.pendingDeletes.map((p) => p.dueAt)];
    const t = Math.min(...times);
    return Number.isFinite(t) ? t : undefined;
  }

  /** Does what is due at `now`: scheduled rekeys, held-back Deletes, a start-over after Sender-ID exhaustion. */
  tick(now: number): PlannerOutput {
    const out = emptyOutput();
    if (this.group.usesCounterMode && this.group.senderIds.exhausted && this.group.members.size > 0) {
      return this.excludeEveryone(now, 'sender-ids-exhausted');
    }
    const tekDue = now >= this.tekDueAt;
    const kekDue = this.multicast && now >= this.kekDueAt;
    if (tekDue && kekDue) merge(out, this.rekey('all', now, 'kek-expiry'));
    else if (tekDue) merge(out, this.rekey('tek', now, 'tek-expiry'));
    else if (kekDue) merge(out, this.rekey('kek', now, 'kek-expiry'));
    const due = this.pendingDeletes.filter((p) => p.dueAt <= now);
    if (due.length > 0) {
      this.pendingDeletes = this.pendingDeletes.filter((p) => p.dueAt > now);
      merge(out, this.send(now, 'deferred-delete', { deletes: due.flatMap((p) => p.deletes) }));
    }
    return out;
  }

  /** Operator: rekey the TEKs, the KEK (multicast groups) or both now. */
  rekeyNow(kind: RekeyKind, now: number): PlannerOutput {
    if (kind !== 'tek' && !this.multicast) throw new RekeyPlannerError(`group ${this.group.name} has no Rekey SA (inband rekey)`);
    return this.rekey(kind, now, 'operator');
  }

  /**
   * Operator: a changed policy for the group. New KEK and TEKs under the new
   * policy in one message; a change the members cannot follow through a
   * rekey (Sender-ID bits, the key tree's KWA) excludes everyone instead.
   */
  changePolicy(config: GroupConfig, now: number): PlannerOutput {
    const before = this.group.config;
    this.group.reconfigure(config);
    const kwaChanged = before.rekey.kind === 'multicast' && config.rekey.kind === 'multicast' && before.rekey.keyWrap !== config.rekey.keyWrap;
    if (before.senderIdBits !== config.senderIdBits || (kwaChanged && this.tree)) return this.excludeEveryone(now, 'policy-change');
    // New TEK policies get new SPIs: the reserved ones belong to the old list.
    if (config.dataSecurity.length !== before.dataSecurity.length) this.nextTekSpis = [];
    return this.rekey(this.multicast ? 'all' : 'tek', now, 'policy-change');
  }

  /**
   * AUTH_KEY rollover (Section 2.4.1): a new KEK whose rekey carries the new
   * public key, signed with the current key; later messages are signed with
   * the new one and registrations hand it out.
   */
  rotateSigningKey(key: RekeySigningKey, now: number): PlannerOutput {
    if (!this.multicast || !this.group.signingKey) throw new RekeyPlannerError(`group ${this.group.name} does not sign rekeys`);
    if (!this.group.signingKey.algorithmIdentifier.equals(key.algorithmIdentifier)) {
      throw new RekeyPlannerError('the new signing key must use the same signature algorithm (GCAUTH cannot change in a rekey)');
    }
    this.pendingAuthKey = key.publicKeySpki;
    const out = this.rekey('kek', now, 'signing-key-rollover');
    this.group.rotateSigningKey(key);
    out.events.push({ type: 'signing-key-rolled-over', at: now, group: this.group.name });
    return out;
  }

  /**
   * A member is about to be registered: call before building its GSA/KD
   * (with `rekeyOnJoin` this rekeys first, so the member gets keys nobody
   * used before it joined), then add `wrapKeys` to its Member Key Bag
   * (`withWorkingKeyPath`). Placing the same identity again reuses its leaf.
   * `delivery`: the KWA and GSK_w of the registration IKE SA.
   */
  admitMember(member: Identity, delivery: UnicastDelivery, now: number): Admission {
    const tree = this.tree;
    if (!tree) return { wrapKeys: [], leaf: undefined, output: emptyOutput() };
    const key = identityKey(member);
    let placed = this.leaves.get(key);
    let output: PlannerOutput = emptyOutput();
    if (!placed) {
      const others = tree.memberCount > 0;
      const placement = tree.addMember({ backwardAccessControl: this.options.rekeyOnJoin === true });
      placed = { id: member, leaf: placement.leaf };
      this.leaves.set(key, placed);
      this.pendingWrapKeys.push(...placement.wrapKeys);
      if (this.options.rekeyOnJoin && others) output = this.rekey('all', now, 'join');
    }
    return { wrapKeys: tree.workingKeyPath(placed.leaf, delivery), leaf: placed.leaf, output };
  }

  /**
   * Operator (or a member leaving): exclude members so that they cannot read
   * the group any more (forward access control, Section 3.2.1). With a key
   * tree: two messages, new KEK then new TEKs. Inband: new TEKs to the
   * others, a Delete GIKE_UPDATE SPI 0 to the excluded. Multicast without a
   * key tree: everyone is excluded.
   */
  excludeMembers(members: readonly Identity[], now: number): PlannerOutput {
    if (members.length === 0) return emptyOutput();
    const names = members.map(formatIdentity);
    if (!this.multicast) return this.excludeInband(members, now);
    const tree = this.tree;
    if (!tree) return this.excludeEveryone(now, 'exclusion');
    const leaves = members.flatMap((m) => {
      const placed = this.leaves.get(identityKey(m));
      return placed ? [placed.leaf] : [];
    });
    for (const m of members) {
      this.leaves.delete(identityKey(m));
      this.group.removeMember(m);
    }
    if (tree.memberCount - leaves.length <= 0) return this.excludeEveryone(now, 'exclusion');
    const out = emptyOutput();
    out.events.push({ type: 'members-excluded', at: now, group: this.group.name, members: names });
    if (leaves.length === 0) return out;

    const oldKek = this.requireKek();
    const oldTeks = this.group.dataSecuritySas;
    this.group.replaceRekeySa(now, this.takeNextKekSpi());
    this.group.replaceDataSecuritySas(now, { spis: this.takeNextTekSpis(), keepSenderIds: true });
    this.reserveNextSpis();
    const newKek = this.requireKek();
    const { immediate, deferred } = this.splitRetirement(oldTeks);
    const plan = planMembershipRekey({
      tree,
      exclude: leaves,
      joinWrapKeys: this.takePendingWrapKeys(),
      kek: { policy: this.kekPolicy(newKek, now), keymat: newKek.keymat },
      teks: this.group.dataSecuritySas.map((t) => ({ policy: this.tekPolicy(t, now, true), keymat: t.keymat })),
      groupWide: this.groupWidePolicy(),
      retire: immediate,
      authKey: this.takePendingAuthKey(),
    });
    merge(out, this.sendMulticast(now, 'exclusion', oldKek, plan.first, { newKek }));
    if (plan.second) merge(out, this.sendMulticast(now, 'exclusion', newKek, plan.second, { newTeks: this.group.dataSecuritySas, deletes: immediate }));
    this.deferDeletes(now, deferred);
    this.scheduleTeks(now);
    this.scheduleKek(now);
    return out;
  }

  /** Sender-IDs ran out (Section 2.5.1), or the operator wants a clean start: every member goes. */
  excludeEveryone(now: number, reason: RekeyReason = 'operator'): PlannerOutput {
    const out = emptyOutput();
    const protocols = [...new Set(this.group.dataSecuritySas.map((t) => t.policy.protocolId))];
    const deletes = startOverDeletes(protocols.length > 0 ? protocols : [ProtocolId.ESP]);
    if (this.group.members.size > 0 || (this.tree?.memberCount ?? 0) > 0) {
      merge(out, this.send(now, reason, { deletes }));
    }
    out.events.push({ type: 'all-members-excluded', at: now, group: this.group.name, reason });
    this.group.clearMembers();
    this.leaves.clear();
    this.pendingWrapKeys = [];
    this.pendingDeletes = [];
    this.tree = this.newTree();
    this.group.replaceDataSecuritySas(now);
    this.group.replaceRekeySa(now);
    this.nextTekSpis = [];
    this.nextKekSpi = undefined;
    this.reserveNextSpis();
    this.scheduleTeks(now);
    this.scheduleKek(now);
    return out;
  }

  // ------------------------------------------------------------ internals

  private newTree(): LkhTree | undefined {
    const kek = this.group.rekeySa;
    if (!kek || this.options.keyTree === false) return undefined;
    return new LkhTree({ kwa: kek.policy.keyWrap, arity: this.options.lkhArity, random: this.rng, keyIds: this.options.keyIds });
  }

  private requireKek(): RekeySa {
    const kek = this.group.rekeySa;
    if (!kek) throw new RekeyPlannerError(`group ${this.group.name} has no Rekey SA`);
    return kek;
  }

  private get atdMs(): number {
    return (this.group.config.activationDelaySeconds ?? 0) * 1000;
  }
  private get dtdMs(): number {
    return (this.group.config.deactivationDelaySeconds ?? 0) * 1000;
  }
  private get retransmitSpanMs(): number {
    return (this.retransmit.copies - 1) * this.retransmit.spacingMs;
  }

  private leadFor(lifetimeMs: number): number {
    const configured = this.options.leadTimeMs ?? Math.min(MAX_LEAD_MS, Math.max(MIN_LEAD_MS, lifetimeMs * LEAD_FRACTION));
    // Two messages may be needed (exclusion), each with its copies, and senders wait ATD.
    return Math.max(configured, this.atdMs + 2 * this.retransmitSpanMs + 1000);
  }

  private dueTime(createdAt: number, expiresAt: number, now: number): number {
    const lead = this.leadFor(expiresAt - createdAt);
    const jitter = (this.options.jitterMs ?? lead * 0.1) * uniform(this.rng);
    return Math.max(now, Math.floor(expiresAt - lead - jitter));
  }

  private scheduleTeks(now: number): void {
    const teks = this.group.dataSecuritySas;
    this.tekDueAt = teks.length === 0 ? Infinity : Math.min(...teks.map((t) => this.dueTime(t.createdAt, t.expiresAt, now)));
  }

  private scheduleKek(now: number): void {
    const kek = this.group.rekeySa;
    this.kekDueAt = kek ? this.dueTime(kek.createdAt, kek.expiresAt, now) : Infinity;
  }

  private get announcing(): boolean {
    return this.multicast && this.options.announceNextSpis !== false;
  }

  private reserveNextSpis(): void {
    if (!this.announcing) return;
    this.nextTekSpis = this.group.config.dataSecurity.map((_, i) => this.nextTekSpis[i] ?? this.group.allocateDataSecuritySpi());
    this.nextKekSpi ??= this.group.allocateRekeySpi();
  }

  private takeNextTekSpis(): (Buffer | undefined)[] {
    const spis = this.nextTekSpis;
    this.nextTekSpis = [];
    return spis;
  }

  private takeNextKekSpi(): Buffer | undefined {
    const spi = this.nextKekSpi;
    this.nextKekSpi = undefined;
    return spi;
  }

  private takePendingWrapKeys(): WrappedKey[] {
    const keys = [...this.pendingWrapKeys, ...(this.tree?.takeUndeliveredWrapKeys() ?? [])];
    this.pendingWrapKeys = [];
    return keys;
  }

  private takePendingAuthKey(): Buffer | undefined {
    const k = this.pendingAuthKey;
    this.pendingAuthKey = undefined;
    return k;
  }

  /** Deletes of replaced TEKs now, or ATD - DTD later when receivers would otherwise drop them too early. */
  private splitRetirement(old: readonly DataSecuritySa[]): { immediate: DeletePayload[]; deferred: DeletePayload[] } {
    const deletes = deletesFor(old);
    return this.dtdMs >= this.atdMs ? { immediate: deletes, deferred: [] } : { immediate: [], deferred: deletes };
  }

  private deferDeletes(now: number, deletes: readonly DeletePayload[]): void {
    if (deletes.length === 0) return;
    this.pendingDeletes.push({ dueAt: now + this.retransmitSpanMs + (this.atdMs - this.dtdMs), deletes });
  }

  private rekey(kind: RekeyKind, now: number, reason: RekeyReason): PlannerOutput {
    const out = emptyOutput();
    const newTeks = kind !== 'kek';
    const newKek = kind !== 'tek' && this.multicast;
    const oldKek = this.group.rekeySa;
    const oldTeks = this.group.dataSecuritySas;
    if (newTeks) this.group.replaceDataSecuritySas(now, { spis: this.takeNextTekSpis(), keepSenderIds: true });
    if (newKek) this.group.replaceRekeySa(now, this.takeNextKekSpi());
    this.reserveNextSpis();
    const { immediate, deferred } = newTeks ? this.splitRetirement(oldTeks) : { immediate: [], deferred: [] };

    if (!oldKek) {
      merge(out, this.sendInband(now, reason, { teks: this.group.dataSecuritySas, deletes: immediate }));
    } else {
      const kek = this.requireKek();
      const policies: SaPolicy[] = [];
      const bags: SaKeyBag[] = [];
      // Everything in this message is wrapped with the GSK_w of the Rekey SA it is sent over (Section 3.3).
      const underCurrent = (keymat: Buffer): WrappedKey => ({
        keyId: SA_KEY_ID,
        kwkId: DEFAULT_KWK_ID,
        encryptedKey: wrapKey(oldKek.policy.keyWrap, oldKek.keys.gskW, keymat),
      });
      if (newKek) {
        policies.push(this.kekPolicy(kek, now));
        bags.push({ protocol: ProtocolId.GIKE_UPDATE, spi: kek.spi, saKeys: [underCurrent(kek.keymat)] });
      }
      if (newTeks) {
        for (const t of this.group.dataSecuritySas) {
          policies.push(this.tekPolicy(t, now, true));
          bags.push({ protocol: t.policy.protocolId, spi: t.spi, saKeys: [underCurrent(t.keymat)] });
        }
      }
      const gw = newTeks ? this.groupWidePolicy() : undefined;
      const gsa: GsaPayload = { type: PayloadType.GSA, critical: false, policies: [...policies, ...(gw ? [gw] : [])] };
      const kd: KdPayload = rekeyKeyDownload({ bags, wrapKeys: this.takePendingWrapKeys(), authKey: this.takePendingAuthKey() });
      merge(
        out,
        this.sendMulticast(now, reason, oldKek, { gsa, kd, deletes: immediate }, {
          newKek: newKek ? kek : undefined,
          newTeks: newTeks ? this.group.dataSecuritySas : [],
          deletes: immediate,
        }),
      );
    }
    this.deferDeletes(now, deferred);
    if (newTeks) this.scheduleTeks(now);
    if (newKek) this.scheduleKek(now);
    return out;
  }

  /** Deletes only (or other content without new SAs), over the current KEK or inband. */
  private send(now: number, reason: RekeyReason, content: { readonly deletes: readonly DeletePayload[] }): PlannerOutput {
    const kek = this.group.rekeySa;
    if (kek) return this.sendMulticast(now, reason, kek, { deletes: content.deletes }, { deletes: content.deletes });
    return this.sendInband(now, reason, { teks: [], deletes: content.deletes });
  }

  private sendMulticast(
    now: number,
    reason: RekeyReason,
    over: RekeySa,
    content: RekeyContent,
    summary: { readonly newKek?: RekeySa | undefined; readonly newTeks?: readonly DataSecuritySa[]; readonly deletes?: readonly DeletePayload[] | undefined },
  ): PlannerOutput {
    const messageId = over.messageIds.take();
    if (messageId === undefined) throw new RekeyPlannerError(`Rekey SA ${over.spi.toString('hex')} has used every Message ID`);
    const signer = this.signerFor();
    const built = buildRekey({
      sa: { spi: over.spi, cipher: this.cipherFor(over), signer },
      messageId,
      fragmentation: this.options.fragmentation,
      ...content,
    });
    // Never emit what the Section 5 validator rejects: a failure here is a bug.
    assertValid(
      validateExchange(ExchangeType.GSA_REKEY, built.inner, {
        rekeyStyle: 'multicast',
        groupSender: false,
        keyTree: true,
        gcauth: signer ? GcauthId.DIGITAL_SIGNATURE : GcauthId.IMPLICIT,
      }),
    );
    const start = Math.max(now, this.channelFreeAt);
    const sendAt = Array.from({ length: this.retransmit.copies }, (_, i) => start + i * this.retransmit.spacingMs);
    this.channelFreeAt = sendAt[sendAt.length - 1]! + this.retransmit.spacingMs;
    return {
      actions: [
        {
          kind: 'multicast',
          group: this.group.name,
          reason,
          rekeySpi: over.spi,
          messageId,
          datagrams: built.datagrams,
          sendAt,
          source: endpointOf(over.policy.source),
          destination: endpointOf(over.policy.destination),
          messageLength: built.messageLength,
          fragmented: built.fragmented,
        },
      ],
      events: [
        {
          type: 'rekey-planned',
          at: now,
          group: this.group.name,
          reason,
          transport: 'multicast',
          messageId,
          newKek: summary.newKek?.spi.toString('hex'),
          newTeks: (summary.newTeks ?? []).map((t) => t.spi.toString('hex')),
          deletes: describeDeletes(summary.deletes ?? []),
        },
      ],
    };
  }

  private sendInband(
    now: number,
    reason: RekeyReason,
    content: { readonly teks: readonly DataSecuritySa[]; readonly deletes: readonly DeletePayload[] },
    recipients: readonly Identity[] = [...this.group.members.values()].map((m) => m.id),
  ): PlannerOutput {
    const deliveries: InbandDelivery[] = [];
    const unreachable: Identity[] = [];
    const gw = content.teks.length > 0 ? this.groupWidePolicy() : undefined;
    const gsa: GsaPayload | undefined =
      content.teks.length > 0
        ? { type: PayloadType.GSA, critical: false, policies: [...content.teks.map((t) => this.tekPolicy(t, now, false)), ...(gw ? [gw] : [])] }
        : undefined;
    for (const member of recipients) {
      const delivery = this.inbandDelivery?.(member);
      if (!delivery) {
        unreachable.push(member);
        continue;
      }
      const payloads: Payload[] = [];
      if (gsa) {
        const wrap = (keymat: Buffer): WrappedKey => ({ keyId: SA_KEY_ID, kwkId: DEFAULT_KWK_ID, encryptedKey: wrapKey(delivery.kwa, delivery.gskW, keymat) });
        const kd = rekeyKeyDownload({ bags: content.teks.map((t) => ({ protocol: t.policy.protocolId, spi: t.spi, saKeys: [wrap(t.keymat)] })) });
        payloads.push(gsa, kd);
      }
      payloads.push(...content.deletes);
      assertValid(validateExchange(ExchangeType.GSA_INBAND_REKEY, payloads, { rekeyStyle: 'inband', groupSender: false, keyTree: false }));
      deliveries.push({ member, payloads });
    }
    return {
      actions: [{ kind: 'inband', group: this.group.name, reason, sendAt: now, deliveries, unreachable }],
      events: [
        {
          type: 'rekey-planned',
          at: now,
          group: this.group.name,
          reason,
          transport: 'inband',
          newTeks: content.teks.map((t) => t.spi.toString('hex')),
          deletes: describeDeletes(content.deletes),
        },
      ],
    };
  }

  private excludeInband(members: readonly Identity[], now: number): PlannerOutput {
    const out = emptyOutput();
    for (const m of members) this.group.removeMember(m);
    out.events.push({ type: 'members-excluded', at: now, group: this.group.name, members: members.map(formatIdentity) });
    // The excluded learn it from a Delete GIKE_UPDATE SPI 0 over their own IKE SA (Section 2.4.3).
    merge(out, this.sendInband(now, 'exclusion', { teks: [], deletes: startOverDeletes([]) }, members));
    if (this.group.members.size > 0) merge(out, this.rekey('tek', now, 'exclusion'));
    return out;
  }

  private cipherFor(sa: RekeySa): SkCipher {
    const key = sa.spi.toString('hex');
    let cipher = this.ciphers.get(key);
    if (!cipher) {
      // One cipher per Rekey SA for its whole life: AEAD IVs come from one never-repeating counter.
      cipher = createSkCipher(
        { encr: sa.policy.encryption.id, encrKeyBits: sa.policy.encryption.keyBits, integ: sa.policy.integrity },
        rekeySaSkKeys(sa.keys),
        this.rng,
      );
      this.ciphers.set(key, cipher);
      const live = new Set([this.group.rekeySa?.spi.toString('hex'), key]);
      for (const k of this.ciphers.keys()) if (!live.has(k)) this.ciphers.delete(k);
    }
    return cipher;
  }

  private signerFor(): RekeySigner | undefined {
    const key = this.group.signingKey;
    if (!key) return undefined;
    if (this.signer?.key !== key) this.signer = { key, signer: createRekeySigner(key.privateKey, key.algorithm) };
    return this.signer.signer;
  }

  /** The KEK policy as a rekey carries it: no GCAUTH (registration only, Section 4.4.2.1), Message IDs from 0. */
  private kekPolicy(kek: RekeySa, now: number): SaPolicy {
    const attributes: Attribute[] = [keyLifetimeAttribute(remainingSeconds(kek.expiresAt, now))];
    if (this.announcing && this.nextKekSpi) attributes.push(nextSpiAttribute(this.nextKekSpi));
    return {
      kind: 'sa',
      protocol: ProtocolId.GIKE_UPDATE,
      spi: kek.spi,
      source: kek.policy.source,
      destination: kek.policy.destination,
      transforms: kek.transforms.filter((t) => t.type !== TransformType.GCAUTH),
      attributes,
    };
  }

  private tekPolicy(tek: DataSecuritySa, now: number, multicast: boolean): SaPolicy {
    const attributes: Attribute[] = [];
    // Section 4.4.2.2.1: MUST with multicast rekey, SHOULD NOT with inband rekey.
    if (multicast) attributes.push(keyLifetimeAttribute(remainingSeconds(tek.expiresAt, now)));
    const index = this.group.dataSecuritySas.indexOf(tek);
    const next = this.nextTekSpis[index];
    if (multicast && this.announcing && next) attributes.push(nextSpiAttribute(next));
    return {
      kind: 'sa',
      protocol: tek.policy.protocolId,
      spi: tek.spi,
      source: tek.policy.source,
      destination: tek.policy.destination,
      transforms: tek.transforms,
      attributes,
    };
  }

  private groupWidePolicy(): GroupWidePolicy | undefined {
    const c = this.group.config;
    const attributes: Attribute[] = [];
    if (c.activationDelaySeconds !== undefined) attributes.push(activationTimeDelayAttribute(c.activationDelaySeconds));
    if (c.deactivationDelaySeconds !== undefined) attributes.push(deactivationTimeDelayAttribute(c.deactivationDelaySeconds));
    return attributes.length > 0 ? { kind: 'group-wide', attributes } : undefined;
  }
}

function merge(into: { actions: RekeyAction[]; events: PlannerEvent[] }, from: PlannerOutput): void {
  into.actions.push(...from.actions);
  into.events.push(...from.events);
}

/** One Delete per protocol for the SAs being retired. */
function deletesFor(old: readonly DataSecuritySa[]): DeletePayload[] {
  const byProtocol = new Map<number, Buffer[]>();
  for (const t of old) {
    const list = byProtocol.get(t.policy.protocolId) ?? [];
    list.push(t.spi);
    byProtocol.set(t.policy.protocolId, list);
  }
  return [...byProtocol].map(([protocol, spis]) => deleteSas(protocol, spis));
}

function describeDeletes(deletes: readonly DeletePayload[]): string[] {
  return deletes.flatMap((d) => d.spis.map((s) => `${d.protocolId}:${s.toString('hex')}`));
}

/**
 * A registration's payloads with the member's Working Key Path added to its
 * Member Key Bag (Appendix A.2), checked against Section 5 with the key tree
 * in use. `exchange`: GSA_AUTH or GSA_REGISTRATION.
 */
export function withWorkingKeyPath(payloads: readonly Payload[], wrapKeys: readonly WrappedKey[], exchange: number, groupSender: number | undefined): Payload[] {
  if (wrapKeys.length === 0) return [...payloads];
  const out = payloads.map((p): Payload => {
    if (p.type !== PayloadType.KD || !('keyBags' in p)) return p;
    const kd = p;
    const extra = rekeyKeyDownload({ bags: [], wrapKeys }).keyBags;
    return { ...kd, keyBags: [...kd.keyBags, ...extra] };
  });
  assertValid(
    validateExchange(exchange, out, {
      rekeyStyle: 'multicast',
      groupSender: groupSender !== undefined,
      keyTree: true,
      senderIdsRequested: groupSender,
    }),
  );
  return out;
}
