/**
 * The member's side of policy (RFC 9838 Section 2.3.3): the SAg it sends to
 * say what it can use, and the check of the GSA it receives. A GSA the member
 * cannot use is reported to the key server with NO_PROPOSAL_CHOSEN in a
 * GSA_REGISTRATION (Section 2.3.2).
 */
import { isAeadEncr } from '../crypto/cipher.ts';
import { isKekPolicy, isTekPolicy, type GsaPayload, type SaPolicy } from '../wire/gsa.ts';
import { IntegId, nameOf, PayloadType, ProtocolId, TransformType } from '../wire/iana.ts';
import type { Proposal, SaPayload } from '../wire/payloads/sa.ts';
import type { Transform } from '../wire/transform.ts';
import type { DataSecurityMode } from '../gcks/config.ts';
import { encrLabel, encrOfTransform, encrTransform, sameEncr, simpleTransform, type EncrAlgorithm } from '../gcks/transform-names.ts';
import type { AcceptableTransforms } from './config.ts';

const NO_SPI = Buffer.alloc(0);

/**
 * One proposal per protocol per alternative; alternative i gets Proposal
 * Num i + 1, so the key server uses one alternative for the Rekey SA and the
 * Data-Security SAs together (NOTES point 6). SPI Size 0 (Section 2.3.3).
 * INTEG is listed only where a non-AEAD cipher (or AH) needs it.
 */
export function buildSag(alternatives: readonly AcceptableTransforms[]): SaPayload {
  const proposals: Proposal[] = [];
  alternatives.forEach((a, i) => {
    const num = i + 1;
    const rekeyNeedsInteg = a.rekey.encryption.some((e) => !isAeadEncr(e.id));
    proposals.push({
      num,
      protocolId: ProtocolId.GIKE_UPDATE,
      spi: NO_SPI,
      transforms: [
        ...a.rekey.encryption.map(encrTransform),
        ...(rekeyNeedsInteg ? integTransforms(a.rekey.integrity) : []),
        ...a.rekey.keyWrap.map((k) => simpleTransform(TransformType.KWA, k)),
        ...a.rekey.authentication.map((g) => simpleTransform(TransformType.GCAUTH, g)),
      ],
    });
    const ds = a.dataSecurity;
    const sn = ds.sequenceNumbers.map((s) => simpleTransform(TransformType.SN, s));
    if (ds.protocols.includes(ProtocolId.ESP)) {
      const espNeedsInteg = ds.encryption.some((e) => !isAeadEncr(e.id));
      proposals.push({
        num,
        protocolId: ProtocolId.ESP,
        spi: NO_SPI,
        transforms: [...ds.encryption.map(encrTransform), ...(espNeedsInteg ? integTransforms(ds.integrity) : []), ...sn],
      });
    }
    if (ds.protocols.includes(ProtocolId.AH)) {
      proposals.push({ num, protocolId: ProtocolId.AH, spi: NO_SPI, transforms: [...integTransforms(ds.integrity), ...sn] });
    }
  });
  return { type: PayloadType.SA, critical: false, proposals };
}

function integTransforms(ids: readonly number[]): Transform[] {
  return ids.filter((i) => i !== IntegId.NONE).map((i) => simpleTransform(TransformType.INTEG, i));
}

export type PolicyVerdict =
  | { readonly acceptable: true; /** Index of the alternative that fits. */ readonly alternative: number }
  | { readonly acceptable: false; readonly reason: string };

/** Section 2.3.3: accept the GSA only if one alternative covers every SA in it and the mode. */
export function checkGroupPolicy(gsa: GsaPayload, mode: DataSecurityMode, alternatives: readonly AcceptableTransforms[]): PolicyVerdict {
  const reasons: string[] = [];
  for (const [index, a] of alternatives.entries()) {
    const problem = policyProblem(gsa, mode, a);
    if (problem === undefined) return { acceptable: true, alternative: index };
    reasons.push(alternatives.length > 1 ? `set ${index + 1}: ${problem}` : problem);
  }
  return { acceptable: false, reason: reasons.join('; ') || 'nothing is acceptable' };
}

function policyProblem(gsa: GsaPayload, mode: DataSecurityMode, a: AcceptableTransforms): string | undefined {
  if (!a.modes.includes(mode)) return `${mode} mode is not acceptable`;
  for (const p of gsa.policies) {
    const problem = isKekPolicy(p) ? rekeyProblem(p, a) : isTekPolicy(p) ? dataSecurityProblem(p, a) : undefined;
    if (problem) return problem;
  }
  return undefined;
}

function transformOf(p: SaPolicy, type: number): Transform | undefined {
  return p.transforms.find((t) => t.type === type);
}

function encrProblem(p: SaPolicy, accepted: readonly EncrAlgorithm[], what: string): string | undefined {
  const t = transformOf(p, TransformType.ENCR);
  if (!t) return undefined; // AH
  const e = encrOfTransform(t);
  return accepted.some((x) => sameEncr(x, e)) ? undefined : `${what} cipher ${encrLabel(e)} is not acceptable`;
}

function idProblem(p: SaPolicy, type: number, accepted: readonly number[], what: string, allowNone = false): string | undefined {
  const t = transformOf(p, type);
  if (!t || (allowNone && t.id === IntegId.NONE)) return undefined;
  return accepted.includes(t.id) ? undefined : `${what} ${nameOf(TransformType, type)} ${t.id} is not acceptable`;
}

function rekeyProblem(p: SaPolicy, a: AcceptableTransforms): string | undefined {
  return (
    encrProblem(p, a.rekey.encryption, 'Rekey SA') ??
    idProblem(p, TransformType.INTEG, a.rekey.integrity, 'Rekey SA', true) ??
    idProblem(p, TransformType.KWA, a.rekey.keyWrap, 'Rekey SA') ??
    idProblem(p, TransformType.GCAUTH, a.rekey.authentication, 'Rekey SA')
  );
}

function dataSecurityProblem(p: SaPolicy, a: AcceptableTransforms): string | undefined {
  const ds = a.dataSecurity;
  if (!ds.protocols.some((x) => x === p.protocol)) return `${nameOf(ProtocolId, p.protocol)} Data-Security SAs are not acceptable`;
  const what = `${nameOf(ProtocolId, p.protocol)} SA ${p.spi.toString('hex')}`;
  return (
    encrProblem(p, ds.encryption, what) ??
    idProblem(p, TransformType.INTEG, ds.integrity, what, true) ??
    idProblem(p, TransformType.SN, ds.sequenceNumbers, what)
  );
}
