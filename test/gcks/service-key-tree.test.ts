/**
 * GcksService with an LKH key tree: only registrations the key server
 * accepts place a member in the tree (and, with `rekeyOnJoin`, rekey the
 * group). Driven through the simulated network with real members.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { loadGcksConfig } from '../../src/gcks/config.ts';
import type { GcksService, GcksServiceEvent } from '../../src/gcks/service.ts';
import type { GmConfig } from '../../src/gm/config.ts';
import type { GmService, GmServiceEvent } from '../../src/gm/service.ts';
import { KwaId } from '../../src/wire/iana.ts';
import { SimClock, SimNetwork, Simulation } from '../sim/network.ts';
import { EPOCH, gmConfig, inSync, makeGcks, makeGm, PSK, ServiceNode, type GcksNode, type GmNode } from '../registration/fixtures.ts';

const GCKS_EP = { address: '10.0.0.1', port: 500 };
const GROUP = 'mc';

/** One multicast group with a key tree; the key server also accepts a 128-bit KWK for the registration IKE SA. */
const GCKS_YAML = `
identity: "@gcks.example"
credentials:
  psks:
    - member: any
      secret: "${PSK}"
ike:
  keyWrap: [kw_5649_256, kw_5649_128]
groups:
  - name: ${GROUP}
    id: {type: ID_KEY_ID, value: video}
    capacity: 10
    members: {any: true}
    dataSecurity:
      - destination: {address: 239.1.1.1, protocol: udp, port: 5000}
    rekey:
      destination: {address: 239.0.0.9, port: 848}
      signingKey: /unused/rekey.pem
`;

/** An SAg that cannot carry the group's AES-GCM-16/256 TEK. */
const AES128_ONLY = '      rekey: {authentication: [signature]}\n      dataSecurity: {encryption: [aes128gcm16]}';

interface World {
  readonly sim: Simulation;
  readonly gcks: GcksNode;
  member(name: string, opts?: { accept?: string; ikeKeyWrap?: readonly number[] }): GmNode;
}

function world(opts: { capacity?: number } = {}): World {
  const sim = new Simulation(new SimNetwork({ clock: new SimClock(EPOCH), latency: 5 }));
  const config = loadGcksConfig(GCKS_YAML.replace('capacity: 10', `capacity: ${opts.capacity ?? 10}`), 'gcks.yaml');
  const gcks: GcksNode = sim.add(new ServiceNode<GcksService, GcksServiceEvent>(makeGcks(config, { rekey: { rekeyOnJoin: true } }), GCKS_EP));
  let n = 0;
  return {
    sim,
    gcks,
    member(name, opts = {}) {
      const base = gmConfig(`${name}@example.org`, [GCKS_EP], [opts.accept === undefined ? 'video' : { id: 'video', accept: opts.accept }]);
      const config: GmConfig = opts.ikeKeyWrap ? { ...base, ike: { ...base.ike, keyWrap: [...opts.ikeKeyWrap] } } : base;
      const node: GmNode = sim.add(new ServiceNode<GmService, GmServiceEvent>(makeGm(config), { address: `10.0.1.${++n}`, port: 500 }));
      sim.emit(node, node.take(node.service.start(sim.now)));
      return node;
    },
  };
}

function tree(w: World): { members: number; leaf: (name: string) => number | undefined } {
  const planner = w.gcks.service.planner(GROUP);
  assert.ok(planner?.keyTree, 'the group has a key tree');
  const members = [...w.gcks.service.members(GROUP)];
  return {
    members: planner.keyTree.memberCount,
    leaf: (name) => {
      const m = members.find((x) => x.member === `${name}@example.org`);
      return m && planner.leafOf(m.memberId);
    },
  };
}

const joinRekeys = (w: World): number => w.gcks.of('rekey-sent').filter((e) => e.reason === 'join').length;

/** `a` registers; the refused members try (and try again after their back-off); the tree still holds `a` alone and nothing was rekeyed. */
function refusedWhileAIsAlone(w: World, refused: readonly { readonly node: GmNode; readonly name: string; readonly reason: RegExp }[], a: GmNode, leafOfA: number): void {
  const depth = w.gcks.service.planner(GROUP)!.keyTree!.depth;
  w.sim.run(w.sim.now + 20_000);
  for (const r of refused) {
    const reasons = w.gcks.of('registration-rejected').filter((e) => e.member === `${r.name}@example.org`).map((e) => `${e.notify}: ${e.reason}`);
    assert.ok(reasons.length >= 2, `${r.name} tried again: ${reasons.length}`);
    assert.ok(reasons.every((x) => r.reason.test(x)), reasons.join('\n'));
    assert.equal([...r.node.service.saTable().groups].length, 0, `${r.name} holds no keys`);
  }
  assert.equal(tree(w).members, 1, 'no leaf for a refused member');
  assert.equal(w.gcks.service.planner(GROUP)!.keyTree!.depth, depth);
  assert.equal(joinRekeys(w), 0, 'no join rekey for a refused member');
  assert.deepEqual(w.gcks.service.members(GROUP).map((m) => m.member), ['a@example.org']);
  assert.equal(tree(w).leaf('a'), leafOfA);
  assert.ok(inSync(w.gcks.service, a.service, GROUP), 'a keeps the current keys');
}

/** `a` registers and gets a leaf. */
function firstMember(w: World): { a: GmNode; leafOfA: number } {
  const a = w.member('a');
  w.sim.run(EPOCH + 2_000);
  assert.ok(inSync(w.gcks.service, a.service, GROUP), 'a registered');
  assert.equal(tree(w).members, 1);
  const leafOfA = tree(w).leaf('a');
  assert.ok(leafOfA !== undefined);
  return { a, leafOfA };
}

/** A good member after the refusals gets a leaf of its own, and `rekeyOnJoin` rekeys once for it. */
function goodMemberStillJoins(w: World, leafOfA: number): void {
  const b = w.member('b');
  w.sim.run(w.sim.now + 2_000);
  assert.ok(inSync(w.gcks.service, b.service, GROUP), 'b registered');
  assert.equal(tree(w).members, 2);
  const leafOfB = tree(w).leaf('b');
  assert.notEqual(leafOfB, undefined);
  assert.notEqual(leafOfB, leafOfA);
  assert.equal(joinRekeys(w), 1, 'rekeyOnJoin: one rekey, for b');
}

describe('GcksService: refused registrations leave the key tree alone', () => {
  it('an SAg that cannot carry the policy: NO_PROPOSAL_CHOSEN, no leaf, no join rekey; a good member still joins', () => {
    const w = world();
    const { a, leafOfA } = firstMember(w);
    const sag = w.member('sag', { accept: AES128_ONLY });
    refusedWhileAIsAlone(w, [{ node: sag, name: 'sag', reason: /^NO_PROPOSAL_CHOSEN: SAg: / }], a, leafOfA);
    goodMemberStillJoins(w, leafOfA);
  });

  it('a registration IKE SA with a weak key wrap: NO_PROPOSAL_CHOSEN, no leaf, no join rekey; a good member still joins', () => {
    const w = world();
    const { a, leafOfA } = firstMember(w);
    const weak = w.member('weak', { ikeKeyWrap: [KwaId.KW_5649_128] });
    refusedWhileAIsAlone(w, [{ node: weak, name: 'weak', reason: /^NO_PROPOSAL_CHOSEN: .*128-bit key wrap key is shorter/ }], a, leafOfA);
    goodMemberStillJoins(w, leafOfA);
  });

  it('a full group: REGISTRATION_FAILED, no leaf, no join rekey', () => {
    const w = world({ capacity: 1 });
    const { a, leafOfA } = firstMember(w);
    const late = w.member('late');
    refusedWhileAIsAlone(w, [{ node: late, name: 'late', reason: /^REGISTRATION_FAILED: group is full/ }], a, leafOfA);
  });
});
