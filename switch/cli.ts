#!/usr/bin/env node
import { z } from "zod";
import {
  cliInt,
  cpuSeconds,
  EXIT_OK,
  emitRecord,
  loadSwitchConfigFile,
  runCli,
} from "../proto/cli.js";
import { parseSwitchConfig, type SwitchConfigInput } from "../proto/config.js";
import { switchReport } from "./report.js";
import { SwitchServer } from "./server.js";

/** Used when no --config is given: one NetReduce job of 4 workers. */
export const DEFAULT_SWITCH_CONFIG: SwitchConfigInput = {
  aggregators: 256,
  elementsPerAggregator: 256,
  jobs: [{ id: 1, mode: "netreduce", fanIn: 4, offset: 0, size: 256, window: 128 }],
};

const spec = {
  command: "ina-switch",
  summary:
    "Runs the userspace UDP switch: aggregates NetReduce jobs' gradients in its aggregator array\n" +
    'and multicasts the sums. Prints {"event":"ready",...} with the bound port when it listens,\n' +
    'and {"event":"stats",...} when it stops (SIGTERM or SIGINT).',
  details:
    "The config file (JSON) lists the aggregator array, the jobs and their regions, and the fault\n" +
    "injector's rates; see README.md. Exit codes: 0 stopped cleanly, 1 failed, 2 bad option or config.",
  options: {
    config: {
      type: "string",
      valueName: "FILE",
      description: "switch config (JSON)",
      defaultText: "one 4-worker NetReduce job, id 1, 256 aggregators",
    },
    host: {
      type: "string",
      valueName: "ADDR",
      description: "address to bind",
      defaultText: "127.0.0.1",
    },
    port: {
      type: "string",
      valueName: "PORT",
      description: "UDP port to bind; 0 picks a free one",
      defaultText: "0",
    },
    "stats-interval-ms": {
      type: "string",
      valueName: "MS",
      description: "also print a stats record this often; 0 = only at exit",
      defaultText: "0",
    },
  },
  schema: z.strictObject({
    config: z.string().optional(),
    host: z.string().default("127.0.0.1"),
    port: cliInt(0, 65535).default(0),
    statsIntervalMs: cliInt(0, 3_600_000).default(0),
  }),
} as const;

await runCli(spec, async (options) => {
  const config =
    options.config === undefined
      ? parseSwitchConfig(DEFAULT_SWITCH_CONFIG)
      : await loadSwitchConfigFile(options.config);
  const server = await SwitchServer.start({ config, host: options.host, port: options.port });
  const address = server.address();
  emitRecord({
    event: "ready",
    pid: process.pid,
    dataAddress: address.address,
    dataPort: address.port,
    jobs: config.jobs,
  });
  const interval =
    options.statsIntervalMs > 0
      ? setInterval(
          () => emitRecord({ event: "stats", ...switchReport(server.core) }),
          options.statsIntervalMs,
        )
      : null;
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  if (interval !== null) clearInterval(interval);
  emitRecord({
    event: "stats",
    final: true,
    cpuSeconds: cpuSeconds(),
    socketErrors: server.socketErrors,
    ...switchReport(server.core),
  });
  await server.close();
  return EXIT_OK;
});
