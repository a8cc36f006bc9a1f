/**
 * A fixed ring of samples the data path fills without allocating (one store
 * per sample); a histogram drains it at scrape time.
 */
export class SampleRing {
  private readonly values: Float64Array;
  private written = 0;
  private read = 0;

  constructor(capacity = 4096) {
    this.values = new Float64Array(capacity);
  }

  push(value: number): void {
    this.values[this.written % this.values.length] = value;
    this.written++;
  }

  /** Calls `take` with each sample not drained yet (the newest `capacity` at most). */
  drain(take: (value: number) => void): void {
    const first = Math.max(this.read, this.written - this.values.length);
    for (let i = first; i < this.written; i++) take(this.values[i % this.values.length]);
    this.read = this.written;
  }
}
