/**
 * The group channel for applications: ESP-protected datagrams over UDP
 * multicast (the only I/O module in src/dataplane/; the protocol logic is in
 * channel-core.ts).
 *
 *   const ch = await openGroupChannel({ sas, multicastAddress: '239.1.2.3', port: 5000 });
 *   ch.on('message', (data, meta) => ...);
 *   await ch.send(Buffer.from('hello'));
 *   ch.updateSas(newTable);            // after every rekey
 *   ch.close();
 *
 * Two sockets: a receiver bound to (group, port) that joined the group, and
 * a sender on an ephemeral port with IP_MULTICAST_LOOP on, so members on the
 * same host (and tests on loopback) hear each other. A member's own packets
 * come back through the loop; they are recognised by their source (our send
 * socket's address and port) and not delivered ('ownLoopback' in stats).
 */
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { networkInterfaces } from 'node:os';
import {
  GroupChannelCore,
  type ChannelCoreStats,
  type ChannelDropReason,
  type GroupSaTable,
  type IvCounterRegistry,
  type SendRefusal,
} from './channel-core.ts';
import type { EspFramingMode } from './esp.ts';

export interface GroupChannelOptions {
  readonly sas: GroupSaTable;
  /** IPv4 multicast group (224.0.0.0/4). */
  readonly multicastAddress: string;
  readonly port: number;
  /** Local IPv4 address of the interface to join on and send from (default: the kernel's choice). */
  readonly interface?: string | undefined;
  /** Multicast TTL of the outer packets; default 1 (link-local). */
  readonly ttl?: number | undefined;
  /** 'transport' (default) or 'tunnel'; see esp.ts. */
  readonly mode?: EspFramingMode | undefined;
  readonly replayWindow?: number | undefined;
  /** Milliseconds since the epoch; Date.now by default (tests inject a clock). */
  readonly clock?: (() => number) | undefined;
  readonly ivCounters?: IvCounterRegistry | undefined;
}

export interface MessageMeta {
  readonly spi: number;
  readonly seq: number;
  readonly senderId: number | undefined;
  /** Outer UDP source. */
  readonly address: string;
  readonly port: number;
  /** Tunnel mode: inner source address. */
  readonly innerSource: string | undefined;
}

export interface GroupChannelStats extends ChannelCoreStats {
  /** Our own packets that came back through IP_MULTICAST_LOOP. */
  readonly ownLoopback: number;
}

/** Refused sends and socket errors. */
export class GroupChannelError extends Error {
  override readonly name = 'GroupChannelError';
  constructor(
    readonly reason: SendRefusal | 'closed' | 'socket',
    detail: string,
  ) {
    super(detail);
  }
}

export interface GroupChannel {
  /** Encrypts and multicasts one datagram; rejects with GroupChannelError if it cannot be sent safely. */
  send(data: Uint8Array): Promise<void>;
  on(event: 'message', listener: (data: Buffer, meta: MessageMeta) => void): this;
  on(event: 'drop', listener: (reason: ChannelDropReason, spi: number | undefined) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  off(event: 'message', listener: (data: Buffer, meta: MessageMeta) => void): this;
  updateSas(table: GroupSaTable): void;
  stats(): GroupChannelStats;
  close(): void;
}

class GroupChannelImpl extends EventEmitter implements GroupChannel {
  private closed = false;
  private ownLoopback = 0;
  private readonly ownAddresses: ReadonlySet<string>;
  private readonly ownPort: number;

  constructor(
    private readonly core: GroupChannelCore,
    private readonly rx: dgram.Socket,
    private readonly tx: dgram.Socket,
    private readonly opts: GroupChannelOptions,
    private readonly clock: () => number,
  ) {
    super();
    const a = tx.address();
    this.ownPort = a.port;
    // Bound to a wildcard: our packets leave from any of this host's addresses.
    this.ownAddresses =
      a.address === '0.0.0.0'
        ? new Set(
            Object.values(networkInterfaces())
              .flatMap((list) => list ?? [])
              .map((i) => i.address),
          )
        : new Set([a.address]);
    rx.on('message', (msg, rinfo) => this.receive(msg, rinfo));
    rx.on('error', (err) => this.emit('error', err));
    tx.on('error', (err) => this.emit('error', err));
  }

  private receive(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (rinfo.port === this.ownPort && this.ownAddresses.has(rinfo.address)) {
      this.ownLoopback++;
      return;
    }
    const r = this.core.open(msg, this.clock());
    if (!r.ok) {
      this.emit('drop', r.reason, r.spi);
      return;
    }
    const d = r.datagram;
    this.emit('message', d.data, {
      spi: d.spi,
      seq: d.seq,
      senderId: d.senderId,
      address: rinfo.address,
      port: rinfo.port,
      innerSource: d.innerSource,
    } satisfies MessageMeta);
  }

  send(data: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new GroupChannelError('closed', 'the channel is closed'));
    const r = this.core.seal(data, this.clock());
    if (!r.ok) return Promise.reject(new GroupChannelError(r.reason, `cannot send: ${r.reason}`));
    return new Promise((resolve, reject) => {
      this.tx.send(r.packet, this.opts.port, this.opts.multicastAddress, (err) => {
        if (err) reject(new GroupChannelError('socket', err.message));
        else resolve();
      });
    });
  }

  updateSas(table: GroupSaTable): void {
    this.core.updateSas(table, this.clock());
  }

  stats(): GroupChannelStats {
    return { ...this.core.stats(this.clock()), ownLoopback: this.ownLoopback };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.rx.close();
    this.tx.close();
  }
}

function bind(socket: dgram.Socket, port: number, address: string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    socket.once('error', onError);
    socket.bind(port, address, () => {
      socket.off('error', onError);
      resolve();
    });
  });
}

/** Opens the sockets, joins the group and starts delivering authenticated datagrams. */
export async function openGroupChannel(opts: GroupChannelOptions): Promise<GroupChannel> {
  const clock = opts.clock ?? Date.now;
  const core = new GroupChannelCore(
    {
      groupAddress: opts.multicastAddress,
      groupPort: opts.port,
      mode: opts.mode,
      sourceAddress: opts.interface,
      replayWindow: opts.replayWindow,
      ivCounters: opts.ivCounters,
    },
    opts.sas,
    clock(),
  );
  const rx = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  const tx = dgram.createSocket({ type: 'udp4' });
  try {
    // Bound to the group address: only this group's datagrams reach the socket.
    await bind(rx, opts.port, opts.multicastAddress);
    rx.addMembership(opts.multicastAddress, opts.interface);
    await bind(tx, 0, opts.interface);
    if (opts.interface !== undefined) tx.setMulticastInterface(opts.interface);
    tx.setMulticastLoopback(true);
    tx.setMulticastTTL(opts.ttl ?? 1);
  } catch (e) {
    rx.close();
    tx.close();
    throw new GroupChannelError('socket', e instanceof Error ? e.message : String(e));
  }
  return new GroupChannelImpl(core, rx, tx, opts, clock);
}
