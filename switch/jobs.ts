import { windowInRegion } from "../proto/addressing.js";
import { type JobConfig, jobRegion } from "../proto/config.js";
import type { JobCounters } from "../proto/records.js";
import { MAX_FAN_IN } from "../proto/wire.js";

/** A region of a job in one epoch: aggregators [offset, offset + size) for PSNs from `start`. */
export interface RegionState {
  epoch: number;
  offset: number;
  size: number;
  start: number;
}

/** A job installed in the switch: its rule (mode, fan-in, region) and its hosts. */
export class JobState {
  readonly id: number;
  readonly mode: JobConfig["mode"];
  readonly fanIn: number;
  /** the job's region (NetReduce) or pool slice (ATP) now; 0, 0 for a PS job */
  current: RegionState;
  /** the previous region while it drains after a change, else null */
  old: RegionState | null = null;
  /** whether `current` overlaps `old`: new-epoch packets wait until the old one drains */
  overlapping = false;
  /** workers that have sent in the current epoch since the last change */
  switched = 0;
  /** highest PSN of any contribution the program accepted */
  maxPsn = -1;
  /** a change that arrived while another was draining; applied when it has */
  queuedChange: { offset: number; size: number; epoch: number } | null = null;
  readonly window: number;
  /** bitmap with one bit per worker: the value of a complete aggregation */
  readonly fullBitmap: number;
  /** learned from each worker's packets; -1 until the worker has sent one */
  /**
   * ATP: most aggregators the job may hold at once (0: no limit): its
   * config's `quota`, else its fair share of its slice, the slice's size
   * over the ATP jobs whose slices overlap it (SwitchCore keeps it)
   */
  quota: number;
  /** the config's own quota, or null: the fair share */
  readonly quotaGiven: number | null;
  /**
   * ATP: payload bytes all the job's workers will send (its config's
   * `totalBytes`; 0: not told), and what they have sent, first sends
   * only: the `esa` pool's priority (SwitchCore)
   */
  totalBytes: number;
  payloadBytesIn = 0;
  /** ATP and PS jobs: the PSNs acked, and so the window's top (null for the others) */
  readonly watermark: AckWatermark | null;
  /** the job's packet shape, when known (0 and -1: any): see JobConfig */
  readonly elementsPerPacket: number;
  readonly scaleBits: number;
  /**
   * the job's own parameter servers (PSN p's go to index p % length), or
   * empty: the switch's shared one
   */
  readonly psPorts: Int32Array;
  readonly psAddresses: readonly string[];
  /** when a packet went to the PS with no ack since (ms), or -1: the PS's liveness */
  awaitingAckSince = -1;
  /**
   * when each worker last gave a sign of life (ms): a contribution, forward
   * or keepalive the switch accepted from the worker's bound address
   * (SwitchCore.heard); never a stranger's packet
   */
  readonly heardAt = new Float64Array(MAX_FAN_IN);
  /** how long a peer the job waits for may be silent (ms; 0: never), or -1: the switch's default */
  readonly deadPeerMs: number;
  readonly hostPort = new Int32Array(MAX_FAN_IN).fill(-1);
  /**
   * the UDP port of each worker's keepalive socket, on its bound IP, as a
   * keepalive from the bound address named it (section 15), or -1
   */
  readonly keepalivePort = new Int32Array(MAX_FAN_IN).fill(-1);
  readonly hostAddress: string[] = new Array(MAX_FAN_IN).fill("");
  /**
   * the source of the latest packet refused for each worker because another
   * address holds (or, unbound, may not take) its binding: a failure names it
   */
  readonly refusedPort = new Int32Array(MAX_FAN_IN).fill(-1);
  readonly refusedAddress: string[] = new Array(MAX_FAN_IN).fill("");
  /** the address each worker last said, with the `batches` flag, accepts datagrams of several packets */
  readonly batchesPort = new Int32Array(MAX_FAN_IN).fill(-1);
  readonly batchesAddress: string[] = new Array(MAX_FAN_IN).fill("");
  readonly counters: JobCounters = {
    contributions: 0,
    resends: 0,
    aggregationsCompleted: 0,
    resultsReplayed: 0,
    takeovers: 0,
    drops: 0,
    bytesIn: 0,
    collisions: 0,
    fallbacks: 0,
    evictions: 0,
    overflowFallbacks: 0,
    staleFreed: 0,
    releases: 0,
    leaseReclaims: 0,
    preemptions: 0,
    preempted: 0,
    overQuota: 0,
    acksWithoutMatch: 0,
    toParameterServer: 0,
    acks: 0,
    keepalives: 0,
    firstContributionAt: -1,
    lastContributionAt: -1,
  };

  constructor(config: JobConfig) {
    this.id = config.id;
    this.mode = config.mode;
    this.fanIn = config.fanIn;
    const region = jobRegion(config);
    this.current = { epoch: 0, offset: region.offset, size: region.size, start: 0 };
    this.window = config.window;
    this.elementsPerPacket = config.elementsPerPacket ?? 0;
    this.quotaGiven = config.mode === "atp" ? (config.quota ?? null) : null;
    this.quota = this.quotaGiven ?? 0;
    this.totalBytes = config.mode === "atp" ? (config.totalBytes ?? 0) : 0;
    this.watermark =
      config.mode === "atp" || config.mode === "ps"
        ? new AckWatermark(config.window, config.fanIn)
        : null;
    this.scaleBits = config.scaleBits ?? -1;
    this.deadPeerMs = config.deadPeerS === undefined ? -1 : config.deadPeerS * 1000;
    this.fullBitmap = config.fanIn === 32 ? 0xffffffff : (1 << config.fanIn) - 1;
    this.sources = config.sources === undefined ? null : sourceMatcher(config.sources);
    const own = config.mode === "atp" || config.mode === "ps" ? config.parameterServers : undefined;
    this.psPorts = Int32Array.from(own ?? [], (p) => p.port);
    this.psAddresses = (own ?? []).map((p) => p.host);
  }

  get offset(): number {
    return this.current.offset;
  }

  get size(): number {
    return this.current.size;
  }

  /** Packets a worker keeps in flight in `region`: NetReduce's 2 x window rule caps it at size / 2. */
  windowIn(region: RegionState): number {
    return windowInRegion(this.mode, this.window, region.size);
  }

  /** The region a contribution of `epoch` for `psn` uses, or null if none does. */
  regionFor(epoch: number, psn: number): RegionState | null {
    if (epoch === this.current.epoch && psn >= this.current.start) return this.current;
    const old = this.old;
    if (old !== null && epoch === old.epoch && psn < this.current.start) return old;
    return null;
  }

  /** Remembers where worker `workerId` sends from, so results can reach it. */
  /**
   * Whether a packet of worker `workerId` from `address:port` may be
   * considered: it comes from the address bound to (job, worker), or nobody
   * is bound yet. The first accepted packet of an unbound worker (a
   * config-file job's) binds it, trust on first use (bindOnFirstUse); the
   * control plane binds a joining worker's address (bindHost).
   */
  fromBoundHost(workerId: number, port: number, address: string): boolean {
    const bound = this.hostPort[workerId];
    if (bound >= 0) return bound === port && this.hostAddress[workerId] === address;
    // Unbound: a control-plane job waits for the authenticated bind; a
    // config-file job takes the first packet from an allowed source.
    return !this.bindsByControlOnly && (this.sources === null || this.sources(address));
  }

  /**
   * Set by the control plane: its workers' addresses are bound only through
   * it (join, PUT address), never by a first packet (no pre-bind window).
   */
  bindsByControlOnly = false;
  /** a config-file job's `sources`: who may be bound on first use; null: anyone */
  private readonly sources: ((address: string) => boolean) | null;

  /** Whether `address:port` is worker `workerId`'s registered keepalive socket (section 15). */
  fromKeepaliveSocket(workerId: number, port: number, address: string): boolean {
    return (
      this.keepalivePort[workerId] === port &&
      this.hostPort[workerId] >= 0 &&
      this.hostAddress[workerId] === address
    );
  }

  /** After a packet of an unbound worker was accepted: its address is the worker's from now on. */
  bindOnFirstUse(workerId: number, port: number, address: string): void {
    if (this.hostPort[workerId] >= 0) return;
    this.hostPort[workerId] = port;
    this.hostAddress[workerId] = address;
  }

  /** Binds worker `workerId`'s data address (the control plane, for a joining worker). */
  bindHost(workerId: number, port: number, address: string): void {
    if (this.hostPort[workerId] !== port || this.hostAddress[workerId] !== address) {
      this.keepalivePort[workerId] = -1;
    }
    this.hostPort[workerId] = port;
    this.hostAddress[workerId] = address;
  }
}

/**
 * Whether an address is one of `sources`: IPv4 addresses, IPv4 CIDRs
 * ("10.0.0.0/24") or exact IPv6 addresses (proto/config.ts checks them).
 */
export function sourceMatcher(sources: readonly string[]): (address: string) => boolean {
  const exact = new Set<string>();
  const nets: Array<{ base: number; mask: number }> = [];
  for (const source of sources) {
    const cidr = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(source);
    if (cidr === null) {
      exact.add(source);
      continue;
    }
    const bits = Number(cidr[2]);
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    nets.push({ base: (ipv4ToInt(cidr[1]) & mask) >>> 0, mask });
  }
  return (address) => {
    const a = address.replace(/^::ffff:/, "");
    if (exact.has(a)) return true;
    if (nets.length === 0 || !/^\d+\.\d+\.\d+\.\d+$/.test(a)) return false;
    const n = ipv4ToInt(a);
    return nets.some((net) => (n & net.mask) >>> 0 === net.base);
  };
}

function ipv4ToInt(address: string): number {
  return address.split(".").reduce((n, part) => ((n << 8) | Number(part)) >>> 0, 0);
}

/**
 * Why a worker the switch waited for may not be dead: its packets came from
 * another address than the one bound to it (words for a failure's reason),
 * or "" if none was refused.
 */
export function refusedSources(job: JobState, workers: number): string {
  const parts: string[] = [];
  for (let w = 0; w < job.fanIn; w++) {
    if (((workers >>> w) & 1) === 0 || job.refusedPort[w] < 0) continue;
    const from = `${job.refusedAddress[w]}:${job.refusedPort[w]}`;
    parts.push(
      job.hostPort[w] >= 0
        ? `worker ${w} is bound to ${job.hostAddress[w]}:${job.hostPort[w]}${job.bindsByControlOnly ? "" : " (the first address that sent for it)"}, and packets for it from ${from} were refused (wrongSource)`
        : `packets for worker ${w} from ${from} were refused (wrongSource): ${job.bindsByControlOnly ? "it was never bound through the control plane" : "that address is not one of the job's sources"}`,
    );
  }
  return parts.join("; ");
}

/**
 * Where an ATP or PS job's PSNs may be (proto/README.md, section 9,
 * "Window"): a worker sends PSN p only once it has the result of every PSN
 * up to p - W, and every result of these jobs is an ack that passes through
 * the switch. So the switch knows `below`, the lowest PSN it has not seen
 * acked, and a contribution for p >= below + W broke its window (a tenant
 * flooding far-ahead PSNs): dropped before it claims an aggregator or
 * reaches the PS. `below` comes from the acks (a ring of 4W flags), and
 * from the workers' own progress: worker w sending PSN h shows that every
 * PSN up to h - W was acked, so the least such h over every worker bounds
 * it too (a job installed again with PSNs already under way; one rogue
 * worker cannot move it while another is behind).
 */
export class AckWatermark {
  below = 0;
  private readonly acked: Uint8Array;
  /** the highest PSN each worker sent (-1: none yet) */
  private readonly highest: Float64Array;

  constructor(
    readonly window: number,
    private readonly fanIn: number,
  ) {
    this.acked = new Uint8Array(4 * window);
    this.highest = new Float64Array(fanIn).fill(-1);
  }

  /** Worker `w` sent PSN `psn`: whether it is within the window. */
  admits(w: number, psn: number): boolean {
    if (psn > this.highest[w]) this.highest[w] = psn;
    if (psn < this.below + this.window) return true;
    let least = Number.POSITIVE_INFINITY;
    for (let i = 0; i < this.fanIn; i++) if (this.highest[i] < least) least = this.highest[i];
    this.advanceTo(least - this.window + 1);
    return psn < this.below + this.window;
  }

  /** PSN `psn` was acked. */
  ack(psn: number): void {
    const size = this.acked.length;
    if (psn < this.below || psn >= this.below + size) return;
    this.acked[psn % size] = 1;
    while (this.acked[this.below % size] === 1) {
      this.acked[this.below % size] = 0;
      this.below++;
    }
  }

  private advanceTo(target: number): void {
    const size = this.acked.length;
    while (this.below < target) {
      this.acked[this.below % size] = 0;
      this.below++;
      if (target - this.below >= size) {
        this.acked.fill(0);
        this.below = target;
      }
    }
  }
}
