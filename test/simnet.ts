import assert from "node:assert/strict";
import { LinkPort, newVerdict } from "../link/link.js";
import { type CongestionControl, type JobMode, parseSwitchConfig } from "../proto/config.js";
import type { LinkParams } from "../proto/links.js";
import { Prng } from "../proto/prng.js";
import { Field, Flag, MAX_DATAGRAM_BYTES } from "../proto/wire.js";
import { PsCore } from "../ps/core.js";
import { Coalescer } from "../runtime/coalesce.js";
import { SwitchCore } from "../switch/core.js";
import { type Collective, CollectiveCore } from "../worker/collective.js";
import { DEFAULT_RTO, WorkerCore } from "../worker/core.js";
import { collectiveInput, collectiveOutputLength, makeGradient } from "../worker/workload.js";

export interface SimJob {
  mode: JobMode;
  workers: number;
  elements: number;
  window: number;
  elementsPerPacket: number;
  /** NetReduce region or ATP pool slice; NetReduce defaults to its own 2 x window region */
  offset?: number;
  size?: number;
  scaleBits?: number;
  /** seed of the job's gradients; defaults to the simulation's */
  seed?: number;
  congestionControl?: CongestionControl;
  /** ring jobs: the collective every worker runs (default allReduce), and its root */
  operation?: Collective;
  root?: number;
}

export interface SimOptions {
  jobs: SimJob[];
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
   * delivery or a tick) leaves in one datagram; default 1 (none). Not with
   * links, whose model is per packet and comes before coalescing.
   */
  packetsPerDatagram?: number;
}

const SWITCH_PORT = 1000;
const PS_PORT = 2000;
const HOST = "127.0.0.1";
const workerPort = (job: number, worker: number) => 3000 + 100 * job + worker;

/**
 * The switch, the parameter server and every job's workers, sans-IO, wired by
 * an in-memory network with virtual time: each hop takes 0.05 ms plus a
 * seeded jitter, so packets also overtake each other, and the switch's own
 * fault injector drops, duplicates and reorders in both directions. Jobs run
 * at once, as on a shared switch.
 */
export function simulate(o: SimOptions) {
  let nextOffset = 0;
  const jobConfigs = o.jobs.map((job, j) => {
    const id = j + 1;
    const common = { id, fanIn: job.workers, window: job.window };
    if (job.mode === "ps") return { ...common, mode: "ps" as const };
    if (job.mode === "ring") return { ...common, mode: "ring" as const };
    const size = job.size ?? 2 * job.window;
    const offset = job.offset ?? nextOffset;
    nextOffset = Math.max(nextOffset, offset + size);
    return { ...common, mode: job.mode, offset, size };
  });
  const config = parseSwitchConfig({
    aggregators: o.aggregators,
    elementsPerAggregator: Math.max(...o.jobs.map((j) => j.elementsPerPacket)),
    jobs: jobConfigs,
    parameterServer: { host: HOST, port: PS_PORT },
    faults: { seed: o.seed, ingress: o.rates, egress: o.rates },
  });
  const jitter = new Prng(o.seed ^ 0x5eed);
  type InFlight = { at: number; to: number; from: number; bytes: Buffer };
  const network: InFlight[] = [];
  let now = 0;
  const ports = new Map<string, LinkPort>();
  const verdict = newVerdict();
  const deliver = (from: number, to: number, buf: Buffer) => {
    const bytes = Buffer.from(buf);
    if (o.links === undefined) {
      network.push({ at: now + 0.05 + jitter.nextFloat() * 0.05, to, from, bytes });
      return;
    }
    const key = `${from}>${to}`;
    let port = ports.get(key);
    if (port === undefined) {
      port = new LinkPort(o.links);
      ports.set(key, port);
    }
    const v = port.offer(bytes.length, now, verdict);
    if (v.dropped) return;
    if (v.marked) bytes.writeUInt16LE(bytes.readUInt16LE(Field.flags) | Flag.ecn, Field.flags);
    network.push({ at: v.arriveAt, to, from, bytes });
  };
  // Every host's sends pass through its coalescer; a host's batches are
  // flushed after each event it handles.
  const limits = { packets: o.packetsPerDatagram ?? 1, bytes: MAX_DATAGRAM_BYTES };
  assert.ok(limits.packets === 1 || o.links === undefined, "coalescing comes after the link model");
  const toFlush = new Set<Coalescer>();
  const coalescers: Coalescer[] = [];
  const coalescer = (from: number, acceptAll: boolean) => {
    const c: Coalescer = new Coalescer(
      limits,
      (datagram, port) => deliver(from, port, datagram),
      () => toFlush.add(c),
      acceptAll,
    );
    coalescers.push(c);
    return c;
  };
  const swOut = coalescer(SWITCH_PORT, false);
  swOut.accept(PS_PORT, HOST);
  const sw = new SwitchCore(config, {
    send: (buf, port, address) => swOut.send(buf, port, address),
    acceptsBatches: (port, address) => swOut.accept(port, address),
  });
  const psOut = coalescer(PS_PORT, true);
  const ps = new PsCore(config.jobs, config.elementsPerAggregator, {
    send: (buf, port, address) => psOut.send(buf, port, address),
  });
  const flush = () => {
    for (const c of toFlush) c.flush();
    toFlush.clear();
  };
  const jobs = o.jobs.map((job, j) => {
    const cfg = jobConfigs[j];
    const seed = job.seed ?? o.seed;
    const op = job.operation ?? "allReduce";
    const hosts = Array.from({ length: job.workers }, (_, w): WorkerCore | CollectiveCore => {
      const out = coalescer(workerPort(j, w), true);
      if (job.mode === "ring") {
        return new CollectiveCore(
          {
            ...DEFAULT_RTO,
            jobId: cfg.id,
            workerId: w,
            fanIn: job.workers,
            window: job.window,
            elementsPerPacket: job.elementsPerPacket,
            scaleBits: job.scaleBits ?? 20,
          },
          { send: (buf) => out.send(buf, SWITCH_PORT, HOST) },
        );
      }
      return new WorkerCore(
        {
          ...DEFAULT_RTO,
          mode: job.mode,
          jobId: cfg.id,
          workerId: w,
          fanIn: job.workers,
          regionOffset: cfg.mode === "ps" || cfg.mode === "ring" ? 0 : cfg.offset,
          regionSize: cfg.mode === "ps" || cfg.mode === "ring" ? 0 : cfg.size,
          window: job.window,
          elementsPerPacket: job.elementsPerPacket,
          scaleBits: job.scaleBits ?? 20,
          congestionControl: job.congestionControl,
        },
        { send: (buf) => out.send(buf, SWITCH_PORT, HOST) },
      );
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
    const begin = (w: number, now: number) => {
      const core = hosts[w];
      if (core instanceof CollectiveCore) core.begin(op, inputs[w], outputs[w], now, job.root ?? 0);
      else core.begin(inputs[w], outputs[w], now);
    };
    return {
      seed,
      op,
      hosts,
      /** a NetReduce, ATP or PS job's workers (none for a ring job) */
      workers: hosts.filter((h): h is WorkerCore => h instanceof WorkerCore),
      /** a ring job's workers (none for the others) */
      collectives: hosts.filter((h): h is CollectiveCore => h instanceof CollectiveCore),
      begin,
      inputs,
      outputs,
      packets: Math.ceil(job.elements / job.elementsPerPacket),
    };
  });
  const byPort = new Map<number, WorkerCore | CollectiveCore>();
  jobs.forEach((job, j) => {
    job.hosts.forEach((w, i) => {
      byPort.set(workerPort(j, i), w);
    });
  });
  const all = [...byPort.values()];

  const events = [...(o.events ?? [])].sort((a, b) => a.at - b.at);
  for (let call = 0; call < (o.calls ?? 1); call++) {
    for (const job of jobs) {
      job.outputs.forEach((out) => {
        out.fill(Number.NaN);
      });
      job.hosts.forEach((_, i) => {
        job.begin(i, now);
      });
    }
    flush();
    let nextTick = now + 1;
    for (let steps = 0; all.some((w) => !w.done); steps++) {
      assert.ok(steps < 5_000_000, "simulation did not finish");
      network.sort((a, b) => a.at - b.at);
      const next = network.shift();
      if (next === undefined || next.at > nextTick) {
        if (next !== undefined) network.unshift(next);
        now = nextTick;
        nextTick += 1;
        sw.tick(now);
        for (const w of all) w.tick(now);
        flush();
        continue;
      }
      now = next.at;
      while (events.length > 0 && events[0].at <= now) events.shift()?.run(sw);
      if (next.to === SWITCH_PORT) sw.receive(next.bytes, next.from, HOST, now);
      else if (next.to === PS_PORT) ps.receive(next.bytes, next.from, HOST);
      else byPort.get(next.to)?.receive(next.bytes, now);
      flush();
    }
  }
  for (const w of all) assert.equal(w.failure, null, `a worker gave up: ${w.failure}`);
  const datagrams = coalescers.reduce((n, c) => n + c.datagramsSent, 0);
  const packets = coalescers.reduce((n, c) => n + c.packetsSent, 0);
  return { sw, ps, jobs, ports, now, datagrams, packets };
}
