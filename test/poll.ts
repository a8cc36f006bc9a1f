/**
 * Calls `check` every `everyMs` until it returns something other than null,
 * for at most `timeoutMs`; an error from `check` ends the wait at once.
 */
export async function poll<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | null>,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await check();
    if (found !== null) return found;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
