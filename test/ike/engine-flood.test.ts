/**
 * Hostile load on the responder (issue 3): floods of IKE_SA_INIT requests
 * from many spoofed sources, floods from sources that do return cookies,
 * random garbage and replays of captured datagrams. The engine is driven
 * sans-I/O with simulated time, so "spoofed" sources are just addresses
 * (127.x.y.z) and ports given as data.
 *
 * What must hold: the responder switches to demanding cookies at the
 * threshold and then keeps no state for cookieless requests; half-open SAs
 * never exceed the configured caps (count, per source, estimated octets);
 * the engine's tables and the process heap stay bounded; nothing throws or
 * reports an internal error; replays get cached answers without new SAs or
 * state changes; and a legitimate initiator, which follows the COOKIE
 * retry, completes an exchange in the middle of the flood.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { deterministicRandom, type RandomSource } from '../../src/crypto/random.ts';
import type { IkeEngineConfig } from '../../src/ike/config.ts';
import { IkeEngine, type EngineEvent, type EngineOutput } from '../../src/ike/engine.ts';
import type { Endpoint, LocalEndpoint } from '../../src/ike/io-types.ts';
import { decodeHeader } from '../../src/wire/header.ts';
import { ExchangeType, NotifyType, PayloadType } from '../../src/wire/iana.ts';
import { decodeMessage, encodeMessage, type IkeMessage } from '../../src/wire/message.ts';
import { findNotify, type Payload } from '../../src/wire/payload.ts';
import { makeNotify } from '../../src/wire/payloads/notify.ts';
import { seededRandom } from '../sim/network.ts';
import { FAST_RETRANSMIT, pskConfigs, SIM_EPOCH } from './sim-helpers.ts';

const RESPONDER: Endpoint = { address: '192.0.2.1', port: 500 };
const RESPONDER_LOCAL: LocalEndpoint = { ...RESPONDER, marker: false };
const LEGIT: Endpoint = { address: '198.51.100.7', port: 500 };
const LEGIT_LOCAL: LocalEndpoint = { ...LEGIT, marker: false };

const COOKIE_THRESHOLD = 20;
const HALF_OPEN = { maxTotal: 200, maxPerSource: 3, timeoutMs: 30_000 } as const;
/** Generous: a few hundred half-open SAs and some garbage-collector slack, far below an unbounded flood. */
const HEAP_GROWTH_LIMIT = 48 * 1024 * 1024;

// ---------------------------------------------------------------- helpers

/** `global.gc` without --expose-gc: the flag can still be set at run time. */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
}

function heapUsed(): number {
  collectGarbage();
  return process.memoryUsage().heapUsed;
}

/** Spoofed source number `n`: 127.x.y.z (never .0) with a port of its own. */
function spoofed(n: number): Endpoint {
  return {
    address: `127.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${(n & 0xff) === 0 ? 255 : n & 0xff}`,
    port: 1024 + (n % 60_000),
  };
}

function responderConfig(extra: Partial<IkeEngineConfig> = {}): IkeEngineConfig {
  return {
    ...pskConfigs()[1],
    psks: { '*': 'flood-test-psk-0123456789' },
    retransmit: FAST_RETRANSMIT,
    rng: deterministicRandom('flood-responder'),
    cookieThreshold: COOKIE_THRESHOLD,
    halfOpen: HALF_OPEN,
    ...extra,
  };
}

function initiatorConfig(seed: string): IkeEngineConfig {
  return { ...pskConfigs()[0], psks: { '*': 'flood-test-psk-0123456789' }, retransmit: FAST_RETRANSMIT, rng: deterministicRandom(seed) };
}

/**
 * Well-formed IKE_SA_INIT requests as a flooding tool makes them: a real
 * initiator's request as template, with a fresh SPIi and nonce each time
 * and, for sources that can receive, the cookie they were given.
 */
class InitForger {
  private readonly template: IkeMessage;
  constructor(private readonly rng: RandomSource) {
    const out = new IkeEngine(initiatorConfig('forger')).initiate({ ...RESPONDER }, SIM_EPOCH);
    this.template = decodeMessage(out.send[0]!.data);
  }

  request(cookie?: Buffer, spiI: Buffer = this.rng.bytes(8), nonce: Buffer = this.rng.bytes(32)): { data: Buffer; spiI: Buffer; nonce: Buffer } {
    const payloads: Payload[] = this.template.payloads.map((p) => (p.type === PayloadType.NONCE ? { ...p, nonce } : p));
    if (cookie) payloads.unshift(makeNotify(NotifyType.COOKIE, { kind: 'cookie', cookie }));
    const data = encodeMessage({ header: { ...this.template.header, spiI }, payloads });
    return { data, spiI, nonce };
  }
}

/** The cookie in an IKE_SA_INIT response, if it is a COOKIE demand. */
function cookieOf(data: Buffer): Buffer | undefined {
  const n = findNotify(decodeMessage(data).payloads, NotifyType.COOKIE);
  return n && n.data.kind === 'cookie' ? n.data.cookie : undefined;
}

function assertNoInternalError(events: readonly EngineEvent[]): void {
  for (const e of events) if (e.type === 'dropped') assert.doesNotMatch(e.reason, /internal error/, e.reason);
}

/** A legitimate initiator talking to the responder while the flood goes on. */
class LegitInitiator {
  readonly engine = new IkeEngine(initiatorConfig('legit'));
  readonly events: EngineEvent[] = [];
  /** Datagrams in flight to the responder / back to us. */
  toResponder: Buffer[] = [];
  toUs: Buffer[] = [];
  cookiesReceived = 0;
  initRequests = 0;

  start(now: number): void {
    this.take(this.engine.initiate({ ...RESPONDER, local: LEGIT_LOCAL, remoteId: 'responder@test' }, now));
  }

  /** Delivers what is in flight in both directions (one hop each), like a network would between flood bursts. */
  step(responder: IkeEngine, now: number): void {
    for (const d of this.toResponder.splice(0)) {
      const out = responder.receive(d, LEGIT, RESPONDER_LOCAL, now);
      assertNoInternalError(out.events);
      for (const s of out.send) if (s.to.address === LEGIT.address && s.to.port === LEGIT.port) this.toUs.push(s.data);
    }
    for (const d of this.toUs.splice(0)) {
      const h = decodeHeader(d);
      if (h.exchangeType === ExchangeType.IKE_SA_INIT && cookieOf(d)) this.cookiesReceived++;
      this.take(this.engine.receive(d, RESPONDER, LEGIT_LOCAL, now));
    }
    if ((this.engine.nextTimeout() ?? Infinity) <= now) this.take(this.engine.timeout(now));
  }

  get established(): boolean {
    return this.events.some((e) => e.type === 'sa-established');
  }

  private take(out: EngineOutput): void {
    this.events.push(...out.events);
    for (const s of out.send) {
      if (decodeHeader(s.data).exchangeType === ExchangeType.IKE_SA_INIT) this.initRequests++;
      this.toResponder.push(s.data);
    }
  }
}

/** Runs the legitimate exchange to its end with no flood around it (after one). */
function finish(legit: LegitInitiator, responder: IkeEngine, now: number): number {
  for (let k = 0; k < 20 && !legit.established; k++) legit.step(responder, (now += 10));
  return now;
}

// ---------------------------------------------------------------- tests

describe('IKE responder under IKE_SA_INIT floods', () => {
  it('demands cookies from spoofed sources above the threshold, keeps no state for them, and serves a legitimate initiator', () => {
    const heapBefore = heapUsed();
    const responder = new IkeEngine(responderConfig());
    const forger = new InitForger(deterministicRandom('spoofed-flood'));
    const legit = new LegitInitiator();
    const FLOOD = 30_000;
    let now = SIM_EPOCH;
    let cookieDemands = 0;
    let saResponses = 0;
    let maxHalfOpen = 0;
    for (let n = 0; n < FLOOD; n++) {
      if (n % 100 === 0) now += 1;
      const from = spoofed(n);
      const out = responder.receive(forger.request().data, from, RESPONDER_LOCAL, now);
      assertNoInternalError(out.events);
      assert.ok(out.send.length <= 1, 'at most one answer per request');
      const reply = out.send[0];
      if (reply) {
        assert.deepEqual(reply.to, from);
        if (cookieOf(reply.data)) {
          cookieDemands++;
          // A stateless answer: no responder SPI, nothing kept.
          assert.ok(decodeHeader(reply.data).spiR.equals(Buffer.alloc(8)));
        } else {
          saResponses++;
        }
      }
      const st = responder.stats();
      maxHalfOpen = Math.max(maxHalfOpen, st.halfOpen);
      // The legitimate initiator starts in the middle of the flood; its datagrams
      // are interleaved with the flood's (one hop per 50 flood requests).
      if (n === FLOOD / 2) legit.start(now);
      if (n > FLOOD / 2 && n % 50 === 0) legit.step(responder, now);
    }
    now = finish(legit, responder, now);

    // Exactly the threshold's worth of spoofed half-open SAs, then cookies only.
    assert.equal(saResponses, COOKIE_THRESHOLD);
    assert.equal(cookieDemands, FLOOD - COOKIE_THRESHOLD);
    // Plus, for a moment, the legitimate initiator's, admitted by its cookie.
    assert.equal(maxHalfOpen, COOKIE_THRESHOLD + 1);
    // The legitimate initiator was asked for a cookie, came back with it, and got through.
    assert.ok(legit.established, JSON.stringify(legit.events));
    assert.equal(legit.cookiesReceived, 1);
    assert.equal(legit.initRequests, 2);
    const est = legit.events.find((e) => e.type === 'sa-established');
    assert.ok(est && est.type === 'sa-established');
    const mine = responder.list().filter((s) => s.state === 'established');
    assert.equal(mine.length, 1);
    assert.equal(mine[0]!.spiI + mine[0]!.spiR, est.spiI + est.spiR);

    const st = responder.stats();
    assert.equal(st.halfOpen, COOKIE_THRESHOLD);
    assert.equal(st.sas, COOKIE_THRESHOLD + 1);
    assert.ok(st.initIndex <= COOKIE_THRESHOLD && st.expiring === 0 && st.reassembling === 0, JSON.stringify(st));
    assert.ok(heapUsed() - heapBefore < HEAP_GROWTH_LIMIT, 'heap growth bounded');

    // Spoofed half-open SAs die after the half-open timeout; the legitimate one stays.
    responder.timeout(now + HALF_OPEN.timeoutMs + 1);
    assert.deepEqual(
      responder.list().map((s) => s.state),
      ['established'],
    );
  });

  for (const cap of [
    { name: 'count', halfOpen: HALF_OPEN, expected: HALF_OPEN.maxTotal },
    { name: 'estimated octets', halfOpen: { ...HALF_OPEN, maxTotal: 10_000, maxBytes: 64 * 4096, defaultCostBytes: 4096 }, expected: 64 },
  ]) {
    it(`caps half-open SAs by ${cap.name} against sources that do return cookies, and still serves a legitimate initiator`, () => {
      const heapBefore = heapUsed();
      const responder = new IkeEngine(responderConfig({ halfOpen: cap.halfOpen }));
      const forger = new InitForger(deterministicRandom(`botnet-${cap.name}`));
      const legit = new LegitInitiator();
      // 1000 hosts that can receive (a botnet), each sending 2 new requests with cookies,
      // plus one host that keeps trying: 2500 SAs the responder would create if it had no caps.
      const HOSTS = 1000;
      const attempts: Endpoint[] = [];
      for (let round = 0; round < 2; round++) for (let h = 0; h < HOSTS; h++) attempts.push(spoofed(h));
      const greedy: Endpoint = { address: '203.0.113.66', port: 4242 };
      for (let k = 0; k < 500; k++) attempts.splice(k * 5, 0, greedy);
      let now = SIM_EPOCH;
      let created = 0;
      let maxHalfOpen = 0;
      let maxSas = 0;
      attempts.forEach((from, n) => {
        now += 1;
        const first = forger.request();
        const demand = responder.receive(first.data, from, RESPONDER_LOCAL, now);
        assertNoInternalError(demand.events);
        const cookie = demand.send[0] ? cookieOf(demand.send[0].data) : undefined;
        if (cookie) {
          // The host answers the cookie as RFC 7296 2.6 says: same SPIi and nonce, cookie first.
          const out = responder.receive(forger.request(cookie, first.spiI, first.nonce).data, from, RESPONDER_LOCAL, now);
          assertNoInternalError(out.events);
          if (out.send[0] && !cookieOf(out.send[0].data)) created++;
        } else if (demand.send[0]) {
          created++;
        }
        const st = responder.stats();
        maxHalfOpen = Math.max(maxHalfOpen, st.halfOpen);
        maxSas = Math.max(maxSas, st.sas);
        assert.ok(responder.list().filter((s) => s.peer.address === greedy.address).length <= cap.halfOpen.maxPerSource);
        if (n === 1000) legit.start(now);
        if (n > 1000 && n % 25 === 0) legit.step(responder, now);
      });
      now = finish(legit, responder, now);

      assert.ok(created > cap.expected * 4, `the flood did create SAs (${created})`);
      assert.equal(maxHalfOpen, cap.expected);
      assert.ok(maxSas <= cap.expected + 1, `SAs held: ${maxSas}`);
      const st = responder.stats();
      assert.ok(st.halfOpenBytes <= 64 * 4096 || cap.name === 'count', JSON.stringify(st));
      assert.ok(st.initIndex <= cap.expected, JSON.stringify(st));
      assert.ok(legit.established, JSON.stringify(legit.events));
      assert.equal(legit.cookiesReceived, 1);
      assert.equal(responder.list().filter((s) => s.state === 'established').length, 1);
      assert.ok(heapUsed() - heapBefore < HEAP_GROWTH_LIMIT, 'heap growth bounded');
    });
  }
});

describe('IKE responder against garbage and replays', () => {
  /** A complete exchange (IKE_SA_INIT, IKE_AUTH, a liveness check) with every datagram recorded. */
  function capturedExchange(): {
    responder: IkeEngine;
    initiator: IkeEngine;
    saId: string;
    toResponder: Buffer[];
    toInitiator: Buffer[];
    now: number;
  } {
    const responder = new IkeEngine(responderConfig({ cookieThreshold: 1000 }));
    const initiator = new IkeEngine(initiatorConfig('replayed'));
    const toResponder: Buffer[] = [];
    const toInitiator: Buffer[] = [];
    let now = SIM_EPOCH;
    const pump = (out: EngineOutput): void => {
      let pending = out.send.map((s) => s.data);
      while (pending.length > 0) {
        const next: Buffer[] = [];
        for (const d of pending) {
          toResponder.push(d);
          for (const r of responder.receive(d, LEGIT, RESPONDER_LOCAL, (now += 1)).send) {
            toInitiator.push(r.data);
            next.push(...initiator.receive(r.data, RESPONDER, LEGIT_LOCAL, (now += 1)).send.map((s) => s.data));
          }
        }
        pending = next;
      }
    };
    const start = initiator.initiate({ ...RESPONDER, local: LEGIT_LOCAL, remoteId: 'responder@test' }, now);
    pump(start);
    pump(initiator.sendLiveness(start.saId, (now += 1)));
    assert.equal(responder.list()[0]?.state, 'established');
    return { responder, initiator, saId: start.saId, toResponder, toInitiator, now };
  }

  it('answers replayed IKE_SA_INIT, IKE_AUTH and INFORMATIONAL requests from its cache without new SAs or state changes', () => {
    const x = capturedExchange();
    const [initReq, authReq, livenessReq] = x.toResponder;
    assert.ok(initReq && authReq && livenessReq && x.toResponder.length === 3);
    const before = x.responder.list();
    const statsBefore = x.responder.stats();
    let now = x.now;
    // The last request (liveness) is the one whose response is cached; IKE_AUTH's
    // is gone from the window of one, so its replays are dropped as stale.
    for (let k = 0; k < 2000; k++) {
      const out = x.responder.receive(livenessReq, LEGIT, RESPONDER_LOCAL, (now += 1));
      assert.equal(out.send.length, 1);
      assert.ok(out.send[0]!.data.equals(x.toInitiator[2]!), 'the cached response, byte for byte');
      assert.ok(out.events.every((e) => e.type === 'dropped' || e.type === 'keylog') && !out.events.some((e) => e.type === 'keylog'));
      const auth = x.responder.receive(authReq, LEGIT, RESPONDER_LOCAL, now);
      assert.equal(auth.send.length, 0);
      assert.ok(auth.events.every((e) => e.type === 'dropped'));
    }
    assert.deepEqual(x.responder.list(), before);
    assert.deepEqual(x.responder.stats(), statsBefore);
    // The initiator, given the replayed responses, changes nothing either.
    const iBefore = x.initiator.list();
    for (const d of x.toInitiator) x.initiator.receive(d, RESPONDER, LEGIT_LOCAL, (now += 1));
    assert.deepEqual(x.initiator.list(), iBefore);
  });

  it('answers a replayed IKE_SA_INIT during the half-open phase with the same response and no second SA', () => {
    const responder = new IkeEngine(responderConfig({ cookieThreshold: 1000 }));
    const initiator = new IkeEngine(initiatorConfig('half-open-replay'));
    const req = initiator.initiate({ ...RESPONDER, local: LEGIT_LOCAL, remoteId: 'responder@test' }, SIM_EPOCH).send[0]!.data;
    const first = responder.receive(req, LEGIT, RESPONDER_LOCAL, SIM_EPOCH);
    assert.equal(first.send.length, 1);
    const state = responder.list();
    for (let k = 1; k <= 2000; k++) {
      const again = responder.receive(req, LEGIT, RESPONDER_LOCAL, SIM_EPOCH + k);
      assert.equal(again.send.length, 1);
      assert.ok(again.send[0]!.data.equals(first.send[0]!.data));
      assert.deepEqual(again.events, []);
    }
    assert.deepEqual(responder.list(), state);
    assert.equal(responder.stats().halfOpen, 1);
    // The exchange still completes.
    const auth = initiator.receive(first.send[0]!.data, RESPONDER, LEGIT_LOCAL, SIM_EPOCH + 3000);
    const done = responder.receive(auth.send[0]!.data, LEGIT, RESPONDER_LOCAL, SIM_EPOCH + 3001);
    assert.ok(done.events.some((e) => e.type === 'sa-established'));
  });

  it('after establishment, a replayed IKE_SA_INIT costs at most one half-open SA per source (none under cookie load) and never touches the SA', () => {
    const x = capturedExchange();
    const initReq = x.toResponder[0]!;
    const established = x.responder.list();
    let now = x.now;
    // Without load, an old IKE_SA_INIT is indistinguishable from a new attempt (RFC 7296 2.1):
    // the first replay opens one half-open SA, every further one is its retransmission.
    let answers = 0;
    for (let k = 0; k < 1000; k++) answers += x.responder.receive(initReq, LEGIT, RESPONDER_LOCAL, (now += 1)).send.length;
    assert.equal(answers, 1000);
    assert.equal(x.responder.stats().halfOpen, 1);
    assert.deepEqual(x.responder.list().filter((s) => s.state === 'established'), established);
    x.responder.timeout(now + HALF_OPEN.timeoutMs);
    assert.deepEqual(x.responder.list(), established);

    // Under load (cookies demanded) the replays create nothing at all.
    const loaded = new IkeEngine(responderConfig({ cookieThreshold: 0 }));
    for (let k = 0; k < 1000; k++) {
      const out = loaded.receive(initReq, spoofed(k), RESPONDER_LOCAL, (now += 1));
      assert.ok(cookieOf(out.send[0]!.data));
    }
    assert.deepEqual(loaded.stats(), { sas: 0, halfOpen: 0, halfOpenBytes: 0, initIndex: 0, expiring: 0, reassembling: 0 });
  });

  it('survives random garbage, forged headers and mangled copies, then completes a legitimate exchange', () => {
    const heapBefore = heapUsed();
    const x = capturedExchange();
    const responder = new IkeEngine(responderConfig());
    const rnd = seededRandom(2024);
    const rng = deterministicRandom('garbage');
    const forger = new InitForger(rng);
    const recorded = [...x.toResponder, ...x.toInitiator];
    const header = (exchangeType: number, flags: number, body: Buffer): Buffer => {
      const h = Buffer.alloc(28);
      rng.bytes(16).copy(h, 0);
      if (rnd() < 0.5) h.fill(0, 8, 16);
      h[16] = PayloadType.SK;
      h[17] = 0x20;
      h[18] = exchangeType;
      h[19] = flags;
      h.writeUInt32BE(Math.floor(rnd() * 4), 20);
      h.writeUInt32BE(28 + body.length, 24);
      return Buffer.concat([h, body]);
    };
    const GARBAGE = 20_000;
    let now = SIM_EPOCH;
    let replies = 0;
    let replyOctets = 0;
    let requestOctets = 0;
    for (let n = 0; n < GARBAGE; n++) {
      if (n % 100 === 0) now += 1;
      let d: Buffer;
      switch (n % 5) {
        case 0: // noise of any length
          d = rng.bytes(Math.floor(rnd() * 1500));
          break;
        case 1: // a plausible header and noise, for every exchange and flag combination
          d = header([34, 35, 36, 37, 39, Math.floor(rnd() * 256)][n % 6]!, [0x08, 0x20, 0x28, 0x00][Math.floor(rnd() * 4)]!, rng.bytes(Math.floor(rnd() * 600)));
          break;
        case 2: { // a captured datagram, truncated or with bits flipped
          const c = Buffer.from(recorded[n % recorded.length]!);
          for (let k = 0; k < 1 + Math.floor(rnd() * 3); k++) {
            const at = Math.floor(rnd() * c.length);
            c[at] = c[at]! ^ (1 << Math.floor(rnd() * 8));
          }
          d = rnd() < 0.3 ? c.subarray(0, Math.floor(rnd() * c.length)) : c;
          break;
        }
        case 3: { // a well-formed IKE_SA_INIT with one payload octet changed
          const c = forger.request().data;
          const at = 28 + Math.floor(rnd() * (c.length - 28));
          c[at] = Math.floor(rnd() * 256);
          d = c;
          break;
        }
        default: // the captured messages replayed from elsewhere
          d = recorded[n % recorded.length]!;
      }
      requestOctets += d.length;
      const out = responder.receive(d, spoofed(n), RESPONDER_LOCAL, now);
      assertNoInternalError(out.events);
      assert.ok(out.send.length <= 1);
      replies += out.send.length;
      for (const s of out.send) replyOctets += s.data.length;
      assert.ok(responder.stats().halfOpen <= COOKIE_THRESHOLD);
    }
    // Garbage never makes the responder an amplifier, and the SAs it holds stay bounded.
    assert.ok(replyOctets < requestOctets, `${replyOctets} octets answered to ${requestOctets}`);
    assert.ok(replies < GARBAGE);
    assert.ok(responder.stats().sas <= COOKIE_THRESHOLD);
    assert.equal(responder.list().filter((s) => s.state === 'established').length, 0);

    const legit = new LegitInitiator();
    legit.start(now);
    finish(legit, responder, now);
    assert.ok(legit.established, JSON.stringify(legit.events));
    assert.equal(responder.list().filter((s) => s.state === 'established').length, 1);
    assert.ok(heapUsed() - heapBefore < HEAP_GROWTH_LIMIT, 'heap growth bounded');
  });
});

describe('IKE responder against failing IKE_AUTH floods', () => {
  /**
   * Hosts that can receive complete IKE_SA_INIT (cookies included) and then
   * send an IKE_AUTH the responder must refuse (a wrong PSK). The responder
   * keeps each failed SA a while to answer retransmissions; those SAs cost
   * what half-open ones do, so they must stay under the same caps.
   */
  function failAuth(responder: IkeEngine, initiator: IkeEngine, from: Endpoint, now: number): { failed: boolean; authRequest?: Buffer; authResponse?: Buffer } {
    const local: LocalEndpoint = { ...from, marker: false };
    let pending = initiator.initiate({ ...RESPONDER, local, remoteId: 'responder@test' }, now).send.map((s) => s.data);
    let failed = false;
    let authRequest: Buffer | undefined;
    let authResponse: Buffer | undefined;
    for (let hop = 0; hop < 6 && pending.length > 0; hop++) {
      const next: Buffer[] = [];
      for (const d of pending) {
        const out = responder.receive(d, from, RESPONDER_LOCAL, now);
        assertNoInternalError(out.events);
        if (out.events.some((e) => e.type === 'exchange-failed' && e.notify === 'AUTHENTICATION_FAILED')) {
          failed = true;
          authRequest = d;
          authResponse = out.send[0]?.data;
          continue;
        }
        for (const s of out.send) next.push(...initiator.receive(s.data, RESPONDER, local, now).send.map((x) => x.data));
      }
      pending = next;
    }
    return { failed, ...(authRequest ? { authRequest } : {}), ...(authResponse ? { authResponse } : {}) };
  }

  it('counts failed responder SAs against the half-open caps (total and per source) and still answers their retransmissions', () => {
    const halfOpen = { maxTotal: 50, maxPerSource: 3, timeoutMs: 30_000 };
    const responder = new IkeEngine(responderConfig({ halfOpen, cookieThreshold: 10 }));
    const wrong = new IkeEngine({ ...initiatorConfig('wrong-psk'), psks: { '*': 'not-the-flood-test-psk' } });
    let now = SIM_EPOCH;
    let failures = 0;
    let last: { authRequest?: Buffer; authResponse?: Buffer } = {};
    // 200 failed IKE_AUTHs within a few seconds, well inside the time failed SAs are kept.
    for (let n = 0; n < 200; n++) {
      const r = failAuth(responder, wrong, spoofed(n), (now += 10));
      if (r.failed) failures++;
      last = r;
      const st = responder.stats();
      assert.ok(st.sas <= halfOpen.maxTotal, `SAs held after ${n + 1} failed authentications: ${JSON.stringify(st)}`);
      assert.ok(st.halfOpen <= halfOpen.maxTotal);
    }
    assert.equal(failures, 200);
    assert.equal(responder.stats().halfOpen, halfOpen.maxTotal);
    assert.equal(responder.stats().expiring, halfOpen.maxTotal);

    // The newest failed SA still answers a retransmitted IKE_AUTH with the cached error.
    const again = responder.receive(last.authRequest!, spoofed(199), RESPONDER_LOCAL, (now += 10));
    assert.equal(again.send.length, 1);
    assert.ok(again.send[0]!.data.equals(last.authResponse!));

    // One source failing over and over holds at most its per-source share.
    const greedy: Endpoint = { address: '203.0.113.66', port: 4242 };
    let greedyFailures = 0;
    for (let k = 0; k < 10; k++) if (failAuth(responder, wrong, greedy, (now += 10)).failed) greedyFailures++;
    assert.equal(greedyFailures, halfOpen.maxPerSource);
    assert.equal(responder.list().length, 0, 'failed SAs are not listed as live');

    // A legitimate initiator gets through (after a cookie: the failed SAs count towards the threshold).
    const legit = new LegitInitiator();
    legit.start(now);
    now = finish(legit, responder, now);
    assert.ok(legit.established, JSON.stringify(legit.events));
    assert.equal(legit.cookiesReceived, 1);

    // Everything failed is gone once the half-open timeout has passed.
    responder.timeout(now + halfOpen.timeoutMs + 1);
    const st = responder.stats();
    assert.equal(st.sas, 1);
    assert.equal(st.halfOpen, 0);
    assert.equal(st.expiring, 0);
  });
});
