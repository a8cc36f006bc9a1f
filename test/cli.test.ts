import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { z } from "zod";
import {
  SwitchReadySchema,
  SwitchStatsSchema,
  WorkerProgressSchema,
  WorkerResultSchema,
  WorkerStandbySchema,
} from "../proto/records.js";
import { ChildNode } from "../runner/processes.js";
import { SCRIPTS } from "../runner/run.js";
import { STARTUP_MS } from "./waits.js";

const EXPERIMENT = SCRIPTS.switch.replace(/switch\/cli\.js$/, "runner/experiment.js");
const DEADLINES = SCRIPTS.switch.replace(
  /dist\/switch\/cli\.js$/,
  "bench/scenarios/deadlines.json",
);
const RUNTIME_CLI = SCRIPTS.switch.replace(/switch\/cli\.js$/, "runtime/cli.js");

/** The same as run, without blocking: several commands at once. */
function runAsync(script: string, args: string[]) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [script, ...args], { timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({
        code: error === null ? 0 : ((error as { code?: number }).code ?? null),
        stdout,
        stderr,
      }),
    );
  });
}

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

  it("a command's last record reaches the runner, however large, when it exits right after", async () => {
    // A pipe takes a big write in pieces: the command must not exit before
    // its tail is out, and the runner must wait for stdout to close, not for
    // the exit, before it decides the record never came.
    const dir = await mkdtemp(join(tmpdir(), "ina-test-"));
    dirs.push(dir);
    const script = join(dir, "writer.mjs");
    await writeFile(
      script,
      [
        `import { emitRecord, runCli } from ${JSON.stringify(RUNTIME_CLI)};`,
        "const schema = { safeParse: (data) => ({ success: true, data }) };",
        "const spec = { command: 'writer', summary: '', options: {}, schema };",
        "await runCli(spec, async () => {",
        "  emitRecord({ event: 'progress' });",
        "  emitRecord({ event: 'result', pad: 'x'.repeat(1 << 21) });",
        "  return 0;",
        "});",
      ].join("\n"),
    );
    const Result = z.strictObject({ event: z.literal("result"), pad: z.string() });
    for (let i = 0; i < 5; i++) {
      const child = new ChildNode(`writer-${i}`, script, []);
      children.push(child);
      const result = await child.waitFor(Result, STARTUP_MS);
      assert.equal(result.pad.length, 1 << 21);
      assert.equal(await child.waitExit(STARTUP_MS), 0);
    }
  });

  it("every command has a --help that names its options", () => {
    for (const [script, option] of [
      [SCRIPTS.switch, "--config"],
      [SCRIPTS.worker, "--mode"],
      [SCRIPTS.ps, "--config"],
      [EXPERIMENT, "--scenario"],
    ]) {
      const r = run(script, ["--help"]);
      assert.equal(r.status, 0);
      assert.match(r.stdout, /^Usage: ina-/);
      assert.ok(r.stdout.includes(option), `${script} --help mentions ${option}`);
    }
  });

  it("every command's --help exits 0, an unknown option exits 2 naming it, and README.md agrees with --help", async () => {
    const dist = SCRIPTS.switch.replace(/switch\/cli\.js$/, "");
    const readme = await readFile(
      SCRIPTS.switch.replace(/dist\/switch\/cli\.js$/, "README.md"),
      "utf8",
    );
    // How the README names each command (a bin, its dist script, its npm script), and its script.
    const commands: Array<[RegExp, string]> = [
      [/ina-experiment|npm start|dist\/runner\/experiment\.js/g, "runner/experiment.js"],
      [/ina-sim\b|npm run sim(?![:\w])|dist\/sim\/cli\.js/g, "sim/cli.js"],
      [/ina-switch|dist\/switch\/cli\.js/g, "switch/cli.js"],
      [/ina-ps\b|dist\/ps\/cli\.js/g, "ps/cli.js"],
      [/ina-worker|dist\/worker\/cli\.js/g, "worker/cli.js"],
      [/npm run bench(?![:\w])|npm run bench:pipeline|dist\/bench\/bench\.js/g, "bench/bench.js"],
      [/npm run bench:sim|dist\/sim\/bench\.js/g, "sim/bench.js"],
      [/npm run bench:fixedpoint|dist\/bench\/fixedpoint\.js/g, "bench/fixedpoint.js"],
      [/npm run calibrate|dist\/sim\/calibrate\.js/g, "sim/calibrate.js"],
      [/npm run executors|dist\/bench\/executors\.js/g, "bench/executors.js"],
      [/npm run reproduce|dist\/bench\/reproduce\.js/g, "bench/reproduce.js"],
      [/npm run reliability|dist\/bench\/reliability\.js/g, "bench/reliability.js"],
    ];
    // Options of other programs the README names (npm, srun, mpirun, node --test), and
    // ina-sim's --tick-ms, named as removed (its refusal: test/sim.test.ts).
    const foreign = new Set([
      "--silent",
      "--ntasks",
      "--mpi",
      "--allow-run-as-root",
      "--oversubscribe",
      "--test-force-exit",
      "--tick-ms",
    ]);
    // An option as written: `--config.file=` (Prometheus's) is not `--config`.
    const optionPattern = /--[a-z][a-z0-9-]*(?![\w.-])/g;
    const helpOptions = new Map<string, Set<string>>();
    // Spawned side by side: each only parses its options and exits.
    await Promise.all(
      commands.map(async ([, script]) => {
        const [help, bad] = await Promise.all([
          runAsync(join(dist, script), ["--help"]),
          runAsync(join(dist, script), ["--no-such-option"]),
        ]);
        assert.equal(help.code, 0, `${script} --help exits 0: ${help.stderr}`);
        assert.match(help.stdout, /^Usage: /, `${script} --help`);
        helpOptions.set(script, new Set(help.stdout.match(optionPattern)));
        assert.equal(bad.code, 2, `${script} --no-such-option exits 2`);
        assert.match(bad.stderr, /Unknown option '--no-such-option'/, script);
      }),
    );
    const everyOption = new Set([...helpOptions.values()].flatMap((set) => [...set]));
    const problems: string[] = [];
    for (const [script, options] of helpOptions) {
      for (const option of options) {
        if (!new RegExp(`${option}(?![\\w-])`).test(readme)) {
          problems.push(`${script} --help has ${option}, README.md never names it`);
        }
      }
    }
    // An option belongs to the command named last before it on its line (a table row's: the
    // command of its first cell); one with no command before it, to some command.
    readme.split("\n").forEach((line, index) => {
      const mentions = commands.flatMap(([pattern, script]) =>
        [...line.matchAll(pattern)].map((m) => ({ at: m.index ?? 0, script })),
      );
      mentions.sort((a, b) => a.at - b.at);
      const rowCommand = line.startsWith("|") ? mentions[0] : undefined;
      for (const match of line.matchAll(optionPattern)) {
        const option = match[0];
        if (foreign.has(option)) continue;
        const owner = rowCommand ?? mentions.filter((m) => m.at < (match.index ?? 0)).at(-1);
        const known =
          owner === undefined ? everyOption : (helpOptions.get(owner.script) ?? new Set());
        if (!known.has(option)) {
          problems.push(
            `README.md:${index + 1}: ${option} is not in ${owner?.script ?? "any command"}'s --help`,
          );
        }
      }
    });
    assert.deepEqual(problems, []);
  });

  it("a bad option is named and exits 2", () => {
    const cases: Array<[string, string[], RegExp]> = [
      [EXPERIMENT, ["--workers", "0"], /--workers: Too small/],
      [EXPERIMENT, ["--tensor-bytes", "lots"], /--tensor-bytes: not a byte size: "lots"/],
      [EXPERIMENT, ["--only", "tree"], /--only: no run named tree; runs: netreduce, atp, ps, ring/],
      [
        SCRIPTS.worker,
        ["--switch", "127.0.0.1:9", "--worker", "0", "--fan-in", "2", "--mode", "tree"],
        /--mode: /,
      ],
      [
        SCRIPTS.worker,
        ["--switch", "127.0.0.1:9", "--worker", "0", "--fan-in", "2", "--operation", "allGather"],
        /--operation allGather: only ring mode runs other collectives than allReduce/,
      ],
      [EXPERIMENT, ["--frobnicate"], /Unknown option '--frobnicate'/],
      [
        SCRIPTS.switch.replace(/switch\/cli\.js$/, "bench/reliability.js"),
        ["--only", "kill worker"],
        /--only: no step named "kill worker"; steps: junk and attacks, kill a worker,/,
      ],
      [
        SCRIPTS.switch.replace(/switch\/cli\.js$/, "bench/executors.js"),
        ["--scenario", "/nonexistent/ina.json"],
        /--scenario: cannot read \/nonexistent\/ina.json/,
      ],
      [
        SCRIPTS.switch.replace(/switch\/cli\.js$/, "sim/calibrate.js"),
        ["--rounds", "0"],
        /--rounds: /,
      ],
      [
        SCRIPTS.switch.replace(/switch\/cli\.js$/, "bench/fixedpoint.js"),
        ["--seed", "x"],
        /--seed: /,
      ],
      [SCRIPTS.worker, ["--worker", "0", "--fan-in", "2"], /--switch: required/],
      [
        SCRIPTS.worker,
        ["--switch", "nowhere", "--worker", "0", "--fan-in", "2"],
        /--switch: expected HOST:PORT/,
      ],
      [SCRIPTS.switch, ["--config", "/nonexistent/ina.json"], /--config: cannot read/],
      [EXPERIMENT, ["--policies", "edf"], /--policies: only for a scheduling scenario/],
      [EXPERIMENT, ["--link-rate", "0"], /--link-rate: not a positive rate: "0"/],
      [EXPERIMENT, ["--link-delay", "1ms"], /--link-delay, .*need --link-rate/],
      [
        EXPERIMENT,
        ["--link-rate", "1Gbps", "--link-buffer", "64KiB", "--link-ecn-threshold", "1MiB"],
        /runs\[0\]\.links\.ecnThreshold: an ECN threshold of 1048576 bytes is above the buffer/,
      ],
      [
        SCRIPTS.worker,
        [
          "--switch",
          "127.0.0.1:9",
          "--worker",
          "0",
          "--fan-in",
          "2",
          "--link-rate",
          "1Mbps",
          "--link-buffer",
          "100",
        ],
        /--link-buffer: a buffer of 100 bytes cannot hold one packet of 1056 bytes/,
      ],
      [
        SCRIPTS.worker,
        ["--switch", "127.0.0.1:9", "--worker", "0", "--fan-in", "2", "--link-delay", "1ms"],
        /--link-delay: needs --link-rate/,
      ],
      [
        SCRIPTS.worker,
        ["--switch", "127.0.0.1:9", "--worker", "0", "--fan-in", "2", "--region-size", "4MiB"],
        /--region-size: expected a whole number, got "4MiB" \(--region-size counts aggregators; the gradient's bytes are --tensor-bytes\)/,
      ],
      [
        EXPERIMENT,
        ["--scenario", DEADLINES, "--workers", "2", "--loss", "0.1"],
        /--workers, --loss: not for a scheduling scenario/,
      ],
      [
        SCRIPTS.worker,
        [
          "--switch",
          "127.0.0.1:9",
          "--worker",
          "0",
          "--fan-in",
          "2",
          "--tensor-bytes",
          "1000000000000000",
        ],
        /--tensor-bytes: at most 4 GiB/,
      ],
      [
        SCRIPTS.worker,
        ["--switch", "127.0.0.1:9", "--worker", "0", "--fan-in", "2", "--window", "-3"],
        /--window: "-3" starts with "-": a negative number is not a valid --window/,
      ],
      [
        SCRIPTS.worker,
        ["--control", "http://127.0.0.1:9", "--job", "1", "--credential-file", "/nonexistent/cred"],
        /--credential-file: cannot read \/nonexistent\/cred/,
      ],
      [
        SCRIPTS.worker,
        ["--switch", "127.0.0.1:9", "--worker", "0", "--fan-in", "2", "--credential-stdin"],
        /--credential-stdin: needs --control/,
      ],
      [
        SCRIPTS.worker,
        ["--control", "http://127.0.0.1:9", "--credential-stdin", "--wait-go"],
        /--credential-stdin: give one of --credential, --credential-file, --credential-stdin; and not with --wait-go/,
      ],
      [
        SCRIPTS.switch,
        ["--operator-token", "short"],
        /the operator token: use at least 16 characters/,
      ],
    ];
    for (const [script, args, message] of cases) {
      const r = run(script, args);
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });

  it("old option names still work, each with one deprecation line; old and new at once are refused", () => {
    const worker = ["--switch", "127.0.0.1:9", "--worker", "0", "--fan-in", "2"];
    const BENCH = SCRIPTS.switch.replace(/switch\/cli\.js$/, "bench/bench.js");
    const cases: Array<[string, string[], string, RegExp]> = [
      // the value reaches the new option: --size 8 is a region of 8 aggregators
      [
        SCRIPTS.worker,
        [...worker, "--window", "16", "--size", "8"],
        "ina-worker: --size is deprecated, use --region-size",
        /--region-size: a NetReduce region needs at least 2 x window = 32 aggregators/,
      ],
      [
        SCRIPTS.worker,
        [...worker, "--mode", "ring", "--operation", "allToAll", "--size-bytes", "12"],
        "ina-worker: --size-bytes is deprecated, use --tensor-bytes",
        /--tensor-bytes: allToAll cuts the tensor into 2 equal chunks; 3 elements do not/,
      ],
      [
        EXPERIMENT,
        ["--size", "lots"],
        "ina-experiment: --size is deprecated, use --tensor-bytes",
        /--tensor-bytes: not a byte size: "lots"/,
      ],
      [
        BENCH,
        ["--size", "lots"],
        "npm run bench --: --size is deprecated, use --tensor-bytes",
        /--tensor-bytes: not a byte size: "lots"/,
      ],
    ];
    for (const [script, args, deprecation, message] of cases) {
      const r = run(script, args);
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.deepEqual(
        r.stderr.split("\n").filter((line) => line.includes("deprecated")),
        [deprecation],
      );
      assert.match(r.stderr, message);
    }
    const both = run(SCRIPTS.worker, [...worker, "--size", "32", "--region-size", "32"]);
    assert.equal(both.status, 2);
    assert.match(
      both.stderr,
      /--size and --region-size: give --region-size or its deprecated name --size, not both/,
    );
  });

  it("the switch rejects a config that breaks the 2 x window rule, naming the field", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ina-test-"));
    dirs.push(dir);
    const path = join(dir, "bad.json");
    await writeFile(
      path,
      JSON.stringify({
        aggregators: 64,
        jobs: [{ id: 1, mode: "netreduce", fanIn: 2, offset: 0, regionSize: 10, window: 8 }],
      }),
    );
    const r = run(SCRIPTS.switch, ["--config", path]);
    assert.equal(r.status, 2);
    assert.match(
      r.stderr,
      /jobs\[0\]\.regionSize: a NetReduce region needs at least 2 x window = 16 aggregators, got 10/,
    );
  });

  it("the switch reports its port when ready and its counters when stopped", async () => {
    const sw = new ChildNode("switch", SCRIPTS.switch, []);
    children.push(sw);
    const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    assert.ok(ready.dataPort > 0);
    assert.equal(await sw.stop(), 0);
    const [stats] = sw.recordsOf(SwitchStatsSchema);
    assert.equal(stats?.final, true);
    assert.equal(stats?.rxPackets, 0);
  });

  it("a worker the switch does not answer says so, then gives up with a clear message", async () => {
    // The default switch serves job 1 with fan-in 4; job 9 is unknown to it.
    const sw = new ChildNode("switch", SCRIPTS.switch, []);
    children.push(sw);
    const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    const address = `127.0.0.1:${ready.dataPort}`;
    const worker = new ChildNode("worker", SCRIPTS.worker, [
      ...["--switch", address, "--job", "9", "--worker", "0", "--fan-in", "2"],
      ...["--tensor-bytes", "64KiB", "--warn-after-s", "1", "--give-up-s", "4"],
    ]);
    children.push(worker);
    assert.equal(await worker.waitExit(60_000), 1);
    assert.match(
      worker.stderr,
      new RegExp(`no answer from the switch at ${address} for [1-4] s; \\d+ packets unanswered`),
    );
    assert.match(
      worker.stderr,
      /error: worker 0 of job 9 \(netreduce, fan-in 2\), switch .*: no answer from the switch for 4\.0 s/,
    );
    assert.match(worker.stderr, /unknownJob, fanInMismatch/);
    assert.equal(await sw.stop(), 0);
    const [stats] = sw.recordsOf(SwitchStatsSchema);
    assert.ok(stats.drops.unknownJob > 0, "the switch counted the packets it could not place");
  });

  it("a worker of a queued job says it is queued and why, and gives up at --join-timeout-s", async () => {
    const sw = new ChildNode("switch", SCRIPTS.switch, []);
    children.push(sw);
    const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    const url = String(ready.controlUrl);
    // A deadline job takes the 256 aggregators the default config leaves free.
    const submit = (id: number, jobClass: "md" | "be") =>
      fetch(`${url}/jobs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          id,
          class: jobClass,
          ...(jobClass === "md" ? { deadlineS: 3600 } : {}),
          mode: "netreduce",
          workers: 1,
          modelBytes: 65536,
          aggregators: 256,
        }),
      });
    assert.equal((await submit(6, "md")).status, 201, "running");
    const queued = await submit(7, "md");
    assert.equal(queued.status, 202, "queued");
    const { credential } = (await queued.json()) as { credential: string };
    const worker = new ChildNode(
      "worker",
      SCRIPTS.worker,
      [...["--control", url, "--job", "7", "--tensor-bytes", "64KiB", "--join-timeout-s", "2"]],
      undefined,
      { env: { ...process.env, INA_JOB_CREDENTIAL: credential } },
    );
    children.push(worker);
    assert.equal(await worker.waitExit(60_000), 1);
    assert.match(worker.stderr, /job 7 is queued: [^;\n]+; waiting for a region/);
    assert.match(worker.stderr, /job 7 got no region within 2 s/);
    await sw.stop();
  });

  it("the README's control-plane job runs at once on the default switch", async () => {
    const sw = new ChildNode("switch", SCRIPTS.switch, []);
    children.push(sw);
    const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    const url = String(ready.controlUrl);
    const submit = await fetch(`${url}/jobs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        id: 7,
        class: "md",
        deadlineS: 30,
        mode: "netreduce",
        workers: 2,
        modelBytes: 8388608,
        aggregators: 128,
      }),
    });
    assert.equal(submit.status, 201, "running");
    // As the README says: the submission's credential goes to the workers.
    const { credential } = (await submit.json()) as { credential: string };
    const workers = [0, 1].map((i) => {
      const w = new ChildNode(
        `worker-${i}`,
        SCRIPTS.worker,
        [...["--control", url, "--job", "7", "--tensor-bytes", "1MiB"]],
        undefined,
        { env: { ...process.env, INA_JOB_CREDENTIAL: credential } },
      );
      children.push(w);
      return w;
    });
    for (const w of workers) {
      const result = await w.waitFor(WorkerResultSchema, 60_000);
      assert.equal(result.verified, true);
      assert.equal(await w.waitExit(STARTUP_MS), 0);
      // Between the all-reduce and its result, a worker says it is verifying.
      const phases = w.recordsOf(WorkerProgressSchema).map((r) => r.phase);
      assert.equal(phases.at(-1), "verifying");
    }
    const job = (await (await fetch(`${url}/jobs/7`)).json()) as { status: string };
    assert.equal(job.status, "finished");
    await sw.stop();
  });

  it("a worker started before its job exists waits in standby, then joins with the credential handed on stdin", async () => {
    const sw = new ChildNode("switch", SCRIPTS.switch, []);
    children.push(sw);
    const url = String((await sw.waitFor(SwitchReadySchema, STARTUP_MS)).controlUrl);
    const worker = new ChildNode("worker", SCRIPTS.worker, [
      ...["--control", url, "--job", "9", "--worker", "0", "--tensor-bytes", "256KiB"],
      "--credential-stdin",
    ]);
    children.push(worker);
    await worker.waitFor(WorkerStandbySchema, STARTUP_MS);
    assert.equal((await fetch(`${url}/jobs/9`)).status, 404, "no job yet: the worker only waits");
    const submit = await fetch(`${url}/jobs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        id: 9,
        class: "be",
        mode: "netreduce",
        workers: 1,
        modelBytes: 262144,
      }),
    });
    assert.equal(submit.status, 201);
    worker.send(((await submit.json()) as { credential: string }).credential);
    const result = await worker.waitFor(WorkerResultSchema, 60_000);
    assert.equal(result.verified, true);
    assert.ok(
      (result.firstPacketAtMonotonicMs ?? 0) < (result.lastResultAtMonotonicMs ?? 0) &&
        (result.lastResultAtMonotonicMs ?? 0) < (result.verifiedAtMonotonicMs ?? 0),
      "first packet, last result, then verification",
    );
    assert.equal(await worker.waitExit(STARTUP_MS), 0);
    const job = (await (await fetch(`${url}/jobs/9`)).json()) as { status: string };
    assert.equal(job.status, "finished");
    await sw.stop();
  });

  it("a bad scenario is refused with the field named", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ina-test-"));
    dirs.push(dir);
    const path = join(dir, "bad-scenario.json");
    await writeFile(
      path,
      JSON.stringify({
        name: "x",
        runs: [
          {
            name: "r",
            faults: { loss: 0.6, duplicate: 0.6 },
            jobs: [
              { mode: "atp", workers: 40 },
              { mode: "ps", workers: 2, tensorBytes: 6, id: 5 },
              { mode: "ps", workers: 2, id: 5 },
            ],
          },
        ],
      }),
    );
    const r = run(EXPERIMENT, ["--scenario", path]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /runs\[0\]\.jobs\[0\]\.workers: Too big/);
    assert.match(r.stderr, /runs\[0\]\.jobs\[1\]\.tensorBytes: must be a positive multiple of 4/);
    assert.match(r.stderr, /runs\[0\]\.jobs\[2\]\.id: job id 5 is already used by jobs\[1\]/);
    assert.match(r.stderr, /runs\[0\]\.faults: loss \+ duplicate \+ reorder must not exceed 1/);
    // Regions are checked as the switch will, before anything starts.
    const regions = join(dir, "bad-regions.json");
    await writeFile(
      regions,
      JSON.stringify({
        name: "regions",
        runs: [
          {
            name: "r",
            aggregators: 300,
            jobs: [
              { mode: "netreduce", workers: 2, window: 64, offset: 0, regionSize: 128 },
              { mode: "netreduce", workers: 2, window: 64, offset: 100, regionSize: 128 },
              { mode: "atp", workers: 2, offset: 280, regionSize: 64 },
            ],
          },
        ],
      }),
    );
    const g = run(EXPERIMENT, ["--scenario", regions, "--results", "", "--scrape-dir", ""]);
    assert.equal(g.status, 2, g.stderr);
    assert.match(g.stderr, /runs\[0\]\.jobs\[1\]\.offset: region \[100, 228\) overlaps jobs\[0\]/);
    assert.match(
      g.stderr,
      /runs\[0\]\.jobs\[2\]\.regionSize: region \[280, 344\) ends past the 300/,
    );
    assert.doesNotMatch(g.stderr, /switch\.json|elementsPerAggregator/, "no switch-config names");
    // An override that makes a default region too large is named too.
    const w = run(EXPERIMENT, ["--only", "netreduce", "--window", "200", "--results", ""]);
    assert.equal(w.status, 2, w.stderr);
    assert.match(w.stderr, /runs\[0\]\.jobs\[0\]\.regionSize: region \[0, 400\) ends past the 256/);
    const schedule = join(dir, "bad-schedule.json");
    await writeFile(
      schedule,
      JSON.stringify({
        name: "s",
        policies: ["lottery"],
        jobs: [{ name: "a", class: "md", workers: 2, tensorBytes: 8 }],
      }),
    );
    const s = run(EXPERIMENT, ["--scenario", schedule]);
    assert.equal(s.status, 2);
    assert.match(s.stderr, /policies\[0\]: /);
    assert.match(s.stderr, /jobs\[0\]\.deadlineS: an MD job needs a deadline/);
  });

  it("the default experiment compares NetReduce, ATP, PS and ring on one workload, verified, lossy", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ina-test-"));
    dirs.push(dir);
    const r = run(EXPERIMENT, [
      "--tensor-bytes",
      "1MiB",
      "--loss",
      "0.01",
      "--duplicate",
      "0.01",
      "--reorder",
      "0.01",
      "--seed",
      "5",
      "--results",
      dir,
      "--scrape-dir",
      join(dir, "prometheus"),
      "--json",
    ]);
    assert.equal(r.status, 0, r.stderr);
    const result = JSON.parse(r.stdout);
    assert.equal(result.verified, true);
    assert.deepEqual(
      result.runs.map((run: { name: string }) => run.name),
      ["netreduce", "atp", "ps", "ring"],
    );
    const packets = (1024 * 1024) / 4 / 256;
    for (const run of result.runs) {
      const [job] = run.jobs;
      for (const key of [
        "seconds",
        "goodputMBps",
        "collisions",
        "fallbackFraction",
        "retransmissions",
      ]) {
        assert.ok(key in job, `--json has ${key}`);
      }
      assert.equal(job.workers, 4);
      assert.equal(job.bytesPerWorker, 1024 * 1024);
      assert.equal(job.verified, true, `${run.name} verified`);
      assert.ok(job.retransmissions > 0, `${run.name} recovered losses`);
      assert.ok(job.maxAbsError <= 4 * 2 ** -21 * 1.001);
    }
    const [netreduce, atp, ps, ring] = result.runs;
    // Gradient bytes each worker sent: the tensor, except ring's 2(N-1)/N of it.
    assert.equal(netreduce.jobs[0].bytesSentPerWorker, 1024 * 1024);
    assert.equal(ring.jobs[0].bytesSentPerWorker, 1.5 * 1024 * 1024);
    assert.equal(ring.jobs[0].bytesReceivedPerWorker, 1.5 * 1024 * 1024);
    assert.equal(ring.ps, null, "ring needs no PS");
    assert.equal(ring.switch.aggregationsCompleted, 0, "nor the switch's aggregators");
    assert.equal(netreduce.switch.aggregationsCompleted, packets);
    assert.equal(netreduce.ps, null, "NetReduce needs no PS");
    assert.equal(atp.ps.aggregationsCompleted, packets, "the PS acks every ATP PSN once");
    assert.equal(ps.ps.aggregationsCompleted, packets);
    assert.equal(ps.switch.aggregationsCompleted, 0, "in PS mode the switch only forwards");
    const saved = (await readdir(dir)).filter((name) => name.endsWith(".json"));
    assert.equal(saved.length, 1);
    assert.match(saved[0], /^compare-.*\.json$/);
    const scrape = await readdir(join(dir, "prometheus"));
    assert.deepEqual(scrape.sort(), ["prometheus.yml", "targets.json"]);
    const targets = JSON.parse(await readFile(join(dir, "prometheus", "targets.json"), "utf8"));
    assert.deepEqual(targets, [], "every process left the target list when it ended");
  });

  it("a failed run keeps the other runs' results, and its error says what the workers were doing", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ina-test-"));
    dirs.push(dir);
    const path = join(dir, "two-runs.json");
    const job = { mode: "netreduce", workers: 2, tensorBytes: "64KiB" };
    await writeFile(
      path,
      JSON.stringify({
        name: "two-runs",
        runs: [
          { name: "clean", jobs: [job] },
          { name: "dark", faults: { loss: 1 }, jobs: [job] },
          { name: "after", jobs: [job] },
        ],
      }),
    );
    const r = spawnSync(
      process.execPath,
      [EXPERIMENT, "--scenario", path, "--timeout-s", "5", "--results", dir, "--scrape-dir", ""],
      { encoding: "utf8", timeout: 120_000, env: { ...process.env, npm_lifecycle_event: "start" } },
    );
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stdout, /^clean\s+netreduce-1\s+netreduce\s+2\s.*\syes$/m);
    assert.match(r.stdout, /^after\s+netreduce-1\s+netreduce\s+2\s.*\syes$/m);
    assert.match(
      r.stdout,
      /^dark: FAILED: .*worker \d: no "result" within 5000 ms; last record \{"event":"progress","phase":"allreduce"/m,
    );
    const saved = (await readdir(dir)).filter(
      (name) => name.endsWith(".json") && name !== "two-runs.json",
    );
    const output = JSON.parse(await readFile(join(dir, saved[0]), "utf8"));
    assert.equal(output.verified, false);
    assert.deepEqual(
      output.runs.map((run: { name: string; verified: boolean }) => [run.name, run.verified]),
      [
        ["clean", true],
        ["dark", false],
        ["after", true],
      ],
    );
    assert.match(output.runs[1].error, /no "result" within 5000 ms/);
    assert.doesNotMatch(r.stderr, /npm printed its banner/, "no --json, no hint");
  });

  it("--json under npm without --silent says how to get JSON alone", () => {
    const silent = spawnSync(
      process.execPath,
      [
        EXPERIMENT,
        "--json",
        "--only",
        "ps",
        "--workers",
        "1",
        "--tensor-bytes",
        "4KiB",
        "--results",
        "",
      ],
      {
        encoding: "utf8",
        timeout: 60_000,
        env: { ...process.env, npm_lifecycle_event: "start", npm_config_loglevel: "silent" },
      },
    );
    assert.equal(silent.status, 0, silent.stderr);
    assert.doesNotMatch(silent.stderr, /npm printed its banner/);
    assert.equal(JSON.parse(silent.stdout).verified, true);
    const loud = spawnSync(
      process.execPath,
      [
        EXPERIMENT,
        "--json",
        "--only",
        "ps",
        "--workers",
        "1",
        "--tensor-bytes",
        "4KiB",
        "--results",
        "",
      ],
      { encoding: "utf8", timeout: 60_000, env: { ...process.env, npm_lifecycle_event: "start" } },
    );
    assert.equal(loud.status, 0, loud.stderr);
    assert.match(loud.stderr, /npm start --silent -- --json/);
  });

  it("the table names every column", () => {
    const r = run(EXPERIMENT, [
      "--workers",
      "2",
      "--tensor-bytes",
      "256KiB",
      "--only",
      "atp",
      "--results",
      "",
      "--scrape-dir",
      "",
    ]);
    assert.equal(r.status, 0, r.stderr);
    for (const label of [
      "run",
      "mode",
      "time",
      "goodput/w",
      "busbw",
      "collisions",
      "fallback",
      "retransmits",
      "wrong",
      "verified",
    ]) {
      assert.ok(r.stdout.includes(label), `table has ${label}`);
    }
    assert.match(r.stdout, /^atp\s+job\s+atp\s+2\s.*\syes$/m);
  });
});
