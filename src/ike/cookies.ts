/**
 * Stateless cookies against IKE_SA_INIT floods (RFC 7296 Section 2.6).
 *
 * When too many IKE SAs are half-open, the responder answers an
 * IKE_SA_INIT request without a valid N(COOKIE) with a response that only
 * holds N(COOKIE) and keeps no state. The cookie is
 *
 *     Cookie = <VersionIDofSecret> | SHA-256(Ni | IPi | SPIi | <secret>)
 *
 * with a 4-octet version identifier that tells which secret made it. The
 * secret is replaced every `secretLifetimeMs`; cookies made with the
 * previous secret are still accepted during one more period so that a
 * client answering just after a rotation is not turned away, and refused
 * after that.
 *
 * Pure: time comes in as `now` (ms), randomness from an injectable source.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { defaultRandom, type RandomSource } from '../crypto/random.ts';
import { addressOctets } from './address.ts';

export const COOKIE_VERSION_LENGTH = 4;
export const COOKIE_HASH_LENGTH = 32;
/** Length of the cookies made here (RFC 7296 allows 1..64 octets). */
export const COOKIE_LENGTH = COOKIE_VERSION_LENGTH + COOKIE_HASH_LENGTH;

export interface CookieConfig {
  /** Demand cookies when this many (or more) IKE SAs are half-open. 0 = always. */
  readonly halfOpenThreshold: number;
  /** How long a secret makes new cookies; it verifies for one period more. */
  readonly secretLifetimeMs: number;
  /** Octets of each secret (default 32). */
  readonly secretLength?: number;
}

export const DEFAULT_COOKIE_CONFIG: CookieConfig = Object.freeze({
  // strongSwan's default (charon.cookie_threshold).
  halfOpenThreshold: 10,
  secretLifetimeMs: 120_000,
});

interface Secret {
  readonly version: number;
  readonly value: Buffer;
  readonly createdAt: number;
}

export class CookieGuard {
  private current: Secret | undefined;
  private previous: Secret | undefined;
  private nextVersion: number;
  private readonly secretLength: number;

  constructor(
    readonly config: CookieConfig,
    private readonly rng: RandomSource = defaultRandom(),
  ) {
    if (!(config.secretLifetimeMs > 0)) throw new RangeError('secretLifetimeMs must be > 0');
    if (!(config.halfOpenThreshold >= 0)) throw new RangeError('halfOpenThreshold must be >= 0');
    this.secretLength = config.secretLength ?? 32;
    if (this.secretLength < 16) throw new RangeError('secretLength must be >= 16');
    // A random start makes a restarted responder unlikely to reuse a version a
    // client still holds (such a cookie would simply fail, but fail clearly).
    this.nextVersion = rng.bytes(4).readUInt32BE(0);
  }

  /** RFC 7296 2.6: demand a cookie once the half-open count reaches the threshold. */
  shouldDemandCookie(halfOpenCount: number): boolean {
    return halfOpenCount >= this.config.halfOpenThreshold;
  }

  /**
   * The cookie to send in N(COOKIE) for an IKE_SA_INIT request with nonce
   * `ni` from `ipI` (text or octets) with initiator SPI `spiI`.
   */
  makeCookie(ni: Uint8Array, ipI: string | Uint8Array, spiI: Uint8Array, now: number): Buffer {
    const secret = this.currentSecret(now);
    const out = Buffer.alloc(COOKIE_LENGTH);
    out.writeUInt32BE(secret.version, 0);
    hash(ni, ipI, spiI, secret.value).copy(out, COOKIE_VERSION_LENGTH);
    return out;
  }

  /**
   * Whether `cookie` (the data of the N(COOKIE) the initiator returned) was
   * made by us for this nonce, address and SPI, with the current secret or
   * the previous one within its grace period. Constant time in the hash.
   */
  verifyCookie(cookie: Uint8Array, ni: Uint8Array, ipI: string | Uint8Array, spiI: Uint8Array, now: number): boolean {
    if (cookie.length !== COOKIE_LENGTH) return false;
    this.rotate(now);
    const version = Buffer.from(cookie.buffer, cookie.byteOffset, cookie.length).readUInt32BE(0);
    const secret = [this.current, this.previous].find((s) => s !== undefined && s.version === version);
    if (!secret) return false;
    let expected: Buffer;
    try {
      expected = hash(ni, ipI, spiI, secret.value);
    } catch {
      return false;
    }
    return timingSafeEqual(expected, cookie.subarray(COOKIE_VERSION_LENGTH));
  }

  /** Version ID of the secret currently making cookies (for logs and tests). */
  currentVersion(now: number): number {
    return this.currentSecret(now).version;
  }

  private currentSecret(now: number): Secret {
    this.rotate(now);
    if (!this.current) this.current = this.newSecret(now);
    return this.current;
  }

  /**
   * Replaces secrets whose time is up. A secret makes cookies for one
   * lifetime, verifies for one more, then is forgotten; after a long idle
   * gap both are dropped at once.
   */
  private rotate(now: number): void {
    const life = this.config.secretLifetimeMs;
    if (this.previous && now >= this.previous.createdAt + 2 * life) this.previous = undefined;
    if (!this.current || now < this.current.createdAt + life) return;
    if (now < this.current.createdAt + 2 * life) {
      this.previous = this.current;
      // Periods stay aligned to the first secret even when rotation happens
      // lazily, so a retired secret verifies for exactly one period more.
      this.current = this.newSecret(this.current.createdAt + life);
    } else {
      this.previous = undefined;
      this.current = undefined;
    }
  }

  private newSecret(now: number): Secret {
    const version = this.nextVersion;
    this.nextVersion = (this.nextVersion + 1) >>> 0;
    return { version, value: this.rng.bytes(this.secretLength), createdAt: now };
  }
}

function hash(ni: Uint8Array, ipI: string | Uint8Array, spiI: Uint8Array, secret: Buffer): Buffer {
  return createHash('sha256').update(ni).update(addressOctets(ipI)).update(spiI).update(secret).digest();
}
