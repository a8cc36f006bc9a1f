/**
 * One writer and one reader per packet type (proto/README.md, sections 4,
 * 11, 15 and 17): every sender fills its headers here, and a field a type reuses
 * for another meaning (a region's size in `bitmap`, how long a failed job
 * waited in `aggregatorIndex`, a ring packet's step and chunk) is named
 * for what it means. Writers take their values as arguments and readers fill
 * a caller-owned object: nothing allocates per packet.
 *
 * Readers read a header decodeHeader has checked; types whose fields mean
 * what their names say (contribution, result, ack) are read from the
 * PacketHeader itself.
 */
import { writeHeaderFields } from "./codec.js";
import {
  DESTINATION_ALL_WORKERS,
  type PacketHeader,
  PacketType,
  PROTOCOL_VERSION,
  WORKER_ID_NONE,
} from "./wire.js";

/** Writes a whole header of this version (codec.ts writeHeaderFields). */
function writeHeader(
  view: DataView,
  at: number,
  type: number,
  flags: number,
  jobId: number,
  workerId: number,
  fanIn: number,
  elementCount: number,
  psn: number,
  aggregatorIndex: number,
  bitmap: number,
  scaleBits: number,
  regionEpoch: number,
  destination: number,
): void {
  writeHeaderFields(
    view,
    at,
    PROTOCOL_VERSION,
    type,
    flags,
    jobId,
    workerId,
    fanIn,
    elementCount,
    psn,
    aggregatorIndex,
    bitmap,
    scaleBits,
    regionEpoch,
    destination,
  );
}

/**
 * A `contribution` header (sections 8 to 10): a worker's values for `psn`
 * (`workerId` the worker, `workers` = 1 << workerId), or an aggregate the
 * switch sends the PS (`workerId` WORKER_ID_NONE, `workers` those it sums).
 * `aggregatorIndex` is where the values aggregate (0 for a PS-mode job).
 */
export function writeContribution(
  view: DataView,
  at: number,
  flags: number,
  jobId: number,
  workerId: number,
  fanIn: number,
  elementCount: number,
  psn: number,
  aggregatorIndex: number,
  workers: number,
  scaleBits: number,
  regionEpoch: number,
): void {
  writeHeader(
    view,
    at,
    PacketType.contribution,
    flags,
    jobId,
    workerId,
    fanIn,
    elementCount,
    psn,
    aggregatorIndex,
    workers,
    scaleBits,
    regionEpoch,
    0,
  );
}

/** A NetReduce `result` header (section 8): the switch's sum of `workers` for `psn`, to every worker. */
export function writeResult(
  view: DataView,
  at: number,
  flags: number,
  jobId: number,
  fanIn: number,
  elementCount: number,
  psn: number,
  aggregatorIndex: number,
  workers: number,
  scaleBits: number,
  regionEpoch: number,
): void {
  writeHeader(
    view,
    at,
    PacketType.result,
    flags,
    jobId,
    WORKER_ID_NONE,
    fanIn,
    elementCount,
    psn,
    aggregatorIndex,
    workers,
    scaleBits,
    regionEpoch,
    0,
  );
}

/**
 * An `ack` header (section 10): the PS's sum for `psn`, to `destination` (a
 * worker, or DESTINATION_ALL_WORKERS), repeating the `aggregatorIndex` of
 * the PSN's contributions so the switch can release that ATP aggregator.
 */
export function writeAck(
  view: DataView,
  at: number,
  flags: number,
  jobId: number,
  fanIn: number,
  elementCount: number,
  psn: number,
  aggregatorIndex: number,
  workers: number,
  scaleBits: number,
  regionEpoch: number,
  destination: number,
): void {
  writeHeader(
    view,
    at,
    PacketType.ack,
    flags,
    jobId,
    WORKER_ID_NONE,
    fanIn,
    elementCount,
    psn,
    aggregatorIndex,
    workers,
    scaleBits,
    regionEpoch,
    destination,
  );
}

/**
 * A ring job's data packet, a `forward` (section 17): packet `psn` of the
 * stream from `sender` to `destination` (DESTINATION_ALL_WORKERS: every
 * other worker), the collective's `step` in `aggregatorIndex`, the
 * `chunk` in `bitmap`, and in `regionEpoch` the most packets one
 * acknowledgement may cover.
 */
export function writeRingData(
  view: DataView,
  at: number,
  flags: number,
  jobId: number,
  sender: number,
  fanIn: number,
  elementCount: number,
  psn: number,
  step: number,
  chunk: number,
  scaleBits: number,
  destination: number,
  /** the most packets one acknowledgement may cover (section 17); 0 or 1: one */
  ackCoverage = 0,
): void {
  writeHeader(
    view,
    at,
    PacketType.forward,
    flags,
    jobId,
    sender,
    fanIn,
    elementCount,
    psn,
    step,
    chunk,
    scaleBits,
    ackCoverage,
    destination,
  );
}

/**
 * A ring job's acknowledgement of data packet `psn`, to the worker that sent
 * it; or, with `destination` = `sender`, a hello (section 17). A `forward`
 * with no payload.
 */
export function writeRingControl(
  view: DataView,
  at: number,
  flags: number,
  jobId: number,
  sender: number,
  fanIn: number,
  psn: number,
  destination: number,
  /** an acknowledgement: how many packets before `psn` it covers too (section 17) */
  covers = 0,
): void {
  writeHeader(
    view,
    at,
    PacketType.forward,
    flags,
    jobId,
    sender,
    fanIn,
    0,
    psn,
    covers,
    0,
    0,
    0,
    destination,
  );
}

/**
 * A `region` header (section 11): from PSN `fromPsn` on, the job uses
 * aggregators [offset, offset + regionSize) (`aggregatorIndex`, `bitmap`)
 * with epoch `epoch`. To one worker, or DESTINATION_ALL_WORKERS.
 */
export function writeRegion(
  view: DataView,
  at: number,
  flags: number,
  jobId: number,
  fanIn: number,
  fromPsn: number,
  offset: number,
  regionSize: number,
  epoch: number,
  destination: number,
): void {
  writeHeader(
    view,
    at,
    PacketType.region,
    flags,
    jobId,
    WORKER_ID_NONE,
    fanIn,
    0,
    fromPsn,
    offset,
    regionSize,
    0,
    epoch,
    destination,
  );
}

/**
 * A `failed` header (section 15), to every worker of the job:
 * `deadWorkers` (in `bitmap`; 0: the PS) are the workers `psn` waited for
 * in vain, for `waitedMs` (in `aggregatorIndex`, rounded, at most 2^32 - 1).
 */
export function writeFailed(
  view: DataView,
  at: number,
  jobId: number,
  fanIn: number,
  psn: number,
  deadWorkers: number,
  waitedMs: number,
): void {
  writeHeader(
    view,
    at,
    PacketType.failed,
    0,
    jobId,
    WORKER_ID_NONE,
    fanIn,
    0,
    psn,
    Math.min(0xffffffff, Math.round(waitedMs)),
    deadWorkers,
    0,
    0,
    DESTINATION_ALL_WORKERS,
  );
}

/**
 * A `keepalive` header (section 15): worker `workerId` of the job is alive.
 * No payload; sent when the worker has sent nothing for its keepalive
 * interval. From the worker's bound address it may name, in
 * `aggregatorIndex`, the UDP port of the worker's keepalive socket on the
 * same IP (`keepalivePort`; 0: none), whose keepalives then count too.
 */
export function writeKeepalive(
  view: DataView,
  at: number,
  jobId: number,
  workerId: number,
  fanIn: number,
  keepalivePort = 0,
): void {
  writeHeader(
    view,
    at,
    PacketType.keepalive,
    0,
    jobId,
    workerId,
    fanIn,
    0,
    0,
    keepalivePort,
    0,
    0,
    0,
    0,
  );
}

/** A region packet's fields, by meaning. */
export interface RegionPacket {
  jobId: number;
  flags: number;
  fromPsn: number;
  offset: number;
  regionSize: number;
  epoch: number;
}

/** Reads a decoded `region` header into `out`. */
export function readRegion(h: PacketHeader, out: RegionPacket): void {
  out.jobId = h.jobId;
  out.flags = h.flags;
  out.fromPsn = h.psn;
  out.offset = h.aggregatorIndex;
  out.regionSize = h.bitmap;
  out.epoch = h.regionEpoch;
}

/** A failed packet's fields, by meaning (what proto/failure.ts puts in words). */
export interface FailedPacket {
  jobId: number;
  fanIn: number;
  deadWorkers: number;
  psn: number;
  waitedMs: number;
}

/** Reads a decoded `failed` header into `out`. */
export function readFailed(h: PacketHeader, out: FailedPacket): void {
  out.jobId = h.jobId;
  out.fanIn = h.fanIn;
  out.deadWorkers = h.bitmap;
  out.psn = h.psn;
  out.waitedMs = h.aggregatorIndex;
}

/** A ring job's forward, by meaning: data (elementCount > 0), an acknowledgement or a hello. */
export interface RingPacket {
  sender: number;
  destination: number;
  psn: number;
  elementCount: number;
  step: number;
  chunk: number;
  scaleBits: number;
  /** the most packets one acknowledgement may cover, as the sender says (regionEpoch; 0 or 1: one) */
  ackCoverage: number;
}

/** Reads a decoded ring `forward` header into `out`. */
export function readRing(h: PacketHeader, out: RingPacket): void {
  out.sender = h.workerId;
  out.destination = h.destination;
  out.psn = h.psn;
  out.elementCount = h.elementCount;
  out.step = h.aggregatorIndex;
  out.chunk = h.bitmap;
  out.scaleBits = h.scaleBits;
  out.ackCoverage = h.regionEpoch;
}
