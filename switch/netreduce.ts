import { netReduceIndex } from "../proto/addressing.js";
import { DropReason, type DropReasonValue } from "../proto/drops.js";
import { addSaturating } from "../proto/fixedpoint.js";
import { writeResult } from "../proto/packets.js";
import { Flag, type PacketHeader } from "../proto/wire.js";
import { type AggregatorArray, AggregatorState } from "./aggregators.js";
import type { JobState, RegionState } from "./jobs.js";

/** What the program tells the caller besides the packet it returns; one instance reused for every packet. */
export interface NetReduceOutcome {
  /** why the contribution was dropped, or DropReason.ok */
  dropReason: DropReasonValue;
  /**
   * the returned result answers a retransmission for a finished PSN: it goes
   * back to the sender only (else it is a completion, for every worker)
   */
  replay: boolean;
  /** the contribution took over an aggregator that held a finished older PSN */
  tookOver: boolean;
  /** the aggregator the contribution maps to */
  index: number;
}

/**
 * The NetReduce program for one contribution: the switch owns addressing
 * (idx = offset + PSN % size), the bitmap makes every worker count once, and
 * a finished result stays in the aggregator until PSN + size takes it over,
 * which the 2 x window rule makes safe (see proto/README.md).
 *
 * Returns the result packet to send (an aggregator's slot, its header
 * written), or null when there is none: absorbed, or dropped (then
 * `outcome.dropReason` says why).
 */
export function netReduceContribute(
  aggregators: AggregatorArray,
  job: JobState,
  region: RegionState,
  h: PacketHeader,
  payload: Int32Array,
  payloadStart: number,
  outcome: NetReduceOutcome,
): Buffer | null {
  const index = netReduceIndex(region.offset, region.size, h.psn);
  outcome.index = index;
  outcome.dropReason = DropReason.ok;
  outcome.replay = false;
  outcome.tookOver = false;
  if (h.aggregatorIndex !== index) return drop(outcome, DropReason.badIndex);
  const bit = 1 << h.workerId;
  const state = aggregators.state[index];
  const heldPsn = aggregators.psn[index];

  if (state === AggregatorState.empty || heldPsn < h.psn) {
    // Correct traffic claims an aggregator with exactly the next PSN that maps
    // to it: the region's first PSN that does (within `size` of its start),
    // then held PSN + size, and only once the held one is finished. Anything
    // further ahead broke a window (or is a stray packet) and must not
    // destroy a result a worker may still need.
    const next =
      state === AggregatorState.empty
        ? h.psn - region.start < region.size
        : h.psn === heldPsn + region.size;
    if (!next || state === AggregatorState.partial) {
      return drop(outcome, DropReason.windowViolation);
    }
    outcome.tookOver = state === AggregatorState.complete;
    aggregators.claim(index, job.id, h, bit, payload, payloadStart);
    return job.fanIn === 1 ? complete(aggregators, job, h, index) : null;
  }
  if (heldPsn > h.psn) return drop(outcome, DropReason.stale);
  if (
    aggregators.elementCount[index] !== h.elementCount ||
    aggregators.scaleBits[index] !== h.scaleBits
  ) {
    return drop(outcome, DropReason.shapeMismatch);
  }
  if ((aggregators.bitmap[index] & bit) !== 0) {
    // Only a worker's own retransmission asks for the result again; a plain
    // network duplicate of a contribution is just dropped.
    if (state === AggregatorState.complete && (h.flags & Flag.resend) !== 0) {
      outcome.replay = true;
      return aggregators.resultPacket(index, h.elementCount);
    }
    return drop(outcome, DropReason.duplicate);
  }
  if (
    addSaturating(
      aggregators.slots.values,
      aggregators.slots.valuesStart(index),
      payload,
      payloadStart,
      h.elementCount,
    ) ||
    (h.flags & Flag.overflow) !== 0
  ) {
    aggregators.overflow[index] = 1;
  }
  if (h.flags & Flag.ecn) aggregators.ecn[index] = 1;
  aggregators.bitmap[index] |= bit;
  aggregators.contributions[index]++;
  if (aggregators.contributions[index] === job.fanIn) return complete(aggregators, job, h, index);
  return null;
}

function drop(outcome: NetReduceOutcome, reason: DropReasonValue): null {
  outcome.dropReason = reason;
  return null;
}

/** Marks the aggregator complete, writes the result header in front of its sum and returns the result. */
function complete(
  aggregators: AggregatorArray,
  job: JobState,
  h: PacketHeader,
  index: number,
): Buffer {
  aggregators.setState(index, AggregatorState.complete);
  writeResult(
    aggregators.slots.view,
    aggregators.slots.headerOffset(index),
    aggregators.carriedFlags(index),
    job.id,
    job.fanIn,
    h.elementCount,
    h.psn,
    index,
    job.fullBitmap,
    h.scaleBits,
    h.regionEpoch,
  );
  return aggregators.resultPacket(index, h.elementCount);
}
