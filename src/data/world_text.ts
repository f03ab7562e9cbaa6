/**
 * Render synthetic-world samples ({@link SdpoSample}, {@link DmpoSample}) as the text the
 * small LM sees, in the papers' template styles with the world's domain wording:
 *
 * - S-DPO: the LastFM template style (the data-format notes (FORMATS.md) §1.2), one fixed
 *   template, names inserted raw and joined with `", "`;
 * - DMPO: the movie-dataset instruction and ranking responses of §2.1, with the domain's
 *   nouns and verbs in place of "movie" and "watch".
 *
 * @module
 */
import type { DmpoSample, DomainInfo, SdpoSample } from "./world.ts";

/**
 * The S-DPO evaluation prompt of a sample, ending with `Answer:` (S-DPO appends one space for
 * training, which the word tokenizer ignores); already in the word tokenizer's normal form (`normalizeText` in `src/tokenizer.ts`):
 *
 * `This person has watched <history> recently. Please predict the next movie this person will
 * watch. Choose the answer from the following 20 movie titles: <candidates>. Answer:`
 *
 * @example Usage
 * ```ts
 * import { worldSdpoPrompt } from "./world_text.ts";
 * import { DOMAINS } from "./world.ts";
 * const p = worldSdpoPrompt({ history: ["a b"], candidates: ["c d", "e f"] }, DOMAINS[1]);
 * console.assert(p === "This person has played a b recently. Please predict the next game " +
 *   "this person will play. Choose the answer from the following 2 game titles: c d, e f. Answer:");
 * ```
 * @param sample History and candidate titles.
 * @param domain Domain wording (`world.domains[sample.domain]`).
 * @returns The prompt.
 */
export function worldSdpoPrompt(
  sample: Pick<SdpoSample, "history" | "candidates">,
  domain: DomainInfo,
): string {
  return `This person has ${domain.past} ${sample.history.join(", ")} recently. ` +
    `Please predict the next ${domain.noun} this person will ${domain.base}. ` +
    `Choose the answer from the following ${sample.candidates.length} ${domain.noun} titles: ` +
    `${sample.candidates.join(", ")}. Answer:`;
}

/**
 * The base LM's copy exercise (not a paper prompt): a user's history as in the S-DPO prompt,
 * then some titles to be given back, all of them, in order; the answer is `titles.join(", ")`.
 * Every answer token is a copy from the list and none from the history, which is what teaches
 * a small LM to name a listed title (src/experiments/base_lm.ts).
 *
 * @param history The user's history titles (the distractors).
 * @param titles The listed titles.
 * @param domain Domain wording.
 * @returns The prompt.
 */
export function worldCopyPrompt(
  history: readonly string[],
  titles: readonly string[],
  domain: DomainInfo,
): string {
  return `This person has ${domain.past} ${history.join(", ")} recently. ` +
    `Repeat the following ${titles.length} ${domain.noun} titles in order: ` +
    `${titles.join(", ")}. Answer:`;
}

/** A DMPO prompt with its responses. */
export interface WorldDmpoText {
  /** The instruction (DMPO §2.1 spacing, byte for byte with the domain words). */
  prompt: string;
  /** The correct ranking `ranking(positive, negatives[0])`: the SFT target. */
  chosen: string;
  /** One wrong ranking per negative: `ranking(negatives[j], positive)`; entry 0 is the
   * released pairwise rejected response, the rest name items outside the prompt. */
  rejected: string[];
}

/** DMPO's `" <Title:" + t + "> "`. */
const tag = (t: string) => " <Title:" + t + "> ";
/** DMPO's `ranking(x, y)`. */
const ranking = (x: string, y: string) => tag(x) + ", " + tag(y);

/**
 * The DMPO prompt and responses of a sample, built exactly as FORMATS.md §2.1 with the
 * domain's words:
 *
 * `"You are an assistant working on movie recommendations. Here is the user's history of
 * movies they have watched: " + Σ " <Title:t> " + ". Rank the likelihood of the user watching
 * the two movies " + " <Title:A> " + " and " + " <Title:B> " + "."`
 *
 * The double spaces are DMPO's; the word tokenizer normalises them away.
 *
 * @example Usage
 * ```ts
 * import { worldDmpoPrompt } from "./world_text.ts";
 * import { DOMAINS } from "./world.ts";
 * const t = worldDmpoPrompt(
 *   { history: ["h1 h2"], pair: ["n1 n2", "p1 p2"], positive: "p1 p2", negatives: ["n1 n2"] },
 *   DOMAINS[0],
 * );
 * console.assert(t.chosen === " <Title:p1 p2> ,  <Title:n1 n2> ");
 * console.assert(t.rejected[0] === " <Title:n1 n2> ,  <Title:p1 p2> ");
 * ```
 * @param sample History, the pair the prompt names, positive and negatives.
 * @param domain Domain wording (`world.domains[sample.domain]`).
 * @returns Prompt, chosen and rejected responses.
 */
export function worldDmpoPrompt(
  sample: Pick<DmpoSample, "history" | "pair" | "positive" | "negatives">,
  domain: DomainInfo,
): WorldDmpoText {
  const prompt = `You are an assistant working on ${domain.noun} recommendations. ` +
    `Here is the user's history of ${domain.plural} they have ${domain.past}: ` +
    sample.history.map(tag).join("") +
    `. Rank the likelihood of the user ${domain.gerund} the two ${domain.plural} ` +
    tag(sample.pair[0]) + " and " + tag(sample.pair[1]) + ".";
  return {
    prompt,
    chosen: ranking(sample.positive, sample.negatives[0]),
    rejected: sample.negatives.map((n) => ranking(n, sample.positive)),
  };
}
