import { netReduceIndex } from "../proto/addressing.js";
import { encodeHeader } from "../proto/codec.js";
import { DropReason, type DropReasonValue } from "../proto/drops.js";
import { addSaturating } from "../proto/fixedpoint.js";
import { emptyHeader, Flag, type PacketHeader, PacketType, WORKER_ID_NONE } from "../proto/wire.js";
import { type AggregatorArray, AggregatorState } from "./aggregators.js";
import type { JobState, RegionState } from "./jobs.js";

export const Verdict = {
  /** added (or claimed); nothing to send */
  absorbed: 0,
  /** the aggregation finished: multicast packets[index] to the job's workers */
  completed: 1,
  /** a retransmission for a finished PSN: send packets[index] back to the sender */
  replay: 2,
  /** not used; the reason is in `outcome.dropReason` */
  drop: 3,
} as const;
export type VerdictValue = (typeof Verdict)[keyof typeof Verdict];

/** Filled by the program for the caller; one instance reused for every packet. */
export interface ProgramOutcome {
  index: number;
  dropReason: DropReasonValue;
  /** the contribution took over an aggregator that held a finished older PSN */
  tookOver: boolean;
}

/**
 * The NetReduce program for one contribution: the switch owns addressing
 * (idx = offset + PSN % size), the bitmap makes every worker count once, and
 * a finished result stays in the aggregator until PSN + size takes it over,
 * which the 2 x window rule makes safe (see proto/README.md).
 */
export function netReduceContribute(
  aggregators: AggregatorArray,
  job: JobState,
  region: RegionState,
  h: PacketHeader,
  payload: Int32Array,
  payloadStart: number,
  outcome: ProgramOutcome,
): VerdictValue {
  const index = netReduceIndex(region.offset, region.size, h.psn);
  outcome.index = index;
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
    return job.fanIn === 1 ? complete(aggregators, job, h, index) : Verdict.absorbed;
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
    if (state === AggregatorState.complete && (h.flags & Flag.resend) !== 0) return Verdict.replay;
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
  return Verdict.absorbed;
}

function drop(outcome: ProgramOutcome, reason: DropReasonValue): VerdictValue {
  outcome.dropReason = reason;
  return Verdict.drop;
}

const resultHeader = emptyHeader();

/** Marks the aggregator complete and writes the result header in front of its sum. */
function complete(
  aggregators: AggregatorArray,
  job: JobState,
  h: PacketHeader,
  index: number,
): VerdictValue {
  aggregators.setState(index, AggregatorState.complete);
  resultHeader.type = PacketType.result;
  resultHeader.flags = aggregators.carriedFlags(index);
  resultHeader.jobId = job.id;
  resultHeader.workerId = WORKER_ID_NONE;
  resultHeader.fanIn = job.fanIn;
  resultHeader.elementCount = h.elementCount;
  resultHeader.psn = h.psn;
  resultHeader.aggregatorIndex = index;
  resultHeader.bitmap = job.fullBitmap;
  resultHeader.scaleBits = h.scaleBits;
  resultHeader.regionEpoch = h.regionEpoch;
  resultHeader.destination = 0;
  encodeHeader(aggregators.slots.view, aggregators.slots.headerOffset(index), resultHeader);
  return Verdict.completed;
}
