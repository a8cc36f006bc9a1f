import { LinkPort } from "../link/link.js";
import { type CongestionControl, type JobMode, parseSwitchConfig } from "../proto/config.js";
import type { LinkParams } from "../proto/links.js";
import { Prng } from "../proto/prng.js";
import { MAX_DATAGRAM_BYTES } from "../proto/wire.js";
import type { PsCore } from "../ps/core.js";
import { Coalescer } from "../runtime/coalesce.js";
import type { SwitchCore } from "../switch/core.js";
import { type Collective, CollectiveCore } from "../worker/collective.js";
import { DEFAULT_RTO, WorkerCore } from "../worker/core.js";
import { collectiveInput, collectiveOutputLength, makeGradient } from "../worker/workload.js";
import { Engine } from "./engine.js";
import { HOST, PS_PORT, SimStar, SWITCH_PORT, workerPort } from "./network.js";
import { SimTimer } from "./timers.js";

/** One job of a core simulation: its workers and their tensors. */
export interface CoreSimJob {
  mode: JobMode;
  workers: number;
  elements: number;
  window: number;
  elementsPerPacket: number;
  /** NetReduce region or ATP pool slice; NetReduce defaults to its own 2 x window region */
  offset?: number;
  regionSize?: number;
  scaleBits?: number;
  /** seed of the job's gradients; defaults to the simulation's */
  seed?: number;
  congestionControl?: CongestionControl;
  /** ring jobs: the collective every worker runs (default allReduce), and its root */
  operation?: Collective;
  root?: number;
}

export interface CoreSimOptions {
  jobs: CoreSimJob[];
  aggregators: number;
  /** the switch's fault rates, both directions */
  rates: { drop: number; duplicate: number; reorder: number };
  seed: number;
  /** all-reduces run back to back by every worker */
  calls?: number;
  /** things done to the switch at virtual times (ms), e.g. region changes */
  events?: Array<{ at: number; run: (sw: SwitchCore) => void }>;
  /**
   * emulated links, the same for every host: each hop leaves through its
   * sender's egress port (a worker's or the PS's NIC, the switch's port
   * towards the host) of the link model, instead of the fixed jittered hop
   */
  links?: LinkParams;
  /**
   * most packets per datagram at every host (proto/README.md, section 2.1):
   * what a host sends to one destination while handling one event (a
   * delivery or a timeout) leaves in one datagram; default 1 (none). Not with
   * links, whose model is per packet and comes before coalescing.
   */
  packetsPerDatagram?: number;
  /** the switch's dead-peer timeout (s; default the switch's, 60) */
  deadPeerS?: number;
  /** every worker's keepalive interval (ms; default 1000, 0: none) and give-up time (ms; default never) */
  keepaliveMs?: number;
  giveUpAfterMs?: number;
  /**
   * when worker `worker` of job `job` (indexes) begins call `call`, in ms
   * after the call starts (a late start, a computation, a join); default 0
   */
  beginDelayMs?: (call: number, job: number, worker: number) => number;
  /**
   * the switch binds each worker's address as it begins, as the control
   * plane does for a joining worker (else its first accepted packet does)
   */
  bindAtBegin?: boolean;
  /**
   * hosts stopped from `from` to `to` (virtual ms, or ms after call `call`
   * starts; SIGSTOP, a blocked event loop): a stopped worker neither ticks
   * nor receives, and what reaches a stopped host is delivered, in order,
   * when it resumes
   */
  pauses?: Array<{
    host: "ps" | { job: number; worker: number };
    from: number;
    to: number;
    call?: number;
  }>;
}

/** A job's workers after the simulation: their cores and tensors. */
export interface CoreSimJobResult {
  seed: number;
  op: Collective;
  hosts: Array<WorkerCore | CollectiveCore>;
  /** a NetReduce, ATP or PS job's workers (none for a ring job) */
  workers: WorkerCore[];
  /** a ring job's workers (none for the others) */
  collectives: CollectiveCore[];
  inputs: Float32Array[];
  outputs: Float32Array[];
  /** packets per call */
  packets: number;
}

export interface CoreSim {
  sw: SwitchCore;
  ps: PsCore;
  jobs: CoreSimJobResult[];
  /** every link port (with links), the switch's and the hosts' */
  ports: LinkPort[];
  /** virtual time at the end, ms */
  now: number;
  /** datagrams and packets all hosts sent */
  datagrams: number;
  packets: number;
}

/** Events one call may take before it is deemed stuck. */
const MAX_EVENTS = 5_000_000;

/**
 * The sans-IO cores under test (sim/'s star: the switch, the PS and every
 * job's workers) in virtual time, for the tests: each hop takes 0.05 ms
 * plus a seeded jitter (so packets also overtake each other), or crosses
 * the link model; the switch's own fault injector drops, duplicates and
 * reorders in both directions; every core's timers fire at their deadlines
 * (sim/timers.ts). Jobs run at once,
 * as on a shared switch, and every worker runs `calls` collectives back to
 * back. Throws if a worker gave up or a call does not finish.
 */
export function simulateCores(o: CoreSimOptions): CoreSim {
  let nextOffset = 0;
  const jobConfigs = o.jobs.map((job, j) => {
    const id = j + 1;
    const common = { id, fanIn: job.workers, window: job.window };
    if (job.mode === "ps") return { ...common, mode: "ps" as const };
    if (job.mode === "ring") return { ...common, mode: "ring" as const };
    const regionSize = job.regionSize ?? 2 * job.window;
    const offset = job.offset ?? nextOffset;
    nextOffset = Math.max(nextOffset, offset + regionSize);
    return { ...common, mode: job.mode, offset, regionSize };
  });
  const config = parseSwitchConfig({
    aggregators: o.aggregators,
    elementsPerAggregator: Math.max(...o.jobs.map((j) => j.elementsPerPacket)),
    jobs: jobConfigs,
    parameterServer: { host: HOST, port: PS_PORT },
    faults: { seed: o.seed, ingress: o.rates, egress: o.rates },
    ...(o.deadPeerS === undefined ? {} : { deadPeerS: o.deadPeerS }),
  });
  const engine = new Engine();
  const limits = { packets: o.packetsPerDatagram ?? 1, bytes: MAX_DATAGRAM_BYTES };
  if (limits.packets > 1 && o.links !== undefined) {
    throw new RangeError("coalescing comes after the link model: not with links");
  }
  const ports: LinkPort[] = [];
  const links = o.links;
  const portFor = () => {
    if (links === undefined) return null;
    const port = new LinkPort(links);
    ports.push(port);
    return port;
  };
  // Every host's sends pass through its coalescer; the batches are flushed
  // after each event.
  const toFlush = new Set<Coalescer>();
  const coalescers: Coalescer[] = [];
  const coalescer = (wire: (datagram: Buffer, port: number) => void, acceptAll: boolean) => {
    const c: Coalescer = new Coalescer(limits, wire, () => toFlush.add(c), acceptAll);
    coalescers.push(c);
    return c;
  };
  const flush = () => {
    for (const c of toFlush) c.flush();
    toFlush.clear();
  };
  const jitter = new Prng(o.seed ^ 0x5eed);
  const star = new SimStar(
    engine,
    config,
    { switchProcessingNs: 0, hostProcessingNs: 0 },
    portFor,
    { elements: config.elementsPerAggregator },
    {
      hopNs: () => (0.05 + jitter.nextFloat() * 0.05) * 1e6,
      outbox: (from, wire) => {
        const c = coalescer(wire, from === PS_PORT);
        if (from === SWITCH_PORT) c.accept(PS_PORT, HOST);
        return {
          send: (packet, port, address) => c.send(packet, port, address),
          acceptsBatches: (port, address) => c.accept(port, address),
        };
      },
    },
  );
  const { sw } = star;
  const ps = star.ps as PsCore;
  // Stopped hosts: what reaches them waits, as in a stopped process's socket buffer.
  const pauses = (o.pauses ?? []).map((p) =>
    p.call === undefined ? { ...p } : { ...p, from: Number.POSITIVE_INFINITY, to: 0 },
  );
  const pauseOf = (host: "ps" | { job: number; worker: number }, now: number) =>
    pauses.find(
      (p) =>
        (p.host === "ps"
          ? host === "ps"
          : host !== "ps" && p.host.job === host.job && p.host.worker === host.worker) &&
        now >= p.from &&
        now < p.to,
    );
  const holding = (
    host: "ps" | { job: number; worker: number },
    take: (bytes: Buffer, now: number) => void,
  ) => {
    const held: Buffer[] = [];
    return (bytes: Buffer, now: number) => {
      const pause = pauseOf(host, now);
      if (pause === undefined) {
        take(bytes, now);
        return;
      }
      if (held.length === 0) {
        engine.at(pause.to * 1e6, () => {
          for (const b of held.splice(0)) take(b, pause.to);
        });
      }
      held.push(Buffer.from(bytes));
    };
  };
  if (pauses.some((p) => p.host === "ps")) {
    const psReceive = ps.receive.bind(ps);
    const psIn = holding("ps", (b) => psReceive(b, SWITCH_PORT, HOST));
    ps.receive = (bytes: Buffer) => psIn(bytes, engine.now / 1e6);
  }

  /** every worker's timer, by its place in `all` */
  const timers: SimTimer[] = [];
  const jobs = o.jobs.map((job, j): CoreSimJobResult & { begin: (w: number) => void } => {
    const cfg = jobConfigs[j];
    const seed = job.seed ?? o.seed;
    const op = job.operation ?? "allReduce";
    const jobTimers: SimTimer[] = [];
    const hosts = Array.from({ length: job.workers }, (_, w): WorkerCore | CollectiveCore => {
      const port = workerPort(j, w);
      const up = star.toSwitch(port, portFor());
      const out = coalescer((datagram) => up.send(datagram), true);
      const transmit = { send: (buf: Buffer) => out.send(buf, SWITCH_PORT, HOST) };
      const core =
        job.mode === "ring"
          ? new CollectiveCore(
              {
                ...DEFAULT_RTO,
                jobId: cfg.id,
                workerId: w,
                fanIn: job.workers,
                window: job.window,
                elementsPerPacket: job.elementsPerPacket,
                scaleBits: job.scaleBits ?? 20,
                keepaliveMs: o.keepaliveMs,
                giveUpAfterMs: o.giveUpAfterMs,
              },
              transmit,
            )
          : new WorkerCore(
              {
                ...DEFAULT_RTO,
                mode: job.mode,
                jobId: cfg.id,
                workerId: w,
                fanIn: job.workers,
                regionOffset: cfg.mode === "ps" || cfg.mode === "ring" ? 0 : cfg.offset,
                regionSize: cfg.mode === "ps" || cfg.mode === "ring" ? 0 : cfg.regionSize,
                window: job.window,
                elementsPerPacket: job.elementsPerPacket,
                scaleBits: job.scaleBits ?? 20,
                congestionControl: job.congestionControl,
                keepaliveMs: o.keepaliveMs,
                giveUpAfterMs: o.giveUpAfterMs,
              },
              transmit,
            );
      // A stopped worker runs no timer either: its timers wait for the pause's end.
      const host = { job: j, worker: w };
      const timer = new SimTimer(engine, {
        nextTimeout: () => {
          const pause = pauseOf(host, engine.now / 1e6);
          return pause === undefined ? core.nextTimeout() : Math.max(pause.to, core.nextTimeout());
        },
        handleTimeout: (now) => {
          if (pauseOf(host, now) === undefined) core.handleTimeout(now);
        },
      });
      timers.push(timer);
      jobTimers.push(timer);
      const take = holding(host, (bytes, now) => {
        core.receive(bytes, now);
        timer.rearm();
      });
      star.hosts.set(port, {
        down: portFor(),
        receiver: (bytes, _from, nowMs) => take(bytes, nowMs),
      });
      return core;
    });
    const inputs = hosts.map((_, w) =>
      job.mode === "ring"
        ? collectiveInput(op, job.elements, seed, w, job.workers)
        : makeGradient(job.elements, seed, w),
    );
    const outputs = hosts.map((_, w) =>
      job.mode === "ring"
        ? new Float32Array(collectiveOutputLength(op, job.elements, job.workers, w))
        : new Float32Array(job.elements),
    );
    const begin = (w: number) => {
      const core = hosts[w];
      const now = engine.now / 1e6;
      if (o.bindAtBegin === true) sw.job(cfg.id)?.bindHost(w, workerPort(j, w), HOST);
      if (core instanceof CollectiveCore) core.begin(op, inputs[w], outputs[w], now, job.root ?? 0);
      else core.begin(inputs[w], outputs[w], now);
      jobTimers[w].rearm();
    };
    return {
      seed,
      op,
      hosts,
      workers: hosts.filter((h): h is WorkerCore => h instanceof WorkerCore),
      collectives: hosts.filter((h): h is CollectiveCore => h instanceof CollectiveCore),
      begin,
      inputs,
      outputs,
      packets: Math.ceil(job.elements / job.elementsPerPacket),
    };
  });
  const all = jobs.flatMap((job) => job.hosts);
  /** workers whose begin of the current call is still ahead (beginDelayMs) */
  let beginsAhead = 0;
  const done = () => beginsAhead === 0 && all.every((w) => w.done);

  for (const e of o.events ?? []) {
    engine.at(e.at * 1e6, () => {
      e.run(sw);
      star.swTimer.rearm();
    });
  }
  for (let call = 0; call < (o.calls ?? 1); call++) {
    (o.pauses ?? []).forEach((p, i) => {
      if (p.call !== call) return;
      pauses[i].from = engine.now / 1e6 + p.from;
      pauses[i].to = engine.now / 1e6 + p.to;
    });
    for (const job of jobs) {
      for (const out of job.outputs) out.fill(Number.NaN);
      job.hosts.forEach((_, w) => {
        const delay = o.beginDelayMs?.(call, jobs.indexOf(job), w) ?? 0;
        if (delay <= 0) {
          job.begin(w);
          return;
        }
        beginsAhead++;
        engine.after(delay * 1e6, () => {
          beginsAhead--;
          job.begin(w);
        });
      });
    }
    for (const t of timers) t.rearm();
    flush();
    const limit = engine.executed + MAX_EVENTS;
    if (!done()) {
      engine.run(Number.POSITIVE_INFINITY, () => {
        flush();
        if (engine.executed > limit) throw new Error("simulation did not finish");
        return done();
      });
    }
    if (!done()) throw new Error("simulation did not finish: nothing left to happen");
  }
  for (const w of all) {
    if (w.failure !== null) throw new Error(`a worker gave up: ${w.failure}`);
  }
  return {
    sw,
    ps,
    jobs: jobs.map(({ begin: _, ...job }) => job),
    ports,
    now: engine.now / 1e6,
    datagrams: coalescers.reduce((n, c) => n + c.datagramsSent, 0),
    packets: coalescers.reduce((n, c) => n + c.packetsSent, 0),
  };
}
