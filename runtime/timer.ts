import { performance } from "node:perf_hooks";

/**
 * A sans-IO core's timers, as quinn-proto's poll_timeout / handle_timeout:
 * the core says when it next needs to run, and runs what is due then.
 */
export interface TimedCore {
  /** When the core next needs handleTimeout() (ms on the clock of `now`; Infinity: nothing pending). */
  nextTimeout(): number;
  /** Runs every timer of the core due at `now` (ms); one not yet due does nothing. */
  handleTimeout(now: number): void;
}

/**
 * A process's one timer for its core (README.md, "Timers"). The adapter
 * calls poke() after every event that may move the core's next deadline
 * (datagrams received, an operation begun): the core is looked at once the
 * event loop has read what waits in the socket, by setImmediate, and one
 * setTimeout is armed for its nextTimeout(). The timer's callback also only
 * pokes: timeouts are checked after the poll phase, never in the timers
 * phase, so after this process was descheduled for a while the results
 * waiting in the socket are read before anything is taken for lost.
 *
 * A deadline that moves later leaves the armed timer as it is (it fires,
 * finds nothing due, and arms again); one that moves earlier replaces it.
 */
export class CoreTimer {
  private timer: NodeJS.Timeout | null = null;
  /** the deadline the pending setTimeout is for (ms), Infinity with none */
  private armedFor = Number.POSITIVE_INFINITY;
  private checkPending = false;
  private stopped = false;
  /** setTimeouts that fired, and checks that found a deadline due */
  readonly counts = { fired: 0, handled: 0 };

  constructor(
    private readonly core: TimedCore,
    /** called after each handleTimeout (e.g. to see whether an operation ended) */
    private readonly afterTimeout: () => void = () => {},
    /** how late each setTimeout fired after its deadline (ms), and when: the process's clock granularity */
    private readonly onLate: (lateMs: number, now: number) => void = () => {},
  ) {}

  /** Something happened: look at the core's deadline once this turn's datagrams are read. */
  poke(): void {
    if (this.checkPending || this.stopped) return;
    this.checkPending = true;
    setImmediate(this.check);
  }

  /** No more timeouts (the socket closes). */
  stop(): void {
    this.stopped = true;
    this.clear();
  }

  private readonly check = (): void => {
    this.checkPending = false;
    if (this.stopped) return;
    let now = performance.now();
    if (this.core.nextTimeout() <= now) {
      this.counts.handled++;
      this.core.handleTimeout(now);
      this.afterTimeout();
      now = performance.now();
    }
    this.arm(this.core.nextTimeout(), now);
  };

  private readonly fire = (): void => {
    const now = performance.now();
    this.onLate(Math.max(0, now - this.armedFor), now);
    this.timer = null;
    this.armedFor = Number.POSITIVE_INFINITY;
    this.counts.fired++;
    this.poke();
  };

  private arm(at: number, now: number): void {
    if (this.stopped) return;
    if (at === Number.POSITIVE_INFINITY) {
      this.clear();
      return;
    }
    if (at >= this.armedFor) return;
    this.clear();
    this.armedFor = at;
    // Node's timers count whole ms; a deadline already past fires on the next turn.
    this.timer = setTimeout(this.fire, Math.max(0, Math.ceil(at - now)));
  }

  private clear(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.armedFor = Number.POSITIVE_INFINITY;
  }
}
