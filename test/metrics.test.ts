import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ChildNode, type ProcessRecord } from "../bench/processes.js";
import {
  findPrometheus,
  queryPrometheus,
  ScrapeTargets,
  startPrometheus,
} from "../bench/prometheus.js";
import { SCRIPTS } from "../bench/run.js";
import { testSeed } from "./seed.js";

/** `name{labels}` -> value, from a Prometheus text exposition. */
function parseExposition(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** Metric family names in an exposition (from its # TYPE lines). */
function families(text: string): Set<string> {
  return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
}

const DASHBOARD = fileURLToPath(new URL("../../grafana/dashboards/ina-emu.json", import.meta.url));

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
  const results: ProcessRecord[] = [];
  const metricsUrls = new Map<string, string>();

  before(async () => {
    const seed = testSeed("metrics run", 51);
    dir = await mkdtemp(join(tmpdir(), "ina-metrics-"));
    const config: Record<string, unknown> = {
      aggregators: 68,
      jobs: [
        { id: 1, mode: "netreduce", fanIn: 2, offset: 0, size: 64, window: 32 },
        { id: 2, mode: "atp", fanIn: 2, offset: 64, size: 4, window: 32 },
      ],
      faults: { seed, ingress: { drop: 0.01 }, egress: { drop: 0.01 } },
    };
    await writeFile(join(dir, "ps.json"), JSON.stringify(config));
    const ps = new ChildNode("ps", SCRIPTS.ps, ["--config", join(dir, "ps.json")]);
    children.push(ps);
    const psReady = await ps.waitFor("ready", 15_000);
    metricsUrls.set("ps", String(psReady.metricsUrl));
    config.parameterServer = { host: "127.0.0.1", port: Number(psReady.dataPort) };
    await writeFile(join(dir, "switch.json"), JSON.stringify(config));
    const sw = new ChildNode("switch", SCRIPTS.switch, ["--config", join(dir, "switch.json")]);
    children.push(sw);
    const swReady = await sw.waitFor("ready", 15_000);
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
          ...["--offset", String(offset), "--size", String(size), "--size-bytes", "512KiB"],
          ...["--seed", String(seed + job), "--linger-ms", "120000", "--progress-ms", "0"],
        ]);
        children.push(worker);
        workers.push(worker);
      }
    }
    for (const [i, worker] of workers.entries()) {
      const ready = await worker.waitFor("ready", 30_000);
      metricsUrls.set(`worker-${i}`, String(ready.metricsUrl));
    }
    for (const worker of workers) results.push(await worker.waitFor("result", 120_000));
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
    assert.equal(
      sw.get('ina_switch_aggregations_completed_total{job="1",mode="netreduce"}'),
      packets,
    );
    assert.ok(
      (sw.get('ina_switch_collisions_total{job="2",mode="atp"}') ?? 0) > 0,
      "forced collisions",
    );
    assert.ok((sw.get('ina_switch_fallbacks_total{job="2",mode="atp"}') ?? 0) > 0);
    assert.equal(sw.get('ina_switch_collisions_total{job="1",mode="netreduce"}'), 0);
    assert.ok((sw.get('ina_switch_drops_total{reason="injectedDrop"}') ?? 0) > 0);
    assert.ok(
      (sw.get('ina_switch_packets_received_total{type="contribution"}') ?? 0) >= 4 * packets,
    );
    assert.equal(sw.get('ina_switch_region_size_aggregators{job="2",mode="atp"}'), 4);
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
    assert.ok((ps.get('ina_ps_pieces_received_total{kind="full"}') ?? 0) > 0);
    assert.ok((ps.get('ina_ps_pieces_received_total{kind="collision"}') ?? 0) > 0);
    for (const [i, r] of results.entries()) {
      const worker = parseExposition(expositions.get(`worker-${i}`) ?? "");
      const labels = `{job="${i < 2 ? 1 : 2}",worker="${i % 2}"}`;
      assert.equal(worker.get(`ina_worker_retransmissions_total${labels}`), r.retransmissions);
      assert.equal(worker.get(`ina_worker_packets_sent_total${labels}`), r.packetsSent);
      assert.equal(worker.get(`ina_worker_allreduce_duration_seconds_count${labels}`), 1);
      assert.equal(worker.get(`ina_worker_progress_ratio${labels}`), 1);
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
      assert.equal(r.status, 0, `${name}: ${r.stdout}${r.stderr}`);
    }
  });

  it("a real Prometheus scrapes the run; its HTTP API returns the switch's and workers' counters", async () => {
    const binary = findPrometheus();
    assert.notEqual(binary, null, "prometheus not found: install Debian's prometheus package");
    const targets = new ScrapeTargets(join(dir, "prometheus"));
    await targets.init();
    for (const [name, url] of metricsUrls) {
      await targets.add(name, url, { process: name.replace(/-\d+$/, "") });
    }
    const prometheus = await startPrometheus(binary as string, targets.configFile, dir);
    children.push(prometheus.child);
    let aggregations: Array<{ metric: Record<string, string>; value: number }> = [];
    let retransmissions: typeof aggregations = [];
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      aggregations = await queryPrometheus(
        prometheus.url,
        'ina_switch_aggregations_completed_total{job="1"}',
      );
      retransmissions = await queryPrometheus(prometheus.url, "ina_worker_retransmissions_total");
      if (aggregations.length > 0 && retransmissions.length === 4) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    assert.equal(aggregations.length, 1, "the switch was scraped");
    assert.equal(aggregations[0].value, packets);
    assert.equal(retransmissions.length, 4, "all four workers were scraped");
    const total = retransmissions.reduce((n, r) => n + r.value, 0);
    assert.equal(
      total,
      results.reduce((n, r) => n + Number(r.retransmissions), 0),
    );
    const up = await queryPrometheus(prometheus.url, "up");
    assert.equal(up.length, metricsUrls.size);
    assert.ok(up.every((u) => u.value === 1));
  });

  it("the dashboard parses and every panel's query names an exported metric", async () => {
    const dashboard = JSON.parse(await readFile(DASHBOARD, "utf8"));
    const exported = new Set<string>();
    for (const text of expositions.values()) for (const f of families(text)) exported.add(f);
    const queries: string[] = dashboard.panels.flatMap((p: { targets: Array<{ expr: string }> }) =>
      p.targets.map((t) => t.expr),
    );
    queries.push(dashboard.templating.list[0].query.query);
    assert.ok(queries.length >= 15);
    for (const query of queries) {
      const names = [...query.matchAll(/\bina_[a-z0-9_]+/g)].map((m) =>
        m[0].replace(/_(bucket|sum|count)$/, ""),
      );
      assert.ok(names.length > 0, `a query without an ina_ metric: ${query}`);
      for (const name of names) assert.ok(exported.has(name), `${name} is not exported (${query})`);
    }
  });
});
