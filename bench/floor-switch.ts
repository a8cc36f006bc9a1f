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
import { parseSwitchConfig } from "../proto/config.js";
import { Field, HEADER_BYTES, PacketType, WORKER_ID_NONE } from "../proto/wire.js";

const configIndex = process.argv.indexOf("--config");
const config = parseSwitchConfig(JSON.parse(readFileSync(process.argv[configIndex + 1], "utf8")));
const job = config.jobs[0];
if (job?.mode !== "netreduce") throw new Error("the floor relay serves one NetReduce job");
const elements = config.elementsPerAggregator;
const slotBytes = HEADER_BYTES + elements * 4;
const arena = new ArrayBuffer(job.size * slotBytes);
const slots = Array.from({ length: job.size }, (_, i) =>
  Buffer.from(arena, i * slotBytes, slotBytes),
);
const slotView = new DataView(arena);
const sums = new Int32Array(arena);
const slotPsn = new Float64Array(job.size).fill(-1);
const slotCount = new Uint8Array(job.size);
const scratch = new ArrayBuffer(slotBytes);
const scratchBuffer = Buffer.from(scratch);
const scratchView = new DataView(scratch);
const scratchValues = new Int32Array(scratch);
const ports = new Int32Array(job.fanIn);
const addresses: string[] = new Array(job.fanIn).fill("");
let rx = 0;
let tx = 0;
let first = -1;
let last = -1;

const socket = createSocket({ type: "udp4", recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
socket.on("message", (msg, rinfo) => {
  rx++;
  last = performance.now();
  if (first < 0) first = last;
  msg.copy(scratchBuffer);
  const worker = scratchView.getUint16(Field.workerId, true);
  const psn = scratchView.getUint32(Field.psn, true);
  const count = scratchView.getUint16(Field.elementCount, true);
  ports[worker] = rinfo.port;
  addresses[worker] = rinfo.address;
  const slot = psn % job.size;
  const base = (slot * slotBytes + HEADER_BYTES) / 4;
  if (slotPsn[slot] !== psn) {
    slotPsn[slot] = psn;
    slotCount[slot] = 0;
    for (let i = 0; i < count; i++) sums[base + i] = scratchValues[HEADER_BYTES / 4 + i];
  } else {
    for (let i = 0; i < count; i++) sums[base + i] += scratchValues[HEADER_BYTES / 4 + i];
  }
  if (++slotCount[slot] === job.fanIn) {
    const at = slot * slotBytes;
    msg.copy(slots[slot], 0, 0, HEADER_BYTES);
    slotView.setUint8(at + Field.type, PacketType.result);
    slotView.setUint16(at + Field.workerId, WORKER_ID_NONE, true);
    slotView.setUint32(
      at + Field.bitmap,
      job.fanIn === 32 ? 0xffffffff : (1 << job.fanIn) - 1,
      true,
    );
    const length = HEADER_BYTES + count * 4;
    for (let w = 0; w < job.fanIn; w++) {
      tx++;
      socket.send(slots[slot], 0, length, ports[w], addresses[w]);
    }
  }
});
const cpuSeconds = () => (process.cpuUsage().user + process.cpuUsage().system) / 1e6;
let startupCpuSeconds = 0;
socket.bind(0, "127.0.0.1", () => {
  startupCpuSeconds = cpuSeconds();
  const address = socket.address();
  process.stdout.write(
    `${JSON.stringify({ event: "ready", pid: process.pid, dataAddress: address.address, dataPort: address.port })}\n`,
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
      activeSeconds,
      packetsPerSecond: activeSeconds > 0 ? (rx + tx) / activeSeconds : 0,
      drops: {},
    })}\n`,
  );
  socket.close();
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
