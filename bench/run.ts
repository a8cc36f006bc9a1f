import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { SwitchConfigInput } from "../proto/config.js";
import type { SwitchReport } from "../switch/report.js";
import { ChildNode, type ProcessRecord } from "./processes.js";

export interface ExperimentOptions {
  workers: number;
  sizeBytes: number;
  elementsPerPacket: number;
  window: number;
  /** aggregators in the job's region; default 2 x window */
  regionSize?: number;
  scaleBits: number;
  /** fault rates, applied in both directions at the switch */
  drop: number;
  duplicate: number;
  reorder: number;
  seed: number;
  iterations: number;
  timeoutMs: number;
  /** "ina": the real switch; "floor": bench/floor-switch.ts, the transport floor */
  switchImpl: "ina" | "floor";
  /** called with the fraction of packets completed, about every 500 ms */
  onProgress?: (fraction: number) => void;
}

export const DEFAULT_EXPERIMENT: Omit<ExperimentOptions, "onProgress"> = {
  workers: 4,
  sizeBytes: 32 * 1024 * 1024,
  elementsPerPacket: 256,
  window: 128,
  scaleBits: 20,
  drop: 0,
  duplicate: 0,
  reorder: 0,
  seed: 1,
  iterations: 1,
  timeoutMs: 300_000,
  switchImpl: "ina",
};

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

export interface ExperimentResult {
  mode: "netreduce";
  switchImpl: "ina" | "floor";
  workers: number;
  bytesPerWorker: number;
  iterations: number;
  elementsPerPacket: number;
  window: number;
  seed: number;
  faults: { drop: number; duplicate: number; reorder: number };
  /** slowest worker's wall time from "go" to its last result */
  seconds: number;
  /** bytes all-reduced per worker per second (MB = 10^6 bytes) */
  goodputMBps: number;
  /** datagrams in and out of the switch */
  switchPackets: number;
  switchPacketsPerSecond: number;
  retransmissions: number;
  duplicatesDropped: number;
  maxAbsError: number;
  verified: boolean;
  perWorker: WorkerOutcome[];
  switch: SwitchReport | Record<string, unknown>;
}

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
export const SCRIPTS = {
  switch: here("../switch/cli.js"),
  floor: here("./floor-switch.js"),
  worker: here("../worker/cli.js"),
};

/**
 * Runs one NetReduce all-reduce with real processes: a switch and `workers`
 * worker processes on 127.0.0.1, ephemeral ports, every wait bounded, every
 * child stopped by PID at the end whatever happens.
 */
export async function runExperiment(options: ExperimentOptions): Promise<ExperimentResult> {
  const o = options;
  const regionSize = o.regionSize ?? 2 * o.window;
  const dir = await mkdtemp(join(tmpdir(), "ina-emu-"));
  const children: ChildNode[] = [];
  try {
    const rates = { drop: o.drop, duplicate: o.duplicate, reorder: o.reorder };
    const config: SwitchConfigInput = {
      aggregators: regionSize,
      elementsPerAggregator: o.elementsPerPacket,
      jobs: [
        {
          id: 1,
          mode: "netreduce",
          fanIn: o.workers,
          offset: 0,
          size: regionSize,
          window: o.window,
        },
      ],
      faults: { seed: o.seed, ingress: rates, egress: rates },
    };
    const configPath = join(dir, "switch.json");
    await writeFile(configPath, JSON.stringify(config, null, 2));
    const sw = new ChildNode("switch", o.switchImpl === "floor" ? SCRIPTS.floor : SCRIPTS.switch, [
      "--config",
      configPath,
    ]);
    children.push(sw);
    const ready = await sw.waitFor("ready", 15_000);
    const target = `${ready.dataAddress}:${ready.dataPort}`;

    const progress = new Float64Array(o.workers);
    const totalPackets = Math.ceil(o.sizeBytes / 4 / o.elementsPerPacket) * o.iterations;
    const onRecord = (w: number) => (record: ProcessRecord) => {
      if (record.event === "progress") {
        const done =
          Number(record.iteration) * (totalPackets / o.iterations) +
          Number(record.completedPackets);
        progress[w] = done / totalPackets;
        if (w === 0 && o.onProgress) o.onProgress(Math.min(...progress));
      }
    };
    for (let w = 0; w < o.workers; w++) {
      const args = [
        "--switch",
        target,
        "--job",
        "1",
        "--worker",
        String(w),
        "--fan-in",
        String(o.workers),
        "--offset",
        "0",
        "--size",
        String(regionSize),
        "--window",
        String(o.window),
        "--elements-per-packet",
        String(o.elementsPerPacket),
        "--scale-bits",
        String(o.scaleBits),
        "--size-bytes",
        String(o.sizeBytes),
        "--seed",
        String(o.seed),
        "--iterations",
        String(o.iterations),
        "--wait-go",
      ];
      children.push(new ChildNode(`worker ${w}`, SCRIPTS.worker, args, onRecord(w)));
    }
    const workers = children.slice(1);
    // Inputs are generated before "ready", so the timed part is the all-reduce alone.
    await Promise.all(workers.map((child) => child.waitFor("ready", 60_000)));
    for (const child of workers) child.send("go");
    const results = await Promise.all(workers.map((child) => child.waitFor("result", o.timeoutMs)));
    await Promise.all(workers.map((child) => child.waitExit(10_000)));
    await sw.stop();
    const stats = sw.records.find((r) => r.event === "stats" && r.final) ?? {};

    const perWorker: WorkerOutcome[] = results.map((r) => {
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
    const seconds = Math.max(...perWorker.map((w) => w.seconds));
    const report = stats as Partial<SwitchReport>;
    const switchPackets = Number(report.rxPackets ?? 0) + Number(report.txPackets ?? 0);
    return {
      mode: "netreduce",
      switchImpl: o.switchImpl,
      workers: o.workers,
      bytesPerWorker: o.sizeBytes,
      iterations: o.iterations,
      elementsPerPacket: o.elementsPerPacket,
      window: o.window,
      seed: o.seed,
      faults: rates,
      seconds,
      goodputMBps: (o.sizeBytes * o.iterations) / 1e6 / seconds,
      switchPackets,
      switchPacketsPerSecond: Number(report.packetsPerSecond ?? 0),
      retransmissions: perWorker.reduce((sum, w) => sum + w.retransmissions, 0),
      duplicatesDropped: Number(report.drops?.duplicate ?? 0),
      maxAbsError: Math.max(...perWorker.map((w) => w.maxAbsError)),
      verified: perWorker.every((w) => w.verified),
      perWorker,
      switch: stats,
    };
  } finally {
    await Promise.all(children.map((child) => child.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}
