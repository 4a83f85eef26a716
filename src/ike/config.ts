/**
 * Engine configuration: what operators and tests give, and the resolved
 * form with defaults applied and text parsed, checked once at construction
 * so that a bad value fails with a message naming the field.
 */
import type { KeyObject } from 'node:crypto';
import { defaultRandom, type RandomSource } from '../crypto/random.ts';
import { DEFAULT_SIGNATURE_HASHES } from '../crypto/signature.ts';
import { Certificate, parseCertificate } from '../crypto/x509.ts';
import type { AuthPayloadProvider, ExchangeResponder } from './auth-extension.ts';
import { DEFAULT_COOKIE_CONFIG } from './cookies.ts';
import { DEFAULT_HALF_OPEN_CONFIG, type HalfOpenConfig } from './half-open.ts';
import { identityKey, parseIdentity, toIdentity, type Identity } from './identity.ts';
import { parseIkeProposal, type IkeProposalConfig } from './proposal.ts';
import { DEFAULT_RETRANSMIT, type RetransmitConfig } from './retransmit.ts';

export interface CertificateCredential {
  /** DER (or PEM) certificates: our end-entity certificate first, then intermediates to send. */
  readonly chain: readonly (Buffer | string)[];
  readonly privateKey: KeyObject;
}

export interface IkeEngineConfig {
  /** Our IKE identity: `user@example.org`, `@host.example`, `192.0.2.1`, ... (see identity.ts). */
  readonly localId: string | Identity;
  /** strongSwan-style IKE proposals, most preferred first. Default `aes256gcm16-prfsha256-x25519`. */
  readonly proposals?: readonly (string | IkeProposalConfig)[];
  /** G-IKEv2 Key Wrap Algorithms (KwaId) to offer/accept in every IKE proposal; empty: none. */
  readonly keyWrap?: readonly number[];
  /** Pre-shared keys keyed by the peer's identity text; `*` applies to any peer. */
  readonly psks?: Readonly<Record<string, string | Buffer>>;
  /** PSK lookup tried before `psks` (e.g. the key server's exact / pattern / any rules). */
  readonly pskLookup?: (peer: Identity) => Buffer | undefined;
  /** With a certificate we authenticate by signature, otherwise by PSK. */
  readonly certificate?: CertificateCredential;
  /** CA certificates (DER or PEM) that peers' certificate chains must end in. */
  readonly trustAnchors?: readonly (Buffer | string)[];
  /** Demand cookies from this many half-open SAs on (0: always). Default 10. */
  readonly cookieThreshold?: number;
  readonly halfOpen?: Partial<HalfOpenConfig>;
  /** Announce and use IKE fragmentation (RFC 7383). Default true. */
  readonly fragmentation?: boolean;
  /** Largest IP datagram before fragmenting (IP/UDP headers included). Default 1280. */
  readonly maxDatagramSize?: number;
  readonly retransmit?: Partial<RetransmitConfig>;
  /** Emit keylog events (Wireshark ikev2_decryption_table lines). Default false. */
  readonly keylog?: boolean;
  readonly rng?: RandomSource;
  /** Wall-clock time for certificate validity checks; default `new Date(now)` (now in ms since the epoch). */
  readonly certificateTime?: (now: number) => Date;
  /** Responder: accept GSA_AUTH (exchange 39) and run these providers in it. */
  readonly gsaAuthProviders?: readonly AuthPayloadProvider[];
  /** Responder: providers for plain IKE_AUTH. */
  readonly ikeAuthProviders?: readonly AuthPayloadProvider[];
  /** Responder: further exchange types accepted over an established IKE SA (e.g. GSA_REGISTRATION). */
  readonly exchangeResponders?: ReadonlyMap<number, ExchangeResponder>;
  /** Hash algorithms for SIGNATURE_HASH_ALGORITHMS (RFC 7427). */
  readonly signatureHashes?: readonly number[];
  /** Octets of our nonces (16..256). Default 32. */
  readonly nonceLength?: number;
  /** A responder answers a childless IKE_AUTH and refuses CHILD_SAs; announce it (RFC 6023). Default true. */
  readonly announceChildless?: boolean;
  /** Half-open / rekeyed SAs left alone this long are removed. Default 30 s. */
  readonly staleSaTimeoutMs?: number;
}

export interface ResolvedConfig {
  readonly localId: Identity;
  readonly proposals: readonly IkeProposalConfig[];
  readonly keyWrap: readonly number[];
  readonly psks: ReadonlyMap<string, Buffer>;
  readonly anyPsk: Buffer | undefined;
  readonly pskLookup: ((peer: Identity) => Buffer | undefined) | undefined;
  readonly certificate?: { readonly chain: readonly Certificate[]; readonly privateKey: KeyObject };
  readonly trustAnchors: readonly Certificate[];
  readonly cookieThreshold: number;
  readonly halfOpen: HalfOpenConfig;
  readonly fragmentation: boolean;
  readonly maxDatagramSize: number;
  readonly retransmit: RetransmitConfig;
  readonly keylog: boolean;
  readonly rng: RandomSource;
  readonly certificateTime: (now: number) => Date;
  readonly gsaAuthProviders: readonly AuthPayloadProvider[] | undefined;
  readonly ikeAuthProviders: readonly AuthPayloadProvider[];
  readonly exchangeResponders: ReadonlyMap<number, ExchangeResponder>;
  readonly signatureHashes: readonly number[];
  readonly nonceLength: number;
  readonly announceChildless: boolean;
  readonly staleSaTimeoutMs: number;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`${field}: ${detail}`);
  }
}

function field<T>(name: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(name, e instanceof Error ? e.message : String(e));
  }
}

export function resolveConfig(c: IkeEngineConfig): ResolvedConfig {
  const keyWrap = [...(c.keyWrap ?? [])];
  const proposals = field('proposals', () =>
    (c.proposals ?? ['aes256gcm16-prfsha256-x25519']).map((p) =>
      typeof p === 'string' ? parseIkeProposal(p, keyWrap) : { ...p, kwa: p.kwa.length > 0 ? p.kwa : keyWrap },
    ),
  );
  if (proposals.length === 0) throw new ConfigError('proposals', 'at least one proposal is needed');
  const psks = new Map<string, Buffer>();
  let anyPsk: Buffer | undefined;
  for (const [id, secret] of Object.entries(c.psks ?? {})) {
    const value = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.from(secret);
    if (value.length === 0) throw new ConfigError(`psks[${id}]`, 'empty secret');
    if (id === '*') anyPsk = value;
    else psks.set(field(`psks[${id}]`, () => identityKey(parseIdentity(id))), value);
  }
  const certificate = c.certificate
    ? field('certificate', () => {
        const chain = c.certificate!.chain.map((x) => parseCertificate(x));
        if (chain.length === 0) throw new ConfigError('certificate.chain', 'needs the end-entity certificate');
        return { chain, privateKey: c.certificate!.privateKey };
      })
    : undefined;
  const trustAnchors = field('trustAnchors', () => (c.trustAnchors ?? []).map((x) => parseCertificate(x)));
  const nonceLength = c.nonceLength ?? 32;
  if (!Number.isInteger(nonceLength) || nonceLength < 16 || nonceLength > 256) {
    throw new ConfigError('nonceLength', 'must be 16..256');
  }
  const cookieThreshold = c.cookieThreshold ?? DEFAULT_COOKIE_CONFIG.halfOpenThreshold;
  if (!(cookieThreshold >= 0)) throw new ConfigError('cookieThreshold', 'must be >= 0');
  const maxDatagramSize = c.maxDatagramSize ?? 1280;
  if (!Number.isInteger(maxDatagramSize) || maxDatagramSize < 576) throw new ConfigError('maxDatagramSize', 'must be >= 576');
  return {
    localId: field('localId', () => toIdentity(c.localId)),
    proposals,
    keyWrap,
    psks,
    anyPsk,
    pskLookup: c.pskLookup,
    ...(certificate ? { certificate } : {}),
    trustAnchors,
    cookieThreshold,
    halfOpen: { ...DEFAULT_HALF_OPEN_CONFIG, ...c.halfOpen, cookieThreshold },
    fragmentation: c.fragmentation ?? true,
    maxDatagramSize,
    retransmit: { ...DEFAULT_RETRANSMIT, ...c.retransmit },
    keylog: c.keylog ?? false,
    rng: c.rng ?? defaultRandom(),
    certificateTime: c.certificateTime ?? ((now) => new Date(now)),
    gsaAuthProviders: c.gsaAuthProviders,
    ikeAuthProviders: c.ikeAuthProviders ?? [],
    exchangeResponders: c.exchangeResponders ?? new Map(),
    signatureHashes: c.signatureHashes ?? DEFAULT_SIGNATURE_HASHES,
    nonceLength,
    announceChildless: c.announceChildless ?? true,
    staleSaTimeoutMs: c.staleSaTimeoutMs ?? 30_000,
  };
}

/** The PSK for `peer`: the lookup's, the configured one, or the wildcard one. */
export function pskFor(config: ResolvedConfig, peer: Identity): Buffer | undefined {
  return config.pskLookup?.(peer) ?? config.psks.get(identityKey(peer)) ?? config.anyPsk;
}
