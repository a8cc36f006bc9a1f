import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { parentPort, workerData } from "node:worker_threads";
import {
  type CachedAnswer,
  type FrontAnswer,
  type FrontLimits,
  type FrontRequest,
  type FrontSnapshot,
  LOCAL_ADDRESS_HEADER,
  tokenHash,
} from "./http-front.js";

/**
 * The HTTP front's thread (see http-front.ts): parses requests,
 * authenticates them by the credentials the process published, limits them
 * (429), refuses bodies over 1 MiB (413), answers cached GETs itself, and
 * hands the rest to the process's own thread.
 */
const o = workerData as {
  host: string;
  port: number;
  limits: FrontLimits;
  publicJobFields: readonly string[] | null;
};
const port = parentPort;
if (port === null) throw new Error("http-front-thread runs as a worker thread");
const MAX_BODY_BYTES = 1 << 20;
/** buckets kept at most; beyond, full ones (idle long enough to refill) are forgotten */
const MAX_BUCKETS = 10_000;

/** A token bucket: `rate` per second, in bursts of as many. */
interface Bucket {
  tokens: number;
  filledAt: number;
}
const buckets = new Map<string, Bucket>();

/** Takes a token from bucket `key` (made full on first use); false: none left. */
function admit(key: string, rate: number): boolean {
  const now = performance.now();
  let bucket = buckets.get(key);
  if (bucket === undefined) {
    if (buckets.size >= MAX_BUCKETS) forgetFullBuckets(now);
    bucket = { tokens: rate, filledAt: now };
    buckets.set(key, bucket);
  }
  bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.filledAt) / 1000) * rate);
  bucket.filledAt = now;
  if (bucket.tokens < 1) return false;
  bucket.tokens -= 1;
  return true;
}

function forgetFullBuckets(now: number): void {
  for (const [key, bucket] of buckets) {
    // A bucket idle for 2 s is full again whatever its rate (>= 1/s): forgetting it changes nothing.
    if (now - bucket.filledAt > 2000) buckets.delete(key);
  }
}

/** Published by the process: credentials by hash, cached answers, /jobs parsed. */
let credentials = new Map<string, "operator" | number>();
let answers: Record<string, CachedAnswer> = {};
let jobsById = new Map<number, Record<string, unknown>>();
let jobsList: Array<Record<string, unknown>> = [];

let nextId = 1;
const waiting = new Map<number, ServerResponse>();

function send(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { "content-type": "application/json; charset=utf-8", ...headers });
  response.end(text);
}

function tooMany(response: ServerResponse, what: string, rate: number): void {
  send(
    response,
    429,
    {
      code: "tooManyRequests",
      message: `the control plane serves at most ${rate} ${what} per second: retry in a moment`,
    },
    { "retry-after": "1" },
  );
}

/** What an unauthenticated reader sees of a job. */
function publicView(job: Record<string, unknown>): Record<string, unknown> {
  if (o.publicJobFields === null) return job;
  const out: Record<string, unknown> = {};
  for (const field of o.publicJobFields) if (field in job) out[field] = job[field];
  return out;
}

/** Answers a cached GET (true), or leaves it to the process (false). */
function answerFromCache(
  response: ServerResponse,
  path: string,
  scope: "operator" | number | undefined,
): boolean {
  const sees = (id: unknown) => scope === "operator" || (scope !== undefined && scope === id);
  if (path === "/jobs" && answers["/jobs"] !== undefined) {
    send(response, 200, { jobs: jobsList.map((job) => (sees(job.id) ? job : publicView(job))) });
    return true;
  }
  const one = /^\/jobs\/(\d+)$/.exec(path);
  if (one !== null && answers["/jobs"] !== undefined) {
    const id = Number(one[1]);
    const job = jobsById.get(id);
    if (job === undefined) send(response, 404, { code: "notFound", message: `no job ${id}` });
    else send(response, 200, sees(id) ? job : publicView(job));
    return true;
  }
  const cached = answers[path];
  if (cached === undefined) return false;
  response.writeHead(cached.statusCode, cached.headers);
  response.end(Buffer.from(cached.body));
  return true;
}

const server = createServer((request: IncomingMessage, response: ServerResponse) => {
  const method = request.method ?? "GET";
  const token = /^Bearer (\S+)$/.exec(request.headers.authorization ?? "")?.[1];
  const hash = token === undefined ? undefined : tokenHash(token);
  const scope = hash === undefined ? undefined : credentials.get(hash);
  const source = request.socket.remoteAddress ?? "";
  const read = method === "GET" || method === "HEAD";
  const l = o.limits;
  if (read) {
    if (!admit(scope === undefined ? `read ${source}` : `read ${hash}`, l.readsPerSecond)) {
      request.resume();
      tooMany(response, "reads from one source", l.readsPerSecond);
      return;
    }
    const path = (request.url ?? "/").split("?")[0];
    if (method === "GET" && answerFromCache(response, path, scope)) {
      request.resume();
      return;
    }
  } else if (scope !== undefined) {
    if (!admit(`change ${hash}`, l.changesPerCredential)) {
      request.resume();
      tooMany(response, "changes per credential", l.changesPerCredential);
      return;
    }
  } else if (!admit("change anonymous", l.anonymousChangesPerSecond)) {
    request.resume();
    tooMany(response, "changes without a credential", l.anonymousChangesPerSecond);
    return;
  }
  const chunks: Buffer[] = [];
  let bytes = 0;
  request.on("data", (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes <= MAX_BODY_BYTES) chunks.push(chunk);
  });
  request.on("end", () => {
    if (bytes > MAX_BODY_BYTES) {
      send(response, 413, { code: "badRequest", message: "the body is over 1 MiB" });
      return;
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(request.headers)) {
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(", ") : value;
    }
    headers[LOCAL_ADDRESS_HEADER] = request.socket.localAddress ?? "";
    const id = nextId++;
    waiting.set(id, response);
    const message: FrontRequest = {
      id,
      method,
      url: request.url ?? "/",
      headers,
      body: Buffer.concat(chunks),
      remoteAddress: source,
    };
    port.postMessage(message);
  });
  request.on("error", () => {
    response.destroy();
  });
});

port.on("message", (message: FrontAnswer | FrontSnapshot) => {
  if ("snapshot" in message) {
    if (message.credentials !== null) credentials = new Map(message.credentials);
    answers = { ...answers, ...message.answers };
    const jobs = message.answers["/jobs"];
    if (jobs !== undefined) {
      const parsed = JSON.parse(Buffer.from(jobs.body).toString("utf8")) as {
        jobs: Array<Record<string, unknown>>;
      };
      jobsList = parsed.jobs;
      jobsById = new Map(parsed.jobs.map((job) => [Number(job.id), job]));
    }
    return;
  }
  const response = waiting.get(message.id);
  if (response === undefined) return;
  waiting.delete(message.id);
  response.writeHead(message.statusCode, message.headers);
  response.end(Buffer.from(message.body));
});

server.listen(o.port, o.host, () => {
  port.postMessage({ listening: server.address() as AddressInfo });
});
