/**
 * IKEV2_FRAGMENTATION_SUPPORTED in IKE_SA_INIT (RFC 7383 Section 2.3): the
 * initiator announces support, the responder answers only if both want it,
 * and fragmentation is used only when both sent the notify.
 */
import { NotifyType } from '../../wire/iana.ts';
import { findNotify, type Payload } from '../../wire/payload.ts';
import { makeNotify } from '../../wire/payloads/notify.ts';
import type { IkeSa } from '../ike-sa.ts';
import { OK, type ReceivedMessage, type Task, type TaskEnv, type TaskOutcome } from './task.ts';

export class IkeFragTask implements Task {
  readonly name = 'ike-frag';

  constructor(private readonly role: 'initiator' | 'responder') {}

  build(sa: IkeSa, env: TaskEnv, out: Payload[]): void {
    const announce = this.role === 'initiator' ? env.config.fragmentation : sa.fragmentation;
    if (announce) out.push(makeNotify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED));
  }

  process(sa: IkeSa, env: TaskEnv, msg: ReceivedMessage): TaskOutcome {
    sa.fragmentation =
      env.config.fragmentation && findNotify(msg.payloads, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) !== undefined;
    return OK;
  }
}
