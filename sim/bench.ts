#!/usr/bin/env node
/**
 * `npm run bench:sim`: how fast the simulator runs. For each scenario (by
 * default bench/scenarios/sim-scale.json and sim-hundreds.json, the
 * 256-worker case), the packet events, the virtual time simulated, the
 * wall-clock time of the event loop, and events per second. Reported, never
 * asserted.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { parseScenario } from "../experiment/scenario.js";
import { EXIT_OK, readJsonFile, runCli } from "../runtime/cli.js";
import { DEFAULT_SIM_TIMING, simulateRun } from "./simulate.js";

const scenarios = (names: string[]) =>
  names.map((name) => fileURLToPath(new URL(`../../bench/scenarios/${name}`, import.meta.url)));

const spec = {
  command: "npm run bench:sim --",
  summary: "Measures the simulator: packet events per second and the 256-worker case's wall time.",
  options: {
    scenarios: {
      type: "string",
      valueName: "FILES",
      description: "comma-separated scenario files",
      defaultText: "bench/scenarios/sim-scale.json,bench/scenarios/sim-hundreds.json",
    },
    results: {
      type: "string",
      valueName: "DIR",
      description: "where the JSON results go",
      defaultText: "results",
    },
  },
  schema: z.strictObject({
    scenarios: z
      .string()
      .transform((s) => s.split(","))
      .default(scenarios(["sim-scale.json", "sim-hundreds.json"])),
    results: z.string().default("results"),
  }),
} as const;

await runCli(spec, async (o) => {
  const rows: Array<Record<string, number | string | boolean>> = [];
  for (const file of o.scenarios) {
    const scenario = parseScenario(await readJsonFile(file, "--scenarios"), file);
    for (const run of scenario.runs) {
      const wall = { engineMs: 0 };
      const started = performance.now();
      const result = simulateRun(run, scenario.seed, DEFAULT_SIM_TIMING, wall);
      const totalMs = performance.now() - started;
      const workers = result.jobs.reduce((n, j) => n + j.workers, 0);
      rows.push({
        scenario: scenario.name,
        run: run.name,
        workers,
        events: result.events,
        simulatedSeconds: result.seconds,
        engineSeconds: wall.engineMs / 1000,
        totalSeconds: totalMs / 1000,
        eventsPerSecond: result.events / (wall.engineMs / 1000),
        verified: result.verified,
      });
      const r = rows[rows.length - 1];
      process.stdout.write(
        `${scenario.name} ${run.name}: ${workers} workers, ${result.events} events, ` +
          `${(result.seconds * 1000).toFixed(3)} ms simulated in ${Number(r.engineSeconds).toFixed(2)} s ` +
          `(${Math.round(Number(r.eventsPerSecond)).toLocaleString("en")} events/s; ` +
          `${Number(r.totalSeconds).toFixed(2)} s with tensors made and checked), ` +
          `${result.verified ? "verified" : "NOT VERIFIED"}\n`,
      );
    }
  }
  await mkdir(o.results, { recursive: true });
  const path = join(o.results, `bench-sim-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  await writeFile(path, `${JSON.stringify({ rows }, null, 2)}\n`);
  process.stdout.write(`results: ${path}\n`);
  return EXIT_OK;
});
