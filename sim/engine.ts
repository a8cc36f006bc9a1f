/**
 * The simulator's discrete-event engine: a binary heap of events ordered by
 * virtual time in integer nanoseconds, ties broken by the order they were
 * scheduled in, so a run is deterministic. Time never goes backwards: an
 * event scheduled in the past runs now. A cancelled event is skipped when it
 * comes up.
 */
export interface SimEvent {
  at: number;
  seq: number;
  cancelled: boolean;
  run: (arg: unknown) => void;
  arg: unknown;
  /** a post()ed event: reused once it has run */
  pooled: boolean;
}

export class Engine {
  /** virtual time now, ns */
  now = 0;
  /** events run so far (cancelled ones are not counted) */
  executed = 0;
  private seq = 0;
  private readonly heap: SimEvent[] = [];
  private readonly free: SimEvent[] = [];

  /** Runs `run` at virtual time `at` (ns; at least now). Returns the event, for cancel(). */
  at(at: number, run: () => void): SimEvent {
    const event: SimEvent = {
      at: Math.max(this.now, Math.round(at)),
      seq: this.seq++,
      cancelled: false,
      run,
      arg: undefined,
      pooled: false,
    };
    this.push(event);
    return event;
  }

  /**
   * Runs `run(arg)` at `at`, like at(), for the hot path (a packet's
   * delivery): `run` is a function made once and the event record is
   * reused, so scheduling allocates nothing. It cannot be cancelled.
   */
  post<T>(at: number, run: (arg: T) => void, arg: T): void {
    const event = this.free.pop() ?? {
      at: 0,
      seq: 0,
      cancelled: false,
      run: run as (arg: unknown) => void,
      arg: undefined,
      pooled: true,
    };
    event.at = Math.max(this.now, Math.round(at));
    event.seq = this.seq++;
    event.run = run as (arg: unknown) => void;
    event.arg = arg;
    this.push(event);
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

  /** The time of the next event to run (ns; Infinity with none; a cancelled one counts). */
  get nextAt(): number {
    return this.heap.length > 0 ? this.heap[0].at : Number.POSITIVE_INFINITY;
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
      next.run(next.arg);
      if (next.pooled) {
        next.arg = undefined;
        this.free.push(next);
      }
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
