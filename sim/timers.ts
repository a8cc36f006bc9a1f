import type { TimedCore } from "../runtime/timer.js";
import type { Engine, SimEvent } from "./engine.js";

/**
 * A core's timer in virtual time: one engine event at its nextTimeout()
 * (README.md, "Timers"). rearm() after anything the core did (a delivery, an
 * operation begun, a control action); a deadline that moved earlier replaces
 * the pending event, one that moved later leaves it to fire, find nothing
 * due, and arm again. The event runs handleTimeout() exactly at the
 * deadline (the first ns at or after it), after the deliveries due
 * at the same ns, as a process reads its socket before it checks its
 * timeouts (runtime/timer.ts): a result that arrives exactly at its RTO is
 * not taken for lost.
 */
export class SimTimer {
  private event: SimEvent | null = null;
  /** the pending event's time (ns), Infinity with none */
  private armedAt = Number.POSITIVE_INFINITY;
  /** events that ran handleTimeout (an event that finds nothing due, the deadline having moved later, does not) */
  fired = 0;
  /** the pending event went behind the other events of its ns once */
  private deferred = false;

  constructor(
    private readonly engine: Engine,
    private readonly core: TimedCore,
    /** called after each handleTimeout (e.g. to see whether the worker is done) */
    private readonly afterTimeout: () => void = () => {},
  ) {}

  /** The core's deadline may have moved: arm (or move earlier) its event. */
  rearm(): void {
    const next = this.core.nextTimeout();
    const at =
      next === Number.POSITIVE_INFINITY ? next : Math.max(this.engine.now, nsAtOrAfter(next));
    if (at > this.armedAt && this.armedAt === this.engine.now && this.event !== null) {
      // The pending event is due now and would find nothing (on a steady
      // path the RTO is the RTT, and each result arrives at its deadline):
      // it goes, rather than running for nothing.
      this.engine.cancel(this.event);
      this.event = null;
      this.armedAt = Number.POSITIVE_INFINITY;
      this.deferred = false;
    }
    if (at !== Number.POSITIVE_INFINITY) this.armAt(at);
  }

  private armAt(at: number): void {
    if (at >= this.armedAt) return;
    if (this.event !== null) this.engine.cancel(this.event);
    this.armedAt = at;
    this.event = this.engine.at(at, this.fire);
  }

  private readonly fire = (): void => {
    const now = this.engine.now;
    const due = this.core.nextTimeout() <= now / 1e6;
    if (due && !this.deferred && this.engine.nextAt === now) {
      // Other events at this ns (deliveries) go first: this one goes behind them.
      this.deferred = true;
      this.event = this.engine.at(now, this.fire);
      return;
    }
    this.deferred = false;
    this.event = null;
    this.armedAt = Number.POSITIVE_INFINITY;
    if (due) {
      this.fired++;
      this.core.handleTimeout(now / 1e6);
      this.afterTimeout();
    }
    const next = this.core.nextTimeout();
    if (next === Number.POSITIVE_INFINITY) return;
    // A deadline still due (it should not be) is looked at 1 ns later, never in a loop.
    this.armAt(Math.max(now + 1, nsAtOrAfter(next)));
  };
}

/** The first ns whose time in ms (ns / 1e6, as the cores are given it) is at or after `ms`. */
function nsAtOrAfter(ms: number): number {
  const ns = Math.round(ms * 1e6);
  return ns / 1e6 < ms ? ns + 1 : ns;
}
