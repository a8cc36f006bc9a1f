import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { workerFraction } from "../experiment/progress.js";
import {
  jobResultOfRecords,
  linkLoads,
  linkSeries,
  type RunResult,
  runResult,
  sumPsReports,
} from "../experiment/results.js";
import {
  needsSharedPs,
  type ResolvedJob,
  resolveJobs,
  switchConfigOf,
} from "../experiment/scenario.js";
import type { SwitchConfigInput } from "../proto/config.js";
import { hostNicParams, type Links, linkParamsFor } from "../proto/links.js";
import {
  type FloorReadyRecord,
  FloorReadySchema,
  FloorStatsSchema,
  type PsReadyRecord,
  PsReadySchema,
  type PsStatsLine,
  PsStatsSchema,
  type SwitchReadyRecord,
  SwitchReadySchema,
  SwitchStatsSchema,
  type WorkerReadyRecord,
  WorkerReadySchema,
  WorkerRecordSchema,
  WorkerResultSchema,
} from "../proto/records.js";
import type { ScenarioRun } from "../proto/scenario.js";
import { ChildNode, type ProcessRecord, parseRecord } from "./processes.js";
import type { ScrapeTargets } from "./prometheus.js";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
export const SCRIPTS = {
  switch: here("../switch/cli.js"),
  ps: here("../ps/cli.js"),
  worker: here("../worker/cli.js"),
};

/** What a job's slowest worker is doing. */
export type JobPhase = "allreduce" | "verifying" | "done";

export interface JobProgress {
  /** packets completed, of all the job's packets */
  fraction: number;
  phase: JobPhase;
}

/**
 * How long the runner waits for a process to say it is ready, or to exit
 * after its work (ms): a Node process takes seconds to start on a host at
 * load 30; a healthy run never waits this long.
 */
export const STARTUP_MS = 120_000;

export interface RunOptions {
  /** seed of faults, and of gradients for jobs without their own */
  seed: number;
  timeoutMs: number;
  /**
   * instead of the switch, a floor relay's script that prints the floor's
   * ready and stats records (the benchmark's bench/floor-switch.ts: one
   * lossless NetReduce job)
   */
  floorScript?: string;
  /** called with each job's progress, about every 500 ms */
  onProgress?: (jobs: Record<string, JobProgress>) => void;
  /** lists every process's /metrics for Prometheus while it runs */
  targets?: ScrapeTargets;
  /** awaited after the workers end, before the switch stops (--ui keeps its page up) */
  beforeSwitchStops?: () => Promise<void>;
  /** called once the workers are started, with where the switch and PS listen (on 127.0.0.1) */
  onRunning?: (run: {
    switchPort: number;
    /** the switch's control plane (and live page at /ui); null for the floor relay */
    controlUrl: string | null;
    psPort: number | null;
    jobs: ResolvedJob[];
  }) => void;
}

/**
 * Lists `child`'s /metrics (from its ready record) while it lives. `labels`
 * become target labels (`process`, `run`, a worker's `ina_job_name`): only
 * what the process does not export itself, or Prometheus would rename its own
 * to `exported_<name>`.
 */
export function scrapeWhileAlive(
  targets: ScrapeTargets | undefined,
  child: ChildNode,
  ready: SwitchReadyRecord | FloorReadyRecord | PsReadyRecord | WorkerReadyRecord,
  labels: Record<string, string>,
): void {
  if (targets === undefined || !("metricsUrl" in ready)) return;
  const name = `${labels.process}-${child.child.pid}`;
  void targets.add(name, ready.metricsUrl, labels);
  void child.exited.then(() => targets.remove(name));
}

/**
 * Starts a run's PS (when `withPs`, with `psArgs`) and then its switch on
 * `config`, which gets the PS's address; both on ephemeral ports, both added
 * to `children` (for the caller to stop) and to the scrape targets.
 */
export async function startSwitch(o: {
  dir: string;
  config: SwitchConfigInput;
  withPs: boolean;
  psArgs?: string[];
  /** a floor relay's script instead of the switch (RunOptions.floorScript) */
  floorScript?: string;
  switchArgs?: string[];
  /** the switch's environment (e.g. INA_OPERATOR_TOKEN, kept off its command line) */
  switchEnv?: NodeJS.ProcessEnv;
  children: ChildNode[];
  targets: ScrapeTargets | undefined;
  run: string;
  /** jobs' own PSes: how many job `config.jobs[i]` has, by i (absent or 0: none) */
  ownParameterServers?: readonly number[];
}): Promise<{
  ps: ChildNode | null;
  /** the jobs' own PSes, each with the host name its links get ("<job name> ps <k>") */
  ownPs: Array<{ node: ChildNode; host: string }>;
  sw: ChildNode;
  ready: SwitchReadyRecord | FloorReadyRecord;
}> {
  let ps: ChildNode | null = null;
  const ownPs: Array<{ node: ChildNode; host: string }> = [];
  for (const [i, count] of (o.ownParameterServers ?? []).entries()) {
    const job = o.config.jobs?.[i];
    if (count === 0 || job === undefined || (job.mode !== "atp" && job.mode !== "ps")) continue;
    // Each serves this job alone, as ATP deploys a PS per job on its own host.
    const path = join(o.dir, `ps-job${job.id}.json`);
    await writeFile(path, JSON.stringify({ ...o.config, jobs: [job] }, null, 2));
    const addresses: Array<{ host: string; port: number }> = [];
    for (let k = 0; k < count; k++) {
      const node = new ChildNode(`${job.name ?? `job ${job.id}`} ps ${k}`, SCRIPTS.ps, [
        "--config",
        path,
        "--switch",
        "stdin",
        ...(o.psArgs ?? []),
      ]);
      o.children.push(node);
      const ready = await node.waitFor(PsReadySchema, STARTUP_MS);
      scrapeWhileAlive(o.targets, node, ready, { process: "ps", run: o.run });
      addresses.push({ host: ready.dataAddress, port: ready.dataPort });
      ownPs.push({ node, host: `${job.name ?? `job ${job.id}`} ps ${k}` });
    }
    job.parameterServers = addresses;
  }
  if (o.withPs) {
    const psConfigPath = join(o.dir, "ps.json");
    await writeFile(psConfigPath, JSON.stringify(o.config, null, 2));
    // Its switch is not up yet: it is told the switch's address before any
    // worker starts, and trusts no piece before (no first-use window).
    ps = new ChildNode("ps", SCRIPTS.ps, [
      "--config",
      psConfigPath,
      "--switch",
      "stdin",
      ...(o.psArgs ?? []),
    ]);
    o.children.push(ps);
    const ready = await ps.waitFor(PsReadySchema, STARTUP_MS);
    scrapeWhileAlive(o.targets, ps, ready, { process: "ps", run: o.run });
    o.config.parameterServer = { host: ready.dataAddress, port: ready.dataPort };
  }
  const configPath = join(o.dir, "switch.json");
  await writeFile(configPath, JSON.stringify(o.config, null, 2));
  const sw = new ChildNode(
    "switch",
    o.floorScript ?? SCRIPTS.switch,
    ["--config", configPath, ...(o.switchArgs ?? [])],
    undefined,
    o.switchEnv === undefined ? {} : { env: o.switchEnv },
  );
  o.children.push(sw);
  const ready = await sw.waitFor(
    o.floorScript !== undefined ? FloorReadySchema : SwitchReadySchema,
    STARTUP_MS,
  );
  const switchAt = `switch ${"dataAddress" in ready ? ready.dataAddress : "127.0.0.1"}:${ready.dataPort}`;
  ps?.send(switchAt);
  for (const { node } of ownPs) node.send(switchAt);
  if ("uiUrl" in ready) process.stderr.write(`    live view: ${ready.uiUrl}\n`);
  scrapeWhileAlive(o.targets, sw, ready, { process: "switch", run: o.run });
  return { ps, ownPs, sw, ready };
}

/**
 * Runs one scenario run with real processes on 127.0.0.1: the PS (when a job
 * needs it) and the switch on ephemeral ports, then every job's workers,
 * released at their start times. Every wait is bounded; every child is
 * stopped by PID at the end, whatever happens.
 */
export async function runScenarioRun(run: ScenarioRun, o: RunOptions): Promise<RunResult> {
  const jobs = resolveJobs(run, o.seed);
  const dir = await mkdtemp(join(tmpdir(), "ina-emu-"));
  const children: ChildNode[] = [];
  let progressTimer: NodeJS.Timeout | null = null;
  const startTimers: NodeJS.Timeout[] = [];
  try {
    const config = switchConfigOf(run, jobs, o.seed);
    const datagramArgs =
      run.packetsPerDatagram === undefined
        ? []
        : ["--packets-per-datagram", String(run.packetsPerDatagram)];
    const { ps, ownPs, sw, ready } = await startSwitch({
      dir,
      config,
      withPs: needsSharedPs(jobs),
      ownParameterServers: jobs.map((j) => j.parameterServers),
      psArgs: datagramArgs,
      // With links, the switch reports its ports every 250 ms: utilization over time.
      switchArgs: [
        ...datagramArgs,
        ...(run.links === undefined ? [] : ["--stats-interval-ms", "250"]),
      ],
      floorScript: o.floorScript,
      children,
      targets: o.targets,
      run: run.name,
    });
    const target = `${ready.dataAddress}:${ready.dataPort}`;

    const progress = new Map<string, { fractions: Float64Array; phases: JobPhase[] }>();
    const workersOf = jobs.map((job) => {
      const fractions = new Float64Array(job.workers);
      const phases: JobPhase[] = new Array(job.workers).fill("allreduce");
      progress.set(job.name, { fractions, phases });
      const onRecord = (w: number) => (line: ProcessRecord) => {
        const record = parseRecord(WorkerRecordSchema, line, `${job.name} worker ${w}`);
        if (record.event === "result") {
          fractions[w] = 1;
          phases[w] = "done";
          return;
        }
        if (record.event !== "progress") return;
        if (record.phase === "verifying") {
          fractions[w] = 1;
          phases[w] = "verifying";
          return;
        }
        // Against the worker's own count: a ring worker's packets are every
        // step's, sent and received, not the tensor's packets once.
        fractions[w] = workerFraction(
          record.iteration,
          record.completedPackets,
          record.totalPackets,
          job.iterations,
        );
      };
      return Array.from({ length: job.workers }, (_, w) => {
        const child = new ChildNode(
          `${job.name} worker ${w}`,
          SCRIPTS.worker,
          [...workerArgs(job, w, target, run.links), ...datagramArgs, ...lingerArgs(o.targets)],
          onRecord(w),
        );
        children.push(child);
        return child;
      });
    });
    // Inputs are generated before "ready", so the timed part is the all-reduce alone.
    await Promise.all(
      workersOf.flatMap((workers, j) =>
        workers.map(async (child) => {
          const record = await child.waitFor(WorkerReadySchema, STARTUP_MS);
          scrapeWhileAlive(o.targets, child, record, {
            process: "worker",
            run: run.name,
            ina_job_name: jobs[j].name,
          });
        }),
      ),
    );
    if (o.onProgress) {
      const report = o.onProgress;
      progressTimer = setInterval(() => {
        const out: Record<string, JobProgress> = {};
        for (const [name, { fractions, phases }] of progress) {
          // A job is as far as its slowest worker.
          const phase = phases.includes("allreduce")
            ? "allreduce"
            : phases.includes("verifying")
              ? "verifying"
              : "done";
          out[name] = { fraction: Math.min(...fractions), phase };
        }
        report(out);
      }, 500);
    }
    const started = performance.now();
    jobs.forEach((job, j) => {
      startTimers.push(
        setTimeout(() => {
          for (const child of workersOf[j]) child.send("go");
        }, job.startMs),
      );
    });
    o.onRunning?.({
      switchPort: ready.dataPort,
      controlUrl: "controlUrl" in ready ? ready.controlUrl : null,
      psPort: ps === null ? null : (config.parameterServer?.port ?? null),
      jobs,
    });
    const lastStart = Math.max(...jobs.map((j) => j.startMs));
    const warnings = [
      ...new Set(
        [ready, ...workersOf.flat().flatMap((child) => child.recordsOf(WorkerReadySchema))].flatMap(
          (record) => ("warnings" in record ? record.warnings : []),
        ),
      ),
    ];
    const results = await Promise.all(
      workersOf.map((workers) =>
        Promise.all(
          workers.map((child) => child.waitFor(WorkerResultSchema, o.timeoutMs + lastStart)),
        ),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    await Promise.all(workersOf.flat().map((child) => child.waitExit(STARTUP_MS)));
    await o.beforeSwitchStops?.();
    await sw.stop();
    const switchStats: RunResult["switch"] =
      (o.floorScript !== undefined
        ? sw.recordsOf(FloorStatsSchema)
        : sw.recordsOf(SwitchStatsSchema).filter((r) => r.final === true)
      ).at(0) ?? {};
    const finalStats = async (node: ChildNode): Promise<PsStatsLine | null> => {
      await node.stop();
      return node.recordsOf(PsStatsSchema).find((r) => r.final === true) ?? null;
    };
    const parameterServers = [
      ...(ps === null ? [] : [{ host: "ps", stats: await finalStats(ps) }]),
      ...(await Promise.all(
        ownPs.map(async ({ node, host }) => ({ host, stats: await finalStats(node) })),
      )),
    ];
    const psStats = sumPsReports(
      parameterServers.flatMap(({ stats }) => (stats === null ? [] : [stats])),
    );
    const jobResults = jobs.map((job, j) => jobResultOfRecords(job, results[j], switchStats));
    // Links carry traffic from the first "go" to the last all-reduce's end;
    // the run's seconds also hold the workers' verification.
    const trafficSeconds = Math.max(...jobResults.map((r) => r.startMs / 1000 + r.seconds));
    const loads =
      run.links === undefined
        ? null
        : linkLoads(jobs, results, switchStats, parameterServers, trafficSeconds);
    return runResult(run, jobs, jobResults, {
      seconds,
      switch: switchStats,
      ps: psStats,
      warnings,
      links: loads,
      linkSeries:
        run.links === undefined
          ? null
          : linkSeries(o.floorScript !== undefined ? [] : sw.recordsOf(SwitchStatsSchema)),
    });
  } finally {
    if (progressTimer !== null) clearInterval(progressTimer);
    for (const timer of startTimers) clearTimeout(timer);
    await Promise.all(children.map((child) => child.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * A worker's --linger-ms when something scrapes the run: it keeps its
 * /metrics up for a final scrape, and the switch and PS, stopped after the
 * workers exit, stay up as long.
 */
export function lingerArgs(targets: ScrapeTargets | undefined): string[] {
  return targets === undefined || targets.lingerMs === 0
    ? []
    : ["--linger-ms", String(targets.lingerMs)];
}

/** A worker's --link-* options for its link in `links` (none without links). */
export function linkArgs(
  links: Links | undefined,
  host: { job: number; worker: number },
): string[] {
  if (links === undefined) return [];
  // The worker's only port is its NIC: the host's efficiency is its rate's share.
  const link = hostNicParams(linkParamsFor(links, host));
  return [
    ...["--link-rate", String(link.rateBitsPerSecond)],
    ...["--link-delay", String(link.delayMs)],
    ...["--link-buffer", String(link.bufferBytes)],
    ...(Number.isFinite(link.ecnThresholdBytes)
      ? ["--link-ecn-threshold", String(link.ecnThresholdBytes)]
      : []),
    ...(link.controlPriority ? [] : ["--link-fifo"]),
  ];
}

function workerArgs(
  job: ResolvedJob,
  w: number,
  target: string,
  links: ScenarioRun["links"],
): string[] {
  return [
    ...linkArgs(links, { job: job.id, worker: w }),
    "--congestion-control",
    job.congestionControl,
    "--switch",
    target,
    "--mode",
    job.mode,
    "--job",
    String(job.id),
    "--worker",
    String(w),
    "--fan-in",
    String(job.workers),
    "--offset",
    String(job.offset),
    "--region-size",
    String(job.mode === "ps" || job.mode === "ring" ? 2 * job.window : job.regionSize),
    "--window",
    String(job.window),
    "--elements-per-packet",
    String(job.elementsPerPacket),
    "--scale-bits",
    String(job.scaleBits),
    "--tensor-bytes",
    String(job.tensorBytes),
    "--seed",
    String(job.seed),
    "--iterations",
    String(job.iterations),
    "--wait-go",
    ...(job.computeMs > 0 ? ["--compute-ms", String(job.computeMs)] : []),
    ...(job.parameterServers > 1 ? ["--parameter-servers", String(job.parameterServers)] : []),
    ...(job.mode === "ring" ? ["--operation", job.operation, "--root", String(job.root)] : []),
  ];
}
