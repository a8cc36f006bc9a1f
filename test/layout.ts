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
 *   folder: they meet only over the wire. No role imports another.
 * - link/ (the link model, sans-IO) imports proto/ only.
 * - experiment/ is what stays the same whichever executor runs a scenario:
 *   the scenario model and its expansion, the results and their one builder,
 *   statistics, shape analyses, tables, figures, the report page, the front
 *   doors' shared options and output. It imports proto/, itself, the CLI
 *   conventions (runtime/cli.ts: UsageError and the option types every front
 *   door shares), zod and its chart libraries, and Node modules but never
 *   node:child_process; never a role, never an executor.
 * - The two executors import experiment/ and never each other: runner/ (real
 *   processes on 127.0.0.1, `ina-experiment`) imports proto/, runtime/,
 *   experiment/; sim/ (virtual time, `ina-sim`) imports proto/, runtime/,
 *   link/, experiment/ and the roles' sans-IO cores (and their reports, the
 *   collectives, the workload, the switch's control plane and memory
 *   manager), and nothing it reaches, directly or not, imports
 *   node:child_process: the simulator starts no process.
 * - bench/ (the benchmark and the reference comparisons) imports proto/,
 *   runtime/, experiment/, runner/, sim/; only the benchmark (bench/bench.ts)
 *   may import a role's sans-IO core, which it measures.
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

const EXECUTORS = ["runner", "sim"];

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
  /** node: built-ins this folder may not import */
  nodeForbidden?: string[];
  /** node: built-ins nothing this folder imports, directly or not, may import */
  neverReaches?: string[];
}

export const RULES: Record<string, Rule> = {
  proto: { folders: [], packages: ["zod"], node: false },
  runtime: { folders: ["proto", "link"], node: true },
  switch: { folders: ["proto", "runtime"], node: true },
  worker: { folders: ["proto", "runtime"], node: true },
  ps: { folders: ["proto", "runtime"], node: true },
  link: { folders: ["proto"], packages: [], node: false },
  experiment: {
    folders: ["proto"],
    files: ["runtime/cli.ts"],
    packages: ["zod", "vega", "vega-lite", "@resvg/resvg-js"],
    node: true,
    nodeForbidden: ["node:child_process"],
    neverReaches: ["node:child_process"],
  },
  runner: { folders: ["proto", "runtime", "experiment"], node: true },
  sim: {
    folders: ["proto", "runtime", "link", "experiment"],
    files: [
      ...CORES,
      "worker/collective.ts",
      "worker/workload.ts",
      "switch/report.ts",
      "ps/report.ts",
      "switch/control.ts",
      "switch/memory.ts",
    ],
    node: true,
    neverReaches: ["node:child_process"],
  },
  bench: {
    folders: ["proto", "runtime", "experiment", "runner", "sim"],
    exceptions: { "bench/bench.ts": CORES },
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
  out.push(...closureBreaches(root));
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
    if (!rule.node) return `${folder}/ must not import Node modules (I/O belongs in runtime/)`;
    if (rule.nodeForbidden?.includes(specifier)) {
      return `${folder}/ must not import ${specifier} (processes are an executor's: runner/)`;
    }
    return null;
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
  if (EXECUTORS.includes(folder) && EXECUTORS.includes(top)) {
    return `executor ${folder}/ imports executor ${top}/: they share only experiment/`;
  }
  if (folder === "experiment" && EXECUTORS.includes(top)) {
    return `experiment/ imports executor ${top}/: it is the same whichever executor runs it`;
  }
  if (folder === "experiment" && ROLES.includes(top)) {
    return `experiment/ imports role ${top}/: results come from records, not a role's insides`;
  }
  return `${folder}/ may import ${[folder, ...rule.folders].join(", ")}, not ${top}/`;
}

/** A source file's relative imports, as repository paths of .ts files. */
function localImports(root: string, file: string): string[] {
  let source: string;
  try {
    source = readFileSync(join(root, file), "utf8");
  } catch {
    return [];
  }
  return importsOf(source).map((specifier) =>
    specifier.startsWith(".")
      ? normalize(join(dirname(file), specifier))
          .split(sep)
          .join("/")
          .replace(/\.js$/, ".ts")
      : specifier,
  );
}

/**
 * The `neverReaches` rules: for every file of such a folder, the shortest
 * chain of imports from it to a module that imports a forbidden built-in.
 */
function closureBreaches(root: string): Violation[] {
  const out: Violation[] = [];
  const imports = new Map<string, string[]>();
  const importsOfFile = (file: string) => {
    let list = imports.get(file);
    if (list === undefined) {
      list = localImports(root, file);
      imports.set(file, list);
    }
    return list;
  };
  for (const [folder, rule] of Object.entries(RULES)) {
    if (rule.neverReaches === undefined) continue;
    for (const path of sourceFiles(join(root, folder))) {
      const start = relative(root, path).split(sep).join("/");
      const from = new Map<string, string | null>([[start, null]]);
      const queue = [start];
      search: while (queue.length > 0) {
        const file = queue.shift() as string;
        for (const target of importsOfFile(file)) {
          if (rule.neverReaches.includes(target)) {
            const chain: string[] = [];
            for (let at: string | null = file; at !== null; at = from.get(at) ?? null) {
              chain.unshift(at);
            }
            out.push({
              file: start,
              specifier: target,
              why: `${folder}/ must never reach ${target}, not even indirectly: ${[...chain, target].join(" -> ")}`,
            });
            break search;
          }
          if (target.endsWith(".ts") && !from.has(target)) {
            from.set(target, file);
            queue.push(target);
          }
        }
      }
    }
  }
  return out;
}
