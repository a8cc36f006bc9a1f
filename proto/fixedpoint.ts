/**
 * Fixed-point conversion between float32 gradients and the int32 values on
 * the wire: q = round(x * 2^scaleBits), saturated to the int32 range. A
 * saturated (or NaN) value is reported, never wrapped.
 */

export const INT32_MAX = 2147483647;
export const INT32_MIN = -2147483648;

/**
 * Quantizes `count` values of `src` from `srcStart` into `dst` from `dstStart`.
 * Returns how many values saturated or were NaN (NaN becomes 0).
 *
 * Fast path (scale a power of two, as the worker's 2^scaleBits always is):
 * Math.floor(v + 0.5) replaces Math.round(v), one range check per chunk;
 * why the two agree bit for bit: proto/README.md, section 6.1.
 */
export function quantizeInto(
  src: Float32Array,
  srcStart: number,
  count: number,
  scale: number,
  dst: Int32Array,
  dstStart: number,
): number {
  if (!isPowerOfTwo(scale)) return quantizeIntoRound(src, srcStart, count, scale, dst, dstStart);
  const end = srcStart + count;
  const delta = dstStart - srcStart;
  let saturated = 0;
  for (let start = srcStart; start < end; ) {
    const stop = Math.min(start + QUANTIZE_CHUNK, end);
    let inRange = true;
    for (let i = start; i < stop; i++) {
      const q = Math.floor(src[i] * scale + 0.5);
      const r = q | 0;
      dst[i + delta] = r;
      if (r !== q) inRange = false;
    }
    if (!inRange) saturated += saturateChunk(src, start, stop, scale, dst, delta);
    start = stop;
  }
  return saturated;
}

/** Elements per range flag in quantizeInto: the work redone when one value saturates. */
const QUANTIZE_CHUNK = 512;

/** Stores again the saturated and NaN values of src[start, stop), whose q | 0 wrapped; returns their count. */
function saturateChunk(
  src: Float32Array,
  start: number,
  stop: number,
  scale: number,
  dst: Int32Array,
  delta: number,
): number {
  let saturated = 0;
  for (let i = start; i < stop; i++) {
    const q = Math.floor(src[i] * scale + 0.5);
    if ((q | 0) !== q) {
      saturated++;
      dst[i + delta] = q > 0 ? INT32_MAX : q < 0 ? INT32_MIN : 0;
    }
  }
  return saturated;
}

/** The reference loop (any scale): Math.round per element, saturated to int32, NaN -> 0. */
function quantizeIntoRound(
  src: Float32Array,
  srcStart: number,
  count: number,
  scale: number,
  dst: Int32Array,
  dstStart: number,
): number {
  let saturated = 0;
  for (let i = 0; i < count; i++) {
    const q = Math.round(src[srcStart + i] * scale);
    if (q >= INT32_MIN && q <= INT32_MAX) {
      dst[dstStart + i] = q;
    } else {
      // Out of range, or NaN (every comparison with NaN is false).
      saturated++;
      dst[dstStart + i] = q > INT32_MAX ? INT32_MAX : q < INT32_MIN ? INT32_MIN : 0;
    }
  }
  return saturated;
}

const scaleBits = new DataView(new ArrayBuffer(8));

/** True for a positive, normal power of two (2^-1022 .. 2^1023): its significand bits are all 0. */
export function isPowerOfTwo(x: number): boolean {
  scaleBits.setFloat64(0, x);
  const high = scaleBits.getUint32(0);
  const biasedExponent = high >>> 20; // the sign bit makes it >= 0x800
  return (
    scaleBits.getUint32(4) === 0 &&
    (high & 0xfffff) === 0 &&
    biasedExponent !== 0 &&
    biasedExponent < 0x7ff
  );
}

/** One value, for references and tests. */
export function quantize(x: number, scale: number): number {
  const q = Math.round(x * scale);
  if (q > INT32_MAX) return INT32_MAX;
  if (q < INT32_MIN) return INT32_MIN;
  return Number.isNaN(q) ? 0 : q;
}

/** Writes `count` sums from `src` as float32 into `dst` (rounding to nearest float32). */
export function dequantizeInto(
  src: Int32Array,
  srcStart: number,
  count: number,
  inverseScale: number,
  dst: Float32Array,
  dstStart: number,
): void {
  for (let i = 0; i < count; i++) dst[dstStart + i] = src[srcStart + i] * inverseScale;
}

/**
 * Adds `count` values of `src` into `acc`, saturating at the int32 range.
 * Returns true if any element saturated. Overflow of a + b happened iff both
 * operands have the same sign and the wrapped sum's sign differs.
 */
export function addSaturating(
  acc: Int32Array,
  accStart: number,
  src: Int32Array,
  srcStart: number,
  count: number,
): boolean {
  let overflow = false;
  for (let i = 0; i < count; i++) {
    const a = acc[accStart + i];
    const b = src[srcStart + i];
    const s = (a + b) | 0;
    if (((a ^ s) & (b ^ s)) < 0) {
      acc[accStart + i] = a < 0 ? INT32_MIN : INT32_MAX;
      overflow = true;
    } else {
      acc[accStart + i] = s;
    }
  }
  return overflow;
}

/**
 * Largest |output - exact float64 sum| an all-reduce of `workers` inputs may
 * show per element: each input is rounded to a multiple of 2^-scaleBits (error
 * at most half a step), and the float32 output adds at most half an ulp.
 */
export function errorBound(workers: number, scaleBits: number, referenceMagnitude: number): number {
  return errorBoundWith(quantizationBound(workers, scaleBits), referenceMagnitude);
}

/** The quantization part of errorBound: half a step per input. */
export function quantizationBound(workers: number, scaleBits: number): number {
  return workers * 2 ** -(scaleBits + 1);
}

/** errorBound with its quantization part computed once (for loops over many elements). */
export function errorBoundWith(quantization: number, referenceMagnitude: number): number {
  return quantization + (Math.abs(referenceMagnitude) + quantization) * 2 ** -24;
}

/**
 * Adds `count` values of `src` into `acc` only if no sum leaves the int32
 * range; returns false, with `acc` unchanged, if one would. The add wraps and
 * a second pass subtracts again on overflow: wrapping addition is exactly
 * reversible, so one pass suffices when nothing overflows (the common case).
 */
export function addIfNoOverflow(
  acc: Int32Array,
  accStart: number,
  src: Int32Array,
  srcStart: number,
  count: number,
): boolean {
  let overflowed = false;
  for (let i = 0; i < count; i++) {
    const sum = acc[accStart + i] + src[srcStart + i];
    acc[accStart + i] = sum;
    if (sum > INT32_MAX || sum < INT32_MIN) overflowed = true;
  }
  if (!overflowed) return true;
  for (let i = 0; i < count; i++) acc[accStart + i] = acc[accStart + i] - src[srcStart + i];
  return false;
}
