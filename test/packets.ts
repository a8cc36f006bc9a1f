import { netReduceIndex } from "../proto/addressing.js";
import { decodeHeader, encodeHeader } from "../proto/codec.js";
import { DropReason } from "../proto/drops.js";
import { emptyHeader, HEADER_BYTES, type PacketHeader, PacketType } from "../proto/wire.js";
import type { Transmit } from "../switch/core.js";

/** Builds a datagram: header fields over defaults, then int32 values. */
export function packet(fields: Partial<PacketHeader>, values: number[]): Buffer {
  const h = { ...emptyHeader(), elementCount: values.length, ...fields };
  const buf = Buffer.alloc(HEADER_BYTES + values.length * 4);
  encodeHeader(new DataView(buf.buffer, buf.byteOffset, buf.length), 0, h);
  values.forEach((v, i) => {
    buf.writeInt32LE(v, HEADER_BYTES + 4 * i);
  });
  return buf;
}

/** A NetReduce contribution of `workerId` for `psn` in a job of region (offset, regionSize). */
export function contribution(
  job: { id: number; fanIn: number; offset: number; regionSize: number },
  workerId: number,
  psn: number,
  values: number[],
  extra: Partial<PacketHeader> = {},
): Buffer {
  return packet(
    {
      type: PacketType.contribution,
      jobId: job.id,
      workerId,
      fanIn: job.fanIn,
      psn,
      aggregatorIndex: netReduceIndex(job.offset, job.regionSize, psn),
      bitmap: 1 << workerId,
      scaleBits: 8,
      ...extra,
    },
    values,
  );
}

export interface Sent {
  port: number;
  address: string;
  header: PacketHeader;
  values: number[];
}

/** Decodes a datagram the switch sent (the bytes as they were at send time). */
export function decodeSent(bytes: Buffer, port: number, address: string): Sent {
  const header = emptyHeader();
  const reason = decodeHeader(
    new DataView(bytes.buffer, bytes.byteOffset, bytes.length),
    0,
    bytes.length,
    header,
  );
  if (reason !== DropReason.ok)
    throw new Error(`switch sent a malformed packet (reason ${reason})`);
  const values: number[] = [];
  for (let at = HEADER_BYTES; at < bytes.length; at += 4) values.push(bytes.readInt32LE(at));
  return { port, address, header, values };
}

/** A Transmit that records what was sent, copying the bytes at send time. */
export function captureTransmit(): Transmit & { sent: Sent[] } {
  const sent: Sent[] = [];
  return {
    sent,
    send(buf, port, address) {
      sent.push(decodeSent(Buffer.from(buf), port, address));
    },
  };
}
