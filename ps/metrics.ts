import type { Registry } from "prom-client";
import { DROP_REASON_NAMES } from "../proto/drops.js";
import { counterFrom, createProcessMetrics, gaugeFrom } from "../runtime/metrics.js";
import type { PsCore } from "./core.js";

/**
 * The parameter server's metrics on `registry`, read from its counters at
 * scrape time, and the process's own.
 */
export function createPsMetrics(registry: Registry, core: PsCore): void {
  createProcessMetrics(registry);
  const s = core.stats;
  counterFrom(
    registry,
    "ina_ps_pieces_received_total",
    "Pieces the PS received, by kind: a worker's own contribution (collided or not), a partial or a full aggregate",
    ["kind"],
    () => [
      [{ kind: "worker" }, s.workerContributions - s.collisions],
      [{ kind: "collision" }, s.collisions],
      [{ kind: "partial" }, s.partials],
      [{ kind: "full" }, s.fullAggregates],
    ],
  );
  counterFrom(
    registry,
    "ina_ps_aggregations_completed_total",
    "PSNs the PS completed and acked",
    [],
    () => [[{}, s.aggregationsCompleted]],
  );
  counterFrom(
    registry,
    "ina_ps_partials_merged_total",
    "Partial and full aggregates added into a PSN's sum",
    [],
    () => [[{}, s.partialsMerged]],
  );
  counterFrom(
    registry,
    "ina_ps_float_results_total",
    "Completions whose sum left int32 and went back as float32",
    [],
    () => [[{}, s.floatResults]],
  );
  counterFrom(
    registry,
    "ina_ps_results_resent_total",
    "Acks sent again for retransmissions after completion",
    [],
    () => [[{}, s.resultsResent]],
  );
  counterFrom(registry, "ina_ps_acks_sent_total", "Acks the PS sent", [], () => [[{}, s.acksSent]]);
  counterFrom(
    registry,
    "ina_ps_drops_total",
    "Datagrams the PS dropped, by reason",
    ["reason"],
    () => [...s.drops].flatMap((n, r) => (r === 0 ? [] : [[{ reason: DROP_REASON_NAMES[r] }, n]])),
  );
  gaugeFrom(registry, "ina_ps_states_held", "PSN states the PS holds (not yet retired)", [], () => [
    [{}, core.statesHeld],
  ]);
}
