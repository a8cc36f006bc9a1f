import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseSwitchConfig } from "../proto/config.js";
import { bearer } from "../proto/control.js";
import { DropReason } from "../proto/drops.js";
import { Flag, PacketType, WORKER_ID_NONE } from "../proto/wire.js";
import { PsCore } from "../ps/core.js";
import { buildControlApp, ControlPlane } from "../switch/control.js";
import { SwitchCore } from "../switch/core.js";
import { MemoryManager } from "../switch/memory.js";
import { captureTransmit, contribution, packet } from "./packets.js";

/**
 * Data-plane isolation (proto/README.md, section 15): a worker's packets
 * count only from the address bound to (job, worker), the PS takes pieces
 * only from the switch, and nothing a refused packet carries reaches an
 * aggregator or a learned address.
 */
const job = { id: 7, mode: "netreduce" as const, fanIn: 3, offset: 0, regionSize: 4, window: 2 };
const portOf = (w: number) => 5000 + w;
const STRANGER = 6666;
const HOST = "127.0.0.1";

function netReduceSwitch() {
  const capture = captureTransmit();
  const core = new SwitchCore(
    parseSwitchConfig({ aggregators: 8, elementsPerAggregator: 4, jobs: [job] }),
    capture,
  );
  const send = (w: number, psn: number, values: number[], port = portOf(w)) =>
    core.receive(contribution(job, w, psn, values), port, HOST, 0);
  return { capture, core, send };
}

describe("data-plane isolation", () => {
  it("contributions claiming a bound worker from another address are refused before they are added", () => {
    const { capture, core, send } = netReduceSwitch();
    for (let w = 0; w < 3; w++) send(w, 0, [w + 1]); // binds each worker's address
    assert.equal(capture.sent.length, 3);
    // A stranger sends PSN 1 for every worker, ahead of them.
    for (let w = 0; w < 3; w++) send(w, 1, [1000], STRANGER);
    assert.equal(core.stats.drops[DropReason.wrongSource], 3);
    assert.equal(core.job(7)?.maxPsn, 0, "no watermark moved");
    for (let w = 0; w < 3; w++) send(w, 1, [w + 1]);
    const results = capture.sent.filter((s) => s.header.psn === 1);
    assert.equal(results.length, 3);
    for (const r of results) {
      assert.deepEqual(r.values, [6], "only the real workers' values");
      assert.equal(r.address, HOST);
      assert.notEqual(r.port, STRANGER);
    }
  });

  it("a contribution of another shape than the job's cannot claim an aggregator", () => {
    const capture = captureTransmit();
    const shaped = { ...job, elementsPerPacket: 2, scaleBits: 8 };
    const core = new SwitchCore(
      parseSwitchConfig({ aggregators: 8, elementsPerAggregator: 4, jobs: [shaped] }),
      capture,
    );
    core.receive(contribution(job, 0, 0, [9], { scaleBits: 3 }), portOf(0), HOST, 0);
    core.receive(contribution(job, 0, 0, [9, 9, 9]), portOf(0), HOST, 0);
    assert.equal(core.stats.drops[DropReason.shapeMismatch], 2);
    assert.equal(core.aggregators.state[0], 0, "nothing claimed");
    for (let w = 0; w < 3; w++) core.receive(contribution(job, w, 0, [1, 2]), portOf(w), HOST, 0);
    assert.deepEqual(capture.sent[0].values, [3, 6]);
  });

  it("a refused far-ahead PSN moves no watermark: a region change still drains", () => {
    const { core, send } = netReduceSwitch();
    for (let w = 0; w < 3; w++) send(w, 0, [1]);
    send(0, 1000, [1]); // breaks the window: refused
    assert.equal(core.stats.drops[DropReason.windowViolation], 1);
    assert.equal(core.job(7)?.maxPsn, 0);
    let drained = -1;
    core.onRegionDrained = (_id, epoch) => {
      drained = epoch;
    };
    core.changeRegion(7, 4, 4, 1);
    const start = core.job(7)?.current.start ?? -1;
    assert.ok(start < 10, `the switchover is near the real PSNs: ${start}`);
    for (let w = 0; w < 3; w++) {
      core.receive(
        contribution({ ...job, offset: 4, regionSize: 4 }, w, start, [1], { regionEpoch: 1 }),
        portOf(w),
        HOST,
        0,
      );
    }
    assert.equal(drained, 0, "every worker sent in the new epoch: the old region drained");
  });

  it("an address is taken only from an accepted packet: a refused one binds nothing", () => {
    const { capture, core, send } = netReduceSwitch();
    // Worker 2's first packet ever comes from a stranger, with a forged index: dropped, unbound.
    core.receive(contribution(job, 2, 0, [9], { aggregatorIndex: 3 }), STRANGER, HOST, 0);
    assert.equal(core.stats.drops[DropReason.badIndex], 1);
    for (let w = 0; w < 3; w++) send(w, 0, [1]);
    assert.deepEqual(
      capture.sent.map((s) => s.port).sort(),
      [portOf(0), portOf(1), portOf(2)],
      "worker 2 bound its own address",
    );
  });

  it("a forward claiming a worker from another address neither forwards nor re-points its results", () => {
    const { capture, core, send } = netReduceSwitch();
    for (let w = 0; w < 3; w++) send(w, 0, [1]);
    capture.sent.length = 0;
    const hijack = packet(
      { type: PacketType.forward, jobId: 7, fanIn: 3, workerId: 0, destination: 1 },
      [1],
    );
    core.receive(hijack, STRANGER, HOST, 0);
    assert.equal(core.stats.drops[DropReason.wrongSource], 1);
    assert.equal(capture.sent.length, 0, "nothing forwarded");
    for (let w = 0; w < 3; w++) send(w, 1, [1]);
    assert.deepEqual(
      capture.sent.map((s) => s.port).sort(),
      [portOf(0), portOf(1), portOf(2)],
      "worker 0's results still go to worker 0",
    );
  });

  it("a worker that joined through the control plane is bound before it sends: a first packet from elsewhere is refused", async () => {
    const core = new SwitchCore(parseSwitchConfig({ aggregators: 64 }), captureTransmit());
    const manager = new MemoryManager({ aggregators: 64, bytesPerAggregator: 1024, policy: "edf" });
    const app = buildControlApp(
      new ControlPlane({ manager, core, dataAddress: { host: HOST, port: 1 }, now: () => 0 }),
    );
    const auth = (credential: string) => ({ authorization: bearer(credential) });
    const submit = await app.inject({
      method: "POST",
      url: "/jobs",
      payload: {
        id: 3,
        class: "be",
        mode: "netreduce",
        workers: 2,
        window: 2,
        modelBytes: 64,
        aggregators: 4,
      },
    });
    assert.equal(submit.statusCode, 201);
    const credential = submit.json().credential;
    const bind = await app.inject({
      method: "PUT",
      url: "/jobs/3/workers/0/address",
      payload: { port: portOf(0) },
      remoteAddress: HOST,
      headers: auth(credential),
    });
    assert.equal(bind.statusCode, 200, bind.body);
    assert.deepEqual(bind.json(), { jobId: 3, workerId: 0, host: HOST, port: portOf(0) });
    const rule = { id: 3, fanIn: 2, offset: 0, regionSize: 4 };
    core.receive(contribution(rule, 0, 0, [5]), STRANGER, HOST, 0);
    assert.equal(core.stats.drops[DropReason.wrongSource], 1, "refused although it came first");
    core.receive(contribution(rule, 0, 0, [5]), portOf(0), HOST, 0);
    assert.equal(core.stats.drops[DropReason.wrongSource], 1);
    const bad = await app.inject({
      method: "PUT",
      url: "/jobs/3/workers/5/address",
      payload: { port: 9 },
      headers: auth(credential),
    });
    assert.equal(bad.statusCode, 400);
    assert.match(bad.json().message, /workerId: job 3 has 2 workers/);
  });

  it("a control-plane job counts nothing before its workers are bound: a stranger's contributions in the pre-bind window are refused, the real sums exact", async () => {
    const capture = captureTransmit();
    const core = new SwitchCore(parseSwitchConfig({ aggregators: 64 }), capture);
    const manager = new MemoryManager({ aggregators: 64, bytesPerAggregator: 1024, policy: "edf" });
    const app = buildControlApp(
      new ControlPlane({ manager, core, dataAddress: { host: HOST, port: 1 }, now: () => 0 }),
    );
    const submit = await app.inject({
      method: "POST",
      url: "/jobs",
      payload: {
        id: 21,
        class: "be",
        mode: "netreduce",
        workers: 2,
        window: 4,
        modelBytes: 64,
        aggregators: 8,
      },
    });
    assert.equal(submit.statusCode, 201);
    const credential = submit.json().credential;
    const rule = { id: 21, fanIn: 2, offset: 0, regionSize: 8 };
    // The stranger saw job 21 on GET /jobs and sends PSNs 0-7 as both workers.
    for (let psn = 0; psn < 8; psn++) {
      for (let w = 0; w < 2; w++)
        core.receive(contribution(rule, w, psn, [1000]), STRANGER, HOST, 0);
    }
    assert.equal(core.stats.drops[DropReason.wrongSource], 16, "every one refused and counted");
    assert.equal(capture.sent.length, 0, "no result went anywhere");
    assert.equal(core.stats.jobsFailed, 0, "nor did the stranger get the job failed");
    for (let w = 0; w < 2; w++) {
      const bind = await app.inject({
        method: "PUT",
        url: `/jobs/21/workers/${w}/address`,
        payload: { port: portOf(w) },
        remoteAddress: HOST,
        headers: { authorization: bearer(credential) },
      });
      assert.equal(bind.statusCode, 200, bind.body);
    }
    for (let w = 0; w < 2; w++) core.receive(contribution(rule, w, 0, [w + 1]), portOf(w), HOST, 0);
    const results = capture.sent.filter((r) => r.header.psn === 0);
    assert.equal(results.length, 2);
    for (const r of results) assert.deepEqual(r.values, [3], "the real workers' sum alone");
  });

  it("a config-file job with `sources` binds on first use only an allowed address", () => {
    const capture = captureTransmit();
    const core = new SwitchCore(
      parseSwitchConfig({
        aggregators: 8,
        elementsPerAggregator: 4,
        jobs: [{ ...job, sources: ["10.1.2.0/24", "::1"] }],
      }),
      capture,
    );
    core.receive(contribution(job, 0, 0, [1000]), portOf(0), HOST, 0);
    assert.equal(core.stats.drops[DropReason.wrongSource], 1, "127.0.0.1 is not a source");
    core.receive(contribution(job, 0, 0, [1]), portOf(0), "10.1.2.7", 0);
    assert.equal(core.stats.drops[DropReason.wrongSource], 1);
    core.receive(contribution(job, 0, 1, [1]), portOf(0), "10.1.2.8", 0);
    assert.equal(core.stats.drops[DropReason.wrongSource], 2, "bound to the first allowed one");
    assert.throws(
      () => parseSwitchConfig({ aggregators: 8, jobs: [{ ...job, sources: ["10.1.2.0/33"] }] }),
      /sources.*expected an IPv4 address, an IPv4 CIDR/s,
    );
  });

  it("the PS takes pieces only from the switch", () => {
    const capture = captureTransmit();
    const atpJob = { id: 4, mode: "atp" as const, fanIn: 2, offset: 0, regionSize: 8, window: 4 };
    const ps = new PsCore([atpJob], 4, capture);
    const SWITCH = 7000;
    const piece = (w: number, values: number[]) =>
      packet(
        {
          type: PacketType.contribution,
          flags: Flag.toPs,
          jobId: 4,
          workerId: w,
          fanIn: 2,
          psn: 0,
          bitmap: 1 << w,
          scaleBits: 8,
        },
        values,
      );
    ps.trustSwitch(SWITCH, HOST);
    ps.receive(piece(0, [1000]), STRANGER, HOST);
    ps.receive(
      packet(
        {
          type: PacketType.contribution,
          jobId: 4,
          workerId: WORKER_ID_NONE,
          fanIn: 2,
          bitmap: 0b11,
          scaleBits: 8,
        },
        [5000],
      ),
      STRANGER,
      HOST,
    );
    assert.equal(ps.stats.drops[DropReason.wrongSource], 2);
    ps.receive(piece(0, [1]), SWITCH, HOST);
    ps.receive(piece(1, [2]), SWITCH, HOST);
    assert.equal(capture.sent.length, 1);
    assert.deepEqual(capture.sent[0].values, [3], "only what came through the switch");
    assert.equal(capture.sent[0].port, SWITCH);
  });

  it("without --switch, the PS trusts the first accepted piece's source", () => {
    const ps = new PsCore(
      [{ id: 4, mode: "atp", fanIn: 1, offset: 0, regionSize: 8, window: 4 }],
      4,
      captureTransmit(),
    );
    const piece = packet(
      { type: PacketType.contribution, jobId: 4, workerId: 0, fanIn: 1, bitmap: 1, scaleBits: 8 },
      [1],
    );
    ps.receive(piece, 7000, HOST);
    ps.receive(piece, STRANGER, HOST);
    assert.equal(ps.stats.drops[DropReason.wrongSource], 1);
  });

  it("a PS told to await its switch's address trusts no first piece: a stranger's is refused before and after", () => {
    const ps = new PsCore(
      [{ id: 4, mode: "atp", fanIn: 1, offset: 0, regionSize: 8, window: 4 }],
      4,
      captureTransmit(),
    );
    ps.awaitSwitch();
    const piece = packet(
      { type: PacketType.contribution, jobId: 4, workerId: 0, fanIn: 1, bitmap: 1, scaleBits: 8 },
      [1],
    );
    ps.receive(piece, STRANGER, HOST); // first, but not trusted
    assert.equal(ps.stats.drops[DropReason.wrongSource], 1);
    ps.trustSwitch(7000, HOST);
    ps.receive(piece, 7000, HOST);
    assert.equal(ps.stats.aggregationsCompleted, 1, "the switch's piece counts");
    ps.receive(piece, STRANGER, HOST);
    assert.equal(ps.stats.drops[DropReason.wrongSource], 2);
  });
});
