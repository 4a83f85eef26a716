import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger, redact } from '../../src/node/log.ts';

const fixed = () => new Date('2026-01-02T03:04:05.000Z');

test('json lines carry time, level, message and fields', () => {
  const lines: string[] = [];
  const log = createLogger({ write: (l) => lines.push(l), now: fixed }).child({ component: 'gcks' });
  log.info('member registered', { member: 'gm1@example', group: 'g1' });
  assert.equal(lines.length, 1);
  assert.deepEqual(JSON.parse(lines[0]!), {
    time: '2026-01-02T03:04:05.000Z',
    level: 'info',
    msg: 'member registered',
    component: 'gcks',
    member: 'gm1@example',
    group: 'g1',
  });
});

test('levels below the minimum are dropped', () => {
  const lines: string[] = [];
  const log = createLogger({ write: (l) => lines.push(l), level: 'warn' });
  log.info('no');
  log.debug('no');
  log.warn('yes');
  log.error('yes');
  assert.equal(lines.length, 2);
});

test('readable format is one line with key=value pairs', () => {
  const lines: string[] = [];
  const log = createLogger({ write: (l) => lines.push(l), now: fixed, format: 'readable' });
  log.warn('rekey late', { group: 'g1', seconds: 3 });
  assert.equal(lines[0], '2026-01-02T03:04:05.000Z WARN  rekey late  group=g1 seconds=3');
});

test('secrets and raw octets never reach a line', () => {
  const secret = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const lines: string[] = [];
  const log = createLogger({ write: (l) => lines.push(l) });
  log.info('x', { psk: 'hunter2', sk_ei: secret, nested: { privateKey: 'pem', data: secret }, gskW: 'y', spi: 'abcd' });
  const line = lines[0]!;
  assert.ok(!line.includes('hunter2'));
  assert.ok(!line.includes('00112233'));
  assert.ok(!line.includes('pem'));
  assert.ok(line.includes('"spi":"abcd"'));
  assert.deepEqual(redact({ key: 1, keyId: 7 }), { key: '[redacted]', keyId: 7 });
});

test('secret field names are recognised in every spelling', async () => {
  const { isSecretName } = await import('../../src/node/log.ts');
  for (const n of ['psk', 'privateKey', 'private_key', 'sk_ei', 'skAr', 'gskW', 'wrapKey', 'SKEYSEED', 'stateKey', 'password'])
    assert.ok(isSecretName(n), n);
  for (const n of ['keyId', 'keyLength', 'spi', 'member', 'kwkId', 'group', 'keyBits']) assert.ok(!isSecretName(n), n);
});
