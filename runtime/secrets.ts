import { readFile } from "node:fs/promises";
import { UsageError } from "./cli.js";

/**
 * A secret (a job credential, the operator token) from, in order: its
 * option's value (with a warning: every local user can read a process's
 * arguments), a file named by its `-file` option (its first line), or an
 * environment variable.
 */
export async function secretFrom(
  option: string,
  value: string | undefined,
  file: string | undefined,
  environment: string,
): Promise<string | undefined> {
  if (value !== undefined && file !== undefined) {
    throw new UsageError(`--${option} and --${option}-file: give one`);
  }
  if (value !== undefined) {
    process.stderr.write(
      `warning: --${option} is visible to every local user in the process list (ps); prefer $${environment} or --${option}-file\n`,
    );
    return value;
  }
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      throw new UsageError(`--${option}-file: cannot read ${file}: ${(error as Error).message}`);
    }
    const line = text.split(/\r?\n/)[0].trim();
    if (line === "") throw new UsageError(`--${option}-file: ${file} is empty`);
    return line;
  }
  return process.env[environment] || undefined;
}
