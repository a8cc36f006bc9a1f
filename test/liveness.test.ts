import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setImmediate as tick } from "node:timers/promises";
import { parseScenario, resolveJobs, switchConfigOf } from "../experiment/scenario.js";
import { decodeHeader } from "../proto/codec.js";
import { parseSwitchConfig, switchDeadPeerMs } from "../proto/config.js";
import { bearer } from "../proto/control.js";
import { DropReason } from "../proto/drops.js";
import { writeKeepalive } from "../proto/packets.js";
import { Prng } from "../proto/prng.js";
import { emptyHeader, HEADER_BYTES, PacketType, WORKER_ID_NONE } from "../proto/wire.js";
import { type CoreSimJob, simulateCores } from "../sim/harness.js";
import { buildControlApp, ControlPlane } from "../switch/control.js";
import { SwitchCore } from "../switch/core.js";
import { MemoryManager } from "../switch/memory.js";
import { DEFAULT_RTO, WorkerCore } from "../worker/core.js";
import { verifyAllReduce } from "../worker/workload.js";
import { captureTransmit, contribution, packet } from "./packets.js";
import { testSeed } from "./seed.js";

/** Dead peers (proto/README.md, section 15): the switch notices, tells the workers, frees the job. */
const job = { id: 7, mode: "netreduce" as const, fanIn: 3, offset: 0, regionSize: 8, window: 4 };
const portOf = (w: number) => 5000 + w;
const HOST = "127.0.0.1";

function setup(extra: Record<string, unknown> = { deadPeerS: 5 }) {
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

  it("a config-file worker whose address a stranger took first: the failure says so, not only 'stopped sending'", () => {
    const { core, failures, send } = setup();
    core.receive(contribution(job, 2, 0, [1000]), 6666, HOST, 0); // the stranger, first
    for (const w of [0, 1]) send(w, 0, 0);
    for (const w of [0, 1]) send(w, 1, 0);
    send(2, 0, 10); // the real worker 2: refused
    send(2, 1, 10);
    core.handleTimeout(5100);
    assert.equal(failures.length, 1);
    assert.match(failures[0], /^job 7: worker 2 stopped sending/);
    assert.match(
      failures[0],
      /worker 2 is bound to 127\.0\.0\.1:6666 \(the first address that sent for it\), and packets for it from 127\.0\.0\.1:5002 were refused \(wrongSource\)/,
    );
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
          deadPeerS: 5,
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
    const bound = await app.inject({
      method: "PUT",
      url: "/jobs/3/workers/0/address",
      payload: { port: portOf(0) },
      remoteAddress: HOST,
      headers: { authorization: bearer(credential) },
    });
    assert.equal(bound.statusCode, 200, bound.body);
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

/** A keepalive of worker `w` (proto/README.md, sections 4 and 15). */
function keepalive(jobId: number, w: number, fanIn: number): Buffer {
  const buf = Buffer.alloc(HEADER_BYTES);
  writeKeepalive(new DataView(buf.buffer, buf.byteOffset, HEADER_BYTES), 0, jobId, w, fanIn);
  return buf;
}

describe("keepalive packets", () => {
  it("encode and decode: type 7, the worker's ids, no payload; a payload or a foreign worker id is dropped", () => {
    const h = emptyHeader();
    const bytes = keepalive(7, 2, 3);
    assert.equal(bytes.length, 32);
    assert.equal(decodeHeader(new DataView(bytes.buffer, bytes.byteOffset, 32), 0, 32, h), 0);
    assert.deepEqual(
      [h.type, h.jobId, h.workerId, h.fanIn, h.elementCount, h.psn, h.flags],
      [PacketType.keepalive, 7, 2, 3, 0, 0, 0],
    );
    const withPayload = packet(
      { type: PacketType.keepalive, jobId: 7, workerId: 2, fanIn: 3 },
      [1],
    );
    assert.equal(
      decodeHeader(new DataView(withPayload.buffer, withPayload.byteOffset, 36), 0, 36, h),
      DropReason.badLength,
    );
    const foreign = packet({ type: PacketType.keepalive, jobId: 7, workerId: 3, fanIn: 3 }, []);
    assert.equal(
      decodeHeader(new DataView(foreign.buffer, foreign.byteOffset, 32), 0, 32, h),
      DropReason.badWorkerId,
    );
  });

  it("the switch consumes a keepalive: counted, never forwarded, a sign of life only from the bound address", () => {
    const { capture, core, failures, send } = setup();
    for (const w of [0, 1, 2]) send(w, 0, 0); // every worker bound
    capture.sent.length = 0;
    core.receive(keepalive(7, 2, 3), portOf(2), HOST, 1000);
    assert.equal(core.job(7)?.heardAt[2], 1000);
    assert.equal(core.job(7)?.counters.keepalives, 1);
    assert.equal(core.stats.rxByType[PacketType.keepalive], 1);
    // From anywhere else: wrongSource, counted, and no sign of life.
    core.receive(keepalive(7, 2, 3), 6666, HOST, 2000);
    core.receive(keepalive(7, 2, 3), portOf(2), "127.0.0.2", 2000);
    assert.equal(core.stats.drops[DropReason.wrongSource], 2);
    assert.equal(core.stats.rxByType[PacketType.keepalive], 3);
    assert.equal(core.job(7)?.heardAt[2], 1000);
    assert.equal(core.job(7)?.counters.keepalives, 1);
    assert.deepEqual(capture.sent, [], "a keepalive goes nowhere");
    // Worker 2 keeps saying it is alive while the others wait on it: not dead.
    for (const w of [0, 1]) send(w, 1, 3000);
    for (let t = 4000; t <= 20_000; t += 1000) {
      core.receive(keepalive(7, 2, 3), portOf(2), HOST, t);
      core.handleTimeout(t);
    }
    assert.deepEqual(failures, []);
    // An unbound worker's keepalive binds nothing.
    const fresh = setup();
    fresh.core.receive(keepalive(7, 1, 3), 7777, HOST, 10);
    assert.equal(fresh.core.job(7)?.hostPort[1], -1);
    assert.equal(fresh.core.job(7)?.heardAt[1], 0);
    fresh.send(1, 0, 20);
    assert.equal(fresh.core.job(7)?.hostPort[1], portOf(1), "the real worker binds as before");
  });

  it("a keepalive from the bound address registers the worker's keepalive socket; only its keepalives count", () => {
    const { core, send } = setup();
    for (const w of [0, 1, 2]) send(w, 0, 0);
    const job7 = core.job(7);
    const from = (w: number, port: number, at: number, address = HOST) => {
      const bytes = keepalive(7, w, 3);
      bytes.writeUInt32LE(port === 0 ? 0 : 9000 + w, 16); // aggregatorIndex: the socket's port
      core.receive(bytes, port, address, at);
    };
    // A stranger cannot register a port for worker 2.
    from(2, 6666, 100);
    assert.equal(job7?.keepalivePort[2], -1);
    // The worker's bound address registers its thread's socket, port 9002...
    from(2, portOf(2), 200);
    assert.equal(job7?.keepalivePort[2], 9002);
    // ...whose keepalives count from the bound IP, and nothing else from there does.
    core.receive(keepalive(7, 2, 3), 9002, HOST, 300);
    assert.equal(job7?.heardAt[2], 300);
    const drops = core.stats.drops[DropReason.wrongSource];
    core.receive(contribution(job, 2, 1, [1]), 9002, HOST, 400);
    core.receive(keepalive(7, 2, 3), 9002, "127.0.0.2", 400);
    core.receive(keepalive(7, 1, 3), 9002, HOST, 400);
    assert.equal(core.stats.drops[DropReason.wrongSource], drops + 3);
    assert.equal(job7?.heardAt[2], 300);
    assert.equal(job7?.heardAt[1], 0);
  });

  it("a keepalive of a failed job is answered with the failed packet", () => {
    const { capture, core, failures, send } = setup();
    for (const w of [0, 1, 2]) send(w, 0, 0);
    for (const w of [0, 1]) send(w, 1, 10);
    core.handleTimeout(6000);
    assert.equal(failures.length, 1);
    capture.sent.length = 0;
    core.receive(keepalive(7, 0, 3), portOf(0), HOST, 7000);
    assert.equal(capture.sent.length, 1);
    assert.equal(capture.sent[0].header.type, PacketType.failed);
    assert.equal(capture.sent[0].header.bitmap, 0b100);
  });

  it("nextLivenessCheckAt says when the check can next fail a job", () => {
    const { core, failures, send } = setup();
    assert.equal(core.nextLivenessCheckAt(), Number.POSITIVE_INFINITY, "nothing waits");
    for (const w of [0, 1, 2]) send(w, 0, 0);
    for (const w of [0, 1]) send(w, 1, 100);
    core.receive(keepalive(7, 2, 3), portOf(2), HOST, 900);
    const at = core.nextLivenessCheckAt();
    assert.equal(at, 5900, "worker 2 was heard at 0.9 s; the partial claimed at 0.1 s");
    core.handleTimeout(at - 1);
    assert.deepEqual(failures, []);
    // A scan just ran: the next one comes at most every 250 ms.
    const again = core.nextLivenessCheckAt();
    assert.equal(again, at - 1 + 250);
    core.handleTimeout(again);
    assert.equal(failures.length, 1);
  });
});

describe("a stranger cannot keep a dead worker alive", () => {
  it("32-byte packets of every type with the dead worker's id, every 500 ms: the job fails within the bound, naming it", () => {
    const { core, failures, send } = setup({}); // the default deadPeerS, 60 s
    for (const w of [0, 1, 2]) send(w, 0, 0); // every worker bound
    // Worker 2 dies at 10 ms; the others contribute PSN 1 at 20 ms.
    for (const w of [0, 1]) send(w, 1, 20);
    let failedAt = -1;
    for (let t = 500; t <= 120_000 && failedAt < 0; t += 250) {
      if (t % 500 === 0) {
        for (let type = 1; type <= 7; type++) {
          const fake = packet(
            { type, jobId: 7, workerId: 2, fanIn: 3, psn: 1, destination: 2 },
            [],
          );
          core.receive(fake, 6666, HOST, t); // another port
          core.receive(fake, portOf(2), "127.0.0.9", t); // another host
        }
      }
      core.handleTimeout(t);
      if (failures.length > 0) failedAt = t;
    }
    console.log(`the job failed ${failedAt / 1000} s after worker 2's last packet`);
    assert.ok(failedAt >= 60_000 && failedAt <= 60_020 + 250, `failed at ${failedAt} ms`);
    assert.match(failures[0], /^job 7: worker 2 stopped sending \(PSN 1 waited 60\.\d s/);
    assert.ok(core.stats.drops[DropReason.wrongSource] > 0);
  });
});

/** Virtual time (sim/harness.ts): the cases a 5 s rule used to kill, each exact now. */
describe("liveness never kills a healthy job (virtual time)", () => {
  const clean = { drop: 0, duplicate: 0, reorder: 0 };
  const job = (extra: Partial<CoreSimJob> = {}): CoreSimJob => ({
    mode: "netreduce",
    workers: 3,
    elements: 2000,
    window: 8,
    elementsPerPacket: 50,
    ...extra,
  });
  const assertExact = (sim: ReturnType<typeof simulateCores>, jobs: CoreSimJob[]) => {
    assert.equal(sim.sw.stats.jobsFailed, 0);
    sim.jobs.forEach((j, i) => {
      for (const [w, out] of j.outputs.entries()) {
        const v = verifyAllReduce(out, j.seed, jobs[i].workers, jobs[i].scaleBits ?? 20);
        assert.equal(v.verified, true, `job ${i} worker ${w}`);
        assert.equal(v.notBitExact, 0, `job ${i} worker ${w}`);
      }
    });
  };

  it("a worker computing 8 s between all-reduces: its keepalives keep even a 5 s job alive", () => {
    const seed = testSeed("liveness compute 8 s", 21);
    const jobs = [job()];
    const slow = (call: number, _j: number, w: number) => (call === 1 && w === 1 ? 8000 : 0);
    const sim = simulateCores({
      jobs,
      aggregators: 64,
      rates: clean,
      seed,
      calls: 2,
      deadPeerS: 5,
      beginDelayMs: slow,
    });
    assertExact(sim, jobs);
    assert.ok(sim.now > 8000);
    assert.ok((sim.sw.job(1)?.counters.keepalives ?? 0) >= 7, "about one a second");
    // Without keepalives a 5 s timeout takes the computation for a death...
    assert.throws(
      () =>
        simulateCores({
          jobs,
          aggregators: 64,
          rates: clean,
          seed,
          calls: 2,
          deadPeerS: 5,
          keepaliveMs: 0,
          beginDelayMs: slow,
        }),
      /the switch failed job 1: worker 1 stopped sending/,
    );
    // ...and the default timeout does not, keepalives or not (an old-spec worker).
    assertExact(
      simulateCores({
        jobs,
        aggregators: 64,
        rates: clean,
        seed,
        calls: 2,
        keepaliveMs: 0,
        beginDelayMs: slow,
      }),
      jobs,
    );
  });

  it("a worker that starts 8 s after the others", () => {
    const seed = testSeed("liveness late start", 22);
    const jobs = [job()];
    const sim = simulateCores({
      jobs,
      aggregators: 64,
      rates: { drop: 0.01, duplicate: 0.01, reorder: 0.01 },
      seed,
      beginDelayMs: (_c, _j, w) => (w === 2 ? 8000 : 0),
    });
    assertExact(sim, jobs);
    assert.ok(sim.now > 8000);
  });

  it("a parameter server paused 7 s (ATP and PS jobs), the workers' give-up at its default", () => {
    const seed = testSeed("liveness PS paused", 23);
    const jobs = [job({ mode: "atp", regionSize: 16 }), job({ mode: "ps" })];
    const sim = simulateCores({
      jobs,
      aggregators: 64,
      rates: clean,
      seed,
      giveUpAfterMs: 90_000,
      pauses: [{ host: "ps", call: 0, from: 0.2, to: 7000.2 }],
    });
    assertExact(sim, jobs);
    assert.ok(sim.now > 7000, `finished at ${sim.now} ms`);
  });

  it("workers joining one by one over 10 s, each bound as it joins", () => {
    const seed = testSeed("liveness joins", 24);
    const jobs = [job({ workers: 5 })];
    const sim = simulateCores({
      jobs,
      aggregators: 64,
      rates: clean,
      seed,
      calls: 2,
      bindAtBegin: true,
      beginDelayMs: (call, _j, w) => (call === 0 ? w * 2500 : 0),
    });
    assertExact(sim, jobs);
    assert.ok(sim.now > 10_000);
  });

  it("a library whose event loop is blocked 30 s between all-reduces: no keepalive at all, the default timeout waits", () => {
    const seed = testSeed("liveness blocked loop", 25);
    const jobs = [job()];
    const blocked = {
      jobs,
      aggregators: 64,
      rates: clean,
      seed,
      calls: 2,
      beginDelayMs: (call: number, _j: number, w: number) => (call === 1 && w === 1 ? 30_000 : 0),
      pauses: [{ host: { job: 0, worker: 1 }, call: 1, from: 0, to: 30_000 }],
    };
    const sim = simulateCores(blocked);
    assertExact(sim, jobs);
    assert.ok(sim.now > 30_000);
    // The bound: with a 20 s timeout the same block is taken for a death.
    assert.throws(
      () => simulateCores({ ...blocked, deadPeerS: 20 }),
      /the switch failed job 1: worker 1 stopped sending \(PSN \d+ waited 20\.\d s/,
    );
  });
});

describe("a host at load 30 (virtual time)", () => {
  /**
   * Thirty busy processes on two cores: each of ours waits its turn, mostly
   * for up to 300 ms, one time in ten for up to 8 s, then runs 0.1-0.5 ms
   * (a swap storm, a burst of other jobs). Every worker and the PS, each on
   * its own seeded schedule, for the whole run.
   */
  const loadedHosts = (seed: number, workersPerJob: number[]) => {
    const prng = new Prng(seed);
    const hosts: Array<"ps" | { job: number; worker: number }> = ["ps"];
    workersPerJob.forEach((n, job) => {
      for (let worker = 0; worker < n; worker++) hosts.push({ job, worker });
    });
    const pauses: Array<{
      host: "ps" | { job: number; worker: number };
      from: number;
      to: number;
    }> = [];
    let longest = 0;
    for (const host of hosts) {
      for (let t = 0; t < 600_000; ) {
        const waits = prng.nextFloat() < 0.1 ? 8000 * prng.nextFloat() : 300 * prng.nextFloat();
        const runs = 0.1 + 0.4 * prng.nextFloat();
        pauses.push({ host, from: t, to: t + waits });
        longest = Math.max(longest, waits);
        t += waits + runs;
      }
    }
    return { pauses, longest };
  };

  it("NetReduce, ATP and PS jobs finish exact with the default deadPeerS and give-up; the old 5 s rule killed them", () => {
    const seed = testSeed("liveness load 30", 26);
    const jobs: CoreSimJob[] = [
      { mode: "netreduce", workers: 3, elements: 2000, window: 8, elementsPerPacket: 50 },
      { mode: "atp", workers: 3, elements: 2000, window: 8, elementsPerPacket: 50, regionSize: 16 },
      { mode: "ps", workers: 2, elements: 2000, window: 8, elementsPerPacket: 50 },
    ];
    const { pauses, longest } = loadedHosts(
      seed,
      jobs.map((j) => j.workers),
    );
    const loaded = {
      jobs,
      aggregators: 64,
      rates: { drop: 0, duplicate: 0, reorder: 0 },
      seed,
      calls: 3,
      giveUpAfterMs: 90_000,
      pauses,
    };
    const sim = simulateCores(loaded);
    assert.equal(sim.sw.stats.jobsFailed, 0);
    sim.jobs.forEach((j, i) => {
      for (const [w, out] of j.outputs.entries()) {
        const v = verifyAllReduce(out, j.seed, jobs[i].workers, 20);
        assert.equal(v.verified, true, `job ${i} worker ${w}`);
        assert.equal(v.notBitExact, 0, `job ${i} worker ${w}`);
      }
    });
    assert.ok(
      longest > 5000,
      `the schedule stops some host longer than 5 s (longest ${longest.toFixed(0)} ms)`,
    );
    assert.ok(sim.now > 5000, `the load stretched the run (${sim.now.toFixed(0)} ms)`);
    assert.throws(() => simulateCores({ ...loaded, deadPeerS: 5 }), /the switch failed job \d: /);
  });
});

describe("deadPeerS, per job and switch-wide", () => {
  it("a switch config job's deadPeerS overrides the switch's; the switch's defaults to 60 s; deadPeerMs is the deprecated form", () => {
    assert.equal(switchDeadPeerMs(parseSwitchConfig({ aggregators: 8 })), 60_000);
    assert.equal(switchDeadPeerMs(parseSwitchConfig({ aggregators: 8, deadPeerS: 0.5 })), 500);
    assert.equal(switchDeadPeerMs(parseSwitchConfig({ aggregators: 8, deadPeerMs: 2000 })), 2000);
    assert.throws(
      () => parseSwitchConfig({ aggregators: 8, deadPeerS: 2, deadPeerMs: 2000 }),
      /deadPeerMs: give deadPeerS or the deprecated deadPeerMs, not both/,
    );
    assert.throws(
      () => parseSwitchConfig({ aggregators: 8, jobs: [{ ...job, deadPeerS: -1 }] }),
      /jobs\[0\]\.deadPeerS/,
    );
    // Job 7 waits 2 s, the switch 60 s: the job's rule wins.
    const { core, failures, send } = setup({ jobs: [{ ...job, deadPeerS: 2 }] });
    for (const w of [0, 1, 2]) send(w, 0, 0);
    for (const w of [0, 1]) send(w, 1, 10);
    core.handleTimeout(2100);
    assert.match(failures[0] ?? "", /worker 2 stopped sending \(PSN 1 waited 2\.1 s/);
    // 0: never.
    const never = setup({ deadPeerS: 0 });
    for (const w of [0, 1]) never.send(w, 1, 10);
    never.core.handleTimeout(10_000_000);
    assert.deepEqual(never.failures, []);
    assert.equal(never.core.nextLivenessCheckAt(), Number.POSITIVE_INFINITY);
  });

  it("a control-plane submission and a scenario job carry their deadPeerS to the switch's rule", async () => {
    const core = new SwitchCore(parseSwitchConfig({ aggregators: 16 }), captureTransmit());
    const manager = new MemoryManager({ aggregators: 16, bytesPerAggregator: 1024, policy: "edf" });
    const app = buildControlApp(
      new ControlPlane({ manager, core, dataAddress: { host: HOST, port: 1 }, now: () => 0 }),
    );
    const submit = (id: number, extra: Record<string, unknown>) =>
      app.inject({
        method: "POST",
        url: "/jobs",
        payload: {
          id,
          class: "be",
          mode: "netreduce",
          workers: 2,
          window: 2,
          modelBytes: 64,
          aggregators: 8,
          ...extra,
        },
      });
    assert.equal((await submit(3, { deadPeerS: 7.5 })).statusCode, 201);
    assert.equal((await submit(4, {})).statusCode, 201);
    assert.equal(core.job(3)?.deadPeerMs, 7500);
    assert.equal(core.job(4)?.deadPeerMs, -1, "the switch's default");
    assert.equal((await submit(5, { deadPeerS: -1 })).statusCode, 400);

    const scenario = parseScenario({
      name: "t",
      runs: [
        {
          name: "r",
          aggregators: 1024,
          jobs: [
            { mode: "netreduce", workers: 2, deadPeerS: 12 },
            { mode: "atp", workers: 2 },
          ],
        },
      ],
    });
    const run = scenario.runs[0];
    const config = parseSwitchConfig({
      ...switchConfigOf(run, resolveJobs(run, scenario.seed), scenario.seed),
      parameterServer: { host: HOST, port: 1 },
    });
    assert.deepEqual(
      config.jobs.map((j) => j.deadPeerS),
      [12, undefined],
    );
  });
});
