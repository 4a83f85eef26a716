import { strict as assert } from 'node:assert';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import type { DatagramEngine, Endpoint, LocalEndpoint, Output, Outgoing } from '../../src/ike/io-types.ts';
import { UdpAdapter } from '../../src/node/udp.ts';

interface RxEvent {
  readonly data: string;
  readonly from: Endpoint;
  readonly local: LocalEndpoint;
}

/** Echoes every message back as "echo:<msg>" from the socket it came in on; timers on demand. */
class EchoEngine implements DatagramEngine<RxEvent | string> {
  received: RxEvent[] = [];
  timeouts: number[] = [];
  deadline: number | undefined;
  /** Deadlines to set after each timeout call. */
  followUps: (number | undefined)[] = [];
  throwOn = '';

  receive(data: Buffer, from: Endpoint, local: LocalEndpoint, _now: number): Output<RxEvent | string> {
    if (data.toString() === this.throwOn) throw new Error('engine bug');
    const ev = { data: data.toString(), from, local };
    this.received.push(ev);
    return { send: [{ to: from, local, data: Buffer.from(`echo:${data.toString()}`) }], events: [ev] };
  }
  timeout(now: number): Output<RxEvent | string> {
    this.timeouts.push(now);
    this.deadline = this.followUps.shift();
    return { send: [], events: [`timeout#${this.timeouts.length}`] };
  }
  nextTimeout(): number | undefined {
    return this.deadline;
  }
}

const clients: dgram.Socket[] = [];
after(() => clients.forEach((c) => c.close()));

async function client(type: 'udp4' | 'udp6' = 'udp4', address = '127.0.0.1'): Promise<dgram.Socket> {
  const s = dgram.createSocket(type);
  clients.push(s);
  s.bind(0, address);
  await once(s, 'listening');
  return s;
}

async function exchange(c: dgram.Socket, data: Buffer, to: Endpoint): Promise<Buffer> {
  const reply = once(c, 'message') as Promise<[Buffer, dgram.RemoteInfo]>;
  c.send(data, to.port, to.address);
  return (await reply)[0];
}

const tick = (ms = 30): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('UdpAdapter', () => {
  it('passes datagrams of a plain socket through unchanged and counts them', async () => {
    const engine = new EchoEngine();
    const events: unknown[] = [];
    const a = await UdpAdapter.open(engine, [{ address: '127.0.0.1', port: 0, marker: false }], {
      onEvent: (e) => events.push(e),
    });
    try {
      const local = a.locals[0]!;
      assert.equal(local.marker, false);
      assert.ok(local.port > 0);
      const c = await client();
      const reply = await exchange(c, Buffer.from('hello'), local);
      assert.equal(reply.toString(), 'echo:hello');
      assert.equal(engine.received[0]!.data, 'hello');
      assert.deepEqual(engine.received[0]!.from, { address: '127.0.0.1', port: c.address().port });
      assert.deepEqual(engine.received[0]!.local, local);
      assert.equal(events.length, 1);
      const n = a.counters;
      assert.equal(n.ikeReceived, 1);
      assert.equal(n.ikeSent, 1);
      assert.equal(n.ikeOctetsReceived, 5);
      assert.equal(n.ikeOctetsSent, 10);
    } finally {
      await a.close();
    }
  });

  it('strips and adds the non-ESP marker on a marker socket, drops keepalives, ESP and runts', async () => {
    const engine = new EchoEngine();
    const esp: Buffer[] = [];
    const a = await UdpAdapter.open(
      engine,
      [
        { address: '127.0.0.1', port: 0, marker: false },
        { address: '127.0.0.1', port: 0, marker: true },
      ],
      { onEsp: (d) => esp.push(d) },
    );
    try {
      const natt = a.locals[1]!;
      assert.equal(natt.marker, true);
      const c = await client();
      const reply = await exchange(c, Buffer.concat([Buffer.alloc(4), Buffer.from('ike')]), natt);
      assert.deepEqual(reply, Buffer.concat([Buffer.alloc(4), Buffer.from('echo:ike')]));
      assert.equal(engine.received[0]!.data, 'ike');
      assert.equal(engine.received[0]!.local.marker, true);

      c.send(Buffer.from([0xff]), natt.port, natt.address); // NAT keepalive
      c.send(Buffer.from('\x00\x00\x10\x01espdata'), natt.port, natt.address); // ESP, SPI 0x1001
      c.send(Buffer.from([0, 0]), natt.port, natt.address); // runt
      // The same bytes on the plain socket are IKE as far as the adapter is concerned.
      await exchange(c, Buffer.from([0xff]), a.locals[0]!);
      await tick();
      assert.equal(engine.received.length, 2);
      assert.deepEqual(esp, [Buffer.from('\x00\x00\x10\x01espdata')]);
      const n = a.counters;
      assert.equal(n.natKeepalivesReceived, 1);
      assert.equal(n.espReceived, 1);
      assert.equal(n.invalidDropped, 1);
      assert.equal(n.ikeReceived, 2);
    } finally {
      await a.close();
    }
  });

  it('sends engine-initiated messages from the named socket, and keepalives without marker', async () => {
    const engine = new EchoEngine();
    const errors: string[] = [];
    const a = await UdpAdapter.open(
      engine,
      [
        { address: '127.0.0.1', port: 0, marker: false },
        { address: '127.0.0.1', port: 0, marker: true },
      ],
      { onError: (e, ctx) => errors.push(`${ctx}: ${e.message}`) },
    );
    try {
      const [plain, natt] = [a.locals[0]!, a.locals[1]!];
      const c = await client();
      const to = { address: '127.0.0.1', port: c.address().port };
      const got: [Buffer, number][] = [];
      c.on('message', (m, r) => got.push([m, r.port]));
      const sends: Outgoing[] = [
        { to, data: Buffer.from('default') },
        { to, local: natt, data: Buffer.from('floated') },
        { to, local: natt, data: Buffer.alloc(0), kind: 'nat-keepalive' },
        { to, local: { address: '127.0.0.1', port: 1 }, data: Buffer.from('nowhere') },
      ];
      a.act(() => ({ send: sends, events: [] }));
      await tick(100);
      assert.deepEqual(
        got.map(([m, p]) => [m.toString('hex'), p]),
        [
          [Buffer.from('default').toString('hex'), plain.port],
          ['00000000' + Buffer.from('floated').toString('hex'), natt.port],
          ['ff', natt.port],
        ],
      );
      assert.equal(a.counters.sendErrors, 1);
      assert.equal(a.counters.natKeepalivesSent, 1);
      assert.deepEqual(errors, ['send: no socket for local 127.0.0.1:1']);
    } finally {
      await a.close();
    }
  });

  it('arms one timer for nextTimeout and re-arms after every call', async () => {
    const engine = new EchoEngine();
    // Any clock will do; this one is offset from performance.now().
    const clock = { now: () => 1e6 + performance.now() };
    const start = clock.now();
    engine.deadline = start + 20;
    engine.followUps = [start + 40, undefined];
    const events: unknown[] = [];
    const a = await UdpAdapter.open(engine, [{ address: '127.0.0.1', port: 0, marker: false }], {
      clock,
      onEvent: (e) => events.push(e),
    });
    try {
      await tick(150);
      assert.equal(engine.timeouts.length, 2);
      assert.ok(engine.timeouts[0]! >= start + 20);
      assert.ok(engine.timeouts[1]! >= start + 40);
      assert.deepEqual(events, ['timeout#1', 'timeout#2']);
      // A call from outside that sets a new deadline arms the timer again.
      a.act((now) => {
        engine.deadline = now + 10;
        return { send: [], events: [] };
      });
      await tick(80);
      assert.equal(engine.timeouts.length, 3);
      assert.equal(a.counters.timeouts, 3);
    } finally {
      await a.close();
    }
  });

  it('survives an engine that throws, reporting the error', async () => {
    const engine = new EchoEngine();
    engine.throwOn = 'boom';
    const errors: string[] = [];
    const a = await UdpAdapter.open(engine, [{ address: '127.0.0.1', port: 0, marker: false }], {
      onError: (e, ctx) => errors.push(`${ctx}: ${e.message}`),
    });
    try {
      const c = await client();
      c.send(Buffer.from('boom'), a.locals[0]!.port, '127.0.0.1');
      const reply = await exchange(c, Buffer.from('ok'), a.locals[0]!);
      assert.equal(reply.toString(), 'echo:ok');
      assert.equal(a.counters.engineErrors, 1);
      assert.deepEqual(errors, ['engine.receive: engine bug']);
    } finally {
      await a.close();
    }
  });

  it('closes cleanly: no timer fires, nothing is delivered afterwards, the port is free again', async () => {
    const engine = new EchoEngine();
    engine.deadline = performance.now() + 30;
    const a = await UdpAdapter.open(engine, [{ address: '127.0.0.1', port: 0, marker: false }]);
    const port = a.locals[0]!.port;
    await a.close();
    await a.close(); // idempotent
    await tick(60);
    assert.equal(engine.timeouts.length, 0);
    const again = await UdpAdapter.open(engine, [{ address: '127.0.0.1', port, marker: false }]);
    await again.close();
  });

  it('fails to open when a port is taken, closing what it had bound', async () => {
    const engine = new EchoEngine();
    const a = await UdpAdapter.open(engine, [{ address: '127.0.0.1', port: 0, marker: false }]);
    try {
      await assert.rejects(
        UdpAdapter.open(engine, [
          { address: '127.0.0.1', port: 0, marker: true },
          { address: '127.0.0.1', port: a.locals[0]!.port, marker: false },
        ]),
      );
      await assert.rejects(UdpAdapter.open(engine, []));
      await assert.rejects(UdpAdapter.open(engine, [{ address: 'localhost', port: 0, marker: false }]));
    } finally {
      await a.close();
    }
  });

  it('works over IPv6 loopback', async () => {
    const engine = new EchoEngine();
    const a = await UdpAdapter.open(engine, [{ address: '::1', port: 0, marker: true }]);
    try {
      const c = await client('udp6', '::1');
      const reply = await exchange(c, Buffer.concat([Buffer.alloc(4), Buffer.from('v6')]), a.locals[0]!);
      assert.deepEqual(reply, Buffer.concat([Buffer.alloc(4), Buffer.from('echo:v6')]));
      assert.equal(engine.received[0]!.from.address, '::1');
    } finally {
      await a.close();
    }
  });

  it('multicast: receive sockets added later join a group and share its port; a sender socket reaches them all', async () => {
    const group = `239.77.${process.pid % 250}.${1 + Math.floor(Math.random() * 250)}`;
    const sender = new EchoEngine();
    const tx = await UdpAdapter.open(sender, [{ address: '127.0.0.1', port: 0, marker: false, multicast: { interface: '127.0.0.1', loopback: true } }]);
    const engines = [new EchoEngine(), new EchoEngine()];
    const rx = await Promise.all(engines.map((e) => UdpAdapter.open(e, [{ address: '127.0.0.1', port: 0, marker: false }])));
    try {
      const port = (await client()).address().port; // a free port, released by the closing client below
      clients.pop()!.close();
      for (const a of rx) {
        const local = await a.addSocket({ address: group, port, marker: false, reuseAddr: true, multicast: { join: [group], interface: '127.0.0.1' } });
        assert.deepEqual(local, { address: group, port, marker: false });
      }
      // No `local`: the multicast-configured socket; `local` with port 0: any socket on that address.
      tx.act(() => ({ send: [{ to: { address: group, port }, data: Buffer.from('one') }, { to: { address: group, port }, local: { address: '127.0.0.1', port: 0 }, data: Buffer.from('two') }], events: [] }));
      for (let i = 0; i < 100 && engines.some((e) => e.received.length < 2); i++) await tick(10);
      for (const e of engines) {
        assert.deepEqual(e.received.map((r) => r.data), ['one', 'two']);
        assert.equal(e.received[0]!.local.address, group);
      }
      // The joined socket is never picked to send from: the echo goes out of the unicast socket.
      assert.equal(rx[0]!.counters.sendErrors, 0);
      assert.equal(await rx[0]!.removeSocket({ address: group, port }), true);
      assert.equal(rx[0]!.locals.length, 1);
    } finally {
      await Promise.all([tx, ...rx].map((a) => a.close()));
    }
  });
});
