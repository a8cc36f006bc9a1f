import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import type { InjectOptions } from "fastify";
import { parseSwitchConfig } from "../proto/config.js";
import { bearer } from "../proto/control.js";
import { buildControlApp, ControlPlane } from "../switch/control.js";
import { SwitchCore } from "../switch/core.js";
import { MemoryManager } from "../switch/memory.js";
import { contribution } from "./packets.js";

const OPERATOR = "operator-token-for-tests";

/** The control plane through fastify's inject(): no port, no socket. */
describe("control plane API", () => {
  let clock = 0;
  let core: SwitchCore;
  let app: ReturnType<typeof buildControlApp>;
  const job = (extra: Record<string, unknown> = {}) => ({
    id: 1,
    class: "be",
    mode: "netreduce",
    workers: 2,
    window: 8,
    modelBytes: 1_000_000,
    aggregators: 16,
    ...extra,
  });
  // The operator may do everything; the credentials themselves are tested below.
  const inject = (o: InjectOptions) =>
    app.inject({ ...o, headers: { authorization: bearer(OPERATOR), ...(o.headers ?? {}) } });
  const post = (url: string, payload?: Record<string, unknown>) =>
    inject({ method: "POST", url, ...(payload === undefined ? {} : { payload }) });

  beforeEach(() => {
    clock = 0;
    core = new SwitchCore(parseSwitchConfig({ aggregators: 64 }), { send: () => {} });
    const manager = new MemoryManager({ aggregators: 64, bytesPerAggregator: 1024, policy: "edf" });
    const control = new ControlPlane({
      manager,
      core,
      dataAddress: { host: "127.0.0.1", port: 4567 },
      now: () => clock,
      operatorToken: OPERATOR,
      clockOrigin: new Date("2026-01-01T00:00:00Z"),
      clockOriginMonotonicMs: 5_000_000.25,
    });
    app = buildControlApp(control);
  });

  it("health, with the clock that every job time is on", async () => {
    clock = 1234.5;
    const r = await inject({ method: "GET", url: "/health" });
    assert.equal(r.statusCode, 200);
    assert.deepEqual(r.json(), {
      status: "ok",
      policy: "edf",
      aggregators: 64,
      jobs: 0,
      clockOrigin: "2026-01-01T00:00:00.000Z",
      clockOriginMonotonicMs: 5_000_000.25,
      clockMs: 1234.5,
    });
  });

  it("submit grants a region and installs the job's rule in the switch", async () => {
    const r = await post("/jobs", job());
    assert.equal(r.statusCode, 201);
    const body = r.json();
    assert.equal(body.job.status, "running");
    assert.deepEqual(body.job.region, { offset: 0, size: 16, epoch: 0 });
    assert.equal(body.decision.outcome, "granted");
    assert.deepEqual(core.job(1)?.current, { epoch: 0, offset: 0, size: 16, start: 0 });
    const list = (await inject({ method: "GET", url: "/jobs" })).json();
    assert.deepEqual(
      list.jobs.map((j: { id: number }) => j.id),
      [1],
    );
    const one = await inject({ method: "GET", url: "/jobs/1" });
    assert.equal(one.json().demand, 16);
  });

  it("a worker joining learns its id, fan-in, mode, window, region and the data address", async () => {
    await post("/jobs", job());
    const a = await post("/jobs/1/workers");
    const b = await post("/jobs/1/workers");
    assert.equal(a.statusCode, 201);
    assert.deepEqual(a.json(), {
      workerId: 0,
      jobId: 1,
      fanIn: 2,
      mode: "netreduce",
      status: "running",
      window: 8,
      region: { offset: 0, size: 16, epoch: 0 },
      data: { host: "127.0.0.1", port: 4567 },
    });
    assert.equal(b.json().workerId, 1);
    const c = await post("/jobs/1/workers");
    assert.equal(c.statusCode, 409);
    assert.match(c.json().message, /all 2 workers of job 1 have joined/);
  });

  it("a worker may ask for the id and fan-in its launcher gave it; the others fill the gaps", async () => {
    await post("/jobs", job({ workers: 3 }));
    const two = await post("/jobs/1/workers", { workerId: 2, fanIn: 3 });
    assert.equal(two.statusCode, 201, two.body);
    assert.equal(two.json().workerId, 2);
    assert.equal(two.json().fanIn, 3);
    assert.equal((await post("/jobs/1/workers")).json().workerId, 0, "the lowest free id");
    assert.equal((await post("/jobs/1/workers", { fanIn: 3 })).json().workerId, 1);
    const full = await post("/jobs/1/workers");
    assert.equal(full.statusCode, 409);
    assert.deepEqual(full.json(), {
      code: "conflict",
      message: "all 3 workers of job 1 have joined",
    });
  });

  it("refuses a taken worker id and a fan-in other than the job's, and keeps the id free", async () => {
    await post("/jobs", job({ workers: 3 }));
    assert.equal((await post("/jobs/1/workers", { workerId: 1 })).statusCode, 201);
    const taken = await post("/jobs/1/workers", { workerId: 1, fanIn: 3 });
    assert.equal(taken.statusCode, 409);
    assert.deepEqual(taken.json(), {
      code: "conflict",
      message: "workerId: worker 1 of job 1 has already joined",
    });
    const wrongFanIn = await post("/jobs/1/workers", { workerId: 0, fanIn: 4 });
    assert.equal(wrongFanIn.statusCode, 409);
    assert.deepEqual(wrongFanIn.json(), {
      code: "conflict",
      message: "fanIn: job 1 has 3 workers, this worker was started as one of 4",
    });
    const outOfRange = await post("/jobs/1/workers", { workerId: 3 });
    assert.equal(outOfRange.statusCode, 400);
    assert.deepEqual(outOfRange.json(), {
      code: "badRequest",
      message: "workerId: job 1 has 3 workers (ids 0 .. 2), got 3",
    });
    const zero = await post("/jobs/1/workers", { workerId: 0, fanIn: 3 });
    assert.equal(zero.statusCode, 201, "refused joins took no id");
    assert.equal(zero.json().workerId, 0);
    assert.equal((await post("/jobs/1/workers")).json().workerId, 2);
  });

  it("a bad join body is a 400 naming the field", async () => {
    await post("/jobs", job());
    const cases: Array<[unknown, RegExp]> = [
      [{ workerId: -1 }, /^body\.workerId: Too small/],
      [{ workerId: 32 }, /^body\.workerId: Too big/],
      [{ workerId: "0" }, /^body\.workerId: /],
      [{ workerId: 0.5 }, /^body\.workerId: /],
      [{ fanIn: 0 }, /^body\.fanIn: Too small/],
      [{ rank: 0 }, /rank/],
      ["[1]", /^body: /],
      ["{not json", /JSON|json/],
    ];
    for (const [payload, message] of cases) {
      const r = await inject({
        method: "POST",
        url: "/jobs/1/workers",
        payload: typeof payload === "string" ? payload : (payload as object),
        headers: { "content-type": "application/json" },
      });
      assert.equal(r.statusCode, 400, `${JSON.stringify(payload)}: ${r.body}`);
      assert.equal(r.json().code, "badRequest");
      assert.match(r.json().message, message, JSON.stringify(payload));
    }
    assert.equal((await post("/jobs/1/workers")).json().workerId, 0, "no bad body took an id");
  });

  it("a switch bound to every interface tells a worker the address it reached the control plane at", async (t) => {
    const wildcard = buildControlApp(
      new ControlPlane({
        manager: new MemoryManager({ aggregators: 64, bytesPerAggregator: 1024, policy: "edf" }),
        core: new SwitchCore(parseSwitchConfig({ aggregators: 64 }), { send: () => {} }),
        dataAddress: { host: "0.0.0.0", port: 4567 },
        now: () => 0,
        operatorToken: OPERATOR,
      }),
    );
    t.after(() => wildcard.close());
    // A real listener: inject() has no connection, so no local address.
    const url = await wildcard.listen({ host: "127.0.0.1", port: 0 });
    console.log(`wildcard control plane: ${url}`);
    const submitted = await fetch(`${url}/jobs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(job()),
    });
    assert.equal(submitted.status, 201);
    const joined = await fetch(`${url}/jobs/1/workers`, {
      method: "POST",
      headers: { authorization: bearer(OPERATOR) },
    });
    assert.equal(joined.status, 201);
    assert.deepEqual((await joined.json()).data, { host: "127.0.0.1", port: 4567 });
    const injected = await wildcard.inject({
      method: "POST",
      url: "/jobs/1/workers",
      headers: { authorization: bearer(OPERATOR) },
    });
    assert.equal(injected.statusCode, 500);
    assert.match(injected.json().message, /binds every interface \(0\.0\.0\.0\)/);
  });

  it("finishes a job when every worker reports done, and frees its region", async () => {
    await post("/jobs", job());
    await post("/jobs/1/workers/0/done");
    assert.equal((await inject({ method: "GET", url: "/jobs/1" })).json().status, "running");
    const r = await post("/jobs/1/workers/1/done");
    assert.equal(r.json().status, "finished");
    assert.equal(core.job(1), undefined, "rule removed");
    const alloc = (await inject({ method: "GET", url: "/allocation" })).json();
    assert.deepEqual(alloc.free, [{ offset: 0, size: 64 }]);
    assert.equal(alloc.freeTotal, 64);
  });

  it("cancel, then conflicts for a cancelled job", async () => {
    await post("/jobs", job());
    const r = await inject({ method: "DELETE", url: "/jobs/1" });
    assert.equal(r.statusCode, 200);
    assert.equal(r.json().status, "cancelled");
    const again = await inject({ method: "DELETE", url: "/jobs/1" });
    assert.equal(again.statusCode, 409);
    assert.deepEqual(again.json(), { code: "conflict", message: "job 1 is already cancelled" });
    assert.equal((await post("/jobs/1/workers")).statusCode, 409);
    assert.equal((await post("/jobs/1/finish")).statusCode, 409);
  });

  it("queues a job that must wait (202) and grants it once the memory it needs has drained", async () => {
    await post("/jobs", job({ aggregators: 64 }));
    const r = await post("/jobs", job({ id: 2, aggregators: 48, class: "md", deadlineS: 100 }));
    // EDF: the MD job gets its whole demand; the BE job shrinks in place to
    // the rest and the MD job waits for the freed aggregators to drain.
    assert.equal(r.statusCode, 202);
    assert.equal(r.json().job.status, "queued");
    assert.match(r.json().job.reason, /waiting for draining aggregators/);
    assert.equal(core.job(1)?.current.size, 16, "the BE job keeps the rest");
    // The switch reports the drain (at once: no packets were in flight).
    await new Promise((resolve) => setImmediate(resolve));
    const two = (await inject({ method: "GET", url: "/jobs/2" })).json();
    assert.equal(two.status, "running");
    assert.deepEqual(two.region, { offset: 16, size: 48, epoch: 0 });
    assert.equal(two.reason, null);
    assert.deepEqual(core.job(2)?.current, { epoch: 0, offset: 16, size: 48, start: 0 });
  });

  it("every route that changes a job needs its credential or the operator token; without, or with a wrong one, nothing changes", async () => {
    const submitted = await app.inject({ method: "POST", url: "/jobs", payload: job() });
    assert.equal(submitted.statusCode, 201, "anyone may submit");
    const credential = submitted.json().credential as string;
    assert.match(credential, /^[A-Za-z0-9_-]{32}$/, "unguessable: 24 random bytes");
    const other = (
      await app.inject({ method: "POST", url: "/jobs", payload: job({ id: 2 }) })
    ).json().credential as string;
    assert.notEqual(other, credential);
    const routes: Array<{ method: "POST" | "PUT" | "DELETE"; url: string; payload?: object }> = [
      { method: "POST", url: "/jobs/1/workers" },
      { method: "PUT", url: "/jobs/1/workers/0/address", payload: { port: 4000 } },
      { method: "POST", url: "/jobs/1/workers/0/done" },
      { method: "POST", url: "/jobs/1/finish" },
      { method: "DELETE", url: "/jobs/1" },
    ];
    const state = async () => (await app.inject({ method: "GET", url: "/jobs/1" })).json();
    for (const route of routes) {
      const before = await state();
      for (const [authorization, status, code] of [
        [undefined, 401, "unauthorized"],
        ["Basic x", 401, "unauthorized"],
        [bearer("not-the-credential"), 403, "forbidden"],
        [bearer(other), 403, "forbidden"],
      ] as const) {
        const r = await app.inject({
          ...route,
          headers: authorization === undefined ? {} : { authorization },
        });
        assert.equal(r.statusCode, status, `${route.method} ${route.url} ${authorization}`);
        assert.equal(r.json().code, code);
        assert.match(r.json().message, /job 1/);
      }
      assert.deepEqual(await state(), before, `${route.method} ${route.url}: nothing changed`);
    }
    // The job's own credential does each of them (cancelling a finished job
    // is then a conflict, past the credential check).
    for (const route of routes) {
      const r = await app.inject({ ...route, headers: { authorization: bearer(credential) } });
      const expected = route.method === "DELETE" ? 409 : r.statusCode < 300 ? r.statusCode : 200;
      assert.equal(r.statusCode, expected, `${route.method} ${route.url}: ${r.body}`);
    }
    assert.equal((await state()).status, "finished");
    // The operator may act on any job; reading needs nothing.
    const cancel = await inject({ method: "DELETE", url: "/jobs/2" });
    assert.equal(cancel.json().status, "cancelled");
    assert.equal((await app.inject({ method: "GET", url: "/jobs" })).statusCode, 200);
    const unknown = await inject({ method: "DELETE", url: "/jobs/9" });
    assert.equal(unknown.statusCode, 404);
  });

  it("ended jobs are purged beyond the retention, so no store grows without bound", async () => {
    const manager = new MemoryManager({ aggregators: 64, bytesPerAggregator: 1024, policy: "edf" });
    const small = buildControlApp(
      new ControlPlane({
        manager,
        core: new SwitchCore(parseSwitchConfig({ aggregators: 64 }), { send: () => {} }),
        dataAddress: { host: "127.0.0.1", port: 1 },
        now: () => 0,
        operatorToken: OPERATOR,
        retainedJobs: 2,
      }),
    );
    for (let id = 1; id <= 6; id++) {
      await small.inject({ method: "POST", url: "/jobs", payload: job({ id }) });
      await small.inject({
        method: "POST",
        url: `/jobs/${id}/finish`,
        headers: { authorization: bearer(OPERATOR) },
      });
    }
    await small.inject({ method: "POST", url: "/jobs", payload: job({ id: 7 }) });
    const ids = (await small.inject({ method: "GET", url: "/jobs" }))
      .json()
      .jobs.map((j: { id: number }) => j.id);
    assert.deepEqual(ids, [5, 6, 7], "the two newest ended jobs and the running one");
    assert.equal(manager.jobs.size, 3);
  });

  it("queued and running jobs are bounded: a submission beyond gets 503", async () => {
    const bounded = buildControlApp(
      new ControlPlane({
        manager: new MemoryManager({ aggregators: 64, bytesPerAggregator: 1024, policy: "edf" }),
        core: new SwitchCore(parseSwitchConfig({ aggregators: 64 }), { send: () => {} }),
        dataAddress: { host: "127.0.0.1", port: 1 },
        now: () => 0,
        maxActiveJobs: 3,
      }),
    );
    for (let id = 1; id <= 3; id++) {
      const r = await bounded.inject({
        method: "POST",
        url: "/jobs",
        payload: job({ id, aggregators: 40 }),
      });
      assert.ok(r.statusCode === 201 || r.statusCode === 202, r.body);
    }
    const refused = await bounded.inject({ method: "POST", url: "/jobs", payload: job({ id: 4 }) });
    assert.equal(refused.statusCode, 503);
    assert.equal(refused.json().code, "tooManyJobs");
  });

  it("jobs always end: one nobody joins expires, one whose workers went silent without done ends unreported; each frees its region", async () => {
    let now = 0;
    const sw = new SwitchCore(parseSwitchConfig({ aggregators: 64, deadPeerS: 60 }), {
      send: () => {},
    });
    const control = new ControlPlane({
      manager: new MemoryManager({ aggregators: 64, bytesPerAggregator: 1024, policy: "edf" }),
      core: sw,
      dataAddress: { host: "127.0.0.1", port: 1 },
      now: () => now,
      joinTimeoutMs: 120_000,
      operatorToken: OPERATOR,
    });
    const api = buildControlApp(control);
    const as = { authorization: bearer(OPERATOR) };
    for (const id of [1, 2]) {
      const r = await api.inject({
        method: "POST",
        url: "/jobs",
        payload: job({ id }),
        headers: as,
      });
      assert.equal(r.statusCode, 201, r.body);
    }
    // Job 2's workers join, bind, all-reduce, and end without reporting done.
    for (const w of [0, 1]) {
      await api.inject({
        method: "POST",
        url: "/jobs/2/workers",
        payload: { workerId: w },
        headers: as,
      });
      await api.inject({
        method: "PUT",
        url: `/jobs/2/workers/${w}/address`,
        payload: { port: 7000 + w },
        remoteAddress: "127.0.0.1",
        headers: as,
      });
    }
    const region = (await api.inject({ method: "GET", url: "/jobs/2" })).json().region;
    const rule = { id: 2, fanIn: 2, offset: region.offset, regionSize: region.size };
    const status = async (id: number) =>
      (await api.inject({ method: "GET", url: `/jobs/${id}` })).json();
    // Joined, nothing sent for 90 s (workers slow to start): longer than
    // deadPeerS, shorter than the join timeout: still running.
    control.sweep(90_000);
    assert.equal((await status(2)).status, "running", "joined workers get the join timeout");
    now = 100_000;
    for (const w of [0, 1]) sw.receive(contribution(rule, w, 0, [1]), 7000 + w, "127.0.0.1", now);
    await api.inject({ method: "POST", url: "/jobs/2/workers/0/done", headers: as });
    control.sweep(110_000);
    assert.equal((await status(1)).status, "running", "110 s of waiting for a join of 120 s");
    control.sweep(159_999);
    assert.equal((await status(2)).status, "running", "59.999 s of silence is not yet 60 s");
    control.sweep(160_000);
    const unreported = await status(2);
    assert.equal(unreported.status, "finished");
    assert.match(
      unreported.reason,
      /^unreported: worker 1 did not report done, and no worker was heard for 60 s/,
    );
    assert.equal(sw.job(2), undefined, "its rule is gone");
    const expired = await status(1);
    assert.equal(expired.status, "cancelled", "job 1 expired at the sweep after 120 s");
    assert.match(expired.reason, /^expired: no worker joined within 120 s/);
    assert.equal((await api.inject({ method: "GET", url: "/allocation" })).json().freeTotal, 64);
  });

  it("workers that joined a queued job are not expired for waiting: the join timeout counts from its region", async () => {
    let now = 0;
    // No dead-peer rule: job 1 sends once and then holds its region as long as the test needs.
    const sw = new SwitchCore(parseSwitchConfig({ aggregators: 64, deadPeerS: 0 }), {
      send: () => {},
    });
    const control = new ControlPlane({
      manager: new MemoryManager({ aggregators: 64, bytesPerAggregator: 1024, policy: "fcfs" }),
      core: sw,
      dataAddress: { host: "127.0.0.1", port: 1 },
      now: () => now,
      joinTimeoutMs: 120_000,
      operatorToken: OPERATOR,
      defer: (work) => work(),
    });
    const api = buildControlApp(control);
    const post = (url: string, payload?: Record<string, unknown>) =>
      api.inject({ method: "POST", url, payload, headers: { authorization: bearer(OPERATOR) } });
    const status = async (id: number) =>
      (await api.inject({ method: "GET", url: `/jobs/${id}` })).json().status;
    // Job 1 holds every aggregator; job 2 queues behind it, its workers joined at once.
    assert.equal((await post("/jobs", job({ id: 1, aggregators: 64 }))).statusCode, 201);
    assert.equal((await post("/jobs", job({ id: 2, aggregators: 64 }))).statusCode, 202);
    for (const w of [0, 1]) {
      assert.equal((await post("/jobs/1/workers", { workerId: w })).statusCode, 201);
      assert.equal((await post("/jobs/2/workers", { workerId: w })).statusCode, 201);
      await api.inject({
        method: "PUT",
        url: `/jobs/1/workers/${w}/address`,
        payload: { port: 7000 + w },
        remoteAddress: "127.0.0.1",
        headers: { authorization: bearer(OPERATOR) },
      });
    }
    const region = (await api.inject({ method: "GET", url: "/jobs/1" })).json().region;
    const rule = { id: 1, fanIn: 2, offset: region.offset, regionSize: region.size };
    now = 10_000;
    for (const w of [0, 1]) sw.receive(contribution(rule, w, 0, [1]), 7000 + w, "127.0.0.1", now);
    now = 150_000;
    control.sweep(now);
    assert.equal(await status(2), "queued");
    // Job 1's workers report done.
    for (const w of [0, 1]) await post(`/jobs/1/workers/${w}/done`);
    assert.equal(await status(2), "running", "job 2 got the region at 150 s");
    control.sweep(200_000);
    assert.equal(
      await status(2),
      "running",
      "50 s after its region, 200 s after its workers joined",
    );
    control.sweep(270_000);
    assert.equal(await status(2), "cancelled", "120 s after its region with nothing sent");
  });

  it("a submitter without the operator token holds a bounded number of live jobs; the operator is not bounded", async () => {
    const bounded = buildControlApp(
      new ControlPlane({
        manager: new MemoryManager({ aggregators: 64, bytesPerAggregator: 1024, policy: "edf" }),
        core: new SwitchCore(parseSwitchConfig({ aggregators: 64 }), { send: () => {} }),
        dataAddress: { host: "127.0.0.1", port: 1 },
        now: () => 0,
        operatorToken: OPERATOR,
        maxJobsPerSubmitter: 3,
      }),
    );
    const submit = (id: number, remoteAddress: string, headers = {}) =>
      bounded.inject({
        method: "POST",
        url: "/jobs",
        payload: job({ id, aggregators: 2 }),
        remoteAddress,
        headers,
      });
    for (let id = 1; id <= 3; id++) assert.equal((await submit(id, "10.0.0.9")).statusCode, 201);
    const refused = await submit(4, "10.0.0.9");
    assert.equal(refused.statusCode, 429);
    assert.match(refused.json().message, /10\.0\.0\.9 holds 3 queued and running jobs/);
    assert.equal((await submit(5, "10.0.0.7")).statusCode, 201, "another address has its own");
    assert.equal(
      (await submit(6, "10.0.0.9", { authorization: bearer(OPERATOR) })).statusCode,
      201,
    );
  });

  it("every error is JSON naming what is wrong", async () => {
    const cases: Array<[string, string, unknown, number, RegExp]> = [
      ["POST", "/jobs", job({ workers: "two" }), 400, /^body\.workers: /],
      ["POST", "/jobs", job({ workers: 33 }), 400, /^body\.workers: Too big/],
      ["POST", "/jobs", job({ id: -1 }), 400, /^body\.id: Too small/],
      ["POST", "/jobs", job({ mode: "ring" }), 400, /^body\.mode: /],
      ["POST", "/jobs", job({ mode: "atp" }), 400, /^mode: an ATP job needs a parameter server/],
      ["POST", "/jobs", job({ colour: "red" }), 400, /colour/],
      ["POST", "/jobs", job({ class: "md" }), 400, /^deadlineS: an MD job needs a deadline/],
      ["POST", "/jobs", { id: 1 }, 400, /body\.class: /],
      ["POST", "/jobs", "{not json", 400, /JSON|json/],
      ["GET", "/jobs/abc", undefined, 400, /^params\.id: /],
      ["GET", "/jobs/%20", undefined, 400, /^params\.id: /],
      ["POST", "/jobs", job({ deadlineS: 5 }), 400, /^deadlineS: only MD jobs have a deadline/],
      ["GET", "/jobs/70000", undefined, 400, /^params\.id: Too big/],
      ["GET", "/jobs/9", undefined, 404, /^no job 9$/],
      ["DELETE", "/jobs/9", undefined, 404, /^no job 9$/],
      ["POST", "/jobs/9/workers", undefined, 404, /^no job 9$/],
      ["POST", "/jobs/1/workers/40/done", undefined, 400, /^params\.workerId: Too big/],
      ["GET", "/nowhere", undefined, 404, /no route GET \/nowhere/],
    ];
    for (const [method, url, payload, status, message] of cases) {
      const r = await inject({
        method: method as "GET",
        url,
        ...(payload === undefined
          ? {}
          : typeof payload === "string"
            ? { payload, headers: { "content-type": "application/json" } }
            : { payload: payload as object }),
      });
      assert.equal(r.statusCode, status, `${method} ${url}: ${r.body}`);
      const body = r.json();
      assert.equal(typeof body.code, "string");
      assert.match(body.message, message, `${method} ${url}`);
    }
    // A body that is not declared JSON is named as such, not as a generic bad request.
    for (const headers of [{ "content-type": "text/plain" }, {}]) {
      const plain = await inject({
        method: "POST",
        url: "/jobs",
        payload: Buffer.from(JSON.stringify(job({}))),
        headers,
      });
      assert.equal(plain.statusCode, 415, JSON.stringify(headers));
      assert.equal(plain.json().code, "unsupportedMediaType");
      assert.match(plain.json().message, /content-type: application\/json/);
    }
  });

  it("a 32-worker job finishes when all report done; a refused duplicate keeps the window", async () => {
    await post("/jobs", job({ workers: 32, aggregators: 16 }));
    assert.equal((await post("/jobs", job({ window: 1000 }))).statusCode, 409);
    assert.equal((await post("/jobs/1/workers")).json().window, 8, "the first submission's window");
    for (let w = 0; w < 32; w++) await post(`/jobs/1/workers/${w}/done`);
    assert.equal((await inject({ method: "GET", url: "/jobs/1" })).json().status, "finished");
  });

  it("ids of the switch config's own jobs are taken", async () => {
    const withConfigJob = new SwitchCore(
      parseSwitchConfig({
        aggregators: 64,
        jobs: [{ id: 5, mode: "netreduce", fanIn: 2, offset: 0, regionSize: 16, window: 8 }],
      }),
      { send: () => {} },
    );
    const configApp = buildControlApp(
      new ControlPlane({
        manager: new MemoryManager({
          aggregators: 64,
          bytesPerAggregator: 1024,
          policy: "edf",
          reserved: [[0, 16]],
        }),
        core: withConfigJob,
        dataAddress: { host: "127.0.0.1", port: 1 },
        now: () => 0,
      }),
    );
    const r = await configApp.inject({ method: "POST", url: "/jobs", payload: job({ id: 5 }) });
    assert.equal(r.statusCode, 409);
    assert.match(r.json().message, /job 5 is a job of the switch's config/);
    assert.deepEqual(withConfigJob.job(5)?.current, { epoch: 0, offset: 0, size: 16, start: 0 });
    const other = await configApp.inject({ method: "POST", url: "/jobs", payload: job({ id: 6 }) });
    assert.equal(other.json().job.region.offset, 16, "the config's region is reserved");
  });

  it("conflict on a duplicate id, 503 when the switch cannot hold even the minimum", async () => {
    await post("/jobs", job());
    const dup = await post("/jobs", job());
    assert.equal(dup.statusCode, 409);
    assert.deepEqual(dup.json(), { code: "conflict", message: "job 1 already exists" });
    const tinyCore = new SwitchCore(parseSwitchConfig({ aggregators: 1 }), { send: () => {} });
    const tiny = buildControlApp(
      new ControlPlane({
        manager: new MemoryManager({ aggregators: 1, bytesPerAggregator: 1024, policy: "fcfs" }),
        core: tinyCore,
        dataAddress: { host: "127.0.0.1", port: 1 },
        now: () => 0,
      }),
    );
    const r = await tiny.inject({ method: "POST", url: "/jobs", payload: job() });
    assert.equal(r.statusCode, 503);
    assert.deepEqual(r.json(), {
      code: "noResources",
      message: "needs at least 2 aggregators; the switch has 1",
    });
  });
});
