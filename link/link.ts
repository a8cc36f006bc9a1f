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
 *
 * Over time the queue is a sawtooth: it jumps by a packet when one is
 * accepted and drains linearly at the line rate. The port integrates it
 * exactly, over the whole run (QueueStats) and per time bucket
 * (QueueSeries).
 */

import { CONTROL_PACKET_BYTES, type LinkParams } from "../proto/links.js";
import type { LinkPortRecord, QueueSeriesRecord } from "../proto/records.js";

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

/** Buckets a QueueSeries keeps at most (even: a full series halves by merging pairs). */
export const QUEUE_SERIES_BUCKETS = 256;
/** A QueueSeries' first bucket width (ms); it doubles whenever the run outgrows the buckets. */
export const QUEUE_SERIES_FIRST_BUCKET_MS = 1 / 64;

/**
 * The queue over time in a bounded number of buckets from the port's first
 * packet: per bucket the queue's area (bytes x ms) and its maximum. When a
 * time falls past the last bucket, neighbouring pairs merge and the width
 * doubles, so memory is fixed however long the run, and a run of any length
 * fills between half and all of the buckets (once it outlasts the first
 * width's). Widths are powers of two times the first, exact in binary.
 */
export class QueueSeries {
  /** time of the first bucket's start (ms); -1 before any packet */
  startMs = -1;
  bucketMs: number;
  /** the queue integrated over each bucket (bytes x ms) */
  readonly area: Float64Array;
  /** the most bytes queued in each bucket */
  readonly max: Float64Array;

  constructor(
    readonly firstBucketMs = QUEUE_SERIES_FIRST_BUCKET_MS,
    readonly capacity = QUEUE_SERIES_BUCKETS,
  ) {
    if (capacity < 2 || capacity % 2 !== 0) {
      throw new Error(`a queue series needs an even number of buckets, got ${capacity}`);
    }
    this.bucketMs = firstBucketMs;
    this.area = new Float64Array(capacity);
    this.max = new Float64Array(capacity);
  }

  /** A copy, to finish without touching this one. */
  clone(): QueueSeries {
    const copy = new QueueSeries(this.firstBucketMs, this.capacity);
    copy.startMs = this.startMs;
    copy.bucketMs = this.bucketMs;
    copy.area.set(this.area);
    copy.max.set(this.max);
    return copy;
  }

  /** Merges neighbouring buckets pairwise: half as many, twice as wide. */
  private double(): void {
    const half = this.capacity / 2;
    for (let i = 0; i < half; i++) {
      this.area[i] = this.area[2 * i] + this.area[2 * i + 1];
      const a = this.max[2 * i];
      const b = this.max[2 * i + 1];
      this.max[i] = a > b ? a : b;
    }
    this.area.fill(0, half);
    this.max.fill(0, half);
    this.bucketMs *= 2;
  }

  /** Doubles until `t` is inside the buckets (the end of a span: `t` on the last bucket's end fits). */
  private fit(t: number, spanEnd: boolean): void {
    for (;;) {
      const end = this.capacity * this.bucketMs;
      const offset = t - this.startMs;
      if (offset < end || (spanEnd && offset === end)) return;
      this.double();
    }
  }

  private bucketOf(t: number): number {
    const k = Math.floor((t - this.startMs) / this.bucketMs);
    return k < 0 ? 0 : k < this.capacity ? k : this.capacity - 1;
  }

  /** The queue holds `bytes` at `t` (just after a packet joined it). */
  level(t: number, bytes: number): void {
    this.fit(t, false);
    const k = this.bucketOf(t);
    if (bytes > this.max[k]) this.max[k] = bytes;
  }

  /**
   * The queue drains from `startBytes` at `from` at `bytesPerMs` until `to`
   * (the caller stops it at empty): a trapezoid per bucket it crosses, its
   * maximum at the bucket's first instant.
   */
  drain(from: number, to: number, startBytes: number, bytesPerMs: number): void {
    if (to <= from) return;
    this.fit(to, true);
    let t = from;
    let k = this.bucketOf(from);
    while (t < to && k < this.capacity) {
      const bucketEnd = this.startMs + (k + 1) * this.bucketMs;
      const end = bucketEnd < to ? bucketEnd : to;
      if (end > t) {
        const atStart = startBytes - (t - from) * bytesPerMs;
        const atEnd = startBytes - (end - from) * bytesPerMs;
        this.area[k] += ((atStart + atEnd) / 2) * (end - t);
        if (atStart > this.max[k]) this.max[k] = atStart;
        t = end;
      }
      k++;
    }
  }
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
  /** the queue over time, bucketed (QueueSeries); `queueSeries()` reads it */
  readonly series: QueueSeries;
  /** bytes the line sends per ms */
  private readonly bytesPerMs: number;
  /** when the transmitter has sent everything accepted so far (ms) */
  private busyUntil = Number.NEGATIVE_INFINITY;
  /** controlPriority: when the control class has sent everything it accepted (ms) */
  private controlBusyUntil = Number.NEGATIVE_INFINITY;
  /** controlPriority: the serialization of the last data packet accepted (ms): where the packet on the line ends */
  private lastDataMs = 0;

  constructor(
    readonly params: LinkParams,
    series: { firstBucketMs?: number; buckets?: number } = {},
  ) {
    this.bytesPerMs = params.rateBitsPerSecond / 8 / 1000;
    this.series = new QueueSeries(series.firstBucketMs, series.buckets);
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
      this.series.startMs = now;
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
    this.series.level(now, queued + bytes);
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
      this.series.drain(from, until, (empty - from) * this.bytesPerMs, this.bytesPerMs);
    }
    c.queueAreaAt = now;
  }

  /** The queue integrated over time from the first packet to `now` (bytes x ms), without integrating. */
  queueAreaUntil(now: number): number {
    const c = this.counters;
    const from = c.queueAreaAt;
    const empty = this.busyUntil;
    if (c.firstOfferAt < 0 || now <= from || empty <= from) return c.queueArea;
    const until = empty < now ? empty : now;
    return c.queueArea + ((empty - from + (empty - until)) / 2) * (until - from) * this.bytesPerMs;
  }

  /**
   * The queue over the run so far, bucketed (QueueSeriesRecord): from the
   * first packet to the last departure (what is queued now drains by then),
   * each bucket's time-weighted mean and maximum, whole bytes. Allocates: a
   * report's, not the data path's.
   */
  queueSeries(): QueueSeriesRecord {
    const c = this.counters;
    const series = this.series.clone();
    if (c.firstOfferAt < 0) {
      return { bucketMs: series.bucketMs, spanMs: 0, meanBytes: [], maxBytes: [] };
    }
    const from = c.queueAreaAt;
    if (this.busyUntil > from) {
      series.drain(
        from,
        this.busyUntil,
        (this.busyUntil - from) * this.bytesPerMs,
        this.bytesPerMs,
      );
    }
    const spanMs = Math.max(0, c.lastDepartAt - c.firstOfferAt);
    const w = series.bucketMs;
    const n = Math.min(series.capacity, Math.ceil(spanMs / w));
    const meanBytes: number[] = [];
    const maxBytes: number[] = [];
    for (let k = 0; k < n; k++) {
      // The last bucket may end early, at the last departure.
      const length = Math.min(w, spanMs - k * w);
      meanBytes.push(length > 0 ? Math.round(series.area[k] / length) : 0);
      maxBytes.push(Math.round(series.max[k]));
    }
    return { bucketMs: w, spanMs, meanBytes, maxBytes };
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

/**
 * A port's parameters and counters as a record (utilization is the reader's:
 * it knows the run's duration). With `series`, the queue over time (a final
 * record's: a few KB a port); with `now`, the queue then and its area so far
 * (the live page's, which takes the mean between its polls from them).
 */
export function portRecord(
  port: LinkPort,
  options: { series?: boolean; now?: number } = {},
): LinkPortRecord {
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
    ...(options.series === true ? { queueSeries: port.queueSeries() } : {}),
    ...(options.now === undefined
      ? {}
      : {
          queueBytes: Math.round(port.queuedBytes(options.now)),
          queueAreaByteMs: port.queueAreaUntil(options.now),
        }),
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
