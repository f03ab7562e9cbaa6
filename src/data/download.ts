/**
 * Downloads of the raw public datasets the builders (`build.ts`) read, into `data/raw/`.
 *
 * - {@link RAW_DATASETS}: the registry (original public URLs; `sha256: "unknown"` where the
 *   checksum is not known in advance).
 * - {@link downloadFile}: HTTP download to `<dest>.part`, resumed with a `Range` request when a
 *   partial file exists or the connection drops (up to `retries` times), then verified
 *   (size, SHA-256) and renamed to `<dest>`. A checksum mismatch deletes the file and throws
 *   a {@link DownloadError} naming it. With an unknown checksum, the checksum observed on the
 *   first download is recorded in `checksums.json` and later downloads are checked against it.
 * - {@link extractZip}: a small ZIP reader (stored and deflate entries, CRC-32 checked) on the
 *   built-in `DecompressionStream("deflate-raw")`: no dependency.
 *
 * @module
 */

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
    return { bytes: bytes.length, sha };
  };
  if ((await fileSize(dest)) >= 0) {
    const v = await verify(dest);
    return { path: dest, bytes: v.bytes, sha256: v.sha, requests: 0, resumedFrom: v.bytes };
  }
  const part = dest + ".part";
  const resumedFrom = Math.max(await fileSize(part), 0);
  let requests = 0;
  let total: number | undefined;
  let lastError: unknown;
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

// ---------------------------------------------------------------------------------------
// ZIP

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (zip, gzip) of bytes. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

async function inflateRaw(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new DecompressionStream("deflate-raw"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * Extract a zip (stored and deflate entries; no ZIP64, no encryption) into `outDir`. If every
 * entry sits under one top-level folder, that folder is stripped.
 *
 * @param zipPath The zip file.
 * @param outDir Destination folder.
 * @returns The extracted files (paths relative to `outDir`).
 * @throws {DownloadError} on a damaged or unsupported zip, naming the zip and the entry.
 */
export async function extractZip(zipPath: string, outDir: string): Promise<string[]> {
  const z = await Deno.readFile(zipPath);
  const dv = new DataView(z.buffer, z.byteOffset, z.byteLength);
  const fail = (p: string): never => {
    throw new DownloadError(zipPath, p);
  };
  let eocd = -1;
  for (let i = z.length - 22; i >= Math.max(0, z.length - 22 - 65535); i--) {
    if (dv.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) fail("not a zip file (no end-of-central-directory record)");
  const count = dv.getUint16(eocd + 10, true);
  let p = dv.getUint32(eocd + 16, true);
  if (count === 0xffff || p === 0xffffffff) fail("ZIP64 archives are not supported");
  const dec = new TextDecoder();
  const entries: Array<
    { name: string; method: number; csize: number; size: number; crc: number; local: number }
  > = [];
  for (let i = 0; i < count; i++) {
    if (p + 46 > z.length || dv.getUint32(p, true) !== 0x02014b50) {
      fail(`central directory entry ${i + 1} is damaged`);
    }
    const nameLen = dv.getUint16(p + 28, true);
    entries.push({
      method: dv.getUint16(p + 10, true),
      crc: dv.getUint32(p + 16, true),
      csize: dv.getUint32(p + 20, true),
      size: dv.getUint32(p + 24, true),
      local: dv.getUint32(p + 42, true),
      name: dec.decode(z.subarray(p + 46, p + 46 + nameLen)),
    });
    p += 46 + nameLen + dv.getUint16(p + 30, true) + dv.getUint16(p + 32, true);
  }
  const files = entries.filter((e) => !e.name.endsWith("/") && !e.name.startsWith("__MACOSX/"));
  for (const e of files) {
    if (e.name.startsWith("/") || e.name.split(/[\\/]/).includes("..")) {
      fail(`unsafe entry name ${JSON.stringify(e.name)}`);
    }
  }
  const tops = new Set(files.map((e) => (e.name.includes("/") ? e.name.split("/")[0] : "")));
  const strip = tops.size === 1 && !tops.has("") ? [...tops][0].length + 1 : 0;
  const out: string[] = [];
  for (const e of files) {
    if (dv.getUint32(e.local, true) !== 0x04034b50) {
      fail(`entry ${JSON.stringify(e.name)}: bad local header`);
    }
    const start = e.local + 30 + dv.getUint16(e.local + 26, true) +
      dv.getUint16(e.local + 28, true);
    const raw = z.subarray(start, start + e.csize);
    let data: Uint8Array;
    if (e.method === 0) data = raw;
    else if (e.method === 8) {
      try {
        data = await inflateRaw(raw);
      } catch (err) {
        throw new DownloadError(
          zipPath,
          `entry ${JSON.stringify(e.name)}: cannot inflate: ${err}`,
          { cause: err },
        );
      }
    } else {data = fail(
        `entry ${JSON.stringify(e.name)}: compression method ${e.method} not supported`,
      );}
    if (data.length !== e.size || crc32(data) !== e.crc) {
      fail(`entry ${JSON.stringify(e.name)}: CRC-32 or size mismatch (damaged zip)`);
    }
    const rel = e.name.slice(strip);
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
