#!/usr/bin/env node
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { Registry } from "prom-client";
import { z } from "zod";
import {
  CONGESTION_CONTROLS,
  JOB_MODES,
  type JobMode,
  windowInputSchema,
  windowPackets,
} from "../proto/config.js";
import { CREDENTIAL_ENV, type WorkerJoin } from "../proto/control.js";
import { dropsByName } from "../proto/drops.js";
import { defaultLinkParams, type LinkParams, LinksSchema, linkProblems } from "../proto/links.js";
import type { Verification, WorkerIdSource } from "../proto/records.js";
import { byteSize, durationSchema, float32Bytes, rateSchema } from "../proto/units.js";
import { MAX_ELEMENTS_PER_PACKET, MAX_FAN_IN, MAX_SCALE_BITS, packetBytes } from "../proto/wire.js";
import {
  cliInt,
  cpuSeconds,
  DATAGRAM_OPTIONS,
  DATAGRAM_SCHEMA,
  EXIT_FAILED,
  EXIT_OK,
  emitRecord,
  parseHostPort,
  runCli,
  UsageError,
} from "../runtime/cli.js";
import { monotonicOriginMs } from "../runtime/clock.js";
import { serveMetrics } from "../runtime/http.js";
import { createLinkMetrics } from "../runtime/metrics.js";
import { secretFrom } from "../runtime/secrets.js";
import { COLLECTIVES } from "./collective.js";
import { requestControl } from "./control-client.js";
import { DEFAULT_GIVE_UP_AFTER_MS, NO_ANSWER_HINT } from "./core.js";
import { launcherRank } from "./launcher.js";
import { createWorkerMetrics } from "./metrics.js";
import { AllReduceOverflowError, CollectiveWorker, Worker } from "./worker.js";
import {
  collectiveInput,
  collectiveOutputLength,
  makeGradient,
  outputDigest,
  verifyAllReduce,
  verifyCollective,
} from "./workload.js";

/** The largest gradient one ina-worker takes (bytes): it holds it and the sum as Float32Arrays. */
const MAX_TENSOR_BYTES = 4 * 2 ** 30;

const spec = {
  command: "ina-worker",
  summary:
    "Runs one worker of a NetReduce, ATP or PS job: all-reduces a seeded synthetic gradient\n" +
    "through the switch, checks the sum against a float64 reference of every worker's input,\n" +
    "and prints one JSON\n" +
    'record per line: "ready" (socket bound), "progress" (every --progress-ms) and "result".',
  details:
    "Every worker of a job must be given the same --mode, --job, --fan-in, --offset,\n" +
    "--region-size, --window, --tensor-bytes, --elements-per-packet, --scale-bits and --seed.\n" +
    "In atp mode --offset and --region-size are the job's slice of the shared pool (any size);\n" +
    "in ps mode they are unused. --size and --size-bytes are the old names of --region-size and\n" +
    "--tensor-bytes.\n" +
    "With --control and no --worker, the worker id and fan-in come from the launcher that started\n" +
    "the process, if any: OMPI_COMM_WORLD_RANK/SIZE (Open MPI's mpirun), PMI_RANK/SIZE (MPICH,\n" +
    "Intel MPI, srun --mpi=pmi2), SLURM_PROCID/NTASKS (srun), checked in that order; without\n" +
    "one, the control plane gives the lowest id not yet joined. --worker and --fan-in win over\n" +
    "the environment. The ready record's workerIdSource says which gave the id.\n" +
    "Exit codes: 0 verified, 1 failed, 2 bad option.",
  options: {
    control: {
      type: "string",
      valueName: "URL",
      description:
        "join --job through the switch's control plane (http://HOST:PORT): it gives fan-in, mode,\n" +
        "window, region, data address and (without --worker or a launcher's rank) the worker id;\n" +
        "waits while the job is queued; a request answered 429 or 5xx, or that cannot connect, is\n" +
        "tried again with backoff for up to 60 s; done is reported once the last sum is in (the\n" +
        "switch frees the region while the worker verifies), and the result is printed either way",
    },
    switch: {
      type: "string",
      valueName: "HOST:PORT",
      description: "the switch's data address (required without --control)",
    },
    mode: {
      type: "string",
      valueName: "MODE",
      description:
        "netreduce, atp, ps, or ring (the workers sum among themselves; the switch forwards)",
      defaultText: "netreduce",
    },
    operation: {
      type: "string",
      valueName: "OP",
      description:
        "ring mode: allReduce (ring all-reduce), reduceScatter, allGather, broadcast, reduce or\n" +
        "allToAll; --tensor-bytes is the whole tensor (allGather: the output; each worker's input is\n" +
        "its chunk)",
      defaultText: "allReduce",
    },
    root: {
      type: "string",
      valueName: "ID",
      description: "ring mode, broadcast and reduce: the root worker",
      defaultText: "0",
    },
    job: { type: "string", valueName: "ID", description: "job id", defaultText: "1" },
    worker: {
      type: "string",
      valueName: "ID",
      description:
        "this worker's id, 0 .. fan-in - 1 (required without --control; with it, the id to ask for)",
    },
    "fan-in": {
      type: "string",
      valueName: "N",
      description:
        "workers in the job (required without --control; with it, checked against the job)",
    },
    offset: {
      type: "string",
      valueName: "N",
      description: "first aggregator of the job's region",
      defaultText: "0",
    },
    "region-size": {
      type: "string",
      valueName: "N",
      description:
        "aggregators in the job's region or pool slice (the gradient's bytes: --tensor-bytes)",
      defaultText: "2 x window",
    },
    window: {
      type: "string",
      valueName: "N|BYTES",
      description:
        "packets in flight (128), or bytes in flight (512KiB: as many whole packets as fit)",
      defaultText: "128",
    },
    "elements-per-packet": {
      type: "string",
      valueName: "K",
      description: "int32 elements per packet",
      defaultText: "256",
    },
    "scale-bits": {
      type: "string",
      valueName: "S",
      description: "fixed point: value x 2^S, rounded",
      defaultText: "20",
    },
    "tensor-bytes": {
      type: "string",
      valueName: "BYTES",
      description: "the gradient's bytes (float32), e.g. 32MiB",
      defaultText: "32MiB",
    },
    seed: {
      type: "string",
      valueName: "N",
      description: "seed of the synthetic gradients",
      defaultText: "1",
    },
    iterations: {
      type: "string",
      valueName: "N",
      description: "all-reduces to run back to back",
      defaultText: "1",
    },
    "wait-go": {
      type: "boolean",
      description: 'after "ready", wait for a line "go" on stdin before starting',
    },
    "no-verify": { type: "boolean", description: "skip the check against the reference sum" },
    "link-rate": {
      type: "string",
      valueName: "RATE",
      description:
        "emulate this worker's link: its NIC sends at RATE (10Gbps, 100Mbps, bits/s);\n" +
        "without it packets go as fast as the host sends them",
    },
    "link-delay": {
      type: "string",
      valueName: "TIME",
      description: "with --link-rate: one-way propagation delay (50us, 2ms)",
      defaultText: "0",
    },
    "link-buffer": {
      type: "string",
      valueName: "BYTES",
      description:
        "with --link-rate: the NIC queue's buffer; a packet that finds it full is dropped",
      defaultText: "512KiB",
    },
    "link-ecn-threshold": {
      type: "string",
      valueName: "BYTES",
      description:
        "with --link-rate: mark packets that find more than this queued (default: never)",
    },
    "link-fifo": {
      type: "boolean",
      description:
        "with --link-rate: one queue for all packets (default: packets with no payload,\n" +
        "acknowledgements and hellos, leave ahead of queued data)",
    },
    "congestion-control": {
      type: "string",
      valueName: "CC",
      description: "how the window reacts to ECN-marked results: none, aimd (ATP) or dctcp",
      defaultText: "none",
    },
    "parameter-servers": {
      type: "string",
      valueName: "N",
      description:
        "ATP and PS jobs: the PSes the job's PSNs are spread over (PSN p answered by PS p % N):\n" +
        "loss detection runs per PS, so their results passing each other are not losses",
      defaultText: "1",
    },
    "rto-floor-ms": {
      type: "string",
      valueName: "MS",
      description: "lowest retransmission timeout",
      defaultText: "the path's: least RTT measured + the timers' measured granularity",
    },
    "compute-ms": {
      type: "string",
      valueName: "MS",
      description: "computation before each all-reduce (Time_comp)",
      defaultText: "0",
    },
    "warn-after-s": {
      type: "string",
      valueName: "S",
      description:
        "say on stderr when the switch has not answered for this long, and again\n" +
        "every S seconds (0: never)",
      defaultText: "5",
    },
    "give-up-s": {
      type: "string",
      valueName: "S",
      description:
        "fail (exit 1) when the switch has not answered for this long (0: never); keep it\n" +
        "above the job's deadPeerS (default 60), so a dead peer is reported as such",
      defaultText: "90",
    },
    "keepalive-ms": {
      type: "string",
      valueName: "MS",
      description:
        "after this long without sending the switch anything, send a keepalive: the\n" +
        "switch knows this worker is alive while it computes or waits (0: never)",
      defaultText: "1000",
    },
    credential: {
      type: "string",
      valueName: "TOKEN",
      description:
        "with --control: the job's credential (POST /jobs answered it) or the operator token\n" +
        "(default: $INA_JOB_CREDENTIAL); visible to other local users in the process list, so\n" +
        "prefer the variable or --credential-file",
    },
    "credential-file": {
      type: "string",
      valueName: "FILE",
      description: "read the credential from FILE (its first line) instead",
    },
    "credential-stdin": {
      type: "boolean",
      description:
        "with --control: wait for the credential on stdin (its first line) before joining, so a\n" +
        "launcher can start the worker ahead of its job's submission: it prints a standby record\n" +
        "and waits (at most --join-timeout-s)",
    },
    "join-timeout-s": {
      type: "string",
      valueName: "S",
      description: "with --control: give up if the job has no region by then",
      defaultText: "600",
    },
    "linger-ms": {
      type: "string",
      valueName: "MS",
      description: "keep serving /metrics this long after the result (for a last scrape)",
      defaultText: "0",
    },
    "metrics-port": {
      type: "string",
      valueName: "PORT",
      description: "TCP port of GET /metrics (Prometheus) on 127.0.0.1; 0 picks a free one",
      defaultText: "0",
    },
    "progress-ms": {
      type: "string",
      valueName: "MS",
      description: "progress record interval; 0 = none",
      defaultText: "500",
    },
    ...DATAGRAM_OPTIONS,
  },
  renamed: { size: "region-size", "size-bytes": "tensor-bytes" },
  schema: z
    .strictObject({
      control: z.url({ protocol: /^https?$/ }).optional(),
      switch: z.string().optional(),
      mode: z.enum(JOB_MODES).default("netreduce"),
      operation: z.enum(COLLECTIVES).default("allReduce"),
      root: cliInt(0, MAX_FAN_IN - 1).default(0),
      job: cliInt(0, 0xffff).default(1),
      worker: cliInt(0, MAX_FAN_IN - 1).optional(),
      fanIn: cliInt(1, MAX_FAN_IN).optional(),
      offset: cliInt(0, 1 << 20).default(0),
      regionSize: cliInt(
        1,
        1 << 20,
        "--region-size counts aggregators; the gradient's bytes are --tensor-bytes",
      ).optional(),
      window: windowInputSchema.default({ packets: 128 }),
      elementsPerPacket: cliInt(1, MAX_ELEMENTS_PER_PACKET).default(256),
      scaleBits: cliInt(0, MAX_SCALE_BITS).default(20),
      tensorBytes: float32Bytes
        .refine((n) => n <= MAX_TENSOR_BYTES, {
          message: `at most ${MAX_TENSOR_BYTES / 2 ** 30} GiB: a worker holds its gradient and the sum in memory`,
        })
        .default(32 * 1024 * 1024),
      seed: cliInt(0, 0xffffffff).default(1),
      iterations: cliInt(1, 1_000_000).default(1),
      waitGo: z.boolean().default(false),
      noVerify: z.boolean().default(false),
      rtoFloorMs: z.coerce.number().positive().max(60_000).optional(),
      linkRate: rateSchema.optional(),
      linkDelay: durationSchema.optional(),
      linkBuffer: byteSize.optional(),
      linkEcnThreshold: byteSize.optional(),
      linkFifo: z.boolean().default(false),
      congestionControl: z.enum(CONGESTION_CONTROLS).default("none"),
      parameterServers: cliInt(1, 16).default(1),
      computeMs: z.coerce.number().min(0).max(3_600_000).default(0),
      joinTimeoutS: z.coerce.number().positive().max(86_400).default(600),
      credential: z.string().min(1).optional(),
      credentialFile: z.string().min(1).optional(),
      credentialStdin: z.boolean().default(false),
      warnAfterS: z.coerce.number().min(0).max(86_400).default(5),
      giveUpS: z.coerce
        .number()
        .min(0)
        .max(86_400)
        .default(DEFAULT_GIVE_UP_AFTER_MS / 1000),
      keepaliveMs: cliInt(0, 3_600_000).default(1000),
      progressMs: cliInt(0, 3_600_000).default(500),
      metricsPort: cliInt(0, 65535).default(0),
      lingerMs: cliInt(0, 3_600_000).default(0),
      ...DATAGRAM_SCHEMA,
    })
    .refine((o) => o.control !== undefined || o.switch !== undefined, {
      path: ["switch"],
      message: "required: the switch's HOST:PORT (or --control URL)",
    })
    .refine((o) => o.control !== undefined || o.worker !== undefined, {
      path: ["worker"],
      message: "required without --control",
    })
    .refine((o) => o.control !== undefined || o.fanIn !== undefined, {
      path: ["fanIn"],
      message: "required without --control",
    })
    .refine((o) => !o.credentialStdin || o.control !== undefined, {
      path: ["credentialStdin"],
      message: "needs --control",
    })
    .refine(
      (o) =>
        !o.credentialStdin ||
        (o.credential === undefined && o.credentialFile === undefined && !o.waitGo),
      {
        path: ["credentialStdin"],
        message:
          "give one of --credential, --credential-file, --credential-stdin; and not with --wait-go (both read stdin)",
      },
    )
    .refine((o) => o.worker === undefined || o.fanIn === undefined || o.worker < o.fanIn, {
      path: ["worker"],
      message: "must be below --fan-in",
    }),
} as const;

function waitForGo(): Promise<void> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: process.stdin });
    lines.on("line", (line) => {
      if (line.trim() === "go") {
        resolve();
        lines.close();
      }
    });
    lines.on("close", () => reject(new Error('stdin closed before "go"')));
  });
}

/** What a worker needs to know of its job: from the command line, or from the control plane. */
interface JobPlacement {
  mode: JobMode;
  workerId: number;
  fanIn: number;
  window: number;
  regionOffset: number;
  regionSize: number;
  regionEpoch: number;
  switchHost: string;
  switchPort: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The first non-empty line of stdin, once it comes: a launcher started this
 * worker before it submitted the job, and writes the credential POST /jobs
 * answered. Bounded by --join-timeout-s.
 */
function credentialFromStdin(timeoutS: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: process.stdin });
    const timer = setTimeout(() => {
      lines.close();
      reject(
        new Error(`--credential-stdin: no credential within ${timeoutS} s (--join-timeout-s)`),
      );
    }, timeoutS * 1000);
    lines.on("line", (line) => {
      if (line.trim() === "") return;
      clearTimeout(timer);
      resolve(line.trim());
      lines.close();
    });
    lines.on("close", () => {
      clearTimeout(timer);
      reject(new Error("--credential-stdin: stdin closed before the credential came"));
    });
  });
}

/** The job's credential for the control plane: --credential, else the environment's. */
let credential: string | undefined;

const controlRequest = (
  url: string,
  method: "GET" | "POST" | "PUT",
  payload?: Record<string, unknown>,
) => requestControl(url, method, { payload, credential });

/** Who this worker is, as far as it knows before joining: from its options, its launcher, or neither. */
interface Identity {
  workerId?: number;
  fanIn?: number;
  /** what gave the worker id: "--worker", a launcher's rank variable, or "control plane" */
  source: WorkerIdSource;
  /** what gave the fan-in, when something did */
  fanInSource?: string;
}

/** --worker and --fan-in win; else the launcher's rank and size; else the control plane decides. */
function identity(o: { worker?: number; fanIn?: number }, env: NodeJS.ProcessEnv): Identity {
  const launched = o.worker === undefined ? launcherRank(env) : null;
  const workerId = o.worker ?? launched?.rank;
  const fanIn = o.fanIn ?? launched?.size;
  if (workerId !== undefined && fanIn !== undefined && workerId >= fanIn) {
    // Only a launcher's rank against an explicit --fan-in gets here: the
    // schema checks --worker against --fan-in, launcherRank rank against size.
    throw new UsageError(
      `--fan-in: ${fanIn} workers, but this worker's id from ${launched?.rankVariable} is ${workerId}`,
    );
  }
  return {
    workerId,
    fanIn,
    source: o.worker !== undefined ? "--worker" : (launched?.rankVariable ?? "control plane"),
    fanInSource: o.fanIn !== undefined ? "--fan-in" : launched?.sizeVariable,
  };
}

/** Joins the job through the control plane and waits until the job has a region. */
async function join(
  control: string,
  jobId: number,
  timeoutS: number,
  who: Identity,
): Promise<JobPlacement> {
  const base = control.replace(/\/$/, "");
  const request: WorkerJoin = {};
  if (who.workerId !== undefined) request.workerId = who.workerId;
  if (who.fanIn !== undefined) request.fanIn = who.fanIn;
  const answer = await controlRequest(
    `${base}/jobs/${jobId}/workers`,
    "POST",
    Object.keys(request).length > 0 ? request : undefined,
  );
  let region = answer.region as { offset: number; size: number; epoch: number } | null;
  const started = performance.now();
  let said = "";
  let saidAt = 0;
  while (region === null) {
    const waitedS = (performance.now() - started) / 1000;
    if (waitedS > timeoutS) {
      throw new Error(`--control: job ${jobId} got no region within ${timeoutS} s (${said})`);
    }
    await sleep(20);
    const job = await controlRequest(`${base}/jobs/${jobId}`, "GET");
    region = job.region as typeof region;
    // A queued worker says so, and why, when the reason changes and every 10 s.
    const why = `${String(job.status)}: ${String(job.reason ?? "no reason given")}`;
    if (region === null && (why !== said || waitedS - saidAt >= 10)) {
      process.stderr.write(
        `ina-worker: job ${jobId} is ${why}; waiting for a region ` +
          `(${waitedS.toFixed(0)} of at most ${timeoutS} s, --join-timeout-s)\n`,
      );
      said = why;
      saidAt = waitedS;
    }
  }
  const data = answer.data as { host: string; port: number };
  return {
    mode: answer.mode as JobMode,
    workerId: Number(answer.workerId),
    fanIn: Number(answer.fanIn),
    window: Number(answer.window),
    regionOffset: region.offset,
    regionSize: region.size,
    regionEpoch: region.epoch,
    switchHost: data.host,
    switchPort: data.port,
  };
}

/** The worker's link from --link-*, checked against its packets; undefined without --link-rate. */
function workerLink(o: {
  linkRate?: number;
  linkDelay?: number;
  linkBuffer?: number;
  linkEcnThreshold?: number;
  linkFifo?: boolean;
  elementsPerPacket: number;
}): LinkParams | undefined {
  if (o.linkRate === undefined) {
    const stray = (["linkDelay", "linkBuffer", "linkEcnThreshold", "linkFifo"] as const).find(
      (k) => o[k] !== undefined && o[k] !== false,
    );
    if (stray !== undefined) {
      throw new UsageError(
        `--${stray.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: needs --link-rate`,
      );
    }
    return undefined;
  }
  const links = LinksSchema.parse({
    rate: o.linkRate,
    delay: o.linkDelay ?? 0,
    buffer: o.linkBuffer,
    ecnThreshold: o.linkEcnThreshold,
    controlPriority: !(o.linkFifo ?? false),
  });
  const [problem] = linkProblems(links, packetBytes(o.elementsPerPacket));
  if (problem !== undefined) {
    const option = problem.path.at(-1) === "buffer" ? "--link-buffer" : "--link-ecn-threshold";
    throw new UsageError(`${option}: ${problem.message}`);
  }
  return defaultLinkParams(links);
}

/**
 * Says on stderr, every `everyS` seconds of silence, that the switch has not
 * answered: a misconfigured job (unknown id, wrong fan-in) or a dead switch
 * otherwise looks like a worker that only retries.
 */
function warnWhenQuiet(
  core: Worker["core"] | CollectiveWorker["core"],
  everyS: number,
  p: JobPlacement,
  jobId: number,
  switchAddress: string,
): NodeJS.Timeout {
  let warnedAtS = 0;
  return setInterval(
    () => {
      const quietS = core.quietMs(performance.now()) / 1000;
      if (quietS < everyS) {
        warnedAtS = 0;
        return;
      }
      if (quietS - warnedAtS < everyS) return;
      warnedAtS = quietS;
      process.stderr.write(
        `ina-worker ${p.workerId} (job ${jobId}, ${p.mode}, fan-in ${p.fanIn}): no answer from ` +
          `the switch at ${switchAddress} for ${quietS.toFixed(0)} s; ` +
          `${core.unansweredPackets} packets unanswered, ${core.completedPackets} of ` +
          `${core.totalPackets} done: ${NO_ANSWER_HINT}\n`,
      );
    },
    Math.min(1000, everyS * 250),
  );
}

await runCli(spec, async (o) => {
  // The metrics server first: it is slow to start on a busy host, needs
  // nothing of the job, and serves the job's metrics once they are registered.
  const registry = new Registry();
  const metricsServer = await serveMetrics(registry, "127.0.0.1", o.metricsPort);
  const elements = o.tensorBytes / 4;
  const who = o.control === undefined ? null : identity(o, process.env);
  // A control-plane job is NetReduce or ATP: with its worker id known, the
  // gradient can be made before joining, and the join's region is current.
  const early = who?.workerId === undefined ? null : makeGradient(elements, o.seed, who.workerId);
  if (o.credentialStdin) {
    // Started ahead of its job: everything that does not need the job is
    // done (the runtime, the HTTP client's first request, the metrics
    // server, the gradient); the job's clock starts when it is submitted.
    await requestControl(`${String(o.control).replace(/\/$/, "")}/health`, "GET");
    emitRecord({ event: "standby", pid: process.pid });
    credential = await credentialFromStdin(o.joinTimeoutS);
  } else {
    credential = await secretFrom("credential", o.credential, o.credentialFile, CREDENTIAL_ENV);
  }
  let placement: JobPlacement;
  let idSource: WorkerIdSource = "--worker";
  if (o.control !== undefined && who !== null) {
    placement = await join(o.control, o.job, o.joinTimeoutS, who);
    idSource = who.source;
    process.stderr.write(
      `ina-worker: job ${o.job}: worker ${placement.workerId} of ${placement.fanIn}, id ${
        who.source === "control plane" ? "given by the control plane" : `from ${who.source}`
      }${who.fanInSource === undefined ? "" : `, fan-in from ${who.fanInSource}`}\n`,
    );
  } else {
    const target = parseHostPort(o.switch ?? "", "--switch");
    const window = windowPackets(o.window, o.elementsPerPacket);
    const regionSize = o.regionSize ?? 2 * window;
    if (o.mode === "netreduce" && regionSize < 2 * window) {
      throw new UsageError(
        `--region-size: a NetReduce region needs at least 2 x window = ${2 * window} aggregators`,
      );
    }
    placement = {
      mode: o.mode,
      workerId: o.worker ?? 0,
      fanIn: o.fanIn ?? 1,
      window,
      regionOffset: o.offset,
      regionSize,
      regionEpoch: 0,
      switchHost: target.host,
      switchPort: target.port,
    };
  }
  const ring = placement.mode === "ring";
  const op = o.operation;
  if (!ring && op !== "allReduce") {
    throw new UsageError(`--operation ${op}: only ring mode runs other collectives than allReduce`);
  }
  if (ring && (op === "broadcast" || op === "reduce") && o.root >= placement.fanIn) {
    throw new UsageError(`--root: must be below the fan-in ${placement.fanIn}`);
  }
  if (ring && op === "allToAll" && elements % placement.fanIn !== 0) {
    throw new UsageError(
      `--tensor-bytes: allToAll cuts the tensor into ${placement.fanIn} equal chunks; ${elements} elements do not`,
    );
  }
  const input = ring
    ? collectiveInput(op, elements, o.seed, placement.workerId, placement.fanIn)
    : (early ?? makeGradient(elements, o.seed, placement.workerId));
  if (o.control !== undefined && early === null) {
    // Making the input takes a while: start in the region the job has now.
    const now = await controlRequest(`${o.control.replace(/\/$/, "")}/jobs/${o.job}`, "GET");
    const region = now.region as { offset: number; size: number; epoch: number } | null;
    if (region !== null) {
      placement = {
        ...placement,
        regionOffset: region.offset,
        regionSize: region.size,
        regionEpoch: region.epoch,
      };
    }
  }
  const p = placement;
  const output = new Float32Array(
    ring ? collectiveOutputLength(op, elements, p.fanIn, p.workerId) : elements,
  );
  const path = {
    jobId: o.job,
    workerId: p.workerId,
    fanIn: p.fanIn,
    window: p.window,
    elementsPerPacket: o.elementsPerPacket,
    scaleBits: o.scaleBits,
    rtoFloorMs: o.rtoFloorMs,
    giveUpAfterMs: o.giveUpS * 1000,
    keepaliveMs: o.keepaliveMs,
    link: workerLink(o),
    switchHost: p.switchHost,
    switchPort: p.switchPort,
    datagram: { packets: o.packetsPerDatagram, bytes: o.datagramBytes },
  };
  const worker =
    p.mode === "ring"
      ? await CollectiveWorker.connect(path)
      : await Worker.connect({
          mode: p.mode,
          jobId: o.job,
          workerId: p.workerId,
          fanIn: p.fanIn,
          regionOffset: p.regionOffset,
          regionSize: p.regionSize,
          regionEpoch: p.regionEpoch,
          window: p.window,
          elementsPerPacket: o.elementsPerPacket,
          scaleBits: o.scaleBits,
          rtoFloorMs: o.rtoFloorMs,
          giveUpAfterMs: o.giveUpS * 1000,
          keepaliveMs: o.keepaliveMs,
          congestionControl: o.congestionControl,
          parameterServers: o.parameterServers,
          link: workerLink(o),
          switchHost: p.switchHost,
          switchPort: p.switchPort,
          datagram: { packets: o.packetsPerDatagram, bytes: o.datagramBytes },
        });
  if (worker.bufferWarning !== null) process.stderr.write(`warning: ${worker.bufferWarning}\n`);
  if (o.control !== undefined) {
    // The switch takes this worker's packets only from the address bound here.
    await controlRequest(
      `${o.control.replace(/\/$/, "")}/jobs/${o.job}/workers/${p.workerId}/address`,
      "PUT",
      { port: worker.address().port },
    );
  }
  const metrics = createWorkerMetrics(registry, worker.core, {
    job: o.job,
    worker: p.workerId,
    mode: p.mode,
  });
  const nic = worker.nic;
  createLinkMetrics(registry, () =>
    nic === null ? [] : [{ host: "switch", direction: "up", record: nic.record() }],
  );
  emitRecord({
    event: "ready",
    pid: process.pid,
    metricsUrl: metricsServer.url,
    workerId: p.workerId,
    workerIdSource: idSource,
    port: worker.address().port,
    region: { offset: p.regionOffset, size: p.regionSize, epoch: p.regionEpoch },
    window: p.window,
    datagram: worker.coalescer.limits,
    socketBuffers: worker.buffers,
    warnings: worker.bufferWarning === null ? [] : [worker.bufferWarning],
  });
  if (o.waitGo) await waitForGo();

  const core = worker.core;
  const progress =
    o.progressMs > 0
      ? setInterval(() => {
          emitRecord({
            event: "progress",
            phase: "allreduce",
            workerId: p.workerId,
            iteration: iteration,
            completedPackets: core.completedPackets,
            totalPackets: core.totalPackets,
          });
        }, o.progressMs)
      : null;
  const switchAddress = `${p.switchHost}:${p.switchPort}`;
  const watchdog =
    o.warnAfterS > 0 ? warnWhenQuiet(core, o.warnAfterS, p, o.job, switchAddress) : null;
  let iteration = 0;
  let overflowed = false;
  const started = performance.now();
  const cpuBefore = cpuSeconds();
  const iterationSeconds: number[] = [];
  /** when the first all-reduce began (its first packet went out), performance.now() */
  let firstPacketAt = Number.NaN;
  for (; iteration < o.iterations; iteration++) {
    if (o.computeMs > 0) await sleep(o.computeMs);
    const t = performance.now();
    if (iteration === 0) firstPacketAt = t;
    try {
      if (worker instanceof CollectiveWorker) await worker.collective(op, input, output, o.root);
      else await worker.allreduce(input, output);
    } catch (error) {
      if (!(error instanceof AllReduceOverflowError)) {
        throw new Error(
          `worker ${p.workerId} of job ${o.job} (${p.mode}, fan-in ${p.fanIn}), switch ` +
            `${switchAddress}: ${(error as Error).message}`,
        );
      }
      overflowed = true;
    }
    iterationSeconds.push((performance.now() - t) / 1000);
    metrics.observeAllReduce((performance.now() - t) / 1000);
  }
  const lastResultAt = performance.now();
  const seconds = (lastResultAt - started) / 1000;
  const allReduceCpuSeconds = cpuSeconds() - cpuBefore;
  if (progress !== null) clearInterval(progress);
  if (watchdog !== null) clearInterval(watchdog);
  // Done as soon as the last aggregation is in, before closing the socket
  // and the (synchronous) verification, so the switch frees the region
  // while this worker closes and checks; a done that cannot be reported is
  // only warned about, and the result is printed either way. A ring worker
  // closes first: its close lingers to acknowledge peers through the switch.
  const reportDone = () =>
    o.control === undefined
      ? Promise.resolve()
      : controlRequest(
          `${o.control.replace(/\/$/, "")}/jobs/${o.job}/workers/${p.workerId}/done`,
          "POST",
        ).then(
          () => {},
          (error: Error) => {
            process.stderr.write(`warning: the job's done was not reported: ${error.message}\n`);
          },
        );
  if (ring) await worker.close();
  const reportingDone = reportDone();
  if (!ring) await worker.close();
  await reportingDone;

  // The last iteration's output is checked; every iteration sums the same inputs.
  if (!o.noVerify && o.progressMs > 0) {
    emitRecord({
      event: "progress",
      phase: "verifying",
      workerId: p.workerId,
      iteration,
      completedPackets: core.completedPackets,
      totalPackets: core.totalPackets,
    });
  }
  const verifyStarted = performance.now();
  const check: Verification | null = o.noVerify
    ? null
    : ring
      ? verifyCollective(op, output, {
          seed: o.seed,
          workers: p.fanIn,
          workerId: p.workerId,
          root: o.root,
          scaleBits: o.scaleBits,
          length: elements,
        })
      : verifyAllReduce(output, o.seed, p.fanIn, o.scaleBits);
  const verifiedAt = performance.now();
  const monotonicOrigin = monotonicOriginMs();
  const verificationSeconds = (verifiedAt - verifyStarted) / 1000;
  const s = core.stats;
  const verified = check?.verified === true && !overflowed;
  emitRecord({
    event: "result",
    workerId: p.workerId,
    regionChanges: core.stats.regionChanges,
    bytes: o.tensorBytes * o.iterations,
    seconds,
    iterationSeconds,
    goodputMBps: (o.tensorBytes * o.iterations) / 1e6 / seconds,
    cpuSeconds: allReduceCpuSeconds,
    packetsSent: s.packetsSent,
    operation: ring ? op : "allReduce",
    payloadBytesSent: s.payloadBytesSent,
    payloadBytesReceived: s.payloadBytesReceived,
    datagramsSent: worker.coalescer.datagramsSent,
    datagramsReceived: s.datagramsReceived,
    retransmissions: s.retransmissions,
    timeouts: s.timeouts,
    spuriousTimeouts: s.spuriousTimeouts,
    timeoutStallMs: s.timeoutStallMs,
    resultsReceived: s.resultsReceived,
    duplicateResults: s.duplicateResults,
    overflowedResults: s.overflowedResults,
    saturatedValues: s.saturatedValues,
    srttMs: s.srttMs,
    rtoMs: s.rtoMs,
    ecnMarkedResults: s.ecnMarkedResults,
    window: core.window,
    link: worker.nic?.record({ series: true }),
    drops: dropsByName(s.drops),
    verification: check,
    verificationSeconds,
    // On the host's monotonic clock, so a launcher can put them on another process's clock.
    firstPacketAtMonotonicMs: monotonicOrigin + firstPacketAt,
    lastResultAtMonotonicMs: monotonicOrigin + lastResultAt,
    verifiedAtMonotonicMs: monotonicOrigin + verifiedAt,
    outputDigest: outputDigest(output),
    verified,
  });
  if (o.lingerMs > 0) await sleep(o.lingerMs);
  await metricsServer.close();
  return check === null || verified ? EXIT_OK : EXIT_FAILED;
});
