import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  dodgedX,
  isPowerOfTwoSweep,
  jctRows,
  renderFigure,
  runFigures,
  scheduleFigures,
} from "../experiment/figures.js";
import { parseProcStat, sampleHostLoad, stealBetween } from "../experiment/host-load.js";
import { hostWarnings, type ResultsFile, writeReport } from "../experiment/report-page.js";
import { linkSeries } from "../experiment/results.js";
import {
  failedPolicy,
  type JobView,
  jobTiming,
  type PolicyResult,
  parseScheduleScenario,
  scheduledJobResult,
} from "../experiment/schedule.js";
import type { PointStatistics } from "../experiment/sweep.js";
import { summarize } from "../experiment/sweep.js";
import { formatScheduleTable } from "../experiment/table.js";
import { launchChromium } from "./browser.js";

/** A small results file: an ATP pool swept over 3 sizes, 3 repetitions each. */
function sweptResults(): ResultsFile {
  const points: PointStatistics[] = [16, 64, 256].flatMap((aggregators, i) =>
    ["atp-1", "atp-2"].map((job) => ({
      point: `pool[aggregators=${aggregators}]`,
      run: "pool",
      values: { aggregators },
      job,
      mode: "atp",
      repetitions: 3,
      failed: 0,
      hostBound: 0,
      seconds: summarize([0.3 + i * 0.01, 0.31, 0.33]),
      goodputMBps: summarize([20 + i, 22 + i, 21 + i]),
      retransmissions: summarize([10, 12, 11]),
      fallbackFraction: summarize([0.9 - 0.3 * i, 0.88 - 0.3 * i, 0.91 - 0.3 * i]),
      iterationSeconds: summarize([0.3, 0.31]),
    })),
  );
  return {
    scenario: "atp-pool",
    description: "a test's results",
    seed: 3,
    verified: true,
    provenance: { commit: "abc", node: process.version },
    runs: [],
    points,
  };
}

function scheduleResults(): ResultsFile {
  const job = (name: string, arriveS: number, jct: number) => ({
    name,
    id: 1,
    class: "md" as const,
    mode: "netreduce" as const,
    workers: 2,
    arriveS,
    grantedS: 0,
    waitS: 0,
    transferS: jct,
    jctS: jct,
    verificationS: 0.1,
    heldAfterLastResultS: 0.01,
    verifiedAfterLastResultS: 0.12,
    deadlineS: 2,
    deadlineMet: jct <= 2,
    regions: [
      { atS: 0, offset: 0, size: 64, epoch: 0 },
      { atS: jct / 2, offset: 64, size: 32, epoch: 1 },
    ],
    status: "finished",
    retransmissions: 0,
    timeouts: 0,
    verified: true,
  });
  const policy = (p: "edf" | "fcfs", slow: number): PolicyResult => ({
    policy: p,
    jobs: [job("a", 0, 1), job("b", 0.5, slow)],
    averageJctS: (1 + slow) / 2,
    deadlinesMet: slow <= 2 ? 2 : 1,
    deadlineJobs: 2,
    verified: true,
    switch: {},
  });
  return { scenario: "deadlines", policies: [policy("edf", 1.5), policy("fcfs", 3)] };
}

describe("figures and the report page", () => {
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it("renders every figure to an SVG with its axis titles and a PNG twice its size that is not blank", async () => {
    const results = sweptResults();
    const figures = [
      ...runFigures([], results.points ?? []),
      ...scheduleFigures(scheduleResults().policies ?? []),
    ];
    assert.deepEqual(
      figures.map((f) => f.name),
      [
        "goodput-vs-aggregators",
        "fallback-vs-aggregators",
        "jct-cdf",
        "jct-per-policy",
        "deadlines-met",
        "regions-over-time",
      ],
    );
    for (const figure of figures) {
      const r = await renderFigure(figure);
      assert.match(r.svg, /^<svg/, figure.name);
      const width = Number(/width="(\d+(?:\.\d+)?)"/.exec(r.svg)?.[1]);
      assert.equal(r.width, Math.round(2 * width), `${figure.name}: PNG at twice the SVG's width`);
      assert.deepEqual([...r.png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
      assert.ok(r.png.length > 5000, `${figure.name}: ${r.png.length} bytes is not a blank image`);
    }
    const withLinks = runFigures(
      [
        {
          name: "linked",
          jobs: [],
          linkSeries: [0.25, 0.5, 0.75].flatMap((t) => [
            { t, host: "job 1 worker 0", utilization: 0.9 },
            { t, host: "job 1 worker 1", utilization: 0.8 },
          ]),
        } as never,
      ],
      [],
    );
    assert.deepEqual(
      withLinks.map((f) => f.name),
      ["links-linked"],
      "a run with links gets its ports over time (and no bar: it has no jobs)",
    );
    // Two runs' ports with queue series: one line per run at its fullest port, the threshold ruled.
    const port = (host: string, queueMeanBytes: number, meanBytes: number[]) => ({
      host,
      direction: "down",
      ecnThresholdBytes: 32_768,
      queueMeanBytes,
      queueSeries: {
        bucketMs: 2,
        spanMs: 2 * meanBytes.length - 1,
        meanBytes,
        maxBytes: meanBytes,
      },
    });
    const queued = runFigures(
      ["none", "dctcp"].map((name, i) => ({
        name,
        jobs: [],
        links: [
          port("ps", 40_000 / (i + 1), [80_000 / (i + 1), 30_000, 20_000]),
          port("job 1 worker 0", 10, [10, 20, 0]),
        ],
      })) as never,
      [],
    );
    assert.deepEqual(
      queued.map((f) => f.name),
      ["queue-over-time"],
    );
    const queueRows = (queued[0].spec as { layer: Array<{ data: { values: object[] } }> }).layer[0]
      .data.values;
    assert.deepEqual(
      queueRows.map((r) => Object.values(r).slice(0, 3)),
      [
        [1, "none: towards ps", 80_000 / 1024],
        [3, "none: towards ps", 30_000 / 1024],
        [4.5, "none: towards ps", 20_000 / 1024],
        [1, "dctcp: towards ps", 40_000 / 1024],
        [3, "dctcp: towards ps", 30_000 / 1024],
        [4.5, "dctcp: towards ps", 20_000 / 1024],
      ],
      "the fullest port of each run, each bucket at its middle (the last one cut at the span)",
    );
    const queueFigure = await renderFigure(queued[0]);
    assert.ok(queueFigure.svg.includes("queue (KiB, time-weighted mean)"), "y axis title");
    assert.ok(queueFigure.svg.includes("ECN threshold"), "the threshold's rule");
    const linked = await renderFigure(withLinks[0]);
    assert.ok(linked.svg.includes("utilization (% of the line rate)"));
    const goodput = await renderFigure(figures[0]);
    assert.ok(goodput.svg.includes("aggregators in the switch"), "x axis title");
    assert.ok(goodput.svg.includes("goodput per worker (MB/s)"), "y axis title");
  });

  it("draws a median with its interval, series side by side, powers of two in log2, one legend order", async () => {
    const [goodput, fallback] = runFigures([], sweptResults().points ?? []);
    const spec = goodput.spec as unknown as {
      data: {
        values: Array<{
          x: number;
          at: number;
          series: string;
          value: number;
          low: number;
          high: number;
        }>;
      };
      layer: Array<{
        encoding: {
          x: { field: string; scale: { type?: string; base?: number } };
          color: { scale: { domain: string[] } };
        };
      }>;
    };
    assert.equal(spec.layer[0].encoding.x.field, "at", "drawn at the dodged position");
    assert.deepEqual(spec.layer[0].encoding.x.scale.type, "log");
    assert.equal(spec.layer[0].encoding.x.scale.base, 2);
    assert.deepEqual(spec.layer[0].encoding.color.scale.domain, ["atp-1", "atp-2"]);
    for (const x of [16, 64, 256]) {
      const [one, two] = ["atp-1", "atp-2"].map(
        (job) => spec.data.values.find((r) => r.x === x && r.series === job)?.at ?? Number.NaN,
      );
      assert.ok(one < x && x < two, `at ${x} the two jobs sit either side (${one}, ${two})`);
    }
    for (const r of spec.data.values) {
      assert.ok(r.low >= 0 && r.low <= r.value && r.value <= r.high, "the bar holds its median");
    }
    assert.deepEqual(goodput.subtitle, [
      "points: medians (n = 3 per point); bars: distribution-free interval of the median",
      "(order statistics, binomial), 75% confidence",
    ]);
    const fallbackSpec = fallback.spec as unknown as {
      layer: Array<{ encoding: { y: { scale: { domain: number[] } } } }>;
    };
    assert.deepEqual(
      fallbackSpec.layer[0].encoding.y.scale.domain,
      [0, 100],
      "a share stays in 0-100 %",
    );
    const svg = (await renderFigure(goodput)).svg;
    assert.ok(svg.includes("aggregators in the switch, log2 scale"));
    assert.ok(svg.includes("75% confidence"));
    assert.ok(!svg.includes("95% CI"), "no claim of a 95 % interval it is not");

    assert.ok(isPowerOfTwoSweep([512, 256, 128, 64, 16]));
    assert.ok(isPowerOfTwoSweep([1, 2, 4, 4]));
    assert.ok(!isPowerOfTwoSweep([16, 64]), "two values are too few to call a sweep log2");
    assert.ok(!isPowerOfTwoSweep([16, 48, 64]));
    assert.ok(!isPowerOfTwoSweep([0, 1, 2, 4]));
    assert.equal(dodgedX(64, 0, 1, [16, 64], true), 64, "one series is not moved");
    assert.equal(dodgedX(10, 1, 3, [0, 10, 20], false), 10, "the middle of three stays");

    // A bar chart of runs: legend and bars in the runs' order of jobs, by job name alone.
    const job = (name: string, mode: string, goodputMBps: number) => ({ name, mode, goodputMBps });
    const [bars] = runFigures(
      [
        { name: "mixed", jobs: [job("ps-1", "ps", 3), job("atp-1", "atp", 5)] },
        { name: "alone", jobs: [job("atp-1", "atp", 6)] },
      ] as never,
      [],
    );
    const enc = (
      bars.spec as unknown as { encoding: Record<string, { scale: { domain: string[] } }> }
    ).encoding;
    assert.deepEqual(enc.color.scale.domain, ["ps-1", "atp-1"]);
    assert.deepEqual(enc.xOffset.scale.domain, ["ps-1", "atp-1"], "bars in the legend's order");
  });

  it("marks each job's deadline on the JCT figure, met or missed", async () => {
    const policies = scheduleResults().policies ?? [];
    const { jct, deadlines } = jctRows(policies);
    assert.deepEqual(deadlines, [
      { job: "a", deadline: 2 },
      { job: "b", deadline: 2 },
    ]);
    assert.deepEqual(
      jct.map((r) => `${r.policy} ${r.job} ${r.deadlineOutcome}`),
      ["edf a met", "edf b met", "fcfs a met", "fcfs b missed"],
    );
    const figure = scheduleFigures(policies).find((f) => f.name === "jct-per-policy");
    assert.ok(figure !== undefined);
    const layers = (
      figure.spec as unknown as { layer: Array<{ mark: unknown; data: { values: unknown[] } }> }
    ).layer;
    const tick = layers.find((l) => (l.mark as { type?: string }).type === "tick");
    assert.deepEqual(tick?.data.values, deadlines, "a deadline mark per job");
    const outcome = layers.find((l) => (l.mark as { type?: string }).type === "point");
    assert.equal(outcome?.data.values.length, 4, "met or missed on every bar with a deadline");
    const svg = (await renderFigure(figure)).svg;
    assert.ok(svg.includes("missed") && svg.includes("met"), "the legend names both");
  });

  it("computes a port's utilization over whole intervals, never above the line rate", () => {
    // 8 Mbit/s = 1 MB/s: 250 kB per 250 ms. A window's burst of 400 kB is accepted in the first interval.
    const port = (bytes: number, queueBytes?: number) => ({
      host: "job 1 worker 0",
      rateBitsPerSecond: 8e6,
      bytes,
      ...(queueBytes === undefined ? {} : { queueBytes }),
    });
    const records = (queues: Array<number | undefined>) =>
      [0, 400_000, 400_000, 400_000].map((bytes, i) => ({
        event: "stats",
        uptimeMs: 1000 + 250 * i,
        links: [port(bytes, queues[i])],
      })) as never;
    const replayed = linkSeries(records([]));
    assert.deepEqual(
      replayed.map((p) => [p.from, p.t, p.utilization]),
      [
        [0, 0.25, 1],
        [0.25, 0.5, 0.6],
        [0.5, 0.75, 0],
      ],
      "the queue drains at the line rate into the next interval (bytes/interval would say 160 %)",
    );
    const reported = linkSeries(records([0, 150_000, 0, 0]));
    assert.deepEqual(
      reported.map((p) => p.utilization),
      [1, 0.6, 0],
      "with the queue reported, sent = accepted - the queue's growth",
    );
    const skewed = linkSeries(records([0, 140_000, 0, 0]));
    assert.equal(
      Math.max(...skewed.map((p) => p.utilization)),
      1,
      "a late queue reading is clamped",
    );
  });

  it("records the host's load and CPU steal for the provenance", () => {
    const stat = (steal: number, idle: number) =>
      `cpu  100 0 50 ${idle} 5 0 2 ${steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\n`;
    const a = parseProcStat(stat(10, 800));
    const b = parseProcStat(stat(30, 980));
    assert.deepEqual(a, { steal: 10, total: 967 });
    assert.ok(a !== null && b !== null);
    assert.deepEqual(stealBetween(a, b), { seconds: 0.2, share: 20 / 200 });
    assert.equal(parseProcStat("intr 1\n"), null);
    const busy = {
      hostLoad: {
        loadAverage1m: { start: 1, end: 2, max: 3.5 },
        cpus: 2,
        samples: 9,
        steal: { seconds: 4, share: 0.08 },
      },
    };
    assert.deepEqual(hostWarnings(busy), [
      "the host's 1-minute load average reached 3.50 on 2 CPUs: processes waited for a CPU during the run",
      "the hypervisor took 8.0% of the CPU time (steal, 4.0 s)",
    ]);
    assert.deepEqual(
      hostWarnings({
        hostLoad: {
          ...busy.hostLoad,
          loadAverage1m: { start: 0, end: 0, max: 1 },
          steal: { seconds: 0, share: 0 },
        },
      }),
      [],
    );
    assert.deepEqual(hostWarnings({ commit: "abc" }), [], "results written before hostLoad");
    const load = sampleHostLoad(60_000).read();
    assert.ok(load.loadAverage1m.max >= load.loadAverage1m.start && load.cpus >= 1);
    assert.equal("steal" in load, process.platform === "linux", "steal on Linux only");
  });

  it("opens in a real headless browser with every figure drawn and no console error", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ina-report-"));
    dirs.push(dir);
    const figures = await writeReport(dir, sweptResults());
    assert.equal(figures.length, 2);
    const html = await readFile(join(dir, "index.html"), "utf8");
    assert.doesNotMatch(
      html,
      /\bsrc="http|href="http(?!s?:\/\/www\.w3\.org)/,
      "nothing from the network",
    );
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") problems.push(m.text());
      });
      page.on("pageerror", (e) => problems.push(e.message));
      page.on("requestfailed", (r) => problems.push(`failed: ${r.url()}`));
      await page.goto(`file://${join(dir, "index.html")}`);
      const drawn = await page.$$eval("figure svg", (svgs) =>
        svgs.map((s) => {
          const box = s.getBoundingClientRect();
          return box.width > 100 && box.height > 100;
        }),
      );
      assert.deepEqual(drawn, [true, true], "both figures drawn");
      const data = await page.$eval("#results", (s) => JSON.parse(s.textContent ?? "{}").scenario);
      assert.equal(data, "atp-pool", "the results ride in the page");
      await page.screenshot({ path: join(dir, "screenshot.png"), fullPage: true });
      assert.deepEqual(problems, []);
    } finally {
      await browser.close();
    }
  });
});

describe("scheduling results: a job's times", () => {
  const job = parseScheduleScenario({
    name: "t",
    jobs: [
      { name: "j", class: "md", deadlineS: 3, workers: 2, tensorBytes: "1MiB", arriveMs: 1000 },
    ],
  }).jobs[0];
  const view: JobView = {
    id: 1,
    status: "finished",
    submittedAt: 1000,
    startedAt: 1500,
    finishedAt: 4050,
    deadlineAt: 4000,
    history: [{ at: 1500, offset: 0, size: 8, epoch: 0 }],
  };
  const records = [0, 1].map(() => ({ retransmissions: 1, timeouts: 0, verified: true }));

  it("wait runs from submission to the first worker's first packet, transfer to the last worker's last result; verification and the region's hold are apart", () => {
    const timing = jobTiming(
      [
        { firstPacketAt: 1700, lastResultAt: 3900, verificationS: 0.2, verifiedAt: 4200 },
        { firstPacketAt: 1600, lastResultAt: 4000, verificationS: 0.3, verifiedAt: 4300 },
      ],
      2,
    );
    assert.deepEqual(timing, {
      firstPacketAt: 1600,
      lastResultAt: 4000,
      verificationS: 0.3,
      verifiedAt: 4300,
    });
    const r = scheduledJobResult(job, 1, view, timing, records);
    assert.equal(r.grantedS, 0.5);
    assert.equal(r.waitS, 0.6);
    assert.equal(r.transferS, 2.4);
    assert.ok(Math.abs((r.jctS ?? 0) - 3) < 1e-12);
    assert.equal(r.verificationS, 0.3);
    assert.ok(Math.abs((r.heldAfterLastResultS ?? 0) - 0.05) < 1e-12);
    assert.ok(Math.abs((r.verifiedAfterLastResultS ?? 0) - 0.3) < 1e-12);
    assert.equal(
      r.deadlineMet,
      true,
      "the last result came within the deadline; the release after it does not count",
    );
    assert.equal(r.retransmissions, 2);
    const table = formatScheduleTable([
      { ...failedPolicy("edf", ""), error: undefined, jobs: [r] },
    ]);
    assert.match(table, /granted s +wait s +transfer s +JCT s +verify s +held s/);
    assert.match(table, /0\.50 +0\.60 +2\.40 +3\.00 +0\.30 +0\.0500/);
  });

  it("a job that not every worker finished has no transfer, no JCT and no deadline met", () => {
    const timing = jobTiming(
      [{ firstPacketAt: 1600, lastResultAt: 4000, verificationS: 0.3, verifiedAt: 4300 }],
      2,
    );
    const r = scheduledJobResult(job, 1, { ...view, status: "failed" }, timing, records.slice(1));
    assert.equal(r.waitS, null);
    assert.equal(r.jctS, null);
    assert.equal(r.heldAfterLastResultS, null);
    assert.equal(r.deadlineMet, false);
    assert.equal(r.verified, false);
  });
});
