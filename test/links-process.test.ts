import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ScenarioRunSchema } from "../proto/scenario.js";
import { runScenarioRun } from "../runner/run.js";
import { testSeed } from "./seed.js";

/**
 * Real processes on loopback with emulated links slow enough to dominate the
 * host: the run is link-bound and its numbers are the network's. Timing is
 * asserted loosely (the host is shared); the precise figures are the
 * benchmark's and the fidelity scenarios'.
 */
describe("emulated links with real processes", () => {
  // Slow enough that the links, not this host, bound the run even when the
  // host is busy with other work (at 20 Mbps a doubly loaded host was not).
  const rate = 10e6;
  const workers = 4;
  const run = (mode: "netreduce" | "ps", seed: number) =>
    runScenarioRun(
      ScenarioRunSchema.parse({
        name: mode,
        links: { rate, delay: "1ms" },
        jobs: [{ mode, workers, tensorBytes: "2MiB", window: 32 }],
      }),
      { seed, timeoutMs: 120_000 },
    );

  it("NetReduce on 10 Mbps links is exact, link-bound, at the goodput the link model predicts; PS takes about N times as long", async () => {
    const seed = testSeed("links real processes", 21);
    const netreduce = await run("netreduce", seed);
    assert.equal(netreduce.verified, true);
    assert.equal(netreduce.bound, "link", JSON.stringify(netreduce.links?.slice(0, 2)));
    const [job] = netreduce.jobs;
    // Payload share of each 1056-byte packet on the line: 1024 bytes.
    const predictedMBps = ((rate / 8) * (1024 / 1056)) / 1e6;
    assert.ok(
      Math.abs(job.goodputMBps - predictedMBps) / predictedMBps < 0.15,
      `goodput ${job.goodputMBps.toFixed(2)} MB/s, predicted ${predictedMBps.toFixed(2)}`,
    );
    for (const w of job.perWorker) {
      assert.ok(w.srttMs > 0 && w.rtoMs > 0, "smoothed RTT and RTO reported");
    }
    // The switch's ports over time: busy near the line rate while results flow.
    const series = netreduce.linkSeries ?? [];
    assert.ok(series.length > 0, "the switch reported its ports over time");
    assert.ok(
      series.some((p) => p.utilization > 0.5 && p.utilization < 1.2),
      JSON.stringify(series.slice(0, 6)),
    );
    const links = netreduce.links ?? [];
    assert.equal(links.length, 2 * workers, "every worker's link, both directions");
    assert.ok(
      links.every((l) => l.drops === 0),
      "a window of 32 fits the buffers",
    );

    const ps = await run("ps", seed);
    assert.equal(ps.verified, true);
    assert.equal(ps.bound, "link");
    assert.equal(ps.links?.[0].host, "ps", "the PS's link is the busiest");
    const ratio = ps.jobs[0].seconds / job.seconds;
    assert.ok(
      ratio > 0.6 * workers && ratio < 1.4 * workers,
      `PS / NetReduce time ${ratio.toFixed(2)}, expected about ${workers}`,
    );
  });
});

describe("timeouts on a loss-free link with real processes", () => {
  it("no worker times out, whatever its window: 2 packets (below the path's bandwidth-delay product), 16, or 128 (a queue of 100 ms), NetReduce and ring", async () => {
    const seed = testSeed("no spurious timeouts", 22);
    const result = await runScenarioRun(
      ScenarioRunSchema.parse({
        name: "windows",
        aggregators: 512,
        links: { rate: 10e6, delay: "1ms" },
        jobs: [
          { mode: "netreduce", workers: 2, tensorBytes: "256KiB", window: 2 },
          { mode: "netreduce", workers: 2, tensorBytes: "256KiB", window: 16 },
          { mode: "netreduce", workers: 2, tensorBytes: "256KiB", window: 128 },
          { mode: "ring", workers: 3, tensorBytes: "192KiB", window: 32 },
        ],
      }),
      { seed, timeoutMs: 120_000 },
    );
    assert.equal(result.verified, true);
    for (const job of result.jobs) {
      for (const w of job.perWorker) {
        const where = `job ${job.id} (window ${job.window}) worker ${w.workerId}: srtt ${w.srttMs.toFixed(1)} ms, rto ${w.rtoMs.toFixed(1)} ms`;
        assert.equal(
          w.timeouts,
          0,
          `${where}: ${w.spuriousTimeouts} spurious of ${w.timeouts} timeouts`,
        );
        assert.equal(w.retransmissions, 0, `${where}: retransmissions`);
      }
    }
  });
});
