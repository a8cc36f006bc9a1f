/** Where the estimate is reported: the worker's stats record. */
export interface RttReport {
  srttMs: number;
  rtoMs: number;
}

export interface RtoBounds {
  rtoFloorMs: number;
  rtoMaxMs: number;
  /** least wait before a gap counts as a loss (default 2 ms) */
  gapFloorMs?: number;
}

/**
 * RFC 6298's round-trip estimator, for both worker cores: it writes the
 * smoothed RTT and the RTO into the worker's stats. The floor absorbs
 * scheduling stalls on a busy machine.
 */
export class RttEstimator {
  private rttVarMs = 0;
  private sampled = false;

  constructor(
    private readonly bounds: RtoBounds,
    private readonly report: RttReport,
  ) {}

  get hasSample(): boolean {
    return this.sampled;
  }

  sample(sampleMs: number): void {
    const r = this.report;
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
    r.rtoMs = Math.min(
      this.bounds.rtoMaxMs,
      Math.max(this.bounds.rtoFloorMs, r.srttMs + 4 * this.rttVarMs),
    );
  }

  /** How long an older packet may wait once a later one is answered before it counts as lost. */
  gapWaitMs(): number {
    return Math.max(this.bounds.gapFloorMs ?? 2, this.report.srttMs * 1.5 + this.rttVarMs);
  }
}
