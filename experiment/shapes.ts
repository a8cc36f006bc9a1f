import type { Scenario } from "../proto/scenario.js";
import { pathModel, windowLimitedMBps } from "./bounds.js";
import type { RunResult } from "./results.js";
import { resolveJobs } from "./scenario.js";

/**
 * The fidelity experiments' shapes: what a scenario's runs measured, next to
 * what the emulated network predicts. Each analysis reads the runs by name
 * (as the shipped scenarios name them) and returns a table for people and
 * the same figures as data for the results file.
 */
export interface ShapeReport {
  shape: string;
  table: string;
  data: Record<string, unknown>;
}

export function analyzeShape(scenario: Scenario, runs: RunResult[]): ShapeReport | null {
  switch (scenario.shape) {
    case "ps-vs-ina":
      return psVsIna(runs);
    case "window-knee":
      return windowKnee(scenario, runs);
    case "incast-ecn":
      return incastEcn(runs);
    case "scale":
      return scale(scenario, runs);
    default:
      return null;
  }
}

function format(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return `${rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join("  ")).join("\n")}\n`;
}

const ok = (run: RunResult | undefined): run is RunResult =>
  run !== undefined && run.error === undefined && run.jobs.length > 0;

/** The N each run is named for ("ina-8" is N = 8), each once, ascending. */
function sizesInNames(runs: RunResult[]): number[] {
  const sizes = runs.map((r) => Number(/-(\d+)$/.exec(r.name)?.[1])).filter((n) => n > 0);
  return [...new Set(sizes)].sort((a, b) => a - b);
}

/**
 * time(PS) / time(NetReduce) at each N: the PS's link carries N x M, a
 * worker's M; and time(ring) / time(NetReduce): a ring worker's link carries
 * 2(N-1)/N x M.
 */
function psVsIna(runs: RunResult[]): ShapeReport {
  const byName = new Map(runs.map((r) => [r.name, r]));
  const sizes = sizesInNames(runs);
  const rows = [
    [
      "N",
      "NetReduce s",
      "PS s",
      "PS / NetReduce",
      "expected",
      "ring s",
      "ring / NetReduce",
      "expected",
      "bound",
    ],
  ];
  const data: Array<Record<string, unknown>> = [];
  for (const n of sizes) {
    const ina = byName.get(`netreduce-${n}`);
    const ps = byName.get(`ps-${n}`);
    const ring = byName.get(`ring-${n}`);
    if (!ok(ina)) continue;
    const inaSeconds = ina.jobs[0].seconds;
    const psSeconds = ok(ps) ? ps.jobs[0].seconds : Number.NaN;
    const ringSeconds = ok(ring) ? ring.jobs[0].seconds : Number.NaN;
    const ringExpected = (2 * (n - 1)) / n;
    const fixed = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : "-");
    rows.push([
      String(n),
      fixed(inaSeconds),
      fixed(psSeconds),
      fixed(psSeconds / inaSeconds),
      String(n),
      fixed(ringSeconds),
      fixed(ringSeconds / inaSeconds),
      ringExpected.toFixed(2),
      [ina, ps, ring].map((r) => r?.bound ?? "-").join(" / "),
    ]);
    data.push({
      workers: n,
      netreduceSeconds: inaSeconds,
      psSeconds,
      ratio: psSeconds / inaSeconds,
      expected: n,
      ringSeconds,
      ringRatio: ringSeconds / inaSeconds,
      ringExpected,
      bound: [ina.bound, ps?.bound ?? null, ring?.bound ?? null],
    });
  }
  return { shape: "ps-vs-ina", table: format(rows), data: { points: data } };
}

/**
 * Goodput against the window: about window x payload / RTT until window x
 * packet reaches rate x RTT (the bandwidth-delay product), then the line
 * rate (experiment/bounds.ts: pathModel, windowLimitedMBps).
 */
function windowKnee(scenario: Scenario, runs: RunResult[]): ShapeReport {
  const first = scenario.runs[0];
  if (first?.links === undefined) {
    return { shape: "window-knee", table: "window-knee: needs runs with links\n", data: {} };
  }
  const links = first.links;
  const { rttMs, lineMBps, packetBytes, bytesPerMs } = pathModel(
    resolveJobs(first, scenario.seed)[0],
    links,
  );
  const predictedKnee = (bytesPerMs * rttMs) / packetBytes;
  const resolved = new Map(scenario.runs.map((r) => [r.name, resolveJobs(r, scenario.seed)[0]]));
  const points = runs.filter(ok).map((r) => {
    const job = resolved.get(r.name);
    return {
      window: r.jobs[0].window,
      predictedMBps: job === undefined ? Number.NaN : windowLimitedMBps(job, links),
      measuredMBps: r.jobs[0].goodputMBps,
      bound: r.bound,
    };
  });
  points.sort((a, b) => a.window - b.window);
  const best = Math.max(...points.map((p) => p.measuredMBps));
  // The measured knee: the smallest window within 10 % of the best goodput.
  const measuredKnee = points.find((p) => p.measuredMBps >= 0.9 * best)?.window ?? null;
  const rows = [["window", "predicted MB/s", "measured MB/s", "bound"]];
  for (const p of points) {
    rows.push([
      String(p.window),
      p.predictedMBps.toFixed(2),
      p.measuredMBps.toFixed(2),
      p.bound ?? "-",
    ]);
  }
  const summary =
    `knee: predicted at a window of ${predictedKnee.toFixed(1)} packets ` +
    `(rate x RTT = ${(bytesPerMs * rttMs).toFixed(0)} bytes, RTT ${rttMs.toFixed(2)} ms), ` +
    `measured at ${measuredKnee ?? "-"} (the smallest window within 10% of the best goodput)\n`;
  return {
    shape: "window-knee",
    table: format(rows) + summary,
    data: { rttMs, lineMBps, predictedKnee, measuredKnee, points },
  };
}

/** Drops and marks at the PS's port, per congestion control. */
function incastEcn(runs: RunResult[]): ShapeReport {
  const rows = [["run", "PS port drops", "PS port marks", "retransmits", "seconds", "verified"]];
  const data: Array<Record<string, unknown>> = [];
  for (const r of runs.filter(ok)) {
    const psPort = r.links?.find((l) => l.host === "ps" && l.direction === "down");
    const retransmits = r.jobs.reduce((n, j) => n + j.retransmissions, 0);
    const seconds = Math.max(...r.jobs.map((j) => j.startMs / 1000 + j.seconds));
    rows.push([
      r.name,
      String(psPort?.drops ?? 0),
      String(psPort?.marks ?? 0),
      String(retransmits),
      seconds.toFixed(2),
      r.verified ? "yes" : "NO",
    ]);
    data.push({
      run: r.name,
      psPortDrops: psPort?.drops ?? 0,
      psPortMarks: psPort?.marks ?? 0,
      retransmits,
      seconds,
      verified: r.verified,
    });
  }
  return { shape: "incast-ecn", table: format(rows), data: { points: data } };
}

/**
 * NetReduce against ring as workers are added, on links fast enough that
 * only the links matter: NetReduce moves the tensor once each way, so its
 * time is about size / line rate + one round trip whatever N (aggregated
 * elements per second flat); ring moves 2(N-1)/N of it, so its time grows
 * towards twice that.
 */
function scale(scenario: Scenario, runs: RunResult[]): ShapeReport {
  const byName = new Map(runs.map((r) => [r.name, r]));
  const specs = new Map(scenario.runs.map((r) => [r.name, r]));
  const sizes = sizesInNames(runs);
  const rows = [
    [
      "N",
      "NetReduce s",
      "expected s",
      "NR Gelem/s",
      "ring s",
      "expected s",
      "ring Gelem/s",
      "ring / NR",
      "2(N-1)/N",
    ],
  ];
  const data: Array<Record<string, unknown>> = [];
  const fixed = (v: number, d = 4) => (Number.isFinite(v) ? v.toFixed(d) : "-");
  for (const n of sizes) {
    const ina = byName.get(`netreduce-${n}`);
    const ring = byName.get(`ring-${n}`);
    const spec = specs.get(`netreduce-${n}`);
    if (!ok(ina) || spec?.links === undefined) continue;
    const job = resolveJobs(spec, scenario.seed)[0];
    const { rttMs, lineMBps } = pathModel(job, spec.links);
    const transferS = job.tensorBytes / (lineMBps * 1e6);
    const expectedIna = transferS + rttMs / 1000;
    const expectedRing = ((2 * (n - 1)) / n) * transferS + rttMs / 1000;
    const elements = job.tensorBytes / 4;
    const inaSeconds = ina.jobs[0].seconds;
    const ringSeconds = ok(ring) ? ring.jobs[0].seconds : Number.NaN;
    rows.push([
      String(n),
      fixed(inaSeconds),
      fixed(expectedIna),
      fixed(elements / inaSeconds / 1e9, 3),
      fixed(ringSeconds),
      fixed(expectedRing),
      fixed(elements / ringSeconds / 1e9, 3),
      fixed(ringSeconds / inaSeconds, 2),
      ((2 * (n - 1)) / n).toFixed(2),
    ]);
    data.push({
      workers: n,
      netreduceSeconds: inaSeconds,
      netreduceExpected: expectedIna,
      ringSeconds,
      ringExpected: expectedRing,
      netreduceElementsPerSecond: elements / inaSeconds,
      ringElementsPerSecond: elements / ringSeconds,
    });
  }
  return { shape: "scale", table: format(rows), data: { points: data } };
}
