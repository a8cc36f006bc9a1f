import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { SwitchReadySchema, SwitchStatsSchema, WorkerResultSchema } from "../proto/records.js";
import { ChildNode } from "../runner/processes.js";
import { SCRIPTS } from "../runner/run.js";
import { Worker } from "../worker/worker.js";
import { makeGradient, verifyAllReduce } from "../worker/workload.js";
import { STARTUP_MS } from "./waits.js";

/** Blocks this thread's event loop for `ms`, as a library's caller may. */
function blockLoop(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // busy: no timer, no socket, no keepalive from this thread
  }
}

/**
 * The library case (README.md, "Dead peers"): a caller that blocks its
 * event loop between all-reduces sends no keepalive from it; with
 * `keepaliveThread` a thread's socket does, so even a job with a 2 s
 * deadPeerS waits out a 5 s block. Its peer is an ina-worker process.
 */
describe("keepalives from a thread", () => {
  const children: ChildNode[] = [];
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(children.map((c) => c.stop()));
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it("a library worker whose loop is blocked 5 s between all-reduces keeps a deadPeerS 2 job alive", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ina-keepalive-"));
    dirs.push(dir);
    const config = join(dir, "switch.json");
    const job = { id: 1, mode: "netreduce", fanIn: 2, offset: 0, regionSize: 32, window: 16 };
    await writeFile(config, JSON.stringify({ aggregators: 64, jobs: [{ ...job, deadPeerS: 2 }] }));
    const sw = new ChildNode("switch", SCRIPTS.switch, ["--config", config]);
    children.push(sw);
    const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    const elements = 16_384;
    const peer = new ChildNode("worker 0", SCRIPTS.worker, [
      ...["--switch", `127.0.0.1:${ready.dataPort}`, "--worker", "0", "--fan-in", "2"],
      ...["--region-size", "32", "--window", "16", "--tensor-bytes", String(elements * 4)],
      ...["--iterations", "2"],
    ]);
    children.push(peer);
    const worker = await Worker.connect({
      mode: "netreduce",
      jobId: 1,
      workerId: 1,
      fanIn: 2,
      regionOffset: 0,
      regionSize: 32,
      window: 16,
      elementsPerPacket: 256,
      scaleBits: 20,
      switchHost: "127.0.0.1",
      switchPort: ready.dataPort,
      keepaliveThread: true,
    });
    try {
      const input = makeGradient(elements, 1, 1);
      const first = await worker.allreduce(input);
      assert.equal(verifyAllReduce(first, 1, 2, 20).verified, true);
      // The peer has begun its second all-reduce and waits for this worker.
      blockLoop(5000);
      const second = await worker.allreduce(input);
      assert.equal(verifyAllReduce(second, 1, 2, 20).verified, true);
    } finally {
      await worker.close();
    }
    assert.equal((await peer.waitFor(WorkerResultSchema, STARTUP_MS)).verified, true, peer.stderr);
    assert.equal(await peer.waitExit(STARTUP_MS), 0, peer.stderr);
    await sw.stop();
    const stats = sw.recordsOf(SwitchStatsSchema).find((r) => r.final === true);
    assert.equal(stats?.jobsFailed, 0);
    assert.ok((stats?.jobs[0]?.keepalives ?? 0) >= 4, `keepalives: ${stats?.jobs[0]?.keepalives}`);
  });
});
