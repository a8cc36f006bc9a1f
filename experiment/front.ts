import { fileURLToPath } from "node:url";
import { z } from "zod";
import { POLICIES, type Policy } from "../proto/config.js";
import type { Scenario, ScheduleScenario } from "../proto/scenario.js";
import { cliInt, EXIT_FAILED, EXIT_OK, type OptionSpec } from "../runtime/cli.js";
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
  seed: { type: "string", valueName: "N", description: "seed of gradients and faults" },
  results: {
    type: "string",
    valueName: "DIR",
    description: "folder for the results JSON; '' = do not write",
    defaultText: "results",
  },
  json: {
    type: "boolean",
    description: "print the results as one JSON object instead of a table",
  },
} as const satisfies Record<string, OptionSpec>;

/** The schema fields of FRONT_OPTIONS, for each front door's strictObject. */
export const FRONT_FIELDS = {
  scenario: z.string().default(DEFAULT_SCENARIO),
  only: list.optional(),
  policies: list.pipe(z.array(z.enum(POLICIES)).min(1)).optional(),
  seed: cliInt(0, 0xffffffff).optional(),
  results: z.string().default("results"),
  json: z.boolean().default(false),
};

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
