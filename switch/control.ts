import { randomBytes, timingSafeEqual } from "node:crypto";
import Fastify, { type FastifyInstance } from "fastify";
import {
  hasZodFastifySchemaValidationErrors,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from "fastify-type-provider-zod";
import type { Registry } from "prom-client";
import { z } from "zod";
import { atpPoolOfPolicy } from "../proto/config.js";
import {
  type JobSubmit,
  JobSubmitSchema,
  WorkerAddressSchema,
  type WorkerJoin,
  WorkerJoinSchema,
} from "../proto/control.js";
import type { SwitchLinkRecord } from "../proto/records.js";
import { MAX_FAN_IN } from "../proto/wire.js";
import { addMetricsRoute } from "../runtime/http.js";
import { LOCAL_ADDRESS_HEADER } from "../runtime/http-front.js";
import type { SwitchCore } from "./core.js";
import { JobState } from "./jobs.js";
import { liveState } from "./live.js";
import { type Decision, type ManagedJob, ManagerError, type MemoryManager } from "./memory.js";
import { UI_PAGE, uiAssets } from "./ui.js";

/**
 * The switch's control plane: the memory manager's northbound HTTP API
 * (submit, list, get, cancel and finish jobs; the allocation table; health)
 * and its southbound side: a worker joining a job learns its worker id (or
 * asks for the one its launcher gave it), fan-in, mode, region and the
 * switch's data address, and the switch installs,
 * changes and removes job rules as the manager decides. Bodies and parameters
 * are validated with zod; every error is JSON `{ code, message }` naming what
 * is wrong: 400 bad request, 404 unknown job, 409 conflict, 503 no resources.
 */

/** A path segment that is a decimal integer in [0, max]. */
const pathInt = (max: number) =>
  z
    .string()
    .regex(/^\d{1,10}$/, "expected a decimal integer")
    .transform(Number)
    .pipe(z.int().min(0).max(max));
const JobIdParams = z.strictObject({ id: pathInt(0xffff) });
const WorkerParams = z.strictObject({ id: pathInt(0xffff), workerId: pathInt(MAX_FAN_IN - 1) });

export interface ControlPlaneOptions {
  manager: MemoryManager;
  core: SwitchCore;
  /**
   * where workers send their packets; a wildcard host (0.0.0.0) is answered
   * with the address each worker reached the control plane at
   */
  dataAddress: { host: string; port: number };
  /**
   * the manager's clock, ms: every time the API shows (submittedAt, startedAt,
   * finishedAt, deadlineAt, estimatedFinishAt, history[].at) is on it
   */
  now: () => number;
  /** the wall-clock time at which `now()` was 0, shown by GET /health to convert times */
  clockOrigin?: Date;
  /**
   * where `now()` was 0 on the host's monotonic clock (ms; runtime/clock.ts),
   * shown by GET /health: processes on the host compare times through it
   */
  clockOriginMonotonicMs?: number;
  /** may do anything to any job (section "Credentials" of proto/control.ts); none: only job credentials */
  operatorToken?: string;
  /** finished, cancelled and rejected jobs kept for GET, the oldest purged first (200) */
  retainedJobs?: number;
  /** queued and running jobs at most (256): a submission beyond is refused with 503 */
  maxActiveJobs?: number;
  /** whether the switch has a parameter server, which ATP jobs need */
  hasParameterServer?: boolean;
  /**
   * a job that no worker joined this long after its submission expires:
   * cancelled, its region freed (ms; default 600 000, a worker's own
   * --join-timeout-s; 0: never)
   */
  joinTimeoutMs?: number;
  /**
   * queued and running jobs one submitter (an address) may hold without the
   * operator token (32): a stranger cannot fill the job table
   */
  maxJobsPerSubmitter?: number;
  /**
   * runs `work` once the data path's current packet is done (default
   * setImmediate; the simulator's runs it at the same virtual time)
   */
  defer?: (work: () => void) => void;
}

class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Bind addresses that mean "every interface": no address a worker could send to. */
const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", ""]);

const STATUS_OF_MANAGER_ERROR = { conflict: 409, notFound: 404, invalid: 400 } as const;

/** The control plane of one switch: its routes, and the link from the manager's decisions to the data plane. */
export class ControlPlane {
  /** bitmaps of the workers that joined each job, and of those that reported their all-reduces done */
  private readonly joined = new Map<number, number>();
  private readonly done = new Map<number, number>();
  /** when a worker last joined each job (ms), for the join timeout of jobs that never sent */
  private readonly lastJoinAt = new Map<number, number>();
  /** who submitted each job (the request's source address), for maxJobsPerSubmitter */
  private readonly submitters = new Map<number, string>();
  /** each control-plane job's bound worker addresses, kept across reinstalls */
  private readonly bindings = new Map<number, Map<number, { port: number; host: string }>>();
  /** each job's credential, given once when it is submitted */
  private readonly credentials = new Map<number, string>();

  /**
   * Lets a request act on job `jobId` only with the job's credential or the
   * operator token: 401 when it shows none, 403 when it shows another.
   */
  authorize(jobId: number, authorization: string | undefined): void {
    const token = /^Bearer (\S+)$/.exec(authorization ?? "")?.[1];
    if (token === undefined) {
      throw new HttpError(
        401,
        "unauthorized",
        `job ${jobId}: this request needs the job's credential (from POST /jobs) or the operator token, as authorization: Bearer TOKEN`,
      );
    }
    const operator = this.options.operatorToken;
    if (operator !== undefined && sameToken(token, operator)) return;
    const own = this.credentials.get(jobId);
    if (own === undefined) {
      // Unknown (or a config-file job): nothing but the operator may touch it.
      this.options.manager.get(jobId);
      throw new HttpError(403, "forbidden", `job ${jobId}: only the operator token may do this`);
    }
    if (!sameToken(token, own)) {
      throw new HttpError(403, "forbidden", `job ${jobId}: wrong credential`);
    }
  }

  /** Every credential the control plane accepts, and what each may see: for the HTTP front. */
  credentialList(): Array<[string, "operator" | number]> {
    const list: Array<[string, "operator" | number]> = [...this.credentials].map(([id, token]) => [
      token,
      id,
    ]);
    if (this.options.operatorToken !== undefined)
      list.push([this.options.operatorToken, "operator"]);
    return list;
  }

  /** Whether `authorization` carries the operator token. */
  isOperator(authorization: string | undefined): boolean {
    const token = /^Bearer (\S+)$/.exec(authorization ?? "")?.[1];
    const operator = this.options.operatorToken;
    return token !== undefined && operator !== undefined && sameToken(token, operator);
  }

  /** Forgets the oldest ended jobs beyond `retainedJobs`, so no store grows without bound. */
  private purge(): void {
    const keep = this.options.retainedJobs ?? 200;
    const ended = [...this.options.manager.jobs.values()]
      .filter(
        (j) =>
          j.status === "finished" ||
          j.status === "cancelled" ||
          j.status === "rejected" ||
          j.status === "failed",
      )
      .sort((a, b) => (a.finishedAt ?? a.submittedAt) - (b.finishedAt ?? b.submittedAt));
    for (const job of ended.slice(0, Math.max(0, ended.length - keep))) {
      const id = job.spec.id;
      this.options.manager.jobs.delete(id);
      this.credentials.delete(id);
      this.joined.delete(id);
      this.done.delete(id);
      this.bindings.delete(id);
      this.submitters.delete(id);
      this.lastJoinAt.delete(id);
    }
  }

  constructor(readonly options: ControlPlaneOptions) {
    // `shared` and `esa` are the data plane's arbitration of one pool.
    const pool = atpPoolOfPolicy(options.manager.options.policy);
    if (pool !== null) options.core.setAtpPool(pool);
    const defer = options.defer ?? ((work: () => void) => setImmediate(work));
    // Drain reports come from inside the data path: act on them afterwards.
    options.core.onRegionDrained = (jobId, epoch) => {
      defer(() => this.apply(options.manager.drained(jobId, epoch, options.now())));
    };
    // A job the switch failed gives its memory back; the manager reschedules.
    options.core.onJobFailed = (jobId, reason) => {
      defer(() => {
        const job = options.manager.jobs.get(jobId);
        if (job === undefined || (job.status !== "running" && job.status !== "queued")) return;
        this.apply(options.manager.fail(jobId, reason, options.now()));
      });
    };
  }

  /** Installs, changes and removes switch rules as the manager decided. */
  /** Called after the jobs changed (decisions applied): the HTTP front publishes them again. */
  onChange: (() => void) | null = null;

  apply(decisions: Decision[]): void {
    this.onChange?.();
    const core = this.options.core;
    for (const d of decisions) {
      const job = this.options.manager.jobs.get(d.jobId);
      if (job === undefined) continue;
      if (d.outcome === "released" || (d.outcome === "queued" && core.job(d.jobId) !== undefined)) {
        core.removeJob(d.jobId);
        continue;
      }
      const region = d.region;
      if (region === null) continue;
      const installed = core.job(d.jobId);
      if (installed === undefined) {
        const state = new JobState({
          id: d.jobId,
          mode: job.spec.mode,
          fanIn: job.spec.workers,
          window: job.spec.window ?? 128,
          offset: region.offset,
          regionSize: region.size,
          elementsPerPacket: job.spec.elementsPerPacket,
          scaleBits: job.spec.scaleBits,
          deadPeerS: job.spec.deadPeerS,
          // What an esa pool ranks the job by: the bytes its workers will send.
          ...(job.spec.mode === "atp"
            ? { totalBytes: job.spec.workers * job.spec.modelBytes * job.spec.epochs }
            : {}),
        });
        state.current.epoch = region.epoch;
        // Only the authenticated bind names a worker's address (section 15);
        // a job installed again (after it queued) keeps its bindings.
        state.bindsByControlOnly = true;
        for (const [workerId, b] of this.bindings.get(d.jobId) ?? []) {
          state.bindHost(workerId, b.port, b.host);
        }
        core.installJob(state);
      } else if (
        installed.current.offset !== region.offset ||
        installed.current.size !== region.size ||
        installed.current.epoch !== region.epoch
      ) {
        core.changeRegion(d.jobId, region.offset, region.size, region.epoch);
      }
    }
  }

  submit(
    body: JobSubmit,
    submitter: { address: string; operator: boolean } = { address: "", operator: true },
  ): { job: ManagedJob; decisions: Decision[]; credential: string } {
    if (body.class === "md" && body.deadlineS === undefined) {
      throw new HttpError(400, "badRequest", "deadlineS: an MD job needs a deadline");
    }
    if (body.mode === "atp" && this.options.hasParameterServer !== true) {
      throw new HttpError(
        400,
        "badRequest",
        "mode: an ATP job needs a parameter server, and this switch's config names none",
      );
    }
    if (body.class === "be" && body.deadlineS !== undefined) {
      throw new HttpError(400, "badRequest", "deadlineS: only MD jobs have a deadline");
    }
    const active = [...this.options.manager.jobs.values()].filter(
      (j) => j.status === "queued" || j.status === "running",
    ).length;
    const most = this.options.maxActiveJobs ?? 256;
    if (active >= most) {
      throw new HttpError(
        503,
        "tooManyJobs",
        `the switch holds ${active} queued and running jobs, its most: retry when one ends`,
      );
    }
    const perSubmitter = this.options.maxJobsPerSubmitter ?? 32;
    if (!submitter.operator) {
      const own = [...this.options.manager.jobs.values()].filter(
        (j) =>
          (j.status === "queued" || j.status === "running") &&
          this.submitters.get(j.spec.id) === submitter.address,
      ).length;
      if (own >= perSubmitter) {
        throw new HttpError(
          429,
          "tooManyJobs",
          `${submitter.address || "this submitter"} holds ${own} queued and running jobs, the most without the operator token: retry when one ends`,
        );
      }
    }
    if (this.options.core.job(body.id) !== undefined && !this.options.manager.jobs.has(body.id)) {
      throw new HttpError(409, "conflict", `job ${body.id} is a job of the switch's config`);
    }
    const now = this.options.now();
    const decisions = this.options.manager.submit(
      {
        id: body.id,
        name: body.name ?? `job-${body.id}`,
        jobClass: body.class,
        deadlineMs: body.deadlineS === undefined ? undefined : now + body.deadlineS * 1000,
        mode: body.mode,
        workers: body.workers,
        modelBytes: body.modelBytes,
        epochs: body.epochs,
        computeMs: body.computeMs,
        throughputBytesPerSecond: body.throughputMBps * 1e6,
        rttMs: body.rttMs,
        aggregators: body.aggregators,
        window: body.window,
        elementsPerPacket: body.elementsPerPacket,
        scaleBits: body.scaleBits,
        deadPeerS: body.deadPeerS,
      },
      now,
    );
    this.apply(decisions);
    this.credentials.set(body.id, randomBytes(24).toString("base64url"));
    this.submitters.set(body.id, submitter.address);
    this.purge();
    return {
      job: this.options.manager.get(body.id),
      decisions,
      credential: this.credentials.get(body.id) as string,
    };
  }

  /**
   * The southbound answer to a worker joining `jobId`: the id it asked for, or
   * the lowest one not yet joined. `localAddress` is the control plane's end
   * of the worker's connection, where a switch bound to every interface tells
   * the worker to send.
   */
  join(jobId: number, request: WorkerJoin = {}, localAddress?: string) {
    const job = this.options.manager.get(jobId);
    if (job.status !== "queued" && job.status !== "running") {
      throw new HttpError(409, "conflict", `job ${jobId} is ${job.status}`);
    }
    const workers = job.spec.workers;
    if (request.fanIn !== undefined && request.fanIn !== workers) {
      throw new HttpError(
        409,
        "conflict",
        `fanIn: job ${jobId} has ${workers} workers, this worker was started as one of ${request.fanIn}`,
      );
    }
    const joined = this.joined.get(jobId) ?? 0;
    const has = (w: number) => ((joined >>> w) & 1) === 1;
    let workerId = request.workerId;
    if (workerId === undefined) {
      workerId = 0;
      while (workerId < workers && has(workerId)) workerId++;
      if (workerId === workers) {
        throw new HttpError(409, "conflict", `all ${workers} workers of job ${jobId} have joined`);
      }
    } else if (workerId >= workers) {
      throw new HttpError(
        400,
        "badRequest",
        `workerId: job ${jobId} has ${workers} workers (ids 0 .. ${workers - 1}), got ${workerId}`,
      );
    } else if (has(workerId)) {
      throw new HttpError(
        409,
        "conflict",
        `workerId: worker ${workerId} of job ${jobId} has already joined`,
      );
    }
    this.joined.set(jobId, (joined | (1 << workerId)) >>> 0);
    this.lastJoinAt.set(jobId, this.options.now());
    return { workerId, ...this.southbound(job, localAddress) };
  }

  /**
   * Binds a joined worker's data address: from now on the switch takes that
   * worker's packets only from `address:port` (the request's source address,
   * the worker's UDP port).
   */
  bindAddress(jobId: number, workerId: number, port: number, address: string) {
    this.jobWithWorker(jobId, workerId);
    const installed = this.options.core.job(jobId);
    if (installed === undefined) {
      throw new HttpError(409, "conflict", `job ${jobId} has no region yet: bind after it has one`);
    }
    // An IPv4 peer may show as ::ffff:a.b.c.d; the data plane speaks IPv4.
    const host = address.replace(/^::ffff:/, "");
    installed.bindHost(workerId, port, host);
    const jobBindings = this.bindings.get(jobId) ?? new Map();
    jobBindings.set(workerId, { port, host });
    this.bindings.set(jobId, jobBindings);
    return { jobId, workerId, host, port };
  }

  /** Job `jobId`, if it has a worker `workerId` (404 or 400 otherwise). */
  private jobWithWorker(jobId: number, workerId: number): ManagedJob {
    const job = this.options.manager.get(jobId);
    if (workerId >= job.spec.workers) {
      throw new HttpError(
        400,
        "badRequest",
        `workerId: job ${jobId} has ${job.spec.workers} workers`,
      );
    }
    return job;
  }

  /**
   * Ends the jobs nobody else will (README.md, "Jobs always end"): one that
   * no worker joined within joinTimeoutMs of its submission is cancelled
   * ("expired"), as is one whose workers joined but sent nothing within
   * joinTimeoutMs of the last join or of its latest region, whichever came
   * later (a queued job's joined workers are never expired); a running one whose workers have all been silent (no
   * contribution, forward or keepalive from a bound address) for its
   * dead-peer time after they last were heard, with no PSN waiting (that
   * the dead-peer rule fails), is finished as unreported: its workers ended
   * without reporting done. Either way its region goes back. The switch
   * calls it about once a second.
   */
  sweep(now: number): void {
    const manager = this.options.manager;
    const joinTimeoutMs = this.options.joinTimeoutMs ?? 600_000;
    const expire = (id: number, reason: string) => {
      this.apply(manager.cancel(id, now));
      manager.get(id).reason = reason;
    };
    for (const job of [...manager.jobs.values()]) {
      if (job.status !== "queued" && job.status !== "running") continue;
      const id = job.spec.id;
      if ((this.joined.get(id) ?? 0) === 0) {
        if (joinTimeoutMs > 0 && now - job.submittedAt >= joinTimeoutMs) {
          expire(
            id,
            `expired: no worker joined within ${joinTimeoutMs / 1000} s of its submission`,
          );
        }
        continue;
      }
      const installed = this.options.core.job(id);
      if (job.status !== "running" || installed === undefined) continue;
      if (installed.counters.firstContributionAt < 0) {
        // Joined, but nothing sent yet: workers still starting, or dead
        // before their first packet; the join timeout decides, counted from
        // the later of the last join and the region: workers that joined a
        // queued job (started ahead of it) waited for the region, not idly.
        const joinedAt = Math.max(
          this.lastJoinAt.get(id) ?? job.submittedAt,
          job.history.at(-1)?.at ?? job.submittedAt,
        );
        if (joinTimeoutMs > 0 && now - joinedAt >= joinTimeoutMs) {
          expire(
            id,
            `expired: its workers joined but sent nothing within ${joinTimeoutMs / 1000} s`,
          );
        }
        continue;
      }
      const deadMs = this.options.core.deadPeerMsOf(installed);
      if (deadMs <= 0) continue;
      let lastHeard = installed.counters.lastContributionAt;
      for (let w = 0; w < installed.fanIn; w++) {
        lastHeard = Math.max(lastHeard, installed.heardAt[w]);
      }
      if (now - lastHeard < deadMs) continue;
      const done = this.done.get(id) ?? 0;
      const silent: number[] = [];
      for (let w = 0; w < job.spec.workers; w++) if (((done >>> w) & 1) === 0) silent.push(w);
      this.apply(manager.finish(id, now));
      manager.get(id).reason =
        `unreported: worker${silent.length === 1 ? "" : "s"} ${silent.join(", ")} did not report done, ` +
        `and no worker was heard for ${(deadMs / 1000).toFixed(0)} s after the last aggregation`;
    }
  }

  /** A worker finished its all-reduces; the job finishes when all have. */
  workerDone(jobId: number, workerId: number) {
    const job = this.jobWithWorker(jobId, workerId);
    const done = ((this.done.get(jobId) ?? 0) | (1 << workerId)) >>> 0;
    this.done.set(jobId, done);
    if (done === 2 ** job.spec.workers - 1 && job.status === "running") {
      this.apply(this.options.manager.finish(jobId, this.options.now()));
    }
    return view(this.options.manager.get(jobId));
  }

  southbound(job: ManagedJob, localAddress?: string) {
    const window = job.spec.window ?? 128;
    return {
      jobId: job.spec.id,
      fanIn: job.spec.workers,
      mode: job.spec.mode,
      status: job.status,
      window,
      region: job.region,
      data: this.dataAddressFor(localAddress),
    };
  }

  /** The data address a worker is told, given where it reached the control plane. */
  dataAddressFor(localAddress: string | undefined): { host: string; port: number } {
    const { host, port } = this.options.dataAddress;
    if (!WILDCARD_HOSTS.has(host)) return { host, port };
    if (localAddress === undefined) {
      throw new HttpError(
        500,
        "internal",
        `the switch binds every interface (${host}) and this request came on no known local address`,
      );
    }
    // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
    return { host: localAddress.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, ""), port };
  }
}

/** A job as the API shows it. */
/**
 * What anyone may read of a job over HTTP (GET /jobs, /jobs/ID): the rest
 * (region, deadline, progress, reason, history) only with the job's
 * credential or the operator token (runtime/http-front-thread.ts).
 */
export const PUBLIC_JOB_FIELDS = ["id", "name", "class", "mode", "workers", "status"] as const;

export function view(job: ManagedJob) {
  return {
    id: job.spec.id,
    name: job.spec.name,
    class: job.spec.jobClass,
    mode: job.spec.mode,
    workers: job.spec.workers,
    status: job.status,
    demand: job.demand,
    region: job.region,
    reason: job.reason,
    submittedAt: job.submittedAt,
    startedAt: job.startedAt,
    finishedAt: job.finishedAt,
    deadlineAt: job.spec.deadlineMs ?? null,
    deadlineFeasible: job.deadlineFeasible,
    estimatedFinishAt: job.estimatedFinishMs,
    history: job.history,
  };
}

/** One line naming each bad field: `body.workers: Too big: expected number to be <=32`. */
function describeValidation(
  context: string,
  issues: ReadonlyArray<{ instancePath?: string; message?: string }>,
): string {
  return issues
    .map((i) => {
      const path = (i.instancePath ?? "").replace(/^\//, "").replaceAll("/", ".");
      return `${context}${path ? `.${path}` : ""}: ${i.message ?? "invalid"}`;
    })
    .join("; ");
}

/** Builds the fastify app; tests use inject(), the switch process listens on a port. */
export function buildControlApp(
  control: ControlPlane,
  registry?: Registry,
  /** what the live page (GET /ui) shows besides the switch's own state: ports, job names */
  live: {
    /** the ports' records at `now` (with the queue then, and its area so far) */
    ports?: (now: number) => SwitchLinkRecord[];
    names?: ReadonlyMap<number, string>;
  } = {},
): FastifyInstance {
  const app = Fastify({ logger: false });
  // Bodies are JSON only: anything else is a 415 naming the content type to use.
  app.removeContentTypeParser("text/plain");
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler((error, _request, reply) => {
    if (hasZodFastifySchemaValidationErrors(error)) {
      const context = (error as { validationContext?: string }).validationContext ?? "request";
      return reply
        .code(400)
        .send({ code: "badRequest", message: describeValidation(context, error.validation) });
    }
    if (error instanceof HttpError) {
      return reply.code(error.statusCode).send({ code: error.code, message: error.message });
    }
    if (error instanceof ManagerError) {
      return reply
        .code(STATUS_OF_MANAGER_ERROR[error.code])
        .send({ code: error.code, message: error.message });
    }
    const status = (error as { statusCode?: number }).statusCode ?? 500;
    if (status === 415) {
      return reply.code(415).send({
        code: "unsupportedMediaType",
        message: `send the body as JSON with content-type: application/json (${(error as Error).message})`,
      });
    }
    if (status >= 400 && status < 500) {
      // fastify's own: malformed JSON, wrong content type, body too large
      return reply.code(status).send({ code: "badRequest", message: (error as Error).message });
    }
    return reply.code(500).send({ code: "internal", message: (error as Error).message });
  });
  app.setNotFoundHandler((request, reply) => {
    reply
      .code(404)
      .send({ code: "notFound", message: `no route ${request.method} ${request.url}` });
  });
  // Requests are authenticated and limited before they get here, by the HTTP
  // front's thread (runtime/http-front.ts): in-process callers are trusted.
  const api = app.withTypeProvider<ZodTypeProvider>();
  const manager = control.options.manager;

  api.get("/health", async () => ({
    status: "ok",
    policy: manager.options.policy,
    aggregators: manager.options.aggregators,
    jobs: manager.jobs.size,
    // Job times are ms on the switch's clock: this is when it read 0, and what it reads now.
    clockOrigin: control.options.clockOrigin?.toISOString() ?? null,
    clockOriginMonotonicMs: control.options.clockOriginMonotonicMs ?? null,
    clockMs: control.options.now(),
  }));

  api.post("/jobs", { schema: { body: JobSubmitSchema } }, async (request, reply) => {
    const { job, decisions, credential } = control.submit(request.body, {
      address: request.socket.remoteAddress ?? "",
      operator: control.isOperator(request.headers.authorization),
    });
    const own = decisions.find((d) => d.jobId === job.spec.id);
    if (job.status === "rejected") {
      return reply.code(503).send({ code: "noResources", message: job.reason ?? "no resources" });
    }
    return reply
      .code(job.status === "queued" ? 202 : 201)
      .send({ job: view(job), decision: own ?? null, credential });
  });

  api.get("/jobs", async () => ({ jobs: [...manager.jobs.values()].map(view) }));

  api.get("/jobs/:id", { schema: { params: JobIdParams } }, async (request) =>
    view(manager.get(request.params.id)),
  );

  // Every route that changes a job needs its credential or the operator token.
  const authorized = {
    preHandler: async (request: { params: unknown; headers: { authorization?: string } }) => {
      control.authorize((request.params as { id: number }).id, request.headers.authorization);
    },
  };

  api.delete("/jobs/:id", { schema: { params: JobIdParams }, ...authorized }, async (request) => {
    control.apply(manager.cancel(request.params.id, control.options.now()));
    return view(manager.get(request.params.id));
  });

  api.post(
    "/jobs/:id/finish",
    { schema: { params: JobIdParams }, ...authorized },
    async (request) => {
      control.apply(manager.finish(request.params.id, control.options.now()));
      return view(manager.get(request.params.id));
    },
  );

  api.post(
    "/jobs/:id/workers",
    // No body (fastify passes null): the switch picks the worker id.
    { schema: { params: JobIdParams, body: WorkerJoinSchema.nullish() }, ...authorized },
    async (request, reply) =>
      reply.code(201).send(
        control.join(
          request.params.id,
          request.body ?? {},
          // Behind the HTTP front (runtime/http-front.ts) the socket is the front's.
          request.socket.localAddress ?? headerText(request.headers[LOCAL_ADDRESS_HEADER]),
        ),
      ),
  );

  api.put(
    "/jobs/:id/workers/:workerId/address",
    { schema: { params: WorkerParams, body: WorkerAddressSchema }, ...authorized },
    async (request) =>
      control.bindAddress(
        request.params.id,
        request.params.workerId,
        request.body.port,
        request.socket.remoteAddress ?? "",
      ),
  );

  api.post(
    "/jobs/:id/workers/:workerId/done",
    { schema: { params: WorkerParams }, ...authorized },
    async (request) => control.workerDone(request.params.id, request.params.workerId),
  );

  api.get("/allocation", async () => manager.allocation());

  // The live page: itself, the vega and vega-lite builds it draws with, and its data.
  app.get("/ui", async (_request, reply) => reply.type("text/html; charset=utf-8").send(UI_PAGE));
  app.get("/ui/vega.js", async (_request, reply) =>
    reply.type("text/javascript; charset=utf-8").send(uiAssets().vega),
  );
  app.get("/ui/vega-lite.js", async (_request, reply) =>
    reply.type("text/javascript; charset=utf-8").send(uiAssets().vegaLite),
  );
  app.get("/ui/state", async () => {
    const now = control.options.now();
    return liveState(control.options.core, manager, now, live.ports?.(now) ?? [], live.names);
  });

  if (registry !== undefined) addMetricsRoute(app, registry);

  return app;
}

/** Compares two tokens in time that does not depend on where they differ. */
function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
