import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import DgramAsPromised, { type SocketAsPromised } from "dgram-as-promised";
import Fastify, { type FastifyInstance } from "fastify";
import type { Registry } from "prom-client";
import type { SwitchConfig } from "../proto/config.js";
import { SOCKET_BUFFER_BYTES } from "../proto/wire.js";
import { SwitchCore } from "./core.js";

export interface SwitchServerOptions {
  config: SwitchConfig;
  host?: string;
  /** 0 (the default) binds an ephemeral port; address() reports it */
  port?: number;
  /** how often held-back (reordered) packets are released when traffic pauses */
  tickMs?: number;
}

/**
 * The switch's UDP adapter: one socket, the data path on node:dgram events
 * straight into SwitchCore, and a timer for tick(). dgram-as-promised is used
 * only for the socket's lifecycle.
 */
export class SwitchServer {
  readonly core: SwitchCore;
  /** socket errors (e.g. ICMP unreachable reported on send) */
  socketErrors = 0;
  private readonly timer: NodeJS.Timeout;

  private constructor(
    private readonly socket: SocketAsPromised,
    core: SwitchCore,
    tickMs: number,
  ) {
    this.core = core;
    socket.socket.on("message", (msg, rinfo) => {
      core.receive(msg, rinfo.port, rinfo.address, performance.now());
    });
    socket.socket.on("error", () => {
      this.socketErrors++;
    });
    this.timer = setInterval(() => core.tick(performance.now()), tickMs);
  }

  static async start(options: SwitchServerOptions): Promise<SwitchServer> {
    const socket = await bindDataSocket(options.host ?? "127.0.0.1", options.port ?? 0);
    const raw = socket.socket;
    const core = new SwitchCore(options.config, {
      send(packet, port, address) {
        raw.send(packet, port, address);
      },
    });
    return new SwitchServer(socket, core, options.tickMs ?? 5);
  }

  address(): AddressInfo {
    return this.socket.address();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.socket.close();
  }
}

/**
 * A bound, unconnected data-plane socket with large buffers, shared by the
 * switch and the PS. Destinations are IP literals learned from packets:
 * answering the lookup at once keeps send() synchronous (no DNS call, no
 * nextTick), so a send buffer may be reused as soon as send() returns.
 */
export async function bindDataSocket(host: string, port: number): Promise<SocketAsPromised> {
  const socket = DgramAsPromised.createSocket({
    type: "udp4",
    recvBufferSize: SOCKET_BUFFER_BYTES,
    sendBufferSize: SOCKET_BUFFER_BYTES,
    lookup: (address, _options, callback) => callback(null, address, 4),
  });
  await socket.bind(port, host);
  return socket;
}

/**
 * A small HTTP server with `GET /metrics` for `registry`, for processes
 * without a control plane (the PS, workers). Binds `port` (0: any free one).
 */
export async function serveMetrics(
  registry: Registry,
  host: string,
  port: number,
): Promise<{ url: string; close: () => Promise<void> }> {
  const app = Fastify({ logger: false });
  addMetricsRoute(app, registry);
  await app.listen({ host, port });
  const bound = (app.server.address() as AddressInfo).port;
  return { url: `http://${host}:${bound}/metrics`, close: () => app.close() };
}

/** `GET /metrics`: the registry in Prometheus text format. */
export function addMetricsRoute(app: FastifyInstance, registry: Registry): void {
  app.get("/metrics", async (_request, reply) => {
    reply.header("content-type", registry.contentType);
    return registry.metrics();
  });
}
