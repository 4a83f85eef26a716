/**
 * A growable byte builder with length back-patching, used by every encoder.
 * Encoders compute lengths from what they wrote, never from the value's own
 * idea of a length, so `encode` always produces self-consistent bytes.
 */
export class Writer {
  private buf: Buffer;
  private len = 0;

  constructor(initial = 256) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  get length(): number {
    return this.len;
  }

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  u8(v: number): this {
    checkRange(v, 0xff, 'u8');
    this.ensure(1);
    this.buf[this.len++] = v;
    return this;
  }
  u16(v: number): this {
    checkRange(v, 0xffff, 'u16');
    this.ensure(2);
    this.buf.writeUInt16BE(v, this.len);
    this.len += 2;
    return this;
  }
  u32(v: number): this {
    checkRange(v, 0xffffffff, 'u32');
    this.ensure(4);
    this.buf.writeUInt32BE(v, this.len);
    this.len += 4;
    return this;
  }
  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }

  /** Writes a 16-bit placeholder and returns its position for `patch16`. */
  placeholder16(): number {
    const at = this.len;
    this.u16(0);
    return at;
  }
  placeholder32(): number {
    const at = this.len;
    this.u32(0);
    return at;
  }
  patch16(at: number, v: number): void {
    checkRange(v, 0xffff, 'length');
    this.buf.writeUInt16BE(v, at);
  }
  patch32(at: number, v: number): void {
    checkRange(v, 0xffffffff, 'length');
    this.buf.writeUInt32BE(v, at);
  }
  patch8(at: number, v: number): void {
    checkRange(v, 0xff, 'u8');
    this.buf[at] = v;
  }

  /** A copy of what was written. */
  finish(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }
}

/** Thrown by encoders for values that cannot be represented on the wire. */
export class EncodeError extends Error {
  override readonly name = 'EncodeError';
}

function checkRange(v: number, max: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new EncodeError(`${what} out of range: ${v}`);
}
