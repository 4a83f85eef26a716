import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { createSelfSignedCa, issueEndEntity, issueIntermediateCa, type KeySpec } from '../../src/crypto/x509-builder.ts';
import type { AuthPayloadProvider } from '../../src/ike/auth-extension.ts';
import type { IkeEngineConfig } from '../../src/ike/config.ts';
import { decodeHeader } from '../../src/wire/header.ts';
import { ExchangeType, NotifyType, PayloadType } from '../../src/wire/iana.ts';
import { findPayloads } from '../../src/wire/payload.ts';
import { makePair, pskConfigs, SIM_EPOCH, type Pair } from './sim-helpers.ts';

const notBefore = new Date(SIM_EPOCH - 86_400_000);
const notAfter = new Date(SIM_EPOCH + 365 * 86_400_000);

function pki(keySpec: KeySpec, intermediates = 0) {
  const ca = createSelfSignedCa({ subject: { C: 'CH', O: 'gikev2 test', CN: `Root ${keySpec}` }, keySpec, notBefore, notAfter });
  let issuer: { certificate: typeof ca.certificate; privateKey: typeof ca.privateKey } = ca;
  const chain: Buffer[] = [];
  for (let n = 0; n < intermediates; n++) {
    const im = issueIntermediateCa(issuer, { subject: { O: 'gikev2 test', CN: `Intermediate ${n}` }, keySpec, notBefore, notAfter });
    chain.unshift(im.der);
    issuer = im;
  }
  const ee = (id: string) => {
    const c = issueEndEntity(issuer, {
      subject: { O: 'gikev2 test', CN: id },
      keySpec,
      notBefore,
      notAfter,
      subjectAltName: { email: [id] },
    });
    return { chain: [c.der, ...chain], privateKey: c.privateKey };
  };
  return { ca, ee };
}

function certConfigs(keySpec: KeySpec, intermediates = 0): [IkeEngineConfig, IkeEngineConfig] {
  const { ca, ee } = pki(keySpec, intermediates);
  return [
    { localId: 'initiator@test', certificate: ee('initiator@test'), trustAnchors: [ca.der] },
    { localId: 'responder@test', certificate: ee('responder@test'), trustAnchors: [ca.der] },
  ];
}

function establish(p: Pair, options = {}): string {
  const saId = p.initiate({ remoteId: 'responder@test', ...options });
  p.sim.run();
  assert.equal(p.initiator.of('sa-established').length, 1, JSON.stringify(p.initiator.events));
  assert.equal(p.responder.of('sa-established').length, 1, JSON.stringify(p.responder.events));
  return saId;
}

describe('IKE engine in simulation: certificates', () => {
  for (const keySpec of ['ec-p256', 'ed25519', 'ec-p384'] as const) {
    it(`authenticates both sides with ${keySpec} certificates (RFC 7427)`, () => {
      const [i, r] = certConfigs(keySpec);
      const p = makePair(i, r);
      establish(p);
      const ei = p.initiator.of('sa-established')[0]!;
      const er = p.responder.of('sa-established')[0]!;
      assert.equal(ei.spiI + ei.spiR, er.spiI + er.spiR);
    });
  }

  it('uses the legacy ECDSA method when the peer sent no SIGNATURE_HASH_ALGORITHMS, and verifies it', () => {
    const [i, r] = certConfigs('ec-p256');
    const p = makePair({ ...i, signatureHashes: [] }, r);
    establish(p);
  });

  it('fails with AUTHENTICATION_FAILED when the chain does not lead to a trust anchor', () => {
    const [i, r] = certConfigs('ec-p256');
    const other = pki('ec-p256').ca;
    const p = makePair(i, { ...r, trustAnchors: [other.der] });
    p.initiate({ remoteId: 'responder@test' });
    p.sim.run();
    assert.equal(p.responder.of('exchange-failed')[0]?.notify, 'AUTHENTICATION_FAILED');
    assert.equal(p.initiator.of('exchange-failed')[0]?.notify, 'AUTHENTICATION_FAILED');
    assert.deepEqual(p.responder.engine.list(), []);
  });

  it('fails when the identity is not in the certificate', () => {
    const { ca, ee } = pki('ec-p256');
    const p = makePair(
      { localId: 'mallory@test', certificate: ee('initiator@test'), trustAnchors: [ca.der] },
      { localId: 'responder@test', certificate: ee('responder@test'), trustAnchors: [ca.der] },
    );
    p.initiate({ remoteId: 'responder@test' });
    p.sim.run();
    assert.equal(p.responder.of('exchange-failed')[0]?.notify, 'AUTHENTICATION_FAILED');
  });

  it('fragments a large IKE_AUTH (RFC 7383) and reassembles it, also when fragments are lost', () => {
    const [i, r] = certConfigs('rsa-2048', 3);
    let dropped = 0;
    const p = makePair({ ...i, maxDatagramSize: 576 }, { ...r, maxDatagramSize: 576 }, {
      policy: (d) => {
        const h = decodeHeader(d.data);
        if (h.nextPayload === PayloadType.SKF && dropped < 2 && d.seq % 3 === 0) {
          dropped++;
          return { kind: 'drop' };
        }
        return { kind: 'deliver' };
      },
    });
    establish(p);
    const fragments = p.sim.network.sent.filter((d) => decodeHeader(d.data).nextPayload === PayloadType.SKF);
    assert.ok(fragments.length > 4, `expected fragments, got ${fragments.length}`);
    assert.ok(p.sim.network.sent.every((d) => d.data.length <= 576 - 28));
    assert.ok(dropped > 0);
    assert.equal(p.initiator.of('sa-established')[0]!.fragmentation, true);
  });
});

describe('IKE engine in simulation: childless IKE_AUTH (RFC 6023)', () => {
  it('announces CHILDLESS_IKEV2_SUPPORTED and refuses a requested CHILD_SA while the IKE SA comes up', () => {
    const [i, r] = pskConfigs();
    const p = makePair(i, r);
    establish(p, { requestChildSa: true });
    assert.equal(p.initiator.of('sa-established')[0]!.childSaRefused, 'NO_PROPOSAL_CHOSEN');
    const initResponse = p.sim.network.sent.find((d) => {
      const h = decodeHeader(d.data);
      return h.exchangeType === ExchangeType.IKE_SA_INIT && h.flags.response;
    })!;
    assert.ok(initResponse.data.includes(Buffer.from([0x40, 0x22])), 'N(16418) in IKE_SA_INIT response');
  });
});

describe('IKE engine in simulation: GSA_AUTH pluggability', () => {
  const gmHello = Buffer.from('gm: join group 1');
  const gcksHello = Buffer.from('gcks: welcome');

  it('runs the auth task as GSA_AUTH with payload providers on both sides', () => {
    const seen: string[] = [];
    const gm: AuthPayloadProvider = {
      name: 'dummy-gm',
      buildRequest: (ctx) => {
        seen.push(`gm-build:${ctx.exchangeType}`);
        return [{ type: PayloadType.VENDOR_ID, critical: false, vendorId: gmHello }];
      },
      processResponse: (ctx, payloads) => {
        const v = findPayloads(payloads, PayloadType.VENDOR_ID);
        seen.push(`gm-process:${ctx.peerId ? 'authenticated' : 'anonymous'}`);
        return v.some((x) => x.vendorId.equals(gcksHello)) ? undefined : { notify: NotifyType.REGISTRATION_FAILED, reason: 'no welcome' };
      },
    };
    const gcks: AuthPayloadProvider = {
      name: 'dummy-gcks',
      processRequest: (ctx, payloads) => {
        seen.push(`gcks-process:${ctx.skD.length}`);
        return findPayloads(payloads, PayloadType.VENDOR_ID).some((x) => x.vendorId.equals(gmHello))
          ? undefined
          : { notify: NotifyType.INVALID_GROUP_ID, reason: 'no IDg' };
      },
      buildResponse: () => [{ type: PayloadType.VENDOR_ID, critical: false, vendorId: gcksHello }],
    };
    const [i, r] = pskConfigs();
    const p = makePair(i, { ...r, gsaAuthProviders: [gcks] });
    establish(p, { exchange: 'GSA_AUTH', providers: [gm] });
    assert.equal(p.initiator.of('sa-established')[0]!.exchange, 'GSA_AUTH');
    assert.equal(p.responder.of('sa-established')[0]!.exchange, 'GSA_AUTH');
    assert.deepEqual(seen, [`gm-build:${ExchangeType.GSA_AUTH}`, 'gcks-process:32', 'gm-process:authenticated']);
    const auth = p.sim.network.sent.filter((d) => decodeHeader(d.data).exchangeType === ExchangeType.GSA_AUTH);
    assert.equal(auth.length, 2);
  });

  it('a refusal by the GCKS provider keeps the IKE SA and reports the notify', () => {
    const gcks: AuthPayloadProvider = {
      name: 'refusing-gcks',
      processRequest: () => ({ notify: NotifyType.AUTHORIZATION_FAILED, reason: 'not a member' }),
    };
    const [i, r] = pskConfigs();
    const p = makePair(i, { ...r, gsaAuthProviders: [gcks] });
    const gm: AuthPayloadProvider = {
      name: 'gm',
      processResponse: (_ctx, payloads) =>
        findPayloads(payloads, PayloadType.NOTIFY).some((n) => n.notifyType === NotifyType.AUTHORIZATION_FAILED)
          ? { notify: NotifyType.AUTHORIZATION_FAILED, reason: 'refused' }
          : undefined,
    };
    establish(p, { exchange: 'GSA_AUTH', providers: [gm] });
    assert.equal(p.responder.of('sa-established')[0]!.extensionRefused, 'AUTHORIZATION_FAILED');
    assert.equal(p.initiator.of('sa-established')[0]!.extensionRefused, 'AUTHORIZATION_FAILED');
  });

  it('a responder that is no GCKS refuses GSA_AUTH', () => {
    const [i, r] = pskConfigs();
    const p = makePair(i, r);
    p.initiate({ remoteId: 'responder@test', exchange: 'GSA_AUTH' });
    p.sim.run();
    assert.equal(p.initiator.of('exchange-failed')[0]?.notify, 'INVALID_SYNTAX');
    assert.deepEqual(p.responder.engine.list(), []);
  });
});
