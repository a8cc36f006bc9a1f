import type { Socket } from "node:dgram";
import { readFileSync } from "node:fs";
import DgramAsPromised, { type SocketAsPromised } from "dgram-as-promised";

/**
 * The least receive and send buffer of a data-plane socket: smaller ones
 * lose packets under incast. A process asks for more when its windows need
 * it (see socketBuffers).
 */
export const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

/** A socket's buffers as granted, for `ready` records: what was asked, what the kernel gave. */
export interface SocketBuffers {
  /** bytes asked for, each direction */
  requestedBytes: number;
  /** bytes the kernel granted (what SO_RCVBUF took, before the kernel doubles it for its bookkeeping) */
  receiveBytes: number;
  sendBytes: number;
  /** net.core.rmem_max: the most an unprivileged SO_RCVBUF gets; null when unreadable */
  kernelLimitBytes: number | null;
  /** the kernel's limit kept the receive buffer below what was asked */
  capped: boolean;
}

/** net.core.rmem_max, or null where /proc does not say (not Linux). */
export function kernelReceiveLimit(): number | null {
  try {
    const n = Number(readFileSync("/proc/sys/net/core/rmem_max", "utf8").trim());
    return Number.isFinite(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/** What the kernel granted `socket` after `requestedBytes` were asked for. */
export function socketBuffers(socket: Socket, requestedBytes: number): SocketBuffers {
  // Linux reports twice what it took (the other half pays for its bookkeeping).
  const receiveBytes = Math.floor(socket.getRecvBufferSize() / 2);
  const sendBytes = Math.floor(socket.getSendBufferSize() / 2);
  return {
    requestedBytes,
    receiveBytes,
    sendBytes,
    kernelLimitBytes: kernelReceiveLimit(),
    capped: receiveBytes < requestedBytes,
  };
}

/**
 * A warning, in words naming the numbers, when `inFlightBytes` (what the
 * peers may have in flight towards this socket at once) exceed its receive
 * buffer: a burst that size overflows it, and the kernel drops the rest
 * before any emulated loss. Null when it fits.
 */
export function bufferWarning(
  who: string,
  inFlightBytes: number,
  buffers: SocketBuffers,
): string | null {
  if (inFlightBytes <= buffers.receiveBytes) return null;
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  const limit =
    buffers.capped && buffers.kernelLimitBytes !== null
      ? `; the kernel's limit net.core.rmem_max = ${mib(buffers.kernelLimitBytes)} capped it (raise it with sysctl -w net.core.rmem_max=${Math.ceil(inFlightBytes)})`
      : "";
  return (
    `${who}: up to ${mib(inFlightBytes)} may be in flight towards this socket, but its receive ` +
    `buffer holds ${mib(buffers.receiveBytes)}${limit}: the kernel will drop the excess ` +
    "(lower the window, or count it in bytes)"
  );
}

/**
 * A bound, unconnected data-plane socket with buffers of at least
 * `bufferBytes`, for the switch and the PS. Destinations are IP literals
 * learned from packets: answering the lookup at once keeps send()
 * synchronous (no DNS call, no nextTick), so a send buffer may be reused as
 * soon as send() returns.
 */
export async function bindDataSocket(
  host: string,
  port: number,
  bufferBytes = SOCKET_BUFFER_BYTES,
): Promise<SocketAsPromised> {
  const bytes = Math.max(SOCKET_BUFFER_BYTES, bufferBytes);
  const socket = DgramAsPromised.createSocket({
    type: "udp4",
    recvBufferSize: bytes,
    sendBufferSize: bytes,
    lookup: (address, _options, callback) => callback(null, address, 4),
  });
  await socket.bind(port, host);
  return socket;
}
