import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { parseSwitchConfig } from "../proto/config.js";
import { bearer } from "../proto/control.js";
import { LOCAL_ADDRESS_HEADER, serveFromThread } from "../runtime/http-front.js";
import { buildControlApp, ControlPlane, PUBLIC_JOB_FIELDS } from "../switch/control.js";
import { SwitchCore } from "../switch/core.js";
import { MemoryManager } from "../switch/memory.js";

const OPERATOR = "operator-token-for-http-front-tests";

/**
 * The control plane's HTTP front over a real socket on 127.0.0.1: what it
 * answers itself (limits, cached reads, what a stranger may see) and what it
 * hands to the switch's thread.
 */
describe("the control plane's HTTP front", () => {
  let control: ControlPlane;
  let front: Awaited<ReturnType<typeof serveFromThread>>;
  let url: string;
  /** requests the front handed to the switch's own thread */
  const reached: string[] = [];
  const job = (id: number) => ({
    id,
    class: "be",
    mode: "netreduce",
    workers: 2,
    window: 8,
    modelBytes: 1_000_000,
    aggregators: 2,
  });
  const post = (path: string, body: unknown, authorization?: string) =>
    fetch(`${url}${path}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(authorization === undefined ? {} : { authorization }),
      },
      body: JSON.stringify(body),
    });

  before(async () => {
    control = new ControlPlane({
      manager: new MemoryManager({ aggregators: 64, bytesPerAggregator: 1024, policy: "edf" }),
      core: new SwitchCore(parseSwitchConfig({ aggregators: 64 }), { send: () => {} }),
      dataAddress: { host: "127.0.0.1", port: 1 },
      now: () => 0,
      operatorToken: OPERATOR,
    });
    const app = buildControlApp(control);
    app.addHook("onRequest", async (request) => {
      // Forwarded by the front (it names the local address); not the publisher's own renders.
      if (request.headers[LOCAL_ADDRESS_HEADER] !== undefined)
        reached.push(`${request.method} ${request.url}`);
    });
    front = await serveFromThread(app, {
      host: "127.0.0.1",
      port: 0,
      // One change a second without a credential: a burst of three always meets the limit.
      limits: { anonymousChangesPerSecond: 1, changesPerCredential: 20, readsPerSecond: 1000 },
      cachedPaths: ["/health", "/jobs"],
      credentials: () => control.credentialList(),
      publicJobFields: PUBLIC_JOB_FIELDS,
    });
    url = `http://127.0.0.1:${front.port}`;
  });
  after(async () => {
    await front.close();
  });

  it("a stranger's changes beyond the anonymous rate get 429 from the front; a job's credential and the operator are not held up by them", async () => {
    const first = await post("/jobs", job(1), bearer(OPERATOR));
    assert.equal(first.status, 201);
    const credential = ((await first.json()) as { credential: string }).credential;
    await front.publish();
    const flood = await Promise.all(
      [1, 2, 3].map(() => post("/jobs/1/finish", {}, bearer("guess"))),
    );
    const refused = flood.filter((r) => r.status === 429);
    assert.ok(refused.length >= 1, `statuses ${flood.map((r) => r.status)}`);
    assert.equal(refused[0].headers.get("retry-after"), "1");
    assert.match(
      ((await refused[0].json()) as { message: string }).message,
      /at most 1 changes without a credential per second/,
    );
    for (const r of flood.filter((r) => r.status !== 429)) assert.equal(r.status, 403);
    // The anonymous bucket is empty; the job's own credential has its own.
    const joined = await post("/jobs/1/workers", { workerId: 0 }, bearer(credential));
    assert.equal(joined.status, 201, await joined.text());
  });

  it("GETs of cached paths are answered by the front; a stranger sees only the public fields of a job, its credential all of them", async () => {
    const submitted = await post("/jobs", job(2), bearer(OPERATOR));
    const credential = ((await submitted.json()) as { credential: string }).credential;
    await front.publish();
    reached.length = 0;
    const stranger = (await (await fetch(`${url}/jobs/2`)).json()) as Record<string, unknown>;
    assert.deepEqual(Object.keys(stranger).sort(), [...PUBLIC_JOB_FIELDS].sort());
    assert.equal(stranger.status, "running");
    const owner = (await (
      await fetch(`${url}/jobs/2`, { headers: { authorization: bearer(credential) } })
    ).json()) as Record<string, unknown>;
    assert.ok(
      owner.region !== null && typeof owner.region === "object",
      "the owner sees its region",
    );
    const list = (await (await fetch(`${url}/jobs`)).json()) as {
      jobs: Array<Record<string, unknown>>;
    };
    assert.ok(
      list.jobs.every((j) => !("region" in j)),
      "nor does the list show regions",
    );
    const missing = await fetch(`${url}/jobs/99`);
    assert.equal(missing.status, 404);
    assert.deepEqual(await missing.json(), { code: "notFound", message: "no job 99" });
    assert.equal((await fetch(`${url}/health`)).status, 200);
    assert.deepEqual(reached, [], "none of these reached the switch's thread");
  });
});
