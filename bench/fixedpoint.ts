#!/usr/bin/env node
/**
 * `npm run bench:fixedpoint`: ns per element of the worker's fixed-point loops
 * (proto/fixedpoint.ts), against a copy of the loops they replaced (Math.round
 * per element with a range check), for 1 KiB (256) and 64 KiB (16368) packets.
 * Implementations alternate within each round (order swapped every round) and
 * the median round is reported: the machine is shared and noisy.
 *   node dist/bench/fixedpoint.js [--seed N] [--rounds N]
 * Inputs: "clean" (every value in range, the worker's normal case) and "mixed"
 * (the same with a few out-of-range values, +-Infinity and NaN sprinkled in).
 */
import { z } from "zod";
import { dequantizeInto, INT32_MAX, INT32_MIN, quantizeInto } from "../proto/fixedpoint.js";
import { Prng } from "../proto/prng.js";
import { cliInt, EXIT_OK, runCli } from "../runtime/cli.js";

/** The quantize loop before the fast path, kept as the baseline. */
function baselineQuantizeInto(
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
      saturated++;
      dst[dstStart + i] = q > INT32_MAX ? INT32_MAX : q < INT32_MIN ? INT32_MIN : 0;
    }
  }
  return saturated;
}

/** The dequantize loop as it was, kept as the baseline. */
function baselineDequantizeInto(
  src: Int32Array,
  srcStart: number,
  count: number,
  inverseScale: number,
  dst: Float32Array,
  dstStart: number,
): void {
  for (let i = 0; i < count; i++) dst[dstStart + i] = src[srcStart + i] * inverseScale;
}

// One runner per implementation, each with its own call site, so V8 sees every
// call site monomorphic (as the worker's is) and inlines no other candidate.
function runQuantizeBaseline(src: Float32Array, dst: Int32Array, count: number, reps: number) {
  let saturated = 0;
  for (let r = 0; r < reps; r++)
    for (let p = 0; p + count <= src.length; p += count)
      saturated += baselineQuantizeInto(src, p, count, SCALE, dst, p);
  return saturated;
}
function runQuantizeNew(src: Float32Array, dst: Int32Array, count: number, reps: number) {
  let saturated = 0;
  for (let r = 0; r < reps; r++)
    for (let p = 0; p + count <= src.length; p += count)
      saturated += quantizeInto(src, p, count, SCALE, dst, p);
  return saturated;
}
function runDequantizeBaseline(src: Int32Array, dst: Float32Array, count: number, reps: number) {
  for (let r = 0; r < reps; r++)
    for (let p = 0; p + count <= src.length; p += count)
      baselineDequantizeInto(src, p, count, INVERSE_SCALE, dst, p);
  return 0;
}
function runDequantizeNew(src: Int32Array, dst: Float32Array, count: number, reps: number) {
  for (let r = 0; r < reps; r++)
    for (let p = 0; p + count <= src.length; p += count)
      dequantizeInto(src, p, count, INVERSE_SCALE, dst, p);
  return 0;
}

const SCALE_BITS = 16;
const SCALE = 2 ** SCALE_BITS;
const INVERSE_SCALE = 2 ** -SCALE_BITS;
const SIZES = [256, 16368];
/** 64 packets of 64 KiB, 4092 of 1 KiB: larger than L2, as a gradient is. */
const ELEMENTS = 64 * 16368;

const spec = {
  command: "npm run bench:fixedpoint --",
  summary:
    "Measures ns per element of the worker's fixed-point loops (proto/fixedpoint.ts) against the\n" +
    "loops they replaced, for 1 KiB and 64 KiB packets, clean and with out-of-range values.",
  options: {
    seed: {
      type: "string",
      valueName: "N",
      description: "seed of the synthetic values",
      defaultText: "1",
    },
    rounds: {
      type: "string",
      valueName: "N",
      description: "rounds, implementations alternating within each; the median is shown",
      defaultText: "21",
    },
  },
  details: "Exit codes: 0 measured (and both loops agree bit for bit), 1 failed, 2 bad option.",
  schema: z.strictObject({
    seed: cliInt(0, 0xffffffff).default(1),
    rounds: cliInt(1, 1000).default(21),
  }),
} as const;

async function main(options: z.infer<typeof spec.schema>): Promise<number> {
  const seed = options.seed;
  const rounds = options.rounds;
  console.log(
    `fixedpoint bench: seed ${seed}, ${rounds} rounds, scale 2^${SCALE_BITS}, node ${process.version}`,
  );

  const prng = new Prng(seed);
  const clean = new Float32Array(ELEMENTS);
  for (let i = 0; i < ELEMENTS; i++) clean[i] = (prng.nextFloat() * 2 - 1) * 100;
  const mixed = clean.slice();
  const specials = [Number.NaN, 1e10, -1e10, Infinity, -Infinity, 2 ** 15, -(2 ** 15)];
  for (let j = 0; j < 32; j++) mixed[prng.nextUint32() % ELEMENTS] = specials[j % specials.length];

  function median(xs: number[]): number {
    const s = [...xs].sort((a, b) => a - b);
    return s[s.length >> 1];
  }

  /** Median ns/element of each runner, alternating them within every round. */
  function time(runners: Array<(count: number, reps: number) => number>, count: number): number[] {
    // About 4 ms per new-implementation sample.
    const reps = 4;
    for (const run of runners) run(count, 2); // warm up (and optimize) each one
    const samples: number[][] = runners.map(() => []);
    for (let round = 0; round < rounds; round++) {
      const order = runners.map((_, k) => k);
      if (round % 2 === 1) order.reverse();
      for (const k of order) {
        const started = process.hrtime.bigint();
        runners[k](count, reps);
        const ns = Number(process.hrtime.bigint() - started);
        samples[k].push(ns / (reps * Math.floor(ELEMENTS / count) * count));
      }
    }
    return samples.map(median);
  }

  function check(src: Float32Array, count: number): void {
    const a = new Int32Array(ELEMENTS);
    const b = new Int32Array(ELEMENTS);
    const satA = runQuantizeBaseline(src, a, count, 1);
    const satB = runQuantizeNew(src, b, count, 1);
    if (satA !== satB || a.some((v, i) => v !== b[i]))
      throw new Error(`quantize differs (${count})`);
    const fa = new Float32Array(ELEMENTS);
    const fb = new Float32Array(ELEMENTS);
    runDequantizeBaseline(a, fa, count, 1);
    runDequantizeNew(a, fb, count, 1);
    if (!Buffer.from(fa.buffer).equals(Buffer.from(fb.buffer)))
      throw new Error(`dequantize differs (${count})`);
  }

  const rows: string[][] = [
    ["function", "input", "count", "baseline ns/el", "new ns/el", "speedup"],
  ];
  for (const [name, src] of [
    ["clean", clean],
    ["mixed", mixed],
  ] as const) {
    const q = new Int32Array(ELEMENTS);
    const back = new Float32Array(ELEMENTS);
    const saturated = runQuantizeBaseline(src, q, 16368, 1);
    for (const count of SIZES) {
      check(src, count);
      const [qb, qn] = time(
        [(c, r) => runQuantizeBaseline(src, q, c, r), (c, r) => runQuantizeNew(src, q, c, r)],
        count,
      );
      rows.push([
        "quantizeInto",
        `${name} (${saturated} sat)`,
        `${count}`,
        qb.toFixed(3),
        qn.toFixed(3),
        `${(qb / qn).toFixed(2)}x`,
      ]);
      const [db, dn] = time(
        [(c, r) => runDequantizeBaseline(q, back, c, r), (c, r) => runDequantizeNew(q, back, c, r)],
        count,
      );
      rows.push([
        "dequantizeInto",
        name,
        `${count}`,
        db.toFixed(3),
        dn.toFixed(3),
        `${(db / dn).toFixed(2)}x`,
      ]);
    }
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows) console.log(r.map((cell, c) => cell.padStart(widths[c])).join("  "));
  return EXIT_OK;
}

await runCli(spec, main);
