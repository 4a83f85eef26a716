/**
 * NAT detection (RFC 7296 Section 2.23) and the decision to float to the
 * NAT-T port.
 *
 * Each side puts into IKE_SA_INIT one or more N(NAT_DETECTION_SOURCE_IP)
 * carrying SHA-1(SPIi | SPIr | IP | Port) of the source it sends from, and one
 * N(NAT_DETECTION_DESTINATION_IP) with the same hash of the destination it
 * sends to. SPIr is eight zero octets in the request (not yet known). The
 * receiver recomputes the hashes from the addresses the datagram actually
 * carried:
 *   - no SOURCE hash matches the datagram's source  -> the peer is behind a NAT;
 *   - the DESTINATION hash does not match our own address -> we are behind a NAT.
 *
 * Addresses are hashed as the octets on the wire (4 for IPv4, 16 for IPv6)
 * and the port as 2 octets in network order.
 */
import { createHash } from 'node:crypto';
import { addressOctets } from './address.ts';
import type { Endpoint } from './io-types.ts';

export const NATD_HASH_LENGTH = 20;
export const IKE_SPI_OCTETS = 8;
/** The NAT-T port RFC 7296 Section 2.23 floats to. */
export const NAT_T_PORT = 4500;

/** SHA-1(SPIi | SPIr | IP | Port): the data of a NAT_DETECTION_*_IP notify. */
export function natDetectionHash(
  spiI: Uint8Array,
  spiR: Uint8Array | undefined,
  address: string | Uint8Array,
  port: number,
): Buffer {
  if (spiI.length !== IKE_SPI_OCTETS) throw new RangeError(`SPIi must be ${IKE_SPI_OCTETS} octets`);
  if (spiR && spiR.length !== IKE_SPI_OCTETS) throw new RangeError(`SPIr must be ${IKE_SPI_OCTETS} octets`);
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new RangeError(`bad port ${port}`);
  const ip = addressOctets(address);
  // One buffer, one update: four hashes per IKE_SA_INIT exchange, each call into node has a fixed cost.
  const input = Buffer.alloc(2 * IKE_SPI_OCTETS + ip.length + 2);
  input.set(spiI, 0);
  if (spiR) input.set(spiR, IKE_SPI_OCTETS);
  input.set(ip, 2 * IKE_SPI_OCTETS);
  input.writeUInt16BE(port, 2 * IKE_SPI_OCTETS + ip.length);
  return createHash('sha1').update(input).digest();
}

/** What this side sends: the notify data for its own source and the peer as destination. */
export interface NatdNotifyData {
  /** Data of N(NAT_DETECTION_SOURCE_IP). */
  readonly source: Buffer;
  /** Data of N(NAT_DETECTION_DESTINATION_IP). */
  readonly destination: Buffer;
}

/**
 * The two notify payload data for a message sent from `local` to `remote`.
 * In the IKE_SA_INIT request pass `spiR` undefined (zeros); in the response
 * the responder's SPI.
 */
export function natdNotifyData(
  spiI: Uint8Array,
  spiR: Uint8Array | undefined,
  local: Endpoint,
  remote: Endpoint,
): NatdNotifyData {
  return {
    source: natDetectionHash(spiI, spiR, local.address, local.port),
    destination: natDetectionHash(spiI, spiR, remote.address, remote.port),
  };
}

export interface NatdReceived {
  readonly spiI: Uint8Array;
  /** As the sender used it: undefined (zeros) when checking an IKE_SA_INIT request. */
  readonly spiR: Uint8Array | undefined;
  /** Data of every N(NAT_DETECTION_SOURCE_IP) in the message (the RFC allows several). */
  readonly sourceHashes: readonly Uint8Array[];
  /** Data of every N(NAT_DETECTION_DESTINATION_IP) (normally one). */
  readonly destinationHashes: readonly Uint8Array[];
  /** The datagram's source, as the socket reported it. */
  readonly from: Endpoint;
  /** The address and port the datagram arrived on (must be the real address, not 0.0.0.0). */
  readonly local: Endpoint;
}

export interface NatDetection {
  /** The peer sent both kinds of NATD notify (i.e. supports NAT traversal). */
  readonly peerSupportsNatT: boolean;
  /** Our address was translated: the peer's DESTINATION hash does not match our address. */
  readonly localBehindNat: boolean;
  /** The peer's address was translated: no SOURCE hash matches the datagram's source. */
  readonly peerBehindNat: boolean;
}

/**
 * Compares the received NATD hashes with the datagram's actual addresses.
 * Without both kinds of notify the peer does not do NAT-T and no NAT is
 * reported (RFC 7296: the checks are made only if the payloads are present).
 * Hash comparison need not be constant time: the values are public.
 */
export function detectNat(r: NatdReceived): NatDetection {
  if (r.sourceHashes.length === 0 || r.destinationHashes.length === 0) {
    return { peerSupportsNatT: false, localBehindNat: false, peerBehindNat: false };
  }
  const src = natDetectionHash(r.spiI, r.spiR, r.from.address, r.from.port);
  const dst = natDetectionHash(r.spiI, r.spiR, r.local.address, r.local.port);
  return {
    peerSupportsNatT: true,
    peerBehindNat: !r.sourceHashes.some((h) => src.equals(h)),
    localBehindNat: !r.destinationHashes.some((h) => dst.equals(h)),
  };
}

/** True when either side is behind a NAT. */
export function natDetected(d: NatDetection | undefined): boolean {
  return d !== undefined && (d.localBehindNat || d.peerBehindNat);
}

export type FloatReason =
  /** We are behind a NAT. */
  | 'local-nat'
  /** The peer is behind a NAT. */
  | 'peer-nat'
  /** Configured to always use the NAT-T port (this project's `alwaysFloat`). */
  | 'configured'
  /** Already talking over a non-ESP-marker socket: nothing to change. */
  | 'already-floated'
  | 'no-nat'
  /** The peer sent no NATD notifies: RFC 7296 forbids moving to 4500 then. */
  | 'peer-no-natt';

export interface FloatDecision {
  /** Switch, from the next request on (IKE_AUTH), to the NAT-T socket and peer port. */
  readonly float: boolean;
  readonly reason: FloatReason;
}

export interface FloatInput {
  /** Result of detectNat on the IKE_SA_INIT response. */
  readonly detection: NatDetection;
  /** Project policy: float to the NAT-T port even without a NAT. */
  readonly alwaysFloat: boolean;
  /** The local socket used for IKE_SA_INIT already uses the non-ESP marker (4500 / custom marker ports). */
  readonly currentSocketUsesMarker: boolean;
}

/**
 * The initiator's decision after IKE_SA_INIT (RFC 7296 Section 2.23): move to
 * port 4500 (with the non-ESP marker) when a NAT was detected on either
 * side, or when configured to always do so. Only the initiator floats; the
 * responder follows by answering where each request came from.
 */
export function decideFloat(input: FloatInput): FloatDecision {
  if (input.currentSocketUsesMarker) return { float: false, reason: 'already-floated' };
  if (!input.detection.peerSupportsNatT) return { float: false, reason: 'peer-no-natt' };
  if (input.detection.localBehindNat) return { float: true, reason: 'local-nat' };
  if (input.detection.peerBehindNat) return { float: true, reason: 'peer-nat' };
  if (input.alwaysFloat) return { float: true, reason: 'configured' };
  return { float: false, reason: 'no-nat' };
}

/** The peer endpoint after floating: same address, the peer's NAT-T port. */
export function floatedPeer(peer: Endpoint, peerNatTPort: number = NAT_T_PORT): Endpoint {
  return { address: peer.address, port: peerNatTPort };
}

/**
 * Whether a responder should move its notion of the peer's address to where
 * an authenticated request came from (RFC 7296 Section 2.23: "if a NAT is
 * detected, the responder MUST send to the address and port of the last
 * valid request"). Without a NAT the address stays fixed (no MOBIKE here).
 * The caller must call this only after the request's ICV checked out.
 */
export function responderFollowsPeer(detection: NatDetection | undefined, peerFloated: boolean): boolean {
  return natDetected(detection) || peerFloated;
}
