import { performance } from "node:perf_hooks";
import { OccupancySampler } from "../experiment/occupancy.js";
import {
  communicationShare,
  type JobCountersReport,
  type JobResult,
  jobResult,
  keepQueueSeries,
  type LinkLoad,
  type RunResult,
  runResult,
  sumPsReports,
  type WorkerOutcome,
} from "../experiment/results.js";
import {
  needsSharedPs,
  type ResolvedJob,
  resolveJobs,
  switchConfigOf,
} from "../experiment/scenario.js";
import { LinkPort, queueFields } from "../link/link.js";
import { type Collective, parseSwitchConfig } from "../proto/config.js";
import type { HostCosts, ProcessingCost } from "../proto/costs.js";
import { hostNicParams, type LinkHost, type LinkParams, linkParamsFor } from "../proto/links.js";
import { deriveSeed } from "../proto/prng.js";
import type { Verification } from "../proto/records.js";
import type { ScenarioRun } from "../proto/scenario.js";
import { Field, HEADER_BYTES, PacketType } from "../proto/wire.js";
import { psReport } from "../ps/report.js";
import { switchReport } from "../switch/report.js";
import { CollectiveCore } from "../worker/collective.js";
import { DEFAULT_GIVE_UP_AFTER_MS, DEFAULT_RTO, WorkerCore } from "../worker/core.js";
import {
  collectiveInput,
  collectiveOutputLength,
  makeGradient,
  outputDigest,
  verifyAllReduce,
  verifyCollective,
} from "../worker/workload.js";
import { HostCpu, packetCostNs, resolveCost } from "./costs.js";
import { Engine } from "./engine.js";
import {
  HOST,
  ownPsPort,
  PS_PORT,
  type Receiver,
  type SimParameterServer,
  SimStar,
  workerPort,
} from "./network.js";
import { StallClock } from "./stall.js";
import { StreamCheck } from "./stream.js";
import { SimTimer } from "./timers.js";

/** The simulated hosts' costs and the clock of their timers. */
export interface SimTiming {
  /** the switch's pipeline latency per packet, ns (default 1000) */
  switchProcessingNs: number;
  /** a host's receive latency per packet, ns (default 0) */
  hostProcessingNs: number;
  /**
   * a NetReduce, ATP or PS job whose workers' tensors add up to more than
   * this many bytes is streamed (sim/stream.ts): made and checked packet by
   * packet, never held (default 256 MiB; 0: always; Infinity: never)
   */
  streamAboveBytes: number;
  /**
   * the workers' retransmission timeout before any RTT sample (ms);
   * undefined: from each worker's path (pathWaits). Hardware round trips
   * are microseconds, so the real processes' 200 ms (sized for a busy
   * host) would make every early timeout a stall.
   */
  rtoInitialMs?: number;
  /**
   * the workers' RTO floor, least reordering wait and clock granularity G
   * (ms); undefined: derived from each worker's link (pathWaits)
   */
  rtoFloorMs?: number;
  gapFloorMs?: number;
  clockGranularityMs?: number;
  /** processing costs over the run's own `costs` (e.g. from the command line) */
  costs?: Partial<HostCosts>;
}

/** A run's processing costs, resolved: the timing's over the run's (proto/costs.ts). */
export function runCosts(
  run: { costs: HostCosts },
  timing: SimTiming,
): { parameterServer: ProcessingCost; worker: ProcessingCost; switch: ProcessingCost } {
  const c = { ...run.costs, ...timing.costs };
  return {
    parameterServer: resolveCost(c.parameterServer, "parameterServer"),
    worker: resolveCost(c.worker, "worker"),
    switch: resolveCost(c.switch, "switch"),
  };
}

export const DEFAULT_SIM_TIMING: SimTiming = {
  switchProcessingNs: 1000,
  hostProcessingNs: 0,
  streamAboveBytes: 256 * 2 ** 20,
};

/** How often a run with ATP jobs samples the pool's occupancy (virtual ms). */
export const OCCUPANCY_SAMPLE_MS = 0.1;

/** The simulator's time quantum where a link gives none (ms): 1 us. */
const SIM_QUANTUM_MS = 0.001;

/**
 * A simulated worker's waits from its path (the link model), where the
 * timing leaves them unset: G = one packet's serialization on its link, at
 * least 1 us (the smallest delay that matters next to the switch's
 * pipeline); the least reordering wait = G (links keep order: only
 * serialization reorders); the RTO floor = the path's round trip without
 * queueing (2 x (propagation + serialization) + the switch's and the
 * host's processing) + G: no timeout can be right before that. The RTO
 * before any sample = twice the time the first window takes to come back
 * at line rate: that round trip + the window's serialization (`sharers`
 * windows where one link carries them all, a PS's, each packet taking
 * the longer of its serialization and the PS's CPU time `serviceNs`), so a
 * first window longer than a fixed initial RTO is not resent whole.
 */
export function pathWaits(
  link: LinkParams | undefined,
  packetBytes: number,
  timing: SimTiming,
  window: number,
  sharers = 1,
  serviceNs = 0,
): { rtoInitialMs: number; rtoFloorMs: number; gapFloorMs: number; clockGranularityMs: number } {
  const serializationMs =
    link === undefined ? 0 : (packetBytes * 8 * 1000) / link.rateBitsPerSecond;
  const g = timing.clockGranularityMs ?? Math.max(serializationMs, SIM_QUANTUM_MS);
  const rttMs =
    2 * ((link?.delayMs ?? 0) + serializationMs) +
    (timing.switchProcessingNs + timing.hostProcessingNs) / 1e6;
  return {
    rtoInitialMs:
      timing.rtoInitialMs ??
      2 * (rttMs + window * sharers * Math.max(serializationMs, serviceNs / 1e6) + g),
    rtoFloorMs: timing.rtoFloorMs ?? rttMs + g,
    gapFloorMs: timing.gapFloorMs ?? g,
    clockGranularityMs: g,
  };
}

/** What the simulator adds to a run's result: it is the same record as a real run's otherwise. */
export interface SimRunResult extends RunResult {
  clock: "virtual";
  /** packet deliveries and timeouts the engine ran */
  events: number;
}

/** One simulated worker: its core, its tensors and its progress. */
interface SimWorker {
  job: number;
  workerId: number;
  port: number;
  core: WorkerCore | CollectiveCore;
  /** one tensor per layer (one layer: the job's whole gradient) */
  inputs: Float32Array[];
  outputs: Float32Array[];
  /** the layer being all-reduced, and when this iteration's backward pass began (ns) */
  layer: number;
  iterationStart: number;
  /** a streamed job's check (input and output then stay empty) */
  check: StreamCheck | null;
  /** takes a packet from the switch (made once) */
  receiver: Receiver;
  /** the core's timer: an engine event at its next deadline */
  timer: SimTimer | null;
  up: LinkPort | null;
  down: LinkPort | null;
  iteration: number;
  /** each iteration's all-reduce time (s): from the end of its computation to its last layer's sum, as a real worker's */
  iterationSeconds: number[];
  running: boolean;
  startedAt: number;
  finishedAt: number;
  /** CPU is not modelled: a worker's all-reduce costs no host time */
  failure: string | null;
  /** its time idle until a timer resent something (experiment/bounds.ts) */
  stall: StallClock;
}

/**
 * Runs one scenario run in virtual time with the real sans-IO cores: the
 * switch, the PS and every worker exchange packets through the link model
 * (each host's uplink and the switch's port towards it), in a star. Same
 * scenario and seed, same result, to the byte.
 */
export function simulateRun(
  run: ScenarioRun,
  seed: number,
  timing: SimTiming = DEFAULT_SIM_TIMING,
  /** filled with the wall-clock time of the event loop alone (not in the result: it is not deterministic) */
  wall?: { engineMs: number },
): SimRunResult {
  const engine = new Engine();
  const jobs = resolveJobs(run, seed);
  const needsPs = needsSharedPs(jobs);
  const config = parseSwitchConfig({
    ...switchConfigOf(run, jobs, seed, (j, k) => ({ host: HOST, port: ownPsPort(j, k) })),
    ...(needsPs ? { parameterServer: { host: HOST, port: PS_PORT } } : {}),
  });
  const costs = runCosts(run, timing);
  const links = run.links;
  const portFor = (host: LinkHost, nic = false) => {
    if (links === undefined) return null;
    const link = linkParamsFor(links, host);
    return new LinkPort(nic ? hostNicParams(link) : link);
  };
  const waitsFor = (host: LinkHost, job: ResolvedJob) =>
    pathWaits(
      links === undefined ? undefined : hostNicParams(linkParamsFor(links, host)),
      HEADER_BYTES + 4 * job.elementsPerPacket,
      timing,
      job.window,
      job.mode === "ps" ? job.workers / Math.max(1, job.parameterServers) : 1,
      job.mode === "ps"
        ? packetCostNs(costs.parameterServer, HEADER_BYTES + 4 * job.elementsPerPacket)
        : 0,
    );
  const nowMs = () => engine.now / 1e6;

  const star = new SimStar(
    engine,
    config,
    { ...timing, parameterServerCost: costs.parameterServer, switchCost: costs.switch },
    portFor,
    needsPs ? { elements: config.elementsPerAggregator } : null,
  );
  config.jobs.forEach((rule, j) => {
    if (rule.mode !== "atp" && rule.mode !== "ps") return;
    for (let k = 0; k < jobs[j].parameterServers; k++) {
      star.addParameterServer(ownPsPort(j, k), [rule], config.elementsPerAggregator);
    }
  });
  const { sw } = star;
  const byPort = star.hosts;

  const checks = jobs.map((job) =>
    job.mode !== "ring" &&
    job.layers === undefined &&
    job.tensorBytes * job.workers > timing.streamAboveBytes
      ? new StreamCheck(
          job.seed,
          job.workers,
          job.tensorBytes / 4,
          job.scaleBits,
          job.elementsPerPacket,
        )
      : null,
  );
  const workers: SimWorker[][] = jobs.map((job, j) =>
    Array.from({ length: job.workers }, (_, w) => {
      const check = checks[j];
      const port = workerPort(j, w);
      const host = { job: job.id, worker: w };
      const up = portFor(host, true);
      const stall = new StallClock();
      const wire = star.toSwitch(port, up);
      const transmit = {
        send: (packet: Buffer) => {
          // A ring acknowledgement its delay timer sends ends no stall: nothing was lost.
          if (!isRingAcknowledgement(packet)) stall.sent(engine.now);
          wire.send(packet);
        },
      };
      const op: Collective = job.mode === "ring" ? job.operation : "allReduce";
      const waits = waitsFor(host, job);
      const core =
        job.mode === "ring"
          ? new CollectiveCore(
              {
                ...DEFAULT_RTO,
                ...waits,
                giveUpAfterMs: DEFAULT_GIVE_UP_AFTER_MS,
                jobId: job.id,
                workerId: w,
                fanIn: job.workers,
                window: job.window,
                elementsPerPacket: job.elementsPerPacket,
                scaleBits: job.scaleBits,
                // Packets come one by one here, not in datagrams: hold an acknowledgement up to G.
                ackDelayMs: waits.clockGranularityMs,
              },
              transmit,
            )
          : new WorkerCore(
              {
                ...DEFAULT_RTO,
                ...waits,
                giveUpAfterMs: DEFAULT_GIVE_UP_AFTER_MS,
                mode: job.mode,
                jobId: job.id,
                workerId: w,
                fanIn: job.workers,
                regionOffset: job.offset,
                regionSize: job.mode === "ps" ? 2 * job.window : job.regionSize,
                window: job.window,
                elementsPerPacket: job.elementsPerPacket,
                scaleBits: job.scaleBits,
                congestionControl: job.congestionControl,
                parameterServers: Math.max(1, job.parameterServers),
              },
              transmit,
            );
      const layers = job.layers ?? [{ bytes: job.tensorBytes, backwardMs: 0 }];
      const sim: SimWorker = {
        job: j,
        workerId: w,
        port,
        core,
        inputs:
          check !== null
            ? [new Float32Array(0)]
            : layers.map((l, i) =>
                job.mode === "ring"
                  ? collectiveInput(op, l.bytes / 4, layerSeed(job.seed, i), w, job.workers)
                  : makeGradient(l.bytes / 4, layerSeed(job.seed, i), w),
              ),
        outputs:
          check !== null
            ? [new Float32Array(0)]
            : layers.map(
                (l) =>
                  new Float32Array(
                    job.mode === "ring"
                      ? collectiveOutputLength(op, l.bytes / 4, job.workers, w)
                      : l.bytes / 4,
                  ),
              ),
        layer: 0,
        iterationStart: 0,
        check,
        receiver: () => {},
        timer: null,
        up,
        down: portFor(host),
        iteration: 0,
        iterationSeconds: [],
        running: false,
        startedAt: -1,
        finishedAt: -1,
        failure: null,
        stall,
      };
      const timer = new SimTimer(engine, core, () => settle(sim));
      sim.timer = timer;
      sim.receiver = (b, _from, now) => {
        stall.enter(engine.now);
        sim.core.receive(b, now);
        stall.end();
        timer.rearm();
        settle(sim);
      };
      byPort.set(port, { down: sim.down, receiver: sim.receiver, cpu: workerCpu(costs.worker) });
      return sim;
    }),
  );
  const all = workers.flat();

  /** When each layer's gradient is ready after its iteration's backward pass began (ns). */
  const readyAfter = jobs.map((job) => {
    let total = 0;
    return (job.layers ?? [{ bytes: job.tensorBytes, backwardMs: 0 }]).map((l) => {
      total += l.backwardMs * 1e6;
      return total;
    });
  });
  const begin = (w: SimWorker) => {
    const job = jobs[w.job];
    w.running = true;
    const l = w.layer;
    w.stall.enter(engine.now);
    if (w.core instanceof CollectiveCore) {
      w.core.begin(job.operation, w.inputs[l], w.outputs[l], nowMs(), job.root);
    } else if (w.check !== null) {
      w.core.beginStream(w.check.streamFor(w.workerId), nowMs());
    } else {
      w.core.begin(w.inputs[l], w.outputs[l], nowMs());
    }
    w.stall.end();
    w.timer?.rearm();
    settle(w);
  };
  /** Starts layer `w.layer` once its gradient is ready (now, if it already is). */
  const beginWhenReady = (w: SimWorker) => {
    engine.at(Math.max(engine.now, w.iterationStart + readyAfter[w.job][w.layer]), () => begin(w));
  };
  /** A new iteration: the forward pass (computeMs), then the backward pass's layers. */
  const beginIteration = (w: SimWorker, at: number) => {
    // A worker's time runs from its start, its computation included, as a real worker's does.
    if (w.startedAt < 0) w.startedAt = at;
    w.layer = 0;
    w.iterationStart = at + jobs[w.job].computeMs * 1e6;
    beginWhenReady(w);
  };
  /**
   * After anything a worker did: an all-reduce that ended starts the next
   * layer's (once ready), or the next iteration, or the worker is done.
   */
  const settle = (w: SimWorker) => {
    if (!w.running || !w.core.done) return;
    w.running = false;
    if (w.core.failure !== null) {
      w.failure = w.core.failure;
      w.finishedAt = engine.now;
      return;
    }
    if (w.layer + 1 < w.inputs.length) {
      w.layer++;
      beginWhenReady(w);
      return;
    }
    w.iterationSeconds.push((engine.now - w.iterationStart) / 1e9);
    w.iteration++;
    const job = jobs[w.job];
    if (w.iteration < job.iterations) beginIteration(w, engine.now);
    else w.finishedAt = engine.now;
  };
  for (const w of all) beginIteration(w, jobs[w.job].startMs * 1e6);
  const finished = () => all.every((w) => w.finishedAt >= 0);
  // The pool's occupancy over time, where ATP jobs share it: a sample every
  // OCCUPANCY_SAMPLE_MS of virtual time from the first job's start.
  const occupancy = jobs.some((j) => j.mode === "atp")
    ? new OccupancySampler(OCCUPANCY_SAMPLE_MS)
    : null;
  if (occupancy !== null) {
    const sample = () => {
      occupancy.sample(sw.aggregators.held, sw.aggregators.count);
      if (!finished()) engine.after(occupancy.periodMs * 1e6, sample);
    };
    engine.at(Math.min(...jobs.map((j) => j.startMs)) * 1e6, sample);
  }
  // Ring workers say hello first, as CollectiveWorker.connect does.
  for (const w of all) if (w.core instanceof CollectiveCore) w.core.hello(0);
  const started = performance.now();
  // Bounded: a run that cannot finish (a ring peer that failed, a worker that
  // gave up) ends after an hour of virtual time, its unfinished workers failed.
  engine.run(3600 * 1e9, finished);
  for (const w of all) {
    if (w.finishedAt < 0) {
      w.failure ??= "did not finish within an hour of virtual time";
      w.finishedAt = engine.now;
    }
  }
  if (wall !== undefined) wall.engineMs = performance.now() - started;

  const switchStats = switchReport(sw);
  const jobResults = jobs.map((job, j) => simJobResult(job, workers[j], switchStats.jobs));
  const firstStart = Math.min(...all.map((w) => w.startedAt));
  const lastEnd = Math.max(...all.map((w) => w.finishedAt));
  const seconds = (lastEnd - firstStart) / 1e9;
  const servers = [...star.parameterServers.values()];
  const psName = (server: SimParameterServer) => {
    if (server.port === PS_PORT) return "ps";
    const j = Math.floor((server.port - ownPsPort(0, 0)) / 16);
    return `${jobs[j].name} ps ${server.port - ownPsPort(j, 0)}`;
  };
  const loads = links === undefined ? null : linkLoadsOf(jobs, workers, servers, psName, seconds);
  const failures = all.filter((w) => w.failure !== null);
  return {
    ...runResult(run, jobs, jobResults, {
      seconds,
      switch: switchStats,
      ps: sumPsReports(servers.map((server) => psReport(server.core))),
      warnings: [],
      links: loads,
      ...(occupancy === null ? {} : { occupancy: occupancy.series() }),
      virtual: {
        switchProcessingNs: timing.switchProcessingNs,
        hostProcessingNs: timing.hostProcessingNs,
        stalledSeconds: workers.map((ws) => Math.max(...ws.map((w) => w.stall.stalledNs / 1e9))),
        parameterServerBusySeconds: jobs.map((job) =>
          Math.max(0, ...servers.map((server) => (server.cpu.busyByJob?.[job.id] ?? 0) / 1e9)),
        ),
      },
      ...(failures.length > 0
        ? {
            error: `worker ${failures[0].workerId} of ${jobs[failures[0].job].name}: ${failures[0].failure}`,
          }
        : {}),
    }),
    clock: "virtual",
    events: engine.executed,
  };
}

/** A job's result from its simulated workers' cores and outputs, as a real run's from its records. */
function simJobResult(
  job: ResolvedJob,
  workers: SimWorker[],
  counters: JobCountersReport[],
): JobResult {
  // A layer trace's job all-reduces every layer once per iteration.
  const bytes = job.layers?.reduce((n, l) => n + l.bytes, 0) ?? job.tensorBytes;
  const op: Collective = job.mode === "ring" ? job.operation : "allReduce";
  const perWorker: WorkerOutcome[] = workers.map((w) => {
    const seconds = (w.finishedAt - w.startedAt) / 1e9;
    const check = w.check;
    const layers = job.layers ?? [{ bytes: job.tensorBytes, backwardMs: 0 }];
    const v: Verification =
      check !== null
        ? {
            elements: w.workerId === 0 ? check.checkedElements : 0,
            maxAbsError: 0,
            outOfBound: check.wrongElements,
            notBitExact: check.wrongElements + (check.verified(w.workerId) ? 0 : 1),
            verified: check.verified(w.workerId),
          }
        : mergeVerifications(
            w.outputs.map((out, i) =>
              job.mode === "ring"
                ? verifyCollective(op, out, {
                    seed: layerSeed(job.seed, i),
                    workers: job.workers,
                    workerId: w.workerId,
                    root: job.root,
                    scaleBits: job.scaleBits,
                    length: layers[i].bytes / 4,
                  })
                : verifyAllReduce(out, layerSeed(job.seed, i), job.workers, job.scaleBits),
            ),
          );
    const s = w.core.stats;
    return {
      workerId: w.workerId,
      seconds,
      goodputMBps: (bytes * job.iterations) / 1e6 / seconds,
      cpuSeconds: 0,
      packetsSent: s.packetsSent,
      retransmissions: s.retransmissions,
      timeouts: s.timeouts,
      spuriousTimeouts: s.spuriousTimeouts,
      timeoutStallMs: s.timeoutStallMs,
      srttMs: s.srttMs,
      rtoMs: s.rtoMs,
      ecnMarkedResults: s.ecnMarkedResults,
      window: w.core.window,
      duplicateResults: s.duplicateResults,
      payloadBytesSent: s.payloadBytesSent,
      payloadBytesReceived: s.payloadBytesReceived,
      outputDigest:
        check !== null
          ? check.digests[w.workerId].toString(16).padStart(8, "0")
          : outputDigest(w.outputs[w.outputs.length - 1]),
      maxAbsError: v.maxAbsError,
      notBitExact: v.notBitExact,
      outOfBound: v.outOfBound,
      verified: v.verified && w.failure === null,
    };
  });
  // As a real run's: each iteration's slowest worker, and the share of an iteration spent all-reducing.
  const iterationSeconds: number[] = [];
  for (const w of workers) {
    w.iterationSeconds.forEach((t, i) => {
      iterationSeconds[i] = Math.max(iterationSeconds[i] ?? 0, t);
    });
  }
  return jobResult(job, perWorker, counters, {
    iterationSeconds,
    communicationShare: communicationShare(iterationSeconds, job.computeMs),
  });
}

/** Every link direction's load over the run, busiest first (as a real run reports them). */
function linkLoadsOf(
  jobs: readonly ResolvedJob[],
  workers: SimWorker[][],
  servers: readonly SimParameterServer[],
  psName: (server: SimParameterServer) => string,
  seconds: number,
): LinkLoad[] {
  const portOf = new Map<LinkLoad, LinkPort>();
  const load = (host: string, direction: "up" | "down", port: LinkPort): LinkLoad => {
    const c = port.counters;
    const link: LinkLoad = {
      host,
      direction,
      rateBitsPerSecond: port.params.rateBitsPerSecond,
      ecnThresholdBytes: Number.isFinite(port.params.ecnThresholdBytes)
        ? port.params.ecnThresholdBytes
        : null,
      bytes: c.bytes,
      utilization: seconds > 0 ? (c.bytes * 8) / (port.params.rateBitsPerSecond * seconds) : 0,
      drops: c.drops,
      marks: c.marks,
      queueHighWaterBytes: c.queueHighWaterBytes,
      ...queueFields(port.queueStats()),
    };
    portOf.set(link, port);
    return link;
  };
  const loads: LinkLoad[] = [];
  jobs.forEach((job, j) => {
    for (const w of workers[j]) {
      if (w.up !== null) loads.push(load(`${job.name} worker ${w.workerId}`, "up", w.up));
      if (w.down !== null) loads.push(load(`${job.name} worker ${w.workerId}`, "down", w.down));
    }
  });
  for (const server of servers) {
    if (server.up !== null) loads.push(load(psName(server), "up", server.up));
    if (server.down !== null) loads.push(load(psName(server), "down", server.down));
  }
  loads.sort((a, b) => b.utilization - a.utilization);
  keepQueueSeries(loads, (link) => portOf.get(link)?.queueSeries());
  return loads;
}

/** A worker's CPU, or null when handling a packet costs it nothing. */
function workerCpu(cost: ProcessingCost): HostCpu | null {
  const cpu = new HostCpu(cost);
  return cpu.free ? null : cpu;
}

/** A ring `forward` with no payload to another worker (a hello goes to its sender itself). */
function isRingAcknowledgement(packet: Buffer): boolean {
  return (
    packet[Field.type] === PacketType.forward &&
    packet.readUInt16LE(Field.elementCount) === 0 &&
    packet.readUInt16LE(Field.destination) !== packet.readUInt16LE(Field.workerId)
  );
}

/** The seed of layer `i`'s gradients (a trace's layers are distinct tensors). */
function layerSeed(seed: number, layer: number): number {
  return layer === 0 ? seed : deriveSeed(seed, 100 + layer);
}

/** One verification for several tensors: every one must pass. */
function mergeVerifications(list: Verification[]): Verification {
  return {
    elements: list.reduce((n, v) => n + v.elements, 0),
    maxAbsError: Math.max(...list.map((v) => v.maxAbsError)),
    outOfBound: list.reduce((n, v) => n + v.outOfBound, 0),
    notBitExact: list.reduce((n, v) => n + v.notBitExact, 0),
    verified: list.every((v) => v.verified),
  };
}
