/**
 * Hand-written validation of YAML configuration (key server and member).
 * A `FieldReader` walks the parsed document and records every problem it
 * finds as a `ConfigError` naming the field path (`groups[0].rekey.keyWrap`)
 * and the reason, so that an operator fixes a file in one pass instead of
 * one error per restart.
 */
import { parseDocument } from 'yaml';

/** One problem in a configuration file. `path` is empty for the document itself. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path || '<document>'}: ${reason}`);
  }
}

/** Every problem found in one file; thrown by the `load*Config` functions. */
export class InvalidConfigError extends Error {
  override readonly name = 'InvalidConfigError';
  constructor(
    readonly source: string,
    readonly errors: readonly ConfigError[],
  ) {
    super(`${source}: ${errors.length} configuration error(s)\n${errors.map((e) => `  ${e.message}`).join('\n')}`);
  }
}

export type ConfigResult<T> = { readonly ok: true; readonly config: T } | { readonly ok: false; readonly errors: readonly ConfigError[] };

export type YamlMap = Readonly<Record<string, unknown>>;

export function joinField(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

/** Parses YAML text; syntax errors become ConfigErrors with line and column. */
export function parseYaml(text: string, errors: ConfigError[]): unknown {
  const doc = parseDocument(text, { uniqueKeys: true });
  // The first line of the parser's message already says "at line L, column C".
  for (const e of doc.errors) errors.push(new ConfigError('', `YAML: ${e.message.split('\n')[0] ?? e.message}`));
  if (doc.errors.length > 0) return undefined;
  return doc.toJS({ maxAliasCount: 100 }) as unknown;
}

/**
 * Typed accessors that record an error and return undefined instead of
 * throwing, so one pass reports everything.
 */
export class FieldReader {
  readonly errors: ConfigError[] = [];

  fail(path: string, reason: string): undefined {
    this.errors.push(new ConfigError(path, reason));
    return undefined;
  }

  /** A mapping; unknown keys are errors (they are almost always typos). */
  map(path: string, value: unknown, allowed: readonly string[]): YamlMap | undefined {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      return this.fail(path, `must be a mapping, got ${describe(value)}`);
    }
    const m = value as YamlMap;
    for (const key of Object.keys(m)) {
      if (!allowed.includes(key)) this.fail(joinField(path, key), `unknown field (expected one of: ${allowed.join(', ')})`);
    }
    return m;
  }

  list(path: string, value: unknown): readonly unknown[] | undefined {
    if (!Array.isArray(value)) return this.fail(path, `must be a list, got ${describe(value)}`);
    return value;
  }

  /** A list, or a single item taken as a list of one (operators write both). */
  listOrOne(path: string, value: unknown): readonly unknown[] {
    return Array.isArray(value) ? value : [value];
  }

  string(path: string, value: unknown): string | undefined {
    if (typeof value === 'number') return String(value);
    if (typeof value !== 'string' || value.trim().length === 0) return this.fail(path, `must be a non-empty string, got ${describe(value)}`);
    return value.trim();
  }

  integer(path: string, value: unknown, min: number, max: number): number | undefined {
    if (typeof value !== 'number' || !Number.isInteger(value)) return this.fail(path, `must be an integer, got ${describe(value)}`);
    if (value < min || value > max) return this.fail(path, `must be between ${min} and ${max}, got ${value}`);
    return value;
  }

  boolean(path: string, value: unknown): boolean | undefined {
    if (typeof value !== 'boolean') return this.fail(path, `must be true or false, got ${describe(value)}`);
    return value;
  }

  /** One of `choices` (case-insensitive), returned in its canonical spelling. */
  choice<T extends string>(path: string, value: unknown, choices: readonly T[]): T | undefined {
    const s = typeof value === 'string' ? value.trim().toLowerCase() : undefined;
    const hit = choices.find((c) => c.toLowerCase() === s);
    if (hit === undefined) return this.fail(path, `must be one of ${choices.join(', ')}, got ${describe(value)}`);
    return hit;
  }

  required(path: string, m: YamlMap, key: string): unknown {
    const v = m[key];
    if (v === undefined || v === null) this.fail(joinField(path, key), 'is required');
    return v ?? undefined;
  }
}

export function describe(value: unknown): string {
  if (value === undefined || value === null) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  return String(value);
}

/** Runs a field-by-field reader over YAML text and packs the outcome. */
export function readConfig<T>(text: string, read: (doc: unknown, r: FieldReader) => T | undefined): ConfigResult<T> {
  const r = new FieldReader();
  const doc = parseYaml(text, r.errors);
  if (r.errors.length > 0) return { ok: false, errors: r.errors };
  const config = read(doc, r);
  if (r.errors.length > 0 || config === undefined) {
    return { ok: false, errors: r.errors.length > 0 ? r.errors : [new ConfigError('', 'empty configuration')] };
  }
  return { ok: true, config };
}

export function unwrapConfig<T>(result: ConfigResult<T>, source: string): T {
  if (!result.ok) throw new InvalidConfigError(source, result.errors);
  return result.config;
}
