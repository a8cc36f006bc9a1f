import { errorBoundWith, quantizationBound, quantize } from "../proto/fixedpoint.js";
import { deriveSeed, Prng } from "../proto/prng.js";
import type { Verification } from "../proto/records.js";
import { type Collective, chunkStart } from "./collective.js";

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
  /** where output[0] is in the full sum (a reduce-scatter's chunk) */
  offset = 0,
): Verification {
  const streams: Prng[] = [];
  for (let w = 0; w < workers; w++) {
    const stream = gradientStream(seed, w);
    for (let i = 0; i < offset; i++) nextGradientValue(stream);
    streams.push(stream);
  }
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

/** Each worker's input to collective `op` of a `length`-element tensor: seeded as makeGradient. */
export function collectiveInput(
  op: Collective,
  length: number,
  seed: number,
  workerId: number,
  workers: number,
): Float32Array {
  if (op !== "allGather") return makeGradient(length, seed, workerId);
  return makeGradient(chunkLength(length, workers, workerId), seed, workerId);
}

/** The length of worker `workerId`'s output of collective `op` of a `length`-element tensor. */
export function collectiveOutputLength(
  op: Collective,
  length: number,
  workers: number,
  workerId: number,
): number {
  return op === "reduceScatter" ? chunkLength(length, workers, workerId) : length;
}

function chunkLength(length: number, workers: number, c: number): number {
  return chunkStart(length, workers, c + 1) - chunkStart(length, workers, c);
}

/**
 * Checks worker `workerId`'s output of collective `op` against what every
 * worker's seeded input (collectiveInput) makes it: sums as verifyAllReduce
 * does, moved data bit for bit.
 */
export function verifyCollective(
  op: Collective,
  output: Float32Array,
  o: {
    seed: number;
    workers: number;
    workerId: number;
    root: number;
    scaleBits: number;
    length: number;
  },
): Verification {
  const { seed, workers, workerId, root, length } = o;
  switch (op) {
    case "allReduce":
      return verifyAllReduce(output, seed, workers, o.scaleBits);
    case "reduce":
      // Only the root's output holds the sum.
      return workerId === root
        ? verifyAllReduce(output, seed, workers, o.scaleBits)
        : { elements: 0, maxAbsError: 0, outOfBound: 0, notBitExact: 0, verified: true };
    case "reduceScatter":
      return verifyAllReduce(
        output,
        seed,
        workers,
        o.scaleBits,
        chunkStart(length, workers, workerId),
      );
    case "broadcast":
      return compareExactly(output, [[0, makeGradient(length, seed, root)]]);
    case "allGather":
      return compareExactly(
        output,
        Array.from({ length: workers }, (_, v) => [
          chunkStart(length, workers, v),
          collectiveInput(op, length, seed, v, workers),
        ]),
      );
    case "allToAll": {
      // Output chunk v is chunk `workerId` of worker v's input.
      const from = chunkStart(length, workers, workerId);
      const to = chunkStart(length, workers, workerId + 1);
      return compareExactly(
        output,
        Array.from({ length: workers }, (_, v) => [
          chunkStart(length, workers, v),
          makeGradient(length, seed, v).subarray(from, to),
        ]),
      );
    }
  }
}

/** Moved data: `output` must hold each part at its offset, bit for bit, and nothing else. */
function compareExactly(
  output: Float32Array,
  parts: Array<[offset: number, values: Float32Array]>,
): Verification {
  let notBitExact = 0;
  let maxAbsError = 0;
  let covered = 0;
  for (const [offset, values] of parts) {
    covered += values.length;
    for (let i = 0; i < values.length; i++) {
      const got = output[offset + i];
      if (!Object.is(got, values[i])) {
        notBitExact++;
        const error = Math.abs(got - values[i]);
        if (!(error <= maxAbsError)) maxAbsError = error;
      }
    }
  }
  notBitExact += Math.abs(output.length - covered);
  return {
    elements: output.length,
    maxAbsError,
    outOfBound: notBitExact,
    notBitExact,
    verified: notBitExact === 0,
  };
}

/**
 * A 32-bit FNV-1a digest of an output's bytes, as 8 hex digits: two runs
 * (real processes, the simulator, the tests' core harness) that print the same
 * digest produced the same output, bit for bit.
 */
export function outputDigest(output: Float32Array): string {
  const bytes = new Uint8Array(output.buffer, output.byteOffset, output.byteLength);
  let hash = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) hash = Math.imul(hash ^ bytes[i], 0x01000193);
  return (hash >>> 0).toString(16).padStart(8, "0");
}
