import { type AggregatorArray, AggregatorState } from "./aggregators.js";
import type { JobState } from "./jobs.js";

/** Why a job failed: the workers it waited for in vain (0: the parameter server), where, how long. */
export interface JobFailure {
  jobId: number;
  fanIn: number;
  /** workers nobody heard from; 0 when the parameter server stopped answering */
  deadWorkers: number;
  /** the PSN that waited */
  psn: number;
  /** how long it waited (ms) */
  waitedMs: number;
}

/**
 * Notices dead peers of a job, sans-IO, from what the switch already holds:
 * a partial aggregator that waited `deadAfterMs` for a worker nobody heard
 * from for as long, or a packet to the PS unacked that long (README.md,
 * "Dead peers": the rule, and why loss or a pause is not taken for a death).
 */
export class Liveness {
  private lastScanAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly aggregators: AggregatorArray,
    readonly deadAfterMs: number,
    /** how often check() looks (ms): a scan reads the job's aggregators */
    private readonly scanEveryMs = 250,
  ) {}

  /** When check() next looks (ms): scanEveryMs after its last scan; Infinity when off. */
  nextCheckAt(): number {
    return this.deadAfterMs <= 0 ? Number.POSITIVE_INFINITY : this.lastScanAt + this.scanEveryMs;
  }

  /** The first failure among `jobs` at `now`, or null. */
  check(jobs: readonly JobState[], now: number): JobFailure | null {
    if (this.deadAfterMs <= 0 || now < this.nextCheckAt()) return null;
    this.lastScanAt = now;
    for (const job of jobs) {
      if (job.awaitingAckSince >= 0 && now - job.awaitingAckSince > this.deadAfterMs) {
        return {
          jobId: job.id,
          fanIn: job.fanIn,
          deadWorkers: 0,
          psn: job.maxPsn,
          waitedMs: now - job.awaitingAckSince,
        };
      }
      if (job.mode === "ps" || job.mode === "ring") continue;
      const stuck = this.oldestStuck(job, now);
      if (stuck >= 0) {
        const a = this.aggregators;
        let silent = 0;
        const missing = (job.fullBitmap & ~a.bitmap[stuck]) >>> 0;
        for (let w = 0; w < job.fanIn; w++) {
          if ((missing >>> w) & 1 && now - job.heardAt[w] > this.deadAfterMs) silent |= 1 << w;
        }
        if (silent !== 0) {
          return {
            jobId: job.id,
            fanIn: job.fanIn,
            deadWorkers: silent >>> 0,
            psn: a.psn[stuck],
            waitedMs: now - a.claimedAt[stuck],
          };
        }
      }
    }
    return null;
  }

  /** The job's partial aggregator that has waited longest beyond deadAfterMs, or -1. */
  private oldestStuck(job: JobState, now: number): number {
    const a = this.aggregators;
    let oldest = -1;
    const regions = job.old === null ? [job.current] : [job.current, job.old];
    for (const region of regions) {
      for (let i = region.offset; i < region.offset + region.size; i++) {
        if (
          a.state[i] === AggregatorState.partial &&
          a.jobId[i] === job.id &&
          now - a.claimedAt[i] > this.deadAfterMs &&
          (oldest < 0 || a.claimedAt[i] < a.claimedAt[oldest])
        ) {
          oldest = i;
        }
      }
    }
    return oldest;
  }
}
