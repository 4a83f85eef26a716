/**
 * The GSA and KD payloads of a registration response (RFC 9838 Sections 4.4
 * and 4.5): the group's policy as it stands at `now`, and its keys wrapped
 * with the registration IKE SA's GSK_w.
 */
import { wrapKey } from '../crypto/keywrap.ts';
import type { Attribute } from '../wire/attributes.ts';
import {
  activationTimeDelayAttribute,
  deactivationTimeDelayAttribute,
  initialMessageIdAttribute,
  keyLifetimeAttribute,
  senderIdBitsAttribute,
  type GroupPolicy,
  type GsaPayload,
} from '../wire/gsa.ts';
import { PayloadType, ProtocolId } from '../wire/iana.ts';
import { authKeyAttribute, senderIdAttribute, type KdPayload, type KeyBag } from '../wire/kd.ts';
import { DEFAULT_KWK_ID, SA_KEY_ID, saKeyAttribute } from '../wire/wrapped-key.ts';
import type { Group } from './group.ts';
import { encodeSenderId } from './sender-ids.ts';

/** Remaining lifetime in whole seconds, rounded up and at least 1 (a GM joining late gets what is left). */
export function remainingSeconds(expiresAt: number, now: number): number {
  return Math.max(1, Math.ceil((expiresAt - now) / 1000));
}

export interface GsaOptions {
  /** Include GWP_SENDER_ID_BITS: the member sends and a TEK is counter-based (Section 5, note 1). */
  readonly senderIdBits: boolean;
}

export function buildGroupSecurityAssociation(group: Group, now: number, options: GsaOptions): GsaPayload {
  const multicast = group.rekeySa !== undefined;
  const policies: GroupPolicy[] = [];
  const kek = group.rekeySa;
  if (kek) {
    const attributes: Attribute[] = [keyLifetimeAttribute(remainingSeconds(kek.expiresAt, now))];
    // Section 4.4.2.2.2: only when the first Message ID the member will see is non-zero.
    const initial = kek.messageIds.peek();
    if (initial > 0) attributes.push(initialMessageIdAttribute(initial));
    policies.push({
      kind: 'sa',
      protocol: ProtocolId.GIKE_UPDATE,
      spi: kek.spi,
      source: kek.policy.source,
      destination: kek.policy.destination,
      transforms: kek.transforms,
      attributes,
    });
  }
  for (const tek of group.dataSecuritySas) {
    policies.push({
      kind: 'sa',
      protocol: tek.policy.protocolId,
      spi: tek.spi,
      source: tek.policy.source,
      destination: tek.policy.destination,
      transforms: tek.transforms,
      // Section 4.4.2.2.1: MUST with multicast rekey, SHOULD NOT with inband rekey.
      attributes: multicast ? [keyLifetimeAttribute(remainingSeconds(tek.expiresAt, now))] : [],
    });
  }
  const gw: Attribute[] = [];
  const c = group.config;
  if (c.activationDelaySeconds !== undefined) gw.push(activationTimeDelayAttribute(c.activationDelaySeconds));
  if (c.deactivationDelaySeconds !== undefined) gw.push(deactivationTimeDelayAttribute(c.deactivationDelaySeconds));
  if (options.senderIdBits) gw.push(senderIdBitsAttribute(c.senderIdBits));
  if (gw.length > 0) policies.push({ kind: 'group-wide', attributes: gw });
  return { type: PayloadType.GSA, critical: false, policies };
}

export interface KeyDownloadInput {
  /** KWA negotiated for the registration IKE SA (NOTES point 5). */
  readonly unicastKwa: number;
  /** GSK_w of the registration IKE SA (Section 3.1.1). */
  readonly gskW: Buffer;
  readonly senderIds: readonly number[];
}

/**
 * Group key bags carry one SA_KEY each, Key ID 0 and KWK ID 0 (wrapped with
 * GSK_w, Section 3.3). The member key bag carries AUTH_KEY with signed
 * rekeys and the Sender-IDs; a key tree (LKH) will add its WRAP_KEYs there
 * and wrap the KEK's SA_KEY under the member's leaf key instead.
 */
export function buildKeyDownload(group: Group, input: KeyDownloadInput): KdPayload {
  const wrap = (keymat: Buffer): Attribute =>
    saKeyAttribute({ keyId: SA_KEY_ID, kwkId: DEFAULT_KWK_ID, encryptedKey: wrapKey(input.unicastKwa, input.gskW, keymat) });
  const keyBags: KeyBag[] = [];
  const kek = group.rekeySa;
  if (kek) keyBags.push({ kind: 'group', protocol: ProtocolId.GIKE_UPDATE, spi: kek.spi, attributes: [wrap(kek.keymat)] });
  for (const tek of group.dataSecuritySas) {
    keyBags.push({ kind: 'group', protocol: tek.policy.protocolId, spi: tek.spi, attributes: [wrap(tek.keymat)] });
  }
  const member: Attribute[] = [];
  if (kek && group.signingKey) member.push(authKeyAttribute(group.signingKey.publicKeySpki));
  for (const id of input.senderIds) member.push(senderIdAttribute(encodeSenderId(id)));
  if (member.length > 0) keyBags.push({ kind: 'member', attributes: member });
  return { type: PayloadType.KD, critical: false, keyBags };
}
