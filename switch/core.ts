import { decodeHeader } from "../proto/codec.js";
import type { SwitchConfig } from "../proto/config.js";
import { DROP_REASON_COUNT, DropReason, type DropReasonValue } from "../proto/drops.js";
import { deriveSeed, Prng } from "../proto/prng.js";
import {
  DESTINATION_ALL_WORKERS,
  emptyHeader,
  Field,
  Flag,
  HEADER_BYTES,
  type PacketHeader,
  PacketType,
  packetBytes,
  WORKER_ID_NONE,
} from "../proto/wire.js";
import { AggregatorArray } from "./aggregators.js";
import { type AtpOutcome, AtpVerdict, atpContribute, atpRelease } from "./atp.js";
import { FaultAction, FaultInjector } from "./faults.js";
import { JobState } from "./jobs.js";
import { netReduceContribute, type ProgramOutcome, Verdict } from "./netreduce.js";

/** Where the switch's packets go: the UDP adapter, or a test's capture. */
export interface Transmit {
  /** Sends all of `packet`, which stays unchanged until the send has happened (see SwitchCore). */
  send(packet: Buffer, port: number, address: string): void;
}

export interface SwitchStats {
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  /** drops by DropReason value */
  drops: Float64Array;
  aggregationsCompleted: number;
  resultsReplayed: number;
  takeovers: number;
  forwarded: number;
  /** ATP and PS jobs: packets sent to the parameter server, and acks back from it */
  toParameterServer: number;
  acks: number;
  /** `now` of the first and latest datagram, for packet rates */
  firstPacketAt: number;
  lastPacketAt: number;
}

/**
 * The switch's data plane, sans-IO: datagrams and time go in through
 * receive() and tick(), packets come out through `transmit`. Per datagram it
 * runs a straight pipeline: ingress faults, parse, job rule, program
 * (NetReduce), then egress faults and send. Nothing here allocates per packet.
 *
 * Buffers handed to transmit are aggregator slots or received datagrams; a
 * slot is rewritten only when a newer PSN takes it over, after every worker
 * has the result (the 2 x window rule), so sends never see a changing buffer.
 */
export class SwitchCore {
  readonly stats: SwitchStats = {
    rxPackets: 0,
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
    firstPacketAt: -1,
    lastPacketAt: -1,
  };
  readonly aggregators: AggregatorArray;
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
  };
  /** where ATP fallbacks and PS-mode traffic go; port -1 when no job needs a PS */
  private readonly psPort: number;
  private readonly psAddress: string;
  // Received datagrams are copied here so the header and payload are read
  // through views made once, whatever the datagram's own alignment.
  private readonly scratch: Buffer;
  private readonly scratchView: DataView;
  private readonly scratchValues: Int32Array;

  // One datagram held back by an ingress reorder, released after the next one.
  private heldIn: Buffer | null = null;
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
    const scratchArena = new ArrayBuffer(packetBytes(config.elementsPerAggregator));
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

  installJob(job: JobState): void {
    this.jobSlotById[job.id] = this.jobs.length;
    this.jobs.push(job);
    // An ATP slice may be shared with running jobs; only a NetReduce region is the job's alone.
    if (job.mode === "netreduce") this.aggregators.clear(job.offset, job.size);
  }

  job(id: number): JobState | undefined {
    const slot = this.jobSlotById[id];
    return slot < 0 ? undefined : this.jobs[slot];
  }

  /** One datagram from `address:port`, at time `now` (ms). Never throws on bad input. */
  receive(datagram: Buffer, port: number, address: string, now: number): void {
    const stats = this.stats;
    stats.rxPackets++;
    stats.rxBytes += datagram.length;
    if (stats.firstPacketAt < 0) stats.firstPacketAt = now;
    stats.lastPacketAt = now;
    switch (this.ingressFaults.decide()) {
      case FaultAction.drop:
        stats.drops[DropReason.injectedDrop]++;
        return;
      case FaultAction.duplicate:
        this.process(datagram, port, address);
        break;
      case FaultAction.reorder:
        if (this.heldIn === null) {
          this.heldIn = datagram;
          this.heldInPort = port;
          this.heldInAddress = address;
          return;
        }
        break;
    }
    this.process(datagram, port, address);
    this.releaseHeldIn();
  }

  /** Lets held-back packets go when traffic pauses; call every few ms. */
  tick(_now: number): void {
    this.releaseHeldIn();
    this.releaseHeldOut();
  }

  private releaseHeldIn(): void {
    const held = this.heldIn;
    if (held === null) return;
    this.heldIn = null;
    this.process(held, this.heldInPort, this.heldInAddress);
  }

  private process(datagram: Buffer, port: number, address: string): void {
    const stats = this.stats;
    const h = this.header;
    const scratch = this.scratch;
    const copied = datagram.copy(scratch, 0, 0, Math.min(datagram.length, scratch.length));
    let reason = decodeHeader(this.scratchView, 0, datagram.length, h);
    if (reason !== DropReason.ok) {
      this.dropPacket(reason, null);
      return;
    }
    const slot = this.jobSlotById[h.jobId];
    if (slot < 0) {
      this.dropPacket(DropReason.unknownJob, null);
      return;
    }
    const job = this.jobs[slot];
    if (h.fanIn !== job.fanIn) {
      this.dropPacket(DropReason.fanInMismatch, job);
      return;
    }

    if (h.type === PacketType.contribution) {
      if (h.elementCount > this.aggregators.elements || copied < datagram.length) {
        this.dropPacket(DropReason.tooManyElements, job);
        return;
      }
      if (h.workerId === WORKER_ID_NONE) {
        // Aggregates come from this switch, never to it.
        this.dropPacket(DropReason.badWorkerId, job);
        return;
      }
      const counters = job.counters;
      counters.contributions++;
      counters.bytesIn += datagram.length;
      if (counters.firstContributionAt < 0) counters.firstContributionAt = stats.lastPacketAt;
      counters.lastContributionAt = stats.lastPacketAt;
      if (h.flags & Flag.resend) counters.resends++;
      if (job.mode === "netreduce") this.netReduce(job, h, port, address);
      else if (job.mode === "atp") this.atp(job, h, datagram, port, address);
      else {
        // Parameter-server baseline: the switch is a plain forwarder.
        job.learnHost(h.workerId, port, address);
        this.toParameterServer(job, datagram, Flag.toPs);
      }
      return;
    }

    if (h.type === PacketType.ack) {
      if (port !== this.psPort || address !== this.psAddress) {
        this.dropPacket(DropReason.notFromParameterServer, job);
        return;
      }
      this.ack(job, h, datagram);
      return;
    }

    if (h.type === PacketType.forward && h.workerId < job.fanIn) {
      job.learnHost(h.workerId, port, address);
      reason = this.forward(job, h.destination, h.workerId, datagram);
      if (reason !== DropReason.ok) this.dropPacket(reason, job);
      return;
    }
    this.dropPacket(DropReason.unexpectedType, job);
  }

  private netReduce(job: JobState, h: PacketHeader, port: number, address: string): void {
    const counters = job.counters;
    const outcome = this.outcome;
    const verdict = netReduceContribute(
      this.aggregators,
      job,
      h,
      this.scratchValues,
      HEADER_BYTES / 4,
      outcome,
    );
    // Learn the sender's address only from a contribution the program
    // accepted, so a stray process cannot divert a worker's results.
    if (verdict !== Verdict.drop) job.learnHost(h.workerId, port, address);
    if (outcome.tookOver) {
      this.stats.takeovers++;
      counters.takeovers++;
    }
    if (verdict === Verdict.completed) {
      this.stats.aggregationsCompleted++;
      counters.aggregationsCompleted++;
      this.multicast(job, this.aggregators.resultPacket(outcome.index, h.elementCount), -1);
    } else if (verdict === Verdict.replay) {
      this.stats.resultsReplayed++;
      counters.resultsReplayed++;
      this.emit(this.aggregators.resultPacket(outcome.index, h.elementCount), port, address);
    } else if (verdict === Verdict.drop) {
      this.dropPacket(outcome.dropReason, job);
    }
  }

  private atp(job: JobState, h: PacketHeader, datagram: Buffer, port: number, address: string) {
    const counters = job.counters;
    const outcome = this.atpOutcome;
    const verdict = atpContribute(
      this.aggregators,
      job,
      h,
      this.scratchValues,
      HEADER_BYTES / 4,
      outcome,
    );
    if (verdict === AtpVerdict.drop) {
      this.dropPacket(outcome.dropReason, job);
      return;
    }
    job.learnHost(h.workerId, port, address);
    if (outcome.freedStale) counters.staleFreed++;
    const aggregate = this.aggregators.resultPacket(
      outcome.index,
      this.aggregators.elementCount[outcome.index],
    );
    switch (verdict) {
      case AtpVerdict.aggregateToPs:
        this.stats.aggregationsCompleted++;
        counters.aggregationsCompleted++;
        this.toParameterServer(job, aggregate, 0);
        return;
      case AtpVerdict.aggregateToPsAgain:
        // Marked as a resend so the PS, if already done, sends its ack again.
        this.toParameterServer(job, aggregate, Flag.resend);
        return;
      case AtpVerdict.evictAndPassThrough:
        counters.evictions++;
        counters.fallbacks += popcount(outcome.evictedBitmap);
        if (outcome.overflowed) counters.overflowFallbacks++;
        this.toParameterServer(job, aggregate, 0);
        counters.fallbacks++;
        this.toParameterServer(job, datagram, Flag.toPs);
        return;
      case AtpVerdict.passThrough:
        counters.fallbacks++;
        if (outcome.collision) counters.collisions++;
        this.toParameterServer(job, datagram, Flag.toPs | (outcome.collision ? Flag.collision : 0));
        return;
    }
  }

  /**
   * An ack from the PS: releases the ATP aggregator if it still holds the
   * ack's (job, PSN), then goes on unchanged to the job's workers (all, or the
   * one named in `destination` when the PS answers a single retransmission).
   */
  private ack(job: JobState, h: PacketHeader, datagram: Buffer): void {
    const counters = job.counters;
    if (job.mode === "atp") {
      if (atpRelease(this.aggregators, job, h.psn, h.aggregatorIndex)) counters.releases++;
      else counters.acksWithoutMatch++;
    }
    if (h.destination !== DESTINATION_ALL_WORKERS && h.destination >= job.fanIn) {
      this.dropPacket(DropReason.unknownDestination, job);
      return;
    }
    this.stats.acks++;
    counters.acks++;
    if (h.destination === DESTINATION_ALL_WORKERS) this.multicast(job, datagram, -1);
    else if (job.hostPort[h.destination] >= 0) {
      this.emit(datagram, job.hostPort[h.destination], job.hostAddress[h.destination]);
    }
  }

  /**
   * Sends `packet` to the parameter server with `setFlags` added. A received
   * datagram is rewritten in place: it is this process's own buffer, and the
   * send is synchronous (see SwitchServer).
   */
  private toParameterServer(job: JobState, packet: Buffer, setFlags: number): void {
    if (setFlags !== 0) {
      packet.writeUInt16LE(packet.readUInt16LE(Field.flags) | setFlags, Field.flags);
    }
    this.stats.toParameterServer++;
    job.counters.toParameterServer++;
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
