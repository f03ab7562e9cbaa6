/**
 * DPO4Rec on the synthetic world, at small scale: an LM infers a user's preferences from
 * their history as a short text ("likes ghost and alien"), the text becomes a multi-hot genre
 * vector fed to SASRec as extra features, and the LM is aligned with DPO on pairs picked by a
 * reward model built on that recommender.
 *
 * 1. **Preference text.** Prompt = the history titles; response = `likes A and B`, the user's
 *    top-2 genres *as counted in the history* (ties → the more recent genre; one genre when
 *    the history has one). The genre words are the world's stems (`ghost`, `laser`, …). The
 *    counted genres are not the true taste, so SFT alone is imperfect by construction.
 * 2. **LM.** A random small Llama (common.ts {@link modelConfig}) fully fine-tuned on
 *    (prompt → summary) for every train user ({@link trainBase}, with this file's step counts),
 *    own word tokenizer (titles + the prompt and summary words).
 * 3. **Recommenders.** SASRec alone; SASRec with extra features = the multi-hot of the
 *    history-count summary of each training prefix (the "feature SASRec": it is fed the LMs'
 *    summaries at test time and is the reward model). Upper bound: the feature SASRec fed the
 *    user's true top-2 taste genres.
 * 4. **Reward model.** reward(prompt, summary) = mean log-probability, under the feature
 *    SASRec fed that summary's features, of `rewardItems` held-out next items of the train
 *    user (drawn from the world's true next-item law with their own seed; never a test item).
 * 5. **Pairs.** N responses per prompt sampled at temperature τ from the SFT LM
 *    ({@link sampleResponses}, KV cache, seeded per (prompt, sample) so the first 2 of 8 are
 *    the N=2 set); reward-model pairs = (argmax, argmin) reward of the first N
 *    ({@link selectPair}); random pairs = two random distinct samples. DPO (stage `dpo`) with
 *    a fresh LoRA on the merged SFT model per arm; an S-DPO arm (K=3) uses the best sample as
 *    chosen and 3 summaries naming genres absent from the history as rejected.
 * 6. **Evaluation** on the test users' 20-candidate prompts: greedy summaries → feature SASRec
 *    → HR@1 / NDCG@5, plus summary quality against the true taste (known here).
 *
 * @module
 */
import { ensureBackend, tf } from "../backend.ts";
import type { LlamaConfig, LlamaModel } from "../model.ts";
import { disposeCache, FULL_LOGITS_LIMIT, type KVCache, lastPositions } from "../model.ts";
import type { TrainExample } from "../train.ts";
import { type Tokenizer, WordTokenizer } from "../tokenizer.ts";
import { type SdpoSample, sdpoSamples, trueScores, type World } from "../data/world.ts";
import { Sasrec } from "../baselines/sasrec.ts";
import { trainingExamples } from "../baselines/mod.ts";
import { type ConfidenceInterval, hitsAtK, ndcgsAtK } from "../eval/metrics.ts";
import {
  type ClaimSpec,
  type Finding,
  hasVerdict,
  specFindings,
  type Verdict,
  writeFindings,
} from "../report/findings.ts";
import { fmtMeanStd, seedTimings, summarize } from "../report/table.ts";
import { dpo4recFigures, writeFigures } from "../report/figures.ts";
import { ensureDir, writeFileAtomic, writeJsonAtomic } from "../io.ts";
import { Rng } from "../rng.ts";
import {
  buildWorld,
  disposeSnapshot,
  encodePrompt,
  encodeResponse,
  fromSnapshot,
  loraConfig,
  modelConfig,
  SCALE_PRESETS,
  type ScaleName,
  since,
  type Snapshot,
  snapshot,
  subset,
  trainBase,
} from "./common.ts";
import { referenceRows } from "./sdpo.ts";
import { currentBaseModel } from "./pretrained.ts";
import { runStage } from "./runs.ts";
import { ConfigError } from "../errors.ts";

// ---------------------------------------------------------------------------------------
// Scale

/** Size knobs of the DPO4Rec experiment (its own; common.ts presets are not used for sizes). */
export interface Dpo4recScale {
  /** Scale name. */
  name: ScaleName;
  /** SFT (full fine-tuning of a random LM) steps. */
  sftSteps: number;
  /** SFT learning rate. */
  sftLr: number;
  /** SFT batch size. */
  sftBatch: number;
  /** SASRec training epochs (each of the three SASRec models). */
  sasrecEpochs: number;
  /** S-DPO-style (full history → drawn target) examples per train user added to SASRec's data. */
  sasrecDraws: number;
  /** Preference prompts (a fixed subset of the train users). */
  prefPrompts: number;
  /** Sample counts N compared (reward-model pairs from the first N samples). */
  sampleCounts: number[];
  /** Sampling temperature τ. */
  temperature: number;
  /** Held-out next items per preference user that the reward averages over. */
  rewardItems: number;
  /** Steps of every DPO / S-DPO arm. */
  dpoSteps: number;
  /** Batch size of every preference arm. */
  dpoBatch: number;
  /** Learning rate of every preference arm (LoRA). */
  dpoLr: number;
  /** DPO β. */
  beta: number;
  /** Also train the S-DPO arm (K=3 absent-genre negatives). */
  sdpoArm: boolean;
  /** Test rows (20-candidate prompts of test users). */
  testRows: number;
  /**
   * SASRec's window (its `maxLen`): the last this-many history items every SASRec sees (10 =
   * the whole history); the LM always reads the whole history.
   */
  sasrecWindow: number;
  /**
   * Headroom the channel must have before any LM arm runs: `SASRec+oracle taste` − `SASRec`
   * HR@1 on the test rows ({@link checkHeadroom}).
   */
  minHeadroom: number;
  /** Below `minHeadroom`: `"refuse"` (throw before the LM arms) or `"flag"` (record, warn). */
  headroomMode: "refuse" | "flag";
  /** Reward diagnostics: held-out item counts M compared (plus the exact expectation). */
  rewardItemsSweep: number[];
  /** Reward diagnostics: sampling temperatures compared (N = the largest sample count). */
  temperatureSweep: number[];
  /** Reward diagnostics: on the first this-many preference users, first seed of a run only. */
  diagnosticUsers: number;
}

/** `--scale small`: the default run's DPO4Rec. */
const DPO4REC_SMALL: Dpo4recScale = {
  name: "small",
  sftSteps: 300,
  sftLr: 3e-3,
  sftBatch: 16,
  sasrecEpochs: 4,
  sasrecDraws: 4,
  prefPrompts: 1024,
  sampleCounts: [2, 4, 8],
  temperature: 2,
  rewardItems: 16,
  dpoSteps: 120,
  dpoBatch: 8,
  dpoLr: 2e-3,
  beta: 0.5,
  sdpoArm: true,
  testRows: 800,
  sasrecWindow: 1,
  minHeadroom: 0.03,
  headroomMode: "refuse",
  rewardItemsSweep: [4, 16, 64],
  temperatureSweep: [1, 1.5, 2],
  diagnosticUsers: 256,
};

/** The presets. `test` is for the test suite only. */
export const DPO4REC_PRESETS: Record<ScaleName, Dpo4recScale> = {
  test: {
    name: "test",
    sftSteps: 10,
    sftLr: 3e-3,
    sftBatch: 8,
    sasrecEpochs: 1,
    sasrecDraws: 0,
    prefPrompts: 12,
    sampleCounts: [2, 4],
    temperature: 1,
    rewardItems: 2,
    dpoSteps: 2,
    dpoBatch: 4,
    dpoLr: 1e-3,
    beta: 0.5,
    sdpoArm: true,
    testRows: 24,
    sasrecWindow: 1,
    minHeadroom: 0.03,
    headroomMode: "flag",
    rewardItemsSweep: [2, 8],
    temperatureSweep: [1, 2],
    diagnosticUsers: 12,
  },
  tiny: {
    name: "tiny",
    sftSteps: 150,
    sftLr: 3e-3,
    sftBatch: 16,
    sasrecEpochs: 3,
    sasrecDraws: 2,
    prefPrompts: 512,
    sampleCounts: [2, 4],
    temperature: 2,
    rewardItems: 16,
    dpoSteps: 60,
    dpoBatch: 8,
    dpoLr: 2e-3,
    beta: 0.5,
    sdpoArm: true,
    testRows: 800,
    sasrecWindow: 1,
    minHeadroom: 0.03,
    headroomMode: "flag",
    rewardItemsSweep: [4, 16],
    temperatureSweep: [1, 2],
    diagnosticUsers: 128,
  },
  small: DPO4REC_SMALL,
  // `--scale full`: the small values (the plan's full run differs in its 5 seeds).
  full: { ...DPO4REC_SMALL, name: "full" },
};

// ---------------------------------------------------------------------------------------
// Preference text

/** Genre names of domain `d`: the stems of the genre words (`ghost0` → `ghost`). */
export function genreNames(world: World, d = 0): string[] {
  return world.genreWords[d].map((ws) => ws[0].replace(/\d+$/, ""));
}

/** The prompt: the history titles and the question, ending with `Answer:`. */
export function preferencePrompt(world: World, historyIds: readonly number[], d = 0): string {
  const dom = world.domains[d];
  return `This person has ${dom.past} ${
    historyIds.map((id) => world.items[id].title).join(", ")
  } recently. Which genres of ${dom.plural} does this person like? Answer:`;
}

/** `likes A and B` (or `likes A`) for genre indices, in order. */
export function summaryText(names: readonly string[], genres: readonly number[]): string {
  return "likes " + genres.map((g) => names[g]).join(" and ");
}

/**
 * The top-2 genres of a history by count (ties → the genre seen more recently); one genre
 * when the history has one. This is the SFT target: inferred from the history only.
 */
export function historyTopGenres(world: World, historyIds: readonly number[]): number[] {
  const count = new Map<number, number>();
  const last = new Map<number, number>();
  historyIds.forEach((id, t) => {
    const g = world.items[id].genre;
    count.set(g, (count.get(g) ?? 0) + 1);
    last.set(g, t);
  });
  return [...count.keys()]
    .sort((a, b) => count.get(b)! - count.get(a)! || last.get(b)! - last.get(a)!)
    .slice(0, 2);
}

/** The user's true top-2 taste genres (domain d). */
export function trueTopGenres(world: World, user: number, d = 0): number[] {
  const t = world.users[user].taste[d];
  return t.map((_, g) => g).sort((a, b) => t[b] - t[a] || a - b).slice(0, 2);
}

/** What a summary says: the genres it names (first two distinct, in order) and whether it is
 * well-formed (`likes A` or `likes A and B`, known distinct genres, nothing else). */
export interface ParsedSummary {
  /** Named genre indices (≤ 2, distinct, in order). */
  genres: number[];
  /** Exactly the template with 1–2 distinct known genres. */
  valid: boolean;
}

/** Parse a summary text. */
export function parseSummary(text: string, names: readonly string[]): ParsedSummary {
  const words = text.trim().split(/\s+/).filter((w) => w !== "");
  const idx = new Map(names.map((n, g) => [n, g]));
  const genres: number[] = [];
  for (const w of words) {
    const g = idx.get(w);
    if (g !== undefined && !genres.includes(g) && genres.length < 2) genres.push(g);
  }
  const valid = genres.length > 0 && words.length > 0 && words[0] === "likes" &&
    ((words.length === 2 && idx.has(words[1])) ||
      (words.length === 4 && idx.has(words[1]) && words[2] === "and" && idx.has(words[3]) &&
        words[1] !== words[3]));
  return { genres, valid };
}

/** Multi-hot genre vector [G] of named genres. */
export function genreFeatures(genres: readonly number[], numGenres: number): Float32Array {
  const f = new Float32Array(numGenres);
  for (const g of genres) f[g] = 1;
  return f;
}

// ---------------------------------------------------------------------------------------
// Sampling and pair selection

/** A 32-bit hash of three integers (per-(prompt, sample) seeds). */
function hash3(a: number, b: number, c: number): number {
  let h = Math.imul((a | 0) ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ ((b | 0) + 0x7f4a7c15), 0xc2b2ae35) >>> 0;
  h = Math.imul(h ^ ((c | 0) + 0x165667b1), 0x27d4eb2f) >>> 0;
  return (h ^ (h >>> 15)) >>> 0;
}

/** Options of {@link sampleResponses}. */
export interface SampleOptions {
  /** Samples per prompt. */
  n: number;
  /** Temperature τ > 0 (logits / τ); 0 = greedy. */
  temperature: number;
  /** Max new tokens (EOS included). */
  maxNewTokens: number;
  /** EOS id: a sample stops there (EOS is not returned). */
  eosId: number;
  /** Padding id of the left padding. */
  padId: number;
  /** Seed; sample j of prompt p uses its own stream derived from (seed, p, j). */
  seed: number;
  /** Max rows (prompts × n) per batched forward (default 64). */
  maxRows?: number;
}

/**
 * Temperature sampling with a KV cache: `n` responses per prompt, each token drawn from
 * softmax(logits / τ) with a seeded {@link Rng}. Prompts are left-padded (as `generate`).
 * Sample j of prompt p depends only on (model, prompt, seed, p, j), not on n or batching, so
 * the first N samples of a larger draw are the N-sample draw.
 *
 * @returns Per prompt, n token-id lists (without EOS).
 */
export function sampleResponses(
  model: LlamaModel,
  prompts: number[][],
  opts: SampleOptions,
): number[][][] {
  const out: number[][][] = prompts.map(() => []);
  const rows: { p: number; j: number }[] = [];
  prompts.forEach((_, p) => {
    for (let j = 0; j < opts.n; j++) rows.push({ p, j });
  });
  const maxRows = opts.maxRows ?? 64;
  for (let s = 0; s < rows.length; s += maxRows) {
    const chunk = rows.slice(s, s + maxRows);
    const res = sampleRows(model, chunk.map((r) => prompts[r.p]), {
      ...opts,
      rngs: chunk.map((r) => new Rng(hash3(opts.seed, r.p, r.j))),
    });
    chunk.forEach((r, i) => (out[r.p][r.j] = res[i]));
  }
  return out;
}

/** One batched sampling pass; row i uses rngs[i]. */
function sampleRows(
  model: LlamaModel,
  prompts: number[][],
  opts: SampleOptions & { rngs: Rng[] },
): number[][] {
  const bsz = prompts.length;
  const maxLen = Math.max(...prompts.map((p) => p.length));
  let next = prompts.map((p) => [...new Array(maxLen - p.length).fill(opts.padId), ...p]);
  const mask = prompts.map((p) => [...new Array(maxLen - p.length).fill(0), ...p.map(() => 1)]);
  const cache: KVCache = { k: [], v: [], length: 0 };
  const out: number[][] = prompts.map(() => []);
  const done = new Array(bsz).fill(false);
  const v = model.config.vocab_size;
  try {
    for (let step = 0; step < opts.maxNewTokens; step++) {
      const last = tf.tidy(() => {
        const x = tf.tensor2d(next, [bsz, next[0].length], "int32");
        const m = tf.tensor2d(mask, [bsz, mask[0].length], "int32");
        const t = next[0].length;
        const select = bsz * t * v > FULL_LOGITS_LIMIT ? lastPositions(bsz, t) : undefined;
        const logits = model.forward(x, { cache, attentionMask: m, select });
        return logits.slice([0, logits.shape[1] - 1, 0], [-1, 1, -1]).reshape([bsz, v]);
      });
      const data = last.dataSync() as Float32Array;
      last.dispose();
      const chosen = new Array<number>(bsz).fill(opts.padId);
      for (let b = 0; b < bsz; b++) {
        if (done[b]) continue;
        const tok = drawToken(data.subarray(b * v, (b + 1) * v), opts.temperature, opts.rngs[b]);
        chosen[b] = tok;
        if (tok === opts.eosId) done[b] = true;
        else out[b].push(tok);
      }
      if (done.every(Boolean)) break;
      next = chosen.map((t) => [t]);
      mask.forEach((row) => row.push(1));
    }
  } finally {
    disposeCache(cache);
  }
  return out;
}

/** Draw from softmax(logits / τ) (argmax when τ = 0). */
function drawToken(logits: Float32Array, temperature: number, rng: Rng): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (temperature <= 0) return best;
  const m = logits[best];
  const w = new Float64Array(logits.length);
  let s = 0;
  for (let i = 0; i < logits.length; i++) {
    w[i] = Math.exp((logits[i] - m) / temperature);
    s += w[i];
  }
  let u = rng.next() * s;
  for (let i = 0; i < w.length; i++) {
    u -= w[i];
    if (u < 0) return i;
  }
  return best; // rounding
}

/** A (chosen, rejected) pair of sample indices. */
export interface PairChoice {
  /** Index of the chosen sample. */
  chosen: number;
  /** Index of the rejected sample. */
  rejected: number;
}

/**
 * Pick a DPO pair among the first `n` samples of a prompt.
 *
 * - `reward`: chosen = argmax reward, rejected = argmin (first index on ties); null when the
 *   spread is ≤ `eps` (no preference).
 * - `random`: two distinct samples drawn uniformly among those with distinct texts (`keys`);
 *   the first drawn is chosen; null when all texts are equal.
 */
export function selectPair(
  rewards: readonly number[],
  keys: readonly string[],
  n: number,
  mode: "reward" | "random",
  rng: Rng,
  eps = 1e-6,
): PairChoice | null {
  const m = Math.min(n, rewards.length);
  if (mode === "reward") {
    let hi = 0, lo = 0;
    for (let i = 1; i < m; i++) {
      if (rewards[i] > rewards[hi]) hi = i;
      if (rewards[i] < rewards[lo]) lo = i;
    }
    return rewards[hi] - rewards[lo] > eps ? { chosen: hi, rejected: lo } : null;
  }
  const firstOf = new Map<string, number>();
  for (let i = 0; i < m; i++) if (!firstOf.has(keys[i])) firstOf.set(keys[i], i);
  const distinct = [...firstOf.values()];
  if (distinct.length < 2) return null;
  const [a, b] = rng.sample(distinct, 2);
  return { chosen: a, rejected: b };
}

// ---------------------------------------------------------------------------------------
// Result types

/** Config of {@link run}. */
export interface Dpo4recRunConfig {
  /** Scale preset name. */
  scale: ScaleName;
  /** Seeds (LM init, SASRec init, sampling, batch order). Default [0]. */
  seeds?: number[];
  /** Print progress (default true). */
  progress?: boolean;
}

/** Per-method numbers of one seed. */
export interface Dpo4recMethodResult {
  /** SASRec (with this method's features) HR@1 over the test rows. */
  hr1: number;
  /** NDCG@5. */
  ndcg5: number;
  /** Per test row: 1 if the positive ranked first. */
  rank_hits: number[];
  /** Per test row: NDCG@5. */
  ndcg_rows: number[];
  /** Fraction of test users whose summary is well-formed (null: no summary). */
  summary_valid: number | null;
  /** Mean fraction of named genres that are among the user's true top-2 taste genres. */
  genre_precision: number | null;
  /** Fraction of users whose first named genre is their true top taste genre. */
  top1_acc: number | null;
  /** Fraction of summaries naming exactly the history-count target genres (order free). */
  target_match: number | null;
  /** Per test user: genre precision (claims). */
  precision_rows: number[];
  /** Per test user: top-1 correct. */
  top1_rows: number[];
  /** Per test user: well-formed. */
  valid_rows: number[];
  /** Mean reward (reward model on the preference users) of the greedy summaries. */
  pref_reward: number | null;
  /** A few summaries, for inspection. */
  examples: string[];
  /** Preference pairs trained on (null: not a preference arm). */
  num_pairs: number | null;
  /** Training seconds (SASRec rows: that SASRec; SFT: the LM SFT). */
  train_seconds: number;
  /** Evaluation seconds. */
  eval_seconds: number;
  /** Last logged training loss. */
  final_loss: number | null;
}

/** Best-of-N statistics of the sampled responses. */
export interface SamplingStats {
  /** N. */
  n: number;
  /** Mean over prompts of the max reward of the first N samples. */
  best_reward: number;
  /** Mean of the min reward. */
  worst_reward: number;
  /** Mean reward of a single sample (sample 0). */
  single_reward: number;
  /** Mean number of distinct texts among the first N. */
  distinct: number;
  /** Prompts with a reward-model pair (not all rewards equal). */
  pairs: number;
}

/** One seed's results. */
export interface Dpo4recSeedResult {
  /** Seed. */
  seed: number;
  /** Method name → numbers. */
  methods: Record<string, Dpo4recMethodResult>;
  /** Best-of-N statistics per N. */
  sampling: SamplingStats[];
  /** Mean reward of the history-count target summaries on the preference users. */
  target_reward: number;
  /** The channel's headroom, checked before the LM arms. */
  headroom?: Headroom;
  /** Reward-model diagnostics per temperature and held-out item count. */
  reward_diagnostics?: RewardDiagnosticRow[];
  /** Seconds of the seed. */
  seconds: number;
}

/** A claim with its numbers (the shape of findings.ts' ClaimResult, paper "dpo4rec"). */
export interface Dpo4recClaim {
  id: string;
  paper: "dpo4rec";
  text: string;
  /** Per-row array compared (`rank_hits`, `precision_rows`). */
  metric: "rank_hits" | "precision_rows";
  metricLabel: string;
  a: string;
  b: string;
  a_per_seed: number[];
  b_per_seed: number[];
  rows: number;
  diff: ConfidenceInterval;
  verdict: Verdict;
  /** The target a "contradicted" verdict rules out (the amended rule), when it decided it. */
  ruled_out?: number;
  /** How the rows were resampled (src/report/findings.ts). */
  resampling?: string;
}

/** What {@link run} returns. */
export interface Dpo4recResult {
  /** "dpo4rec". */
  paper: "dpo4rec";
  /** The scale preset used. */
  scale: Dpo4recScale;
  /** Everything else that defines the run. */
  config: Record<string, unknown>;
  /** Seeds. */
  seeds: number[];
  /** Test rows (20-candidate prompts). */
  num_test: number;
  /** Distinct test users (summaries generated). */
  num_test_users: number;
  /** The test user of each test row (`rank_hits`, `ndcg_rows`), in row order. */
  row_users?: number[];
  /** Methods in table order. */
  methods: string[];
  /** Reference rows (no training): oracle, history-Bayes, popularity, random. */
  references: Record<string, { hr1: number; ndcg5: number }>;
  /** Per seed. */
  per_seed: Dpo4recSeedResult[];
  /** Seconds of the run. */
  seconds: number;
}

// ---------------------------------------------------------------------------------------
// The experiment

interface PrefUser {
  user: number;
  historyIds: number[];
  heldOut: number[];
  prompt: number[];
}

/** Draw k held-out next items for a user from the true law after their history. */
function heldOutItems(world: World, user: number, k: number, seed: number): number[] {
  const law = trueScores(world, user);
  const rng = new Rng(hash3(seed, user, 77));
  const ids = world.domainItems[0];
  const out: number[] = [];
  for (let r = 0; r < k; r++) {
    let u = rng.next();
    let pick = ids[ids.length - 1];
    for (const id of ids) {
      if (law[id] <= 0) continue;
      pick = id;
      u -= law[id];
      if (u < 0) break;
    }
    out.push(pick);
  }
  return out;
}

/** The reward model: mean log p(held-out items | history, summary features) under SASRec. */
function rewardOf(
  rec: Sasrec,
  world: World,
  rows: { historyIds: number[]; heldOut: number[]; features: Float32Array }[],
): number[] {
  const ids = world.domainItems[0];
  const pos = new Map(ids.map((id, i) => [id, i]));
  const scores = rec.scoreBatch(
    rows.map((r) => r.historyIds),
    rows.map(() => ids),
    rows.map((r) => r.features),
  );
  return scores.map((s, i) => {
    let m = -Infinity;
    for (const x of s) if (x > m) m = x;
    let z = 0;
    for (const x of s) z += Math.exp(x - m);
    const lse = m + Math.log(z);
    const h = rows[i].heldOut;
    return h.reduce((a, id) => a + s[pos.get(id)!] - lse, 0) / h.length;
  });
}

/** The channel's headroom, measured before any LM arm runs ({@link checkHeadroom}). */
export interface Headroom {
  /** HR@1 of SASRec alone. */
  sasrec: number;
  /** HR@1 of the feature SASRec fed the users' true top-2 taste genres. */
  oracle_taste: number;
  /** `oracle_taste − sasrec`. */
  gap: number;
  /** The scale's `minHeadroom`. */
  min: number;
  /** `gap ≥ min`. */
  ok: boolean;
  /** SASRec's window (`maxLen`). */
  window: number;
}

/**
 * The headroom check: no LM summary can raise SASRec's HR@1 by more than the user's true
 * taste does, so when `SASRec+oracle taste` beats `SASRec` by less than `min` every LM arm
 * is a test of nothing. `"refuse"` throws a {@link ConfigError} naming the numbers and the
 * knob; `"flag"` returns `ok: false` (the caller records and prints it).
 *
 * @throws {ConfigError} in `"refuse"` mode when the gap is below `min`.
 */
export function checkHeadroom(
  sasrec: number,
  oracleTaste: number,
  min: number,
  mode: "refuse" | "flag",
  window: number,
): Headroom {
  const gap = oracleTaste - sasrec;
  const h = { sasrec, oracle_taste: oracleTaste, gap, min, ok: gap >= min, window };
  if (!h.ok && mode === "refuse") {
    throw new ConfigError(
      "sasrecWindow",
      `DPO4Rec channel has no headroom: SASRec+oracle taste HR@1 ${oracleTaste.toFixed(3)} vs ` +
        `SASRec ${sasrec.toFixed(3)} (gap ${gap.toFixed(3)} < ${min}) with SASRec's window ` +
        `${window}; no LM summary can show a gain. Shorten the window or change the split ` +
        "before running the LM arms",
    );
  }
  return h;
}

/** One row of the reward-model diagnostics. */
export interface RewardDiagnosticRow {
  /** Sampling temperature. */
  temperature: number;
  /** Held-out items the reward averages over ("exact": the expectation under the true law). */
  items: number | "exact";
  /** Samples per prompt. */
  n: number;
  /** Mean distinct texts among the n samples. */
  distinct: number;
  /** Prompts whose n samples name at least two distinct genre sets. */
  prompts_with_choice: number;
  /** Mean over those prompts of reward(best) − reward(worst) (nats). */
  best_minus_worst: number;
  /** Mean reward of the samples. */
  mean_reward: number;
  /**
   * Over those prompts: fraction whose best-reward sample has a higher true genre precision
   * than the worst-reward one (ties count ½): 0.5 = the reward model picks at random.
   */
  agree: number;
}

/**
 * Per (user, named genres): SASRec's log-softmax over the domain's items given the history and
 * the genres' features — every reward of {@link rewardDiagnostics} is read off it.
 */
function logSoftmaxRows(
  rec: Sasrec,
  world: World,
  rows: { historyIds: number[]; features: Float32Array }[],
): Float32Array[] {
  const ids = world.domainItems[0];
  const out: Float32Array[] = [];
  for (let s = 0; s < rows.length; s += 256) {
    const chunk = rows.slice(s, s + 256);
    const scores = rec.scoreBatch(
      chunk.map((r) => r.historyIds),
      chunk.map(() => ids),
      chunk.map((r) => r.features),
    );
    for (const sc of scores) {
      let m = -Infinity;
      for (const x of sc) if (x > m) m = x;
      let z = 0;
      for (const x of sc) z += Math.exp(x - m);
      const lse = m + Math.log(z);
      out.push(Float32Array.from(sc, (x) => x - lse));
    }
  }
  return out;
}

/**
 * How well the reward model tells sampled summaries apart: for each sampling temperature and
 * each held-out item count M (and the exact expectation `Σ_i q(i) log p(i | history,
 * features)` under the true next-item law q, M → ∞), the best − worst reward gap among each
 * prompt's n samples, and whether the best one is truly better (higher genre precision
 * against the user's true top-2 taste genres) than the worst.
 */
export function rewardDiagnostics(
  rec: Sasrec,
  world: World,
  users: { user: number; historyIds: number[] }[],
  samplesByTemperature: { temperature: number; texts: string[][] }[],
  itemCounts: readonly number[],
  seed: number,
): RewardDiagnosticRow[] {
  const G = world.config.numGenres;
  const names = genreNames(world);
  const ids = world.domainItems[0];
  const pos = new Map(ids.map((id, i) => [id, i]));
  const mMax = Math.max(...itemCounts);
  // Held-out items are nested: the first M of mMax draws are the M-item draw.
  const held = users.map((u) => heldOutItems(world, u.user, mMax, seed).map((id) => pos.get(id)!));
  const law = users.map((u) => {
    const q = trueScores(world, u.user);
    return ids.map((id) => q[id]);
  });
  const truth = users.map((u) => trueTopGenres(world, u.user));
  const cache = new Map<string, Float32Array>();
  const out: RewardDiagnosticRow[] = [];
  for (const { temperature, texts } of samplesByTemperature) {
    const parsed = texts.map((ts) => ts.map((t) => parseSummary(t, names).genres));
    const keyOf = (i: number, g: number[]) => `${users[i].user}|${g.join(",")}`;
    const todo: { key: string; historyIds: number[]; features: Float32Array }[] = [];
    parsed.forEach((ps, i) =>
      ps.forEach((g) => {
        const key = keyOf(i, g);
        if (cache.has(key) || todo.some((t) => t.key === key)) return;
        todo.push({ key, historyIds: users[i].historyIds, features: genreFeatures(g, G) });
      })
    );
    logSoftmaxRows(rec, world, todo).forEach((r, j) => cache.set(todo[j].key, r));
    const n = texts[0]?.length ?? 0;
    for (const items of [...itemCounts, "exact" as const]) {
      let choice = 0, gap = 0, agree = 0, total = 0, count = 0;
      parsed.forEach((ps, i) => {
        const rewards = ps.map((g) => {
          const lp = cache.get(keyOf(i, g))!;
          if (items === "exact") return law[i].reduce((a, q, j) => a + q * lp[j], 0);
          let r = 0;
          for (let k = 0; k < items; k++) r += lp[held[i][k]];
          return r / items;
        });
        rewards.forEach((r) => (total += r));
        count += rewards.length;
        if (new Set(ps.map((g) => g.join(","))).size < 2) return;
        let hi = 0, lo = 0;
        rewards.forEach((r, j) => {
          if (r > rewards[hi]) hi = j;
          if (r < rewards[lo]) lo = j;
        });
        choice++;
        gap += rewards[hi] - rewards[lo];
        const prec = (g: number[]) =>
          g.length === 0 ? 0 : g.filter((x) => truth[i].includes(x)).length / g.length;
        const a = prec(ps[hi]), b = prec(ps[lo]);
        agree += a > b ? 1 : a === b ? 0.5 : 0;
      });
      out.push({
        temperature,
        items,
        n,
        distinct: mean(texts.map((t) => new Set(t).size)),
        prompts_with_choice: choice,
        best_minus_worst: choice ? gap / choice : NaN,
        mean_reward: count ? total / count : NaN,
        agree: choice ? agree / choice : NaN,
      });
    }
  }
  return out;
}

/** Train one SASRec: plain, or with the history-count summary features of each example. */
async function trainSasrec(
  world: World,
  scale: Dpo4recScale,
  seed: number,
  features: "none" | "count",
): Promise<{ rec: Sasrec; seconds: number; finalLoss: number | null }> {
  const t0 = performance.now();
  const G = world.config.numGenres;
  const examples = trainingExamples(world, { sdpoDraws: scale.sasrecDraws });
  const rec = new Sasrec({
    numItems: world.items.length,
    epochs: scale.sasrecEpochs,
    lr: 3e-3,
    seed: 500 + seed,
    extraFeatureDim: features === "none" ? 0 : G,
    maxLen: scale.sasrecWindow,
  });
  const extra = features === "count"
    ? examples.map((e) => genreFeatures(historyTopGenres(world, e.historyIds), G))
    : undefined;
  const r = await rec.fit(examples, { extraFeatures: extra, quiet: true });
  return { rec, seconds: since(t0), finalLoss: r.losses.at(-1) ?? null };
}

/** Table order of the methods for a scale. */
export function methodNames(scale: Dpo4recScale): string[] {
  const nMax = Math.max(...scale.sampleCounts);
  return [
    "SASRec",
    "SASRec+oracle taste",
    "SASRec+history counts",
    "SASRec+SFT LM",
    ...scale.sampleCounts.map((n) => `SASRec+DPO LM (RM pairs, N=${n})`),
    `SASRec+DPO LM (random pairs, N=${nMax})`,
    ...(scale.sdpoArm ? [`SASRec+S-DPO LM (RM chosen, K=3)`] : []),
  ];
}

const mean = (xs: readonly number[]) =>
  xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * The SFT LM on a pretrained base model (--model): a LoRA SFT (`scale.sftSteps` steps, lr
 * `scale.sftLr`) merged into its weights; kept in the run folder `seed<s>/sft-lm` when
 * reproduce turns run folders on.
 */
async function pretrainedSft(
  from: Snapshot,
  config: LlamaConfig,
  examples: TrainExample[],
  scale: Dpo4recScale,
  seed: number,
  progress: boolean,
): Promise<{ model: LlamaModel; seconds: number; finalLoss: number }> {
  const r = await runStage({
    name: "SFT LM",
    seed,
    config,
    from,
    mode: "lora-merged",
    lora: loraConfig(1000 + seed),
    examples,
    train: {
      stage: "sft",
      steps: scale.sftSteps,
      batchSize: scale.sftBatch,
      microBatchSize: Math.min(scale.sftBatch, 8),
      lr: scale.sftLr,
      warmupSteps: Math.min(20, Math.floor(scale.sftSteps / 5)),
      beta2: 0.95,
      seed,
      logEvery: Math.max(1, Math.floor(scale.sftSteps / 5)),
    },
    label: `dpo4rec/SFT s${seed}`,
    progress,
    baseModelName: currentBaseModel()?.folder,
  });
  const model = fromSnapshot(config, r.snap!);
  disposeSnapshot(r.snap!);
  return { model, seconds: r.seconds, finalLoss: r.finalLoss ?? NaN };
}

/** Run the DPO4Rec experiment. */
export async function run(cfg: Dpo4recRunConfig): Promise<Dpo4recResult> {
  await ensureBackend();
  const t0 = performance.now();
  const scale = DPO4REC_PRESETS[cfg.scale];
  if (!scale) throw new Error(`unknown scale "${cfg.scale}"`);
  const seeds = cfg.seeds ?? [0];
  const progress = cfg.progress !== false;
  const log = (m: string) => progress && console.error(m);
  const world = buildWorld();
  const G = world.config.numGenres;
  const names = genreNames(world);
  // With a base model (--model, src/experiments/pretrained.ts): its tokenizer and config.
  const baseLm = currentBaseModel();
  const tok: Tokenizer = baseLm?.tokenizer ?? WordTokenizer.fromTexts([
    ...world.items.map((i) => i.title),
    preferencePrompt(world, world.users[0].histories[0]),
    summaryText(names, names.map((_, g) => g)),
  ]);
  const config: LlamaConfig = baseLm?.config ?? modelConfig(tok.vocabSize);
  // "likes A and B" + EOS = 5 word tokens (6 = one spare); a BPE tokenizer may need more.
  const maxNew = Math.max(
    6,
    ...names.flatMap((_, a) =>
      names.map((_, b) => encodeResponse(tok, summaryText(names, [a, b])).length + 1)
    ),
  );
  // SFT data: every train user, prompt → history-count summary.
  const trainUsers = world.splits.train;
  const sftExamples: TrainExample[] = trainUsers.map((u) => {
    const h = world.users[u].histories[0];
    return {
      prompt: encodePrompt(tok, preferencePrompt(world, h)),
      chosen: encodeResponse(tok, summaryText(names, historyTopGenres(world, h))),
    };
  });
  const test: SdpoSample[] = subset(sdpoSamples(world, "test"), scale.testRows, 11);
  const testUsers = [...new Set(test.map((s) => s.user))];
  const userRow = new Map(testUsers.map((u, i) => [u, i]));
  const testPrompts = testUsers.map((u) =>
    encodePrompt(tok, preferencePrompt(world, world.users[u].histories[0]))
  );
  const methods = methodNames(scale);
  const nMax = Math.max(...scale.sampleCounts);
  log(
    `[dpo4rec] ${sftExamples.length} SFT prompts, ${scale.prefPrompts} preference prompts, ` +
      `${test.length} test rows (${testUsers.length} users), vocab ${tok.vocabSize}`,
  );
  const refs = referenceRows(world, test);
  const references = Object.fromEntries(
    Object.entries(refs).map(([k, r]) => [k, { hr1: r.hr1_rank, ndcg5: r.ndcg5_rank }]),
  );
  const positives = test.map((s) => s.positiveIndex);

  /** SASRec metrics of test rows given per-user features (undefined: plain SASRec). */
  const rankRows = (rec: Sasrec, feats?: Float32Array[]) => {
    const scores = rec.scoreBatch(
      test.map((s) => s.historyIds),
      test.map((s) => s.candidateIds),
      feats ? test.map((s) => feats[userRow.get(s.user)!]) : undefined,
    );
    const hits = hitsAtK({ scores }, positives, 1);
    const nd = ndcgsAtK({ scores }, positives, 5);
    return { hr1: mean(hits), ndcg5: mean(nd), rank_hits: hits, ndcg_rows: nd };
  };
  /** Summary quality of per-user genre lists. */
  const summaryRows = (parsed: ParsedSummary[]) => {
    const precision = parsed.map((p, i) => {
      const truth = trueTopGenres(world, testUsers[i]);
      return p.genres.length === 0
        ? 0
        : p.genres.filter((g) => truth.includes(g)).length / p.genres.length;
    });
    const top1 = parsed.map((p, i) =>
      p.genres.length > 0 && p.genres[0] === trueTopGenres(world, testUsers[i])[0] ? 1 : 0
    );
    const valid = parsed.map((p) => (p.valid ? 1 : 0));
    const target = parsed.map((p, i) => {
      const t = historyTopGenres(world, world.users[testUsers[i]].histories[0]);
      return p.genres.length === t.length && t.every((g) => p.genres.includes(g)) ? 1 : 0;
    });
    return {
      summary_valid: mean(valid),
      genre_precision: mean(precision),
      top1_acc: mean(top1),
      target_match: mean(target),
      precision_rows: precision,
      top1_rows: top1,
      valid_rows: valid,
    };
  };

  const perSeed: Dpo4recSeedResult[] = [];
  for (const seed of seeds) {
    const ts = performance.now();
    const out: Record<string, Dpo4recMethodResult> = {};
    // --- Recommenders.
    log(`[dpo4rec] seed ${seed}: SASRec ×2 (${scale.sasrecEpochs} epochs each)`);
    const plain = await trainSasrec(world, scale, seed, "none");
    const featRec = await trainSasrec(world, scale, seed, "count");
    const lm: { snap?: Snapshot } = {};
    try {
      const te = performance.now();
      out["SASRec"] = {
        ...rankRows(plain.rec),
        ...emptySummary(),
        train_seconds: plain.seconds,
        eval_seconds: since(te),
        final_loss: plain.finalLoss,
      };
      const oracleGenres = testUsers.map((u) => trueTopGenres(world, u));
      const to = performance.now();
      out["SASRec+oracle taste"] = {
        ...rankRows(featRec.rec, oracleGenres.map((g) => genreFeatures(g, G))),
        ...summaryRows(oracleGenres.map((genres) => ({ genres, valid: true }))),
        pref_reward: null,
        examples: oracleGenres.slice(0, 5).map((g) => summaryText(names, g)),
        num_pairs: null,
        train_seconds: 0,
        eval_seconds: since(to),
        final_loss: null,
      };
      // --- The channel's headroom, before any LM arm.
      const headroom = checkHeadroom(
        out["SASRec"].hr1,
        out["SASRec+oracle taste"].hr1,
        scale.minHeadroom,
        scale.headroomMode,
        scale.sasrecWindow,
      );
      log(
        `[dpo4rec] seed ${seed}: headroom SASRec+oracle taste − SASRec = ` +
          `${headroom.gap.toFixed(3)} HR@1 (window ${scale.sasrecWindow}, need ≥ ` +
          `${scale.minHeadroom})${headroom.ok ? "" : ": NO HEADROOM, the LM rows test nothing"}`,
      );
      // --- Preference users and the reward model.
      const prefUsers: PrefUser[] = subset(trainUsers, scale.prefPrompts, 23).map((u) => {
        const h = world.users[u].histories[0];
        return {
          user: u,
          historyIds: h,
          heldOut: heldOutItems(world, u, scale.rewardItems, 9000 + seed),
          prompt: encodePrompt(tok, preferencePrompt(world, h)),
        };
      });
      // Rewards are cached per (user, named genres): equal features get bit-equal rewards
      // (batched float sums may differ in the last bits by row position).
      const rewardCache = new Map<string, number>();
      const reward = (users: PrefUser[], texts: string[]) => {
        const keys = users.map((p, i) =>
          `${p.user}|${parseSummary(texts[i], names).genres.join(",")}`
        );
        const firstRow = new Map<string, number>();
        keys.forEach((k, i) => {
          if (!rewardCache.has(k) && !firstRow.has(k)) firstRow.set(k, i);
        });
        const todo = [...firstRow.keys()];
        const rows = todo.map((k) => {
          const gs = k.split("|")[1];
          const p = users[firstRow.get(k)!];
          return {
            historyIds: p.historyIds,
            heldOut: p.heldOut,
            features: genreFeatures(gs === "" ? [] : gs.split(",").map(Number), G),
          };
        });
        if (rows.length > 0) {
          rewardOf(featRec.rec, world, rows).forEach((r, i) => rewardCache.set(todo[i], r));
        }
        return keys.map((k) => rewardCache.get(k)!);
      };
      const countGenres = testUsers.map((u) =>
        historyTopGenres(world, world.users[u].histories[0])
      );
      const tc = performance.now();
      const targetReward = mean(
        reward(
          prefUsers,
          prefUsers.map((p) => summaryText(names, historyTopGenres(world, p.historyIds))),
        ),
      );
      out["SASRec+history counts"] = {
        ...rankRows(featRec.rec, countGenres.map((g) => genreFeatures(g, G))),
        ...summaryRows(countGenres.map((genres) => ({ genres, valid: true }))),
        pref_reward: targetReward,
        examples: countGenres.slice(0, 5).map((g) => summaryText(names, g)),
        num_pairs: null,
        train_seconds: featRec.seconds,
        eval_seconds: since(tc),
        final_loss: featRec.finalLoss,
      };

      /** Evaluate an LM: greedy summaries of test users → feature SASRec; + pref reward. */
      const evalLm = (model: LlamaModel) => {
        const t1 = performance.now();
        const gen = (prompts: number[][]) => {
          const texts: string[] = [];
          for (let s = 0; s < prompts.length; s += 64) {
            const outs = model.generate(prompts.slice(s, s + 64), {
              maxNewTokens: maxNew,
              eosId: tok.eosId,
              padId: tok.padId,
            });
            for (const ids of outs) texts.push(tok.decode(ids, { skipSpecial: true }));
          }
          return texts;
        };
        const texts = gen(testPrompts);
        const parsed = texts.map((t) => parseSummary(t, names));
        const prefTexts = gen(prefUsers.map((p) => p.prompt));
        return {
          ...rankRows(featRec.rec, parsed.map((p) => genreFeatures(p.genres, G))),
          ...summaryRows(parsed),
          pref_reward: mean(reward(prefUsers, prefTexts)),
          examples: texts.slice(0, 5),
          eval_seconds: since(t1),
        };
      };

      // --- SFT LM.
      log(
        `[dpo4rec] seed ${seed}: SFT LM (${
          baseLm ? "LoRA SFT merged into the base model" : "full fine-tuning"
        }, ${scale.sftSteps} steps)`,
      );
      const sft = baseLm
        ? await pretrainedSft(baseLm.weights, config, sftExamples, scale, seed, progress)
        : await trainBase(
          config,
          sftExamples,
          {
            ...SCALE_PRESETS[cfg.scale],
            baseSteps: scale.sftSteps,
            baseLr: scale.sftLr,
            batchSize: scale.sftBatch,
          },
          seed,
          { label: `dpo4rec/SFT s${seed}`, progress },
        );
      lm.snap = snapshot(sft.model);
      out["SASRec+SFT LM"] = {
        ...evalLm(sft.model),
        num_pairs: null,
        train_seconds: sft.seconds,
        final_loss: sft.finalLoss,
      };
      log(
        `[dpo4rec] seed ${seed}: SFT HR@1 ${out["SASRec+SFT LM"].hr1.toFixed(3)}, precision ` +
          `${out["SASRec+SFT LM"].genre_precision!.toFixed(3)}`,
      );

      // --- Sample N responses per preference prompt, score them.
      const tsamp = performance.now();
      const samples = sampleResponses(sft.model, prefUsers.map((p) => p.prompt), {
        n: nMax,
        temperature: scale.temperature,
        maxNewTokens: maxNew,
        eosId: tok.eosId,
        padId: tok.padId,
        seed: 31 + seed,
      });
      sft.model.dispose();
      const texts = samples.map((ss) => ss.map((ids) => tok.decode(ids, { skipSpecial: true })));
      const flatUsers = prefUsers.flatMap((p) => new Array<PrefUser>(nMax).fill(p));
      const flatRewards = reward(flatUsers, texts.flat());
      const rewards = prefUsers.map((_, i) => flatRewards.slice(i * nMax, (i + 1) * nMax));
      const sampling: SamplingStats[] = scale.sampleCounts.map((n) => ({
        n,
        best_reward: mean(rewards.map((r) => Math.max(...r.slice(0, n)))),
        worst_reward: mean(rewards.map((r) => Math.min(...r.slice(0, n)))),
        single_reward: mean(rewards.map((r) => r[0])),
        distinct: mean(texts.map((t) => new Set(t.slice(0, n)).size)),
        pairs: rewards.filter((r, i) => selectPair(r, texts[i], n, "reward", new Rng(0))).length,
      }));
      log(
        `[dpo4rec] seed ${seed}: sampled ${nMax} × ${prefUsers.length} in ${since(tsamp)} s; ` +
          sampling.map((s) => `N=${s.n} best ${s.best_reward.toFixed(3)}`).join(", "),
      );

      // --- Reward-model diagnostics (first seed): held-out item counts × temperatures, on the
      // first `diagnosticUsers` preference users.
      let reward_diagnostics: RewardDiagnosticRow[] | undefined;
      if (seed === seeds[0]) {
        const tdiag = performance.now();
        const dUsers = prefUsers.slice(0, scale.diagnosticUsers);
        const byTemperature: { temperature: number; texts: string[][] }[] = [];
        for (const temperature of scale.temperatureSweep) {
          if (temperature === scale.temperature) {
            byTemperature.push({ temperature, texts: texts.slice(0, dUsers.length) });
            continue;
          }
          const m = fromSnapshot(config, lm.snap!);
          try {
            const ss = sampleResponses(m, dUsers.map((p) => p.prompt), {
              n: nMax,
              temperature,
              maxNewTokens: maxNew,
              eosId: tok.eosId,
              padId: tok.padId,
              seed: 31 + seed,
            });
            byTemperature.push({
              temperature,
              texts: ss.map((x) => x.map((ids) => tok.decode(ids, { skipSpecial: true }))),
            });
          } finally {
            m.dispose();
          }
        }
        reward_diagnostics = rewardDiagnostics(
          featRec.rec,
          world,
          dUsers,
          byTemperature,
          scale.rewardItemsSweep,
          9000 + seed,
        );
        log(
          `[dpo4rec] seed ${seed}: reward diagnostics (${dUsers.length} users) in ` +
            `${since(tdiag)} s: ` +
            reward_diagnostics.map((r) =>
              `τ ${r.temperature} M ${r.items}: gap ${r.best_minus_worst.toFixed(3)}, agree ` +
              `${r.agree.toFixed(2)}, distinct ${r.distinct.toFixed(2)}`
            ).join("; "),
        );
      }

      // --- Preference arms.
      const pairExamples = (n: number, mode: "reward" | "random"): TrainExample[] => {
        const rng = new Rng(hash3(seed, n, mode === "reward" ? 1 : 2));
        const ex: TrainExample[] = [];
        prefUsers.forEach((p, i) => {
          const pair = selectPair(rewards[i], texts[i], n, mode, rng);
          if (!pair) return;
          ex.push({
            prompt: p.prompt,
            chosen: [...samples[i][pair.chosen], tok.eosId],
            rejected: [[...samples[i][pair.rejected], tok.eosId]],
          });
        });
        return ex;
      };
      const sdpoExamples = (): TrainExample[] =>
        prefUsers.map((p, i) => {
          const r = rewards[i];
          const best = r.indexOf(Math.max(...r));
          const rng = new Rng(hash3(seed, i, 3));
          const inHistory = new Set(historyGenres(world, p.historyIds));
          let absent = names.map((_, g) => g).filter((g) => !inHistory.has(g));
          if (absent.length < 2) absent = names.map((_, g) => g);
          // 3 distinct genre pairs from the absent genres (repeated only when fewer exist).
          const pairs = absent.flatMap((a, x) => absent.slice(x + 1).map((b) => [a, b]));
          const picked = rng.sample(pairs, Math.min(3, pairs.length));
          const rejected = [0, 1, 2].map((k) =>
            encodeResponse(tok, summaryText(names, rng.shuffle(picked[k % picked.length].slice())))
          );
          return { prompt: p.prompt, chosen: [...samples[i][best], tok.eosId], rejected };
        });
      const arms: { name: string; examples: () => TrainExample[]; stage: "dpo" | "sdpo" }[] = [
        ...scale.sampleCounts.map((n) => ({
          name: `SASRec+DPO LM (RM pairs, N=${n})`,
          examples: () => pairExamples(n, "reward"),
          stage: "dpo" as const,
        })),
        {
          name: `SASRec+DPO LM (random pairs, N=${nMax})`,
          examples: () => pairExamples(nMax, "random"),
          stage: "dpo" as const,
        },
        ...(scale.sdpoArm
          ? [{
            name: "SASRec+S-DPO LM (RM chosen, K=3)",
            examples: sdpoExamples,
            stage: "sdpo" as const,
          }]
          : []),
      ];
      for (const arm of arms) {
        const ex = arm.examples();
        const t1 = performance.now();
        let model: LlamaModel;
        let finalLoss: number | null = null;
        let trainSeconds: number;
        if (ex.length > 0) {
          // A run folder per arm (src/experiments/runs.ts) when reproduce turns them on.
          const r = await runStage({
            name: arm.name,
            seed,
            config,
            from: lm.snap!,
            mode: "lora",
            lora: loraConfig(100 + seed),
            examples: ex,
            train: {
              stage: arm.stage,
              steps: scale.dpoSteps,
              batchSize: scale.dpoBatch,
              microBatchSize: 32,
              lr: scale.dpoLr,
              warmupSteps: Math.min(5, Math.floor(scale.dpoSteps / 5)),
              numNegatives: arm.stage === "sdpo" ? 3 : 1,
              beta: scale.beta,
              reference: "precomputed",
              seed,
              logEvery: Math.max(1, Math.floor(scale.dpoSteps / 4)),
            },
            label: `dpo4rec/${arm.name} s${seed}`,
            progress,
            baseModelName: baseLm?.folder,
          });
          model = r.model!;
          finalLoss = r.finalLoss;
          trainSeconds = r.seconds;
        } else {
          model = fromSnapshot(config, lm.snap!);
          model.addLora(loraConfig(100 + seed));
          trainSeconds = since(t1);
        }
        try {
          out[arm.name] = {
            ...evalLm(model),
            num_pairs: ex.length,
            train_seconds: trainSeconds,
            final_loss: finalLoss,
          };
        } finally {
          model.dispose();
        }
        log(
          `[dpo4rec] seed ${seed}: ${arm.name}: ${ex.length} pairs, HR@1 ` +
            `${out[arm.name].hr1.toFixed(3)}, precision ${
              out[arm.name].genre_precision!.toFixed(3)
            }, pref reward ${out[arm.name].pref_reward!.toFixed(3)}`,
        );
      }
      const ordered = Object.fromEntries(methods.map((m) => [m, out[m]]));
      perSeed.push({
        seed,
        methods: ordered,
        sampling,
        target_reward: targetReward,
        headroom,
        reward_diagnostics,
        seconds: since(ts),
      });
    } finally {
      plain.rec.dispose();
      featRec.rec.dispose();
      if (lm.snap) disposeSnapshot(lm.snap);
    }
    log(`[dpo4rec] seed ${seed} done in ${since(ts)} s (tensors ${tf.memory().numTensors})`);
  }
  return {
    paper: "dpo4rec",
    scale,
    config: {
      world: world.config,
      model: config,
      lora: loraConfig(0),
      genres: names,
      prompt: preferencePrompt(world, world.users[0].histories[0]),
      response: "likes A and B: the top-2 genres by count in the history (ties → more recent)",
      features: "multi-hot [numGenres] of the genres a summary names → SASRec extraFeatures",
      feature_sasrec: "trained with the history-count summary features of each training prefix",
      oracle_row: "the feature SASRec fed the user's true top-2 taste genres",
      sasrec_window: `every SASRec reads the last ${scale.sasrecWindow} history items (maxLen); ` +
        "the LM reads the whole history",
      headroom: `SASRec+oracle taste − SASRec ≥ ${scale.minHeadroom} HR@1, checked before the ` +
        `LM arms (${scale.headroomMode})`,
      reward: `mean log p(held-out item | history, summary features) under the feature SASRec, ` +
        `${scale.rewardItems} held-out items per user drawn from the true next-item law`,
      pairs: "reward: (argmax, argmin) of the first N samples; random: 2 distinct random samples",
      sdpo_arm: "chosen = best-reward sample; 3 rejected = summaries naming 2 genres absent " +
        "from the history; stage sdpo, K=3",
      temperature: scale.temperature,
      beta: scale.beta,
    },
    seeds,
    num_test: test.length,
    num_test_users: testUsers.length,
    row_users: test.map((s) => s.user),
    methods,
    references,
    per_seed: perSeed,
    seconds: since(t0),
  };
}

/** Every genre present in a history. */
function historyGenres(world: World, historyIds: readonly number[]): number[] {
  return [...new Set(historyIds.map((id) => world.items[id].genre))];
}

function emptySummary() {
  return {
    summary_valid: null,
    genre_precision: null,
    top1_acc: null,
    target_match: null,
    precision_rows: [] as number[],
    top1_rows: [] as number[],
    valid_rows: [] as number[],
    pref_reward: null,
    examples: [] as string[],
    num_pairs: null,
  };
}

// ---------------------------------------------------------------------------------------
// Claims and artefacts

/** The claims checked, for a result (method names depend on the scale's N values). */
export function dpo4recClaimSpecs(result: Pick<Dpo4recResult, "scale">) {
  const nMax = Math.max(...result.scale.sampleCounts);
  const nMin = Math.min(...result.scale.sampleCounts);
  const rm = (n: number) => `SASRec+DPO LM (RM pairs, N=${n})`;
  const rnd = `SASRec+DPO LM (random pairs, N=${nMax})`;
  const hr = { metric: "rank_hits" as const, metricLabel: "HR@1" };
  const pr = { metric: "precision_rows" as const, metricLabel: "genre precision" };
  return [
    {
      id: "dpo4rec.lm_features_improve_sasrec.hr1",
      text: "LM-inferred preferences (SFT LM) improve SASRec (HR@1)",
      ...hr,
      a: "SASRec+SFT LM",
      b: "SASRec",
    },
    {
      id: "dpo4rec.dpo_lm_features_improve_sasrec.hr1",
      text: `LM-inferred preferences (DPO LM, RM pairs, N=${nMax}) improve SASRec (HR@1)`,
      ...hr,
      a: rm(nMax),
      b: "SASRec",
    },
    {
      id: "dpo4rec.rm_gt_random.hr1",
      text: `Reward-model pairs beat random pairs (N=${nMax}, HR@1)`,
      ...hr,
      a: rm(nMax),
      b: rnd,
    },
    {
      id: "dpo4rec.rm_gt_random.genre_precision",
      text: `Reward-model pairs beat random pairs (N=${nMax}, summary genre precision)`,
      ...pr,
      a: rm(nMax),
      b: rnd,
    },
    {
      id: "dpo4rec.larger_n_helps.hr1",
      text: `Larger N helps: RM pairs N=${nMax} > N=${nMin} (HR@1)`,
      ...hr,
      a: rm(nMax),
      b: rm(nMin),
    },
    {
      id: "dpo4rec.larger_n_helps.genre_precision",
      text: `Larger N helps: RM pairs N=${nMax} > N=${nMin} (summary genre precision)`,
      ...pr,
      a: rm(nMax),
      b: rm(nMin),
    },
    {
      id: "dpo4rec.dpo_gt_sft.hr1",
      text: `DPO (RM pairs, N=${nMax}) > SFT (HR@1)`,
      ...hr,
      a: rm(nMax),
      b: "SASRec+SFT LM",
    },
    {
      id: "dpo4rec.dpo_gt_sft.genre_precision",
      text: `DPO (RM pairs, N=${nMax}) > SFT (summary genre precision)`,
      ...pr,
      a: rm(nMax),
      b: "SASRec+SFT LM",
    },
  ];
}

/**
 * The DPO4Rec claims as findings (src/report/findings.ts: seeds, then test users, the
 * amended decision rule), from the per-row numbers.
 */
export function dpo4recFindings(
  result: Pick<Dpo4recResult, "scale" | "per_seed" | "row_users" | "seeds">,
): Finding[] {
  return specFindings(
    dpo4recClaimSpecs(result).map((c): ClaimSpec => ({ ...c, paper: "dpo4rec" })),
    { paper: "dpo4rec", per_seed: result.per_seed, row_users: result.row_users },
    result.seeds,
  );
}

/** metrics.json's `claims` of DPO4Rec: its findings with a verdict, in the claim shape. */
export function dpo4recClaimsOf(findings: readonly Finding[]): Dpo4recClaim[] {
  return findings.filter(hasVerdict).map((f) => ({
    id: f.claim_id,
    text: f.claim,
    metric: f.metric as Dpo4recClaim["metric"],
    metricLabel: f.metric_label,
    a: f.ours_method!,
    b: f.baseline_method!,
    paper: "dpo4rec",
    a_per_seed: f.ours_per_seed,
    b_per_seed: f.baseline_per_seed,
    rows: f.rows,
    diff: { mean: f.effect!, lo: f.ci95![0], hi: f.ci95![1] },
    verdict: f.verdict as Verdict,
    ...(f.ruled_out === undefined ? {} : { ruled_out: f.ruled_out }),
    resampling: f.resampling?.description,
  }));
}

/** The DPO4Rec claims with their numbers and verdicts ({@link dpo4recClaimsOf} of the findings). */
export function dpo4recClaims(
  result: Pick<Dpo4recResult, "scale" | "per_seed" | "row_users" | "seeds">,
): Dpo4recClaim[] {
  return dpo4recClaimsOf(dpo4recFindings(result));
}

const NOTES = [
  "Synthetic world (default config, domain 0). Test rows: 20-candidate prompts of held-out " +
  "test users (the S-DPO test prompts); every row is scored by SASRec, with the features each " +
  "method supplies (the LMs: their greedy summary of the user's history).",
  "Preference text: `likes A and B`, the top-2 genres by count in the history (SFT target); " +
  "features = multi-hot genre vector → SASRec `extraFeatures`. The feature SASRec is trained " +
  "with the history-count features of each training prefix and is also the reward model; " +
  "the oracle row feeds it the user's true top-2 taste genres (upper bound of the channel).",
  "Reward = mean log-probability of held-out next items of the train user (drawn from the " +
  "world's true law, never a test item) under the feature SASRec fed the summary. RM pairs: " +
  "best / worst of N samples (τ = 2, 16 held-out items: the setting whose best sample is most " +
  "often truly better, table below; τ = 1 with 4 items picked at random more often) from the " +
  "SFT LM; random pairs: 2 distinct random samples " +
  "(their law does not depend on N). Arms: fresh LoRA (r 8, α 16) on the merged SFT LM, the " +
  "same steps and lr each.",
  "Summary metrics are against the user's true top-2 taste genres (known here): precision = " +
  "share of named genres in the true top-2; top-1 = first named genre is the true top genre.",
  "Headroom (checked before any LM arm; small refuses to run below 0.03 HR@1): every SASRec " +
  "reads only the last history item (its window, `sasrecWindow` = 1) while the LM reads the " +
  "whole 5–10-item history. With the whole history in SASRec's window the channel has no " +
  "headroom (SASRec 0.383 vs SASRec + true tastes 0.385 HR@1, measured LM-free): no summary " +
  "could help. Summaries carry only information that is in the history, so the feature gain " +
  "measures what SASRec's window leaves out: compare `SASRec` with `SASRec+history counts` " +
  "before reading the LM rows.",
  "The paper (arXiv 2410.05939) publishes no readable numbers (see " +
  "`data/paper-numbers.json`); only orderings are compared.",
];

/** table.md of a result. */
export function dpo4recTable(result: Dpo4recResult): string {
  const cols: [string, keyof Dpo4recMethodResult][] = [
    ["HR@1", "hr1"],
    ["NDCG@5", "ndcg5"],
    ["summary valid", "summary_valid"],
    ["genre precision", "genre_precision"],
    ["top-1 genre acc", "top1_acc"],
    ["= count target", "target_match"],
    ["pref reward", "pref_reward"],
    ["pairs", "num_pairs"],
  ];
  const lines = [
    `# DPO4Rec on the synthetic world (scale ${result.scale.name}, ${result.seeds.length} ` +
    `seed(s), ${result.num_test} test rows, ${result.num_test_users} test users)`,
    "",
    `| method | ${cols.map((c) => c[0]).join(" | ")} |`,
    `|---|${cols.map(() => "---|").join("")}`,
  ];
  for (const m of result.methods) {
    const cells = cols.map(([, f]) =>
      fmtMeanStd(result.per_seed.map((s) => (s.methods[m]?.[f] as number | null) ?? null))
    );
    lines.push(`| ${m} | ${cells.join(" | ")} |`);
  }
  for (const [name, r] of Object.entries(result.references)) {
    lines.push(
      `| *${name}* (reference) | ${r.hr1.toFixed(3)} | ${r.ndcg5.toFixed(3)} |` +
        cols.slice(2).map(() => " – |").join(""),
    );
  }
  lines.push("", "## Best-of-N rewards (SFT LM samples, preference users)", "");
  lines.push("| seed | N | best | worst | single sample | distinct texts | RM pairs |");
  lines.push("|---|---|---|---|---|---|---|");
  for (const s of result.per_seed) {
    for (const x of s.sampling) {
      lines.push(
        `| ${s.seed} | ${x.n} | ${x.best_reward.toFixed(3)} | ${x.worst_reward.toFixed(3)} | ` +
          `${x.single_reward.toFixed(3)} | ${x.distinct.toFixed(2)} | ${x.pairs} |`,
      );
    }
  }
  lines.push(
    "",
    `History-count target summaries' mean reward: ${
      result.per_seed.map((s) => s.target_reward.toFixed(3)).join(", ")
    }.`,
  );
  const heads = result.per_seed.filter((s) => s.headroom);
  if (heads.length) {
    lines.push("", "## Headroom of the channel (checked before the LM arms)", "");
    lines.push("| seed | SASRec window | SASRec | SASRec+oracle taste | gap | needed | ok |");
    lines.push("|---|---|---|---|---|---|---|");
    for (const s of heads) {
      const h = s.headroom!;
      lines.push(
        `| ${s.seed} | ${h.window} | ${h.sasrec.toFixed(3)} | ${h.oracle_taste.toFixed(3)} | ` +
          `${h.gap >= 0 ? "+" : ""}${h.gap.toFixed(3)} | ${h.min} | ${h.ok ? "yes" : "**no**"} |`,
      );
    }
  }
  const diags = result.per_seed.filter((s) => s.reward_diagnostics?.length);
  if (diags.length) {
    lines.push(
      "",
      "## Reward model: does it tell samples apart? (preference users, N samples)",
      "",
      "Best − worst reward of each prompt's samples (prompts whose samples name at least two " +
        "genre sets), and how often the best one has the higher true genre precision (0.5 = " +
        "the reward model picks at random); M = held-out items per user, exact = the " +
        "expectation under the true next-item law.",
      "",
      "| seed | τ | M | distinct of N | prompts with a choice | best − worst | agree | mean reward |",
      "|---|---|---|---|---|---|---|---|",
    );
    for (const s of diags) {
      for (const r of s.reward_diagnostics!) {
        lines.push(
          `| ${s.seed} | ${r.temperature} | ${r.items} | ${r.distinct.toFixed(2)} of ${r.n} | ` +
            `${r.prompts_with_choice} | ${r.best_minus_worst.toFixed(3)} | ` +
            `${r.agree.toFixed(3)} | ${r.mean_reward.toFixed(3)} |`,
        );
      }
    }
  }
  lines.push("", ...NOTES.map((n) => `- ${n}`), "");
  return lines.join("\n");
}

function jsonSafe(x: unknown): unknown {
  return JSON.parse(
    JSON.stringify(x, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v)),
  );
}

/** Summary fields of metrics.json. */
export const DPO4REC_FIELDS = [
  "hr1",
  "ndcg5",
  "summary_valid",
  "genre_precision",
  "top1_acc",
  "target_match",
  "pref_reward",
];

/**
 * Write `metrics.json` (summary, claims, the full result, plus `extra` fields such as backend
 * and git head), `table.md`, `findings.json` + `findings.md`, `hr1.svg` and `reward_vs_n.svg`
 * to `outDir`.
 *
 * @returns The claims.
 */
export async function writeDpo4recResults(
  result: Dpo4recResult,
  outDir: string,
  extra: Record<string, unknown> = {},
): Promise<Dpo4recClaim[]> {
  await ensureDir(outDir);
  const findings = dpo4recFindings(result);
  const claims = dpo4recClaimsOf(findings);
  const metrics = {
    paper: "dpo4rec",
    dataset: "synthetic",
    ...extra,
    scale: result.scale.name,
    scale_preset: result.scale,
    seeds: result.seeds,
    seconds: result.seconds,
    timings: seedTimings(result.per_seed),
    summary: summarize(
      result.per_seed as unknown as { methods: Record<string, Record<string, unknown>> }[],
      DPO4REC_FIELDS,
    ),
    claims,
    findings_text: { title: "DPO4Rec (synthetic world)", notes: NOTES, ablation_note: "" },
    result,
  };
  await writeJsonAtomic(`${outDir}/metrics.json`, jsonSafe(metrics));
  await writeFileAtomic(`${outDir}/table.md`, dpo4recTable(result));
  // findings.json (the claims with MDE) and findings.md rendered from it.
  await writeFindings(outDir, metrics.findings_text.title, findings, NOTES);
  // HR@1 per method (95 % interval over the test rows) and reward of best / worst of N.
  await writeFigures(outDir, dpo4recFigures(result));
  return claims;
}
