import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  datagramPackets,
  decodeHeader,
  encodeHeader,
  formatHeader,
  packetBytesAt,
} from "../proto/codec.js";
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

describe("datagrams of several packets (section 2.1)", () => {
  /** Random valid packets from the naive reference encoder, and their headers. */
  function randomPackets(prng: Prng, count: number) {
    return Array.from({ length: count }, () => {
      const h = randomHeader(prng);
      if (h.type === PacketType.contribution && h.elementCount === 0) h.elementCount = 1;
      h.elementCount %= 40;
      if (h.type === PacketType.contribution && h.elementCount === 0) h.elementCount = 1;
      const payload = Array.from({ length: h.elementCount }, () => prng.nextUint32() | 0);
      return { h, payload, bytes: naiveEncode({ ...h }, payload) };
    });
  }

  it("finds 1 to 64 packets back to back, each decoding as it would alone", () => {
    const prng = new Prng(testSeed("codec datagrams", 20261129));
    for (let round = 0; round < 300; round++) {
      const packets = randomPackets(prng, 1 + (prng.nextUint32() % 64));
      const datagram = Buffer.concat(packets.map((p) => p.bytes));
      assert.equal(datagramPackets(datagram, datagram.length), packets.length, `round ${round}`);
      let at = 0;
      const out = emptyHeader();
      for (const p of packets) {
        const length = packetBytesAt(datagram, at);
        assert.equal(length, p.bytes.length);
        const view = new DataView(datagram.buffer, datagram.byteOffset, datagram.length);
        assert.equal(decodeHeader(view, at, length, out), DropReason.ok);
        assert.deepEqual(out, p.h);
        assert.deepEqual(naiveDecode(datagram.subarray(at, at + length)).payload, p.payload);
        at += length;
      }
      assert.equal(at, datagram.length);
    }
  });

  it("a datagram of one packet is exactly the single-packet format", () => {
    const prng = new Prng(testSeed("codec one packet", 3));
    for (const p of randomPackets(prng, 50)) {
      assert.equal(datagramPackets(p.bytes, p.bytes.length), 1);
      assert.equal(decode(p.bytes).reason, DropReason.ok);
    }
  });

  it("drops the whole datagram when its framing is not certain", () => {
    const prng = new Prng(testSeed("codec framing", 4));
    const three = randomPackets(prng, 3).map((p) => p.bytes);
    const whole = Buffer.concat(three);
    const framing = (buf: Buffer) => datagramPackets(buf, buf.length);
    assert.equal(framing(Buffer.alloc(0)), -DropReason.tooShort, "empty");
    assert.equal(framing(Buffer.alloc(31)), -DropReason.tooShort, "one short header");
    assert.equal(framing(whole.subarray(0, whole.length - 4)), -DropReason.badLength, "last cut");
    assert.equal(
      framing(Buffer.concat([whole, Buffer.alloc(4)])),
      -DropReason.badLength,
      "4 bytes left over",
    );
    assert.equal(
      framing(Buffer.concat([whole, Buffer.alloc(40)])),
      -DropReason.badVersion,
      "40 zero bytes left over: version 0",
    );
    const otherVersion = Buffer.from(whole);
    otherVersion[three[0].length] = 2;
    assert.equal(framing(otherVersion), -DropReason.badVersion, "a middle packet of version 2");
    const claim = (at: number) => {
      const buf = Buffer.from(whole);
      buf.writeUInt16LE(buf.readUInt16LE(at + 10) + 1, at + 10);
      return framing(buf);
    };
    const last = three[0].length + three[1].length;
    assert.equal(claim(last), -DropReason.badLength, "the last packet claims 4 bytes more");
    // The next header is then read 4 bytes off: framing is lost one way or another.
    assert.ok(claim(three[0].length) < 0, "a middle packet claims 4 bytes more");
  });

  it("keeps the other packets when one is malformed but framed", () => {
    const prng = new Prng(testSeed("codec inner packet", 5));
    const packets = randomPackets(prng, 5);
    const datagram = Buffer.concat(packets.map((p) => p.bytes));
    const middle = packets[0].bytes.length + packets[1].bytes.length;
    datagram[middle + 1] = 9; // packet 2's type
    datagram.writeUInt32LE(1, packets[0].bytes.length + 28); // packet 1's reserved field
    assert.equal(datagramPackets(datagram, datagram.length), 5);
    const view = new DataView(datagram.buffer, datagram.byteOffset, datagram.length);
    const reasons: number[] = [];
    for (let at = 0; at < datagram.length; ) {
      const length = packetBytesAt(datagram, at);
      reasons.push(decodeHeader(view, at, length, emptyHeader()));
      at += length;
    }
    assert.deepEqual(reasons, [
      DropReason.ok,
      DropReason.badReserved,
      DropReason.badType,
      DropReason.ok,
      DropReason.ok,
    ]);
  });

  it("never throws on random datagrams", () => {
    const prng = new Prng(testSeed("codec datagram fuzz", 6));
    for (let i = 0; i < 5000; i++) {
      const buf = Buffer.concat(
        randomPackets(prng, 1 + (prng.nextUint32() % 4)).map((p) => p.bytes),
      );
      for (let k = prng.nextUint32() % 4; k > 0; k--) {
        buf[prng.nextUint32() % buf.length] = prng.nextUint32() & 0xff;
      }
      const cut = buf.subarray(
        0,
        buf.length - (prng.nextUint32() % 3 === 0 ? prng.nextUint32() % buf.length : 0),
      );
      const n = datagramPackets(cut, cut.length);
      assert.ok(
        n === -DropReason.tooShort ||
          n === -DropReason.badVersion ||
          n === -DropReason.badLength ||
          n >= 1,
      );
    }
  });
});
