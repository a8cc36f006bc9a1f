import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { bearer } from "../proto/control.js";
import {
  PsReadySchema,
  SwitchReadySchema,
  SwitchStatsSchema,
  WorkerProgressSchema,
  WorkerReadySchema,
  WorkerResultSchema,
} from "../proto/records.js";
import { ChildNode } from "../runner/processes.js";
import { SCRIPTS } from "../runner/run.js";
import { poll } from "./poll.js";
import { STARTUP_MS } from "./waits.js";

/**
 * Peers killed or stopped mid-job, as real processes (README.md, "Dead
 * peers"): a stopped worker is waited for, a killed one, a killed PS and a
 * killed switch are reported to every survivor with the right cause within
 * the bound. The cases run at once, each with its own switch, to keep the
 * wall time down; every child is stopped by its PID at the end.
 */
describe("dead peers, as real processes", { concurrency: true }, () => {
  const children: ChildNode[] = [];
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(children.map((c) => c.stop()));
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });
  /** Bound of a death's report with deadPeerS 2: 2 s + a 0.25 s scan, and slack for a busy host. */
  /** How long to wait for a death to be reported (s): the rule's seconds, on a loaded host. */
  const REPORT_BOUND_S = 60;
  /** What is left of `bound` seconds since `from` (ms): survivors must exit by then. */
  const untilBound = (from: number, bound: number) => Math.max(1, from + bound * 1000 - Date.now());

  it("kill -9 one worker: the others exit 1 naming it within the bound, and the switch counts the failure", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ina-dead-"));
    dirs.push(dir);
    const config = join(dir, "switch.json");
    await writeFile(
      config,
      JSON.stringify({
        aggregators: 64,
        jobs: [
          {
            id: 1,
            mode: "netreduce",
            fanIn: 3,
            offset: 0,
            regionSize: 32,
            window: 16,
            deadPeerS: 2,
          },
        ],
      }),
    );
    const sw = new ChildNode("switch", SCRIPTS.switch, ["--config", config]);
    children.push(sw);
    const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    const workers = [0, 1, 2].map((w) => {
      // A slow NIC keeps the all-reduce running for about 7 s.
      const child = new ChildNode(`worker ${w}`, SCRIPTS.worker, [
        ...["--switch", `127.0.0.1:${ready.dataPort}`, "--worker", String(w), "--fan-in", "3"],
        ...["--tensor-bytes", "4MiB", "--window", "16", "--link-rate", "5Mbps", "--wait-go"],
        ...["--progress-ms", "100"],
      ]);
      children.push(child);
      return child;
    });
    for (const w of workers) await w.waitFor(WorkerReadySchema, STARTUP_MS);
    for (const w of workers) w.send("go");
    // Once the victim has results, it is part of the job: then it dies.
    const victim = workers[2];
    await poll("the victim's first results", STARTUP_MS, async () =>
      (victim.recordsOf(WorkerProgressSchema).at(-1)?.completedPackets ?? 0) > 0 ? true : null,
    );
    const killedAt = Date.now();
    victim.child.kill("SIGKILL");
    for (const w of workers.slice(0, 2)) {
      // The exit waited for is the report of the death, within its bound.
      assert.equal(await w.waitExit(untilBound(killedAt, REPORT_BOUND_S)), 1, w.stderr);
      assert.match(w.stderr, /the switch failed job 1: worker 2 stopped sending/);
    }
    const seconds = (Date.now() - killedAt) / 1000;
    console.log(`survivors exited ${seconds.toFixed(1)} s after the kill (deadPeerS 2)`);
    await sw.stop();
    const stats = sw.recordsOf(SwitchStatsSchema).find((r) => r.final === true);
    assert.equal(stats?.jobsFailed, 1);
  });

  it("a control-plane job whose worker dies is failed, its region goes back to the pool, and another job stays exact", async () => {
    const sw = new ChildNode("switch", SCRIPTS.switch, []);
    children.push(sw);
    const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    const url = String(ready.controlUrl);
    const submit = async (id: number, workers: number) => {
      const r = await fetch(`${url}/jobs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          id,
          class: "be",
          mode: "netreduce",
          workers,
          modelBytes: 4 << 20,
          aggregators: 32,
          window: 16,
          deadPeerS: 2,
        }),
      });
      const text = await r.text();
      assert.equal(r.status, 201, text);
      return (JSON.parse(text) as { credential: string }).credential;
    };
    const start = (job: number, credential: string, w: number) => {
      const child = new ChildNode(
        `job ${job} worker ${w}`,
        SCRIPTS.worker,
        [
          ...[
            "--control",
            url,
            "--job",
            String(job),
            "--worker",
            String(w),
            "--tensor-bytes",
            "4MiB",
          ],
          ...["--link-rate", "5Mbps", "--progress-ms", "100"],
        ],
        undefined,
        { env: { ...process.env, INA_JOB_CREDENTIAL: credential } },
      );
      children.push(child);
      return child;
    };
    const credential7 = await submit(7, 2);
    const credential8 = await submit(8, 2);
    const doomed = [0, 1].map((w) => start(7, credential7, w));
    const other = [0, 1].map((w) => start(8, credential8, w));
    const progressed = (c: ChildNode) =>
      (c.recordsOf(WorkerProgressSchema).at(-1)?.completedPackets ?? 0) > 0;
    await poll("first results of both workers of job 7", STARTUP_MS, async () =>
      doomed.every(progressed) ? true : null,
    );
    const killedAt = Date.now();
    doomed[1].child.kill("SIGKILL");
    assert.equal(await doomed[0].waitExit(60_000), 1, doomed[0].stderr);
    assert.match(doomed[0].stderr, /the switch failed job 7: worker 1 stopped sending/);
    console.log(
      `worker 0 of job 7 exited ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill`,
    );
    // The reason is for the job's owner (or the operator), not for anyone.
    const view = (await (
      await fetch(`${url}/jobs/7`, { headers: { authorization: bearer(credential7) } })
    ).json()) as {
      status: string;
      reason: string;
    };
    assert.equal(view.status, "failed");
    assert.match(view.reason, /worker 1 stopped sending/);
    const allocation = (await (await fetch(`${url}/allocation`)).json()) as {
      regions: Array<{ jobId: number }>;
    };
    assert.ok(
      allocation.regions.every((r) => r.jobId !== 7),
      `job 7 holds nothing: ${JSON.stringify(allocation.regions)}`,
    );
    for (const c of other) {
      assert.equal(
        (await c.waitFor(WorkerResultSchema, 120_000)).verified,
        true,
        "the other job stays exact",
      );
    }
  });

  /** A 2-worker job of `mode` on a config file, its workers on a slow NIC, started and past their first results. */
  async function runningJob(
    mode: "netreduce" | "atp",
    workerArgs: string[] = [],
    job: Record<string, unknown> = { deadPeerS: 2 },
    fanIn = 2,
  ) {
    const jobDir = await mkdtemp(join(tmpdir(), "ina-dead-"));
    dirs.push(jobDir);
    const config: Record<string, unknown> = {
      aggregators: 64,
      jobs: [{ id: 1, mode, fanIn, offset: 0, regionSize: 32, window: 16, ...job }],
    };
    let ps: ChildNode | null = null;
    if (mode === "atp") {
      await writeFile(join(jobDir, "ps.json"), JSON.stringify(config));
      ps = new ChildNode("ps", SCRIPTS.ps, ["--config", join(jobDir, "ps.json")]);
      children.push(ps);
      const psReady = await ps.waitFor(PsReadySchema, STARTUP_MS);
      config.parameterServer = { host: "127.0.0.1", port: psReady.dataPort };
    }
    await writeFile(join(jobDir, "switch.json"), JSON.stringify(config));
    const sw = new ChildNode("switch", SCRIPTS.switch, ["--config", join(jobDir, "switch.json")]);
    children.push(sw);
    const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    const workers = Array.from({ length: fanIn }, (_, w) => {
      const child = new ChildNode(`worker ${w}`, SCRIPTS.worker, [
        ...["--switch", `127.0.0.1:${ready.dataPort}`, "--mode", mode, "--worker", String(w)],
        ...["--fan-in", String(fanIn), "--region-size", "32", "--window", "16"],
        ...["--tensor-bytes", "4MiB"],
        ...["--link-rate", "5Mbps", "--wait-go", "--progress-ms", "100", ...workerArgs],
      ]);
      children.push(child);
      return child;
    });
    for (const w of workers) await w.waitFor(WorkerReadySchema, STARTUP_MS);
    for (const w of workers) w.send("go");
    const progressed = (c: ChildNode) =>
      (c.recordsOf(WorkerProgressSchema).at(-1)?.completedPackets ?? 0) > 0;
    await poll(`first results of every worker of the ${mode} job`, STARTUP_MS, async () =>
      workers.every(progressed) ? true : null,
    );
    return { sw, ps, workers, dir: jobDir };
  }

  it("kill -9 the PS: an ATP job's workers exit 1 saying the parameter server is unreachable", async () => {
    const { ps, workers, dir: jobDir } = await runningJob("atp");
    const killedAt = Date.now();
    ps?.child.kill("SIGKILL");
    for (const w of workers) {
      assert.equal(await w.waitExit(untilBound(killedAt, REPORT_BOUND_S)), 1, w.stderr);
      assert.match(w.stderr, /the switch failed job 1: the parameter server is unreachable/);
    }
    const seconds = (Date.now() - killedAt) / 1000;
    console.log(`workers exited ${seconds.toFixed(1)} s after the PS was killed (deadPeerS 2)`);
    await rm(jobDir, { recursive: true, force: true });
  });

  it("kill -9 the switch: workers say so within seconds and give up with a clear error", async () => {
    const {
      sw,
      workers,
      dir: jobDir,
    } = await runningJob("netreduce", [...["--warn-after-s", "2", "--give-up-s", "6"]]);
    const killedAt = Date.now();
    sw.child.kill("SIGKILL");
    for (const w of workers) {
      // Each worker's own clock says it waited the give-up (6.0 s): never early.
      assert.equal(await w.waitExit(untilBound(killedAt, 6 + REPORT_BOUND_S)), 1, w.stderr);
      assert.match(w.stderr, /no answer from the switch at 127\.0\.0\.1:\d+ for \d+ s/);
      assert.match(w.stderr, /error: .*no answer from the switch for 6\.0 s/);
    }
    const seconds = (Date.now() - killedAt) / 1000;
    console.log(
      `workers gave up ${seconds.toFixed(1)} s after the switch was killed (give-up 6 s)`,
    );
    await rm(jobDir, { recursive: true, force: true });
  });

  it("a worker stopped (SIGSTOP) for 7 s is waited for: every worker finishes exact, the default deadPeerS and give-up", async () => {
    const { sw, workers, dir: jobDir } = await runningJob("netreduce", [], {}, 3);
    const stopped = workers[1];
    stopped.child.kill("SIGSTOP");
    try {
      await new Promise((resolve) => setTimeout(resolve, 7000));
    } finally {
      stopped.child.kill("SIGCONT");
    }
    for (const w of workers) {
      assert.equal((await w.waitFor(WorkerResultSchema, 120_000)).verified, true, w.stderr);
      assert.equal(await w.waitExit(STARTUP_MS), 0, w.stderr);
    }
    await sw.stop();
    const stats = sw.recordsOf(SwitchStatsSchema).find((r) => r.final === true);
    assert.equal(stats?.jobsFailed, 0);
    await rm(jobDir, { recursive: true, force: true });
  });
});
