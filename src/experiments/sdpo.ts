/**
 * S-DPO on the synthetic world: SFT (stage-0 full fine-tuning on the train prompts), then
 * DPO (K=1), S-DPO (K=3) and an SFT-cont control, each a fresh LoRA adapter on the same SFT
 * model for the same number of steps; evaluated by ranking (HR@1, NDCG@5 over the 20
 * candidates by summed log-prob of title + EOS) and by greedy generation (HR@1 with both
 * denominators, ValidRatio), beside oracle / history-Bayes / popularity / random rows.
 *
 * @module
 */
import { tf } from "../backend.ts";
import type { LlamaConfig, LlamaModel } from "../model.ts";
import { type Stage, train, type TrainExample } from "../train.ts";
import type { WordTokenizer } from "../tokenizer.ts";
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
import {
  hitsAtK,
  ndcgsAtK,
  sdpoGenerationMetrics,
  sdpoValidity,
  type SdpoVerdict,
} from "../eval/metrics.ts";
import {
  baseSnapshot,
  buildTokenizer,
  buildWorld,
  encodePrompt,
  fromSnapshot,
  loraConfig,
  modelConfig,
  type Scale,
  SCALE_PRESETS,
  type ScaleName,
  scoreResponses,
  sdpoExample,
  since,
  type Snapshot,
  subset,
} from "./common.ts";

/** Config of {@link run}. */
export interface SdpoRunConfig {
  /** Scale preset name. */
  scale: ScaleName;
  /** Seeds (model init, batch order, negative draws). */
  seeds: number[];
  /** Print progress (default true). */
  progress?: boolean;
}

/** Per-method numbers of one seed. */
export interface SdpoMethodResult {
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
  /** Per seed. */
  per_seed: SdpoSeedResult[];
  /** Seconds of the whole run. */
  seconds: number;
}

/** The arms, in table order. */
export const SDPO_METHODS = ["SFT", "SFT-cont", "DPO", "S-DPO"] as const;

const ARMS: { name: string; stage: Stage; k: number }[] = [
  { name: "SFT-cont", stage: "sft", k: 0 },
  { name: "DPO", stage: "dpo", k: 1 },
  { name: "S-DPO", stage: "sdpo", k: 3 },
];

/** Evaluate a model on the S-DPO test prompts (ranking on all, generation on a prefix). */
export function evaluateSdpo(
  model: LlamaModel,
  tok: WordTokenizer,
  world: World,
  test: SdpoSample[],
  numGen: number,
): Omit<SdpoMethodResult, "train_seconds" | "final_loss"> {
  const t0 = performance.now();
  const examples = test.map((s) => sdpoExample(tok, s, world));
  const scores = scoreResponses(
    model,
    test.map((s, i) => ({
      prompt: examples[i].prompt,
      responses: s.candidates.map((c) => [...tok.encode(c), tok.eosId]),
    })),
  );
  const positives = test.map((s) => s.positiveIndex);
  const rankHits = hitsAtK({ scores }, positives, 1);
  const ndcg = ndcgsAtK({ scores }, positives, 5);
  const gen = test.slice(0, numGen);
  const maxTitle = Math.max(...world.items.map((i) => tok.encode(i.title).length));
  const verdicts: SdpoVerdict[] = [];
  const examplesOut: string[] = [];
  for (let s = 0; s < gen.length; s += 32) {
    const chunk = gen.slice(s, s + 32);
    const outs = model.generate(
      chunk.map((x) => encodePrompt(tok, worldSdpoPrompt(x, world.domains[x.domain]))),
      { maxNewTokens: maxTitle + 1, eosId: tok.eosId, padId: tok.padId },
    );
    outs.forEach((ids, j) => {
      const text = " " + tok.decode(ids, { skipSpecial: true });
      if (examplesOut.length < 5) examplesOut.push(text.trim());
      verdicts.push(sdpoValidity(text, chunk[j].candidates, chunk[j].positive));
    });
  }
  const g = sdpoGenerationMetrics(verdicts);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    hr1_rank: mean(rankHits),
    ndcg5_rank: mean(ndcg),
    hr1_gen_all: g.hr1_all,
    hr1_gen_valid: Number.isFinite(g.hr1_valid) ? g.hr1_valid : null,
    valid_ratio: g.valid_ratio,
    rank_hits: rankHits,
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
  tok: WordTokenizer;
  config: LlamaConfig;
  trainExamples: TrainExample[];
  prefExamples: TrainExample[];
  test: SdpoSample[];
}

/** Build the world, samples, tokenizer and model config of a scale. */
export function sdpoData(scale: Scale): SdpoData {
  const world = buildWorld();
  const train = sdpoSamples(world, "train", { drawsPerUser: scale.sdpoDrawsPerUser });
  const tok = buildTokenizer(world, train[0]);
  const trainExamples = train.map((s) => sdpoExample(tok, s, world));
  const prefExamples = subset(trainExamples, scale.prefPrompts, 7);
  const test = subset(sdpoSamples(world, "test"), scale.sdpoTest, 11);
  return { world, tok, config: modelConfig(tok.vocabSize), trainExamples, prefExamples, test };
}

/** Train one LoRA arm from the SFT snapshot; returns the trained model (caller disposes). */
export async function trainArm(
  config: LlamaConfig,
  sft: Snapshot,
  examples: TrainExample[],
  arm: { name: string; stage: Stage; k: number; beta?: number },
  scale: Scale,
  steps: number,
  seed: number,
  progress: boolean,
): Promise<{ model: LlamaModel; seconds: number; finalLoss: number | null }> {
  const t0 = performance.now();
  const model = fromSnapshot(config, sft);
  model.addLora(loraConfig(100 + seed));
  const batchSize = scale.prefBatch;
  const k = Math.max(arm.k, 1);
  // The reference is the frozen SFT model either way; pick the cheaper way to get it:
  // live costs (1+K) forwards per example per step, precomputed 1+|pool| per distinct prompt.
  const pool = examples[0].rejected?.length ?? 0;
  const live = steps * batchSize * (1 + k);
  const pre = Math.min(examples.length, steps * batchSize) * (1 + pool);
  const r = await train(model, examples, {
    stage: arm.stage,
    steps,
    batchSize,
    microBatchSize: 32,
    lr: scale.prefLr,
    warmupSteps: Math.min(10, Math.floor(steps / 5)),
    numNegatives: k,
    beta: arm.beta ?? 1,
    reference: pre < live ? "precomputed" : "live",
    seed,
    logEvery: Math.max(1, Math.floor(steps / 4)),
  }, { label: arm.name, progress });
  return { model, seconds: since(t0), finalLoss: r.history.at(-1)?.loss ?? null };
}

/** Run the S-DPO experiment. */
export async function run(cfg: SdpoRunConfig): Promise<SdpoResult> {
  const t0 = performance.now();
  const scale = SCALE_PRESETS[cfg.scale];
  const progress = cfg.progress !== false;
  const log = (m: string) => progress && console.error(m);
  const data = sdpoData(scale);
  const { world, tok, config, test } = data;
  const numGen = Math.min(scale.sdpoGenTest, test.length);
  log(
    `[sdpo] ${data.trainExamples.length} train prompts, ${data.prefExamples.length} preference ` +
      `prompts, ${test.length} test prompts (${numGen} generated), vocab ${tok.vocabSize}`,
  );
  const references = referenceRows(world, test);
  const perSeed: SdpoSeedResult[] = [];
  for (const seed of cfg.seeds) {
    const ts = performance.now();
    log(`[sdpo] seed ${seed}: SFT (full fine-tuning, ${scale.baseSteps} steps)`);
    const base = await baseSnapshot(config, data.trainExamples, scale, seed, {
      label: `stage0/SFT s${seed}`,
      progress,
    });
    const sft = base.snap;
    const sftModel = fromSnapshot(config, sft);
    const methods: Record<string, SdpoMethodResult> = {};
    methods.SFT = {
      ...evaluateSdpo(sftModel, tok, world, test, numGen),
      train_seconds: base.seconds,
      final_loss: base.finalLoss,
    };
    sftModel.dispose();
    log(`[sdpo] seed ${seed}: SFT HR@1 ${methods.SFT.hr1_rank.toFixed(3)}`);
    {
      for (const arm of ARMS) {
        const { model, seconds, finalLoss } = await trainArm(
          config,
          sft,
          data.prefExamples,
          arm,
          scale,
          scale.prefSteps,
          seed,
          progress,
        );
        methods[arm.name] = {
          ...evaluateSdpo(model, tok, world, test, numGen),
          train_seconds: seconds,
          final_loss: finalLoss,
        };
        model.dispose();
        log(`[sdpo] seed ${seed}: ${arm.name} HR@1 ${methods[arm.name].hr1_rank.toFixed(3)}`);
      }
    }
    perSeed.push({ seed, methods, seconds: since(ts) });
    log(`[sdpo] seed ${seed} done in ${since(ts)} s (tensors ${tf.memory().numTensors})`);
  }
  return {
    paper: "sdpo",
    scale,
    config: {
      world: world.config,
      model: config,
      lora: loraConfig(0),
      arms: ARMS,
      beta: 1,
      negatives: "drawn per step uniformly from the prompt's 19 non-target candidates",
      sft: "stage 0 = full fine-tuning of a random LM on the train prompts (prompt → " +
        "positive title + EOS); this model is the SFT row and the reference of every arm",
    },
    seeds: cfg.seeds,
    num_test: test.length,
    num_gen_test: numGen,
    references,
    per_seed: perSeed,
    seconds: since(t0),
  };
}
