import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ScenarioRunSchema } from "../proto/scenario.js";
import { runScenarioRun } from "../runner/run.js";
import { testSeed } from "./seed.js";

/**
 * Jobs of every mode sharing one switch, as real processes over loopback UDP:
 * the switch, the parameter server and one process per worker, 1% loss each
 * way at the switch. runScenarioRun stops every child it started.
 */
describe("multi-tenant jobs, real processes", () => {
  const size = 1024 * 1024;
  const packets = size / 4 / 256;

  it("two ATP jobs collide in a small shared pool while a NetReduce job runs untouched; all exact", async () => {
    const seed = testSeed("multi-tenant processes", 21);
    const run = ScenarioRunSchema.parse({
      name: "three-jobs",
      aggregators: 64 + 16,
      faults: { loss: 0.01 },
      jobs: [
        { name: "nr", mode: "netreduce", workers: 3, tensorBytes: size, window: 32 },
        { name: "atp-a", mode: "atp", workers: 4, tensorBytes: size, window: 32, startMs: 50 },
        { name: "atp-b", mode: "atp", workers: 2, tensorBytes: size, window: 32, startMs: 100 },
      ],
    });
    const result = await runScenarioRun(run, { seed, timeoutMs: 120_000 });
    const [nr, atpA, atpB] = result.jobs;
    for (const job of result.jobs) {
      assert.equal(job.verified, true, `${job.name} exact`);
      for (const w of job.perWorker)
        assert.equal(w.notBitExact, 0, `${job.name} worker ${w.workerId}`);
    }
    assert.equal(atpA.offset, 64, "ATP jobs share the aggregators after the NetReduce region");
    assert.equal(atpA.regionSize, 16);
    for (const job of [atpA, atpB]) {
      assert.ok(job.collisions > 0, `${job.name} collided`);
      assert.ok(job.fallbacks > 0, `${job.name} fell back to the PS`);
    }
    assert.equal(nr.collisions, 0);
    assert.equal(nr.fallbacks, 0);
    assert.equal(
      nr.switchCounters?.toParameterServer,
      0,
      "nothing of the NetReduce job reaches the PS",
    );
    assert.equal(nr.switchAggregations, packets, "each NetReduce PSN completes once in the switch");
    assert.equal(result.ps?.aggregationsCompleted, 2 * packets, "the PS acks each ATP PSN once");
    assert.ok(
      result.jobs.some((j) => j.retransmissions > 0),
      "losses were recovered",
    );
  });

  it("a PS-mode job is exact beside a NetReduce job, the switch only forwarding for it", async () => {
    const seed = testSeed("ps mode processes", 22);
    const run = ScenarioRunSchema.parse({
      name: "ps-and-netreduce",
      aggregators: 64,
      faults: { loss: 0.01 },
      jobs: [
        { name: "ps", mode: "ps", workers: 3, tensorBytes: size, window: 32 },
        { name: "nr", mode: "netreduce", workers: 2, tensorBytes: size, window: 32 },
      ],
    });
    const result = await runScenarioRun(run, { seed, timeoutMs: 120_000 });
    assert.equal(result.verified, true);
    const [ps, nr] = result.jobs;
    assert.equal(ps.switchAggregations, 0);
    assert.equal(result.ps?.aggregationsCompleted, packets);
    assert.ok(
      (result.ps?.workerContributions ?? 0) >= 3 * packets,
      "every contribution via the PS",
    );
    assert.equal(nr.switchAggregations, packets);
  });

  it("jobs with PSes of their own: an ATP job over two, a PS job on one, each PS serving its job alone; exact under loss", async () => {
    const seed = testSeed("own parameter servers processes", 23);
    const run = ScenarioRunSchema.parse({
      name: "own-ps",
      aggregators: 32,
      faults: { loss: 0.01 },
      links: { rate: "100Mbps", delay: "100us" },
      jobs: [
        {
          name: "atp",
          mode: "atp",
          workers: 3,
          tensorBytes: size / 2,
          window: 16,
          parameterServers: 2,
        },
        {
          name: "ps",
          mode: "ps",
          workers: 2,
          tensorBytes: size / 4,
          window: 16,
          parameterServers: 1,
        },
      ],
    });
    const result = await runScenarioRun(run, { seed, timeoutMs: 120_000 });
    assert.equal(result.verified, true, result.error);
    // The PSes' counters add up: every PSN of both jobs completed once at a PS.
    assert.equal(result.ps?.aggregationsCompleted, packets / 2 + packets / 4);
    const hosts = new Set(result.links?.map((l) => `${l.host} ${l.direction}`));
    for (const host of ["atp ps 0", "atp ps 1", "ps ps 0"]) {
      for (const direction of ["up", "down"]) {
        assert.ok(hosts.has(`${host} ${direction}`), `${host} ${direction}: ${[...hosts]}`);
      }
    }
    assert.ok(
      ![...hosts].some((h) => h.startsWith("ps up") || h.startsWith("ps down")),
      "no shared PS",
    );
  });
});
