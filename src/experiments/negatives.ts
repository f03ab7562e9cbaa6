/**
 * Negative samplers as an ablation axis, shared by the experiments:
 *
 * - `popularity`, `uniform`, `same-genre`: the world's samplers ({@link drawNegatives} in
 *   src/data/world.ts, the ones `sdpoSamples` / `dmpoSamples` use);
 * - `model-hard`: model-mined hard negatives — from a uniform pool of candidates, the ones a
 *   model (the SFT model) scores highest ({@link hardestFirst}, the order S-DPO's model-hard
 *   pools use).
 *
 * {@link withExtraNegatives} redraws the extra negatives of DMPO samples with one of them,
 * keeping the item the prompt names, so every sampler trains on the same prompts.
 *
 * @module
 */
import { type DmpoSample, drawNegatives, type World } from "../data/world.ts";
import { Rng } from "../rng.ts";

/** The negative samplers of the ablations, in plot order. */
export const ABLATION_SAMPLERS = ["popularity", "uniform", "same-genre", "model-hard"] as const;

/** One of {@link ABLATION_SAMPLERS}. */
export type AblationSampler = typeof ABLATION_SAMPLERS[number];

/**
 * Indices of `scores` from the highest score down (ties: lower index first): the model-hard
 * order, the negatives the model likes most first.
 */
export function hardestFirst(scores: readonly number[]): number[] {
  return scores.map((_, i) => i).sort((x, y) => scores[y] - scores[x] || x - y);
}

/**
 * The items a DMPO sample's extra negatives may be drawn from: the sample's domain, outside
 * its history, neither the positive nor the negative named in the prompt (`negativeIds[0]`).
 */
export function extraNegativePool(world: World, s: DmpoSample): number[] {
  const excluded = new Set([...s.historyIds, s.positiveId, s.negativeIds[0]]);
  return world.domainItems[s.domain].filter((id) => !excluded.has(id));
}

/** Options of {@link withExtraNegatives}. */
export interface ExtraNegativeOptions {
  /** Seed of the draws. */
  seed: number;
  /** Model-hard: candidates drawn uniformly per sample and scored (default 19). */
  mineFrom?: number;
  /**
   * Model-hard: the model's scores of each sample's candidate items (higher = the model
   * likes it more), one row per sample, in the order of `candidateIds`.
   */
  score?: (samples: DmpoSample[], candidateIds: number[][]) => number[][];
}

/**
 * DMPO samples with `k` extra negatives drawn by `sampler` after the prompt's negative:
 * `negatives[0]` (the item the prompt names) is kept, `negatives[1..k]` are drawn from
 * {@link extraNegativePool} — by the world's sampler, or (model-hard) the `k` of `mineFrom`
 * uniform candidates that `score` ranks highest, hardest first. A sweep over K uses the first
 * K − 1 extras, so model-hard with K = 2 trains on the single hardest one.
 */
export function withExtraNegatives(
  world: World,
  samples: readonly DmpoSample[],
  k: number,
  sampler: AblationSampler,
  opts: ExtraNegativeOptions,
): DmpoSample[] {
  const rng = new Rng(opts.seed);
  let extras: number[][];
  if (sampler === "model-hard") {
    if (!opts.score) throw new Error('withExtraNegatives: "model-hard" needs a score function');
    const m = Math.max(k, opts.mineFrom ?? 19);
    const cands = samples.map((s) => rng.sample(extraNegativePool(world, s), m));
    const scores = opts.score(samples.slice(), cands);
    extras = cands.map((c, i) => hardestFirst(scores[i]).slice(0, k).map((j) => c[j]));
  } else {
    extras = samples.map((s) =>
      drawNegatives(world, rng, extraNegativePool(world, s), k, sampler, s.positiveId, "k")
    );
  }
  return samples.map((s, i) => {
    const negativeIds = [s.negativeIds[0], ...extras[i]];
    return { ...s, negativeIds, negatives: negativeIds.map((id) => world.items[id].title) };
  });
}
