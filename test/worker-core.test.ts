import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { atpIndex } from "../proto/addressing.js";
import { parseSwitchConfig } from "../proto/config.js";
import { DropReason } from "../proto/drops.js";
import { Flag, PacketType } from "../proto/wire.js";
import { simulateCores } from "../sim/harness.js";
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

/** A worker of a 2-worker job with tiny packets, for driving WorkerCore by hand. */
function smallWorker(
  overrides: Partial<WorkerCoreOptions>,
  send: WorkerTransmit["send"],
): WorkerCore {
  const options: WorkerCoreOptions = {
    ...DEFAULT_RTO,
    mode: "netreduce",
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
    const { sw, jobs } = simulateCores({
      jobs: [
        { mode: "netreduce", workers: 4, elements: 20_000, window: 16, elementsPerPacket: 64 },
      ],
      aggregators: 32,
      rates: { drop: 0, duplicate: 0, reorder: 0 },
      seed,
    });
    const { workers, outputs } = jobs[0];
    for (const out of outputs) assert.equal(verifyAllReduce(out, seed, 4, 20).verified, true);
    assert.equal(sw.stats.aggregationsCompleted, Math.ceil(20_000 / 64));
    assert.equal(workers[0].stats.retransmissions, 0);
  });

  it("recovers loss, duplication and reordering exactly, across calls", () => {
    const seed = testSeed("sim faults", 2);
    const rates = { drop: 0.02, duplicate: 0.02, reorder: 0.05 };
    const { sw, jobs } = simulateCores({
      jobs: [{ mode: "netreduce", workers: 4, elements: 30_001, window: 8, elementsPerPacket: 50 }],
      aggregators: 16,
      rates,
      seed,
      calls: 2,
    });
    const { workers, outputs } = jobs[0];
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

  it("ATP and PS modes: hashed index, results arrive as acks, float32 sums are taken as they are", () => {
    const sent: Buffer[] = [];
    const core = smallWorker(
      { mode: "atp", regionOffset: 10, regionSize: 3, scaleBits: 4 },
      (buf) => sent.push(Buffer.from(buf)),
    );
    const out = new Float32Array(4);
    core.begin(new Float32Array([1, 2, 3, 4]), out, 0);
    assert.deepEqual(
      sent.map((b) => b.readUInt32LE(16)),
      [atpIndex(1, 0, 10, 3), atpIndex(1, 1, 10, 3)],
    );
    const reply = (type: number, psn: number, values: number[], flags = 0) =>
      packet({ type, flags, jobId: 1, fanIn: 2, workerId: 0xffff, psn, scaleBits: 4 }, values);
    core.receive(reply(PacketType.result, 0, [16, 32]), 1);
    assert.equal(core.stats.drops[DropReason.unexpectedType], 1, "ATP results come as acks");
    core.receive(reply(PacketType.ack, 0, [16, 32]), 1);
    const floats = Buffer.alloc(8);
    floats.writeFloatLE(1e9, 0);
    floats.writeFloatLE(-2.5, 4);
    core.receive(
      reply(PacketType.ack, 1, [floats.readInt32LE(0), floats.readInt32LE(4)], Flag.float32),
      1,
    );
    assert.deepEqual([...out], [1, 2, Math.fround(1e9), -2.5]);
    assert.equal(core.done, true);
    const psWorker = smallWorker({ mode: "ps", regionSize: 0 }, (buf) =>
      sent.push(Buffer.from(buf)),
    );
    psWorker.begin(new Float32Array(2), new Float32Array(2), 0);
    assert.equal(sent.at(-1)?.readUInt32LE(16), 0);
  });

  it("a worker that missed region changes, or joined with a stale epoch, is told and finishes exact", () => {
    for (const variant of ["missed", "late joiner"]) {
      const config = parseSwitchConfig({
        aggregators: 24,
        elementsPerAggregator: 4,
        jobs: [{ id: 1, mode: "netreduce", fanIn: 2, offset: 0, regionSize: 4, window: 2 }],
      });
      let queue: Array<{ to: number; bytes: Buffer }> = [];
      const sw = new SwitchCore(config, {
        send: (b, port) => queue.push({ to: port, bytes: Buffer.from(b) }),
      });
      const workers: WorkerCore[] = [];
      const make = (w: number, epoch: number, offset: number) =>
        new WorkerCore(
          {
            ...DEFAULT_RTO,
            mode: "netreduce",
            jobId: 1,
            workerId: w,
            fanIn: 2,
            regionOffset: offset,
            regionSize: 4,
            regionEpoch: epoch,
            window: 2,
            elementsPerPacket: 4,
            scaleBits: 20,
          },
          { send: (b) => queue.push({ to: -1 - w, bytes: Buffer.from(b) }) },
        );
      const inputs = [makeGradient(40, 7, 0), makeGradient(40, 7, 1)];
      const outputs = [new Float32Array(40), new Float32Array(40)];
      let now = 0;
      const run = (ms: number) => {
        for (let t = 0; t < ms && !(workers.length === 2 && workers.every((w) => w.done)); t++) {
          now++;
          for (let hops = 0; hops < 50 && queue.length > 0; hops++) {
            const batch = queue;
            queue = [];
            for (const p of batch) {
              if (p.to < 0) sw.receive(p.bytes, 100 - 1 - p.to, "127.0.0.1", now);
              else workers[p.to - 100]?.receive(p.bytes, now);
            }
          }
          sw.handleTimeout(now);
          for (const w of workers) w?.handleTimeout(now);
        }
      };
      if (variant === "missed") {
        sw.changeRegion(1, 8, 4, 1); // before any traffic: at once, nobody to tell
        workers[1] = make(1, 0, 0);
        workers[1].begin(inputs[1], outputs[1], now);
        run(5);
        sw.changeRegion(1, 16, 4, 2);
        workers[0] = make(0, 0, 0); // still at epoch 0
      } else {
        workers[1] = make(1, 0, 0);
        workers[1].begin(inputs[1], outputs[1], now);
        run(5);
        sw.changeRegion(1, 16, 4, 1);
        workers[0] = make(0, 1, 16); // the job's new epoch, without its switchover PSN
      }
      workers[0].begin(inputs[0], outputs[0], now);
      run(200_000);
      for (const [w, out] of outputs.entries()) {
        assert.equal(workers[w].failure, null, `${variant}: worker ${w}`);
        assert.equal(verifyAllReduce(out, 7, 2, 20).verified, true, `${variant}: worker ${w}`);
      }
      assert.ok(sw.stats.drops[DropReason.regionChanged] > 0, "told by refusals");
    }
  });

  it("gives up with a reason after maxSendsPerPacket, instead of retrying forever", () => {
    const core = smallWorker({ maxSendsPerPacket: 3 }, () => {});
    core.begin(new Float32Array(4), new Float32Array(4), 0);
    for (let t = 1; t <= 100 && !core.done; t++) core.handleTimeout(t * 1000);
    assert.equal(core.done, true);
    assert.match(core.failure ?? "", /no result for PSN 0 after 3 sends/);
  });

  it("with giveUpAfterMs, maxSendsPerPacket gives up only once the PSN has waited that long too", () => {
    const core = smallWorker({ maxSendsPerPacket: 3, giveUpAfterMs: 20_000 }, () => {});
    core.begin(new Float32Array(4), new Float32Array(4), 0);
    // The switch is there (a region packet of the same epoch), but PSN 0 gets no result:
    // a peer stopped for a while, which the switch waits out.
    const region = packet(
      {
        type: PacketType.region,
        jobId: 1,
        fanIn: 2,
        workerId: 0xffff,
        aggregatorIndex: 0,
        bitmap: 4,
      },
      [],
    );
    for (let t = 1; t < 20; t++) {
      core.receive(region, t * 1000);
      core.handleTimeout(t * 1000 + 1);
    }
    assert.equal(core.done, false, "many more than 3 sends, but only 19 s");
    // Given up at the first timeout from 20 s on (the RTO has backed off to 2 s).
    for (let t = 20_000; t <= 22_100 && !core.done; t += 100) core.handleTimeout(t);
    assert.equal(core.done, true);
    assert.match(core.failure ?? "", /no result for PSN [01] after \d+ sends over 2[0-2]\.\d s/);
  });

  it("sends a keepalive when it has sent nothing for keepaliveMs, between all-reduces too", () => {
    const sent: Buffer[] = [];
    const core = smallWorker({}, (p) => sent.push(Buffer.from(p)));
    core.handleTimeout(0);
    assert.equal(core.nextKeepaliveAt(), Number.POSITIVE_INFINITY, "nothing sent yet: not bound");
    assert.equal(sent.length, 0);
    core.sendKeepalive(0);
    assert.deepEqual(
      [sent[0][1], sent[0].readUInt16LE(6), sent[0].length],
      [PacketType.keepalive, 0, 32],
    );
    assert.equal(core.nextKeepaliveAt(), 1000);
    core.handleTimeout(999);
    assert.equal(sent.length, 1);
    assert.equal(core.keepaliveDue(1000), true);
    core.handleTimeout(1000);
    assert.equal(sent.length, 2);
    // Contributions are signs of life: they put the next keepalive off.
    core.begin(new Float32Array(4), new Float32Array(4), 1500);
    assert.equal(core.nextKeepaliveAt(), 2500);
    const off = smallWorker({ keepaliveMs: 0 }, (p) => sent.push(p));
    off.handleTimeout(10_000);
    assert.equal(off.nextKeepaliveAt(), Number.POSITIVE_INFINITY);
    assert.equal(sent.length, 4, "only the two contributions of the first worker");
  });

  it("gives up after giveUpAfterMs without an answer, and any answer restarts the wait", () => {
    const core = smallWorker({ giveUpAfterMs: 5000, maxSendsPerPacket: 1e6 }, () => {});
    core.begin(new Float32Array(8), new Float32Array(8), 0);
    assert.equal(core.unansweredPackets, 2, "a window of 2 in flight");
    core.handleTimeout(4000);
    assert.equal(core.quietMs(4000), 4000);
    // A result of PSN 0 at 4.5 s: the switch is there, the wait starts again.
    core.receive(
      packet({ type: PacketType.result, jobId: 1, psn: 0, fanIn: 2, bitmap: 3 }, [0, 0]),
      4500,
    );
    assert.equal(core.quietMs(4600), 100);
    core.handleTimeout(9000);
    assert.equal(core.done, false, "4.5 s after the last answer");
    core.handleTimeout(9500);
    assert.equal(core.done, true);
    assert.match(
      core.failure ?? "",
      /no answer from the switch for 5\.0 s \(2 packets unanswered, 1 of 4 done\): check that the switch runs/,
    );
    assert.equal(core.quietMs(9600), 0, "nothing running");
  });

  it("refuses options it cannot run with, naming them", () => {
    const base = {
      ...DEFAULT_RTO,
      mode: "netreduce" as const,
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
      [{ regionSize: 1 }, /regionSize must be >= 2/],
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
    // The timer `retransmit` is due one RTO after the oldest send.
    assert.equal(core.nextTimeout(), DEFAULT_RTO.rtoInitialMs);
    core.handleTimeout(DEFAULT_RTO.rtoInitialMs - 1);
    assert.equal(sent.length, 2);
    // A first timeout resends only the oldest PSN, a probe.
    core.handleTimeout(DEFAULT_RTO.rtoInitialMs);
    assert.equal(sent.length, 3);
    assert.equal(sent[2].readUInt32LE(12), 0, "the oldest PSN");
    assert.equal(sent[2].readUInt16LE(2) & 1, 1, "resend flag set");
    assert.equal(core.stats.rtoMs, 2 * DEFAULT_RTO.rtoInitialMs);
    // PSN 1 (sent at 0) is now the oldest unanswered send, with the backed-off RTO.
    assert.equal(core.nextTimeout(), 2 * DEFAULT_RTO.rtoInitialMs);
    // No result before the backed-off RTO: every expired PSN goes again.
    core.handleTimeout(2 * DEFAULT_RTO.rtoInitialMs);
    assert.equal(sent.length, 4);
    assert.equal(sent[3].readUInt32LE(12), 1);
    assert.equal(core.stats.rtoMs, 4 * DEFAULT_RTO.rtoInitialMs);
    assert.equal(core.nextTimeout(), DEFAULT_RTO.rtoInitialMs + 4 * DEFAULT_RTO.rtoInitialMs);
  });

  it("resends a PSN overtaken by a later send's result after that one's RTT + the reordering wait (RACK), not its RTO", () => {
    const sent: Buffer[] = [];
    const core = smallWorker(
      { window: 4, regionSize: 8, gapFloorMs: 0.5, clockGranularityMs: 0.1, keepaliveMs: 0 },
      (buf) => sent.push(Buffer.from(buf)),
    );
    const result = (psn: number) =>
      packet({ type: PacketType.result, jobId: 1, fanIn: 2, workerId: 0xffff, psn }, [psn, psn]);
    core.begin(new Float32Array(16), new Float32Array(16), 0);
    assert.equal(sent.length, 4, "PSNs 0-3 at 0");
    // PSN 0 is lost; PSN 1's result comes after 10 ms: minRTT 10, reo = 10 / 4.
    core.receive(result(1), 10);
    assert.equal(sent.length, 4, "not before the reordering wait");
    assert.equal(core.nextTimeout(), 12.5, "PSN 0: sent at 0 + PSN 1's RTT 10 + reo 2.5");
    core.handleTimeout(12.5);
    assert.equal(sent.length, 5);
    assert.equal(sent[4].readUInt32LE(12), 0, "PSN 0 again");
    assert.equal(sent[4].readUInt16LE(2) & Flag.resend, Flag.resend);
    assert.equal(core.stats.timeouts, 0, "no timeout: the RTO (floor 50) is far off");
    // PSNs above keep their own deadlines: 2 and 3 answered, 0's resend answered.
    core.receive(result(2), 10.1);
    core.receive(result(3), 10.2);
    core.receive(result(0), 22.5);
    assert.equal(sent.length, 9, "the window moved on: PSNs 4-7");
    assert.equal(core.stats.retransmissions, 1);
    assert.equal(core.stats.spuriousTimeouts, 0);
  });

  it("counts a timeout as spurious when its PSN's result comes sooner than the least RTT after the resend", () => {
    const sent: Buffer[] = [];
    const core = smallWorker({ keepaliveMs: 0, rtoInitialMs: 20 }, (buf) =>
      sent.push(Buffer.from(buf)),
    );
    const result = (psn: number) =>
      packet({ type: PacketType.result, jobId: 1, fanIn: 2, workerId: 0xffff, psn }, [psn, psn]);
    core.begin(new Float32Array(8), new Float32Array(8), 0);
    core.handleTimeout(20);
    assert.equal(core.stats.timeouts, 1);
    // PSN 1's result: an RTT sample of 21 (the least RTT), then PSN 0's 1 ms after its resend.
    core.receive(result(1), 21);
    core.receive(result(0), 21);
    assert.equal(core.stats.spuriousTimeouts, 1);
    assert.equal(core.stats.timeoutStallMs, 20, "nothing came from the switch for 20 ms before it");
    // Before any RTT sample nothing says which send a result answers: not counted.
    const early = smallWorker({ keepaliveMs: 0, rtoInitialMs: 20 }, () => {});
    early.begin(new Float32Array(8), new Float32Array(8), 0);
    early.handleTimeout(20);
    early.receive(result(0), 21);
    assert.equal(early.stats.spuriousTimeouts, 0);
  });

  it("says when its timers are next due: Infinity when idle, the give-up deadline, gaps", () => {
    const core = smallWorker({ giveUpAfterMs: 5000, maxSendsPerPacket: 1e6 }, () => {});
    assert.equal(core.nextTimeout(), Number.POSITIVE_INFINITY, "nothing running");
    core.begin(new Float32Array(8), new Float32Array(8), 0);
    assert.equal(core.nextTimeout(), DEFAULT_RTO.rtoInitialMs, "the RTO comes before give-up");
    core.handleTimeout(50);
    assert.equal(core.stats.retransmissions, 0, "a timer not yet due does nothing");
    // Keepalives off: only the all-reduce's timers (keepalives have their own test).
    const failed = smallWorker(
      { giveUpAfterMs: 100, maxSendsPerPacket: 1e6, keepaliveMs: 0 },
      () => {},
    );
    failed.begin(new Float32Array(8), new Float32Array(8), 0);
    assert.equal(failed.nextTimeout(), 100, "give-up before the first RTO");
    failed.handleTimeout(failed.nextTimeout());
    assert.equal(failed.done, true);
    assert.equal(failed.nextTimeout(), Number.POSITIVE_INFINITY);
  });
});
