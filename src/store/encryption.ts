/**
 * Key material at rest: AES-256-GCM under a key-encryption key (KEK) that
 * the operator keeps outside the state directory (`--state-key-file` or
 * `GIKEV2_STATE_KEY`). A stolen state directory or backup without the KEK
 * reveals no key.
 *
 * Sealed record: version (1 octet, 0x01) | nonce (12, random per write) |
 * ciphertext | tag (16). Nonces are drawn from the system CSPRNG in batches
 * (one call per 256 seals: a registration seals a few records, and a call
 * per nonce was a noticeable part of its cost); each is used once. The AAD names the table and the record's primary
 * key, so a ciphertext copied into another row (another SA, another group)
 * fails authentication instead of handing out the wrong key.
 *
 * A key check value (a sealed constant in the meta table) lets start-up tell
 * a wrong KEK from a corrupt record; the KEK id (an HMAC of the KEK) names the
 * KEK in messages without revealing it.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { relative, isAbsolute, resolve } from 'node:path';
import { StateError } from './errors.ts';

export const KEK_LENGTH = 32;
export const KEK_ENV_VARIABLE = 'GIKEV2_STATE_KEY';
const SEAL_VERSION = 0x01;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
const NONCES_PER_DRAW = 256;
const KEY_CHECK_PLAINTEXT = Buffer.from('gikev2 state key check v1', 'utf8');

const KEK_FORMAT_ADVICE =
  `give 32 random octets as 64 hex digits or base64, e.g. \`openssl rand -hex 32 > /etc/gikev2/state.key\` (keep it outside the state directory), via --state-key-file or ${KEK_ENV_VARIABLE}`;

/** The AAD of one record: table and primary key, unambiguously encoded. */
export function recordAad(table: string, ...id: readonly string[]): Buffer {
  return Buffer.from(JSON.stringify(['gikev2-state', table, ...id]), 'utf8');
}

export class StateKek {
  readonly #key: Buffer;
  #nonces: Buffer = Buffer.alloc(0);
  #nonceOffset = 0;
  /** 16 hex digits naming this KEK (HMAC-SHA-256 of a label): safe to log. */
  readonly id: string;

  constructor(key: Uint8Array) {
    if (key.length !== KEK_LENGTH) {
      throw new StateError('KEK_INVALID', `the state key-encryption key is ${key.length} octets, it must be ${KEK_LENGTH}`, KEK_FORMAT_ADVICE);
    }
    this.#key = Buffer.from(key);
    this.id = createHmac('sha256', this.#key).update('gikev2 state KEK id').digest('hex').slice(0, 16);
  }

  /** A fresh random KEK (tests, `gikev2 state init-key` later). */
  static generate(): StateKek {
    return new StateKek(randomBytes(KEK_LENGTH));
  }

  seal(plaintext: Uint8Array, aad: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(1 + NONCE_LENGTH + plaintext.length + TAG_LENGTH);
    out[0] = SEAL_VERSION;
    const nonce = out.subarray(1, 1 + NONCE_LENGTH);
    this.nextNonce(nonce);
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_LENGTH });
    cipher.setAAD(aad);
    let at = 1 + NONCE_LENGTH;
    at += cipher.update(plaintext).copy(out, at);
    at += cipher.final().copy(out, at);
    cipher.getAuthTag().copy(out, at);
    return out;
  }

  /** Writes a fresh random nonce into `target` (never the same pool octets twice). */
  private nextNonce(target: Buffer): void {
    if (this.#nonceOffset + NONCE_LENGTH > this.#nonces.length) {
      this.#nonces = randomBytes(NONCE_LENGTH * NONCES_PER_DRAW);
      this.#nonceOffset = 0;
    }
    this.#nonces.copy(target, 0, this.#nonceOffset, this.#nonceOffset + NONCE_LENGTH);
    this.#nonceOffset += NONCE_LENGTH;
  }

  /** The plaintext, or undefined when the record does not authenticate under this KEK and AAD. */
  open(sealed: Uint8Array, aad: Uint8Array): Buffer | undefined {
    if (sealed.length < 1 + NONCE_LENGTH + TAG_LENGTH || sealed[0] !== SEAL_VERSION) return undefined;
    const nonce = sealed.subarray(1, 1 + NONCE_LENGTH);
    const body = sealed.subarray(1 + NONCE_LENGTH, sealed.length - TAG_LENGTH);
    const tag = sealed.subarray(sealed.length - TAG_LENGTH);
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_LENGTH });
      decipher.setAAD(aad);
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(body), decipher.final()]);
    } catch {
      return undefined;
    }
  }

  /** The key check value stored with the state. */
  keyCheckValue(): Buffer {
    return this.seal(KEY_CHECK_PLAINTEXT, recordAad('meta', 'kek-check'));
  }

  matchesKeyCheckValue(kcv: Uint8Array): boolean {
    const p = this.open(kcv, recordAad('meta', 'kek-check'));
    return p !== undefined && p.equals(KEY_CHECK_PLAINTEXT);
  }
}

/**
 * Parses a KEK given as text: 64 hex digits, or base64 / base64url of 32
 * octets; surrounding whitespace ignored. `source` names where it came from
 * in the error (never the value).
 */
export function parseKek(text: string, source: string): StateKek {
  const t = text.trim();
  let bytes: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(t)) bytes = Buffer.from(t, 'hex');
  else if (/^[A-Za-z0-9+/_-]{43}={0,1}$/.test(t)) bytes = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (bytes?.length !== KEK_LENGTH) {
    throw new StateError('KEK_INVALID', `${source} does not hold a 32-octet key (expected 64 hex digits or 44 base64 characters)`, KEK_FORMAT_ADVICE);
  }
  return new StateKek(bytes);
}

export interface KekSource {
  /** `--state-key-file`: takes precedence over the environment. */
  readonly keyFile?: string | undefined;
  /** Defaults to process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** The state directory: a key file inside it is refused. */
  readonly stateDir?: string | undefined;
}

export interface LoadedKek {
  readonly kek: StateKek;
  readonly source: string;
  /** E.g. a key file readable by group or others. */
  readonly warnings: readonly string[];
}

/**
 * Loads the KEK from the key file or the environment variable; undefined
 * when neither is set (the store then refuses to open with KEK_MISSING).
 * A key file may hold the text forms or exactly 32 raw octets.
 */
export function loadKek(source: KekSource = {}): LoadedKek | undefined {
  const warnings: string[] = [];
  if (source.keyFile !== undefined) {
    const file = resolve(source.keyFile);
    if (source.stateDir !== undefined && isInside(file, source.stateDir)) {
      throw new StateError(
        'KEK_BESIDE_DATA',
        `the state key file ${file} lies inside the state directory ${source.stateDir}: anyone with a copy of the state would have the key too`,
        'move the key file out of the state directory (e.g. to /etc/gikev2/state.key, mode 0600) and point --state-key-file at it',
        { path: file },
      );
    }
    let raw: Buffer;
    try {
      raw = readFileSync(file);
      const mode = statSync(file).mode;
      if ((mode & 0o077) !== 0) warnings.push(`state key file ${file} is accessible by group or others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`);
    } catch (e) {
      throw new StateError('KEK_MISSING', `cannot read the state key file ${file}: ${(e as Error).message}`, `check the path and permissions of --state-key-file`, { path: file, cause: e });
    }
    const kek = raw.length === KEK_LENGTH ? new StateKek(raw) : parseKek(raw.toString('latin1'), `state key file ${file}`);
    raw.fill(0);
    return { kek, source: `file ${file}`, warnings };
  }
  const env = source.env ?? process.env;
  const value = env[KEK_ENV_VARIABLE];
  if (value !== undefined && value !== '') {
    return { kek: parseKek(value, `environment variable ${KEK_ENV_VARIABLE}`), source: `environment variable ${KEK_ENV_VARIABLE}`, warnings };
  }
  return undefined;
}

export function missingKekError(stateDir: string): StateError {
  return new StateError(
    'KEK_MISSING',
    `no key-encryption key for the state in ${stateDir}: key material is stored encrypted and cannot be written or read without it`,
    `${KEK_FORMAT_ADVICE}; an existing state directory needs the KEK it was created with`,
    { path: stateDir },
  );
}

function isInside(file: string, dir: string): boolean {
  const real = (p: string): string => {
    try {
      return realpathSync(p);
    } catch {
      return resolve(p);
    }
  };
  const rel = relative(real(dir), real(file));
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}
