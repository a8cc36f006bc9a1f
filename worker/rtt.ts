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

  /** How long an older packet may wait once a later one is answered before it counts as lost. */
  gapWaitMs(): number {
    return Math.max(
      this.bounds.gapFloorMs ?? DEFAULT_GAP_FLOOR_MS,
      this.report.srttMs * 1.5 + this.rttVarMs,
    );
  }
}
