import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
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
import { DEFAULT_RTO, WorkerCore, type WorkerCoreOptions } from "./core.js";

export type WorkerOptions = Omit<WorkerCoreOptions, keyof typeof DEFAULT_RTO> &
  Partial<Pick<WorkerCoreOptions, keyof typeof DEFAULT_RTO>> & {
    switchHost: string;
    switchPort: number;
    /**
     * local address to bind (port 0); default 127.0.0.1 when the switch is on
     * the loopback, else 0.0.0.0 (the route to the switch picks the source)
     */
    host?: string;
    /** how often retransmission timeouts are checked */
    tickMs?: number;
    /** the worker's emulated link: its sends are paced through its NIC's queue */
    link?: LinkParams;
    /** how many packets (and bytes) one datagram to the switch may carry; default 64 */
    datagram?: DatagramLimits;
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

/**
 * A NetReduce end host over UDP: a socket connected to the switch, the data
 * path on node:dgram events into WorkerCore, and a timer for retransmission.
 *
 *   const worker = await Worker.connect({ ...options });
 *   const sum = await worker.allreduce(gradient);
 */
export class Worker {
  readonly core: WorkerCore;
  socketErrors = 0;
  private readonly tickMs: number;
  private timer: NodeJS.Timeout | null = null;
  private finish: (() => void) | null = null;

  private constructor(
    private readonly socket: SocketAsPromised,
    core: WorkerCore,
    tickMs: number,
  ) {
    this.core = core;
    this.tickMs = tickMs;
    socket.socket.on("message", (msg) => {
      core.receive(msg, performance.now());
      if (core.done && this.finish !== null) this.finish();
    });
    socket.socket.on("error", () => {
      // e.g. ICMP port unreachable while the switch is not up yet:
      // retransmission covers it, and a persistent fault ends in core.failure.
      this.socketErrors++;
    });
  }

  static async connect(options: WorkerOptions): Promise<Worker> {
    // A window of results may arrive at once: the receive buffer must hold it.
    const inFlight = options.window * packetBytes(options.elementsPerPacket);
    const requested = Math.max(SOCKET_BUFFER_BYTES, inFlight);
    const socket = DgramAsPromised.createSocket({
      type: "udp4",
      recvBufferSize: requested,
      sendBufferSize: requested,
    });
    await socket.bind(0, options.host ?? defaultBindHost(options.switchHost));
    const raw = socket.socket;
    await new Promise<void>((resolve, reject) => {
      raw.once("error", reject);
      raw.connect(options.switchPort, options.switchHost, () => {
        raw.off("error", reject);
        resolve();
      });
    });
    // A connected socket sends without a lookup; if the kernel queue is full
    // libuv keeps the slot's memory, which WorkerCore leaves untouched until
    // that PSN's result arrives.
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
    let nic: PacedPort | null = null;
    if (options.link !== undefined) {
      nic = new PacedPort(
        options.link,
        packetBytes(options.elementsPerPacket),
        sendNow,
        new ReleaseClock(),
      );
    }
    const paced = nic;
    const core = new WorkerCore(
      { ...DEFAULT_RTO, ...options },
      {
        send:
          paced === null
            ? sendNow
            : (packet) => {
                paced.send(packet, options.switchPort, options.switchHost);
              },
      },
    );
    const worker = new Worker(socket, core, options.tickMs ?? 5);
    worker.nic = nic;
    worker.coalescer = coalescer;
    worker.buffers = socketBuffers(raw, requested);
    worker.bufferWarning = bufferWarning("ina-worker", inFlight, worker.buffers);
    return worker;
  }

  /** Packets to the switch leaving in one turn share datagrams. */
  coalescer!: Coalescer;
  /** The socket's buffers, and a warning when a window of results overflows them. */
  buffers!: SocketBuffers;
  bufferWarning: string | null = null;

  /** The worker's NIC on its emulated link, or null without one. */
  nic: PacedPort | null = null;

  address(): AddressInfo {
    return this.socket.address();
  }

  /** Sums `input` with every other worker of the job; resolves with the sum. */
  allreduce(
    input: Float32Array,
    output: Float32Array = new Float32Array(input.length),
  ): Promise<Float32Array> {
    if (this.finish !== null) {
      return Promise.reject(new Error("an all-reduce is already running on this worker"));
    }
    const overflowBefore = this.core.stats.overflowedResults;
    return new Promise<Float32Array>((resolve, reject) => {
      this.finish = () => {
        this.finish = null;
        if (this.timer !== null) clearInterval(this.timer);
        this.timer = null;
        const overflowed = this.core.stats.overflowedResults - overflowBefore;
        if (this.core.failure !== null) reject(new Error(this.core.failure));
        else if (overflowed > 0) reject(new AllReduceOverflowError(output, overflowed));
        else resolve(output);
      };
      // Timeouts are checked after the event loop's poll phase, not in its
      // timers phase: after this process was descheduled for a while, the
      // timer fires first, and results waiting in the socket would otherwise
      // look lost and be sent for again.
      const tick = () => {
        this.core.tick(performance.now());
        if (this.core.done && this.finish !== null) this.finish();
      };
      this.timer = setInterval(() => setImmediate(tick), this.tickMs);
      try {
        this.core.begin(input, output, performance.now());
      } catch (error) {
        this.finish = null;
        clearInterval(this.timer);
        this.timer = null;
        reject(error);
        return;
      }
      if (this.core.done) this.finish();
    });
  }

  async close(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.nic?.clock.stop();
    await this.socket.close();
  }
}
