import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { SwitchStatsRecord } from "../proto/records.js";
import { ScenarioRunSchema } from "../proto/scenario.js";
import { simulateRun } from "../sim/simulate.js";

/**
 * ESA's preemptive pool against ATP's own first come, in virtual time: three
 * 3-worker ATP jobs of 1 MiB, 256 KiB and 128 KiB arriving 50 us apart, the
 * largest first, hashing into 64 aggregators (each job's window is 32).
 */
const SEED = 7;
function run(atpPool: "firstCome" | "esa", faults = {}) {
  const jobs: Array<[string, string, number]> = [
    ["big", "1MiB", 0],
    ["mid", "256KiB", 0.05],
    ["small", "128KiB", 0.1],
  ];
  return simulateRun(
    ScenarioRunSchema.parse({
      name: atpPool,
      aggregators: 64,
      atpPool,
      faults,
      links: { rate: "100Gbps", delay: "1us" },
      jobs: jobs.map(([name, tensorBytes, startMs]) => ({
        name,
        mode: "atp",
        workers: 3,
        tensorBytes,
        window: 32,
        startMs,
      })),
    }),
    SEED,
  );
}

describe(`ESA's preemptive ATP pool in the simulator (seed ${SEED})`, () => {
  it("lowers the average JCT of jobs of different sizes below ATP's first come, each sum exact", () => {
    const firstCome = run("firstCome");
    const esa = run("esa");
    for (const r of [firstCome, esa]) {
      assert.equal(r.verified, true, `${r.name}: ${r.error ?? "a job did not verify"}`);
      for (const job of r.jobs)
        assert.equal(
          job.perWorker.every((w) => w.notBitExact === 0),
          true,
        );
    }
    const stats = (r: typeof esa) => r.switch as SwitchStatsRecord;
    assert.equal(stats(firstCome).preemptions, 0);
    assert.ok(stats(esa).preemptions > 0, "esa preempted nothing");
    // The first (largest) job outranks nobody: it only loses aggregators.
    assert.equal(esa.jobs[0].switchCounters?.preemptions, 0);
    assert.ok((esa.jobs[0].switchCounters?.preempted ?? 0) > 0);
    assert.ok(
      esa.averageJctS < firstCome.averageJctS,
      `average JCT: esa ${esa.averageJctS} s, first come ${firstCome.averageJctS} s`,
    );
    assert.ok(esa.jobs[2].seconds < firstCome.jobs[2].seconds, "the small job finishes sooner");
    assert.equal(esa.maxJctS, Math.max(...esa.jobs.map((j) => j.seconds)));
    // The pool's occupancy, sampled over virtual time.
    assert.ok(esa.occupancy !== undefined && esa.occupancy.points.length > 0);
    assert.ok(esa.occupancy.peakFraction > 0 && esa.occupancy.peakFraction <= 1);
  });

  it("stays bit-exact under loss, duplication and reordering, with preemptions", () => {
    const r = run("esa", { loss: 0.02, duplicate: 0.01, reorder: 0.01 });
    assert.equal(r.verified, true, r.error ?? "a job did not verify");
    for (const job of r.jobs) {
      for (const w of job.perWorker)
        assert.equal(w.notBitExact, 0, `${job.name} worker ${w.workerId}`);
    }
    assert.ok((r.switch as SwitchStatsRecord).preemptions > 0);
    assert.ok(
      r.jobs.some((j) => j.retransmissions > 0),
      "the faults made workers resend",
    );
  });
});
