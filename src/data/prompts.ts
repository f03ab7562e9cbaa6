/**
 * Prompt text exactly as the released code builds it.
 *
 * - S-DPO (`Prompt.py` + `prompt/music.txt`): one of 10 templates drawn per row,
 *   `[HistoryHere]` / `[CansHere]` filled with names joined by `", "`, then one space
 *   (training) or nothing (evaluation). See `FORMATS.md` §1.2 and §1.5.
 * - DMPO (LLaMA-Factory Alpaca rows): the instruction, the two rankings (chosen / rejected)
 *   and the `llama2` chat template with its default system prompt. See `FORMATS.md` §2.1–2.2.
 *
 * @module
 */

import { InputError } from "../errors.ts";
import type { Rng } from "../rng.ts";

// ---------------------------------------------------------------------------------------
// S-DPO

/**
 * S-DPO prompt templates by domain, verbatim (after Python's `strip()`). `music` is
 * `prompt/music.txt`, used for LastFM; every template ends with `Answer:`.
 */
export const SDPO_TEMPLATES: { readonly music: readonly string[] } = {
  music: [
    "This person has listened some musics from these bands [HistoryHere] recently. Please predict the next band or artist this person will listen to. Choose the answer from the following 20 band names: [CansHere]. Answer:",
    "This person has recently listened to music from [HistoryHere]. Can you predict the next band or artist he/she will listen to? Choose the answer from the provided options: [CansHere]. Answer:",
    "After listening to music from [HistoryHere], which band or artist do you think this person will discover next? Select the answer from the following options: [CansHere]. Answer:",
    "Based on the person's recent music choices from [HistoryHere], which band or artist would you recommend for her/his next listening experience? Choose one from the available options: [CansHere]. Answer:",
    "The person has been enjoying music from [HistoryHere] lately. Can you suggest the next band or artist she/he should listen to from the provided list: [CansHere]? Answer:",
    "Given that the person has listened to music from [HistoryHere] recently, which band or artist would you recommend he/she explore next from the available options: [CansHere]? Answer:",
    "Based on the person's recent music preferences for [HistoryHere], which band or artist do you think this person will choose next from the given options: [CansHere]? Answer:",
    "Having listened to music from [HistoryHere] already, who do you expect this person to listen to next? Choose one from the list of options: [CansHere]. Answer:",
    "Considering the person's music listening history includes [HistoryHere], which band or artist do you think this person will listen to next from the available options [CansHere]? Answer:",
    "Given the person's recent music exploration of [HistoryHere], can you predict the next band or artist she/he will listen to? Choose the answer from the options: [CansHere]. Answer:",
  ],
};

/** Options of {@link sdpoPrompt}. */
export interface SdpoPromptOptions {
  /** `"train"`: ends with `"Answer: "` (trailing space); `"eval"`: ends with `"Answer:"`. */
  mode: "train" | "eval";
  /** Templates to draw from (each trimmed like Python's `strip()`); default `SDPO_TEMPLATES.music`. */
  templates?: readonly string[];
  /** Use this template (0-based) instead of drawing one; the RNG is then not advanced. */
  templateIndex?: number;
}

/** A built S-DPO prompt and the template it used. */
export interface SdpoPrompt {
  /** The prompt text. */
  prompt: string;
  /** 0-based index of the template used. */
  templateIndex: number;
}

/**
 * Build an S-DPO prompt for a row. One template is drawn with `rng.int(templates.length)`
 * (the original draws with Python's `random` seeded 1958, which we do not reproduce);
 * `[HistoryHere]` is replaced by the history joined with `", "`, then `[CansHere]` by the
 * candidates joined with `", "` (names inserted raw, `$` and all), and in `"train"` mode one
 * space is appended.
 *
 * @example Usage
 * ```ts
 * import { sdpoPrompt } from "./prompts.ts";
 * import { Rng } from "../rng.ts";
 * import assert from "node:assert/strict";
 * const s = { history: ["A", "B"], candidates: ["C", "D"] };
 * const p = sdpoPrompt(s, new Rng(0), { mode: "train", templateIndex: 7 });
 * assert.equal(
 *   p.prompt,
 *   "Having listened to music from A, B already, who do you expect this person to listen to next? " +
 *     "Choose one from the list of options: C, D. Answer: ",
 * );
 * ```
 *
 * @param sample The row's history and candidates.
 * @param rng The seeded RNG used to draw the template.
 * @param options Mode, templates, optional fixed template.
 * @returns The prompt and the template index.
 */
export function sdpoPrompt(
  sample: { readonly history: readonly string[]; readonly candidates: readonly string[] },
  rng: Rng,
  options: SdpoPromptOptions,
): SdpoPrompt {
  const templates = (options.templates ?? SDPO_TEMPLATES.music).map((t) => t.trim());
  if (templates.length === 0) {
    throw new InputError("templates", "expected at least 1 template, got 0");
  }
  let templateIndex: number;
  if (options.templateIndex !== undefined) {
    templateIndex = options.templateIndex;
    if (
      !Number.isInteger(templateIndex) || templateIndex < 0 || templateIndex >= templates.length
    ) {
      throw new InputError(
        "templateIndex",
        `expected an integer in [0, ${templates.length}), got ${templateIndex}`,
      );
    }
  } else templateIndex = rng.int(templates.length);
  const history = sample.history.join(", ");
  const cans = sample.candidates.join(", ");
  // Functions as replacements, so "$&" etc. in names are inserted literally.
  let prompt = templates[templateIndex].replaceAll("[HistoryHere]", () => history);
  prompt = prompt.replaceAll("[CansHere]", () => cans);
  if (options.mode === "train") prompt += " ";
  else if (options.mode !== "eval") {
    throw new InputError("mode", `expected "train" or "eval", got ${JSON.stringify(options.mode)}`);
  }
  return { prompt, templateIndex };
}

// ---------------------------------------------------------------------------------------
// DMPO

/**
 * The domain words of a DMPO instruction. For the movie files:
 * `"You are an assistant working on {domain} recommendations. Here is the user's history of
 * {historyNoun} they have {consumed}: … . Rank the likelihood of the user {consuming} the two
 * {candidateNoun} …"`.
 */
export interface DmpoWording {
  /** e.g. `"movie"`, `"Video Games"`. */
  domain: string;
  /** Plural noun of the history sentence, e.g. `"movies"`. */
  historyNoun: string;
  /** Past participle, e.g. `"watched"`, `"shopped"`. */
  consumed: string;
  /** Gerund, e.g. `"watching"`, `"shopping"`. */
  consuming: string;
  /** Plural noun of the question, e.g. `"movies"`. */
  candidateNoun: string;
}

/** The wording of every row of the ML-1M and Amazon Movie files. */
export const MOVIE_WORDING: Readonly<DmpoWording> = {
  domain: "movie",
  historyNoun: "movies",
  consumed: "watched",
  consuming: "watching",
  candidateNoun: "movies",
};

/** Fixed pieces of the DMPO instruction, in order (used by the parser too). */
export const DMPO_PIECES = {
  intro: "You are an assistant working on ",
  afterDomain: " recommendations. Here is the user's history of ",
  afterHistoryNoun: " they have ",
  afterConsumed: ": ",
  titleOpen: " <Title:",
  titleClose: "> ",
  question: ". Rank the likelihood of the user ",
  afterConsuming: " the two ",
  afterCandidateNoun: " ",
  and: " and ",
  end: ".",
  rankingSeparator: ", ",
} as const;

/** `" <Title:" + title + "> "`. */
export function dmpoTitle(title: string): string {
  return DMPO_PIECES.titleOpen + title + DMPO_PIECES.titleClose;
}

/**
 * The DMPO instruction (`FORMATS.md` §2.1), character for character.
 *
 * @example Usage
 * ```ts
 * import { dmpoInstruction } from "./prompts.ts";
 * import assert from "node:assert/strict";
 * assert.equal(
 *   dmpoInstruction(["Big "], "Tarzan ", "Gigi "),
 *   "You are an assistant working on movie recommendations. Here is the user's history of " +
 *     "movies they have watched:  <Title:Big > . Rank the likelihood of the user watching the " +
 *     "two movies  <Title:Tarzan >  and  <Title:Gigi > .",
 * );
 * ```
 *
 * @param history History titles, oldest first, used as stored.
 * @param a The candidate named first in the question.
 * @param b The candidate named second.
 * @param wording The domain words (default: movies).
 * @returns The instruction text.
 */
export function dmpoInstruction(
  history: readonly string[],
  a: string,
  b: string,
  wording: DmpoWording = MOVIE_WORDING,
): string {
  const P = DMPO_PIECES;
  return P.intro + wording.domain + P.afterDomain + wording.historyNoun + P.afterHistoryNoun +
    wording.consumed + P.afterConsumed + history.map(dmpoTitle).join("") + P.question +
    wording.consuming + P.afterConsuming + wording.candidateNoun + P.afterCandidateNoun +
    dmpoTitle(a) + P.and + dmpoTitle(b) + P.end;
}

/**
 * A ranking of two titles: `" <Title:" + x + "> " + ", " + " <Title:" + y + "> "`.
 *
 * @param x The title ranked first.
 * @param y The title ranked second.
 * @returns The ranking text (begins with a space).
 */
export function dmpoRanking(x: string, y: string): string {
  return dmpoTitle(x) + DMPO_PIECES.rankingSeparator + dmpoTitle(y);
}

/** The chosen (correct) response: `dmpoRanking(positive, negative)`. */
export function dmpoChosen(positive: string, negative: string): string {
  return dmpoRanking(positive, negative);
}

/** The rejected response: `dmpoRanking(negative, positive)`. */
export function dmpoRejected(positive: string, negative: string): string {
  return dmpoRanking(negative, positive);
}

/**
 * The user message LLaMA-Factory builds from an Alpaca row: instruction and input joined
 * by a newline, empty parts left out (so with the always-empty `input` it is the instruction).
 */
export function dmpoUserMessage(instruction: string, input = ""): string {
  return [instruction, input].filter((s) => s !== "").join("\n");
}

/**
 * The default system prompt of LLaMA-Factory's `llama2` template (Meta's Llama-2-chat
 * default), verbatim as in DMPO's `src/llmtuner/data/template.py`.
 */
export const LLAMA2_DEFAULT_SYSTEM_PROMPT: string =
  "You are a helpful, respectful and honest assistant. " +
  "Always answer as helpfully as possible, while being safe. " +
  "Your answers should not include any harmful, unethical, " +
  "racist, sexist, toxic, dangerous, or illegal content. " +
  "Please ensure that your responses are socially unbiased and positive in nature.\n\n" +
  "If a question does not make any sense, or is not factually coherent, " +
  "explain why instead of answering something not correct. " +
  "If you don't know the answer to a question, please don't share false information.";

/**
 * The `llama2` chat prompt text for one user turn (`FORMATS.md` §2.2), without the BOS
 * token (added at tokenization): `"[INST] <<SYS>>\n" + system + "\n<</SYS>>\n\n" +
 * instruction + " [/INST]"`. As in LLaMA-Factory (`system or default_system`), an omitted
 * or empty `system` means {@link LLAMA2_DEFAULT_SYSTEM_PROMPT}.
 *
 * @example Usage
 * ```ts
 * import { llama2ChatPrompt } from "./prompts.ts";
 * import assert from "node:assert/strict";
 * assert.equal(llama2ChatPrompt("Hi", "Be brief."), "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]");
 * ```
 *
 * @param instruction The user message.
 * @param system The system prompt.
 * @returns The prompt text.
 */
export function llama2ChatPrompt(instruction: string, system?: string): string {
  const sys = system || LLAMA2_DEFAULT_SYSTEM_PROMPT;
  return "[INST] <<SYS>>\n" + sys + "\n<</SYS>>\n\n" + instruction + " [/INST]";
}
