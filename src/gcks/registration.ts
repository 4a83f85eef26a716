/**
 * The GCKS side of registration (RFC 9838 Sections 2.3.1, 2.3.2, 2.3.4):
 * given an authenticated member and its request, either the GSA + KD (+
 * USE_TRANSPORT_MODE) to answer with, or the one error notify Section 2.3.1
 * shows; and leaving a group. Sans-I/O: the IKE engine's GSA_AUTH /
 * GSA_REGISTRATION task calls these with the decrypted payloads and sends
 * what they return.
 *
 * Checks (`checkRegistration`) run in this order, so the notify names the
 * first thing wrong:
 *   unknown IDg                        -> INVALID_GROUP_ID
 *   not allowed to join / to send      -> AUTHORIZATION_FAILED
 *   SAg cannot carry the group policy  -> NO_PROPOSAL_CHOSEN
 *   registration KWK weaker than keys  -> NO_PROPOSAL_CHOSEN
 *   group full, Sender-IDs used up     -> REGISTRATION_FAILED
 */
import { kwaKeyLength } from '../crypto/keywrap.ts';
import { formatIdentity } from '../ike/identity.ts';
import { ExchangeType, NotifyType, nameOf, PayloadType } from '../wire/iana.ts';
import type { Payload } from '../wire/payload.ts';
import { makeNotify } from '../wire/payloads/notify.ts';
import type { Proposal } from '../wire/payloads/sa.ts';
import { assertValid, validateExchange } from '../wire/validator.ts';
import { authorizeJoin, authorizeSender, type AuthenticatedMember } from './authorize.ts';
import type { Identity } from './config-identities.ts';
import { cipherKeyOctets, type GroupConfig } from './config.ts';
import type { CounterReservation } from './counters.ts';
import { Group, identityKey, type MemberRecord } from './group.ts';
import type { RekeySigningKey } from './signing-key.ts';
import type { RandomSource } from '../crypto/random.ts';
import { buildGroupSecurityAssociation, buildKeyDownload } from './key-download.ts';
import { evaluateSag } from './sag-evaluation.ts';

export type RegistrationExchange = typeof ExchangeType.GSA_AUTH | typeof ExchangeType.GSA_REGISTRATION;

export interface RegistrationRequest {
  readonly member: AuthenticatedMember;
  /** IDg. */
  readonly groupId: Identity;
  /** SAg proposals, when the member sent an SAg. */
  readonly sag?: readonly Proposal[] | undefined;
  /** N(GROUP_SENDER) count; undefined when the member did not send the notify. */
  readonly groupSender?: number | undefined;
  /** Key Wrap Algorithm of the registration IKE SA and its GSK_w (Section 3.1.1). */
  readonly unicastKwa: number;
  readonly gskW: Buffer;
  readonly exchange: RegistrationExchange;
  readonly now: number;
}

/** The audit trail. Never carries key material. */
export type GcksEvent =
  | {
      readonly type: 'member-registered';
      readonly at: number;
      readonly group: string;
      readonly member: string;
      readonly exchange: string;
      /** Which authorization rule admitted the member. */
      readonly rule: string;
      readonly sender: boolean;
      readonly senderIds: readonly number[];
      /** The member was registered already (its old Sender-IDs are abandoned, not reused). */
      readonly reregistration: boolean;
    }
  | {
      readonly type: 'registration-rejected';
      readonly at: number;
      /** Undefined when the IDg named no group. */
      readonly group: string | undefined;
      readonly member: string;
      readonly notify: string;
      readonly reason: string;
    }
  | { readonly type: 'member-left'; readonly at: number; readonly group: string; readonly member: string; readonly notify: string; readonly wasMember: boolean }
  /** The Sender-ID space of the current TEKs is used up: exclude every member and replace the TEKs (Section 2.5.1). */
  | { readonly type: 'sender-ids-exhausted'; readonly at: number; readonly group: string };

export type RegistrationOutcome =
  | {
      readonly kind: 'registered';
      /** GSA, KD and, in transport mode, N(USE_TRANSPORT_MODE): the payloads after IDr/CERT/AUTH. */
      readonly payloads: readonly Payload[];
      readonly member: MemberRecord;
      readonly events: readonly GcksEvent[];
    }
  | {
      readonly kind: 'rejected';
      /** NotifyType value. */
      readonly notify: number;
      readonly reason: string;
      /** The single error notify (Protocol ID 0, SPI Size 0, no data: Section 4.7). */
      readonly payloads: readonly Payload[];
      readonly events: readonly GcksEvent[];
    };

export type RejectedRegistration = Extract<RegistrationOutcome, { readonly kind: 'rejected' }>;

/** Groups by IDg. */
export class GroupDirectory {
  private readonly byId = new Map<string, Group>();

  constructor(groups: Iterable<Group> = []) {
    for (const g of groups) this.add(g);
  }

  add(group: Group): void {
    this.byId.set(identityKey(group.config.id), group);
  }

  find(groupId: Identity): Group | undefined {
    return this.byId.get(identityKey(groupId));
  }

  get groups(): Iterable<Group> {
    return this.byId.values();
  }
}

function reject(
  request: { readonly member: AuthenticatedMember; readonly now: number },
  group: Group | undefined,
  notify: number,
  reason: string,
  extra: readonly GcksEvent[] = [],
): RejectedRegistration {
  const notifyName = nameOf(NotifyType, notify);
  return {
    kind: 'rejected',
    notify,
    reason,
    payloads: [makeNotify(notify)],
    events: [
      ...extra,
      { type: 'registration-rejected', at: request.now, group: group?.name, member: formatIdentity(request.member.id), notify: notifyName, reason },
    ],
  };
}

/** What the registration checks found, for `completeRegistration` to go on with. */
export interface AdmissibleRegistration {
  readonly kind: 'admissible';
  readonly group: Group;
  /** Which authorization rule admits the member. */
  readonly rule: string;
  /** The member sent N(GROUP_SENDER) and may send. */
  readonly sender: boolean;
  /** A sender in a counter-mode group: Sender-IDs are allocated when the registration completes. */
  readonly needsSenderIds: boolean;
  /** The member is registered already. */
  readonly reregistration: boolean;
}

export type RegistrationCheckRequest = Pick<RegistrationRequest, 'member' | 'groupId' | 'sag' | 'groupSender' | 'unicastKwa' | 'now'>;

/**
 * Every reason registration can refuse, checked without allocating
 * anything (no Sender-ID, no member record; only expired SAs are replaced,
 * as any registration does first). `registerMember` runs exactly these
 * checks, so a caller that acts on an admissible answer before completing
 * the registration (the key server places the member in its LKH key tree)
 * acts only for members registration accepts.
 */
export function checkRegistration(directory: GroupDirectory, request: RegistrationCheckRequest): AdmissibleRegistration | RejectedRegistration {
  const { member, now } = request;
  const group = directory.find(request.groupId);
  if (!group) return reject(request, undefined, NotifyType.INVALID_GROUP_ID, `no group with ID ${formatIdentity(request.groupId)}`);

  const join = authorizeJoin(group.config.members, member);
  if (!join.allowed) return reject(request, group, NotifyType.AUTHORIZATION_FAILED, join.reason);
  const wantsToSend = request.groupSender !== undefined;
  if (wantsToSend) {
    // Reading: asking to send without being allowed to is refused outright
    // rather than silently registering a receiver that believes it may send.
    const send = authorizeSender(group.config.senders, member);
    if (!send.allowed) return reject(request, group, NotifyType.AUTHORIZATION_FAILED, send.reason);
  }

  group.replaceExpired(now);
  if (request.sag) {
    const verdict = evaluateSag(request.sag, group);
    if (!verdict.acceptable) return reject(request, group, NotifyType.NO_PROPOSAL_CHOSEN, `SAg: ${verdict.reason}`);
  }
  const weak = weakUnicastKeyWrap(group, request.unicastKwa);
  if (weak) return reject(request, group, NotifyType.NO_PROPOSAL_CHOSEN, weak);

  const previous = group.member(member.id);
  if (!previous && group.isFull) {
    return reject(request, group, NotifyType.REGISTRATION_FAILED, `group is full (capacity ${group.config.capacity})`);
  }

  const needsSenderIds = wantsToSend && group.usesCounterMode;
  // The allocator hands out at least one Sender-ID unless its space is used
  // up (maxSenderIdsPerMember is at least 1), so looking is enough.
  if (needsSenderIds && group.senderIds.exhausted) {
    return reject(request, group, NotifyType.REGISTRATION_FAILED, 'no Sender-ID left under the current TEKs', [
      { type: 'sender-ids-exhausted', at: now, group: group.name },
    ]);
  }
  return { kind: 'admissible', group, rule: join.rule, sender: wantsToSend, needsSenderIds, reregistration: previous !== undefined };
}

/** Admits a member to a group and builds its keys, or says why not. */
export function registerMember(directory: GroupDirectory, request: RegistrationRequest): RegistrationOutcome {
  const checked = checkRegistration(directory, request);
  return checked.kind === 'rejected' ? checked : completeRegistration(checked, request);
}

/**
 * The part of `registerMember` after `checkRegistration` said yes (for the
 * same request): allocates the Sender-IDs, records the member and builds
 * its GSA and KD. It does not refuse.
 */
export function completeRegistration(admissible: AdmissibleRegistration, request: RegistrationRequest): Extract<RegistrationOutcome, { readonly kind: 'registered' }> {
  const { member, now } = request;
  const { group, sender: wantsToSend, needsSenderIds } = admissible;
  const events: GcksEvent[] = [];
  let senderIds: readonly number[] = [];
  if (needsSenderIds) {
    const allocation = group.senderIds.allocateSenderIds(request.groupSender ?? 1, group.config.maxSenderIdsPerMember);
    // The last ones: every member goes before more are handed out (Section 2.5.1); this one is registered first.
    if (allocation.exhausted) events.push({ type: 'sender-ids-exhausted', at: now, group: group.name });
    if (allocation.senderIds.length === 0) {
      throw new Error(`group ${group.name}: no Sender-ID allocated although the registration checks found some left (maxSenderIdsPerMember ${group.config.maxSenderIdsPerMember})`);
    }
    senderIds = allocation.senderIds;
  }

  const gsa = buildGroupSecurityAssociation(group, now, { senderIdBits: needsSenderIds });
  const kd = buildKeyDownload(group, { unicastKwa: request.unicastKwa, gskW: request.gskW, senderIds });
  const payloads: Payload[] = [gsa, kd];
  if (group.config.mode === 'transport') payloads.push(makeNotify(NotifyType.USE_TRANSPORT_MODE));
  // Never emit what the Section 5 validator rejects: a failure here is a bug, not a member's fault.
  assertValid(
    validateExchange(request.exchange, payloads, {
      rekeyStyle: group.rekeySa ? 'multicast' : 'inband',
      groupSender: wantsToSend,
      keyTree: false,
      senderIdsRequested: request.groupSender,
    }),
  );

  const record: MemberRecord = { id: member.id, registeredAt: now, sender: wantsToSend, senderIds };
  group.putMember(record);
  events.push({
    type: 'member-registered',
    at: now,
    group: group.name,
    member: formatIdentity(member.id),
    exchange: nameOf(ExchangeType, request.exchange),
    rule: admissible.rule,
    sender: wantsToSend,
    senderIds,
    reregistration: admissible.reregistration,
  });
  return { kind: 'registered', payloads, member: record, events };
}

/**
 * Section 3.1: a KWK SHOULD NOT be shorter than the keys it protects. The
 * registration IKE SA's GSK_w wraps every group key, so a member whose IKE
 * SA negotiated a shorter one is refused (reading: NO_PROPOSAL_CHOSEN, the
 * member's algorithms cannot carry the group policy).
 */
function weakUnicastKeyWrap(group: Group, kwa: number): string | undefined {
  const kwk = kwaKeyLength(kwa);
  const keys = group.dataSecuritySas.flatMap((t) => (t.policy.encryption ? [cipherKeyOctets(t.policy.encryption)] : []));
  if (group.rekeySa) keys.push(cipherKeyOctets(group.rekeySa.policy.encryption), group.rekeySa.keys.gskW.length);
  const longest = Math.max(0, ...keys);
  return longest > kwk ? `the IKE SA's ${kwk * 8}-bit key wrap key is shorter than the group's ${longest * 8}-bit keys` : undefined;
}

export interface LeaveRequest {
  readonly member: AuthenticatedMember;
  readonly groupId: Identity;
  /** NO_PROPOSAL_CHOSEN or REGISTRATION_FAILED, as the member sent it. */
  readonly notify: number;
  readonly now: number;
}

/**
 * Section 2.3.2: IDg + N(NO_PROPOSAL_CHOSEN or REGISTRATION_FAILED) from a
 * member -> remove it from the group; the response is empty either way
 * (also for an unknown group or a non-member: there is nothing to refuse).
 */
export function leaveGroup(directory: GroupDirectory, request: LeaveRequest): { readonly payloads: readonly Payload[]; readonly events: readonly GcksEvent[] } {
  const group = directory.find(request.groupId);
  if (!group) return { payloads: [], events: [] };
  const wasMember = group.removeMember(request.member.id);
  return {
    payloads: [],
    events: [
      {
        type: 'member-left',
        at: request.now,
        group: group.name,
        member: formatIdentity(request.member.id),
        notify: nameOf(NotifyType, request.notify),
        wasMember,
      },
    ],
  };
}

export type ParsedRegistrationRequest =
  | { readonly kind: 'register'; readonly groupId: Identity; readonly sag: readonly Proposal[] | undefined; readonly groupSender: number | undefined }
  | { readonly kind: 'leave'; readonly groupId: Identity; readonly notify: number }
  /** No IDg: the caller answers INVALID_SYNTAX (RFC 7296 2.21.2). */
  | { readonly kind: 'malformed'; readonly reason: string };

const LEAVE_NOTIFIES: readonly number[] = [NotifyType.NO_PROPOSAL_CHOSEN, NotifyType.REGISTRATION_FAILED];

/** Reads IDg / SAg / N(GROUP_SENDER) / a leave notify out of a decrypted request. */
export function parseRegistrationRequest(payloads: readonly Payload[]): ParsedRegistrationRequest {
  const idgs = payloads.flatMap((p) => (p.type === PayloadType.IDg && 'idType' in p ? [p] : []));
  const idg = idgs[0];
  if (!idg) return { kind: 'malformed', reason: 'no IDg payload' };
  if (idgs.length > 1) return { kind: 'malformed', reason: 'more than one IDg payload' };
  const groupId: Identity = { idType: idg.idType, data: idg.data };
  const notifies = payloads.flatMap((p) => (p.type === PayloadType.NOTIFY && 'notifyType' in p ? [p] : []));
  const leave = notifies.find((n) => LEAVE_NOTIFIES.includes(n.notifyType));
  if (leave) return { kind: 'leave', groupId, notify: leave.notifyType };
  const sag = payloads.find((p) => p.type === PayloadType.SA && 'proposals' in p);
  const sender = notifies.find((n) => n.notifyType === NotifyType.GROUP_SENDER);
  const groupSender = sender ? (sender.data.kind === 'sender-id-count' ? sender.data.count : 1) : undefined;
  return { kind: 'register', groupId, sag: sag && 'proposals' in sag ? sag.proposals : undefined, groupSender };
}

/** One runtime Group per configured group; `signingKeyFor` supplies loaded signing keys by group name. */
export function createGroupDirectory(
  groups: readonly GroupConfig[],
  deps: { readonly counters: CounterReservation; readonly rng: RandomSource; readonly signingKeyFor?: (groupName: string) => RekeySigningKey | undefined },
  now: number,
): GroupDirectory {
  return new GroupDirectory(groups.map((config) => new Group(config, { counters: deps.counters, rng: deps.rng, signingKey: deps.signingKeyFor?.(config.name) }, now)));
}
