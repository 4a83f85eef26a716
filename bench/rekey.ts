/**
 * GSA_REKEY size and speed with LKH (issue 5): for groups of 1k, 10k, 100k
 * and 1M members, the GSA_REKEY that excludes 1 and 10 members: its size on
 * the wire (IKE message octets, unfragmented), the time to build it (tree
 * update, key wrapping, KD, Ed25519 signature, encryption) and the time a
 * member takes to process it (decrypt, ICV, signature, Key Download), next
 * to the size a flat rekey would need (one wrapped KEK per remaining member).
 *
 *   npx tsx bench/rekey.ts [--sizes 1000,10000] [--arities 2,3] [--repeat 5]
 *
 * Arity 3 is the default tree (DEFAULT_LKH_ARITY); arity 2 is shown beside
 * it because with 52-octet WRAP_KEYs the ternary tree sends the fewest
 * octets (about arity * log_arity(n) wrapped keys, smallest near arity e).
 *
 * Prints a table and writes bench/results/rekey.json.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRekeySigner } from '../src/crypto/auth.ts';
import { createSkCipher } from '../src/crypto/cipher.ts';
import { rekeySaKeymatLength, rekeySaSkKeys, splitRekeySaKeys, type RekeySaAlgorithms } from '../src/crypto/keys.ts';
import { wrappedLength } from '../src/crypto/keywrap.ts';
import { systemRandom } from '../src/crypto/random.ts';
import { SignatureAlgorithms } from '../src/crypto/signature.ts';
import { LkhTree } from '../src/gcks/lkh.ts';
import { planMembershipRekey } from '../src/gcks/membership-rekey.ts';
import { buildRekey } from '../src/gcks/rekey-message.ts';
import { keyDownloadFrom, WorkingKeyPath } from '../src/gm/key-path.ts';
import { RekeyReceiver, type RekeySaReceiver } from '../src/gm/rekey-receiver.ts';
import { tv } from '../src/wire/attributes.ts';
import { keyLifetimeAttribute, type SaPolicy } from '../src/wire/gsa.ts';
import { EncrId, KwaId, ProtocolId, TransformAttr, TransformType, TsType } from '../src/wire/iana.ts';

const KWA = KwaId.KW_5649_256;
const ALG: RekeySaAlgorithms = { encr: EncrId.AES_GCM_16, encrKeyBits: 256, kwa: KWA };
const KEYMAT = rekeySaKeymatLength(ALG);

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const SIZES = (arg('--sizes') ?? '1000,10000,100000,1000000').split(',').map(Number);
const ARITIES = (arg('--arities') ?? '3,2').split(',').map(Number);
const REPEAT = Number(arg('--repeat') ?? 5);
const EXCLUDE = [1, 10];

function kekPolicy(spi: Buffer): SaPolicy {
  const ts = (a: string) => ({ type: TsType.TS_IPV4_ADDR_RANGE, ipProtocol: 17, startPort: 848, endPort: 848, startAddress: a, endAddress: a });
  return {
    kind: 'sa',
    protocol: ProtocolId.GIKE_UPDATE,
    spi,
    source: ts('192.0.2.1'),
    destination: ts('239.192.0.1'),
    transforms: [
      { type: TransformType.ENCR, id: EncrId.AES_GCM_16, attributes: [tv(TransformAttr.KEY_LENGTH, 256)] },
      { type: TransformType.KWA, id: KWA, attributes: [] },
    ],
    attributes: [keyLifetimeAttribute(3600)],
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

interface Row {
  arity: number;
  members: number;
  excluded: number;
  treeDepth: number;
  wrappedKeys: number;
  lkhOctets: number;
  flatOctets: number;
  buildMs: number;
  processMs: number;
  treeBuildS: number;
  heapMB: number;
}

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const signer = createRekeySigner(privateKey, SignatureAlgorithms.ED25519);
const rows: Row[] = [];

for (const arity of ARITIES) for (const n of SIZES) {
  const t0 = performance.now();
  const tree = new LkhTree({ kwa: KWA, arity, random: systemRandom });
  for (let i = 0; i < n; i++) tree.addMember();
  tree.takeUndeliveredWrapKeys();
  const treeBuildS = (performance.now() - t0) / 1000;
  const heapMB = (process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers) / 2 ** 20;

  for (const e of EXCLUDE) {
    const sizes: number[] = [];
    const builds: number[] = [];
    const processes: number[] = [];
    let wrapped = 0;
    for (let r = 0; r < REPEAT; r++) {
      const keymat = systemRandom.bytes(KEYMAT);
      const spi = systemRandom.bytes(16);
      const cipher = createSkCipher(ALG, rekeySaSkKeys(splitRekeySaKeys(keymat, ALG)));
      // Excluded members spread over the tree; the member measured is the first one's neighbour (most keys to unwrap).
      const excluded: number[] = [];
      while (excluded.length < e) {
        const leaf = Math.floor(Math.random() * n);
        if (tree.isMember(leaf) && !excluded.includes(leaf)) excluded.push(leaf);
      }
      const sibling = excluded[0]! % arity === 0 ? excluded[0]! + 1 : excluded[0]! - 1;
      const neighbour = tree.isMember(sibling) && !excluded.includes(sibling) ? sibling : undefined;
      const member = neighbour ?? [...Array(n).keys()].find((l) => tree.isMember(l) && !excluded.includes(l))!;
      const path = new WorkingKeyPath(KWA, tree.pathKeys(member));
      const next = systemRandom.bytes(KEYMAT);

      const b0 = performance.now();
      const plan = planMembershipRekey({ tree, exclude: excluded, kek: { policy: kekPolicy(systemRandom.bytes(16)), keymat: next }, teks: [] });
      const built = buildRekey({ sa: { spi, cipher, signer }, messageId: r, ...plan.first });
      builds.push(performance.now() - b0);
      sizes.push(built.messageLength);
      wrapped = keyDownloadFrom(plan.first.kd!).wrapKeys.length + keyDownloadFrom(plan.first.kd!).saKeys.length;

      const view: RekeySaReceiver = {
        spi,
        cipher: createSkCipher(ALG, rekeySaSkKeys(splitRekeySaKeys(keymat, ALG))),
        auth: { kind: 'signature', publicKey, algorithmIdentifier: signer.algorithmIdentifier },
        initialMessageId: 0,
        lastMessageId: undefined,
      };
      const receiver = new RekeyReceiver();
      const defaultKwk = { kwa: KWA, key: splitRekeySaKeys(keymat, ALG).gskW };
      for (let i = 0; i < 20; i++) {
        const p0 = performance.now();
        const receipt = receiver.receive(built.datagrams[0]!, () => view, 0);
        if (receipt.status !== 'accepted') throw new Error(`member rejected the rekey: ${JSON.stringify(receipt)}`);
        const out = path.apply(keyDownloadFrom(receipt.kd!), defaultKwk);
        if (out.status !== 'updated' || !out.saKeymat?.equals(next)) throw new Error('member did not get the new KEK');
        processes.push(performance.now() - p0);
      }
    }
    const saKeyAttribute = 4 + 8 + wrappedLength(KWA, KEYMAT);
    rows.push({
      arity,
      members: n,
      excluded: e,
      treeDepth: tree.depth,
      wrappedKeys: wrapped,
      lkhOctets: median(sizes),
      // Same message, but the KD holds one SA_KEY per remaining member instead of the tree's keys.
      flatOctets: median(sizes) - wrapped * (4 + 8 + wrappedLength(KWA, 32)) + (n - e) * saKeyAttribute,
      buildMs: median(builds),
      processMs: median(processes),
      treeBuildS,
      heapMB,
    });
  }
}

const fmt = (x: number, d = 2): string => x.toFixed(d);
console.log('GSA_REKEY excluding members with LKH (AES-KWP-256 node keys, AES-GCM-256 Rekey SA, Ed25519 AUTH)\n');
console.log('arity  members   excl  depth  wrapped  LKH octets  flat octets   build ms  process ms  (tree build s, heap MB)');
for (const r of rows) {
  console.log(
    `${String(r.arity).padStart(5)}  ${String(r.members).padStart(7)}  ${String(r.excluded).padStart(5)}  ${String(r.treeDepth).padStart(5)}  ${String(r.wrappedKeys).padStart(7)}  ${String(r.lkhOctets).padStart(10)}  ${String(r.flatOctets).padStart(11)}  ${fmt(r.buildMs).padStart(9)}  ${fmt(r.processMs, 3).padStart(10)}  (${fmt(r.treeBuildS, 1)}, ${fmt(r.heapMB, 0)})`,
  );
}
const out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'rekey.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), node: process.version, rows }, null, 2) + '\n');
console.log(`\nwrote ${out}`);
