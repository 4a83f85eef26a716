/**
 * Forward access control when membership changes (RFC 9838 Section 3.2.1,
 * NOTES point 9): a rekey that changes membership must not carry new TEKs,
 * because it is protected with the KEK the excluded members still hold.
 * So the change takes two GSA_REKEY messages:
 *
 *   1. over the current Rekey SA: the new KEK policy, its keying material
 *      wrapped under the key tree's remaining level-1 keys, and the tree's
 *      new keys (WRAP_KEY). No TEKs.
 *   2. over the new Rekey SA: the new TEK policies and keys, wrapped under
 *      the new KEK's GSK_w (KWK ID 0), the Deletes of retired SAs, and
 *      optionally a further KEK (Section 3.2.1: a message that changes the
 *      policy also creates a new KEK, which also hides the policy change
 *      from the excluded members).
 */
import { wrapKey } from '../crypto/keywrap.ts';
import { splitRekeySaKeys, type RekeySaAlgorithms } from '../crypto/keys.ts';
import type { GroupWidePolicy, GsaPayload, SaPolicy } from '../wire/gsa.ts';
import { PayloadType, ProtocolId, TransformAttr, TransformType } from '../wire/iana.ts';
import type { DeletePayload } from '../wire/payloads/delete.ts';
import { DEFAULT_KWK_ID, SA_KEY_ID, type WrappedKey } from '../wire/wrapped-key.ts';
import type { LeafHandle, LkhTree } from './lkh.ts';
import { rekeyKeyDownload, type SaKeyBag } from './rekey-content.ts';
import type { RekeyContent } from './rekey-message.ts';

/** A new SA: its GSA policy and its keying material. */
export interface NewGroupSa {
  readonly policy: SaPolicy;
  readonly keymat: Buffer;
}

export interface MembershipChange {
  readonly tree: LkhTree;
  /** Members to exclude; may be empty for a join with backward access control. */
  readonly exclude: readonly LeafHandle[];
  /** Extra WRAP_KEYs for message 1, e.g. from `addMember({ backwardAccessControl: true })`. */
  readonly joinWrapKeys?: readonly WrappedKey[];
  /** The KEK message 1 installs (GIKE_UPDATE policy). */
  readonly kek: NewGroupSa;
  /** New TEKs (AH/ESP policies) for message 2. */
  readonly teks: readonly NewGroupSa[];
  /** A further KEK installed by message 2. */
  readonly nextKek?: NewGroupSa | undefined;
  readonly groupWide?: GroupWidePolicy | undefined;
  /** Deletes of SAs the new ones replace, sent in message 2. */
  readonly retire?: readonly DeletePayload[] | undefined;
  /** AUTH_KEY rollover, sent in message 1. */
  readonly authKey?: Buffer | undefined;
}

export interface MembershipRekeyPlan {
  /** Send over the current Rekey SA. */
  readonly first: RekeyContent;
  /** Send over the Rekey SA `first` installs (`kek`); undefined when there is nothing to add. */
  readonly second: RekeyContent | undefined;
}

/** The transforms of a GIKE_UPDATE policy that shape its keys (Section 3.4). */
export function rekeySaAlgorithmsOf(policy: SaPolicy): RekeySaAlgorithms {
  if (policy.protocol !== ProtocolId.GIKE_UPDATE) throw new RangeError('not a GSA KEK policy');
  const of = (type: number): SaPolicy['transforms'][number] | undefined => policy.transforms.find((t) => t.type === type);
  const encr = of(TransformType.ENCR);
  const kwa = of(TransformType.KWA);
  if (!encr || !kwa) throw new RangeError('GSA KEK policy without ENCR or KWA');
  const keyLength = encr.attributes.find((a) => a.type === TransformAttr.KEY_LENGTH);
  return {
    encr: encr.id,
    encrKeyBits: keyLength?.format === 'TV' ? keyLength.value : undefined,
    integ: of(TransformType.INTEG)?.id,
    kwa: kwa.id,
  };
}

/** Exclusion (and/or join) in the tree, then the two messages of Section 3.2.1. */
export function planMembershipRekey(change: MembershipChange): MembershipRekeyPlan {
  const { tree, kek } = change;
  const exclusion = change.exclude.length > 0 ? tree.excludeMembers(change.exclude).wrapKeys : tree.takeUndeliveredWrapKeys();
  const saKeys = tree.saKeysForGroup(kek.keymat);
  if (saKeys.length === 0) throw new RangeError('no member would remain: exclude everyone with excludeEveryMember() instead');
  const first: RekeyContent = {
    gsa: { type: PayloadType.GSA, critical: false, policies: [kek.policy] },
    kd: rekeyKeyDownload({
      bags: [{ protocol: ProtocolId.GIKE_UPDATE, spi: kek.policy.spi, saKeys }],
      wrapKeys: [...(change.joinWrapKeys ?? []), ...exclusion],
      authKey: change.authKey,
    }),
  };
  const newSas = [...(change.nextKek ? [change.nextKek] : []), ...change.teks];
  if (change.groupWide && newSas.length === 0) {
    throw new RangeError('a group-wide policy change needs a new SA in the same message (Section 3.2.1: or a new KEK)');
  }
  if (newSas.length === 0 && (change.retire ?? []).length === 0) return { first, second: undefined };

  // Message 2 is sent over the new KEK, so its GSK_w is the default KWK there.
  const algorithms = rekeySaAlgorithmsOf(kek.policy);
  const gskW = splitRekeySaKeys(kek.keymat, algorithms).gskW;
  const underNewKek = (keymat: Buffer): WrappedKey => ({
    keyId: SA_KEY_ID,
    kwkId: DEFAULT_KWK_ID,
    encryptedKey: wrapKey(algorithms.kwa, gskW, keymat),
  });
  const bags: SaKeyBag[] = newSas.map((sa) => ({ protocol: sa.policy.protocol, spi: sa.policy.spi, saKeys: [underNewKek(sa.keymat)] }));
  const policies: GsaPayload['policies'] = [...newSas.map((sa) => sa.policy), ...(change.groupWide ? [change.groupWide] : [])];
  const second: RekeyContent = {
    gsa: policies.length > 0 ? { type: PayloadType.GSA, critical: false, policies } : undefined,
    kd: bags.length > 0 ? rekeyKeyDownload({ bags }) : undefined,
    deletes: change.retire,
  };
  return { first, second };
}
