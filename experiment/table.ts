import type { RunResult } from "./results.js";
import type { PolicyResult, PolicyStatistics } from "./schedule.js";
import { type PointStatistics, STATISTIC_NOTE, type Summary } from "./sweep.js";

/** The experiment's tables for people: one row per job, then failures and faults. */

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

export function formatTable(runs: RunResult[]): string {
  const header = [
    "run",
    "job",
    "mode",
    "workers",
    "MiB",
    "aggregators",
    "start s",
    "seconds",
    "MB/s/worker",
    "sent MiB/w",
    "recv MiB/w",
    "algbw MB/s",
    "busbw MB/s",
    "collisions",
    "fallback",
    "retransmits",
    "bound",
    "verified",
  ];
  const mib = (bytes: number) => (Number.isFinite(bytes) ? (bytes / 2 ** 20).toFixed(1) : "-");
  const rows = runs.flatMap((run) =>
    run.jobs.map((j) => [
      run.name,
      j.name,
      j.mode === "ring" && j.operation !== "allReduce" ? `ring ${j.operation}` : j.mode,
      String(j.workers),
      `${((j.bytesPerWorker * j.iterations) / 2 ** 20).toFixed(1)}`,
      j.mode === "ps" || j.mode === "ring"
        ? "-"
        : `${j.regionSize}${j.mode === "atp" ? " shared" : ""}`,
      (j.startMs / 1000).toFixed(1),
      j.seconds >= 0.1 ? j.seconds.toFixed(2) : j.seconds.toPrecision(3),
      j.goodputMBps.toFixed(1),
      mib(j.bytesSentPerWorker),
      mib(j.bytesReceivedPerWorker),
      j.algbwMBps.toFixed(1),
      j.busbwMBps.toFixed(1),
      j.mode === "atp" ? String(j.collisions) : "-",
      j.mode === "atp" ? pct(j.fallbackFraction) : j.mode === "ps" ? "all" : "-",
      String(j.retransmissions),
      run.bound ?? "-",
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
  const s = (x: number) => (x >= 0.1 ? x.toFixed(2) : x.toPrecision(3));
  return multi.map((r) => {
    const stats = r.switch as { preemptions?: number; occupancy?: { meanFraction: number } };
    const ratio =
      r === base || base.averageJctS <= 0
        ? ""
        : ` (${(r.averageJctS / base.averageJctS).toFixed(3)} and ${(r.maxJctS / base.maxJctS).toFixed(3)} x ${base.name}'s)`;
    const atp = r.jobs.some((j) => j.mode === "atp");
    return (
      `${r.name}: JCT average ${s(r.averageJctS)} s, max ${s(r.maxJctS)} s${ratio}` +
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
      : `; ${basis.job}: ${basis.bounds[0].bound} ${basis.bounds[0].seconds.toFixed(3)} s of ${basis.seconds.toFixed(3)} s`;
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
    "seconds: median [interval]",
    "MB/s/worker: median [interval]",
    "retransmits: median [interval]",
    "fallback: median [interval]",
  ];
  const seconds = (x: number) => (x >= 0.1 || x === 0 ? x.toFixed(2) : x.toPrecision(3));
  const rows = points.map((p) => [
    p.point,
    p.job,
    String(p.seconds?.n ?? 0),
    String(p.failed),
    String(p.hostBound ?? "-"),
    intervalConfidence(p.seconds),
    medianWithInterval(p.seconds, seconds),
    medianWithInterval(p.goodputMBps, (x) =>
      x >= 10 || x === 0 ? x.toFixed(1) : x.toPrecision(3),
    ),
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
    "average JCT s: median [interval]",
    "deadlines met: median [interval]",
    "of",
  ];
  const n = (x: number) => (Math.abs(x) >= 0.1 || x === 0 ? x.toFixed(2) : x.toPrecision(3));
  const rows = stats.map((p) => [
    p.policy,
    String(p.averageJctS?.n ?? 0),
    String(p.failed),
    intervalConfidence(p.averageJctS),
    medianWithInterval(p.averageJctS, n),
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
