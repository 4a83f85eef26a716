import { Limits } from '../errors.ts';
import type { PayloadType } from '../iana.ts';
import type { Reader } from '../reader.ts';
import { decodeTrafficSelector, encodeTrafficSelector, type TrafficSelector } from '../traffic-selector.ts';
import { EncodeError, type Writer } from '../writer.ts';

export type TsPayloadType = typeof PayloadType.TSi | typeof PayloadType.TSr;

/** Traffic Selector payload (RFC 7296 Section 3.13): Number of TSs(1) | RESERVED(3) | selectors. */
export interface TsPayload {
  readonly type: TsPayloadType;
  readonly critical: boolean;
  readonly selectors: readonly TrafficSelector[];
}

export function decodeTsBody(r: Reader, type: TsPayloadType, critical: boolean): TsPayload {
  const count = r.u8('number of TSs');
  r.skip(3, 'reserved');
  if (count > Limits.maxTrafficSelectors) r.fail('limit', `${count} selectors > ${Limits.maxTrafficSelectors}`);
  const selectors: TrafficSelector[] = [];
  for (let i = 1; i <= count; i++) selectors.push(decodeTrafficSelector(r, `ts[${i}]`));
  r.expectEnd(`after ${count} selector(s)`);
  return { type, critical, selectors };
}

export function encodeTsBody(w: Writer, p: TsPayload): void {
  if (p.selectors.length > 0xff) throw new EncodeError(`too many traffic selectors: ${p.selectors.length}`);
  w.u8(p.selectors.length).u8(0).u16(0);
  for (const ts of p.selectors) encodeTrafficSelector(w, ts);
}
