/**
 * `deno task reproduce`: run the S-DPO and/or DMPO experiments on the synthetic world, or
 * with `--dataset lastfm|ml-1m|amazon-movie` on the released data (src/experiments/datasets.ts),
 * and write `<out>/<paper>/<dataset>/{metrics.json,table.md,findings.json,findings.md}` and
 * `<out>/README.md`.
 *
 * ```sh
 * deno run -A src/cli/reproduce.ts --paper all --scale tiny
 * ```
 *
 * `--ablations` adds the S-DPO ablations (K and β sweeps, negative samplers, negative
 * weights; on by default at tiny/test, off at small for the time budget). The DMPO
 * ablations (negatives K, few-shot sizes, cross-domain; about 1.5 min at small) run at every
 * scale unless `--no-ablations` is given. Stage-0 weights are cached in `<out>/.cache/`
 * (safetensors, keyed by a hash of the config) and reused by a rerun or after an
 * interruption (stage 0 itself resumes from its checkpoints in `<out>/.cache/*.run/`);
 * `--no-cache` disables that. metrics.json holds the per-stage wall times
 * (`stage_seconds`).
 *
 * Every trained stage (LoRA arms, DMPO's SFT) has a run folder
 * `<out>/<paper>/<dataset>/runs/seed<s>/<arm>/` (src/experiments/runs.ts): train()'s
 * checkpoints while it trains, then the PEFT adapter (or the weights) and `done.json`. An
 * interrupted run resumes each stage from its last checkpoint and a rerun loads finished
 * stages; `--no-cache` retrains them. `--model <folder>` (or `RECALIGN_MODEL`) makes a
 * Hugging Face Llama / Qwen2 / Qwen3 folder the base LM (src/experiments/pretrained.ts).
 *
 * @module
 */
import { type FlagTable, helpText, numberFlag, parseFlags, runMain, UsageError } from "./_args.ts";
import { planReproduce, RunProgress } from "./_progress.ts";
import { BASE_LM_DIR, loadBaseLm, pretrainBaseLm } from "../experiments/base_lm.ts";
import { initBackend } from "../backend.ts";
import { ensureDir, removeStaleTempFiles, writeFileAtomic, writeJsonAtomic } from "../io.ts";
import {
  clearBaseCache,
  disposeSnapshot,
  gitHead,
  onStage,
  SCALE_PRESETS,
  type ScaleName,
  SCALES,
  setBaseLm,
  setDiskCache,
  takeStageTimes,
} from "../experiments/common.ts";
import { BASELINE_NAMES, BASELINE_ROWS, clearBaselines } from "../experiments/baselines.ts";

import * as sdpo from "../experiments/sdpo.ts";
import * as dmpo from "../experiments/dmpo.ts";
import {
  dmpoAblationFindings,
  runDmpoAblations,
  writeDmpoAblationPlots,
} from "../experiments/dmpo_ablations.ts";
import * as dpo4rec from "../experiments/dpo4rec.ts";
import {
  baseModelRecord,
  clearBaseModel,
  clearPretrainedCache,
  currentBaseModel,
  MODEL_ENV,
  useBaseModel,
} from "../experiments/pretrained.ts";
import { setRunFolders } from "../experiments/runs.ts";
import { CheckpointError, ConfigError } from "../errors.ts";
import {
  clearDatasetBaselines,
  DatasetError,
  datasetLabel,
  type DatasetName,
  DATASETS,
  DEFAULT_DATA_DIR,
  defaultDataRoot,
  notApplicable,
  PAPER_DATASETS,
  prepareDataset,
} from "../experiments/datasets.ts";
import {
  dmpoFindings,
  type Finding,
  legacyClaims,
  sdpoFindings,
  writeFindings,
} from "../report/findings.ts";
import {
  readPaperNumbers,
  seedTimings,
  summarize,
  tableMarkdown,
  writeSdpoPlots,
} from "../report/table.ts";

/** The flags of `deno task reproduce` (parser, `--help` and error messages). */
export const REPRODUCE_FLAGS = {
  paper: {
    type: "string",
    value: "sdpo|dmpo|dpo4rec|all",
    default: "all",
    help: "which paper's experiments to run; `all` skips the papers that do not run on --dataset",
  },
  scale: {
    type: "string",
    value: SCALES.join("|"),
    default: "small",
    help: "model, steps and test sizes: `test` checks the plumbing in seconds, `tiny` runs in " +
      "a few minutes, `small` is the default run (about 8 minutes on 2 idle cores), `full` carries " +
      "docs/analysis-plan.md (S-DPO at the released budget, 3 seeds × 1,600 test prompts; " +
      "about 1 hour for S-DPO)",
  },
  seeds: {
    type: "string",
    value: "N",
    defaultText: "2 for S-DPO, 5 for DMPO, 2 for DPO4Rec at small; 3, 5, 5 at full; 1 at test " +
      "and tiny",
    help: "seeds per paper (the preference stages, and stage 0 where the scale gives each seed " +
      "its own)",
  },
  "first-seed": {
    type: "string",
    value: "N",
    default: "0",
    help: "number the seeds from N (seeds N, N+1, ...): a follow-up on fresh seeds that no " +
      "earlier run used",
  },
  lr: {
    type: "string",
    value: "X",
    defaultText: "selected on DPO's validation HR@1 at full, the scale's rate otherwise",
    help: "S-DPO on the synthetic world: the preference stages' learning rate, fixed (no " +
      "selection), e.g. a follow-up at the rate an earlier run selected",
  },
  backend: {
    type: "string",
    value: "auto|wasm|cpu|tensorflow",
    defaultText: "$RECALIGN_BACKEND, else auto (tensorflow when tfjs-node is installed, else wasm)",
    help: "TensorFlow.js backend",
  },
  out: {
    type: "string",
    value: "DIR",
    default: "results",
    help: "where to write <paper>/<dataset>/{metrics.json,table.md,findings.md}, run folders " +
      "and the stage-0 cache (.cache/); use another folder to leave the committed results alone",
  },
  arms: {
    type: "string",
    value: "LIST",
    defaultText: "all",
    help: "S-DPO on the synthetic world only: train only these main arms, a comma list of " +
      "SFT-cont, DPO, S-DPO, S-DPO K=8 (e.g. `--arms DPO,S-DPO` for a follow-up of S-DPO vs " +
      "DPO); claims on the other arms are reported as not tested",
  },
  ablations: {
    type: "boolean",
    defaultText: "on at test and tiny, off at small and full",
    help: "also run the S-DPO ablations (K and beta sweeps, negative samplers, negative weights)",
  },
  "no-ablations": {
    type: "boolean",
    help: "skip the ablations of both papers (the DMPO ablations run at every scale otherwise)",
  },
  "no-cache": {
    type: "boolean",
    help: "retrain every stage: neither reuse nor keep the stage-0 cache and finished run folders",
  },
  dataset: {
    type: "string",
    value: DATASETS.join("|"),
    default: "synthetic",
    help: "the embedded synthetic world, or a released data set (lastfm: S-DPO; ml-1m and " +
      "amazon-movie: DMPO; fetch them with `deno task data fetch`)",
  },
  data: {
    type: "string",
    value: "DIR",
    defaultText: `$RECALIGN_DATA, else ${DEFAULT_DATA_DIR}/`,
    help: "folder holding the released files (sdpo-lastfm/, dmpo/ml-1m/, dmpo/amazon-movie/)",
  },
  model: {
    type: "string",
    value: "DIR",
    defaultText: `$${MODEL_ENV}, else none`,
    help: "a Hugging Face Llama / Qwen2 / Qwen3 folder (config.json, model.safetensors, " +
      "tokenizer.json) as the base LM instead of the small one; synthetic world only",
  },
  "base-lm": {
    type: "string",
    value: "DIR|none",
    default: BASE_LM_DIR,
    help: "the pretrained small base LM stage 0 starts from (pretrained into DIR first when " +
      "missing or stale, except at --scale test); `none` = a random init",
  },
} as const satisfies FlagTable;

const HELP = helpText(REPRODUCE_FLAGS, {
  usage: "deno task reproduce [flags]",
  about: "Run the S-DPO, DMPO and DPO4Rec experiments (SFT, the preference arms, classic " +
    "baselines, ablations), then write metrics.json, table.md and findings.md per paper and " +
    "data set, and an index <out>/README.md. Interrupted runs resume: rerun the same command. " +
    "Progress goes to stderr (a bar per stage and an overall line with an ETA), tables to stdout.",
  after: "examples:\n" +
    "  deno task reproduce --scale tiny --out runs/tiny      # about 2 minutes, results/ untouched\n" +
    "  deno task reproduce                                    # the committed results (small)\n" +
    "  deno task reproduce --paper sdpo --dataset lastfm      # after `deno task data fetch`",
});

function fail(msg: string): never {
  throw new UsageError(`reproduce: ${msg}`);
}

/** Parsed options. */
export interface ReproduceOptions {
  papers: ("sdpo" | "dmpo" | "dpo4rec")[];
  scale: ScaleName;
  /** Seeds per paper; 0 = the paper's default for the scale ({@link DEFAULT_SEEDS}). */
  seeds: number;
  /** The first seed's number (`--first-seed`, default 0): seeds are firstSeed, firstSeed + 1, … */
  firstSeed: number;
  /** S-DPO: a fixed preference learning rate (`--lr`) instead of the scale's selection. */
  sdpoLr?: number;
  backend?: string;
  out: string;
  /** Run the ablations (default: on at tiny and test, off at small). */
  ablations: boolean;
  /** S-DPO: train only these main arms (default: all). */
  sdpoArms?: string[];
  /** Reuse / save stage-0 snapshots in `<out>/.cache/` (default true). */
  cache: boolean;
  /** The data set (default synthetic); results go to `<out>/<paper>/<dataset>/`. */
  dataset: DatasetName;
  /** Folder holding the released data (`sdpo-lastfm/`, `dmpo/`). */
  dataRoot: string;
  /** Papers of `--paper all` that do not run on the data set, with the reason. */
  skipped: string[];
  /** A Hugging Face model folder as the base LM (`--model`, else `RECALIGN_MODEL`). */
  model?: string;
  /**
   * The pretrained small base LM stage 0 starts from (`--base-lm`, default
   * `models/base-lm`); "none" = a random init.
   */
  baseLm: string;
}

/**
 * Seeds per paper when `--seeds` is not given: at `small` (the default) two for S-DPO (its
 * four arms now run the released protocol's shape, about 1.5 minutes per seed; the default
 * run cannot decide S-DPO vs DPO, the full run does), five for DMPO (issue #10) and two for
 * DPO4Rec, whose claims are decided on 400 test users per seed and whose two seeds already
 * cost 3.5 minutes; at `full` the seeds of docs/analysis-plan.md: three for S-DPO (3 seeds ×
 * 1,600 test prompts at the released budget, about 15 minutes per seed), five for DMPO and five
 * for DPO4Rec (each seed trains its own SASRecs, SFT LM and arms); one at tiny/test.
 */
export const DEFAULT_SEEDS: Record<ScaleName, Record<"sdpo" | "dmpo" | "dpo4rec", number>> = {
  test: { sdpo: 1, dmpo: 1, dpo4rec: 1 },
  tiny: { sdpo: 1, dmpo: 1, dpo4rec: 1 },
  small: { sdpo: 2, dmpo: 5, dpo4rec: 2 },
  full: { sdpo: 3, dmpo: 5, dpo4rec: 5 },
};

/**
 * Parse argv; undefined for `--help`.
 *
 * @throws {UsageError} one line naming a bad flag or value (exit status 2).
 */
export function parseOptions(args: string[]): ReproduceOptions | undefined {
  const { values, help } = parseFlags("reproduce", REPRODUCE_FLAGS, args);
  if (help) return undefined;
  const paper = values.paper!;
  if (!["sdpo", "dmpo", "dpo4rec", "all"].includes(paper)) {
    fail(`--paper must be sdpo, dmpo, dpo4rec or all, got "${paper}"`);
  }
  const scale = values.scale as ScaleName;
  if (!SCALES.includes(scale)) {
    fail(`--scale must be one of ${SCALES.join(", ")}, got "${values.scale}"`);
  }
  const dataset = values.dataset as DatasetName;
  if (!DATASETS.includes(dataset)) {
    fail(`--dataset must be one of ${DATASETS.join(", ")}, got "${values.dataset}"`);
  }
  if (paper !== "all") {
    const why = notApplicable(paper as "sdpo" | "dmpo" | "dpo4rec", dataset);
    if (why) fail(why);
  }
  const all = (["sdpo", "dmpo", "dpo4rec"] as const).filter((p) =>
    paper === "all" ? PAPER_DATASETS[p].includes(dataset) : p === paper
  );
  const skipped = paper === "all"
    ? (["sdpo", "dmpo", "dpo4rec"] as const).flatMap((p) => notApplicable(p, dataset) ?? [])
    : [];
  const model = values.model ?? (Deno.env.get(MODEL_ENV) || undefined);
  if (model !== undefined && dataset !== "synthetic") {
    fail(`--model runs on the synthetic world only, got --dataset ${dataset}`);
  }
  // 0 = each paper's default for the scale (DEFAULT_SEEDS).
  const seeds = numberFlag("reproduce", "seeds", values.seeds, { integer: true, min: 1 }) ?? 0;
  const firstSeed =
    numberFlag("reproduce", "first-seed", values["first-seed"], { integer: true, min: 0 }) ?? 0;
  const lr = numberFlag("reproduce", "lr", values.lr, {});
  if (lr !== undefined && !(lr > 0 && lr < 1)) {
    fail(`--lr must be between 0 and 1, got "${values.lr}"`);
  }
  if (lr !== undefined && (!all.includes("sdpo") || dataset !== "synthetic")) {
    fail(
      "--lr sets S-DPO's preference learning rate on the synthetic world: use it with " +
        "--paper sdpo (or all) and --dataset synthetic",
    );
  }
  return {
    papers: [...all],
    scale,
    seeds,
    firstSeed,
    ...(lr === undefined ? {} : { sdpoLr: lr }),
    backend: values.backend,
    out: values.out!.replace(/\/+$/, ""),
    ablations: values["no-ablations"]
      ? false
      : values.ablations ?? (scale !== "small" && scale !== "full"),
    cache: !values["no-cache"],
    ...(values.arms
      ? { sdpoArms: values.arms.split(",").map((a) => a.trim()).filter((a) => a) }
      : {}),
    dataset,
    dataRoot: (values.data ?? defaultDataRoot()).replace(/\/+$/, ""),
    skipped,
    model,
    baseLm: (values["base-lm"] ?? BASE_LM_DIR).replace(/\/+$/, ""),
  };
}

const SDPO_NOTES = [
  "Synthetic world (default config, domain 0), 20 candidates per prompt; numbers are on " +
  "held-out test users. Ranking: the 20 candidates ranked by the summed log-prob of title + " +
  "EOS. Generation: greedy, invalid answers count as misses in HR@1 (gen, all).",
  "SFT = stage 0: the base LM (a Llama-style LM, dim 64, 2 layers, 4 heads, ffn 192, " +
  "pretrained on the world's selection and copy exercises: models/base-lm, " +
  "docs/world-design.md; a " +
  "random init with --base-lm none) fully fine-tuned on the train prompts (prompt → positive " +
  "title + EOS). At small and full, one SFT model (seed 0) is shared by all seeds, which vary the " +
  "preference stages (LoRA init, batch order, negative draws): the SFT row is the same on " +
  "every seed, and the CIs hold the preference stages' and the test rows' variation, not " +
  "SFT's. The classic baselines are trained for the first seed only, so their rows have no " +
  "spread.",
  "SFT-cont, DPO (K=1), S-DPO (K=3): a fresh LoRA adapter (r 8, α 16, no dropout, all seven " +
  "projections) on the SFT model, the same steps and lr each; β = 1; reference = the frozen " +
  "SFT model; each preference prompt keeps a fixed seeded pool of 8 of its 19 other candidates " +
  "(uniform), K drawn from it each step. Classic baselines: src/baselines, trained on the train " +
  "users' histories, scored on the same 20 candidates.",
  "Paper columns: the S-DPO paper's tables could not be read (see " +
  "`data/paper-numbers.json`); a quoted secondary value is shown where one exists. " +
  "Only orderings (findings.md) are comparable, never absolute values.",
];

const DMPO_NOTES = dmpo.DMPO_NOTES;

/** A table note on the base model of `--model` (none without it). */
function baseModelNotes(): string[] {
  const lm = currentBaseModel();
  if (!lm) return [];
  const c = lm.config;
  return [
    `Base model (\`--model\`): \`${lm.folder}\` (${c.model_type}, hidden ${c.hidden_size}, ` +
    `${c.num_hidden_layers} layers, vocab ${c.vocab_size}) with its own tokenizer.json, not ` +
    "the random LM and word tokenizer described above. Stage 0 (SFT / base LM) = a LoRA SFT " +
    "(r 8, α 16, all seven projections) merged into the pretrained weights; DMPO's SFT is a " +
    "LoRA SFT merged the same way; the arms train fresh LoRA adapters. metrics.json " +
    "`base_model` records the folder, its config.json and the tokenizer.",
  ];
}

/** metrics.json `valid_ratio`: method → mean ValidRatio over seeds (methods that generate). */
export function validRatioByMethod(
  summary: Record<string, Record<string, { mean: number | null }>>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [method, fields] of Object.entries(summary)) {
    const m = fields.valid_ratio?.mean;
    if (typeof m === "number" && Number.isFinite(m)) out[method] = m;
  }
  return out;
}

function jsonSafe(x: unknown): unknown {
  return JSON.parse(
    JSON.stringify(x, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v)),
  );
}

/** Run everything; returns the written directories. */
export async function main(args: string[]): Promise<string[]> {
  const opts = parseOptions(args);
  if (!opts) {
    console.log(HELP);
    return [];
  }
  for (const why of opts.skipped) console.error(`[reproduce] skipped: ${why}`);
  // Released data: checked and read before anything runs (a bad folder: one line, exit 2).
  const real = await loadOrFail(() =>
    prepareDataset(opts.papers, opts.dataset, SCALE_PRESETS[opts.scale], opts.dataRoot)
  );
  // Which released rows train (S-DPO's own LastFM train file when fetched, else the fallback).
  if (real.sdpo) {
    console.error(`[reproduce] ${opts.dataset} train: ${real.sdpo.data.describe.train}`);
  }
  const backend = await initBackend(opts.backend, { quiet: true });
  // The base LM: a Hugging Face folder (--model), or none (the synthetic world's random LM).
  try {
    await useBaseModel(opts.model);
  } catch (e) {
    if (e instanceof CheckpointError) fail(`--model: ${e.message}`);
    throw e;
  }
  console.error(
    `[reproduce] backend ${backend.backend} (simd ${backend.simd}, threads ${backend.threads}), ` +
      `scale ${opts.scale}, seeds ${opts.seeds || "default"}${
        opts.firstSeed ? ` from ${opts.firstSeed}` : ""
      }, papers ${opts.papers.join(", ")} → ${opts.out}/`,
  );
  const baseLm = opts.model || opts.dataset !== "synthetic" || opts.baseLm === "none"
    ? undefined
    : await baseLmFor(opts);
  setBaseLm(
    baseLm ? { snap: baseLm.snap, hash: baseLm.info.hash, folder: opts.baseLm } : undefined,
  );
  // Temp files a killed earlier run left half-written (their pid is gone).
  await removeStaleTempFiles(opts.out, { recursive: true }).catch(() => []);
  setDiskCache(opts.cache ? `${opts.out}/.cache` : undefined);
  // Overall progress: a line per finished stage with an ETA (src/cli/_progress.ts).
  const progress = startProgress(opts, args);
  const numbers = await readPaperNumbers();
  const head = await gitHead();
  const written: string[] = [];
  const t0 = performance.now();
  /** When, with what code and backend, from which base model a result was made. */
  const provenance = (started: string) => ({
    started,
    finished: new Date().toISOString(),
    git_head: head ?? null,
    backend,
    deno: Deno.version,
    // The Hugging Face base model (--model), or null: the synthetic world's small LM.
    base_model: baseModelRecord(),
    // Trained stages: runs/seed<s>/<arm>/ (PEFT adapters, done.json), see README.md.
    runs: "runs/",
  });
  for (const paper of opts.papers) {
    const dir = `${opts.out}/${paper}/${opts.dataset}`;
    const seeds = Array.from(
      { length: opts.seeds || DEFAULT_SEEDS[opts.scale][paper] },
      (_, i) => opts.firstSeed + i,
    );
    await ensureDir(dir);
    // Run folders of the trained stages (src/experiments/runs.ts).
    setRunFolders({
      runs: `${dir}/runs`,
      cache: opts.cache ? `${opts.out}/.cache` : undefined,
      reuse: opts.cache,
    });
    const started = new Date().toISOString();
    if (paper === "dpo4rec") {
      const t4 = performance.now();
      const r = await dpo4rec.run({ scale: opts.scale, seeds });
      progress.block("dpo4rec", (performance.now() - t4) / 1000, seeds.length);
      await dpo4rec.writeDpo4recResults(r, dir, provenance(started));
      console.error(`[reproduce] dpo4rec: wrote ${dir}/ (${r.seconds} s)`);
      console.log(dpo4rec.dpo4recTable(r));
      written.push(dir);
      continue;
    }
    let table: string, result: sdpo.SdpoResult | dmpo.DmpoResult;
    // findings.json (headline + ablation claims); findings.md is rendered from it.
    let findings: Finding[], findingsTitle: string, findingsNotes: string[], ablationNote: string;
    if (paper === "sdpo") {
      const prep = real.sdpo;
      const r = await sdpo.run({
        scale: opts.scale,
        seeds,
        ablations: opts.ablations && !prep, // ablations: synthetic world only
        data: prep?.data,
        arms: opts.sdpoArms,
        lr: opts.sdpoLr,
      });
      result = r;
      const abl = r.ablations;
      findings = sdpoFindings(
        r,
        prep
          ? ABLATIONS_SYNTHETIC_ONLY("S-DPO")
          : `the S-DPO ablations were off in this run (${
            args.includes("--no-ablations") ? "--no-ablations" : `default at scale ${opts.scale}`
          }; \`--ablations\` runs them)`,
      );
      const plots = await writeSdpoPlots(dir, r) + await sdpo.writeHr1CurvePlot(dir, r);
      // The synthetic world runs the released protocol: its notes replace the short one's.
      const sdpoNotes = prep ? prep.notes : [
        ...SDPO_NOTES.slice(0, 2),
        ...sdpo.sdpoProtocolNotes(r),
        ...SDPO_NOTES.slice(3),
      ];
      table = tableMarkdown({
        title: `S-DPO on ${datasetLabel(opts.dataset)} (scale ${opts.scale}, ` +
          `${seeds.length} seed(s), ` +
          `${r.num_test} test prompts, ${r.num_gen_test} generated)`,
        paper: "sdpo",
        methods: [...sdpo.SDPO_METHODS, ...BASELINE_NAMES.map((b) => BASELINE_ROWS[b])],
        columns: [
          { header: "HR@1 (rank)", field: "hr1_rank" },
          ...(prep ? [] : [
            { header: "expected HR@1 (rank)", field: "hr1_exp" },
            { header: "valid HR@1 (rank)", field: "val_hr1" },
          ]),
          { header: "NDCG@5 (rank)", field: "ndcg5_rank" },
          { header: "HR@1 (gen, all)", field: "hr1_gen_all" },
          { header: "HR@1 (gen, valid)", field: "hr1_gen_valid" },
          { header: "ValidRatio", field: "valid_ratio" },
        ],
        perSeed: r.per_seed as unknown as { methods: Record<string, Record<string, unknown>> }[],
        paperMetric: "HR@1",
        paperMethodNames: { "S-DPO": "S-DPO", SFT: "TALLRec" },
        numbers,
        references: prep?.tableReferences ??
          r.references as unknown as Record<string, Record<string, number>>,
        notes: [...sdpoNotes, ...baseModelNotes()],
      }) + plots;
      findingsTitle = `S-DPO (${datasetLabel(opts.dataset).replace(/^the /, "")})`;
      findingsNotes = sdpoNotes.slice(0, prep ? 3 : 4);
      ablationNote = abl ? `Same rule, on the ablation rows of seed ${abl.seed}.` : "";
    } else {
      const prep = real.dmpo;
      const r = await dmpo.run({ scale: opts.scale, seeds, data: prep?.data });
      result = r;
      // The DMPO ablations are cheap (about 1.5 min at small): on at every scale unless
      // --no-ablations is given.
      let plots = "";
      if (!args.includes("--no-ablations") && !prep) { // ablations: synthetic world only
        setRunFolders({ runs: `${dir}/runs/ablations` });
        const abl = await runDmpoAblations({ scale: opts.scale, seed: 0 });
        setRunFolders({ runs: `${dir}/runs` });
        r.ablations = abl;
        r.seconds = Math.round((r.seconds + abl.seconds) * 10) / 10; // run + ablations
        plots = await writeDmpoAblationPlots(dir, abl, r.references);
      }
      table = tableMarkdown({
        title: `DMPO on ${datasetLabel(opts.dataset)} (scale ${opts.scale}, ` +
          `${seeds.length} seed(s), ` +
          `${r.num_test} test pairs)`,
        paper: "dmpo",
        methods: [
          ...dmpo.DMPO_METHODS.filter((m) => r.per_seed[0]?.methods[m]),
          ...BASELINE_NAMES.map((b) => BASELINE_ROWS[b]),
        ],
        columns: [
          { header: "AUC (released)", field: "auc_released" },
          { header: "AUC (paired)", field: "auc_paired" },
        ],
        perSeed: r.per_seed as unknown as { methods: Record<string, Record<string, unknown>> }[],
        paperMetric: "AUC",
        paperMethodNames: { "SFT+DMPO K=3": "DMPO" },
        numbers,
        references: prep?.tableReferences ??
          r.references as unknown as Record<string, Record<string, number>>,
        notes: [...(prep?.notes ?? DMPO_NOTES), ...baseModelNotes()],
      }) + plots;
      findings = [
        ...dmpoFindings(r),
        ...(prep
          ? dmpoAblationFindings(undefined, ABLATIONS_SYNTHETIC_ONLY("DMPO"))
          : dmpoAblationFindings(r.ablations)),
      ];
      findingsTitle = `DMPO (${datasetLabel(opts.dataset).replace(/^the /, "")})`;
      findingsNotes = (prep?.notes ?? DMPO_NOTES).slice(0, 3);
      ablationNote = r.ablations
        ? `Same rule, on the DMPO ablation rows (${r.ablations.notes.join("; ")}). ` +
          "Plots and numbers: table.md."
        : "";
    }
    const fields = paper === "sdpo"
      ? [
        "hr1_rank",
        "hr1_exp",
        "val_hr1",
        "ndcg5_rank",
        "hr1_gen_all",
        "hr1_gen_valid",
        "valid_ratio",
      ]
      : ["auc_released", "auc_paired"];
    const summary = summarize(
      result.per_seed as unknown as { methods: Record<string, Record<string, unknown>> }[],
      fields,
    );
    const metrics = {
      paper,
      dataset: opts.dataset,
      ...provenance(started),
      scale: opts.scale,
      scale_preset: SCALE_PRESETS[opts.scale],
      seeds,
      seconds: result.seconds,
      stage_seconds: takeStageTimes(),
      timings: seedTimings(result.per_seed),
      summary,
      // S-DPO: ValidRatio per method (mean over seeds), explicitly.
      ...(paper === "sdpo" ? { valid_ratio: validRatioByMethod(summary) } : {}),
      // The tested claims of findings.json, in the shape these fields have always had.
      claims: legacyClaims(findings, "headline"),
      ablation_claims: legacyClaims(findings, "ablation"),
      // The text around findings.md's table, so `deno task findings` re-renders it alone.
      findings_text: { title: findingsTitle, notes: findingsNotes, ablation_note: ablationNote },
      result,
    };
    await writeJsonAtomic(`${dir}/metrics.json`, jsonSafe(metrics));
    await writeFileAtomic(`${dir}/table.md`, table);
    await writeFindings(dir, findingsTitle, findings, findingsNotes, ablationNote);
    console.error(`[reproduce] ${paper}: wrote ${dir}/ (${result.seconds} s)`);
    console.log(table);
    written.push(dir);
  }
  progress.stop();
  clearBaseCache();
  if (baseLm) disposeSnapshot(baseLm.snap);
  setBaseLm(undefined);
  clearPretrainedCache();
  clearBaseModel();
  setRunFolders({ runs: undefined, cache: undefined, reuse: true });
  clearBaselines();
  clearDatasetBaselines();
  await writeIndex(opts.out);
  console.error(`[reproduce] done in ${Math.round((performance.now() - t0) / 1000)} s`);
  return written;
}

/**
 * The pretrained base LM of `opts.baseLm`. Missing or stale (made by another recipe): at
 * `--scale test` stage 0 starts from a random init (said so); otherwise it is pretrained
 * now (`deno task pretrain`, resumable) and saved there.
 */
async function baseLmFor(opts: ReproduceOptions) {
  const got = await loadBaseLm(opts.baseLm);
  if ("snap" in got) {
    console.error(
      `[reproduce] base LM ${opts.baseLm} (${got.info.recipe.steps} pretraining steps, ` +
        `validity probe ${got.info.probe_valid_ratio})`,
    );
    return got;
  }
  if (opts.scale === "test") {
    console.error(`[reproduce] no base LM (${got.reason}); stage 0 starts from a random init`);
    return undefined;
  }
  console.error(`[reproduce] ${got.reason}: pretraining the base LM into ${opts.baseLm}/`);
  await pretrainBaseLm(opts.baseLm);
  const again = await loadBaseLm(opts.baseLm);
  if (!("snap" in again)) fail(`base LM: ${again.reason}`);
  return again;
}

/**
 * The overall progress line of a run (stderr): planned from the options, fed by every
 * recorded stage; printed at most every 2 s, and always for the last stage.
 */
function startProgress(opts: ReproduceOptions, args: string[]) {
  const scale = SCALE_PRESETS[opts.scale];
  const seeds = (p: "sdpo" | "dmpo" | "dpo4rec") => opts.seeds || DEFAULT_SEEDS[opts.scale][p];
  const plan = planReproduce({
    papers: opts.papers,
    scale,
    seeds: { sdpo: seeds("sdpo"), dmpo: seeds("dmpo"), dpo4rec: seeds("dpo4rec") },
    sdpoAblations: opts.ablations,
    dmpoAblations: !args.includes("--no-ablations"),
    synthetic: opts.dataset === "synthetic",
  });
  const run = new RunProgress(plan, scale);
  let last = -Infinity;
  const show = (line: string) => {
    const now = performance.now();
    if (now - last >= 2000 || run.finished >= plan.length) {
      last = now;
      console.error(line);
    }
  };
  onStage((s) => show(run.stage(s.experiment, s.stage, s.seconds)));
  return {
    block: (name: string, seconds: number, n: number) => show(run.stage(name, name, seconds, n)),
    stop: () => onStage(undefined),
  };
}

/** results/README.md: an index of what is there. */
export async function writeIndex(out: string): Promise<void> {
  const lines = [
    "# results",
    "",
    "Written by `deno task reproduce` (`src/cli/reproduce.ts`). Each experiment folder holds:",
    "",
    "- `metrics.json`: every number per seed and method (with per-row arrays), config, scale,",
    "  seeds, backend, timings, claims with their CIs and verdicts;",
    "- `table.md`: mean ± std over seeds per method beside the paper's numbers and reference rows;",
    "- `findings.json`: each claim of the paper (stable `claim_id`) with our values, effect, 95 %",
    "  paired bootstrap CI, minimum detectable effect and verdict, or `not tested` and why;",
    "  `findings.md` is rendered from it;",
    "- `*.svg` (+ `.vl.json` specs): plots referenced from `table.md` (ablations, curves);",
    "- `runs/`: every trained stage of the experiment (see below).",
    "",
    "`.cache/` holds the stage-0 (SFT / base LM) weights of each (scale, seed) as safetensors,",
    "keyed by a hash of the model config, the stage-0 knobs, the seed and the training",
    "prompts: a rerun, or a run interrupted after stage 0, reuses them; while stage 0 trains,",
    "its checkpoints are in `.cache/base-<scale>-s<seed>-<hash>.run/`, so a run killed during",
    "stage 0 resumes it. Delete the folder (or",
    "pass `--no-cache`) to retrain. With `--model <folder>` stage 0 is a LoRA SFT of that",
    "model, kept as a PEFT adapter in `.cache/stage0-lora-<scale>-s<seed>-<hash>/` and merged",
    "again on reuse.",
    "",
    "Run folders (`src/experiments/runs.ts`): each trained stage — the LoRA arms (S-DPO:",
    "SFT-cont, DPO, S-DPO and the ablation arms; DMPO: its arms; DPO4Rec: its DPO / S-DPO",
    "arms) and DMPO's SFT — has a folder",
    "",
    "```",
    "<paper>/<dataset>/runs/",
    "  seed<s>/<arm>/                 arm = the method name in lower case: sft-cont, dpo, s-dpo,",
    "                                 s-dpo-k2, s-dpo-beta0.5, sft-dmpo-k3, dmpo-only-k3, sft, ...",
    "    arm.json                     the stage's name, seed, config hash, train and LoRA configs",
    "    metrics.jsonl                train()'s logged rows (loss, rewards/*, logps/*, ...)",
    "    checkpoints/step-NNNNNNN/    train() checkpoints, only while it trains",
    "    adapter_config.json          LoRA stages: the adapter in PEFT's layout, loadable with",
    "    adapter_model.safetensors      peft.PeftModel.from_pretrained or src/adapter.ts loadAdapter",
    "    config.json, model.safetensors   full fine-tuning stages (DMPO's SFT): the weights",
    "    done.json                    written last: config hash, final loss, steps, seconds",
    "  ablations/seed<s>/<arm>/       DMPO ablation stages (same layout)",
    "```",
    "",
    "A killed run resumes each unfinished stage from its newest checkpoint and reaches the same",
    "numbers as an uninterrupted run; a rerun loads every stage whose `done.json` holds the",
    "hash of its current config (name, seed, train and LoRA config, the weights it starts",
    "from, its training examples) onto the stage-0 weights instead of retraining it. A stage",
    "whose config changed is wiped and retrained; `--no-cache` retrains every stage.",
    "",
    "| experiment | files | scale | seeds | seconds |",
    "|---|---|---|---|---|",
  ];
  for (const paper of ["sdpo", "dmpo", "dpo4rec"]) {
    // Every <paper>/<dataset>/ folder with a metrics.json, known data sets first.
    const sets: string[] = [...DATASETS];
    try {
      for await (const e of Deno.readDir(`${out}/${paper}`)) {
        if (e.isDirectory && !sets.includes(e.name)) sets.push(e.name);
      }
    } catch {
      continue; // paper not run yet
    }
    for (const ds of sets) {
      const rel = `${paper}/${ds}`;
      try {
        const m = JSON.parse(await Deno.readTextFile(`${out}/${rel}/metrics.json`));
        lines.push(
          `| ${paper} / ${ds} | [metrics.json](${rel}/metrics.json), ` +
            `[table.md](${rel}/table.md), [findings.md](${rel}/findings.md)` +
            ` | ${m.scale} | ${m.seeds.length} | ${m.seconds} |`,
        );
      } catch {
        // not run yet
      }
    }
  }
  // Other runs written into sub-folders of this one (`--out <out>/<name>`), each with its index.
  const others: string[] = [];
  try {
    for await (const e of Deno.readDir(out)) {
      if (!e.isDirectory || e.name.startsWith(".")) continue;
      try {
        const text = await Deno.readTextFile(`${out}/${e.name}/README.md`);
        if (text.startsWith("# results\n\nWritten by `deno task reproduce`")) others.push(e.name);
      } catch {
        // not a run folder
      }
    }
  } catch {
    // no folder yet
  }
  if (others.length) {
    lines.push(
      "",
      "Other runs kept here, each written with `--out` into its own folder and indexed there:",
      "",
      ...others.sort().map((name) => `- [${name}/](${name}/README.md)`),
    );
  }
  lines.push("");
  await writeFileAtomic(`${out}/README.md`, lines.join("\n"));
}

/** Why the ablation claims are not tested on a released data set. */
const ABLATIONS_SYNTHETIC_ONLY = (paper: string) =>
  `the ${paper} ablations run on the synthetic world only (they need its item genres, extra ` +
  "negatives and domains, which the released files do not have)";

/** Run a data-set step; a {@link DatasetError} becomes one line on stderr and exit 2. */
async function loadOrFail<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof DatasetError) fail(e.message);
    throw e;
  }
}

if (import.meta.main) {
  // One line, never a bare stack trace (RECALIGN_DEBUG=1 shows it): a bad flag or value (e.g.
  // --backend) exits 2, anything else 1.
  await runMain("reproduce", main, [ConfigError]);
}
