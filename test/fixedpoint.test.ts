import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  addSaturating,
  dequantizeInto,
  errorBound,
  INT32_MAX,
  INT32_MIN,
  isPowerOfTwo,
  quantize,
  quantizeInto,
} from "../proto/fixedpoint.js";
import { Prng } from "../proto/prng.js";
import { testSeed } from "./seed.js";

describe("fixed point", () => {
  it("rounds to the nearest step and back within half a step", () => {
    const prng = new Prng(testSeed("quantize", 11));
    const scaleBits = 16;
    const src = new Float32Array(1000).map(() => (prng.nextFloat() * 2 - 1) * 100);
    const q = new Int32Array(1000);
    assert.equal(quantizeInto(src, 0, 1000, 2 ** scaleBits, q, 0), 0);
    const back = new Float32Array(1000);
    dequantizeInto(q, 0, 1000, 2 ** -scaleBits, back, 0);
    for (let i = 0; i < 1000; i++) {
      assert.equal(q[i], Math.round(src[i] * 65536));
      assert.ok(Math.abs(back[i] - src[i]) <= errorBound(1, scaleBits, src[i]), `element ${i}`);
    }
  });

  it("saturates and counts values outside int32, and NaN, never wraps", () => {
    const src = new Float32Array([1e10, -1e10, Number.NaN, 1.5, 2 ** 31]);
    const q = new Int32Array(5);
    assert.equal(quantizeInto(src, 0, 5, 1, q, 0), 4);
    assert.deepEqual([...q], [INT32_MAX, INT32_MIN, 0, 2, INT32_MAX]);
    assert.equal(quantize(-1e10, 1), INT32_MIN);
  });

  it("quantizeInto equals Math.round per element with saturation, bit for bit, on a seeded array", () => {
    const prng = new Prng(testSeed("quantize-reference", 29));
    const n = 40_000;
    const src = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const r = prng.nextUint32() % 64;
      // Mostly normal values of every magnitude, some exact halves, some specials.
      src[i] =
        r === 0
          ? TRICKY[prng.nextUint32() % TRICKY.length]
          : r === 1
            ? ((prng.nextUint32() | 0) + 0.5) / 2 ** (prng.nextUint32() % 32)
            : (prng.nextFloat() * 2 - 1) * 2 ** ((prng.nextUint32() % 80) - 40);
    }
    for (const scale of SCALES) {
      // Counts around the chunk size and the packet sizes, at odd offsets.
      for (const [srcStart, count, dstStart] of [
        [0, n, 0],
        [7, 256, 3],
        [1000, 511, 0],
        [2000, 512, 9],
        [3000, 513, 1],
        [5, 16368, 11],
        [n - 1, 1, 0],
        [100, 0, 0],
      ]) {
        const dst = new Int32Array(count + 20).fill(0x5a5a5a5a);
        const saturated = quantizeInto(src, srcStart, count, scale, dst, dstStart);
        const expected = new Int32Array(count + 20).fill(0x5a5a5a5a);
        let expectedSaturated = 0;
        for (let i = 0; i < count; i++) {
          const [q, sat] = reference(src[srcStart + i], scale);
          expected[dstStart + i] = q;
          if (sat) expectedSaturated++;
        }
        const at = `scale ${scale}, start ${srcStart}, count ${count}`;
        assert.equal(saturated, expectedSaturated, at);
        assert.deepEqual(dst, expected, at);
      }
    }
  });

  it("quantizeInto rounds the tricky values like Math.round: halves, +-0, near +-2^31, NaN, +-Infinity", () => {
    const values: number[] = [];
    for (const v of TRICKY) values.push(v, nextFloat32(v, 1), nextFloat32(v, -1));
    // Every half-integer n + 1/2 and its float32 neighbours, at every binade a
    // float32 holds halves in, for the scale that brings it back to n + 1/2.
    for (let k = 0; k <= 30; k++) {
      for (const n of [
        0,
        1,
        2,
        3,
        -1,
        -2,
        -3,
        2 ** 22,
        -(2 ** 22),
        2 ** 23 - 1,
        INT32_MAX,
        INT32_MIN,
      ]) {
        const x = Math.fround((n + 0.5) / 2 ** k);
        values.push(x, nextFloat32(x, 1), nextFloat32(x, -1), -x);
      }
    }
    const src = Float32Array.from(values);
    for (const scale of [...SCALES, 2 ** -20, 2 ** 10]) {
      const dst = new Int32Array(src.length);
      const saturated = quantizeInto(src, 0, src.length, scale, dst, 0);
      let expectedSaturated = 0;
      for (let i = 0; i < src.length; i++) {
        const [q, sat] = reference(src[i], scale);
        assert.equal(dst[i], q, `x ${src[i]} scale ${scale}`);
        if (sat) expectedSaturated++;
      }
      assert.equal(saturated, expectedSaturated, `scale ${scale}`);
    }
    // One special value alone in a packet of ordinary ones, in its second chunk.
    for (const v of TRICKY) {
      const alone = new Float32Array(1500).fill(0.25);
      alone[700] = v;
      for (const scale of [1, 2 ** 16, 3]) {
        const dst = new Int32Array(1500);
        const [q, sat] = reference(alone[700], scale);
        const [q0] = reference(0.25, scale);
        assert.equal(quantizeInto(alone, 0, 1500, scale, dst, 0), sat ? 1 : 0, `x ${v}`);
        assert.equal(dst[700], q, `x ${v}`);
        assert.ok(
          dst.every((d, i) => i === 700 || d === q0),
          `x ${v}`,
        );
      }
    }
    const at = (x: number, scale = 1) => {
      const dst = new Int32Array(1);
      quantizeInto(Float32Array.of(x), 0, 1, scale, dst, 0);
      return dst[0];
    };
    assert.deepEqual(
      [0.49999997, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, -0].map((x) => at(x)),
      [0, 1, 0, 2, -1, 3, -2, 0],
    );
    assert.equal(at(2147483520), 2147483520); // the largest float32 below 2^31
    assert.equal(at(2 ** 31 - 0.5), INT32_MAX); // 2^31 as a float32
    assert.equal(at(-(2 ** 31)), INT32_MIN);
    assert.equal(at(-2147483904), INT32_MIN); // the float32 below -2^31
    assert.equal(at(1, 2 ** 31 - 1), INT32_MAX); // not a power of two: the Math.round loop
    // Math.floor(v + 0.5) would give 1 here; Math.round gives 0.
    assert.equal(at(1, 0.49999999999999994), 0);
  });

  it("takes the fast path only for a normal, positive power of two", () => {
    for (const x of [1, 2, 0.5, 2 ** 30, 2 ** -1022, 2 ** 1023]) assert.ok(isPowerOfTwo(x), `${x}`);
    for (const x of [0, -0, -1, -(2 ** 16), 3, 1 + 2 ** -52, 2 - 2 ** -52, 2 ** -1074, 2 ** -1023])
      assert.ok(!isPowerOfTwo(x), `${x}`);
    for (const x of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])
      assert.ok(!isPowerOfTwo(x), `${x}`);
  });

  it("Math.floor(v + 0.5) equals Math.round(v) for doubles, except 1/2 - 2^-54 and |v| >= 2^52", () => {
    // The claim quantizeInto's fast path rests on, checked around every
    // half-integer and integer boundary the rounding could cross.
    const exception = 0.5 - 2 ** -54;
    for (let e = -60; e < 52; e++) {
      for (const base of [2 ** e, 2 ** e + 0.5, 2 ** e - 0.5, 0.5, 1.5, 2.5]) {
        for (const sign of [1, -1]) {
          let v = sign * base;
          for (let step = 0; step < 4; step++) v = nextDouble(v, -1);
          for (let step = 0; step < 8; step++, v = nextDouble(v, 1)) {
            if (v === exception) {
              assert.equal(Math.floor(v + 0.5), 1);
              assert.equal(Math.round(v), 0);
            } else {
              assert.equal(Math.floor(v + 0.5), Math.round(v) || 0, `v ${v}`);
            }
          }
        }
      }
    }
  });

  it("adds with saturation and reports overflow", () => {
    const acc = new Int32Array([INT32_MAX - 1, INT32_MIN + 1, 5, -7, INT32_MAX]);
    const add = new Int32Array([2, -2, 6, -8, INT32_MIN]);
    assert.equal(addSaturating(acc, 0, add, 0, 5), true);
    assert.deepEqual([...acc], [INT32_MAX, INT32_MIN, 11, -15, -1]);
    const small = new Int32Array([1, 2]);
    assert.equal(addSaturating(small, 0, new Int32Array([3, 4]), 0, 2), false);
    assert.deepEqual([...small], [4, 6]);
  });

  it("dequantizeInto writes x * inverseScale rounded to float32", () => {
    const src = Int32Array.of(0, 1, -1, INT32_MAX, INT32_MIN, 16777217, -16777217, 3);
    const dst = new Float32Array(src.length + 2).fill(7);
    dequantizeInto(src, 1, src.length - 1, 2 ** -16, dst, 2);
    const expected = Float32Array.of(7, 7, ...[...src.subarray(1)].map((v) => v * 2 ** -16), 7);
    assert.deepEqual(dst, expected);
  });

  it("bounds the error of an N-way sum", () => {
    assert.equal(errorBound(4, 20, 0), 4 * 2 ** -21 * (1 + 2 ** -24));
    assert.ok(errorBound(4, 20, 1000) > errorBound(4, 20, 1));
  });
});

/** Math.round(x * scale), saturated to int32, NaN -> 0, and whether it saturated (or was NaN). */
function reference(x: number, scale: number): [number, boolean] {
  const q = Math.round(x * scale);
  if (Number.isNaN(q)) return [0, true];
  if (q > INT32_MAX) return [INT32_MAX, true];
  if (q < INT32_MIN) return [INT32_MIN, true];
  return [q | 0, false];
}

const TRICKY = [
  0.49999997, // the float32 below 0.5
  0.5,
  -0.5,
  1.5,
  -1.5,
  2.5,
  -2.5,
  0,
  -0,
  2 ** 31 - 0.5,
  2147483520,
  2 ** 31,
  -(2 ** 31),
  -2147483904,
  2 ** 31 + 256,
  -(2 ** 31) - 512,
  2 ** -149, // the smallest float32 subnormal
  -(2 ** -149),
  3.4028234663852886e38, // the largest float32
  -3.4028234663852886e38,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
];

/** Powers of two (the fast path, 2^0 .. 2^30 as the worker uses, and a fraction) and others. */
const SCALES = [1, 2 ** 8, 2 ** 16, 2 ** 24, 2 ** 30, 0.5, 3, 1000.5, 0.49999999999999994];

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float32 next to float32 `x` toward +Infinity (direction 1) or -Infinity (-1). */
function nextFloat32(x: number, direction: 1 | -1): number {
  if (Number.isNaN(x) || x === direction * Number.POSITIVE_INFINITY) return x;
  if (x === 0) return direction * 2 ** -149;
  f32[0] = x;
  u32[0] += x > 0 === direction > 0 ? 1 : -1;
  return f32[0];
}

const f64 = new Float64Array(1);
const u64 = new BigUint64Array(f64.buffer);

/** The double next to `x` toward +Infinity (direction 1) or -Infinity (-1). */
function nextDouble(x: number, direction: 1 | -1): number {
  if (x === 0) return direction * Number.MIN_VALUE;
  f64[0] = x;
  u64[0] += x > 0 === direction > 0 ? 1n : -1n;
  return f64[0];
}
