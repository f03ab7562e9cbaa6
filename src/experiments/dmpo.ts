/**
 * DMPO on the synthetic world: pairwise prompts ("rank the two movies A and B"). Responses
 * ({@link DmpoResponse}): by default the liked item's tagged title (`"title"`, as in the
 * feasibility study), or the full ranking `<Title:A>, <Title:B>` (`"ranking"`, DMPO's
 * notebook form; a dim-64 LM does not learn the preference from it, see DMPO_NOTES).
 *
 * Protocol, as released (FORMATS.md §2.4, {@link DMPO_PROTOCOL}): few-shot (the released 100
 * SFT users), and K negatives per user are K pair prompts ({@link dmpoPairRows}), each naming
 * the positive and its own negative, trained as independent pairs in shuffled order; row 0 of
 * a user is the SFT pair. SFT: 5 epochs of the users' first rows; preference stages: 3 epochs
 * of their rows (so K = 3 trains 3× the steps of K = 1: "equal epochs"), plus K = 3 at the
 * steps of K = 1 ("equal steps"). Base LM = stage 0 (shared with the S-DPO experiment); SFT =
 * full fine-tuning of the base LM on the chosen responses; then arms, each a fresh LoRA
 * adapter: SFT-cont, SFT+DMPO in the paper form (K=3, K=1, K=3 at equal steps), SFT+DMPO as
 * released (K=3), and DMPO-only (no SFT). Metric: AUC from the summed log-probs of the correct
 * vs the wrong response on the test pairs (DMPO's notebook form, {@link aucReleased}, and the
 * paired form, {@link aucPaired}).
 *
 * @module
 */
import { ensureBackend, tf } from "../backend.ts";
import type { LlamaConfig, LlamaModel } from "../model.ts";
import { scorePairs, type TrainExample } from "../train.ts";
import type { Tokenizer } from "../tokenizer.ts";
import { type DmpoSample, dmpoSamples, popularityScores, type World } from "../data/world.ts";
import { worldDmpoPrompt } from "../data/world_text.ts";
import { aucPaired, aucReleased } from "../eval/metrics.ts";
import { dmpoHistoryPairPosterior, dmpoPairPosterior, historyGenreWeights } from "../eval/truth.ts";
import {
  disposeSnapshot,
  encodePrompt,
  encodeResponse,
  evalOnce,
  fromSnapshot,
  loraConfig,
  recordStage,
  type Scale,
  SCALE_PRESETS,
  type ScaleName,
  since,
  type Snapshot,
  stage0SeedOf,
  subset,
} from "./common.ts";
import type { DmpoAblations } from "./dmpo_ablations.ts";
import { sdpoData, trainArm } from "./sdpo.ts";
import { BASELINE_NAMES, BASELINE_ROWS, baselineDmpoRow, baselinesFor } from "./baselines.ts";
import { currentBaseModel, stage0Snapshot } from "./pretrained.ts";
import { runStage, sourceNote, type StageSource } from "./runs.ts";
import { ConfigError } from "../errors.ts";
import { Rng } from "../rng.ts";

/** Config of {@link run}. */
export interface DmpoRunConfig {
  /** Scale preset name. */
  scale: ScaleName;
  /** Seeds. */
  seeds: number[];
  /** Print progress (default true). */
  progress?: boolean;
  /** Add the classic baseline rows (default true). */
  baselines?: boolean;
  /** Response form (default {@link DMPO_RESPONSE}). */
  response?: DmpoResponse;
  /**
   * A released data set prepared by `src/experiments/datasets.ts` instead of the synthetic
   * world (same arms and metrics; its own response form, references and baselines).
   */
  data?: DmpoDataset;
}

/** An encoded DMPO pair or prompt: `rejected` holds one response per negative. */
export type DmpoExample = TrainExample & { rejected: number[][] };

/** A released data set prepared for {@link run} (see `src/experiments/datasets.ts`). */
export interface DmpoDataset {
  /** Data set name (`"ml-1m"`, `"amazon-movie"`). */
  name: string;
  /** Word tokenizer of the data's text. */
  tok: Tokenizer;
  /** Model config (vocabulary and positions fitted to the data). */
  config: LlamaConfig;
  /** The response form the examples were encoded with. */
  response: DmpoResponse;
  /** Stage-0 (base LM) training examples. */
  stage0: TrainExample[];
  /** Train prompts with 1 negative (SFT and the K=1 arm). */
  train1: DmpoExample[];
  /** Train prompts with 3 negatives (the K=3 arms). */
  train3: DmpoExample[];
  /** Test pairs (`rejected[0]` = the wrong response). */
  test: DmpoExample[];
  /** The test pairs as item ids, for the classic baselines. */
  baselineTest: Pick<DmpoSample, "historyIds" | "positiveId" | "negativeIds">[];
  /** Reference rows computable on the data (popularity, random). */
  references: Record<string, { auc_released: number; auc_paired: number }>;
  /** The classic baselines of (scale, seed), trained on the data set's sequences. */
  baselines: (scale: Scale, seed: number, progress: boolean) => ReturnType<typeof baselinesFor>;
  /** What was trained and tested on (merged into the result's config). */
  describe: Record<string, unknown>;
  /** Steps of the SFT stage (default `scale.dmpoSftSteps`). */
  sftSteps?: number;
}

/**
 * What the LM is trained on and scored by: `"title"` = the liked item's tagged title + EOS
 * (rejected: each negative's); `"ranking"` = DMPO's ranking `<Title:A>, <Title:B>` + EOS.
 */
export type DmpoResponse = "title" | "ranking";

/** Default response form. */
export const DMPO_RESPONSE: DmpoResponse = "title";

/** SFT stage: full fine-tuning of the base LM at this lr (cosine, warmup 10, β2 0.95). */
export const DMPO_SFT_LR = 1e-3;

/**
 * The DMPO table notes (synthetic world): the task, the released protocol and where this
 * kit departs from it, with the reasons.
 */
export const DMPO_NOTES: readonly string[] = [
  "Pairwise task: DMPO's prompt names two items (the liked one and a popularity-drawn " +
  "negative, random order). Response: the liked item's tagged title `<Title:…>` + EOS (as in " +
  "the feasibility study; rejected = the negative's title). AUC from the summed log-probs " +
  "of the liked vs the other item's response: `AUC (released)` = DMPO's notebook (one coin " +
  "flip per pair), `AUC (paired)` = fraction of pairs ranked correctly. With DMPO's ranking " +
  'response `<Title:A>, <Title:B>` (`response: "ranking"` in src/experiments/dmpo.ts) the ' +
  "dim-64 LM does not learn the preference (every LM arm ≈ 0.5 paired AUC, even after 500 " +
  "full fine-tuning steps): the two rankings share all their tokens.",
  "Protocol as released (FORMATS.md §2.4, run.sh): few-shot, 100 train users (the released " +
  "SFT files' size), one positive each; K negatives = K pair prompts per user, each naming the " +
  "positive and its own negative (one row per negative, rows shuffled, row 0 = the SFT pair), " +
  "so every rejected title is named in its prompt. Chosen over one prompt listing all K + 1 " +
  "items because that is the released data's layout and the test prompts are pairs: training " +
  "on K + 1-item prompts would change the prompt with K. SFT = full fine-tuning of the base " +
  "LM for 5 epochs of the users' first rows (lr 1e-3); preference arms = fresh LoRA adapters " +
  'for 3 epochs of their rows at batch 8 (K=3: 3× K=1\'s steps, "equal epochs"); "K=3 ' +
  "(equal steps)\" trains the K=3 rows for K=1's steps; SFT-cont = K=1's steps of SFT on the " +
  "first rows; DMPO-only starts from the base LM. One SFT model (seed 0) is shared by all " +
  "seeds, which vary the arms only.",
  "Paper form = the paper's loss (β = 1, frozen-SFT reference) on each pair row: with one " +
  "negative per prompt the paper's mean over negatives inside the sigmoid has no single " +
  "prompt to sit in, so it becomes the mean of the K pair losses (equal at K = 1; by Jensen an " +
  "upper bound of the loss of the mean margin). Released form = the released code's per-pair " +
  "loss, β = 0.1 (its default, kept), reference terms cancelled, + γ = 1 × the chosen's mean " +
  "NLL. Before this protocol the K − 1 extra negatives were titles outside the prompt, which " +
  "the model already gave almost no probability: K=3 drove the loss to ≈ 0.03 by pushing them " +
  "down while the positive's log-prob fell.",
  "Paper columns: the DMPO paper's tables could not be read (see " +
  "`data/paper-numbers.json`). Only orderings (findings.md) are comparable.",
];

/** Per-method numbers of one seed. */
export interface DmpoMethodResult {
  /** AUC as DMPO's notebook computes it (one coin flip per pair, seed 42). */
  auc_released: number;
  /** Paired AUC: fraction of pairs whose correct ranking outscores the reversed one. */
  auc_paired: number;
  /** Per test pair: 1 / 0.5 / 0 (correct ranking scores higher / tie / lower). */
  pair_correct: number[];
  /**
   * Per test pair (synthetic world only): the true probability, given the user and the
   * pair, that the item the model ranks first is the liked one (0.5 on a tie;
   * src/eval/truth.ts, {@link dmpoPairPosterior}).
   */
  pair_expected?: number[];
  /** Per test pair: summed log-prob of the correct ranking. */
  chosen_logp: number[];
  /** Per test pair: summed log-prob of the reversed ranking. */
  rejected_logp: number[];
  /** Mean over test pairs of the correct response's summed log-prob. */
  mean_chosen_logp: number;
  /** Training seconds of this arm (SFT: its LoRA stage; Base: stage 0). */
  train_seconds: number;
  /** Evaluation seconds. */
  eval_seconds: number;
  /** Last logged training loss. */
  final_loss: number | null;
  /** Optimizer steps of this arm's own stage (absent: not a trained stage). */
  steps?: number;
  /** Training examples (pair rows) of this arm's own stage. */
  rows?: number;
}

/** One seed's results. */
export interface DmpoSeedResult {
  /** Seed. */
  seed: number;
  /** Method → numbers. */
  methods: Record<string, DmpoMethodResult>;
  /** The seed whose stage-0 and SFT models this seed used (seeds with the same share them). */
  stage0_seed: number;
  /** Seconds of the seed. */
  seconds: number;
}

/** What {@link run} returns. */
export interface DmpoResult {
  /** "dmpo". */
  paper: "dmpo";
  /** Scale preset. */
  scale: Scale;
  /** Everything else that defines the run. */
  config: Record<string, unknown>;
  /** Seeds. */
  seeds: number[];
  /** Test pairs. */
  num_test: number;
  /** Reference rows (AUC of the true posterior given the taste / the history only, and of
   * popularity, on the two items). */
  references: Record<string, { auc_released: number; auc_paired: number }>;
  /** The test user of each test pair (synthetic world; rows of one user are one cluster). */
  row_users?: number[];
  /** Methods whose model is the seed's stage-0 model or its SFT (`per_seed[].stage0_seed`). */
  stage0_methods: string[];
  /** Per seed. */
  per_seed: DmpoSeedResult[];
  /** Seconds of the run (src/cli/reproduce.ts adds the ablations' seconds). */
  seconds: number;
  /** DMPO ablations (src/experiments/dmpo_ablations.ts), when run. */
  ablations?: DmpoAblations;
}

/** The methods, in table order. */
export const DMPO_METHODS = [
  "Base LM",
  "SFT",
  "SFT-cont",
  "SFT+DMPO K=3",
  "SFT+DMPO K=1",
  "SFT+DMPO K=3 (equal steps)",
  "SFT+DMPO-released K=3",
  "DMPO-only K=3",
] as const;

/** Encode a DMPO sample; `k` rejected responses (k ≤ the sample's negatives). */
export function dmpoExample(
  tok: Tokenizer,
  s: DmpoSample,
  world: World,
  k: number,
  response: DmpoResponse = DMPO_RESPONSE,
): TrainExample & { rejected: number[][] } {
  const t = worldDmpoPrompt(s, world.domains[s.domain]);
  const title = (x: string) => encodeResponse(tok, `<Title:${x}>`);
  return {
    prompt: encodePrompt(tok, t.prompt),
    chosen: response === "title" ? title(s.positive) : encodeResponse(tok, t.chosen),
    rejected: response === "title"
      ? s.negatives.slice(0, k).map(title)
      : t.rejected.slice(0, k).map((r) => encodeResponse(tok, r)),
  };
}

/**
 * `n` DMPO train samples with `numNegatives` negatives: `ceil(n / train users)` draws per
 * train user (history fixed), a fixed seeded subset of `n`.
 */
export function dmpoTrainSamples(world: World, n: number, numNegatives: number): DmpoSample[] {
  const users = dmpoSamples(world, "train", { numNegatives, drawsPerUser: 1 }).length;
  const draws = Math.max(1, Math.ceil(n / users));
  return subset(dmpoSamples(world, "train", { numNegatives, drawsPerUser: draws }), n, 5);
}

/** DMPO's released protocol, per scale (FORMATS.md §2.3–2.4, `run.sh`). */
export interface DmpoProtocol {
  /** Train users (one positive each): the released few-shot files have 100. */
  users: number;
  /** SFT epochs over the users' first pair rows (`run.sh`: 5). */
  sftEpochs: number;
  /** Preference epochs over the users' K pair rows (`run.sh`: 3). */
  prefEpochs: number;
  /** Few-shot sizes of the ablation sweep (train users). */
  fewShot: number[];
}

/** The protocol by scale name (a scale without an entry uses `small`'s). */
export const DMPO_PROTOCOL: Readonly<Record<string, DmpoProtocol>> = {
  // The test suite's: as few steps as exercise every path.
  test: { users: 8, sftEpochs: 2, prefEpochs: 1, fewShot: [8] },
  tiny: { users: 100, sftEpochs: 5, prefEpochs: 3, fewShot: [32, 100] },
  small: { users: 100, sftEpochs: 5, prefEpochs: 3, fewShot: [32, 100, 200] },
};

/** {@link DMPO_PROTOCOL} of a scale. */
export function dmpoProtocol(scale: Pick<Scale, "name">): DmpoProtocol {
  return DMPO_PROTOCOL[scale.name] ?? DMPO_PROTOCOL.small;
}

/** Optimizer steps of `epochs` passes over `rows` examples at `batch` per step (at least 1). */
export function epochSteps(rows: number, epochs: number, batch: number): number {
  return Math.max(1, Math.ceil((epochs * rows) / batch));
}

/**
 * The released layout of K negatives: per sample, K pair rows, row j naming the positive and
 * `negatives[j]` (FORMATS.md §2.4: "k negatives per user exist only as k separate rows ...
 * different question text because the negative is named in it"). Row 0 is the sample itself
 * with its first negative (the SFT pair, as in the released files); rows j ≥ 1 draw the order
 * the prompt names the two items afresh (a coin per row, seeded by `seed` and the sample's
 * index), so the rows of K are the first rows of K + 1 (nested, as the released files).
 * Every returned row has exactly one negative; rows are grouped by sample.
 *
 * @param samples Samples with at least `k` negatives.
 * @param k Negatives (rows) per sample.
 * @param seed Seed of the order coins.
 * @returns `samples.length · k` pair rows.
 * @throws {ConfigError} when a sample has fewer than `k` negatives.
 */
export function dmpoPairRows(samples: readonly DmpoSample[], k: number, seed = 0): DmpoSample[] {
  if (!Number.isInteger(k) || k < 1) {
    throw new ConfigError("k", `expected an integer >= 1, got ${k}`);
  }
  return samples.flatMap((s, i) => {
    if (s.negatives.length < k) {
      throw new ConfigError(
        "k",
        `sample ${i} has ${s.negatives.length} negatives, ${k} pair rows were asked for`,
      );
    }
    const rng = new Rng((Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca6b)) | 0);
    return s.negatives.slice(0, k).map((title, j): DmpoSample => {
      const negativeId = s.negativeIds[j];
      const positiveFirst = j === 0 ? s.positiveFirst : rng.next() < 0.5;
      const pairIds: [number, number] = positiveFirst
        ? [s.positiveId, negativeId]
        : [negativeId, s.positiveId];
      return {
        ...s,
        negatives: [title],
        negativeIds: [negativeId],
        pair: positiveFirst ? [s.positive, title] : [title, s.positive],
        pairIds,
        positiveFirst,
      };
    });
  });
}

/**
 * The DMPO SFT stage: full fine-tuning of a copy of `from` on the chosen responses
 * (`steps`, default `scale.dmpoSftSteps`, batch `scale.batchSize`, lr {@link DMPO_SFT_LR}). Returns the
 * frozen weights (dispose with disposeSnapshot).
 */
export async function dmpoSft(
  config: LlamaConfig,
  from: Snapshot,
  examples: TrainExample[],
  scale: Scale,
  seed: number,
  opts: { label: string; progress: boolean },
  steps = scale.dmpoSftSteps,
  name = "SFT",
): Promise<
  {
    snap: Snapshot;
    seconds: number;
    finalLoss: number | null;
    /** Trained, resumed, or loaded from its run folder (src/experiments/runs.ts). */
    source: StageSource;
    /** Step it resumed from. */
    resumedFrom: number;
    /** Seconds this call took. */
    wallSeconds: number;
  }
> {
  // With a pretrained base model (--model): a LoRA SFT merged into the weights, as the papers.
  const lm = currentBaseModel();
  const r = await runStage({
    name,
    seed,
    config,
    from,
    mode: lm ? "lora-merged" : "full",
    lora: lm ? loraConfig(200 + seed) : undefined,
    examples,
    train: {
      stage: "sft",
      steps,
      batchSize: scale.batchSize,
      microBatchSize: lm ? Math.min(scale.batchSize, 8) : scale.batchSize,
      lr: DMPO_SFT_LR,
      warmupSteps: Math.min(10, Math.floor(steps / 5)),
      beta2: 0.95,
      seed,
      logEvery: Math.max(1, Math.floor(steps / 4)),
    },
    label: opts.label,
    progress: opts.progress,
    baseModelName: lm?.folder,
  });
  return {
    snap: r.snap!,
    seconds: r.seconds,
    finalLoss: r.finalLoss,
    source: r.source,
    resumedFrom: r.resumedFrom,
    wallSeconds: r.wallSeconds,
  };
}

/** Evaluate a model on the test pairs. */
export function evaluateDmpo(
  model: LlamaModel,
  tok: Tokenizer,
  world: World,
  test: DmpoSample[],
  response: DmpoResponse = DMPO_RESPONSE,
): DmpoEval {
  const ev = evaluateDmpoExamples(model, test.map((s) => dmpoExample(tok, s, world, 1, response)));
  // The expected correctness under the world's law: P(liked | pair, user) of the item ranked
  // first (the chosen response scores higher: the positive; lower: the negative).
  const post = test.map((s) => dmpoPairPosterior(world, s, s.positiveId, s.negativeIds[0]));
  return {
    ...ev,
    pair_expected: ev.pair_correct.map((c, i) =>
      Math.round((c === 1 ? post[i] : c === 0 ? 1 - post[i] : 0.5) * 1e6) / 1e6
    ),
  };
}

/** What evaluating one model gives: a method's row without its training numbers. */
export type DmpoEval = Omit<DmpoMethodResult, "train_seconds" | "final_loss">;

/** Evaluate a model on encoded test pairs (`rejected[0]` = the wrong response). */
export function evaluateDmpoExamples(
  model: LlamaModel,
  ex: readonly DmpoExample[],
): DmpoEval {
  const t0 = performance.now();
  const scores = scorePairs(
    model,
    ex.flatMap((e) => [
      { prompt: e.prompt, response: e.chosen },
      { prompt: e.prompt, response: e.rejected[0] },
    ]),
    { microBatchSize: 32 },
  );
  const chosen = ex.map((_, i) => scores[2 * i]);
  const rejected = ex.map((_, i) => scores[2 * i + 1]);
  return {
    auc_released: aucReleased(chosen, rejected),
    auc_paired: aucPaired(chosen, rejected),
    pair_correct: chosen.map((c, i) => (c > rejected[i] ? 1 : c === rejected[i] ? 0.5 : 0)),
    chosen_logp: chosen.map((x) => Math.round(x * 1e4) / 1e4),
    mean_chosen_logp: chosen.length ? chosen.reduce((a, b) => a + b, 0) / chosen.length : NaN,
    rejected_logp: rejected.map((x) => Math.round(x * 1e4) / 1e4),
    eval_seconds: since(t0),
  };
}

/**
 * AUC of the reference rows on the test pairs: Oracle = the true posterior of the pair given
 * the user's taste ({@link dmpoPairPosterior}: DMPO's negatives are drawn by popularity, so
 * popularity cancels), History-Bayes = the same given the history only
 * ({@link dmpoHistoryPairPosterior}), Popularity = the two items' popularity, Random = 0.5.
 */
export function dmpoReferenceRows(
  world: World,
  test: DmpoSample[],
): Record<string, { auc_released: number; auc_paired: number }> {
  const row = (p: (s: DmpoSample) => number) => {
    const c = test.map(p), r = c.map((x) => 1 - x);
    return { auc_released: aucReleased(c, r), auc_paired: aucPaired(c, r) };
  };
  const weights = new Map<string, number[]>();
  const hb = (s: DmpoSample) => {
    const key = `${s.domain}:${s.historyIds.join(",")}`;
    if (!weights.has(key)) weights.set(key, historyGenreWeights(world, s));
    return dmpoHistoryPairPosterior(
      world,
      s,
      s.positiveId,
      s.negativeIds[0],
      "popularity",
      weights.get(key),
    );
  };
  const pop = test.map((s) => popularityScores(world, s, [s.positiveId, s.negativeIds[0]]));
  return {
    Oracle: row((s) => dmpoPairPosterior(world, s, s.positiveId, s.negativeIds[0])),
    "History-Bayes": row(hb),
    Popularity: {
      auc_released: aucReleased(pop.map((x) => x[0]), pop.map((x) => x[1])),
      auc_paired: aucPaired(pop.map((x) => x[0]), pop.map((x) => x[1])),
    },
    Random: { auc_released: 0.5, auc_paired: 0.5 },
  };
}

/** Run the DMPO experiment. */
export async function run(cfg: DmpoRunConfig): Promise<DmpoResult> {
  await ensureBackend();
  const t0 = performance.now();
  const scale = SCALE_PRESETS[cfg.scale];
  const progress = cfg.progress !== false;
  const log = (m: string) => progress && console.error(m);
  // The S-DPO data supply the world, the tokenizer and stage 0's training prompts; a
  // released data set (cfg.data) brings its own, already encoded.
  const real = cfg.data;
  const sd = real ? undefined : sdpoData(scale);
  const world = sd?.world;
  const tok = real?.tok ?? sd!.tok;
  const config = real?.config ?? sd!.config;
  const response = real?.response ?? cfg.response ?? DMPO_RESPONSE;
  const protocol = dmpoProtocol(scale);
  // Few-shot: `protocol.users` train users, one positive and 3 negatives each; K negatives =
  // K pair rows per user (dmpoPairRows), row 0 = the SFT pair.
  const trainSamples = world ? dmpoTrainSamples(world, protocol.users, 3) : [];
  // Test pairs: 2 draws per test user (3 when the scale asks for more than 2 per user).
  const testDraws = world ? Math.max(2, Math.ceil(scale.dmpoTest / world.splits.test.length)) : 0;
  const test = world
    ? subset(
      dmpoSamples(world, "test", { numNegatives: 1, drawsPerUser: testDraws }),
      scale.dmpoTest,
      13,
    )
    : [];
  const enc = (rows: DmpoSample[]) => rows.map((s) => dmpoExample(tok, s, world!, 1, response));
  const train1 = real?.train1 ?? enc(dmpoPairRows(trainSamples, 1, 17));
  const train3 = real?.train3 ?? enc(dmpoPairRows(trainSamples, 3, 17));
  const numTest = real?.test.length ?? test.length;
  const evalModel = (m: LlamaModel) =>
    real ? evaluateDmpoExamples(m, real.test) : evaluateDmpo(m, tok, world!, test, response);
  const pb = scale.prefBatch;
  // The released protocol's epochs, on the synthetic world and the released data alike
  // (src/experiments/datasets.ts: one pair row per released dpo_ranking_3 row).
  const steps1 = epochSteps(train1.length, protocol.prefEpochs, pb);
  const steps3 = epochSteps(train3.length, protocol.prefEpochs, pb);
  const k3 = 1; // negatives per example: every pair row names one
  log(
    `[dmpo] ${train1.length} train users, ${train3.length} pair rows (K=3), ${numTest} test ` +
      `pairs; preference steps K=1: ${steps1}, K=3: ${steps3}`,
  );
  const references = real?.references ?? dmpoReferenceRows(world!, test);
  const perSeed: DmpoSeedResult[] = [];
  // Seeds that share the stage-0 snapshot (and the SFT seed) share the Base LM and SFT models,
  // so each is evaluated once (evalOnce).
  const sharedEvals = new WeakMap<Snapshot, Map<string, DmpoEval>>();
  const sftStepsOf = real?.sftSteps ??
    (world ? epochSteps(train1.length, protocol.sftEpochs, scale.batchSize) : scale.dmpoSftSteps);
  for (const seed of cfg.seeds) {
    const ts = performance.now();
    const methods: Record<string, DmpoMethodResult> = {};
    const tb = performance.now();
    const base = await stage0Snapshot(config, real?.stage0 ?? sd!.trainExamples, scale, seed, {
      label: `stage0/SFT s${seed}`,
      progress,
    });
    recordStage(
      "dmpo",
      base.fromDisk
        ? "Base LM (stage 0, from disk cache)"
        : base.reused
        ? "Base LM (reused)"
        : "Base LM",
      seed,
      since(tb),
    );
    const evalSnap = (snap: Map<string, tf.Tensor>) => {
      const m = fromSnapshot(config, snap);
      try {
        return evalModel(m);
      } finally {
        m.dispose();
      }
    };
    methods["Base LM"] = {
      ...evalOnce(sharedEvals, base.snap, "Base LM", () => evalSnap(base.snap)).row,
      train_seconds: base.reused ? 0 : base.seconds,
      final_loss: base.finalLoss,
    };
    // SFT: full fine-tuning of the base LM on the chosen responses.
    const sftKind = currentBaseModel() ? "LoRA SFT merged into the base model" : "full fine-tuning";
    // Seeds share the SFT model beyond scale.stage0Seeds, as they share stage 0.
    const sftSeed = stage0SeedOf(scale, seed);
    log(`[dmpo] seed ${seed}: SFT (${sftKind}, ${sftStepsOf} steps, seed ${sftSeed})`);
    const sftR = await dmpoSft(config, base.snap, train1, scale, sftSeed, {
      label: `dmpo/SFT s${sftSeed}`,
      progress,
    }, sftStepsOf);
    const sft = sftR.snap;
    recordStage("dmpo", "SFT" + sourceNote(sftR), seed, sftR.wallSeconds);
    methods.SFT = {
      ...evalOnce(sharedEvals, base.snap, `SFT s${sftSeed}`, () => evalSnap(sft)).row,
      train_seconds: sftR.seconds,
      final_loss: sftR.finalLoss,
      steps: sftStepsOf,
      rows: train1.length,
    };
    log(`[dmpo] seed ${seed}: SFT AUC ${methods.SFT.auc_released.toFixed(3)}`);
    const arms: {
      name: (typeof DMPO_METHODS)[number];
      from: Map<string, tf.Tensor>;
      stage: "sft" | "dmpo-paper" | "dmpo-released";
      k: number;
      beta?: number;
      data: DmpoExample[];
      steps: number;
    }[] = [
      { name: "SFT-cont", from: sft, stage: "sft", k: 0, data: train1, steps: steps1 },
      {
        name: "SFT+DMPO K=3",
        from: sft,
        stage: "dmpo-paper",
        k: k3,
        beta: 1,
        data: train3,
        steps: steps3,
      },
      {
        name: "SFT+DMPO K=1",
        from: sft,
        stage: "dmpo-paper",
        k: 1,
        beta: 1,
        data: train1,
        steps: steps1,
      },
      {
        name: "SFT+DMPO K=3 (equal steps)",
        from: sft,
        stage: "dmpo-paper",
        k: 1,
        beta: 1,
        data: train3,
        steps: steps1,
      },
      {
        name: "SFT+DMPO-released K=3",
        from: sft,
        stage: "dmpo-released",
        k: k3,
        beta: 0.1,
        data: train3,
        steps: steps3,
      },
      {
        name: "DMPO-only K=3",
        from: base.snap,
        stage: "dmpo-paper",
        k: k3,
        beta: 1,
        data: train3,
        steps: steps3,
      },
    ];
    try {
      for (const arm of arms) {
        const { model, seconds, finalLoss, ...how } = await trainArm(
          config,
          arm.from,
          arm.data,
          arm,
          scale,
          arm.steps,
          seed,
          progress,
        );
        recordStage("dmpo", arm.name + sourceNote(how), seed, how.wallSeconds);
        methods[arm.name] = {
          ...evalModel(model),
          train_seconds: seconds,
          final_loss: finalLoss,
          steps: arm.steps,
          rows: arm.data.length,
        };
        model.dispose();
        log(
          `[dmpo] seed ${seed}: ${arm.name} AUC ${methods[arm.name].auc_released.toFixed(3)}, ` +
            `paired ${methods[arm.name].auc_paired.toFixed(3)}, positive log-prob ` +
            `${methods[arm.name].mean_chosen_logp.toFixed(3)}, final loss ` +
            `${finalLoss?.toFixed(4)}`,
        );
      }
    } finally {
      disposeSnapshot(sft);
    }
    if (cfg.baselines !== false && cfg.seeds.indexOf(seed) < scale.baselineSeeds) {
      const recs = real
        ? await real.baselines(scale, seed, progress)
        : await baselinesFor(world!, scale, seed, progress);
      for (const name of BASELINE_NAMES) {
        const b = recs.get(name)!;
        methods[BASELINE_ROWS[name]] = {
          ...baselineDmpoRow(b.rec, real?.baselineTest ?? test),
          chosen_logp: [],
          rejected_logp: [],
          mean_chosen_logp: NaN,
          train_seconds: b.reused ? 0 : b.seconds,
          final_loss: null,
        };
      }
    }
    // With a base model (--model) every seed trains its own stage 0 (and so its own SFT).
    perSeed.push({
      seed,
      methods,
      stage0_seed: currentBaseModel() ? seed : sftSeed,
      seconds: since(ts),
    });
    log(`[dmpo] seed ${seed} done in ${since(ts)} s (tensors ${tf.memory().numTensors})`);
  }
  return {
    paper: "dmpo",
    scale,
    config: {
      world: world?.config ?? null,
      model: config,
      lora: loraConfig(0),
      base: "stage 0 = the S-DPO experiment's SFT model (full fine-tuning on the S-DPO " +
        "train prompts, shared with it); the Base LM row",
      response: response === "title"
        ? "the liked item's tagged title + EOS (rejected: each negative's title)"
        : "DMPO's ranking <Title:A>, <Title:B> + EOS",
      train_prompts: real
        ? `${train1.length} (K=1 and SFT), ${train3.length} (K=3)`
        : `${trainSamples.length} train users (few-shot, as the released files' 100), one ` +
          `positive and 3 popularity-drawn negatives each; K negatives = K pair rows per user ` +
          `(${train1.length} rows at K=1, ${train3.length} at K=3), each prompt naming the ` +
          "positive and its own negative, row 0 = the SFT pair",
      sft: `full fine-tuning of the base LM on the chosen responses, ${sftStepsOf} steps ` +
        (real ? "" : `(${protocol.sftEpochs} epochs, as run.sh) `) +
        `at lr ${DMPO_SFT_LR}, batch ${scale.batchSize}; the reference of the SFT+ arms; ` +
        `${scale.stage0Seeds} distinct SFT model(s): seed s uses the one of seed ` +
        `s % ${scale.stage0Seeds}, so further seeds vary the preference stages only`,
      preference_steps:
        `${protocol.prefEpochs} epochs of each arm's rows at batch ${pb} (as run.sh): K=1 ` +
        `and SFT-cont ${steps1} steps, K=3 ${steps3}; "K=3 (equal steps)" = the K=3 rows ` +
        `for K=1's ${steps1} steps`,
      dmpo_only: "DMPO (paper form, K=3) on the base LM, whose frozen weights are its reference",
      beta: { "dmpo-paper": 1, "dmpo-released": 0.1 },
      gamma_released: 1,
      negatives: real
        ? "K=3: the released dpo_ranking_3 rows, one pair row per negative (datasets.ts)"
        : "popularity-drawn outside the history; every negative is named in its own pair " +
          "prompt; paper form = the paper's loss on each pair row (with one negative per " +
          "prompt the mean over negatives sits outside the sigmoid), released form = the " +
          "released per-pair loss (reference cancelled, + γ·NLL of the chosen)",
      auc: "from summed log-probs of the correct vs the reversed ranking of the prompt's pair",
      ...real?.describe,
    },
    seeds: cfg.seeds,
    num_test: numTest,
    references,
    ...(real ? {} : { row_users: test.map((s) => s.user) }),
    stage0_methods: ["Base LM", "SFT"],
    per_seed: perSeed,
    seconds: since(t0),
  };
}
