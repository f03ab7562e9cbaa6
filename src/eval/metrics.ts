/**
 * Evaluation metrics on plain arrays: ranking metrics (HR@k, NDCG@k, rank of the positive),
 * the S-DPO generation protocol (validity, HR@1 with S-DPO's and LLaRA's denominators,
 * ValidRatio; the data-format notes (FORMATS.md) §1.5), DMPO's AUC as the released notebook
 * computes it and two cleaner variants (§2.5), and bootstrap statistics.
 *
 * **Ties.** Score-based ranking metrics break ties uniformly at random and return the
 * *expected* value, computed exactly: a positive with `b` strictly better and `t` tied
 * candidates sits at rank `b + 1 … b + t + 1` with equal probability. A constant scorer
 * therefore gets HR@1 = 1/N, not 0 or 1.
 *
 * @module
 */
import { InputError } from "../errors.ts";
import { Rng } from "../rng.ts";

// ---------------------------------------------------------------------------------------
// Ranking metrics

/**
 * What ranking metrics take, one row per sample: either `scores` (row i scores its
 * candidates; `positives[i]` is the positive's *index* in the row) or `rankings` (row i lists
 * candidate ids best first, possibly truncated; `positives[i]` is the positive's *id*, a miss
 * if absent).
 */
export type RankingInput =
  | { scores: readonly (readonly number[])[] }
  | { rankings: readonly (readonly number[])[] };

/** Strictly-better and tied counts of the positive in one row. */
interface Position {
  better: number;
  ties: number;
}

function scorePosition(scores: readonly number[], positive: number, row: number): Position {
  if (!Number.isInteger(positive) || positive < 0 || positive >= scores.length) {
    throw new InputError(
      "positives",
      `row ${row + 1}: expected an index in [0, ${scores.length}), got ${positive}`,
    );
  }
  const sp = scores[positive];
  let better = 0, ties = 0;
  for (let j = 0; j < scores.length; j++) {
    const s = scores[j];
    if (Number.isNaN(s)) throw new InputError("scores", `row ${row + 1}, column ${j + 1}: NaN`);
    if (j === positive) continue;
    if (s > sp) better++;
    else if (s === sp) ties++;
  }
  return { better, ties };
}

function positions(input: RankingInput, positives: readonly number[]): Position[] {
  const rows = "scores" in input ? input.scores : input.rankings;
  if (rows.length !== positives.length) {
    throw new InputError(
      "positives",
      `expected one per row (${rows.length} rows), got ${positives.length}`,
    );
  }
  if (rows.length === 0) throw new InputError("positives", "expected at least one row, got 0");
  if ("scores" in input) return rows.map((r, i) => scorePosition(r, positives[i], i));
  return rows.map((r, i) => {
    const at = r.indexOf(positives[i]);
    return { better: at < 0 ? Infinity : at, ties: 0 };
  });
}

function checkK(k: number): void {
  if (!Number.isInteger(k) || k < 1) {
    throw new InputError("k", `expected an integer >= 1, got ${k}`);
  }
}

function hitOf(p: Position, k: number): number {
  return Math.min(Math.max(k - p.better, 0), p.ties + 1) / (p.ties + 1);
}

function ndcgOf(p: Position, k: number): number {
  let s = 0;
  for (let r = p.better + 1; r <= Math.min(k, p.better + p.ties + 1); r++) {
    s += 1 / Math.log2(r + 1);
  }
  return s / (p.ties + 1);
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * Expected 1-based rank of the positive among scored candidates (higher score = better),
 * ties broken uniformly at random: `1 + #better + #tied / 2`.
 *
 * @example Usage
 * ```ts
 * import { rankOfPositive } from "./metrics.ts";
 * console.assert(rankOfPositive([0.1, 0.9, 0.5], 2) === 2);
 * console.assert(rankOfPositive([1, 1, 1], 0) === 2);
 * ```
 * @param scores One score per candidate.
 * @param positive Index of the positive.
 * @returns The (expected) rank.
 */
export function rankOfPositive(scores: readonly number[], positive: number): number {
  const p = scorePosition(scores, positive, 0);
  return 1 + p.better + p.ties / 2;
}

/**
 * Per-row hit@k (1 if the positive is in the top k; expected value under random tie-breaking).
 *
 * @param input Scores or rankings, one row per sample.
 * @param positives The positive of each row (index for scores, id for rankings).
 * @param k Cut-off, >= 1.
 * @returns One value in [0, 1] per row (for paired bootstraps).
 */
export function hitsAtK(input: RankingInput, positives: readonly number[], k: number): number[] {
  checkK(k);
  return positions(input, positives).map((p) => hitOf(p, k));
}

/**
 * HR@k: the mean of {@link hitsAtK}.
 *
 * @example Usage
 * ```ts
 * import { hitRateAtK } from "./metrics.ts";
 * console.assert(hitRateAtK({ scores: [[0.2, 0.8], [0.9, 0.1]] }, [1, 1], 1) === 0.5);
 * console.assert(hitRateAtK({ rankings: [[7, 3, 5]] }, [3], 2) === 1);
 * ```
 * @param input Scores or rankings, one row per sample.
 * @param positives The positive of each row (index for scores, id for rankings).
 * @param k Cut-off, >= 1.
 * @returns HR@k in [0, 1].
 */
export function hitRateAtK(input: RankingInput, positives: readonly number[], k: number): number {
  return mean(hitsAtK(input, positives, k));
}

/**
 * Per-row NDCG@k with one relevant item: `1 / log2(rank + 1)` if rank ≤ k, else 0
 * (expected value under random tie-breaking).
 *
 * @param input Scores or rankings, one row per sample.
 * @param positives The positive of each row.
 * @param k Cut-off, >= 1.
 * @returns One value in [0, 1] per row.
 */
export function ndcgsAtK(input: RankingInput, positives: readonly number[], k: number): number[] {
  checkK(k);
  return positions(input, positives).map((p) => ndcgOf(p, k));
}

/**
 * NDCG@k: the mean of {@link ndcgsAtK}.
 *
 * @example Usage
 * ```ts
 * import { ndcgAtK } from "./metrics.ts";
 * // positive ranked 3rd: 1 / log2(4) = 0.5
 * console.assert(ndcgAtK({ scores: [[0.9, 0.8, 0.7]] }, [2], 5) === 0.5);
 * ```
 * @param input Scores or rankings, one row per sample.
 * @param positives The positive of each row.
 * @param k Cut-off, >= 1.
 * @returns NDCG@k in [0, 1].
 */
export function ndcgAtK(input: RankingInput, positives: readonly number[], k: number): number {
  return mean(ndcgsAtK(input, positives, k));
}

// ---------------------------------------------------------------------------------------
// S-DPO generation protocol

/** Verdict on one generated answer. */
export interface SdpoVerdict {
  /** Exactly one candidate name occurs (as a substring) in the generated text. */
  valid: boolean;
  /** Valid and the answer occurs in it. */
  hit: boolean;
}

/**
 * S-DPO's validity rule, verbatim: count the candidates (list entries) that occur as plain
 * substrings of the generated text; valid iff that count is 1; hit iff valid and the answer
 * occurs. The substring pitfall is kept on purpose: a correct `Rebecca Black` also contains
 * candidate `Black`, so it is invalid.
 *
 * @example Usage
 * ```ts
 * import { sdpoValidity } from "./metrics.ts";
 * const v = sdpoValidity(" Rebecca Black", ["Rebecca Black", "Black", "Tinariwen"], "Rebecca Black");
 * console.assert(!v.valid && !v.hit);
 * ```
 * @param generated The generated part of the output (see {@link sdpoGeneratedPart}).
 * @param candidates The row's candidate names.
 * @param answer The true answer.
 * @returns Validity and hit.
 */
export function sdpoValidity(
  generated: string,
  candidates: readonly string[],
  answer: string,
): SdpoVerdict {
  let count = 0;
  for (const c of candidates) if (generated.includes(c)) count++;
  const valid = count === 1;
  return { valid, hit: valid && generated.includes(answer) };
}

/**
 * The generated part as S-DPO's evaluation extracts it: the decoded full sequence (special
 * tokens skipped), stripped of surrounding whitespace, minus its first `prompt.length`
 * characters.
 *
 * @example Usage
 * ```ts
 * import { sdpoGeneratedPart } from "./metrics.ts";
 * console.assert(sdpoGeneratedPart("Q? Answer: ghost3 night ", "Q? Answer:") === " ghost3 night");
 * ```
 * @param decodedFull Decoded prompt + output.
 * @param prompt The evaluation prompt (ending `Answer:`).
 * @returns The generated part.
 */
export function sdpoGeneratedPart(decodedFull: string, prompt: string): string {
  return decodedFull.trim().slice(prompt.length);
}

/** Aggregate of S-DPO generation verdicts. */
export interface SdpoGenerationMetrics {
  /** Rows. */
  n: number;
  /** Valid rows. */
  valid: number;
  /** Hits. */
  hits: number;
  /** HR@1 = hits / n (S-DPO's denominator: invalid rows count as misses). */
  hr1_all: number;
  /** HR@1 = hits / valid (LLaRA's denominator); NaN when no row is valid. */
  hr1_valid: number;
  /** ValidRatio = valid / n. */
  valid_ratio: number;
}

/**
 * HR@1 (both denominators) and ValidRatio over rows of {@link sdpoValidity} verdicts.
 *
 * @example Usage
 * ```ts
 * import { sdpoGenerationMetrics } from "./metrics.ts";
 * const m = sdpoGenerationMetrics([
 *   { valid: true, hit: true },
 *   { valid: true, hit: false },
 *   { valid: false, hit: false },
 *   { valid: false, hit: false },
 * ]);
 * console.assert(m.hr1_all === 0.25 && m.hr1_valid === 0.5 && m.valid_ratio === 0.5);
 * ```
 * @param rows One verdict per test row.
 * @returns The counts and ratios.
 */
export function sdpoGenerationMetrics(rows: readonly SdpoVerdict[]): SdpoGenerationMetrics {
  if (rows.length === 0) throw new InputError("rows", "expected at least one row, got 0");
  let valid = 0, hits = 0;
  rows.forEach((r, i) => {
    if (r.hit && !r.valid) {
      throw new InputError("rows", `row ${i + 1}: a hit must be valid`);
    }
    if (r.valid) valid++;
    if (r.hit) hits++;
  });
  const n = rows.length;
  return {
    n,
    valid,
    hits,
    hr1_all: hits / n,
    hr1_valid: valid > 0 ? hits / valid : NaN,
    valid_ratio: valid / n,
  };
}

// ---------------------------------------------------------------------------------------
// AUC

function checkScores(name: string, xs: readonly number[]): void {
  xs.forEach((x, i) => {
    if (Number.isNaN(x)) throw new InputError(name, `element ${i + 1} is NaN`);
  });
}

function checkPairs(chosen: readonly number[], rejected: readonly number[]): void {
  if (chosen.length !== rejected.length) {
    throw new InputError(
      "rejected",
      `expected as many as chosen (${chosen.length}), got ${rejected.length}`,
    );
  }
  if (chosen.length === 0) throw new InputError("chosen", "expected at least one pair, got 0");
  checkScores("chosen", chosen);
  checkScores("rejected", rejected);
}

/**
 * ROC AUC of `scores` for binary `labels` (Mann–Whitney U with average ranks for ties, as
 * `sklearn.metrics.roc_auc_score`): the probability that a random positive outscores a random
 * negative, ties counting 1/2.
 *
 * @example Usage
 * ```ts
 * import { rocAuc } from "./metrics.ts";
 * console.assert(rocAuc([1, 0, 1, 0], [0.9, 0.1, 0.4, 0.4]) === 0.875);
 * ```
 * @param labels 1/true = positive, 0/false = negative.
 * @param scores One score per label.
 * @returns AUC in [0, 1].
 * @throws {InputError} When only one class is present (sklearn raises too).
 */
export function rocAuc(labels: readonly (number | boolean)[], scores: readonly number[]): number {
  if (labels.length !== scores.length) {
    throw new InputError(
      "scores",
      `expected ${labels.length} (one per label), got ${scores.length}`,
    );
  }
  checkScores("scores", scores);
  const y = labels.map((l, i) => {
    if (l === 1 || l === true) return 1;
    if (l === 0 || l === false) return 0;
    throw new InputError("labels", `element ${i + 1}: expected 0/1 or a boolean, got ${l}`);
  });
  const nPos = y.reduce<number>((a, b) => a + b, 0), nNeg = y.length - nPos;
  if (nPos === 0 || nNeg === 0) {
    throw new InputError(
      "labels",
      `ROC AUC needs both classes, got ${nPos} positive and ${nNeg} negative`,
    );
  }
  const order = scores.map((_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let rankSumPos = 0;
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && scores[order[j + 1]] === scores[order[i]]) j++;
    const avgRank = (i + j) / 2 + 1; // 1-based average rank of the tie group
    for (let m = i; m <= j; m++) if (y[order[m]] === 1) rankSumPos += avgRank;
    i = j + 1;
  }
  return (rankSumPos - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

/**
 * DMPO's AUC as its released notebook (`auc.ipynb`) computes it: for each pair in order, one
 * coin flip `u` from a seeded generator (ours, {@link Rng}, not CPython's); `u < 0.5` records
 * label 1 with the chosen score, otherwise label 0 with the rejected score; then
 * {@link rocAuc}. Each pair contributes one score, so chosen scores of some pairs are
 * compared with rejected scores of *other* pairs.
 *
 * @example Usage
 * ```ts
 * import { aucReleased } from "./metrics.ts";
 * const chosen = Array.from({ length: 20 }, (_, i) => -1 - i / 100);
 * const rejected = Array.from({ length: 20 }, (_, i) => -5 - i / 100);
 * console.assert(aucReleased(chosen, rejected) === 1);
 * ```
 * @param chosen Score (summed log-prob) of the correct ranking, per pair.
 * @param rejected Score of the reversed ranking, per pair.
 * @param seed Seed of the coin flips (the notebook's is 42).
 * @returns AUC in [0, 1].
 * @throws {InputError} When all coin flips land on the same side (only one class).
 */
export function aucReleased(
  chosen: readonly number[],
  rejected: readonly number[],
  seed = 42,
): number {
  checkPairs(chosen, rejected);
  const rng = new Rng(seed);
  const labels: number[] = [], scores: number[] = [];
  for (let i = 0; i < chosen.length; i++) {
    if (rng.next() < 0.5) {
      labels.push(1);
      scores.push(chosen[i]);
    } else {
      labels.push(0);
      scores.push(rejected[i]);
    }
  }
  return rocAuc(labels, scores);
}

/**
 * Paired AUC (pairwise accuracy): the fraction of pairs whose chosen score beats the
 * rejected one, ties counting 1/2.
 *
 * @example Usage
 * ```ts
 * import { aucPaired } from "./metrics.ts";
 * console.assert(aucPaired([2, 1, 3], [1, 1, 4]) === 0.5);
 * ```
 * @param chosen Score of the correct side, per pair.
 * @param rejected Score of the wrong side, per pair.
 * @returns Value in [0, 1].
 */
export function aucPaired(chosen: readonly number[], rejected: readonly number[]): number {
  checkPairs(chosen, rejected);
  let s = 0;
  for (let i = 0; i < chosen.length; i++) {
    s += chosen[i] > rejected[i] ? 1 : chosen[i] === rejected[i] ? 0.5 : 0;
  }
  return s / chosen.length;
}

// ---------------------------------------------------------------------------------------
// Statistics

/** Mean with a confidence interval. */
export interface ConfidenceInterval {
  /** The sample mean (of the values, or of the differences). */
  mean: number;
  /** Lower bound. */
  lo: number;
  /** Upper bound. */
  hi: number;
}

/** Options of {@link bootstrapCI} and {@link pairedBootstrapCI}. */
export interface BootstrapOptions {
  /** Bootstrap resamples (default 2000). */
  iters?: number;
  /** 1 − coverage; the interval is the [α/2, 1 − α/2] percentile range (default 0.05). */
  alpha?: number;
  /** Random source (default `new Rng(0)`). */
  rng?: Rng;
}

/** Quantile of sorted values with linear interpolation (numpy's default). */
function quantileSorted(sorted: readonly number[], q: number): number {
  const pos = q * (sorted.length - 1);
  const i = Math.floor(pos), f = pos - i;
  return i + 1 < sorted.length ? sorted[i] * (1 - f) + sorted[i + 1] * f : sorted[i];
}

/**
 * Percentile-bootstrap confidence interval of the mean: resample the values with
 * replacement `iters` times and take the α/2 and 1 − α/2 quantiles of the resampled means.
 *
 * @example Usage
 * ```ts
 * import { bootstrapCI } from "./metrics.ts";
 * const ci = bootstrapCI([0, 1, 1, 0, 1, 1, 1, 0]);
 * console.assert(ci.lo <= ci.mean && ci.mean <= ci.hi);
 * ```
 * @param values Per-sample values (e.g. {@link hitsAtK}).
 * @param options Resamples, α, rng.
 * @returns Mean and interval.
 */
export function bootstrapCI(
  values: readonly number[],
  options: BootstrapOptions = {},
): ConfidenceInterval {
  const iters = options.iters ?? 2000, alpha = options.alpha ?? 0.05;
  if (values.length === 0) throw new InputError("values", "expected at least one value, got 0");
  checkScores("values", values);
  if (!Number.isInteger(iters) || iters < 1) {
    throw new InputError("iters", `expected an integer >= 1, got ${iters}`);
  }
  if (!(alpha > 0 && alpha < 1)) throw new InputError("alpha", `expected (0, 1), got ${alpha}`);
  const rng = options.rng ?? new Rng(0);
  const n = values.length;
  const means = new Array<number>(iters);
  for (let b = 0; b < iters; b++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += values[rng.int(n)];
    means[b] = s / n;
  }
  means.sort((a, b) => a - b);
  return {
    mean: mean(values),
    lo: quantileSorted(means, alpha / 2),
    hi: quantileSorted(means, 1 - alpha / 2),
  };
}

/**
 * Paired bootstrap interval of `mean(a − b)`: rows are resampled jointly, so per-row
 * correlation between the two methods (same test set) is kept.
 *
 * @example Usage
 * ```ts
 * import { pairedBootstrapCI } from "./metrics.ts";
 * const ci = pairedBootstrapCI([1, 1, 0, 1], [0, 1, 0, 0]);
 * console.assert(ci.mean === 0.5 && ci.lo <= 0.5 && ci.hi >= 0.5);
 * ```
 * @param a Per-row values of method A.
 * @param b Per-row values of method B, same rows.
 * @param options Resamples, α, rng.
 * @returns Mean difference and interval.
 */
export function pairedBootstrapCI(
  a: readonly number[],
  b: readonly number[],
  options: BootstrapOptions = {},
): ConfidenceInterval {
  if (a.length !== b.length) {
    throw new InputError("b", `expected as many values as a (${a.length}), got ${b.length}`);
  }
  return bootstrapCI(a.map((x, i) => x - b[i]), options);
}

/** Mean and sample standard deviation. */
export interface MeanStd {
  /** Mean. */
  mean: number;
  /** Sample standard deviation (n − 1 denominator); NaN for a single value. */
  std: number;
  /** Number of values. */
  n: number;
}

/**
 * Mean and sample standard deviation (n − 1), as tables report over seeds.
 *
 * @example Usage
 * ```ts
 * import { meanStd } from "./metrics.ts";
 * const { mean, std } = meanStd([1, 2, 3]);
 * console.assert(mean === 2 && std === 1);
 * ```
 * @param values At least one value.
 * @returns Mean, std, n.
 */
export function meanStd(values: readonly number[]): MeanStd {
  if (values.length === 0) throw new InputError("values", "expected at least one value, got 0");
  checkScores("values", values);
  const m = mean(values);
  const n = values.length;
  const ss = values.reduce((s, x) => s + (x - m) ** 2, 0);
  return { mean: m, std: n > 1 ? Math.sqrt(ss / (n - 1)) : NaN, n };
}

/** A {@link clusteredBootstrapCI} interval: mean, percentile bounds, and the bootstrap SE. */
export interface ClusteredInterval extends ConfidenceInterval {
  /** Standard deviation of the bootstrap replicates (the bootstrap SE of the mean). */
  se: number;
  /** Units (independently trained models or model pairs) in the data. */
  units: number;
  /** Distinct clusters (test prompts or users) in the data. */
  clusters: number;
  /** Whether units were resampled (two levels) or held fixed (clusters only). */
  resampledUnits: boolean;
}

/** Options of {@link clusteredBootstrapCI}. */
export interface ClusteredBootstrapOptions extends BootstrapOptions {
  /**
   * Resample the units too (two levels: units, then clusters; default: when there are 2 or
   * more units). With `false` the units are held fixed and only the clusters are resampled.
   */
  resampleUnits?: boolean;
}

/**
 * Bootstrap interval of a pooled mean over a crossed design: `values[u][r]` is row r of unit
 * u (a unit is one independently trained model, or pair of models, e.g. a seed), and
 * `clusters[r]` names the cluster of row r (a test prompt, or the test user whose prompts
 * they are); every unit is scored on the same rows in the same order.
 *
 * One replicate draws `U` units with replacement (when units are resampled), then `C`
 * clusters with replacement — one draw of clusters shared by every drawn unit, so the rows of
 * one cluster move together across units — and takes the mean of every drawn unit's rows of
 * every drawn cluster (a cluster drawn twice counts twice; all rows of a cluster go with it).
 * This is the "pigeonhole" bootstrap of a crossed design (Owen 2007); its variance is
 * `v/(UC) + (C−1)·v_u/(UC) + (U−1)·v_c/(UC)` for equal cluster sizes (`v`: variance of the
 * cell means, `v_u`: of the unit means, `v_c`: of the cluster means), slightly conservative
 * (it counts the cell noise up to three times). With one unit it is the plain cluster
 * bootstrap. Random draws: per replicate, the units first (`rng.int(U)` × U), then the
 * clusters (`rng.int(C)` × C).
 *
 * @example Usage
 * ```ts
 * import { clusteredBootstrapCI } from "./metrics.ts";
 * // Two seeds × 4 rows; rows 0-1 and 2-3 are two prompts of one user each.
 * const ci = clusteredBootstrapCI([[1, 0, 1, 1], [1, 1, 0, 1]], ["u1", "u1", "u2", "u2"]);
 * console.assert(ci.mean === 0.75 && ci.lo <= 0.75 && ci.hi >= 0.75 && ci.clusters === 2);
 * ```
 * @param values Per unit, per row values (e.g. per-row differences A − B); equal lengths.
 * @param clusters Cluster id of each row (same length as each unit's rows).
 * @param options Resamples, α, rng, whether units are resampled.
 * @returns Mean of all rows, percentile interval, bootstrap SE.
 */
export function clusteredBootstrapCI(
  values: readonly (readonly number[])[],
  clusters: readonly (string | number)[],
  options: ClusteredBootstrapOptions = {},
): ClusteredInterval {
  const iters = options.iters ?? 2000, alpha = options.alpha ?? 0.05;
  const U = values.length;
  if (U === 0) throw new InputError("values", "expected at least one unit, got 0");
  const n = clusters.length;
  if (n === 0) throw new InputError("clusters", "expected at least one row, got 0");
  values.forEach((v, u) => {
    if (v.length !== n) {
      throw new InputError(
        "values",
        `unit ${u + 1} has ${v.length} rows, expected ${n} (one per cluster id)`,
      );
    }
    checkScores("values", v);
  });
  if (!Number.isInteger(iters) || iters < 2) {
    throw new InputError("iters", `expected an integer >= 2, got ${iters}`);
  }
  if (!(alpha > 0 && alpha < 1)) throw new InputError("alpha", `expected (0, 1), got ${alpha}`);
  const rng = options.rng ?? new Rng(0);
  const resampleUnits = options.resampleUnits ?? U > 1;
  // Cluster index of each row; per unit and cluster the row sum; per cluster the row count.
  const index = new Map<string | number, number>();
  const cOf = clusters.map((c) => {
    let i = index.get(c);
    if (i === undefined) index.set(c, i = index.size);
    return i;
  });
  const C = index.size;
  const count = new Float64Array(C);
  for (const c of cOf) count[c]++;
  const sums = values.map((v) => {
    const s = new Float64Array(C);
    v.forEach((x, r) => (s[cOf[r]] += x));
    return s;
  });
  let total = 0;
  for (const s of sums) for (const x of s) total += x;
  const reps = new Array<number>(iters);
  const colSum = new Float64Array(C);
  const picked = new Array<number>(U);
  for (let b = 0; b < iters; b++) {
    for (let i = 0; i < U; i++) picked[i] = resampleUnits ? rng.int(U) : i;
    colSum.fill(0);
    for (const u of picked) {
      const s = sums[u];
      for (let c = 0; c < C; c++) colSum[c] += s[c];
    }
    let num = 0, den = 0;
    for (let j = 0; j < C; j++) {
      const c = rng.int(C);
      num += colSum[c];
      den += count[c];
    }
    reps[b] = num / (den * U);
  }
  const m = reps.reduce((a, x) => a + x, 0) / iters;
  const se = Math.sqrt(reps.reduce((a, x) => a + (x - m) ** 2, 0) / (iters - 1));
  reps.sort((a, b) => a - b);
  return {
    mean: total / (n * U),
    lo: quantileSorted(reps, alpha / 2),
    hi: quantileSorted(reps, 1 - alpha / 2),
    se,
    units: U,
    clusters: C,
    resampledUnits: resampleUnits,
  };
}

/** Variance components of a crossed (unit × cluster) design, from {@link varianceComponents}. */
export interface VarianceComponents {
  /** Between-unit (seed) variance of the cell means. */
  unit: number;
  /** Between-cluster (prompt or user) variance of the cell means. */
  cluster: number;
  /** Interaction + residual variance of the cell means. */
  residual: number;
  /** Units. */
  units: number;
  /** Clusters. */
  clusters: number;
}

/**
 * Method-of-moments variance components of a crossed design (two-way random-effects ANOVA on
 * the cell means `y[u][c]` = mean of unit u's rows of cluster c; components floored at 0):
 * `y = μ + a_u + b_c + e_uc`. With them the standard error of the grand mean for U units and
 * C clusters is `√(unit/U + cluster/C + residual/(UC))` ({@link projectedSe}), which plans a
 * design before it runs; the pigeonhole bootstrap of {@link clusteredBootstrapCI} counts the
 * residual about three times (`pigeonhole: true`).
 *
 * @param values Per unit, per row values (equal lengths).
 * @param clusters Cluster id of each row.
 * @returns The components, units and clusters.
 */
export function varianceComponents(
  values: readonly (readonly number[])[],
  clusters: readonly (string | number)[],
): VarianceComponents {
  const U = values.length;
  const ids = [...new Set(clusters)];
  const C = ids.length;
  if (U < 2 || C < 2) {
    throw new InputError("values", `needs at least 2 units and 2 clusters, got ${U} and ${C}`);
  }
  const at = new Map(ids.map((id, i) => [id, i]));
  const y = values.map((v) => {
    if (v.length !== clusters.length) {
      throw new InputError("values", `expected ${clusters.length} rows per unit, got ${v.length}`);
    }
    const s = new Array<number>(C).fill(0), n = new Array<number>(C).fill(0);
    v.forEach((x, r) => {
      const c = at.get(clusters[r])!;
      s[c] += x;
      n[c]++;
    });
    return s.map((x, c) => x / n[c]);
  });
  const gm = y.flat().reduce((a, b) => a + b, 0) / (U * C);
  const rowM = y.map((r) => r.reduce((a, b) => a + b, 0) / C);
  const colM = ids.map((_, c) => y.reduce((a, r) => a + r[c], 0) / U);
  const msU = (C * rowM.reduce((a, x) => a + (x - gm) ** 2, 0)) / (U - 1);
  const msC = (U * colM.reduce((a, x) => a + (x - gm) ** 2, 0)) / (C - 1);
  let sse = 0;
  for (let u = 0; u < U; u++) {
    for (let c = 0; c < C; c++) sse += (y[u][c] - rowM[u] - colM[c] + gm) ** 2;
  }
  const msE = sse / ((U - 1) * (C - 1));
  return {
    unit: Math.max(0, (msU - msE) / C),
    cluster: Math.max(0, (msC - msE) / U),
    residual: msE,
    units: U,
    clusters: C,
  };
}

/**
 * Standard error of the grand mean of a crossed design with `units` units and `clusters`
 * clusters, from {@link varianceComponents}: `√(unit/U + cluster/C + residual/(UC))`, or with
 * `pigeonhole` the SE that {@link clusteredBootstrapCI} reports on average for balanced data,
 * `√((E v + (C−1)·E v_u + (U−1)·E v_c) / (UC))` with the expected plug-in variances
 * `E v_u = (U−1)/U·(unit + residual/C)`, `E v_c = (C−1)/C·(cluster + residual/U)`,
 * `E v = (U−1)/U·unit + (C−1)/C·cluster + (U−1)(C−1)/(UC)·residual` (about
 * `unit/U + cluster/C + 3·residual/(UC)`); with one unit only the clusters are resampled.
 */
export function projectedSe(
  vc: Pick<VarianceComponents, "unit" | "cluster" | "residual">,
  units: number,
  clusters: number,
  pigeonhole = false,
): number {
  const U = units, C = clusters;
  if (!pigeonhole) return Math.sqrt(vc.unit / U + vc.cluster / C + vc.residual / (U * C));
  const ec = ((C - 1) / C) * (vc.cluster + vc.residual / U);
  if (U === 1) return Math.sqrt(ec / C);
  const eu = ((U - 1) / U) * (vc.unit + vc.residual / C);
  const ev = ((U - 1) / U) * vc.unit + ((C - 1) / C) * vc.cluster +
    (((U - 1) * (C - 1)) / (U * C)) * vc.residual;
  return Math.sqrt((ev + (C - 1) * eu + (U - 1) * ec) / (U * C));
}
