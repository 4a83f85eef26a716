/**
 * What IKE_SA_INIT carries for certificate authentication: the responder's
 * CERTREQ (RFC 7296 Section 3.7, SHA-1 hashes of our trust anchors' public
 * keys) and SIGNATURE_HASH_ALGORITHMS from both sides (RFC 7427 Section 4),
 * which decides whether the Digital Signature method can be used.
 */
import { createHash } from 'node:crypto';
import type { Certificate } from '../../crypto/x509.ts';
import { CertEncoding, NotifyType, PayloadType } from '../../wire/iana.ts';
import { findNotify, findPayloads, type Payload } from '../../wire/payload.ts';
import { caKeyHashes, joinCaKeyHashes } from '../../wire/payloads/certreq.ts';
import { makeNotify } from '../../wire/payloads/notify.ts';
import type { IkeSa } from '../ike-sa.ts';
import { OK, type ReceivedMessage, type Task, type TaskEnv, type TaskOutcome } from './task.ts';

/** SHA-1 of the subjectPublicKeyInfo, as CERTREQ lists CAs (RFC 7296 3.7). */
export function caKeyHash(cert: Certificate): Buffer {
  return createHash('sha1').update(cert.subjectPublicKeyInfo).digest();
}

/** The CERTREQ authority field per trust anchor list (the configuration's, which lives as long as the engine). */
const authorityCache = new WeakMap<readonly Certificate[], Buffer>();

/** A CERTREQ for our trust anchors, or nothing when we have none. */
export function certReqPayloads(anchors: readonly Certificate[]): Payload[] {
  if (anchors.length === 0) return [];
  let authority = authorityCache.get(anchors);
  if (!authority) {
    authority = joinCaKeyHashes(anchors.map(caKeyHash));
    authorityCache.set(anchors, authority);
  }
  return [{ type: PayloadType.CERTREQ, critical: false, encoding: CertEncoding.X509_SIGNATURE, authority }];
}

/** Remembers the CA hashes the peer asked for (malformed ones are ignored, as RFC 7296 allows). */
export function readCertReqs(sa: IkeSa, payloads: readonly Payload[]): void {
  for (const p of findPayloads(payloads, PayloadType.CERTREQ)) {
    if (p.encoding !== CertEncoding.X509_SIGNATURE) continue;
    sa.peerCertReqs.push(...(caKeyHashes(p) ?? []));
  }
}

export class IkeCertPreTask implements Task {
  readonly name = 'ike-cert-pre';

  constructor(private readonly role: 'initiator' | 'responder') {}

  build(_sa: IkeSa, env: TaskEnv, out: Payload[]): void {
    if (this.role === 'responder') out.push(...certReqPayloads(env.config.trustAnchors));
    // An empty list would announce nothing; leaving it out makes the peer use legacy methods.
    if (env.config.signatureHashes.length === 0) return;
    out.push(
      makeNotify(NotifyType.SIGNATURE_HASH_ALGORITHMS, {
        kind: 'hash-algorithms',
        algorithms: [...env.config.signatureHashes],
      }),
    );
  }

  process(sa: IkeSa, _env: TaskEnv, msg: ReceivedMessage): TaskOutcome {
    const n = findNotify(msg.payloads, NotifyType.SIGNATURE_HASH_ALGORITHMS);
    sa.peerSignatureHashes = n && n.data.kind === 'hash-algorithms' ? [...n.data.algorithms] : [];
    readCertReqs(sa, msg.payloads);
    return OK;
  }
}
