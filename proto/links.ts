import { z } from "zod";
import { byteSize, durationSchema, rateSchema } from "./units.js";
import { HEADER_BYTES, MAX_FAN_IN } from "./wire.js";

/**
 * Emulated links (the `links` section of a switch config or a scenario run):
 * every host (worker, PS) is attached to the switch by a full-duplex link
 * with a line rate, a one-way propagation delay, and an egress queue at each
 * end (the host's NIC and the switch's port) with a buffer and an ECN
 * marking threshold. The defaults apply to every host; the parameter server
 * and any worker (or every worker of a job) may override them.
 */

export interface LinkParams {
  /** line rate, bits per second */
  rateBitsPerSecond: number;
  /** one-way propagation delay, ms */
  delayMs: number;
  /** bytes the port's buffer holds, the packet being sent included */
  bufferBytes: number;
  /** a packet that finds more than this many bytes queued is marked; Infinity: never */
  ecnThresholdBytes: number;
  /**
   * packets with no payload (CONTROL_PACKET_BYTES: acknowledgements, hellos,
   * keepalives, notices) leave ahead of queued data, a strict-priority
   * traffic class; false: one FIFO for all (LinkPort)
   */
  controlPriority: boolean;
  /**
   * the share of the link's rate the host at this end sends at, in (0, 1]:
   * its own overheads (hostNicParams); the switch's port keeps the full rate
   */
  hostEfficiency: number;
}

/** A packet of this many bytes or fewer is control (a header with no payload): controlPriority. */
export const CONTROL_PACKET_BYTES = HEADER_BYTES;

/** A switch port's buffer when none is given. */
export const DEFAULT_LINK_BUFFER_BYTES = 512 * 1024;

const overrideFields = {
  rate: rateSchema.optional(),
  delay: durationSchema.optional(),
  buffer: byteSize.optional(),
  ecnThreshold: byteSize.optional(),
  controlPriority: z.boolean().optional(),
  hostEfficiency: z
    .number()
    .gt(0, "hostEfficiency must be above 0 (a host that sends nothing never finishes)")
    .max(1, "hostEfficiency is a share of the link's rate: at most 1")
    .optional(),
};

export const LinkOverrideSchema = z.strictObject(overrideFields);

export const LinksSchema = z.strictObject({
  /** every host's link: rate ("10Gbps", "100Mbps", bits/s), delay ("50us", "2ms"), buffer, ECN threshold */
  rate: rateSchema,
  delay: durationSchema.default(0),
  buffer: byteSize.default(DEFAULT_LINK_BUFFER_BYTES),
  /** no marking when absent */
  ecnThreshold: byteSize.optional(),
  /** control packets (no payload) leave ahead of queued data (default true; LinkParams.controlPriority) */
  controlPriority: z.boolean().default(true),
  /** the share of its link's rate a host sends at, in (0, 1] (default 1; LinkParams.hostEfficiency) */
  hostEfficiency: overrideFields.hostEfficiency.default(1),
  /** the parameter server's link, where it differs */
  parameterServer: LinkOverrideSchema.optional(),
  /** a worker's link (or, without `worker`, every worker of `job`), where it differs */
  workers: z
    .array(
      z.strictObject({
        job: z.int().min(0).max(0xffff),
        worker: z
          .int()
          .min(0)
          .max(MAX_FAN_IN - 1)
          .optional(),
        ...overrideFields,
      }),
    )
    .default([]),
});
export type Links = z.infer<typeof LinksSchema>;
export type LinksInput = z.input<typeof LinksSchema>;

type Override = z.infer<typeof LinkOverrideSchema>;

function merge(base: Override & { rate: number }, over: Override | undefined): LinkParams {
  const o = over ?? {};
  const bufferBytes = o.buffer ?? base.buffer ?? DEFAULT_LINK_BUFFER_BYTES;
  return {
    rateBitsPerSecond: o.rate ?? base.rate,
    delayMs: o.delay ?? base.delay ?? 0,
    bufferBytes,
    ecnThresholdBytes: o.ecnThreshold ?? base.ecnThreshold ?? Number.POSITIVE_INFINITY,
    controlPriority: o.controlPriority ?? base.controlPriority ?? true,
    hostEfficiency: o.hostEfficiency ?? base.hostEfficiency ?? 1,
  };
}

/**
 * The host's own egress port (its NIC) on a link: the link's rate times the
 * host's efficiency, so a scenario can model a host that cannot keep its
 * line busy (NCCL's measured overheads); the switch's port towards it keeps
 * the link's rate.
 */
export function hostNicParams(link: LinkParams): LinkParams {
  return link.hostEfficiency === 1
    ? link
    : { ...link, rateBitsPerSecond: link.rateBitsPerSecond * link.hostEfficiency };
}

/** The links' defaults: every host's link where no override applies. */
export function defaultLinkParams(links: Links): LinkParams {
  return merge(links, undefined);
}

/** Who is at the far end of a link: a worker of a job, or the parameter server. */
export type LinkHost = { job: number; worker: number } | "ps";

/** The link of `host`: the defaults, then a job-wide override, then the worker's own. */
export function linkParamsFor(links: Links, host: LinkHost): LinkParams {
  if (host === "ps") return merge(links, links.parameterServer);
  const jobWide = links.workers.find((w) => w.job === host.job && w.worker === undefined);
  const own = links.workers.find((w) => w.job === host.job && w.worker === host.worker);
  return merge({ ...links, ...definedOnly(jobWide) }, own);
}

function definedOnly(o: Override | undefined): Override {
  const out: Override = {};
  if (o === undefined) return out;
  if (o.rate !== undefined) out.rate = o.rate;
  if (o.delay !== undefined) out.delay = o.delay;
  if (o.buffer !== undefined) out.buffer = o.buffer;
  if (o.ecnThreshold !== undefined) out.ecnThreshold = o.ecnThreshold;
  if (o.controlPriority !== undefined) out.controlPriority = o.controlPriority;
  if (o.hostEfficiency !== undefined) out.hostEfficiency = o.hostEfficiency;
  return out;
}

/**
 * What is wrong with each link's parameters, with the field's path: a
 * buffer that cannot hold one packet of `packetBytes`, an ECN threshold
 * above the buffer (it would never mark).
 */
export function linkProblems(
  links: Links,
  packetBytes: number,
): Array<{ path: Array<string | number>; message: string }> {
  const out: Array<{ path: Array<string | number>; message: string }> = [];
  const check = (params: LinkParams, path: Array<string | number>) => {
    if (params.bufferBytes < packetBytes) {
      out.push({
        path: [...path, "buffer"],
        message: `a buffer of ${params.bufferBytes} bytes cannot hold one packet of ${packetBytes} bytes`,
      });
    }
    if (params.ecnThresholdBytes !== Number.POSITIVE_INFINITY) {
      if (params.ecnThresholdBytes > params.bufferBytes) {
        out.push({
          path: [...path, "ecnThreshold"],
          message: `an ECN threshold of ${params.ecnThresholdBytes} bytes is above the buffer of ${params.bufferBytes}: it would never mark`,
        });
      }
    }
  };
  check(defaultLinkParams(links), []);
  if (links.parameterServer !== undefined) check(linkParamsFor(links, "ps"), ["parameterServer"]);
  links.workers.forEach((w, i) => {
    check(linkParamsFor(links, { job: w.job, worker: w.worker ?? 0 }), ["workers", i]);
  });
  return out;
}

/** The largest datagram of a switch with `elementsPerAggregator`: a full contribution or result. */
export function largestPacketBytes(elementsPerAggregator: number): number {
  return HEADER_BYTES + 4 * elementsPerAggregator;
}
