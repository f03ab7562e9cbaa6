/**
 * kill -9 fault injection on `deno task reproduce` at `--scale test`: the task's own
 * `deno run` command (flags read from deno.json) is killed with SIGKILL, then rerun to the end;
 * its metrics.json must equal an uninterrupted run's once the wall-clock fields are removed,
 * findings.md must be identical, and no file in the output folder may be half-written.
 *
 * - `--paper dmpo --no-ablations`, killed at seeded random moments;
 * - deterministic kills, each right after the first checkpoint of one kind of stage (train()'s
 *   fault-injection pause, see {@link runKilledAfterCheckpoint}), chained in one output folder:
 *   each rerun resumes the stage killed before it and runs on to the next kill point.
 *   `--paper sdpo`: stage 0 (full fine-tuning SFT), a main LoRA arm (precomputed reference,
 *   best-checkpoint selection), an ablation arm with a live reference (and, in the full
 *   setting, one with a precomputed reference); `--paper dmpo --no-ablations`: DMPO's full
 *   fine-tuning SFT and a LoRA arm with a precomputed reference. The kinds are checked against
 *   the arm.json files of the uninterrupted run.
 *   Each rerun must log that it resumed from exactly the checkpoint the kill followed.
 *
 * Observations go to the reliability report.
 */
import assert from "node:assert/strict";
import {
  afterDelay,
  killCampaign,
  runKilledAfterCheckpoint,
  runOnce,
  type RunOutcome,
  scanOutDir,
  scanProblems,
  seededRandom,
  taskCommand,
} from "./_kill.ts";
import { bySetting, parseReport, recordFaults } from "./report.ts";
import { SCALE_PRESETS } from "../../src/experiments/common.ts";
import { armSlug } from "../../src/experiments/runs.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const SUITE = "deno task reproduce --paper dmpo --scale test --no-ablations";
const DMPO_FLAGS = ["--paper", "dmpo", "--scale", "test", "--no-ablations"];
const SDPO_FLAGS = ["--paper", "sdpo", "--scale", "test", "--seeds", "1"];

// Uninterrupted runs, one per command line, shared by the tests of this file (removed when
// the file's tests are over).
let refRoot: string | undefined;
const refs = new Map<string, Promise<{ dir: string; run: RunOutcome }>>();

/** The uninterrupted run of `reproduce <flags>` (run once per file). */
function reference(flags: string[]): Promise<{ dir: string; run: RunOutcome }> {
  const key = flags.join(" ");
  if (!refs.has(key)) {
    refs.set(
      key,
      (async () => {
        const [exe, ...base] = await taskCommand(ROOT, "reproduce");
        if (!refRoot) {
          const root = refRoot = await Deno.makeTempDir({ prefix: "recalign-kill-reproduce-ref-" });
          globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
        }
        const dir = `${refRoot}/${refs.size}`;
        const run = await runOnce(exe, [...base, ...flags, "--out", dir], undefined, ROOT);
        assert.equal(run.code, 0, run.stderr);
        return { dir, run };
      })(),
    );
  }
  return refs.get(key)!;
}

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
    const args = (out: string) => [...base, ...DMPO_FLAGS, "--out", out];
    const { dir: refDir, run: ref } = await reference(DMPO_FLAGS);
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
      const a = JSON.parse(await Deno.readTextFile(`${refDir}/${metricsPath}`));
      const b = JSON.parse(await Deno.readTextFile(`${out}/${metricsPath}`));
      diff = jsonDiff(withoutWallClock(a), withoutWallClock(b));
      if (diff.length) problems.push(`metrics.json differs at ${diff.join("; ")}`);
      const fa = await Deno.readTextFile(`${refDir}/dmpo/synthetic/findings.md`);
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

const ckName = (step: number) => `step-${String(step).padStart(7, "0")}`;
/** The first checkpoint of a stage of `steps` steps (runs.ts / common.ts: every ⌈steps/10⌉). */
const firstCheckpoint = (steps: number) => ckName(Math.max(1, Math.ceil(steps / 10)));

/** A deterministic kill point: right after the first checkpoint of one stage. */
interface KillPoint {
  /** The stage, as the report names it. */
  stage: string;
  /** What kind of stage it is. */
  kind: string;
  /** The end of its first checkpoint's path (arms: from the steps in their arm.json). */
  checkpoint?: string;
  /** Its arm name (LoRA / DMPO SFT stages): arm.json of the reference run confirms the kind. */
  arm?: string;
  /**
   * Expected arm.json `mode` and `train.reference` (null: none, e.g. an SFT), and whether it
   * selects a best checkpoint (`extra.selection`; absent = not checked).
   */
  expect?: { mode: string; reference: string | null; selection?: boolean };
}

/** A point after the first checkpoint of the stage `name` (seed 0). */
function armPoint(name: string, kind: string, expect: KillPoint["expect"]): KillPoint {
  return { stage: name, kind, arm: name, expect };
}

/**
 * Kill `reproduce <flags>` after each point in turn (one output folder), rerun it to the end,
 * and compare with the uninterrupted run.
 */
async function killAtStages(paper: string, flags: string[], points: KillPoint[]): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "recalign-kill-stages-" });
  try {
    const [exe, ...base] = await taskCommand(ROOT, "reproduce");
    const out = `${tmp}/killed`;
    const args = [...base, ...flags, "--out", out];
    const { dir: refDir, run: ref } = await reference(flags);
    const problems: string[] = [];
    // The kinds claimed here are the ones the reference run recorded in its arm.json files,
    // and the first checkpoint follows from the steps recorded there.
    for (const p of points) {
      if (!p.arm || !p.expect) continue;
      const arm = JSON.parse(
        await Deno.readTextFile(
          `${refDir}/${paper}/synthetic/runs/seed0/${armSlug(p.arm)}/arm.json`,
        ),
      );
      p.checkpoint = `seed0/${armSlug(p.arm)}/checkpoints/${firstCheckpoint(arm.train.steps)}`;
      const got: KillPoint["expect"] = {
        mode: arm.mode,
        reference: arm.mode === "full" ? null : arm.train.reference,
      };
      if (p.expect.selection !== undefined) got.selection = arm.extra?.selection !== undefined;
      if (JSON.stringify(got) !== JSON.stringify(p.expect)) {
        problems.push(`${p.stage} is ${JSON.stringify(got)}, not ${JSON.stringify(p.expect)}`);
      }
    }
    const runs: RunOutcome[] = [];
    for (const p of points) {
      runs.push(await runKilledAfterCheckpoint(exe, args, p.checkpoint!, `${tmp}/paused`, ROOT));
    }
    const final = await runOnce(exe, args, undefined, ROOT);
    const details = [`uninterrupted run: ${Math.round(ref.ms / 100) / 10} s`];
    let kills = 0;
    points.forEach((p, i) => {
      const r = runs[i];
      const next = runs[i + 1] ?? final;
      const resumed = r.killed && next.stderr.includes(`[train] resumed from ${r.note}`);
      if (r.killed) kills++;
      if (!r.killed) {
        problems.push(`${p.stage}: never reached ${p.checkpoint} (exit ${r.code})`);
      } else if (!resumed) problems.push(`${p.stage}: the rerun did not resume from ${r.note}`);
      details.push(
        `${p.stage} (${p.kind}): ${
          r.killed
            ? `killed after ${r.note?.replace(`${out}/`, "")}`
            : `not killed (exit ${r.code})`
        } at ${Math.round(r.ms / 100) / 10} s; rerun ${
          resumed ? "resumed from that checkpoint" : "did NOT resume from it"
        }`,
      );
    });
    details.push(`final rerun: exit ${final.code} in ${Math.round(final.ms / 100) / 10} s`);
    if (final.code !== 0) problems.push(`the rerun failed: ${final.stderr.trim().slice(-300)}`);
    let diff: string[] = [];
    if (final.code === 0) {
      const a = JSON.parse(await Deno.readTextFile(`${refDir}/${paper}/synthetic/metrics.json`));
      const b = JSON.parse(await Deno.readTextFile(`${out}/${paper}/synthetic/metrics.json`));
      diff = jsonDiff(withoutWallClock(a), withoutWallClock(b));
      if (diff.length) problems.push(`metrics.json differs at ${diff.join("; ")}`);
      const fa = await Deno.readTextFile(`${refDir}/${paper}/synthetic/findings.md`);
      const fb = await Deno.readTextFile(`${out}/${paper}/synthetic/findings.md`);
      if (fa !== fb) problems.push("findings.md differs");
    }
    const scan = scanOutDir(out);
    problems.push(...scanProblems(scan));
    await recordFaults([{
      suite: `deno task reproduce ${flags.join(" ")}`,
      fault: `SIGKILL right after the first checkpoint of ${
        points.map((p) => `${p.stage} (${p.kind})`).join("; ")
      }; one output folder, each rerun resuming the stage killed before it`,
      injected: kills,
      outcome: `${kills} of ${points.length} kill points reached, each rerun resumed from the ` +
        `checkpoint the kill followed; metrics.json (wall-clock fields removed) ${
          diff.length ? "DIFFERS from" : "equal to"
        } the uninterrupted run's, findings.md ${
          problems.includes("findings.md differs") ? "differs" : "identical"
        }; ${scan.files} files checked: ${
          scanProblems(scan).join("; ") || "every .json parses, no temp file or lock left"
        }`,
      lost: problems.join("; ") || "nothing",
      details,
    }]);
    assert.deepEqual(problems, [], details.join("\n"));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

Deno.test("reproduce --paper sdpo killed after the first checkpoint of each kind of stage, then rerun, writes the same metrics.json", async () => {
  const t = SCALE_PRESETS.test;
  await killAtStages("sdpo", SDPO_FLAGS, [
    {
      stage: "stage 0",
      kind: "full fine-tuning SFT",
      // Stage 0 checkpoints in <out>/.cache/base-<scale>-s<seed>-<key>.run/ (common.ts).
      checkpoint: `.run/checkpoints/${firstCheckpoint(t.baseSteps)}`,
    },
    armPoint("S-DPO", "main LoRA arm, precomputed reference, best-checkpoint selection", {
      mode: "lora",
      reference: "precomputed",
      selection: true,
    }),
    armPoint("S-DPO β=0.5", "ablation arm, live reference", { mode: "lora", reference: "live" }),
    // One more ablation arm in the full setting (the test setting keeps the suite short: every
    // rerun past the main arms trains the baselines again).
    ...bySetting([], [
      armPoint("S-DPO (same-genre)", "ablation arm, precomputed reference", {
        mode: "lora",
        reference: "precomputed",
      }),
    ]),
  ]);
});

Deno.test("reproduce --paper dmpo killed after the first checkpoint of its SFT and of a precomputed-reference arm, then rerun, writes the same metrics.json", async () => {
  await killAtStages("dmpo", DMPO_FLAGS, [
    armPoint("SFT", "DMPO's full fine-tuning SFT", { mode: "full", reference: null }),
    armPoint("SFT+DMPO K=3", "LoRA arm, precomputed reference", {
      mode: "lora",
      reference: "precomputed",
    }),
  ]);
});
