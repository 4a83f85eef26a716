/**
 * SAg evaluation (RFC 9838 Sections 2.3.3 and 2.3.4): can a member that sent
 * these proposals support the group's current policy? The group policy is
 * not negotiated; the GCKS only checks, and answers NO_PROPOSAL_CHOSEN when
 * "the group member did not include all of the ESP, AH or GIKE_UPDATE
 * Transforms that match the current group policy".
 *
 * Readings taken:
 *  - Proposals with the same Proposal Num form one set; the policy must be
 *    covered by one set (every SA by a proposal of its protocol in the set).
 *  - Every transform the policy uses must be listed, Key Length included,
 *    except GCAUTH: a proposal that lists no GCAUTH states no restriction on
 *    it (the transform is optional in SAg), one that lists some must list ours.
 *  - SPI Size / SPI of SAg proposals are ignored, as Section 2.3.3 requires.
 */
import { nameOf, ProtocolId, TransformType } from '../wire/iana.ts';
import type { Proposal } from '../wire/payloads/sa.ts';
import type { Transform } from '../wire/transform.ts';
import type { Group } from './group.ts';
import { encrLabel, encrOfTransform, sameEncr } from './transform-names.ts';

export type SagVerdict = { readonly acceptable: true } | { readonly acceptable: false; readonly reason: string };

interface RequiredSa {
  readonly label: string;
  readonly protocolId: number;
  readonly transforms: readonly Transform[];
}

function requiredSas(group: Group): RequiredSa[] {
  const out: RequiredSa[] = [];
  if (group.rekeySa) out.push({ label: 'Rekey SA', protocolId: ProtocolId.GIKE_UPDATE, transforms: group.rekeySa.transforms });
  group.dataSecuritySas.forEach((t, i) =>
    out.push({ label: `Data-Security SA ${i + 1}`, protocolId: t.policy.protocolId, transforms: t.transforms }),
  );
  return out;
}

function offers(proposal: Proposal, wanted: Transform): boolean {
  const sameType = proposal.transforms.filter((t) => t.type === wanted.type);
  if (wanted.type === TransformType.GCAUTH && sameType.length === 0) return true;
  if (wanted.type === TransformType.ENCR) return sameType.some((t) => sameEncr(encrOfTransform(t), encrOfTransform(wanted)));
  return sameType.some((t) => t.id === wanted.id);
}

function transformLabel(t: Transform): string {
  if (t.type === TransformType.ENCR) return `ENCR ${encrLabel(encrOfTransform(t))}`;
  return `${nameOf(TransformType, t.type)} ${t.id}`;
}

/** Why `set` cannot carry `sa`, or undefined when one of its proposals can. */
function uncovered(set: readonly Proposal[], sa: RequiredSa): string | undefined {
  const candidates = set.filter((p) => p.protocolId === sa.protocolId);
  const protocol = nameOf(ProtocolId, sa.protocolId, 'protocol');
  if (candidates.length === 0) return `no ${protocol} proposal for the ${sa.label}`;
  const missing = candidates.map((p) => sa.transforms.filter((t) => !offers(p, t)));
  if (missing.some((m) => m.length === 0)) return undefined;
  const fewest = missing.reduce((a, b) => (b.length < a.length ? b : a));
  return `the ${sa.label} uses ${fewest.map(transformLabel).join(', ')}, not in the ${protocol} proposal`;
}

export function evaluateSag(proposals: readonly Proposal[], group: Group): SagVerdict {
  const sas = requiredSas(group);
  const sets = new Map<number, Proposal[]>();
  for (const p of proposals) sets.set(p.num, [...(sets.get(p.num) ?? []), p]);
  const reasons: string[] = [];
  for (const [num, set] of sets) {
    const problem = sas.map((sa) => uncovered(set, sa)).find((x) => x !== undefined);
    if (problem === undefined) return { acceptable: true };
    reasons.push(`proposal set ${num}: ${problem}`);
  }
  return { acceptable: false, reason: reasons.length > 0 ? reasons.join('; ') : 'empty SAg' };
}
