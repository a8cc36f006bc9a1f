/**
 * The meaning of a `failed` packet (wire spec, section 4): which workers the
 * switch waited for in vain (none: the parameter server), at which PSN, for
 * how long. Every side words it the same way.
 */
export function describeFailure(f: {
  jobId: number;
  deadWorkers: number;
  psn: number;
  waitedMs: number;
}): string {
  const waited = `${(f.waitedMs / 1000).toFixed(1)} s`;
  if (f.deadWorkers === 0) {
    return `job ${f.jobId}: the parameter server is unreachable (no ack for ${waited})`;
  }
  const ids: number[] = [];
  for (let w = 0; w < 32; w++) if ((f.deadWorkers >>> w) & 1) ids.push(w);
  const who = ids.length === 1 ? `worker ${ids[0]}` : `workers ${ids.join(", ")}`;
  return `job ${f.jobId}: ${who} stopped sending (PSN ${f.psn} waited ${waited} for ${ids.length === 1 ? "it" : "them"} while the others' contributions had arrived)`;
}
