import { Resvg } from "@resvg/resvg-js";
import * as vega from "vega";
import * as vegaLite from "vega-lite";
import type { LinkLoad, RunResult } from "./results.js";
import type { PolicyResult } from "./schedule.js";
import type { PointStatistics } from "./sweep.js";

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

/** Figures for a plain scenario's results: its runs and, with sweeps or repeats, their points. */
export function runFigures(
  runs: readonly RunResult[],
  points: readonly PointStatistics[],
): Figure[] {
  const figures: Figure[] = [];
  const swept = [...new Set(points.flatMap((p) => Object.keys(p.values)))];
  for (const key of swept) {
    const rows = points
      .filter((p) => p.goodputMBps !== null && key in p.values)
      .map((p) => ({
        x: p.values[key],
        series: `${p.job} (${p.mode})`,
        goodput: p.goodputMBps?.median ?? 0,
        low: p.goodputMBps?.ci95[0] ?? 0,
        high: p.goodputMBps?.ci95[1] ?? 0,
      }));
    if (rows.length === 0) continue;
    const xTitle = AXIS_UNITS[key] ?? key;
    figures.push({
      name: `goodput-vs-${key}`,
      title: `Goodput per worker against ${xTitle}`,
      spec: layered(rows, xTitle, "goodput per worker (MB/s), median and 95% CI", "goodput"),
    });
    const atp = points
      .filter((p) => p.fallbackFraction !== null && key in p.values)
      .map((p) => ({
        x: p.values[key],
        series: p.job,
        fallback: 100 * (p.fallbackFraction?.median ?? 0),
        low: 100 * (p.fallbackFraction?.ci95[0] ?? 0),
        high: 100 * (p.fallbackFraction?.ci95[1] ?? 0),
      }));
    if (atp.length > 0) {
      figures.push({
        name: `fallback-vs-${key}`,
        title: `ATP fallback to the PS against ${xTitle}`,
        spec: layered(atp, xTitle, "contributions that fell back to the PS (%)", "fallback"),
      });
    }
  }
  // The switch's ports over time, for the first runs with links.
  for (const run of runs.filter((r) => (r.linkSeries?.length ?? 0) > 0).slice(0, 4)) {
    figures.push({
      name: `links-${run.name.replace(/[^A-Za-z0-9_-]/g, "_")}`,
      title: `Run ${run.name}: utilization of the switch's port towards each host`,
      spec: {
        $schema: "https://vega.github.io/schema/vega-lite/v5.json",
        width: 520,
        height: 240,
        data: {
          values: (run.linkSeries ?? []).map((p) => ({ ...p, utilization: 100 * p.utilization })),
        },
        mark: "line",
        encoding: {
          x: { field: "t", type: "quantitative", title: "time (s)" },
          y: {
            field: "utilization",
            type: "quantitative",
            title: "utilization (% of the line rate)",
          },
          color: { field: "host", type: "nominal", title: "towards" },
        },
      },
    });
  }
  const queues = queueOverTime(runs);
  if (queues !== null) figures.push(queues);
  if (swept.length === 0) {
    const rows = runs.flatMap((r) =>
      r.jobs.map((j) => ({ run: r.name, job: `${j.name} (${j.mode})`, goodput: j.goodputMBps })),
    );
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
            ...(runs.some((r) => r.jobs.length > 1) ? { xOffset: { field: "job" } } : {}),
            y: { field: "goodput", type: "quantitative", title: "goodput per worker (MB/s)" },
            color: { field: "job", type: "nominal", title: "job" },
          },
        },
      });
    }
  }
  return figures;
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

/** Figures for a scheduling scenario: JCT per job and policy, deadlines met, and each job's region over time. */
export function scheduleFigures(policies: readonly PolicyResult[]): Figure[] {
  const jct = policies.flatMap((p) =>
    p.jobs.map((j) => ({ policy: p.policy, job: j.name, jct: j.jctS ?? 0 })),
  );
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
      spec: {
        $schema: "https://vega.github.io/schema/vega-lite/v5.json",
        width: 520,
        height: 300,
        data: { values: jct },
        mark: "bar",
        encoding: {
          x: { field: "job", type: "nominal", title: "job", axis: { labelAngle: -30 } },
          xOffset: { field: "policy" },
          y: { field: "jct", type: "quantitative", title: "JCT (s, submission to done)" },
          color: { field: "policy", type: "nominal", title: "policy" },
        },
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

/** A line per series against x, with a rule for each point's 95 % interval. */
function layered(
  rows: Array<Record<string, number | string>>,
  xTitle: string,
  yTitle: string,
  field: string,
): vegaLite.TopLevelSpec {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    width: 520,
    height: 300,
    data: { values: rows },
    layer: [
      {
        mark: { type: "line", point: true },
        encoding: {
          x: { field: "x", type: "quantitative", title: xTitle },
          y: { field, type: "quantitative", title: yTitle },
          color: { field: "series", type: "nominal", title: "job" },
        },
      },
      {
        mark: "rule",
        encoding: {
          x: { field: "x", type: "quantitative" },
          y: { field: "low", type: "quantitative" },
          y2: { field: "high" },
          color: { field: "series", type: "nominal" },
        },
      },
    ],
  };
}

/** Renders a figure to SVG (vega, headless) and PNG (resvg), at twice the SVG's size. */
export async function renderFigure(figure: Figure): Promise<RenderedFigure> {
  const spec = {
    ...figure.spec,
    title: figure.title,
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
