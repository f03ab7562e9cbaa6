/**
 * The base LM: the small Llama-style LM pretrained on the synthetic world's own text before
 * any experiment, the stand-in for the papers' pretrained 7B LLM.
 *
 * A random LM fine-tuned straight on the S-DPO prompts learns the catalogue and the genres
 * but not to *copy a candidate*: greedy generation names a title from the prompt's list only
 * 5–8 % of the time (the feasibility study that preceded the kit, and the
 * session-1 default run). The papers' LLMs bring that ability with them (LLaRA reports a
 * ValidRatio of 0.97 on LastFM). Pretraining here teaches it with two exercises over train
 * users' data ({@link baseLmExercises}):
 *
 * - *selection*: the S-DPO prompt template over a random-length suffix of a user's history and
 *   a random 2–20 of its candidates, answered by a candidate drawn uniformly. The only way to
 *   lower that loss is to put the probability on the listed titles; no preference is taught
 *   (the target is uniform), so what SFT and the preference stages learn afterwards is theirs.
 * - *copy*: the same history and titles, and all the titles asked back in order
 *   (`worldCopyPrompt`). Every answer token is a copy from the list, none from the history:
 *   a dense signal for the attention circuit that copies (an "induction head"). Selection alone supervises 3–4 tokens per prompt and reached
 *   a validity of 0.56 after 3,000 steps; the whole next title's tokens come from memory of the
 *   catalogue instead of the list (every wrong answer was a real title, not a listed one).
 *
 * The base LM is saved in Hugging Face layout (`config.json`, `model.safetensors`,
 * `recalign_tokenizer.json`, and the same tokenizer as `tokenizer.json` / `tokenizer_config.json`
 * for other libraries) plus `recipe.json` (the recipe, its hash and what pretraining
 * measured), so it loads like any checkpoint ({@link loadPretrained}). The hash covers the
 * model config, the tokenizer, the world config and the recipe: a stale base LM is never
 * used silently. `deno task pretrain` writes it (resumable); `deno task reproduce` uses the
 * one in `models/base-lm/` when its hash matches and pretrains one otherwise.
 *
 * @module
 */
import { tf } from "../backend.ts";
import { loadPretrained, saveModel } from "../checkpoint.ts";
import { CheckpointError } from "../errors.ts";
import { ensureDir, writeJsonAtomic } from "../io.ts";
import { type LlamaConfig, LlamaModel } from "../model.ts";
import { Rng } from "../rng.ts";
import { train, type TrainExample } from "../train.ts";
import type { WordTokenizer } from "../tokenizer.ts";
import { type SdpoSample, sdpoSamples, type World } from "../data/world.ts";
import { worldCopyPrompt, worldSdpoPrompt } from "../data/world_text.ts";
import {
  buildTokenizer,
  buildWorld,
  encodePrompt,
  encodeResponse,
  modelConfig,
  sha256Hex,
  since,
  type Snapshot,
} from "./common.ts";

/** Everything that determines the base LM's weights (besides model config, tokenizer, world). */
export interface BaseLmRecipe {
  /** Optimizer steps. */
  steps: number;
  /** Exercises per step. */
  batchSize: number;
  /** Peak learning rate (cosine schedule). */
  lr: number;
  /** Warmup steps. */
  warmupSteps: number;
  /** Fewest / most candidates listed in an exercise. */
  minCandidates: number;
  maxCandidates: number;
  /** Share of copy exercises (the rest are selection exercises). */
  copyShare: number;
  /** Seed of the exercises and of the initial weights. */
  seed: number;
}

/** The recipe of the shipped base LM. */
export const BASE_LM_RECIPE: Readonly<BaseLmRecipe> = Object.freeze({
  steps: 4000,
  batchSize: 32,
  lr: 3e-3,
  warmupSteps: 100,
  minCandidates: 2,
  maxCandidates: 20,
  copyShare: 0.7,
  seed: 0,
});

/** Where `deno task pretrain` writes, and reproduce looks for, the base LM. */
export const BASE_LM_DIR = "models/base-lm";

/** Format version of `recipe.json`. */
const RECIPE_VERSION = 2;

/**
 * `n` exercises from train users only, each over a random-length suffix of a user's history
 * and a random subset (`minCandidates`–`maxCandidates`) of its candidates: with probability
 * `copyShare` a copy exercise (all listed titles back, in order), otherwise a selection
 * exercise (the S-DPO template answered by a uniformly drawn listed title).
 */
export function baseLmExercises(
  world: World,
  tok: WordTokenizer,
  samples: readonly SdpoSample[],
  n: number,
  recipe: Pick<BaseLmRecipe, "minCandidates" | "maxCandidates" | "copyShare" | "seed">,
): TrainExample[] {
  const rng = new Rng(7919 + recipe.seed);
  const out: TrainExample[] = [];
  const span = recipe.maxCandidates - recipe.minCandidates + 1;
  for (let i = 0; i < n; i++) {
    const s = samples[rng.int(samples.length)];
    const k = Math.min(recipe.minCandidates + rng.int(span), s.candidates.length);
    const h = 1 + rng.int(s.history.length);
    const listed = rng.sample(s.candidates, k);
    const domain = world.domains[s.domain];
    if (rng.next() < recipe.copyShare) {
      out.push({
        prompt: encodePrompt(tok, worldCopyPrompt(s.history.slice(-h), listed, domain)),
        chosen: encodeResponse(tok, listed.join(", ")),
      });
      continue;
    }
    const answer = listed[rng.int(k)];
    const prompt = worldSdpoPrompt({ history: s.history.slice(-h), candidates: listed }, domain);
    out.push({ prompt: encodePrompt(tok, prompt), chosen: encodeResponse(tok, answer) });
  }
  return out;
}

/** The world, tokenizer, model config and train samples the base LM is trained on. */
export function baseLmSetting(): {
  world: World;
  tok: WordTokenizer;
  samples: SdpoSample[];
  config: ReturnType<typeof modelConfig>;
} {
  const world = buildWorld();
  const samples = sdpoSamples(world, "train", { drawsPerUser: 1 });
  const tok = buildTokenizer(world, samples[0]);
  return { world, tok, samples, config: modelConfig(tok.vocabSize) };
}

/** Hash of everything that determines the base LM (recipe, model config, tokenizer, world). */
export async function baseLmHash(
  recipe: BaseLmRecipe = BASE_LM_RECIPE,
  setting: Pick<ReturnType<typeof baseLmSetting>, "world" | "tok" | "config"> = baseLmSetting(),
): Promise<string> {
  const { world, tok, config } = setting;
  return (await sha256Hex(JSON.stringify({
    v: RECIPE_VERSION,
    recipe,
    config,
    tokenizer: tok.toJSON(),
    world: world.config,
  }))).slice(0, 24);
}

/** What `recipe.json` holds. */
export interface BaseLmInfo {
  version: number;
  hash: string;
  recipe: BaseLmRecipe;
  /** Wall seconds of the (last part of the) pretraining run. */
  seconds: number;
  /** Step the last part resumed from (0 = one uninterrupted run). */
  resumed_from: number;
  /** Validity probe (50 prompts) at every tenth of the run: how copying emerged. */
  probe_curve: { step: number; loss: number; valid_ratio: number }[];
  /** Last logged loss. */
  final_loss: number;
  /** Validity probe: share of greedy answers that name a listed title (20 candidates). */
  probe_valid_ratio: number;
  /** Backend, date. */
  backend: string;
  created: string;
}

/**
 * Greedy answers of `model` on `n` 20-candidate exercises of test users: the share that
 * exactly names a listed title (the paper's validity, before any SFT).
 */
export function validityProbe(model: LlamaModel, n = 100): number {
  const { world, tok } = baseLmSetting();
  const test = sdpoSamples(world, "test", { drawsPerUser: 1 }).slice(0, n);
  let valid = 0;
  for (let s = 0; s < test.length; s += 32) {
    const chunk = test.slice(s, s + 32);
    const outs = model.generate(
      chunk.map((x) => encodePrompt(tok, worldSdpoPrompt(x, world.domains[x.domain]))),
      { maxNewTokens: 6, eosId: tok.eosId, padId: tok.padId },
    );
    outs.forEach((ids, j) => {
      const text = tok.decode(ids, { skipSpecial: true }).trim();
      if (chunk[j].candidates.includes(text)) valid++;
    });
  }
  return valid / test.length;
}

/**
 * Pretrain the base LM and save it in `dir` (HF layout + recipe.json). Resumable: training
 * checkpoints go to `dir/train/` and an interrupted run continues from the newest one.
 */
export async function pretrainBaseLm(
  dir = BASE_LM_DIR,
  recipe: BaseLmRecipe = BASE_LM_RECIPE,
  opts: {
    progress?: boolean;
    checkpointEvery?: number;
    /** Another model shape than {@link modelConfig}'s (studies; reproduce won't load it). */
    config?: LlamaConfig;
    /** Validity probes during training (default true; false: only the final one). */
    probes?: boolean;
  } = {},
): Promise<BaseLmInfo> {
  const t0 = performance.now();
  const base = baseLmSetting();
  const setting = opts.config ? { ...base, config: opts.config } : base;
  const { world, tok, samples, config } = setting;
  const hash = await baseLmHash(recipe, setting);
  const examples = baseLmExercises(world, tok, samples, recipe.steps * recipe.batchSize, recipe);
  const model = LlamaModel.random(config, 5000 + recipe.seed);
  model.makeFullyTrainable();
  await ensureDir(dir);
  const curve: BaseLmInfo["probe_curve"] = [];
  const every = Math.max(1, Math.floor(recipe.steps / 10));
  const r = await train(model, examples, {
    stage: "sft",
    steps: recipe.steps,
    batchSize: recipe.batchSize,
    microBatchSize: recipe.batchSize,
    lr: recipe.lr,
    warmupSteps: recipe.warmupSteps,
    beta2: 0.95,
    seed: recipe.seed,
    logEvery: Math.max(1, Math.floor(recipe.steps / 20)),
    checkpointEvery: opts.checkpointEvery ?? Math.max(1, Math.floor(recipe.steps / 10)),
    keepCheckpoints: 2,
  }, {
    label: "base LM",
    progress: opts.progress !== false,
    outDir: `${dir}/train-${hash}`,
    resume: true,
    onLog: (row) => {
      if (opts.probes !== false && row.step % every === 0 && row.step < recipe.steps) {
        const v = validityProbe(model, 50);
        curve.push({ step: row.step, loss: row.loss ?? NaN, valid_ratio: v });
        if (opts.progress !== false) {
          console.error(`[base LM] step ${row.step}: loss ${row.loss?.toFixed(3)}, valid ${v}`);
        }
      }
    },
  });
  model.freeze();
  const probe = validityProbe(model);
  await saveModel(model, dir, tok);
  model.dispose();
  const info: BaseLmInfo = {
    version: RECIPE_VERSION,
    hash,
    recipe,
    seconds: since(t0),
    resumed_from: r.resumedFrom,
    final_loss: r.history.at(-1)?.loss ?? NaN,
    probe_valid_ratio: probe,
    probe_curve: curve,
    backend: tf.getBackend(),
    created: new Date().toISOString(),
  };
  await writeJsonAtomic(`${dir}/recipe.json`, info);
  await Deno.remove(`${dir}/train-${hash}`, { recursive: true }).catch(() => {});
  return info;
}

/**
 * The base LM in `dir` as a snapshot, or why it cannot be used (missing, or made by another
 * recipe / tokenizer / world: its hash differs).
 */
export async function loadBaseLm(
  dir = BASE_LM_DIR,
  recipe: BaseLmRecipe = BASE_LM_RECIPE,
): Promise<{ snap: Snapshot; info: BaseLmInfo } | { reason: string }> {
  let info: BaseLmInfo;
  try {
    info = JSON.parse(await Deno.readTextFile(`${dir}/recipe.json`));
  } catch {
    return { reason: `${dir}/recipe.json not found` };
  }
  const want = await baseLmHash(recipe);
  if (info.hash !== want) {
    return {
      reason: `${dir} was made by another recipe/tokenizer/world (hash ${info.hash}, ` +
        `this code wants ${want})`,
    };
  }
  let loaded;
  try {
    loaded = await loadPretrained(dir, { onUnknownTensors: () => {} });
  } catch (e) {
    if (e instanceof CheckpointError) return { reason: e.message };
    throw e;
  }
  const snap = loaded.model.namedWeights();
  loaded.model.dispose();
  return { snap, info };
}
