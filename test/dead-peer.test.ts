import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ChildNode } from "../bench/processes.js";
import { SCRIPTS } from "../bench/run.js";

/** A worker killed mid-job, as real processes: its peers hear of it from the switch and say who died. */
describe("a dead worker, as real processes", () => {
  const children: ChildNode[] = [];
  let dir = "";
  after(async () => {
    await Promise.all(children.map((c) => c.stop()));
    if (dir !== "") await rm(dir, { recursive: true, force: true });
  });

  it("kill -9 one worker: the others exit 1 naming it, well before any timeout, and the switch counts the failure", async () => {
    dir = await mkdtemp(join(tmpdir(), "ina-dead-"));
    const config = join(dir, "switch.json");
    await writeFile(
      config,
      JSON.stringify({
        aggregators: 64,
        deadPeerMs: 2000,
        jobs: [{ id: 1, mode: "netreduce", fanIn: 3, offset: 0, size: 32, window: 16 }],
      }),
    );
    const sw = new ChildNode("switch", SCRIPTS.switch, ["--config", config]);
    children.push(sw);
    const ready = await sw.waitFor("ready", 15_000);
    const workers = [0, 1, 2].map((w) => {
      // A slow NIC keeps the all-reduce running for about 7 s.
      const child = new ChildNode(`worker ${w}`, SCRIPTS.worker, [
        ...["--switch", `127.0.0.1:${ready.dataPort}`, "--worker", String(w), "--fan-in", "3"],
        ...["--size-bytes", "4MiB", "--window", "16", "--link-rate", "5Mbps", "--wait-go"],
        ...["--progress-ms", "100"],
      ]);
      children.push(child);
      return child;
    });
    for (const w of workers) await w.waitFor("ready", 30_000);
    for (const w of workers) w.send("go");
    // Once the victim has results, it is part of the job: then it dies.
    const victim = workers[2];
    for (let i = 0; i < 300; i++) {
      const progress = victim.records.filter((r) => r.event === "progress");
      if (Number(progress.at(-1)?.completedPackets ?? 0) > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const killedAt = Date.now();
    victim.child.kill("SIGKILL");
    for (const w of workers.slice(0, 2)) {
      assert.equal(await w.waitExit(30_000), 1, w.stderr);
      assert.match(w.stderr, /the switch failed job 1: worker 2 stopped sending/);
    }
    const seconds = (Date.now() - killedAt) / 1000;
    console.log(`survivors exited ${seconds.toFixed(1)} s after the kill (deadPeerMs 2000)`);
    assert.ok(seconds < 20, `took ${seconds} s`);
    await sw.stop();
    const stats = sw.records.find((r) => r.event === "stats");
    assert.equal(stats?.jobsFailed, 1);
  });
});
