/**
 * Why a datagram was not used. Every process counts drops by these reasons;
 * the index is the value used in counters, the name is what reports print.
 * The catalogue is kept honest by test/config.test.ts ("drop reasons").
 */
export const DropReason = {
  ok: 0,
  /** shorter than the 32-byte header */
  tooShort: 1,
  /** version byte is not PROTOCOL_VERSION */
  badVersion: 2,
  /** type byte names no packet type */
  badType: 3,
  /** a flag bit outside KNOWN_FLAGS is set */
  badFlags: 4,
  /** datagram length is not 32 + 4 x elementCount */
  badLength: 5,
  /** reserved field is not zero */
  badReserved: 6,
  /** fanIn is 0 or above MAX_FAN_IN */
  badFanIn: 7,
  /** a contribution whose workerId is not below its fanIn */
  badWorkerId: 8,
  /** scaleBits above MAX_SCALE_BITS */
  badScale: 9,
  /** jobId is not installed in the switch */
  unknownJob: 10,
  /** fanIn differs from the fan-in granted to the job */
  fanInMismatch: 11,
  /** aggregatorIndex is not the one the job's addressing gives for the PSN */
  badIndex: 12,
  /** more elements than an aggregator holds */
  tooManyElements: 13,
  /** elementCount or scaleBits differ from the aggregator's first contribution */
  shapeMismatch: 14,
  /** the PSN is older than the one the aggregator holds now */
  stale: 15,
  /** a newer PSN reached an aggregator whose PSN is still incomplete: the sender broke its window */
  windowViolation: 16,
  /** this worker's contribution is already in the aggregator */
  duplicate: 17,
  /** forward to a host the switch has not learned yet */
  unknownDestination: 18,
  /** a packet type this receiver does not accept */
  unexpectedType: 19,
  /** dropped on purpose by the fault injector */
  injectedDrop: 20,
  /** a result for a PSN the receiver is not waiting for */
  unexpectedResult: 21,
  /** a contribution with no elements */
  emptyContribution: 22,
  /** an ack that does not come from the switch's parameter server */
  notFromParameterServer: 23,
  /** a bitmap that is empty or names workers at or above the fan-in */
  badBitmap: 24,
  /** (PS) a partial aggregate sharing some, not all, of its workers with what the PS holds */
  overlappingPartial: 25,
  /** (PS) a PSN so far ahead of the job's slowest worker that the PS has no room for it */
  psnTooFarAhead: 26,
  /** (PS) a PSN every worker has moved past; its state is gone */
  psnRetired: 27,
  /**
   * a contribution in a job's new region epoch while its old region, which
   * the new one overlaps, still holds results some worker may need
   */
  regionDraining: 28,
  /** a contribution in a region epoch the job no longer uses for that PSN; answered with the region */
  regionChanged: 29,
  /**
   * a worker's packet from an address other than the one bound to (job,
   * worker); (PS) a piece from an address other than the switch's
   */
  wrongSource: 30,
  /** a packet of a job the switch failed (a worker stopped sending); answered with a `failed` packet */
  jobFailed: 31,
} as const;

export type DropReasonValue = (typeof DropReason)[keyof typeof DropReason];

/** Names indexed by reason value, for reports and metric labels. */
export const DROP_REASON_NAMES: readonly string[] = (() => {
  const names: string[] = [];
  for (const [name, value] of Object.entries(DropReason)) names[value] = name;
  return names;
})();

export const DROP_REASON_COUNT = DROP_REASON_NAMES.length;

/** Turns a per-reason counter array into `{ reason: count }`, leaving out zeros. */
export function dropsByName(counts: ArrayLike<number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 1; i < counts.length; i++) {
    if (counts[i] > 0) out[DROP_REASON_NAMES[i]] = counts[i];
  }
  return out;
}
