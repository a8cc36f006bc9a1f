#!/usr/bin/env node
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
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
  scheduleTables,
  studyPoints,
  verifiedExit,
} from "../experiment/front.js";
import { outputFiles, RunsOutput, writeResultsAndReport } from "../experiment/output.js";
import { SweepProgress, summaryLine, tally } from "../experiment/progress.js";
import { type ResultsFile, writeReport } from "../experiment/report-page.js";
import { failedRun, type RunResult } from "../experiment/results.js";
import {
  applyOverrides,
  checkRegions,
  overrideLinks,
  parseScenario,
} from "../experiment/scenario.js";
import { policyStatistics } from "../experiment/schedule.js";
import { analyzeShape } from "../experiment/shapes.js";
import { type ExpandedRun, expandScenario } from "../experiment/sweep.js";
import { describeBound } from "../experiment/table.js";
import { CONGESTION_CONTROLS, windowInputSchema } from "../proto/config.js";
import { largestPacketBytes, linkProblems } from "../proto/links.js";
import type { Scenario, ScheduleScenario } from "../proto/scenario.js";
import { byteSize, durationSchema, rateSchema } from "../proto/units.js";
import { MAX_ELEMENTS_PER_PACKET, MAX_SCALE_BITS } from "../proto/wire.js";
import {
  cliInt,
  cliProbability,
  EXIT_OK,
  emitRecord,
  readJsonFile,
  runCli,
  UsageError,
} from "../runtime/cli.js";
import { stopAllChildren } from "./processes.js";
import {
  findPrometheus,
  keepStorage,
  ScrapeTargets,
  scrapeIntervalSchema,
  startPrometheus,
} from "./prometheus.js";
import { provenance } from "./provenance.js";
import { runScenarioRun } from "./run.js";
import { runSchedule } from "./schedule.js";

const spec = {
  command: "ina-experiment",
  summary:
    "Runs an experiment scenario with real processes on 127.0.0.1: per run, a switch (and a\n" +
    "parameter server when a job needs one) and every job's workers, started at their start\n" +
    "times. Prints one row per job (time, goodput, collisions, fallback to the PS,\n" +
    "retransmissions, verified) and writes all results as JSON to the results folder. Every\n" +
    "output is checked against a float64 reference and bit for bit against the exact sum.",
  details:
    "The default scenario, bench/scenarios/compare.json, runs the same 4-worker workload with\n" +
    "NetReduce, ATP and a plain parameter server. --seed and the options from --workers to\n" +
    "--reorder override that setting in every job (or run) of the scenario; the others only\n" +
    "say what to run, how to report it and how to watch it. A scheduling scenario\n" +
    "(bench/scenarios/deadlines.json) submits jobs to the switch's control plane as they\n" +
    "arrive and runs once per memory-manager policy (--policies).\n" +
    "Scenario formats: README.md. Exit codes: 0 every job verified, 1 a job failed\n" +
    "verification or the run failed, 2 bad option or scenario. Progress goes to stderr.",
  options: {
    ...FRONT_OPTIONS,
    "link-rate": {
      type: "string",
      valueName: "RATE",
      description:
        "emulated links in every run: each host's line rate (10Gbps, 100Mbps, bits/s);\n" +
        "overrides the scenario's default rate (per-host overrides stay)",
      defaultText: "the scenario's",
    },
    "link-delay": {
      type: "string",
      valueName: "TIME",
      description: "links' one-way delay (50us, 2ms)",
      defaultText: "the scenario's",
    },
    "link-buffer": {
      type: "string",
      valueName: "BYTES",
      description: "links' queue buffers",
      defaultText: "the scenario's",
    },
    "link-ecn-threshold": {
      type: "string",
      valueName: "BYTES",
      description: "links' ECN marking threshold",
      defaultText: "the scenario's",
    },
    "congestion-control": {
      type: "string",
      valueName: "CC",
      description: "every job's reaction to ECN marks: none, aimd or dctcp",
      defaultText: "the scenario's",
    },
    "elements-per-packet": {
      type: "string",
      valueName: "K",
      description: "int32 elements per packet",
      defaultText: "the scenario's",
    },
    window: {
      type: "string",
      valueName: "N|BYTES",
      description: "packets in flight per worker (128), or bytes in flight (512KiB)",
      defaultText: "the scenario's",
    },
    "packets-per-datagram": {
      type: "string",
      valueName: "N",
      description:
        "most packets a switch, PS or worker puts in one datagram (emulated segmentation\n" +
        "offload; 1: none)",
      defaultText: "the scenario's; without it, 64",
    },
    "scale-bits": {
      type: "string",
      valueName: "S",
      description: "fixed point: value x 2^S",
      defaultText: "the scenario's",
    },
    loss: {
      type: "string",
      valueName: "P",
      description: "drop probability, each direction at the switch",
      defaultText: "the scenario's",
    },
    duplicate: {
      type: "string",
      valueName: "P",
      description: "duplication probability, each direction",
      defaultText: "the scenario's",
    },
    reorder: {
      type: "string",
      valueName: "P",
      description: "reorder probability, each direction",
      defaultText: "the scenario's",
    },
    "timeout-s": {
      type: "string",
      valueName: "S",
      description: "give up on a run after this long",
      defaultText: "300",
    },
    ui: {
      type: "string",
      valueName: "S",
      description:
        "keep each run's switch, and its live page (the 'live view' URL printed for it), up\n" +
        "S seconds after its workers end (Enter on a terminal goes on sooner)",
      defaultText: "0: stop it with its workers",
    },
    "scrape-dir": {
      type: "string",
      valueName: "DIR",
      description:
        "folder for a Prometheus scrape config (prometheus.yml) and its file_sd target list\n" +
        "(targets.json), updated as processes come and go; '' = none",
      defaultText: "results/prometheus",
    },
    prometheus: {
      type: "boolean",
      description: "start the local prometheus binary on that config for the run and print its URL",
    },
    "scrape-interval": {
      type: "string",
      valueName: "TIME",
      description:
        "Prometheus's scrape interval in the scrape config (250ms to 60s). With --prometheus or\n" +
        "this option, every worker stays up 6 s plus one interval after its result, for a final scrape",
      defaultText: "1s",
    },
    "write-scrape-config": {
      type: "boolean",
      description:
        "only write the scrape config (and an empty target list) to --scrape-dir, for a\n" +
        "Prometheus of your own started before any run; prints their paths and exits",
    },
  },
  renamed: FRONT_RENAMED,
  schema: z
    .strictObject({
      ...FRONT_FIELDS,
      linkRate: rateSchema.optional(),
      linkDelay: durationSchema.optional(),
      linkBuffer: byteSize.optional(),
      linkEcnThreshold: byteSize.optional(),
      congestionControl: z.enum(CONGESTION_CONTROLS).optional(),
      elementsPerPacket: cliInt(1, MAX_ELEMENTS_PER_PACKET).optional(),
      window: windowInputSchema.optional(),
      packetsPerDatagram: cliInt(1, 4096).optional(),
      scaleBits: cliInt(0, MAX_SCALE_BITS).optional(),
      loss: cliProbability.optional(),
      duplicate: cliProbability.optional(),
      reorder: cliProbability.optional(),
      timeoutS: z.coerce.number().positive().max(86_400).default(300),
      ui: z.coerce.number().min(0).max(3600).optional(),
      scrapeDir: z.string().default(join("results", "prometheus")),
      prometheus: z.boolean().default(false),
      scrapeInterval: scrapeIntervalSchema.optional(),
      writeScrapeConfig: z.boolean().default(false),
    })
    .refine((o) => (o.loss ?? 0) + (o.duplicate ?? 0) + (o.reorder ?? 0) <= 1, {
      path: ["loss"],
      message: "loss + duplicate + reorder must not exceed 1",
    }),
} as const;

// Stopped (Ctrl-C, a timeout's SIGTERM): take every process of the run down too.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    process.stderr.write(`ina-experiment: ${signal}, stopping the run's processes\n`);
    void stopAllChildren().finally(() => process.exit(130));
  });
}

const reportSpec = {
  command: "ina-experiment report",
  summary:
    "Draws the report page and figures of an earlier results file again: RESULTS.json gives\n" +
    "RESULTS/index.html and RESULTS/<figure>.svg and .png.",
  options: {
    file: { type: "string", valueName: "RESULTS.json", description: "the results file" },
  },
  schema: z.strictObject({ file: z.string().optional() }),
} as const;

/** `report FILE [options]`: the file may come first, without --file. */
function reportArgs(args: string[]): string[] {
  return args.length > 0 && !args[0].startsWith("-") ? ["--file", ...args] : args;
}

// `ina-experiment report RESULTS.json`: the report page again, from a results file.
if (process.argv[2] === "report") {
  await runCli(
    reportSpec,
    async (o) => {
      const file = o.file;
      if (file === undefined) throw new UsageError("report: name a results file (RESULTS.json)");
      const results = (await readJsonFile(file, "report")) as ResultsFile;
      if (typeof results !== "object" || results === null || typeof results.scenario !== "string") {
        throw new UsageError(`report: ${file} is not an ina-experiment results file`);
      }
      const dir = file.replace(/\.json$/, "");
      const figures = await writeReport(dir, results);
      process.stdout.write(`${join(dir, "index.html")} (${figures.length} figures)\n`);
      return EXIT_OK;
    },
    reportArgs(process.argv.slice(3)),
  );
} else
  await runCli(spec, async (o) => {
    if (o.writeScrapeConfig) return writeScrapeConfig(o.scrapeDir, o.scrapeInterval);
    const json = await readJsonFile(o.scenario, "--scenario");
    const startedAt = new Date();
    // A bad scenario is refused before anything is written or started.
    const parsedSchedule = isScheduleScenario(json) ? loadScheduleScenario(json, o) : null;
    const schedule =
      parsedSchedule === null
        ? null
        : {
            ...parsedSchedule,
            links: overrideLinks(parsedSchedule.links, `scenario ${parsedSchedule.name}`, o),
          };
    if (schedule?.links !== undefined) {
      // Its switch holds 256 elements per aggregator: one packet is 1056 bytes.
      const problems = linkProblems(schedule.links, largestPacketBytes(256));
      if (problems.length > 0) {
        throw new UsageError(
          `${o.scenario}:\n${problems.map((p) => `links.${p.path.join(".")}: ${p.message}`).join("\n")}`,
        );
      }
    }
    refuseOptionsThatDoNotApply(o, schedule !== null);
    const scenario =
      schedule === null
        ? applyStudyOptions(applyOverrides(parseScenario(json, o.scenario), o), o)
        : null;
    if (scenario !== null) {
      checkRegions(scenario, o.scenario);
      for (const [r, run] of scenario.runs.entries()) {
        for (const [j, job] of run.jobs.entries()) {
          if (job.layers !== undefined) {
            throw new UsageError(
              `runs[${r}].jobs[${j}].layers: per-layer traces are the simulator's (npm run sim)`,
            );
          }
        }
      }
    }
    // Tensors that cannot fit are refused before any file is written or process started.
    const expanded = scenario === null ? [] : expandScenario(scenario);
    checkTensorMemory(expanded);
    if (o.json && process.env.npm_lifecycle_event !== undefined) {
      if (process.env.npm_config_loglevel !== "silent") {
        process.stderr.write(
          "ina-experiment: npm printed its banner on stdout before this JSON; for JSON alone run " +
            "npm start --silent -- --json (the same object is also written to --results)\n",
        );
      }
    }
    // Prometheus keeps its time series beside the results, named like them.
    const name = (schedule ?? (scenario as Scenario)).name.replace(/[^A-Za-z0-9_-]/g, "_");
    const tsdb =
      o.results === ""
        ? null
        : join(o.results, `${name}-${startedAt.toISOString().replace(/[:.]/g, "-")}.prometheus`);
    const watch = await startWatching(o.scrapeDir, o.prometheus, tsdb, o.scrapeInterval);
    try {
      if (schedule !== null) return await runSchedules(o, schedule, startedAt, watch.targets);
      return await runRuns(o, scenario as Scenario, expanded, startedAt, watch.targets);
    } finally {
      await watch.stop();
    }
  });

/**
 * --ui: after a run's workers end, keep its switch (and its live page) up
 * for --ui seconds, or until Enter on a terminal.
 */
function holdPage(o: Options): (() => Promise<void>) | undefined {
  if (o.ui === undefined || o.ui <= 0) return undefined;
  const seconds = o.ui;
  return () =>
    new Promise<void>((resolve) => {
      process.stderr.write(
        `    the switch's live page stays up ${seconds} s${process.stdin.isTTY ? " (Enter: go on)" : ""}\n`,
      );
      const timer = setTimeout(done, seconds * 1000);
      const onData = () => done();
      if (process.stdin.isTTY) process.stdin.once("data", onData);
      function done() {
        clearTimeout(timer);
        process.stdin.off("data", onData);
        if (process.stdin.isTTY) process.stdin.pause();
        resolve();
      }
    });
}

/** Options of one kind of scenario are refused for the other, not silently ignored. */
function refuseOptionsThatDoNotApply(o: Options, scheduling: boolean): void {
  const runOnly: Array<keyof Options> = [
    ...RUN_ONLY_OPTIONS,
    "congestionControl",
    "elementsPerPacket",
    "window",
    "packetsPerDatagram",
    "scaleBits",
    "loss",
    "duplicate",
    "reorder",
  ];
  const given = (scheduling ? runOnly : ["policies" as const]).filter((k) => o[k] !== undefined);
  if (given.length === 0) return;
  const names = given.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
  throw new UsageError(
    scheduling
      ? `${names.join(", ")}: not for a scheduling scenario (${o.scenario} has policies; its jobs set their own sizes)`
      : `${names.join(", ")}: only for a scheduling scenario (one with policies, e.g. bench/scenarios/deadlines.json); ${o.scenario} has runs`,
  );
}

/** --write-scrape-config: the config and an empty target list, their paths on stdout. */
async function writeScrapeConfig(scrapeDir: string, scrapeIntervalMs?: number): Promise<number> {
  if (scrapeDir === "") throw new UsageError("--write-scrape-config needs a --scrape-dir");
  const targets = new ScrapeTargets(scrapeDir, { scrapeIntervalMs });
  await targets.writeConfig();
  emitRecord({
    event: "scrape-config",
    configFile: targets.configFile,
    targetsFile: targets.targetsFile,
  });
  process.stderr.write(
    `prometheus scrape config: ${targets.configFile}\n` +
      `targets (rewritten by every run with the same --scrape-dir): ${targets.targetsFile}\n` +
      `start Prometheus on it, e.g.: prometheus --config.file=${targets.configFile} ` +
      "--storage.tsdb.path=/tmp/ina-prom --web.listen-address=127.0.0.1:9090\n",
  );
  return EXIT_OK;
}

/** The scrape targets file, and Prometheus itself if asked for. */
async function startWatching(
  scrapeDir: string,
  start: boolean,
  keepIn: string | null,
  scrapeIntervalMs: number | undefined,
) {
  if (scrapeDir === "") {
    if (start) throw new UsageError("--prometheus needs a --scrape-dir");
    if (scrapeIntervalMs !== undefined)
      throw new UsageError("--scrape-interval needs a --scrape-dir");
    return { targets: undefined, stop: async () => {} };
  }
  // Only when something scrapes (ours, or yours told by --scrape-interval): plain runs stay fast.
  const targets = new ScrapeTargets(scrapeDir, {
    scrapeIntervalMs,
    lingerForFinalScrape: start || scrapeIntervalMs !== undefined,
  });
  await targets.init();
  process.stderr.write(`prometheus scrape config: ${targets.configFile}\n`);
  if (!start) return { targets, stop: async () => {} };
  const binary = findPrometheus();
  if (binary === null) {
    throw new UsageError(
      "--prometheus: no prometheus binary on PATH (Debian: apt-get install prometheus)",
    );
  }
  // Kept beside the results (keepIn) for a later look; without --results, a
  // temporary folder removed at the end.
  const storage = keepIn ?? (await mkdtemp(join(tmpdir(), "ina-prom-")));
  if (keepIn !== null) await mkdir(keepIn, { recursive: true });
  const startedAt = new Date().toISOString();
  const prometheus = await startPrometheus(binary, targets.configFile, storage).catch(
    async (error: Error) => {
      if (keepIn === null) await rm(storage, { recursive: true, force: true });
      throw error;
    },
  );
  process.stderr.write(`prometheus: ${prometheus.url} (stops when the run ends)\n`);
  return {
    targets,
    stop: async () => {
      await prometheus.child.stop();
      if (keepIn === null) await rm(storage, { recursive: true, force: true });
      else {
        const serve = await keepStorage(storage);
        process.stderr.write(
          `prometheus time series kept in ${resolve(storage)} (${startedAt} to ${new Date().toISOString()}); ` +
            `to query them: ${serve}\n`,
        );
      }
    },
  };
}

type Options = z.infer<(typeof spec)["schema"]>;

async function runSchedules(
  o: Options,
  schedule: ScheduleScenario,
  startedAt: Date,
  targets: ScrapeTargets | undefined,
): Promise<number> {
  const policies = o.policies ?? schedule.policies;
  process.stderr.write(
    `ina-experiment: scheduling scenario ${schedule.name}, policies ${policies.join(", ")}\n`,
  );
  const results = await repeatPolicies(
    schedule,
    policies,
    (repeated, policy, rep) => {
      process.stderr.write(
        `  policy ${policy}${schedule.repeat > 1 ? `, repetition ${rep + 1}` : ""} ...\n`,
      );
      return runSchedule(repeated, policy, {
        timeoutMs: o.timeoutS * 1000,
        targets,
        beforeSwitchStops: holdPage(o),
      });
    },
    // Keep what the other policies measured; this one is reported as failed.
    (policy, message) => process.stderr.write(`  policy ${policy} failed: ${message}\n`),
  );
  const statistics = policyStatistics(results);
  return report(
    o,
    schedule,
    startedAt,
    {
      provenance: { ...provenance(o.scenario, startedAt), endedAt: new Date().toISOString() },
      policies: results,
      ...(schedule.repeat > 1 ? { policyStatistics: statistics } : {}),
    },
    results,
    scheduleTables(results, schedule.repeat),
  );
}

async function runRuns(
  o: Options,
  scenario: Scenario,
  expanded: ExpandedRun[],
  startedAt: Date,
  targets: ScrapeTargets | undefined,
): Promise<number> {
  process.stderr.write(
    `ina-experiment: scenario ${scenario.name}, ${expanded.length} run(s), seed ${scenario.seed}\n`,
  );
  const runs: RunResult[] = [];
  const origin = provenance(o.scenario, startedAt);
  const output = await RunsOutput.open(
    "ina-experiment",
    outputFiles(o.results, { scenario: scenario.name, seed: scenario.seed, startedAt }),
  );
  const resultsSoFar = () => ({
    scenario: scenario.name,
    description: scenario.description,
    seed: scenario.seed,
    startedAt: startedAt.toISOString(),
    verified: runs.every((r) => r.verified),
    provenance: origin,
    runs,
    points: studyPoints(scenario, expanded, runs),
  });
  const progress = new SweepProgress(expanded.length);
  for (const [index, e] of expanded.entries()) {
    const run = e.run;
    const t0 = Date.now();
    let lastPrinted = 0;
    progress.start(index, run.name, run.jobs.map((j) => j.mode).join(" + "));
    try {
      const result = await runScenarioRun(run, {
        seed: e.seed,
        timeoutMs: o.timeoutS * 1000,
        targets,
        beforeSwitchStops: holdPage(o),
        onProgress: (jobs) => {
          const elapsed = Date.now() - t0;
          if (elapsed > 2000 && elapsed - lastPrinted >= 2000) {
            lastPrinted = elapsed;
            const parts = Object.entries(jobs).map(
              ([n, p]) =>
                `${n} ${(p.fraction * 100).toFixed(0)}%${p.phase === "allreduce" ? "" : ` (${p.phase})`}`,
            );
            process.stderr.write(`    ${(elapsed / 1000).toFixed(0)} s: ${parts.join(", ")}\n`);
          }
        },
      });
      runs.push(result);
      for (const warning of result.warnings) {
        process.stderr.write(`ina-experiment: warning: run ${run.name}: ${warning}\n`);
      }
      if (result.bound !== null) process.stderr.write(`    ${describeBound(result)}\n`);
      if (result.bound === "host") {
        process.stderr.write(
          `ina-experiment: warning: run ${run.name} has emulated links but was host-bound: its ` +
            "numbers describe this host's CPU, not the emulated network (lower the link rate)\n",
        );
      }
    } catch (error) {
      // Keep the finished runs' results; this one is reported as failed.
      const message = (error as Error).message;
      process.stderr.write(`  run ${run.name} failed: ${message}\n`);
      runs.push(failedRun(run, message));
    }
    progress.finish();
    // Written after every run, so a stop or a crash keeps what finished.
    await output.runFinished(e, runs[runs.length - 1], resultsSoFar());
  }
  origin.endedAt = new Date().toISOString();
  const points = studyPoints(scenario, expanded, runs);
  const shape = analyzeShape(scenario, runs);
  const table = runTables(runs, isStudy(scenario) ? points : null, shape, "measured");
  const results = {
    ...resultsSoFar(),
    complete: true,
    ...(shape === null ? {} : { shape: { name: shape.shape, ...shape.data } }),
  };
  await output.finish(results);
  const summary = summaryLine(tally(runs, progress.elapsedSeconds));
  process.stdout.write(o.json ? `${JSON.stringify(results)}\n` : `${table}\n${summary}`);
  if (o.json) process.stderr.write(summary);
  return verifiedExit(runs);
}

/** Writes the results file and prints the table (or --json); exit 0 only if all verified. */
async function report(
  o: Options,
  meta: { name: string; description?: string; seed: number },
  startedAt: Date,
  results: Record<string, unknown>,
  verifiable: ReadonlyArray<{ verified: boolean }>,
  table: string,
): Promise<number> {
  const verified = verifiable.every((r) => r.verified);
  const output = {
    scenario: meta.name,
    description: meta.description,
    seed: meta.seed,
    startedAt: startedAt.toISOString(),
    verified,
    ...results,
  } as ResultsFile;
  await writeResultsAndReport(
    "ina-experiment",
    outputFiles(o.results, { scenario: meta.name, seed: meta.seed, startedAt }),
    output,
  );
  process.stdout.write(o.json ? `${JSON.stringify(output)}\n` : table);
  return verifiedExit(verifiable);
}
