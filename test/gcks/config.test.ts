import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkGcksConfig, loadGcksConfig, DEFAULT_LISTEN, type GcksConfig } from '../../src/gcks/config.ts';
import { InvalidConfigError, type ConfigError } from '../../src/gcks/config-fields.ts';
import { EncrId, GcauthId, IntegId, KwaId, ProtocolId, SnId, TsType } from '../../src/wire/iana.ts';
import { GCKS_YAML } from './fixtures.ts';

function errorsOf(text: string): readonly ConfigError[] {
  const r = checkGcksConfig(text, 'bad.yaml');
  assert.equal(r.ok, false, 'expected the configuration to be refused');
  return r.ok ? [] : r.errors;
}

function hasError(errors: readonly ConfigError[], path: string, reason: RegExp): void {
  assert.ok(
    errors.some((e) => e.path === path && reason.test(e.reason)),
    `no error at ${path} matching ${reason}; got:\n${errors.map((e) => e.message).join('\n')}`,
  );
}

const MINIMAL = (group: string): string => `
identity: "@gcks.example"
groups:
  - name: g
    id: "@g.example"
    members: {any: true}
${group}`;

describe('GCKS configuration', () => {
  it('reads the fixture with safe defaults applied', () => {
    const c: GcksConfig = loadGcksConfig(GCKS_YAML, 'fixture.yaml');
    assert.deepEqual(c.listen, DEFAULT_LISTEN);
    assert.deepEqual(c.ike.proposals, ['aes256gcm16-prfsha256-x25519']);
    assert.deepEqual(c.ike.keyWrap, [KwaId.KW_5649_256, KwaId.KW_ARX]);
    const video = c.groups[0]!;
    assert.equal(video.mode, 'tunnel');
    assert.equal(video.senderIdBits, 16);
    const tek = video.dataSecurity[0]!;
    assert.equal(tek.protocolId, ProtocolId.ESP);
    assert.deepEqual(tek.encryption, { id: EncrId.AES_GCM_16, keyBits: 256 });
    assert.equal(tek.integrity, IntegId.NONE);
    assert.equal(tek.sequenceNumbers, SnId.UNSPECIFIED32);
    assert.equal(tek.lifetimeSeconds, 3600);
    assert.deepEqual(tek.source, { type: TsType.TS_IPV4_ADDR_RANGE, ipProtocol: 17, startPort: 0, endPort: 65535, startAddress: '0.0.0.0', endAddress: '255.255.255.255' });
    assert.equal(video.rekey.kind, 'multicast');
    if (video.rekey.kind !== 'multicast') return;
    assert.equal(video.rekey.gcauth, GcauthId.DIGITAL_SIGNATURE);
    assert.equal(video.rekey.keyWrap, KwaId.KW_5649_256);
    assert.equal(video.rekey.destination.startPort, 848, 'rekey port defaults to 848');
    assert.equal(video.rekey.destination.ipProtocol, 17);
    const telemetry = c.groups[1]!;
    assert.equal(telemetry.mode, 'transport');
    assert.equal(telemetry.dataSecurity[0]!.destination.type, TsType.TS_IPV6_ADDR_RANGE);
    assert.equal(c.groups[2]!.rekey.kind, 'inband');
    assert.equal(c.groups[2]!.dataSecurity[1]!.protocolId, ProtocolId.AH);
    assert.equal(c.groups[2]!.dataSecurity[1]!.integrity, IntegId.HMAC_SHA2_256_128);
  });

  it('throws one InvalidConfigError listing every problem', () => {
    assert.throws(
      () => loadGcksConfig('identity: "@x"\ngroups: []\nbogus: 1\n', 'two.yaml'),
      (e: unknown) => e instanceof InvalidConfigError && e.errors.length === 2 && /two\.yaml/.test(e.message),
    );
  });

  it('reports YAML syntax errors with their line', () => {
    hasError(errorsOf('identity: "@x"\ngroups: [\n'), '', /^YAML: .*at line 3, column 1/);
  });

  it('names unknown fields, bad transforms and missing fields', () => {
    const errors = errorsOf(
      MINIMAL(`    dataSecurity:
      - destination: 239.1.1.1
        encryption: aes512gcm
        integirty: sha256
    rekey:
      destination: {address: 239.0.0.1}
      keyWrap: kw_5649_128
`),
    );
    hasError(errors, 'groups[0].dataSecurity[0].encryption', /must be one of .*aes256gcm16/);
    hasError(errors, 'groups[0].dataSecurity[0].integirty', /unknown field/);
    hasError(errors, 'groups[0].rekey.signingKey', /required with authentication: signature/);
    hasError(errors, 'groups[0].rekey.keyWrap', /128-bit key wrap key is shorter/);
  });

  it('checks the Rekey SA destination (one multicast address, one port, UDP)', () => {
    const errors = errorsOf(MINIMAL(`    dataSecurity: [{destination: 239.1.1.1}]\n    rekey: {destination: {address: 192.0.2.1}, authentication: implicit}\n`));
    hasError(errors, 'groups[0].rekey.destination.address', /single multicast address/);
    const ports = errorsOf(MINIMAL(`    rekey: {destination: {address: 239.0.0.1, port: 1-2}, authentication: implicit}\n`));
    hasError(ports, 'groups[0].rekey.destination.port', /single port/);
  });

  it('enforces AEAD/INTEG pairing, SN names, ESP+AH selector overlap and inband needing a TEK', () => {
    const errors = errorsOf(
      MINIMAL(`    dataSecurity:
      - {destination: 239.1.1.1, integrity: sha256}
      - {destination: 239.1.1.2, encryption: aes128, integrity: none}
      - {destination: 239.1.1.3, sequenceNumbers: esn}
      - {destination: 239.1.1.4}
      - {destination: 239.1.1.4, protocol: ah}
      - {protocol: ah, destination: 239.1.1.5, encryption: aes128}
    rekey: inband
`),
    );
    hasError(errors, 'groups[0].dataSecurity[0].integrity', /none with an AEAD/);
    hasError(errors, 'groups[0].dataSecurity[1].integrity', /non-AEAD cipher needs/);
    hasError(errors, 'groups[0].dataSecurity[2].sequenceNumbers', /seq32, unspecified32/);
    hasError(errors, 'groups[0].dataSecurity[4]', /AH and ESP policies share traffic selectors/);
    hasError(errors, 'groups[0].dataSecurity[5].encryption', /AH does not encrypt/);
    hasError(errorsOf(MINIMAL('    rekey: inband\n')), 'groups[0].dataSecurity', /needs at least one Data-Security policy/);
  });

  it('names identity, PSK, listen and selector problems', () => {
    const errors = errorsOf(`
identity: {type: ID_IPV4_ADDR, value: not-an-ip}
listen:
  - {address: 0.0.0.0, port: 500}
  - {address: 0.0.0.0, port: 500}
  - {port: 70000}
credentials:
  psks:
    - {member: gm1@example.org, secret: short}
    - {member: "10.0.0.0/33", secret: "long enough secret value"}
ike: {proposals: [aes256gcm16-prfsha256-x25520], keyWrap: []}
groups:
  - name: g
    id: {type: ID_KEY_ID, hex: "0g"}
    capacity: 0
    senderIdBits: 40
    members: {patterns: ["@"], certificates: [{}]}
    dataSecurity:
      - {destination: {address: "239.1.1.9-239.1.1.1", port: "x"}, source: "2001:db8::1"}
    rekey: multicast
  - name: g
    id: "@g.example"
    rekey: inband
`);
    hasError(errors, 'identity.value', /not an IPv4 address/);
    hasError(errors, 'listen[1]', /listed twice/);
    hasError(errors, 'listen[2].port', /between 1 and 65535/);
    hasError(errors, 'credentials.psks[0].secret', /at least 16 octets/);
    hasError(errors, 'credentials.psks[1].member', /not an address prefix/);
    hasError(errors, 'ike.proposals[0]', /unknown keyword 'x25520'/);
    hasError(errors, 'ike.keyWrap', /at least one key wrap/);
    hasError(errors, 'groups[0].id.hex', /hex digits/);
    hasError(errors, 'groups[0].capacity', /between 1/);
    hasError(errors, 'groups[0].senderIdBits', /between 1 and 32/);
    hasError(errors, 'groups[0].members.patterns[0]', /local part and a domain/);
    hasError(errors, 'groups[0].members.certificates[0]', /needs a subject or a san/);
    hasError(errors, 'groups[0].dataSecurity[0].destination.address', /range start is above its end/);
    hasError(errors, 'groups[0].dataSecurity[0].destination.port', /must be a port/);
    hasError(errors, 'groups[0].rekey', /'inband' or a Rekey SA policy/);
    hasError(errors, 'groups[1].dataSecurity', /needs at least one/);
  });

  it('rejects duplicate group names and IDs', () => {
    const errors = errorsOf(`
identity: "@gcks"
groups:
  - {name: a, id: "@a", rekey: inband, dataSecurity: [{destination: 239.1.1.1}]}
  - {name: a, id: "@a", rekey: inband, dataSecurity: [{destination: 239.1.1.1}]}
`);
    hasError(errors, 'groups', /name 'a' is used twice/);
    hasError(errors, 'groups', /same ID as another group/);
  });
});
