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

/** Several parameter servers' counters as one record (a run with PSes of jobs' own); null for none. */
export function sumPsReports(reports: readonly PsStatsRecord[]): PsStatsRecord | null {
  if (reports.length === 0) return null;
  if (reports.length === 1) return reports[0];
  const total = structuredClone(reports[0]);
  for (const r of reports.slice(1)) {
    // Counters add up; a PS's own link record stays the first one's.
    for (const key of Object.keys(r) as Array<keyof PsStatsRecord>) {
      const n = r[key];
      if (typeof n === "number")
        (total as Record<string, unknown>)[key] = ((total[key] as number | undefined) ?? 0) + n;
    }
    for (const [reason, n] of Object.entries(r.drops)) {
      total.drops[reason] = (total.drops[reason] ?? 0) + n;
    }
  }
  return total;
}
