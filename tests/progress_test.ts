/**
 * The overall progress of `deno task reproduce` (src/cli/_progress.ts): the plan counts the
 * stages real runs recorded (the committed `results/*` metrics.json), and the ETA follows the
 * measured costs.
 */
import assert from "node:assert/strict";
import { SCALE_PRESETS } from "../src/experiments/common.ts";
import {
  formatDuration,
  formatEta,
  planReproduce,
  priorSeconds,
  RunProgress,
  sdpoMainArmSeconds,
  stageKind,
} from "../src/cli/_progress.ts";

const RESULTS = new URL("../results/", import.meta.url).pathname;

interface Metrics {
  scale: "test" | "tiny" | "small" | "full";
  seeds: number[];
  result?: { protocol?: unknown };
  stage_seconds: { experiment: string; stage: string; seed: number | null; seconds: number }[];
}

async function metrics(rel: string): Promise<Metrics | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(`${RESULTS}${rel}`));
  } catch {
    return undefined;
  }
}

Deno.test("planReproduce counts the stages the committed runs recorded, kind by kind", async () => {
  const cases = [
    // The default run (S-DPO without ablations, then DMPO with its ablations, sharing stage 0).
    { rel: "sdpo/synthetic/metrics.json", paper: "sdpo", sdpoAbl: false, withSdpo: true },
    { rel: "dmpo/synthetic/metrics.json", paper: "dmpo", sdpoAbl: false, withSdpo: true },
    // The S-DPO ablation run.
    { rel: "ablations/sdpo/synthetic/metrics.json", paper: "sdpo", sdpoAbl: true, withSdpo: true },
  ] as const;
  let checked = 0, stale = 0;
  for (const c of cases) {
    const m = await metrics(c.rel);
    if (!m) continue;
    // An S-DPO run recorded before the released protocol (issue #17: 4 main arms, an lr grid,
    // the ablations' own uniform arms) has other stages than today's code plans; such a run
    // checks nothing until it is regenerated.
    if (c.paper === "sdpo" && !m.result?.protocol) {
      stale++;
      continue;
    }
    // A DMPO run committed before the released protocol (pair rows per negative, #17) has
    // other stages; it is compared once results/ is regenerated.
    if (
      c.paper === "dmpo" &&
      !m.stage_seconds.some((x) => x.stage.startsWith("SFT+DMPO K=3 (equal steps)"))
    ) {
      stale++;
      continue;
    }
    const n = m.seeds.length;
    const plan = planReproduce({
      papers: c.paper === "dmpo" && c.withSdpo ? ["sdpo", "dmpo"] : [c.paper],
      scale: SCALE_PRESETS[m.scale],
      seeds: { sdpo: n, dmpo: n, dpo4rec: 1 },
      sdpoAblations: c.sdpoAbl,
      dmpoAblations: true,
      synthetic: true,
    }).filter((s) =>
      c.paper === "sdpo"
        ? ["sdpo", "sdpo-ablations", "baselines"].includes(s.experiment)
        : s.experiment.startsWith("dmpo")
    );
    const got = m.stage_seconds.map((s) => stageKind(s.experiment, s.stage));
    assert.equal(plan.length, got.length, c.rel);
    // Same kinds in the same order, where the run did not load a stage it had already trained.
    plan.forEach((p, i) => {
      if (got[i] !== "reused" && p.kind !== "reused") {
        assert.equal(p.kind, got[i], `${c.rel} #${i}`);
      }
    });
    checked++;
  }
  // Every case's run is committed; those recorded before their paper's protocol are compared
  // once results/ is regenerated (the --scale test run of tests/experiments/reproduce_test.ts
  // checks today's plan against today's stages meanwhile).
  assert.equal(
    checked + stale,
    cases.length,
    "the committed results hold the runs this test reads",
  );
});

Deno.test("planReproduce: seeds, papers and ablations change the plan as the runs do", () => {
  const s = SCALE_PRESETS.test;
  const plan = (o: Partial<Parameters<typeof planReproduce>[0]>) =>
    planReproduce({
      papers: ["sdpo", "dmpo", "dpo4rec"],
      scale: s,
      seeds: { sdpo: 1, dmpo: 1, dpo4rec: 1 },
      sdpoAblations: true,
      dmpoAblations: true,
      synthetic: true,
      ...o,
    });
  // test scale: S-DPO 10 (stage 0, its evaluation, 4 main arms and their evaluations) + 4
  // baselines + 14 ablations, DMPO 8 (6 arms) + 10 ablations, DPO4Rec 1 block: the counts a
  // `--scale test` run records (28 and 18 stages).
  assert.equal(plan({}).length, 28 + 18 + 1);
  assert.equal(plan({ sdpoAblations: false, dmpoAblations: false }).length, 14 + 8 + 1);
  // A second seed: 10 more S-DPO stages (two of them reused), 8 more DMPO stages.
  const two = plan({ seeds: { sdpo: 2, dmpo: 2, dpo4rec: 1 } });
  assert.equal(two.length, 47 + 10 + 8);
  assert.equal(two.filter((x) => x.kind === "reused").length, 2 + 1 + 2);
  // DMPO alone trains its own stage 0 and baselines.
  const dmpo = plan({ papers: ["dmpo"], dmpoAblations: false });
  assert.deepEqual(dmpo.map((x) => x.kind).slice(0, 2), ["stage0", "dmpo-sft"]);
  assert.equal(dmpo.filter((x) => x.kind === "baseline").length, 4);
  // Released data: no ablations, the short protocol's 3 arms.
  assert.equal(plan({ papers: ["sdpo"], synthetic: false }).length, 12);
  // An lr grid (tiny: 2 values): the first seed trains DPO at each lr, the chosen one being its
  // DPO arm (5 arms), the next seeds 4 arms.
  const tiny = planReproduce({
    papers: ["sdpo"],
    scale: SCALE_PRESETS.tiny,
    seeds: { sdpo: 2, dmpo: 1, dpo4rec: 1 },
    sdpoAblations: false,
    dmpoAblations: false,
    synthetic: true,
  });
  assert.equal(tiny.filter((x) => x.kind === "sdpo-arm").length, 5 + 4);
  // The prior of a full-scale K=8 arm: 17,280 examples × 16.3 ms + 10 evaluations of 400 +
  // 800 prompts × 5 ms.
  const k8 = 0.7 + 17280 * (0.0075 + 0.0011 * 8) + 10 * 0.005 * 1200;
  assert.ok(Math.abs(sdpoMainArmSeconds(SCALE_PRESETS.full, 8) - k8) < 1e-9);
});

Deno.test("stageKind reads the names recordStage is given", () => {
  const cases: [string, string, string][] = [
    ["sdpo", "SFT", "stage0"],
    ["sdpo", "SFT (reused)", "reused"],
    ["sdpo", "SFT (stage 0, from disk cache)", "reused"],
    ["sdpo", "eval/S-DPO", "sdpo-eval"],
    ["sdpo", "SFT-cont", "sdpo-arm"],
    ["sdpo-ablations", "score pref prompts (model-hard)", "score"],
    ["sdpo-ablations", "S-DPO K=2 (popularity)", "sdpo-arm"],
    ["baselines", "train/sasrec", "baseline"],
    ["dmpo", "Base LM", "stage0"],
    ["dmpo", "SFT (from run folder)", "reused"],
    ["dmpo", "SFT", "dmpo-sft"],
    ["dmpo", "SFT+DMPO K=3", "dmpo-arm"],
    ["dmpo-abl", "SFT n=256", "few-shot-sft"],
    ["dmpo-abl", "negative samplers (model-hard mining)", "mining"],
  ];
  for (const [e, s, k] of cases) assert.equal(stageKind(e, s), k, `${e} ${s}`);
});

Deno.test("RunProgress: the ETA rescales the remaining stages by the measured/prior ratio", () => {
  const scale = SCALE_PRESETS.small;
  const arm = priorSeconds("sdpo-arm", scale);
  const evalPrior = priorSeconds("sdpo-eval", scale);
  const plan = [
    { experiment: "sdpo", kind: "sdpo-arm" as const, seconds: arm },
    { experiment: "sdpo", kind: "sdpo-arm" as const, seconds: arm },
    { experiment: "sdpo", kind: "sdpo-arm" as const, seconds: arm },
    { experiment: "sdpo", kind: "sdpo-eval" as const, seconds: evalPrior },
  ];
  let t = 100;
  const p = new RunProgress(plan, scale, () => t);
  assert.equal(
    p.line(),
    "[reproduce] stage 0/4 · 0s elapsed · ETA " + formatEta(2 * arm + arm + evalPrior),
  );
  // The first arm takes twice its prior: the other arms are expected to as well, and the
  // evaluation (no measurement of its kind yet) by the overall ratio, also 2.
  t += 2 * arm;
  p.stage("sdpo", "DPO", 2 * arm);
  assert.ok(Math.abs(p.etaSeconds() - (2 * 2 * arm + 2 * evalPrior)) < 1e-9);
  // Next arm at its prior: the kind's ratio is now (2 + 1) / 2 = 1.5; wall = stage time.
  t += arm;
  p.stage("sdpo", "S-DPO", arm);
  assert.ok(Math.abs(p.etaSeconds() - (1.5 * arm + 1.5 * evalPrior)) < 1e-9);
  // Wall time outside the stages (here 50 % more than the stages took) stretches the rest.
  t += arm * 1.5;
  p.stage("sdpo", "SFT-cont", arm);
  assert.ok(Math.abs(p.etaSeconds() - (4 / 3) * evalPrior * 1.25) < 1e-9);
  assert.match(p.line(), /^\[reproduce\] stage 3\/4 · \d+s elapsed · ETA \d+s$/);
  p.stage("sdpo", "eval/SFT-cont", 1);
  assert.match(p.line(), /^\[reproduce\] stage 4\/4 · \d+s elapsed$/);
  // More stages than planned: the count grows, never "5/4".
  assert.match(p.stage("sdpo", "extra", 1), /stage 5\/5/);
});

Deno.test("formatDuration / formatEta", () => {
  assert.equal(formatDuration(310), "5m10s");
  assert.equal(formatDuration(45.4), "45s");
  assert.equal(formatDuration(3725), "1h02m");
  assert.equal(formatEta(480), "8m");
  assert.equal(formatEta(42), "40s");
  assert.equal(formatEta(1), "5s");
  assert.equal(formatEta(3900), "1h05m");
});

/** A recorded run's stages (`stage_seconds` of its metrics.json) and what it ran. */
interface RecordedRun {
  run: string;
  scale: "test" | "tiny" | "small" | "full";
  seeds: number;
  papers: ("sdpo" | "dmpo" | "dpo4rec")[];
  sdpoAblations: boolean;
  dmpoAblations: boolean;
  synthetic: boolean;
  stage_seconds: { experiment: string; stage: string; seconds: number }[];
}

const FIXTURES = new URL("./fixtures/stage_seconds/", import.meta.url).pathname;

/**
 * Replay a recorded run through RunProgress (wall clock = the stages' own seconds); returns the
 * worst factor between the ETA and the seconds actually left, over the stage boundaries after
 * the first two stages while at least a quarter of the run is left.
 */
function worstEtaFactor(r: RecordedRun): { worst: number; at: number } {
  const scale = SCALE_PRESETS[r.scale];
  const plan = planReproduce({
    papers: r.papers,
    scale,
    seeds: { sdpo: r.seeds, dmpo: r.seeds, dpo4rec: r.seeds },
    sdpoAblations: r.sdpoAblations,
    dmpoAblations: r.dmpoAblations,
    synthetic: r.synthetic,
  });
  assert.equal(plan.length, r.stage_seconds.length, `${r.run}: planned vs recorded stages`);
  const total = r.stage_seconds.reduce((a, s) => a + s.seconds, 0);
  let t = 0, worst = 1, at = -1;
  const p = new RunProgress(plan, scale, () => t, 0);
  r.stage_seconds.forEach((s, i) => {
    t += s.seconds;
    p.stage(s.experiment, s.stage, s.seconds);
    const left = total - t;
    if (i < 2 || left < 0.25 * total) return;
    const eta = p.etaSeconds();
    const f = Math.max(eta / left, left / eta);
    if (f > worst) [worst, at] = [f, i];
  });
  return { worst, at };
}

Deno.test("RunProgress: on recorded runs the ETA stays within 2x of the time actually left", async () => {
  const files = [...Deno.readDirSync(FIXTURES)].map((e) => e.name).filter((n) =>
    n.endsWith(".json")
  );
  assert.ok(files.length >= 3, "the recorded runs are in tests/fixtures/stage_seconds");
  for (const f of files.sort()) {
    const r: RecordedRun = JSON.parse(await Deno.readTextFile(FIXTURES + f));
    const { worst, at } = worstEtaFactor(r);
    assert.ok(worst <= 2, `${f}: ETA off by ${worst.toFixed(2)}x after stage ${at + 1}`);
  }
});

Deno.test("RunProgress: a finished stage is compared with its own planned prior", () => {
  // Two DMPO arms of very different planned lengths, both run exactly at 3x their prior: the
  // ETA of the rest is 3x its prior (a kind-wide prior at n = 1 would give ~ 3 × 113 / 1).
  const scale = SCALE_PRESETS.small;
  const arm = (steps: number) => ({
    experiment: "dmpo",
    kind: "dmpo-arm" as const,
    seconds: priorSeconds("dmpo-arm", scale, steps),
  });
  const plan = [arm(113), arm(38), arm(113)];
  let t = 0;
  const p = new RunProgress(plan, scale, () => t, 0);
  t += 3 * plan[0].seconds;
  p.stage("dmpo", "SFT+DMPO K=3", 3 * plan[0].seconds);
  assert.ok(Math.abs(p.etaSeconds() - 3 * (plan[1].seconds + plan[2].seconds)) < 1e-9);
  t += 3 * plan[1].seconds;
  p.stage("dmpo", "SFT+DMPO K=1", 3 * plan[1].seconds);
  assert.ok(Math.abs(p.etaSeconds() - 3 * plan[2].seconds) < 1e-9);
});
