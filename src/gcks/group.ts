/**
 * A group at run time: its policy as applied, the current Data-Security SAs
 * (TEKs) and Rekey SA (KEK) with their keys, its members, and the counters
 * that must never repeat (SPIs, Sender-IDs, Rekey SA Message IDs).
 *
 * No clocks here: every operation takes `now` (milliseconds since the epoch).
 */
import type { RandomSource } from '../crypto/random.ts';
import { rekeySaKeymatLength, splitRekeySaKeys, type RekeySaKeys } from '../crypto/keys.ts';
import { usesCounterMode } from '../wire/cipher-classes.ts';
import { tlv } from '../wire/attributes.ts';
import { IntegId, TransformAttr, TransformType } from '../wire/iana.ts';
import type { Transform } from '../wire/transform.ts';
import type { Identity } from './config-identities.ts';
import type { DataSecurityPolicyConfig, GroupConfig, MulticastRekeyConfig } from './config.ts';
import { ReservedCounter, type CounterReservation } from './counters.ts';
import { dataSecurityKeymatLength, rekeySaAlgorithms } from './keymat.ts';
import { SenderIdAllocator } from './sender-ids.ts';
import type { RekeySigningKey } from './signing-key.ts';
import { SpiAllocator } from './spi.ts';
import { encrTransform, simpleTransform } from './transform-names.ts';

/** A Data-Security SA (TEK) as the GCKS holds it. */
export interface DataSecuritySa {
  readonly policy: DataSecurityPolicyConfig;
  readonly spi: Buffer;
  /** ENCR (ESP), INTEG (unless NONE), SN: the GSA TEK transforms (Section 4.4.2.1). */
  readonly transforms: readonly Transform[];
  /** Encryption key (salt included) | integrity key (Section 3.4). */
  readonly keymat: Buffer;
  readonly createdAt: number;
  readonly expiresAt: number;
}

/** The Rekey SA (KEK) as the GCKS holds it. */
export interface RekeySa {
  readonly policy: MulticastRekeyConfig;
  /** 16 octets: initiator SPI | responder SPI of GSA_REKEY headers. */
  readonly spi: Buffer;
  /** ENCR, INTEG (unless AEAD), GCAUTH, KWA. GCAUTH goes only into registrations. */
  readonly transforms: readonly Transform[];
  /** GSK_e | GSK_a | GSK_w (Section 3.4, NOTES point 4). */
  readonly keymat: Buffer;
  readonly keys: RekeySaKeys;
  readonly createdAt: number;
  readonly expiresAt: number;
  /** GSA_REKEY Message IDs: peek() is the next one, i.e. GSA_INITIAL_MESSAGE_ID for a member joining now. */
  readonly messageIds: ReservedCounter;
}

export interface MemberRecord {
  readonly id: Identity;
  readonly registeredAt: number;
  /** The member asked to send and may. */
  readonly sender: boolean;
  /** Sender-IDs given in its latest registration (under the current TEKs). */
  readonly senderIds: readonly number[];
}

/** An SA's keys and times as persisted (policy and transforms follow from the configuration). Secret. */
export interface PersistedSa {
  readonly spi: Buffer;
  readonly keymat: Buffer;
  readonly createdAt: number;
  readonly expiresAt: number;
}

/**
 * What a restarted key server needs to carry on a group where it stopped
 * (src/node/gcks-state.ts persists it): the current SAs with their keys,
 * the members and the Sender-ID counter of the current TEK generation.
 * Never-repeating counters live in the CounterReservation, not here.
 */
export interface GroupState {
  /** One per `config.dataSecurity` policy, in order. */
  readonly teks: readonly PersistedSa[];
  readonly kek?: PersistedSa | undefined;
  readonly members: readonly MemberRecord[];
  /** Name of the Sender-ID counter of the current TEK generation. */
  readonly senderIdCounter: string;
}

/** What changed in a group's members since the last `takeMemberChanges`. */
export interface MemberChanges {
  readonly put: readonly MemberRecord[];
  readonly removed: readonly Identity[];
}

export interface GroupDependencies {
  readonly counters: CounterReservation;
  readonly rng: RandomSource;
  /** Required when the Rekey SA is authenticated by signatures. */
  readonly signingKey?: RekeySigningKey | undefined;
  /** Carry on from persisted state instead of creating new SAs (it must match `config`). */
  readonly restore?: GroupState | undefined;
}

export class GroupSetupError extends Error {
  override readonly name = 'GroupSetupError';
}

const MESSAGE_ID_BLOCK = 64;

/** Map key for an identity. */
export function identityKey(id: Identity): string {
  return `${id.idType}:${id.data.toString('hex')}`;
}

export interface ReplaceDataSecurityOptions {
  /** SPIs reserved earlier (announced in GSA_NEXT_SPI), one per TEK policy in order; fresh ones otherwise. */
  readonly spis?: readonly (Buffer | undefined)[] | undefined;
  /**
   * Keep the Sender-ID counter. A rekey MUST keep it: senders go on using
   * their Sender-IDs with TEKs that arrive in a rekey (Section 2.4.1.4), so a
   * new counter would hand the same values out again under the new TEKs.
   * Only a start-over that excludes every member may begin a new one (2.5.1).
   */
  readonly keepSenderIds?: boolean | undefined;
}

export class Group {
  private currentConfig: GroupConfig;
  private currentSigningKey: RekeySigningKey | undefined;
  private readonly counters: CounterReservation;
  private readonly rng: RandomSource;
  private readonly spis: SpiAllocator;
  /** Counter names start with the IDg so that renaming a group cannot reset them. */
  private readonly scope: string;
  private readonly memberTable = new Map<string, MemberRecord>();
  private tekSet: readonly DataSecuritySa[] = [];
  private kekSa: RekeySa | undefined;
  private senderIdAllocator: SenderIdAllocator;
  /** Members put or removed since the last takeMemberChanges (identity key -> record, or undefined when removed). */
  private memberChanges = new Map<string, MemberRecord | Identity>();

  constructor(config: GroupConfig, deps: GroupDependencies, now: number) {
    if (config.rekey.kind === 'multicast' && config.rekey.authentication === 'signature' && !deps.signingKey) {
      throw new GroupSetupError(`group ${config.name}: signed rekeys need the signing key`);
    }
    this.currentConfig = config;
    this.currentSigningKey = config.rekey.kind === 'multicast' && config.rekey.authentication === 'signature' ? deps.signingKey : undefined;
    this.counters = deps.counters;
    this.rng = deps.rng;
    this.scope = `group/${identityKey(config.id)}`;
    this.spis = new SpiAllocator(deps.counters, this.scope, deps.rng);
    const restore = deps.restore;
    if (restore) {
      if (restore.teks.length !== config.dataSecurity.length || (config.rekey.kind === 'multicast') !== (restore.kek !== undefined)) {
        throw new GroupSetupError(`group ${config.name}: the persisted SAs do not match the configuration`);
      }
      this.tekSet = config.dataSecurity.map((policy, i) => this.createDataSecuritySa(policy, now, restore.teks[i]!.spi, restore.teks[i]));
      if (config.rekey.kind === 'multicast' && restore.kek) this.kekSa = this.createRekeySa(config.rekey, now, restore.kek.spi, restore.kek);
      this.senderIdAllocator = new SenderIdAllocator(this.counters, restore.senderIdCounter, config.senderIdBits);
      for (const m of restore.members) this.memberTable.set(identityKey(m.id), m);
      return;
    }
    this.senderIdAllocator = this.newSenderIdAllocator();
    this.replaceDataSecuritySas(now);
    if (config.rekey.kind === 'multicast') this.replaceRekeySa(now);
  }

  /** The group's state for persistence (keys included: seal it). */
  persistentState(): GroupState {
    const sa = (x: { spi: Buffer; keymat: Buffer; createdAt: number; expiresAt: number }): PersistedSa => ({ spi: x.spi, keymat: x.keymat, createdAt: x.createdAt, expiresAt: x.expiresAt });
    return {
      teks: this.tekSet.map(sa),
      kek: this.kekSa && sa(this.kekSa),
      members: [...this.memberTable.values()],
      senderIdCounter: this.senderIdAllocator.counterName,
    };
  }

  /** Members put or removed since the last call (for persistence). */
  takeMemberChanges(): MemberChanges {
    const put: MemberRecord[] = [];
    const removed: Identity[] = [];
    for (const v of this.memberChanges.values()) {
      if ('registeredAt' in v) put.push(v);
      else removed.push(v);
    }
    this.memberChanges = new Map();
    return { put, removed };
  }

  get config(): GroupConfig {
    return this.currentConfig;
  }
  get signingKey(): RekeySigningKey | undefined {
    return this.currentSigningKey;
  }
  get name(): string {
    return this.config.name;
  }
  get dataSecuritySas(): readonly DataSecuritySa[] {
    return this.tekSet;
  }
  get rekeySa(): RekeySa | undefined {
    return this.kekSa;
  }
  get senderIds(): SenderIdAllocator {
    return this.senderIdAllocator;
  }
  get members(): ReadonlyMap<string, MemberRecord> {
    return this.memberTable;
  }
  get isFull(): boolean {
    return this.memberTable.size >= this.config.capacity;
  }
  /** A TEK uses a counter-based mode, so senders need Sender-IDs (Section 2.5.1). */
  get usesCounterMode(): boolean {
    return this.tekSet.some((t) => usesCounterMode(t.transforms));
  }

  member(id: Identity): MemberRecord | undefined {
    return this.memberTable.get(identityKey(id));
  }

  /** Adds or replaces (a re-registration) the member's record. */
  putMember(record: MemberRecord): void {
    this.memberTable.set(identityKey(record.id), record);
    this.memberChanges.set(identityKey(record.id), record);
  }

  removeMember(id: Identity): boolean {
    const removed = this.memberTable.delete(identityKey(id));
    if (removed) this.memberChanges.set(identityKey(id), id);
    return removed;
  }

  /**
   * New TEKs: new SPIs, fresh keys, and a new Sender-ID space (Sender-IDs are
   * unique per set of TEKs, Section 2.5.1). Distributing them is the rekey
   * planner's business; this only changes what registrations hand out.
   */
  replaceDataSecuritySas(now: number, options: ReplaceDataSecurityOptions = {}): void {
    this.tekSet = this.config.dataSecurity.map((policy, i) => this.createDataSecuritySa(policy, now, options.spis?.[i]));
    if (!options.keepSenderIds) this.senderIdAllocator = this.newSenderIdAllocator();
  }

  /** `spi`: one reserved earlier with `allocateRekeySpi` (announced in GSA_NEXT_SPI). */
  replaceRekeySa(now: number, spi?: Buffer): void {
    if (this.config.rekey.kind !== 'multicast') return;
    this.kekSa = this.createRekeySa(this.config.rekey, now, spi);
  }

  /** A fresh ESP/AH SPI, never handed out before (for GSA_NEXT_SPI announcements). */
  allocateDataSecuritySpi(): Buffer {
    return this.spis.allocateDataSecuritySpi();
  }

  /** A fresh 16-octet Rekey SA SPI, never handed out before. */
  allocateRekeySpi(): Buffer {
    return this.spis.allocateRekeySpi();
  }

  /**
   * AUTH_KEY rollover (Section 2.4.1): registrations hand out the new key
   * from now on. The Rekey SA's GCAUTH transform (attribute 18) cannot change
   * through a rekey, so the new key must use the same AlgorithmIdentifier.
   */
  rotateSigningKey(key: RekeySigningKey): void {
    const current = this.currentSigningKey;
    if (!current) throw new GroupSetupError(`group ${this.name}: rekeys are not signed, there is no key to roll over`);
    if (!current.algorithmIdentifier.equals(key.algorithmIdentifier)) {
      throw new GroupSetupError(`group ${this.name}: the new signing key must use the same signature algorithm (GCAUTH cannot change in a rekey)`);
    }
    this.currentSigningKey = key;
  }

  /**
   * A changed policy for the same group (same IDg and rekey method). The
   * current SAs stay until the caller replaces them (the rekey planner does,
   * in the same rekey message: Section 3.2.1).
   */
  reconfigure(config: GroupConfig): void {
    if (identityKey(config.id) !== identityKey(this.config.id)) throw new GroupSetupError(`group ${this.name}: a policy change cannot change the IDg`);
    if (config.rekey.kind !== this.config.rekey.kind) throw new GroupSetupError(`group ${this.name}: a policy change cannot switch between multicast and inband rekey`);
    if (config.rekey.kind === 'multicast' && this.config.rekey.kind === 'multicast' && config.rekey.authentication !== this.config.rekey.authentication) {
      throw new GroupSetupError(`group ${this.name}: a policy change cannot change how rekeys are authenticated`);
    }
    this.currentConfig = config;
  }

  /** Everyone was excluded (Section 2.4.3): they come back by registering. */
  clearMembers(): void {
    for (const m of this.memberTable.values()) this.memberChanges.set(identityKey(m.id), m.id);
    this.memberTable.clear();
  }

  /**
   * Without a rekey planner nobody else replaces expired SAs; registration
   * must never hand out an SA that is already dead.
   */
  replaceExpired(now: number): void {
    if (this.tekSet.some((t) => t.expiresAt <= now)) this.replaceDataSecuritySas(now);
    if (this.kekSa && this.kekSa.expiresAt <= now) this.replaceRekeySa(now);
  }

  private newSenderIdAllocator(): SenderIdAllocator {
    // Named after the first TEK SPI, which is never reused: one counter per TEK generation.
    const generation = this.tekSet[0]?.spi.toString('hex') ?? 'none';
    return new SenderIdAllocator(this.counters, `${this.scope}/sender-id/${generation}`, this.config.senderIdBits);
  }

  private createDataSecuritySa(policy: DataSecurityPolicyConfig, now: number, spi?: Buffer, restored?: PersistedSa): DataSecuritySa {
    const transforms: Transform[] = [];
    if (policy.encryption) transforms.push(encrTransform(policy.encryption));
    if (policy.integrity !== IntegId.NONE) transforms.push(simpleTransform(TransformType.INTEG, policy.integrity));
    transforms.push(simpleTransform(TransformType.SN, policy.sequenceNumbers));
    return {
      policy,
      spi: spi ?? this.spis.allocateDataSecuritySpi(),
      transforms,
      keymat: restored ? checkedKeymat(restored.keymat, dataSecurityKeymatLength(policy), this.name) : this.rng.bytes(dataSecurityKeymatLength(policy)),
      createdAt: restored?.createdAt ?? now,
      expiresAt: restored?.expiresAt ?? now + policy.lifetimeSeconds * 1000,
    };
  }

  private createRekeySa(policy: MulticastRekeyConfig, now: number, reservedSpi?: Buffer, restored?: PersistedSa): RekeySa {
    const algorithms = rekeySaAlgorithms(policy.encryption, policy.integrity, policy.keyWrap);
    const keymat = restored ? checkedKeymat(restored.keymat, rekeySaKeymatLength(algorithms), this.name) : this.rng.bytes(rekeySaKeymatLength(algorithms));
    const spi = reservedSpi ?? this.spis.allocateRekeySpi();
    const transforms: Transform[] = [encrTransform(policy.encryption)];
    if (policy.integrity !== IntegId.NONE) transforms.push(simpleTransform(TransformType.INTEG, policy.integrity));
    transforms.push(this.gcauthTransform(policy));
    transforms.push(simpleTransform(TransformType.KWA, policy.keyWrap));
    return {
      policy,
      spi,
      transforms,
      keymat,
      keys: splitRekeySaKeys(keymat, algorithms),
      createdAt: restored?.createdAt ?? now,
      expiresAt: restored?.expiresAt ?? now + policy.lifetimeSeconds * 1000,
      messageIds: new ReservedCounter(this.counters, `${this.scope}/rekey-message-id/${spi.toString('hex')}`, {
        start: 0,
        limit: 2 ** 32,
        block: MESSAGE_ID_BLOCK,
      }),
    };
  }

  /** Section 4.4.2.1.1: Digital Signature carries the AlgorithmIdentifier as attribute 18. */
  private gcauthTransform(policy: MulticastRekeyConfig): Transform {
    if (policy.authentication === 'implicit' || !this.signingKey) return simpleTransform(TransformType.GCAUTH, policy.gcauth);
    return {
      type: TransformType.GCAUTH,
      id: policy.gcauth,
      attributes: [tlv(TransformAttr.SIGNATURE_ALGORITHM_IDENTIFIER, this.signingKey.algorithmIdentifier)],
    };
  }
}

function checkedKeymat(keymat: Buffer, length: number, group: string): Buffer {
  if (keymat.length !== length) throw new GroupSetupError(`group ${group}: persisted keying material is ${keymat.length} octets, the policy needs ${length}`);
  return Buffer.from(keymat);
}
