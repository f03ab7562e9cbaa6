/**
 * kill -9 fault injection on training: `train_driver.ts` (train() with checkpoints and resume,
 * then saveAdapter) is killed with SIGKILL at seeded random moments and at moments chosen from
 * its checkpoint events, rerun until it finishes, and its final adapter bytes and metrics are
 * compared with an uninterrupted run's, bit for bit. Observations go to the reliability report.
 */
import assert from "node:assert/strict";
import {
  afterDelay,
  runOnce,
  type RunOutcome,
  scanOutDir,
  scanProblems,
  seededRandom,
  type Trigger,
  when,
} from "./_kill.ts";
import { bySetting, type FaultRecord, parseReport, recordFaults } from "./report.ts";
import { WALL_CLOCK_METRICS } from "./train_driver.ts";
import { removeStaleTempFiles } from "../../src/io.ts";
import { CHECKPOINT_STATE_FILE } from "../../src/train.ts";

const DRIVER = new URL("./train_driver.ts", import.meta.url).pathname;
const STEPS = 24, EVERY = 3, SEED = 7;
const SUITE = "training (train() + saveAdapter, tests/fault/train_driver.ts)";

function driverArgs(out: string): string[] {
  return [
    "run",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--allow-ffi",
    DRIVER,
    "--out",
    out,
    "--seed",
    String(SEED),
    "--steps",
    String(STEPS),
    "--every",
    String(EVERY),
  ];
}

const ckName = (step: number) => `step-${String(step).padStart(7, "0")}`;

function entries(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}

function metricsLines(out: string): number {
  try {
    return Deno.readTextFileSync(`${out}/run/metrics.jsonl`).split("\n").filter((l) => l).length;
  } catch {
    return 0;
  }
}

/** The files of a finished job that must equal the uninterrupted run's, as bytes. */
function finalFiles(out: string): Record<string, Uint8Array> {
  const files: Record<string, Uint8Array> = {};
  for (const f of ["adapter/adapter_model.safetensors", "adapter/adapter_config.json"]) {
    files[f] = Deno.readFileSync(`${out}/${f}`);
  }
  files["final_metrics.json"] = Deno.readFileSync(`${out}/final_metrics.json`);
  // metrics.jsonl without its wall-clock fields.
  const rows = Deno.readTextFileSync(`${out}/run/metrics.jsonl`).split("\n").filter((l) => l)
    .map((l) => {
      const r = JSON.parse(l);
      for (const k of WALL_CLOCK_METRICS) delete r[k];
      return JSON.stringify(r);
    });
  files["run/metrics.jsonl (wall-clock fields removed)"] = new TextEncoder().encode(
    rows.join("\n"),
  );
  return files;
}

function differences(a: Record<string, Uint8Array>, b: Record<string, Uint8Array>): string[] {
  const out: string[] = [];
  for (const k of Object.keys(a)) {
    const x = a[k], y = b[k];
    if (!y) out.push(`${k} missing`);
    else if (x.length !== y.length || x.some((v, i) => v !== y[i])) {
      out.push(`${k} differs (${x.length} vs ${y.length} bytes)`);
    }
  }
  return out;
}

function describe(o: RunOutcome, out: string): string {
  const ck = entries(`${out}/run/checkpoints`).join(", ") || "none";
  const what = o.killed
    ? `killed (${o.note}) at ${Math.round(o.ms)} ms`
    : `exited ${o.code} before the trigger, at ${Math.round(o.ms)} ms`;
  return `${what}; metrics.jsonl ${metricsLines(out)} lines; checkpoints: ${ck}`;
}

/** One kill campaign: a run per step (trigger + optional damage after it), then a finishing run. */
async function campaign(
  out: string,
  plan: { trigger: Trigger | (() => Trigger); damage?: () => string }[],
): Promise<{ details: string[]; kills: number; damages: number; final: RunOutcome }> {
  const details: string[] = [];
  let kills = 0, damages = 0;
  for (const step of plan) {
    const trigger = typeof step.trigger === "function" ? step.trigger() : step.trigger;
    const damage = step.damage;
    const o = await runOnce(Deno.execPath(), driverArgs(out), trigger);
    if (o.killed) kills++;
    else assert.equal(o.code, 0, `run exited ${o.code} on its own:\n${o.stderr}`);
    let line = `${trigger.label}: ${describe(o, out)}`;
    if (damage) {
      line += `; then ${damage()}`;
      damages++;
    }
    details.push(line);
  }
  let final = await runOnce(Deno.execPath(), driverArgs(out));
  for (let i = 0; i < 2 && final.code !== 0; i++) {
    details.push(`rerun failed (exit ${final.code}): ${final.stderr.trim().split("\n").at(-1)}`);
    final = await runOnce(Deno.execPath(), driverArgs(out));
  }
  details.push(
    `final rerun: exit ${final.code}, ${final.stdout.trim()} (${Math.round(final.ms)} ms)` +
      (/stale lock/.test(final.stderr) ? ", took over the stale lock" : ""),
  );
  return { details, kills, damages, final };
}

Deno.test("train() killed with SIGKILL at random moments and at checkpoint events resumes to bit-identical outputs", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "recalign-kill-train-" });
  try {
    const ref = await runOnce(Deno.execPath(), driverArgs(`${tmp}/ref`));
    assert.equal(ref.code, 0, ref.stderr);
    const refFiles = finalFiles(`${tmp}/ref`);
    const rand = seededRandom(0x9e37);
    const records: FaultRecord[] = [];

    // (a) Random moments, several runs in a row on one folder: each delay is uniform over
    // 15–95 % of what that run should take (start-up, then the steps left after the newest
    // checkpoint, at the uninterrupted run's pace), so module loading, training steps,
    // checkpoint writes and the adapter save all get hit.
    const nRandom = bySetting(3, 8);
    const refRows = Deno.readTextFileSync(`${tmp}/ref/run/metrics.jsonl`).trim().split("\n");
    const trainMs = JSON.parse(refRows.at(-1)!).elapsed_sec * 1000;
    const startMs = Math.max(ref.ms - trainMs, 0);
    const randomDir = `${tmp}/random`;
    const randomKill = () => {
      const done = entries(`${randomDir}/run/checkpoints`).filter((x) => /^step-\d{7}$/.test(x))
        .map((x) => Number(x.slice(5))).at(-1) ?? 0;
      const expected = startMs + (trainMs * (STEPS - done)) / STEPS;
      return afterDelay((0.15 + 0.8 * rand()) * expected);
    };
    const a = await campaign(
      randomDir,
      Array.from({ length: nRandom }, () => ({
        trigger: randomKill,
      })),
    );
    const aDiff = a.final.code === 0 ? differences(refFiles, finalFiles(`${tmp}/random`)) : [
      "the job never finished",
    ];
    const aScan = scanProblems(scanOutDir(`${tmp}/random`));
    records.push({
      suite: SUITE,
      fault: "SIGKILL after a seeded random delay",
      injected: a.kills,
      outcome: `${a.kills} of ${nRandom} runs killed, then rerun to the end; adapter, ` +
        `final_metrics.json and metrics.jsonl ${aDiff.length ? "DIFFER" : "bit-identical"} to ` +
        `the uninterrupted run; ${
          aScan.length ? aScan.join("; ") : "no temp file, lock or torn JSON left"
        }`,
      lost: [...aDiff, ...aScan].join("; ") || "nothing",
      details: [`uninterrupted run: ${Math.round(ref.ms)} ms`, ...a.details],
    });

    // (b) Checkpoint events, each run on the same folder: a checkpoint half-written, a kill
    // between checkpoints with the metrics file's last line torn afterwards (as a crash
    // mid-append leaves it), a kill right after the final checkpoint with the newest checkpoint
    // then corrupted on disk, and a kill while the adapter is being written.
    const out = `${tmp}/events`;
    const ckDir = `${out}/run/checkpoints`;
    const n1 = 2 + Math.floor(rand() * 2); // checkpoint 2 or 3 (steps 6 or 9)
    const n2 = 5 + Math.floor(rand() * 2); // checkpoint 5 or 6 (steps 15 or 18)
    const between = n1 * EVERY + 1 + Math.floor(rand() * (EVERY - 1)); // metrics lines
    // Kill once the half-written checkpoint folder holds k entries (its files and their temp
    // files): k random in 1..3, so the kill lands at different points of the write.
    const halfWritten = (n: number, k = 1 + Math.floor(rand() * 3)): Trigger =>
      when(`while checkpoint ${n} (${ckName(n * EVERY)}) is being written`, () => {
        const names = entries(ckDir);
        const tmpDir = names.find((x) => x.startsWith(`${ckName(n * EVERY)}.tmp-`));
        const inside = tmpDir ? entries(`${ckDir}/${tmpDir}`) : [];
        if (tmpDir && inside.length >= k) return `${tmpDir} holds ${inside.join(", ")}`;
        // Missed the write window (a fast disk): kill right after it instead.
        if (names.includes(ckName(n * EVERY))) return `just after ${ckName(n * EVERY)} completed`;
        return undefined;
      }, 1);
    const tornTail = () => {
      const p = `${out}/run/metrics.jsonl`;
      const text = Deno.readTextFileSync(p);
      const lastStart = text.lastIndexOf("\n", text.length - 2) + 1;
      const cut = lastStart + Math.floor((text.length - lastStart) / 2);
      Deno.writeTextFileSync(p, text.slice(0, cut));
      return `cut the last line of metrics.jsonl in half (${text.length - cut} bytes lost)`;
    };
    const corruptNewest = () => {
      const names = entries(ckDir).filter((x) => /^step-\d{7}$/.test(x));
      const newest = names.at(-1)!;
      const f = `${ckDir}/${newest}/weights.safetensors`;
      const bytes = Deno.readFileSync(f);
      bytes[bytes.length - 5] ^= 0x40; // one bit of one weight
      Deno.writeFileSync(f, bytes);
      return `flipped one bit in ${newest}/weights.safetensors`;
    };
    const b = await campaign(out, [
      { trigger: halfWritten(n1) },
      {
        trigger: when(
          `between checkpoints (metrics.jsonl at ${between} lines)`,
          () => metricsLines(out) >= between ? `${metricsLines(out)} lines logged` : undefined,
        ),
        damage: tornTail,
      },
      { trigger: halfWritten(n2) },
      {
        trigger: when(
          "right after the final checkpoint",
          () =>
            entries(`${ckDir}/${ckName(STEPS)}`).includes(CHECKPOINT_STATE_FILE)
              ? "final checkpoint complete"
              : undefined,
        ),
        damage: corruptNewest,
      },
      {
        trigger: when("while the adapter is being written", () => {
          const names = entries(`${out}/adapter`);
          const tmpFile = names.find((x) => x.includes(".tmp-"));
          if (tmpFile) return `adapter/ holds ${names.join(", ")}`;
          if (names.length) return `adapter/ holds ${names.join(", ")} (write finished)`;
          return undefined;
        }, 1),
      },
    ]);
    const bDiff = b.final.code === 0 ? differences(refFiles, finalFiles(out)) : [
      "the job never finished",
    ];
    const bScan = scanProblems(scanOutDir(out));
    records.push({
      suite: SUITE,
      fault: "SIGKILL at checkpoint events (half-written checkpoint, between checkpoints, after " +
        "the final checkpoint, during the adapter save), plus a torn metrics line and a bit " +
        "flip in the newest checkpoint",
      injected: b.kills + b.damages,
      outcome: `${b.kills} kills and ${b.damages} on-disk damages, then rerun to the end; ` +
        `outputs ${bDiff.length ? "DIFFER" : "bit-identical"} to the uninterrupted run; ` +
        `${bScan.length ? bScan.join("; ") : "no temp file, lock or torn JSON left"}`,
      lost: [...bDiff, ...bScan].join("; ") || "nothing",
      details: b.details,
    });

    const path = await recordFaults(records);
    const report = parseReport(await Deno.readTextFile(path));
    for (const r of records) {
      assert.ok(report.rows.some((x) => x.fault === r.fault && x.injected === r.injected));
    }
    assert.deepEqual(aDiff, [], a.details.join("\n"));
    assert.deepEqual(aScan, []);
    assert.deepEqual(bDiff, [], b.details.join("\n"));
    assert.deepEqual(bScan, []);
    assert.ok(a.kills >= 1, `no random kill landed: ${a.details.join("\n")}`);
    assert.ok(b.kills >= 4, b.details.join("\n"));
    // The bit flip is caught by the checkpoint's checksum: had the damaged checkpoint been
    // used, the adapter would carry the flipped bit and differ from the reference above.
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("removeStaleTempFiles() removes a dead writer's temp files and folders, not a live one's", async () => {
  const dir = await Deno.makeTempDir({ prefix: "recalign-stale-" });
  try {
    // A pid that is certainly gone: a process that has exited.
    const child = new Deno.Command(Deno.execPath(), { args: ["--version"], stdout: "null" })
      .spawn();
    const dead = child.pid;
    await child.status;
    await Deno.mkdir(`${dir}/sub/checkpoints/step-0000003.tmp-${dead}`, { recursive: true });
    await Deno.writeTextFile(
      `${dir}/sub/checkpoints/step-0000003.tmp-${dead}/weights.safetensors`,
      "x",
    );
    await Deno.writeTextFile(`${dir}/.metrics.json.tmp-${dead}-abc123`, "{");
    await Deno.writeTextFile(`${dir}/.mine.json.tmp-${Deno.pid}-abc123`, "{");
    await Deno.writeTextFile(`${dir}/keep.json`, "{}");
    const removed = await removeStaleTempFiles(dir, { recursive: true });
    assert.deepEqual(removed.map((p) => p.slice(dir.length + 1)).sort(), [
      `.metrics.json.tmp-${dead}-abc123`,
      `sub/checkpoints/step-0000003.tmp-${dead}`,
    ]);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      [`.mine.json.tmp-${Deno.pid}-abc123`, "keep.json", "sub"],
    );
    assert.deepEqual(await removeStaleTempFiles(`${dir}/missing`), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
