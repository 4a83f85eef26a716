import type { Attribute } from './attributes.ts';
import {
  isRegistration,
  occurrence,
  occurrenceRule,
  tableFor,
  type TableAttribute,
  type ValidationContext,
} from './attribute-table.ts';
import { isAeadEncr, isImplicitIvEncr } from './cipher-classes.ts';
import { ValidationError } from './errors.ts';
import type { GroupPolicy, GroupWidePolicy, GsaPayload, SaPolicy } from './gsa.ts';
import {
  GcauthId,
  GsaAttr,
  GwpAttr,
  IntegId,
  nameOf,
  ProtocolId,
  SnId,
  TransformAttr,
  TransformType,
  TsType,
} from './iana.ts';
import { joinPath } from './reader.ts';
import { encodeTrafficSelector, type TrafficSelector } from './traffic-selector.ts';
import type { Transform } from './transform.ts';
import { Writer } from './writer.ts';

/**
 * Rules of RFC 9838 Sections 4.4 and 5 for one GSA payload. Every finding is
 * returned; the rule names are stable (tests and logs match on them).
 */

type Report = (rule: string, path: string, detail: string) => void;

const UDP = 17;
/** SPI sizes by protocol (Sections 4.4.2 and 4.5.2). */
export const SPI_SIZE: Readonly<Record<number, number>> = {
  [ProtocolId.GIKE_UPDATE]: 16,
  [ProtocolId.AH]: 4,
  [ProtocolId.ESP]: 4,
};

/** Transform types per protocol (Section 4.4.2.1, table). */
const TRANSFORM_TYPES: Readonly<Record<number, { mandatory: readonly number[]; optional: readonly number[] }>> = {
  // INTEG (*) and GCAUTH (**) are mandatory with conditions, handled below.
  [ProtocolId.GIKE_UPDATE]: {
    mandatory: [TransformType.ENCR, TransformType.KWA],
    optional: [TransformType.INTEG, TransformType.GCAUTH],
  },
  [ProtocolId.ESP]: { mandatory: [TransformType.ENCR, TransformType.SN], optional: [TransformType.INTEG] },
  [ProtocolId.AH]: { mandatory: [TransformType.INTEG, TransformType.SN], optional: [] },
};

function protocolName(protocol: number): string {
  return nameOf(ProtocolId, protocol, 'protocol');
}
function typeName(type: number): string {
  return nameOf(TransformType, type, 'type');
}

export function validateGsa(gsa: GsaPayload, ctx: ValidationContext, path = 'GSA'): ValidationError[] {
  const out: ValidationError[] = [];
  const report: Report = (rule, p, detail) => out.push(new ValidationError(rule, p, detail));
  const segment = (i: number, p: GroupPolicy): string =>
    joinPath(path, `policy[${i + 1}] (${p.kind === 'group-wide' ? 'GW' : protocolName(p.protocol)})`);

  checkPolicyCounts(gsa.policies, path, report);
  gsa.policies.forEach((p, i) => {
    if (p.kind === 'sa') checkSaPolicy(p, ctx, segment(i, p), report);
  });
  checkGroupWide(gsa.policies, ctx, path, segment, report);
  checkAhEspOverlap(gsa.policies, segment, report);
  return out;
}

/** Section 4.4.1: zero or one KEK, zero or more TEKs, zero or one GW; a KEK or a TEK. */
function checkPolicyCounts(policies: readonly GroupPolicy[], path: string, report: Report): void {
  const keks = policies.filter((p) => p.kind === 'sa' && p.protocol === ProtocolId.GIKE_UPDATE).length;
  const teks = policies.filter((p) => p.kind === 'sa' && (p.protocol === ProtocolId.AH || p.protocol === ProtocolId.ESP)).length;
  const gws = policies.filter((p) => p.kind === 'group-wide').length;
  if (keks > 1) report('RFC9838 4.4.1: at most one GSA KEK policy', path, `${keks} GIKE_UPDATE policies`);
  if (gws > 1) report('RFC9838 4.4.1: at most one GW policy', path, `${gws} group-wide policies`);
  if (keks + teks === 0) report('RFC9838 4.4.1: a GSA KEK or GSA TEK policy must be present', path, 'no SA policy');
}

function checkSaPolicy(p: SaPolicy, ctx: ValidationContext, path: string, report: Report): void {
  const spiSize = SPI_SIZE[p.protocol];
  if (spiSize === undefined) {
    report('RFC9838 4.4.2: policy protocol must be GIKE_UPDATE, AH or ESP', path, `protocol ${p.protocol}`);
    return; // Nothing else is defined for an unknown protocol.
  }
  const proto = protocolName(p.protocol);
  if (p.spi.length !== spiSize) {
    report(`RFC9838 4.4.2: ${proto} SPI Size must be ${spiSize}`, path, `SPI Size ${p.spi.length}`);
  }
  if (p.protocol === ProtocolId.GIKE_UPDATE) checkRekeyDestination(p.destination, joinPath(path, 'destination TS'), report);
  checkTransforms(p, ctx, path, report);
  checkGsaAttributes(p, ctx, path, report);
}

/** Section 4.4.2: GSA_REKEY goes to one multicast address, UDP, one port. */
function checkRekeyDestination(ts: TrafficSelector, path: string, report: Report): void {
  if ('raw' in ts || ts.startAddress !== ts.endAddress || !isMulticast(ts)) {
    report('RFC9838 4.4.2: GIKE_UPDATE destination TS must be a single multicast address', path, describeTs(ts));
  }
  if ('raw' in ts) return;
  if (ts.startPort !== ts.endPort) {
    report('RFC9838 4.4.2: GIKE_UPDATE destination TS must be a single port', path, describeTs(ts));
  }
  if (ts.ipProtocol !== UDP) {
    report('RFC9838 4.4.2: GIKE_UPDATE destination TS protocol must be UDP', path, `IP protocol ${ts.ipProtocol}`);
  }
}

function isMulticast(ts: Exclude<TrafficSelector, { raw: Buffer }>): boolean {
  if (ts.type === TsType.TS_IPV4_ADDR_RANGE) {
    const first = Number(ts.startAddress.split('.')[0]);
    return first >= 224 && first <= 239;
  }
  return ts.startAddress.toLowerCase().startsWith('ff');
}

function describeTs(ts: TrafficSelector): string {
  if ('raw' in ts) return `TS type ${ts.type}`;
  return `${ts.startAddress}-${ts.endAddress} proto ${ts.ipProtocol} ports ${ts.startPort}-${ts.endPort}`;
}

/** Section 4.4.2.1 with its notes, 4.4.2.1.1, 4.4.2.1.3 and 2.7. */
function checkTransforms(p: SaPolicy, ctx: ValidationContext, path: string, report: Report): void {
  const proto = protocolName(p.protocol);
  const allowed = TRANSFORM_TYPES[p.protocol]!;
  const ofType = (type: number): Transform[] => p.transforms.filter((t) => t.type === type);

  p.transforms.forEach((t, i) => {
    if (!allowed.mandatory.includes(t.type) && !allowed.optional.includes(t.type)) {
      report(`RFC9838 4.4.2.1: ${typeName(t.type)} transform is not allowed in ${proto}`, joinPath(path, `transform[${i + 1}]`), `transform ID ${t.id}`);
    }
  });
  for (const type of allowed.mandatory) {
    const n = ofType(type).length;
    if (n !== 1) report(`RFC9838 4.4.2.1: ${proto} requires exactly one ${typeName(type)} transform`, path, `${n} found`);
  }
  for (const type of allowed.optional) {
    const n = ofType(type).length;
    if (n > 1) report(`RFC9838 4.4.2.1: ${proto} allows at most one ${typeName(type)} transform`, path, `${n} found`);
  }

  const encr = ofType(TransformType.ENCR)[0];
  const integ = ofType(TransformType.INTEG);
  if (encr && isAeadEncr(encr.id) && integ.some((t) => t.id !== IntegId.NONE)) {
    report('RFC9838 4.4.2.1: with AEAD encryption INTEG must be absent or NONE', path, `ENCR ${encr.id}`);
  }
  if (p.protocol === ProtocolId.GIKE_UPDATE) {
    // Note (*): without AEAD the Rekey SA needs a real integrity algorithm.
    if (encr && !isAeadEncr(encr.id) && (integ.length !== 1 || integ[0]!.id === IntegId.NONE)) {
      report('RFC9838 4.4.2.1: GIKE_UPDATE without AEAD requires an INTEG transform other than NONE', path, `ENCR ${encr.id}`);
    }
    checkGcauthPresence(ofType(TransformType.GCAUTH).length, ctx, path, report);
    if (encr && isImplicitIvEncr(encr.id)) {
      report('RFC9838 2.7: implicit-IV encryption must not be used for the Rekey SA', path, `ENCR ${encr.id}`);
    }
  }
  if (p.protocol === ProtocolId.AH && integ.some((t) => t.id === IntegId.NONE)) {
    report('RFC9838 4.4.2.1: AH requires an INTEG transform other than NONE', path, 'INTEG NONE');
  }
  const sn = ofType(TransformType.SN)[0];
  if (sn?.id === SnId.ESN64_PARTIAL) {
    report('RFC9838 4.4.2.1.3: Partially Transmitted 64-bit Sequential Numbers must not be used', path, `${proto} SN ${sn.id}`);
  }
  if (p.protocol === ProtocolId.ESP && encr && isImplicitIvEncr(encr.id) && sn && sn.id !== SnId.SEQ32) {
    // Unique sequence numbers are what make an implicit IV safe.
    report('RFC9838 2.7: implicit-IV encryption requires 32-bit Sequential Numbers', path, `ENCR ${encr.id}, SN ${sn.id}`);
  }
  p.transforms.forEach((t, i) => checkSignatureAlgorithmAttribute(t, joinPath(path, `transform[${i + 1}]`), report));
}

/** Note (**): GCAUTH is mandatory at registration and must not appear in rekeys. */
function checkGcauthPresence(count: number, ctx: ValidationContext, path: string, report: Report): void {
  if (!isRegistration(ctx.exchange)) {
    if (count > 0) report('RFC9838 4.4.2.1: GCAUTH may only appear in GSA_AUTH and GSA_REGISTRATION', path, `${count} found`);
  } else if (count !== 1) {
    report('RFC9838 4.4.2.1: GIKE_UPDATE requires exactly one GCAUTH transform', path, `${count} found`);
  }
}

/** Section 4.4.2.1.1: attribute 18 (TLV) with GCAUTH Digital Signature, and only there. */
function checkSignatureAlgorithmAttribute(t: Transform, path: string, report: Report): void {
  const sigAlgs = t.attributes.filter((a) => a.type === TransformAttr.SIGNATURE_ALGORITHM_IDENTIFIER);
  const isDigitalSignature = t.type === TransformType.GCAUTH && t.id === GcauthId.DIGITAL_SIGNATURE;
  if (isDigitalSignature) {
    if (sigAlgs.length !== 1 || sigAlgs[0]!.format !== 'TLV' || sigAlgs[0]!.value.length === 0) {
      report('RFC9838 4.4.2.1.1: GCAUTH Digital Signature requires one Signature Algorithm Identifier (TLV)', path, `${sigAlgs.length} found`);
    }
  } else if (sigAlgs.length > 0) {
    report('RFC9838 4.4.2.1.1: Signature Algorithm Identifier only with GCAUTH Digital Signature', path, `${typeName(t.type)} ${t.id}`);
  }
  if (t.type === TransformType.GCAUTH && t.id === 0) {
    report('RFC9838 4.4.2.1.1: GCAUTH transform ID 0 is reserved', path, 'transform ID 0');
  }
  if (t.type === TransformType.KWA && t.id === 0) {
    report('RFC9838 4.4.2.1.2: KWA transform ID 0 is reserved', path, 'transform ID 0');
  }
}

const GSA_ATTRIBUTES: readonly { type: number; name: TableAttribute; section: string }[] = [
  { type: GsaAttr.GSA_KEY_LIFETIME, name: 'GSA_KEY_LIFETIME', section: '4.4.2.2.1' },
  { type: GsaAttr.GSA_INITIAL_MESSAGE_ID, name: 'GSA_INITIAL_MESSAGE_ID', section: '4.4.2.2.2' },
  { type: GsaAttr.GSA_NEXT_SPI, name: 'GSA_NEXT_SPI', section: '4.4.2.2.3' },
];

/** Sections 4.4.2.2 and 5, per GSA policy substructure. */
function checkGsaAttributes(p: SaPolicy, ctx: ValidationContext, path: string, report: Report): void {
  const kek = p.protocol === ProtocolId.GIKE_UPDATE;
  for (const { type, name } of GSA_ATTRIBUTES) {
    const count = p.attributes.filter((a) => a.type === type).length;
    if (type === GsaAttr.GSA_INITIAL_MESSAGE_ID && !kek) {
      // "Used in Protocol": GIKE_UPDATE only, whatever the exchange.
      if (count > 0) report('RFC9838 4.4.2.2: GSA_INITIAL_MESSAGE_ID is only used with GIKE_UPDATE', path, protocolName(p.protocol));
      continue;
    }
    const rule = occurrenceRule(name, occurrence(name, ctx), count, ctx.exchange);
    if (rule) report(rule, path, `${count} found (${tableNote(ctx)})`);
  }
  p.attributes.forEach((a) => {
    const at = joinPath(path, `attr ${a.type}`);
    if (a.type === 0) return report('RFC9838 4.4.2.2: GSA attribute type 0 is reserved', at, 'type 0');
    const known = GSA_ATTRIBUTES.find((k) => k.type === a.type);
    if (!known) return; // Unregistered or private use: not ours to judge.
    if (a.format !== 'TLV') return report(`RFC9838 4.4.2.2: ${known.name} must be TLV`, at, 'TV format');
    const nextSpi = a.type === GsaAttr.GSA_NEXT_SPI;
    if (a.value.length !== (nextSpi ? p.spi.length : 4)) {
      report(`RFC9838 ${known.section}: ${known.name} value must be ${nextSpi ? 'SPI Size' : '4'} octets`, at, `${a.value.length} octets`);
    }
  });
}

export function tableNote(ctx: ValidationContext): string {
  return `${tableFor(ctx)} rekey table`;
}

const GW_ATTRIBUTES: readonly { type: number; name: TableAttribute }[] = [
  { type: GwpAttr.GWP_ATD, name: 'GWP_ATD' },
  { type: GwpAttr.GWP_DTD, name: 'GWP_DTD' },
  { type: GwpAttr.GWP_SENDER_ID_BITS, name: 'GWP_SENDER_ID_BITS' },
];

/** Sections 4.4.3.1 and 5, over the payload's GW policy (the count rule already caps it at one). */
function checkGroupWide(
  policies: readonly GroupPolicy[],
  ctx: ValidationContext,
  path: string,
  segment: (i: number, p: GroupPolicy) => string,
  report: Report,
): void {
  const gws: { policy: GroupWidePolicy; path: string }[] = [];
  policies.forEach((p, i) => {
    if (p.kind === 'group-wide') gws.push({ policy: p, path: segment(i, p) });
  });
  const attrs: { attr: Attribute; path: string }[] = gws.flatMap((g) =>
    g.policy.attributes.map((attr) => ({ attr, path: joinPath(g.path, `attr ${attr.type}`) })),
  );
  const where = gws[0]?.path ?? path;
  for (const { type, name } of GW_ATTRIBUTES) {
    const count = attrs.filter((a) => a.attr.type === type).length;
    const rule = occurrenceRule(name, occurrence(name, ctx), count, ctx.exchange);
    if (rule) {
      const why = type === GwpAttr.GWP_SENDER_ID_BITS ? senderNoteDetail(ctx) : tableNote(ctx);
      report(rule, where, `${count} found (${why})`);
    }
  }
  for (const { attr, path: at } of attrs) {
    if (attr.type === 0) report('RFC9838 4.4.3.1: GW policy attribute type 0 is reserved', at, 'type 0');
    else if (GW_ATTRIBUTES.some((k) => k.type === attr.type) && attr.format !== 'TV') {
      report(`RFC9838 4.4.3.1: ${nameOf(GwpAttr, attr.type)} must be TV`, at, 'TLV format');
    }
  }
}

export function senderNoteDetail(ctx: ValidationContext): string {
  return `note 1: counter mode ${ctx.counterMode ? 'yes' : 'no'}, GROUP_SENDER ${ctx.groupSender ? 'yes' : 'no'}`;
}

/** Section 4.4.2: "MUST NOT distribute both ESP and AH policies for the same set of Traffic Selectors". */
function checkAhEspOverlap(
  policies: readonly GroupPolicy[],
  segment: (i: number, p: GroupPolicy) => string,
  report: Report,
): void {
  const selectorKey = (p: SaPolicy): string => {
    try {
      const w = new Writer(64);
      encodeTrafficSelector(w, p.source);
      encodeTrafficSelector(w, p.destination);
      return w.finish().toString('hex');
    } catch {
      return JSON.stringify([p.source, p.destination]); // Unencodable: compare as given.
    }
  };
  const ah = new Set<string>();
  policies.forEach((p) => {
    if (p.kind === 'sa' && p.protocol === ProtocolId.AH) ah.add(selectorKey(p));
  });
  policies.forEach((p, i) => {
    if (p.kind === 'sa' && p.protocol === ProtocolId.ESP && ah.has(selectorKey(p))) {
      report('RFC9838 4.4.2: ESP and AH policies must not share traffic selectors', segment(i, p), 'an AH policy has the same selectors');
    }
  });
}
