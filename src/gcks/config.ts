/**
 * Key server (GCKS) configuration: YAML text in, a typed `GcksConfig` out,
 * or every problem found as ConfigError{path, reason}. Pure: files named in
 * the configuration (certificates, keys) are read by the caller (src/node).
 *
 * Every default below is written next to its reason; they are the choices an
 * operator gets by saying nothing, so they lean to the safe side.
 */
import { ProposalSyntaxError, parseIkeProposal } from '../ike/proposal.ts';
import { encrKeyLength, isAeadEncr } from '../crypto/cipher.ts';
import { kwaKeyLength } from '../crypto/keywrap.ts';
import { IntegId, KwaId, Port, ProtocolId } from '../wire/iana.ts';
import { isIPv4, isIPv6 } from 'node:net';
import { readAccessRules, type AccessRules } from './access-rules.ts';
import {
  joinField,
  readConfig,
  unwrapConfig,
  type ConfigResult,
  type FieldReader,
  type YamlMap,
} from './config-fields.ts';
import { readIdentity, readIdentityPattern, type Identity, type IdentityPattern } from './config-identities.ts';
import { isMulticastRange, isSingleAddress, readSelector, resolveSelectorPair, UDP, type RangeTrafficSelector, type SelectorSpec } from './config-selectors.ts';
import { ENCR_NAMES, GCAUTH_NAMES, INTEG_NAMES, KWA_NAMES, SN_NAMES, type EncrAlgorithm, type RekeyAuthenticationName } from './transform-names.ts';

// ----------------------------------------------------------------- defaults

/**
 * IKE ports of RFC 9838 2.1.1 ("SHOULD use the IKEv2 ports"): 500, and 4500
 * with the non-ESP marker for NAT traversal. 848 (GDOI's port) is opt-in.
 */
export const DEFAULT_LISTEN: readonly ListenSocket[] = Object.freeze([
  { address: '0.0.0.0', port: Port.IKE, nonEspMarker: false },
  { address: '0.0.0.0', port: Port.IKE_NATT, nonEspMarker: true },
]);
/** AES-GCM-16 with 256-bit keys and X25519: AEAD, constant-time in hardware and in node, 128-bit security. */
export const DEFAULT_IKE_PROPOSALS: readonly string[] = Object.freeze(['aes256gcm16-prfsha256-x25519']);
/**
 * Key wrap for the registration IKE SA: RFC 5649 with a 256-bit KWK first
 * (so the KWK is never shorter than a 256-bit group key, RFC 9838 3.1), then
 * ARX-KW for members without AES.
 */
export const DEFAULT_IKE_KEY_WRAP: readonly number[] = Object.freeze([KwaId.KW_5649_256, KwaId.KW_ARX]);
/** Data-Security and Rekey SA cipher: AES-GCM-16/256, an AEAD, so no separate INTEG transform. */
export const DEFAULT_ENCRYPTION = 'aes256gcm16';
/** INTEG when a non-AEAD cipher is configured without one: HMAC-SHA-256-128. */
export const DEFAULT_INTEGRITY_FOR_CBC = 'sha256';
/**
 * 32-bit Unspecified Numbers. RFC 9838 2.6 / 4.4.2.1.3: an SA with several
 * senders cannot have unique sequence numbers and MUST use this value; the
 * GCKS cannot know at configuration time that a group will only ever have one
 * sender, so the default is the value that is right for any number of them.
 * Choose seq32 only for a single-sender SA rekeyed before 2^32 packets.
 */
export const DEFAULT_SEQUENCE_NUMBERS = 'unspecified32';
/** One hour: short enough that a leaked TEK exposes little, long enough that rekeys are rare events. */
export const DEFAULT_TEK_LIFETIME_SECONDS = 3600;
/** One day for the KEK: it only protects rekey messages, which are few. */
export const DEFAULT_KEK_LIFETIME_SECONDS = 86400;
/** RFC 5649 with a 256-bit KWK for the Rekey SA: never weaker than an AES-256 TEK (RFC 9838 3.1). */
export const DEFAULT_REKEY_KEY_WRAP = 'kw_5649_256';
/**
 * Signed rekeys. With Implicit authentication every member holds the KEK and
 * could forge GSA_REKEY messages to the rest of the group (RFC 9838 4.4.2.1.1).
 */
export const DEFAULT_REKEY_AUTHENTICATION: RekeyAuthenticationName = 'signature';
/** GSA_REKEY to UDP 848 unless told otherwise: the port RFC 9838 2.1.1 offers for G-IKEv2. */
export const DEFAULT_REKEY_PORT = Port.GDOI;
/**
 * Tunnel mode with address preservation: what RFC 9838 2.3.4 means when the
 * response carries no USE_TRANSPORT_MODE, so members that ignore the notify
 * still agree with us.
 */
export const DEFAULT_MODE: DataSecurityMode = 'tunnel';
/**
 * 16 Sender-ID bits (RFC 6054 Section 3 leaves the size to policy): 65,536
 * Sender-IDs per set of TEKs before everyone must be excluded (RFC 9838
 * 2.5.1), and 48 bits of counter per sender in a 64-bit IV.
 */
export const DEFAULT_SENDER_ID_BITS = 16;
/** Policy cap on Sender-IDs per registration (RFC 9838 2.5.1 "policy-defined upper bound"). */
export const DEFAULT_MAX_SENDER_IDS_PER_MEMBER = 8;
/** Members per group before REGISTRATION_FAILED; bounds memory, raise it for large groups. */
export const DEFAULT_CAPACITY = 10_000;
/**
 * Shortest accepted pre-shared key, in octets: IKEv2 PSK authentication can
 * be attacked offline by anyone who completes one exchange (RFC 7296 2.15),
 * so short secrets are refused rather than warned about.
 */
export const MIN_PSK_LENGTH = 16;

const MIN_LIFETIME = 60;
const MAX_LIFETIME = 0x7fffffff;

// ----------------------------------------------------------------- types

export type DataSecurityMode = 'transport' | 'tunnel';

export interface ListenSocket {
  readonly address: string;
  readonly port: number;
  /** UDP-encapsulated IKE with the 4-octet non-ESP marker (RFC 3948), as on port 4500. */
  readonly nonEspMarker: boolean;
}

export interface PskEntry {
  /** Which members use this secret: `any`, one identity, or a pattern. */
  readonly member: { readonly kind: 'any' } | { readonly kind: 'id'; readonly id: Identity } | { readonly kind: 'pattern'; readonly pattern: IdentityPattern };
  readonly secret: Buffer;
}

export interface GcksCredentials {
  readonly psks: readonly PskEntry[];
  /** PEM files: our certificate (chain) and its private key. */
  readonly certificateFile?: string | undefined;
  readonly privateKeyFile?: string | undefined;
  readonly trustAnchorFiles: readonly string[];
}

export interface DataSecurityPolicyConfig {
  readonly protocolId: typeof ProtocolId.ESP | typeof ProtocolId.AH;
  readonly source: RangeTrafficSelector;
  readonly destination: RangeTrafficSelector;
  /** ESP only. */
  readonly encryption?: EncrAlgorithm | undefined;
  /** IntegId; NONE with an AEAD cipher. */
  readonly integrity: number;
  /** SnId. */
  readonly sequenceNumbers: number;
  readonly lifetimeSeconds: number;
}

export interface MulticastRekeyConfig {
  readonly kind: 'multicast';
  readonly source: RangeTrafficSelector;
  readonly destination: RangeTrafficSelector;
  readonly encryption: EncrAlgorithm;
  /** IntegId; NONE with an AEAD cipher. */
  readonly integrity: number;
  /** KwaId. */
  readonly keyWrap: number;
  readonly authentication: RekeyAuthenticationName;
  /** GcauthId of `authentication`. */
  readonly gcauth: number;
  /** PEM private key (Ed25519, ECDSA or RSA, signed with RSA-PSS); required with `signature`. */
  readonly signingKeyFile?: string | undefined;
  readonly lifetimeSeconds: number;
}

/** No Rekey SA: keys are replaced with GSA_INBAND_REKEY over each member's IKE SA. */
export interface InbandRekeyConfig {
  readonly kind: 'inband';
}

export type RekeyConfig = MulticastRekeyConfig | InbandRekeyConfig;

export interface GroupConfig {
  /** Operator's name for logs and the CLI. */
  readonly name: string;
  /** IDg (RFC 9838 Section 4.2). */
  readonly id: Identity;
  readonly capacity: number;
  readonly members: AccessRules;
  readonly senders: AccessRules;
  readonly mode: DataSecurityMode;
  /** GWP_ATD / GWP_DTD in seconds (RFC 9838 4.4.3.1.1); absent: not sent. */
  readonly activationDelaySeconds?: number | undefined;
  readonly deactivationDelaySeconds?: number | undefined;
  readonly senderIdBits: number;
  readonly maxSenderIdsPerMember: number;
  readonly dataSecurity: readonly DataSecurityPolicyConfig[];
  readonly rekey: RekeyConfig;
}

export interface GcksConfig {
  /** Where the text came from, for messages. */
  readonly source: string;
  readonly identity: Identity;
  readonly listen: readonly ListenSocket[];
  readonly credentials: GcksCredentials;
  readonly ike: { readonly proposals: readonly string[]; readonly keyWrap: readonly number[] };
  readonly groups: readonly GroupConfig[];
}

// ----------------------------------------------------------------- entry points

/** Parses and validates; throws InvalidConfigError listing every problem. */
export function loadGcksConfig(text: string, sourceName: string): GcksConfig {
  return unwrapConfig(checkGcksConfig(text, sourceName), sourceName);
}

/** As loadGcksConfig, returning the errors instead of throwing. */
export function checkGcksConfig(text: string, sourceName: string): ConfigResult<GcksConfig> {
  return readConfig(text, (doc, r) => readGcksConfig(r, doc, sourceName));
}

const TOP_FIELDS = ['identity', 'listen', 'credentials', 'ike', 'groups'];

function readGcksConfig(r: FieldReader, doc: unknown, source: string): GcksConfig | undefined {
  const m = r.map('', doc, TOP_FIELDS);
  if (!m) return undefined;
  const identity = readIdentity(r, 'identity', r.required('', m, 'identity'));
  const listen = m['listen'] === undefined ? DEFAULT_LISTEN : readListen(r, 'listen', m['listen']);
  const credentials = readCredentials(r, 'credentials', m['credentials']);
  const ike = readIke(r, 'ike', m['ike']);
  const groups = readGroups(r, 'groups', r.required('', m, 'groups'));
  if (!identity || !listen || !credentials || !ike || !groups) return undefined;
  return { source, identity, listen, credentials, ike, groups };
}

function readListen(r: FieldReader, path: string, value: unknown): ListenSocket[] | undefined {
  const items = r.list(path, value);
  if (!items) return undefined;
  if (items.length === 0) return r.fail(path, 'needs at least one socket');
  const out: ListenSocket[] = [];
  const seen = new Set<string>();
  items.forEach((item, i) => {
    const p = joinField(path, i);
    const s = r.map(p, item, ['address', 'port', 'nonEspMarker']);
    if (!s) return;
    const address = s['address'] === undefined ? '0.0.0.0' : r.string(joinField(p, 'address'), s['address']);
    if (address !== undefined && !isIPv4(address) && !isIPv6(address)) r.fail(joinField(p, 'address'), 'must be an IP address');
    const port = r.integer(joinField(p, 'port'), r.required(p, s, 'port'), 1, 0xffff);
    const marker = s['nonEspMarker'] === undefined ? port === Port.IKE_NATT : r.boolean(joinField(p, 'nonEspMarker'), s['nonEspMarker']);
    if (address === undefined || port === undefined || marker === undefined) return;
    const key = `${address}|${port}`;
    if (seen.has(key)) r.fail(p, `${address} port ${port} is listed twice`);
    seen.add(key);
    out.push({ address, port, nonEspMarker: marker });
  });
  return out;
}

function readCredentials(r: FieldReader, path: string, value: unknown): GcksCredentials | undefined {
  if (value === undefined) return { psks: [], trustAnchorFiles: [] };
  const m = r.map(path, value, ['psks', 'certificate', 'privateKey', 'trustAnchors']);
  if (!m) return undefined;
  const psks = m['psks'] === undefined ? [] : readPsks(r, joinField(path, 'psks'), m['psks']);
  const certificateFile = m['certificate'] === undefined ? undefined : r.string(joinField(path, 'certificate'), m['certificate']);
  const privateKeyFile = m['privateKey'] === undefined ? undefined : r.string(joinField(path, 'privateKey'), m['privateKey']);
  if ((certificateFile === undefined) !== (privateKeyFile === undefined)) {
    r.fail(path, 'certificate and privateKey go together');
  }
  const anchors = m['trustAnchors'] === undefined ? [] : (r.list(joinField(path, 'trustAnchors'), m['trustAnchors']) ?? []);
  const trustAnchorFiles = anchors.flatMap((a, i) => r.string(joinField(joinField(path, 'trustAnchors'), i), a) ?? []);
  if (!psks) return undefined;
  return { psks, certificateFile, privateKeyFile, trustAnchorFiles };
}

function readPsks(r: FieldReader, path: string, value: unknown): PskEntry[] | undefined {
  const items = r.list(path, value);
  if (!items) return undefined;
  return items.flatMap((item, i) => {
    const p = joinField(path, i);
    const m = r.map(p, item, ['member', 'secret', 'secretHex']);
    if (!m) return [];
    const memberText = r.string(joinField(p, 'member'), r.required(p, m, 'member'));
    const member = memberText === undefined ? undefined : readPskMember(r, joinField(p, 'member'), memberText);
    const secret = readSecret(r, p, m);
    return member && secret ? [{ member, secret }] : [];
  });
}

function readPskMember(r: FieldReader, path: string, text: string): PskEntry['member'] | undefined {
  if (text === '*' || text.toLowerCase() === 'any') return { kind: 'any' };
  if (text.includes('*') || text.includes('?') || text.includes('/')) {
    const pattern = readIdentityPattern(r, path, text);
    return pattern && { kind: 'pattern', pattern };
  }
  const id = readIdentity(r, path, text);
  return id && { kind: 'id', id };
}

export function readSecret(r: FieldReader, path: string, m: YamlMap): Buffer | undefined {
  const hasText = m['secret'] !== undefined;
  if (hasText === (m['secretHex'] !== undefined)) return r.fail(path, 'needs exactly one of secret or secretHex');
  let secret: Buffer | undefined;
  if (hasText) {
    const s = r.string(joinField(path, 'secret'), m['secret']);
    secret = s === undefined ? undefined : Buffer.from(s, 'utf8');
  } else {
    const hex = r.string(joinField(path, 'secretHex'), m['secretHex'])?.replace(/[:\s]/g, '');
    if (hex !== undefined && !/^([0-9a-f]{2})+$/i.test(hex)) return r.fail(joinField(path, 'secretHex'), 'must be hex digits');
    secret = hex === undefined ? undefined : Buffer.from(hex, 'hex');
  }
  if (secret && secret.length < MIN_PSK_LENGTH) {
    return r.fail(joinField(path, hasText ? 'secret' : 'secretHex'), `must be at least ${MIN_PSK_LENGTH} octets (offline guessing, RFC 7296 2.15)`);
  }
  return secret;
}

export function readIke(r: FieldReader, path: string, value: unknown): GcksConfig['ike'] | undefined {
  if (value === undefined) return { proposals: DEFAULT_IKE_PROPOSALS, keyWrap: DEFAULT_IKE_KEY_WRAP };
  const m = r.map(path, value, ['proposals', 'keyWrap']);
  if (!m) return undefined;
  let proposals: string[] = [...DEFAULT_IKE_PROPOSALS];
  if (m['proposals'] !== undefined) {
    proposals = [];
    r.listOrOne(joinField(path, 'proposals'), m['proposals']).forEach((p, i) => {
      const at = joinField(joinField(path, 'proposals'), i);
      const text = r.string(at, p);
      if (text === undefined) return;
      try {
        parseIkeProposal(text);
        proposals.push(text);
      } catch (e) {
        if (!(e instanceof ProposalSyntaxError)) throw e;
        r.fail(at, e.message);
      }
    });
  }
  const keyWrap = m['keyWrap'] === undefined ? [...DEFAULT_IKE_KEY_WRAP] : readNamedList(r, joinField(path, 'keyWrap'), m['keyWrap'], KWA_NAMES);
  if (keyWrap.length === 0) r.fail(joinField(path, 'keyWrap'), 'G-IKEv2 needs at least one key wrap algorithm');
  return { proposals, keyWrap };
}

/** A name or a list of names from `table`, each error naming its index. */
export function readNamedList<T>(r: FieldReader, path: string, value: unknown, table: Readonly<Record<string, T>>): T[] {
  const list = Array.isArray(value);
  return r.listOrOne(path, value).flatMap((v, i) => {
    const x = readNamed(r, list ? joinField(path, i) : path, v, table);
    return x === undefined ? [] : [x];
  });
}

export function readNamed<T>(r: FieldReader, path: string, value: unknown, table: Readonly<Record<string, T>>): T | undefined {
  const key = r.choice(path, value, Object.keys(table));
  return key === undefined ? undefined : table[key];
}

// ----------------------------------------------------------------- groups

const GROUP_FIELDS = [
  'name',
  'id',
  'capacity',
  'members',
  'senders',
  'mode',
  'activationDelay',
  'deactivationDelay',
  'senderIdBits',
  'maxSenderIdsPerMember',
  'dataSecurity',
  'rekey',
];

function readGroups(r: FieldReader, path: string, value: unknown): GroupConfig[] | undefined {
  if (value === undefined) return undefined;
  const items = r.list(path, value);
  if (!items) return undefined;
  if (items.length === 0) r.fail(path, 'needs at least one group');
  const groups = items.flatMap((g, i) => readGroup(r, joinField(path, i), g) ?? []);
  const names = new Set<string>();
  const ids = new Set<string>();
  groups.forEach((g) => {
    const idKey = `${g.id.idType}:${g.id.data.toString('hex')}`;
    if (names.has(g.name)) r.fail(path, `group name '${g.name}' is used twice`);
    if (ids.has(idKey)) r.fail(path, `group '${g.name}' has the same ID as another group`);
    names.add(g.name);
    ids.add(idKey);
  });
  return groups;
}

function readGroup(r: FieldReader, path: string, value: unknown): GroupConfig | undefined {
  const m = r.map(path, value, GROUP_FIELDS);
  if (!m) return undefined;
  const f = (k: string): string => joinField(path, k);
  const name = r.string(f('name'), r.required(path, m, 'name'));
  const id = readIdentity(r, f('id'), r.required(path, m, 'id'));
  const capacity = m['capacity'] === undefined ? DEFAULT_CAPACITY : r.integer(f('capacity'), m['capacity'], 1, 10_000_000);
  const members = readAccessRules(r, f('members'), m['members']);
  const senders = readAccessRules(r, f('senders'), m['senders']);
  const mode = m['mode'] === undefined ? DEFAULT_MODE : r.choice(f('mode'), m['mode'], ['transport', 'tunnel'] as const);
  const atd = m['activationDelay'] === undefined ? undefined : r.integer(f('activationDelay'), m['activationDelay'], 0, 0xffff);
  const dtd = m['deactivationDelay'] === undefined ? undefined : r.integer(f('deactivationDelay'), m['deactivationDelay'], 0, 0xffff);
  // 4-octet GM_SENDER_ID values and a 64-bit IV: at most 32 bits, leaving 32 bits of counter.
  const senderIdBits = m['senderIdBits'] === undefined ? DEFAULT_SENDER_ID_BITS : r.integer(f('senderIdBits'), m['senderIdBits'], 1, 32);
  const maxSenderIds =
    m['maxSenderIdsPerMember'] === undefined
      ? DEFAULT_MAX_SENDER_IDS_PER_MEMBER
      : r.integer(f('maxSenderIdsPerMember'), m['maxSenderIdsPerMember'], 1, 0xffff);
  const dataSecurity = m['dataSecurity'] === undefined ? [] : readDataSecurityList(r, f('dataSecurity'), m['dataSecurity']);
  const rekey = readRekey(r, f('rekey'), r.required(path, m, 'rekey'));
  if (
    name === undefined || id === undefined || capacity === undefined || !members || !senders || mode === undefined ||
    senderIdBits === undefined || maxSenderIds === undefined || !dataSecurity || !rekey
  ) {
    return undefined;
  }
  if (senderIdBits < 32 && maxSenderIds > 2 ** senderIdBits) {
    r.fail(f('maxSenderIdsPerMember'), `exceeds the ${2 ** senderIdBits} Sender-IDs that senderIdBits ${senderIdBits} allows`);
  }
  const group: GroupConfig = {
    name,
    id,
    capacity,
    members,
    senders,
    mode,
    activationDelaySeconds: atd,
    deactivationDelaySeconds: dtd,
    senderIdBits,
    maxSenderIdsPerMember: maxSenderIds,
    dataSecurity,
    rekey,
  };
  checkGroupConsistency(r, path, group);
  return group;
}

function checkGroupConsistency(r: FieldReader, path: string, g: GroupConfig): void {
  if (g.rekey.kind === 'inband' && g.dataSecurity.length === 0) {
    // RFC 9838 4.4.1: a GSA carries a KEK or a TEK policy.
    r.fail(joinField(path, 'dataSecurity'), 'a group without a Rekey SA needs at least one Data-Security policy');
  }
  if (g.rekey.kind === 'multicast') {
    // RFC 9838 3.1: a KWK SHOULD NOT be shorter than any key it protects.
    const kwk = kwaKeyLength(g.rekey.keyWrap);
    const longest = Math.max(cipherKeyOctets(g.rekey.encryption), ...g.dataSecurity.map((p) => (p.encryption ? cipherKeyOctets(p.encryption) : 0)));
    if (longest > kwk) {
      r.fail(joinField(joinField(path, 'rekey'), 'keyWrap'), `a ${kwk * 8}-bit key wrap key is shorter than the group's ${longest * 8}-bit keys (RFC 9838 3.1)`);
    }
  }
}

/** Cipher key size without AEAD salt: what a key wrap key is compared with (RFC 9838 3.1). */
export function cipherKeyOctets(e: EncrAlgorithm): number {
  return encrKeyLength(e.id, e.keyBits) - (isAeadEncr(e.id) ? 4 : 0);
}

function readDataSecurityList(r: FieldReader, path: string, value: unknown): DataSecurityPolicyConfig[] | undefined {
  const items = r.list(path, value);
  if (!items) return undefined;
  const out: DataSecurityPolicyConfig[] = [];
  const selectors = new Map<string, { index: number; protocolId: number }>();
  items.forEach((item, i) => {
    const p = readDataSecurity(r, joinField(path, i), item);
    if (!p) return;
    const key = JSON.stringify([p.source, p.destination]);
    const other = selectors.get(key);
    if (other && other.protocolId !== p.protocolId) {
      // RFC 9838 4.4.2: "MUST NOT distribute both ESP and AH policies for the same set of Traffic Selectors".
      r.fail(joinField(path, i), `AH and ESP policies share traffic selectors with dataSecurity[${other.index}]`);
    }
    selectors.set(key, { index: i, protocolId: p.protocolId });
    out.push(p);
  });
  return out;
}

const DATA_SECURITY_FIELDS = ['protocol', 'source', 'destination', 'encryption', 'integrity', 'sequenceNumbers', 'lifetime'];

function readDataSecurity(r: FieldReader, path: string, value: unknown): DataSecurityPolicyConfig | undefined {
  const m = r.map(path, value, DATA_SECURITY_FIELDS);
  if (!m) return undefined;
  const f = (k: string): string => joinField(path, k);
  const protocol = m['protocol'] === undefined ? 'esp' : r.choice(f('protocol'), m['protocol'], ['esp', 'ah'] as const);
  const source = readSelector(r, f('source'), m['source']);
  const destination = readSelector(r, f('destination'), r.required(path, m, 'destination'));
  const sn = readNamed(r, f('sequenceNumbers'), m['sequenceNumbers'] ?? DEFAULT_SEQUENCE_NUMBERS, SN_NAMES);
  const lifetime = m['lifetime'] === undefined ? DEFAULT_TEK_LIFETIME_SECONDS : r.integer(f('lifetime'), m['lifetime'], MIN_LIFETIME, MAX_LIFETIME);
  if (protocol === 'ah' && m['encryption'] !== undefined) r.fail(f('encryption'), 'AH does not encrypt');
  const encryption = protocol === 'esp' ? readNamed(r, f('encryption'), m['encryption'] ?? DEFAULT_ENCRYPTION, ENCR_NAMES) : undefined;
  const integrity = readIntegrity(r, f('integrity'), m['integrity'], encryption, protocol === 'ah');
  const pair = source && destination ? resolveSelectorPair(r, path, source, destination) : undefined;
  if (!protocol || !pair || sn === undefined || lifetime === undefined || integrity === undefined) return undefined;
  if (protocol === 'esp' && !encryption) return undefined;
  return {
    protocolId: protocol === 'esp' ? ProtocolId.ESP : ProtocolId.AH,
    ...pair,
    encryption,
    integrity,
    sequenceNumbers: sn,
    lifetimeSeconds: lifetime,
  };
}

/**
 * INTEG for an SA: absent/NONE with an AEAD (RFC 9838 4.4.2.1 note *),
 * required otherwise (no confidentiality-only ESP; AH is integrity itself).
 */
function readIntegrity(r: FieldReader, path: string, value: unknown, encryption: EncrAlgorithm | undefined, ah: boolean): number | undefined {
  const aead = encryption !== undefined && isAeadEncr(encryption.id);
  if (value === undefined) return aead ? IntegId.NONE : INTEG_NAMES[DEFAULT_INTEGRITY_FOR_CBC];
  const integ = readNamed(r, path, value, INTEG_NAMES);
  if (integ === undefined) return undefined;
  if (aead && integ !== IntegId.NONE) return r.fail(path, 'must be none with an AEAD cipher');
  if (!aead && integ === IntegId.NONE) return r.fail(path, ah ? 'AH needs an integrity algorithm' : 'a non-AEAD cipher needs an integrity algorithm');
  return integ;
}

const REKEY_FIELDS = ['source', 'destination', 'encryption', 'integrity', 'keyWrap', 'authentication', 'signingKey', 'lifetime'];

function readRekey(r: FieldReader, path: string, value: unknown): RekeyConfig | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string') {
    if (value.trim().toLowerCase() === 'inband') return { kind: 'inband' };
    return r.fail(path, "must be 'inband' or a Rekey SA policy (a mapping with destination, ...)");
  }
  const m = r.map(path, value, REKEY_FIELDS);
  if (!m) return undefined;
  const f = (k: string): string => joinField(path, k);
  const source = readSelector(r, f('source'), m['source']);
  const destination = readSelector(r, f('destination'), r.required(path, m, 'destination'));
  const encryption = readNamed(r, f('encryption'), m['encryption'] ?? DEFAULT_ENCRYPTION, ENCR_NAMES);
  const integrity = encryption && readIntegrity(r, f('integrity'), m['integrity'], encryption, false);
  const keyWrap = readNamed(r, f('keyWrap'), m['keyWrap'] ?? DEFAULT_REKEY_KEY_WRAP, KWA_NAMES);
  const authentication = r.choice(f('authentication'), m['authentication'] ?? DEFAULT_REKEY_AUTHENTICATION, ['signature', 'implicit'] as const);
  const signingKeyFile = m['signingKey'] === undefined ? undefined : r.string(f('signingKey'), m['signingKey']);
  if (authentication === 'signature' && m['signingKey'] === undefined) r.fail(f('signingKey'), 'is required with authentication: signature');
  if (authentication === 'implicit' && m['signingKey'] !== undefined) r.fail(f('signingKey'), 'is only used with authentication: signature');
  const lifetime = m['lifetime'] === undefined ? DEFAULT_KEK_LIFETIME_SECONDS : r.integer(f('lifetime'), m['lifetime'], MIN_LIFETIME, MAX_LIFETIME);
  const rekeyDestination = destination && checkRekeyDestination(r, f('destination'), destination);
  const rekeySource = source && { ...source, ipProtocol: UDP };
  const pair = rekeySource && rekeyDestination ? resolveSelectorPair(r, path, rekeySource, rekeyDestination) : undefined;
  if (!pair || !encryption || integrity === undefined || keyWrap === undefined || !authentication || lifetime === undefined) return undefined;
  return {
    kind: 'multicast',
    ...pair,
    encryption,
    integrity,
    keyWrap,
    authentication,
    gcauth: GCAUTH_NAMES[authentication],
    signingKeyFile,
    lifetimeSeconds: lifetime,
  };
}

/** RFC 9838 4.4.2: GSA_REKEY goes to one multicast address, over UDP, to one port. */
function checkRekeyDestination(r: FieldReader, path: string, d: SelectorSpec): SelectorSpec | undefined {
  if (!isSingleAddress(d) || d.range === 'any' || !isMulticastRange(d.range)) {
    return r.fail(joinField(path, 'address'), 'must be a single multicast address (RFC 9838 4.4.2)');
  }
  if (d.ipProtocol !== 0 && d.ipProtocol !== UDP) return r.fail(joinField(path, 'protocol'), 'GSA_REKEY is sent over UDP');
  const whole = d.startPort === 0 && d.endPort === 0xffff;
  if (!whole && d.startPort !== d.endPort) return r.fail(joinField(path, 'port'), 'must be a single port');
  const port = whole ? DEFAULT_REKEY_PORT : d.startPort;
  return { ...d, ipProtocol: UDP, startPort: port, endPort: port };
}
