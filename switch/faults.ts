import type { FaultRates } from "../proto/config.js";
import type { Prng } from "../proto/prng.js";

export const FaultAction = {
  pass: 0,
  drop: 1,
  duplicate: 2,
  /** hold the packet and let the next one overtake it */
  reorder: 3,
} as const;
export type FaultActionValue = (typeof FaultAction)[keyof typeof FaultAction];

/**
 * Seeded drop / duplicate / reorder decisions for one direction, one PRNG
 * draw per packet. Like SwitchML's drop simulator, a stage of the pipeline
 * rather than a proxy in front of it.
 */
export class FaultInjector {
  readonly enabled: boolean;
  private readonly dropBelow: number;
  private readonly duplicateBelow: number;
  private readonly reorderBelow: number;
  readonly injected = { drop: 0, duplicate: 0, reorder: 0 };

  constructor(
    rates: FaultRates,
    private readonly prng: Prng,
  ) {
    this.dropBelow = rates.drop;
    this.duplicateBelow = rates.drop + rates.duplicate;
    this.reorderBelow = rates.drop + rates.duplicate + rates.reorder;
    this.enabled = this.reorderBelow > 0;
  }

  decide(): FaultActionValue {
    if (!this.enabled) return FaultAction.pass;
    const u = this.prng.nextFloat();
    if (u < this.dropBelow) {
      this.injected.drop++;
      return FaultAction.drop;
    }
    if (u < this.duplicateBelow) {
      this.injected.duplicate++;
      return FaultAction.duplicate;
    }
    if (u < this.reorderBelow) {
      this.injected.reorder++;
      return FaultAction.reorder;
    }
    return FaultAction.pass;
  }
}
