import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type JobMode, SUMMED_MODES } from "../proto/config.js";
import { type CoreSim, type CoreSimJob, simulateCores } from "../sim/harness.js";
import { verifyAllReduce } from "../worker/workload.js";
import { testSeed } from "./seed.js";

/**
 * The aggregator compliance suite, run against every switch program
 * (NetReduce, ATP with PS fallback, and the PS baseline): whatever the
 * network does, each worker's values are counted exactly once and each PSN
 * completes exactly once where it completes.
 */

/** Aggregations finished, counted where the mode finishes them. */
function completions(mode: JobMode, sim: CoreSim): number {
  return mode === "netreduce"
    ? sim.sw.stats.aggregationsCompleted
    : sim.ps.stats.aggregationsCompleted;
}

function assertExact(sim: CoreSim, jobs: CoreSimJob[]): void {
  sim.jobs.forEach((job, j) => {
    for (const [w, out] of job.outputs.entries()) {
      const v = verifyAllReduce(out, job.seed, jobs[j].workers, jobs[j].scaleBits ?? 20);
      assert.equal(v.notBitExact, 0, `job ${j} worker ${w}: ${v.notBitExact} elements differ`);
      assert.equal(v.verified, true, `job ${j} worker ${w}`);
    }
  });
  // What each job holds of the pool (ATP quotas) is counted exactly.
  const a = sim.sw.aggregators;
  const held = new Map<number, number>();
  for (let i = 0; i < a.count; i++) {
    if (a.state[i] !== 0) held.set(a.jobId[i], (held.get(a.jobId[i]) ?? 0) + 1);
  }
  for (let id = 0; id < 16; id++) {
    assert.equal(a.heldBy[id], held.get(id) ?? 0, `aggregators held by job ${id}`);
  }
}

for (const mode of SUMMED_MODES) {
  describe(`aggregator compliance: ${mode}`, () => {
    // A pool of 2 x window for ATP: hashing leaves some collisions even alone.
    const job = (extra: Partial<CoreSimJob> = {}): CoreSimJob => ({
      mode,
      workers: 4,
      elements: 12_001,
      window: 8,
      elementsPerPacket: 50,
      ...extra,
    });

    it("counts every contribution once on a clean network", () => {
      const seed = testSeed(`compliance ${mode} clean`, 11);
      const jobs = [job()];
      const sim = simulateCores({
        jobs,
        aggregators: 16,
        rates: { drop: 0, duplicate: 0, reorder: 0 },
        seed,
      });
      assertExact(sim, jobs);
      assert.equal(completions(mode, sim), sim.jobs[0].packets);
    });

    it("gives the same bits with several packets per datagram, under loss, duplication and reordering", () => {
      const seed = testSeed(`compliance ${mode} coalescing`, 14);
      const jobs = [job()];
      const rates = { drop: 0.02, duplicate: 0.02, reorder: 0.05 };
      const alone = simulateCores({ jobs, aggregators: 16, rates, seed, calls: 2 });
      const coalesced = simulateCores({
        jobs,
        aggregators: 16,
        rates,
        seed,
        calls: 2,
        packetsPerDatagram: 16,
      });
      assertExact(alone, jobs);
      assertExact(coalesced, jobs);
      assert.equal(alone.datagrams, alone.packets, "one packet per datagram");
      assert.ok(
        coalesced.datagrams < 0.6 * coalesced.packets,
        `coalesced: ${coalesced.datagrams} datagrams for ${coalesced.packets} packets`,
      );
      assert.ok(coalesced.sw.stats.rxDatagrams < coalesced.sw.stats.rxPackets);
      coalesced.jobs[0].outputs.forEach((out, w) => {
        assert.deepEqual(out, alone.jobs[0].outputs[w], `worker ${w}'s result`);
      });
      assert.equal(completions(mode, coalesced), 2 * coalesced.jobs[0].packets);
    });

    for (const [name, rates] of [
      ["duplication", { drop: 0, duplicate: 0.1, reorder: 0 }],
      ["reordering", { drop: 0, duplicate: 0, reorder: 0.2 }],
      ["loss", { drop: 0.03, duplicate: 0, reorder: 0 }],
      ["loss, duplication and reordering", { drop: 0.02, duplicate: 0.02, reorder: 0.05 }],
    ] as const) {
      it(`stays exact under ${name}, across calls`, () => {
        const seed = testSeed(`compliance ${mode} ${name}`, 12);
        const jobs = [job()];
        const sim = simulateCores({ jobs, aggregators: 16, rates, seed, calls: 2 });
        assertExact(sim, jobs);
        assert.equal(completions(mode, sim), 2 * sim.jobs[0].packets, "each PSN completes once");
        if (rates.drop > 0) {
          const resent = sim.jobs[0].workers.reduce((n, w) => n + w.stats.retransmissions, 0);
          assert.ok(resent > 0, "loss was recovered by retransmission");
        }
      });
    }
  });
}

describe("aggregator compliance: jobs of every mode on one switch", () => {
  for (const packetsPerDatagram of [1, 8])
    it(`keeps each job exact while ATP jobs collide in a small shared pool (${packetsPerDatagram} packets per datagram at most)`, () => {
      const seed = testSeed("compliance multi-tenant", 13);
      const jobs: CoreSimJob[] = [
        {
          mode: "netreduce",
          workers: 3,
          elements: 8_000,
          window: 8,
          elementsPerPacket: 40,
          seed: seed + 1,
        },
        {
          mode: "atp",
          workers: 4,
          elements: 8_000,
          window: 8,
          elementsPerPacket: 40,
          offset: 16,
          regionSize: 6,
          seed: seed + 2,
        },
        {
          mode: "atp",
          workers: 2,
          elements: 8_000,
          window: 8,
          elementsPerPacket: 40,
          offset: 16,
          regionSize: 6,
          seed: seed + 3,
        },
        {
          mode: "ps",
          workers: 2,
          elements: 4_000,
          window: 8,
          elementsPerPacket: 40,
          seed: seed + 4,
        },
      ];
      const sim = simulateCores({
        jobs,
        aggregators: 22,
        rates: { drop: 0.01, duplicate: 0.01, reorder: 0.02 },
        seed,
        packetsPerDatagram,
      });
      assertExact(sim, jobs);
      if (packetsPerDatagram > 1) assert.ok(sim.datagrams < sim.packets);
      const [netreduce, atpA, atpB] = sim.sw.jobs;
      assert.ok(
        atpA.counters.collisions > 0 && atpB.counters.collisions > 0,
        "the pool is contended",
      );
      assert.ok(atpA.counters.fallbacks > 0 && atpB.counters.fallbacks > 0);
      assert.equal(netreduce.counters.collisions + netreduce.counters.fallbacks, 0);
      assert.equal(netreduce.counters.aggregationsCompleted, sim.jobs[0].packets);
    });
});

describe("changing a running job's region", () => {
  const cases = [
    { mode: "netreduce", name: "shrinks in place (overlapping: the new epoch waits)", to: [0, 8] },
    { mode: "netreduce", name: "moves to a disjoint region", to: [16, 16] },
    { mode: "netreduce", name: "grows over its own region (overlapping)", to: [0, 32] },
    { mode: "atp", name: "moves its pool slice", to: [20, 4] },
  ] as const;
  for (const c of cases) {
    it(`${c.mode}: ${c.name}, twice, with loss; every result exact`, () => {
      const seed = testSeed(`region change ${c.mode} ${c.name}`, 31);
      const drained: number[] = [];
      const jobs: CoreSimJob[] = [
        {
          mode: c.mode,
          workers: 3,
          elements: 20_000,
          window: 8,
          elementsPerPacket: 40,
          offset: 0,
          regionSize: 16,
        },
      ];
      const sim = simulateCores({
        jobs,
        aggregators: 40,
        rates: { drop: 0.02, duplicate: 0.01, reorder: 0.02 },
        seed,
        events: [
          {
            at: 20,
            run: (sw) => {
              sw.onRegionDrained = (_job, epoch) => drained.push(epoch);
              sw.changeRegion(1, c.to[0], c.to[1], 1);
            },
          },
          // Queued behind the first change until it drains.
          { at: 21, run: (sw) => sw.changeRegion(1, 0, 16, 2) },
        ],
      });
      assertExact(sim, jobs);
      assert.deepEqual(drained, [0, 1], "both old regions drained, in order");
      assert.equal(sim.sw.stats.regionChanges, 2);
      const job = sim.sw.job(1);
      assert.deepEqual([job?.current.epoch, job?.current.offset, job?.current.size], [2, 0, 16]);
      for (const w of sim.jobs[0].workers) assert.equal(w.stats.regionChanges, 2);
      assert.equal(completions(c.mode, sim), sim.jobs[0].packets, "each PSN completes once");
    });
  }

  it("a 32-worker job's old region drains (its full bitmap uses the sign bit)", () => {
    const seed = testSeed("region change 32 workers", 32);
    const drained: number[] = [];
    const jobs: CoreSimJob[] = [
      {
        mode: "netreduce",
        workers: 32,
        elements: 2_000,
        window: 4,
        elementsPerPacket: 20,
        offset: 0,
        regionSize: 8,
      },
    ];
    const sim = simulateCores({
      jobs,
      aggregators: 24,
      rates: { drop: 0, duplicate: 0, reorder: 0 },
      seed,
      events: [
        {
          at: 0.3,
          run: (sw) => {
            sw.onRegionDrained = (_job, epoch) => drained.push(epoch);
            sw.changeRegion(1, 8, 8, 1);
          },
        },
      ],
    });
    assertExact(sim, jobs);
    assert.deepEqual(drained, [0]);
  });
});
