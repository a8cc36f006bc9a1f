/** Where the estimate is reported: the worker's stats record. */
export interface RttReport {
  srttMs: number;
  rtoMs: number;
}

export interface RtoBounds {
  rtoFloorMs: number;
  rtoMaxMs: number;
  /**
   * the least reordering wait before a PSN that a later-sent one overtook
   * counts as lost (ms; default 2, a busy host's scheduling; the simulator
   * sets one packet's serialization time)
   */
  gapFloorMs?: number;
  /**
   * RFC 6298's clock granularity G: RTO = SRTT + max(G, 4 RTTVAR), so a
   * steady path (RTTVAR near 0) never times out at exactly SRTT (ms; default
   * 1, Node's timer granularity; the simulator sets the link's own scale)
   */
  clockGranularityMs?: number;
}

/** Default G of processes (ms): Node's timers fire on whole milliseconds. */
export const DEFAULT_CLOCK_GRANULARITY_MS = 1;
/** Default least reordering wait of processes (ms): scheduling on a busy host. */
export const DEFAULT_GAP_FLOOR_MS = 2;

/**
 * RFC 6298's round-trip estimator, for both worker cores: it writes the
 * smoothed RTT and the RTO into the worker's stats. The floor absorbs
 * scheduling stalls on a busy machine.
 *
 * RTO = min(rtoMax, max(rtoFloor, SRTT + max(G, 4 RTTVAR))); the reordering
 * wait (RACK's reo_wnd, RFC 8985) = max(gapFloor, minRTT / 4).
 */
export class RttEstimator {
  private rttVarMs = 0;
  private sampled = false;
  /** the least RTT sampled: the path's round trip without queueing */
  minRttMs = Number.POSITIVE_INFINITY;

  constructor(
    private readonly bounds: RtoBounds,
    private readonly report: RttReport,
  ) {}

  get hasSample(): boolean {
    return this.sampled;
  }

  get rttVariationMs(): number {
    return this.rttVarMs;
  }

  sample(sampleMs: number): void {
    const r = this.report;
    if (sampleMs < this.minRttMs) this.minRttMs = sampleMs;
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
    const g = this.bounds.clockGranularityMs ?? DEFAULT_CLOCK_GRANULARITY_MS;
    r.rtoMs = Math.min(
      this.bounds.rtoMaxMs,
      Math.max(this.bounds.rtoFloorMs, r.srttMs + Math.max(g, 4 * this.rttVarMs)),
    );
  }

  /**
   * RACK's reordering window (RFC 8985, reo_wnd = min_RTT / 4): how much
   * later than a PSN sent after it an older PSN may still be answered
   * before it counts as lost; at least gapFloorMs.
   */
  reorderWaitMs(): number {
    const floor = this.bounds.gapFloorMs ?? DEFAULT_GAP_FLOOR_MS;
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
    if (sends === 1) rtt.sample(sample);
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
