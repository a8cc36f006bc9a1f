import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { Prng } from "../proto/prng.js";
import { SwitchReadySchema, SwitchStatsSchema } from "../proto/records.js";
import { ChildNode } from "../runner/processes.js";
import { testSeed } from "./seed.js";
import { STARTUP_MS } from "./waits.js";

// dist/test/package.test.js -> the repository's root.
const root = fileURLToPath(new URL("../../", import.meta.url));
const tsc = join(root, "node_modules", ".bin", "tsc");

/**
 * npm for the temporary project. Variables an `npm test` run exports would
 * point npm back at this repository (npm_config_local_prefix): drop them.
 */
function npm(args: string[], cwd: string) {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !/^npm_(config_local_prefix|package_|lifecycle_)/i.test(k),
    ),
  );
  const r = spawnSync("npm", args, { cwd, env, encoding: "utf8", timeout: 120_000 });
  assert.equal(r.status, 0, `npm ${args.join(" ")}: ${r.error?.message ?? ""}\n${r.stderr}`);
  return r.stdout;
}

/** What a program outside the repository writes: one worker of a 2-worker NetReduce job. */
const ALLREDUCE_MJS = `import { readFileSync } from "node:fs";
import { Worker } from "ina-emu/worker";

const [port, workerId] = process.argv.slice(2).map(Number);
const gradient = Float32Array.from(JSON.parse(readFileSync(new URL(\`input-\${workerId}.json\`, import.meta.url), "utf8")));
const worker = await Worker.connect({
  mode: "netreduce",
  switchHost: "127.0.0.1",
  switchPort: port,
  jobId: 1,
  workerId,
  fanIn: 2,
  regionOffset: 0,
  regionSize: 64,
  window: 32,
  elementsPerPacket: 256,
  scaleBits: 20,
});
const sum = await worker.allreduce(gradient);
await worker.close();
console.log(JSON.stringify({ event: "result", workerId, sum: Array.from(sum) }));
`;

/** Type-checked against the installed declarations; the last line must be an error. */
const CHECK_TS = `import { AllReduceOverflowError, Worker, type WorkerOptions } from "ina-emu/worker";

const options: WorkerOptions = {
  mode: "netreduce",
  switchHost: "127.0.0.1",
  switchPort: 9000,
  jobId: 1,
  workerId: 0,
  fanIn: 2,
  regionOffset: 0,
  regionSize: 256,
  window: 128,
  elementsPerPacket: 256,
  scaleBits: 20,
};
export async function allreduce(gradient: Float32Array): Promise<Float32Array> {
  const worker: Worker = await Worker.connect(options);
  try {
    return await worker.allreduce(gradient);
  } catch (error) {
    if (error instanceof AllReduceOverflowError) return error.output;
    throw error;
  } finally {
    await worker.close();
  }
}
// @ts-expect-error: the mode is netreduce, atp or ps (if the types were any, this would fail)
export const wrong: WorkerOptions = { ...options, mode: "ring" };
`;

describe("the packed package, installed in another project", () => {
  const children: ChildNode[] = [];
  let dir = "";
  let app = "";
  let files: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "ina-package-"));
    // dist/ is already built (npm test builds first): pack it as it is, without
    // running prepare, which would rebuild dist/ under the running tests.
    const packed = JSON.parse(
      npm(["pack", "--ignore-scripts", "--json", "--pack-destination", dir], root),
    ) as Array<{ filename: string; files: Array<{ path: string }> }>;
    files = packed[0].files.map((f) => f.path);
    const tarball = join(dir, packed[0].filename);
    console.log(`packed ${tarball}: ${files.length} files`);
    app = join(dir, "app");
    await mkdir(app);
    await writeFile(
      join(app, "package.json"),
      JSON.stringify({ name: "ina-emu-consumer", private: true, type: "module" }),
    );
    // Pinned to the repo's own @types/node, which the npm cache holds.
    const typesNode = JSON.parse(
      await readFile(join(root, "node_modules", "@types", "node", "package.json"), "utf8"),
    ).version;
    npm(
      [
        "install",
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
        "--prefix",
        app,
        tarball,
        `@types/node@${typesNode}`,
      ],
      app,
    );
  });

  after(async () => {
    await Promise.all(children.map((c) => c.stop()));
    if (dir !== "") await rm(dir, { recursive: true, force: true });
  });

  it("holds the bins, the library and its types, the scenarios and the docs; no tests, sources or maps", () => {
    for (const path of [
      "package.json",
      "README.md",
      "proto/README.md",
      "dist/worker/worker.js",
      "dist/worker/worker.d.ts",
      "dist/worker/core.d.ts",
      "dist/switch/cli.js",
      "dist/worker/cli.js",
      "dist/ps/cli.js",
      "dist/runner/experiment.js",
      "bench/scenarios/compare.json",
      "grafana/dashboards/ina-emu.json",
    ]) {
      assert.ok(files.includes(path), `the tarball holds ${path}`);
    }
    const unwanted = files.filter(
      (f) =>
        f.startsWith("dist/test/") ||
        f.endsWith(".map") ||
        (f.endsWith(".ts") && !f.endsWith(".d.ts")) ||
        f.startsWith("node_modules/"),
    );
    assert.deepEqual(unwanted, []);
  });

  it("type-checks a TypeScript program importing ina-emu/worker (nodenext)", async () => {
    await writeFile(join(app, "check.ts"), CHECK_TS);
    await writeFile(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "es2022",
          module: "nodenext",
          moduleResolution: "nodenext",
          strict: true,
          noEmit: true,
          types: ["node"],
          skipLibCheck: false,
        },
        files: ["check.ts"],
      }),
    );
    const r = spawnSync(tsc, ["-p", "."], { cwd: app, encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 0, `${r.error?.message ?? ""}${r.stdout}${r.stderr}`);
  });

  it("all-reduces across 2 workers importing ina-emu/worker, through the installed ina-switch", async () => {
    const seed = testSeed("package", 3);
    const prng = new Prng(seed);
    const elements = 1000;
    // Multiples of 1/256 in [-4, 4): exact in fixed point, so the sum is exact.
    const inputs = [0, 1].map(() =>
      Array.from({ length: elements }, () => Math.floor(prng.nextFloat() * 2048 - 1024) / 256),
    );
    for (const w of [0, 1]) {
      await writeFile(join(app, `input-${w}.json`), JSON.stringify(inputs[w]));
    }
    await writeFile(join(app, "allreduce.mjs"), ALLREDUCE_MJS);
    const config = join(app, "switch.json");
    await writeFile(
      config,
      JSON.stringify({
        aggregators: 64,
        jobs: [{ id: 1, mode: "netreduce", fanIn: 2, offset: 0, regionSize: 64, window: 32 }],
      }),
    );
    const sw = new ChildNode(
      "ina-switch",
      join(app, "node_modules", ".bin", "ina-switch"),
      ["--config", config, "--port", "0"],
      undefined,
      { raw: true },
    );
    children.push(sw);
    const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    console.log(`installed ina-switch: data port ${ready.dataPort}`);
    const workers = [0, 1].map((w) => {
      const child = new ChildNode(`worker ${w}`, join(app, "allreduce.mjs"), [
        String(ready.dataPort),
        String(w),
      ]);
      // node resolves ina-emu/worker from the script's folder: the temporary project.
      children.push(child);
      return child;
    });
    // The program's own result record: its sum.
    const ProgramResult = z.strictObject({
      event: z.literal("result"),
      workerId: z.int(),
      sum: z.array(z.number()),
    });
    const results = await Promise.all(workers.map((w) => w.waitFor(ProgramResult, STARTUP_MS)));
    const expected = inputs[0].map((x, i) => x + inputs[1][i]);
    for (const [w, result] of results.entries()) {
      assert.equal(result.workerId, w);
      assert.deepEqual(result.sum, expected, `worker ${w}'s sum`);
      assert.equal(await workers[w].waitExit(10_000), 0, workers[w].stderr);
    }
    assert.equal(await sw.stop(), 0);
    const stats = sw.recordsOf(SwitchStatsSchema).find((r) => r.final === true);
    assert.equal(stats?.aggregationsCompleted, Math.ceil(elements / 256));
  });
});
