/**
 * The toy task the train() tests share: prompt [BOS, 3, a] → response [20 + a % 8, EOS], with
 * the 7 wrong answers as the rejected pool; and a copy of a model's trainable weights.
 *
 * @module
 */
import type { LlamaModel } from "../src/model.ts";
import type { TrainExample } from "../src/train.ts";

/** Token ids of the toy task. */
export const BOS = 1, EOS = 2;

/** The 16 toy examples (a = 4 … 19). */
export function toyExamples(): TrainExample[] {
  const out: TrainExample[] = [];
  for (let a = 4; a < 20; a++) {
    const answer = 20 + (a % 8);
    const wrong = [20, 21, 22, 23, 24, 25, 26, 27].filter((x) => x !== answer);
    out.push({ prompt: [BOS, 3, a], chosen: [answer, EOS], rejected: wrong.map((w) => [w, EOS]) });
  }
  return out;
}

/** A copy of the model's trainable weights, in variable order. */
export function snapshot(model: LlamaModel): Float32Array[] {
  return model.trainableVariables().map((v) => v.dataSync().slice() as Float32Array);
}
