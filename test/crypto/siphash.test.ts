import { test } from 'node:test';
import assert from 'node:assert/strict';
import { siphash24 } from '../../src/crypto/siphash.ts';

// Reference implementation vectors (github.com/veorq/SipHash, vectors.h):
// key 00 01 .. 0f, message of length i = 00 01 .. (i-1); outputs as octet strings.
const KEY = Buffer.from([...Array(16).keys()]);
const message = (i: number): Buffer => Buffer.from([...Array(i).keys()]);

const SIP64: Record<number, string> = {
  0: '310e0edd47db6f72',
  1: 'fd67dc93c539f874',
  2: '5a4fa9d909806c0d',
  3: '2d7efbd796666785',
  4: 'b7877127e09427cf',
  5: '8da699cd64557618',
  6: 'cee3fe586e46c9cb',
  7: '37d1018bf50002ab',
  8: '6224939a79f5f593',
  9: 'b0e4a90bdf82009e',
  15: 'e545be4961ca29a1',
  16: 'db9bc2577fcc2a3f',
  63: '724506eb4c328a95',
};

const SIP128: Record<number, string> = {
  0: 'a3817f04ba25a8e66df67214c7550293',
  1: 'da87c1d86b99af44347659119b22fc45',
  2: '8177228da4a45dc7fca38bdef60affe4',
  3: '9c70b60c5267a94e5f33b6b02985ed51',
  4: 'f88164c12d9c8faf7d0f6e7c7bcd5579',
  5: '1368875980776f8854527a07690e9627',
  6: '14eeca338b208613485ea0308fd7a15e',
  7: 'a1f1ebbed8dbc153c0b84aa61ff08239',
  8: '3b62a9ba6258f5610f83e264f31497b4',
  9: '264499060ad9baabc47f8b02bb6d71ed',
  15: '5493e99933b0a8117e08ec0f97cfc3d9',
  16: '6ee2a4ca67b054bbfd3315bf85230577',
  63: '5150d1772f50834a503e069a973fbd7c',
};

test('SipHash-2-4 64-bit output matches the reference vectors (empty message included)', () => {
  for (const [len, want] of Object.entries(SIP64)) {
    assert.equal(siphash24(KEY, message(Number(len))).toString('hex'), want, `length ${len}`);
  }
});

test('SipHash-2-4 128-bit output matches the reference vectors (empty message included)', () => {
  for (const [len, want] of Object.entries(SIP128)) {
    assert.equal(siphash24(KEY, message(Number(len)), 16).toString('hex'), want, `length ${len}`);
  }
});

test('the key must be 16 octets', () => {
  assert.throws(() => siphash24(Buffer.alloc(15), Buffer.alloc(0)), RangeError);
});
