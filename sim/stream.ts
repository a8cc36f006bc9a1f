import { INT32_MAX, INT32_MIN } from "../proto/fixedpoint.js";
import type { TensorStream } from "../worker/core.js";

/**
 * Tensors the simulator makes and checks packet by packet, so memory grows
 * with what is in flight, not with the tensor: 256 workers of 64 MiB each
 * hold no 16 GiB of gradients.
 *
 * The elements of worker w's packet that starts at element `first` are
 * float32s in [-1, 1) from a xorshift generator seeded by a hash of (seed,
 * w, first): any packet can be made on its own, in any order, cheaply. (The
 * real processes' gradients, makeGradient, come from one sequential stream;
 * small runs use those, so their outputs can be compared with real runs.)
 */
function packetState(seed: number, worker: number, first: number): number {
  let x = (seed ^ Math.imul(worker + 1, 0x9e3779b1) ^ Math.imul(first + 1, 0x85ebca6b)) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x | 1; // xorshift needs a non-zero state
}

/**
 * Writes worker `worker`'s fixed-point values of the packet at `first`
 * (`count` elements) into dst, or adds them when `add`; returns how many
 * saturated: none can, as every value is below 1 in magnitude.
 */
export function packetFixedPoint(
  seed: number,
  worker: number,
  first: number,
  count: number,
  scale: number,
  dst: Int32Array | Float64Array,
  dstStart: number,
  add: boolean,
): number {
  let x = packetState(seed, worker, first);
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const value = Math.fround(((x >>> 0) / 2 ** 32) * 2 - 1);
    const q = Math.floor(value * scale + 0.5);
    if (add) dst[dstStart + i] += q;
    else dst[dstStart + i] = q;
  }
  return 0;
}

/**
 * What a job's streamed workers received: each worker's order-independent
 * digest of the result values (a sum over packets of a hash of the
 * packet's position and values), equal for every worker of a job that
 * received the same sums; and, at one worker, every `sampleEvery`-th
 * packet compared with the exact fixed-point sum of all workers' inputs.
 */
export class StreamCheck {
  readonly digests: Uint32Array;
  checkedElements = 0;
  wrongElements = 0;
  private readonly scale: number;

  constructor(
    readonly seed: number,
    readonly workers: number,
    readonly length: number,
    scaleBits: number,
    readonly elementsPerPacket: number,
    readonly sampleEvery = 64,
  ) {
    this.digests = new Uint32Array(workers);
    this.scale = 2 ** scaleBits;
  }

  /** Worker `w`'s stream: its input made on demand, its results digested (and sampled at worker 0). */
  streamFor(w: number): TensorStream {
    const check = this;
    return {
      length: check.length,
      quantize(first, count, scale, dst, dstStart) {
        return packetFixedPoint(check.seed, w, first, count, scale, dst, dstStart, false);
      },
      result(first, count, src, srcStart, floats) {
        let hash = Math.imul(first ^ 0x811c9dc5, 0x01000193) ^ (floats ? 1 : 0);
        for (let i = 0; i < count; i++) hash = Math.imul(hash ^ src[srcStart + i], 0x01000193);
        check.digests[w] = (check.digests[w] + (hash >>> 0)) >>> 0;
        if (w === 0 && (first / check.elementsPerPacket) % check.sampleEvery === 0) {
          check.compare(first, count, src, srcStart, floats);
        }
      },
    };
  }

  /** Compares result elements with the exact sum of every worker's fixed-point input. */
  private compare(
    first: number,
    count: number,
    src: Int32Array,
    srcStart: number,
    floats: boolean,
  ) {
    const sums = new Float64Array(count);
    for (let w = 0; w < this.workers; w++) {
      packetFixedPoint(this.seed, w, first, count, this.scale, sums, 0, true);
    }
    for (let i = 0; i < count; i++) {
      const sum = sums[i];
      const exact = sum > INT32_MAX ? INT32_MAX : sum < INT32_MIN ? INT32_MIN : sum;
      this.checkedElements++;
      if (floats || src[srcStart + i] !== exact) this.wrongElements++;
    }
  }

  /** Whether worker `w` received what worker 0 did, and the sampled sums were exact. */
  verified(w: number): boolean {
    return this.wrongElements === 0 && this.digests[w] === this.digests[0];
  }
}
