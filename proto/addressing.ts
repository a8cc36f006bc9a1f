/**
 * Where a PSN's aggregation lives in the switch's aggregator array. Workers
 * write the index into the header; the switch recomputes and checks it.
 */

/** NetReduce: a job's region [offset, offset + size) is used round-robin by PSN. */
export function netReduceIndex(offset: number, size: number, psn: number): number {
  return offset + (psn % size);
}
