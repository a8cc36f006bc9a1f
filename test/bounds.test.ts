import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ScenarioRunSchema } from "../proto/scenario.js";
import { DEFAULT_SIM_TIMING, type SimTiming, simulateRun } from "../sim/simulate.js";

/**
 * What limited a run in virtual time (experiment/bounds.ts): one small
 * scenario per label the simulator can give, each limited by that one thing
 * by construction. None is "host" unless a host processing time is modelled.
 */
const scenario = (o: {
  links: { rate: string; delay: string };
  faults?: { loss: number };
  job: Record<string, unknown>;
}) =>
  ScenarioRunSchema.parse({
    name: "bound",
    aggregators: 256,
    ...(o.faults === undefined ? {} : { faults: o.faults }),
    links: o.links,
    jobs: [{ mode: "netreduce", workers: 2, ...o.job }],
  });

function simulated(run: ReturnType<typeof scenario>, timing: Partial<SimTiming> = {}) {
  const result = simulateRun(run, 7, { ...DEFAULT_SIM_TIMING, ...timing });
  assert.equal(result.verified, true, result.error);
  return {
    result,
    why: `${result.bound} in ${result.seconds} s: ${JSON.stringify(result.boundBasis)}`,
  };
}

describe("what bound a run, in virtual time", () => {
  const cases: Array<{
    bound: string;
    what: string;
    run: ReturnType<typeof scenario>;
    timing?: Partial<SimTiming>;
  }> = [
    {
      bound: "link",
      what: "a window above the bandwidth-delay product on a slow link",
      run: scenario({
        links: { rate: "100Mbps", delay: "100us" },
        job: { tensorBytes: "512KiB", window: 64 },
      }),
    },
    {
      bound: "window",
      what: "a window of 4 packets on a 1 ms link",
      run: scenario({
        links: { rate: "1Gbps", delay: "1ms" },
        job: { tensorBytes: "256KiB", window: 4 },
      }),
    },
    {
      bound: "latency",
      what: "all-reduces that fit in one window, over a 1 ms link",
      run: scenario({
        links: { rate: "1Gbps", delay: "1ms" },
        job: { tensorBytes: "16KiB", window: 64, iterations: 10 },
      }),
    },
    {
      bound: "loss",
      what: "1 % loss at the switch on a fast, short link, with a busy host's millisecond waits",
      run: scenario({
        links: { rate: "10Gbps", delay: "5us" },
        faults: { loss: 0.01 },
        job: { tensorBytes: "1MiB", window: 64 },
      }),
      // The path's own waits (microseconds) make the loss cost little: the
      // link bounds such a run (see the loss-100g scenario).
      timing: { rtoFloorMs: 1, gapFloorMs: 2, clockGranularityMs: 1 },
    },
    {
      bound: "switch",
      what: "a 1 ms switch pipeline on a fast, short link",
      run: scenario({
        links: { rate: "10Gbps", delay: "5us" },
        job: { tensorBytes: "256KiB", window: 16 },
      }),
      timing: { switchProcessingNs: 1_000_000 },
    },
    {
      bound: "host",
      what: "a 1 ms host receive time on a fast, short link",
      run: scenario({
        links: { rate: "10Gbps", delay: "5us" },
        job: { tensorBytes: "256KiB", window: 16 },
      }),
      timing: { hostProcessingNs: 1_000_000 },
    },
    {
      bound: "compute",
      what: "50 ms of computation per iteration, a small tensor on a fast link",
      run: scenario({
        links: { rate: "10Gbps", delay: "5us" },
        job: { tensorBytes: "64KiB", window: 64, iterations: 3, computeMs: 50 },
      }),
    },
  ];
  for (const c of cases) {
    it(`${c.bound}: ${c.what}`, () => {
      const { result, why } = simulated(c.run, c.timing);
      if (process.env.BOUNDS_DEBUG) console.log(why);
      assert.equal(result.bound, c.bound, why);
    });
  }

  it("is host when a PS's CPU is busier than anything else: the calibrated PS behind a fast link", () => {
    const run = ScenarioRunSchema.parse({
      name: "ps-cpu",
      links: { rate: "100Gbps", delay: "1us" },
      costs: { parameterServer: { perPacketNs: 2000, perElementNs: 10 } },
      jobs: [{ mode: "ps", workers: 4, tensorBytes: "256KiB", window: 16 }],
    });
    const { result, why } = simulated(run);
    assert.equal(result.bound, "host", why);
    // Virtual time: 4 workers x 256 packets of 256 elements, each 2 us + 2.56 us of the PS's CPU.
    const [top] = result.boundBasis?.bounds ?? [];
    assert.ok(Math.abs(top.seconds - 4 * 256 * 4.56e-6) < 1e-9, `${top.seconds} s`);
  });

  it("is never host without a host processing time or a PS's CPU, whatever the mode, loss or link", () => {
    for (const mode of ["netreduce", "atp", "ps", "ring"] as const) {
      for (const loss of [0, 0.01]) {
        for (const links of [
          { rate: "100Mbps", delay: "100us" },
          { rate: "10Gbps", delay: "5us" },
        ]) {
          const run = ScenarioRunSchema.parse({
            name: mode,
            aggregators: 64,
            faults: { loss },
            links,
            costs: { parameterServer: "none" },
            jobs: [
              { mode, workers: 3, tensorBytes: "128KiB", window: 16 },
              { mode, workers: 2, tensorBytes: "64KiB", window: 8, startMs: 1 },
            ],
          });
          const { result, why } = simulated(run);
          assert.notEqual(result.bound, "host", `${mode}, loss ${loss}, ${links.rate}: ${why}`);
          assert.ok(result.bound !== null, "a run with links has a bound");
        }
      }
    }
    for (const c of cases) {
      if (c.timing?.hostProcessingNs !== undefined) continue;
      assert.notEqual(simulated(c.run, c.timing).result.bound, "host", c.what);
    }
  });
});
