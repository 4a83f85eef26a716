/**
 * IKE_AUTH (RFC 7296 Section 1.2) and, with another exchange type and
 * other payload providers, G-IKEv2's GSA_AUTH (RFC 9838 Section 2.3.1):
 * identities, certificates, the AUTH payload with a PSK (method 2) or a
 * signature (method 14, RFC 7427; legacy 1/9/10/11 accepted and used when
 * the peer did not send SIGNATURE_HASH_ALGORITHMS), and childless IKE SAs
 * (RFC 6023): we never ask for a CHILD_SA unless told to, and as responder
 * refuse one with N(NO_PROPOSAL_CHOSEN) while the IKE SA comes up
 * (RFC 7296 Section 2.21.1 / 1.2).
 */
import {
  AuthError,
  buildAuthData,
  restOfIdPayload,
  signedOctets,
  verifyAuthData,
  type AuthSigner,
  type AuthVerifier,
} from '../../crypto/auth.ts';
import { prf } from '../../crypto/prf.ts';
import type { RandomSource } from '../../crypto/random.ts';
import { chooseSignatureAlgorithm, legacyMethodForKey, SignatureError } from '../../crypto/signature.ts';
import {
  assertIdentityMatchesCertificate,
  CertificateError,
  parseCertificate,
  validateCertificateChain,
  type Certificate,
} from '../../crypto/x509.ts';
import { tv } from '../../wire/attributes.ts';
import {
  AuthMethod,
  CertEncoding,
  EncrId,
  ExchangeType,
  NotifyType,
  PayloadType,
  ProtocolId,
  SnId,
  TransformAttr,
  TransformType,
  TsType,
  nameOf,
} from '../../wire/iana.ts';
import { findPayload, findPayloads, type Payload } from '../../wire/payload.ts';
import type { IdPayload } from '../../wire/payloads/id.ts';
import { isErrorNotify, makeNotify } from '../../wire/payloads/notify.ts';
import type { AuthExtensionContext, AuthPayloadProvider, ProviderRefusal } from '../auth-extension.ts';
import { pskFor, type ResolvedConfig } from '../config.ts';
import { formatIdentity, sameIdentity, type Identity } from '../identity.ts';
import type { IkeSa } from '../ike-sa.ts';
import { extensionContext } from './extension.ts';
import { certReqPayloads, readCertReqs } from './ike-cert-pre.ts';
import { fail, OK, TaskError, type ReceivedMessage, type Task, type TaskEnv, type TaskOutcome } from './task.ts';

/** Notifies that refuse only the CHILD_SA part of IKE_AUTH (RFC 7296 Section 2.21.2). */
const CHILD_SA_ERRORS: ReadonlySet<number> = new Set([
  NotifyType.NO_PROPOSAL_CHOSEN,
  NotifyType.TS_UNACCEPTABLE,
  NotifyType.SINGLE_PAIR_REQUIRED,
  NotifyType.NO_ADDITIONAL_SAS,
  NotifyType.INTERNAL_ADDRESS_FAILURE,
  NotifyType.FAILED_CP_REQUIRED,
  NotifyType.INVALID_SELECTORS,
]);

export interface AuthTaskOptions {
  /** IKE_AUTH (default) or GSA_AUTH. */
  readonly exchangeType?: number;
  readonly providers?: readonly AuthPayloadProvider[];
  /** Initiator: the identity the responder must prove (sent as IDr). */
  readonly remoteId?: Identity;
  /** Initiator: ask for a CHILD_SA (ESP, any-to-any) instead of a childless IKE SA. */
  readonly requestChildSa?: boolean;
}

function idPayload(type: typeof PayloadType.IDi | typeof PayloadType.IDr, id: Identity): IdPayload {
  return { type, critical: false, idType: id.idType, data: id.data };
}

function prfOf(sa: IkeSa): (key: Buffer, data: Buffer) => Buffer {
  const id = sa.transforms!.prf;
  return (key, data) => prf(id, key, data);
}

export class IkeAuthTask implements Task {
  readonly name = 'ike-auth';
  readonly exchangeType: number;
  private readonly providers: readonly AuthPayloadProvider[];
  /** A CHILD_SA was asked for and refused; the IKE SA is up regardless. */
  childRefused: number | undefined;
  /** A provider refused its part of the exchange (IKE SA up regardless). */
  providerRefusal: ProviderRefusal | undefined;
  /** Responder: the peer asked for a CHILD_SA. */
  private childRequested = false;

  constructor(
    private readonly role: 'initiator' | 'responder',
    private readonly options: AuthTaskOptions = {},
  ) {
    this.exchangeType = options.exchangeType ?? ExchangeType.IKE_AUTH;
    this.providers = options.providers ?? [];
  }

  build(sa: IkeSa, env: TaskEnv, out: Payload[]): void {
    const cfg = env.config;
    const own = idPayload(this.role === 'initiator' ? PayloadType.IDi : PayloadType.IDr, cfg.localId);
    out.push(own);
    for (const cert of cfg.certificate?.chain ?? []) {
      out.push({ type: PayloadType.CERT, critical: false, encoding: CertEncoding.X509_SIGNATURE, data: cert.der });
    }
    if (this.role === 'initiator') {
      out.push(...certReqPayloads(cfg.trustAnchors));
      if (this.options.remoteId) out.push(idPayload(PayloadType.IDr, this.options.remoteId));
    }
    const peer = this.role === 'initiator' ? this.options.remoteId : sa.peerId;
    const auth = buildAuthData(this.signer(sa, cfg, peer), this.ownOctets(sa, own));
    out.push({ type: PayloadType.AUTH, critical: false, method: auth.method, data: auth.data });
    if (this.role === 'initiator') {
      if (this.options.requestChildSa) out.push(...childSaRequest(env.rng));
      for (const p of this.providers) out.push(...(p.buildRequest?.(this.extensionContext(sa, env)) ?? []));
      return;
    }
    if (this.childRequested) out.push(makeNotify(NotifyType.NO_PROPOSAL_CHOSEN));
    if (this.providerRefusal) {
      out.push(makeNotify(this.providerRefusal.notify, this.providerRefusal.data));
      return;
    }
    for (const p of this.providers) out.push(...(p.buildResponse?.(this.extensionContext(sa, env)) ?? []));
  }

  process(sa: IkeSa, env: TaskEnv, msg: ReceivedMessage): TaskOutcome {
    const idType = this.role === 'initiator' ? PayloadType.IDr : PayloadType.IDi;
    const id = findPayload(msg.payloads, idType);
    const auth = findPayload(msg.payloads, PayloadType.AUTH);
    if (this.role === 'initiator' && (!id || !auth)) {
      const error = findPayloads(msg.payloads, PayloadType.NOTIFY).find(isErrorNotify);
      return fail(error?.notifyType ?? NotifyType.INVALID_SYNTAX, error ? 'responder refused authentication' : 'no IDr/AUTH in response');
    }
    if (!id || !auth) return fail(NotifyType.INVALID_SYNTAX, 'IDi or AUTH missing');
    const peerId: Identity = { idType: id.idType, data: id.data };
    if (this.role === 'initiator' && this.options.remoteId && !sameIdentity(peerId, this.options.remoteId)) {
      return fail(NotifyType.AUTHENTICATION_FAILED, `responder is ${formatIdentity(peerId)}, expected ${formatIdentity(this.options.remoteId)}`);
    }
    if (this.role === 'responder') readCertReqs(sa, msg.payloads);
    const verified = this.verifyPeer(sa, env, peerId, auth, msg.payloads);
    if (verified.kind !== 'ok') return verified;
    sa.peerId = peerId;

    if (this.role === 'responder') {
      // In GSA_AUTH the SA payload is the member's SAg (RFC 9838 2.3.3), not a CHILD_SA request.
      this.childRequested = this.exchangeType === ExchangeType.IKE_AUTH && findPayload(msg.payloads, PayloadType.SA) !== undefined;
      for (const p of this.providers) {
        const refusal = p.processRequest?.(this.extensionContext(sa, env), msg.payloads);
        if (refusal) {
          this.providerRefusal = refusal;
          break;
        }
      }
      return OK;
    }
    if (this.exchangeType === ExchangeType.IKE_AUTH) {
      // In GSA_AUTH these notifies (NO_PROPOSAL_CHOSEN) refuse the registration: the providers' business.
      const childError = findPayloads(msg.payloads, PayloadType.NOTIFY).find((n) => CHILD_SA_ERRORS.has(n.notifyType));
      if (childError) this.childRefused = childError.notifyType;
    }
    for (const p of this.providers) {
      const refusal = p.processResponse?.(this.extensionContext(sa, env), msg.payloads);
      if (refusal) {
        this.providerRefusal = refusal;
        break;
      }
    }
    return OK;
  }

  /** RFC 7296 2.15: our first message | peer's nonce | prf(SK_p, RestOfIDPayload). */
  private ownOctets(sa: IkeSa, own: IdPayload): Buffer {
    const initiator = this.role === 'initiator';
    return signedOctets({
      realMessage: initiator ? sa.initRequest! : sa.initResponse!,
      peerNonce: initiator ? sa.nonceR! : sa.nonceI!,
      idPayloadBody: restOfIdPayload(own.idType, own.data),
      skP: initiator ? sa.keys!.skPi : sa.keys!.skPr,
      prf: prfOf(sa),
    });
  }

  private peerOctets(sa: IkeSa, peer: Identity): Buffer {
    const peerIsInitiator = this.role === 'responder';
    return signedOctets({
      realMessage: peerIsInitiator ? sa.initRequest! : sa.initResponse!,
      peerNonce: peerIsInitiator ? sa.nonceR! : sa.nonceI!,
      idPayloadBody: restOfIdPayload(peer.idType, peer.data),
      skP: peerIsInitiator ? sa.keys!.skPi : sa.keys!.skPr,
      prf: prfOf(sa),
    });
  }

  private signer(sa: IkeSa, cfg: ResolvedConfig, peer: Identity | undefined): AuthSigner {
    if (cfg.certificate) {
      const key = cfg.certificate.privateKey;
      try {
        // RFC 7427: method 14 only if the peer announced hashes; else the key's legacy method.
        if (sa.peerSignatureHashes.length > 0) {
          return { kind: 'digital-signature', privateKey: key, algorithm: chooseSignatureAlgorithm(key, { peerHashes: sa.peerSignatureHashes }) };
        }
        const legacy = legacyMethodForKey(key);
        if (legacy !== undefined) return { kind: 'legacy-signature', method: legacy, privateKey: key };
        return { kind: 'digital-signature', privateKey: key, algorithm: chooseSignatureAlgorithm(key) };
      } catch (e) {
        if (e instanceof SignatureError) throw new TaskError(NotifyType.AUTHENTICATION_FAILED, `cannot sign: ${e.message}`);
        throw e;
      }
    }
    const psk = peer ? pskFor(cfg, peer) : cfg.anyPsk;
    if (!psk) {
      throw new TaskError(NotifyType.AUTHENTICATION_FAILED, `no PSK for ${peer ? formatIdentity(peer) : 'the peer'}`);
    }
    return { kind: 'psk', sharedSecret: psk, prf: prfOf(sa) };
  }

  private verifyPeer(
    sa: IkeSa,
    env: TaskEnv,
    peer: Identity,
    auth: { method: number; data: Buffer },
    payloads: readonly Payload[],
  ): TaskOutcome {
    const cfg = env.config;
    let verifier: AuthVerifier;
    let peerCertificate: Certificate | undefined;
    if (auth.method === AuthMethod.SHARED_KEY_MIC) {
      const psk = pskFor(cfg, peer);
      if (!psk) return fail(NotifyType.AUTHENTICATION_FAILED, `no PSK for ${formatIdentity(peer)}`);
      verifier = { kind: 'psk', sharedSecret: psk, prf: prfOf(sa) };
    } else {
      const certs: Certificate[] = [];
      try {
        for (const c of findPayloads(payloads, PayloadType.CERT)) {
          if (c.encoding === CertEncoding.X509_SIGNATURE) certs.push(parseCertificate(c.data));
        }
        const ee = certs[0];
        if (!ee) return fail(NotifyType.AUTHENTICATION_FAILED, 'signature authentication without a certificate');
        if (cfg.trustAnchors.length === 0) return fail(NotifyType.AUTHENTICATION_FAILED, 'no trust anchors configured');
        validateCertificateChain(ee, certs.slice(1), { trustAnchors: cfg.trustAnchors, now: cfg.certificateTime(env.now) });
        assertIdentityMatchesCertificate(peer.idType, peer.data, ee);
        verifier = { kind: 'public-key', publicKey: ee.publicKey };
        peerCertificate = ee;
      } catch (e) {
        if (e instanceof CertificateError) return fail(NotifyType.AUTHENTICATION_FAILED, `certificate: ${e.message}`);
        throw e;
      }
    }
    try {
      verifyAuthData(auth, verifier, this.peerOctets(sa, peer));
    } catch (e) {
      if (e instanceof AuthError) {
        return fail(NotifyType.AUTHENTICATION_FAILED, `${nameOf(AuthMethod, auth.method)} of ${formatIdentity(peer)}: ${e.message}`);
      }
      throw e;
    }
    if (peerCertificate) sa.peerCertificate = peerCertificate;
    return OK;
  }

  private extensionContext(sa: IkeSa, env: TaskEnv): AuthExtensionContext {
    return extensionContext(sa, env, this.exchangeType);
  }
}

/** An any-to-any ESP CHILD_SA request, for peers that want to see one refused. */
function childSaRequest(rng: RandomSource): Payload[] {
  const any = {
    type: TsType.TS_IPV4_ADDR_RANGE,
    ipProtocol: 0,
    startPort: 0,
    endPort: 65535,
    startAddress: '0.0.0.0',
    endAddress: '255.255.255.255',
  } as const;
  return [
    {
      type: PayloadType.SA,
      critical: false,
      proposals: [
        {
          num: 1,
          protocolId: ProtocolId.ESP,
          // Never installed: the SPI only has to be non-zero and well-formed.
          spi: rng.bytes(4),
          transforms: [
            { type: TransformType.ENCR, id: EncrId.AES_GCM_16, attributes: [tv(TransformAttr.KEY_LENGTH, 256)] },
            { type: TransformType.SN, id: SnId.SEQ32, attributes: [] },
          ],
        },
      ],
    },
    { type: PayloadType.TSi, critical: false, selectors: [any] },
    { type: PayloadType.TSr, critical: false, selectors: [any] },
  ];
}
