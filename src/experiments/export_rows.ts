/**
 * Preference rows to train with elsewhere (TRL's DPOTrainer, S-DPO's released trainer on a GPU):
 * the S-DPO preference prompts the reproduce arms train on, or a released S-DPO file, as text.
 * `deno task data export-trl` writes them with src/export.ts.
 *
 * - **synthetic** ({@link syntheticPreferenceRows}): the preference prompts of a scale
 *   (`sdpoData(scale).prefExamples`), each with the first K of its fixed rejected pool, in the
 *   order the arms see them. Prompts end with `Answer:`; responses are the item titles with a
 *   leading space, as recalign encodes them (`encodeResponse`: `" " + title` + EOS).
 * - **released** ({@link releasedSdpoRows}): the rows of an S-DPO file; the prompt is the
 *   released training prompt (`sdpoPrompt`, mode "train": a template drawn per row, ending
 *   `Answer: `), the chosen response the true item, K rejected drawn from the row's other
 *   candidates with a seeded RNG.
 *
 * @module
 */
import { InputError } from "../errors.ts";
import type { MultiNegativeRow, PreferencePair } from "../export.ts";
import { readSdpoFile } from "../data/sdpo.ts";
import { sdpoPrompt } from "../data/prompts.ts";
import { worldSdpoPrompt } from "../data/world_text.ts";
import { Rng } from "../rng.ts";
import { encodeResponse, type Scale } from "./common.ts";
import { sdpoData } from "./sdpo.ts";

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * The synthetic world's S-DPO preference prompts of `scale` with `k` rejected titles each (the
 * first k of the prompt's fixed pool).
 *
 * @param scale Scale preset.
 * @param k Rejected responses per prompt (1 … `scale.negPool`).
 * @returns One row per preference prompt.
 * @throws {InputError} When k is outside 1 … the pool size.
 */
export function syntheticPreferenceRows(scale: Scale, k: number): MultiNegativeRow[] {
  const data = sdpoData(scale);
  const { world, tok } = data;
  return data.prefSamples.map((s, i) => {
    const pool = data.prefExamples[i].rejected ?? [];
    if (!Number.isInteger(k) || k < 1 || k > pool.length) {
      throw new InputError(
        "negatives",
        `expected an integer in [1, ${pool.length}] (the rejected pool at scale ${scale.name}), ` +
          `got ${k}`,
      );
    }
    // The pool holds token ids; name each by the candidate title that encodes to them.
    const rejected = pool.slice(0, k).map((ids) => {
      const title = s.negatives.find((n) => sameIds(encodeResponse(tok, n), ids));
      if (title === undefined) throw new Error(`prompt ${i}: a pool entry matches no negative`);
      return " " + title;
    });
    return {
      prompt: worldSdpoPrompt(s, world.domains[s.domain]),
      chosen: " " + s.positive,
      rejected,
    };
  });
}

/**
 * A released S-DPO file's rows with `k` rejected candidates each (drawn with `Rng(seed)`) and
 * the released training prompt (one template drawn per row with the same RNG).
 *
 * @param path The S-DPO `.json` file.
 * @param k Rejected responses per row (1 … 19).
 * @param seed Seed of the template and negative draws.
 * @returns One row per file row.
 * @throws {InputError} When a row has fewer than k negatives.
 */
export async function releasedSdpoRows(
  path: string,
  k: number,
  seed = 0,
): Promise<MultiNegativeRow[]> {
  const samples = await readSdpoFile(path);
  const rng = new Rng(seed);
  return samples.map((s, i) => {
    if (!Number.isInteger(k) || k < 1 || k > s.negatives.length) {
      throw new InputError(
        "negatives",
        `${path}: row ${i + 1} has ${s.negatives.length} negatives, asked for ${k}`,
      );
    }
    const prompt = sdpoPrompt(s, rng, { mode: "train" }).prompt;
    return { prompt, chosen: s.positive, rejected: rng.sample(s.negatives, k) };
  });
}

/** TRL pairs: one (prompt, chosen, rejected) row per rejected response of each row. */
export function toPairs(rows: readonly MultiNegativeRow[]): PreferencePair[] {
  return rows.flatMap((r) =>
    r.rejected.map((rejected) => ({ prompt: r.prompt, chosen: r.chosen, rejected }))
  );
}
