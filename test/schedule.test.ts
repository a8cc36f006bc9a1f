import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseScheduleScenario } from "../experiment/schedule.js";
import { runSchedule } from "../runner/schedule.js";
import { testSeed } from "./seed.js";

/**
 * Jobs through the control plane, as real processes: submitted on arrival,
 * workers join with --control, the memory manager's decisions change
 * regions of running jobs, and every result must stay exact.
 */
describe("scheduling through the control plane, real processes", () => {
  it("EDF: two deadline jobs and a best-effort job get regions in deadline order, regions change while jobs run, all exact", async () => {
    const seed = testSeed("schedule edf", 41);
    const scenario = parseScheduleScenario({
      name: "edf-order",
      seed,
      policies: ["edf"],
      aggregators: 64,
      // 20 Mbps links keep the BE job running for about 3.5 s, whatever the
      // host's load: the deadline jobs arrive while it sends, so its region
      // changes under traffic and must drain.
      links: { rate: "20Mbps" },
      jobs: [
        {
          name: "be",
          class: "be",
          workers: 2,
          tensorBytes: "8MiB",
          aggregators: 64,
          window: 16,
        },
        // arrives first, later deadline
        {
          name: "md-late",
          class: "md",
          deadlineS: 60,
          workers: 2,
          tensorBytes: "1MiB",
          arriveMs: 2000,
          aggregators: 32,
          window: 16,
        },
        // arrives second, earlier deadline: EDF serves it whole at once
        {
          name: "md-early",
          class: "md",
          deadlineS: 30,
          workers: 3,
          tensorBytes: "1MiB",
          arriveMs: 2150,
          aggregators: 32,
          window: 16,
        },
      ],
    });
    const result = await runSchedule(scenario, "edf", { timeoutMs: 600_000 });
    const [be, late, early] = result.jobs;
    for (const job of result.jobs) {
      assert.equal(job.verified, true, `${job.name} exact`);
      assert.equal(job.status, "finished");
    }
    assert.ok(
      be.regions.length >= 2,
      `the BE job's region changed while it ran: ${JSON.stringify(be.regions)}`,
    );
    assert.equal(be.regions[0].size, 64);
    assert.ok(be.regions[1].size < 64, "it shrank for the deadline jobs");
    assert.equal(early.regions[0].size, 32, "the earlier deadline gets its whole demand");
    assert.ok(late.regions.length >= 1);
    // How long each waited and whether deadlines were met depend on this
    // host's speed: reported here, checked in virtual time (test/sim.test.ts).
    console.log(
      `md-early waited ${early.waitS?.toFixed(2)} s; deadlines met: ${result.deadlinesMet} of 2`,
    );
    const changes = Number(result.switch.regionChanges ?? 0);
    assert.ok(changes >= 1, `regions drained after changes: ${changes}`);
  });
});
