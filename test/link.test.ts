import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LinkPort, newVerdict } from "../link/link.js";
import { ConfigError, parseSwitchConfig } from "../proto/config.js";
import { LinksSchema, linkParamsFor } from "../proto/links.js";
import { parseDuration, parseRate } from "../proto/units.js";

// 8 Mbps: one byte per microsecond, 1000 bytes per ms, so times read as bytes.
const params = {
  rateBitsPerSecond: 8e6,
  delayMs: 0.5,
  bufferBytes: 2500,
  ecnThresholdBytes: 1500,
};

describe("link model", () => {
  it("serializes, delays, queues behind earlier packets, tail-drops and marks", () => {
    const port = new LinkPort(params);
    const v = newVerdict();
    // [at ms, bytes] -> [dropped, marked, departAt, arriveAt, queued before]
    const table: Array<[number, number, boolean, boolean, number, number, number]> = [
      [0, 1000, false, false, 1, 1.5, 0], // idle line: serialization only
      [0, 1000, false, false, 2, 2.5, 1000], // behind the first
      [0, 1000, true, false, 0, 0, 2000], // 2000 + 1000 > 2500: tail drop
      [0.5, 400, false, false, 2.4, 2.9, 1500], // finds 1500 queued: fits, not above the threshold...
      [0.5, 100, false, true, 2.5, 3.0, 1900], // ...this one finds 1900 > 1500: marked
      [10, 1000, false, false, 11, 11.5, 0], // drained while idle
    ];
    for (const [i, [at, bytes, dropped, marked, departAt, arriveAt, queued]] of table.entries()) {
      assert.ok(
        Math.abs(port.queuedBytes(at) - queued) < 1e-9,
        `row ${i}: queued ${port.queuedBytes(at)}`,
      );
      port.offer(bytes, at, v);
      assert.equal(v.dropped, dropped, `row ${i}: dropped`);
      if (dropped) continue;
      assert.equal(v.marked, marked, `row ${i}: marked`);
      assert.ok(Math.abs(v.departAt - departAt) < 1e-9, `row ${i}: departs ${v.departAt}`);
      assert.ok(Math.abs(v.arriveAt - arriveAt) < 1e-9, `row ${i}: arrives ${v.arriveAt}`);
    }
    const c = port.counters;
    assert.equal(c.packets, 5);
    assert.equal(c.bytes, 3500);
    assert.equal(c.drops, 1);
    assert.equal(c.droppedBytes, 1000);
    assert.equal(c.marks, 1);
    assert.ok(Math.abs(c.queueHighWaterBytes - 2000) < 1e-9, `${c.queueHighWaterBytes}`);
    // 3500 bytes = 28,000 bits on an 8 Mbps line over 7 ms: half busy.
    assert.ok(Math.abs(port.utilization(0.007) - 0.5) < 1e-9);
  });

  it("a back-to-back stream leaves at the line rate, whatever the offered rate", () => {
    const port = new LinkPort({ ...params, bufferBytes: 1e9, ecnThresholdBytes: Infinity });
    const v = newVerdict();
    for (let i = 0; i < 1000; i++) port.offer(1000, i * 0.1, v); // offered at 10x the rate
    assert.ok(Math.abs(v.departAt - 1000) < 1e-6, `last departs at ${v.departAt} ms`);
    assert.equal(port.counters.marks, 0, "no threshold, no marks");
  });

  it("parses rates and durations, and refuses what is not one", () => {
    assert.equal(parseRate("10Gbps"), 1e10);
    assert.equal(parseRate("100Mbps"), 1e8);
    assert.equal(parseRate("1.5kbps"), 1500);
    assert.equal(parseRate("1e9"), 1e9);
    assert.equal(parseRate("fast"), null);
    assert.equal(parseRate("10GB"), null);
    assert.equal(parseDuration("50us"), 0.05);
    assert.equal(parseDuration("2ms"), 2);
    assert.equal(parseDuration("1s"), 1000);
    assert.equal(parseDuration("3"), 3);
    assert.equal(parseDuration("soon"), null);
  });

  it("per-host overrides: the PS, every worker of a job, one worker", () => {
    const links = LinksSchema.parse({
      rate: "100Mbps",
      delay: "1ms",
      buffer: "64KiB",
      parameterServer: { rate: "1Gbps" },
      workers: [
        { job: 2, delay: "5ms" },
        { job: 2, worker: 1, rate: "10Mbps" },
      ],
    });
    assert.deepEqual(linkParamsFor(links, "ps"), {
      rateBitsPerSecond: 1e9,
      delayMs: 1,
      bufferBytes: 65536,
      ecnThresholdBytes: Infinity,
    });
    assert.equal(linkParamsFor(links, { job: 1, worker: 0 }).delayMs, 1);
    assert.equal(linkParamsFor(links, { job: 2, worker: 0 }).delayMs, 5);
    assert.deepEqual(linkParamsFor(links, { job: 2, worker: 1 }), {
      rateBitsPerSecond: 1e7,
      delayMs: 5,
      bufferBytes: 65536,
      ecnThresholdBytes: Infinity,
    });
  });

  it("a switch config refuses bad links, naming the field", () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ rate: 0 }, /links\.rate: not a positive rate: "0"/],
      [{ rate: "-5Mbps" }, /links\.rate: not a positive rate/],
      [
        { rate: "100Mbps", buffer: 500 },
        /links\.buffer: a buffer of 500 bytes cannot hold one packet of 1056 bytes/,
      ],
      [
        { rate: "100Mbps", buffer: "64KiB", ecnThreshold: "128KiB" },
        /links\.ecnThreshold: an ECN threshold of 131072 bytes is above the buffer of 65536/,
      ],
      [
        { rate: "100Mbps", workers: [{ job: 1, worker: 0, buffer: 100 }] },
        /links\.workers\[0\]\.buffer: a buffer of 100 bytes/,
      ],
      [{ rate: "100Mbps", delay: "soon" }, /links\.delay: not a duration: "soon"/],
      [{ delay: "1ms" }, /links\.rate: /],
    ];
    for (const [links, message] of cases) {
      assert.throws(
        () => parseSwitchConfig({ aggregators: 16, links }),
        (error: Error) => error instanceof ConfigError && message.test(error.message),
        JSON.stringify(links),
      );
    }
    const ok = parseSwitchConfig({ aggregators: 16, links: { rate: "100Mbps", delay: "50us" } });
    assert.equal(ok.links?.rate, 1e8);
    assert.equal(ok.links?.delay, 0.05);
  });
});
