import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import { DropReason } from "../proto/drops.js";
import { INT32_MAX } from "../proto/fixedpoint.js";
import { DESTINATION_ALL_WORKERS, Flag, PacketType, WORKER_ID_NONE } from "../proto/wire.js";
import { PsCore } from "../ps/core.js";
import { captureTransmit, packet } from "./packets.js";

const job = { id: 5, mode: "atp" as const, fanIn: 3, offset: 0, regionSize: 4, window: 2 };
const SWITCH = { port: 7000, host: "127.0.0.1" };

describe("parameter server", () => {
  let capture: ReturnType<typeof captureTransmit>;
  let ps: PsCore;
  /** A piece for `psn`: a worker's own contribution (worker id) or an aggregate of `bitmap`. */
  const piece = (psn: number, from: number | { bitmap: number }, values: number[], extra = {}) =>
    ps.receive(
      packet(
        {
          type: PacketType.contribution,
          flags: Flag.toPs,
          jobId: job.id,
          fanIn: job.fanIn,
          psn,
          aggregatorIndex: 2,
          scaleBits: 4,
          ...(typeof from === "number"
            ? { workerId: from, bitmap: 1 << from }
            : { workerId: WORKER_ID_NONE, bitmap: from.bitmap }),
          ...extra,
        },
        values,
      ),
      SWITCH.port,
      SWITCH.host,
    );

  beforeEach(() => {
    capture = captureTransmit();
    ps = new PsCore([job], 4, capture);
  });

  it("completes a PSN from workers' own contributions and acks it to all workers via the switch", () => {
    piece(0, 0, [1, 2]);
    piece(0, 1, [10, 20]);
    assert.equal(capture.sent.length, 0);
    piece(0, 2, [100, 200]);
    assert.equal(capture.sent.length, 1);
    const [a] = capture.sent;
    assert.equal(a.port, SWITCH.port);
    assert.equal(a.header.type, PacketType.ack);
    assert.equal(a.header.destination, DESTINATION_ALL_WORKERS);
    assert.equal(a.header.bitmap, 0b111);
    assert.equal(a.header.aggregatorIndex, 2, "the ack names the aggregator to release");
    assert.equal(a.header.flags, 0);
    assert.deepEqual(a.values, [111, 222]);
    assert.equal(ps.stats.aggregationsCompleted, 1);
  });

  it("merges partials and single contributions, counting every worker once", () => {
    piece(0, { bitmap: 0b011 }, [3]);
    piece(0, 0, [1]); // already inside the partial
    piece(0, { bitmap: 0b001 }, [1]); // a subset of what is held
    assert.equal(ps.stats.drops[DropReason.duplicate], 2);
    piece(0, 2, [4]);
    assert.deepEqual(capture.sent[0].values, [7]);
    assert.equal(ps.stats.partialsMerged, 1);
  });

  it("drops a partial that overlaps what it holds, and takes one that covers it", () => {
    piece(1, { bitmap: 0b011 }, [3]);
    piece(1, { bitmap: 0b110 }, [6]);
    assert.equal(ps.stats.drops[DropReason.overlappingPartial], 1);
    piece(1, { bitmap: 0b111 }, [7]); // a full aggregate replaces the partial
    assert.deepEqual(capture.sent[0].values, [7]);
  });

  it("finishes a sum that overflowed int32 in floating point and sends float32", () => {
    piece(0, { bitmap: 0b011 }, [INT32_MAX, -16]);
    piece(0, 2, [INT32_MAX, 48]);
    const [a] = capture.sent;
    assert.equal(a.header.flags, Flag.float32);
    const bytes = Buffer.from(
      a.values.flatMap((v) => [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff]),
    );
    assert.equal(bytes.readFloatLE(0), Math.fround((2 * INT32_MAX) / 16));
    assert.equal(bytes.readFloatLE(4), 2);
    assert.equal(ps.stats.floatResults, 1);
  });

  it("re-sends the ack to a worker that retransmits after completion; plain duplicates are dropped", () => {
    piece(0, { bitmap: 0b111 }, [9]);
    piece(0, 1, [3]); // network duplicate
    assert.equal(capture.sent.length, 1);
    piece(0, 1, [3], { flags: Flag.toPs | Flag.resend });
    assert.equal(capture.sent.length, 2);
    assert.equal(capture.sent[1].header.destination, 1);
    assert.deepEqual(capture.sent[1].values, [9]);
    piece(0, { bitmap: 0b111 }, [9], { flags: Flag.toPs | Flag.resend }); // the switch's copy again
    assert.equal(capture.sent[2].header.destination, DESTINATION_ALL_WORKERS);
    assert.equal(ps.stats.resultsResent, 2);
  });

  it("frees a PSN's state once every worker is a window past it", () => {
    piece(0, { bitmap: 0b111 }, [1]);
    piece(1, { bitmap: 0b111 }, [1]);
    assert.equal(ps.statesHeld, 2);
    piece(2, { bitmap: 0b011 }, [1]);
    assert.equal(ps.statesHeld, 3, "worker 2 has not shown it moved past PSN 0");
    piece(2, 2, [1]);
    assert.equal(ps.statesHeld, 2, "PSN 0 retired");
    piece(0, 1, [1], { flags: Flag.toPs | Flag.resend });
    assert.equal(ps.stats.drops[DropReason.psnRetired], 1);
  });

  it("a stray PSN beyond its ring neither takes a slot nor moves the watermarks", () => {
    // capacity 4 x window = 8 PSNs from the oldest live one
    piece(8, 0, [1]);
    piece(2 ** 31, { bitmap: 0b111 }, [1]);
    assert.equal(ps.stats.drops[DropReason.psnTooFarAhead], 2);
    for (let psn = 0; psn < 8; psn++) piece(psn, { bitmap: 0b111 }, [psn]);
    assert.equal(ps.stats.aggregationsCompleted, 8, "every real PSN still completes");
  });

  it("drops malformed and foreign packets, naming the reason", () => {
    ps.receive(Buffer.from("junk"), 1, "127.0.0.1");
    piece(0, 0, [1], { jobId: 6 });
    piece(0, 0, [1], { fanIn: 4 });
    piece(0, { bitmap: 0b1000 }, [1]);
    piece(0, { bitmap: 0 }, [1]);
    piece(0, 0, [1], { type: PacketType.result });
    const d = ps.stats.drops;
    assert.equal(d[DropReason.tooShort], 1);
    assert.equal(d[DropReason.unknownJob], 1);
    assert.equal(d[DropReason.fanInMismatch], 1);
    assert.equal(d[DropReason.badBitmap], 2);
    assert.equal(d[DropReason.unexpectedType], 1);
    assert.equal(ps.statesHeld, 0);
  });

  it("an adopted job is forgotten once idle with no PSN collecting; a listed one, or one still collecting, is kept", () => {
    const adopting = new PsCore([job], 4, capture, 2, 60_000);
    const send = (jobId: number, psn: number, w: number, now: number) =>
      adopting.receive(
        packet(
          {
            type: PacketType.contribution,
            flags: Flag.toPs,
            jobId,
            fanIn: 2,
            workerId: w,
            bitmap: 1 << w,
            psn,
            aggregatorIndex: 0,
            scaleBits: 4,
          },
          [1],
        ),
        SWITCH.port,
        SWITCH.host,
        now,
      );
    send(40, 0, 0, 1000);
    send(40, 0, 1, 1000); // job 40's PSN 0: complete
    send(41, 0, 0, 2000); // job 41's PSN 0: still collecting
    assert.equal(adopting.stats.jobsAdopted, 2);
    assert.equal(adopting.nextTimeout(), 61_000);
    adopting.handleTimeout(60_999);
    assert.equal(adopting.jobs.length, 3);
    adopting.handleTimeout(61_000);
    assert.deepEqual(
      adopting.jobs.map((j) => j.id),
      [job.id, 41],
      "job 40 forgotten; the listed job and job 41 (collecting) kept",
    );
    assert.equal(adopting.stats.adoptedJobsFreed, 1);
    assert.equal(adopting.nextTimeout(), Number.POSITIVE_INFINITY);
    send(41, 0, 1, 200_000); // completes: job 41 may go once idle
    send(40, 1, 0, 200_000); // job 40 again: adopted afresh
    assert.equal(adopting.stats.jobsAdopted, 3);
    assert.equal(adopting.nextTimeout(), 260_000);
  });
});
