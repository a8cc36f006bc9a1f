import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { checkLayout, importsOf } from "./layout.js";

// dist/test/layout.test.js -> the repository's root.
const root = fileURLToPath(new URL("../../", import.meta.url));

describe("layout: proto/ is the contract, runtime/ the plumbing, roles meet only over the wire", () => {
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
    write("bench/experiment.ts", 'import { POLICIES } from "../switch/memory.js";\n');
    write("bench/run.ts", 'import type { SwitchReport } from "../switch/report.js";\n');
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
      assert.ok(has("bench/experiment.ts", "../switch/memory.js"));
      assert.ok(has("bench/run.ts", "../switch/report.js"));
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
});
