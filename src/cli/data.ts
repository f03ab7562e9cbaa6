/**
 * `deno run -A src/cli/data.ts <command>`: data tools.
 *
 * ```
 * audit <file|folder> [--json] [--examples N]
 *     What is wrong in a dataset (markdown report on stdout; --json for machines).
 * build <ml-1m|lastfm|amazon|goodreads> --raw <dir> --out <dir> [--seed 42]
 *     [--max-history 10] [--min-history 1] [--candidates 20] [--k 3]
 *     [--train-per-user 10|all] [--max-users N] [--min-rating R] [--lenient]
 *     [--encoding auto|utf-8|latin1] [--titles full|short] [--allow-substring-titles]
 *     [--negative-pool interacted|catalogue]
 *     S-DPO and DMPO files from raw public data, plus summary.json.
 * download <name> [--root data/raw] [--retries 3]
 *     Fetch a raw dataset (resumable, checksum-checked, zips unpacked).
 * download --list
 * export-trl --out <file.jsonl> [--format trl|sdpo] [--negatives K] [--scale test|tiny|small]
 *     [--input <released S-DPO .json>] [--seed N]
 *     Preference rows as JSON lines for TRL's DPOTrainer (`trl`: prompt, chosen, rejected; K rows
 *     per prompt) or S-DPO's trainer (`sdpo`: rejected_1 … rejected_K): the synthetic world's
 *     S-DPO preference prompts of a scale (what reproduce's arms train on), or a released file.
 * ```
 *
 * `help` prints this usage. Errors print one line, their message (no stack; set
 * `RECALIGN_DEBUG=1` for one), and exit with status 2 for a bad command, flag or value, 1 for
 * anything else.
 *
 * @module
 */

import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { RecalignError } from "../errors.ts";
import { auditPath, formatAuditMarkdown } from "../data/audit.ts";
import {
  BUILD_DATASETS,
  type BuildDataset,
  buildDataset,
  type BuildOptions,
  formatBuildSummary,
} from "../data/build.ts";
import { downloadDataset, RAW_DATASETS } from "../data/download.ts";
import { writeFileAtomic } from "../io.ts";

const USAGE = `usage:
  data.ts audit <file|folder> [--json] [--examples N]
  data.ts build <${BUILD_DATASETS.join("|")}> --raw <dir> --out <dir> [--seed N] [--max-history N]
      [--min-history N] [--candidates N] [--k N] [--train-per-user N|all] [--max-users N]
      [--min-rating R] [--lenient] [--encoding auto|utf-8|latin1] [--titles full|short]
      [--allow-substring-titles] [--negative-pool interacted|catalogue]
  data.ts download <${Object.keys(RAW_DATASETS).join("|")}> [--root data/raw] [--retries N]
  data.ts download --list
  data.ts export-trl --out <file.jsonl> [--format trl|sdpo] [--negatives K]
      [--scale test|tiny|small] [--input <released S-DPO .json>] [--seed N]`;

/** A bad command, flag or value: one line naming it and what is allowed (exit status 2). */
class UsageError extends RecalignError {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** `parseArgs`, with its errors turned into one-line UsageErrors listing the allowed flags. */
function parse<T extends ParseArgsOptionsConfig>(cmd: string, args: string[], options: T) {
  try {
    return parseArgs({ args, allowPositionals: true as const, strict: true as const, options });
  } catch (e) {
    const msg = (e as Error).message;
    const flag = msg.match(/'(-[^' ]*)/)?.[1] ?? "?";
    const allowed = Object.keys(options).map((k) => `--${k}`).join(", ");
    if (/Unknown option/i.test(msg)) {
      throw new UsageError(`${cmd}: unknown flag ${flag}; allowed: ${allowed}`);
    }
    if (/argument missing/i.test(msg)) throw new UsageError(`${cmd}: ${flag} needs a value`);
    if (/does not take an argument/i.test(msg)) {
      throw new UsageError(`${cmd}: ${flag} takes no value`);
    }
    if (/ambiguous/i.test(msg)) {
      throw new UsageError(`${cmd}: ${flag}: write a value starting with "-" as ${flag}=VALUE`);
    }
    throw new UsageError(`${cmd}: ${msg.split("\n")[0]} (allowed: ${allowed})`);
  }
}

function oneOf(flag: string, v: string, allowed: readonly string[]): string {
  if (!allowed.includes(v)) {
    throw new UsageError(
      `--${flag}: expected ${allowed.join(", ")}; got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x)) {
    throw new UsageError(`--${name}: expected a number, got ${JSON.stringify(v)}`);
  }
  return x;
}

/** Run the CLI with the given arguments; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  const [cmd, ...rest] = args;
  if (cmd === "help" || cmd === "--help" || cmd === "-h") {
    console.log(USAGE);
    return 0;
  }
  if (cmd === "audit") {
    const { values, positionals } = parse("audit", rest, {
      json: { type: "boolean" },
      examples: { type: "string" },
    });
    if (positionals.length !== 1) throw new UsageError("audit: expected one file or folder");
    const report = await auditPath(positionals[0], { examples: num("examples", values.examples) });
    console.log(values.json ? JSON.stringify(report, null, 2) : formatAuditMarkdown(report));
    return 0;
  }
  if (cmd === "build") {
    const { values, positionals } = parse("build", rest, {
      raw: { type: "string" },
      out: { type: "string" },
      seed: { type: "string" },
      "max-history": { type: "string" },
      "min-history": { type: "string" },
      candidates: { type: "string" },
      k: { type: "string" },
      "train-per-user": { type: "string" },
      "max-users": { type: "string" },
      "min-rating": { type: "string" },
      lenient: { type: "boolean" },
      encoding: { type: "string" },
      titles: { type: "string" },
      "allow-substring-titles": { type: "boolean" },
      "negative-pool": { type: "string" },
    });
    const name = positionals[0] as BuildDataset;
    if (positionals.length !== 1 || !BUILD_DATASETS.includes(name)) {
      throw new UsageError(`build: expected one of ${BUILD_DATASETS.join(", ")}`);
    }
    if (!values.raw || !values.out) throw new UsageError("build: --raw and --out are required");
    const enc = oneOf("encoding", values.encoding ?? "auto", ["auto", "utf-8", "latin1"]);
    const titles = oneOf("titles", values.titles ?? "full", ["full", "short"]);
    const tpu = values["train-per-user"];
    const pool = oneOf("negative-pool", values["negative-pool"] ?? "interacted", [
      "interacted",
      "catalogue",
    ]);
    const options: BuildOptions = {
      seed: num("seed", values.seed),
      maxHistory: num("max-history", values["max-history"]),
      minHistory: num("min-history", values["min-history"]),
      candidates: num("candidates", values.candidates),
      dmpoNegatives: num("k", values.k),
      maxTrainPerUser: tpu === "all" ? Infinity : num("train-per-user", tpu),
      maxUsers: num("max-users", values["max-users"]),
      minRating: num("min-rating", values["min-rating"]),
      lenient: values.lenient ?? false,
      encoding: enc as BuildOptions["encoding"],
      titleForm: titles as BuildOptions["titleForm"],
      avoidSubstringTitles: !values["allow-substring-titles"],
      negativePool: pool as BuildOptions["negativePool"],
    };
    for (const k of Object.keys(options) as (keyof BuildOptions)[]) {
      if (options[k] === undefined) delete options[k];
    }
    const summary = await buildDataset(name, values.raw, values.out, options);
    console.log(formatBuildSummary(summary));
    console.log(`summary: ${values.out}/summary.json`);
    return 0;
  }
  if (cmd === "download") {
    const { values, positionals } = parse("download", rest, {
      root: { type: "string" },
      retries: { type: "string" },
      list: { type: "boolean" },
    });
    if (values.list) {
      for (const [n, d] of Object.entries(RAW_DATASETS)) {
        console.log(
          `${n} (build ${d.builder}): ${d.files.map((f) => f.url).join(" ")}\n  terms: ${d.terms}`,
        );
      }
      return 0;
    }
    if (positionals.length !== 1 || !Object.hasOwn(RAW_DATASETS, positionals[0])) {
      throw new UsageError(
        `download: expected one dataset name (${Object.keys(RAW_DATASETS).join(", ")}), got ${
          positionals.length ? positionals.map((p) => JSON.stringify(p)).join(" ") : "none"
        }`,
      );
    }
    let last = -1;
    const r = await downloadDataset(positionals[0], {
      root: values.root,
      retries: num("retries", values.retries),
      onProgress: (b, t) => {
        const pct = t ? Math.floor((100 * b) / t) : -1;
        if (pct !== last && pct % 10 === 0) {
          last = pct;
          console.error(`  ${b} / ${t ?? "?"} bytes`);
        }
      },
    });
    for (const f of r.files) console.log(`${f.path}: ${f.bytes} bytes, sha256 ${f.sha256}`);
    if (r.extracted.length) console.log(`extracted ${r.extracted.length} files into ${r.dir}`);
    console.log(
      `build with: deno run -A src/cli/data.ts build ${
        RAW_DATASETS[positionals[0]].builder
      } --raw ${r.dir} --out <dir>`,
    );
    return 0;
  }
  if (cmd === "export-trl") {
    const { values, positionals } = parse("export-trl", rest, {
      out: { type: "string" },
      format: { type: "string" },
      negatives: { type: "string" },
      scale: { type: "string" },
      input: { type: "string" },
      seed: { type: "string" },
    });
    if (positionals.length > 0) {
      throw new UsageError(`export-trl: unexpected argument ${JSON.stringify(positionals[0])}`);
    }
    if (!values.out) throw new UsageError("export-trl: --out <file.jsonl> is required");
    const format = oneOf("format", values.format ?? "trl", ["trl", "sdpo"]);
    const k = num("negatives", values.negatives) ?? 1;
    // Loaded here only: the experiment modules pull in TensorFlow.js.
    const { SCALE_PRESETS, SCALES } = await import("../experiments/common.ts");
    const { releasedSdpoRows, syntheticPreferenceRows, toPairs } = await import(
      "../experiments/export_rows.ts"
    );
    const { toSdpoMultiNegJsonl, toTrlJsonl } = await import("../export.ts");
    const scale = oneOf("scale", values.scale ?? "small", SCALES) as keyof typeof SCALE_PRESETS;
    const rows = values.input
      ? await releasedSdpoRows(values.input, k, num("seed", values.seed) ?? 0)
      : syntheticPreferenceRows(SCALE_PRESETS[scale], k);
    const text = format === "trl" ? toTrlJsonl(toPairs(rows)) : toSdpoMultiNegJsonl(rows);
    await writeFileAtomic(values.out, text);
    const n = format === "trl" ? rows.length * k : rows.length;
    console.log(
      `wrote ${n} ${format === "trl" ? "TRL pairs" : "S-DPO rows"} (${rows.length} prompts, ` +
        `${k} rejected each, from ${
          values.input ?? `the synthetic world's S-DPO preference prompts at scale ${scale}`
        }) to ${values.out}`,
    );
    return 0;
  }
  throw new UsageError(
    `${cmd ? `unknown command ${JSON.stringify(cmd)}` : "no command"}; allowed: audit, build, ` +
      "download, export-trl, help",
  );
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (err) {
    // One line, never a bare stack trace (RECALIGN_DEBUG=1 shows it).
    if (Deno.env.get("RECALIGN_DEBUG")) console.error(err);
    const e = err as Error;
    const msg = err instanceof RecalignError ? e.message : `${e?.name ?? "Error"}: ${e?.message}`;
    console.error(`error: ${msg.replace(/\s*\n\s*/g, " ")}`);
    Deno.exit(err instanceof UsageError ? 2 : 1);
  }
}
