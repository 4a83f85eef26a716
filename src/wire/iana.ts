/**
 * Every IKEv2 / G-IKEv2 code point the project uses, with names for logs.
 *
 * Values come from the IANA "Internet Key Exchange Version 2 (IKEv2)
 * Parameters" registry (RFC 7296 and later RFCs) and from the G-IKEv2
 * assignments (RFC 9838). This is the only module that holds numbers;
 * everything else imports the named constants.
 */

/** A frozen name -> number table plus its reverse for logs. */
function registry<const T extends Record<string, number>>(table: T): Readonly<T> {
  return Object.freeze(table);
}

/** value -> first registered name, per table, built on first use (names are looked up on every decode). */
const reverseTables = new WeakMap<object, ReadonlyMap<number, string>>();

/** The value -> name map of `table`; where two names share a value, the first one listed wins. */
export function reverseOf(table: Readonly<Record<string, number>>): ReadonlyMap<number, string> {
  let reverse = reverseTables.get(table);
  if (!reverse) {
    const built = new Map<number, string>();
    for (const [k, v] of Object.entries(table)) if (!built.has(v)) built.set(v, k);
    reverse = built;
    // Only frozen tables can be cached: a mutable one could change under the cache.
    if (Object.isFrozen(table)) reverseTables.set(table, reverse);
  }
  return reverse;
}

/** Returns the registered name of `value` in `table`, or `<label>(value)`. */
export function nameOf(table: Readonly<Record<string, number>>, value: number, label = 'UNKNOWN'): string {
  return reverseOf(table).get(value) ?? `${label}(${value})`;
}

export const ExchangeType = registry({
  IKE_SA_INIT: 34,
  IKE_AUTH: 35,
  CREATE_CHILD_SA: 36,
  INFORMATIONAL: 37,
  IKE_SESSION_RESUME: 38,
  GSA_AUTH: 39,
  GSA_REGISTRATION: 40,
  GSA_REKEY: 41,
  GSA_INBAND_REKEY: 42,
  IKE_INTERMEDIATE: 43,
  IKE_FOLLOWUP_KE: 44,
});

export const PayloadType = registry({
  NONE: 0,
  SA: 33,
  KE: 34,
  IDi: 35,
  IDr: 36,
  CERT: 37,
  CERTREQ: 38,
  AUTH: 39,
  NONCE: 40,
  NOTIFY: 41,
  DELETE: 42,
  VENDOR_ID: 43,
  TSi: 44,
  TSr: 45,
  SK: 46,
  CP: 47,
  EAP: 48,
  GSPM: 49,
  IDg: 50,
  GSA: 51,
  KD: 52,
  SKF: 53,
  PS: 54,
});
/** SAg uses the SA payload number (RFC 9838 Section 4.3). */
export const PAYLOAD_SAg = PayloadType.SA;

export const TransformType = registry({
  ENCR: 1,
  PRF: 2,
  INTEG: 3,
  KE: 4,
  SN: 5,
  ADDKE1: 6,
  ADDKE2: 7,
  ADDKE3: 8,
  ADDKE4: 9,
  ADDKE5: 10,
  ADDKE6: 11,
  ADDKE7: 12,
  KWA: 13,
  GCAUTH: 14,
});

export const EncrId = registry({
  DES_IV64: 1,
  DES: 2,
  '3DES': 3,
  RC5: 4,
  IDEA: 5,
  CAST: 6,
  BLOWFISH: 7,
  '3IDEA': 8,
  DES_IV32: 9,
  NULL: 11,
  AES_CBC: 12,
  AES_CTR: 13,
  AES_CCM_8: 14,
  AES_CCM_12: 15,
  AES_CCM_16: 16,
  AES_GCM_8: 18,
  AES_GCM_12: 19,
  AES_GCM_16: 20,
  NULL_AUTH_AES_GMAC: 21,
  CAMELLIA_CBC: 23,
  CAMELLIA_CTR: 24,
  CAMELLIA_CCM_8: 25,
  CAMELLIA_CCM_12: 26,
  CAMELLIA_CCM_16: 27,
  CHACHA20_POLY1305: 28,
  AES_CCM_8_IIV: 29,
  AES_GCM_16_IIV: 30,
  CHACHA20_POLY1305_IIV: 31,
});

export const PrfId = registry({
  HMAC_MD5: 1,
  HMAC_SHA1: 2,
  HMAC_TIGER: 3,
  AES128_XCBC: 4,
  HMAC_SHA2_256: 5,
  HMAC_SHA2_384: 6,
  HMAC_SHA2_512: 7,
  AES128_CMAC: 8,
});

export const IntegId = registry({
  NONE: 0,
  HMAC_MD5_96: 1,
  HMAC_SHA1_96: 2,
  DES_MAC: 3,
  KPDK_MD5: 4,
  AES_XCBC_96: 5,
  HMAC_MD5_128: 6,
  HMAC_SHA1_160: 7,
  AES_CMAC_96: 8,
  AES_128_GMAC: 9,
  AES_192_GMAC: 10,
  AES_256_GMAC: 11,
  HMAC_SHA2_256_128: 12,
  HMAC_SHA2_384_192: 13,
  HMAC_SHA2_512_256: 14,
});

/** Key Exchange Method transform IDs (transform type 4, formerly D-H group). */
export const KeId = registry({
  NONE: 0,
  MODP_768: 1,
  MODP_1024: 2,
  MODP_1536: 5,
  MODP_2048: 14,
  MODP_3072: 15,
  MODP_4096: 16,
  MODP_6144: 17,
  MODP_8192: 18,
  ECP_256: 19,
  ECP_384: 20,
  ECP_521: 21,
  MODP_1024_160: 22,
  MODP_2048_224: 23,
  MODP_2048_256: 24,
  ECP_192: 25,
  ECP_224: 26,
  BRAINPOOL_P224: 27,
  BRAINPOOL_P256: 28,
  BRAINPOOL_P384: 29,
  BRAINPOOL_P512: 30,
  CURVE25519: 31,
  CURVE448: 32,
  GOST3410_2012_256: 33,
  GOST3410_2012_512: 34,
  ML_KEM_512: 35,
  ML_KEM_768: 36,
  ML_KEM_1024: 37,
});

/** Sequence Numbers transform IDs (type 5, formerly Extended Sequence Numbers). */
export const SnId = registry({
  SEQ32: 0,
  ESN64_PARTIAL: 1,
  UNSPECIFIED32: 2,
});

/** Key Wrap Algorithm transform IDs (type 13, RFC 9838). */
export const KwaId = registry({
  KW_5649_128: 1,
  KW_5649_192: 2,
  KW_5649_256: 3,
  KW_ARX: 4,
});

/** Group Controller Authentication Method transform IDs (type 14, RFC 9838). */
export const GcauthId = registry({
  IMPLICIT: 1,
  DIGITAL_SIGNATURE: 2,
});

export const TransformAttr = registry({
  KEY_LENGTH: 14,
  /** TLV: DER AlgorithmIdentifier, only with GCAUTH Digital Signature. */
  SIGNATURE_ALGORITHM_IDENTIFIER: 18,
});

export const ProtocolId = registry({
  /** Zero in Delete means the whole group SA (RFC 9838 4.6); also key bags / GW policy. */
  NONE: 0,
  IKE: 1,
  AH: 2,
  ESP: 3,
  FC_ESP_HEADER: 4,
  FC_CT_AUTHENTICATION: 5,
  GIKE_UPDATE: 6,
});

export const IdType = registry({
  ID_IPV4_ADDR: 1,
  ID_FQDN: 2,
  ID_RFC822_ADDR: 3,
  ID_IPV6_ADDR: 5,
  ID_DER_ASN1_DN: 9,
  ID_DER_ASN1_GN: 10,
  ID_KEY_ID: 11,
  ID_FC_NAME: 12,
  ID_NULL: 13,
});

export const CertEncoding = registry({
  PKCS7_X509: 1,
  PGP: 2,
  DNS_SIGNED_KEY: 3,
  X509_SIGNATURE: 4,
  KERBEROS_TOKEN: 6,
  CRL: 7,
  ARL: 8,
  SPKI: 9,
  X509_ATTRIBUTE: 10,
  RAW_RSA_KEY: 11,
  HASH_URL_X509_CERT: 12,
  HASH_URL_X509_BUNDLE: 13,
  OCSP_CONTENT: 14,
  RAW_PUBLIC_KEY: 15,
});

export const AuthMethod = registry({
  RSA_SIGNATURE: 1,
  SHARED_KEY_MIC: 2,
  DSS_SIGNATURE: 3,
  ECDSA_SHA256_P256: 9,
  ECDSA_SHA384_P384: 10,
  ECDSA_SHA512_P521: 11,
  GENERIC_SECURE_PASSWORD: 12,
  NULL_AUTH: 13,
  DIGITAL_SIGNATURE: 14,
});

/** Hash algorithm identifiers for SIGNATURE_HASH_ALGORITHMS (RFC 7427). */
export const HashAlgorithm = registry({
  SHA1: 1,
  SHA2_256: 2,
  SHA2_384: 3,
  SHA2_512: 4,
  IDENTITY: 5,
});

export const TsType = registry({
  TS_IPV4_ADDR_RANGE: 7,
  TS_IPV6_ADDR_RANGE: 8,
  TS_FC_ADDR_RANGE: 9,
});

/** Notify message types: errors are < 16384, status types >= 16384. */
export const NotifyType = registry({
  UNSUPPORTED_CRITICAL_PAYLOAD: 1,
  INVALID_IKE_SPI: 4,
  INVALID_MAJOR_VERSION: 5,
  INVALID_SYNTAX: 7,
  INVALID_MESSAGE_ID: 9,
  INVALID_SPI: 11,
  NO_PROPOSAL_CHOSEN: 14,
  INVALID_KE_PAYLOAD: 17,
  AUTHENTICATION_FAILED: 24,
  SINGLE_PAIR_REQUIRED: 34,
  NO_ADDITIONAL_SAS: 35,
  INTERNAL_ADDRESS_FAILURE: 36,
  FAILED_CP_REQUIRED: 37,
  TS_UNACCEPTABLE: 38,
  INVALID_SELECTORS: 39,
  UNACCEPTABLE_ADDRESSES: 40,
  UNEXPECTED_NAT_DETECTED: 41,
  USE_ASSIGNED_HoA: 42,
  TEMPORARY_FAILURE: 43,
  CHILD_SA_NOT_FOUND: 44,
  INVALID_GROUP_ID: 45,
  AUTHORIZATION_FAILED: 46,
  STATE_NOT_FOUND: 47,
  TS_MAX_QUEUE: 48,
  REGISTRATION_FAILED: 49,

  INITIAL_CONTACT: 16384,
  SET_WINDOW_SIZE: 16385,
  ADDITIONAL_TS_POSSIBLE: 16386,
  IPCOMP_SUPPORTED: 16387,
  NAT_DETECTION_SOURCE_IP: 16388,
  NAT_DETECTION_DESTINATION_IP: 16389,
  COOKIE: 16390,
  USE_TRANSPORT_MODE: 16391,
  HTTP_CERT_LOOKUP_SUPPORTED: 16392,
  REKEY_SA: 16393,
  ESP_TFC_PADDING_NOT_SUPPORTED: 16394,
  NON_FIRST_FRAGMENTS_ALSO: 16395,
  MOBIKE_SUPPORTED: 16396,
  ADDITIONAL_IP4_ADDRESS: 16397,
  ADDITIONAL_IP6_ADDRESS: 16398,
  NO_ADDITIONAL_ADDRESSES: 16399,
  UPDATE_SA_ADDRESSES: 16400,
  COOKIE2: 16401,
  NO_NATS_ALLOWED: 16402,
  AUTH_LIFETIME: 16403,
  MULTIPLE_AUTH_SUPPORTED: 16404,
  ANOTHER_AUTH_FOLLOWS: 16405,
  REDIRECT_SUPPORTED: 16406,
  REDIRECT: 16407,
  REDIRECTED_FROM: 16408,
  TICKET_LT_OPAQUE: 16409,
  TICKET_REQUEST: 16410,
  TICKET_ACK: 16411,
  TICKET_NACK: 16412,
  TICKET_OPAQUE: 16413,
  LINK_ID: 16414,
  USE_WESP_MODE: 16415,
  ROHC_SUPPORTED: 16416,
  EAP_ONLY_AUTHENTICATION: 16417,
  CHILDLESS_IKEV2_SUPPORTED: 16418,
  QUICK_CRASH_DETECTION: 16419,
  IKEV2_MESSAGE_ID_SYNC_SUPPORTED: 16420,
  IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED: 16421,
  IKEV2_MESSAGE_ID_SYNC: 16422,
  IPSEC_REPLAY_COUNTER_SYNC: 16423,
  SECURE_PASSWORD_METHODS: 16424,
  PSK_PERSIST: 16425,
  PSK_CONFIRM: 16426,
  ERX_SUPPORTED: 16427,
  IFOM_CAPABILITY: 16428,
  /** RFC 9838 Section 4.7.4 (formerly SENDER_REQUEST_ID); data: 4-octet count. */
  GROUP_SENDER: 16429,
  IKEV2_FRAGMENTATION_SUPPORTED: 16430,
  SIGNATURE_HASH_ALGORITHMS: 16431,
  CLONE_IKE_SA_SUPPORTED: 16432,
  CLONE_IKE_SA: 16433,
  PUZZLE: 16434,
  USE_PPK: 16435,
  PPK_IDENTITY: 16436,
  NO_PPK_AUTH: 16437,
  INTERMEDIATE_EXCHANGE_SUPPORTED: 16438,
  IP4_ALLOWED: 16439,
  IP6_ALLOWED: 16440,
  ADDITIONAL_KEY_EXCHANGE: 16441,
  USE_AGGFRAG: 16442,
});

/** Notify types below this value are errors (RFC 7296 Section 3.10.1). */
export const NOTIFY_STATUS_MIN = 16384;

/** GSA policy attributes (RFC 9838 Section 4.4.2.2). */
export const GsaAttr = registry({
  GSA_KEY_LIFETIME: 1,
  GSA_INITIAL_MESSAGE_ID: 2,
  GSA_NEXT_SPI: 3,
});

/** Group-wide policy attributes (RFC 9838 Section 4.4.3.1). */
export const GwpAttr = registry({
  GWP_ATD: 1,
  GWP_DTD: 2,
  GWP_SENDER_ID_BITS: 3,
});

/** Group Key Bag attributes (RFC 9838 Section 4.5.2). */
export const GroupKeyBagAttr = registry({
  SA_KEY: 1,
});

/** Member Key Bag attributes (RFC 9838 Section 4.5.3). */
export const MemberKeyBagAttr = registry({
  WRAP_KEY: 1,
  AUTH_KEY: 2,
  GM_SENDER_ID: 3,
});

/** Fixed UDP ports: IKE, NAT-T, and the G-IKEv2 port (RFC 9838 Section 2.1.1). */
export const Port = registry({
  IKE: 500,
  IKE_NATT: 4500,
  GDOI: 848,
});

/** Private-use ranges (RFC 9838 / IANA); the project documents any value it takes. */
export const PrivateUse = Object.freeze({
  exchangeType: [240, 255],
  payloadType: [128, 255],
  protocolId: [201, 255],
  transformId: [1024, 65535],
  gsaAttribute: [16384, 32767],
  notifyStatus: [40960, 65535],
  notifyError: [8192, 16383],
} as const);
