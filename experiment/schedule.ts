import type { Policy } from "../proto/config.js";
import { deriveSeed } from "../proto/prng.js";
import type { WorkerResultRecord } from "../proto/records.js";
import {
  type ScheduleJob,
  type ScheduleScenario,
  ScheduleScenarioSchema,
} from "../proto/scenario.js";
import { parseOrUsage } from "../runtime/cli.js";
import type { OccupancySeries } from "./occupancy.js";
import { type Summary, summarize } from "./sweep.js";

/**
 * Scheduling scenarios (jobs that arrive, submitted to the switch's control
 * plane, once per memory-manager policy), whichever executor runs them: their
 * model, the submission body, and the results of a policy's run.
 */

export function parseScheduleScenario(input: unknown, source = "scenario"): ScheduleScenario {
  return parseOrUsage(ScheduleScenarioSchema, input, source);
}

export interface ScheduledJobResult {
  name: string;
  id: number;
  class: "md" | "be";
  mode: "netreduce" | "atp";
  workers: number;
  arriveS: number;
  /** submission to first region */
  waitS: number | null;
  /** submission to the last worker's done */
  jctS: number | null;
  deadlineS: number | null;
  deadlineMet: boolean | null;
  /** regions over time: seconds after submission, offset, size */
  regions: Array<{ atS: number; offset: number; size: number; epoch: number }>;
  status: string;
  retransmissions: number;
  timeouts: number;
  verified: boolean;
}

export interface PolicyResult {
  policy: Policy;
  /** 1-based repetition, and its seed, when the scenario repeats */
  repetition?: number;
  seed?: number;
  jobs: ScheduledJobResult[];
  /** average JCT over every job (s) */
  averageJctS: number;
  /** the tail: the longest JCT (s; a scenario has at most 64 jobs, so a p99 would be about it) */
  maxJctS?: number;
  /** the simulator's: the fraction of the aggregators held over virtual time (experiment/occupancy.ts) */
  occupancy?: OccupancySeries;
  /** MD jobs that met their deadline, of all MD jobs: the service satisfaction rate */
  deadlinesMet: number;
  deadlineJobs: number;
  verified: boolean;
  /** the switch's final stats record */
  switch: Record<string, unknown>;
  /** why this policy's run failed; its jobs are then empty */
  error?: string;
}

export interface JobView {
  id: number;
  status: string;
  submittedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  deadlineAt: number | null;
  history: Array<{ at: number; offset: number; size: number; epoch: number }>;
}

/** The control plane's JobSubmit for `job` as `id` (what the processes and the simulator both send). */
export function submitBody(job: ScheduleJob, id: number) {
  return {
    id,
    name: job.name,
    class: job.class,
    deadlineS: job.deadlineS,
    mode: job.mode,
    workers: job.workers,
    window: job.window,
    // the workers' defaults (--elements-per-packet, --scale-bits)
    elementsPerPacket: 256,
    scaleBits: 20,
    modelBytes: job.tensorBytes,
    epochs: job.epochs,
    computeMs: job.computeMs,
    throughputMBps: job.throughputMBps,
    rttMs: job.rttMs,
    aggregators: job.aggregators,
  };
}

/** One policy's outcome from its jobs': the average JCT, the deadlines met, whether all verified. */
export function policyResult(
  policy: Policy,
  jobs: ScheduledJobResult[],
  switchStats: Record<string, unknown>,
): PolicyResult {
  const md = jobs.filter((j) => j.class === "md");
  const jcts = jobs.map((j) => j.jctS ?? Number.NaN);
  return {
    policy,
    jobs,
    averageJctS: jcts.reduce((a, b) => a + b, 0) / jcts.length,
    maxJctS: Math.max(0, ...jcts),
    deadlinesMet: md.filter((j) => j.deadlineMet === true).length,
    deadlineJobs: md.length,
    verified: jobs.every((j) => j.verified),
    switch: switchStats,
  };
}

/** A policy whose run failed with `error`: no jobs, not verified. */
export function failedPolicy(policy: Policy, error: string): PolicyResult {
  return {
    policy,
    jobs: [],
    averageJctS: 0,
    maxJctS: 0,
    deadlinesMet: 0,
    deadlineJobs: 0,
    verified: false,
    switch: {},
    error,
  };
}

/** One job's row from the control plane's view of it and its workers' result records. */
export function scheduledJobResult(
  job: ScheduleJob,
  id: number,
  v: JobView | undefined,
  records: ReadonlyArray<Pick<WorkerResultRecord, "retransmissions" | "timeouts" | "verified">>,
): ScheduledJobResult {
  const s = (ms: number | null | undefined, from: number) =>
    ms === null || ms === undefined ? null : (ms - from) / 1000;
  const submitted = v?.submittedAt ?? 0;
  const finished = v?.finishedAt ?? null;
  const deadline = v?.deadlineAt ?? null;
  return {
    name: job.name,
    id,
    class: job.class,
    mode: job.mode,
    workers: job.workers,
    arriveS: job.arriveMs / 1000,
    waitS: s(v?.startedAt, submitted),
    jctS: s(finished, submitted),
    deadlineS: job.deadlineS ?? null,
    deadlineMet: deadline === null ? null : finished !== null && finished <= deadline,
    regions: (v?.history ?? []).map((h) => ({
      atS: (h.at - submitted) / 1000,
      offset: h.offset,
      size: h.size,
      epoch: h.epoch,
    })),
    status: v?.status ?? "unknown",
    retransmissions: records.reduce((n, r) => n + r.retransmissions, 0),
    timeouts: records.reduce((n, r) => n + r.timeouts, 0),
    verified: records.length === job.workers && records.every((r) => r.verified),
  };
}

/** A policy over a scenario's repetitions: its average JCT and deadlines met, as statistics. */
export interface PolicyStatistics {
  policy: Policy;
  repetitions: number;
  failed: number;
  averageJctS: Summary | null;
  deadlinesMet: Summary | null;
  deadlineJobs: number;
}

export function policyStatistics(results: readonly PolicyResult[]): PolicyStatistics[] {
  const policies = [...new Set(results.map((r) => r.policy))];
  return policies.map((policy) => {
    const all = results.filter((r) => r.policy === policy);
    const ok = all.filter((r) => r.error === undefined);
    return {
      policy,
      repetitions: all.length,
      failed: all.length - ok.length,
      averageJctS: summarize(ok.map((r) => r.averageJctS)),
      deadlinesMet: summarize(ok.map((r) => r.deadlinesMet)),
      deadlineJobs: ok[0]?.deadlineJobs ?? 0,
    };
  });
}

/** The seed of repetition `repetition` (0-based) of a scheduling scenario seeded `seed`. */
export function repetitionSeed(seed: number, repetition: number): number {
  return repetition === 0 ? seed : deriveSeed(seed, 1000 + repetition);
}
