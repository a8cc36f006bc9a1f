import { writeRegion } from "../proto/packets.js";
import { DESTINATION_ALL_WORKERS, Flag, HEADER_BYTES } from "../proto/wire.js";
import { type AggregatorArray, AggregatorState } from "./aggregators.js";
import type { JobState, RegionState } from "./jobs.js";

/** What region changes need of the switch around them: sending, and telling the manager. */
export interface RegionLinks {
  /** Sends `packet` to every worker of `job` (`except` one, or -1). */
  multicast(job: JobState, packet: Buffer, except: number): void;
  /** Sends `packet` to one address. */
  emit(packet: Buffer, port: number, address: string): void;
  /** A job's regions of `epoch` and every older epoch have drained. */
  drained(jobId: number, epoch: number): void;
}

/**
 * Region changes of running jobs (proto/README.md, section 11), apart from
 * the per-packet pipeline that calls into them. PSNs from a switchover PSN
 * on use the new region and epoch: one past anything a worker can have sent
 * yet (highest PSN seen + the window in the region). The old region serves
 * the PSNs below it until every worker has sent in the new epoch (each does
 * so only once it holds every result below the switchover); then it has
 * drained. Region packets announce each change and answer workers that sent
 * in a stale region.
 */
export class RegionChanges {
  private readonly packet = Buffer.alloc(HEADER_BYTES);
  private readonly view = new DataView(this.packet.buffer, this.packet.byteOffset, HEADER_BYTES);

  constructor(
    private readonly aggregators: AggregatorArray,
    private readonly links: RegionLinks,
    /** counts region changes whose old region has drained */
    private readonly stats: { regionChanges: number },
  ) {}

  /** Moves or resizes `job`'s region; a change that arrives while another drains waits for it. */
  change(job: JobState, offset: number, size: number, epoch: number): void {
    if (job.old !== null) {
      job.queuedChange = { offset, size, epoch };
      return;
    }
    const old = job.current;
    if (job.maxPsn < 0) {
      // Nothing sent yet: nothing to drain.
      this.sweep(job, old);
      job.current = { epoch, offset, size, start: 0 };
      this.fresh(job, job.current);
      this.links.drained(job.id, (epoch + 255) % 256);
      this.announce(job);
      return;
    }
    job.old = old;
    // No worker can have sent past the highest PSN seen + the window it runs
    // with in this region (smaller than the job's for a small NetReduce region).
    const start = Math.max(old.start, job.maxPsn + job.windowIn(old) + 1);
    job.current = { epoch, offset, size, start };
    job.switched = 0;
    job.overlapping = offset < old.offset + old.size && old.offset < offset + size;
    if (!job.overlapping) this.fresh(job, job.current);
    this.announce(job);
  }

  /**
   * A contribution of `workerId` in the new epoch while the old region
   * drains. Returns false when the packet must wait (an overlapping region
   * holds the new epoch back until the old one has drained).
   */
  admitNewEpoch(job: JobState, workerId: number): boolean {
    // A worker sends in a new epoch only once it holds every result of the old one.
    // Unsigned, like fullBitmap: worker 31's bit is the sign bit.
    job.switched = (job.switched | (1 << workerId)) >>> 0;
    if (job.switched === job.fullBitmap) {
      this.finishDrain(job);
      return true;
    }
    return !job.overlapping;
  }

  private finishDrain(job: JobState): void {
    const old = job.old;
    if (old === null) return;
    job.old = null;
    // Overlapping: the new epoch was held back, so the region holds only old PSNs.
    if (job.overlapping) this.fresh(job, job.current);
    else this.sweep(job, old);
    // Workers whose first new-epoch packets were held back may send again now.
    if (job.overlapping) this.announce(job, Flag.resend);
    job.overlapping = false;
    this.stats.regionChanges++;
    // Every epoch before the current one is done, also one a queued change skipped.
    this.links.drained(job.id, (job.current.epoch + 255) % 256);
    const queued = job.queuedChange;
    if (queued !== null) {
      job.queuedChange = null;
      this.change(job, queued.offset, queued.size, queued.epoch);
    }
  }

  /** Readies a region for a job's new epoch: a NetReduce region starts empty. */
  fresh(job: JobState, region: RegionState): void {
    // An ATP slice may be shared with running jobs; only a NetReduce region is the job's alone.
    if (job.mode === "netreduce") this.aggregators.clear(region.offset, region.size);
    else if (job.mode === "atp") this.sweep(job, region);
  }

  /** Empties whatever the job still holds in `region` (outside its current one, for ATP). */
  sweep(job: JobState, region: RegionState): void {
    const a = this.aggregators;
    for (let i = region.offset; i < region.offset + region.size; i++) {
      if (a.state[i] !== AggregatorState.empty && a.jobId[i] === job.id) {
        a.setState(i, AggregatorState.empty);
      }
    }
  }

  /** Tells every worker of the job its current region. */
  private announce(job: JobState, flags = 0): void {
    this.write(job, job.current, DESTINATION_ALL_WORKERS, flags);
    this.links.multicast(job, this.packet, -1);
  }

  /** Tells a worker the region that serves `psn`, which its packet should have used. */
  tell(job: JobState, psn: number, workerId: number, port: number, address: string): void {
    const region = job.old !== null && psn < job.current.start ? job.old : job.current;
    this.write(job, region, workerId);
    this.links.emit(this.packet, port, address);
  }

  private write(job: JobState, region: RegionState, destination: number, flags = 0): void {
    writeRegion(
      this.view,
      0,
      flags,
      job.id,
      job.fanIn,
      region.start,
      region.offset,
      region.size,
      region.epoch,
      destination,
    );
  }
}
