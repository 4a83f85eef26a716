/**
 * The member following its group's rekeys (RFC 9838 Sections 2.4.1.4,
 * 2.4.2.2, 2.4.3, 3.3), sans-I/O. It holds, per group, the Rekey SA (and the
 * previous one for DTD), the last accepted Message ID, AUTH_KEY, the Working
 * Key Path and the Data-Security SAs with their activation and deactivation
 * times; `onDatagram` / `onInbandRekey` apply what the key server sends,
 * `tick` retires what is due, `nextDeadline` says when to call it.
 *
 * State is an immutable value replaced as a whole once a message has been
 * checked and applied completely: a message that is rejected at any step
 * changes nothing (`state` stays the same object).
 *
 * Timing (Section 4.4.3.1.1, RFC 5374 4.2.1): a new TEK is usable inbound at
 * once and outbound GWP_ATD later; a TEK named in a Delete stays inbound for
 * GWP_DTD (Section 2.4.1.4) and stops outbound when its replacement from the
 * same message activates (at once when there is none). An old Rekey SA goes
 * silently DTD after its successor arrived.
 *
 * Lost rekeys: GSA_NEXT_SPI values are remembered; a GSA_REKEY or a data
 * packet for an announced SPI that never arrived in a rekey means a missed
 * message -> 'resync-needed'. So does a soft lifetime (gm/schedule.ts) of an
 * SA nothing replaced, or a sender getting a counter-mode TEK without holding
 * a Sender-ID (Section 2.4.1.4). Exclusion (no key path to the new KEK, or a
 * Delete GIKE_UPDATE SPI 0) -> 'excluded' and re-registration after a random
 * few seconds (NOTES point 7).
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { createSkCipher, type SkCipher } from '../crypto/cipher.ts';
import { rekeySaSkKeys, splitRekeySaKeys, type RekeySaKeys } from '../crypto/keys.ts';
import { KeyUnwrapError, KeyWrapError, unwrapKey } from '../crypto/keywrap.ts';
import type { RandomSource } from '../crypto/random.ts';
import { keyFitsAlgorithm, parseAlgorithmIdentifier } from '../crypto/signature.ts';
import type { ReassemblyConfig } from '../ike/fragments.ts';
import type { Identity } from '../gcks/config-identities.ts';
import type { DataSecurityMode } from '../gcks/config.ts';
import { rekeySaAlgorithms, splitDataSecurityKeymat } from '../gcks/keymat.ts';
import { encrOfTransform, type EncrAlgorithm } from '../gcks/transform-names.ts';
import { usesCounterMode } from '../wire/cipher-classes.ts';
import { DecodeError } from '../wire/errors.ts';
import type { TrafficSelector } from '../wire/traffic-selector.ts';
import {
  activationTimeDelay,
  deactivationTimeDelay,
  initialMessageId,
  isKekPolicy,
  isTekPolicy,
  keyLifetimeSeconds,
  nextSpis,
  type GsaPayload,
  type SaPolicy,
} from '../wire/gsa.ts';
import { decodeHeader } from '../wire/header.ts';
import { ExchangeType, GcauthId, IntegId, PayloadType, ProtocolId, SnId, TransformAttr, TransformType } from '../wire/iana.ts';
import { authKeyOf, type KdPayload } from '../wire/kd.ts';
import type { Payload } from '../wire/payload.ts';
import type { DeletePayload } from '../wire/payloads/delete.ts';
import { isGsaPayload, isKdPayload, validateExchange } from '../wire/validator.ts';
import { DEFAULT_KWK_ID, saKeysOf, wrapKeysOf } from '../wire/wrapped-key.ts';
import type { MemberRole } from './config.ts';
import { keyDownloadFrom, WorkingKeyPath, type DefaultKwk } from './key-path.ts';
import type { DataSecuritySaMaterial, GroupKeyMaterial } from './keys.ts';
import { RekeyReceiver, type RekeyAuthentication, type RekeyRejection, type RekeySaReceiver } from './rekey-receiver.ts';
import { buildGroupSaTable, directionsFor, type Direction, type InstalledDataSecuritySa } from './sa-table.ts';
import { excludedReregistrationTime, retryTime, softDeadline } from './schedule.ts';

/** A Rekey SA as the member follows it. */
export interface FollowedRekeySa {
  readonly spi: Buffer;
  readonly encryption: EncrAlgorithm;
  readonly integrity: number;
  readonly keyWrap: number;
  readonly keys: RekeySaKeys;
  readonly auth: RekeyAuthentication;
  readonly installedAt: number;
  readonly expiresAt?: number | undefined;
  /** Re-register if nothing replaced the SA by then (Section 2.4.1.4, last paragraph). */
  readonly softAt?: number | undefined;
  /** GSA_INITIAL_MESSAGE_ID, 0 when absent. */
  readonly initialMessageId: number;
  readonly lastMessageId?: number | undefined;
  /** Set once a successor arrived: silently deleted then (DTD). */
  readonly retireAt?: number | undefined;
  /** The KEK policy's traffic selectors: where its GSA_REKEY messages come from and go to. */
  readonly source?: TrafficSelector | undefined;
  readonly destination?: TrafficSelector | undefined;
}

export interface FollowedDataSecuritySa extends InstalledDataSecuritySa {
  /** Usable from then on: at once inbound, GWP_ATD after receipt outbound. */
  readonly activatesAt: number;
  readonly activated: boolean;
  /** Removed then (a Delete + DTD, or the replacement's activation outbound). */
  readonly deactivatesAt?: number | undefined;
  readonly softAt?: number | undefined;
  /** A newer SA for the same traffic arrived, or a Delete named this one. */
  readonly superseded: boolean;
}

export interface FollowerState {
  readonly status: 'following' | 'excluded';
  readonly groupId: Identity;
  readonly role: MemberRole;
  readonly mode: DataSecurityMode;
  readonly rekeySa?: FollowedRekeySa | undefined;
  /** Previous Rekey SAs kept for DTD: replays over them are still recognised as such. */
  readonly retiringRekeySas: readonly FollowedRekeySa[];
  readonly dataSecurity: readonly FollowedDataSecuritySa[];
  /** Multicast groups only. */
  readonly path?: WorkingKeyPath | undefined;
  readonly senderIds: readonly number[];
  readonly activationDelaySeconds?: number | undefined;
  readonly deactivationDelaySeconds?: number | undefined;
  /** GSA_NEXT_SPI values: `kek:<hex>` and `<protocol>:<hex>`. */
  readonly announcedSpis: readonly string[];
  /** Causes already reported as 'resync-needed' (reported once each). */
  readonly reported: readonly string[];
  /** Set when excluded: when to register again. */
  readonly reregisterAt?: number | undefined;
}

export type ResyncReason = 'missed-rekey' | 'soft-lifetime' | 'rekey-sa-expired' | 'rekey-sa-deleted' | 'no-sender-id';
export type FollowerRejection = RekeyRejection | 'not-applicable';

export type FollowerEvent =
  | { readonly type: 'tek-installed'; readonly at: number; readonly protocol: number; readonly spi: string; readonly direction: Direction; readonly activatesAt: number }
  | { readonly type: 'tek-activated'; readonly at: number; readonly protocol: number; readonly spi: string; readonly direction: Direction }
  | {
      readonly type: 'tek-retired';
      readonly at: number;
      readonly protocol: number;
      readonly spi: string;
      readonly direction: Direction;
      readonly cause: 'deleted' | 'expired';
    }
  | {
      readonly type: 'kek-updated';
      readonly at: number;
      readonly spi: string;
      readonly previous?: string | undefined;
      /** Key IDs that entered the Working Key Path. */
      readonly newKeyIds: readonly number[];
      readonly authKeyChanged: boolean;
    }
  | { readonly type: 'excluded'; readonly at: number; readonly cause: 'key-path' | 'delete'; readonly reregisterAt: number }
  | { readonly type: 'resync-needed'; readonly at: number; readonly reason: ResyncReason; readonly detail: string; readonly reregisterAt: number }
  | { readonly type: 'rejected'; readonly at: number; readonly reason: FollowerRejection; readonly detail: string };

export interface InbandRekeyResult {
  /** The GSA_INBAND_REKEY response's inner payloads: none, `HDR, SK{}` (Section 2.4.2). */
  readonly response: readonly Payload[];
  readonly events: readonly FollowerEvent[];
}

export interface FollowerFromRegistration {
  readonly groupId: Identity;
  readonly role: MemberRole;
  /** What `openRegistrationResponse` returned. */
  readonly material: GroupKeyMaterial;
  /** The registration response's inner payloads: the Member Key Bag's WRAP_KEYs and GSA_NEXT_SPIs are read from there. */
  readonly payloads: readonly Payload[];
  /** KWA and GSK_w of the registration IKE SA (the default KWK of the initial Working Key Path). */
  readonly unicastKwa: number;
  readonly gskW: Buffer;
  readonly now: number;
  readonly rng: RandomSource;
  readonly reassembly?: ReassemblyConfig | undefined;
}

class NotApplicable extends Error {}

interface Applied {
  readonly state: FollowerState;
  readonly events: FollowerEvent[];
}

const tekKey = (protocol: number, spi: Buffer): string => `${protocol}:${spi.toString('hex')}`;
const kekKey = (spi: Buffer): string => `kek:${spi.toString('hex')}`;

export class RekeyFollower {
  private current: FollowerState;
  private readonly rng: RandomSource;
  private readonly receiver: RekeyReceiver;
  private readonly ciphers = new Map<string, SkCipher>();

  constructor(state: FollowerState, rng: RandomSource, reassembly?: ReassemblyConfig) {
    this.current = state;
    this.rng = rng;
    this.receiver = new RekeyReceiver(reassembly);
  }

  /** The follower for a group just registered to (GSA_AUTH / GSA_REGISTRATION response). */
  static fromRegistration(input: FollowerFromRegistration): RekeyFollower {
    const { material, now, rng } = input;
    const table = buildGroupSaTable(input.groupId, input.role, material, now);
    const kd = input.payloads.find(isKdPayload);
    const kekPolicy = material.gsa.policies.find(isKekPolicy);
    let rekeySa: FollowedRekeySa | undefined;
    let path: WorkingKeyPath | undefined;
    const k = material.rekeySa;
    if (k) {
      rekeySa = {
        spi: k.spi,
        encryption: k.encryption,
        integrity: k.integrity,
        keyWrap: k.keyWrap,
        keys: k.keys,
        auth: registrationAuth(k.authentication, k.authKey?.publicKey, kekPolicy),
        installedAt: now,
        expiresAt: table.rekeySa?.expiresAt,
        softAt: table.rekeySa?.expiresAt === undefined ? undefined : softDeadline(now, table.rekeySa.expiresAt, rng),
        initialMessageId: k.initialMessageId,
        source: k.source,
        destination: k.destination,
      };
      // Section 3.3: a Key Path ending at GSK_w becomes the whole Working Key Path (registration).
      const wrapKeys = (kd?.keyBags ?? []).flatMap((b) => (b.kind === 'member' ? wrapKeysOf(b) : []));
      const outcome = new WorkingKeyPath(k.keyWrap).apply({ saKeys: [], wrapKeys }, { kwa: input.unicastKwa, key: input.gskW });
      path = outcome.status === 'updated' ? outcome.path : new WorkingKeyPath(k.keyWrap);
    }
    const dataSecurity = table.dataSecurity.map(
      (sa): FollowedDataSecuritySa => ({
        ...sa,
        activatesAt: now,
        activated: true,
        superseded: false,
        softAt: sa.expiresAt === undefined ? undefined : softDeadline(now, sa.expiresAt, rng),
      }),
    );
    const state: FollowerState = {
      status: 'following',
      groupId: input.groupId,
      role: input.role,
      mode: material.mode,
      rekeySa,
      retiringRekeySas: [],
      dataSecurity,
      path,
      senderIds: table.senderIds,
      activationDelaySeconds: material.activationDelaySeconds,
      deactivationDelaySeconds: material.deactivationDelaySeconds,
      announcedSpis: announcedIn(material.gsa),
      reported: [],
    };
    return new RekeyFollower(state, rng, input.reassembly);
  }

  get state(): FollowerState {
    return this.current;
  }

  /** Data-Security SAs usable at `now` in `direction` (outbound: activated and not deactivated). */
  usableSas(direction: Direction, now: number): FollowedDataSecuritySa[] {
    return this.current.dataSecurity.filter(
      (sa) => sa.direction === direction && sa.activatesAt <= now && (sa.deactivatesAt === undefined || sa.deactivatesAt > now) && (sa.expiresAt === undefined || sa.expiresAt > now),
    );
  }

  /** The SA a sender uses for `protocol` at `now`: the most recently activated one. */
  outboundSa(protocol: number, now: number): FollowedDataSecuritySa | undefined {
    const usable = this.usableSas('outbound', now).filter((sa) => sa.protocolId === protocol);
    return usable.sort((a, b) => b.activatesAt - a.activatesAt)[0];
  }

  /** A GSA_REKEY datagram (one IKE message or fragment) received on the KEK's multicast group. */
  onDatagram(data: Uint8Array, now: number): FollowerEvent[] {
    const s = this.current;
    const receipt = this.receiver.receive(data, (spi) => this.lookup(spi), now);
    if (receipt.status === 'incomplete') return [];
    if (receipt.status === 'rejected') {
      const events: FollowerEvent[] = [{ type: 'rejected', at: now, reason: receipt.reason, detail: receipt.detail }];
      if (receipt.reason === 'unknown-spi') events.push(...this.missedIfAnnounced(headerSpi(data), now));
      return events;
    }
    const over = [s.rekeySa, ...s.retiringRekeySas].find((sa) => sa?.spi.equals(receipt.spi));
    if (!over) return [{ type: 'rejected', at: now, reason: 'unknown-spi', detail: 'Rekey SA went away' }];
    return this.commit(now, () =>
      applyContent(s, { gsa: receipt.gsa, kd: receipt.kd, deletes: receipt.deletes }, { over, messageId: receipt.messageId, now, rng: this.rng }),
    );
  }

  /**
   * A GSA_INBAND_REKEY request's decrypted payloads (Section 2.4.2.2: as in
   * a registration). `unicast`: KWA and GSK_w of the IKE SA it came over.
   * The response is always empty; a request that cannot be applied is
   * reported as 'rejected' and changes nothing.
   */
  onInbandRekey(payloads: readonly Payload[], now: number, unicast: DefaultKwk): InbandRekeyResult {
    const violations = validateExchange(ExchangeType.GSA_INBAND_REKEY, payloads, { rekeyStyle: 'inband', groupSender: false, keyTree: false });
    if (violations[0]) return { response: [], events: [{ type: 'rejected', at: now, reason: 'malformed', detail: violations[0].message }] };
    const s = this.current;
    const content = {
      gsa: payloads.find(isGsaPayload),
      kd: payloads.find(isKdPayload),
      deletes: payloads.filter((p): p is DeletePayload => p.type === PayloadType.DELETE && 'spis' in p),
    };
    const events = this.commit(now, () => applyContent(s, content, { unicast, now, rng: this.rng }));
    return { response: [], events };
  }

  /**
   * The data plane saw a packet for an SPI it has no SA for: if the key
   * server announced it (GSA_NEXT_SPI), a rekey was lost (Section 4.4.2.2.3).
   */
  onUnknownDataSpi(protocol: number, spi: Buffer, now: number): FollowerEvent[] {
    if (this.current.dataSecurity.some((sa) => sa.protocolId === protocol && sa.spi.equals(spi))) return [];
    if (!this.current.announcedSpis.includes(tekKey(protocol, spi))) return [];
    return this.report(now, `missed:${tekKey(protocol, spi)}`, 'missed-rekey', `traffic on announced ${tekKey(protocol, spi)} that no rekey installed`);
  }

  /** When `tick` has something to do next. */
  nextDeadline(): number | undefined {
    const s = this.current;
    const times: number[] = [];
    const reported = new Set(s.reported);
    for (const sa of s.dataSecurity) {
      if (!sa.activated) times.push(sa.activatesAt);
      if (sa.deactivatesAt !== undefined) times.push(sa.deactivatesAt);
      if (sa.expiresAt !== undefined) times.push(sa.expiresAt);
      if (sa.softAt !== undefined && !sa.superseded && !reported.has(`soft:${tekKey(sa.protocolId, sa.spi)}`)) times.push(sa.softAt);
    }
    for (const k of s.retiringRekeySas) if (k.retireAt !== undefined) times.push(k.retireAt);
    const k = s.rekeySa;
    if (k?.expiresAt !== undefined) times.push(k.expiresAt);
    if (k?.softAt !== undefined && !reported.has(`soft:${kekKey(k.spi)}`)) times.push(k.softAt);
    return times.length > 0 ? Math.min(...times) : undefined;
  }

  /** Activations, retirements, expiries and soft lifetimes due at `now`. */
  tick(now: number): FollowerEvent[] {
    const s = this.current;
    const events: FollowerEvent[] = [];
    const reported = new Set(s.reported);
    const resync = (cause: string, reason: ResyncReason, detail: string): void => {
      if (reported.has(cause)) return;
      reported.add(cause);
      events.push({ type: 'resync-needed', at: now, reason, detail, reregisterAt: reason === 'soft-lifetime' ? now : retryTime(now, 0, this.rng) });
    };
    const dataSecurity: FollowedDataSecuritySa[] = [];
    for (const sa of s.dataSecurity) {
      const spi = sa.spi.toString('hex');
      const gone = (sa.deactivatesAt !== undefined && sa.deactivatesAt <= now) || (sa.expiresAt !== undefined && sa.expiresAt <= now);
      if (gone) {
        const cause = sa.deactivatesAt !== undefined && sa.deactivatesAt <= now ? 'deleted' : 'expired';
        events.push({ type: 'tek-retired', at: now, protocol: sa.protocolId, spi, direction: sa.direction, cause });
        continue;
      }
      let next = sa;
      if (!sa.activated && sa.activatesAt <= now) {
        next = { ...sa, activated: true };
        events.push({ type: 'tek-activated', at: now, protocol: sa.protocolId, spi, direction: sa.direction });
      }
      if (sa.softAt !== undefined && sa.softAt <= now && !sa.superseded) {
        resync(`soft:${tekKey(sa.protocolId, sa.spi)}`, 'soft-lifetime', `${tekKey(sa.protocolId, sa.spi)} near its end and not replaced`);
      }
      dataSecurity.push(next);
    }
    const retiring = s.retiringRekeySas.filter((k) => k.retireAt === undefined || k.retireAt > now);
    let rekeySa = s.rekeySa;
    if (rekeySa?.expiresAt !== undefined && rekeySa.expiresAt <= now) {
      resync(`expired:${kekKey(rekeySa.spi)}`, 'rekey-sa-expired', `Rekey SA ${rekeySa.spi.toString('hex')} expired without a successor`);
      rekeySa = undefined;
    } else if (rekeySa?.softAt !== undefined && rekeySa.softAt <= now) {
      resync(`soft:${kekKey(rekeySa.spi)}`, 'soft-lifetime', `Rekey SA ${rekeySa.spi.toString('hex')} near its end and not replaced`);
    }
    const changed =
      events.length > 0 || retiring.length !== s.retiringRekeySas.length || rekeySa !== s.rekeySa || dataSecurity.length !== s.dataSecurity.length;
    if (changed) this.current = { ...s, dataSecurity, retiringRekeySas: retiring, rekeySa, reported: [...reported] };
    return events;
  }

  // ------------------------------------------------------------ internals

  private commit(now: number, apply: () => Applied): FollowerEvent[] {
    try {
      const { state, events } = apply();
      this.current = state;
      return events;
    } catch (e) {
      if (e instanceof NotApplicable || e instanceof DecodeError) return [{ type: 'rejected', at: now, reason: 'not-applicable', detail: e.message }];
      throw e;
    }
  }

  private report(now: number, cause: string, reason: ResyncReason, detail: string): FollowerEvent[] {
    if (this.current.reported.includes(cause)) return [];
    this.current = { ...this.current, reported: [...this.current.reported, cause] };
    return [{ type: 'resync-needed', at: now, reason, detail, reregisterAt: retryTime(now, 0, this.rng) }];
  }

  private missedIfAnnounced(spi: Buffer | undefined, now: number): FollowerEvent[] {
    if (!spi || !this.current.announcedSpis.includes(kekKey(spi))) return [];
    return this.report(now, `missed:${kekKey(spi)}`, 'missed-rekey', `GSA_REKEY on announced Rekey SA ${spi.toString('hex')} that no rekey installed`);
  }

  private lookup(spi: Buffer): RekeySaReceiver | undefined {
    const s = this.current;
    const sa = [s.rekeySa, ...s.retiringRekeySas].find((k) => k?.spi.equals(spi));
    if (!sa) return undefined;
    return { spi: sa.spi, cipher: this.cipherFor(sa), auth: sa.auth, initialMessageId: sa.initialMessageId, lastMessageId: sa.lastMessageId };
  }

  private cipherFor(sa: FollowedRekeySa): SkCipher {
    const key = sa.spi.toString('hex');
    let cipher = this.ciphers.get(key);
    if (!cipher) {
      cipher = createSkCipher({ encr: sa.encryption.id, encrKeyBits: sa.encryption.keyBits, integ: sa.integrity }, rekeySaSkKeys(sa.keys));
      const s = this.current;
      const live = new Set([s.rekeySa, ...s.retiringRekeySas].flatMap((k) => (k ? [k.spi.toString('hex')] : [])));
      for (const k of this.ciphers.keys()) if (!live.has(k)) this.ciphers.delete(k);
      this.ciphers.set(key, cipher);
    }
    return cipher;
  }
}

function headerSpi(data: Uint8Array): Buffer | undefined {
  try {
    const h = decodeHeader(Buffer.from(data));
    return Buffer.concat([h.spiI, h.spiR]);
  } catch {
    return undefined;
  }
}

function registrationAuth(gcauth: number, publicKey: KeyObject | undefined, kek: SaPolicy | undefined): RekeyAuthentication {
  if (gcauth !== GcauthId.DIGITAL_SIGNATURE) return { kind: 'implicit' };
  const t = kek?.transforms.find((x) => x.type === TransformType.GCAUTH);
  const attr = t?.attributes.find((a) => a.type === TransformAttr.SIGNATURE_ALGORITHM_IDENTIFIER);
  if (!publicKey || !attr || attr.format !== 'TLV') throw new RangeError('Digital Signature rekeys without AUTH_KEY or AlgorithmIdentifier');
  return { kind: 'signature', publicKey, algorithmIdentifier: Buffer.from(attr.value) };
}

function announcedIn(gsa: GsaPayload | undefined): string[] {
  const out: string[] = [];
  for (const p of gsa?.policies ?? []) {
    if (p.kind !== 'sa') continue;
    for (const spi of nextSpis(p)) out.push(p.protocol === ProtocolId.GIKE_UPDATE ? kekKey(spi) : tekKey(p.protocol, spi));
  }
  return out;
}

interface Content {
  readonly gsa: GsaPayload | undefined;
  readonly kd: KdPayload | undefined;
  readonly deletes: readonly DeletePayload[];
}

interface ApplyContext {
  /** Multicast: the Rekey SA the message came over. */
  readonly over?: FollowedRekeySa | undefined;
  readonly messageId?: number | undefined;
  /** Inband: the IKE SA's default KWK. */
  readonly unicast?: DefaultKwk | undefined;
  readonly now: number;
  readonly rng: RandomSource;
}

/** Applies one accepted message to a state, producing the next state; throws NotApplicable and changes nothing. */
function applyContent(s: FollowerState, content: Content, ctx: ApplyContext): Applied {
  const { now, over } = ctx;
  const events: FollowerEvent[] = [];
  const defaultKwk: DefaultKwk | undefined = over ? { kwa: over.keyWrap, key: over.keys.gskW } : ctx.unicast;
  if (!defaultKwk) throw new NotApplicable('no default KWK');
  const gsa = content.gsa;
  const kd = content.kd;
  const gw = gsa?.policies.find((p) => p.kind === 'group-wide');
  const atd = gw && gw.kind === 'group-wide' ? (activationTimeDelay(gw) ?? s.activationDelaySeconds) : s.activationDelaySeconds;
  const dtd = gw && gw.kind === 'group-wide' ? (deactivationTimeDelay(gw) ?? s.deactivationDelaySeconds) : s.deactivationDelaySeconds;
  const atdMs = (atd ?? 0) * 1000;
  const dtdMs = (dtd ?? 0) * 1000;

  // AUTH_KEY rollover: verified with the current key, used from now on.
  const authSpki = kd?.keyBags.flatMap((b) => (b.kind === 'member' ? [authKeyOf(b)] : [])).find((x) => x !== undefined);
  let auth = over?.auth;
  if (authSpki && over) auth = rolledAuth(over.auth, authSpki);

  // Key hierarchy (Section 3.3).
  let path = s.path;
  let saKeymat: Buffer | undefined;
  let newKeyIds: readonly number[] = [];
  if (over && kd && path) {
    const outcome = path.apply(keyDownloadFrom(kd), defaultKwk);
    if (outcome.status === 'excluded') return excluded(s, now, 'key-path', ctx.rng);
    path = outcome.path;
    saKeymat = outcome.saKeymat;
    newKeyIds = outcome.newKeyIds;
  }

  let rekeySa = s.rekeySa;
  let retiring = [...s.retiringRekeySas];
  const kekPolicy = gsa?.policies.find(isKekPolicy);
  const record = (sa: FollowedRekeySa): FollowedRekeySa =>
    over && sa.spi.equals(over.spi) ? { ...sa, lastMessageId: ctx.messageId, auth: auth ?? sa.auth } : auth && sa === rekeySa ? { ...sa, auth } : sa;
  if (rekeySa) rekeySa = record(rekeySa);
  retiring = retiring.map(record);
  if (kekPolicy) {
    if (!over || !rekeySa) throw new NotApplicable('a new Rekey SA outside GSA_REKEY');
    if (!saKeymat) throw new NotApplicable(`no keys for the new Rekey SA ${kekPolicy.spi.toString('hex')}`);
    if ([rekeySa, ...retiring].some((k) => k.spi.equals(kekPolicy.spi))) throw new NotApplicable('the new Rekey SA reuses a known SPI');
    const next = newRekeySa(kekPolicy, saKeymat, auth ?? rekeySa.auth, now, ctx.rng);
    retiring = [...retiring, { ...rekeySa, retireAt: now + dtdMs }];
    events.push({
      type: 'kek-updated',
      at: now,
      spi: next.spi.toString('hex'),
      previous: rekeySa.spi.toString('hex'),
      newKeyIds,
      authKeyChanged: authSpki !== undefined,
    });
    rekeySa = next;
  } else if (saKeymat) {
    throw new NotApplicable('Rekey SA keys without a GIKE_UPDATE policy');
  } else if (authSpki && rekeySa) {
    events.push({ type: 'kek-updated', at: now, spi: rekeySa.spi.toString('hex'), newKeyIds, authKeyChanged: true });
  }

  // New Data-Security SAs, wrapped with the default KWK of the SA the message came over (Section 3.3).
  const before = s.dataSecurity;
  let dataSecurity: FollowedDataSecuritySa[] = [...before];
  const installedNow: FollowedDataSecuritySa[] = [];
  const reported = new Set(s.reported);
  for (const p of gsa?.policies.filter(isTekPolicy) ?? []) {
    if (before.some((sa) => sa.protocolId === p.protocol && sa.spi.equals(p.spi))) continue; // registered after it was sent
    if (s.role !== 'receiver' && s.senderIds.length === 0 && usesCounterMode(p.transforms)) {
      // Section 2.4.1.4: a sender without a Sender-ID MUST NOT install it and MUST re-register.
      const cause = `no-sender-id:${tekKey(p.protocol, p.spi)}`;
      if (!reported.has(cause)) {
        reported.add(cause);
        events.push({ type: 'resync-needed', at: now, reason: 'no-sender-id', detail: `counter-mode ${tekKey(p.protocol, p.spi)} and no Sender-ID`, reregisterAt: retryTime(now, 0, ctx.rng) });
      }
      continue;
    }
    const material = openTek(p, kd, defaultKwk);
    const expiresAt = material.lifetimeSeconds === undefined ? undefined : now + material.lifetimeSeconds * 1000;
    dataSecurity = dataSecurity.map((sa) => (sameTraffic(sa, material) ? { ...sa, superseded: true } : sa));
    for (const direction of directionsFor(s.role)) {
      const activatesAt = direction === 'outbound' ? now + atdMs : now;
      const sa: FollowedDataSecuritySa = {
        ...material,
        direction,
        mode: s.mode,
        installedAt: now,
        expiresAt,
        activatesAt,
        activated: activatesAt <= now,
        superseded: false,
        softAt: expiresAt === undefined ? undefined : softDeadline(now, expiresAt, ctx.rng),
      };
      installedNow.push(sa);
      const spi = p.spi.toString('hex');
      events.push({ type: 'tek-installed', at: now, protocol: p.protocol, spi, direction, activatesAt });
      if (sa.activated) events.push({ type: 'tek-activated', at: now, protocol: p.protocol, spi, direction });
    }
  }

  // Deletes apply to the SAs held before this message (Section 2.4.3).
  let excludedByDelete = false;
  for (const d of content.deletes) {
    if (d.protocolId === ProtocolId.GIKE_UPDATE) {
      for (const spi of d.spis) {
        if (spi.every((b) => b === 0)) excludedByDelete = true;
        else if (rekeySa && spi.equals(rekeySa.spi) && !kekPolicy) {
          reported.add(`deleted:${kekKey(spi)}`);
          events.push({ type: 'resync-needed', at: now, reason: 'rekey-sa-deleted', detail: `Rekey SA ${spi.toString('hex')} deleted`, reregisterAt: retryTime(now, 0, ctx.rng) });
          retiring = [...retiring, { ...rekeySa, retireAt: now }];
          rekeySa = undefined;
        } else retiring = retiring.map((k) => (k.spi.equals(spi) ? { ...k, retireAt: now } : k));
      }
      continue;
    }
    if (d.protocolId !== ProtocolId.ESP && d.protocolId !== ProtocolId.AH) continue;
    const all = d.spis.some((spi) => spi.every((b) => b === 0));
    // `dataSecurity` holds only what was there before; this message's SAs are in `installedNow`.
    const named = (sa: FollowedDataSecuritySa): boolean => sa.protocolId === d.protocolId && (all || d.spis.some((x) => x.equals(sa.spi)));
    const replacementActive = Math.max(now, ...installedNow.filter((n) => n.direction === 'outbound' && n.protocolId === d.protocolId).map((n) => n.activatesAt));
    dataSecurity = dataSecurity.map((sa) => {
      if (!named(sa)) return sa;
      const at = sa.direction === 'inbound' ? now + dtdMs : replacementActive;
      return { ...sa, superseded: true, deactivatesAt: Math.min(sa.deactivatesAt ?? Infinity, at) };
    });
  }

  const arrived = new Set([...(kekPolicy ? [kekKey(kekPolicy.spi)] : []), ...installedNow.map((sa) => tekKey(sa.protocolId, sa.spi))]);
  const next: FollowerState = {
    ...s,
    rekeySa,
    retiringRekeySas: retiring,
    dataSecurity: [...dataSecurity, ...installedNow],
    path,
    activationDelaySeconds: atd,
    deactivationDelaySeconds: dtd,
    // An announced SPI that arrived in a rekey is no sign of a lost one any more (e.g. a late copy after its DTD).
    announcedSpis: gsa ? [...new Set([...s.announcedSpis, ...announcedIn(gsa)])].filter((x) => !arrived.has(x)) : s.announcedSpis,
    reported: [...reported],
  };
  if (excludedByDelete) {
    const out = excluded(next, now, 'delete', ctx.rng);
    return { state: out.state, events: [...events, ...out.events] };
  }
  return { state: next, events };
}

/** Exclusion: the Rekey SA cannot be followed any more; Data-Security SAs run out on their own. */
function excluded(s: FollowerState, now: number, cause: 'key-path' | 'delete', rng: RandomSource): Applied {
  const reregisterAt = excludedReregistrationTime(now, rng);
  return {
    state: { ...s, status: 'excluded', rekeySa: undefined, retiringRekeySas: [], path: undefined, reregisterAt },
    events: [{ type: 'excluded', at: now, cause, reregisterAt }],
  };
}

function rolledAuth(current: RekeyAuthentication, spki: Buffer): RekeyAuthentication {
  if (current.kind !== 'signature') throw new NotApplicable('AUTH_KEY with implicit rekey authentication (Section 2.4.1: MUST NOT)');
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch {
    throw new NotApplicable('AUTH_KEY is not a SubjectPublicKeyInfo');
  }
  if (!keyFitsAlgorithm(parseAlgorithmIdentifier(current.algorithmIdentifier), publicKey)) {
    throw new NotApplicable('the new AUTH_KEY does not fit the GCAUTH signature algorithm');
  }
  return { ...current, publicKey };
}

function newRekeySa(p: SaPolicy, keymat: Buffer, auth: RekeyAuthentication, now: number, rng: RandomSource): FollowedRekeySa {
  const encrT = p.transforms.find((t) => t.type === TransformType.ENCR);
  const kwa = p.transforms.find((t) => t.type === TransformType.KWA)?.id;
  if (!encrT || kwa === undefined) throw new NotApplicable('GIKE_UPDATE policy without ENCR or KWA');
  const encryption = encrOfTransform(encrT);
  const integrity = p.transforms.find((t) => t.type === TransformType.INTEG)?.id ?? IntegId.NONE;
  let keys: RekeySaKeys;
  try {
    keys = splitRekeySaKeys(keymat, rekeySaAlgorithms(encryption, integrity, kwa));
  } catch (e) {
    throw new NotApplicable(`new Rekey SA: ${e instanceof Error ? e.message : String(e)}`);
  }
  const lifetime = keyLifetimeSeconds(p);
  const expiresAt = lifetime === undefined ? undefined : now + lifetime * 1000;
  return {
    spi: Buffer.from(p.spi),
    encryption,
    integrity,
    keyWrap: kwa,
    keys,
    auth,
    installedAt: now,
    expiresAt,
    softAt: expiresAt === undefined ? undefined : softDeadline(now, expiresAt, rng),
    // Section 2.4.1.3: the first message over a new Rekey SA has Message ID 0.
    initialMessageId: initialMessageId(p) ?? 0,
    source: p.source,
    destination: p.destination,
  };
}

/** One TEK's keys: its group key bag's SA_KEY under the default KWK (Section 3.3). */
function openTek(p: SaPolicy, kd: KdPayload | undefined, kwk: DefaultKwk): DataSecuritySaMaterial {
  const label = tekKey(p.protocol, p.spi);
  const bag = kd?.keyBags.find((b) => b.kind === 'group' && b.protocol === p.protocol && b.spi.equals(p.spi));
  if (!bag || bag.kind !== 'group') throw new NotApplicable(`no key bag for ${label}`);
  const wrapped = saKeysOf(bag).find((k) => k.kwkId === DEFAULT_KWK_ID);
  if (!wrapped) throw new NotApplicable(`no SA_KEY under the default KWK for ${label}`);
  let keymat: Buffer;
  try {
    keymat = unwrapKey(kwk.kwa, kwk.key, wrapped.encryptedKey);
  } catch (e) {
    if (e instanceof KeyUnwrapError || e instanceof KeyWrapError) throw new NotApplicable(`cannot unwrap ${label}`);
    throw e;
  }
  const encrT = p.transforms.find((t) => t.type === TransformType.ENCR);
  const encryption = encrT ? encrOfTransform(encrT) : undefined;
  const integrity = p.transforms.find((t) => t.type === TransformType.INTEG)?.id ?? IntegId.NONE;
  try {
    return {
      protocolId: p.protocol,
      spi: Buffer.from(p.spi),
      source: p.source,
      destination: p.destination,
      encryption,
      integrity,
      sequenceNumbers: p.transforms.find((t) => t.type === TransformType.SN)?.id ?? SnId.UNSPECIFIED32,
      keys: splitDataSecurityKeymat(keymat, { encryption, integrity }),
      lifetimeSeconds: keyLifetimeSeconds(p),
    };
  } catch (e) {
    throw new NotApplicable(`${label}: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    keymat.fill(0);
  }
}

/** Same protocol and traffic selectors: the new SA replaces the old one for the data plane. */
function sameTraffic(a: DataSecuritySaMaterial, b: DataSecuritySaMaterial): boolean {
  return a.protocolId === b.protocolId && JSON.stringify(a.source) === JSON.stringify(b.source) && JSON.stringify(a.destination) === JSON.stringify(b.destination);
}
