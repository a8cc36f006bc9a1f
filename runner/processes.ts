import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import type { z } from "zod";
import { formatZodError } from "../proto/config.js";
import { type RecordSchema, recordEvent } from "../proto/records.js";

/** Every child started here and not yet exited, so a runner can stop them all on a signal. */
export const liveChildren = new Set<ChildNode>();

/** Stops every live child (SIGTERM, then SIGKILL): for a runner that is itself being stopped. */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...liveChildren].map((child) => child.stop()));
}

/** Rank and size variables of the launchers a worker reads (worker/launcher.ts). */
const LAUNCHER_VARIABLE = /^(OMPI_COMM_WORLD_|PMI_|PMIX_RANK$|SLURM_PROCID$|SLURM_NTASKS$)/;

/** A JSON record a child printed on one stdout line, not yet checked against its schema. */
export type ProcessRecord = { event: string } & Record<string, unknown>;

/** A record that does not match its schema (proto/records.ts): which child, which record, which fields. */
export class RecordMismatch extends Error {
  override name = "RecordMismatch";
}

/**
 * `record` checked against `schema`; a mismatch throws a RecordMismatch
 * naming `who`, the event and every bad field.
 */
export function parseRecord<S extends RecordSchema>(
  schema: S,
  record: unknown,
  who: string,
): z.output<S> {
  const parsed = schema.safeParse(record);
  if (parsed.success) return parsed.data;
  const event = (record as { event?: unknown } | null)?.event ?? recordEvent(schema);
  throw new RecordMismatch(
    `${who}: its "${String(event)}" record does not match proto/records.ts:\n` +
      `${formatZodError(parsed.error)}\nrecord: ${JSON.stringify(record).slice(0, 400)}`,
  );
}

/**
 * A child process that speaks the ina-emu line protocol: JSON records on
 * stdout, free text on stderr. Every wait is bounded; stop() ends it by PID,
 * SIGTERM first and SIGKILL after a grace period.
 */
export class ChildNode {
  readonly child: ChildProcessWithoutNullStreams;
  readonly records: ProcessRecord[] = [];
  stderr = "";
  exitCode: number | null = null;
  readonly exited: Promise<number | null>;
  /** what onRecord threw (a record that did not match its schema): every later wait rejects with it */
  failure: Error | null = null;
  private waiters: Array<() => void> = [];

  constructor(
    readonly name: string,
    script: string,
    args: string[],
    onRecord?: (record: ProcessRecord) => void,
    /** raw: `script` is an executable, not a Node script; cwd, env: as for spawn */
    options: { raw?: boolean; cwd?: string; env?: NodeJS.ProcessEnv } = {},
  ) {
    // stdio defaults to pipes on all three streams.
    // A runner started by mpirun or srun must not hand its own rank to the
    // workers it starts: they would all claim it when joining a job.
    const env = Object.fromEntries(
      Object.entries(options.env ?? process.env).filter(([name]) => !LAUNCHER_VARIABLE.test(name)),
    );
    const spawnOptions = { cwd: options.cwd, env };
    this.child = options.raw
      ? spawn(script, args, spawnOptions)
      : spawn(process.execPath, [script, ...args], spawnOptions);
    liveChildren.add(this);
    this.exited = new Promise((resolve) => {
      // "close", not "exit": exit may fire before the child's last stdout
      // lines are read, and a waiter would see it exit without its result.
      this.child.once("close", (code, signal) => {
        liveChildren.delete(this);
        this.exitCode = code ?? (signal ? 128 : null);
        resolve(this.exitCode);
        this.wake();
      });
    });
    createInterface({ input: this.child.stdout }).on("line", (line) => {
      let record: ProcessRecord;
      try {
        record = JSON.parse(line);
      } catch {
        return;
      }
      this.records.push(record);
      try {
        onRecord?.(record);
      } catch (error) {
        this.failure ??= error as Error;
      }
      this.wake();
    });
    this.child.stderr.on("data", (chunk: Buffer) => {
      // Keep the tail only: enough to explain a failure.
      this.stderr = (this.stderr + chunk.toString()).slice(-8000);
    });
    this.child.stdin.on("error", () => {});
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /**
   * Every record of `schema`'s event printed so far, each checked against
   * `schema`: one that does not match throws a RecordMismatch naming its fields.
   */
  recordsOf<S extends RecordSchema>(schema: S): Array<z.output<S>> {
    const event = recordEvent(schema);
    return this.records
      .filter((r) => r.event === event)
      .map((r) => parseRecord(schema, r, this.name));
  }

  /**
   * Resolves with the first record of `schema`'s event, checked against
   * `schema` (a mismatch rejects, naming the fields); rejects on exit or
   * after `timeoutMs`.
   */
  async waitFor<S extends RecordSchema>(schema: S, timeoutMs: number): Promise<z.output<S>> {
    const event = recordEvent(schema);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.failure !== null) throw this.failure;
      const found = this.records.find((r) => r.event === event);
      if (found) return parseRecord(schema, found, this.name);
      if (this.exitCode !== null) {
        throw new Error(
          `${this.name} exited (${this.exitCode}) before "${event}": ${this.stderr.trim()}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        // Say what the process was doing: its last record and stderr.
        const last = this.records.at(-1);
        const doing = last === undefined ? "no record yet" : `last record ${JSON.stringify(last)}`;
        const stderr = this.stderr.trim().slice(-500);
        throw new Error(
          `${this.name}: no "${event}" within ${timeoutMs} ms; ${doing.slice(0, 400)}` +
            (stderr === "" ? "" : `; stderr: ${stderr}`),
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  send(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  /** Waits up to `timeoutMs` for the process to exit by itself. */
  async waitExit(timeoutMs: number): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const result = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (result === "timeout") {
      const last = this.records.at(-1);
      const doing = last === undefined ? "no record yet" : `last record ${JSON.stringify(last)}`;
      const stderr = this.stderr.trim().slice(-500);
      throw new Error(
        `${this.name} did not exit within ${timeoutMs} ms; ${doing.slice(0, 400)}` +
          (stderr === "" ? "" : `; stderr: ${stderr}`),
      );
    }
    return result;
  }

  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
  async stop(graceMs = 3000): Promise<number | null> {
    if (this.exitCode !== null) return this.exitCode;
    this.child.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        if (this.exitCode === null) this.child.kill("SIGKILL");
        resolve();
      }, graceMs);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    return this.exited;
  }
}
