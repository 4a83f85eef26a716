/**
 * Shared pieces of the registration tests (simulation, real sockets,
 * interop): a key server configuration with one group of each kind, member
 * configurations, certificates, and a SimNode wrapper for the services.
 */
import { generateKeyPairSync } from 'node:crypto';
import { strict as assert } from 'node:assert';
import { deterministicRandom } from '../../src/crypto/random.ts';
import { createSelfSignedCa, issueEndEntity, type IssuedCertificate } from '../../src/crypto/x509-builder.ts';
import { loadGcksConfig, type GcksConfig } from '../../src/gcks/config.ts';
import { GcksService, type GcksServiceDeps, type GcksServiceEvent } from '../../src/gcks/service.ts';
import { rekeySigningKeyFrom } from '../../src/gcks/signing-key.ts';
import { loadGmConfig, type GmConfig } from '../../src/gm/config.ts';
import { GmService, type GmServiceDeps, type GmServiceEvent } from '../../src/gm/service.ts';
import type { InstalledDataSecuritySa } from '../../src/gm/sa-table.ts';
import { formatIdentity } from '../../src/ike/identity.ts';
import type { DatagramEngine, Output } from '../../src/ike/io-types.ts';
import { isKekPolicy } from '../../src/wire/gsa.ts';
import { isGsaPayload, validateExchange } from '../../src/wire/validator.ts';
import type { Payload } from '../../src/wire/payload.ts';
import type { SimEndpoint, SimNode, SimOutput } from '../sim/network.ts';

export const EPOCH = Date.UTC(2025, 0, 1);
export const PSK = 'registration test shared secret';
export const FAST = { initialMs: 300, factor: 2, maxMs: 1000, maxTries: 2 } as const;

/**
 * video: multicast rekey with signed GSA_REKEY, capacity 3, some senders.
 * telemetry: implicit multicast rekey, transport mode, anyone.
 * small: inband rekey (no Rekey SA), AES-CBC + AH.
 * solo: capacity 1.
 * vip: only gm1 may join.
 */
export function gcksYaml(opts: { closeGrace?: boolean; psk?: boolean; certRule?: boolean; lifetime?: number } = {}): string {
  const lifetime = opts.lifetime ?? 3600;
  return `
identity: "@gcks.example"
credentials:
  psks:
    - member: "gm-bad@example.org"
      secret: "a different secret, sixteen+"
    - member: any
      secret: "${PSK}"
groups:
  - name: video
    id: {type: ID_KEY_ID, value: video}
    capacity: 3
    members:
      patterns: ["gm*@example.org"]${opts.certRule ? `
      certificates:
        - subject: {O: "gikev2 test"}` : ''}
    senders:
      ids: [gm1@example.org]
    maxSenderIdsPerMember: 4
    dataSecurity:
      - destination: {address: 239.1.1.1, protocol: udp, port: 5000}
        lifetime: ${lifetime}
      - destination: 239.1.1.2
        encryption: chacha20poly1305
        lifetime: ${lifetime}
    rekey:
      destination: {address: 239.0.0.1}
      signingKey: /unused/rekey.pem
      lifetime: ${Math.max(lifetime * 2, 60)}
  - name: telemetry
    id: "@telemetry.example"
    mode: transport
    members: {any: true}
    senders: {any: true}
    dataSecurity:
      - destination: {address: 239.3.3.3, protocol: udp, port: 6000}
    rekey:
      destination: {address: 239.0.0.3, port: 9848}
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
  - name: solo
    id: {type: ID_KEY_ID, value: solo}
    capacity: 1
    members: {any: true}
    dataSecurity:
      - destination: 239.4.4.4
    rekey:
      destination: {address: 239.0.0.4}
      authentication: implicit
  - name: vip
    id: {type: ID_KEY_ID, value: vip}
    members: {ids: [gm1@example.org]}
    dataSecurity:
      - destination: 239.5.5.5
    rekey:
      destination: {address: 239.0.0.5}
      authentication: implicit
`;
}

export function gcksConfig(opts: Parameters<typeof gcksYaml>[0] = {}): GcksConfig {
  return loadGcksConfig(gcksYaml(opts), 'gcks.yaml');
}

export const signingKey = rekeySigningKeyFrom(generateKeyPairSync('ed25519').privateKey);

export interface GroupSpec {
  readonly id: string;
  readonly role?: 'receiver' | 'sender' | 'both';
  readonly senderIds?: number;
  /** YAML of the accept: block (indented under the group). */
  readonly accept?: string;
}

export const GROUP_IDS: Readonly<Record<string, string>> = {
  video: '{type: ID_KEY_ID, value: video}',
  telemetry: '"@telemetry.example"',
  small: '{type: ID_IPV4_ADDR, value: 198.51.100.7}',
  solo: '{type: ID_KEY_ID, value: solo}',
  vip: '{type: ID_KEY_ID, value: vip}',
  unknown: '{type: ID_KEY_ID, value: no-such-group}',
};

/** Everything the key server's groups use: AEAD and AES-CBC, ESP and AH, signed and implicit rekeys. */
export const DEFAULT_ACCEPT = `      rekey: {authentication: [signature, implicit]}
      dataSecurity: {protocols: [esp, ah], encryption: [aes256gcm16, chacha20poly1305, aes256], integrity: [sha256]}`;

/** A member: `identity`, key servers (address:port) in priority order, groups. */
export function gmConfig(identity: string, servers: readonly { address: string; port: number }[], groups: readonly (string | GroupSpec)[], psk: string | 'certificate' = PSK): GmConfig {
  const lines = groups.map((g) => {
    const spec: GroupSpec = typeof g === 'string' ? { id: g } : g;
    const parts = [`  - id: ${GROUP_IDS[spec.id] ?? spec.id}`];
    if (spec.role) parts.push(`    role: ${spec.role}`);
    if (spec.senderIds !== undefined) parts.push(`    senderIds: ${spec.senderIds}`);
    parts.push(`    accept:\n${spec.accept ?? DEFAULT_ACCEPT}`);
    return parts.join('\n');
  });
  const yaml = `identity: ${identity}
credentials: ${psk === 'certificate' ? '{certificate: gm.pem, privateKey: gm.key}' : `{psk: {secret: "${psk}"}}`}
keyServers:
${servers.map((s) => `  - {address: ${s.address}, port: ${s.port}, id: "@gcks.example"}`).join('\n')}
groups:
${lines.join('\n')}
`;
  return loadGmConfig(yaml, `${identity}.yaml`);
}

export interface Pki {
  readonly ca: IssuedCertificate;
  issue(id: string, san: { email?: string[]; dns?: string[] }): { chain: Buffer[]; privateKey: IssuedCertificate['privateKey'] };
}

export function ecdsaPki(): Pki {
  const notBefore = new Date(EPOCH - 86_400_000);
  const notAfter = new Date(EPOCH + 3650 * 86_400_000);
  const ca = createSelfSignedCa({ subject: { C: 'CH', O: 'gikev2 test', CN: 'Registration CA' }, keySpec: 'ec-p256', notBefore, notAfter });
  return {
    ca,
    issue(id, san) {
      const c = issueEndEntity(ca, { subject: { O: 'gikev2 test', CN: id }, keySpec: 'ec-p256', notBefore, notAfter, subjectAltName: san });
      return { chain: [c.der], privateKey: c.privateKey };
    },
  };
}

/** Every successful registration response the server built, validated against Section 5. */
export function validatingTap(seen: { exchange: number; group: string; violations: string[] }[]): NonNullable<GcksServiceDeps['inspectResponse']> {
  return (exchange, payloads: readonly Payload[], ctx) => {
    const gsa = payloads.find(isGsaPayload)!;
    const violations = validateExchange(exchange, payloads, {
      rekeyStyle: gsa.policies.some(isKekPolicy) ? 'multicast' : 'inband',
      groupSender: ctx.groupSender !== undefined,
      keyTree: ctx.keyTree,
      senderIdsRequested: ctx.groupSender,
    }).map((v) => v.message);
    seen.push({ exchange, group: ctx.group, violations });
  };
}

export function makeGcks(config: GcksConfig, extra: Partial<GcksServiceDeps> = {}, seed = 'gcks'): GcksService {
  return new GcksService(config, {
    rng: deterministicRandom(seed),
    certificateTime: () => new Date(EPOCH),
    signingKeyFor: () => signingKey,
    now: EPOCH,
    ...extra,
  });
}

export function makeGm(config: GmConfig, extra: Partial<GmServiceDeps> = {}, seed = 'gm'): GmService {
  return new GmService(config, {
    rng: deterministicRandom(`${seed}-${config.identity.data.toString()}`),
    certificateTime: () => new Date(EPOCH),
    retransmit: FAST,
    ...extra,
  });
}

/** A service on the simulated network. */
export class ServiceNode<S extends DatagramEngine<E>, E> implements SimNode {
  readonly events: E[] = [];
  constructor(
    readonly service: S,
    readonly endpoint: SimEndpoint,
  ) {}
  take(out: Output<E>): SimOutput {
    this.events.push(...out.events);
    return out;
  }
  receive(data: Buffer, from: SimEndpoint, now: number, to: SimEndpoint = this.endpoint): SimOutput {
    return this.take(this.service.receive(data, from, { ...to, marker: false }, now));
  }
  timeout(now: number): SimOutput {
    return this.take(this.service.timeout(now));
  }
  nextTimeout(): number | undefined {
    return this.service.nextTimeout();
  }
  of<T extends string>(type: T): Extract<E, { type: T }>[] {
    return this.events.filter((e): e is Extract<E, { type: T }> => (e as { type: string }).type === type);
  }
}

export type GcksNode = ServiceNode<GcksService, GcksServiceEvent>;
export type GmNode = ServiceNode<GmService, GmServiceEvent>;

/** The member's installed keys equal the key server's current ones, group by group. */
export function assertSameKeys(gcks: GcksService, gm: GmService, groupName: string, groupId: string): void {
  const server = gcks.groupKeys(groupName);
  assert.ok(server, `no group ${groupName}`);
  const table = [...gm.saTable().groups].find((t) => server.id === formatIdentity(t.groupId));
  assert.ok(table, `member has no SAs for ${groupId}`);
  if (server.rekeySa) {
    assert.ok(table.rekeySa, 'member has no Rekey SA');
    assert.ok(table.rekeySa.spi.equals(server.rekeySa.spi));
    assert.ok(table.rekeySa.keys.gskE.equals(server.rekeySa.keys.gskE), 'GSK_e');
    assert.ok(table.rekeySa.keys.gskA.equals(server.rekeySa.keys.gskA), 'GSK_a');
    assert.ok(table.rekeySa.keys.gskW.equals(server.rekeySa.keys.gskW), 'GSK_w');
  } else {
    assert.equal(table.rekeySa, undefined);
  }
  assert.ok(server.dataSecurity.length > 0);
  for (const tek of server.dataSecurity) {
    const mine: InstalledDataSecuritySa[] = table.dataSecurity.filter((sa) => sa.spi.equals(tek.spi));
    assert.ok(mine.length > 0, `member lacks SA ${tek.spi.toString('hex')}`);
    for (const sa of mine) {
      assert.equal(sa.protocolId, tek.protocolId);
      assert.ok(sa.keys.encrKey.equals(tek.keys.encrKey), 'encryption key');
      assert.ok(sa.keys.integKey.equals(tek.keys.integKey), 'integrity key');
    }
  }
  const spis = new Set(table.dataSecurity.map((sa) => sa.spi.toString('hex')));
  assert.deepEqual([...spis].sort(), server.dataSecurity.map((t) => t.spi.toString('hex')).sort(), 'nothing else installed');
}

/**
 * A key server for the rekey tests: `mc` (IDg keyid "video") with signed
 * multicast rekeys to `group`:`port` from `source`, TEKs of `tekLifetime`
 * (KEK twice that) and DTD 2 s; `ib` (IDg 198.51.100.7, the "small" ID of
 * GROUP_IDS) with inband rekeys.
 */
export function rekeyGcksYaml(opts: { group: string; port: number; source: string; tekLifetime?: number; atd?: number; dtd?: number }): string {
  const tek = opts.tekLifetime ?? 60;
  return `
identity: "@gcks.example"
credentials:
  psks:
    - member: any
      secret: "${PSK}"
groups:
  - name: mc
    id: {type: ID_KEY_ID, value: video}
    capacity: 10
    members: {any: true}
${opts.atd === undefined ? '' : `    activationDelay: ${opts.atd}
`}    deactivationDelay: ${opts.dtd ?? 2}
    dataSecurity:
      - destination: {address: 239.1.1.1, protocol: udp, port: 5000}
        lifetime: ${tek}
    rekey:
      destination: {address: ${opts.group}, port: ${opts.port}}
      source: {address: ${opts.source}}
      signingKey: /unused/rekey.pem
      lifetime: ${tek * 2}
  - name: ib
    id: {type: ID_IPV4_ADDR, value: 198.51.100.7}
    members: {any: true}
    dataSecurity:
      - destination: 239.2.2.2
        lifetime: ${tek}
    rekey: inband
`;
}

/** The member holds the key server's current Rekey SA and every current TEK, with the same keys (older SAs may linger for DTD). */
export function inSync(gcks: GcksService, gm: GmService, group: string): boolean {
  const server = gcks.groupKeys(group);
  const table = server && [...gm.saTable().groups].find((t) => formatIdentity(t.groupId) === server.id);
  if (!server || !table) return false;
  if (server.rekeySa) {
    const k = table.rekeySa;
    if (!k || !k.spi.equals(server.rekeySa.spi) || !k.keys.gskE.equals(server.rekeySa.keys.gskE) || !k.keys.gskW.equals(server.rekeySa.keys.gskW)) return false;
  }
  return server.dataSecurity.every((tek) =>
    table.dataSecurity.some((sa) => sa.spi.equals(tek.spi) && sa.keys.encrKey.equals(tek.keys.encrKey) && sa.keys.integKey.equals(tek.keys.integKey)),
  );
}