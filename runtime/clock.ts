import { performance } from "node:perf_hooks";

/**
 * Where this process's performance.now() started on the system's monotonic
 * clock (ms): the clock every process on this host reads alike, which no
 * wall-clock adjustment moves. Two processes' times compare through it to
 * well under a millisecond; their `performance.timeOrigin`s (wall-clock
 * readings at each start) can differ by tens of ms under clock slewing.
 */
export function monotonicOriginMs(): number {
  const before = process.hrtime.bigint();
  const now = performance.now();
  const after = process.hrtime.bigint();
  return Number((before + after) / 2n) / 1e6 - now;
}
