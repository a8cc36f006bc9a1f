import { errorBoundWith, quantizationBound, quantize } from "../proto/fixedpoint.js";
import { deriveSeed, Prng } from "../proto/prng.js";
import type { Verification } from "../proto/records.js";

/**
 * The seeded synthetic gradient of an experiment: worker w of a run seeded
 * with `seed` holds values uniform in [-1, 1), rounded to float32. Any process
 * can regenerate every worker's input, so each can check its own output.
 */
function gradientStream(seed: number, workerId: number): Prng {
  return new Prng(deriveSeed(seed, 1000 + workerId));
}

function nextGradientValue(prng: Prng): number {
  return Math.fround(prng.nextFloat() * 2 - 1);
}

export function makeGradient(elements: number, seed: number, workerId: number): Float32Array {
  const prng = gradientStream(seed, workerId);
  const out = new Float32Array(elements);
  for (let i = 0; i < elements; i++) out[i] = nextGradientValue(prng);
  return out;
}

/**
 * Checks an all-reduce output against a float64 reference sum of all
 * `workers` inputs (within the fixed-point bound) and against the exact
 * fixed-point sum (bit for bit). Streams the inputs; holds no copy of them.
 */
export function verifyAllReduce(
  output: Float32Array,
  seed: number,
  workers: number,
  scaleBits: number,
): Verification {
  const streams: Prng[] = [];
  for (let w = 0; w < workers; w++) streams.push(gradientStream(seed, w));
  const scale = 2 ** scaleBits;
  const inverseScale = 2 ** -scaleBits;
  let maxAbsError = 0;
  let outOfBound = 0;
  let notBitExact = 0;
  // The quantization part once: recomputed per element it was most of a worker's CPU.
  const quantization = quantizationBound(workers, scaleBits);
  for (let i = 0; i < output.length; i++) {
    let reference = 0;
    let fixedSum = 0;
    for (let w = 0; w < workers; w++) {
      const x = nextGradientValue(streams[w]);
      reference += x;
      fixedSum += quantize(x, scale);
    }
    const got = output[i];
    const error = Math.abs(got - reference);
    if (error > maxAbsError || Number.isNaN(error)) maxAbsError = error;
    if (!(error <= errorBoundWith(quantization, reference))) outOfBound++;
    if (got !== Math.fround(fixedSum * inverseScale)) notBitExact++;
  }
  return {
    elements: output.length,
    maxAbsError,
    outOfBound,
    notBitExact,
    verified: outOfBound === 0 && notBitExact === 0,
  };
}
