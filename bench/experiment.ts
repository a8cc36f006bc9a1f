#!/usr/bin/env node
import { z } from "zod";
import { byteSize, cliInt, cliProbability, EXIT_FAILED, EXIT_OK, runCli } from "../proto/cli.js";
import { MAX_ELEMENTS_PER_PACKET, MAX_FAN_IN, MAX_SCALE_BITS } from "../proto/wire.js";
import { DEFAULT_EXPERIMENT as D, type ExperimentResult, runExperiment } from "./run.js";

const spec = {
  command: "ina-experiment",
  summary:
    "Runs the default experiment: a switch and N workers as separate processes on 127.0.0.1\n" +
    "all-reduce a seeded random gradient with NetReduce aggregation; every worker's output is\n" +
    "checked against a float64 reference sum and, bit for bit, against the exact fixed-point sum.",
  details:
    "Exit codes: 0 every worker verified, 1 a worker failed verification or the run failed,\n" +
    "2 bad option. Progress goes to stderr for runs longer than 2 s.",
  options: {
    workers: {
      type: "string",
      valueName: "N",
      description: `worker processes (1..${MAX_FAN_IN})`,
      defaultText: String(D.workers),
    },
    size: {
      type: "string",
      valueName: "BYTES",
      description: "gradient per worker, e.g. 32MiB",
      defaultText: "32MiB",
    },
    "elements-per-packet": {
      type: "string",
      valueName: "K",
      description: "int32 elements per packet",
      defaultText: String(D.elementsPerPacket),
    },
    window: {
      type: "string",
      valueName: "W",
      description: "packets in flight per worker",
      defaultText: String(D.window),
    },
    "region-size": {
      type: "string",
      valueName: "N",
      description: "aggregators of the job (>= 2 x window)",
      defaultText: "2 x window",
    },
    "scale-bits": {
      type: "string",
      valueName: "S",
      description: "fixed point: value x 2^S",
      defaultText: String(D.scaleBits),
    },
    loss: {
      type: "string",
      valueName: "P",
      description: "drop probability, each direction at the switch",
      defaultText: "0",
    },
    duplicate: {
      type: "string",
      valueName: "P",
      description: "duplication probability, each direction",
      defaultText: "0",
    },
    reorder: {
      type: "string",
      valueName: "P",
      description: "reorder probability, each direction",
      defaultText: "0",
    },
    seed: {
      type: "string",
      valueName: "N",
      description: "seed of gradients and faults",
      defaultText: String(D.seed),
    },
    iterations: {
      type: "string",
      valueName: "N",
      description: "all-reduces per worker, back to back",
      defaultText: "1",
    },
    "timeout-s": {
      type: "string",
      valueName: "S",
      description: "give up after this long",
      defaultText: "300",
    },
    json: {
      type: "boolean",
      description: "print the result as one JSON object instead of a table",
    },
  },
  schema: z
    .strictObject({
      workers: cliInt(1, MAX_FAN_IN).default(D.workers),
      size: byteSize.default(D.sizeBytes),
      elementsPerPacket: cliInt(1, MAX_ELEMENTS_PER_PACKET).default(D.elementsPerPacket),
      window: cliInt(1, 1 << 16).default(D.window),
      regionSize: cliInt(1, 1 << 20).optional(),
      scaleBits: cliInt(0, MAX_SCALE_BITS).default(D.scaleBits),
      loss: cliProbability.default(0),
      duplicate: cliProbability.default(0),
      reorder: cliProbability.default(0),
      seed: cliInt(0, 0xffffffff).default(D.seed),
      iterations: cliInt(1, 1_000_000).default(1),
      timeoutS: z.coerce.number().positive().max(86_400).default(300),
      json: z.boolean().default(false),
    })
    .refine((o) => o.size > 0 && o.size % 4 === 0, {
      path: ["size"],
      message: "must be a positive multiple of 4 bytes",
    })
    .refine((o) => o.regionSize === undefined || o.regionSize >= 2 * o.window, {
      path: ["regionSize"],
      message: "a NetReduce region needs at least 2 x window aggregators",
    })
    .refine((o) => o.loss + o.duplicate + o.reorder <= 1, {
      path: ["loss"],
      message: "loss + duplicate + reorder must not exceed 1",
    }),
} as const;

function formatTable(r: ExperimentResult): string {
  const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  const rows: Array<[string, string]> = [
    ["mode", r.mode],
    ["workers", String(r.workers)],
    ["bytes per worker", `${mb(r.bytesPerWorker)} x ${r.iterations}`],
    ["elements / packet, window", `${r.elementsPerPacket}, ${r.window}`],
    [
      "faults (each direction)",
      `loss ${r.faults.drop}, duplicate ${r.faults.duplicate}, reorder ${r.faults.reorder}`,
    ],
    ["seconds", r.seconds.toFixed(3)],
    ["goodput per worker", `${r.goodputMBps.toFixed(1)} MB/s`],
    ["switch packets (in + out)", `${r.switchPackets} (${Math.round(r.switchPacketsPerSecond)}/s)`],
    ["retransmissions", String(r.retransmissions)],
    ["duplicates dropped", String(r.duplicatesDropped)],
    ["max abs error", r.maxAbsError.toExponential(3)],
    ["verified", r.verified ? "yes" : "NO"],
  ];
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  const lines = rows.map(([k, v]) => `${k.padEnd(width)}${v}`);
  const perWorker = r.perWorker.map(
    (w) =>
      `  worker ${w.workerId}: ${w.seconds.toFixed(3)} s, ${w.goodputMBps.toFixed(1)} MB/s, ` +
      `${w.packetsSent} packets, ${w.retransmissions} retransmissions, ` +
      `${w.notBitExact} not bit-exact, ${w.outOfBound} out of bound, verified ${w.verified ? "yes" : "NO"}`,
  );
  return `${lines.join("\n")}\n${perWorker.join("\n")}\n`;
}

await runCli(spec, async (o) => {
  const started = Date.now();
  let lastPrinted = 0;
  process.stderr.write(`ina-experiment: ${o.workers} workers x ${o.size} bytes, seed ${o.seed}\n`);
  const result = await runExperiment({
    workers: o.workers,
    sizeBytes: o.size,
    elementsPerPacket: o.elementsPerPacket,
    window: o.window,
    regionSize: o.regionSize,
    scaleBits: o.scaleBits,
    drop: o.loss,
    duplicate: o.duplicate,
    reorder: o.reorder,
    seed: o.seed,
    iterations: o.iterations,
    timeoutMs: o.timeoutS * 1000,
    switchImpl: "ina",
    onProgress: (fraction) => {
      const elapsed = Date.now() - started;
      if (elapsed > 2000 && elapsed - lastPrinted >= 1000) {
        lastPrinted = elapsed;
        process.stderr.write(
          `  all-reduce ${(fraction * 100).toFixed(0)}% after ${(elapsed / 1000).toFixed(1)} s\n`,
        );
      }
    },
  });
  process.stdout.write(o.json ? `${JSON.stringify(result)}\n` : formatTable(result));
  return result.verified ? EXIT_OK : EXIT_FAILED;
});
