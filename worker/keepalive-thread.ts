/**
 * A worker's keepalive socket, on a thread of its own (README.md, "Dead
 * peers"): it says the worker is alive every `intervalMs` even while the
 * main thread's event loop is blocked. It cannot share the main socket, so
 * it binds its own port on the same IP, tells the main thread the port, and
 * the main socket registers it with the switch (a keepalive from the bound
 * address naming it, proto/README.md section 15).
 */
import { createSocket } from "node:dgram";
import { parentPort, workerData } from "node:worker_threads";
import { writeKeepalive } from "../proto/packets.js";
import { HEADER_BYTES } from "../proto/wire.js";

const o = workerData as {
  switchHost: string;
  switchPort: number;
  bindHost: string;
  jobId: number;
  workerId: number;
  fanIn: number;
  intervalMs: number;
};
const packet = Buffer.alloc(HEADER_BYTES);
writeKeepalive(
  new DataView(packet.buffer, packet.byteOffset, HEADER_BYTES),
  0,
  o.jobId,
  o.workerId,
  o.fanIn,
);
const socket = createSocket("udp4");
// e.g. ICMP port unreachable while the switch is not up: the next one may pass.
socket.on("error", () => {});
socket.bind(0, o.bindHost, () => {
  socket.connect(o.switchPort, o.switchHost, () => {
    parentPort?.postMessage({ port: socket.address().port });
    setInterval(() => socket.send(packet), o.intervalMs);
  });
});
