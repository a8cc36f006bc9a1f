import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parseScenario } from "../experiment/scenario.js";
import { policyStatistics, repetitionSeed } from "../experiment/schedule.js";
import {
  expandScenario,
  JOB_COLUMNS,
  jobRows,
  medianInterval,
  POINT_COLUMNS,
  pointRow,
  pointStatistics,
  summarize,
} from "../experiment/sweep.js";
import { formatPointTable, formatPolicyStatistics } from "../experiment/table.js";
import { deriveSeed } from "../proto/prng.js";
import { SCRIPTS } from "../runner/run.js";
import { testSeed } from "./seed.js";

/** A CSV row's cells: commas inside quotes do not split. */
const cells = (row: string) => row.split(/,(?=(?:[^"]*"[^"]*")*[^"]*$)/);

const EXPERIMENT = SCRIPTS.switch.replace(/switch\/cli\.js$/, "runner/experiment.js");

describe("sweeps, repetitions and statistics", () => {
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  const scenario = parseScenario({
    name: "study",
    seed: 7,
    runs: [
      {
        name: "pool",
        sweep: { aggregators: [64, 16], workers: [2, 4] },
        repeat: 2,
        jobs: [
          { mode: "atp", workers: 2, tensorBytes: "1MiB" },
          { mode: "atp", workers: 3, tensorBytes: "1MiB" },
        ],
      },
      { name: "plain", jobs: [{ mode: "netreduce", workers: 2, tensorBytes: "1MiB" }] },
    ],
  });

  it("expands a sweep into its cartesian product, each point repeated with its own seed", () => {
    const runs = expandScenario(scenario);
    assert.deepEqual(
      runs.map((r) => r.run.name),
      // Keys in the schema's order (workers before aggregators), values as listed.
      [
        "pool[workers=2,aggregators=64]#1",
        "pool[workers=2,aggregators=16]#1",
        "pool[workers=4,aggregators=64]#1",
        "pool[workers=4,aggregators=16]#1",
        "pool[workers=2,aggregators=64]#2",
        "pool[workers=2,aggregators=16]#2",
        "pool[workers=4,aggregators=64]#2",
        "pool[workers=4,aggregators=16]#2",
        "plain",
      ],
    );
    const last = runs[7].run;
    assert.equal(last.aggregators, 16, "a run field goes on the run");
    assert.deepEqual(
      last.jobs.map((j) => j.workers),
      [4, 4],
      "a job field goes on every job",
    );
    assert.equal(
      new Set(runs.slice(0, 8).map((r) => r.seed)).size,
      8,
      "every repetition its own seed",
    );
    assert.equal(runs[8].seed, 7, "a run without sweep or repeat keeps the scenario's seed");
    assert.equal(expandScenario(scenario)[3].seed, runs[3].seed, "seeds are derived, not drawn");
    assert.equal(scenario.runs[0].aggregators, 512, "the scenario itself is unchanged");
  });

  it("computes the statistics as by hand", () => {
    const s = summarize([4, 1, 3, 2]);
    assert.ok(s !== null);
    assert.equal(s.n, 4);
    assert.equal(s.median, 2.5);
    assert.equal(s.mean, 2.5);
    assert.equal(s.min, 1);
    assert.equal(s.max, 4);
    const std = Math.sqrt(5 / 3); // squares 2.25 + 0.25 + 0.25 + 2.25 over n - 1
    assert.ok(Math.abs((s.std ?? Number.NaN) - std) < 1e-12);
    // n = 4: no order-statistic interval reaches 95 %; [min, max] covers the median with 1 - 2/16.
    assert.deepEqual(s.medianCi, { low: 1, high: 4, confidence: 1 - 2 / 16 });
    const one = summarize([5]);
    assert.equal(one?.medianCi, null, "no interval from one value");
    assert.equal(one?.std, null, "no spread from one value");
    assert.equal(summarize([Number.NaN]), null);
  });

  it("gives the median's order-statistic interval, with the confidence it has", () => {
    // The three runs: the median 4.29 and [min, max], which covers the median 75 % of the time.
    const s = summarize([11.48, 3.5, 4.29]);
    assert.equal(s?.median, 4.29);
    assert.deepEqual(s?.medianCi, { low: 3.5, high: 11.48, confidence: 0.75 });
    const sorted = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
    // Textbook values: n = 10 -> [x(2), x(9)] at 97.85 %; n = 20 -> [x(6), x(15)] at 95.86 %.
    const ten = medianInterval(sorted(10));
    assert.deepEqual([ten?.low, ten?.high], [2, 9]);
    assert.ok(Math.abs((ten?.confidence ?? 0) - (1 - 2 * (11 / 1024))) < 1e-12);
    const twenty = medianInterval(sorted(20));
    assert.deepEqual([twenty?.low, twenty?.high], [6, 15]);
    assert.ok(Math.abs((twenty?.confidence ?? 0) - 0.9586105) < 1e-6);
    assert.deepEqual(medianInterval(sorted(6)), { low: 1, high: 6, confidence: 1 - 2 / 64 });
    assert.equal(medianInterval([7]), null);
    // Many values: the binomial's tail in logs, no underflow to a zero-width or NaN interval.
    const big = medianInterval(sorted(5000));
    assert.ok(big !== null && big.confidence >= 0.95 && big.low < 2500 && big.high > 2500);
  });

  it("keeps every interval inside the values, around the median, and the same for the same values", () => {
    const seed = testSeed("median intervals", 26);
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + (deriveSeed(seed, trial) % 40);
      // Skewed, non-negative samples (times, rates): a few large, most small.
      const values = Array.from({ length: n }, (_, i) => {
        const u = (deriveSeed(seed, trial * 100 + i) % 10_000) / 10_000;
        return -Math.log(1 - u) * 3;
      });
      const s = summarize(values);
      assert.ok(s !== null);
      if (n < 2) {
        assert.equal(s.medianCi, null, `n=${n}`);
        continue;
      }
      const ci = s.medianCi;
      assert.ok(ci !== null);
      assert.ok(ci.low >= 0 && ci.low >= s.min && ci.high <= s.max, `n=${n}: inside the values`);
      assert.ok(ci.low <= s.median && s.median <= ci.high, `n=${n}: contains the median`);
      assert.ok(n < 6 || ci.confidence >= 0.95, `n=${n}: 95 % once it can be had`);
      assert.deepEqual(summarize([...values].reverse()), s, "deterministic, whatever the order");
    }
  });

  it("prints n/a and leaves CSV cells empty for an interval of one repetition, and n beside each", () => {
    const base = {
      point: "pool[aggregators=16]",
      run: "pool",
      values: { aggregators: 16 },
      mode: "atp",
      failed: 0,
      hostBound: 0,
      retransmissions: null,
      fallbackFraction: null,
      iterationSeconds: null,
    };
    const one = {
      ...base,
      job: "atp-1",
      repetitions: 1,
      seconds: summarize([3.5]),
      goodputMBps: summarize([2]),
    };
    const three = {
      ...base,
      job: "atp-2",
      repetitions: 3,
      hostBound: 2,
      seconds: summarize([11.48, 3.5, 4.29]),
      goodputMBps: summarize([0.7, 2.4, 2]),
    };
    const table = formatPointTable([one, three]);
    const [header, first, second] = table.split("\n");
    assert.match(header, /\bn\b.*interval conf\..*time: median \[interval\]/);
    assert.match(first, /atp-1\s+1\s+0\s+0\s+n\/a\s+3\.50 \[n\/a\] s/);
    assert.match(
      second,
      /atp-2\s+3\s+0\s+2\s+75%\s+4\.29 \[3\.50, 11\.5\] s\s+2\.00 \[0\.700, 2\.40\] MB\/s/,
    );
    assert.doesNotMatch(table, /±/, "no mean ± half-width anywhere");
    assert.match(table, /warning: pool\[aggregators=16\]: host-bound in 2 of 3 repetitions/);
    const row = (p: typeof one) => {
      const c = cells(pointRow(p));
      return (name: string) => c[POINT_COLUMNS.indexOf(name)];
    };
    const single = row(one);
    assert.equal(single("seconds_n"), "1");
    assert.equal(single("seconds_median"), "3.5");
    for (const empty of [
      "seconds_medianCiLow",
      "seconds_medianCiHigh",
      "seconds_medianCiConfidence",
      "seconds_std",
    ]) {
      assert.equal(single(empty), "", `${empty} is empty for n = 1`);
    }
    const triple = row(three);
    assert.deepEqual(
      [
        "seconds_medianCiLow",
        "seconds_medianCiHigh",
        "seconds_medianCiConfidence",
        "hostBound",
      ].map(triple),
      ["3.5", "11.48", "0.75", "2"],
    );
    assert.ok(!POINT_COLUMNS.some((c) => /ci95/.test(c)), "no column of the mean's t interval");
    const policies = formatPolicyStatistics([
      {
        policy: "edf",
        repetitions: 3,
        failed: 0,
        averageJctS: summarize([4, 5, 4.5]),
        deadlinesMet: summarize([3, 3, 2]),
        deadlineJobs: 3,
      },
    ]);
    assert.match(policies, /edf\s+3\s+0\s+75%\s+4\.50 \[4\.00, 5\.00\] s\s+3\.0 \[2\.0, 3\.0\]/);
  });

  it("writes tidy CSV rows with every column, a failed repetition as a row naming why", () => {
    const runs = expandScenario(scenario);
    const job = {
      name: "atp-1",
      mode: "atp" as const,
      workers: 2,
      bytesPerWorker: 1,
      iterations: 2,
      seconds: 0.5,
      goodputMBps: 10,
      algbwMBps: 10,
      busbwMBps: 10,
      retransmissions: 3,
      collisions: 1,
      fallbackFraction: 0.25,
      verified: true,
      iterationSeconds: [0.3, 0.2],
    };
    const ok = { name: "x", jobs: [job, { ...job, name: "atp-2" }], bound: null, verified: true };
    const failed = {
      name: "y",
      jobs: [],
      bound: null,
      verified: false,
      error: 'no "result", sorry',
    };
    const rows = jobRows(runs[0], ok as never);
    assert.equal(rows.length, 2);
    for (const row of [...rows, ...jobRows(runs[4], failed as never)]) {
      assert.equal(cells(row).length, JOB_COLUMNS.length, row);
    }
    assert.match(jobRows(runs[4], failed as never)[0], /"no ""result"", sorry"$/);
    const stats = pointStatistics(runs.slice(0, 5), [ok, ok, ok, ok, failed] as never, () => 1);
    const first = stats.find(
      (p) => p.point === "pool[workers=2,aggregators=64]" && p.job === "atp-1",
    );
    assert.equal(first?.repetitions, 2);
    assert.equal(first?.failed, 1);
    assert.equal(first?.iterationSeconds?.median, 0.2, "the warm-up iteration is left out");
    for (const p of stats) assert.equal(cells(pointRow(p)).length, POINT_COLUMNS.length);
  });

  it("repeats a scheduling scenario's policies with derived seeds, and summarizes each policy", () => {
    assert.equal(repetitionSeed(5, 0), 5);
    assert.notEqual(repetitionSeed(5, 1), repetitionSeed(5, 2));
    const result = (policy: "edf" | "fcfs", jct: number, met: number, error?: string) => ({
      policy,
      jobs: [],
      averageJctS: jct,
      deadlinesMet: met,
      deadlineJobs: 3,
      verified: error === undefined,
      switch: {},
      ...(error === undefined ? {} : { error }),
    });
    const stats = policyStatistics([
      result("edf", 1, 3),
      result("fcfs", 4, 0),
      result("edf", 3, 2),
      result("fcfs", 6, 1),
      result("edf", 0, 0, "switch died"),
    ]);
    assert.deepEqual(
      stats.map((p) => [
        p.policy,
        p.repetitions,
        p.failed,
        p.averageJctS?.median,
        p.deadlinesMet?.mean,
      ]),
      [
        ["edf", 3, 1, 2, 2.5],
        ["fcfs", 2, 0, 5, 0.5],
      ],
    );
  });

  it("keeps the other points' results when one fails, and exits 1 naming it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ina-test-"));
    dirs.push(dir);
    const path = join(dir, "lossy.json");
    await writeFile(
      path,
      JSON.stringify({
        name: "lossy",
        runs: [
          {
            name: "loss",
            sweep: { loss: [0, 1] },
            jobs: [{ mode: "netreduce", workers: 2, tensorBytes: "64KiB" }],
          },
        ],
      }),
    );
    const r = spawnSync(
      process.execPath,
      [EXPERIMENT, "--scenario", path, "--timeout-s", "5", "--results", dir, "--scrape-dir", ""],
      { encoding: "utf8", timeout: 120_000 },
    );
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stdout, /^loss\[loss=1\]: FAILED: /m);
    const json = (await readdir(dir)).find((n) => n.startsWith("lossy-") && n.endsWith(".json"));
    const output = JSON.parse(await readFile(join(dir, String(json)), "utf8"));
    assert.deepEqual(
      output.runs.map((run: { name: string; verified: boolean }) => [run.name, run.verified]),
      [
        ["loss[loss=0]", true],
        ["loss[loss=1]", false],
      ],
    );
    assert.equal(output.complete, true);
    assert.match(output.provenance.scenarioSha256, /^[0-9a-f]{64}$/);
    assert.equal(output.provenance.node, process.version);
    const csv = (await readdir(dir)).find((n) => n.endsWith(".jobs.csv"));
    const lines = (await readFile(join(dir, String(csv)), "utf8")).trim().split("\n");
    assert.equal(lines.length, 3, "a header and one row per repetition's job");
    assert.match(
      lines[2],
      /^loss\[loss=1\],loss,.*no "result"|^loss\[loss=1\],loss,.*no ""result""/,
    );
  });
});
