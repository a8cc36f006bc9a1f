import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { OccupancySampler } from "../experiment/occupancy.js";
import { parseScheduleScenario } from "../experiment/schedule.js";
import { atpIndex } from "../proto/addressing.js";
import { parseSwitchConfig } from "../proto/config.js";
import { JobSubmitSchema } from "../proto/control.js";
import type { SwitchStatsRecord } from "../proto/records.js";
import { ScenarioRunSchema } from "../proto/scenario.js";
import { DESTINATION_ALL_WORKERS, PacketType, WORKER_ID_NONE } from "../proto/wire.js";
import { simulateSchedule } from "../sim/schedule.js";
import { simulateRun } from "../sim/simulate.js";
import { ControlPlane } from "../switch/control.js";
import { SwitchCore } from "../switch/core.js";
import { type JobSpec, MemoryManager } from "../switch/memory.js";
import { switchReport } from "../switch/report.js";
import { contribution, packet } from "./packets.js";

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

describe("the shared and esa policies", () => {
  const spec = (id: number, mode: "atp" | "netreduce" = "atp"): JobSpec => ({
    id,
    name: `job-${id}`,
    jobClass: "be",
    mode,
    workers: 2,
    modelBytes: 1e6,
    epochs: 1,
    computeMs: 0,
    throughputBytesPerSecond: 1e9,
    rttMs: 1,
  });

  it("give every ATP job the whole pool the config's jobs leave, never move it, and refuse NetReduce jobs", () => {
    for (const policy of ["shared", "esa"] as const) {
      const m = new MemoryManager({
        aggregators: 100,
        bytesPerAggregator: 1024,
        policy,
        reserved: [[0, 20]],
      });
      m.submit(spec(1), 0);
      m.submit(spec(2), 1);
      const netreduce = m.submit(spec(3, "netreduce"), 2);
      m.submit(spec(4), 3);
      for (const id of [1, 2, 4]) {
        assert.deepEqual(
          m.get(id).region,
          { offset: 20, size: 80, epoch: 0 },
          `${policy} job ${id}`,
        );
        assert.equal(m.get(id).history.length, 1);
      }
      assert.equal(netreduce[0].outcome, "rejected");
      assert.match(m.get(3).reason ?? "", /NetReduce job needs a region of its own/);
      m.finish(1, 4);
      assert.deepEqual(m.get(2).region, { offset: 20, size: 80, epoch: 0 });
    }
  });

  it("set the switch's ATP pool through the control plane: shared is first come, esa preempts", () => {
    for (const [policy, pool] of [
      ["shared", "firstCome"],
      ["esa", "esa"],
      ["edf", "fairShare"],
    ] as const) {
      const core = new SwitchCore(parseSwitchConfig({ aggregators: 8, jobs: [] }), {
        send: () => {},
      });
      const control = new ControlPlane({
        manager: new MemoryManager({ aggregators: 8, bytesPerAggregator: 1024, policy }),
        core,
        dataAddress: { host: "127.0.0.1", port: 1 },
        now: () => 0,
        hasParameterServer: true,
      });
      assert.equal(core.atpPool, pool, policy);
      control.submit(
        JobSubmitSchema.parse({
          id: 5,
          class: "be",
          mode: "atp",
          workers: 3,
          modelBytes: 1000,
          epochs: 2,
          window: 4,
        }),
      );
      // What an esa pool ranks it by: 3 workers x 1000 bytes x 2 epochs.
      assert.equal(core.job(5)?.totalBytes, 6000, policy);
      if (pool !== "fairShare") assert.equal(core.job(5)?.quota, 0);
    }
  });

  it("in a simulated scheduling scenario, esa lowers shared's average JCT; the ATP jobs know their sizes from their submissions", () => {
    const scenario = parseScheduleScenario({
      name: "esa-schedule",
      seed: SEED,
      aggregators: 64,
      links: { rate: "100Gbps", delay: "1us" },
      jobs: (
        [
          ["big", "1MiB", 0],
          ["mid", "256KiB", 0.05],
          ["small", "128KiB", 0.1],
        ] as const
      ).map(([name, tensorBytes, arriveMs]) => ({
        name,
        class: "be",
        mode: "atp",
        workers: 3,
        tensorBytes,
        window: 32,
        arriveMs,
      })),
    });
    const shared = simulateSchedule(scenario, "shared");
    const esa = simulateSchedule(scenario, "esa");
    for (const r of [shared, esa]) {
      assert.equal(r.verified, true, `${r.policy}: ${r.error ?? "a job did not verify"}`);
      // Every job hashes into the whole pool from its arrival on.
      for (const job of r.jobs)
        assert.deepEqual(
          job.regions.map((g) => [g.offset, g.size]),
          [[0, 64]],
        );
    }
    assert.equal((shared.switch as SwitchStatsRecord).preemptions, 0);
    assert.ok((esa.switch as SwitchStatsRecord).preemptions > 0);
    assert.ok(
      esa.averageJctS < shared.averageJctS,
      `average JCT: esa ${esa.averageJctS} s, shared ${shared.averageJctS} s`,
    );
    assert.ok(esa.occupancy !== undefined && esa.occupancy.meanFraction > 0);
  });
});

describe("pool occupancy and the atpPool field", () => {
  it("the switch integrates the aggregators held over time: mean and peak fraction", () => {
    const PS = { host: "127.0.0.1", port: 9000 };
    const job = { id: 1, mode: "atp" as const, fanIn: 2, offset: 0, regionSize: 8, window: 4 };
    const core = new SwitchCore(
      parseSwitchConfig({
        aggregators: 8,
        elementsPerAggregator: 4,
        jobs: [job],
        parameterServer: PS,
      }),
      { send: () => {} },
    );
    const index = atpIndex(1, 0, 0, 8);
    core.receive(
      contribution({ ...job }, 0, 0, [1], { aggregatorIndex: index }),
      5000,
      "127.0.0.1",
      0,
    );
    core.receive(
      contribution({ ...job }, 1, 0, [1], { aggregatorIndex: index }),
      5001,
      "127.0.0.1",
      4,
    );
    // Held from 0 to 10 ms: the PS's ack frees it at 10; nothing held until 20.
    core.receive(
      packet(
        {
          type: PacketType.ack,
          jobId: 1,
          workerId: WORKER_ID_NONE,
          fanIn: 2,
          psn: 0,
          aggregatorIndex: index,
          bitmap: 0b11,
          scaleBits: 8,
          destination: DESTINATION_ALL_WORKERS,
        },
        [2],
      ),
      PS.port,
      PS.host,
      10,
    );
    assert.equal(core.aggregators.held, 0);
    core.receive(
      contribution({ ...job }, 0, 1, [1], { aggregatorIndex: 7 }),
      5000,
      "127.0.0.1",
      20,
    );
    const occupancy = switchReport(core).occupancy;
    assert.deepEqual(occupancy, { meanFraction: 10 / 20 / 8, peakFraction: 1 / 8, aggregators: 8 });
  });

  it("the sampler keeps at most 256 points: pairs merge and the sampling period doubles", () => {
    const sampler = new OccupancySampler(0.1);
    let t = 0;
    // Half the pool held for the first 50 ms, none after, to 150 ms.
    while (t < 150) {
      sampler.sample(t < 50 ? 4 : 0, 8);
      t += sampler.periodMs;
    }
    const series = sampler.series();
    assert.ok(series.points.length <= 256 && series.points.length > 128, `${series.points.length}`);
    assert.equal(series.periodMs, 0.8);
    assert.ok(Math.abs(series.meanFraction - 0.5 / 3) < 0.01, `${series.meanFraction}`);
    assert.equal(series.peakFraction, 0.5);
    assert.equal(series.points[0][1], 0.5);
    assert.equal(series.points.at(-1)?.[1], 0);
    assert.equal(series.points[10][0], (10 * 0.8) / 1000);
  });

  it("a bad atpPool is refused, naming the field", () => {
    assert.throws(() => parseSwitchConfig({ aggregators: 8, atpPool: "lottery" }), /atpPool: /);
    assert.equal(
      ScenarioRunSchema.safeParse({
        name: "r",
        atpPool: "lottery",
        jobs: [{ mode: "atp", workers: 2 }],
      }).error?.issues[0].path.join("."),
      "atpPool",
    );
  });
});
