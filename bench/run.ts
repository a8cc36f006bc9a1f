import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import type { Collective, SwitchConfigInput } from "../proto/config.js";
import { type Links, linkParamsFor } from "../proto/links.js";
import type {
  FinalStats,
  LinkPortRecord,
  PsStatsRecord,
  SwitchStatsRecord,
} from "../proto/records.js";
import type { ScenarioRun } from "../proto/scenario.js";
import { ChildNode, type ProcessRecord } from "./processes.js";
import type { ScrapeTargets } from "./prometheus.js";
import { type ResolvedJob, resolveJobs, switchConfigOf } from "./scenario.js";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
export const SCRIPTS = {
  switch: here("../switch/cli.js"),
  floor: here("./floor-switch.js"),
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

export interface RunOptions {
  /** seed of faults, and of gradients for jobs without their own */
  seed: number;
  timeoutMs: number;
  /** "ina": the real switch; "floor": bench/floor-switch.ts (one lossless NetReduce job) */
  switchImpl?: "ina" | "floor";
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
  timeouts: number;
  /** smoothed RTT and retransmission timeout at the end (ms) */
  srttMs: number;
  rtoMs: number;
  /** results that carried an ECN mark, and the window at the end (packets) */
  ecnMarkedResults: number;
  window: number;
  duplicateResults: number;
  /** gradient bytes the worker sent and took in, each packet once (headers and retransmissions aside) */
  payloadBytesSent: number;
  payloadBytesReceived: number;
  /** FNV-1a of the last output's bytes (worker/workload.ts): equal digests, equal outputs */
  outputDigest: string;
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
  /** what the workers ran: allReduce, or a ring job's collective */
  operation: Collective;
  /** each iteration's all-reduce time, the slowest worker's (s) */
  iterationSeconds: number[];
  /** the share of an iteration (compute, then all-reduce) spent all-reducing; null when unknown */
  communicationShare: number | null;
  /** gradient bytes per worker per iteration, sent and taken in (INA: about the tensor each way; ring: 2(N-1)/N of it) */
  bytesSentPerWorker: number;
  bytesReceivedPerWorker: number;
  /** nccl-tests' algorithm bandwidth (tensor bytes / time) and bus bandwidth (algbw x the collective's factor), MB/s */
  algbwMBps: number;
  busbwMBps: number;
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
  /** first "go" to the last job's last result record (its verification included) */
  seconds: number;
  jobs: JobResult[];
  verified: boolean;
  switch: (SwitchStatsRecord & FinalStats) | Record<string, unknown>;
  ps: PsStatsRecord | null;
  /** what the switch and the workers warned about at start (a window their receive buffers cannot hold) */
  warnings: string[];
  /**
   * with emulated links: the switch's port towards each host, utilization
   * over time (from its stats every 250 ms; t in s from the first sample)
   */
  linkSeries?: Array<{ t: number; host: string; utilization: number }> | null;
  /** with emulated links: every link direction's load, busiest first */
  links: LinkLoad[] | null;
  /**
   * with emulated links, what limited the run: "link" when the busiest link
   * direction was above LINK_BOUND_UTILIZATION, or a port tail-dropped (its
   * buffer was full); "window" when no link was
   * but every job's window is below its path's bandwidth-delay product and
   * the job reached what that window allows (window / RTT, both by the
   * model): the emulated network with that window limited it; "host" when
   * neither (the host's CPU limited it, and the numbers are not the
   * network's); null without links
   */
  bound: RunBound | null;
  /** why the run failed; its jobs are then empty */
  error?: string;
}

export type RunBound = "link" | "window" | "host";

/** A link direction busier than this bounds a run. */
export const LINK_BOUND_UTILIZATION = 0.9;

/** One direction of one host's link over a run. */
export interface LinkLoad {
  /** "netreduce-1 worker 0", "ps" */
  host: string;
  /** up: the host's NIC towards the switch; down: the switch's port towards the host */
  direction: "up" | "down";
  rateBitsPerSecond: number;
  bytes: number;
  /** bytes x 8 / (rate x the run's seconds) */
  utilization: number;
  drops: number;
  marks: number;
  queueHighWaterBytes: number;
}

/** Every link direction's load over `seconds`, busiest first, and what bound the run. */
export function linkLoads(
  jobs: readonly ResolvedJob[],
  workerRecords: ProcessRecord[][],
  switchStats: Partial<SwitchStatsRecord>,
  psStats: PsStatsRecord | null,
  seconds: number,
): LinkLoad[] {
  const load = (host: string, direction: "up" | "down", r: LinkPortRecord): LinkLoad => ({
    host,
    direction,
    rateBitsPerSecond: r.rateBitsPerSecond,
    bytes: r.bytes,
    utilization: seconds > 0 ? (r.bytes * 8) / (r.rateBitsPerSecond * seconds) : 0,
    drops: r.drops,
    marks: r.marks,
    queueHighWaterBytes: r.queueHighWaterBytes,
  });
  const links: LinkLoad[] = [];
  jobs.forEach((job, j) => {
    for (const record of workerRecords[j]) {
      const nic = record.link as LinkPortRecord | undefined;
      if (nic !== undefined) links.push(load(`${job.name} worker ${record.workerId}`, "up", nic));
    }
  });
  if (psStats?.link !== undefined) links.push(load("ps", "up", psStats.link));
  const nameOf = new Map(jobs.map((job) => [job.id, job.name]));
  for (const port of switchStats.links ?? []) {
    const match = /^job (\d+) worker (\d+)$/.exec(port.host);
    const host = match
      ? `${nameOf.get(Number(match[1])) ?? `job ${match[1]}`} worker ${match[2]}`
      : port.host;
    links.push(load(host, "down", port));
  }
  links.sort((a, b) => b.utilization - a.utilization);
  return links;
}

/**
 * The goodput per worker (MB/s) a job's window allows on its path by the
 * link model: a window of packets per round trip, the round trip being the
 * propagation and one packet's serialization on each hop (two hops for
 * NetReduce; four through the PS for ATP and PS), capped at the line rate.
 */
export function windowLimitedMBps(job: ResolvedJob, links: Links): number {
  const { rttMs, lineMBps } = pathModel(job, links);
  const window =
    job.mode === "netreduce" ? Math.min(job.window, Math.floor(job.regionSize / 2)) : job.window;
  return Math.min(lineMBps, (window * 4 * job.elementsPerPacket) / rttMs / 1000);
}

/** A job's path by the link model: round trip (ms), payload goodput at the line rate (MB/s), packet bytes. */
export function pathModel(job: ResolvedJob, links: Links) {
  const link = linkParamsFor(links, { job: job.id, worker: 0 });
  const packetBytes = 32 + 4 * job.elementsPerPacket;
  const bytesPerMs = link.rateBitsPerSecond / 8 / 1000;
  const hops = job.mode === "netreduce" ? 2 : 4;
  return {
    rttMs: hops * (link.delayMs + packetBytes / bytesPerMs),
    lineMBps: (bytesPerMs * (4 * job.elementsPerPacket)) / packetBytes / 1000,
    packetBytes,
    bytesPerMs,
  };
}

/** What limited a run with links (see RunResult.bound). */
export function runBound(
  links: readonly LinkLoad[],
  jobs: readonly ResolvedJob[],
  results: readonly JobResult[],
  config: Links,
): RunBound {
  // A port that tail-dropped had its buffer full: that link was the bottleneck.
  if ((links[0]?.utilization ?? 0) > LINK_BOUND_UTILIZATION || links.some((l) => l.drops > 0)) {
    return "link";
  }
  const windowLimited = jobs.every((job, j) => {
    const allowed = windowLimitedMBps(job, config);
    const { lineMBps } = pathModel(job, config);
    return allowed < LINK_BOUND_UTILIZATION * lineMBps && results[j].goodputMBps >= 0.7 * allowed;
  });
  return windowLimited ? "window" : "host";
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
  if (typeof ready.uiUrl === "string") process.stderr.write(`    live view: ${ready.uiUrl}\n`);
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
    const config = switchConfigOf(run, jobs, o.seed);
    const datagramArgs =
      run.packetsPerDatagram === undefined
        ? []
        : ["--packets-per-datagram", String(run.packetsPerDatagram)];
    const { ps, sw, ready } = await startSwitch({
      dir,
      config,
      withPs: jobs.some((j) => j.mode === "atp" || j.mode === "ps"),
      psArgs: datagramArgs,
      // With links, the switch reports its ports every 250 ms: utilization over time.
      switchArgs: [
        ...datagramArgs,
        ...(run.links === undefined ? [] : ["--stats-interval-ms", "250"]),
      ],
      script: o.switchImpl === "floor" ? SCRIPTS.floor : SCRIPTS.switch,
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
      const packetsPerIteration = Math.ceil(job.tensorBytes / 4 / job.elementsPerPacket);
      const onRecord = (w: number) => (record: ProcessRecord) => {
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
        const done =
          Number(record.iteration) * packetsPerIteration + Number(record.completedPackets);
        fractions[w] = done / (packetsPerIteration * job.iterations);
      };
      return Array.from({ length: job.workers }, (_, w) => {
        const child = new ChildNode(
          `${job.name} worker ${w}`,
          SCRIPTS.worker,
          [...workerArgs(job, w, target, run.links), ...datagramArgs],
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
      switchPort: Number(ready.dataPort),
      controlUrl: typeof ready.controlUrl === "string" ? ready.controlUrl : null,
      psPort: ps === null ? null : Number(config.parameterServer?.port),
      jobs,
    });
    const lastStart = Math.max(...jobs.map((j) => j.startMs));
    const warnings = [
      ...new Set(
        [ready, ...workersOf.flat().map((child) => child.records.find((r) => r.event === "ready"))]
          .flatMap((record) => (Array.isArray(record?.warnings) ? record.warnings : []))
          .map(String),
      ),
    ];
    const results = await Promise.all(
      workersOf.map((workers) =>
        Promise.all(workers.map((child) => child.waitFor("result", o.timeoutMs + lastStart))),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    await Promise.all(workersOf.flat().map((child) => child.waitExit(10_000)));
    await o.beforeSwitchStops?.();
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
    // Links carry traffic from the first "go" to the last all-reduce's end;
    // the run's seconds also hold the workers' verification.
    const trafficSeconds = Math.max(...jobResults.map((r) => r.startMs / 1000 + r.seconds));
    const loads =
      run.links === undefined
        ? null
        : linkLoads(
            jobs,
            results,
            switchStats as Partial<SwitchStatsRecord>,
            psStats,
            trafficSeconds,
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
      warnings,
      links: loads,
      linkSeries: run.links === undefined ? null : linkSeries(sw.records),
      bound:
        loads === null || run.links === undefined
          ? null
          : runBound(loads, jobs, jobResults, run.links),
    };
  } finally {
    if (progressTimer !== null) clearInterval(progressTimer);
    for (const timer of startTimers) clearTimeout(timer);
    await Promise.all(children.map((child) => child.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

/** A worker's --link-* options for its link in `links` (none without links). */
export function linkArgs(
  links: Links | undefined,
  host: { job: number; worker: number },
): string[] {
  if (links === undefined) return [];
  const link = linkParamsFor(links, host);
  return [
    ...["--link-rate", String(link.rateBitsPerSecond)],
    ...["--link-delay", String(link.delayMs)],
    ...["--link-buffer", String(link.bufferBytes)],
    ...(Number.isFinite(link.ecnThresholdBytes)
      ? ["--link-ecn-threshold", String(link.ecnThresholdBytes)]
      : []),
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
    ...(job.mode === "ring" ? ["--operation", job.operation, "--root", String(job.root)] : []),
  ];
}

/** All-reduce time over all-reduce plus compute time, over the iterations. */
function communicationShare(iterationSeconds: number[], computeMs: number): number | null {
  if (iterationSeconds.length === 0) return null;
  const communicating = iterationSeconds.reduce((a, b) => a + b, 0);
  return communicating / (communicating + (iterationSeconds.length * computeMs) / 1000);
}

/** Each switch port's utilization between consecutive periodic stats records. */
function linkSeries(
  records: ProcessRecord[],
): Array<{ t: number; host: string; utilization: number }> {
  const samples = records.filter(
    (r) => r.event === "stats" && r.final !== true && typeof r.uptimeMs === "number",
  );
  const out: Array<{ t: number; host: string; utilization: number }> = [];
  const first = Number(samples[0]?.uptimeMs ?? 0);
  for (let i = 1; i < samples.length; i++) {
    const dt = (Number(samples[i].uptimeMs) - Number(samples[i - 1].uptimeMs)) / 1000;
    const before = new Map(
      ((samples[i - 1].links ?? []) as Array<{ host: string; bytes: number }>).map((l) => [
        l.host,
        l.bytes,
      ]),
    );
    for (const l of (samples[i].links ?? []) as Array<{
      host: string;
      bytes: number;
      rateBitsPerSecond: number;
    }>) {
      const bytes = l.bytes - (before.get(l.host) ?? 0);
      out.push({
        t: (Number(samples[i].uptimeMs) - first) / 1000,
        host: l.host,
        utilization: dt > 0 ? (bytes * 8) / (l.rateBitsPerSecond * dt) : 0,
      });
    }
  }
  return out;
}

/** Per iteration, the slowest worker's time. */
function slowestPerIteration(records: ProcessRecord[]): number[] {
  const out: number[] = [];
  for (const r of records) {
    const list = Array.isArray(r.iterationSeconds) ? r.iterationSeconds.map(Number) : [];
    list.forEach((t, i) => {
      out[i] = Math.max(out[i] ?? 0, t);
    });
  }
  return out;
}

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);

/**
 * nccl-tests' bandwidths for a collective of `bytes` over `workers` taking
 * `seconds`: algbw = bytes / seconds; busbw = algbw x 2(N-1)/N for
 * all-reduce, x (N-1)/N for reduce-scatter, all-gather and all-to-all, x 1
 * for broadcast and reduce: what each link carries, comparable across N.
 */
export function bandwidths(
  op: Collective,
  workers: number,
  bytes: number,
  seconds: number,
): { algbwMBps: number; busbwMBps: number } {
  const algbwMBps = bytes / 1e6 / seconds;
  const n = workers;
  const factor =
    op === "allReduce"
      ? (2 * (n - 1)) / n
      : op === "broadcast" || op === "reduce"
        ? 1
        : (n - 1) / n;
  return { algbwMBps, busbwMBps: algbwMBps * factor };
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
      timeouts: Number(r.timeouts),
      srttMs: Number(r.srttMs),
      rtoMs: Number(r.rtoMs),
      ecnMarkedResults: Number(r.ecnMarkedResults ?? 0),
      window: Number(r.window),
      duplicateResults: Number(r.duplicateResults),
      payloadBytesSent: Number(r.payloadBytesSent ?? Number.NaN),
      payloadBytesReceived: Number(r.payloadBytesReceived ?? Number.NaN),
      outputDigest: String(r.outputDigest ?? ""),
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
    bytesPerWorker: job.tensorBytes,
    iterations: job.iterations,
    startMs: job.startMs,
    window: job.window,
    elementsPerPacket: job.elementsPerPacket,
    offset: job.offset,
    regionSize: job.regionSize,
    seed: job.seed,
    seconds,
    goodputMBps: (job.tensorBytes * job.iterations) / 1e6 / seconds,
    operation: job.mode === "ring" ? job.operation : "allReduce",
    iterationSeconds: slowestPerIteration(records),
    communicationShare: communicationShare(slowestPerIteration(records), job.computeMs),
    bytesSentPerWorker: mean(perWorker.map((w) => w.payloadBytesSent)) / job.iterations,
    bytesReceivedPerWorker: mean(perWorker.map((w) => w.payloadBytesReceived)) / job.iterations,
    ...bandwidths(
      job.mode === "ring" ? job.operation : "allReduce",
      job.workers,
      job.tensorBytes,
      seconds / job.iterations,
    ),
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
