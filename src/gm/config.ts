/**
 * Group member configuration: YAML text in, a typed `GmConfig` out, or every
 * problem found as ConfigError{path, reason} (same reader as the key server).
 *
 *   identity: gm1@example.org
 *   credentials: {psk: {secret: ...}} | {certificate: f, privateKey: f, trustAnchors: [f]}
 *   keyServers: [{address: 192.0.2.1, port: 500, id: "@gcks.example"}, ...]   # priority order
 *   ike: {proposals: [...], keyWrap: [kw_5649_256, kw_arx]}
 *   groups:
 *     - id: {type: ID_KEY_ID, value: video}
 *       role: receiver | sender | both
 *       senderIds: 1
 *       accept:                       # one set, or a list of dependent sets (SAg Proposal Num)
 *         rekey: {encryption: [...], integrity: [...], keyWrap: [...], authentication: [signature]}
 *         dataSecurity: {protocols: [esp], encryption: [...], integrity: [...], sequenceNumbers: [...]}
 *         modes: [transport, tunnel]
 */
import { isIPv4, isIPv6 } from 'node:net';
import { isAeadEncr } from '../crypto/cipher.ts';
import { GcauthId, KwaId, Port, ProtocolId, SnId } from '../wire/iana.ts';
import { joinField, readConfig, unwrapConfig, type ConfigResult, type FieldReader } from '../gcks/config-fields.ts';
import { readIdentity, type Identity } from '../gcks/config-identities.ts';
import { readIke, readNamedList, readSecret, type DataSecurityMode } from '../gcks/config.ts';
import { ENCR_NAMES, GCAUTH_NAMES, INTEG_NAMES, KWA_NAMES, SN_NAMES, type EncrAlgorithm } from '../gcks/transform-names.ts';

// ----------------------------------------------------------------- defaults

/** AEAD ciphers only: AES-GCM-16 (256, 128) and ChaCha20-Poly1305. CBC must be asked for. */
export const DEFAULT_ACCEPT_ENCRYPTION: readonly string[] = Object.freeze(['aes256gcm16', 'aes128gcm16', 'chacha20poly1305']);
/** Used only with a non-AEAD cipher or AH. SHA-1 is left out (RFC 8221 demotes it). */
export const DEFAULT_ACCEPT_INTEGRITY: readonly string[] = Object.freeze(['sha256', 'sha384', 'sha512']);
/** A member verifies anti-replay locally if it wants (RFC 9838 2.6), so it can live with either. */
export const DEFAULT_ACCEPT_SEQUENCE_NUMBERS: readonly string[] = Object.freeze(['seq32', 'unspecified32']);
/** 256-bit key wrap keys only, so a wrapped AES-256 key is never weaker than itself (RFC 9838 3.1). */
export const DEFAULT_ACCEPT_KEY_WRAP: readonly number[] = Object.freeze([KwaId.KW_5649_256, KwaId.KW_ARX]);
/**
 * Signed rekeys only: with Implicit authentication any other member could
 * forge GSA_REKEY messages (RFC 9838 4.4.2.1.1). Add `implicit` to trust them.
 */
export const DEFAULT_ACCEPT_AUTHENTICATION: readonly number[] = Object.freeze([GcauthId.DIGITAL_SIGNATURE]);
export const DEFAULT_ROLE: MemberRole = 'receiver';

// ----------------------------------------------------------------- types

export type MemberRole = 'receiver' | 'sender' | 'both';

export interface KeyServerConfig {
  readonly address: string;
  readonly port: number;
  /** The key server's expected IDr; any authenticated identity when absent. */
  readonly id?: Identity | undefined;
}

export interface AcceptableRekey {
  readonly encryption: readonly EncrAlgorithm[];
  readonly integrity: readonly number[];
  readonly keyWrap: readonly number[];
  /** GcauthId values. */
  readonly authentication: readonly number[];
}

export interface AcceptableDataSecurity {
  readonly protocols: readonly (typeof ProtocolId.ESP | typeof ProtocolId.AH)[];
  readonly encryption: readonly EncrAlgorithm[];
  readonly integrity: readonly number[];
  readonly sequenceNumbers: readonly number[];
}

/** One set of algorithms the member can use together (one SAg Proposal Num). */
export interface AcceptableTransforms {
  readonly rekey: AcceptableRekey;
  readonly dataSecurity: AcceptableDataSecurity;
  readonly modes: readonly DataSecurityMode[];
}

export interface GmGroupConfig {
  readonly id: Identity;
  readonly role: MemberRole;
  /** N(GROUP_SENDER) count; 0 when the member only receives. */
  readonly senderIds: number;
  /** Alternatives in preference order; alternative i is SAg Proposal Num i + 1. */
  readonly accept: readonly AcceptableTransforms[];
}

export interface GmCredentials {
  readonly psk?: Buffer | undefined;
  readonly certificateFile?: string | undefined;
  readonly privateKeyFile?: string | undefined;
  readonly trustAnchorFiles: readonly string[];
}

export interface GmConfig {
  readonly source: string;
  readonly identity: Identity;
  readonly credentials: GmCredentials;
  /** Tried in this order; the next one when a server does not answer. */
  readonly keyServers: readonly KeyServerConfig[];
  readonly ike: { readonly proposals: readonly string[]; readonly keyWrap: readonly number[] };
  readonly groups: readonly GmGroupConfig[];
}

// ----------------------------------------------------------------- entry points

export function loadGmConfig(text: string, sourceName: string): GmConfig {
  return unwrapConfig(checkGmConfig(text, sourceName), sourceName);
}

export function checkGmConfig(text: string, sourceName: string): ConfigResult<GmConfig> {
  return readConfig(text, (doc, r) => readGmConfig(r, doc, sourceName));
}

function readGmConfig(r: FieldReader, doc: unknown, source: string): GmConfig | undefined {
  const m = r.map('', doc, ['identity', 'credentials', 'keyServers', 'ike', 'groups']);
  if (!m) return undefined;
  const identity = readIdentity(r, 'identity', r.required('', m, 'identity'));
  const credentials = readCredentials(r, 'credentials', r.required('', m, 'credentials'));
  const keyServers = readKeyServers(r, 'keyServers', r.required('', m, 'keyServers'));
  const ike = readIke(r, 'ike', m['ike']);
  const groups = readGroups(r, 'groups', r.required('', m, 'groups'));
  if (!identity || !credentials || !keyServers || !ike || !groups) return undefined;
  return { source, identity, credentials, keyServers, ike, groups };
}

function readCredentials(r: FieldReader, path: string, value: unknown): GmCredentials | undefined {
  if (value === undefined) return undefined;
  const m = r.map(path, value, ['psk', 'certificate', 'privateKey', 'trustAnchors']);
  if (!m) return undefined;
  let psk: Buffer | undefined;
  if (m['psk'] !== undefined) {
    const pm = r.map(joinField(path, 'psk'), m['psk'], ['secret', 'secretHex']);
    psk = pm && readSecret(r, joinField(path, 'psk'), pm);
  }
  const certificateFile = m['certificate'] === undefined ? undefined : r.string(joinField(path, 'certificate'), m['certificate']);
  const privateKeyFile = m['privateKey'] === undefined ? undefined : r.string(joinField(path, 'privateKey'), m['privateKey']);
  if ((certificateFile === undefined) !== (privateKeyFile === undefined)) r.fail(path, 'certificate and privateKey go together');
  if (m['psk'] === undefined && m['certificate'] === undefined) r.fail(path, 'needs a psk or a certificate');
  const anchors = m['trustAnchors'] === undefined ? [] : (r.list(joinField(path, 'trustAnchors'), m['trustAnchors']) ?? []);
  const trustAnchorFiles = anchors.flatMap((a, i) => r.string(joinField(joinField(path, 'trustAnchors'), i), a) ?? []);
  return { psk, certificateFile, privateKeyFile, trustAnchorFiles };
}

function readKeyServers(r: FieldReader, path: string, value: unknown): KeyServerConfig[] | undefined {
  if (value === undefined) return undefined;
  const items = r.list(path, value);
  if (!items) return undefined;
  if (items.length === 0) return r.fail(path, 'needs at least one key server');
  return items.flatMap((item, i) => {
    const p = joinField(path, i);
    const m = r.map(p, item, ['address', 'port', 'id']);
    if (!m) return [];
    const address = r.string(joinField(p, 'address'), r.required(p, m, 'address'));
    if (address !== undefined && !isIPv4(address) && !isIPv6(address)) r.fail(joinField(p, 'address'), 'must be an IP address');
    const port = m['port'] === undefined ? Port.IKE : r.integer(joinField(p, 'port'), m['port'], 1, 0xffff);
    const id = m['id'] === undefined ? undefined : readIdentity(r, joinField(p, 'id'), m['id']);
    if (address === undefined || port === undefined || (m['id'] !== undefined && !id)) return [];
    return [{ address, port, id }];
  });
}

function readGroups(r: FieldReader, path: string, value: unknown): GmGroupConfig[] | undefined {
  if (value === undefined) return undefined;
  const items = r.list(path, value);
  if (!items) return undefined;
  if (items.length === 0) r.fail(path, 'needs at least one group');
  const groups = items.flatMap((g, i) => readGroup(r, joinField(path, i), g) ?? []);
  const seen = new Set<string>();
  groups.forEach((g, i) => {
    const key = `${g.id.idType}:${g.id.data.toString('hex')}`;
    if (seen.has(key)) r.fail(joinField(joinField(path, i), 'id'), 'the same group is listed twice');
    seen.add(key);
  });
  return groups;
}

function readGroup(r: FieldReader, path: string, value: unknown): GmGroupConfig | undefined {
  const m = r.map(path, value, ['id', 'role', 'senderIds', 'accept']);
  if (!m) return undefined;
  const id = readIdentity(r, joinField(path, 'id'), r.required(path, m, 'id'));
  const role = m['role'] === undefined ? DEFAULT_ROLE : r.choice(joinField(path, 'role'), m['role'], ['receiver', 'sender', 'both'] as const);
  let senderIds = role === 'receiver' ? 0 : 1;
  if (m['senderIds'] !== undefined) {
    if (role === 'receiver') r.fail(joinField(path, 'senderIds'), 'only a sender asks for Sender-IDs');
    senderIds = r.integer(joinField(path, 'senderIds'), m['senderIds'], 1, 0xffff) ?? 1;
  }
  const alternatives = m['accept'] === undefined ? [undefined] : r.listOrOne(joinField(path, 'accept'), m['accept']);
  if (alternatives.length === 0) r.fail(joinField(path, 'accept'), 'needs at least one set of transforms');
  if (alternatives.length > 255) r.fail(joinField(path, 'accept'), 'at most 255 sets (Proposal Num is one octet)');
  const listed = Array.isArray(m['accept']);
  const accept = alternatives.flatMap((a, i) => readAccept(r, listed ? joinField(joinField(path, 'accept'), i) : joinField(path, 'accept'), a) ?? []);
  if (!id || !role || accept.length !== alternatives.length) return undefined;
  return { id, role, senderIds, accept };
}

function readAccept(r: FieldReader, path: string, value: unknown): AcceptableTransforms | undefined {
  const m = value === undefined ? {} : r.map(path, value, ['rekey', 'dataSecurity', 'modes']);
  if (!m) return undefined;
  const rekey = readAcceptRekey(r, joinField(path, 'rekey'), m['rekey']);
  const dataSecurity = readAcceptDataSecurity(r, joinField(path, 'dataSecurity'), m['dataSecurity']);
  const modes =
    m['modes'] === undefined
      ? (['transport', 'tunnel'] as DataSecurityMode[])
      : r.listOrOne(joinField(path, 'modes'), m['modes']).flatMap((v, i) => r.choice(joinField(joinField(path, 'modes'), i), v, ['transport', 'tunnel'] as const) ?? []);
  if (!rekey || !dataSecurity) return undefined;
  return { rekey, dataSecurity, modes };
}

function nonEmpty<T>(r: FieldReader, path: string, list: T[]): T[] | undefined {
  return list.length === 0 ? r.fail(path, 'must list at least one') : list;
}

function readAcceptRekey(r: FieldReader, path: string, value: unknown): AcceptableRekey | undefined {
  const m = value === undefined ? {} : r.map(path, value, ['encryption', 'integrity', 'keyWrap', 'authentication']);
  if (!m) return undefined;
  const f = (k: string): string => joinField(path, k);
  const encryption = nonEmpty(r, f('encryption'), readNamedList(r, f('encryption'), m['encryption'] ?? DEFAULT_ACCEPT_ENCRYPTION, ENCR_NAMES));
  const integrity = readNamedList(r, f('integrity'), m['integrity'] ?? DEFAULT_ACCEPT_INTEGRITY, INTEG_NAMES);
  const keyWrap = m['keyWrap'] === undefined ? [...DEFAULT_ACCEPT_KEY_WRAP] : nonEmpty(r, f('keyWrap'), readNamedList(r, f('keyWrap'), m['keyWrap'], KWA_NAMES));
  const authentication =
    m['authentication'] === undefined
      ? [...DEFAULT_ACCEPT_AUTHENTICATION]
      : nonEmpty(r, f('authentication'), readNamedList(r, f('authentication'), m['authentication'], GCAUTH_NAMES));
  if (encryption && encryption.some((e) => !isAeadEncr(e.id)) && integrity.length === 0) {
    r.fail(f('integrity'), 'a non-AEAD cipher needs an integrity algorithm');
  }
  if (!encryption || !keyWrap || !authentication) return undefined;
  return { encryption, integrity, keyWrap, authentication };
}

function readAcceptDataSecurity(r: FieldReader, path: string, value: unknown): AcceptableDataSecurity | undefined {
  const m = value === undefined ? {} : r.map(path, value, ['protocols', 'encryption', 'integrity', 'sequenceNumbers']);
  if (!m) return undefined;
  const f = (k: string): string => joinField(path, k);
  const protocols = nonEmpty(
    r,
    f('protocols'),
    r.listOrOne(f('protocols'), m['protocols'] ?? ['esp']).flatMap((v, i) => {
      const p = r.choice(joinField(f('protocols'), i), v, ['esp', 'ah'] as const);
      return p === undefined ? [] : [p === 'esp' ? ProtocolId.ESP : ProtocolId.AH];
    }),
  );
  const encryption = readNamedList(r, f('encryption'), m['encryption'] ?? DEFAULT_ACCEPT_ENCRYPTION, ENCR_NAMES);
  const integrity = readNamedList(r, f('integrity'), m['integrity'] ?? DEFAULT_ACCEPT_INTEGRITY, INTEG_NAMES);
  const sequenceNumbers = nonEmpty(r, f('sequenceNumbers'), readNamedList(r, f('sequenceNumbers'), m['sequenceNumbers'] ?? DEFAULT_ACCEPT_SEQUENCE_NUMBERS, SN_NAMES));
  if (protocols?.includes(ProtocolId.ESP) && encryption.length === 0) r.fail(f('encryption'), 'ESP needs at least one cipher');
  if (protocols?.includes(ProtocolId.AH) && integrity.length === 0) r.fail(f('integrity'), 'AH needs an integrity algorithm');
  if (!protocols || !sequenceNumbers) return undefined;
  return { protocols, encryption, integrity, sequenceNumbers: sequenceNumbers.filter((s) => s !== SnId.ESN64_PARTIAL) };
}
