import DgramAsPromised, { type SocketAsPromised } from "dgram-as-promised";

/** Receive and send buffer of every data-plane socket: smaller ones lose packets under incast. */
export const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

/**
 * A bound, unconnected data-plane socket with large buffers, for the switch
 * and the PS. Destinations are IP literals learned from packets:
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
