/**
 * A simulated worker's stalls, measured in virtual time from outside its
 * core: a packet it sends while answering a packet or starting an
 * all-reduce is progress; one it sends on its own (a timer fired: a timeout
 * or a gap resend, a ring hello) ends a stall, the time since it last sent
 * or received anything. Their sum is the time it sat idle waiting on a
 * timeout (experiment/bounds.ts: "loss").
 */
export class StallClock {
  /** virtual time spent idle until a timer resent something (ns) */
  stalledNs = 0;
  private lastNs = 0;
  private inEvent = false;

  /** A receive or a begin starts at `nowNs`: what it sends until end() is progress, no stall. */
  enter(nowNs: number): void {
    this.lastNs = nowNs;
    this.inEvent = true;
  }

  end(): void {
    this.inEvent = false;
  }

  /** The worker sends a packet at `nowNs`. */
  sent(nowNs: number): void {
    if (!this.inEvent && nowNs > this.lastNs) this.stalledNs += nowNs - this.lastNs;
    this.lastNs = nowNs;
  }
}
