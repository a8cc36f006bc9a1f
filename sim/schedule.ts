import { OccupancySampler } from "../experiment/occupancy.js";
import {
  type JobView,
  jobTiming,
  type PolicyResult,
  policyResult,
  scheduledJobResult,
  submitBody,
} from "../experiment/schedule.js";
import { LinkPort } from "../link/link.js";
import { type Policy, parseSwitchConfig } from "../proto/config.js";
import { JobSubmitSchema } from "../proto/control.js";
import { hostNicParams, type LinkHost, linkParamsFor } from "../proto/links.js";
import type { ScheduleScenario } from "../proto/scenario.js";
import { HEADER_BYTES } from "../proto/wire.js";
import { ControlPlane, view } from "../switch/control.js";
import { MemoryManager } from "../switch/memory.js";
import { switchReport } from "../switch/report.js";
import { DEFAULT_RTO, WorkerCore } from "../worker/core.js";
import { makeGradient, verifyAllReduce } from "../worker/workload.js";
import { HostCpu } from "./costs.js";
import { Engine } from "./engine.js";
import { HOST, PS_PORT, type Receiver, SimStar, SWITCH_PORT, workerPort } from "./network.js";
import {
  DEFAULT_SIM_TIMING,
  OCCUPANCY_SAMPLE_MS,
  pathWaits,
  runCosts,
  type SimTiming,
} from "./simulate.js";
import { SimTimer } from "./timers.js";

interface ScheduledWorker {
  core: WorkerCore;
  port: number;
  up: LinkPort | null;
  down: LinkPort | null;
  input: Float32Array;
  output: Float32Array;
  epoch: number;
  running: boolean;
  done: boolean;
  /** checked as soon as the worker is done, so its tensors can go (in zero virtual time) */
  verified: boolean;
  /** virtual ms: its first all-reduce began; its last sum was in */
  firstPacketAt: number;
  lastResultAt: number;
  /** takes a packet from the switch (made once) */
  receiver: Receiver;
  /** the core's timer: an engine event at its next deadline */
  timer: SimTimer | null;
}

/**
 * Runs a scheduling scenario under one policy in virtual time: the real
 * memory manager and control plane decide, at each arrival, drain and
 * completion, which job gets which region; the real switch core installs
 * and moves the regions while the jobs' workers run, as the processes do
 * (runner/schedule.ts). A job's workers join once it has a region.
 */
export function simulateSchedule(
  scenario: ScheduleScenario,
  policy: Policy,
  timing: SimTiming = DEFAULT_SIM_TIMING,
): PolicyResult & { clock: "virtual"; events: number } {
  const engine = new Engine();
  const nowMs = () => engine.now / 1e6;
  const links = scenario.links;
  const portFor = (host: LinkHost, nic = false) => {
    if (links === undefined) return null;
    const link = linkParamsFor(links, host);
    return new LinkPort(nic ? hostNicParams(link) : link);
  };
  const needsPs = scenario.jobs.some((j) => j.mode === "atp");
  const config = parseSwitchConfig({
    aggregators: scenario.aggregators,
    jobs: [],
    ...(links === undefined ? {} : { links }),
    ...(needsPs ? { parameterServer: { host: HOST, port: PS_PORT } } : {}),
  });

  const costs = runCosts(scenario, timing);
  const star = new SimStar(
    engine,
    config,
    { ...timing, parameterServerCost: costs.parameterServer, switchCost: costs.switch },
    portFor,
    needsPs
      ? { elements: 256, adoptWindow: Math.max(...scenario.jobs.map((j) => j.window)) }
      : null,
  );
  const { sw } = star;
  const byPort = star.hosts;

  const manager = new MemoryManager({
    aggregators: scenario.aggregators,
    bytesPerAggregator: 1024,
    policy,
    partitions: scenario.partitions,
  });
  const control = new ControlPlane({
    manager,
    core: sw,
    dataAddress: { host: HOST, port: SWITCH_PORT },
    now: nowMs,
    hasParameterServer: needsPs,
    // Drains are acted on at the same virtual time, then jobs that got a region start.
    defer: (work) =>
      engine.after(0, () => {
        work();
        startReady();
      }),
  });

  const workers: ScheduledWorker[][] = scenario.jobs.map(() => []);
  const finishedJobs = new Set<number>();
  /** A worker finished an epoch: the next after the compute time, or it is done. */
  const settle = (w: ScheduledWorker) => {
    if (!w.running || !w.core.done) return;
    w.running = false;
    const j = workers.findIndex((list) => list.includes(w));
    const job = scenario.jobs[j];
    w.epoch++;
    if (w.core.failure === null && w.epoch < job.epochs) {
      engine.after(job.computeMs * 1e6, () => begin(w));
      return;
    }
    w.done = true;
    w.lastResultAt = nowMs();
    w.verified =
      w.core.failure === null &&
      verifyAllReduce(w.output, scenario.seed + j + 1, job.workers, 20).verified;
    w.input = new Float32Array(0);
    w.output = new Float32Array(0);
    control.workerDone(j + 1, workers[j].indexOf(w));
    if (workers[j].every((x) => x.done)) finishedJobs.add(j);
    startReady();
  };
  const begin = (w: ScheduledWorker) => {
    w.running = true;
    if (w.epoch === 0) w.firstPacketAt = nowMs();
    w.core.begin(w.input, w.output, nowMs());
    w.timer?.rearm();
    settle(w);
  };
  /** Starts the workers of every job that has a region and has not started. */
  const startReady = () => {
    scenario.jobs.forEach((job, j) => {
      const id = j + 1;
      if (workers[j].length > 0) return;
      const managed = manager.jobs.get(id);
      if (managed?.status !== "running" || sw.job(id) === undefined) return;
      for (let w = 0; w < job.workers; w++) {
        const placement = control.join(id, { workerId: w });
        const port = workerPort(j, w);
        // As ina-worker --control does: the switch takes its packets only once bound.
        control.bindAddress(id, w, port, HOST);
        const host = { job: id, worker: w };
        const up = portFor(host, true);
        const region = placement.region as { offset: number; size: number; epoch: number };
        const core = new WorkerCore(
          {
            ...DEFAULT_RTO,
            ...pathWaits(
              links === undefined ? undefined : hostNicParams(linkParamsFor(links, host)),
              HEADER_BYTES + 4 * 256,
              timing,
              Number(placement.window),
            ),
            mode: job.mode,
            jobId: id,
            workerId: w,
            fanIn: job.workers,
            regionOffset: region.offset,
            regionSize: region.size,
            regionEpoch: region.epoch,
            window: Number(placement.window),
            elementsPerPacket: 256,
            scaleBits: 20,
          },
          star.toSwitch(port, up),
        );
        control.bindAddress(id, w, port, HOST);
        const worker: ScheduledWorker = {
          core,
          port,
          up,
          down: portFor(host),
          input: makeGradient(job.tensorBytes / 4, scenario.seed + id, w),
          output: new Float32Array(job.tensorBytes / 4),
          epoch: 0,
          running: false,
          done: false,
          verified: false,
          firstPacketAt: Number.NaN,
          lastResultAt: Number.NaN,
          receiver: () => {},
          timer: null,
        };
        const timer = new SimTimer(engine, core, () => settle(worker));
        worker.timer = timer;
        worker.receiver = (b, _from, now) => {
          worker.core.receive(b, now);
          timer.rearm();
          settle(worker);
        };
        const cpu = new HostCpu(costs.worker);
        byPort.set(port, {
          down: worker.down,
          receiver: worker.receiver,
          cpu: cpu.free ? null : cpu,
        });
        workers[j].push(worker);
        engine.after(job.computeMs * 1e6, () => begin(worker));
      }
    });
  };

  scenario.jobs.forEach((job, j) => {
    engine.at(job.arriveMs * 1e6, () => {
      control.submit(JobSubmitSchema.parse(submitBody(job, j + 1)));
      startReady();
    });
  });
  const finished = () => finishedJobs.size === scenario.jobs.length;
  // The pool's occupancy over virtual time, from the first arrival.
  const occupancy = new OccupancySampler(OCCUPANCY_SAMPLE_MS);
  const sample = () => {
    occupancy.sample(sw.aggregators.held, sw.aggregators.count);
    if (!finished()) engine.after(occupancy.periodMs * 1e6, sample);
  };
  engine.at(Math.min(...scenario.jobs.map((j) => j.arriveMs)) * 1e6, sample);
  // Bounded: a schedule that cannot finish (a job never admitted) ends after an hour of virtual time.
  engine.run(3600 * 1e9, finished);

  const jobs = scenario.jobs.map((job, j) => {
    const managed = manager.jobs.get(j + 1);
    const v = managed === undefined ? undefined : (view(managed) as JobView);
    const records = workers[j].map((w) => ({
      event: "result",
      retransmissions: w.core.stats.retransmissions,
      timeouts: w.core.stats.timeouts,
      verified: w.verified,
    }));
    // Verification takes no virtual time: 0, as the table says.
    const timing = jobTiming(
      workers[j]
        .filter((w) => w.done)
        .map((w) => ({
          firstPacketAt: w.firstPacketAt,
          lastResultAt: w.lastResultAt,
          verificationS: 0,
          verifiedAt: w.lastResultAt,
        })),
      job.workers,
    );
    return scheduledJobResult(job, j + 1, v, timing, records);
  });
  return {
    ...policyResult(policy, jobs, switchReport(sw) as unknown as Record<string, unknown>),
    occupancy: occupancy.series(),
    ...(finished() ? {} : { error: "some jobs never finished within an hour of virtual time" }),
    clock: "virtual",
    events: engine.executed,
  };
}
