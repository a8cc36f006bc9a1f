import { type LinkPort, newVerdict } from "../link/link.js";
import { Field, Flag } from "../proto/wire.js";
import type { Engine } from "./engine.js";

/** Takes a delivered packet: its bytes, the port it came from, the time (ms). */
export type Receiver = (bytes: Buffer, from: number, nowMs: number) => void;

/** A packet on its way (reused once delivered). */
interface Delivery {
  buffer: Buffer;
  to: Receiver;
  from: number;
}

const EMPTY = Buffer.alloc(0);

/**
 * The simulator's wires: a packet goes through a link port (or straight
 * through without links), is marked or dropped there, and reaches its
 * receiver a processing time after it arrives. Buffers and deliveries are
 * pooled so the per-packet path allocates nothing once warm; receivers copy
 * what they keep, as the cores do with a socket's buffer.
 */
export class SimNetwork {
  private readonly pool = new Map<number, Buffer[]>();
  private readonly deliveries: Delivery[] = [];
  private readonly verdict = newVerdict();
  private readonly deliver = (d: Delivery): void => {
    d.to(d.buffer, d.from, this.engine.now / 1e6);
    this.giveBack(d.buffer);
    d.buffer = EMPTY;
    this.deliveries.push(d);
  };

  constructor(private readonly engine: Engine) {}

  /** Puts `packet` on `port` (or straight through with none) and hands it to `to` `processingNs` after it arrives. */
  send(
    port: LinkPort | null,
    packet: Buffer,
    processingNs: number,
    to: Receiver,
    from: number,
  ): void {
    let arriveNs = this.engine.now;
    let marked = false;
    if (port !== null) {
      const v = port.offer(packet.length, this.engine.now / 1e6, this.verdict);
      if (v.dropped) return;
      arriveNs = Math.round(v.arriveAt * 1e6);
      marked = v.marked;
    }
    const copy = this.take(packet);
    if (marked) copy.writeUInt16LE(copy.readUInt16LE(Field.flags) | Flag.ecn, Field.flags);
    const d = this.deliveries.pop() ?? { buffer: EMPTY, to, from };
    d.buffer = copy;
    d.to = to;
    d.from = from;
    this.engine.post(arriveNs + processingNs, this.deliver, d);
  }

  private take(bytes: Buffer): Buffer {
    const copy = this.pool.get(bytes.length)?.pop() ?? Buffer.allocUnsafe(bytes.length);
    copy.set(bytes);
    return copy;
  }

  private giveBack(buffer: Buffer): void {
    let free = this.pool.get(buffer.length);
    if (free === undefined) {
      free = [];
      this.pool.set(buffer.length, free);
    }
    free.push(buffer);
  }
}
