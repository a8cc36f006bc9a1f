import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  SwitchReadySchema,
  WorkerReadySchema,
  type WorkerRecord,
  WorkerRecordSchema,
  WorkerResultSchema,
} from "../proto/records.js";
import { ChildNode, parseRecord } from "../runner/processes.js";
import { SCRIPTS } from "../runner/run.js";
import { LAUNCHERS, launcherRank } from "../worker/launcher.js";
import { testSeed } from "./seed.js";
import { STARTUP_MS } from "./waits.js";

/** Every launcher variable unset: the tests choose which ones a worker sees. */
const UNSET_LAUNCHERS = LAUNCHERS.flatMap((l) => ["-u", l.rank, "-u", l.size]);

function findOnPath(command: string): string | null {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const path = join(dir, command);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {}
  }
  return null;
}

const OPERATOR = "operator-token-for-launcher-tests";

describe("launcher ranks: the environment a launcher gives its processes", () => {
  it("reads Open MPI, PMI and Slurm variables, in that order", () => {
    assert.equal(launcherRank({}), null);
    assert.equal(launcherRank({ PATH: "/bin", OMPI_COMM_WORLD_SIZE: "4" }), null);
    assert.deepEqual(launcherRank({ OMPI_COMM_WORLD_RANK: "3", OMPI_COMM_WORLD_SIZE: "4" }), {
      launcher: "Open MPI",
      rankVariable: "OMPI_COMM_WORLD_RANK",
      sizeVariable: "OMPI_COMM_WORLD_SIZE",
      rank: 3,
      size: 4,
    });
    assert.equal(launcherRank({ PMI_RANK: "1", PMI_SIZE: "2" })?.rankVariable, "PMI_RANK");
    assert.deepEqual(launcherRank({ SLURM_PROCID: "0", SLURM_NTASKS: "32" }), {
      launcher: "Slurm",
      rankVariable: "SLURM_PROCID",
      sizeVariable: "SLURM_NTASKS",
      rank: 0,
      size: 32,
    });
    // mpirun or mpiexec inside a Slurm allocation: the batch step's SLURM_PROCID is inherited.
    const inAllocation = { SLURM_PROCID: "0", SLURM_NTASKS: "8" };
    assert.equal(
      launcherRank({ ...inAllocation, OMPI_COMM_WORLD_RANK: "5", OMPI_COMM_WORLD_SIZE: "8" })?.rank,
      5,
    );
    assert.equal(launcherRank({ ...inAllocation, PMI_RANK: "6", PMI_SIZE: "8" })?.rank, 6);
  });

  it("names the variable that is malformed, missing or out of range", () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [
        { OMPI_COMM_WORLD_RANK: "4", OMPI_COMM_WORLD_SIZE: "4" },
        /^OMPI_COMM_WORLD_RANK: expected an integer 0 \.\. 3, got "4"$/,
      ],
      [{ OMPI_COMM_WORLD_RANK: "0" }, /^OMPI_COMM_WORLD_SIZE: not set/],
      [{ PMI_RANK: "one", PMI_SIZE: "2" }, /^PMI_RANK: expected an integer 0 \.\. 1, got "one"$/],
      [{ PMI_RANK: "-1", PMI_SIZE: "2" }, /^PMI_RANK: /],
      [
        { SLURM_PROCID: "0", SLURM_NTASKS: "33" },
        /^SLURM_NTASKS: expected an integer 1 \.\. 32, got "33"$/,
      ],
      [{ SLURM_PROCID: "0", SLURM_NTASKS: "0" }, /^SLURM_NTASKS: /],
    ];
    for (const [env, message] of cases) {
      assert.throws(() => launcherRank(env), { name: "UsageError", message }, JSON.stringify(env));
    }
  });
});

describe("workers started by a launcher join with its ranks, as real processes", () => {
  const children: ChildNode[] = [];
  let dir = "";
  let control = "";
  let nextJob = 10;
  const seed = testSeed("launcher", 11);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "ina-launcher-"));
    const config = join(dir, "switch.json");
    await writeFile(config, JSON.stringify({ aggregators: 256, jobs: [] }));
    const sw = new ChildNode("switch", SCRIPTS.switch, [
      ...["--config", config, "--port", "0", "--operator-token", OPERATOR],
    ]);
    children.push(sw);
    const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    control = String(ready.controlUrl);
    console.log(`switch: data port ${ready.dataPort}, control plane ${control}`);
  });

  after(async () => {
    await Promise.all(children.map((c) => c.stop()));
    await rm(dir, { recursive: true, force: true });
  });

  /** Submits a NetReduce job of `workers` workers; returns its id. */
  async function submit(workers: number): Promise<number> {
    const id = nextJob++;
    const r = await fetch(`${control}/jobs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        id,
        class: "be",
        mode: "netreduce",
        workers,
        window: 16,
        modelBytes: 262_144,
        aggregators: 32,
      }),
    });
    assert.equal(r.status, 201, await r.text());
    return id;
  }

  const workerArgs = (job: number) => [
    SCRIPTS.worker,
    "--control",
    control,
    "--job",
    String(job),
    "--tensor-bytes",
    "64KiB",
    "--seed",
    String(seed),
    "--progress-ms",
    "0",
    // The operator token stands in for each job's credential.
    "--credential",
    OPERATOR,
  ];

  /** A worker whose environment holds exactly `env` of the launcher variables. */
  function worker(name: string, job: number, env: Record<string, string>, extra: string[] = []) {
    const assignments = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    const child = new ChildNode(
      name,
      "env",
      [...UNSET_LAUNCHERS, ...assignments, process.execPath, ...workerArgs(job), ...extra],
      undefined,
      { raw: true },
    );
    children.push(child);
    return child;
  }

  async function jobStatus(job: number): Promise<string> {
    return (await (await fetch(`${control}/jobs/${job}`)).json()).status;
  }

  it("--worker wins over the environment; a Slurm rank gives the other id", async () => {
    const job = await submit(2);
    const explicit = worker(
      "explicit",
      job,
      { OMPI_COMM_WORLD_RANK: "1", OMPI_COMM_WORLD_SIZE: "2" },
      ["--worker", "0"],
    );
    const slurm = worker("slurm", job, { SLURM_PROCID: "1", SLURM_NTASKS: "2" });
    const [a, b] = await Promise.all([
      explicit.waitFor(WorkerResultSchema, STARTUP_MS),
      slurm.waitFor(WorkerResultSchema, STARTUP_MS),
    ]);
    const readyOf = (c: ChildNode) => c.recordsOf(WorkerReadySchema).at(0);
    assert.equal(readyOf(explicit)?.workerId, 0);
    assert.equal(readyOf(explicit)?.workerIdSource, "--worker");
    assert.equal(readyOf(slurm)?.workerId, 1);
    assert.equal(readyOf(slurm)?.workerIdSource, "SLURM_PROCID");
    assert.match(slurm.stderr, /worker 1 of 2, id from SLURM_PROCID, fan-in from SLURM_NTASKS/);
    assert.equal(a.verified, true, explicit.stderr);
    assert.equal(b.verified, true, slurm.stderr);
    assert.equal(await explicit.waitExit(10_000), 0);
    assert.equal(await slurm.waitExit(10_000), 0);
    assert.equal(await jobStatus(job), "finished");
  });

  it("a launcher's fan-in other than the job's, or a taken rank, is refused by the control plane", async () => {
    const job = await submit(2);
    const wrongSize = worker("wrong size", job, { PMI_RANK: "0", PMI_SIZE: "3" });
    assert.equal(await wrongSize.waitExit(STARTUP_MS), 1);
    assert.match(
      wrongSize.stderr,
      new RegExp(`409 fanIn: job ${job} has 2 workers, this worker was started as one of 3`),
    );
    const first = worker("first", job, { PMI_RANK: "1", PMI_SIZE: "2" });
    await first.waitFor(WorkerReadySchema, STARTUP_MS);
    const twin = worker("twin", job, { PMI_RANK: "1", PMI_SIZE: "2" });
    assert.equal(await twin.waitExit(STARTUP_MS), 1);
    assert.match(
      twin.stderr,
      new RegExp(`409 workerId: worker 1 of job ${job} has already joined`),
    );
    // The refused joins took nothing: rank 0 completes the job.
    const zero = worker("zero", job, { PMI_RANK: "0", PMI_SIZE: "2" });
    assert.equal((await zero.waitFor(WorkerResultSchema, STARTUP_MS)).verified, true, zero.stderr);
    assert.equal(
      (await first.waitFor(WorkerResultSchema, STARTUP_MS)).verified,
      true,
      first.stderr,
    );
    // Both exit once done is reported and the result printed.
    assert.equal(await zero.waitExit(STARTUP_MS), 0, zero.stderr);
    assert.equal(await first.waitExit(STARTUP_MS), 0, first.stderr);
    assert.equal(await jobStatus(job), "finished");
  });

  it("a malformed launcher variable is named and exits 2", () => {
    const r = spawnSync(
      "env",
      [
        ...UNSET_LAUNCHERS,
        "OMPI_COMM_WORLD_RANK=4",
        "OMPI_COMM_WORLD_SIZE=4",
        process.execPath,
        ...workerArgs(99),
      ],
      { encoding: "utf8", timeout: 30_000 },
    );
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /OMPI_COMM_WORLD_RANK: expected an integer 0 \.\. 3, got "4"/);
  });

  it("mpirun -np 4 ina-worker --control URL --job ID finishes a verified job", async () => {
    const mpirun = findOnPath("mpirun");
    if (mpirun === null) {
      assert.fail(
        "mpirun not found on PATH: install Open MPI (Debian: apt-get install openmpi-bin)",
      );
    }
    const job = await submit(4);
    const output = join(dir, "mpirun");
    const args = [
      ...(process.getuid?.() === 0 ? ["--allow-run-as-root"] : []),
      "--oversubscribe",
      "--bind-to",
      "none",
      "--mca",
      "oob_tcp_if_include",
      "lo",
      // one stdout file per rank: records never interleave
      "--output-filename",
      output,
      "-np",
      "4",
      process.execPath,
      ...workerArgs(job),
    ];
    console.log(`${mpirun} ${args.join(" ")}`);
    // The launcher sets its own variables; inherited ones must not confuse it.
    const run = new ChildNode("mpirun", "env", [...UNSET_LAUNCHERS, mpirun, ...args], undefined, {
      raw: true,
    });
    children.push(run);
    assert.equal(await run.waitExit(60_000), 0, run.stderr);
    const ranks = new Map<number, WorkerRecord[]>();
    const stderrs: string[] = [];
    for (const entry of await readdir(output, { recursive: true })) {
      const match = /(?:^|\/)rank\.(\d+)\/(stdout|stderr)$/.exec(entry);
      if (match === null) continue;
      const text = await readFile(join(output, entry), "utf8");
      if (match[2] === "stderr") {
        stderrs.push(text);
        continue;
      }
      ranks.set(
        Number(match[1]),
        text
          .split("\n")
          .filter((line) => line.startsWith("{"))
          .map((line) => parseRecord(WorkerRecordSchema, JSON.parse(line), `rank ${match[1]}`)),
      );
    }
    assert.deepEqual([...ranks.keys()].sort(), [0, 1, 2, 3], `ranks' output in ${output}`);
    for (const [rank, records] of ranks) {
      const ready = records.find((r) => r.event === "ready");
      const result = records.find((r) => r.event === "result");
      assert.equal(ready?.workerId, rank, `rank ${rank} is worker ${rank}`);
      assert.equal(ready?.workerIdSource, "OMPI_COMM_WORLD_RANK");
      assert.equal(result?.verified, true, `rank ${rank}: ${stderrs.join("")}`);
      assert.equal(result?.verification?.notBitExact, 0);
    }
    assert.equal(
      stderrs.filter((s) =>
        /id from OMPI_COMM_WORLD_RANK, fan-in from OMPI_COMM_WORLD_SIZE/.test(s),
      ).length,
      4,
    );
    assert.equal(await jobStatus(job), "finished");
  });
});
