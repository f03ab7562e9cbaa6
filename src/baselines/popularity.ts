/**
 * The popularity baseline: every candidate scores by how often it was the next item in the
 * training examples (add-one smoothed), whatever the history. With the examples of
 * {@link trainingExamples} (every prefix of every training history, plus the S-DPO train
 * targets), that counts each training-history item but the first once, plus the drawn targets.
 *
 * @module
 */
import { InputError } from "../errors.ts";
import {
  checkExamples,
  checkIds,
  checkInt,
  checkRows,
  type FitOptions,
  type SequentialRecommender,
  type TrainExample,
} from "./_common.ts";

/** Popularity configuration. */
export interface PopularityConfig {
  /** Number of items (ids 0 … numItems − 1). */
  numItems: number;
}

/** Counts next items; scores ignore the history. */
export class Popularity implements SequentialRecommender {
  readonly name = "popularity";
  /** Count + 1 per item id. */
  readonly counts: Float64Array;

  /**
   * @param config The item count.
   * @throws {ConfigError} If `numItems` is not a positive integer.
   */
  constructor(readonly config: PopularityConfig) {
    checkInt("numItems", config.numItems);
    this.counts = new Float64Array(config.numItems).fill(1);
  }

  fit(train: readonly TrainExample[], opts: FitOptions = {}): Promise<{ losses: number[] }> {
    try {
      checkExamples(train, this.config.numItems);
      if (opts.extraFeatures) {
        throw new InputError("extraFeatures", "popularity takes no extra features");
      }
    } catch (e) {
      return Promise.reject(e);
    }
    for (const ex of train) this.counts[ex.targetId]++;
    if (!opts.quiet) console.error(`[popularity] counted ${train.length} next items`);
    return Promise.resolve({ losses: [] });
  }

  scoreCandidates(historyIds: readonly number[], candidateIds: readonly number[]): number[] {
    checkIds(historyIds, this.config.numItems, "historyIds");
    checkIds(candidateIds, this.config.numItems, "candidateIds", false);
    return candidateIds.map((id) => this.counts[id]);
  }

  scoreBatch(
    histories: readonly (readonly number[])[],
    candidates: readonly (readonly number[])[],
  ): number[][] {
    checkRows(histories, candidates, this.config.numItems);
    return candidates.map((row) => row.map((id) => this.counts[id]));
  }

  dispose(): void {}
}
