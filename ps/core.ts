import { decodeHeader, forEachPacket, type PacketVisitor } from "../proto/codec.js";
import type { JobConfig } from "../proto/config.js";
import { DROP_REASON_COUNT, DropReason, type DropReasonValue } from "../proto/drops.js";
import { INT32_MAX, INT32_MIN } from "../proto/fixedpoint.js";
import { writeAck } from "../proto/packets.js";
import type { PsStatsRecord } from "../proto/records.js";
import {
  DESTINATION_ALL_WORKERS,
  emptyHeader,
  Field,
  Flag,
  HEADER_BYTES,
  MAX_FAN_IN,
  type PacketHeader,
  PacketType,
  packetBytes,
  WORKER_ID_NONE,
} from "../proto/wire.js";
import { PacketSlots } from "../runtime/slots.js";

/** Where the PS's acks go: the UDP adapter, or a test's capture. */
/** Jobs a PS holds state for at most, listed and adopted together. */
export const MAX_PS_JOBS = 1024;

export interface PsTransmit {
  send(packet: Buffer, port: number, address: string): void;
}

/** The counters of the `stats` record, drops by DropReason value. */
export interface PsStats
  extends Omit<PsStatsRecord, "drops" | "statesHeld" | "jobsAdopted" | "adoptedJobsFreed"> {
  jobsAdopted: number;
  adoptedJobsFreed: number;
  drops: Float64Array;
}

const EntryState = { free: 0, collecting: 1, done: 2 } as const;

/** PsCore's switchPort while it waits to be told the switch's address. */
const AWAITING_SWITCH = -2;

/** The PS's state for one job: a ring of per-PSN entries indexed by PSN % capacity. */
class PsJob {
  readonly id: number;
  readonly mode: JobConfig["mode"];
  readonly fanIn: number;
  readonly window: number;
  readonly fullBitmap: number;
  readonly capacity: number;
  readonly psn: Float64Array;
  readonly state: Uint8Array;
  readonly bitmap: Uint32Array;
  readonly overflow: Uint8Array;
  /** some piece of the PSN was ECN-marked: the ack carries the mark */
  readonly ecn: Uint8Array;
  readonly elementCount: Uint16Array;
  readonly scaleBits: Uint8Array;
  readonly aggregatorIndex: Uint32Array;
  /** the sum in fixed-point units: exact, since |32 x int32| < 2^53 */
  readonly sums: Float64Array;
  /** each entry's ack, kept for re-sends until the PSN retires */
  readonly acks: PacketSlots;
  readonly ackFloats: Float32Array;
  /** highest PSN seen from each worker, in any piece */
  readonly highest = new Float64Array(MAX_FAN_IN).fill(-1);
  /** PSNs below this are retired: every worker has moved a window past them */
  retiredBelow = 0;
  held = 0;
  /** PSNs collecting pieces (held, not yet complete) */
  collecting = 0;
  /** adopted (not in the config): forgotten once idle with no PSN collecting */
  adopted = false;
  /** when its latest piece was accepted (ms; NaN: never, or no clock given) */
  lastPieceAt = Number.NaN;

  constructor(
    config: JobConfig,
    readonly elements: number,
  ) {
    this.id = config.id;
    this.mode = config.mode;
    this.fanIn = config.fanIn;
    this.window = config.window;
    this.fullBitmap = config.fanIn === 32 ? 0xffffffff : (1 << config.fanIn) - 1;
    // Live PSNs span at most about three windows: a window of completed PSNs
    // some worker may still resend, the fastest worker's window, and the
    // PSNs whose pieces are still on their way. Four leaves slack.
    this.capacity = 4 * config.window;
    this.psn = new Float64Array(this.capacity).fill(-1);
    this.state = new Uint8Array(this.capacity);
    this.bitmap = new Uint32Array(this.capacity);
    this.overflow = new Uint8Array(this.capacity);
    this.ecn = new Uint8Array(this.capacity);
    this.elementCount = new Uint16Array(this.capacity);
    this.scaleBits = new Uint8Array(this.capacity);
    this.aggregatorIndex = new Uint32Array(this.capacity);
    this.sums = new Float64Array(this.capacity * elements);
    this.acks = new PacketSlots(this.capacity, elements);
    this.ackFloats = new Float32Array(this.acks.values.buffer);
  }

  /** Notes that the workers in `bits` have sent `psn`, and retires what all have passed. */
  advance(bits: number, psn: number): void {
    let low = Number.POSITIVE_INFINITY;
    for (let w = 0; w < this.fanIn; w++) {
      if (bits & (1 << w) && this.highest[w] < psn) this.highest[w] = psn;
      if (this.highest[w] < low) low = this.highest[w];
    }
    // A worker that sent PSN p has the result of every PSN up to p - window,
    // so nobody will ask for those again.
    const retire = low - this.window + 1;
    if (retire - this.retiredBelow > this.capacity) {
      // Everything held is older than `retire`: clear the ring in one pass.
      for (let slot = 0; slot < this.capacity; slot++) this.state[slot] = EntryState.free;
      this.held = 0;
      this.collecting = 0;
      this.retiredBelow = retire;
    }
    while (this.retiredBelow < retire) {
      const slot = this.retiredBelow % this.capacity;
      if (this.psn[slot] === this.retiredBelow && this.state[slot] !== EntryState.free) {
        if (this.state[slot] === EntryState.collecting) this.collecting--;
        this.state[slot] = EntryState.free;
        this.held--;
      }
      this.retiredBelow++;
    }
  }
}

/**
 * The parameter server, sans-IO. It completes each (job, PSN) from whatever
 * pieces arrive: workers' own contributions (PS mode, ATP pass-through and
 * resends), partial aggregates the switch evicted, and full aggregates. Its
 * own bitmap per PSN makes every worker count once whatever is duplicated,
 * reordered or resent. On completion it sends an ack carrying the sum back
 * through the switch to every worker; a retransmission after completion gets
 * the ack again. State for a PSN is freed once every worker is a window past it.
 */
export class PsCore {
  readonly stats: PsStats = {
    rxPackets: 0,
    rxDatagrams: 0,
    workerContributions: 0,
    collisions: 0,
    partials: 0,
    fullAggregates: 0,
    aggregationsCompleted: 0,
    partialsMerged: 0,
    floatResults: 0,
    resultsResent: 0,
    acksSent: 0,
    jobsAdopted: 0,
    adoptedJobsFreed: 0,
    drops: new Float64Array(DROP_REASON_COUNT),
  };
  readonly jobs: PsJob[] = [];
  private readonly jobSlotById = new Int32Array(0x10000).fill(-1);
  private readonly header = emptyHeader();
  private readonly scratch: Buffer;
  private readonly scratchView: DataView;
  private readonly scratchValues: Int32Array;
  private readonly elements: number;

  constructor(
    jobs: readonly JobConfig[],
    elementsPerAggregator: number,
    private readonly transmit: PsTransmit,
    /**
     * Serve jobs the config does not list (submitted to the switch's control
     * plane), learning the fan-in from their first piece and assuming this window.
     */
    private readonly adoptWindow = 0,
    /**
     * an adopted job with no PSN collecting is forgotten after this long without
     * a piece (ms): its job ended at the switch (README.md, "The parameter
     * server"); a later piece adopts it afresh
     */
    private readonly adoptedIdleMs = 120_000,
  ) {
    this.elements = elementsPerAggregator;
    const arena = new ArrayBuffer(packetBytes(elementsPerAggregator));
    this.scratch = Buffer.from(arena);
    this.scratchView = new DataView(arena);
    this.scratchValues = new Int32Array(arena);
    for (const job of jobs) {
      if (job.mode === "netreduce") continue;
      this.jobSlotById[job.id] = this.jobs.length;
      this.jobs.push(new PsJob(job, elementsPerAggregator));
    }
  }

  /** PSN states held now, over all jobs. */
  get statesHeld(): number {
    let n = 0;
    for (const job of this.jobs) n += job.held;
    return n;
  }

  /**
   * One datagram (normally from the switch): each of its packets in turn
   * (proto/README.md, section 2.1). Never throws on bad input.
   */
  receive(datagram: Buffer, port: number, address: string, now = Number.NaN): void {
    this.now = now;
    this.stats.rxDatagrams++;
    this.fromPort = port;
    this.fromAddress = address;
    // No limit on the whole datagram: each packet is checked against scratch.
    forEachPacket(datagram, datagram.length, Number.POSITIVE_INFINITY, this.walk);
  }

  /** the `now` of the datagram being read (ms; NaN without a clock) */
  private now = Number.NaN;

  /**
   * When the PS next needs handleTimeout(): timer `forgetAdopted`, when the
   * earliest idle adopted job with no PSN collecting may be forgotten. Otherwise
   * the PS answers what the switch sends and holds a PSN's state until
   * every worker's piece is in.
   */
  nextTimeout(): number {
    let at = Number.POSITIVE_INFINITY;
    // Asked after every datagram turn: without adoption there is nothing to scan.
    if (this.adoptWindow === 0) return at;
    for (const job of this.jobs) {
      if (job.adopted && job.collecting === 0 && job.lastPieceAt + this.adoptedIdleMs < at) {
        at = job.lastPieceAt + this.adoptedIdleMs;
      }
    }
    return at;
  }

  /**
   * Forgets every adopted job idle since adoptedIdleMs before `now` with no
   * PSN collecting: what it still holds are acks for resends, which a job
   * that long silent no longer asks for.
   */
  handleTimeout(now: number): void {
    let kept = 0;
    for (const job of this.jobs) {
      if (job.adopted && job.collecting === 0 && job.lastPieceAt + this.adoptedIdleMs <= now) {
        this.jobSlotById[job.id] = -1;
        this.stats.adoptedJobsFreed++;
        continue;
      }
      this.jobSlotById[job.id] = kept;
      this.jobs[kept++] = job;
    }
    this.jobs.length = kept;
  }

  /** the source of the datagram being walked */
  private fromPort = 0;
  private fromAddress = "";
  /** the datagram walk's visitor, bound once */
  private readonly walk: PacketVisitor<Buffer> = {
    packet: (bytes, at, length) => {
      this.stats.rxPackets++;
      const port = this.fromPort;
      const address = this.fromAddress;
      const reason = this.accept(bytes, at, length, port, address);
      if (reason !== DropReason.ok) this.stats.drops[reason]++;
      else if (this.switchPort < 0) this.trustSwitch(port, address);
    },
    dropDatagram: (reason) => {
      this.stats.rxPackets++;
      this.stats.drops[reason]++;
    },
  };

  /**
   * Takes pieces only from the switch at `address:port` from now on. Without
   * it, the first accepted piece's source is taken as the switch's (trust on
   * first use).
   */
  trustSwitch(port: number, address: string): void {
    this.switchPort = port;
    this.switchAddress = address;
  }

  /**
   * The switch's address will come (trustSwitch); until then every piece
   * is dropped as `wrongSource`, so no first packet is trusted.
   */
  awaitSwitch(): void {
    this.switchPort = AWAITING_SWITCH;
    this.switchAddress = "";
  }

  /** the trusted switch's port; -1: trust the first accepted piece's source; AWAITING_SWITCH: none yet */
  private switchPort = -1;
  private switchAddress = "";

  /** Takes one piece into its PSN's sum; returns why it was not used, or ok. */
  private accept(
    datagram: Buffer,
    at: number,
    length: number,
    port: number,
    address: string,
  ): DropReasonValue {
    const h = this.header;
    if (length > this.scratch.length) return DropReason.tooManyElements;
    if (at === 0 && length === datagram.length) this.scratch.set(datagram);
    else datagram.copy(this.scratch, 0, at, at + length);
    const reason = decodeHeader(this.scratchView, 0, length, h);
    if (reason !== DropReason.ok) return reason;
    // Pieces come through the switch, never straight from anyone else.
    if (
      this.switchPort === AWAITING_SWITCH ||
      (this.switchPort >= 0 && (port !== this.switchPort || address !== this.switchAddress))
    ) {
      return DropReason.wrongSource;
    }
    if (h.type !== PacketType.contribution) return DropReason.unexpectedType;
    let slot = this.jobSlotById[h.jobId];
    if (slot < 0) {
      // Adopted jobs take memory: their number is bounded (and pieces come
      // only from the switch, which forwards only the jobs it serves).
      if (this.adoptWindow === 0 || this.jobs.length >= MAX_PS_JOBS) return DropReason.unknownJob;
      slot = this.jobs.length;
      this.jobSlotById[h.jobId] = slot;
      const adopted = new PsJob(
        {
          id: h.jobId,
          mode: "atp",
          fanIn: h.fanIn,
          window: this.adoptWindow,
          offset: 0,
          regionSize: 1,
        },
        this.elements,
      );
      adopted.adopted = true;
      this.jobs.push(adopted);
      this.stats.jobsAdopted++;
    }
    const job = this.jobs[slot];
    if (h.fanIn !== job.fanIn) return DropReason.fanInMismatch;
    const fromWorker = h.workerId !== WORKER_ID_NONE;
    const bits = fromWorker ? 1 << h.workerId : h.bitmap;
    if (bits === 0 || (bits & ~job.fullBitmap) !== 0) return DropReason.badBitmap;
    job.lastPieceAt = this.now;
    if (fromWorker) {
      this.stats.workerContributions++;
      if (h.flags & Flag.collision) this.stats.collisions++;
    } else if (bits === job.fullBitmap) this.stats.fullAggregates++;
    else this.stats.partials++;

    if (h.psn < job.retiredBelow) return DropReason.psnRetired;
    // Real traffic stays within about 3 windows of the slowest worker; a
    // stray PSN beyond the ring must neither take a slot nor move the watermarks.
    if (h.psn >= job.retiredBelow + job.capacity) return DropReason.psnTooFarAhead;
    job.advance(bits, h.psn);
    if (h.psn < job.retiredBelow) return DropReason.psnRetired;
    const entry = h.psn % job.capacity;
    if (job.state[entry] !== EntryState.free && job.psn[entry] !== h.psn) {
      return DropReason.psnTooFarAhead;
    }
    if (job.state[entry] === EntryState.free) {
      job.state[entry] = EntryState.collecting;
      job.held++;
      job.collecting++;
      job.psn[entry] = h.psn;
      job.bitmap[entry] = 0;
      job.overflow[entry] = 0;
      job.ecn[entry] = 0;
      job.elementCount[entry] = h.elementCount;
      job.scaleBits[entry] = h.scaleBits;
      job.aggregatorIndex[entry] = h.aggregatorIndex;
    } else if (job.elementCount[entry] !== h.elementCount || job.scaleBits[entry] !== h.scaleBits) {
      return DropReason.shapeMismatch;
    }

    if (job.state[entry] === EntryState.done) {
      if ((h.flags & Flag.resend) === 0) return DropReason.duplicate;
      // Someone lacks the result: the worker that resent, or (an aggregate
      // the switch sent again) possibly all of them.
      this.stats.resultsResent++;
      this.sendAck(job, entry, fromWorker ? h.workerId : DESTINATION_ALL_WORKERS, port, address);
      return DropReason.ok;
    }

    const have = job.bitmap[entry];
    const base = entry * this.elements;
    const sums = job.sums;
    const values = this.scratchValues;
    const first = HEADER_BYTES / 4;
    const n = h.elementCount;
    if ((bits & have) === 0) {
      if (have === 0) for (let i = 0; i < n; i++) sums[base + i] = values[first + i];
      else for (let i = 0; i < n; i++) sums[base + i] += values[first + i];
      job.bitmap[entry] = have | bits;
    } else if ((bits & ~have) === 0) {
      return DropReason.duplicate;
    } else if ((have & ~bits) === 0) {
      // A piece that covers everything held (and more) replaces it.
      for (let i = 0; i < n; i++) sums[base + i] = values[first + i];
      job.bitmap[entry] = bits;
    } else {
      // Some of its workers are counted here already and some are not: the
      // piece cannot be split, so it is dropped; the missing workers have no
      // result yet and will resend their own contributions.
      return DropReason.overlappingPartial;
    }
    if (!fromWorker) this.stats.partialsMerged++;
    if (h.flags & Flag.overflow) job.overflow[entry] = 1;
    if (h.flags & Flag.ecn) job.ecn[entry] = 1;
    if (job.bitmap[entry] === job.fullBitmap) this.complete(job, h, entry, port, address);
    return DropReason.ok;
  }

  private complete(job: PsJob, h: PacketHeader, entry: number, port: number, address: string) {
    job.state[entry] = EntryState.done;
    job.collecting--;
    this.stats.aggregationsCompleted++;
    const n = job.elementCount[entry];
    const base = entry * this.elements;
    const sums = job.sums;
    let fitsInt32 = true;
    for (let i = 0; i < n; i++) {
      const v = sums[base + i];
      if (v > INT32_MAX || v < INT32_MIN) {
        fitsInt32 = false;
        break;
      }
    }
    const start = job.acks.valuesStart(entry);
    if (fitsInt32) {
      const out = job.acks.values;
      for (let i = 0; i < n; i++) out[start + i] = sums[base + i];
    } else {
      // The switch's int32 sum overflowed; the exact sum goes back as float32.
      this.stats.floatResults++;
      const inverseScale = 2 ** -job.scaleBits[entry];
      const out = job.ackFloats;
      for (let i = 0; i < n; i++) out[start + i] = sums[base + i] * inverseScale;
    }
    writeAck(
      job.acks.view,
      job.acks.headerOffset(entry),
      (job.overflow[entry] ? Flag.overflow : 0) |
        (job.ecn[entry] ? Flag.ecn : 0) |
        (fitsInt32 ? 0 : Flag.float32),
      job.id,
      job.fanIn,
      n,
      h.psn,
      job.aggregatorIndex[entry],
      job.fullBitmap,
      job.scaleBits[entry],
      h.regionEpoch,
      DESTINATION_ALL_WORKERS,
    );
    this.sendAck(job, entry, DESTINATION_ALL_WORKERS, port, address);
  }

  /** Sends entry's ack to `destination` (a worker id, or all workers) via the switch. */
  private sendAck(job: PsJob, entry: number, destination: number, port: number, address: string) {
    const view = job.acks.view;
    view.setUint16(job.acks.headerOffset(entry) + Field.destination, destination, true);
    this.stats.acksSent++;
    this.transmit.send(job.acks.packet(entry, job.elementCount[entry]), port, address);
  }
}
