/**
 * `gikev2 gcks` and `gikev2 gm`: option parsing and exit codes only; the
 * daemons are in src/node/.
 */
import { InvalidConfigError } from '../gcks/config-fields.ts';
import { defaultControlPath } from '../node/control.ts';
import { createLogSink, formatConfigErrors, serveUntilStopped } from '../node/daemon-support.ts';
import { GcksDaemon, loadGcksSetupFile } from '../node/gcks-daemon.ts';
import { GmDaemon, loadGmSetupFile } from '../node/gm-daemon.ts';
import { StateError } from '../store/errors.ts';
import { DAEMON_OPTIONS_USAGE, GCKS_OPTIONS_USAGE, GM_OPTIONS_USAGE, parseDaemonOptions, type DaemonCliOptions } from './daemon-options.ts';
import { EXIT_FAILED, EXIT_OK, type CliIo, type Command } from './command.ts';

const GCKS_USAGE = `usage: gikev2 gcks -c gcks.yaml [--state DIR [--state-key-file FILE]] [--control PATH]
                   [--keylog FILE] [--log-format json|readable] [--log-level LEVEL]

Runs the G-IKEv2 key server (GCKS): answers IKE_SA_INIT, GSA_AUTH and
GSA_REGISTRATION on the configured sockets, admits members to groups and
hands out their keys, and rekeys the groups (multicast GSA_REKEY from each
group's rekey source, GSA_INBAND_REKEY). Operators act on it through the
control socket with \`gikev2 ctl\`. Logs go to standard output, one line
per event. See examples/gcks.yaml for every configuration field.

${GCKS_OPTIONS_USAGE}

${DAEMON_OPTIONS_USAGE}`;

const GM_USAGE = `usage: gikev2 gm -c gm.yaml [--keylog FILE] [--log-format json|readable] [--log-level LEVEL] [--xfrm | --xfrm-dry-run]

Runs a G-IKEv2 group member: registers with the first key server that
answers, to every configured group, and keeps the SAs it installs current
(re-registers before they expire). With --log-format readable it tells in
plain words which groups it joined with which SAs (SPIs, algorithms,
Sender-IDs; never keys), joins the multicast groups its groups' rekeys
arrive on and follows every rekey. See examples/gm-receiver.yaml and
gm-sender.yaml.

${DAEMON_OPTIONS_USAGE}

${GM_OPTIONS_USAGE}`;

interface Startable {
  reload(): unknown;
  stop(): Promise<void>;
}

async function runDaemon(
  name: string,
  opts: DaemonCliOptions,
  io: CliIo,
  start: (logger: ReturnType<typeof createLogSink>['logger']) => Promise<Startable>,
): Promise<number> {
  const sink = createLogSink({ format: opts.logFormat, level: opts.logLevel });
  let daemon: Startable;
  try {
    daemon = await start(sink.logger);
  } catch (e) {
    if (e instanceof InvalidConfigError) {
      io.err(`gikev2 ${name}: not started\n${formatConfigErrors(e)}`);
      return EXIT_FAILED;
    }
    if (e instanceof StateError) {
      io.err(`gikev2 ${name}: not started: ${e.describe()}\n`);
      return e.exitCode;
    }
    const message = e instanceof Error ? e.message : String(e);
    io.err(`gikev2 ${name}: not started: ${message}\n`);
    return EXIT_FAILED;
  }
  await serveUntilStopped(daemon, sink.logger);
  await sink.flush();
  return EXIT_OK;
}

export const gcksCommand: Command = {
  summary: 'run the key server (GCKS) from a YAML configuration',
  usage: GCKS_USAGE,
  run: async (argv, io) => {
    const opts = parseDaemonOptions(argv, 'gcks');
    if (opts.help) {
      io.out(`${GCKS_USAGE}\n`);
      return EXIT_OK;
    }
    const control = {
      path: opts.controlSocket ?? defaultControlPath({ stateDir: opts.stateDir }),
      // An explicit path must work; the default one may be taken by another key server on this host.
      required: opts.controlSocket !== undefined,
    };
    return runDaemon('gcks', opts, io, (logger) =>
      GcksDaemon.start({
        load: () => loadGcksSetupFile(opts.configFile),
        logger,
        keylogFile: opts.keylogFile,
        control,
        ...(opts.stateDir === undefined ? {} : { state: { stateDir: opts.stateDir, keyFile: opts.stateKeyFile } }),
      }),
    );
  },
};

export const gmCommand: Command = {
  summary: 'run a group member from a YAML configuration',
  usage: GM_USAGE,
  run: async (argv, io) => {
    const opts = parseDaemonOptions(argv, 'gm');
    if (opts.help) {
      io.out(`${GM_USAGE}\n`);
      return EXIT_OK;
    }
    return runDaemon('gm', opts, io, (logger) => GmDaemon.start({ load: () => loadGmSetupFile(opts.configFile), logger, keylogFile: opts.keylogFile, xfrm: opts.xfrm }));
  },
};
