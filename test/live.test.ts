import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { LinkPort, newVerdict, portRecord } from "../link/link.js";
import { atpIndex } from "../proto/addressing.js";
import { parseSwitchConfig } from "../proto/config.js";
import { CREDENTIAL_ENV } from "../proto/control.js";
import { SwitchReadySchema } from "../proto/records.js";
import { ChildNode } from "../runner/processes.js";
import { SCRIPTS } from "../runner/run.js";
import { buildControlApp, ControlPlane } from "../switch/control.js";
import { SwitchCore } from "../switch/core.js";
import { decodeRuns, encodeRuns, type LiveState } from "../switch/live.js";
import { MemoryManager } from "../switch/memory.js";
import { launchChromium } from "./browser.js";
import { captureTransmit, contribution } from "./packets.js";
import { poll } from "./poll.js";
import { STARTUP_MS } from "./waits.js";

describe("the live view of the switch", () => {
  const dirs: string[] = [];
  const children: ChildNode[] = [];
  after(async () => {
    await Promise.all(children.map((c) => c.stop()));
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it("encodes the aggregator array in runs of (job, state) that decode back", () => {
    const jobs = Int32Array.from([5, 5, 5, 7, 7, 9, 9, 9, 3, 3]);
    const states = Uint8Array.from([1, 1, 2, 2, 2, 0, 0, 3, 0, 0]);
    const runs = encodeRuns(jobs, states);
    assert.deepEqual(runs, [
      [0, 2, 5, 1],
      [2, 1, 5, 2],
      [3, 2, 7, 2],
      [5, 2, -1, 0],
      [7, 1, 9, 3],
      [8, 2, -1, 0],
    ]);
    const back = decodeRuns(runs, 10);
    assert.deepEqual([...back.states], [...states]);
    assert.deepEqual([...back.jobIds], [5, 5, 5, 7, 7, -1, -1, 9, -1, -1]);
  });

  it("serves the switch's own arrays, regions and counters after traffic with an ATP collision and a region change", async () => {
    const nr = { id: 1, mode: "netreduce" as const, fanIn: 2, offset: 0, regionSize: 8, window: 4 };
    const atpA = { id: 2, mode: "atp" as const, fanIn: 2, offset: 8, regionSize: 4, window: 4 };
    const atpB = { id: 3, mode: "atp" as const, fanIn: 2, offset: 8, regionSize: 4, window: 4 };
    const core = new SwitchCore(
      parseSwitchConfig({
        aggregators: 32,
        elementsPerAggregator: 4,
        jobs: [nr, atpA, atpB],
        parameterServer: { host: "127.0.0.1", port: 9 },
      }),
      captureTransmit(),
    );
    const send = (buf: Buffer, port: number) => core.receive(buf, port, "127.0.0.1", 0);
    send(contribution(nr, 0, 0, [1]), 5000);
    send(contribution(nr, 0, 1, [1]), 5000);
    send(contribution(nr, 1, 1, [2]), 5001); // PSN 1 completes, PSN 0 stays partial
    const index = atpIndex(2, 0, 8, 4);
    let psnB = 0;
    while (atpIndex(3, psnB, 8, 4) !== index) psnB++;
    send(
      contribution({ ...atpA, offset: 8, regionSize: 4 }, 0, 0, [1], { aggregatorIndex: index }),
      6000,
    );
    send(
      contribution({ ...atpB, offset: 8, regionSize: 4 }, 0, psnB, [1], { aggregatorIndex: index }),
      7000,
    );
    core.changeRegion(1, 16, 8, 1); // the old region drains: PSN 0 is still partial there
    const manager = new MemoryManager({
      aggregators: 32,
      bytesPerAggregator: 16,
      policy: "edf",
      reserved: [[0, 24]],
    });
    const control = new ControlPlane({
      manager,
      core,
      dataAddress: { host: "127.0.0.1", port: 1 },
      now: () => 1234,
    });
    // A port that took 2000 bytes at 1233 ms, 1000 bytes per ms: at 1234 half is left.
    const link = new LinkPort({
      rateBitsPerSecond: 8e6,
      delayMs: 0,
      bufferBytes: 1e6,
      ecnThresholdBytes: 1500,
      controlPriority: true,
      hostEfficiency: 1,
    });
    link.offer(2000, 1233, newVerdict());
    const app = buildControlApp(control, undefined, {
      ports: (now) => [
        { host: "job 1 worker 0", address: "127.0.0.1", port: 5000, ...portRecord(link, { now }) },
      ],
    });
    const response = await app.inject({ method: "GET", url: "/ui/state" });
    assert.equal(response.statusCode, 200);
    const state = response.json() as LiveState;
    assert.equal(state.aggregators, 32);
    const { jobIds, states } = decodeRuns(state.runs, 32);
    const a = core.aggregators;
    for (let i = 0; i < 32; i++) {
      assert.equal(states[i], a.state[i], `aggregator ${i}'s state`);
      if (a.state[i] !== 0) assert.equal(jobIds[i], a.jobId[i], `aggregator ${i}'s job`);
    }
    assert.ok(states.some((s) => s === 1) && states.some((s) => s === 2), "partial and complete");
    assert.deepEqual(
      state.regions.filter((r) => r.jobId === 1).map((r) => [r.offset, r.size, r.draining]),
      [
        [0, 8, true],
        [16, 8, false],
      ],
    );
    const b = state.jobs.find((j) => j.id === 3);
    assert.equal(b?.collisions, 1);
    assert.equal(b?.fallbacks, 1);
    assert.equal(state.jobs.find((j) => j.id === 1)?.aggregationsCompleted, 1);
    const [port] = state.ports;
    assert.deepEqual(
      [port.host, port.queueBytes, port.queueAreaByteMs, port.queueSeries],
      [
        "job 1 worker 0",
        1000,
        ((2000 + 1000) / 2) * 1,
        undefined, // the queue now and its area at the page's clock, not the whole series
      ],
    );
    const page = await app.inject({ method: "GET", url: "/ui" });
    assert.match(page.headers["content-type"] as string, /text\/html/);
    assert.match(page.body, /<script src="\/ui\/vega\.js"><\/script>/);
    const vega = await app.inject({ method: "GET", url: "/ui/vega-lite.js" });
    assert.ok(vega.body.length > 100_000, "vega-lite's browser build, from the package");
  });

  it("shows a live switch in a real browser: two jobs' regions, their rate, and a region change", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ina-live-"));
    dirs.push(dir);
    const configPath = join(dir, "switch.json");
    // Emulated links, so the page has ports and their queues to draw.
    await writeFile(
      configPath,
      JSON.stringify({
        aggregators: 256,
        jobs: [],
        links: { rate: "1Gbps", delay: "50us", buffer: "1MiB", ecnThreshold: "64KiB" },
      }),
    );
    const sw = new ChildNode("switch", SCRIPTS.switch, ["--config", configPath]);
    children.push(sw);
    const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    const control = String(ready.controlUrl);
    const submit = async (body: Record<string, unknown>) => {
      const r = await fetch(`${control}/jobs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ mode: "netreduce", workers: 2, window: 64, ...body }),
      });
      assert.ok(r.status < 300, await r.clone().text());
      return String(((await r.json()) as { credential: string }).credential);
    };
    const startWorkers = (job: number, credential: string, iterations: number) => {
      for (let w = 0; w < 2; w++) {
        const child = new ChildNode(
          `job ${job} worker ${w}`,
          SCRIPTS.worker,
          [
            "--control",
            control,
            "--job",
            String(job),
            "--worker",
            String(w),
            "--tensor-bytes",
            "2MiB",
            "--iterations",
            String(iterations),
            "--progress-ms",
            "0",
            "--no-verify",
          ],
          undefined,
          { env: { ...process.env, [CREDENTIAL_ENV]: credential } },
        );
        children.push(child);
      }
    };
    // A long best-effort job takes the whole pool.
    startWorkers(
      1,
      await submit({
        id: 1,
        name: "long",
        class: "be",
        modelBytes: 2 << 20,
        epochs: 400,
        aggregators: 256,
      }),
      400,
    );
    const browser = await launchChromium();
    try {
      const page = await browser.newPage({ viewport: { width: 1100, height: 1200 } });
      const problems: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") problems.push(m.text());
      });
      page.on("pageerror", (e) => problems.push(e.message));
      await page.goto(String(ready.uiUrl));
      const cell = (job: number, name: string) =>
        page
          .$eval(`#jobs tr[data-job="${job}"] td.${name}`, (td) => td.textContent ?? "")
          .catch(() => "");
      // Bounded for a loaded host: the page polls twice a second.
      const waitFor = (what: string, ok: () => Promise<boolean>) =>
        poll(`the page showing ${what}`, STARTUP_MS, async () => ((await ok()) ? true : null), 100);
      await waitFor(
        "job 1 at a non-zero aggregation rate",
        async () => Number(await cell(1, "rate")) > 0,
      );
      const before = await cell(1, "region");
      assert.equal(before, "[0, 256)");
      // A deadline job arrives: EDF takes half of the pool from the long job.
      startWorkers(
        2,
        await submit({
          id: 2,
          name: "deadline",
          class: "md",
          deadlineS: 30,
          modelBytes: 2 << 20,
          epochs: 2,
          aggregators: 128,
        }),
        2,
      );
      await waitFor("job 2's region", async () => /^\[\d+, \d+\)$/.test(await cell(2, "region")));
      await waitFor("job 1's region change", async () => (await cell(1, "region")) !== before);
      const strip = await page.$eval("#strip svg", (svg) => svg.textContent ?? "");
      assert.match(strip, /long/);
      assert.match(strip, /deadline/);
      const rates = await page.$$eval("#rate svg path", (paths) => paths.length);
      assert.ok(rates > 0, "the rate chart has lines");
      // The switch's ports towards the workers: each in the table, their queues charted.
      const ports = await page.$$eval("#ports tr[data-port]", (rows) => rows.length);
      assert.ok(ports >= 2, `${ports} ports in the table`);
      await waitFor("the ports' queues charted", async () =>
        (await page.$eval("#queues svg", (svg) => svg.textContent ?? "").catch(() => "")).includes(
          "worker",
        ),
      );
      await page.screenshot({ path: join(dir, "live.png"), fullPage: true });
      assert.deepEqual(problems, []);
    } finally {
      await browser.close();
    }
  });
});
