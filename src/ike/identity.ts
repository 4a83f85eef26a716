/**
 * IKE identities (RFC 7296 Section 3.5) as configuration text and as
 * ID payload contents. The text form follows strongSwan so that the same
 * identity strings work on both sides of an interop test:
 *   `user@example.org` -> ID_RFC822_ADDR, `@host.example` or a bare name ->
 *   ID_FQDN, an IPv4/IPv6 literal -> ID_IPV4_ADDR/ID_IPV6_ADDR,
 *   `keyid:0a0b..` -> ID_KEY_ID. A DER distinguished name is given as bytes.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { ipToBytes } from './address.ts';
import { IdType, nameOf } from '../wire/iana.ts';

export interface Identity {
  /** See IdType. */
  readonly idType: number;
  readonly data: Buffer;
}

export class IdentitySyntaxError extends Error {
  override readonly name = 'IdentitySyntaxError';
}

export function parseIdentity(text: string): Identity {
  const t = text.trim();
  if (t.length === 0) throw new IdentitySyntaxError('empty identity');
  if (t.startsWith('keyid:')) {
    const hex = t.slice(6).replace(/:/g, '');
    if (!/^([0-9a-f]{2})+$/i.test(hex)) throw new IdentitySyntaxError(`bad key ID '${t}'`);
    return { idType: IdType.ID_KEY_ID, data: Buffer.from(hex, 'hex') };
  }
  if (isIPv4(t)) return { idType: IdType.ID_IPV4_ADDR, data: ipToBytes(t) };
  if (isIPv6(t)) return { idType: IdType.ID_IPV6_ADDR, data: ipToBytes(t) };
  if (t.startsWith('@')) return { idType: IdType.ID_FQDN, data: Buffer.from(t.slice(1), 'utf8') };
  if (t.includes('@')) return { idType: IdType.ID_RFC822_ADDR, data: Buffer.from(t, 'utf8') };
  return { idType: IdType.ID_FQDN, data: Buffer.from(t, 'utf8') };
}

/** Accepts either text or an Identity. */
export function toIdentity(id: string | Identity): Identity {
  return typeof id === 'string' ? parseIdentity(id) : id;
}

export function sameIdentity(a: Identity, b: Identity): boolean {
  return a.idType === b.idType && a.data.equals(b.data);
}

/** Text for logs and events; inverse of parseIdentity for the text types. */
export function formatIdentity(id: Identity): string {
  switch (id.idType) {
    case IdType.ID_FQDN:
    case IdType.ID_RFC822_ADDR:
      return id.data.toString('utf8');
    case IdType.ID_IPV4_ADDR:
      return id.data.length === 4 ? [...id.data].join('.') : `ipv4:${id.data.toString('hex')}`;
    case IdType.ID_KEY_ID:
      return `keyid:${id.data.toString('hex')}`;
    default:
      return `${nameOf(IdType, id.idType, 'ID')}:${id.data.toString('hex')}`;
  }
}

/** Map key for an identity (PSK lookup). */
export function identityKey(id: Identity): string {
  return `${id.idType}:${id.data.toString('hex')}`;
}
