/**
 * Known-answer vectors for the G-IKEv2 payloads, written out by hand from
 * the figures of RFC 9838. Together they form the GSA and KD of a valid
 * GSA_AUTH response (multicast rekey, GCAUTH Digital Signature, key tree,
 * counter-mode TEK, GM registered as a sender).
 */
import { hex } from './hex.ts';

/**
 * A GSA body built by hand from the figures of RFC 9838 Sections 4.4.2 and
 * 4.4.3: a KEK policy, a TEK (ESP) policy and a GW policy.
 */
export const GSA_KAT = hex(`
  # ---- GSA policy: Rekey SA (KEK) ----
  06 10 00 6b                       # Protocol GIKE_UPDATE, SPI Size 16, Length 107
  01 02 03 04 05 06 07 08           # SPI: IKE SA Initiator's SPI of GSA_REKEY
  11 12 13 14 15 16 17 18           #      IKE SA Responder's SPI
  07 11 00 10 03 50 03 50           # Source TS: IPv4, UDP, len 16, port 848-848
  c0 00 02 01 c0 00 02 01           #   192.0.2.1 - 192.0.2.1
  07 11 00 10 03 50 03 50           # Destination TS: IPv4, UDP, len 16, port 848-848
  ef c0 00 01 ef c0 00 01           #   239.192.0.1 - 239.192.0.1 (multicast)
  03 00 00 0c 01 00 00 14           # Transform (more): ENCR AES_GCM_16, len 12
  80 0e 01 00                       #   Key Length (TV) 256
  03 00 00 08 0d 00 00 03           # Transform (more): KWA KW_5649_256
  00 00 00 13 0e 00 00 02           # Transform (last): GCAUTH Digital Signature, len 19
  00 12 00 07 30 05 06 03 2b 65 70  #   Signature Algorithm Identifier (TLV): Ed25519 AlgorithmIdentifier
  00 01 00 04 00 01 51 80           # GSA_KEY_LIFETIME (TLV) 86400 s
  00 02 00 04 00 00 00 05           # GSA_INITIAL_MESSAGE_ID (TLV) 5
  # ---- GSA policy: Data-Security SA (TEK) ----
  03 04 00 44                       # Protocol ESP, SPI Size 4, Length 68
  11 22 33 44                       # SPI
  07 00 00 10 00 00 ff ff           # Source TS: IPv4, any protocol, any port
  00 00 00 00 ff ff ff ff           #   0.0.0.0 - 255.255.255.255
  07 00 00 10 00 00 ff ff           # Destination TS: IPv4, any protocol, any port
  ef c0 00 02 ef c0 00 02           #   239.192.0.2
  03 00 00 0c 01 00 00 14           # Transform (more): ENCR AES_GCM_16
  80 0e 01 00                       #   Key Length 256
  00 00 00 08 05 00 00 02           # Transform (last): SN 32-bit Unspecified Numbers
  00 01 00 04 00 00 0e 10           # GSA_KEY_LIFETIME 3600 s
  # ---- Group-wide policy ----
  00 00 00 10                       # Protocol 0 (GW), RESERVED, Length 16
  80 01 00 0a                       # GWP_ATD (TV) 10 s
  80 02 00 0f                       # GWP_DTD (TV) 15 s
  80 03 00 08                       # GWP_SENDER_ID_BITS (TV) 8
`);

/**
 * KD of a GSA_AUTH response for the GSA known-answer vector of gsa.test.ts,
 * built by hand from the figures of RFC 9838 Sections 4.5.2, 4.5.3, 4.5.4.
 */
export const KD_KAT = hex(`
  # ---- Group Key Bag: Rekey SA ----
  06 10 00 30                       # Protocol GIKE_UPDATE, SPI Size 16, Length 48
  01 02 03 04 05 06 07 08           # SPI (that of the KEK policy)
  11 12 13 14 15 16 17 18
  00 01 00 18                       # SA_KEY (TLV), 24 octets: a wrapped key
  00 00 00 00                       #   Key ID 0: SA keying material
  00 00 00 00                       #   KWK ID 0: wrapped with the default KWK GSK_w
  e0 e1 e2 e3 e4 e5 e6 e7           #   Encrypted Key (opaque at this layer)
  e8 e9 ea eb ec ed ee ef
  # ---- Group Key Bag: Data-Security SA ----
  03 04 00 24                       # Protocol ESP, SPI Size 4, Length 36
  11 22 33 44                       # SPI (that of the TEK policy)
  00 01 00 18 00 00 00 00 00 00 00 00   # SA_KEY: Key ID 0, KWK ID 0
  a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac ad ae af
  # ---- Member Key Bag ----
  00 00 00 58                       # Protocol 0 (member), RESERVED, Length 88
  00 01 00 18                       # WRAP_KEY (TLV), 24 octets
  00 00 00 07 00 00 00 00           #   Key ID 7 (the member's leaf key), KWK ID 0 (GSK_w)
  b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 ba bb bc bd be bf
  00 02 00 2c                       # AUTH_KEY (TLV), 44 octets: Ed25519 SubjectPublicKeyInfo
  30 2a 30 05 06 03 2b 65 70 03 21 00
  c0 c1 c2 c3 c4 c5 c6 c7 c8 c9 ca cb cc cd ce cf
  d0 d1 d2 d3 d4 d5 d6 d7 d8 d9 da db dc dd de df
  00 03 00 04 00 00 00 01           # GM_SENDER_ID (TLV): Sender-ID 1
`);
