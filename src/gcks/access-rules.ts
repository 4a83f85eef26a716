/**
 * "Who may join" and "who may send" as configured for a group:
 *
 *   members:
 *     any: false                       # every authenticated peer (default false)
 *     ids: [gm1@example.org, {type: ID_KEY_ID, hex: 0a0b}]
 *     patterns: ["*.plant1.example", "gm-*@example.org", 192.0.2.0/24]
 *     certificates:                    # for members that authenticated with a certificate
 *       - subject: {CN: "gm-*", O: Example}
 *         san: "*.plant1.example"
 *
 * A certificate rule matches when every part it gives matches; RDN values
 * and SANs are globbed like identity patterns.
 */
import { joinField, type FieldReader } from './config-fields.ts';
import { globToRegExp, readIdentity, readIdentityPattern, type Identity, type IdentityPattern } from './config-identities.ts';

export interface CertificateRule {
  /** RDN short name (CN, O, OU, C, ...) -> pattern for its value; all must match. */
  readonly subject: ReadonlyMap<string, RegExp>;
  /** Matched against the certificate's dNSName / rfc822Name / iPAddress SANs; any may match. */
  readonly san?: IdentityPattern | undefined;
}

export interface AccessRules {
  readonly any: boolean;
  readonly ids: readonly Identity[];
  readonly patterns: readonly IdentityPattern[];
  readonly certificates: readonly CertificateRule[];
}

/** Safe default: nobody, until the operator says who. */
export const NOBODY: AccessRules = Object.freeze({ any: false, ids: [], patterns: [], certificates: [] });

export function readAccessRules(r: FieldReader, path: string, value: unknown): AccessRules | undefined {
  if (value === undefined || value === null) return NOBODY;
  const m = r.map(path, value, ['any', 'ids', 'patterns', 'certificates']);
  if (!m) return undefined;
  const any = m['any'] === undefined ? false : (r.boolean(joinField(path, 'any'), m['any']) ?? false);
  const ids = readEach(r, joinField(path, 'ids'), m['ids'], (p, v) => readIdentity(r, p, v));
  const patterns = readEach(r, joinField(path, 'patterns'), m['patterns'], (p, v) => readIdentityPattern(r, p, v));
  const certificates = readEach(r, joinField(path, 'certificates'), m['certificates'], (p, v) => readCertificateRule(r, p, v));
  return { any, ids, patterns, certificates };
}

function readEach<T>(r: FieldReader, path: string, value: unknown, read: (path: string, v: unknown) => T | undefined): T[] {
  if (value === undefined || value === null) return [];
  const items = r.list(path, value) ?? [];
  return items.flatMap((v, i) => {
    const x = read(joinField(path, i), v);
    return x === undefined ? [] : [x];
  });
}

function readCertificateRule(r: FieldReader, path: string, value: unknown): CertificateRule | undefined {
  const m = r.map(path, value, ['subject', 'san']);
  if (!m) return undefined;
  const subject = new Map<string, RegExp>();
  if (m['subject'] !== undefined) {
    const s = r.map(joinField(path, 'subject'), m['subject'], Object.keys((m['subject'] as object | null) ?? {}));
    for (const [attr, glob] of Object.entries(s ?? {})) {
      const text = r.string(joinField(joinField(path, 'subject'), attr), glob);
      if (!/^[A-Za-z][A-Za-z0-9.]*$/.test(attr)) r.fail(joinField(joinField(path, 'subject'), attr), 'not an attribute name (CN, O, OU, ...)');
      else if (text !== undefined) subject.set(attr.toUpperCase(), globToRegExp(text, false));
    }
  }
  const san = m['san'] === undefined ? undefined : readIdentityPattern(r, joinField(path, 'san'), m['san']);
  if (subject.size === 0 && san === undefined) return r.fail(path, 'a certificate rule needs a subject or a san');
  return { subject, san };
}
