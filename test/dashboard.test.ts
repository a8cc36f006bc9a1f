import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  finalScrapeLingerMs,
  MAX_SCRAPE_INTERVAL_MS,
  scrapeConfig,
  scrapeIntervalSchema,
} from "../runner/prometheus.js";
import {
  DATASOURCE_REF,
  dashboardProblems,
  exportedFamilies,
  grafanaVariable,
  queryParts,
} from "./dashboard-check.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DASHBOARDS = join(ROOT, "grafana", "dashboards");
const DS = DATASOURCE_REF;
const INPUT = grafanaVariable("DS_PROMETHEUS");

/** A dashboard that passes, to be spoiled one way at a time. */
function goodDashboard() {
  return {
    __inputs: [
      { name: "DS_PROMETHEUS", label: "Prometheus", type: "datasource", pluginId: "prometheus" },
    ],
    templating: {
      list: [
        {
          name: "datasource",
          type: "datasource",
          query: "prometheus",
          current: { text: INPUT, value: INPUT },
        },
        {
          name: "run",
          type: "query",
          datasource: DS,
          query: { query: "label_values(ina_build_info, run)", refId: "run" },
        },
      ],
    },
    panels: [
      {
        title: "throughput",
        datasource: DS,
        fieldConfig: { defaults: { unit: "Bps" }, overrides: [] as unknown[] },
        targets: [
          {
            refId: "A",
            datasource: DS,
            expr: 'sum by (run, ina_job) (rate(ina_switch_job_received_bytes_total{run=~"$run"}[$__rate_interval]))',
            legendFormat: "{{run}} job {{ina_job}}",
          },
        ],
      },
    ],
  };
}

describe("Grafana dashboards against what the processes export", () => {
  it("the exported families come from the real registries, with their labels", () => {
    const families = exportedFamilies();
    const completed = families.get("ina_switch_aggregations_completed_total");
    assert.equal(completed?.type, "counter");
    assert.deepEqual([...(completed?.labels ?? [])].sort(), ["ina_job", "ina_job_name", "mode"]);
    assert.equal(families.get("ina_worker_allreduce_duration_seconds")?.type, "histogram");
    assert.equal(families.get("ina_ps_states_held")?.type, "gauge");
    assert.ok(families.has("ina_manager_job_completion_seconds"), "the memory manager's");
    assert.ok(families.has("ina_link_sent_bytes_total"), "the links'");
    assert.ok(families.has("ina_build_info") && families.has("process_cpu_seconds_total"));
    assert.ok(!families.has("ina_switch_nonexistent_total"));
  });

  it("queryParts reads metrics, labels, groupings and ranges", () => {
    const parts = queryParts(
      'histogram_quantile(0.5, sum by (le, run) (rate(ina_switch_aggregation_latency_seconds_bucket{run=~"$run", reason="a b"}[$__rate_interval])))',
    );
    assert.deepEqual(parts.metrics, ["ina_switch_aggregation_latency_seconds_bucket"]);
    assert.deepEqual(parts.selectorLabels, ["run", "reason"]);
    assert.deepEqual(parts.groupingLabels, ["le", "run"]);
    assert.deepEqual(parts.ranges, ["$__rate_interval"]);
    assert.deepEqual(parts.functions, ["histogram_quantile", "sum", "rate"]);
  });

  it("every dashboard in grafana/dashboards passes", async () => {
    const files = (await readdir(DASHBOARDS)).filter((f) => f.endsWith(".json"));
    assert.ok(files.length >= 1);
    for (const file of files) {
      const dashboard = JSON.parse(await readFile(join(DASHBOARDS, file), "utf8"));
      assert.deepEqual(dashboardProblems(dashboard), [], file);
      assert.ok(dashboard.panels.length >= 15, `${file}: its panels`);
    }
  });

  it("the small good dashboard passes, and each way of spoiling it is caught", () => {
    assert.deepEqual(dashboardProblems(goodDashboard()), []);
    const spoiled: Array<[string, (d: ReturnType<typeof goodDashboard>) => void, RegExp]> = [
      [
        "an unknown metric",
        (d) => {
          d.panels[0].targets[0].expr = "rate(ina_switch_bogus_bytes_total[$__rate_interval])";
        },
        /ina_switch_bogus_bytes_total is not exported/,
      ],
      [
        "a fixed rate window",
        (d) => {
          d.panels[0].targets[0].expr = d.panels[0].targets[0].expr.replace(
            "$__rate_interval",
            "10s",
          );
        },
        /range \[10s\], not \[\$__rate_interval\]/,
      ],
      [
        "a hard-coded datasource",
        (d) => {
          d.panels[0].datasource = { type: "prometheus", uid: "ina-prometheus" };
        },
        /panels\[0\]\.datasource: .*ina-prometheus/,
      ],
      [
        "no DS_PROMETHEUS input",
        (d) => {
          d.__inputs = [];
        },
        /__inputs: no DS_PROMETHEUS/,
      ],
      [
        "no datasource variable",
        (d) => {
          d.templating.list.shift();
        },
        /no `datasource` variable/,
      ],
      [
        "bytes and packets on one axis",
        (d) => {
          d.panels[0].targets.push({
            refId: "B",
            datasource: DS,
            expr: 'sum by (run, ina_job) (ina_worker_window_packets{run=~"$run"})',
            legendFormat: "{{run}}",
          });
        },
        /B: unit Bps, its series are in short[\s\S]*the left axis mixes/,
      ],
      [
        "the wrong unit",
        (d) => {
          d.panels[0].fieldConfig.defaults.unit = "pps";
        },
        /A: unit pps, its series are in Bps/,
      ],
      [
        "a label no series has",
        (d) => {
          d.panels[0].targets[0].expr = d.panels[0].targets[0].expr.replace("ina_job)", "worker)");
        },
        /label worker is on no series[\s\S]*legend \{\{ina_job\}\} is dropped/,
      ],
      [
        "the scrape job for the ina-emu job",
        (d) => {
          d.panels[0].targets[0].expr = d.panels[0].targets[0].expr.replace(
            'run=~"$run"',
            'job="1"',
          );
        },
        /job is the scrape job/,
      ],
      [
        "a rate of a gauge",
        (d) => {
          d.panels[0].targets[0].expr = "rate(ina_ps_states_held[$__rate_interval])";
        },
        /rate of the gauge ina_ps_states_held/,
      ],
      [
        "a variable on an unknown label",
        (d) => {
          d.templating.list[1].query = {
            query: "label_values(ina_build_info, nope)",
            refId: "run",
          };
        },
        /variable run: nope is not a label/,
      ],
    ];
    for (const [what, spoil, expected] of spoiled) {
      const d = goodDashboard();
      spoil(d);
      const problems = dashboardProblems(d);
      assert.match(problems.join("\n"), expected, `${what}: ${problems.join("; ")}`);
    }
    // An override with the other unit on its own axis mends the mixed panel.
    const mixed = goodDashboard();
    mixed.panels[0].targets.push({
      refId: "B",
      datasource: DS,
      expr: 'sum by (run, ina_job) (ina_worker_window_packets{run=~"$run"})',
      legendFormat: "{{run}}",
    });
    mixed.panels[0].fieldConfig.overrides.push({
      matcher: { id: "byFrameRefID", options: "B" },
      properties: [
        { id: "unit", value: "short" },
        { id: "custom.axisPlacement", value: "right" },
      ],
    });
    assert.deepEqual(dashboardProblems(mixed), []);
  });

  it("provisioning: the datasource is the default one, the dashboards come from INA_DASHBOARDS", async () => {
    const datasource = await readFile(
      join(ROOT, "grafana", "provisioning", "datasources", "ina-emu.yml"),
      "utf8",
    );
    // Provisioned, the dashboard's variable takes the first Prometheus datasource: this one.
    assert.match(datasource, /type: prometheus/);
    assert.match(datasource, /isDefault: true/);
    assert.match(datasource, /url: \$\{INA_PROMETHEUS_URL\}/);
    const dashboards = await readFile(
      join(ROOT, "grafana", "provisioning", "dashboards", "ina-emu.yml"),
      "utf8",
    );
    assert.match(dashboards, /path: \$\{INA_DASHBOARDS\}/);
  });
});

describe("--scrape-interval", () => {
  it("takes a duration with a unit within 250ms..60s, whole milliseconds", () => {
    assert.equal(scrapeIntervalSchema.parse("1s"), 1000);
    assert.equal(scrapeIntervalSchema.parse("250ms"), 250);
    assert.equal(scrapeIntervalSchema.parse("0.3s"), 300);
    assert.equal(scrapeIntervalSchema.parse("60s"), 60_000);
    for (const [bad, message] of [
      ["5", /not a duration with a unit: "5"/],
      ["fast", /not a duration with a unit/],
      ["100ms", /whole milliseconds from 250ms to 60s/],
      ["61s", /whole milliseconds from 250ms to 60s/],
      ["1.0005s", /whole milliseconds/],
    ] as const) {
      const result = scrapeIntervalSchema.safeParse(bad);
      assert.equal(result.success, false, bad);
      assert.match(result.error?.issues[0].message ?? "", message);
    }
  });

  it("is the config's interval; the linger for a final scrape is bounded", () => {
    const config = scrapeConfig("/tmp/x/targets.json", 5000);
    assert.match(config, /scrape_interval: 5000ms/);
    assert.match(config, /evaluation_interval: 5000ms/);
    assert.match(scrapeConfig("/tmp/x/targets.json"), /scrape_interval: 1000ms/);
    assert.throws(() => scrapeConfig("/tmp/x/targets.json", 10), /scrape interval 10 ms/);
    // Discovery (up to 5 s) + one interval + 1 s margin.
    assert.equal(finalScrapeLingerMs(1000), 7000);
    assert.equal(finalScrapeLingerMs(MAX_SCRAPE_INTERVAL_MS), 66_000);
  });
});
