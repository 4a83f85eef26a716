import { Limits } from '../errors.ts';
import { ProtocolId, type PayloadType } from '../iana.ts';
import type { Reader } from '../reader.ts';
import { EncodeError, type Writer } from '../writer.ts';

/**
 * Delete payload (RFC 7296 Section 3.11):
 *   Protocol ID(1) | SPI Size(1) | Num of SPIs(2) | SPIs
 * G-IKEv2 (RFC 9838 Sections 2.4.3 and 4.6) adds protocol 0 (the whole group
 * SA) and GIKE_UPDATE (the Rekey SA, whose SPI is 16 octets); an all-zero
 * SPI there means "all SAs of that kind" (for GIKE_UPDATE: the member is
 * excluded). Those meanings are the engine's; this codec keeps the octets.
 */
export interface DeletePayload {
  readonly type: typeof PayloadType.DELETE;
  readonly critical: boolean;
  readonly protocolId: number;
  /** Kept explicitly because it is on the wire even when there are no SPIs. */
  readonly spiSize: number;
  readonly spis: readonly Buffer[];
}

/** SPI sizes each protocol allows; protocols not listed accept any size. */
const SPI_SIZES: ReadonlyMap<number, readonly number[]> = new Map([
  [ProtocolId.IKE, [0]],
  [ProtocolId.AH, [4]],
  [ProtocolId.ESP, [4]],
  [ProtocolId.GIKE_UPDATE, [16]],
]);

/** The SPI sizes a Delete for `protocolId` may use, or undefined when any size is accepted. */
export function deleteSpiSizes(protocolId: number): readonly number[] | undefined {
  return SPI_SIZES.get(protocolId);
}

export function decodeDeleteBody(r: Reader, critical: boolean): DeletePayload {
  const protocolId = r.u8('protocol ID');
  const spiSize = r.u8('SPI size');
  const allowed = deleteSpiSizes(protocolId);
  if (allowed && !allowed.includes(spiSize)) {
    r.fail('bad-value', `SPI size ${spiSize} for protocol ${protocolId}, expected ${allowed.join(' or ')}`);
  }
  const count = r.u16('num of SPIs');
  if (count > Limits.maxDeleteSpis) r.fail('limit', `${count} SPIs > ${Limits.maxDeleteSpis}`);
  if (count * spiSize !== r.remaining) {
    r.fail('bad-length', `${count} SPI(s) of ${spiSize} octet(s) need ${count * spiSize}, payload has ${r.remaining}`);
  }
  const spis: Buffer[] = [];
  for (let i = 0; i < count; i++) spis.push(r.bytes(spiSize, `SPI[${i + 1}]`));
  return { type: 42, critical, protocolId, spiSize, spis };
}

export function encodeDeleteBody(w: Writer, p: DeletePayload): void {
  const allowed = deleteSpiSizes(p.protocolId);
  if (allowed && !allowed.includes(p.spiSize)) {
    throw new EncodeError(`SPI size ${p.spiSize} for protocol ${p.protocolId}, expected ${allowed.join(' or ')}`);
  }
  for (const spi of p.spis) {
    if (spi.length !== p.spiSize) throw new EncodeError(`SPI of ${spi.length} octet(s) in a Delete with SPI size ${p.spiSize}`);
  }
  w.u8(p.protocolId).u8(p.spiSize).u16(p.spis.length);
  for (const spi of p.spis) w.bytes(spi);
}
