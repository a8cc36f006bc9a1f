import { z } from "zod";

/**
 * What handling one packet costs a CPU in the simulator: a fixed part and a
 * part per int32 element it carries (sim/costs.ts runs hosts as FIFO servers).
 */
export const ProcessingCostSchema = z.strictObject({
  perPacketNs: z.number().min(0).max(1e9),
  perElementNs: z.number().min(0).max(1e6),
});
export type ProcessingCost = z.infer<typeof ProcessingCostSchema>;

/** A cost as a scenario gives it: "calibrated" (bench/calibration.json), "none", or numbers. */
export const CostInputSchema = z.union([
  z.literal("calibrated"),
  z.literal("none"),
  ProcessingCostSchema,
]);
export type CostInput = z.infer<typeof CostInputSchema>;

/**
 * A run's processing costs in the simulator (real processes pay their own).
 * Defaults: a PS is a CPU ("calibrated": this project's PS core as measured
 * by `npm run calibrate`); workers are NICs at line rate and the switch a
 * pipeline ("none"; the switch's latency is --switch-processing-ns).
 */
export const HostCostsSchema = z.strictObject({
  parameterServer: CostInputSchema.default("calibrated"),
  worker: CostInputSchema.default("none"),
  switch: CostInputSchema.default("none"),
});
export type HostCosts = z.infer<typeof HostCostsSchema>;
