import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { deterministicRandom } from '../../src/crypto/random.ts';
import { COOKIE_LENGTH, CookieGuard } from '../../src/ike/cookies.ts';

const ni = Buffer.alloc(32, 0x11);
const spiI = Buffer.from('0011223344556677', 'hex');
const ip = '192.0.2.10';
const LIFE = 60_000;

function guard(seed = 'cookies'): CookieGuard {
  return new CookieGuard({ halfOpenThreshold: 3, secretLifetimeMs: LIFE }, deterministicRandom(seed));
}

describe('CookieGuard', () => {
  it('demands cookies from the configured half-open count on', () => {
    const g = guard();
    assert.equal(g.shouldDemandCookie(0), false);
    assert.equal(g.shouldDemandCookie(2), false);
    assert.equal(g.shouldDemandCookie(3), true);
    assert.equal(g.shouldDemandCookie(100), true);
  });

  it('makes VersionID | SHA-256(Ni | IPi | SPIi | secret) and verifies it', () => {
    // The secret is the stream's second draw (the first seeds the version IDs).
    const rng = deterministicRandom('layout');
    const version = rng.bytes(4);
    const secret = rng.bytes(32);
    const g = new CookieGuard({ halfOpenThreshold: 1, secretLifetimeMs: LIFE }, deterministicRandom('layout'));
    const c = g.makeCookie(ni, ip, spiI, 1000);
    assert.equal(c.length, COOKIE_LENGTH);
    assert.deepEqual(c.subarray(0, 4), version);
    const expected = createHash('sha256').update(ni).update(Buffer.from([192, 0, 2, 10])).update(spiI).update(secret).digest();
    assert.deepEqual(c.subarray(4), expected);
    assert.equal(g.verifyCookie(c, ni, ip, spiI, 1001), true);
  });

  it('rejects a tampered cookie and one bound to another nonce, address or SPI', () => {
    const g = guard();
    const c = g.makeCookie(ni, ip, spiI, 0);
    for (let i = 0; i < c.length; i++) {
      const t = Buffer.from(c);
      t[i]! ^= 0x01;
      assert.equal(g.verifyCookie(t, ni, ip, spiI, 1), false, `octet ${i}`);
    }
    assert.equal(g.verifyCookie(c.subarray(0, c.length - 1), ni, ip, spiI, 1), false);
    assert.equal(g.verifyCookie(Buffer.concat([c, Buffer.alloc(1)]), ni, ip, spiI, 1), false);
    assert.equal(g.verifyCookie(c, Buffer.alloc(32, 0x12), ip, spiI, 1), false);
    assert.equal(g.verifyCookie(c, ni, '192.0.2.11', spiI, 1), false);
    assert.equal(g.verifyCookie(c, ni, 'not-an-ip', spiI, 1), false);
    assert.equal(g.verifyCookie(c, ni, ip, Buffer.from('0011223344556678', 'hex'), 1), false);
    assert.equal(g.verifyCookie(c, ni, ip, spiI, 1), true);
  });

  it('a cookie from another responder (other secret) fails', () => {
    const c = guard('a').makeCookie(ni, ip, spiI, 0);
    assert.equal(guard('b').verifyCookie(c, ni, ip, spiI, 1), false);
  });

  it('keeps the previous secret valid for one rotation period, not two', () => {
    const g = guard();
    const c0 = g.makeCookie(ni, ip, spiI, 0);
    const v0 = g.currentVersion(0);
    // Still the first period.
    assert.equal(g.verifyCookie(c0, ni, ip, spiI, LIFE - 1), true);
    // Rotated: new cookies use a new version, the old one still verifies.
    const c1 = g.makeCookie(ni, ip, spiI, LIFE);
    assert.notEqual(g.currentVersion(LIFE), v0);
    assert.notDeepEqual(c1, c0);
    assert.equal(g.verifyCookie(c0, ni, ip, spiI, LIFE + 1), true);
    assert.equal(g.verifyCookie(c0, ni, ip, spiI, 2 * LIFE - 1), true);
    // Two rotations old: refused.
    assert.equal(g.verifyCookie(c0, ni, ip, spiI, 2 * LIFE), false);
    assert.equal(g.verifyCookie(c1, ni, ip, spiI, 2 * LIFE), true);
    assert.equal(g.verifyCookie(c1, ni, ip, spiI, 3 * LIFE), false);
  });

  it('keeps rotation periods aligned when nothing happened for a while', () => {
    const g = guard();
    const c0 = g.makeCookie(ni, ip, spiI, 0);
    // First activity late in the second period: c0 is the previous secret's,
    // and its grace ends at 2*LIFE, not one full period after this call.
    assert.equal(g.verifyCookie(c0, ni, ip, spiI, 2 * LIFE - 10), true);
    assert.equal(g.verifyCookie(c0, ni, ip, spiI, 2 * LIFE), false);
  });

  it('after a long idle gap every old cookie fails and a fresh secret is made', () => {
    const g = guard();
    const c0 = g.makeCookie(ni, ip, spiI, 0);
    assert.equal(g.verifyCookie(c0, ni, ip, spiI, 10 * LIFE), false);
    const c = g.makeCookie(ni, ip, spiI, 10 * LIFE);
    assert.equal(g.verifyCookie(c, ni, ip, spiI, 10 * LIFE + 5), true);
  });

  it('accepts the address as octets and as IPv6 text', () => {
    const g = guard();
    const c = g.makeCookie(ni, '2001:db8::7', spiI, 0);
    assert.equal(g.verifyCookie(c, ni, Buffer.from('20010db8000000000000000000000007', 'hex'), spiI, 1), true);
    assert.equal(g.verifyCookie(c, ni, '2001:db8::8', spiI, 1), false);
  });

  it('validates its configuration', () => {
    assert.throws(() => new CookieGuard({ halfOpenThreshold: 1, secretLifetimeMs: 0 }), RangeError);
    assert.throws(() => new CookieGuard({ halfOpenThreshold: -1, secretLifetimeMs: 10 }), RangeError);
    assert.throws(() => new CookieGuard({ halfOpenThreshold: 1, secretLifetimeMs: 10, secretLength: 8 }), RangeError);
  });
});
