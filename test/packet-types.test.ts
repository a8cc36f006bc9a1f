import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeHeader, encodeHeader, forEachPacket } from "../proto/codec.js";
import { DropReason, type DropReasonValue } from "../proto/drops.js";
import {
  readFailed,
  readRegion,
  readRing,
  writeAck,
  writeContribution,
  writeFailed,
  writeRegion,
  writeResult,
  writeRingControl,
  writeRingData,
} from "../proto/packets.js";
import {
  DESTINATION_ALL_WORKERS,
  emptyHeader,
  HEADER_BYTES,
  type PacketHeader,
  PacketType,
  WORKER_ID_NONE,
} from "../proto/wire.js";

function written(write: (view: DataView) => void): Buffer {
  const buf = Buffer.alloc(HEADER_BYTES);
  write(new DataView(buf.buffer, buf.byteOffset, HEADER_BYTES));
  return buf;
}

function encoded(fields: Partial<PacketHeader>): Buffer {
  return written((view) => encodeHeader(view, 0, { ...emptyHeader(), ...fields }));
}

function decoded(buf: Buffer): PacketHeader {
  const h = emptyHeader();
  assert.equal(
    decodeHeader(new DataView(buf.buffer, buf.byteOffset, buf.length), 0, buf.length, h),
    DropReason.ok,
  );
  return h;
}

describe("proto/packets.ts", () => {
  it("writes the bytes encodeHeader writes for the same fields", () => {
    const common = { jobId: 7, fanIn: 32, psn: 0xfffffffe, scaleBits: 20 };
    assert.deepEqual(
      written((v) => writeContribution(v, 0, 0x41, 7, 31, 32, 256, 0xfffffffe, 9, 1 << 31, 20, 3)),
      encoded({
        ...common,
        type: PacketType.contribution,
        flags: 0x41,
        workerId: 31,
        elementCount: 256,
        aggregatorIndex: 9,
        bitmap: 1 << 31,
        regionEpoch: 3,
      }),
    );
    assert.deepEqual(
      written((v) => writeResult(v, 0, 0x0c, 7, 32, 256, 0xfffffffe, 9, 0xffffffff, 20, 3)),
      encoded({
        ...common,
        type: PacketType.result,
        flags: 0x0c,
        workerId: WORKER_ID_NONE,
        elementCount: 256,
        aggregatorIndex: 9,
        bitmap: 0xffffffff,
        regionEpoch: 3,
      }),
    );
    assert.deepEqual(
      written((v) => writeAck(v, 0, 0x20, 7, 32, 256, 0xfffffffe, 9, 0xffffffff, 20, 3, 5)),
      encoded({
        ...common,
        type: PacketType.ack,
        flags: 0x20,
        workerId: WORKER_ID_NONE,
        elementCount: 256,
        aggregatorIndex: 9,
        bitmap: 0xffffffff,
        regionEpoch: 3,
        destination: 5,
      }),
    );
    assert.deepEqual(
      written((v) => writeRingData(v, 0, 0x60, 7, 4, 32, 100, 0xfffffffe, 11, 30, 20, 0xffff)),
      encoded({
        ...common,
        type: PacketType.forward,
        flags: 0x60,
        workerId: 4,
        elementCount: 100,
        aggregatorIndex: 11,
        bitmap: 30,
        destination: 0xffff,
      }),
    );
    assert.deepEqual(
      written((v) => writeRingControl(v, 0, 0x40, 7, 4, 32, 12, 4)),
      encoded({
        type: PacketType.forward,
        flags: 0x40,
        jobId: 7,
        workerId: 4,
        fanIn: 32,
        psn: 12,
        destination: 4,
      }),
    );
    assert.deepEqual(
      written((v) => writeRegion(v, 0, 0x01, 7, 32, 1000, 64, 128, 2, DESTINATION_ALL_WORKERS)),
      encoded({
        type: PacketType.region,
        flags: 0x01,
        jobId: 7,
        workerId: WORKER_ID_NONE,
        fanIn: 32,
        psn: 1000,
        aggregatorIndex: 64,
        bitmap: 128,
        regionEpoch: 2,
        destination: DESTINATION_ALL_WORKERS,
      }),
    );
    assert.deepEqual(
      written((v) => writeFailed(v, 0, 7, 32, 99, 0b101, 5000.4)),
      encoded({
        type: PacketType.failed,
        jobId: 7,
        workerId: WORKER_ID_NONE,
        fanIn: 32,
        psn: 99,
        aggregatorIndex: 5000,
        bitmap: 0b101,
        destination: DESTINATION_ALL_WORKERS,
      }),
    );
  });

  it("reads back what it wrote, by meaning", () => {
    const region = { jobId: 0, flags: 0, fromPsn: 0, offset: 0, regionSize: 0, epoch: 0 };
    readRegion(decoded(written((v) => writeRegion(v, 0, 1, 7, 4, 1000, 64, 128, 2, 3))), region);
    assert.deepEqual(region, {
      jobId: 7,
      flags: 1,
      fromPsn: 1000,
      offset: 64,
      regionSize: 128,
      epoch: 2,
    });
    const failed = { jobId: 0, fanIn: 0, deadWorkers: 0, psn: 0, waitedMs: 0 };
    readFailed(decoded(written((v) => writeFailed(v, 0, 7, 4, 99, 0b101, 2 ** 40))), failed);
    assert.deepEqual(failed, {
      jobId: 7,
      fanIn: 4,
      deadWorkers: 0b101,
      psn: 99,
      waitedMs: 0xffffffff,
    });
    const ring = {
      sender: 0,
      destination: 0,
      psn: 0,
      elementCount: 0,
      step: 0,
      chunk: 0,
      scaleBits: 0,
      ackCoverage: 0,
    };
    const data = Buffer.alloc(HEADER_BYTES + 8);
    writeRingData(
      new DataView(data.buffer, data.byteOffset, data.length),
      0,
      0,
      7,
      1,
      4,
      2,
      55,
      3,
      2,
      20,
      2,
      16,
    );
    readRing(decoded(data), ring);
    assert.deepEqual(ring, {
      sender: 1,
      destination: 2,
      psn: 55,
      elementCount: 2,
      step: 3,
      chunk: 2,
      scaleBits: 20,
      ackCoverage: 16,
    });
  });
});

describe("forEachPacket", () => {
  const seen: Array<[number, number] | DropReasonValue> = [];
  const visitor = {
    packet: (_bytes: Uint8Array, at: number, length: number) => {
      seen.push([at, length]);
    },
    dropDatagram: (reason: DropReasonValue) => {
      seen.push(reason);
    },
  };
  const walk = (datagram: Buffer, maxBytes = 65507) => {
    seen.length = 0;
    forEachPacket(datagram, datagram.length, maxBytes, visitor);
    return [...seen];
  };
  const one = (elements: number) => {
    const buf = Buffer.alloc(HEADER_BYTES + 4 * elements);
    writeRingControl(new DataView(buf.buffer, buf.byteOffset, buf.length), 0, 0, 1, 0, 2, 0, 1);
    buf.writeUInt16LE(elements, 10);
    return buf;
  };

  it("hands out each packet in turn", () => {
    assert.deepEqual(walk(Buffer.concat([one(2), one(0), one(1)])), [
      [0, 40],
      [40, 32],
      [72, 36],
    ]);
  });

  it("drops a datagram of uncertain framing, or one too long, whole", () => {
    assert.deepEqual(walk(Buffer.alloc(0)), [DropReason.tooShort]);
    assert.deepEqual(walk(Buffer.concat([one(2), Buffer.alloc(4)])), [DropReason.badLength]);
    assert.deepEqual(walk(one(2), 39), [DropReason.tooManyElements]);
  });
});
