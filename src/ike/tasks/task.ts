/**
 * The task model, after strongSwan's libcharon (sa/ikev2/tasks/): an
 * exchange is a list of small tasks, each of which adds only its own
 * payloads to an outgoing message (`build`) and reads only its own payloads
 * from an incoming one (`process`). The same task class serves both ends of
 * an exchange; the requester calls build(request) then process(response),
 * the responder process(request) then build(response).
 *
 * Tasks never encrypt, send or schedule: the engine does, so a task is a
 * pure function of the SA state and the message.
 */
import type { RandomSource } from '../../crypto/random.ts';
import type { IkeHeader } from '../../wire/header.ts';
import type { Payload } from '../../wire/payload.ts';
import type { NotifyData } from '../../wire/payloads/notify.ts';
import type { ResolvedConfig } from '../config.ts';
import type { IkeSa } from '../ike-sa.ts';
import type { Endpoint, LocalEndpoint } from '../io-types.ts';

/** What a task may use besides the SA: configuration, randomness and the time of the call. */
export interface TaskEnv {
  readonly config: ResolvedConfig;
  readonly rng: RandomSource;
  readonly now: number;
}

/** A message as the tasks see it: payloads decrypted (inner payloads for SK), addressing kept. */
export interface ReceivedMessage {
  readonly header: IkeHeader;
  /** Cleartext payloads: the outer chain for IKE_SA_INIT, the SK contents otherwise. */
  readonly payloads: readonly Payload[];
  /** The whole message as received (marker removed); IKE_SA_INIT needs it for AUTH. */
  readonly raw: Buffer;
  readonly from: Endpoint;
  readonly local: LocalEndpoint;
}

export type TaskOutcome =
  | { readonly kind: 'ok' }
  /**
   * Requester only: send the exchange again from the start with the same
   * Message ID, after the tasks adjusted their state (COOKIE, INVALID_KE).
   */
  | { readonly kind: 'retry'; readonly reason: string }
  /**
   * The exchange failed with `notify` (a NotifyType error). On the responder
   * the response carries N(notify[, data]); on the requester it is reported.
   * `keepSa`: the IKE SA survives (e.g. a CHILD_SA refused in IKE_AUTH).
   */
  | {
      readonly kind: 'fail';
      readonly notify: number;
      readonly reason: string;
      readonly data?: NotifyData;
      readonly keepSa?: boolean;
    };

export const OK: TaskOutcome = Object.freeze({ kind: 'ok' });

export function fail(notify: number, reason: string, extra: { data?: NotifyData; keepSa?: boolean } = {}): TaskOutcome {
  return { kind: 'fail', notify, reason, ...extra };
}

export interface Task {
  readonly name: string;
  /** Adds this task's payloads to the outgoing request (requester) or response (responder). */
  build(sa: IkeSa, env: TaskEnv, out: Payload[]): void;
  /** Reads this task's payloads from the incoming response (requester) or request (responder). */
  process(sa: IkeSa, env: TaskEnv, msg: ReceivedMessage): TaskOutcome;
}

/** Why an exchange runs; decides what the engine does when it completes. */
export type ExchangeKind = 'ike-sa-init' | 'ike-auth' | 'liveness' | 'delete' | 'error-notify' | 'ike-rekey' | 'extension';

export interface Exchange {
  readonly kind: ExchangeKind;
  readonly exchangeType: number;
  readonly tasks: readonly Task[];
}

/**
 * Thrown by a task's `build` when it cannot produce its payloads (e.g. no
 * credential for the peer); the engine fails the exchange with `notify`.
 */
export class TaskError extends Error {
  override readonly name = 'TaskError';
  constructor(
    readonly notify: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}
