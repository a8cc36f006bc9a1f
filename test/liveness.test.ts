import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setImmediate as tick } from "node:timers/promises";
import { parseSwitchConfig } from "../proto/config.js";
import { bearer } from "../proto/control.js";
import { DropReason } from "../proto/drops.js";
import { PacketType, WORKER_ID_NONE } from "../proto/wire.js";
import { buildControlApp, ControlPlane } from "../switch/control.js";
import { SwitchCore } from "../switch/core.js";
import { MemoryManager } from "../switch/memory.js";
import { DEFAULT_RTO, WorkerCore } from "../worker/core.js";
import { captureTransmit, contribution, packet } from "./packets.js";

/** Dead peers (proto/README.md, section 15): the switch notices, tells the workers, frees the job. */
const job = { id: 7, mode: "netreduce" as const, fanIn: 3, offset: 0, regionSize: 8, window: 4 };
const portOf = (w: number) => 5000 + w;
const HOST = "127.0.0.1";

function setup(extra: Record<string, unknown> = {}) {
  const capture = captureTransmit();
  const core = new SwitchCore(
    parseSwitchConfig({ aggregators: 8, elementsPerAggregator: 4, jobs: [job], ...extra }),
    capture,
  );
  const failures: string[] = [];
  core.onJobFailed = (_id, reason) => failures.push(reason);
  const send = (w: number, psn: number, at: number) =>
    core.receive(contribution(job, w, psn, [1]), portOf(w), HOST, at);
  return { capture, core, failures, send };
}

describe("dead peers", () => {
  it("a worker its peers wait on fails the job: every worker is told, the aggregators are freed", () => {
    const { capture, core, failures, send } = setup();
    for (const w of [0, 1, 2]) send(w, 0, 0); // worker 2 was there
    for (const w of [0, 1, 2]) send(w, 1, 10);
    for (const w of [0, 1]) send(w, 2, 20); // worker 2 never sends PSN 2
    capture.sent.length = 0;
    core.handleTimeout(3000);
    assert.equal(failures.length, 0, "3 s is not yet 5 s");
    core.handleTimeout(5100);
    assert.deepEqual(failures, [
      "job 7: worker 2 stopped sending (PSN 2 waited 5.1 s for it while the others' contributions had arrived)",
    ]);
    const told = capture.sent.filter((s) => s.header.type === PacketType.failed);
    assert.deepEqual(told.map((s) => s.port).sort(), [portOf(0), portOf(1), portOf(2)]);
    assert.equal(told[0].header.bitmap, 0b100);
    assert.equal(told[0].header.psn, 2);
    assert.equal(core.job(7), undefined, "its rule is gone");
    assert.equal(
      core.aggregators.state.reduce((n, s) => n + s, 0),
      0,
      "its aggregators are free",
    );
    assert.equal(core.stats.jobsFailed, 1);
    // A worker that missed the news hears it with its next packet.
    capture.sent.length = 0;
    send(0, 3, 6000);
    assert.equal(core.stats.drops[DropReason.jobFailed], 1);
    assert.equal(capture.sent.length, 1);
    assert.equal(capture.sent[0].header.type, PacketType.failed);
    assert.equal(capture.sent[0].port, portOf(0));
  });

  it("a worker whose one contribution keeps getting lost, but which is still heard, is not dead", () => {
    const { core, failures, send } = setup();
    for (const w of [0, 1, 2]) send(w, 0, 0);
    for (const w of [0, 1]) send(w, 1, 10); // worker 2's PSN 1 is lost, again and again...
    send(2, 2, 3000); // ...while it is heard otherwise
    send(2, 2, 5000);
    core.handleTimeout(5100);
    assert.deepEqual(failures, [], "PSN 1 waited 5.1 s, but worker 2 spoke 0.1 s ago");
    core.handleTimeout(10_100);
    assert.equal(failures.length, 1, "then silence for 5.1 s: dead");
    assert.match(failures[0], /worker 2 stopped sending \(PSN 1 waited 10\.1 s/);
  });

  it("a job between all-reduces is never taken for dead, however long it pauses", () => {
    const { core, failures, send } = setup();
    for (let psn = 0; psn < 4; psn++) for (const w of [0, 1, 2]) send(w, psn, psn);
    core.handleTimeout(60_000);
    core.handleTimeout(600_000);
    assert.deepEqual(failures, []);
    assert.notEqual(core.job(7), undefined);
  });

  it("a parameter server that stops acking fails its ATP job; one that acks does not", () => {
    const atp = { id: 9, mode: "atp" as const, fanIn: 1, offset: 0, regionSize: 8, window: 4 };
    const make = () => {
      const capture = captureTransmit();
      const core = new SwitchCore(
        parseSwitchConfig({
          aggregators: 8,
          elementsPerAggregator: 4,
          jobs: [atp],
          parameterServer: { host: HOST, port: 9100 },
        }),
        capture,
      );
      const failures: string[] = [];
      core.onJobFailed = (_id, reason) => failures.push(reason);
      // fan-in 1: each contribution is a full aggregate, sent to the PS at once
      const send = (psn: number, at: number) =>
        core.receive(
          contribution({ ...atp, regionSize: 8 }, 0, psn, [1], { aggregatorIndex: psn }),
          portOf(0),
          HOST,
          at,
        );
      return { capture, core, failures, send };
    };
    const dead = make();
    dead.send(0, 0);
    dead.core.handleTimeout(5200);
    assert.deepEqual(dead.failures, [
      "job 9: the parameter server is unreachable (no ack for 5.2 s)",
    ]);
    const told = dead.capture.sent.find((s) => s.header.type === PacketType.failed);
    assert.equal(told?.header.bitmap, 0);

    const alive = make();
    for (let psn = 0; psn < 8; psn++) {
      alive.send(psn, psn * 1000);
      const ack = packet(
        {
          type: PacketType.ack,
          jobId: 9,
          workerId: WORKER_ID_NONE,
          fanIn: 1,
          psn,
          aggregatorIndex: psn,
          bitmap: 1,
          scaleBits: 8,
          destination: 0xffff,
        },
        [1],
      );
      alive.core.receive(ack, 9100, HOST, psn * 1000 + 2000);
      alive.core.handleTimeout(psn * 1000 + 2500);
    }
    alive.core.handleTimeout(100_000);
    assert.deepEqual(alive.failures, [], "acks kept coming; then the job paused");
  });

  it("a worker told its job failed ends its all-reduce naming the dead worker", () => {
    const worker = new WorkerCore(
      {
        ...DEFAULT_RTO,
        mode: "netreduce",
        jobId: 7,
        workerId: 0,
        fanIn: 3,
        regionOffset: 0,
        regionSize: 8,
        window: 4,
        elementsPerPacket: 4,
        scaleBits: 8,
      },
      { send: () => {} },
    );
    worker.begin(new Float32Array(64), new Float32Array(64), 0);
    worker.receive(
      packet(
        {
          type: PacketType.failed,
          jobId: 7,
          workerId: WORKER_ID_NONE,
          fanIn: 3,
          psn: 2,
          aggregatorIndex: 5100,
          bitmap: 0b100,
          destination: 0xffff,
        },
        [],
      ),
      10,
    );
    assert.equal(worker.done, true);
    assert.match(
      worker.failure ?? "",
      /^the switch failed job 7: worker 2 stopped sending \(PSN 2 waited 5\.1 s/,
    );
  });

  it("a control-plane job that fails is marked failed with the reason, and its memory goes back", async () => {
    const core = new SwitchCore(
      parseSwitchConfig({ aggregators: 16, deadPeerMs: 1000 }),
      captureTransmit(),
    );
    const manager = new MemoryManager({ aggregators: 16, bytesPerAggregator: 1024, policy: "edf" });
    const app = buildControlApp(
      new ControlPlane({ manager, core, dataAddress: { host: HOST, port: 1 }, now: () => 0 }),
    );
    const submitted = await app.inject({
      method: "POST",
      url: "/jobs",
      payload: {
        id: 3,
        class: "be",
        mode: "netreduce",
        workers: 2,
        window: 2,
        modelBytes: 64,
        aggregators: 16,
      },
    });
    const credential = submitted.json().credential;
    const rule = { id: 3, fanIn: 2, offset: 0, regionSize: 16 };
    core.receive(contribution(rule, 0, 0, [1]), portOf(0), HOST, 0);
    core.handleTimeout(1500);
    await tick();
    const view = (await app.inject({ method: "GET", url: "/jobs/3" })).json();
    assert.equal(view.status, "failed");
    assert.match(view.reason, /job 3: worker 1 stopped sending/);
    assert.equal((await app.inject({ method: "GET", url: "/allocation" })).json().freeTotal, 16);
    const done = await app.inject({
      method: "POST",
      url: "/jobs/3/workers/0/done",
      headers: { authorization: bearer(credential) },
    });
    assert.equal(done.json().status, "failed", "a failed job stays failed");
  });
});
