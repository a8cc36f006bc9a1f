import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Registry } from "prom-client";
import { LinkPort, newVerdict, portRecord as portRecordOf } from "../link/link.js";
import { ConfigError, parseSwitchConfig } from "../proto/config.js";
import { hostNicParams, LinksSchema, linkParamsFor } from "../proto/links.js";
import { parseDuration, parseRate } from "../proto/units.js";
import { createLinkMetrics } from "../runtime/metrics.js";
import { PacedPort, ReleaseClock } from "../runtime/pacer.js";
import { simulateCores } from "../sim/harness.js";
import { verifyAllReduce } from "../worker/workload.js";
import { testSeed } from "./seed.js";

// 8 Mbps: one byte per microsecond, 1000 bytes per ms, so times read as bytes.
const params = {
  rateBitsPerSecond: 8e6,
  delayMs: 0.5,
  bufferBytes: 2500,
  ecnThresholdBytes: 1500,
  controlPriority: true,
  hostEfficiency: 1,
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

  it("serves packets with no payload first (controlPriority), after the packet on the line", () => {
    const v = newVerdict();
    const run = (controlPriority: boolean) => {
      const port = new LinkPort({
        ...params,
        bufferBytes: 1e9,
        ecnThresholdBytes: 1500,
        controlPriority,
      });
      for (let i = 0; i < 4; i++) port.offer(1000, 0, v); // 4 ms of data queued at 0
      const control = { ...port.offer(32, 0.5, v) }; // an acknowledgement at 0.5
      const after = { ...port.offer(1000, 0.5, v) };
      return { control, after, port };
    };
    const first = run(true);
    // It waits for the packet on the line (until 1 ms), not for the 3 behind it.
    assert.ok(Math.abs(first.control.departAt - 1.032) < 1e-9, `${first.control.departAt}`);
    assert.equal(first.control.marked, false, "it found no queue of its class");
    // Its 32 bytes still take the line's time: data behind leave that much later.
    assert.ok(Math.abs(first.after.departAt - 5.032) < 1e-9, `${first.after.departAt}`);
    assert.equal(first.port.counters.bytes, 5032);
    const fifo = run(false);
    assert.ok(Math.abs(fifo.control.departAt - 4.032) < 1e-9, `FIFO: ${fifo.control.departAt}`);
    assert.equal(fifo.control.marked, true, "FIFO: it found 3500 bytes queued");
    assert.ok(Math.abs(fifo.after.departAt - 5.032) < 1e-9);
    // A second control packet queues behind the first, not beside it.
    const port = new LinkPort({ ...params, bufferBytes: 1e9 });
    port.offer(1000, 0, v);
    port.offer(32, 0, v);
    assert.ok(Math.abs(port.offer(32, 0, v).departAt - 1.064) < 1e-9, `${v.departAt}`);
  });

  it("a paced port sends a control packet at its time, ahead of data parked before it", () => {
    const sent: number[] = [];
    const port = new PacedPort(
      { ...params, delayMs: 0, bufferBytes: 1e9 },
      1056,
      (packet) => {
        sent.push(packet.length);
      },
      new ReleaseClock(),
    );
    for (let i = 0; i < 3; i++) port.send(Buffer.alloc(1000), 1, "127.0.0.1", 0);
    port.send(Buffer.alloc(32), 1, "127.0.0.1", 0);
    port.clock.stop();
    // Due: data at 1, 2, 3 ms; the acknowledgement at 1.032.
    assert.equal(port.release(1.5), 2);
    assert.deepEqual(sent, [1000, 32]);
    assert.equal(port.release(10), Infinity);
    assert.deepEqual(sent, [1000, 32, 1000, 1000]);
  });

  it("a host's efficiency slows its own NIC only (hostNicParams)", () => {
    const links = LinksSchema.parse({
      rate: "100Gbps",
      workers: [{ job: 1, hostEfficiency: 0.25 }],
    });
    const own = linkParamsFor(links, { job: 1, worker: 3 });
    assert.equal(own.rateBitsPerSecond, 100e9, "the switch's port towards it");
    assert.equal(hostNicParams(own).rateBitsPerSecond, 25e9);
    assert.equal(
      hostNicParams(linkParamsFor(links, { job: 2, worker: 0 })).rateBitsPerSecond,
      100e9,
    );
  });

  it("a back-to-back stream leaves at the line rate, whatever the offered rate", () => {
    const port = new LinkPort({ ...params, bufferBytes: 1e9, ecnThresholdBytes: Infinity });
    const v = newVerdict();
    for (let i = 0; i < 1000; i++) port.offer(1000, i * 0.1, v); // offered at 10x the rate
    assert.ok(Math.abs(v.departAt - 1000) < 1e-6, `last departs at ${v.departAt} ms`);
    assert.equal(port.counters.marks, 0, "no threshold, no marks");
  });

  it("measures its queue over time: the time-weighted mean and what the packets found", () => {
    // 8 Mbit/s: 1000 bytes take 1 ms; a big buffer, no marks.
    const params = {
      rateBitsPerSecond: 8e6,
      delayMs: 0,
      bufferBytes: 1e9,
      ecnThresholdBytes: Infinity,
      controlPriority: true,
      hostEfficiency: 1,
    };
    const v = newVerdict();
    // A burst of 100 packets at once: packet i finds i x 1000 bytes; the
    // queue falls from 100 000 bytes to 0 over 100 ms, a mean of 50 000.
    const burst = new LinkPort(params);
    for (let i = 0; i < 100; i++) burst.offer(1000, 0, v);
    const b = burst.queueStats();
    assert.ok(Math.abs(b.meanBytes - 50_000) < 1, `mean ${b.meanBytes}`);
    assert.equal(
      b.p50Bytes,
      65_536,
      "the median packet found 49 000-50 000 bytes: the bin below 2^16",
    );
    assert.equal(b.p99Bytes, 131_072);
    // Paced at half the line rate: nobody waits; each packet is on the line
    // half the time, so the mean is a quarter of a packet (over the busy span).
    const paced = new LinkPort(params);
    for (let i = 0; i < 100; i++) paced.offer(1000, 2 * i, v);
    const q = paced.queueStats();
    assert.equal(q.p50Bytes, 0);
    assert.equal(q.p99Bytes, 0);
    const expected = (100 * 1000 * 1) / 2 / (2 * 99 + 1);
    assert.ok(Math.abs(q.meanBytes - expected) < 1e-6, `mean ${q.meanBytes}, expected ${expected}`);
    assert.deepEqual(
      [q.meanBytes > 0, portRecordOf(paced).queueP99Bytes],
      [true, 0],
      "the record carries them",
    );
  });

  it("keeps the queue over time in buckets that double when the run outgrows them", () => {
    // 1000 bytes per ms, buckets of 1 ms, at most 4 of them.
    const params = {
      rateBitsPerSecond: 8e6,
      delayMs: 0,
      bufferBytes: 1e9,
      ecnThresholdBytes: Infinity,
      controlPriority: true,
      hostEfficiency: 1,
    };
    const port = new LinkPort(params, { firstBucketMs: 1, buckets: 4 });
    const v = newVerdict();
    // 1000 bytes at 0 drain by 1 ms; 2000 at 2.5 drain by 4.5 ms.
    port.offer(1000, 0, v);
    port.offer(2000, 2.5, v);
    assert.equal(port.queueAreaUntil(3), 500 + ((2000 + 1500) / 2) * 0.5, "area until 3 ms");
    assert.equal(port.queueAreaUntil(100), 500 + 2000, "area once drained");
    // 4.5 ms do not fit 4 buckets of 1 ms: width 2. [0,2): area 500, max
    // 1000; [2,4): 2000 -> 500 over 1.5 ms, area 1875, max 2000; [4,4.5):
    // 500 -> 0, area 125 over half a ms.
    assert.deepEqual(port.queueSeries(), {
      bucketMs: 2,
      spanMs: 4.5,
      meanBytes: [250, 938, 250],
      maxBytes: [1000, 2000, 500],
    });
    // Reading the series changed nothing: at 9 ms the drain to 4.5 doubles
    // to 2 ms, and the packet at 9 to 4 ms: [0,4) area 2375 max 2000,
    // [4,8) area 125 max 500, [8,10) area 500 max 1000.
    port.offer(1000, 9, v);
    const series = port.queueSeries();
    assert.deepEqual(series, {
      bucketMs: 4,
      spanMs: 10,
      meanBytes: [594, 31, 250],
      maxBytes: [2000, 500, 1000],
    });
    const lengths = [4, 4, 2];
    const weighted =
      series.meanBytes.reduce((sum, m, k) => sum + m * lengths[k], 0) / series.spanMs;
    assert.ok(Math.abs(weighted - port.queueStats().meanBytes) < 0.5, `${weighted}`);
    assert.equal(port.queueStats().meanBytes, 300, "3000 bytes x ms over 10 ms");
    assert.deepEqual(portRecordOf(port).queueSeries, undefined, "only when asked for");
    assert.deepEqual(portRecordOf(port, { series: true }).queueSeries, series);
    const live = portRecordOf(port, { now: 9.5 });
    assert.deepEqual([live.queueBytes, live.queueAreaByteMs], [500, 2500 + 375]);
  });

  it("a long run's series stays within its buckets and keeps the run's mean", () => {
    const seed = testSeed("link queue series", 25);
    let state = seed;
    const random = () => {
      state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
      return state / 2 ** 32;
    };
    const port = new LinkPort({ ...params, bufferBytes: 50_000, ecnThresholdBytes: Infinity });
    const v = newVerdict();
    let now = 0;
    // 200 000 packets in bursts and gaps: about 100 s at 1000 bytes per ms.
    for (let i = 0; i < 200_000; i++) {
      now += random() < 0.05 ? random() * 20 : random() * 0.8;
      port.offer(500 + Math.floor(random() * 1000), now, v);
    }
    const s = port.queueSeries();
    assert.ok(s.meanBytes.length > 128 && s.meanBytes.length <= 256, `${s.meanBytes.length}`);
    assert.equal(s.maxBytes.length, s.meanBytes.length);
    assert.ok(Number.isInteger(Math.log2(s.bucketMs * 64)), `bucket ${s.bucketMs} ms`);
    let area = 0;
    s.meanBytes.forEach((m, k) => {
      area += m * Math.min(s.bucketMs, s.spanMs - k * s.bucketMs);
    });
    const q = port.queueStats();
    assert.ok(
      Math.abs(area / s.spanMs - q.meanBytes) < 0.5,
      `seed ${seed}: series mean ${area / s.spanMs}, run mean ${q.meanBytes}`,
    );
    assert.equal(Math.max(...s.maxBytes), Math.round(port.counters.queueHighWaterBytes));
    assert.ok(
      s.meanBytes.every((m, k) => m <= s.maxBytes[k]),
      "a mean above its maximum",
    );
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
      controlPriority: true,
      hostEfficiency: 1,
    });
    assert.equal(linkParamsFor(links, { job: 1, worker: 0 }).delayMs, 1);
    assert.equal(linkParamsFor(links, { job: 2, worker: 0 }).delayMs, 5);
    assert.deepEqual(linkParamsFor(links, { job: 2, worker: 1 }), {
      rateBitsPerSecond: 1e7,
      delayMs: 5,
      bufferBytes: 65536,
      ecnThresholdBytes: Infinity,
      controlPriority: true,
      hostEfficiency: 1,
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
      [
        { rate: "100Mbps", hostEfficiency: 0 },
        /links\.hostEfficiency: hostEfficiency must be above 0/,
      ],
      [
        { rate: "100Mbps", workers: [{ job: 1, hostEfficiency: 1.5 }] },
        /links\.workers\[0\]\.hostEfficiency: hostEfficiency is a share of the link's rate: at most 1/,
      ],
      [{ rate: "100Mbps", controlPriority: "yes" }, /links\.controlPriority: /],
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

describe("the programs over emulated links (virtual time)", () => {
  // 8 Mbps: 1000 bytes per ms; a full 256-element packet is 1056 bytes.
  const link = {
    rateBitsPerSecond: 8e6,
    delayMs: 0.5,
    bufferBytes: 64 * 1024,
    ecnThresholdBytes: Infinity,
    controlPriority: true,
    hostEfficiency: 1,
  };

  for (const mode of ["netreduce", "atp", "ps"] as const) {
    it(`${mode}: exact, and each worker's goodput is what the link model predicts`, () => {
      const seed = testSeed(`links ${mode}`, 11);
      const workers = 4;
      const elements = 256 * 200;
      const { jobs, now, ports } = simulateCores({
        jobs: [{ mode, workers, elements, window: 16, elementsPerPacket: 256 }],
        aggregators: 64,
        rates: { drop: 0, duplicate: 0, reorder: 0 },
        seed,
        links: link,
      });
      for (const out of jobs[0].outputs) {
        assert.equal(verifyAllReduce(out, seed, workers, 20).verified, true);
      }
      // Every worker sends 200 packets of 1056 bytes up its own link; the
      // results come down the switch's ports. With a PS, its link carries
      // every worker's packets: N x the bytes, N x the time.
      const onePath = (200 * 1056) / 1000;
      // ATP aggregates most PSNs in the switch, so its PS link carries
      // between one and N times a worker's bytes.
      const [least, most] =
        mode === "netreduce"
          ? [onePath, onePath * 1.15]
          : mode === "ps"
            ? [workers * onePath, workers * onePath * 1.15]
            : [onePath, workers * onePath * 1.15];
      assert.ok(
        now > least && now < most,
        `${mode}: finished at ${now.toFixed(1)} ms; the link model says ${least.toFixed(0)} to ${most.toFixed(0)}`,
      );
      const drops = ports.reduce((n, p) => n + p.counters.drops, 0);
      assert.equal(drops, 0, "a window of 16 fits every buffer");
    });
  }

  it("ECN marks reach every worker through the aggregate; aimd and dctcp back off, none does not", () => {
    const seed = testSeed("links ecn", 12);
    const run = (congestionControl: "none" | "aimd" | "dctcp") =>
      simulateCores({
        jobs: [
          {
            mode: "netreduce",
            workers: 4,
            elements: 256 * 400,
            window: 64,
            elementsPerPacket: 256,
            congestionControl,
          },
        ],
        aggregators: 128,
        rates: { drop: 0, duplicate: 0, reorder: 0 },
        seed,
        links: { ...link, bufferBytes: 48 * 1024, ecnThresholdBytes: 8 * 1024 },
      });
    const outcome = Object.fromEntries(
      (["none", "aimd", "dctcp"] as const).map((cc) => {
        const { jobs, ports } = run(cc);
        for (const out of jobs[0].outputs) {
          assert.equal(verifyAllReduce(out, seed, 4, 20).verified, true, `${cc}: exact`);
        }
        const counters = ports.map((p) => p.counters);
        return [
          cc,
          {
            marked: jobs[0].workers.reduce((n, w) => n + w.stats.ecnMarkedResults, 0),
            window: Math.max(...jobs[0].workers.map((w) => w.window)),
            drops: counters.reduce((n, c) => n + c.drops, 0),
            queue: Math.max(...counters.map((c) => c.queueHighWaterBytes)),
          },
        ];
      }),
    );
    assert.ok(outcome.none.marked > 0, "a window of 64 x 1056 bytes queues past 8 KiB: marked");
    assert.equal(outcome.none.window, 64, "none keeps its window");
    assert.ok(outcome.none.drops > 0, "and overflows a 48 KiB buffer");
    for (const cc of ["aimd", "dctcp"] as const) {
      assert.ok(outcome[cc].window < 64, `${cc} shrank its window: ${outcome[cc].window}`);
      assert.ok(
        outcome[cc].drops < outcome.none.drops,
        `${cc}: ${outcome[cc].drops} drops, none: ${outcome.none.drops}`,
      );
    }
  });
});

describe("link metrics", () => {
  it("every paced port's counters, by far end and direction, read at scrape time", async () => {
    const port = new PacedPort(
      { ...params, delayMs: 0, bufferBytes: 2000, ecnThresholdBytes: 500 },
      1056,
      () => {},
      new ReleaseClock(),
    );
    const registry = new Registry();
    createLinkMetrics(registry, () => [{ host: "ps", direction: "down", record: port.record() }]);
    const packet = Buffer.alloc(1000);
    for (let i = 0; i < 3; i++) port.send(packet, 1, "127.0.0.1", 0);
    port.clock.stop();
    const text = await registry.metrics();
    const value = (name: string) =>
      Number(new RegExp(`^${name}\\{host="ps",direction="down"\\} (\\S+)$`, "m").exec(text)?.[1]);
    assert.equal(value("ina_link_sent_bytes_total"), 2000);
    assert.equal(value("ina_link_sent_packets_total"), 2);
    assert.equal(value("ina_link_drops_total"), 1, "the third finds 2000 bytes queued");
    assert.equal(value("ina_link_ecn_marks_total"), 1, "the second finds 1000 > 500");
    assert.equal(value("ina_link_queue_high_water_bytes"), 2000);
    assert.equal(value("ina_link_rate_bits_per_second"), 8e6);
  });
});
