/**
 * `gikev2 demo`: a key server and three members on loopback, in this process,
 * on real UDP sockets (127.0.0.1, ports chosen free by the kernel), with an
 * embedded configuration: PSK authentication, one group rekeyed over
 * multicast with signed rekeys, one small group rekeyed inband, and one
 * member that sends with Sender-IDs. It reports in plain words who joined
 * which group with which SAs (never keys), then shows the data plane: the
 * camera sends frames on the "video" group channel (ESP over loopback
 * multicast), both displays print what they decrypted, the key server
 * rekeys the group's TEKs and the frames keep flowing, on the new SPI once
 * the activation delay has passed. Then it stops, or keeps running and
 * reporting with `follow`.
 *
 * The services are the ones `gikev2 gcks` and `gikev2 gm` run (GcksService,
 * GmService on a UdpAdapter); the demo drives them itself, as it owns them:
 * it calls the key server's operator API (rekeyGroup) directly and joins
 * the members' Rekey SA multicast groups as they learn them.
 */
import { generateKeyPairSync } from 'node:crypto';
import { systemRandom } from '../crypto/random.ts';
import { openMemberChannel, GmEventHub, type MemberChannel } from '../dataplane/member-channel.ts';
import { loadGcksConfig } from '../gcks/config.ts';
import { rekeySigningKeyFrom } from '../gcks/signing-key.ts';
import { GcksService, type GcksServiceEvent } from '../gcks/service.ts';
import { loadGmConfig } from '../gm/config.ts';
import { GmService, type GmServiceEvent } from '../gm/service.ts';
import { formatIdentity } from '../ike/identity.ts';
import { monotonicClock } from './clock.ts';
import { handleSignals, KeylogFile } from './daemon-support.ts';
import { describeGroupTable } from './gm-summary.ts';
import { UdpAdapter } from './udp.ts';

export const DEMO_PSK = 'gikev2 demo pre-shared key (not secret)';
/** GWP_ATD / GWP_DTD of "video", seconds: short, so that the demo shows a whole rollover quickly. */
export const DEMO_ACTIVATION_DELAY = 1;
export const DEMO_DEACTIVATION_DELAY = 2;

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
    activationDelay: ${DEMO_ACTIVATION_DELAY}
    deactivationDelay: ${DEMO_DEACTIVATION_DELAY}
    dataSecurity:
      - destination: {address: 239.1.1.1, protocol: udp, port: 5000}
        sequenceNumbers: seq32
    rekey:
      destination: {address: 239.0.0.1, port: 8848}
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

/** The "video" group's multicast interface: every member is on loopback. */
const LOOPBACK = '127.0.0.1';
const hex8 = (spi: number | undefined): string => (spi === undefined ? 'none' : `0x${spi.toString(16).padStart(8, '0')}`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface RunningMember {
  readonly demo: DemoMember;
  readonly service: GmService;
  readonly adapter: UdpAdapter<GmServiceEvent>;
  readonly hub: GmEventHub;
}

/** Runs the demo; resolves with the exit code (0: every member joined and every frame arrived through the rekey). */
export async function runDemo(options: DemoOptions, io: DemoIo): Promise<number> {
  const started = performance.now();
  const clock = monotonicClock;
  const signingKey = rekeySigningKeyFrom(generateKeyPairSync('ed25519').privateKey);
  const gcksConfig = loadGcksConfig(DEMO_GCKS_YAML, 'demo key server');
  const keylog = options.keylogFile === undefined ? undefined : KeylogFile.open(options.keylogFile);
  /** Set once the report is complete (and while following stops): shutdown chatter is not news. */
  let quiet = false;
  const say = (text: string): void => {
    if (!quiet) io.out(text);
  };
  const trace = (who: string, e: GmServiceEvent | GcksServiceEvent): void => {
    if (e.type === 'keylog') keylog?.write(e.line);
    else if (options.verbose) io.err(`[${who}] ${e.type}${'group' in e && e.group ? ` ${e.group}` : ''}\n`);
  };
  let failures = 0;
  const gcks = new GcksService(gcksConfig, {
    rng: systemRandom,
    certificateTime: () => new Date(),
    keylog: keylog !== undefined,
    now: clock.now(),
    signingKeyFor: (name) => (name === 'video' ? signingKey : undefined),
    rekey: { retransmit: { copies: 2, spacingMs: 100 } },
  });
  const gcksAdapter = await UdpAdapter.open<GcksServiceEvent>(gcks, [{ address: LOOPBACK, port: 0, marker: false, multicast: { interface: LOOPBACK, loopback: true, ttl: 1 } }], {
    clock,
    onEvent: (e) => {
      trace('keyserver', e);
      if (e.type === 'registration-rejected') {
        failures++;
        say(`Key server refused ${e.member}${e.group ? ` for group ${e.group}` : ''}: ${e.notify} (${e.reason})\n`);
      } else if (options.follow && e.type === 'member-left') {
        say(`${e.member} left group ${e.group}\n`);
      }
    },
  });
  const members: RunningMember[] = [];
  const channels: MemberChannel[] = [];
  try {
    const port = gcksAdapter.locals[0]!.port;
    io.out(`Key server ${formatIdentity(gcksConfig.identity)} listening on ${LOOPBACK}:${port} (UDP, loopback)\n`);
    for (const g of gcks.groups()) {
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
    let announceDone: (() => void) | undefined;
    const allJoined = new Promise<void>((resolve) => (announceDone = resolve));
    const reported = new Set<string>();
    const serverName = (group: string): string => gcks.groups().find((g) => g.id === group)?.name ?? group;

    for (const m of DEMO_MEMBERS) {
      const config = loadGmConfig(demoMemberYaml(m, port), `demo member ${m.name}`);
      const service = new GmService(config, {
        rng: systemRandom,
        certificateTime: () => new Date(),
        // One key log line per IKE SA: the key server writes it.
        keylog: false,
        // Loopback answers in microseconds: do not wait seconds for a lost datagram.
        retransmit: { initialMs: 500 },
      });
      const hub = new GmEventHub();
      const joinedGroups = new Set<string>();
      /** Registrations whose 'keys' event is the news (not the rekeys that follow). */
      const fresh = new Set<string>();
      const adapter = await UdpAdapter.open<GmServiceEvent>(service, [{ address: LOOPBACK, port: 0, marker: false }], { clock, onEvent: hub.emit });
      members.push({ demo: m, service, adapter, hub });
      hub.subscribe((e) => {
        trace(m.name, e);
        if (e.type === 'sa-established') {
          say(`${m.name} (${formatIdentity(config.identity)}): IKE SA ${e.spiI}/${e.spiR} with the key server, ${e.algorithms.encr}${e.algorithms.encrKeyLength ? `/${e.algorithms.encrKeyLength}` : ''}, PRF ${e.algorithms.prf}, key exchange ${e.algorithms.ke}${e.algorithms.kwa ? `, key wrap ${e.algorithms.kwa}` : ''}\n`);
          return;
        }
        if (e.type === 'error') {
          say(`${m.name}: group ${e.group}: ${e.reason}\n`);
          return;
        }
        if (e.type === 'registered') {
          fresh.add(e.group);
          return;
        }
        if (e.type !== 'keys') return;
        // As the member daemon does: listen where the group's GSA_REKEY messages arrive.
        for (const g of service.multicastGroups()) {
          const key = `${g.address}:${g.port}`;
          if (joinedGroups.has(key)) continue;
          joinedGroups.add(key);
          adapter
            .addSocket({ address: g.address, port: g.port, marker: false, reuseAddr: true, multicast: { join: [g.address], interface: LOOPBACK } })
            .catch((err: unknown) => io.err(`${m.name}: cannot join ${key}: ${err instanceof Error ? err.message : String(err)}\n`));
        }
        if (!fresh.delete(e.group)) return;
        const table = [...service.saTable().groups].find((t) => formatIdentity(t.groupId) === e.group);
        if (!table) return;
        const key = `${m.name}|${e.group}`;
        const again = reported.has(key);
        reported.add(key);
        say(`${m.name} ${again ? 're-registered to' : 'joined'} group "${serverName(e.group)}" as ${table.role}:\n`);
        for (const line of describeGroupTable(table)) say(`    ${line}\n`);
        if (!again && ++joined === expected) announceDone?.();
      });
      adapter.act((now) => service.start(now));
    }
    const timeoutMs = options.timeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs)));
    const late = await Promise.race([allJoined.then(() => false), timedOut]);
    clearTimeout(timer);
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    io.out('\n');
    const summary = gcks.groups().map((g) => `${g.name}: ${g.members}`).join(', ');
    if (late) {
      io.out(`Only ${joined} of ${expected} registrations finished within ${timeoutMs / 1000} s (${failures} refused). Members per group: ${summary}\n`);
      return 1;
    }
    io.out(`All ${DEMO_MEMBERS.length} members registered (${expected} group memberships) in ${seconds} s. Members per group: ${summary}.\n`);

    const ok = await videoThroughRekey(gcks, gcksAdapter, members, channels, say);
    io.out(
      options.keylogFile
        ? `IKE keys were written to ${options.keylogFile} for Wireshark; no key appears above.\n`
        : 'Keys are never printed; run with --keylog FILE to write the IKE keys for Wireshark.\n',
    );
    quiet = !options.follow;
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
    return ok ? 0 : 1;
  } finally {
    quiet = true;
    for (const c of channels) c.close();
    await shutdown(gcks, gcksAdapter, members);
    keylog?.close();
  }
}

/**
 * The data plane: frames from the camera to both displays on the "video"
 * group channel, a TEK rekey, frames until the camera has switched to the
 * new SA. True when both displays received every frame exactly once and
 * the SPI changed.
 */
async function videoThroughRekey(
  gcks: GcksService,
  gcksAdapter: UdpAdapter<GcksServiceEvent>,
  members: readonly RunningMember[],
  channels: MemberChannel[],
  say: (text: string) => void,
): Promise<boolean> {
  const camera = members.find((m) => m.demo.name === 'camera')!;
  const displays = members.filter((m) => m.demo.name.startsWith('display'));
  const open = (m: RunningMember): Promise<MemberChannel> =>
    openMemberChannel(m.service, 'video', { events: m.hub, actor: m.adapter, interface: LOOPBACK, clock: monotonicClock, registrationTimeoutMs: 2_000 });
  const tx = await open(camera);
  channels.push(tx);
  const received = new Map<string, string[]>();
  for (const d of displays) {
    const ch = await open(d);
    channels.push(ch);
    const got: string[] = [];
    received.set(d.demo.name, got);
    ch.on('message', (data, meta) => {
      const text = data.toString('utf8');
      got.push(text);
      say(`${d.demo.name} received "${text}" (ESP SPI ${hex8(meta.spi)})\n`);
    });
  }
  say(`\nVideo on group "video": ESP over UDP multicast to ${tx.multicastAddress} port ${tx.port} (loopback); the camera sends, the displays decrypt.\n`);
  let frame = 0;
  const sent: string[] = [];
  const sendFrame = async (): Promise<number | undefined> => {
    const text = `frame ${++frame}`;
    const spi = tx.stats().outboundSpi;
    try {
      await tx.send(Buffer.from(text));
    } catch (e) {
      say(`camera could not send "${text}": ${e instanceof Error ? e.message : String(e)}\n`);
      return undefined;
    }
    sent.push(text);
    say(`camera sent "${text}" (ESP SPI ${hex8(spi)})\n`);
    // Let both displays print it before the next one, for a readable transcript.
    const until = performance.now() + 300;
    while (performance.now() < until && [...received.values()].some((got) => !got.includes(text))) await sleep(5);
    return spi;
  };
  const firstSpi = tx.stats().outboundSpi;
  for (let i = 0; i < 3; i++) await sendFrame();

  const before = gcks.groupKeys('video')?.dataSecurity.map((t) => t.spi.readUInt32BE(0)) ?? [];
  gcksAdapter.act((now) => gcks.rekeyGroup('video', 'tek', now));
  const after = (gcks.groupKeys('video')?.dataSecurity.map((t) => t.spi.readUInt32BE(0)) ?? []).filter((s) => !before.includes(s));
  say(
    `\nKey server rekeys group "video": new ESP SA ${after.map(hex8).join(', ')} sent by multicast GSA_REKEY. The camera keeps ${hex8(firstSpi)} for the ` +
      `activation delay (${DEMO_ACTIVATION_DELAY} s); the displays accept both until ${DEMO_DEACTIVATION_DELAY} s after the rekey.\n`,
  );
  let onNew = 0;
  const deadline = performance.now() + (DEMO_ACTIVATION_DELAY + 2) * 1000;
  while (onNew < 2 && performance.now() < deadline) {
    await sleep(200);
    const next = tx.stats().outboundSpi;
    if (onNew === 0 && next !== firstSpi) say(`camera switched to ESP SA ${hex8(next)} (activation delay over)\n`);
    const spi = await sendFrame();
    if (spi !== undefined && spi !== firstSpi) onNew++;
  }
  await sleep(100);
  const lastSpi = tx.stats().outboundSpi;
  const complete = [...received.values()].every((got) => got.length === sent.length && sent.every((t) => got.includes(t)));
  say(
    `\n${[...received].map(([name, got]) => `${name} received ${got.length} of ${sent.length} frames`).join(', ')}; ` +
      `ESP SPI ${hex8(firstSpi)} -> ${hex8(lastSpi)}${complete && lastSpi !== firstSpi ? ', nothing lost or repeated through the rekey' : ''}.\n`,
  );
  return complete && lastSpi !== firstSpi;
}

/** Members delete their IKE SAs, the key server closes its own; then every socket closes. */
async function shutdown(gcks: GcksService, gcksAdapter: UdpAdapter<GcksServiceEvent>, members: readonly RunningMember[]): Promise<void> {
  for (const m of members) {
    const saId = m.service.status().ikeSa?.saId;
    if (saId !== undefined) m.adapter.act((now) => m.service.engine.deleteSa(saId, now));
  }
  gcksAdapter.act((now) => gcks.closeAll(now));
  const until = performance.now() + 300;
  while (performance.now() < until && (gcks.ikeSas().length > 0 || members.some((m) => m.service.engine.list().length > 0))) await sleep(10);
  await Promise.all([...members.map((m) => m.adapter.close()), gcksAdapter.close()]);
}
