import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { z } from "zod";
import {
  ConfigError,
  formatZodError,
  parseSwitchConfig,
  type SwitchConfig,
  safeParseWithRenames,
} from "../proto/config.js";
import type { CommandRecord } from "../proto/records.js";
import { MAX_DATAGRAM_BYTES } from "../proto/wire.js";
import { DEFAULT_DATAGRAM_LIMITS } from "./coalesce.js";

/**
 * The command-line conventions every ina-emu process follows: options are
 * validated by a zod schema, a bad one is named and exits 2, and machine
 * output is one JSON record per line on stdout (`{"event": "ready", ...}`);
 * people's messages go to stderr.
 */

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export class UsageError extends Error {
  override name = "UsageError";
}

export interface OptionSpec {
  type: "string" | "boolean";
  description: string;
  /** shown in --help as `--name VALUE` */
  valueName?: string;
  /** shown in --help; the schema holds the real default */
  defaultText?: string;
}

export interface CliSpec<S extends z.ZodType> {
  command: string;
  summary: string;
  /** extra help text printed after the options */
  details?: string;
  options: Record<string, OptionSpec>;
  /**
   * old option names still accepted (old -> new, without the dashes): each
   * given prints one deprecation line on stderr; giving both is an error
   */
  renamed?: Record<string, string>;
  /** options taken away (name without the dashes -> why): given, each is a usage error saying why */
  removed?: Record<string, string>;
  /** validates the options, keyed by camelCase name */
  schema: S;
}

function camelCase(kebab: string): string {
  return kebab.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function kebabCase(camel: string): string {
  return camel.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

export function helpText<S extends z.ZodType>(spec: CliSpec<S>): string {
  const rows = Object.entries(spec.options).map(([name, o]) => {
    const flag = o.type === "boolean" ? `--${name}` : `--${name} ${o.valueName ?? "VALUE"}`;
    const dflt = o.defaultText === undefined ? "" : ` (default: ${o.defaultText})`;
    return [flag, `${o.description}${dflt}`];
  });
  rows.push(["--help", "show this help"]);
  const width = Math.max(...rows.map(([f]) => f.length)) + 2;
  // A description's later lines start under its first, not at the margin.
  const indent = `\n${" ".repeat(width + 2)}`;
  const lines = rows.map(([f, d]) => `  ${f.padEnd(width)}${d.replaceAll("\n", indent)}`);
  return [
    `Usage: ${spec.command} [options]`,
    "",
    spec.summary,
    "",
    "Options:",
    ...lines,
    ...(spec.details ? ["", spec.details] : []),
    "",
  ].join("\n");
}

/** Parses argv; returns "help" for --help, throws UsageError naming the bad option. */
export function parseCli<S extends z.ZodType>(
  spec: CliSpec<S>,
  argv: string[],
): z.infer<S> | "help" {
  for (const [old, why] of Object.entries(spec.removed ?? {})) {
    if (argv.some((arg) => arg === `--${old}` || arg.startsWith(`--${old}=`))) {
      throw new UsageError(`--${old}: removed; ${why}`);
    }
  }
  const options: Record<string, { type: "string" | "boolean" }> = { help: { type: "boolean" } };
  for (const [name, o] of Object.entries(spec.options)) options[name] = { type: o.type };
  const renamed = Object.entries(spec.renamed ?? {});
  for (const [old, now] of renamed) options[old] = { type: spec.options[now].type };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (error) {
    const message = (error as Error).message;
    // node:util's "argument is ambiguous" means a value that starts with "-".
    const ambiguous = /^Option '(--[\w-]+)(?:, -\w)?(?: <value>)?' argument is ambiguous/.exec(
      message,
    );
    if (ambiguous !== null) {
      const value = argv[argv.indexOf(ambiguous[1]) + 1] ?? "";
      throw new UsageError(
        `${ambiguous[1]}: ${JSON.stringify(value)} starts with "-": a negative number is not a valid ${ambiguous[1]} (write ${ambiguous[1]}=${value} to pass it anyway)`,
      );
    }
    throw new UsageError(message);
  }
  if (values.help) return "help";
  for (const [old, now] of renamed) {
    if (values[old] === undefined) continue;
    if (values[now] !== undefined) {
      throw new UsageError(
        `--${old} and --${now}: give --${now} or its deprecated name --${old}, not both`,
      );
    }
    warnOnStderr(`${spec.command}: --${old} is deprecated, use --${now}`);
    values[now] = values[old];
    delete values[old];
  }
  const input: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(values)) {
    if (value !== undefined) input[camelCase(name)] = value;
  }
  const parsed = spec.schema.safeParse(input);
  if (!parsed.success) {
    throw new UsageError(
      parsed.error.issues
        .map((issue) => {
          const key = issue.path.length > 0 ? `--${kebabCase(String(issue.path[0]))}` : "options";
          return `${key}: ${issue.message}`;
        })
        .join("\n"),
    );
  }
  return parsed.data;
}

/**
 * Runs a command's main function with the common conventions: --help prints
 * and exits 0, a UsageError prints its message and exits 2, any other error
 * prints and exits 1; otherwise the exit code is what main returns.
 */
export async function runCli<S extends z.ZodType>(
  spec: CliSpec<S>,
  main: (options: z.infer<S>) => Promise<number>,
  argv = process.argv.slice(2),
): Promise<void> {
  let options: z.infer<S> | "help";
  try {
    options = parseCli(spec, argv);
  } catch (error) {
    process.stderr.write(
      `${spec.command}: ${(error as Error).message}\nSee ${spec.command} --help\n`,
    );
    process.exitCode = EXIT_USAGE;
    return;
  }
  if (options === "help") {
    process.stdout.write(helpText(spec));
    return;
  }
  let code = EXIT_FAILED;
  try {
    code = await main(options);
  } catch (error) {
    const usage = error instanceof UsageError;
    process.stderr.write(`${spec.command}: ${usage ? "" : "error: "}${(error as Error).message}\n`);
    // Exit now: a failed main may leave sockets or timers open.
    await exitWhenFlushed(usage ? EXIT_USAGE : EXIT_FAILED);
  }
  // main is done; stdin or a stray handle must not keep the process alive.
  await exitWhenFlushed(code);
}

/**
 * Exits once stdout and stderr have handed everything to the OS: a pipe to
 * a parent takes a large write in pieces, and exiting earlier loses its tail
 * (a runner would see the process exit without its result record). A reader
 * that never reads cannot hold the exit back for more than `graceMs`.
 */
async function exitWhenFlushed(code: number, graceMs = 5000): Promise<never> {
  setTimeout(() => process.exit(code), graceMs).unref();
  const flushed = (stream: NodeJS.WriteStream) =>
    new Promise<void>((resolve) => stream.write("", () => resolve()));
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  process.exit(code);
}

/**
 * Writes one machine-readable record on stdout: only a record of the
 * contract (proto/records.ts), so a producer that renames or drops a field
 * does not compile.
 */
export function emitRecord(record: CommandRecord): void {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

/**
 * A whole number in [min, max] given on the command line; anything else is
 * named as it was typed (`expected a whole number, got "4MiB"`), with `hint`.
 */
export const cliInt = (min: number, max: number, hint?: string) =>
  z
    .union([z.number(), z.string()])
    .transform((value, ctx) => {
      const n =
        typeof value === "number"
          ? value
          : /^\s*-?\d+\s*$/.test(value)
            ? Number(value)
            : Number.NaN;
      if (!Number.isInteger(n)) {
        ctx.addIssue({
          code: "custom",
          message: `expected a whole number, got "${value}"${hint ? ` (${hint})` : ""}`,
        });
        return z.NEVER;
      }
      return n;
    })
    .pipe(z.int().min(min).max(max));

/** A probability given on the command line. */
export const cliProbability = z.coerce.number().min(0).max(1);

/** "host:port" -> parts; throws UsageError on anything else. */
export function parseHostPort(text: string, option: string): { host: string; port: number } {
  const match = /^([^:]+):(\d+)$/.exec(text);
  const port = match ? Number(match[2]) : Number.NaN;
  if (!match || port < 1 || port > 65535) {
    throw new UsageError(`${option}: expected HOST:PORT, got "${text}"`);
  }
  return { host: match[1], port };
}

/** User + system CPU time this process has used, in seconds. */
export function cpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

/** Reads a JSON file named by `option`; a missing or malformed file is a UsageError. */
export async function readJsonFile(path: string, option: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new UsageError(`${option}: cannot read ${path}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${option}: ${path} is not JSON: ${(error as Error).message}`);
  }
}

/**
 * Reads and validates a switch config file; every problem is a UsageError
 * naming the field. The PS reads the same file before the switch knows the
 * PS's port, so for it a missing parameterServer is filled with a placeholder.
 */
export async function loadSwitchConfigFile(
  path: string,
  { forParameterServer = false } = {},
): Promise<SwitchConfig> {
  let json = await readJsonFile(path, "--config");
  if (forParameterServer && typeof json === "object" && json !== null) {
    json = { parameterServer: { host: "127.0.0.1", port: 1 }, ...json };
  }
  try {
    return parseSwitchConfig(json, path, warnOnStderr);
  } catch (error) {
    if (error instanceof ConfigError) throw new UsageError(`--config: ${path}:\n${error.message}`);
    throw error;
  }
}

/** How senders coalesce packets into datagrams (proto/README.md, section 2.1). */
export const DATAGRAM_OPTIONS = {
  "packets-per-datagram": {
    type: "string",
    valueName: "N",
    description:
      "put up to N packets for the same destination, produced in one turn of the event loop,\n" +
      "into one datagram (emulated segmentation offload; every packet is still emulated,\n" +
      "dropped and counted on its own); 1: one packet per datagram",
    defaultText: String(DEFAULT_DATAGRAM_LIMITS.packets),
  },
  "datagram-bytes": {
    type: "string",
    valueName: "BYTES",
    description: "largest datagram of several packets",
    defaultText: String(DEFAULT_DATAGRAM_LIMITS.bytes),
  },
} as const satisfies Record<string, OptionSpec>;

export const DATAGRAM_SCHEMA = {
  packetsPerDatagram: cliInt(1, 4096).default(DEFAULT_DATAGRAM_LIMITS.packets),
  datagramBytes: cliInt(32, MAX_DATAGRAM_BYTES).default(DEFAULT_DATAGRAM_LIMITS.bytes),
};

/** Options every data-plane server (switch, PS) takes besides its config. */
export const SERVER_OPTIONS = {
  host: {
    type: "string",
    valueName: "ADDR",
    description: "address to bind",
    defaultText: "127.0.0.1",
  },
  port: {
    type: "string",
    valueName: "PORT",
    description: "UDP port to bind; 0 picks a free one",
    defaultText: "0",
  },
  "stats-interval-ms": {
    type: "string",
    valueName: "MS",
    description: "also print a stats record this often; 0 = only at exit",
    defaultText: "0",
  },
  ...DATAGRAM_OPTIONS,
} as const satisfies Record<string, OptionSpec>;

export const SERVER_SCHEMA = {
  config: z.string().optional(),
  host: z.string().default("127.0.0.1"),
  port: cliInt(0, 65535).default(0),
  statsIntervalMs: cliInt(0, 3_600_000).default(0),
  ...DATAGRAM_SCHEMA,
};

const warned = new Set<string>();

/** Prints a warning (a deprecated name) on stderr, each line once per process. */
export function warnOnStderr(line: string): void {
  if (warned.has(line)) return;
  warned.add(line);
  process.stderr.write(`${line}\n`);
}

/**
 * Validates `input` with `schema`; a UsageError from `source` names every
 * bad field, and an old field name is one warning line (warnOnStderr).
 */
export function parseOrUsage<S extends z.ZodType>(
  schema: S,
  input: unknown,
  source: string,
): z.output<S> {
  const parsed = safeParseWithRenames(schema, input, source, warnOnStderr);
  if (!parsed.success) throw new UsageError(`${source}:\n${formatZodError(parsed.error)}`);
  return parsed.data;
}
