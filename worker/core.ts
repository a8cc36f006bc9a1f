import { atpIndex, netReduceIndex, newerEpoch, windowInRegion } from "../proto/addressing.js";
import { decodeHeader, forEachPacket, type PacketVisitor } from "../proto/codec.js";
import type { CongestionControl, SummedMode } from "../proto/config.js";
import { DROP_REASON_COUNT, DropReason, type DropReasonValue } from "../proto/drops.js";
import { describeFailure } from "../proto/failure.js";
import { dequantizeInto, quantizeInto } from "../proto/fixedpoint.js";
import {
  type FailedPacket,
  type RegionPacket,
  readFailed,
  readRegion,
  writeContribution,
  writeKeepalive,
} from "../proto/packets.js";
import {
  emptyHeader,
  Field,
  Flag,
  HEADER_BYTES,
  MAX_DATAGRAM_BYTES,
  MAX_ELEMENTS_PER_PACKET,
  MAX_FAN_IN,
  MAX_SCALE_BITS,
  PacketType,
} from "../proto/wire.js";
import { PacketSlots } from "../runtime/slots.js";
import { CongestionWindow } from "./congestion.js";
import { Rack, RttEstimator } from "./rtt.js";

export interface WorkerCoreOptions {
  /**
   * netreduce: the switch sums and sends results; atp: hashed aggregators,
   * results come as the PS's acks; ps: every contribution goes to the PS
   */
  mode: SummedMode;
  jobId: number;
  workerId: number;
  fanIn: number;
  /** the job's region (NetReduce) or pool slice (ATP) in the switch's aggregator array; unused in ps mode */
  regionOffset: number;
  regionSize: number;
  /** most packets in flight */
  window: number;
  elementsPerPacket: number;
  /** fixed point: value = round(x * 2^scaleBits) */
  scaleBits: number;
  /** retransmission timeout before any RTT sample, and its bounds (ms) */
  rtoInitialMs: number;
  /** unset: the path's, the largest RTT sampled lately + G (RttEstimator) */
  rtoFloorMs?: number;
  rtoMaxMs: number;
  /**
   * retransmission timeouts of one PSN after which the all-reduce fails
   * instead of retrying forever (resends by loss detection do not count:
   * packetGivenUp); with giveUpAfterMs, only once the PSN has also waited
   * that long since its first send (so a paused peer never ends a healthy
   * job early)
   */
  maxSendsPerPacket: number;
  /**
   * the least reordering wait (RACK's reo_wnd, see RttEstimator): a PSN
   * sent before one that has its result is resent once it has waited that
   * one's round trip plus max(gapFloorMs, minRTT / 4) (ms; unset: G; the
   * simulator sets one packet's serialization)
   */
  gapFloorMs?: number;
  /**
   * ATP and PS jobs: the PSes the job's PSNs are spread over (PSN p
   * answered by PS p % n; default 1). Each answers through its own queue, so
   * results of different PSes pass each other: loss detection (RACK) runs
   * per PS, PSN p against the latest answered PSN of its own PS.
   */
  parameterServers?: number;
  /** RFC 6298's clock granularity G in the RTO (ms; unset: measured from the process's timers, at least 1; the simulator sets the link's) */
  clockGranularityMs?: number;
  /** an all-reduce with no answer from the switch for this long fails (ms; 0: never) */
  giveUpAfterMs?: number;
  /** how the window reacts to ECN-marked results (default none) */
  congestionControl?: CongestionControl;
  /** epoch of the region given (by the control plane); 0 for a static config */
  regionEpoch?: number;
  /**
   * after this long without sending the switch anything (ms), a `keepalive`
   * says this worker is alive (proto/README.md, section 15); default
   * DEFAULT_KEEPALIVE_MS, 0: never
   */
  keepaliveMs?: number;
}

/** A worker's keepalive interval unless told (ms): far below any dead-peer timeout. */
export const DEFAULT_KEEPALIVE_MS = 1000;

/**
 * Whether a packet whose retransmission timer fired `timeouts` times, first
 * sent `waitedMs` ago, is given up on: after maxSendsPerPacket timeouts, and
 * (with a give-up time) once it has waited that long too, so the count alone
 * never ends a job faster than the switch's dead-peer timeout and the
 * worker's give-up allow. Only timeouts count: a resend because later
 * packets were answered (RACK) shows the path alive, and a packet that waits
 * behind a busy PS may be resent that way many times in a few milliseconds.
 */
export function packetGivenUp(
  timeouts: number,
  waitedMs: number,
  o: { maxSendsPerPacket: number; giveUpAfterMs?: number },
): boolean {
  const giveUp = o.giveUpAfterMs ?? 0;
  return timeouts >= o.maxSendsPerPacket && (giveUp <= 0 || waitedMs >= giveUp);
}

/**
 * A worker's keepalives (WorkerCore's and CollectiveCore's): when one is
 * due, and the packet. Any packet sent to the switch restarts the wait.
 */
export class Keepalive {
  /** `now` of the latest packet sent to the switch (Infinity: none yet) */
  lastSentAt = Number.POSITIVE_INFINITY;
  private readonly packet = Buffer.alloc(HEADER_BYTES);
  private readonly view: DataView;
  readonly intervalMs: number;

  constructor(o: { jobId: number; workerId: number; fanIn: number; keepaliveMs?: number }) {
    this.intervalMs = o.keepaliveMs ?? DEFAULT_KEEPALIVE_MS;
    if (!(Number.isFinite(this.intervalMs) && this.intervalMs >= 0)) {
      throw new RangeError(`keepaliveMs must be >= 0, got ${o.keepaliveMs}`);
    }
    this.view = new DataView(this.packet.buffer, this.packet.byteOffset, HEADER_BYTES);
    writeKeepalive(this.view, 0, o.jobId, o.workerId, o.fanIn);
  }

  /** From now on every keepalive names `port`, the worker's keepalive socket (section 15). */
  registerPort(port: number): void {
    this.view.setUint32(Field.aggregatorIndex, port, true);
  }

  /**
   * When the next keepalive is due (ms); +Infinity when keepalives are off
   * or nothing was sent yet (a worker that never sent is not bound, and
   * its keepalive would prove nothing).
   */
  nextAt(): number {
    return this.intervalMs > 0 ? this.lastSentAt + this.intervalMs : Number.POSITIVE_INFINITY;
  }

  due(now: number): boolean {
    return now >= this.nextAt();
  }

  /** The keepalive packet (never changes); the caller sends it and notes the send. */
  get bytes(): Buffer {
    return this.packet;
  }
}

/** A region of the job in one epoch, used for PSNs from `start`. */
interface WorkerRegion {
  epoch: number;
  offset: number;
  size: number;
  start: number;
}

/**
 * How long a PSN must also have waited before its timeouts end the
 * all-reduce (ms): ina-worker's --give-up-s and the simulator's, so a
 * healthy job whose PSN waits behind a busy PS is not ended by the count of
 * timeouts alone in either executor.
 */
export const DEFAULT_GIVE_UP_AFTER_MS = 90_000;

export const DEFAULT_RTO = {
  rtoInitialMs: 200,
  rtoMaxMs: 2000,
  maxSendsPerPacket: 40,
} as const;

/** What a worker that gets no answer says, whatever the cause: where to look. */
export const NO_ANSWER_HINT =
  "check that the switch runs at that address and serves this job with this mode and fan-in " +
  "(it drops other packets and counts them in its stats: unknownJob, fanInMismatch)";

/** Throws a RangeError naming the first option a worker cannot run with. */
export function validateWorkerOptions(o: WorkerCoreOptions): void {
  const check = (ok: boolean, message: string) => {
    if (!ok) throw new RangeError(message);
  };
  const int = (v: number, min: number, max: number) => Number.isInteger(v) && v >= min && v <= max;
  check(int(o.jobId, 0, 0xffff), `jobId must be 0..65535, got ${o.jobId}`);
  check(int(o.fanIn, 1, MAX_FAN_IN), `fanIn must be 1..${MAX_FAN_IN}, got ${o.fanIn}`);
  check(int(o.workerId, 0, o.fanIn - 1), `workerId must be 0..fanIn-1, got ${o.workerId}`);
  check(int(o.window, 1, 1 << 16), `window must be 1..65536, got ${o.window}`);
  check(
    o.mode === "netreduce" || o.mode === "atp" || o.mode === "ps",
    `mode must be netreduce, atp or ps, got ${o.mode}`,
  );
  if (o.mode === "netreduce") {
    // A region below 2 x window lowers the packets in flight to regionSize / 2.
    check(int(o.regionSize, 2, 0xffffffff), `regionSize must be >= 2, got ${o.regionSize}`);
  } else if (o.mode === "atp") {
    check(int(o.regionSize, 1, 0xffffffff), `regionSize must be >= 1, got ${o.regionSize}`);
  }
  check(
    int(o.regionOffset, 0, 0xffffffff - o.regionSize),
    `regionOffset out of range: ${o.regionOffset}`,
  );
  check(
    int(o.elementsPerPacket, 1, MAX_ELEMENTS_PER_PACKET),
    `elementsPerPacket must be 1..${MAX_ELEMENTS_PER_PACKET}, got ${o.elementsPerPacket}`,
  );
  check(
    int(o.scaleBits, 0, MAX_SCALE_BITS),
    `scaleBits must be 0..${MAX_SCALE_BITS}, got ${o.scaleBits}`,
  );
  check(
    o.rtoFloorMs === undefined || (o.rtoFloorMs > 0 && o.rtoFloorMs <= o.rtoMaxMs),
    "need 0 < rtoFloorMs <= rtoMaxMs",
  );
  check(
    o.giveUpAfterMs === undefined || (Number.isFinite(o.giveUpAfterMs) && o.giveUpAfterMs >= 0),
    `giveUpAfterMs must be >= 0, got ${o.giveUpAfterMs}`,
  );
  check(
    int(o.maxSendsPerPacket, 1, 1e9),
    `maxSendsPerPacket must be >= 1, got ${o.maxSendsPerPacket}`,
  );
}

/**
 * A tensor too large to hold (the simulator's hundreds of workers): its
 * input made on demand, packet by packet, and its result taken the same way.
 */
export interface TensorStream {
  readonly length: number;
  /** Writes input elements [first, first + count) in fixed point into dst; returns how many saturated. */
  quantize(first: number, count: number, scale: number, dst: Int32Array, dstStart: number): number;
  /** Takes result elements [first, first + count): int32 sums, or float32 bits when `floats`. */
  result(first: number, count: number, src: Int32Array, srcStart: number, floats: boolean): void;
}

/** Where the worker's packets go: a connected socket, or a test's in-memory network. */
export interface WorkerTransmit {
  /**
   * Sends all of `packet` before returning, or copies it (the coalescer, a
   * paced port): the caller may rewrite the buffer once send() returns.
   */
  send(packet: Buffer): void;
}

export interface WorkerStats {
  packetsSent: number;
  /** payload bytes, each counted once: contributions sent first, and results applied */
  payloadBytesSent: number;
  payloadBytesReceived: number;
  /** datagrams from the switch (each one packet or several) */
  datagramsReceived: number;
  bytesSent: number;
  /** packets sent again, by timeout or because later results showed a gap */
  retransmissions: number;
  timeouts: number;
  resultsReceived: number;
  /** results for PSNs that already had one (network duplicates, replays) */
  duplicateResults: number;
  /** region changes the switch announced and this worker adopted */
  regionChanges: number;
  /** results (or acks) that carried an ECN mark */
  ecnMarkedResults: number;
  /** results flagged overflow, and values that saturated while quantizing */
  overflowedResults: number;
  saturatedValues: number;
  drops: Float64Array;
  srttMs: number;
  rtoMs: number;
  /**
   * timeouts that were spurious: the PSN a timeout resent got its result
   * sooner than the least RTT after that resend (the answer to an earlier send)
   */
  spuriousTimeouts: number;
  /** time with nothing from the switch before a timeout fired, summed (ms): what timeouts stalled */
  timeoutStallMs: number;
}

/**
 * One end host of a NetReduce, ATP or PS job, sans-IO. begin() starts an all-reduce of a tensor;
 * the tensor is cut into packets of `elementsPerPacket`, PSNs continue across
 * calls, at most `window` packets are in flight, and each result is written
 * into the output. receive() takes datagrams from the switch; nextTimeout()
 * says when the worker next needs handleTimeout(), which drives
 * retransmission (section 7). Nothing here allocates per packet.
 */
export class WorkerCore {
  readonly options: WorkerCoreOptions;
  readonly stats: WorkerStats;
  /** first PSN of the next all-reduce */
  nextCallPsn = 0;
  /** why the current all-reduce gave up, or null */
  failure: string | null = null;
  /** `now` of the latest packet from the switch for this job (or of begin()) */
  private lastAnswerAt = 0;
  /** keepalives while nothing else is sent: computing, waiting, between all-reduces */
  private readonly keepalive: Keepalive;

  /** one preallocated datagram per window position (PSN % window) */
  private readonly slots: PacketSlots;
  /** the region PSNs are addressed in now, and one announced for later PSNs */
  private region: WorkerRegion;
  /** regions the switch announced for later PSNs, by start */
  private upcoming: WorkerRegion[] = [];
  /** the last epoch whose held-back packets this worker sent again */
  private releasedEpoch = -1;
  /** packets in flight now: the window, or less when a NetReduce region is smaller than 2 x window */
  private windowLimit: number;
  /** the congestion window within windowLimit */
  readonly congestion: CongestionWindow;
  private readonly slotSentAt: Float64Array;
  /** when each slot's PSN was first sent: what a give-up after maxSendsPerPacket measures */
  private readonly slotFirstSentAt: Float64Array;
  private readonly slotSends: Uint32Array;
  /** how often each slot's retransmission timer fired: what the give-up counts (packetGivenUp) */
  private readonly slotTimeouts: Uint32Array;
  /**
   * PSNs in flight whose timer fired: while any is, an answer to another PSN
   * does not end the RTO's backoff. Results are selective, not cumulative:
   * new PSNs answered do not mean the timed-out one got through (RFC 6298's
   * rule assumes TCP's cumulative ACK), and a PSN waiting behind a busy PS
   * would otherwise be resent every base RTO, each resend loading the PS more.
   */
  private backedOffInFlight = 0;
  private readonly slotDone: Uint8Array;
  private readonly header = emptyHeader();
  /** a received region or failed packet's fields, by meaning */
  private readonly regionIn: RegionPacket = {
    jobId: 0,
    flags: 0,
    fromPsn: 0,
    offset: 0,
    regionSize: 0,
    epoch: 0,
  };
  private readonly failedIn: FailedPacket = {
    jobId: 0,
    fanIn: 0,
    deadWorkers: 0,
    psn: 0,
    waitedMs: 0,
  };
  private readonly scratch: Buffer;
  private readonly scratchView: DataView;
  private readonly scratchValues: Int32Array;
  private readonly scratchFloats: Float32Array;
  /** the packet type that carries results in this mode */
  private readonly resultType: number;
  private readonly scale: number;
  private readonly inverseScale: number;

  private input: Float32Array = new Float32Array(0);
  private output: Float32Array = new Float32Array(0);
  /** instead of input and output: a tensor made and taken packet by packet */
  private stream: TensorStream | null = null;
  /** elements of the current all-reduce */
  private length = 0;
  private firstPsn = 0;
  private endPsn = 0;
  /** lowest PSN still without its result */
  private base = 0;
  /** next PSN never sent */
  private next = 0;
  private active = false;
  /**
   * A timeout resent only the oldest PSN (F-RTO, RFC 5682, in spirit): on a
   * busy host a peer or the switch stalls for longer than the RTO far more
   * often than a window is lost, and resending every expired PSN then only
   * adds load, while Karn's rule discards exactly the delayed samples that
   * would teach the estimator. A result for a PSN sent once ends probing (the
   * timeout was spurious, or the path works again and gap detection finds the
   * rest); if none comes before the (doubled) RTO expires again, every
   * expired PSN is resent, as before.
   */
  private probing = false;
  /** a lower bound of the send times of PSNs without their result (see retransmitAt) */
  private oldestSentAt = Number.POSITIVE_INFINITY;
  /** PSNs in flight (in [base, next), without their result) that were sent more than once */
  private resentInFlight = 0;
  private readonly rtt: RttEstimator;
  /** 1: the slot's latest send was a timeout's (a quick result then shows it spurious) */
  private readonly slotTimedOut: Uint8Array;
  /**
   * RACK (RFC 8985) of this all-reduce's PSNs: the latest-sent PSN with its
   * result, and timer `gapResend` (see detectLosses)
   */
  /** RACK per PS the PSNs are spread over (PSN p: racks[p % length]) */
  private readonly racks: Rack[];
  /** timer `gapResend`: the earliest deadline the last loss scan found (Infinity: none) */
  private gapDeadline = Number.POSITIVE_INFINITY;
  /**
   * `now` of the latest result of this all-reduce: the RTO runs from it or
   * from a PSN's send, whichever is later (RFC 6298, 5.3: the timer restarts
   * when new data is acknowledged), so while results flow, losses are RACK's
   * and a timeout means the path went quiet
   */
  private lastResultAt = Number.NEGATIVE_INFINITY;
  /** the latest timeout's `now`: stalls are counted from it or from the last answer */
  private lastTimeoutAt = Number.NEGATIVE_INFINITY;

  constructor(
    options: WorkerCoreOptions,
    private readonly transmit: WorkerTransmit,
  ) {
    validateWorkerOptions(options);
    this.options = options;
    const w = options.window;
    this.slots = new PacketSlots(w, options.elementsPerPacket);
    this.slotSentAt = new Float64Array(w);
    this.slotFirstSentAt = new Float64Array(w);
    this.keepalive = new Keepalive(options);
    this.slotSends = new Uint32Array(w);
    this.slotTimeouts = new Uint32Array(w);
    this.slotDone = new Uint8Array(w);
    // A whole datagram is copied here at once (one native call, not one per packet).
    const scratchArena = new ArrayBuffer(MAX_DATAGRAM_BYTES + 1);
    this.scratch = Buffer.from(scratchArena);
    this.scratchView = new DataView(scratchArena);
    this.scratchValues = new Int32Array(scratchArena);
    this.scratchFloats = new Float32Array(scratchArena);
    this.resultType = options.mode === "netreduce" ? PacketType.result : PacketType.ack;
    this.region = {
      epoch: options.regionEpoch ?? 0,
      offset: options.regionOffset,
      size: options.regionSize,
      start: 0,
    };
    this.windowLimit = this.windowFor(this.region);
    this.congestion = new CongestionWindow(options.congestionControl ?? "none", this.windowLimit);
    this.scale = 2 ** options.scaleBits;
    this.inverseScale = 2 ** -options.scaleBits;
    this.stats = {
      packetsSent: 0,
      payloadBytesSent: 0,
      payloadBytesReceived: 0,
      datagramsReceived: 0,
      bytesSent: 0,
      retransmissions: 0,
      timeouts: 0,
      resultsReceived: 0,
      duplicateResults: 0,
      overflowedResults: 0,
      saturatedValues: 0,
      regionChanges: 0,
      ecnMarkedResults: 0,
      drops: new Float64Array(DROP_REASON_COUNT),
      srttMs: 0,
      rtoMs: options.rtoInitialMs,
      spuriousTimeouts: 0,
      timeoutStallMs: 0,
    };
    this.slotTimedOut = new Uint8Array(w);
    this.rtt = new RttEstimator(options, this.stats);
    this.racks = Array.from(
      { length: Math.max(1, options.parameterServers ?? 1) },
      () => new Rack(),
    );
  }

  /** True once every PSN of the current all-reduce has its result. */
  get done(): boolean {
    return !this.active;
  }

  /**
   * Packets this worker may keep in flight now: its window, or less in a
   * small NetReduce region, or less while its congestion control backs off.
   */
  get window(): number {
    return this.congestion.packets;
  }

  /** Packets of the current all-reduce that have their result, and how many there are. */
  get completedPackets(): number {
    return this.base - this.firstPsn;
  }

  get totalPackets(): number {
    return this.endPsn - this.firstPsn;
  }

  /** Packets sent and still without their result. */
  get unansweredPackets(): number {
    let n = 0;
    for (let psn = this.base; psn < this.next; psn++) {
      if (this.slotDone[psn % this.options.window] === 0) n++;
    }
    return n;
  }

  /** How long the running all-reduce has heard nothing from the switch for this job (ms). */
  quietMs(now: number): number {
    return this.active ? now - this.lastAnswerAt : 0;
  }

  /** Starts an all-reduce of `input` into `output` (same length) and fills the window. */
  begin(input: Float32Array, output: Float32Array, now: number): void {
    if (this.active) throw new Error("an all-reduce is already running on this worker");
    if (output.length !== input.length) {
      throw new RangeError(`output has ${output.length} elements, input ${input.length}`);
    }
    this.input = input;
    this.output = output;
    this.stream = null;
    this.start(input.length, now);
  }

  /** Starts an all-reduce of a tensor made and taken packet by packet. */
  beginStream(stream: TensorStream, now: number): void {
    if (this.active) throw new Error("an all-reduce is already running on this worker");
    this.stream = stream;
    this.start(stream.length, now);
  }

  private start(length: number, now: number): void {
    const packets = Math.ceil(length / this.options.elementsPerPacket);
    if (this.nextCallPsn + packets > 0xffffffff) {
      throw new RangeError("PSN space exhausted: PSNs are 32-bit and do not wrap within a job");
    }
    this.length = length;
    this.failure = null;
    this.firstPsn = this.nextCallPsn;
    this.endPsn = this.firstPsn + packets;
    this.nextCallPsn = this.endPsn;
    this.base = this.firstPsn;
    this.next = this.firstPsn;
    this.active = packets > 0;
    this.probing = false;
    this.oldestSentAt = Number.POSITIVE_INFINITY;
    this.resentInFlight = 0;
    this.backedOffInFlight = 0;
    for (const rack of this.racks) rack.reset();
    this.gapDeadline = Number.POSITIVE_INFINITY;
    this.lastTimeoutAt = Number.NEGATIVE_INFINITY;
    this.lastResultAt = Number.NEGATIVE_INFINITY;
    this.lastAnswerAt = now;
    this.fillWindow(now);
  }

  /**
   * One datagram from the switch: each of its packets in turn
   * (proto/README.md, section 2.1). Never throws on bad input.
   */
  receive(datagram: Buffer, now: number): void {
    this.stats.datagramsReceived++;
    // Packets are read from a copy, through views made once; one larger
    // than scratch (only a caller in this process can make one) is dropped whole.
    if (datagram.length <= this.scratch.length) this.scratch.set(datagram);
    this.walkNow = now;
    forEachPacket(datagram, datagram.length, this.scratch.length, this.walk);
  }

  /** `now` of the datagram being walked */
  private walkNow = 0;
  /** the datagram walk's visitor, bound once: packets are read from scratch */
  private readonly walk: PacketVisitor<Buffer> = {
    packet: (_bytes, at, length) => this.receivePacket(at, length, this.walkNow),
    dropDatagram: (reason) => this.drop(reason),
  };

  /** The packet at bytes [at, at + length) of scratch. */
  private receivePacket(at: number, length: number, now: number): void {
    const h = this.header;
    const reason = decodeHeader(this.scratchView, at, length, h);
    if (reason !== DropReason.ok) {
      this.drop(reason);
      return;
    }
    if (h.elementCount > this.options.elementsPerPacket) {
      this.drop(DropReason.tooManyElements);
      return;
    }
    if (h.type === PacketType.failed && h.jobId === this.options.jobId) {
      // The switch gave up on the job: a peer (or the PS) stopped answering.
      const failed = this.failedIn;
      readFailed(h, failed);
      if (this.active) this.fail(`the switch failed ${describeFailure(failed)}`);
      return;
    }
    if (h.type === PacketType.region && h.jobId === this.options.jobId) {
      const r = this.regionIn;
      readRegion(h, r);
      this.lastAnswerAt = now;
      this.regionAnnounced(r.epoch, r.offset, r.regionSize, r.fromPsn, r.flags, now);
      return;
    }
    if (h.type !== this.resultType) {
      this.drop(DropReason.unexpectedType);
      return;
    }
    if (h.jobId !== this.options.jobId) {
      this.drop(DropReason.unknownJob);
      return;
    }
    this.lastAnswerAt = now;
    const psn = h.psn;
    if (!this.active || psn < this.base || psn >= this.next) {
      // A result for a PSN already finished is a late duplicate, not an error.
      if (psn < this.base || (!this.active && psn < this.nextCallPsn)) {
        this.stats.duplicateResults++;
        return;
      }
      this.drop(DropReason.unexpectedResult);
      return;
    }
    const slot = psn % this.options.window;
    if (this.slotDone[slot] === 1) {
      this.stats.duplicateResults++;
      return;
    }
    const first = (psn - this.firstPsn) * this.options.elementsPerPacket;
    const count = Math.min(this.options.elementsPerPacket, this.length - first);
    if (h.elementCount !== count || h.scaleBits !== this.options.scaleBits) {
      this.drop(DropReason.shapeMismatch);
      return;
    }
    if (this.stream !== null) {
      this.stream.result(
        first,
        count,
        this.scratchValues,
        (at + HEADER_BYTES) >> 2,
        (h.flags & Flag.float32) !== 0,
      );
    } else if (h.flags & Flag.float32) {
      // The PS finished a sum that overflowed int32 in floating point.
      const floats = this.scratchFloats;
      const output = this.output;
      const start = (at + HEADER_BYTES) >> 2;
      for (let i = 0; i < count; i++) output[first + i] = floats[start + i];
    } else {
      dequantizeInto(
        this.scratchValues,
        (at + HEADER_BYTES) >> 2,
        count,
        this.inverseScale,
        this.output,
        first,
      );
    }
    if (h.flags & Flag.overflow) this.stats.overflowedResults++;
    const marked = (h.flags & Flag.ecn) !== 0;
    if (marked) this.stats.ecnMarkedResults++;
    this.congestion.onResult(marked, psn, this.next);
    this.stats.resultsReceived++;
    this.stats.payloadBytesReceived += count * 4;
    this.slotDone[slot] = 1;
    this.lastResultAt = now;
    if (this.slotSends[slot] > 1) this.resentInFlight--;
    if (this.slotTimeouts[slot] > 0) this.backedOffInFlight--;
    // Karn's sample or the backoff's end, a spurious timeout, RACK (see Rack).
    if (this.slotSends[slot] === 1) this.probing = false;
    const backedOffRto = this.stats.rtoMs;
    this.racks[psn % this.racks.length].answered(
      this.rtt,
      this.stats,
      psn,
      this.slotSends[slot],
      this.slotTimedOut[slot] === 1,
      this.slotSentAt[slot],
      now,
    );
    if (this.backedOffInFlight > 0 && this.stats.rtoMs < backedOffRto) {
      this.stats.rtoMs = backedOffRto;
    }
    if (psn === this.base) {
      while (this.base < this.next && this.slotDone[this.base % this.options.window] === 1) {
        this.base++;
      }
      if (this.base === this.endPsn) {
        this.active = false;
        return;
      }
      this.fillWindow(now);
    }
    if (this.base < this.latestAnsweredSeq()) this.detectLosses(now);
  }

  /**
   * When this worker's next keepalive is due (ms; +Infinity: keepalives are
   * off): timer `keepalive`, due even between all-reduces. Every packet sent
   * moves it later.
   */
  nextKeepaliveAt(): number {
    return this.keepalive.nextAt();
  }

  /** Whether this worker has sent the switch nothing for its keepalive interval. */
  keepaliveDue(now: number): boolean {
    return this.keepalive.due(now);
  }

  /**
   * This worker also has a keepalive socket at `port` on its IP (a thread's;
   * worker/keepalive-thread.ts): its keepalives name it from now on, so the
   * switch counts that socket's keepalives too.
   */
  useKeepaliveSocket(port: number): void {
    this.keepalive.registerPort(port);
  }

  /** Sends a keepalive (proto/README.md, section 15): this worker is alive. */
  sendKeepalive(now: number): void {
    const packet = this.keepalive.bytes;
    this.keepalive.lastSentAt = now;
    this.stats.packetsSent++;
    this.stats.bytesSent += packet.length;
    this.transmit.send(packet);
  }

  /**
   * When this worker next needs handleTimeout() (ms, on the clock of `now`;
   * Infinity when nothing is pending): the earliest of its named timers,
   * `retransmit` (the oldest unanswered send's RTO, a probe first), `gapResend`
   * (a gap's wait, once later PSNs have their results) and `giveUp` (no
   * answer from the switch for giveUpAfterMs) while an all-reduce runs, and
   * `keepalive` always (nothing sent for keepaliveMs). Cheap: no scan of the
   * window.
   */
  /** The process's timer due at `now - lateMs` ran at `now`: the measured G (RttEstimator). */
  observeTimerLateness(lateMs: number, now: number): void {
    this.rtt.observeTimerLateness(lateMs, now);
  }

  nextTimeout(): number {
    const keepalive = this.keepalive.nextAt();
    if (!this.active) return keepalive;
    return Math.min(keepalive, this.retransmitAt(), this.gapResendAt(), this.giveUpAt());
  }

  /**
   * Runs every timer due at `now`, in this order: keepalive, give up, resend
   * gaps, retransmit on timeout. Each rule is the same whenever it runs; a
   * timer not yet due does nothing.
   */
  handleTimeout(now: number): void {
    if (this.keepaliveDue(now)) this.sendKeepalive(now);
    if (!this.active) return;
    if (now >= this.giveUpAt()) {
      const giveUp = this.options.giveUpAfterMs ?? 0;
      this.fail(
        `no answer from the switch for ${(giveUp / 1000).toFixed(1)} s ` +
          `(${this.unansweredPackets} packets unanswered, ${this.completedPackets} of ` +
          `${this.totalPackets} done): ${NO_ANSWER_HINT}`,
      );
      return;
    }
    // Loss detection runs on the clock too: when every later PSN of the
    // window has its result, no result comes to trigger it, and only the
    // timeout (far longer) would resend what is missing.
    if (now >= this.gapDeadline) this.detectLosses(now);
    if (now >= this.retransmitAt()) this.retransmit(now);
  }

  /** Timer `giveUp`: the all-reduce fails once the switch has been silent this long. */
  private giveUpAt(): number {
    const giveUp = this.options.giveUpAfterMs ?? 0;
    return giveUp > 0 ? this.lastAnswerAt + giveUp : Number.POSITIVE_INFINITY;
  }

  /**
   * Timer `retransmit`: the RTO after the oldest send still unanswered, or
   * after the latest result if that came later (see lastResultAt). PSNs
   * sent once went out in PSN order, so while none in flight was resent the
   * oldest is the base's (exact, O(1)). Otherwise `oldestSentAt`, a lower
   * bound: a send only ever raises a slot's time, and it is lowered (to a
   * send's `now`) only when nothing older is in flight; the timer that fires
   * makes it exact again (a window scan per timer that fires, not per packet).
   */
  private retransmitAt(): number {
    if (this.base >= this.next) return Number.POSITIVE_INFINITY;
    const oldest =
      this.resentInFlight === 0
        ? this.slotSentAt[this.base % this.options.window]
        : this.oldestSentAt;
    return Math.max(oldest, this.lastResultAt) + this.stats.rtoMs;
  }

  /**
   * Timer `gapResend`: the earliest deadline of a PSN that a later-sent one
   * overtook, as the last loss scan found it (RACK's reordering timer).
   */
  private gapResendAt(): number {
    return this.gapDeadline;
  }

  /** The highest PSN any RACK has seen answered (-1: none). */
  private latestAnsweredSeq(): number {
    let seq = this.racks[0].seq;
    for (let k = 1; k < this.racks.length; k++)
      if (this.racks[k].seq > seq) seq = this.racks[k].seq;
    return seq;
  }

  /** Retransmits what timed out at `now`: a probe (the oldest PSN) first (see `probing`). */
  private retransmit(now: number): void {
    const rto = this.stats.rtoMs;
    const since = this.lastResultAt;
    let timedOut = false;
    for (let psn = this.base; psn < this.next; psn++) {
      const slot = psn % this.options.window;
      if (this.slotDone[slot] === 0 && now >= Math.max(this.slotSentAt[slot], since) + rto) {
        if (
          packetGivenUp(this.slotTimeouts[slot] + 1, now - this.slotFirstSentAt[slot], this.options)
        ) {
          this.fail(
            `no result for PSN ${psn} after ${this.slotSends[slot]} sends over ` +
              `${((now - this.slotFirstSentAt[slot]) / 1000).toFixed(1)} s ` +
              `(${this.slotTimeouts[slot] + 1} timeouts): ${NO_ANSWER_HINT}`,
          );
          return;
        }
        this.resend(slot, now);
        this.slotTimedOut[slot] = 1;
        if (this.slotTimeouts[slot]++ === 0) this.backedOffInFlight++;
        timedOut = true;
        // A first timeout resends only the oldest PSN, a probe (see `probing`).
        if (!this.probing) break;
      }
    }
    if (timedOut) {
      this.stats.timeouts++;
      this.stats.timeoutStallMs += now - Math.max(this.lastAnswerAt, this.lastTimeoutAt);
      this.lastTimeoutAt = now;
      this.stats.rtoMs = Math.min(this.options.rtoMaxMs, rto * 2);
      this.probing = !this.probing;
    }
    // The lower bound made exact: the oldest send of a PSN still unanswered.
    let oldest = Number.POSITIVE_INFINITY;
    for (let psn = this.base; psn < this.next; psn++) {
      const slot = psn % this.options.window;
      if (this.slotDone[slot] === 0 && this.slotSentAt[slot] < oldest) {
        oldest = this.slotSentAt[slot];
      }
    }
    this.oldestSentAt = oldest;
  }

  /**
   * RACK loss detection (RFC 8985), per PSN: a PSN without its result that
   * was sent before the latest-sent packet with a result (rack.sentAt; same
   * `now`: a lower PSN) is lost once it has waited that packet's round trip
   * plus the reordering wait, and is resent at once, whatever the PSNs
   * around it do; the others' earliest deadline arms timer `gapResend`.
   * Links keep order, so a later send answered first means a loss after
   * little more than the reordering wait. A resend's own time is its send
   * time, so a lost resend is found the same way. Scans [base, rack.seq):
   * O(window) per result while a PSN is missing, nothing otherwise.
   *
   * Every worker of an ATP job waits the same: a PSN split between its
   * aggregator and the PS completes once any worker resends it, but one
   * whose contribution was lost only once its owner does, and no worker
   * knows which; with the RTO running from the latest result, a worker that
   * waited longer (three times, before) would time out first and back off.
   */
  private detectLosses(now: number): void {
    this.gapDeadline = Number.POSITIVE_INFINITY;
    if (!this.rtt.hasSample) return;
    const racks = this.racks;
    const n = racks.length;
    const w = this.options.window;
    const end = Math.min(this.latestAnsweredSeq(), this.next);
    let deadline = Number.POSITIVE_INFINITY;
    for (let p = this.base; p < end; p++) {
      const slot = p % w;
      if (this.slotDone[slot] !== 0) continue;
      const rack = racks[p % n];
      const sentAt = this.slotSentAt[slot];
      if (sentAt > rack.sentAt || p > rack.seq) continue;
      const at = sentAt + rack.lossWaitMs(this.rtt);
      if (now >= at) {
        this.resend(slot, now);
        this.slotTimedOut[slot] = 0;
      } else if (at < deadline) {
        deadline = at;
      }
    }
    this.gapDeadline = deadline;
  }

  /** Ends the current all-reduce unfinished; `done` turns true and `failure` says why. */
  private fail(reason: string): void {
    this.failure = reason;
    this.active = false;
  }

  private fillWindow(now: number): void {
    while (this.upcoming.length > 0 && this.base >= this.upcoming[0].start) {
      this.adopt(this.upcoming[0]);
      this.upcoming.shift();
    }
    let limit = Math.min(this.endPsn, this.base + this.congestion.packets);
    // PSNs from a switchover go out only once every older PSN has its result:
    // that is how the switch knows this worker no longer needs the old region.
    if (this.upcoming.length > 0) limit = Math.min(limit, this.upcoming[0].start);
    while (this.next < limit) this.sendNew(this.next++, now);
  }

  /** The switch announced a new region (epoch, offset, size) for PSNs from `start`. */
  private regionAnnounced(
    epoch: number,
    offset: number,
    size: number,
    start: number,
    flags: number,
    now: number,
  ) {
    if (size < 1 || (this.options.mode === "netreduce" && size < 2)) {
      this.drop(DropReason.badIndex);
      return;
    }
    if (epoch === this.region.epoch) {
      // `resend`: the old region has drained, and the switch, which held the
      // first packets of this epoch back, takes them now. Once per epoch.
      const release = (flags & Flag.resend) !== 0 && this.releasedEpoch !== epoch;
      if (release && this.active && this.upcoming.length === 0) {
        this.releasedEpoch = epoch;
        this.resendFrom(Math.max(this.base, this.region.start), now);
      }
      return;
    }
    if (this.upcoming.some((r) => r.epoch === epoch)) return;
    const region = { epoch, offset, size, start };
    if (start <= this.base) {
      // The switch answered a refused packet with the region that serves
      // this worker's PSNs now (it may have missed announcements, or joined
      // with a stale one): use it at once.
      this.upcoming = this.upcoming.filter((r) => r.start > start);
      this.adopt(region);
    } else {
      if (!newerEpoch(epoch, this.region.epoch)) return; // a late copy of an old announcement
      this.upcoming = [...this.upcoming.filter((r) => r.start !== start), region].sort(
        (a, b) => a.start - b.start,
      );
    }
    if (this.active) this.fillWindow(now);
  }

  /**
   * Switches to `region` (for an announced switchover: once every PSN before
   * its start has its result). PSNs from its start that went out in another
   * epoch were refused: they are taken back and sent anew, within its window.
   */
  private adopt(region: WorkerRegion): void {
    this.region = region;
    this.windowLimit = this.windowFor(region);
    this.congestion.setMax(this.windowLimit);
    this.stats.regionChanges++;
    const first = Math.max(this.base, region.start);
    for (let psn = first; psn < this.next; psn++) {
      const slot = psn % this.options.window;
      if (this.slotDone[slot] === 0 && this.slotSends[slot] > 1) this.resentInFlight--;
    }
    if (this.next > first) this.next = first;
  }

  /**
   * Sends every PSN from `first` still without a result again, at once: a
   * region change, not the network, held them, so the timeout and its
   * backoff start over.
   */
  private resendFrom(first: number, now: number): void {
    this.rtt.restart();
    for (let psn = first; psn < this.next; psn++) {
      const slot = psn % this.options.window;
      if (this.slotDone[slot] === 0) this.resend(slot, now);
    }
  }

  private windowFor(region: WorkerRegion): number {
    return windowInRegion(this.options.mode, this.options.window, region.size);
  }

  private indexOf(psn: number): number {
    const r = this.region;
    const o = this.options;
    return o.mode === "netreduce"
      ? netReduceIndex(r.offset, r.size, psn)
      : o.mode === "atp"
        ? atpIndex(o.jobId, psn, r.offset, r.size)
        : 0;
  }

  private sendNew(psn: number, now: number): void {
    const o = this.options;
    const slot = psn % o.window;
    const first = (psn - this.firstPsn) * o.elementsPerPacket;
    const count = Math.min(o.elementsPerPacket, this.length - first);
    const saturated =
      this.stream !== null
        ? this.stream.quantize(
            first,
            count,
            this.scale,
            this.slots.values,
            this.slots.valuesStart(slot),
          )
        : quantizeInto(
            this.input,
            first,
            count,
            this.scale,
            this.slots.values,
            this.slots.valuesStart(slot),
          );
    writeContribution(
      this.slots.view,
      this.slots.headerOffset(slot),
      // `batches`: this worker takes results several to a datagram (section 2.1).
      Flag.batches | (saturated > 0 ? Flag.overflow : 0),
      o.jobId,
      o.workerId,
      o.fanIn,
      count,
      psn,
      this.indexOf(psn),
      1 << o.workerId,
      o.scaleBits,
      this.region.epoch,
    );
    this.stats.saturatedValues += saturated;
    this.stats.payloadBytesSent += count * 4;
    this.slotDone[slot] = 0;
    this.slotSends[slot] = 1;
    this.slotTimeouts[slot] = 0;
    this.slotTimedOut[slot] = 0;
    this.slotSentAt[slot] = now;
    this.slotFirstSentAt[slot] = now;
    if (now < this.oldestSentAt) this.oldestSentAt = now;
    this.transmitSlot(slot, count, now);
  }

  private resend(slot: number, now: number): void {
    const view = this.slots.view;
    const at = this.slots.headerOffset(slot);
    view.setUint16(at + Field.flags, view.getUint16(at + Field.flags, true) | Flag.resend, true);
    if (this.slotSends[slot] === 1) this.resentInFlight++;
    this.slotSends[slot]++;
    this.slotSentAt[slot] = now;
    if (now < this.oldestSentAt) this.oldestSentAt = now;
    this.stats.retransmissions++;
    this.transmitSlot(slot, view.getUint16(at + Field.elementCount, true), now);
  }

  private transmitSlot(slot: number, count: number, now: number): void {
    const packet = this.slots.packet(slot, count);
    this.keepalive.lastSentAt = now;
    this.stats.packetsSent++;
    this.stats.bytesSent += packet.length;
    this.transmit.send(packet);
  }

  private drop(reason: DropReasonValue): void {
    this.stats.drops[reason]++;
  }
}
