import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { QUEUE_SERIES_LINKS } from "../experiment/results.js";
import { parseScheduleScenario } from "../experiment/schedule.js";
import { formatTable } from "../experiment/table.js";
import { parseLayerTrace, ScenarioRunSchema } from "../proto/scenario.js";
import { runScenarioRun } from "../runner/run.js";
import { parseCli } from "../runtime/cli.js";
import { Engine } from "../sim/engine.js";
import { simulateCores } from "../sim/harness.js";
import { simulateSchedule } from "../sim/schedule.js";
import { DEFAULT_SIM_TIMING, simulateRun } from "../sim/simulate.js";
import { packetFixedPoint, StreamCheck } from "../sim/stream.js";
import { SimTimer } from "../sim/timers.js";
import type { Collective } from "../worker/collective.js";
import { outputDigest } from "../worker/workload.js";
import { testSeed } from "./seed.js";

const SCENARIOS = fileURLToPath(new URL("../../bench/scenarios/", import.meta.url));

describe("the simulator's engine", () => {
  it("runs events in time order, ties in the order scheduled, never going back in time", () => {
    const engine = new Engine();
    const seen: string[] = [];
    engine.at(30, () => seen.push(`c@${engine.now}`));
    engine.at(10, () => {
      seen.push(`a@${engine.now}`);
      engine.at(5, () => seen.push(`past@${engine.now}`)); // in the past: runs now
      engine.after(0, () => seen.push(`same@${engine.now}`));
    });
    engine.at(10, () => seen.push(`b@${engine.now}`));
    const cancelled = engine.at(20, () => seen.push("cancelled"));
    engine.cancel(cancelled);
    assert.equal(engine.run(), false);
    assert.deepEqual(seen, ["a@10", "b@10", "past@10", "same@10", "c@30"]);
    assert.equal(engine.executed, 5);
  });

  it("runs posted events (pooled records) in the same order as the others", () => {
    const engine = new Engine();
    const seen: string[] = [];
    const record = (tag: string) => seen.push(`${tag}@${engine.now}`);
    engine.post(20, record, "p1");
    engine.at(20, () => record("a1"));
    engine.post(10, record, "p0");
    engine.run();
    // Records are reused: posting again after they ran still works, in order.
    engine.post(engine.now + 5, record, "p2");
    engine.at(engine.now + 5, () => record("a2"));
    engine.run();
    assert.deepEqual(seen, ["p0@10", "p1@20", "a1@20", "p2@25", "a2@25"]);
  });

  it("stops at a time or when asked, with the rest still queued", () => {
    const engine = new Engine();
    let count = 0;
    for (let t = 1; t <= 100; t++) engine.at(t * 1000, () => count++);
    assert.equal(engine.run(50_000), true);
    assert.equal(count, 50);
    assert.equal(engine.now, 50_000);
    assert.equal(
      engine.run(Number.POSITIVE_INFINITY, () => count === 60),
      true,
    );
    assert.equal(count, 60);
    assert.equal(engine.pending, 40);
  });

  it("keeps a heap's order over many random events", () => {
    const engine = new Engine();
    let state = testSeed("engine heap", 61);
    const times: number[] = [];
    for (let i = 0; i < 5000; i++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      const t = state % 1000;
      engine.at(t, () => times.push(engine.now));
    }
    engine.run();
    for (let i = 1; i < times.length; i++) assert.ok(times[i] >= times[i - 1]);
    assert.equal(times.length, 5000);
  });
});

describe("a core's timer in virtual time", () => {
  /** A core with one deadline list: handleTimeout takes every deadline due. */
  const fakeCore = (deadlines: number[]) => {
    const handled: number[] = [];
    return {
      handled,
      deadlines,
      nextTimeout: () => (deadlines.length > 0 ? deadlines[0] : Number.POSITIVE_INFINITY),
      handleTimeout: (now: number) => {
        handled.push(now);
        while (deadlines.length > 0 && deadlines[0] <= now) deadlines.shift();
      },
    };
  };

  it("fires exactly at each deadline, after the events of its own ns, and not when nothing is pending", () => {
    const engine = new Engine();
    const core = fakeCore([0.5, 2, 2.000001]);
    const timer = new SimTimer(engine, core);
    const seen: string[] = [];
    engine.at(0, () => timer.rearm());
    // An event at the deadline's ns scheduled after the timer was armed still goes first.
    engine.at(2e6, () => seen.push(`delivery@${engine.now}`));
    engine.run();
    assert.deepEqual(core.handled, [0.5, 2, 2.000001]);
    assert.deepEqual(seen, ["delivery@2000000"]);
    assert.equal(timer.fired, 3);
    assert.equal(engine.pending, 0, "Infinity arms nothing");
  });

  it("moves its event earlier when the deadline does, and leaves it when it moves later", () => {
    const engine = new Engine();
    const core = fakeCore([10]);
    const timer = new SimTimer(engine, core);
    timer.rearm();
    core.deadlines.unshift(3);
    timer.rearm();
    core.deadlines.splice(0, 2, 20);
    timer.rearm();
    engine.run();
    // The event at 3 finds nothing due (the deadline moved to 20) and only arms again.
    assert.deepEqual(core.handled, [20]);
    assert.equal(timer.fired, 1);
  });

  it("ina-sim refuses the removed --tick-ms, saying why", () => {
    const spec = {
      command: "x",
      summary: "",
      options: {},
      removed: { "tick-ms": "timers fire at their deadlines" },
      schema: z.strictObject({}),
    };
    assert.throws(() => parseCli(spec, ["--tick-ms", "0.1"]), /--tick-ms: removed; timers fire/);
    assert.throws(() => parseCli(spec, ["--tick-ms=1"]), /--tick-ms: removed/);
  });
});

describe("ina-sim: scenarios in virtual time", () => {
  const lossy = (mode: "netreduce" | "atp" | "ps" | "ring") =>
    ScenarioRunSchema.parse({
      name: mode,
      aggregators: 64,
      faults: { loss: 0.01, duplicate: 0.01, reorder: 0.01 },
      links: { rate: "1Gbps", delay: "50us" },
      jobs: [{ mode, workers: 3, tensorBytes: "256KiB", window: 16 }],
    });

  it("gives the same result, to the byte, for the same scenario and seed", () => {
    const seed = testSeed("sim determinism", 67);
    for (const mode of ["netreduce", "atp", "ps", "ring"] as const) {
      const a = JSON.stringify(simulateRun(lossy(mode), seed));
      const b = JSON.stringify(simulateRun(lossy(mode), seed));
      assert.equal(a, b, mode);
      assert.equal(JSON.parse(a).verified, true, `${mode} verified`);
      assert.notEqual(JSON.stringify(simulateRun(lossy(mode), seed + 1)), a, "the seed matters");
    }
  });

  it("reports each iteration's all-reduce time and the communication share, as a real run does", () => {
    const seed = testSeed("sim communication share", 73);
    const computeMs = 10;
    const result = simulateRun(
      ScenarioRunSchema.parse({
        name: "share",
        links: { rate: "1Gbps", delay: "10us" },
        jobs: [{ mode: "netreduce", workers: 3, tensorBytes: "256KiB", iterations: 3, computeMs }],
      }),
      seed,
    );
    const [job] = result.jobs;
    assert.equal(job.iterationSeconds.length, 3);
    const communicating = job.iterationSeconds.reduce((a, b) => a + b, 0);
    // Symmetric workers: the job's time is its computations plus its all-reduces.
    assert.ok(
      Math.abs(communicating + (3 * computeMs) / 1000 - job.seconds) < 1e-9,
      `${communicating} s all-reducing + 0.03 s computing vs ${job.seconds} s`,
    );
    assert.equal(job.communicationShare, communicating / job.seconds);
  });

  it("recovers loss at 100 Gbit/s in little more than the lossless time: waits from the path, no stall per loss", () => {
    const seed = testSeed("sim loss cost", 71);
    const timing = { ...DEFAULT_SIM_TIMING, streamAboveBytes: 0 };
    for (const [mode, bound] of [
      ["netreduce", 2.5],
      ["atp", 3],
      ["ring", 2.5],
    ] as const) {
      const run = (loss: number) =>
        simulateRun(
          ScenarioRunSchema.parse({
            name: "loss",
            aggregators: 512,
            links: { rate: "100Gbps", delay: "1us" },
            faults: { loss },
            // What a loss costs the waits, not a CPU: the PS keeps up with the line.
            costs: { parameterServer: "none" },
            jobs: [{ mode, workers: 8, tensorBytes: "2MiB", window: 128 }],
          }),
          seed,
          timing,
        );
      const lossless = run(0).seconds;
      for (const [loss, most] of [
        [0.001, 1.5],
        [0.01, bound],
      ]) {
        const r = run(loss);
        assert.equal(r.verified, true, `${mode} at ${loss}: ${r.error}`);
        // Before waits came from the path: 50-170x (a 1-2 ms wait per loss).
        assert.ok(
          r.seconds <= most * lossless,
          `${mode} at ${loss}: ${r.seconds} s vs ${lossless} s`,
        );
      }
    }
  });

  it("reports the fullest ports' queue over time, agreeing with each port's mean queue", () => {
    const seed = testSeed("sim queue series", 25);
    const result = simulateRun(
      ScenarioRunSchema.parse({
        name: "incast",
        links: { rate: "1Gbps", delay: "10us", buffer: "256KiB", ecnThreshold: "32KiB" },
        jobs: [
          { mode: "ps", workers: 8, tensorBytes: "512KiB", window: 64, congestionControl: "dctcp" },
        ],
      }),
      seed,
    );
    assert.equal(result.verified, true, result.error);
    const links = result.links ?? [];
    const withSeries = links.filter((l) => l.queueSeries !== undefined);
    assert.equal(withSeries.length, QUEUE_SERIES_LINKS, "only the fullest few keep a series");
    const fullest = Math.max(...links.map((l) => l.queueMeanBytes));
    const ps = links.find((l) => l.host === "ps" && l.direction === "down");
    assert.equal(ps?.queueMeanBytes, fullest, "the incast port is the fullest");
    assert.ok(ps?.queueSeries !== undefined, "and keeps its series");
    assert.equal(ps.ecnThresholdBytes, 32 * 1024);
    for (const link of withSeries) {
      const s = link.queueSeries;
      if (s === undefined) continue;
      const name = `${link.host} ${link.direction}`;
      assert.ok(
        s.meanBytes.length > 0 && s.meanBytes.length <= 256,
        `${name}: ${s.meanBytes.length}`,
      );
      assert.equal(
        s.meanBytes.length,
        Math.ceil(s.spanMs / s.bucketMs),
        `${name}: covers its span`,
      );
      let area = 0;
      s.meanBytes.forEach((mean, k) => {
        area += mean * Math.min(s.bucketMs, s.spanMs - k * s.bucketMs);
      });
      // Whole bytes per bucket and for the mean: within a byte.
      assert.ok(
        Math.abs(area / s.spanMs - link.queueMeanBytes) <= 1,
        `${name}: series ${area / s.spanMs} B, run ${link.queueMeanBytes} B`,
      );
      assert.equal(Math.max(...s.maxBytes), Math.round(link.queueHighWaterBytes), name);
    }
  });

  it("runs ring collectives at the line rate: busbw at least 97 % of the payload line rate, 1.75 x NetReduce's time", () => {
    // 100 Gbit/s carries 1024 payload bytes in every 1056-byte packet: 12.12 GB/s of payload.
    const payloadLineMBps = (100e9 / 8 / 1e6) * (1024 / 1056);
    const seed = testSeed("ring line rate", 97);
    const run = (mode: "ring" | "netreduce", operation: Collective = "allReduce") =>
      simulateRun(
        ScenarioRunSchema.parse({
          name: `${mode} ${operation}`,
          aggregators: 512,
          links: { rate: "100Gbps", delay: "1us" },
          jobs: [{ mode, operation, workers: 8, tensorBytes: "8MiB" }],
        }),
        seed,
      ).jobs[0];
    const ring = run("ring");
    for (const job of [ring, run("ring", "reduceScatter"), run("ring", "allGather")]) {
      assert.equal(job.verified, true, job.operation);
      // Before acknowledgement ranges and control priority: 78 %.
      assert.ok(
        job.busbwMBps >= 0.97 * payloadLineMBps,
        `${job.operation}: busbw ${job.busbwMBps.toFixed(0)} MB/s, ${((100 * job.busbwMBps) / payloadLineMBps).toFixed(2)} % of ${payloadLineMBps.toFixed(0)}`,
      );
    }
    const ratio = ring.seconds / run("netreduce").seconds;
    assert.ok(ratio > 1.7 && ratio < 1.8, `ring / NetReduce ${ratio}, expected 2(N-1)/N = 1.75`);
  });

  it("a host's efficiency caps what its NIC sends (links.hostEfficiency)", () => {
    const run = (hostEfficiency?: number) =>
      simulateRun(
        ScenarioRunSchema.parse({
          name: "efficiency",
          links: { rate: "100Mbps", delay: "100us", hostEfficiency },
          jobs: [{ mode: "netreduce", workers: 4, tensorBytes: "1MiB", window: 64 }],
        }),
        1,
      );
    const full = run();
    const half = run(0.5);
    assert.equal(half.verified, true);
    const ratio = half.seconds / full.seconds;
    assert.ok(ratio > 1.9 && ratio < 2.1, `half the rate: ${ratio} x the time`);
    assert.ok(
      (half.links ?? []).some((l) => l.direction === "up" && l.rateBitsPerSecond === 50e6),
      "its NIC's rate is half the link's",
    );
  });

  it("agrees with the link model: NetReduce near size / rate + a round trip, PS N times that", () => {
    const run = (mode: "netreduce" | "ps", workers: number) =>
      simulateRun(
        ScenarioRunSchema.parse({
          name: mode,
          links: { rate: "100Mbps", delay: "100us" },
          jobs: [{ mode, workers, tensorBytes: "1MiB", window: 64 }],
        }),
        1,
      );
    const netreduce = run("netreduce", 4);
    // 1 MiB of payload in 1056-byte packets of 1024 bytes at 12.5 MB/s.
    const expected = (2 ** 20 * (1056 / 1024)) / 12.5e6;
    assert.ok(
      Math.abs(netreduce.seconds - expected) / expected < 0.05,
      `NetReduce ${netreduce.seconds} s, expected about ${expected} s`,
    );
    assert.equal(netreduce.bound, "link");
    const ps = run("ps", 4);
    const ratio = ps.seconds / netreduce.seconds;
    assert.ok(ratio > 3.6 && ratio < 4.4, `PS / NetReduce ${ratio}, expected about 4`);
  });

  it("produces the same outputs, bit for bit, as the core harness (sim/harness.ts) and as real processes", async () => {
    const seed = testSeed("sim equals real", 71);
    const spec = {
      mode: "netreduce" as const,
      workers: 2,
      tensorBytes: "128KiB",
      window: 16,
      seed,
    };
    const run = ScenarioRunSchema.parse({ name: "same", faults: { loss: 0.01 }, jobs: [spec] });
    const simulated = simulateRun(run, seed);
    const real = await runScenarioRun(run, { seed, timeoutMs: 60_000 });
    const net = simulateCores({
      jobs: [
        {
          mode: "netreduce",
          workers: 2,
          window: 16,
          seed,
          elements: (128 * 1024) / 4,
          elementsPerPacket: 256,
        },
      ],
      aggregators: 64,
      rates: { drop: 0.01, duplicate: 0, reorder: 0 },
      seed,
    });
    for (let w = 0; w < 2; w++) {
      const digest = simulated.jobs[0].perWorker[w].outputDigest;
      assert.equal(real.jobs[0].perWorker.find((p) => p.workerId === w)?.outputDigest, digest);
      assert.equal(outputDigest(net.jobs[0].outputs[w]), digest);
    }
    assert.equal(simulated.verified && real.verified, true);
  });
});

describe("ina-sim: parameter servers of jobs' own, and what a PS's CPU costs", () => {
  const cost = { perPacketNs: 1000, perElementNs: 4 };
  const twoJobs = (parameterServers: number, mode: "atp" | "ps", loss = 0) =>
    ScenarioRunSchema.parse({
      name: `${mode} own ${parameterServers}`,
      aggregators: 64,
      links: { rate: "10Gbps", delay: "2us" },
      faults: { loss },
      costs: { parameterServer: cost },
      jobs: [0, 1].map(() => ({
        mode,
        workers: 4,
        tensorBytes: "256KiB",
        window: 32,
        parameterServers,
      })),
    });

  it("sends each job's PSNs to its own PSes (PSN p to server p % n), exact under loss, on their own links", () => {
    const seed = testSeed("sim own parameter servers", 81);
    for (const mode of ["atp", "ps"] as const) {
      const r = simulateRun(twoJobs(2, mode, 0.01), seed);
      assert.equal(r.verified, true, `${mode}: ${r.error}`);
      const hosts = (r.links ?? []).map((l) => `${l.host} ${l.direction}`).sort();
      for (const job of ["1", "2"]) {
        for (const k of [0, 1]) {
          assert.ok(
            hosts.includes(`${mode}-${job} ps ${k} down`),
            `${mode}-${job} ps ${k}: ${hosts}`,
          );
        }
      }
      assert.ok(
        !hosts.some((h) => h.startsWith("ps ")),
        "no shared PS is made when no job uses it",
      );
      // Both servers of a job carry about half its PSNs (the link's bytes).
      const down = (name: string) =>
        r.links?.find((l) => l.host === name && l.direction === "down");
      const a = down(`${mode}-1 ps 0`)?.bytes ?? 0;
      const b = down(`${mode}-1 ps 1`)?.bytes ?? 0;
      assert.ok(a > 0 && b > 0 && Math.abs(a - b) / (a + b) < 0.2, `${a} vs ${b} bytes`);
      // The summed counters: every PSN completed once per job at the PSes (PS mode: 256 PSNs x 2 jobs).
      if (mode === "ps") assert.equal(r.ps?.aggregationsCompleted, 2 * 256);
    }
  });

  it("charges a PS's CPU per packet: PS jobs sharing one PS take about twice as long as each on its own", () => {
    const seed = testSeed("sim PS cost", 83);
    const shared = simulateRun(twoJobs(0, "ps"), seed);
    const own = simulateRun(twoJobs(1, "ps"), seed);
    const free = simulateRun(
      { ...twoJobs(0, "ps"), costs: { ...twoJobs(0, "ps").costs, parameterServer: "none" } },
      seed,
    );
    for (const r of [shared, own, free]) assert.equal(r.verified, true, r.error);
    // Virtual time, exact whatever the host's load.
    // 2 jobs x 4 workers x 256 packets of 256 elements, 2.024 us each: 4.1 ms of one CPU.
    const busy = 2 * 4 * 256 * (cost.perPacketNs + 256 * cost.perElementNs) * 1e-9;
    assert.ok(shared.seconds >= busy, `shared ${shared.seconds} s < ${busy} s of CPU`);
    assert.ok(
      own.seconds >= busy / 2 && own.seconds < 0.7 * shared.seconds,
      `own ${own.seconds} s, shared ${shared.seconds} s`,
    );
    assert.ok(free.seconds < own.seconds, `free ${free.seconds} s vs own ${own.seconds} s`);
    assert.equal(shared.bound, "host");
  });

  it("detects loss per PS: results of two PSes pass each other without a resend", () => {
    // Before RACK ran per PS, the busier PS's PSNs looked lost behind the
    // other's and were resent, which loaded it more: 1,138 resends per worker.
    const seed = testSeed("sim per-PS loss detection", 85);
    for (const mode of ["atp", "ps"] as const) {
      const r = simulateRun(twoJobs(2, mode), seed);
      assert.equal(r.verified, true, r.error);
      for (const job of r.jobs) {
        assert.deepEqual(
          job.perWorker.map((w) => w.retransmissions),
          [0, 0, 0, 0],
          `${mode}: ${job.name}`,
        );
      }
    }
  });

  it("ATP jobs behind busy PSes under 1 % loss finish: a timed-out PSN keeps the RTO backed off while others are answered", () => {
    // Before: a PSN waiting behind its PS's CPU queue was resent every base
    // RTO (each result of another PSN ended the backoff), every resend loaded
    // the PS more: 180,000 resends per worker, 2.9 s for a 0.15 s job, and
    // with the count of sends alone a give-up after 0.1 s.
    const J = 4;
    const run = ScenarioRunSchema.parse({
      name: "busy-ps-loss",
      aggregators: J * 128,
      atpPool: "firstCome",
      faults: { loss: 0.01 },
      links: { rate: "100Gbps", delay: "1us" },
      costs: { parameterServer: "calibrated" },
      jobs: Array.from({ length: J }, (_, j) => ({
        mode: "atp",
        workers: 8,
        tensorBytes: "2MiB",
        window: 128,
        iterations: 3,
        computeMs: 15,
        startMs: j * 10,
        parameterServers: 1,
        offset: j * 128,
        regionSize: 128,
      })),
    });
    const seed = testSeed("sim busy PS under loss", 3);
    const r = simulateRun(run, seed);
    assert.equal(r.verified, true, r.error);
    for (const job of r.jobs) {
      const most = Math.max(...job.perWorker.map((w) => w.retransmissions));
      assert.ok(most < 5000, `${job.name}: ${most} resends by one worker`);
    }
  });

  it("labels an ATP slice shared in the table only when another ATP job hashes into it", () => {
    const run = (name: string, slices: Array<[number, number]>) =>
      simulateRun(
        ScenarioRunSchema.parse({
          name,
          aggregators: 64,
          atpPool: "firstCome",
          jobs: slices.map(([offset, regionSize]) => ({
            mode: "atp",
            workers: 2,
            tensorBytes: "64KiB",
            window: 16,
            offset,
            regionSize,
          })),
        }),
        1,
      );
    const table = formatTable([
      run("shared", [
        [0, 64],
        [0, 64],
      ]),
      run("static", [
        [0, 32],
        [32, 32],
      ]),
    ]);
    const rows = table.split("\n").filter((l) => /^(shared|static) /.test(l));
    assert.equal(rows.length, 4, table);
    for (const row of rows) {
      assert.equal(row.includes(" shared "), row.startsWith("shared "), row);
    }
  });

  it("refuses PSes on a job that has none, naming the field", () => {
    const parsed = ScenarioRunSchema.safeParse({
      name: "x",
      jobs: [{ mode: "netreduce", workers: 2, parameterServers: 1 }],
    });
    assert.equal(parsed.success, false);
    const [issue] = parsed.error?.issues ?? [];
    assert.deepEqual(issue.path, ["jobs", 0, "parameterServers"]);
    assert.match(issue.message, /only ATP and PS jobs/);
  });
});

describe("ina-sim: streamed tensors", () => {
  it("streams a large job's tensors: every worker's digest equal, sampled packets exact, under loss", () => {
    const run = ScenarioRunSchema.parse({
      name: "streamed",
      faults: { loss: 0.01, duplicate: 0.01, reorder: 0.01 },
      links: { rate: "10Gbps", delay: "5us" },
      jobs: [
        { mode: "netreduce", workers: 4, tensorBytes: "4MiB", window: 32 },
        { mode: "atp", workers: 3, tensorBytes: "2MiB", window: 32 },
      ],
    });
    const seed = testSeed("sim streamed", 73);
    const streamed = simulateRun(run, seed, { ...DEFAULT_SIM_TIMING, streamAboveBytes: 0 });
    assert.equal(streamed.verified, true, JSON.stringify(streamed.jobs.map((j) => j.perWorker)));
    for (const job of streamed.jobs) {
      const digests = new Set(job.perWorker.map((w) => w.outputDigest));
      assert.equal(digests.size, 1, `${job.name}: one digest for every worker`);
      assert.ok(job.retransmissions > 0, "loss was recovered");
    }
    // Worker 0 checked every 64th packet against the exact sum.
    assert.equal(streamed.jobs[0].perWorker[0].notBitExact, 0);
  });

  it("catches a wrong sum and a worker that received something else", () => {
    const check = new StreamCheck(9, 3, 512, 20, 256, 1);
    const sums = new Int32Array(256);
    for (let w = 0; w < 3; w++) packetFixedPoint(9, w, 0, 256, 2 ** 20, sums, 0, true);
    check.streamFor(0).result(0, 256, sums, 0, false);
    check.streamFor(1).result(0, 256, sums, 0, false);
    assert.equal(check.verified(1), true);
    assert.equal(check.checkedElements, 256);
    sums[7]++;
    check.streamFor(2).result(0, 256, sums, 0, false);
    assert.equal(check.verified(2), false, "worker 2's digest differs");
    check.streamFor(0).result(256, 256, sums, 0, false);
    assert.ok(check.wrongElements > 0, "worker 0's sampled packet was not the exact sum");
  });
});

describe("ina-sim: scheduling scenarios", () => {
  it("runs the real memory manager and control plane in virtual time: EDF meets the deadlines FCFS misses, the same every time", () => {
    const scenario = parseScheduleScenario(
      JSON.parse(readFileSync(join(SCENARIOS, "deadlines.json"), "utf8")),
    );
    const edf = simulateSchedule(scenario, "edf");
    const fcfs = simulateSchedule(scenario, "fcfs");
    assert.equal(edf.verified && fcfs.verified, true);
    assert.equal(edf.deadlinesMet, edf.deadlineJobs, "EDF meets every deadline");
    assert.ok(
      fcfs.deadlinesMet < fcfs.deadlineJobs,
      "FCFS queues the MD jobs behind the long BE job",
    );
    // The long BE job's region shrinks and grows again under EDF as MD jobs come and go.
    const long = edf.jobs.find((j) => j.class === "be");
    assert.ok((long?.regions.length ?? 0) > 2, JSON.stringify(long?.regions));
    assert.equal(JSON.stringify(simulateSchedule(scenario, "edf")), JSON.stringify(edf));
  });

  it("splits each JCT into wait (to the first packet) and transfer (to the last result), as the processes do; a finished job's region goes at its last result", () => {
    const scenario = parseScheduleScenario({
      name: "split",
      seed: testSeed("sim schedule split", 7),
      policies: ["fcfs"],
      aggregators: 64,
      links: { rate: "100Mbps", delay: "50us" },
      jobs: [
        // holds every aggregator: the second job queues until it is done
        {
          name: "a",
          class: "be",
          workers: 2,
          tensorBytes: "512KiB",
          epochs: 2,
          computeMs: 5,
          aggregators: 64,
          window: 16,
        },
        {
          name: "b",
          class: "md",
          deadlineS: 30,
          workers: 2,
          tensorBytes: "256KiB",
          computeMs: 5,
          arriveMs: 10,
          aggregators: 64,
          window: 16,
        },
      ],
    });
    const result = simulateSchedule(scenario, "fcfs");
    assert.equal(result.verified, true);
    const [a, b] = result.jobs;
    for (const job of result.jobs) {
      assert.ok(job.waitS !== null && job.transferS !== null && job.jctS !== null, job.name);
      assert.ok(
        Math.abs(job.waitS + job.transferS - job.jctS) < 1e-9,
        `${job.name}: wait + transfer = JCT`,
      );
      assert.ok(
        job.transferS > 0.005,
        `${job.name}: the transfer holds at least the compute between epochs`,
      );
      // In virtual time the first packet leaves one computeMs after the region came.
      assert.ok(
        Math.abs(job.waitS - ((job.grantedS ?? Number.NaN) + 0.005)) < 1e-9,
        `${job.name} wait`,
      );
      assert.equal(job.verificationS, 0, "verifying takes no virtual time");
      assert.equal(job.heldAfterLastResultS, 0, "done at the last result");
      assert.equal(job.deadlineMet, job.deadlineS === null ? null : job.jctS <= job.deadlineS);
    }
    assert.equal(a.grantedS, 0);
    // b got a's region when a's last result came, on the same clock.
    assert.ok(
      Math.abs(b.arriveS + (b.grantedS ?? Number.NaN) - (a.arriveS + (a.jctS ?? Number.NaN))) <
        1e-9,
      `b granted at a's last result: ${JSON.stringify({ a, b })}`,
    );
  });
});

describe("ina-sim: per-layer traces", () => {
  it("reads a layer trace, naming the line of anything wrong", () => {
    const layers = parseLayerTrace(readFileSync(join(SCENARIOS, "traces", "cnn-8.csv"), "utf8"));
    assert.equal(layers.length, 8);
    assert.deepEqual(layers[0], { bytes: 4 * 2 ** 20, backwardMs: 0.4 });
    assert.throws(() => parseLayerTrace("bytes,backwardMs\n4MiB,1\nlots,2\n"), /line 3: expected/);
    assert.throws(() => parseLayerTrace("# nothing\n"), /no layers/);
  });

  it("all-reduces each layer as soon as its backward pass is done and the one before is all-reduced", () => {
    const result = simulateRun(
      ScenarioRunSchema.parse({
        name: "layers",
        links: { rate: "1Gbps", delay: "1us" },
        jobs: [
          {
            mode: "netreduce",
            workers: 2,
            window: 64,
            layers: [
              { bytes: "1MiB", backwardMs: 5 },
              { bytes: "1MiB", backwardMs: 0 },
            ],
          },
        ],
      }),
      1,
    );
    assert.equal(result.verified, true);
    // 1 MiB takes 2^20 x 1056/1024 bytes / 125 MB/s = 8.65 ms: the first
    // waits 5 ms for its gradient, the second for the first.
    const oneLayerMs = (2 ** 20 * (1056 / 1024) * 8) / 1e6;
    const expected = (5 + 2 * oneLayerMs) / 1000;
    assert.ok(
      Math.abs(result.seconds - expected) / expected < 0.05,
      `${result.seconds} s, expected about ${expected} s`,
    );
    assert.equal(result.jobs[0].bytesPerWorker, 2 * 2 ** 20);
  });
});
