import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ScrapeConfigSchema } from "../proto/records.js";
import { ChildNode } from "../runner/processes.js";
import {
  findPrometheus,
  freePort,
  queryPrometheus,
  startPrometheus,
} from "../runner/prometheus.js";
import { SCRIPTS } from "../runner/run.js";
import { poll } from "./poll.js";
import { STARTUP_MS } from "./waits.js";

const EXPERIMENT = SCRIPTS.switch.replace(/switch\/cli\.js$/, "runner/experiment.js");

/**
 * The README's "run your own Prometheus" recipe, on a fresh folder standing in
 * for a fresh clone: write the scrape config before any run, start Prometheus
 * on it by its relative path from that folder, run an experiment there with
 * the default (relative) --scrape-dir, and find the run's series through
 * Prometheus's HTTP API. The run holds itself open with a job that starts an
 * hour later, so the scrape never races the run's end; the test stops it.
 */
describe("the README's own-Prometheus recipe, on a fresh folder", () => {
  const children: ChildNode[] = [];
  let home = "";
  const packets = (256 * 1024) / 4 / 256;

  after(async () => {
    await Promise.all(children.map((c) => c.stop()));
    if (home !== "") await rm(home, { recursive: true, force: true });
  });

  it("writes the scrape config before any run; Prometheus started on it scrapes the run", async () => {
    const binary = findPrometheus();
    assert.notEqual(binary, null, "prometheus not found: install Debian's prometheus package");
    home = await mkdtemp(join(tmpdir(), "ina-recipe-"));

    // 1. npm start -- --write-scrape-config (no run yet)
    const write = new ChildNode(
      "write-scrape-config",
      EXPERIMENT,
      ["--write-scrape-config"],
      undefined,
      {
        cwd: home,
      },
    );
    children.push(write);
    assert.equal(await write.waitExit(STARTUP_MS), 0, write.stderr);
    const [printed] = write.recordsOf(ScrapeConfigSchema);
    const configFile = join(home, "results", "prometheus", "prometheus.yml");
    const targetsFile = join(home, "results", "prometheus", "targets.json");
    assert.deepEqual(printed, { event: "scrape-config", configFile, targetsFile });
    assert.deepEqual(JSON.parse(await readFile(targetsFile, "utf8")), []);

    // 2. prometheus --config.file=results/prometheus/prometheus.yml, from the same folder
    const prometheus = await startPrometheus(
      binary as string,
      join("results", "prometheus", "prometheus.yml"),
      await mkdtemp(join(home, "tsdb-")),
      { cwd: home },
    );
    children.push(prometheus.child);

    // 3. npm start -- --scenario watched.json (default --scrape-dir, relative to the folder)
    await writeFile(
      join(home, "watched.json"),
      JSON.stringify({
        name: "watched",
        seed: 3,
        runs: [
          {
            name: "watched",
            aggregators: 64,
            jobs: [
              { name: "nr", mode: "netreduce", workers: 2, tensorBytes: "256KiB", window: 16 },
              // holds the run (switch and this worker) open until the test stops it
              {
                name: "held",
                mode: "netreduce",
                workers: 1,
                tensorBytes: "4KiB",
                window: 16,
                startMs: 3_600_000,
              },
            ],
          },
        ],
      }),
    );
    const run = new ChildNode(
      "experiment",
      EXPERIMENT,
      ["--scenario", "watched.json", "--results", ""],
      undefined,
      // Stopped by a signal, the experiment leaves its run's temporary folder: keep it in ours.
      { cwd: home, env: { ...process.env, TMPDIR: await mkdtemp(join(home, "tmp-")) } },
    );
    children.push(run);

    // 4. The run's series, through the HTTP API.
    const targets = await poll(
      "two targets up (the switch and the held worker)",
      60_000,
      async () => {
        if (run.exitCode !== null) throw new Error(`experiment exited: ${run.stderr}`);
        const response = await fetch(`${prometheus.url}/api/v1/targets?state=active`);
        const body = (await response.json()) as {
          data: {
            activeTargets: Array<{
              health: string;
              labels: Record<string, string>;
              discoveredLabels: Record<string, string>;
            }>;
          };
        };
        const up = body.data.activeTargets.filter(
          (t) => t.health === "up" && t.labels.run === "watched",
        );
        const processes = new Set(up.map((t) => t.labels.process));
        return processes.has("switch") && processes.has("worker") ? up : null;
      },
    );
    for (const t of targets) assert.equal(t.discoveredLabels.__meta_filepath, targetsFile);
    const completed = await poll("the nr job's aggregations, all of them", 60_000, async () => {
      if (run.exitCode !== null) throw new Error(`experiment exited: ${run.stderr}`);
      const found = await queryPrometheus(
        prometheus.url,
        'ina_switch_aggregations_completed_total{run="watched"}',
      );
      const nr = found.filter((s) => s.value === packets);
      return nr.length > 0 ? found : null;
    });
    // The scenario's job names reach the switch's series (through its config) and the workers'.
    assert.deepEqual(
      completed
        .map((c): Record<string, string> => ({ ...c.metric, instance: "", instance_name: "" }))
        .sort((x, y) => x.ina_job.localeCompare(y.ina_job)),
      [
        ["1", "nr"],
        ["2", "held"],
      ].map(([id, name]) => ({
        __name__: "ina_switch_aggregations_completed_total",
        job: "ina-emu",
        instance: "",
        instance_name: "",
        process: "switch",
        run: "watched",
        ina_job: id,
        ina_job_name: name,
        mode: "netreduce",
      })),
    );
    // By name: the nr job's workers may still be listed, or just gone, by now.
    const held = await poll("the held worker's progress", 60_000, async () => {
      const found = await queryPrometheus(
        prometheus.url,
        'ina_worker_progress_ratio{run="watched", ina_job_name="held"}',
      );
      return found.length > 0 ? found : null;
    });
    assert.equal(held.length, 1, "the held job's one worker");
    assert.equal(held[0].value, 0, "the held job has not started");
    assert.equal(held[0].metric.ina_job, "2");
    assert.equal(held[0].metric.ina_job_name, "held");
    assert.equal(held[0].metric.job, "ina-emu");

    // Stopping the experiment stops the run's processes.
    assert.equal(await run.stop(10_000), 130);
  });
});

/**
 * `--prometheus` with `--results`: a run too short for a scrape without the
 * final-scrape linger (under a second of all-reduce) is still in the kept
 * series, and the command the runner prints to read them works as printed,
 * from another folder, with only its port changed (the test binds no fixed
 * port).
 */
describe("--prometheus keeps the run's series where the results go", () => {
  const children: ChildNode[] = [];
  let home = "";

  after(async () => {
    await Promise.all(children.map((c) => c.stop()));
    if (home !== "") await rm(home, { recursive: true, force: true });
  });

  it("the printed command serves the run's final values, scraped at --scrape-interval", async () => {
    const binary = findPrometheus();
    assert.notEqual(binary, null, "prometheus not found: install Debian's prometheus package");
    home = await mkdtemp(join(tmpdir(), "ina-kept-"));
    await writeFile(
      join(home, "short.json"),
      JSON.stringify({
        name: "short",
        seed: 5,
        runs: [
          {
            name: "kept",
            aggregators: 64,
            jobs: [{ name: "nr", mode: "netreduce", workers: 2, tensorBytes: "64KiB", window: 16 }],
          },
        ],
      }),
    );
    const run = new ChildNode(
      "experiment",
      EXPERIMENT,
      [
        ...["--scenario", "short.json", "--results", "results", "--scrape-dir", "scrape"],
        ...["--prometheus", "--scrape-interval", "500ms"],
      ],
      undefined,
      { cwd: home, env: { ...process.env, TMPDIR: await mkdtemp(join(home, "tmp-")) } },
    );
    children.push(run);
    assert.equal(await run.waitExit(2 * STARTUP_MS), 0, run.stderr);
    assert.match(
      await readFile(join(home, "scrape", "prometheus.yml"), "utf8"),
      /scrape_interval: 500ms/,
    );
    const hint =
      /^prometheus time series kept in (\S+) \((\S+) to (\S+)\); to query them: (prometheus .*)$/m.exec(
        run.stderr,
      );
    assert.ok(hint !== null, run.stderr);
    const [, kept, , endedAt, command] = hint;
    assert.equal(kept, join(home, "results", kept.split("/").at(-1) ?? ""));
    assert.match(kept, /\/short-.*\.prometheus$/);
    const words = command.split(" ");
    assert.ok(words.includes("--web.listen-address=127.0.0.1:9090"), command);
    const port = await freePort();
    const prometheus = new ChildNode(
      "kept prometheus",
      binary as string,
      words.slice(1).map((w) => w.replace("127.0.0.1:9090", `127.0.0.1:${port}`)),
      undefined,
      { raw: true, cwd: await mkdtemp(join(home, "elsewhere-")) },
    );
    children.push(prometheus);
    const url = `http://127.0.0.1:${port}`;
    await poll("the kept Prometheus ready", 60_000, async () => {
      if (prometheus.exitCode !== null) throw new Error(`prometheus exited: ${prometheus.stderr}`);
      const response = await fetch(`${url}/-/ready`).catch(() => null);
      return response?.ok ? true : null;
    });
    const at = async (query: string) => {
      const time = new Date(endedAt).getTime() / 1000;
      const response = await fetch(
        `${url}/api/v1/query?query=${encodeURIComponent(query)}&time=${time}`,
      );
      const body = (await response.json()) as {
        data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
      };
      return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
    };
    // The series went stale as their targets went: the last value of each, up to the run's end.
    // Each worker's last scrape came after its result: its progress is whole.
    const progress = await at('last_over_time(ina_worker_progress_ratio{run="kept"}[10m])');
    assert.deepEqual(
      progress.map((p) => [p.metric.worker, p.value]).sort(),
      [
        ["0", 1],
        ["1", 1],
      ],
      JSON.stringify(progress),
    );
    const completed = await at(
      'last_over_time(ina_switch_aggregations_completed_total{run="kept"}[10m])',
    );
    assert.equal(completed.length, 1);
    assert.equal(completed[0].value, (64 * 1024) / 4 / 256, "every aggregation of the run");
    // It only serves what was kept: no targets of later runs scraped into it.
    const targets = (await (await fetch(`${url}/api/v1/targets`)).json()) as {
      data: { activeTargets: unknown[] };
    };
    assert.deepEqual(targets.data.activeTargets, []);
  });
});
