import { readFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";

/**
 * How busy the host was while an experiment ran, for its provenance: real
 * processes share the host's CPUs with whatever else runs there, so a
 * referee (or the next reader) can tell a quiet run from one that fought
 * for the CPU. The 1-minute load average at the start, at the end and its
 * maximum over the run (sampled every second), and on Linux the CPU steal
 * (time a hypervisor gave this VM's CPUs to others) from /proc/stat.
 */
export interface HostLoad {
  /** os.loadavg()[0]: runnable processes, averaged over a minute */
  loadAverage1m: { start: number; end: number; max: number };
  /** CPUs the process may use; a load above this many means processes waited for a CPU */
  cpus: number;
  samples: number;
  /** Linux only: steal between the start and the end, in seconds of CPU and as a share of all CPU time */
  steal?: { seconds: number; share: number };
}

/** /proc/stat's aggregate "cpu" line: its steal and total ticks (USER_HZ), or null when absent. */
export function parseProcStat(text: string): { steal: number; total: number } | null {
  const line = text.split("\n").find((l) => l.startsWith("cpu "));
  if (line === undefined) return null;
  // user nice system idle iowait irq softirq steal guest guest_nice; guest is inside user already
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  if (ticks.length < 8 || ticks.some((t) => !Number.isFinite(t))) return null;
  const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
  return { steal: ticks[7], total };
}

/** The steal between two /proc/stat readings; USER_HZ is 100 on every Linux that Node runs on. */
export function stealBetween(
  start: { steal: number; total: number },
  end: { steal: number; total: number },
  ticksPerSecond = 100,
): { seconds: number; share: number } {
  const steal = Math.max(0, end.steal - start.steal);
  const total = end.total - start.total;
  return { seconds: steal / ticksPerSecond, share: total > 0 ? steal / total : 0 };
}

function readProcStat(): { steal: number; total: number } | null {
  if (process.platform !== "linux") return null;
  try {
    return parseProcStat(readFileSync("/proc/stat", "utf8"));
  } catch {
    return null;
  }
}

/**
 * Starts sampling the host's load every `intervalMs` (a timer that keeps no
 * process alive). The object it returns serializes (toJSON) to the HostLoad
 * up to the moment it is written, sampling once more then: a results file
 * written at the end of a run carries the load over the whole run.
 */
export function sampleHostLoad(intervalMs = 1000): { read(): HostLoad; toJSON(): HostLoad } {
  const first = loadavg()[0];
  const load = { start: first, end: first, max: first };
  let samples = 1;
  const startStat = readProcStat();
  const sample = () => {
    const now = loadavg()[0];
    load.end = now;
    load.max = Math.max(load.max, now);
    samples++;
  };
  const timer = setInterval(sample, intervalMs);
  timer.unref();
  const read = (): HostLoad => {
    sample();
    const endStat = startStat === null ? null : readProcStat();
    return {
      loadAverage1m: { ...load },
      cpus: availableParallelism(),
      samples,
      ...(startStat !== null && endStat !== null
        ? { steal: stealBetween(startStat, endStat) }
        : {}),
    };
  };
  return { read, toJSON: read };
}
