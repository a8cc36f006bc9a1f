import type { AddressInfo } from "node:net";
import Fastify, { type FastifyInstance } from "fastify";
import type { Registry } from "prom-client";

/**
 * A small HTTP server with `GET /metrics` for `registry`, for processes
 * without a control plane (the PS, workers). Binds `port` (0: any free one).
 */
export async function serveMetrics(
  registry: Registry,
  host: string,
  port: number,
): Promise<{ url: string; close: () => Promise<void> }> {
  const app = Fastify({ logger: false });
  addMetricsRoute(app, registry);
  await app.listen({ host, port });
  const bound = (app.server.address() as AddressInfo).port;
  return { url: `http://${host}:${bound}/metrics`, close: () => app.close() };
}

/** `GET /metrics`: the registry in Prometheus text format. */
export function addMetricsRoute(app: FastifyInstance, registry: Registry): void {
  app.get("/metrics", async (_request, reply) => {
    reply.header("content-type", registry.contentType);
    return registry.metrics();
  });
}
