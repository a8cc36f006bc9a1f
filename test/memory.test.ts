import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Policy } from "../proto/config.js";
import { type JobSpec, MemoryManager } from "../switch/memory.js";
import { gaps } from "../switch/placement.js";
import { waterFill } from "../switch/policies.js";

const BYTES = 1024;

function spec(id: number, extra: Partial<JobSpec> = {}): JobSpec {
  return {
    id,
    name: `job-${id}`,
    jobClass: "be",
    mode: "atp",
    workers: 2,
    modelBytes: 10e6,
    epochs: 1,
    computeMs: 0,
    throughputBytesPerSecond: 10e6,
    rttMs: 1,
    ...extra,
  };
}

const manager = (aggregators: number, policy: Policy = "edf") =>
  new MemoryManager({ aggregators, bytesPerAggregator: BYTES, policy });

/** job id -> [offset, size], or "queued". */
function table(m: MemoryManager): Record<number, [number, number] | string> {
  const out: Record<number, [number, number] | string> = {};
  for (const [id, job] of m.jobs) {
    out[id] = job.region !== null ? [job.region.offset, job.region.size] : job.status;
  }
  return out;
}

describe("memory manager", () => {
  it("demand is Throughput x RTT in aggregators, doubled for NetReduce", () => {
    const m = manager(1000);
    // 100 MB/s x 2 ms = 200 000 bytes = 196 aggregators of 1 KiB (rounded up)
    const fast = { throughputBytesPerSecond: 100e6, rttMs: 2 };
    assert.equal(m.demandOf(spec(1, fast)), 196);
    assert.equal(m.demandOf(spec(1, { ...fast, mode: "netreduce" })), 392);
    assert.equal(m.demandOf(spec(1, { aggregators: 7 })), 7, "an explicit request wins");
    assert.equal(
      m.demandOf(spec(1, { aggregators: 1, mode: "netreduce" })),
      2,
      "at least 2 x window 1",
    );
    // Time_job = Epochs x (Time_comp + Size / Throughput): 3 x (5 ms + 10 MB / 10 MB/s)
    assert.equal(m.durationMs(spec(1, { epochs: 3, computeMs: 5 }), 10, 10), 3 * 1005);
    assert.equal(m.durationMs(spec(1), 5, 10), 2000, "half the memory, half the throughput");
  });

  const cases: Array<{
    name: string;
    policy: Policy;
    pool: number;
    jobs: Array<[number, Partial<JobSpec>]>; // id, spec; submitted in this order
    plan: Record<number, number>; // job id -> aggregators the policy gives it
  }> = [
    {
      name: "EDF admits deadline jobs whole, in deadline order; one that does not fit waits",
      policy: "edf",
      pool: 150,
      jobs: [
        [1, { aggregators: 100 }],
        [2, { aggregators: 100, jobClass: "md", deadlineMs: 50_000 }],
        [3, { aggregators: 100, jobClass: "md", deadlineMs: 20_000 }],
      ],
      // 3 (earliest deadline) gets its 100; 2 would get under half its demand
      // from the remainder, so it waits; the running BE job 1 keeps the rest
      plan: { 1: 50, 2: 0, 3: 100 },
    },
    {
      name: "EDF shares the leftover equally among best-effort jobs, capped at demand",
      policy: "edf",
      pool: 100,
      jobs: [
        [1, { aggregators: 60 }],
        [2, { aggregators: 20 }],
        [3, { aggregators: 60 }],
      ],
      plan: { 1: 40, 2: 20, 3: 40 },
    },
    {
      name: "FCFS serves in arrival order and lets nobody overtake a waiting job",
      policy: "fcfs",
      pool: 100,
      jobs: [
        [1, { aggregators: 70 }],
        [2, { aggregators: 50, jobClass: "md", deadlineMs: 1 }],
        [3, { aggregators: 10 }],
        [4, { aggregators: 1 }],
      ],
      plan: { 1: 70, 2: 30, 3: 0, 4: 0 },
    },
    {
      name: "static gives each job one equal partition, at most its demand",
      policy: "static",
      pool: 100,
      jobs: [
        [1, { aggregators: 60 }],
        [2, { aggregators: 10 }],
        [3, { aggregators: 25 }],
        [4, { aggregators: 25 }],
        [5, { aggregators: 25 }],
      ],
      plan: { 1: 25, 2: 10, 3: 25, 4: 25, 5: 0 },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const m = manager(c.pool, c.policy);
      for (const [at, [id, extra]] of c.jobs.entries()) m.submit(spec(id, extra), at);
      assert.deepEqual(Object.fromEntries(m.plan(10)), c.plan);
      // Placed as planned once every changed region has drained; never overlapping.
      for (let round = 0; round < 5 && m.draining.length > 0; round++) {
        for (const b of [...m.draining]) m.drained(b.jobId, b.epoch, 10);
      }
      const regions = m.allocation().regions;
      for (const [i, r] of regions.entries()) {
        for (const other of regions.slice(i + 1)) {
          assert.ok(
            r.offset + r.size <= other.offset,
            `regions overlap: ${JSON.stringify(regions)}`,
          );
        }
        assert.ok(r.size <= c.plan[r.jobId], "never more than planned");
      }
    });
  }

  it("an MD job whose deadline it cannot meet falls back to the shared remainder, and says so", () => {
    const m = manager(100);
    m.submit(spec(1, { aggregators: 40 }), 0);
    // needs 10 MB / 10 MB/s = 1 s even at full demand; the deadline is in 0.5 s
    const [decision] = m.submit(spec(2, { aggregators: 80, jobClass: "md", deadlineMs: 500 }), 0);
    assert.equal(decision.outcome, "reduced");
    assert.match(decision.reason ?? "", /deadline cannot be met/);
    const job = m.get(2);
    assert.equal(job.deadlineFeasible, false);
    assert.ok((job.estimatedFinishMs ?? 0) > 500);
    assert.deepEqual(table(m), { 1: [0, 40], 2: [40, 60] });
  });

  it("releases memory on completion and cancellation and grants it to waiting jobs", () => {
    const m = manager(100, "fcfs");
    m.submit(spec(1, { aggregators: 60 }), 0);
    m.submit(spec(2, { aggregators: 40 }), 1);
    m.submit(spec(3, { aggregators: 50 }), 2);
    assert.deepEqual(table(m), { 1: [0, 60], 2: [60, 40], 3: "queued" });
    const decisions = m.finish(1, 5);
    assert.deepEqual(
      decisions.map((d) => [d.jobId, d.outcome]),
      [
        [1, "released"],
        [3, "granted"],
      ],
    );
    assert.deepEqual(table(m), { 1: "finished", 2: [60, 40], 3: [0, 50] });
    m.cancel(2, 6);
    assert.equal(m.get(2).status, "cancelled");
    assert.deepEqual(m.allocation().free, [{ offset: 50, size: 50 }]);
    assert.throws(() => m.cancel(2, 7), /already cancelled/);
    assert.throws(() => m.finish(9, 7), /no job 9/);
    assert.throws(() => m.submit(spec(3), 8), /already exists/);
  });

  it("places regions at offsets, best fit, and reduces a job when only fragments are free", () => {
    const m = manager(100, "fcfs");
    m.submit(spec(1, { aggregators: 30 }), 0);
    m.submit(spec(2, { aggregators: 20 }), 1);
    m.submit(spec(3, { aggregators: 30 }), 2);
    m.submit(spec(4, { aggregators: 20 }), 3);
    m.finish(1, 4);
    m.finish(3, 5);
    assert.deepEqual(m.allocation().free, [
      { offset: 0, size: 30 },
      { offset: 50, size: 30 },
    ]);
    const [d] = m.submit(spec(5, { aggregators: 50 }), 6);
    assert.equal(d.outcome, "reduced");
    assert.match(d.reason ?? "", /fragmented: no free run of 50 aggregators; the largest is 30/);
    assert.deepEqual(d.region, { offset: 0, size: 30, epoch: 0 });
  });

  it("a region that changes drains before anyone else reuses it", () => {
    const m = manager(100);
    m.submit(spec(1, { aggregators: 100 }), 0);
    const decisions = m.submit(spec(2, { aggregators: 50, jobClass: "md", deadlineMs: 60_000 }), 1);
    // job 1 shrinks in place (epoch 1); job 2 waits for the freed tail to drain
    assert.deepEqual(
      decisions.map((d) => [d.jobId, d.outcome, d.region]),
      [
        [1, "reduced", { offset: 0, size: 50, epoch: 1 }],
        [2, "queued", null],
      ],
    );
    assert.match(decisions[1].reason ?? "", /waiting for draining aggregators/);
    assert.deepEqual(m.draining, [{ jobId: 1, offset: 50, size: 50, epoch: 0 }]);
    const after = m.drained(1, 0, 2);
    assert.deepEqual(
      after.map((d) => [d.jobId, d.outcome, d.region]),
      [[2, "granted", { offset: 50, size: 50, epoch: 0 }]],
    );
  });

  it("a drain report frees the job's blocks of that epoch and older ones", () => {
    const m = manager(100);
    m.submit(spec(1, { aggregators: 100 }), 0);
    m.submit(spec(2, { aggregators: 40, jobClass: "md", deadlineMs: 60_000 }), 1);
    m.submit(spec(3, { aggregators: 30, jobClass: "md", deadlineMs: 50_000 }), 2);
    assert.deepEqual(
      m.draining.map((b) => b.epoch),
      [0, 1],
      "job 1 shrank twice before the switch drained either",
    );
    m.drained(1, 1, 3); // the switch skipped epoch 1 and reports epoch 1 and older drained
    assert.deepEqual(m.draining, []);
  });

  it("a running job grows back over its own region when that region is what splits the free space", () => {
    // The deadlines scenario's arrivals: a BE job shrinks to a sliver in the
    // middle of the pool while deadline jobs run, then must get the whole
    // pool back (it waited forever for a free run of 256 before).
    const m = manager(256);
    const drainAll = (now: number) => {
      for (const b of [...m.draining]) m.drained(b.jobId, b.epoch, now);
    };
    const md = (id: number, deadline: number) =>
      spec(id, { mode: "netreduce", jobClass: "md", deadlineMs: deadline, aggregators: 126 });
    m.submit(spec(1, { mode: "netreduce", aggregators: 256, modelBytes: 1e9 }), 0);
    m.submit(md(2, 6000), 300);
    drainAll(310);
    m.submit(md(3, 6400), 400);
    drainAll(410);
    m.submit(md(4, 5500), 500);
    drainAll(510);
    const be = m.get(1);
    assert.ok((be.region?.size ?? 0) < 256, `the BE job shrank: ${JSON.stringify(be.region)}`);
    for (const [id, at] of [
      [2, 4000],
      [4, 4500],
      [3, 6000],
    ]) {
      m.finish(id, at);
      drainAll(at + 10);
      drainAll(at + 20);
    }
    assert.deepEqual(be.region && [be.region.offset, be.region.size], [0, 256], be.reason ?? "");
    assert.equal(m.allocation().freeTotal, 0);
  });

  it("rejects a job that cannot fit even its minimum", () => {
    const m = manager(1);
    const [d] = m.submit(spec(1, { mode: "netreduce" }), 0);
    assert.equal(d.outcome, "rejected");
    assert.match(d.reason ?? "", /needs at least 2 aggregators; the switch has 1/);
  });

  it("helpers: water-filling and free gaps", () => {
    assert.deepEqual(waterFill(100, [60, 20, 60]), [40, 20, 40]);
    assert.deepEqual(waterFill(10, [3, 3]), [3, 3]);
    assert.deepEqual(waterFill(5, [10, 10]), [2, 2]);
    assert.deepEqual(
      gaps(10, [
        [2, 3],
        [3, 1],
        [8, 2],
      ]),
      [
        { offset: 0, size: 2 },
        { offset: 5, size: 3 },
      ],
    );
  });
});
