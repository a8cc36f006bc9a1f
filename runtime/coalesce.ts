import { MAX_DATAGRAM_BYTES } from "../proto/wire.js";

/** How many packets, and how many bytes in all, one datagram may carry. */
export interface DatagramLimits {
  packets: number;
  bytes: number;
}

/** The senders' default: 64 packets (1 KiB packets: about 67 KB), never past a UDP datagram. */
export const DEFAULT_DATAGRAM_LIMITS: DatagramLimits = { packets: 64, bytes: MAX_DATAGRAM_BYTES };

/** Sends one datagram now: the process's socket. */
export type SendDatagram = (datagram: Buffer, port: number, address: string) => void;

/** A destination's batch being filled; two buffers, used in turn (see Coalescer). */
interface Destination {
  port: number;
  address: string;
  /** the destination accepts datagrams of several packets */
  accepts: boolean;
  buffers: Buffer[];
  current: number;
  bytes: number;
  packets: number;
  /** in the list of destinations to flush at the end of this turn */
  queued: boolean;
}

/**
 * Emulated segmentation offload: packets for the same destination produced in
 * one turn of the event loop leave in one datagram, up to `limits`; send()
 * copies the packet, and the owner calls flush() when `schedule` asks
 * (proto/README.md, section 2.1, "How ina-emu's senders batch").
 */
export class Coalescer {
  /** datagrams and packets handed to the socket */
  datagramsSent = 0;
  packetsSent = 0;
  private readonly byPort = new Map<number, Destination[]>();
  private readonly queue: Destination[] = [];

  constructor(
    readonly limits: DatagramLimits,
    private readonly sendDatagram: SendDatagram,
    private readonly schedule: () => void,
    /** every destination accepts batches (a worker's switch, the PS's switch) */
    private readonly acceptAll = false,
  ) {
    if (!Number.isInteger(limits.packets) || limits.packets < 1) {
      throw new RangeError(
        `packets per datagram must be a whole number >= 1, got ${limits.packets}`,
      );
    }
    if (!Number.isInteger(limits.bytes) || limits.bytes < 32 || limits.bytes > MAX_DATAGRAM_BYTES) {
      throw new RangeError(`datagram bytes must be 32..${MAX_DATAGRAM_BYTES}, got ${limits.bytes}`);
    }
  }

  /** Whether several packets may ever share a datagram. */
  get enabled(): boolean {
    return this.limits.packets > 1;
  }

  /** `address:port` accepts datagrams of several packets (it said so). */
  accept(port: number, address: string): void {
    const d = this.destination(port, address);
    d.accepts = true;
    if (d.buffers.length === 0 && this.limits.packets > 1) {
      d.buffers.push(Buffer.allocUnsafe(this.limits.bytes), Buffer.allocUnsafe(this.limits.bytes));
    }
  }

  send(packet: Buffer, port: number, address: string): void {
    this.packetsSent++;
    if (this.limits.packets === 1) {
      this.datagramsSent++;
      this.sendDatagram(packet, port, address);
      return;
    }
    const d = this.destination(port, address);
    if (!d.accepts || 2 * packet.length > this.limits.bytes) {
      // Alone in its datagram; what waits for this destination goes first, to keep the order.
      if (d.packets > 0) this.flushDestination(d);
      this.datagramsSent++;
      this.sendDatagram(packet, port, address);
      return;
    }
    if (d.bytes + packet.length > this.limits.bytes) this.flushDestination(d);
    packet.copy(d.buffers[d.current], d.bytes, 0, packet.length);
    d.bytes += packet.length;
    d.packets++;
    if (d.packets >= this.limits.packets) {
      this.flushDestination(d);
    } else if (!d.queued) {
      d.queued = true;
      this.queue.push(d);
      if (this.queue.length === 1) this.schedule();
    }
  }

  /** Sends every batch still being filled. */
  flush(): void {
    const queue = this.queue;
    for (let i = 0; i < queue.length; i++) {
      const d = queue[i];
      d.queued = false;
      if (d.packets > 0) this.flushDestination(d);
    }
    queue.length = 0;
  }

  private flushDestination(d: Destination): void {
    const datagram = d.buffers[d.current].subarray(0, d.bytes);
    d.current ^= 1;
    d.bytes = 0;
    d.packets = 0;
    this.datagramsSent++;
    this.sendDatagram(datagram, d.port, d.address);
  }

  private destination(port: number, address: string): Destination {
    let list = this.byPort.get(port);
    if (list !== undefined) {
      for (let i = 0; i < list.length; i++) if (list[i].address === address) return list[i];
    } else {
      list = [];
      this.byPort.set(port, list);
    }
    const d: Destination = {
      port,
      address,
      accepts: this.acceptAll,
      // Batch buffers only for a destination that takes batches (see accept()).
      buffers:
        this.limits.packets > 1 && this.acceptAll
          ? [Buffer.allocUnsafe(this.limits.bytes), Buffer.allocUnsafe(this.limits.bytes)]
          : [],
      current: 0,
      bytes: 0,
      packets: 0,
      queued: false,
    };
    list.push(d);
    return d;
  }
}

/**
 * A coalescer for a process's socket: its batches are flushed once per turn
 * of the event loop, by setImmediate, after every datagram received in that
 * turn has been processed.
 */
export function socketCoalescer(
  limits: DatagramLimits,
  sendDatagram: SendDatagram,
  acceptAll = false,
): Coalescer {
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    coalescer.flush();
  };
  const coalescer: Coalescer = new Coalescer(
    limits,
    sendDatagram,
    () => {
      if (scheduled) return;
      scheduled = true;
      setImmediate(flush);
    },
    acceptAll,
  );
  return coalescer;
}
