/**
 * IP address text -> octets, for the hashes that cover addresses (NAT
 * detection, cookies). Pure: no DNS, no sockets. Accepts what node's dgram
 * reports (`rinfo.address`), including IPv6 zone suffixes (`fe80::1%eth0`,
 * the zone is not part of the address) and IPv4-mapped IPv6 in either form.
 */

export class AddressError extends Error {
  override readonly name = 'AddressError';
}

/**
 * 4 octets for IPv4, 16 for IPv6. An IPv4-mapped IPv6 address
 * (`::ffff:192.0.2.1`, what a dual-stack socket reports for an IPv4 peer)
 * yields the 4 IPv4 octets: the packet on the wire was IPv4, and that is what
 * the peer hashes. Throws AddressError for anything else.
 */
export function ipToBytes(address: string): Buffer {
  const v4 = parseIPv4(address);
  if (v4) return v4;
  const v6 = parseIPv6(address);
  if (v6) return isV4Mapped(v6) ? Buffer.from(v6.subarray(12)) : v6;
  throw new AddressError(`not an IP address: "${address}"`);
}

function isV4Mapped(b: Buffer): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** 4 or 6, or undefined when `address` is not an IP literal. */
export function ipFamily(address: string): 4 | 6 | undefined {
  try {
    return ipToBytes(address).length === 4 ? 4 : 6;
  } catch {
    return undefined;
  }
}

/** Accepts `Buffer` (already octets, 4 or 16 long) or text. */
export function addressOctets(address: string | Uint8Array): Buffer {
  if (typeof address === 'string') return ipToBytes(address);
  if (address.length !== 4 && address.length !== 16) {
    throw new AddressError(`an IP address is 4 or 16 octets, got ${address.length}`);
  }
  return Buffer.from(address);
}

/**
 * Dotted-quad -> 4 octets, scanned by hand: it runs for every datagram sent
 * (socket choice) and for every NAT detection hash.
 */
function parseIPv4(s: string): Buffer | undefined {
  if (s.length < 7 || s.length > 15) return undefined;
  const out = Buffer.alloc(4);
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 0x2e;
    if (c === 0x2e) {
      // '.' (or the end): closes a part; 1-3 digits, <= 255.
      if (digits === 0 || value > 255 || part > 3) return undefined;
      out[part++] = value;
      value = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      // No leading zeros: "010" is octal in some parsers and ambiguous here.
      if (digits === 3 || (digits === 1 && value === 0)) return undefined;
      value = value * 10 + (c - 0x30);
      digits++;
    } else {
      return undefined;
    }
  }
  return part === 4 ? out : undefined;
}

function parseIPv6(input: string): Buffer | undefined {
  const pct = input.indexOf('%');
  const s = pct >= 0 ? input.slice(0, pct) : input;
  if (s.length === 0 || s.length > 45) return undefined;
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const parseGroups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const groups: number[] = [];
    const items = part.split(':');
    for (let i = 0; i < items.length; i++) {
      const g = items[i] ?? '';
      if (i === items.length - 1 && g.includes('.')) {
        const v4 = parseIPv4(g);
        if (!v4) return undefined;
        groups.push(v4.readUInt16BE(0), v4.readUInt16BE(2));
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
        groups.push(parseInt(g, 16));
      }
    }
    return groups;
  };
  const head = parseGroups(halves[0] ?? '');
  const tail = halves.length === 2 ? parseGroups(halves[1] ?? '') : [];
  if (!head || !tail) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return undefined;
    groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return undefined;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}
