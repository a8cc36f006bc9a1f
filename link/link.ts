/**
 * The emulated link model, sans-IO: one egress port of a full-duplex link
 * (a host's NIC, or the switch's port towards a host). A port has a line
 * rate, a one-way propagation delay, a FIFO buffer in bytes and an ECN
 * marking threshold in bytes. It takes (packet size, now) and answers when
 * the packet leaves the port and arrives at the far end, or that the buffer
 * was full (a tail drop), and whether the packet was ECN-marked: marked when
 * it finds more than the threshold queued, as DCTCP's and ATP's switches do.
 *
 * The queue is kept as one number, the time the transmitter has sent
 * everything accepted so far: the bytes queued at `now` (including the packet
 * being serialized) are what the line has not yet sent by then. That is exact
 * for a FIFO at a constant rate, costs a few arithmetic operations per
 * packet, and allocates nothing. Times are milliseconds, like every core's.
 *
 * With `controlPriority` (the default), a packet with no payload (at most
 * CONTROL_PACKET_BYTES: an acknowledgement, a hello, a keepalive) is a
 * strict-priority class of its own, as NICs and switches serve traffic
 * classes (and a NIC's queue pairs take turns, so one flow's acknowledgements
 * never wait behind a window of another's data): it waits only for the
 * packets of its class and for the data packet being serialized (its end
 * found as if the queue were packets of the last data packet's size), then
 * leaves. Its bytes still
 * take the line's time: the data accepted after it leave that much later
 * (data accepted before keep their times, already given: the one
 * approximation, a control packet's serialization, 2.6 ns at 100 Gbit/s).
 */

import { CONTROL_PACKET_BYTES, type LinkParams } from "../proto/links.js";
import type { LinkPortRecord } from "../proto/records.js";

/** What offer() decided; one object per caller, reused. */
export interface PortVerdict {
  dropped: boolean;
  marked: boolean;
  /** when the packet's last bit leaves the port (ms) */
  departAt: number;
  /** when it has reached the far end (ms): departAt + delay */
  arriveAt: number;
}

export function newVerdict(): PortVerdict {
  return { dropped: false, marked: false, departAt: 0, arriveAt: 0 };
}

/** A port's counters, plain numbers. */
export interface PortCounters {
  /** bytes and packets accepted (and so sent) */
  bytes: number;
  packets: number;
  /** tail drops: the buffer was full */
  drops: number;
  droppedBytes: number;
  /** ECN marks */
  marks: number;
  /** most bytes ever queued, the arriving packet included */
  queueHighWaterBytes: number;
  /** `now` of the first packet offered, and departure of the last accepted (ms); -1 before any */
  firstOfferAt: number;
  lastDepartAt: number;
  /** the queue's bytes integrated over time up to `queueAreaAt` (bytes x ms) */
  queueArea: number;
  queueAreaAt: number;
}

/**
 * Bins of the queue an accepted packet found (QueueStats): bin 0 an empty
 * queue, bin k >= 1 [2^(k-1), 2^k) bytes; the last bin takes the rest.
 */
export const QUEUE_BINS = 40;

/** The queue a port held over a run: its time-weighted mean, and what the packets found. */
export interface QueueStats {
  /** bytes queued on average over the port's busy span (first offer to last departure) */
  meanBytes: number;
  /** the queue the median and the 99th-percentile accepted packet found (the bin's upper bound, bytes) */
  p50Bytes: number;
  p99Bytes: number;
}

export class LinkPort {
  readonly counters: PortCounters = {
    bytes: 0,
    packets: 0,
    drops: 0,
    droppedBytes: 0,
    marks: 0,
    queueHighWaterBytes: 0,
    firstOfferAt: -1,
    lastDepartAt: -1,
    queueArea: 0,
    queueAreaAt: 0,
  };
  /** accepted packets by the queue they found (QUEUE_BINS) */
  readonly queueFound = new Float64Array(QUEUE_BINS);
  /** bytes the line sends per ms */
  private readonly bytesPerMs: number;
  /** when the transmitter has sent everything accepted so far (ms) */
  private busyUntil = Number.NEGATIVE_INFINITY;
  /** controlPriority: when the control class has sent everything it accepted (ms) */
  private controlBusyUntil = Number.NEGATIVE_INFINITY;
  /** controlPriority: the serialization of the last data packet accepted (ms): where the packet on the line ends */
  private lastDataMs = 0;

  constructor(readonly params: LinkParams) {
    this.bytesPerMs = params.rateBitsPerSecond / 8 / 1000;
  }

  /** Bytes queued at `now`, the packet being serialized included. */
  queuedBytes(now: number): number {
    return this.busyUntil > now ? (this.busyUntil - now) * this.bytesPerMs : 0;
  }

  /** Offers a packet of `bytes` at `now`; fills and returns `out`. */
  offer(bytes: number, now: number, out: PortVerdict): PortVerdict {
    const c = this.counters;
    if (c.firstOfferAt < 0) {
      c.firstOfferAt = now;
      c.queueAreaAt = now;
    }
    this.integrateQueue(now);
    const queued = this.queuedBytes(now);
    if (queued + bytes > this.params.bufferBytes) {
      c.drops++;
      c.droppedBytes += bytes;
      out.dropped = true;
      out.marked = false;
      return out;
    }
    out.dropped = false;
    const serializationMs = bytes / this.bytesPerMs;
    let departAt: number;
    let found = queued;
    if (this.params.controlPriority && bytes <= CONTROL_PACKET_BYTES) {
      // Ahead of queued data: after its own class and the data packet on the line,
      // whose end is found as if the queue were packets of the last one's size.
      let start = now;
      if (this.busyUntil > now && this.lastDataMs > 0) {
        const queuedMs = this.busyUntil - now;
        start += queuedMs - (Math.ceil(queuedMs / this.lastDataMs) - 1) * this.lastDataMs;
      }
      if (this.controlBusyUntil > start) start = this.controlBusyUntil;
      departAt = start + serializationMs;
      this.controlBusyUntil = departAt;
      found = (start - now) * this.bytesPerMs;
      this.busyUntil = (this.busyUntil > now ? this.busyUntil : now) + serializationMs;
    } else {
      const start = this.busyUntil > now ? this.busyUntil : now;
      departAt = start + serializationMs;
      this.busyUntil = departAt;
      this.lastDataMs = serializationMs;
    }
    out.marked = found > this.params.ecnThresholdBytes;
    if (out.marked) c.marks++;
    out.departAt = departAt;
    out.arriveAt = departAt + this.params.delayMs;
    c.bytes += bytes;
    c.packets++;
    if (departAt > c.lastDepartAt) c.lastDepartAt = departAt;
    if (queued + bytes > c.queueHighWaterBytes) c.queueHighWaterBytes = queued + bytes;
    this.queueFound[found < 1 ? 0 : Math.min(QUEUE_BINS - 1, 1 + Math.floor(Math.log2(found)))]++;
    return out;
  }

  /** Adds the queue's area from the last offer to `now` (it drains at the line rate in between). */
  private integrateQueue(now: number): void {
    const c = this.counters;
    const from = c.queueAreaAt;
    if (now <= from) return;
    const empty = this.busyUntil;
    if (empty > from) {
      const until = empty < now ? empty : now;
      // Linear from (empty - from) to (empty - until) ms of bytes: a trapezoid.
      c.queueArea += ((empty - from + (empty - until)) / 2) * (until - from) * this.bytesPerMs;
    }
    c.queueAreaAt = now;
  }

  /** The queue over the run so far (QueueStats); zeros before any packet. */
  queueStats(): QueueStats {
    const c = this.counters;
    const span = c.lastDepartAt - c.firstOfferAt;
    // The area up to the last departure: what is queued now drains by then.
    const rest = this.busyUntil > c.queueAreaAt ? this.busyUntil - c.queueAreaAt : 0;
    const area = c.queueArea + ((rest * rest) / 2) * this.bytesPerMs;
    const found = this.queueFound;
    let total = 0;
    for (let k = 0; k < QUEUE_BINS; k++) total += found[k];
    const percentile = (q: number) => {
      let seen = 0;
      for (let k = 0; k < QUEUE_BINS; k++) {
        seen += found[k];
        if (seen >= q * total && seen > 0) return k === 0 ? 0 : 2 ** k;
      }
      return 0;
    };
    return {
      meanBytes: span > 0 ? area / span : 0,
      p50Bytes: percentile(0.5),
      p99Bytes: percentile(0.99),
    };
  }

  /** Share of `seconds` the line was busy sending: bytes / (rate x duration). */
  utilization(seconds: number): number {
    if (seconds <= 0) return 0;
    return (this.counters.bytes * 8) / (this.params.rateBitsPerSecond * seconds);
  }
}

/** A port's parameters and counters as a record (utilization is the reader's: it knows the run's duration). */
export function portRecord(port: LinkPort): LinkPortRecord {
  const c = port.counters;
  const p = port.params;
  return {
    rateBitsPerSecond: p.rateBitsPerSecond,
    delayMs: p.delayMs,
    bufferBytes: p.bufferBytes,
    ecnThresholdBytes: Number.isFinite(p.ecnThresholdBytes) ? p.ecnThresholdBytes : null,
    bytes: c.bytes,
    packets: c.packets,
    drops: c.drops,
    marks: c.marks,
    queueHighWaterBytes: Math.round(c.queueHighWaterBytes),
    ...queueFields(port.queueStats()),
  };
}

/** A port's QueueStats as record and result fields, rounded to bytes. */
export function queueFields(q: QueueStats): {
  queueMeanBytes: number;
  queueP50Bytes: number;
  queueP99Bytes: number;
} {
  return {
    queueMeanBytes: Math.round(q.meanBytes),
    queueP50Bytes: q.p50Bytes,
    queueP99Bytes: q.p99Bytes,
  };
}
