/**
 * S-DPO on the synthetic world: SFT (stage-0 full fine-tuning on the train prompts), then
 * DPO (K=1), S-DPO (K=3) and an SFT-cont control, each a fresh LoRA adapter on the same SFT
 * model for the same number of steps; evaluated by ranking (HR@1, NDCG@5 over the 20
 * candidates by summed log-prob of title + EOS) and by greedy generation (HR@1 with both
 * denominators, ValidRatio), beside oracle / history-Bayes / popularity / random rows.
 *
 * @module
 */
import { ConfigError } from "../errors.ts";
import { hardestFirst } from "./negatives.ts";
import { ensureBackend, tf } from "../backend.ts";
import type { LlamaConfig, LlamaModel } from "../model.ts";
import type { EvalHook, MetricsRow, Stage, TrainExample } from "../train.ts";
import { sdpoNegativeWeights } from "../losses.ts";
import { Rng } from "../rng.ts";
import type { Tokenizer } from "../tokenizer.ts";
import {
  historyBayesScores,
  oracleScores,
  popularityScores,
  type ReferenceScorer,
  type SdpoSample,
  sdpoSamples,
  type World,
} from "../data/world.ts";
import { worldSdpoPrompt } from "../data/world_text.ts";
import { sdpoExpectedHits } from "../eval/truth.ts";
import {
  hitsAtK,
  ndcgsAtK,
  sdpoGenerationMetrics,
  sdpoValidity,
  type SdpoVerdict,
} from "../eval/metrics.ts";
import {
  baseLmHashInUse,
  buildTokenizer,
  buildWorld,
  encodePrompt,
  encodeResponse,
  evalOnce,
  fromSnapshot,
  loraConfig,
  modelConfig,
  recordStage,
  type Scale,
  SCALE_PRESETS,
  type ScaleName,
  scoreResponses,
  sdpoArmSteps,
  sdpoExample,
  since,
  type Snapshot,
  stage0SeedOf,
  subset,
} from "./common.ts";
import { BASELINE_NAMES, BASELINE_ROWS, baselineSdpoRow, baselinesFor } from "./baselines.ts";
import { currentBaseModel, stage0Snapshot } from "./pretrained.ts";
import { armDir, runStage, sourceNote, type StageSource } from "./runs.ts";
import { appendJsonLine } from "../io.ts";
import type { LoraConfig } from "../lora.ts";
import { LLAMA_PROJECTIONS } from "../lora.ts";
import { sdpoHr1CurveFigures, sdpoLossPartsFigures, writeFigures } from "../report/figures.ts";

/** Config of {@link run}. */
export interface SdpoRunConfig {
  /** Scale preset name. */
  scale: ScaleName;
  /** Seeds (model init, batch order, negative draws). */
  seeds: number[];
  /** Print progress (default true). */
  progress?: boolean;
  /** Run the ablations (K and β sweeps, negative samplers) on the first seed. */
  ablations?: boolean;
  /** Add the classic baseline rows (default true). */
  baselines?: boolean;
  /**
   * Train only these main arms of the released protocol (names as in the table: SFT-cont, DPO,
   * S-DPO, S-DPO K=8), e.g. a follow-up of one claim; claims on the others are "not tested".
   * Default: all.
   */
  arms?: readonly string[];
  /**
   * The preference stages' learning rate, fixed: no selection on DPO's validation HR@1 even
   * where the scale has a grid (e.g. a follow-up at the rate an earlier run selected).
   */
  lr?: number;
  /**
   * A released data set prepared by `src/experiments/datasets.ts` instead of the synthetic
   * world (same arms and metrics; no ablations, no oracle rows).
   */
  data?: SdpoDataset;
}

/** How a data set's samples become prompt text, and the generation budget. */
export interface SdpoText {
  /** The evaluation prompt of a sample (ending `Answer:`). */
  prompt(s: SdpoSample): string;
  /** Greedy generation: at most this many new tokens. */
  maxNewTokens: number;
}

/** A released data set prepared for {@link run} (see `src/experiments/datasets.ts`). */
export interface SdpoDataset extends Omit<SdpoData, "world"> {
  /** Data set name (`"lastfm"`). */
  name: string;
  /** Prompts and generation budget. */
  text: SdpoText;
  /** Reference rows computable on the data (popularity, random). */
  references: Record<string, ReferenceRow>;
  /** The classic baselines of (scale, seed), trained on the data set's train rows. */
  baselines: (scale: Scale, seed: number, progress: boolean) => ReturnType<typeof baselinesFor>;
  /** What was trained and tested on (merged into the result's config). */
  describe: Record<string, unknown>;
}

/** Per-method numbers of one seed. */
export interface SdpoMethodResult {
  /** Per test prompt: summed log-prob of the positive (title + EOS). */
  pos_logp: number[];
  /** Ranking HR@1 over the test prompts. */
  hr1_rank: number;
  /** Ranking NDCG@5. */
  ndcg5_rank: number;
  /** Generation HR@1, invalid = miss (S-DPO's denominator). */
  hr1_gen_all: number;
  /** Generation HR@1 over valid rows (LLaRA's denominator); null when no row is valid. */
  hr1_gen_valid: number | null;
  /** ValidRatio of generation. */
  valid_ratio: number;
  /** Per test prompt: 1 if the positive ranked first. */
  rank_hits: number[];
  /**
   * Per test prompt (synthetic world only): the true probability, given the user and the
   * 20 candidates, that the model's top-1 is the next item (src/eval/truth.ts).
   */
  rank_expected?: number[];
  /** Per generation prompt: 1 if a hit. */
  gen_hits: number[];
  /** Per generation prompt: 1 if valid. */
  gen_valid: number[];
  /** A few generated answers, for inspection. */
  gen_examples: string[];
  /** Training seconds of this arm (the SFT row: stage 0). */
  train_seconds: number;
  /** Evaluation seconds. */
  eval_seconds: number;
  /** Last logged training loss. */
  final_loss: number | null;
  /** Synthetic world: the mean of `rank_expected` (expected ranking HR@1). */
  hr1_exp?: number;
  /** Main preference arms: optimizer steps trained. */
  steps?: number;
  /** Main preference arms: learning rate. */
  lr?: number;
  /** Main preference arms: the step whose weights were kept (best validation loss). */
  best_step?: number | null;
  /** Main preference arms: validation loss (the arm's own loss) at the kept step. */
  val_loss?: number | null;
  /** Main preference arms (and SFT): validation ranking HR@1 at the kept step. */
  val_hr1?: number | null;
}

/** One seed's results. */
export interface SdpoSeedResult {
  /** Seed. */
  seed: number;
  /** Method name → numbers. */
  methods: Record<string, SdpoMethodResult>;
  /** The seed whose stage-0 (SFT) model this seed used (seeds with the same share it). */
  stage0_seed: number;
  /** Wall-clock seconds of the seed. */
  seconds: number;
}

/** Reference scorer row (the same for every seed). */
export interface ReferenceRow {
  /** Ranking HR@1. */
  hr1_rank: number;
  /** Ranking NDCG@5. */
  ndcg5_rank: number;
}

/** What {@link run} returns. */
export interface SdpoResult {
  /** "sdpo". */
  paper: "sdpo";
  /** The scale preset used. */
  scale: Scale;
  /** Everything else that defines the run. */
  config: Record<string, unknown>;
  /** Seeds. */
  seeds: number[];
  /** Test prompts (ranking) and generation prompts. */
  num_test: number;
  /** Generation prompts. */
  num_gen_test: number;
  /** Reference rows. */
  references: Record<string, ReferenceRow>;
  /** The test user of each test row, in row order (rows of one user are one cluster). */
  row_users: number[];
  /** Methods whose model is the seed's stage-0 model (`per_seed[].stage0_seed`). */
  stage0_methods: string[];
  /** Per seed. */
  per_seed: SdpoSeedResult[];
  /** Training curves of the main DPO and S-DPO arms (every seed). */
  curves: CurvePoint[];
  /** Ablations (first seed), when run. */
  ablations?: SdpoAblations;
  /** Seconds of the whole run. */
  seconds: number;
  /** Validation prompts (0 on a released data set without a validation split here). */
  num_valid: number;
  /** Validation and test ranking HR@1 versus step of the main arms, every seed. */
  hr1_curves: Hr1CurvePoint[];
  /**
   * Per-row test hits behind the test curves: at every evaluation of every main arm and seed,
   * the sampled and expected hit of each curve prompt (the first `sdpoCurveTest` test
   * prompts), so a verdict at any checkpoint rule (e.g. the best validation HR@1, or the last
   * step) is recomputable with the same resampling.
   */
  curve_hits: {
    method: string;
    seed: number;
    step: number;
    rank_hits: number[];
    rank_expected: number[];
  }[];
  /** The learning-rate selection on DPO (first seed); one entry = no selection. */
  lr_selection: {
    lr: number;
    val_hr1: number | null;
    best_step: number | null;
    /** DPO's validation curve at this lr (seed 0): HR@1, loss and its diagnostics per step. */
    curve?: Omit<Hr1CurvePoint, "method" | "seed" | "split">[];
  }[];
  /**
   * The preference protocol of the main arms, and every departure from the released one
   * (synthetic world; a released data set runs the short preference stage, without it).
   */
  protocol?: SdpoProtocol;
}

/** One point of an HR@1-versus-step curve (step 0 = the SFT model). */
export interface Hr1CurvePoint {
  method: string;
  seed: number;
  step: number;
  /** `valid` (all validation prompts) or `test` (the first `sdpoCurveTest` test prompts). */
  split: "valid" | "test";
  hr1: number;
  /** The arm's own validation loss (valid split only; null at step 0). */
  loss: number | null;
  /**
   * What the validation loss is made of (preference arms, valid split, from step 1):
   * {@link preferenceDiagnostics} of the validation prompts, and `train_loss`, the same loss on
   * a fixed sample of the arm's own train prompts and negatives (the generalisation gap).
   */
  diagnostics?: PreferenceDiagnostics & { train_loss: number };
}

/** The main arms' preference protocol (metrics.json `result.protocol`). */
export interface SdpoProtocol {
  /** Steps per arm, batch, preference examples per arm. */
  steps: number;
  batch: number;
  examples_per_arm: number;
  /** Train prompts the arms draw from (all of stage 0's). */
  train_prompts: number;
  /** Learning rate used by every main arm. */
  lr: number;
  lora: LoraConfig;
  max_grad_norm: number;
  warmup_steps: number;
  /** Validation evaluations per arm and the selection rule. */
  evals_per_arm: number;
  selection: string;
  /** What the released scripts do, with file and line. */
  released: string[];
  /** Every departure from them in this run. */
  departures: string[];
}

/** One point of a training curve. */
export interface CurvePoint {
  method: string;
  seed: number;
  step: number;
  metric: string;
  value: number;
}

/** An ablation arm's numbers (ranking only). */
export interface AblationRow {
  /** Ranking HR@1. */
  hr1_rank: number;
  /** Ranking NDCG@5. */
  ndcg5_rank: number;
  /** Per test prompt hits. */
  rank_hits: number[];
  /** Per test prompt expected hit under the world's law (src/eval/truth.ts). */
  rank_expected?: number[];
  /** Per test prompt positive log-prob. */
  pos_logp: number[];
  /** Training seconds (0 when the row reuses a main arm). */
  train_seconds: number;
}

/** The S-DPO ablations (one seed). */
export interface SdpoAblations {
  seed: number;
  /** K sweep at β = 1: K → row. */
  k_sweep: { k: number; row: AblationRow }[];
  /** β sweep at K = 3. */
  beta_sweep: { beta: number; row: AblationRow }[];
  /** Negative samplers: uniform (the main arms), same-genre, model-hard; DPO and S-DPO. */
  samplers: { sampler: string; method: string; row: AblationRow }[];
  /**
   * The K sweep on every negative sampler (uniform = `k_sweep`; popularity-weighted,
   * same-genre, model-hard pools of the prompt's candidates). K = 1 is DPO.
   */
  sampler_k_sweep: { sampler: string; k: number; row: AblationRow }[];
  /** Mean S-DPO softmax weight of a negative by its rank under the reference (1 = hardest). */
  neg_weights: { ref_rank: number; weight: number; uniform: number }[];
  /** Ablation rows by name, for the claims ("S-DPO K=8", "S-DPO β=0.1", ...). */
  methods: Record<string, AblationRow>;
}

/** The arms, in table order ("S-DPO" is K = 3; "S-DPO K=8" runs when the scale lists K 8). */
export const SDPO_METHODS = ["SFT", "SFT-cont", "DPO", "S-DPO", "S-DPO K=8"] as const;

const ARMS: { name: string; stage: Stage; k: number }[] = [
  { name: "SFT-cont", stage: "sft", k: 0 },
  { name: "DPO", stage: "dpo", k: 1 },
  { name: "S-DPO", stage: "sdpo", k: 3 },
];

/**
 * Evaluate a model on the S-DPO test prompts (ranking on all, generation on a prefix);
 * `world` is the synthetic world or a released data set's {@link SdpoText}.
 */
export function evaluateSdpo(
  model: LlamaModel,
  tok: Tokenizer,
  world: World | SdpoText,
  test: SdpoSample[],
  numGen: number,
): Omit<SdpoMethodResult, "train_seconds" | "final_loss"> & { scores: number[][] } {
  const t0 = performance.now();
  // The synthetic world's prompts, or a released data set's (src/experiments/datasets.ts).
  const form: SdpoText = "items" in world
    ? {
      prompt: (s) => worldSdpoPrompt(s, world.domains[s.domain]),
      maxNewTokens: Math.max(...world.items.map((i) => encodeResponse(tok, i.title).length)),
    }
    : world;
  const prompts = test.map((s) => encodePrompt(tok, form.prompt(s)));
  const scores = scoreResponses(
    model,
    test.map((s, i) => ({
      prompt: prompts[i],
      responses: s.candidates.map((c) => encodeResponse(tok, c)),
    })),
  );
  const positives = test.map((s) => s.positiveIndex);
  const rankHits = hitsAtK({ scores }, positives, 1);
  const ndcg = ndcgsAtK({ scores }, positives, 5);
  const gen = test.slice(0, numGen);
  // Names are matched in the tokenizer's normal form (the decoded text's form; a no-op for
  // the world's titles).
  const nf = (x: string) => tok.decode(tok.encode(x), { skipSpecial: true });
  const verdicts: SdpoVerdict[] = [];
  const examplesOut: string[] = [];
  for (let s = 0; s < gen.length; s += 32) {
    const chunk = gen.slice(s, s + 32);
    const outs = model.generate(
      chunk.map((_, j) => prompts[s + j]),
      { maxNewTokens: form.maxNewTokens, eosId: tok.eosId, padId: tok.padId },
    );
    outs.forEach((ids, j) => {
      const text = " " + tok.decode(ids, { skipSpecial: true });
      if (examplesOut.length < 5) examplesOut.push(text.trim());
      verdicts.push(sdpoValidity(text, chunk[j].candidates.map(nf), nf(chunk[j].positive)));
    });
  }
  const g = sdpoGenerationMetrics(verdicts);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    scores,
    pos_logp: scores.map((r, i) => Math.round(r[positives[i]] * 1e4) / 1e4),
    hr1_rank: mean(rankHits),
    ndcg5_rank: mean(ndcg),
    hr1_gen_all: g.hr1_all,
    hr1_gen_valid: Number.isFinite(g.hr1_valid) ? g.hr1_valid : null,
    valid_ratio: g.valid_ratio,
    rank_hits: rankHits,
    ...("items" in world
      ? {
        rank_expected: sdpoExpectedHits(world, test, scores).map((x) => Math.round(x * 1e6) / 1e6),
      }
      : {}),
    gen_hits: verdicts.map((v) => (v.hit ? 1 : 0)),
    gen_valid: verdicts.map((v) => (v.valid ? 1 : 0)),
    gen_examples: examplesOut,
    eval_seconds: since(t0),
  };
}

/** Reference rows on the test prompts: oracle, history-Bayes, popularity, random. */
export function referenceRows(world: World, test: SdpoSample[]): Record<string, ReferenceRow> {
  const positives = test.map((s) => s.positiveIndex);
  const row = (f: ReferenceScorer): ReferenceRow => {
    const scores = test.map((s) => f(world, s, s.candidateIds));
    const m = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    return {
      hr1_rank: m(hitsAtK({ scores }, positives, 1)),
      ndcg5_rank: m(ndcgsAtK({ scores }, positives, 5)),
    };
  };
  let rnd = 0;
  for (let r = 1; r <= 5; r++) rnd += 1 / Math.log2(r + 1);
  return {
    Oracle: row(oracleScores),
    "History-Bayes": row(historyBayesScores),
    Popularity: row(popularityScores),
    Random: { hr1_rank: 1 / 20, ndcg5_rank: rnd / 20 },
  };
}

/** The shared S-DPO data of a run (world, tokenizer, train/pref/test sets). */
export interface SdpoData {
  world: World;
  tok: Tokenizer;
  config: LlamaConfig;
  trainExamples: TrainExample[];
  /** The preference samples (a fixed subset of the train samples). */
  prefSamples: SdpoSample[];
  /** Their examples; `rejected` = a fixed seeded pool of `negPool` of the 19 negatives. */
  prefExamples: TrainExample[];
  test: SdpoSample[];
  /** Validation prompts (the world's validation users); absent = no checkpoint selection. */
  valid?: SdpoSample[];
}

/** Build the world, samples, tokenizer and model config of a scale. */
export function sdpoData(scale: Scale): SdpoData {
  const world = buildWorld();
  const train = sdpoSamples(world, "train", { drawsPerUser: scale.sdpoDrawsPerUser });
  // With a base model (--model, src/experiments/pretrained.ts): its tokenizer and config.
  const lm = currentBaseModel();
  const tok: Tokenizer = lm?.tokenizer ?? buildTokenizer(world, train[0]);
  const trainExamples = train.map((s) => sdpoExample(tok, s, world));
  const prefSamples = subset(train, scale.prefPrompts, 7);
  const rng = new Rng(17);
  const prefExamples = prefSamples.map((s) => {
    const e = sdpoExample(tok, s, world);
    return { ...e, rejected: rng.sample(e.rejected!, Math.min(scale.negPool, e.rejected!.length)) };
  });
  const test = subset(
    sdpoSamples(world, "test", { drawsPerUser: scale.sdpoTestDraws }),
    scale.sdpoTest,
    11,
  );
  const valid = subset(sdpoSamples(world, "valid"), scale.sdpoValid, 13);
  return {
    world,
    tok,
    config: lm?.config ?? modelConfig(tok.vocabSize),
    trainExamples,
    prefSamples,
    prefExamples,
    test,
    valid,
  };
}

/**
 * Train one LoRA arm from the SFT snapshot; returns the trained model (caller disposes). With
 * run folders on (src/experiments/runs.ts) the arm checkpoints into
 * `<runs>/seed<s>/<arm-slug>/`, resumes from there, and a finished arm of the same config is
 * loaded (PEFT adapter) instead of retrained.
 */
export async function trainArm(
  config: LlamaConfig,
  sft: Snapshot,
  examples: TrainExample[],
  arm: { name: string; stage: Stage; k: number; beta?: number },
  scale: Scale,
  steps: number,
  seed: number,
  progress: boolean,
  logEvery?: number,
  protocol?: ArmProtocol,
): Promise<
  {
    model: LlamaModel;
    seconds: number;
    finalLoss: number | null;
    history: MetricsRow[];
    /** Evaluation rows (with `protocol.evaluate`). */
    evals: MetricsRow[];
    /** The kept step (with `protocol.evaluate.select`). */
    bestStep?: number;
    /** Trained, resumed, or loaded from its run folder. */
    source: StageSource;
    /** Step it resumed from (0: not resumed). */
    resumedFrom: number;
    /** Seconds this call took (loading, for a loaded arm). */
    wallSeconds: number;
  }
> {
  const batchSize = scale.prefBatch;
  const k = Math.max(arm.k, 1);
  // The reference is the frozen SFT model either way; pick the cheaper way to get it:
  // live costs (1+K) forwards per example per step, precomputed 1+|pool| per distinct prompt.
  const pool = examples[0].rejected?.length ?? 0;
  const live = steps * batchSize * (1 + k);
  const pre = Math.min(examples.length, steps * batchSize) * (1 + pool);
  const r = await runStage({
    name: arm.name,
    seed,
    config,
    from: sft,
    mode: "lora",
    lora: protocol?.lora ?? loraConfig(100 + seed),
    examples,
    train: {
      stage: arm.stage,
      steps,
      batchSize,
      microBatchSize: 32,
      lr: protocol?.lr ?? scale.prefLr,
      warmupSteps: protocol?.warmupSteps ?? Math.min(10, Math.floor(steps / 5)),
      ...(protocol ? { maxGradNorm: protocol.maxGradNorm, minLrRatio: protocol.minLrRatio } : {}),
      numNegatives: k,
      beta: arm.beta ?? 1,
      reference: pre <= live ? "precomputed" : "live",
      seed,
      logEvery: logEvery ?? Math.max(1, Math.floor(steps / 4)),
    },
    label: arm.name,
    progress,
    baseModelName: currentBaseModel()?.folder,
    evaluate: protocol?.evaluate,
    extra: protocol?.evaluate ? { selection: protocol.selection } : undefined,
  });
  return {
    model: r.model!,
    seconds: r.seconds,
    finalLoss: r.finalLoss,
    history: r.history,
    evals: r.evals,
    bestStep: r.bestStep,
    source: r.source,
    resumedFrom: r.resumedFrom,
    wallSeconds: r.wallSeconds,
  };
}

/** The released-protocol knobs of a main arm ({@link trainArm}); absent = the ablations' short protocol. */
export interface ArmProtocol {
  lr: number;
  lora: LoraConfig;
  maxGradNorm: number;
  warmupSteps: number;
  /** Final lr as a fraction of the peak (Hugging Face's cosine schedule decays to 0). */
  minLrRatio: number;
  /** Validation evaluation and best-checkpoint selection. */
  evaluate?: EvalHook;
  /** What the evaluation measures and selects on (part of the stage hash). */
  selection?: string;
}

/**
 * LoRA of the main S-DPO arms, as the released scripts: r 8, α 32, dropout 0.1 on all seven
 * projections (sft.py lines 107-114; softmax_dpo.py continues that adapter).
 */
export function sdpoLoraConfig(seed: number): LoraConfig {
  return { r: 8, lora_alpha: 32, lora_dropout: 0.1, target_modules: [...LLAMA_PROJECTIONS], seed };
}

/** Released max_grad_norm (sft.py line 133, softmax_dpo.py line 138). */
export const SDPO_MAX_GRAD_NORM = 0.3;

/** Steps per main arm (re-exported from common.ts, where the scale presets live). */
export { sdpoArmSteps };

/**
 * Negatives drawn once per prompt (seeded), as the released `process_data` does when the
 * dataset is mapped (softmax_dpo.py lines 73-74): `kMax` of the prompt's rejected responses,
 * in draw order; an arm with K uses the first K, so DPO's negative is S-DPO's first.
 */
export function drawNegativesOnce(
  examples: readonly TrainExample[],
  kMax: number,
  seed: number,
): number[][] {
  const rng = new Rng(7919 * (seed + 1) + 17);
  return examples.map((e) => {
    const n = e.rejected?.length ?? 0;
    if (n < kMax) throw new Error(`a preference prompt has ${n} rejected responses, K = ${kMax}`);
    return rng.sample(Array.from({ length: n }, (_, j) => j), kMax);
  });
}

/** Examples whose rejected pool is exactly the drawn K (train() then uses all of them). */
export function withNegatives(
  examples: readonly TrainExample[],
  draws: readonly number[][],
  k: number,
): TrainExample[] {
  return examples.map((e, i) =>
    k === 0 ? { prompt: e.prompt, chosen: e.chosen } : {
      prompt: e.prompt,
      chosen: e.chosen,
      rejected: draws[i].slice(0, k).map((j) => e.rejected![j]),
    }
  );
}

/**
 * The validation loss of an arm from the scores of every candidate: SFT (K = 0) the
 * token-mean NLL of the positive, as the SFT loss; K ≥ 1 the S-DPO loss
 * `mean softplus(logsumexp_j β((π_j − ref_j) − (π_w − ref_w)))` over the drawn negatives
 * (`negs[i]`: candidate indices), DPO at K = 1.
 */
export function validationLoss(
  policy: readonly number[][],
  reference: readonly number[][],
  positives: readonly number[],
  negs: readonly number[][],
  k: number,
  beta: number,
  positiveTokens: readonly number[],
): number {
  if (k === 0) {
    let nll = 0, tokens = 0;
    policy.forEach((r, i) => {
      nll -= r[positives[i]];
      tokens += positiveTokens[i];
    });
    return nll / tokens;
  }
  let total = 0;
  policy.forEach((r, i) => {
    const w = positives[i];
    const rw = r[w] - reference[i][w];
    total += softplusLogSumExp(
      negs[i].slice(0, k).map((j) => beta * ((r[j] - reference[i][j]) - rw)),
    );
  });
  return total / policy.length;
}

/** One prompt's S-DPO loss from its logits z_j = β(reward_j − reward_w): softplus(logsumexp z). */
function softplusLogSumExp(zs: readonly number[]): number {
  const m = Math.max(...zs);
  const lse = m + Math.log(zs.reduce((a, z) => a + Math.exp(z - m), 0));
  return lse > 30 ? lse : Math.log1p(Math.exp(lse)); // softplus
}

/**
 * What a preference loss on held-out prompts is made of, with TRL's eval names: rewards are
 * β(π − ref) of the summed log-probs. Per (prompt, negative) pair: `accuracies` the share with
 * the chosen reward above the rejected one, `margins` the mean chosen − rejected reward;
 * `chosen` / `rejected` the mean rewards; `logps_chosen` the mean summed log-prob of the
 * positive. Per prompt: `ranked_first` the share whose positive the model scores above all K
 * negatives, and `loss_misranked` the part of the mean loss ({@link validationLoss}) carried by the others, so
 * `loss − loss_misranked` comes from the prompts the model already ranks right.
 */
export interface PreferenceDiagnostics {
  accuracies: number;
  margins: number;
  chosen: number;
  rejected: number;
  logps_chosen: number;
  ranked_first: number;
  loss_misranked: number;
}

/** {@link PreferenceDiagnostics} of scored prompts (arguments as {@link validationLoss}, K ≥ 1). */
export function preferenceDiagnostics(
  policy: readonly number[][],
  reference: readonly number[][],
  positives: readonly number[],
  negs: readonly number[][],
  k: number,
  beta: number,
): PreferenceDiagnostics {
  let pairs = 0, right = 0, margin = 0, chosen = 0, rejected = 0, logp = 0;
  let first = 0, misLoss = 0;
  policy.forEach((r, i) => {
    const w = positives[i];
    const rw = beta * (r[w] - reference[i][w]);
    chosen += rw;
    logp += r[w];
    let all = true;
    const zs: number[] = [];
    for (const j of negs[i].slice(0, k)) {
      const rl = beta * (r[j] - reference[i][j]);
      pairs++;
      rejected += rl;
      margin += rw - rl;
      if (rw > rl) right++;
      if (r[j] >= r[w]) all = false;
      zs.push(rl - rw);
    }
    if (all) first++;
    else misLoss += softplusLogSumExp(zs);
  });
  const n = policy.length;
  return {
    accuracies: right / pairs,
    margins: margin / pairs,
    chosen: chosen / n,
    rejected: rejected / pairs,
    logps_chosen: logp / n,
    ranked_first: first / n,
    loss_misranked: misLoss / n,
  };
}

/**
 * Train prompts whose loss every evaluation also reports (the generalisation gap): this many,
 * or as many as the validation prompts when there are fewer.
 */
const HELD_IN_PROMPTS = 200;

/** A curve point's diagnostics from an evaluation row of train() (`eval_diag_*`). */
function evalDiagnostics(e: Record<string, number>): Hr1CurvePoint["diagnostics"] {
  return {
    accuracies: e.eval_diag_accuracies,
    margins: e.eval_diag_margins,
    chosen: e.eval_diag_chosen,
    rejected: e.eval_diag_rejected,
    logps_chosen: e.eval_diag_logps_chosen,
    ranked_first: e.eval_diag_ranked_first,
    loss_misranked: e.eval_diag_loss_misranked,
    train_loss: e.eval_train_loss,
  };
}

/** Validation prompts of the main arms with their reference scores and fixed negatives. */
interface ValidationSet {
  items: { prompt: number[]; responses: number[][] }[];
  /** The SFT model's scores of every candidate. */
  ref: number[][];
  pos: number[];
  /** Negatives drawn once per validation prompt (candidate indices; an arm uses the first K). */
  negs: number[][];
  posTokens: number[];
  /**
   * A fixed sample of train prompts (chosen first, then every rejected response), their
   * indices in the train examples and their reference scores: the loss the arm trains on.
   */
  heldIn: { items: { prompt: number[]; responses: number[][] }[]; idx: number[]; ref: number[][] };
  /** The test prompts of the curves. */
  curve: { prompt: number[]; responses: number[][] }[];
  curvePos: number[];
}

/**
 * The main arms' protocol with what the released scripts do (file:line at S-DPO commit
 * 07befa4) and this run's departures from it.
 */
export function sdpoProtocol(
  scale: Scale,
  lr: number,
  lrSelection: SdpoResult["lr_selection"],
  trainPrompts: number,
  numValid: number,
  /** The rate was fixed by the caller (`--lr`), not by the scale. */
  lrFixed = false,
): SdpoProtocol {
  const steps = sdpoArmSteps(scale);
  const examples = steps * scale.prefBatch;
  const stage0 = scale.baseSteps * scale.sftBatch;
  const epochs = (n: number) => (n / trainPrompts).toFixed(2);
  const evalEvery = Math.max(1, Math.ceil(steps / Math.max(1, scale.sdpoEvals)));
  const departures = [
    scale.sdpoBudgetRatio > 0
      ? `Budget: the released 3:5 proportion of preference to SFT epochs is applied to the ` +
        `kit's stage 0 (${scale.baseSteps} steps × ${scale.sftBatch} = ${stage0} examples, ` +
        `${epochs(stage0)} epochs of the ${trainPrompts} train prompts, not 5 epochs): ` +
        `${scale.sdpoBudgetRatio} × ${stage0} = ${examples} preference examples per arm ` +
        `(${steps} steps × ${scale.prefBatch}), ${epochs(examples)} epochs, not 3.`
      : `Budget: ${steps} steps × ${scale.prefBatch} = ${examples} preference examples per arm ` +
        `(${epochs(examples)} epochs of the ${trainPrompts} train prompts), far below the ` +
        `released proportion (0.6 × stage 0's ${stage0} examples = ${
          Math.round(0.6 * stage0)
        }); the ` +
        "arms are under-trained relative to the released protocol (--scale full runs it).",
    `Batch ${scale.prefBatch} prompts per step (released: 4 per device × 8 accumulation × 4 ` +
    "GPUs = 128); warmup 5 % and cosine decay to 0 as released.",
    lrSelection.length > 1
      ? `Learning rate ${lr}: chosen among ${lrSelection.map((x) => x.lr).join(", ")} on ` +
        "DPO's validation HR@1 at its kept checkpoint (first seed), then used by every arm; " +
        "released: 1e-5 for SFT and preference stages, for a 4-bit 7B model."
      : lrFixed
      ? `Learning rate ${lr}, fixed by --lr (not selected in this run: an earlier run's ` +
        "selection on DPO's validation HR@1; released: 1e-5 for a 4-bit 7B model)."
      : `Learning rate ${lr}, fixed (not selected in this run; released: 1e-5 for a 4-bit 7B ` +
        "model); --scale full selects it on DPO's validation HR@1.",
    "SFT is stage 0, full fine-tuning of the small pretrained LM (released: a LoRA SFT at " +
    "lr 1e-5 for 5 epochs); each preference arm trains a fresh LoRA adapter (r 8, α 32, " +
    "dropout 0.1, as released) on the SFT model instead of continuing the SFT adapter; the " +
    "reference is the frozen SFT model either way.",
    "Negatives are drawn once per prompt and seed, as released, but nested across K (DPO's " +
    "negative is the first of S-DPO K=3's, whose are the first of K=8's), so the arms " +
    "differ in K only; released runs draw independently.",
    `Validation: ${numValid} prompts of the world's validation users, every ${evalEvery} ` +
    `steps (${scale.sdpoEvals} evaluations; released: up to 2,000 validation rows every 10 % ` +
    "of training), checkpoint = lowest validation loss of the arm, as released.",
    "SFT-cont (a LoRA SFT continuation with the same budget) is the kit's control; the " +
    "released code has no such arm.",
    "One prompt template (the world's) instead of 10 drawn at random; float32 instead of " +
    "4-bit weights with bf16.",
  ];
  return {
    steps,
    batch: scale.prefBatch,
    examples_per_arm: examples,
    train_prompts: trainPrompts,
    lr,
    lora: sdpoLoraConfig(0),
    max_grad_norm: SDPO_MAX_GRAD_NORM,
    warmup_steps: Math.round(0.05 * steps),
    evals_per_arm: scale.sdpoEvals,
    selection: "the arm's own validation loss (SFT loss for SFT-cont, the DPO / S-DPO loss " +
      "with each validation prompt's negatives drawn once), lowest kept " +
      "(load_best_model_at_end, metric_for_best_model = loss)",
    released: [
      "softmax_dpo.sh / dpo.sh: lr 1e-5, 3 epochs, β 1, neg_num 3 / 1, eval_step 0.1; " +
      "sft.sh: lr 1e-5, 5 epochs, eval_step 0.2; all on the whole lastfm-train.json.",
      "softmax_dpo.py l.73-74, 87-88: negatives = random.sample of the 19 other candidates, " +
      "once, when the train file is mapped (random.seed(1958), l.22); validation l.92-95 the " +
      "same, at most 2,000 rows.",
      "sft.py l.133 and softmax_dpo.py l.138: max_grad_norm 0.3; l.147/l.146-147: cosine, " +
      "warmup_ratio 0.05; paged AdamW 32-bit.",
      "sft.py l.107-114: LoRA r 8, α 32, dropout 0.1 on q/k/v/o/gate/up/down; " +
      "softmax_dpo.py l.116-117 continues that adapter (is_trainable) and l.121-126 loads it " +
      "again, frozen, as the reference.",
      "sft.py l.140-142 and softmax_dpo.py l.144-147: save and evaluate every eval_step, " +
      "load_best_model_at_end=True with no metric_for_best_model, i.e. the lowest eval_loss.",
    ],
    departures,
  };
}

/** Ranking-only evaluation (ablation arms). */
function rankRow(
  model: LlamaModel,
  tok: Tokenizer,
  world: World,
  test: SdpoSample[],
  trainSeconds: number,
): AblationRow {
  const scores = scoreResponses(
    model,
    test.map((s) => ({
      prompt: sdpoExample(tok, s, world).prompt,
      responses: s.candidates.map((c) => encodeResponse(tok, c)),
    })),
  );
  const pos = test.map((s) => s.positiveIndex);
  const hits = hitsAtK({ scores }, pos, 1);
  const m = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    hr1_rank: m(hits),
    ndcg5_rank: m(ndcgsAtK({ scores }, pos, 5)),
    rank_hits: hits,
    rank_expected: sdpoExpectedHits(world, test, scores).map((x) => Math.round(x * 1e6) / 1e6),
    pos_logp: scores.map((r, i) => Math.round(r[pos[i]] * 1e4) / 1e4),
    train_seconds: trainSeconds,
  };
}

/**
 * Mean S-DPO softmax weight per negative, bucketed by the negative's rank under the
 * reference model (1 = the reference's most likely negative), over the test prompts:
 * weights = softmax_k β((π_k − ref_k) − (π_w − ref_w)) over all 19 negatives.
 */
export function negativeWeightsByRefRank(
  policy: number[][],
  reference: number[][],
  test: SdpoSample[],
  beta: number,
): { ref_rank: number; weight: number; uniform: number }[] {
  const b = test.length;
  const negIdx = test.map((s) =>
    s.candidates.map((_, j) => j).filter((j) => j !== s.positiveIndex)
  );
  const k = negIdx[0].length;
  const w = tf.tidy(() =>
    sdpoNegativeWeights(
      tf.tensor1d(test.map((s, i) => policy[i][s.positiveIndex])),
      tf.tensor2d(negIdx.map((ix, i) => ix.map((j) => policy[i][j])), [b, k]),
      tf.tensor1d(test.map((s, i) => reference[i][s.positiveIndex])),
      tf.tensor2d(negIdx.map((ix, i) => ix.map((j) => reference[i][j])), [b, k]),
      { beta },
    )
  );
  const wd = w.arraySync() as number[][];
  w.dispose();
  const sums = new Array(k).fill(0);
  negIdx.forEach((ix, i) => {
    const order = ix.map((_, q) => q).sort((x, y) => reference[i][ix[y]] - reference[i][ix[x]]);
    order.forEach((q, rank) => (sums[rank] += wd[i][q]));
  });
  return sums.map((v, r) => ({
    ref_rank: r + 1,
    weight: Math.round((v / b) * 1e5) / 1e5,
    uniform: Math.round((1 / k) * 1e5) / 1e5,
  }));
}

/** Hard rejected pools of size k: same-genre first, or the SFT model's top-scored negatives. */
export function hardPools(
  data: SdpoData,
  k: number,
  sampler: "same-genre" | "model-hard" | "popularity",
  sftScores?: number[][],
): TrainExample[] {
  const { world, tok, prefSamples } = data;
  const rng = new Rng(23 + k);
  return prefSamples.map((s, i) => {
    const negs = s.candidates.map((_, j) => j).filter((j) => j !== s.positiveIndex);
    let order: number[];
    if (sampler === "same-genre") {
      const g = world.items[s.positiveId].genre;
      const same = rng.shuffle(negs.filter((j) => world.items[s.candidateIds[j]].genre === g));
      const other = rng.shuffle(negs.filter((j) => world.items[s.candidateIds[j]].genre !== g));
      order = [...same, ...other];
    } else if (sampler === "popularity") {
      // Popularity-weighted draws without replacement (Efraimidis–Spirakis keys).
      const key = new Map(negs.map((j) => [
        j,
        Math.log(rng.next() + 1e-12) / world.items[s.candidateIds[j]].popularity,
      ]));
      order = negs.slice().sort((x, y) => key.get(y)! - key.get(x)!);
    } else {
      order = hardestFirst(negs.map((j) => sftScores![i][j])).map((r) => negs[r]);
    }
    return {
      prompt: data.prefExamples[i].prompt,
      chosen: data.prefExamples[i].chosen,
      rejected: order.slice(0, k).map((j) => encodeResponse(tok, s.candidates[j])),
    };
  });
}

/** Run the S-DPO experiment. */
export async function run(cfg: SdpoRunConfig): Promise<SdpoResult> {
  await ensureBackend();
  const t0 = performance.now();
  const scale = SCALE_PRESETS[cfg.scale];
  const progress = cfg.progress !== false;
  const log = (m: string) => progress && console.error(m);
  const data: SdpoData | SdpoDataset = cfg.data ?? sdpoData(scale);
  const world = "world" in data ? data.world : undefined; // undefined on a released data set
  const text = cfg.data?.text ?? world!;
  const { tok, config, test } = data;
  const numGen = Math.min(scale.sdpoGenTest, test.length);

  const references = cfg.data?.references ?? referenceRows(world!, test);
  const perSeed: SdpoSeedResult[] = [];
  const curves: CurvePoint[] = [];
  const curveEvery = Math.max(1, Math.floor(scale.prefSteps / 20));
  // The released protocol on the synthetic world (a released data set keeps the short
  // preference stage: its prepared data has no validation split here).
  const protocol = "world" in data && data.valid ? data as SdpoData : undefined;
  const steps = sdpoArmSteps(scale);
  const mainEvery = Math.max(1, Math.floor(steps / 20));
  const evalEvery = Math.max(1, Math.ceil(steps / Math.max(1, scale.sdpoEvals)));
  const grid = cfg.lr !== undefined
    ? [cfg.lr]
    : scale.sdpoLrGrid.length
    ? scale.sdpoLrGrid
    : [scale.prefLr];
  let chosenLr = grid[0];
  const lrSelection: SdpoResult["lr_selection"] = [];
  const hr1Curves: Hr1CurvePoint[] = [];
  const curveHits: SdpoResult["curve_hits"] = [];
  const kMax = Math.max(1, ...scale.sdpoKs);
  const allArms: { name: string; stage: Stage; k: number }[] = [
    { name: "SFT-cont", stage: "sft", k: 0 },
    { name: "DPO", stage: "dpo", k: 1 },
    ...scale.sdpoKs.map((k, i) => ({
      name: i === 0 ? "S-DPO" : `S-DPO K=${k}`,
      stage: "sdpo" as Stage,
      k,
    })),
  ];
  const unknown = (cfg.arms ?? []).filter((a) => !allArms.some((x) => x.name === a));
  if (unknown.length) {
    throw new ConfigError(
      "arms",
      `unknown arm(s) ${unknown.map((a) => `"${a}"`).join(", ")}; the main arms are ` +
        allArms.map((x) => x.name).join(", "),
    );
  }
  const mainArms = cfg.arms?.length ? allArms.filter((x) => cfg.arms!.includes(x.name)) : allArms;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  log(
    `[sdpo] ${data.trainExamples.length} train prompts, ` +
      (protocol
        ? `arms ${mainArms.map((a) => a.name).join(", ")}: ${steps} steps × ${scale.prefBatch} ` +
          `each, ${protocol.valid!.length} validation prompts, `
        : `${data.prefExamples.length} preference prompts (pool ${scale.negPool}), `) +
      `${test.length} test prompts (${numGen} generated), vocab ${tok.vocabSize}`,
  );
  // Validation prompts, their reference (SFT) scores and negatives drawn once (fixed across
  // seeds, as the released validation set is mapped once), per SFT snapshot.
  const validSets = new WeakMap<Snapshot, ValidationSet>();
  const validationSet = (sft: Snapshot, sftModel: LlamaModel): ValidationSet => {
    const d = protocol!;
    const valid = d.valid!;
    const item = (s: SdpoSample) => ({
      prompt: encodePrompt(tok, worldSdpoPrompt(s, d.world.domains[s.domain])),
      responses: s.candidates.map((c) => encodeResponse(tok, c)),
    });
    const hit = validSets.get(sft);
    if (hit) return hit;
    const items = valid.map(item);
    const rng = new Rng(29);
    const heldIdx = new Rng(31).sample(
      Array.from({ length: d.trainExamples.length }, (_, i) => i),
      Math.min(HELD_IN_PROMPTS, valid.length, d.trainExamples.length),
    );
    const heldItems = heldIdx.map((i) => ({
      prompt: d.trainExamples[i].prompt,
      responses: [d.trainExamples[i].chosen, ...(d.trainExamples[i].rejected ?? [])],
    }));
    const out = {
      items,
      heldIn: { items: heldItems, idx: heldIdx, ref: scoreResponses(sftModel, heldItems) },
      ref: scoreResponses(sftModel, items),
      pos: valid.map((s) => s.positiveIndex),
      negs: valid.map((s) =>
        rng.sample(s.candidates.map((_, j) => j).filter((j) => j !== s.positiveIndex), kMax)
      ),
      posTokens: valid.map((s) => encodeResponse(tok, s.positive).length),
      curve: test.slice(0, scale.sdpoCurveTest).map(item),
      curvePos: test.slice(0, scale.sdpoCurveTest).map((s) => s.positiveIndex),
    };
    validSets.set(sft, out);
    return out;
  };
  // Per-row test hits of the curve prompts at every evaluation, by `${seed}|${stage name}`
  // (kept in the stage's run folder too, so a resumed or loaded stage still has them).
  const curveRows = new Map<string, Map<number, { hits: number[]; exp: number[] }>>();
  const CURVE_ROWS_FILE = "curve_rows.jsonl";
  const armRows = async (seed: number, name: string) => {
    const rows = new Map<number, { hits: number[]; exp: number[] }>();
    const dir = armDir(seed, name);
    if (dir) {
      try {
        for (const l of (await Deno.readTextFile(`${dir}/${CURVE_ROWS_FILE}`)).split("\n")) {
          try {
            const o = JSON.parse(l);
            rows.set(o.step, { hits: o.hits, exp: o.exp });
          } catch {
            // an empty or torn line
          }
        }
      } catch {
        // no file: trained in memory
      }
    }
    for (const [step, r] of curveRows.get(`${seed}|${name}`) ?? []) rows.set(step, r);
    return rows;
  };
  const armProtocol = (
    lr: number,
    k: number,
    seed: number,
    v: ValidationSet,
    name: string,
    draws: readonly number[][],
  ): ArmProtocol => ({
    lr,
    lora: sdpoLoraConfig(100 + seed),
    maxGradNorm: SDPO_MAX_GRAD_NORM,
    warmupSteps: Math.round(0.05 * steps),
    minLrRatio: 0,
    selection: `lowest validation loss of the arm (K=${k}) over ${v.items.length} validation ` +
      `prompts every ${evalEvery} steps`,
    evaluate: {
      every: evalEvery,
      select: "loss",
      fn: async (step, model) => {
        const vs = scoreResponses(model, v.items);
        const ts = scoreResponses(model, v.curve);
        const row = {
          hits: hitsAtK({ scores: ts }, v.curvePos, 1),
          exp: sdpoExpectedHits(protocol!.world, test.slice(0, v.curve.length), ts)
            .map((x) => Math.round(x * 1e4) / 1e4),
        };
        const key = `${seed}|${name}`;
        if (!curveRows.has(key)) curveRows.set(key, new Map());
        curveRows.get(key)!.set(step, row);
        const dir = armDir(seed, name);
        if (dir) await appendJsonLine(`${dir}/${CURVE_ROWS_FILE}`, { step, ...row });
        const out: Record<string, number> = {
          loss: validationLoss(vs, v.ref, v.pos, v.negs, k, 1, v.posTokens),
          hr1: mean(hitsAtK({ scores: vs }, v.pos, 1)),
          test_hr1: mean(hitsAtK({ scores: ts }, v.curvePos, 1)),
        };
        if (k > 0) {
          // What the loss is made of, and the same loss on the arm's own train prompts.
          const diag = preferenceDiagnostics(vs, v.ref, v.pos, v.negs, k, 1);
          for (const [key, x] of Object.entries(diag)) out[`diag_${key}`] = x;
          const h = v.heldIn;
          const hs = scoreResponses(model, h.items);
          const hNegs = h.idx.map((i) => draws[i].map((j) => j + 1));
          out.train_loss = validationLoss(hs, h.ref, h.idx.map(() => 0), hNegs, k, 1, []);
        }
        return out;
      },
    },
  });
  /** The main arms of one seed under the released protocol. */
  const runMainArms = async (
    seed: number,
    sft: Snapshot,
    sftModel: LlamaModel,
    methods: Record<string, SdpoMethodResult>,
    scoresBy: Record<string, number[][]>,
  ) => {
    const d = protocol!;
    const v = validationSet(sft, sftModel);
    const sftVal = mean(hitsAtK({ scores: v.ref }, v.pos, 1));
    const sftCurve = mean(
      hitsAtK({ scores: scoresBy.SFT.slice(0, v.curve.length) }, v.curvePos, 1),
    );
    methods.SFT.val_hr1 = sftVal;
    const draws = drawNegativesOnce(d.trainExamples, kMax, seed);
    type Trained = Awaited<ReturnType<typeof trainArm>>;
    let preDpo: Trained | undefined;
    if (grid.length > 1 && seed === cfg.seeds[0]) {
      // The learning rate: chosen on DPO's validation HR@1 (at its kept checkpoint).
      let bestHr = -Infinity;
      for (const lr of grid) {
        const r = await trainArm(
          config,
          sft,
          withNegatives(d.trainExamples, draws, 1),
          { name: `DPO lr=${lr}`, stage: "dpo", k: 1 },
          scale,
          steps,
          seed,
          progress,
          mainEvery,
          armProtocol(lr, 1, seed, v, `DPO lr=${lr}`, draws),
        );
        recordStage("sdpo", `DPO lr=${lr}` + sourceNote(r), seed, r.wallSeconds);
        const row = r.evals.find((e) => e.step === r.bestStep);
        const hr = row?.eval_hr1 ?? -Infinity;
        lrSelection.push({
          lr,
          val_hr1: row?.eval_hr1 ?? null,
          best_step: r.bestStep ?? null,
          curve: r.evals.map((e) => ({
            step: e.step,
            hr1: e.eval_hr1,
            loss: e.eval_loss,
            ...(e.eval_train_loss === undefined ? {} : { diagnostics: evalDiagnostics(e) }),
          })),
        });
        log(`[sdpo] lr ${lr}: DPO validation HR@1 ${hr.toFixed(3)} (step ${r.bestStep})`);
        if (hr > bestHr) {
          preDpo?.model.dispose();
          preDpo = r;
          bestHr = hr;
          chosenLr = lr;
        } else r.model.dispose();
      }
      log(`[sdpo] learning rate ${chosenLr} (best DPO validation HR@1)`);
    } else if (lrSelection.length === 0) {
      lrSelection.push({ lr: chosenLr, val_hr1: null, best_step: null });
    }
    if (preDpo && !mainArms.some((a) => a.name === "DPO")) {
      preDpo.model.dispose();
      preDpo = undefined;
    }
    for (const arm of mainArms) {
      const r = arm.name === "DPO" && preDpo ? preDpo : await trainArm(
        config,
        sft,
        withNegatives(d.trainExamples, draws, arm.k),
        arm,
        scale,
        steps,
        seed,
        progress,
        mainEvery,
        armProtocol(chosenLr, arm.k, seed, v, arm.name, draws),
      );
      if (!(arm.name === "DPO" && preDpo)) {
        recordStage("sdpo", arm.name + sourceNote(r), seed, r.wallSeconds);
      }
      const { scores, ...ev } = evaluateSdpo(r.model, tok, text, test, numGen);
      recordStage("sdpo", `eval/${arm.name}`, seed, ev.eval_seconds);
      r.model.dispose();
      scoresBy[arm.name] = scores;
      const kept = r.evals.find((e) => e.step === r.bestStep);
      const stageName = arm.name === "DPO" && preDpo ? `DPO lr=${chosenLr}` : arm.name;
      for (const [step, row] of [...(await armRows(seed, stageName))].sort((a, b) => a[0] - b[0])) {
        curveHits.push({
          method: arm.name,
          seed,
          step,
          rank_hits: row.hits,
          rank_expected: row.exp,
        });
      }
      const exp = ev.rank_expected ?? [];
      methods[arm.name] = {
        ...ev,
        train_seconds: r.seconds,
        final_loss: r.finalLoss,
        hr1_exp: mean(exp),
        steps,
        lr: chosenLr,
        best_step: r.bestStep ?? null,
        val_loss: kept?.eval_loss ?? null,
        val_hr1: kept?.eval_hr1 ?? null,
      };
      hr1Curves.push(
        { method: arm.name, seed, step: 0, split: "valid", hr1: sftVal, loss: null },
        { method: arm.name, seed, step: 0, split: "test", hr1: sftCurve, loss: null },
      );
      for (const e of r.evals) {
        hr1Curves.push(
          {
            method: arm.name,
            seed,
            step: e.step,
            split: "valid",
            hr1: e.eval_hr1,
            loss: e.eval_loss,
            ...(e.eval_train_loss === undefined ? {} : { diagnostics: evalDiagnostics(e) }),
          },
          { method: arm.name, seed, step: e.step, split: "test", hr1: e.eval_test_hr1, loss: null },
        );
      }
      if (arm.stage !== "sft") {
        for (const row of r.history) {
          for (const metric of CURVE_METRICS) {
            if (row[metric] !== undefined) {
              curves.push({ method: arm.name, seed, step: row.step, metric, value: row[metric] });
            }
          }
        }
      }
      log(
        `[sdpo] seed ${seed}: ${arm.name} HR@1 ${ev.hr1_rank.toFixed(3)} (expected ` +
          `${mean(exp).toFixed(3)}; kept step ${r.bestStep} of ${steps})`,
      );
    }
  };
  let ablations: SdpoAblations | undefined;
  // Seeds sharing the stage-0 snapshot share its evaluation (evalOnce).
  const sftEvals = new WeakMap<Snapshot, Map<string, ReturnType<typeof evaluateSdpo>>>();
  for (const seed of cfg.seeds) {
    const ts = performance.now();
    const sftKind = currentBaseModel() ? "LoRA SFT merged into the base model" : "full fine-tuning";
    const s0 = stage0SeedOf(scale, seed);
    log(
      `[sdpo] seed ${seed}: SFT (${sftKind}, ${scale.baseSteps} steps` +
        (s0 === seed || currentBaseModel() ? ")" : `; stage 0 of seed ${s0}, shared)`),
    );
    const tb = performance.now();
    const base = await stage0Snapshot(config, data.trainExamples, scale, seed, {
      label: `stage0/SFT s${seed}`,
      progress,
    });
    recordStage(
      "sdpo",
      base.fromDisk ? "SFT (stage 0, from disk cache)" : base.reused ? "SFT (reused)" : "SFT",
      seed,
      since(tb),
    );
    const sft = base.snap;
    const sftModel = fromSnapshot(config, sft);
    const methods: Record<string, SdpoMethodResult> = {};
    const { row, reused } = evalOnce(
      sftEvals,
      sft,
      "SFT",
      () => evaluateSdpo(sftModel, tok, text, test, numGen),
    );
    const { scores: sftScores, ...sftEval } = row;
    methods.SFT = { ...sftEval, train_seconds: base.seconds, final_loss: base.finalLoss };
    if (world) {
      const exp = sftEval.rank_expected ?? [];
      methods.SFT.hr1_exp = exp.reduce((a, b) => a + b, 0) / Math.max(1, exp.length);
    }
    recordStage("sdpo", reused ? "eval/SFT (reused)" : "eval/SFT", seed, sftEval.eval_seconds);
    log(`[sdpo] seed ${seed}: SFT HR@1 ${methods.SFT.hr1_rank.toFixed(3)}`);
    const scoresBy: Record<string, number[][]> = { SFT: sftScores };
    if (protocol) {
      await runMainArms(seed, sft, sftModel, methods, scoresBy);
    } else {
      for (const arm of ARMS) {
        const { model, seconds, finalLoss, history, ...how } = await trainArm(
          config,
          sft,
          data.prefExamples,
          arm,
          scale,
          scale.prefSteps,
          seed,
          progress,
          curveEvery,
        );
        recordStage("sdpo", arm.name + sourceNote(how), seed, how.wallSeconds);
        const { scores, ...ev } = evaluateSdpo(model, tok, text, test, numGen);
        recordStage("sdpo", `eval/${arm.name}`, seed, ev.eval_seconds);
        scoresBy[arm.name] = scores;
        methods[arm.name] = { ...ev, train_seconds: seconds, final_loss: finalLoss };
        model.dispose();
        if (arm.stage !== "sft") {
          for (const row of history) {
            for (const metric of CURVE_METRICS) {
              if (row[metric] !== undefined) {
                curves.push({ method: arm.name, seed, step: row.step, metric, value: row[metric] });
              }
            }
          }
        }
        log(`[sdpo] seed ${seed}: ${arm.name} HR@1 ${methods[arm.name].hr1_rank.toFixed(3)}`);
      }
    }
    if (cfg.baselines !== false && cfg.seeds.indexOf(seed) < scale.baselineSeeds) {
      const recs = cfg.data
        ? await cfg.data.baselines(scale, seed, progress)
        : await baselinesFor(world!, scale, seed, progress);
      for (const name of BASELINE_NAMES) {
        const b = recs.get(name)!;
        const row = baselineSdpoRow(b.rec, test);
        methods[BASELINE_ROWS[name]] = {
          ...row,
          pos_logp: [],
          hr1_gen_all: NaN,
          hr1_gen_valid: null,
          valid_ratio: NaN,
          gen_hits: [],
          gen_valid: [],
          gen_examples: [],
          train_seconds: b.reused ? 0 : b.seconds,
          final_loss: null,
        } as SdpoMethodResult;
      }
    }
    if (cfg.ablations && "world" in data && seed === cfg.seeds[0]) {
      ablations = await runAblations(data, scale, seed, sft, sftModel, scoresBy, progress);
    }
    sftModel.dispose();
    // With a base model (--model) every seed trains its own stage 0.
    perSeed.push({
      seed,
      methods,
      stage0_seed: currentBaseModel() ? seed : s0,
      seconds: since(ts),
    });
    log(`[sdpo] seed ${seed} done in ${since(ts)} s (tensors ${tf.memory().numTensors})`);
  }
  return {
    paper: "sdpo",
    scale,
    config: {
      world: world?.config ?? null,
      model: config,
      lora: protocol ? sdpoLoraConfig(0) : loraConfig(0),
      arms: protocol ? mainArms : ARMS,
      beta: 1,
      negatives: protocol
        ? `every train prompt's negatives drawn once per seed (uniform over its 19 other ` +
          `candidates, nested across K); validation negatives drawn once (fixed seed)`
        : `each preference prompt has a fixed seeded pool of ${scale.negPool} of its 19 ` +
          `non-target candidates (uniform); K of them are drawn per step`,
      reference: "the frozen SFT model; precomputed per prompt or computed live, whichever " +
        "costs fewer forwards (identical values)",
      sft:
        `stage 0 = full fine-tuning of the base LM (${
          baseLmHashInUse() ? `pretrained, hash ${baseLmHashInUse()}` : "a random init"
        }) on the train prompts (prompt → positive title + EOS); this model is the SFT row ` +
        `and the reference of every arm; ${scale.stage0Seeds} distinct stage-0 model(s), ` +
        "seed s uses stage 0 of seed s mod that",
      base_lm: baseLmHashInUse(),
      baselines: `trained on the train users' history prefixes plus ${scale.baselineDraws} ` +
        `S-DPO targets per user, ${scale.baselineEpochs} epoch(s); scored on the same 20 ` +
        "candidates",
      ...cfg.data?.describe,
    },
    seeds: cfg.seeds,
    num_test: test.length,
    num_gen_test: numGen,
    references,
    row_users: test.map((s) => s.user),
    stage0_methods: ["SFT"],
    per_seed: perSeed,
    curves,
    ablations,
    seconds: since(t0),
    num_valid: protocol?.valid?.length ?? 0,
    hr1_curves: hr1Curves,
    curve_hits: curveHits,
    lr_selection: protocol ? lrSelection : [],
    protocol: protocol
      ? sdpoProtocol(
        scale,
        chosenLr,
        lrSelection,
        data.trainExamples.length,
        protocol?.valid?.length ?? 0,
        cfg.lr !== undefined,
      )
      : undefined,
  };
}

/** Metrics of the training curves. */
export const CURVE_METRICS = [
  "rewards/chosen",
  "rewards/rejected",
  "logps/chosen",
  "logps/rejected",
] as const;

async function runAblations(
  data: SdpoData,
  scale: Scale,
  seed: number,
  sft: Snapshot,
  sftModel: LlamaModel,
  scoresBy: Record<string, number[][]>,
  progress: boolean,
): Promise<SdpoAblations> {
  const { world, tok, config, test } = data;
  const log = (m: string) => progress && console.error(m);
  const arm = async (
    name: string,
    stage: Stage,
    k: number,
    beta: number,
    examples: TrainExample[],
  ): Promise<AblationRow> => {
    const { model, seconds, ...how } = await trainArm(
      config,
      sft,
      examples,
      { name, stage, k, beta },
      scale,
      scale.prefSteps,
      seed,
      progress,
    );
    recordStage("sdpo-ablations", name + sourceNote(how), seed, how.wallSeconds);
    const row = rankRow(model, tok, world, test, seconds);
    model.dispose();
    log(`[sdpo/ablation] ${name}: HR@1 ${row.hr1_rank.toFixed(3)}`);
    return row;
  };
  const methods: Record<string, AblationRow> = {};
  // The ablations keep the short preference stage (prefSteps on the prefPrompts subset, a
  // pool of negatives redrawn per step, LoRA α 16): their own uniform DPO and S-DPO K=3 rows,
  // not the main arms, which run the released protocol.
  const uniDpo = await arm("DPO (uniform)", "dpo", 1, 1, data.prefExamples);
  const uniSdpo = await arm("S-DPO (uniform)", "sdpo", 3, 1, data.prefExamples);
  const kSweep: { k: number; row: AblationRow }[] = [];
  for (const k of scale.ablKs) {
    const row = k === 1
      ? uniDpo
      : k === 3
      ? uniSdpo
      : await arm(`S-DPO K=${k}`, "sdpo", k, 1, data.prefExamples);
    kSweep.push({ k, row });
    methods[`S-DPO K=${k}`] = row;
  }
  methods["S-DPO K=max"] = kSweep.reduce((a, b) => (b.k > a.k ? b : a)).row;
  const betaSweep: { beta: number; row: AblationRow }[] = [];
  for (const beta of scale.ablBetas) {
    const row = beta === 1
      ? uniSdpo
      : await arm(`S-DPO β=${beta}`, "sdpo", 3, beta, data.prefExamples);
    betaSweep.push({ beta, row });
    methods[`S-DPO β=${beta}`] = row;
  }
  // Negative samplers.
  const t0 = performance.now();
  const prefScores = scoreResponses(
    sftModel,
    data.prefSamples.map((s, i) => ({
      prompt: data.prefExamples[i].prompt,
      responses: s.candidates.map((c) => encodeResponse(tok, c)),
    })),
  );
  recordStage("sdpo-ablations", "score pref prompts (model-hard)", seed, since(t0));
  const samplers: { sampler: string; method: string; row: AblationRow }[] = [
    { sampler: "uniform", method: "DPO", row: uniDpo },
    { sampler: "uniform", method: "S-DPO", row: uniSdpo },
  ];
  for (const sampler of ["same-genre", "model-hard"] as const) {
    for (const [method, stage, k] of [["DPO", "dpo", 1], ["S-DPO", "sdpo", 3]] as const) {
      const row = await arm(
        `${method} (${sampler})`,
        stage,
        k,
        1,
        hardPools(data, k, sampler, prefScores),
      );
      samplers.push({ sampler, method, row });
      methods[`${method} (${sampler})`] = row;
    }
  }
  methods["DPO (uniform)"] = uniDpo;
  methods["S-DPO (uniform)"] = uniSdpo;
  // The K sweep on each sampler: K = 1 (DPO) and K = 3 reuse the sampler arms above.
  const samplerK: SdpoAblations["sampler_k_sweep"] = kSweep.map(({ k, row }) => ({
    sampler: "uniform",
    k,
    row,
  }));
  for (const sampler of ["popularity", "same-genre", "model-hard"] as const) {
    for (const k of scale.ablKs) {
      const known = samplers.find((x) =>
        x.sampler === sampler &&
        ((k === 1 && x.method === "DPO") || (k === 3 && x.method === "S-DPO"))
      );
      const row = known?.row ?? await arm(
        k === 1 ? `DPO (${sampler})` : `S-DPO K=${k} (${sampler})`,
        k === 1 ? "dpo" : "sdpo",
        k,
        1,
        hardPools(data, k, sampler, prefScores),
      );
      samplerK.push({ sampler, k, row });
      methods[`S-DPO K=${k} (${sampler})`] = row;
    }
    const ks = samplerK.filter((x) => x.sampler === sampler);
    methods[`S-DPO K=max (${sampler})`] = ks.reduce((a, b) => (b.k > a.k ? b : a)).row;
    methods[`S-DPO K=1 (${sampler})`] = ks.find((x) => x.k === 1)?.row ?? uniDpo;
  }
  const negWeights = negativeWeightsByRefRank(scoresBy["S-DPO"], scoresBy.SFT, test, 1);
  return {
    seed,
    k_sweep: kSweep,
    beta_sweep: betaSweep,
    samplers,
    sampler_k_sweep: samplerK,
    neg_weights: negWeights,
    methods,
  };
}

/**
 * Write `hr1_curves.svg` (+ `.vl.json`, drawn by {@link sdpoHr1CurveFigures}, as
 * `deno task plots` redraws it): HR@1 versus step of the main arms, colour = method, a 95 %
 * band over the sampled units; returns the markdown that shows it ("" when the run has no
 * curves).
 */
export async function writeHr1CurvePlot(dir: string, r: SdpoResult): Promise<string> {
  if (!r.hr1_curves?.length || !r.protocol) return "";
  const parts = sdpoLossPartsFigures(r);
  await writeFigures(dir, { ...sdpoHr1CurveFigures(r), ...parts });
  const p = r.protocol;
  return [
    "",
    "## HR@1 versus step",
    "",
    `Validation (${r.num_valid} prompts) and test (the first ${
      Math.min(r.num_test, r.scale.sdpoCurveTest)
    } test prompts) ranking HR@1 of each main arm every ${
      Math.max(1, Math.ceil(p.steps / Math.max(1, p.evals_per_arm)))
    } of its ${p.steps} steps (dashed: the SFT model, step 0); line = mean over seeds. Test ` +
    "panel: expected HR@1, each test row averaged over the seeds, band = 95 % interval over the " +
    "test users; validation panel: sampled HR@1, band = Wilson 95 % interval over the " +
    "validation prompts. The kept checkpoint of each arm is the one with the lowest validation loss; " +
    "the test curve is shown, never used to choose.",
    "",
    "![HR@1 versus step](hr1_curves.svg)",
    "",
    ...(parts.val_loss_parts
      ? [
        "What the validation loss that keeps the checkpoint is made of, per preference arm: the " +
        "loss, the part of it carried by the validation prompts whose positive the model does " +
        "not score above its K negatives, the same loss on " +
        `${Math.min(HELD_IN_PROMPTS, r.num_valid)} of the arm's own train prompts, ` +
        "validation HR@1, TRL's reward accuracy and the chosen reward (line = mean over the " +
        "seeds whose evaluations recorded them, band = 95 % t interval over those seeds).",
        "",
        "![What the validation loss is made of](val_loss_parts.svg)",
        "",
      ]
      : []),
    ...(parts.lr_selection_parts
      ? [
        "The same for DPO at each learning rate of the selection (first seed):",
        "",
        "![DPO's validation loss per learning rate](lr_selection_parts.svg)",
        "",
      ]
      : []),
  ].join("\n");
}

/**
 * The table notes of the main arms: the protocol, its departures from the released one, and
 * what a run of this scale can and cannot decide.
 */
export function sdpoProtocolNotes(r: SdpoResult): string[] {
  const p = r.protocol;
  if (!p) return [];
  const ks = r.scale.sdpoKs.join(", ");
  const notes = [
    `SFT-cont, DPO (K=1), S-DPO (K=${ks}): a fresh LoRA adapter (r ${p.lora.r}, α ` +
    `${p.lora.lora_alpha}, dropout ${p.lora.lora_dropout}, all seven projections) on the SFT ` +
    `model, on all ${p.train_prompts} train prompts with each prompt's negatives drawn once ` +
    `per seed, ${p.steps} steps × ${p.batch} (${p.examples_per_arm} examples) each, lr ${p.lr}, ` +
    `gradient clipping ${p.max_grad_norm}, β = 1, reference = the frozen SFT model; checkpoint ` +
    `= ${p.selection}. "S-DPO" is K = ${r.scale.sdpoKs[0]}. Expected HR@1 (metrics.json ` +
    "`hr1_exp`, per row `rank_expected`): the world's probability that the top-1 candidate is " +
    "the next item.",
    "Departures from the released S-DPO protocol: " + p.departures.join(" "),
  ];
  if (r.scale.name === "small") {
    notes.push(
      `What this default run can decide: with ${r.seeds.length} seed(s), ${r.num_test} test ` +
        `prompts and ${p.examples_per_arm} preference examples per arm it shows the protocol ` +
        "end to end and the direction of the curves; it cannot decide S-DPO vs DPO (its MDE " +
        "is above the +0.014 HR@1 a 1B LastFM reproduction reports) and does not run the " +
        "released budget. `--scale full` carries docs/analysis-plan.md.",
    );
  }
  return notes;
}
