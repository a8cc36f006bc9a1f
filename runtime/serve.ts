import { cpuSeconds, EXIT_OK, emitRecord } from "./cli.js";

/**
 * A data-plane server's life after binding: print its `ready` record (only
 * once SIGTERM and SIGINT are handled, so a parent may stop it as soon as it
 * reads the line), print stats every `statsIntervalMs` (if > 0), wait for a
 * signal, print the final stats record with CPU time, then close.
 */
export async function serveUntilSignal(o: {
  ready: Record<string, unknown>;
  statsIntervalMs: number;
  report: () => Record<string, unknown>;
  close: () => Promise<void>;
}): Promise<number> {
  const stopped = new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  emitRecord({ event: "ready", ...o.ready });
  const interval =
    o.statsIntervalMs > 0
      ? setInterval(() => emitRecord({ event: "stats", ...o.report() }), o.statsIntervalMs)
      : null;
  await stopped;
  if (interval !== null) clearInterval(interval);
  emitRecord({ event: "stats", final: true, cpuSeconds: cpuSeconds(), ...o.report() });
  await o.close();
  return EXIT_OK;
}
