#!/usr/bin/env node
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { z } from "zod";
import {
  byteSize,
  cliInt,
  cpuSeconds,
  EXIT_FAILED,
  EXIT_OK,
  emitRecord,
  parseHostPort,
  runCli,
  UsageError,
} from "../proto/cli.js";
import { JOB_MODES } from "../proto/config.js";
import { dropsByName } from "../proto/drops.js";
import { MAX_ELEMENTS_PER_PACKET, MAX_FAN_IN, MAX_SCALE_BITS } from "../proto/wire.js";
import { AllReduceOverflowError, Worker } from "./worker.js";
import { makeGradient, type Verification, verifyAllReduce } from "./workload.js";

const spec = {
  command: "ina-worker",
  summary:
    "Runs one worker of a NetReduce, ATP or PS job: all-reduces a seeded synthetic gradient\n" +
    "through the switch, checks the sum against a float64 reference of every worker's input,\n" +
    "and prints one JSON\n" +
    'record per line: "ready" (socket bound), "progress" (every --progress-ms) and "result".',
  details:
    "Every worker of a job must be given the same --mode, --job, --fan-in, --offset, --size,\n" +
    "--window, --size-bytes, --elements-per-packet, --scale-bits and --seed. In atp mode --offset\n" +
    "and --size are the job's slice of the shared pool (any size); in ps mode they are unused.\n" +
    "Exit codes: 0 verified, 1 failed, 2 bad option.",
  options: {
    switch: {
      type: "string",
      valueName: "HOST:PORT",
      description: "the switch's data address (required)",
    },
    mode: {
      type: "string",
      valueName: "MODE",
      description: "netreduce, atp or ps",
      defaultText: "netreduce",
    },
    job: { type: "string", valueName: "ID", description: "job id", defaultText: "1" },
    worker: {
      type: "string",
      valueName: "ID",
      description: "this worker's id, 0 .. fan-in - 1 (required)",
    },
    "fan-in": { type: "string", valueName: "N", description: "workers in the job (required)" },
    offset: {
      type: "string",
      valueName: "N",
      description: "first aggregator of the job's region",
      defaultText: "0",
    },
    size: {
      type: "string",
      valueName: "N",
      description: "aggregators in the job's region or pool slice",
      defaultText: "2 x window",
    },
    window: {
      type: "string",
      valueName: "N",
      description: "packets in flight",
      defaultText: "128",
    },
    "elements-per-packet": {
      type: "string",
      valueName: "K",
      description: "int32 elements per packet",
      defaultText: "256",
    },
    "scale-bits": {
      type: "string",
      valueName: "S",
      description: "fixed point: value x 2^S, rounded",
      defaultText: "20",
    },
    "size-bytes": {
      type: "string",
      valueName: "BYTES",
      description: "gradient size (float32), e.g. 32MiB",
      defaultText: "32MiB",
    },
    seed: {
      type: "string",
      valueName: "N",
      description: "seed of the synthetic gradients",
      defaultText: "1",
    },
    iterations: {
      type: "string",
      valueName: "N",
      description: "all-reduces to run back to back",
      defaultText: "1",
    },
    "wait-go": {
      type: "boolean",
      description: 'after "ready", wait for a line "go" on stdin before starting',
    },
    "no-verify": { type: "boolean", description: "skip the check against the reference sum" },
    "rto-floor-ms": {
      type: "string",
      valueName: "MS",
      description: "lowest retransmission timeout",
      defaultText: "50",
    },
    "progress-ms": {
      type: "string",
      valueName: "MS",
      description: "progress record interval; 0 = none",
      defaultText: "500",
    },
  },
  schema: z
    .strictObject({
      switch: z.string({ error: "required: the switch's HOST:PORT" }),
      mode: z.enum(JOB_MODES).default("netreduce"),
      job: cliInt(0, 0xffff).default(1),
      worker: cliInt(0, MAX_FAN_IN - 1),
      fanIn: cliInt(1, MAX_FAN_IN),
      offset: cliInt(0, 1 << 20).default(0),
      size: cliInt(1, 1 << 20).optional(),
      window: cliInt(1, 1 << 16).default(128),
      elementsPerPacket: cliInt(1, MAX_ELEMENTS_PER_PACKET).default(256),
      scaleBits: cliInt(0, MAX_SCALE_BITS).default(20),
      sizeBytes: byteSize.default(32 * 1024 * 1024),
      seed: cliInt(0, 0xffffffff).default(1),
      iterations: cliInt(1, 1_000_000).default(1),
      waitGo: z.boolean().default(false),
      noVerify: z.boolean().default(false),
      rtoFloorMs: z.coerce.number().min(1).max(60_000).default(50),
      progressMs: cliInt(0, 3_600_000).default(500),
    })
    .refine((o) => o.worker < o.fanIn, { path: ["worker"], message: "must be below --fan-in" })
    .refine((o) => o.sizeBytes % 4 === 0 && o.sizeBytes > 0, {
      path: ["sizeBytes"],
      message: "must be a positive multiple of 4 (float32 elements)",
    }),
} as const;

function waitForGo(): Promise<void> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: process.stdin });
    lines.on("line", (line) => {
      if (line.trim() === "go") {
        resolve();
        lines.close();
      }
    });
    lines.on("close", () => reject(new Error('stdin closed before "go"')));
  });
}

await runCli(spec, async (o) => {
  const target = parseHostPort(o.switch, "--switch");
  const regionSize = o.size ?? 2 * o.window;
  if (o.mode === "netreduce" && regionSize < 2 * o.window) {
    throw new UsageError(
      `--size: a NetReduce region needs at least 2 x window = ${2 * o.window} aggregators`,
    );
  }
  const elements = o.sizeBytes / 4;
  const input = makeGradient(elements, o.seed, o.worker);
  const output = new Float32Array(elements);
  const worker = await Worker.connect({
    mode: o.mode,
    jobId: o.job,
    workerId: o.worker,
    fanIn: o.fanIn,
    regionOffset: o.offset,
    regionSize,
    window: o.window,
    elementsPerPacket: o.elementsPerPacket,
    scaleBits: o.scaleBits,
    rtoFloorMs: o.rtoFloorMs,
    switchHost: target.host,
    switchPort: target.port,
  });
  emitRecord({ event: "ready", pid: process.pid, workerId: o.worker, port: worker.address().port });
  if (o.waitGo) await waitForGo();

  const core = worker.core;
  const progress =
    o.progressMs > 0
      ? setInterval(() => {
          emitRecord({
            event: "progress",
            workerId: o.worker,
            iteration: iteration,
            completedPackets: core.completedPackets,
            totalPackets: core.totalPackets,
          });
        }, o.progressMs)
      : null;
  let iteration = 0;
  let overflowed = false;
  const started = performance.now();
  const cpuBefore = cpuSeconds();
  const iterationSeconds: number[] = [];
  for (; iteration < o.iterations; iteration++) {
    const t = performance.now();
    try {
      await worker.allreduce(input, output);
    } catch (error) {
      if (!(error instanceof AllReduceOverflowError)) throw error;
      overflowed = true;
    }
    iterationSeconds.push((performance.now() - t) / 1000);
  }
  const seconds = (performance.now() - started) / 1000;
  const allReduceCpuSeconds = cpuSeconds() - cpuBefore;
  if (progress !== null) clearInterval(progress);
  await worker.close();

  // The last iteration's output is checked; every iteration sums the same inputs.
  const check: Verification | null = o.noVerify
    ? null
    : verifyAllReduce(output, o.seed, o.fanIn, o.scaleBits);
  const s = core.stats;
  const verified = check?.verified === true && !overflowed;
  emitRecord({
    event: "result",
    workerId: o.worker,
    bytes: o.sizeBytes * o.iterations,
    seconds,
    iterationSeconds,
    goodputMBps: (o.sizeBytes * o.iterations) / 1e6 / seconds,
    cpuSeconds: allReduceCpuSeconds,
    packetsSent: s.packetsSent,
    retransmissions: s.retransmissions,
    timeouts: s.timeouts,
    resultsReceived: s.resultsReceived,
    duplicateResults: s.duplicateResults,
    overflowedResults: s.overflowedResults,
    saturatedValues: s.saturatedValues,
    srttMs: s.srttMs,
    drops: dropsByName(s.drops),
    verification: check,
    verified,
  });
  return check === null || verified ? EXIT_OK : EXIT_FAILED;
});
