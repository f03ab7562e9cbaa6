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
 * ```
 *
 * Errors print their message (no stack) and exit with status 1.
 *
 * @module
 */

import { parseArgs } from "node:util";
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

const USAGE = `usage:
  data.ts audit <file|folder> [--json] [--examples N]
  data.ts build <${BUILD_DATASETS.join("|")}> --raw <dir> --out <dir> [--seed N] [--max-history N]
      [--min-history N] [--candidates N] [--k N] [--train-per-user N|all] [--max-users N]
      [--min-rating R] [--lenient] [--encoding auto|utf-8|latin1] [--titles full|short]
      [--allow-substring-titles] [--negative-pool interacted|catalogue]
  data.ts download <${Object.keys(RAW_DATASETS).join("|")}> [--root data/raw] [--retries N]
  data.ts download --list`;

class UsageError extends RecalignError {
  constructor(message: string) {
    super(`${message}\n${USAGE}`);
    this.name = "UsageError";
  }
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
  if (cmd === "audit") {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: { json: { type: "boolean" }, examples: { type: "string" } },
    });
    if (positionals.length !== 1) throw new UsageError("audit: expected one file or folder");
    const report = await auditPath(positionals[0], { examples: num("examples", values.examples) });
    console.log(values.json ? JSON.stringify(report, null, 2) : formatAuditMarkdown(report));
    return 0;
  }
  if (cmd === "build") {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
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
      },
    });
    const name = positionals[0] as BuildDataset;
    if (positionals.length !== 1 || !BUILD_DATASETS.includes(name)) {
      throw new UsageError(`build: expected one of ${BUILD_DATASETS.join(", ")}`);
    }
    if (!values.raw || !values.out) throw new UsageError("build: --raw and --out are required");
    const enc = values.encoding ?? "auto";
    if (!["auto", "utf-8", "latin1"].includes(enc)) throw new UsageError(`--encoding: got ${enc}`);
    const titles = values.titles ?? "full";
    if (!["full", "short"].includes(titles)) throw new UsageError(`--titles: got ${titles}`);
    const tpu = values["train-per-user"];
    const pool = values["negative-pool"] ?? "interacted";
    if (!["interacted", "catalogue"].includes(pool)) {
      throw new UsageError(`--negative-pool: got ${pool}`);
    }
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
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: { root: { type: "string" }, retries: { type: "string" }, list: { type: "boolean" } },
    });
    if (values.list) {
      for (const [n, d] of Object.entries(RAW_DATASETS)) {
        console.log(
          `${n} (build ${d.builder}): ${d.files.map((f) => f.url).join(" ")}\n  terms: ${d.terms}`,
        );
      }
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError("download: expected one dataset name");
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
  throw new UsageError(cmd ? `unknown command ${JSON.stringify(cmd)}` : "no command");
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (err) {
    if (err instanceof RecalignError) {
      console.error(`error: ${err.message}`);
      Deno.exit(1);
    }
    throw err;
  }
}
