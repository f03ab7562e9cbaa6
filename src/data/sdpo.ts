/**
 * Loader for S-DPO / LLaRA-style candidate files (`FORMATS.md` §1.1): rows with
 * `historyList` (`"::"`-joined string, or an array), `itemList` (candidates in prompt
 * order) and `trueSelection` (the answer). Works for any domain with these field names.
 * Every row is checked; a bad row is a {@link DataFormatError} naming file, row and field.
 * {@link formatSdpoRow} writes a sample back exactly as the file stores it.
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
  type JsonValue,
  type LoadSummary,
  parseJsonRows,
  preview,
  PY_INDENT4_LAYOUT,
  pyJsonArray,
  pyJsonObject,
  pyJsonString,
  readJsonRows,
  rowFieldMap,
} from "./json_stream.ts";

/** The three fields of an S-DPO row, in the order the released files write them. */
export const SDPO_FIELDS = ["historyList", "itemList", "trueSelection"] as const;

/** Where a sample came from and what {@link formatSdpoRow} needs to write it back. */
export interface SdpoSource {
  /** The file. */
  file: string;
  /** 1-based row number. */
  row: number;
  /** The file's JSON layout (shared by all rows of the file). */
  layout: JsonLayout;
  /** The row's keys in file order (the three fields plus any others). */
  keys: string[];
  /** Whether `historyList` was a `"::"`-joined string or an array. */
  historyForm: "string" | "array";
  /** Raw JSON text, as stored, of any field other than the three. */
  extra: Record<string, string>;
}

/** One S-DPO row. */
export interface SdpoSample {
  /** Previous items, oldest first (`historyList` split on `"::"`). */
  history: string[];
  /** Candidates in prompt order (`itemList`). */
  candidates: string[];
  /** The item consumed next (`trueSelection`). */
  positive: string;
  /** `candidates` without the positive, in prompt order. */
  negatives: string[];
  /** Origin and write-back details; absent for samples built in code. */
  source?: SdpoSource;
}

/** Options of the S-DPO loaders. */
export interface SdpoReadOptions {
  /** Accept rows whose candidate list repeats a name (an error by default). */
  allowDuplicateCandidates?: boolean;
  /**
   * Called with the summary of every load by {@link readSdpoFile}. By default the summary
   * is printed to stderr when rows were dropped (S-DPO's code drops none, so never here).
   */
  onSummary?: (summary: LoadSummary) => void;
}

/** The result of {@link loadSdpoFile}. */
export interface SdpoLoadResult {
  /** The kept rows. */
  samples: SdpoSample[];
  /** Counts of rows read, kept, dropped and of known defects. */
  summary: LoadSummary;
  /** The file's JSON layout. */
  layout: JsonLayout;
}

function stringField(
  fields: Map<string, JsonField>,
  key: string,
  where: { file: string; row: number },
): string {
  const f = fields.get(key);
  if (!f) throw new DataFormatError({ ...where, field: key }, "missing (expected a string)");
  if (typeof f.value !== "string") {
    throw new DataFormatError(
      { ...where, field: key },
      `expected a string, got ${jsonTypeName(f.value)} ${preview(f.value)}`,
    );
  }
  return f.value;
}

function checkNames(
  names: readonly JsonValue[],
  where: { file: string; row: number; field: string },
): string[] {
  names.forEach((n, i) => {
    if (typeof n !== "string") {
      throw new DataFormatError(
        where,
        `item ${i}: expected a string, got ${jsonTypeName(n)} ${preview(n)}`,
      );
    }
    if (n === "") throw new DataFormatError(where, `item ${i} is an empty name`);
  });
  return names as string[];
}

/**
 * Check and convert parsed rows (see {@link parseJsonRows}).
 *
 * @param parsed The parsed file.
 * @param options Loader options.
 * @returns Samples, summary and layout.
 * @throws {DataFormatError} on the first bad row.
 */
export function sdpoFromRows(parsed: JsonRows, options: SdpoReadOptions = {}): SdpoLoadResult {
  const { file } = parsed;
  const layout = detectJsonLayout(parsed);
  const summary = emptySummary(file);
  const samples: SdpoSample[] = [];
  const seen = new Set<string>();
  for (const row of parsed.rows) {
    summary.rowsRead++;
    const where = { file, row: row.row };
    const fields = rowFieldMap(row, file);
    // historyList
    const h = fields.get("historyList");
    if (!h) {
      throw new DataFormatError(
        { ...where, field: "historyList" },
        'missing (expected a "::"-joined string or an array of strings)',
      );
    }
    let history: string[];
    let historyForm: "string" | "array";
    if (typeof h.value === "string") {
      historyForm = "string";
      if (h.value === "") {
        throw new DataFormatError({ ...where, field: "historyList" }, "empty history");
      }
      history = checkNames(h.value.split("::"), { ...where, field: "historyList" });
      if (h.value.includes(":::")) {
        bump(
          summary.warnings,
          'historyList contains ":::" (split on "::" may cut a name with a colon)',
        );
      }
    } else if (Array.isArray(h.value)) {
      historyForm = "array";
      if (h.value.length === 0) {
        throw new DataFormatError({ ...where, field: "historyList" }, "empty history");
      }
      history = checkNames(h.value, { ...where, field: "historyList" });
    } else {
      throw new DataFormatError(
        { ...where, field: "historyList" },
        `expected a "::"-joined string or an array of strings, got ${jsonTypeName(h.value)} ${
          preview(h.value)
        }`,
      );
    }
    // itemList
    const it = fields.get("itemList");
    if (!it) {
      throw new DataFormatError(
        { ...where, field: "itemList" },
        "missing (expected an array of strings)",
      );
    }
    if (!Array.isArray(it.value)) {
      throw new DataFormatError(
        { ...where, field: "itemList" },
        `expected an array of strings, got ${jsonTypeName(it.value)} ${preview(it.value)}`,
      );
    }
    if (it.value.length === 0) {
      throw new DataFormatError(
        { ...where, field: "itemList" },
        "expected at least 1 candidate, got 0",
      );
    }
    const candidates = checkNames(it.value, { ...where, field: "itemList" });
    const firstAt = new Map<string, number>();
    candidates.forEach((c, i) => {
      const j = firstAt.get(c);
      if (j !== undefined && !options.allowDuplicateCandidates) {
        throw new DataFormatError(
          { ...where, field: "itemList" },
          `candidate ${JSON.stringify(c)} occurs twice (items ${j} and ${i})`,
        );
      }
      if (j === undefined) firstAt.set(c, i);
    });
    // trueSelection
    const positive = stringField(fields, "trueSelection", where);
    if (positive === "") {
      throw new DataFormatError({ ...where, field: "trueSelection" }, "empty answer");
    }
    if (!firstAt.has(positive)) {
      throw new DataFormatError(
        { ...where, field: "itemList" },
        `does not contain the answer (trueSelection) ${JSON.stringify(positive)}`,
      );
    }
    const negatives = candidates.filter((c) => c !== positive);
    if (negatives.length === 0) {
      throw new DataFormatError(
        { ...where, field: "itemList" },
        "holds only the answer: expected at least 1 negative candidate, got 0",
      );
    }
    // Known defects, counted (README "Defects and pitfalls").
    const key = JSON.stringify([history, candidates, positive]);
    if (seen.has(key)) bump(summary.warnings, "duplicate of an earlier row");
    seen.add(key);
    const inHistory = new Set(history);
    if (inHistory.has(positive)) bump(summary.warnings, "answer occurs in the history");
    if (negatives.some((c) => inHistory.has(c))) {
      bump(summary.warnings, "a negative candidate occurs in the history");
    }
    if (candidates.some((c) => c.includes(", "))) {
      bump(summary.warnings, 'a candidate name contains ", " (ambiguous in the prompt)');
    }
    if (candidates.some((c) => candidates.some((d) => d !== c && c.includes(d)))) {
      bump(summary.warnings, "a candidate name contains another candidate's name");
    }
    if (candidates.some((d) => d !== positive && positive.includes(d))) {
      bump(summary.warnings, "the answer contains another candidate's name (never a valid hit)");
    }
    const extra: Record<string, string> = {};
    for (const f of row.fields!) {
      if (!(SDPO_FIELDS as readonly string[]).includes(f.key)) {
        extra[f.key] = parsed.text.slice(f.valueStart, f.valueEnd);
      }
    }
    samples.push({
      history,
      candidates,
      positive,
      negatives,
      source: {
        file,
        row: row.row,
        layout,
        keys: row.fields!.map((f) => f.key),
        historyForm,
        extra,
      },
    });
    summary.kept++;
  }
  return { samples, summary, layout };
}

/**
 * Parse the text of an S-DPO file.
 *
 * @example Usage
 * ```ts
 * import { parseSdpoText, formatSdpoRow } from "./sdpo.ts";
 * import assert from "node:assert/strict";
 * const text = '[{"historyList": "A::B", "itemList": ["C", "D"], "trueSelection": "D"}]';
 * const { samples } = parseSdpoText(text, "mem.json");
 * assert.deepEqual(samples[0].history, ["A", "B"]);
 * assert.deepEqual(samples[0].negatives, ["C"]);
 * assert.equal(formatSdpoRow(samples[0]), text.slice(1, -1));
 * ```
 *
 * @param text The file text.
 * @param file The file name for errors.
 * @param options Loader options.
 * @returns Samples, summary and layout.
 * @throws {DataFormatError} on malformed JSON or a bad row.
 */
export function parseSdpoText(
  text: string,
  file: string,
  options: SdpoReadOptions = {},
): SdpoLoadResult {
  return sdpoFromRows(parseJsonRows(text, file), options);
}

/**
 * Read an S-DPO file (strict UTF-8; a JSON array, JSON Lines, or back-to-back objects).
 *
 * @param path The file.
 * @param options Loader options.
 * @returns Samples, summary and layout.
 * @throws {DataFormatError} on invalid UTF-8, malformed JSON or a bad row.
 */
export async function loadSdpoFile(
  path: string,
  options: SdpoReadOptions = {},
): Promise<SdpoLoadResult> {
  return sdpoFromRows(await readJsonRows(path), options);
}

/**
 * Read an S-DPO file and return its samples (see {@link loadSdpoFile} for the summary).
 *
 * @param path The file.
 * @param options Loader options.
 * @returns The samples, in file order.
 * @throws {DataFormatError} on invalid UTF-8, malformed JSON or a bad row.
 */
export async function readSdpoFile(
  path: string,
  options: SdpoReadOptions = {},
): Promise<SdpoSample[]> {
  const r = await loadSdpoFile(path, options);
  if (options.onSummary) options.onSummary(r.summary);
  else if (r.summary.kept < r.summary.rowsRead) console.warn(formatSummary(r.summary));
  return r.samples;
}

/**
 * Write a sample back as its file stores it: same key order, `historyList` form, escapes,
 * indentation and separators (byte for byte for rows read by this module). Samples built
 * in code are written like the LastFM files (Python `json.dump(rows, f, indent=4)`).
 *
 * @param sample The sample.
 * @param layout Write with this layout instead of the sample's own.
 * @returns The row's JSON text (without the indentation before its opening brace).
 */
export function formatSdpoRow(sample: SdpoSample, layout?: JsonLayout): string {
  const src = sample.source;
  layout ??= src?.layout ?? PY_INDENT4_LAYOUT;
  const level = layout.rowLevel;
  const keys = src?.keys ?? SDPO_FIELDS;
  const str = (s: string) => pyJsonString(s, layout.ensureAscii);
  const entries = keys.map((k): [string, string] => {
    switch (k) {
      case "historyList":
        return [
          k,
          (src?.historyForm ?? "string") === "string"
            ? str(sample.history.join("::"))
            : pyJsonArray(sample.history.map(str), layout, level + 1),
        ];
      case "itemList":
        return [k, pyJsonArray(sample.candidates.map(str), layout, level + 1)];
      case "trueSelection":
        return [k, str(sample.positive)];
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
 * @param layout The layout (default: the first sample's, else LastFM's).
 * @returns The file text.
 */
export function formatSdpoFile(samples: readonly SdpoSample[], layout?: JsonLayout): string {
  const l = layout ?? samples[0]?.source?.layout ?? PY_INDENT4_LAYOUT;
  return formatJsonFile(samples.map((s) => formatSdpoRow(s, l)), l);
}
