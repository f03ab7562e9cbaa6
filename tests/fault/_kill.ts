/**
 * Helpers of the kill -9 suite: spawn a command, SIGKILL it when a trigger fires (a delay, or
 * a condition on the files it writes, polled every few milliseconds), run it again until it
 * finishes, and inspect its output folder for half-written files.
 *
 * @module
 */

/** When to kill: `wait` resolves with a note once it is time, or undefined when aborted. */
export interface Trigger {
  /** Shown in the report, e.g. `"after 1834 ms"`. */
  label: string;
  /** Resolves when the process should be killed. */
  wait(signal: AbortSignal): Promise<string | undefined>;
}

/** Kill after `ms` milliseconds. */
export function afterDelay(ms: number): Trigger {
  return {
    label: `after ${Math.round(ms)} ms`,
    wait: (signal) =>
      new Promise((resolve) => {
        const t = setTimeout(() => resolve(`${Math.round(ms)} ms elapsed`), ms);
        signal.addEventListener("abort", () => {
          clearTimeout(t);
          resolve(undefined);
        });
      }),
  };
}

/**
 * Kill as soon as `check()` returns a note (polled every `pollMs`); `check` must be cheap and
 * synchronous (file-system probes).
 */
export function when(label: string, check: () => string | undefined, pollMs = 2): Trigger {
  return {
    label,
    wait: async (signal) => {
      while (!signal.aborted) {
        let note: string | undefined;
        try {
          note = check();
        } catch {
          note = undefined; // a file vanished between two probes: look again
        }
        if (note !== undefined) return note;
        await new Promise((r) => setTimeout(r, pollMs));
      }
      return undefined;
    },
  };
}

/** What one run did. */
export interface RunOutcome {
  /** The trigger's label (`"to the end"` for an uninterrupted run). */
  trigger: string;
  /** True when it was killed (false: it exited before the trigger fired). */
  killed: boolean;
  /** The trigger's note at the kill. */
  note?: string;
  /** Exit code (null when killed by a signal). */
  code: number | null;
  /** Signal that ended it, if any. */
  signal: string | null;
  /** Wall milliseconds from spawn to exit. */
  ms: number;
  /** Its stdout. */
  stdout: string;
  /** Its stderr. */
  stderr: string;
}

/**
 * Spawn `exe args` in `cwd` (with `env` added to this process's environment); kill it with
 * SIGKILL when `trigger` fires (never, if undefined).
 */
export async function runOnce(
  exe: string,
  args: string[],
  trigger?: Trigger,
  cwd?: string,
  env?: Record<string, string>,
): Promise<RunOutcome> {
  const t0 = performance.now();
  const child = new Deno.Command(exe, { args, cwd, env, stdout: "piped", stderr: "piped" })
    .spawn();
  const stdoutP = new Response(child.stdout).text();
  const stderrP = new Response(child.stderr).text();
  const ac = new AbortController();
  let killed = false;
  let note: string | undefined;
  if (trigger) {
    const fired = await Promise.race([
      child.status.then(() => undefined),
      trigger.wait(ac.signal).then((n) => n ?? undefined),
    ]);
    if (fired !== undefined) {
      try {
        child.kill("SIGKILL");
        killed = true;
        note = fired;
      } catch {
        // exited in between
      }
    }
    ac.abort();
  }
  const status = await child.status;
  const [stdout, stderr] = await Promise.all([stdoutP, stderrP]);
  if (killed && status.signal !== "SIGKILL") killed = false; // it had exited on its own
  return {
    trigger: trigger?.label ?? "to the end",
    killed,
    note,
    code: status.signal ? null : status.code,
    signal: status.signal,
    ms: performance.now() - t0,
    stdout,
    stderr,
  };
}

/**
 * Run the command once per trigger (each run killed when its trigger fires), then again
 * without a trigger until it exits (at most `maxFinishRuns` times).
 */
export async function killCampaign(
  exe: string,
  args: string[],
  triggers: Trigger[],
  opts: { cwd?: string; maxFinishRuns?: number } = {},
): Promise<{ runs: RunOutcome[]; final: RunOutcome }> {
  const runs: RunOutcome[] = [];
  for (const t of triggers) runs.push(await runOnce(exe, args, t, opts.cwd));
  let final = await runOnce(exe, args, undefined, opts.cwd);
  for (let i = 1; i < (opts.maxFinishRuns ?? 2) && final.code !== 0; i++) {
    runs.push(final);
    final = await runOnce(exe, args, undefined, opts.cwd);
  }
  return { runs, final };
}

/** Every file under `dir` (relative paths), recursively. */
export function listFiles(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory) {
      out.push(rel + "/", ...listFiles(`${dir}/${e.name}`, rel));
    } else out.push(rel);
  }
  return out.sort();
}

/** Problems in an output folder after a finished run. */
export interface OutDirScan {
  /** Temp files / folders left behind (`*.tmp*`). */
  tempLeft: string[];
  /** `.json` files that do not parse, `.jsonl` files with a line that does not parse. */
  badJson: string[];
  /** A run lock still present. */
  lockLeft: string[];
  /** Files checked. */
  files: number;
}

/** Look for half-written files: temp files, unparsable JSON / JSON lines, leftover locks. */
export function scanOutDir(dir: string): OutDirScan {
  const all = listFiles(dir);
  const scan: OutDirScan = { tempLeft: [], badJson: [], lockLeft: [], files: 0 };
  for (const rel of all) {
    const name = rel.replace(/\/$/, "").split("/").pop()!;
    if (/\.tmp/.test(name)) scan.tempLeft.push(rel);
    if (rel.endsWith("/")) continue;
    scan.files++;
    if (name === ".lock") scan.lockLeft.push(rel);
    if (name.endsWith(".json")) {
      try {
        JSON.parse(Deno.readTextFileSync(`${dir}/${rel}`));
      } catch {
        scan.badJson.push(rel);
      }
    } else if (name.endsWith(".jsonl")) {
      const lines = Deno.readTextFileSync(`${dir}/${rel}`).split("\n").filter((l) => l !== "");
      lines.forEach((l, i) => {
        try {
          JSON.parse(l);
        } catch {
          scan.badJson.push(`${rel} line ${i + 1}`);
        }
      });
    }
  }
  return scan;
}

/** The problems of a scan as one phrase each (empty when clean). */
export function scanProblems(scan: OutDirScan): string[] {
  const p: string[] = [];
  if (scan.tempLeft.length) p.push(`temp files left: ${scan.tempLeft.join(", ")}`);
  if (scan.badJson.length) p.push(`unparsable JSON: ${scan.badJson.join(", ")}`);
  if (scan.lockLeft.length) p.push(`locks left: ${scan.lockLeft.join(", ")}`);
  return p;
}

/**
 * Run the command with train()'s fault-injection pause set (src/train.ts `faultPause`): it
 * stops right after writing the checkpoint whose path ends with `checkpoint`, writes `marker`,
 * and is killed with SIGKILL there — a deterministic kill point. Resolves when it has exited
 * (also when it finished without reaching that checkpoint: then `killed` is false).
 */
export async function runKilledAfterCheckpoint(
  exe: string,
  args: string[],
  checkpoint: string,
  marker: string,
  cwd?: string,
): Promise<RunOutcome> {
  await Deno.remove(marker).catch(() => {});
  const trigger = when(`after checkpoint ${checkpoint}`, () => {
    try {
      return Deno.readTextFileSync(marker).trim() || undefined;
    } catch {
      return undefined;
    }
  }, 20);
  return await runOnce(exe, args, trigger, cwd, {
    RECALIGN_PAUSE_AFTER_CHECKPOINT: checkpoint,
    RECALIGN_PAUSE_MARKER: marker,
  });
}

/** A small seeded PRNG (mulberry32) for kill points. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The `deno run …` command of a task in deno.json, with `deno` replaced by this executable. */
export async function taskCommand(root: string, task: string): Promise<string[]> {
  const cfg = JSON.parse(await Deno.readTextFile(`${root}/deno.json`));
  const line: string | undefined = cfg.tasks?.[task];
  if (!line) throw new Error(`deno.json has no task "${task}"`);
  const words = line.trim().split(/\s+/);
  if (words[0] !== "deno" || /[&|;]/.test(line)) {
    throw new Error(`task "${task}" is not a single "deno …" command: ${line}`);
  }
  return [Deno.execPath(), ...words.slice(1)];
}
