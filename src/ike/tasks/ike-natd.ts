/**
 * NAT detection in IKE_SA_INIT (RFC 7296 Section 2.23): both sides send
 * hashes of the addresses they see and compare the peer's with the
 * addresses the datagram really carried. The result is kept on the SA;
 * moving to port 4500 is the caller's choice (see natd.ts decideFloat).
 */
import { NotifyType, PayloadType } from '../../wire/iana.ts';
import { findPayloads, type Payload } from '../../wire/payload.ts';
import { makeNotify } from '../../wire/payloads/notify.ts';
import type { IkeSa } from '../ike-sa.ts';
import { detectNat, natdNotifyData } from '../natd.ts';
import { OK, type ReceivedMessage, type Task, type TaskEnv, type TaskOutcome } from './task.ts';

export class IkeNatdTask implements Task {
  readonly name = 'ike-natd';

  constructor(private readonly role: 'initiator' | 'responder') {}

  build(sa: IkeSa, _env: TaskEnv, out: Payload[]): void {
    // In the request SPIr is still unknown and hashed as zeros.
    const data = natdNotifyData(sa.spiI, this.role === 'initiator' ? undefined : sa.spiR, sa.local, sa.peer);
    out.push(makeNotify(NotifyType.NAT_DETECTION_SOURCE_IP, { kind: 'nat-hash', hash: data.source }));
    out.push(makeNotify(NotifyType.NAT_DETECTION_DESTINATION_IP, { kind: 'nat-hash', hash: data.destination }));
  }

  process(sa: IkeSa, _env: TaskEnv, msg: ReceivedMessage): TaskOutcome {
    const hashes = (type: number): Buffer[] =>
      findPayloads(msg.payloads, PayloadType.NOTIFY)
        .filter((n) => n.notifyType === type)
        .flatMap((n) => (n.data.kind === 'nat-hash' ? [n.data.hash] : []));
    const detection = detectNat({
      spiI: msg.header.spiI,
      spiR: this.role === 'initiator' ? msg.header.spiR : undefined,
      sourceHashes: hashes(NotifyType.NAT_DETECTION_SOURCE_IP),
      destinationHashes: hashes(NotifyType.NAT_DETECTION_DESTINATION_IP),
      from: msg.from,
      local: msg.local,
    });
    sa.natLocal = detection.localBehindNat;
    sa.natRemote = detection.peerBehindNat;
    sa.peerNatT = detection.peerSupportsNatT;
    return OK;
  }
}
