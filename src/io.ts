/**
 * Small file helpers used by checkpoints and result logs: crash-safe (atomic) writes, SHA-256
 * digests, directory creation and JSON-lines appends.
 *
 * An atomic write goes to a temporary file in the same directory, is flushed to disk
 * (`fsync`), then renamed over the target, and the directory is flushed too where the
 * platform allows it. A reader therefore sees either the old file or the whole new one,
 * never a torn write, even if the process dies half-way.
 *
 * @module
 */

const encoder = new TextEncoder();

/** Data {@link writeFileAtomic} accepts: bytes, text (written as UTF-8), or chunks of bytes. */
export type FileData = Uint8Array | string | readonly Uint8Array[];

function splitPath(path: string): { dir: string; base: string } {
  const i = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  if (i < 0) return { dir: ".", base: path };
  return { dir: i === 0 ? path.slice(0, 1) : path.slice(0, i), base: path.slice(i + 1) };
}

function tempName(path: string): string {
  const { dir, base } = splitPath(path);
  const rand = crypto.getRandomValues(new Uint32Array(2));
  const tag = `${rand[0].toString(36)}${rand[1].toString(36)}`;
  // The pid lets removeStaleTempFiles() tell a dead writer's leftover from a live write.
  return `${dir === "/" ? "" : dir}/.${base}.tmp-${Deno.pid}-${tag}`;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await file.write(bytes.subarray(off));
}

/** Flush a directory entry to disk (makes a rename durable); silently skipped where unsupported. */
async function syncDir(dir: string): Promise<void> {
  let f: Deno.FsFile | undefined;
  try {
    f = await Deno.open(dir, { read: true });
    await f.sync();
  } catch {
    // Windows and some file systems cannot open or fsync a directory: best effort only.
  } finally {
    f?.close();
  }
}

/**
 * Write a file atomically: temp file in the same directory → fsync → rename over `path` →
 * fsync the directory (where possible). On failure the temp file is removed and the old
 * contents of `path`, if any, are left untouched.
 *
 * @example Usage
 * ```ts
 * import { writeFileAtomic } from "./io.ts";
 * await writeFileAtomic("runs/recalign_example.txt", "hello\n");
 * ```
 *
 * @param path The file to create or replace. Its directory must exist.
 * @param data Bytes, UTF-8 text, or an array of byte chunks written in order.
 */
export async function writeFileAtomic(path: string, data: FileData): Promise<void> {
  const chunks = typeof data === "string"
    ? [encoder.encode(data)]
    : data instanceof Uint8Array
    ? [data]
    : data;
  const tmp = tempName(path);
  const file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o644 });
  let closed = false;
  try {
    for (const chunk of chunks) await writeAll(file, chunk);
    await file.sync();
    file.close();
    closed = true;
    await Deno.rename(tmp, path);
  } catch (err) {
    if (!closed) file.close();
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  await syncDir(splitPath(path).dir);
}

/**
 * Write a value as pretty-printed JSON (2-space indent, trailing newline), atomically.
 *
 * @example Usage
 * ```ts
 * import { writeJsonAtomic } from "./io.ts";
 * await writeJsonAtomic("runs/recalign_example.json", { step: 3 });
 * ```
 *
 * @param path The file to create or replace.
 * @param value Any JSON-serialisable value.
 */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n");
}

/**
 * SHA-256 of bytes (or of a string's UTF-8 encoding), as 64 lowercase hex digits.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { sha256Hex } from "./io.ts";
 * assert.equal(
 *   await sha256Hex("abc"),
 *   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
 * );
 * ```
 *
 * @param data The bytes to hash (a string is hashed as UTF-8).
 * @returns The hex digest.
 */
export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  // Copy into a plain ArrayBuffer: crypto.subtle does not accept views of SharedArrayBuffers.
  const digest = await crypto.subtle.digest("SHA-256", new Uint8Array(bytes));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Create a directory and its parents; does nothing if it already exists.
 *
 * @example Usage
 * ```ts
 * import { ensureDir } from "./io.ts";
 * await ensureDir("runs/recalign_example/a/b");
 * ```
 *
 * @param path The directory to create.
 */
export async function ensureDir(path: string): Promise<void> {
  await Deno.mkdir(path, { recursive: true });
}

/**
 * Append one object as a single JSON line (JSON-lines format) to a file, creating the file if
 * needed. The line is written in append mode in one piece (one `write` call unless the OS
 * accepts only part of it), so concurrent appenders do not normally interleave within a line.
 *
 * @example Usage
 * ```ts
 * import { appendJsonLine } from "./io.ts";
 * await appendJsonLine("runs/recalign_example.jsonl", { step: 1, loss: 0.69 });
 * ```
 *
 * @param path The `.jsonl` file.
 * @param obj Any JSON-serialisable value (must not serialise to `undefined`).
 */
export async function appendJsonLine(path: string, obj: unknown): Promise<void> {
  const line = JSON.stringify(obj);
  if (line === undefined) throw new TypeError(`appendJsonLine(): value is not JSON-serialisable`);
  const file = await Deno.open(path, { append: true, create: true });
  try {
    await writeAll(file, encoder.encode(line + "\n"));
  } finally {
    file.close();
  }
}

/** A held run lock (see {@link acquireLock}). */
export interface RunLock {
  /** The lock file. */
  path: string;
  /** Remove the lock (idempotent). */
  release(): Promise<void>;
}

function pidAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
  }
  // No /proc (macOS) or no permission: ask the OS with signal 0 semantics via SIGCONT-less probe.
  try {
    Deno.kill(pid, "SIGURG"); // ignored by default; throws if the process does not exist
    return true;
  } catch {
    return false;
  }
}

/**
 * Take `dir/.lock` for this process: refuses (with the other run's pid and start time) while
 * another live process holds it, and takes over a stale lock left by a dead one, saying so.
 * Throws `Error` with a readable message; the caller reports it.
 */
export async function acquireLock(dir: string, label = "run"): Promise<RunLock> {
  await ensureDir(dir);
  const path = `${dir}/.lock`;
  const me = { pid: Deno.pid, started: new Date().toISOString(), label };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const f = await Deno.open(path, { write: true, createNew: true });
      await writeAll(f, encoder.encode(JSON.stringify(me)));
      f.close();
      let released = false;
      return {
        path,
        release: async () => {
          if (released) return;
          released = true;
          await Deno.remove(path).catch(() => {});
        },
      };
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      let other: { pid?: number; started?: string; label?: string } = {};
      try {
        other = JSON.parse(await Deno.readTextFile(path));
      } catch { /* unreadable lock: treat as stale */ }
      if (other.pid !== undefined && other.pid !== Deno.pid && pidAlive(other.pid)) {
        throw new Error(
          `${dir} is in use by another ${
            other.label ?? "run"
          } (pid ${other.pid}, started ${other.started}); ` +
            `wait for it to finish or choose another folder`,
        );
      }
      console.error(
        `[recalign] taking over a stale lock in ${dir} (pid ${other.pid ?? "?"} is gone)`,
      );
      await Deno.remove(path).catch(() => {});
    }
  }
  throw new Error(`could not take the lock ${path}`);
}

/** Temp files of {@link writeFileAtomic} (`.name.tmp-PID-tag`) and temp folders (`name.tmp-PID`). */
const TEMP_NAME = /^(?:\..+\.tmp-(\d+)-[0-9a-z]+|.+\.tmp-(\d+))$/;

/**
 * Remove the temporary files and folders that writers killed half-way left in `dir` (and,
 * with `recursive`, its sub-folders): `.name.tmp-PID-tag` files of {@link writeFileAtomic} and
 * `name.tmp-PID` folders (checkpoints), whose process PID is gone. Those of live processes are
 * left alone. A missing `dir` is not an error.
 *
 * @param dir The folder to sweep.
 * @param opts `recursive`: also sweep sub-folders.
 * @returns The paths removed.
 */
export async function removeStaleTempFiles(
  dir: string,
  opts: { recursive?: boolean } = {},
): Promise<string[]> {
  const removed: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return [];
    throw e;
  }
  for (const e of entries) {
    const path = `${dir}/${e.name}`;
    const m = TEMP_NAME.exec(e.name);
    const pid = m ? Number(m[1] ?? m[2]) : NaN;
    if (m) {
      if (pid === Deno.pid || pidAlive(pid)) continue; // a write in progress
      await Deno.remove(path, { recursive: true }).catch(() => {});
      removed.push(path);
    } else if (opts.recursive && e.isDirectory) {
      removed.push(...await removeStaleTempFiles(path, opts));
    }
  }
  return removed;
}

/** Check that `dir` exists (creating it) and is writable, by writing and removing a probe file. */
export async function assertWritableDir(dir: string): Promise<void> {
  try {
    await ensureDir(dir);
    const probe = `${dir}/.write-probe-${Deno.pid}`;
    await Deno.writeTextFile(probe, "ok");
    await Deno.remove(probe);
  } catch (e) {
    throw new Error(`cannot write to ${dir}: ${(e as Error).message}`, { cause: e });
  }
}
