import { performance } from "node:perf_hooks";
import type {
  PsReadyRecord,
  PsStatsLine,
  SwitchReadyRecord,
  SwitchStatsLine,
} from "../proto/records.js";
import { cpuSeconds, EXIT_OK, emitRecord } from "./cli.js";

/** What a server's report adds to its `stats` records, beside the event and the CPU times. */
type Report<S> = S extends unknown
  ? Omit<S, "event" | "final" | "uptimeMs" | keyof CpuTimes>
  : never;
interface CpuTimes {
  cpuSeconds: number;
  startupCpuSeconds: number;
  dataPathCpuSeconds: number;
}

/** The switch's or the PS's `ready` fields and its stats report (proto/records.ts). */
type Served =
  | {
      ready: Omit<SwitchReadyRecord, "event" | "startupCpuSeconds">;
      /** final: the last record (it may carry what is too big for every period's, e.g. queue series) */
      report: (final: boolean) => Report<SwitchStatsLine>;
    }
  | {
      ready: Omit<PsReadyRecord, "event" | "startupCpuSeconds">;
      report: (final: boolean) => Report<PsStatsLine>;
    };

/**
 * A data-plane server's life after binding: print its `ready` record (only
 * once SIGTERM and SIGINT are handled, so a parent may stop it as soon as it
 * reads the line), print stats every `statsIntervalMs` (if > 0), wait for a
 * signal, print the final stats record with CPU time, then close. The CPU
 * spent starting up (loading, binding: about as much as a small run's data
 * path) is reported apart, so a run's data-path CPU can be told from it.
 */
export async function serveUntilSignal(
  o: Served & {
    statsIntervalMs: number;
    close: () => Promise<void>;
  },
): Promise<number> {
  const stopped = new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  const startupCpuSeconds = cpuSeconds();
  emitRecord({ event: "ready", startupCpuSeconds, ...o.ready });
  const interval =
    o.statsIntervalMs > 0
      ? setInterval(
          () => emitRecord({ event: "stats", uptimeMs: performance.now(), ...o.report(false) }),
          o.statsIntervalMs,
        )
      : null;
  await stopped;
  if (interval !== null) clearInterval(interval);
  const total = cpuSeconds();
  emitRecord({
    event: "stats",
    final: true,
    cpuSeconds: total,
    startupCpuSeconds,
    dataPathCpuSeconds: total - startupCpuSeconds,
    ...o.report(true),
  });
  await o.close();
  return EXIT_OK;
}
