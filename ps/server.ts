import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import type { SocketAsPromised } from "dgram-as-promised";
import type { JobConfig } from "../proto/config.js";
import { type LinkParams, largestPacketBytes } from "../proto/links.js";
import {
  type Coalescer,
  type DatagramLimits,
  DEFAULT_DATAGRAM_LIMITS,
  socketCoalescer,
} from "../runtime/coalesce.js";
import { PacedPort, ReleaseClock } from "../runtime/pacer.js";
import {
  bindDataSocket,
  SOCKET_BUFFER_BYTES,
  type SocketBuffers,
  socketBuffers,
} from "../runtime/socket.js";
import { CoreTimer } from "../runtime/timer.js";
import { PsCore } from "./core.js";

export interface PsServerOptions {
  jobs: readonly JobConfig[];
  elementsPerAggregator: number;
  host?: string;
  /** 0 (the default) binds an ephemeral port; address() reports it */
  port?: number;
  /** serve unlisted jobs too, assuming this window (0: drop their packets) */
  adoptWindow?: number;
  /** the PS's emulated link: its acks are paced through its NIC's queue */
  link?: LinkParams;
  /** how many packets (and bytes) one datagram to the switch may carry; default 64 */
  datagram?: DatagramLimits;
}

/**
 * The parameter server's UDP adapter: one socket, node:dgram events straight
 * into PsCore; dgram-as-promised only for the socket's lifecycle.
 */
export class PsServer {
  socketErrors = 0;
  readonly timer: CoreTimer;

  private constructor(
    private readonly socket: SocketAsPromised,
    readonly core: PsCore,
    /** the PS's NIC on its emulated link, or null without one */
    readonly nic: PacedPort | null,
    /** acks for the switch leaving in one turn share datagrams */
    readonly coalescer: Coalescer,
    readonly buffers: SocketBuffers,
    /** set once the socket closes: a batch flushed later is dropped, not sent on a closed socket */
    private readonly closed: { value: boolean },
  ) {
    // Its one timer forgets adopted jobs that ended (PsCore.nextTimeout).
    this.timer = new CoreTimer(core);
    const timer = this.timer;
    socket.socket.on("message", (msg, rinfo) => {
      core.receive(msg, rinfo.port, rinfo.address, performance.now());
      timer.poke();
    });
    socket.socket.on("error", () => {
      this.socketErrors++;
    });
  }

  static async start(options: PsServerOptions): Promise<PsServer> {
    // Acks go to the address a packet came from, sent synchronously (see
    // bindDataSocket), so an ack buffer is free again when send() returns.
    const socket = await bindDataSocket(options.host ?? "127.0.0.1", options.port ?? 0);
    const raw = socket.socket;
    // The PS only ever answers the switch, which accepts datagrams of several packets.
    const closed = { value: false };
    const coalescer = socketCoalescer(
      options.datagram ?? DEFAULT_DATAGRAM_LIMITS,
      (datagram, port, address) => {
        if (!closed.value) raw.send(datagram, port, address);
      },
      true,
    );
    const sendNow = (packet: Buffer, port: number, address: string) => {
      coalescer.send(packet, port, address);
    };
    const nic =
      options.link === undefined
        ? null
        : new PacedPort(
            options.link,
            largestPacketBytes(options.elementsPerAggregator),
            sendNow,
            new ReleaseClock(),
          );
    const core = new PsCore(
      options.jobs,
      options.elementsPerAggregator,
      {
        send:
          nic === null
            ? sendNow
            : (packet, port, address) => {
                nic.send(packet, port, address);
              },
      },
      options.adoptWindow ?? 0,
    );
    return new PsServer(
      socket,
      core,
      nic,
      coalescer,
      socketBuffers(raw, SOCKET_BUFFER_BYTES),
      closed,
    );
  }

  address(): AddressInfo {
    return this.socket.address();
  }

  async close(): Promise<void> {
    this.timer.stop();
    this.nic?.clock.stop();
    // What waits for the end of this turn goes now; after close a flush sends nothing.
    this.coalescer.flush();
    this.closed.value = true;
    await this.socket.close();
  }
}
