import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { datagramPackets } from "../proto/codec.js";
import { Coalescer } from "../runtime/coalesce.js";
import { packet } from "./packets.js";

/** A coalescer whose datagrams are recorded, and whose flush the test triggers. */
function recorder(limits: { packets: number; bytes: number }, acceptAll = true) {
  const datagrams: Array<{ bytes: Buffer; port: number }> = [];
  let scheduled = 0;
  const c = new Coalescer(
    limits,
    (d, port) => datagrams.push({ bytes: Buffer.from(d), port }),
    () => scheduled++,
    acceptAll,
  );
  return { c, datagrams, scheduled: () => scheduled };
}

const p = (psn: number, elements = 4) =>
  packet({ type: 2, jobId: 1, fanIn: 2, psn }, new Array(elements).fill(psn));

describe("coalescer (emulated segmentation offload)", () => {
  it("puts one turn's packets for a destination into one datagram, in order", () => {
    const r = recorder({ packets: 64, bytes: 65507 });
    for (let psn = 0; psn < 5; psn++) r.c.send(p(psn), 7000, "127.0.0.1");
    r.c.send(p(9), 7001, "127.0.0.1");
    assert.equal(r.datagrams.length, 0, "nothing leaves before the turn ends");
    assert.equal(r.scheduled(), 1, "one flush asked for per turn");
    r.c.flush();
    assert.deepEqual(
      r.datagrams.map((d) => [d.port, datagramPackets(d.bytes, d.bytes.length)]),
      [
        [7000, 5],
        [7001, 1],
      ],
    );
    assert.ok(r.datagrams[0].bytes.equals(Buffer.concat([0, 1, 2, 3, 4].map((n) => p(n)))));
    assert.equal(r.c.packetsSent, 6);
    assert.equal(r.c.datagramsSent, 2);
  });

  it("copies: a packet's buffer may change once send() returns", () => {
    const r = recorder({ packets: 8, bytes: 65507 });
    const buf = p(1);
    r.c.send(buf, 7000, "127.0.0.1");
    buf.fill(0);
    r.c.flush();
    assert.ok(r.datagrams[0].bytes.equals(p(1)));
  });

  it("keeps to the packet and byte limits", () => {
    const byCount = recorder({ packets: 3, bytes: 65507 });
    for (let psn = 0; psn < 7; psn++) byCount.c.send(p(psn), 7000, "127.0.0.1");
    byCount.c.flush();
    assert.deepEqual(
      byCount.datagrams.map((d) => datagramPackets(d.bytes, d.bytes.length)),
      [3, 3, 1],
    );
    const bySize = recorder({ packets: 64, bytes: 3 * 48 + 10 });
    for (let psn = 0; psn < 7; psn++) bySize.c.send(p(psn), 7000, "127.0.0.1");
    bySize.c.flush();
    assert.deepEqual(
      bySize.datagrams.map((d) => d.bytes.length),
      [144, 144, 48],
    );
    // A packet over half the limit goes alone, after what waited.
    bySize.c.send(p(0), 7000, "127.0.0.1");
    bySize.c.send(p(1, 30), 7000, "127.0.0.1");
    assert.deepEqual(
      bySize.datagrams.slice(3).map((d) => d.bytes.length),
      [48, 152],
    );
  });

  it("sends one packet per datagram to a destination that has not said it accepts more, and with a limit of 1", () => {
    const r = recorder({ packets: 64, bytes: 65507 }, false);
    r.c.send(p(0), 7000, "127.0.0.1");
    r.c.send(p(1), 7000, "127.0.0.1");
    assert.equal(r.datagrams.length, 2);
    r.c.accept(7000, "127.0.0.1");
    r.c.send(p(2), 7000, "127.0.0.1");
    r.c.send(p(3), 7000, "127.0.0.1");
    r.c.send(p(4), 7000, "127.0.0.2");
    r.c.flush();
    assert.deepEqual(
      r.datagrams.map((d) => datagramPackets(d.bytes, d.bytes.length)),
      [1, 1, 1, 2],
      "127.0.0.2 has not said so: its packet leaves at once",
    );
    const off = recorder({ packets: 1, bytes: 65507 });
    off.c.send(p(0), 7000, "127.0.0.1");
    off.c.send(p(1), 7000, "127.0.0.1");
    assert.equal(off.datagrams.length, 2);
    assert.equal(off.scheduled(), 0);
  });

  it("refuses limits it cannot keep", () => {
    assert.throws(() => recorder({ packets: 0, bytes: 65507 }), /packets per datagram/);
    assert.throws(() => recorder({ packets: 4, bytes: 70000 }), /datagram bytes/);
  });
});
