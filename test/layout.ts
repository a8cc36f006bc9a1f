import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative, sep } from "node:path";

/**
 * The house plan as a check: which top-level folder may import which.
 *
 * - proto/ is the contract between processes: it imports only proto/ and
 *   zod, no Node module, no `process`; every file in it is listed in
 *   proto/README.md's table of the contract's files.
 * - runtime/ is what every process shares to run: it imports proto/,
 *   runtime/ and link/ (its adapters pace packets by the link model), never
 *   a role.
 * - The roles (switch/, worker/, ps/) import proto/, runtime/ and their own
 *   folder: they meet only over the wire.
 * - bench/ talks to processes through their records and HTTP APIs: proto/,
 *   runtime/, bench/; only the benchmark (bench/bench.ts) may import a role's
 *   sans-IO core, which it measures.
 * - link/ (the link model, sans-IO) imports proto/ only; sim/ (the simulator)
 *   imports proto/, runtime/, link/, the roles' sans-IO cores (and their
 *   reports, the collectives, the workload) and the runner's scenario, result
 *   and table modules, so its results are a real run's.
 * - test/ may import anything.
 */

export interface Violation {
  file: string;
  /** the import as written, or the rule that does not hold */
  specifier: string;
  why: string;
}

const ROLES = ["switch", "worker", "ps"];
const CORES = ROLES.map((role) => `${role}/core.ts`);

interface Rule {
  /** top-level folders this folder may import from (its own is always allowed) */
  folders: string[];
  /** single files outside those folders it may import */
  files?: string[];
  /** files of this folder that may import these further files */
  exceptions?: Record<string, string[]>;
  /** npm packages allowed; undefined: any */
  packages?: string[];
  /** whether node: built-ins may be imported */
  node: boolean;
}

export const RULES: Record<string, Rule> = {
  proto: { folders: [], packages: ["zod"], node: false },
  runtime: { folders: ["proto", "link"], node: true },
  switch: { folders: ["proto", "runtime"], node: true },
  worker: { folders: ["proto", "runtime"], node: true },
  ps: { folders: ["proto", "runtime"], node: true },
  bench: { folders: ["proto", "runtime"], exceptions: { "bench/bench.ts": CORES }, node: true },
  link: { folders: ["proto"], packages: [], node: false },
  sim: {
    folders: ["proto", "runtime", "link"],
    files: [
      ...CORES,
      "worker/collective.ts",
      "worker/workload.ts",
      "switch/report.ts",
      "ps/report.ts",
      "bench/scenario.ts",
      "bench/run.ts",
      "bench/table.ts",
      "bench/shapes.ts",
      "bench/schedule.ts",
      "bench/sweep.ts",
      "switch/control.ts",
      "switch/memory.ts",
      "switch/jobs.ts",
    ],
    node: true,
  },
};

const IMPORT =
  /(?:^|[\s;])(?:import|export)\s[^;]*?\bfrom\s*"([^"]+)"|(?:^|[\s;])import\s*\(?\s*"([^"]+)"/gm;

/** The module specifiers a TypeScript source imports (static, re-exports, dynamic, side effect). */
export function importsOf(source: string): string[] {
  const found: string[] = [];
  for (const match of withoutComments(source).matchAll(IMPORT)) found.push(match[1] ?? match[2]);
  return found;
}

/** `source` without its comments (a `//` after a non-space, as in a URL, stays). */
function withoutComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|\s)\/\/.*$/gm, "$1");
}

function sourceFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === "node_modules" ? [] : sourceFiles(path);
    return name.endsWith(".ts") ? [path] : [];
  });
}

/** The files that proto/README.md lists as the contract (its table of `proto/*.ts` files). */
export function contractFiles(specText: string): string[] {
  return [...specText.matchAll(/^\|\s*`(proto\/[\w./-]+\.ts)`\s*\|/gm)].map((m) => m[1]);
}

/** Checks every source file under `root` against RULES; returns every breach. */
export function checkLayout(root: string): Violation[] {
  const out: Violation[] = [];
  for (const [folder, rule] of Object.entries(RULES)) {
    for (const path of sourceFiles(join(root, folder))) {
      const file = relative(root, path).split(sep).join("/");
      const source = readFileSync(path, "utf8");
      for (const specifier of importsOf(source)) {
        const why = breach(file, folder, rule, specifier);
        if (why !== null) out.push({ file, specifier, why });
      }
      if (!rule.node && /\bprocess\s*\./.test(withoutComments(source))) {
        out.push({ file, specifier: "process", why: `${folder}/ must not use process` });
      }
    }
  }
  let spec = "";
  try {
    spec = readFileSync(join(root, "proto", "README.md"), "utf8");
  } catch {
    // No spec: every proto file is unlisted.
  }
  const listed = new Set(contractFiles(spec));
  for (const path of sourceFiles(join(root, "proto"))) {
    const file = relative(root, path).split(sep).join("/");
    if (!listed.has(file)) {
      out.push({
        file,
        specifier: "proto/README.md",
        why: "not listed in proto/README.md as part of the contract: if two processes need not agree on it, it belongs in runtime/ or a role",
      });
    }
  }
  return out;
}

function breach(file: string, folder: string, rule: Rule, specifier: string): string | null {
  if (specifier.startsWith("node:")) {
    return rule.node ? null : `${folder}/ must not import Node modules (I/O belongs in runtime/)`;
  }
  if (!specifier.startsWith(".")) {
    const name = specifier.startsWith("@")
      ? specifier.split("/").slice(0, 2).join("/")
      : specifier.split("/")[0];
    if (rule.packages === undefined || rule.packages.includes(name)) return null;
    return `${folder}/ may import only ${rule.packages.join(", ") || "no packages"}, not ${name}`;
  }
  const target = normalize(join(dirname(file), specifier))
    .split(sep)
    .join("/");
  const top = target.split("/")[0];
  if (top === folder) return null;
  if (rule.folders.includes(top)) return null;
  const targetTs = target.replace(/\.js$/, ".ts");
  if (rule.files?.includes(targetTs) || rule.exceptions?.[file]?.includes(targetTs)) return null;
  if (ROLES.includes(folder) && ROLES.includes(top)) {
    return `role ${folder}/ imports role ${top}/: roles meet only over the wire`;
  }
  return `${folder}/ may import ${[folder, ...rule.folders].join(", ")}, not ${top}/`;
}
