#!/usr/bin/env node
import { createSocket } from "node:dgram";
/**
 * The transport floor for `npm run bench`: the least a Node process must do
 * to serve NetReduce workers. It sums contributions by PSN and multicasts the
 * result, with no validation, no bitmap, no fault injection and no recovery
 * (so it only works on a lossless run). Same command line and records as
 * ina-switch, so the experiment runner can use either.
 */
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { packetBytesAt } from "../proto/codec.js";
import { parseSwitchConfig } from "../proto/config.js";
import type { FloorReadyRecord, FloorStatsRecord } from "../proto/records.js";
import { Field, HEADER_BYTES, PacketType, WORKER_ID_NONE } from "../proto/wire.js";
import { DEFAULT_DATAGRAM_LIMITS, socketCoalescer } from "../runtime/coalesce.js";

const configIndex = process.argv.indexOf("--config");
const config = parseSwitchConfig(JSON.parse(readFileSync(process.argv[configIndex + 1], "utf8")));
const job = config.jobs[0];
if (job?.mode !== "netreduce") throw new Error("the floor relay serves one NetReduce job");
const regionSize = job.regionSize;
const fanIn = job.fanIn;
const elements = config.elementsPerAggregator;
const slotBytes = HEADER_BYTES + elements * 4;
const arena = new ArrayBuffer(job.regionSize * slotBytes);
const slots = Array.from({ length: job.regionSize }, (_, i) =>
  Buffer.from(arena, i * slotBytes, slotBytes),
);
const slotView = new DataView(arena);
const sums = new Int32Array(arena);
const slotPsn = new Float64Array(job.regionSize).fill(-1);
const slotCount = new Uint8Array(job.regionSize);
const scratch = new ArrayBuffer(slotBytes);
const scratchBuffer = Buffer.from(scratch);
const scratchView = new DataView(scratch);
const scratchValues = new Int32Array(scratch);
const ports = new Int32Array(job.fanIn);
const addresses: string[] = new Array(job.fanIn).fill("");
let rx = 0;
let rxDatagrams = 0;
let tx = 0;
let first = -1;
let last = -1;

const socket = createSocket({ type: "udp4", recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
// The floor coalesces too (every worker accepts it), so it stays a fair floor.
const packetsIndex = process.argv.indexOf("--packets-per-datagram");
const coalescer = socketCoalescer(
  {
    ...DEFAULT_DATAGRAM_LIMITS,
    packets:
      packetsIndex < 0 ? DEFAULT_DATAGRAM_LIMITS.packets : Number(process.argv[packetsIndex + 1]),
  },
  (datagram, port, address) => {
    socket.send(datagram, port, address);
  },
  true,
);
socket.on("message", (msg, rinfo) => {
  rxDatagrams++;
  last = performance.now();
  if (first < 0) first = last;
  for (let at = 0; at + HEADER_BYTES <= msg.length; ) {
    const length = packetBytesAt(msg, at);
    onPacket(msg, at, length, rinfo.port, rinfo.address);
    at += length;
  }
});
function onPacket(msg: Buffer, offset: number, length: number, port: number, address: string) {
  rx++;
  msg.copy(scratchBuffer, 0, offset, offset + length);
  const worker = scratchView.getUint16(Field.workerId, true);
  const psn = scratchView.getUint32(Field.psn, true);
  const count = scratchView.getUint16(Field.elementCount, true);
  ports[worker] = port;
  addresses[worker] = address;
  const slot = psn % regionSize;
  const base = (slot * slotBytes + HEADER_BYTES) / 4;
  if (slotPsn[slot] !== psn) {
    slotPsn[slot] = psn;
    slotCount[slot] = 0;
    for (let i = 0; i < count; i++) sums[base + i] = scratchValues[HEADER_BYTES / 4 + i];
  } else {
    for (let i = 0; i < count; i++) sums[base + i] += scratchValues[HEADER_BYTES / 4 + i];
  }
  if (++slotCount[slot] === fanIn) {
    const at = slot * slotBytes;
    scratchBuffer.copy(slots[slot], 0, 0, HEADER_BYTES);
    slotView.setUint8(at + Field.type, PacketType.result);
    slotView.setUint16(at + Field.workerId, WORKER_ID_NONE, true);
    slotView.setUint32(at + Field.bitmap, fanIn === 32 ? 0xffffffff : (1 << fanIn) - 1, true);
    const packet = length === slotBytes ? slots[slot] : slots[slot].subarray(0, length);
    for (let w = 0; w < fanIn; w++) {
      tx++;
      coalescer.send(packet, ports[w], addresses[w]);
    }
  }
}
const cpuSeconds = () => (process.cpuUsage().user + process.cpuUsage().system) / 1e6;
let startupCpuSeconds = 0;
socket.bind(0, "127.0.0.1", () => {
  startupCpuSeconds = cpuSeconds();
  const address = socket.address();
  process.stdout.write(
    `${JSON.stringify({ event: "ready", pid: process.pid, dataAddress: address.address, dataPort: address.port } satisfies FloorReadyRecord)}\n`,
  );
});
const stop = () => {
  const activeSeconds = first < 0 ? 0 : (last - first) / 1000;
  process.stdout.write(
    `${JSON.stringify({
      event: "stats",
      final: true,
      cpuSeconds: cpuSeconds(),
      startupCpuSeconds,
      dataPathCpuSeconds: cpuSeconds() - startupCpuSeconds,
      rxPackets: rx,
      txPackets: tx,
      rxDatagrams,
      txDatagrams: coalescer.datagramsSent,
      activeSeconds,
      packetsPerSecond: activeSeconds > 0 ? (rx + tx) / activeSeconds : 0,
      drops: {},
    } satisfies FloorStatsRecord)}\n`,
  );
  socket.close();
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
