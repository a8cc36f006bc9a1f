/** Where the estimate is reported: the worker's stats record. */
export interface RttReport {
  srttMs: number;
  rtoMs: number;
}

export interface RtoBounds {
  /**
   * the least RTO (ms); unset: the path's own, the largest RTT sampled
   * lately (DecayingPeak: a peer's scheduling stall on a busy host shows
   * there) + G. The simulator sets the link model's unqueued round trip + G.
   */
  rtoFloorMs?: number;
  rtoMaxMs: number;
  /**
   * the least reordering wait before a PSN that a later-sent one overtook
   * counts as lost (ms); unset: G
   */
  gapFloorMs?: number;
  /**
   * RFC 6298's clock granularity G: RTO = SRTT + max(G, 4 RTTVAR), so a
   * steady path (RTTVAR near 0) never times out at exactly SRTT (ms). Unset:
   * measured, how late the process's timers fired lately (DecayingPeak), at
   * least 1 ms; the simulator sets the link's own scale.
   */
  clockGranularityMs?: number;
}

/** Least G of processes (ms): Node's timers fire on whole milliseconds. */
export const DEFAULT_CLOCK_GRANULARITY_MS = 1;

/**
 * The largest value seen lately: a peak that halves every `halfLifeMs`
 * after it, so one large sample counts at once and is forgotten once the
 * host is quiet again. Sans-IO: each sample comes with the time it was seen.
 */
export class DecayingPeak {
  private peak = 0;
  private peakAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly halfLifeMs = 10_000) {}

  observe(value: number, now: number): void {
    if (!(value > this.valueAt(now))) return;
    this.peak = value;
    this.peakAt = now;
  }

  /** The decayed peak at `now` (0 before any sample). */
  valueAt(now: number): number {
    return this.peak * 0.5 ** (Math.max(0, now - this.peakAt) / this.halfLifeMs);
  }
}

/**
 * RFC 6298's round-trip estimator, for both worker cores: it writes the
 * smoothed RTT and the RTO into the worker's stats.
 *
 * RTO = min(rtoMax, max(rtoFloor, SRTT + max(G, 4 RTTVAR))); the reordering
 * wait (RACK's reo_wnd, RFC 8985) = max(gapFloor, minRTT / 4). Unset, the
 * floors come from the path: rtoFloor = the largest RTT lately + G,
 * gapFloor = G.
 */
export class RttEstimator {
  private rttVarMs = 0;
  private sampled = false;
  /** the least RTT sampled: the path's round trip without queueing */
  minRttMs = Number.POSITIVE_INFINITY;
  /** G (ms): the option, or what the process measured (observeTimerLateness) */
  private clockMs: number;
  /** how late the process's timers fired lately (ms): G, when not an option */
  private readonly timerLateness = new DecayingPeak();
  /** the largest RTT sampled lately (ms): with G, the RTO floor when not an option */
  private readonly rttPeak = new DecayingPeak();
  /** the time of the latest sample or lateness (ms): where the peaks are read */
  private lastNow = 0;

  constructor(
    private readonly bounds: RtoBounds,
    private readonly report: RttReport,
  ) {
    this.clockMs = bounds.clockGranularityMs ?? DEFAULT_CLOCK_GRANULARITY_MS;
  }

  /** Whether G is measured by the process (no clockGranularityMs option). */
  get measuresClock(): boolean {
    return this.bounds.clockGranularityMs === undefined;
  }

  get clockGranularityMs(): number {
    return this.clockMs;
  }

  /**
   * A timer of the process due at `now - lateMs` ran at `now`: G follows
   * (ignored when the clockGranularityMs option sets it).
   */
  observeTimerLateness(lateMs: number, now: number): void {
    if (!this.measuresClock) return;
    this.timerLateness.observe(lateMs, now);
    this.clockMs = Math.max(DEFAULT_CLOCK_GRANULARITY_MS, this.timerLateness.valueAt(now));
    this.lastNow = now;
    this.restart();
  }

  get hasSample(): boolean {
    return this.sampled;
  }

  get rttVariationMs(): number {
    return this.rttVarMs;
  }

  /** An RTT sample (ms) taken at `now` (Karn: of a packet sent once). */
  sample(sampleMs: number, now: number): void {
    const r = this.report;
    if (sampleMs < this.minRttMs) this.minRttMs = sampleMs;
    this.rttPeak.observe(sampleMs, now);
    this.lastNow = now;
    if (!this.sampled) {
      r.srttMs = sampleMs;
      this.rttVarMs = sampleMs / 2;
      this.sampled = true;
    } else {
      this.rttVarMs = 0.75 * this.rttVarMs + 0.25 * Math.abs(r.srttMs - sampleMs);
      r.srttMs = 0.875 * r.srttMs + 0.125 * sampleMs;
    }
    this.restart();
  }

  /** The RTO back at the estimate: a backoff is over (no-op before the first sample). */
  restart(): void {
    if (!this.sampled) return;
    const r = this.report;
    const g = this.clockMs;
    const floor = this.bounds.rtoFloorMs ?? this.rttPeak.valueAt(this.lastNow) + g;
    r.rtoMs = Math.min(
      this.bounds.rtoMaxMs,
      Math.max(floor, r.srttMs + Math.max(g, 4 * this.rttVarMs)),
    );
  }

  /**
   * RACK's reordering window (RFC 8985, reo_wnd = min_RTT / 4): how much
   * later than a PSN sent after it an older PSN may still be answered
   * before it counts as lost; at least gapFloorMs.
   */
  reorderWaitMs(): number {
    const floor = this.bounds.gapFloorMs ?? this.clockMs;
    return Math.max(floor, this.sampled ? this.minRttMs / 4 : 0);
  }
}

/**
 * RACK (RFC 8985) of one sequence of packets, for both worker cores
 * (WorkerCore's PSNs, each of CollectiveCore's outgoing streams): the send
 * time, sequence number and round trip of the latest-sent packet that was
 * answered (a result, or every acknowledgement). A packet still unanswered
 * that was sent before it (same time: a lower number) is lost once it has
 * waited that round trip plus the reordering wait (lossWaitMs), whatever the
 * packets around it do: selective repeat, each packet on its own deadline.
 * The core scans its window for such packets (its loss detection) and keeps
 * the earliest deadline not yet due in `deadline`, its timer `gapResend`.
 */
export class Rack {
  sentAt = Number.NEGATIVE_INFINITY;
  seq = -1;
  rttMs = 0;
  /** timer `gapResend`: the earliest deadline the last scan found (Infinity: none) */
  deadline = Number.POSITIVE_INFINITY;

  /** Forgets everything: a new sequence starts. */
  reset(): void {
    this.sentAt = Number.NEGATIVE_INFINITY;
    this.seq = -1;
    this.rttMs = 0;
    this.deadline = Number.POSITIVE_INFINITY;
  }

  /**
   * Packet `seq`, sent `sends` times, the latest at `sentAt` (by a timeout's
   * resend if `timedOut`), is answered at `now`. Karn: only a packet sent once
   * gives an RTT sample; an answer to a resent one still ends the RTO backoff
   * (the path delivers again; as Linux resets it on an ACK of new data).
   * An answer sooner than the least RTT after the latest send answers an
   * earlier one: that send was spurious (counted if a timeout's), and its
   * time says nothing (RFC 8985, 6.2 step 2); without any sample yet it is
   * taken as the latest send's answer.
   */
  answered(
    rtt: RttEstimator,
    stats: { spuriousTimeouts: number },
    seq: number,
    sends: number,
    timedOut: boolean,
    sentAt: number,
    now: number,
  ): void {
    const sample = now - sentAt;
    if (sends === 1) rtt.sample(sample, now);
    else rtt.restart();
    const answersLatest = sends === 1 || !rtt.hasSample || sample >= rtt.minRttMs;
    if (!answersLatest && timedOut) stats.spuriousTimeouts++;
    if (answersLatest && (sentAt > this.sentAt || (sentAt === this.sentAt && seq > this.seq))) {
      this.sentAt = sentAt;
      this.seq = seq;
      this.rttMs = sample;
    }
  }

  /** How long after its send a packet sent before the latest answered one counts as lost. */
  lossWaitMs(rtt: RttEstimator): number {
    return this.rttMs + rtt.reorderWaitMs();
  }
}
