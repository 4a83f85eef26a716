/**
 * SPIs the GCKS assigns (RFC 9838 Section 4.4.2: "these SPIs are assigned by
 * the GCKS"). Unique per group and never repeated, even across restarts:
 * a member that still holds an old SA must never match a new one by SPI.
 */
import type { RandomSource } from '../crypto/random.ts';
import { ReservedCounter, type CounterReservation } from './counters.ts';

/** RFC 4303 Section 2.1: SPI values 1..255 are reserved by IANA, 0 is "no SA". */
const FIRST_DATA_SECURITY_SPI = 0x100;
const SPI_BLOCK = 256;
export const DATA_SECURITY_SPI_SIZE = 4;
export const REKEY_SPI_SIZE = 16;

export class SpiExhaustedError extends Error {
  override readonly name = 'SpiExhaustedError';
}

export class SpiAllocator {
  private readonly dataSecurity: ReservedCounter;
  private readonly rekey: ReservedCounter;

  constructor(
    store: CounterReservation,
    scope: string,
    private readonly rng: RandomSource,
  ) {
    // Sequential rather than random: SPIs are not secret (RFC 4303), and only
    // a counter guarantees "never again" without remembering every value.
    this.dataSecurity = new ReservedCounter(store, `${scope}/esp-ah-spi`, { start: FIRST_DATA_SECURITY_SPI, limit: 2 ** 32, block: SPI_BLOCK });
    this.rekey = new ReservedCounter(store, `${scope}/rekey-spi`, { start: 1, limit: Number.MAX_SAFE_INTEGER, block: SPI_BLOCK });
  }

  /** A 4-octet ESP/AH SPI. */
  allocateDataSecuritySpi(): Buffer {
    const n = this.dataSecurity.take();
    if (n === undefined) throw new SpiExhaustedError('ESP/AH SPI space exhausted for this group');
    const spi = Buffer.alloc(DATA_SECURITY_SPI_SIZE);
    spi.writeUInt32BE(n);
    return spi;
  }

  /**
   * A 16-octet Rekey SA SPI = the IKE header's initiator SPI | responder SPI
   * (Section 4.4.2). The first half is random and non-zero, so it does not
   * collide with the IKE SAs a member runs; the second half is the counter,
   * so the pair never repeats.
   */
  allocateRekeySpi(): Buffer {
    const n = this.rekey.take();
    if (n === undefined) throw new SpiExhaustedError('Rekey SA SPI space exhausted for this group');
    let first = this.rng.bytes(8);
    while (first.every((b) => b === 0)) first = this.rng.bytes(8);
    const second = Buffer.alloc(8);
    second.writeBigUInt64BE(BigInt(n));
    return Buffer.concat([first, second]);
  }
}
