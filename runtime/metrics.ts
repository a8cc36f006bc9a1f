import { execFile } from "node:child_process";
import { readFileSync, realpathSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Counter, collectDefaultMetrics, Gauge, type Registry } from "prom-client";
import type { LinkPortRecord } from "../proto/records.js";

/**
 * Scrape-time metrics on a private prom-client registry. The data path only
 * bumps plain numbers; these families read them when Prometheus scrapes, so
 * scraping costs nothing per packet. Names follow Prometheus conventions:
 * `ina_` prefix, base units, `_total` on counters, low-cardinality labels.
 */

type Sample<L extends string> = [Partial<Record<L, string | number>>, number];

/** A counter whose values are read from plain numbers at scrape time. */
export function counterFrom<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: () => Iterable<Sample<L>>,
): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.inc(labels as Record<L, string | number>, value);
    },
  });
}

/** A gauge whose values are read at scrape time. */
export function gaugeFrom<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: () => Iterable<Sample<L>>,
): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.set(labels as Record<L, string | number>, value);
    },
  });
}

/**
 * What every process exports besides its own families: prom-client's default
 * `process_*` and `nodejs_*` metrics and `ina_build_info{version,commit} 1`.
 */
export function createProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  // Read in the background from now on: neither startup nor a scrape blocks on git.
  const info = buildInfo();
  new Gauge({
    name: "ina_build_info",
    help: "ina-emu's version (package.json) and git commit (unknown outside a git checkout); always 1",
    labelNames: ["version", "commit"],
    registers: [registry],
    async collect() {
      this.reset();
      this.set(await info, 1);
    },
  });
}

export interface BuildInfo {
  version: string;
  commit: string;
}

let ours: Promise<BuildInfo> | null = null;

/**
 * ina-emu's version, from its package.json, and the short commit of HEAD when
 * the package's folder is the top of a git checkout: "unknown" for either
 * when it cannot be read (no package.json, no git, not a checkout, no commit
 * yet). Never rejects. Without `root`, this package's, read once per process.
 */
export function buildInfo(root?: string): Promise<BuildInfo> {
  if (root !== undefined) return readBuildInfo(root);
  ours ??= readBuildInfo(packageRoot());
  return ours;
}

async function readBuildInfo(dir: string | null): Promise<BuildInfo> {
  const info = { version: "unknown", commit: "unknown" };
  if (dir === null) return info;
  try {
    const version = JSON.parse(await readFile(join(dir, "package.json"), "utf8")).version;
    if (typeof version === "string" && version !== "") info.version = version;
  } catch {
    // no readable package.json: unknown
  }
  info.commit = await new Promise<string>((resolve) => {
    execFile(
      "git",
      ["-C", dir, "rev-parse", "--show-toplevel", "--short", "HEAD"],
      { encoding: "utf8", timeout: 5000 },
      (error, stdout) => {
        const [top, commit] = error === null ? stdout.trim().split("\n") : [];
        // Only the package's own checkout, not a repository it happens to sit in.
        resolve(commit !== undefined && samePath(top, dir) ? commit : "unknown");
      },
    );
  });
  return info;
}

/** The folder of ina-emu's package.json, above this module (dist/runtime/ or runtime/). */
function packageRoot(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
      if (pkg.name === "ina-emu") return dir;
    } catch {
      // not here: one folder up
    }
    const parent = dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

function samePath(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return false;
  }
}

/** One paced port as the link metrics see it. */
export interface LinkPortSample {
  /** the far end: "ps", "job 1 worker 0", or "switch" for a host's own NIC */
  host: string;
  /** up: a host's NIC towards the switch; down: the switch's port towards a host */
  direction: "up" | "down";
  record: LinkPortRecord;
}

/**
 * The emulated links' egress ports of a process (`ina_link_*`), read at
 * scrape time: bytes, packets, tail drops and ECN marks sent, the queue's
 * high-water mark and the line rate, by far end and direction.
 */
export function createLinkMetrics(registry: Registry, read: () => LinkPortSample[]): void {
  const labels = ["host", "direction"] as const;
  const each = (value: (r: LinkPortRecord) => number) => () =>
    read().map(
      ({ host, direction, record }): Sample<"host" | "direction"> => [
        { host, direction },
        value(record),
      ],
    );
  counterFrom(
    registry,
    "ina_link_sent_bytes_total",
    "Bytes a link's egress port sent",
    labels,
    each((r) => r.bytes),
  );
  counterFrom(
    registry,
    "ina_link_sent_packets_total",
    "Packets a link's egress port sent",
    labels,
    each((r) => r.packets),
  );
  counterFrom(
    registry,
    "ina_link_drops_total",
    "Packets a link's egress port tail-dropped (its buffer was full)",
    labels,
    each((r) => r.drops),
  );
  counterFrom(
    registry,
    "ina_link_ecn_marks_total",
    "Packets a link's egress port ECN-marked (its queue was above the threshold)",
    labels,
    each((r) => r.marks),
  );
  gaugeFrom(
    registry,
    "ina_link_queue_high_water_bytes",
    "Most bytes a link's egress queue ever held",
    labels,
    each((r) => r.queueHighWaterBytes),
  );
  gaugeFrom(
    registry,
    "ina_link_queue_mean_bytes",
    "A link's egress queue, time-weighted mean over its busy span so far",
    labels,
    each((r) => r.queueMeanBytes ?? 0),
  );
  gaugeFrom(
    registry,
    "ina_link_queue_p99_bytes",
    "The queue the 99th-percentile packet found at a link's egress port (a power-of-two bin's upper bound)",
    labels,
    each((r) => r.queueP99Bytes ?? 0),
  );
  gaugeFrom(
    registry,
    "ina_link_rate_bits_per_second",
    "A link's line rate",
    labels,
    each((r) => r.rateBitsPerSecond),
  );
}
