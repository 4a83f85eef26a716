import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import type { AuthPayloadProvider, ExchangeResponder } from '../../src/ike/auth-extension.ts';
import { ExchangeType, PayloadType, ProtocolId } from '../../src/wire/iana.ts';
import { findPayloads, type Payload } from '../../src/wire/payload.ts';
import { makePair, pskConfigs } from './sim-helpers.ts';

const hello = (text: string): Payload => ({ type: PayloadType.VENDOR_ID, critical: false, vendorId: Buffer.from(text) });
const texts = (payloads: readonly Payload[]): string[] => findPayloads(payloads, PayloadType.VENDOR_ID).map((v) => v.vendorId.toString());

describe('IKE engine: extension exchanges over an established IKE SA', () => {
  it('requestExchange sends a request of another exchange type; the responder answers through its ExchangeResponder', () => {
    const answered: string[][] = [];
    const responder: ExchangeResponder = (ctx, payloads) => {
      assert.equal(ctx.exchangeType, ExchangeType.GSA_REGISTRATION);
      assert.equal(ctx.peerId?.data.toString(), 'initiator@test');
      return [hello(`re: ${texts(payloads).join()}`)];
    };
    const [i, r] = pskConfigs();
    const p = makePair(i, { ...r, exchangeResponders: new Map([[ExchangeType.GSA_REGISTRATION, responder]]) });
    const saId = p.initiate({ remoteId: 'responder@test' });
    p.sim.run();
    for (const n of [1, 2]) {
      const out = p.initiator.engine.requestExchange(
        saId,
        { exchangeType: ExchangeType.GSA_REGISTRATION, build: () => [hello(`join ${n}`)], onResponse: (_ctx, payloads) => answered.push(texts(payloads)) },
        p.sim.now,
      );
      assert.ok(out.queued);
      p.emit(p.initiator, out);
    }
    p.sim.run();
    assert.deepEqual(answered, [['re: join 1'], ['re: join 2']], 'queued behind each other, answered in order');
    assert.equal(p.initiator.engine.sa(saId)!.nextRequestId, 4, 'IKE_SA_INIT 0, IKE_AUTH 1, then 2 and 3');
    assert.equal(p.initiator.engine.requestExchange('ike-999', { exchangeType: 40, build: () => [], onResponse: () => undefined }, p.sim.now).queued, false);
  });

  it('an exchange type without a responder is dropped (the requester times out)', () => {
    const [i, r] = pskConfigs();
    const p = makePair(i, r);
    const saId = p.initiate({ remoteId: 'responder@test' });
    p.sim.run();
    p.emit(p.initiator, p.initiator.engine.requestExchange(saId, { exchangeType: ExchangeType.GSA_REGISTRATION, build: () => [], onResponse: () => undefined }, p.sim.now));
    p.sim.run();
    assert.ok(p.responder.of('dropped').some((d) => d.reason.includes('unsupported exchange GSA_REGISTRATION')));
    assert.equal(p.initiator.of('sa-deleted')[0]?.reason, 'timeout');
  });

  it('in GSA_AUTH an SA payload is the SAg, not a CHILD_SA request; pskLookup supplies PSKs', () => {
    const sag: Payload = { type: PayloadType.SA, critical: false, proposals: [{ num: 1, protocolId: ProtocolId.ESP, spi: Buffer.alloc(0), transforms: [] }] };
    let gcksSawSag = false;
    const gcks: AuthPayloadProvider = {
      name: 'gcks',
      processRequest: (_ctx, payloads) => {
        gcksSawSag = findPayloads(payloads, PayloadType.SA).length === 1;
        return undefined;
      },
    };
    const gm: AuthPayloadProvider = {
      name: 'gm',
      buildRequest: () => [sag],
      processResponse: (_ctx, payloads) => {
        assert.deepEqual(findPayloads(payloads, PayloadType.NOTIFY).map((n) => n.notifyType), []);
        return undefined;
      },
    };
    const [i, r] = pskConfigs();
    const p = makePair(i, { localId: r.localId, pskLookup: (peer) => (peer.data.toString() === 'initiator@test' ? Buffer.from('interop-test-psk-0123456789') : undefined), gsaAuthProviders: [gcks] });
    p.initiate({ remoteId: 'responder@test', exchange: 'GSA_AUTH', providers: [gm] });
    p.sim.run();
    assert.ok(gcksSawSag);
    const est = p.initiator.of('sa-established')[0]!;
    assert.equal(est.childSaRefused, undefined);
    assert.equal(est.extensionRefused, undefined);
  });
});
