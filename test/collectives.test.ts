import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type CoreSimJob, simulateCores } from "../sim/harness.js";
import { COLLECTIVES } from "../worker/collective.js";
import { verifyCollective } from "../worker/workload.js";
import { testSeed } from "./seed.js";

/**
 * Ring all-reduce and the other collectives (proto/README.md, section 17),
 * sans-IO over the simulated network with loss, duplication and reordering:
 * every worker's output is checked against what all workers' seeded inputs
 * make it, and every data packet is applied exactly once.
 */
const rates = { drop: 0.02, duplicate: 0.02, reorder: 0.05 };

function run(job: CoreSimJob, seed: number, calls = 2) {
  const sim = simulateCores({ jobs: [job], aggregators: 1, rates, seed, calls });
  const out = sim.jobs[0];
  out.outputs.forEach((output, w) => {
    const v = verifyCollective(out.op, output, {
      seed: out.seed,
      workers: job.workers,
      workerId: w,
      root: job.root ?? 0,
      scaleBits: job.scaleBits ?? 20,
      length: job.elements,
    });
    assert.equal(
      v.verified,
      true,
      `${out.op}, worker ${w} of ${job.workers}: ${JSON.stringify(v)}`,
    );
  });
  return sim;
}

describe("collectives over the switch's forwarding", () => {
  for (const op of COLLECTIVES) {
    it(`${op}: exact under loss, duplication and reordering for N = 2, 3, 4, 8`, () => {
      for (const workers of [2, 3, 4, 8]) {
        const seed = testSeed(`collective ${op} ${workers}`, 31 + workers);
        // 1001 elements do not cut evenly into chunks or 50-element packets;
        // all-to-all needs equal chunks.
        const elements = op === "allToAll" ? 150 * workers : 1001;
        const sim = run(
          {
            mode: "ring",
            operation: op,
            root: workers - 1,
            workers,
            elements,
            window: 8,
            elementsPerPacket: 50,
          },
          seed,
        );
        const stats = sim.jobs[0].collectives.map((c) => c.stats);
        assert.ok(
          stats.some((s) => s.retransmissions > 0),
          "loss was recovered by retransmission",
        );
        assert.ok(
          stats.some((s) => s.duplicateResults > 0),
          "duplicates were acknowledged, not applied",
        );
      }
    });
  }

  it("handles tensors smaller than N packets, and shorter than N elements", () => {
    for (const op of ["allReduce", "reduceScatter", "allGather", "broadcast", "reduce"] as const) {
      for (const [workers, elements] of [
        [8, 3],
        [4, 70],
        [3, 1],
      ]) {
        run(
          { mode: "ring", operation: op, workers, elements, window: 4, elementsPerPacket: 50 },
          testSeed(`collective small ${op}`, 41),
        );
      }
    }
  });

  it("ring all-reduce gives NetReduce's result bit for bit on the same inputs", () => {
    const seed = testSeed("ring equals netreduce", 43);
    for (const workers of [3, 4]) {
      const shape = { workers, elements: 5_003, window: 8, elementsPerPacket: 64, seed };
      const ring = run({ mode: "ring", ...shape }, seed, 1);
      const netreduce = simulateCores({
        jobs: [{ mode: "netreduce", ...shape }],
        aggregators: 16,
        rates,
        seed,
      });
      ring.jobs[0].outputs.forEach((out, w) => {
        assert.deepEqual(out, netreduce.jobs[0].outputs[w], `worker ${w} of ${workers}`);
      });
    }
  });

  it("each ring worker sends 2(N-1)/N of the tensor, each all-to-all worker (N-1)/N", () => {
    const seed = testSeed("ring bytes", 47);
    const workers = 4;
    const elements = 40_000;
    const clean = { drop: 0, duplicate: 0, reorder: 0 };
    for (const [operation, share] of [
      ["allReduce", (2 * (workers - 1)) / workers],
      ["allToAll", (workers - 1) / workers],
    ] as const) {
      const sim = simulateCores({
        jobs: [
          { mode: "ring", operation, workers, elements, window: 16, elementsPerPacket: 250, seed },
        ],
        aggregators: 1,
        rates: clean,
        seed,
      });
      for (const c of sim.jobs[0].collectives) {
        assert.equal(c.stats.payloadBytesSent, share * elements * 4, operation);
        assert.equal(c.stats.payloadBytesReceived, share * elements * 4, operation);
      }
    }
  });

  it("runs every collective with one worker (its own data, nothing on the wire)", () => {
    for (const op of COLLECTIVES) {
      const sim = run(
        { mode: "ring", operation: op, workers: 1, elements: 12, window: 2, elementsPerPacket: 5 },
        testSeed(`collective alone ${op}`, 61),
        1,
      );
      assert.equal(sim.jobs[0].collectives[0].stats.payloadBytesSent, 0, op);
    }
  });

  it("refuses lengths that do not fit the collective", () => {
    const sim = simulateCores({
      jobs: [
        {
          mode: "ring",
          operation: "allReduce",
          workers: 2,
          elements: 10,
          window: 2,
          elementsPerPacket: 5,
        },
      ],
      aggregators: 1,
      rates: { drop: 0, duplicate: 0, reorder: 0 },
      seed: 1,
    });
    const core = sim.jobs[0].collectives[0];
    assert.throws(
      () => core.begin("reduceScatter", new Float32Array(10), new Float32Array(10), 0),
      /reduceScatter: output has 10 elements, expected 5/,
    );
    assert.throws(
      () => core.begin("allToAll", new Float32Array(9), new Float32Array(9), 0),
      /do not cut into 2 equal chunks/,
    );
    assert.throws(
      () => core.begin("broadcast", new Float32Array(4), new Float32Array(4), 0, 2),
      /root/,
    );
  });
});
