import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DecayingPeak, RttEstimator } from "../worker/rtt.js";

/** Waits from the measured path, in virtual time (ms): nothing here reads a clock. */
describe("waits from the measured path (worker/rtt.ts)", () => {
  it("a decaying peak counts a large sample at once and halves every half-life after it", () => {
    const peak = new DecayingPeak(10_000);
    assert.equal(peak.valueAt(0), 0);
    peak.observe(40, 1000);
    assert.equal(peak.valueAt(1000), 40);
    assert.equal(peak.valueAt(11_000), 20);
    peak.observe(30, 11_000);
    assert.equal(peak.valueAt(11_000), 30, "a sample above the decayed peak replaces it");
    peak.observe(5, 11_000);
    assert.equal(peak.valueAt(11_000), 30, "a smaller one does not");
  });

  it("without floors set, the RTO floor is the largest RTT lately + G, and the reordering wait is G", () => {
    const report = { srttMs: 0, rtoMs: 200 };
    const rtt = new RttEstimator({ rtoMaxMs: 2000 }, report);
    for (let t = 0; t < 100; t++) rtt.sample(2, t);
    // Steady 2 ms: RTTVAR tends to 0, so the RTO is SRTT + G, and G is 1 ms.
    assert.ok(Math.abs(report.rtoMs - 3) < 0.01, `rto ${report.rtoMs}`);
    assert.equal(rtt.reorderWaitMs(), 1, "max(G, minRTT / 4)");
    // A peer stalled 30 ms once: the floor covers such a stall from now on...
    rtt.sample(32, 100);
    for (let t = 101; t < 200; t++) rtt.sample(2, t);
    // (the peak has decayed 0.1 s of its 10 s half-life: 32 x 2^-0.01)
    assert.ok(report.rtoMs >= 32 * 0.99 + 1, `rto ${report.rtoMs} after a 32 ms round trip`);
    // ... and forgets it once the host has been quiet for minutes.
    for (let t = 200; t <= 120_000; t += 100) rtt.sample(2, t);
    assert.ok(report.rtoMs < 3.1, `rto ${report.rtoMs} two minutes later`);
  });

  it("a process's late timers raise G, and so the RTO and the reordering wait; an option fixes G", () => {
    const measured = { srttMs: 0, rtoMs: 200 };
    const rtt = new RttEstimator({ rtoMaxMs: 2000 }, measured);
    for (let t = 0; t < 50; t++) rtt.sample(2, t);
    rtt.observeTimerLateness(12, 50);
    assert.equal(rtt.clockGranularityMs, 12);
    assert.equal(rtt.reorderWaitMs(), 12);
    assert.ok(measured.rtoMs >= 2 + 12, `rto ${measured.rtoMs}`);
    rtt.observeTimerLateness(0, 50 + 60_000);
    assert.ok(
      rtt.clockGranularityMs < 1.1 && rtt.clockGranularityMs >= 1,
      "back near 1 ms, never below",
    );

    const fixed = new RttEstimator(
      { rtoMaxMs: 2000, rtoFloorMs: 5, gapFloorMs: 0.5, clockGranularityMs: 0.1 },
      { srttMs: 0, rtoMs: 200 },
    );
    fixed.sample(2, 0);
    fixed.observeTimerLateness(12, 1);
    assert.equal(fixed.clockGranularityMs, 0.1, "the option wins over the measurement");
    assert.equal(fixed.reorderWaitMs(), 0.5);
  });
});
