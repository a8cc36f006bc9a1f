import { readFileSync } from "node:fs";
import { z } from "zod";
import { type CostInput, type ProcessingCost, ProcessingCostSchema } from "../proto/costs.js";
import { Field, HEADER_BYTES } from "../proto/wire.js";

/*
 * A host with a processing cost (proto/costs.ts) is a server with a FIFO
 * queue: its packets wait for the CPU, so a PS that takes 2 us a packet
 * completes at most 500 k packets a second, whatever its link.
 */

export const NO_COST: ProcessingCost = { perPacketNs: 0, perElementNs: 0 };

/**
 * `bench/calibration.json`: what this project's own cores cost per packet on
 * the machine `npm run calibrate` ran on (bench/calibrate.ts writes it).
 */
export const CalibrationSchema = z.strictObject({
  /** the hardware and runtime the costs stand for */
  machine: z.strictObject({ cpu: z.string(), cores: z.int(), node: z.string() }),
  measuredAt: z.string(),
  command: z.string(),
  /** PsCore.receive of one contribution */
  parameterServer: ProcessingCostSchema,
  /** WorkerCore: taking one result and sending the next contribution */
  worker: ProcessingCostSchema,
  /** SwitchCore.receive of one NetReduce contribution */
  switch: ProcessingCostSchema,
});
export type Calibration = z.infer<typeof CalibrationSchema>;

/** Where the shipped calibration lives: bench/ at the package's root (this file runs from dist/sim/). */
export const CALIBRATION_FILE = new URL("../../bench/calibration.json", import.meta.url);

let loaded: Calibration | null = null;

/**
 * The shipped calibration. Throws naming the file if it is missing or
 * malformed: `npm run calibrate` writes it again.
 */
export function calibration(): Calibration {
  if (loaded !== null) return loaded;
  let text: string;
  try {
    text = readFileSync(CALIBRATION_FILE, "utf8");
  } catch (e) {
    throw new Error(
      `${CALIBRATION_FILE.pathname}: cannot read the processing-cost calibration (${(e as Error).message}); npm run calibrate writes it`,
    );
  }
  const parsed = CalibrationSchema.safeParse(JSON.parse(text));
  if (!parsed.success) {
    throw new Error(
      `${CALIBRATION_FILE.pathname}: not a calibration: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
    );
  }
  loaded = parsed.data;
  return loaded;
}

export function resolveCost(
  input: CostInput,
  role: "parameterServer" | "worker" | "switch",
): ProcessingCost {
  if (input === "none") return NO_COST;
  if (input === "calibrated") return calibration()[role];
  return input;
}

/** The time (ns) one datagram of `bytes` (one packet) costs at `cost`. */
export function packetCostNs(cost: ProcessingCost, bytes: number): number {
  const elements = Math.max(0, bytes - HEADER_BYTES) / 4;
  return cost.perPacketNs + cost.perElementNs * elements;
}

/**
 * One host's CPU as a FIFO server: a packet that arrives while it is busy
 * waits. Packets are admitted in arrival order (the engine runs arrivals in
 * time order), so `admit` alone keeps the queue.
 */
export class HostCpu {
  /** when the CPU is free again (ns) */
  private busyUntil = 0;
  /** total time busy (ns): utilization = busy / run time */
  busyNs = 0;
  /** the longest a packet waited for the CPU (ns) */
  maxWaitNs = 0;
  /** packets handled */
  packets = 0;
  /** busy time by the packets' job id (ns), when asked for: a shared PS's share per job */
  readonly busyByJob: Float64Array | null;

  constructor(
    readonly cost: ProcessingCost,
    byJob = false,
  ) {
    this.busyByJob = byJob ? new Float64Array(0x10000) : null;
  }

  get free(): boolean {
    return this.cost.perPacketNs === 0 && this.cost.perElementNs === 0;
  }

  /** A packet `packet` arrives at `nowNs`: when its handling ends (ns). */
  admit(nowNs: number, packet: Buffer): number {
    const start = Math.max(nowNs, this.busyUntil);
    const service = packetCostNs(this.cost, packet.length);
    if (this.busyByJob !== null && packet.length >= HEADER_BYTES) {
      this.busyByJob[packet.readUInt16LE(Field.jobId)] += service;
    }
    if (start - nowNs > this.maxWaitNs) this.maxWaitNs = start - nowNs;
    this.busyUntil = start + service;
    this.busyNs += service;
    this.packets++;
    return this.busyUntil;
  }
}
