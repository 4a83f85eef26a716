/**
 * The group member's key management (RFC 9838 Section 3.3), independent of
 * how the GCKS manages keys: the member keeps its Working Key Path (the key
 * wrap keys it received in WRAP_KEY attributes, ordered from the key nearest
 * the KEK down to its own key) and, for every Key Download, unwraps whatever
 * it can, in any order and to any depth, starting from the keys it holds and
 * the default KWK (GSK_w, KWK ID 0) of the SA the message came over.
 *
 * Update rule (Section 3.3): the new Key Path runs from the key that
 * decrypted the SA_KEY down through newly received keys to a key already
 * held. If it ends at GSK_w it becomes the whole Working Key Path (this is
 * registration); otherwise it replaces the beginning of the Working Key Path
 * up to, not including, the held key it ends at. A member that cannot unwrap
 * any SA_KEY of a new KEK has been excluded.
 *
 * Values are immutable: `apply` returns the next path, so a caller can drop
 * a message after a later check fails without having changed anything.
 */
import { kwaKeyLength, KeyUnwrapError, KeyWrapError, unwrapKey } from '../crypto/keywrap.ts';
import { ProtocolId } from '../wire/iana.ts';
import type { KdPayload } from '../wire/kd.ts';
import { DEFAULT_KWK_ID, SA_KEY_ID, saKeysOf, wrapKeysOf, type WrappedKey } from '../wire/wrapped-key.ts';

export interface HeldKey {
  readonly keyId: number;
  readonly key: Buffer;
}

/** The default KWK of the SA a message was received over, with that SA's Key Wrap Algorithm. */
export interface DefaultKwk {
  readonly kwa: number;
  readonly key: Uint8Array;
}

/** The wrapped keys of one KD payload that concern the key hierarchy. */
export interface KeyDownload {
  /** SA_KEY values of the Rekey SA's group key bag; empty when the message brings no new KEK. */
  readonly saKeys: readonly WrappedKey[];
  /** WRAP_KEY values of the Member Key Bag(s). */
  readonly wrapKeys: readonly WrappedKey[];
}

/**
 * The key-hierarchy part of a KD: SA_KEYs of the Rekey SA's group key bag
 * (GIKE_UPDATE) and every WRAP_KEY of its Member Key Bags. Throws
 * DecodeError on a malformed wrapped key (the validator reports those first).
 */
export function keyDownloadFrom(kd: KdPayload): KeyDownload {
  const saKeys: WrappedKey[] = [];
  const wrapKeys: WrappedKey[] = [];
  for (const bag of kd.keyBags) {
    if (bag.kind === 'member') wrapKeys.push(...wrapKeysOf(bag));
    else if (bag.protocol === ProtocolId.GIKE_UPDATE) saKeys.push(...saKeysOf(bag));
  }
  return { saKeys, wrapKeys };
}

export type KeyPathOutcome =
  | {
      readonly status: 'updated';
      readonly path: WorkingKeyPath;
      /** The new KEK keying material (GSK_e | GSK_a | GSK_w), when the download carried one. */
      readonly saKeymat: Buffer | undefined;
      /** Key IDs that entered the Working Key Path, top first. */
      readonly newKeyIds: readonly number[];
    }
  /** The download replaced the KEK and no SA_KEY could be unwrapped: this member was excluded. */
  | { readonly status: 'excluded' };

interface Unwrapped {
  readonly key: Buffer;
  /** Key ID of the KWK that decrypted it. */
  readonly via: number;
}

export class WorkingKeyPath {
  private readonly entries: readonly HeldKey[];

  /**
   * `kwa` is the Rekey SA's Key Wrap Algorithm, the algorithm of every key in
   * the path; `entries` run top (nearest the KEK) first.
   */
  constructor(
    readonly kwa: number,
    entries: readonly HeldKey[] = [],
  ) {
    const length = kwaKeyLength(kwa);
    for (const e of entries) {
      if (e.keyId === SA_KEY_ID || e.key.length !== length) throw new RangeError(`bad path key ${e.keyId}`);
    }
    this.entries = entries.map((e) => ({ keyId: e.keyId, key: Buffer.from(e.key) }));
  }

  get keyIds(): number[] {
    return this.entries.map((e) => e.keyId);
  }

  /** Copies of the held keys, top first. */
  get keys(): HeldKey[] {
    return this.entries.map((e) => ({ keyId: e.keyId, key: Buffer.from(e.key) }));
  }

  get length(): number {
    return this.entries.length;
  }

  /**
   * Unwraps one key (for instance a Data-Security SA_KEY) with GSK_w or a
   * path key; undefined when this member holds no key that opens it.
   */
  unwrap(wrapped: WrappedKey, defaultKwk: DefaultKwk): Buffer | undefined {
    const held = this.heldKwks(defaultKwk);
    const kwk = held.get(wrapped.kwkId);
    return kwk ? tryUnwrap(this.kwaFor(wrapped.kwkId, defaultKwk), kwk, wrapped) : undefined;
  }

  /** Processes a Key Download (Section 3.3); see the module comment. */
  apply(download: KeyDownload, defaultKwk: DefaultKwk): KeyPathOutcome {
    const held = this.heldKwks(defaultKwk);
    const fresh = this.unwrapReachable(download.wrapKeys, held, defaultKwk);
    const known = (id: number): Buffer | undefined => fresh.get(id)?.key ?? held.get(id);

    let saKeymat: Buffer | undefined;
    let anchor: number | undefined;
    for (const sa of download.saKeys) {
      if (sa.keyId !== SA_KEY_ID) continue;
      const kwk = known(sa.kwkId);
      saKeymat = kwk ? tryUnwrap(this.kwaFor(sa.kwkId, defaultKwk), kwk, sa) : undefined;
      if (saKeymat) {
        anchor = sa.kwkId;
        break;
      }
    }
    if (download.saKeys.length > 0 && !saKeymat) return { status: 'excluded' };

    const top = anchor !== undefined && fresh.has(anchor) ? anchor : topmostFreshKey(fresh);
    if (top === undefined) return { status: 'updated', path: this, saKeymat, newKeyIds: [] };
    const chain: HeldKey[] = [];
    let id = top;
    for (let u = fresh.get(id); u; u = fresh.get(id)) {
      chain.push({ keyId: id, key: u.key });
      id = u.via;
    }
    // `id` is now the held key the new Key Path ends at: GSK_w (registration) or a path key.
    const rest = id === DEFAULT_KWK_ID ? [] : this.entries.slice(this.entries.findIndex((e) => e.keyId === id));
    const path = new WorkingKeyPath(this.kwa, [...chain, ...rest]);
    return { status: 'updated', path, saKeymat, newKeyIds: chain.map((c) => c.keyId) };
  }

  private heldKwks(defaultKwk: DefaultKwk): Map<number, Buffer> {
    const held = new Map<number, Buffer>([[DEFAULT_KWK_ID, Buffer.from(defaultKwk.key)]]);
    for (const e of this.entries) held.set(e.keyId, e.key);
    return held;
  }

  private kwaFor(kwkId: number, defaultKwk: DefaultKwk): number {
    return kwkId === DEFAULT_KWK_ID ? defaultKwk.kwa : this.kwa;
  }

  /**
   * Breadth-first from the keys held: only wrapped keys whose KWK this
   * member has (or has just unwrapped) are tried, so a member touches
   * O(depth) of a large rekey, whatever order the keys were sent in.
   */
  private unwrapReachable(wrapKeys: readonly WrappedKey[], held: Map<number, Buffer>, defaultKwk: DefaultKwk): Map<number, Unwrapped> {
    const byKwk = new Map<number, WrappedKey[]>();
    for (const w of wrapKeys) {
      if (w.keyId === SA_KEY_ID || held.has(w.keyId)) continue;
      const list = byKwk.get(w.kwkId);
      if (list) list.push(w);
      else byKwk.set(w.kwkId, [w]);
    }
    const fresh = new Map<number, Unwrapped>();
    const length = kwaKeyLength(this.kwa);
    const queue = [...held.keys()];
    for (let i = 0; i < queue.length; i++) {
      const kwkId = queue[i]!;
      const kwk = fresh.get(kwkId)?.key ?? held.get(kwkId);
      if (!kwk) continue;
      for (const w of byKwk.get(kwkId) ?? []) {
        if (fresh.has(w.keyId)) continue;
        const key = tryUnwrap(this.kwaFor(kwkId, defaultKwk), kwk, w);
        if (!key || key.length !== length) continue;
        fresh.set(w.keyId, { key, via: kwkId });
        queue.push(w.keyId);
      }
      byKwk.delete(kwkId);
    }
    return fresh;
  }
}

/** The unwrapped key no other unwrapped key was decrypted with: the end of the longest new chain. */
function topmostFreshKey(fresh: ReadonlyMap<number, Unwrapped>): number | undefined {
  const used = new Set([...fresh.values()].map((u) => u.via));
  let best: number | undefined;
  let bestLength = 0;
  for (const id of fresh.keys()) {
    if (used.has(id)) continue;
    let n = 0;
    for (let u = fresh.get(id); u; u = fresh.get(u.via)) n++;
    if (n > bestLength) {
      best = id;
      bestLength = n;
    }
  }
  return best;
}

function tryUnwrap(kwa: number, kwk: Uint8Array, wrapped: WrappedKey): Buffer | undefined {
  try {
    return unwrapKey(kwa, kwk, wrapped.encryptedKey);
  } catch (e) {
    // A KWK of the wrong size for the algorithm cannot open this key either.
    if (e instanceof KeyUnwrapError || e instanceof KeyWrapError) return undefined;
    throw e;
  }
}
