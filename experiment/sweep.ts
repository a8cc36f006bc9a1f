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

/**
 * The interval of a median: order statistics x(k) and x(n+1-k) of the n
 * sorted values. Whatever the distribution (continuous, values independent),
 * the true median lies between them with probability `confidence` =
 * 1 - 2 P(B <= k-1), B ~ Binomial(n, 1/2): no normality assumed, and never
 * outside what was measured (so a time or rate stays >= 0, a fraction in [0, 1]).
 */
export interface MedianInterval {
  low: number;
  high: number;
  /** the interval's coverage: 0.95 or just above for n >= 6; below n = 6 [min, max] has only 1 - 2^(1-n) */
  confidence: number;
}

/** The coverage the intervals aim at: the narrowest order-statistic interval with at least this much. */
export const INTERVAL_CONFIDENCE = 0.95;

/** How a point and its interval are described wherever they are shown (tables, CSV, figures). */
export const STATISTIC_NOTE =
  "point: median over the repetitions; interval: the distribution-free interval of the median " +
  "(order statistics x(k)..x(n+1-k), binomial), the narrowest with >= 95% confidence; " +
  "below n = 6 none reaches 95%, so [min, max] with its own confidence, 1 - 2^(1-n) (n = 3: 75%); n/a for n < 2";

/** The statistics of values over repetitions: the median and its interval, and the spread. */
export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
  mean: number;
  /** sample standard deviation (n - 1); null for n < 2 */
  std: number | null;
  /** the median's distribution-free interval; null for n < 2 */
  medianCi: MedianInterval | null;
}

/** P(B <= k) for B ~ Binomial(n, 1/2), each term in logs so large n does not underflow the sum's start. */
function binomialHalfCdf(n: number, k: number): number {
  let logChoose = 0; // log C(n, 0)
  let sum = 0;
  for (let i = 0; i <= k; i++) {
    sum += Math.exp(logChoose - n * Math.LN2);
    logChoose += Math.log(n - i) - Math.log(i + 1);
  }
  return sum;
}

/**
 * The order-statistic interval of the median of `sorted` (ascending): the
 * largest k whose [x(k), x(n+1-k)] covers with at least `level`, or [min, max]
 * when even that falls short (n < 6 at 95 %); null for n < 2.
 */
export function medianInterval(
  sorted: readonly number[],
  level = INTERVAL_CONFIDENCE,
): MedianInterval | null {
  const n = sorted.length;
  if (n < 2) return null;
  let k = 1;
  let confidence = 1 - 2 * binomialHalfCdf(n, 0);
  // Widen k (narrow the interval) while the next one still covers enough.
  while (k + 1 <= Math.floor(n / 2)) {
    const next = 1 - 2 * binomialHalfCdf(n, k);
    if (next < level) break;
    k++;
    confidence = next;
  }
  return { low: sorted[k - 1], high: sorted[n - k], confidence };
}

export function summarize(values: number[]): Summary | null {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const n = v.length;
  if (n === 0) return null;
  const mean = v.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : null;
  const median = n % 2 === 1 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  return { n, median, min: v[0], max: v[n - 1], mean, std, medianCi: medianInterval(v) };
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
  /** repetitions of real processes that were host-bound: their numbers describe the host's CPU, not the emulated network */
  hostBound: number;
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
        hostBound: ok.filter(
          (r) => r.bound === "host" && (r as { clock?: string }).clock !== "virtual",
        ).length,
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

/** Per measure: n, the median and its interval (empty for n < 2, see STATISTIC_NOTE), then the spread. */
const STATS = [
  "n",
  "median",
  "medianCiLow",
  "medianCiHigh",
  "medianCiConfidence",
  "min",
  "max",
  "mean",
  "std",
] as const;
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
  "hostBound",
  ...MEASURES.flatMap((m) => STATS.map((s) => `${m}_${s}`)),
];

export function pointRow(p: PointStatistics): string {
  const stat = (s: Summary | null) =>
    s === null
      ? STATS.map(() => "")
      : [
          s.n,
          s.median,
          s.medianCi?.low,
          s.medianCi?.high,
          s.medianCi?.confidence,
          s.min,
          s.max,
          s.mean,
          s.std,
        ].map(cell);
  return [
    cell(p.point),
    cell(p.run),
    ...SWEEP_KEYS.map((k) => cell(p.values[k])),
    cell(p.job),
    cell(p.mode),
    cell(p.repetitions),
    cell(p.failed),
    cell(p.hostBound),
    ...MEASURES.flatMap((m) => stat(p[m])),
  ].join(",");
}
