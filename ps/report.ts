import { dropsByName } from "../proto/drops.js";
import type { PsStatsRecord } from "../proto/records.js";
import type { PsCore } from "./core.js";

/** The parameter server's counters as one JSON-friendly record. */
export function psReport(core: PsCore): PsStatsRecord {
  const s = core.stats;
  return {
    rxPackets: s.rxPackets,
    rxDatagrams: s.rxDatagrams,
    workerContributions: s.workerContributions,
    collisions: s.collisions,
    partials: s.partials,
    fullAggregates: s.fullAggregates,
    aggregationsCompleted: s.aggregationsCompleted,
    partialsMerged: s.partialsMerged,
    floatResults: s.floatResults,
    resultsResent: s.resultsResent,
    acksSent: s.acksSent,
    statesHeld: core.statesHeld,
    jobsAdopted: s.jobsAdopted,
    adoptedJobsFreed: s.adoptedJobsFreed,
    drops: dropsByName(s.drops),
  };
}
