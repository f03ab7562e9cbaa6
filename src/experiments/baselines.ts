/**
 * The classic sequential recommenders (popularity, GRU4Rec, Caser, SASRec from
 * `src/baselines`) as rows of the S-DPO and DMPO tables: trained once per (scale, seed) on
 * the world's train users, then scored on the same test prompts as the LMs — the 20
 * candidates of an S-DPO prompt (HR@1, NDCG@5), or the two items of a DMPO pair (AUC).
 *
 * @module
 */
import {
  type BaselineName,
  type SequentialRecommender,
  trainBaseline,
  trainingExamples,
} from "../baselines/mod.ts";
import type { DmpoSample, SdpoSample, World } from "../data/world.ts";
import { aucPaired, aucReleased, hitsAtK, ndcgsAtK } from "../eval/metrics.ts";
import { recordStage, type Scale, since } from "./common.ts";

/** Table names of the baselines, in table order. */
export const BASELINE_ROWS: Record<BaselineName, string> = {
  popularity: "Popularity (trained)",
  gru4rec: "GRU4Rec",
  caser: "Caser",
  sasrec: "SASRec",
};

/** Baseline names, in table order. */
export const BASELINE_NAMES = Object.keys(BASELINE_ROWS) as BaselineName[];

/** The neural baselines' configs of (scale, seed): the seed and the scale's epochs. */
export function baselineConfigs(scale: Scale, seed: number) {
  const c = { seed, epochs: scale.baselineEpochs };
  return { gru4rec: { ...c }, caser: { ...c }, sasrec: { ...c } };
}

const trained = new Map<string, { rec: SequentialRecommender; seconds: number }>();

/** The baselines of (scale, seed), trained once per process (the caller never disposes). */
export async function baselinesFor(
  world: World,
  scale: Scale,
  seed: number,
  progress: boolean,
): Promise<Map<BaselineName, { rec: SequentialRecommender; seconds: number; reused: boolean }>> {
  const out = new Map<
    BaselineName,
    { rec: SequentialRecommender; seconds: number; reused: boolean }
  >();
  let examples: ReturnType<typeof trainingExamples> | undefined;
  for (const name of BASELINE_NAMES) {
    const key = `${scale.name}/${seed}/${name}`;
    const hit = trained.get(key);
    if (hit) {
      out.set(name, { ...hit, reused: true });
      continue;
    }
    examples ??= trainingExamples(world, { sdpoDraws: scale.baselineDraws });
    const t0 = performance.now();
    const rec = await trainBaseline(name, world, {
      examples,
      epochs: scale.baselineEpochs,
      quiet: true,
      configs: baselineConfigs(scale, seed),
    });
    const seconds = since(t0);
    recordStage("baselines", `train/${name}`, seed, seconds);
    if (progress) console.error(`[baselines] seed ${seed}: ${name} trained in ${seconds} s`);
    trained.set(key, { rec, seconds });
    out.set(name, { rec, seconds, reused: false });
  }
  return out;
}

/** Free every trained baseline. */
export function clearBaselines(): void {
  for (const b of trained.values()) b.rec.dispose();
  trained.clear();
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** A baseline's S-DPO row: ranking HR@1 / NDCG@5 over the 20 candidates, per-row hits. */
export function baselineSdpoRow(rec: SequentialRecommender, test: SdpoSample[]) {
  const t0 = performance.now();
  const scores = rec.scoreBatch(test.map((s) => s.historyIds), test.map((s) => s.candidateIds));
  const pos = test.map((s) => s.positiveIndex);
  const hits = hitsAtK({ scores }, pos, 1);
  return {
    hr1_rank: mean(hits),
    ndcg5_rank: mean(ndcgsAtK({ scores }, pos, 5)),
    rank_hits: hits,
    eval_seconds: since(t0),
  };
}

/** A baseline's DMPO row: its scores of the pair's two items → AUC, per-pair correctness. */
export function baselineDmpoRow(
  rec: SequentialRecommender,
  test: readonly Pick<DmpoSample, "historyIds" | "positiveId" | "negativeIds">[],
) {
  const t0 = performance.now();
  const scores = rec.scoreBatch(
    test.map((s) => s.historyIds),
    test.map((s) => [s.positiveId, s.negativeIds[0]]),
  );
  const c = scores.map((x) => x[0]), r = scores.map((x) => x[1]);
  return {
    auc_released: aucReleased(c, r),
    auc_paired: aucPaired(c, r),
    pair_correct: c.map((x, i) => (x > r[i] ? 1 : x === r[i] ? 0.5 : 0)),
    eval_seconds: since(t0),
  };
}
