/**
 * tshark captures and Wireshark's independent IKEv2 decryption.
 *
 *     const cap = await startCapture({ iface: 'lo', filter: 'udp portrange 5000-5003' });
 *     ... traffic ...
 *     await cap.stop();
 *     const rep = decryptCheck(cap.path, [ikev2DecryptionLine(keys)], [5000, 5002]);
 *     assert.ok(rep.decryptedCount > 0); assert.equal(rep.badIcvCount, 0);
 *     await cap.dispose();
 *
 * Verified with TShark 4.0.17 (field names from `tshark -G fields`):
 * isakmp.ispi, isakmp.rspi, isakmp.exchangetype, isakmp.messageid,
 * isakmp.flag_r, isakmp.typepayload (every payload type, outer then inner),
 * isakmp.enc.decrypted (present when Wireshark decrypted an SK/SKF payload —
 * ALSO when the ICV then fails), isakmp.ikev2.integrity_checksum (expert
 * info, present only when the ICV is wrong), udpencap.non_esp_marker.
 * Wireshark 4.0 has no ChaCha20-Poly1305 entry in its IKEv2 table and does
 * not dissect GSA/KD contents (it still lists their payload types).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTool } from '../../helpers/tools.ts';
import { terminate } from './charon.ts';

export const TSHARK_BIN = '/usr/bin/tshark';

/** requireTool-style gate for tshark. */
export function tsharkUnavailable(): string | undefined {
  return requireTool('tshark', [TSHARK_BIN, '--version'], 'independent capture and IKEv2 decryption');
}

export interface CaptureOptions {
  /** Interface, default 'lo'. In a test net use its bridge ('br0') with netns = net.switchNs. */
  iface?: string;
  /** BPF capture filter, e.g. 'udp portrange 5000-5003'. */
  filter?: string;
  /** Capture inside this network namespace (ip netns exec). */
  netns?: string;
  /** Output file; default <temp dir>/capture.pcapng. */
  path?: string;
  /** Deadline for tshark to report "Capture started.", default 10 s. */
  startTimeoutMs?: number;
}

export interface Capture {
  readonly path: string;
  /**
   * Waits `settleMs` (default 400), then stops tshark (SIGINT, SIGKILL after
   * 5 s) and resolves with the packet count tshark reported. Idempotent.
   * The wait is needed: libpcap (TPACKET_V3) hands packets to dumpcap only
   * when a ring block retires (~250 ms timeout here), and SIGINT discards an
   * unretired block, so packets sent <250 ms before the stop are lost.
   */
  stop(opts?: { settleMs?: number }): Promise<{ path: string; packets: number | undefined }>;
  /** stop() and remove the temp dir (kept when KEEP_INTEROP=1 or when `path` was given). */
  dispose(): Promise<void>;
  /** tshark's stderr so far. */
  stderr(): string;
}

/** Starts tshark writing pcapng; resolves once tshark logs "Capture started." (packets from then on are captured). */
export async function startCapture(opts: CaptureOptions = {}): Promise<Capture> {
  const ownDir = opts.path === undefined ? mkdtempSync(join(tmpdir(), 'gk-capture-')) : undefined;
  const path = opts.path ?? join(ownDir!, 'capture.pcapng');
  const args = ['-n', '-i', opts.iface ?? 'lo', '-w', path];
  if (opts.filter !== undefined) args.push('-f', opts.filter);
  const argv = opts.netns !== undefined ? ['/usr/sbin/ip', 'netns', 'exec', opts.netns, TSHARK_BIN, ...args] : [TSHARK_BIN, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => (err += d));
  const onExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', onExit);

  const started = await new Promise<string | undefined>((resolve) => {
    const t = setTimeout(() => finish(`timed out after ${opts.startTimeoutMs ?? 10_000} ms`), opts.startTimeoutMs ?? 10_000);
    const check = (): void => {
      // "Capturing on 'lo'" comes ~0.3 s BEFORE dumpcap really captures; packets sent
      // in between are lost. "[Main MESSAGE] -- Capture started." marks the real start.
      if (/Capture started\./.test(err)) finish(undefined);
    };
    const exited = (): void => finish(`tshark exited (${child.exitCode ?? child.signalCode})`);
    const spawnErr = (e: Error): void => finish(`spawn failed: ${e.message}`);
    function finish(why: string | undefined): void {
      clearTimeout(t);
      child.stderr.off('data', check);
      child.off('exit', exited);
      child.off('error', spawnErr);
      resolve(why);
    }
    child.stderr.on('data', check);
    child.once('exit', exited);
    child.once('error', spawnErr);
    check();
  });

  let stopping: Promise<{ path: string; packets: number | undefined }> | undefined;
  const stop = (o: { settleMs?: number } = {}): Promise<{ path: string; packets: number | undefined }> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        await new Promise((r) => setTimeout(r, o.settleMs ?? 400));
      }
      await terminate(child, 5000, 'SIGINT');
      process.off('exit', onExit);
      // tshark prints "N packets captured" just before exiting; stderr may lag the exit event slightly.
      if (!child.stderr.closed) {
        await new Promise<void>((res) => {
          const t = setTimeout(res, 2000);
          child.stderr.once('close', () => {
            clearTimeout(t);
            res();
          });
        });
      }
      const m = /(\d+) packets? captured/.exec(err);
      return { path, packets: m ? Number(m[1]) : undefined };
    })();
    return stopping;
  };
  const dispose = async (): Promise<void> => {
    await stop();
    if (ownDir === undefined) return;
    if (process.env['KEEP_INTEROP'] === '1') console.warn(`KEEP_INTEROP=1: kept ${path}`);
    else rmSync(ownDir, { recursive: true, force: true });
  };
  if (started !== undefined) {
    await dispose();
    throw new Error(`tshark did not start capturing: ${started}\n${err}`);
  }
  return { path, stop, dispose, stderr: () => err };
}

// ---------------------------------------------------------------------------
// decryption
// ---------------------------------------------------------------------------

/** Wireshark 4.0's names in the IKEv2 decryption table (exact strings). */
export const WS_ENCR: Readonly<Record<string, string>> = {
  NULL: 'NULL [RFC2410]',
  AES_CBC_128: 'AES-CBC-128 [RFC3602]',
  AES_CBC_192: 'AES-CBC-192 [RFC3602]',
  AES_CBC_256: 'AES-CBC-256 [RFC3602]',
  AES_CTR_128: 'AES-CTR-128 [RFC5930]',
  AES_CTR_192: 'AES-CTR-192 [RFC5930]',
  AES_CTR_256: 'AES-CTR-256 [RFC5930]',
  AES_GCM_8_128: 'AES-GCM-128 with 8 octet ICV [RFC5282]',
  AES_GCM_8_192: 'AES-GCM-192 with 8 octet ICV [RFC5282]',
  AES_GCM_8_256: 'AES-GCM-256 with 8 octet ICV [RFC5282]',
  AES_GCM_12_128: 'AES-GCM-128 with 12 octet ICV [RFC5282]',
  AES_GCM_12_192: 'AES-GCM-192 with 12 octet ICV [RFC5282]',
  AES_GCM_12_256: 'AES-GCM-256 with 12 octet ICV [RFC5282]',
  AES_GCM_16_128: 'AES-GCM-128 with 16 octet ICV [RFC5282]',
  AES_GCM_16_192: 'AES-GCM-192 with 16 octet ICV [RFC5282]',
  AES_GCM_16_256: 'AES-GCM-256 with 16 octet ICV [RFC5282]',
  AES_CCM_8_128: 'AES-CCM-128 with 8 octet ICV [RFC5282]',
  AES_CCM_8_192: 'AES-CCM-192 with 8 octet ICV [RFC5282]',
  AES_CCM_8_256: 'AES-CCM-256 with 8 octet ICV [RFC5282]',
  AES_CCM_12_128: 'AES-CCM-128 with 12 octet ICV [RFC5282]',
  AES_CCM_12_192: 'AES-CCM-192 with 12 octet ICV [RFC5282]',
  AES_CCM_12_256: 'AES-CCM-256 with 12 octet ICV [RFC5282]',
  AES_CCM_16_128: 'AES-CCM-128 with 16 octet ICV [RFC5282]',
  AES_CCM_16_192: 'AES-CCM-192 with 16 octet ICV [RFC5282]',
  AES_CCM_16_256: 'AES-CCM-256 with 16 octet ICV [RFC5282]',
};

export const WS_INTEG: Readonly<Record<string, string>> = {
  NONE: 'NONE [RFC4306]',
  HMAC_MD5_96: 'HMAC_MD5_96 [RFC2403]',
  HMAC_SHA1_96: 'HMAC_SHA1_96 [RFC2404]',
  HMAC_SHA2_256_128: 'HMAC_SHA2_256_128 [RFC4868]',
  HMAC_SHA2_384_192: 'HMAC_SHA2_384_192 [RFC4868]',
  HMAC_SHA2_512_256: 'HMAC_SHA2_512_256 [RFC4868]',
};

/**
 * Wireshark algorithm names from a charon proposal string as logged
 * ('AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519',
 *  'AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519').
 */
export function wiresharkAlgsFromCharonProposal(proposal: string): { encr: string; integ: string } {
  const parts = proposal.split('/');
  const encrKey = parts[0] ?? '';
  const encr = WS_ENCR[encrKey];
  if (encr === undefined) throw new Error(`no Wireshark IKEv2 decryption entry for '${encrKey}' (ChaCha20-Poly1305 is not supported by Wireshark 4.0)`);
  const aead = /_(GCM|CCM)_/.test(encrKey);
  const integKey = aead ? 'NONE' : parts.find((p) => p.startsWith('HMAC_')) ?? '';
  const integ = WS_INTEG[integKey];
  if (integ === undefined) throw new Error(`no Wireshark IKEv2 integrity entry for '${integKey}'`);
  return { encr, integ };
}

export interface Ikev2SaKeys {
  /** 16 hex digits each. */
  spiI: string;
  spiR: string;
  /** Hex; for AEAD key || salt. */
  skEi: string;
  skEr: string;
  skAi?: string | undefined;
  skAr?: string | undefined;
}

/**
 * One `ikev2_decryption_table` line. `encr`/`integ` are Wireshark names
 * (WS_ENCR / WS_INTEG values); or pass `proposal` (charon's logged form).
 */
export function ikev2DecryptionLine(k: Ikev2SaKeys & { proposal?: string | undefined }, algs?: { encr: string; integ: string }): string {
  const a = algs ?? (k.proposal !== undefined ? wiresharkAlgsFromCharonProposal(k.proposal) : undefined);
  if (a === undefined) throw new Error('ikev2DecryptionLine: need algs or a charon proposal');
  const hex = (s: string | undefined): string => (s ?? '').toLowerCase();
  return [hex(k.spiI), hex(k.spiR), hex(k.skEi), hex(k.skEr), `"${a.encr}"`, hex(k.skAi), hex(k.skAr), `"${a.integ}"`].join(',');
}

/** IKEv2 / G-IKEv2 payload type names (RFC 7296, 7383, 9838). */
export const PAYLOAD_NAMES: Readonly<Record<number, string>> = {
  33: 'SA', 34: 'KE', 35: 'IDi', 36: 'IDr', 37: 'CERT', 38: 'CERTREQ', 39: 'AUTH', 40: 'Nonce', 41: 'N',
  42: 'D', 43: 'V', 44: 'TSi', 45: 'TSr', 46: 'SK', 47: 'CP', 48: 'EAP', 49: 'GSPM', 50: 'IDg', 51: 'GSA',
  52: 'KD', 53: 'SKF', 54: 'PS',
};

export const EXCHANGE_NAMES: Readonly<Record<number, string>> = {
  34: 'IKE_SA_INIT', 35: 'IKE_AUTH', 36: 'CREATE_CHILD_SA', 37: 'INFORMATIONAL', 39: 'GSA_AUTH',
  40: 'GSA_REGISTRATION', 41: 'GSA_REKEY', 42: 'GSA_INBAND_REKEY', 43: 'IKE_INTERMEDIATE', 44: 'IKE_FOLLOWUP_KE',
};

export interface DecryptedFrame {
  frame: number;
  srcPort: number;
  dstPort: number;
  spiI: string;
  spiR: string;
  exchange: string;
  exchangeType: number;
  messageId: number;
  isResponse: boolean;
  /** Has an SK (46) or SKF (53) payload. */
  encrypted: boolean;
  /** Wireshark decrypted it (true even if the ICV is then wrong). */
  decrypted: boolean;
  badIcv: boolean;
  /** All payload names in order, outer then inner. */
  payloads: string[];
  /** Payload names after the first SK/SKF, i.e. what was inside (only when decrypted). */
  innerPayloads: string[];
  /** Frame carries the non-ESP marker (udpencap). */
  nonEspMarker: boolean;
}

export interface DecryptReport {
  frames: DecryptedFrame[];
  /** Frames with an SK/SKF payload. */
  encryptedCount: number;
  /** Frames Wireshark decrypted AND whose ICV checked out. */
  decryptedCount: number;
  /** Frames whose ICV Wireshark found wrong (wrong keys or corrupt message). */
  badIcvCount: number;
}

const FIELDS = [
  'frame.number', 'udp.srcport', 'udp.dstport', 'isakmp.ispi', 'isakmp.rspi', 'isakmp.exchangetype',
  'isakmp.messageid', 'isakmp.flag_r', 'isakmp.typepayload', 'isakmp.enc.decrypted',
  'isakmp.ikev2.integrity_checksum', 'udpencap.non_esp_marker',
] as const;

/**
 * Dissects `pcapPath` with the given IKEv2 decryption-table lines.
 * `decodeAs`: UDP ports to decode as udpencap (non-ESP marker), i.e. any
 * charon/engine port other than 500 and 4500. Only ISAKMP frames are returned.
 */
export function decryptCheck(pcapPath: string, keyLines: readonly string[], decodeAs: readonly number[] = []): DecryptReport {
  const args = ['-n', '-r', pcapPath, '-Y', 'isakmp', '-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=a', '-E', 'aggregator=,'];
  for (const l of keyLines) args.push('-o', `uat:ikev2_decryption_table:${l}`);
  for (const p of decodeAs) args.push('-d', `udp.port==${p},udpencap`);
  for (const f of FIELDS) args.push('-e', f);
  const r = spawnSync(TSHARK_BIN, args, { encoding: 'utf8', timeout: 30_000, maxBuffer: 256 * 1024 * 1024 });
  if (r.error) throw new Error(`tshark: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`tshark exited ${r.status}: ${r.stderr}`);
  const frames: DecryptedFrame[] = [];
  for (const line of r.stdout.split('\n')) {
    if (line.trim() === '') continue;
    const c = line.split('\t');
    const f = (name: (typeof FIELDS)[number]): string => c[FIELDS.indexOf(name)] ?? '';
    const first = (name: (typeof FIELDS)[number]): string => f(name).split(',')[0] ?? '';
    const types = f('isakmp.typepayload').split(',').filter((t) => t !== '').map(Number);
    const names = types.map((t) => PAYLOAD_NAMES[t] ?? `#${t}`);
    const skAt = types.findIndex((t) => t === 46 || t === 53);
    const decrypted = f('isakmp.enc.decrypted') !== '';
    const exch = Number(first('isakmp.exchangetype'));
    frames.push({
      frame: Number(f('frame.number')),
      srcPort: Number(first('udp.srcport')),
      dstPort: Number(first('udp.dstport')),
      spiI: first('isakmp.ispi'),
      spiR: first('isakmp.rspi'),
      exchange: EXCHANGE_NAMES[exch] ?? `#${exch}`,
      exchangeType: exch,
      messageId: Number(first('isakmp.messageid')),
      isResponse: ['1', 'True', 'true'].includes(first('isakmp.flag_r')),
      encrypted: skAt >= 0,
      decrypted,
      badIcv: f('isakmp.ikev2.integrity_checksum') !== '',
      payloads: names,
      innerPayloads: decrypted && skAt >= 0 ? names.slice(skAt + 1) : [],
      nonEspMarker: f('udpencap.non_esp_marker') !== '',
    });
  }
  return {
    frames,
    encryptedCount: frames.filter((x) => x.encrypted).length,
    decryptedCount: frames.filter((x) => x.decrypted && !x.badIcv).length,
    badIcvCount: frames.filter((x) => x.badIcv).length,
  };
}

