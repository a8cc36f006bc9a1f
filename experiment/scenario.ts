import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import {
  type CongestionControl,
  type JobConfig,
  type SwitchConfigInput,
  SwitchConfigSchema,
  type WindowInput,
  windowPackets,
} from "../proto/config.js";
import { type Links, LinksSchema } from "../proto/links.js";
import {
  parseLayerTrace,
  type Scenario,
  type ScenarioJob,
  type ScenarioRun,
  ScenarioSchema,
} from "../proto/scenario.js";
import { parseOrUsage, UsageError } from "../runtime/cli.js";

/** Validates a parsed scenario; a UsageError names every bad field (`runs[0].jobs[1].mode: ...`). */
export function parseScenario(input: unknown, source = "scenario"): Scenario {
  return parseOrUsage(ScenarioSchema, input, source);
}

/** Settings the command line applies to every job (or run) of a scenario. */
export interface ScenarioOverrides {
  workers?: number;
  tensorBytes?: number;
  iterations?: number;
  window?: WindowInput;
  packetsPerDatagram?: number;
  elementsPerPacket?: number;
  scaleBits?: number;
  seed?: number;
  loss?: number;
  duplicate?: number;
  reorder?: number;
  /** links: the default rate, delay, buffer and ECN threshold of every run */
  linkRate?: number;
  linkDelay?: number;
  linkBuffer?: number;
  linkEcnThreshold?: number;
  congestionControl?: CongestionControl;
  /** keep only runs with these names */
  only?: string[];
}

/**
 * A run's (or scheduling scenario's) links with the command line's link
 * options applied: they override the defaults; per-host overrides stay.
 */
export function overrideLinks(
  links: Links | undefined,
  name: string,
  o: ScenarioOverrides,
): Links | undefined {
  const given = o.linkDelay ?? o.linkBuffer ?? o.linkEcnThreshold;
  if (o.linkRate === undefined && given === undefined) return links;
  const rate = o.linkRate ?? links?.rate;
  if (rate === undefined) {
    throw new UsageError(
      `--link-delay, --link-buffer and --link-ecn-threshold need --link-rate (${name} has no links)`,
    );
  }
  return LinksSchema.parse({
    ...(links ?? {}),
    rate,
    ...(o.linkDelay === undefined ? {} : { delay: o.linkDelay }),
    ...(o.linkBuffer === undefined ? {} : { buffer: o.linkBuffer }),
    ...(o.linkEcnThreshold === undefined ? {} : { ecnThreshold: o.linkEcnThreshold }),
  });
}

export function applyOverrides(scenario: Scenario, o: ScenarioOverrides): Scenario {
  const pick = <T>(value: T | undefined, fallback: T) => (value === undefined ? fallback : value);
  const runs = scenario.runs
    .filter((run) => o.only === undefined || o.only.includes(run.name))
    .map((run) => ({
      ...run,
      links: overrideLinks(run.links, `run ${run.name}`, o),
      packetsPerDatagram: pick(o.packetsPerDatagram, run.packetsPerDatagram),
      faults: {
        loss: pick(o.loss, run.faults.loss),
        duplicate: pick(o.duplicate, run.faults.duplicate),
        reorder: pick(o.reorder, run.faults.reorder),
      },
      jobs: run.jobs.map((job) => {
        const elementsPerPacket = pick(o.elementsPerPacket, job.elementsPerPacket);
        return {
          ...job,
          workers: pick(o.workers, job.workers),
          tensorBytes: pick(o.tensorBytes, job.tensorBytes),
          iterations: pick(o.iterations, job.iterations),
          window: o.window === undefined ? job.window : windowPackets(o.window, elementsPerPacket),
          elementsPerPacket,
          scaleBits: pick(o.scaleBits, job.scaleBits),
          congestionControl: pick(o.congestionControl, job.congestionControl),
        };
      }),
    }));
  if (runs.length === 0) {
    throw new UsageError(
      `--only: no run named ${o.only?.join(", ")}; runs: ${scenario.runs.map((r) => r.name).join(", ")}`,
    );
  }
  return { ...scenario, seed: pick(o.seed, scenario.seed), runs };
}

/** Whether a run needs the shared PS: an ATP or PS job without PSes of its own. */
export function needsSharedPs(jobs: readonly ResolvedJob[]): boolean {
  return jobs.some((j) => (j.mode === "atp" || j.mode === "ps") && j.parameterServers === 0);
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
 * (overlap, too small, past the pool) are found by checkRegions().
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
    // The switch knows the job's shape, so no other can claim its aggregators.
    const common = {
      id,
      fanIn: job.workers,
      window: job.window,
      elementsPerPacket: job.elementsPerPacket,
      scaleBits: job.scaleBits,
      ...(job.deadPeerS === undefined ? {} : { deadPeerS: job.deadPeerS }),
    };
    // The switch ranks ATP jobs of an esa pool by the bytes they have left.
    const bytes = job.layers?.reduce((n, l) => n + l.bytes, 0) ?? job.tensorBytes;
    const rule: JobConfig =
      job.mode === "ps" || job.mode === "ring"
        ? { ...common, mode: job.mode }
        : job.mode === "atp"
          ? {
              ...common,
              mode: job.mode,
              offset,
              regionSize,
              totalBytes: job.workers * bytes * job.iterations,
            }
          : { ...common, mode: job.mode, offset, regionSize };
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

/** The switch config of a run: its aggregators, its jobs' rules, faults at `seed`. */
export function switchConfigOf(
  run: ScenarioRun,
  jobs: readonly ResolvedJob[],
  seed: number,
  /** where job `job` (its index)'s own PS number `k` listens, for jobs with their own (default 127.0.0.1:1) */
  ownPsAt: (job: number, k: number) => { host: string; port: number } = () => ({
    host: "127.0.0.1",
    port: 1,
  }),
): SwitchConfigInput {
  const rates = {
    drop: run.faults.loss,
    duplicate: run.faults.duplicate,
    reorder: run.faults.reorder,
  };
  return {
    aggregators: run.aggregators,
    elementsPerAggregator: Math.max(...jobs.map((j) => j.elementsPerPacket)),
    // The switch labels each job's metrics with its scenario name (ina_job_name).
    jobs: jobs.map((j, i) => ({
      ...j.rule,
      name: j.name,
      ...(j.parameterServers > 0
        ? { parameterServers: Array.from({ length: j.parameterServers }, (_, k) => ownPsAt(i, k)) }
        : {}),
    })),
    atpPool: run.atpPool,
    faults: { seed, ingress: rates, egress: rates },
    ...(run.links === undefined ? {} : { links: run.links }),
  };
}

/** Switch config fields of a job rule, by the scenario field that sets them. */
const SCENARIO_FIELD: Record<string, string> = {
  fanIn: "workers",
};

/**
 * Checks every run's regions as its switch will, before anything starts: a
 * region past the pool, overlapping another, or under 2 x window is a
 * UsageError naming the scenario's field (`runs[0].jobs[1].regionSize: ...`).
 */
export function checkRegions(scenario: Scenario, source: string): void {
  const problems: string[] = [];
  scenario.runs.forEach((run, r) => {
    const jobs = resolveJobs(run, scenario.seed);
    // The PS's address is known only once it runs: any address checks the rest.
    const parsed = SwitchConfigSchema.safeParse({
      ...switchConfigOf(run, jobs, scenario.seed),
      parameterServer: { host: "127.0.0.1", port: 1 },
    });
    if (parsed.success) return;
    for (const issue of parsed.error.issues) {
      const [top, index, field] = issue.path;
      const where =
        top === "jobs" && typeof index === "number"
          ? `runs[${r}].jobs[${index}]${field === undefined ? "" : `.${SCENARIO_FIELD[String(field)] ?? String(field)}`}`
          : `runs[${r}]${issue.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("")}`;
      problems.push(`${where}: ${issue.message}`);
    }
  });
  if (problems.length > 0) throw new UsageError(`${source}:\n${problems.join("\n")}`);
}

/**
 * A job's `layerTrace` names a CSV file of its layers (relative to the
 * scenario's folder): read it into `layers`, naming the file and line of
 * anything wrong.
 */
export async function withLayerTraces(json: unknown, scenarioPath: string): Promise<unknown> {
  if (
    typeof json !== "object" ||
    json === null ||
    !Array.isArray((json as { runs?: unknown }).runs)
  ) {
    return json;
  }
  const runs = (json as { runs: unknown[] }).runs;
  const resolved = await Promise.all(
    runs.map(async (run, r) => {
      if (typeof run !== "object" || run === null) return run;
      const jobs = (run as { jobs?: unknown }).jobs;
      if (!Array.isArray(jobs)) return run;
      return {
        ...run,
        jobs: await Promise.all(
          jobs.map(async (job, j) => {
            if (typeof job !== "object" || job === null || !("layerTrace" in job)) return job;
            const { layerTrace, ...rest } = job as { layerTrace: unknown };
            const where = `runs[${r}].jobs[${j}].layerTrace`;
            if (typeof layerTrace !== "string")
              throw new UsageError(`${where}: expected a file name`);
            const path = resolve(dirname(scenarioPath), layerTrace);
            let text: string;
            try {
              text = await readFile(path, "utf8");
            } catch (error) {
              throw new UsageError(`${where}: cannot read ${path}: ${(error as Error).message}`);
            }
            try {
              return { ...rest, layers: parseLayerTrace(text) };
            } catch (error) {
              throw new UsageError(`${where}: ${path}, ${(error as Error).message}`);
            }
          }),
        ),
      };
    }),
  );
  return { ...json, runs: resolved };
}
