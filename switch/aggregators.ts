import { Flag, type PacketHeader } from "../proto/wire.js";
import { PacketSlots } from "../runtime/slots.js";

export const AggregatorState = {
  empty: 0,
  /** some workers have contributed to the PSN it holds */
  partial: 1,
  /**
   * every worker contributed; the slot holds the finished packet (NetReduce:
   * the result; ATP: the aggregate sent to the PS, kept until the PS's ack)
   */
  complete: 2,
  /**
   * ATP: the PSN's partial went to the PS (resend or overflow); the aggregator
   * stays reserved for (job, PSN) and passes its contributions to the PS until
   * the ack releases it, so no worker's values are aggregated twice
   */
  fallback: 3,
} as const;
export type AggregatorStateValue = (typeof AggregatorState)[keyof typeof AggregatorState];

/**
 * The switch's aggregator array as parallel typed arrays. Each aggregator's
 * sums live in a PacketSlots slot, right behind a header area, so a finished
 * aggregation is sent straight from the arena: the result header is written in
 * front of the sum and the slot is handed to send() without a copy.
 */
export class AggregatorArray {
  readonly count: number;
  readonly elements: number;
  readonly slots: PacketSlots;
  /** the (job, PSN) the aggregator holds: ATP's tag; NetReduce regions are one job's */
  readonly jobId: Uint16Array;
  readonly psn: Uint32Array;
  readonly bitmap: Uint32Array;
  readonly contributions: Uint8Array;
  readonly state: Uint8Array;
  readonly overflow: Uint8Array;
  /** some packet aggregated here was ECN-marked: the result carries the mark to every worker */
  readonly ecn: Uint8Array;
  readonly elementCount: Uint16Array;
  readonly scaleBits: Uint8Array;
  /** the fan-in and region epoch of the claim: enough to hand an ATP partial to the PS later */
  readonly fanIn: Uint8Array;
  readonly regionEpoch: Uint8Array;
  /** when each aggregator was claimed, for the completion-latency metric */
  readonly claimedAt: Float64Array;
  /**
   * ATP: the latest (job, PSN) that passed through to the PS because this
   * aggregator was held (job -1: none); its later contributions must follow
   * it there rather than claim the aggregator (proto/README.md, section 9)
   */
  readonly pendingJob: Int32Array;
  readonly pendingPsn: Uint32Array;
  /** non-empty aggregators tagged with each job id: how much of a shared pool a job holds */
  readonly heldBy = new Uint32Array(0x10000);
  /** non-empty aggregators, every job's: the pool's occupancy */
  held = 0;
  /** the time of the packet being processed (ms), set by the switch before each program call */
  now = 0;

  constructor(count: number, elements: number) {
    this.count = count;
    this.elements = elements;
    this.slots = new PacketSlots(count, elements);
    this.jobId = new Uint16Array(count);
    this.psn = new Uint32Array(count);
    this.bitmap = new Uint32Array(count);
    this.contributions = new Uint8Array(count);
    this.state = new Uint8Array(count);
    this.overflow = new Uint8Array(count);
    this.ecn = new Uint8Array(count);
    this.elementCount = new Uint16Array(count);
    this.scaleBits = new Uint8Array(count);
    this.fanIn = new Uint8Array(count);
    this.regionEpoch = new Uint8Array(count);
    this.claimedAt = new Float64Array(count);
    this.pendingJob = new Int32Array(count).fill(-1);
    this.pendingPsn = new Uint32Array(count);
  }

  /**
   * Starts aggregating PSN `h.psn` of job `jobId` in aggregator `index` with
   * one worker's contribution: tag, bitmap `bit`, the sender's flags, and the
   * payload copied in as the sum.
   */
  claim(
    index: number,
    jobId: number,
    h: PacketHeader,
    bit: number,
    payload: Int32Array,
    payloadStart: number,
  ): void {
    if (this.state[index] !== AggregatorState.empty) this.heldBy[this.jobId[index]]--;
    else this.held++;
    this.jobId[index] = jobId;
    this.heldBy[jobId]++;
    this.psn[index] = h.psn;
    this.bitmap[index] = bit;
    this.contributions[index] = 1;
    this.overflow[index] = h.flags & Flag.overflow ? 1 : 0;
    this.ecn[index] = h.flags & Flag.ecn ? 1 : 0;
    this.elementCount[index] = h.elementCount;
    this.scaleBits[index] = h.scaleBits;
    this.fanIn[index] = h.fanIn;
    this.regionEpoch[index] = h.regionEpoch;
    const values = this.slots.values;
    const start = this.slots.valuesStart(index);
    for (let i = 0; i < h.elementCount; i++) values[start + i] = payload[payloadStart + i];
    this.state[index] = AggregatorState.partial;
    this.claimedAt[index] = this.now;
  }

  /** Aggregator `index`'s result datagram (header written by the program). */
  resultPacket(index: number, elementCount: number): Buffer {
    return this.slots.packet(index, elementCount);
  }

  /** Sets aggregator `index`'s state, keeping heldBy true: every state change goes through here or claim(). */
  setState(index: number, state: AggregatorStateValue): void {
    const before = this.state[index];
    if (before === AggregatorState.empty) {
      if (state !== AggregatorState.empty) {
        this.heldBy[this.jobId[index]]++;
        this.held++;
      }
    } else if (state === AggregatorState.empty) {
      this.heldBy[this.jobId[index]]--;
      this.held--;
    }
    this.state[index] = state;
  }

  /** Empties [offset, offset + size), e.g. when a job's region is installed. */
  clear(offset: number, size: number): void {
    for (let i = offset; i < offset + size; i++) this.setState(i, AggregatorState.empty);
    this.bitmap.fill(0, offset, offset + size);
    this.contributions.fill(0, offset, offset + size);
    this.overflow.fill(0, offset, offset + size);
    this.ecn.fill(0, offset, offset + size);
  }

  /** The flags a finished aggregate carries: overflow and ECN, ORed over what was aggregated. */
  carriedFlags(index: number): number {
    return (this.overflow[index] ? Flag.overflow : 0) | (this.ecn[index] ? Flag.ecn : 0);
  }
}
