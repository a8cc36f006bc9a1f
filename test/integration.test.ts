import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { after, describe, it } from "node:test";
import { parseSwitchConfig } from "../proto/config.js";
import { DropReason } from "../proto/drops.js";
import { Prng } from "../proto/prng.js";
import { SwitchServer } from "../switch/server.js";
import { Worker } from "../worker/worker.js";
import { makeGradient, verifyAllReduce } from "../worker/workload.js";
import { contribution } from "./packets.js";
import { testSeed } from "./seed.js";

describe("switch and workers on loopback UDP, in one process", () => {
  const closers: Array<() => Promise<void>> = [];
  after(async () => {
    await Promise.all(closers.map((close) => close()));
  });

  it("all-reduces exactly through 1% loss and 1% duplication each way, undisturbed by malformed datagrams", async () => {
    const seed = testSeed("udp integration", 42);
    const fanIn = 4;
    const window = 32;
    const job = {
      id: 9,
      mode: "netreduce" as const,
      fanIn,
      offset: 8,
      regionSize: 2 * window,
      window,
    };
    const rates = { drop: 0.01, duplicate: 0.01, reorder: 0 };
    const server = await SwitchServer.start({
      config: parseSwitchConfig({
        aggregators: 8 + job.regionSize,
        elementsPerAggregator: 256,
        jobs: [job],
        faults: { seed, ingress: rates, egress: rates },
      }),
    });
    closers.push(() => server.close());
    const { port } = server.address();
    const workers = await Promise.all(
      Array.from({ length: fanIn }, (_, w) =>
        Worker.connect({
          mode: "netreduce",
          jobId: job.id,
          workerId: w,
          fanIn,
          regionOffset: job.offset,
          regionSize: job.regionSize,
          window,
          elementsPerPacket: 256,
          scaleBits: 20,
          switchHost: "127.0.0.1",
          switchPort: port,
        }),
      ),
    );
    for (const w of workers) closers.push(() => w.close());

    // A hostile host fires junk at the switch while the all-reduce runs.
    const junk = createSocket("udp4");
    closers.push(() => new Promise((resolve) => junk.close(() => resolve())));
    const prng = new Prng(seed);
    let junkSent = 0;
    const junkTimer = setInterval(() => {
      for (let i = 0; i < 20; i++) {
        const bytes = Buffer.alloc(prng.nextUint32() % 200);
        for (let j = 0; j < bytes.length; j++) bytes[j] = prng.nextUint32() & 0xff;
        junk.send(bytes, port, "127.0.0.1");
        junkSent++;
      }
      // Well-formed but for a job that does not exist, and one with a forged index.
      junk.send(contribution({ ...job, id: 1 }, 0, 0, [1]), port, "127.0.0.1");
      junk.send(contribution(job, 0, 0, [1], { aggregatorIndex: 0 }), port, "127.0.0.1");
      junkSent += 2;
    }, 5);
    closers.push(async () => clearInterval(junkTimer));

    const elements = 400_000;
    const outputs = await Promise.all(
      workers.map((worker, w) => worker.allreduce(makeGradient(elements, seed, w))),
    );
    clearInterval(junkTimer);
    for (const [w, out] of outputs.entries()) {
      const v = verifyAllReduce(out, seed, fanIn, 20);
      assert.equal(v.notBitExact, 0, `worker ${w}: ${JSON.stringify(v)}`);
      assert.equal(v.verified, true);
    }
    const s = server.core.stats;
    const retransmissions = workers.reduce((sum, w) => sum + w.core.stats.retransmissions, 0);
    assert.ok(retransmissions > 0, "loss was recovered by retransmission");
    assert.ok(s.drops[DropReason.injectedDrop] > 0);
    assert.ok(s.drops[DropReason.duplicate] > 0);
    assert.ok(s.drops[DropReason.unknownJob] > 0);
    // The forged contribution claims worker 0 from another address: refused
    // before the program sees it (it used to be dropped for its bad index).
    assert.ok(s.drops[DropReason.wrongSource] > 0);
    assert.ok(junkSent > 0);
    assert.equal(server.core.jobs[0].counters.aggregationsCompleted, Math.ceil(elements / 256));
  });
});
