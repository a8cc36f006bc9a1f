import { Histogram, type Registry } from "prom-client";
import { DROP_REASON_NAMES } from "../proto/drops.js";
import type { JobCounters } from "../proto/records.js";
import { PACKET_TYPE_NAMES } from "../proto/wire.js";
import { counterFrom, createProcessMetrics, gaugeFrom } from "../runtime/metrics.js";
import { AggregatorState } from "./aggregators.js";
import type { SwitchCore } from "./core.js";
import type { MemoryManager } from "./memory.js";

const JOB_LABELS = ["ina_job", "mode", "ina_job_name"] as const;
type JobLabels = { ina_job: string; mode: string; ina_job_name?: string };

/**
 * The switch's metrics (data plane and memory manager) on `registry`, read
 * from its plain counters at scrape time, and the process's own. Jobs are
 * labelled `ina_job` (the ina-emu job id: Prometheus's `job` is the scrape
 * job), `mode`, and `ina_job_name` when `names` (from the config's jobs) has
 * one; a job removed from the switch keeps its counter series (the switch
 * keeps its totals), its gauges go.
 */
export function createSwitchMetrics(
  registry: Registry,
  core: SwitchCore,
  manager: MemoryManager | null,
  names: ReadonlyMap<number, string> = new Map(),
  /** datagrams the switch's socket sent (its coalescer counts them) */
  datagramsSent: () => number = () => 0,
): void {
  createProcessMetrics(registry);
  const s = core.stats;
  const jobLabels = (id: number, mode: string): JobLabels => {
    const name = names.get(id);
    return name === undefined
      ? { ina_job: String(id), mode }
      : { ina_job: String(id), mode, ina_job_name: name };
  };
  const byType = (counts: Float64Array) => () =>
    [...counts].flatMap((n, t) =>
      PACKET_TYPE_NAMES[t] === undefined ? [] : [[{ type: PACKET_TYPE_NAMES[t] }, n] as const],
    ) as Array<[{ type: string }, number]>;
  counterFrom(
    registry,
    "ina_switch_packets_received_total",
    "Well-formed packets the switch received, by packet type (several may share a datagram)",
    ["type"],
    byType(s.rxByType),
  );
  counterFrom(
    registry,
    "ina_switch_packets_sent_total",
    "Packets the switch sent, by packet type",
    ["type"],
    byType(s.txByType),
  );
  counterFrom(
    registry,
    "ina_switch_datagrams_total",
    "Datagrams the switch received and sent, each one packet or several (packets_*: per packet)",
    ["direction"],
    () => [
      [{ direction: "rx" }, s.rxDatagrams],
      [{ direction: "tx" }, datagramsSent()],
    ],
  );
  counterFrom(
    registry,
    "ina_switch_received_bytes_total",
    "Bytes of every datagram the switch received",
    [],
    () => [[{}, s.rxBytes]],
  );
  counterFrom(
    registry,
    "ina_switch_drops_total",
    "Packets the switch dropped, by reason (injected = the fault injector; a datagram whose framing failed counts once)",
    ["reason"],
    () => [...s.drops].flatMap((n, r) => (r === 0 ? [] : [[{ reason: DROP_REASON_NAMES[r] }, n]])),
  );
  // Per-job counters of the data plane.
  // Installed jobs plus what removed ones counted: a job's series stay, and never go down.
  const perJob = (field: keyof JobCounters) => () => {
    const totals = new Map<number, { mode: string; value: number }>();
    for (const [id, kept] of core.retiredJobs) {
      totals.set(id, { mode: kept.mode, value: kept.counters[field] });
    }
    for (const job of core.jobs) {
      const kept = totals.get(job.id);
      totals.set(job.id, { mode: job.mode, value: (kept?.value ?? 0) + job.counters[field] });
    }
    return [...totals].map(([id, t]) => [jobLabels(id, t.mode), t.value] as [JobLabels, number]);
  };
  const jobCounters: Array<[string, keyof JobCounters, string]> = [
    ["ina_switch_contributions_total", "contributions", "Worker contributions the switch received"],
    ["ina_switch_job_received_bytes_total", "bytesIn", "Bytes of the job's contributions"],
    [
      "ina_switch_aggregations_completed_total",
      "aggregationsCompleted",
      "Aggregations finished in the switch",
    ],
    ["ina_switch_resends_total", "resends", "Contributions flagged as retransmissions"],
    [
      "ina_switch_collisions_total",
      "collisions",
      "ATP contributions that found another (job, PSN) in their aggregator",
    ],
    [
      "ina_switch_fallbacks_total",
      "fallbacks",
      "ATP contributions that reached the PS outside a full switch aggregate",
    ],
    ["ina_switch_evictions_total", "evictions", "ATP partial aggregates evicted to the PS"],
    [
      "ina_switch_preemptions_total",
      "preemptions",
      "ATP (esa pool): aggregators the job took from a lower-priority job's partial, which went to the PS",
    ],
    [
      "ina_switch_preempted_total",
      "preempted",
      "ATP (esa pool): the job's partial aggregates a higher-priority job preempted to the PS",
    ],
    ["ina_switch_releases_total", "releases", "ATP aggregators released by the PS's ack"],
    [
      "ina_switch_results_replayed_total",
      "resultsReplayed",
      "NetReduce results replayed to a retransmitting worker",
    ],
    [
      "ina_switch_to_parameter_server_total",
      "toParameterServer",
      "Packets of the job sent to the PS",
    ],
    [
      "ina_switch_keepalives_total",
      "keepalives",
      "Keepalives of the job's workers the switch took (from the bound address, or of an unbound worker)",
    ],
  ];
  for (const [name, field, help] of jobCounters) {
    counterFrom(registry, name, help, JOB_LABELS, perJob(field));
  }
  gaugeFrom(
    registry,
    "ina_switch_aggregators_in_use",
    "Aggregators holding a (job, PSN), per job",
    JOB_LABELS,
    () => {
      const a = core.aggregators;
      const inUse = new Map<number, number>();
      for (let i = 0; i < a.count; i++) {
        if (a.state[i] !== AggregatorState.empty)
          inUse.set(a.jobId[i], (inUse.get(a.jobId[i]) ?? 0) + 1);
      }
      return core.jobs.map(
        (job) => [jobLabels(job.id, job.mode), inUse.get(job.id) ?? 0] as [JobLabels, number],
      );
    },
  );
  gaugeFrom(registry, "ina_switch_aggregators", "Aggregators in the switch's array", [], () => [
    [{}, core.aggregators.count],
  ]);
  gaugeFrom(
    registry,
    "ina_switch_region_size_aggregators",
    "Aggregators in the job's current region (NetReduce) or pool slice (ATP)",
    JOB_LABELS,
    () =>
      core.jobs.map(
        (job) => [jobLabels(job.id, job.mode), job.current.size] as [JobLabels, number],
      ),
  );
  counterFrom(
    registry,
    "ina_switch_region_changes_total",
    "Region changes whose old region has drained",
    [],
    () => [[{}, s.regionChanges]],
  );
  new Histogram({
    name: "ina_switch_aggregation_latency_seconds",
    help: "First contribution to completion of an aggregation in the switch (every 16th)",
    buckets: [0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [registry],
    collect() {
      s.completionLatencyMs.drain((ms) => this.observe(ms / 1000));
    },
  });
  if (manager !== null) createManagerMetrics(registry, manager);
}

/** The memory manager's view: jobs by class and state, memory granted vs requested, deadlines, JCT. */
function createManagerMetrics(registry: Registry, manager: MemoryManager): void {
  gaugeFrom(
    registry,
    "ina_manager_jobs",
    "Jobs the memory manager knows, by class and state",
    ["class", "state"],
    () => {
      const counts = new Map<string, number>();
      for (const cls of ["md", "be"]) {
        for (const state of ["queued", "running", "finished", "cancelled", "rejected", "failed"]) {
          counts.set(`${cls}/${state}`, 0);
        }
      }
      for (const job of manager.jobs.values()) {
        const key = `${job.spec.jobClass}/${job.status}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      return [...counts].map(([key, n]) => {
        const [cls, state] = key.split("/");
        return [{ class: cls, state }, n] as [{ class: string; state: string }, number];
      });
    },
  );
  const active = () =>
    [...manager.jobs.values()].filter((j) => j.status === "running" || j.status === "queued");
  gaugeFrom(
    registry,
    "ina_manager_memory_granted_aggregators",
    "Aggregators granted to each active job",
    ["ina_job", "mode"],
    () =>
      active().map(
        (j) =>
          [{ ina_job: String(j.spec.id), mode: j.spec.mode }, j.region?.size ?? 0] as [
            { ina_job: string; mode: string },
            number,
          ],
      ),
  );
  gaugeFrom(
    registry,
    "ina_manager_memory_requested_aggregators",
    "Aggregators each active job asked for (Throughput x RTT, x2 for NetReduce)",
    ["ina_job", "mode"],
    () =>
      active().map(
        (j) =>
          [{ ina_job: String(j.spec.id), mode: j.spec.mode }, j.demand] as [
            { ina_job: string; mode: string },
            number,
          ],
      ),
  );
  gaugeFrom(
    registry,
    "ina_manager_free_aggregators",
    "Aggregators in no region and not draining",
    [],
    () => [[{}, manager.allocation().freeTotal]],
  );
  counterFrom(
    registry,
    "ina_manager_deadlines_total",
    "Finished deadline (MD) jobs, by whether they met their deadline",
    ["outcome"],
    () => {
      let met = 0;
      let missed = 0;
      for (const job of manager.jobs.values()) {
        if (job.spec.jobClass !== "md" || job.status !== "finished" || job.finishedAt === null)
          continue;
        if (job.finishedAt <= (job.spec.deadlineMs ?? 0)) met++;
        else missed++;
      }
      return [
        [{ outcome: "met" }, met],
        [{ outcome: "missed" }, missed],
      ];
    },
  );
  const observed = new Set<number>();
  new Histogram({
    name: "ina_manager_job_completion_seconds",
    help: "Job completion time: submission to the last worker's done",
    labelNames: ["class"],
    buckets: [0.5, 1, 2, 5, 10, 20, 60, 120, 300, 600],
    registers: [registry],
    collect() {
      for (const job of manager.jobs.values()) {
        if (job.status !== "finished" || job.finishedAt === null || observed.has(job.spec.id))
          continue;
        observed.add(job.spec.id);
        this.observe({ class: job.spec.jobClass }, (job.finishedAt - job.submittedAt) / 1000);
      }
    },
  });
}
