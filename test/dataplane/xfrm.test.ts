import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { GroupSa } from '../../src/dataplane/channel-core.ts';
import { XfrmBackend, type XfrmGroupConfig } from '../../src/dataplane/xfrm.ts';
import { EncrId, IntegId, SnId } from '../../src/wire/iana.ts';
import { netnsUnavailable } from '../interop/harness/netns.ts';

const IP = '/usr/sbin/ip';

function gcmSa(spi: number): GroupSa {
  return {
    spi,
    algorithm: { encr: EncrId.AES_GCM_16, encrKeyBits: 128 },
    keys: { encrKey: randomBytes(20), integKey: Buffer.alloc(0) },
    sn: SnId.SEQ32,
  };
}

function cbcSa(spi: number): GroupSa {
  return {
    spi,
    algorithm: { encr: EncrId.AES_CBC, encrKeyBits: 256, integ: IntegId.HMAC_SHA2_256_128 },
    keys: { encrKey: randomBytes(32), integKey: randomBytes(32) },
    sn: SnId.UNSPECIFIED32,
  };
}

function chachaSa(spi: number): GroupSa {
  return {
    spi,
    algorithm: { encr: EncrId.CHACHA20_POLY1305 },
    keys: { encrKey: randomBytes(36), integKey: Buffer.alloc(0) },
    sn: SnId.SEQ32,
  };
}

const hexKey = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('XFRM rendering and dry-run', () => {
  const gcm = gcmSa(0x1001);
  const cbc = cbcSa(0x1002);
  const chacha = chachaSa(0x1003);
  const cfg: XfrmGroupConfig = {
    groupAddress: '239.1.2.3',
    port: 5000,
    mode: 'transport',
    localAddress: '10.99.0.1',
    send: true,
    receive: true,
    sas: [gcm, cbc, chacha],
  };

  it('renders policies and group states with the kernel algorithm names', () => {
    const cmds = new XfrmBackend({ netns: 'ns1', showKeys: true }).render(cfg);
    assert.deepEqual(
      cmds.map((c) => c.display),
      [
        'ip -n ns1 xfrm policy add src 10.99.0.1/32 dst 239.1.2.3/32 proto udp dport 5000 dir out tmpl src 10.99.0.1 dst 239.1.2.3 proto esp reqid 1 mode transport',
        'ip -n ns1 xfrm policy add src 0.0.0.0/0 dst 239.1.2.3/32 proto udp dport 5000 dir in tmpl dst 239.1.2.3 proto esp reqid 1 mode transport',
        `ip -n ns1 xfrm state add src 10.99.0.1 dst 239.1.2.3 proto esp spi 0x00001001 reqid 1 mode transport replay-window 32 aead 'rfc4106(gcm(aes))' 0x${hexKey(gcm.keys.encrKey)} 128`,
        `ip -n ns1 xfrm state add src 10.99.0.1 dst 239.1.2.3 proto esp spi 0x00001002 reqid 1 mode transport replay-window 0 enc 'cbc(aes)' 0x${hexKey(cbc.keys.encrKey)} auth-trunc 'hmac(sha256)' 0x${hexKey(cbc.keys.integKey)} 128`,
        `ip -n ns1 xfrm state add src 10.99.0.1 dst 239.1.2.3 proto esp spi 0x00001003 reqid 1 mode transport replay-window 32 aead 'rfc7539esp(chacha20,poly1305)' 0x${hexKey(chacha.keys.encrKey)} 128`,
      ],
    );
    // argv goes to execFile unquoted, keys included.
    assert.deepEqual(cmds[2]!.argv.slice(-3), ['rfc4106(gcm(aes))', `0x${hexKey(gcm.keys.encrKey)}`, '128']);
  });

  it('receive-only tunnel mode: wildcard source, inbound policy only', () => {
    const cmds = new XfrmBackend().render({ ...cfg, mode: 'tunnel', send: false, localAddress: undefined, sas: [gcm] });
    assert.deepEqual(
      cmds.map((c) => c.display.replace(/<key \d+ octets>/, 'KEY')),
      [
        'ip xfrm policy add src 0.0.0.0/0 dst 239.1.2.3/32 proto udp dport 5000 dir in tmpl dst 239.1.2.3 proto esp reqid 1 mode tunnel',
        "ip xfrm state add src 0.0.0.0 dst 239.1.2.3 proto esp spi 0x00001001 reqid 1 mode tunnel replay-window 32 aead 'rfc4106(gcm(aes))' KEY 128",
      ],
    );
  });

  it('dry-run prints every command with keys masked and runs nothing', () => {
    const lines: string[] = [];
    const backend = new XfrmBackend({
      dryRun: true,
      log: (l) => lines.push(l),
      run: () => assert.fail('dry-run must not execute'),
    });
    const out = backend.apply(cfg);
    assert.ok(out.every((o) => o.ok && o.dryRun));
    backend.apply({ ...cfg, sas: [gcm] }); // cbc and chacha leave: two deletes
    backend.removeAll();
    const text = lines.join('\n');
    for (const sa of [gcm, cbc, chacha]) {
      assert.ok(!text.includes(hexKey(sa.keys.encrKey)), 'no encryption key in the output');
      if (sa.keys.integKey.length > 0) assert.ok(!text.includes(hexKey(sa.keys.integKey)), 'no integrity key');
    }
    assert.match(text, /\[dry-run\] ip xfrm state add .* aead 'rfc4106\(gcm\(aes\)\)' <key 20 octets> 128/);
    assert.match(text, /\[dry-run\] ip xfrm state delete src 10\.99\.0\.1 dst 239\.1\.2\.3 proto esp spi 0x00001002/);
    assert.match(text, /\[dry-run\] ip xfrm policy delete src 0\.0\.0\.0\/0 dst 239\.1\.2\.3\/32 proto udp dport 5000 dir in/);
    assert.equal(lines.filter((l) => l.includes('state delete')).length, 3);
    assert.deepEqual(backend.installed(), { spis: [], policies: [] });
  });

  it('rejects bad addresses and unsupported algorithms before running anything', () => {
    const backend = new XfrmBackend({ run: () => assert.fail('must not run') });
    assert.throws(() => backend.apply({ ...cfg, groupAddress: '239.1.2' }));
    assert.throws(() => backend.apply({ ...cfg, sas: [{ ...gcm, algorithm: { encr: EncrId.AES_CTR } }] }));
    assert.throws(() => backend.apply({ ...cfg, sas: [{ ...gcm, sn: SnId.ESN64_PARTIAL }] }));
  });
});

function ip(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(IP, args, { encoding: 'utf8', timeout: 10_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// This test machine's kernel has XFRM but no esp4 / AEAD modules: every
// `ip xfrm state add` fails there ("Error: Requested AEAD algorithm not
// found." for rfc4106/rfc7539esp, "Error: Requested type not found." for
// cbc(aes)+hmac, i.e. no ESP protocol type), while policies install fine.
// The test probes once and, where states cannot be installed, asserts the
// failure and the rendered commands instead; on a kernel with ESP it checks
// the installed states for real.
const skip = netnsUnavailable();
describe('XFRM in a network namespace', { skip }, () => {
  const ns = `gk-xfrm-${randomBytes(3).toString('hex')}`;
  let statesSupported = false;
  let probeError = '';

  before(() => {
    const r = ip(['netns', 'add', ns]);
    assert.equal(r.status, 0, r.stderr);
    const key = `0x${'11'.repeat(20)}`;
    const probe = ip(['-n', ns, 'xfrm', 'state', 'add', 'src', '0.0.0.0', 'dst', '239.255.0.1', 'proto', 'esp', 'spi', '0x100', 'mode', 'transport', 'aead', 'rfc4106(gcm(aes))', key, '128']);
    statesSupported = probe.status === 0;
    probeError = probe.stderr.trim();
    if (statesSupported) ip(['-n', ns, 'xfrm', 'state', 'flush']);
  });
  after(() => {
    ip(['netns', 'del', ns]);
  });

  it('installs and removes policies for real; states where the kernel has ESP', () => {
    const gcm = gcmSa(0x2001);
    const cbc = cbcSa(0x2002);
    const backend = new XfrmBackend({ netns: ns, ipPath: IP });
    const cfg: XfrmGroupConfig = {
      groupAddress: '239.7.7.7',
      port: 6000,
      mode: 'transport',
      localAddress: '10.77.0.1',
      send: true,
      receive: true,
      sas: [gcm, cbc],
    };
    const out = backend.apply(cfg);
    const policyOutcomes = out.filter((o) => o.command.kind === 'policy-add');
    assert.equal(policyOutcomes.length, 2);
    assert.ok(policyOutcomes.every((o) => o.ok), JSON.stringify(policyOutcomes.map((o) => o.error)));
    const policies = ip(['-n', ns, 'xfrm', 'policy']).stdout;
    assert.match(policies, /src 10\.77\.0\.1\/32 dst 239\.7\.7\.7\/32 proto udp dport 6000\s+dir out/);
    assert.match(policies, /src 0\.0\.0\.0\/0 dst 239\.7\.7\.7\/32 proto udp dport 6000\s+dir in/);
    assert.match(policies, /tmpl src 10\.77\.0\.1 dst 239\.7\.7\.7\s+proto esp reqid 1 mode transport/);

    const stateOutcomes = out.filter((o) => o.command.kind === 'state-add');
    assert.equal(stateOutcomes.length, 2);
    if (statesSupported) {
      assert.ok(stateOutcomes.every((o) => o.ok), JSON.stringify(stateOutcomes.map((o) => o.error)));
      const states = ip(['-n', ns, 'xfrm', 'state']).stdout;
      assert.match(states, /src 10\.77\.0\.1 dst 239\.7\.7\.7\s+proto esp spi 0x00002001/);
      assert.match(states, /aead rfc4106\(gcm\(aes\)\)/);
      assert.match(states, /spi 0x00002002/);
    } else {
      console.warn(`\n*** XFRM states not installable here (${probeError}); checking rendered commands ***\n`);
      assert.match(probeError, /Requested AEAD algorithm not found|Requested type not found|not supported|Protocol not supported/);
      for (const o of stateOutcomes) {
        assert.equal(o.ok, false);
        assert.match(o.error ?? '', /Requested (AEAD algorithm|type) not found|not supported/);
      }
      assert.equal(stateOutcomes[0]!.command.argv.join(' '), [
        '-n', ns, 'xfrm', 'state', 'add', 'src', '10.77.0.1', 'dst', '239.7.7.7', 'proto', 'esp', 'spi', '0x00002001',
        'reqid', '1', 'mode', 'transport', 'replay-window', '32', 'aead', 'rfc4106(gcm(aes))', `0x${hexKey(gcm.keys.encrKey)}`, '128',
      ].join(' '));
      assert.ok(!stateOutcomes[0]!.command.display.includes(hexKey(gcm.keys.encrKey)));
      assert.deepEqual(backend.installed().spis, [], 'failed states are not remembered as installed');
    }

    // A rekey replaces the SAs; the policies stay.
    const next = gcmSa(0x2003);
    const out2 = backend.apply({ ...cfg, sas: [next] });
    assert.equal(out2.filter((o) => o.command.kind.startsWith('policy')).length, 0);
    if (statesSupported) {
      const states = ip(['-n', ns, 'xfrm', 'state']).stdout;
      assert.doesNotMatch(states, /spi 0x00002001/);
      assert.match(states, /spi 0x00002003/);
    }

    // Exclusion / shutdown: everything goes, and doing it again is harmless.
    const removed = backend.removeAll();
    assert.ok(removed.every((o) => o.ok), JSON.stringify(removed.map((o) => o.error)));
    assert.equal(ip(['-n', ns, 'xfrm', 'policy']).stdout.trim(), '');
    assert.equal(ip(['-n', ns, 'xfrm', 'state']).stdout.trim(), '');
    assert.deepEqual(backend.removeAll(), []);
  });

  it('deletes are idempotent when the kernel object is already gone', () => {
    const backend = new XfrmBackend({ netns: ns, ipPath: IP });
    const cfg: XfrmGroupConfig = { groupAddress: '239.8.8.8', mode: 'tunnel', send: false, receive: true, sas: [] };
    assert.ok(backend.apply(cfg).every((o) => o.ok));
    assert.match(ip(['-n', ns, 'xfrm', 'policy']).stdout, /dst 239\.8\.8\.8\/32/);
    assert.equal(ip(['-n', ns, 'xfrm', 'policy', 'flush']).status, 0); // someone else removed it
    const out = backend.removeAll();
    assert.equal(out.length, 1);
    assert.ok(out[0]!.ok);
    assert.match(out[0]!.error ?? '', /No such file or directory/);
  });
});
