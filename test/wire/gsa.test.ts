import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DecodeError } from '../../src/wire/errors.ts';
import {
  activationTimeDelay,
  deactivationTimeDelay,
  decodeGsaBody,
  encodeGsaBody,
  initialMessageId,
  isKekPolicy,
  isTekPolicy,
  keyLifetimeAttribute,
  keyLifetimeSeconds,
  nextSpiAttribute,
  nextSpis,
  senderIdBits,
  type GsaPayload,
  type SaPolicy,
} from '../../src/wire/gsa.ts';
import { EncrId, GcauthId, KwaId, PayloadType, ProtocolId, SnId, TransformType } from '../../src/wire/iana.ts';
import { Reader } from '../../src/wire/reader.ts';
import { EncodeError, Writer } from '../../src/wire/writer.ts';
import { arbGsaPayload } from './arbitraries-group.ts';
import { GSA_KAT } from './group-vectors.ts';
import { hex } from './hex.ts';

function encodeGsa(p: GsaPayload): Buffer {
  const w = new Writer();
  encodeGsaBody(w, p);
  return w.finish();
}
function decodeGsa(b: Uint8Array, critical = false): GsaPayload {
  return decodeGsaBody(new Reader(b, 'GSA'), critical);
}


describe('GSA payload: known answer (RFC 9838 4.4 figures)', () => {
  it('decodes the KEK, TEK and GW policies field by field', () => {
    const gsa = decodeGsa(GSA_KAT, true);
    assert.equal(gsa.type, PayloadType.GSA);
    assert.equal(gsa.critical, true);
    assert.equal(gsa.policies.length, 3);
    const [kek, tek, gw] = gsa.policies;

    assert.ok(kek && isKekPolicy(kek));
    assert.equal(kek.spi.toString('hex'), '01020304050607081112131415161718');
    assert.deepEqual(kek.destination, {
      type: 7,
      ipProtocol: 17,
      startPort: 848,
      endPort: 848,
      startAddress: '239.192.0.1',
      endAddress: '239.192.0.1',
    });
    assert.deepEqual(
      kek.transforms.map((t) => [t.type, t.id]),
      [
        [TransformType.ENCR, EncrId.AES_GCM_16],
        [TransformType.KWA, KwaId.KW_5649_256],
        [TransformType.GCAUTH, GcauthId.DIGITAL_SIGNATURE],
      ],
    );
    assert.deepEqual(kek.transforms[2]!.attributes[0], {
      type: 18,
      format: 'TLV',
      value: Buffer.from('300506032b6570', 'hex'),
    });
    assert.equal(keyLifetimeSeconds(kek), 86400);
    assert.equal(initialMessageId(kek), 5);

    assert.ok(tek && isTekPolicy(tek));
    assert.equal(tek.protocol, ProtocolId.ESP);
    assert.equal(tek.spi.toString('hex'), '11223344');
    assert.equal(tek.transforms[1]!.id, SnId.UNSPECIFIED32);
    assert.equal(keyLifetimeSeconds(tek), 3600);
    assert.equal(initialMessageId(tek), undefined);

    assert.ok(gw && gw.kind === 'group-wide');
    assert.equal(activationTimeDelay(gw), 10);
    assert.equal(deactivationTimeDelay(gw), 15);
    assert.equal(senderIdBits(gw), 8);
  });

  it('re-encodes to the same octets', () => {
    assert.deepEqual(encodeGsa(decodeGsa(GSA_KAT)), GSA_KAT);
  });
});

describe('GSA payload: round trips', () => {
  it('decode(encode(x)) == x', () => {
    fc.assert(
      fc.property(arbGsaPayload, (p) => {
        assert.deepStrictEqual(decodeGsa(encodeGsa(p), p.critical), p);
      }),
      { numRuns: 500 },
    );
  });

  it('encode(decode(b)) == b for canonical b', () => {
    fc.assert(
      fc.property(arbGsaPayload, (p) => {
        const b = encodeGsa(p);
        assert.deepStrictEqual(encodeGsa(decodeGsa(b)), b);
      }),
      { numRuns: 500 },
    );
  });

  it('any octets either decode or fail with a DecodeError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        try {
          decodeGsa(b);
        } catch (e) {
          assert.ok(e instanceof DecodeError, String(e));
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('typed attribute helpers produce attributes that read back', () => {
    const base = decodeGsa(GSA_KAT).policies[1] as SaPolicy;
    const p: SaPolicy = {
      ...base,
      attributes: [keyLifetimeAttribute(7200), nextSpiAttribute(Buffer.from('aabbccdd', 'hex')), nextSpiAttribute(Buffer.from('01020304', 'hex'))],
    };
    const back = decodeGsa(encodeGsa({ type: PayloadType.GSA, critical: false, policies: [p] })).policies[0] as SaPolicy;
    assert.equal(keyLifetimeSeconds(back), 7200);
    assert.deepEqual(nextSpis(back).map((s) => s.toString('hex')), ['aabbccdd', '01020304']);
  });
});

describe('GSA payload: malformed input', () => {
  it('names the policy, transform and attribute in the error path', () => {
    // Cut the KAT inside the Key Length attribute of the TEK's first transform:
    // keep the declared lengths so the failure is inside the transform.
    const bad = Buffer.from(GSA_KAT);
    const tekStart = 107;
    const encrAttr = tekStart + 4 + 4 + 16 + 16 + 8; // attribute of transform[1]
    bad.writeUInt16BE(0x000e, encrAttr); // AF clear: Key Length as TLV, length 0x0100 > what is left
    assert.throws(
      () => decodeGsa(bad),
      (e: unknown) => e instanceof DecodeError && e.path === 'GSA > policy[2] (ESP) > transform[1] > ENCR > attr 14',
    );
  });

  it('rejects a policy Length shorter than its header and SPI', () => {
    const bad = Buffer.from(GSA_KAT);
    bad.writeUInt16BE(19, 2); // < 4 + 16
    assert.throws(() => decodeGsa(bad), (e: unknown) => e instanceof DecodeError && e.kind === 'bad-length');
  });

  it('rejects a policy Length past the payload', () => {
    const bad = Buffer.from(GSA_KAT);
    bad.writeUInt16BE(0x1000, 2);
    assert.throws(() => decodeGsa(bad), (e: unknown) => e instanceof DecodeError && e.kind === 'truncated');
  });

  it('rejects a transform chain that says more follow at the end of the policy', () => {
    // ESP policy with one transform marked "more" (3) and nothing after it.
    const bad = hex(`
      03 04 00 30  11 22 33 44
      07 00 00 10 00 00 ff ff 00 00 00 00 ff ff ff ff
      07 00 00 10 00 00 ff ff ef c0 00 02 ef c0 00 02
      03 00 00 08 05 00 00 02
    `);
    assert.throws(
      () => decodeGsa(bad),
      (e: unknown) => e instanceof DecodeError && e.path === 'GSA > policy[1] (ESP)' && e.kind === 'truncated',
    );
  });

  it('keeps an unknown protocol for the validator to judge', () => {
    const unknown = Buffer.from(GSA_KAT.subarray(107, 107 + 68));
    unknown[0] = 200;
    const p = decodeGsa(unknown).policies[0] as SaPolicy;
    assert.equal(p.protocol, 200);
    assert.deepEqual(encodeGsa(decodeGsa(unknown)), unknown);
  });

  it('refuses to encode attributes without a transform (they would read as one)', () => {
    const p = decodeGsa(GSA_KAT).policies[1] as SaPolicy;
    assert.throws(
      () => encodeGsa({ type: PayloadType.GSA, critical: false, policies: [{ ...p, transforms: [] }] }),
      EncodeError,
    );
  });
});
