import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseSwitchConfig } from "../proto/config.js";
import { DropReason } from "../proto/drops.js";
import { Prng } from "../proto/prng.js";
import { PacketType } from "../proto/wire.js";
import { SwitchCore } from "../switch/core.js";
import {
  DEFAULT_RTO,
  WorkerCore,
  type WorkerCoreOptions,
  type WorkerTransmit,
} from "../worker/core.js";
import { makeGradient, verifyAllReduce } from "../worker/workload.js";
import { packet } from "./packets.js";
import { testSeed } from "./seed.js";

interface SimOptions {
  workers: number;
  elements: number;
  window: number;
  elementsPerPacket: number;
  rates: { drop: number; duplicate: number; reorder: number };
  seed: number;
  calls?: number;
}

/**
 * Workers and the switch, sans-IO, wired by an in-memory network with
 * virtual time: each hop takes 0.05 ms plus a seeded jitter, so packets also
 * overtake each other. Returns the outputs and the cores for inspection.
 */
function simulate(o: SimOptions) {
  const job = {
    id: 3,
    mode: "netreduce" as const,
    fanIn: o.workers,
    offset: 0,
    size: 2 * o.window,
    window: o.window,
  };
  const config = parseSwitchConfig({
    aggregators: job.size,
    elementsPerAggregator: o.elementsPerPacket,
    jobs: [job],
    faults: { seed: o.seed, ingress: o.rates, egress: o.rates },
  });
  const jitter = new Prng(o.seed ^ 0x5eed);
  type InFlight = { at: number; to: number; bytes: Buffer };
  const network: InFlight[] = [];
  let now = 0;
  const deliver = (to: number, buf: Buffer, offset: number, length: number) => {
    network.push({
      at: now + 0.05 + jitter.nextFloat() * 0.05,
      to,
      bytes: Buffer.from(buf.subarray(offset, offset + length)),
    });
  };
  const SWITCH = -1;
  const sw = new SwitchCore(config, {
    send: (buf, port) => deliver(port - 1000, buf, 0, buf.length),
  });
  const workers = Array.from({ length: o.workers }, (_, w) =>
    smallWorker(
      {
        jobId: job.id,
        workerId: w,
        fanIn: o.workers,
        regionSize: job.size,
        window: o.window,
        elementsPerPacket: o.elementsPerPacket,
        scaleBits: 20,
      },
      (buf) => deliver(SWITCH - 1 - w, buf, 0, buf.length),
    ),
  );
  const inputs = workers.map((_, w) => makeGradient(o.elements, o.seed, w));
  const outputs = workers.map(() => new Float32Array(o.elements));
  for (let call = 0; call < (o.calls ?? 1); call++) {
    outputs.forEach((out) => {
      out.fill(Number.NaN);
    });
    workers.forEach((w, i) => {
      w.begin(inputs[i], outputs[i], now);
    });
    let nextTick = now + 1;
    for (let steps = 0; workers.some((w) => !w.done); steps++) {
      assert.ok(steps < 5_000_000, "simulation did not finish");
      network.sort((a, b) => a.at - b.at);
      const next = network.shift();
      if (next === undefined || next.at > nextTick) {
        if (next !== undefined) network.unshift(next);
        now = nextTick;
        nextTick += 1;
        sw.tick(now);
        for (const w of workers) w.tick(now);
        continue;
      }
      now = next.at;
      if (next.to >= 0) workers[next.to].receive(next.bytes, now);
      else sw.receive(next.bytes, 1000 + (SWITCH - 1 - next.to), "127.0.0.1", now);
    }
  }
  return { sw, workers, outputs };
}

/** A worker of a 2-worker job with tiny packets, for driving WorkerCore by hand. */
function smallWorker(
  overrides: Partial<WorkerCoreOptions>,
  send: WorkerTransmit["send"],
): WorkerCore {
  const options: WorkerCoreOptions = {
    ...DEFAULT_RTO,
    jobId: 1,
    workerId: 0,
    fanIn: 2,
    regionOffset: 0,
    regionSize: 4,
    window: 2,
    elementsPerPacket: 2,
    scaleBits: 0,
    ...overrides,
  };
  return new WorkerCore(options, { send });
}

describe("worker and switch over a simulated network", () => {
  it("all-reduce is bit-exact without faults", () => {
    const seed = testSeed("sim clean", 1);
    const { sw, workers, outputs } = simulate({
      workers: 4,
      elements: 20_000,
      window: 16,
      elementsPerPacket: 64,
      rates: { drop: 0, duplicate: 0, reorder: 0 },
      seed,
    });
    for (const out of outputs) assert.equal(verifyAllReduce(out, seed, 4, 20).verified, true);
    assert.equal(sw.stats.aggregationsCompleted, Math.ceil(20_000 / 64));
    assert.equal(workers[0].stats.retransmissions, 0);
  });

  it("recovers loss, duplication and reordering exactly, across calls", () => {
    const seed = testSeed("sim faults", 2);
    const rates = { drop: 0.02, duplicate: 0.02, reorder: 0.05 };
    const { sw, workers, outputs } = simulate({
      workers: 4,
      elements: 30_001,
      window: 8,
      elementsPerPacket: 50,
      rates,
      seed,
      calls: 2,
    });
    for (const [w, out] of outputs.entries()) {
      const v = verifyAllReduce(out, seed, 4, 20);
      assert.equal(v.notBitExact, 0, `worker ${w}`);
      assert.equal(v.verified, true);
    }
    const packets = Math.ceil(30_001 / 50);
    assert.equal(sw.stats.aggregationsCompleted, 2 * packets, "each PSN completes exactly once");
    assert.ok(workers.reduce((s, w) => s + w.stats.retransmissions, 0) > 0);
    assert.ok(sw.stats.drops[DropReason.duplicate] > 0);
    assert.equal(workers[0].nextCallPsn, 2 * packets, "PSNs continue across calls");
  });

  it("a worker ignores results it is not waiting for", () => {
    const core = smallWorker({}, () => {});
    const out = new Float32Array(4);
    core.begin(new Float32Array([1, 2, 3, 4]), out, 0);
    const result = (psn: number, values: number[], jobId = 1) =>
      packet({ type: PacketType.result, jobId, fanIn: 2, workerId: 0xffff, psn }, values);
    core.receive(result(5, [0, 0]), 1);
    core.receive(result(0, [0, 0], 2), 1);
    core.receive(result(0, [1, 2, 3]), 1);
    core.receive(Buffer.from([1, 2, 3]), 1);
    assert.equal(core.stats.drops[DropReason.unexpectedResult], 1);
    assert.equal(core.stats.drops[DropReason.unknownJob], 1);
    assert.equal(core.stats.drops[DropReason.tooManyElements], 1);
    assert.equal(core.stats.drops[DropReason.tooShort], 1);
    core.receive(result(0, [10, 20]), 1);
    core.receive(result(0, [10, 20]), 1);
    core.receive(result(1, [30, 40]), 1);
    assert.equal(core.stats.duplicateResults, 1);
    assert.equal(core.done, true);
    assert.deepEqual([...out], [10, 20, 30, 40]);
  });

  it("gives up with a reason after maxSendsPerPacket, instead of retrying forever", () => {
    const core = smallWorker({ maxSendsPerPacket: 3 }, () => {});
    core.begin(new Float32Array(4), new Float32Array(4), 0);
    for (let t = 1; t <= 100 && !core.done; t++) core.tick(t * 1000);
    assert.equal(core.done, true);
    assert.match(core.failure ?? "", /no result for PSN 0 after 3 sends/);
  });

  it("refuses options it cannot run with, naming them", () => {
    const base = {
      ...DEFAULT_RTO,
      jobId: 1,
      workerId: 0,
      fanIn: 2,
      regionOffset: 0,
      regionSize: 8,
      window: 4,
      elementsPerPacket: 2,
      scaleBits: 0,
    };
    const cases: Array<[object, RegExp]> = [
      [{ regionSize: 7 }, /regionSize must be at least 2 x window = 8/],
      [{ window: 0 }, /window must be/],
      [{ workerId: 2 }, /workerId must be/],
      [{ elementsPerPacket: 20000 }, /elementsPerPacket must be/],
      [{ scaleBits: 31 }, /scaleBits must be/],
    ];
    for (const [change, message] of cases) {
      assert.throws(() => new WorkerCore({ ...base, ...change }, { send: () => {} }), message);
    }
  });

  it("retransmits on timeout with the resend flag and backs off", () => {
    const sent: Buffer[] = [];
    const core = smallWorker({}, (buf) => sent.push(Buffer.from(buf)));
    core.begin(new Float32Array(8), new Float32Array(8), 0);
    assert.equal(sent.length, 2);
    core.tick(DEFAULT_RTO.rtoInitialMs - 1);
    assert.equal(sent.length, 2);
    core.tick(DEFAULT_RTO.rtoInitialMs);
    assert.equal(sent.length, 4);
    assert.equal(sent[2].readUInt16LE(2) & 1, 1, "resend flag set");
    assert.equal(core.stats.rtoMs, 2 * DEFAULT_RTO.rtoInitialMs);
  });
});
