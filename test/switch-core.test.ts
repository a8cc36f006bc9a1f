import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import { parseSwitchConfig } from "../proto/config.js";
import { DropReason } from "../proto/drops.js";
import { Flag, PacketType } from "../proto/wire.js";
import { SwitchCore } from "../switch/core.js";
import { captureTransmit, contribution, packet } from "./packets.js";

const job = { id: 7, mode: "netreduce" as const, fanIn: 3, offset: 4, regionSize: 4, window: 2 };
const portOf = (w: number) => 5000 + w;

describe("NetReduce aggregation in the switch", () => {
  let capture: ReturnType<typeof captureTransmit>;
  let core: SwitchCore;
  const send = (w: number, psn: number, values: number[], extra = {}) =>
    core.receive(contribution(job, w, psn, values, extra), portOf(w), "127.0.0.1", 0);

  beforeEach(() => {
    capture = captureTransmit();
    core = new SwitchCore(
      parseSwitchConfig({ aggregators: 8, elementsPerAggregator: 4, jobs: [job] }),
      capture,
    );
  });

  it("sums every worker once and multicasts the result when all have contributed", () => {
    send(0, 0, [1, 2, 3]);
    send(1, 0, [10, 20, 30]);
    assert.equal(capture.sent.length, 0);
    send(2, 0, [100, -200, 300]);
    assert.equal(capture.sent.length, 3);
    assert.deepEqual(capture.sent.map((s) => s.port).sort(), [5000, 5001, 5002]);
    for (const s of capture.sent) {
      assert.deepEqual(s.values, [111, -178, 333]);
      assert.equal(s.header.type, PacketType.result);
      assert.equal(s.header.psn, 0);
      assert.equal(s.header.jobId, 7);
      assert.equal(s.header.bitmap, 0b111);
      assert.equal(s.header.aggregatorIndex, 4);
      assert.equal(s.header.flags, 0);
    }
    assert.equal(core.stats.aggregationsCompleted, 1);
  });

  it("never adds a duplicate contribution twice", () => {
    send(0, 1, [1]);
    send(0, 1, [1]);
    send(0, 1, [1], { flags: Flag.resend });
    send(1, 1, [2]);
    send(2, 1, [4]);
    assert.deepEqual(capture.sent[0].values, [7]);
    assert.equal(core.stats.drops[DropReason.duplicate], 2);
  });

  it("replays the stored result to a worker that retransmits after completion", () => {
    for (let w = 0; w < 3; w++) send(w, 2, [w + 1, 1]);
    capture.sent.length = 0;
    send(1, 2, [2, 1]); // a network duplicate without the resend flag: dropped
    assert.equal(capture.sent.length, 0);
    send(1, 2, [2, 1], { flags: Flag.resend });
    assert.equal(capture.sent.length, 1);
    assert.equal(capture.sent[0].port, portOf(1));
    assert.deepEqual(capture.sent[0].values, [6, 3]);
    assert.equal(core.stats.resultsReplayed, 1);
  });

  it("lets PSN + regionSize take over a finished aggregator, and drops stale and window-breaking PSNs", () => {
    for (let w = 0; w < 3; w++) send(w, 1, [1]);
    send(0, 5, [50]); // same aggregator (1 % 4 == 5 % 4): takes it over
    assert.equal(core.stats.takeovers, 1);
    send(2, 1, [1], { flags: Flag.resend }); // PSN 1 is gone: stale
    assert.equal(core.stats.drops[DropReason.stale], 1);
    send(1, 9, [1]); // 9 while 5 is unfinished: the sender broke its window
    assert.equal(core.stats.drops[DropReason.windowViolation], 1);
    send(1, 5, [60]);
    send(2, 5, [70]);
    assert.deepEqual(capture.sent.at(-1)?.values, [180]);
    assert.equal(capture.sent.at(-1)?.header.psn, 5);
  });

  it("a stray PSN far ahead neither takes over nor destroys a stored result", () => {
    for (let w = 0; w < 3; w++) send(w, 1, [1]);
    send(0, 1 + 2 * job.regionSize, [99]); // two region-lengths ahead: no worker can be there
    send(0, 2 + job.regionSize, [99]); // empty aggregator claimed with the wrong PSN
    send(0, 0, [], {}); // no elements
    assert.equal(core.stats.drops[DropReason.windowViolation], 2);
    assert.equal(core.stats.drops[DropReason.emptyContribution], 1);
    capture.sent.length = 0;
    send(2, 1, [1], { flags: Flag.resend });
    assert.deepEqual(
      capture.sent.map((s) => [s.port, s.header.psn, s.values[0]]),
      [[portOf(2), 1, 3]],
    );
  });

  it("saturates an overflowing sum and flags the result", () => {
    send(0, 3, [2 ** 31 - 10, 1]);
    send(1, 3, [20, 1]);
    send(2, 3, [5, 1]);
    const result = capture.sent[0];
    assert.deepEqual(result.values, [2 ** 31 - 1, 3]);
    assert.equal(result.header.flags & Flag.overflow, Flag.overflow);
  });

  it("drops and counts bad packets by reason without disturbing aggregation", () => {
    send(0, 0, [1]);
    const cases: Array<[Buffer, number]> = [
      [Buffer.from("garbage"), DropReason.tooShort],
      [contribution({ ...job, id: 8 }, 0, 0, [1]), DropReason.unknownJob],
      [contribution({ ...job, fanIn: 4 }, 1, 0, [1]), DropReason.fanInMismatch],
      [contribution(job, 1, 0, [1], { aggregatorIndex: 5 }), DropReason.badIndex],
      [contribution(job, 1, 0, [1, 2, 3, 4, 5]), DropReason.tooManyElements],
      [contribution(job, 1, 0, [1, 2]), DropReason.shapeMismatch],
      [contribution(job, 1, 0, [1], { scaleBits: 9 }), DropReason.shapeMismatch],
      [packet({ type: PacketType.result, jobId: 7, fanIn: 3 }, []), DropReason.unexpectedType],
      [
        packet({ type: PacketType.forward, jobId: 7, fanIn: 3, workerId: 0, destination: 2 }, []),
        DropReason.unknownDestination,
      ],
    ];
    for (const [buf, reason] of cases) {
      const before = core.stats.drops[reason];
      // From worker 0's own address, which its first contribution bound.
      core.receive(buf, portOf(0), "127.0.0.1", 0);
      assert.equal(core.stats.drops[reason], before + 1, `reason ${reason}`);
    }
    send(1, 0, [2]);
    send(2, 0, [4]);
    assert.deepEqual(
      capture.sent.map((s) => s.values[0]),
      [7, 7, 7],
    );
  });

  it("takes each packet of a datagram on its own, and drops only a malformed one", () => {
    const a = contribution(job, 0, 0, [1]);
    const bad = contribution(job, 0, 1, [5]);
    bad[1] = 9; // an unknown type: framed, so only this packet goes
    const b = contribution(job, 0, 1, [2]);
    core.receive(Buffer.concat([a, bad, b]), portOf(0), "127.0.0.1", 0);
    assert.equal(core.stats.rxDatagrams, 1);
    assert.equal(core.stats.rxPackets, 3);
    assert.equal(core.stats.drops[DropReason.badType], 1);
    // Worker 1 sends both of its PSNs in one datagram, worker 2 alone.
    core.receive(
      Buffer.concat([contribution(job, 1, 0, [10]), contribution(job, 1, 1, [20])]),
      portOf(1),
      "127.0.0.1",
      0,
    );
    send(2, 0, [100]);
    send(2, 1, [200]);
    assert.deepEqual(
      capture.sent.map((s) => [s.header.psn, s.values[0]]),
      [
        [0, 111],
        [0, 111],
        [0, 111],
        [1, 222],
        [1, 222],
        [1, 222],
      ],
    );
    // A datagram whose framing fails is dropped whole, counted once.
    const cut = Buffer.concat([contribution(job, 0, 2, [3]), contribution(job, 0, 3, [4])]);
    core.receive(cut.subarray(0, cut.length - 2), portOf(0), "127.0.0.1", 0);
    assert.equal(core.stats.drops[DropReason.badLength], 1);
    assert.equal(core.stats.rxDatagrams, 5);
  });

  it("learns which workers take datagrams of several packets from the batches flag", () => {
    const accepting: number[] = [];
    core = new SwitchCore(
      parseSwitchConfig({ aggregators: 8, elementsPerAggregator: 4, jobs: [job] }),
      {
        ...capture,
        acceptsBatches: (port) => accepting.push(port),
      },
    );
    send(0, 0, [1]);
    send(1, 0, [1], { flags: Flag.batches });
    send(1, 1, [1], { flags: Flag.batches });
    send(2, 0, [1], { flags: Flag.batches | Flag.resend });
    assert.deepEqual(accepting, [portOf(1), portOf(2)], "once per worker, only with the flag");
    // Results never carry the flag: a worker that predates it would drop them.
    for (const s of capture.sent) assert.equal(s.header.flags & Flag.batches, 0);
  });

  it("binds a worker's address from a hello (a forward to itself), never from a forward it drops", () => {
    const hello = (w: number, destination: number) =>
      packet({ type: PacketType.forward, jobId: 7, fanIn: 3, workerId: w, destination }, []);
    core.receive(hello(1, 2), portOf(1), "127.0.0.1", 0); // worker 2 is unknown: dropped
    assert.equal(core.stats.drops[DropReason.unknownDestination], 1);
    assert.equal(core.job(7)?.hostPort[1], -1, "a dropped forward binds nothing");
    core.receive(hello(2, 2), portOf(2), "127.0.0.1", 0); // a hello: bound, and echoed
    assert.equal(core.job(7)?.hostPort[2], portOf(2));
    assert.deepEqual(
      capture.sent.map((s) => s.port),
      [portOf(2)],
    );
  });

  it("drops, and counts, a datagram longer than any UDP datagram instead of throwing", () => {
    const huge = Buffer.concat(
      Array.from({ length: 5 }, (_, psn) => contribution(job, 0, psn, new Array(4000).fill(1))),
    );
    assert.ok(huge.length > 65507);
    core.receive(huge, portOf(0), "127.0.0.1", 0);
    assert.equal(core.stats.drops[DropReason.tooManyElements], 1);
  });

  it("forwards plain packets between a job's hosts", () => {
    send(0, 0, [1]);
    send(1, 0, [1]);
    const fwd = packet(
      { type: PacketType.forward, jobId: 7, fanIn: 3, workerId: 1, destination: 0 },
      [42],
    );
    core.receive(fwd, portOf(1), "127.0.0.1", 0);
    assert.equal(capture.sent.length, 1);
    assert.equal(capture.sent[0].port, portOf(0));
    assert.deepEqual(capture.sent[0].values, [42]);
    const all = packet(
      { type: PacketType.forward, jobId: 7, fanIn: 3, workerId: 0, destination: 0xffff },
      [9],
    );
    core.receive(all, portOf(0), "127.0.0.1", 0);
    assert.deepEqual(
      capture.sent.slice(1).map((s) => s.port),
      [portOf(1)],
    );
  });
});

describe("fault injection", () => {
  it("is seeded: the same seed and traffic give the same faults", () => {
    const run = (seed: number) => {
      const capture = captureTransmit();
      const rates = { drop: 0.1, duplicate: 0.1, reorder: 0.1 };
      const core = new SwitchCore(
        parseSwitchConfig({
          aggregators: 8,
          elementsPerAggregator: 4,
          jobs: [job],
          faults: { seed, ingress: rates, egress: rates },
        }),
        capture,
      );
      for (let psn = 0; psn < 400; psn++) {
        for (let w = 0; w < 3; w++) {
          core.receive(contribution(job, w, psn, [psn]), portOf(w), "127.0.0.1", 0);
          core.receive(
            contribution(job, w, psn, [psn], { flags: Flag.resend }),
            portOf(w),
            "127.0.0.1",
            0,
          );
        }
      }
      core.handleTimeout(1);
      return {
        sent: capture.sent.map((s) => `${s.port}:${s.header.psn}`).join(","),
        injected: core.faults.ingress.injected,
      };
    };
    const a = run(3);
    assert.deepEqual(run(3), a);
    assert.notEqual(run(4).sent, a.sent);
    for (const count of Object.values(a.injected))
      assert.ok(count > 150 && count < 330, `injected ${count}`);
  });
});
