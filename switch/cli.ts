#!/usr/bin/env node
import { performance } from "node:perf_hooks";
import { Registry } from "prom-client";
import { z } from "zod";
import { jobRegion, POLICIES, parseSwitchConfig, type SwitchConfigInput } from "../proto/config.js";
import { OPERATOR_TOKEN_ENV } from "../proto/control.js";
import {
  cliInt,
  loadSwitchConfigFile,
  runCli,
  SERVER_OPTIONS,
  SERVER_SCHEMA,
  UsageError,
} from "../runtime/cli.js";
import { monotonicOriginMs } from "../runtime/clock.js";
import { serveFromThread } from "../runtime/http-front.js";
import { createLinkMetrics } from "../runtime/metrics.js";
import { secretFrom } from "../runtime/secrets.js";
import { serveUntilSignal } from "../runtime/serve.js";
import { buildControlApp, ControlPlane, PUBLIC_JOB_FIELDS } from "./control.js";
import { MemoryManager } from "./memory.js";
import { createSwitchMetrics } from "./metrics.js";
import { switchReport } from "./report.js";
import { SwitchServer } from "./server.js";

/**
 * Used when no --config is given: one NetReduce job of 4 workers in the
 * first 256 aggregators, and 256 more for jobs submitted to the control plane.
 */
export const DEFAULT_SWITCH_CONFIG: SwitchConfigInput = {
  aggregators: 512,
  elementsPerAggregator: 256,
  jobs: [{ id: 1, mode: "netreduce", fanIn: 4, offset: 0, regionSize: 256, window: 128 }],
};

const spec = {
  command: "ina-switch",
  summary:
    "Runs the userspace UDP switch: aggregates NetReduce and ATP jobs' gradients in its aggregator\n" +
    "array (ATP falls back to the parameter server; PS and ring jobs are only forwarded), and\n" +
    "serves its control plane (HTTP: jobs, /metrics, the live page /ui) on --control-port. Prints\n" +
    '{"event":"ready",...} with the bound ports when it listens, and {"event":"stats",...}\n' +
    "when it stops (SIGTERM or SIGINT) and every --stats-interval-ms.",
  details:
    "The config file (JSON) lists the aggregator array, the jobs and their regions, and the fault\n" +
    "injector's rates; see README.md. With --host 0.0.0.0, a worker joining through the control\n" +
    "plane is told to send to the address it reached the control plane at.\n" +
    "Exit codes: 0 stopped cleanly, 1 failed, 2 bad option or config.",
  options: {
    config: {
      type: "string",
      valueName: "FILE",
      description: "switch config (JSON)",
      defaultText:
        "512 aggregators: one 4-worker NetReduce job, id 1, in the first 256; the rest for\n" +
        "jobs submitted to the control plane",
    },
    ...SERVER_OPTIONS,
    host: {
      ...SERVER_OPTIONS.host,
      description: "address to bind, data and control plane; 0.0.0.0: every interface",
    },
    "operator-token": {
      type: "string",
      valueName: "TOKEN",
      description:
        "the control plane's operator token: may cancel, finish, join and report for any job\n" +
        "(default: $INA_OPERATOR_TOKEN; none: only each job's own credential); visible to\n" +
        "other local users in the process list, so prefer the variable or --operator-token-file",
    },
    "operator-token-file": {
      type: "string",
      valueName: "FILE",
      description: "read the operator token from FILE (its first line) instead",
    },
    "control-rate": {
      type: "string",
      valueName: "N",
      description:
        "changes (POST, PUT, DELETE) without a known credential the control plane serves per\n" +
        "second, all sources together; beyond: 429 (a job's credential and the operator token\n" +
        "have buckets of their own, so a stranger's flood never delays a worker's requests)",
      defaultText: "100",
    },
    "control-rate-per-credential": {
      type: "string",
      valueName: "N",
      description: "changes per second per job credential, and for the operator token",
      defaultText: "20",
    },
    "read-rate": {
      type: "string",
      valueName: "N",
      description:
        "GETs per second per source address (or per credential); they are answered from a\n" +
        "snapshot the data path publishes twice a second, never by the data path itself",
      defaultText: "200",
    },
    "join-timeout-s": {
      type: "string",
      valueName: "S",
      description:
        "a control-plane job that no worker joins this long after its submission expires and frees\n" +
        "its region; 0: never",
      defaultText: "600",
    },
    "jobs-per-submitter": {
      type: "string",
      valueName: "N",
      description: "queued and running jobs one address may hold without the operator token",
      defaultText: "32",
    },
    "control-port": {
      type: "string",
      valueName: "PORT",
      description: "TCP port of the control plane (HTTP) on --host; 0 picks a free one",
      defaultText: "0",
    },
    policy: {
      type: "string",
      valueName: "NAME",
      description:
        "memory manager policy: edf, fcfs, static, shared (ATP jobs hash into the whole pool,\n" +
        "first come) or esa (shared, with ESA's preemption by priority in the data plane)",
      defaultText: "edf",
    },
    partitions: {
      type: "string",
      valueName: "N",
      description: "static policy: equal partitions of the pool",
      defaultText: "4",
    },
  },
  schema: z.strictObject({
    ...SERVER_SCHEMA,
    controlPort: cliInt(0, 65535).default(0),
    operatorToken: z.string().min(1).optional(),
    operatorTokenFile: z.string().min(1).optional(),
    controlRate: cliInt(1, 100_000).default(100),
    controlRatePerCredential: cliInt(1, 100_000).default(20),
    readRate: cliInt(1, 1_000_000).default(200),
    joinTimeoutS: z.coerce.number().min(0).max(86_400).default(600),
    jobsPerSubmitter: cliInt(1, 4096).default(32),
    policy: z.enum(POLICIES).default("edf"),
    partitions: cliInt(1, 1024).default(4),
  }),
} as const;

await runCli(spec, async (options) => {
  const config =
    options.config === undefined
      ? parseSwitchConfig(DEFAULT_SWITCH_CONFIG)
      : await loadSwitchConfigFile(options.config);
  const server = await SwitchServer.start({
    config,
    host: options.host,
    port: options.port,
    datagram: { packets: options.packetsPerDatagram, bytes: options.datagramBytes },
  });
  if (server.bufferWarning !== null) process.stderr.write(`warning: ${server.bufferWarning}\n`);
  const address = server.address();
  // The memory manager hands out what the config's own jobs leave free.
  const manager = new MemoryManager({
    aggregators: config.aggregators,
    bytesPerAggregator: config.elementsPerAggregator * 4,
    policy: options.policy,
    partitions: options.partitions,
    reserved: config.jobs.flatMap((job) => {
      const r = jobRegion(job);
      return r.size > 0 ? [[r.offset, r.size] as [number, number]] : [];
    }),
  });
  const control = new ControlPlane({
    manager,
    core: server.core,
    dataAddress: { host: address.address, port: address.port },
    now: () => performance.now(),
    clockOrigin: new Date(performance.timeOrigin),
    clockOriginMonotonicMs: monotonicOriginMs(),
    hasParameterServer: config.parameterServer !== undefined,
    operatorToken: await operatorTokenOf(options),
    joinTimeoutMs: options.joinTimeoutS * 1000,
    maxJobsPerSubmitter: options.jobsPerSubmitter,
  });
  // Jobs nobody joins, or whose workers ended without reporting done, end here.
  const sweeper = setInterval(() => control.sweep(performance.now()), 1000);
  sweeper.unref();
  const registry = new Registry();
  const names = new Map(config.jobs.flatMap((job) => (job.name ? [[job.id, job.name]] : [])));
  createSwitchMetrics(registry, server.core, manager, names, () => server.coalescer.datagramsSent);
  createLinkMetrics(registry, () =>
    (server.linkRecords() ?? []).map((record) => ({
      host: record.host,
      direction: "down",
      record,
    })),
  );
  const app = buildControlApp(control, registry, {
    ports: (now) => server.linkRecords({ now }) ?? [],
    names,
  });
  // HTTP is parsed, and floods refused, in a thread of its own: the data
  // path's event loop sees only the requests the control plane serves.
  const front = await serveFromThread(app, {
    host: options.host,
    port: options.controlPort,
    limits: {
      anonymousChangesPerSecond: options.controlRate,
      changesPerCredential: options.controlRatePerCredential,
      readsPerSecond: options.readRate,
    },
    cachedPaths: ["/health", "/jobs", "/allocation", "/ui/state", "/metrics"],
    staticPaths: ["/ui", "/ui/vega.js", "/ui/vega-lite.js"],
    credentials: () => control.credentialList(),
    publicJobFields: PUBLIC_JOB_FIELDS,
  });
  // A job the data path failed, or the sweep ended, shows at once.
  control.onChange = front.publishSoon;
  const controlPort = front.port;
  return serveUntilSignal({
    ready: {
      pid: process.pid,
      dataAddress: address.address,
      dataPort: address.port,
      controlUrl: `http://${options.host}:${controlPort}`,
      uiUrl: `http://${options.host}:${controlPort}/ui`,
      metricsUrl: `http://${options.host}:${controlPort}/metrics`,
      controlPort,
      policy: options.policy,
      jobs: config.jobs,
      datagram: server.coalescer.limits,
      socketBuffers: server.buffers,
      warnings: server.bufferWarning === null ? [] : [server.bufferWarning],
    },
    statsIntervalMs: options.statsIntervalMs,
    report: (final) => ({
      socketErrors: server.socketErrors,
      ...switchReport(server.core),
      txDatagrams: server.coalescer.datagramsSent,
      // The queue at the sample: what a port sent in an interval is what it accepted less the queue's growth.
      links: server.linkRecords({ series: final, now: performance.now() }),
    }),
    close: async () => {
      clearInterval(sweeper);
      await front.close();
      await server.close();
    },
  });
});

async function operatorTokenOf(o: {
  operatorToken?: string;
  operatorTokenFile?: string;
}): Promise<string | undefined> {
  const token = await secretFrom(
    "operator-token",
    o.operatorToken,
    o.operatorTokenFile,
    OPERATOR_TOKEN_ENV,
  );
  if (token !== undefined && token.length < 16) {
    throw new UsageError("the operator token: use at least 16 characters");
  }
  return token;
}
