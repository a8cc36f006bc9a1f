import type { Collective } from "../proto/config.js";
import type {
  FloorStatsRecord,
  LinkPortRecord,
  PsStatsRecord,
  QueueSeriesRecord,
  SwitchStatsLine,
  SwitchStatsRecord,
  WorkerResultRecord,
} from "../proto/records.js";
import type { ScenarioRun } from "../proto/scenario.js";
import { type BoundBasis, type RunBound, runBound, type VirtualTimeEvidence } from "./bounds.js";
import type { OccupancySeries } from "./occupancy.js";
import type { ResolvedJob } from "./scenario.js";

/**
 * What a run measured, whichever executor ran it (processes on 127.0.0.1 or
 * the simulator in virtual time), and the one builder of it: every pure
 * function that turns workers' outcomes, their result records and the
 * switch's counters into job and run results.
 */

export interface WorkerOutcome {
  workerId: number;
  seconds: number;
  goodputMBps: number;
  /** CPU time the worker spent in the all-reduce */
  cpuSeconds: number;
  packetsSent: number;
  retransmissions: number;
  timeouts: number;
  /** timeouts that were spurious, and the time stalled before timeouts fired (ms) */
  spuriousTimeouts: number;
  timeoutStallMs: number;
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
  /**
   * job completion times: each job's `seconds` (its start to its slowest
   * worker's last result), their mean and their maximum (the tail; a run
   * has at most 16 jobs, so a p99 would be the maximum)
   */
  averageJctS: number;
  maxJctS: number;
  verified: boolean;
  /**
   * the switch's final stats record (the simulator's: its counters alone);
   * the floor relay's has no jobs or links; {} when it printed none
   */
  switch: SwitchStatsRecord | FloorStatsRecord | Record<string, never>;
  ps: PsStatsRecord | null;
  /** what the switch and the workers warned about at start (a window their receive buffers cannot hold) */
  warnings: string[];
  /**
   * with emulated links: the switch's port towards each host, utilization
   * over time (from its stats every 250 ms; t in s from the first sample)
   */
  linkSeries?: LinkSeriesPoint[] | null;
  /** with emulated links: every link direction's load, busiest first */
  links: LinkLoad[] | null;
  /** the simulator's, with ATP jobs: the fraction of the aggregators held over virtual time */
  occupancy?: OccupancySeries;
  /**
   * with emulated links, what limited the run (experiment/bounds.ts, RunBound:
   * link, window, latency, switch, host, loss, compute; "host" in virtual
   * time only when the modelled host processing dominates); null without links
   */
  bound: RunBound | null;
  /** with links: the job that ended the run and the model's lower bounds on its time, the basis of `bound` */
  boundBasis?: BoundBasis;
  /** why the run failed; its jobs are then empty */
  error?: string;
}

/** A switch port's utilization over one stats interval, from `from` to `t` (s from the first sample; `from` absent in results written before it). */
export interface LinkSeriesPoint {
  t: number;
  from?: number;
  host: string;
  utilization: number;
}

/** One direction of one host's link over a run. */
export interface LinkLoad {
  /** "netreduce-1 worker 0", "ps" */
  host: string;
  /** up: the host's NIC towards the switch; down: the switch's port towards the host */
  direction: "up" | "down";
  rateBitsPerSecond: number;
  /** queues above this many bytes mark (null: never); optional in results written before it */
  ecnThresholdBytes?: number | null;
  bytes: number;
  /** bytes x 8 / (rate x the run's seconds) */
  utilization: number;
  drops: number;
  marks: number;
  queueHighWaterBytes: number;
  /** the queue's time-weighted mean, and what the median and 99th-percentile packet found (bytes; link/link.ts QueueStats) */
  queueMeanBytes: number;
  queueP50Bytes: number;
  queueP99Bytes: number;
  /**
   * the queue over time (link/link.ts QueueSeries): only for the
   * QUEUE_SERIES_LINKS directions with the largest mean queue, to bound a
   * results file whatever the number of hosts
   */
  queueSeries?: QueueSeriesRecord;
}

/** How many link directions of a run keep their queue over time in the results. */
export const QUEUE_SERIES_LINKS = 4;

/**
 * Gives the QUEUE_SERIES_LINKS directions with the largest mean queue (ties:
 * the busier) their series, from `seriesOf`, and no other direction one.
 */
export function keepQueueSeries(
  links: LinkLoad[],
  seriesOf: (link: LinkLoad) => QueueSeriesRecord | undefined,
): void {
  const chosen = new Set(
    links
      .filter((l) => l.bytes > 0)
      .sort((a, b) => b.queueMeanBytes - a.queueMeanBytes || b.utilization - a.utilization)
      .slice(0, QUEUE_SERIES_LINKS),
  );
  for (const link of links) {
    const series = chosen.has(link) ? seriesOf(link) : undefined;
    if (series === undefined) delete link.queueSeries;
    else link.queueSeries = series;
  }
}

/** Every link direction's load over `seconds`, busiest first, and what bound the run. */
export function linkLoads(
  jobs: readonly ResolvedJob[],
  workerRecords: WorkerResultRecord[][],
  switchStats: Partial<SwitchStatsRecord>,
  /** every PS's final stats, by the host name its links get ("ps", "<job> ps <k>") */
  parameterServers: ReadonlyArray<{ host: string; stats: PsStatsRecord | null }>,
  seconds: number,
): LinkLoad[] {
  const recordOf = new Map<LinkLoad, LinkPortRecord>();
  const load = (host: string, direction: "up" | "down", r: LinkPortRecord): LinkLoad => {
    const link: LinkLoad = {
      host,
      direction,
      rateBitsPerSecond: r.rateBitsPerSecond,
      ecnThresholdBytes: r.ecnThresholdBytes,
      bytes: r.bytes,
      utilization: seconds > 0 ? (r.bytes * 8) / (r.rateBitsPerSecond * seconds) : 0,
      drops: r.drops,
      marks: r.marks,
      queueHighWaterBytes: r.queueHighWaterBytes,
      queueMeanBytes: r.queueMeanBytes ?? 0,
      queueP50Bytes: r.queueP50Bytes ?? 0,
      queueP99Bytes: r.queueP99Bytes ?? 0,
    };
    recordOf.set(link, r);
    return link;
  };
  const links: LinkLoad[] = [];
  jobs.forEach((job, j) => {
    for (const record of workerRecords[j]) {
      if (record.link !== undefined) {
        links.push(load(`${job.name} worker ${record.workerId}`, "up", record.link));
      }
    }
  });
  for (const { host, stats } of parameterServers) {
    if (stats?.link !== undefined) links.push(load(host, "up", stats.link));
  }
  const nameOf = new Map(jobs.map((job) => [job.id, job.name]));
  for (const port of switchStats.links ?? []) {
    const match = /^job (\d+) (worker|ps) (\d+)$/.exec(port.host);
    const host = match
      ? `${nameOf.get(Number(match[1])) ?? `job ${match[1]}`} ${match[2]} ${match[3]}`
      : port.host;
    links.push(load(host, "down", port));
  }
  links.sort((a, b) => b.utilization - a.utilization);
  keepQueueSeries(links, (link) => recordOf.get(link)?.queueSeries);
  return links;
}

/** All-reduce time over all-reduce plus compute time, over the iterations. */
export function communicationShare(iterationSeconds: number[], computeMs: number): number | null {
  if (iterationSeconds.length === 0) return null;
  const communicating = iterationSeconds.reduce((a, b) => a + b, 0);
  return communicating / (communicating + (iterationSeconds.length * computeMs) / 1000);
}

/**
 * Each switch port's utilization over each whole interval between
 * consecutive periodic stats records: the bytes the port *sent* in the
 * interval over what its line could send in it, so never above 1. A port
 * counts a packet's bytes when it accepts it into its queue, so the bytes
 * accepted in an interval can exceed the line's capacity while the queue
 * grows (a window's burst: 144 % of the line rate over 250 ms was seen);
 * what left is what was accepted less the growth of the queue. Records
 * with the queue's bytes at the sample (`queueBytes`) give it exactly;
 * records without it are replayed as the work-conserving FIFO the port is:
 * it sends what is queued, at most the line's capacity per interval, and
 * keeps the rest for the next one.
 */
export function linkSeries(records: readonly SwitchStatsLine[]): LinkSeriesPoint[] {
  const samples = records.flatMap((r) => (r.final === true ? [] : [r]));
  const out: LinkSeriesPoint[] = [];
  const first = samples[0]?.uptimeMs ?? 0;
  /** per host: bytes queued at the previous sample, as reported or as replayed */
  const backlog = new Map<string, number>();
  for (const l of samples[0]?.links ?? []) backlog.set(l.host, l.queueBytes ?? 0);
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i].uptimeMs - samples[i - 1].uptimeMs) / 1000;
    const before = new Map((samples[i - 1].links ?? []).map((l) => [l.host, l]));
    for (const l of samples[i].links ?? []) {
      const previous = before.get(l.host);
      const accepted = l.bytes - (previous?.bytes ?? 0);
      const capacity = (l.rateBitsPerSecond * dt) / 8;
      const queuedBefore = backlog.get(l.host) ?? 0;
      const sent =
        l.queueBytes !== undefined && (previous === undefined || previous.queueBytes !== undefined)
          ? accepted - (l.queueBytes - queuedBefore)
          : Math.min(queuedBefore + accepted, capacity);
      backlog.set(l.host, l.queueBytes ?? queuedBefore + accepted - sent);
      out.push({
        t: (samples[i].uptimeMs - first) / 1000,
        from: (samples[i - 1].uptimeMs - first) / 1000,
        host: l.host,
        // The queue is read a moment after the interval's end: clamp that skew, not real traffic.
        utilization: capacity > 0 ? Math.min(1, Math.max(0, sent / capacity)) : 0,
      });
    }
  }
  return out;
}

/** Per iteration, the slowest worker's time. */
export function slowestPerIteration(records: readonly WorkerResultRecord[]): number[] {
  const out: number[] = [];
  for (const r of records) {
    r.iterationSeconds.forEach((t, i) => {
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

/** A worker's outcome from its result record (what ina-worker prints when it ends). */
export function workerOutcome(r: WorkerResultRecord): WorkerOutcome {
  return {
    workerId: r.workerId,
    seconds: r.seconds,
    goodputMBps: r.goodputMBps,
    cpuSeconds: r.cpuSeconds,
    packetsSent: r.packetsSent,
    retransmissions: r.retransmissions,
    timeouts: r.timeouts,
    spuriousTimeouts: r.spuriousTimeouts,
    timeoutStallMs: r.timeoutStallMs,
    srttMs: r.srttMs,
    rtoMs: r.rtoMs,
    ecnMarkedResults: r.ecnMarkedResults,
    window: r.window,
    duplicateResults: r.duplicateResults,
    payloadBytesSent: r.payloadBytesSent,
    payloadBytesReceived: r.payloadBytesReceived,
    outputDigest: r.outputDigest,
    // NaN: not verified (--no-verify), or an error that was not a number
    maxAbsError: r.verification?.maxAbsError ?? Number.NaN,
    notBitExact: r.verification?.notBitExact ?? Number.NaN,
    outOfBound: r.verification?.outOfBound ?? Number.NaN,
    verified: r.verified,
  };
}

/** A job's result from its workers' result records and the switch's final stats. */
export function jobResultOfRecords(
  job: ResolvedJob,
  records: WorkerResultRecord[],
  switchStats: Partial<SwitchStatsRecord>,
): JobResult {
  const iterationSeconds = slowestPerIteration(records);
  return jobResult(job, records.map(workerOutcome), switchStats.jobs ?? [], {
    iterationSeconds,
    communicationShare: communicationShare(iterationSeconds, job.computeMs),
  });
}

/**
 * A job's result from its workers' outcomes and the switch's per-job
 * counters: the slowest worker's time, goodput, bandwidths, the switch's
 * collisions and fallbacks, verified when every worker verified. A job with
 * a layer trace all-reduces every layer once per iteration.
 */
export function jobResult(
  job: ResolvedJob,
  perWorker: WorkerOutcome[],
  counters: readonly JobCountersReport[],
  iterations: { iterationSeconds: number[]; communicationShare: number | null } = {
    iterationSeconds: [],
    communicationShare: null,
  },
): JobResult {
  const bytes = job.layers?.reduce((n, l) => n + l.bytes, 0) ?? job.tensorBytes;
  const op: Collective = job.mode === "ring" ? job.operation : "allReduce";
  const own = counters.find((c) => c.id === job.id) ?? null;
  const seconds = Math.max(...perWorker.map((w) => w.seconds));
  const contributions = own?.contributions ?? 0;
  const fallbacks = own?.fallbacks ?? 0;
  return {
    name: job.name,
    id: job.id,
    mode: job.mode,
    workers: job.workers,
    bytesPerWorker: bytes,
    iterations: job.iterations,
    startMs: job.startMs,
    window: job.window,
    elementsPerPacket: job.elementsPerPacket,
    offset: job.offset,
    regionSize: job.regionSize,
    seed: job.seed,
    seconds,
    goodputMBps: (bytes * job.iterations) / 1e6 / seconds,
    operation: op,
    iterationSeconds: iterations.iterationSeconds,
    communicationShare: iterations.communicationShare,
    bytesSentPerWorker: mean(perWorker.map((w) => w.payloadBytesSent)) / job.iterations,
    bytesReceivedPerWorker: mean(perWorker.map((w) => w.payloadBytesReceived)) / job.iterations,
    ...bandwidths(op, job.workers, bytes, seconds / job.iterations),
    retransmissions: perWorker.reduce((sum, w) => sum + w.retransmissions, 0),
    collisions: own?.collisions ?? 0,
    fallbacks,
    fallbackFraction: contributions > 0 ? fallbacks / contributions : 0,
    switchAggregations: own?.aggregationsCompleted ?? 0,
    maxAbsError: Math.max(...perWorker.map((w) => w.maxAbsError)),
    verified: perWorker.every((w) => w.verified),
    perWorker,
    switchCounters: own,
  };
}

/**
 * A run's result from its jobs' results: what bound it (with links), every
 * job verified. `linkSeries` is the processes' (the switch's periodic stats);
 * the simulator has none.
 */
export function runResult(
  run: ScenarioRun,
  jobs: readonly ResolvedJob[],
  jobResults: JobResult[],
  o: {
    seconds: number;
    switch: RunResult["switch"];
    ps: PsStatsRecord | null;
    warnings: string[];
    links: LinkLoad[] | null;
    linkSeries?: RunResult["linkSeries"];
    occupancy?: OccupancySeries;
    /** the simulator's: what it models besides the links, and its measured stalls */
    virtual?: VirtualTimeEvidence;
    error?: string;
  },
): RunResult {
  const bound =
    o.links === null || run.links === undefined
      ? null
      : runBound(o.links, jobs, jobResults, run.links, o.virtual);
  return {
    name: run.name,
    aggregators: run.aggregators,
    faults: run.faults,
    seconds: o.seconds,
    jobs: jobResults,
    averageJctS: mean(jobResults.map((r) => r.seconds)),
    maxJctS: Math.max(0, ...jobResults.map((r) => r.seconds)),
    verified: jobResults.every((r) => r.verified),
    switch: o.switch,
    ps: o.ps,
    warnings: o.warnings,
    links: o.links,
    ...(o.linkSeries === undefined ? {} : { linkSeries: o.linkSeries }),
    ...(o.occupancy === undefined ? {} : { occupancy: o.occupancy }),
    bound: bound?.bound ?? null,
    ...(bound === null ? {} : { boundBasis: bound.basis }),
    ...(o.error === undefined ? {} : { error: o.error }),
  };
}

/** The result of a run that failed (`message`): no jobs, not verified. */
export function failedRun(run: ScenarioRun, message: string): RunResult {
  return {
    name: run.name,
    aggregators: run.aggregators,
    faults: run.faults,
    seconds: 0,
    jobs: [],
    averageJctS: 0,
    maxJctS: 0,
    verified: false,
    switch: {},
    ps: null,
    warnings: [],
    links: null,
    bound: null,
    error: message,
  };
}

/** Several parameter servers' counters as one record (a run with PSes of jobs' own); null for none. */
export function sumPsReports(reports: readonly PsStatsRecord[]): PsStatsRecord | null {
  if (reports.length === 0) return null;
  if (reports.length === 1) return reports[0];
  const total = structuredClone(reports[0]);
  for (const r of reports.slice(1)) {
    // Counters add up; a PS's own link record stays the first one's.
    for (const key of Object.keys(r) as Array<keyof PsStatsRecord>) {
      const n = r[key];
      if (typeof n === "number")
        (total as Record<string, unknown>)[key] = ((total[key] as number | undefined) ?? 0) + n;
    }
    for (const [reason, n] of Object.entries(r.drops)) {
      total.drops[reason] = (total.drops[reason] ?? 0) + n;
    }
  }
  return total;
}
