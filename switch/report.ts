import { dropsByName } from "../proto/drops.js";
import type { SwitchStatsRecord } from "../proto/records.js";
import type { SwitchCore } from "./core.js";

/** The switch's counters as one JSON-friendly record (for the `stats` line and reports). */
export function switchReport(core: SwitchCore): SwitchStatsRecord {
  const s = core.stats;
  const activeSeconds = s.firstPacketAt < 0 ? 0 : (s.lastPacketAt - s.firstPacketAt) / 1000;
  return {
    rxPackets: s.rxPackets,
    txPackets: s.txPackets,
    rxDatagrams: s.rxDatagrams,
    rxBytes: s.rxBytes,
    txBytes: s.txBytes,
    activeSeconds,
    packetsPerSecond: activeSeconds > 0 ? (s.rxPackets + s.txPackets) / activeSeconds : 0,
    aggregationsCompleted: s.aggregationsCompleted,
    resultsReplayed: s.resultsReplayed,
    takeovers: s.takeovers,
    forwarded: s.forwarded,
    toParameterServer: s.toParameterServer,
    acks: s.acks,
    regionChanges: s.regionChanges,
    jobsFailed: s.jobsFailed,
    preemptions: s.preemptions,
    occupancy: {
      meanFraction:
        activeSeconds > 0 ? s.heldIntegral / (activeSeconds * 1000) / core.aggregators.count : 0,
      peakFraction: s.heldPeak / core.aggregators.count,
      aggregators: core.aggregators.count,
    },
    drops: dropsByName(s.drops),
    injected: {
      ingress: { ...core.faults.ingress.injected },
      egress: { ...core.faults.egress.injected },
    },
    jobs: core.jobs.map((job) => ({ id: job.id, mode: job.mode, ...job.counters })),
  };
}
