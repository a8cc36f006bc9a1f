/**
 * The memory manager's policies: the size each active job should have now,
 * before placement (placement.ts) finds where. `edf` gives deadline (MD)
 * jobs their demand in deadline order and shares what is left among
 * best-effort (BE) jobs and MD jobs it cannot satisfy; `fcfs` serves jobs in
 * arrival order; `static` splits the pool into equal partitions, one per job;
 * `shared` and `esa` give every ATP job the whole pool to hash into, shared
 * with the others (the switch's data plane arbitrates: first come, or ESA's
 * preemption), and NetReduce jobs nothing (they need a region of their own).
 */

import type { Policy } from "../proto/config.js";
import type { JobSpec, ManagedJob } from "./memory.js";

export interface PolicyOptions {
  policy: Policy;
  /** `static`: number of equal partitions */
  partitions: number;
  /** aggregators to plan: the whole pool but reserved blocks (placement waits for draining space) */
  capacity: number;
}

/**
 * Time_job = Epochs x (Time_comp + Size_model / Throughput), where a job
 * granted `granted` of its `demand` aggregators gets that share of its
 * throughput (its window shrinks with its region).
 */
export function jobDurationMs(spec: JobSpec, granted: number, demand: number): number {
  const share = Math.min(1, granted / demand);
  const transferMs = (spec.modelBytes / (spec.throughputBytesPerSecond * share)) * 1000;
  return spec.epochs * (spec.computeMs + transferMs);
}

/** The size each active job should have under the policy, and why it is less than its demand. */
export function targetSizes(
  active: ManagedJob[],
  now: number,
  o: PolicyOptions,
): Map<number, { size: number; reason: string | null }> {
  const out = new Map<number, { size: number; reason: string | null }>();
  const capacity = o.capacity;
  const byArrival = [...active].sort(
    (a, b) => a.submittedAt - b.submittedAt || a.spec.id - b.spec.id,
  );
  const policy = o.policy;
  if (policy === "shared" || policy === "esa") {
    for (const job of active) {
      out.set(
        job.spec.id,
        job.spec.mode === "atp"
          ? { size: capacity, reason: null }
          : { size: 0, reason: SHARED_POOL_NETREDUCE },
      );
    }
    return out;
  }
  if (policy === "static") {
    const partition = Math.floor(capacity / o.partitions);
    byArrival.forEach((job, i) => {
      if (i >= o.partitions) {
        out.set(job.spec.id, {
          size: 0,
          reason: `all ${o.partitions} partitions in use`,
        });
      } else if (partition < job.minimum) {
        out.set(job.spec.id, {
          size: 0,
          reason: `a partition of ${partition} is below its minimum`,
        });
      } else {
        const size = Math.min(job.demand, partition);
        out.set(job.spec.id, {
          size,
          reason: size < job.demand ? `static partition of ${partition}` : null,
        });
      }
    });
    return out;
  }
  if (policy === "fcfs") {
    let remaining = capacity;
    let blocked = false;
    for (const job of byArrival) {
      const size = blocked ? 0 : Math.min(job.demand, remaining);
      if (size < job.minimum) {
        blocked = true; // first come, first served: nobody overtakes a waiting job
        out.set(job.spec.id, { size: 0, reason: "waiting for earlier jobs to release memory" });
        continue;
      }
      remaining -= size;
      out.set(job.spec.id, {
        size,
        reason: size < job.demand ? `only ${size} of ${job.demand} left` : null,
      });
    }
    return out;
  }
  // edf: MD jobs in deadline order get their demand, or as much of it as
  // still meets the deadline, keeping each running BE job's minimum; the
  // rest share what is left.
  let remaining = capacity;
  // Running jobs are never preempted: each keeps at least its minimum.
  let reserved = active.filter((j) => j.status === "running").reduce((n, j) => n + j.minimum, 0);
  const md = byArrival
    .filter((j) => j.spec.jobClass === "md")
    .sort((a, b) => (a.spec.deadlineMs ?? 0) - (b.spec.deadlineMs ?? 0));
  const shared: ManagedJob[] = [];
  for (const job of md) {
    const own = job.status === "running" ? job.minimum : 0;
    const grant = Math.min(job.demand, remaining - reserved + own);
    // A waiting job is admitted with its whole demand; a running one keeps what is left.
    const meets =
      grant >= job.minimum &&
      (grant === job.demand || job.status === "running") &&
      (job.startedAt ?? now) + jobDurationMs(job.spec, grant, job.demand) <=
        (job.spec.deadlineMs ?? 0);
    if (meets) {
      out.set(job.spec.id, {
        size: grant,
        reason:
          grant < job.demand ? `deadline job: ${grant} of ${job.demand} still meets it` : null,
      });
      remaining -= grant;
      reserved -= own;
    } else shared.push(job);
  }
  for (const job of byArrival) if (job.spec.jobClass === "be") shared.push(job);
  shared.sort((a, b) => a.submittedAt - b.submittedAt || a.spec.id - b.spec.id);
  // Water-filling: equal shares, capped at demand, re-shared until stable;
  // a job whose share is below its minimum waits (latest arrivals first).
  let sharing = [...shared];
  for (;;) {
    // Running jobs' minimums come first; the rest is shared on top.
    const floors = sharing.map((j) => (j.status === "running" ? j.minimum : 0));
    const topUp = waterFill(
      remaining - floors.reduce((a, b) => a + b, 0),
      sharing.map((j, i) => j.demand - floors[i]),
    );
    const sizes = topUp.map((size, i) => size + floors[i]);
    // The latest arrival that waits gives way first; a running job only if none is left.
    let tooSmall = -1;
    let runningTooSmall = -1;
    sharing.forEach((job, i) => {
      // A waiting deadline job joins the sharing only for half its demand or
      // more: a sliver would crawl, and running it slows the jobs that fit.
      const least =
        job.spec.jobClass === "md" && job.status !== "running"
          ? Math.max(job.minimum, Math.ceil(job.demand / 2))
          : job.minimum;
      if (sizes[i] >= least) return;
      if (job.status === "running") runningTooSmall = i;
      else tooSmall = i;
    });
    if (tooSmall < 0) tooSmall = runningTooSmall;
    if (tooSmall < 0) {
      sharing.forEach((job, i) => {
        const missed =
          job.spec.jobClass === "md" ? "deadline cannot be met at full demand, or no room; " : "";
        out.set(job.spec.id, {
          size: sizes[i],
          reason:
            sizes[i] < job.demand
              ? `${missed}shares the remainder: ${sizes[i]} of ${job.demand}`
              : null,
        });
      });
      break;
    }
    out.set(sharing[tooSmall].spec.id, {
      size: 0,
      reason: "the shared remainder is too small for another job",
    });
    sharing = sharing.filter((_, i) => i !== tooSmall);
  }
  return out;
}

/** Why a NetReduce job gets nothing under `shared` and `esa`. */
export const SHARED_POOL_NETREDUCE =
  "the shared and esa policies give the whole pool to ATP jobs, to share; a NetReduce job needs a region of its own (use edf, fcfs or static)";

/** Splits `capacity` equally among demands, never giving more than a demand. */
export function waterFill(capacity: number, demands: number[]): number[] {
  const sizes = demands.map(() => 0);
  let left = capacity;
  let open = demands.map((_, i) => i);
  while (open.length > 0 && left > 0) {
    const share = Math.floor(left / open.length);
    if (share === 0) break;
    const next: number[] = [];
    for (const i of open) {
      const give = Math.min(share, demands[i] - sizes[i]);
      sizes[i] += give;
      left -= give;
      if (sizes[i] < demands[i]) next.push(i);
    }
    // Capped jobs leave their unused share to the others on the next round.
    open = next;
  }
  return sizes;
}
