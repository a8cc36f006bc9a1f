import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import type { SwitchConfigInput } from "../proto/config.js";
import type { PsStatsRecord, SwitchStatsRecord } from "../proto/records.js";
import type { ScenarioRun } from "../proto/scenario.js";
import { ChildNode, type ProcessRecord } from "./processes.js";
import type { ScrapeTargets } from "./prometheus.js";
import { type ResolvedJob, resolveJobs } from "./scenario.js";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
export const SCRIPTS = {
  switch: here("../switch/cli.js"),
  floor: here("./floor-switch.js"),
  ps: here("../ps/cli.js"),
  worker: here("../worker/cli.js"),
};

export interface RunOptions {
  /** seed of faults, and of gradients for jobs without their own */
  seed: number;
  timeoutMs: number;
  /** "ina": the real switch; "floor": bench/floor-switch.ts (one lossless NetReduce job) */
  switchImpl?: "ina" | "floor";
  /** called with each job's fraction of packets completed, about every 500 ms */
  onProgress?: (fractions: Record<string, number>) => void;
  /** lists every process's /metrics for Prometheus while it runs */
  targets?: ScrapeTargets;
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
  ready: ProcessRecord,
  labels: Record<string, string>,
): void {
  if (targets === undefined || typeof ready.metricsUrl !== "string") return;
  const name = `${labels.process}-${child.child.pid}`;
  void targets.add(name, ready.metricsUrl, labels);
  void child.exited.then(() => targets.remove(name));
}

export interface WorkerOutcome {
  workerId: number;
  seconds: number;
  goodputMBps: number;
  /** CPU time the worker spent in the all-reduce */
  cpuSeconds: number;
  packetsSent: number;
  retransmissions: number;
  duplicateResults: number;
  maxAbsError: number;
  notBitExact: number;
  outOfBound: number;
  verified: boolean;
}

/** Switch counters of one job (see switch/jobs.ts). */
export type JobCountersReport = SwitchStatsRecord["jobs"][number];

export interface JobResult {
  name: string;
  id: number;
  mode: ResolvedJob["mode"];
  workers: number;
  bytesPerWorker: number;
  iterations: number;
  startMs: number;
  window: number;
  elementsPerPacket: number;
  /** NetReduce region or ATP pool slice */
  offset: number;
  regionSize: number;
  seed: number;
  /** slowest worker's wall time from its "go" to its last result */
  seconds: number;
  /** bytes all-reduced per worker per second (MB = 10^6 bytes) */
  goodputMBps: number;
  retransmissions: number;
  /** ATP: contributions that found another (job, PSN) in their aggregator */
  collisions: number;
  /** ATP: contributions that reached the PS outside a full switch aggregate, and their share */
  fallbacks: number;
  fallbackFraction: number;
  /** aggregations finished in the switch (NetReduce results, ATP full aggregates) */
  switchAggregations: number;
  maxAbsError: number;
  verified: boolean;
  perWorker: WorkerOutcome[];
  switchCounters: JobCountersReport | null;
}

export interface RunResult {
  name: string;
  aggregators: number;
  faults: ScenarioRun["faults"];
  /** first "go" to the last job's last result */
  seconds: number;
  jobs: JobResult[];
  verified: boolean;
  switch: (SwitchStatsRecord & { cpuSeconds?: number }) | Record<string, unknown>;
  ps: PsStatsRecord | null;
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
  script?: string;
  switchArgs?: string[];
  children: ChildNode[];
  targets: ScrapeTargets | undefined;
  run: string;
}): Promise<{ ps: ChildNode | null; sw: ChildNode; ready: ProcessRecord }> {
  let ps: ChildNode | null = null;
  if (o.withPs) {
    const psConfigPath = join(o.dir, "ps.json");
    await writeFile(psConfigPath, JSON.stringify(o.config, null, 2));
    ps = new ChildNode("ps", SCRIPTS.ps, ["--config", psConfigPath, ...(o.psArgs ?? [])]);
    o.children.push(ps);
    const ready = await ps.waitFor("ready", 15_000);
    scrapeWhileAlive(o.targets, ps, ready, { process: "ps", run: o.run });
    o.config.parameterServer = { host: String(ready.dataAddress), port: Number(ready.dataPort) };
  }
  const configPath = join(o.dir, "switch.json");
  await writeFile(configPath, JSON.stringify(o.config, null, 2));
  const sw = new ChildNode("switch", o.script ?? SCRIPTS.switch, [
    "--config",
    configPath,
    ...(o.switchArgs ?? []),
  ]);
  o.children.push(sw);
  const ready = await sw.waitFor("ready", 15_000);
  scrapeWhileAlive(o.targets, sw, ready, { process: "switch", run: o.run });
  return { ps, sw, ready };
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
    const rates = {
      drop: run.faults.loss,
      duplicate: run.faults.duplicate,
      reorder: run.faults.reorder,
    };
    const config: SwitchConfigInput = {
      aggregators: run.aggregators,
      elementsPerAggregator: Math.max(...jobs.map((j) => j.elementsPerPacket)),
      // The switch labels each job's metrics with its scenario name (ina_job_name).
      jobs: jobs.map((j) => ({ ...j.rule, name: j.name })),
      faults: { seed: o.seed, ingress: rates, egress: rates },
    };
    const { ps, sw, ready } = await startSwitch({
      dir,
      config,
      withPs: jobs.some((j) => j.mode !== "netreduce"),
      script: o.switchImpl === "floor" ? SCRIPTS.floor : SCRIPTS.switch,
      children,
      targets: o.targets,
      run: run.name,
    });
    const target = `${ready.dataAddress}:${ready.dataPort}`;

    const progress = new Map<string, Float64Array>();
    const workersOf = jobs.map((job) => {
      const fractions = new Float64Array(job.workers);
      progress.set(job.name, fractions);
      const packetsPerIteration = Math.ceil(job.size / 4 / job.elementsPerPacket);
      const onRecord = (w: number) => (record: ProcessRecord) => {
        if (record.event !== "progress") return;
        const done =
          Number(record.iteration) * packetsPerIteration + Number(record.completedPackets);
        fractions[w] = done / (packetsPerIteration * job.iterations);
      };
      return Array.from({ length: job.workers }, (_, w) => {
        const child = new ChildNode(
          `${job.name} worker ${w}`,
          SCRIPTS.worker,
          workerArgs(job, w, target),
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
          const record = await child.waitFor("ready", 60_000);
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
        const out: Record<string, number> = {};
        for (const [name, f] of progress) out[name] = Math.min(...f);
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
    const lastStart = Math.max(...jobs.map((j) => j.startMs));
    const results = await Promise.all(
      workersOf.map((workers) =>
        Promise.all(workers.map((child) => child.waitFor("result", o.timeoutMs + lastStart))),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    await Promise.all(workersOf.flat().map((child) => child.waitExit(10_000)));
    await sw.stop();
    const switchStats = (sw.records.find((r) => r.event === "stats" && r.final) ??
      {}) as RunResult["switch"];
    let psStats: PsStatsRecord | null = null;
    if (ps !== null) {
      await ps.stop();
      psStats = (ps.records.find((r) => r.event === "stats" && r.final) ??
        null) as PsStatsRecord | null;
    }
    const jobResults = jobs.map((job, j) =>
      jobResult(job, results[j], switchStats as Partial<SwitchStatsRecord>),
    );
    return {
      name: run.name,
      aggregators: run.aggregators,
      faults: run.faults,
      seconds,
      jobs: jobResults,
      verified: jobResults.every((r) => r.verified),
      switch: switchStats,
      ps: psStats,
    };
  } finally {
    if (progressTimer !== null) clearInterval(progressTimer);
    for (const timer of startTimers) clearTimeout(timer);
    await Promise.all(children.map((child) => child.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

function workerArgs(job: ResolvedJob, w: number, target: string): string[] {
  return [
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
    "--size",
    String(job.mode === "ps" ? 2 * job.window : job.regionSize),
    "--window",
    String(job.window),
    "--elements-per-packet",
    String(job.elementsPerPacket),
    "--scale-bits",
    String(job.scaleBits),
    "--size-bytes",
    String(job.size),
    "--seed",
    String(job.seed),
    "--iterations",
    String(job.iterations),
    "--wait-go",
  ];
}

function jobResult(
  job: ResolvedJob,
  records: ProcessRecord[],
  switchStats: Partial<SwitchStatsRecord>,
): JobResult {
  const perWorker: WorkerOutcome[] = records.map((r) => {
    const v = (r.verification ?? {}) as Record<string, number>;
    return {
      workerId: Number(r.workerId),
      seconds: Number(r.seconds),
      goodputMBps: Number(r.goodputMBps),
      cpuSeconds: Number(r.cpuSeconds),
      packetsSent: Number(r.packetsSent),
      retransmissions: Number(r.retransmissions),
      duplicateResults: Number(r.duplicateResults),
      maxAbsError: Number(v.maxAbsError ?? Number.NaN),
      notBitExact: Number(v.notBitExact ?? Number.NaN),
      outOfBound: Number(v.outOfBound ?? Number.NaN),
      verified: r.verified === true,
    };
  });
  const counters = switchStats.jobs?.find((c) => c.id === job.id) ?? null;
  const seconds = Math.max(...perWorker.map((w) => w.seconds));
  const contributions = counters?.contributions ?? 0;
  const fallbacks = counters?.fallbacks ?? 0;
  return {
    name: job.name,
    id: job.id,
    mode: job.mode,
    workers: job.workers,
    bytesPerWorker: job.size,
    iterations: job.iterations,
    startMs: job.startMs,
    window: job.window,
    elementsPerPacket: job.elementsPerPacket,
    offset: job.offset,
    regionSize: job.regionSize,
    seed: job.seed,
    seconds,
    goodputMBps: (job.size * job.iterations) / 1e6 / seconds,
    retransmissions: perWorker.reduce((sum, w) => sum + w.retransmissions, 0),
    collisions: counters?.collisions ?? 0,
    fallbacks,
    fallbackFraction: contributions > 0 ? fallbacks / contributions : 0,
    switchAggregations: counters?.aggregationsCompleted ?? 0,
    maxAbsError: Math.max(...perWorker.map((w) => w.maxAbsError)),
    verified: perWorker.every((w) => w.verified),
    perWorker,
    switchCounters: counters,
  };
}
