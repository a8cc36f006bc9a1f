import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Policy, SwitchConfigInput } from "../proto/config.js";
import { CREDENTIAL_ENV } from "../proto/control.js";
import { deriveSeed } from "../proto/prng.js";
import {
  type ScheduleJob,
  type ScheduleScenario,
  ScheduleScenarioSchema,
} from "../proto/scenario.js";
import { parseOrUsage } from "../runtime/cli.js";
import { ChildNode, type ProcessRecord } from "./processes.js";
import type { ScrapeTargets } from "./prometheus.js";
import { linkArgs, SCRIPTS, scrapeWhileAlive, startSwitch } from "./run.js";
import { type Summary, summarize } from "./sweep.js";

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
  /** MD jobs that met their deadline, of all MD jobs: the service satisfaction rate */
  deadlinesMet: number;
  deadlineJobs: number;
  verified: boolean;
  /** the switch's final stats record */
  switch: Record<string, unknown>;
  /** why this policy's run failed; its jobs are then empty */
  error?: string;
}

/**
 * Runs the scenario's arrivals under one policy with real processes: a
 * switch with its control plane (and a PS for ATP jobs); at each arrival the
 * job is submitted and its workers started with --control, so they join,
 * wait while queued, run, and report done.
 */
export async function runSchedule(
  scenario: ScheduleScenario,
  policy: Policy,
  options: { timeoutMs: number; targets?: ScrapeTargets; beforeSwitchStops?: () => Promise<void> },
): Promise<PolicyResult> {
  const targets = options.targets;
  const dir = await mkdtemp(join(tmpdir(), "ina-emu-"));
  const children: ChildNode[] = [];
  const timers: NodeJS.Timeout[] = [];
  try {
    const config: SwitchConfigInput = {
      aggregators: scenario.aggregators,
      jobs: [],
      ...(scenario.links === undefined ? {} : { links: scenario.links }),
    };
    const { sw, ready } = await startSwitch({
      dir,
      config,
      withPs: scenario.jobs.some((j) => j.mode === "atp"),
      // The PS learns control-plane jobs from their packets.
      psArgs: ["--adopt-window", String(Math.max(...scenario.jobs.map((j) => j.window)))],
      switchArgs: ["--policy", policy, "--partitions", String(scenario.partitions)],
      children,
      targets,
      run: policy,
    });
    const control = String(ready.controlUrl);

    const workersOf: ChildNode[][] = scenario.jobs.map(() => []);
    const arrivals = scenario.jobs.map(
      (job, j) =>
        new Promise<void>((resolve, reject) => {
          timers.push(
            setTimeout(() => {
              submit(control, job, j + 1)
                .then((credential) => {
                  for (let w = 0; w < job.workers; w++) {
                    const child = new ChildNode(
                      `${job.name} worker`,
                      SCRIPTS.worker,
                      [
                        "--control",
                        control,
                        "--job",
                        String(j + 1),
                        // The id is asked for, so the worker's own link is known.
                        "--worker",
                        String(w),
                        ...linkArgs(scenario.links, { job: j + 1, worker: w }),
                        "--tensor-bytes",
                        String(job.tensorBytes),
                        "--iterations",
                        String(job.epochs),
                        "--compute-ms",
                        String(job.computeMs),
                        "--seed",
                        String(scenario.seed + j + 1),
                        "--progress-ms",
                        "0",
                      ],
                      undefined,
                      // Not on the command line, where every process could read it.
                      { env: { ...process.env, [CREDENTIAL_ENV]: credential } },
                    );
                    children.push(child);
                    workersOf[j].push(child);
                    child
                      .waitFor("ready", 600_000)
                      .then((record) =>
                        scrapeWhileAlive(targets, child, record, {
                          process: "worker",
                          run: policy,
                          ina_job_name: job.name,
                        }),
                      )
                      .catch(() => {});
                  }
                  resolve();
                })
                .catch(reject);
            }, job.arriveMs),
          );
        }),
    );
    await Promise.all(arrivals);
    const lastArrival = Math.max(...scenario.jobs.map((j) => j.arriveMs));
    const results: ProcessRecord[][] = await Promise.all(
      workersOf.map((workers) =>
        Promise.all(workers.map((w) => w.waitFor("result", options.timeoutMs + lastArrival))),
      ),
    );
    const views = (await (await fetch(`${control}/jobs`)).json()) as { jobs: JobView[] };
    await options.beforeSwitchStops?.();
    await sw.stop();
    const switchStats = (sw.records.find((r) => r.event === "stats" && r.final) ?? {}) as Record<
      string,
      unknown
    >;
    const jobs = scenario.jobs.map((job, j) =>
      jobResult(
        job,
        j + 1,
        views.jobs.find((v) => v.id === j + 1),
        results[j],
      ),
    );
    return policyResult(policy, jobs, switchStats);
  } finally {
    for (const t of timers) clearTimeout(t);
    await Promise.all(children.map((c) => c.stop()));
    await rm(dir, { recursive: true, force: true });
  }
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

/** Submits `job` as `id`; resolves with the job's credential. */
async function submit(control: string, job: ScheduleJob, id: number): Promise<string> {
  const response = await fetch(`${control}/jobs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(submitBody(job, id)),
  });
  if (response.status >= 400) {
    const body = (await response.json().catch(() => ({}))) as { message?: string };
    throw new Error(`submitting ${job.name}: ${response.status} ${body.message ?? ""}`);
  }
  return String(((await response.json()) as { credential: string }).credential);
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
    deadlinesMet: md.filter((j) => j.deadlineMet === true).length,
    deadlineJobs: md.length,
    verified: jobs.every((j) => j.verified),
    switch: switchStats,
  };
}

/** One job's row from the control plane's view of it and its workers' result records. */
export function jobResult(
  job: ScheduleJob,
  id: number,
  v: JobView | undefined,
  records: ProcessRecord[],
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
    retransmissions: records.reduce((n, r) => n + Number(r.retransmissions ?? 0), 0),
    timeouts: records.reduce((n, r) => n + Number(r.timeouts ?? 0), 0),
    verified: records.length === job.workers && records.every((r) => r.verified === true),
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
