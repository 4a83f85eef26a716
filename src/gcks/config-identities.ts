/**
 * Identities and identity patterns in configuration files.
 *
 * An identity is either strongSwan-style text (`gm1@example.org`,
 * `@host.example`, `192.0.2.1`, `keyid:0a0b`; see src/ike/identity.ts) or an
 * explicit mapping `{type: ID_KEY_ID, value: text}` / `{type: ID_KEY_ID,
 * hex: 0a0b}` for the cases text cannot express (a key ID that is not hex,
 * an FQDN that contains '@').
 *
 * A pattern is typed by its shape so that it can only match IDs of one kind:
 * `*.plant1.example` (contains no '@': ID_FQDN), `gm-*@example` (ID_RFC822_ADDR),
 * `192.0.2.0/24` or `2001:db8::/32` (ID_IPV4_ADDR / ID_IPV6_ADDR). `*`
 * matches any run of characters (dots included), `?` one character; FQDNs
 * and the domain part of e-mail addresses compare case-insensitively.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { IdType } from '../wire/iana.ts';
import { addressToBytes } from '../wire/traffic-selector.ts';
import type { Identity } from '../ike/identity.ts';
import { parseIdentity } from '../ike/identity.ts';
import { describe, joinField, type FieldReader } from './config-fields.ts';

export type { Identity };

/** ID types a group or a member may be named by (RFC 9838 Section 4.2 lists these for IDg). */
export const CONFIG_ID_TYPES = ['ID_KEY_ID', 'ID_FQDN', 'ID_IPV4_ADDR', 'ID_IPV6_ADDR', 'ID_RFC822_ADDR'] as const;
export type ConfigIdType = (typeof CONFIG_ID_TYPES)[number];

export function readIdentity(r: FieldReader, path: string, value: unknown): Identity | undefined {
  if (typeof value === 'string') {
    try {
      return parseIdentity(value);
    } catch (e) {
      return r.fail(path, e instanceof Error ? e.message : 'not an identity');
    }
  }
  const m = r.map(path, value, ['type', 'value', 'hex']);
  if (!m) return undefined;
  const type = r.choice(joinField(path, 'type'), r.required(path, m, 'type'), CONFIG_ID_TYPES);
  if (type === undefined) return undefined;
  if ((m['value'] === undefined) === (m['hex'] === undefined)) return r.fail(path, 'needs exactly one of value or hex');
  if (m['hex'] !== undefined) {
    const hex = r.string(joinField(path, 'hex'), m['hex'])?.replace(/[:\s]/g, '');
    if (hex === undefined) return undefined;
    if (!/^([0-9a-f]{2})+$/i.test(hex)) return r.fail(joinField(path, 'hex'), 'must be an even number of hex digits');
    return { idType: IdType[type], data: Buffer.from(hex, 'hex') };
  }
  const text = r.string(joinField(path, 'value'), m['value']);
  if (text === undefined) return undefined;
  return identityFromText(r, joinField(path, 'value'), type, text);
}

function identityFromText(r: FieldReader, path: string, type: ConfigIdType, text: string): Identity | undefined {
  switch (type) {
    case 'ID_IPV4_ADDR':
      if (!isIPv4(text)) return r.fail(path, `not an IPv4 address: ${describe(text)}`);
      return { idType: IdType.ID_IPV4_ADDR, data: addressToBytes(text, false) };
    case 'ID_IPV6_ADDR':
      if (!isIPv6(text)) return r.fail(path, `not an IPv6 address: ${describe(text)}`);
      return { idType: IdType.ID_IPV6_ADDR, data: addressToBytes(text, true) };
    case 'ID_RFC822_ADDR':
      if (!text.includes('@')) return r.fail(path, 'an e-mail address needs an @');
      return { idType: IdType.ID_RFC822_ADDR, data: Buffer.from(text, 'utf8') };
    default:
      return { idType: IdType[type], data: Buffer.from(text, 'utf8') };
  }
}

export type IdentityPattern =
  | { readonly kind: 'fqdn'; readonly text: string; readonly regex: RegExp }
  | { readonly kind: 'email'; readonly text: string; readonly local: RegExp; readonly domain: RegExp }
  | { readonly kind: 'prefix'; readonly text: string; readonly network: Buffer; readonly prefixLength: number };

/** `*` any run, `?` one character, everything else literal. */
export function globToRegExp(glob: string, caseInsensitive: boolean): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, caseInsensitive ? 'i' : '');
}

export function readIdentityPattern(r: FieldReader, path: string, value: unknown): IdentityPattern | undefined {
  const text = r.string(path, value);
  if (text === undefined) return undefined;
  const prefix = parsePrefix(text);
  if (prefix) return { kind: 'prefix', text, ...prefix };
  if (text.includes('/')) return r.fail(path, `not an address prefix: ${describe(text)}`);
  const at = text.lastIndexOf('@');
  if (at >= 0) {
    if (at === 0 || at === text.length - 1) return r.fail(path, 'an e-mail pattern needs a local part and a domain');
    // Local parts are case-sensitive, domains are not (RFC 5321 2.4).
    return { kind: 'email', text, local: globToRegExp(text.slice(0, at), false), domain: globToRegExp(text.slice(at + 1), true) };
  }
  return { kind: 'fqdn', text, regex: globToRegExp(text, true) };
}

/** `192.0.2.0/24` -> network octets (host bits cleared) and length. */
export function parsePrefix(text: string): { network: Buffer; prefixLength: number } | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const address = text.slice(0, slash);
  const bits = Number(text.slice(slash + 1));
  const v6 = isIPv6(address);
  if (!v6 && !isIPv4(address)) return undefined;
  const max = v6 ? 128 : 32;
  if (!Number.isInteger(bits) || bits < 0 || bits > max || text.slice(slash + 1).trim() === '') return undefined;
  const network = addressToBytes(address, v6);
  for (let i = 0; i < network.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - 8 * i));
    network[i] = network[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return { network, prefixLength: bits };
}

export function addressInPrefix(address: Uint8Array, network: Buffer, prefixLength: number): boolean {
  if (address.length !== network.length) return false;
  for (let i = 0; i < network.length; i++) {
    const keep = Math.max(0, Math.min(8, prefixLength - 8 * i));
    const mask = (0xff << (8 - keep)) & 0xff;
    if ((address[i]! & mask) !== network[i]) return false;
  }
  return true;
}

export function identityMatchesPattern(id: Identity, p: IdentityPattern): boolean {
  switch (p.kind) {
    case 'fqdn':
      return id.idType === IdType.ID_FQDN && p.regex.test(id.data.toString('utf8'));
    case 'email': {
      if (id.idType !== IdType.ID_RFC822_ADDR) return false;
      const text = id.data.toString('utf8');
      const at = text.lastIndexOf('@');
      return at > 0 && p.local.test(text.slice(0, at)) && p.domain.test(text.slice(at + 1));
    }
    case 'prefix':
      return (id.idType === IdType.ID_IPV4_ADDR || id.idType === IdType.ID_IPV6_ADDR) && addressInPrefix(id.data, p.network, p.prefixLength);
  }
}
