import { HEADER_BYTES } from "../proto/wire.js";

export const AggregatorState = {
  empty: 0,
  /** some workers have contributed to the PSN it holds */
  partial: 1,
  /** every worker contributed; the slot holds the finished result packet */
  complete: 2,
} as const;

/**
 * The switch's aggregator array as parallel typed arrays. Each aggregator's
 * values sit right after a 32-byte header area in one arena, so a finished
 * aggregation is sent straight from the arena: the result header is written
 * in front of the sum and `packets[i]` is handed to send() without a copy.
 */
export class AggregatorArray {
  readonly count: number;
  readonly elements: number;
  /** int32 words per slot (header + values) */
  readonly slotWords: number;
  readonly view: DataView;
  readonly values: Int32Array;
  /** a Buffer over each whole slot, made once */
  readonly packets: Buffer[];
  private readonly shortPackets: Array<Buffer | undefined>;
  readonly psn: Uint32Array;
  readonly bitmap: Uint32Array;
  readonly contributions: Uint8Array;
  readonly state: Uint8Array;
  readonly overflow: Uint8Array;
  readonly elementCount: Uint16Array;
  readonly scaleBits: Uint8Array;

  constructor(count: number, elements: number) {
    this.count = count;
    this.elements = elements;
    this.slotWords = HEADER_BYTES / 4 + elements;
    const arena = new ArrayBuffer(count * this.slotWords * 4);
    this.view = new DataView(arena);
    this.values = new Int32Array(arena);
    this.packets = new Array(count);
    this.shortPackets = new Array(count);
    for (let i = 0; i < count; i++) {
      this.packets[i] = Buffer.from(arena, i * this.slotWords * 4, this.slotWords * 4);
    }
    this.psn = new Uint32Array(count);
    this.bitmap = new Uint32Array(count);
    this.contributions = new Uint8Array(count);
    this.state = new Uint8Array(count);
    this.overflow = new Uint8Array(count);
    this.elementCount = new Uint16Array(count);
    this.scaleBits = new Uint8Array(count);
  }

  /**
   * Aggregator `index`'s result datagram of `elementCount` elements, as a
   * Buffer of exactly that length (send() with offset/length would slice a
   * new Buffer per send). Shorter than the slot only for a tensor's last
   * packet, so the short view is made once and kept.
   */
  resultPacket(index: number, elementCount: number): Buffer {
    if (elementCount === this.elements) return this.packets[index];
    const bytes = HEADER_BYTES + elementCount * 4;
    let view = this.shortPackets[index];
    if (view === undefined || view.length !== bytes) {
      view = this.packets[index].subarray(0, bytes);
      this.shortPackets[index] = view;
    }
    return view;
  }

  /** Index in `values` of aggregator `index`'s first element. */
  valuesStart(index: number): number {
    return index * this.slotWords + HEADER_BYTES / 4;
  }

  /** Byte offset in the arena of aggregator `index`'s header area. */
  headerOffset(index: number): number {
    return index * this.slotWords * 4;
  }

  /** Empties [offset, offset + size), e.g. when a job's region is installed. */
  clear(offset: number, size: number): void {
    this.state.fill(AggregatorState.empty, offset, offset + size);
    this.bitmap.fill(0, offset, offset + size);
    this.contributions.fill(0, offset, offset + size);
    this.overflow.fill(0, offset, offset + size);
  }
}
