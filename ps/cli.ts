#!/usr/bin/env node
import { createInterface } from "node:readline";
import { Registry } from "prom-client";
import { z } from "zod";
import { parseSwitchConfig, type SwitchConfigInput } from "../proto/config.js";
import { hostNicParams, linkParamsFor } from "../proto/links.js";
import {
  cliInt,
  loadSwitchConfigFile,
  parseHostPort,
  runCli,
  SERVER_OPTIONS,
  SERVER_SCHEMA,
} from "../runtime/cli.js";
import { serveMetrics } from "../runtime/http.js";
import { createLinkMetrics } from "../runtime/metrics.js";
import { serveUntilSignal } from "../runtime/serve.js";
import { createPsMetrics } from "./metrics.js";
import { psReport } from "./report.js";
import { PsServer } from "./server.js";

/** Used when no --config is given: one 4-worker ATP job (id 1). */
export const DEFAULT_PS_CONFIG: SwitchConfigInput = {
  aggregators: 256,
  elementsPerAggregator: 256,
  parameterServer: { host: "127.0.0.1", port: 1 },
  jobs: [{ id: 1, mode: "atp", fanIn: 4, offset: 0, regionSize: 256, window: 128 }],
};

const spec = {
  command: "ina-ps",
  summary:
    "Runs the parameter server: completes the aggregations of ATP jobs (collisions, evicted\n" +
    "partials, full aggregates from the switch) and of PS-mode jobs (every contribution), and\n" +
    'acks each PSN back through the switch. Prints {"event":"ready",...} with the bound port,\n' +
    'and {"event":"stats",...} when it stops (SIGTERM or SIGINT).',
  details:
    'It reads the same config file as ina-switch and serves its "atp" and "ps" jobs; the\n' +
    "parameterServer field there is for the switch and is not needed here. Exit codes: 0 stopped\n" +
    "cleanly, 1 failed, 2 bad option or config.",
  options: {
    config: {
      type: "string",
      valueName: "FILE",
      description: "switch config (JSON); its atp and ps jobs are served",
      defaultText: "one 4-worker ATP job, id 1",
    },
    ...SERVER_OPTIONS,
    "metrics-port": {
      type: "string",
      valueName: "PORT",
      description: "TCP port of GET /metrics (Prometheus) on --host; 0 picks a free one",
      defaultText: "0",
    },
    switch: {
      type: "string",
      valueName: "HOST:PORT",
      description:
        "take pieces only from the switch at this address (default: the source of the first\n" +
        "accepted piece, trust on first use); 'stdin': from the address a line 'switch HOST:PORT'\n" +
        "on standard input names, dropping every piece until it comes (a PS started before its\n" +
        "switch, as ina-experiment does)",
    },
    "adopt-window": {
      type: "string",
      valueName: "W",
      description:
        "also serve jobs the config does not list (submitted to the control plane), assuming\n" +
        "their workers keep at most W packets in flight; 0 drops their packets",
      defaultText: "0",
    },
  },
  schema: z.strictObject({
    ...SERVER_SCHEMA,
    adoptWindow: cliInt(0, 1 << 16).default(0),
    switch: z.string().optional(),
    metricsPort: cliInt(0, 65535).default(0),
  }),
} as const;

await runCli(spec, async (options) => {
  const config =
    options.config === undefined
      ? parseSwitchConfig(DEFAULT_PS_CONFIG)
      : await loadSwitchConfigFile(options.config, { forParameterServer: true });
  const server = await PsServer.start({
    jobs: config.jobs,
    elementsPerAggregator: config.elementsPerAggregator,
    host: options.host,
    port: options.port,
    adoptWindow: options.adoptWindow,
    link: config.links === undefined ? undefined : hostNicParams(linkParamsFor(config.links, "ps")),
    datagram: { packets: options.packetsPerDatagram, bytes: options.datagramBytes },
  });
  const address = server.address();
  if (options.switch === "stdin") {
    server.core.awaitSwitch();
    const lines = createInterface({ input: process.stdin });
    lines.on("line", (line) => {
      const named = /^switch (\S+)$/.exec(line.trim());
      if (named === null) {
        process.stderr.write(
          `ina-ps: stdin: expected "switch HOST:PORT", got ${JSON.stringify(line)}\n`,
        );
        return;
      }
      try {
        const trusted = parseHostPort(named[1], "switch");
        server.core.trustSwitch(trusted.port, trusted.host);
        lines.close();
      } catch (error) {
        process.stderr.write(`ina-ps: stdin: ${(error as Error).message}\n`);
      }
    });
  } else if (options.switch !== undefined) {
    const trusted = parseHostPort(options.switch, "--switch");
    server.core.trustSwitch(trusted.port, trusted.host);
  }
  const registry = new Registry();
  createPsMetrics(registry, server.core);
  createLinkMetrics(registry, () =>
    server.nic === null ? [] : [{ host: "switch", direction: "up", record: server.nic.record() }],
  );
  const metrics = await serveMetrics(registry, options.host, options.metricsPort);
  return serveUntilSignal({
    ready: {
      pid: process.pid,
      dataAddress: address.address,
      dataPort: address.port,
      metricsUrl: metrics.url,
      jobs: server.core.jobs.map((job) => ({ id: job.id, mode: job.mode, fanIn: job.fanIn })),
      datagram: server.coalescer.limits,
      socketBuffers: server.buffers,
    },
    statsIntervalMs: options.statsIntervalMs,
    report: (final) => ({
      socketErrors: server.socketErrors,
      ...psReport(server.core),
      txDatagrams: server.coalescer.datagramsSent,
      link: server.nic?.record({ series: final }),
    }),
    close: async () => {
      await metrics.close();
      await server.close();
    },
  });
});
