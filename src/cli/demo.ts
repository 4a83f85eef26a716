/** `gikev2 demo`: option parsing only; the demo itself is src/node/demo.ts. */
import { parseArgs } from 'node:util';
import { runDemo } from '../node/demo.ts';
import { EXIT_OK, UsageError, type Command } from './command.ts';

const USAGE = `usage: gikev2 demo [--follow] [--verbose] [--keylog FILE]

Starts a G-IKEv2 key server and three group members on this machine
(127.0.0.1, free UDP ports), with a built-in configuration: pre-shared keys,
a group "video" rekeyed over multicast with signed rekeys, a group "control"
rekeyed over each member's IKE SA, and a camera that sends with Sender-IDs.
Prints who joined which group with which SAs (SPIs, algorithms, Sender-IDs;
never keys). Then the camera sends frames on the "video" group channel (ESP
over loopback multicast), both displays print what they decrypt, the key
server rekeys the group's TEKs and the frames go on, on the new ESP SPI once
the activation delay has passed; then it stops.

options:
  --follow         keep running (and reporting) until Ctrl-C
  --verbose        also print the daemons' log lines (standard error)
  --keylog FILE    append the IKE keys for Wireshark to FILE (mode 0600)
  -h, --help       this text

exit status: 0 every member joined its groups and every frame arrived through
the rekey, 1 otherwise, 2 usage error`;

export const demoCommand: Command = {
  summary: 'start a key server and three members on loopback, show who joined what and protected video through a rekey',
  usage: USAGE,
  run: async (argv, io) => {
    let values;
    try {
      values = parseArgs({
        args: [...argv],
        options: {
          follow: { type: 'boolean' },
          verbose: { type: 'boolean' },
          keylog: { type: 'string' },
          help: { type: 'boolean', short: 'h' },
        },
        strict: true,
        allowPositionals: false,
      }).values;
    } catch (e) {
      throw new UsageError(e instanceof Error ? e.message : String(e));
    }
    if (values.help) {
      io.out(`${USAGE}\n`);
      return EXIT_OK;
    }
    return runDemo({ follow: values.follow ?? false, verbose: values.verbose ?? false, keylogFile: values.keylog }, io);
  },
};
