/**
 * Loader for DMPO's pairwise-ranking files (`FORMATS.md` §2): Alpaca rows
 * `{instruction, input, output}` where the instruction names the user's history and two
 * candidates, and `output` is the correct ranking (string, SFT and ML-1M eval) or
 * `[chosen, rejected]`. Reads the sft, `dpo_ranking_k` and eval files, including the
 * concatenated-JSON `_old` file. The instruction is parsed into history titles, the two
 * candidates in question order and the domain wording (not hard-coded to movies); the
 * positive comes from `output`. {@link formatDmpoRow} rebuilds the row from those parts,
 * byte for byte.
 *
 * Defects handled (`README.md`): ML-1M eval stores only the correct ranking, so the
 * rejected text is derived as `ranking(N, P)` (`outputKind: "string"`); titles are kept
 * exactly as stored (see {@link ml1mShortTitle} and {@link splitDmpoGenres} for the other
 * ML-1M title forms); the registered Amazon Movie `dpo_ranking_1` is not part of the nested
 * k-series, {@link DMPO_FILES} lists `_old` for k = 1 instead.
 *
 * @module
 */

import { DataFormatError } from "../errors.ts";
import {
  bump,
  detectJsonLayout,
  emptySummary,
  formatJsonFile,
  formatSummary,
  type JsonField,
  type JsonLayout,
  type JsonRows,
  jsonTypeName,
  type LoadSummary,
  parseJsonRows,
  preview,
  PY_COMPACT_LAYOUT,
  pyJsonArray,
  pyJsonObject,
  pyJsonString,
  readJsonRows,
  rowFieldMap,
} from "./json_stream.ts";
import {
  DMPO_PIECES,
  dmpoChosen,
  dmpoInstruction,
  dmpoRanking,
  dmpoRejected,
  type DmpoWording,
} from "./prompts.ts";

/** The three fields of a DMPO row, in the order the released files write them. */
export const DMPO_FIELDS = ["instruction", "input", "output"] as const;

/** `"string"`: `output` holds only the correct ranking; `"pair"`: `[chosen, rejected]`. */
export type DmpoOutputKind = "string" | "pair";

/** Where a sample came from and what {@link formatDmpoRow} needs to write it back. */
export interface DmpoSource {
  /** The file. */
  file: string;
  /** 1-based row number. */
  row: number;
  /** The file's JSON layout (shared by all rows of the file). */
  layout: JsonLayout;
  /** The row's keys in file order. */
  keys: string[];
  /** Raw JSON text, as stored, of any field other than the three. */
  extra: Record<string, string>;
}

/** One DMPO row: one pairwise question. */
export interface DmpoSample {
  /** History titles, oldest first, exactly as stored (spaces, entities, U+FFFD kept). */
  history: string[];
  /** The two candidates in the order the question names them (A, B). */
  candidates: [string, string];
  /** The candidate the user consumed (first in the correct ranking). */
  positive: string;
  /** The sampled negative (the other candidate). */
  negative: string;
  /** The domain words of the instruction. */
  wording: DmpoWording;
  /** How `output` was stored. With `"string"` the rejected text is derived. */
  outputKind: DmpoOutputKind;
  /** The `input` field (`""` in every released row). */
  input: string;
  /** Origin and write-back details; absent for samples built in code. */
  source?: DmpoSource;
}

/** Options of the DMPO loaders. */
export interface DmpoReadOptions {
  /**
   * Called with the summary of every load by {@link readDmpoFile}. By default the summary
   * is printed to stderr when rows were dropped.
   */
  onSummary?: (summary: LoadSummary) => void;
}

/** The result of {@link loadDmpoFile}. */
export interface DmpoLoadResult {
  /** The kept rows. */
  samples: DmpoSample[];
  /** Counts of rows read, kept, dropped and of known defects. */
  summary: LoadSummary;
  /** The file's JSON layout. */
  layout: JsonLayout;
}

/** An instruction split into its parts. */
export interface ParsedDmpoInstruction {
  /** The domain words. */
  wording: DmpoWording;
  /** History titles. */
  history: string[];
  /**
   * Every way to read the two candidates (A, B) off the question; one entry unless a title
   * contains `">  and  <Title:"`. The loader keeps the one that matches `output`.
   */
  candidateReadings: Array<[string, string]>;
}

type Where = { file: string; row?: number; field?: string };

/**
 * Split a DMPO instruction into wording, history and candidates (`FORMATS.md` §2.1).
 *
 * @example Usage
 * ```ts
 * import { parseDmpoInstruction } from "./dmpo.ts";
 * import assert from "node:assert/strict";
 * const p = parseDmpoInstruction(
 *   "You are an assistant working on Video Games recommendations. Here is the user's history of " +
 *     "Video Games they have shopped:  <Title:Halo 3>  <Title:Myst> . Rank the likelihood of the " +
 *     "user shopping the two Video Games  <Title:Doom>  and  <Title:Zork> .",
 * );
 * assert.deepEqual(p.history, ["Halo 3", "Myst"]);
 * assert.equal(p.wording.consumed, "shopped");
 * assert.deepEqual(p.candidateReadings, [["Doom", "Zork"]]);
 * ```
 *
 * @param text The instruction.
 * @param where Location for errors.
 * @returns Its parts.
 * @throws {DataFormatError} (field `instruction`) when the text does not follow the template.
 */
export function parseDmpoInstruction(
  text: string,
  where: Where = { file: "<instruction>" },
): ParsedDmpoInstruction {
  const P = DMPO_PIECES;
  const at = { ...where, field: where.field ?? "instruction" };
  const fail = (problem: string, pos: number): never => {
    throw new DataFormatError(
      at,
      `does not follow the DMPO template: ${problem} at character ${pos + 1}, found ${
        JSON.stringify(text.slice(pos, pos + 40))
      }`,
    );
  };
  if (!text.startsWith(P.intro)) fail(`expected ${JSON.stringify(P.intro)}`, 0);
  let pos = P.intro.length;
  const upTo = (piece: string, what: string): string => {
    const j = text.indexOf(piece, pos);
    if (j === -1) fail(`expected ${what} then ${JSON.stringify(piece)}`, pos);
    const s = text.slice(pos, j);
    pos = j + piece.length;
    return s;
  };
  const domain = upTo(P.afterDomain, "the domain");
  const historyNoun = upTo(P.afterHistoryNoun, "the history noun");
  const consumed = upTo(P.afterConsumed, "the verb");
  // History: (" <Title:" + t + "> ")* up to ". Rank the likelihood of the user ".
  const history: string[] = [];
  for (;;) {
    if (text.startsWith(P.question, pos)) break;
    if (!text.startsWith(P.titleOpen, pos)) {
      fail(`expected ${JSON.stringify(P.titleOpen)} or ${JSON.stringify(P.question)}`, pos);
    }
    const start = pos + P.titleOpen.length;
    let j = text.indexOf(P.titleClose, start);
    while (
      j !== -1 &&
      !text.startsWith(P.titleOpen, j + P.titleClose.length) &&
      !text.startsWith(P.question, j + P.titleClose.length)
    ) j = text.indexOf(P.titleClose, j + 1);
    if (j === -1) fail("unterminated history title", pos);
    history.push(text.slice(start, j));
    pos = j + P.titleClose.length;
  }
  pos += P.question.length;
  const consuming = upTo(P.afterConsuming, "the gerund");
  const candidateNoun = upTo(P.afterCandidateNoun + P.titleOpen, "the candidate noun");
  const tailEnd = P.titleClose + P.end;
  if (!text.endsWith(tailEnd) || text.length - tailEnd.length < pos) {
    fail(
      `expected the text to end with ${JSON.stringify(tailEnd)}`,
      Math.max(pos, text.length - 3),
    );
  }
  const inner = text.slice(pos, text.length - tailEnd.length);
  const mid = P.titleClose + P.and + P.titleOpen;
  const candidateReadings: Array<[string, string]> = [];
  for (let k = inner.indexOf(mid); k !== -1; k = inner.indexOf(mid, k + 1)) {
    candidateReadings.push([inner.slice(0, k), inner.slice(k + mid.length)]);
  }
  if (candidateReadings.length === 0) {
    fail(`expected two candidates joined by ${JSON.stringify(mid)}`, pos);
  }
  return {
    wording: { domain, historyNoun, consumed, consuming, candidateNoun },
    history,
    candidateReadings,
  };
}

function stringOrFail(f: JsonField | undefined, key: string, where: Where): string {
  if (!f) throw new DataFormatError({ ...where, field: key }, "missing (expected a string)");
  if (typeof f.value !== "string") {
    throw new DataFormatError(
      { ...where, field: key },
      `expected a string, got ${jsonTypeName(f.value)} ${preview(f.value)}`,
    );
  }
  return f.value;
}

const HTML_ENTITY = /&(?:[a-zA-Z]+|#[0-9]+|#x[0-9a-fA-F]+);/;

/**
 * Check and convert parsed rows (see {@link parseJsonRows}).
 *
 * Rows whose `output` is an array of fewer than two strings are dropped and counted (the
 * original pairwise loader drops them too); a string `output` is kept with the rejected
 * text derived; an array of more than two is an error.
 *
 * @param parsed The parsed file.
 * @returns Samples, summary and layout.
 * @throws {DataFormatError} on the first bad row.
 */
export function dmpoFromRows(parsed: JsonRows): DmpoLoadResult {
  const { file } = parsed;
  const layout = detectJsonLayout(parsed);
  const summary = emptySummary(file);
  const samples: DmpoSample[] = [];
  for (const row of parsed.rows) {
    summary.rowsRead++;
    const where = { file, row: row.row };
    const fields = rowFieldMap(row, file);
    const instruction = stringOrFail(fields.get("instruction"), "instruction", where);
    const input = stringOrFail(fields.get("input"), "input", where);
    const out = fields.get("output");
    if (!out) {
      throw new DataFormatError(
        { ...where, field: "output" },
        "missing (expected a string or an array [chosen, rejected])",
      );
    }
    let outputKind: DmpoOutputKind;
    let chosen: string;
    let rejected: string | undefined;
    if (typeof out.value === "string") {
      outputKind = "string";
      chosen = out.value;
    } else if (Array.isArray(out.value)) {
      out.value.forEach((v, i) => {
        if (typeof v !== "string") {
          throw new DataFormatError(
            { ...where, field: `output[${i}]` },
            `expected a string, got ${jsonTypeName(v)} ${preview(v)}`,
          );
        }
      });
      if (out.value.length < 2) {
        bump(
          summary.dropped,
          `output array has ${out.value.length} entr${out.value.length === 1 ? "y" : "ies"} ` +
            "(pairwise loading needs 2)",
        );
        continue;
      }
      if (out.value.length > 2) {
        throw new DataFormatError(
          { ...where, field: "output" },
          `expected [chosen, rejected] (2 strings), got ${out.value.length} strings`,
        );
      }
      outputKind = "pair";
      chosen = out.value[0] as string;
      rejected = out.value[1] as string;
    } else {
      throw new DataFormatError(
        { ...where, field: "output" },
        `expected a string or an array [chosen, rejected], got ${jsonTypeName(out.value)} ${
          preview(out.value)
        }`,
      );
    }
    const parts = parseDmpoInstruction(instruction, where);
    if (parts.history.length === 0) {
      throw new DataFormatError(
        { ...where, field: "instruction" },
        "empty history: no <Title:…> between the history sentence and the question",
      );
    }
    let picked: { a: string; b: string; positive: string; negative: string } | undefined;
    for (const [a, b] of parts.candidateReadings) {
      if (chosen === dmpoRanking(a, b)) picked = { a, b, positive: a, negative: b };
      else if (chosen === dmpoRanking(b, a)) picked = { a, b, positive: b, negative: a };
      if (picked) break;
    }
    if (!picked) {
      const [a, b] = parts.candidateReadings[0];
      throw new DataFormatError(
        { ...where, field: outputKind === "pair" ? "output[0]" : "output" },
        `expected a ranking of the two candidates ${JSON.stringify(a)} and ${JSON.stringify(b)} ` +
          `(${JSON.stringify(dmpoRanking(a, b))} or ${JSON.stringify(dmpoRanking(b, a))}), got ${
            preview(chosen, 120)
          }`,
      );
    }
    if (picked.positive === picked.negative) {
      throw new DataFormatError(
        { ...where, field: "instruction" },
        `both candidates are ${JSON.stringify(picked.positive)}: no pair to rank`,
      );
    }
    if (rejected !== undefined && rejected !== dmpoRejected(picked.positive, picked.negative)) {
      throw new DataFormatError(
        { ...where, field: "output[1]" },
        `expected the reversed ranking ${
          JSON.stringify(dmpoRejected(picked.positive, picked.negative))
        }, got ${preview(rejected, 120)}`,
      );
    }
    // Known defects, counted (README "Defects and pitfalls").
    if (outputKind === "string") {
      bump(
        summary.warnings,
        "output is a string (correct ranking only): rejected derived as ranking(N, P)",
      );
    }
    if (input !== "") bump(summary.warnings, "input is not empty");
    const hist = new Set(parts.history);
    if (hist.size < parts.history.length) bump(summary.warnings, "history repeats a title");
    if (hist.has(picked.negative)) bump(summary.warnings, "negative also occurs in the history");
    if (hist.has(picked.positive)) bump(summary.warnings, "positive also occurs in the history");
    const titles = [...parts.history, picked.a, picked.b];
    if (titles.some((t) => t.includes("\ufffd"))) bump(summary.warnings, "a title holds U+FFFD");
    if (titles.some((t) => HTML_ENTITY.test(t))) {
      bump(summary.warnings, "a title holds an HTML entity");
    }
    if (titles.some((t) => t !== t.trim())) {
      bump(summary.warnings, "a title has a leading or trailing space");
    }
    const extra: Record<string, string> = {};
    for (const f of row.fields!) {
      if (!(DMPO_FIELDS as readonly string[]).includes(f.key)) {
        extra[f.key] = parsed.text.slice(f.valueStart, f.valueEnd);
      }
    }
    samples.push({
      history: parts.history,
      candidates: [picked.a, picked.b],
      positive: picked.positive,
      negative: picked.negative,
      wording: parts.wording,
      outputKind,
      input,
      source: { file, row: row.row, layout, keys: row.fields!.map((f) => f.key), extra },
    });
    summary.kept++;
  }
  return { samples, summary, layout };
}

/**
 * Parse the text of a DMPO file (a JSON array, or objects back to back).
 *
 * @param text The file text.
 * @param file The file name for errors.
 * @returns Samples, summary and layout.
 * @throws {DataFormatError} on malformed JSON or a bad row.
 */
export function parseDmpoText(text: string, file: string): DmpoLoadResult {
  return dmpoFromRows(parseJsonRows(text, file));
}

/**
 * Read a DMPO file (strict UTF-8), with the load summary.
 *
 * @param path The file.
 * @returns Samples, summary and layout.
 * @throws {DataFormatError} on invalid UTF-8, malformed JSON or a bad row.
 */
export async function loadDmpoFile(path: string): Promise<DmpoLoadResult> {
  return dmpoFromRows(await readJsonRows(path));
}

/**
 * Read a DMPO file and return its samples. Dropped rows (an `output` array with fewer than
 * two entries) are reported to `options.onSummary`, or else printed to stderr.
 *
 * @example Usage
 * ```ts ignore
 * const samples = await readDmpoFile("data/raw/dmpo/ml-1m/rec_data_ml_1m_eval_ranking.json");
 * samples[0].outputKind; // "string": rejected is derived
 * ```
 *
 * @param path The file.
 * @param options Loader options.
 * @returns The samples, in file order.
 * @throws {DataFormatError} on invalid UTF-8, malformed JSON or a bad row.
 */
export async function readDmpoFile(
  path: string,
  options: DmpoReadOptions = {},
): Promise<DmpoSample[]> {
  const r = await loadDmpoFile(path);
  if (options.onSummary) options.onSummary(r.summary);
  else if (r.summary.kept < r.summary.rowsRead) console.warn(formatSummary(r.summary));
  return r.samples;
}

/** The instruction of a sample, rebuilt from its parts. */
export function dmpoSampleInstruction(s: DmpoSample): string {
  return dmpoInstruction(s.history, s.candidates[0], s.candidates[1], s.wording);
}

/** The chosen response (correct ranking) of a sample. */
export function dmpoSampleChosen(s: DmpoSample): string {
  return dmpoChosen(s.positive, s.negative);
}

/** The rejected response of a sample (stored, or derived for `outputKind: "string"`). */
export function dmpoSampleRejected(s: DmpoSample): string {
  return dmpoRejected(s.positive, s.negative);
}

/**
 * Write a sample back as its file stores it: instruction and output rebuilt from the parsed
 * parts, same key order, output kind, escapes and separators (byte for byte for rows read
 * by this module). Samples built in code are written like the released files (Python
 * `json.dump(rows, f)`).
 *
 * @param sample The sample.
 * @param layout Write with this layout instead of the sample's own.
 * @returns The row's JSON text.
 */
export function formatDmpoRow(sample: DmpoSample, layout?: JsonLayout): string {
  const src = sample.source;
  layout ??= src?.layout ?? PY_COMPACT_LAYOUT;
  const level = layout.rowLevel;
  const str = (s: string) => pyJsonString(s, layout.ensureAscii);
  const keys = src?.keys ?? DMPO_FIELDS;
  const entries = keys.map((k): [string, string] => {
    switch (k) {
      case "instruction":
        return [k, str(dmpoSampleInstruction(sample))];
      case "input":
        return [k, str(sample.input)];
      case "output":
        return [
          k,
          sample.outputKind === "string" ? str(dmpoSampleChosen(sample)) : pyJsonArray(
            [str(dmpoSampleChosen(sample)), str(dmpoSampleRejected(sample))],
            layout,
            level + 1,
          ),
        ];
      default: {
        const raw = src?.extra[k];
        if (raw === undefined) {
          throw new DataFormatError({ file: src?.file ?? "<sample>", field: k }, "no value");
        }
        return [k, raw];
      }
    }
  });
  return pyJsonObject(entries, layout, level);
}

/**
 * Write samples as a whole file, framed like the file the first sample came from.
 *
 * @param samples The samples.
 * @param layout The layout (default: the first sample's, else Python's compact array).
 * @returns The file text.
 */
export function formatDmpoFile(samples: readonly DmpoSample[], layout?: JsonLayout): string {
  const l = layout ?? samples[0]?.source?.layout ?? PY_COMPACT_LAYOUT;
  return formatJsonFile(samples.map((s) => formatDmpoRow(s, l)), l);
}

// ---------------------------------------------------------------------------------------
// Users, k-negative series, title forms

/** A user's contiguous rows sharing history and positive: one (history, positive, k negatives) unit. */
export interface DmpoUserGroup {
  /** The shared history. */
  history: string[];
  /** The shared positive. */
  positive: string;
  /** The negatives, in row order. */
  negatives: string[];
  /** The rows. */
  samples: DmpoSample[];
}

/**
 * Group contiguous rows with the same history and positive (a `dpo_ranking_k` file holds
 * k such rows per user, each one pairwise question with its own negative).
 *
 * @param samples Samples in file order.
 * @returns The groups, in file order.
 */
export function groupDmpoByUser(samples: readonly DmpoSample[]): DmpoUserGroup[] {
  const groups: DmpoUserGroup[] = [];
  let lastKey = "";
  for (const s of samples) {
    const key = JSON.stringify([s.history, s.positive]);
    if (groups.length === 0 || key !== lastKey) {
      groups.push({ history: s.history, positive: s.positive, negatives: [], samples: [] });
      lastKey = key;
    }
    const g = groups[groups.length - 1];
    g.negatives.push(s.negative);
    g.samples.push(s);
  }
  return groups;
}

/** The released DMPO files of one dataset, by role. */
export interface DmpoDatasetFiles {
  /** Sub-folder under the data root. */
  folder: string;
  /** SFT file (`output` a string). */
  sft: string;
  /**
   * `dpo[k - 1]` = the file with k negatives per user, forming a nested series. For Amazon
   * Movie k = 1 is `dpo_ranking_1_old.json`: the registered `dpo_ranking_1.json` holds 200
   * other users and breaks the series (README defect 6).
   */
  dpo: readonly string[];
  /** Evaluation file. */
  eval: string;
  /** Other files of the dataset and why they are not in the main roles. */
  others: Readonly<Record<string, string>>;
}

/** The released DMPO files, relative to the data root (e.g. `data/raw/dmpo/`). */
export const DMPO_FILES: Readonly<Record<"ml-1m" | "amazon-movie", DmpoDatasetFiles>> = {
  "ml-1m": {
    folder: "ml-1m",
    sft: "rec_data_ml_1m_sft_ranking.json",
    dpo: [1, 2, 3, 4, 5].map((k) => `rec_data_ml_1m_dpo_ranking_${k}.json`),
    eval: "rec_data_ml_1m_eval_ranking.json",
    others: {
      "rec_data_ml_1m_eval_ranking_old.json":
        'same rows as the eval file, each title followed by ", Genre:…"; concatenated JSON',
    },
  },
  "amazon-movie": {
    folder: "amazon-movie",
    sft: "rec_Amazon_Movie_sft_ranking.json",
    dpo: [
      "rec_Amazon_Movie_dpo_ranking_1_old.json",
      ...[2, 3, 4, 5].map((k) => `rec_Amazon_Movie_dpo_ranking_${k}.json`),
    ],
    eval: "rec_Amazon_Movie_eval_ranking.json",
    others: {
      "rec_Amazon_Movie_dpo_ranking_1.json":
        "registered as dpo_ranking_1 but 200 rows of 200 other users (not the SFT users)",
    },
  },
};

/**
 * Split a title of the `_old` form `"Flubber (1997), Genre:Children's|Comedy|Fantasy"` into
 * title and genres; titles without `", Genre:"` come back unchanged with `genres: null`.
 *
 * @param title A title as stored.
 * @returns Title and genre list.
 */
export function splitDmpoGenres(title: string): { title: string; genres: string[] | null } {
  const k = title.lastIndexOf(", Genre:");
  if (k === -1) return { title, genres: null };
  return { title: title.slice(0, k), genres: title.slice(k + ", Genre:".length).split("|") };
}

/**
 * The short form the ML-1M training files use for a full MovieLens title: cut at the first
 * `(`, then at the first `,` (README defect 2), e.g. `"Sound of Music, The (1965)"` →
 * `"Sound of Music"`, `"Tarzan (1999)"` → `"Tarzan "` (the space before `(` stays).
 *
 * @param fullTitle A full MovieLens title (eval form).
 * @returns The training form.
 */
export function ml1mShortTitle(fullTitle: string): string {
  return fullTitle.split("(")[0].split(",")[0];
}
