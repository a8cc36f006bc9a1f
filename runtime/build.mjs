#!/usr/bin/env node
/**
 * `npm run build` (and every npm script before it runs): one build at a time,
 * and never a half-written dist/ (README.md, "Building").
 *
 * - Up to date: dist/.build-hash holds the hash of every input (the sources
 *   tsconfig.json includes, tsconfig.json, package.json, the TypeScript
 *   version); when it matches, nothing is written and this returns at once.
 * - Otherwise tsc writes a build aside (.dist-build-PID/), which then takes
 *   dist/'s place by two renames: a command that is running keeps loading
 *   whole files of one build or the other, never a file being written.
 * - A lock (.build-lock/) makes a second build wait for the first, then find
 *   dist/ up to date.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const dist = path.join(root, "dist");
const stampFile = ".build-hash";
const lock = path.join(root, ".build-lock");
/** A lock older than this was left by a build that died: taken over. */
const STALE_LOCK_MS = 10 * 60_000;
/** How long a build waits for another to finish. */
const LOCK_WAIT_MS = 15 * 60_000;

function inputsHash() {
  const tsconfig = fs.readFileSync(path.join(root, "tsconfig.json"), "utf8");
  const hash = createHash("sha256");
  hash.update(tsconfig);
  hash.update(fs.readFileSync(path.join(root, "package.json")));
  const tsPackage = path.join(root, "node_modules", "typescript", "package.json");
  hash.update(
    fs.existsSync(tsPackage) ? JSON.parse(fs.readFileSync(tsPackage, "utf8")).version : "",
  );
  const files = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith(".ts")) files.push(full);
    }
  };
  for (const dir of JSON.parse(tsconfig).include) {
    const full = path.join(root, dir);
    if (fs.existsSync(full)) walk(full);
  }
  files.sort();
  for (const file of files) {
    hash.update(path.relative(root, file));
    hash.update("\0");
    hash.update(fs.readFileSync(file));
  }
  return hash.digest("hex");
}

const built = () => {
  try {
    return fs.readFileSync(path.join(dist, stampFile), "utf8");
  } catch {
    return "";
  }
};

const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

function acquireLock() {
  const started = Date.now();
  for (;;) {
    try {
      fs.mkdirSync(lock);
      fs.writeFileSync(path.join(lock, "pid"), String(process.pid));
      return;
    } catch (error) {
      if (error.code !== "EEXIST") throw error;
    }
    let age = 0;
    try {
      age = Date.now() - fs.statSync(lock).mtimeMs;
    } catch {
      continue; // released meanwhile
    }
    if (age > STALE_LOCK_MS) {
      fs.rmSync(lock, { recursive: true, force: true });
      continue;
    }
    if (Date.now() - started > LOCK_WAIT_MS) {
      process.stderr.write(
        `build: another build holds ${lock} for over ${LOCK_WAIT_MS / 60_000} min\n`,
      );
      process.exit(1);
    }
    sleep(200);
  }
}

const hash = inputsHash();
if (built() === hash) process.exit(0);
acquireLock();
let status = 0;
try {
  // Another build may have done it while this one waited.
  if (built() !== hash) {
    const aside = path.join(root, `.dist-build-${process.pid}`);
    fs.rmSync(aside, { recursive: true, force: true });
    const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc");
    const r = spawnSync(process.execPath, [tsc, "-p", root, "--outDir", aside], {
      stdio: "inherit",
    });
    status = r.status ?? 1;
    if (status !== 0) {
      fs.rmSync(aside, { recursive: true, force: true });
    } else {
      fs.writeFileSync(path.join(aside, stampFile), hash);
      const old = path.join(root, `.dist-old-${process.pid}`);
      if (fs.existsSync(dist)) fs.renameSync(dist, old);
      fs.renameSync(aside, dist);
      fs.rmSync(old, { recursive: true, force: true });
    }
  }
} finally {
  fs.rmSync(lock, { recursive: true, force: true });
}
process.exit(status);
