import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  PsReadySchema,
  SwitchReadySchema,
  WorkerReadySchema,
  type WorkerResultRecord,
  WorkerResultSchema,
} from "../proto/records.js";
import { ChildNode } from "../runner/processes.js";
import {
  findPrometheus,
  queryPrometheus,
  ScrapeTargets,
  startPrometheus,
} from "../runner/prometheus.js";
import { SCRIPTS } from "../runner/run.js";
import { buildInfo } from "../runtime/metrics.js";
import { poll } from "./poll.js";
import { testSeed } from "./seed.js";
import { STARTUP_MS } from "./waits.js";

/** `name{labels}` (labels sorted by name) -> value, from a Prometheus text exposition. */
function parseExposition(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    const series = line.slice(0, at);
    const brace = series.indexOf("{");
    const labels: Record<string, string> = {};
    if (brace >= 0) {
      for (const m of series.slice(brace + 1, -1).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
        labels[m[1]] = m[2];
      }
    }
    out.set(key(brace >= 0 ? series.slice(0, brace) : series, labels), Number(line.slice(at + 1)));
  }
  return out;
}

/** The key parseExposition gives a series: `name{a="1",b="2"}`, labels sorted. */
function key(name: string, labels: Record<string, string> = {}): string {
  const pairs = Object.keys(labels)
    .sort()
    .map((l) => `${l}="${labels[l]}"`);
  return pairs.length === 0 ? name : `${name}{${pairs.join(",")}}`;
}

/** The ina_ metric families a PromQL query (or a Grafana label_values query) reads. */
function familiesIn(query: string): string[] {
  const values = /^label_values\(([^,)]+)/.exec(query);
  const expr = (values === null ? query : values[1])
    .replace(/\{[^}]*\}/g, "")
    .replace(/\b(by|without)\s*\([^)]*\)/g, "");
  return [...expr.matchAll(/\bina_[a-z0-9_]+/g)].map((m) =>
    m[0].replace(/_(bucket|sum|count)$/, ""),
  );
}

/** Metric family names in an exposition (from its # TYPE lines). */
function families(text: string): Set<string> {
  return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
}

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DASHBOARD = join(ROOT, "grafana", "dashboards", "ina-emu.json");

/** Gauges of prom-client's default metrics that promtool's lint flags (a `_total` gauge). */
const DEFAULT_METRICS_LINT = new Set([
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
]);

interface Series {
  metric: Record<string, string>;
  value: number;
}

/**
 * One short run as real processes (a PS, a switch and two 2-worker jobs,
 * NetReduce and ATP in a 4-aggregator pool, 1% loss), then every process's
 * /metrics is read, linted with promtool, scraped by a real Prometheus and
 * checked against the dashboard.
 */
describe("metrics, Prometheus and the dashboard", () => {
  const children: ChildNode[] = [];
  let dir = "";
  const packets = (512 * 1024) / 4 / 256;
  const expositions = new Map<string, string>();
  const results: WorkerResultRecord[] = [];
  const metricsUrls = new Map<string, string>();
  /** the Prometheus the scrape test starts, for the dashboard's queries */
  let prometheusUrl = "";
  const RUN = "metrics-run";
  const NAMES = ["nr", "atp"];

  before(async () => {
    const seed = testSeed("metrics run", 51);
    dir = await mkdtemp(join(tmpdir(), "ina-metrics-"));
    const config: Record<string, unknown> = {
      aggregators: 68,
      jobs: [
        { id: 1, name: "nr", mode: "netreduce", fanIn: 2, offset: 0, regionSize: 64, window: 32 },
        { id: 2, name: "atp", mode: "atp", fanIn: 2, offset: 64, regionSize: 4, window: 32 },
      ],
      faults: { seed, ingress: { drop: 0.01 }, egress: { drop: 0.01 } },
    };
    await writeFile(join(dir, "ps.json"), JSON.stringify(config));
    const ps = new ChildNode("ps", SCRIPTS.ps, ["--config", join(dir, "ps.json")]);
    children.push(ps);
    const psReady = await ps.waitFor(PsReadySchema, STARTUP_MS);
    metricsUrls.set("ps", String(psReady.metricsUrl));
    config.parameterServer = { host: "127.0.0.1", port: psReady.dataPort };
    await writeFile(join(dir, "switch.json"), JSON.stringify(config));
    const sw = new ChildNode("switch", SCRIPTS.switch, ["--config", join(dir, "switch.json")]);
    children.push(sw);
    const swReady = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    metricsUrls.set("switch", String(swReady.metricsUrl));
    const workers: ChildNode[] = [];
    for (const [job, mode, offset, size] of [
      [1, "netreduce", 0, 64],
      [2, "atp", 64, 4],
    ] as const) {
      for (let w = 0; w < 2; w++) {
        const worker = new ChildNode(`job ${job} worker ${w}`, SCRIPTS.worker, [
          ...["--switch", `127.0.0.1:${swReady.dataPort}`, "--mode", mode, "--job", String(job)],
          ...["--worker", String(w), "--fan-in", "2", "--window", "32"],
          ...[
            "--offset",
            String(offset),
            "--region-size",
            String(size),
            "--tensor-bytes",
            "512KiB",
          ],
          ...["--seed", String(seed + job), "--linger-ms", "120000", "--progress-ms", "0"],
        ]);
        children.push(worker);
        workers.push(worker);
      }
    }
    for (const [i, worker] of workers.entries()) {
      const ready = await worker.waitFor(WorkerReadySchema, STARTUP_MS);
      metricsUrls.set(`worker-${i}`, String(ready.metricsUrl));
    }
    for (const worker of workers) results.push(await worker.waitFor(WorkerResultSchema, 120_000));
    // The switch's /metrics is a snapshot its data path publishes twice a
    // second (runtime/http-front.ts): wait, up to 10 s, for one taken after
    // both jobs' last packets (job 1's aggregations all counted, and every
    // worker's contributions).
    for (let waited = 0; waited < 10_000; waited += 100) {
      const sw = parseExposition(await (await fetch(metricsUrls.get("switch") ?? "")).text());
      const nrDone =
        sw.get(
          key("ina_switch_aggregations_completed_total", {
            ina_job: "1",
            mode: "netreduce",
            ina_job_name: "nr",
          }),
        ) === packets;
      const contributions =
        sw.get(key("ina_switch_packets_received_total", { type: "contribution" })) ?? 0;
      if (nrDone && contributions >= 4 * packets) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    for (const [name, url] of metricsUrls) {
      const response = await fetch(url);
      assert.equal(response.status, 200);
      assert.match(response.headers.get("content-type") ?? "", /text\/plain/);
      expositions.set(name, await response.text());
    }
  });

  after(async () => {
    await Promise.all(children.map((c) => c.stop()));
    if (dir !== "") await rm(dir, { recursive: true, force: true });
  });

  it("every process exposes its families, and the values match the run", () => {
    for (const r of results) assert.equal(r.verified, true);
    const sw = parseExposition(expositions.get("switch") ?? "");
    // The ina-emu job is `ina_job` (Prometheus's `job` is the scrape job), with its mode and name.
    const nr = { ina_job: "1", mode: "netreduce", ina_job_name: "nr" };
    const atp = { ina_job: "2", mode: "atp", ina_job_name: "atp" };
    assert.equal(sw.get(key("ina_switch_aggregations_completed_total", nr)), packets);
    assert.ok((sw.get(key("ina_switch_collisions_total", atp)) ?? 0) > 0, "forced collisions");
    assert.ok((sw.get(key("ina_switch_fallbacks_total", atp)) ?? 0) > 0);
    assert.equal(sw.get(key("ina_switch_collisions_total", nr)), 0);
    assert.ok((sw.get(key("ina_switch_drops_total", { reason: "injectedDrop" })) ?? 0) > 0);
    const contributions =
      sw.get(key("ina_switch_packets_received_total", { type: "contribution" })) ?? 0;
    assert.ok(contributions >= 4 * packets);
    // Workers put several packets in a datagram: fewer datagrams than packets.
    const datagramsIn = sw.get(key("ina_switch_datagrams_total", { direction: "rx" })) ?? 0;
    assert.ok(datagramsIn > 0 && datagramsIn < contributions, `${datagramsIn} datagrams`);
    assert.ok((sw.get(key("ina_switch_datagrams_total", { direction: "tx" })) ?? 0) > 0);
    assert.equal(sw.get(key("ina_switch_region_size_aggregators", atp)), 4);
    assert.ok(sw.has(key("ina_switch_aggregators_in_use", nr)));
    for (const family of [
      "ina_switch_aggregators_in_use",
      "ina_switch_aggregation_latency_seconds",
      "ina_switch_evictions_total",
      "ina_switch_releases_total",
      "ina_manager_jobs",
      "ina_manager_memory_granted_aggregators",
      "ina_manager_deadlines_total",
      "ina_manager_job_completion_seconds",
    ]) {
      assert.ok(families(expositions.get("switch") ?? "").has(family), `switch exports ${family}`);
    }
    const ps = parseExposition(expositions.get("ps") ?? "");
    assert.equal(
      ps.get("ina_ps_aggregations_completed_total"),
      packets,
      "the PS acks each ATP PSN once",
    );
    assert.ok((ps.get(key("ina_ps_pieces_received_total", { kind: "full" })) ?? 0) > 0);
    assert.ok((ps.get(key("ina_ps_pieces_received_total", { kind: "collision" })) ?? 0) > 0);
    for (const [i, r] of results.entries()) {
      const worker = parseExposition(expositions.get(`worker-${i}`) ?? "");
      const labels =
        i < 2
          ? { ina_job: "1", worker: String(i % 2), mode: "netreduce" }
          : { ina_job: "2", worker: String(i % 2), mode: "atp" };
      assert.equal(worker.get(key("ina_worker_retransmissions_total", labels)), r.retransmissions);
      assert.equal(
        worker.get(key("ina_worker_spurious_timeouts_total", labels)),
        r.spuriousTimeouts,
      );
      assert.equal(worker.get(key("ina_worker_packets_sent_total", labels)), r.packetsSent);
      assert.equal(worker.get(key("ina_worker_allreduce_duration_seconds_count", labels)), 1);
      assert.equal(worker.get(key("ina_worker_progress_ratio", labels)), 1);
    }
  });

  it("no series exports a `job` label; every process exports build info and the default process metrics", async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8"));
    const head = spawnSync("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"], {
      encoding: "utf8",
    });
    // This test runs in a git checkout (a release tarball would say "unknown").
    const commit = head.status === 0 ? head.stdout.trim() : "unknown";
    for (const [name, text] of expositions) {
      assert.doesNotMatch(text, /[{,]job="/, `${name}: a job label clashes with the scrape job`);
      const values = parseExposition(text);
      assert.equal(
        values.get(key("ina_build_info", { version: pkg.version, commit })),
        1,
        `${name}: ina_build_info{version="${pkg.version}",commit="${commit}"} 1`,
      );
      const exported = families(text);
      for (const family of [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "nodejs_eventloop_lag_seconds",
        "nodejs_heap_size_used_bytes",
        "nodejs_gc_duration_seconds",
      ]) {
        assert.ok(exported.has(family), `${name} exports ${family}`);
      }
      assert.ok((values.get("process_cpu_seconds_total") ?? 0) > 0, `${name}: it used CPU`);
    }
  });

  it("build info: the version from package.json, the commit only in the package's own checkout", async () => {
    const fresh = await mkdtemp(join(tmpdir(), "ina-build-"));
    try {
      await writeFile(join(fresh, "package.json"), JSON.stringify({ version: "9.8.7" }));
      // Not a git checkout (and not the top of one): the commit is unknown, nothing throws.
      assert.deepEqual(await buildInfo(fresh), { version: "9.8.7", commit: "unknown" });
      const sub = join(fresh, "sub");
      await mkdir(sub);
      assert.deepEqual(await buildInfo(sub), { version: "unknown", commit: "unknown" });
      const git = (...args: string[]) =>
        spawnSync("git", ["-C", fresh, "-c", "user.name=t", "-c", "user.email=t@t", ...args], {
          encoding: "utf8",
        });
      assert.equal(git("init", "-q").status, 0, "git is installed");
      // A checkout without a commit yet: HEAD does not resolve.
      assert.equal((await buildInfo(fresh)).commit, "unknown");
      assert.equal(git("commit", "-q", "--allow-empty", "-m", "first").status, 0);
      const head = git("rev-parse", "--short", "HEAD").stdout.trim();
      assert.deepEqual(await buildInfo(fresh), { version: "9.8.7", commit: head });
      // A package inside someone else's checkout does not take its commit.
      await writeFile(join(sub, "package.json"), JSON.stringify({ version: "1.0.0" }));
      assert.deepEqual(await buildInfo(sub), { version: "1.0.0", commit: "unknown" });
    } finally {
      await rm(fresh, { recursive: true, force: true });
    }
  });

  it("promtool check metrics passes on every exposition", () => {
    const probe = spawnSync("promtool", ["--version"], { encoding: "utf8" });
    assert.equal(
      probe.error,
      undefined,
      "promtool not found: install Debian's prometheus package (.ci/run does)",
    );
    for (const [name, text] of expositions) {
      const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
      // promtool reports lint problems as `metric_name message` lines, exit status 3.
      const problems = `${r.stdout}${r.stderr}`.split("\n").filter((line) => line.trim() !== "");
      const ours = problems.filter((line) => !DEFAULT_METRICS_LINT.has(line.split(" ")[0]));
      assert.deepEqual(ours, [], `${name}: promtool check metrics`);
      assert.ok(
        r.status === 0 || (r.status === 3 && problems.length > 0),
        `${name}: promtool exited ${r.status}: ${r.stdout}${r.stderr}`,
      );
    }
  });

  it("a real Prometheus scrapes the run: `job` is the scrape job, `ina_job` the ina-emu job", async () => {
    const binary = findPrometheus();
    assert.notEqual(binary, null, "prometheus not found: install Debian's prometheus package");
    const targets = new ScrapeTargets(join(dir, "prometheus"));
    await targets.init();
    // The target labels the runner gives (runner/run.ts): process, run, a worker's job name.
    for (const [name, url] of metricsUrls) {
      const worker = /^worker-(\d+)$/.exec(name);
      await targets.add(name, url, {
        process: name.replace(/-\d+$/, ""),
        run: RUN,
        ...(worker === null ? {} : { ina_job_name: NAMES[Number(worker[1]) < 2 ? 0 : 1] }),
      });
    }
    const prometheus = await startPrometheus(binary as string, targets.configFile, dir);
    children.push(prometheus.child);
    prometheusUrl = prometheus.url;
    let aggregations: Series[] = [];
    let retransmissions: Series[] = [];
    await poll("the switch and all four workers scraped", 60_000, async () => {
      aggregations = await queryPrometheus(
        prometheus.url,
        'ina_switch_aggregations_completed_total{ina_job="1"}',
      );
      retransmissions = await queryPrometheus(prometheus.url, "ina_worker_retransmissions_total");
      return aggregations.length > 0 && retransmissions.length === 4 ? true : null;
    });
    assert.equal(aggregations.length, 1, "the switch was scraped");
    assert.equal(aggregations[0].value, packets);
    assert.deepEqual(
      { ...aggregations[0].metric, instance: "", instance_name: "" },
      {
        __name__: "ina_switch_aggregations_completed_total",
        job: "ina-emu",
        instance: "",
        instance_name: "",
        process: "switch",
        run: RUN,
        ina_job: "1",
        ina_job_name: "nr",
        mode: "netreduce",
      },
    );
    assert.equal(retransmissions.length, 4, "all four workers were scraped");
    const total = retransmissions.reduce((n, r) => n + r.value, 0);
    assert.equal(
      total,
      results.reduce((n, r) => n + r.retransmissions, 0),
    );
    for (const r of retransmissions) {
      assert.equal(r.metric.job, "ina-emu");
      const nr = r.metric.ina_job === "1";
      assert.equal(r.metric.mode, nr ? "netreduce" : "atp");
      assert.equal(r.metric.ina_job_name, nr ? "nr" : "atp");
      assert.equal(r.metric.run, RUN);
    }
    // Every target scraped at least once (a loaded host may lag a scrape).
    const up = await poll("every target's up series", 60_000, async () => {
      const series = await queryPrometheus(prometheus.url, "up");
      return series.length === metricsUrls.size ? series : null;
    });
    assert.equal(up.length, metricsUrls.size);
    assert.ok(up.every((u) => u.value === 1));
    // One meaning of `job` on every series, up and the PS's included; nothing renamed aside.
    const jobs = await queryPrometheus(prometheus.url, 'count by (job) ({__name__=~".+"})');
    assert.deepEqual(
      jobs.map((j) => j.metric),
      [{ job: "ina-emu" }],
    );
    const labels = (await (await fetch(`${prometheus.url}/api/v1/labels`)).json()) as {
      data: string[];
    };
    assert.deepEqual(
      labels.data.filter((l) => l.startsWith("exported_")),
      [],
    );
    const builds = await queryPrometheus(prometheus.url, "ina_build_info");
    assert.deepEqual(builds.map((b) => b.metric.process).sort(), [
      "ps",
      "switch",
      "worker",
      "worker",
      "worker",
      "worker",
    ]);
  });

  it("the dashboard parses and every panel's query names an exported metric", async () => {
    const dashboard = JSON.parse(await readFile(DASHBOARD, "utf8"));
    const exported = new Set<string>();
    for (const text of expositions.values()) for (const f of families(text)) exported.add(f);
    const queries: string[] = dashboard.panels.flatMap((p: { targets: Array<{ expr: string }> }) =>
      p.targets.map((t) => t.expr),
    );
    const variables: Array<{ name: string; type: string; query: { query: string } }> =
      dashboard.templating.list;
    assert.deepEqual(
      variables.map((v) => v.name),
      ["datasource", "run", "mode", "ina_job"],
    );
    queries.push(...variables.filter((v) => v.type === "query").map((v) => v.query.query));
    assert.ok(queries.length >= 15);
    for (const query of queries) {
      const names = familiesIn(query);
      assert.ok(names.length > 0, `a query without an ina_ metric: ${query}`);
      // This run has no emulated links: test/dashboard.test.ts checks those against the registries.
      for (const name of names.filter((n) => !n.startsWith("ina_link_"))) {
        assert.ok(exported.has(name), `${name} is not exported (${query})`);
      }
      assert.doesNotMatch(
        query,
        /\bjob\s*[=!~]/,
        `the scrape job is not the ina-emu job: ${query}`,
      );
    }
  });

  it("the dashboard's per-job panels tell runs, modes and jobs apart, on the live Prometheus", async () => {
    assert.notEqual(prometheusUrl, "", "the scrape test started Prometheus");
    const dashboard = JSON.parse(await readFile(DASHBOARD, "utf8"));
    const targets: Array<{ expr: string; legendFormat: string }> = dashboard.panels.flatMap(
      (p: { targets: Array<{ expr: string; legendFormat: string }> }) => p.targets,
    );
    // Every variable at "All"; $__rate_interval as Grafana makes it of a 1 s scrape interval (4 s), and more.
    const live = (expr: string) =>
      expr.replace(/\$(run|mode|ina_job)\b/g, ".*").replaceAll("$__rate_interval", "10s");
    const perJob = targets.filter((t) => t.expr.includes("$ina_job"));
    assert.ok(perJob.length >= 10);
    for (const t of perJob) {
      assert.match(t.expr, /run=~"\$run"/, t.expr);
      assert.match(t.expr, /mode=~"\$mode"/, t.expr);
      for (const label of ["run", "mode", "ina_job"]) {
        assert.ok(t.legendFormat.includes(`{{${label}}}`), `${t.expr}: legend shows ${label}`);
      }
    }
    // The switch's and workers' per-job panels have both jobs, as separate series.
    const ofTheRun = perJob.filter((t) => /ina_(switch|worker)_/.test(t.expr));
    const answers = await poll(
      "every switch and worker panel answers (rates need 2 scrapes)",
      60_000,
      async () => {
        const out = await Promise.all(
          ofTheRun.map((t) => queryPrometheus(prometheusUrl, live(t.expr))),
        );
        return out.every((series) => series.length >= 2) ? out : null;
      },
    );
    for (const [i, t] of ofTheRun.entries()) {
      const modes = answers[i].map((series) => `${series.metric.mode} ${series.metric.ina_job}`);
      assert.deepEqual([...new Set(modes)].sort(), ["atp 2", "netreduce 1"], t.expr);
    }
    // Every label a legend shows is on every series its query returns.
    for (const t of targets) {
      const series = await queryPrometheus(prometheusUrl, live(t.expr));
      const shown = [...t.legendFormat.matchAll(/\{\{(\w+)\}\}/g)].map((m) => m[1]);
      for (const s of series) {
        for (const label of shown) {
          assert.ok((s.metric[label] ?? "") !== "", `${t.expr}: no ${label} for ${t.legendFormat}`);
        }
      }
    }
  });
});
