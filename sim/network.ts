import { type LinkPort, newVerdict } from "../link/link.js";
import type { SwitchConfig } from "../proto/config.js";
import type { ProcessingCost } from "../proto/costs.js";
import type { LinkHost } from "../proto/links.js";
import { Field, Flag } from "../proto/wire.js";
import { PsCore } from "../ps/core.js";
import { SwitchCore, type Transmit } from "../switch/core.js";
import { HostCpu, NO_COST } from "./costs.js";
import type { Engine } from "./engine.js";
import { SimTimer } from "./timers.js";

/** The star's addresses: every host is HOST, told apart by port. */
export const SWITCH_PORT = 1;
export const PS_PORT = 2;
export const HOST = "127.0.0.1";
export const workerPort = (job: number, worker: number) => 1000 + 64 * job + worker;

/** Takes a delivered packet: its bytes, the port it came from, the time (ms). */
export type Receiver = (bytes: Buffer, from: number, nowMs: number) => void;

/** A packet on its way (reused once delivered). */
interface Delivery {
  buffer: Buffer;
  to: Receiver;
  from: number;
  /** the receiving host's CPU, if it costs time: the packet waits for it on arrival */
  cpu: HostCpu | null;
}

const EMPTY = Buffer.alloc(0);

/**
 * The simulator's wires: a packet goes through a link port (or straight
 * through without links), is marked or dropped there, and reaches its
 * receiver a processing time after it arrives. Buffers and deliveries are
 * pooled so the per-packet path allocates nothing once warm; receivers copy
 * what they keep, as the cores do with a socket's buffer.
 */
export class SimNetwork {
  private readonly pool = new Map<number, Buffer[]>();
  private readonly deliveries: Delivery[] = [];
  private readonly verdict = newVerdict();
  private readonly deliver = (d: Delivery): void => {
    const cpu = d.cpu;
    if (cpu !== null) {
      // Arrived: queue for the receiver's CPU, and be handled once it is done.
      d.cpu = null;
      const done = cpu.admit(this.engine.now, d.buffer);
      if (done > this.engine.now) {
        this.engine.post(done, this.deliver, d);
        return;
      }
    }
    d.to(d.buffer, d.from, this.engine.now / 1e6);
    this.giveBack(d.buffer);
    d.buffer = EMPTY;
    this.deliveries.push(d);
  };

  constructor(
    private readonly engine: Engine,
    /** how long a hop with no link port takes (ns), drawn per packet; null: no time */
    private readonly hopNs: (() => number) | null = null,
  ) {}

  /** Puts `packet` on `port` (or straight through with none) and hands it to `to` `processingNs` after it arrives. */
  send(
    port: LinkPort | null,
    packet: Buffer,
    processingNs: number,
    to: Receiver,
    from: number,
    /** the receiver's CPU: the packet is handled when it is free (after `processingNs`) */
    cpu: HostCpu | null = null,
  ): void {
    let arriveNs = this.engine.now;
    let marked = false;
    if (port !== null) {
      const v = port.offer(packet.length, this.engine.now / 1e6, this.verdict);
      if (v.dropped) return;
      arriveNs = Math.round(v.arriveAt * 1e6);
      marked = v.marked;
    } else if (this.hopNs !== null) {
      arriveNs += this.hopNs();
    }
    const copy = this.take(packet);
    if (marked) copy.writeUInt16LE(copy.readUInt16LE(Field.flags) | Flag.ecn, Field.flags);
    const d = this.deliveries.pop() ?? { buffer: EMPTY, to, from, cpu: null };
    d.buffer = copy;
    d.to = to;
    d.from = from;
    d.cpu = cpu === null || cpu.free ? null : cpu;
    this.engine.post(arriveNs + processingNs, this.deliver, d);
  }

  private take(bytes: Buffer): Buffer {
    const copy = this.pool.get(bytes.length)?.pop() ?? Buffer.allocUnsafe(bytes.length);
    copy.set(bytes);
    return copy;
  }

  private giveBack(buffer: Buffer): void {
    let free = this.pool.get(buffer.length);
    if (free === undefined) {
      free = [];
      this.pool.set(buffer.length, free);
    }
    free.push(buffer);
  }
}

/** A worker on the star: the switch's port towards it, and what takes its packets. */
export interface StarHost {
  down: LinkPort | null;
  /** made once per worker, so a delivery makes no closure */
  receiver: Receiver;
  /** its CPU, when handling a packet costs it time (null: free) */
  cpu?: HostCpu | null;
}

/** What the star's switch or PS puts its packets on the wire through (e.g. a coalescer). */
export type Outbox = Transmit;

/** Optional parts of the star, for the tests' harness (sim/harness.ts). */
export interface StarOptions {
  /** how long a hop with no link port takes (ns), drawn per packet (default: no time) */
  hopNs?: () => number;
  /**
   * what the switch (`from` SWITCH_PORT) and the PS (PS_PORT) send through,
   * given the wire (`wire`) it ends on; default: the wire itself
   */
  outbox?: (from: number, wire: (datagram: Buffer, port: number) => void) => Outbox;
}

/** The star's hosts' processing: latency per packet (ns), and CPU costs (sim/costs.ts). */
export interface StarTiming {
  switchProcessingNs: number;
  hostProcessingNs: number;
  /** what a PS's CPU spends per packet (default: nothing) */
  parameterServerCost?: ProcessingCost;
  /** what the switch's CPU spends per packet, a software switch's (default: nothing, a pipeline) */
  switchCost?: ProcessingCost;
}

/** A parameter server on the star: its core, its link, its CPU. */
export interface SimParameterServer {
  port: number;
  core: PsCore;
  timer: SimTimer;
  /** its uplink and the switch's port towards it (null without links) */
  up: LinkPort | null;
  down: LinkPort | null;
  cpu: HostCpu;
  receiver: Receiver;
}

/** The port of job `job`'s (resolved index) own PS number `k`. */
export const ownPsPort = (job: number, k: number) => 50_000 + 16 * job + k;

/**
 * The simulated star: the real switch core in the middle, the PSes (the
 * shared one when a job needs it, and jobs' own) and the workers around it,
 * each packet crossing its sender's link and the switch's port towards its
 * receiver.
 */
export class SimStar {
  readonly network: SimNetwork;
  readonly sw: SwitchCore;
  /** the shared PS (PS_PORT), or null */
  readonly ps: PsCore | null = null;
  /** the switch's and the shared PS's timers: each an engine event at the core's next deadline */
  readonly swTimer: SimTimer;
  readonly psTimer: SimTimer | null = null;
  /** the shared PS's uplink and the switch's port towards it (null without links or PS) */
  readonly psUp: LinkPort | null;
  readonly psDown: LinkPort | null;
  /** every PS, the shared one first, by port */
  readonly parameterServers = new Map<number, SimParameterServer>();
  /** the workers, by port; filled by the caller as workers join */
  readonly hosts = new Map<number, StarHost>();
  /** the switch's CPU (free unless the timing gives it a cost) */
  readonly switchCpu: HostCpu;
  private readonly switchIn: Receiver;

  constructor(
    private readonly engine: Engine,
    config: SwitchConfig,
    private readonly timing: StarTiming,
    /** a port on `host`'s link: the host's own (`nic`, hostNicParams) or the switch's towards it */
    private readonly portFor: (host: LinkHost, nic?: boolean) => LinkPort | null,
    /** the shared PS's elements per aggregator and the window it assumes for jobs it adopts; null: no shared PS */
    psOptions: { elements: number; adoptWindow?: number } | null,
    private readonly options: StarOptions = {},
  ) {
    this.network = new SimNetwork(engine, options.hopNs ?? null);
    this.switchCpu = new HostCpu(timing.switchCost ?? NO_COST);
    this.switchIn = (b, from, now) => {
      this.sw.receive(b, from, HOST, now);
      this.swTimer.rearm();
    };
    const wire = (packet: Buffer, port: number) => {
      const server = this.parameterServers.get(port);
      if (server !== undefined) {
        this.network.send(
          server.down,
          packet,
          timing.hostProcessingNs,
          server.receiver,
          SWITCH_PORT,
          server.cpu,
        );
        return;
      }
      const h = this.hosts.get(port);
      if (h !== undefined) {
        this.network.send(
          h.down,
          packet,
          timing.hostProcessingNs,
          h.receiver,
          SWITCH_PORT,
          h.cpu ?? null,
        );
      }
    };
    this.sw = new SwitchCore(config, options.outbox?.(SWITCH_PORT, wire) ?? { send: wire });
    this.swTimer = new SimTimer(engine, this.sw);
    this.sw.onTimersChanged = () => this.swTimer.rearm();
    this.swTimer.rearm();
    this.psUp = null;
    this.psDown = null;
    if (psOptions !== null) {
      const shared = this.addParameterServer(
        PS_PORT,
        config.jobs,
        psOptions.elements,
        psOptions.adoptWindow,
      );
      this.ps = shared.core;
      this.psTimer = shared.timer;
      this.psUp = shared.up;
      this.psDown = shared.down;
    }
  }

  /**
   * Adds a PS at `port` serving `jobs`, on its own link and CPU (a job's own
   * PS, ATP's deployment; or the shared one).
   */
  addParameterServer(
    port: number,
    jobs: SwitchConfig["jobs"],
    elements: number,
    adoptWindow?: number,
  ): SimParameterServer {
    const up = this.portFor("ps", true);
    const down = this.portFor("ps");
    const toSwitch = this.toSwitch(port, up);
    const core = new PsCore(
      jobs,
      elements,
      this.options.outbox?.(port, (datagram) => toSwitch.send(datagram)) ?? toSwitch,
      adoptWindow,
    );
    core.trustSwitch(SWITCH_PORT, HOST);
    const timer = new SimTimer(this.engine, core);
    const server: SimParameterServer = {
      port,
      core,
      timer,
      up,
      down,
      cpu: new HostCpu(this.timing.parameterServerCost ?? NO_COST, true),
      receiver: (b) => {
        core.receive(b, SWITCH_PORT, HOST);
        timer.rearm();
      },
    };
    this.parameterServers.set(port, server);
    return server;
  }

  /** What a host at `from` sends with: up its link `up` to the switch. */
  toSwitch(from: number, up: LinkPort | null): { send: (packet: Buffer) => void } {
    return {
      send: (packet) =>
        this.network.send(
          up,
          packet,
          this.timing.switchProcessingNs,
          this.switchIn,
          from,
          this.switchCpu,
        ),
    };
  }
}
