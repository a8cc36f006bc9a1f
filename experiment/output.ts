import { appendFile, mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type ResultsFile, writeReport } from "./report-page.js";
import type { RunResult } from "./results.js";
import {
  type ExpandedRun,
  JOB_COLUMNS,
  jobRows,
  POINT_COLUMNS,
  type PointStatistics,
  pointRow,
} from "./sweep.js";

/**
 * Where both front doors put their results, and how: one JSON file
 * rewritten after every run (a stopped or cut sweep keeps what finished,
 * `complete: false`), a tidy CSV of jobs appended run by run, one of the
 * points' statistics, and the report page. Every name carries the
 * scenario, the seed and the start time, so a rerun does not overwrite.
 */

export interface OutputFiles {
  json: string;
  jobs: string;
  points: string;
  /** the report page's folder (index.html and the figures) */
  report: string;
}

/**
 * The files of one invocation in `dir`, or null for `dir` '' (write
 * nothing): `PREFIX<scenario>-seed<seed>-<ISO time>.json` and so on.
 */
export function outputFiles(
  dir: string,
  o: { scenario: string; seed: number; startedAt: Date; prefix?: string },
): OutputFiles | null {
  if (dir === "") return null;
  const stamp = o.startedAt.toISOString().replace(/[:.]/g, "-");
  // The name comes from a file: keep it to one safe path component.
  const safe = o.scenario.replace(/[^A-Za-z0-9_-]/g, "_");
  const base = join(dir, `${o.prefix ?? ""}${safe}-seed${o.seed}-${stamp}`);
  return {
    json: `${base}.json`,
    jobs: `${base}.jobs.csv`,
    points: `${base}.points.csv`,
    report: base,
  };
}

/** Writes the report page and figures; a failure to draw is said on stderr, never fatal to the results. */
export async function writeReportPage(
  command: string,
  dir: string,
  results: ResultsFile,
): Promise<void> {
  try {
    const figures = await writeReport(dir, results);
    process.stderr.write(`report: ${join(dir, "index.html")} (${figures.length} figures)\n`);
  } catch (error) {
    process.stderr.write(`${command}: the report page failed: ${(error as Error).message}\n`);
  }
}

/**
 * A sweep's results as they come: `open` writes the jobs CSV's header,
 * `runFinished` appends the run's rows and rewrites the JSON with what
 * finished so far, `finish` writes the complete JSON, the points CSV and
 * the report page. With `files` null, nothing is written.
 */
export class RunsOutput {
  private constructor(
    private readonly command: string,
    readonly files: OutputFiles | null,
  ) {}

  static async open(command: string, files: OutputFiles | null): Promise<RunsOutput> {
    if (files !== null) {
      await mkdir(join(files.json, ".."), { recursive: true });
      await writeFile(files.jobs, `${JOB_COLUMNS.join(",")}\n`);
    }
    return new RunsOutput(command, files);
  }

  /** After each run: its jobs' CSV rows, and the results file so far (`complete: false`). */
  async runFinished(e: ExpandedRun, result: RunResult, soFar: object): Promise<void> {
    if (this.files === null) return;
    await appendFile(this.files.jobs, `${jobRows(e, result).join("\n")}\n`);
    await writeJson(this.files.json, { ...soFar, complete: false });
  }

  /** At the end: the complete results file, the points' CSV and the report page. */
  async finish(output: ResultsFile & { points: PointStatistics[] }): Promise<void> {
    if (this.files === null) return;
    await writeJson(this.files.json, { ...output, complete: true });
    await writeFile(
      this.files.points,
      `${[POINT_COLUMNS.join(","), ...output.points.map(pointRow)].join("\n")}\n`,
    );
    process.stderr.write(
      `results: ${this.files.json}\n  tidy CSV: ${this.files.jobs}, ${this.files.points}\n`,
    );
    await writeReportPage(this.command, this.files.report, output);
  }
}

/** A results file that is not a sweep's (a scheduling scenario's): the JSON and the report page. */
export async function writeResultsAndReport(
  command: string,
  files: OutputFiles | null,
  output: ResultsFile,
): Promise<void> {
  if (files === null) return;
  await mkdir(join(files.json, ".."), { recursive: true });
  await writeJson(files.json, output);
  process.stderr.write(`results: ${files.json}\n`);
  await writeReportPage(command, files.report, output);
}

/** Writes beside, then renames: a sweep cut while writing keeps the last whole file. */
async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(`${path}.part`, `${JSON.stringify(value, null, 2)}\n`);
  await rename(`${path}.part`, path);
}
