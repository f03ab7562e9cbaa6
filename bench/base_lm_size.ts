/**
 * `deno run … bench/base_lm_size.ts`: does a larger base LM gain S-DPO ranking HR@1?
 * (docs/base-lm-size.md has the design, the numbers and the decision.)
 *
 * Two arms that differ only in the model's shape: `small` (hidden 64, 2 layers, 4 heads, ffn
 * 192: the shipped shape) and `big` (hidden 128, 4 layers, 8 heads of 16, ffn 384). Each is
 * pretrained with the base LM's recipe (`BASE_LM_RECIPE`: same exercises, lr, batch, seed) for
 * the same `--pretrain-steps`, then gets the same stage 0 (full fine-tuning on the S-DPO train
 * prompts, `--scale small`'s knobs with `--sft-steps`), and is scored on the world's S-DPO test
 * prompts: sampled and expected ranking HR@1 (expected = the world's probability that the
 * top-1 candidate is the next item). The difference big − small gets a 95 % interval by a
 * bootstrap over test users (all prompts of a user together), and an MDE of 2.80 × SE.
 *
 * Resumable: each arm's pretraining checkpoints and its evaluation (`<out>/<arm>/eval.json`)
 * are kept; rerun the same command after an interruption.
 *
 * Flags: --out DIR (runs/base-lm-size), --pretrain-steps N (1000), --sft-steps N (450),
 * --test N (S-DPO test prompts, 800 or 1600), --gen N (generation-scored prompts, 200),
 * --arms small,big[,shipped] (shipped: the kit's base LM as it is, for context), --time N (only time N pretraining and N stage-0 steps of each arm).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { initBackend } from "../src/backend.ts";
import { loadPretrained } from "../src/checkpoint.ts";
import { clusteredBootstrapCI } from "../src/eval/metrics.ts";
import { sdpoExpectedHits } from "../src/eval/truth.ts";
import { oracleScores } from "../src/data/world.ts";
import { writeJsonAtomic } from "../src/io.ts";
import type { LlamaConfig } from "../src/model.ts";
import { BASE_LM_RECIPE, type BaseLmInfo, pretrainBaseLm } from "../src/experiments/base_lm.ts";
import {
  modelConfig,
  SCALE_PRESETS,
  setBaseLm,
  SHIPPED_BASE_LM,
  since,
  trainBase,
} from "../src/experiments/common.ts";
import { evaluateSdpo, sdpoData } from "../src/experiments/sdpo.ts";

/** The two model shapes compared (everything else from {@link modelConfig}). */
export const ARMS: Record<string, Partial<LlamaConfig>> = {
  small: {
    hidden_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 4,
    intermediate_size: 192,
  },
  big: {
    hidden_size: 128,
    num_hidden_layers: 4,
    num_attention_heads: 8,
    num_key_value_heads: 8,
    intermediate_size: 384,
  },
};

const flags = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "runs/base-lm-size" },
    "pretrain-steps": { type: "string", default: "1000" },
    "sft-steps": { type: "string", default: "450" },
    test: { type: "string", default: "800" },
    gen: { type: "string", default: "200" },
    arms: { type: "string", default: "small,big" },
    time: { type: "string" },
  },
  strict: true,
}).values;

const int = (name: string, v: string | undefined) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`base_lm_size: --${name} expects an integer >= 1, got "${v}"`);
    Deno.exit(2);
  }
  return n;
};
const arms = flags.arms!.split(",");
for (const a of arms) {
  if (!ARMS[a] && a !== "shipped") {
    console.error(
      `base_lm_size: unknown arm "${a}"; allowed: ${[...Object.keys(ARMS), "shipped"].join(", ")}`,
    );
    Deno.exit(2);
  }
}
const timeOnly = flags.time === undefined ? 0 : int("time", flags.time);
const pretrainSteps = timeOnly || int("pretrain-steps", flags["pretrain-steps"]);
const sftSteps = timeOnly || int("sft-steps", flags["sft-steps"]);
const testN = int("test", flags.test);
const numGen = Math.min(testN, int("gen", flags.gen));
const out = timeOnly ? `${flags.out}/time-${timeOnly}` : flags.out!;

await initBackend(undefined, { quiet: true });
// Stage 0 starts from the base LM given to trainBase, never from the shipped one.
setBaseLm(undefined);
const scale = {
  ...SCALE_PRESETS.small,
  baseSteps: sftSteps,
  sdpoTest: testN,
  sdpoTestDraws: testN > 800 ? 4 : 2,
};
const data = sdpoData(scale);
const { world, tok, test } = data;
const users = test.map((s) => s.user);
const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const round = (x: number, d = 4) => Math.round(x * 10 ** d) / 10 ** d;
console.error(
  `[size] ${arms.join(" vs ")}: pretrain ${pretrainSteps} steps, stage 0 ${sftSteps} steps × ` +
    `${scale.sftBatch}, ${test.length} test prompts of ${new Set(users).size} users → ${out}/`,
);

interface ArmResult {
  arm: string;
  config: LlamaConfig;
  params: number;
  pretrain: { steps: number; seconds: number; ms_per_step: number; final_loss: number };
  probe_valid_ratio: number;
  sft: { steps: number; seconds: number; ms_per_step: number; final_loss: number };
  hr1_rank: number;
  hr1_exp: number;
  valid_ratio: number;
  hr1_gen_all: number;
  eval_seconds: number;
  rank_hits: number[];
  rank_expected: number[];
}

async function runArm(arm: string): Promise<ArmResult> {
  const dir = `${out}/${arm}`;
  try {
    return JSON.parse(await Deno.readTextFile(`${dir}/eval.json`));
  } catch { /* not run yet */ }
  // "shipped": the kit's base LM as it is (its own 4,000 pretraining steps), for context.
  const shipped = arm === "shipped";
  const config: LlamaConfig = { ...modelConfig(tok.vocabSize), ...ARMS[arm] };
  const recipe = { ...BASE_LM_RECIPE, steps: pretrainSteps };
  const tp = performance.now();
  const info: BaseLmInfo = shipped
    ? JSON.parse(await Deno.readTextFile(`${SHIPPED_BASE_LM}/recipe.json`))
    : await pretrainBaseLm(`${dir}/base-lm`, recipe, { config, probes: false });
  const pretrainSeconds = shipped ? info.seconds : since(tp);
  const steps = shipped ? info.recipe.steps : pretrainSteps;
  const lmDir = shipped ? SHIPPED_BASE_LM : `${dir}/base-lm`;
  const { model: lm } = await loadPretrained(lmDir, { onUnknownTensors: () => {} });
  const init = lm.namedWeights();
  const params = [...init.values()].reduce((a, t) => a + t.size, 0);
  lm.dispose();
  const { model, seconds, finalLoss } = await trainBase(
    config,
    data.trainExamples,
    scale,
    0,
    { label: `stage0/${arm}`, progress: true },
    { batchSize: scale.sftBatch, warmupSteps: scale.baseWarmup, init, outDir: `${dir}/sft.run` },
  );
  for (const t of init.values()) t.dispose();
  const { scores, ...ev } = evaluateSdpo(model, tok, world, test, numGen);
  model.dispose();
  const exp = sdpoExpectedHits(world, test, scores);
  const r: ArmResult = {
    arm,
    config,
    params,
    pretrain: {
      steps,
      seconds: pretrainSeconds,
      ms_per_step: round(1000 * pretrainSeconds / steps, 1),
      final_loss: round(info.final_loss),
    },
    probe_valid_ratio: info.probe_valid_ratio,
    sft: {
      steps: sftSteps,
      seconds,
      ms_per_step: round(1000 * seconds / sftSteps, 1),
      final_loss: round(finalLoss),
    },
    hr1_rank: round(ev.hr1_rank),
    hr1_exp: round(mean(exp)),
    valid_ratio: ev.valid_ratio,
    hr1_gen_all: ev.hr1_gen_all,
    eval_seconds: ev.eval_seconds,
    rank_hits: ev.rank_hits,
    rank_expected: exp.map((x) => round(x, 6)),
  };
  await writeJsonAtomic(`${dir}/eval.json`, r);
  return r;
}

const results: ArmResult[] = [];
for (const arm of arms) {
  const r = await runArm(arm);
  results.push(r);
  console.error(
    `[size] ${arm} (${r.params} params): pretrain ${r.pretrain.ms_per_step} ms/step ` +
      `(loss ${r.pretrain.final_loss}, validity ${r.probe_valid_ratio}), stage 0 ` +
      `${r.sft.ms_per_step} ms/step (loss ${r.sft.final_loss}); HR@1 ${r.hr1_rank} sampled, ` +
      `${r.hr1_exp} expected; ValidRatio ${r.valid_ratio}`,
  );
}

const oracle = mean(
  sdpoExpectedHits(world, test, test.map((s) => oracleScores(world, s, s.candidateIds))),
);
const summary: Record<string, unknown> = {
  pretrain_steps: pretrainSteps,
  sft_steps: sftSteps,
  test_prompts: test.length,
  test_users: new Set(users).size,
  oracle_hr1_exp: round(oracle),
  arms: results.map(({ rank_hits: _h, rank_expected: _e, ...r }) => r),
};
// Every later arm against the first (the study: big − small; shipped − small for context).
const differences: Record<string, unknown>[] = [];
for (const b of timeOnly ? [] : results.slice(1)) {
  const a = results[0];
  const diff = (key: "rank_hits" | "rank_expected") => {
    const d = b[key].map((x, i) => x - a[key][i]);
    const ci = clusteredBootstrapCI([d], users);
    return {
      mean: round(ci.mean),
      lo: round(ci.lo),
      hi: round(ci.hi),
      se: round(ci.se),
      mde: round(2.8 * ci.se),
      clusters: ci.clusters,
    };
  };
  differences.push({
    of: `${b.arm} - ${a.arm}`,
    expected: diff("rank_expected"),
    sampled: diff("rank_hits"),
    // Share of test prompts that one arm hits and the other misses (sampled HR@1).
    hit_disagreement: round(mean(a.rank_hits.map((x, i) => (x !== b.rank_hits[i] ? 1 : 0)))),
    cost_pretrain: round(b.pretrain.ms_per_step / a.pretrain.ms_per_step, 2),
    cost_sft: round(b.sft.ms_per_step / a.sft.ms_per_step, 2),
  });
}
summary.differences = differences;
await writeJsonAtomic(`${out}/summary.json`, summary);
console.log(JSON.stringify(summary, null, 1));
