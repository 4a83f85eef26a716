/** The example configurations in examples/ load without errors (they are documentation that must stay true). */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { checkGcksConfig } from '../../src/gcks/config.ts';
import { checkGmConfig } from '../../src/gm/config.ts';

const examples = fileURLToPath(new URL('../../examples/', import.meta.url));
const read = (name: string): string => readFileSync(examples + name, 'utf8');

describe('examples/', () => {
  it('gcks.yaml is a valid key server configuration', () => {
    const r = checkGcksConfig(read('gcks.yaml'), 'examples/gcks.yaml');
    assert.deepEqual(r.ok ? [] : r.errors.map((e) => e.message), []);
    assert.ok(r.ok && r.config.groups.length === 2);
  });
  for (const name of ['gm-receiver.yaml', 'gm-sender.yaml']) {
    it(`${name} is a valid member configuration`, () => {
      const r = checkGmConfig(read(name), `examples/${name}`);
      assert.deepEqual(r.ok ? [] : r.errors.map((e) => e.message), []);
    });
  }
});
