import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ScenarioRunSchema } from "../proto/scenario.js";
import { runScenarioRun } from "../runner/run.js";
import { testSeed } from "./seed.js";

/** Ring all-reduce and all-to-all with real processes through the real switch (section 17). */
describe("ring jobs, real processes", () => {
  it("a 4-worker ring all-reduce is exact through 1% loss each way, and sends 2(N-1)/N of the tensor", async () => {
    const seed = testSeed("ring process", 53);
    const run = ScenarioRunSchema.parse({
      name: "ring",
      faults: { loss: 0.01 },
      jobs: [{ mode: "ring", workers: 4, tensorBytes: "2MiB", window: 64 }],
    });
    const result = await runScenarioRun(run, { seed, timeoutMs: 120_000 });
    const job = result.jobs[0];
    assert.equal(result.verified, true, JSON.stringify(job.perWorker));
    assert.ok(job.retransmissions > 0, "loss was recovered");
    assert.equal(result.ps, null, "a ring job needs no PS");
    // 2(N-1)/N x 2 MiB each way, exactly: payload counted once per packet.
    assert.equal(job.bytesSentPerWorker, 1.5 * 2 ** 21);
    assert.equal(job.bytesReceivedPerWorker, 1.5 * 2 ** 21);
    const forwarded = result.switch as { forwarded?: number };
    assert.ok(Number(forwarded.forwarded) > 0, "the switch forwarded the ring's packets");
  });

  it("a 4-worker all-to-all delivers every block exactly", async () => {
    const seed = testSeed("all-to-all process", 59);
    const run = ScenarioRunSchema.parse({
      name: "all-to-all",
      faults: { loss: 0.01 },
      jobs: [{ mode: "ring", operation: "allToAll", workers: 4, tensorBytes: "1MiB", window: 32 }],
    });
    const result = await runScenarioRun(run, { seed, timeoutMs: 120_000 });
    assert.equal(result.verified, true, JSON.stringify(result.jobs[0].perWorker));
    assert.equal(result.jobs[0].bytesSentPerWorker, 0.75 * 2 ** 20);
  });
});
