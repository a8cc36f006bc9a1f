import { DropReason, type DropReasonValue } from "../proto/drops.js";
import { addIfNoOverflow } from "../proto/fixedpoint.js";
import { writeContribution } from "../proto/packets.js";
import { Field, Flag, type PacketHeader, WORKER_ID_NONE } from "../proto/wire.js";
import { type AggregatorArray, AggregatorState } from "./aggregators.js";
import type { JobState, RegionState } from "./jobs.js";

/**
 * What the program tells the caller besides the aggregate it returns; one
 * instance reused for every packet.
 */
export interface AtpOutcome {
  /** the aggregator the worker chose */
  index: number;
  /** why the contribution was dropped, or DropReason.ok */
  dropReason: DropReasonValue;
  /** the returned aggregate is complete: every worker contributed (its first send to the PS) */
  completed: boolean;
  /**
   * the contribution itself goes on to the PS (collision, resend, over quota,
   * or its PSN is in fallback); after the returned aggregate if there is one
   * (the partial it evicted)
   */
  passThrough: boolean;
  /**
   * the returned aggregate is another job's partial, whose lease ran out:
   * send it to the PS, then offer the contribution again, which now finds
   * the aggregator empty
   */
  foreign: boolean;
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
  /**
   * the aggregator was taken from another job's partial (then `foreign`:
   * the partial goes to the PS first) or complete aggregate by ESA's
   * preemption, rather than reclaimed at the end of a lease
   */
  preempted: boolean;
  /** with `preempted`: the job it was taken from */
  preemptedJobId: number;
}

/**
 * ESA's priority rule, as the switch knows it (the `esa` pool): whether a
 * first send of `claimant` may take an aggregator from job `holderId`'s
 * partial aggregate. Asked only on a collision with another job's partial.
 */
export interface AtpPriority {
  outranks(claimant: JobState, holderId: number): boolean;
}

/**
 * How long another job's claim on a shared aggregator holds (ms) before a
 * contribution that needs the aggregator may take it back: no tenant can pin
 * the pool with PSNs that never complete. Far above an aggregation's time.
 */
export const ATP_LEASE_MS = 1000;

/**
 * The ATP program for one contribution (the in-network computing survey's scheme 2). The worker
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
 *
 * Returns the aggregate to send to the PS (an aggregator's slot, its header
 * written), or null; `outcome` says what else to do: drop the contribution,
 * or pass it through to the PS, or offer it again (`foreign`).
 */
export function atpContribute(
  aggregators: AggregatorArray,
  job: JobState,
  region: RegionState,
  h: PacketHeader,
  payload: Int32Array,
  payloadStart: number,
  outcome: AtpOutcome,
  /** the `esa` pool's priority rule; null: no preemption (ATP's own first come) */
  priority: AtpPriority | null = null,
): Buffer | null {
  const index = h.aggregatorIndex;
  outcome.index = index;
  outcome.dropReason = DropReason.ok;
  outcome.completed = false;
  outcome.passThrough = false;
  outcome.foreign = false;
  outcome.collision = false;
  outcome.overflowed = false;
  outcome.freedStale = false;
  outcome.evictedBitmap = 0;
  outcome.reclaimed = false;
  outcome.overQuota = false;
  outcome.preempted = false;
  outcome.preemptedJobId = -1;
  if (index < region.offset || index >= region.offset + region.size) {
    outcome.dropReason = DropReason.badIndex;
    return null;
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
      outcome.foreign = true;
      return aggregate(aggregators, index);
    }
    aggregators.setState(index, AggregatorState.empty);
    state = AggregatorState.empty;
  }
  if (
    priority !== null &&
    (state === AggregatorState.partial || state === AggregatorState.complete) &&
    !held &&
    !resend &&
    !(aggregators.pendingJob[index] === job.id && aggregators.pendingPsn[index] === h.psn) &&
    priority.outranks(job, aggregators.jobId[index])
  ) {
    // ESA's preemption: the aggregator becomes this job's. The holder's PSN
    // becomes the pending tag, so its later contributions go to the PS even
    // once the aggregator is free again. A partial goes to the PS first,
    // whose bitmap merges it with the rest of that PSN. A complete aggregate
    // is at the PS already: taking it only ends the wait for the PS's ack
    // (ATP's synchronous deallocation, what ESA preempts); if that aggregate
    // was lost, each of the holder's workers lacks the result and resends
    // its own values to the PS. A fallback is left alone (it holds nothing
    // but its tag), and so is an aggregator this (job, PSN) is pending on:
    // some of its values are at the PS, so it could not complete here.
    outcome.preempted = true;
    outcome.preemptedJobId = aggregators.jobId[index];
    aggregators.pendingJob[index] = aggregators.jobId[index];
    aggregators.pendingPsn[index] = aggregators.psn[index];
    if (state === AggregatorState.partial) {
      outcome.foreign = true;
      outcome.evictedBitmap = aggregators.bitmap[index];
      writeForeignPiece(aggregators, index);
      aggregators.setState(index, AggregatorState.empty);
      return aggregate(aggregators, index);
    }
    aggregators.setState(index, AggregatorState.empty);
    state = AggregatorState.empty;
  }
  if (!held || aggregators.psn[index] !== h.psn) {
    if (state === AggregatorState.empty && !resend && job.quota > 0) {
      // A job at its quota leaves the rest of the shared pool to the others.
      if (aggregators.heldBy[job.id] >= job.quota) {
        outcome.overQuota = true;
        return passThroughPending(aggregators, job, h, index, outcome);
      }
    }
    if (state === AggregatorState.empty && !resend) {
      aggregators.claim(index, job.id, h, bit, payload, payloadStart);
      if (aggregators.pendingJob[index] === job.id && aggregators.pendingPsn[index] === h.psn) {
        // Some of this PSN's values went to the PS while the aggregator was
        // held: the rest follow them there, or the PSN would complete nowhere.
        aggregators.setState(index, AggregatorState.fallback);
        aggregators.pendingJob[index] = -1;
        outcome.passThrough = true;
        return null;
      }
      return job.fanIn === 1 ? complete(aggregators, job, h, index, outcome) : null;
    }
    outcome.collision = state !== AggregatorState.empty;
    if (outcome.collision) return passThroughPending(aggregators, job, h, index, outcome);
    outcome.passThrough = true;
    return null;
  }
  if (
    aggregators.elementCount[index] !== h.elementCount ||
    aggregators.scaleBits[index] !== h.scaleBits
  ) {
    outcome.dropReason = DropReason.shapeMismatch;
    return null;
  }
  if (state === AggregatorState.fallback) {
    outcome.passThrough = true;
    return null;
  }
  if (state === AggregatorState.complete) {
    if (resend) {
      // Its full aggregate again, marked as a resend so the PS, if already
      // done, sends its ack again.
      const slots = aggregators.slots;
      const at = slots.headerOffset(index) + Field.flags;
      slots.view.setUint16(at, slots.view.getUint16(at, true) | Flag.resend, true);
      return aggregate(aggregators, index);
    }
    outcome.dropReason = DropReason.duplicate;
    return null;
  }
  // partial, same (job, PSN)
  if (resend) return evict(aggregators, job, h, index, outcome);
  if ((aggregators.bitmap[index] & bit) !== 0) {
    outcome.dropReason = DropReason.duplicate;
    return null;
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
  if (aggregators.contributions[index] === job.fanIn) {
    return complete(aggregators, job, h, index, outcome);
  }
  return null;
}

/** A first send passes through to the PS: its PSN becomes the aggregator's pending tag. */
function passThroughPending(
  aggregators: AggregatorArray,
  job: JobState,
  h: PacketHeader,
  index: number,
  outcome: AtpOutcome,
): null {
  aggregators.pendingJob[index] = job.id;
  aggregators.pendingPsn[index] = h.psn;
  outcome.passThrough = true;
  return null;
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

/** Aggregator `index`'s packet as the program last wrote it: an aggregate for the PS. */
function aggregate(aggregators: AggregatorArray, index: number): Buffer {
  return aggregators.resultPacket(index, aggregators.elementCount[index]);
}

/** Writes the header of the aggregate the aggregator sends to the PS in front of its sum. */
function writePieceHeader(
  aggregators: AggregatorArray,
  job: JobState,
  h: PacketHeader,
  index: number,
  flags: number,
): void {
  writeContribution(
    aggregators.slots.view,
    aggregators.slots.headerOffset(index),
    flags | Flag.toPs | aggregators.carriedFlags(index),
    job.id,
    WORKER_ID_NONE,
    job.fanIn,
    aggregators.elementCount[index],
    h.psn,
    index,
    aggregators.bitmap[index],
    aggregators.scaleBits[index],
    h.regionEpoch,
  );
}

/** Writes the header of another job's partial, from what its claim recorded, for the PS. */
function writeForeignPiece(aggregators: AggregatorArray, index: number): void {
  writeContribution(
    aggregators.slots.view,
    aggregators.slots.headerOffset(index),
    Flag.resend | Flag.toPs | aggregators.carriedFlags(index),
    aggregators.jobId[index],
    WORKER_ID_NONE,
    aggregators.fanIn[index],
    aggregators.elementCount[index],
    aggregators.psn[index],
    index,
    aggregators.bitmap[index],
    aggregators.scaleBits[index],
    aggregators.regionEpoch[index],
  );
}

function complete(
  aggregators: AggregatorArray,
  job: JobState,
  h: PacketHeader,
  index: number,
  outcome: AtpOutcome,
): Buffer {
  aggregators.setState(index, AggregatorState.complete);
  writePieceHeader(aggregators, job, h, index, 0);
  outcome.completed = true;
  return aggregate(aggregators, index);
}

/** Sends the PSN's partial to the PS and leaves the aggregator in fallback; the contribution follows. */
function evict(
  aggregators: AggregatorArray,
  job: JobState,
  h: PacketHeader,
  index: number,
  outcome: AtpOutcome,
): Buffer {
  aggregators.setState(index, AggregatorState.fallback);
  outcome.evictedBitmap = aggregators.bitmap[index];
  writePieceHeader(aggregators, job, h, index, Flag.resend);
  outcome.passThrough = true;
  return aggregate(aggregators, index);
}
