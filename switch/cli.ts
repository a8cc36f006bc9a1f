#!/usr/bin/env node
import { z } from "zod";
import {
  loadSwitchConfigFile,
  runCli,
  SERVER_OPTIONS,
  SERVER_SCHEMA,
  serveUntilSignal,
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
    "Runs the userspace UDP switch: aggregates NetReduce and ATP jobs' gradients in its aggregator\n" +
    "array (ATP falls back to the parameter server; PS jobs are only forwarded). Prints\n" +
    '{"event":"ready",...} with the bound port when it listens,\n' +
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
    ...SERVER_OPTIONS,
  },
  schema: z.strictObject(SERVER_SCHEMA),
} as const;

await runCli(spec, async (options) => {
  const config =
    options.config === undefined
      ? parseSwitchConfig(DEFAULT_SWITCH_CONFIG)
      : await loadSwitchConfigFile(options.config);
  const server = await SwitchServer.start({ config, host: options.host, port: options.port });
  const address = server.address();
  return serveUntilSignal({
    ready: {
      pid: process.pid,
      dataAddress: address.address,
      dataPort: address.port,
      jobs: config.jobs,
    },
    statsIntervalMs: options.statsIntervalMs,
    report: () => ({ socketErrors: server.socketErrors, ...switchReport(server.core) }),
    close: () => server.close(),
  });
});
