import { DecodeError, type DecodeErrorKind } from './errors.ts';

/**
 * A bounded cursor over a byte range. A reader never reads past `end`; a
 * nested reader (`sub`) is bounded by the length its container declares, so a
 * decoder cannot escape the enclosing structure whatever a length field says.
 * Every failure is a DecodeError carrying the path and absolute offset.
 */
export class Reader {
  private pos: number;
  /** The path, or undefined until first asked for (see `nested`). */
  private pathText: string | undefined;
  /** For a nested reader: the container's reader and this reader's segment, joined on demand. */
  private parent: Reader | undefined;
  private segment = '';

  constructor(
    readonly buf: Uint8Array,
    path: string = '',
    private readonly start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
    this.pathText = path;
  }

  /**
   * Where this reader is, for errors: `SA > proposal[1] > transform[2]`.
   * Built only when asked (an error, or a decoder naming a path): joining it
   * for every payload, transform and attribute decoded costs more than the
   * reading itself.
   */
  get path(): string {
    if (this.pathText === undefined) {
      this.pathText = joinPath(this.parent?.path ?? '', this.segment);
      this.parent = undefined;
    }
    return this.pathText;
  }

  private nested(segment: string, start: number, end: number): Reader {
    const r = new Reader(this.buf, '', start, end);
    r.pathText = undefined;
    r.parent = this;
    r.segment = segment;
    return r;
  }

  get offset(): number {
    return this.pos;
  }
  get remaining(): number {
    return this.end - this.pos;
  }
  get atEnd(): boolean {
    return this.pos >= this.end;
  }
  /** Octets consumed since this reader's start. */
  get consumed(): number {
    return this.pos - this.start;
  }

  fail(kind: DecodeErrorKind, detail: string, payloadType?: number): never {
    throw new DecodeError(kind, this.path, detail, this.pos, payloadType);
  }

  private need(n: number, what: string): void {
    if (n < 0 || this.pos + n > this.end) {
      this.fail('truncated', `${what}: need ${n} octet(s), ${this.remaining} left`);
    }
  }

  u8(what = 'u8'): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }
  u16(what = 'u16'): number {
    this.need(2, what);
    const v = (this.buf[this.pos]! << 8) | this.buf[this.pos + 1]!;
    this.pos += 2;
    return v;
  }
  u32(what = 'u32'): number {
    this.need(4, what);
    const b = this.buf;
    const p = this.pos;
    const v = ((b[p]! << 24) >>> 0) + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);
    this.pos += 4;
    return v;
  }
  /**
   * A copy of the next `n` octets. Copies so decoded values never alias the
   * input, and outside Node's shared 8 KiB buffer pool: decoded values (IDs,
   * nonces, SPIs) are often kept for the life of an SA or a membership, and a
   * small pooled slice would keep its whole slab alive with it.
   */
  bytes(n: number, what = 'bytes'): Buffer {
    this.need(n, what);
    const out = Buffer.allocUnsafeSlow(n);
    out.set(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return out;
  }
  /** Everything left, copied. */
  rest(): Buffer {
    return this.bytes(this.remaining, 'rest');
  }
  skip(n: number, what = 'skip'): void {
    this.need(n, what);
    this.pos += n;
  }

  /**
   * A reader over the next `n` octets with a longer path; this reader moves
   * past them. `n` was read from the wire, so it is checked first.
   */
  sub(n: number, segment: string): Reader {
    if (n < 0 || this.pos + n > this.end) this.need(n, `${segment} (declared length ${n})`);
    const r = this.nested(segment, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }

  /** The same range as this reader from the current position, under a longer path. */
  child(segment: string): Reader {
    return this.nested(segment, this.pos, this.end);
  }

  /** Fails unless every octet was consumed (a structure must fill its declared length). */
  expectEnd(what: string): void {
    if (!this.atEnd) this.fail('bad-length', `${what}: ${this.remaining} unexpected trailing octet(s)`);
  }
}

export function joinPath(path: string, segment: string): string {
  return path ? `${path} > ${segment}` : segment;
}
