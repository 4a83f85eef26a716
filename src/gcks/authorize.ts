/**
 * Group authorization (RFC 9838 Section 2.3.4: "The GCKS then authorizes the
 * group member according to group policy"): may this authenticated peer
 * join, and may it send. The peer's identity has already been authenticated
 * by the IKE engine; a certificate, when given, has been validated against
 * the trust anchors and matches that identity.
 */
import type { Certificate } from '../crypto/x509.ts';
import { formatIdentity } from '../ike/identity.ts';
import type { AccessRules, CertificateRule } from './access-rules.ts';
import { addressInPrefix, identityMatchesPattern, type Identity, type IdentityPattern } from './config-identities.ts';
import type { GcksCredentials } from './config.ts';

export interface AuthenticatedMember {
  readonly id: Identity;
  /** The member's end-entity certificate when it authenticated with one. */
  readonly certificate?: Certificate | undefined;
}

export type AuthorizationResult =
  | { readonly allowed: true; /** Which rule let the member in, for the audit trail. */ readonly rule: string }
  | { readonly allowed: false; readonly reason: string };

function sameId(a: Identity, b: Identity): boolean {
  return a.idType === b.idType && a.data.equals(b.data);
}

/** First matching rule wins; rules only ever allow, so order changes the audit text, not the outcome. */
export function authorizeByRules(rules: AccessRules, member: AuthenticatedMember, role: 'join' | 'send'): AuthorizationResult {
  if (rules.any) return { allowed: true, rule: 'any' };
  if (rules.ids.some((id) => sameId(id, member.id))) return { allowed: true, rule: `id ${formatIdentity(member.id)}` };
  const pattern = rules.patterns.find((p) => identityMatchesPattern(member.id, p));
  if (pattern) return { allowed: true, rule: `pattern ${pattern.text}` };
  const cert = member.certificate;
  if (cert) {
    const index = rules.certificates.findIndex((r) => certificateMatches(r, cert));
    if (index >= 0) return { allowed: true, rule: `certificates[${index}]` };
  }
  return { allowed: false, reason: `${formatIdentity(member.id)} is not allowed to ${role} (no ${role === 'join' ? 'members' : 'senders'} rule matches)` };
}

export function authorizeJoin(rules: AccessRules, member: AuthenticatedMember): AuthorizationResult {
  return authorizeByRules(rules, member, 'join');
}

export function authorizeSender(rules: AccessRules, member: AuthenticatedMember): AuthorizationResult {
  return authorizeByRules(rules, member, 'send');
}

export function certificateMatches(rule: CertificateRule, cert: Certificate): boolean {
  if (rule.subject.size > 0) {
    const rdns = subjectAttributes(cert);
    for (const [attr, regex] of rule.subject) {
      if (!(rdns.get(attr) ?? []).some((v) => regex.test(v))) return false;
    }
  }
  return rule.san === undefined || sanMatches(rule.san, cert);
}

/** Subject RDNs by short name (node renders one `KEY=value` per line). */
function subjectAttributes(cert: Certificate): Map<string, string[]> {
  const out = new Map<string, string[]>();
  // node gives undefined, not '', for an empty subject.
  const subject: string | undefined = cert.x509.subject;
  for (const line of (subject ?? '').split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim().toUpperCase();
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

function sanMatches(p: IdentityPattern, cert: Certificate): boolean {
  return cert.subjectAltNames.some((n) => {
    switch (p.kind) {
      case 'fqdn':
        return n.type === 'dns' && p.regex.test(n.value);
      case 'email': {
        if (n.type !== 'email') return false;
        const at = n.value.lastIndexOf('@');
        return at > 0 && p.local.test(n.value.slice(0, at)) && p.domain.test(n.value.slice(at + 1));
      }
      case 'prefix':
        return n.type === 'ip' && addressInPrefix(n.value, p.network, p.prefixLength);
    }
  });
}

/**
 * The pre-shared key for a peer: an exact identity wins over a pattern,
 * a pattern over `any`; among patterns the first listed wins.
 */
export function pskForMember(credentials: GcksCredentials, id: Identity): Buffer | undefined {
  const exact = credentials.psks.find((e) => e.member.kind === 'id' && sameId(e.member.id, id));
  if (exact) return exact.secret;
  const pattern = credentials.psks.find((e) => e.member.kind === 'pattern' && identityMatchesPattern(id, e.member.pattern));
  if (pattern) return pattern.secret;
  return credentials.psks.find((e) => e.member.kind === 'any')?.secret;
}
