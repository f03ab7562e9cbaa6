/**
 * Downloads: the papers' released files (`deno task data fetch`) and the raw public datasets
 * the builders (`build.ts`) read, into `data/raw/`.
 *
 * - {@link RELEASED_FILES} / {@link fetchReleased}: S-DPO's LastFM files and DMPO's ML-1M and
 *   Amazon Movie files from their GitHub repositories at pinned commits, each checked by size
 *   and SHA-256 (or git blob id), into the folders `--dataset` reads.
 * - {@link RAW_DATASETS}: the registry (original public URLs; `sha256: "unknown"` where the
 *   checksum is not known in advance).
 * - {@link downloadFile}: HTTP download to `<dest>.part`, resumed with a `Range` request when a
 *   partial file exists or the connection drops (up to `retries` times), then verified
 *   (size, SHA-256) and renamed to `<dest>`. A checksum mismatch deletes the file and throws
 *   a {@link DownloadError} naming it. With an unknown checksum, the checksum observed on the
 *   first download is recorded in `checksums.json` and later downloads are checked against it.
 * - {@link extractZip}: unzip with fflate (a small, dependency-free zip library).
 *
 * @module
 */

import { unzipSync } from "fflate";
import { RecalignError } from "../errors.ts";
import { ensureDir, sha256Hex, writeFileAtomic } from "../io.ts";

/** A download failed: HTTP error, dropped connection after all retries, bad checksum or zip. */
export class DownloadError extends RecalignError {
  /** The URL or file concerned. */
  readonly target: string;
  constructor(target: string, problem: string, options?: ErrorOptions) {
    super(`${target}: ${problem}`, options);
    this.name = "DownloadError";
    this.target = target;
  }
}

/** One file of a raw dataset. */
export interface RawFile {
  /** Original public URL. */
  url: string;
  /** File name under the dataset's folder. */
  file: string;
  /** Expected SHA-256 (hex), or `"unknown"`: then the first observed one is recorded. */
  sha256: string;
  /** Unpack a zip into the dataset's folder (a single top-level folder is stripped). */
  extract?: boolean;
}

/** A raw dataset: where its files come from, and terms to read before use. */
export interface RawDataset {
  /** Files to fetch. */
  files: RawFile[];
  /** Which builder reads it (`build <builder>`). */
  builder: "ml-1m" | "lastfm" | "amazon" | "goodreads";
  /** Where the terms are. */
  terms: string;
}

/**
 * The raw datasets. URLs are the publishers' own; none was fetched while writing this
 * (checksums `"unknown"`, recorded on first download).
 */
export const RAW_DATASETS: Readonly<Record<string, RawDataset>> = {
  "ml-1m": {
    builder: "ml-1m",
    files: [{
      url: "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
      file: "ml-1m.zip",
      sha256: "unknown",
      extract: true,
    }],
    terms:
      "MovieLens README (no redistribution without permission): https://files.grouplens.org/datasets/movielens/ml-1m-README.txt",
  },
  lastfm: {
    builder: "lastfm",
    files: [{
      url: "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
      file: "hetrec2011-lastfm-2k.zip",
      sha256: "unknown",
      extract: true,
    }],
    terms: "HetRec 2011 readme in the zip (research use, cite the workshop)",
  },
  "amazon-movies-2018": {
    builder: "amazon",
    files: [
      {
        url: "https://jmcauley.ucsd.edu/data/amazon_v2/categoryFilesSmall/Movies_and_TV_5.json.gz",
        file: "Movies_and_TV_5.json.gz",
        sha256: "unknown",
      },
      {
        url: "https://jmcauley.ucsd.edu/data/amazon_v2/metaFiles2/meta_Movies_and_TV.json.gz",
        file: "meta_Movies_and_TV.json.gz",
        sha256: "unknown",
      },
    ],
    terms: "Amazon Review Data (2018), Ni, Li, McAuley, EMNLP 2019: research use",
  },
  "amazon-movies-2023": {
    builder: "amazon",
    files: [
      {
        url:
          "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023/raw/review_categories/Movies_and_TV.jsonl.gz",
        file: "Movies_and_TV.jsonl.gz",
        sha256: "unknown",
      },
      {
        url:
          "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023/raw/meta_categories/meta_Movies_and_TV.jsonl.gz",
        file: "meta_Movies_and_TV.jsonl.gz",
        sha256: "unknown",
      },
    ],
    terms: "Amazon Reviews'23, Hou et al. 2024: research use",
  },
  "goodreads-poetry": {
    builder: "goodreads",
    files: [
      {
        url:
          "https://datarepo.eng.ucsd.edu/mcauley_group/gdrive/goodreads/byGenre/goodreads_interactions_poetry.json.gz",
        file: "goodreads_interactions_poetry.json.gz",
        sha256: "unknown",
      },
      {
        url:
          "https://datarepo.eng.ucsd.edu/mcauley_group/gdrive/goodreads/byGenre/goodreads_books_poetry.json.gz",
        file: "goodreads_books_poetry.json.gz",
        sha256: "unknown",
      },
    ],
    terms: "UCSD Book Graph (Wan & McAuley, RecSys 2018): academic use only",
  },
};

/** Options of {@link downloadFile}. */
export interface DownloadOptions {
  /** Expected SHA-256 (hex) or `"unknown"`/undefined. */
  sha256?: string;
  /** Expected size in bytes (a shorter final file is resumed, a longer one refused). */
  size?: number;
  /** Expected git blob id (SHA-1 of `blob <size>\0` + content), when no SHA-256 is known. */
  gitBlob?: string;
  /** Retries after a dropped connection (default 3); each resumes with `Range`. */
  retries?: number;
  /** Progress callback: bytes on disk, total (when known). */
  onProgress?: (bytes: number, total: number | undefined) => void;
  /** The fetch to use (tests, proxies). */
  fetch?: typeof fetch;
}

/** What {@link downloadFile} did. */
export interface DownloadResult {
  /** The final file. */
  path: string;
  /** Its size. */
  bytes: number;
  /** Its SHA-256. */
  sha256: string;
  /** Requests made (1 = no resume needed). */
  requests: number;
  /** Bytes that were already on disk in `.part` before this call. */
  resumedFrom: number;
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return -1;
    throw err;
  }
}

/**
 * Download `url` to `dest` via `dest + ".part"`, resuming with HTTP `Range`, then verify
 * the checksum and rename. An existing `dest` is not fetched again (its checksum is checked
 * when one is given).
 *
 * @param url The URL.
 * @param dest The final path (its folder is created).
 * @param options Checksum, retries, fetch.
 * @returns Size, checksum and how many requests it took.
 * @throws {DownloadError} on an HTTP error status (names URL and status), a connection that
 * keeps dropping, a size mismatch, or a checksum mismatch (the file is deleted first).
 */
export async function downloadFile(
  url: string,
  dest: string,
  options: DownloadOptions = {},
): Promise<DownloadResult> {
  const doFetch = options.fetch ?? fetch;
  const retries = options.retries ?? 3;
  const expected = options.sha256 && options.sha256 !== "unknown"
    ? options.sha256.toLowerCase()
    : undefined;
  const dir = dest.slice(0, Math.max(dest.lastIndexOf("/"), 0)) || ".";
  await ensureDir(dir);
  const verify = async (path: string) => {
    const bytes = await Deno.readFile(path);
    const sha = await sha256Hex(bytes);
    if (expected && sha !== expected) {
      await Deno.remove(path).catch(() => {});
      throw new DownloadError(
        path,
        `SHA-256 mismatch: expected ${expected}, got ${sha} (from ${url}); the file was deleted`,
      );
    }
    if (options.size !== undefined && bytes.length !== options.size) {
      await Deno.remove(path).catch(() => {});
      throw new DownloadError(
        path,
        `size mismatch: expected ${options.size} bytes, got ${bytes.length} (from ${url}); ` +
          "the file was deleted",
      );
    }
    if (options.gitBlob) {
      const blob = await gitBlobId(bytes);
      if (blob !== options.gitBlob.toLowerCase()) {
        await Deno.remove(path).catch(() => {});
        throw new DownloadError(
          path,
          `git blob id mismatch: expected ${options.gitBlob}, got ${blob} (from ${url}); ` +
            "the file was deleted",
        );
      }
    }
    return { bytes: bytes.length, sha };
  };
  const part = dest + ".part";
  const have = await fileSize(dest);
  if (have >= 0 && options.size !== undefined && have < options.size) {
    // A truncated final file (an interrupted copy): resume it as a partial download.
    if ((await fileSize(part)) < have) await Deno.rename(dest, part);
    else await Deno.remove(dest);
  } else if (have >= 0) {
    const v = await verify(dest);
    return { path: dest, bytes: v.bytes, sha256: v.sha, requests: 0, resumedFrom: v.bytes };
  }
  const resumedFrom = Math.max(await fileSize(part), 0);
  let requests = 0;
  let total: number | undefined;
  let lastError: unknown;
  let answered = false; // a server answered at least once
  for (let attempt = 0; attempt <= retries; attempt++) {
    const have = Math.max(await fileSize(part), 0);
    if (total !== undefined && have >= total) break;
    requests++;
    const headers: Record<string, string> = {};
    if (have > 0) headers.Range = `bytes=${have}-`;
    let res: Response;
    try {
      res = await doFetch(url, { headers });
    } catch (err) {
      lastError = err;
      continue;
    }
    answered = true;
    if (res.status === 416 && have > 0) {
      // Range beyond the end: the partial file is already whole.
      await res.body?.cancel();
      break;
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new DownloadError(url, `HTTP ${res.status} ${res.statusText}`.trim());
    }
    let append = false;
    if (res.status === 206) {
      const m = /bytes (\d+)-(\d+)\/(\d+|\*)/.exec(res.headers.get("content-range") ?? "");
      if (!m || Number(m[1]) !== have) {
        await res.body?.cancel();
        throw new DownloadError(
          url,
          `bad Content-Range ${
            JSON.stringify(res.headers.get("content-range"))
          } for a resume at byte ${have}`,
        );
      }
      if (m[3] !== "*") total = Number(m[3]);
      append = true;
    } else {
      const len = res.headers.get("content-length");
      if (len !== null) total = Number(len);
    }
    const file = await Deno.open(
      part,
      append ? { append: true } : { write: true, create: true, truncate: true },
    );
    let got = append ? have : 0;
    try {
      if (res.body) {
        for await (const chunk of res.body) {
          let off = 0;
          while (off < chunk.length) off += await file.write(chunk.subarray(off));
          got += chunk.length;
          options.onProgress?.(got, total);
        }
      }
    } catch (err) {
      lastError = err;
      continue; // connection dropped: resume from what is on disk
    } finally {
      file.close();
    }
    if (total !== undefined && got < total) {
      lastError = new Error(`connection closed at byte ${got} of ${total}`);
      continue;
    }
    lastError = undefined;
    break;
  }
  const size = await fileSize(part);
  if (!answered && lastError !== undefined) {
    const e = lastError as Error & { cause?: { message?: string } };
    const why = [e?.message ?? String(lastError), e?.cause?.message]
      .filter((x) => x && x !== "fetch failed").join(": ").split("\n")[0]
      .replace(/error sending request for url \([^)]*\): /, "") || "fetch failed";
    throw new DownloadError(
      url,
      `cannot connect after ${requests} attempt(s) (no network?): ${why}`,
      { cause: lastError },
    );
  }
  if (lastError !== undefined || (total !== undefined && size !== total)) {
    throw new DownloadError(
      url,
      `incomplete after ${requests} request(s): ${Math.max(size, 0)} of ${
        total ?? "?"
      } bytes in ${part} ` +
        `(run again to resume)${lastError ? `: ${lastError}` : ""}`,
      { cause: lastError },
    );
  }
  const v = await verify(part);
  await Deno.rename(part, dest);
  return { path: dest, bytes: v.bytes, sha256: v.sha, requests, resumedFrom };
}

/** Git's blob id of `bytes`: SHA-1 of `blob <size>\0` followed by the bytes (hex). */
export async function gitBlobId(bytes: Uint8Array): Promise<string> {
  const head = new TextEncoder().encode(`blob ${bytes.length}\0`);
  const all = new Uint8Array(head.length + bytes.length);
  all.set(head);
  all.set(bytes, head.length);
  const digest = await crypto.subtle.digest("SHA-1", all);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------------------------------
// ZIP

/**
 * Extract a zip into `outDir` with fflate (stored and deflate entries, ZIP64). Every entry's
 * size is checked against the archive's directory; the archive itself is checked by SHA-256
 * when it is downloaded ({@link downloadFile}). If every entry sits under one top-level folder,
 * that folder is stripped; `__MACOSX/` entries are skipped.
 *
 * @param zipPath The zip file.
 * @param outDir Destination folder.
 * @returns The extracted files (paths relative to `outDir`).
 * @throws {DownloadError} on a damaged or unsupported zip, naming the zip and the entry.
 */
export async function extractZip(zipPath: string, outDir: string): Promise<string[]> {
  const z = await Deno.readFile(zipPath);
  const sizes = new Map<string, number>();
  let entries: Record<string, Uint8Array>;
  try {
    entries = unzipSync(z, {
      filter: (f) => {
        if (f.name.endsWith("/") || f.name.startsWith("__MACOSX/")) return false;
        if (f.name.startsWith("/") || f.name.split(/[\\/]/).includes("..")) {
          throw new DownloadError(zipPath, `unsafe entry name ${JSON.stringify(f.name)}`);
        }
        if (f.compression !== 0 && f.compression !== 8) {
          throw new DownloadError(
            zipPath,
            `entry ${JSON.stringify(f.name)}: compression method ${f.compression} not supported`,
          );
        }
        sizes.set(f.name, f.originalSize);
        return true;
      },
    });
  } catch (err) {
    if (err instanceof DownloadError) throw err;
    throw new DownloadError(zipPath, `damaged or not a zip file: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const names = Object.keys(entries);
  const tops = new Set(names.map((n) => (n.includes("/") ? n.split("/")[0] : "")));
  const strip = tops.size === 1 && !tops.has("") ? [...tops][0].length + 1 : 0;
  const out: string[] = [];
  for (const name of names) {
    const data = entries[name];
    if (data.length !== sizes.get(name)) {
      throw new DownloadError(
        zipPath,
        `entry ${JSON.stringify(name)}: ${data.length} bytes, the directory says ${
          sizes.get(name)
        } (damaged zip)`,
      );
    }
    const rel = name.slice(strip);
    const dest = `${outDir}/${rel}`;
    await ensureDir(dest.slice(0, dest.lastIndexOf("/")));
    await writeFileAtomic(dest, data);
    out.push(rel);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Datasets

/** Options of {@link downloadDataset}. */
export interface DownloadDatasetOptions extends Omit<DownloadOptions, "sha256"> {
  /** Root of raw data (default `data/raw`); files go to `<root>/<name>/`. */
  root?: string;
  /** Registry to use (default {@link RAW_DATASETS}). */
  registry?: Readonly<Record<string, RawDataset>>;
}

/** `checksums.json`: observed checksums by `<name>/<file>`. */
export type ChecksumRecord = Record<
  string,
  { sha256: string; bytes: number; url: string; recorded: string }
>;

/**
 * Download (and unpack) every file of a registered raw dataset into `<root>/<name>/`,
 * checking or recording checksums in `<root>/checksums.json`.
 *
 * @param name Registry name (see {@link RAW_DATASETS}).
 * @param options Root, registry, fetch, retries.
 * @returns The folder the builder should read.
 * @throws {DownloadError} as {@link downloadFile}; also for an unknown name.
 */
export async function downloadDataset(
  name: string,
  options: DownloadDatasetOptions = {},
): Promise<{ dir: string; files: DownloadResult[]; extracted: string[] }> {
  const registry = options.registry ?? RAW_DATASETS;
  const ds = registry[name];
  if (!ds) {
    throw new DownloadError(
      name,
      `unknown dataset; expected one of ${Object.keys(registry).join(", ")}`,
    );
  }
  const root = options.root ?? "data/raw";
  const dir = `${root}/${name}`;
  await ensureDir(dir);
  const sumPath = `${root}/checksums.json`;
  let record: ChecksumRecord = {};
  try {
    record = JSON.parse(await Deno.readTextFile(sumPath));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) {
      throw new DownloadError(sumPath, `cannot read: ${err}`, { cause: err });
    }
  }
  const results: DownloadResult[] = [];
  const extracted: string[] = [];
  for (const f of ds.files) {
    const key = `${name}/${f.file}`;
    const sha = f.sha256 !== "unknown" ? f.sha256 : record[key]?.sha256;
    const r = await downloadFile(f.url, `${dir}/${f.file}`, { ...options, sha256: sha });
    results.push(r);
    if (!record[key]) {
      record[key] = {
        sha256: r.sha256,
        bytes: r.bytes,
        url: f.url,
        recorded: new Date().toISOString(),
      };
      await writeFileAtomic(sumPath, JSON.stringify(record, null, 2) + "\n");
    }
    if (f.extract) extracted.push(...await extractZip(r.path, dir));
  }
  return { dir, files: results, extracted };
}

// ---------------------------------------------------------------------------------------
// The papers' released files (`deno task data fetch`)

/** Where `deno task data fetch` puts the released files, relative to the repository (gitignored). */
export const DEFAULT_DATA_DIR = "data/raw";

/** The environment variable naming another data root. */
export const DATA_ENV = "RECALIGN_DATA";

/**
 * The data root `--dataset` reads and `deno task data fetch` fills: `$RECALIGN_DATA` when
 * set, else `data/raw/` inside the repository (an absolute path, no trailing slash).
 */
export function defaultDataRoot(): string {
  let env: string | undefined;
  try {
    env = Deno.env.get(DATA_ENV);
  } catch {
    env = undefined; // no --allow-env
  }
  if (env) return env.replace(/\/+$/, "");
  return decodeURIComponent(new URL(`../../${DEFAULT_DATA_DIR}`, import.meta.url).pathname)
    .replace(/\/+$/, "");
}

/** A repository at a pinned commit. */
export interface PinnedRepo {
  /** `owner/name` on GitHub. */
  repo: string;
  /** The full commit SHA the files are read at. */
  commit: string;
  /** The licence situation, for the user (the files are never committed to this project). */
  terms: string;
}

/** The two repositories, pinned (the commits the kit's readers were written against). */
export const RELEASED_REPOS = {
  sdpo: {
    repo: "chenyuxin1999/S-DPO",
    commit: "07befa4141239c1ecd8d13b1136d226315d0227b",
    terms: "no LICENSE file in the repository (its README shows an MIT badge); the data's " +
      "terms are not stated: use for research, do not re-publish",
  },
  dmpo: {
    repo: "BZX667/DMPO",
    commit: "fe6ecb5b0ad4b5e57d4e9d97f6c62e7091d3e5a8",
    terms: "Apache-2.0 for the code, silent on the data, which derives from MovieLens-1M and " +
      "Amazon reviews (MovieLens asks not to redistribute): use for research, do not re-publish",
  },
} as const satisfies Record<string, PinnedRepo>;

/** One released file: where it is upstream, where it goes, and how it is checked. */
export interface ReleasedFile {
  /** Which repository ({@link RELEASED_REPOS}). */
  source: keyof typeof RELEASED_REPOS;
  /** Path in the repository. */
  path: string;
  /** Path under the data root (what `--dataset` reads). */
  dest: string;
  /** Size in bytes (undefined when not known in advance). */
  bytes?: number;
  /** SHA-256 (undefined when not known in advance: then `gitBlob` checks it). */
  sha256?: string;
  /** The git blob id at the pinned commit. */
  gitBlob: string;
}

const sdpoFile = (
  name: string,
  bytes: number | undefined,
  sha256: string | undefined,
  gitBlob: string,
): ReleasedFile => ({
  source: "sdpo",
  path: `sample_data/lastfm-sft-cans20/${name}`,
  dest: `sdpo-lastfm/${name}`,
  bytes,
  sha256,
  gitBlob,
});
const dmpoFile = (
  folder: string,
  name: string,
  bytes: number,
  sha256: string,
  gitBlob: string,
): ReleasedFile => ({
  source: "dmpo",
  path: `data/${name}`,
  dest: `dmpo/${folder}/${name}`,
  bytes,
  sha256,
  gitBlob,
});

/**
 * Every released file the kit reads, at the pinned commits. Sizes, SHA-256 and blob ids were
 * computed from the files themselves (the blob ids match the pinned commits' trees). S-DPO's
 * `lastfm-train.json` (4 MiB or more) was not available when this was written: it is checked
 * by its git blob id (which covers its size and content), and its SHA-256 is reported.
 */
export const RELEASED_FILES: readonly ReleasedFile[] = [
  sdpoFile(
    "lastfm-train.json",
    undefined,
    undefined,
    "347a5eabe2c3cd8aaa53f9ad26edc7cc8dadafcf",
  ),
  sdpoFile(
    "lastfm-val.json",
    2195006,
    "4fe1044f3c95eb77d402d0fc2d1b513bf3a585225c344b8f84c23b1c3f3007a4",
    "8e2fde89707007ee666b8a14b8d0d7bd338513f1",
  ),
  sdpoFile(
    "lastfm-test.json",
    1979777,
    "868fe7570f4fdeea9cbbf3fb85c1fdadc20cf2f375e7a70247dae7d34d867983",
    "2aedc73e8616f25924cd9d012e944f3dd548a900",
  ),
  ...([
    [
      "rec_data_ml_1m_sft_ranking.json",
      88863,
      "d28d2dd6ee5a55ae931440f83783be8f351c7a45441342e5d992c12d66d05157",
      "c31caf36bfdcd5e70af1fb6e2f86b847420bdd8a",
    ],
    [
      "rec_data_ml_1m_dpo_ranking_1.json",
      94687,
      "4439db8ab401d1ea195b2aed3df8cfa513152147ec0084ba024d429048b951d1",
      "8791013497ca79458d4b5a26968ea5131b494895",
    ],
    [
      "rec_data_ml_1m_dpo_ranking_2.json",
      189437,
      "a86d78f6c40c93a57e6faba7130395afba32f577222d8178dece896fecb708cd",
      "072185aa3a9fac77b49787c8d4565ecbf83c26ae",
    ],
    [
      "rec_data_ml_1m_dpo_ranking_3.json",
      283608,
      "90059a61d8454bd1d445af14386898c15c501bd43a893499c76e3f29b39f1465",
      "49ff4276950a4ca7299efd72db518c600b7ebb4b",
    ],
    [
      "rec_data_ml_1m_dpo_ranking_4.json",
      378412,
      "370f9b6d6a9a96e489972ff325ff99aa50f7ab628f4bc3c4369ca8acd9d0b2b3",
      "de2e977f58aa21ed3d086cb74f5cea1a413ec183",
    ],
    [
      "rec_data_ml_1m_dpo_ranking_5.json",
      472829,
      "a0dfb4d47bf7534cbac368e817930f44a2f4029ed92d10567794ed78e9b8ad6e",
      "2289c65e5ebf50d2073ba80cfa29d88482ad09e1",
    ],
    [
      "rec_data_ml_1m_eval_ranking.json",
      1116111,
      "6e6a2503bd46a566000d9e859fde71904408428d2b5eebf49407a9ae375646b0",
      "96f7257315af49071fc402596538d1269c88a8e5",
    ],
    [
      "rec_data_ml_1m_eval_ranking_old.json",
      1725059,
      "434b28179060d9caeea7918f95e42994dad9afd15f5da5da015a09235bb081b8",
      "076d728a11a0de939a015319aa83f2a771ab1f37",
    ],
  ] as const).map(([n, b, s, g]) => dmpoFile("ml-1m", n, b, s, g)),
  ...([
    [
      "rec_Amazon_Movie_sft_ranking.json",
      92610,
      "5dfafd200c0def98fda1e5ed0518cdf229b293689d6258957d8ad8c610546dbe",
      "a76ba191464668d807c9d2399ab4e8d17ea38c63",
    ],
    [
      "rec_Amazon_Movie_dpo_ranking_1.json",
      195785,
      "6127ae521b36b7d1d7c8dc068227bcf75178adb35dd0be8ae4d60b3b5809492b",
      "799ac832b366d069a2609fbe07fa4cf9748c6432",
    ],
    [
      "rec_Amazon_Movie_dpo_ranking_1_old.json",
      100103,
      "4045fc2f7b087e97ce483b55ee08e00642f12946254eae884296d51f56705f89",
      "995e9ce3625f8edb8869e07108902321fe703562",
    ],
    [
      "rec_Amazon_Movie_dpo_ranking_2.json",
      200314,
      "231295116457fd0aebf23eab5c7d7516bbb9498880b67345c089d579f27e7e2d",
      "54b75ddffa88e6765df15f6d396f99744ce813ee",
    ],
    [
      "rec_Amazon_Movie_dpo_ranking_3.json",
      299835,
      "75225f2d8d357a2a1fbf6d5f48dc33c825e4790b6530092115222f2ef6e3d16f",
      "ec14bfa423d57b86113b66df4173d037376b64a2",
    ],
    [
      "rec_Amazon_Movie_dpo_ranking_4.json",
      400667,
      "818251859baf14652d34ca1c833e8eae2a4b8a4086ff97fb6cc2be28bfdd683b",
      "6971b36d076cf9e04e3544343462f5232387e975",
    ],
    [
      "rec_Amazon_Movie_dpo_ranking_5.json",
      500926,
      "ee6025f10ee33d44221f3b36f391d2637d4734cb791814706b390cc1a3afcfcb",
      "0994d6b52913cb1501e12be0d4a0dd475392ec5e",
    ],
    [
      "rec_Amazon_Movie_eval_ranking.json",
      940252,
      "b2edd54cc856b4254479ad3bcbf59213740c7f192c0b6e940daba449b79cc70c",
      "11682e952886e0854f925fe8efcb31aea2ed218f",
    ],
  ] as const).map(([n, b, s, g]) => dmpoFile("amazon-movie", n, b, s, g)),
];

/** Where GitHub serves a file of a commit: `<base>/<owner>/<name>/<commit>/<path>`. */
export const RAW_GITHUB = "https://raw.githubusercontent.com";

/** The URL of a released file under `base` (GitHub's raw host, or a mirror with its layout). */
export function releasedUrl(f: ReleasedFile, base: string = RAW_GITHUB): string {
  const r = RELEASED_REPOS[f.source];
  return `${base.replace(/\/+$/, "")}/${r.repo}/${r.commit}/${f.path}`;
}

/** Options of {@link fetchReleased}. */
export interface FetchReleasedOptions {
  /** The data root (files go to `<root>/sdpo-lastfm/`, `<root>/dmpo/<name>/`). */
  root: string;
  /** Which repositories (default both). */
  only?: readonly (keyof typeof RELEASED_REPOS)[];
  /** The files (default {@link RELEASED_FILES}; tests pass their own). */
  files?: readonly ReleasedFile[];
  /** Base URL (default {@link RAW_GITHUB}); a mirror must have GitHub's raw layout. */
  base?: string;
  /** Retries per file after a dropped connection (default 3). */
  retries?: number;
  /** The fetch to use. */
  fetch?: typeof fetch;
  /** Called when a file starts (index from 0). */
  onFile?: (f: ReleasedFile, index: number, count: number) => void;
  /** Progress of the current file. */
  onProgress?: (bytes: number, total: number | undefined) => void;
}

/** One fetched file. */
export interface FetchedFile extends DownloadResult {
  /** Its entry. */
  file: ReleasedFile;
  /** Its URL. */
  url: string;
}

/**
 * Download the released files of S-DPO and DMPO at their pinned commits into `root`,
 * resuming partial files (HTTP Range) and checking each one's size and SHA-256 (or git blob
 * id). Files already there and intact are not fetched again. Writes `<root>/SOURCES.json`:
 * where each file came from and its checksums.
 *
 * @param options Root, repositories, base URL, fetch.
 * @returns The files.
 * @throws {DownloadError} naming the file or URL: no network, an HTTP error, a checksum or
 * size mismatch (the file is deleted), a connection that keeps dropping (run again to resume).
 */
export async function fetchReleased(options: FetchReleasedOptions): Promise<FetchedFile[]> {
  const only = options.only ?? (Object.keys(RELEASED_REPOS) as (keyof typeof RELEASED_REPOS)[]);
  const files = (options.files ?? RELEASED_FILES).filter((f) => only.includes(f.source));
  const out: FetchedFile[] = [];
  for (const [i, f] of files.entries()) {
    options.onFile?.(f, i, files.length);
    const url = releasedUrl(f, options.base);
    const r = await downloadFile(url, `${options.root}/${f.dest}`, {
      sha256: f.sha256,
      size: f.bytes,
      gitBlob: f.gitBlob,
      retries: options.retries,
      fetch: options.fetch,
      onProgress: options.onProgress,
    });
    out.push({ ...r, file: f, url: releasedUrl(f) });
  }
  const sources = `${options.root}/SOURCES.json`;
  let record: Record<string, unknown> = {};
  try {
    record = JSON.parse(await Deno.readTextFile(sources));
  } catch {
    record = {}; // absent or unreadable: written afresh
  }
  Object.assign(
    record,
    Object.fromEntries(out.map((r) => [r.file.dest, {
      repository: `https://github.com/${RELEASED_REPOS[r.file.source].repo}`,
      commit: RELEASED_REPOS[r.file.source].commit,
      path: r.file.path,
      bytes: r.bytes,
      sha256: r.sha256,
      git_blob: r.file.gitBlob,
    }])),
  );
  await writeFileAtomic(sources, JSON.stringify(record, null, 2) + "\n");
  return out;
}
