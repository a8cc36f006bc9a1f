#!/usr/bin/env node
/**
 * `npm run executors`: the same scenario in both executors, job by job.
 * Each run goes to the simulator once (it is deterministic) and to real
 * processes `--repeat` times, the repetitions of all runs interleaved so
 * that a burst of load on this shared host spreads over every run; the
 * table gives the median real time next to the simulated one.
 */
import { z } from "zod";
import { SCENARIOS_DIR } from "../experiment/front.js";
import type { RunResult } from "../experiment/results.js";
import { parseScenario } from "../experiment/scenario.js";
import { expandScenario } from "../experiment/sweep.js";
import { runScenarioRun } from "../runner/run.js";
import { cliInt, EXIT_FAILED, EXIT_OK, readJsonFile, runCli } from "../runtime/cli.js";
import { simulateRun } from "../sim/simulate.js";

const spec = {
  command: "npm run executors --",
  summary:
    "Runs a link-bound scenario in the simulator and as real processes and prints, per job, the\n" +
    "simulated time, the real processes' median over the repetitions, and their ratio.",
  options: {
    scenario: {
      type: "string",
      valueName: "FILE",
      description: "scenario file (JSON)",
      defaultText: "bench/scenarios/executors.json",
    },
    repeat: {
      type: "string",
      valueName: "N",
      description: "real-process repetitions of each run, interleaved",
      defaultText: "3",
    },
    seed: {
      type: "string",
      valueName: "N",
      description: "seed of the gradients",
      defaultText: "the scenario's",
    },
    tolerance: {
      type: "string",
      valueName: "F",
      description: "the largest |real / sim - 1| per job for exit code 0",
      defaultText: "0.1",
    },
    json: { type: "boolean", description: "print the rows as one JSON record" },
  },
  schema: z.strictObject({
    scenario: z.string().default(`${SCENARIOS_DIR}executors.json`),
    repeat: cliInt(1, 100).default(3),
    seed: cliInt(0, 0xffffffff).optional(),
    tolerance: z.coerce.number().positive().max(10).default(0.1),
    json: z.boolean().default(false),
  }),
} as const;

interface Row {
  run: string;
  job: string;
  window: number;
  bound: string;
  simSeconds: number;
  realSeconds: number[];
  realMedian: number;
  ratio: number;
  /** timeouts and spurious timeouts over the job's workers, summed over the real runs */
  timeouts: number;
  spuriousTimeouts: number;
}

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 === 1 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};

await runCli(spec, async (o) => {
  const scenario = parseScenario(await readJsonFile(o.scenario, "--scenario"), o.scenario);
  const runs = expandScenario(o.seed === undefined ? scenario : { ...scenario, seed: o.seed });
  process.stderr.write(
    `executors: ${scenario.name}, ${runs.length} run(s), seed ${o.seed ?? scenario.seed}\n`,
  );
  const simulated = runs.map((e) => simulateRun(e.run, e.seed));
  const real: RunResult[][] = runs.map(() => []);
  for (let r = 0; r < o.repeat; r++) {
    for (const [i, e] of runs.entries()) {
      process.stderr.write(`  real ${e.run.name} (${r + 1}/${o.repeat}) ...\n`);
      const result = await runScenarioRun(e.run, { seed: e.seed, timeoutMs: 300_000 });
      if (!result.verified) throw new Error(`${e.run.name}: a real job was not exact`);
      real[i].push(result);
    }
  }
  const rows: Row[] = runs.flatMap((e, i) =>
    simulated[i].jobs.map((job, j) => {
      const realSeconds = real[i].map((r) => r.jobs[j].seconds);
      const realMedian = median(realSeconds);
      return {
        run: e.run.name,
        job: job.name,
        window: job.window,
        bound: simulated[i].bound ?? "-",
        simSeconds: job.seconds,
        realSeconds,
        realMedian,
        ratio: realMedian / job.seconds,
        timeouts: real[i].reduce(
          (n, r) => n + r.jobs[j].perWorker.reduce((m, w) => m + w.timeouts, 0),
          0,
        ),
        spuriousTimeouts: real[i].reduce(
          (n, r) => n + r.jobs[j].perWorker.reduce((m, w) => m + w.spuriousTimeouts, 0),
          0,
        ),
      };
    }),
  );
  const worst = Math.max(...rows.map((r) => Math.abs(r.ratio - 1)));
  if (o.json) {
    process.stdout.write(
      `${JSON.stringify({ scenario: scenario.name, seed: o.seed ?? scenario.seed, repeat: o.repeat, worst, rows })}\n`,
    );
  } else {
    const table = [
      [
        "run",
        "job",
        "window",
        "sim bound",
        "sim s",
        "real s (median)",
        "real runs",
        "real / sim",
        "real timeouts (spurious)",
      ],
      ...rows.map((r) => [
        r.run,
        r.job,
        String(r.window),
        r.bound,
        r.simSeconds.toFixed(3),
        r.realMedian.toFixed(3),
        r.realSeconds.map((s) => s.toFixed(3)).join(" "),
        r.ratio.toFixed(3),
        `${r.timeouts} (${r.spuriousTimeouts})`,
      ]),
    ];
    const widths = table[0].map((_, c) => Math.max(...table.map((row) => row[c].length)));
    for (const row of table) {
      process.stdout.write(`${row.map((cell, c) => cell.padEnd(widths[c])).join("  ")}\n`);
    }
    process.stdout.write(
      `worst |real / sim - 1| = ${(100 * worst).toFixed(1)} % (tolerance ${(100 * o.tolerance).toFixed(0)} %)\n`,
    );
  }
  return worst <= o.tolerance ? EXIT_OK : EXIT_FAILED;
});
