import type { JobMode } from "./config.js";

/**
 * Where a PSN's aggregation lives in the switch's aggregator array. Workers
 * write the index into the header. For NetReduce the switch recomputes and
 * checks it; for ATP it only checks that it lies in the job's range.
 */

/** NetReduce: a job's region [offset, offset + size) is used round-robin by PSN. */
export function netReduceIndex(offset: number, size: number, psn: number): number {
  return offset + (psn % size);
}

/**
 * ATP's Hash(JobID, PSN), unsigned 32-bit: the job id, plus one so job 0 mixes
 * too, times the golden-ratio constant, XORed into the PSN, then MurmurHash3's
 * 32-bit finalizer. proto/README.md gives the same steps and test vectors.
 */
export function atpHash(jobId: number, psn: number): number {
  let x = (psn ^ Math.imul(jobId + 1, 0x9e3779b1)) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** ATP: agtr.idx = Hash(JobID, PSN) % size + offset, over the job's slice of the shared pool. */
export function atpIndex(jobId: number, psn: number, offset: number, size: number): number {
  return offset + (atpHash(jobId, psn) % size);
}

/**
 * Packets a worker of a job with window `window` keeps in flight in a region
 * of `size` aggregators: NetReduce's 2 x window rule caps it at size / 2
 * (proto/README.md, sections 8 and 11); ATP and PS jobs keep their window.
 */
export function windowInRegion(mode: JobMode, window: number, size: number): number {
  if (mode !== "netreduce") return window;
  return Math.max(1, Math.min(window, Math.floor(size / 2)));
}

/** Region epochs are 8 bits and wrap: `a` is newer than `b` if it is 1..127 ahead. */
export function newerEpoch(a: number, b: number): boolean {
  const ahead = (a - b) & 0xff;
  return ahead >= 1 && ahead <= 127;
}
