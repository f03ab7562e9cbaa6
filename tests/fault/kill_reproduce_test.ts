/**
 * kill -9 fault injection on `deno task reproduce --paper dmpo --scale test --no-ablations`:
 * the task's own `deno run` command (flags read from deno.json) is killed with SIGKILL at
 * seeded random moments, then rerun to the end; its metrics.json must equal an uninterrupted
 * run's once the wall-clock fields are removed, findings.md must be identical, and no file in
 * the output folder may be half-written. Observations go to the reliability report.
 */
import assert from "node:assert/strict";
import {
  afterDelay,
  killCampaign,
  runOnce,
  scanOutDir,
  scanProblems,
  seededRandom,
  taskCommand,
} from "./_kill.ts";
import { bySetting, parseReport, recordFaults } from "./report.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const SUITE = "deno task reproduce --paper dmpo --scale test --no-ablations";

/**
 * Fields that measure wall-clock time (or the checkout), removed before comparing:
 * started, finished, seconds, stage_seconds, timings, any `*_seconds`, and git_head (the lead
 * may commit between the two runs).
 */
export const WALL_CLOCK_FIELDS = ["started", "finished", "seconds", "stage_seconds", "timings"];

/** A copy of a metrics.json value without its wall-clock fields. */
export function withoutWallClock(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(withoutWallClock);
  if (x !== null && typeof x === "object") {
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(x)) {
      if (WALL_CLOCK_FIELDS.includes(k) || k.endsWith("_seconds") || k === "git_head") continue;
      o[k] = withoutWallClock(v);
    }
    return o;
  }
  return x;
}

/** Paths (`a.b[2].c`) where two JSON values differ, at most `max` of them. */
export function jsonDiff(a: unknown, b: unknown, path = "", out: string[] = [], max = 8): string[] {
  if (out.length >= max) return out;
  if (JSON.stringify(a) === JSON.stringify(b)) return out;
  if (a !== null && b !== null && typeof a === "object" && typeof b === "object") {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      const p = Array.isArray(a) ? `${path}[${k}]` : `${path}.${k}`;
      jsonDiff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], p, out, max);
    }
  } else {
    out.push(
      `${path || "(root)"}: ${JSON.stringify(a)?.slice(0, 60)} vs ${
        JSON.stringify(b)?.slice(0, 60)
      }`,
    );
  }
  return out;
}

/** The last progress line a run printed (what it was doing when killed). */
function lastProgress(stderr: string): string {
  const lines = stderr.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("["));
  return (lines.at(-1) ?? "(start-up, nothing printed yet)").slice(0, 120);
}

Deno.test("withoutWallClock() drops timing fields at any depth and keeps the rest", () => {
  const m = {
    started: "x",
    seconds: 3,
    stage_seconds: [],
    a: { train_seconds: 1, eval_seconds: 2, auc: 0.5, timings: [1] },
    rows: [{ finished: "y", v: 1 }],
  };
  assert.deepEqual(withoutWallClock(m), { a: { auc: 0.5 }, rows: [{ v: 1 }] });
  assert.deepEqual(jsonDiff({ a: [1, 2] }, { a: [1, 3] }), [".a[1]: 2 vs 3"]);
});

Deno.test("reproduce killed with SIGKILL at random moments, then rerun, writes the same metrics.json and no half-written file", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "recalign-kill-reproduce-" });
  try {
    const [exe, ...base] = await taskCommand(ROOT, "reproduce");
    const args = (out: string) => [
      ...base,
      "--paper",
      "dmpo",
      "--scale",
      "test",
      "--no-ablations",
      "--out",
      out,
    ];
    const ref = await runOnce(exe, args(`${tmp}/ref`), undefined, ROOT);
    assert.equal(ref.code, 0, ref.stderr);
    const rand = seededRandom(0x5eed);
    const nKills = bySetting(2, 3);
    const delays = Array.from({ length: nKills }, () => (0.1 + 0.8 * rand()) * ref.ms);
    const out = `${tmp}/killed`;
    const { runs, final } = await killCampaign(exe, args(out), delays.map(afterDelay), {
      cwd: ROOT,
    });
    const kills = runs.filter((r) => r.killed).length;
    const details = [
      `uninterrupted run: ${Math.round(ref.ms / 100) / 10} s`,
      ...runs.map((r) =>
        r.killed
          ? `killed ${r.trigger}, during: ${lastProgress(r.stderr)}`
          : `run ${r.trigger}: exited ${r.code} on its own`
      ),
      `final rerun: exit ${final.code} in ${Math.round(final.ms / 100) / 10} s` +
      (/from disk cache|\[cache\]/.test(final.stderr) ? ", stage 0 read from the disk cache" : ""),
    ];
    const problems: string[] = [];
    if (final.code !== 0) problems.push(`the rerun failed: ${final.stderr.trim().slice(-300)}`);
    const metricsPath = "dmpo/synthetic/metrics.json";
    let diff: string[] = [];
    if (final.code === 0) {
      const a = JSON.parse(await Deno.readTextFile(`${tmp}/ref/${metricsPath}`));
      const b = JSON.parse(await Deno.readTextFile(`${out}/${metricsPath}`));
      diff = jsonDiff(withoutWallClock(a), withoutWallClock(b));
      if (diff.length) problems.push(`metrics.json differs at ${diff.join("; ")}`);
      const fa = await Deno.readTextFile(`${tmp}/ref/dmpo/synthetic/findings.md`);
      const fb = await Deno.readTextFile(`${out}/dmpo/synthetic/findings.md`);
      if (fa !== fb) problems.push("findings.md differs");
    }
    const scan = scanOutDir(out);
    problems.push(...scanProblems(scan));
    const record = {
      suite: SUITE,
      fault: "SIGKILL after a seeded random delay, then rerun",
      injected: kills,
      outcome: `${kills} of ${nKills} runs killed, then rerun to the end; metrics.json ` +
        `(wall-clock fields removed) ${diff.length ? "DIFFERS" : "equal"} and findings.md ` +
        `${problems.some((p) => p.startsWith("findings")) ? "differs" : "identical"} to the ` +
        `uninterrupted run's; ${scan.files} files checked: ${
          scanProblems(scan).join("; ") || "every .json parses, no temp file left"
        }`,
      lost: problems.join("; ") || "nothing",
      details,
    };
    const path = await recordFaults([record]);
    const report = parseReport(await Deno.readTextFile(path));
    assert.ok(report.rows.some((r) => r.suite === SUITE && r.injected === kills));
    assert.deepEqual(problems, [], details.join("\n"));
    assert.ok(kills >= 1, details.join("\n"));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
