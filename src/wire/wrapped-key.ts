import { tlv, type Attribute } from './attributes.ts';
import { GroupKeyBagAttr, MemberKeyBagAttr } from './iana.ts';
import type { GroupKeyBag, MemberKeyBag } from './kd.ts';
import { Reader } from './reader.ts';
import { EncodeError, Writer } from './writer.ts';

/**
 * Wrapped Key Format (RFC 9838 Section 4.5.4), the value of the SA_KEY and
 * WRAP_KEY attributes:
 *
 *   |                              Key ID                           |
 *   |                              KWK ID                           |
 *   ~                          Encrypted Key                        ~
 *
 * Key ID 0 is the SA keying material (Section 3.3); KWK ID 0 is the default
 * key wrap key GSK_w of the SA the key is sent over. The Encrypted Key is
 * opaque here: its format belongs to the Key Wrap Algorithm (src/crypto).
 */
export interface WrappedKey {
  readonly keyId: number;
  readonly kwkId: number;
  readonly encryptedKey: Buffer;
}

/** Key ID of SA keying material (Sections 3.3, 4.5.2.1). */
export const SA_KEY_ID = 0;
/** KWK ID meaning "wrapped with the default KWK, GSK_w" (Section 3.3). */
export const DEFAULT_KWK_ID = 0;
const HEADER = 8;

export function encodeWrappedKey(k: WrappedKey): Buffer {
  return new Writer(HEADER + k.encryptedKey.length).u32(k.keyId).u32(k.kwkId).bytes(k.encryptedKey).finish();
}

/** Decodes an attribute value; `path` names the attribute in errors. */
export function decodeWrappedKey(value: Uint8Array, path = 'wrapped key'): WrappedKey {
  const r = new Reader(value, path);
  const keyId = r.u32('key id');
  const kwkId = r.u32('kwk id');
  return { keyId, kwkId, encryptedKey: r.rest() };
}

/** Reads a TLV attribute's value as a wrapped key (TV attributes cannot carry one). */
export function wrappedKeyOf(a: Attribute, path = `attr ${a.type}`): WrappedKey {
  if (a.format !== 'TLV') {
    return new Reader(Buffer.alloc(0), path).fail('bad-value', `attribute ${a.type} must be TLV to carry a wrapped key`);
  }
  return decodeWrappedKey(a.value, path);
}

export function saKeyAttribute(k: WrappedKey): Attribute {
  if (k.keyId !== SA_KEY_ID) throw new EncodeError(`SA_KEY must have Key ID 0, got ${k.keyId}`);
  return tlv(GroupKeyBagAttr.SA_KEY, encodeWrappedKey(k));
}

export function wrapKeyAttribute(k: WrappedKey): Attribute {
  if (k.keyId === SA_KEY_ID) throw new EncodeError('WRAP_KEY must not have Key ID 0');
  return tlv(MemberKeyBagAttr.WRAP_KEY, encodeWrappedKey(k));
}

/** Every SA_KEY in a group key bag, in wire order. Throws DecodeError on a malformed value. */
export function saKeysOf(bag: GroupKeyBag): WrappedKey[] {
  return bag.attributes.filter((a) => a.type === GroupKeyBagAttr.SA_KEY).map((a, i) => wrappedKeyOf(a, `SA_KEY[${i + 1}]`));
}

/** Every WRAP_KEY in a member key bag, in wire order. Throws DecodeError on a malformed value. */
export function wrapKeysOf(bag: MemberKeyBag): WrappedKey[] {
  return bag.attributes
    .filter((a) => a.type === MemberKeyBagAttr.WRAP_KEY)
    .map((a, i) => wrappedKeyOf(a, `WRAP_KEY[${i + 1}]`));
}
