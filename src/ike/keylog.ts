/**
 * The key log: lines for Wireshark's decryption tables, the only way keys
 * leave the process (off by default; the caller decides where lines go).
 *
 * IKEv2 ("ikev2_decryption_table" UAT, packet-isakmp.c):
 *   <SPIi>,<SPIr>,<SK_ei>,<SK_er>,"<encr>",<SK_ai>,<SK_ar>,"<integ>"
 * SPIs and keys as bare hex; for AEAD ciphers SK_e* include the 4-octet salt,
 * SK_a* are empty and the integrity algorithm is "NONE [RFC4306]".
 *
 * ESP ("esp_sa" UAT, packet-esp.c), every field quoted:
 *   "IPv4","<src>","<dst>","0x<SPI>","<encr>","0x<key>","<auth>","0x<key>"
 * with keys as KEYMAT gives them (AES-GCM key | 4-octet salt).
 *
 * Algorithm names are the exact strings of Wireshark 4.0 (checked against
 * libwireshark 4.0.17); an algorithm Wireshark cannot decrypt (ChaCha20-
 * Poly1305 has no entry in 4.0) gives `undefined` and no line.
 */
import { EncrId, IntegId } from '../wire/iana.ts';

/** Wireshark 4.0's IKEv2 encryption name for ENCR `encrId` with `keyBits`, if it has one. */
export function ikev2EncrName(encrId: number, keyBits: number | undefined): string | undefined {
  const bits = keyBits ?? 0;
  if (bits !== 128 && bits !== 192 && bits !== 256) return undefined;
  switch (encrId) {
    case EncrId.AES_CBC:
      return `AES-CBC-${bits} [RFC3602]`;
    case EncrId.AES_CTR:
      return `AES-CTR-${bits} [RFC5930]`;
    case EncrId.AES_GCM_8:
      return `AES-GCM-${bits} with 8 octet ICV [RFC5282]`;
    case EncrId.AES_GCM_12:
      return `AES-GCM-${bits} with 12 octet ICV [RFC5282]`;
    case EncrId.AES_GCM_16:
      return `AES-GCM-${bits} with 16 octet ICV [RFC5282]`;
    case EncrId.AES_CCM_8:
      return `AES-CCM-${bits} with 8 octet ICV [RFC5282]`;
    case EncrId.AES_CCM_12:
      return `AES-CCM-${bits} with 12 octet ICV [RFC5282]`;
    case EncrId.AES_CCM_16:
      return `AES-CCM-${bits} with 16 octet ICV [RFC5282]`;
    default:
      return undefined;
  }
}

const IKEV2_INTEG_NAMES: ReadonlyMap<number, string> = new Map([
  [IntegId.NONE, 'NONE [RFC4306]'],
  [IntegId.HMAC_MD5_96, 'HMAC_MD5_96 [RFC2403]'],
  [IntegId.HMAC_SHA1_96, 'HMAC_SHA1_96 [RFC2404]'],
  [IntegId.HMAC_MD5_128, 'HMAC_MD5_128 [RFC4595]'],
  [IntegId.HMAC_SHA1_160, 'HMAC_SHA1_160 [RFC4595]'],
  [IntegId.HMAC_SHA2_256_128, 'HMAC_SHA2_256_128 [RFC4868]'],
  [IntegId.HMAC_SHA2_384_192, 'HMAC_SHA2_384_192 [RFC4868]'],
  [IntegId.HMAC_SHA2_512_256, 'HMAC_SHA2_512_256 [RFC4868]'],
]);

/** Wireshark 4.0's IKEv2 integrity name (undefined / NONE -> "NONE [RFC4306]"). */
export function ikev2IntegName(integId: number | undefined): string | undefined {
  return IKEV2_INTEG_NAMES.get(integId ?? IntegId.NONE);
}

export interface IkeKeyLogInput {
  readonly spiI: Uint8Array;
  readonly spiR: Uint8Array;
  readonly encr: number;
  readonly encrKeyBits?: number | undefined;
  /** INTEG transform; NONE/undefined with an AEAD. */
  readonly integ?: number | undefined;
  readonly skEi: Uint8Array;
  readonly skEr: Uint8Array;
  readonly skAi: Uint8Array;
  readonly skAr: Uint8Array;
}

/** One ikev2_decryption_table line, or undefined if Wireshark 4.0 cannot use it. */
export function formatIkev2KeyLine(k: IkeKeyLogInput): string | undefined {
  const encr = ikev2EncrName(k.encr, k.encrKeyBits);
  const integ = ikev2IntegName(k.integ);
  if (encr === undefined || integ === undefined) return undefined;
  return [hex(k.spiI), hex(k.spiR), hex(k.skEi), hex(k.skEr), `"${encr}"`, hex(k.skAi), hex(k.skAr), `"${integ}"`].join(
    ',',
  );
}

/** Wireshark 4.0's ESP encryption name (key size is implied by the key). */
export function espEncrName(encrId: number): string | undefined {
  switch (encrId) {
    case EncrId.NULL:
      return 'NULL';
    case EncrId['3DES']:
      return 'TripleDES-CBC [RFC2451]';
    case EncrId.AES_CBC:
      return 'AES-CBC [RFC3602]';
    case EncrId.AES_CTR:
      return 'AES-CTR [RFC3686]';
    case EncrId.AES_GCM_8:
      return 'AES-GCM with 8 octet ICV [RFC4106]';
    case EncrId.AES_GCM_12:
      return 'AES-GCM with 12 octet ICV [RFC4106]';
    case EncrId.AES_GCM_16:
      return 'AES-GCM with 16 octet ICV [RFC4106]';
    default:
      return undefined;
  }
}

const ESP_AUTH_NAMES: ReadonlyMap<number, string> = new Map([
  [IntegId.NONE, 'NULL'],
  [IntegId.HMAC_MD5_96, 'HMAC-MD5-96 [RFC2403]'],
  [IntegId.HMAC_SHA1_96, 'HMAC-SHA-1-96 [RFC2404]'],
  [IntegId.HMAC_SHA2_256_128, 'HMAC-SHA-256-128 [RFC4868]'],
  [IntegId.HMAC_SHA2_384_192, 'HMAC-SHA-384-192 [RFC4868]'],
  [IntegId.HMAC_SHA2_512_256, 'HMAC-SHA-512-256 [RFC4868]'],
]);

/** Wireshark 4.0's ESP authentication name (undefined / NONE -> "NULL", as for AEAD). */
export function espAuthName(integId: number | undefined): string | undefined {
  return ESP_AUTH_NAMES.get(integId ?? IntegId.NONE);
}

export interface EspKeyLogInput {
  /** Source address of the ESP packets ("*" = any, e.g. a multicast group SA with several senders). */
  readonly src: string;
  /** Destination address (the group address for a multicast SA; "*" = any). */
  readonly dst: string;
  readonly spi: number;
  readonly encr: number;
  /** Encryption key; for AES-GCM key | salt. */
  readonly encrKey: Uint8Array;
  readonly integ?: number | undefined;
  readonly integKey: Uint8Array;
}

/** One esp_sa UAT line, or undefined if Wireshark 4.0 cannot use it. */
export function formatEspSaLine(k: EspKeyLogInput): string | undefined {
  const encr = espEncrName(k.encr);
  const auth = espAuthName(k.integ);
  if (encr === undefined || auth === undefined) return undefined;
  if (!Number.isInteger(k.spi) || k.spi < 0 || k.spi > 0xffffffff) throw new RangeError(`bad SPI ${k.spi}`);
  const family = k.src.includes(':') || k.dst.includes(':') ? 'IPv6' : 'IPv4';
  const fields = [
    family,
    k.src,
    k.dst,
    `0x${k.spi.toString(16).padStart(8, '0')}`,
    encr,
    `0x${hex(k.encrKey)}`,
    auth,
    `0x${hex(k.integKey)}`,
  ];
  return fields.map((f) => `"${f}"`).join(',');
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}
