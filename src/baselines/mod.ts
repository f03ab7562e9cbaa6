/**
 * Classic sequential recommenders, the non-LM rows of the S-DPO and DMPO tables: popularity,
 * GRU4Rec, Caser and SASRec behind one {@link SequentialRecommender} interface, trained on the
 * synthetic world's training users ({@link trainingExamples}) and evaluated with the LMs'
 * 20-candidate protocol ({@link evaluateOnSamples}: HR@1 and NDCG@5 of candidate scores).
 *
 * @module
 */
import { ensureBackend } from "../backend.ts";
import type { SdpoSample, Split, World } from "../data/world.ts";
import { sdpoSamples } from "../data/world.ts";
import { ConfigError, InputError } from "../errors.ts";
import { hitRateAtK, ndcgAtK } from "../eval/metrics.ts";
import type { FitOptions, SequentialRecommender, TrainExample } from "./_common.ts";
import { Caser, type CaserConfig } from "./caser.ts";
import { Gru4rec, type Gru4recConfig } from "./gru4rec.ts";
import { Popularity } from "./popularity.ts";
import { Sasrec, type SasrecConfig } from "./sasrec.ts";

export type { FitOptions, SequentialRecommender, TrainExample } from "./_common.ts";
export { Caser, type CaserConfig, DEFAULT_CASER_CONFIG } from "./caser.ts";
export { DEFAULT_GRU4REC_CONFIG, Gru4rec, type Gru4recConfig } from "./gru4rec.ts";
export { Popularity, type PopularityConfig } from "./popularity.ts";
export { DEFAULT_SASREC_CONFIG, encodeHistory, Sasrec, type SasrecConfig } from "./sasrec.ts";

/** Options of {@link trainingExamples}. */
export interface TrainingExamplesOptions {
  /** Users whose histories are used (default "train"). */
  split?: Split;
  /** Domain (default 0). */
  domain?: number;
  /**
   * S-DPO targets per user added as (full history → drawn target) examples (default 16, the
   * S-DPO train default, so the baselines see the same targets the LMs are aligned on; 0 =
   * history prefixes only).
   */
  sdpoDraws?: number;
}

/**
 * Training examples from a world: for each user of the split, every prefix (length ≥ 1) of
 * their history in the domain predicting the next item, then `sdpoDraws` examples per user of
 * the full history predicting a target drawn from the true law (the positives of
 * {@link sdpoSamples} with the default seeding, i.e. the LMs' training targets).
 *
 * @example Usage
 * ```ts
 * import { makeWorld } from "../data/world.ts";
 * import { trainingExamples } from "./mod.ts";
 * const w = makeWorld({ numUsers: 20 });
 * const ex = trainingExamples(w, { sdpoDraws: 0 });
 * console.assert(ex.every((e) => e.historyIds.length >= 1));
 * ```
 * @param world The world.
 * @param options Split, domain and S-DPO draws.
 * @returns Examples, users in id order.
 */
export function trainingExamples(
  world: World,
  options: TrainingExamplesOptions = {},
): TrainExample[] {
  const split = options.split ?? "train";
  const domain = options.domain ?? 0;
  const draws = options.sdpoDraws ?? 16;
  if (!Number.isInteger(draws) || draws < 0) {
    throw new ConfigError("sdpoDraws", `expected an integer >= 0, got ${draws}`);
  }
  const out: TrainExample[] = [];
  for (const u of world.splits[split]) {
    const h = world.users[u].histories[domain];
    for (let t = 1; t < h.length; t++) out.push({ historyIds: h.slice(0, t), targetId: h[t] });
  }
  if (draws > 0) {
    for (const s of sdpoSamples(world, split, { domain, drawsPerUser: draws })) {
      if (s.historyIds.length > 0) out.push({ historyIds: s.historyIds, targetId: s.positiveId });
    }
  }
  return out;
}

/** Names of the baselines. */
export type BaselineName = "popularity" | "gru4rec" | "caser" | "sasrec";

/** Per-baseline config overrides (`numItems` is always set from the world). */
export interface BaselineConfigs {
  gru4rec?: Partial<Gru4recConfig>;
  caser?: Partial<CaserConfig>;
  sasrec?: Partial<SasrecConfig>;
}

/** Builders of each baseline for a vocabulary of `numItems` ids. */
export const BASELINES: Readonly<
  Record<BaselineName, (numItems: number, configs: BaselineConfigs) => SequentialRecommender>
> = Object.freeze({
  popularity: (numItems) => new Popularity({ numItems }),
  gru4rec: (numItems, c) => new Gru4rec({ ...c.gru4rec, numItems }),
  caser: (numItems, c) => new Caser({ ...c.caser, numItems }),
  sasrec: (numItems, c) => new Sasrec({ ...c.sasrec, numItems }),
});

/** Options of {@link trainBaseline}. */
export interface TrainBaselineOptions extends TrainingExamplesOptions, FitOptions {
  /** Config overrides per model. */
  configs?: BaselineConfigs;
  /** Examples to train on (default: {@link trainingExamples} of the world). */
  examples?: readonly TrainExample[];
}

/**
 * Build and train one baseline on a world. The vocabulary is all of the world's item ids
 * (≤ 800), so the softmax also pushes other domains' items down.
 *
 * @example Usage
 * ```ts
 * import { initBackend } from "../backend.ts";
 * import { makeWorld, sdpoSamples } from "../data/world.ts";
 * import { evaluateOnSamples, trainBaseline } from "./mod.ts";
 * await initBackend("cpu", { quiet: true });
 * const w = makeWorld({ numUsers: 60, numItems: 40, numDomains: 1 });
 * const rec = await trainBaseline("popularity", w, { quiet: true });
 * console.assert(evaluateOnSamples(rec, sdpoSamples(w, "test")).n > 0);
 * rec.dispose();
 * ```
 * @param name Which baseline.
 * @param world The world (its train users are used).
 * @param opts Examples, configs, epochs, logging.
 * @returns The trained recommender (the caller disposes it).
 */
export async function trainBaseline(
  name: BaselineName,
  world: World,
  opts: TrainBaselineOptions = {},
): Promise<SequentialRecommender> {
  await ensureBackend();
  const build = BASELINES[name];
  if (!build) {
    throw new ConfigError(
      "baseline",
      `unknown baseline "${name}"; allowed: ${Object.keys(BASELINES).join(", ")}`,
    );
  }
  const rec = build(world.items.length, opts.configs ?? {});
  try {
    const examples = opts.examples ?? trainingExamples(world, opts);
    await rec.fit(examples, opts);
  } catch (e) {
    rec.dispose();
    throw e;
  }
  return rec;
}

/** HR@1 and NDCG@5 of a recommender over samples. */
export interface BaselineMetrics {
  /** HR@1 (expected value under random tie-breaking). */
  hr1: number;
  /** NDCG@5. */
  ndcg5: number;
  /** Samples. */
  n: number;
}

/**
 * Score each sample's candidates from its history and compute HR@1 and NDCG@5 with
 * `eval/metrics.ts`, the same protocol as the LMs' candidate ranking.
 *
 * @param rec A trained recommender.
 * @param samples Samples with `historyIds`, `candidateIds`, `positiveIndex`.
 * @returns The metrics.
 * @throws {InputError} On no samples, or (from the model) an empty history / unknown id.
 */
export function evaluateOnSamples(
  rec: SequentialRecommender,
  samples: readonly Pick<SdpoSample, "historyIds" | "candidateIds" | "positiveIndex">[],
): BaselineMetrics {
  if (samples.length === 0) throw new InputError("samples", "expected at least one sample, got 0");
  const scores = rec.scoreBatch(
    samples.map((s) => s.historyIds),
    samples.map((s) => s.candidateIds),
  );
  const pos = samples.map((s) => s.positiveIndex);
  return {
    hr1: hitRateAtK({ scores }, pos, 1),
    ndcg5: ndcgAtK({ scores }, pos, 5),
    n: samples.length,
  };
}
