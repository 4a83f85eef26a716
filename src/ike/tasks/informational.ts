/**
 * INFORMATIONAL exchanges (RFC 7296 Section 1.4): liveness checks (an empty
 * SK{}), deleting the IKE SA (SK{D(IKE)}, answered with an empty SK{}), and
 * error notifies sent outside a request/response pair (Section 2.21.2,
 * e.g. an initiator reporting AUTHENTICATION_FAILED about the responder).
 */
import { NotifyType, PayloadType, ProtocolId } from '../../wire/iana.ts';
import { findPayloads, type Payload } from '../../wire/payload.ts';
import { isErrorNotify, makeNotify } from '../../wire/payloads/notify.ts';
import type { IkeSa } from '../ike-sa.ts';
import { OK, type ReceivedMessage, type Task, type TaskEnv, type TaskOutcome } from './task.ts';

export type InformationalKind = 'liveness' | 'delete' | 'error-notify';

export class InformationalTask implements Task {
  readonly name = 'informational';
  /** Responder: the peer deleted the IKE SA. */
  deleteRequested = false;
  /** Responder: the peer reported this error about the IKE SA. */
  errorReceived: number | undefined;

  constructor(
    private readonly role: 'initiator' | 'responder',
    private readonly kind: InformationalKind = 'liveness',
    private readonly notify: number = NotifyType.AUTHENTICATION_FAILED,
  ) {}

  build(_sa: IkeSa, _env: TaskEnv, out: Payload[]): void {
    // A response carries nothing: we hold no CHILD_SAs whose deletion we would confirm.
    if (this.role === 'responder') return;
    if (this.kind === 'delete') {
      out.push({ type: PayloadType.DELETE, critical: false, protocolId: ProtocolId.IKE, spiSize: 0, spis: [] });
    } else if (this.kind === 'error-notify') {
      out.push(makeNotify(this.notify));
    }
  }

  process(_sa: IkeSa, _env: TaskEnv, msg: ReceivedMessage): TaskOutcome {
    if (this.role === 'initiator') return OK;
    this.deleteRequested = findPayloads(msg.payloads, PayloadType.DELETE).some((d) => d.protocolId === ProtocolId.IKE);
    // An unsolicited error notify about the IKE SA (no SPI) means the peer considers it failed.
    const error = findPayloads(msg.payloads, PayloadType.NOTIFY).find(
      (n) => isErrorNotify(n) && n.spi.length === 0 && n.notifyType !== NotifyType.INVALID_SPI,
    );
    this.errorReceived = error?.notifyType;
    return OK;
  }
}
