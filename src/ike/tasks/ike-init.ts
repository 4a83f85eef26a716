/**
 * IKE_SA_INIT core (RFC 7296 Section 1.2): SA, KE and Nonce payloads,
 * proposal selection, the shared secret and the SA's keys. Also the
 * initiator's side of the two "try again" answers: N(COOKIE) (Section 2.6:
 * resend with the cookie as the first payload, all else unchanged) and
 * N(INVALID_KE_PAYLOAD) (Section 1.2: resend with the KE method the
 * responder named, if we offered it). The responder announces childless
 * IKE_AUTH support (RFC 6023) here too.
 */
import { createKeyExchange, KeyExchangeError } from '../../crypto/ke.ts';
import { KeId, NotifyType, PayloadType, nameOf } from '../../wire/iana.ts';
import { findNotify, findPayload, findPayloads, type Payload } from '../../wire/payload.ts';
import { isErrorNotify, makeNotify } from '../../wire/payloads/notify.ts';
import type { Proposal } from '../../wire/payloads/sa.ts';
import type { IkeSa } from '../ike-sa.ts';
import { deriveInitialKeys } from '../keying.ts';
import { acceptedProposal, checkAcceptedProposal, offerProposals, selectProposal } from '../proposal.ts';
import { fail, OK, type ReceivedMessage, type Task, type TaskEnv, type TaskOutcome } from './task.ts';

/** How often the initiator follows a COOKIE / INVALID_KE_PAYLOAD answer before giving up. */
const MAX_COOKIE_RETRIES = 3;
const MAX_KE_RETRIES = 2;

export class IkeInitTask implements Task {
  readonly name = 'ike-init';
  private offered: Proposal[] = [];
  private keId: number | undefined;
  private cookie: Buffer | undefined;
  private cookieRetries = 0;
  private keRetries = 0;
  /** Responder: the proposal number chosen. */
  private chosenNum = 0;

  constructor(private readonly role: 'initiator' | 'responder') {}

  build(sa: IkeSa, env: TaskEnv, out: Payload[]): void {
    if (this.role === 'initiator') return this.buildRequest(sa, env, out);
    const t = sa.transforms!;
    out.push({ type: PayloadType.SA, critical: false, proposals: [acceptedProposal(this.chosenNum, t)] });
    out.push({ type: PayloadType.KE, critical: false, group: t.ke, data: sa.keyExchange!.publicValue });
    out.push({ type: PayloadType.NONCE, critical: false, nonce: sa.nonceR! });
    if (env.config.announceChildless) out.push(makeNotify(NotifyType.CHILDLESS_IKEV2_SUPPORTED));
  }

  private buildRequest(sa: IkeSa, env: TaskEnv, out: Payload[]): void {
    sa.nonceI ??= env.rng.bytes(env.config.nonceLength);
    this.offered = offerProposals(env.config.proposals);
    const keId = this.keId ?? env.config.proposals[0]!.ke[0]!;
    if (!sa.keyExchange || sa.keyExchange.id !== keId) sa.keyExchange = createKeyExchange(keId);
    // RFC 7296 2.6: the cookie goes first, everything else as before.
    if (this.cookie) out.push(makeNotify(NotifyType.COOKIE, { kind: 'cookie', cookie: this.cookie }));
    out.push({ type: PayloadType.SA, critical: false, proposals: this.offered });
    out.push({ type: PayloadType.KE, critical: false, group: keId, data: sa.keyExchange.publicValue });
    out.push({ type: PayloadType.NONCE, critical: false, nonce: sa.nonceI });
  }

  process(sa: IkeSa, env: TaskEnv, msg: ReceivedMessage): TaskOutcome {
    return this.role === 'initiator' ? this.processResponse(sa, env, msg) : this.processRequest(sa, env, msg);
  }

  private processRequest(sa: IkeSa, env: TaskEnv, msg: ReceivedMessage): TaskOutcome {
    const saP = findPayload(msg.payloads, PayloadType.SA);
    const keP = findPayload(msg.payloads, PayloadType.KE);
    const nonceP = findPayload(msg.payloads, PayloadType.NONCE);
    if (!saP || !keP || !nonceP) return fail(NotifyType.INVALID_SYNTAX, 'IKE_SA_INIT request lacks SA, KE or Ni');
    const chosen = selectProposal(saP.proposals, env.config.proposals, 0, keP.group);
    if (!chosen) return fail(NotifyType.NO_PROPOSAL_CHOSEN, 'no acceptable IKE proposal');
    if (keP.group !== chosen.transforms.ke) {
      return fail(NotifyType.INVALID_KE_PAYLOAD, `KE ${nameOf(KeId, keP.group)} but ${nameOf(KeId, chosen.transforms.ke)} chosen`, {
        data: { kind: 'ke-method', group: chosen.transforms.ke },
      });
    }
    const ke = createKeyExchange(chosen.transforms.ke);
    let secret: Buffer;
    try {
      secret = ke.computeSecret(keP.data);
    } catch (e) {
      if (e instanceof KeyExchangeError) return fail(NotifyType.INVALID_SYNTAX, `bad KE data: ${e.message}`);
      throw e;
    }
    this.chosenNum = chosen.num;
    sa.transforms = chosen.transforms;
    sa.keyExchange = ke;
    sa.nonceI = nonceP.nonce;
    sa.nonceR = env.rng.bytes(env.config.nonceLength);
    sa.peerChildless = findNotify(msg.payloads, NotifyType.CHILDLESS_IKEV2_SUPPORTED) !== undefined;
    deriveInitialKeys(sa, secret, env.rng);
    return OK;
  }

  private processResponse(sa: IkeSa, env: TaskEnv, msg: ReceivedMessage): TaskOutcome {
    const cookie = findNotify(msg.payloads, NotifyType.COOKIE);
    if (cookie && cookie.data.kind === 'cookie') {
      if (++this.cookieRetries > MAX_COOKIE_RETRIES) return fail(NotifyType.COOKIE, 'responder keeps demanding cookies');
      this.cookie = cookie.data.cookie;
      return { kind: 'retry', reason: 'COOKIE' };
    }
    const invalidKe = findNotify(msg.payloads, NotifyType.INVALID_KE_PAYLOAD);
    if (invalidKe) {
      const wanted = invalidKe.data.kind === 'ke-method' ? invalidKe.data.group : undefined;
      const offeredKe = env.config.proposals.some((p) => wanted !== undefined && p.ke.includes(wanted));
      if (wanted === undefined || !offeredKe || wanted === sa.keyExchange?.id || ++this.keRetries > MAX_KE_RETRIES) {
        return fail(NotifyType.INVALID_KE_PAYLOAD, `responder wants ${wanted === undefined ? '?' : nameOf(KeId, wanted)}, which we cannot use`);
      }
      this.keId = wanted;
      return { kind: 'retry', reason: `INVALID_KE_PAYLOAD -> ${nameOf(KeId, wanted)}` };
    }
    const error = findPayloads(msg.payloads, PayloadType.NOTIFY).find(isErrorNotify);
    if (error) return fail(error.notifyType, 'IKE_SA_INIT refused');
    const saP = findPayload(msg.payloads, PayloadType.SA);
    const keP = findPayload(msg.payloads, PayloadType.KE);
    const nonceP = findPayload(msg.payloads, PayloadType.NONCE);
    if (!saP || !keP || !nonceP) return fail(NotifyType.INVALID_SYNTAX, 'IKE_SA_INIT response lacks SA, KE or Nr');
    const accepted = checkAcceptedProposal(saP.proposals, this.offered, 0);
    if (!accepted) return fail(NotifyType.NO_PROPOSAL_CHOSEN, 'responder chose a proposal we did not offer');
    const ke = sa.keyExchange;
    if (!ke || keP.group !== accepted.transforms.ke || keP.group !== ke.id) {
      return fail(NotifyType.INVALID_SYNTAX, 'responder KE does not match the chosen method');
    }
    let secret: Buffer;
    try {
      secret = ke.computeSecret(keP.data);
    } catch (e) {
      if (e instanceof KeyExchangeError) return fail(NotifyType.INVALID_SYNTAX, `bad KE data: ${e.message}`);
      throw e;
    }
    if (sa.spiR.every((b) => b === 0)) return fail(NotifyType.INVALID_SYNTAX, 'response without responder SPI');
    sa.transforms = accepted.transforms;
    sa.nonceR = nonceP.nonce;
    sa.peerChildless = findNotify(msg.payloads, NotifyType.CHILDLESS_IKEV2_SUPPORTED) !== undefined;
    deriveInitialKeys(sa, secret, env.rng);
    return OK;
  }
}
