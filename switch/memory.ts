/**
 * The switch memory manager, pure logic with the clock passed in: it turns
 * jobs' demands into regions (offset, size) of the aggregator array,
 * recomputing on every arrival, completion, cancellation and drained region
 * (README.md, "Scheduling": demand, duration, policies, placement, decisions).
 */

import { newerEpoch } from "../proto/addressing.js";
import type { Policy } from "../proto/config.js";
import { bestFit, gaps, largestRun, totalSize } from "./placement.js";
import { jobDurationMs, SHARED_POOL_NETREDUCE, targetSizes } from "./policies.js";

export interface JobSpec {
  id: number;
  name: string;
  /** "md": must finish by `deadlineMs`; "be": best effort */
  jobClass: "md" | "be";
  /** absolute, on the manager's clock; MD jobs only */
  deadlineMs?: number;
  mode: "netreduce" | "atp";
  workers: number;
  modelBytes: number;
  epochs: number;
  /** computation per iteration, ms */
  computeMs: number;
  /** expected throughput (bytes/s) and RTT (ms) of the job's all-reduce */
  throughputBytesPerSecond: number;
  rttMs: number;
  /** asks for this many aggregators instead of Throughput x RTT */
  aggregators?: number;
  /** packets each worker keeps in flight (told to joining workers; default 128) */
  window?: number;
  /** the job's packet shape, when given: the switch refuses other shapes */
  elementsPerPacket?: number;
  scaleBits?: number;
  /** the job's dead-peer timeout (s; switch/liveness.ts), when it sets one */
  deadPeerS?: number;
}

export type JobStatus = "queued" | "running" | "finished" | "cancelled" | "rejected" | "failed";

export interface Region {
  offset: number;
  size: number;
  /** bumped on every change of the job's region */
  epoch: number;
}

export interface ManagedJob {
  spec: JobSpec;
  /** aggregators the job asks for, and the least it can run with */
  demand: number;
  minimum: number;
  status: JobStatus;
  region: Region | null;
  /** why the job has less than its demand, or is queued or rejected; null when fully granted */
  reason: string | null;
  submittedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  /** every region the job held, with when it got it */
  history: Array<{ at: number; offset: number; size: number; epoch: number }>;
  /** MD jobs: whether the deadline can still be met at the current grant */
  deadlineFeasible: boolean | null;
  /** estimated finish at the current grant (or at full demand while queued) */
  estimatedFinishMs: number | null;
}

/** Aggregators a job's old region still holds while its packets drain. */
export interface DrainingBlock {
  jobId: number;
  offset: number;
  size: number;
  /** the epoch whose packets still use it */
  epoch: number;
}

export interface Decision {
  jobId: number;
  outcome: "granted" | "reduced" | "queued" | "rejected" | "released";
  region: Region | null;
  demand: number;
  reason: string | null;
}

export interface ManagerOptions {
  aggregators: number;
  /** bytes one aggregator holds (elementsPerAggregator x 4) */
  bytesPerAggregator: number;
  policy: Policy;
  /** `static`: number of equal partitions */
  partitions?: number;
  /** [offset, size] blocks the manager must leave alone (jobs from a static config) */
  reserved?: Array<[number, number]>;
}

export class ManagerError extends Error {
  constructor(
    readonly code: "conflict" | "notFound" | "invalid",
    message: string,
  ) {
    super(message);
  }
}

/** A region of the aggregator array in use: a running job's, or an old one it still drains. */
export interface RegionInUse {
  jobId: number;
  offset: number;
  size: number;
  epoch: number;
  /** an old region the job's packets still use */
  draining: boolean;
}

export class MemoryManager {
  readonly jobs = new Map<number, ManagedJob>();
  readonly draining: DrainingBlock[] = [];
  readonly options: Required<ManagerOptions>;

  constructor(options: ManagerOptions) {
    this.options = { partitions: 4, reserved: [], ...options };
  }

  /** Aggregators the job needs for full speed: Throughput x RTT, x2 for NetReduce. */
  demandOf(spec: JobSpec): number {
    const minimum = this.minimumOf(spec);
    if (spec.aggregators !== undefined) return Math.max(minimum, spec.aggregators);
    const inFlightBytes = (spec.throughputBytesPerSecond * spec.rttMs) / 1000;
    const window = Math.max(1, Math.ceil(inFlightBytes / this.options.bytesPerAggregator));
    return spec.mode === "netreduce" ? 2 * window : window;
  }

  minimumOf(spec: JobSpec): number {
    return spec.mode === "netreduce" ? 2 : 1;
  }

  /** Time_job for `spec` granted `granted` of its `demand` aggregators (policies.ts). */
  durationMs(spec: JobSpec, granted: number, demand: number): number {
    return jobDurationMs(spec, granted, demand);
  }

  submit(spec: JobSpec, now: number): Decision[] {
    if (this.jobs.has(spec.id)) {
      throw new ManagerError("conflict", `job ${spec.id} already exists`);
    }
    if (spec.jobClass === "md" && spec.deadlineMs === undefined) {
      throw new ManagerError("invalid", "an MD job needs a deadline");
    }
    const demand = this.demandOf(spec);
    const job: ManagedJob = {
      spec,
      demand,
      minimum: this.minimumOf(spec),
      status: "queued",
      region: null,
      reason: null,
      submittedAt: now,
      startedAt: null,
      finishedAt: null,
      history: [],
      deadlineFeasible: null,
      estimatedFinishMs: null,
    };
    this.jobs.set(spec.id, job);
    const shared = this.options.policy === "shared" || this.options.policy === "esa";
    if (shared && spec.mode !== "atp") {
      job.status = "rejected";
      job.reason = SHARED_POOL_NETREDUCE;
      return [{ jobId: spec.id, outcome: "rejected", region: null, demand, reason: job.reason }];
    }
    if (job.minimum > this.options.aggregators) {
      job.status = "rejected";
      job.reason = `needs at least ${job.minimum} aggregators; the switch has ${this.options.aggregators}`;
      return [{ jobId: spec.id, outcome: "rejected", region: null, demand, reason: job.reason }];
    }
    return this.recompute(now);
  }

  finish(id: number, now: number): Decision[] {
    return this.end(id, "finished", now);
  }

  cancel(id: number, now: number): Decision[] {
    return this.end(id, "cancelled", now);
  }

  /** The switch failed the job (a worker or the PS stopped answering): its memory goes back. */
  fail(id: number, reason: string, now: number): Decision[] {
    const decisions = this.end(id, "failed", now);
    this.get(id).reason = reason;
    return decisions;
  }

  /**
   * The switch reports that a job's regions of `epoch` and older hold
   * nothing anyone needs (a change it skipped drains with the one after it).
   */
  drained(jobId: number, epoch: number, now: number): Decision[] {
    const before = this.draining.length;
    for (let i = this.draining.length - 1; i >= 0; i--) {
      const b = this.draining[i];
      if (b.jobId === jobId && (b.epoch === epoch || newerEpoch(epoch, b.epoch))) {
        this.draining.splice(i, 1);
      }
    }
    return this.draining.length === before ? [] : this.recompute(now);
  }

  get(id: number): ManagedJob {
    const job = this.jobs.get(id);
    if (job === undefined) throw new ManagerError("notFound", `no job ${id}`);
    return job;
  }

  /** Every region in use (by running jobs and draining blocks) and the free gaps, by offset. */
  allocation(): {
    aggregators: number;
    regions: RegionInUse[];
    free: Array<{ offset: number; size: number }>;
    freeTotal: number;
  } {
    const regions = [
      ...[...this.jobs.values()]
        .filter((j) => j.region !== null && j.status === "running")
        .map((j) => ({ jobId: j.spec.id, ...(j.region as Region), draining: false })),
      ...this.draining.map((b) => ({ ...b, draining: true })),
    ].sort((a, b) => a.offset - b.offset || a.size - b.size);
    const free = gaps(this.options.aggregators, [
      ...this.options.reserved,
      ...regions.map((r): [number, number] => [r.offset, r.size]),
    ]);
    return {
      aggregators: this.options.aggregators,
      regions,
      free,
      freeTotal: totalSize(free),
    };
  }

  private end(id: number, status: "finished" | "cancelled" | "failed", now: number): Decision[] {
    const job = this.get(id);
    if (
      job.status === "finished" ||
      job.status === "cancelled" ||
      job.status === "rejected" ||
      job.status === "failed"
    ) {
      throw new ManagerError("conflict", `job ${id} is already ${job.status}`);
    }
    job.status = status;
    job.finishedAt = now;
    const released: Decision = {
      jobId: id,
      outcome: "released",
      region: job.region,
      demand: job.demand,
      reason: status,
    };
    job.region = null;
    // A finished job's workers are gone: its region is free at once.
    for (let i = this.draining.length - 1; i >= 0; i--) {
      if (this.draining[i].jobId === id) this.draining.splice(i, 1);
    }
    return [released, ...this.recompute(now)];
  }

  /**
   * Decides every active job's size by the policy, then moves regions only as
   * far as needed, so nothing churns: a running job above its target shrinks
   * in place (its tail drains); one below it grows in place or moves to a
   * free run that holds its target, or else keeps what it has; a queued job
   * takes the smallest free run that holds its target (best fit), or the largest run if
   * that is at least its minimum. Space that a region left stays draining
   * until the switch reports it drained.
   */
  private recompute(now: number): Decision[] {
    const active = [...this.jobs.values()].filter(
      (j) => j.status === "queued" || j.status === "running",
    );
    const targets = targetSizes(active, now, {
      policy: this.options.policy,
      partitions: this.options.partitions,
      capacity: totalSize(gaps(this.options.aggregators, this.options.reserved)),
    });
    const target = (job: ManagedJob) => targets.get(job.spec.id) ?? { size: 0, reason: null };
    const decisions: Decision[] = [];
    const decide = (job: ManagedJob, outcome: Decision["outcome"]) => {
      decisions.push({
        jobId: job.spec.id,
        outcome,
        region: job.region === null ? null : { ...job.region },
        demand: job.demand,
        reason: job.reason,
      });
    };
    if (this.options.policy === "shared" || this.options.policy === "esa") {
      // Every ATP job hashes into the same pool, the largest run the
      // config's own jobs leave: no region is ever moved or shrunk.
      const pool = largestRun(gaps(this.options.aggregators, this.options.reserved));
      for (const job of active) {
        if (job.region === null && pool.size >= job.minimum) {
          this.assign(job, pool.offset, pool.size, now);
          job.reason = null;
          decide(job, "granted");
        }
        if (job.region !== null) this.estimate(job, now, job.region.size);
      }
      return decisions;
    }
    const running = active.filter((j) => j.region !== null);
    // 1. Shrink (or preempt) running jobs above their target.
    for (const job of running) {
      const region = job.region as Region;
      const t = target(job);
      if (t.size >= region.size) continue;
      if (t.size < job.minimum) {
        this.retire(job, region.offset, region.size);
        job.status = "queued";
        job.reason = t.reason ?? "preempted";
        decide(job, "queued");
        continue;
      }
      // Keep the end that leaves the larger run free once the rest drains.
      const keepTail =
        this.largestRunWith(job, region.offset + region.size - t.size, t.size) >
        this.largestRunWith(job, region.offset, t.size);
      const offset = keepTail ? region.offset + region.size - t.size : region.offset;
      const freedAt = keepTail ? region.offset : region.offset + t.size;
      this.retire(job, freedAt, region.size - t.size);
      this.assign(job, offset, t.size, now);
      job.reason = t.size < job.demand ? t.reason : null;
      decide(job, t.size < job.demand ? "reduced" : "granted");
    }
    // 2. Grow running jobs below their target, where a free run allows it.
    for (const job of running) {
      const region = job.region;
      const t = target(job);
      if (region === null || t.size <= region.size) continue;
      const free = this.freeRuns();
      const after = free.find((g) => g.offset === region.offset + region.size);
      let offset = -1;
      if (after !== undefined && region.size + after.size >= t.size) offset = region.offset;
      else offset = bestFit(free, t.size);
      if (offset < 0) {
        // The job's own region may be what splits the free space: grow over
        // it, within the run it lies in, keeping as much of it as fits.
        const around = this.freeRuns(job).find(
          (g) =>
            g.size >= t.size &&
            g.offset <= region.offset &&
            region.offset + region.size <= g.offset + g.size,
        );
        if (around !== undefined) {
          offset = Math.max(
            around.offset,
            Math.min(region.offset, around.offset + around.size - t.size),
          );
        }
      }
      if (offset < 0) {
        job.reason = `waiting for a free run of ${t.size} aggregators to grow into`;
        continue;
      }
      // A new region that covers the old one drains it in place (the switch
      // holds the new epoch back until the old one has drained); any other
      // move leaves the old region draining.
      const covers = offset <= region.offset && region.offset + region.size <= offset + t.size;
      if (!covers) this.retire(job, region.offset, region.size);
      this.assign(job, offset, t.size, now);
      job.reason = t.size < job.demand ? t.reason : null;
      decide(job, t.size < job.demand ? "reduced" : "granted");
    }
    // 3. Place queued jobs, in the policy's order.
    for (const job of this.serviceOrder(active.filter((j) => j.region === null))) {
      const t = target(job);
      const free = this.freeRuns();
      let size = t.size;
      let reason = t.reason;
      if (size === 0 && this.options.policy === "edf") {
        // The plan left nothing, but memory it gave others may sit idle (a
        // job that cannot grow into it): backfill rather than wait, whole
        // for a deadline job, at least the minimum for the others.
        const largest = largestRun(free).size;
        const least = job.spec.jobClass === "md" ? job.demand : job.minimum;
        if (largest >= least) {
          size = Math.min(job.demand, largest);
          reason = `backfilled into ${size} idle aggregators`;
        }
      }
      let offset = bestFit(free, size);
      if (size >= job.minimum && offset < 0 && this.runAfterDrain(size)) {
        // Draining takes about one round trip: waiting beats taking a fragment.
        const why = `waiting for draining aggregators to make a run of ${size}`;
        if (job.reason !== why) {
          job.reason = why;
          job.status = "queued";
          decide(job, "queued");
        }
        this.estimate(job, now, job.demand);
        continue;
      }
      if (size >= job.minimum && offset < 0) {
        const largest = largestRun(free);
        // A fragment under half the target would crawl (its window shrinks
        // with it); better to wait for a job to finish.
        if (largest.size >= Math.max(job.minimum, Math.floor(size / 2))) {
          reason = `fragmented: no free run of ${size} aggregators; the largest is ${largest.size}`;
          size = largest.size;
          offset = largest.offset;
        }
      }
      if (size < job.minimum || offset < 0) {
        const why = reason ?? `no free run of ${Math.max(job.minimum, size)} aggregators`;
        if (job.reason !== why || job.status !== "queued") {
          job.reason = why;
          job.status = "queued";
          decide(job, "queued");
        }
        this.estimate(job, now, job.demand);
        continue;
      }
      this.assign(job, offset, size, now);
      job.reason = size < job.demand ? reason : null;
      decide(job, size < job.demand ? "reduced" : "granted");
    }
    for (const job of active) {
      if (job.region !== null) this.estimate(job, now, job.region.size);
    }
    return decisions;
  }

  /** Gives a job the region (offset, size), with a new epoch if it had one before. */
  private assign(job: ManagedJob, offset: number, size: number, now: number): void {
    const epoch = job.history.length === 0 ? 0 : ((job.history.at(-1)?.epoch ?? 0) + 1) % 256;
    job.region = { offset, size, epoch };
    job.history.push({ at: now, offset, size, epoch });
    job.status = "running";
    if (job.startedAt === null) job.startedAt = now;
  }

  /** Free runs: not in any job's region (but `except`'s) nor draining. */
  private freeRuns(except?: ManagedJob): Array<{ offset: number; size: number }> {
    const blocks: Array<[number, number]> = [
      ...this.options.reserved,
      ...this.draining.map((b): [number, number] => [b.offset, b.size]),
    ];
    for (const job of this.jobs.values()) {
      if (job.region !== null && job !== except) {
        blocks.push([job.region.offset, job.region.size]);
      }
    }
    return gaps(this.options.aggregators, blocks);
  }

  /** The largest run free after draining if `job` held [offset, offset + size) instead of its region. */
  private largestRunWith(job: ManagedJob, offset: number, size: number): number {
    const blocks: Array<[number, number]> = [...this.options.reserved, [offset, size]];
    for (const other of this.jobs.values()) {
      if (other !== job && other.region !== null) {
        blocks.push([other.region.offset, other.region.size]);
      }
    }
    return largestRun(gaps(this.options.aggregators, blocks)).size;
  }

  /** Whether a run of `size` will be free once every draining block has drained. */
  private runAfterDrain(size: number): boolean {
    const blocks: Array<[number, number]> = [...this.options.reserved];
    for (const job of this.jobs.values()) {
      if (job.region !== null) blocks.push([job.region.offset, job.region.size]);
    }
    return gaps(this.options.aggregators, blocks).some((g) => g.size >= size);
  }

  /** Queued jobs in the order the policy serves them. */
  private serviceOrder(jobs: ManagedJob[]): ManagedJob[] {
    const byArrival = (a: ManagedJob, b: ManagedJob) =>
      a.submittedAt - b.submittedAt || a.spec.id - b.spec.id;
    if (this.options.policy !== "edf") return [...jobs].sort(byArrival);
    const deadline = (j: ManagedJob) =>
      j.spec.jobClass === "md" ? (j.spec.deadlineMs ?? 0) : Number.POSITIVE_INFINITY;
    return [...jobs].sort((a, b) => deadline(a) - deadline(b) || byArrival(a, b));
  }

  /**
   * Aggregators [offset, offset + size) that the job's current epoch used
   * become draining; the job's region is cleared (assign() sets a new one).
   */
  private retire(job: ManagedJob, offset: number, size: number): void {
    const r = job.region;
    if (r === null) return;
    if (size > 0) this.draining.push({ jobId: job.spec.id, offset, size, epoch: r.epoch });
    job.region = null;
  }

  private estimate(job: ManagedJob, now: number, granted: number): void {
    const finish = now + this.durationMs(job.spec, granted, job.demand);
    job.estimatedFinishMs = finish;
    job.deadlineFeasible =
      job.spec.jobClass === "md"
        ? finish <= (job.spec.deadlineMs ?? Number.POSITIVE_INFINITY)
        : null;
  }

  /** The size each active job should have under the policy now, before placement. */
  plan(now: number): Map<number, number> {
    const active = [...this.jobs.values()].filter(
      (j) => j.status === "queued" || j.status === "running",
    );
    return new Map(
      [
        ...targetSizes(active, now, {
          policy: this.options.policy,
          partitions: this.options.partitions,
          capacity: totalSize(gaps(this.options.aggregators, this.options.reserved)),
        }),
      ].map(([id, t]) => [id, t.size]),
    );
  }
}
