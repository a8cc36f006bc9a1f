import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The live page the control plane serves at GET /ui: the aggregator array,
 * regions, jobs, the memory manager's decisions and the ports, polled from
 * GET /ui/state twice a second. Its charts are Vega-Lite specs drawn in the
 * browser by the vega and vega-lite builds this package depends on, served
 * from GET /ui/vega.js and /ui/vega-lite.js: nothing comes from the network.
 */

/** A file of an installed package, found from this module up through node_modules. */
function packageFile(pkg: string, file: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, "node_modules", pkg, file);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`the live page needs ${pkg}/${file}: is ${pkg} installed?`);
    dir = parent;
  }
}

let assets: { vega: string; vegaLite: string } | null = null;

/** The browser builds of vega and vega-lite, read once. */
export function uiAssets(): { vega: string; vegaLite: string } {
  assets ??= {
    vega: readFileSync(packageFile("vega", "build/vega.min.js"), "utf8"),
    vegaLite: readFileSync(packageFile("vega-lite", "build/vega-lite.min.js"), "utf8"),
  };
  return assets;
}

export const UI_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ina-switch: live</title>
<link rel="icon" href="data:,">
<style>
body { font-family: "DejaVu Sans", sans-serif; margin: 1.5em; }
h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin-top: 1.5em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { text-align: left; padding: 0.15em 0.7em; border-bottom: 1px solid #ddd; }
.muted { color: #777; }
</style>
<script src="/ui/vega.js"></script>
<script src="/ui/vega-lite.js"></script>
</head>
<body data-polls="0">
<h1>ina-switch, live <span id="clock" class="muted"></span></h1>
<p class="muted">The switch's memory: each cell an aggregator, coloured by the job that holds it and
shaded by state (partial, complete, fallback; empty cells grey); regions outlined and labelled,
draining regions dashed. Polled from /ui/state every 500 ms.</p>
<div id="strip"></div>
<h2>Jobs</h2>
<table id="jobs"><thead><tr><th>job</th><th>mode</th><th>class</th><th>status</th><th>region</th>
<th>aggregations/s</th><th>aggregations</th><th>collisions</th><th>fallbacks</th><th>resends</th>
<th>deadline</th><th>why it waits</th></tr></thead><tbody></tbody></table>
<h2>Aggregation rate</h2>
<div id="rate"></div>
<h2>The memory manager's decisions</h2>
<div id="timeline"></div>
<ul id="decisions" class="muted"></ul>
<h2>Ports</h2>
<p class="muted">The queue at the switch's port towards each host: its time-weighted mean between
polls (dashed: the ECN threshold, when the ports share one); the table's mean and p99 are over the
port's whole busy span.</p>
<div id="queues"></div>
<table id="ports"><thead><tr><th>host</th><th>rate</th><th>bytes</th><th>queue now</th><th>queue mean</th>
<th>queue p99</th><th>queue high water</th><th>drops</th><th>ECN marks</th></tr></thead><tbody></tbody></table>
<script>
"use strict";
const STATES = ["empty", "partial", "complete", "fallback"];
const OPACITY = { empty: 0.25, partial: 0.55, complete: 1, fallback: 0.35 };
const views = {};
const rates = [];
const queues = [];
let previous = null;
let polls = 0;

async function draw(id, spec) {
  if (views[id]) views[id].finalize();
  const el = document.getElementById(id);
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: "svg", container: el, hover: false });
  views[id] = view;
  await view.runAsync();
}

function text(s) { return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]); }

function render(state) {
  const name = new Map(state.jobs.map((j) => [j.id, j.name]));
  const label = (id) => (id < 0 ? "(free)" : name.get(id) || "job " + id);
  document.getElementById("clock").textContent = (state.now / 1000).toFixed(1) + " s";
  // The array: runs of (job, state), regions outlined on top.
  const cells = state.runs.map(([first, length, job, s]) => ({
    start: first, end: first + length, job: label(job), state: STATES[s], opacity: OPACITY[STATES[s]],
  }));
  const regions = state.regions.map((r) => ({
    start: r.offset, end: r.offset + r.size, mid: r.offset + r.size / 2,
    label: label(r.jobId) + (r.draining ? " (draining)" : "") + " [" + r.offset + ", " + (r.offset + r.size) + ")",
    draining: r.draining ? "draining" : "current",
  }));
  draw("strip", {
    width: 900, height: 60,
    layer: [
      { data: { values: cells }, mark: { type: "rect", y: 10, y2: 50 },
        encoding: {
          x: { field: "start", type: "quantitative", title: "aggregator", scale: { domain: [0, state.aggregators] } },
          x2: { field: "end" },
          color: { field: "job", type: "nominal", title: "held by" },
          opacity: { field: "opacity", type: "quantitative", legend: null, scale: null },
          tooltip: [{ field: "job" }, { field: "state" }, { field: "start" }, { field: "end" }] } },
      { data: { values: regions }, mark: { type: "rect", y: 6, y2: 54, fill: null, stroke: "black" },
        encoding: { x: { field: "start", type: "quantitative" }, x2: { field: "end" },
          strokeDash: { field: "draining", type: "nominal", legend: null,
            scale: { domain: ["current", "draining"], range: [[1, 0], [4, 3]] } } } },
      { data: { values: regions }, mark: { type: "text", y: 0, fontSize: 10, baseline: "bottom" },
        encoding: { x: { field: "mid", type: "quantitative" }, text: { field: "label" } } },
    ],
  });
  // Rates: aggregations completed per second since the last poll.
  const t = state.now / 1000;
  const rateOf = new Map();
  if (previous) {
    const dt = (state.now - previous.now) / 1000;
    for (const j of state.jobs) {
      const before = previous.jobs.find((p) => p.id === j.id);
      const r = before && dt > 0 ? Math.max(0, j.aggregationsCompleted - before.aggregationsCompleted) / dt : 0;
      rateOf.set(j.id, r);
      rates.push({ t, job: j.name, rate: r });
    }
    while (rates.length > 2000) rates.shift();
    // Each port's mean queue since the last poll: its queue's area over time, differenced.
    for (const p of state.ports) {
      const before = previous.ports.find((q) => q.host === p.host);
      if (before && dt > 0 && p.queueAreaByteMs !== undefined && before.queueAreaByteMs !== undefined) {
        queues.push({ t, port: p.host, queue: Math.max(0, p.queueAreaByteMs - before.queueAreaByteMs) / (dt * 1000) / 1024 });
      }
    }
    // The last two minutes.
    while (queues.length > 0 && (queues[0].t < t - 120 || queues.length > 20000)) queues.shift();
  }
  previous = state;
  draw("rate", {
    width: 900, height: 180, data: { values: rates }, mark: "line",
    encoding: {
      x: { field: "t", type: "quantitative", title: "time (s)" },
      y: { field: "rate", type: "quantitative", title: "aggregations per second" },
      color: { field: "job", type: "nominal", title: "job" } },
  });
  // Decisions: every region each managed job held, as a picture of the array over time.
  const held = state.jobs.flatMap((j) => j.history.map((h, i) => ({
    job: j.name, from: h.at / 1000,
    to: (j.history[i + 1] ? j.history[i + 1].at : j.finishedAt !== null ? j.finishedAt : state.now) / 1000,
    offset: h.offset, top: h.offset + h.size })));
  draw("timeline", {
    width: 900, height: 160, data: { values: held }, mark: { type: "rect", stroke: "white", strokeWidth: 0.5 },
    encoding: {
      x: { field: "from", type: "quantitative", title: "time (s)" }, x2: { field: "to" },
      y: { field: "offset", type: "quantitative", title: "aggregator", scale: { domain: [0, state.aggregators] } },
      y2: { field: "top" }, color: { field: "job", type: "nominal", title: "job" } },
  });
  document.getElementById("decisions").innerHTML = state.jobs.filter((j) => j.class !== null).map((j) =>
    "<li>" + text(j.name) + ": submitted at " + (j.submittedAt / 1000).toFixed(1) + " s; " +
    j.history.map((h, i) => (i === 0 ? "granted " : "moved to ") + "[" + h.offset + ", " + (h.offset + h.size) + ") at " + (h.at / 1000).toFixed(1) + " s").join("; ") +
    "; now " + text(j.status) + "</li>").join("");
  const region = (id) => state.regions.filter((r) => r.jobId === id && !r.draining).map((r) => "[" + r.offset + ", " + (r.offset + r.size) + ")").join(" ") || "-";
  document.querySelector("#jobs tbody").innerHTML = state.jobs.map((j) =>
    '<tr data-job="' + j.id + '"><td>' + text(j.name) + "</td><td>" + text(j.mode) + "</td><td>" + text(j.class || "-") +
    "</td><td>" + text(j.status) + '</td><td class="region">' + region(j.id) + '</td><td class="rate">' +
    (rateOf.get(j.id) || 0).toFixed(0) + "</td><td>" + j.aggregationsCompleted + "</td><td>" + j.collisions +
    "</td><td>" + j.fallbacks + "</td><td>" + j.resends + "</td><td>" +
    (j.deadlineAt === null ? "-" : ((j.deadlineAt - state.now) / 1000).toFixed(1) + " s left" + (j.deadlineFeasible === false ? " (not feasible)" : "")) +
    "</td><td>" + text(j.reason || "") + "</td></tr>").join("");
  if (state.ports.length > 0) {
    const thresholds = [...new Set(state.ports.map((p) => p.ecnThresholdBytes))];
    const marking = thresholds.length === 1 && thresholds[0] !== null ? [{ k: thresholds[0] / 1024 }] : [];
    draw("queues", {
      width: 900, height: 160,
      layer: [
        { data: { values: queues }, mark: "line",
          encoding: {
            x: { field: "t", type: "quantitative", title: "time (s)" },
            y: { field: "queue", type: "quantitative", title: "queue (KiB, mean between polls)" },
            color: { field: "port", type: "nominal", title: "towards" } } },
        { data: { values: marking }, mark: { type: "rule", strokeDash: [4, 3], color: "#555" },
          encoding: { y: { field: "k", type: "quantitative" } } },
      ],
    });
  }
  document.querySelector("#ports tbody").innerHTML = state.ports.map((p) =>
    '<tr data-port="' + text(p.host) + '"><td>' + text(p.host) + "</td><td>" + (p.rateBitsPerSecond / 1e6).toFixed(0) + " Mbps</td><td>" + p.bytes +
    '</td><td class="queue-now">' + (p.queueBytes || 0) + " B</td><td>" + (p.queueMeanBytes || 0) + " B</td><td>" + (p.queueP99Bytes || 0) + " B</td><td>" +
    p.queueHighWaterBytes + " B</td><td>" + p.drops + "</td><td>" + p.marks + "</td></tr>").join("") ||
    '<tr><td colspan="9" class="muted">no emulated links</td></tr>';
  polls++;
  document.body.dataset.polls = String(polls);
}

async function poll() {
  try {
    const response = await fetch("/ui/state");
    if (response.ok) render(await response.json());
  } finally {
    setTimeout(poll, 500);
  }
}
poll();
</script>
</body>
</html>
`;
