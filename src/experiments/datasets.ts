/**
 * The released data sets as inputs of the experiments (`deno task reproduce --dataset …`):
 * which paper runs on which data set, where the files are, and builders that turn the files
 * into the prepared data {@link SdpoDataset} / {@link DmpoDataset} that `run()` of
 * `src/experiments/sdpo.ts` / `dmpo.ts` accept in place of the synthetic world. The arms,
 * losses and metrics are the experiments' own; only the rows, the prompts, the tokenizer,
 * the reference rows and the classic baselines come from here.
 *
 * - `lastfm` (S-DPO): the released `lastfm-train.json` (when fetched: `deno task data fetch`),
 *   `lastfm-val.json` and `lastfm-test.json`. With the train file the kit trains on it as
 *   released; without it the val file (122 users) is the training set. The test file (122
 *   other users) is the test set; prompts exactly as FORMATS.md §1.2 / §1.5 (a seeded template draw
 *   per row), answers and validity as §1.3 / §1.5 (in the word tokenizer's normal form).
 * - `ml-1m`, `amazon-movie` (DMPO): the released sft / `dpo_ranking_k` / eval files;
 *   instructions and responses as FORMATS.md §2.1 in the title or ranking form of
 *   `src/experiments/dmpo.ts`.
 *
 * Item names (artists, titles) serve as item ids for the classic baselines.
 *
 * @module
 */
import { DataFormatError, RecalignError } from "../errors.ts";
import { DATA_ENV, DEFAULT_DATA_DIR, defaultDataRoot } from "../data/download.ts";
import { readSdpoFile, type SdpoSample as FileSdpoSample } from "../data/sdpo.ts";
import {
  DMPO_FILES,
  type DmpoSample as FileDmpoSample,
  groupDmpoByUser,
  ml1mShortTitle,
  readDmpoFile,
} from "../data/dmpo.ts";
import {
  DMPO_PIECES,
  dmpoChosen,
  dmpoInstruction,
  dmpoRejected,
  dmpoTitle,
  MOVIE_WORDING,
  SDPO_TEMPLATES,
  sdpoPrompt,
} from "../data/prompts.ts";
import type { SdpoSample } from "../data/world.ts";
import { type Tokenizer, WordTokenizer } from "../tokenizer.ts";
import { currentBaseModel } from "./pretrained.ts";
import { Rng } from "../rng.ts";
import type { LlamaConfig } from "../model.ts";
import type { TrainExample } from "../train.ts";
import {
  type BaselineName,
  BASELINES,
  type SequentialRecommender,
  type TrainExample as RecExample,
} from "../baselines/mod.ts";
import { aucPaired, aucReleased, hitsAtK, ndcgsAtK } from "../eval/metrics.ts";
import { BASELINE_NAMES, baselineConfigs } from "./baselines.ts";
import {
  encodePrompt,
  encodeResponse,
  modelConfig,
  recordStage,
  type Scale,
  since,
  subset,
} from "./common.ts";
import type { ReferenceRow, SdpoDataset } from "./sdpo.ts";
import { type DmpoDataset, dmpoProtocol, type DmpoResponse, epochSteps } from "./dmpo.ts";

// ---------------------------------------------------------------------------------------
// Names, applicability, files

/** `--dataset` values. */
export const DATASETS = ["synthetic", "lastfm", "ml-1m", "amazon-movie"] as const;
/** A data set name. */
export type DatasetName = typeof DATASETS[number];
/** A released (non-synthetic) data set. */
export type RealDataset = Exclude<DatasetName, "synthetic">;
/** The papers of `deno task reproduce`. */
export type PaperName = "sdpo" | "dmpo" | "dpo4rec";

/** Which paper runs on which data set. */
export const PAPER_DATASETS: Readonly<Record<PaperName, readonly DatasetName[]>> = {
  sdpo: ["synthetic", "lastfm"],
  dmpo: ["synthetic", "ml-1m", "amazon-movie"],
  dpo4rec: ["synthetic"],
};

const PAPER_LABEL: Record<PaperName, string> = {
  sdpo: "S-DPO",
  dmpo: "DMPO",
  dpo4rec: "DPO4Rec",
};

/**
 * Why `paper` does not run on `dataset` (one sentence), or undefined when it does.
 *
 * @param paper The paper.
 * @param dataset The data set.
 * @returns The reason, or undefined.
 */
export function notApplicable(paper: PaperName, dataset: DatasetName): string | undefined {
  if (PAPER_DATASETS[paper].includes(dataset)) return undefined;
  if (paper === "dpo4rec") {
    return `DPO4Rec is not available on --dataset ${dataset}: it needs reward data (an ID-based ` +
      "recommender scoring N sampled LM responses per user) that the released files do not " +
      "provide; it runs on --dataset synthetic only";
  }
  const allowed = PAPER_DATASETS[paper].join(", ");
  const what = dataset === "lastfm"
    ? "holds S-DPO's 20-candidate rows"
    : "holds DMPO's pairwise-ranking rows";
  return `${PAPER_LABEL[paper]} does not run on --dataset ${dataset} (it ${what}); ` +
    `${PAPER_LABEL[paper]} runs on --dataset ${allowed}`;
}

/** Human label of a data set for titles ("the synthetic world", "LastFM (released S-DPO files)"). */
export function datasetLabel(dataset: DatasetName): string {
  return {
    synthetic: "the synthetic world",
    lastfm: "LastFM (released S-DPO files)",
    "ml-1m": "MovieLens-1M (released DMPO files)",
    "amazon-movie": "Amazon Movie (released DMPO files)",
  }[dataset];
}

/** The files each released data set needs, relative to the data root, and where they come from. */
export const DATASET_SOURCES: Readonly<
  Record<
    RealDataset,
    {
      folder: string;
      /** Files the data set needs. */
      files: readonly string[];
      /** Files used when present (S-DPO's LastFM train file). */
      optional?: readonly string[];
      origin: string;
    }
  >
> = {
  lastfm: {
    folder: "sdpo-lastfm",
    files: ["lastfm-val.json", "lastfm-test.json"],
    optional: ["lastfm-train.json"],
    origin: "the released S-DPO sample data (github.com/chenyuxin1999/S-DPO, " +
      "sample_data/lastfm-sft-cans20/)",
  },
  "ml-1m": {
    folder: "dmpo/ml-1m",
    files: [
      DMPO_FILES["ml-1m"].dpo[0],
      DMPO_FILES["ml-1m"].dpo[2],
      DMPO_FILES["ml-1m"].eval,
    ],
    origin: "the released DMPO data (github.com/BZX667/DMPO, data/)",
  },
  "amazon-movie": {
    folder: "dmpo/amazon-movie",
    files: [
      DMPO_FILES["amazon-movie"].dpo[0],
      DMPO_FILES["amazon-movie"].dpo[2],
      DMPO_FILES["amazon-movie"].eval,
    ],
    origin: "the released DMPO data (github.com/BZX667/DMPO, data/)",
  },
};

/** A data folder or file is missing or unreadable; the message is one line saying what to do. */
export class DatasetError extends RecalignError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DatasetError";
  }
}

// The default data root lives with the downloads (a light module: `deno task data` loads no
// TensorFlow.js); re-exported here, where `--dataset` reads it.
export { DATA_ENV, DEFAULT_DATA_DIR, defaultDataRoot };

/**
 * Check that a data set's files exist under `root`; returns its folder.
 *
 * @param dataset The data set.
 * @param root The data root (holding `sdpo-lastfm/` and `dmpo/`).
 * @returns The data set's folder.
 * @throws {DatasetError} naming the folder, the missing files and where they come from.
 */
export async function datasetFolder(dataset: RealDataset, root: string): Promise<string> {
  const src = DATASET_SOURCES[dataset];
  const folder = `${root}/${src.folder}`;
  const missing: string[] = [];
  for (const f of src.files) {
    try {
      if (!(await Deno.stat(`${folder}/${f}`)).isFile) missing.push(f);
    } catch {
      missing.push(f);
    }
  }
  if (missing.length) {
    throw new DatasetError(
      `--dataset ${dataset}: ${
        missing.length === src.files.length ? "no data" : `missing ${missing.join(", ")}`
      } in ${folder}; run \`deno task data fetch\` to download the files of ${src.origin} ` +
        `(${src.files.join(", ")}), or pass --data <folder holding ${src.folder}/> ` +
        `(or set ${DATA_ENV})`,
    );
  }
  return folder;
}

async function guarded<T>(dataset: RealDataset, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof DataFormatError || e instanceof Deno.errors.InvalidData) {
      throw new DatasetError(
        `--dataset ${dataset}: ${(e as Error).message.split("\n")[0]}; expected the files of ` +
          DATASET_SOURCES[dataset].origin,
        { cause: e },
      );
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------------------
// Shared helpers

/** Model config for a tokenizer and the longest sequence (positions rounded up to 64). */
function configFor(vocabSize: number, longest: number): LlamaConfig {
  const c = modelConfig(vocabSize);
  return { ...c, max_position_embeddings: Math.max(c.max_position_embeddings, ceil64(longest)) };
}

const ceil64 = (n: number) => Math.ceil(n / 64) * 64;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Item ids for names, in code-unit order (deterministic). */
function idMap(names: Iterable<string>): Map<string, number> {
  return new Map([...new Set(names)].sort().map((n, i) => [n, i]));
}

const disposers: SequentialRecommender[] = [];

/**
 * Cap on the classic baselines' training examples per scale (a seeded subset); the `test`
 * scale only checks the plumbing.
 */
export const REC_EXAMPLE_CAP: Readonly<Partial<Record<string, number>>> = { test: 1500 };

/** Free the classic baselines trained on real data sets in this process. */
export function clearDatasetBaselines(): void {
  for (const r of disposers.splice(0)) r.dispose();
}

/**
 * Train the four classic baselines of `src/baselines` on (history ids → next id) examples,
 * with the same configs as on the synthetic world (`baselinesFor`).
 */
async function trainRecs(
  dataset: string,
  numItems: number,
  examples: RecExample[],
  scale: Scale,
  seed: number,
  progress: boolean,
): Promise<Map<BaselineName, { rec: SequentialRecommender; seconds: number; reused: boolean }>> {
  const out = new Map<
    BaselineName,
    { rec: SequentialRecommender; seconds: number; reused: boolean }
  >();
  for (const name of BASELINE_NAMES) {
    const t0 = performance.now();
    const rec = BASELINES[name](numItems, baselineConfigs(scale, seed));
    disposers.push(rec);
    const ex = subset(examples, REC_EXAMPLE_CAP[scale.name] ?? examples.length, 3);
    await rec.fit(ex, { epochs: scale.baselineEpochs, quiet: true });
    const seconds = since(t0);
    recordStage("baselines", `train/${name} (${dataset})`, seed, seconds);
    if (progress) {
      console.error(`[baselines/${dataset}] seed ${seed}: ${name} trained in ${seconds} s`);
    }
    out.set(name, { rec, seconds, reused: false });
  }
  return out;
}

/** Dedupe (history → target) examples, keeping the first. */
function dedupeExamples(xs: RecExample[]): RecExample[] {
  const seen = new Set<string>();
  return xs.filter((x) => {
    const k = x.historyIds.join(",") + ">" + x.targetId;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** What a builder returns besides the prepared data: table notes and reference rows. */
export interface Prepared<T> {
  /** The data for `run({ …, data })`. */
  data: T;
  /** Notes of table.md / findings.md (what was trained and tested on, data defects). */
  notes: string[];
  /**
   * Reference rows of table.md: those computed (in `data.references`) plus rows that do not
   * exist on real data (`{}`, shown as "not available").
   */
  tableReferences: Record<string, Record<string, number>>;
}

// ---------------------------------------------------------------------------------------
// S-DPO on LastFM

/** S-DPO's LastFM training file, used as released when it is in the data folder. */
export const LASTFM_TRAIN_FILE = "lastfm-train.json";

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** Seeds of the template draws (FORMATS.md §1.2: the original uses Python's random, seed 1958). */
export const LASTFM_TEMPLATE_SEEDS = { train: 1958, test: 1959 } as const;

/** Split released LastFM rows into users: a row continues the previous one when its history is
 * the previous history plus the previous answer (window of 10). Returns a user index per row. */
export function lastfmUsers(rows: readonly FileSdpoSample[]): number[] {
  const user: number[] = [];
  let u = -1;
  rows.forEach((r, i) => {
    const p = rows[i - 1];
    const cont = p !== undefined &&
      JSON.stringify([...p.history, p.positive].slice(-10)) === JSON.stringify(r.history);
    if (!cont) u++;
    user.push(u);
  });
  return user;
}

/**
 * S-DPO data from the released LastFM files (`<root>/sdpo-lastfm/`).
 *
 * Train = `lastfm-train.json` as released when it is in the folder (S-DPO's own training
 * file: every row kept, duplicates and rows that also occur in the test file counted in the
 * notes); otherwise `lastfm-val.json` without its one exact duplicate row and without the rows whose
 * (history, answer) also occurs in the test file; test = `lastfm-test.json` (all rows,
 * duplicate included, as the original evaluation counts them), a seeded subset of
 * `scale.sdpoTest` rows, the first `scale.sdpoGenTest` of them generated. Each row gets one
 * template drawn with {@link LASTFM_TEMPLATE_SEEDS}; training prompts end `"Answer: "`,
 * evaluation prompts `"Answer:"` (the word tokenizer reads both the same).
 *
 * @param scale The scale (train subset sizes, test sizes, negative pool).
 * @param root The data root.
 * @returns The prepared data, notes and table references.
 * @throws {DatasetError} when files are missing or malformed.
 */
export async function lastfmSdpo(
  scale: Scale,
  root: string = defaultDataRoot(),
): Promise<Prepared<SdpoDataset>> {
  const folder = await datasetFolder("lastfm", root);
  const read = (f: string) =>
    guarded("lastfm", () => readSdpoFile(`${folder}/${f}`, { onSummary: () => {} }));
  // S-DPO's own train file when fetched, else the val file stands in for it.
  const released = await isFile(`${folder}/${LASTFM_TRAIN_FILE}`);
  const fitFile = released ? LASTFM_TRAIN_FILE : "lastfm-val.json";
  const valRows = await read(fitFile);
  const testRows = await read("lastfm-test.json");
  const key = (r: FileSdpoSample) => JSON.stringify([r.history, r.positive]);
  const rowKey = (r: FileSdpoSample) => JSON.stringify([r.history, r.candidates, r.positive]);
  const testKeys = new Set(testRows.map(key));
  const valUsers = lastfmUsers(valRows);
  const testUsers = lastfmUsers(testRows);
  const seen = new Set<string>();
  let duplicates = 0, overlap = 0;
  const trainIdx: number[] = [];
  valRows.forEach((r, i) => {
    const dup = seen.has(rowKey(r));
    seen.add(rowKey(r));
    if (dup) duplicates++;
    else if (testKeys.has(key(r))) overlap++;
    // As released: every row of the train file; the val stand-in drops both kinds.
    if (released || (!dup && !testKeys.has(key(r)))) trainIdx.push(i);
  });
  // Item ids (for the baselines) over every name of both files.
  const names = new Set<string>();
  for (const r of [...valRows, ...testRows]) {
    r.history.forEach((n) => names.add(n));
    r.candidates.forEach((n) => names.add(n));
  }
  const ids = idMap(names);
  const templates = SDPO_TEMPLATES.music;
  // The base model's tokenizer when one is set (--model), else a word tokenizer of the data.
  const lm = currentBaseModel();
  const tok: Tokenizer = lm?.tokenizer ?? WordTokenizer.fromTexts([
    ...templates.map((t) => t.replaceAll("[HistoryHere]", " ").replaceAll("[CansHere]", " ")),
    ...[...names].sort(),
  ]);
  const toSample = (r: FileSdpoSample, user: number): SdpoSample => {
    const positiveIndex = r.candidates.indexOf(r.positive);
    return {
      user,
      domain: 0,
      history: r.history,
      historyIds: r.history.map((n) => ids.get(n)!),
      candidates: r.candidates,
      candidateIds: r.candidates.map((n) => ids.get(n)!),
      positive: r.positive,
      positiveId: ids.get(r.positive)!,
      positiveIndex,
      negatives: r.negatives,
      negativeIds: r.negatives.map((n) => ids.get(n)!),
    };
  };
  const prompts = new Map<SdpoSample, string>();
  const keep = new Set(trainIdx);
  const trainRng = new Rng(LASTFM_TEMPLATE_SEEDS.train);
  const train = valRows.map((r, i) => {
    // Every val row draws its template (kept rows keep the same draw whatever is dropped).
    const s = toSample(r, valUsers[i]);
    prompts.set(s, sdpoPrompt(r, trainRng, { mode: "train", templates }).prompt);
    return s;
  }).filter((_, i) => keep.has(i));
  const testRng = new Rng(LASTFM_TEMPLATE_SEEDS.test);
  const allTest = testRows.map((r, i) => {
    const s = toSample(r, 1_000_000 + testUsers[i]);
    prompts.set(s, sdpoPrompt(r, testRng, { mode: "eval", templates }).prompt);
    return s;
  });
  const test = subset(allTest, scale.sdpoTest, 11);
  const promptOf = (s: SdpoSample) => {
    const p = prompts.get(s);
    if (p === undefined) throw new Error("lastfm: sample without a prompt");
    return p;
  };
  const example = (s: SdpoSample): TrainExample => ({
    // The training prompt's final space goes with the response (encodeResponse prepends one;
    // the word tokenizer reads both the same).
    prompt: encodePrompt(tok, promptOf(s).trimEnd()),
    chosen: encodeResponse(tok, s.positive),
    rejected: s.negatives.map((n) => encodeResponse(tok, n)),
  });
  const trainExamples = train.map(example);
  const prefSamples = subset(train, scale.prefPrompts, 7);
  const rng = new Rng(17);
  const prefExamples = prefSamples.map((s) => {
    const e = example(s);
    return { ...e, rejected: rng.sample(e.rejected!, Math.min(scale.negPool, e.rejected!.length)) };
  });
  const nameTokens = [...names].map((n) => tok.encode(n).length);
  const maxName = Math.max(...nameTokens);
  const longestPrompt = Math.max(
    ...[...prompts.values()].map((p) => encodePrompt(tok, p).length),
  );
  const config = lm?.config ?? configFor(tok.vocabSize, longestPrompt + maxName + 2);
  // Reference rows: popularity of the train rows (answers and history items), random.
  const counts = new Map<number, number>();
  for (const s of train) {
    for (const id of [...s.historyIds, s.positiveId]) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  const pos = test.map((s) => s.positiveIndex);
  const popScores = test.map((s) => s.candidateIds.map((id) => counts.get(id) ?? 0));
  let rnd = 0;
  for (let r = 1; r <= 5; r++) rnd += 1 / Math.log2(r + 1);
  const references: Record<string, ReferenceRow> = {
    Popularity: {
      hr1_rank: mean(hitsAtK({ scores: popScores }, pos, 1)),
      ndcg5_rank: mean(ndcgsAtK({ scores: popScores }, pos, 5)),
    },
    Random: { hr1_rank: 1 / 20, ndcg5_rank: rnd / 20 },
  };
  // Baseline examples: every train row (history → answer) and its history prefixes.
  const recExamples = dedupeExamples(train.flatMap((s) => [
    ...s.historyIds.slice(1).map((t, j) => ({
      historyIds: s.historyIds.slice(0, j + 1),
      targetId: t,
    })),
    { historyIds: s.historyIds, targetId: s.positiveId },
  ]));
  const trainUsers = new Set(train.map((s) => s.user)).size;
  const gen = Math.min(scale.sdpoGenTest, test.length);
  const data: SdpoDataset = {
    name: "lastfm",
    tok,
    config,
    trainExamples,
    prefSamples,
    prefExamples,
    test,
    text: { prompt: promptOf, maxNewTokens: Math.min(20, maxName + 1) },
    references,
    baselines: (sc, seed, progress) =>
      trainRecs("lastfm", ids.size, recExamples, sc, seed, progress),
    describe: {
      dataset: "lastfm",
      // Relative to the data root (--data / RECALIGN_DATA / data/raw), never a machine path.
      files: [fitFile, "lastfm-test.json"].map((f) => `${DATASET_SOURCES.lastfm.folder}/${f}`),
      train: released
        ? `${LASTFM_TRAIN_FILE} as released: ${valRows.length} rows, ${trainUsers} users, all ` +
          `kept (${duplicates} exact duplicate rows, ${overlap} whose (history, answer) also ` +
          "occurs in the test file)"
        : `lastfm-val.json (no ${LASTFM_TRAIN_FILE}): ${valRows.length} rows, ${
          new Set(valUsers).size
        } users; kept ${train.length} (dropped ${duplicates} exact duplicate, ${overlap} whose ` +
          `(history, answer) also occurs in the test file); ${trainUsers} users`,
      test:
        `lastfm-test.json: ${testRows.length} rows, ${new Set(testUsers).size} users${
          released ? "" : " (disjoint from the val users)"
        }; a seeded subset of ${test.length} (seed 11), ` +
        `the first ${gen} generated`,
      prompts: "FORMATS.md §1.2: one of the 10 music templates per row, drawn with " +
        `Rng(${LASTFM_TEMPLATE_SEEDS.train}) over the ${fitFile} rows and Rng(${LASTFM_TEMPLATE_SEEDS.test}) ` +
        'over the test rows; training prompts end "Answer: ", evaluation prompts "Answer:"',
      tokenizer: lm
        ? `the base model's (${lm.folder})`
        : `word tokenizer of the 10 templates and the ${names.size} artist names of ` +
          `both files: ${tok.vocabSize} tokens`,
      sft: `stage 0 = full fine-tuning of a random LM on the ${train.length} train rows ` +
        "(prompt → answer + EOS); the SFT row and the reference of every arm",
      negatives: `each preference prompt has a fixed seeded pool of ${scale.negPool} of its ` +
        "19 other candidates; K of them are drawn per step",
      generation:
        `greedy, at most ${Math.min(20, maxName + 1)} new tokens; valid = exactly one candidate ` +
        "name (word-tokenizer normal form) occurs in the output, hit = valid and the answer occurs",
      baselines: `artist names as item ids (${ids.size} items); trained on the train rows ` +
        `(history → answer) and their history prefixes (${recExamples.length} examples), ` +
        `${scale.baselineEpochs} epoch(s); scored on the same 20 candidates`,
    },
  };
  const notes = [
    (released
      ? `Released S-DPO LastFM files (20 candidates per row). Training set: S-DPO's own ` +
        `${LASTFM_TRAIN_FILE} as released, all ${train.length} rows (${trainUsers} users; ` +
        `it holds ${duplicates} exact duplicate row${duplicates === 1 ? "" : "s"} and ` +
        `${overlap} row${overlap === 1 ? "" : "s"} whose (history, ` +
        "answer) also occurs in the test file, kept as the original training keeps them). "
      : `Released S-DPO LastFM files (20 candidates per row). There is no train file (\`deno ` +
        "task data fetch` downloads it), so the val file is the training set: " +
        `${train.length} of its ${valRows.length} rows (${trainUsers} users; dropped: ` +
        `${duplicates} exact duplicate row, ${overlap} rows whose (history, answer) also ` +
        "occurs in the test file). ") +
    `Test: a seeded subset of ` +
    `${test.length} of the ${testRows.length} test rows (${new Set(testUsers).size} users` +
    `${released ? "" : ", none shared with the val file"}); generation on the first ${gen}.`,
    "Prompts exactly as FORMATS.md §1.2 (one of the 10 music templates per row, seeded draw; " +
    'training prompts end "Answer: ", evaluation prompts "Answer:"); SFT target = answer + ' +
    "EOS; preference pairs = answer vs K other candidates. Word tokenizer of the templates and " +
    `all ${names.size} artist names (${tok.vocabSize} tokens); model as on the synthetic ` +
    "world (dim 64, 2 layers, 4 heads, ffn 192).",
    "SFT = stage 0 (full fine-tuning of a random LM on the train rows); SFT-cont, DPO (K=1), " +
    "S-DPO (K=3): fresh LoRA adapters on it, same steps and lr each, β = 1, a fixed seeded " +
    `pool of ${scale.negPool} of the 19 other candidates per preference prompt. Ranking: the ` +
    "20 candidates by the summed log-prob of name + EOS. Generation: greedy; valid = exactly " +
    "one candidate name occurs in the output (plain substring rule, compared in the word " +
    "tokenizer's normal form), so answers that contain another candidate's name (e.g. " +
    "`Rebecca Black` / `Black`) can never be hits, as in the original evaluation.",
    `Classic baselines: artist names as item ids (${ids.size} items), trained on the train ` +
    "rows and their history prefixes. `Popularity` reference = counts of each name in the " +
    "train rows (histories and answers). No oracle or history-Bayes row: the true " +
    "preferences of real users are unknown (not available). Ablations run on the synthetic " +
    "world only.",
    "Paper columns: the S-DPO paper's tables could not be read (see " +
    "`data/paper-numbers.json`); a quoted secondary value (7B LLM, full train file) is " +
    "shown where one exists. Only orderings (findings.md) are comparable.",
  ];
  return {
    data,
    notes,
    tableReferences: {
      Oracle: {},
      "History-Bayes": {},
      ...(references as unknown as Record<string, Record<string, number>>),
    },
  };
}

// ---------------------------------------------------------------------------------------
// DMPO on ML-1M and Amazon Movie

/** One pairwise question in our form: history, the two named titles, positive, negatives. */
interface DmpoRow {
  history: string[];
  candidates: [string, string];
  positive: string;
  /** negatives[0] is the one the question names. */
  negatives: string[];
}

/** The stage-0 prompt: the DMPO instruction's opening and history, then `"."`. */
export function dmpoHistoryPrompt(history: readonly string[]): string {
  const P = DMPO_PIECES, w = MOVIE_WORDING;
  return P.intro + w.domain + P.afterDomain + w.historyNoun + P.afterHistoryNoun + w.consumed +
    P.afterConsumed + history.map(dmpoTitle).join("") + P.end;
}

/** Epochs of the DMPO SFT stage on a released data set (DMPO's `run.sh`: 5). */
export const DMPO_SFT_EPOCHS = 5;

/** Titles of the stage-0 history window (the last ones before the target). */
export const DMPO_STAGE0_WINDOW = 10;

/**
 * The few-shot training rows of the released DMPO files: the first `users` users of the K = 1
 * file (one pair row each: SFT and the K = 1 arm) and, for each, its rows of the K = 3 file
 * (one pair row per negative, each naming the positive and its own negative, as the released
 * trainer reads them: FORMATS.md §2.4). A user is its (history, positive); the K = 1 row's
 * negative must be the user's first K = 3 negative (the files' nested series).
 *
 * @param k1 The K = 1 file's rows (one per user).
 * @param k3 The K = 3 file's rows (contiguous per user).
 * @param users How many users to keep (all when the files hold fewer).
 * @param dataset Data set name, for errors.
 * @returns `k1`: the kept users' K = 1 rows; `k3`: their K = 3 rows, grouped by user in the
 *   order of `k1`; `rest`: the K = 1 and K = 3 rows of the users not kept.
 * @throws {DatasetError} naming the row when a K = 1 user has no K = 3 rows or another
 *   first negative.
 */
export function dmpoFewShotRows(
  k1: readonly FileDmpoSample[],
  k3: readonly FileDmpoSample[],
  users: number,
  dataset: string,
): { k1: FileDmpoSample[]; k3: FileDmpoSample[]; rest: FileDmpoSample[] } {
  const key = (s: FileDmpoSample) => JSON.stringify([s.history, s.positive]);
  const groups = new Map(
    groupDmpoByUser(k3).map((g) => [JSON.stringify([g.history, g.positive]), g]),
  );
  const kept = k1.slice(0, users);
  const out3: FileDmpoSample[] = [];
  kept.forEach((s, i) => {
    const g = groups.get(key(s));
    if (!g) {
      throw new DatasetError(
        `--dataset ${dataset}: K=1 row ${i} (positive "${s.positive.trim()}") has no rows in ` +
          "the K=3 file; expected the released nested dpo_ranking_k series",
      );
    }
    if (g.negatives[0] !== s.negative) {
      throw new DatasetError(
        `--dataset ${dataset}: K=1 row ${i} names negative "${s.negative.trim()}", the K=3 ` +
          `file's first row of that user "${g.negatives[0].trim()}"; expected the released ` +
          "nested dpo_ranking_k series",
      );
    }
    out3.push(...g.samples);
  });
  const keptKeys = new Set(kept.map(key));
  const rest = [...k1, ...k3].filter((s) => !keptKeys.has(key(s)));
  return { k1: kept, k3: out3, rest };
}

/**
 * DMPO data from the released files of `ml-1m` or `amazon-movie` (`<root>/dmpo/<name>/`).
 *
 * - K=1 arm and SFT: `dpo_ranking_1` (ML-1M: the SFT rows as pairs; Amazon Movie:
 *   `dpo_ranking_1_old`, the file that matches the SFT rows, see README defect 6);
 * - K=3 arms: every `dpo_ranking_3` row is its own pair example (its prompt names the
 *   positive and that row's negative, one rejected response), as the released trainer reads
 *   the file (FORMATS.md §2.4): 3 pair rows per user, the first the SFT pair;
 * - few-shot users: the first `dmpoProtocol(scale).users` users of the files (all 100 at
 *   `tiny` and above); SFT and preference steps by epochs (`DMPO_PROTOCOL`), as on the
 *   synthetic world;
 * - test: a seeded subset of `scale.dmpoTest` eval rows (ML-1M eval stores only the correct
 *   ranking: the rejected one is derived, README defect 1);
 * - ML-1M eval titles are cut to the training files' short form (`ml1mShortTitle`, README
 *   defect 2) so that train and test name a film the same way;
 * - stage 0 (the base LM): next-title prediction over the histories of every user of the
 *   released files (training users: history prefixes and their positive; eval users: history
 *   prefixes only, never their candidate pair), a stand-in for a pretrained LLM's knowledge
 *   of the titles; the classic baselines train on the same sequences.
 *
 * @param dataset `ml-1m` or `amazon-movie`.
 * @param scale The scale (test size).
 * @param response Response form (title or ranking, as `src/experiments/dmpo.ts`).
 * @param root The data root.
 * @returns The prepared data, notes and table references.
 * @throws {DatasetError} when files are missing or malformed.
 */
export async function dmpoDataset(
  dataset: "ml-1m" | "amazon-movie",
  scale: Scale,
  response: DmpoResponse = "title",
  root: string = defaultDataRoot(),
): Promise<Prepared<DmpoDataset>> {
  const folder = await datasetFolder(dataset, root);
  const files = DMPO_FILES[dataset];
  const read = (f: string) =>
    guarded(dataset, () => readDmpoFile(`${folder}/${f}`, { onSummary: () => {} }));
  const dpo1 = await read(files.dpo[0]);
  const dpo3 = await read(files.dpo[2]);
  const evalRows = await read(files.eval);
  // Other files, for the stage-0 corpus only (histories and the training users' positives).
  const extraFiles = [files.sft, ...files.dpo.filter((_, k) => k !== 0 && k !== 2)];
  if (dataset === "amazon-movie") extraFiles.push("rec_Amazon_Movie_dpo_ranking_1.json");
  const extra: FileDmpoSample[] = [];
  for (const f of extraFiles) {
    try {
      extra.push(...await read(f));
    } catch (e) {
      if (!(e instanceof DatasetError) && !(e instanceof Deno.errors.NotFound)) throw e;
      // optional file: skipped
    }
  }
  const shorten = dataset === "ml-1m";
  const evalTitle = (t: string) => (shorten ? ml1mShortTitle(t) : t);
  let evalMerged = 0;
  const fromFile = (s: FileDmpoSample, forEval: boolean): DmpoRow => {
    const f = forEval ? evalTitle : (t: string) => t;
    const row: DmpoRow = {
      history: s.history.map(f),
      candidates: [f(s.candidates[0]), f(s.candidates[1])],
      positive: f(s.positive),
      negatives: [f(s.negative)],
    };
    if (forEval && row.positive.trim() === row.negatives[0].trim()) evalMerged++;
    return row;
  };
  // Few-shot users: the first `protocol.users` users of the K=1 file and their K=3 rows.
  const protocol = dmpoProtocol(scale);
  const users = dmpoFewShotRows(dpo1, dpo3, protocol.users, dataset);
  const train1Rows = users.k1.map((s) => fromFile(s, false));
  const train3Rows = users.k3.map((s) => fromFile(s, false));
  // Rows of unused users still feed stage 0.
  extra.push(...users.rest);
  const allEval = evalRows.map((s) => fromFile(s, true));
  const testRows = subset(allEval, scale.dmpoTest, 13);
  const trainRowsAll = [...train1Rows, ...train3Rows, ...extra.map((s) => fromFile(s, false))];
  // Title form inside the word tokenizer: trailing / leading spaces do not matter.
  const norm = (t: string) => t.trim();
  // Item ids over every title of every file used.
  const titles = new Set<string>();
  for (const r of [...trainRowsAll, ...allEval]) {
    for (const t of [...r.history, ...r.candidates, r.positive, ...r.negatives]) {
      titles.add(norm(t));
    }
  }
  const ids = idMap(titles);
  const idOf = (t: string) => ids.get(norm(t))!;
  const lm = currentBaseModel();
  const tok: Tokenizer = lm?.tokenizer ?? WordTokenizer.fromTexts([
    dmpoInstruction([], "", ""),
    dmpoChosen("", ""),
    ...[...titles].sort().map((t) => dmpoTitle(t)),
  ]);
  const instruction = (r: DmpoRow) => dmpoInstruction(r.history, r.candidates[0], r.candidates[1]);
  const titleResp = (t: string) => encodeResponse(tok, `<Title:${t}>`);
  const example = (r: DmpoRow, k: number): TrainExample & { rejected: number[][] } => ({
    prompt: encodePrompt(tok, instruction(r)),
    chosen: response === "title"
      ? titleResp(r.positive)
      : encodeResponse(tok, dmpoChosen(r.positive, r.negatives[0]).trimStart()),
    rejected: r.negatives.slice(0, k).map((n) =>
      response === "title"
        ? titleResp(n)
        : encodeResponse(tok, dmpoRejected(r.positive, n).trimStart())
    ),
  });
  const train1 = train1Rows.map((r) => example(r, 1));
  const train3 = train3Rows.map((r) => example(r, 1));
  const test = testRows.map((r) => example(r, 1));
  // Stage 0 corpus: one sequence per distinct (history, positive) of the training files and
  // per distinct eval history.
  const sequences = new Map<string, string[]>();
  for (const r of trainRowsAll) {
    const seq = [...r.history, r.positive];
    sequences.set(JSON.stringify(seq.map(norm)), seq);
  }
  let evalUsers = 0;
  for (const r of allEval) {
    const k = JSON.stringify(r.history.map(norm));
    if (!sequences.has(k)) evalUsers++;
    sequences.set(k, r.history);
  }
  const stage0: TrainExample[] = [];
  const recExamples: RecExample[] = [];
  for (const seq of sequences.values()) {
    for (let t = 1; t < seq.length; t++) {
      const window = seq.slice(Math.max(0, t - DMPO_STAGE0_WINDOW), t);
      stage0.push({
        prompt: encodePrompt(tok, dmpoHistoryPrompt(window)),
        chosen: titleResp(seq[t]),
      });
      recExamples.push({ historyIds: seq.slice(0, t).map(idOf), targetId: idOf(seq[t]) });
    }
  }
  const longest = Math.max(
    ...[...train1, ...train3, ...test].map((e) =>
      e.prompt.length + Math.max(e.chosen.length, ...e.rejected.map((x) => x.length))
    ),
  );
  const config = lm?.config ?? configFor(tok.vocabSize, longest + 1);
  const baselineTest = testRows.map((r) => ({
    historyIds: r.history.map(idOf),
    positiveId: idOf(r.positive),
    negativeIds: [idOf(r.negatives[0])],
  }));
  // Popularity reference: how often each title occurs in the stage-0 corpus.
  const counts = new Map<number, number>();
  for (const seq of sequences.values()) {
    for (const t of seq) counts.set(idOf(t), (counts.get(idOf(t)) ?? 0) + 1);
  }
  const pc = baselineTest.map((b) => counts.get(b.positiveId) ?? 0);
  const pr = baselineTest.map((b) => counts.get(b.negativeIds[0]) ?? 0);
  const references = {
    Popularity: { auc_released: aucReleased(pc, pr), auc_paired: aucPaired(pc, pr) },
    Random: { auc_released: 0.5, auc_paired: 0.5 },
  };
  const label = dataset === "ml-1m" ? "ML-1M" : "Amazon Movie";
  const k1File = files.dpo[0];
  const respText = response === "title"
    ? "the positive's tagged title `<Title:…>` + EOS (rejected: each negative's)"
    : "DMPO's ranking ` <Title:P> ,  <Title:N> ` + EOS (rejected: ranking(N, P) per negative)";
  // SFT and preference steps by epochs (DMPO's run.sh: 5 and 3; DMPO_PROTOCOL per scale).
  const sftSteps = epochSteps(train1.length, protocol.sftEpochs, scale.batchSize);
  const prefSteps1 = epochSteps(train1.length, protocol.prefEpochs, scale.prefBatch);
  const prefSteps3 = epochSteps(train3.length, protocol.prefEpochs, scale.prefBatch);
  const data: DmpoDataset = {
    name: dataset,
    sftSteps,
    tok,
    config,
    response,
    stage0,
    train1,
    train3,
    test,
    baselineTest,
    references,
    baselines: (sc, seed, progress) =>
      trainRecs(dataset, ids.size, dedupeExamples(recExamples), sc, seed, progress),
    describe: {
      dataset,
      // Relative to the data root (--data / RECALIGN_DATA / data/raw), never a machine path.
      folder: DATASET_SOURCES[dataset].folder,
      files: { k1_and_sft: k1File, k3: files.dpo[2], eval: files.eval, stage0_extra: extraFiles },
      base: `stage 0 = full fine-tuning of a random LM on next-title prediction (window of ` +
        `${DMPO_STAGE0_WINDOW} titles) over ${sequences.size} user sequences of the released ` +
        `files (${evalUsers} of them eval users' histories, without their candidate pair): ` +
        `${stage0.length} examples; the Base LM row`,
      response: respText,
      train_prompts: `${train1.length} users' pair rows (${k1File}, K=1 and SFT) and ` +
        `${train3.length} pair rows (${files.dpo[2]}, K=3: 3 per user, each prompt naming ` +
        "the positive and its own negative)",
      test: `${test.length} of the ${evalRows.length} rows of ${files.eval} (seeded subset, ` +
        "seed 13)" + (shorten ? "; titles cut to the training files' short form" : ""),
      sft: `full fine-tuning of the base LM on the ${train1.length} SFT pairs, ${sftSteps} steps ` +
        `(${protocol.sftEpochs} epochs; DMPO's run.sh: ${DMPO_SFT_EPOCHS}), batch ` +
        `${scale.batchSize}; the reference of the SFT+ arms`,
      preference_steps: `${protocol.prefEpochs} epochs of each arm's rows at batch ` +
        `${scale.prefBatch} (run.sh: 3): K=1 and SFT-cont ${prefSteps1} steps, K=3 ` +
        `${prefSteps3}; "K=3 (equal steps)" = the K=3 rows for K=1's ${prefSteps1} steps`,
      negatives: "K=3: the user's 3 released negatives, one pair row each (dpo_ranking_3 as " +
        "the released trainer reads it: every rejected title is named in its prompt); K=1: " +
        "the user's first row",
      tokenizer: lm
        ? `the base model's (${lm.folder})`
        : `word tokenizer of the instruction template and the ${titles.size} titles: ` +
          `${tok.vocabSize} tokens`,
      baselines: `titles as item ids (${ids.size} items), trained on the stage-0 sequences; ` +
        "scored on the pair's two titles",
    },
  };
  const notes = [
    `Released DMPO ${label} files. Train: ${train1.length} users (${k1File}: one pair each, ` +
    `also the SFT set) and their 3 negatives as ${train3.length} pair rows (${files.dpo[2]}: ` +
    "K negatives = K pair prompts per user, each naming the positive and its own negative, " +
    "as the released trainer reads the file, FORMATS.md §2.4; the first row is the SFT " +
    `pair); test: a seeded subset of ${test.length} ` +
    `of the ${evalRows.length} rows of ${files.eval} (users disjoint from training).` +
    (dataset === "amazon-movie"
      ? " K=1 uses `dpo_ranking_1_old.json`: the registered `dpo_ranking_1.json` holds 200 " +
        "other users (README defect 6); their histories only feed stage 0."
      : ""),
    `Prompt = the DMPO instruction (FORMATS.md §2.1, without the llama2 chat wrapper and ` +
    `system prompt, a constant prefix); response: ${respText}. AUC from the summed ` +
    "log-probs of the correct vs the wrong response of each test pair: released-style (one " +
    "coin flip per pair, seed 42) and paired." +
    (shorten
      ? ` ML-1M eval titles are cut to the training files' short form (\`ml1mShortTitle\`: ` +
        "year and `, The`-style suffix dropped, README defect 2) so train and test name a film " +
        `the same way${
          evalMerged ? `; in ${evalMerged} test pairs both titles then coincide` : ""
        }; ` +
        "the rejected ranking of the eval rows is derived (README defect 1)."
      : " Titles are used as stored (HTML entities, stray spaces; README defect 5)."),
    `Base LM = stage 0: a random LM (dim 64, 2 layers) fully fine-tuned on next-title ` +
    `prediction over the histories of every user in the released files (${sequences.size} ` +
    `sequences, ${stage0.length} examples; the ${evalUsers} eval users contribute their ` +
    "histories only, never their candidate pair), as a stand-in for a pretrained LLM's " +
    "knowledge of the titles. SFT = full fine-tuning of the base LM on the " +
    `${train1.length} SFT pairs for ${protocol.sftEpochs} epochs (run.sh: ${DMPO_SFT_EPOCHS}; ` +
    `${sftSteps} steps of ${scale.batchSize}); arms: fresh LoRA adapters for ` +
    `${protocol.prefEpochs} epochs of their rows at batch ${scale.prefBatch} (run.sh: 3; ` +
    `"equal epochs": K=1 and SFT-cont ${prefSteps1} steps, K=3 ${prefSteps3}), plus ` +
    `"K=3 (equal steps)" = the K=3 rows for K=1's ${prefSteps1} steps; DMPO-only ` +
    "starts from the base LM. β = 1 (paper form), 0.1 with γ = 1 (released form).",
    `Classic baselines: titles as item ids (${ids.size} items), trained on the stage-0 ` +
    "sequences. `Popularity` reference = counts of each title in those sequences. No oracle " +
    "or history-Bayes row: the true preferences of real users are unknown (not available). " +
    "Ablations run on the synthetic world only.",
    "Paper columns: the DMPO paper's tables could not be read (see " +
    "`data/paper-numbers.json`). Only orderings (findings.md) are comparable.",
  ];
  return {
    data,
    notes,
    tableReferences: { Oracle: {}, "History-Bayes": {}, ...references },
  };
}

// ---------------------------------------------------------------------------------------
// All at once

/**
 * Read and prepare the released data a run needs: for `lastfm` the S-DPO data (when `sdpo`
 * is among the papers), for `ml-1m` / `amazon-movie` the DMPO data (when `dmpo` is); nothing
 * for `synthetic`.
 *
 * @param papers The papers that will run.
 * @param dataset The data set.
 * @param scale The scale.
 * @param root The data root.
 * @param response DMPO response form.
 * @returns The prepared data per paper.
 * @throws {DatasetError} when files are missing or malformed.
 */
export async function prepareDataset(
  papers: readonly PaperName[],
  dataset: DatasetName,
  scale: Scale,
  root: string = defaultDataRoot(),
  response: DmpoResponse = "title",
): Promise<{ sdpo?: Prepared<SdpoDataset>; dmpo?: Prepared<DmpoDataset> }> {
  if (dataset === "synthetic") return {};
  await datasetFolder(dataset, root);
  if (dataset === "lastfm") {
    return papers.includes("sdpo") ? { sdpo: await lastfmSdpo(scale, root) } : {};
  }
  return papers.includes("dmpo") ? { dmpo: await dmpoDataset(dataset, scale, response, root) } : {};
}
