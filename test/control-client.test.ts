import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { requestControl } from "../worker/control-client.js";

/** A control plane that answers each request with the next of `answers` (then 200). */
async function scriptedServer(answers: Array<number | "reset">) {
  const seen: Array<{ method: string; url: string; authorization: string | undefined }> = [];
  const server = createServer((req, res) => {
    seen.push({
      method: req.method ?? "",
      url: req.url ?? "",
      authorization: req.headers.authorization,
    });
    const next = answers.shift() ?? 200;
    if (next === "reset") {
      req.socket.destroy();
      return;
    }
    res.writeHead(next, {
      "content-type": "application/json",
      ...(next === 429 ? { "retry-after": "0.05" } : {}),
    });
    res.end(JSON.stringify(next === 200 ? { status: "finished" } : { message: `answer ${next}` }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, seen, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe("a worker's control-plane requests", () => {
  it("are tried again on 429, 5xx and a dropped connection, until one is answered", async () => {
    const server = await scriptedServer([429, 503, "reset", 500]);
    const warnings: string[] = [];
    try {
      const body = await requestControl(`${server.url}/jobs/3/workers/0/done`, "POST", {
        credential: "secret",
        warn: (line) => warnings.push(line),
      });
      assert.deepEqual(body, { status: "finished" });
      assert.equal(server.seen.length, 5, "four refusals, then the answer");
      assert.ok(
        server.seen.every((r) => r.method === "POST" && r.authorization === "Bearer secret"),
      );
      assert.equal(warnings.length, 4);
      assert.match(warnings[0], /429 answer 429; trying again in 50 ms/, "Retry-After is honoured");
      assert.match(warnings[2], /cannot reach/);
    } finally {
      await server.close();
    }
  });

  it("are not tried again on another 4xx, and give up after their time with what went wrong", async () => {
    const refused = await scriptedServer([409]);
    try {
      await assert.rejects(
        requestControl(`${refused.url}/jobs/3/join`, "POST", { warn: () => {} }),
        /--control: POST .*\/jobs\/3\/join: 409 answer 409$/,
      );
      assert.equal(refused.seen.length, 1);
    } finally {
      await refused.close();
    }
    const busy = await scriptedServer(Array(100).fill(503));
    try {
      await assert.rejects(
        requestControl(`${busy.url}/jobs/3`, "GET", { retryForMs: 500, warn: () => {} }),
        /503 answer 503 \(after \d+ attempt\(s\) over 0\.\d s\)/,
      );
      assert.ok(busy.seen.length >= 2 && busy.seen.length <= 5, `${busy.seen.length} attempts`);
    } finally {
      await busy.close();
    }
  });
});
