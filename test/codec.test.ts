import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeHeader, encodeHeader, formatHeader } from "../proto/codec.js";
import { DropReason } from "../proto/drops.js";
import { Prng } from "../proto/prng.js";
import {
  emptyHeader,
  Flag,
  HEADER_BYTES,
  KNOWN_FLAGS,
  MAX_FAN_IN,
  MAX_SCALE_BITS,
  type PacketHeader,
  PacketType,
} from "../proto/wire.js";
import { naiveDecode, naiveEncode } from "./reference-codec.js";
import { testSeed } from "./seed.js";

function randomHeader(prng: Prng): PacketHeader {
  const u = (bits: number) => prng.nextUint32() % 2 ** bits;
  const fanIn = 1 + (prng.nextUint32() % MAX_FAN_IN);
  return {
    version: 1,
    type: 1 + (prng.nextUint32() % 4),
    flags: prng.nextUint32() & KNOWN_FLAGS,
    jobId: u(16),
    workerId: prng.nextUint32() % fanIn,
    fanIn,
    elementCount: prng.nextUint32() % 300,
    psn: prng.nextUint32(),
    aggregatorIndex: prng.nextUint32(),
    bitmap: prng.nextUint32(),
    scaleBits: prng.nextUint32() % (MAX_SCALE_BITS + 1),
    regionEpoch: u(8),
    destination: u(16),
  };
}

function encodeToBuffer(h: PacketHeader, payload: number[]): Buffer {
  const buf = Buffer.alloc(HEADER_BYTES + payload.length * 4);
  encodeHeader(new DataView(buf.buffer, buf.byteOffset, buf.length), 0, h);
  payload.forEach((v, i) => {
    buf.writeInt32LE(v, HEADER_BYTES + 4 * i);
  });
  return buf;
}

function decode(buf: Buffer, out = emptyHeader()) {
  const reason = decodeHeader(
    new DataView(buf.buffer, buf.byteOffset, buf.length),
    0,
    buf.length,
    out,
  );
  return { reason, header: out };
}

describe("header codec", () => {
  it("matches golden bytes", () => {
    const h: PacketHeader = {
      version: 1,
      type: PacketType.contribution,
      flags: Flag.resend | Flag.overflow,
      jobId: 0x0102,
      workerId: 3,
      fanIn: 4,
      elementCount: 2,
      psn: 0x0a0b0c0d,
      aggregatorIndex: 0x11223344,
      bitmap: 0x80000008,
      scaleBits: 20,
      regionEpoch: 7,
      destination: 0xfffe,
    };
    const buf = encodeToBuffer(h, [1, -1]);
    assert.equal(
      buf.toString("hex"),
      "0101" +
        "0500" +
        "0201" +
        "0300" +
        "0400" +
        "0200" +
        "0d0c0b0a" +
        "44332211" +
        "08000080" +
        "14" +
        "07" +
        "feff" +
        "00000000" +
        "01000000" +
        "ffffffff",
    );
    const { reason, header } = decode(buf);
    assert.equal(reason, DropReason.ok);
    assert.deepEqual(header, h);
    assert.match(formatHeader(header), /^contribution v1 job=258 worker=3 .*psn=168496141/);
  });

  it("agrees with the naive reference codec on random headers", () => {
    const prng = new Prng(testSeed("codec round trip", 20261123));
    for (let i = 0; i < 2000; i++) {
      const h = randomHeader(prng);
      if (h.type !== PacketType.contribution) h.workerId = prng.nextUint32() % 0x10000;
      else if (h.elementCount === 0) h.elementCount = 1; // empty contributions are invalid
      const payload = Array.from({ length: h.elementCount }, () => prng.nextUint32() | 0);
      const ours = encodeToBuffer(h, payload);
      const { reserved: _, ...naiveFields } = naiveDecode(ours).fields;
      assert.deepEqual(naiveFields, { ...h }, `header ${i}`);
      const theirs = naiveEncode({ ...h }, payload);
      assert.ok(ours.equals(theirs), `bytes of header ${i}`);
      const { reason, header } = decode(theirs);
      assert.equal(reason, DropReason.ok, formatHeader(h));
      assert.deepEqual(header, h);
      assert.deepEqual(naiveDecode(theirs).payload, payload);
    }
  });

  it("rejects malformed datagrams with the reason", () => {
    const good = {
      version: 1,
      type: 1,
      jobId: 1,
      workerId: 0,
      fanIn: 2,
      elementCount: 1,
      scaleBits: 8,
    };
    const cases: Array<[string, Buffer, number]> = [
      ["empty", Buffer.alloc(0), DropReason.tooShort],
      ["31 bytes", Buffer.alloc(31), DropReason.tooShort],
      ["version 2", naiveEncode({ ...good, version: 2 }, [0]), DropReason.badVersion],
      ["type 0", naiveEncode({ ...good, type: 0 }, [0]), DropReason.badType],
      ["type 9", naiveEncode({ ...good, type: 9 }, [0]), DropReason.badType],
      ["unknown flag", naiveEncode({ ...good, flags: 0x8000 }, [0]), DropReason.badFlags],
      ["payload short", naiveEncode({ ...good, elementCount: 2 }, [0]), DropReason.badLength],
      ["payload long", naiveEncode({ ...good }, [0, 0]), DropReason.badLength],
      ["reserved set", naiveEncode({ ...good, reserved: 1 }, [0]), DropReason.badReserved],
      ["fan-in 0", naiveEncode({ ...good, fanIn: 0 }, [0]), DropReason.badFanIn],
      ["fan-in 33", naiveEncode({ ...good, fanIn: 33 }, [0]), DropReason.badFanIn],
      ["worker = fan-in", naiveEncode({ ...good, workerId: 2 }, [0]), DropReason.badWorkerId],
      ["scale 31", naiveEncode({ ...good, scaleBits: 31 }, [0]), DropReason.badScale],
      [
        "empty contribution",
        naiveEncode({ ...good, elementCount: 0 }, []),
        DropReason.emptyContribution,
      ],
    ];
    for (const [name, buf, expected] of cases) {
      assert.equal(decode(buf).reason, expected, name);
    }
    assert.equal(decode(naiveEncode(good, [5])).reason, DropReason.ok);
  });

  it("never throws on random bytes", () => {
    const prng = new Prng(testSeed("codec fuzz", 7));
    const out = emptyHeader();
    for (let i = 0; i < 5000; i++) {
      const buf = Buffer.alloc(prng.nextUint32() % 80);
      for (let j = 0; j < buf.length; j++) buf[j] = prng.nextUint32() & 0xff;
      if (buf.length > 0 && prng.nextFloat() < 0.5) buf[0] = 1;
      const { reason } = decode(buf, out);
      assert.ok(reason >= 0 && reason <= DropReason.emptyContribution);
    }
  });
});
