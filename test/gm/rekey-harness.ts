/**
 * A key server group with its rekey planner and members that follow it,
 * in memory with a simulated clock: registrations go through
 * registerMember and the wire (encode/decode), rekeys through the planner's
 * actions, delivered to each member's RekeyFollower.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { deterministicRandom, type RandomSource } from '../../src/crypto/random.ts';
import { loadGcksConfig, type GroupConfig } from '../../src/gcks/config.ts';
import { memoryCounterReservation } from '../../src/gcks/counters.ts';
import { Group } from '../../src/gcks/group.ts';
import { GroupDirectory, registerMember } from '../../src/gcks/registration.ts';
import {
  RekeyPlanner,
  withWorkingKeyPath,
  type PlannerOutput,
  type RekeyAction,
  type RekeyPlannerOptions,
} from '../../src/gcks/rekey-planner.ts';
import { rekeySigningKeyFrom, type RekeySigningKey } from '../../src/gcks/signing-key.ts';
import type { MemberRole } from '../../src/gm/config.ts';
import { openRegistrationResponse } from '../../src/gm/keys.ts';
import { RekeyFollower, type FollowerEvent } from '../../src/gm/rekey-follower.ts';
import type { Identity } from '../../src/ike/identity.ts';
import { ExchangeType, IdType, KwaId } from '../../src/wire/iana.ts';
import { decodePayloadChain, encodePayloadChain, type Payload } from '../../src/wire/payload.ts';
import { gskWFor, NOW } from '../gcks/fixtures.ts';

export { NOW };

export interface GroupShape {
  readonly rekey: 'signature' | 'implicit' | 'inband';
  readonly atd?: number;
  readonly dtd?: number;
  readonly senderIdBits?: number;
  readonly tekLifetime?: number;
  readonly kekLifetime?: number;
  readonly encryption?: string;
}

export function groupConfig(shape: GroupShape): GroupConfig {
  const delays = [shape.atd === undefined ? '' : `    activationDelay: ${shape.atd}`, shape.dtd === undefined ? '' : `    deactivationDelay: ${shape.dtd}`]
    .filter((l) => l !== '')
    .join('\n');
  const rekey =
    shape.rekey === 'inband'
      ? '    rekey: inband'
      : `    rekey:
      destination: {address: 239.0.0.1, port: 848}
      source: {address: 192.0.2.1, port: 848}
      authentication: ${shape.rekey}
      lifetime: ${shape.kekLifetime ?? 7200}
${shape.rekey === 'signature' ? '      signingKey: /etc/rekey.pem' : ''}`;
  const yaml = `
identity: "@gcks.example"
credentials:
  psks:
    - member: any
      secretHex: "00112233445566778899aabbccddeeff"
groups:
  - name: g
    id: {type: ID_KEY_ID, value: g}
    capacity: 100
    members: {any: true}
    senders: {any: true}
    senderIdBits: ${shape.senderIdBits ?? 16}
    maxSenderIdsPerMember: 1
${delays}
    dataSecurity:
      - destination: {address: 239.1.1.1, protocol: udp, port: 5000}
        lifetime: ${shape.tekLifetime ?? 3600}
${shape.encryption ? `        encryption: ${shape.encryption}\n` : ''}${rekey}
`;
  return loadGcksConfig(yaml, 'rekey-harness.yaml').groups[0]!;
}

export function newSigningKey(): RekeySigningKey {
  return rekeySigningKeyFrom(generateKeyPairSync('ed25519').privateKey);
}

export interface Member {
  readonly name: string;
  readonly id: Identity;
  readonly role: MemberRole;
  readonly kwa: number;
  gskW: Buffer;
  follower: RekeyFollower;
  readonly events: FollowerEvent[];
}

export class World {
  readonly group: Group;
  readonly planner: RekeyPlanner;
  readonly directory: GroupDirectory;
  readonly members = new Map<string, Member>();
  readonly rng: RandomSource;
  readonly sent: RekeyAction[] = [];
  now = NOW;

  constructor(
    config: GroupConfig,
    readonly signingKey: RekeySigningKey | undefined = config.rekey.kind === 'multicast' && config.rekey.authentication === 'signature' ? newSigningKey() : undefined,
    options: RekeyPlannerOptions = {},
    seed = 'world',
  ) {
    this.rng = deterministicRandom(seed);
    this.group = new Group(config, { counters: memoryCounterReservation(), rng: this.rng, signingKey: signingKey }, this.now);
    this.directory = new GroupDirectory([this.group]);
    this.planner = new RekeyPlanner(
      this.group,
      {
        rng: this.rng,
        inbandDelivery: (id) => {
          const m = [...this.members.values()].find((x) => x.id.data.equals(id.data));
          return m && { kwa: m.kwa, gskW: m.gskW };
        },
      },
      options,
      this.now,
    );
  }

  /** Registers through the real registration code and the wire; returns the member. */
  register(name: string, role: MemberRole = 'receiver'): Member {
    const id: Identity = { idType: IdType.ID_FQDN, data: Buffer.from(`${name}.example`) };
    const kwa = KwaId.KW_5649_256;
    const gskW = gskWFor(kwa, name);
    const admission = this.planner.admitMember(id, { kwa, gskW }, this.now);
    this.deliver(admission.output);
    const groupSender = role === 'receiver' ? undefined : 1;
    const outcome = registerMember(this.directory, {
      member: { id },
      groupId: this.group.config.id,
      groupSender,
      unicastKwa: kwa,
      gskW,
      exchange: ExchangeType.GSA_AUTH,
      now: this.now,
    });
    assert.equal(outcome.kind, 'registered', outcome.kind === 'rejected' ? outcome.reason : '');
    const payloads = wire(withWorkingKeyPath(outcome.payloads, admission.wrapKeys, ExchangeType.GSA_AUTH, groupSender));
    const material = openRegistrationResponse(payloads, { exchange: ExchangeType.GSA_AUTH, unicastKwa: kwa, gskW, groupSender });
    const follower = RekeyFollower.fromRegistration({ groupId: this.group.config.id, role, material, payloads, unicastKwa: kwa, gskW, now: this.now, rng: this.rng });
    const member: Member = { name, id, role, kwa, gskW, follower, events: [] };
    this.members.set(name, member);
    return member;
  }

  /**
   * Delivers actions: multicast datagrams to every member not in `drop`
   * (each transmission when `copies`, else the first only) at their send
   * times; inband payloads through the wire to their member.
   */
  deliver(output: PlannerOutput, options: { drop?: readonly string[]; copies?: boolean } = {}): void {
    const drop = new Set(options.drop ?? []);
    for (const action of output.actions) {
      this.sent.push(action);
      if (action.kind === 'multicast') {
        for (const t of options.copies ? action.sendAt : action.sendAt.slice(0, 1)) {
          this.advance(t);
          for (const m of this.members.values()) {
            if (drop.has(m.name)) continue;
            for (const d of action.datagrams) m.events.push(...m.follower.onDatagram(d, this.now));
          }
        }
      } else {
        this.advance(action.sendAt);
        for (const d of action.deliveries) {
          const m = [...this.members.values()].find((x) => x.id.data.equals(d.member.data));
          if (!m || drop.has(m.name)) continue;
          const result = m.follower.onInbandRekey(wire(d.payloads), this.now, { kwa: m.kwa, key: m.gskW });
          assert.deepEqual(result.response, []);
          m.events.push(...result.events);
        }
      }
    }
  }

  /** Moves the clock to `t`, running planner and follower deadlines on the way (planner actions delivered to all). */
  advance(t: number): void {
    for (let guard = 0; guard < 10_000; guard++) {
      const deadlines = [this.planner.nextDeadline(), ...[...this.members.values()].map((m) => m.follower.nextDeadline())].filter(
        (d): d is number => d !== undefined && d <= t,
      );
      if (deadlines.length === 0) break;
      const next = Math.max(this.now, Math.min(...deadlines));
      this.now = next;
      for (const m of this.members.values()) m.events.push(...m.follower.tick(this.now));
      if ((this.planner.nextDeadline() ?? Infinity) <= this.now) this.deliver(this.planner.tick(this.now));
    }
    this.now = Math.max(this.now, t);
  }

  member(name: string): Member {
    const m = this.members.get(name);
    assert.ok(m, `no member ${name}`);
    return m;
  }
}

/** Over the wire and back, as the engine would carry them. */
export function wire(payloads: readonly Payload[]): Payload[] {
  const { firstType, bytes } = encodePayloadChain([...payloads]);
  return decodePayloadChain(firstType, bytes);
}
