import { Histogram, type Registry } from "prom-client";
import { counterFrom, createProcessMetrics, gaugeFrom } from "../runtime/metrics.js";
import type { WorkerCore } from "./core.js";

/** What the metrics read of a worker's core (WorkerCore, or a ring job's CollectiveCore). */
export type MeasuredCore = Pick<
  WorkerCore,
  "stats" | "window" | "completedPackets" | "totalPackets"
>;

/**
 * A worker's metrics on `registry`, labelled `ina_job` (the ina-emu job id:
 * Prometheus's `job` is the scrape job), `worker` and `mode`, read at scrape
 * time; and the process's own. `observeAllReduce` records one all-reduce's
 * duration.
 */
export function createWorkerMetrics(
  registry: Registry,
  core: MeasuredCore,
  labels: { job: number; worker: number; mode: string },
): { observeAllReduce: (seconds: number) => void } {
  createProcessMetrics(registry);
  const l = { ina_job: String(labels.job), worker: String(labels.worker), mode: labels.mode };
  const names = ["ina_job", "worker", "mode"] as const;
  const s = core.stats;
  counterFrom(
    registry,
    "ina_worker_sent_bytes_total",
    "Bytes of every packet the worker sent",
    names,
    () => [[l, s.bytesSent]],
  );
  counterFrom(
    registry,
    "ina_worker_packets_sent_total",
    "Packets the worker sent, retransmissions included",
    names,
    () => [[l, s.packetsSent]],
  );
  counterFrom(
    registry,
    "ina_worker_retransmissions_total",
    "Packets sent again (timeout, gap, region change)",
    names,
    () => [[l, s.retransmissions]],
  );
  counterFrom(registry, "ina_worker_timeouts_total", "Retransmission timeouts", names, () => [
    [l, s.timeouts],
  ]);
  counterFrom(
    registry,
    "ina_worker_spurious_timeouts_total",
    "Timeouts whose PSN's result came sooner after the resend than the least round trip",
    names,
    () => [[l, s.spuriousTimeouts]],
  );
  counterFrom(
    registry,
    "ina_worker_timeout_stall_seconds_total",
    "Time spent with nothing answered until a timeout fired",
    names,
    () => [[l, s.timeoutStallMs / 1000]],
  );
  counterFrom(
    registry,
    "ina_worker_results_received_total",
    "Results (or acks) received for PSNs in flight",
    names,
    () => [[l, s.resultsReceived]],
  );
  counterFrom(
    registry,
    "ina_worker_region_changes_total",
    "Region changes the worker adopted",
    names,
    () => [[l, s.regionChanges]],
  );
  gaugeFrom(
    registry,
    "ina_worker_window_packets",
    "Packets the worker may keep in flight now",
    names,
    () => [[l, core.window]],
  );
  gaugeFrom(
    registry,
    "ina_worker_rtt_seconds",
    "Smoothed round-trip time (RFC 6298 SRTT)",
    names,
    () => [[l, s.srttMs / 1000]],
  );
  gaugeFrom(registry, "ina_worker_rto_seconds", "Current retransmission timeout", names, () => [
    [l, s.rtoMs / 1000],
  ]);
  gaugeFrom(
    registry,
    "ina_worker_progress_ratio",
    "Share of the current all-reduce's packets with a result",
    names,
    () => [[l, core.totalPackets > 0 ? core.completedPackets / core.totalPackets : 0]],
  );
  const allReduceSeconds = new Histogram({
    name: "ina_worker_allreduce_duration_seconds",
    help: "Duration of each all-reduce",
    labelNames: names,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  allReduceSeconds.zero(l);
  return { observeAllReduce: (seconds) => allReduceSeconds.observe(l, seconds) };
}
