/**
 * Property tests: for every payload, decode(encode(x)) deep-equals x, and
 * encode(decode(b)) equals b for the canonical bytes the encoder produced.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeHeader, encodeHeader } from '../../src/wire/header.ts';
import { decodeMessage, encodeMessage } from '../../src/wire/message.ts';
import { decodePayloadChain, encodePayloadChain, type Payload } from '../../src/wire/payload.ts';
import { joinDigitalSignature, splitDigitalSignature } from '../../src/wire/payloads/auth.ts';
import { Writer } from '../../src/wire/writer.ts';
import {
  arbAuthPayload,
  arbBytes,
  arbCertPayload,
  arbCertReqPayload,
  arbDeletePayload,
  arbHeader,
  arbIdPayload,
  arbKePayload,
  arbMessage,
  arbNoncePayload,
  arbNotifyPayload,
  arbPayloadChain,
  arbSaPayload,
  arbSkfPayload,
  arbSkPayload,
  arbTsPayload,
  arbUnknownPayload,
  arbVendorIdPayload,
} from './arbitraries.ts';
import { arbGsaPayload, arbKdPayload } from './arbitraries-group.ts';

const RUNS = { numRuns: 300 };

function assertPayloadRoundTrip(p: Payload): void {
  const { firstType, bytes } = encodePayloadChain([p]);
  assert.equal(firstType, p.type);
  const decoded = decodePayloadChain(firstType, bytes);
  assert.deepStrictEqual(decoded, [p]);
  assert.deepStrictEqual(encodePayloadChain(decoded).bytes, bytes);
}

const perPayload: [string, fc.Arbitrary<Payload>][] = [
  ['SA / SAg', arbSaPayload],
  ['KE', arbKePayload],
  ['IDi / IDr / IDg', arbIdPayload],
  ['CERT', arbCertPayload],
  ['CERTREQ', arbCertReqPayload],
  ['AUTH', arbAuthPayload],
  ['Nonce', arbNoncePayload],
  ['Notify', arbNotifyPayload],
  ['Delete', arbDeletePayload],
  ['Vendor ID', arbVendorIdPayload],
  ['TSi / TSr', arbTsPayload],
  ['SK', arbSkPayload],
  ['SKF', arbSkfPayload],
  ['unknown non-critical', arbUnknownPayload],
];

describe('payload round trips', () => {
  for (const [name, arb] of perPayload) {
    it(name, () => fc.assert(fc.property(arb, assertPayloadRoundTrip), RUNS));
  }

  it('payload chains', () => {
    fc.assert(
      fc.property(arbPayloadChain(), (chain) => {
        const { firstType, bytes } = encodePayloadChain(chain);
        const decoded = decodePayloadChain(firstType, bytes);
        assert.deepStrictEqual(decoded, chain);
        assert.deepStrictEqual(encodePayloadChain(decoded).bytes, bytes);
      }),
      RUNS,
    );
  });
});

describe('chains with GSA and KD (as in a decrypted GSA_AUTH / GSA_REKEY)', () => {
  it('dispatches to the GSA and KD codecs and round-trips', () => {
    fc.assert(
      fc.property(arbPayloadChain({ extra: [arbGsaPayload, arbKdPayload], maxLength: 5 }), (chain) => {
        const { firstType, bytes } = encodePayloadChain(chain);
        const decoded = decodePayloadChain(firstType, bytes, 'SK');
        assert.deepStrictEqual(decoded, chain);
        assert.deepStrictEqual(encodePayloadChain(decoded).bytes, bytes);
      }),
      { numRuns: 200 },
    );
  });
});

describe('header and message round trips', () => {
  it('IKE header', () => {
    fc.assert(
      fc.property(arbHeader(), (h) => {
        const w = new Writer();
        encodeHeader(w, h);
        // The header is checked against the datagram length, so pad to it.
        const buf = Buffer.concat([w.finish(), Buffer.alloc(h.length - 28)]);
        assert.deepStrictEqual(decodeHeader(buf), h);
      }),
      RUNS,
    );
  });

  it('whole messages', () => {
    fc.assert(
      fc.property(arbMessage(), (m) => {
        const bytes = encodeMessage(m);
        const decoded = decodeMessage(bytes);
        assert.deepStrictEqual(decoded.payloads, m.payloads);
        assert.deepStrictEqual(decoded.header, {
          ...m.header,
          nextPayload: m.payloads[0]?.type ?? 0,
          length: bytes.length,
        });
        assert.deepStrictEqual(encodeMessage(decoded), bytes);
      }),
      RUNS,
    );
  });
});

describe('RFC 7427 signature data', () => {
  it('split(join(x)) == x for DER SEQUENCE algorithm identifiers', () => {
    const arbAlgId = arbBytes(0, 250).map((content) => {
      const len = content.length < 0x80 ? Buffer.of(content.length) : Buffer.of(0x81, content.length);
      return Buffer.concat([Buffer.of(0x30), len, content]);
    });
    fc.assert(
      fc.property(arbAlgId.filter((a) => a.length <= 255), arbBytes(0, 128), (algorithmIdentifier, signature) => {
        const data = joinDigitalSignature({ algorithmIdentifier, signature });
        assert.deepStrictEqual(splitDigitalSignature(data), { algorithmIdentifier, signature });
      }),
      RUNS,
    );
  });
});
