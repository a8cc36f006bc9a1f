import { Resvg } from "@resvg/resvg-js";
import * as vega from "vega";
import * as vegaLite from "vega-lite";
import type { LinkLoad, RunResult } from "./results.js";
import type { PolicyResult } from "./schedule.js";
import type { PointStatistics, Summary } from "./sweep.js";

/**
 * The figures of a results file, as Vega-Lite specs rendered without a
 * browser: vega-lite compiles, vega draws SVG headless, resvg turns the SVG
 * into PNG. Which figures a results file gets follows from what it
 * measured: a swept value on the x axis (with 95 % intervals from the
 * repetitions), the ATP fallback against the pool, a bar per run, or, for a
 * scheduling scenario, each job's JCT and region over time per policy.
 */
export interface Figure {
  /** file name stem, e.g. "goodput-vs-workers" */
  name: string;
  title: string;
  /** lines under the title: what a point and its bar are */
  subtitle?: string[];
  spec: vegaLite.TopLevelSpec;
}

export interface RenderedFigure extends Figure {
  svg: string;
  png: Buffer;
  width: number;
  height: number;
}

const AXIS_UNITS: Record<string, string> = {
  workers: "workers",
  tensorBytes: "gradient per worker (bytes)",
  aggregators: "aggregators in the switch",
  window: "window (packets)",
  elementsPerPacket: "elements per packet",
  loss: "loss probability, each direction",
  packetsPerDatagram: "packets per datagram",
  computeMs: "compute per iteration (ms)",
  iterations: "iterations",
};

/**
 * Whether a swept axis is best drawn in log2: every value a positive power
 * of two, and at least 3 distinct ones (16, 32, ..., 512 would crowd the
 * left of a linear axis).
 */
export function isPowerOfTwoSweep(values: readonly number[]): boolean {
  const distinct = new Set(values);
  if (distinct.size < 3) return false;
  for (const v of distinct) {
    if (!(v > 0) || !Number.isFinite(v) || 2 ** Math.round(Math.log2(v)) !== v) return false;
  }
  return true;
}

/** The jobs' names in the order they first appear: legends, bars and lines all follow it. */
function jobOrder(names: Iterable<string>): string[] {
  return [...new Set(names)];
}

/** "n = 3, 75%" or "n = 3..10, 75-98%": the repetitions behind a figure's points and their intervals' confidence. */
function intervalCaption(summaries: ReadonlyArray<Summary | null>): string[] {
  const present = summaries.filter((s): s is Summary => s !== null);
  const ns = present.map((s) => s.n);
  const confidences = present.flatMap((s) => (s.medianCi ? [s.medianCi.confidence] : []));
  const range = (xs: number[], f: (x: number) => string) => {
    const lo = Math.min(...xs);
    const hi = Math.max(...xs);
    return lo === hi ? f(lo) : `${f(lo)}-${f(hi)}`;
  };
  const pct = (x: number) => `${(100 * x).toFixed(x > 0.995 ? 1 : 0)}%`;
  const n = ns.length === 0 ? "n = 0" : `n = ${range(ns, String)} per point`;
  return confidences.length === 0
    ? [`points: medians (${n}); no intervals: n < 2`]
    : [
        `points: medians (${n}); bars: distribution-free interval of the median`,
        `(order statistics, binomial), ${range(confidences, pct)} confidence`,
      ];
}

/** Figures for a plain scenario's results: its runs and, with sweeps or repeats, their points. */
export function runFigures(
  runs: readonly RunResult[],
  points: readonly PointStatistics[],
): Figure[] {
  const figures: Figure[] = [];
  const swept = [...new Set(points.flatMap((p) => Object.keys(p.values)))];
  const order = jobOrder(points.map((p) => p.job));
  for (const key of swept) {
    const withGoodput = points.filter((p) => p.goodputMBps !== null && key in p.values);
    const rows = withGoodput.map((p) => ({
      x: p.values[key],
      series: p.job,
      value: p.goodputMBps?.median ?? 0,
      n: p.goodputMBps?.n ?? 0,
      ...interval(p.goodputMBps, 1),
    }));
    if (rows.length === 0) continue;
    const xTitle = AXIS_UNITS[key] ?? key;
    figures.push({
      name: `goodput-vs-${key}`,
      title: `Goodput per worker against ${xTitle}`,
      subtitle: intervalCaption(withGoodput.map((p) => p.goodputMBps)),
      spec: layered(rows, order, xTitle, "goodput per worker (MB/s), median"),
    });
    const withFallback = points.filter((p) => p.fallbackFraction !== null && key in p.values);
    const atp = withFallback.map((p) => ({
      x: p.values[key],
      series: p.job,
      value: 100 * (p.fallbackFraction?.median ?? 0),
      n: p.fallbackFraction?.n ?? 0,
      ...interval(p.fallbackFraction, 100),
    }));
    if (atp.length > 0) {
      figures.push({
        name: `fallback-vs-${key}`,
        title: `ATP fallback to the PS against ${xTitle}`,
        subtitle: intervalCaption(withFallback.map((p) => p.fallbackFraction)),
        spec: layered(
          atp,
          jobOrder(atp.map((r) => r.series)),
          xTitle,
          "fell back to the PS (%), median",
          [0, 100],
        ),
      });
    }
  }
  // The switch's ports over time, for the first runs with links.
  for (const run of runs.filter((r) => (r.linkSeries?.length ?? 0) > 0).slice(0, 4)) {
    // The switch names a port "job 1 worker 0"; the figures name jobs as the scenario does.
    const names = new Map(run.jobs.map((j) => [j.id, j.name]));
    const series = (run.linkSeries ?? []).map((p) => ({
      ...p,
      host: p.host.replace(/^job (\d+) /, (whole, id) => {
        const name = names.get(Number(id));
        return name === undefined ? whole : `${name} `;
      }),
    }));
    figures.push({
      name: `links-${run.name.replace(/[^A-Za-z0-9_-]/g, "_")}`,
      title: `Run ${run.name}: utilization of the switch's port towards each host`,
      subtitle: [
        "bytes the port sent in each whole stats interval (about 250 ms),",
        "over what the line could send in it",
      ],
      spec: {
        $schema: "https://vega.github.io/schema/vega-lite/v5.json",
        width: 520,
        height: 240,
        // Each value holds over its whole interval: drawn flat from its start to its end.
        data: {
          values: series.flatMap((p) =>
            [p.from ?? p.t, p.t].map((t) => ({ ...p, t, utilization: 100 * p.utilization })),
          ),
        },
        mark: { type: "line", strokeWidth: 1.5 },
        encoding: {
          x: { field: "t", type: "quantitative", title: "time (s)" },
          y: {
            field: "utilization",
            type: "quantitative",
            title: "utilization (% of the line rate)",
            scale: { domain: [0, 100] },
          },
          color: {
            field: "host",
            type: "nominal",
            title: "towards",
            scale: { domain: jobOrder(series.map((p) => p.host)) },
          },
          // A multicast gives every port the same line: dashes keep each visible.
          strokeDash: {
            field: "host",
            type: "nominal",
            title: "towards",
            scale: { domain: jobOrder(series.map((p) => p.host)) },
          },
        },
      },
    });
  }
  const queues = queueOverTime(runs);
  if (queues !== null) figures.push(queues);
  if (swept.length === 0) {
    const rows = runs.flatMap((r) =>
      r.jobs.map((j) => ({ run: r.name, job: j.name, goodput: j.goodputMBps })),
    );
    const jobs = jobOrder(rows.map((r) => r.job));
    if (rows.length > 0) {
      figures.push({
        name: "goodput-per-run",
        title: "Goodput per worker, per run and job",
        spec: {
          $schema: "https://vega.github.io/schema/vega-lite/v5.json",
          width: 520,
          height: 300,
          data: { values: rows },
          mark: "bar",
          encoding: {
            // Runs in the scenario's order; jobs side by side only where a run has several.
            x: {
              field: "run",
              type: "nominal",
              title: "run",
              sort: null,
              axis: { labelAngle: -30 },
            },
            ...(runs.some((r) => r.jobs.length > 1)
              ? { xOffset: { field: "job", type: "nominal" as const, scale: { domain: jobs } } }
              : {}),
            y: { field: "goodput", type: "quantitative", title: "goodput per worker (MB/s)" },
            // One job per run: the x axis names it, a legend would only repeat it.
            color: {
              field: "job",
              type: "nominal",
              title: "job",
              scale: { domain: jobs },
              ...(runs.some((r) => r.jobs.length > 1) ? {} : { legend: null }),
            },
          },
        },
      });
    }
  }
  return figures;
}

/** A summary's interval as figure fields (times `scale`), or none for n < 2. */
function interval(s: Summary | null, scale: number): { low?: number; high?: number } {
  const ci = s?.medianCi ?? null; // results written before intervals of the median have none
  return ci === null ? {} : { low: scale * ci.low, high: scale * ci.high };
}

/** Runs whose fullest port the queue figure draws, at most (one line each). */
const QUEUE_FIGURE_RUNS = 8;

/** Where a link direction's queue is: the switch's port towards a host, or a host's NIC. */
function portName(link: LinkLoad): string {
  return link.direction === "down" ? `towards ${link.host}` : `${link.host}'s NIC`;
}

/**
 * The queue over time at each run's fullest port (the direction with the
 * largest mean queue among those the results keep a series for), a line per
 * run on one chart, so runs of one scenario (none, aimd, dctcp) compare at
 * a glance; a dashed rule at the ECN threshold when the ports share one.
 * Each point is a bucket's time-weighted mean, at the bucket's middle.
 */
function queueOverTime(runs: readonly RunResult[]): Figure | null {
  const rows: Array<{ t: number; run: string; queue: number; most: number }> = [];
  const thresholds = new Set<number | null>();
  let lines = 0;
  for (const run of runs) {
    if (lines === QUEUE_FIGURE_RUNS) break;
    let fullest: LinkLoad | undefined;
    for (const link of run.links ?? []) {
      if (link.queueSeries === undefined || link.queueSeries.meanBytes.length === 0) continue;
      if (fullest === undefined || link.queueMeanBytes > fullest.queueMeanBytes) fullest = link;
    }
    const series = fullest?.queueSeries;
    if (fullest === undefined || series === undefined) continue;
    thresholds.add(fullest.ecnThresholdBytes ?? null);
    const label = `${run.name}: ${portName(fullest)}`;
    series.meanBytes.forEach((mean, k) => {
      const start = k * series.bucketMs;
      const end = Math.min(start + series.bucketMs, series.spanMs);
      rows.push({
        t: (start + end) / 2,
        run: label,
        queue: mean / 1024,
        most: series.maxBytes[k] / 1024,
      });
    });
    lines++;
  }
  if (rows.length === 0) return null;
  const [threshold] = thresholds;
  const shared = thresholds.size === 1 && threshold !== null && threshold !== undefined;
  return {
    name: "queue-over-time",
    title: "The queue over time at each run's fullest port (mean per interval)",
    spec: {
      $schema: "https://vega.github.io/schema/vega-lite/v5.json",
      width: 520,
      height: 260,
      layer: [
        {
          data: { values: rows },
          mark: { type: "line", strokeWidth: 1.5 },
          encoding: {
            x: {
              field: "t",
              type: "quantitative",
              title: "time since the port's first packet (ms)",
            },
            y: { field: "queue", type: "quantitative", title: "queue (KiB, time-weighted mean)" },
            color: {
              field: "run",
              type: "nominal",
              title: "run: port",
              sort: null,
              legend: { labelLimit: 360 },
            },
            tooltip: [{ field: "run" }, { field: "t" }, { field: "queue" }, { field: "most" }],
          },
        },
        ...(shared
          ? [
              {
                data: { values: [{ threshold: threshold / 1024, label: "ECN threshold" }] },
                layer: [
                  {
                    mark: { type: "rule" as const, strokeDash: [4, 3], color: "#555" },
                    encoding: { y: { field: "threshold", type: "quantitative" as const } },
                  },
                  {
                    mark: {
                      type: "text" as const,
                      align: "left" as const,
                      baseline: "bottom" as const,
                      x: 4,
                      color: "#555",
                    },
                    encoding: {
                      y: { field: "threshold", type: "quantitative" as const },
                      text: { field: "label" },
                    },
                  },
                ],
              },
            ]
          : []),
      ],
    },
  };
}

/**
 * Per policy and job: the JCT (jobs that finished) with its deadline and
 * whether it was met; and each job's deadline once (a job's deadline is
 * the same under every policy).
 */
export function jctRows(policies: readonly PolicyResult[]): {
  jct: Array<{
    policy: string;
    job: string;
    jct: number;
    deadline: number | null;
    deadlineOutcome: "met" | "missed" | null;
  }>;
  deadlines: Array<{ job: string; deadline: number }>;
} {
  const jct = policies.flatMap((p) =>
    p.jobs.flatMap((j) =>
      j.jctS === null
        ? []
        : [
            {
              policy: p.policy,
              job: j.name,
              jct: j.jctS,
              deadline: j.deadlineS,
              deadlineOutcome:
                j.deadlineMet === null
                  ? null
                  : j.deadlineMet
                    ? ("met" as const)
                    : ("missed" as const),
            },
          ],
    ),
  );
  const deadlines = new Map<string, number>();
  for (const p of policies) {
    for (const j of p.jobs) if (j.deadlineS !== null) deadlines.set(j.name, j.deadlineS);
  }
  return { jct, deadlines: [...deadlines].map(([job, deadline]) => ({ job, deadline })) };
}

/** Figures for a scheduling scenario: JCT per job and policy, deadlines met, and each job's region over time. */
export function scheduleFigures(policies: readonly PolicyResult[]): Figure[] {
  const { jct, deadlines } = jctRows(policies);
  const policyOrder = jobOrder(policies.map((p) => p.policy));
  const jobs = jobOrder(policies.flatMap((p) => p.jobs.map((j) => j.name)));
  const regions = policies.flatMap((p) =>
    p.jobs.flatMap((j) =>
      j.regions.map((r, i) => ({
        policy: p.policy,
        job: j.name,
        start: j.arriveS + r.atS,
        end: j.arriveS + (j.regions[i + 1]?.atS ?? j.jctS ?? r.atS),
        offset: r.offset,
        top: r.offset + r.size,
      })),
    ),
  );
  // Each policy's JCTs, sorted: the share of jobs done within t.
  const cdf = policies.flatMap((p) => {
    const sorted = p.jobs
      .map((j) => j.jctS ?? Number.NaN)
      .filter(Number.isFinite)
      .sort((a, b) => a - b);
    return sorted.map((jct, i) => ({ policy: p.policy, jct, share: (i + 1) / sorted.length }));
  });
  return [
    {
      name: "jct-cdf",
      title: "Job completion times, per policy (CDF)",
      spec: {
        $schema: "https://vega.github.io/schema/vega-lite/v5.json",
        width: 520,
        height: 300,
        data: { values: cdf },
        mark: { type: "line", interpolate: "step-after", point: true },
        encoding: {
          x: { field: "jct", type: "quantitative", title: "JCT (s, submission to done)" },
          y: {
            field: "share",
            type: "quantitative",
            title: "share of jobs done",
            scale: { domain: [0, 1] },
          },
          color: { field: "policy", type: "nominal", title: "policy" },
        },
      },
    },
    {
      name: "jct-per-policy",
      title: "Job completion time per job and policy",
      subtitle:
        deadlines.length === 0
          ? undefined
          : ["black bar across a job: its deadline; on each bar: ● met, ✚ missed"],
      spec: {
        $schema: "https://vega.github.io/schema/vega-lite/v5.json",
        width: 520,
        height: 300,
        encoding: {
          x: {
            field: "job",
            type: "nominal",
            title: "job",
            sort: jobs,
            axis: { labelAngle: -30 },
          },
        },
        layer: [
          {
            data: { values: jct },
            mark: "bar",
            encoding: {
              xOffset: { field: "policy", type: "nominal", scale: { domain: policyOrder } },
              y: { field: "jct", type: "quantitative", title: "JCT (s, submission to done)" },
              color: {
                field: "policy",
                type: "nominal",
                title: "policy",
                scale: { domain: policyOrder },
              },
            },
          },
          ...(deadlines.length === 0
            ? []
            : [
                {
                  data: { values: deadlines },
                  mark: { type: "tick" as const, color: "black", thickness: 2.5 },
                  encoding: { y: { field: "deadline", type: "quantitative" as const } },
                },
                {
                  data: { values: jct.filter((r) => r.deadline !== null) },
                  mark: {
                    type: "point" as const,
                    filled: true,
                    color: "black",
                    size: 60,
                    strokeWidth: 2,
                  },
                  encoding: {
                    xOffset: {
                      field: "policy",
                      type: "nominal" as const,
                      scale: { domain: policyOrder },
                    },
                    y: { field: "jct", type: "quantitative" as const },
                    shape: {
                      field: "deadlineOutcome",
                      type: "nominal" as const,
                      title: "deadline",
                      scale: { domain: ["met", "missed"], range: ["circle", "cross"] },
                    },
                  },
                },
              ]),
        ],
        resolve: { scale: { xOffset: "shared" } },
      },
    },
    {
      name: "deadlines-met",
      title: "Deadlines met per policy",
      spec: {
        $schema: "https://vega.github.io/schema/vega-lite/v5.json",
        width: 300,
        height: 240,
        data: {
          values: policies.map((p) => ({
            policy: p.policy,
            met: p.deadlinesMet,
            of: p.deadlineJobs,
          })),
        },
        mark: "bar",
        encoding: {
          x: { field: "policy", type: "nominal", title: "policy" },
          y: { field: "met", type: "quantitative", title: "MD jobs that met their deadline" },
        },
      },
    },
    {
      name: "regions-over-time",
      title: "Who held which aggregators when, per policy",
      spec: {
        $schema: "https://vega.github.io/schema/vega-lite/v5.json",
        data: { values: regions },
        facet: { row: { field: "policy", type: "nominal", title: "policy" } },
        spec: {
          width: 520,
          height: 160,
          mark: { type: "rect", stroke: "white", strokeWidth: 0.5 },
          encoding: {
            x: { field: "start", type: "quantitative", title: "time since the first arrival (s)" },
            x2: { field: "end" },
            y: { field: "offset", type: "quantitative", title: "aggregator index" },
            y2: { field: "top" },
            color: { field: "job", type: "nominal", title: "job" },
          },
        },
      },
    },
  ];
}

/** The share of the narrowest gap between swept values that several series at one x spread over. */
const DODGE_SHARE = 0.2;

/**
 * Where each series is drawn at each x: side by side around x, not on one
 * another. Vega-Lite's xOffset needs a discrete x, and a swept value is
 * continuous, so the offset is made in data units: a share of the narrowest
 * gap between swept values, in log2 units on a log2 axis. One series: x itself.
 */
export function dodgedX(
  x: number,
  seriesIndex: number,
  seriesCount: number,
  xs: readonly number[],
  log2: boolean,
): number {
  if (seriesCount < 2 || xs.length < 2) return x;
  const at = log2 ? xs.map(Math.log2) : [...xs];
  let gap = Number.POSITIVE_INFINITY;
  for (let i = 1; i < at.length; i++) gap = Math.min(gap, at[i] - at[i - 1]);
  const step = (DODGE_SHARE * gap) / (seriesCount - 1);
  const offset = (seriesIndex - (seriesCount - 1) / 2) * step;
  return log2 ? 2 ** (Math.log2(x) + offset) : x + offset;
}

/**
 * A line per series against x: each point a median, with a rule for its
 * interval (rows without low/high have none); several series at one x
 * dodged side by side (field `at`, see dodgedX), x in log2 for a
 * power-of-two sweep, its ticks at the swept values.
 */
export function layered(
  rows: ReadonlyArray<{ x: number; series: string; value: number; low?: number; high?: number }>,
  order: readonly string[],
  xTitle: string,
  yTitle: string,
  yDomain?: [number, number],
): vegaLite.TopLevelSpec {
  const xs = [...new Set(rows.map((r) => r.x))].sort((a, b) => a - b);
  const log2 = isPowerOfTwoSweep(xs);
  const series = order.filter((name) => rows.some((r) => r.series === name));
  const values = rows.map((r) => ({
    ...r,
    at: dodgedX(r.x, series.indexOf(r.series), series.length, xs, log2),
  }));
  const x = {
    field: "at",
    type: "quantitative" as const,
    title: log2 ? `${xTitle}, log2 scale` : xTitle,
    axis: { values: xs, ...(log2 ? { format: "~s" } : {}) },
    scale: log2
      ? { type: "log" as const, base: 2, nice: false, padding: 24 }
      : { nice: false, padding: 24, zero: false },
  };
  const color = {
    field: "series",
    type: "nominal" as const,
    title: "job",
    scale: { domain: series },
  };
  const y = {
    type: "quantitative" as const,
    ...(yDomain === undefined ? { scale: { zero: true } } : { scale: { domain: yDomain } }),
  };
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    width: 520,
    height: 300,
    data: { values },
    layer: [
      {
        mark: { type: "line", point: { size: 40 } },
        encoding: {
          x,
          y: { ...y, field: "value", title: yTitle },
          color,
          tooltip: [
            { field: "series" },
            { field: "x" },
            { field: "value" },
            { field: "low" },
            { field: "high" },
          ],
        },
      },
      {
        transform: [{ filter: "isValid(datum.low)" }],
        mark: { type: "rule", strokeWidth: 1.5 },
        encoding: {
          x,
          y: { ...y, field: "low" },
          y2: { field: "high" },
          color,
        },
      },
    ],
  };
}

/** Renders a figure to SVG (vega, headless) and PNG (resvg), at twice the SVG's size. */
export async function renderFigure(figure: Figure): Promise<RenderedFigure> {
  const spec = {
    ...figure.spec,
    title:
      figure.subtitle === undefined
        ? figure.title
        : { text: figure.title, subtitle: figure.subtitle, subtitleColor: "#444" },
    background: "white",
    config: { font: "DejaVu Sans" },
  } as vegaLite.TopLevelSpec;
  const compiled = vegaLite.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  const resvg = new Resvg(svg, {
    fitTo: { mode: "zoom", value: 2 },
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" },
  });
  const image = resvg.render();
  return { ...figure, svg, png: image.asPng(), width: image.width, height: image.height };
}
