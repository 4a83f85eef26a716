/**
 * An exchange other than the IKEv2 ones over an established IKE SA (RFC 9838
 * GSA_REGISTRATION, GSA_INBAND_REKEY), as a task: the requester's payloads
 * come from an ExtensionRequest, the response goes back to it. Errors the
 * peer reports inside the response (e.g. INVALID_GROUP_ID) belong to the
 * extension, not to the IKE SA, so `process` never fails the exchange.
 */
import type { Payload } from '../../wire/payload.ts';
import type { AuthExtensionContext, ExtensionRequest } from '../auth-extension.ts';
import type { IkeSa } from '../ike-sa.ts';
import { OK, type ReceivedMessage, type Task, type TaskEnv, type TaskOutcome } from './task.ts';

/** What providers, extension requests and responders get to see of the SA. */
export function extensionContext(sa: IkeSa, env: TaskEnv, exchangeType: number): AuthExtensionContext {
  return {
    saId: sa.id,
    role: sa.role,
    exchangeType,
    peerId: sa.peerId,
    peerCertificate: sa.peerCertificate,
    localId: env.config.localId,
    transforms: sa.transforms!,
    skD: sa.keys!.skD,
    now: env.now,
  };
}

export class ExtensionTask implements Task {
  readonly name = 'extension';

  constructor(private readonly request: ExtensionRequest) {}

  build(sa: IkeSa, env: TaskEnv, out: Payload[]): void {
    out.push(...this.request.build(extensionContext(sa, env, this.request.exchangeType)));
  }

  process(sa: IkeSa, env: TaskEnv, msg: ReceivedMessage): TaskOutcome {
    this.request.onResponse(extensionContext(sa, env, this.request.exchangeType), msg.payloads);
    return OK;
  }
}
