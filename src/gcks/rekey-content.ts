/**
 * Building blocks of GSA_REKEY content: Delete payloads (RFC 9838 Section
 * 2.4.3, NOTES point 7), GSA_NEXT_SPI (Section 4.4.2.2.3) and the KD of a
 * rekey (Sections 4.5.2, 4.5.3 and NOTES point 1).
 */
import { Limits } from '../wire/errors.ts';
import { nextSpiAttribute, type SaPolicy } from '../wire/gsa.ts';
import { PayloadType, ProtocolId } from '../wire/iana.ts';
import { authKeyAttribute, type GroupKeyBag, type KdPayload, type KeyBag } from '../wire/kd.ts';
import type { Attribute } from '../wire/attributes.ts';
import type { DeletePayload } from '../wire/payloads/delete.ts';
import { saKeyAttribute, wrapKeyAttribute, type WrappedKey } from '../wire/wrapped-key.ts';

const SPI_SIZE: Readonly<Record<number, number>> = {
  [ProtocolId.AH]: 4,
  [ProtocolId.ESP]: 4,
  [ProtocolId.GIKE_UPDATE]: 16,
};

function spiSizeOf(protocolId: number): number {
  const size = SPI_SIZE[protocolId];
  if (size === undefined) throw new RangeError(`no group SAs of protocol ${protocolId}`);
  return size;
}

/** Deletes retired SAs of one protocol (ESP/AH: 4-octet SPIs; GIKE_UPDATE: 16-octet Rekey SA SPIs). */
export function deleteSas(protocolId: number, spis: readonly Buffer[]): DeletePayload {
  const spiSize = spiSizeOf(protocolId);
  for (const spi of spis) {
    if (spi.length !== spiSize) throw new RangeError(`SPI of ${spi.length} octets for a ${spiSize}-octet protocol`);
    if (spi.every((b) => b === 0)) throw new RangeError('SPI 0 has its own meaning; use deleteAllDataSecuritySas or excludeEveryMember');
  }
  return { type: PayloadType.DELETE, critical: false, protocolId, spiSize, spis: spis.map((s) => Buffer.from(s)) };
}

/** SPI 0 with AH or ESP: every Data-Security SA of the group goes (Section 2.4.3). */
export function deleteAllDataSecuritySas(protocolId: typeof ProtocolId.AH | typeof ProtocolId.ESP): DeletePayload {
  return { type: PayloadType.DELETE, critical: false, protocolId, spiSize: 4, spis: [Buffer.alloc(4)] };
}

/** SPI 0 with GIKE_UPDATE: every receiving member is excluded and must re-register (Section 2.4.3). */
export function excludeEveryMember(): DeletePayload {
  return { type: PayloadType.DELETE, critical: false, protocolId: ProtocolId.GIKE_UPDATE, spiSize: 16, spis: [Buffer.alloc(16)] };
}

/**
 * Starting over (Section 2.4.3, e.g. Sender-IDs exhausted, Section 2.5.1):
 * delete all Data-Security SAs of each protocol in use, then the Rekey SA
 * with everyone in it, in that order.
 */
export function startOverDeletes(
  protocols: readonly (typeof ProtocolId.AH | typeof ProtocolId.ESP)[] = [ProtocolId.ESP],
): DeletePayload[] {
  return [...protocols.map(deleteAllDataSecuritySas), excludeEveryMember()];
}

/** The policy with GSA_NEXT_SPI attributes for SPIs reserved for its successors (Section 4.4.2.2.3). */
export function withNextSpis(policy: SaPolicy, spis: readonly Buffer[]): SaPolicy {
  for (const spi of spis) {
    if (spi.length !== policy.spi.length) throw new RangeError(`GSA_NEXT_SPI of ${spi.length} octets for SPI Size ${policy.spi.length}`);
  }
  return { ...policy, attributes: [...policy.attributes, ...spis.map(nextSpiAttribute)] };
}

export interface SaKeyBag {
  readonly protocol: number;
  readonly spi: Buffer;
  /** One SA_KEY, or several for a Rekey SA under a key tree (Section 4.5.2.1). */
  readonly saKeys: readonly WrappedKey[];
}

export interface RekeyKeyDownloadInput {
  /** Group key bags: new KEK and/or TEKs. */
  readonly bags: readonly SaKeyBag[];
  /** WRAP_KEY values (key tree changes) for everyone. */
  readonly wrapKeys?: readonly WrappedKey[];
  /** A new AUTH_KEY (DER SubjectPublicKeyInfo) when the GCKS rolls its signing key over. */
  readonly authKey?: Buffer | undefined;
}

/**
 * The KD of a GSA_REKEY. WRAP_KEY and AUTH_KEY travel in Member Key Bags
 * (NOTES point 1, as Appendix A.4 does), split over as many bags as the
 * decoder's per-bag attribute cap requires; never GM_SENDER_ID.
 */
export function rekeyKeyDownload(input: RekeyKeyDownloadInput): KdPayload {
  const keyBags: KeyBag[] = input.bags.map(
    (b): GroupKeyBag => ({ kind: 'group', protocol: b.protocol, spi: Buffer.from(b.spi), attributes: b.saKeys.map(saKeyAttribute) }),
  );
  const memberAttributes: Attribute[] = (input.wrapKeys ?? []).map(wrapKeyAttribute);
  if (input.authKey) memberAttributes.push(authKeyAttribute(input.authKey));
  for (let i = 0; i < memberAttributes.length; i += Limits.maxAttributes) {
    keyBags.push({ kind: 'member', attributes: memberAttributes.slice(i, i + Limits.maxAttributes) });
  }
  return { type: PayloadType.KD, critical: false, keyBags };
}
