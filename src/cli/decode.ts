import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DecodeError } from '../wire/errors.ts';
import { PayloadType } from '../wire/iana.ts';
import { decodeMessage } from '../wire/message.ts';
import { decodePayloadChain, payloadTypeName } from '../wire/payload.ts';
import { PcapError, readCapture, detectCaptureFormat, type Capture } from '../node/pcap.ts';
import {
  classifyDatagram,
  DEFAULT_IKE_PORTS,
  markerStyleFor,
  parsePortSpec,
  PortSpecError,
  type MarkerStyle,
} from '../node/udp-framing.ts';
import { EXIT_FAILED, EXIT_OK, UsageError, type CliIo, type Command } from './command.ts';
import { chainPayloadLengths, itemToJson, renderItem, wirePayloadLengths, type DecodedItem, type ItemOrigin } from './render.ts';

const USAGE = `usage: gikev2 decode [options] [FILE ...]
       gikev2 decode --hex HEX [--hex HEX ...]

Decodes IKEv2 / G-IKEv2 messages and prints them as a tree.

FILE is a pcap or pcapng capture (recognised by its magic), a text file of
hex (messages separated by blank lines; '#' starts a comment), or the raw
octets of one message. In captures, UDP datagrams to or from ports 500 and
848 are decoded as IKE, port 4500 with the non-ESP marker (ESP and
NAT-keepalives are listed, not decoded).

options:
  --hex HEX        decode HEX (whitespace, ':' and a leading 0x are ignored)
  --port N[:marker]
                   also decode UDP port N in captures; ':marker' if its
                   datagrams carry the 4-octet non-ESP marker (repeatable)
  --marker         hex/raw input starts with the non-ESP marker
  --chain TYPE     hex/raw input is a bare payload chain starting with
                   payload TYPE (a name such as IDr or a number), e.g. the
                   decrypted content of an SK payload
  --json           print a JSON array instead of the tree (octets as hex)
  -h, --help       this text

exit status: 0 all messages decoded, 1 any failed, 2 usage error`;

/** Parses hex text: whitespace and ':' separators and a leading 0x are allowed. */
export function parseHex(text: string): Buffer {
  const clean = text.trim().replace(/^0x/i, '').replace(/[\s:]/g, '');
  if (!/^[0-9a-fA-F]*$/.test(clean)) throw new UsageError('hex input contains characters other than 0-9 a-f');
  if (clean.length % 2 !== 0) throw new UsageError(`hex input has an odd number of digits (${clean.length})`);
  return Buffer.from(clean, 'hex');
}

/** True if `bytes` is text made only of hex digits, separators and '#' comments. */
export function looksLikeHexText(bytes: Uint8Array): boolean {
  if (bytes.length === 0) return false;
  const text = Buffer.from(bytes).toString('latin1');
  const body = stripComments(text);
  return /[0-9a-fA-F]/.test(body) && /^[0-9a-fA-FxX\s:]*$/.test(body);
}

function stripComments(text: string): string {
  return text
    .split(/\r?\n/)
    .map((l) => l.replace(/#.*$/, ''))
    .join('\n');
}

/** Messages in a hex text file: separated by blank lines, '#' comments dropped. */
export function parseHexFile(text: string): Buffer[] {
  const chunks = stripComments(text)
    .split(/\n\s*\n/)
    .map((c) => c.trim())
    .filter((c) => c.length > 0);
  return chunks.map((c) => parseHex(c));
}

/** A payload type given by name (`IDr`, `SK`, `N`, `KD`...) or number. */
export function parsePayloadType(text: string): number {
  if (/^\d{1,3}$/.test(text) && Number(text) <= 255) return Number(text);
  for (let t = 1; t <= 255; t++) if (payloadTypeName(t).toLowerCase() === text.toLowerCase()) return t;
  const named = (PayloadType as Readonly<Record<string, number>>)[text];
  if (named !== undefined) return named;
  throw new UsageError(`unknown payload type "${text}"`);
}

/**
 * Decodes one IKE message, or with `chainFirst` a bare payload chain,
 * turning any failure into an item result (never throws).
 */
export function decodeOne(bytes: Uint8Array, origin: ItemOrigin, chainFirst?: number): DecodedItem {
  try {
    if (chainFirst !== undefined) {
      const payloads = decodePayloadChain(chainFirst, bytes);
      const payloadLengths = chainPayloadLengths(bytes, 0, payloads.length);
      return { origin, result: { kind: 'chain', firstType: chainFirst, payloads, octets: bytes.length, payloadLengths } };
    }
    const message = decodeMessage(bytes);
    const payloadLengths = wirePayloadLengths(bytes, message);
    return { origin, result: { kind: 'ike', message, octets: bytes.length, payloadLengths } };
  } catch (e) {
    if (e instanceof DecodeError) return { origin, result: { kind: 'error', error: e, octets: bytes.length } };
    // A decoder bug, not bad input; still no stack trace for the operator.
    const detail = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    return { origin, result: { kind: 'internal-error', detail, octets: bytes.length } };
  }
}

/** The decodable items of a capture: IKE datagrams on the given ports, plus ESP/keepalive notes. */
export function decodeCapture(capture: Capture, file: string, ports: ReadonlyMap<number, MarkerStyle>): DecodedItem[] {
  const items: DecodedItem[] = [];
  for (const d of capture.datagrams) {
    const style = markerStyleFor(d.srcPort, d.dstPort, ports);
    if (style === undefined) continue;
    const c = classifyDatagram(d.payload, style);
    const origin: ItemOrigin = {
      source: file,
      frame: d.frame,
      time: d.time,
      src: d.src,
      srcPort: d.srcPort,
      dst: d.dst,
      dstPort: d.dstPort,
      markerLength: c.kind === 'ike' ? c.markerLength : 0,
    };
    if (c.kind === 'ike') items.push(decodeOne(c.message, origin));
    else if (c.kind === 'esp') items.push({ origin, result: { kind: 'esp', spi: c.spi, octets: d.payload.length } });
    else if (c.kind === 'nat-keepalive') items.push({ origin, result: { kind: 'nat-keepalive' } });
    else items.push({ origin, result: { kind: 'invalid', reason: c.reason } });
  }
  return items;
}

function stripMarker(bytes: Buffer, marker: boolean, what: string): Buffer {
  if (!marker) return bytes;
  const c = classifyDatagram(bytes, 'non-esp-marker');
  if (c.kind !== 'ike') throw new UsageError(`${what}: --marker given but the input does not start with four zero octets`);
  return c.message;
}

function decodeFile(
  file: string,
  marker: boolean,
  chainFirst: number | undefined,
  ports: ReadonlyMap<number, MarkerStyle>, io: CliIo): DecodedItem[] | undefined {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    io.err(`gikev2 decode: cannot read ${file}: ${code}\n`);
    return undefined;
  }
  if (detectCaptureFormat(bytes)) {
    let capture: Capture;
    try {
      capture = readCapture(bytes);
    } catch (e) {
      if (e instanceof PcapError) {
        io.err(`gikev2 decode: ${file}: ${e.message}\n`);
        return undefined;
      }
      throw e;
    }
    const items = decodeCapture(capture, file, ports);
    if (items.length === 0) io.err(`gikev2 decode: ${file}: no datagrams on IKE ports\n`);
    return items;
  }
  if (looksLikeHexText(bytes)) {
    const messages = parseHexFile(bytes.toString('latin1'));
    return messages.map((m, i) =>
      decodeOne(stripMarker(m, marker, file), { source: file, index: messages.length > 1 ? i + 1 : undefined }, chainFirst),
    );
  }
  return [decodeOne(stripMarker(bytes, marker, file), { source: file }, chainFirst)];
}

export const decodeCommand: Command = {
  summary: 'decode IKEv2 / G-IKEv2 messages from hex, a file or a capture',
  usage: USAGE,
  async run(argv, io) {
    let parsed;
    try {
      parsed = parseArgs({
        args: [...argv],
        allowPositionals: true,
        options: {
          hex: { type: 'string', multiple: true },
          port: { type: 'string', multiple: true },
          marker: { type: 'boolean', default: false },
          chain: { type: 'string' },
          json: { type: 'boolean', default: false },
          help: { type: 'boolean', short: 'h', default: false },
        },
      });
    } catch (e) {
      throw new UsageError(e instanceof Error ? e.message : String(e));
    }
    const { values, positionals } = parsed;
    if (values.help) {
      io.out(`${USAGE}\n`);
      return EXIT_OK;
    }
    const hexes = values.hex ?? [];
    if (hexes.length === 0 && positionals.length === 0) throw new UsageError('nothing to decode: give --hex HEX or FILE');
    const ports = new Map(DEFAULT_IKE_PORTS);
    for (const spec of values.port ?? []) {
      try {
        const { port, style } = parsePortSpec(spec);
        ports.set(port, style);
      } catch (e) {
        if (e instanceof PortSpecError) throw new UsageError(e.message);
        throw e;
      }
    }

    const chainFirst = values.chain === undefined ? undefined : parsePayloadType(values.chain);
    const items: DecodedItem[] = [];
    let failed = false;
    hexes.forEach((h, i) => {
      const bytes = stripMarker(parseHex(h), values.marker, '--hex');
      items.push(decodeOne(bytes, { source: '--hex', index: hexes.length > 1 ? i + 1 : undefined }, chainFirst));
    });
    for (const file of positionals) {
      const fileItems = decodeFile(file, values.marker, chainFirst, ports, io);
      if (fileItems === undefined) failed = true;
      else items.push(...fileItems);
    }

    if (values.json) {
      io.out(`${JSON.stringify(items.map(itemToJson), null, 2)}\n`);
    } else {
      io.out(items.map((item) => renderItem(item)).join('\n'));
    }
    const bad = items.filter((i) => i.result.kind === 'error' || i.result.kind === 'internal-error').length;
    if (bad > 0) {
      io.err(`gikev2 decode: ${bad} of ${items.length} message(s) failed to decode\n`);
      failed = true;
    }
    return failed ? EXIT_FAILED : EXIT_OK;
  },
};
