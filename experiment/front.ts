import { freemem, totalmem } from "node:os";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { POLICIES, type Policy } from "../proto/config.js";
import type { Scenario, ScheduleScenario } from "../proto/scenario.js";
import { MAX_TENSOR_BYTES, parseBytes, tensorBytesSchema } from "../proto/units.js";
import { MAX_FAN_IN } from "../proto/wire.js";
import { cliInt, EXIT_FAILED, EXIT_OK, type OptionSpec, UsageError } from "../runtime/cli.js";
import type { RunResult } from "./results.js";
import {
  failedPolicy,
  type PolicyResult,
  parseScheduleScenario,
  policyStatistics,
  repetitionSeed,
} from "./schedule.js";
import type { ShapeReport } from "./shapes.js";
import { type ExpandedRun, type PointStatistics, pointStatistics } from "./sweep.js";
import {
  formatBytes,
  formatPointTable,
  formatPolicyStatistics,
  formatScheduleTable,
  formatTable,
} from "./table.js";

/**
 * What both front doors (ina-experiment on processes, ina-sim in virtual
 * time) do the same around their executor: tell the two kinds of scenario
 * apart, repeat a scheduling scenario's policies, gather a study's points,
 * and print the tables.
 */

/** The bundled scenarios (bench/scenarios/), from dist/experiment/ or experiment/. */
export const SCENARIOS_DIR = fileURLToPath(new URL("../../bench/scenarios/", import.meta.url));
export const DEFAULT_SCENARIO = `${SCENARIOS_DIR}compare.json`;

/** A comma-separated list, each name trimmed. */
const list = z.string().transform((text) => text.split(",").map((name) => name.trim()));

/** The options both front doors take, with one meaning and one help text. */
export const FRONT_OPTIONS = {
  scenario: {
    type: "string",
    valueName: "FILE",
    description: "scenario file (JSON)",
    defaultText: "bench/scenarios/compare.json",
  },
  only: {
    type: "string",
    valueName: "RUNS",
    description: "comma-separated names of the runs to keep",
    defaultText: "all",
  },
  policies: {
    type: "string",
    valueName: "LIST",
    description: "scheduling scenarios: comma-separated policies (edf, fcfs, static, shared, esa)",
    defaultText: "the scenario's",
  },
  seed: {
    type: "string",
    valueName: "N",
    description: "seed of gradients and faults",
    defaultText: "the scenario's",
  },
  results: {
    type: "string",
    valueName: "DIR",
    description:
      "folder for the results: JSON (rewritten after every run), jobs and points CSV, report\n" +
      "page, named <scenario>-seed<N>-<time>; '' = do not write",
    defaultText: "results",
  },
  json: {
    type: "boolean",
    description: "print the results as one JSON object instead of a table",
  },
  workers: {
    type: "string",
    valueName: "N",
    description: `workers of every job (1..${MAX_FAN_IN})`,
    defaultText: "the scenario's",
  },
  "tensor-bytes": {
    type: "string",
    valueName: "BYTES",
    description: "gradient per worker, e.g. 32MiB, at most 4GiB (old name: --size)",
    defaultText: "the scenario's",
  },
  sizes: {
    type: "string",
    valueName: "FROM:TO:xF",
    description:
      "a size sweep, as nccl-tests' -b -e -f: every run sweeps tensorBytes from FROM to TO,\n" +
      "times F each step (64KiB:256MiB:x2), or by +STEP (1MiB:8MiB:+1MiB), or a list (1MiB,4MiB)",
  },
  iterations: {
    type: "string",
    valueName: "N",
    description: "all-reduces per worker",
    defaultText: "the scenario's",
  },
  repeat: {
    type: "string",
    valueName: "N",
    description:
      "repetitions of every run (or sweep point), each its own seed; replaces every run's `repeat`",
    defaultText: "the scenario's",
  },
  warmup: {
    type: "string",
    valueName: "N",
    description: "iterations of each job left out of the statistics; replaces every run's `warmup`",
    defaultText: "the scenario's",
  },
} as const satisfies Record<string, OptionSpec>;

/** Old option names both front doors still take. */
export const FRONT_RENAMED = { size: "tensor-bytes" } as const;

/** Most points of a size sweep: a run's sweep takes at most 64 values per key. */
const MAX_SWEEP_SIZES = 64;

/**
 * --sizes: "FROM:TO:xF" (geometric), "FROM:TO:+STEP" (arithmetic) or a
 * comma-separated list; every size a float32 tensor of at most 4 GiB.
 */
export function parseSizes(text: string): number[] {
  const size = (part: string, what: string): number => {
    const parsed = tensorBytesSchema.safeParse(part.trim());
    if (!parsed.success) {
      throw new Error(`${what} "${part.trim()}": ${parsed.error.issues[0].message}`);
    }
    return parsed.data;
  };
  const range = /^([^:]+):([^:]+):(?:x([\d.]+)|\+(.+))$/.exec(text.trim());
  let sizes: number[];
  if (range === null) {
    if (text.includes(":")) {
      throw new Error(
        `expected FROM:TO:xFACTOR (64KiB:256MiB:x2), FROM:TO:+STEP (1MiB:8MiB:+1MiB) or a list (1MiB,4MiB), got "${text}"`,
      );
    }
    sizes = text.split(",").map((part) => size(part, "size"));
  } else {
    const from = size(range[1], "FROM");
    const to = size(range[2], "TO");
    if (to < from) throw new Error(`TO (${range[2]}) is below FROM (${range[1]})`);
    const factor = range[3] === undefined ? null : Number(range[3]);
    const step = range[4] === undefined ? null : parseBytes(range[4]);
    if (factor !== null && !(factor > 1)) {
      throw new Error(`the factor must be above 1, got x${range[3]}`);
    }
    if (step !== null && !(step > 0 && step % 4 === 0)) {
      throw new Error(`the step must be a positive multiple of 4 bytes, got +${range[4]}`);
    }
    if (factor === null && step === null) throw new Error(`not a step: "+${range[4]}"`);
    sizes = [];
    for (let bytes = from; bytes <= to && sizes.length <= MAX_SWEEP_SIZES; ) {
      sizes.push(bytes);
      // Each size stays a whole number of float32s.
      bytes =
        factor !== null
          ? Math.max(bytes + 4, 4 * Math.round((bytes * factor) / 4))
          : bytes + (step as number);
    }
  }
  if (sizes.length > MAX_SWEEP_SIZES) {
    throw new Error(`${text} makes more than ${MAX_SWEEP_SIZES} sizes; take a larger step`);
  }
  return sizes;
}

const sizesOption = z.string().transform((text, ctx) => {
  try {
    return parseSizes(text);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: (error as Error).message });
    return z.NEVER;
  }
});

/** The schema fields of FRONT_OPTIONS, for each front door's strictObject. */
export const FRONT_FIELDS = {
  scenario: z.string().default(DEFAULT_SCENARIO),
  only: list.optional(),
  policies: list.pipe(z.array(z.enum(POLICIES)).min(1)).optional(),
  seed: cliInt(0, 0xffffffff).optional(),
  results: z.string().default("results"),
  json: z.boolean().default(false),
  workers: cliInt(1, MAX_FAN_IN).optional(),
  tensorBytes: tensorBytesSchema.optional(),
  sizes: sizesOption.optional(),
  iterations: cliInt(1, 10_000).optional(),
  repeat: cliInt(1, 100).optional(),
  warmup: cliInt(0, 10_000).optional(),
};

/** The front options that only a scenario of runs takes (a scheduling scenario's jobs set their own). */
export const RUN_ONLY_OPTIONS = [
  "only",
  "workers",
  "tensorBytes",
  "sizes",
  "iterations",
  "repeat",
  "warmup",
] as const;

/**
 * --sizes, --repeat and --warmup over every run of `scenario`: --sizes
 * sweeps each run's tensorBytes (over a sweep of its own), --repeat and
 * --warmup replace the runs' `repeat` and `warmup`.
 */
export function applyStudyOptions(
  scenario: Scenario,
  o: { sizes?: number[]; tensorBytes?: number; repeat?: number; warmup?: number },
): Scenario {
  if (o.sizes !== undefined && o.tensorBytes !== undefined) {
    throw new UsageError("--sizes and --tensor-bytes: give one (--sizes sweeps the tensor size)");
  }
  if (o.warmup !== undefined) {
    for (const run of scenario.runs) {
      const fewest = Math.min(
        ...run.jobs.map((j) => j.iterations),
        ...(run.sweep?.iterations ?? []),
      );
      if (o.warmup >= fewest) {
        throw new UsageError(
          `--warmup ${o.warmup}: run ${run.name} has a job of ${fewest} iteration(s), which would leave none to measure (give --iterations above ${o.warmup})`,
        );
      }
    }
  }
  return {
    ...scenario,
    runs: scenario.runs.map((run) => ({
      ...run,
      ...(o.sizes === undefined ? {} : { sweep: { ...run.sweep, tensorBytes: o.sizes } }),
      ...(o.repeat === undefined ? {} : { repeat: o.repeat }),
      ...(o.warmup === undefined ? {} : { warmup: o.warmup }),
    })),
  };
}

/** Bytes of memory per tensor element a worker holds: input and output (float32), and a ring's int32 work buffer. */
export function bytesPerElement(mode: string): number {
  return mode === "ring" ? 12 : 8;
}

/**
 * Refuses (UsageError, exit 2) a scenario whose tensors cannot all be in
 * this machine's memory at once: per run (runs go one after another), every
 * job's workers x tensor bytes x what each holds per element
 * (bytesPerElement). `held(run, job)` says whether an executor holds a
 * job's tensors (the simulator streams large ones). Warns on stderr when
 * they fit in the total but not in what is free now.
 */
export function checkTensorMemory(
  expanded: readonly ExpandedRun[],
  held: (job: Scenario["runs"][number]["jobs"][number]) => boolean = () => true,
  memory = { totalBytes: totalmem(), freeBytes: freemem() },
  warn: (line: string) => void = (line) => process.stderr.write(line),
): void {
  let worst: { name: string; bytes: number; parts: string[] } | null = null;
  for (const { run } of expanded) {
    let bytes = 0;
    const parts: string[] = [];
    for (const job of run.jobs) {
      if (!held(job)) continue;
      const tensor = job.layers?.reduce((n, l) => n + l.bytes, 0) ?? job.tensorBytes;
      const perElement = bytesPerElement(job.mode);
      bytes += job.workers * (tensor / 4) * perElement;
      parts.push(`${job.workers} workers x ${formatBytes(tensor)} x ${perElement / 4}`);
    }
    if (worst === null || bytes > worst.bytes) worst = { name: run.name, bytes, parts };
  }
  if (worst === null) return;
  const needs =
    `run ${worst.name} needs ${formatBytes(worst.bytes)} for its tensors ` +
    `(${worst.parts.join(" + ")} copies: each worker's input and output, and a ring's work buffer)`;
  const machine = `this machine has ${formatBytes(memory.totalBytes)} (${formatBytes(memory.freeBytes)} free)`;
  if (worst.bytes > memory.totalBytes) {
    throw new UsageError(
      `${needs}, but ${machine}: lower --workers or --tensor-bytes (at most ${formatBytes(MAX_TENSOR_BYTES)} per worker)`,
    );
  }
  if (worst.bytes > memory.freeBytes) {
    warn(`warning: ${needs}; ${machine}: expect swapping or the out-of-memory killer\n`);
  }
}

/** A scheduling scenario from its JSON, `seed` (--seed) overriding its own. */
export function loadScheduleScenario(
  json: object,
  o: { scenario: string; seed?: number },
): ScheduleScenario {
  return parseScheduleScenario(o.seed === undefined ? json : { ...json, seed: o.seed }, o.scenario);
}

/** A scheduling scenario has `policies`; a plain one has `runs`. */
export function isScheduleScenario(json: unknown): json is Record<string, unknown> {
  return typeof json === "object" && json !== null && "policies" in json;
}

/**
 * Runs every policy of `schedule` once per repetition, repetitions outermost
 * (a load drift hits every policy alike), each at its repetition's seed; a
 * repeated scenario's results carry their repetition (1-based) and seed.
 * With `keepFailure`, a policy whose run throws is kept as failed (no jobs,
 * its error) and said to `keepFailure`; without, the error goes up.
 */
export async function repeatPolicies<R extends PolicyResult>(
  schedule: ScheduleScenario,
  policies: readonly Policy[],
  run: (scenario: ScheduleScenario, policy: Policy, repetition: number) => R | Promise<R>,
  keepFailure?: (policy: Policy, message: string) => void,
): Promise<Array<R | PolicyResult>> {
  const results: Array<R | PolicyResult> = [];
  for (let rep = 0; rep < schedule.repeat; rep++) {
    const seed = repetitionSeed(schedule.seed, rep);
    const repeated = schedule.repeat > 1 ? { repetition: rep + 1, seed } : {};
    for (const policy of policies) {
      try {
        results.push({ ...(await run({ ...schedule, seed }, policy, rep)), ...repeated });
      } catch (error) {
        if (keepFailure === undefined) throw error;
        const message = (error as Error).message;
        keepFailure(policy, message);
        results.push({ ...failedPolicy(policy, message), ...repeated });
      }
    }
  }
  return results;
}

/** The policies' table, and over repetitions their statistics. */
export function scheduleTables(results: readonly PolicyResult[], repeat: number): string {
  const table = formatScheduleTable([...results]);
  return repeat > 1 ? `${table}\n${formatPolicyStatistics(policyStatistics(results))}` : table;
}

/** Whether a scenario is a study (a sweep or repetitions): its points then get statistics. */
export function isStudy(scenario: Scenario): boolean {
  return scenario.runs.some((r) => r.sweep !== undefined || r.repeat > 1);
}

/** Statistics of each point of a study over the runs done so far (warm-up repetitions left out). */
export function studyPoints(
  scenario: Scenario,
  expanded: readonly ExpandedRun[],
  runs: readonly RunResult[],
): PointStatistics[] {
  const warmupOf = (name: string) => scenario.runs.find((r) => r.name === name)?.warmup ?? 0;
  return pointStatistics(expanded.slice(0, runs.length), [...runs], warmupOf);
}

/**
 * The runs' table, a study's points, and the shape next to the model's
 * (`measured` with processes, `simulated` in virtual time).
 */
export function runTables(
  runs: RunResult[],
  points: PointStatistics[] | null,
  shape: ShapeReport | null,
  measured: "measured" | "simulated",
): string {
  return (
    formatTable(runs) +
    (points === null ? "" : `\n${formatPointTable(points)}`) +
    (shape === null ? "" : `\n${shape.shape}: ${measured}, and the model's\n${shape.table}`)
  );
}

/** Exit 0 when every result verified (and none failed), 1 otherwise. */
export function verifiedExit(
  results: ReadonlyArray<{ verified: boolean; error?: string }>,
): number {
  return results.every((r) => r.verified && r.error === undefined) ? EXIT_OK : EXIT_FAILED;
}
