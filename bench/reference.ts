import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

/**
 * The measuring sticks in ../shared/reference (a C aggregation switch with C
 * workers, and Open MPI's MPI_Allreduce), run by their own scripts so the
 * bench can interleave them with ina-emu's runs. Each returns null, with the
 * reason on stderr, when its script is missing or fails.
 */

/** Runs `script args` in `dir` (at most `timeoutMs`); its stdout, or null. */
function runScript(
  dir: string,
  script: string,
  args: string[],
  timeoutMs: number,
): Promise<string | null> {
  const path = join(dir, script);
  if (!existsSync(path)) {
    process.stderr.write(`bench: no ${path}\n`);
    return Promise.resolve(null);
  }
  return new Promise((resolve) => {
    const child = spawn("bash", [path, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      err = (err + chunk.toString()).slice(-2000);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code !== 0) {
        process.stderr.write(`bench: ${script} ${args.join(" ")} exited ${code}: ${err.trim()}\n`);
        resolve(null);
      } else resolve(out);
    });
  });
}

/** The C reference's steady-state goodput per worker (MB/s) for N workers, E int32 per packet, window W. */
export async function referenceGoodput(
  dir: string,
  workers: number,
  elements: number,
  window: number,
): Promise<number | null> {
  const out = await runScript(
    dir,
    "agg.sh",
    [String(workers), String(elements), String(window)],
    60_000,
  );
  const match = out === null ? null : /goodput_MBps_per_worker=([\d.]+)/.exec(out);
  return match ? Number(match[1]) : null;
}

/** MPI_Allreduce of `bytes` over `ranks` ranks, TCP loopback: the median time in seconds. */
export async function mpiAllreduceSeconds(
  dir: string,
  bytes: number,
  ranks: number,
): Promise<{ tcpSeconds: number | null; sharedMemorySeconds: number | null } | null> {
  const out = await runScript(dir, "mpi.sh", [String(bytes), String(ranks), "5"], 400_000);
  if (out === null) return null;
  // mpi.sh prints "# btl=tcp" then the results of the TCP run, then "# btl=vader".
  const [tcpPart = "", sharedPart = ""] = out.split("# btl=vader");
  const median = (text: string) => {
    const match = /MPIRESULT dtype=int32.*?t_med_ms=([\d.]+)/.exec(text);
    return match ? Number(match[1]) / 1000 : null;
  };
  return { tcpSeconds: median(tcpPart), sharedMemorySeconds: median(sharedPart) };
}
