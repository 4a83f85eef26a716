import { isRegistration, type GroupExchange, type ValidationContext } from './attribute-table.ts';
import { usesCounterMode } from './cipher-classes.ts';
import { ValidationError } from './errors.ts';
import { isKekPolicy, isTekPolicy, type GsaPayload } from './gsa.ts';
import { ExchangeType, nameOf, PayloadType, ProtocolId, TransformType } from './iana.ts';
import type { KdPayload } from './kd.ts';
import { joinPath } from './reader.ts';
import { SPI_SIZE, validateGsa } from './validate-gsa.ts';
import { validateKd } from './validate-kd.ts';

/**
 * The RFC 9838 validator, kept apart from decoding: decoders accept anything
 * well-formed, the validator says which rules a well-formed GSA / KD breaks
 * in a given exchange (Sections 4.4, 4.5 and both tables of Section 5).
 * Every violation is returned so that a log shows all of them at once;
 * `assertValid` throws the first for callers that only need yes/no.
 */
export { validateGsa } from './validate-gsa.ts';
export { validateKd } from './validate-kd.ts';
export type { GroupExchange, RekeyStyle, ValidationContext } from './attribute-table.ts';
export { isAeadEncr, isImplicitIvEncr, usesCounterMode } from './cipher-classes.ts';

/**
 * Context for a whole message: the exchange comes from the header, and what
 * the message itself says wins over the caller's memory: a registration's
 * GSA names the GCAUTH method, and its TEK policies tell whether a
 * counter-mode cipher is in use.
 */
export interface ExchangeContext extends Omit<ValidationContext, 'exchange' | 'counterMode'> {
  /** Leave out to derive it from the message's TEK policies. */
  readonly counterMode?: boolean;
}

const GROUP_EXCHANGES: readonly number[] = [
  ExchangeType.GSA_AUTH,
  ExchangeType.GSA_REGISTRATION,
  ExchangeType.GSA_REKEY,
  ExchangeType.GSA_INBAND_REKEY,
];

export function isGroupExchange(exchangeType: number): exchangeType is GroupExchange {
  return GROUP_EXCHANGES.includes(exchangeType);
}

export function isGsaPayload(p: { readonly type: number }): p is GsaPayload {
  return p.type === PayloadType.GSA && 'policies' in p;
}
export function isKdPayload(p: { readonly type: number }): p is KdPayload {
  return p.type === PayloadType.KD && 'keyBags' in p;
}

/**
 * Validates the GSA and KD payloads of one decrypted G-IKEv2 message (the
 * inner payloads of SK) and how they relate. Other payloads are ignored.
 */
export function validateExchange(
  exchangeType: number,
  payloads: readonly { readonly type: number }[],
  ctx: ExchangeContext,
): ValidationError[] {
  const gsas = payloads.filter(isGsaPayload);
  const kds = payloads.filter(isKdPayload);
  const out: ValidationError[] = [];
  const exchangeName = nameOf(ExchangeType, exchangeType);

  if (!isGroupExchange(exchangeType)) {
    if (gsas.length + kds.length > 0) {
      out.push(new ValidationError('RFC9838 2.2: GSA and KD appear only in G-IKEv2 exchanges', '', exchangeName));
    }
    return out;
  }
  if (gsas.length > 1) out.push(new ValidationError('RFC9838 2.3.1: at most one GSA payload', '', `${gsas.length} in ${exchangeName}`));
  if (kds.length > 1) out.push(new ValidationError('RFC9838 2.3.1: at most one KD payload', '', `${kds.length} in ${exchangeName}`));
  if ((gsas.length > 0) !== (kds.length > 0)) {
    out.push(new ValidationError('RFC9838 2.3.1: GSA and KD are sent together', '', `${gsas.length} GSA, ${kds.length} KD`));
  }

  const full = effectiveContext(exchangeType, gsas[0], ctx);
  for (const gsa of gsas) out.push(...validateGsa(gsa, full));
  for (const kd of kds) out.push(...validateKd(kd, full));
  const gsa = gsas[0];
  const kd = kds[0];
  if (gsa && kd) out.push(...matchKeyBagsToPolicies(gsa, kd, full));
  return out;
}

function effectiveContext(exchange: GroupExchange, gsa: GsaPayload | undefined, ctx: ExchangeContext): ValidationContext {
  const policies = gsa?.policies ?? [];
  const gcauth = policies.filter(isKekPolicy).flatMap((p) => p.transforms).find((t) => t.type === TransformType.GCAUTH);
  const counterMode = ctx.counterMode ?? policies.filter(isTekPolicy).some((p) => usesCounterMode(p.transforms));
  return { ...ctx, exchange, counterMode, gcauth: gcauth?.id ?? ctx.gcauth };
}

/**
 * Section 2.3.3: keys are matched to policies by SPI. A key bag for an SA
 * the message does not describe cannot be used; at registration the GM has
 * no earlier policy, so every SA policy needs its key bag too.
 */
function matchKeyBagsToPolicies(gsa: GsaPayload, kd: KdPayload, ctx: ValidationContext): ValidationError[] {
  const out: ValidationError[] = [];
  const id = (protocol: number, spi: Buffer): string => `${protocol}:${spi.toString('hex')}`;
  const policies = new Set(gsa.policies.flatMap((p) => (p.kind === 'sa' ? [id(p.protocol, p.spi)] : [])));
  const bags = new Set(kd.keyBags.flatMap((b) => (b.kind === 'group' ? [id(b.protocol, b.spi)] : [])));
  kd.keyBags.forEach((b, i) => {
    if (b.kind !== 'group' || SPI_SIZE[b.protocol] === undefined || policies.has(id(b.protocol, b.spi))) return;
    const path = joinPath('KD', `key bag[${i + 1}] (${nameOf(ProtocolId, b.protocol, 'protocol')})`);
    out.push(new ValidationError('RFC9838 2.3.3: a group key bag must match a GSA policy (protocol, SPI)', path, `SPI ${b.spi.toString('hex')}`));
  });
  if (!isRegistration(ctx.exchange)) return out;
  gsa.policies.forEach((p, i) => {
    if (p.kind !== 'sa' || SPI_SIZE[p.protocol] === undefined || bags.has(id(p.protocol, p.spi))) return;
    const path = joinPath('GSA', `policy[${i + 1}] (${nameOf(ProtocolId, p.protocol, 'protocol')})`);
    out.push(new ValidationError('RFC9838 2.3.3: at registration every GSA policy needs a group key bag', path, `SPI ${p.spi.toString('hex')}`));
  });
  return out;
}

/** Throws the first violation, if any. */
export function assertValid(violations: readonly ValidationError[]): void {
  const first = violations[0];
  if (first) throw first;
}
