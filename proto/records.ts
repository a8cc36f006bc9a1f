import { z } from "zod";
import { COLLECTIVES, JOB_MODES, JobConfigSchema, POLICIES } from "./config.js";

/**
 * The JSON records each command prints, one per line on stdout (section
 * "Commands" of README.md): what a process tells its operator and the
 * experiment runner. A runner reads these, never a role's insides.
 *
 * Each record is a zod schema; its type is inferred from it. A producer
 * emits the type (runtime/cli.ts `emitRecord` takes only a `CommandRecord`),
 * so a renamed or dropped field fails to compile; a consumer parses with the
 * schema (runner/processes.ts `ChildNode.waitFor`), so a record that does not
 * match fails loudly, naming the field. Records are strict: a field the
 * schema does not list is an error too.
 */

const count = z.number();

/** Drop counts by reason name (see drops.ts), zero counts left out. */
export const DropCountsSchema = z.record(z.string(), z.number());
export type DropCounts = z.infer<typeof DropCountsSchema>;

/** A job's counters at the switch (plain numbers the data path bumps), as its stats record reports them. */
export const JobCountersSchema = z.strictObject({
  contributions: count,
  /** contributions that carried the resend flag */
  resends: count,
  aggregationsCompleted: count,
  /** results sent again to a worker that retransmitted after completion */
  resultsReplayed: count,
  /** aggregators taken over from a finished PSN by a new one */
  takeovers: count,
  drops: count,
  bytesIn: count,
  /** ATP: contributions that found the aggregator held by another (job, PSN) */
  collisions: count,
  /**
   * ATP: worker contributions that reached the PS outside a full switch
   * aggregate (passed through one by one, or inside an evicted partial)
   */
  fallbacks: count,
  /** ATP: partial aggregates sent to the PS (on resend or overflow) */
  evictions: count,
  /** ATP: sums that overflowed int32 in the switch and went to the PS instead */
  overflowFallbacks: count,
  /** ATP: aggregators of this job freed because the job's own later PSNs showed them stale */
  staleFreed: count,
  /** ATP: shared aggregators this job took back from another job's claim that outlived its lease */
  leaseReclaims: count,
  /**
   * ATP, `esa` pool: aggregators this job took from another job's partial
   * by outranking it, and this job's partials another job took (each went
   * to the PS); older switches report none
   */
  preemptions: count.default(0),
  preempted: count.default(0),
  /** ATP: contributions that went to the PS because the job held its quota of the pool */
  overQuota: count,
  /** ATP: acks that released one of this job's aggregators */
  releases: count,
  /** ATP: acks whose (job, PSN) the aggregator no longer held; released nothing */
  acksWithoutMatch: count,
  /** packets sent to the parameter server for this job */
  toParameterServer: count,
  /** acks from the parameter server delivered to this job's workers */
  acks: count,
  /** keepalives of the job's workers that passed admission (older switches report none) */
  keepalives: count.default(0),
  /** `now` of the job's first and latest contribution, for throughput */
  firstContributionAt: z.number(),
  lastContributionAt: z.number(),
});
export type JobCounters = z.infer<typeof JobCountersSchema>;

/**
 * A port's queue over time (link/link.ts QueueSeries): buckets of `bucketMs`
 * from its first packet to its last departure (`spanMs`; the last bucket may
 * be cut short), each with the queue's time-weighted mean and its maximum,
 * whole bytes. At most 256 buckets: a longer run has wider ones.
 */
export const QueueSeriesSchema = z.strictObject({
  bucketMs: z.number().positive(),
  spanMs: z.number().nonnegative(),
  meanBytes: z.array(z.number()),
  maxBytes: z.array(z.number()),
});
export type QueueSeriesRecord = z.infer<typeof QueueSeriesSchema>;

/** One egress port of an emulated link: its parameters and what went through it. */
export const LinkPortRecordSchema = z.strictObject({
  rateBitsPerSecond: z.number(),
  delayMs: z.number(),
  bufferBytes: z.number(),
  /** null: never marks */
  ecnThresholdBytes: z.number().nullable(),
  /** bytes and packets sent */
  bytes: count,
  packets: count,
  /** tail drops: the buffer was full */
  drops: count,
  /** ECN marks set on packets leaving this port */
  marks: count,
  /** most bytes ever queued */
  queueHighWaterBytes: z.number(),
  /**
   * the queue's time-weighted mean over the port's busy span, and what the
   * median and the 99th-percentile accepted packet found (a power-of-two
   * bin's upper bound), bytes
   */
  queueMeanBytes: z.number().optional(),
  queueP50Bytes: z.number().optional(),
  queueP99Bytes: z.number().optional(),
  /** the queue over time: in final records (a switch's, a PS's, a worker's result) */
  queueSeries: QueueSeriesSchema.optional(),
  /** the live page's: bytes queued when the record was made, and the queue integrated over time until then (bytes x ms) */
  queueBytes: z.number().optional(),
  queueAreaByteMs: z.number().optional(),
});
export type LinkPortRecord = z.infer<typeof LinkPortRecordSchema>;

/** The switch's port towards one host. */
export const SwitchLinkRecordSchema = LinkPortRecordSchema.extend({
  /** "job 1 worker 0", "ps", or the address when the host is not known */
  host: z.string(),
  address: z.string(),
  port: z.number(),
});
export type SwitchLinkRecord = z.infer<typeof SwitchLinkRecordSchema>;

const injectedSchema = z.strictObject({ drop: count, duplicate: count, reorder: count });

/**
 * The switch's counters as its `stats` record reports them (switch/report.ts),
 * without what only a running switch adds (socket errors, datagrams sent).
 */
export const SwitchReportSchema = z.strictObject({
  /** packets, each counted on its own even when several share a datagram */
  rxPackets: count,
  txPackets: count,
  /** datagrams (one or several packets each); txDatagrams only from a running switch */
  rxDatagrams: count,
  txDatagrams: count.optional(),
  rxBytes: count,
  txBytes: count,
  /** first to latest datagram, seconds */
  activeSeconds: z.number(),
  packetsPerSecond: z.number(),
  aggregationsCompleted: count,
  resultsReplayed: count,
  takeovers: count,
  forwarded: count,
  /** ATP and PS jobs: packets sent to the parameter server, and acks back from it */
  toParameterServer: count,
  acks: count,
  /** region changes whose old region has drained */
  regionChanges: count,
  /** jobs failed because a worker or the PS stopped answering */
  jobsFailed: count,
  /** ATP, `esa` pool: partials sent to the PS because a job that outranks their holder took the aggregator */
  preemptions: count.default(0),
  /**
   * aggregators held (not empty), as a fraction of the array: their
   * time-weighted mean over the active span (first to latest datagram),
   * and the most at once; older switches report neither
   */
  occupancy: z
    .strictObject({ meanFraction: z.number(), peakFraction: z.number(), aggregators: count })
    .optional(),
  drops: DropCountsSchema,
  /** faults the switch injected, each direction */
  injected: z.strictObject({ ingress: injectedSchema, egress: injectedSchema }),
  jobs: z.array(JobCountersSchema.extend({ id: z.number(), mode: z.enum(JOB_MODES) })),
  /** with emulated links: the switch's egress port towards each host */
  links: z.array(SwitchLinkRecordSchema).optional(),
});
/** The switch's counters of a `stats` record (switch/report.ts). */
export type SwitchStatsRecord = z.infer<typeof SwitchReportSchema>;

/** The parameter server's counters as its `stats` record reports them (ps/report.ts). */
export const PsReportSchema = z.strictObject({
  /** packets, each counted on its own, and the datagrams they came in */
  rxPackets: count,
  rxDatagrams: count,
  /** datagrams sent (acks to the switch share them); only from a running PS */
  txDatagrams: count.optional(),
  /** what arrived, by kind */
  workerContributions: count,
  collisions: count,
  partials: count,
  fullAggregates: count,
  aggregationsCompleted: count,
  /** partial aggregates added into a PSN's sum */
  partialsMerged: count,
  /** completions whose sum left int32 and went back as float32 */
  floatResults: count,
  /** acks sent again because a retransmission arrived after completion */
  resultsResent: count,
  acksSent: count,
  /** PSNs the PS holds state for now */
  statesHeld: count,
  /** jobs the PS adopted (not in its config), and those it forgot once idle with nothing held */
  jobsAdopted: count.optional(),
  adoptedJobsFreed: count.optional(),
  drops: DropCountsSchema,
  /** with emulated links: the PS's own egress (its NIC) */
  link: LinkPortRecordSchema.optional(),
});
/** The PS's counters of a `stats` record (ps/report.ts). */
export type PsStatsRecord = z.infer<typeof PsReportSchema>;

/** A data-plane server's `stats`: every --stats-interval-ms, and a final one when it stops. */
const periodic = {
  /** the process's uptime (performance.now()) when it printed this */
  uptimeMs: z.number(),
};
const final = {
  final: z.literal(true),
  /** all CPU time; the part before `ready` (start-up); the rest (serving) */
  cpuSeconds: z.number(),
  startupCpuSeconds: z.number(),
  dataPathCpuSeconds: z.number(),
};
/** What a running server adds to its report: socket errors, datagrams sent. */
const running = { socketErrors: count, txDatagrams: count };

/** ina-switch's `stats` record (at exit, and every --stats-interval-ms), told apart by `final`. */
const switchStats = SwitchReportSchema.extend({ event: z.literal("stats"), ...running });
export const SwitchStatsSchema = z.discriminatedUnion("final", [
  switchStats.extend({ final: z.undefined().optional(), ...periodic }),
  switchStats.extend(final),
]);
export type SwitchStatsLine = z.infer<typeof SwitchStatsSchema>;

/** ina-ps's `stats` record (at exit, and every --stats-interval-ms), told apart by `final`. */
const psStats = PsReportSchema.extend({ event: z.literal("stats"), ...running });
export const PsStatsSchema = z.discriminatedUnion("final", [
  psStats.extend({ final: z.undefined().optional(), ...periodic }),
  psStats.extend(final),
]);
export type PsStatsLine = z.infer<typeof PsStatsSchema>;

/** Datagrams of several packets (proto/README.md 2.1): the sender's limits. */
export const DatagramLimitsSchema = z.strictObject({ packets: count, bytes: count });

/** A socket's buffers as granted: what was asked, what the kernel gave. */
export const SocketBuffersSchema = z.strictObject({
  /** bytes asked for, each direction */
  requestedBytes: count,
  /** bytes the kernel granted (what SO_RCVBUF took, before the kernel doubles it) */
  receiveBytes: count,
  sendBytes: count,
  /** net.core.rmem_max; null when unreadable */
  kernelLimitBytes: count.nullable(),
  /** the kernel's limit kept the receive buffer below what was asked */
  capped: z.boolean(),
});

/** What a process warns about as it starts (also on stderr): a window its receive buffer cannot hold. */
const warnings = z.array(z.string());

/** ina-switch's `ready` record: it listens. */
export const SwitchReadySchema = z.strictObject({
  event: z.literal("ready"),
  /** CPU seconds spent starting (loading, binding) */
  startupCpuSeconds: z.number(),
  pid: z.int(),
  dataAddress: z.string(),
  dataPort: z.int(),
  controlUrl: z.string(),
  /** the live page */
  uiUrl: z.string(),
  metricsUrl: z.string(),
  controlPort: z.int(),
  policy: z.enum(POLICIES),
  jobs: z.array(JobConfigSchema),
  datagram: DatagramLimitsSchema,
  socketBuffers: SocketBuffersSchema,
  warnings,
});
export type SwitchReadyRecord = z.infer<typeof SwitchReadySchema>;

/** ina-ps's `ready` record. */
export const PsReadySchema = z.strictObject({
  event: z.literal("ready"),
  startupCpuSeconds: z.number(),
  pid: z.int(),
  dataAddress: z.string(),
  dataPort: z.int(),
  metricsUrl: z.string(),
  jobs: z.array(z.strictObject({ id: z.int(), mode: z.enum(JOB_MODES), fanIn: z.int() })),
  datagram: DatagramLimitsSchema,
  socketBuffers: SocketBuffersSchema,
});
export type PsReadyRecord = z.infer<typeof PsReadySchema>;

/**
 * What gave a worker its id: `--worker`, the rank variable of the launcher
 * that started it (`OMPI_COMM_WORLD_RANK`, `PMI_RANK`, `SLURM_PROCID`), or
 * the control plane, which gives the lowest id not yet joined.
 */
export type WorkerIdSource = "--worker" | "control plane" | (string & {});

/** ina-worker's `ready` record: its socket is bound (and, with --control, it joined). */
export const WorkerReadySchema = z.strictObject({
  event: z.literal("ready"),
  pid: z.int(),
  metricsUrl: z.string(),
  workerId: z.int(),
  workerIdSource: z.string() as z.ZodType<WorkerIdSource>,
  /** the worker's own UDP port */
  port: z.int(),
  region: z.strictObject({ offset: z.int(), size: z.int(), epoch: z.int() }),
  /** packets in flight */
  window: z.int(),
  datagram: DatagramLimitsSchema,
  socketBuffers: SocketBuffersSchema,
  warnings,
});
export type WorkerReadyRecord = z.infer<typeof WorkerReadySchema>;

/**
 * ina-worker --credential-stdin's `standby` record: started, waiting for its
 * job's credential on stdin before it joins.
 */
export const WorkerStandbySchema = z.strictObject({
  event: z.literal("standby"),
  pid: z.int(),
});
export type WorkerStandbyRecord = z.infer<typeof WorkerStandbySchema>;

/** ina-worker's `progress` record (every --progress-ms). */
export const WorkerProgressSchema = z.strictObject({
  event: z.literal("progress"),
  /** all-reducing, or checking the output against the reference sum */
  phase: z.enum(["allreduce", "verifying"]),
  workerId: z.int(),
  iteration: z.int(),
  completedPackets: count,
  totalPackets: count,
});
export type WorkerProgressRecord = z.infer<typeof WorkerProgressSchema>;

/** How a worker's output compares with the float64 reference sum of every worker's input. */
export const VerificationSchema = z.strictObject({
  elements: count,
  /** largest |output - float64 sum of the inputs|; null when not a number (JSON has no NaN) */
  maxAbsError: z.number().nullable(),
  /** elements whose error exceeds the fixed-point bound */
  outOfBound: count,
  /** elements that differ from the exact fixed-point sum, to the last bit */
  notBitExact: count,
  verified: z.boolean(),
});
/** What the verifier computes: as printed, but maxAbsError may be NaN (printed as null). */
export type Verification = Omit<z.infer<typeof VerificationSchema>, "maxAbsError"> & {
  maxAbsError: number;
};

/** ina-worker's `result` record: the all-reduces (or collectives) are done. */
export const WorkerResultSchema = z.strictObject({
  event: z.literal("result"),
  workerId: z.int(),
  /** what ran: allReduce, or a ring job's collective */
  operation: z.enum(COLLECTIVES),
  regionChanges: count,
  /** bytes all-reduced, over every iteration */
  bytes: count,
  seconds: z.number(),
  iterationSeconds: z.array(z.number()),
  goodputMBps: z.number(),
  /** CPU time of the all-reduces */
  cpuSeconds: z.number(),
  packetsSent: count,
  /** gradient bytes sent and taken in, each packet once */
  payloadBytesSent: count,
  payloadBytesReceived: count,
  datagramsSent: count,
  datagramsReceived: count,
  retransmissions: count,
  timeouts: count,
  /** timeouts whose PSN's result then came sooner than the least RTT (an earlier send's answer) */
  spuriousTimeouts: count,
  /** time with nothing from the switch before each timeout fired, summed (ms) */
  timeoutStallMs: z.number(),
  resultsReceived: count,
  duplicateResults: count,
  overflowedResults: count,
  saturatedValues: count,
  srttMs: z.number(),
  /** retransmission timeout at the end */
  rtoMs: z.number(),
  /** results or acks that carried an ECN mark, and the window at the end (packets) */
  ecnMarkedResults: count,
  window: z.number(),
  drops: DropCountsSchema,
  /** with emulated links: the worker's own egress (its NIC) */
  link: LinkPortRecordSchema.optional(),
  /** null with --no-verify */
  verification: VerificationSchema.nullable(),
  /** how long checking the output took (0 with --no-verify); after done was reported */
  verificationSeconds: z.number().optional(),
  /**
   * when the first all-reduce began (after the first --compute-ms), when the
   * last sum was in (then done is reported) and when the check ended: ms on
   * the host's monotonic clock (CLOCK_MONOTONIC), which every process on the
   * host shares (ina-switch's GET /health tells where its own clock starts on it)
   */
  firstPacketAtMonotonicMs: z.number().optional(),
  lastResultAtMonotonicMs: z.number().optional(),
  verifiedAtMonotonicMs: z.number().optional(),
  /** FNV-1a of the last output's bytes: equal digests, equal outputs */
  outputDigest: z.string(),
  verified: z.boolean(),
});
export type WorkerResultRecord = z.infer<typeof WorkerResultSchema>;

/** bench/floor-switch.ts's `ready`: the floor relay listens. */
export const FloorReadySchema = z.strictObject({
  event: z.literal("ready"),
  pid: z.int(),
  dataAddress: z.string(),
  dataPort: z.int(),
});
export type FloorReadyRecord = z.infer<typeof FloorReadySchema>;

/** bench/floor-switch.ts's final `stats`. */
export const FloorStatsSchema = z.strictObject({
  event: z.literal("stats"),
  ...final,
  rxPackets: count,
  txPackets: count,
  rxDatagrams: count,
  txDatagrams: count,
  activeSeconds: z.number(),
  packetsPerSecond: z.number(),
  drops: DropCountsSchema,
});
export type FloorStatsRecord = z.infer<typeof FloorStatsSchema>;

/** ina-experiment --write-scrape-config: where it wrote Prometheus's config and targets. */
export const ScrapeConfigSchema = z.strictObject({
  event: z.literal("scrape-config"),
  configFile: z.string(),
  targetsFile: z.string(),
});
export type ScrapeConfigRecord = z.infer<typeof ScrapeConfigSchema>;

/** `npm run reliability -- --json`: the suite's checks, each with its figure and verdict. */
export const ReliabilitySchema = z.strictObject({
  event: z.literal("reliability"),
  seed: z.int(),
  rows: z.array(z.strictObject({ check: z.string(), figure: z.string(), ok: z.boolean() })),
});
export type ReliabilityRecord = z.infer<typeof ReliabilitySchema>;

/** Every record of each command, told apart by `event` (and a `stats` record by `final`). */
export const SwitchRecordSchema = z.discriminatedUnion("event", [
  SwitchReadySchema,
  SwitchStatsSchema,
]);
export const PsRecordSchema = z.discriminatedUnion("event", [PsReadySchema, PsStatsSchema]);
export const WorkerRecordSchema = z.discriminatedUnion("event", [
  WorkerStandbySchema,
  WorkerReadySchema,
  WorkerProgressSchema,
  WorkerResultSchema,
]);
export type SwitchRecord = z.infer<typeof SwitchRecordSchema>;
export type PsRecord = z.infer<typeof PsRecordSchema>;
export type WorkerRecord = z.infer<typeof WorkerRecordSchema>;

/** Any record an ina-emu command prints. */
export type CommandRecord =
  | SwitchRecord
  | PsRecord
  | WorkerRecord
  | FloorReadyRecord
  | FloorStatsRecord
  | ScrapeConfigRecord
  | ReliabilityRecord;

/** A schema of one kind of record: an object with a literal `event`, or a union of them. */
export type RecordSchema = z.ZodType<{ event: string }>;

/** The `event` a record schema matches (the first option's, for a union). */
export function recordEvent(schema: RecordSchema): string {
  let s: unknown = schema;
  for (;;) {
    if (s instanceof z.ZodObject) {
      const event = s.shape.event;
      if (event instanceof z.ZodLiteral && typeof event.value === "string") return event.value;
      break;
    }
    if (s instanceof z.ZodUnion) s = s.options[0];
    else break;
  }
  throw new Error("not a record schema: no literal `event`");
}
