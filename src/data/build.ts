/**
 * Builders from raw public datasets into the released formats: S-DPO candidate files
 * (`historyList` / `itemList` / `trueSelection`, laid out like the LastFM files) and DMPO
 * pairwise files (`instruction` / `input` / `output`).
 *
 * Raw layouts read (one reader per dataset, all ending in {@link InteractionLog}):
 * - **MovieLens-1M** (`ml-1m`): `ratings.dat` `UserID::MovieID::Rating::Timestamp` and
 *   `movies.dat` `MovieID::Title::Genres`, Latin-1 (`encoding: "auto"` reads UTF-8 when the
 *   bytes are valid UTF-8, else Latin-1). Items are titled with the full MovieLens title
 *   (`"Toy Story (1995)"`); `titleForm: "short"` gives DMPO's training form instead.
 * - **LastFM hetrec2011** (`lastfm`): `user_artists.dat` `userID\tartistID\tweight` and
 *   `artists.dat` `id\tname\turl\tpictureURL` (tab-separated, header line). Order: when
 *   `user_taggedartists-timestamps.dat` (`userID\tartistID\ttagID\ttimestamp`, ms) is present,
 *   a (user, artist) pair is dated by its first tag; pairs never tagged are dropped (counted
 *   as "no timestamp"). Without that file the order is the file order of `user_artists.dat`
 *   (artist id order, not chronological; the summary says so).
 * - **Amazon reviews** (`amazon`, any category): JSON lines, optionally `.gz`. The reviews
 *   file(s) hold `reviewerID`/`asin`/`unixReviewTime` (2014/2018 releases) or
 *   `user_id`/`parent_asin`/`timestamp` in ms (2023 release); the metadata file (its name
 *   starts with `meta`) holds `asin` or `parent_asin` and `title`.
 * - **Goodreads** (`goodreads`, UCSD Book Graph): `goodreads_interactions_<genre>.json(.gz)`
 *   lines with `user_id`, `book_id`, `date_added` (`"Tue Oct 17 09:39:38 -0700 2017"`), and
 *   `goodreads_books_<genre>.json(.gz)` lines with `book_id`, `title`. The id-remapped CSV
 *   (`goodreads_interactions.csv`) has no dates and no titles and is not read.
 *
 * Samples follow the papers: per user, interactions in time order (ties keep file order),
 * repeats of an item dropped; history = the previous ≤ `maxHistory` items; 19 negatives
 * drawn uniformly (seeded {@link Rng}) among items the user never consumed, never sharing a
 * title with another candidate or with the user's items, and (by default) never a substring
 * of another candidate's title (S-DPO's substring scoring, `FORMATS.md` §1.5); leave-last-out:
 * the last item is the test target, the one before the validation target, earlier ones
 * (with at least `minHistory` items before them) the training targets.
 *
 * Bad input is a {@link DataFormatError} naming file, line and field, or, with
 * `lenient: true`, a counted drop. Unknown item ids (no title) are always counted drops.
 * The counts go to `summary.json` next to the output.
 *
 * @module
 */

import { DataFormatError, InputError } from "../errors.ts";
import { ensureDir, writeFileAtomic } from "../io.ts";
import { Rng } from "../rng.ts";
import { decodeUtf8Strict, invalidUtf8Offset } from "./json_stream.ts";
import { formatSdpoFile, type SdpoSample } from "./sdpo.ts";
import { type DmpoSample, formatDmpoFile, ml1mShortTitle } from "./dmpo.ts";
import { type DmpoWording, MOVIE_WORDING } from "./prompts.ts";

/** The raw datasets a builder exists for. */
export const BUILD_DATASETS = ["ml-1m", "lastfm", "amazon", "goodreads"] as const;

/** A dataset name. */
export type BuildDataset = typeof BUILD_DATASETS[number];

/** Options of the builders. */
export interface BuildOptions {
  /** Seed of every random draw (default 42). */
  seed?: number;
  /** Maximum history length (default 10). */
  maxHistory?: number;
  /** Minimum history length of a sample (default 1). */
  minHistory?: number;
  /** Candidates per S-DPO row, answer included (default 20: 19 negatives). */
  candidates?: number;
  /** Negatives per DMPO preference sample: k rows per target (default 3). */
  dmpoNegatives?: number;
  /** Training targets kept per user, the most recent ones (default 10; `Infinity` = all). */
  maxTrainPerUser?: number;
  /** Keep a seeded random subset of this many users (default: all). */
  maxUsers?: number;
  /** Keep only ratings ≥ this (ML-1M, Amazon, Goodreads; default: keep all). */
  minRating?: number;
  /** Drop and count malformed lines instead of throwing (default false). */
  lenient?: boolean;
  /** Reject a negative whose title contains, or is contained in, another candidate's (default true). */
  avoidSubstringTitles?: boolean;
  /**
   * Where negatives come from: `"interacted"` (default: items someone interacted with) or
   * `"catalogue"` (every titled item of the metadata, interacted or not).
   */
  negativePool?: "interacted" | "catalogue";
  /** Text encoding of ML-1M / LastFM `.dat` files (default `"auto"`). */
  encoding?: "auto" | "utf-8" | "latin1";
  /** ML-1M titles: `"full"` (`"Toy Story (1995)"`, default) or DMPO's training `"short"` form. */
  titleForm?: "full" | "short";
  /** DMPO instruction wording (default per dataset). */
  wording?: DmpoWording;
}

/** Defaults of {@link BuildOptions}. */
export const DEFAULT_BUILD_OPTIONS: Readonly<
  Required<Omit<BuildOptions, "maxUsers" | "minRating" | "wording">>
> = {
  seed: 42,
  maxHistory: 10,
  minHistory: 1,
  candidates: 20,
  dmpoNegatives: 3,
  maxTrainPerUser: 10,
  lenient: false,
  avoidSubstringTitles: true,
  encoding: "auto",
  titleForm: "full",
  negativePool: "interacted",
};

/** DMPO wording per dataset (ML-1M: the released movie wording). */
export const BUILD_WORDING: Readonly<Record<BuildDataset, DmpoWording>> = {
  "ml-1m": MOVIE_WORDING,
  lastfm: {
    domain: "music",
    historyNoun: "artists",
    consumed: "listened to",
    consuming: "listening to",
    candidateNoun: "artists",
  },
  amazon: {
    domain: "product",
    historyNoun: "products",
    consumed: "bought",
    consuming: "buying",
    candidateNoun: "products",
  },
  goodreads: {
    domain: "book",
    historyNoun: "books",
    consumed: "read",
    consuming: "reading",
    candidateNoun: "books",
  },
};

/** What a build read, kept, dropped and wrote (saved as `summary.json`). */
export interface BuildSummary {
  /** Dataset name. */
  dataset: string;
  /** The options used (defaults filled in). */
  options: Record<string, unknown>;
  /** Raw files read, with their line counts and the encoding used. */
  inputs: Array<{ file: string; lines: number; encoding?: string }>;
  /** How interactions were ordered per user. */
  order: string;
  /** Interaction lines read. */
  rowsRead: number;
  /** Interactions kept for sample building. */
  kept: number;
  /** Lines or interactions left out, by reason. */
  dropped: Record<string, number>;
  /** Up to 3 examples per drop reason (`file:line: detail`). */
  dropExamples: Record<string, string[]>;
  /** Users with samples. */
  users: number;
  /** Users left out, by reason. */
  usersDropped: Record<string, number>;
  /** Items (distinct titled items in kept interactions). */
  items: number;
  /** Warnings (e.g. titles shared by several item ids). */
  warnings: Record<string, number>;
  /** Rows written per output file (relative to the output folder). */
  outputs: Record<string, number>;
  /** Wall-clock seconds: reading, building, writing. */
  seconds: { read: number; build: number; write: number };
}

/** Interactions read from raw files, as parallel columns. */
export class InteractionLog {
  /** User id strings by user index. */
  readonly userIds: string[] = [];
  /** Item id strings by item index. */
  readonly itemIds: string[] = [];
  /** Item titles by item index (`undefined`: no title known). */
  readonly titles: (string | undefined)[] = [];
  /** Column: user index per interaction. */
  user: number[] = [];
  /** Column: item index per interaction. */
  item: number[] = [];
  /** Column: time per interaction (any monotone unit; file order breaks ties). */
  time: number[] = [];
  private userIndex = new Map<string, number>();
  private itemIndex = new Map<string, number>();

  /** Register an item with its title (a later title for the same id is ignored). */
  addItem(id: string, title: string): number {
    let i = this.itemIndex.get(id);
    if (i === undefined) {
      i = this.itemIds.length;
      this.itemIndex.set(id, i);
      this.itemIds.push(id);
      this.titles.push(title);
    } else if (this.titles[i] === undefined) this.titles[i] = title;
    return i;
  }

  /** The index of a registered item, or undefined. */
  itemOf(id: string): number | undefined {
    return this.itemIndex.get(id);
  }

  /** Append an interaction of a registered item. */
  push(userId: string, item: number, time: number): void {
    let u = this.userIndex.get(userId);
    if (u === undefined) {
      u = this.userIds.length;
      this.userIndex.set(userId, u);
      this.userIds.push(userId);
    }
    this.user.push(u);
    this.item.push(item);
    this.time.push(time);
  }

  /** Number of interactions. */
  get length(): number {
    return this.user.length;
  }
}

/** Built samples, before writing. */
export interface BuiltDataset {
  /** S-DPO rows per split. */
  sdpo: { train: SdpoSample[]; valid: SdpoSample[]; test: SdpoSample[] };
  /** DMPO rows: SFT (string output), preference pairs (k per target), valid and test pairs. */
  dmpo: { sft: DmpoSample[]; dpo: DmpoSample[]; valid: DmpoSample[]; test: DmpoSample[] };
}

// ---------------------------------------------------------------------------------------
// Shared reading helpers

/** Summary under construction plus the drop/throw policy. */
class Reader {
  constructor(readonly summary: BuildSummary, readonly lenient: boolean) {}

  /** A bad line: throw, or (lenient) count it under `reason`. */
  bad(file: string, line: number, field: string | undefined, problem: string, reason: string) {
    if (!this.lenient) {
      throw new DataFormatError({ file, row: line, field }, `line ${line}: ${problem}`);
    }
    this.drop(reason, `${file}:${line}: ${field ? `field "${field}": ` : ""}${problem}`);
  }

  /** Count a dropped line or interaction. */
  drop(reason: string, example: string, n = 1): void {
    const s = this.summary;
    s.dropped[reason] = (s.dropped[reason] ?? 0) + n;
    const ex = (s.dropExamples[reason] ??= []);
    if (ex.length < 3) ex.push(example);
  }
}

function latin1(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return out;
}

/**
 * Decode a raw text file: strict UTF-8, Latin-1, or `"auto"` (UTF-8 when the bytes are
 * valid UTF-8, else Latin-1).
 *
 * @param bytes The file's bytes.
 * @param file The file name, for errors.
 * @param encoding The encoding.
 * @returns The text and the encoding used.
 * @throws {DataFormatError} on invalid UTF-8 when `encoding` is `"utf-8"` (byte offset, line).
 */
export function decodeRawText(
  bytes: Uint8Array,
  file: string,
  encoding: "auto" | "utf-8" | "latin1" = "auto",
): { text: string; encoding: "utf-8" | "latin1" } {
  if (encoding === "latin1") return { text: latin1(bytes), encoding };
  if (encoding === "utf-8" || invalidUtf8Offset(bytes) < 0) {
    return { text: decodeUtf8Strict(bytes, file), encoding: "utf-8" };
  }
  return { text: latin1(bytes), encoding: "latin1" };
}

/** Call `fn(line, lineNumber)` for every non-empty line (CR LF and LF endings). */
function eachLine(text: string, fn: (line: string, n: number) => void): number {
  let pos = 0, n = 0;
  if (text.charCodeAt(0) === 0xfeff) pos = 1;
  while (pos < text.length) {
    let nl = text.indexOf("\n", pos);
    if (nl === -1) nl = text.length;
    let line = text.slice(pos, nl);
    pos = nl + 1;
    n++;
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (line !== "") fn(line, n);
  }
  return n;
}

async function readRaw(
  path: string,
  r: Reader,
  encoding: "auto" | "utf-8" | "latin1",
): Promise<string> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new DataFormatError({ file: path }, "file not found", { cause: err });
    }
    throw err;
  }
  const d = decodeRawText(bytes, path, encoding);
  r.summary.inputs.push({ file: path, lines: 0, encoding: d.encoding });
  return d.text;
}

function setLines(r: Reader, path: string, n: number): void {
  const e = r.summary.inputs.find((x) => x.file === path);
  if (e) e.lines = n;
  else r.summary.inputs.push({ file: path, lines: n });
}

function intField(
  r: Reader,
  s: string | undefined,
  file: string,
  line: number,
  field: string,
): number | undefined {
  if (s === undefined || s === "") {
    r.bad(file, line, field, "missing", "malformed line");
    return undefined;
  }
  const v = Number(s);
  if (!Number.isFinite(v) || !/^-?[0-9]+(\.[0-9]+)?$/.test(s.trim())) {
    r.bad(file, line, field, `expected a number, got ${JSON.stringify(s)}`, "malformed line");
    return undefined;
  }
  return v;
}

/** Lines of a JSON-lines file (optionally gzip-compressed), streamed, strict UTF-8. */
async function* jsonLines(path: string): AsyncGenerator<{ text: string; line: number }> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new DataFormatError({ file: path }, "file not found", { cause: err });
    }
    throw err;
  }
  let stream: ReadableStream<Uint8Array> = file.readable;
  if (path.endsWith(".gz")) {
    const gunzip = new DecompressionStream("gzip") as unknown as TransformStream<
      Uint8Array,
      Uint8Array
    >;
    stream = stream.pipeThrough(gunzip);
  }
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let buf = "", line = 0;
  try {
    for await (const chunk of stream) {
      try {
        buf += decoder.decode(chunk, { stream: true });
      } catch (err) {
        throw new DataFormatError(
          { file: path, row: line + 1 },
          `line ${line + 1} or the next: invalid UTF-8 (expected UTF-8 JSON lines)`,
          { cause: err },
        );
      }
      let nl: number;
      while ((nl = buf.indexOf("\n")) !== -1) {
        line++;
        const t = buf.slice(0, nl).replace(/\r$/, "");
        buf = buf.slice(nl + 1);
        if (t.trim() !== "") yield { text: t, line };
      }
    }
    buf += decoder.decode();
  } catch (err) {
    if (err instanceof DataFormatError) throw err;
    throw new DataFormatError({ file: path, row: line + 1 }, `cannot read: ${err}`, { cause: err });
  }
  if (buf.trim() !== "") yield { text: buf.replace(/\r$/, ""), line: line + 1 };
}

function parseJsonLine(
  r: Reader,
  file: string,
  l: { text: string; line: number },
): Record<string, unknown> | undefined {
  let v: unknown;
  try {
    v = JSON.parse(l.text);
  } catch (err) {
    const hint = l.text.startsWith("{'")
      ? " (a Python dict literal: the 2014 Amazon metadata is not JSON; use the 2018 or 2023 files)"
      : "";
    r.bad(
      file,
      l.line,
      undefined,
      `not valid JSON${hint}: ${(err as Error).message}`,
      "malformed line",
    );
    return undefined;
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) {
    r.bad(file, l.line, undefined, "expected a JSON object", "malformed line");
    return undefined;
  }
  return v as Record<string, unknown>;
}

function pickString(o: Record<string, unknown>, keys: readonly string[]): string | undefined {
  for (const k of keys) {
    const v = o[k];
    if (typeof v === "string" && v !== "") return v;
    if (typeof v === "number") return String(v);
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------
// Readers per dataset

const RATING_LINE = /^(\d+)::(\d+)::(\d+)::(\d+)$/;

/**
 * Read MovieLens-1M (`ratings.dat`, `movies.dat`).
 *
 * @param rawDir Folder holding the two files.
 * @param options Build options.
 * @param summary Summary to fill.
 * @returns The interactions.
 */
export async function readMovieLens1m(
  rawDir: string,
  options: BuildOptions,
  summary: BuildSummary,
): Promise<InteractionLog> {
  const o = { ...DEFAULT_BUILD_OPTIONS, ...options };
  const r = new Reader(summary, o.lenient);
  const log = new InteractionLog();
  const moviesPath = `${rawDir}/movies.dat`;
  const movies = await readRaw(moviesPath, r, o.encoding);
  setLines(
    r,
    moviesPath,
    eachLine(movies, (line, n) => {
      const f = line.split("::");
      if (f.length !== 3) {
        r.bad(
          moviesPath,
          n,
          ["MovieID", "Title", "Genres"][Math.min(f.length, 2)],
          `expected 3 "::"-separated fields (MovieID::Title::Genres), got ${f.length}`,
          "malformed line",
        );
        return;
      }
      if (intField(r, f[0], moviesPath, n, "MovieID") === undefined) return;
      if (f[1] === "") return r.bad(moviesPath, n, "Title", "empty title", "malformed line");
      log.addItem(f[0], o.titleForm === "short" ? ml1mShortTitle(f[1]) : f[1]);
    }),
  );
  const ratingsPath = `${rawDir}/ratings.dat`;
  const ratings = await readRaw(ratingsPath, r, o.encoding);
  const FIELDS = ["UserID", "MovieID", "Rating", "Timestamp"];
  setLines(
    r,
    ratingsPath,
    eachLine(ratings, (line, n) => {
      summary.rowsRead++;
      const m = RATING_LINE.exec(line);
      if (m !== null) {
        // Fast path: a well-formed line.
        const item = log.itemOf(m[2]);
        const rating = +m[3];
        if (item !== undefined && (o.minRating === undefined || rating >= o.minRating)) {
          log.push(m[1], item, +m[4]);
          return;
        }
      }
      const f = line.split("::");
      if (f.length !== 4) {
        r.bad(
          ratingsPath,
          n,
          FIELDS[Math.min(f.length, 3)],
          `expected 4 "::"-separated fields (UserID::MovieID::Rating::Timestamp), got ${f.length}`,
          "malformed line",
        );
        return;
      }
      if (intField(r, f[0], ratingsPath, n, "UserID") === undefined) return;
      if (intField(r, f[1], ratingsPath, n, "MovieID") === undefined) return;
      const rating = intField(r, f[2], ratingsPath, n, "Rating");
      if (rating === undefined) return;
      const ts = intField(r, f[3], ratingsPath, n, "Timestamp");
      if (ts === undefined) return;
      const item = log.itemOf(f[1]);
      if (item === undefined) {
        r.drop("unknown item id", `${ratingsPath}:${n}: MovieID ${f[1]} not in movies.dat`);
        return;
      }
      if (o.minRating !== undefined && rating < o.minRating) {
        r.drop(`rating below ${o.minRating}`, `${ratingsPath}:${n}`);
        return;
      }
      log.push(f[0], item, ts);
    }),
  );
  summary.order = "Timestamp (seconds), ties in file order";
  return log;
}

/**
 * Read LastFM hetrec2011 (`user_artists.dat`, `artists.dat`, optional
 * `user_taggedartists-timestamps.dat`).
 *
 * @param rawDir Folder holding the files.
 * @param options Build options.
 * @param summary Summary to fill.
 * @returns The interactions.
 */
export async function readLastfm(
  rawDir: string,
  options: BuildOptions,
  summary: BuildSummary,
): Promise<InteractionLog> {
  const o = { ...DEFAULT_BUILD_OPTIONS, ...options };
  const r = new Reader(summary, o.lenient);
  const log = new InteractionLog();
  const header = (first: string, line: string) => line.startsWith(first);
  const artistsPath = `${rawDir}/artists.dat`;
  const artists = await readRaw(artistsPath, r, o.encoding);
  setLines(
    r,
    artistsPath,
    eachLine(artists, (line, n) => {
      if (n === 1 && header("id\t", line)) return;
      const f = line.split("\t");
      if (f.length < 2) {
        r.bad(
          artistsPath,
          n,
          "name",
          `expected id<TAB>name<TAB>…, got ${f.length} field`,
          "malformed line",
        );
        return;
      }
      if (intField(r, f[0], artistsPath, n, "id") === undefined) return;
      if (f[1] === "") return r.bad(artistsPath, n, "name", "empty name", "malformed line");
      log.addItem(f[0], f[1]);
    }),
  );
  // Optional timestamps: first tag time of each (user, artist).
  const tsPath = `${rawDir}/user_taggedartists-timestamps.dat`;
  let firstTag: Map<string, number> | undefined;
  try {
    await Deno.stat(tsPath);
    firstTag = new Map();
  } catch {
    firstTag = undefined;
  }
  if (firstTag) {
    const tsText = await readRaw(tsPath, r, o.encoding);
    setLines(
      r,
      tsPath,
      eachLine(tsText, (line, n) => {
        if (n === 1 && header("userID\t", line)) return;
        const f = line.split("\t");
        const names = ["userID", "artistID", "tagID", "timestamp"];
        if (f.length !== 4) {
          r.bad(
            tsPath,
            n,
            names[Math.min(f.length, 3)],
            `expected 4 tab-separated fields, got ${f.length}`,
            "malformed line",
          );
          return;
        }
        const t = intField(r, f[3], tsPath, n, "timestamp");
        if (t === undefined) return;
        const key = f[0] + "\t" + f[1];
        const old = firstTag!.get(key);
        if (old === undefined || t < old) firstTag!.set(key, t);
      }),
    );
  }
  const uaPath = `${rawDir}/user_artists.dat`;
  const ua = await readRaw(uaPath, r, o.encoding);
  setLines(
    r,
    uaPath,
    eachLine(ua, (line, n) => {
      if (n === 1 && header("userID\t", line)) return;
      summary.rowsRead++;
      const f = line.split("\t");
      const names = ["userID", "artistID", "weight"];
      if (f.length !== 3) {
        r.bad(
          uaPath,
          n,
          names[Math.min(f.length, 2)],
          `expected 3 tab-separated fields (userID, artistID, weight), got ${f.length}`,
          "malformed line",
        );
        return;
      }
      if (intField(r, f[0], uaPath, n, "userID") === undefined) return;
      if (intField(r, f[1], uaPath, n, "artistID") === undefined) return;
      if (intField(r, f[2], uaPath, n, "weight") === undefined) return;
      const item = log.itemOf(f[1]);
      if (item === undefined) {
        r.drop("unknown item id", `${uaPath}:${n}: artistID ${f[1]} not in artists.dat`);
        return;
      }
      let t = n;
      if (firstTag) {
        const ts = firstTag.get(f[0] + "\t" + f[1]);
        if (ts === undefined) {
          r.drop(
            "no timestamp (pair never tagged)",
            `${uaPath}:${n}: user ${f[0]}, artist ${f[1]}`,
          );
          return;
        }
        t = ts;
      }
      log.push(f[0], item, t);
    }),
  );
  summary.order = firstTag
    ? "first tag timestamp of the (user, artist) pair in user_taggedartists-timestamps.dat; untagged pairs dropped"
    : "file order of user_artists.dat (no timestamps file: artist-id order, NOT chronological)";
  return log;
}

async function jsonLineFiles(rawDir: string, test: (name: string) => boolean): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(rawDir)) {
    if (e.isFile && /\.(json|jsonl)(\.gz)?$/i.test(e.name) && test(e.name)) {
      out.push(`${rawDir}/${e.name}`);
    }
  }
  return out.sort();
}

/**
 * Read Amazon reviews (JSON lines, 2014/2018 or 2023 field names, optionally gzip'd): every
 * `*.json(l)(.gz)` file whose name starts with `meta` is metadata, every other one reviews.
 *
 * @param rawDir Folder holding the files.
 * @param options Build options.
 * @param summary Summary to fill.
 * @returns The interactions.
 */
export async function readAmazon(
  rawDir: string,
  options: BuildOptions,
  summary: BuildSummary,
): Promise<InteractionLog> {
  const o = { ...DEFAULT_BUILD_OPTIONS, ...options };
  const r = new Reader(summary, o.lenient);
  const log = new InteractionLog();
  const metas = await jsonLineFiles(rawDir, (n) => /^meta/i.test(n));
  const reviews = await jsonLineFiles(rawDir, (n) => !/^meta/i.test(n) && n !== "summary.json");
  if (metas.length === 0) {
    throw new DataFormatError({ file: rawDir }, "no metadata file (meta*.json, meta*.jsonl, .gz)");
  }
  if (reviews.length === 0) {
    throw new DataFormatError({ file: rawDir }, "no reviews file (*.json, *.jsonl, .gz)");
  }
  for (const file of metas) {
    let lines = 0;
    for await (const l of jsonLines(file)) {
      lines = l.line;
      const v = parseJsonLine(r, file, l);
      if (!v) continue;
      const id = pickString(v, ["parent_asin", "asin"]);
      if (id === undefined) {
        r.bad(file, l.line, "asin", "missing (expected asin or parent_asin)", "malformed line");
        continue;
      }
      const title = typeof v.title === "string" ? v.title : undefined;
      if (title === undefined || title.trim() === "") {
        r.drop("metadata without title", `${file}:${l.line}: ${id}`);
        continue;
      }
      log.addItem(id, title);
    }
    setLines(r, file, lines);
  }
  for (const file of reviews) {
    let lines = 0;
    for await (const l of jsonLines(file)) {
      lines = l.line;
      summary.rowsRead++;
      const v = parseJsonLine(r, file, l);
      if (!v) continue;
      const user = pickString(v, ["reviewerID", "user_id"]);
      if (user === undefined) {
        r.bad(
          file,
          l.line,
          "reviewerID",
          "missing (expected reviewerID or user_id)",
          "malformed line",
        );
        continue;
      }
      const id = pickString(v, ["parent_asin", "asin"]);
      if (id === undefined) {
        r.bad(file, l.line, "asin", "missing (expected asin or parent_asin)", "malformed line");
        continue;
      }
      let t: number | undefined;
      if (typeof v.unixReviewTime === "number") t = v.unixReviewTime;
      else if (typeof v.timestamp === "number") t = v.timestamp / 1000;
      if (t === undefined) {
        r.bad(
          file,
          l.line,
          "unixReviewTime",
          "missing (expected unixReviewTime or timestamp)",
          "malformed line",
        );
        continue;
      }
      const rating = typeof v.overall === "number"
        ? v.overall
        : typeof v.rating === "number"
        ? v.rating
        : undefined;
      if (o.minRating !== undefined && (rating ?? -Infinity) < o.minRating) {
        r.drop(`rating below ${o.minRating}`, `${file}:${l.line}`);
        continue;
      }
      const item = log.itemOf(id);
      if (item === undefined) {
        r.drop("unknown item id", `${file}:${l.line}: ${id} has no title in the metadata`);
        continue;
      }
      log.push(user, item, t);
    }
    setLines(r, file, lines);
  }
  summary.order = "unixReviewTime (or timestamp / 1000), ties in file order";
  return log;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * Parse a Goodreads date (`"Tue Oct 17 09:39:38 -0700 2017"`) to Unix seconds.
 *
 * @param s The date text.
 * @returns Seconds since the epoch, or undefined when the text is not such a date.
 */
export function parseGoodreadsDate(s: string): number | undefined {
  const m =
    /^[A-Z][a-z]{2} ([A-Z][a-z]{2}) (\d{1,2}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2}) (\d{4})$/
      .exec(s);
  if (!m) return undefined;
  const month = MONTHS.indexOf(m[1]);
  if (month < 0) return undefined;
  const utc = Date.UTC(+m[9], month, +m[2], +m[3], +m[4], +m[5]) / 1000;
  const off = (m[6] === "-" ? -1 : 1) * (+m[7] * 3600 + +m[8] * 60);
  return utc - off;
}

/**
 * Read Goodreads (UCSD Book Graph JSON lines): `*interactions*.json(l)(.gz)` and
 * `*books*.json(l)(.gz)`.
 *
 * @param rawDir Folder holding the files.
 * @param options Build options.
 * @param summary Summary to fill.
 * @returns The interactions.
 */
export async function readGoodreads(
  rawDir: string,
  options: BuildOptions,
  summary: BuildSummary,
): Promise<InteractionLog> {
  const o = { ...DEFAULT_BUILD_OPTIONS, ...options };
  const r = new Reader(summary, o.lenient);
  const log = new InteractionLog();
  const books = await jsonLineFiles(rawDir, (n) => /books/i.test(n));
  const inter = await jsonLineFiles(rawDir, (n) => /interactions/i.test(n));
  if (books.length === 0) {
    throw new DataFormatError({ file: rawDir }, "no books file (*books*.json(l)(.gz))");
  }
  if (inter.length === 0) {
    throw new DataFormatError(
      { file: rawDir },
      "no interactions file (*interactions*.json(l)(.gz))",
    );
  }
  for (const file of books) {
    let lines = 0;
    for await (const l of jsonLines(file)) {
      lines = l.line;
      const v = parseJsonLine(r, file, l);
      if (!v) continue;
      const id = pickString(v, ["book_id"]);
      if (id === undefined) {
        r.bad(file, l.line, "book_id", "missing", "malformed line");
        continue;
      }
      const title = pickString(v, ["title", "title_without_series"]);
      if (title === undefined || title.trim() === "") {
        r.drop("book without title", `${file}:${l.line}: ${id}`);
        continue;
      }
      log.addItem(id, title);
    }
    setLines(r, file, lines);
  }
  for (const file of inter) {
    let lines = 0;
    for await (const l of jsonLines(file)) {
      lines = l.line;
      summary.rowsRead++;
      const v = parseJsonLine(r, file, l);
      if (!v) continue;
      const user = pickString(v, ["user_id"]);
      if (user === undefined) {
        r.bad(file, l.line, "user_id", "missing", "malformed line");
        continue;
      }
      const id = pickString(v, ["book_id"]);
      if (id === undefined) {
        r.bad(file, l.line, "book_id", "missing", "malformed line");
        continue;
      }
      const d = typeof v.date_added === "string" ? v.date_added : undefined;
      const t = d === undefined ? undefined : parseGoodreadsDate(d);
      if (t === undefined) {
        r.bad(
          file,
          l.line,
          "date_added",
          `expected a date like "Tue Oct 17 09:39:38 -0700 2017", got ${
            JSON.stringify(v.date_added)
          }`,
          "malformed line",
        );
        continue;
      }
      const rating = typeof v.rating === "number" ? v.rating : undefined;
      if (o.minRating !== undefined && (rating ?? -Infinity) < o.minRating) {
        r.drop(`rating below ${o.minRating}`, `${file}:${l.line}`);
        continue;
      }
      const item = log.itemOf(id);
      if (item === undefined) {
        r.drop("unknown item id", `${file}:${l.line}: book_id ${id} not in the books file`);
        continue;
      }
      log.push(user, item, t);
    }
    setLines(r, file, lines);
  }
  summary.order = "date_added, ties in file order";
  return log;
}

// ---------------------------------------------------------------------------------------
// Sample building

/**
 * Turn interactions into S-DPO and DMPO samples (leave-last-out; see the module doc).
 *
 * @param log The interactions.
 * @param options Build options.
 * @param summary Summary to fill (users, items, drops).
 * @param wording DMPO wording.
 * @returns The samples per format and split.
 * @throws {InputError} when there are too few items to draw the negatives.
 */
export function buildSamples(
  log: InteractionLog,
  options: BuildOptions,
  summary: BuildSummary,
  wording: DmpoWording,
): BuiltDataset {
  const o = { ...DEFAULT_BUILD_OPTIONS, ...options };
  const nNeg = o.candidates - 1;
  if (!(nNeg >= 1)) throw new InputError("candidates", `expected at least 2, got ${o.candidates}`);
  if (!(o.dmpoNegatives >= 1 && o.dmpoNegatives <= nNeg)) {
    throw new InputError("dmpoNegatives", `expected 1..${nNeg}, got ${o.dmpoNegatives}`);
  }
  if (!(o.minHistory >= 1)) throw new InputError("minHistory", `expected ≥ 1, got ${o.minHistory}`);
  const rng = new Rng(o.seed);
  const subsetRng = rng.fork();
  const sampleRng = rng.fork();
  const nUsers = log.userIds.length;
  const n = log.length;
  // Counting sort by user (stable: file order within a user), then by time within a user.
  const count = new Int32Array(nUsers + 1);
  for (let i = 0; i < n; i++) count[log.user[i] + 1]++;
  for (let u = 0; u < nUsers; u++) count[u + 1] += count[u];
  const order = new Int32Array(n);
  const fill = count.slice(0, nUsers);
  for (let i = 0; i < n; i++) order[fill[log.user[i]]++] = i;
  const time = log.time;
  let users: number[] = [];
  for (let u = 0; u < nUsers; u++) users.push(u);
  if (o.maxUsers !== undefined && o.maxUsers < nUsers) {
    users = subsetRng.sample(users, o.maxUsers).sort((a, b) => a - b);
    summary.usersDropped["not in the random user subset"] = nUsers - o.maxUsers;
  }
  // Per-user sequences (item indices), repeats removed.
  const seqs: number[][] = [];
  const titleOwner = new Map<string, number>();
  let repeats = 0;
  for (const u of users) {
    const idx = Array.from(order.subarray(count[u], count[u + 1]));
    idx.sort((a, b) => time[a] - time[b] || a - b);
    const seen = new Set<string>();
    const seq: number[] = [];
    for (const i of idx) {
      const t = log.titles[log.item[i]]!;
      if (seen.has(t)) {
        repeats++;
        continue;
      }
      seen.add(t);
      seq.push(log.item[i]);
    }
    if (seq.length < o.minHistory + 2) {
      const k = `fewer than ${o.minHistory + 2} distinct items`;
      summary.usersDropped[k] = (summary.usersDropped[k] ?? 0) + 1;
      continue;
    }
    seqs.push(seq);
  }
  if (repeats > 0) summary.dropped["repeat of an item the user already had"] = repeats;
  // Item pool: one entry per distinct title among interacted (or all) items, before user subsetting.
  const inPool = new Uint8Array(log.itemIds.length);
  let shared = 0;
  const poolItems = o.negativePool === "catalogue"
    ? log.titles.flatMap((t, i) => (t === undefined ? [] : [i]))
    : log.item;
  for (let i = 0; i < poolItems.length; i++) {
    const it = poolItems[i];
    if (inPool[it]) continue;
    inPool[it] = 1;
    const t = log.titles[it]!;
    if (titleOwner.has(t)) shared++;
    else titleOwner.set(t, it);
  }
  if (shared > 0) summary.warnings["item ids whose title another item id already has"] = shared;
  const pool = [...titleOwner.keys()];
  summary.items = pool.length;
  summary.kept = seqs.reduce((s, q) => s + q.length, 0);
  if (pool.length < o.candidates + o.maxHistory) {
    throw new InputError(
      "raw data",
      `only ${pool.length} distinct items: need more than ${
        o.candidates + o.maxHistory
      } to draw ${nNeg} negatives`,
    );
  }
  const out: BuiltDataset = {
    sdpo: { train: [], valid: [], test: [] },
    dmpo: { sft: [], dpo: [], valid: [], test: [] },
  };
  const clash = (a: string, b: string) => a.includes(b) || b.includes(a);
  let usersOut = 0;
  for (const seq of seqs) {
    const titles = seq.map((it) => log.titles[it]!);
    const consumed = new Set(titles);
    if (pool.length - consumed.size < nNeg) {
      summary.usersDropped["too few unconsumed items for negatives"] =
        (summary.usersDropped["too few unconsumed items for negatives"] ?? 0) + 1;
      continue;
    }
    usersOut++;
    const last = seq.length - 1;
    const trainTargets: number[] = [];
    for (let i = Math.max(o.minHistory, last - 1 - o.maxTrainPerUser); i <= last - 2; i++) {
      trainTargets.push(i);
    }
    const targets: Array<[number, "train" | "valid" | "test"]> = [
      ...trainTargets.map((i): [number, "train"] => [i, "train"]),
      [last - 1, "valid"],
      [last, "test"],
    ];
    for (const [i, split] of targets) {
      const positive = titles[i];
      const history = titles.slice(Math.max(0, i - o.maxHistory), i);
      const negatives: string[] = [];
      let tries = 0;
      while (negatives.length < nNeg) {
        if (++tries > 10000 * nNeg) {
          throw new InputError(
            "raw data",
            `cannot draw ${nNeg} negatives for a user: too few suitable items`,
          );
        }
        const t = pool[sampleRng.int(pool.length)];
        if (consumed.has(t) || negatives.includes(t)) continue;
        if (o.avoidSubstringTitles && (clash(t, positive) || negatives.some((x) => clash(t, x)))) {
          continue;
        }
        negatives.push(t);
      }
      const candidates = sampleRng.shuffle([...negatives, positive]);
      out.sdpo[split].push({
        history,
        candidates,
        positive,
        negatives: candidates.filter((c) => c !== positive),
      });
      const pair = (negative: string, kind: "string" | "pair"): DmpoSample => {
        const first = sampleRng.next() < 0.5;
        return {
          history,
          candidates: first ? [positive, negative] : [negative, positive],
          positive,
          negative,
          wording,
          outputKind: kind,
          input: "",
        };
      };
      if (split === "train") {
        out.dmpo.sft.push(pair(negatives[0], "string"));
        for (let k = 0; k < o.dmpoNegatives; k++) out.dmpo.dpo.push(pair(negatives[k], "pair"));
      } else out.dmpo[split].push(pair(negatives[0], "pair"));
    }
  }
  summary.users = usersOut;
  return out;
}

/** Output files of a build, relative to the output folder. */
export function buildOutputFiles(k: number): Record<string, string> {
  return {
    "sdpo.train": "sdpo/train.json",
    "sdpo.valid": "sdpo/valid.json",
    "sdpo.test": "sdpo/test.json",
    "dmpo.sft": "dmpo/sft.json",
    "dmpo.dpo": `dmpo/dpo_k${k}.json`,
    "dmpo.valid": "dmpo/valid.json",
    "dmpo.test": "dmpo/test.json",
  };
}

/** A fresh, empty summary. */
export function emptyBuildSummary(dataset: string, options: BuildOptions): BuildSummary {
  return {
    dataset,
    options: { ...DEFAULT_BUILD_OPTIONS, ...options },
    inputs: [],
    order: "",
    rowsRead: 0,
    kept: 0,
    dropped: {},
    dropExamples: {},
    users: 0,
    usersDropped: {},
    items: 0,
    warnings: {},
    outputs: {},
    seconds: { read: 0, build: 0, write: 0 },
  };
}

const READERS: Record<
  BuildDataset,
  (dir: string, o: BuildOptions, s: BuildSummary) => Promise<InteractionLog>
> = {
  "ml-1m": readMovieLens1m,
  lastfm: readLastfm,
  amazon: readAmazon,
  goodreads: readGoodreads,
};

/**
 * Build a dataset: read the raw folder, build samples, write S-DPO files
 * (`sdpo/{train,valid,test}.json`, LastFM layout), DMPO files (`dmpo/sft.json`,
 * `dmpo/dpo_k{k}.json`, `dmpo/{valid,test}.json`) and `summary.json` into `outDir`.
 *
 * @example Usage
 * ```ts ignore
 * const summary = await buildDataset("ml-1m", "data/raw/ml-1m", "data/built/ml-1m", { seed: 1 });
 * ```
 *
 * @param dataset Which raw dataset.
 * @param rawDir Folder of the raw files.
 * @param outDir Output folder (created).
 * @param options Build options.
 * @returns The summary (also saved as `outDir/summary.json`).
 * @throws {DataFormatError} on bad input (unless `lenient`); {@link InputError} on options.
 */
export async function buildDataset(
  dataset: BuildDataset,
  rawDir: string,
  outDir: string,
  options: BuildOptions = {},
): Promise<BuildSummary> {
  const reader = READERS[dataset];
  if (!reader) {
    throw new InputError(
      "dataset",
      `expected one of ${BUILD_DATASETS.join(", ")}, got ${JSON.stringify(dataset)}`,
    );
  }
  const summary = emptyBuildSummary(dataset, options);
  let t0 = performance.now();
  const log = await reader(rawDir, options, summary);
  summary.seconds.read = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const built = buildSamples(log, options, summary, options.wording ?? BUILD_WORDING[dataset]);
  summary.seconds.build = (performance.now() - t0) / 1000;
  t0 = performance.now();
  await writeBuilt(
    outDir,
    built,
    summary,
    options.dmpoNegatives ?? DEFAULT_BUILD_OPTIONS.dmpoNegatives,
  );
  summary.seconds.write = (performance.now() - t0) / 1000;
  await writeFileAtomic(`${outDir}/summary.json`, JSON.stringify(summary, null, 2) + "\n");
  return summary;
}

/**
 * Write built samples (see {@link buildOutputFiles}) and record row counts in the summary.
 *
 * @param outDir Output folder.
 * @param built The samples.
 * @param summary Summary to fill (`outputs`).
 * @param k Negatives per DMPO target (for the file name).
 */
export async function writeBuilt(
  outDir: string,
  built: BuiltDataset,
  summary: BuildSummary,
  k: number,
): Promise<void> {
  const files = buildOutputFiles(k);
  await ensureDir(`${outDir}/sdpo`);
  await ensureDir(`${outDir}/dmpo`);
  for (const split of ["train", "valid", "test"] as const) {
    const rel = files[`sdpo.${split}`];
    await writeFileAtomic(`${outDir}/${rel}`, formatSdpoFile(built.sdpo[split]));
    summary.outputs[rel] = built.sdpo[split].length;
  }
  for (const part of ["sft", "dpo", "valid", "test"] as const) {
    const rel = files[`dmpo.${part}`];
    await writeFileAtomic(`${outDir}/${rel}`, formatDmpoFile(built.dmpo[part]));
    summary.outputs[rel] = built.dmpo[part].length;
  }
}

/**
 * One line per fact of a summary, for the CLI.
 *
 * @param s The summary.
 * @returns Text.
 */
export function formatBuildSummary(s: BuildSummary): string {
  const list = (r: Record<string, number>) =>
    Object.entries(r).map(([k, v]) => `${v} × ${k}`).join("; ") || "none";
  const lines = [
    `${s.dataset}: ${s.rowsRead} interaction lines read, ${s.kept} interactions kept`,
    `  dropped: ${list(s.dropped)}`,
    ...Object.entries(s.dropExamples).flatMap(([k, ex]) => ex.map((e) => `    ${k}: ${e}`)),
    `  users: ${s.users} (left out: ${list(s.usersDropped)}); items: ${s.items}`,
    `  order: ${s.order}`,
    `  warnings: ${list(s.warnings)}`,
    `  wrote: ${Object.entries(s.outputs).map(([f, n]) => `${f} (${n})`).join(", ")}`,
    `  seconds: read ${s.seconds.read.toFixed(2)}, build ${s.seconds.build.toFixed(2)}, write ${
      s.seconds.write.toFixed(2)
    }`,
  ];
  return lines.join("\n");
}
