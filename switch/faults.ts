import type { FaultRates, SwitchConfig } from "../proto/config.js";
import { DropReason } from "../proto/drops.js";
import { deriveSeed, Prng } from "../proto/prng.js";
import { MAX_DATAGRAM_BYTES } from "../proto/wire.js";

type FaultConfig = SwitchConfig["faults"];

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

/**
 * How long a reordered packet is held back when no next packet overtakes it
 * (ms): then the stage's `faultRelease` timer lets it go. One place for the
 * wait.
 */
export const REORDER_HOLD_MS = 1;

/** What sits either side of the fault stage: the core's per-packet handler, and the wire. */
export interface FaultLinks {
  /** The core handles bytes [at, at + length) of `bytes`, one packet from `address:port`. */
  handle(bytes: Buffer, at: number, length: number, port: number, address: string): void;
  /** Puts `packet` on the wire to `address:port`; the buffer may change once it returns. */
  transmit(packet: Buffer, port: number, address: string): void;
}

/**
 * Fault injection as its own stage around the switch core: ingress decides
 * each received packet's fate before the core handles it, egress each sent
 * packet's between the core's emit and the wire. A reordered packet is held
 * back (a copy) and let go after the next one, or REORDER_HOLD_MS after it
 * was held (release(), when `releaseAt` comes).
 */
export class FaultStage {
  readonly ingress: FaultInjector;
  readonly egress: FaultInjector;
  // One packet held back by an ingress reorder (a copy), released after the next one.
  private readonly heldInCopy = Buffer.alloc(MAX_DATAGRAM_BYTES);
  private heldInLength = -1;
  private heldInPort = 0;
  private heldInAddress = "";
  /** when the held received packet is let go without a next one (Infinity: none held) */
  private heldInUntil = Number.POSITIVE_INFINITY;
  // One send held back by an egress reorder, released after the next send.
  private heldOut: Buffer | null = null;
  // Held packets are copied: an aggregator's packet may change before release.
  private readonly heldOutCopy = Buffer.alloc(65536);
  private heldOutPort = 0;
  private heldOutAddress = "";
  private heldOutUntil = Number.POSITIVE_INFINITY;

  constructor(
    faults: FaultConfig,
    /** drops by DropReason value: an ingress drop counts as injectedDrop */
    private readonly drops: Float64Array,
    private readonly links: FaultLinks,
  ) {
    this.ingress = new FaultInjector(faults.ingress, new Prng(deriveSeed(faults.seed, 0)));
    this.egress = new FaultInjector(faults.egress, new Prng(deriveSeed(faults.seed, 1)));
  }

  /**
   * Timer `faultRelease`: when a held-back packet goes without a next one
   * (ms; Infinity when none is held).
   */
  get releaseAt(): number {
    return Math.min(this.heldInUntil, this.heldOutUntil);
  }

  /**
   * One received packet, bytes [at, at + length) of `bytes`, at `now` (ms):
   * to the core, or not, or later.
   */
  receive(
    bytes: Buffer,
    at: number,
    length: number,
    port: number,
    address: string,
    now: number,
  ): void {
    switch (this.ingress.decide()) {
      case FaultAction.drop:
        this.drops[DropReason.injectedDrop]++;
        return;
      case FaultAction.duplicate:
        this.links.handle(bytes, at, length, port, address);
        break;
      case FaultAction.reorder:
        if (this.heldInLength < 0) {
          bytes.copy(this.heldInCopy, 0, at, at + length);
          this.heldInLength = length;
          this.heldInPort = port;
          this.heldInAddress = address;
          this.heldInUntil = now + REORDER_HOLD_MS;
          return;
        }
        break;
    }
    this.links.handle(bytes, at, length, port, address);
    this.releaseIn();
  }

  /** One packet the core sends at `now` (ms): to the wire, or not, or later. */
  send(packet: Buffer, port: number, address: string, now: number): void {
    switch (this.egress.decide()) {
      case FaultAction.drop:
        return;
      case FaultAction.duplicate:
        this.links.transmit(packet, port, address);
        break;
      case FaultAction.reorder:
        if (this.heldOut === null) {
          packet.copy(this.heldOutCopy);
          this.heldOut = this.heldOutCopy.subarray(0, packet.length);
          this.heldOutPort = port;
          this.heldOutAddress = address;
          this.heldOutUntil = now + REORDER_HOLD_MS;
          return;
        }
        break;
    }
    this.links.transmit(packet, port, address);
    this.releaseOut();
  }

  /** Lets held-back packets go (traffic paused, `releaseAt` came): the received one first. */
  release(): void {
    this.releaseIn();
    this.releaseOut();
  }

  private releaseIn(): void {
    const length = this.heldInLength;
    if (length < 0) return;
    this.heldInLength = -1;
    this.heldInUntil = Number.POSITIVE_INFINITY;
    this.links.handle(this.heldInCopy, 0, length, this.heldInPort, this.heldInAddress);
  }

  private releaseOut(): void {
    const held = this.heldOut;
    if (held === null) return;
    this.heldOut = null;
    this.heldOutUntil = Number.POSITIVE_INFINITY;
    this.links.transmit(held, this.heldOutPort, this.heldOutAddress);
  }
}
