import { z } from "zod";
import { float32Bytes, parseOrUsage, UsageError } from "../proto/cli.js";
import { JOB_MODES, type JobConfig } from "../proto/config.js";
import { MAX_ELEMENTS_PER_PACKET, MAX_FAN_IN, MAX_SCALE_BITS } from "../proto/wire.js";

/**
 * An experiment scenario (JSON): one or more runs, each a fresh switch (and
 * PS when a job needs one) with jobs that start at given times and share it.
 * Runs execute one after another, so a scenario can compare modes on the same
 * workload (one run per mode) or sweep a parameter such as the ATP pool size.
 */

const probability = z.number().min(0).max(1);

export const ScenarioJobSchema = z.strictObject({
  /** shown in tables; defaults to "<mode>-<id>" */
  name: z.string().min(1).max(40).optional(),
  /** job id on the wire; defaults to the job's position + 1 */
  id: z.int().min(0).max(0xffff).optional(),
  mode: z.enum(JOB_MODES),
  workers: z.int().min(1).max(MAX_FAN_IN),
  /** gradient bytes per worker (float32), e.g. "16MiB" or 4194304 */
  size: float32Bytes.default(16 * 1024 * 1024),
  iterations: z.int().min(1).max(10_000).default(1),
  /** when the job's workers start, after the run's first job (ms) */
  startMs: z.number().min(0).max(3_600_000).default(0),
  window: z
    .int()
    .min(1)
    .max(1 << 16)
    .default(128),
  elementsPerPacket: z.int().min(1).max(MAX_ELEMENTS_PER_PACKET).default(256),
  scaleBits: z.int().min(0).max(MAX_SCALE_BITS).default(20),
  /**
   * NetReduce: the job's region (default: the next 2 x window aggregators).
   * ATP: the job's slice of the pool (default: every aggregator no NetReduce
   * job holds, shared by all ATP jobs). PS: unused.
   */
  offset: z.int().min(0).optional(),
  regionSize: z.int().min(1).optional(),
  /** seed of the job's gradients; defaults to the scenario's seed + id */
  seed: z.int().min(0).max(0xffffffff).optional(),
});
export type ScenarioJob = z.infer<typeof ScenarioJobSchema>;

export const ScenarioRunSchema = z.strictObject({
  name: z.string().min(1).max(40),
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

export const ScenarioSchema = z.strictObject({
  name: z.string().min(1).max(60),
  description: z.string().optional(),
  seed: z.int().min(0).max(0xffffffff).default(1),
  runs: z.array(ScenarioRunSchema).min(1),
});
export type Scenario = z.infer<typeof ScenarioSchema>;

/** Validates a parsed scenario; a UsageError names every bad field (`runs[0].jobs[1].mode: ...`). */
export function parseScenario(input: unknown, source = "scenario"): Scenario {
  return parseOrUsage(ScenarioSchema, input, source);
}

/** Settings the command line applies to every job (or run) of a scenario. */
export interface ScenarioOverrides {
  workers?: number;
  size?: number;
  iterations?: number;
  window?: number;
  elementsPerPacket?: number;
  scaleBits?: number;
  seed?: number;
  loss?: number;
  duplicate?: number;
  reorder?: number;
  /** keep only runs with these names */
  only?: string[];
}

export function applyOverrides(scenario: Scenario, o: ScenarioOverrides): Scenario {
  const pick = <T>(value: T | undefined, fallback: T) => (value === undefined ? fallback : value);
  const runs = scenario.runs
    .filter((run) => o.only === undefined || o.only.includes(run.name))
    .map((run) => ({
      ...run,
      faults: {
        loss: pick(o.loss, run.faults.loss),
        duplicate: pick(o.duplicate, run.faults.duplicate),
        reorder: pick(o.reorder, run.faults.reorder),
      },
      jobs: run.jobs.map((job) => ({
        ...job,
        workers: pick(o.workers, job.workers),
        size: pick(o.size, job.size),
        iterations: pick(o.iterations, job.iterations),
        window: pick(o.window, job.window),
        elementsPerPacket: pick(o.elementsPerPacket, job.elementsPerPacket),
        scaleBits: pick(o.scaleBits, job.scaleBits),
      })),
    }));
  if (runs.length === 0) {
    throw new UsageError(
      `--only: no run named ${o.only?.join(", ")}; runs: ${scenario.runs.map((r) => r.name).join(", ")}`,
    );
  }
  return { ...scenario, seed: pick(o.seed, scenario.seed), runs };
}

/** A job with everything decided: id, region, seed and its switch rule. */
export interface ResolvedJob extends ScenarioJob {
  name: string;
  id: number;
  seed: number;
  offset: number;
  regionSize: number;
  rule: JobConfig;
}

/**
 * Gives each job its id, seed and region: NetReduce jobs without one get
 * consecutive 2 x window regions from aggregator 0; ATP jobs without one
 * share every aggregator after the last NetReduce region. Region problems
 * (overlap, too small, past the pool) are left to the switch config's
 * validation, which names the field.
 */
export function resolveJobs(run: ScenarioRun, scenarioSeed: number): ResolvedJob[] {
  let nextFree = 0;
  const ids = run.jobs.map((job, i) => job.id ?? i + 1);
  const withNetReduce = run.jobs.map((job) => {
    if (job.mode !== "netreduce") return { offset: 0, regionSize: 0 };
    const regionSize = job.regionSize ?? 2 * job.window;
    const offset = job.offset ?? nextFree;
    nextFree = Math.max(nextFree, offset + regionSize);
    return { offset, regionSize };
  });
  return run.jobs.map((job, i) => {
    const id = ids[i];
    let { offset, regionSize } = withNetReduce[i];
    if (job.mode === "atp") {
      offset = job.offset ?? nextFree;
      regionSize = job.regionSize ?? Math.max(1, run.aggregators - offset);
    }
    const common = { id, fanIn: job.workers, window: job.window };
    const rule: JobConfig =
      job.mode === "ps"
        ? { ...common, mode: "ps" }
        : { ...common, mode: job.mode, offset, size: regionSize };
    return {
      ...job,
      name: job.name ?? `${job.mode}-${id}`,
      id,
      seed: job.seed ?? (scenarioSeed + id) >>> 0,
      offset,
      regionSize,
      rule,
    };
  });
}
