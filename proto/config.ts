import { z } from "zod";
import { LinksSchema, largestPacketBytes, linkProblems } from "./links.js";
import { parseBytes } from "./units.js";
import { MAX_ELEMENTS_PER_PACKET, MAX_FAN_IN, MAX_SCALE_BITS, packetBytes } from "./wire.js";

/**
 * Configuration the switch, the parameter server and the end hosts must agree
 * on. Jobs and their regions come from this file, or from the memory manager
 * through the control plane (switch/control.ts), which hands out only what
 * the file's jobs leave free.
 */

/**
 * Renamed fields (README.md, "Renamed fields"): `schema` also takes
 * each old name of `renames` (old -> new) for its new one, and records the
 * use so that safeParseWithRenames() prints one deprecation line naming the
 * field and its new name; an object giving both names is an error naming
 * both.
 */
export function renamedFields<T extends z.ZodType>(
  renames: Record<string, string>,
  schema: T,
): z.ZodType<z.output<T>, z.input<T>> {
  return z.preprocess((input, ctx) => {
    if (typeof input !== "object" || input === null || Array.isArray(input)) return input;
    let out = input as Record<string, unknown>;
    for (const [old, now] of Object.entries(renames)) {
      if (!Object.hasOwn(out, old)) continue;
      const { [old]: value, ...rest } = out;
      if (Object.hasOwn(out, now)) {
        ctx.addIssue({
          code: "custom",
          path: [old],
          message: `give ${now} or its deprecated name ${old}, not both`,
        });
        out = rest;
        continue;
      }
      renamedUses?.push({ object: input, old, now });
      out = { ...rest, [now]: value };
    }
    return out;
  }, schema) as unknown as z.ZodType<z.output<T>, z.input<T>>;
}

/**
 * Old field names met during the safeParseWithRenames() under way (null
 * outside one, so a plain parse collects nothing): the object that had each.
 */
let renamedUses: Array<{ object: object; old: string; now: string }> | null = null;
/**
 * schema.safeParse(input), and one `warn` line per renamed field given by
 * its old name: `scenario: runs[0].jobs[1].size is deprecated, use tensorBytes`
 * (with "and N more" when several objects use it). proto/ does no I/O: the
 * caller prints (runtime/cli.ts, warnOnStderr).
 */
export function safeParseWithRenames<S extends z.ZodType>(
  schema: S,
  input: unknown,
  source: string,
  warn: (line: string) => void,
): z.ZodSafeParseResult<z.output<S>> {
  const uses: Array<{ object: object; old: string; now: string }> = [];
  renamedUses = uses;
  let parsed: z.ZodSafeParseResult<z.output<S>>;
  try {
    parsed = schema.safeParse(input);
  } finally {
    renamedUses = null;
  }
  const byName = new Map<string, string[]>();
  for (const use of uses) {
    const at = pathTo(input, use.object)?.replace(/^\./, "");
    const where = at ? `${at}.${use.old}` : use.old;
    const key = `${use.old} -> ${use.now}`;
    byName.set(key, [...(byName.get(key) ?? []), where]);
  }
  for (const [key, wheres] of byName) {
    const now = key.slice(key.indexOf(" -> ") + 4);
    const more = wheres.length > 1 ? ` (and ${wheres.length - 1} more)` : "";
    warn(`${source}: ${wheres[0]}${more} is deprecated, use ${now}`);
  }
  return parsed;
}

/** Where `target` sits in `root`, as `runs[0].jobs[1]`; "" for the root, null if nowhere. */
function pathTo(root: unknown, target: object): string | null {
  if (root === target) return "";
  if (typeof root !== "object" || root === null) return null;
  for (const [key, value] of Object.entries(root)) {
    const rest = pathTo(value, target);
    if (rest === null) continue;
    const head = Array.isArray(root) ? `[${key}]` : `.${key}`;
    return `${head}${rest}`;
  }
  return null;
}

const probability = z.number().min(0).max(1);

export const FaultRatesSchema = z
  .strictObject({
    drop: probability.default(0),
    duplicate: probability.default(0),
    reorder: probability.default(0),
  })
  .refine((r) => r.drop + r.duplicate + r.reorder <= 1, {
    message: "drop + duplicate + reorder must not exceed 1",
  });
export type FaultRates = z.infer<typeof FaultRatesSchema>;

export const FaultConfigSchema = z.strictObject({
  /** seeds the injector's PRNG; the same seed and traffic give the same faults */
  seed: z.int().min(0).max(0xffffffff).default(1),
  /** packets arriving at the switch */
  ingress: FaultRatesSchema.default({ drop: 0, duplicate: 0, reorder: 0 }),
  /** packets the switch sends */
  egress: FaultRatesSchema.default({ drop: 0, duplicate: 0, reorder: 0 }),
});
export type FaultConfig = z.infer<typeof FaultConfigSchema>;

/** The most packets a worker keeps in flight: a job's window. */
export const MAX_WINDOW = 1 << 16;
export const windowSchema = z.int().min(1).max(MAX_WINDOW);

/**
 * A window as people give it: packets in flight (128, "128"), or bytes in
 * flight ("512KiB", "1MB"), which is what overflows a receive buffer and
 * what a link's bandwidth-delay product limits. windowPackets() turns it into
 * packets once the packet size is known.
 */
export type WindowInput = { packets: number } | { bytes: number };

export const windowInputSchema = z
  .union([z.number(), z.string()])
  .transform((value, ctx): WindowInput => {
    const text = String(value).trim();
    if (/^\d+$/.test(text)) {
      const packets = Number(text);
      if (packets >= 1 && packets <= MAX_WINDOW) return { packets };
    } else if (typeof value === "string") {
      const bytes = parseBytes(value);
      if (bytes !== null && bytes >= 1) return { bytes };
    }
    ctx.addIssue({
      code: "custom",
      message: `expected packets in flight (1..${MAX_WINDOW}, e.g. 128) or bytes in flight (e.g. 512KiB), got "${value}"`,
    });
    return z.NEVER;
  });

/**
 * The window in packets of `elementsPerPacket` elements: a byte window holds
 * as many whole packets as fit (at least 1, at most MAX_WINDOW).
 */
export function windowPackets(window: WindowInput, elementsPerPacket: number): number {
  if ("packets" in window) return window.packets;
  const fit = Math.floor(window.bytes / packetBytes(elementsPerPacket));
  return Math.min(MAX_WINDOW, Math.max(1, fit));
}

/**
 * How long a peer a job waits for may stay silent before the switch fails the
 * job (s), when neither the job nor the switch config says: longer than a
 * blocked event loop, a GC pause, a checkpoint or a late start (tens of
 * seconds), short enough that a real death is reported within about a
 * minute (torch.distributed waits 30 minutes). README.md, "Dead peers".
 */
export const DEFAULT_DEAD_PEER_S = 60;

/** A dead-peer timeout in seconds: 0 (never) to a day. */
export const deadPeerSchema = z.number().min(0).max(86_400);

/** One allowed source of a job's workers: an IPv4 address or CIDR, or an IPv6 address. */
const sourceSchema = z.string().refine(
  (s) => {
    const v4 = /^(\d+)\.(\d+)\.(\d+)\.(\d+)(?:\/(\d+))?$/.exec(s);
    if (v4 !== null) {
      return (
        v4.slice(1, 5).every((p) => Number(p) <= 255) &&
        (v4[5] === undefined || Number(v4[5]) <= 32)
      );
    }
    return /^[0-9a-fA-F:]+$/.test(s) && s.includes(":");
  },
  { message: 'expected an IPv4 address, an IPv4 CIDR ("10.0.0.0/24") or an IPv6 address' },
);

const jobCommon = {
  id: z.int().min(0).max(0xffff),
  /** optional, for people: the switch labels the job's metrics with it (`ina_job_name`) */
  name: z.string().min(1).max(60).optional(),
  fanIn: z.int().min(1).max(MAX_FAN_IN),
  /** most packets a worker of the job keeps in flight */
  window: windowSchema,
  /**
   * the job's packet shape, when known: contributions carry at most this
   * many elements (a tensor's last packet may carry fewer) at this scale;
   * any other shape is refused before it can claim an aggregator
   */
  elementsPerPacket: z.int().min(1).max(MAX_ELEMENTS_PER_PACKET).optional(),
  scaleBits: z.int().min(0).max(MAX_SCALE_BITS).optional(),
  /**
   * the job fails once a peer it waits for has been silent this long (s;
   * 0: never); default: the switch's (README.md, "Dead peers")
   */
  deadPeerS: deadPeerSchema.optional(),
  /**
   * the addresses its workers may send from (IPv4 addresses, IPv4 CIDRs
   * such as "10.0.0.0/24", IPv6 addresses): a config-file job binds each
   * worker to the first address that sends for it, and only one of these
   * may (section 15); default: any address
   */
  sources: z.array(sourceSchema).min(1).max(256).optional(),
};

export const HostPortSchema = z.strictObject({
  host: z.ipv4(),
  port: z.int().min(1).max(65535),
});

/** Most parameter servers one job may have of its own. */
export const MAX_JOB_PARAMETER_SERVERS = 16;

/**
 * A job's own parameter servers (ATP's deployment: each job's PS runs on its
 * own hosts): PSN p's pieces go to parameterServers[p % length]. Absent: the
 * switch's shared `parameterServer`.
 */
const jobParameterServers = z
  .array(HostPortSchema)
  .min(1)
  .max(MAX_JOB_PARAMETER_SERVERS)
  .optional();

/**
 * NetReduce: the job owns [offset, offset + regionSize); the switch addresses
 * it by PSN % regionSize.
 */
export const NetReduceJobSchema = z.strictObject({
  ...jobCommon,
  mode: z.literal("netreduce"),
  /** first aggregator of the job's region */
  offset: z.int().min(0),
  /** aggregators in the region (formerly `size`, still accepted) */
  regionSize: z.int().min(1),
});

/**
 * ATP: workers hash (job, PSN) into [offset, offset + regionSize), a slice of
 * the shared pool that other ATP jobs may share too; collisions go to the PS.
 */
export const AtpJobSchema = z.strictObject({
  ...jobCommon,
  mode: z.literal("atp"),
  offset: z.int().min(0),
  regionSize: z.int().min(1),
  /**
   * most aggregators of its slice the job may hold at once (default: its
   * fair share, the slice's size over the ATP jobs whose slices overlap
   * it; alone, the whole slice); beyond, its contributions go straight to
   * the PS, so one tenant cannot fill a shared pool
   */
  quota: z.int().min(1).optional(),
  /**
   * payload bytes all its workers will contribute, every iteration
   * (workers x tensor bytes x iterations): with `atpPool` esa, the job with
   * fewer of them left outranks the others (absent: it ranks by what it has
   * sent, least first, behind every job of known size)
   */
  totalBytes: z.number().int().min(0).optional(),
  parameterServers: jobParameterServers,
});

/** Parameter-server baseline: the switch only forwards; the PS aggregates everything. */
export const PsJobSchema = z.strictObject({
  ...jobCommon,
  mode: z.literal("ps"),
  parameterServers: jobParameterServers,
});

/**
 * Ring all-reduce and the other host-based collectives: the workers sum and
 * move data among themselves; the switch only forwards (proto/README.md,
 * section 17). No aggregators, no PS.
 */
export const RingJobSchema = z.strictObject({
  ...jobCommon,
  mode: z.literal("ring"),
});

export const JobConfigSchema = renamedFields(
  { size: "regionSize" },
  z.discriminatedUnion("mode", [NetReduceJobSchema, AtpJobSchema, PsJobSchema, RingJobSchema]),
);
export type JobConfig = z.infer<typeof JobConfigSchema>;
export type JobMode = JobConfig["mode"];
export const JOB_MODES = ["netreduce", "atp", "ps", "ring"] as const satisfies readonly JobMode[];
/** The modes whose sums come back from the network (the switch or the PS): WorkerCore's. */
export const SUMMED_MODES = ["netreduce", "atp", "ps"] as const satisfies readonly JobMode[];
export type SummedMode = (typeof SUMMED_MODES)[number];

/** What a ring job's workers run (worker/collective.ts; proto/README.md, section 17). */
export const COLLECTIVES = [
  "allReduce",
  "reduceScatter",
  "allGather",
  "broadcast",
  "reduce",
  "allToAll",
] as const;
export type Collective = (typeof COLLECTIVES)[number];

/** How a worker reacts to ECN marks on its results (worker/congestion.ts). */
export const CONGESTION_CONTROLS = ["none", "aimd", "dctcp"] as const;
export type CongestionControl = (typeof CONGESTION_CONTROLS)[number];

/**
 * The memory manager's policies (switch --policy, scheduling scenarios).
 * `shared` and `esa` are for ATP jobs: each hashes into the whole pool (no
 * region of its own, no quota); `shared` is ATP's own first come, `esa`
 * adds ESA's preemption by priority in the data plane (ATP_POOLS).
 */
export const POLICIES = ["edf", "fcfs", "static", "shared", "esa"] as const;
export type Policy = (typeof POLICIES)[number];

/**
 * How ATP jobs share the aggregators their slices have in common (switch
 * config `atpPool`): `fairShare` caps each job at its share of its slice
 * (its quota); `firstCome` is ATP's own pool, no quota: an aggregator is the
 * first (job, PSN)'s that hashes to it, until the PS's ack frees it, and a
 * collision goes to the PS; `esa` is firstCome plus ESA's preemption (Wang
 * et al., ICNP'23): a first send of a job that outranks the holder of a
 * partial aggregate (fewer bytes left to aggregate) sends that partial to
 * the PS and takes the aggregator (switch/atp.ts).
 */
export const ATP_POOLS = ["fairShare", "firstCome", "esa"] as const;
export type AtpPool = (typeof ATP_POOLS)[number];

/** The ATP pool a policy asks the switch for: `shared` ATP's own first come, `esa` ESA's; null: the config's. */
export function atpPoolOfPolicy(policy: Policy): AtpPool | null {
  return policy === "esa" ? "esa" : policy === "shared" ? "firstCome" : null;
}

/** A job's region (offset, size) in the aggregator array; a PS or ring job has none. */
export function jobRegion(job: JobConfig): { offset: number; size: number } {
  return job.mode === "ps" || job.mode === "ring"
    ? { offset: 0, size: 0 }
    : { offset: job.offset, size: job.regionSize };
}

/** Most memory the PS may hold for one job's PSN states. */
export const PS_JOB_MEMORY_LIMIT = 1024 * 2 ** 20;

export const SwitchConfigSchema = z
  .strictObject({
    /** aggregators in the switch's array */
    aggregators: z
      .int()
      .min(1)
      .max(1 << 20),
    /** int32 elements each aggregator holds: the largest payload a contribution may carry */
    elementsPerAggregator: z.int().min(1).max(MAX_ELEMENTS_PER_PACKET).default(256),
    jobs: z.array(JobConfigSchema).default([]),
    /** where ATP fallbacks and PS-mode traffic go; required when any job is "atp" or "ps" */
    parameterServer: HostPortSchema.optional(),
    /** how ATP jobs share a pool (ATP_POOLS); `--policy shared` or `esa` sets it too */
    atpPool: z.enum(ATP_POOLS).default("fairShare"),
    /**
     * a job fails when one of its aggregations waits this long (s) for a
     * worker that has been silent as long while the others' contributions
     * arrived, or a packet to the PS waits this long for an ack; 0: never
     * (switch/liveness.ts). The default of jobs that set no `deadPeerS`.
     */
    deadPeerS: deadPeerSchema.optional(),
    /** deprecated: `deadPeerS` in ms; not with `deadPeerS` */
    deadPeerMs: z.int().min(0).max(86_400_000).optional(),
    /** emulated links (proto/links.ts); absent: packets go as fast as the host sends them */
    links: LinksSchema.optional(),
    faults: FaultConfigSchema.default({
      seed: 1,
      ingress: { drop: 0, duplicate: 0, reorder: 0 },
      egress: { drop: 0, duplicate: 0, reorder: 0 },
    }),
  })
  .superRefine((config, ctx) => {
    if (config.deadPeerMs !== undefined && config.deadPeerS !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["deadPeerMs"],
        message: "give deadPeerS or the deprecated deadPeerMs, not both",
      });
    }
    if (config.links !== undefined) {
      for (const p of linkProblems(
        config.links,
        largestPacketBytes(config.elementsPerAggregator),
      )) {
        ctx.addIssue({ code: "custom", path: ["links", ...p.path], message: p.message });
      }
    }
    const seen = new Map<number, number>();
    config.jobs.forEach((job, i) => {
      const path = ["jobs", i];
      const previous = seen.get(job.id);
      if (previous !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: [...path, "id"],
          message: `job id ${job.id} is already used by jobs[${previous}]`,
        });
      }
      seen.set(job.id, i);
      if (job.mode === "ring") return;
      if (
        job.mode !== "netreduce" &&
        config.parameterServer === undefined &&
        job.parameterServers === undefined
      ) {
        ctx.addIssue({
          code: "custom",
          path: ["parameterServer"],
          message: `jobs[${i}] is a ${job.mode === "ps" ? "PS" : "ATP"} job, which needs a parameterServer {host, port} (the switch's, or the job's own parameterServers)`,
        });
      }
      if (job.mode !== "netreduce") {
        // The PS keeps 4 x window PSNs of float64 sums and int32 acks per job.
        const psBytes = 4 * job.window * config.elementsPerAggregator * 12;
        if (psBytes > PS_JOB_MEMORY_LIMIT) {
          ctx.addIssue({
            code: "custom",
            path: [...path, "window"],
            message: `the PS would need ${Math.ceil(psBytes / 2 ** 20)} MiB for this job (4 x window x elementsPerAggregator x 12 bytes); the limit is ${PS_JOB_MEMORY_LIMIT / 2 ** 20} MiB`,
          });
        }
      }
      if (job.mode === "ps") return;
      if (job.offset + job.regionSize > config.aggregators) {
        ctx.addIssue({
          code: "custom",
          path: [...path, "regionSize"],
          message: `region [${job.offset}, ${job.offset + job.regionSize}) ends past the ${config.aggregators} aggregators`,
        });
      }
      // NetReduce reuses aggregator offset + PSN % regionSize for PSN +
      // regionSize; with regionSize >= 2 x window every worker already has
      // PSN's result by then.
      if (job.mode === "netreduce" && job.regionSize < 2 * job.window) {
        ctx.addIssue({
          code: "custom",
          path: [...path, "regionSize"],
          message: `a NetReduce region needs at least 2 x window = ${2 * job.window} aggregators, got ${job.regionSize}`,
        });
      }
      // A NetReduce region is the job's alone; ATP slices may overlap each other.
      config.jobs.slice(0, i).forEach((other, j) => {
        if (other.mode === "ps" || other.mode === "ring") return;
        if (job.mode === "atp" && other.mode === "atp") return;
        if (
          job.offset < other.offset + other.regionSize &&
          other.offset < job.offset + job.regionSize
        ) {
          ctx.addIssue({
            code: "custom",
            path: [...path, "offset"],
            message: `region [${job.offset}, ${job.offset + job.regionSize}) overlaps jobs[${j}]'s region [${other.offset}, ${other.offset + other.regionSize}); only ATP jobs may share aggregators`,
          });
        }
      });
    });
  });
export type SwitchConfig = z.infer<typeof SwitchConfigSchema>;

/** The switch's dead-peer timeout for jobs that set none (ms; 0: never). */
export function switchDeadPeerMs(config: Pick<SwitchConfig, "deadPeerS" | "deadPeerMs">): number {
  return config.deadPeerMs ?? (config.deadPeerS ?? DEFAULT_DEAD_PEER_S) * 1000;
}
export type SwitchConfigInput = z.input<typeof SwitchConfigSchema>;

/** One line per problem, each naming the field: `jobs[0].regionSize: ...`. */
export function formatZodError(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const path = issue.path
        .map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
        .join("");
      return `${path || "(root)"}: ${issue.message}`;
    })
    .join("\n");
}

/**
 * Parses a switch config or throws an Error whose message names every bad
 * field; a renamed field given by its old name is one `warn` line naming
 * `source` (renamedFields).
 */
export function parseSwitchConfig(
  input: unknown,
  source = "config",
  warn: (line: string) => void = () => {},
): SwitchConfig {
  const parsed = safeParseWithRenames(SwitchConfigSchema, input, source, warn);
  if (!parsed.success) throw new ConfigError(formatZodError(parsed.error));
  return parsed.data;
}

export class ConfigError extends Error {
  override name = "ConfigError";
}
