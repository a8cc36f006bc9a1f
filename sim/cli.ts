#!/usr/bin/env node
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { z } from "zod";
import {
  FRONT_FIELDS,
  FRONT_OPTIONS,
  isScheduleScenario,
  isStudy,
  loadScheduleScenario,
  repeatPolicies,
  runTables,
  scheduleTables,
  studyPoints,
  verifiedExit,
} from "../experiment/front.js";
import {
  applyOverrides,
  checkRegions,
  parseScenario,
  withLayerTraces,
} from "../experiment/scenario.js";
import { policyStatistics } from "../experiment/schedule.js";
import { analyzeShape } from "../experiment/shapes.js";
import { expandScenario } from "../experiment/sweep.js";
import { type CostInput, ProcessingCostSchema } from "../proto/costs.js";
import { byteSize } from "../proto/units.js";
import { cliInt, readJsonFile, runCli, UsageError } from "../runtime/cli.js";
import { simulateSchedule } from "./schedule.js";
import { DEFAULT_SIM_TIMING, type SimRunResult, type SimTiming, simulateRun } from "./simulate.js";

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
    "buffer, ECN, from the run's links; without links, only the processing times), and the switch\n" +
    "takes --switch-processing-ns per packet. A PS is a CPU: each packet waits for it and costs it\n" +
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
        "'calibrated' (bench/calibration.json) or 'none'; over every run's `costs`",
      defaultText: "each run's costs (calibrated)",
    },
    "worker-cost": {
      type: "string",
      valueName: "COST",
      description: "the same for a worker taking a result and sending its next packet",
      defaultText: "each run's costs (none)",
    },
    "switch-cost": {
      type: "string",
      valueName: "COST",
      description: "the same for the switch (a software switch; a pipeline costs none)",
      defaultText: "each run's costs (none)",
    },
    "rto-floor-ms": {
      type: "string",
      valueName: "MS",
      description:
        "the workers' lowest retransmission timeout (the processes': their largest RTT lately plus\n" +
        "G); default: the path's round trip without queueing plus G",
      defaultText: "from the links",
    },
    "gap-floor-ms": {
      type: "string",
      valueName: "MS",
      description:
        "the least reordering wait before a PSN that a later-sent one overtook is resent (as\n" +
        "the processes'); default: G",
      defaultText: "from the links",
    },
    "clock-granularity-ms": {
      type: "string",
      valueName: "MS",
      description:
        "G in the workers' RTO = SRTT + max(G, 4 RTTVAR) (the processes': their timers'\n" +
        "measured lateness, at least 1); default: one packet's serialization on the worker's\n" +
        "link, at least 0.001",
      defaultText: "from the links",
    },
    "rto-initial-ms": {
      type: "string",
      valueName: "MS",
      description:
        "their timeout before any RTT sample (the processes': 200); default: twice the path's\n" +
        "round trip plus the first window's serialization",
      defaultText: "from the links",
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
  removed: {
    "tick-ms":
      "the cores' timers fire exactly at their deadlines, there is no polling tick to set " +
      '(README.md, "Timers")',
  },
  schema: z.strictObject({
    ...FRONT_FIELDS,
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
    if (o.only !== undefined)
      throw new UsageError("--only: not for a scheduling scenario (use --policies)");
    return simulateSchedules(o, json, timing);
  }
  if (o.policies !== undefined) {
    throw new UsageError("--policies: only for a scheduling scenario (one with policies)");
  }
  const scenario = applyOverrides(
    parseScenario(await withLayerTraces(json, o.scenario), o.scenario),
    { only: o.only, seed: o.seed },
  );
  checkRegions(scenario, o.scenario);
  process.stderr.write(
    `ina-sim: scenario ${scenario.name}, ${scenario.runs.length} run(s), seed ${scenario.seed}\n`,
  );
  const runs: SimRunResult[] = [];
  // Sweeps and repetitions expand as ina-experiment expands them (experiment/sweep.ts).
  const expanded = expandScenario(scenario);
  for (const { run, seed } of expanded) {
    const wall = { engineMs: 0 };
    const result = simulateRun(run, seed, timing, wall);
    runs.push(result);
    process.stderr.write(
      `  run ${run.name}: ${result.seconds.toFixed(4)} s simulated, ${result.events} events in ` +
        `${(wall.engineMs / 1000).toFixed(2)} s (${Math.round(result.events / (wall.engineMs / 1000)).toLocaleString("en")} events/s)\n`,
    );
  }
  const shape = analyzeShape(scenario, runs);
  const studied = isStudy(scenario);
  const points = studied ? studyPoints(scenario, expanded, runs) : [];
  const output = {
    clock: "virtual",
    scenario: scenario.name,
    seed: scenario.seed,
    timing,
    verified: runs.every((r) => r.verified),
    runs,
    ...(studied ? { points } : {}),
    ...(shape === null ? {} : { shape: shape.data }),
  };
  const text = await save(o, scenario.name, scenario.seed, output);
  process.stdout.write(
    o.json ? text : runTables(runs, studied ? points : null, shape, "simulated"),
  );
  return verifiedExit(runs);
});

type Options = z.output<typeof spec.schema>;

/** Writes the results file, named by scenario and seed (not the time: same inputs, same file); returns its text. */
async function save(o: Options, name: string, seed: number, output: unknown): Promise<string> {
  const text = `${JSON.stringify(output, null, 2)}\n`;
  if (o.results !== "") {
    await mkdir(o.results, { recursive: true });
    const path = join(o.results, `sim-${name}-seed${seed}.json`);
    await writeFile(path, text);
    process.stderr.write(`results: ${path}\n`);
  }
  return text;
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
  const text = await save(o, scenario.name, scenario.seed, output);
  process.stdout.write(o.json ? text : scheduleTables(results, scenario.repeat));
  return verifiedExit(results);
}
