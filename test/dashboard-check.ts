import { Registry } from "prom-client";
import { createPsMetrics } from "../ps/metrics.js";
import { createLinkMetrics } from "../runtime/metrics.js";
import { createSwitchMetrics } from "../switch/metrics.js";
import { createWorkerMetrics } from "../worker/metrics.js";

/**
 * Checks a Grafana dashboard against what ina-emu's processes export. No
 * package with Grafana's dashboard schema is available to the project, so
 * this checks what makes a dashboard work once imported: the datasource
 * input and variable, every query's metrics and labels, rate windows and
 * units.
 */

/** A metric family: its type and the labels its samples carry. */
export interface Family {
  type: string;
  labels: ReadonlySet<string>;
}

/** Labels the runner gives every scrape target (runner/run.ts), and Prometheus's own. */
export const TARGET_LABELS: ReadonlySet<string> = new Set([
  "job",
  "instance",
  "run",
  "process",
  "instance_name",
  "ina_job_name",
]);

/**
 * Every family the switch (with its memory manager), the PS, a worker and
 * the emulated links export, read from the real registries: the factories
 * only register families (their values are read at scrape time), so cores
 * that are never read stand in for real ones.
 */
export function exportedFamilies(): Map<string, Family> {
  const registries = [new Registry(), new Registry(), new Registry(), new Registry()];
  const unread = { stats: {} } as never;
  createSwitchMetrics(registries[0], unread, unread);
  createPsMetrics(registries[1], unread);
  createWorkerMetrics(
    registries[2],
    { stats: {}, window: 0, completedPackets: 0, totalPackets: 0 } as never,
    { job: 1, worker: 0, mode: "netreduce" },
  );
  createLinkMetrics(registries[3], () => []);
  const out = new Map<string, Family>();
  for (const registry of registries) {
    for (const metric of registry.getMetricsAsArray()) {
      const m = metric as unknown as { name: string; type: string; labelNames?: string[] };
      const labels = new Set([...(m.labelNames ?? []), ...(out.get(m.name)?.labels ?? [])]);
      out.set(m.name, { type: m.type, labels });
    }
  }
  return out;
}

/** Grafana's `${name}` variable syntax (not a JavaScript template). */
export const grafanaVariable = (name: string) => `$\{${name}}`;
export const DATASOURCE_REF = { type: "prometheus", uid: grafanaVariable("datasource") };
const DATASOURCE = DATASOURCE_REF;
const NOT_METRICS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "and",
  "or",
  "unless",
  "offset",
  "inf",
  "nan",
]);

/** A PromQL query's parts this check needs. */
export interface QueryParts {
  metrics: string[];
  /** label names in selectors ({a="x"}) */
  selectorLabels: string[];
  /** label names in by (...) and without (...) */
  groupingLabels: string[] | null;
  /** every range, [..] */
  ranges: string[];
  /** functions applied */
  functions: string[];
}

/** Splits a PromQL expression (with Grafana variables in it) into what it names. */
export function queryParts(expr: string): QueryParts {
  let rest = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const selectorLabels: string[] = [];
  rest = rest.replace(/\{([^}]*)\}/g, (_, inside: string) => {
    for (const m of inside.matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)/g)) {
      selectorLabels.push(m[1]);
    }
    return " ";
  });
  let groupingLabels: string[] | null = null;
  rest = rest.replace(/\b(by|without)\s*\(([^)]*)\)/g, (_, __, inside: string) => {
    groupingLabels = [
      ...(groupingLabels ?? []),
      ...inside
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== ""),
    ];
    return " ";
  });
  const ranges: string[] = [];
  rest = rest.replace(/\[([^\]]*)\]/g, (_, inside: string) => {
    ranges.push(inside);
    return " ";
  });
  const metrics: string[] = [];
  const functions: string[] = [];
  for (const m of rest.matchAll(/(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?/g)) {
    if (m[2] !== undefined) functions.push(m[1]);
    else if (!NOT_METRICS.has(m[1].toLowerCase())) metrics.push(m[1]);
  }
  return { metrics, selectorLabels, groupingLabels, ranges, functions };
}

/** The family a series name belongs to: a histogram's _bucket, _sum and _count are its own. */
function familyOf(name: string, families: ReadonlyMap<string, Family>): string | null {
  if (families.has(name)) return name;
  const base = name.replace(/_(bucket|sum|count)$/, "");
  return base !== name && families.get(base)?.type === "histogram" ? base : null;
}

/** The Grafana unit of a family's values: by Prometheus's base-unit suffixes. */
function valueUnit(family: string): string {
  const name = family.replace(/_total$/, "");
  if (name.endsWith("_bits_per_second")) return "bps";
  if (name.endsWith("_seconds")) return "s";
  if (name.endsWith("_bytes")) return "bytes";
  if (name.endsWith("_ratio")) return "percentunit";
  return "short";
}

/** The Grafana unit of a counter's rate. */
function rateUnit(family: string): string {
  if (family.endsWith("_bytes_total")) return "Bps";
  if (family.endsWith("_seconds_total")) return "percentunit";
  if (/packets|drops|ecn_marks|retransmissions/.test(family)) return "pps";
  return "ops";
}

/** The unit a query's series have, or a problem. */
export function expectedUnit(expr: string, families: ReadonlyMap<string, Family>): string {
  const parts = queryParts(expr);
  const units = new Set<string>();
  for (const name of parts.metrics) {
    const family = familyOf(name, families);
    if (family === null) continue;
    if (parts.functions.includes("histogram_quantile")) units.add(valueUnit(family));
    else if (parts.functions.some((f) => f === "rate" || f === "irate"))
      units.add(rateUnit(family));
    else units.add(valueUnit(family));
  }
  return [...units].join(" and ");
}

interface Target {
  refId: string;
  expr: string;
  legendFormat?: string;
  datasource?: unknown;
}
interface Override {
  matcher: { id: string; options: unknown };
  properties: Array<{ id: string; value: unknown }>;
}
interface Panel {
  title: string;
  datasource?: unknown;
  targets?: Target[];
  fieldConfig?: {
    defaults?: { unit?: string; custom?: { axisPlacement?: string } };
    overrides?: Override[];
  };
}

const sameDatasource = (d: unknown) => JSON.stringify(d) === JSON.stringify(DATASOURCE);

/** Everything wrong with `dashboard` against `families`; empty when it is fine. */
export function dashboardProblems(
  dashboard: unknown,
  families: ReadonlyMap<string, Family> = exportedFamilies(),
): string[] {
  const problems: string[] = [];
  const d = dashboard as {
    __inputs?: Array<Record<string, unknown>>;
    templating?: { list?: Array<Record<string, unknown>> };
    panels?: Panel[];
  };
  // Imported: Grafana asks for DS_PROMETHEUS and writes it into the variable's default.
  const input = (d.__inputs ?? []).find((i) => i.name === "DS_PROMETHEUS");
  if (input?.type !== "datasource" || input.pluginId !== "prometheus") {
    problems.push("__inputs: no DS_PROMETHEUS datasource input of plugin prometheus");
  }
  const variables = d.templating?.list ?? [];
  const dsVariable = variables.find((v) => v.name === "datasource");
  if (dsVariable?.type !== "datasource" || dsVariable.query !== "prometheus") {
    problems.push("templating: no `datasource` variable of type datasource, query prometheus");
  } else if (
    (dsVariable.current as { value?: unknown } | undefined)?.value !==
    grafanaVariable("DS_PROMETHEUS")
  ) {
    problems.push("templating.datasource: its default is not the DS_PROMETHEUS input");
  }
  // Provisioned: nothing may name a datasource but through the variable.
  const walk = (node: unknown, path: string) => {
    if (Array.isArray(node)) {
      for (const [i, n] of node.entries()) walk(n, `${path}[${i}]`);
    } else if (typeof node === "object" && node !== null) {
      for (const [k, v] of Object.entries(node)) {
        if (k === "datasource" && !sameDatasource(v)) {
          problems.push(`${path}.datasource: ${JSON.stringify(v)}, not the $datasource variable`);
        } else walk(v, `${path}.${k}`);
      }
    }
  };
  walk(d.panels ?? [], "panels");
  walk(
    variables.filter((v) => v !== dsVariable),
    "templating.list",
  );

  const labelsOf = (metrics: string[]) => {
    const out = new Set(TARGET_LABELS);
    for (const name of metrics) {
      const family = familyOf(name, families);
      for (const l of family === null ? [] : (families.get(family)?.labels ?? [])) out.add(l);
      if (name.endsWith("_bucket")) out.add("le");
    }
    return out;
  };
  const checkQuery = (where: string, expr: string) => {
    const parts = queryParts(expr);
    if (parts.metrics.length === 0) problems.push(`${where}: names no metric: ${expr}`);
    for (const name of parts.metrics) {
      const family = familyOf(name, families);
      if (family === null) problems.push(`${where}: ${name} is not exported by any process`);
      else if (
        parts.functions.some((f) => f === "rate" || f === "irate" || f === "increase") &&
        families.get(family)?.type === "gauge"
      ) {
        problems.push(`${where}: rate of the gauge ${name}`);
      }
    }
    const labels = labelsOf(parts.metrics);
    for (const l of [...parts.selectorLabels, ...(parts.groupingLabels ?? [])]) {
      if (!labels.has(l)) problems.push(`${where}: label ${l} is on no series of ${expr}`);
    }
    if (parts.selectorLabels.includes("job")) {
      problems.push(`${where}: job is the scrape job, not the ina-emu job (ina_job): ${expr}`);
    }
    for (const range of parts.ranges) {
      if (range !== "$__rate_interval") {
        problems.push(`${where}: range [${range}], not [$__rate_interval]: ${expr}`);
      }
    }
    const rates = parts.functions.filter((f) => f === "rate" || f === "irate").length;
    const windows = parts.ranges.filter((r) => r === "$__rate_interval").length;
    if (rates > windows) problems.push(`${where}: a rate without [$__rate_interval]: ${expr}`);
    return parts;
  };

  for (const v of variables) {
    if (v.type !== "query") continue;
    const query = String((v.query as { query?: string } | undefined)?.query ?? v.query ?? "");
    const values = /^label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$/.exec(query);
    if (values === null) {
      problems.push(`variable ${String(v.name)}: not label_values(metric, label): ${query}`);
      continue;
    }
    const parts = checkQuery(`variable ${String(v.name)}`, values[1]);
    if (!labelsOf(parts.metrics).has(values[2])) {
      problems.push(`variable ${String(v.name)}: ${values[2]} is not a label of ${values[1]}`);
    }
  }

  for (const panel of d.panels ?? []) {
    const where = `panel "${panel.title}"`;
    const targets = panel.targets ?? [];
    if (targets.length === 0) problems.push(`${where}: no queries`);
    const defaults = panel.fieldConfig?.defaults ?? {};
    /** axis side (auto is left) -> units on it */
    const axes = new Map<string, Set<string>>();
    for (const t of targets) {
      const parts = checkQuery(`${where} ${t.refId}`, t.expr);
      const override = (panel.fieldConfig?.overrides ?? []).filter(
        (o) => o.matcher.id === "byFrameRefID" && o.matcher.options === t.refId,
      );
      const property = (id: string) =>
        override.flatMap((o) => o.properties).find((p) => p.id === id)?.value;
      const unit = String(property("unit") ?? defaults.unit ?? "");
      const side = String(
        property("custom.axisPlacement") ?? defaults.custom?.axisPlacement ?? "auto",
      );
      const expected = expectedUnit(t.expr, families);
      if (expected.includes(" and ")) {
        problems.push(`${where} ${t.refId}: one query of several units (${expected})`);
      } else if (expected !== "" && unit !== expected) {
        problems.push(`${where} ${t.refId}: unit ${unit || "none"}, its series are in ${expected}`);
      }
      const key = side === "auto" ? "left" : side;
      // What the series are, not what the axis claims: one quantity per axis.
      axes.set(key, (axes.get(key) ?? new Set()).add(expected || unit));
      // A legend can show only labels the query keeps.
      const kept = parts.groupingLabels ?? [...labelsOf(parts.metrics)];
      for (const m of (t.legendFormat ?? "").matchAll(/\{\{\s*(\w+)\s*\}\}/g)) {
        if (!kept.includes(m[1]))
          problems.push(`${where} ${t.refId}: legend {{${m[1]}}} is dropped`);
      }
    }
    for (const [side, units] of axes) {
      if (units.size > 1) {
        problems.push(`${where}: the ${side} axis mixes ${[...units].join(", ")}`);
      }
    }
  }
  return problems;
}
