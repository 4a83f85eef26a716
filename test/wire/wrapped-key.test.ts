import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { tv } from '../../src/wire/attributes.ts';
import { DecodeError } from '../../src/wire/errors.ts';
import { GroupKeyBagAttr, MemberKeyBagAttr } from '../../src/wire/iana.ts';
import { EncodeError } from '../../src/wire/writer.ts';
import {
  decodeWrappedKey,
  encodeWrappedKey,
  saKeyAttribute,
  wrapKeyAttribute,
  wrappedKeyOf,
} from '../../src/wire/wrapped-key.ts';
import { arbWrappedKey } from './arbitraries-group.ts';
import { hex } from './hex.ts';

describe('Wrapped Key Format (RFC 9838 4.5.4)', () => {
  it('lays out Key ID | KWK ID | Encrypted Key', () => {
    const bytes = hex(`
      00 00 00 10     # Key ID 16
      00 00 00 0b     # KWK ID 11
      de ad be ef     # Encrypted Key
    `);
    assert.deepEqual(decodeWrappedKey(bytes), { keyId: 16, kwkId: 11, encryptedKey: hex('deadbeef') });
    assert.deepEqual(encodeWrappedKey({ keyId: 16, kwkId: 11, encryptedKey: hex('deadbeef') }), bytes);
  });

  it('round-trips', () => {
    fc.assert(
      fc.property(arbWrappedKey, (k) => {
        assert.deepStrictEqual(decodeWrappedKey(encodeWrappedKey(k)), k);
      }),
    );
  });

  it('fails with a DecodeError naming the attribute when shorter than the two IDs', () => {
    assert.throws(
      () => decodeWrappedKey(hex('00000000 000000'), 'SA_KEY[1]'),
      (e: unknown) => e instanceof DecodeError && e.path === 'SA_KEY[1]' && e.kind === 'truncated',
    );
    assert.throws(() => wrappedKeyOf(tv(1, 5)), DecodeError);
  });

  it('builds SA_KEY (Key ID 0) and WRAP_KEY (Key ID non-zero) attributes', () => {
    const sa = saKeyAttribute({ keyId: 0, kwkId: 1, encryptedKey: hex('aa') });
    assert.equal(sa.type, GroupKeyBagAttr.SA_KEY);
    assert.deepEqual(wrappedKeyOf(sa), { keyId: 0, kwkId: 1, encryptedKey: hex('aa') });
    const wrap = wrapKeyAttribute({ keyId: 7, kwkId: 0, encryptedKey: hex('bb') });
    assert.equal(wrap.type, MemberKeyBagAttr.WRAP_KEY);
    assert.throws(() => saKeyAttribute({ keyId: 3, kwkId: 0, encryptedKey: hex('aa') }), EncodeError);
    assert.throws(() => wrapKeyAttribute({ keyId: 0, kwkId: 0, encryptedKey: hex('aa') }), EncodeError);
  });
});
