#!/usr/bin/env node
import { performance } from "node:perf_hooks";
import { z } from "zod";
import {
  applyStudyOptions,
  checkTensorMemory,
  FRONT_FIELDS,
  FRONT_OPTIONS,
  FRONT_RENAMED,
  isScheduleScenario,
  isStudy,
  loadScheduleScenario,
  RUN_ONLY_OPTIONS,
  repeatPolicies,
  runTables,
  SCENARIOS_DIR,
  scheduleTables,
  studyPoints,
  verifiedExit,
} from "../experiment/front.js";
import { outputFiles, RunsOutput, writeResultsAndReport } from "../experiment/output.js";
import { SweepProgress, summaryLine, tally } from "../experiment/progress.js";
import type { ResultsFile } from "../experiment/report-page.js";
import { failedRun } from "../experiment/results.js";
import {
  applyOverrides,
  checkRegions,
  parseScenario,
  withLayerTraces,
} from "../experiment/scenario.js";
import { policyStatistics } from "../experiment/schedule.js";
import { analyzeShape } from "../experiment/shapes.js";
import { type ExpandedRun, expandScenario } from "../experiment/sweep.js";
import { formatSeconds } from "../experiment/table.js";
import { type CostInput, ProcessingCostSchema } from "../proto/costs.js";
import type { Scenario } from "../proto/scenario.js";
import { byteSize } from "../proto/units.js";
import { cliInt, EXIT_FAILED, readJsonFile, runCli, UsageError } from "../runtime/cli.js";
import { simulateSchedule } from "./schedule.js";
import { DEFAULT_SIM_TIMING, type SimRunResult, type SimTiming, simulateRun } from "./simulate.js";

/** The simulator's default scenario: compare.json's workload on 100 Gbit/s links. */
const DEFAULT_SIM_SCENARIO = `${SCENARIOS_DIR}sim-compare.json`;

/** A processing cost on the command line: "300,15", "calibrated" or "none". */
const costOption = z.string().transform((text, ctx): CostInput => {
  if (text === "calibrated" || text === "none") return text;
  const [perPacket, perElement, extra] = text.split(",").map((v) => Number(v.trim()));
  const parsed = ProcessingCostSchema.safeParse({
    perPacketNs: perPacket,
    perElementNs: perElement,
  });
  if (extra !== undefined || !parsed.success) {
    ctx.addIssue({
      code: "custom",
      message: `expected NS_PER_PACKET,NS_PER_ELEMENT (e.g. 300,15), 'calibrated' or 'none', got "${text}"`,
    });
    return z.NEVER;
  }
  return parsed.data;
});

const spec = {
  command: "ina-sim",
  summary:
    "Runs an experiment scenario in virtual time: the same switch, PS and worker code as the real\n" +
    "processes, wired by a discrete-event engine through the link model, one process, no sockets.\n" +
    "Prints the same table as ina-experiment and writes the same results (clock: virtual).",
  details:
    "Every packet crosses its sender's link and the switch's port towards its receiver (rate, delay,\n" +
    "buffer, ECN, from the run's links; without links, only the processing times, and a warning),\n" +
    "and the switch takes --switch-processing-ns per packet. A PS is a CPU: each packet waits\n" +
    "for it and costs it " +
    "the calibrated time (bench/calibration.json, written by npm run calibrate; a run's `costs`\n" +
    "or --ps-cost change it); workers and the switch cost no CPU unless told (--worker-cost,\n" +
    "--switch-cost). A run is bound by its links, window, latency, loss, computation or processing\n" +
    "(bound: link, window, latency, loss, compute, switch, host; see experiment/bounds.ts).\n" +
    "The same scenario and\n" +
    "seed give the same result file, byte for byte. A scheduling scenario (with policies) runs\n" +
    "the real memory manager and control plane, once per policy, decisions at virtual times.\n" +
    "Exit codes: 0 every job verified, 1 not, 2 bad option or scenario.",
  options: {
    ...FRONT_OPTIONS,
    scenario: { ...FRONT_OPTIONS.scenario, defaultText: "bench/scenarios/sim-compare.json" },
    "switch-processing-ns": {
      type: "string",
      valueName: "NS",
      description: "the switch's pipeline latency per packet",
      defaultText: String(DEFAULT_SIM_TIMING.switchProcessingNs),
    },
    "host-processing-ns": {
      type: "string",
      valueName: "NS",
      description: "a host's receive latency per packet",
      defaultText: String(DEFAULT_SIM_TIMING.hostProcessingNs),
    },
    "ps-cost": {
      type: "string",
      valueName: "COST",
      description:
        "what a PS's CPU spends per packet: NS_PER_PACKET,NS_PER_ELEMENT (e.g. 300,15),\n" +
        "'calibrated' (bench/calibration.json) or 'none'; replaces every run's `costs`",
      defaultText: "each run's costs; without them, calibrated",
    },
    "worker-cost": {
      type: "string",
      valueName: "COST",
      description: "the same for a worker taking a result and sending its next packet",
      defaultText: "each run's costs; without them, none",
    },
    "switch-cost": {
      type: "string",
      valueName: "COST",
      description: "the same for the switch (a software switch; a pipeline costs none)",
      defaultText: "each run's costs; without them, none",
    },
    "rto-floor-ms": {
      type: "string",
      valueName: "MS",
      description:
        "the workers' lowest retransmission timeout (the processes': their largest RTT lately plus\n" +
        "G)",
      defaultText: "the path's round trip without queueing, plus G",
    },
    "gap-floor-ms": {
      type: "string",
      valueName: "MS",
      description:
        "the least reordering wait before a PSN that a later-sent one overtook is resent (as\n" +
        "the processes')",
      defaultText: "G",
    },
    "clock-granularity-ms": {
      type: "string",
      valueName: "MS",
      description:
        "G in the workers' RTO = SRTT + max(G, 4 RTTVAR) (the processes': their timers'\n" +
        "measured lateness, at least 1)",
      defaultText: "one packet's serialization on the worker's link, at least 0.001",
    },
    "rto-initial-ms": {
      type: "string",
      valueName: "MS",
      description: "their timeout before any RTT sample (the processes': 200)",
      defaultText: "twice the path's round trip, plus the first window's serialization",
    },
    "stream-above": {
      type: "string",
      valueName: "BYTES",
      description:
        "stream a NetReduce, ATP or PS job whose workers' tensors add up to more than this: made\n" +
        "and checked packet by packet (digests equal across workers, every 64th packet exact)\n" +
        "instead of held; 0: always",
      defaultText: "256MiB",
    },
  },
  renamed: FRONT_RENAMED,
  removed: {
    "tick-ms":
      "the cores' timers fire exactly at their deadlines, there is no polling tick to set " +
      '(README.md, "Timers")',
  },
  schema: z.strictObject({
    ...FRONT_FIELDS,
    scenario: z.string().default(DEFAULT_SIM_SCENARIO),
    switchProcessingNs: cliInt(0, 1_000_000_000).default(DEFAULT_SIM_TIMING.switchProcessingNs),
    hostProcessingNs: cliInt(0, 1_000_000_000).default(DEFAULT_SIM_TIMING.hostProcessingNs),
    streamAbove: byteSize.default(DEFAULT_SIM_TIMING.streamAboveBytes),
    rtoFloorMs: z.coerce.number().positive().max(60_000).optional(),
    rtoInitialMs: z.coerce.number().positive().max(60_000).optional(),
    gapFloorMs: z.coerce.number().min(0).max(60_000).optional(),
    clockGranularityMs: z.coerce.number().min(0).max(60_000).optional(),
    psCost: costOption.optional(),
    workerCost: costOption.optional(),
    switchCost: costOption.optional(),
  }),
} as const;

await runCli(spec, async (o) => {
  const json = await readJsonFile(o.scenario, "--scenario");
  const timing = {
    switchProcessingNs: o.switchProcessingNs,
    hostProcessingNs: o.hostProcessingNs,
    streamAboveBytes: o.streamAbove,
    rtoFloorMs: o.rtoFloorMs,
    rtoInitialMs: o.rtoInitialMs,
    gapFloorMs: o.gapFloorMs,
    clockGranularityMs: o.clockGranularityMs,
    costs: {
      ...(o.psCost === undefined ? {} : { parameterServer: o.psCost }),
      ...(o.workerCost === undefined ? {} : { worker: o.workerCost }),
      ...(o.switchCost === undefined ? {} : { switch: o.switchCost }),
    },
  };
  if (isScheduleScenario(json)) {
    const given = RUN_ONLY_OPTIONS.filter((k) => o[k] !== undefined);
    if (given.length > 0) {
      const names = given.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
      throw new UsageError(
        `${names.join(", ")}: not for a scheduling scenario (use --policies; its jobs set their own sizes)`,
      );
    }
    return simulateSchedules(o, json, timing);
  }
  if (o.policies !== undefined) {
    throw new UsageError("--policies: only for a scheduling scenario (one with policies)");
  }
  const scenario = applyStudyOptions(
    applyOverrides(parseScenario(await withLayerTraces(json, o.scenario), o.scenario), o),
    o,
  );
  checkRegions(scenario, o.scenario);
  // Sweeps and repetitions expand as ina-experiment expands them (experiment/sweep.ts).
  const expanded = expandScenario(scenario);
  // Refused before any file is written: a large job that is not a ring's is streamed, not held.
  checkTensorMemory(
    expanded,
    (job) => job.mode === "ring" || job.tensorBytes * job.workers <= timing.streamAboveBytes,
  );
  warnWithoutLinks(expanded);
  return simulateRuns(o, scenario, expanded, timing);
});

type Options = z.output<typeof spec.schema>;

/** Runs without links measure the modelled processing alone: said once, naming them. */
function warnWithoutLinks(expanded: readonly ExpandedRun[]): void {
  const bare = [
    ...new Set(expanded.filter((e) => e.run.links === undefined).map((e) => e.point.run)),
  ];
  if (bare.length === 0) return;
  process.stderr.write(
    `ina-sim: warning: run${bare.length > 1 ? "s" : ""} ${bare.join(", ")} ha${bare.length > 1 ? "ve" : "s"} no links: ` +
      "packets cross no wire, so times and bandwidths are the modelled processing times only, " +
      'not a network\'s (give the run links, e.g. "links": {"rate": "100Gbps"}; ' +
      "bench/scenarios/sim-compare.json has them)\n",
  );
}

/** A scenario of runs, each in virtual time, results written as each one ends. */
async function simulateRuns(
  o: Options,
  scenario: Scenario,
  expanded: ExpandedRun[],
  timing: SimTiming,
): Promise<number> {
  process.stderr.write(
    `ina-sim: scenario ${scenario.name}, ${expanded.length} run(s), seed ${scenario.seed}\n`,
  );
  const startedAt = new Date();
  const output = await RunsOutput.open(
    "ina-sim",
    outputFiles(o.results, {
      scenario: scenario.name,
      seed: scenario.seed,
      startedAt,
      prefix: "sim-",
    }),
  );
  const runs: SimRunResult[] = [];
  const studied = isStudy(scenario);
  // No wall-clock time inside: the same scenario and seed give the same file.
  const resultsSoFar = () => ({
    clock: "virtual",
    scenario: scenario.name,
    description: scenario.description,
    seed: scenario.seed,
    timing,
    verified: runs.every((r) => r.verified),
    runs,
    points: studied ? studyPoints(scenario, expanded, runs) : [],
  });
  const progress = new SweepProgress(expanded.length);
  let failed = false;
  for (const [index, e] of expanded.entries()) {
    const { run, seed } = e;
    progress.start(index, run.name, run.jobs.map((j) => j.mode).join(" + "));
    const wall = { engineMs: 0 };
    try {
      const result = simulateRun(run, seed, timing, wall);
      runs.push(result);
      process.stderr.write(
        `    ${formatSeconds(result.seconds)} simulated, ${result.events} events in ` +
          `${(wall.engineMs / 1000).toFixed(2)} s (${Math.round(result.events / (wall.engineMs / 1000)).toLocaleString("en")} events/s)\n`,
      );
    } catch (error) {
      // What finished stays written; the table and exit code say this one failed.
      const message = (error as Error).message;
      process.stderr.write(`  run ${run.name} failed: ${message}\n`);
      runs.push(failedRun(run, message) as SimRunResult);
      failed = true;
    }
    progress.finish();
    await output.runFinished(e, runs[runs.length - 1], resultsSoFar());
  }
  const shape = analyzeShape(scenario, runs);
  const results = {
    ...resultsSoFar(),
    complete: true,
    ...(shape === null ? {} : { shape: shape.data }),
  };
  await output.finish(results);
  const summary = summaryLine(tally(runs, progress.elapsedSeconds));
  process.stdout.write(
    o.json
      ? `${JSON.stringify(results, null, 2)}\n`
      : `${runTables(runs, studied ? results.points : null, shape, "simulated")}\n${summary}`,
  );
  if (o.json) process.stderr.write(summary);
  return failed ? EXIT_FAILED : verifiedExit(runs);
}

/** A scheduling scenario: every policy in turn, as ina-experiment runs it with processes. */
async function simulateSchedules(o: Options, json: object, timing: SimTiming): Promise<number> {
  const scenario = loadScheduleScenario(json, o);
  const policies = o.policies ?? scenario.policies;
  process.stderr.write(
    `ina-sim: scheduling scenario ${scenario.name}, ${scenario.jobs.length} jobs, policies ${policies.join(", ")}, seed ${scenario.seed}\n`,
  );
  const results = await repeatPolicies(scenario, policies, (repeated, policy, rep) => {
    const started = performance.now();
    const result = simulateSchedule(repeated, policy, timing);
    const seconds = (performance.now() - started) / 1000;
    process.stderr.write(
      `  policy ${policy}${scenario.repeat > 1 ? `, repetition ${rep + 1}` : ""}: ${result.events} events in ${seconds.toFixed(2)} s\n`,
    );
    return result;
  });
  const statistics = policyStatistics(results);
  const output = {
    clock: "virtual",
    scenario: scenario.name,
    seed: scenario.seed,
    timing,
    verified: results.every((r) => r.verified),
    policies: results,
    ...(scenario.repeat > 1 ? { policyStatistics: statistics } : {}),
  };
  await writeResultsAndReport(
    "ina-sim",
    outputFiles(o.results, {
      scenario: scenario.name,
      seed: scenario.seed,
      startedAt: new Date(),
      prefix: "sim-",
    }),
    output as unknown as ResultsFile,
  );
  process.stdout.write(
    o.json ? `${JSON.stringify(output, null, 2)}\n` : scheduleTables(results, scenario.repeat),
  );
  return verifiedExit(results);
}
