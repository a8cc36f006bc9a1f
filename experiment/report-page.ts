import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type Figure,
  type RenderedFigure,
  renderFigure,
  runFigures,
  scheduleFigures,
} from "./figures.js";
import type { HostLoad } from "./host-load.js";
import type { RunResult } from "./results.js";
import type { PolicyResult } from "./schedule.js";
import type { PointStatistics } from "./sweep.js";
import { formatPointTable, formatScheduleTable, formatTable } from "./table.js";

/** What a results file holds, as far as the report reads it. */
export interface ResultsFile {
  scenario: string;
  description?: string;
  seed?: number;
  startedAt?: string;
  verified?: boolean;
  provenance?: object;
  runs?: RunResult[];
  points?: PointStatistics[];
  policies?: PolicyResult[];
}

/**
 * Writes `dir`/index.html, a page that needs nothing else (no network, no
 * other file): the provenance, the tables, every figure as inline SVG, and
 * the results themselves as JSON; and each figure as `dir`/NAME.svg and
 * NAME.png beside it. Returns the figures.
 */
export async function writeReport(dir: string, results: ResultsFile): Promise<RenderedFigure[]> {
  await mkdir(dir, { recursive: true });
  const figures: Figure[] =
    results.policies !== undefined
      ? // A repeated schedule is drawn from its first repetition; the statistics table has the rest.
        scheduleFigures(results.policies.filter((p) => (p.repetition ?? 1) === 1))
      : runFigures(results.runs ?? [], results.points ?? []);
  const rendered: RenderedFigure[] = [];
  for (const figure of figures) {
    const r = await renderFigure(figure);
    await writeFile(join(dir, `${figure.name}.svg`), r.svg);
    await writeFile(join(dir, `${figure.name}.png`), r.png);
    rendered.push(r);
  }
  await writeFile(join(dir, "index.html"), page(results, rendered));
  return rendered;
}

/** Steal above this share of the CPU time makes the report page warn. */
const STEAL_WARNING_SHARE = 0.05;

/**
 * Warnings about the host the results came from: a load above its CPUs
 * (processes waited for a CPU) or a hypervisor stealing its CPUs. Times of
 * real processes measured then say as much about the host as about the
 * emulated network.
 */
export function hostWarnings(provenance: object | undefined): string[] {
  const load = (provenance as { hostLoad?: Partial<HostLoad> } | undefined)?.hostLoad;
  if (load === undefined || load.loadAverage1m === undefined || load.cpus === undefined) return [];
  const out: string[] = [];
  if (load.loadAverage1m.max > load.cpus) {
    out.push(
      `the host's 1-minute load average reached ${load.loadAverage1m.max.toFixed(2)} on ${load.cpus} CPUs: ` +
        "processes waited for a CPU during the run",
    );
  }
  if (load.steal !== undefined && load.steal.share > STEAL_WARNING_SHARE) {
    out.push(
      `the hypervisor took ${(100 * load.steal.share).toFixed(1)}% of the CPU time (steal, ${load.steal.seconds.toFixed(1)} s)`,
    );
  }
  return out;
}

const escapeHtml = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

function page(results: ResultsFile, figures: RenderedFigure[]): string {
  const tables =
    results.policies !== undefined
      ? formatScheduleTable(results.policies)
      : formatTable(results.runs ?? []) +
        ((results.points ?? []).length > 0 ? `\n${formatPointTable(results.points ?? [])}` : "");
  const provenance = Object.entries(results.provenance ?? {})
    .map(
      ([k, v]) =>
        `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(typeof v === "string" ? v : JSON.stringify(v))}</td></tr>`,
    )
    .join("\n");
  const figureHtml = figures
    .map(
      (f) =>
        `<figure id="${escapeHtml(f.name)}">${f.svg}<figcaption>${escapeHtml(f.title)} ` +
        `(${escapeHtml(f.name)}.svg, ${escapeHtml(f.name)}.png)</figcaption></figure>`,
    )
    .join("\n");
  // The results ride along, so the page is its own data; "<" is escaped so no string ends the script.
  const data = JSON.stringify(results).replace(/</g, "\\u003c");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ina-emu: ${escapeHtml(results.scenario)}</title>
<link rel="icon" href="data:,">
<style>
body { font-family: "DejaVu Sans", sans-serif; margin: 2em; max-width: 72em; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.8em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { text-align: left; padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; vertical-align: top; }
figure { margin: 2em 0; }
figcaption { color: #555; font-size: 0.9em; }
</style>
</head>
<body>
<h1>${escapeHtml(results.scenario)}</h1>
<p>${escapeHtml(results.description ?? "")}</p>
<p>Seed ${escapeHtml(String(results.seed ?? "-"))}; ${results.verified === false ? "<strong>not every job verified</strong>" : "every job verified"}.</p>
<h2>Provenance</h2>
${hostWarnings(results.provenance)
  .map((w) => `<p><strong>warning:</strong> ${escapeHtml(w)}</p>`)
  .join("\n")}
<table>${provenance}</table>
<h2>Results</h2>
<pre>${escapeHtml(tables)}</pre>
<h2>Figures</h2>
${figureHtml}
<script type="application/json" id="results">${data}</script>
</body>
</html>
`;
}
