/**
 * The ina-emu data-plane wire format, version 1. `proto/README.md` is the
 * normative spec; this file is its executable form. All multi-byte fields are
 * little-endian, the header is 32 bytes (a multiple of 4, so the int32 payload
 * that follows can be viewed as an Int32Array without copying).
 */

export const PROTOCOL_VERSION = 1;
export const HEADER_BYTES = 32;
export const ELEMENT_BYTES = 4;
/** Largest payload that fits one UDP/IPv4 datagram (65507 bytes) after the header. */
export const MAX_ELEMENTS_PER_PACKET = Math.floor((65507 - HEADER_BYTES) / ELEMENT_BYTES);
/** Bitmaps are 32 bits wide, so a job has at most 32 workers in version 1. */
export const MAX_FAN_IN = 32;
/** Fixed-point scales above 30 leave no headroom for a sum of two values. */
export const MAX_SCALE_BITS = 30;
/** workerId of packets the switch or the parameter server originates. */
export const WORKER_ID_NONE = 0xffff;
/** destination: every worker of the job (multicast). */
export const DESTINATION_ALL_WORKERS = 0xffff;
/** destination: the job's parameter server. */
export const DESTINATION_PS = 0xfffe;

/** Byte offsets of the header fields. */
export const Field = {
  version: 0, // u8
  type: 1, // u8
  flags: 2, // u16
  jobId: 4, // u16
  workerId: 6, // u16
  fanIn: 8, // u16
  elementCount: 10, // u16
  psn: 12, // u32
  aggregatorIndex: 16, // u32
  bitmap: 20, // u32
  scaleBits: 24, // u8
  regionEpoch: 25, // u8
  destination: 26, // u16
  reserved: 28, // u32, zero
} as const;

export const PacketType = {
  /** worker -> switch: one worker's fixed-point values for one PSN. */
  contribution: 1,
  /** switch/PS -> workers: the complete sum for one PSN. */
  result: 2,
  /**
   * PS -> switch -> workers: the complete sum for one PSN; on its way through
   * the switch it releases the ATP aggregator at aggregatorIndex if that still
   * holds (jobId, psn).
   */
  ack: 3,
  /** host -> switch -> host: forwarded unchanged to `destination`. */
  forward: 4,
  /**
   * switch -> workers: the job's region changes. From PSN `psn` on, use
   * aggregators [aggregatorIndex, aggregatorIndex + bitmap) and regionEpoch.
   * No payload.
   */
  region: 5,
  /**
   * switch -> workers: the job has failed and the switch dropped it. `bitmap`
   * names the workers it waited for in vain, `psn` the PSN that waited, and
   * `aggregatorIndex` how long it waited (ms). No payload.
   */
  failed: 6,
  /**
   * worker -> switch: the worker is alive (computing, waiting, blocked). Sent
   * on its bound socket when it has sent nothing for a while; the switch
   * counts it as a sign of life from the bound address and sends it nowhere.
   * No payload.
   */
  keepalive: 7,
} as const;
export type PacketTypeValue = (typeof PacketType)[keyof typeof PacketType];
/** Packet type values are below this: arrays indexed by type have this length. */
export const PACKET_TYPE_COUNT = 8;
export const PACKET_TYPE_NAMES: Record<number, string> = {
  1: "contribution",
  2: "result",
  3: "ack",
  4: "forward",
  5: "region",
  6: "failed",
  7: "keepalive",
};

export const Flag = {
  /** the sender sent this PSN before (retransmission). */
  resend: 1 << 0,
  /** ATP: the aggregator was held by another (job, PSN); passed through to the PS. */
  collision: 1 << 1,
  /** some value saturated: the sum is not exact. */
  overflow: 1 << 2,
  /** congestion experienced. */
  ecn: 1 << 3,
  /** the packet is on its way to the parameter server. */
  toPs: 1 << 4,
  /**
   * The payload is IEEE-754 float32 values of the sum (already divided by
   * 2^scaleBits), not fixed point: the PS's answer for a sum that overflowed
   * int32 and was completed in floating point. Only on acks and results.
   */
  float32: 1 << 5,
  /**
   * The worker that sent this packet accepts datagrams of several packets
   * (section 2.1): the switch may coalesce the packets it sends that worker.
   * Only on a worker's contributions and forwards.
   */
  batches: 1 << 6,
} as const;
export const KNOWN_FLAGS =
  Flag.resend | Flag.collision | Flag.overflow | Flag.ecn | Flag.toPs | Flag.float32 | Flag.batches;

/** One decoded header. Decoders fill a caller-owned instance; never allocate per packet. */
export interface PacketHeader {
  version: number;
  type: number;
  flags: number;
  jobId: number;
  workerId: number;
  fanIn: number;
  elementCount: number;
  psn: number;
  aggregatorIndex: number;
  bitmap: number;
  scaleBits: number;
  regionEpoch: number;
  destination: number;
}

export function emptyHeader(): PacketHeader {
  return {
    version: PROTOCOL_VERSION,
    type: 0,
    flags: 0,
    jobId: 0,
    workerId: 0,
    fanIn: 0,
    elementCount: 0,
    psn: 0,
    aggregatorIndex: 0,
    bitmap: 0,
    scaleBits: 0,
    regionEpoch: 0,
    destination: 0,
  };
}

/** The largest UDP/IPv4 payload: no datagram, of one packet or several, is longer. */
export const MAX_DATAGRAM_BYTES = 65507;

/** Bytes a packet with `elementCount` elements occupies on the wire. */
export function packetBytes(elementCount: number): number {
  return HEADER_BYTES + elementCount * ELEMENT_BYTES;
}
