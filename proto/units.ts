import { z } from "zod";

// Sizes as configs, scenarios and command lines write them: "32MiB", "4kb", 1000.

const BYTE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mib: 1024 ** 2,
  g: 1e9,
  gb: 1e9,
  gib: 1024 ** 3,
  t: 1e12,
  tb: 1e12,
  tib: 1024 ** 4,
};

/** "32MiB", "4kb", "1000" -> bytes; null if the text is not a size. */
export function parseBytes(text: string): number | null {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!match) return null;
  const unit = BYTE_UNITS[match[2].toLowerCase()];
  if (unit === undefined) return null;
  return Math.round(Number(match[1]) * unit);
}

/** A zod schema for a byte size given as text ("32MiB") or a number. */
export const byteSize = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const bytes = typeof value === "number" ? value : parseBytes(value);
  if (bytes === null || !Number.isFinite(bytes) || bytes < 0) {
    ctx.addIssue({ code: "custom", message: `not a byte size: "${value}" (try 32MiB or 1000000)` });
    return z.NEVER;
  }
  return bytes;
});

/** A size in bytes of float32 values: a byte size that is a positive multiple of 4. */
export const float32Bytes = byteSize.refine(
  (n) => n > 0 && n % 4 === 0,
  "must be a positive multiple of 4 bytes (float32)",
);

/**
 * The most gradient bytes one worker holds: a worker keeps its input and its
 * output whole in memory (float32, 2^30 elements each here), and a typed
 * array cannot be much longer.
 */
export const MAX_TENSOR_BYTES = 4 * 2 ** 30;

/** A worker's tensor: float32 bytes, at most MAX_TENSOR_BYTES. */
export const tensorBytesSchema = float32Bytes.refine((n) => n <= MAX_TENSOR_BYTES, {
  error: (issue) =>
    `at most 4 GiB (${MAX_TENSOR_BYTES} bytes) per worker, got ${Number(issue.input) / 2 ** 30} GiB: ` +
    "a worker holds its gradient and its result whole in memory",
});

const RATE_UNITS: Record<string, number> = {
  "": 1,
  bps: 1,
  kbps: 1e3,
  mbps: 1e6,
  gbps: 1e9,
  tbps: 1e12,
};

/** "10Gbps", "100Mbps", "1e9" -> bits per second; null if the text is not a rate. */
export function parseRate(text: string): number | null {
  const match = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!match) return null;
  const unit = RATE_UNITS[match[2].toLowerCase()];
  return unit === undefined ? null : Number(match[1]) * unit;
}

/** A zod schema for a line rate: "10Gbps", "100Mbps", or a number of bits per second. */
export const rateSchema = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const rate = typeof value === "number" ? value : parseRate(value);
  if (rate === null || !Number.isFinite(rate) || rate <= 0) {
    ctx.addIssue({
      code: "custom",
      message: `not a positive rate: "${value}" (try 10Gbps, 100Mbps or a number of bits/s)`,
    });
    return z.NEVER;
  }
  return rate;
});

const DURATION_UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, ms: 1, s: 1000 };

/** "50us", "2ms", "1s" -> milliseconds; a bare number is milliseconds; null if not a duration. */
export function parseDuration(text: string): number | null {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!match) return null;
  const unit = match[2] === "" ? 1 : DURATION_UNITS[match[2].toLowerCase()];
  return unit === undefined ? null : Number(match[1]) * unit;
}

/** A zod schema for a duration: "50us", "2ms", "1s", or a number of milliseconds. */
export const durationSchema = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const ms = typeof value === "number" ? value : parseDuration(value);
  if (ms === null || !Number.isFinite(ms) || ms < 0) {
    ctx.addIssue({
      code: "custom",
      message: `not a duration: "${value}" (try 50us, 2ms or a number of milliseconds)`,
    });
    return z.NEVER;
  }
  return ms;
});
