import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { Worker as Thread } from "node:worker_threads";
import DgramAsPromised, { type SocketAsPromised } from "dgram-as-promised";
import type { LinkParams } from "../proto/links.js";
import { packetBytes } from "../proto/wire.js";
import {
  type Coalescer,
  type DatagramLimits,
  DEFAULT_DATAGRAM_LIMITS,
  socketCoalescer,
} from "../runtime/coalesce.js";
import { PacedPort, ReleaseClock } from "../runtime/pacer.js";
import {
  bufferWarning,
  SOCKET_BUFFER_BYTES,
  type SocketBuffers,
  socketBuffers,
} from "../runtime/socket.js";
import { CoreTimer, type TimedCore } from "../runtime/timer.js";
import {
  type Collective,
  CollectiveCore,
  type CollectiveOptions,
  type CollectiveStats,
  chunkStart,
} from "./collective.js";
import {
  DEFAULT_KEEPALIVE_MS,
  DEFAULT_RTO,
  WorkerCore,
  type WorkerCoreOptions,
  type WorkerTransmit,
} from "./core.js";

export type WorkerOptions = Omit<WorkerCoreOptions, keyof typeof DEFAULT_RTO> &
  Partial<Pick<WorkerCoreOptions, keyof typeof DEFAULT_RTO>> & {
    switchHost: string;
    switchPort: number;
    /**
     * local address to bind (port 0); default 127.0.0.1 when the switch is on
     * the loopback, else 0.0.0.0 (the route to the switch picks the source)
     */
    host?: string;
    /** the worker's emulated link: its sends are paced through its NIC's queue */
    link?: LinkParams;
    /** how many packets (and bytes) one datagram to the switch may carry; default 64 */
    datagram?: DatagramLimits;
    /**
     * also send keepalives from a thread's socket (worker/keepalive-thread.ts),
     * so that the switch hears from this worker while the caller blocks the
     * event loop; default false (a worker whose main loop hangs for good is
     * then kept alive too)
     */
    keepaliveThread?: boolean;
  };

/** A result whose sum saturated somewhere: the output is not exact. */
export class AllReduceOverflowError extends Error {
  override name = "AllReduceOverflowError";
  constructor(
    readonly output: Float32Array,
    readonly overflowedResults: number,
  ) {
    super(
      `${overflowedResults} result packet(s) saturated the int32 range: lower scaleBits or the input magnitude`,
    );
  }
}

/** A socket bound to the loopback cannot reach a switch on another machine. */
function defaultBindHost(switchHost: string): string {
  return switchHost === "localhost" || /^127\./.test(switchHost) ? "127.0.0.1" : "0.0.0.0";
}

/** What the UDP adapter needs of a sans-IO end host. */
interface HostCore extends TimedCore {
  receive(datagram: Buffer, now: number): void;
  sendKeepalive(now: number): void;
  observeTimerLateness(lateMs: number, now: number): void;
  useKeepaliveSocket(port: number): void;
  readonly options: {
    jobId: number;
    workerId: number;
    fanIn: number;
    keepaliveMs?: number;
  };
  readonly done: boolean;
  readonly failure: string | null;
}

/** Where an end host's socket talks to, and how. */
interface PathOptions {
  switchHost: string;
  switchPort: number;
  host?: string;
  link?: LinkParams;
  datagram?: DatagramLimits;
  keepaliveThread?: boolean;
  window: number;
  elementsPerPacket: number;
}

/** What Endpoint.open made: the connected socket, the core on it, and how it sends. */
interface OpenedEndpoint<C extends HostCore> {
  socket: SocketAsPromised;
  core: C;
  coalescer: Coalescer;
  nic: PacedPort | null;
  buffers: SocketBuffers;
  warning: string | null;
  /** where a keepalive thread's socket binds and sends, or null for none */
  keepaliveThread: { switchHost: string; switchPort: number; bindHost: string } | null;
}

/**
 * An end host's socket, connected to the switch, with its coalescer and
 * (with a link) its paced NIC, the data path on node:dgram events into a
 * sans-IO core, and one timer for the core's nextTimeout() (runtime/timer.ts).
 */
class Endpoint<C extends HostCore> {
  socketErrors = 0;
  /** the core's timers (retransmission, gaps, give-up, hello, keepalive) */
  readonly timer: CoreTimer;
  private keepaliveThread: Thread | null = null;
  private finish: (() => void) | null = null;

  private readonly socket: SocketAsPromised;
  readonly core: C;
  /** packets to the switch leaving in one turn share datagrams */
  readonly coalescer: Coalescer;
  /** the worker's NIC on its emulated link, or null without one */
  readonly nic: PacedPort | null;
  /** the socket's buffers, and a warning when a window of results overflows them */
  readonly buffers: SocketBuffers;
  readonly bufferWarning: string | null;

  protected constructor(opened: OpenedEndpoint<C>) {
    const { socket, core } = opened;
    this.socket = socket;
    this.core = core;
    this.coalescer = opened.coalescer;
    this.nic = opened.nic;
    this.buffers = opened.buffers;
    this.bufferWarning = opened.warning;
    // Timeouts are checked after the event loop's poll phase, not in its
    // timers phase (see CoreTimer): after this process was descheduled for a
    // while, results waiting in the socket would otherwise look lost.
    const timer = new CoreTimer(
      core,
      () => {
        if (core.done && this.finish !== null) this.finish();
      },
      (lateMs, now) => core.observeTimerLateness(lateMs, now),
    );
    this.timer = timer;
    socket.socket.on("message", (msg) => {
      core.receive(msg, performance.now());
      if (core.done && this.finish !== null) this.finish();
      timer.poke();
    });
    socket.socket.on("error", () => {
      // e.g. ICMP port unreachable while the switch is not up yet:
      // retransmission covers it, and a persistent fault ends in core.failure.
      this.socketErrors++;
    });
    // The keepalive is one of the core's timers, due between operations too.
    timer.poke();
    if (opened.keepaliveThread !== null) this.startKeepaliveThread(opened.keepaliveThread);
  }

  /**
   * Keepalives from a thread, which a blocked event loop does not stop: its
   * socket's port is registered by this socket's keepalives, which name it
   * (proto/README.md, section 15).
   */
  private startKeepaliveThread(where: NonNullable<OpenedEndpoint<C>["keepaliveThread"]>): void {
    const o = this.core.options;
    const intervalMs = o.keepaliveMs ?? DEFAULT_KEEPALIVE_MS;
    if (intervalMs <= 0) return;
    const thread = new Thread(new URL("./keepalive-thread.js", import.meta.url), {
      workerData: { ...where, jobId: o.jobId, workerId: o.workerId, fanIn: o.fanIn, intervalMs },
    });
    thread.unref();
    thread.on("message", (m: { port: number }) => {
      this.core.useKeepaliveSocket(m.port);
      this.core.sendKeepalive(performance.now());
      this.coalescer.flush();
    });
    // Without the thread, the main loop's keepalives remain.
    thread.on("error", () => {});
    this.keepaliveThread = thread;
  }

  /** Opens the socket and builds the core on it. */
  protected static async open<C extends HostCore>(
    options: PathOptions,
    makeCore: (transmit: WorkerTransmit) => C,
  ): Promise<OpenedEndpoint<C>> {
    // A window of results may arrive at once: the receive buffer must hold it.
    const inFlight = options.window * packetBytes(options.elementsPerPacket);
    const requested = Math.max(SOCKET_BUFFER_BYTES, inFlight);
    const socket = DgramAsPromised.createSocket({
      type: "udp4",
      recvBufferSize: requested,
      sendBufferSize: requested,
    });
    const bindHost = options.host ?? defaultBindHost(options.switchHost);
    await socket.bind(0, bindHost);
    const raw = socket.socket;
    await new Promise<void>((resolve, reject) => {
      raw.once("error", reject);
      raw.connect(options.switchPort, options.switchHost, () => {
        raw.off("error", reject);
        resolve();
      });
    });
    // A connected socket sends without a lookup, synchronously; the
    // coalescer copies what it batches.
    const coalescer = socketCoalescer(
      options.datagram ?? DEFAULT_DATAGRAM_LIMITS,
      (datagram) => {
        raw.send(datagram);
      },
      true,
    );
    const sendNow = (packet: Buffer) => {
      coalescer.send(packet, options.switchPort, options.switchHost);
    };
    const nic =
      options.link === undefined
        ? null
        : new PacedPort(
            options.link,
            packetBytes(options.elementsPerPacket),
            sendNow,
            new ReleaseClock(),
          );
    const core = makeCore({
      send:
        nic === null
          ? sendNow
          : (packet) => {
              nic.send(packet, options.switchPort, options.switchHost);
            },
    });
    const buffers = socketBuffers(raw, requested);
    return {
      socket,
      core,
      coalescer,
      nic,
      buffers,
      warning: bufferWarning("ina-worker", inFlight, buffers),
      keepaliveThread:
        options.keepaliveThread === true
          ? { switchHost: options.switchHost, switchPort: options.switchPort, bindHost }
          : null,
    };
  }

  address(): AddressInfo {
    return this.socket.address();
  }

  /**
   * Runs one operation on the core: `start` begins it; resolves once the
   * core is done, rejects with its failure.
   */
  protected run(start: (now: number) => void): Promise<void> {
    if (this.finish !== null) {
      return Promise.reject(new Error("an operation is already running on this worker"));
    }
    return new Promise<void>((resolve, reject) => {
      this.finish = () => {
        this.finish = null;
        // With a keepalive thread: register its port now that this worker
        // is surely bound (its first contribution binds a config-file job's).
        // Sent at once: the caller may block the loop as soon as this resolves.
        if (this.keepaliveThread !== null) {
          this.core.sendKeepalive(performance.now());
          this.coalescer.flush();
        }
        if (this.core.failure !== null) reject(new Error(this.core.failure));
        else resolve();
      };
      try {
        start(performance.now());
      } catch (error) {
        this.finish = null;
        reject(error);
        return;
      }
      if (this.core.done) this.finish();
      else this.timer.poke();
    });
  }

  /**
   * Sends what is still queued (the coalescer's batch, the NIC's queue, for
   * at most a second), then closes the socket.
   */
  async close(): Promise<void> {
    this.timer.stop();
    await this.keepaliveThread?.terminate();
    this.keepaliveThread = null;
    this.coalescer.flush();
    const nic = this.nic;
    if (nic !== null) {
      for (let waited = 0; nic.pending > 0 && waited < 1000; waited += 10) await sleep(10);
      nic.clock.stop();
      this.coalescer.flush();
    }
    await this.socket.close();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A NetReduce, ATP or PS end host over UDP: the switch (or the PS) sums.
 *
 *   const worker = await Worker.connect({ ...options });
 *   const sum = await worker.allreduce(gradient);
 */
export class Worker extends Endpoint<WorkerCore> {
  static async connect(options: WorkerOptions): Promise<Worker> {
    const o = await Endpoint.open(
      options,
      (transmit) => new WorkerCore({ ...DEFAULT_RTO, ...options }, transmit),
    );
    return new Worker(o);
  }

  /** Sums `input` with every other worker of the job; resolves with the sum. */
  async allreduce(
    input: Float32Array,
    output: Float32Array = new Float32Array(input.length),
  ): Promise<Float32Array> {
    const overflowBefore = this.core.stats.overflowedResults;
    await this.run((now) => this.core.begin(input, output, now));
    const overflowed = this.core.stats.overflowedResults - overflowBefore;
    if (overflowed > 0) throw new AllReduceOverflowError(output, overflowed);
    return output;
  }
}

export type CollectiveWorkerOptions = Omit<CollectiveOptions, keyof typeof DEFAULT_RTO> &
  Partial<Pick<CollectiveOptions, keyof typeof DEFAULT_RTO>> &
  Omit<PathOptions, "window" | "elementsPerPacket">;

/**
 * A worker of a `ring` job: ring all-reduce and the other collectives among
 * the job's workers, through the switch's forwarding (proto/README.md,
 * section 17). Every worker of the job calls the same collectives in the
 * same order with the same lengths.
 *
 *   const worker = await CollectiveWorker.connect({ ...options });
 *   const sum = await worker.allreduce(gradient);
 *   const mine = await worker.reduceScatter(gradient);
 */
export class CollectiveWorker extends Endpoint<CollectiveCore> {
  static async connect(options: CollectiveWorkerOptions): Promise<CollectiveWorker> {
    const o = await Endpoint.open(
      options,
      (transmit) => new CollectiveCore({ ...DEFAULT_RTO, ...options }, transmit),
    );
    // Known to the switch from now on, before any peer sends to this worker.
    o.core.hello(performance.now());
    o.coalescer.flush();
    return new CollectiveWorker(o);
  }

  get stats(): CollectiveStats {
    return this.core.stats;
  }

  /**
   * Keeps answering for `lingerMs` before closing: a peer whose last
   * acknowledgement from this worker was lost sends its packet again after
   * its timeout, and only an open socket acknowledges it (section 17). The
   * default waits twice this worker's own timeout, at least 500 ms and at
   * most the longest timeout (rtoMaxMs).
   */
  override async close(
    lingerMs = Math.min(this.core.options.rtoMaxMs, Math.max(500, 2 * this.core.stats.rtoMs)),
  ): Promise<void> {
    this.coalescer.flush();
    if (lingerMs > 0) await sleep(lingerMs);
    await super.close();
  }

  /** Runs collective `op` (lengths as CollectiveCore.begin says); resolves with `output`. */
  async collective(
    op: Collective,
    input: Float32Array,
    output: Float32Array,
    root = 0,
  ): Promise<Float32Array> {
    const saturatedBefore = this.core.stats.saturatedValues;
    await this.run((now) => this.core.begin(op, input, output, now, root));
    const saturated = this.core.stats.saturatedValues - saturatedBefore;
    if (saturated > 0) throw new AllReduceOverflowError(output, saturated);
    return output;
  }

  /** Ring all-reduce: every worker gets the sum. */
  allreduce(input: Float32Array, output = new Float32Array(input.length)) {
    return this.collective("allReduce", input, output);
  }

  /** Worker w gets chunk w of the sum (chunk c: elements [floor(cL/N), floor((c+1)L/N))). */
  reduceScatter(input: Float32Array, output?: Float32Array) {
    const n = this.core.options.fanIn;
    const w = this.core.options.workerId;
    const length = chunkStart(input.length, n, w + 1) - chunkStart(input.length, n, w);
    return this.collective("reduceScatter", input, output ?? new Float32Array(length));
  }

  /** Every worker gets every worker's chunk, in order: `length` elements in all. */
  allGather(input: Float32Array, length: number, output = new Float32Array(length)) {
    return this.collective("allGather", input, output);
  }

  /** Every worker gets the root's input. */
  broadcast(input: Float32Array, root: number, output = new Float32Array(input.length)) {
    return this.collective("broadcast", input, output, root);
  }

  /** The root gets the sum; the others' output is left as it is. */
  reduce(input: Float32Array, root: number, output = new Float32Array(input.length)) {
    return this.collective("reduce", input, output, root);
  }

  /** Chunk j of each worker's input goes to worker j; chunk i of the output came from worker i. */
  allToAll(input: Float32Array, output = new Float32Array(input.length)) {
    return this.collective("allToAll", input, output);
  }
}
