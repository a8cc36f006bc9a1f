import { performance } from "node:perf_hooks";
import type { RunResult } from "./results.js";
import { formatBandwidth } from "./table.js";

/**
 * What a sweep says on stderr as it goes: each run's position, the time
 * so far and an estimate of the rest, and at the end one summary line
 * (nccl-tests ends with its average bus bandwidth).
 */

/**
 * How far a worker is through its job, 0..1: `iteration` all-reduces done,
 * and `completed` of the current one's `total` packets (as the worker counts
 * them: a ring worker counts every packet of every step it sends and takes
 * in, so the fraction is taken against its own total, not the tensor's).
 */
export function workerFraction(
  iteration: number,
  completed: number,
  total: number,
  iterations: number,
): number {
  const within = total > 0 ? completed / total : 0;
  // A record taken between two all-reduces can show the next one's total with
  // the last one's count: a fraction past 1 is never progress.
  return Math.min(1, (iteration + Math.min(1, within)) / iterations);
}

/** A duration for a person: 12 s, 4 min 05 s, 1 h 02 min. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "-";
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

export interface SweepTally {
  runs: number;
  verified: number;
  failed: number;
  wallSeconds: number;
  /** mean bus bandwidth over every job of the runs that did not fail (MB/s); NaN when none */
  meanBusbwMBps: number;
}

/** The summary of finished runs: how many, verified, failed, and their mean bus bandwidth. */
export function tally(runs: readonly RunResult[], wallSeconds: number): SweepTally {
  const ok = runs.filter((r) => r.error === undefined);
  const busbw = ok.flatMap((r) => r.jobs.map((j) => j.busbwMBps)).filter(Number.isFinite);
  return {
    runs: runs.length,
    verified: runs.filter((r) => r.verified && r.error === undefined).length,
    failed: runs.length - ok.length,
    wallSeconds,
    meanBusbwMBps:
      busbw.length === 0 ? Number.NaN : busbw.reduce((a, b) => a + b, 0) / busbw.length,
  };
}

/** "# runs 15, verified 14, failed 1, wall time 48 s, mean busbw 11.8 GB/s" */
export function summaryLine(t: SweepTally): string {
  return (
    `# runs ${t.runs}, verified ${t.verified}, failed ${t.failed}, ` +
    `wall time ${formatDuration(t.wallSeconds)}, mean busbw ${formatBandwidth(t.meanBusbwMBps)}\n`
  );
}

/**
 * A sweep's position and timing: `start` before each run prints
 * "run 3/15 NAME: DETAIL (elapsed 12 s, ETA 48 s)"; the ETA is the mean
 * time of the runs done so far times the runs left.
 */
export class SweepProgress {
  private readonly startedAt: number;
  private done = 0;

  constructor(
    readonly total: number,
    private readonly write: (line: string) => void = (line) => process.stderr.write(line),
    private readonly now: () => number = () => performance.now(),
  ) {
    this.startedAt = now();
  }

  /** Seconds since the sweep began. */
  get elapsedSeconds(): number {
    return (this.now() - this.startedAt) / 1000;
  }

  /** Seconds the runs left should take, at the pace so far; NaN before the first run ends. */
  get etaSeconds(): number {
    if (this.done === 0) return Number.NaN;
    return (this.elapsedSeconds / this.done) * (this.total - this.done);
  }

  /** Says that run `index` (0-based) begins. */
  start(index: number, name: string, detail: string): void {
    const eta = this.done === 0 ? "" : `, ETA ${formatDuration(this.etaSeconds)}`;
    this.write(
      `  run ${index + 1}/${this.total} ${name}: ${detail} ` +
        `(elapsed ${formatDuration(this.elapsedSeconds)}${eta})\n`,
    );
  }

  /** Counts a run as done (finished or failed). */
  finish(): void {
    this.done++;
  }
}
