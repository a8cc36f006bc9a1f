/**
 * The aggregator pool's occupancy over time, sampled at a fixed period in
 * virtual time: the fraction of the switch's aggregators held (not empty).
 * The series stays short whatever the run's length: past MAX_POINTS, pairs
 * of neighbouring points merge (their mean) and the period doubles.
 */

export interface OccupancySeries {
  /** the period of the points (ms) and the period the samples were taken at */
  periodMs: number;
  samplePeriodMs: number;
  /** [t in s from the first sample, mean fraction held over the period] */
  points: Array<[number, number]>;
  /** the mean and peak over every sample */
  meanFraction: number;
  peakFraction: number;
}

const MAX_POINTS = 256;

export class OccupancySampler {
  private readonly points: number[] = [];
  /** samples merged into the point being filled, and their sum */
  private pending = 0;
  private pendingSum = 0;
  /** samples per point */
  private perPoint = 1;
  private samples = 0;
  private sum = 0;
  private peak = 0;

  constructor(readonly samplePeriodMs: number) {}

  /** One sample: `held` of `count` aggregators. */
  sample(held: number, count: number): void {
    const fraction = count > 0 ? held / count : 0;
    this.samples++;
    this.sum += fraction;
    if (fraction > this.peak) this.peak = fraction;
    this.pending++;
    this.pendingSum += fraction;
    if (this.pending < this.perPoint) return;
    this.points.push(this.pendingSum / this.pending);
    this.pending = 0;
    this.pendingSum = 0;
    if (this.points.length >= MAX_POINTS) {
      for (let i = 0; i < this.points.length / 2; i++) {
        this.points[i] = (this.points[2 * i] + this.points[2 * i + 1]) / 2;
      }
      this.points.length /= 2;
      this.perPoint *= 2;
    }
  }

  series(): OccupancySeries {
    const periodMs = this.samplePeriodMs * this.perPoint;
    const points = this.points.map((f, i): [number, number] => [(i * periodMs) / 1000, f]);
    if (this.pending > 0) {
      points.push([(this.points.length * periodMs) / 1000, this.pendingSum / this.pending]);
    }
    return {
      periodMs,
      samplePeriodMs: this.samplePeriodMs,
      points,
      meanFraction: this.samples > 0 ? this.sum / this.samples : 0,
      peakFraction: this.peak,
    };
  }
}
