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

/**
 * Serves `app` over HTTP from a worker thread: the thread parses every
 * request and refuses, by itself, changes (POST, PUT, DELETE) beyond
 * `changesPerSecond` with 429; only what it accepts reaches this thread,
 * through `app.inject()`. So a flood of requests costs the process's own
 * event loop (the data path's) no more than the requests it serves.
 */
export async function serveFromThread(
  app: FastifyInstance,
  o: { host: string; port: number; changesPerSecond: number },
): Promise<{ port: number; close: () => Promise<void> }> {
  await app.ready();
  const thread = new Worker(new URL("./http-front-thread.js", import.meta.url), {
    workerData: o,
  });
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
      (response) => {
        const headers: Record<string, string> = {};
        for (const [name, value] of Object.entries(response.headers)) {
          if (value !== undefined && name !== "content-length" && name !== "connection") {
            headers[name] = String(value);
          }
        }
        const answer: FrontAnswer = {
          id: request.id,
          statusCode: response.statusCode,
          headers,
          body: response.rawPayload,
        };
        thread.postMessage(answer);
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
  const port = await new Promise<number>((resolve, reject) => {
    thread.once("error", reject);
    const onMessage = (message: { listening?: AddressInfo }) => {
      if (message.listening === undefined) return;
      thread.off("message", onMessage);
      resolve(message.listening.port);
    };
    thread.on("message", onMessage);
  });
  return {
    port,
    close: async () => {
      await thread.terminate();
      await app.close();
    },
  };
}
