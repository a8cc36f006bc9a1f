import { z } from "zod";
import {
  ATP_POOLS,
  COLLECTIVES,
  CONGESTION_CONTROLS,
  deadPeerSchema,
  JOB_MODES,
  MAX_JOB_PARAMETER_SERVERS,
  POLICIES,
  renamedFields,
  windowInputSchema,
  windowPackets,
  windowSchema,
} from "./config.js";
import { HostCostsSchema } from "./costs.js";
import { LinksSchema } from "./links.js";
import { float32Bytes, tensorBytesSchema } from "./units.js";
import { MAX_ELEMENTS_PER_PACKET, MAX_FAN_IN, MAX_SCALE_BITS } from "./wire.js";

/**
 * An experiment scenario (JSON): one or more runs, each a fresh switch (and
 * PS when a job needs one) with jobs that start at given times and share it.
 * Runs execute one after another, so a scenario can compare modes on the same
 * workload (one run per mode) or sweep a parameter such as the ATP pool size.
 */

const probability = z.number().min(0).max(1);

/** One layer of a model: its gradient's bytes and its backward pass's time. */
export const LayerSchema = z.strictObject({
  bytes: float32Bytes,
  backwardMs: z.number().min(0).max(3_600_000),
});
export type Layer = z.infer<typeof LayerSchema>;

/**
 * A layer trace as CSV: one line per layer, `bytes,backwardMs` (bytes as
 * 4194304 or "4MiB"), in backward order; blank lines, lines starting with
 * `#`, and a header line naming the columns are skipped. Throws naming the
 * line of anything else.
 */
export function parseLayerTrace(text: string): Layer[] {
  const layers: Layer[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || /^bytes\s*,/i.test(line)) return;
    const [bytes, backwardMs, extra] = line.split(",").map((c) => c.trim());
    const parsed = LayerSchema.safeParse({ bytes, backwardMs: Number(backwardMs) });
    if (extra !== undefined || backwardMs === undefined || !parsed.success) {
      throw new Error(`line ${i + 1}: expected "bytes,backwardMs" (e.g. 4MiB,1.5), got "${line}"`);
    }
    layers.push(parsed.data);
  });
  if (layers.length === 0) throw new Error("no layers: expected lines of bytes,backwardMs");
  return layers;
}

const scenarioJob = z
  .strictObject({
    /** shown in tables; defaults to "<mode>-<id>" */
    name: z.string().min(1).max(40).optional(),
    /** job id on the wire; defaults to the job's position + 1 */
    id: z.int().min(0).max(0xffff).optional(),
    mode: z.enum(JOB_MODES),
    workers: z.int().min(1).max(MAX_FAN_IN),
    /** gradient bytes per worker (float32), e.g. "16MiB" or 4194304 (formerly `size`) */
    tensorBytes: tensorBytesSchema.default(16 * 1024 * 1024),
    iterations: z.int().min(1).max(10_000).default(1),
    /** when the job's workers start, after the run's first job (ms) */
    startMs: z.number().min(0).max(3_600_000).default(0),
    /** computation before each all-reduce (ms): a worker's backward pass */
    computeMs: z.number().min(0).max(3_600_000).default(0),
    /** packets in flight per worker (128), or bytes in flight ("512KiB") */
    window: windowInputSchema.default({ packets: 128 }),
    elementsPerPacket: z.int().min(1).max(MAX_ELEMENTS_PER_PACKET).default(256),
    scaleBits: z.int().min(0).max(MAX_SCALE_BITS).default(20),
    /**
     * NetReduce: the job's region (default: the next 2 x window aggregators).
     * ATP: the job's slice of the pool (default: every aggregator no NetReduce
     * job holds, shared by all ATP jobs). PS: unused.
     */
    offset: z.int().min(0).optional(),
    regionSize: z.int().min(1).optional(),
    /** how the workers' windows react to ECN-marked results (with links): none, aimd, dctcp */
    congestionControl: z.enum(CONGESTION_CONTROLS).default("none"),
    /**
     * ring jobs: the collective the workers run (allReduce, reduceScatter,
     * allGather, broadcast, reduce, allToAll; `tensorBytes` is the whole tensor) and
     * the root of broadcast and reduce
     */
    operation: z.enum(COLLECTIVES).default("allReduce"),
    root: z
      .int()
      .min(0)
      .max(MAX_FAN_IN - 1)
      .default(0),
    /** seed of the job's gradients; defaults to the scenario's seed + id */
    seed: z.int().min(0).max(0xffffffff).optional(),
    /**
     * the switch fails the job once a peer it waits for has been silent this
     * long (s; 0: never); default: the switch's, 60 (README.md, "Dead peers")
     */
    deadPeerS: deadPeerSchema.optional(),
    /**
     * the simulator's per-layer compute model: each iteration's backward pass
     * produces these layers' gradients in order, each after its backwardMs,
     * and each is all-reduced as soon as it is ready and the one before it is
     * done (SwitchML's dnn_benchmark). Replaces `tensorBytes`. ina-sim also reads it
     * from a CSV file named by `layerTrace` (parseLayerTrace)
     */
    layers: z.array(LayerSchema).min(1).max(10_000).optional(),
    /**
     * ATP and PS jobs: how many parameter servers of its own the job has,
     * each a host with its own link and CPU (ATP's deployment; PSN p goes to
     * server p % n); 0: the run's one shared PS
     */
    parameterServers: z.int().min(0).max(MAX_JOB_PARAMETER_SERVERS).default(0),
  })
  .superRefine((job, ctx) => {
    if (job.parameterServers > 0 && job.mode !== "atp" && job.mode !== "ps") {
      ctx.addIssue({
        code: "custom",
        path: ["parameterServers"],
        message: `only ATP and PS jobs have parameter servers; this job is ${job.mode}`,
      });
    }
    if (job.mode !== "ring" && job.operation !== "allReduce") {
      ctx.addIssue({
        code: "custom",
        path: ["operation"],
        message: `only ring jobs run other collectives than allReduce; this job is ${job.mode}`,
      });
    }
    if (job.root >= job.workers) {
      ctx.addIssue({
        code: "custom",
        path: ["root"],
        message: `the root must be one of the ${job.workers} workers (0..${job.workers - 1})`,
      });
    }
    if (
      job.mode === "ring" &&
      job.operation === "allToAll" &&
      (job.tensorBytes / 4) % job.workers !== 0
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["tensorBytes"],
        message: `allToAll cuts the tensor into ${job.workers} equal chunks; ${job.tensorBytes / 4} elements do not`,
      });
    }
  })
  .transform((job) => ({ ...job, window: windowPackets(job.window, job.elementsPerPacket) }));
/** A job of a run; `size` is the old name of `tensorBytes`. */
export const ScenarioJobSchema = renamedFields({ size: "tensorBytes" }, scenarioJob);
export type ScenarioJob = z.infer<typeof ScenarioJobSchema>;

/** What a run may sweep: its own fields and its jobs' (every job of the run takes the value). */
export const SWEEP_KEYS = [
  "workers",
  "tensorBytes",
  "aggregators",
  "window",
  "elementsPerPacket",
  "loss",
  "packetsPerDatagram",
  "computeMs",
  "iterations",
] as const;
export type SweepKey = (typeof SWEEP_KEYS)[number];

const sweepValues = <T extends z.ZodType>(one: T) => z.array(one).min(1).max(64);

/**
 * A run's parameter study: every combination of these values (a cartesian
 * product; keys in this order, each key's values as listed) is a point, run
 * `repeat` times.
 */
const sweep = z.strictObject({
  workers: sweepValues(z.int().min(1).max(MAX_FAN_IN)).optional(),
  tensorBytes: sweepValues(tensorBytesSchema).optional(),
  aggregators: sweepValues(
    z
      .int()
      .min(1)
      .max(1 << 20),
  ).optional(),
  window: sweepValues(
    z
      .int()
      .min(1)
      .max(1 << 16),
  ).optional(),
  elementsPerPacket: sweepValues(z.int().min(1).max(MAX_ELEMENTS_PER_PACKET)).optional(),
  loss: sweepValues(probability).optional(),
  packetsPerDatagram: sweepValues(z.int().min(1).max(4096)).optional(),
  computeMs: sweepValues(z.number().min(0).max(3_600_000)).optional(),
  iterations: sweepValues(z.int().min(1).max(10_000)).optional(),
});
/** `size` is the old name of `tensorBytes`. */
export const SweepSchema = renamedFields({ size: "tensorBytes" }, sweep);

export const ScenarioRunSchema = z.strictObject({
  name: z.string().min(1).max(40),
  /** a parameter study: each point of the product is a run (experiment/sweep.ts) */
  sweep: SweepSchema.optional(),
  /** repetitions of every point, each with its own derived seed */
  repeat: z.int().min(1).max(100).default(1),
  /** iterations at the start of each job left out of the per-iteration statistics */
  warmup: z.int().min(0).max(10_000).default(0),
  /** aggregators in the switch */
  aggregators: z
    .int()
    .min(1)
    .max(1 << 20)
    .default(512),
  /** fault rates at the switch, each direction */
  faults: z
    .strictObject({
      loss: probability.default(0),
      duplicate: probability.default(0),
      reorder: probability.default(0),
    })
    .refine((f) => f.loss + f.duplicate + f.reorder <= 1, {
      message: "loss + duplicate + reorder must not exceed 1",
    })
    .default({ loss: 0, duplicate: 0, reorder: 0 }),
  /** emulated links between every host and the switch (proto/links.ts); absent: none */
  links: LinksSchema.optional(),
  /**
   * the simulator's processing costs per packet (proto/costs.ts): a PS is a
   * CPU by default, workers and the switch cost nothing; real processes pay
   * their own
   */
  costs: HostCostsSchema.default({
    parameterServer: "calibrated",
    worker: "none",
    switch: "none",
  }),
  /** most packets per datagram at every sender (1: no coalescing); absent: each process's default */
  packetsPerDatagram: z.int().min(1).max(4096).optional(),
  /**
   * how the run's ATP jobs share their pool (proto/config.ts ATP_POOLS):
   * fairShare (each capped at its share), firstCome (ATP's own: no quota, a
   * collision goes to the PS) or esa (firstCome plus ESA's preemption by
   * priority, the job with fewer bytes left first)
   */
  atpPool: z.enum(ATP_POOLS).default("fairShare"),
  jobs: z
    .array(ScenarioJobSchema)
    .min(1)
    .max(16)
    .superRefine((jobs, ctx) => {
      const ids = jobs.map((job, i) => job.id ?? i + 1);
      ids.forEach((id, i) => {
        const first = ids.indexOf(id);
        if (first !== i) {
          ctx.addIssue({
            code: "custom",
            path: [i, "id"],
            message: `job id ${id} is already used by jobs[${first}]`,
          });
        }
      });
    }),
});
export type ScenarioRun = z.infer<typeof ScenarioRunSchema>;

/** The fidelity experiments: a scenario may ask for its runs' shape next to the model's (experiment/shapes.ts). */
export const SHAPES = ["ps-vs-ina", "window-knee", "incast-ecn", "scale"] as const;

export const ScenarioSchema = z.strictObject({
  name: z.string().min(1).max(60),
  description: z.string().optional(),
  shape: z.enum(SHAPES).optional(),
  seed: z.int().min(0).max(0xffffffff).default(1),
  runs: z.array(ScenarioRunSchema).min(1),
});
export type Scenario = z.infer<typeof ScenarioSchema>;

/**
 * A scheduling scenario: jobs arrive over time at one switch and get their
 * regions from its memory manager through the control plane. The same
 * arrivals run once per policy, so the policies can be compared: waiting
 * time, JCT, deadlines met.
 */
const scheduleJob = z
  .strictObject({
    name: z.string().min(1).max(40),
    class: z.enum(["md", "be"]),
    /** MD jobs: seconds after arrival */
    deadlineS: z.number().positive().max(86_400).optional(),
    mode: z.enum(["netreduce", "atp"]).default("netreduce"),
    workers: z.int().min(1).max(MAX_FAN_IN),
    /** model (gradient) bytes per worker, all-reduced once per epoch (formerly `size`) */
    tensorBytes: tensorBytesSchema,
    epochs: z.int().min(1).max(10_000).default(1),
    computeMs: z.number().min(0).max(3_600_000).default(0),
    /** when the job is submitted, after the run starts */
    arriveMs: z.number().min(0).max(3_600_000).default(0),
    window: windowSchema.default(64),
    /** the demand: this many aggregators, or Throughput x RTT */
    aggregators: z
      .int()
      .min(1)
      .max(1 << 20)
      .optional(),
    throughputMBps: z.number().positive().default(10),
    rttMs: z.number().positive().default(1),
  })
  .refine((job) => job.class !== "md" || job.deadlineS !== undefined, {
    path: ["deadlineS"],
    message: "an MD job needs a deadline",
  });
/** A job of a scheduling scenario; `size` is the old name of `tensorBytes`. */
export const ScheduleJobSchema = renamedFields({ size: "tensorBytes" }, scheduleJob);
export type ScheduleJob = z.infer<typeof ScheduleJobSchema>;

export const ScheduleScenarioSchema = z.strictObject({
  name: z.string().min(1).max(60),
  description: z.string().optional(),
  seed: z.int().min(0).max(0xffffffff).default(1),
  policies: z.array(z.enum(POLICIES)).min(1).default(["edf", "fcfs", "static"]),
  aggregators: z
    .int()
    .min(1)
    .max(1 << 20)
    .default(256),
  /** `static`: equal partitions */
  partitions: z.int().min(1).max(1024).default(2),
  /** runs of every policy, each with its own derived seed (statistics over them) */
  repeat: z.int().min(1).max(100).default(1),
  /** emulated links between every host and the switch (proto/links.ts); absent: none */
  links: LinksSchema.optional(),
  /** the simulator's processing costs per packet, as a run's (proto/costs.ts) */
  costs: HostCostsSchema.default({
    parameterServer: "calibrated",
    worker: "none",
    switch: "none",
  }),
  // 64: the simulator runs arrival traces of tens of jobs; real processes can too, slowly.
  jobs: z.array(ScheduleJobSchema).min(1).max(64),
});
export type ScheduleScenario = z.infer<typeof ScheduleScenarioSchema>;
