import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { parentPort, workerData } from "node:worker_threads";
import { type FrontAnswer, type FrontRequest, LOCAL_ADDRESS_HEADER } from "./http-front.js";

/**
 * The HTTP front's thread (see http-front.ts): parses requests, answers 429
 * to changes beyond the rate and 413 to bodies over 1 MiB by itself, and
 * hands the rest to the process's own thread.
 */
const o = workerData as { host: string; port: number; changesPerSecond: number };
const port = parentPort;
if (port === null) throw new Error("http-front-thread runs as a worker thread");
const MAX_BODY_BYTES = 1 << 20;

let tokens = o.changesPerSecond;
let filledAt = performance.now();
let nextId = 1;
const waiting = new Map<number, ServerResponse>();

function send(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { "content-type": "application/json; charset=utf-8" });
  response.end(text);
}

function admitChange(): boolean {
  const now = performance.now();
  tokens = Math.min(o.changesPerSecond, tokens + ((now - filledAt) / 1000) * o.changesPerSecond);
  filledAt = now;
  if (tokens < 1) return false;
  tokens -= 1;
  return true;
}

const server = createServer((request: IncomingMessage, response: ServerResponse) => {
  const method = request.method ?? "GET";
  if (method !== "GET" && method !== "HEAD" && !admitChange()) {
    request.resume();
    send(response, 429, {
      code: "tooManyRequests",
      message: `the control plane serves at most ${o.changesPerSecond} changes per second: retry in a moment`,
    });
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
      remoteAddress: request.socket.remoteAddress ?? "",
    };
    port.postMessage(message);
  });
  request.on("error", () => {
    response.destroy();
  });
});

port.on("message", (answer: FrontAnswer) => {
  const response = waiting.get(answer.id);
  if (response === undefined) return;
  waiting.delete(answer.id);
  response.writeHead(answer.statusCode, answer.headers);
  response.end(Buffer.from(answer.body));
});

server.listen(o.port, o.host, () => {
  port.postMessage({ listening: server.address() as AddressInfo });
});
