/**
 * `deno task reproduce`: run the S-DPO and/or DMPO experiments on the synthetic world and
 * write `<out>/<paper>/synthetic/{metrics.json,table.md,findings.md}` and `<out>/README.md`.
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
 * interruption; `--no-cache` disables that. metrics.json holds the per-stage wall times
 * (`stage_seconds`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { initBackend } from "../backend.ts";
import { ensureDir, writeFileAtomic, writeJsonAtomic } from "../io.ts";
import {
  clearBaseCache,
  gitHead,
  SCALE_PRESETS,
  type ScaleName,
  SCALES,
  setDiskCache,
  takeStageTimes,
} from "../experiments/common.ts";
import { BASELINE_NAMES, BASELINE_ROWS, clearBaselines } from "../experiments/baselines.ts";

import * as sdpo from "../experiments/sdpo.ts";
import * as dmpo from "../experiments/dmpo.ts";
import {
  dmpoAblationClaims,
  runDmpoAblations,
  writeDmpoAblationPlots,
} from "../experiments/dmpo_ablations.ts";
import * as dpo4rec from "../experiments/dpo4rec.ts";
import { evaluateClaims, findingsMarkdown } from "../report/findings.ts";
import {
  readPaperNumbers,
  seedTimings,
  summarize,
  tableMarkdown,
  writeSdpoPlots,
} from "../report/table.ts";

const FLAGS = [
  "--paper",
  "--scale",
  "--seeds",
  "--backend",
  "--out",
  "--ablations",
  "--no-ablations",
  "--no-cache",
  "--help",
];
const USAGE = `usage: reproduce [--paper sdpo|dmpo|dpo4rec|all] [--scale tiny|small] [--seeds N] ` +
  `[--backend wasm|cpu|tensorflow] [--out results/] [--ablations|--no-ablations] [--no-cache]`;

function fail(msg: string): never {
  console.error(`reproduce: ${msg}`);
  Deno.exit(2);
}

/** Parsed options. */
export interface ReproduceOptions {
  papers: ("sdpo" | "dmpo" | "dpo4rec")[];
  scale: ScaleName;
  seeds: number;
  backend?: string;
  out: string;
  /** Run the ablations (default: on at tiny and test, off at small). */
  ablations: boolean;
  /** Reuse / save stage-0 snapshots in `<out>/.cache/` (default true). */
  cache: boolean;
}

/** Parse argv; exits 2 with a one-line message on a bad flag or value. */
export function parseOptions(args: string[]): ReproduceOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        paper: { type: "string", default: "all" },
        scale: { type: "string", default: "small" },
        seeds: { type: "string" },
        backend: { type: "string" },
        out: { type: "string", default: "results" },
        ablations: { type: "boolean" },
        "no-ablations": { type: "boolean" },
        "no-cache": { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    const msg = (e as Error).message;
    const flag = msg.match(/'(-[^']*)'/)?.[1];
    if (/Unknown option/i.test(msg)) {
      fail(`unknown flag ${flag ?? "?"}; allowed: ${FLAGS.join(", ")}`);
    }
    if (/Unexpected argument/i.test(msg)) {
      fail(`unexpected argument ${flag ?? msg}; allowed flags: ${FLAGS.join(", ")}`);
    }
    fail(`${msg.split("\n")[0]} (allowed flags: ${FLAGS.join(", ")})`);
  }
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const paper = values.paper!;
  if (!["sdpo", "dmpo", "dpo4rec", "all"].includes(paper)) {
    fail(`--paper must be sdpo, dmpo, dpo4rec or all, got "${paper}"`);
  }
  const scale = values.scale as ScaleName;
  if (!SCALES.includes(scale)) fail(`--scale must be tiny or small, got "${values.scale}"`);
  const seeds = values.seeds === undefined ? (scale === "small" ? 2 : 1) : Number(values.seeds);
  if (!Number.isInteger(seeds) || seeds < 1) {
    fail(`--seeds must be a positive integer, got "${values.seeds}"`);
  }
  return {
    papers: paper === "all" ? ["sdpo", "dmpo", "dpo4rec"] : [paper as "sdpo" | "dmpo" | "dpo4rec"],
    scale,
    seeds,
    backend: values.backend,
    out: values.out!.replace(/\/+$/, ""),
    ablations: values["no-ablations"] ? false : values.ablations ?? scale !== "small",
    cache: !values["no-cache"],
  };
}

const SDPO_NOTES = [
  "Synthetic world (default config, domain 0), 20 candidates per prompt; numbers are on " +
  "held-out test users. Ranking: the 20 candidates ranked by the summed log-prob of title + " +
  "EOS. Generation: greedy, invalid answers count as misses in HR@1 (gen, all).",
  "SFT = stage 0: a random Llama-style LM (dim 64, 2 layers, 4 heads, ffn 192) fully " +
  "fine-tuned on the train prompts (prompt → positive title + EOS). The papers' LoRA SFT of a " +
  "pretrained LLM is merged into this one stage: a random frozen LM cannot be LoRA-tuned.",
  "SFT-cont, DPO (K=1), S-DPO (K=3): a fresh LoRA adapter (r 8, α 16, no dropout, all seven " +
  "projections) on the SFT model, the same steps and lr each; β = 1; reference = the frozen " +
  "SFT model; each preference prompt keeps a fixed seeded pool of 8 of its 19 other candidates " +
  "(uniform), K drawn from it each step. Classic baselines: src/baselines, trained on the train " +
  "users' histories, scored on the same 20 candidates.",
  "Paper columns: the S-DPO paper's tables could not be read (see " +
  "`../shared/paper-numbers.json`); a quoted secondary value is shown where one exists. " +
  "Only orderings (findings.md) are comparable, never absolute values.",
];

const DMPO_NOTES = [
  "Pairwise task: DMPO's prompt names two items (the liked one and a popularity-drawn " +
  "negative, random order). Response: the liked item's tagged title `<Title:…>` + EOS (as in " +
  "the feasibility study; rejected = each negative's title). AUC from the summed log-probs " +
  "of the liked vs the other item's response: `AUC (released)` = DMPO's notebook (one coin " +
  "flip per pair), `AUC (paired)` = fraction of pairs ranked correctly. With DMPO's ranking " +
  'response `<Title:A>, <Title:B>` (`response: "ranking"` in src/experiments/dmpo.ts) the ' +
  "dim-64 LM does not learn the preference (every LM arm ≈ 0.5 paired AUC, even after 500 " +
  "full fine-tuning steps): the two rankings share all their tokens.",
  "Base LM = stage 0 (shared with the S-DPO experiment; trained on S-DPO prompts only). " +
  "SFT = full fine-tuning of the base LM on the chosen responses (200 steps at small, lr " +
  "1e-3), over ceil(n / train users) draws per train user. Arms: fresh LoRA adapters, same " +
  "steps each. DMPO K=3 uses the prompt's negative plus two more popularity-drawn items " +
  "outside the prompt; DMPO-only starts from the base LM.",
  "β = 1 for the paper form, 0.1 (the released code's default, kept) with γ = 1 for the " +
  "released form.",
  "Paper columns: the DMPO paper's tables could not be read (see " +
  "`../shared/paper-numbers.json`). Only orderings (findings.md) are comparable.",
];

function jsonSafe(x: unknown): unknown {
  return JSON.parse(
    JSON.stringify(x, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v)),
  );
}

/** Run everything; returns the written directories. */
export async function main(args: string[]): Promise<string[]> {
  const opts = parseOptions(args);
  const backend = await initBackend(opts.backend, { quiet: true });
  console.error(
    `[reproduce] backend ${backend.backend} (simd ${backend.simd}, threads ${backend.threads}), ` +
      `scale ${opts.scale}, seeds ${opts.seeds}, papers ${opts.papers.join(", ")} → ${opts.out}/`,
  );
  const seeds = Array.from({ length: opts.seeds }, (_, i) => i);
  setDiskCache(opts.cache ? `${opts.out}/.cache` : undefined);
  const numbers = await readPaperNumbers();
  const head = await gitHead();
  const written: string[] = [];
  const t0 = performance.now();
  for (const paper of opts.papers) {
    const dir = `${opts.out}/${paper}/synthetic`;
    await ensureDir(dir);
    const started = new Date().toISOString();
    if (paper === "dpo4rec") {
      const r = await dpo4rec.run({ scale: opts.scale, seeds });
      await dpo4rec.writeDpo4recResults(r, dir, {
        started,
        finished: new Date().toISOString(),
        git_head: head ?? null,
        backend,
        deno: Deno.version,
      });
      console.error(`[reproduce] dpo4rec: wrote ${dir}/ (${r.seconds} s)`);
      console.log(dpo4rec.dpo4recTable(r));
      written.push(dir);
      continue;
    }
    let table: string, findings: string, result: sdpo.SdpoResult | dmpo.DmpoResult;
    let claims;
    let ablationClaims: ReturnType<typeof evaluateClaims> = [];
    if (paper === "sdpo") {
      const r = await sdpo.run({ scale: opts.scale, seeds, ablations: opts.ablations });
      result = r;
      claims = evaluateClaims(r);
      const abl = r.ablations;
      ablationClaims = abl
        ? evaluateClaims({
          paper: "sdpo-abl",
          per_seed: [{ seed: abl.seed, methods: abl.methods }],
        })
        : [];
      const plots = await writeSdpoPlots(dir, r);
      table = tableMarkdown({
        title: `S-DPO on the synthetic world (scale ${opts.scale}, ${seeds.length} seed(s), ` +
          `${r.num_test} test prompts, ${r.num_gen_test} generated)`,
        paper: "sdpo",
        methods: [...sdpo.SDPO_METHODS, ...BASELINE_NAMES.map((b) => BASELINE_ROWS[b])],
        columns: [
          { header: "HR@1 (rank)", field: "hr1_rank" },
          { header: "NDCG@5 (rank)", field: "ndcg5_rank" },
          { header: "HR@1 (gen, all)", field: "hr1_gen_all" },
          { header: "HR@1 (gen, valid)", field: "hr1_gen_valid" },
          { header: "ValidRatio", field: "valid_ratio" },
        ],
        perSeed: r.per_seed as unknown as { methods: Record<string, Record<string, unknown>> }[],
        paperMetric: "HR@1",
        paperMethodNames: { "S-DPO": "S-DPO", SFT: "TALLRec" },
        numbers,
        references: r.references as unknown as Record<string, Record<string, number>>,
        notes: SDPO_NOTES,
      }) + plots;
      findings = findingsMarkdown(
        "S-DPO (synthetic world)",
        claims,
        SDPO_NOTES.slice(0, 3),
        ablationClaims,
        abl ? `Same rule, on the ablation rows of seed ${abl.seed} (${abl.notes.join("; ")}).` : "",
      );
    } else {
      const r = await dmpo.run({ scale: opts.scale, seeds });
      result = r;
      claims = evaluateClaims(r);
      // The DMPO ablations are cheap (about 1.5 min at small): on at every scale unless
      // --no-ablations is given.
      let plots = "";
      if (!args.includes("--no-ablations")) {
        const abl = await runDmpoAblations({ scale: opts.scale, seed: 0 });
        r.ablations = abl;
        r.seconds = Math.round((r.seconds + abl.seconds) * 10) / 10; // run + ablations
        ablationClaims = dmpoAblationClaims(abl);
        plots = await writeDmpoAblationPlots(dir, abl);
      }
      table = tableMarkdown({
        title: `DMPO on the synthetic world (scale ${opts.scale}, ${seeds.length} seed(s), ` +
          `${r.num_test} test pairs)`,
        paper: "dmpo",
        methods: [...dmpo.DMPO_METHODS, ...BASELINE_NAMES.map((b) => BASELINE_ROWS[b])],
        columns: [
          { header: "AUC (released)", field: "auc_released" },
          { header: "AUC (paired)", field: "auc_paired" },
        ],
        perSeed: r.per_seed as unknown as { methods: Record<string, Record<string, unknown>> }[],
        paperMetric: "AUC",
        paperMethodNames: { "SFT+DMPO K=3": "DMPO" },
        numbers,
        references: r.references as unknown as Record<string, Record<string, number>>,
        notes: DMPO_NOTES,
      }) + plots;
      findings = findingsMarkdown(
        "DMPO (synthetic world)",
        claims,
        DMPO_NOTES.slice(0, 3),
        ablationClaims,
        r.ablations
          ? `Same rule, on the DMPO ablation rows (${r.ablations.notes.join("; ")}). ` +
            "Plots and numbers: table.md."
          : "",
      );
    }
    const fields = paper === "sdpo"
      ? ["hr1_rank", "ndcg5_rank", "hr1_gen_all", "hr1_gen_valid", "valid_ratio"]
      : ["auc_released", "auc_paired"];
    const metrics = {
      paper,
      dataset: "synthetic",
      started,
      finished: new Date().toISOString(),
      git_head: head ?? null,
      backend,
      deno: Deno.version,
      scale: opts.scale,
      scale_preset: SCALE_PRESETS[opts.scale],
      seeds,
      seconds: result.seconds,
      stage_seconds: takeStageTimes(),
      timings: seedTimings(result.per_seed),
      summary: summarize(
        result.per_seed as unknown as { methods: Record<string, Record<string, unknown>> }[],
        fields,
      ),
      claims: claims.map((
        { id, text, metric, a, b, a_per_seed, b_per_seed, rows, diff, verdict },
      ) => ({
        id,
        text,
        metric,
        a,
        b,
        a_per_seed,
        b_per_seed,
        rows,
        diff,
        verdict,
      })),
      ablation_claims: ablationClaims.map((
        { id, text, metric, a, b, a_per_seed, b_per_seed, rows, diff, verdict },
      ) => ({ id, text, metric, a, b, a_per_seed, b_per_seed, rows, diff, verdict })),
      result,
    };
    await writeJsonAtomic(`${dir}/metrics.json`, jsonSafe(metrics));
    await writeFileAtomic(`${dir}/table.md`, table);
    await writeFileAtomic(`${dir}/findings.md`, findings);
    console.error(`[reproduce] ${paper}: wrote ${dir}/ (${result.seconds} s)`);
    console.log(table);
    written.push(dir);
  }
  clearBaseCache();
  clearBaselines();
  await writeIndex(opts.out);
  console.error(`[reproduce] done in ${Math.round((performance.now() - t0) / 1000)} s`);
  return written;
}

/** results/README.md: an index of what is there. */
async function writeIndex(out: string): Promise<void> {
  const lines = [
    "# results",
    "",
    "Written by `deno task reproduce` (`src/cli/reproduce.ts`). Each experiment folder holds:",
    "",
    "- `metrics.json`: every number per seed and method (with per-row arrays), config, scale,",
    "  seeds, backend, timings, claims with their CIs and verdicts;",
    "- `table.md`: mean ± std over seeds per method beside the paper's numbers and reference rows;",
    "- `findings.md`: each claim of the paper with our values and a verdict computed from the",
    "  numbers (paired bootstrap CI of the difference);",
    "- `*.svg` (+ `.vl.json` specs): plots referenced from `table.md` (ablations, curves).",
    "",
    "`.cache/` holds the stage-0 (SFT / base LM) weights of each (scale, seed) as safetensors,",
    "keyed by a hash of the model config, the stage-0 knobs, the seed and the training",
    "prompts: a rerun, or a run interrupted after stage 0, reuses them. Delete the folder (or",
    "pass `--no-cache`) to retrain.",
    "",
    "| experiment | files | scale | seeds | seconds |",
    "|---|---|---|---|---|",
  ];
  for (const paper of ["sdpo", "dmpo", "dpo4rec"]) {
    const dir = `${out}/${paper}/synthetic`;
    try {
      const m = JSON.parse(await Deno.readTextFile(`${dir}/metrics.json`));
      lines.push(
        `| ${paper} / synthetic | [metrics.json](${paper}/synthetic/metrics.json), ` +
          `[table.md](${paper}/synthetic/table.md), [findings.md](${paper}/synthetic/findings.md)` +
          ` | ${m.scale} | ${m.seeds.length} | ${m.seconds} |`,
      );
    } catch {
      // not run yet
    }
  }
  lines.push("");
  await writeFileAtomic(`${out}/README.md`, lines.join("\n"));
}

if (import.meta.main) {
  await main(Deno.args);
}
