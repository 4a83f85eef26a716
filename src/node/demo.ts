/**
 * `gikev2 demo`: a key server and three members on loopback, in this process,
 * on real UDP sockets (127.0.0.1, ports chosen free by the kernel), with an
 * embedded configuration: PSK authentication, one group rekeyed over
 * multicast with signed rekeys, one small group rekeyed inband, and one
 * member that sends with Sender-IDs. It reports in plain words who joined
 * which group with which SAs (never keys) and stops, or keeps running and
 * reporting with `follow`.
 *
 * The daemons are the same classes `gikev2 gcks` and `gikev2 gm` run; only
 * their configuration comes from here instead of a file.
 */
import { generateKeyPairSync } from 'node:crypto';
import { loadGcksConfig } from '../gcks/config.ts';
import { rekeySigningKeyFrom } from '../gcks/signing-key.ts';
import type { GcksServiceEvent } from '../gcks/service.ts';
import { loadGmConfig } from '../gm/config.ts';
import type { GmServiceEvent } from '../gm/service.ts';
import { formatIdentity } from '../ike/identity.ts';
import { createLogger, silentLogger, type Logger } from './log.ts';
import { handleSignals } from './daemon-support.ts';
import { GcksDaemon, gcksSetupFromConfig } from './gcks-daemon.ts';
import { GmDaemon } from './gm-daemon.ts';
import { describeGroupTable } from './gm-summary.ts';

export const DEMO_PSK = 'gikev2 demo pre-shared key (not secret)';

/** The key server's configuration; `listen` is replaced by a free loopback port. */
export const DEMO_GCKS_YAML = `
identity: "@keyserver.demo.example"
credentials:
  psks:
    - member: "*.demo.example"
      secret: "${DEMO_PSK}"
groups:
  - name: video
    id: {type: ID_KEY_ID, value: video}
    members: {patterns: ["*.demo.example"]}
    senders: {ids: ["@camera.demo.example"]}
    maxSenderIdsPerMember: 4
    dataSecurity:
      - destination: {address: 239.1.1.1, protocol: udp, port: 5000}
    rekey:
      destination: {address: 239.0.0.1, port: 848}
      signingKey: generated-at-start.pem
  - name: control
    id: "@control.demo.example"
    mode: transport
    members: {patterns: ["*.demo.example"]}
    senders: {any: true}
    dataSecurity:
      - destination: {address: 239.2.2.2, protocol: udp, port: 6000}
        sequenceNumbers: seq32
    rekey: inband
`;

export interface DemoMember {
  readonly name: string;
  readonly identity: string;
  readonly groups: readonly { readonly id: string; readonly role: 'receiver' | 'sender' | 'both'; readonly senderIds?: number }[];
}

const VIDEO = '{type: ID_KEY_ID, value: video}';
const CONTROL = '"@control.demo.example"';

export const DEMO_MEMBERS: readonly DemoMember[] = [
  { name: 'camera', identity: '@camera.demo.example', groups: [{ id: VIDEO, role: 'sender', senderIds: 2 }] },
  { name: 'display-1', identity: '@display-1.demo.example', groups: [{ id: VIDEO, role: 'receiver' }, { id: CONTROL, role: 'both', senderIds: 1 }] },
  { name: 'display-2', identity: '@display-2.demo.example', groups: [{ id: VIDEO, role: 'receiver' }, { id: CONTROL, role: 'receiver' }] },
];

export function demoMemberYaml(m: DemoMember, port: number): string {
  const groups = m.groups
    .map((g) => `  - id: ${g.id}\n    role: ${g.role}\n${g.senderIds !== undefined ? `    senderIds: ${g.senderIds}\n` : ''}`)
    .join('');
  return `identity: "${m.identity}"
credentials: {psk: {secret: "${DEMO_PSK}"}}
keyServers: [{address: 127.0.0.1, port: ${port}, id: "@keyserver.demo.example"}]
groups:
${groups}`;
}

export interface DemoOptions {
  /** Keep running and reporting until SIGINT/SIGTERM. */
  readonly follow?: boolean;
  /** Give up after this long (default 10 s). */
  readonly timeoutMs?: number;
  /** Daemon log lines (readable) to `err`. */
  readonly verbose?: boolean;
  readonly keylogFile?: string | undefined;
}

export interface DemoIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

/** Runs the demo; resolves with the exit code (0: every member joined every group). */
export async function runDemo(options: DemoOptions, io: DemoIo): Promise<number> {
  const started = performance.now();
  const logger: Logger = options.verbose ? createLogger({ format: 'readable', level: 'info', write: (l) => io.err(`${l}\n`) }) : silentLogger;
  const signingKey = rekeySigningKeyFrom(generateKeyPairSync('ed25519').privateKey);
  const gcksConfig = loadGcksConfig(DEMO_GCKS_YAML, 'demo key server');
  const gcks = await GcksDaemon.start({
    load: () => gcksSetupFromConfig(gcksConfig, new Map([['video', signingKey]])),
    logger: logger.child({ daemon: 'keyserver' }),
    keylogFile: options.keylogFile,
    sockets: [{ address: '127.0.0.1', port: 0, marker: false }],
    onEvent: (e) => onServerEvent(e),
  });
  const port = gcks.locals[0]!.port;
  io.out(`Key server ${formatIdentity(gcksConfig.identity)} listening on 127.0.0.1:${port} (UDP, loopback)\n`);
  for (const g of gcks.service.groups()) {
    const policy = gcksConfig.groups.find((c) => c.name === g.name);
    const rekey =
      g.rekey === 'multicast' && policy?.rekey.kind === 'multicast'
        ? `new keys by multicast to ${policy.rekey.destination.startAddress} port ${policy.rekey.destination.startPort}, signed with Ed25519`
        : 'new keys over each member\u2019s IKE SA (inband)';
    io.out(`  group "${g.name}" (${g.id}): ${rekey}; ${g.mode} mode\n`);
  }
  io.out(`Starting ${DEMO_MEMBERS.length} members: ${DEMO_MEMBERS.map((m) => m.name).join(', ')}\n\n`);

  const expected = DEMO_MEMBERS.reduce((n, m) => n + m.groups.length, 0);
  let joined = 0;
  let failures = 0;
  let announceDone: (() => void) | undefined;
  const allJoined = new Promise<void>((resolve) => (announceDone = resolve));
  const reported = new Set<string>();
  /** Set once the report is complete (and while following stops): shutdown chatter is not news. */
  let quiet = false;
  const say = (text: string): void => {
    if (!quiet) io.out(text);
  };

  function onServerEvent(e: GcksServiceEvent): void {
    if (e.type === 'registration-rejected') {
      failures++;
      say(`Key server refused ${e.member}${e.group ? ` for group ${e.group}` : ''}: ${e.notify} (${e.reason})\n`);
    } else if (options.follow && e.type === 'member-left') {
      say(`${e.member} left group ${e.group}\n`);
    }
  }

  const members: GmDaemon[] = [];
  const onMemberEvent = (m: DemoMember) => (e: GmServiceEvent, daemon: GmDaemon) => {
    if (e.type === 'sa-established') {
      say(`${m.name} (${formatIdentity(daemon.config.identity)}): IKE SA ${e.spiI}/${e.spiR} with the key server, ${e.algorithms.encr}${e.algorithms.encrKeyLength ? `/${e.algorithms.encrKeyLength}` : ''}, PRF ${e.algorithms.prf}, key exchange ${e.algorithms.ke}${e.algorithms.kwa ? `, key wrap ${e.algorithms.kwa}` : ''}\n`);
      return;
    }
    if (e.type === 'error') {
      say(`${m.name}: group ${e.group}: ${e.reason}\n`);
      return;
    }
    if (e.type !== 'keys') return;
    const table = [...daemon.service.saTable().groups].find((t) => formatIdentity(t.groupId) === e.group);
    if (!table) return;
    const serverName = gcks.service.groups().find((g) => g.id === e.group)?.name ?? e.group;
    const key = `${m.name}|${e.group}`;
    const again = reported.has(key);
    reported.add(key);
    say(`${m.name} ${again ? 're-registered to' : 'joined'} group "${serverName}" as ${table.role}:\n`);
    for (const line of describeGroupTable(table)) say(`    ${line}\n`);
    if (!again && ++joined === expected) announceDone?.();
  };
  try {
    for (const m of DEMO_MEMBERS) {
      const config = loadGmConfig(demoMemberYaml(m, port), `demo member ${m.name}`);
      members.push(
        await GmDaemon.start({
          load: () => ({ config, trustAnchors: [] }),
          logger: logger.child({ daemon: m.name }),
          sockets: [{ address: '127.0.0.1', port: 0, marker: false }],
          onEvent: onMemberEvent(m),
          // Loopback answers in microseconds: do not wait seconds for a lost datagram.
          serviceOptions: { retransmit: { initialMs: 500 } },
        }),
      );
    }
    const timeoutMs = options.timeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs)));
    const late = await Promise.race([allJoined.then(() => false), timedOut]);
    clearTimeout(timer);
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    quiet = !options.follow;
    io.out('\n');
    const summary = gcks.service.groups().map((g) => `${g.name}: ${g.members}`).join(', ');
    if (late) {
      io.out(`Only ${joined} of ${expected} registrations finished within ${timeoutMs / 1000} s (${failures} refused). Members per group: ${summary}\n`);
      return 1;
    }
    io.out(`All ${DEMO_MEMBERS.length} members registered (${expected} group memberships) in ${seconds} s. Members per group: ${summary}.\n`);
    io.out(
      options.keylogFile
        ? `IKE keys were written to ${options.keylogFile} for Wireshark; no key appears above.\n`
        : 'Keys are never printed; run with --keylog FILE to write the IKE keys for Wireshark.\n',
    );
    if (options.follow) {
      io.out('Following (Ctrl-C to stop)...\n');
      await new Promise<void>((resolve) => {
        const uninstall = handleSignals((action) => {
          if (action !== 'stop') return;
          quiet = true;
          uninstall();
          resolve();
        });
      });
    }
    return 0;
  } finally {
    await Promise.all(members.map((m) => m.stop(300)));
    await gcks.stop(300);
  }
}
