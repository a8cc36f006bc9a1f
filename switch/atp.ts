import { encodeHeader } from "../proto/codec.js";
import { DropReason, type DropReasonValue } from "../proto/drops.js";
import { addIfNoOverflow } from "../proto/fixedpoint.js";
import { emptyHeader, Flag, type PacketHeader, PacketType, WORKER_ID_NONE } from "../proto/wire.js";
import { type AggregatorArray, AggregatorState } from "./aggregators.js";
import type { JobState, RegionState } from "./jobs.js";

export const AtpVerdict = {
  /** claimed or added; nothing to send */
  absorbed: 0,
  /** every worker contributed: send the aggregator's packet (the full aggregate) to the PS */
  aggregateToPs: 1,
  /** send the contribution itself on to the PS (collision, resend, or the PSN is in fallback) */
  passThrough: 2,
  /** send the aggregator's partial to the PS, then the contribution itself */
  evictAndPassThrough: 3,
  /** a retransmission found its PSN's full aggregate still held: send that to the PS again */
  aggregateToPsAgain: 4,
  /** not used; the reason is in `outcome.dropReason` */
  drop: 5,
  /**
   * another job's partial held the aggregator past its lease: send it to the
   * PS (it is written ready), then offer the contribution again, which now
   * finds the aggregator empty
   */
  evictForeign: 6,
} as const;
export type AtpVerdictValue = (typeof AtpVerdict)[keyof typeof AtpVerdict];

/** Filled by the program for the caller; one instance reused for every packet. */
export interface AtpOutcome {
  index: number;
  dropReason: DropReasonValue;
  /** the aggregator was held by another (job, PSN) */
  collision: boolean;
  /** adding would have overflowed int32; the PSN falls back to the PS */
  overflowed: boolean;
  /** a stale aggregator of the same job was freed first */
  freedStale: boolean;
  /** workers in the partial an evictAndPassThrough sends */
  evictedBitmap: number;
  /** another job's expired claim was taken back first */
  reclaimed: boolean;
  /** the job held its quota of the pool: the contribution passes through to the PS */
  overQuota: boolean;
}

/**
 * How long another job's claim on a shared aggregator holds (ms) before a
 * contribution that needs the aggregator may take it back: no tenant can pin
 * the pool with PSNs that never complete. Far above an aggregation's time.
 */
export const ATP_LEASE_MS = 1000;

/**
 * The ATP program for one contribution (seed 004, scheme 2). The worker
 * chose the aggregator (Hash(JobID, PSN) % size + offset); the switch checks
 * only that it lies in the job's slice of the pool. An empty aggregator is
 * claimed and tagged (job, PSN); a matching tag adds unless the worker's bit
 * is set; another tag is a collision and the packet passes through to the
 * PS. A full aggregate goes to the PS, whose ack releases the aggregator.
 *
 * Retransmissions are never aggregated here: a worker resends only when it
 * lacks the result, so the PS may already hold its values. A resend that
 * finds its PSN's partial evicts the partial to the PS and leaves the
 * aggregator in `fallback` for that PSN until the ack, so every worker's
 * values reach the PS at most once per piece and the PS's bitmap does the rest.
 */
export function atpContribute(
  aggregators: AggregatorArray,
  job: JobState,
  region: RegionState,
  h: PacketHeader,
  payload: Int32Array,
  payloadStart: number,
  outcome: AtpOutcome,
): AtpVerdictValue {
  const index = h.aggregatorIndex;
  outcome.index = index;
  outcome.collision = false;
  outcome.overflowed = false;
  outcome.freedStale = false;
  outcome.evictedBitmap = 0;
  outcome.reclaimed = false;
  outcome.overQuota = false;
  if (index < region.offset || index >= region.offset + region.size) {
    outcome.dropReason = DropReason.badIndex;
    return AtpVerdict.drop;
  }
  const bit = 1 << h.workerId;
  const resend = (h.flags & Flag.resend) !== 0;
  let state = aggregators.state[index];
  let held = state !== AggregatorState.empty && aggregators.jobId[index] === job.id;
  // A worker sends PSN p only once it has the result of every PSN up to
  // p - window, so the PS has finished those: whatever the job still holds
  // for one of them (a late duplicate's claim, a lost ack) is only in the way.
  if (held && aggregators.psn[index] + job.window <= h.psn) {
    aggregators.setState(index, AggregatorState.empty);
    state = AggregatorState.empty;
    held = false;
    outcome.freedStale = true;
  }
  if (
    state !== AggregatorState.empty &&
    !held &&
    !resend &&
    aggregators.now - aggregators.claimedAt[index] > ATP_LEASE_MS
  ) {
    // Another job's claim outlived its lease: take the aggregator back. A
    // partial's values go to the PS first, so no worker's work is lost.
    outcome.reclaimed = true;
    if (state === AggregatorState.partial) {
      writeForeignPiece(aggregators, index);
      aggregators.setState(index, AggregatorState.empty);
      outcome.evictedBitmap = aggregators.bitmap[index];
      return AtpVerdict.evictForeign;
    }
    aggregators.setState(index, AggregatorState.empty);
    state = AggregatorState.empty;
  }
  if (!held || aggregators.psn[index] !== h.psn) {
    if (state === AggregatorState.empty && !resend && job.quota > 0) {
      // A job at its quota leaves the rest of the shared pool to the others.
      if (aggregators.heldBy[job.id] >= job.quota) {
        outcome.overQuota = true;
        return passThroughPending(aggregators, job, h, index);
      }
    }
    if (state === AggregatorState.empty && !resend) {
      aggregators.claim(index, job.id, h, bit, payload, payloadStart);
      if (aggregators.pendingJob[index] === job.id && aggregators.pendingPsn[index] === h.psn) {
        // Some of this PSN's values went to the PS while the aggregator was
        // held: the rest follow them there, or the PSN would complete nowhere.
        aggregators.setState(index, AggregatorState.fallback);
        aggregators.pendingJob[index] = -1;
        return AtpVerdict.passThrough;
      }
      return job.fanIn === 1 ? complete(aggregators, job, h, index) : AtpVerdict.absorbed;
    }
    outcome.collision = state !== AggregatorState.empty;
    return outcome.collision
      ? passThroughPending(aggregators, job, h, index)
      : AtpVerdict.passThrough;
  }
  if (
    aggregators.elementCount[index] !== h.elementCount ||
    aggregators.scaleBits[index] !== h.scaleBits
  ) {
    outcome.dropReason = DropReason.shapeMismatch;
    return AtpVerdict.drop;
  }
  if (state === AggregatorState.fallback) return AtpVerdict.passThrough;
  if (state === AggregatorState.complete) {
    if (resend) return AtpVerdict.aggregateToPsAgain;
    outcome.dropReason = DropReason.duplicate;
    return AtpVerdict.drop;
  }
  // partial, same (job, PSN)
  if (resend) return evict(aggregators, job, h, index, outcome);
  if ((aggregators.bitmap[index] & bit) !== 0) {
    outcome.dropReason = DropReason.duplicate;
    return AtpVerdict.drop;
  }
  const slots = aggregators.slots;
  if (
    !addIfNoOverflow(slots.values, slots.valuesStart(index), payload, payloadStart, h.elementCount)
  ) {
    outcome.overflowed = true;
    return evict(aggregators, job, h, index, outcome);
  }
  if (h.flags & Flag.overflow) aggregators.overflow[index] = 1;
  if (h.flags & Flag.ecn) aggregators.ecn[index] = 1;
  aggregators.bitmap[index] |= bit;
  aggregators.contributions[index]++;
  if (aggregators.contributions[index] === job.fanIn) return complete(aggregators, job, h, index);
  return AtpVerdict.absorbed;
}

/** A first send passes through to the PS: its PSN becomes the aggregator's pending tag. */
function passThroughPending(
  aggregators: AggregatorArray,
  job: JobState,
  h: PacketHeader,
  index: number,
): AtpVerdictValue {
  aggregators.pendingJob[index] = job.id;
  aggregators.pendingPsn[index] = h.psn;
  return AtpVerdict.passThrough;
}

/**
 * An ack from the PS for (jobId, psn) at `index`: frees the aggregator if it
 * still holds that tag. Returns whether it did; an ack whose tag no longer
 * matches (the aggregator was freed and claimed again) releases nothing.
 */
export function atpRelease(
  aggregators: AggregatorArray,
  job: JobState,
  psn: number,
  index: number,
): boolean {
  // The tag proves the aggregator is the job's, wherever its region is now.
  if (index >= aggregators.count) return false;
  if (
    aggregators.state[index] === AggregatorState.empty ||
    aggregators.jobId[index] !== job.id ||
    aggregators.psn[index] !== psn
  ) {
    return false;
  }
  aggregators.setState(index, AggregatorState.empty);
  return true;
}

const pieceHeader = emptyHeader();

/** Writes the header of the aggregate the aggregator sends to the PS in front of its sum. */
function writePieceHeader(
  aggregators: AggregatorArray,
  job: JobState,
  h: PacketHeader,
  index: number,
  flags: number,
): void {
  pieceHeader.type = PacketType.contribution;
  pieceHeader.flags = flags | Flag.toPs | aggregators.carriedFlags(index);
  pieceHeader.jobId = job.id;
  pieceHeader.workerId = WORKER_ID_NONE;
  pieceHeader.fanIn = job.fanIn;
  pieceHeader.elementCount = aggregators.elementCount[index];
  pieceHeader.psn = h.psn;
  pieceHeader.aggregatorIndex = index;
  pieceHeader.bitmap = aggregators.bitmap[index];
  pieceHeader.scaleBits = aggregators.scaleBits[index];
  pieceHeader.regionEpoch = h.regionEpoch;
  pieceHeader.destination = 0;
  encodeHeader(aggregators.slots.view, aggregators.slots.headerOffset(index), pieceHeader);
}

/** Writes the header of another job's partial, from what its claim recorded, for the PS. */
function writeForeignPiece(aggregators: AggregatorArray, index: number): void {
  pieceHeader.type = PacketType.contribution;
  pieceHeader.flags = Flag.resend | Flag.toPs | aggregators.carriedFlags(index);
  pieceHeader.jobId = aggregators.jobId[index];
  pieceHeader.workerId = WORKER_ID_NONE;
  pieceHeader.fanIn = aggregators.fanIn[index];
  pieceHeader.elementCount = aggregators.elementCount[index];
  pieceHeader.psn = aggregators.psn[index];
  pieceHeader.aggregatorIndex = index;
  pieceHeader.bitmap = aggregators.bitmap[index];
  pieceHeader.scaleBits = aggregators.scaleBits[index];
  pieceHeader.regionEpoch = aggregators.regionEpoch[index];
  pieceHeader.destination = 0;
  encodeHeader(aggregators.slots.view, aggregators.slots.headerOffset(index), pieceHeader);
}

function complete(
  aggregators: AggregatorArray,
  job: JobState,
  h: PacketHeader,
  index: number,
): AtpVerdictValue {
  aggregators.setState(index, AggregatorState.complete);
  writePieceHeader(aggregators, job, h, index, 0);
  return AtpVerdict.aggregateToPs;
}

function evict(
  aggregators: AggregatorArray,
  job: JobState,
  h: PacketHeader,
  index: number,
  outcome: AtpOutcome,
): AtpVerdictValue {
  aggregators.setState(index, AggregatorState.fallback);
  outcome.evictedBitmap = aggregators.bitmap[index];
  writePieceHeader(aggregators, job, h, index, Flag.resend);
  return AtpVerdict.evictAndPassThrough;
}
