/**
 * Turning a key exchange into the SA's keys and ciphers, shared by
 * IKE_SA_INIT and the IKE SA rekey (RFC 7296 Sections 2.14 and 2.18).
 */
import { createSkCipher } from '../crypto/cipher.ts';
import { deriveIkeKeys, deriveRekeyedIkeKeys, skKeysFor, type IkeSaAlgorithms, type IkeSaKeys } from '../crypto/keys.ts';
import type { RandomSource } from '../crypto/random.ts';
import type { IkeSa } from './ike-sa.ts';
import type { NegotiatedIkeTransforms } from './proposal.ts';

export function algorithmsOf(t: NegotiatedIkeTransforms): IkeSaAlgorithms {
  return { prf: t.prf, encr: t.encr.id, encrKeyBits: t.encr.keyLength, integ: t.integ };
}

/**
 * The keys copied into one allocation of their own, the derived ones wiped:
 * prf+ output is a slice of node's shared Buffer pool, which a long-lived
 * slice would keep alive a whole 8 KiB slab for.
 */
function ownKeys(keys: IkeSaKeys): IkeSaKeys {
  const names = Object.keys(keys) as (keyof IkeSaKeys)[];
  const block = Buffer.allocUnsafeSlow(names.reduce((n, k) => n + keys[k].length, 0));
  const out: Partial<Record<keyof IkeSaKeys, Buffer>> = {};
  let offset = 0;
  for (const k of names) {
    const src = keys[k];
    src.copy(block, offset);
    out[k] = block.subarray(offset, offset + src.length);
    offset += src.length;
    src.fill(0);
  }
  return out as IkeSaKeys;
}

/** Stores keys and builds one cipher per direction; which is which follows the SA's role. */
export function installKeys(sa: IkeSa, derived: IkeSaKeys, rng: RandomSource): void {
  if (!sa.transforms) throw new Error('installKeys before transforms were negotiated');
  const keys = ownKeys(derived);
  const alg = { encr: sa.transforms.encr.id, encrKeyBits: sa.transforms.encr.keyLength, integ: sa.transforms.integ };
  const other = sa.role === 'initiator' ? 'responder' : 'initiator';
  sa.keys = keys;
  sa.ciphers = {
    outbound: createSkCipher(alg, skKeysFor(keys, sa.role), rng),
    inbound: createSkCipher(alg, skKeysFor(keys, other), rng),
  };
}

/** IKE_SA_INIT: SKEYSEED = prf(Ni | Nr, g^ir). Needs nonces, both SPIs and transforms on the SA. */
export function deriveInitialKeys(sa: IkeSa, sharedSecret: Buffer, rng: RandomSource): void {
  const t = sa.transforms;
  if (!t || !sa.nonceI || !sa.nonceR) throw new Error('key derivation before nonces and transforms');
  const keys = deriveIkeKeys({ ...algorithmsOf(t), ni: sa.nonceI, nr: sa.nonceR, sharedSecret, spiI: sa.spiI, spiR: sa.spiR });
  sharedSecret.fill(0);
  installKeys(sa, keys, rng);
}

/** IKE SA rekey: SKEYSEED = prf_old(SK_d_old, g^ir | Ni | Nr) for the new SA `sa`. */
export function deriveRekeyKeys(sa: IkeSa, old: IkeSa, sharedSecret: Buffer, rng: RandomSource): void {
  const t = sa.transforms;
  if (!t || !sa.nonceI || !sa.nonceR || !old.keys || !old.transforms) throw new Error('rekey derivation without state');
  const keys = deriveRekeyedIkeKeys({
    ...algorithmsOf(t),
    ni: sa.nonceI,
    nr: sa.nonceR,
    sharedSecret,
    spiI: sa.spiI,
    spiR: sa.spiR,
    oldPrf: old.transforms.prf,
    oldSkD: old.keys.skD,
  });
  sharedSecret.fill(0);
  installKeys(sa, keys, rng);
}
