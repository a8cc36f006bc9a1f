import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { cpus, hostname, release, type } from "node:os";
import { fileURLToPath } from "node:url";
import { type HostLoad, sampleHostLoad } from "../experiment/host-load.js";

/** What produced a results file, so its numbers can be traced and reproduced. */
export interface Provenance {
  command: string[];
  scenarioFile: string;
  /** sha256 of the scenario file's bytes */
  scenarioSha256: string;
  version: string;
  /** the git commit of the checkout that ran, and whether it had changes not committed; null outside git */
  commit: string | null;
  dirty: boolean | null;
  node: string;
  os: string;
  host: string;
  cpu: { model: string; count: number };
  startedAt: string;
  endedAt: string | null;
  /**
   * the host's load from this process's start to when the results were
   * written (experiment/host-load.ts): written as a HostLoad, sampled
   * again at each write
   */
  hostLoad: HostLoad | { toJSON(): HostLoad };
}

// From the start of the process: a scheduling run makes its provenance only at its end.
const hostLoad = sampleHostLoad();

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function git(args: string[]): string | null {
  try {
    return execFileSync("git", ["-C", ROOT, ...args], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 5000,
    }).trim();
  } catch {
    return null;
  }
}

/** The provenance of a run of `scenarioFile` started at `startedAt`; endedAt is filled in at the end. */
export function provenance(scenarioFile: string, startedAt: Date): Provenance {
  const bytes = readFileSync(scenarioFile);
  const version = JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")).version as string;
  const commit = git(["rev-parse", "HEAD"]);
  const status = commit === null ? null : git(["status", "--porcelain", "--untracked-files=no"]);
  const cpu = cpus();
  return {
    command: process.argv.slice(1),
    scenarioFile,
    scenarioSha256: createHash("sha256").update(bytes).digest("hex"),
    version,
    commit,
    dirty: status === null ? null : status !== "",
    node: process.version,
    os: `${type()} ${release()}`,
    host: hostname(),
    cpu: { model: cpu[0]?.model ?? "unknown", count: cpu.length },
    startedAt: startedAt.toISOString(),
    endedAt: null,
    hostLoad,
  };
}
