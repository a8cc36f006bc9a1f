import { DropReason, type DropReasonValue } from "./drops.js";
import {
  ELEMENT_BYTES,
  Field,
  HEADER_BYTES,
  KNOWN_FLAGS,
  MAX_FAN_IN,
  MAX_SCALE_BITS,
  PACKET_TYPE_NAMES,
  type PacketHeader,
  PacketType,
  PROTOCOL_VERSION,
  WORKER_ID_NONE,
} from "./wire.js";

/**
 * Reads the header at `offset` of `view` into `out` and checks the invariants
 * every receiver relies on. `packetLength` is the bytes of this one packet
 * (a datagram may carry several, section 2.1; forEachPacket frames them).
 * Returns DropReason.ok or why the packet is unusable; on a reject `out` may
 * be partly filled. Cheap checks come first.
 */
export function decodeHeader(
  view: DataView,
  offset: number,
  packetLength: number,
  out: PacketHeader,
): DropReasonValue {
  if (packetLength < HEADER_BYTES) return DropReason.tooShort;
  out.version = view.getUint8(offset + Field.version);
  if (out.version !== PROTOCOL_VERSION) return DropReason.badVersion;
  out.type = view.getUint8(offset + Field.type);
  if (out.type < PacketType.contribution || out.type > PacketType.keepalive) {
    return DropReason.badType;
  }
  out.flags = view.getUint16(offset + Field.flags, true);
  if ((out.flags & ~KNOWN_FLAGS) !== 0) return DropReason.badFlags;
  out.elementCount = view.getUint16(offset + Field.elementCount, true);
  if (packetLength !== HEADER_BYTES + out.elementCount * ELEMENT_BYTES) {
    return DropReason.badLength;
  }
  if (view.getUint32(offset + Field.reserved, true) !== 0) return DropReason.badReserved;
  out.jobId = view.getUint16(offset + Field.jobId, true);
  out.workerId = view.getUint16(offset + Field.workerId, true);
  out.fanIn = view.getUint16(offset + Field.fanIn, true);
  if (out.fanIn === 0 || out.fanIn > MAX_FAN_IN) return DropReason.badFanIn;
  if (out.type === PacketType.contribution) {
    // WORKER_ID_NONE marks an aggregate the switch sends to the PS.
    if (out.workerId >= out.fanIn && out.workerId !== WORKER_ID_NONE) {
      return DropReason.badWorkerId;
    }
    if (out.elementCount === 0) return DropReason.emptyContribution;
  } else if (out.type === PacketType.keepalive) {
    // Only a worker of the job says it is alive, and it says nothing more.
    if (out.workerId >= out.fanIn) return DropReason.badWorkerId;
    if (out.elementCount !== 0) return DropReason.badLength;
  }
  out.psn = view.getUint32(offset + Field.psn, true);
  out.aggregatorIndex = view.getUint32(offset + Field.aggregatorIndex, true);
  out.bitmap = view.getUint32(offset + Field.bitmap, true);
  out.scaleBits = view.getUint8(offset + Field.scaleBits);
  if (out.scaleBits > MAX_SCALE_BITS) return DropReason.badScale;
  out.regionEpoch = view.getUint8(offset + Field.regionEpoch);
  out.destination = view.getUint16(offset + Field.destination, true);
  return DropReason.ok;
}

/**
 * Checks a datagram's framing (proto/README.md, section 2.1): the packets it
 * carries lie back to back, each 32 + 4 x elementCount bytes long, and end
 * exactly at its end. Returns how many packets it carries (at least 1), or,
 * when the framing is not certain, minus the reason to drop the whole
 * datagram: `tooShort` (an empty datagram), `badVersion` (a header of another
 * version, whose length field cannot be trusted) or `badLength` (a packet
 * runs past the end, or bytes are left over that are no packet). Reads only
 * each header's version and elementCount; decodeHeader checks the rest.
 */
export function datagramPackets(bytes: Uint8Array, length: number): number {
  let packets = 0;
  let at = 0;
  while (at < length) {
    if (length - at < HEADER_BYTES) return at === 0 ? -DropReason.tooShort : -DropReason.badLength;
    if (bytes[at + Field.version] !== PROTOCOL_VERSION) return -DropReason.badVersion;
    at += packetBytesAt(bytes, at);
    packets++;
  }
  if (at > length) return -DropReason.badLength;
  return packets === 0 ? -DropReason.tooShort : packets;
}

/**
 * What a datagram walk (forEachPacket) hands its packets to. A receiver
 * implements it once (or binds it once); nothing is made per datagram.
 */
export interface PacketVisitor<B extends Uint8Array = Uint8Array> {
  /**
   * Bytes [at, at + length) of `bytes` are one framed packet, in the order
   * the datagram carries them; decodeHeader checks the rest of its header.
   */
  packet(bytes: B, at: number, length: number): void;
  /** The whole datagram is dropped, counted once, for `reason`; no packet of it is handed out. */
  dropDatagram(reason: DropReasonValue): void;
}

/**
 * Walks a datagram (proto/README.md, section 2.1): checks its framing
 * (datagramPackets), drops it whole if it is longer than `maxBytes` (only a
 * caller in the same process can hand over more than MAX_DATAGRAM_BYTES;
 * `tooManyElements`), else hands out each of its packets in turn.
 */
export function forEachPacket<B extends Uint8Array>(
  bytes: B,
  length: number,
  maxBytes: number,
  visitor: PacketVisitor<B>,
): void {
  const packets = datagramPackets(bytes, length);
  if (packets < 0) {
    // The framing is not certain: the whole datagram goes, counted once.
    visitor.dropDatagram(-packets as DropReasonValue);
    return;
  }
  if (length > maxBytes) {
    visitor.dropDatagram(DropReason.tooManyElements);
    return;
  }
  let at = 0;
  for (let k = 0; k < packets; k++) {
    const packetLength = packetBytesAt(bytes, at);
    visitor.packet(bytes, at, packetLength);
    at += packetLength;
  }
}

/** The length of the packet whose header starts at `at` of `bytes`: 32 + 4 x its elementCount. */
export function packetBytesAt(bytes: Uint8Array, at: number): number {
  const elementCount = bytes[at + Field.elementCount] | (bytes[at + Field.elementCount + 1] << 8);
  return HEADER_BYTES + elementCount * ELEMENT_BYTES;
}

/** Writes `h` as a header at `offset` of `view`. The caller keeps values in range. */
export function encodeHeader(view: DataView, offset: number, h: PacketHeader): void {
  writeHeaderFields(
    view,
    offset,
    h.version,
    h.type,
    h.flags,
    h.jobId,
    h.workerId,
    h.fanIn,
    h.elementCount,
    h.psn,
    h.aggregatorIndex,
    h.bitmap,
    h.scaleBits,
    h.regionEpoch,
    h.destination,
  );
}

/**
 * Writes every header field at `at` of `view` (reserved as zero): the one
 * place the layout of section 3 is written. proto/packets.ts names the
 * arguments per packet type.
 */
export function writeHeaderFields(
  view: DataView,
  at: number,
  version: number,
  type: number,
  flags: number,
  jobId: number,
  workerId: number,
  fanIn: number,
  elementCount: number,
  psn: number,
  aggregatorIndex: number,
  bitmap: number,
  scaleBits: number,
  regionEpoch: number,
  destination: number,
): void {
  view.setUint8(at + Field.version, version);
  view.setUint8(at + Field.type, type);
  view.setUint16(at + Field.flags, flags, true);
  view.setUint16(at + Field.jobId, jobId, true);
  view.setUint16(at + Field.workerId, workerId, true);
  view.setUint16(at + Field.fanIn, fanIn, true);
  view.setUint16(at + Field.elementCount, elementCount, true);
  view.setUint32(at + Field.psn, psn, true);
  view.setUint32(at + Field.aggregatorIndex, aggregatorIndex, true);
  view.setUint32(at + Field.bitmap, bitmap >>> 0, true);
  view.setUint8(at + Field.scaleBits, scaleBits);
  view.setUint8(at + Field.regionEpoch, regionEpoch);
  view.setUint16(at + Field.destination, destination, true);
  view.setUint32(at + Field.reserved, 0, true);
}

/** A one-line description of a header, for logs and test failures (never per packet). */
export function formatHeader(h: PacketHeader): string {
  const type = PACKET_TYPE_NAMES[h.type] ?? `type${h.type}`;
  return (
    `${type} v${h.version} job=${h.jobId} worker=${h.workerId} fanIn=${h.fanIn} ` +
    `psn=${h.psn} idx=${h.aggregatorIndex} n=${h.elementCount} bitmap=0x${(h.bitmap >>> 0).toString(16)} ` +
    `scale=${h.scaleBits} epoch=${h.regionEpoch} dest=${h.destination} flags=0x${h.flags.toString(16)}`
  );
}
