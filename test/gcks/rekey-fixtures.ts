/** Shared fixtures for GSA_REKEY tests: Rekey SAs, policies, signers, receivers. */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createRekeySigner, type RekeySigner } from '../../src/crypto/auth.ts';
import { createSkCipher } from '../../src/crypto/cipher.ts';
import { rekeySaKeymatLength, rekeySaSkKeys, splitRekeySaKeys, type RekeySaAlgorithms } from '../../src/crypto/keys.ts';
import type { RandomSource } from '../../src/crypto/random.ts';
import { SignatureAlgorithms, type SignatureAlgorithm } from '../../src/crypto/signature.ts';
import type { RekeySaSender } from '../../src/gcks/rekey-message.ts';
import type { RekeyAuthentication, RekeySaReceiver } from '../../src/gm/rekey-receiver.ts';
import { tv } from '../../src/wire/attributes.ts';
import { keyLifetimeAttribute, type SaPolicy } from '../../src/wire/gsa.ts';
import { EncrId, ExchangeType, GcauthId, KwaId, ProtocolId, SnId, TransformAttr, TransformType, TsType } from '../../src/wire/iana.ts';
import type { Payload } from '../../src/wire/payload.ts';
import type { TrafficSelector } from '../../src/wire/traffic-selector.ts';
import type { ValidationError } from '../../src/wire/errors.ts';
import { validateExchange } from '../../src/wire/validator.ts';

export const KEK_ALG: RekeySaAlgorithms = { encr: EncrId.AES_GCM_16, encrKeyBits: 256, kwa: KwaId.KW_5649_256 };

function ipv4(address: string, ipProtocol = 0, port?: number): TrafficSelector {
  return {
    type: TsType.TS_IPV4_ADDR_RANGE,
    ipProtocol,
    startPort: port ?? 0,
    endPort: port ?? 0xffff,
    startAddress: address,
    endAddress: address,
  };
}

export function kekPolicy(spi: Buffer): SaPolicy {
  return {
    kind: 'sa',
    protocol: ProtocolId.GIKE_UPDATE,
    spi,
    source: ipv4('192.0.2.1', 17, 848),
    destination: ipv4('239.192.0.1', 17, 848),
    transforms: [
      { type: TransformType.ENCR, id: EncrId.AES_GCM_16, attributes: [tv(TransformAttr.KEY_LENGTH, 256)] },
      { type: TransformType.KWA, id: KwaId.KW_5649_256, attributes: [] },
    ],
    attributes: [keyLifetimeAttribute(3600)],
  };
}

export function espPolicy(spi: Buffer): SaPolicy {
  return {
    kind: 'sa',
    protocol: ProtocolId.ESP,
    spi,
    source: ipv4('10.0.0.0'),
    destination: ipv4('239.1.1.1'),
    transforms: [
      { type: TransformType.ENCR, id: EncrId.AES_GCM_16, attributes: [tv(TransformAttr.KEY_LENGTH, 256)] },
      { type: TransformType.SN, id: SnId.SEQ32, attributes: [] },
    ],
    attributes: [keyLifetimeAttribute(3600)],
  };
}

/** A Rekey SA as both sides hold it. */
export interface TestRekeySa {
  readonly spi: Buffer;
  readonly keymat: Buffer;
  readonly gskW: Buffer;
  readonly policy: SaPolicy;
  sender(signer?: RekeySigner): RekeySaSender;
  receiver(auth: RekeyAuthentication, lastMessageId?: number, initialMessageId?: number): RekeySaReceiver;
}

export function rekeySaFrom(spi: Buffer, keymat: Buffer, rng?: RandomSource): TestRekeySa {
  const keys = splitRekeySaKeys(keymat, KEK_ALG);
  const sendCipher = createSkCipher(KEK_ALG, rekeySaSkKeys(keys), rng);
  return {
    spi,
    keymat,
    gskW: keys.gskW,
    policy: kekPolicy(spi),
    sender: (signer) => ({ spi, cipher: sendCipher, signer }),
    receiver: (auth, lastMessageId, initialMessageId = 0) => ({
      spi,
      cipher: createSkCipher(KEK_ALG, rekeySaSkKeys(keys)),
      auth,
      initialMessageId,
      lastMessageId,
    }),
  };
}

export function newRekeySa(rng: RandomSource): TestRekeySa {
  return rekeySaFrom(rng.bytes(16), rng.bytes(rekeySaKeymatLength(KEK_ALG)), rng);
}

export type SignerKind = 'ed25519' | 'ecdsa-p256' | 'rsa-pss';

export interface TestSigner {
  readonly signer: RekeySigner;
  readonly publicKey: KeyObject;
  readonly auth: RekeyAuthentication;
}

const ALGORITHMS: Record<SignerKind, SignatureAlgorithm> = {
  ed25519: SignatureAlgorithms.ED25519,
  'ecdsa-p256': SignatureAlgorithms.ECDSA_SHA256,
  'rsa-pss': SignatureAlgorithms.RSA_PSS_SHA256,
};

export function testSigner(kind: SignerKind): TestSigner {
  const { privateKey, publicKey } =
    kind === 'ed25519'
      ? generateKeyPairSync('ed25519')
      : kind === 'ecdsa-p256'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signer = createRekeySigner(privateKey, ALGORITHMS[kind]);
  return { signer, publicKey, auth: { kind: 'signature', publicKey, algorithmIdentifier: signer.algorithmIdentifier } };
}

/** Section 5 validation of GSA_REKEY inner payloads, as the GCKS must pass it. */
export function rekeyViolations(inner: readonly Payload[], signed: boolean): ValidationError[] {
  return validateExchange(ExchangeType.GSA_REKEY, inner, {
    rekeyStyle: 'multicast',
    groupSender: false,
    keyTree: true,
    gcauth: signed ? GcauthId.DIGITAL_SIGNATURE : GcauthId.IMPLICIT,
  });
}
