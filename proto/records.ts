import type { JobConfig, JobMode } from "./config.js";

/**
 * The JSON records each command prints, one per line on stdout (section
 * "Commands" of README.md): what a process tells its operator and the
 * experiment runner. A runner reads these, never a role's insides.
 */

/** Drop counts by reason name (see drops.ts), zero counts left out. */
export type DropCounts = Record<string, number>;

/** A job's counters at the switch (plain numbers the data path bumps), as its stats record reports them. */
export interface JobCounters {
  contributions: number;
  /** contributions that carried the resend flag */
  resends: number;
  aggregationsCompleted: number;
  /** results sent again to a worker that retransmitted after completion */
  resultsReplayed: number;
  /** aggregators taken over from a finished PSN by a new one */
  takeovers: number;
  drops: number;
  bytesIn: number;
  /** ATP: contributions that found the aggregator held by another (job, PSN) */
  collisions: number;
  /**
   * ATP: worker contributions that reached the PS outside a full switch
   * aggregate (passed through one by one, or inside an evicted partial)
   */
  fallbacks: number;
  /** ATP: partial aggregates sent to the PS (on resend or overflow) */
  evictions: number;
  /** ATP: sums that overflowed int32 in the switch and went to the PS instead */
  overflowFallbacks: number;
  /** ATP: aggregators of this job freed because the job's own later PSNs showed them stale */
  staleFreed: number;
  /** ATP: shared aggregators this job took back from another job's claim that outlived its lease */
  leaseReclaims: number;
  /** ATP: contributions that went to the PS because the job held its quota of the pool */
  overQuota: number;
  /** ATP: acks that released one of this job's aggregators */
  releases: number;
  /** ATP: acks whose (job, PSN) the aggregator no longer held; released nothing */
  acksWithoutMatch: number;
  /** packets sent to the parameter server for this job */
  toParameterServer: number;
  /** acks from the parameter server delivered to this job's workers */
  acks: number;
  /** `now` of the job's first and latest contribution, for throughput */
  firstContributionAt: number;
  lastContributionAt: number;
}

/** One egress port of an emulated link: its parameters and what went through it. */
export interface LinkPortRecord {
  rateBitsPerSecond: number;
  delayMs: number;
  bufferBytes: number;
  /** null: never marks */
  ecnThresholdBytes: number | null;
  /** bytes and packets sent */
  bytes: number;
  packets: number;
  /** tail drops: the buffer was full */
  drops: number;
  /** ECN marks set on packets leaving this port */
  marks: number;
  /** most bytes ever queued */
  queueHighWaterBytes: number;
}

/** The switch's port towards one host. */
export interface SwitchLinkRecord extends LinkPortRecord {
  /** "job 1 worker 0", "ps", or the address when the host is not known */
  host: string;
  address: string;
  port: number;
}

/** ina-switch's `stats` record (at exit, and every --stats-interval-ms). */
export interface SwitchStatsRecord {
  /** packets, each counted on its own even when several share a datagram */
  rxPackets: number;
  txPackets: number;
  /** datagrams (one or several packets each); txDatagrams only from a running switch */
  rxDatagrams: number;
  txDatagrams?: number;
  rxBytes: number;
  txBytes: number;
  /** first to latest datagram, seconds */
  activeSeconds: number;
  packetsPerSecond: number;
  aggregationsCompleted: number;
  resultsReplayed: number;
  takeovers: number;
  forwarded: number;
  /** ATP and PS jobs: packets sent to the parameter server, and acks back from it */
  toParameterServer: number;
  acks: number;
  /** region changes whose old region has drained */
  regionChanges: number;
  /** jobs failed because a worker or the PS stopped answering */
  jobsFailed: number;
  drops: DropCounts;
  /** faults the switch injected, each direction */
  injected: {
    ingress: { drop: number; duplicate: number; reorder: number };
    egress: { drop: number; duplicate: number; reorder: number };
  };
  jobs: Array<{ id: number; mode: JobMode } & JobCounters>;
  /** with emulated links: the switch's egress port towards each host */
  links?: SwitchLinkRecord[];
}

/** ina-ps's `stats` record. */
export interface PsStatsRecord {
  /** packets, each counted on its own, and the datagrams they came in */
  rxPackets: number;
  rxDatagrams: number;
  /** datagrams sent (acks to the switch share them); only from a running PS */
  txDatagrams?: number;
  /** what arrived, by kind */
  workerContributions: number;
  collisions: number;
  partials: number;
  fullAggregates: number;
  aggregationsCompleted: number;
  /** partial aggregates added into a PSN's sum */
  partialsMerged: number;
  /** completions whose sum left int32 and went back as float32 */
  floatResults: number;
  /** acks sent again because a retransmission arrived after completion */
  resultsResent: number;
  acksSent: number;
  /** PSNs the PS holds state for now */
  statesHeld: number;
  drops: DropCounts;
  /** with emulated links: the PS's own egress (its NIC) */
  link?: LinkPortRecord;
}

/** What the final `stats` record adds: the process's CPU time and socket errors. */
export interface FinalStats {
  final?: true;
  /** all CPU time; the part before `ready` (start-up); the rest (serving) */
  cpuSeconds?: number;
  startupCpuSeconds?: number;
  dataPathCpuSeconds?: number;
  socketErrors?: number;
}

/** ina-switch's `ready` record. */
export interface SwitchReadyRecord {
  pid: number;
  dataAddress: string;
  dataPort: number;
  controlUrl: string;
  metricsUrl: string;
  controlPort: number;
  policy: string;
  jobs: JobConfig[];
}

/** ina-ps's `ready` record. */
export interface PsReadyRecord {
  pid: number;
  dataAddress: string;
  dataPort: number;
  metricsUrl: string;
  jobs: Array<{ id: number; mode: JobMode; fanIn: number }>;
}

/**
 * What gave a worker its id: `--worker`, the rank variable of the launcher
 * that started it (`OMPI_COMM_WORLD_RANK`, `PMI_RANK`, `SLURM_PROCID`), or
 * the control plane, which gives the lowest id not yet joined.
 */
export type WorkerIdSource = "--worker" | "control plane" | (string & {});

/** ina-worker's `ready` record. */
export interface WorkerReadyRecord {
  pid: number;
  metricsUrl: string;
  workerId: number;
  workerIdSource: WorkerIdSource;
  /** the worker's own UDP port */
  port: number;
  region: { offset: number; size: number; epoch: number };
}

/** ina-worker's `progress` record. */
export interface WorkerProgressRecord {
  /** all-reducing, or checking the output against the reference sum */
  phase: "allreduce" | "verifying";
  workerId: number;
  iteration: number;
  completedPackets: number;
  totalPackets: number;
}

/** How a worker's output compares with the float64 reference sum of every worker's input. */
export interface Verification {
  elements: number;
  /** largest |output - float64 sum of the inputs| */
  maxAbsError: number;
  /** elements whose error exceeds the fixed-point bound */
  outOfBound: number;
  /** elements that differ from the exact fixed-point sum, to the last bit */
  notBitExact: number;
  verified: boolean;
}

/** ina-worker's `result` record. */
export interface WorkerResultRecord {
  workerId: number;
  regionChanges: number;
  bytes: number;
  seconds: number;
  iterationSeconds: number[];
  goodputMBps: number;
  cpuSeconds: number;
  packetsSent: number;
  retransmissions: number;
  timeouts: number;
  resultsReceived: number;
  duplicateResults: number;
  overflowedResults: number;
  saturatedValues: number;
  srttMs: number;
  /** retransmission timeout at the end */
  rtoMs: number;
  /** results or acks that carried an ECN mark, and the window at the end (packets) */
  ecnMarkedResults: number;
  window: number;
  drops: DropCounts;
  /** with emulated links: the worker's own egress (its NIC) */
  link?: LinkPortRecord;
  /** null with --no-verify */
  verification: Verification | null;
  verified: boolean;
}
