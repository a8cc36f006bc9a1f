/**
 * Placement: where in the aggregator array a region of a given size goes.
 * Free runs are the gaps between the blocks in use; a region takes the
 * smallest free run that holds it (best fit), which keeps big runs whole for
 * big jobs. The policies (policies.ts) decide sizes; these functions decide
 * offsets.
 */

export interface Run {
  offset: number;
  size: number;
}

/**
 * The offset of the smallest free run that holds `size` (-1 if none): big
 * runs stay whole for big jobs, which keeps fragmentation down.
 */
export function bestFit(free: ReadonlyArray<Run>, size: number): number {
  let best = -1;
  let bestSize = Number.POSITIVE_INFINITY;
  for (const run of free) {
    if (run.size >= size && run.size < bestSize) {
      best = run.offset;
      bestSize = run.size;
    }
  }
  return best;
}

/** Free runs of [0, total) not covered by the `[offset, size]` blocks. */
export function gaps(total: number, blocks: ReadonlyArray<readonly [number, number]>): Run[] {
  const sorted = [...blocks].sort((a, b) => a[0] - b[0]);
  const out: Run[] = [];
  let at = 0;
  for (const [offset, size] of sorted) {
    if (offset > at) out.push({ offset: at, size: offset - at });
    at = Math.max(at, offset + size);
  }
  if (at < total) out.push({ offset: at, size: total - at });
  return out;
}

/** Aggregators in `runs` altogether. */
export function totalSize(runs: ReadonlyArray<Run>): number {
  return runs.reduce((n, g) => n + g.size, 0);
}

/** The largest of `runs` (size 0 at offset -1 if there is none). */
export function largestRun(runs: ReadonlyArray<Run>): Run {
  return runs.reduce((best, g) => (g.size > best.size ? g : best), { offset: -1, size: 0 });
}
