#!/usr/bin/env node
/**
 * `npm run bench`: how fast the switch is, and how far from the floor.
 * 1. The switch pipeline alone, in process, no sockets: cost per packet.
 * 2. For N workers (default 2, 4, 8), 1 KiB payloads: the full system with real
 *    processes, against bench/floor-switch.ts (the least a Node process can do
 *    for the same workers), with switch packets/s and CPU per packet.
 * Numbers are reported, never asserted: the machine is shared and noisy.
 */
import { performance } from "node:perf_hooks";
import { z } from "zod";
import { encodeHeader } from "../proto/codec.js";
import { parseSwitchConfig } from "../proto/config.js";
import { ScenarioRunSchema } from "../proto/scenario.js";
import { byteSize } from "../proto/units.js";
import { emptyHeader, HEADER_BYTES, PacketType } from "../proto/wire.js";
import { EXIT_OK, runCli } from "../runtime/cli.js";
import { SwitchCore } from "../switch/core.js";
import { type RunResult, runScenarioRun } from "./run.js";

/** One lossless NetReduce job of `workers` through the real switch or the floor relay. */
function netReduceRun(workers: number, size: number, window: number, impl: "ina" | "floor") {
  const run = ScenarioRunSchema.parse({
    name: impl,
    aggregators: 2 * window,
    jobs: [{ mode: "netreduce", workers, size, window }],
  });
  return runScenarioRun(run, { seed: 1, timeoutMs: 300_000, switchImpl: impl });
}

const spec = {
  command: "npm run bench --",
  summary: "Measures the switch pipeline alone, then the whole system against the transport floor.",
  options: {
    workers: {
      type: "string",
      valueName: "LIST",
      description: "worker counts, comma-separated",
      defaultText: "2,4,8",
    },
    size: {
      type: "string",
      valueName: "BYTES",
      description: "gradient per worker",
      defaultText: "16MiB",
    },
    window: {
      type: "string",
      valueName: "W",
      description: "packets in flight per worker",
      defaultText: "128",
    },
    json: { type: "boolean", description: "print the results as JSON" },
  },
  schema: z.strictObject({
    workers: z
      .string()
      .regex(/^\d+(,\d+)*$/, "expected a list like 2,4,8")
      .transform((s) => s.split(",").map(Number))
      .refine((list) => list.every((n) => n >= 1 && n <= 32), "each count must be 1..32")
      .default([2, 4, 8]),
    size: byteSize.default(16 * 1024 * 1024),
    window: z.coerce.number().int().min(1).max(4096).default(128),
    json: z.boolean().default(false),
  }),
} as const;

/** Pushes contributions of `fanIn` workers through SwitchCore with a no-op transmit. */
function pipelineOnly(fanIn: number, psns: number): { nsPerPacket: number; packets: number } {
  const window = 128;
  const job = { id: 1, mode: "netreduce" as const, fanIn, offset: 0, size: 2 * window, window };
  const core = new SwitchCore(parseSwitchConfig({ aggregators: job.size, jobs: [job] }), {
    send() {},
  });
  // Pre-built datagrams: one per (worker, PSN slot); only the PSN field is rewritten.
  const datagrams: Buffer[] = [];
  const h = emptyHeader();
  for (let w = 0; w < fanIn; w++) {
    const buf = Buffer.alloc(HEADER_BYTES + 256 * 4);
    Object.assign(h, {
      type: PacketType.contribution,
      jobId: 1,
      workerId: w,
      fanIn,
      elementCount: 256,
      bitmap: 1 << w,
      scaleBits: 20,
    });
    encodeHeader(new DataView(buf.buffer, buf.byteOffset, buf.length), 0, h);
    datagrams.push(buf);
  }
  const started = performance.now();
  for (let psn = 0; psn < psns; psn++) {
    for (let w = 0; w < fanIn; w++) {
      const buf = datagrams[w];
      buf.writeUInt32LE(psn, 12);
      buf.writeUInt32LE(psn % job.size, 16);
      core.receive(buf, 1000 + w, "127.0.0.1", 0);
    }
  }
  const ns = (performance.now() - started) * 1e6;
  const packets = psns * fanIn;
  if (core.stats.aggregationsCompleted !== psns)
    throw new Error("pipeline bench: aggregations lost");
  return { nsPerPacket: ns / packets, packets };
}

await runCli(spec, async (o) => {
  const pipeline = pipelineOnly(4, 200_000);
  const pipelineLine = `switch pipeline alone (4 workers, 256 int32 per packet): ${pipeline.nsPerPacket.toFixed(0)} ns per packet in (${(1e9 / pipeline.nsPerPacket / 1e6).toFixed(2)} M packets/s)`;
  if (!o.json) process.stdout.write(`${pipelineLine}\n\n`);
  const rows: Array<{ workers: number; ina: RunResult; floor: RunResult }> = [];
  for (const workers of o.workers) {
    process.stderr.write(`bench: ${workers} workers ...\n`);
    const floor = await netReduceRun(workers, o.size, o.window, "floor");
    const ina = await netReduceRun(workers, o.size, o.window, "ina");
    rows.push({ workers, ina, floor });
  }
  if (o.json) {
    process.stdout.write(`${JSON.stringify({ pipeline, rows })}\n`);
    return EXIT_OK;
  }
  const header = [
    "N",
    "switch",
    "goodput/worker MB/s",
    "switch pkt/s",
    "switch CPU us/pkt",
    "worker CPU us/pkt",
    "vs floor",
    "verified",
  ];
  const table = [header];
  for (const { workers, ina, floor } of rows) {
    for (const r of [floor, ina]) {
      const sw = r.switch as {
        dataPathCpuSeconds?: number;
        rxPackets?: number;
        txPackets?: number;
      };
      const swPackets = Number(sw.rxPackets ?? 0) + Number(sw.txPackets ?? 0);
      const job = r.jobs[0];
      const workerCpu = job.perWorker.reduce((s, w) => s + w.cpuSeconds, 0) / job.workers;
      const perWorkerPackets = job.perWorker[0].packetsSent * 2;
      table.push([
        String(workers),
        r === ina ? "ina-switch" : "floor relay",
        job.goodputMBps.toFixed(1),
        String(Math.round(swPackets / job.seconds)),
        // Start-up CPU (about as much as a small run's data path) is left out.
        ((Number(sw.dataPathCpuSeconds ?? Number.NaN) * 1e6) / swPackets).toFixed(1),
        ((workerCpu * 1e6) / perWorkerPackets).toFixed(1),
        r === ina ? `${((100 * job.goodputMBps) / floor.jobs[0].goodputMBps).toFixed(0)}%` : "",
        job.verified ? "yes" : r === floor ? "n/a" : "NO",
      ]);
    }
  }
  const widths = header.map((_, i) => Math.max(...table.map((row) => row[i].length)));
  for (const row of table)
    process.stdout.write(`${row.map((c, i) => c.padStart(widths[i])).join("  ")}\n`);
  process.stdout.write(
    "\nswitch CPU per packet counts packets in and out, and includes startup; worker CPU counts its sends and receives.\n",
  );
  return EXIT_OK;
});
