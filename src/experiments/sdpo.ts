/**
 * S-DPO on the synthetic world: SFT (stage-0 full fine-tuning on the train prompts), then
 * DPO (K=1), S-DPO (K=3) and an SFT-cont control, each a fresh LoRA adapter on the same SFT
 * model for the same number of steps; evaluated by ranking (HR@1, NDCG@5 over the 20
 * candidates by summed log-prob of title + EOS) and by greedy generation (HR@1 with both
 * denominators, ValidRatio), beside oracle / history-Bayes / popularity / random rows.
 *
 * @module
 */
import { hardestFirst } from "./negatives.ts";
import { ensureBackend, tf } from "../backend.ts";
import type { LlamaConfig, LlamaModel } from "../model.ts";
import type { MetricsRow, Stage, TrainExample } from "../train.ts";
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
  sdpoExample,
  since,
  type Snapshot,
  stage0SeedOf,
  subset,
} from "./common.ts";
import { BASELINE_NAMES, BASELINE_ROWS, baselineSdpoRow, baselinesFor } from "./baselines.ts";
import { currentBaseModel, stage0Snapshot } from "./pretrained.ts";
import { runStage, sourceNote, type StageSource } from "./runs.ts";

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

/** The arms, in table order. */
export const SDPO_METHODS = ["SFT", "SFT-cont", "DPO", "S-DPO"] as const;

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
  const test = subset(sdpoSamples(world, "test"), scale.sdpoTest, 11);
  return {
    world,
    tok,
    config: lm?.config ?? modelConfig(tok.vocabSize),
    trainExamples,
    prefSamples,
    prefExamples,
    test,
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
): Promise<
  {
    model: LlamaModel;
    seconds: number;
    finalLoss: number | null;
    history: MetricsRow[];
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
    lora: loraConfig(100 + seed),
    examples,
    train: {
      stage: arm.stage,
      steps,
      batchSize,
      microBatchSize: 32,
      lr: scale.prefLr,
      warmupSteps: Math.min(10, Math.floor(steps / 5)),
      numNegatives: k,
      beta: arm.beta ?? 1,
      reference: pre <= live ? "precomputed" : "live",
      seed,
      logEvery: logEvery ?? Math.max(1, Math.floor(steps / 4)),
    },
    label: arm.name,
    progress,
    baseModelName: currentBaseModel()?.folder,
  });
  return {
    model: r.model!,
    seconds: r.seconds,
    finalLoss: r.finalLoss,
    history: r.history,
    source: r.source,
    resumedFrom: r.resumedFrom,
    wallSeconds: r.wallSeconds,
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

/** An ablation row of a main arm (no extra training). */
function rowOf(m: SdpoMethodResult): AblationRow {
  return {
    hr1_rank: m.hr1_rank,
    ndcg5_rank: m.ndcg5_rank,
    rank_hits: m.rank_hits,
    ...(m.rank_expected ? { rank_expected: m.rank_expected } : {}),
    pos_logp: m.pos_logp,
    train_seconds: 0,
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
  log(
    `[sdpo] ${data.trainExamples.length} train prompts, ${data.prefExamples.length} preference ` +
      `prompts (pool ${scale.negPool}), ${test.length} test prompts (${numGen} generated), ` +
      `vocab ${tok.vocabSize}`,
  );
  const references = cfg.data?.references ?? referenceRows(world!, test);
  const perSeed: SdpoSeedResult[] = [];
  const curves: CurvePoint[] = [];
  const curveEvery = Math.max(1, Math.floor(scale.prefSteps / 20));
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
    recordStage("sdpo", reused ? "eval/SFT (reused)" : "eval/SFT", seed, sftEval.eval_seconds);
    log(`[sdpo] seed ${seed}: SFT HR@1 ${methods.SFT.hr1_rank.toFixed(3)}`);
    const scoresBy: Record<string, number[][]> = { SFT: sftScores };
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
      ablations = await runAblations(data, scale, seed, sft, sftModel, methods, scoresBy, progress);
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
      lora: loraConfig(0),
      arms: ARMS,
      beta: 1,
      negatives: `each preference prompt has a fixed seeded pool of ${scale.negPool} of its 19 ` +
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
  main: Record<string, SdpoMethodResult>,
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
  const kSweep: { k: number; row: AblationRow }[] = [];
  for (const k of scale.ablKs) {
    const row = k === 1
      ? rowOf(main.DPO)
      : k === 3
      ? rowOf(main["S-DPO"])
      : await arm(`S-DPO K=${k}`, "sdpo", k, 1, data.prefExamples);
    kSweep.push({ k, row });
    methods[`S-DPO K=${k}`] = row;
  }
  methods["S-DPO K=max"] = kSweep.reduce((a, b) => (b.k > a.k ? b : a)).row;
  const betaSweep: { beta: number; row: AblationRow }[] = [];
  for (const beta of scale.ablBetas) {
    const row = beta === 1
      ? rowOf(main["S-DPO"])
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
    { sampler: "uniform", method: "DPO", row: rowOf(main.DPO) },
    { sampler: "uniform", method: "S-DPO", row: rowOf(main["S-DPO"]) },
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
  methods["DPO (uniform)"] = rowOf(main.DPO);
  methods["S-DPO (uniform)"] = rowOf(main["S-DPO"]);
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
    methods[`S-DPO K=1 (${sampler})`] = ks.find((x) => x.k === 1)?.row ?? rowOf(main.DPO);
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
