import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { authorizeJoin, authorizeSender, pskForMember } from '../../src/gcks/authorize.ts';
import { createSelfSignedCa, issueEndEntity } from '../../src/crypto/x509-builder.ts';
import { IdType } from '../../src/wire/iana.ts';
import { loadGcksConfig } from '../../src/gcks/config.ts';
import { email, fqdn, gcksConfig } from './fixtures.ts';

const video = gcksConfig().groups[0]!;
const allowed = (id: Parameters<typeof authorizeJoin>[1]['id']): boolean => authorizeJoin(video.members, { id }).allowed;

describe('authorization', () => {
  it('exact IDs, FQDN and e-mail wildcard patterns', () => {
    assert.ok(allowed(email('gm1@example.org')));
    assert.ok(allowed(fqdn('a.plant1.example')));
    assert.ok(allowed(fqdn('A.B.PLANT1.example')), 'FQDNs compare case-insensitively, * spans labels');
    assert.ok(allowed(email('gm-7@EXAMPLE.org')), 'e-mail domain is case-insensitive');
    assert.ok(!allowed(email('GM-7@example.org')), 'the local part is not');
    assert.ok(!allowed(fqdn('plant1.example')));
    assert.ok(!allowed(fqdn('a.plant1.example.evil')));
    assert.ok(!allowed(email('x@a.plant1.example')), 'an FQDN pattern does not match e-mail IDs');
    assert.ok(!allowed({ idType: IdType.ID_KEY_ID, data: Buffer.from('gm1@example.org') }), 'the ID type must match too');
    const r = authorizeJoin(video.members, { id: fqdn('intruder.example') });
    assert.ok(!r.allowed && /intruder\.example is not allowed to join/.test(r.reason));
  });

  it('senders are a separate rule set', () => {
    assert.ok(authorizeSender(video.senders, { id: fqdn('sender3.plant1.example') }).allowed);
    assert.ok(!authorizeSender(video.senders, { id: fqdn('a.plant1.example') }).allowed);
  });

  it('address prefixes and "any"', () => {
    const c = loadGcksConfig(
      `identity: "@gcks"
groups:
  - name: g
    id: "@g"
    rekey: inband
    dataSecurity: [{destination: 239.1.1.1}]
    members: {patterns: [192.0.2.0/24, "2001:db8::/32"]}
    senders: {any: true}
`,
      't.yaml',
    ).groups[0]!;
    const ip = (b: number[]): { id: { idType: number; data: Buffer } } => ({ id: { idType: b.length === 4 ? IdType.ID_IPV4_ADDR : IdType.ID_IPV6_ADDR, data: Buffer.from(b) } });
    assert.ok(authorizeJoin(c.members, ip([192, 0, 2, 200])).allowed);
    assert.ok(!authorizeJoin(c.members, ip([192, 0, 3, 1])).allowed);
    assert.ok(authorizeJoin(c.members, ip([0x20, 0x01, 0x0d, 0xb8, ...Array<number>(12).fill(1)])).allowed);
    assert.ok(authorizeSender(c.senders, ip([10, 0, 0, 1])).allowed);
  });

  it('certificate subject and SAN rules', () => {
    const c = loadGcksConfig(
      `identity: "@gcks"
groups:
  - name: g
    id: "@g"
    rekey: inband
    dataSecurity: [{destination: 239.1.1.1}]
    members:
      certificates:
        - subject: {CN: "gm-*", O: Example}
        - san: "*.plant2.example"
`,
      't.yaml',
    ).groups[0]!;
    const notBefore = new Date(Date.UTC(2024, 0, 1));
    const notAfter = new Date(Date.UTC(2030, 0, 1));
    const ca = createSelfSignedCa({ subject: { CN: 'CA' }, notBefore, notAfter });
    const cert = (subject: { CN: string; O?: string }, dns: string[] = []) =>
      issueEndEntity(ca, { subject, notBefore, notAfter, ...(dns.length > 0 ? { subjectAltName: { dns } } : {}) }).certificate;
    const member = (certificate: ReturnType<typeof cert>) => ({ id: fqdn('x.example'), certificate });
    assert.ok(authorizeJoin(c.members, member(cert({ CN: 'gm-1', O: 'Example' }))).allowed);
    assert.ok(!authorizeJoin(c.members, member(cert({ CN: 'gm-1', O: 'Other' }))).allowed, 'every subject part must match');
    assert.ok(authorizeJoin(c.members, member(cert({ CN: 'x' }, ['a.plant2.example']))).allowed);
    assert.ok(!authorizeJoin(c.members, member(cert({ CN: 'x' }, ['a.plant3.example']))).allowed);
    assert.ok(!authorizeJoin(c.members, { id: fqdn('gm-1') }).allowed, 'no certificate, no certificate rule');
  });

  it('PSK lookup: exact ID over pattern over any', () => {
    const creds = loadGcksConfig(
      `identity: "@gcks"
credentials:
  psks:
    - {member: any, secret: "the fallback secret!"}
    - {member: "*.plant1.example", secret: "plant one shared secret"}
    - {member: "a.plant1.example", secret: "a's very own secret"}
groups: [{name: g, id: "@g", rekey: inband, dataSecurity: [{destination: 239.1.1.1}]}]
`,
      't.yaml',
    ).credentials;
    assert.equal(pskForMember(creds, fqdn('a.plant1.example'))?.toString(), "a's very own secret");
    assert.equal(pskForMember(creds, fqdn('b.plant1.example'))?.toString(), 'plant one shared secret');
    assert.equal(pskForMember(creds, fqdn('elsewhere'))?.toString(), 'the fallback secret!');
  });
});
