/**
 * Dataset audit: what is wrong in a folder (or file) of S-DPO candidate files and DMPO
 * pairwise files, counted per defect with a few located examples (file + 1-based row).
 *
 * Unlike the loaders (`sdpo.ts`, `dmpo.ts`), which stop at the first bad row, the audit reads
 * every row leniently and keeps going: a row that does not follow its format is itself a
 * finding (`malformed-row`). Per file it looks for exact duplicate rows, answers missing from
 * the candidates, names that break S-DPO's substring scoring (`FORMATS.md` §1.5) or its
 * `", "`-joined prompt, candidates that occur in the history, encoding damage (U+FFFD, HTML
 * entities, mojibake such as `"Ã©"`), stray spaces, rows the original DMPO pairwise loader
 * silently drops, and files that are not one JSON document. Across the files of one folder
 * it looks for (history, target) pairs shared by different splits (train / eval / test,
 * told apart by the file name), titles whose surface form differs between training and
 * evaluation files (e.g. ML-1M `"Sound of Music"` vs `"Sound of Music, The (1965)"`), and
 * `dpo_ranking` files whose users are not the SFT file's users.
 *
 * {@link auditPath} returns an {@link AuditReport}; {@link formatAuditMarkdown} renders it.
 *
 * @module
 */

import { DataFormatError } from "../errors.ts";
import {
  decodeUtf8Strict,
  type JsonRows,
  type JsonValue,
  parseJsonRows,
  readJsonRows,
} from "./json_stream.ts";
import { parseDmpoInstruction } from "./dmpo.ts";
import { dmpoRanking } from "./prompts.ts";

/** Which split a file belongs to, read off its name. */
export type SplitRole = "train" | "eval" | "test" | "unknown";

/** The formats the audit reads. */
export type AuditFormat = "sdpo" | "dmpo" | "unknown";

/** One located example of a finding. */
export interface AuditExample {
  /** File, relative to the audited root. */
  file: string;
  /** 1-based row, when the example is a row. */
  row?: number;
  /** What is wrong there. */
  detail: string;
}

/** One defect kind in one scope (a file, or a folder for cross-file checks). */
export interface AuditFinding {
  /** Stable identifier, e.g. `"duplicate-row"` (see {@link AUDIT_KINDS}). */
  kind: AuditKind;
  /** File or folder (relative to the audited root; `"."` for the root folder). */
  scope: string;
  /** How many (see `unit`). */
  count: number;
  /** What `count` counts. */
  unit: "rows" | "pairs" | "titles" | "files" | "occurrences" | "users";
  /** Up to {@link AuditOptions.examples} examples. */
  examples: AuditExample[];
}

/** What the audit read in one file. */
export interface AuditFileInfo {
  /** File, relative to the audited root. */
  file: string;
  /** Detected format. */
  format: AuditFormat;
  /** Split, from the file name. */
  role: SplitRole;
  /** Rows in the file (0 when unreadable). */
  rows: number;
  /** Rows the audit could read as its format. */
  parsedRows: number;
  /** For DMPO files: rows whose positive is the first-named candidate. */
  positiveFirst?: number;
}

/** The result of {@link auditPath}. */
export interface AuditReport {
  /** The audited file or folder, as given. */
  root: string;
  /** The data files read, in path order. */
  files: AuditFileInfo[];
  /** Findings with a count > 0, by kind order of {@link AUDIT_KINDS}, then scope. */
  findings: AuditFinding[];
}

/** Options of {@link auditPath}. */
export interface AuditOptions {
  /** Examples kept per finding (default 3). */
  examples?: number;
}

/** Every finding kind, with a title and why it matters, in report order. */
export const AUDIT_KINDS = {
  "unreadable": {
    title: "Unreadable file",
    why: "invalid UTF-8 or malformed JSON; nothing in it can be used",
  },
  "not-one-json-document": {
    title: "Not one JSON document",
    why: "objects written back to back with no enclosing array: a strict JSON parser fails",
  },
  "malformed-row": {
    title: "Malformed row",
    why: "the row does not follow its format; a loader stops here",
  },
  "duplicate-row": {
    title: "Exact duplicate row",
    why: "the row repeats an earlier row of the same file (counted once per repeat)",
  },
  "split-overlap": {
    title: "Same (history, target) in two splits",
    why: "a pair of a training/eval/test file also occurs in another split of the folder",
  },
  "answer-not-in-candidates": {
    title: "Answer not among the candidates",
    why: "the target cannot be chosen",
  },
  "duplicate-candidate": {
    title: "Candidate listed twice",
    why: "the candidate list repeats a name",
  },
  "dropped-by-original-loader": {
    title: "Row the original pairwise loader drops silently",
    why: "DMPO `output` with fewer than 2 responses (a string, or a short array) in a " +
      "pairwise (dpo/eval) file: LLaMA-Factory skips it without a word",
  },
  "comma-in-candidate": {
    title: 'Candidate name contains ","',
    why: 'S-DPO joins candidates with ", ": name boundaries are ambiguous in the prompt',
  },
  "comma-in-answer": {
    title: 'Answer contains ","',
    why: "the correct name is itself ambiguous in the prompt",
  },
  "candidate-substring": {
    title: "A candidate's name contains another candidate's name",
    why: "S-DPO's rule (exactly one candidate name occurs in the output) misjudges such rows",
  },
  "answer-never-hit": {
    title: "Correct answer can never be a hit",
    why: "the answer contains another candidate's name, so a correct generation matches two " +
      "names and is scored invalid (FORMATS §1.5)",
  },
  "answer-in-history": {
    title: "Answer occurs in the history",
    why: "the target was already consumed",
  },
  "negative-in-history": {
    title: "A negative occurs in the history",
    why: "a sampled negative was already consumed (e.g. two ML-1M films cut to one short title)",
  },
  "history-repeats": {
    title: "History repeats a title",
    why: "the same title twice in one history",
  },
  "history-colon-split": {
    title: 'History string contains ":::"',
    why: 'historyList is "::"-joined; a name with a colon at its edge splits wrongly',
  },
  "replacement-char": {
    title: "U+FFFD replacement character",
    why: "a character was lost when the text was decoded (e.g. Pok\ufffdmon)",
  },
  "html-entity": {
    title: "HTML entity in a title",
    why: "`&amp;`, `&quot;`, `&#39;` left undecoded",
  },
  "mojibake": {
    title: "Mojibake",
    why: 'UTF-8 bytes decoded as Latin-1/cp1252 (e.g. "Ã©" for "é")',
  },
  "stray-space": {
    title: "Leading or trailing space in a title",
    why: "the same item gets another surface form",
  },
  "title-form-mismatch": {
    title: "Titles differ between training and evaluation files",
    why: 'an eval/test title is absent from training, but cut at its first "(" and "," ' +
      "and trimmed it is a training title (e.g. ML-1M `Sound of Music` vs " +
      "`Sound of Music, The (1965)`)",
  },
  "foreign-users": {
    title: "Preference file users not in the SFT file",
    why: "a dpo_ranking file holds (history, positive) groups the SFT file does not have",
  },
} as const;

/** A finding kind. */
export type AuditKind = keyof typeof AUDIT_KINDS;

/** The split of a file, from its name: test, eval (val/valid/eval/dev), train (train/sft/dpo). */
export function splitRoleOf(path: string): SplitRole {
  const base = path.slice(path.lastIndexOf("/") + 1).toLowerCase();
  if (/test/.test(base)) return "test";
  if (/(^|[^a-z])(val|valid|validation|eval|dev)([^a-z]|$)|eval/.test(base)) return "eval";
  if (/train|sft|dpo/.test(base)) return "train";
  return "unknown";
}

const HTML_ENTITY = /&(?:[a-zA-Z][a-zA-Z0-9]*|#[0-9]+|#[xX][0-9a-fA-F]+);/;
/** Latin-1/cp1252 decodings of UTF-8 lead + continuation bytes, e.g. "Ã©", "â€™", "Â ". */
const MOJIBAKE =
  /[ÂÃ][\u0080-\u00BF\u0152\u0153\u0160\u0161\u0178\u017D\u017E\u0192\u02C6\u02DC\u2013\u2014\u2018-\u201E\u2020-\u2022\u2026\u2030\u2039\u203A\u20AC\u2122]|â€/;

/** One row, read leniently into the parts every check needs. */
interface AuditRow {
  row: number;
  history: string[];
  candidates: string[];
  positive: string;
  /** DMPO: the negative; S-DPO: undefined. */
  negative?: string;
  /** DMPO: `output` had fewer than two responses. */
  shortOutput?: string;
  /** U+FFFD characters in all string fields of the row. */
  fffd: number;
}

class Counter {
  readonly map = new Map<string, AuditFinding>();
  constructor(readonly maxExamples: number) {}
  add(
    kind: AuditKind,
    scope: string,
    unit: AuditFinding["unit"],
    example?: AuditExample,
    n = 1,
  ): void {
    const key = kind + "\u0000" + scope;
    let f = this.map.get(key);
    if (!f) {
      f = { kind, scope, count: 0, unit, examples: [] };
      this.map.set(key, f);
    }
    f.count += n;
    if (example && f.examples.length < this.maxExamples) f.examples.push(example);
  }
}

function detectFormat(parsed: JsonRows): AuditFormat {
  for (const r of parsed.rows.slice(0, 5)) {
    const v = r.value;
    if (v && typeof v === "object" && !Array.isArray(v)) {
      if ("historyList" in v || "itemList" in v || "trueSelection" in v) return "sdpo";
      if ("instruction" in v && "output" in v) return "dmpo";
    }
  }
  return "unknown";
}

function countChar(s: string, ch: string): number {
  let n = 0;
  for (let i = s.indexOf(ch); i !== -1; i = s.indexOf(ch, i + 1)) n++;
  return n;
}

function isStringArray(v: JsonValue | undefined): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === "string");
}

function readSdpoRow(v: JsonValue, row: number): AuditRow | string {
  if (!v || typeof v !== "object" || Array.isArray(v)) return "not an object";
  const h = v.historyList;
  const history = typeof h === "string" ? (h === "" ? [] : h.split("::")) : h;
  if (!isStringArray(history)) return 'field "historyList": not a string or string array';
  if (!isStringArray(v.itemList)) return 'field "itemList": not an array of strings';
  if (typeof v.trueSelection !== "string") return 'field "trueSelection": not a string';
  return { row, history, candidates: v.itemList, positive: v.trueSelection, fffd: 0 };
}

function readDmpoRow(v: JsonValue, row: number, file: string): AuditRow | string {
  if (!v || typeof v !== "object" || Array.isArray(v)) return "not an object";
  if (typeof v.instruction !== "string") return 'field "instruction": not a string';
  const out = v.output;
  let chosen: string;
  let shortOutput: string | undefined;
  if (typeof out === "string") {
    chosen = out;
    shortOutput = "output is a string (1 response)";
  } else if (isStringArray(out) && out.length >= 1) {
    chosen = out[0];
    if (out.length < 2) shortOutput = "output array has 1 entry";
  } else if (isStringArray(out)) {
    return 'field "output": empty array';
  } else return 'field "output": not a string or an array of strings';
  let parts;
  try {
    parts = parseDmpoInstruction(v.instruction, { file, row });
  } catch (err) {
    if (err instanceof DataFormatError) return err.message.slice(err.message.indexOf(": ") + 2);
    throw err;
  }
  for (const [a, b] of parts.candidateReadings) {
    if (chosen === dmpoRanking(a, b)) {
      return {
        row,
        history: parts.history,
        candidates: [a, b],
        positive: a,
        negative: b,
        shortOutput,
        fffd: 0,
      };
    }
    if (chosen === dmpoRanking(b, a)) {
      return {
        row,
        history: parts.history,
        candidates: [a, b],
        positive: b,
        negative: a,
        shortOutput,
        fffd: 0,
      };
    }
  }
  // The answer is not one of the two candidates: keep the row for the other checks.
  const [a, b] = parts.candidateReadings[0];
  return {
    row,
    history: parts.history,
    candidates: [a, b],
    positive: chosen,
    shortOutput,
    fffd: 0,
  };
}

/**
 * Strict UTF-8, then the native `JSON.parse` for a plain JSON array (fast; rows have no
 * positions), else the locating parser (concatenated objects, JSON lines, syntax errors).
 */
async function readRows(path: string): Promise<JsonRows> {
  let text: string;
  try {
    text = decodeUtf8Strict(await Deno.readFile(path), path);
  } catch (err) {
    if (err instanceof DataFormatError) return await readJsonRows(path); // locates the bytes
    throw err;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return parseJsonRows(text, path);
  }
  if (!Array.isArray(value)) return parseJsonRows(text, path);
  return {
    file: path,
    text: "",
    container: "array",
    rows: value.map((v, i) => ({
      row: i + 1,
      value: v as JsonValue,
      start: 0,
      end: 0,
      line: 0,
      column: 0,
    })),
  };
}

async function listDataFiles(root: string): Promise<string[]> {
  const st = await Deno.stat(root);
  if (st.isFile) return [root];
  const out: string[] = [];
  const walk = async (dir: string) => {
    const entries: Deno.DirEntry[] = [];
    for await (const e of Deno.readDir(dir)) entries.push(e);
    entries.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
    for (const e of entries) {
      const p = `${dir.replace(/\/$/, "")}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (e.isFile && /\.jsonl?$/i.test(e.name) && e.name !== "summary.json") out.push(p);
    }
  };
  await walk(root);
  return out;
}

function relative(root: string, path: string, rootIsFile: boolean): string {
  if (rootIsFile) return path.slice(path.lastIndexOf("/") + 1);
  const r = root.replace(/\/$/, "") + "/";
  return path.startsWith(r) ? path.slice(r.length) : path;
}

function folderOf(rel: string): string {
  const i = rel.lastIndexOf("/");
  return i === -1 ? "." : rel.slice(0, i);
}

/** Cut at the first `(` and `,`, trimmed: the normalisation used by `title-form-mismatch`. */
export function looseTitle(t: string): string {
  return t.split("(")[0].split(",")[0].trim();
}

interface ReadFile {
  info: AuditFileInfo;
  rows: AuditRow[];
}

/**
 * Audit a data file or a folder of data files (`*.json`, `*.jsonl`, searched recursively;
 * `summary.json` is skipped). Files whose rows are neither S-DPO nor DMPO rows are listed
 * with format `"unknown"` and not checked.
 *
 * @example Usage
 * ```ts ignore
 * const report = await auditPath("data/raw");
 * console.log(formatAuditMarkdown(report));
 * ```
 *
 * @param root A file or folder.
 * @param options Audit options.
 * @returns The report.
 */
export async function auditPath(root: string, options: AuditOptions = {}): Promise<AuditReport> {
  const c = new Counter(options.examples ?? 3);
  const rootIsFile = (await Deno.stat(root)).isFile;
  const paths = await listDataFiles(root);
  const files: ReadFile[] = [];
  for (const path of paths) {
    const rel = relative(root, path, rootIsFile);
    const info: AuditFileInfo = {
      file: rel,
      format: "unknown",
      role: splitRoleOf(rel),
      rows: 0,
      parsedRows: 0,
    };
    let parsed: JsonRows;
    try {
      parsed = await readRows(path);
    } catch (err) {
      if (!(err instanceof DataFormatError)) throw err;
      c.add("unreadable", rel, "files", { file: rel, row: err.row, detail: err.message });
      files.push({ info, rows: [] });
      continue;
    }
    info.rows = parsed.rows.length;
    info.format = detectFormat(parsed);
    files.push({ info, rows: auditFile(parsed, info, c) });
  }
  auditFolders(files, c);
  const order = Object.keys(AUDIT_KINDS);
  const findings = [...c.map.values()]
    .filter((f) => f.count > 0)
    .sort((x, y) => order.indexOf(x.kind) - order.indexOf(y.kind) || (x.scope < y.scope ? -1 : 1));
  return { root, files: files.map((f) => f.info), findings };
}

function auditFile(parsed: JsonRows, info: AuditFileInfo, c: Counter): AuditRow[] {
  const rel = info.file;
  if (info.format === "unknown") return [];
  if (parsed.container === "stream" && parsed.rows.length > 1) {
    const jsonl = parsed.rows.every((r, i) =>
      i === 0 || parsed.text.slice(parsed.rows[i - 1].end, r.start).includes("\n")
    );
    if (!jsonl) {
      c.add("not-one-json-document", rel, "files", {
        file: rel,
        detail: `${parsed.rows.length} objects back to back; a strict parser fails at ` +
          `character ${parsed.rows[0].end + 1}`,
      });
    }
  }
  const rows: AuditRow[] = [];
  const seen = new Map<string, number>();
  const pairwise = info.role !== "train" || /dpo/i.test(rel);
  let positiveFirst = 0;
  for (const r of parsed.rows) {
    const at = (detail: string): AuditExample => ({ file: rel, row: r.row, detail });
    const key = JSON.stringify(r.value);
    const earlier = seen.get(key);
    if (earlier !== undefined) c.add("duplicate-row", rel, "rows", at(`same as row ${earlier}`));
    else seen.set(key, r.row);
    const a = info.format === "sdpo"
      ? readSdpoRow(r.value, r.row)
      : readDmpoRow(r.value, r.row, rel);
    if (typeof a === "string") {
      c.add("malformed-row", rel, "rows", at(a));
      continue;
    }
    a.fffd = countChar(key, "\ufffd");
    rows.push(a);
    checkRow(a, info, c, at, pairwise, r.value);
    if (a.negative !== undefined && a.candidates[0] === a.positive) positiveFirst++;
  }
  info.parsedRows = rows.length;
  if (info.format === "dmpo") info.positiveFirst = positiveFirst;
  return rows;
}

function checkRow(
  a: AuditRow,
  info: AuditFileInfo,
  c: Counter,
  at: (detail: string) => AuditExample,
  pairwise: boolean,
  raw: JsonValue,
): void {
  const rel = info.file;
  const q = JSON.stringify;
  const cands = a.candidates;
  if (!cands.includes(a.positive)) {
    c.add("answer-not-in-candidates", rel, "rows", at(`answer ${q(a.positive)}`));
  }
  if (new Set(cands).size < cands.length) {
    const dup = cands.find((x, i) => cands.indexOf(x) !== i)!;
    c.add("duplicate-candidate", rel, "rows", at(`${q(dup)} twice`));
  }
  if (info.format === "dmpo" && a.shortOutput && pairwise) {
    c.add("dropped-by-original-loader", rel, "rows", at(a.shortOutput));
  }
  if (info.format === "sdpo") {
    const withComma = cands.find((x) => x.includes(","));
    if (withComma) c.add("comma-in-candidate", rel, "rows", at(q(withComma)));
    if (a.positive.includes(",")) c.add("comma-in-answer", rel, "rows", at(q(a.positive)));
    let sub: [string, string] | undefined;
    for (const x of cands) {
      const y = cands.find((d) => d !== x && x.includes(d));
      if (y !== undefined) {
        sub = [x, y];
        break;
      }
    }
    if (sub) c.add("candidate-substring", rel, "rows", at(`${q(sub[0])} contains ${q(sub[1])}`));
    const inAnswer = cands.find((d) => d !== a.positive && a.positive.includes(d));
    if (inAnswer !== undefined) {
      c.add("answer-never-hit", rel, "rows", at(`answer ${q(a.positive)} contains ${q(inAnswer)}`));
    }
    const h = (raw as Record<string, JsonValue>).historyList;
    if (typeof h === "string" && h.includes(":::")) {
      c.add("history-colon-split", rel, "rows", at(q(h)));
    }
  }
  const hist = new Set(a.history);
  if (hist.has(a.positive)) c.add("answer-in-history", rel, "rows", at(q(a.positive)));
  const negs = cands.filter((x) => x !== a.positive);
  const negInHist = negs.find((x) => hist.has(x));
  if (negInHist !== undefined) c.add("negative-in-history", rel, "rows", at(q(negInHist)));
  if (hist.size < a.history.length) {
    const rep = a.history.find((x, i) => a.history.indexOf(x) !== i)!;
    c.add("history-repeats", rel, "rows", at(`${q(rep)} twice`));
  }
  const titles = [...a.history, ...cands];
  let fffd = 0;
  for (const t of titles) for (const ch of t) if (ch === "\ufffd") fffd++;
  if (fffd > 0) {
    const t = titles.find((x) => x.includes("\ufffd"))!;
    c.add("replacement-char", rel, "rows", at(q(t)));
  }
  const ent = titles.find((t) => HTML_ENTITY.test(t));
  if (ent !== undefined) c.add("html-entity", rel, "rows", at(q(ent)));
  const moj = titles.find((t) => MOJIBAKE.test(t));
  if (moj !== undefined) c.add("mojibake", rel, "rows", at(q(moj)));
  const sp = titles.find((t) => t !== t.trim());
  if (sp !== undefined) c.add("stray-space", rel, "rows", at(q(sp)));
}

function auditFolders(files: ReadFile[], c: Counter): void {
  const byFolder = new Map<string, ReadFile[]>();
  for (const f of files) {
    if (f.info.format === "unknown") continue;
    const k = folderOf(f.info.file);
    if (!byFolder.has(k)) byFolder.set(k, []);
    byFolder.get(k)!.push(f);
  }
  const q = JSON.stringify;
  for (const [folder, group] of byFolder) {
    // Distinct damaged titles across the folder.
    const distinct = new Map<AuditKind, Map<string, AuditExample>>();
    const occurrences = new Map<string, number>();
    for (const f of group) {
      let occ = 0, spaced = 0, historyTitles = 0;
      for (const r of f.rows) {
        for (const t of new Set([...r.history, ...r.candidates])) {
          const ex = { file: f.info.file, row: r.row, detail: q(t) };
          const mark = (k: AuditKind) => {
            if (!distinct.has(k)) distinct.set(k, new Map());
            const m = distinct.get(k)!;
            if (!m.has(t)) m.set(t, ex);
          };
          if (t.includes("\ufffd")) mark("replacement-char");
          if (HTML_ENTITY.test(t)) mark("html-entity");
          if (MOJIBAKE.test(t)) mark("mojibake");
          if (t !== t.trim()) mark("stray-space");
        }
        occ += r.fffd;
        for (const t of r.history) if (t !== t.trim()) spaced++;
        historyTitles += r.history.length;
      }
      if (occ > 0) occurrences.set(f.info.file, occ);
      if (spaced > 0) {
        c.add(
          "stray-space",
          `${f.info.file} (history titles, of ${historyTitles})`,
          "occurrences",
          undefined,
          spaced,
        );
      }
    }
    for (const [kind, m] of distinct) {
      const ex = [...m.values()];
      c.add(kind, folder + "/ (distinct titles)", "titles", undefined, m.size);
      const f = c.map.get(kind + "\u0000" + folder + "/ (distinct titles)")!;
      f.examples = ex.slice(0, c.maxExamples);
    }
    for (const [file, n] of occurrences) {
      c.add("replacement-char", file + " (characters in all fields)", "occurrences", undefined, n);
    }
    // Split overlap of (history, target) pairs.
    const pairsByRole = new Map<SplitRole, Map<string, AuditExample>>();
    for (const f of group) {
      if (f.info.role === "unknown") continue;
      if (!pairsByRole.has(f.info.role)) pairsByRole.set(f.info.role, new Map());
      const m = pairsByRole.get(f.info.role)!;
      for (const r of f.rows) {
        const key = JSON.stringify([r.history, r.positive]);
        if (!m.has(key)) m.set(key, { file: f.info.file, row: r.row, detail: "" });
      }
    }
    const roles = (["train", "eval", "test"] as const).filter((r) => pairsByRole.has(r));
    for (let i = 0; i < roles.length; i++) {
      for (let j = i + 1; j < roles.length; j++) {
        const a = pairsByRole.get(roles[i])!, b = pairsByRole.get(roles[j])!;
        const scope = `${folder}/ (${roles[i]} ∩ ${roles[j]})`;
        for (const [key, ex] of a) {
          const other = b.get(key);
          if (!other) continue;
          const target = (JSON.parse(key) as [string[], string])[1];
          c.add("split-overlap", scope, "pairs", {
            file: ex.file,
            row: ex.row,
            detail: `answer ${
              q(target)
            }, same history and answer as ${other.file} row ${other.row}`,
          });
        }
      }
    }
    // Title forms: eval/test titles absent from training that match after loosening.
    const train = group.filter((f) => f.info.role === "train");
    const held = group.filter((f) => f.info.role === "eval" || f.info.role === "test");
    if (train.length > 0 && held.length > 0) {
      const exact = new Set<string>();
      const short = new Map<string, string>();
      for (const f of train) {
        for (const r of f.rows) {
          for (const t of [...r.history, ...r.candidates]) {
            exact.add(t);
            if (!short.has(t.trim())) short.set(t.trim(), t);
          }
        }
      }
      const seen = new Set<string>();
      for (const f of held) {
        for (const r of f.rows) {
          for (const t of [...r.history, ...r.candidates]) {
            if (seen.has(t) || exact.has(t)) continue;
            seen.add(t);
            const tr = short.get(looseTitle(t));
            if (tr === undefined) continue;
            c.add("title-form-mismatch", folder + "/", "titles", {
              file: f.info.file,
              row: r.row,
              detail: `${q(t)} is ${q(tr)} in training`,
            });
          }
        }
      }
    }
    // dpo_ranking files whose users are not the SFT file's users.
    const sft = group.filter((f) => f.info.format === "dmpo" && /sft/i.test(f.info.file));
    if (sft.length === 1) {
      const users = new Set(sft[0].rows.map((r) => JSON.stringify([r.history, r.positive])));
      for (const f of group) {
        if (f.info.format !== "dmpo" || !/dpo/i.test(f.info.file) || f.info.role !== "train") {
          continue;
        }
        const groups = new Map<string, AuditRow>();
        for (const r of f.rows) {
          const k = JSON.stringify([r.history, r.positive]);
          if (!groups.has(k)) groups.set(k, r);
        }
        for (const [k, r] of groups) {
          if (users.has(k)) continue;
          c.add("foreign-users", f.info.file, "users", {
            file: f.info.file,
            row: r.row,
            detail: `(history, positive ${q(r.positive)}) not in ${sft[0].info.file}`,
          });
        }
      }
    }
  }
}

/**
 * The count of one finding (0 when absent).
 *
 * @param report An audit report.
 * @param kind The finding kind.
 * @param scope The file or folder scope, exactly as in the report.
 * @returns The count.
 */
export function findingCount(report: AuditReport, kind: AuditKind, scope: string): number {
  return report.findings.find((f) => f.kind === kind && f.scope === scope)?.count ?? 0;
}

function mdCell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

/**
 * Render a report as markdown: the files read, then one section per defect kind with a
 * table of scopes, counts and examples.
 *
 * @param report The report.
 * @returns Markdown text.
 */
export function formatAuditMarkdown(report: AuditReport): string {
  const out: string[] = [];
  out.push(`# Data audit: ${report.root}`, "");
  out.push("| file | format | split | rows | read as format | positive named first |");
  out.push("|---|---|---|---:|---:|---:|");
  for (const f of report.files) {
    out.push(
      `| ${mdCell(f.file)} | ${f.format} | ${f.role} | ${f.rows} | ${f.parsedRows} | ${
        f.positiveFirst === undefined ? "" : `${f.positiveFirst}/${f.parsedRows}`
      } |`,
    );
  }
  out.push("");
  if (report.findings.length === 0) {
    out.push("No defects found.", "");
    return out.join("\n");
  }
  const kinds = [...new Set(report.findings.map((f) => f.kind))];
  out.push(`${report.findings.length} findings of ${kinds.length} kinds.`, "");
  for (const kind of kinds) {
    const info = AUDIT_KINDS[kind];
    out.push(`## ${info.title} (\`${kind}\`)`, "", info.why + ".", "");
    out.push("| where | count | examples (file, 1-based row) |", "|---|---:|---|");
    for (const f of report.findings.filter((x) => x.kind === kind)) {
      const ex = f.examples.map((e) =>
        `${e.file}${e.row === undefined ? "" : ` row ${e.row}`}: ${e.detail}`
      ).map((s) => (s.length > 160 ? s.slice(0, 159) + "…" : s)).join("<br>");
      out.push(`| ${mdCell(f.scope)} | ${f.count} ${f.unit} | ${mdCell(ex)} |`);
    }
    out.push("");
  }
  return out.join("\n");
}
