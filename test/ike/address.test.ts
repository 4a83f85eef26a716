import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { AddressError, addressOctets, ipFamily, ipToBytes } from '../../src/ike/address.ts';

describe('IP address octets', () => {
  it('parses IPv4 and IPv6 text to wire octets', () => {
    assert.equal(ipToBytes('192.0.2.1').toString('hex'), 'c0000201');
    assert.equal(ipToBytes('2001:db8::1').toString('hex'), '20010db8000000000000000000000001');
    assert.equal(ipToBytes('::').toString('hex'), '0'.repeat(32));
    assert.equal(ipToBytes('::1').toString('hex'), '0'.repeat(31) + '1');
    assert.equal(ipToBytes('fe80::1%eth0').toString('hex'), 'fe80' + '0'.repeat(27) + '1');
    assert.equal(ipToBytes('64:ff9b::192.0.2.33').toString('hex'), '0064ff9b0000000000000000c0000221');
  });

  it('unmaps IPv4-mapped IPv6 to the IPv4 octets', () => {
    assert.equal(ipToBytes('::ffff:192.0.2.1').toString('hex'), 'c0000201');
    assert.equal(ipFamily('::ffff:10.0.0.1'), 4);
  });

  it('rejects what is not an address', () => {
    for (const bad of ['', '1.2.3', '1.2.3.256', '01.2.3.4', '1::2::3', '12345::', 'host.example', '1:2:3:4:5:6:7:8:9']) {
      assert.throws(() => ipToBytes(bad), AddressError, bad);
      assert.equal(ipFamily(bad), undefined);
    }
    assert.throws(() => addressOctets(Buffer.alloc(5)), AddressError);
    assert.equal(addressOctets(Buffer.from([10, 0, 0, 1])).toString('hex'), '0a000001');
  });
});
