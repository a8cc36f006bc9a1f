import { z } from "zod";
import { deadPeerSchema, windowSchema } from "./config.js";
import { MAX_ELEMENTS_PER_PACKET, MAX_FAN_IN, MAX_SCALE_BITS } from "./wire.js";

/** The control plane's request bodies (see README.md, "Scheduling"): what an operator sends the switch. */

export const JobSubmitSchema = z.strictObject({
  id: z.int().min(0).max(0xffff),
  name: z.string().min(1).max(60).optional(),
  class: z.enum(["md", "be"]),
  /** MD jobs: seconds from submission */
  deadlineS: z.number().positive().max(86_400).optional(),
  mode: z.enum(["netreduce", "atp"]),
  workers: z.int().min(1).max(MAX_FAN_IN),
  /** most packets a worker keeps in flight; a NetReduce region smaller than 2 x window lowers it */
  window: windowSchema.default(128),
  modelBytes: z
    .int()
    .min(4)
    .max(2 ** 40),
  epochs: z.int().min(1).max(1_000_000).default(1),
  computeMs: z.number().min(0).max(3_600_000).default(0),
  /** expected throughput (MB/s) and RTT (ms): demand = Throughput x RTT */
  throughputMBps: z.number().positive().max(1e6).default(10),
  rttMs: z.number().positive().max(60_000).default(1),
  /** the job's packet shape (refused otherwise): elements per packet and fixed-point scale */
  elementsPerPacket: z.int().min(1).max(MAX_ELEMENTS_PER_PACKET).optional(),
  scaleBits: z.int().min(0).max(MAX_SCALE_BITS).optional(),
  /**
   * the job fails once a worker it waits for has been silent this long (s;
   * 0: never; default: the switch's deadPeerS, 60): README.md, "Dead peers"
   */
  deadPeerS: deadPeerSchema.optional(),
  /** asks for this many aggregators instead */
  aggregators: z
    .int()
    .min(1)
    .max(1 << 20)
    .optional(),
});
export type JobSubmit = z.infer<typeof JobSubmitSchema>;

/**
 * A worker joining a job (`POST /jobs/:id/workers`, body optional): the id and
 * fan-in its launcher gave it (an MPI or Slurm rank and size). Without
 * `workerId` the switch gives the lowest id not yet joined; `fanIn`, when
 * given, must equal the job's `workers`.
 */
export const WorkerJoinSchema = z.strictObject({
  workerId: z
    .int()
    .min(0)
    .max(MAX_FAN_IN - 1)
    .optional(),
  fanIn: z.int().min(1).max(MAX_FAN_IN).optional(),
});
export type WorkerJoin = z.infer<typeof WorkerJoinSchema>;

/**
 * A joined worker's data address: the switch accepts the worker's packets
 * only from it. The host is the address the request came from; the port is
 * the worker's UDP port.
 */
export const WorkerAddressSchema = z.strictObject({
  port: z.int().min(1).max(65535),
});
export type WorkerAddress = z.infer<typeof WorkerAddressSchema>;

/**
 * Credentials: submitting a job answers with the job's `credential`, which
 * cancelling, finishing, joining, binding an address and reporting done
 * require, as `authorization: Bearer CREDENTIAL`; the switch's operator
 * token (ina-switch --operator-token, or INA_OPERATOR_TOKEN) may do all of
 * them for any job. Everything readable (GET) needs none.
 */
export const CREDENTIAL_ENV = "INA_JOB_CREDENTIAL";
export const OPERATOR_TOKEN_ENV = "INA_OPERATOR_TOKEN";

/** The header value that presents `token`. */
export function bearer(token: string): string {
  return `Bearer ${token}`;
}
