import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import { atpHash, atpIndex } from "../proto/addressing.js";
import { parseSwitchConfig } from "../proto/config.js";
import { DropReason } from "../proto/drops.js";
import { INT32_MAX } from "../proto/fixedpoint.js";
import { Prng } from "../proto/prng.js";
import { DESTINATION_ALL_WORKERS, Flag, PacketType, WORKER_ID_NONE } from "../proto/wire.js";
import { PsCore } from "../ps/core.js";
import { AggregatorState } from "../switch/aggregators.js";
import { ATP_LEASE_MS } from "../switch/atp.js";
import { SwitchCore } from "../switch/core.js";
import { captureTransmit, contribution, decodeSent, packet } from "./packets.js";
import { testSeed } from "./seed.js";

const PS = { host: "127.0.0.1", port: 9000 };
const atpA = { id: 1, mode: "atp" as const, fanIn: 2, offset: 0, regionSize: 4, window: 2 };
const atpB = { id: 2, mode: "atp" as const, fanIn: 2, offset: 0, regionSize: 4, window: 2 };
const netreduce = {
  id: 3,
  mode: "netreduce" as const,
  fanIn: 2,
  offset: 4,
  regionSize: 4,
  window: 2,
};
const psJob = { id: 4, mode: "ps" as const, fanIn: 2, window: 2 };
const portOf = (job: number, w: number) => 5000 + 10 * job + w;

/** The first PSN at or after `from` that job `jobId` hashes to `index` in a 4-aggregator slice. */
function psnAt(jobId: number, index: number, from = 0): number {
  for (let psn = from; psn < from + 10_000; psn++)
    if (atpIndex(jobId, psn, 0, 4) === index) return psn;
  throw new Error("no PSN found");
}

describe("ATP addressing", () => {
  it("matches the test vectors of proto/README.md", () => {
    // Computed independently (Python) from the steps in the spec.
    assert.equal(atpHash(0, 0), 0x11fd02eb);
    assert.equal(atpHash(1, 0), 0xbb2aafde);
    assert.equal(atpHash(1, 1), 0x0dd6b1d3);
    assert.equal(atpHash(7, 123456), 0x4f4e704b);
    assert.equal(atpIndex(7, 123456, 100, 50), 119);
  });

  it("spreads consecutive PSNs of a job over the slice", () => {
    const hits = new Array(64).fill(0);
    for (let psn = 0; psn < 64 * 100; psn++) hits[atpIndex(3, psn, 0, 64)]++;
    assert.ok(Math.min(...hits) > 60 && Math.max(...hits) < 140, `uneven: ${hits}`);
  });
});

describe("ATP program in the switch", () => {
  let capture: ReturnType<typeof captureTransmit>;
  let core: SwitchCore;
  const send = (
    job: { id: number; fanIn: number },
    w: number,
    psn: number,
    values: number[],
    extra = {},
  ) =>
    core.receive(
      contribution({ ...job, offset: 0, regionSize: 4 }, w, psn, values, {
        aggregatorIndex: atpIndex(job.id, psn, 0, 4),
        ...extra,
      }),
      portOf(job.id, w),
      "127.0.0.1",
      0,
    );
  const ack = (
    job: { id: number; fanIn: number },
    psn: number,
    index: number,
    values: number[],
    extra = {},
  ) =>
    core.receive(
      packet(
        {
          type: PacketType.ack,
          jobId: job.id,
          workerId: WORKER_ID_NONE,
          fanIn: job.fanIn,
          psn,
          aggregatorIndex: index,
          bitmap: 0b11,
          scaleBits: 8,
          destination: DESTINATION_ALL_WORKERS,
          ...extra,
        },
        values,
      ),
      PS.port,
      PS.host,
      0,
    );
  const toPs = () => capture.sent.filter((s) => s.port === PS.port);

  beforeEach(() => {
    capture = captureTransmit();
    core = new SwitchCore(
      parseSwitchConfig({
        aggregators: 8,
        elementsPerAggregator: 4,
        jobs: [atpA, atpB, netreduce, psJob],
        parameterServer: PS,
      }),
      capture,
    );
  });

  it("claims, adds, and sends the full aggregate to the PS, not to the workers", () => {
    const index = atpIndex(1, 0, 0, 4);
    send(atpA, 0, 0, [1, 2]);
    assert.equal(core.aggregators.state[index], AggregatorState.partial);
    assert.equal(core.aggregators.jobId[index], 1);
    send(atpA, 1, 0, [10, 20]);
    assert.equal(capture.sent.length, 1);
    const [aggregate] = toPs();
    assert.deepEqual(aggregate.values, [11, 22]);
    assert.equal(aggregate.header.type, PacketType.contribution);
    assert.equal(aggregate.header.workerId, WORKER_ID_NONE);
    assert.equal(aggregate.header.bitmap, 0b11);
    assert.equal(aggregate.header.aggregatorIndex, index);
    assert.equal(aggregate.header.flags, Flag.toPs);
    assert.equal(core.aggregators.state[index], AggregatorState.complete, "held until the ack");
    assert.equal(core.job(1)?.counters.aggregationsCompleted, 1);
  });

  it("releases the aggregator on the PS's ack and multicasts the ack to the job's workers", () => {
    const index = atpIndex(1, 0, 0, 4);
    send(atpA, 0, 0, [1]);
    send(atpA, 1, 0, [2]);
    capture.sent.length = 0;
    ack(atpA, 0, index, [3]);
    assert.equal(core.aggregators.state[index], AggregatorState.empty);
    assert.deepEqual(capture.sent.map((s) => s.port).sort(), [portOf(1, 0), portOf(1, 1)]);
    assert.equal(capture.sent[0].header.type, PacketType.ack);
    assert.deepEqual(capture.sent[0].values, [3]);
    assert.equal(core.job(1)?.counters.releases, 1);
  });

  it("an ack whose (job, PSN) the aggregator no longer holds releases nothing", () => {
    const index = atpIndex(1, 0, 0, 4);
    send(atpA, 0, 0, [1]);
    ack(atpA, 4, index, [0]); // another PSN of the same job
    ack(atpB, 0, index, [0]); // the same PSN of another job
    assert.equal(core.aggregators.state[index], AggregatorState.partial);
    assert.equal(core.job(1)?.counters.acksWithoutMatch, 1);
    assert.equal(core.job(2)?.counters.acksWithoutMatch, 1);
  });

  it("an ack for a worker not yet heard from, or outside the array, is dropped before it releases", () => {
    const index = atpIndex(1, 0, 0, 4);
    send(atpA, 0, 0, [1]);
    send(atpA, 1, 0, [2]);
    capture.sent.length = 0;
    ack(atpA, 0, index, [3], { destination: 1 }); // worker 1 is known: delivered
    assert.equal(capture.sent.length, 1);
    ack(atpB, 0, index, [3], { destination: 1 }); // job B's worker 1 never sent
    ack(atpA, 0, 999, [3]);
    assert.equal(core.stats.drops[DropReason.unknownDestination], 1);
    assert.equal(core.stats.drops[DropReason.badIndex], 1);
    assert.equal(capture.sent.length, 1);
  });

  it("drops an ack that does not come from the parameter server", () => {
    send(atpA, 0, 0, [1]);
    send(atpA, 1, 0, [2]);
    const index = atpIndex(1, 0, 0, 4);
    core.receive(
      packet(
        {
          type: PacketType.ack,
          jobId: 1,
          fanIn: 2,
          workerId: WORKER_ID_NONE,
          psn: 0,
          aggregatorIndex: index,
          destination: DESTINATION_ALL_WORKERS,
        },
        [3],
      ),
      portOf(1, 0),
      "127.0.0.1",
      0,
    );
    assert.equal(core.stats.drops[DropReason.notFromParameterServer], 1);
    assert.equal(core.aggregators.state[index], AggregatorState.complete);
  });

  it("passes a colliding contribution through to the PS unchanged, with the collision flag", () => {
    const index = atpIndex(1, 0, 0, 4);
    const psnB = psnAt(2, index);
    send(atpA, 0, 0, [5]);
    send(atpB, 1, psnB, [7, 8]);
    const [passed] = toPs();
    assert.equal(passed.header.jobId, 2);
    assert.equal(passed.header.workerId, 1);
    assert.equal(passed.header.psn, psnB);
    assert.deepEqual(passed.values, [7, 8]);
    assert.equal(passed.header.flags, Flag.toPs | Flag.collision);
    assert.equal(core.job(2)?.counters.collisions, 1);
    assert.equal(core.job(2)?.counters.fallbacks, 1);
    // job A's partial is untouched
    send(atpA, 1, 0, [6]);
    assert.deepEqual(toPs()[1].values, [11]);
  });

  it("sends the rest of a PSN that collided to the PS, even once its aggregator is free", () => {
    const index = atpIndex(1, 0, 0, 4);
    const psnB = psnAt(2, index);
    send(atpA, 0, 0, [5]);
    send(atpB, 0, psnB, [7]); // collides: B's worker 0 is at the PS now
    send(atpA, 1, 0, [6]); // A completes, goes to the PS, whose ack frees the aggregator
    ack(atpA, 0, index, [11]);
    assert.equal(core.aggregators.state[index], AggregatorState.empty);
    capture.sent.length = 0;
    send(atpB, 1, psnB, [8]);
    // Claiming it would split psnB: worker 0 at the PS, worker 1 here, complete nowhere.
    const [followed] = toPs();
    assert.equal(followed.header.workerId, 1);
    assert.deepEqual(followed.values, [8]);
    assert.equal(followed.header.flags, Flag.toPs, "no collision: the aggregator was free");
    assert.equal(core.aggregators.state[index], AggregatorState.fallback);
    assert.equal(core.aggregators.jobId[index], 2);
    assert.equal(core.job(2)?.counters.fallbacks, 2);
    // The PS's ack for psnB frees it.
    ack(atpB, psnB, index, [15]);
    assert.equal(core.aggregators.state[index], AggregatorState.empty);
  });

  it("no tenant pins the pool: another job's claim past its lease is taken back, its partial sent to the PS first", () => {
    const index = atpIndex(1, 0, 0, 4);
    const psnB = psnAt(2, index);
    const at = (
      job: { id: number; fanIn: number },
      w: number,
      psn: number,
      v: number[],
      t: number,
    ) =>
      core.receive(
        contribution({ ...job, offset: 0, regionSize: 4 }, w, psn, v, {
          aggregatorIndex: atpIndex(job.id, psn, 0, 4),
        }),
        portOf(job.id, w),
        "127.0.0.1",
        t,
      );
    at(atpA, 0, 0, [5], 0); // job A claims, and never completes PSN 0
    at(atpB, 0, psnB, [7], 500); // within the lease: a collision
    assert.equal(core.job(2)?.counters.collisions, 1);
    capture.sent.length = 0;
    at(atpB, 1, psnB, [8], ATP_LEASE_MS + 10); // past it: B takes the aggregator back
    const [evicted] = toPs();
    assert.equal(evicted.header.jobId, 1, "A's partial goes to the PS first");
    assert.equal(evicted.header.workerId, WORKER_ID_NONE);
    assert.equal(evicted.header.bitmap, 0b01);
    assert.deepEqual(evicted.values, [5]);
    assert.equal(evicted.header.flags & Flag.resend, Flag.resend);
    assert.equal(core.aggregators.jobId[index], 2, "B holds it now");
    // B's worker 0 reached the PS through the collision: its worker 1 follows
    // it there (fallback), so PSN psnB cannot split between switch and PS.
    assert.equal(core.aggregators.state[index], AggregatorState.fallback);
    const followed = toPs().at(-1);
    assert.equal(followed?.header.jobId, 2);
    assert.equal(followed?.header.workerId, 1);
    assert.deepEqual(followed?.values, [8]);
    assert.equal(core.job(2)?.counters.leaseReclaims, 1);
    // A's next contribution for PSN 0 now collides and goes to the PS, where
    // it meets A's evicted partial.
    at(atpA, 1, 0, [6], ATP_LEASE_MS + 20);
    assert.equal(toPs().at(-1)?.header.flags, Flag.toPs | Flag.collision);
  });

  it("a job at its quota of the shared pool sends the rest to the PS, leaving the pool to others", () => {
    core = new SwitchCore(
      parseSwitchConfig({
        aggregators: 8,
        elementsPerAggregator: 4,
        // A window wide enough for the PSNs that hash where this test needs them.
        jobs: [
          { ...atpA, quota: 1, window: 64 },
          { ...atpB, window: 64 },
        ],
        parameterServer: PS,
      }),
      capture,
    );
    const first = psnAt(1, 0);
    const second = psnAt(1, 1);
    send(atpA, 0, first, [1]); // A holds one aggregator: its quota
    assert.equal(core.aggregators.heldBy[1], 1);
    send(atpA, 0, second, [2]); // a second would exceed it
    const passed = toPs().at(-1);
    assert.equal(passed?.header.jobId, 1);
    assert.equal(passed?.header.psn, second);
    assert.equal(passed?.header.flags, Flag.toPs, "not a collision: over quota");
    assert.equal(core.job(1)?.counters.overQuota, 1);
    assert.equal(core.aggregators.state[1], AggregatorState.empty, "left to others");
    send(atpB, 0, psnAt(2, 1), [5]);
    assert.equal(core.aggregators.jobId[1], 2, "B takes it");
    // When A's aggregate is acked and released, A may claim again.
    send(atpA, 1, first, [1]);
    ack(atpA, first, 0, [2]);
    assert.equal(core.aggregators.heldBy[1], 0);
    send(atpA, 0, psnAt(1, 2, second + 1), [3]);
    assert.equal(core.aggregators.heldBy[1], 1);
  });

  it("a resend that finds its own partial evicts it to the PS and holds the PSN in fallback", () => {
    const index = atpIndex(1, 0, 0, 4);
    send(atpA, 0, 0, [5]);
    send(atpA, 0, 0, [5], { flags: Flag.resend });
    const [partial, resend] = toPs();
    assert.equal(partial.header.workerId, WORKER_ID_NONE);
    assert.equal(partial.header.bitmap, 0b01);
    assert.deepEqual(partial.values, [5]);
    assert.equal(partial.header.flags & Flag.toPs, Flag.toPs);
    assert.equal(resend.header.workerId, 0);
    assert.equal(core.aggregators.state[index], AggregatorState.fallback);
    // worker 1's first send is not aggregated here any more: the PS finishes the PSN
    send(atpA, 1, 0, [6]);
    assert.equal(toPs()[2].header.workerId, 1);
    assert.equal(core.job(1)?.counters.evictions, 1);
    assert.equal(core.job(1)?.counters.fallbacks, 3);
    ack(atpA, 0, index, [11]);
    assert.equal(core.aggregators.state[index], AggregatorState.empty);
  });

  it("a resend after completion sends the held aggregate to the PS again", () => {
    send(atpA, 0, 0, [1]);
    send(atpA, 1, 0, [2]);
    send(atpA, 1, 0, [2]); // a plain duplicate: dropped
    assert.equal(core.stats.drops[DropReason.duplicate], 1);
    send(atpA, 1, 0, [2], { flags: Flag.resend });
    const sent = toPs();
    assert.equal(sent.length, 2);
    assert.deepEqual(sent[1].values, [3]);
    assert.equal(sent[1].header.flags & Flag.resend, Flag.resend);
  });

  it("a sum that would overflow int32 goes to the PS unsaturated instead", () => {
    const index = atpIndex(1, 0, 0, 4);
    send(atpA, 0, 0, [INT32_MAX, -5]);
    send(atpA, 1, 0, [1, 5]);
    const [partial, passed] = toPs();
    assert.deepEqual(partial.values, [INT32_MAX, -5], "the partial is restored, not saturated");
    assert.deepEqual(passed.values, [1, 5]);
    assert.equal(core.aggregators.state[index], AggregatorState.fallback);
    assert.equal(core.job(1)?.counters.overflowFallbacks, 1);
  });

  it("each ATP job sharing a slice gets its fair share as its quota by default; alone, none; its own quota stands", () => {
    assert.equal(core.job(1)?.quota, 2, "A and B share 4 aggregators");
    assert.equal(core.job(2)?.quota, 2);
    core.removeJob(2);
    assert.equal(core.job(1)?.quota, 0, "alone: the whole slice");
    const own = new SwitchCore(
      parseSwitchConfig({
        aggregators: 8,
        jobs: [{ ...atpA, quota: 3 }, atpB, { ...atpB, id: 5 }],
        parameterServer: PS,
      }),
      captureTransmit(),
    );
    assert.equal(own.job(1)?.quota, 3);
    assert.equal(own.job(2)?.quota, 1, "4 aggregators over 3 jobs");
  });

  it("a contribution beyond the window of what the switch has seen acked is dropped before it claims or reaches the PS", () => {
    // Worker 0 of job A floods PSNs 2.. (window 2) while worker 1 sends nothing.
    for (let psn = 2; psn < 50; psn++) send(atpA, 0, psn, [1]);
    assert.equal(core.stats.drops[DropReason.windowViolation], 48);
    assert.equal(core.aggregators.heldBy[1], 0, "nothing claimed");
    assert.equal(toPs().length, 0, "nothing sent on");
    // PSNs 0 and 1, then their acks: PSNs 2 and 3 are in the window now.
    for (const psn of [0, 1]) {
      send(atpA, 0, psn, [1]);
      send(atpA, 1, psn, [1]);
      ack(atpA, psn, atpIndex(1, psn, 0, 4), [2]);
    }
    send(atpA, 0, 3, [1]);
    assert.equal(core.stats.drops[DropReason.windowViolation], 48);
    send(atpA, 0, 4, [1]);
    assert.equal(core.stats.drops[DropReason.windowViolation], 49);
  });

  it("a job installed again with its PSNs under way: once every worker has sent, the window follows them; one worker alone cannot move it", () => {
    for (const psn of [1000, 1001]) send(atpA, 0, psn, [1]);
    assert.equal(core.stats.drops[DropReason.windowViolation], 2, "worker 1 has sent nothing yet");
    // Worker 1 sends PSN 1000: each has sent 1000 or later, so every PSN up
    // to 998 was acked, and 999 and 1000 are in the window.
    send(atpA, 1, 1000, [1]);
    assert.equal(core.stats.drops[DropReason.windowViolation], 2);
    send(atpA, 0, 1000, [1], { flags: Flag.resend });
    assert.ok(
      toPs().some((s) => s.header.psn === 1000),
      "PSN 1000 complete, on to the PS",
    );
    send(atpA, 1, 1001, [1]);
    send(atpA, 0, 1001, [1], { flags: Flag.resend });
    assert.equal(core.stats.drops[DropReason.windowViolation], 2);
    assert.ok(toPs().some((s) => s.header.psn === 1001));
  });

  it("frees an aggregator its own job left stale a window ago", () => {
    const index = atpIndex(1, 0, 0, 4);
    send(atpA, 0, 0, [1]);
    send(atpA, 1, 0, [1]);
    ack(atpA, 0, index, [2]);
    assert.equal(core.aggregators.state[index], AggregatorState.empty, "released");
    // A late duplicate of worker 0's PSN 0 claims it again, after its ack.
    send(atpA, 0, 0, [1]);
    assert.equal(core.aggregators.psn[index], 0);
    // Every PSN up to `later` - window has its ack since: the workers may send `later`.
    const later = psnAt(1, index, atpA.window);
    for (let q = 1; q <= later - atpA.window; q++) ack(atpA, q, atpIndex(1, q, 0, 4), [0]);
    send(atpA, 0, later, [2]);
    assert.equal(core.aggregators.psn[index], later);
    assert.equal(core.job(1)?.counters.staleFreed, 1);
  });

  it("drops packets of an unknown job, an index outside the slice or an ungranted fan-in, and other jobs go on", () => {
    send({ id: 99, fanIn: 2 }, 0, 0, [1]);
    send(atpA, 0, 0, [1], { aggregatorIndex: 4 });
    send({ id: 1, fanIn: 3 }, 0, 0, [1]);
    assert.equal(core.stats.drops[DropReason.unknownJob], 1);
    assert.equal(core.stats.drops[DropReason.badIndex], 1);
    assert.equal(core.stats.drops[DropReason.fanInMismatch], 1);
    assert.equal(capture.sent.length, 0);
    send(atpA, 0, 0, [1]);
    send(atpA, 1, 0, [2]);
    assert.deepEqual(toPs()[0].values, [3]);
    const nr = (w: number) =>
      core.receive(contribution(netreduce, w, 0, [w + 1]), portOf(3, w), "127.0.0.1", 0);
    nr(0);
    nr(1);
    assert.deepEqual(
      capture.sent.filter((s) => s.header.jobId === 3).map((s) => s.values[0]),
      [3, 3],
    );
  });

  it("PS mode: forwards every contribution to the PS and multicasts its ack", () => {
    for (const w of [0, 1]) {
      core.receive(
        contribution({ ...psJob, offset: 0, regionSize: 1 }, w, 0, [w + 1], { aggregatorIndex: 0 }),
        portOf(4, w),
        "127.0.0.1",
        0,
      );
    }
    assert.deepEqual(
      toPs().map((s) => [s.header.workerId, s.header.flags]),
      [
        [0, Flag.toPs],
        [1, Flag.toPs],
      ],
    );
    ack(psJob, 0, 0, [3]);
    assert.deepEqual(
      capture.sent
        .filter((s) => s.header.type === PacketType.ack)
        .map((s) => s.port)
        .sort(),
      [portOf(4, 0), portOf(4, 1)],
    );
    assert.equal(core.stats.aggregationsCompleted, 0, "the switch aggregates nothing");
  });
});

/**
 * ESA's preemption (atpPool "esa"), with a real PS in the loop so sums are
 * checked where they end: job A (small: few bytes left) outranks job B.
 */
describe("ATP esa pool: preemption by priority", () => {
  const SWITCH_PORT = 7000;
  const A = { ...atpA, fanIn: 3, window: 64, totalBytes: 4 * 16 };
  const B = { ...atpB, fanIn: 3, window: 64, totalBytes: 1 << 20 };
  let sw: SwitchCore;
  let ps: PsCore;
  /** acks each worker got: "job/psn" -> values */
  let results: Map<string, number[]>;
  let queue: Array<{ bytes: Buffer; port: number; toPs: boolean }>;
  const build = (
    pool: "esa" | "firstCome" | "fairShare",
    jobs: Array<typeof atpA & { totalBytes?: number }> = [A, B],
  ) => {
    queue = [];
    results = new Map();
    sw = new SwitchCore(
      parseSwitchConfig({
        aggregators: 8,
        elementsPerAggregator: 4,
        atpPool: pool,
        jobs,
        parameterServer: PS,
      }),
      {
        send: (b, port) => {
          if (port === PS.port) queue.push({ bytes: Buffer.from(b), port, toPs: true });
          else {
            const s = decodeSent(Buffer.from(b), port, "");
            if (s.header.type === PacketType.ack) {
              results.set(`${s.header.jobId}/${s.header.psn}/${port}`, s.values);
            }
          }
        },
      },
    );
    ps = new PsCore(jobs, 4, {
      send: (b) => queue.push({ bytes: Buffer.from(b), port: PS.port, toPs: false }),
    });
    ps.trustSwitch(SWITCH_PORT, "127.0.0.1");
  };
  /** Delivers what is in flight between the switch and the PS, until nothing is. */
  const settle = () => {
    while (queue.length > 0) {
      const next = queue.shift() as { bytes: Buffer; toPs: boolean };
      if (next.toPs) ps.receive(next.bytes, SWITCH_PORT, "127.0.0.1", 0);
      else sw.receive(next.bytes, PS.port, PS.host, 0);
    }
  };
  const send = (
    job: { id: number; fanIn: number },
    w: number,
    psn: number,
    values: number[],
    extra = {},
  ) =>
    sw.receive(
      contribution({ ...job, offset: 0, regionSize: 4 }, w, psn, values, {
        aggregatorIndex: atpIndex(job.id, psn, 0, 4),
        ...extra,
      }),
      portOf(job.id, w),
      "127.0.0.1",
      0,
    );
  /** The sum every worker of `job` got for `psn` (asserting they agree), or undefined. */
  const result = (job: { id: number; fanIn: number }, psn: number) => {
    const got = Array.from({ length: job.fanIn }, (_, w) =>
      results.get(`${job.id}/${psn}/${portOf(job.id, w)}`),
    );
    for (const g of got) assert.deepEqual(g, got[0], `job ${job.id} PSN ${psn}: workers disagree`);
    return got[0];
  };
  const index = atpIndex(2, 0, 0, 4);
  const psnA = psnAt(1, index);

  it("a first send of a job with fewer bytes left takes another job's partial: the partial goes to the PS, whose sums stay exact", () => {
    build("esa");
    send(B, 0, 0, [1, 2]);
    send(B, 1, 0, [10, 20]);
    // A outranks B: B's partial of workers 0 and 1 goes to the PS, A claims.
    send(A, 0, psnA, [100, 200]);
    assert.equal(sw.stats.preemptions, 1);
    assert.equal(sw.job(1)?.counters.preemptions, 1);
    assert.equal(sw.job(2)?.counters.preempted, 1);
    assert.equal(sw.aggregators.jobId[index], 1);
    assert.equal(sw.aggregators.state[index], AggregatorState.partial);
    const [evicted] = queue.map((q) => decodeSent(q.bytes, q.port, ""));
    assert.equal(evicted.header.jobId, 2);
    assert.equal(evicted.header.bitmap, 0b011);
    assert.deepEqual(evicted.values, [11, 22]);
    settle();
    // B's last worker collides with A's claim and goes to the PS, which completes PSN 0.
    send(B, 2, 0, [1000, 2000]);
    settle();
    assert.deepEqual(result(B, 0), [1011, 2022]);
    assert.equal(sw.aggregators.jobId[index], 1, "B's ack releases nothing of A's");
    send(A, 1, psnA, [300, 400]);
    send(A, 2, psnA, [500, 600]);
    settle();
    assert.deepEqual(result(A, psnA), [900, 1200]);
    assert.equal(sw.aggregators.state[index], AggregatorState.empty, "A's ack frees it");
    assert.equal(sw.job(1)?.counters.aggregationsCompleted, 1, "A aggregated in the switch");
  });

  it("the preempted PSN's later contributions follow it to the PS, even once the aggregator is free again", () => {
    build("esa");
    send(B, 0, 0, [1]);
    send(A, 0, psnA, [100]);
    send(A, 1, psnA, [200]);
    send(A, 2, psnA, [300]);
    settle(); // A completes and its ack frees the aggregator
    assert.deepEqual(result(A, psnA), [600]);
    assert.equal(sw.aggregators.state[index], AggregatorState.empty);
    // B's workers 1 and 2 must not start a new partial: worker 0 is at the PS.
    send(B, 1, 0, [10]);
    assert.equal(sw.aggregators.state[index], AggregatorState.fallback);
    send(B, 2, 0, [1000]);
    settle();
    assert.deepEqual(result(B, 0), [1011]);
    assert.equal(sw.aggregators.state[index], AggregatorState.empty);
  });

  it("a complete aggregate waiting for the PS's ack is taken at once; the holder's result still comes from the PS, and a lost aggregate from its workers' resends", () => {
    build("esa");
    for (const w of [0, 1, 2]) send(B, w, 0, [w + 1]);
    assert.equal(sw.aggregators.state[index], AggregatorState.complete);
    // The aggregate is on its way to the PS: lost, here.
    assert.equal(queue.length, 1);
    queue.length = 0;
    send(A, 0, psnA, [100]);
    assert.equal(sw.aggregators.jobId[index], 1, "A holds it before B's ack");
    assert.equal(queue.length, 0, "nothing to send: the aggregate went already");
    assert.equal(sw.job(2)?.counters.preempted, 1);
    // B's workers time out and resend their own values: through to the PS.
    for (const w of [0, 1, 2]) send(B, w, 0, [w + 1], { flags: Flag.resend });
    settle();
    assert.deepEqual(result(B, 0), [6]);
    assert.equal(sw.aggregators.jobId[index], 1, "B's ack releases nothing of A's");
    // A late duplicate of B's first send goes to the PS once A's ack freed it (pending tag).
    send(A, 1, psnA, [200]);
    send(A, 2, psnA, [300]);
    settle();
    assert.deepEqual(result(A, psnA), [600]);
    send(B, 1, 0, [2]);
    assert.notEqual(sw.aggregators.state[index], AggregatorState.partial);
  });

  it("resends and duplicates after a preemption count each worker once", () => {
    build("esa");
    send(B, 0, 0, [1]);
    send(B, 1, 0, [10]);
    send(A, 0, psnA, [100]);
    settle();
    // B's worker 0 resends (it has no result): through to the PS, which has it already.
    send(B, 0, 0, [1], { flags: Flag.resend });
    send(B, 1, 0, [10]); // a late duplicate of a first send
    send(B, 2, 0, [1000]);
    send(B, 2, 0, [1000], { flags: Flag.resend });
    settle();
    assert.deepEqual(result(B, 0), [1011]);
    assert.equal(sw.aggregators.jobId[index], 1, "a resend never preempts");
    send(A, 1, psnA, [200]);
    send(A, 1, psnA, [200]); // duplicate: dropped by the bitmap
    send(A, 2, psnA, [300]);
    settle();
    assert.deepEqual(result(A, psnA), [600]);
  });

  it("no preemption by a job that does not outrank the holder, by a resend, or in the other pools", () => {
    build("esa");
    send(A, 0, psnA, [100]);
    send(B, 0, 0, [1]); // B has more left: a collision, not a preemption
    assert.equal(sw.aggregators.jobId[index], 1);
    assert.equal(sw.job(2)?.counters.collisions, 1);
    assert.equal(sw.stats.preemptions, 0);

    build("esa");
    send(B, 0, 0, [1]);
    send(A, 0, psnA, [100], { flags: Flag.resend });
    assert.equal(sw.aggregators.jobId[index], 2, "a resend goes to the PS, B keeps it");

    for (const pool of ["firstCome", "fairShare"] as const) {
      build(pool);
      send(B, 0, 0, [1]);
      send(A, 0, psnA, [100]);
      assert.equal(sw.aggregators.jobId[index], 2, `${pool}: first come keeps it`);
      assert.equal(sw.stats.preemptions, 0);
    }
  });

  it("ranks by bytes left, with a window of hysteresis; a job of unknown size behind the known", () => {
    // Both sizes known and within one window of each other: no preemption.
    build("esa", [
      { ...A, totalBytes: 1 << 20 },
      { ...B, totalBytes: (1 << 20) + 64 * 16 * 3 - 4 },
    ]);
    send(B, 0, 0, [1]);
    send(A, 0, psnA, [100]);
    assert.equal(sw.stats.preemptions, 0);
    // B of unknown size: A, of known size, outranks it.
    const { totalBytes: _, ...unsized } = B;
    build("esa", [A, unsized]);
    send(B, 0, 0, [1]);
    send(A, 0, psnA, [100]);
    assert.equal(sw.stats.preemptions, 1);
  });

  it("firstCome and esa pools give no quota; fairShare splits the slice", () => {
    build("fairShare");
    assert.equal(sw.job(1)?.quota, 2);
    build("firstCome");
    assert.equal(sw.job(1)?.quota, 0);
    build("esa");
    assert.equal(sw.job(2)?.quota, 0);
    sw.setAtpPool("fairShare");
    assert.equal(sw.job(2)?.quota, 2);
  });
});

/**
 * Adversarial delivery: three jobs of different sizes in an esa pool of 4
 * aggregators (far fewer than their windows), every packet between workers,
 * switch and PS delivered in random order, some lost, some duplicated;
 * workers resend what they lack when the network falls quiet. Every worker
 * must get every PSN's exact sum, and only it.
 */
describe("ATP esa pool under random loss, duplication and reordering", () => {
  for (const pool of ["esa", "firstCome"] as const) {
    it(`${pool}: every PSN of every job completes with its exact sum`, () => {
      const seed = testSeed(`atp ${pool} random delivery`, 25);
      const rng = new Prng(seed);
      const SWITCH_PORT = 7000;
      const PSNS = 40;
      const WINDOW = 4;
      const jobs = [
        { id: 1, fanIn: 3, totalBytes: 3 * PSNS * 8 },
        { id: 2, fanIn: 2, totalBytes: 2 * PSNS * 8 * 4 },
        { id: 3, fanIn: 4, totalBytes: 4 * PSNS * 8 * 2 },
      ].map((j) => ({ ...j, mode: "atp" as const, offset: 0, regionSize: 4, window: WINDOW }));
      const value = (job: number, w: number, psn: number, e: number) =>
        (job * 7919 + w * 104729 + psn * 31 + e * 1_000_003) % 2_000_000;
      type Flight = { bytes: Buffer; to: "switch" | "ps" | "worker"; from: number; port: number };
      const flights: Flight[] = [];
      const sw = new SwitchCore(
        parseSwitchConfig({
          aggregators: 4,
          elementsPerAggregator: 2,
          atpPool: pool,
          jobs,
          parameterServer: PS,
        }),
        {
          send: (b, port) =>
            flights.push({
              bytes: Buffer.from(b),
              to: port === PS.port ? "ps" : "worker",
              from: SWITCH_PORT,
              port,
            }),
        },
      );
      const ps = new PsCore(jobs, 2, {
        send: (b) =>
          flights.push({ bytes: Buffer.from(b), to: "switch", from: PS.port, port: SWITCH_PORT }),
      });
      ps.trustSwitch(SWITCH_PORT, "127.0.0.1");
      const workers = jobs.flatMap((job) =>
        Array.from({ length: job.fanIn }, (_, w) => ({
          job,
          w,
          port: portOf(job.id, w),
          next: 0,
          results: new Map<number, number[]>(),
        })),
      );
      const byPort = new Map(workers.map((x) => [x.port, x]));
      const sendFrom = (x: (typeof workers)[number], psn: number, resend: boolean) =>
        flights.push({
          bytes: contribution(
            { ...x.job },
            x.w,
            psn,
            [value(x.job.id, x.w, psn, 0), value(x.job.id, x.job.fanIn, psn, 1) + x.w],
            {
              aggregatorIndex: atpIndex(x.job.id, psn, 0, 4),
              ...(resend ? { flags: Flag.resend } : {}),
            },
          ),
          to: "switch",
          from: x.port,
          port: SWITCH_PORT,
        });
      /** A worker sends every PSN its window allows: p once it has every result up to p - W. */
      const advance = (x: (typeof workers)[number]) => {
        while (x.next < PSNS && (x.next < WINDOW || x.results.has(x.next - WINDOW))) {
          for (let q = 0; q < x.next - WINDOW; q++) assert.ok(x.results.has(q));
          sendFrom(x, x.next++, false);
        }
      };
      const exact = (job: (typeof jobs)[number], psn: number) => {
        let a = 0;
        let b = 0;
        for (let w = 0; w < job.fanIn; w++) {
          a += value(job.id, w, psn, 0);
          b += value(job.id, job.fanIn, psn, 1) + w;
        }
        return [a, b];
      };
      for (const x of workers) advance(x);
      let now = 0;
      let quiet = 0;
      for (let step = 0; step < 200_000; step++) {
        if (workers.every((x) => x.results.size === PSNS)) break;
        if (flights.length === 0) {
          // The network fell quiet: each worker resends what it sent and lacks (its timeout).
          quiet++;
          for (const x of workers) {
            for (let p = 0; p < x.next; p++) if (!x.results.has(p)) sendFrom(x, p, true);
          }
          continue;
        }
        now += 0.01;
        const [f] = flights.splice(Math.floor(rng.nextFloat() * flights.length), 1);
        const fate = rng.nextFloat();
        if (fate < 0.05) continue; // lost
        if (fate < 0.1) flights.push({ ...f, bytes: Buffer.from(f.bytes) }); // duplicated
        if (f.to === "switch") sw.receive(f.bytes, f.from, "127.0.0.1", now);
        else if (f.to === "ps") ps.receive(f.bytes, SWITCH_PORT, "127.0.0.1", now);
        else {
          const x = byPort.get(f.port);
          const s = decodeSent(f.bytes, f.port, "");
          assert.ok(x !== undefined && s.header.type === PacketType.ack);
          assert.deepEqual(
            s.values,
            exact(x.job, s.header.psn),
            `seed ${seed}: job ${x.job.id} PSN ${s.header.psn}`,
          );
          x.results.set(s.header.psn, s.values);
          advance(x);
        }
      }
      for (const x of workers) {
        assert.equal(
          x.results.size,
          PSNS,
          `seed ${seed}: job ${x.job.id} worker ${x.w} unfinished`,
        );
      }
      if (pool === "esa") assert.ok(sw.stats.preemptions > 0, `seed ${seed}: no preemption`);
      else assert.equal(sw.stats.preemptions, 0);
      assert.ok(quiet < 200, `seed ${seed}: ${quiet} timeouts`);
    });
  }
});
