/**
 * `gikev2 ctl`: the operator's commands for a running key server, sent as
 * one JSON line over its control socket (src/node/control.ts).
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { defaultControlPath, sendControlRequest, type ControlRequest, type JsonValue } from '../node/control.ts';
import { EXIT_FAILED, EXIT_OK, UsageError, type Command } from './command.ts';

const CTL_USAGE = `usage: gikev2 ctl [--socket PATH | --state DIR] [--json] <command> [arguments]

Talks to a running key server (gikev2 gcks) over its control socket.

commands:
  status                          groups, member counts, current SPIs, next rekey
  members GROUP                   the members of a group
  rekey GROUP [tek|kek|all]       rekey a group now (default all)
  exclude GROUP MEMBER [--readmit]
                                  exclude a member: new keys it cannot read; it
                                  is refused until readmitted (--readmit: it may
                                  register again at once)
  readmit GROUP MEMBER            let an excluded member register again
  rotate-signing-key GROUP KEYFILE
                                  roll the group's rekey signing key over to the
                                  key in KEYFILE (read by the key server)
  reload-policy                   re-read the key server's configuration and apply
                                  changed group policies

GROUP is the group's name or its IDg; MEMBER is the identity as the key
server logs it (e.g. alice@example.org).

options:
  --socket PATH   the control socket (default: gikev2-gcks.sock in
                  $XDG_RUNTIME_DIR, /run for root, else the temporary directory)
  --state DIR     the key server's state directory: its control socket is there
  --json          print the key server's answer as JSON
  -h, --help      this text

exit status: 0 done, 1 the key server refused or could not be reached, 2 usage error`;

function request(positionals: readonly string[], readmit: boolean): ControlRequest {
  const [command, ...args] = positionals;
  const want = (n: number, shape: string): void => {
    if (args.length !== n) throw new UsageError(`${command} takes ${shape}`);
  };
  if (readmit && command !== 'exclude') throw new UsageError('--readmit goes with exclude');
  switch (command) {
    case undefined:
      throw new UsageError('a command is required');
    case 'status':
    case 'reload-policy':
      want(0, 'no arguments');
      return { command };
    case 'members':
      want(1, 'GROUP');
      return { command, group: args[0]! };
    case 'rekey': {
      if (args.length < 1 || args.length > 2) throw new UsageError('rekey takes GROUP [tek|kek|all]');
      const kind = args[1] ?? 'all';
      if (kind !== 'tek' && kind !== 'kek' && kind !== 'all') throw new UsageError(`rekey: "${kind}" is not tek, kek or all`);
      return { command, group: args[0]!, kind };
    }
    case 'exclude':
      want(2, 'GROUP MEMBER');
      return { command, group: args[0]!, member: args[1]!, readmit };
    case 'readmit':
      want(2, 'GROUP MEMBER');
      return { command, group: args[0]!, member: args[1]! };
    case 'rotate-signing-key':
      want(2, 'GROUP KEYFILE');
      // The key server reads the file: give it a path that does not depend on its working directory.
      return { command, group: args[0]!, keyFile: resolve(args[1]!) };
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

type JsonObject = { readonly [key: string]: JsonValue };

function isObject(v: JsonValue | undefined): v is JsonObject {
  return v !== null && v !== undefined && typeof v === 'object' && !Array.isArray(v);
}

function str(v: JsonValue | undefined): string {
  return v === null || v === undefined ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function describeGroup(g: JsonObject): string[] {
  const spis = Array.isArray(g['dataSecuritySpis']) ? (g['dataSecuritySpis'] as JsonValue[]).map((s) => `0x${str(s)}`) : [];
  const lines = [
    `group ${str(g['name'])} (${str(g['id'])}): ${str(g['rekey'])} rekey, ${str(g['mode'])} mode, ${str(g['members'])}/${str(g['capacity'])} members`,
  ];
  if (g['rekeySpi'] !== null && g['rekeySpi'] !== undefined) lines.push(`  Rekey SA          0x${str(g['rekeySpi'])}`);
  lines.push(`  Data-Security SAs ${spis.join(', ') || 'none'}`);
  lines.push(`  next rekey        ${g['nextRekeyAt'] === null ? 'none scheduled' : `${str(g['nextRekeyAt'])} (in ${str(g['nextRekeyInSeconds'])} s)`}`);
  return lines;
}

/** The answer in words; anything unexpected is printed as JSON. */
function render(req: ControlRequest, result: JsonValue): string {
  if (!isObject(result)) return `${JSON.stringify(result)}\n`;
  const lines: string[] = [];
  switch (req.command) {
    case 'status': {
      lines.push(`key server ${str(result['identity'])} (pid ${str(result['pid'])}) since ${str(result['startedAt'])}`);
      lines.push(`  listening on ${Array.isArray(result['listen']) ? (result['listen'] as JsonValue[]).map(str).join(', ') : '-'}`);
      lines.push(`  state ${result['state'] === null ? 'in memory only' : str(result['state'])}; ${str(result['ikeSas'])} IKE SA(s)`);
      for (const g of Array.isArray(result['groups']) ? (result['groups'] as JsonValue[]) : []) if (isObject(g)) lines.push(...describeGroup(g));
      break;
    }
    case 'members': {
      const members = Array.isArray(result['members']) ? (result['members'] as JsonValue[]).filter(isObject) : [];
      lines.push(`group ${str(result['group'])}: ${members.length} member${members.length === 1 ? '' : 's'}`);
      for (const m of members) {
        const ids = Array.isArray(m['senderIds']) && m['senderIds'].length ? `, Sender-IDs ${(m['senderIds'] as JsonValue[]).map(str).join(', ')}` : '';
        lines.push(`  ${str(m['member'])}: ${m['sender'] === true ? 'sender' : 'receiver'}${ids}, registered ${str(m['registeredAt'])}`);
      }
      break;
    }
    case 'rekey':
    case 'rotate-signing-key':
      lines.push(req.command === 'rekey' ? `group ${req.group}: ${req.kind} rekey sent` : `group ${req.group}: signing key rollover sent`, ...describeGroup(result));
      break;
    case 'exclude':
      lines.push(`group ${req.group}: ${req.member} excluded${req.readmit ? ' (it may register again)' : ' (refused until readmitted)'}`, ...describeGroup(result));
      break;
    case 'readmit':
      lines.push(`group ${req.group}: ${req.member} may register again${result['wasBarred'] === true ? '' : ' (it was not excluded)'}`);
      break;
    case 'reload-policy': {
      const list = (k: string): string[] => (Array.isArray(result[k]) ? (result[k] as JsonValue[]).map(str) : []);
      const changed = list('changed');
      lines.push(changed.length ? `policy changed and rekeyed: ${changed.join(', ')}` : 'no group policy changed');
      const unchanged = list('unchanged');
      if (unchanged.length) lines.push(`unchanged: ${unchanged.join(', ')}`);
      for (const n of list('notApplied')) lines.push(`not applied: ${n}`);
      for (const f of Array.isArray(result['failed']) ? (result['failed'] as JsonValue[]).filter(isObject) : []) lines.push(`failed: group ${str(f['group'])}: ${str(f['error'])}`);
      break;
    }
  }
  return `${lines.join('\n')}\n`;
}

export const ctlCommand: Command = {
  summary: 'operate a running key server: status, members, rekey, exclude, reload-policy',
  usage: CTL_USAGE,
  run: async (argv, io) => {
    let parsed;
    try {
      parsed = parseArgs({
        args: [...argv],
        options: {
          socket: { type: 'string' },
          state: { type: 'string' },
          json: { type: 'boolean' },
          readmit: { type: 'boolean' },
          help: { type: 'boolean', short: 'h' },
        },
        allowPositionals: true,
        strict: true,
      });
    } catch (e) {
      throw new UsageError(e instanceof Error ? e.message : String(e));
    }
    const v = parsed.values;
    if (v.help) {
      io.out(`${CTL_USAGE}\n`);
      return EXIT_OK;
    }
    if (v.socket !== undefined && v.state !== undefined) throw new UsageError('give --socket or --state, not both');
    const req = request(parsed.positionals, v.readmit === true);
    const path = v.socket ?? defaultControlPath({ stateDir: v.state });
    let response;
    try {
      response = await sendControlRequest(path, req);
    } catch (e) {
      const code = e !== null && typeof e === 'object' && 'code' in e ? String(e.code) : '';
      const hint = code === 'ENOENT' || code === 'ECONNREFUSED' ? ' (is the key server running? --socket names another socket)' : '';
      io.err(`gikev2 ctl: cannot reach the key server at ${path}: ${e instanceof Error ? e.message : String(e)}${hint}\n`);
      return EXIT_FAILED;
    }
    if (!response.ok) {
      io.err(`gikev2 ctl ${req.command}: ${response.error}\n`);
      return EXIT_FAILED;
    }
    io.out(v.json ? `${JSON.stringify(response.result, null, 2)}\n` : render(req, response.result));
    return EXIT_OK;
  },
};
