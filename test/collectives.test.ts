import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { writeRingControl } from "../proto/packets.js";
import { Prng } from "../proto/prng.js";
import { Field, Flag, HEADER_BYTES } from "../proto/wire.js";
import { type CoreSimJob, simulateCores } from "../sim/harness.js";
import { COLLECTIVES, CollectiveCore } from "../worker/collective.js";
import { collectiveInput, verifyCollective } from "../worker/workload.js";
import { testSeed } from "./seed.js";

/**
 * Ring all-reduce and the other collectives (proto/README.md, section 17),
 * sans-IO over the simulated network with loss, duplication and reordering:
 * every worker's output is checked against what all workers' seeded inputs
 * make it, and every data packet is applied exactly once.
 */
const rates = { drop: 0.02, duplicate: 0.02, reorder: 0.05 };

function run(job: CoreSimJob, seed: number, calls = 2) {
  const sim = simulateCores({ jobs: [job], aggregators: 1, rates, seed, calls });
  const out = sim.jobs[0];
  out.outputs.forEach((output, w) => {
    const v = verifyCollective(out.op, output, {
      seed: out.seed,
      workers: job.workers,
      workerId: w,
      root: job.root ?? 0,
      scaleBits: job.scaleBits ?? 20,
      length: job.elements,
    });
    assert.equal(
      v.verified,
      true,
      `${out.op}, worker ${w} of ${job.workers}: ${JSON.stringify(v)}`,
    );
  });
  return sim;
}

describe("collectives over the switch's forwarding", () => {
  for (const op of COLLECTIVES) {
    it(`${op}: exact under loss, duplication and reordering for N = 2, 3, 4, 8`, () => {
      for (const workers of [2, 3, 4, 8]) {
        const seed = testSeed(`collective ${op} ${workers}`, 31 + workers);
        // 1001 elements do not cut evenly into chunks or 50-element packets;
        // all-to-all needs equal chunks.
        const elements = op === "allToAll" ? 150 * workers : 1001;
        const sim = run(
          {
            mode: "ring",
            operation: op,
            root: workers - 1,
            workers,
            elements,
            window: 8,
            elementsPerPacket: 50,
          },
          seed,
        );
        const stats = sim.jobs[0].collectives.map((c) => c.stats);
        assert.ok(
          stats.some((s) => s.retransmissions > 0),
          "loss was recovered by retransmission",
        );
        assert.ok(
          stats.some((s) => s.duplicateResults > 0),
          "duplicates were acknowledged, not applied",
        );
      }
    });
  }

  it("handles tensors smaller than N packets, and shorter than N elements", () => {
    for (const op of ["allReduce", "reduceScatter", "allGather", "broadcast", "reduce"] as const) {
      for (const [workers, elements] of [
        [8, 3],
        [4, 70],
        [3, 1],
      ]) {
        run(
          { mode: "ring", operation: op, workers, elements, window: 4, elementsPerPacket: 50 },
          testSeed(`collective small ${op}`, 41),
        );
      }
    }
  });

  it("ring all-reduce gives NetReduce's result bit for bit on the same inputs", () => {
    const seed = testSeed("ring equals netreduce", 43);
    for (const workers of [3, 4]) {
      const shape = { workers, elements: 5_003, window: 8, elementsPerPacket: 64, seed };
      const ring = run({ mode: "ring", ...shape }, seed, 1);
      const netreduce = simulateCores({
        jobs: [{ mode: "netreduce", ...shape }],
        aggregators: 16,
        rates,
        seed,
      });
      ring.jobs[0].outputs.forEach((out, w) => {
        assert.deepEqual(out, netreduce.jobs[0].outputs[w], `worker ${w} of ${workers}`);
      });
    }
  });

  it("each ring worker sends 2(N-1)/N of the tensor, each all-to-all worker (N-1)/N", () => {
    const seed = testSeed("ring bytes", 47);
    const workers = 4;
    const elements = 40_000;
    const clean = { drop: 0, duplicate: 0, reorder: 0 };
    for (const [operation, share] of [
      ["allReduce", (2 * (workers - 1)) / workers],
      ["allToAll", (workers - 1) / workers],
    ] as const) {
      const sim = simulateCores({
        jobs: [
          { mode: "ring", operation, workers, elements, window: 16, elementsPerPacket: 250, seed },
        ],
        aggregators: 1,
        rates: clean,
        seed,
      });
      for (const c of sim.jobs[0].collectives) {
        assert.equal(c.stats.payloadBytesSent, share * elements * 4, operation);
        assert.equal(c.stats.payloadBytesReceived, share * elements * 4, operation);
      }
    }
  });

  it("runs every collective with one worker (its own data, nothing on the wire)", () => {
    for (const op of COLLECTIVES) {
      const sim = run(
        { mode: "ring", operation: op, workers: 1, elements: 12, window: 2, elementsPerPacket: 5 },
        testSeed(`collective alone ${op}`, 61),
        1,
      );
      assert.equal(sim.jobs[0].collectives[0].stats.payloadBytesSent, 0, op);
    }
  });

  it("refuses lengths that do not fit the collective", () => {
    const sim = simulateCores({
      jobs: [
        {
          mode: "ring",
          operation: "allReduce",
          workers: 2,
          elements: 10,
          window: 2,
          elementsPerPacket: 5,
        },
      ],
      aggregators: 1,
      rates: { drop: 0, duplicate: 0, reorder: 0 },
      seed: 1,
    });
    const core = sim.jobs[0].collectives[0];
    assert.throws(
      () => core.begin("reduceScatter", new Float32Array(10), new Float32Array(10), 0),
      /reduceScatter: output has 10 elements, expected 5/,
    );
    assert.throws(
      () => core.begin("allToAll", new Float32Array(9), new Float32Array(9), 0),
      /do not cut into 2 equal chunks/,
    );
    assert.throws(
      () => core.begin("broadcast", new Float32Array(4), new Float32Array(4), 0, 2),
      /root/,
    );
  });

  describe("loss recovery per outgoing stream, as WorkerCore's (proto/README.md, section 7)", () => {
    // Worker 0 of 2: its ring stream to worker 1 starts with packets 0 and 1 (PSNs 0, 1).
    const start = () => {
      const core = new CollectiveCore(
        {
          jobId: 1,
          workerId: 0,
          fanIn: 2,
          window: 8,
          elementsPerPacket: 2,
          scaleBits: 16,
          rtoInitialMs: 20,
          rtoFloorMs: 1,
          rtoMaxMs: 2000,
          maxSendsPerPacket: 40,
          gapFloorMs: 1,
          clockGranularityMs: 1,
          keepaliveMs: 0,
        },
        { send: () => {} },
      );
      core.begin("allReduce", new Float32Array(8), new Float32Array(8), 0);
      return core;
    };
    // A forward with no payload from `sender`: an acknowledgement of `psn` (worker 1), or our hello's echo.
    const control = (sender: number, psn: number) => {
      const b = Buffer.alloc(HEADER_BYTES);
      writeRingControl(new DataView(b.buffer), 0, Flag.batches, 1, sender, 2, psn, 0);
      return b;
    };

    it("resends a packet a later-sent acknowledged one overtook after its RTT + the reordering wait (RACK)", () => {
      const core = start();
      core.receive(control(0, 0), 0.5); // the switch echoes the hello
      // Packet 1 acknowledged at 5 (the least RTT): packet 0 is lost at 0 + 5 + max(1, 5 / 4).
      core.receive(control(1, 1), 5);
      assert.equal(core.nextTimeout(), 6.25);
      core.handleTimeout(6);
      assert.equal(core.stats.retransmissions, 0, "a timer not yet due does nothing");
      core.handleTimeout(6.25);
      assert.equal(core.stats.retransmissions, 1);
      assert.equal(core.stats.timeouts, 0);
      // The RTO (5 + 4 x 2.5): first from a lower bound of the oldest send
      // (the latest acknowledgement, 5, here), made exact when it fires:
      // from the resend, later than the latest acknowledgement.
      assert.equal(core.nextTimeout(), 5 + 15);
      core.handleTimeout(20);
      assert.equal(core.stats.retransmissions, 1, "the lower bound's timer resends nothing");
      assert.equal(core.nextTimeout(), 6.25 + 15);
    });

    it("counts a timeout as spurious when its acknowledgement comes sooner than the least RTT after the resend", () => {
      const core = start();
      core.handleTimeout(20);
      assert.equal(core.stats.timeouts, 1);
      assert.equal(core.stats.retransmissions, 1, "a probe: only the oldest packet");
      // Packet 1's acknowledgement: an RTT sample of 21 (the least RTT), then packet 0's 1 ms after its resend.
      core.receive(control(1, 1), 21);
      core.receive(control(1, 0), 21);
      assert.equal(core.stats.spuriousTimeouts, 1);
      assert.equal(core.stats.timeoutStallMs, 20, "nothing came for 20 ms before it");
    });
  });

  describe("acknowledgement ranges (proto/README.md, section 17)", () => {
    /**
     * Two workers of a ring all-reduce and a switch that only forwards, in
     * turns of 0.01 ms: what a worker sends in one turn reaches its peer in
     * the next as one datagram. With `oldReceiver`, worker 1 never sees the
     * coverage worker 0's data offer (regionEpoch zeroed on the way), so it
     * acknowledges as a receiver written before ranges: every packet alone.
     */
    const exchange = (o: {
      coverage: [number, number];
      oldReceiver?: boolean;
      loss?: number;
      seed: number;
    }) => {
      const length = 1000;
      const prng = new Prng(o.seed);
      const outbox: Buffer[][] = [[], []];
      // per worker: data packets sent, acknowledgements sent, the most each covered
      const seen = [0, 1].map(() => ({ data: 0, acks: 0, mostCovered: 0, offered: new Set() }));
      const cores = [0, 1].map(
        (w) =>
          new CollectiveCore(
            {
              jobId: 1,
              workerId: w,
              fanIn: 2,
              window: 16,
              elementsPerPacket: 10,
              scaleBits: 20,
              rtoInitialMs: 1,
              rtoFloorMs: 0.05,
              rtoMaxMs: 100,
              maxSendsPerPacket: 40,
              gapFloorMs: 0.01,
              clockGranularityMs: 0.01,
              keepaliveMs: 0,
              ackCoverage: o.coverage[w],
            },
            { send: (packet) => outbox[w].push(Buffer.from(packet)) },
          ),
      );
      const inputs = [0, 1].map((w) => collectiveInput("allReduce", length, o.seed, w, 2));
      const outputs = [0, 1].map(() => new Float32Array(length));
      cores.forEach((c, w) => {
        c.begin("allReduce", inputs[w], outputs[w], 0);
      });
      let now = 0;
      while (!(cores[0].done && cores[1].done) && now < 1000) {
        now += 0.01;
        const inbox: Buffer[][] = [[], []];
        for (const w of [0, 1]) {
          for (const packet of outbox[w]) {
            const to = packet.readUInt16LE(Field.destination);
            if (packet.readUInt16LE(Field.elementCount) > 0) {
              seen[w].data++;
              seen[w].offered.add(packet[Field.regionEpoch]);
              if (o.oldReceiver && w === 0) packet[Field.regionEpoch] = 0;
            } else if (to !== w) {
              seen[w].acks++;
              const covered = packet.readUInt32LE(Field.aggregatorIndex);
              if (covered > seen[w].mostCovered) seen[w].mostCovered = covered;
            }
            if (prng.nextFloat() < (o.loss ?? 0)) continue;
            inbox[to].push(packet);
          }
          outbox[w] = [];
        }
        for (const w of [0, 1]) {
          if (inbox[w].length > 0) cores[w].receive(Buffer.concat(inbox[w]), now);
          if (cores[w].nextTimeout() <= now) cores[w].handleTimeout(now);
        }
      }
      outputs.forEach((output, w) => {
        const v = verifyCollective("allReduce", output, {
          seed: o.seed,
          workers: 2,
          workerId: w,
          root: 0,
          scaleBits: 20,
          length,
        });
        assert.equal(v.verified, true, `worker ${w}: ${JSON.stringify(v)} ${cores[w].failure}`);
      });
      return { seen, stats: cores.map((c) => c.stats) };
    };

    it("covers several packets with one acknowledgement, never more than the sender offers", () => {
      const { seen } = exchange({ coverage: [16, 4], seed: testSeed("ack ranges", 81) });
      // 100 packets each way; datagrams of up to 16 (a window) in a turn.
      assert.equal(seen[0].data, 100);
      assert.deepEqual([...seen[0].offered], [16]);
      assert.deepEqual([...seen[1].offered], [4]);
      assert.ok(seen[1].acks <= 100 / 4, `worker 1 sent ${seen[1].acks} acknowledgements`);
      assert.equal(seen[1].mostCovered, 15, "16 packets: PSN and the 15 before it");
      assert.equal(seen[0].mostCovered, 3, "at most 4, as worker 1 offers");
    });

    it("works with a receiver that acknowledges every packet, and a sender that offers none", () => {
      const seed = testSeed("ack ranges with older peers", 83);
      const old = exchange({ coverage: [16, 16], oldReceiver: true, seed });
      assert.equal(old.seen[1].acks, 100, "worker 1 acknowledged each of 100 packets");
      assert.equal(old.seen[1].mostCovered, 0);
      assert.ok(old.seen[0].mostCovered > 0, "worker 0 still covers worker 1's");
      // ackCoverage 1: the data say 0, as before ranges, and get one acknowledgement each.
      const one = exchange({ coverage: [1, 16], seed });
      assert.deepEqual([...one.seen[0].offered], [0]);
      assert.equal(one.seen[1].acks, 100);
      assert.equal(one.seen[1].mostCovered, 0);
      for (const r of [old, one]) assert.equal(r.stats[0].retransmissions, 0);
    });

    it("stays exact under loss: a resend is acknowledged at once, a gap starts a new range", () => {
      const seed = testSeed("ack ranges under loss", 89);
      const { stats, seen } = exchange({ coverage: [16, 16], loss: 0.05, seed });
      assert.ok(stats[0].retransmissions + stats[1].retransmissions > 0, "loss was recovered");
      assert.ok(seen[1].mostCovered > 0);
    });
  });
});
