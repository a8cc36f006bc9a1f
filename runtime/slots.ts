import { HEADER_BYTES } from "../proto/wire.js";

/**
 * Preallocated datagrams: `count` slots of a 32-byte header followed by
 * `elements` int32 values, in one arena. A slot is filled in place through
 * `view` and `values` and sent as is, so building or forwarding a packet never
 * allocates or copies. The switch keeps its aggregators in slots, a worker its
 * window.
 */
export class PacketSlots {
  readonly count: number;
  readonly elements: number;
  readonly view: DataView;
  readonly values: Int32Array;
  private readonly slotWords: number;
  private readonly full: Buffer[] = [];
  private readonly short: Array<Buffer | undefined>;

  constructor(count: number, elements: number) {
    this.count = count;
    this.elements = elements;
    this.slotWords = HEADER_BYTES / 4 + elements;
    const arena = new ArrayBuffer(count * this.slotWords * 4);
    this.view = new DataView(arena);
    this.values = new Int32Array(arena);
    for (let i = 0; i < count; i++) {
      this.full.push(Buffer.from(arena, i * this.slotWords * 4, this.slotWords * 4));
    }
    this.short = new Array(count);
  }

  /** Byte offset of slot `slot`'s header in `view`. */
  headerOffset(slot: number): number {
    return slot * this.slotWords * 4;
  }

  /** Index in `values` of slot `slot`'s first element. */
  valuesStart(slot: number): number {
    return slot * this.slotWords + HEADER_BYTES / 4;
  }

  /**
   * Slot `slot` as a datagram of `elementCount` elements, a Buffer of exactly
   * that length: send() with offset/length would slice a new Buffer per send.
   * Only a tensor's last packet is short, so its view is made once and kept.
   */
  packet(slot: number, elementCount: number): Buffer {
    if (elementCount === this.elements) return this.full[slot];
    const bytes = HEADER_BYTES + elementCount * 4;
    let view = this.short[slot];
    if (view === undefined || view.length !== bytes) {
      view = this.full[slot].subarray(0, bytes);
      this.short[slot] = view;
    }
    return view;
  }
}
