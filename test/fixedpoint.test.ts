import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  addSaturating,
  dequantizeInto,
  errorBound,
  INT32_MAX,
  INT32_MIN,
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

  it("adds with saturation and reports overflow", () => {
    const acc = new Int32Array([INT32_MAX - 1, INT32_MIN + 1, 5, -7, INT32_MAX]);
    const add = new Int32Array([2, -2, 6, -8, INT32_MIN]);
    assert.equal(addSaturating(acc, 0, add, 0, 5), true);
    assert.deepEqual([...acc], [INT32_MAX, INT32_MIN, 11, -15, -1]);
    const small = new Int32Array([1, 2]);
    assert.equal(addSaturating(small, 0, new Int32Array([3, 4]), 0, 2), false);
    assert.deepEqual([...small], [4, 6]);
  });

  it("bounds the error of an N-way sum", () => {
    assert.equal(errorBound(4, 20, 0), 4 * 2 ** -21 * (1 + 2 ** -24));
    assert.ok(errorBound(4, 20, 1000) > errorBound(4, 20, 1));
  });
});
