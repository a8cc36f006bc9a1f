import { spawnSync } from "node:child_process";
import { mkdir, rename, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import { parseDuration } from "../proto/units.js";
import { ChildNode } from "./processes.js";

/**
 * Prometheus for experiment runs: a file-based service discovery file listing
 * every process's /metrics, rewritten as processes come and go, a scrape
 * config that reads it, and optionally a local `prometheus` binary started on
 * 127.0.0.1 with a temporary storage folder.
 */
export class ScrapeTargets {
  private readonly targets = new Map<string, { url: URL; labels: Record<string, string> }>();
  private writing: Promise<void> = Promise.resolve();

  /** The folder, absolute: the config names the target list by its absolute path. */
  readonly dir: string;
  /** Prometheus's scrape interval in the config (ms). */
  readonly scrapeIntervalMs: number;
  /**
   * How long each worker keeps serving /metrics after its result (ms), so
   * that a scrape sees its final counters (and the switch's and PS's, which
   * stay up while workers linger); 0 when nothing scrapes the run.
   */
  readonly lingerMs: number;

  constructor(
    dir: string,
    options: { scrapeIntervalMs?: number; lingerForFinalScrape?: boolean } = {},
  ) {
    this.dir = resolve(dir);
    this.scrapeIntervalMs = options.scrapeIntervalMs ?? DEFAULT_SCRAPE_INTERVAL_MS;
    checkScrapeInterval(this.scrapeIntervalMs);
    this.lingerMs = options.lingerForFinalScrape ? finalScrapeLingerMs(this.scrapeIntervalMs) : 0;
  }

  /** The file_sd file Prometheus watches. */
  get targetsFile(): string {
    return join(this.dir, "targets.json");
  }

  get configFile(): string {
    return join(this.dir, "prometheus.yml");
  }

  /** Writes the scrape config and an empty target list. */
  async init(): Promise<void> {
    await this.writeConfig();
    await this.flush();
  }

  /**
   * Writes the scrape config, and an empty target list if there is none yet
   * (a run using the folder keeps its list): for a Prometheus started before
   * any run.
   */
  async writeConfig(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await writeFile(this.configFile, scrapeConfig(this.targetsFile, this.scrapeIntervalMs));
    try {
      await writeFile(this.targetsFile, "[]\n", { flag: "wx" });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
  }

  add(name: string, metricsUrl: string, labels: Record<string, string>): Promise<void> {
    this.targets.set(name, { url: new URL(metricsUrl), labels });
    return this.flush();
  }

  remove(name: string): Promise<void> {
    this.targets.delete(name);
    return this.flush();
  }

  /** Rewrites the file atomically (write, then rename), one write at a time. */
  private flush(): Promise<void> {
    const groups = [...this.targets].map(([name, { url, labels }]) => ({
      targets: [url.host],
      labels: { ...labels, instance_name: name, __metrics_path__: url.pathname },
    }));
    const text = `${JSON.stringify(groups, null, 2)}\n`;
    this.writing = this.writing
      .then(async () => {
        // A name of its own: another run may share the folder.
        const tmp = `${this.targetsFile}.${process.pid}.tmp`;
        await writeFile(tmp, text);
        await rename(tmp, this.targetsFile);
      })
      .catch((error: Error) => {
        // Watching is a convenience: the run goes on without it.
        process.stderr.write(`prometheus targets: ${error.message}\n`);
      });
    return this.writing;
  }
}

/**
 * The scrape config. Prometheus resolves a relative file_sd path against the
 * config file's own folder, not its working directory: the target list is
 * named by its absolute path.
 */
export function scrapeConfig(
  targetsFile: string,
  scrapeIntervalMs: number = DEFAULT_SCRAPE_INTERVAL_MS,
): string {
  if (!isAbsolute(targetsFile)) throw new Error(`scrapeConfig: ${targetsFile} is not absolute`);
  checkScrapeInterval(scrapeIntervalMs);
  // Whole milliseconds, a duration Prometheus reads; the scrape timeout defaults to the interval when shorter than 10 s.
  const interval = `${scrapeIntervalMs}ms`;
  return [
    "global:",
    `  scrape_interval: ${interval}`,
    `  evaluation_interval: ${interval}`,
    "scrape_configs:",
    "  - job_name: ina-emu",
    "    file_sd_configs:",
    "      - files:",
    `          - ${JSON.stringify(targetsFile)}`,
    "        refresh_interval: 1s",
    // No honor_labels: `job` and `instance` are the scrape target's (the
    // ina-emu job is `ina_job`); a target label a process also exported
    // would show up as `exported_<name>`.
    "",
  ].join("\n");
}

/** The scrape interval without --scrape-interval (ms). */
export const DEFAULT_SCRAPE_INTERVAL_MS = 1000;
/** Shortest and longest --scrape-interval (ms): faster loads a host of many processes, slower makes runs linger long. */
export const MIN_SCRAPE_INTERVAL_MS = 250;
export const MAX_SCRAPE_INTERVAL_MS = 60_000;

/**
 * Prometheus's discovery manager hands new file_sd targets to its scrape
 * loops at most every 5 s (not configurable in 2.x): a worker of a short
 * run may be listed that long before its first scrape.
 */
const DISCOVERY_DELAY_MS = 5000;
/** Room for a scrape to start late and for the switch's /metrics snapshot (renewed twice a second). */
const SCRAPE_MARGIN_MS = 1000;

/**
 * How long a process stays up after its work for one more scrape: the
 * discovery delay (a short run's targets may not be scraped yet), one
 * interval and a margin. Bounded by MAX_SCRAPE_INTERVAL_MS + 6 s.
 */
export function finalScrapeLingerMs(scrapeIntervalMs: number): number {
  checkScrapeInterval(scrapeIntervalMs);
  return DISCOVERY_DELAY_MS + scrapeIntervalMs + SCRAPE_MARGIN_MS;
}

/** --scrape-interval: a duration with its unit ("1s", "500ms"), whole ms within the bounds. */
export const scrapeIntervalSchema = z.string().transform((text, ctx) => {
  const parsed = /[a-z]\s*$/i.test(text) ? parseDuration(text) : null;
  // 0.3s is 300.00000000000006 ms in binary floating point.
  const ms =
    parsed === null || Math.abs(parsed - Math.round(parsed)) > 1e-6 ? parsed : Math.round(parsed);
  if (ms === null) {
    ctx.addIssue({
      code: "custom",
      message: `not a duration with a unit: "${text}" (try 1s, 500ms)`,
    });
    return z.NEVER;
  }
  if (!Number.isInteger(ms) || ms < MIN_SCRAPE_INTERVAL_MS || ms > MAX_SCRAPE_INTERVAL_MS) {
    ctx.addIssue({
      code: "custom",
      message: `${text}: whole milliseconds from ${MIN_SCRAPE_INTERVAL_MS}ms to ${MAX_SCRAPE_INTERVAL_MS / 1000}s`,
    });
    return z.NEVER;
  }
  return ms;
});

function checkScrapeInterval(ms: number): void {
  if (!Number.isInteger(ms) || ms < MIN_SCRAPE_INTERVAL_MS || ms > MAX_SCRAPE_INTERVAL_MS) {
    throw new RangeError(
      `scrape interval ${ms} ms: whole ms from ${MIN_SCRAPE_INTERVAL_MS} to ${MAX_SCRAPE_INTERVAL_MS}`,
    );
  }
}

/**
 * Keeps a Prometheus storage folder (`dir`, its TSDB in `dir/tsdb`, as
 * startPrometheus lays it out) readable later: writes `dir/prometheus.yml`,
 * a config that scrapes nothing (the run's config would scrape later runs'
 * targets into it), and returns the command that serves the series, with
 * absolute paths so that it works from any folder.
 */
export async function keepStorage(dir: string): Promise<string> {
  const absolute = resolve(dir);
  const config = join(absolute, "prometheus.yml");
  await writeFile(
    config,
    "# ina-emu: no scrape targets; Prometheus on this config serves the series kept in ./tsdb.\n" +
      "scrape_configs: []\n",
  );
  return [
    "prometheus",
    `--config.file=${shellWord(config)}`,
    `--storage.tsdb.path=${shellWord(join(absolute, "tsdb"))}`,
    "--web.listen-address=127.0.0.1:9090",
  ].join(" ");
}

/** `word`, single-quoted for sh when it holds anything but safe characters. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}

/** The `prometheus` binary on PATH, or null. */
export function findPrometheus(): string | null {
  const found = spawnSync("sh", ["-c", "command -v prometheus"], { encoding: "utf8" });
  const path = found.stdout.trim();
  return found.status === 0 && path !== "" ? path : null;
}

/** A free TCP port on 127.0.0.1 (Prometheus takes an address, not port 0). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts Prometheus on 127.0.0.1 with `configFile` and storage in `dir`
 * (both relative to `cwd` when relative), and waits (bounded) until it
 * answers ready. Stop it with `child.stop()` on the result.
 */
export async function startPrometheus(
  binary: string,
  configFile: string,
  dir: string,
  options: { cwd?: string; timeoutMs?: number } = {},
): Promise<{ child: ChildNode; url: string }> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const port = await freePort();
  const child = new ChildNode(
    "prometheus",
    binary,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, "tsdb")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    undefined,
    { raw: true, cwd: options.cwd },
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`prometheus exited (${child.exitCode}): ${child.stderr.trim().slice(-500)}`);
    }
    try {
      const response = await fetch(`${url}/-/ready`);
      if (response.ok) return { child, url };
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await child.stop();
      throw new Error(`prometheus not ready within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** One instant query through Prometheus's HTTP API: the samples' values by label set. */
export async function queryPrometheus(
  url: string,
  query: string,
): Promise<Array<{ metric: Record<string, string>; value: number }>> {
  const response = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(query)}`);
  const body = (await response.json()) as {
    status: string;
    error?: string;
    data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
  };
  if (body.status !== "success")
    throw new Error(`query ${query}: ${body.error ?? response.status}`);
  return (body.data?.result ?? []).map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
}
