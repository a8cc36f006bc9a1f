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
 * Notices dead peers of a job, sans-IO, from what the switch already holds.
 * With D the job's dead-peer timeout (its `deadPeerS`, else the switch's):
 * a partial aggregator that has waited D for a worker that gave no sign of
 * life (JobState.heardAt) for D either, or a packet to the PS unacked for D
 * (README.md, "Dead peers": the rule, its bound, and why loss, a pause or a
 * stranger's packets are not taken for life or death).
 */
export class Liveness {
  private lastScanAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly aggregators: AggregatorArray,
    /** D of jobs that set none (ms; 0: never) */
    readonly defaultDeadMs: number,
    /** how often check() looks at most (ms): a scan reads the jobs' aggregators */
    readonly scanEveryMs = 250,
  ) {}

  /** The job's dead-peer timeout (ms; 0: never). */
  deadMsOf(job: JobState): number {
    return job.deadPeerMs >= 0 ? job.deadPeerMs : this.defaultDeadMs;
  }

  /**
   * When check() may next look (ms): scanEveryMs after its last scan. Cheap,
   * so the switch's timer can ask it after every event; nextCheckAt(jobs)
   * is the exact moment a failure could next be found, for a reader.
   */
  nextScanAt(): number {
    return this.lastScanAt + this.scanEveryMs;
  }

  /** The first failure among `jobs` at `now`, or null. Scans at most every scanEveryMs. */
  check(jobs: readonly JobState[], now: number): JobFailure | null {
    if (now < this.nextScanAt()) return null;
    this.lastScanAt = now;
    for (const job of jobs) {
      const dead = this.deadMsOf(job);
      if (dead <= 0) continue;
      if (job.awaitingAckSince >= 0 && now - job.awaitingAckSince >= dead) {
        return {
          jobId: job.id,
          fanIn: job.fanIn,
          deadWorkers: 0,
          psn: job.maxPsn,
          waitedMs: now - job.awaitingAckSince,
        };
      }
      if (job.mode === "ps" || job.mode === "ring") continue;
      const stuck = this.oldestPartial(job, now - dead);
      if (stuck >= 0) {
        const a = this.aggregators;
        let silent = 0;
        const missing = (job.fullBitmap & ~a.bitmap[stuck]) >>> 0;
        for (let w = 0; w < job.fanIn; w++) {
          if ((missing >>> w) & 1 && now - job.heardAt[w] >= dead) silent |= 1 << w;
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

  /**
   * The earliest time check() could find a failure among `jobs` as they are
   * now (ms), or +Infinity when nothing waits: a timer may sleep until then
   * (every packet the switch takes may only move it later, except one that
   * claims an aggregator or sends to the PS, after which ask again).
   */
  nextCheckAt(jobs: readonly JobState[]): number {
    let next = Number.POSITIVE_INFINITY;
    for (const job of jobs) {
      const dead = this.deadMsOf(job);
      if (dead <= 0) continue;
      if (job.awaitingAckSince >= 0) next = Math.min(next, job.awaitingAckSince + dead);
      if (job.mode === "ps" || job.mode === "ring") continue;
      const oldest = this.oldestPartial(job, Number.POSITIVE_INFINITY);
      if (oldest < 0) continue;
      const a = this.aggregators;
      const missing = (job.fullBitmap & ~a.bitmap[oldest]) >>> 0;
      let heard = Number.POSITIVE_INFINITY;
      for (let w = 0; w < job.fanIn; w++) {
        if ((missing >>> w) & 1) heard = Math.min(heard, job.heardAt[w]);
      }
      next = Math.min(next, Math.max(a.claimedAt[oldest], heard) + dead);
    }
    return next === Number.POSITIVE_INFINITY
      ? next
      : Math.max(next, this.lastScanAt + this.scanEveryMs);
  }

  /** The job's partial aggregator claimed longest ago, at or before `claimedBy`, or -1. */
  private oldestPartial(job: JobState, claimedBy: number): number {
    const a = this.aggregators;
    let oldest = -1;
    const regions = job.old === null ? [job.current] : [job.current, job.old];
    for (const region of regions) {
      for (let i = region.offset; i < region.offset + region.size; i++) {
        if (
          a.state[i] === AggregatorState.partial &&
          a.jobId[i] === job.id &&
          a.claimedAt[i] <= claimedBy &&
          (oldest < 0 || a.claimedAt[i] < a.claimedAt[oldest])
        ) {
          oldest = i;
        }
      }
    }
    return oldest;
  }
}
