import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ChildNode } from "../bench/processes.js";
import { SCRIPTS } from "../bench/run.js";

const EXPERIMENT = SCRIPTS.switch.replace(/switch\/cli\.js$/, "bench/experiment.js");

function run(script: string, args: string[]) {
  return spawnSync(process.execPath, [script, ...args], { encoding: "utf8", timeout: 120_000 });
}

describe("command lines, as real processes", () => {
  const children: ChildNode[] = [];
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(children.map((c) => c.stop()));
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it("every command has a --help that names its options", () => {
    for (const [script, option] of [
      [SCRIPTS.switch, "--config"],
      [SCRIPTS.worker, "--switch"],
      [EXPERIMENT, "--loss"],
    ]) {
      const r = run(script, ["--help"]);
      assert.equal(r.status, 0);
      assert.match(r.stdout, /^Usage: ina-/);
      assert.ok(r.stdout.includes(option), `${script} --help mentions ${option}`);
    }
  });

  it("a bad option is named and exits 2", () => {
    const cases: Array<[string, string[], RegExp]> = [
      [EXPERIMENT, ["--workers", "0"], /--workers: Too small/],
      [EXPERIMENT, ["--size", "lots"], /--size: not a byte size: "lots"/],
      [
        EXPERIMENT,
        ["--window", "64", "--region-size", "100"],
        /--region-size: a NetReduce region needs at least 2 x window/,
      ],
      [EXPERIMENT, ["--frobnicate"], /Unknown option '--frobnicate'/],
      [SCRIPTS.worker, ["--worker", "0", "--fan-in", "2"], /--switch: required/],
      [
        SCRIPTS.worker,
        ["--switch", "nowhere", "--worker", "0", "--fan-in", "2"],
        /--switch: expected HOST:PORT/,
      ],
      [SCRIPTS.switch, ["--config", "/nonexistent/ina.json"], /--config: cannot read/],
    ];
    for (const [script, args, message] of cases) {
      const r = run(script, args);
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });

  it("the switch rejects a config that breaks the 2 x window rule, naming the field", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ina-test-"));
    dirs.push(dir);
    const path = join(dir, "bad.json");
    await writeFile(
      path,
      JSON.stringify({
        aggregators: 64,
        jobs: [{ id: 1, mode: "netreduce", fanIn: 2, offset: 0, size: 10, window: 8 }],
      }),
    );
    const r = run(SCRIPTS.switch, ["--config", path]);
    assert.equal(r.status, 2);
    assert.match(
      r.stderr,
      /jobs\[0\]\.size: a NetReduce region needs at least 2 x window = 16 aggregators, got 10/,
    );
  });

  it("the switch reports its port when ready and its counters when stopped", async () => {
    const sw = new ChildNode("switch", SCRIPTS.switch, []);
    children.push(sw);
    const ready = await sw.waitFor("ready", 15_000);
    assert.ok(Number(ready.dataPort) > 0);
    assert.equal(await sw.stop(), 0);
    const stats = sw.records.find((r) => r.event === "stats");
    assert.equal(stats?.rxPackets, 0);
  });

  it("the experiment verifies a lossy run and prints --json", () => {
    const r = run(EXPERIMENT, [
      "--workers",
      "4",
      "--size",
      "2MiB",
      "--loss",
      "0.01",
      "--duplicate",
      "0.01",
      "--reorder",
      "0.01",
      "--seed",
      "5",
      "--json",
    ]);
    assert.equal(r.status, 0, r.stderr);
    const result = JSON.parse(r.stdout);
    for (const key of [
      "mode",
      "workers",
      "bytesPerWorker",
      "seconds",
      "goodputMBps",
      "retransmissions",
      "maxAbsError",
      "verified",
    ]) {
      assert.ok(key in result, `--json has ${key}`);
    }
    assert.equal(result.mode, "netreduce");
    assert.equal(result.workers, 4);
    assert.equal(result.bytesPerWorker, 2 * 1024 * 1024);
    assert.equal(result.verified, true);
    assert.ok(result.retransmissions > 0);
    assert.ok(result.maxAbsError <= 4 * 2 ** -21 * 1.001);
    assert.equal(result.switch.aggregationsCompleted, (2 * 1024 * 1024) / 4 / 256);
  });

  it("the default table names every column", () => {
    const r = run(EXPERIMENT, ["--workers", "2", "--size", "1MiB"]);
    assert.equal(r.status, 0, r.stderr);
    for (const label of [
      "workers",
      "seconds",
      "goodput per worker",
      "switch packets",
      "retransmissions",
      "duplicates dropped",
      "max abs error",
      "verified",
    ]) {
      assert.ok(r.stdout.includes(label), `table has ${label}`);
    }
    assert.match(r.stdout, /verified\s+yes/);
  });
});
