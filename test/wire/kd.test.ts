import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DecodeError } from '../../src/wire/errors.ts';
import { ExchangeType, GcauthId, PayloadType, ProtocolId } from '../../src/wire/iana.ts';
import {
  authKeyOf,
  decodeKdBody,
  encodeKdBody,
  senderIdsOf,
  type GroupKeyBag,
  type KdPayload,
  type MemberKeyBag,
} from '../../src/wire/kd.ts';
import { Reader } from '../../src/wire/reader.ts';
import { validateKd, type ValidationContext } from '../../src/wire/validator.ts';
import { Writer } from '../../src/wire/writer.ts';
import { saKeyAttribute, saKeysOf, wrapKeysOf, type WrappedKey } from '../../src/wire/wrapped-key.ts';
import { arbKdPayload } from './arbitraries-group.ts';
import { KD_KAT } from './group-vectors.ts';
import { hex } from './hex.ts';

function encodeKd(p: KdPayload): Buffer {
  const w = new Writer();
  encodeKdBody(w, p);
  return w.finish();
}
function decodeKd(b: Uint8Array, critical = false): KdPayload {
  return decodeKdBody(new Reader(b, 'KD'), critical);
}
function groupBag(kd: KdPayload, i: number): GroupKeyBag {
  const b = kd.keyBags[i];
  assert.ok(b?.kind === 'group');
  return b;
}
function memberBag(kd: KdPayload, i: number): MemberKeyBag {
  const b = kd.keyBags[i];
  assert.ok(b?.kind === 'member');
  return b;
}
const ids = (keys: WrappedKey[]): [number, number][] => keys.map((k) => [k.keyId, k.kwkId]);


describe('KD payload: known answer (RFC 9838 4.5 figures)', () => {
  it('decodes group and member key bags field by field', () => {
    const kd = decodeKd(KD_KAT, false);
    assert.equal(kd.type, PayloadType.KD);
    assert.equal(kd.keyBags.length, 3);
    const kek = groupBag(kd, 0);
    assert.equal(kek.protocol, ProtocolId.GIKE_UPDATE);
    assert.equal(kek.spi.toString('hex'), '01020304050607081112131415161718');
    assert.deepEqual(saKeysOf(kek), [{ keyId: 0, kwkId: 0, encryptedKey: Buffer.from('e0e1e2e3e4e5e6e7e8e9eaebecedeeef', 'hex') }]);
    const tek = groupBag(kd, 1);
    assert.equal(tek.protocol, ProtocolId.ESP);
    assert.deepEqual(ids(saKeysOf(tek)), [[0, 0]]);
    const member = memberBag(kd, 2);
    assert.deepEqual(ids(wrapKeysOf(member)), [[7, 0]]);
    assert.equal(authKeyOf(member)?.length, 44);
    assert.deepEqual(senderIdsOf(member), [Buffer.from('00000001', 'hex')]);
  });

  it('re-encodes to the same octets', () => {
    assert.deepEqual(encodeKd(decodeKd(KD_KAT)), KD_KAT);
  });
});

describe('KD payload: round trips and malformed input', () => {
  it('decode(encode(x)) == x', () => {
    fc.assert(
      fc.property(arbKdPayload, (p) => assert.deepStrictEqual(decodeKd(encodeKd(p), p.critical), p)),
      { numRuns: 500 },
    );
  });

  it('encode(decode(b)) == b for canonical b', () => {
    fc.assert(
      fc.property(arbKdPayload, (p) => {
        const b = encodeKd(p);
        assert.deepStrictEqual(encodeKd(decodeKd(b)), b);
      }),
      { numRuns: 500 },
    );
  });

  it('any octets either decode or fail with a DecodeError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 160 }), (b) => {
        try {
          decodeKd(b);
        } catch (e) {
          assert.ok(e instanceof DecodeError, String(e));
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('names the key bag and attribute in the error path', () => {
    const bad = Buffer.from(KD_KAT);
    bad.writeUInt16BE(0x0100, 48 + 36 + 4 + 2); // WRAP_KEY length past the member key bag
    assert.throws(
      () => decodeKd(bad),
      (e: unknown) => e instanceof DecodeError && e.path === 'KD > key bag[3] (member) > attr 1' && e.kind === 'truncated',
    );
  });

  it('rejects a key bag Length shorter than its header and SPI', () => {
    const bad = Buffer.from(KD_KAT);
    bad.writeUInt16BE(8, 2);
    assert.throws(
      () => decodeKd(bad),
      (e: unknown) => e instanceof DecodeError && e.kind === 'bad-length' && e.path === 'KD > key bag[1] (GIKE_UPDATE)',
    );
  });

  it('ignores the member key bag RESERVED octet on receipt', () => {
    const b = Buffer.from(KD_KAT);
    b[48 + 36 + 1] = 0x5a;
    assert.deepEqual(decodeKd(b), decodeKd(KD_KAT));
  });
});

// ---------------------------------------------------------------------------
// RFC 9838 Appendix A: LKH. X{Y} is key Y wrapped with key X, i.e. Key ID Y,
// KWK ID X; GSK_w{Y} has KWK ID 0 and X{K_sa} has Key ID 0. Encrypted keys
// are 8-octet placeholders: this layer does not look inside them.

/** A.2: GM A joins. KD(GP(SA1)(1{K_sa1}), MP(3{1}, 7{3}, GSK_w{7})) */
const LKH_JOIN_A = hex(`
  06 10 00 28                               # GP(SA1): GIKE_UPDATE, SPI Size 16, Length 40
  a1 a1 a1 a1 a1 a1 a1 a1 a1 a1 a1 a1 a1 a1 a1 a1   # SPI of SA1
  00 01 00 10  00 00 00 00  00 00 00 01     # SA_KEY 1{K_sa1}: Key ID 0, KWK ID 1
  5a 5a 5a 5a 5a 5a 5a 5a
  00 00 00 40                               # MP: Length 64
  00 01 00 10  00 00 00 01  00 00 00 03     # WRAP_KEY 3{1}: Key ID 1, KWK ID 3
  01 01 01 01 01 01 01 01
  00 01 00 10  00 00 00 03  00 00 00 07     # WRAP_KEY 7{3}: Key ID 3, KWK ID 7
  03 03 03 03 03 03 03 03
  00 01 00 10  00 00 00 07  00 00 00 00     # WRAP_KEY GSK_w{7}: Key ID 7, KWK ID 0
  07 07 07 07 07 07 07 07
`);

/** A.4: F excluded. KD(GP(SA3)(1{K_sa3}, 15{K_sa3}), MP(6{15}, 16{15}, 11{16})) */
const LKH_EXCLUDE_F = hex(`
  06 10 00 3c                               # GP(SA3): GIKE_UPDATE, SPI Size 16, Length 60
  a3 a3 a3 a3 a3 a3 a3 a3 a3 a3 a3 a3 a3 a3 a3 a3   # SPI of SA3
  00 01 00 10  00 00 00 00  00 00 00 01     # SA_KEY 1{K_sa3}: Key ID 0, KWK ID 1
  5a 5a 5a 5a 5a 5a 5a 5a
  00 01 00 10  00 00 00 00  00 00 00 0f     # SA_KEY 15{K_sa3}: Key ID 0, KWK ID 15
  5b 5b 5b 5b 5b 5b 5b 5b
  00 00 00 40                               # MP ("GM_KEY" in A.4 = WRAP_KEY): Length 64
  00 01 00 10  00 00 00 0f  00 00 00 06     # WRAP_KEY 6{15}: Key ID 15, KWK ID 6
  0f 0f 0f 0f 0f 0f 0f 0f
  00 01 00 10  00 00 00 0f  00 00 00 10     # WRAP_KEY 16{15}: Key ID 15, KWK ID 16
  1f 1f 1f 1f 1f 1f 1f 1f
  00 01 00 10  00 00 00 10  00 00 00 0b     # WRAP_KEY 11{16}: Key ID 16, KWK ID 11
  10 10 10 10 10 10 10 10
`);

/**
 * The GM procedure of Section 3.3, enough to check the appendix: build a key
 * path from some SA_KEY back to GSK_w or to a key of the Working Key Path
 * (root first, leaf last) and return the GM's new Working Key Path, or
 * undefined if the GM cannot reach the SA key (it is excluded).
 */
function nextWorkingKeyPath(kd: KdPayload, working: readonly number[]): number[] | undefined {
  const wraps = kd.keyBags.flatMap((b) => (b.kind === 'member' ? wrapKeysOf(b) : []));
  const resolve = (kwkId: number, depth: number): { path: number[]; rest: number[] } | undefined => {
    if (kwkId === 0) return { path: [], rest: [] };
    const at = working.indexOf(kwkId);
    if (at >= 0) return { path: [], rest: working.slice(at) };
    if (depth > wraps.length) return undefined;
    for (const w of wraps.filter((k) => k.keyId === kwkId)) {
      const found = resolve(w.kwkId, depth + 1);
      if (found) return { path: [kwkId, ...found.path], rest: found.rest };
    }
    return undefined;
  };
  for (const saKey of kd.keyBags.flatMap((b) => (b.kind === 'group' ? saKeysOf(b) : []))) {
    const found = resolve(saKey.kwkId, 0);
    if (found) return found.path.length === 0 ? [...working] : [...found.path, ...found.rest];
  }
  return undefined;
}

const LKH_CONTEXT: Omit<ValidationContext, 'exchange'> = {
  rekeyStyle: 'multicast',
  groupSender: false,
  counterMode: false,
  gcauth: GcauthId.IMPLICIT, // the appendix leaves AUTH_KEY out
  keyTree: true,
};

describe('KD payload: RFC 9838 Appendix A (LKH)', () => {
  it('A.2: GM A decodes its keys and gets Working Key Path 1->3->7', () => {
    const kd = decodeKd(LKH_JOIN_A);
    assert.deepEqual(encodeKd(kd), LKH_JOIN_A);
    assert.deepEqual(ids(saKeysOf(groupBag(kd, 0))), [[0, 1]]);
    assert.deepEqual(ids(wrapKeysOf(memberBag(kd, 1))), [
      [1, 3],
      [3, 7],
      [7, 0],
    ]);
    assert.deepEqual(nextWorkingKeyPath(kd, []), [1, 3, 7]);
    assert.deepEqual(validateKd(kd, { ...LKH_CONTEXT, exchange: ExchangeType.GSA_AUTH }), []);
  });

  it('A.4: the exclusion rekey keeps A, moves E, G and H, and shuts F out', () => {
    const kd = decodeKd(LKH_EXCLUDE_F);
    assert.deepEqual(encodeKd(kd), LKH_EXCLUDE_F);
    assert.deepEqual(ids(saKeysOf(groupBag(kd, 0))), [
      [0, 1],
      [0, 15],
    ]);
    assert.deepEqual(ids(wrapKeysOf(memberBag(kd, 1))), [
      [15, 6],
      [15, 16],
      [16, 11],
    ]);
    assert.deepEqual(nextWorkingKeyPath(kd, [1, 3, 7]), [1, 3, 7]); // A
    assert.deepEqual(nextWorkingKeyPath(kd, [1, 4, 10]), [1, 4, 10]); // D
    assert.deepEqual(nextWorkingKeyPath(kd, [2, 5, 11]), [15, 16, 11]); // E
    assert.equal(nextWorkingKeyPath(kd, [2, 5, 12]), undefined); // F
    assert.deepEqual(nextWorkingKeyPath(kd, [2, 6, 13]), [15, 6, 13]); // G
    assert.deepEqual(nextWorkingKeyPath(kd, [2, 6, 14]), [15, 6, 14]); // H
    // A Member Key Bag with only WRAP_KEY is allowed in GSA_REKEY (NOTES.md point 1).
    assert.deepEqual(validateKd(kd, { ...LKH_CONTEXT, exchange: ExchangeType.GSA_REKEY }), []);
  });

  it('A.3: a simple rekey wraps the SA key with GSK_w and leaves paths alone', () => {
    // KD(GP(SA2)(GSK_w{K_sa2}))
    const kd: KdPayload = {
      type: PayloadType.KD,
      critical: false,
      keyBags: [
        {
          kind: 'group',
          protocol: ProtocolId.GIKE_UPDATE,
          spi: Buffer.alloc(16, 0xa2),
          attributes: [saKeyAttribute({ keyId: 0, kwkId: 0, encryptedKey: Buffer.alloc(8, 0x5c) })],
        },
      ],
    };
    const back = decodeKd(encodeKd(kd));
    assert.deepEqual(ids(saKeysOf(groupBag(back, 0))), [[0, 0]]);
    assert.deepEqual(nextWorkingKeyPath(back, [2, 6, 13]), [2, 6, 13]);
    assert.deepEqual(validateKd(back, { ...LKH_CONTEXT, exchange: ExchangeType.GSA_REKEY }), []);
  });
});
