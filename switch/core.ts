import { datagramPackets, decodeHeader, encodeHeader, packetBytesAt } from "../proto/codec.js";
import type { SwitchConfig } from "../proto/config.js";
import { DROP_REASON_COUNT, DropReason, type DropReasonValue } from "../proto/drops.js";
import { describeFailure } from "../proto/failure.js";
import type { LinkHost } from "../proto/links.js";
import { deriveSeed, Prng } from "../proto/prng.js";
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
import { type AtpOutcome, AtpVerdict, atpContribute, atpRelease } from "./atp.js";
import { FaultAction, FaultInjector } from "./faults.js";
import { JobState, type RegionState } from "./jobs.js";
import { type JobFailure, Liveness } from "./liveness.js";
import { netReduceContribute, type ProgramOutcome, Verdict } from "./netreduce.js";
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
    "drops" | "activeSeconds" | "packetsPerSecond" | "injected" | "jobs"
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
}

/**
 * The switch's data plane, sans-IO: datagrams and time go in through
 * receive() and tick(), packets come out through `transmit`. A datagram may
 * carry several packets (proto/README.md, section 2.1); per packet it runs a
 * straight pipeline: ingress faults, parse, job rule, program (NetReduce,
 * ATP), then egress faults and send. Nothing here allocates per packet.
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
  };
  readonly aggregators: AggregatorArray;
  private readonly regions: RegionChanges;
  private readonly liveness: Liveness;
  private readonly failureHeader = emptyHeader();
  private readonly failurePacket = Buffer.alloc(HEADER_BYTES);
  private readonly failureView = new DataView(
    this.failurePacket.buffer,
    this.failurePacket.byteOffset,
    HEADER_BYTES,
  );
  readonly jobs: JobState[] = [];
  readonly ingressFaults: FaultInjector;
  readonly egressFaults: FaultInjector;

  private readonly jobSlotById = new Int32Array(0x10000).fill(-1);
  private readonly header = emptyHeader();
  private readonly outcome: ProgramOutcome = { index: 0, dropReason: 0, tookOver: false };
  private readonly atpOutcome: AtpOutcome = {
    index: 0,
    dropReason: 0,
    collision: false,
    overflowed: false,
    freedStale: false,
    evictedBitmap: 0,
    reclaimed: false,
    overQuota: false,
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

  // One packet held back by an ingress reorder (a copy), released after the next one.
  private readonly heldInCopy = Buffer.alloc(MAX_DATAGRAM_BYTES);
  private heldInLength = -1;
  private heldInPort = 0;
  private heldInAddress = "";
  // One send held back by an egress reorder, released after the next send.
  private heldOut: Buffer | null = null;
  // Held packets are copied: an aggregator's packet may change before release.
  private readonly heldOutCopy: Buffer;
  private heldOutPort = 0;
  private heldOutAddress = "";

  constructor(
    config: SwitchConfig,
    private readonly transmit: Transmit,
  ) {
    this.aggregators = new AggregatorArray(config.aggregators, config.elementsPerAggregator);
    this.liveness = new Liveness(this.aggregators, config.deadPeerMs);
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
    this.heldOutCopy = Buffer.alloc(65536);
    this.psPort = config.parameterServer?.port ?? -1;
    this.psAddress = config.parameterServer?.host ?? "";
    this.ingressFaults = new FaultInjector(
      config.faults.ingress,
      new Prng(deriveSeed(config.faults.seed, 0)),
    );
    this.egressFaults = new FaultInjector(
      config.faults.egress,
      new Prng(deriveSeed(config.faults.seed, 1)),
    );
    for (const job of config.jobs) this.installJob(new JobState(job));
  }

  /** Installs a job's rule; a job id already installed is replaced. */
  installJob(job: JobState): void {
    this.failedJobs.delete(job.id);
    if (this.jobSlotById[job.id] >= 0) this.removeJob(job.id);
    this.jobSlotById[job.id] = this.jobs.length;
    this.jobs.push(job);
    this.regions.fresh(job, job.current);
  }

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
      for (let w = 0; w < job.fanIn; w++) {
        if (job.hostPort[w] === port && job.hostAddress[w] === address) {
          return { job: job.id, worker: w };
        }
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
   */
  receive(datagram: Buffer, port: number, address: string, now: number): void {
    const stats = this.stats;
    stats.rxDatagrams++;
    stats.rxBytes += datagram.length;
    if (stats.firstPacketAt < 0) stats.firstPacketAt = now;
    stats.lastPacketAt = now;
    this.aggregators.now = now;
    const packets = datagramPackets(datagram, datagram.length);
    if (packets < 0) {
      // The framing is not certain: the whole datagram goes, counted once.
      stats.rxPackets++;
      this.dropPacket(-packets as DropReasonValue, null);
      return;
    }
    if (datagram.length > MAX_DATAGRAM_BYTES) {
      // Larger than any UDP datagram: only a caller in this process could hand it over.
      stats.rxPackets++;
      this.dropPacket(DropReason.tooManyElements, null);
      return;
    }
    let at = 0;
    for (let k = 0; k < packets; k++) {
      const length = packetBytesAt(datagram, at);
      this.receivePacket(datagram, at, length, port, address);
      at += length;
    }
  }

  private receivePacket(
    datagram: Buffer,
    at: number,
    length: number,
    port: number,
    address: string,
  ): void {
    const stats = this.stats;
    stats.rxPackets++;
    switch (this.ingressFaults.decide()) {
      case FaultAction.drop:
        stats.drops[DropReason.injectedDrop]++;
        return;
      case FaultAction.duplicate:
        this.process(datagram, at, length, port, address);
        break;
      case FaultAction.reorder:
        if (this.heldInLength < 0) {
          datagram.copy(this.heldInCopy, 0, at, at + length);
          this.heldInLength = length;
          this.heldInPort = port;
          this.heldInAddress = address;
          return;
        }
        break;
    }
    this.process(datagram, at, length, port, address);
    this.releaseHeldIn();
  }

  /** Lets held-back packets go when traffic pauses; call every few ms. */
  tick(now: number): void {
    this.releaseHeldIn();
    this.releaseHeldOut();
    const failure = this.liveness.check(this.jobs, now);
    if (failure !== null) this.failJob(failure);
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
    this.onJobFailed?.(failure.jobId, describeFailure(failure));
  }

  private writeFailure(f: JobFailure): void {
    const h = this.failureHeader;
    h.type = PacketType.failed;
    h.flags = 0;
    h.jobId = f.jobId;
    h.workerId = WORKER_ID_NONE;
    h.fanIn = f.fanIn;
    h.elementCount = 0;
    h.psn = f.psn;
    h.aggregatorIndex = Math.min(0xffffffff, Math.round(f.waitedMs));
    h.bitmap = f.deadWorkers;
    h.scaleBits = 0;
    h.regionEpoch = 0;
    h.destination = DESTINATION_ALL_WORKERS;
    encodeHeader(this.failureView, 0, h);
  }

  private releaseHeldIn(): void {
    const length = this.heldInLength;
    if (length < 0) return;
    this.heldInLength = -1;
    this.process(this.heldInCopy, 0, length, this.heldInPort, this.heldInAddress);
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

  /** One framed packet: bytes [at, at + length) of `datagram`. */
  private process(
    datagram: Buffer,
    at: number,
    length: number,
    port: number,
    address: string,
  ): void {
    const stats = this.stats;
    const h = this.header;
    // TypedArray#set is cheaper than Buffer#copy for a whole datagram (most are one packet).
    if (at === 0 && length === datagram.length) this.scratch.set(datagram);
    else datagram.copy(this.scratch, 0, at, at + length);
    let reason = decodeHeader(this.scratchView, 0, length, h);
    if (reason !== DropReason.ok) {
      this.dropPacket(reason, null);
      return;
    }
    const packet = this.scratchPacket(length);
    stats.rxByType[h.type]++;
    const slot = this.jobSlotById[h.jobId];
    if (slot < 0) {
      const failed = this.failedJobs.get(h.jobId);
      if (failed === undefined) {
        this.dropPacket(DropReason.unknownJob, null);
        return;
      }
      // A worker that missed the news of its job's failure hears it now.
      this.dropPacket(DropReason.jobFailed, null);
      if (h.type === PacketType.contribution && h.workerId !== WORKER_ID_NONE) {
        this.writeFailure(failed);
        this.emit(this.failurePacket, port, address);
      }
      return;
    }
    const job = this.jobs[slot];
    if (h.fanIn !== job.fanIn) {
      this.dropPacket(DropReason.fanInMismatch, job);
      return;
    }
    // A worker's packet counts only from the address bound to (job, worker):
    // before it touches an aggregator, a region, a watermark or an address.
    if (
      h.workerId < job.fanIn &&
      (h.type === PacketType.contribution || h.type === PacketType.forward) &&
      !job.fromBoundHost(h.workerId, port, address)
    ) {
      this.dropPacket(DropReason.wrongSource, job);
      return;
    }
    if (h.workerId < job.fanIn) job.heardAt[h.workerId] = stats.lastPacketAt;

    if (
      (h.flags & Flag.batches) !== 0 &&
      h.workerId < job.fanIn &&
      (h.type === PacketType.contribution || h.type === PacketType.forward) &&
      (job.batchesPort[h.workerId] !== port || job.batchesAddress[h.workerId] !== address)
    ) {
      job.batchesPort[h.workerId] = port;
      job.batchesAddress[h.workerId] = address;
      this.transmit.acceptsBatches?.(port, address);
    }

    if (h.type === PacketType.contribution && job.mode === "ring") {
      // A ring job's workers sum among themselves: nothing to aggregate here.
      this.dropPacket(DropReason.unexpectedType, job);
      return;
    }
    if (h.type === PacketType.contribution) {
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
      const counters = job.counters;
      counters.contributions++;
      counters.bytesIn += length;
      if (counters.firstContributionAt < 0) counters.firstContributionAt = stats.lastPacketAt;
      counters.lastContributionAt = stats.lastPacketAt;
      if (h.flags & Flag.resend) counters.resends++;
      if (job.mode === "ps") {
        // Parameter-server baseline: the switch is a plain forwarder.
        job.bindOnFirstUse(h.workerId, port, address);
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
      return;
    }

    if (h.type === PacketType.ack) {
      if (port !== this.psPort || address !== this.psAddress) {
        this.dropPacket(DropReason.notFromParameterServer, job);
        return;
      }
      this.ack(job, h, packet);
      return;
    }

    if (h.type === PacketType.forward && h.workerId < job.fanIn) {
      // A worker's forward to itself (a hello, section 17) is how it makes
      // itself reachable before anyone has sent to it: it binds first. Any
      // other forward binds only if it went out (a dropped packet binds nothing).
      if (h.destination === h.workerId) job.bindOnFirstUse(h.workerId, port, address);
      reason = this.forward(job, h.destination, h.workerId, packet);
      if (reason !== DropReason.ok) this.dropPacket(reason, job);
      else job.bindOnFirstUse(h.workerId, port, address);
      return;
    }
    this.dropPacket(DropReason.unexpectedType, job);
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
    const verdict = netReduceContribute(
      this.aggregators,
      job,
      region,
      h,
      this.scratchValues,
      HEADER_BYTES / 4,
      outcome,
    );
    // An unbound worker's address is taken only from a contribution the
    // program accepted, so a stray packet cannot divert its results.
    if (verdict !== Verdict.drop) {
      job.bindOnFirstUse(h.workerId, port, address);
      // Only an accepted PSN may move the switchover of a region change: a
      // stray far-ahead one must not keep the old region from draining.
      if (h.psn > job.maxPsn) job.maxPsn = h.psn;
    }
    if (outcome.tookOver) {
      this.stats.takeovers++;
      counters.takeovers++;
    }
    if (verdict === Verdict.completed) {
      this.stats.aggregationsCompleted++;
      counters.aggregationsCompleted++;
      this.sampleLatency(outcome.index);
      this.multicast(job, this.aggregators.resultPacket(outcome.index, h.elementCount), -1);
    } else if (verdict === Verdict.replay) {
      this.stats.resultsReplayed++;
      counters.resultsReplayed++;
      this.emit(this.aggregators.resultPacket(outcome.index, h.elementCount), port, address);
    } else if (verdict === Verdict.drop) {
      this.dropPacket(outcome.dropReason, job);
    }
  }

  private atp(
    job: JobState,
    region: RegionState,
    h: PacketHeader,
    datagram: Buffer,
    port: number,
    address: string,
  ) {
    const counters = job.counters;
    const outcome = this.atpOutcome;
    const verdict = atpContribute(
      this.aggregators,
      job,
      region,
      h,
      this.scratchValues,
      HEADER_BYTES / 4,
      outcome,
    );
    if (verdict === AtpVerdict.drop) {
      this.dropPacket(outcome.dropReason, job);
      return;
    }
    if (verdict === AtpVerdict.evictForeign) {
      // The other job's partial goes to the PS (its workers' values are not
      // lost); then this contribution finds the aggregator empty.
      counters.leaseReclaims++;
      this.stats.toParameterServer++;
      this.emit(this.aggregate(outcome.index), this.psPort, this.psAddress);
      this.atp(job, region, h, datagram, port, address);
      return;
    }
    if (outcome.reclaimed) counters.leaseReclaims++;
    job.bindOnFirstUse(h.workerId, port, address);
    if (h.psn > job.maxPsn) job.maxPsn = h.psn;
    if (outcome.freedStale) counters.staleFreed++;
    switch (verdict) {
      case AtpVerdict.aggregateToPs:
        this.stats.aggregationsCompleted++;
        counters.aggregationsCompleted++;
        this.sampleLatency(outcome.index);
        this.toParameterServer(job, this.aggregate(outcome.index), 0);
        return;
      case AtpVerdict.aggregateToPsAgain:
        // Marked as a resend so the PS, if already done, sends its ack again.
        this.toParameterServer(job, this.aggregate(outcome.index), Flag.resend);
        return;
      case AtpVerdict.evictAndPassThrough:
        counters.evictions++;
        counters.fallbacks += popcount(outcome.evictedBitmap);
        if (outcome.overflowed) counters.overflowFallbacks++;
        this.toParameterServer(job, this.aggregate(outcome.index), 0);
        counters.fallbacks++;
        this.toParameterServer(job, datagram, Flag.toPs);
        return;
      case AtpVerdict.passThrough:
        counters.fallbacks++;
        if (outcome.overQuota) counters.overQuota++;
        if (outcome.collision) counters.collisions++;
        this.toParameterServer(job, datagram, Flag.toPs | (outcome.collision ? Flag.collision : 0));
        return;
    }
  }

  /** Every 16th completion: its time from first contribution, cheap enough for the data path. */
  private sampleLatency(index: number): void {
    if ((this.stats.aggregationsCompleted & 15) === 0) {
      this.stats.completionLatencyMs.push(this.aggregators.now - this.aggregators.claimedAt[index]);
    }
  }

  /** Aggregator `index`'s packet as the ATP program last wrote it (an aggregate for the PS). */
  private aggregate(index: number): Buffer {
    return this.aggregators.resultPacket(index, this.aggregators.elementCount[index]);
  }

  /**
   * An ack from the PS: releases the ATP aggregator if it still holds the
   * ack's (job, PSN), then goes on unchanged to the job's workers (all, or the
   * one named in `destination` when the PS answers a single retransmission).
   */
  private ack(job: JobState, h: PacketHeader, datagram: Buffer): void {
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
    this.stats.acks++;
    counters.acks++;
    job.awaitingAckSince = -1;
    if (toAll) this.multicast(job, datagram, -1);
    else this.emit(datagram, job.hostPort[h.destination], job.hostAddress[h.destination]);
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
    this.emit(packet, this.psPort, this.psAddress);
  }

  /** Sends a datagram unchanged to a worker of the job, or to all but the sender. */
  private forward(
    job: JobState,
    destination: number,
    sender: number,
    datagram: Buffer,
  ): DropReasonValue {
    if (destination === DESTINATION_ALL_WORKERS) {
      this.stats.forwarded++;
      this.multicast(job, datagram, sender);
      return DropReason.ok;
    }
    if (destination >= job.fanIn || job.hostPort[destination] < 0) {
      return DropReason.unknownDestination;
    }
    this.stats.forwarded++;
    this.emit(datagram, job.hostPort[destination], job.hostAddress[destination]);
    return DropReason.ok;
  }

  private multicast(job: JobState, packet: Buffer, except: number): void {
    for (let w = 0; w < job.fanIn; w++) {
      if (w !== except && job.hostPort[w] >= 0) {
        this.emit(packet, job.hostPort[w], job.hostAddress[w]);
      }
    }
  }

  private emit(packet: Buffer, port: number, address: string): void {
    switch (this.egressFaults.decide()) {
      case FaultAction.drop:
        return;
      case FaultAction.duplicate:
        this.send(packet, port, address);
        break;
      case FaultAction.reorder:
        if (this.heldOut === null) {
          packet.copy(this.heldOutCopy);
          this.heldOut = this.heldOutCopy.subarray(0, packet.length);
          this.heldOutPort = port;
          this.heldOutAddress = address;
          return;
        }
        break;
    }
    this.send(packet, port, address);
    this.releaseHeldOut();
  }

  private releaseHeldOut(): void {
    const held = this.heldOut;
    if (held === null) return;
    this.heldOut = null;
    this.send(held, this.heldOutPort, this.heldOutAddress);
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

function popcount(bits: number): number {
  let n = bits - ((bits >>> 1) & 0x55555555);
  n = (n & 0x33333333) + ((n >>> 2) & 0x33333333);
  return (Math.imul((n + (n >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}
