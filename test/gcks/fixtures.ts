import { generateKeyPairSync } from 'node:crypto';
import { deriveGskW } from '../../src/crypto/keys.ts';
import { kwaKeyLength } from '../../src/crypto/keywrap.ts';
import { deterministicRandom } from '../../src/crypto/random.ts';
import { loadGcksConfig, type GcksConfig } from '../../src/gcks/config.ts';
import { memoryCounterReservation, type CounterReservation } from '../../src/gcks/counters.ts';
import { createGroupDirectory, type GroupDirectory } from '../../src/gcks/registration.ts';
import { rekeySigningKeyFrom, type RekeySigningKey } from '../../src/gcks/signing-key.ts';
import { IdType, PrfId } from '../../src/wire/iana.ts';
import type { Identity } from '../../src/ike/identity.ts';

export const NOW = Date.UTC(2025, 0, 1);

/** Three groups: signed multicast rekey (tunnel), implicit rekey in transport mode, inband with AES-CBC. */
export const GCKS_YAML = `
identity: "@gcks.example"
credentials:
  psks:
    - member: "*.plant1.example"
      secret: "plant one shared secret"
    - member: any
      secretHex: "00112233445566778899aabbccddeeff"
groups:
  - name: video
    id: {type: ID_KEY_ID, value: video}
    capacity: 3
    members:
      ids: [gm1@example.org]
      patterns: ["*.plant1.example", "gm-*@example.org"]
    senders:
      ids: [gm1@example.org]
      patterns: ["sender*.plant1.example"]
    maxSenderIdsPerMember: 4
    activationDelay: 5
    deactivationDelay: 10
    dataSecurity:
      - destination: {address: 239.1.1.1, protocol: udp, port: 5000}
      - destination: 239.1.1.2
        encryption: chacha20poly1305
    rekey:
      destination: {address: 239.0.0.1}
      source: {address: 192.0.2.1, port: 848}
      signingKey: /etc/gikev2/rekey.pem
  - name: telemetry
    id: "@telemetry.example"
    mode: transport
    members: {any: true}
    senders: {any: true}
    senderIdBits: 2
    maxSenderIdsPerMember: 2
    dataSecurity:
      - destination: {address: "ff15::1", protocol: udp, port: 6000}
        sequenceNumbers: seq32
    rekey:
      destination: {address: "ff15::2", port: 9848}
      keyWrap: kw_arx
      authentication: implicit
  - name: small
    id: {type: ID_IPV4_ADDR, value: 198.51.100.7}
    members: {any: true}
    dataSecurity:
      - protocol: esp
        destination: 239.2.2.2
        encryption: aes256
        integrity: sha256
      - protocol: ah
        destination: 239.2.2.3
    rekey: inband
`;

export function gcksConfig(): GcksConfig {
  return loadGcksConfig(GCKS_YAML, 'fixture.yaml');
}

export const ed25519: RekeySigningKey = rekeySigningKeyFrom(generateKeyPairSync('ed25519').privateKey);

export function directory(counters: CounterReservation = memoryCounterReservation(), seed = 'gcks', config = gcksConfig()): GroupDirectory {
  return createGroupDirectory(config.groups, { counters, rng: deterministicRandom(seed), signingKeyFor: () => ed25519 }, NOW);
}

export function fqdn(name: string): Identity {
  return { idType: IdType.ID_FQDN, data: Buffer.from(name) };
}
export function email(name: string): Identity {
  return { idType: IdType.ID_RFC822_ADDR, data: Buffer.from(name) };
}
export const VIDEO: Identity = { idType: IdType.ID_KEY_ID, data: Buffer.from('video') };
export const TELEMETRY: Identity = fqdn('telemetry.example');
export const SMALL: Identity = { idType: IdType.ID_IPV4_ADDR, data: Buffer.from([198, 51, 100, 7]) };

/** GSK_w of a pretend registration IKE SA. */
export function gskWFor(kwa: number, seed = 'sk_d'): Buffer {
  return deriveGskW(PrfId.HMAC_SHA2_256, Buffer.alloc(32, seed), kwaKeyLength(kwa));
}
