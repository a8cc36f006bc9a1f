import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import type { SocketAsPromised } from "dgram-as-promised";
import type { SwitchConfig } from "../proto/config.js";
import { bindDataSocket } from "../runtime/socket.js";
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
