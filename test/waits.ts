/**
 * How long a test waits for a process to start (its ready record) or make
 * its first progress (ms): long enough for a host at load 30, where a Node
 * process takes seconds to start; a healthy run never waits that long.
 */
export const STARTUP_MS = 120_000;
