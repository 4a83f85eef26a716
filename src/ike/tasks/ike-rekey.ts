/**
 * Rekeying the IKE SA with CREATE_CHILD_SA (RFC 7296 Sections 1.3.2 and
 * 2.18): SA (IKE proposals carrying the sender's new 8-octet SPI), Nonce and
 * KE; the new SA's keys come from the old SK_d. The side that sends the
 * request is the new SA's initiator. Collisions (Section 2.8.2) are resolved
 * by the engine, which sees both exchanges; this task only runs one.
 *
 * We create no CHILD_SAs, so a CREATE_CHILD_SA that is not an IKE rekey is
 * answered with NO_ADDITIONAL_SAS and the IKE SA stays.
 */
import { createKeyExchange, KeyExchangeError } from '../../crypto/ke.ts';
import { KeId, NotifyType, PayloadType, ProtocolId, nameOf } from '../../wire/iana.ts';
import { findNotify, findPayload, findPayloads, type Payload } from '../../wire/payload.ts';
import { isErrorNotify } from '../../wire/payloads/notify.ts';
import type { Proposal } from '../../wire/payloads/sa.ts';
import type { IkeRole, IkeSa } from '../ike-sa.ts';
import { deriveRekeyKeys } from '../keying.ts';
import { acceptedProposal, checkAcceptedProposal, offerProposals, selectProposal } from '../proposal.ts';
import { fail, OK, type ReceivedMessage, type Task, type TaskEnv, type TaskOutcome } from './task.ts';

/** Makes the new IKE SA object (the engine allocates its ID and our SPI). */
export type NewSaFactory = (role: IkeRole) => IkeSa;

const MAX_KE_RETRIES = 2;

export class IkeRekeyTask implements Task {
  readonly name = 'ike-rekey';
  /** The new IKE SA once keys are derived. */
  newSa: IkeSa | undefined;
  private offered: Proposal[] = [];
  private keId: number | undefined;
  private keRetries = 0;
  private chosenNum = 0;

  constructor(
    private readonly role: 'initiator' | 'responder',
    private readonly createSa: NewSaFactory,
  ) {}

  build(old: IkeSa, env: TaskEnv, out: Payload[]): void {
    if (this.role === 'initiator') {
      // A fresh SA object per attempt: a retried request carries a new SPI, nonce and KE.
      const sa = this.createSa('initiator');
      sa.nonceI = env.rng.bytes(env.config.nonceLength);
      const keId = this.keId ?? old.transforms!.ke;
      sa.keyExchange = createKeyExchange(keId);
      this.newSa = sa;
      this.offered = offerProposals(env.config.proposals, sa.spiI);
      out.push({ type: PayloadType.SA, critical: false, proposals: this.offered });
      out.push({ type: PayloadType.NONCE, critical: false, nonce: sa.nonceI });
      out.push({ type: PayloadType.KE, critical: false, group: keId, data: sa.keyExchange.publicValue });
      return;
    }
    const sa = this.newSa!;
    out.push({ type: PayloadType.SA, critical: false, proposals: [acceptedProposal(this.chosenNum, sa.transforms!, sa.spiR)] });
    out.push({ type: PayloadType.NONCE, critical: false, nonce: sa.nonceR! });
    out.push({ type: PayloadType.KE, critical: false, group: sa.transforms!.ke, data: sa.keyExchange!.publicValue });
  }

  process(old: IkeSa, env: TaskEnv, msg: ReceivedMessage): TaskOutcome {
    return this.role === 'initiator' ? this.processResponse(old, env, msg) : this.processRequest(old, env, msg);
  }

  private processRequest(old: IkeSa, env: TaskEnv, msg: ReceivedMessage): TaskOutcome {
    const saP = findPayload(msg.payloads, PayloadType.SA);
    const keP = findPayload(msg.payloads, PayloadType.KE);
    const nonceP = findPayload(msg.payloads, PayloadType.NONCE);
    const isIkeRekey =
      saP !== undefined &&
      saP.proposals.some((p) => p.protocolId === ProtocolId.IKE) &&
      findPayload(msg.payloads, PayloadType.TSi) === undefined &&
      findNotify(msg.payloads, NotifyType.REKEY_SA) === undefined;
    if (!isIkeRekey) return fail(NotifyType.NO_ADDITIONAL_SAS, 'CHILD_SAs are not supported', { keepSa: true });
    if (!keP || !nonceP) return fail(NotifyType.INVALID_SYNTAX, 'IKE rekey without KE or Ni', { keepSa: true });
    const chosen = selectProposal(saP.proposals, env.config.proposals, 8, keP.group);
    if (!chosen) return fail(NotifyType.NO_PROPOSAL_CHOSEN, 'no acceptable proposal for the new IKE SA', { keepSa: true });
    if (keP.group !== chosen.transforms.ke) {
      return fail(NotifyType.INVALID_KE_PAYLOAD, `KE ${nameOf(KeId, keP.group)} but ${nameOf(KeId, chosen.transforms.ke)} chosen`, {
        data: { kind: 'ke-method', group: chosen.transforms.ke },
        keepSa: true,
      });
    }
    const ke = createKeyExchange(chosen.transforms.ke);
    let secret: Buffer;
    try {
      secret = ke.computeSecret(keP.data);
    } catch (e) {
      if (e instanceof KeyExchangeError) return fail(NotifyType.INVALID_SYNTAX, `bad KE data: ${e.message}`, { keepSa: true });
      throw e;
    }
    const sa = this.createSa('responder');
    sa.spiI = chosen.spi;
    sa.transforms = chosen.transforms;
    sa.keyExchange = ke;
    sa.nonceI = nonceP.nonce;
    sa.nonceR = env.rng.bytes(env.config.nonceLength);
    deriveRekeyKeys(sa, old, secret, env.rng);
    this.chosenNum = chosen.num;
    this.newSa = sa;
    return OK;
  }

  private processResponse(old: IkeSa, env: TaskEnv, msg: ReceivedMessage): TaskOutcome {
    const sa = this.newSa!;
    const invalidKe = findNotify(msg.payloads, NotifyType.INVALID_KE_PAYLOAD);
    if (invalidKe) {
      const wanted = invalidKe.data.kind === 'ke-method' ? invalidKe.data.group : undefined;
      const ok = wanted !== undefined && wanted !== sa.keyExchange?.id && env.config.proposals.some((p) => p.ke.includes(wanted));
      if (!ok || ++this.keRetries > MAX_KE_RETRIES) {
        return fail(NotifyType.INVALID_KE_PAYLOAD, 'peer wants a KE method we cannot use', { keepSa: true });
      }
      this.keId = wanted;
      return { kind: 'retry', reason: `INVALID_KE_PAYLOAD -> ${nameOf(KeId, wanted)}` };
    }
    const error = findPayloads(msg.payloads, PayloadType.NOTIFY).find(isErrorNotify);
    if (error) return fail(error.notifyType, 'IKE SA rekey refused', { keepSa: true });
    const saP = findPayload(msg.payloads, PayloadType.SA);
    const keP = findPayload(msg.payloads, PayloadType.KE);
    const nonceP = findPayload(msg.payloads, PayloadType.NONCE);
    if (!saP || !keP || !nonceP) return fail(NotifyType.INVALID_SYNTAX, 'rekey response lacks SA, KE or Nr', { keepSa: true });
    const accepted = checkAcceptedProposal(saP.proposals, this.offered, 8);
    if (!accepted || accepted.spi.every((b) => b === 0)) {
      return fail(NotifyType.NO_PROPOSAL_CHOSEN, 'peer chose a proposal we did not offer', { keepSa: true });
    }
    if (!sa.keyExchange || keP.group !== sa.keyExchange.id || keP.group !== accepted.transforms.ke) {
      return fail(NotifyType.INVALID_SYNTAX, 'KE does not match the chosen method', { keepSa: true });
    }
    let secret: Buffer;
    try {
      secret = sa.keyExchange.computeSecret(keP.data);
    } catch (e) {
      if (e instanceof KeyExchangeError) return fail(NotifyType.INVALID_SYNTAX, `bad KE data: ${e.message}`, { keepSa: true });
      throw e;
    }
    sa.spiR = accepted.spi;
    sa.transforms = accepted.transforms;
    sa.nonceR = nonceP.nonce;
    deriveRekeyKeys(sa, old, secret, env.rng);
    return OK;
  }
}
