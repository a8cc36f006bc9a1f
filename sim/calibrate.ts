#!/usr/bin/env node
/**
 * `npm run calibrate`: what this project's own cores cost per packet on this
 * machine, written to bench/calibration.json for the simulator (sim/costs.ts):
 * the PS completing one contribution (PsCore.receive), the switch aggregating
 * one NetReduce contribution (SwitchCore.receive), a worker taking one result
 * and sending its next contribution (WorkerCore.receive). Each is timed around
 * the core's receive() in an in-process star with no sockets, for packets of
 * 64 to 4096 elements, and fitted as perPacketNs + perElementNs x elements
 * (least squares over the median of --rounds rounds, sizes interleaved).
 *   node dist/sim/calibrate.js [--rounds N] [--out FILE] [--dry-run]
 * Measure with nothing else busy (`uptime`): the file stands for this machine.
 */
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { parseSwitchConfig } from "../proto/config.js";
import { PsCore } from "../ps/core.js";
import { cliInt, EXIT_OK, runCli } from "../runtime/cli.js";
import { SwitchCore } from "../switch/core.js";
import { DEFAULT_RTO, WorkerCore } from "../worker/core.js";
import { makeGradient } from "../worker/workload.js";
import { CALIBRATION_FILE, type Calibration, CalibrationSchema } from "./costs.js";

const SWITCH_PORT = 1;
const PS_PORT = 2;
const HOST = "127.0.0.1";
const WORKERS = 4;
const PACKETS_PER_WORKER = 2048;
const SIZES = [64, 256, 1024, 4096];

type Role = "parameterServer" | "worker" | "switch";

/** One all-reduce of PACKETS_PER_WORKER packets of `elements` in `mode`: ns per receive() by role. */
function measure(mode: "netreduce" | "ps", elements: number): Record<Role, number> {
  const window = 64;
  const config = parseSwitchConfig({
    aggregators: 2 * window,
    elementsPerAggregator: elements,
    parameterServer: { host: HOST, port: PS_PORT },
    jobs: [
      mode === "netreduce"
        ? { id: 1, mode, fanIn: WORKERS, window, offset: 0, regionSize: 2 * window }
        : { id: 1, mode, fanIn: WORKERS, window },
    ],
  });
  // A FIFO of packets in flight; each core's output is copied, as a socket would.
  // The copy stands for the socket's and is not the core's: its time is left out.
  const queue: Array<{ to: number; bytes: Buffer; from: number }> = [];
  let sendNs = 0n;
  const enqueue = (to: number, packet: Buffer, from: number) => {
    const t0 = process.hrtime.bigint();
    queue.push({ to, bytes: Buffer.from(packet), from });
    sendNs += process.hrtime.bigint() - t0;
  };
  const send = (from: number) => (packet: Buffer, port: number) => enqueue(port, packet, from);
  const sw = new SwitchCore(config, { send: send(SWITCH_PORT) });
  const ps = new PsCore(config.jobs, elements, { send: send(PS_PORT) });
  ps.trustSwitch(SWITCH_PORT, HOST);
  const workers = Array.from(
    { length: WORKERS },
    (_, w) =>
      new WorkerCore(
        {
          ...DEFAULT_RTO,
          rtoInitialMs: 60_000,
          mode,
          jobId: 1,
          workerId: w,
          fanIn: WORKERS,
          regionOffset: 0,
          regionSize: 2 * window,
          window,
          elementsPerPacket: elements,
          scaleBits: 16,
        },
        { send: (packet) => enqueue(SWITCH_PORT, packet, 10 + w) },
      ),
  );
  const spent: Record<Role, bigint> = { parameterServer: 0n, worker: 0n, switch: 0n };
  const calls: Record<Role, number> = { parameterServer: 0, worker: 0, switch: 0 };
  const length = PACKETS_PER_WORKER * elements;
  workers.forEach((core, w) => {
    core.begin(makeGradient(length, 7, w), new Float32Array(length), 0);
  });
  for (let i = 0; i < queue.length; i++) {
    const { to, bytes, from } = queue[i];
    let role: Role;
    sendNs = 0n;
    const t0 = process.hrtime.bigint();
    if (to === SWITCH_PORT) {
      sw.receive(bytes, from, HOST, 0);
      role = "switch";
    } else if (to === PS_PORT) {
      ps.receive(bytes, SWITCH_PORT, HOST);
      role = "parameterServer";
    } else {
      workers[to - 10].receive(bytes, 0);
      role = "worker";
    }
    spent[role] += process.hrtime.bigint() - t0 - sendNs;
    calls[role]++;
    if (i > 1 << 16) {
      // Drop what was handled, so the queue does not grow with the run.
      queue.splice(0, i + 1);
      i = -1;
    }
  }
  if (!workers.every((w) => w.done && w.failure === null)) {
    throw new Error(`${mode} at ${elements} elements did not complete`);
  }
  const per = (role: Role) => (calls[role] === 0 ? Number.NaN : Number(spent[role]) / calls[role]);
  return { parameterServer: per("parameterServer"), worker: per("worker"), switch: per("switch") };
}

/**
 * Least squares of y = a + b x in relative error (weights 1 / y^2), so the
 * small packets' fixed cost counts as much as the large ones' per-element
 * cost; a and b at least 0.
 */
function fit(xs: number[], ys: number[]): { perPacketNs: number; perElementNs: number } {
  const w = ys.map((y) => 1 / (y * y));
  const sw = w.reduce((s, v) => s + v, 0);
  const mx = xs.reduce((s, x, i) => s + w[i] * x, 0) / sw;
  const my = ys.reduce((s, y, i) => s + w[i] * y, 0) / sw;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < xs.length; i++) {
    sxy += w[i] * (xs[i] - mx) * (ys[i] - my);
    sxx += w[i] * (xs[i] - mx) ** 2;
  }
  const b = Math.max(0, sxy / sxx);
  const a = Math.max(0, my - b * mx);
  return { perPacketNs: Math.round(a), perElementNs: Math.round(b * 1000) / 1000 };
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

const spec = {
  command: "npm run calibrate --",
  summary:
    "Measures the PS, switch and worker cores' cost per packet on this machine (each core's\n" +
    "receive() in an in-process star, no sockets) and writes bench/calibration.json, which\n" +
    "ina-sim reads for its processing costs. Measure with nothing else busy (uptime).",
  options: {
    rounds: {
      type: "string",
      valueName: "N",
      description: "rounds of every packet size; the median is fitted (1..100)",
      defaultText: "5",
    },
    out: {
      type: "string",
      valueName: "FILE",
      description: "write the calibration here",
      defaultText: "bench/calibration.json",
    },
    "dry-run": { type: "boolean", description: "print the calibration only, write no file" },
  },
  details: "Exit codes: 0 measured, 1 failed, 2 bad option.",
  schema: z.strictObject({
    rounds: cliInt(1, 100).default(5),
    out: z.string().min(1).optional(),
    dryRun: z.boolean().default(false),
  }),
} as const;

async function main(options: z.infer<typeof spec.schema>): Promise<number> {
  const rounds = options.rounds;
  measure("netreduce", 256); // warm up the JIT before anything counts
  measure("ps", 256);
  const samples = new Map<string, number[]>();
  for (let r = 0; r < rounds; r++) {
    // Sizes interleaved and alternately reversed: drift on a shared machine hits all alike.
    const order = r % 2 === 0 ? SIZES : [...SIZES].reverse();
    for (const e of order) {
      const nr = measure("netreduce", e);
      const ps = measure("ps", e);
      for (const [key, v] of [
        [`switch ${e}`, nr.switch],
        [`worker ${e}`, nr.worker],
        [`parameterServer ${e}`, ps.parameterServer],
      ] as const) {
        samples.set(key, [...(samples.get(key) ?? []), v]);
      }
    }
  }
  const costOf = (role: Role) =>
    fit(
      SIZES,
      SIZES.map((e) => median(samples.get(`${role} ${e}`) ?? [])),
    );
  const result: Calibration = CalibrationSchema.parse({
    machine: { cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length, node: process.version },
    measuredAt: new Date().toISOString().slice(0, 10),
    command: `npm run calibrate -- --rounds ${rounds}`,
    parameterServer: costOf("parameterServer"),
    worker: costOf("worker"),
    switch: costOf("switch"),
  });
  process.stdout.write("ns per receive(), median of rounds:\n");
  process.stdout.write(`  elements ${SIZES.map((e) => String(e).padStart(8)).join("")}\n`);
  for (const role of ["parameterServer", "switch", "worker"] as const) {
    const row = SIZES.map((e) =>
      median(samples.get(`${role} ${e}`) ?? [])
        .toFixed(0)
        .padStart(8),
    );
    process.stdout.write(`  ${role.padEnd(16)}${row.join("")}\n`);
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  if (!options.dryRun) {
    const out = options.out ?? fileURLToPath(CALIBRATION_FILE);
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(`wrote ${out}\n`);
  }
  return EXIT_OK;
}

await runCli(spec, main);
