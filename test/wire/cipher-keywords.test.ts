import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { skParameters } from '../../src/crypto/cipher.ts';
import { ENCR_NAMES, type EncrAlgorithm } from '../../src/gcks/transform-names.ts';
import { parseIkeProposal, ProposalSyntaxError, type EncrChoice } from '../../src/ike/proposal.ts';
import { isAeadEncr } from '../../src/wire/cipher-classes.ts';
import { CIPHER_KEYWORDS } from '../../src/wire/cipher-keywords.ts';
import { EncrId, IntegId } from '../../src/wire/iana.ts';

/** What IKE proposal strings accepted before the table was shared (must not shrink or grow). */
const IKE_ACCEPTS: Readonly<Record<string, EncrChoice>> = {
  aes128: { id: EncrId.AES_CBC, keyLength: 128 },
  aes192: { id: EncrId.AES_CBC, keyLength: 192 },
  aes256: { id: EncrId.AES_CBC, keyLength: 256 },
  aes128gcm16: { id: EncrId.AES_GCM_16, keyLength: 128 },
  aes192gcm16: { id: EncrId.AES_GCM_16, keyLength: 192 },
  aes256gcm16: { id: EncrId.AES_GCM_16, keyLength: 256 },
  aes128gcm: { id: EncrId.AES_GCM_16, keyLength: 128 },
  aes256gcm: { id: EncrId.AES_GCM_16, keyLength: 256 },
  chacha20poly1305: { id: EncrId.CHACHA20_POLY1305 },
};

/** What group policy accepted, in the order its error messages list them. */
const GROUP_ACCEPTS: Readonly<Record<string, EncrAlgorithm>> = {
  aes128gcm16: { id: EncrId.AES_GCM_16, keyBits: 128 },
  aes192gcm16: { id: EncrId.AES_GCM_16, keyBits: 192 },
  aes256gcm16: { id: EncrId.AES_GCM_16, keyBits: 256 },
  aes128gcm12: { id: EncrId.AES_GCM_12, keyBits: 128 },
  aes256gcm12: { id: EncrId.AES_GCM_12, keyBits: 256 },
  aes128gcm8: { id: EncrId.AES_GCM_8, keyBits: 128 },
  aes256gcm8: { id: EncrId.AES_GCM_8, keyBits: 256 },
  chacha20poly1305: { id: EncrId.CHACHA20_POLY1305 },
  aes128: { id: EncrId.AES_CBC, keyBits: 128 },
  aes192: { id: EncrId.AES_CBC, keyBits: 192 },
  aes256: { id: EncrId.AES_CBC, keyBits: 256 },
};

/** The single cipher an IKE proposal made of `keyword` plus a PRF/INTEG and a KE parses to. */
function ikeCipher(keyword: string): EncrChoice {
  const k = CIPHER_KEYWORDS[keyword];
  const rest = k !== undefined && !isAeadEncr(k.id) ? 'sha256-x25519' : 'prfsha256-x25519';
  const p = parseIkeProposal(`${keyword}-${rest}`);
  assert.equal(p.encr.length, 1);
  return p.encr[0]!;
}

function ikeAccepts(keyword: string): boolean {
  try {
    ikeCipher(keyword);
    return true;
  } catch (e) {
    assert.ok(e instanceof ProposalSyntaxError);
    assert.match(e.message, new RegExp(`unknown keyword '${keyword}'`));
    return false;
  }
}

const ikeKeywords = Object.keys(CIPHER_KEYWORDS).filter(ikeAccepts);
const groupKeywords = Object.keys(ENCR_NAMES);

describe('cipher keywords: one table for IKE proposals and group policy', () => {
  it('IKE proposals accept exactly the keywords they accepted before, with the same meaning', () => {
    assert.deepEqual([...ikeKeywords].sort(), Object.keys(IKE_ACCEPTS).sort());
    for (const [keyword, choice] of Object.entries(IKE_ACCEPTS)) assert.deepEqual(ikeCipher(keyword), choice, keyword);
  });

  it('group policy accepts exactly the names it accepted before, same meaning, same order', () => {
    assert.deepEqual(groupKeywords, Object.keys(GROUP_ACCEPTS));
    assert.deepEqual({ ...ENCR_NAMES }, GROUP_ACCEPTS);
  });

  it('every keyword both accept means the same ENCR transform and key length to both', () => {
    const shared = groupKeywords.filter((k) => ikeKeywords.includes(k));
    assert.deepEqual(shared, ['aes128gcm16', 'aes192gcm16', 'aes256gcm16', 'chacha20poly1305', 'aes128', 'aes192', 'aes256']);
    for (const keyword of shared) {
      const ike = ikeCipher(keyword);
      const group = ENCR_NAMES[keyword]!;
      assert.deepEqual({ id: ike.id, bits: ike.keyLength }, { id: group.id, bits: group.keyBits }, keyword);
    }
  });

  it('each user only filters the table: nothing is accepted that the table does not define', () => {
    for (const keyword of [...ikeKeywords, ...groupKeywords]) assert.ok(Object.hasOwn(CIPHER_KEYWORDS, keyword), keyword);
    // The filters leave out exactly: the aliases (group policy) and the short-ICV GCM variants (IKE).
    const groupOnly = groupKeywords.filter((k) => !ikeKeywords.includes(k));
    const ikeOnly = ikeKeywords.filter((k) => !groupKeywords.includes(k));
    assert.deepEqual(groupOnly, ['aes128gcm12', 'aes256gcm12', 'aes128gcm8', 'aes256gcm8']);
    assert.deepEqual(ikeOnly, ['aes128gcm', 'aes256gcm']);
    for (const alias of ikeOnly) {
      const canonical = CIPHER_KEYWORDS[alias]!.aliasOf!;
      assert.deepEqual(ikeCipher(alias), ikeCipher(canonical), alias);
    }
  });

  it('the spelling matches the crypto layer: aes<key bits>[gcm<ICV octets>], chacha20poly1305 has 256-bit keys', () => {
    for (const [keyword, k] of Object.entries(CIPHER_KEYWORDS)) {
      const aead = isAeadEncr(k.id);
      const p = skParameters({ encr: k.id, encrKeyBits: k.keyBits, integ: aead ? IntegId.NONE : IntegId.HMAC_SHA2_256_128 });
      if (keyword === 'chacha20poly1305') {
        assert.equal(k.id, EncrId.CHACHA20_POLY1305);
        assert.equal(p.encrKeyLength, 32 + 4);
        continue;
      }
      const m = /^aes(128|192|256)(?:gcm(8|12|16)?)?$/.exec(keyword);
      assert.ok(m, keyword);
      assert.equal(k.keyBits, Number(m[1]), keyword);
      const gcm = keyword.includes('gcm');
      assert.equal(aead, gcm, keyword);
      // A bare `aesNNNgcm` is strongSwan's 16-octet-ICV GCM.
      if (gcm) assert.equal(p.icvLength, Number(m[2] ?? 16), keyword);
      else assert.equal(k.id, EncrId.AES_CBC, keyword);
    }
  });

  it('Object members are not keywords', () => {
    for (const word of ['constructor', '__proto__', 'hasownproperty']) {
      assert.throws(() => parseIkeProposal(`${word}-prfsha256-x25519`), new RegExp(`unknown keyword '${word}'`));
      assert.throws(() => parseIkeProposal(`aes128-sha256-${word}`), new RegExp(`unknown keyword '${word}'`));
    }
  });
});
