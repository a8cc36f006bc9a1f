import type { SwitchLinkRecord } from "../proto/records.js";
import { AggregatorState } from "./aggregators.js";
import type { SwitchCore } from "./core.js";
import type { MemoryManager, RegionInUse } from "./memory.js";

/**
 * The switch's memory and jobs as the live page (GET /ui) draws them, from
 * GET /ui/state. The aggregator array is run-length encoded by (job, state):
 * a few runs per region, however large the array, so a page polling twice a
 * second costs the data path one pass over the state arrays.
 */
export const STATE_NAMES = ["empty", "partial", "complete", "fallback"] as const;

/** [first aggregator, how many, job id or -1, state index into STATE_NAMES] */
export type AggregatorRun = [number, number, number, number];

export interface LiveState {
  /** ms on the control plane's clock */
  now: number;
  aggregators: number;
  runs: AggregatorRun[];
  regions: RegionInUse[];
  jobs: Array<{
    id: number;
    name: string;
    mode: string;
    fanIn: number;
    /** from the memory manager: a job submitted to the control plane */
    class: string | null;
    status: string;
    reason: string | null;
    deadlineAt: number | null;
    deadlineFeasible: boolean | null;
    submittedAt: number | null;
    finishedAt: number | null;
    history: Array<{ at: number; offset: number; size: number; epoch: number }>;
    aggregationsCompleted: number;
    contributions: number;
    collisions: number;
    fallbacks: number;
    resends: number;
    drops: number;
  }>;
  /** with emulated links: the switch's port towards each host */
  ports: SwitchLinkRecord[];
}

/** Run-length encodes the aggregator array by (job, state); an empty aggregator has job -1. */
export function encodeRuns(jobIds: ArrayLike<number>, states: ArrayLike<number>): AggregatorRun[] {
  const runs: AggregatorRun[] = [];
  const n = states.length;
  let i = 0;
  while (i < n) {
    const state = states[i];
    const job = state === AggregatorState.empty ? -1 : jobIds[i];
    let j = i + 1;
    while (
      j < n &&
      states[j] === state &&
      (state === AggregatorState.empty ? -1 : jobIds[j]) === job
    ) {
      j++;
    }
    runs.push([i, j - i, job, state]);
    i = j;
  }
  return runs;
}

/** The arrays back from runs (for tests, and any client that wants them). */
export function decodeRuns(runs: AggregatorRun[], count: number) {
  const jobIds = new Int32Array(count).fill(-1);
  const states = new Uint8Array(count);
  for (const [first, length, job, state] of runs) {
    jobIds.fill(job, first, first + length);
    states.fill(state, first, first + length);
  }
  return { jobIds, states };
}

export function liveState(
  core: SwitchCore,
  manager: MemoryManager,
  now: number,
  ports: SwitchLinkRecord[] = [],
  names: ReadonlyMap<number, string> = new Map(),
): LiveState {
  const a = core.aggregators;
  const regions: LiveState["regions"] = [];
  for (const job of core.jobs) {
    if (job.current.size > 0) {
      regions.push({
        jobId: job.id,
        offset: job.current.offset,
        size: job.current.size,
        epoch: job.current.epoch,
        draining: false,
      });
    }
    if (job.old !== null && job.old.size > 0) {
      regions.push({
        jobId: job.id,
        offset: job.old.offset,
        size: job.old.size,
        epoch: job.old.epoch,
        draining: true,
      });
    }
  }
  for (const block of manager.draining) {
    if (!regions.some((r) => r.draining && r.jobId === block.jobId && r.offset === block.offset)) {
      regions.push({ ...block, draining: true });
    }
  }
  const ids = new Set<number>([...core.jobs.map((j) => j.id), ...manager.jobs.keys()]);
  const jobs: LiveState["jobs"] = [...ids]
    .sort((x, y) => x - y)
    .map((id) => {
      const installed = core.job(id);
      const managed = manager.jobs.get(id);
      // A job the switch removed keeps its totals there: counters never go back.
      const current = installed?.counters;
      const retired = core.retiredJobs.get(id)?.counters;
      const total = (
        key:
          | "aggregationsCompleted"
          | "contributions"
          | "collisions"
          | "fallbacks"
          | "resends"
          | "drops",
      ) => (current?.[key] ?? 0) + (retired?.[key] ?? 0);
      return {
        id,
        name: managed?.spec.name ?? names.get(id) ?? `job ${id}`,
        mode: installed?.mode ?? managed?.spec.mode ?? "?",
        fanIn: installed?.fanIn ?? managed?.spec.workers ?? 0,
        class: managed?.spec.jobClass ?? null,
        status: managed?.status ?? (installed !== undefined ? "installed" : "gone"),
        reason: managed?.reason ?? null,
        deadlineAt: managed?.spec.deadlineMs ?? null,
        deadlineFeasible: managed?.deadlineFeasible ?? null,
        submittedAt: managed?.submittedAt ?? null,
        finishedAt: managed?.finishedAt ?? null,
        history: managed?.history ?? [],
        aggregationsCompleted: total("aggregationsCompleted"),
        contributions: total("contributions"),
        collisions: total("collisions"),
        fallbacks: total("fallbacks"),
        resends: total("resends"),
        drops: total("drops"),
      };
    });
  return {
    now,
    aggregators: a.count,
    runs: encodeRuns(a.jobId, a.state),
    regions: regions.sort((x, y) => x.offset - y.offset),
    jobs,
    ports,
  };
}
