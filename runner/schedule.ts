import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type JobView,
  jobTiming,
  type PolicyResult,
  policyResult,
  scheduledJobResult,
  submitBody,
} from "../experiment/schedule.js";
import type { Policy, SwitchConfigInput } from "../proto/config.js";
import { bearer, OPERATOR_TOKEN_ENV } from "../proto/control.js";
import {
  SwitchStatsSchema,
  WorkerReadySchema,
  WorkerResultSchema,
  WorkerStandbySchema,
} from "../proto/records.js";
import type { ScheduleJob, ScheduleScenario } from "../proto/scenario.js";
import { ChildNode } from "./processes.js";
import type { ScrapeTargets } from "./prometheus.js";
import { lingerArgs, linkArgs, SCRIPTS, scrapeWhileAlive, startSwitch } from "./run.js";

/**
 * How long before its arrival a job's workers are started (ms): a Node
 * process takes up to seconds to start on a busy 2-core host, and an idle
 * one in standby costs only memory.
 */
export const WORKER_LEAD_MS = 20_000;
/** How long the first jobs' workers may take to reach standby (ms): at least, and per worker started at once. */
const STANDBY_MS = 120_000;
const STANDBY_PER_WORKER_MS = 2000;

/**
 * Runs the scenario's arrivals under one policy with real processes: a
 * switch with its control plane (and a PS for ATP jobs); every job's
 * workers are started ahead (--control --credential-stdin) and wait in
 * standby; at its arrival the job is submitted and its credential handed
 * to them, so they join, wait while queued, run, and report done.
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
  const operator = randomBytes(24).toString("base64url");
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
      // The runner reads every job's region and history: it is the operator.
      switchEnv: { ...process.env, [OPERATOR_TOKEN_ENV]: operator },
      children,
      targets,
      run: policy,
    });
    if (!("controlUrl" in ready)) throw new Error("the switch has no control plane");
    const control = ready.controlUrl;
    // The workers' times are on the host's monotonic clock; the jobs' on the switch's, which read 0 at its origin.
    const origin = await switchClockOrigin(control);

    const workersOf: ChildNode[][] = scenario.jobs.map(() => []);
    const lastArrival = Math.max(...scenario.jobs.map((j) => j.arriveMs));
    const joinTimeoutS = Math.min(
      86_400,
      Math.ceil((options.timeoutMs + lastArrival + WORKER_LEAD_MS) / 1000),
    );
    /** Starts job j's workers: they start up and wait, in standby, for its credential. */
    const startWorkers = (job: ScheduleJob, j: number) => {
      for (let w = 0; w < job.workers; w++) {
        const child = new ChildNode(`${job.name} worker`, SCRIPTS.worker, [
          "--control",
          control,
          "--job",
          String(j + 1),
          // The id is asked for, so the worker's own link is known.
          "--worker",
          String(w),
          // Not on the command line nor in the environment, where every process could read it.
          "--credential-stdin",
          // Waiting in standby and then in the queue is bounded by the run's timeout, not 600 s.
          "--join-timeout-s",
          String(joinTimeoutS),
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
          ...lingerArgs(targets),
        ]);
        children.push(child);
        workersOf[j].push(child);
        child
          .waitFor(WorkerReadySchema, 600_000)
          .then((record) =>
            scrapeWhileAlive(targets, child, record, {
              process: "worker",
              run: policy,
              ina_job_name: job.name,
            }),
          )
          .catch(() => {});
      }
    };
    // A job's time starts at its submission, not at its processes' start-up:
    // its workers start up to WORKER_LEAD_MS before its arrival (those of the
    // first jobs before the trace's clock starts) and wait in standby.
    const early = scenario.jobs.flatMap((job, j) => (job.arriveMs < WORKER_LEAD_MS ? [j] : []));
    for (const j of early) startWorkers(scenario.jobs[j], j);
    // Many processes starting at once on a few cores each take longer.
    const standbyMs = Math.max(STANDBY_MS, STANDBY_PER_WORKER_MS * children.length);
    await Promise.all(
      early.flatMap((j) => workersOf[j].map((w) => w.waitFor(WorkerStandbySchema, standbyMs))),
    );
    scenario.jobs.forEach((job, j) => {
      if (job.arriveMs >= WORKER_LEAD_MS) {
        timers.push(setTimeout(() => startWorkers(job, j), job.arriveMs - WORKER_LEAD_MS));
      }
    });
    const arrivals = scenario.jobs.map(
      (job, j) =>
        new Promise<void>((resolve, reject) => {
          timers.push(
            setTimeout(() => {
              submit(control, job, j + 1)
                .then((credential) => {
                  for (const worker of workersOf[j]) {
                    if (!worker.records.some((r) => r.event === "standby")) {
                      process.stderr.write(
                        `ina-experiment: warning: a worker of ${job.name} was not in standby at its ` +
                          "arrival: the rest of its start-up counts in the job's wait\n",
                      );
                    }
                    // Read once the worker is in standby (the pipe keeps it until then).
                    worker.send(credential);
                  }
                  resolve();
                })
                .catch(reject);
            }, job.arriveMs),
          );
        }),
    );
    await Promise.all(arrivals);
    const results = await Promise.all(
      workersOf.map((workers) =>
        Promise.all(
          workers.map((w) => w.waitFor(WorkerResultSchema, options.timeoutMs + lastArrival)),
        ),
      ),
    );
    // A worker reports done, then verifies and prints its result: its job has ended once it exits.
    await Promise.all(workersOf.flat().map((w) => w.waitExit(120_000).catch(() => null)));
    const views = (await (
      await fetch(`${control}/jobs`, { headers: { authorization: bearer(operator) } })
    ).json()) as { jobs: JobView[] };
    await options.beforeSwitchStops?.();
    await sw.stop();
    const switchStats = sw.recordsOf(SwitchStatsSchema).find((r) => r.final === true) ?? {};
    const jobs = scenario.jobs.map((job, j) =>
      scheduledJobResult(
        job,
        j + 1,
        views.jobs.find((v) => v.id === j + 1),
        jobTiming(
          results[j].map((r) => ({
            firstPacketAt: (r.firstPacketAtMonotonicMs ?? Number.NaN) - origin,
            lastResultAt: (r.lastResultAtMonotonicMs ?? Number.NaN) - origin,
            verificationS: r.verificationSeconds ?? Number.NaN,
            verifiedAt: (r.verifiedAtMonotonicMs ?? Number.NaN) - origin,
          })),
          job.workers,
        ),
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

/** Where the switch's clock read 0 on the host's monotonic clock, ms (GET /health). */
async function switchClockOrigin(control: string): Promise<number> {
  const health = (await (await fetch(`${control}/health`)).json()) as {
    clockOriginMonotonicMs?: number | null;
  };
  const origin = health.clockOriginMonotonicMs;
  if (typeof origin !== "number")
    throw new Error(`${control}/health tells no clockOriginMonotonicMs`);
  return origin;
}
