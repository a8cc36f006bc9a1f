import { createHash } from "node:crypto";
import type { AddressInfo } from "node:net";
import { Worker } from "node:worker_threads";
import type { FastifyInstance, InjectOptions } from "fastify";

/** The header the front sets to the local address a request came in on (clients' copies are replaced). */
export const LOCAL_ADDRESS_HEADER = "x-ina-local-address";

/** A request the front hands to the process's own thread, and the answer it gets back. */
export interface FrontRequest {
  id: number;
  method: string;
  url: string;
  headers: Record<string, string>;
  body: Uint8Array;
  remoteAddress: string;
}
export interface FrontAnswer {
  id: number;
  statusCode: number;
  headers: Record<string, string>;
  body: Uint8Array;
}

/** An answer the front keeps and serves by itself: a GET's, as the process last rendered it. */
export interface CachedAnswer {
  statusCode: number;
  headers: Record<string, string>;
  body: Uint8Array;
}

/**
 * What the process publishes to its front: the answers of its cached GETs,
 * and the credentials it knows (SHA-256 of each token, and what it may see:
 * "operator", or a job's id).
 */
export interface FrontSnapshot {
  snapshot: true;
  answers: Record<string, CachedAnswer>;
  /** null: the credentials have not changed */
  credentials: Array<[string, "operator" | number]> | null;
}

/** How the front limits requests (per second, in bursts of as many). */
export interface FrontLimits {
  /** changes without a known credential, all sources together (100) */
  anonymousChangesPerSecond: number;
  /** changes per known credential: a job's own, or the operator's (20) */
  changesPerCredential: number;
  /** reads per source address, or per known credential (200) */
  readsPerSecond: number;
}

export const DEFAULT_FRONT_LIMITS: FrontLimits = {
  anonymousChangesPerSecond: 100,
  changesPerCredential: 20,
  readsPerSecond: 200,
};

/** The cached answers a change (a write, a job ending) moves: published again at once. */
const CHANGED_BY_WRITES = new Set(["/jobs", "/allocation", "/health"]);

/** SHA-256 of a bearer token: the front compares hashes, never holds a token. */
export function tokenHash(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/**
 * Serves `app` over HTTP from a worker thread, so that the process's own
 * event loop (the data path's) never waits for HTTP:
 *
 * - GETs of `cachedPaths` (and `/jobs/ID`, cut from `/jobs`) are answered by
 *   the thread from the answers the process publishes every
 *   `publishEveryMs`: a flood of reads costs the data path nothing.
 * - The thread authenticates: a request whose bearer token is a credential
 *   the process published is limited per credential; any other by its
 *   source address (reads) or, for changes, in one anonymous bucket; so a
 *   stranger's requests, accepted or refused, never delay a worker's join,
 *   bind or done. Beyond a limit: 429 with Retry-After, from the thread.
 * - Only admitted requests, and reads of other paths, reach the process,
 *   through `app.inject()`.
 */
export async function serveFromThread(
  app: FastifyInstance,
  o: {
    host: string;
    port: number;
    limits?: Partial<FrontLimits>;
    /** GET paths the thread answers from the published answers */
    cachedPaths?: readonly string[];
    /** GET paths whose answers never change (a page and its scripts): published once */
    staticPaths?: readonly string[];
    /** how often the process renders them anew (ms; 500) */
    publishEveryMs?: number;
    /** the credentials the thread may know: tokens, and what each may see */
    credentials?: () => Array<[string, "operator" | number]>;
    /**
     * which parts of a cached `/jobs` answer an unauthenticated reader sees
     * (every field: undefined)
     */
    publicJobFields?: readonly string[];
  },
): Promise<{
  port: number;
  close: () => Promise<void>;
  /** renders and sends every cached answer now */
  publish: () => Promise<void>;
  /** sends /jobs, /allocation, /health and the credentials again once this turn is over (a job changed) */
  publishSoon: () => void;
}> {
  await app.ready();
  const limits = { ...DEFAULT_FRONT_LIMITS, ...o.limits };
  const thread = new Worker(new URL("./http-front-thread.js", import.meta.url), {
    workerData: { host: o.host, port: o.port, limits, publicJobFields: o.publicJobFields ?? null },
  });
  const answerOf = (id: number, response: Awaited<ReturnType<FastifyInstance["inject"]>>) => {
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(response.headers)) {
      if (value !== undefined && name !== "content-length" && name !== "connection") {
        headers[name] = String(value);
      }
    }
    return { id, statusCode: response.statusCode, headers, body: response.rawPayload };
  };
  thread.on("message", (message: FrontRequest | { listening: AddressInfo }) => {
    if ("listening" in message) return;
    const request = message;
    const options: InjectOptions = {
      method: request.method as InjectOptions["method"],
      url: request.url,
      headers: request.headers,
      remoteAddress: request.remoteAddress,
      ...(request.body.length > 0 ? { payload: Buffer.from(request.body) } : {}),
    };
    void app.inject(options).then(
      async (response) => {
        // A change may have made a credential or moved a job: the thread has
        // them before the answer, so a client's next GET sees its change.
        if (request.method !== "GET" && request.method !== "HEAD") await publish(false);
        thread.postMessage(answerOf(request.id, response) satisfies FrontAnswer);
      },
      (error: Error) => {
        const body = Buffer.from(JSON.stringify({ code: "internal", message: error.message }));
        thread.postMessage({
          id: request.id,
          statusCode: 500,
          headers: { "content-type": "application/json" },
          body,
        } satisfies FrontAnswer);
      },
    );
  });
  let lastCredentials = "";
  let staticPublished = false;
  /** Renders the cached GETs (all: every path; else those a change moves) and the credentials, for the thread. */
  const publish = async (all: boolean): Promise<void> => {
    const answers: Record<string, CachedAnswer> = {};
    const statics = staticPublished ? [] : (o.staticPaths ?? []);
    staticPublished = true;
    for (const path of [...(o.cachedPaths ?? []), ...statics]) {
      if (!all && !CHANGED_BY_WRITES.has(path)) continue;
      const response = await app.inject({ method: "GET", url: path });
      const { statusCode, headers, body } = answerOf(0, response);
      answers[path] = { statusCode, headers, body };
    }
    const credentials = (o.credentials?.() ?? []).map(
      ([token, scope]): [string, "operator" | number] => [tokenHash(token), scope],
    );
    const key = credentials.map(([h, s]) => `${h}:${s}`).join(",");
    const changed = key !== lastCredentials;
    lastCredentials = key;
    thread.postMessage({
      snapshot: true,
      answers,
      credentials: changed ? credentials : null,
    } satisfies FrontSnapshot);
  };
  const port = await new Promise<number>((resolve, reject) => {
    thread.once("error", reject);
    const onMessage = (message: { listening?: AddressInfo }) => {
      if (message.listening === undefined) return;
      thread.off("message", onMessage);
      resolve(message.listening.port);
    };
    thread.on("message", onMessage);
  });
  await publish(true);
  let publishing = false;
  const publisher = setInterval(() => {
    if (publishing) return;
    publishing = true;
    void publish(true).finally(() => {
      publishing = false;
    });
  }, o.publishEveryMs ?? 500);
  publisher.unref();
  let soon = false;
  return {
    port,
    publish: () => publish(true),
    publishSoon: () => {
      if (soon) return;
      soon = true;
      setImmediate(() => {
        soon = false;
        void publish(false);
      });
    },
    close: async () => {
      clearInterval(publisher);
      await thread.terminate();
      await app.close();
    },
  };
}
