import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import type { SocketAsPromised } from "dgram-as-promised";
import type { SwitchConfig } from "../proto/config.js";
import { largestPacketBytes, linkParamsFor } from "../proto/links.js";
import type { SwitchLinkRecord } from "../proto/records.js";
import { packetBytes } from "../proto/wire.js";
import {
  type Coalescer,
  type DatagramLimits,
  DEFAULT_DATAGRAM_LIMITS,
  socketCoalescer,
} from "../runtime/coalesce.js";
import { PortsByDestination, ReleaseClock } from "../runtime/pacer.js";
import {
  bindDataSocket,
  bufferWarning,
  SOCKET_BUFFER_BYTES,
  type SocketBuffers,
  socketBuffers,
} from "../runtime/socket.js";
import { CoreTimer } from "../runtime/timer.js";
import { SwitchCore } from "./core.js";

export interface SwitchServerOptions {
  config: SwitchConfig;
  host?: string;
  /** 0 (the default) binds an ephemeral port; address() reports it */
  port?: number;
  /** how many packets (and bytes) one datagram may carry; default 64 */
  datagram?: DatagramLimits;
}

/** Bytes the config's jobs may have in flight towards the switch at once: every worker's window. */
export function configInFlightBytes(config: SwitchConfig): number {
  let bytes = 0;
  for (const job of config.jobs) {
    const elements = job.elementsPerPacket ?? config.elementsPerAggregator;
    bytes += job.fanIn * job.window * packetBytes(Math.min(elements, config.elementsPerAggregator));
  }
  return bytes;
}

/**
 * The switch's UDP adapter: one socket, the data path on node:dgram events
 * straight into SwitchCore, and one timer for the core's nextTimeout()
 * (runtime/timer.ts). dgram-as-promised is used
 * only for the socket's lifecycle. With emulated links (config `links`),
 * every packet leaves through the paced port towards its host; then the
 * coalescer puts the packets for one host that leave in one turn of the
 * event loop into one datagram.
 */
export class SwitchServer {
  readonly core: SwitchCore;
  /** socket errors (e.g. ICMP unreachable reported on send) */
  socketErrors = 0;
  /** the core's timers: held-back fault packets, the dead-peer scan */
  readonly timer: CoreTimer;

  private constructor(
    private readonly socket: SocketAsPromised,
    core: SwitchCore,
    /** the egress ports of the emulated links, or null without links */
    readonly ports: PortsByDestination | null,
    readonly coalescer: Coalescer,
    /** the data socket's buffers, and a warning when the config's windows overflow them */
    readonly buffers: SocketBuffers,
    readonly bufferWarning: string | null,
    /** set once the socket closes: a batch flushed later is dropped, not sent on a closed socket */
    private readonly closed: { value: boolean },
  ) {
    this.core = core;
    const timer = new CoreTimer(core);
    this.timer = timer;
    core.onTimersChanged = () => timer.poke();
    socket.socket.on("message", (msg, rinfo) => {
      core.receive(msg, rinfo.port, rinfo.address, performance.now());
      timer.poke();
    });
    socket.socket.on("error", () => {
      this.socketErrors++;
    });
    timer.poke();
  }

  static async start(options: SwitchServerOptions): Promise<SwitchServer> {
    const inFlight = configInFlightBytes(options.config);
    const requested = Math.max(SOCKET_BUFFER_BYTES, inFlight);
    const socket = await bindDataSocket(options.host ?? "127.0.0.1", options.port ?? 0, requested);
    const raw = socket.socket;
    const buffers = socketBuffers(raw, requested);
    const closed = { value: false };
    const sendDatagram = (datagram: Buffer, port: number, address: string) => {
      if (!closed.value) raw.send(datagram, port, address);
    };
    const coalescer = socketCoalescer(options.datagram ?? DEFAULT_DATAGRAM_LIMITS, sendDatagram);
    const parameterServer = options.config.parameterServer;
    if (parameterServer !== undefined) coalescer.accept(parameterServer.port, parameterServer.host);
    for (const job of options.config.jobs) {
      if (job.mode !== "atp" && job.mode !== "ps") continue;
      for (const own of job.parameterServers ?? []) coalescer.accept(own.port, own.host);
    }
    const sendNow = (packet: Buffer, port: number, address: string) => {
      coalescer.send(packet, port, address);
    };
    const links = options.config.links;
    let ports: PortsByDestination | null = null;
    const core = new SwitchCore(options.config, {
      send:
        links === undefined
          ? sendNow
          : (packet, port, address) => {
              ports?.send(packet, port, address);
            },
      acceptsBatches: (port, address) => coalescer.accept(port, address),
    });
    if (links !== undefined) {
      ports = new PortsByDestination(
        (port, address) => {
          const host = core.hostAt(port, address);
          const name =
            host === null
              ? `${address}:${port}`
              : host === "ps"
                ? (core.ownParameterServerAt(port, address) ?? "ps")
                : `job ${host.job} worker ${host.worker}`;
          return { name, params: linkParamsFor(links, host ?? { job: -1, worker: -1 }) };
        },
        largestPacketBytes(options.config.elementsPerAggregator),
        sendNow,
        new ReleaseClock(),
      );
    }
    return new SwitchServer(
      socket,
      core,
      ports,
      coalescer,
      buffers,
      bufferWarning("ina-switch", inFlight, buffers),
      closed,
    );
  }

  /** The egress port towards each host, with emulated links; undefined without. */
  linkRecords(options: { series?: boolean; now?: number } = {}): SwitchLinkRecord[] | undefined {
    return this.ports?.all.map(({ name, address, port, paced }) => ({
      host: name,
      address,
      port,
      ...paced.record(options),
    }));
  }

  address(): AddressInfo {
    return this.socket.address();
  }

  async close(): Promise<void> {
    this.timer.stop();
    this.ports?.clock.stop();
    // What waits for the end of this turn goes now; after close a flush sends nothing.
    this.coalescer.flush();
    this.closed.value = true;
    await this.socket.close();
  }
}
