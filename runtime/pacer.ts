import { performance } from "node:perf_hooks";
import { LinkPort, newVerdict, type PortVerdict, portRecord } from "../link/link.js";
import { CONTROL_PACKET_BYTES, type LinkParams } from "../proto/links.js";
import type { LinkPortRecord } from "../proto/records.js";
import { Field, Flag, HEADER_BYTES } from "../proto/wire.js";

/** The most a release clock sends early to make up for its timers' lateness (ms). */
const MAX_LEAD_MS = 2;

/** Sends one datagram now: the process's socket. */
export type SendNow = (packet: Buffer, port: number, address: string) => void;

/**
 * One egress port of a real process, on its emulated link: the link model
 * decides each packet's fate and arrival time, a copy of the packet waits in
 * the port's own memory until then, and goes out on the socket at its
 * arrival time (the far end processes it at once, so the whole link delay is
 * taken here). Copies, because a packet may be marked (its ecn flag set on
 * this copy only, not on a multicast's other copies) and because the
 * caller's buffer (an aggregator, a window slot) may change before it leaves.
 *
 * Packets wait in two rings, each in arrival order: data, and control
 * packets, which the link model lets overtake queued data
 * (LinkParams.controlPriority); release() merges them by arrival time.
 */
export class PacedPort {
  readonly link: LinkPort;
  private readonly verdict: PortVerdict = newVerdict();
  private readonly data: ParkedPackets;
  private readonly control: ParkedPackets;

  constructor(
    params: LinkParams,
    slotBytes: number,
    private readonly sendNow: SendNow,
    readonly clock: ReleaseClock,
  ) {
    this.link = new LinkPort(params);
    const inFlight = params.bufferBytes + (params.rateBitsPerSecond / 8) * (params.delayMs / 1000);
    this.data = new ParkedPackets(slotBytes, Math.max(16, Math.ceil(inFlight / slotBytes) + 16));
    this.control = new ParkedPackets(CONTROL_PACKET_BYTES, 64);
    clock.add(this);
  }

  /** The port's parameters and counters as a record (link/link.ts portRecord: with the queue series, or the queue now). */
  record(options: { series?: boolean; now?: number } = {}): LinkPortRecord {
    return portRecord(this.link, options);
  }

  /** Packets waiting (queued or on the wire). */
  get pending(): number {
    return this.data.size + this.control.size;
  }

  /** Offers `packet` to the link at `now`; false if the buffer was full (a tail drop). */
  send(packet: Buffer, port: number, address: string, now = performance.now()): boolean {
    const v = this.link.offer(packet.length, now, this.verdict);
    if (v.dropped) return false;
    const ring =
      this.link.params.controlPriority && packet.length <= CONTROL_PACKET_BYTES
        ? this.control
        : this.data;
    ring.park(packet, v.marked, v.arriveAt, port, address);
    this.clock.due(v.arriveAt);
    return true;
  }

  /**
   * Sends every packet whose arrival time has come, or comes within `lead`
   * ms, telling the clock how late each one left; returns when the next one
   * is due (or Infinity).
   */
  release(now: number, lead = 0): number {
    const data = this.data;
    const control = this.control;
    for (;;) {
      const ring = control.nextAt() <= data.nextAt() ? control : data;
      const at = ring.nextAt();
      if (at > now + lead) return at;
      this.clock.sentLate(now - at);
      ring.sendFirst(this.sendNow);
    }
  }
}

/**
 * Packets waiting for their arrival time, in order, in preallocated slots of
 * the largest packet, enough for the buffer and the link's bandwidth-delay
 * product; the ring grows (rarely, and only then allocates) if small packets
 * outnumber it.
 */
class ParkedPackets {
  private arena: Buffer;
  private views: Buffer[] = [];
  private short: Array<Buffer | undefined> = [];
  private arriveAt: Float64Array;
  private lengths: Int32Array;
  private ports: Int32Array;
  private addresses: string[];
  private head = 0;
  private tail = 0;

  constructor(
    private readonly slotBytes: number,
    private capacity: number,
  ) {
    this.arena = Buffer.alloc(this.capacity * slotBytes);
    this.arriveAt = new Float64Array(this.capacity);
    this.lengths = new Int32Array(this.capacity);
    this.ports = new Int32Array(this.capacity);
    this.addresses = new Array(this.capacity).fill("");
    this.makeViews();
  }

  get size(): number {
    return this.tail - this.head;
  }

  /** The first packet's arrival time (Infinity: none). */
  nextAt(): number {
    return this.head < this.tail
      ? this.arriveAt[this.head % this.capacity]
      : Number.POSITIVE_INFINITY;
  }

  park(packet: Buffer, marked: boolean, arriveAt: number, port: number, address: string): void {
    if (this.tail - this.head === this.capacity) this.grow();
    const i = this.tail % this.capacity;
    const view = this.views[i];
    packet.copy(view, 0, 0, packet.length);
    if (marked && packet.length >= HEADER_BYTES) {
      view.writeUInt16LE(view.readUInt16LE(Field.flags) | Flag.ecn, Field.flags);
    }
    this.lengths[i] = packet.length;
    this.arriveAt[i] = arriveAt;
    this.ports[i] = port;
    this.addresses[i] = address;
    this.tail++;
  }

  sendFirst(sendNow: SendNow): void {
    const i = this.head % this.capacity;
    sendNow(this.packetIn(i), this.ports[i], this.addresses[i]);
    this.head++;
  }

  /**
   * Slot `i`'s packet as a Buffer of its exact length: send() with an
   * offset and length would slice a new Buffer per send, so a shorter view is
   * made once per slot and kept while its packets have that length.
   */
  private packetIn(i: number): Buffer {
    const length = this.lengths[i];
    if (length === this.slotBytes) return this.views[i];
    let view = this.short[i];
    if (view === undefined || view.length !== length) {
      view = this.views[i].subarray(0, length);
      this.short[i] = view;
    }
    return view;
  }

  private makeViews(): void {
    this.short = new Array(this.capacity);
    this.views = [];
    for (let i = 0; i < this.capacity; i++) {
      this.views.push(this.arena.subarray(i * this.slotBytes, (i + 1) * this.slotBytes));
    }
  }

  /** Doubles the ring, keeping the waiting packets in order. */
  private grow(): void {
    const old = {
      arena: this.arena,
      arriveAt: this.arriveAt,
      lengths: this.lengths,
      ports: this.ports,
      addresses: this.addresses,
      capacity: this.capacity,
    };
    const n = this.tail - this.head;
    this.capacity *= 2;
    this.arena = Buffer.alloc(this.capacity * this.slotBytes);
    this.arriveAt = new Float64Array(this.capacity);
    this.lengths = new Int32Array(this.capacity);
    this.ports = new Int32Array(this.capacity);
    this.addresses = new Array(this.capacity).fill("");
    for (let k = 0; k < n; k++) {
      const from = (this.head + k) % old.capacity;
      old.arena.copy(
        this.arena,
        k * this.slotBytes,
        from * this.slotBytes,
        (from + 1) * this.slotBytes,
      );
      this.arriveAt[k] = old.arriveAt[from];
      this.lengths[k] = old.lengths[from];
      this.ports[k] = old.ports[from];
      this.addresses[k] = old.addresses[from];
    }
    this.head = 0;
    this.tail = n;
    this.makeViews();
  }
}

/**
 * One timer for every paced port of a process: armed for the earliest
 * packet due, so it costs nothing while every queue is empty. Node's timers
 * count whole milliseconds and fire up to a millisecond or more after their
 * deadline; each hop of a round trip would add that to the link model's
 * delay (about 2 ms per round trip, a window of 2 on a slow link 26 %
 * slower than the model). So the clock measures how late it fires and
 * leads by that much: it is armed `lead` ms before the packet is due and
 * sends what is due within `lead` of now, so packets leave on time on
 * average, each within about a millisecond of it. Each firing sends every
 * packet that is due, so pacing is exact on average and bursty within a
 * millisecond.
 */
export class ReleaseClock {
  private readonly ports: PacedPort[] = [];
  private timer: NodeJS.Timeout | null = null;
  private armedFor = Number.POSITIVE_INFINITY;
  /** how much earlier than a packet's time the timer is armed and the packet sent (ms) */
  lead = 0;

  add(port: PacedPort): void {
    this.ports.push(port);
  }

  /** A packet is due at `at` (ms on performance.now()). */
  due(at: number): void {
    if (at >= this.armedFor) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.armedFor = at;
    this.timer = setTimeout(() => this.fire(), Math.max(0, at - this.lead - performance.now()));
  }

  /** A packet left `lateMs` after its time (negative: early): lead more or less (an average over 16 packets). */
  sentLate(lateMs: number): void {
    this.lead = Math.min(MAX_LEAD_MS, Math.max(0, this.lead + lateMs / 16));
  }

  /** Sends what is due now (within the lead); for a caller that already has the time. */
  releaseDue(now: number): void {
    let next = Number.POSITIVE_INFINITY;
    for (const port of this.ports) {
      const due = port.release(now, this.lead);
      if (due < next) next = due;
    }
    if (next < Number.POSITIVE_INFINITY) this.due(next);
  }

  private fire(): void {
    const now = performance.now();
    this.timer = null;
    this.armedFor = Number.POSITIVE_INFINITY;
    this.releaseDue(now);
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.armedFor = Number.POSITIVE_INFINITY;
  }
}

/** Who is at a destination, and its link: the switch knows it from its jobs and config. */
export type DescribeDestination = (
  port: number,
  address: string,
) => { name: string; params: LinkParams };

/**
 * A process's paced ports, one per destination (the switch has one port
 * towards each host), made the first time a packet goes there.
 */
export class PortsByDestination {
  readonly all: Array<{ name: string; address: string; port: number; paced: PacedPort }> = [];
  private readonly byPort = new Map<number, Array<{ address: string; paced: PacedPort }>>();

  constructor(
    private readonly describe: DescribeDestination,
    private readonly slotBytes: number,
    private readonly sendNow: SendNow,
    readonly clock: ReleaseClock,
  ) {}

  /** Offers `packet` to the port towards `address:port`; false if its buffer was full. */
  send(packet: Buffer, port: number, address: string, now = performance.now()): boolean {
    const list = this.byPort.get(port);
    if (list !== undefined) {
      for (const entry of list) {
        if (entry.address === address) return entry.paced.send(packet, port, address, now);
      }
    }
    return this.open(port, address).send(packet, port, address, now);
  }

  private open(port: number, address: string): PacedPort {
    const { name, params } = this.describe(port, address);
    const paced = new PacedPort(params, this.slotBytes, this.sendNow, this.clock);
    const list = this.byPort.get(port) ?? [];
    list.push({ address, paced });
    this.byPort.set(port, list);
    this.all.push({ name, address, port, paced });
    return paced;
  }
}
