import { deriveSeed } from "../proto/prng.js";
import { type Scenario, type ScenarioRun, SWEEP_KEYS, type SweepKey } from "../proto/scenario.js";
import type { RunResult } from "./results.js";

/**
 * Sweeps and repetitions (a run's `sweep` and `repeat`): a run expands into
 * one concrete run per point of the cartesian product of its swept values,
 * each repeated with its own derived seed. Every concrete run is named by its
 * point and repetition, and keeps both, so results can be grouped again.
 */
export interface Point {
  /** the run the point comes from */
  run: string;
  /** the swept values, in the order the sweep names them */
  values: Record<string, number>;
  /** the point's name: the run's, then key=value per swept key, e.g. "pool[workers=2,aggregators=64]" */
  name: string;
}

export interface ExpandedRun {
  run: ScenarioRun;
  point: Point;
  /** 0-based repetition */
  repetition: number;
  seed: number;
}

/** Every concrete run of `scenario`, repetition by repetition, all points in turn. */
export function expandScenario(scenario: Scenario): ExpandedRun[] {
  const out: ExpandedRun[] = [];
  for (const run of scenario.runs) {
    const points = pointsOf(run);
    const repeat = run.repeat;
    // Repetitions outermost: load drifts over time hit every point alike.
    for (let repetition = 0; repetition < repeat; repetition++) {
      points.forEach((values, p) => {
        const name = pointName(run.name, values);
        const concrete = applyPoint(run, values);
        const seed =
          repeat === 1 && points.length === 1
            ? scenario.seed
            : deriveSeed(deriveSeed(scenario.seed, 1 + p), 1000 + repetition);
        out.push({
          run: { ...concrete, name: repeat > 1 ? `${name}#${repetition + 1}` : name },
          point: { run: run.name, values, name },
          repetition,
          seed,
        });
      });
    }
  }
  return out;
}

/** The cartesian product of a run's sweep: keys in SWEEP_KEYS' order, each key's values as listed. */
function pointsOf(run: ScenarioRun): Array<Record<string, number>> {
  let points: Array<Record<string, number>> = [{}];
  for (const [key, values] of Object.entries(run.sweep ?? {})) {
    points = points.flatMap((p) => (values as number[]).map((v) => ({ ...p, [key]: v })));
  }
  return points;
}

function pointName(run: string, values: Record<string, number>): string {
  const parts = Object.entries(values).map(([k, v]) => `${k}=${v}`);
  return parts.length === 0 ? run : `${run}[${parts.join(",")}]`;
}

/** `run` with a point's values set: run fields on the run, job fields on every job. */
function applyPoint(run: ScenarioRun, values: Record<string, number>): ScenarioRun {
  let out: ScenarioRun = { ...run, jobs: run.jobs.map((j) => ({ ...j })) };
  for (const [key, value] of Object.entries(values) as Array<[SweepKey, number]>) {
    switch (key) {
      case "aggregators":
        out = { ...out, aggregators: value };
        break;
      case "packetsPerDatagram":
        out = { ...out, packetsPerDatagram: value };
        break;
      case "loss":
        out = { ...out, faults: { ...out.faults, loss: value } };
        break;
      default:
        for (const job of out.jobs) job[key] = value;
    }
  }
  return out;
}

/** What a statistic is computed over, and how its interval is made. */
export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
  mean: number;
  /** sample standard deviation (n - 1) */
  std: number;
  /** 95 % confidence interval of the mean, Student's t with n - 1 degrees of freedom */
  ci95: [number, number];
}

/** Two-sided 97.5 % quantiles of Student's t, for 1..30 degrees of freedom (then 1.96). */
const T975 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145,
  2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048,
  2.045, 2.042,
];

export function summarize(values: number[]): Summary | null {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const n = v.length;
  if (n === 0) return null;
  const mean = v.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  const median = n % 2 === 1 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  const t = n > 1 ? (T975[n - 2] ?? 1.96) : 0;
  const half = (t * std) / Math.sqrt(n);
  return { n, median, min: v[0], max: v[n - 1], mean, std, ci95: [mean - half, mean + half] };
}

/** The statistics of one point and job over its repetitions. */
export interface PointStatistics {
  point: string;
  run: string;
  values: Record<string, number>;
  job: string;
  mode: string;
  repetitions: number;
  failed: number;
  seconds: Summary | null;
  goodputMBps: Summary | null;
  retransmissions: Summary | null;
  fallbackFraction: Summary | null;
  /** per-iteration all-reduce times (slowest worker), warm-up iterations left out */
  iterationSeconds: Summary | null;
}

/** Groups finished runs by point and job; failed repetitions are counted, not averaged. */
export function pointStatistics(
  expanded: readonly ExpandedRun[],
  results: ReadonlyArray<RunResult | undefined>,
  warmupOf: (run: string) => number,
): PointStatistics[] {
  const groups = new Map<string, { e: ExpandedRun; results: Array<RunResult | undefined> }>();
  expanded.forEach((e, i) => {
    const g = groups.get(e.point.name) ?? { e, results: [] };
    g.results.push(results[i]);
    groups.set(e.point.name, g);
  });
  const out: PointStatistics[] = [];
  for (const [name, { e, results: rs }] of groups) {
    const ok = rs.filter((r): r is RunResult => r !== undefined && r.error === undefined);
    e.run.jobs.forEach((spec, j) => {
      const jobs = ok.map((r) => r.jobs[j]).filter((x) => x !== undefined);
      const warmup = warmupOf(e.point.run);
      out.push({
        point: name,
        run: e.point.run,
        values: e.point.values,
        job: jobs[0]?.name ?? spec.name ?? `${spec.mode}-${j + 1}`,
        mode: spec.mode,
        repetitions: rs.length,
        failed: rs.length - ok.length,
        seconds: summarize(jobs.map((x) => x.seconds)),
        goodputMBps: summarize(jobs.map((x) => x.goodputMBps)),
        retransmissions: summarize(jobs.map((x) => x.retransmissions)),
        fallbackFraction:
          spec.mode === "atp" ? summarize(jobs.map((x) => x.fallbackFraction)) : null,
        iterationSeconds: summarize(jobs.flatMap((x) => x.iterationSeconds.slice(warmup))),
      });
    });
  }
  return out;
}

/** A CSV cell: numbers as they are, text quoted when it must be. */
function cell(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : "";
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** The swept values' columns: `sweep_<key>`, empty where a run does not sweep the key. */
const SWEEP_COLUMNS = SWEEP_KEYS.map((k) => `sweep_${k}`);

/** Tidy CSV: one row per job of every finished or failed repetition. */
export const JOB_COLUMNS = [
  "point",
  "run",
  ...SWEEP_COLUMNS,
  "repetition",
  "seed",
  "job",
  "mode",
  "workers",
  "bytesPerWorker",
  "iterations",
  "seconds",
  "goodputMBps",
  "algbwMBps",
  "busbwMBps",
  "retransmissions",
  "collisions",
  "fallbackFraction",
  "communicationShare",
  "bound",
  "verified",
  "error",
];

export function jobRows(e: ExpandedRun, r: RunResult): string[] {
  const swept = SWEEP_KEYS.map((k) => cell(e.point.values[k]));
  const common = [
    cell(e.point.name),
    cell(e.point.run),
    ...swept,
    cell(e.repetition + 1),
    cell(e.seed),
  ];
  if (r.error !== undefined || r.jobs.length === 0) {
    return [
      [
        ...common,
        ...new Array(JOB_COLUMNS.length - common.length - 1).fill(""),
        cell(r.error ?? "no result"),
      ].join(","),
    ];
  }
  return r.jobs.map((j) =>
    [
      ...common,
      cell(j.name),
      cell(j.mode),
      cell(j.workers),
      cell(j.bytesPerWorker),
      cell(j.iterations),
      cell(j.seconds),
      cell(j.goodputMBps),
      cell(j.algbwMBps),
      cell(j.busbwMBps),
      cell(j.retransmissions),
      cell(j.collisions),
      cell(j.fallbackFraction),
      cell(j.communicationShare),
      cell(r.bound),
      cell(j.verified),
      "",
    ].join(","),
  );
}

const STATS = ["n", "median", "min", "max", "mean", "std", "ci95Low", "ci95High"] as const;
const MEASURES = [
  "seconds",
  "goodputMBps",
  "retransmissions",
  "fallbackFraction",
  "iterationSeconds",
] as const;

/** Tidy CSV of the statistics: one row per point and job. */
export const POINT_COLUMNS = [
  "point",
  "run",
  ...SWEEP_COLUMNS,
  "job",
  "mode",
  "repetitions",
  "failed",
  ...MEASURES.flatMap((m) => STATS.map((s) => `${m}_${s}`)),
];

export function pointRow(p: PointStatistics): string {
  const stat = (s: Summary | null) =>
    s === null
      ? STATS.map(() => "")
      : [s.n, s.median, s.min, s.max, s.mean, s.std, s.ci95[0], s.ci95[1]].map(cell);
  return [
    cell(p.point),
    cell(p.run),
    ...SWEEP_KEYS.map((k) => cell(p.values[k])),
    cell(p.job),
    cell(p.mode),
    cell(p.repetitions),
    cell(p.failed),
    ...MEASURES.flatMap((m) => stat(p[m])),
  ].join(",");
}
