import { decodeHeader, forEachPacket, type PacketVisitor } from "../proto/codec.js";
import { type AtpPool, type SwitchConfig, switchDeadPeerMs } from "../proto/config.js";
import { DROP_REASON_COUNT, DropReason, type DropReasonValue } from "../proto/drops.js";
import { describeFailure } from "../proto/failure.js";
import type { LinkHost } from "../proto/links.js";
import { writeFailed } from "../proto/packets.js";
import type { JobCounters, SwitchStatsRecord } from "../proto/records.js";
import {
  DESTINATION_ALL_WORKERS,
  emptyHeader,
  Field,
  Flag,
  HEADER_BYTES,
  MAX_DATAGRAM_BYTES,
  PACKET_TYPE_COUNT,
  type PacketHeader,
  PacketType,
  WORKER_ID_NONE,
} from "../proto/wire.js";
import { SampleRing } from "../runtime/sample-ring.js";
import { AggregatorArray } from "./aggregators.js";
import { type AtpOutcome, type AtpPriority, atpContribute, atpRelease } from "./atp.js";
import { FaultStage } from "./faults.js";
import { JobState, type RegionState, refusedSources } from "./jobs.js";
import { type JobFailure, Liveness } from "./liveness.js";
import { type NetReduceOutcome, netReduceContribute } from "./netreduce.js";
import { RegionChanges } from "./regions.js";

/** Where the switch's packets go: the UDP adapter, or a test's capture. */
export interface Transmit {
  /** Sends all of `packet`; the buffer may change once send() returns (see SwitchCore). */
  send(packet: Buffer, port: number, address: string): void;
  /** The worker at `address:port` accepts datagrams of several packets (it set `batches`). */
  acceptsBatches?(port: number, address: string): void;
}

/** The counters of the `stats` record, and what the metrics read besides. */
export interface SwitchStats
  extends Omit<
    SwitchStatsRecord,
    "drops" | "activeSeconds" | "packetsPerSecond" | "injected" | "jobs" | "occupancy"
  > {
  /** drops by DropReason value */
  drops: Float64Array;
  /** packets received (well-formed) and sent, by packet type */
  rxByType: Float64Array;
  txByType: Float64Array;
  /** every 16th aggregation's time from first contribution to completion (ms) */
  completionLatencyMs: SampleRing;
  /** `now` of the first and latest datagram, for packet rates */
  firstPacketAt: number;
  lastPacketAt: number;
  /** aggregators held (non-empty) integrated over time (aggregator-ms), and the most held at once */
  heldIntegral: number;
  heldPeak: number;
}

/**
 * The switch's data plane, sans-IO: datagrams and time go in through
 * receive() and handleTimeout() (when nextTimeout() says), packets come out
 * through `transmit`. A datagram may carry several packets (proto/README.md,
 * section 2.1), walked by forEachPacket; per packet it runs a straight
 * pipeline: ingress faults (FaultStage), parse, admission (job rule, source,
 * binding), the handler of the packet's type (a contribution runs the job's
 * program, NetReduce or ATP, which hands back the packet to send), then
 * egress faults and send.
 * Nothing here allocates per packet.
 *
 * Buffers handed to transmit are aggregator slots or the packet being
 * processed; transmit sends or copies them before it returns.
 */
export class SwitchCore {
  readonly stats: SwitchStats = {
    rxPackets: 0,
    rxDatagrams: 0,
    rxBytes: 0,
    txPackets: 0,
    txBytes: 0,
    drops: new Float64Array(DROP_REASON_COUNT),
    aggregationsCompleted: 0,
    resultsReplayed: 0,
    takeovers: 0,
    forwarded: 0,
    toParameterServer: 0,
    acks: 0,
    regionChanges: 0,
    jobsFailed: 0,
    rxByType: new Float64Array(PACKET_TYPE_COUNT),
    txByType: new Float64Array(PACKET_TYPE_COUNT),
    completionLatencyMs: new SampleRing(),
    firstPacketAt: -1,
    lastPacketAt: -1,
    preemptions: 0,
    heldIntegral: 0,
    heldPeak: 0,
  };
  readonly aggregators: AggregatorArray;
  private readonly regions: RegionChanges;
  private readonly liveness: Liveness;
  private readonly failurePacket = Buffer.alloc(HEADER_BYTES);
  private readonly failureView = new DataView(
    this.failurePacket.buffer,
    this.failurePacket.byteOffset,
    HEADER_BYTES,
  );
  readonly jobs: JobState[] = [];
  /**
   * fault injection around the core: ingress before handle(), egress between
   * emit() and send(); a direction without faults configured bypasses it
   */
  readonly faults: FaultStage;

  private readonly jobSlotById = new Int32Array(0x10000).fill(-1);
  private readonly header = emptyHeader();
  private readonly outcome: NetReduceOutcome = {
    dropReason: 0,
    replay: false,
    tookOver: false,
    index: 0,
  };
  private readonly atpOutcome: AtpOutcome = {
    index: 0,
    dropReason: 0,
    completed: false,
    passThrough: false,
    foreign: false,
    collision: false,
    overflowed: false,
    freedStale: false,
    evictedBitmap: 0,
    reclaimed: false,
    overQuota: false,
    preempted: false,
    preemptedJobId: -1,
  };
  /**
   * How ATP jobs share a pool (proto/config.ts ATP_POOLS): the config's
   * `atpPool`, or what the control plane's policy set (setAtpPool)
   */
  atpPool: AtpPool;
  /**
   * ESA's priority, shortest remaining first: a job outranks another when
   * it has fewer payload bytes left to send (its `totalBytes` less what its
   * workers sent, first sends only) by more than one window of its own in
   * flight (hysteresis: two jobs about as far from done do not take
   * aggregators back and forth as each advances). A job whose size the
   * switch was not told ranks behind every job of known size; between two
   * such jobs the one that has sent less goes first (least attained
   * service, the size-oblivious stand-in for shortest remaining).
   */
  private readonly esaPriority: AtpPriority = {
    outranks: (claimant, holderId) => {
      const holder = this.job(holderId);
      // A claim left by a job no longer installed protects nothing.
      if (holder === undefined) return true;
      const margin = claimant.window * this.aggregators.elements * 4 * claimant.fanIn;
      const known = claimant.totalBytes > 0;
      if (known !== holder.totalBytes > 0) return known;
      if (!known) return claimant.payloadBytesIn + margin < holder.payloadBytesIn;
      return remainingBytes(claimant) + margin < remainingBytes(holder);
    },
  };
  /** where ATP fallbacks and PS-mode traffic go; port -1 when no job needs a PS */
  private readonly psPort: number;
  private readonly psAddress: string;
  // Each received packet is copied here so its header and payload are read
  // through views made once, whatever its offset in the datagram; a packet
  // passed on unchanged (to the PS, a forward, an ack) is sent from here.
  private readonly scratch: Buffer;
  private readonly scratchView: DataView;
  private readonly scratchValues: Int32Array;
  /** views of scratch by packet length / 4, each made the first time a length is seen */
  private readonly scratchViews: Array<Buffer | undefined> = [];
  /** the source of the datagram being walked */
  private fromPort = 0;
  private fromAddress = "";
  /** the datagram walk's visitor, bound once */
  private readonly walk: PacketVisitor<Buffer>;

  constructor(
    config: SwitchConfig,
    private readonly transmit: Transmit,
  ) {
    this.aggregators = new AggregatorArray(config.aggregators, config.elementsPerAggregator);
    this.liveness = new Liveness(this.aggregators, switchDeadPeerMs(config));
    this.regions = new RegionChanges(
      this.aggregators,
      {
        multicast: (job, packet, except) => this.multicast(job, packet, except),
        emit: (packet, port, address) => this.emit(packet, port, address),
        drained: (jobId, epoch) => this.onRegionDrained?.(jobId, epoch),
      },
      this.stats,
    );
    const scratchArena = new ArrayBuffer(MAX_DATAGRAM_BYTES + 1);
    this.scratch = Buffer.from(scratchArena);

    this.scratchView = new DataView(scratchArena);
    this.scratchValues = new Int32Array(scratchArena);
    this.atpPool = config.atpPool;
    this.psPort = config.parameterServer?.port ?? -1;
    this.psAddress = config.parameterServer?.host ?? "";
    this.faults = new FaultStage(config.faults, this.stats.drops, {
      handle: (bytes, at, length, port, address) => this.handle(bytes, at, length, port, address),
      transmit: (packet, port, address) => this.send(packet, port, address),
    });
    this.walk = {
      packet: (bytes, at, length) => {
        this.stats.rxPackets++;
        if (this.faults.ingress.enabled) {
          this.faults.receive(
            bytes,
            at,
            length,
            this.fromPort,
            this.fromAddress,
            this.aggregators.now,
          );
        } else {
          this.handle(bytes, at, length, this.fromPort, this.fromAddress);
        }
      },
      dropDatagram: (reason) => {
        this.stats.rxPackets++;
        this.dropPacket(reason, null);
      },
    };
    for (const job of config.jobs) this.installJob(new JobState(job));
  }

  /** Installs a job's rule; a job id already installed is replaced. */
  installJob(job: JobState): void {
    this.failedJobs.delete(job.id);
    if (this.jobSlotById[job.id] >= 0) this.removeJob(job.id);
    this.jobSlotById[job.id] = this.jobs.length;
    this.jobs.push(job);
    this.regions.fresh(job, job.current);
    this.shareAtpSlices();
    this.onTimersChanged?.();
  }

  /**
   * Gives each ATP job without a quota of its own its fair share of its
   * slice: the slice's size over the ATP jobs whose slices overlap it
   * (itself included), at least 1; alone, no limit. So one tenant flooding
   * a shared pool holds at most its share, and the others keep theirs.
   */
  private shareAtpSlices(): void {
    for (const job of this.jobs) {
      if (job.mode !== "atp" || job.quotaGiven !== null) continue;
      if (this.atpPool !== "fairShare") {
        // ATP's own pool: first come, no quota (ESA preempts by priority instead).
        job.quota = 0;
        continue;
      }
      const a = job.current;
      let sharers = 0;
      for (const other of this.jobs) {
        const b = other.current;
        if (other.mode === "atp" && b.offset < a.offset + a.size && a.offset < b.offset + b.size) {
          sharers++;
        }
      }
      job.quota = sharers <= 1 ? 0 : Math.max(1, Math.floor(a.size / sharers));
    }
  }

  /** Changes how ATP jobs share a pool (a policy of the control plane's asks for one). */
  setAtpPool(pool: AtpPool): void {
    this.atpPool = pool;
    this.shareAtpSlices();
  }

  /**
   * Called when nextTimeout() may have moved other than by receive() or
   * handleTimeout(): a job installed or removed, a region changed (from the
   * control plane). The adapter arms its timer again.
   */
  onTimersChanged: (() => void) | null = null;

  /** Removes a job's rule and empties what it held. Returns whether it was installed. */
  removeJob(id: number): boolean {
    const slot = this.jobSlotById[id];
    if (slot < 0) return false;
    const job = this.jobs[slot];
    this.retireCounters(job);
    this.jobs.splice(slot, 1);
    this.jobSlotById[id] = -1;
    for (let i = slot; i < this.jobs.length; i++) this.jobSlotById[this.jobs[i].id] = i;
    this.regions.sweep(job, job.current);
    if (job.old !== null) this.regions.sweep(job, job.old);
    this.shareAtpSlices();
    this.onTimersChanged?.();
    return true;
  }

  /** Counters of removed jobs, by id, so a job's totals never go down if it is installed again. */
  readonly retiredJobs = new Map<number, { mode: string; counters: JobCounters }>();

  private retireCounters(job: JobState): void {
    const kept = this.retiredJobs.get(job.id);
    if (kept === undefined) {
      this.retiredJobs.set(job.id, { mode: job.mode, counters: { ...job.counters } });
      return;
    }
    for (const key of Object.keys(job.counters) as Array<keyof JobCounters>) {
      if (key !== "firstContributionAt" && key !== "lastContributionAt") {
        kept.counters[key] += job.counters[key];
      }
    }
  }

  /**
   * Moves or resizes a job's region (proto/README.md, section 11; the
   * protocol lives in regions.ts). A change that arrives while another
   * drains waits for it.
   */
  changeRegion(id: number, offset: number, size: number, epoch: number): void {
    const job = this.job(id);
    if (job === undefined) throw new RangeError(`job ${id} is not installed`);
    this.regions.change(job, offset, size, epoch);
    this.shareAtpSlices();
    this.onTimersChanged?.();
  }

  /**
   * Called when a job's regions of `epoch` and every older epoch have
   * drained: the manager may reuse them. Called from inside receive() or
   * changeRegion(); do not change regions from within it.
   */
  onRegionDrained: ((jobId: number, epoch: number) => void) | null = null;

  /** Who is at `address:port`, as far as the switch has learned: a job's worker, or the PS. */
  hostAt(port: number, address: string): LinkHost | null {
    if (port === this.psPort && address === this.psAddress) return "ps";
    for (const job of this.jobs) {
      for (let k = 0; k < job.psPorts.length; k++) {
        if (job.psPorts[k] === port && job.psAddresses[k] === address) return "ps";
      }
      for (let w = 0; w < job.fanIn; w++) {
        if (job.hostPort[w] === port && job.hostAddress[w] === address) {
          return { job: job.id, worker: w };
        }
      }
    }
    return null;
  }

  /** A job's own PS at `address:port` as "job ID ps K" (its place in the job's list), or null. */
  ownParameterServerAt(port: number, address: string): string | null {
    for (const job of this.jobs) {
      for (let k = 0; k < job.psPorts.length; k++) {
        if (job.psPorts[k] === port && job.psAddresses[k] === address)
          return `job ${job.id} ps ${k}`;
      }
    }
    return null;
  }

  job(id: number): JobState | undefined {
    const slot = this.jobSlotById[id];
    return slot < 0 ? undefined : this.jobs[slot];
  }

  /**
   * One datagram from `address:port`, at time `now` (ms): each of its
   * packets in turn, as if it had come alone. Never throws on bad input.
   * Not re-entrant: the source is kept in fields for the datagram's walk,
   * so a transmit must not hand this core another datagram synchronously.
   */
  receive(datagram: Buffer, port: number, address: string, now: number): void {
    const stats = this.stats;
    stats.rxDatagrams++;
    stats.rxBytes += datagram.length;
    if (stats.firstPacketAt < 0) stats.firstPacketAt = now;
    this.integrateHeld(now);
    stats.lastPacketAt = now;
    this.aggregators.now = now;
    this.fromPort = port;
    this.fromAddress = address;
    forEachPacket(datagram, datagram.length, MAX_DATAGRAM_BYTES, this.walk);
  }

  /**
   * The earliest moment the dead-peer rule could fail a job as things are
   * (ms; +Infinity: nothing waits), for a reader; the switch's own timer
   * (`livenessScan`, below) looks every scanEveryMs instead, which is cheap
   * to ask after every event.
   */
  nextLivenessCheckAt(): number {
    return this.liveness.nextCheckAt(this.jobs);
  }

  /**
   * When the switch next needs handleTimeout() (ms, on the clock of `now`;
   * Infinity when nothing is pending): the earliest of its named timers,
   * `faultRelease` (a packet the fault stage held back for reordering goes
   * if no next one overtook it, see REORDER_HOLD_MS) and `livenessScan`
   * (the dead-peer rule's look at the installed jobs, every scanEveryMs).
   * Region changes have no deadline: packets drive them.
   */
  nextTimeout(): number {
    return Math.min(this.faults.releaseAt, this.livenessScanAt());
  }

  /**
   * Occupancy: the aggregators held since the latest datagram, over the
   * time up to `now` (the held count changes only as packets and timers
   * are handled), and the peak after it.
   */
  private integrateHeld(now: number): void {
    const stats = this.stats;
    const held = this.aggregators.held;
    if (stats.lastPacketAt >= 0 && now > stats.lastPacketAt) {
      stats.heldIntegral += held * (now - stats.lastPacketAt);
    }
    if (held > stats.heldPeak) stats.heldPeak = held;
  }

  /** Runs every timer due at `now`; a timer not yet due does nothing. */
  handleTimeout(now: number): void {
    if (now >= this.faults.releaseAt) this.faults.release();
    if (now >= this.livenessScanAt()) {
      const failure = this.liveness.check(this.jobs, now);
      if (failure !== null) this.failJob(failure);
    }
  }

  /** The dead-peer time of `job` (ms; 0: never): its own deadPeerS, else the switch's. */
  deadPeerMsOf(job: JobState): number {
    return this.liveness.deadMsOf(job);
  }

  /** Timer `livenessScan`: the dead-peer rule's next look, while any job is installed. */
  private livenessScanAt(): number {
    return this.jobs.length === 0 ? Number.POSITIVE_INFINITY : this.liveness.nextScanAt();
  }

  /**
   * Jobs the switch failed (a worker or the PS stopped answering), by id:
   * their packets are answered with a `failed` packet. The newest 256 are kept.
   */
  readonly failedJobs = new Map<number, JobFailure>();

  /** Called when a job fails, with why in words; the job's rule is gone already. */
  onJobFailed: ((jobId: number, reason: string) => void) | null = null;

  /** Drops a failed job: tells its workers, frees its aggregators, reports it. */
  private failJob(failure: JobFailure): void {
    const job = this.job(failure.jobId);
    if (job === undefined) return;
    this.stats.jobsFailed++;
    this.failedJobs.set(failure.jobId, failure);
    if (this.failedJobs.size > 256) {
      this.failedJobs.delete(this.failedJobs.keys().next().value as number);
    }
    this.writeFailure(failure);
    this.multicast(job, this.failurePacket, -1);
    this.removeJob(failure.jobId);
    const refused = refusedSources(job, failure.deadWorkers);
    this.onJobFailed?.(
      failure.jobId,
      refused === "" ? describeFailure(failure) : `${describeFailure(failure)}; but ${refused}`,
    );
  }

  private writeFailure(f: JobFailure): void {
    writeFailed(this.failureView, 0, f.jobId, f.fanIn, f.psn, f.deadWorkers, f.waitedMs);
  }

  /** The packet in scratch as a Buffer of its exact length (a view made once per length). */
  private scratchPacket(length: number): Buffer {
    // Kept per length: ring jobs alternate data packets and 32-byte acknowledgements.
    let view = this.scratchViews[length >> 2];
    if (view === undefined) {
      view = this.scratch.subarray(0, length);
      this.scratchViews[length >> 2] = view;
    }
    return view;
  }

  /**
   * One framed packet, bytes [at, at + length) of `bytes`, past the ingress
   * faults: parse, admission, then the handler of its type.
   */
  private handle(bytes: Buffer, at: number, length: number, port: number, address: string): void {
    const h = this.header;
    // Each packet is copied to scratch, read through views made once.
    // TypedArray#set is cheaper than Buffer#copy for a whole datagram (most are one packet).
    if (at === 0 && length === bytes.length) this.scratch.set(bytes);
    else bytes.copy(this.scratch, 0, at, at + length);
    const reason = decodeHeader(this.scratchView, 0, length, h);
    if (reason !== DropReason.ok) {
      this.dropPacket(reason, null);
      return;
    }
    const packet = this.scratchPacket(length);
    this.stats.rxByType[h.type]++;
    const job = this.admit(h, port, address);
    if (job === null) return;
    switch (h.type) {
      case PacketType.contribution:
        this.contribution(job, h, packet, port, address);
        return;
      case PacketType.ack:
        this.ack(job, h, packet, port, address);
        return;
      case PacketType.forward:
        if (h.workerId < job.fanIn) {
          this.forward(job, h, packet, port, address);
          return;
        }
        break;
      case PacketType.keepalive:
        this.keepalive(job, h, port, address);
        return;
    }
    this.dropPacket(DropReason.unexpectedType, job);
  }

  /**
   * Admission, for every type: the job's rule, its fan-in, the sender's
   * bound address (section 15), and what the switch learns of a worker from
   * its packet (when it was heard, whether it takes batches). Returns the
   * job, or null when the packet was dropped.
   */
  private admit(h: PacketHeader, port: number, address: string): JobState | null {
    const slot = this.jobSlotById[h.jobId];
    if (slot < 0) {
      const failed = this.failedJobs.get(h.jobId);
      if (failed === undefined) {
        this.dropPacket(DropReason.unknownJob, null);
        return null;
      }
      // A worker that missed the news of its job's failure hears it now.
      this.dropPacket(DropReason.jobFailed, null);
      if (
        (h.type === PacketType.contribution || h.type === PacketType.keepalive) &&
        h.workerId !== WORKER_ID_NONE
      ) {
        this.writeFailure(failed);
        this.emit(this.failurePacket, port, address);
      }
      return null;
    }
    const job = this.jobs[slot];
    if (h.fanIn !== job.fanIn) {
      this.dropPacket(DropReason.fanInMismatch, job);
      return null;
    }
    const fromWorker =
      h.workerId < job.fanIn &&
      (h.type === PacketType.contribution ||
        h.type === PacketType.forward ||
        h.type === PacketType.keepalive);
    // A worker's packet counts only from the address bound to (job, worker):
    // before it touches an aggregator, a region, a watermark, an address or
    // the worker's liveness.
    if (
      fromWorker &&
      !job.fromBoundHost(h.workerId, port, address) &&
      !(h.type === PacketType.keepalive && job.fromKeepaliveSocket(h.workerId, port, address))
    ) {
      job.refusedPort[h.workerId] = port;
      job.refusedAddress[h.workerId] = address;
      this.dropPacket(DropReason.wrongSource, job);
      return null;
    }
    if (
      fromWorker &&
      h.type !== PacketType.keepalive &&
      (h.flags & Flag.batches) !== 0 &&
      (job.batchesPort[h.workerId] !== port || job.batchesAddress[h.workerId] !== address)
    ) {
      job.batchesPort[h.workerId] = port;
      job.batchesAddress[h.workerId] = address;
      this.transmit.acceptsBatches?.(port, address);
    }
    return job;
  }

  /** A worker's contribution: the job's shape, then its program (or, PS mode, on to the PS). */
  private contribution(
    job: JobState,
    h: PacketHeader,
    packet: Buffer,
    port: number,
    address: string,
  ): void {
    if (job.mode === "ring") {
      // A ring job's workers sum among themselves: nothing to aggregate here.
      this.dropPacket(DropReason.unexpectedType, job);
      return;
    }
    if (h.elementCount > this.aggregators.elements) {
      this.dropPacket(DropReason.tooManyElements, job);
      return;
    }
    if (h.workerId === WORKER_ID_NONE) {
      // Aggregates come from this switch, never to it.
      this.dropPacket(DropReason.badWorkerId, job);
      return;
    }
    if (
      (job.scaleBits >= 0 && h.scaleBits !== job.scaleBits) ||
      (job.elementsPerPacket > 0 && h.elementCount > job.elementsPerPacket)
    ) {
      // Not the job's shape: it must not claim an aggregator the job needs.
      this.dropPacket(DropReason.shapeMismatch, job);
      return;
    }
    if (job.watermark !== null && !job.watermark.admits(h.workerId, h.psn)) {
      // Beyond the window: nothing the switch has acked lets a worker send it.
      this.dropPacket(DropReason.windowViolation, job);
      return;
    }
    const counters = job.counters;
    const now = this.stats.lastPacketAt;
    counters.contributions++;
    this.heard(job, h.workerId, port, address);
    counters.bytesIn += packet.length;
    if (counters.firstContributionAt < 0) counters.firstContributionAt = now;
    counters.lastContributionAt = now;
    if (h.flags & Flag.resend) counters.resends++;
    else job.payloadBytesIn += 4 * h.elementCount;
    if (job.mode === "ps") {
      // Parameter-server baseline: the switch is a plain forwarder.
      job.bindOnFirstUse(h.workerId, port, address);
      this.heard(job, h.workerId, port, address);
      this.toParameterServer(job, packet, Flag.toPs);
      return;
    }
    const region = job.regionFor(h.regionEpoch, h.psn);
    if (region === null) {
      // The sender has not learned a change of region yet: tell it.
      this.dropPacket(DropReason.regionChanged, job);
      this.regions.tell(job, h.psn, h.workerId, port, address);
      return;
    }
    if (
      job.old !== null &&
      region === job.current &&
      !this.regions.admitNewEpoch(job, h.workerId)
    ) {
      this.dropPacket(DropReason.regionDraining, job);
      return;
    }
    if (job.mode === "netreduce") this.netReduce(job, region, h, port, address);
    else this.atp(job, region, h, packet, port, address);
  }

  private netReduce(
    job: JobState,
    region: RegionState,
    h: PacketHeader,
    port: number,
    address: string,
  ): void {
    const counters = job.counters;
    const outcome = this.outcome;
    const result = netReduceContribute(
      this.aggregators,
      job,
      region,
      h,
      this.scratchValues,
      HEADER_BYTES / 4,
      outcome,
    );
    if (outcome.dropReason !== DropReason.ok) {
      this.dropPacket(outcome.dropReason, job);
      return;
    }
    // An unbound worker's address is taken only from a contribution the
    // program accepted, so a stray packet cannot divert its results.
    job.bindOnFirstUse(h.workerId, port, address);
    this.heard(job, h.workerId, port, address);
    // Only an accepted PSN may move the switchover of a region change: a
    // stray far-ahead one must not keep the old region from draining.
    if (h.psn > job.maxPsn) job.maxPsn = h.psn;
    if (outcome.tookOver) {
      this.stats.takeovers++;
      counters.takeovers++;
    }
    if (result === null) return;
    if (outcome.replay) {
      this.stats.resultsReplayed++;
      counters.resultsReplayed++;
      this.emit(result, port, address);
    } else {
      this.stats.aggregationsCompleted++;
      counters.aggregationsCompleted++;
      this.sampleLatency(outcome.index);
      this.multicast(job, result, -1);
    }
  }

  private atp(
    job: JobState,
    region: RegionState,
    h: PacketHeader,
    packet: Buffer,
    port: number,
    address: string,
  ) {
    const counters = job.counters;
    const outcome = this.atpOutcome;
    const aggregate = atpContribute(
      this.aggregators,
      job,
      region,
      h,
      this.scratchValues,
      HEADER_BYTES / 4,
      outcome,
      this.atpPool === "esa" ? this.esaPriority : null,
    );
    if (outcome.dropReason !== DropReason.ok) {
      this.dropPacket(outcome.dropReason, job);
      return;
    }
    if (outcome.preempted) {
      this.stats.preemptions++;
      counters.preemptions++;
      const holder = this.job(outcome.preemptedJobId);
      if (holder !== undefined) {
        holder.counters.preempted++;
        if (outcome.foreign) {
          holder.counters.toParameterServer++;
          if (holder.awaitingAckSince < 0) holder.awaitingAckSince = this.aggregators.now;
        }
      }
    }
    if (aggregate !== null && outcome.foreign) {
      // The other job's partial goes to the PS (its workers' values are not
      // lost); then this contribution finds the aggregator empty.
      if (!outcome.preempted) counters.leaseReclaims++;
      this.stats.toParameterServer++;
      const owner = this.job(this.aggregators.jobId[outcome.index]) ?? job;
      this.emitToPs(owner, this.aggregators.psn[outcome.index], aggregate);
      this.atp(job, region, h, packet, port, address);
      return;
    }
    if (outcome.reclaimed) counters.leaseReclaims++;
    job.bindOnFirstUse(h.workerId, port, address);
    this.heard(job, h.workerId, port, address);
    if (h.psn > job.maxPsn) job.maxPsn = h.psn;
    if (outcome.freedStale) counters.staleFreed++;
    if (aggregate !== null) {
      if (outcome.passThrough) {
        // The partial was evicted to the PS; the contribution follows it.
        counters.evictions++;
        counters.fallbacks += popcount(outcome.evictedBitmap);
        if (outcome.overflowed) counters.overflowFallbacks++;
      } else if (outcome.completed) {
        this.stats.aggregationsCompleted++;
        counters.aggregationsCompleted++;
        this.sampleLatency(outcome.index);
      }
      this.toParameterServer(job, aggregate, 0);
    }
    if (outcome.passThrough) {
      counters.fallbacks++;
      if (outcome.overQuota) counters.overQuota++;
      if (outcome.collision) counters.collisions++;
      this.toParameterServer(job, packet, Flag.toPs | (outcome.collision ? Flag.collision : 0));
    }
  }

  /** Every 16th completion: its time from first contribution, cheap enough for the data path. */
  private sampleLatency(index: number): void {
    if ((this.stats.aggregationsCompleted & 15) === 0) {
      this.stats.completionLatencyMs.push(this.aggregators.now - this.aggregators.claimedAt[index]);
    }
  }

  /**
   * An ack from the PS: releases the ATP aggregator if it still holds the
   * ack's (job, PSN), then goes on unchanged to the job's workers (all, or the
   * one named in `destination` when the PS answers a single retransmission).
   */
  private ack(job: JobState, h: PacketHeader, packet: Buffer, port: number, address: string): void {
    if (!this.isParameterServerOf(job, h.psn, port, address)) {
      this.dropPacket(DropReason.notFromParameterServer, job);
      return;
    }
    const counters = job.counters;
    const toAll = h.destination === DESTINATION_ALL_WORKERS;
    if (!toAll && (h.destination >= job.fanIn || job.hostPort[h.destination] < 0)) {
      this.dropPacket(DropReason.unknownDestination, job);
      return;
    }
    if (h.aggregatorIndex >= this.aggregators.count && job.mode === "atp") {
      this.dropPacket(DropReason.badIndex, job);
      return;
    }
    if (job.mode === "atp") {
      if (atpRelease(this.aggregators, job, h.psn, h.aggregatorIndex)) counters.releases++;
      else counters.acksWithoutMatch++;
    }
    job.watermark?.ack(h.psn);
    this.stats.acks++;
    counters.acks++;
    job.awaitingAckSince = -1;
    if (toAll) this.multicast(job, packet, -1);
    else this.emit(packet, job.hostPort[h.destination], job.hostAddress[h.destination]);
  }

  /**
   * Sends `packet` to the parameter server with `setFlags` added. A packet
   * passed on is rewritten in scratch, which transmit is done with when
   * send() returns.
   */
  private toParameterServer(job: JobState, packet: Buffer, setFlags: number): void {
    if (setFlags !== 0) {
      packet.writeUInt16LE(packet.readUInt16LE(Field.flags) | setFlags, Field.flags);
    }
    this.stats.toParameterServer++;
    job.counters.toParameterServer++;
    if (job.awaitingAckSince < 0) job.awaitingAckSince = this.aggregators.now;
    this.emitToPs(job, packet.readUInt32LE(Field.psn), packet);
  }

  /** Sends `packet` (of PSN `psn`) to the job's PS for that PSN: its own, or the shared one. */
  private emitToPs(job: JobState, psn: number, packet: Buffer): void {
    const own = job.psPorts.length;
    if (own === 0) {
      this.emit(packet, this.psPort, this.psAddress);
      return;
    }
    const k = psn % own;
    this.emit(packet, job.psPorts[k], job.psAddresses[k]);
  }

  /** Whether `address:port` is the PS that serves PSN `psn` of `job`. */
  private isParameterServerOf(job: JobState, psn: number, port: number, address: string): boolean {
    const own = job.psPorts.length;
    if (own === 0) return port === this.psPort && address === this.psAddress;
    const k = psn % own;
    return job.psPorts[k] === port && job.psAddresses[k] === address;
  }

  /**
   * A worker's forward: on unchanged to the worker in `destination`, or to
   * every other worker of the job (section 4; ring jobs, section 17).
   */
  private forward(
    job: JobState,
    h: PacketHeader,
    packet: Buffer,
    port: number,
    address: string,
  ): void {
    // A worker's forward to itself (a hello, section 17) is how it makes
    // itself reachable before anyone has sent to it: it binds first. Any
    // other forward binds only if it went out (a dropped packet binds nothing).
    const sender = h.workerId;
    const destination = h.destination;
    if (destination === sender) job.bindOnFirstUse(sender, port, address);
    if (destination === DESTINATION_ALL_WORKERS) {
      this.stats.forwarded++;
      this.multicast(job, packet, sender);
    } else if (destination >= job.fanIn || job.hostPort[destination] < 0) {
      this.dropPacket(DropReason.unknownDestination, job);
      return;
    } else {
      this.stats.forwarded++;
      this.emit(packet, job.hostPort[destination], job.hostAddress[destination]);
    }
    job.bindOnFirstUse(sender, port, address);
    this.heard(job, sender, port, address);
  }

  /**
   * A worker's keepalive (section 15): a sign of life from its bound address
   * or its registered keepalive socket; one from the bound address may
   * register that socket's port (`aggregatorIndex`, 1..65535; 0: none).
   */
  private keepalive(job: JobState, h: PacketHeader, port: number, address: string): void {
    const w = h.workerId;
    job.counters.keepalives++;
    if (job.hostPort[w] === port && job.hostAddress[w] === address) {
      job.heardAt[w] = this.stats.lastPacketAt;
      if (h.aggregatorIndex >= 1 && h.aggregatorIndex <= 0xffff) {
        job.keepalivePort[w] = h.aggregatorIndex;
      }
    } else if (job.fromKeepaliveSocket(w, port, address)) {
      job.heardAt[w] = this.stats.lastPacketAt;
    }
  }

  /**
   * A sign of life of worker `w` (a contribution, forward or keepalive the
   * switch accepted): it counts only from the worker's bound address, so a
   * stranger's packet, or an unbound worker's keepalive, keeps no one alive.
   */
  private heard(job: JobState, w: number, port: number, address: string): void {
    if (job.hostPort[w] === port && job.hostAddress[w] === address) {
      job.heardAt[w] = this.stats.lastPacketAt;
    }
  }

  private multicast(job: JobState, packet: Buffer, except: number): void {
    for (let w = 0; w < job.fanIn; w++) {
      if (w !== except && job.hostPort[w] >= 0) {
        this.emit(packet, job.hostPort[w], job.hostAddress[w]);
      }
    }
  }

  /** Sends `packet`, through the egress faults if there are any. */
  private emit(packet: Buffer, port: number, address: string): void {
    if (this.faults.egress.enabled) this.faults.send(packet, port, address, this.aggregators.now);
    else this.send(packet, port, address);
  }

  private send(packet: Buffer, port: number, address: string): void {
    this.stats.txByType[packet[1]]++;
    this.stats.txPackets++;
    this.stats.txBytes += packet.length;
    this.transmit.send(packet, port, address);
  }

  private dropPacket(reason: DropReasonValue, job: JobState | null): void {
    this.stats.drops[reason]++;
    if (job !== null) job.counters.drops++;
  }
}

/** An ATP job's payload bytes still to send, as far as the switch knows (its size minus its first sends). */
function remainingBytes(job: JobState): number {
  return Math.max(0, job.totalBytes - job.payloadBytesIn);
}

function popcount(bits: number): number {
  let n = bits - ((bits >>> 1) & 0x55555555);
  n = (n & 0x33333333) + ((n >>> 2) & 0x33333333);
  return (Math.imul((n + (n >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}
