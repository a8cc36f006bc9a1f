/**
 * The simulator's discrete-event engine: a binary heap of events ordered by
 * virtual time in integer nanoseconds, ties broken by the order they were
 * scheduled in, so a run is deterministic. Time never goes backwards: an
 * event scheduled in the past runs now. A cancelled event is skipped when it
 * comes up.
 */
export interface SimEvent {
  readonly at: number;
  readonly seq: number;
  cancelled: boolean;
  run: () => void;
}

export class Engine {
  /** virtual time now, ns */
  now = 0;
  /** events run so far (cancelled ones are not counted) */
  executed = 0;
  private seq = 0;
  private readonly heap: SimEvent[] = [];

  /** Runs `run` at virtual time `at` (ns; at least now). Returns the event, for cancel(). */
  at(at: number, run: () => void): SimEvent {
    const event: SimEvent = {
      at: Math.max(this.now, Math.round(at)),
      seq: this.seq++,
      cancelled: false,
      run,
    };
    this.push(event);
    return event;
  }

  /** Runs `run` `delay` ns from now. */
  after(delay: number, run: () => void): SimEvent {
    return this.at(this.now + delay, run);
  }

  cancel(event: SimEvent): void {
    event.cancelled = true;
  }

  get pending(): number {
    return this.heap.length;
  }

  /**
   * Runs events in order until none is left, `until` (ns) is reached, or
   * `stop()` says so (checked after each event). Returns whether events remain.
   */
  run(until = Number.POSITIVE_INFINITY, stop: () => boolean = () => false): boolean {
    const heap = this.heap;
    while (heap.length > 0) {
      const next = heap[0];
      if (next.at > until) {
        this.now = until;
        return true;
      }
      this.pop();
      if (next.cancelled) continue;
      this.now = next.at;
      this.executed++;
      next.run();
      if (stop()) return heap.length > 0;
    }
    return false;
  }

  private before(a: SimEvent, b: SimEvent): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private push(event: SimEvent): void {
    const heap = this.heap;
    let i = heap.length;
    heap.push(event);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(event, heap[parent])) break;
      heap[i] = heap[parent];
      i = parent;
    }
    heap[i] = event;
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop();
    if (last === undefined || heap.length === 0) return;
    let i = 0;
    const n = heap.length;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && this.before(heap[right], heap[left]) ? right : left;
      if (!this.before(heap[child], last)) break;
      heap[i] = heap[child];
      i = child;
    }
    heap[i] = last;
  }
}
