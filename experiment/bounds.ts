import { type Links, linkParamsFor } from "../proto/links.js";
import type { JobResult, LinkLoad } from "./results.js";
import type { ResolvedJob } from "./scenario.js";

/**
 * What limited a run with emulated links, decided here for both executors
 * (README, "What bound the run"):
 *
 * - link: a link direction was busier than LINK_BOUND_UTILIZATION over the
 *   run, or the critical job's busiest link direction was busy for longest
 *   (processes: or a port tail-dropped);
 * - window: the critical job's round trips, each carrying at most a window,
 *   took longest, and the round trip is mostly the network's (propagation and
 *   serialization): a larger window would have gone faster;
 * - latency: the same, but every all-reduce fits in one window: only a
 *   shorter round trip would have helped;
 * - switch / host (virtual time; processes model none): the same round
 *   trips, mostly the switch's (or a host's) per-packet processing time. The
 *   simulator's switch is a pipeline: its time per packet is latency, never
 *   a queue, so it limits a run through the round trip;
 * - loss (virtual time only): its workers sat idle until a timeout resent
 *   something for longest (after the faults' loss, a tail drop, or a
 *   spurious timeout);
 * - compute: its forward and backward passes took longest.
 *
 * Each is a lower bound on the critical job's time (the job that ended last
 * ends the run) from the model; the largest is the bottleneck. In virtual
 * time everything the simulator models is one of these, so the largest is
 * the label; "host" only when the model's host processing time dominates
 * the round trip. Real processes also run on a CPU the model leaves out: the
 * largest bound must explain EXPLAINED_SHARE of the time (LINK_BOUND_UTILIZATION
 * for a link), or the run is "host": this host's CPU, timers or stalls the
 * processes do not measure limited it, and its numbers are not the network's.
 */
export type RunBound = "link" | "window" | "latency" | "switch" | "host" | "loss" | "compute";

/** A link direction busier than this bounds a run. */
export const LINK_BOUND_UTILIZATION = 0.9;

/** Real processes: the share of a job's time the largest of the model's bounds must explain. */
export const EXPLAINED_SHARE = 0.7;

/** What the simulator models besides the links, and measured exactly; absent for real processes. */
export interface VirtualTimeEvidence {
  /** the switch's and a host's per-packet processing time (ns): latency each packet adds, never a queue */
  switchProcessingNs: number;
  hostProcessingNs: number;
  /**
   * per job (resolved order): the most virtual time one of its workers
   * spent idle, nothing sent or received, until a timer resent something (s)
   */
  stalledSeconds: number[];
  /**
   * per job: how long the busiest PS serving it had its CPU busy (s; 0
   * without a PS or its cost): a lower bound on the job's time ("host")
   */
  parameterServerBusySeconds?: number[];
}

/**
 * A job's path by the link model: round trip (ms), payload goodput at the
 * line rate (MB/s), packet bytes. The round trip is the propagation and one
 * packet's serialization on each hop (two for NetReduce; four through the PS
 * for ATP and PS, and for ring's data and acknowledgement), plus, when given,
 * the switch's and the receiving host's processing on each hop.
 */
export function pathModel(
  job: ResolvedJob,
  links: Links,
  processing: { switchProcessingNs: number; hostProcessingNs: number } = {
    switchProcessingNs: 0,
    hostProcessingNs: 0,
  },
) {
  const link = linkParamsFor(links, { job: job.id, worker: 0 });
  const packetBytes = 32 + 4 * job.elementsPerPacket;
  const bytesPerMs = link.rateBitsPerSecond / 8 / 1000;
  const hops = job.mode === "netreduce" ? 2 : 4;
  // Every other hop ends at the switch, the others at a host.
  const networkMs = hops * (link.delayMs + packetBytes / bytesPerMs);
  const switchMs = ((hops / 2) * processing.switchProcessingNs) / 1e6;
  const hostMs = ((hops / 2) * processing.hostProcessingNs) / 1e6;
  return {
    rttMs: networkMs + switchMs + hostMs,
    networkMs,
    switchMs,
    hostMs,
    lineMBps: (bytesPerMs * (4 * job.elementsPerPacket)) / packetBytes / 1000,
    packetBytes,
    bytesPerMs,
  };
}

/** Packets a job may have in flight: its window (a NetReduce job's, at most half its region). */
function effectiveWindow(job: ResolvedJob): number {
  return job.mode === "netreduce"
    ? Math.min(job.window, Math.floor(job.regionSize / 2))
    : job.window;
}

/**
 * The goodput per worker (MB/s) a job's window allows on its path by the
 * link model: a window of packets per round trip, capped at the line rate.
 */
export function windowLimitedMBps(job: ResolvedJob, links: Links): number {
  const { rttMs, lineMBps } = pathModel(job, links);
  return Math.min(lineMBps, (effectiveWindow(job) * 4 * job.elementsPerPacket) / rttMs / 1000);
}

/** One lower bound on a job's time, and the label it gives. */
export interface BoundCandidate {
  bound: RunBound;
  seconds: number;
}

/** The model's lower bounds on job `job`'s time (see RunBound), largest first. */
export function boundCandidates(
  job: ResolvedJob,
  result: JobResult,
  links: readonly LinkLoad[],
  config: Links,
  virtual?: VirtualTimeEvidence,
  stalledSeconds?: number,
  psBusySeconds?: number,
): BoundCandidate[] {
  const out: BoundCandidate[] = [];
  // Link: its busiest link direction's busy time (a PS link carries every PS job's).
  const usesPs = job.mode === "atp" || job.mode === "ps";
  const psLink = (host: string) =>
    job.parameterServers > 0 ? host.startsWith(`${job.name} ps `) : host === "ps";
  const own = links.filter(
    (l) => l.host.startsWith(`${job.name} worker `) || (usesPs && psLink(l.host)),
  );
  out.push({
    bound: "link",
    seconds: Math.max(0, ...own.map((l) => (l.bytes * 8) / l.rateBitsPerSecond)),
  });
  // Round trips: each carries at most a window; an all-reduce takes at least one.
  const m = pathModel(job, config, virtual);
  const payload = 4 * job.elementsPerPacket;
  const window = effectiveWindow(job);
  const messages =
    job.mode === "ring"
      ? [result.bytesSentPerWorker] // ring: what each worker sends per iteration, by measure
      : (job.layers?.map((l) => l.bytes) ?? [job.tensorBytes]);
  let rounds = 0;
  let fits = true;
  for (const bytes of messages) {
    const packets = Math.ceil(bytes / payload);
    rounds += Math.max(1, Math.ceil(packets / window));
    if (packets > window) fits = false;
  }
  const roundTrip: RunBound =
    m.switchMs > m.networkMs && m.switchMs >= m.hostMs
      ? "switch"
      : m.hostMs > m.networkMs
        ? "host"
        : fits
          ? "latency"
          : "window";
  out.push({ bound: roundTrip, seconds: (job.iterations * rounds * m.rttMs) / 1000 });
  if (stalledSeconds !== undefined) out.push({ bound: "loss", seconds: stalledSeconds });
  if (psBusySeconds !== undefined && psBusySeconds > 0) {
    // A PS's CPU: every piece it completes costs it time (sim/costs.ts).
    out.push({ bound: "host", seconds: psBusySeconds });
  }
  const backwardMs = job.layers?.reduce((n, l) => n + l.backwardMs, 0) ?? 0;
  out.push({ bound: "compute", seconds: (job.iterations * (job.computeMs + backwardMs)) / 1000 });
  // Stable: on a tie the earlier (link, then round trips) wins.
  return out.sort((a, b) => b.seconds - a.seconds);
}

/** Why a run got its bound: the critical job, its time, and the model's lower bounds on it (s), largest first. */
export interface BoundBasis {
  job: string;
  seconds: number;
  bounds: BoundCandidate[];
}

/** What limited a run with links (see RunBound), and why. `virtual`: the simulator's evidence. */
export function runBound(
  links: readonly LinkLoad[],
  jobs: readonly ResolvedJob[],
  results: readonly JobResult[],
  config: Links,
  virtual?: VirtualTimeEvidence,
): { bound: RunBound; basis: BoundBasis } | null {
  if (jobs.length === 0 || results.length !== jobs.length) return null;
  // The critical job: the one that ended last ended the run.
  let j = 0;
  const endOf = (i: number) => jobs[i].startMs / 1000 + results[i].seconds;
  for (let i = 1; i < jobs.length; i++) if (endOf(i) > endOf(j)) j = i;
  const bounds = boundCandidates(
    jobs[j],
    results[j],
    links,
    config,
    virtual,
    virtual?.stalledSeconds[j],
    virtual?.parameterServerBusySeconds?.[j],
  );
  const basis = { job: jobs[j].name, seconds: results[j].seconds, bounds };
  if ((links[0]?.utilization ?? 0) > LINK_BOUND_UTILIZATION) return { bound: "link", basis };
  const [best] = bounds;
  // In virtual time a tail drop's cost is measured: the stall it caused
  // (loss) or the busy link behind it (link), whichever is larger.
  if (virtual !== undefined) return { bound: best.bound, basis };
  // Processes do not measure stalls: a port that tail-dropped had its buffer
  // full, and that link is taken as the bottleneck.
  if (links.some((l) => l.drops > 0)) return { bound: "link", basis };
  const needed = best.bound === "link" ? LINK_BOUND_UTILIZATION : EXPLAINED_SHARE;
  return { bound: best.seconds >= needed * results[j].seconds ? best.bound : "host", basis };
}
