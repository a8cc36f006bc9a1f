import type { RunResult } from "./results.js";
import type { PolicyResult, PolicyStatistics } from "./schedule.js";
import { type PointStatistics, STATISTIC_NOTE, type Summary } from "./sweep.js";

/** The experiment's tables for people: one row per job, then failures and faults. */

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/**
 * A time as people read it, three significant digits in the unit that fits:
 * 128 µs, 3.20 ms, 1.25 s ("-" when not a number). CSVs keep seconds.
 */
export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "-";
  if (seconds === 0) return "0 s";
  const [scaled, unit] =
    seconds < 1e-3 ? [seconds * 1e6, "µs"] : seconds < 1 ? [seconds * 1e3, "ms"] : [seconds, "s"];
  return `${significant(scaled)} ${unit}`;
}

/**
 * A bandwidth given in MB/s (10^6 bytes/s) as people read it: 850 MB/s,
 * 12.5 GB/s (nccl-tests' unit), 975 B/s on a dead link. CSVs keep MB/s.
 */
export function formatBandwidth(megabytesPerSecond: number): string {
  if (!Number.isFinite(megabytesPerSecond) || megabytesPerSecond < 0) return "-";
  if (megabytesPerSecond >= 1000) return `${significant(megabytesPerSecond / 1000)} GB/s`;
  if (megabytesPerSecond >= 1 || megabytesPerSecond === 0) {
    return `${significant(megabytesPerSecond)} MB/s`;
  }
  return megabytesPerSecond >= 1e-3
    ? `${significant(megabytesPerSecond * 1000)} kB/s`
    : `${significant(megabytesPerSecond * 1e6)} B/s`;
}

/** Bytes in binary units: 512 B, 64.0 KiB, 16.0 MiB, 1.00 GiB. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (i < units.length - 1 && bytes >= 1024 ** (i + 1)) i++;
  return i === 0 ? `${Math.round(bytes)} B` : `${significant(bytes / 1024 ** i)} ${units[i]}`;
}

/** Three significant digits, without an exponent: 1.25, 12.5, 125, 1250. */
function significant(x: number): string {
  if (x >= 100) return x.toFixed(0);
  if (x > 0 && x < 1) return x >= 0.001 ? x.toPrecision(3) : x.toExponential(2);
  const digits = x >= 10 ? 1 : 2;
  const text = x.toFixed(digits);
  // 99.96 rounds up to "100.0": one digit fewer then.
  return text.length > 4 && digits > 0 ? x.toFixed(digits - 1) : text;
}

/** Elements a job's workers got wrong: each worker's larger of not bit-exact and out of bound, summed. */
function wrongElements(job: RunResult["jobs"][number]): string {
  let wrong = 0;
  for (const w of job.perWorker) {
    const n = Math.max(w.notBitExact, w.outOfBound);
    if (!Number.isFinite(n)) return "-";
    wrong += n;
  }
  return String(wrong);
}

export function formatTable(runs: RunResult[]): string {
  const header = [
    "run",
    "job",
    "mode",
    "workers",
    "size/w",
    "aggregators",
    "start",
    "time",
    "goodput/w",
    "sent/w",
    "recv/w",
    "algbw",
    "busbw",
    "collisions",
    "fallback",
    "retransmits",
    "bound",
    "wrong",
    "verified",
  ];
  const rows = runs.flatMap((run) =>
    run.jobs.map((j) => [
      run.name,
      j.name,
      j.mode === "ring" && j.operation !== "allReduce" ? `ring ${j.operation}` : j.mode,
      String(j.workers),
      // Per call, as nccl-tests' size and as sent/w and recv/w.
      formatBytes(j.bytesPerWorker),
      j.mode === "ps" || j.mode === "ring"
        ? "-"
        : `${j.regionSize}${j.mode === "atp" && sharesSlice(j, run.jobs) ? " shared" : ""}`,
      formatSeconds(j.startMs / 1000),
      formatSeconds(j.seconds),
      formatBandwidth(j.goodputMBps),
      formatBytes(j.bytesSentPerWorker),
      formatBytes(j.bytesReceivedPerWorker),
      formatBandwidth(j.algbwMBps),
      formatBandwidth(j.busbwMBps),
      j.mode === "atp" ? String(j.collisions) : "-",
      j.mode === "atp" ? pct(j.fallbackFraction) : j.mode === "ps" ? "all" : "-",
      String(j.retransmissions),
      run.bound ?? "-",
      wrongElements(j),
      j.verified ? "yes" : "NO",
    ]),
  );
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) =>
    cells.map((cell, c) => (c < 3 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ");
  const faults = runs.map((r) => {
    const f = r.faults;
    return f.loss + f.duplicate + f.reorder > 0
      ? `${r.name}: loss ${f.loss}, duplicate ${f.duplicate}, reorder ${f.reorder} each way`
      : null;
  });
  const notes = faults.filter((f) => f !== null);
  const jcts = jctSummary(runs);
  return [
    line(header),
    ...rows.map(line),
    ...failures(runs),
    ...(notes.length > 0 ? ["", `faults: ${notes.join("; ")}`] : []),
    ...(jcts.length > 0 ? ["", ...jcts] : []),
    "",
  ].join("\n");
}

/**
 * Runs of several jobs: their average and tail (max) JCT, as a ratio of the
 * first such run's, with the ATP pool's preemptions and mean occupancy.
 */
function jctSummary(runs: RunResult[]): string[] {
  const multi = runs.filter((r) => r.error === undefined && r.jobs.length > 1);
  const base = multi[0];
  return multi.map((r) => {
    const stats = r.switch as { preemptions?: number; occupancy?: { meanFraction: number } };
    const ratio =
      r === base || base.averageJctS <= 0
        ? ""
        : ` (${(r.averageJctS / base.averageJctS).toFixed(3)} and ${(r.maxJctS / base.maxJctS).toFixed(3)} x ${base.name}'s)`;
    const atp = r.jobs.some((j) => j.mode === "atp");
    return (
      `${r.name}: JCT average ${formatSeconds(r.averageJctS)}, max ${formatSeconds(r.maxJctS)}${ratio}` +
      (atp && stats.occupancy !== undefined
        ? `; aggregators held ${pct(r.occupancy?.meanFraction ?? stats.occupancy.meanFraction)} on average`
        : "") +
      (stats.preemptions ? `, ${stats.preemptions} preemptions` : "")
    );
  });
}

/** What bound a run with links, its busiest link direction, and the critical job's largest lower bound. */
export function describeBound(run: RunResult): string {
  const b = run.links?.[0];
  const busiest =
    b === undefined
      ? "no traffic"
      : `busiest ${b.host} ${b.direction} ${(100 * b.utilization).toFixed(0)}% of ${formatRate(b.rateBitsPerSecond)}` +
        (b.drops > 0 ? `, ${b.drops} drops` : "") +
        (b.marks > 0 ? `, ${b.marks} marks` : "");
  const basis = run.boundBasis;
  const largest =
    basis === undefined || basis.bounds.length === 0
      ? ""
      : `; ${basis.job}: ${basis.bounds[0].bound} ${formatSeconds(basis.bounds[0].seconds)} of ${formatSeconds(basis.seconds)}`;
  return `${run.name}: ${run.bound}-bound (${busiest}${largest})`;
}

function formatRate(bitsPerSecond: number): string {
  for (const [unit, scale] of [
    ["Gbps", 1e9],
    ["Mbps", 1e6],
    ["kbps", 1e3],
  ] as const) {
    if (bitsPerSecond >= scale) return `${Number((bitsPerSecond / scale).toPrecision(4))}${unit}`;
  }
  return `${bitsPerSecond}bps`;
}

/** One line per run (or policy) that failed: the table keeps what the others measured. */
export function failures(
  results: ReadonlyArray<{ error?: string } & ({ name: string } | { policy: string })>,
) {
  return results.flatMap((r) =>
    r.error === undefined ? [] : [`${"name" in r ? r.name : r.policy}: FAILED: ${r.error}`],
  );
}

/** Scheduling results: one row per policy and job, then each policy's summary. */
export function formatScheduleTable(results: PolicyResult[]): string {
  const header = [
    "policy",
    "job",
    "class",
    "mode",
    "arrive s",
    "granted s",
    "wait s",
    "transfer s",
    "JCT s",
    "verify s",
    "held s",
    "deadline s",
    "met",
    "regions (s after submit: size)",
    "verified",
  ];
  const f = (x: number | null) =>
    x === null ? "-" : Math.abs(x) >= 0.1 || x === 0 ? x.toFixed(2) : x.toPrecision(3);
  const rows = results.flatMap((r) =>
    r.jobs.map((j) => [
      r.policy,
      j.name,
      j.class,
      j.mode,
      j.arriveS.toFixed(1),
      f(j.grantedS),
      f(j.waitS),
      f(j.transferS),
      f(j.jctS),
      f(j.verificationS),
      f(j.heldAfterLastResultS),
      j.deadlineS === null ? "-" : String(j.deadlineS),
      j.deadlineMet === null ? "-" : j.deadlineMet ? "yes" : "NO",
      j.regions.map((g) => `${g.atS.toFixed(1)}:${g.size}`).join(" ") || "-",
      j.verified ? "yes" : "NO",
    ]),
  );
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) => cells.map((cell, c) => cell.padEnd(widths[c])).join("  ");
  const summary = results
    .filter((r) => r.error === undefined)
    .map(
      (r) =>
        `${r.policy}: average JCT ${f(r.averageJctS)} s, deadlines met ${r.deadlinesMet}/${r.deadlineJobs}` +
        (r.deadlineJobs > 0 ? ` (${((100 * r.deadlinesMet) / r.deadlineJobs).toFixed(0)}%)` : "") +
        (r.maxJctS === undefined ? "" : `, max JCT ${f(r.maxJctS)} s`) +
        ((r.switch as { preemptions?: number }).preemptions
          ? `, ${(r.switch as { preemptions?: number }).preemptions} preemptions`
          : ""),
    );
  const virtual = results.some((r) => (r as { clock?: string }).clock === "virtual");
  const legend =
    "(from submission: granted = first region, wait = first packet, JCT = wait + transfer = last result; " +
    `verify s: after the last result, not in the JCT${virtual ? ", and no virtual time in the simulator" : ""}; ` +
    "held s: last result to the region's release)";
  return [line(header), ...rows.map(line), ...failures(results), legend, "", ...summary, ""].join(
    "\n",
  );
}

/** "median [low, high]" (the interval n/a for n < 2), each number by `format`. */
export function medianWithInterval(s: Summary | null, format: (x: number) => string): string {
  if (s === null) return "-";
  const ci = s.medianCi ?? null; // results written before intervals of the median have none
  return `${format(s.median)} ${ci === null ? "[n/a]" : `[${format(ci.low)}, ${format(ci.high)}]`}`;
}

/**
 * "median [low, high] unit": every number in the unit that fits the median
 * (`unitOf` gives its factor and name), three significant digits.
 */
function medianWithIntervalIn(
  s: Summary | null,
  unitOf: (median: number) => [number, string],
): string {
  if (s === null) return "-";
  const [factor, unit] = unitOf(s.median);
  return `${medianWithInterval(s, (x) => significant(x * factor))} ${unit}`;
}

const timeUnit = (seconds: number): [number, string] =>
  seconds < 1e-3 && seconds > 0 ? [1e6, "µs"] : seconds < 1 && seconds > 0 ? [1e3, "ms"] : [1, "s"];
const bandwidthUnit = (megabytesPerSecond: number): [number, string] =>
  megabytesPerSecond >= 1000 ? [1e-3, "GB/s"] : [1, "MB/s"];

/** The interval's confidence, e.g. "75%", or "n/a" for n < 2. */
export function intervalConfidence(s: Summary | null): string {
  const ci = s?.medianCi ?? null;
  return ci === null ? "n/a" : `${(100 * ci.confidence).toFixed(ci.confidence > 0.995 ? 1 : 0)}%`;
}

/** Warnings for points whose real-process repetitions were host-bound. */
function hostBoundWarnings(points: readonly PointStatistics[]): string[] {
  const warned = new Set<string>();
  const out: string[] = [];
  for (const p of points) {
    if ((p.hostBound ?? 0) === 0 || warned.has(p.point)) continue;
    warned.add(p.point);
    out.push(
      `warning: ${p.point}: host-bound in ${p.hostBound} of ${p.repetitions - p.failed} repetitions: ` +
        "its numbers describe this host's CPU, not the emulated network (lower the link rate)",
    );
  }
  return out;
}

/** Per point and job, over its repetitions: n, and each measure's median with its interval. */
export function formatPointTable(points: PointStatistics[]): string {
  const header = [
    "point",
    "job",
    "n",
    "failed",
    "host-bound",
    "interval conf.",
    "time: median [interval]",
    "goodput/w: median [interval]",
    "retransmits: median [interval]",
    "fallback: median [interval]",
  ];
  const rows = points.map((p) => [
    p.point,
    p.job,
    String(p.seconds?.n ?? 0),
    String(p.failed),
    String(p.hostBound ?? "-"),
    intervalConfidence(p.seconds),
    medianWithIntervalIn(p.seconds, timeUnit),
    medianWithIntervalIn(p.goodputMBps, bandwidthUnit),
    medianWithInterval(p.retransmissions, (x) => x.toFixed(0)),
    medianWithInterval(p.fallbackFraction, (x) => `${(100 * x).toFixed(1)}%`),
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) =>
    cells.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ");
  return `${[line(header), ...rows.map(line), ...hostBoundWarnings(points)].join("\n")}\n(${STATISTIC_NOTE})\n`;
}

/** Per policy, over the repetitions: average JCT and deadlines met, each a median with its interval. */
export function formatPolicyStatistics(stats: PolicyStatistics[]): string {
  const header = [
    "policy",
    "n",
    "failed",
    "interval conf.",
    "average JCT: median [interval]",
    "deadlines met: median [interval]",
    "of",
  ];
  const rows = stats.map((p) => [
    p.policy,
    String(p.averageJctS?.n ?? 0),
    String(p.failed),
    intervalConfidence(p.averageJctS),
    medianWithIntervalIn(p.averageJctS, timeUnit),
    medianWithInterval(p.deadlinesMet, (x) => x.toFixed(1)),
    String(p.deadlineJobs),
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])))
      .join("  ");
  return `${[line(header), ...rows.map(line)].join("\n")}\n(${STATISTIC_NOTE})\n`;
}

/** Whether another ATP job of the run hashes into aggregators of `job`'s slice. */
function sharesSlice(
  job: { mode: string; offset: number; regionSize: number },
  jobs: ReadonlyArray<{ mode: string; offset: number; regionSize: number }>,
): boolean {
  return jobs.some(
    (o) =>
      o !== job &&
      o.mode === "atp" &&
      o.offset < job.offset + job.regionSize &&
      job.offset < o.offset + o.regionSize,
  );
}
