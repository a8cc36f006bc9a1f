import type { AddressInfo } from "node:net";
import DgramAsPromised, { type SocketAsPromised } from "dgram-as-promised";
import type { JobConfig } from "../proto/config.js";
import { SOCKET_BUFFER_BYTES } from "../proto/wire.js";
import { PsCore } from "./core.js";

export interface PsServerOptions {
  jobs: readonly JobConfig[];
  elementsPerAggregator: number;
  host?: string;
  /** 0 (the default) binds an ephemeral port; address() reports it */
  port?: number;
}

/**
 * The parameter server's UDP adapter: one socket, node:dgram events straight
 * into PsCore; dgram-as-promised only for the socket's lifecycle.
 */
export class PsServer {
  socketErrors = 0;

  private constructor(
    private readonly socket: SocketAsPromised,
    readonly core: PsCore,
  ) {
    socket.socket.on("message", (msg, rinfo) => core.receive(msg, rinfo.port, rinfo.address));
    socket.socket.on("error", () => {
      this.socketErrors++;
    });
  }

  static async start(options: PsServerOptions): Promise<PsServer> {
    const socket = DgramAsPromised.createSocket({
      type: "udp4",
      recvBufferSize: SOCKET_BUFFER_BYTES,
      sendBufferSize: SOCKET_BUFFER_BYTES,
      // Replies go to the IP literal a packet came from: answering the lookup
      // at once keeps send() synchronous, so an ack buffer is free on return.
      lookup: (address, _options, callback) => callback(null, address, 4),
    });
    await socket.bind(options.port ?? 0, options.host ?? "127.0.0.1");
    const raw = socket.socket;
    const core = new PsCore(options.jobs, options.elementsPerAggregator, {
      send(packet, port, address) {
        raw.send(packet, port, address);
      },
    });
    return new PsServer(socket, core);
  }

  address(): AddressInfo {
    return this.socket.address();
  }

  async close(): Promise<void> {
    await this.socket.close();
  }
}
