import { performance } from "node:perf_hooks";
import { bearer } from "../proto/control.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One request to a switch's control plane, as a worker makes it: JSON in and
 * out, the job's credential as a bearer token, and retried while the switch
 * is busy, failing or unreachable.
 */
/** How long a control-plane request is retried while the switch is busy, failing or unreachable (ms). */
export const CONTROL_RETRY_MS = 60_000;

export async function requestControl(
  url: string,
  method: "GET" | "POST" | "PUT",
  o: {
    payload?: Record<string, unknown>;
    credential?: string;
    retryForMs?: number;
    /** where each retry is told (default: stderr) */
    warn?: (line: string) => void;
  } = {},
): Promise<Record<string, unknown>> {
  const { payload, credential } = o;
  const retryForMs = o.retryForMs ?? CONTROL_RETRY_MS;
  const warn = o.warn ?? ((line: string) => process.stderr.write(`${line}\n`));
  const auth: Record<string, string> =
    credential === undefined ? {} : { authorization: bearer(credential) };
  const init: RequestInit =
    payload === undefined
      ? { method, headers: auth }
      : {
          method,
          headers: { "content-type": "application/json", ...auth },
          body: JSON.stringify(payload),
        };
  const started = performance.now();
  // Busy (429), failing (5xx) or unreachable: try again, with exponential
  // backoff (or the server's Retry-After), until retryForMs has passed. A
  // broken keep-alive connection is dropped by fetch, so a retry connects anew.
  for (let attempt = 0, backoffMs = 100; ; attempt++, backoffMs = Math.min(5000, 2 * backoffMs)) {
    let problem: string;
    let retryAfterMs = backoffMs;
    try {
      const response = await fetch(url, init);
      const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
      if (response.ok) return body;
      problem = `${method} ${url}: ${response.status} ${String(body.message ?? "")}`;
      if (response.status !== 429 && response.status < 500)
        throw new Error(`--control: ${problem}`);
      const retryAfter = Number(response.headers.get("retry-after"));
      if (Number.isFinite(retryAfter) && retryAfter > 0)
        retryAfterMs = Math.min(30_000, retryAfter * 1000);
    } catch (error) {
      if ((error as Error).message.startsWith("--control:")) throw error;
      problem = `cannot reach ${url}: ${(error as Error).message}`;
    }
    const waited = performance.now() - started;
    if (waited + retryAfterMs > retryForMs) {
      throw new Error(
        `--control: ${problem} (after ${attempt + 1} attempt(s) over ${(waited / 1000).toFixed(1)} s)`,
      );
    }
    warn(`warning: --control: ${problem}; trying again in ${retryAfterMs} ms`);
    await sleep(retryAfterMs);
  }
}
