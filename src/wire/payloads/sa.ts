import { Limits } from '../errors.ts';
import type { PayloadType } from '../iana.ts';
import type { Reader } from '../reader.ts';
import { decodeTransform, encodeTransform, type Transform } from '../transform.ts';
import { EncodeError, type Writer } from '../writer.ts';

/**
 * Security Association payload (RFC 7296 Section 3.3). SAg (RFC 9838
 * Section 4.3) has the same number and format, so both use this type; which
 * one a payload is follows from the exchange it appears in.
 */
export interface SaPayload {
  readonly type: typeof PayloadType.SA;
  readonly critical: boolean;
  readonly proposals: readonly Proposal[];
}

/**
 * Proposal substructure (RFC 7296 Section 3.3.1):
 *   Last Substruc(1) | RESERVED(1) | Proposal Length(2)
 *   Proposal Num(1) | Protocol ID(1) | SPI Size(1) | Num Transforms(1) | SPI | Transforms
 */
export interface Proposal {
  readonly num: number;
  readonly protocolId: number;
  /** Empty in IKE_SA_INIT and in SAg (SPI Size 0). */
  readonly spi: Buffer;
  readonly transforms: readonly Transform[];
}

const LAST_PROPOSAL = 0;
const MORE_PROPOSALS = 2;
const PROPOSAL_HEADER = 8;

export function decodeSaBody(r: Reader, critical: boolean): SaPayload {
  const proposals: Proposal[] = [];
  let sawLast = false;
  while (!r.atEnd) {
    if (sawLast) r.fail('bad-value', 'proposal follows the one marked last');
    if (proposals.length >= Limits.maxProposals) r.fail('limit', `more than ${Limits.maxProposals} proposals`);
    const { proposal, last } = decodeProposal(r, proposals.length + 1);
    proposals.push(proposal);
    sawLast = last;
  }
  if (proposals.length === 0) r.fail('bad-length', 'SA payload without proposals');
  if (!sawLast) r.fail('bad-value', 'last proposal is not marked last (Last Substruc 2)');
  return { type: 33, critical, proposals };
}

function decodeProposal(r: Reader, index: number): { proposal: Proposal; last: boolean } {
  const segment = `proposal[${index}]`;
  const head = r.child(segment);
  const lastSub = head.u8('last substruc');
  if (lastSub !== LAST_PROPOSAL && lastSub !== MORE_PROPOSALS) {
    head.fail('bad-value', `last substruc must be 0 or 2, got ${lastSub}`);
  }
  head.u8('reserved');
  const len = head.u16('proposal length');
  if (len < PROPOSAL_HEADER) head.fail('bad-length', `proposal length ${len} < ${PROPOSAL_HEADER}`);
  const body = r.sub(len, segment);
  body.skip(4);
  const num = body.u8('proposal num');
  const protocolId = body.u8('protocol ID');
  const spiSize = body.u8('SPI size');
  const count = body.u8('num transforms');
  if (count > Limits.maxTransforms) body.fail('limit', `${count} transforms > ${Limits.maxTransforms}`);
  const spi = body.bytes(spiSize, 'SPI');
  const transforms: Transform[] = [];
  for (let i = 1; i <= count; i++) {
    if (body.atEnd) body.fail('truncated', `num transforms says ${count}, found ${i - 1}`);
    const { transform, last } = decodeTransform(body, i);
    if (last !== (i === count)) {
      body.fail('bad-value', `transform[${i}] last substruc disagrees with num transforms ${count}`);
    }
    transforms.push(transform);
  }
  body.expectEnd(`after ${count} transform(s)`);
  return { proposal: { num, protocolId, spi, transforms }, last: lastSub === LAST_PROPOSAL };
}

export function encodeSaBody(w: Writer, p: SaPayload): void {
  if (p.proposals.length === 0) throw new EncodeError('SA payload needs at least one proposal');
  p.proposals.forEach((proposal, i) => encodeProposal(w, proposal, i === p.proposals.length - 1));
}

function encodeProposal(w: Writer, p: Proposal, isLast: boolean): void {
  if (p.transforms.length > 0xff) throw new EncodeError(`too many transforms: ${p.transforms.length}`);
  if (p.spi.length > 0xff) throw new EncodeError(`SPI too long: ${p.spi.length}`);
  const start = w.length;
  w.u8(isLast ? LAST_PROPOSAL : MORE_PROPOSALS).u8(0);
  const lenAt = w.placeholder16();
  w.u8(p.num).u8(p.protocolId).u8(p.spi.length).u8(p.transforms.length).bytes(p.spi);
  p.transforms.forEach((t, i) => encodeTransform(w, t, i === p.transforms.length - 1));
  w.patch16(lenAt, w.length - start);
}
