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

/**
 * One job of a scheduling run. Every time is on one clock (the switch's, to
 * which a real run converts its workers' times; the simulator's virtual
 * clock), from the job's submission, which is its arrival:
 *
 *   submission ──wait──▶ first packet ──transfer──▶ last result     (JCT = wait + transfer)
 *        └─granted─▶ (region)                           └─held─▶ region released
 *
 * and verification, after the last result, counts in neither.
 */
export interface ScheduledJobResult {
  name: string;
  id: number;
  class: "md" | "be";
  mode: "netreduce" | "atp";
  workers: number;
  arriveS: number;
  /** submission to the job's first region (part of the wait) */
  grantedS: number | null;
  /** submission to the first packet: the first worker's first all-reduce began (after its first computeMs) */
  waitS: number | null;
  /** first packet to the last worker's last result (computeMs between epochs included) */
  transferS: number | null;
  /** submission to the last worker's last result: waitS + transferS */
  jctS: number | null;
  /**
   * the slowest worker's check of its output against the reference sum, after
   * its last result and its done; not in the JCT (the simulator verifies in
   * zero virtual time: 0)
   */
  verificationS: number | null;
  /** the last result to the region's release (the last worker's done, ending the job) */
  heldAfterLastResultS: number | null;
  /** the last result to the end of the last worker's verification: the release comes before it */
  verifiedAfterLastResultS: number | null;
  deadlineS: number | null;
  /** whether the last result came within the deadline after submission */
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

/**
 * When a job's data moved, on the control plane's clock (ms): its first
 * worker's first packet, its last worker's last result, the slowest
 * worker's verification (s) and when the last one ended. Null when not
 * every worker got that far.
 */
export interface JobTiming {
  firstPacketAt: number | null;
  lastResultAt: number | null;
  verificationS: number | null;
  verifiedAt: number | null;
}

/** The job's timing from its workers' (first packet, last result, verification), on one clock. */
export function jobTiming(
  workers: ReadonlyArray<{
    firstPacketAt: number;
    lastResultAt: number;
    verificationS: number;
    verifiedAt: number;
  }>,
  expected: number,
): JobTiming {
  const finite = (x: number) => (Number.isFinite(x) ? x : null);
  if (workers.length < expected || workers.length === 0) {
    return { firstPacketAt: null, lastResultAt: null, verificationS: null, verifiedAt: null };
  }
  return {
    firstPacketAt: finite(Math.min(...workers.map((w) => w.firstPacketAt))),
    lastResultAt: finite(Math.max(...workers.map((w) => w.lastResultAt))),
    verificationS: finite(Math.max(...workers.map((w) => w.verificationS))),
    verifiedAt: finite(Math.max(...workers.map((w) => w.verifiedAt))),
  };
}

/** One job's row from the control plane's view of it, its timing and its workers' result records. */
export function scheduledJobResult(
  job: ScheduleJob,
  id: number,
  v: JobView | undefined,
  timing: JobTiming,
  records: ReadonlyArray<Pick<WorkerResultRecord, "retransmissions" | "timeouts" | "verified">>,
): ScheduledJobResult {
  const s = (ms: number | null | undefined, from: number | null | undefined) =>
    ms === null || ms === undefined || from === null || from === undefined
      ? null
      : (ms - from) / 1000;
  const submitted = v?.submittedAt ?? null;
  const waitS = s(timing.firstPacketAt, submitted);
  const transferS = s(timing.lastResultAt, timing.firstPacketAt);
  // The sum, not a third difference: wait + transfer = JCT exactly.
  const jctS = waitS === null || transferS === null ? null : waitS + transferS;
  const deadlineS = job.deadlineS ?? null;
  return {
    name: job.name,
    id,
    class: job.class,
    mode: job.mode,
    workers: job.workers,
    arriveS: job.arriveMs / 1000,
    grantedS: s(v?.startedAt, submitted),
    waitS,
    transferS,
    jctS,
    verificationS: timing.verificationS,
    heldAfterLastResultS: v?.status === "finished" ? s(v.finishedAt, timing.lastResultAt) : null,
    verifiedAfterLastResultS: s(timing.verifiedAt, timing.lastResultAt),
    deadlineS,
    deadlineMet: deadlineS === null ? null : jctS !== null && jctS <= deadlineS,
    regions: (v?.history ?? []).map((h) => ({
      atS: (h.at - (submitted ?? 0)) / 1000,
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
