import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { SwitchReadySchema, WorkerReadySchema } from "../proto/records.js";
import { ScenarioRunSchema } from "../proto/scenario.js";
import { packetBytes } from "../proto/wire.js";
import { ChildNode } from "../runner/processes.js";
import { runScenarioRun, SCRIPTS } from "../runner/run.js";
import { testSeed } from "./seed.js";
import { STARTUP_MS } from "./waits.js";

/**
 * Datagrams of several packets with real processes (proto/README.md,
 * section 2.1), and the warning for a window the receive buffers cannot hold.
 */
describe("datagrams of several packets, real processes", () => {
  const children: ChildNode[] = [];
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(children.map((child) => child.stop()));
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it("a 4-worker NetReduce job and a 4-worker ATP job stay exact through 1% loss each way, several packets to a datagram", async () => {
    const seed = testSeed("datagrams process", 29);
    const run = ScenarioRunSchema.parse({
      name: "coalesced",
      aggregators: 512,
      faults: { loss: 0.01 },
      packetsPerDatagram: 32,
      jobs: [
        { mode: "netreduce", workers: 4, tensorBytes: "2MiB", window: 64 },
        { mode: "atp", workers: 4, tensorBytes: "1MiB", window: 32 },
      ],
    });
    const result = await runScenarioRun(run, { seed, timeoutMs: 120_000 });
    assert.equal(result.verified, true, JSON.stringify(result.jobs.map((j) => j.perWorker)));
    for (const job of result.jobs) {
      assert.ok(job.retransmissions > 0, `${job.name}: loss was recovered`);
    }
    const sw = result.switch;
    assert.ok("injected" in sw, "the switch's final stats record");
    assert.ok(sw.drops.injectedDrop > 0);
    // Packets are counted one by one; the datagrams carried several each.
    assert.ok(
      sw.rxDatagrams < sw.rxPackets / 2,
      `switch received ${sw.rxPackets} packets in ${sw.rxDatagrams} datagrams`,
    );
    assert.ok(
      sw.txDatagrams !== undefined && sw.txDatagrams < sw.txPackets / 2,
      `switch sent ${sw.txPackets} packets in ${sw.txDatagrams} datagrams`,
    );
    const ps = result.ps;
    assert.ok(ps?.txDatagrams !== undefined && ps.txDatagrams < ps.acksSent);
  });

  it("the switch and a worker say so, naming the numbers, when a window overflows their receive buffers", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ina-emu-test-"));
    dirs.push(dir);
    // 32 workers x 64 packets of 64 KiB: 128 MiB may be in flight towards the switch.
    const elements = 16_368;
    const config = {
      aggregators: 128,
      elementsPerAggregator: elements,
      jobs: [{ id: 1, mode: "netreduce", fanIn: 32, offset: 0, regionSize: 128, window: 64 }],
    };
    const configPath = join(dir, "switch.json");
    await writeFile(configPath, JSON.stringify(config));
    const sw = new ChildNode("switch", SCRIPTS.switch, ["--config", configPath]);
    children.push(sw);
    const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    const inFlight = 32 * 64 * packetBytes(elements);
    const buffers = ready.socketBuffers;
    assert.ok(buffers.receiveBytes > 0 && buffers.requestedBytes === inFlight);
    const warnings = ready.warnings;
    if (buffers.receiveBytes < inFlight) {
      assert.equal(warnings.length, 1);
      const mib = (inFlight / 2 ** 20).toFixed(1);
      assert.ok(warnings[0].includes(`up to ${mib} MiB may be in flight`), warnings[0]);
      assert.match(
        warnings[0],
        new RegExp(`holds ${(buffers.receiveBytes / 2 ** 20).toFixed(1)} MiB`),
      );
      assert.ok(sw.stderr.includes(`warning: ina-switch: up to ${mib} MiB`), sw.stderr);
      assert.equal(
        buffers.capped,
        buffers.kernelLimitBytes !== null && buffers.kernelLimitBytes < inFlight,
      );
    } else {
      assert.deepEqual(warnings, [], "the kernel granted the whole window");
    }
    // A worker whose window of results (1024 packets of 64 KiB) overflows its own buffer.
    const worker = new ChildNode("worker", SCRIPTS.worker, [
      "--switch",
      `127.0.0.1:${ready.dataPort}`,
      "--worker",
      "0",
      "--fan-in",
      "32",
      "--window",
      "64MiB",
      "--elements-per-packet",
      String(elements),
      "--region-size",
      "4096",
      "--tensor-bytes",
      "256KiB",
      "--wait-go",
    ]);
    children.push(worker);
    const workerReady = await worker.waitFor(WorkerReadySchema, STARTUP_MS);
    assert.equal(
      workerReady.window,
      Math.floor((64 * 2 ** 20) / packetBytes(elements)),
      "64 MiB in whole packets",
    );
    const workerBuffers = workerReady.socketBuffers;
    const workerWarnings = workerReady.warnings;
    if (workerBuffers.receiveBytes < 64 * 2 ** 20 - packetBytes(elements)) {
      assert.match(workerWarnings[0] ?? "", /ina-worker: up to 64\.0 MiB may be in flight/);
    } else {
      assert.deepEqual(workerWarnings, []);
    }
  });
});
