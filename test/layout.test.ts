import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { checkLayout, importsOf } from "./layout.js";

// dist/test/layout.test.js -> the repository's root.
const root = fileURLToPath(new URL("../../", import.meta.url));

describe("layout: proto/ is the contract, runtime/ the plumbing, roles meet only over the wire, executors only in experiment/", () => {
  it("holds for the source tree", () => {
    const violations = checkLayout(root);
    assert.deepEqual(
      violations.map((v) => `${v.file}: ${v.specifier}: ${v.why}`),
      [],
    );
  });

  it("reads every form of import", () => {
    const source = [
      'import { a } from "../proto/wire.js";',
      'import type { B } from "./b.js";',
      'import {\n  c,\n  d,\n} from "../runtime/cli.js";',
      'export { e } from "../switch/core.js";',
      'import "./side-effect.js";',
      'const f = await import("../ps/core.js");',
      '// "not an import" from "../worker/cli.js";',
    ].join("\n");
    assert.deepEqual(importsOf(source), [
      "../proto/wire.js",
      "./b.js",
      "../runtime/cli.js",
      "../switch/core.js",
      "./side-effect.js",
      "../ps/core.js",
    ]);
  });

  describe("fails, naming the file and the import, on a tree that breaks the plan", () => {
    const fixture = mkdtempSync(join(tmpdir(), "ina-layout-"));
    after(() => rmSync(fixture, { recursive: true, force: true }));
    const write = (path: string, text: string) => {
      mkdirSync(dirname(join(fixture, path)), { recursive: true });
      writeFileSync(join(fixture, path), text);
    };
    write("proto/README.md", "| `proto/wire.ts` | constants |\n| `proto/cli.ts` | CLI |\n");
    write("proto/wire.ts", "export const HEADER_BYTES = 32;\n");
    // 1. process plumbing and prom-client helpers in the contract
    write(
      "proto/cli.ts",
      'import { readFile } from "node:fs/promises";\nexport const out = () => process.stdout;\n',
    );
    write("proto/metrics.ts", 'import { Counter } from "prom-client";\n');
    // 2. roles importing another role's adapter
    write("worker/cli.ts", 'import { serveMetrics } from "../switch/server.js";\n');
    write("ps/server.ts", 'import { bindDataSocket } from "../switch/server.js";\n');
    // 3. the runner importing a role's insides, not only its records
    write("runner/experiment.ts", 'import { POLICIES } from "../switch/memory.js";\n');
    write("runner/run.ts", 'import type { SwitchReport } from "../switch/report.js";\n');
    // allowed: the benchmark measures a role's sans-IO core
    write("bench/bench.ts", 'import { SwitchCore } from "../switch/core.js";\n');
    // 4. an implementation tool in the contract, unlisted in the spec
    write("proto/slots.ts", 'import { HEADER_BYTES } from "./wire.js";\n');
    // and runtime/ reaching into a role
    write("runtime/serve.ts", 'import { SwitchCore } from "../switch/core.js";\n');
    const found = checkLayout(fixture);
    const has = (file: string, specifier: string) =>
      found.find((v) => v.file === file && v.specifier === specifier);

    it("proto/ doing I/O, using process, importing prom-client", () => {
      assert.match(has("proto/cli.ts", "node:fs/promises")?.why ?? "", /Node modules/);
      assert.match(has("proto/cli.ts", "process")?.why ?? "", /process/);
      assert.match(has("proto/metrics.ts", "prom-client")?.why ?? "", /only zod/);
    });

    it("a role importing another role", () => {
      assert.match(has("worker/cli.ts", "../switch/server.js")?.why ?? "", /over the wire/);
      assert.match(has("ps/server.ts", "../switch/server.js")?.why ?? "", /over the wire/);
    });

    it("the runner importing a role, while the benchmark may use a core", () => {
      assert.ok(has("runner/experiment.ts", "../switch/memory.js"));
      assert.ok(has("runner/run.ts", "../switch/report.js"));
      assert.equal(has("bench/bench.ts", "../switch/core.js"), undefined);
    });

    it("a proto/ file the spec does not list, and runtime/ importing a role", () => {
      assert.match(has("proto/slots.ts", "proto/README.md")?.why ?? "", /not listed/);
      assert.equal(has("proto/wire.ts", "proto/README.md"), undefined);
      assert.match(has("runtime/serve.ts", "../switch/core.js")?.why ?? "", /not switch/);
    });

    it("nothing else", () => {
      assert.equal(found.length, 10, found.map((v) => `${v.file} ${v.specifier}`).join("\n"));
    });
  });

  describe("fails on executors that meet outside experiment/, and a simulator that could start a process", () => {
    const fixture = mkdtempSync(join(tmpdir(), "ina-layout-executors-"));
    after(() => rmSync(fixture, { recursive: true, force: true }));
    const write = (path: string, text: string) => {
      mkdirSync(dirname(join(fixture, path)), { recursive: true });
      writeFileSync(join(fixture, path), text);
    };
    // 1. the simulator importing the process runner, and the runner the simulator
    write("sim/cli.ts", 'import { runScenarioRun } from "../runner/run.js";\n');
    write(
      "runner/run.ts",
      'import { spawn } from "node:child_process";\nimport { simulateRun } from "../sim/simulate.js";\n' +
        'import { jobResult } from "../experiment/results.js";\n',
    );
    // 2. the experiment layer importing a role, an executor, node:child_process
    write(
      "experiment/results.ts",
      'import { switchReport } from "../switch/report.js";\nimport { parseOrUsage } from "../runtime/cli.js";\n',
    );
    write("experiment/table.ts", 'import { SCRIPTS } from "../runner/run.js";\n');
    write("experiment/provenance.ts", 'import { execFile } from "node:child_process";\n');
    write("runtime/cli.ts", 'import { readFile } from "node:fs/promises";\n');
    // 3. a role importing another role
    write("switch/core.ts", 'import { WorkerCore } from "../worker/core.js";\n');
    write("worker/core.ts", "export class WorkerCore {}\n");
    // 4. the simulator reaching node:child_process through runtime/ (allowed directly, not by closure)
    write(
      "sim/simulate.ts",
      'import { serveMetrics } from "../runtime/http.js";\nimport { jobResult } from "../experiment/results.js";\n' +
        'import { SwitchCore } from "../switch/core.js";\n',
    );
    write("runtime/http.ts", 'import { buildInfo } from "./metrics.js";\n');
    write("runtime/metrics.ts", 'import { execFile } from "node:child_process";\n');
    // allowed: bench/ drives both executors
    write(
      "bench/reliability.ts",
      'import { runScenarioRun } from "../runner/run.js";\nimport { simulateRun } from "../sim/simulate.js";\n',
    );
    const found = checkLayout(fixture);
    const has = (file: string, specifier: string) =>
      found.find((v) => v.file === file && v.specifier === specifier);

    it("sim/ importing runner/, and runner/ importing sim/", () => {
      assert.match(
        has("sim/cli.ts", "../runner/run.js")?.why ?? "",
        /executor sim\/ imports executor runner\//,
      );
      assert.match(
        has("runner/run.ts", "../sim/simulate.js")?.why ?? "",
        /executor runner\/ imports executor sim\//,
      );
      assert.equal(has("runner/run.ts", "node:child_process"), undefined);
      assert.equal(has("runner/run.ts", "../experiment/results.js"), undefined);
      // and, through the runner, sim/cli.ts could start a process
      assert.match(
        has("sim/cli.ts", "node:child_process")?.why ?? "",
        /sim\/cli.ts -> runner\/run.ts ->/,
      );
    });

    it("experiment/ importing a role, an executor or node:child_process", () => {
      assert.match(
        has("experiment/results.ts", "../switch/report.js")?.why ?? "",
        /imports role switch\//,
      );
      assert.equal(has("experiment/results.ts", "../runtime/cli.js"), undefined);
      assert.match(
        has("experiment/table.ts", "../runner/run.js")?.why ?? "",
        /imports executor runner\//,
      );
      assert.match(has("experiment/table.ts", "node:child_process")?.why ?? "", /never reach/);
      const direct = found.filter((v) => v.file === "experiment/provenance.ts");
      assert.equal(direct.length, 2, direct.map((v) => v.why).join("\n"));
      assert.ok(direct.some((v) => /must not import node:child_process/.test(v.why)));
      assert.ok(direct.some((v) => /never reach node:child_process/.test(v.why)));
    });

    it("a role importing another role", () => {
      assert.match(has("switch/core.ts", "../worker/core.js")?.why ?? "", /over the wire/);
    });

    it("sim/ reaching node:child_process indirectly, naming the chain", () => {
      assert.equal(
        has("sim/simulate.ts", "node:child_process")?.why,
        "sim/ must never reach node:child_process, not even indirectly: " +
          "sim/simulate.ts -> runtime/http.ts -> runtime/metrics.ts -> node:child_process",
      );
      assert.equal(has("sim/simulate.ts", "../switch/core.js"), undefined);
      assert.equal(has("sim/simulate.ts", "../runtime/http.js"), undefined);
    });

    it("nothing else: bench/ may drive both executors", () => {
      assert.equal(
        found.filter((v) => v.file.startsWith("bench/")).length,
        0,
        found.map((v) => `${v.file} ${v.specifier}`).join("\n"),
      );
      assert.equal(found.length, 10, found.map((v) => `${v.file} ${v.specifier}`).join("\n"));
    });
  });
});
