import { decodeHeader, forEachPacket, type PacketVisitor } from "../proto/codec.js";
import { DROP_REASON_COUNT, DropReason, type DropReasonValue } from "../proto/drops.js";
import { describeFailure } from "../proto/failure.js";
import { addSaturating, dequantizeInto, quantizeInto } from "../proto/fixedpoint.js";
import {
  type FailedPacket,
  type RingPacket,
  readFailed,
  readRing,
  writeRingControl,
  writeRingData,
} from "../proto/packets.js";
import {
  DESTINATION_ALL_WORKERS,
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
import { Keepalive, packetGivenUp, type WorkerStats, type WorkerTransmit } from "./core.js";

/**
 * Host-based collectives over the switch's forwarding (proto/README.md,
 * section 17): ring all-reduce, reduce-scatter, all-gather, broadcast,
 * reduce and all-to-all. Sans-IO like WorkerCore: begin() starts one
 * collective, receive() takes datagrams, nextTimeout() says when
 * handleTimeout() must run next, which drives retransmission.
 *
 * Every collective is a set of streams of packets between pairs of workers
 * (or from a root to all, multicast by the switch). A stream's packets go
 * out in order through a window, each acknowledged by its receiver (up to
 * ackCoverage consecutive ones by one acknowledgement, section 17); a
 * packet may wait for one packet of an incoming stream (the ring's
 * pipelining: what a worker sends in step s is what it received in step
 * s - 1, plus its own). Receivers apply each packet exactly once (add or
 * store) and acknowledge every copy.
 */

export { COLLECTIVES, type Collective } from "../proto/config.js";

import type { Collective } from "../proto/config.js";
import { Rack, RttEstimator } from "./rtt.js";

/** Sums (fixed point, as the switch's) or moves float32 values unchanged. */
const reduces = (op: Collective) => op === "allReduce" || op === "reduceScatter" || op === "reduce";

export interface CollectiveOptions {
  jobId: number;
  workerId: number;
  fanIn: number;
  /** most unacknowledged packets per stream */
  window: number;
  elementsPerPacket: number;
  scaleBits: number;
  rtoInitialMs: number;
  /** unset: the path's, the largest RTT sampled lately + G, as WorkerCore's */
  rtoFloorMs?: number;
  rtoMaxMs: number;
  maxSendsPerPacket: number;
  /** the least reordering wait before a stream's packet is resent (ms; unset: G), as WorkerCore's */
  gapFloorMs?: number;
  /** RFC 6298's clock granularity G in the RTO (ms; unset: measured), as WorkerCore's */
  clockGranularityMs?: number;
  /** a collective that hears nothing for this long fails (ms; 0: never) */
  giveUpAfterMs?: number;
  /** keepalive interval while nothing else is sent (ms; default 1000, 0: never), as WorkerCore's */
  keepaliveMs?: number;
  /**
   * the most packets of this worker's outgoing streams one acknowledgement
   * may cover, told to the receivers on every data packet (section 17,
   * "Acknowledgement ranges"); 1..255, 1: one acknowledgement per packet, as
   * before ranges. Default: ackCoverageFor(window)
   */
  ackCoverage?: number;
  /**
   * how long this worker may hold an acknowledgement to cover later packets
   * of the same stream (ms); unset or 0: until the end of the datagram being
   * received (a process's packets come in datagrams of several; the
   * simulator's one by one, so it gives a time)
   */
  ackDelayMs?: number;
}

/** The largest ackCoverage: data packets carry it in regionEpoch, one byte. */
export const MAX_ACK_COVERAGE = 255;

/**
 * The default coverage of a window of `window` packets: a quarter of the
 * window, at most 16, so the packets an acknowledgement waits for never hold
 * much of the window, and the acknowledgements cost at most 1/16 of the
 * packets they answer (32 bytes each: 0.2 % of 1 KiB packets' bytes).
 */
export function ackCoverageFor(window: number): number {
  return Math.max(1, Math.min(16, Math.floor(window / 4)));
}

/**
 * A collective worker's counters: a WorkerCore's (a data packet applied
 * counts as a result, a copy of one as a duplicate result), and what it received.
 */
export interface CollectiveStats extends WorkerStats {
  packetsReceived: number;
  bytesReceived: number;
}

/** The first element of chunk `c` when `length` elements are cut into `n` chunks. */
export function chunkStart(length: number, n: number, c: number): number {
  return Math.floor((c * length) / n);
}

/** Element ranges, steps and chunks of one stream's packets. */
class StreamPlan {
  readonly start: number[] = [];
  readonly count: number[] = [];
  readonly step: number[] = [];
  readonly chunk: number[] = [];
  /** outgoing: the incoming stream and packet this packet waits for (-1: none) */
  readonly waitStream: number[] = [];
  readonly waitPacket: number[] = [];

  /** Adds chunk `c` of `length` elements as packets, for `step`. */
  addChunk(length: number, n: number, c: number, step: number, epp: number): void {
    const first = chunkStart(length, n, c);
    const end = chunkStart(length, n, c + 1);
    for (let at = first; at < end; at += epp) {
      this.start.push(at);
      this.count.push(Math.min(epp, end - at));
      this.step.push(step);
      this.chunk.push(c);
      this.waitStream.push(-1);
      this.waitPacket.push(-1);
    }
  }

  get packets(): number {
    return this.start.length;
  }
}

/**
 * An outgoing stream: its plan, window slots and their state, and its loss
 * recovery, WorkerCore's per stream (proto/README.md, section 7), with a
 * packet's acknowledgements by all its receivers as its result.
 */
class OutStream {
  base = 0;
  next = 0;
  /** RACK of this stream's packets, and its timer `gapResend` */
  readonly rack = new Rack();
  /**
   * `now` of this stream's latest new acknowledgement: its RTO runs from it or
   * from a packet's send, whichever is later (RFC 6298, 5.3), as WorkerCore's
   */
  lastAckAt = Number.NEGATIVE_INFINITY;
  /** a lower bound of the send times of packets unacknowledged (see retransmitAt) */
  oldestSentAt = Number.POSITIVE_INFINITY;
  /** packets in flight (in [base, next), unacknowledged) that were sent more than once */
  resentInFlight = 0;
  readonly slots: PacketSlots;
  readonly sentAt: Float64Array;
  /** when each slot's packet was first sent (packetGivenUp) */
  readonly firstSentAt: Float64Array;
  readonly sends: Uint32Array;
  /** how often each slot's retransmission timer fired (packetGivenUp) */
  readonly timeouts: Uint32Array;
  /** acknowledgements still missing, per slot: a bit per receiver */
  readonly awaiting: Uint32Array;
  /** 1: the slot's latest send was a timeout's (a quick acknowledgement then shows it spurious) */
  readonly timedOut: Uint8Array;
  constructor(
    readonly destination: number,
    /** the bits of the workers whose acknowledgements complete a packet */
    readonly receivers: number,
    readonly plan: StreamPlan,
    window: number,
    elementsPerPacket: number,
  ) {
    this.slots = new PacketSlots(window, elementsPerPacket);
    this.sentAt = new Float64Array(window);
    this.firstSentAt = new Float64Array(window);
    this.sends = new Uint32Array(window);
    this.timeouts = new Uint32Array(window);
    this.awaiting = new Uint32Array(window);
    this.timedOut = new Uint8Array(window);
  }
}

/** An incoming stream: its plan, what arrived, and what each packet does. */
class InStream {
  readonly received: Uint8Array;
  receivedCount = 0;
  /**
   * Packets taken but not acknowledged yet, one range [heldFirst, heldLast]
   * of consecutive packet indexes (heldFirst < 0: none), held since
   * `heldSince` to be covered by one acknowledgement (section 17).
   */
  heldFirst = -1;
  heldLast = -1;
  heldSince = 0;
  constructor(
    readonly source: number,
    readonly plan: StreamPlan,
    /** per packet: add into the work buffer (true) or store (false) */
    readonly add: boolean[],
  ) {
    this.received = new Uint8Array(plan.packets);
  }
}

export class CollectiveCore {
  readonly options: CollectiveOptions;
  readonly stats: CollectiveStats;
  failure: string | null = null;
  /** the PSN of packet 0 of every stream of the current collective, and the span it reserves */
  private callBase = 0;
  private callSpan = 0;
  private nextCallBase = 0;
  private op: Collective = "allReduce";
  private root = 0;
  private length = 0;
  private work: Int32Array<ArrayBuffer> = new Int32Array(0);
  private workFloats: Float32Array<ArrayBuffer> = new Float32Array(0);
  private output: Float32Array = new Float32Array(0);
  private outs: OutStream[] = [];
  private ins: InStream[] = [];
  /** incoming stream index by source worker (-1: none) */
  private inBySource = new Int32Array(MAX_FAN_IN).fill(-1);
  private active = false;
  private helloConfirmed = false;
  private helloSentAt = -1;
  private lastHeardAt = 0;
  /** keepalives while nothing else is sent (WorkerCore's) */
  private readonly keepalive: Keepalive;
  /** the last timeout resent only a probe (see WorkerCore) */
  private probing = false;
  /** the latest timeout's `now`: stalls are counted from it or from the last packet heard */
  private lastTimeoutAt = Number.NEGATIVE_INFINITY;
  private readonly rtt: RttEstimator;
  private readonly header = emptyHeader();
  private readonly scratch: Buffer;
  private readonly scratchView: DataView;
  private readonly scratchValues: Int32Array;
  private readonly control: Buffer;
  private readonly controlView: DataView;
  private readonly scale: number;
  /** what data packets tell receivers in regionEpoch: the most packets an acknowledgement may cover (0: one) */
  private readonly ackCoverage: number;
  /** incoming streams holding an acknowledgement (InStream.heldFirst) */
  private heldStreams = 0;

  constructor(
    options: CollectiveOptions,
    private readonly transmit: WorkerTransmit,
  ) {
    const o = options;
    const int = (v: number, min: number, max: number) =>
      Number.isInteger(v) && v >= min && v <= max;
    const check = (ok: boolean, message: string) => {
      if (!ok) throw new RangeError(message);
    };
    check(int(o.jobId, 0, 0xffff), `jobId must be 0..65535, got ${o.jobId}`);
    check(int(o.fanIn, 1, MAX_FAN_IN), `fanIn must be 1..${MAX_FAN_IN}, got ${o.fanIn}`);
    check(int(o.workerId, 0, o.fanIn - 1), `workerId must be 0..fanIn-1, got ${o.workerId}`);
    check(int(o.window, 1, 1 << 16), `window must be 1..65536, got ${o.window}`);
    check(
      int(o.elementsPerPacket, 1, MAX_ELEMENTS_PER_PACKET),
      `elementsPerPacket must be 1..${MAX_ELEMENTS_PER_PACKET}, got ${o.elementsPerPacket}`,
    );
    check(int(o.scaleBits, 0, MAX_SCALE_BITS), `scaleBits must be 0..${MAX_SCALE_BITS}`);
    const coverage = o.ackCoverage ?? ackCoverageFor(o.window);
    check(
      int(coverage, 1, MAX_ACK_COVERAGE),
      `ackCoverage must be 1..${MAX_ACK_COVERAGE}, got ${o.ackCoverage}`,
    );
    check(
      o.ackDelayMs === undefined || (Number.isFinite(o.ackDelayMs) && o.ackDelayMs >= 0),
      `ackDelayMs must be a time of at least 0 ms, got ${o.ackDelayMs}`,
    );
    // One per packet goes on the wire as 0, as before ranges.
    this.ackCoverage = coverage === 1 ? 0 : coverage;
    this.options = options;
    this.scale = 2 ** o.scaleBits;
    const arena = new ArrayBuffer(MAX_DATAGRAM_BYTES + 1);
    this.scratch = Buffer.from(arena);
    this.scratchView = new DataView(arena);
    this.scratchValues = new Int32Array(arena);
    this.control = Buffer.alloc(HEADER_BYTES);
    this.controlView = new DataView(this.control.buffer, this.control.byteOffset, HEADER_BYTES);
    this.stats = {
      packetsSent: 0,
      bytesSent: 0,
      packetsReceived: 0,
      bytesReceived: 0,
      datagramsReceived: 0,
      retransmissions: 0,
      timeouts: 0,
      duplicateResults: 0,
      resultsReceived: 0,
      regionChanges: 0,
      ecnMarkedResults: 0,
      overflowedResults: 0,
      payloadBytesSent: 0,
      payloadBytesReceived: 0,
      saturatedValues: 0,
      drops: new Float64Array(DROP_REASON_COUNT),
      srttMs: 0,
      rtoMs: o.rtoInitialMs,
      spuriousTimeouts: 0,
      timeoutStallMs: 0,
    };
    this.rtt = new RttEstimator(o, this.stats);
    this.keepalive = new Keepalive(o);
  }

  get done(): boolean {
    return !this.active;
  }

  /** Most packets in flight per stream. */
  get window(): number {
    return this.options.window;
  }

  /** Packets of the current collective sent and acknowledged, or received. */
  get completedPackets(): number {
    let n = 0;
    for (const s of this.outs) n += s.base;
    for (const s of this.ins) n += s.receivedCount;
    return n;
  }

  get totalPackets(): number {
    let n = 0;
    for (const s of this.outs) n += s.plan.packets;
    for (const s of this.ins) n += s.plan.packets;
    return n;
  }

  get unansweredPackets(): number {
    return this.totalPackets - this.completedPackets;
  }

  /** What the running collective still waits for, in words. */
  private waitingFor(): string {
    const parts: string[] = [];
    for (const s of this.outs) {
      const to = s.destination === DESTINATION_ALL_WORKERS ? "all" : `worker ${s.destination}`;
      if (s.base < s.plan.packets) {
        parts.push(
          `${s.next - s.base} packets to ${to} unacknowledged, ${s.plan.packets - s.next} not sent yet`,
        );
      }
    }
    for (const s of this.ins) {
      if (s.receivedCount < s.plan.packets) {
        parts.push(
          `${s.plan.packets - s.receivedCount} packets from worker ${s.source} not received`,
        );
      }
    }
    return parts.join("; ");
  }

  /** How long the running collective has heard nothing for this job (ms). */
  quietMs(now: number): number {
    return this.active ? now - this.lastHeardAt : 0;
  }

  /**
   * Starts a collective. Lengths, with L the tensor's length and chunk c its
   * elements [floor(c L / N), floor((c + 1) L / N)):
   * - allReduce, reduce, broadcast: input and output L (reduce: the root's output
   *   is the sum, others' is left as it is; broadcast: the root's input goes to all);
   * - reduceScatter: input L, output chunk w;
   * - allGather: input chunk w, output L;
   * - allToAll: input and output L; input chunk j goes to worker j, output chunk i
   *   comes from worker i.
   */
  begin(op: Collective, input: Float32Array, output: Float32Array, now: number, root = 0): void {
    if (this.active) throw new Error("a collective is already running on this worker");
    const n = this.options.fanIn;
    const w = this.options.workerId;
    if (!Number.isInteger(root) || root < 0 || root >= n) {
      throw new RangeError(`root must be 0..${n - 1}, got ${root}`);
    }
    const length = op === "allGather" ? output.length : input.length;
    const mine = chunkStart(length, n, w + 1) - chunkStart(length, n, w);
    const expect = (what: string, got: number, want: number) => {
      if (got !== want)
        throw new RangeError(`${op}: ${what} has ${got} elements, expected ${want}`);
    };
    if (op === "reduceScatter") expect("output", output.length, mine);
    else if (op === "allGather") expect("input", input.length, mine);
    else expect("output", output.length, length);
    if (op === "allToAll" && length % n !== 0) {
      throw new RangeError(`allToAll: ${length} elements do not cut into ${n} equal chunks`);
    }
    this.op = op;
    this.root = root;
    this.length = length;
    this.output = output;
    this.failure = null;
    this.work = new Int32Array(length);
    this.workFloats = new Float32Array(this.work.buffer);
    const epp = this.options.elementsPerPacket;
    if (reduces(op)) {
      this.stats.saturatedValues += quantizeInto(input, 0, length, this.scale, this.work, 0);
    } else if (op === "allGather") {
      this.workFloats.set(input, chunkStart(length, n, w));
    } else {
      this.workFloats.set(input);
    }
    this.plan(op, length, n, w, root, epp);
    // Every worker reserves the same PSNs for a collective, from its length
    // alone: no stream of any worker has more packets than this.
    this.callBase = this.nextCallBase;
    this.callSpan = 2 * (Math.ceil(length / epp) + n) + 1;
    if (this.callBase + this.callSpan > 0xffffffff) {
      throw new RangeError("PSN space exhausted: PSNs are 32-bit and do not wrap within a job");
    }
    this.nextCallBase = this.callBase + this.callSpan;
    this.active = true;
    this.probing = false;
    this.lastTimeoutAt = Number.NEGATIVE_INFINITY;
    this.lastHeardAt = now;
    // Say hello, so the switch knows this worker's address before anyone sends to it.
    this.helloConfirmed = false;
    this.sendControl(w, 0, now);
    this.helloSentAt = now;
    this.finishIfDone();
    for (const s of this.outs) this.fill(s, now);
  }

  /** Builds the streams of `op` for worker `w` of `n`. */
  private plan(op: Collective, length: number, n: number, w: number, root: number, epp: number) {
    this.outs = [];
    this.ins = [];
    this.heldStreams = 0;
    this.inBySource.fill(-1);
    const out = (destination: number, receivers: number, plan: StreamPlan) =>
      this.outs.push(new OutStream(destination, receivers, plan, this.options.window, epp));
    const inn = (source: number, plan: StreamPlan, add: boolean) => {
      this.inBySource[source] = this.ins.length;
      this.ins.push(new InStream(source, plan, new Array(plan.packets).fill(add)));
    };
    // allToAll keeps what it receives apart from its input (its own chunk, with one worker).
    if (op === "allToAll") this.received = new Int32Array(length);
    if (n === 1) return;
    const mod = (x: number) => ((x % n) + n) % n;
    if (op === "allReduce" || op === "reduceScatter" || op === "allGather") {
      // Ring: in step s worker w sends chunk (w - s - 1) and receives chunk
      // (w - s - 2) from its predecessor. Steps 0..N-2 reduce (after them w
      // holds chunk w summed), steps N-1..2N-3 gather.
      const first = op === "allGather" ? n - 1 : 0;
      const last = op === "reduceScatter" ? n - 2 : 2 * n - 3;
      const send = new StreamPlan();
      const receive = new StreamPlan();
      const adds: boolean[] = [];
      const firstPacketOfStep: number[] = [];
      for (let s = first; s <= last; s++) {
        firstPacketOfStep[s] = receive.packets;
        receive.addChunk(length, n, mod(w - s - 2), s, epp);
        while (adds.length < receive.packets) adds.push(s <= n - 2);
      }
      for (let s = first; s <= last; s++) {
        const from = send.packets;
        send.addChunk(length, n, mod(w - s - 1), s, epp);
        if (s > first) {
          // What goes out in step s came in during step s - 1 (same chunk).
          for (let k = from; k < send.packets; k++) {
            send.waitStream[k] = 0;
            send.waitPacket[k] = firstPacketOfStep[s - 1] + (k - from);
          }
        }
      }
      out(mod(w + 1), 1 << mod(w + 1), send);
      this.inBySource[mod(w - 1)] = 0;
      this.ins.push(new InStream(mod(w - 1), receive, adds));
      return;
    }
    if (op === "broadcast") {
      const plan = new StreamPlan();
      plan.addChunk(length, 1, 0, 0, epp);
      const others = (n === 32 ? 0xffffffff : (1 << n) - 1) & ~(1 << root);
      if (w === root) out(DESTINATION_ALL_WORKERS, others >>> 0, plan);
      else inn(root, plan, false);
      return;
    }
    if (op === "reduce") {
      const plan = new StreamPlan();
      plan.addChunk(length, 1, 0, 0, epp);
      if (w === root) {
        for (let v = 0; v < n; v++) if (v !== root) inn(v, plan, true);
      } else out(root, 1 << root, plan);
      return;
    }
    // allToAll: chunk j of w's input goes to j; chunk i of w's output comes from i.
    for (let v = 0; v < n; v++) {
      if (v === w) continue;
      const to = new StreamPlan();
      to.addChunk(length, n, v, 0, epp);
      out(v, 1 << v, to);
      const from = new StreamPlan();
      from.addChunk(length, n, w, 0, epp);
      inn(v, from, false);
    }
  }

  /** allToAll: the chunks received, as float32 bits, each where its sender's chunk goes. */
  private received: Int32Array<ArrayBuffer> = new Int32Array(0);

  receive(datagram: Buffer, now: number): void {
    this.stats.datagramsReceived++;
    // Packets are read from a copy, through views made once; one larger
    // than scratch (only a caller in this process can make one) is dropped whole.
    if (datagram.length <= this.scratch.length) this.scratch.set(datagram);
    this.walkNow = now;
    forEachPacket(datagram, datagram.length, this.scratch.length, this.walk);
    // Without a delay, what this datagram brought is acknowledged now.
    if (this.heldStreams > 0 && !((this.options.ackDelayMs ?? 0) > 0)) this.releaseAcks(now, true);
  }

  /** `now` of the datagram being walked */
  private walkNow = 0;
  /** the datagram walk's visitor, bound once: packets are read from scratch */
  private readonly walk: PacketVisitor<Buffer> = {
    packet: (_bytes, at, length) => this.receivePacket(at, length, this.walkNow),
    dropDatagram: (reason) => this.drop(reason),
  };
  /** a received packet's fields, by meaning */
  private readonly ringIn: RingPacket = {
    sender: 0,
    destination: 0,
    psn: 0,
    elementCount: 0,
    step: 0,
    chunk: 0,
    scaleBits: 0,
    ackCoverage: 0,
  };
  private readonly failedIn: FailedPacket = {
    jobId: 0,
    fanIn: 0,
    deadWorkers: 0,
    psn: 0,
    waitedMs: 0,
  };

  private receivePacket(at: number, length: number, now: number): void {
    const h = this.header;
    const o = this.options;
    const reason = decodeHeader(this.scratchView, at, length, h);
    if (reason !== DropReason.ok) {
      this.drop(reason);
      return;
    }
    if (h.type === PacketType.failed && h.jobId === o.jobId) {
      const failed = this.failedIn;
      readFailed(h, failed);
      if (this.active) this.fail(`the switch failed ${describeFailure(failed)}`);
      return;
    }
    if (h.type !== PacketType.forward) {
      this.drop(DropReason.unexpectedType);
      return;
    }
    if (h.jobId !== o.jobId || h.fanIn !== o.fanIn) {
      this.drop(DropReason.unknownJob);
      return;
    }
    if (h.workerId >= o.fanIn) {
      this.drop(DropReason.badWorkerId);
      return;
    }
    this.stats.packetsReceived++;
    this.stats.bytesReceived += length;
    this.lastHeardAt = now;
    if (h.workerId === o.workerId) {
      // Our own hello, back from the switch: it knows our address.
      if (h.elementCount === 0) this.helloConfirmed = true;
      return;
    }
    if (h.elementCount === 0) {
      // An acknowledgement covers `aggregatorIndex` packets before its PSN too (0 before ranges).
      // No stream holds a window's PSNs before an acknowledged one in flight: those are done.
      const covers = Math.min(h.aggregatorIndex, o.window, h.psn);
      for (let psn = h.psn - covers; psn < h.psn; psn++) this.acknowledged(h.workerId, psn, now);
      this.acknowledged(h.workerId, h.psn, now);
      return;
    }
    const k = h.psn - this.callBase;
    if (k < 0) {
      // A copy of a packet of an earlier collective: it was applied; say so again.
      this.stats.duplicateResults++;
      this.sendControl(h.workerId, h.psn, now);
      return;
    }
    // Streams stay after a collective ends, so copies of its packets are still acknowledged.
    const index = this.inBySource[h.workerId];
    if (index < 0 || k >= this.callSpan) {
      // From a collective this worker has not begun: the sender will send it again.
      this.drop(DropReason.unexpectedResult);
      return;
    }
    const stream = this.ins[index];
    const plan = stream.plan;
    const r = this.ringIn;
    readRing(h, r);
    if (
      k >= plan.packets ||
      r.elementCount !== plan.count[k] ||
      r.step !== plan.step[k] ||
      r.chunk !== plan.chunk[k] ||
      (reduces(this.op) && r.scaleBits !== o.scaleBits)
    ) {
      this.drop(DropReason.shapeMismatch);
      return;
    }
    if (stream.received[k] === 1) {
      this.stats.duplicateResults++;
      this.sendControl(h.workerId, h.psn, now);
      return;
    }
    const values = (at + HEADER_BYTES) >> 2;
    const start = plan.start[k];
    const count = plan.count[k];
    if (stream.add[k]) {
      addSaturating(this.work, start, this.scratchValues, values, count);
    } else {
      // allToAll: what worker v sends lands in output chunk v (chunks are equal).
      const into = this.op === "allToAll" ? this.received : this.work;
      const at0 =
        this.op === "allToAll"
          ? chunkStart(this.length, o.fanIn, h.workerId) +
            (start - chunkStart(this.length, o.fanIn, o.workerId))
          : start;
      const from = this.scratchValues;
      for (let i = 0; i < count; i++) into[at0 + i] = from[values + i];
    }
    this.stats.payloadBytesReceived += count * 4;
    this.stats.resultsReceived++;
    stream.received[k] = 1;
    stream.receivedCount++;
    this.holdAck(stream, k, r.ackCoverage, (h.flags & Flag.resend) !== 0, now);
    // What waited for this packet may go now (the ring's next step).
    for (const s of this.outs) this.fill(s, now);
    this.finishIfDone();
  }

  /**
   * Acknowledges packet `k` of `stream`, now or with later ones (section 17,
   * "Acknowledgement ranges"): a packet extends the range held when it is
   * the next one and the sender accepts `coverage` (its data's regionEpoch)
   * that many; the range goes once it is full, the stream complete or the
   * packet a resend (its sender is recovering), else by the end of the
   * datagram or ackDelayMs (releaseAcks).
   */
  private holdAck(stream: InStream, k: number, coverage: number, resend: boolean, now: number) {
    if (stream.heldFirst >= 0 && (k !== stream.heldLast + 1 || k - stream.heldFirst >= coverage)) {
      this.sendHeld(stream, now);
    }
    if (coverage <= 1) {
      this.sendAck(stream.source, k, 0, now);
      return;
    }
    if (stream.heldFirst < 0) {
      stream.heldFirst = k;
      stream.heldSince = now;
      this.heldStreams++;
    }
    stream.heldLast = k;
    if (
      resend ||
      k - stream.heldFirst + 1 >= coverage ||
      stream.receivedCount === stream.plan.packets
    ) {
      this.sendHeld(stream, now);
    }
  }

  /** Sends the acknowledgement of `stream`'s held range. */
  private sendHeld(stream: InStream, now: number): void {
    const first = stream.heldFirst;
    const last = stream.heldLast;
    stream.heldFirst = -1;
    this.heldStreams--;
    this.sendAck(stream.source, last, last - first, now);
  }

  /** Sends every held range (`all`), or those held ackDelayMs by `now`. */
  private releaseAcks(now: number, all: boolean): void {
    const delay = this.options.ackDelayMs ?? 0;
    for (const s of this.ins) {
      if (s.heldFirst >= 0 && (all || now >= s.heldSince + delay)) this.sendHeld(s, now);
    }
  }

  /** Timer `ackDelay`: the earliest held range's ackDelayMs after it began. */
  private ackDelayAt(): number {
    if (this.heldStreams === 0) return Number.POSITIVE_INFINITY;
    const delay = this.options.ackDelayMs ?? 0;
    let at = Number.POSITIVE_INFINITY;
    for (const s of this.ins)
      if (s.heldFirst >= 0 && s.heldSince + delay < at) at = s.heldSince + delay;
    return at;
  }

  /** When this worker's next keepalive is due (ms; +Infinity: off), as WorkerCore's. */
  nextKeepaliveAt(): number {
    return this.keepalive.nextAt();
  }

  /** Whether this worker has sent the switch nothing for its keepalive interval. */
  keepaliveDue(now: number): boolean {
    return this.keepalive.due(now);
  }

  /** This worker also has a keepalive socket at `port` (WorkerCore's). */
  useKeepaliveSocket(port: number): void {
    this.keepalive.registerPort(port);
  }

  /** Sends a keepalive (proto/README.md, section 15). */
  sendKeepalive(now: number): void {
    this.transmitPacket(this.keepalive.bytes, now);
  }

  /**
   * When this worker next needs handleTimeout() (ms, on the clock of `now`;
   * Infinity when nothing is pending): the earliest of its named timers,
   * `giveUp` (nothing heard for giveUpAfterMs), `hello` (resent every RTO
   * until the switch echoes it), `retransmit` (the oldest unacknowledged
   * send's RTO, a probe first), `gapResend` (a stream's gap, once later
   * packets are acknowledged) and `ackDelay` (a held acknowledgement's
   * ackDelayMs) while a collective runs, and `keepalive`
   * always (nothing sent for keepaliveMs). Cheap: no scan of the windows.
   */
  /** The process's timer due at `now - lateMs` ran at `now`: the measured G (RttEstimator). */
  observeTimerLateness(lateMs: number, now: number): void {
    this.rtt.observeTimerLateness(lateMs, now);
  }

  nextTimeout(): number {
    const keepalive = this.keepalive.nextAt();
    if (!this.active) return keepalive;
    let at = Math.min(
      keepalive,
      this.giveUpAt(),
      this.helloAt(),
      this.retransmitAt(),
      this.ackDelayAt(),
    );
    for (const s of this.outs) if (s.rack.deadline < at) at = s.rack.deadline;
    return at;
  }

  /** Runs every timer due at `now` (keepalive first); a timer not yet due does nothing. */
  handleTimeout(now: number): void {
    if (this.keepaliveDue(now)) this.sendKeepalive(now);
    if (!this.active) return;
    if (now >= this.giveUpAt()) {
      const giveUp = this.options.giveUpAfterMs ?? 0;
      this.fail(
        `no packet from the switch for ${(giveUp / 1000).toFixed(1)} s (${this.waitingFor()})`,
      );
      return;
    }
    if (now >= this.helloAt()) {
      this.sendControl(this.options.workerId, 0, now);
      this.helloSentAt = now;
    }
    if (now >= this.ackDelayAt()) this.releaseAcks(now, false);
    // Loss detection on the clock too, as WorkerCore's (section 7): once every
    // later packet is acknowledged, no acknowledgement comes to trigger it.
    for (const s of this.outs) if (now >= s.rack.deadline) this.detectLosses(s, now);
    if (now >= this.retransmitAt()) this.retransmit(now);
  }

  /**
   * Retransmits what timed out at `now`, each stream's packets by its own
   * RTO anchor (see OutStream.lastAckAt): a probe (a stream's oldest packet)
   * first, as WorkerCore's.
   */
  private retransmit(now: number): void {
    const rto = this.stats.rtoMs;
    const window = this.options.window;
    let timedOut = false;
    for (const s of this.outs) {
      const since = s.lastAckAt;
      for (let i = s.base; i < s.next; i++) {
        const slot = i % window;
        if (s.awaiting[slot] !== 0 && now >= Math.max(s.sentAt[slot], since) + rto) {
          if (packetGivenUp(s.timeouts[slot] + 1, now - s.firstSentAt[slot], this.options)) {
            this.fail(
              `no acknowledgement from worker(s) 0x${s.awaiting[slot].toString(16)} for PSN ${this.callBase + i} after ${s.sends[slot]} sends`,
            );
            return;
          }
          this.resend(s, slot, now);
          s.timedOut[slot] = 1;
          s.timeouts[slot]++;
          timedOut = true;
          // A first timeout resends only the oldest packet, a probe (section 7).
          if (!this.probing) break;
        }
      }
    }
    if (timedOut) {
      this.stats.timeouts++;
      this.stats.timeoutStallMs += now - Math.max(this.lastHeardAt, this.lastTimeoutAt);
      this.lastTimeoutAt = now;
      this.stats.rtoMs = Math.min(this.options.rtoMaxMs, rto * 2);
      this.probing = !this.probing;
    }
    // The lower bounds made exact: each stream's oldest send still unacknowledged.
    for (const s of this.outs) {
      let oldest = Number.POSITIVE_INFINITY;
      for (let i = s.base; i < s.next; i++) {
        const slot = i % window;
        if (s.awaiting[slot] !== 0 && s.sentAt[slot] < oldest) oldest = s.sentAt[slot];
      }
      s.oldestSentAt = oldest;
    }
  }

  /** Timer `giveUp`: the collective fails once nothing was heard this long. */
  private giveUpAt(): number {
    const giveUp = this.options.giveUpAfterMs ?? 0;
    return giveUp > 0 ? this.lastHeardAt + giveUp : Number.POSITIVE_INFINITY;
  }

  /** Timer `hello`: the hello goes again an RTO after the last, until the switch echoes it. */
  private helloAt(): number {
    return this.helloConfirmed ? Number.POSITIVE_INFINITY : this.helloSentAt + this.stats.rtoMs;
  }

  /**
   * Timer `retransmit`: the earliest over the streams of the RTO after the
   * stream's oldest send still unacknowledged, or after its latest new
   * acknowledgement if that came later (as WorkerCore's). A stream's packets
   * sent once went out in order, so while none in flight was resent its
   * oldest is its base's (exact, O(1)); otherwise `oldestSentAt`, a lower
   * bound made exact when the timer fires. O(streams).
   */
  private retransmitAt(): number {
    let at = Number.POSITIVE_INFINITY;
    const window = this.options.window;
    for (const s of this.outs) {
      if (s.base >= s.next) continue;
      const oldest = s.resentInFlight === 0 ? s.sentAt[s.base % window] : s.oldestSentAt;
      const due = Math.max(oldest, s.lastAckAt) + this.stats.rtoMs;
      if (due < at) at = due;
    }
    return at;
  }

  /**
   * Says hello (section 17) outside a collective: a worker that does so as
   * it starts is known to the switch before its peers send to it.
   */
  hello(now: number): void {
    this.sendControl(this.options.workerId, 0, now);
    this.helloSentAt = now;
  }

  private acknowledged(from: number, psn: number, now: number): void {
    const k = psn - this.callBase;
    if (!this.active || k < 0) return; // late: that packet was done
    for (const s of this.outs) {
      if ((s.receivers & (1 << from)) === 0 || k < s.base || k >= s.next) continue;
      const slot = k % this.options.window;
      if ((s.awaiting[slot] & (1 << from)) === 0) return;
      s.awaiting[slot] &= ~(1 << from);
      s.lastAckAt = now;
      if (s.awaiting[slot] !== 0) return;
      if (s.sends[slot] > 1) s.resentInFlight--;
      // Karn's sample or the backoff's end, a spurious timeout, RACK (see Rack).
      if (s.sends[slot] === 1) this.probing = false;
      s.rack.answered(
        this.rtt,
        this.stats,
        k,
        s.sends[slot],
        s.timedOut[slot] === 1,
        s.sentAt[slot],
        now,
      );
      if (k === s.base) {
        while (s.base < s.next && s.awaiting[s.base % this.options.window] === 0) s.base++;
        this.fill(s, now);
        this.finishIfDone();
        if (!this.active) return;
      }
      if (s.base < s.rack.seq) this.detectLosses(s, now);
      return;
    }
  }

  /**
   * RACK loss detection (RFC 8985) of stream `s`, as WorkerCore's: an
   * unacknowledged packet sent before the latest-sent acknowledged one (same
   * time: a lower index) is resent once it has waited that one's round trip
   * plus the reordering wait; the others' earliest deadline arms the
   * stream's timer `gapResend`. Scans [base, rack.seq): O(window) per
   * acknowledgement while a packet is missing, nothing otherwise.
   */
  private detectLosses(s: OutStream, now: number): void {
    const rack = s.rack;
    rack.deadline = Number.POSITIVE_INFINITY;
    if (!this.rtt.hasSample) return;
    const wait = rack.lossWaitMs(this.rtt);
    const window = this.options.window;
    const rackSentAt = rack.sentAt;
    const end = Math.min(rack.seq, s.next);
    let deadline = Number.POSITIVE_INFINITY;
    for (let i = s.base; i < end; i++) {
      const slot = i % window;
      if (s.awaiting[slot] === 0) continue;
      const sentAt = s.sentAt[slot];
      if (sentAt > rackSentAt) continue;
      const at = sentAt + wait;
      if (now >= at) {
        this.resend(s, slot, now);
        s.timedOut[slot] = 0;
      } else if (at < deadline) {
        deadline = at;
      }
    }
    rack.deadline = deadline;
  }

  /** Sends the stream's next packets while its window has room and what they wait for has come. */
  private fill(s: OutStream, now: number): void {
    const plan = s.plan;
    const window = this.options.window;
    while (s.next < plan.packets && s.next - s.base < window) {
      const k = s.next;
      const wait = plan.waitStream[k];
      if (wait >= 0 && this.ins[wait].received[plan.waitPacket[k]] === 0) return;
      this.sendData(s, k, now);
      s.next++;
    }
  }

  private sendData(s: OutStream, k: number, now: number): void {
    const o = this.options;
    const slot = k % o.window;
    const plan = s.plan;
    const count = plan.count[k];
    const values = s.slots.values;
    const into = s.slots.valuesStart(slot);
    const work = this.work;
    const from = plan.start[k];
    for (let i = 0; i < count; i++) values[into + i] = work[from + i];
    this.stats.payloadBytesSent += count * 4;
    writeRingData(
      s.slots.view,
      s.slots.headerOffset(slot),
      Flag.batches | (reduces(this.op) ? 0 : Flag.float32),
      o.jobId,
      o.workerId,
      o.fanIn,
      count,
      this.callBase + k,
      plan.step[k],
      plan.chunk[k],
      reduces(this.op) ? o.scaleBits : 0,
      s.destination,
      this.ackCoverage,
    );
    s.awaiting[slot] = s.receivers;
    s.sends[slot] = 1;
    s.timeouts[slot] = 0;
    s.sentAt[slot] = now;
    s.firstSentAt[slot] = now;
    s.timedOut[slot] = 0;
    if (now < s.oldestSentAt) s.oldestSentAt = now;
    this.transmitPacket(s.slots.packet(slot, count), now);
  }

  private resend(s: OutStream, slot: number, now: number): void {
    const view = s.slots.view;
    const at = s.slots.headerOffset(slot);
    view.setUint16(at + Field.flags, view.getUint16(at + Field.flags, true) | Flag.resend, true);
    if (s.sends[slot] === 1) s.resentInFlight++;
    s.sends[slot]++;
    s.sentAt[slot] = now;
    if (now < s.oldestSentAt) s.oldestSentAt = now;
    this.stats.retransmissions++;
    this.transmitPacket(s.slots.packet(slot, view.getUint16(at + Field.elementCount, true)), now);
  }

  /** An acknowledgement of `psn` to `to`, or (to = this worker) a hello: a forward with no payload. */
  private sendControl(to: number, psn: number, now: number): void {
    const o = this.options;
    writeRingControl(this.controlView, 0, Flag.batches, o.jobId, o.workerId, o.fanIn, psn, to);
    this.transmitPacket(this.control, now);
  }

  /** An acknowledgement to `to` of packet `k` of the current collective and the `covers` before it. */
  private sendAck(to: number, k: number, covers: number, now: number): void {
    const o = this.options;
    const psn = this.callBase + k;
    writeRingControl(
      this.controlView,
      0,
      Flag.batches,
      o.jobId,
      o.workerId,
      o.fanIn,
      psn,
      to,
      covers,
    );
    this.transmitPacket(this.control, now);
  }

  private transmitPacket(packet: Buffer, now: number): void {
    this.keepalive.lastSentAt = now;
    this.stats.packetsSent++;
    this.stats.bytesSent += packet.length;
    this.transmit.send(packet);
  }

  private finishIfDone(): void {
    if (!this.active) return;
    for (const s of this.outs) if (s.base < s.plan.packets) return;
    for (const s of this.ins) if (s.receivedCount < s.plan.packets) return;
    this.active = false;
    const o = this.options;
    const n = o.fanIn;
    const w = o.workerId;
    const length = this.length;
    switch (this.op) {
      case "allReduce":
        dequantizeInto(this.work, 0, length, 2 ** -o.scaleBits, this.output, 0);
        return;
      case "reduce":
        if (w === this.root)
          dequantizeInto(this.work, 0, length, 2 ** -o.scaleBits, this.output, 0);
        return;
      case "reduceScatter": {
        const from = chunkStart(length, n, w);
        dequantizeInto(this.work, from, this.output.length, 2 ** -o.scaleBits, this.output, 0);
        return;
      }
      case "allGather":
      case "broadcast":
        this.output.set(this.workFloats);
        return;
      case "allToAll": {
        // Chunk w of this worker's own input stays here.
        const from = chunkStart(length, n, w);
        const to = chunkStart(length, n, w + 1);
        this.received.set(this.work.subarray(from, to), from);
        this.output.set(new Float32Array(this.received.buffer));
        return;
      }
    }
  }

  private fail(reason: string): void {
    this.failure = reason;
    this.active = false;
  }

  private drop(reason: DropReasonValue): void {
    this.stats.drops[reason]++;
  }
}
