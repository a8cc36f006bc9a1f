/**
 * The aggregator pool's occupancy over time, sampled in virtual time: the
 * fraction of the switch's aggregators held (not empty). The series stays
 * short whatever the run's length, and so does the sampling's cost: past
 * MAX_POINTS, pairs of neighbouring points merge (their mean) and the
 * sampling period doubles, so each point stays one period wide.
 */

export interface OccupancySeries {
  /** the width of each point (ms): the sampling period at the end */
  periodMs: number;
  /** [t in s from the first sample, mean fraction held over the point] */
  points: Array<[number, number]>;
  /** the mean over the points (a time-weighted mean of the samples) and the largest sample */
  meanFraction: number;
  peakFraction: number;
}

const MAX_POINTS = 256;

export class OccupancySampler {
  private readonly points: number[] = [];
  private peak = 0;

  constructor(private period: number) {}

  /** The sampling period now (ms): the next sample is due this long after the last. */
  get periodMs(): number {
    return this.period;
  }

  /** One sample: `held` of `count` aggregators. */
  sample(held: number, count: number): void {
    const fraction = count > 0 ? held / count : 0;
    if (fraction > this.peak) this.peak = fraction;
    this.points.push(fraction);
    if (this.points.length >= MAX_POINTS) {
      for (let i = 0; i < this.points.length / 2; i++) {
        this.points[i] = (this.points[2 * i] + this.points[2 * i + 1]) / 2;
      }
      this.points.length /= 2;
      this.period *= 2;
    }
  }

  series(): OccupancySeries {
    const points = this.points.map((f, i): [number, number] => [(i * this.period) / 1000, f]);
    return {
      periodMs: this.period,
      points,
      meanFraction:
        this.points.length > 0 ? this.points.reduce((a, b) => a + b, 0) / this.points.length : 0,
      peakFraction: this.peak,
    };
  }
}
