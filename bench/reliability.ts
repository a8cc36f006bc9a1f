#!/usr/bin/env node
import { createSocket, type Socket } from "node:dgram";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { z } from "zod";
import type { RunResult } from "../experiment/results.js";
import { encodeHeader } from "../proto/codec.js";
import { bearer } from "../proto/control.js";
import { Prng } from "../proto/prng.js";
import {
  PsReadySchema,
  SwitchReadySchema,
  WorkerProgressSchema,
  WorkerReadySchema,
  WorkerResultSchema,
} from "../proto/records.js";
import { ScenarioRunSchema } from "../proto/scenario.js";
import { emptyHeader, HEADER_BYTES, PacketType, WORKER_ID_NONE } from "../proto/wire.js";
import { ChildNode } from "../runner/processes.js";
import { runScenarioRun, SCRIPTS } from "../runner/run.js";
import { cliInt, EXIT_FAILED, EXIT_OK, emitRecord, runCli } from "../runtime/cli.js";

/**
 * The reliability suite: long, not part of `npm test`. Real processes on
 * 127.0.0.1 under attack and failure, each check reporting its figures:
 *
 * - junk: seeded random datagrams at the switch's and the PS's ports while a
 *   NetReduce job and an ATP job run; every job must stay exact;
 * - attacks from a stranger's socket during the same run: contributions and
 *   forwards claiming a running worker, pieces injected at the PS; each must
 *   be refused (counted as wrongSource) and the victims exact;
 * - kills (SIGKILL) of a worker, the PS and the switch mid-job: how long
 *   until the survivors fail with a clear reason;
 * - the control plane: seeded random requests (no 5xx allowed) and a job's
 *   time alone and under a flood of submissions;
 * - a soak at 5 % loss, duplication and reordering each way: every mode exact.
 */

/** The suite's steps, in the order they run; --only names some of them. */
const STEPS = [
  "junk and attacks",
  "kill a worker",
  "kill the PS",
  "kill the switch",
  "control plane",
  "control-plane jobs",
  "control-plane floods",
  "pool poisoning",
  "fault soak",
] as const;

const spec = {
  command: "npm run reliability --",
  summary:
    "Runs the reliability suite (attacks, junk, kills, control-plane fuzz and flood, fault soak).",
  options: {
    junk: {
      type: "string",
      valueName: "N",
      description: "junk datagrams in all, half at the switch, half at the PS",
      defaultText: "1000000",
    },
    seed: {
      type: "string",
      valueName: "N",
      description: "seed of every random choice",
      defaultText: "1",
    },
    json: { type: "boolean", description: "print the results as one JSON record" },
    only: {
      type: "string",
      valueName: "STEPS",
      description:
        "comma-separated steps to run: junk and attacks, kill a worker, kill the PS, kill the\n" +
        "switch, control plane, control-plane jobs, control-plane floods, pool poisoning, fault soak\n" +
        '(quoted: --only "kill a worker,fault soak")',
      defaultText: "all",
    },
  },
  details: "Exit codes: 0 every check ok, 1 one failed, 2 bad option.",
  schema: z.strictObject({
    only: z
      .string()
      .transform((s) => s.split(",").map((x) => x.trim()))
      .superRefine((names, ctx) => {
        // A misspelt step would otherwise run nothing and pass.
        for (const name of names) {
          if (!(STEPS as readonly string[]).includes(name)) {
            ctx.addIssue({
              code: "custom",
              message: `no step named "${name}"; steps: ${STEPS.join(", ")}`,
            });
          }
        }
      })
      .optional(),
    junk: cliInt(0, 100_000_000).default(1_000_000),
    seed: cliInt(0, 0xffffffff).default(1),
    json: z.boolean().default(false),
  }),
} as const;

interface Row {
  check: string;
  figure: string;
  ok: boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const HOST = "127.0.0.1";
/** How long a process may take to say it is ready: generous, for a host at load 40. */
const STARTUP_MS = 120_000;

function openSocket(): Promise<Socket> {
  const socket = createSocket("udp4");
  return new Promise((resolve) => socket.bind(0, HOST, () => resolve(socket)));
}

function header(fields: Partial<ReturnType<typeof emptyHeader>>, values = 1): Buffer {
  const buf = Buffer.alloc(HEADER_BYTES + 4 * values);
  encodeHeader(new DataView(buf.buffer, buf.byteOffset, buf.length), 0, {
    ...emptyHeader(),
    elementCount: values,
    ...fields,
  });
  return buf;
}

const switchDrops = (r: RunResult) => ("drops" in r.switch ? r.switch.drops : {});

/** Junk and attacks at a live NetReduce + ATP run. */
async function underFire(seed: number, junk: number): Promise<Row[]> {
  const prng = new Prng(seed);
  const stranger = await openSocket();
  let stop = false;
  const sent = { junk: 0, spoofed: 0, hijack: 0, injected: 0 };
  let firing: Promise<void> = Promise.resolve();
  const run = ScenarioRunSchema.parse({
    name: "under-fire",
    aggregators: 96,
    jobs: [
      { name: "nr", mode: "netreduce", workers: 3, tensorBytes: "32MiB", window: 16, id: 1 },
      { name: "atp", mode: "atp", workers: 2, tensorBytes: "32MiB", window: 16, id: 2 },
    ],
  });
  const started = performance.now();
  const result = await runScenarioRun(run, {
    seed,
    timeoutMs: 600_000,
    onRunning: ({ switchPort, psPort }) => {
      firing = (async () => {
        let i = 0;
        while (!stop && sent.junk < junk) {
          // A burst per turn, then yield: the processes under test need the CPU too.
          for (let k = 0; k < 1000 && sent.junk < junk; k++, i++) {
            const bytes = Buffer.alloc(prng.nextUint32() % 300);
            for (let b = 0; b < bytes.length; b++) bytes[b] = prng.nextUint32() & 0xff;
            stranger.send(bytes, (i & 1) === 0 || psPort === null ? switchPort : psPort, HOST);
            sent.junk++;
          }
          // Well-formed lies: worker 0 of the NetReduce job, a forward as it, a piece at the PS.
          const psn = prng.nextUint32() % 4096;
          stranger.send(
            header({
              type: PacketType.contribution,
              jobId: 1,
              workerId: 0,
              fanIn: 3,
              psn,
              aggregatorIndex: psn % 32,
              bitmap: 1,
              scaleBits: 20,
            }),
            switchPort,
            HOST,
          );
          sent.spoofed++;
          stranger.send(
            header({ type: PacketType.forward, jobId: 1, workerId: 0, fanIn: 3, destination: 1 }),
            switchPort,
            HOST,
          );
          sent.hijack++;
          if (psPort !== null) {
            stranger.send(
              header({
                type: PacketType.contribution,
                jobId: 2,
                workerId: WORKER_ID_NONE,
                fanIn: 2,
                psn,
                bitmap: 3,
                scaleBits: 20,
              }),
              psPort,
              HOST,
            );
            sent.injected++;
          }
          await sleep(1);
        }
      })();
    },
  });
  stop = true;
  await firing;
  stranger.close();
  const seconds = (performance.now() - started) / 1000;
  const drops = switchDrops(result);
  const psDrops = result.ps?.drops ?? {};
  return [
    {
      check: "junk at the switch and PS during a NetReduce and an ATP job",
      figure: `${sent.junk} datagrams in ${seconds.toFixed(1)} s; jobs ${result.jobs.map((j) => `${j.name} ${j.verified ? "exact" : "WRONG"} in ${j.seconds.toFixed(1)} s`).join(", ")}`,
      ok: result.verified,
    },
    {
      check: "spoofed contributions and forwards claiming a running worker",
      figure: `${sent.spoofed + sent.hijack} sent, ${drops.wrongSource ?? 0} refused as wrongSource at the switch`,
      ok: result.verified && (drops.wrongSource ?? 0) > 0,
    },
    {
      check: "pieces injected at the PS by a stranger",
      figure: `${sent.injected} sent, ${psDrops.wrongSource ?? 0} refused as wrongSource at the PS`,
      ok: result.verified && (psDrops.wrongSource ?? 0) > 0,
    },
  ];
}

/** Starts a switch (and PS) on a config file and `workers` workers of job 1; the workers wait for "go". */
async function startJob(
  dir: string,
  mode: "netreduce" | "atp",
  workers: number,
  children: ChildNode[],
): Promise<{ sw: ChildNode; ps: ChildNode | null; workers: ChildNode[] }> {
  const config: Record<string, unknown> = {
    aggregators: 64,
    deadPeerS: 2,
    jobs: [{ id: 1, mode, fanIn: workers, offset: 0, regionSize: 32, window: 16 }],
  };
  let ps: ChildNode | null = null;
  if (mode === "atp") {
    await writeFile(join(dir, "ps.json"), JSON.stringify(config));
    ps = new ChildNode("ps", SCRIPTS.ps, ["--config", join(dir, "ps.json"), "--switch", "stdin"]);
    children.push(ps);
    const ready = await ps.waitFor(PsReadySchema, STARTUP_MS);
    config.parameterServer = { host: HOST, port: ready.dataPort };
  }
  await writeFile(join(dir, "switch.json"), JSON.stringify(config));
  const sw = new ChildNode("switch", SCRIPTS.switch, ["--config", join(dir, "switch.json")]);
  children.push(sw);
  const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
  ps?.send(`switch ${HOST}:${ready.dataPort}`);
  const list = Array.from({ length: workers }, (_, w) => {
    const child = new ChildNode(`worker ${w}`, SCRIPTS.worker, [
      ...["--switch", `${HOST}:${ready.dataPort}`, "--mode", mode, "--worker", String(w)],
      ...["--fan-in", String(workers), "--region-size", "32", "--window", "16"],
      ...["--tensor-bytes", "8MiB", "--link-rate", "10Mbps", "--wait-go", "--progress-ms", "100"],
    ]);
    children.push(child);
    return child;
  });
  for (const w of list) await w.waitFor(WorkerReadySchema, STARTUP_MS);
  for (const w of list) w.send("go");
  // Dead once it is part of the job: wait for a first result.
  for (let i = 0; i < 500; i++) {
    if (list.every((w) => (w.recordsOf(WorkerProgressSchema).at(-1)?.completedPackets ?? 0) > 0))
      break;
    await sleep(20);
  }
  return { sw, ps, workers: list };
}

/**
 * A tenant poisoning a shared ATP pool: job 2 shares job 1's slice of 64
 * aggregators, and its "worker 0" (a raw socket, bound on first use) sends
 * far-ahead PSNs as fast as it can, each claiming an aggregator that never
 * completes. The switch drops them: beyond the window of what it has seen
 * acked for job 2 (windowViolation). The victim's time alone and under
 * the attack, with the default quota (each job's fair share: 32) and with
 * the whole pool (`quota` 64 for both: the old default).
 */
async function poisonedPool(seed: number): Promise<Row> {
  const once = async (attack: boolean, quota: number | undefined) => {
    const dir = await mkdtemp(join(tmpdir(), "ina-reliability-"));
    const children: ChildNode[] = [];
    const attacker = await openSocket();
    let stop = false;
    let sent = 0;
    try {
      const slice = {
        offset: 0,
        regionSize: 64,
        window: 16,
        ...(quota === undefined ? {} : { quota }),
      };
      const config: Record<string, unknown> = {
        aggregators: 64,
        jobs: [
          { id: 1, mode: "atp", fanIn: 2, ...slice },
          { id: 2, mode: "atp", fanIn: 2, ...slice },
        ],
      };
      await writeFile(join(dir, "ps.json"), JSON.stringify(config));
      const ps = new ChildNode("ps", SCRIPTS.ps, [
        "--config",
        join(dir, "ps.json"),
        "--switch",
        "stdin",
      ]);
      children.push(ps);
      config.parameterServer = {
        host: HOST,
        port: (await ps.waitFor(PsReadySchema, STARTUP_MS)).dataPort,
      };
      await writeFile(join(dir, "switch.json"), JSON.stringify(config));
      const sw = new ChildNode("switch", SCRIPTS.switch, ["--config", join(dir, "switch.json")]);
      children.push(sw);
      const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
      ps.send(`switch ${HOST}:${ready.dataPort}`);
      const workers = [0, 1].map((w) => {
        const child = new ChildNode(`victim ${w}`, SCRIPTS.worker, [
          ...["--switch", `${HOST}:${ready.dataPort}`, "--mode", "atp", "--worker", String(w)],
          ...["--fan-in", "2", "--region-size", "64", "--window", "16", "--job", "1"],
          ...["--tensor-bytes", "4MiB", "--seed", String(seed), "--wait-go", "--progress-ms", "0"],
        ]);
        children.push(child);
        return child;
      });
      for (const w of workers) await w.waitFor(WorkerReadySchema, STARTUP_MS);
      const flooding = (async () => {
        let psn = 1 << 20;
        while (attack && !stop) {
          // About 10 000 a second: a misbehaving tenant, not a denial of the host's CPU.
          for (let k = 0; k < 10; k++, psn++) {
            attacker.send(
              header({
                type: PacketType.contribution,
                jobId: 2,
                workerId: 0,
                fanIn: 2,
                psn,
                aggregatorIndex: psn % 64,
                bitmap: 1,
                scaleBits: 20,
              }),
              ready.dataPort,
              HOST,
            );
            sent++;
          }
          await sleep(1);
        }
      })();
      for (const w of workers) w.send("go");
      const results = await Promise.all(workers.map((w) => w.waitFor(WorkerResultSchema, 300_000)));
      stop = true;
      await flooding;
      return {
        seconds: Math.max(...results.map((r) => r.seconds)),
        verified: results.every((r) => r.verified),
        sent,
      };
    } finally {
      stop = true;
      attacker.close();
      await Promise.all(children.map((c) => c.stop()));
      await rm(dir, { recursive: true, force: true });
    }
  };
  const alone = await once(false, undefined);
  const fair = await once(true, undefined);
  const whole = await once(true, 64);
  const slowdown = fair.seconds / alone.seconds;
  return {
    check: "a tenant flooding far-ahead PSNs into a shared ATP pool",
    figure:
      `victim ${alone.seconds.toFixed(2)} s alone; under the flood ${fair.seconds.toFixed(2)} s (x${slowdown.toFixed(2)}) with the default fair-share quota, ` +
      `${whole.seconds.toFixed(2)} s (x${(whole.seconds / alone.seconds).toFixed(2)}) with the whole pool as quota; ${fair.sent} attack packets`,
    // Half the pool is the victim's whatever the attacker does: it slows, it never stalls.
    ok: alone.verified && fair.verified && whole.verified && slowdown < 3,
  };
}

/** How long survivors take to fail, with what message, after `victim` is killed. */
async function kill(
  what: "worker" | "PS" | "switch",
  mode: "netreduce" | "atp",
  expect: RegExp,
): Promise<Row> {
  const dir = await mkdtemp(join(tmpdir(), "ina-reliability-"));
  const children: ChildNode[] = [];
  try {
    const { sw, ps, workers } = await startJob(dir, mode, 3, children);
    const victim = what === "worker" ? workers[2] : what === "PS" ? ps : sw;
    const survivors = what === "worker" ? workers.slice(0, 2) : workers;
    const killedAt = performance.now();
    victim?.child.kill("SIGKILL");
    let seconds = Number.NaN;
    let message = "";
    const outcomes = await Promise.all(
      survivors.map(async (w) => {
        for (;;) {
          if (expect.test(w.stderr)) return { at: performance.now(), text: w.stderr };
          if (w.exitCode !== null) return { at: performance.now(), text: w.stderr };
          if (performance.now() - killedAt > 120_000) return { at: Number.NaN, text: w.stderr };
          await sleep(20);
        }
      }),
    );
    seconds = Math.max(...outcomes.map((o) => o.at - killedAt)) / 1000;
    message = (
      expect.exec(outcomes[0].text)?.[0] ??
      outcomes[0].text.trim().split("\n").at(-1) ??
      ""
    ).slice(0, 110);
    const ok = outcomes.every((o) => expect.test(o.text));
    return {
      check: `kill -9 the ${what} of a ${mode} job`,
      figure: `survivors said so in ${seconds.toFixed(1)} s: "${message}"`,
      ok,
    };
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

/** Seeded random control-plane requests (no 5xx), then a job's time alone and under a submit flood. */
async function controlPlane(seed: number): Promise<Row[]> {
  const prng = new Prng(seed ^ 0xc0de);
  const children: ChildNode[] = [];
  try {
    const sw = new ChildNode("switch", SCRIPTS.switch, ["--control-rate", "100000"]);
    children.push(sw);
    const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    const url = ready.controlUrl;
    const pick = <T>(list: readonly T[]) => list[prng.nextUint32() % list.length];
    const values = [0, -1, 1, 2, 32, 33, 65535, 1e12, "x", null, true, [], {}, "9".repeat(40)];
    let fiveHundreds = 0;
    const requests = 2000;
    for (let i = 0; i < requests; i++) {
      const body: Record<string, unknown> = {};
      for (const key of [
        "id",
        "class",
        "mode",
        "workers",
        "modelBytes",
        "deadlineS",
        "window",
        "aggregators",
        "port",
        "workerId",
        "fanIn",
        "extra",
      ]) {
        if (prng.nextUint32() % 2 === 0) body[key] = pick(values);
      }
      const method = pick(["GET", "POST", "PUT", "DELETE"] as const);
      const path = pick([
        "/jobs",
        `/jobs/${pick(values)}`,
        `/jobs/1/workers`,
        `/jobs/1/workers/0/address`,
        `/jobs/1/workers/0/done`,
        "/jobs/1/finish",
        "/allocation",
        "/nowhere",
      ]);
      const response = await fetch(`${url}${path}`, {
        method,
        headers: {
          "content-type": pick(["application/json", "text/plain"]),
          authorization: pick([bearer("guess"), "", "Bearer"]),
        },
        ...(method === "GET"
          ? {}
          : { body: prng.nextUint32() % 5 === 0 ? "{not json" : JSON.stringify(body) }),
      });
      if (response.status >= 500) fiveHundreds++;
      await response.arrayBuffer();
    }
    await sw.stop();
    return [
      {
        check: "seeded random control-plane requests",
        figure: `${requests} requests, ${fiveHundreds} answered 5xx`,
        ok: fiveHundreds === 0,
      },
    ];
  } finally {
    await Promise.all(children.map((c) => c.stop()));
  }
}

/**
 * The data path under a flood of its own control plane (issue: the data path
 * never waits for HTTP). A 4 x 16 MiB NetReduce job of the default switch,
 * its switch flooded with GETs (/metrics, /ui/state, /jobs) or POSTs
 * (anonymous submissions), against the same flood aimed at another switch
 * process (the host's own cost), interleaved, the median of 3 each.
 */
async function floods(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const kind of ["GET", "POST"] as const) {
    const elsewhere: number[] = [];
    const own: number[] = [];
    let refused = 0;
    let sent = 0;
    for (let i = 0; i < 3; i++) {
      elsewhere.push((await floodedJob("elsewhere", kind)).seconds);
      const r = await floodedJob("switch", kind);
      own.push(r.seconds);
      refused += r.refused;
      sent += r.sent;
    }
    const median = (v: number[]) => [...v].sort((x, y) => x - y)[1];
    const ratio = median(own) / median(elsewhere);
    rows.push({
      check: `a NetReduce job while its own switch is flooded with ${kind}s`,
      figure:
        `${median(own).toFixed(2)} s (${own.map((x) => x.toFixed(2)).join(", ")}) against ${median(elsewhere).toFixed(2)} s ` +
        `(${elsewhere.map((x) => x.toFixed(2)).join(", ")}) with the flood at another process: x${ratio.toFixed(2)}; ` +
        `${sent} requests, ${refused} answered 429`,
      ok: ratio <= 1.3,
    });
  }
  return rows;
}

/** The default switch's job 1 (4 workers x 16 MiB), while a flood of `kind` requests hits its switch or another. */
async function floodedJob(
  target: "switch" | "elsewhere",
  kind: "GET" | "POST",
): Promise<{ seconds: number; sent: number; refused: number }> {
  const children: ChildNode[] = [];
  let stop = false;
  let sent = 0;
  let refused = 0;
  try {
    const sw = new ChildNode("switch", SCRIPTS.switch, []);
    children.push(sw);
    const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    let url = ready.controlUrl;
    if (target === "elsewhere") {
      const other = new ChildNode("other switch", SCRIPTS.switch, []);
      children.push(other);
      url = (await other.waitFor(SwitchReadySchema, STARTUP_MS)).controlUrl;
    }
    const workers = [0, 1, 2, 3].map((w) => {
      const child = new ChildNode(`worker ${w}`, SCRIPTS.worker, [
        ...["--switch", `${HOST}:${ready.dataPort}`, "--worker", String(w), "--fan-in", "4"],
        ...["--tensor-bytes", "16MiB", "--wait-go", "--progress-ms", "0"],
      ]);
      children.push(child);
      return child;
    });
    for (const w of workers) await w.waitFor(WorkerReadySchema, STARTUP_MS);
    const paths = ["/metrics", "/ui/state", "/jobs"];
    const flooding = (async () => {
      let id = 1000;
      while (!stop) {
        const batch = Array.from({ length: 20 }, (_, k) =>
          (kind === "GET"
            ? fetch(`${url}${paths[k % paths.length]}`)
            : fetch(`${url}/jobs`, {
                method: "POST",
                headers: { "content-type": "application/json" },
                body: JSON.stringify({
                  id: id++ % 60000,
                  class: "be",
                  mode: "netreduce",
                  workers: 2,
                  modelBytes: 1024,
                  aggregators: 2,
                }),
              })
          ).then(
            async (r) => {
              sent++;
              if (r.status === 429) refused++;
              await r.arrayBuffer();
            },
            () => {},
          ),
        );
        await Promise.all(batch);
      }
    })();
    for (const w of workers) w.send("go");
    const results = await Promise.all(workers.map((w) => w.waitFor(WorkerResultSchema, 300_000)));
    stop = true;
    await flooding;
    return { seconds: Math.max(...results.map((r) => r.seconds)), sent, refused };
  } finally {
    stop = true;
    await Promise.all(children.map((c) => c.stop()));
  }
}

/**
 * Control-plane jobs as a stranger meets them: the pre-bind window
 * (contributions before the workers bind), squatting (submissions without
 * the operator token), a flood of refused requests against a worker's
 * done, and a job whose workers never report done.
 */
async function controlPlaneJobs(): Promise<Row[]> {
  const children: ChildNode[] = [];
  const stranger = await openSocket();
  try {
    const sw = new ChildNode("switch", SCRIPTS.switch, [
      ...["--join-timeout-s", "3", "--jobs-per-submitter", "8"],
    ]);
    children.push(sw);
    const ready = await sw.waitFor(SwitchReadySchema, STARTUP_MS);
    const url = ready.controlUrl;
    const submit = async (id: number, extra: Record<string, unknown> = {}) => {
      const r = await fetch(`${url}/jobs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          id,
          class: "be",
          mode: "netreduce",
          workers: 2,
          modelBytes: 1 << 20,
          aggregators: 16,
          window: 8,
          ...extra,
        }),
      });
      return { status: r.status, body: (await r.json()) as { credential?: string } };
    };
    const status = async (id: number) =>
      ((await (await fetch(`${url}/jobs/${id}`)).json()) as { status: string }).status;
    const startWorkers = (id: number, credential: string) =>
      [0, 1].map((w) => {
        const child = new ChildNode(
          `job ${id} worker ${w}`,
          SCRIPTS.worker,
          [
            ...["--control", url, "--job", String(id), "--worker", String(w)],
            ...["--tensor-bytes", "1MiB", "--progress-ms", "0"],
          ],
          undefined,
          { env: { ...process.env, INA_JOB_CREDENTIAL: credential } },
        );
        children.push(child);
        return child;
      });
    const rows: Row[] = [];

    // The pre-bind window: 16 contributions as both workers before they bind.
    const prebind = await submit(21);
    for (let psn = 0; psn < 8; psn++) {
      for (let w = 0; w < 2; w++) {
        stranger.send(
          header(
            {
              type: PacketType.contribution,
              jobId: 21,
              workerId: w,
              fanIn: 2,
              psn,
              bitmap: 1 << w,
              scaleBits: 20,
            },
            256,
          ),
          ready.dataPort,
          HOST,
        );
      }
    }
    await sleep(200);
    const prebindWorkers = startWorkers(21, prebind.body.credential ?? "");
    const results = await Promise.all(
      prebindWorkers.map((w) => w.waitFor(WorkerResultSchema, 120_000)),
    );
    // Both exit once done is reported and the result printed.
    await Promise.all(prebindWorkers.map((w) => w.waitExit(120_000)));
    rows.push({
      check: "16 contributions from a stranger before a control-plane job's workers bind",
      figure: `both workers ${results.every((r) => r.verified) ? "exact" : "WRONG"}; the job ${await status(21)}`,
      ok: results.every((r) => r.verified),
    });

    // Squatting: 20 anonymous submissions from one address.
    const codes: number[] = [];
    for (let id = 100; id < 120; id++) codes.push((await submit(id, { aggregators: 2 })).status);
    const accepted = codes.filter((c) => c === 201 || c === 202).length;
    const started = performance.now();
    let expired = 0;
    while (performance.now() - started < 30_000) {
      const jobs = (await (await fetch(`${url}/jobs`)).json()) as {
        jobs: Array<{ id: number; status: string }>;
      };
      expired = jobs.jobs.filter(
        (j) => j.id >= 100 && j.id < 120 && j.status === "cancelled",
      ).length;
      if (expired === accepted) break;
      await sleep(250);
    }
    rows.push({
      check: "a stranger submitting 20 jobs that no worker joins",
      figure: `${accepted} accepted (jobs per submitter: 8), ${codes.filter((c) => c === 429).length} answered 429; ${expired} expired after the join timeout (3 s) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
      ok: accepted <= 8 && expired === accepted,
    });

    // Refused requests against a worker's done: credential-less DELETEs as fast as they go.
    const legit = await submit(30);
    let stop = false;
    let refusedSent = 0;
    const flooding = (async () => {
      while (!stop) {
        await Promise.all(
          Array.from({ length: 20 }, () =>
            fetch(`${url}/jobs/30`, { method: "DELETE" }).then(
              (r) => {
                refusedSent++;
                return r.arrayBuffer();
              },
              () => {},
            ),
          ),
        );
      }
    })();
    const workers = startWorkers(30, legit.body.credential ?? "");
    const exits = await Promise.all(workers.map((w) => w.waitExit(120_000)));
    stop = true;
    await flooding;
    rows.push({
      check: "credential-less DELETEs flooding while a job's workers report done",
      figure: `${refusedSent} refused requests; workers exited ${exits.join(", ")}; the job ${await status(30)}`,
      ok: exits.every((e) => e === 0) && (await status(30)) === "finished",
    });
    return rows;
  } finally {
    stranger.close();
    await Promise.all(children.map((c) => c.stop()));
  }
}

/** Every mode at 5 % loss, duplication and reordering each way. */
async function soak(seed: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const mode of ["netreduce", "atp", "ps"] as const) {
    const run = ScenarioRunSchema.parse({
      name: mode,
      faults: { loss: 0.05, duplicate: 0.05, reorder: 0.05 },
      jobs: [{ mode, workers: 4, tensorBytes: "2MiB", window: 32 }],
    });
    const result = await runScenarioRun(run, { seed, timeoutMs: 600_000 });
    const [job] = result.jobs;
    rows.push({
      check: `5% loss, duplication and reordering each way: ${mode}`,
      figure: `${job.verified ? "exact" : "WRONG"} in ${job.seconds.toFixed(1)} s, ${job.retransmissions} retransmissions`,
      ok: result.verified,
    });
  }
  return rows;
}

await runCli(spec, async (o) => {
  process.stderr.write(`reliability suite: seed ${o.seed}, ${o.junk} junk datagrams\n`);
  const rows: Row[] = [];
  const step = async (name: (typeof STEPS)[number], f: () => Promise<Row | Row[]>) => {
    if (o.only !== undefined && !o.only.includes(name)) return;
    process.stderr.write(`  ${name} ...\n`);
    try {
      const out = await f();
      rows.push(...(Array.isArray(out) ? out : [out]));
    } catch (error) {
      rows.push({
        check: name,
        figure: `failed: ${(error as Error).message.slice(0, 200)}`,
        ok: false,
      });
    }
  };
  await step("junk and attacks", () => underFire(o.seed, o.junk));
  await step("kill a worker", () =>
    kill("worker", "netreduce", /the switch failed job 1: worker 2 stopped sending/),
  );
  await step("kill the PS", () => kill("PS", "atp", /the parameter server is unreachable/));
  await step("kill the switch", () =>
    kill("switch", "netreduce", /no answer from the switch at [^ ]+ for \d+ s/),
  );
  await step("control plane", () => controlPlane(o.seed));
  await step("control-plane jobs", () => controlPlaneJobs());
  await step("control-plane floods", () => floods());
  await step("pool poisoning", () => poisonedPool(o.seed));
  await step("fault soak", () => soak(o.seed));
  if (o.json) emitRecord({ event: "reliability", seed: o.seed, rows });
  else {
    const width = Math.max(...rows.map((r) => r.check.length));
    for (const r of rows) {
      process.stdout.write(`${r.ok ? "ok  " : "FAIL"}  ${r.check.padEnd(width)}  ${r.figure}\n`);
    }
  }
  return rows.every((r) => r.ok) ? EXIT_OK : EXIT_FAILED;
});
