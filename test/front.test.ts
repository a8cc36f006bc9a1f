import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  applyStudyOptions,
  checkTensorMemory,
  parseSizes,
  SCENARIOS_DIR,
} from "../experiment/front.js";
import { formatDuration, SweepProgress, workerFraction } from "../experiment/progress.js";
import { parseScenario } from "../experiment/scenario.js";
import { expandScenario } from "../experiment/sweep.js";
import { formatBandwidth, formatBytes, formatSeconds } from "../experiment/table.js";
import { simulateCores } from "../sim/harness.js";
import { testSeed } from "./seed.js";

/**
 * The front door both commands share (experiment/front.ts): units in the
 * tables, --sizes, the memory check, progress; and ina-sim as a process:
 * its errors, its warning for runs without links, and its results files.
 */

const SIM = fileURLToPath(new URL("../sim/cli.js", import.meta.url));
const EXPERIMENT = fileURLToPath(new URL("../runner/experiment.js", import.meta.url));

function run(script: string, args: string[]) {
  return spawnSync(process.execPath, [script, ...args], { encoding: "utf8", timeout: 120_000 });
}

describe("units in the tables", () => {
  it("times in µs, ms or s, three significant digits", () => {
    assert.equal(formatSeconds(0.000128), "128 µs");
    assert.equal(formatSeconds(0.0000232), "23.2 µs");
    assert.equal(formatSeconds(0.0032), "3.20 ms");
    assert.equal(formatSeconds(0.99996), "1000 ms");
    assert.equal(formatSeconds(1.25), "1.25 s");
    assert.equal(formatSeconds(125.4), "125 s");
    assert.equal(formatSeconds(0), "0 s");
    assert.equal(formatSeconds(Number.NaN), "-");
  });

  it("bandwidths in MB/s up to 1000, then GB/s; below 1 MB/s in kB/s or B/s", () => {
    assert.equal(formatBandwidth(131072), "131 GB/s");
    assert.equal(formatBandwidth(12_100), "12.1 GB/s");
    assert.equal(formatBandwidth(999.9), "1000 MB/s");
    assert.equal(formatBandwidth(850), "850 MB/s");
    assert.equal(formatBandwidth(9.999), "10.0 MB/s");
    assert.equal(formatBandwidth(0.512), "512 kB/s");
    assert.equal(formatBandwidth(0.000975), "975 B/s");
    assert.equal(formatBandwidth(Number.NaN), "-");
  });

  it("bytes in binary units", () => {
    assert.equal(formatBytes(512), "512 B");
    assert.equal(formatBytes(65536), "64.0 KiB");
    assert.equal(formatBytes(16 * 2 ** 20), "16.0 MiB");
    assert.equal(formatBytes(384 * 2 ** 30), "384 GiB");
  });

  it("durations of a sweep: seconds, then minutes, then hours", () => {
    assert.equal(formatDuration(12.4), "12 s");
    assert.equal(formatDuration(245), "4 min 05 s");
    assert.equal(formatDuration(3720 * 2), "2 h 04 min");
    assert.equal(formatDuration(Number.NaN), "-");
  });
});

describe("--sizes", () => {
  it("FROM:TO:xF is geometric, FROM:TO:+STEP arithmetic, a list is taken as it is", () => {
    assert.deepEqual(
      parseSizes("64KiB:1MiB:x2"),
      [64, 128, 256, 512, 1024].map((k) => k * 1024),
    );
    assert.deepEqual(
      parseSizes("1MiB:3MiB:+1MiB"),
      [1, 2, 3].map((m) => m * 2 ** 20),
    );
    assert.deepEqual(parseSizes("4KiB, 1MiB"), [4096, 2 ** 20]);
    // nccl-tests' -b 8 -e 128M -f 2: 25 sizes.
    assert.equal(parseSizes("8:128MiB:x2").length, 25);
    // A factor that is not a power of two keeps whole float32s.
    for (const bytes of parseSizes("4KiB:1MiB:x1.5")) assert.equal(bytes % 4, 0);
  });

  it("a bad sweep is named with what is wrong", () => {
    assert.throws(() => parseSizes("1MiB:64KiB:x2"), /TO \(64KiB\) is below FROM \(1MiB\)/);
    assert.throws(() => parseSizes("64KiB:1MiB:x1"), /factor must be above 1/);
    assert.throws(() => parseSizes("3:8:x2"), /FROM "3": must be a positive multiple of 4/);
    assert.throws(() => parseSizes("64KiB:8GiB:x2"), /TO "8GiB": at most 4 GiB/);
    assert.throws(() => parseSizes("4:1GiB:+4"), /more than 64 sizes/);
    assert.throws(() => parseSizes("1MiB:2MiB"), /expected FROM:TO:xFACTOR/);
    assert.throws(() => parseSizes("1MiB,lots"), /size "lots": not a byte size/);
  });

  it("sweeps every run's tensorBytes; --repeat and --warmup replace the runs' own", () => {
    const scenario = parseScenario({
      name: "s",
      runs: [
        { name: "a", repeat: 3, jobs: [{ mode: "netreduce", workers: 2 }] },
        { name: "b", warmup: 1, jobs: [{ mode: "ring", workers: 2 }] },
      ],
    });
    const swept = applyStudyOptions(scenario, { sizes: [4096, 8192], repeat: 2, warmup: 0 });
    assert.throws(
      () => applyStudyOptions(scenario, { warmup: 1 }),
      /--warmup 1: run a has a job of 1 iteration\(s\), which would leave none to measure/,
    );
    assert.deepEqual(
      swept.runs.map((r) => [r.sweep?.tensorBytes, r.repeat, r.warmup]),
      [
        [[4096, 8192], 2, 0],
        [[4096, 8192], 2, 0],
      ],
    );
    assert.equal(expandScenario(swept).length, 8);
    assert.throws(
      () => applyStudyOptions(scenario, { sizes: [4096], tensorBytes: 4096 }),
      /--sizes and --tensor-bytes: give one/,
    );
  });
});

describe("the memory check", () => {
  const scenario = parseScenario({
    name: "big",
    runs: [
      { name: "ina", jobs: [{ mode: "netreduce", workers: 32, tensorBytes: "1GiB" }] },
      { name: "ring", jobs: [{ mode: "ring", workers: 8, tensorBytes: "1GiB" }] },
    ],
  });
  const expanded = expandScenario(scenario);
  const GiB = 2 ** 30;

  it("refuses the run whose tensors exceed the machine, with the numbers", () => {
    assert.throws(
      () => checkTensorMemory(expanded, undefined, { totalBytes: 23 * GiB, freeBytes: 20 * GiB }),
      /run ina needs 64\.0 GiB for its tensors \(32 workers x 1\.00 GiB x 2 copies.*this machine has 23\.0 GiB \(20\.0 GiB free\)/,
    );
  });

  it("passes what fits, warns when it fits only in the total, and leaves out what is streamed", () => {
    const warnings: string[] = [];
    checkTensorMemory(expanded, undefined, { totalBytes: 80 * GiB, freeBytes: 40 * GiB }, (w) =>
      warnings.push(w),
    );
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /run ina needs 64\.0 GiB .*\(40\.0 GiB free\)/);
    // The simulator streams large NetReduce jobs: only the ring's 8 x 1 GiB x 3 is held.
    assert.throws(
      () =>
        checkTensorMemory(expanded, (job) => job.mode === "ring", {
          totalBytes: 23 * GiB,
          freeBytes: 23 * GiB,
        }),
      /run ring needs 24\.0 GiB/,
    );
  });
});

describe("progress", () => {
  it("a ring worker's fraction is taken against its own packets and ends at 100 %", () => {
    const seed = testSeed("ring progress", 61);
    const workers = 4;
    const elements = 40_000;
    const elementsPerPacket = 250;
    const sim = simulateCores({
      jobs: [{ mode: "ring", workers, elements, window: 16, elementsPerPacket, seed }],
      aggregators: 1,
      rates: { drop: 0, duplicate: 0, reorder: 0 },
      seed,
      calls: 2,
    });
    const tensorPackets = elements / elementsPerPacket;
    for (const core of sim.jobs[0].collectives) {
      assert.equal(core.completedPackets, core.totalPackets);
      // A ring worker counts every step's packets, sent and received:
      // 2 x 2(N-1)/N of the tensor's, so counting them against the tensor's
      // packets (the old way) said 300 %.
      assert.equal(core.totalPackets / tensorPackets, (2 * 2 * (workers - 1)) / workers);
      // The last of 2 iterations, all its packets in: exactly 100 %, and half way after the first.
      assert.equal(workerFraction(1, core.completedPackets, core.totalPackets, 2), 1);
      assert.equal(workerFraction(0, core.completedPackets, core.totalPackets, 2), 0.5);
      assert.equal(workerFraction(0, core.totalPackets / 2, core.totalPackets, 2), 0.25);
    }
  });

  it("a sweep says its position, elapsed time and ETA", () => {
    const lines: string[] = [];
    let now = 0;
    const progress = new SweepProgress(
      15,
      (line) => lines.push(line),
      () => now,
    );
    progress.start(0, "a", "ring");
    now = 4000;
    progress.finish();
    now = 6000;
    progress.finish();
    progress.start(2, "c", "ring");
    assert.equal(lines[0], "  run 1/15 a: ring (elapsed 0 s)\n");
    // 6 s for 2 runs: 13 runs left take 39 s.
    assert.equal(lines[1], "  run 3/15 c: ring (elapsed 6 s, ETA 39 s)\n");
  });
});

describe("ina-sim and ina-experiment as processes", () => {
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });
  const tempDir = async () => {
    const dir = await mkdtemp(join(tmpdir(), "ina-front-"));
    dirs.push(dir);
    return dir;
  };

  it("a tensor past 4 GiB per worker is refused naming the limit, and nothing is written", async () => {
    const dir = await tempDir();
    const results = join(dir, "results");
    for (const [script, args, given] of [
      [SIM, ["--size", "64GiB"], 64],
      [SIM, ["--tensor-bytes", "1TiB"], 1024],
      [EXPERIMENT, ["--size", "64GiB", "--scrape-dir", ""], 64],
    ] as const) {
      const r = run(script, [...args, "--results", results]);
      assert.equal(r.status, 2, r.stderr);
      assert.ok(
        r.stderr.includes(
          `--tensor-bytes: at most 4 GiB (4294967296 bytes) per worker, got ${given} GiB`,
        ),
        r.stderr,
      );
      assert.doesNotMatch(r.stderr, /Invalid typed array length|not a byte size/);
      assert.equal(existsSync(results), false, `${args.join(" ")}: no results folder`);
    }
  });

  it("tensors larger than this machine's memory are refused before any file is written", async () => {
    const dir = await tempDir();
    const results = join(dir, "results");
    // 32 ring workers x 4 GiB x 3 copies: 384 GiB.
    const sim = run(SIM, ["--workers", "32", "--tensor-bytes", "4GiB", "--results", results]);
    assert.equal(sim.status, 2, sim.stderr);
    assert.match(
      sim.stderr,
      /run ring needs 384 GiB for its tensors \(32 workers x 4\.00 GiB x 3 copies.*this machine has [\d.]+ GiB/,
    );
    const scrape = join(dir, "scrape");
    const experiment = run(EXPERIMENT, [
      ...["--workers", "32", "--tensor-bytes", "4GiB", "--only", "ps"],
      ...["--results", results, "--scrape-dir", scrape],
    ]);
    assert.equal(experiment.status, 2, experiment.stderr);
    assert.match(experiment.stderr, /run ps needs 256 GiB for its tensors/);
    assert.equal(existsSync(results), false);
    assert.equal(existsSync(scrape), false);
  });

  it("a bad --sizes exits 2 naming the option", () => {
    const r = run(SIM, ["--sizes", "1MiB:64KiB:x2", "--results", ""]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^ina-sim: --sizes: TO \(64KiB\) is below FROM \(1MiB\)$/m);
    const both = run(SIM, [
      "--sizes",
      "64KiB:128KiB:x2",
      "--tensor-bytes",
      "4KiB",
      "--results",
      "",
    ]);
    assert.equal(both.status, 2);
    assert.match(both.stderr, /--sizes and --tensor-bytes: give one/);
  });

  it("the default scenario has links; a run without warns that its times are processing only", async () => {
    const linked = run(SIM, [
      ...["--only", "netreduce", "--workers", "2", "--tensor-bytes", "64KiB", "--results", ""],
    ]);
    assert.equal(linked.status, 0, linked.stderr);
    assert.match(linked.stderr, /scenario sim-compare, 1 run\(s\)/);
    assert.doesNotMatch(linked.stderr, /no links/);
    assert.match(
      linked.stdout,
      /^netreduce\s+job\s+netreduce\s+2\s+64\.0 KiB\s.*\slink\s+0\s+yes$/m,
    );
    const bare = run(SIM, [
      ...["--scenario", join(SCENARIOS_DIR, "compare.json"), "--only", "ring,ps"],
      ...["--workers", "2", "--tensor-bytes", "64KiB", "--results", ""],
    ]);
    assert.equal(bare.status, 0, bare.stderr);
    assert.match(
      bare.stderr,
      /^ina-sim: warning: runs ps, ring have no links: .*modelled processing times only/m,
    );
  });

  it("a size sweep with --repeat ends with a summary line, and says each run's position", () => {
    const r = run(SIM, [
      ...["--only", "ring", "--workers", "2", "--sizes", "4KiB:16KiB:x2", "--repeat", "2"],
      ...["--results", ""],
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^ {2}run 1\/6 ring\[tensorBytes=4096\]#1: ring \(elapsed \d+ s\)$/m);
    assert.match(
      r.stderr,
      /^ {2}run 6\/6 ring\[tensorBytes=16384\]#2: ring \(elapsed \d+ s, ETA \d+ s\)$/m,
    );
    assert.match(
      r.stdout,
      /^# runs 6, verified 6, failed 0, wall time \d+ s, mean busbw [\d.]+ [kMG]?B\/s$/m,
    );
  });

  it("ina-sim writes the JSON, both CSVs and the report page; a failed run keeps the others", async () => {
    const dir = await tempDir();
    const scenario = join(dir, "three.json");
    const job = { mode: "netreduce", workers: 2, tensorBytes: "64KiB" };
    const links = { rate: "10Gbps" };
    await writeFile(
      scenario,
      JSON.stringify({
        name: "three",
        seed: 3,
        runs: [
          { name: "first", links, jobs: [job] },
          { name: "dark", links, faults: { loss: 1 }, jobs: [job] },
          { name: "after", links, jobs: [job] },
        ],
      }),
    );
    const results = join(dir, "results");
    const r = run(SIM, ["--scenario", scenario, "--results", results]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stdout, /^dark: FAILED: /m);
    assert.match(r.stdout, /^# runs 3, verified 2, failed 1, /m);
    const names = await readdir(results);
    const base = names.find((n) => n.endsWith(".json"))?.replace(/\.json$/, "");
    assert.match(String(base), /^sim-three-seed3-\d{4}-\d\d-\d\dT[\d-]+Z$/);
    const output = JSON.parse(await readFile(join(results, `${base}.json`), "utf8"));
    assert.equal(output.complete, true);
    assert.deepEqual(
      output.runs.map((x: { name: string; verified: boolean }) => [x.name, x.verified]),
      [
        ["first", true],
        ["dark", false],
        ["after", true],
      ],
    );
    const jobs = (await readFile(join(results, `${base}.jobs.csv`), "utf8")).trim().split("\n");
    assert.equal(jobs.length, 4, "a header and one row per run");
    assert.match(jobs[0], /,seconds,goodputMBps,algbwMBps,busbwMBps,/);
    assert.ok(existsSync(join(results, `${base}.points.csv`)));
    const page = await readFile(join(results, String(base), "index.html"), "utf8");
    assert.match(page, /<h1>three<\/h1>/);
  });

  it("a cut sweep keeps the runs that finished", async () => {
    const dir = await tempDir();
    const scenario = join(dir, "cut.json");
    await writeFile(
      scenario,
      JSON.stringify({
        name: "cut",
        runs: [
          {
            name: "quick",
            links: { rate: "10Gbps" },
            jobs: [{ mode: "netreduce", workers: 2, tensorBytes: "64KiB" }],
          },
          {
            // Millions of events: still running when the sweep is cut.
            name: "long",
            links: { rate: "100Gbps" },
            jobs: [{ mode: "netreduce", workers: 8, tensorBytes: "1GiB", iterations: 4 }],
          },
        ],
      }),
    );
    const results = join(dir, "results");
    const child = spawn(process.execPath, [SIM, "--scenario", scenario, "--results", results], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    const started = new Promise<void>((resolve) => {
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
        if (stderr.includes("run 2/2 long")) resolve();
      });
    });
    const exited = new Promise((resolve) => child.on("exit", resolve));
    await started;
    child.kill("SIGKILL");
    await exited;
    const names = await readdir(results);
    const json = names.find((n) => n.endsWith(".json"));
    const output = JSON.parse(await readFile(join(results, String(json)), "utf8"));
    assert.equal(output.complete, false);
    assert.deepEqual(
      output.runs.map((x: { name: string }) => x.name),
      ["quick"],
    );
    const csv = names.find((n) => n.endsWith(".jobs.csv"));
    const rows = (await readFile(join(results, String(csv)), "utf8")).trim().split("\n");
    assert.equal(rows.length, 2);
    assert.match(rows[1], /^quick,quick,/);
  });
});
