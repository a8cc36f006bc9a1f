import type { CongestionControl } from "../proto/config.js";

/** DCTCP's gain g: the weight of the latest window's marked fraction in alpha. */
export const DCTCP_GAIN = 1 / 16;

/**
 * A worker's congestion window in packets, sans-IO, driven by the ECN mark
 * each result or ack carries (an aggregator ORs the marks of everything
 * aggregated into it, so a marked result means some path of that PSN was
 * congested):
 *
 * - `none`: always the region's window (no reaction).
 * - `aimd`, as ATP does it: a marked result halves the window, at most once
 *   per window of results; an unmarked one grows it by 1 / window, one
 *   packet per window of results.
 * - `dctcp`: once per window of results, alpha = (1 - g) alpha + g F, F the
 *   fraction of that window's results that were marked, and a window with
 *   marks scales the congestion window by (1 - alpha / 2); growth as aimd.
 *
 * The window stays between 1 and `max`, what the region allows.
 */
export class CongestionWindow {
  /** the window, in packets (fractional while it grows) */
  cwnd: number;
  /** DCTCP: smoothed fraction of marked results */
  alpha = 1;
  private max: number;
  /** aimd: no second halving for results of PSNs below this; dctcp: end of the observation window */
  private boundaryPsn = 0;
  private results = 0;
  private marked = 0;

  constructor(
    readonly kind: CongestionControl,
    max: number,
  ) {
    this.max = max;
    this.cwnd = max;
  }

  /** Packets that may be in flight now. */
  get packets(): number {
    return this.kind === "none" ? this.max : Math.max(1, Math.min(this.max, Math.floor(this.cwnd)));
  }

  /** The region's window changed (a region change): the congestion window stays within it. */
  setMax(max: number): void {
    this.max = max;
    if (this.cwnd > max) this.cwnd = max;
  }

  /** A result for `psn` arrived, `marked` or not; `nextPsn` is the next PSN never sent. */
  onResult(marked: boolean, psn: number, nextPsn: number): void {
    if (this.kind === "none") return;
    if (this.kind === "aimd") {
      if (marked) {
        if (psn >= this.boundaryPsn) {
          this.cwnd = Math.max(1, this.cwnd / 2);
          this.boundaryPsn = nextPsn;
        }
      } else this.grow();
      return;
    }
    // dctcp
    this.results++;
    if (marked) this.marked++;
    else this.grow();
    if (psn >= this.boundaryPsn) {
      const fraction = this.marked / this.results;
      this.alpha = (1 - DCTCP_GAIN) * this.alpha + DCTCP_GAIN * fraction;
      if (this.marked > 0) this.cwnd = Math.max(1, this.cwnd * (1 - this.alpha / 2));
      this.results = 0;
      this.marked = 0;
      this.boundaryPsn = nextPsn;
    }
  }

  private grow(): void {
    this.cwnd = Math.min(this.max, this.cwnd + 1 / Math.max(1, this.cwnd));
  }
}
