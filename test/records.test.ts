import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Links } from "../proto/links.js";
import { LinksSchema } from "../proto/links.js";
import {
  FloorReadySchema,
  FloorStatsSchema,
  PsReadySchema,
  PsRecordSchema,
  type RecordSchema,
  SwitchReadySchema,
  SwitchRecordSchema,
  WorkerProgressSchema,
  WorkerReadySchema,
  WorkerRecordSchema,
  WorkerResultSchema,
} from "../proto/records.js";
import { ChildNode, type ProcessRecord, parseRecord, RecordMismatch } from "../runner/processes.js";
import { linkArgs, SCRIPTS } from "../runner/run.js";
import { STARTUP_MS } from "./waits.js";

const FLOOR_SCRIPT = SCRIPTS.switch.replace(/switch\/cli\.js$/, "bench/floor-switch.js");

const RUNTIME_CLI = SCRIPTS.switch.replace(/switch\/cli\.js$/, "runtime/cli.js");

/**
 * The records of proto/records.ts against what the commands really print:
 * one short ATP run (a PS, a switch and a worker, with emulated links and
 * periodic stats, so every optional part shows up), and the floor relay.
 */
describe("records: the schemas match what the commands print", () => {
  const children: ChildNode[] = [];
  const dirs: string[] = [];
  let sw: ChildNode;
  let ps: ChildNode;
  let worker: ChildNode;
  let floor: ChildNode;

  before(async () => {
    const dir = await mkdtemp(join(tmpdir(), "ina-records-"));
    dirs.push(dir);
    const links: Links = LinksSchema.parse({ rate: "1Gbps", delay: 0 });
    const config: Record<string, unknown> = {
      aggregators: 64,
      links,
      jobs: [{ id: 1, mode: "atp", fanIn: 1, offset: 0, size: 32, window: 16 }],
    };
    await writeFile(join(dir, "ps.json"), JSON.stringify(config));
    ps = new ChildNode("ps", SCRIPTS.ps, [
      ...["--config", join(dir, "ps.json"), "--stats-interval-ms", "20"],
    ]);
    children.push(ps);
    const psReady = await ps.waitFor(PsReadySchema, STARTUP_MS);
    config.parameterServer = { host: "127.0.0.1", port: psReady.dataPort };
    await writeFile(join(dir, "switch.json"), JSON.stringify(config));
    sw = new ChildNode("switch", SCRIPTS.switch, [
      ...["--config", join(dir, "switch.json"), "--stats-interval-ms", "20"],
    ]);
    children.push(sw);
    const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    worker = new ChildNode("worker", SCRIPTS.worker, [
      ...["--switch", `127.0.0.1:${ready.dataPort}`, "--mode", "atp", "--worker", "0"],
      ...["--fan-in", "1", "--region-size", "32", "--window", "16", "--tensor-bytes", "256KiB"],
      ...["--progress-ms", "1", ...linkArgs(links, { job: 1, worker: 0 })],
    ]);
    children.push(worker);
    await worker.waitFor(WorkerResultSchema, 60_000);
    assert.equal(await worker.waitExit(STARTUP_MS), 0, worker.stderr);
    assert.equal(await sw.stop(), 0);
    assert.equal(await ps.stop(), 0);

    await writeFile(
      join(dir, "floor.json"),
      JSON.stringify({
        aggregators: 64,
        jobs: [{ id: 1, mode: "netreduce", fanIn: 1, offset: 0, size: 32, window: 16 }],
      }),
    );
    floor = new ChildNode("floor", FLOOR_SCRIPT, ["--config", join(dir, "floor.json")]);
    children.push(floor);
    await floor.waitFor(FloorReadySchema, STARTUP_MS);
    await floor.stop();
  });

  after(async () => {
    await Promise.all(children.map((c) => c.stop()));
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  /** Every record `child` printed, each parsed with its command's schema; returns the kinds seen. */
  const kinds = (child: ChildNode, schema: RecordSchema) =>
    new Set(
      child.records.map((record) => {
        parseRecord(schema, record, child.name);
        return record.final === true ? `${record.event} (final)` : record.event;
      }),
    );

  it("ina-switch: ready, periodic stats, final stats (with links)", () => {
    assert.deepEqual(kinds(sw, SwitchRecordSchema), new Set(["ready", "stats", "stats (final)"]));
    const last = sw.records.at(-1);
    assert.ok(
      Array.isArray(last?.links) && last.links.length === 2,
      "a port to the worker and the PS",
    );
  });

  it("ina-ps: ready, periodic stats, final stats (with its link)", () => {
    assert.deepEqual(kinds(ps, PsRecordSchema), new Set(["ready", "stats", "stats (final)"]));
    assert.ok(ps.records.at(-1)?.link !== undefined);
  });

  it("ina-worker: ready, progress (all-reducing, verifying), result (with its link)", () => {
    assert.deepEqual(kinds(worker, WorkerRecordSchema), new Set(["ready", "progress", "result"]));
    const phases = new Set(worker.recordsOf(WorkerProgressSchema).map((r) => r.phase));
    assert.deepEqual(phases, new Set(["allreduce", "verifying"]));
    const [result] = worker.recordsOf(WorkerResultSchema);
    assert.equal(result.verified, true);
    assert.notEqual(result.link, undefined);
    assert.equal(result.verification?.notBitExact, 0);
    assert.equal(worker.recordsOf(WorkerReadySchema)[0].workerIdSource, "--worker");
  });

  it("the floor relay: ready and final stats", () => {
    assert.equal(floor.recordsOf(FloorReadySchema).length, 1);
    assert.equal(floor.recordsOf(FloorStatsSchema)[0].final, true);
  });

  it("a record with a renamed or a missing field is rejected, naming the field", () => {
    const result = worker.records.find((r) => r.event === "result") as ProcessRecord;
    const { seconds, ...renamed } = result;
    assert.throws(
      () => parseRecord(WorkerResultSchema, { ...renamed, secs: seconds }, "worker 0"),
      (error: Error) =>
        error instanceof RecordMismatch &&
        /worker 0: its "result" record/.test(error.message) &&
        /^seconds: /m.test(error.message) &&
        /Unrecognized key: "secs"/.test(error.message),
    );
    const ready = sw.records.find((r) => r.event === "ready") as ProcessRecord;
    const { dataPort: _, ...missing } = ready;
    assert.throws(
      () => parseRecord(SwitchReadySchema, missing, "switch"),
      /its "ready" record does not match proto\/records\.ts:\ndataPort: /,
    );
    const stats = sw.records.at(-1) as ProcessRecord;
    const jobs = stats.jobs as Array<Record<string, unknown>>;
    const { collisions: __, ...job } = jobs[0];
    assert.throws(
      () => parseRecord(SwitchRecordSchema, { ...stats, jobs: [job] }, "switch"),
      /^jobs\[0\]\.collisions: /m,
    );
  });

  it("ChildNode.waitFor rejects a record that does not match its schema, naming the field", async () => {
    const dir = dirs[0];
    const script = join(dir, "liar.mjs");
    await writeFile(
      script,
      [
        `import { emitRecord } from ${JSON.stringify(RUNTIME_CLI)};`,
        // A worker that renamed `workerId`: the runner must not read it as undefined.
        "emitRecord({ event: 'progress', phase: 'allreduce', worker: 0, iteration: 0,",
        "  completedPackets: 1, totalPackets: 2 });",
      ].join("\n"),
    );
    const liar = new ChildNode("liar", script, []);
    children.push(liar);
    await assert.rejects(liar.waitFor(WorkerProgressSchema, 15_000), (error: Error) => {
      assert.ok(error instanceof RecordMismatch);
      assert.match(error.message, /^liar: its "progress" record/);
      assert.match(error.message, /^workerId: /m);
      assert.match(error.message, /Unrecognized key: "worker"/);
      return true;
    });
  });
});
