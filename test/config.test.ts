import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseScenario } from "../experiment/scenario.js";
import { ConfigError, parseSwitchConfig } from "../proto/config.js";
import { DROP_REASON_NAMES, DropReason } from "../proto/drops.js";
import {
  type Scenario,
  ScenarioJobSchema,
  type ScheduleScenario,
  ScheduleScenarioSchema,
} from "../proto/scenario.js";
import { parseOrUsage } from "../runtime/cli.js";

const job = { id: 1, mode: "netreduce", fanIn: 4, offset: 0, regionSize: 16, window: 8 };

function configError(input: unknown): string {
  try {
    parseSwitchConfig(input);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.message;
  }
  assert.fail("config was accepted");
}

describe("switch config", () => {
  it("accepts a valid config and fills defaults", () => {
    const c = parseSwitchConfig({ aggregators: 32, jobs: [job, { ...job, id: 2, offset: 16 }] });
    assert.equal(c.elementsPerAggregator, 256);
    assert.deepEqual(c.faults.ingress, { drop: 0, duplicate: 0, reorder: 0 });
    assert.equal(c.jobs.length, 2);
  });

  it("enforces the NetReduce 2 x window rule", () => {
    assert.match(
      configError({ aggregators: 32, jobs: [{ ...job, regionSize: 15 }] }),
      /^jobs\[0\]\.regionSize: a NetReduce region needs at least 2 x window = 16 aggregators, got 15$/m,
    );
  });

  it("names every bad field", () => {
    const message = configError({
      aggregators: 20,
      jobs: [job, { ...job, id: 1, offset: 8 }, { ...job, id: 3, fanIn: 33 }],
      faults: { ingress: { drop: 0.6, duplicate: 0.6 } },
      extra: true,
    });
    assert.match(message, /jobs\[1\]\.id: job id 1 is already used by jobs\[0\]/);
    assert.match(message, /jobs\[1\]\.regionSize: region \[8, 24\) ends past the 20 aggregators/);
    assert.match(
      message,
      /jobs\[1\]\.offset: region \[8, 24\) overlaps jobs\[0\]'s region \[0, 16\)/,
    );
    assert.match(message, /jobs\[2\]\.fanIn: /);
    assert.match(message, /faults\.ingress: drop \+ duplicate \+ reorder must not exceed 1/);
    assert.match(message, /\(root\): Unrecognized key: "extra"/);
  });

  it("rejects a wrong type with the field's name", () => {
    assert.match(configError({ aggregators: "many" }), /^aggregators: /);
    assert.match(
      configError({ aggregators: 8, jobs: [{ ...job, mode: "tree" }] }),
      /^jobs\[0\]\.mode: /,
    );
  });

  it("lets ATP jobs share a slice of the pool, never a NetReduce region, and needs a PS for them", () => {
    const atp = { ...job, mode: "atp", regionSize: 4 };
    const ps = { host: "127.0.0.1", port: 9 };
    const shared = { aggregators: 24, parameterServer: ps };
    assert.doesNotThrow(() =>
      parseSwitchConfig({
        ...shared,
        jobs: [atp, { ...atp, id: 2 }, { ...job, id: 3, offset: 4 }],
      }),
    );
    assert.match(
      configError({ ...shared, jobs: [{ ...job, id: 3 }, atp] }),
      /jobs\[1\]\.offset: region \[0, 4\) overlaps jobs\[0\]'s region \[0, 16\); only ATP jobs may share/,
    );
    assert.match(
      configError({ aggregators: 16, jobs: [{ id: 4, mode: "ps", fanIn: 2, window: 8 }] }),
      /^parameterServer: jobs\[0\] is a PS job, which needs a parameterServer/,
    );
    assert.match(
      configError({ ...shared, parameterServer: { host: "localhost", port: 9 }, jobs: [atp] }),
      /^parameterServer\.host: /,
    );
  });
});

describe("drop reasons", () => {
  it("has one unique name per contiguous value", () => {
    const values = Object.values(DropReason);
    assert.deepEqual(
      [...values].sort((a, b) => a - b),
      values.map((_, i) => i),
    );
    assert.equal(new Set(DROP_REASON_NAMES).size, values.length);
    assert.equal(DROP_REASON_NAMES[DropReason.duplicate], "duplicate");
  });
});

describe("scenario jobs", () => {
  const parse = (job: Record<string, unknown>) =>
    ScenarioJobSchema.safeParse({ mode: "ring", workers: 4, tensorBytes: "1MiB", ...job });
  it("takes a window in packets or bytes", () => {
    const bytes = parse({ window: "256KiB", elementsPerPacket: 256 });
    assert.equal(bytes.success && bytes.data.window, Math.floor((256 * 1024) / 1056));
    const packets = parse({ window: 32 });
    assert.equal(packets.success && packets.data.window, 32);
    assert.match(
      String(parse({ window: "lots" }).error),
      /packets in flight .* or bytes in flight/,
    );
  });
  it("runs collectives other than allReduce only in ring jobs, with a root among the workers", () => {
    assert.equal(parse({ operation: "allGather" }).success, true);
    assert.match(
      String(parse({ mode: "netreduce", operation: "allGather" }).error),
      /only ring jobs run other collectives/,
    );
    assert.match(
      String(parse({ operation: "broadcast", root: 4 }).error),
      /the root must be one of the 4/,
    );
    assert.match(
      String(parse({ operation: "allToAll", tensorBytes: 12 }).error),
      /allToAll cuts the tensor into 4 equal chunks; 3 elements do not/,
    );
  });
});

/** Runs `fn`, returning what it wrote on stderr instead of printing it. */
function stderrOf(fn: () => unknown): string {
  const write = process.stderr.write;
  let text = "";
  process.stderr.write = ((chunk: string | Uint8Array) => {
    text += String(chunk);
    return true;
  }) as typeof process.stderr.write;
  try {
    fn();
  } finally {
    process.stderr.write = write;
  }
  return text;
}

describe("renamed fields", () => {
  it("a switch config job's size is regionSize, with one deprecation line", () => {
    const { regionSize: _, ...old } = job;
    const warnings: string[] = [];
    const config = parseSwitchConfig(
      { aggregators: 32, jobs: [{ ...old, size: 16 }] },
      "old-config",
      (line) => warnings.push(line),
    );
    assert.deepEqual(warnings, ["old-config: jobs[0].size is deprecated, use regionSize"]);
    assert.deepEqual(config?.jobs[0], { ...job, mode: "netreduce", regionSize: 16 });
  });

  it("a scenario job's and a sweep's size are tensorBytes, in one deprecation line", () => {
    const old = () => ({ mode: "netreduce", workers: 2, size: "1MiB" });
    let scenario: Scenario | undefined;
    const stderr = stderrOf(() => {
      scenario = parseScenario(
        { name: "s", runs: [{ name: "r", jobs: [old(), old()], sweep: { size: [4096, 8192] } }] },
        "old-scenario",
      );
    });
    assert.equal(
      stderr,
      "old-scenario: runs[0].sweep.size (and 2 more) is deprecated, use tensorBytes\n",
    );
    assert.deepEqual(
      scenario?.runs[0].jobs.map((j) => j.tensorBytes),
      [1024 * 1024, 1024 * 1024],
    );
    assert.deepEqual(scenario?.runs[0].sweep, { tensorBytes: [4096, 8192] });
  });

  it("a scheduling scenario job's size is tensorBytes, with one deprecation line", () => {
    let schedule: ScheduleScenario | undefined;
    const stderr = stderrOf(() => {
      schedule = parseOrUsage(
        ScheduleScenarioSchema,
        { name: "s", jobs: [{ name: "a", class: "be", workers: 2, size: "1MiB" }] },
        "old-schedule",
      );
    });
    assert.equal(stderr, "old-schedule: jobs[0].size is deprecated, use tensorBytes\n");
    assert.equal(schedule?.jobs[0].tensorBytes, 1024 * 1024);
  });

  it("refuses the old and the new name at once, naming both", () => {
    assert.match(
      configError({ aggregators: 32, jobs: [{ ...job, size: 16 }] }),
      /^jobs\[0\]\.size: give regionSize or its deprecated name size, not both$/m,
    );
    const both = { mode: "netreduce", workers: 2, size: "1MiB", tensorBytes: "1MiB" };
    assert.throws(
      () => parseScenario({ name: "s", runs: [{ name: "r", jobs: [both] }] }, "both"),
      /runs\[0\]\.jobs\[0\]\.size: give tensorBytes or its deprecated name size, not both/,
    );
    assert.throws(
      () =>
        parseScenario(
          {
            name: "s",
            runs: [
              {
                name: "r",
                sweep: { size: [4], tensorBytes: [4] },
                jobs: [{ ...both, size: undefined }],
              },
            ],
          },
          "both",
        ),
      /runs\[0\]\.sweep\.size: give tensorBytes or its deprecated name size, not both/,
    );
    assert.throws(
      () =>
        parseOrUsage(
          ScheduleScenarioSchema,
          { name: "s", jobs: [{ name: "a", class: "be", workers: 2, size: 4, tensorBytes: 4 }] },
          "both",
        ),
      /jobs\[0\]\.size: give tensorBytes or its deprecated name size, not both/,
    );
  });
});
