import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { KEK_ENV_VARIABLE, loadKek, parseKek, recordAad, StateKek } from '../../src/store/encryption.ts';
import { expectStateError, tempDir } from './helpers.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('StateKek: AES-256-GCM records', () => {
  it('round trips; a fresh nonce each time; wrong AAD, wrong KEK or any flipped bit fails', () => {
    const kek = StateKek.generate();
    const plain = randomBytes(64);
    const aad = recordAad('sas', 'g', '0101');
    const a = kek.seal(plain, aad);
    const b = kek.seal(plain, aad);
    assert.notDeepEqual(a, b);
    assert.equal(a.length, 1 + 12 + 64 + 16);
    assert.deepEqual(kek.open(a, aad), plain);
    assert.equal(kek.open(a, recordAad('sas', 'g', '0102')), undefined);
    assert.equal(kek.open(a, recordAad('sas', 'g0', '101')), undefined, 'the id encoding is unambiguous');
    assert.equal(StateKek.generate().open(a, aad), undefined);
    for (const i of [0, 5, 20, a.length - 1]) {
      const t = Buffer.from(a);
      t[i]! ^= 1;
      assert.equal(kek.open(t, aad), undefined);
    }
    assert.equal(kek.open(a.subarray(0, 20), aad), undefined);
  });

  it('key check value accepts its KEK only', () => {
    const kek = StateKek.generate();
    assert.ok(kek.matchesKeyCheckValue(kek.keyCheckValue()));
    assert.ok(!StateKek.generate().matchesKeyCheckValue(kek.keyCheckValue()));
    assert.match(kek.id, /^[0-9a-f]{16}$/);
  });
});

describe('loading the KEK', () => {
  const raw = randomBytes(32);
  const id = new StateKek(raw).id;

  it('parses hex, base64 and base64url (whitespace ignored)', () => {
    assert.equal(parseKek(raw.toString('hex'), 't').id, id);
    assert.equal(parseKek(` ${raw.toString('hex').toUpperCase()}\n`, 't').id, id);
    assert.equal(parseKek(raw.toString('base64'), 't').id, id);
    assert.equal(parseKek(raw.toString('base64url'), 't').id, id);
  });

  it('refuses other lengths and formats without echoing the value', () => {
    for (const bad of [raw.subarray(0, 31).toString('hex'), randomBytes(33).toString('base64'), 'correct horse battery staple', '']) {
      const e = expectStateError(() => parseKek(bad, `environment variable ${KEK_ENV_VARIABLE}`), 'KEK_INVALID');
      if (bad.length > 0) assert.ok(!e.message.includes(bad) && !e.recovery.includes(bad));
      assert.match(e.message, new RegExp(KEK_ENV_VARIABLE));
    }
  });

  it('from the environment, from a key file (text or 32 raw octets); the file wins', () => {
    assert.equal(loadKek({ env: {} }), undefined);
    assert.equal(loadKek({ env: { [KEK_ENV_VARIABLE]: raw.toString('hex') } })?.kek.id, id);
    const dir = tempDir('kek');
    dirs.push(dir);
    const textFile = join(dir, 'state.key');
    writeFileSync(textFile, `${raw.toString('base64')}\n`, { mode: 0o600 });
    const other = randomBytes(32).toString('hex');
    const loaded = loadKek({ keyFile: textFile, env: { [KEK_ENV_VARIABLE]: other } });
    assert.equal(loaded?.kek.id, id);
    assert.deepEqual(loaded?.warnings, []);
    const rawFile = join(dir, 'raw.key');
    writeFileSync(rawFile, raw, { mode: 0o600 });
    assert.equal(loadKek({ keyFile: rawFile })?.kek.id, id);
    chmodSync(rawFile, 0o644);
    assert.match(loadKek({ keyFile: rawFile })!.warnings[0]!, /chmod 600/);
    expectStateError(() => loadKek({ keyFile: join(dir, 'missing.key') }), 'KEK_MISSING');
  });

  it('refuses a key file inside the state directory', () => {
    const state = tempDir('kek-state');
    dirs.push(state);
    mkdirSync(join(state, 'keys'));
    const file = join(state, 'keys', 'state.key');
    writeFileSync(file, raw.toString('hex'));
    expectStateError(() => loadKek({ keyFile: file, stateDir: state }), 'KEK_BESIDE_DATA');
    expectStateError(() => loadKek({ keyFile: join(state, 'keys', '..', 'keys', 'state.key'), stateDir: `${state}/` }), 'KEK_BESIDE_DATA');
  });
});
