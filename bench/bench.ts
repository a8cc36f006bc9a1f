#!/usr/bin/env node
/**
 * `npm run bench`: how fast ina-emu moves gradients, and how far from the floors.
 * 1. The switch pipeline alone, in process, no sockets: cost per packet.
 * 2. For N workers (default 2, 4, 8) and three packet shapes (1 KiB packets one
 *    per datagram, 1 KiB packets several per datagram, 64 KiB packets with a
 *    window in bytes): NetReduce, ATP and PS with real processes, next to
 *    bench/floor-switch.ts (the least a Node process can do for the same
 *    workers, coalescing too) and, with --reference, the C switch of
 *    ../shared/reference. Goodput per worker, switch packets/s, CPU per
 *    emulated packet at the switch and the workers, retransmissions.
 * 3. A 64 MiB all-reduce over 4 workers, with --reference next to Open MPI's
 *    MPI_Allreduce over TCP loopback.
 * Every configuration runs --repeat times, interleaved (repeat by repeat, all
 * configurations in turn), and the median is reported: the machine is
 * shared and noisy. Numbers are reported, never asserted. The results go to
 * results/bench-<time>.json.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import type { RunResult } from "../experiment/results.js";
import {
  parseSwitchConfig,
  type WindowInput,
  windowInputSchema,
  windowPackets,
} from "../proto/config.js";
import { writeContribution } from "../proto/packets.js";
import type { SwitchStatsRecord } from "../proto/records.js";
import { ScenarioRunSchema } from "../proto/scenario.js";
import { byteSize } from "../proto/units.js";
import { HEADER_BYTES } from "../proto/wire.js";
import { runScenarioRun } from "../runner/run.js";
import { EXIT_OK, runCli } from "../runtime/cli.js";
import { SwitchCore } from "../switch/core.js";
import { mpiAllreduceSeconds, referenceGoodput } from "./reference.js";

/** The floor relay: the least a Node process can do for the same workers. */
const FLOOR_SCRIPT = fileURLToPath(new URL("./floor-switch.js", import.meta.url));

/** A packet shape: packet size, window, packets per datagram. */
interface Shape {
  name: string;
  elementsPerPacket: number;
  window: WindowInput;
  packetsPerDatagram: number;
}

type Impl = "floor" | "netreduce" | "atp" | "ps";

/** One job of `workers` in `mode` through the real switch (or the floor relay), lossless. */
function oneRun(
  impl: Impl,
  workers: number,
  tensorBytes: number,
  shape: Shape,
  /** poll the switch's live page data twice a second, as an open page does */
  pageOpen = false,
): Promise<RunResult> {
  const window = windowPackets(shape.window, shape.elementsPerPacket);
  const run = ScenarioRunSchema.parse({
    name: impl,
    // ATP gets as many aggregators as NetReduce: the same switch memory.
    aggregators: 2 * window,
    packetsPerDatagram: shape.packetsPerDatagram,
    jobs: [
      {
        mode: impl === "floor" ? "netreduce" : impl,
        workers,
        tensorBytes,
        window,
        elementsPerPacket: shape.elementsPerPacket,
      },
    ],
  });
  let poller: NodeJS.Timeout | null = null;
  return runScenarioRun(run, {
    seed: 1,
    timeoutMs: 300_000,
    floorScript: impl === "floor" ? FLOOR_SCRIPT : undefined,
    onRunning: ({ controlUrl }) => {
      if (!pageOpen || controlUrl === null) return;
      poller = setInterval(() => {
        void fetch(`${controlUrl}/ui/state`)
          .then((r) => r.arrayBuffer())
          .catch(() => {});
      }, 500);
    },
  }).finally(() => {
    if (poller !== null) clearInterval(poller);
  });
}

/** What one run measured, per the bench's columns. */
interface Sample {
  goodputMBps: number;
  seconds: number;
  switchPacketsPerSecond: number;
  switchCpuUsPerPacket: number;
  workerCpuUsPerPacket: number;
  /** packets per datagram the switch received */
  packetsPerDatagram: number;
  retransmissions: number;
  verified: boolean;
}

function sampleOf(r: RunResult): Sample {
  const sw = r.switch as Partial<SwitchStatsRecord> & { dataPathCpuSeconds?: number };
  const swPackets = Number(sw.rxPackets ?? 0) + Number(sw.txPackets ?? 0);
  const job = r.jobs[0];
  if (job === undefined) throw new Error(`run ${r.name} has no result`);
  const workerCpu = job.perWorker.reduce((s, w) => s + w.cpuSeconds, 0) / job.workers;
  // A worker handles each of its packets twice: sent, and its result received.
  const perWorkerPackets = job.perWorker[0].packetsSent * 2;
  return {
    goodputMBps: job.goodputMBps,
    seconds: job.seconds,
    switchPacketsPerSecond: swPackets / job.seconds,
    // Start-up CPU (about as much as a small run's data path) is left out.
    switchCpuUsPerPacket: (Number(sw.dataPathCpuSeconds ?? Number.NaN) * 1e6) / swPackets,
    workerCpuUsPerPacket: (workerCpu * 1e6) / perWorkerPackets,
    packetsPerDatagram: Number(sw.rxPackets ?? 0) / Math.max(1, Number(sw.rxDatagrams ?? 0)),
    retransmissions: job.retransmissions,
    verified: job.verified,
  };
}

function median(values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The median of every numeric field over samples; verified only if every sample was. */
function medianSample(samples: Sample[]): Sample {
  const m = (key: keyof Sample) => median(samples.map((s) => Number(s[key])));
  return {
    goodputMBps: m("goodputMBps"),
    seconds: m("seconds"),
    switchPacketsPerSecond: m("switchPacketsPerSecond"),
    switchCpuUsPerPacket: m("switchCpuUsPerPacket"),
    workerCpuUsPerPacket: m("workerCpuUsPerPacket"),
    packetsPerDatagram: m("packetsPerDatagram"),
    retransmissions: m("retransmissions"),
    verified: samples.every((s) => s.verified),
  };
}

const IMPLS: readonly Impl[] = ["floor", "netreduce", "atp", "ps"];

const spec = {
  command: "npm run bench --",
  summary:
    "Measures the switch pipeline alone, then NetReduce, ATP and PS with real processes for\n" +
    "three packet shapes against the floor relay (and the C reference), then a 64 MiB all-reduce.",
  details:
    "Shapes: 1 KiB packets one per datagram; 1 KiB packets up to 64 per datagram; 64 KiB\n" +
    "packets with a window in bytes (--big-window). Every configuration runs --repeat times,\n" +
    "interleaved, and the medians are printed; results/bench-<time>.json keeps every run.\n" +
    "--reference DIR also runs DIR/agg.sh (the C switch) beside each shape and DIR/mpi.sh\n" +
    "(MPI_Allreduce over TCP) beside the 64 MiB all-reduce.",
  options: {
    workers: {
      type: "string",
      valueName: "LIST",
      description: "worker counts, comma-separated",
      defaultText: "2,4,8",
    },
    "tensor-bytes": {
      type: "string",
      valueName: "BYTES",
      description: "gradient per worker (old name: --size)",
      defaultText: "16MiB",
    },
    window: {
      type: "string",
      valueName: "N|BYTES",
      description: "window of the 1 KiB shapes",
      defaultText: "128",
    },
    "big-window": {
      type: "string",
      valueName: "N|BYTES",
      description: "window of the 64 KiB shape",
      defaultText: "512KiB",
    },
    only: {
      type: "string",
      valueName: "LIST",
      description: "implementations: floor, netreduce, atp, ps",
      defaultText: "all four",
    },
    repeat: {
      type: "string",
      valueName: "R",
      description: "runs of each configuration (the median is shown)",
      defaultText: "3",
    },
    "allreduce-bytes": {
      type: "string",
      valueName: "BYTES",
      description: "the 4-worker all-reduce's tensor (0: skip it) (old name: --allreduce-size)",
      defaultText: "64MiB",
    },
    reference: {
      type: "string",
      valueName: "DIR",
      description: "run the C switch and MPI_Allreduce scripts from DIR too (../shared/reference)",
    },
    results: {
      type: "string",
      valueName: "DIR",
      description: "where the JSON results go",
      defaultText: "results",
    },
    json: { type: "boolean", description: "print the results as JSON" },
    "only-pipeline": {
      type: "boolean",
      description: "measure the switch pipeline alone, print its ns per packet and stop",
    },
  },
  renamed: { size: "tensor-bytes", "allreduce-size": "allreduce-bytes" },
  schema: z.strictObject({
    workers: z
      .string()
      .regex(/^\d+(,\d+)*$/, "expected a list like 2,4,8")
      .transform((s) => s.split(",").map(Number))
      .refine((list) => list.every((n) => n >= 1 && n <= 32), "each count must be 1..32")
      .default([2, 4, 8]),
    tensorBytes: byteSize.default(16 * 1024 * 1024),
    window: windowInputSchema.default({ packets: 128 }),
    bigWindow: windowInputSchema.default({ bytes: 512 * 1024 }),
    only: z
      .string()
      .transform((s) => s.split(","))
      .pipe(z.array(z.enum(IMPLS)).min(1))
      .default([...IMPLS]),
    repeat: z.coerce.number().int().min(1).max(50).default(3),
    allreduceBytes: byteSize.default(64 * 1024 * 1024),
    reference: z.string().optional(),
    results: z.string().default("results"),
    json: z.boolean().default(false),
    onlyPipeline: z.boolean().default(false),
  }),
} as const;

/** Pushes contributions of `fanIn` workers through SwitchCore with a no-op transmit. */
function pipelineOnly(fanIn: number, psns: number): { nsPerPacket: number; packets: number } {
  const window = 128;
  const job = {
    id: 1,
    mode: "netreduce" as const,
    fanIn,
    offset: 0,
    regionSize: 2 * window,
    window,
  };
  const core = new SwitchCore(parseSwitchConfig({ aggregators: job.regionSize, jobs: [job] }), {
    send() {},
  });
  // Pre-built datagrams: one per (worker, PSN slot); only the PSN field is rewritten.
  const datagrams: Buffer[] = [];
  for (let w = 0; w < fanIn; w++) {
    const buf = Buffer.alloc(HEADER_BYTES + 256 * 4);
    const view = new DataView(buf.buffer, buf.byteOffset, buf.length);
    writeContribution(view, 0, 0, 1, w, fanIn, 256, 0, 0, 1 << w, 20, 0);
    datagrams.push(buf);
  }
  const started = performance.now();
  for (let psn = 0; psn < psns; psn++) {
    for (let w = 0; w < fanIn; w++) {
      const buf = datagrams[w];
      buf.writeUInt32LE(psn, 12);
      buf.writeUInt32LE(psn % job.regionSize, 16);
      core.receive(buf, 1000 + w, "127.0.0.1", 0);
    }
  }
  const ns = (performance.now() - started) * 1e6;
  const packets = psns * fanIn;
  if (core.stats.aggregationsCompleted !== psns)
    throw new Error("pipeline bench: aggregations lost");
  return { nsPerPacket: ns / packets, packets };
}

interface Row {
  workers: number;
  shape: string;
  impl: Impl | "C reference";
  median: Sample;
  samples: Sample[];
}

await runCli(spec, async (o) => {
  const pipeline = pipelineOnly(4, 200_000);
  if (o.onlyPipeline) {
    process.stdout.write(`${pipeline.nsPerPacket.toFixed(1)}\n`);
    return EXIT_OK;
  }
  const pipelineLine = `switch pipeline alone (4 workers, 256 int32 per packet): ${pipeline.nsPerPacket.toFixed(0)} ns per packet in (${(1e9 / pipeline.nsPerPacket / 1e6).toFixed(2)} M packets/s)`;
  if (!o.json) process.stdout.write(`${pipelineLine}\n\n`);
  const shapes: Shape[] = [
    { name: "1 KiB, 1/datagram", elementsPerPacket: 256, window: o.window, packetsPerDatagram: 1 },
    {
      name: "1 KiB, 64/datagram",
      elementsPerPacket: 256,
      window: o.window,
      packetsPerDatagram: 64,
    },
    {
      name: "64 KiB, byte window",
      elementsPerPacket: 16_368,
      window: o.bigWindow,
      packetsPerDatagram: 64,
    },
  ];
  const samples = new Map<string, Sample[]>();
  const key = (workers: number, shape: string, impl: string) => `${workers}|${shape}|${impl}`;
  const add = (k: string, sample: Sample) => {
    const list = samples.get(k) ?? [];
    list.push(sample);
    samples.set(k, list);
  };
  // Repeat by repeat, every configuration in turn: load drifts hit all alike.
  for (let rep = 0; rep < o.repeat; rep++) {
    for (const workers of o.workers) {
      for (const shape of shapes) {
        for (const impl of o.only) {
          process.stderr.write(
            `bench: repeat ${rep + 1}/${o.repeat}, N=${workers}, ${shape.name}, ${impl}\n`,
          );
          const result = await oneRun(impl, workers, o.tensorBytes, shape);
          add(key(workers, shape.name, impl), sampleOf(result));
        }
        if (o.reference !== undefined) {
          const window = windowPackets(shape.window, shape.elementsPerPacket);
          const goodput = await referenceGoodput(
            o.reference,
            workers,
            shape.elementsPerPacket,
            window,
          );
          if (goodput !== null) {
            add(key(workers, shape.name, "C reference"), {
              goodputMBps: goodput,
              seconds: Number.NaN,
              switchPacketsPerSecond: Number.NaN,
              switchCpuUsPerPacket: Number.NaN,
              workerCpuUsPerPacket: Number.NaN,
              packetsPerDatagram: 1,
              retransmissions: Number.NaN,
              verified: true,
            });
          }
        }
      }
    }
  }
  const rows: Row[] = [];
  for (const workers of o.workers) {
    for (const shape of shapes) {
      for (const impl of [...o.only, "C reference" as const]) {
        const list = samples.get(key(workers, shape.name, impl));
        if (list !== undefined)
          rows.push({
            workers,
            shape: shape.name,
            impl,
            median: medianSample(list),
            samples: list,
          });
      }
    }
  }

  // The live page's cost to the data path: NetReduce at N = 4, 1 KiB x 64,
  // with its data polled twice a second (as an open page does) or not.
  const page: { closed: number[]; open: number[] } = { closed: [], open: [] };
  if (o.only.includes("netreduce")) {
    for (let rep = 0; rep < o.repeat; rep++) {
      for (const open of [false, true]) {
        process.stderr.write(
          `bench: repeat ${rep + 1}/${o.repeat}, live page ${open ? "open" : "closed"}\n`,
        );
        const result = await oneRun("netreduce", 4, o.tensorBytes, shapes[1], open);
        (open ? page.open : page.closed).push(result.jobs[0].goodputMBps);
      }
    }
  }

  // The 64 MiB all-reduce over 4 workers, both big shapes, next to MPI.
  const allreduce: Array<{ shape: string; seconds: number[]; median: number }> = [];
  let mpi: { tcpSeconds: number[]; sharedMemorySeconds: number[] } | null = null;
  if (o.allreduceBytes > 0) {
    const times = new Map<string, number[]>();
    for (let rep = 0; rep < o.repeat; rep++) {
      for (const shape of shapes.slice(1)) {
        process.stderr.write(
          `bench: repeat ${rep + 1}/${o.repeat}, ${o.allreduceBytes} B all-reduce, ${shape.name}\n`,
        );
        const result = await oneRun("netreduce", 4, o.allreduceBytes, shape);
        if (!result.verified) throw new Error(`the ${shape.name} all-reduce was not exact`);
        const list = times.get(shape.name) ?? [];
        list.push(result.jobs[0].seconds);
        times.set(shape.name, list);
      }
      if (o.reference !== undefined) {
        const m = await mpiAllreduceSeconds(o.reference, o.allreduceBytes, 4);
        if (m !== null) {
          mpi ??= { tcpSeconds: [], sharedMemorySeconds: [] };
          if (m.tcpSeconds !== null) mpi.tcpSeconds.push(m.tcpSeconds);
          if (m.sharedMemorySeconds !== null) mpi.sharedMemorySeconds.push(m.sharedMemorySeconds);
        }
      }
    }
    for (const [shape, seconds] of times)
      allreduce.push({ shape, seconds, median: median(seconds) });
  }

  const output = {
    when: new Date().toISOString(),
    options: o,
    pipeline,
    rows,
    allreduce: { bytes: o.allreduceBytes, workers: 4, runs: allreduce, mpi },
    livePage: {
      workers: 4,
      shape: shapes[1].name,
      closedMBps: page.closed,
      openMBps: page.open,
      ratio: median(page.open) / median(page.closed),
    },
  };
  await mkdir(o.results, { recursive: true });
  const file = join(o.results, `bench-${output.when.replace(/[:.]/g, "-")}.json`);
  await writeFile(file, `${JSON.stringify(output, null, 2)}\n`);
  if (o.json) {
    process.stdout.write(`${JSON.stringify(output)}\n`);
    return EXIT_OK;
  }
  process.stdout.write(renderTable(rows));
  process.stdout.write(
    "\nMedians of " +
      `${o.repeat} interleaved runs. pkt/dgram: packets per datagram the switch received. Switch CPU\n` +
      "per packet counts packets in and out, without start-up; worker CPU counts its sends and\n" +
      "results. vs floor: goodput / the floor relay's in the same shape; vs C: / the C reference's.\n",
  );
  if (allreduce.length > 0) {
    process.stdout.write(
      `\n${(o.allreduceBytes / 2 ** 20).toFixed(0)} MiB all-reduce, 4 workers, NetReduce:\n`,
    );
    for (const a of allreduce) {
      process.stdout.write(`  ${a.shape.padEnd(20)} ${a.median.toFixed(2)} s\n`);
    }
    if (mpi !== null) {
      const tcp = median(mpi.tcpSeconds);
      const best = Math.min(...allreduce.map((a) => a.median));
      process.stdout.write(
        `  MPI_Allreduce (TCP)   ${tcp.toFixed(2)} s; shared memory ${median(mpi.sharedMemorySeconds).toFixed(2)} s\n` +
          `  ina-emu / MPI (TCP):  ${(best / tcp).toFixed(1)}x\n`,
      );
    }
  }
  if (page.closed.length > 0) {
    process.stdout.write(
      `\nlive page (GET /ui/state twice a second), NetReduce, 4 workers, ${shapes[1].name}: ` +
        `${median(page.closed).toFixed(1)} MB/s/worker closed, ${median(page.open).toFixed(1)} open ` +
        `(${(median(page.open) / median(page.closed)).toFixed(3)}x)\n`,
    );
  }
  process.stdout.write(`\nresults: ${file}\n`);
  return EXIT_OK;
});

function renderTable(rows: Row[]): string {
  const header = [
    "N",
    "shape",
    "impl",
    "MB/s/worker",
    "switch pkt/s",
    "pkt/dgram",
    "switch us/pkt",
    "worker us/pkt",
    "retransmits",
    "vs floor",
    "vs C",
    "verified",
  ];
  const find = (r: Row, impl: string) =>
    rows.find((x) => x.workers === r.workers && x.shape === r.shape && x.impl === impl);
  const ratio = (r: Row, impl: string) => {
    const other = find(r, impl);
    return other === undefined || other === r
      ? ""
      : `${(r.median.goodputMBps / other.median.goodputMBps).toFixed(2)}x`;
  };
  const fixed = (v: number, digits: number) => (Number.isFinite(v) ? v.toFixed(digits) : "-");
  const table = [header];
  for (const r of rows) {
    const m = r.median;
    table.push([
      String(r.workers),
      r.shape,
      r.impl,
      fixed(m.goodputMBps, 1),
      fixed(m.switchPacketsPerSecond, 0),
      fixed(m.packetsPerDatagram, 1),
      fixed(m.switchCpuUsPerPacket, 2),
      fixed(m.workerCpuUsPerPacket, 2),
      fixed(m.retransmissions, 0),
      r.impl === "C reference" ? "" : ratio(r, "floor"),
      r.impl === "C reference" ? "" : ratio(r, "C reference"),
      r.impl === "C reference" ? "-" : m.verified ? "yes" : r.impl === "floor" ? "n/a" : "NO",
    ]);
  }
  const widths = header.map((_, i) => Math.max(...table.map((row) => row[i].length)));
  return `${table.map((row) => row.map((c, i) => (i < 3 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ")).join("\n")}\n`;
}
