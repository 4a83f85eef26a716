/**
 * Mutation fuzzing of the wire decoders (and of the pcap reader). Valid
 * messages are mutated at random; every mutated input must either decode
 * into a value that re-encodes (and decodes back to itself) or fail with a
 * DecodeError. Anything else -- another exception type, a hang, runaway
 * allocation -- fails the test with the seed and the input in hex.
 *
 *   FUZZ_SEED=1234 FUZZ_ITERATIONS=1000000 node --import tsx --test test/fuzz/wire-mutation.test.ts
 *
 * FUZZ_BUDGET_MS bounds the wall-clock time of each fuzz loop (default 120 s);
 * running out of budget before the iteration count is reached is a failure.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { itemToJson, renderItem, renderMessage, renderPayloads } from '../../src/cli/render.ts';
import { PcapError, readCapture, writePcap, writePcapng } from '../../src/node/pcap.ts';
import { classifyDatagram, markerStyleFor } from '../../src/node/udp-framing.ts';
import { DecodeError, Limits } from '../../src/wire/errors.ts';
import { ExchangeType, PayloadType } from '../../src/wire/iana.ts';
import { decodeMessage, encodeMessage, type IkeMessageInput } from '../../src/wire/message.ts';
import { decodePayloadChain, encodePayloadChain, type Payload } from '../../src/wire/payload.ts';
import { saKeysOf, wrapKeysOf } from '../../src/wire/wrapped-key.ts';
import * as samples from '../helpers/sample-messages.ts';
import { arbMessage, arbPayloadChain } from '../wire/arbitraries.ts';
import { arbGsaPayload, arbKdPayload } from '../wire/arbitraries-group.ts';
import { envInt, fuzzSeed, layoutOf, memorySnapshot, mutate, Prng, type Seed } from './mutate.ts';

const SEED = fuzzSeed();
const ITERATIONS = envInt('FUZZ_ITERATIONS', 100_000);
const PCAP_ITERATIONS = envInt('FUZZ_PCAP_ITERATIONS', ITERATIONS);
const BUDGET_MS = envInt('FUZZ_BUDGET_MS', 120_000);
/** Growth allowed over the run; a decoder that allocated from attacker lengths would blow far past it. */
const MEMORY_BOUND = 256 * 1024 * 1024;
/** One input taking this long is treated as a hang. */
const SLOW_INPUT_MS = 1000;

const groupExtras = [arbGsaPayload, arbKdPayload] as const;

function messageSeed(name: string, m: IkeMessageInput): Seed {
  const bytes = encodeMessage(m);
  return { name, bytes, layout: layoutOf(bytes, 28) };
}

function chainSeed(name: string, payloads: readonly Payload[]): Seed & { firstType: number } {
  const { firstType, bytes } = encodePayloadChain(payloads);
  return { name, bytes, firstType, layout: layoutOf(bytes, 0) };
}

/** Group exchanges need their exchange type in the header for realism; the decoder does not care. */
function withExchange(m: IkeMessageInput, exchangeType: number): IkeMessageInput {
  return { ...m, header: { ...m.header, exchangeType } };
}

function buildSeeds(): { messages: Seed[]; chains: (Seed & { firstType: number })[] } {
  const messages: Seed[] = [
    messageSeed('IKE_SA_INIT request', samples.ikeSaInitRequest()),
    messageSeed('IKE_SA_INIT response', samples.ikeSaInitResponse()),
    messageSeed('GSA_AUTH request', samples.gsaAuthRequest()),
    messageSeed('GSA_AUTH response', samples.gsaAuthResponse()),
    messageSeed('GSA_AUTH cleartext prefix', samples.gsaAuthWithCleartextPrefix()),
    messageSeed('GSA_AUTH response plain', samples.gsaAuthResponsePlain()),
    messageSeed('GSA_REKEY', samples.gsaRekey()),
  ];
  const exchanges = [ExchangeType.IKE_AUTH, ExchangeType.GSA_AUTH, ExchangeType.GSA_REGISTRATION, ExchangeType.GSA_REKEY];
  fc.sample(arbMessage(), { seed: SEED, numRuns: 40 }).forEach((m, i) =>
    messages.push(messageSeed(`arbMessage[${i}]`, withExchange(m, exchanges[i % exchanges.length]!))),
  );
  fc.sample(arbMessage({ extra: groupExtras }), { seed: SEED ^ 0x5a5a, numRuns: 40 }).forEach((m, i) =>
    messages.push(messageSeed(`arbGroupMessage[${i}]`, withExchange(m, exchanges[i % exchanges.length]!))),
  );
  const chains = [
    chainSeed('GSA_AUTH request inner', samples.gsaAuthRequestInner()),
    chainSeed('GSA_AUTH response inner', samples.gsaAuthResponseInner()),
    chainSeed('GSA_REKEY inner', [samples.gsaPayload(), samples.kdPayload()]),
  ];
  fc.sample(arbPayloadChain({ extra: groupExtras }), { seed: SEED ^ 0xa5a5, numRuns: 40 }).forEach((p, i) => {
    if (p.length > 0) chains.push(chainSeed(`arbChain[${i}]`, p));
  });
  return {
    messages: messages.filter((s) => s.bytes.length <= Limits.maxMessage),
    chains: chains.filter((s) => s.bytes.length <= Limits.maxMessage),
  };
}

/** What the decoded value offers beyond the chain: wrapped keys inside KD. Only DecodeError may escape. */
function exerciseNested(payloads: readonly Payload[]): void {
  for (const p of payloads) {
    if ('unknown' in p || p.type !== PayloadType.KD) continue;
    for (const bag of p.keyBags) {
      try {
        if (bag.kind === 'group') saKeysOf(bag);
        else wrapKeysOf(bag);
      } catch (e) {
        if (!(e instanceof DecodeError)) throw e;
      }
    }
  }
}

class FuzzFailure extends Error {}

interface RunStats {
  executed: number;
  decoded: number;
  rejected: number;
  elapsedMs: number;
  budgetExhausted: boolean;
  maxHeapGrowth: number;
  maxArrayBufferGrowth: number;
  slowest: number;
}

/**
 * Runs `check` over `iterations` mutated inputs within the budget. `check`
 * returns true for a decoded value, false for an accepted rejection, and
 * throws for anything else.
 */
function fuzzLoop(
  label: string,
  seeds: readonly Seed[],
  iterations: number,
  check: (seedIndex: number, input: Buffer) => boolean,
): RunStats {
  const rng = new Prng(SEED);
  const start = performance.now();
  const base = memorySnapshot();
  const stats: RunStats = {
    executed: 0,
    decoded: 0,
    rejected: 0,
    elapsedMs: 0,
    budgetExhausted: false,
    maxHeapGrowth: 0,
    maxArrayBufferGrowth: 0,
    slowest: 0,
  };
  for (let i = 0; i < iterations; i++) {
    const seedIndex = rng.int(seeds.length);
    const seed = seeds[seedIndex]!;
    const { bytes, ops } = mutate(rng, seed, seeds);
    const t0 = performance.now();
    try {
      if (check(seedIndex, bytes)) stats.decoded++;
      else stats.rejected++;
    } catch (e) {
      const what = e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : String(e);
      throw new FuzzFailure(
        `${label}: input ${i} (seed ${SEED}, FUZZ_SEED=${SEED} reproduces) from "${seed.name}" via [${ops.join(', ')}]\n` +
          `input hex: ${bytes.toString('hex')}\n${what}`,
      );
    }
    const dt = performance.now() - t0;
    if (dt > stats.slowest) stats.slowest = dt;
    if (dt > SLOW_INPUT_MS) {
      throw new FuzzFailure(`${label}: input ${i} took ${dt.toFixed(0)} ms (seed ${SEED}); hex: ${bytes.toString('hex')}`);
    }
    stats.executed++;
    if ((i & 0x3ff) === 0) {
      const m = memorySnapshot();
      stats.maxHeapGrowth = Math.max(stats.maxHeapGrowth, m.heapUsed - base.heapUsed);
      stats.maxArrayBufferGrowth = Math.max(stats.maxArrayBufferGrowth, m.arrayBuffers - base.arrayBuffers);
      if (performance.now() - start > BUDGET_MS) {
        stats.budgetExhausted = true;
        break;
      }
    }
  }
  stats.elapsedMs = performance.now() - start;
  const rate = Math.round(stats.executed / (stats.elapsedMs / 1000));
  console.log(
    `# ${label}: seed ${SEED}, ${stats.executed} inputs in ${stats.elapsedMs.toFixed(0)} ms (${rate}/s), ` +
      `${stats.decoded} decoded, ${stats.rejected} rejected, slowest ${stats.slowest.toFixed(2)} ms, ` +
      `heap +${(stats.maxHeapGrowth / 1048576).toFixed(1)} MiB, arrayBuffers +${(stats.maxArrayBufferGrowth / 1048576).toFixed(1)} MiB`,
  );
  return stats;
}

function assertRun(stats: RunStats, iterations: number): void {
  assert.ok(
    !stats.budgetExhausted && stats.executed >= iterations,
    `only ${stats.executed} of ${iterations} inputs ran within the ${BUDGET_MS} ms budget (seed ${SEED}): the decoder is too slow`,
  );
  assert.ok(stats.maxHeapGrowth < MEMORY_BOUND, `heap grew by ${stats.maxHeapGrowth} octets (seed ${SEED})`);
  assert.ok(stats.maxArrayBufferGrowth < MEMORY_BOUND, `array buffers grew by ${stats.maxArrayBufferGrowth} octets (seed ${SEED})`);
}

describe(`wire mutation fuzz (seed ${SEED}, FUZZ_SEED to reproduce)`, () => {
  const { messages, chains } = buildSeeds();

  it('every seed is valid before mutation', () => {
    for (const s of messages) assert.doesNotThrow(() => decodeMessage(s.bytes), s.name);
    for (const s of chains) assert.doesNotThrow(() => decodePayloadChain(s.firstType, s.bytes), s.name);
  });

  it(`decodeMessage: ${ITERATIONS} mutated messages end in a value or a DecodeError`, () => {
    let n = 0;
    const stats = fuzzLoop('decodeMessage', messages, ITERATIONS, (_i, input) => {
      let m;
      try {
        m = decodeMessage(input);
      } catch (e) {
        if (e instanceof DecodeError) return false;
        throw e;
      }
      // Accepted input must be representable: re-encode and decode back to the same value.
      // Only the header Length may differ: data the decoder drops (e.g. of notifies whose
      // data "MUST be ignored") is not re-encoded.
      const again = decodeMessage(encodeMessage(m));
      assert.deepStrictEqual(
        { ...again, header: { ...again.header, length: 0 } },
        { ...m, header: { ...m.header, length: 0 } },
        'decode(encode(decode(x))) differs from decode(x)',
      );
      exerciseNested(m.payloads);
      // The CLI renderer must cope with anything the decoder accepts (sampled: it is slower).
      if ((n++ & 7) === 0) {
        renderMessage(m);
        JSON.stringify(itemToJson({ origin: { source: 'fuzz' }, result: { kind: 'ike', message: m, octets: input.length } }));
      }
      return true;
    });
    assertRun(stats, ITERATIONS);
  });

  it(`decodePayloadChain: ${ITERATIONS} mutated decrypted chains (GSA/KD inside SK) end in a value or a DecodeError`, () => {
    let n = 0;
    const stats = fuzzLoop('decodePayloadChain', chains, ITERATIONS, (i, input) => {
      const firstType = chains[i]!.firstType;
      let payloads;
      try {
        payloads = decodePayloadChain(firstType, input, 'SK');
      } catch (e) {
        if (e instanceof DecodeError) return false;
        throw e;
      }
      const again = encodePayloadChain(payloads);
      assert.deepStrictEqual(decodePayloadChain(again.firstType, again.bytes, 'SK'), payloads);
      exerciseNested(payloads);
      if ((n++ & 7) === 0) renderPayloads(payloads);
      return true;
    });
    assertRun(stats, ITERATIONS);
  });

  it('hostile lengths: a 64 KiB message whose length fields claim 4 GiB or 64 KiB allocates nothing large', () => {
    const size = Limits.maxMessage;
    const variants: [string, Buffer][] = [];
    // Header Length claims 4 GiB; every 16-bit field 0xffff.
    const huge = Buffer.alloc(size, 0xff);
    encodeMessage(samples.gsaAuthResponsePlain()).copy(huge, 0, 0, 28);
    huge.writeUInt32BE(0xffffffff, 24);
    variants.push(['header length 4 GiB', huge]);
    // A consistent header (Length = 64 KiB) over payloads whose lengths all claim the maximum.
    const nested = Buffer.alloc(size, 0xff);
    encodeMessage(samples.gsaAuthResponsePlain()).copy(nested, 0, 0, 28);
    nested[16] = PayloadType.GSA;
    nested.writeUInt32BE(size, 24);
    variants.push(['payload lengths 0xffff', nested]);
    // Same with a KD payload whose key bags and attributes claim 0xffff.
    const kd = Buffer.from(nested);
    kd[16] = PayloadType.KD;
    kd.writeUInt16BE(0xffff, 28 + 2);
    variants.push(['KD lengths 0xffff', kd]);
    // A valid-looking SA chain whose proposal/transform/attribute lengths are maximal.
    const sa = Buffer.from(nested);
    sa[16] = PayloadType.SA;
    variants.push(['SA lengths 0xffff', sa]);

    for (const [name, buf] of variants) {
      const before = memorySnapshot();
      const t0 = performance.now();
      for (let i = 0; i < 200; i++) {
        assert.throws(() => decodeMessage(buf), DecodeError, name);
        assert.throws(() => decodePayloadChain(buf[16]!, buf.subarray(28)), DecodeError, name);
      }
      const dt = performance.now() - t0;
      const after = memorySnapshot();
      assert.ok(dt < 2000, `${name}: 400 decodes took ${dt.toFixed(0)} ms`);
      // 400 decodes that allocated from the claimed lengths would need >= 400 * 64 KiB.
      assert.ok(after.arrayBuffers - before.arrayBuffers < 16 * 1024 * 1024, `${name}: array buffers grew`);
    }
  });

  it('render and JSON output of every seed', () => {
    for (const s of messages) {
      const m = decodeMessage(s.bytes);
      const text = renderItem({ origin: { source: s.name }, result: { kind: 'ike', message: m, octets: s.bytes.length } });
      assert.ok(text.length > 0);
    }
  });
});

describe(`pcap mutation fuzz (seed ${SEED}, FUZZ_SEED to reproduce)`, () => {
  const exchange = samples.registrationExchange();
  const packets = exchange.map((m, i) => ({
    src: m.from === 'gm' ? samples.GM : samples.GCKS,
    dst: m.from === 'gm' ? samples.GCKS : samples.GM,
    srcPort: i === 3 ? 4500 : 848,
    dstPort: i === 3 ? 4500 : 848,
    payload: i === 3 ? Buffer.concat([Buffer.alloc(4), m.message]) : m.message,
    time: 1_700_000_000 + i,
  }));
  const v6 = packets.map((p) => ({ ...p, src: '2001:db8::1', dst: '2001:db8::2' }));
  const files: [string, Buffer][] = [
    ['pcap ethernet LE', writePcap(packets)],
    ['pcap raw BE ns', writePcap(packets, { link: 'raw', bigEndian: true, nanosecond: true })],
    ['pcap ethernet IPv6', writePcap(v6)],
    ['pcapng LE', writePcapng(packets)],
    ['pcapng BE raw', writePcapng(v6, { bigEndian: true, link: 'raw' })],
  ];
  // For pcap files the "length fields" are record/block lengths; the heuristic finds them well enough.
  const seeds: Seed[] = files.map(([name, bytes]) => ({ name, bytes, layout: layoutOf(bytes, 0) }));

  it(`readCapture: ${PCAP_ITERATIONS} mutated captures end in datagrams or a PcapError`, () => {
    const stats = fuzzLoop('readCapture', seeds, PCAP_ITERATIONS, (_i, input) => {
      let cap;
      try {
        cap = readCapture(input);
      } catch (e) {
        if (e instanceof PcapError) return false;
        throw e;
      }
      // Everything downstream of the reader must hold up too.
      for (const d of cap.datagrams) {
        const style = markerStyleFor(d.srcPort, d.dstPort);
        if (style === undefined) continue;
        const c = classifyDatagram(d.payload, style);
        if (c.kind !== 'ike') continue;
        try {
          decodeMessage(c.message);
        } catch (e) {
          if (!(e instanceof DecodeError)) throw e;
        }
      }
      return true;
    });
    assertRun(stats, PCAP_ITERATIONS);
  });

  it('hostile record lengths allocate nothing large', () => {
    const pcap = writePcap(packets);
    pcap.writeUInt32LE(0xffffffff, 24 + 8);
    assert.throws(() => readCapture(pcap), PcapError);
    const ng = writePcapng(packets);
    // Second block (IDB) total length: claim nearly 4 GiB.
    const idbAt = ng.readUInt32LE(4);
    ng.writeUInt32LE(0xfffffffc, idbAt + 4);
    assert.throws(() => readCapture(ng), PcapError);
  });
});
