/**
 * The message-level helpers an engine uses around encryption: the
 * authenticated prefix (IKE header through the SK/SKF header) and the log
 * summary.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { IKE_HEADER_LENGTH } from '../../src/wire/header.ts';
import { ExchangeType, PayloadType } from '../../src/wire/iana.ts';
import {
  decodeMessage,
  encodeMessage,
  encodeProtectedPrefix,
  messageSummary,
  splitProtectedMessage,
} from '../../src/wire/message.ts';
import { encodePayloadChain, type Payload } from '../../src/wire/payload.ts';
import { makeNotify } from '../../src/wire/payloads/notify.ts';
import { EncodeError } from '../../src/wire/writer.ts';
import { arbCleartextPayload, arbContainerPayload, arbHeaderFields } from './arbitraries.ts';

describe('encodeProtectedPrefix / splitProtectedMessage', () => {
  it('prefix | encrypted is the encoded message, and the receiver sees the same prefix', () => {
    fc.assert(
      fc.property(
        arbHeaderFields,
        fc.array(arbCleartextPayload(), { maxLength: 3 }),
        arbContainerPayload,
        (header, outer, container) => {
          const prefix = encodeProtectedPrefix({ header, outer, container, bodyLength: container.encrypted.length });
          const wire = encodeMessage({ header, payloads: [...outer, container] });
          assert.deepStrictEqual(Buffer.concat([prefix, container.encrypted]), wire);
          assert.deepStrictEqual(splitProtectedMessage(wire, decodeMessage(wire)), {
            prefix,
            encrypted: container.encrypted,
          });
        },
      ),
      { numRuns: 300 },
    );
  });

  it('GSA_REKEY chunk A: lengths adjusted to the plaintext inner payloads (RFC 9838 2.4.1.1)', () => {
    const header = {
      spiI: Buffer.alloc(8, 1),
      spiR: Buffer.alloc(8, 2),
      majorVersion: 2,
      minorVersion: 0,
      exchangeType: ExchangeType.GSA_REKEY,
      flags: { initiator: true, version: false, response: false },
      messageId: 7,
    };
    const inner: Payload[] = [makeNotify(16384)];
    const p = encodePayloadChain(inner).bytes;
    const a = encodeProtectedPrefix({
      header,
      container: { type: PayloadType.SK, critical: false, innerFirst: PayloadType.NOTIFY },
      bodyLength: p.length,
    });
    assert.equal(a.length, IKE_HEADER_LENGTH + 4);
    assert.equal(a.readUInt32BE(24), a.length + p.length, 'AdjustedLen = len(A) + len(P)');
    assert.equal(a.readUInt16BE(30), 4 + p.length, 'AdjustedPldLen = len(P) + 4');
    assert.equal(a[16], PayloadType.SK);
    assert.equal(a[28], PayloadType.NOTIFY);
  });

  it('SKF prefix includes the fragment numbers', () => {
    const header = {
      spiI: Buffer.alloc(8, 1),
      spiR: Buffer.alloc(8, 2),
      majorVersion: 2,
      minorVersion: 0,
      exchangeType: ExchangeType.IKE_AUTH,
      flags: { initiator: true, version: false, response: false },
      messageId: 1,
    };
    const container = { type: PayloadType.SKF, critical: false, innerFirst: 35, fragmentNumber: 1, totalFragments: 2 };
    const prefix = encodeProtectedPrefix({ header, container, bodyLength: 100 });
    assert.equal(prefix.length, IKE_HEADER_LENGTH + 8);
    assert.equal(prefix.readUInt16BE(30), 108);
    assert.deepStrictEqual(prefix.subarray(32), Buffer.from('00010002', 'hex'));
    assert.throws(
      () => encodeProtectedPrefix({ header, container: { ...container, fragmentNumber: 3 }, bodyLength: 1 }),
      EncodeError,
    );
  });

  it('no SK -> undefined; bad body length -> EncodeError', () => {
    const wire = encodeMessage({
      header: {
        spiI: Buffer.alloc(8),
        spiR: Buffer.alloc(8),
        majorVersion: 2,
        minorVersion: 0,
        exchangeType: ExchangeType.IKE_SA_INIT,
        flags: { initiator: false, version: false, response: true },
        messageId: 0,
      },
      payloads: [makeNotify(16390, { kind: 'cookie', cookie: Buffer.alloc(8) })],
    });
    const m = decodeMessage(wire);
    assert.equal(splitProtectedMessage(wire, m), undefined);
    assert.throws(
      () =>
        encodeProtectedPrefix({
          header: m.header,
          container: { type: PayloadType.SK, critical: false, innerFirst: 0 },
          bodyLength: -1,
        }),
      EncodeError,
    );
    const summary = messageSummary(m);
    assert.equal(summary.text, 'IKE_SA_INIT response #0 [R] N(COOKIE)');
    assert.equal(summary.role, 'response');
    assert.deepStrictEqual(summary.payloads, ['N(COOKIE)']);
  });
});
