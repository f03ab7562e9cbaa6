/**
 * `deno task data <command>`: data tools.
 *
 * - `fetch`: the released S-DPO (LastFM) and DMPO (ML-1M, Amazon Movie) files from the papers'
 *   repositories at pinned commits, checked (size, SHA-256) and resumable, into the folder
 *   `deno task reproduce --dataset …` reads (`data/raw/`, gitignored; `--data` / `RECALIGN_DATA`
 *   elsewhere);
 * - `audit`: what is wrong in a data file or folder;
 * - `build`: S-DPO and DMPO files from raw public data (`download` fetches that);
 * - `export-trl`: preference rows as JSON lines for TRL's DPOTrainer or S-DPO's trainer.
 *
 * `deno task data --help` lists every command and flag; `deno task data <command> --help` one
 * command's. Errors print one line (no stack; `RECALIGN_DEBUG=1` for one) and exit with status
 * 2 for a bad command, flag or value, 1 for anything else.
 *
 * @module
 */

import { auditPath, formatAuditMarkdown } from "../data/audit.ts";
import {
  BUILD_DATASETS,
  type BuildDataset,
  buildDataset,
  type BuildOptions,
  DEFAULT_BUILD_OPTIONS as D,
  formatBuildSummary,
} from "../data/build.ts";
import {
  DATA_ENV,
  DEFAULT_DATA_DIR,
  defaultDataRoot,
  downloadDataset,
  fetchReleased,
  RAW_DATASETS,
  RELEASED_REPOS,
} from "../data/download.ts";
import { writeFileAtomic } from "../io.ts";
import {
  choiceFlag,
  flagLines,
  type FlagTable,
  parseFlags,
  runMain,
  UsageError,
  WIDTH,
  wrap,
} from "./_args.ts";

/** One command of `deno task data`: its arguments, what it does, its flags. */
interface Command {
  args: string;
  about: string;
  flags: FlagTable;
}

/** The commands of `deno task data` and their flags (parser and `--help`). */
export const DATA_COMMANDS = {
  fetch: {
    args: "",
    about: "Download the released S-DPO (LastFM: train, val, test) and DMPO (ML-1M, Amazon " +
      "Movie) files from github.com/chenyuxin1999/S-DPO and github.com/BZX667/DMPO at pinned " +
      "commits (at least 15 MB), check each file's size and SHA-256, resume partial files, and " +
      "put them where `deno task reproduce --dataset` looks. The files keep their owners' " +
      "terms: never commit or re-publish them.",
    flags: {
      data: {
        type: "string",
        value: "DIR",
        defaultText: `$${DATA_ENV}, else ${DEFAULT_DATA_DIR}/`,
        help: "where to put them (sdpo-lastfm/, dmpo/ml-1m/, dmpo/amazon-movie/, SOURCES.json)",
      },
      only: {
        type: "string",
        value: "sdpo|dmpo",
        defaultText: "both",
        help: "fetch one paper's files only",
      },
      from: {
        type: "string",
        value: "URL",
        default: "https://raw.githubusercontent.com",
        help: "a mirror with GitHub's raw layout (<owner>/<repo>/<commit>/<path>)",
      },
      retries: {
        type: "string",
        value: "N",
        default: "3",
        help: "retries per file after a dropped connection (each resumes where it stopped)",
      },
    },
  },
  audit: {
    args: "<file|folder>",
    about: "What is wrong in a data set: a markdown report on stdout.",
    flags: {
      json: { type: "boolean", help: "print the report as JSON instead" },
      examples: {
        type: "string",
        value: "N",
        default: "3",
        help: "example rows shown per problem",
      },
    },
  },
  build: {
    args: `<${BUILD_DATASETS.join("|")}>`,
    about: "Build S-DPO and DMPO files (plus summary.json) from raw public data (see " +
      "`download`).",
    flags: {
      raw: { type: "string", value: "DIR", help: "the raw data folder (required)" },
      out: { type: "string", value: "DIR", help: "where to write the files (required)" },
      seed: { type: "string", value: "N", defaultText: String(D.seed), help: "seed of every draw" },
      "max-history": {
        type: "string",
        value: "N",
        defaultText: String(D.maxHistory),
        help: "history window (items)",
      },
      "min-history": {
        type: "string",
        value: "N",
        defaultText: String(D.minHistory),
        help: "shortest history kept",
      },
      candidates: {
        type: "string",
        value: "N",
        defaultText: String(D.candidates),
        help: "candidates per S-DPO row",
      },
      k: {
        type: "string",
        value: "N",
        defaultText: String(D.dmpoNegatives),
        help: "negatives per DMPO user",
      },
      "train-per-user": {
        type: "string",
        value: "N|all",
        defaultText: String(D.maxTrainPerUser),
        help: "training rows per user",
      },
      "max-users": { type: "string", value: "N", defaultText: "all", help: "users kept" },
      "min-rating": {
        type: "string",
        value: "R",
        defaultText: "keep all",
        help: "lowest rating that counts as a positive",
      },
      lenient: { type: "boolean", help: "skip malformed raw rows (counted) instead of failing" },
      encoding: {
        type: "string",
        value: "auto|utf-8|latin1",
        defaultText: D.encoding,
        help: "encoding of the raw files",
      },
      titles: {
        type: "string",
        value: "full|short",
        defaultText: D.titleForm,
        help: "item titles as in the raw data, or cut as DMPO's ML-1M files cut them",
      },
      "allow-substring-titles": {
        type: "boolean",
        help: "allow candidates whose title is part of another's (S-DPO's validity rule " +
          "misjudges them; avoided by default)",
      },
      "negative-pool": {
        type: "string",
        value: "interacted|catalogue",
        defaultText: D.negativePool,
        help: "where negatives are drawn from",
      },
    },
  },
  download: {
    args: `<${Object.keys(RAW_DATASETS).join("|")}>`,
    about: "Download a raw public data set for `build` (resumable, checksum-checked, zips " +
      "unpacked).",
    flags: {
      root: {
        type: "string",
        value: "DIR",
        default: DEFAULT_DATA_DIR,
        help: "files go to DIR/<name>/",
      },
      retries: {
        type: "string",
        value: "N",
        default: "3",
        help: "retries after a dropped connection",
      },
      list: { type: "boolean", help: "list the data sets, their URLs and terms" },
    },
  },
  "export-trl": {
    args: "",
    about: "Preference rows as JSON lines for TRL's DPOTrainer (`trl`: prompt, chosen, " +
      "rejected; K rows per prompt) or S-DPO's trainer (`sdpo`): the synthetic world's S-DPO " +
      "preference prompts of a scale (what reproduce's arms train on), or a released file.",
    flags: {
      out: { type: "string", value: "FILE", help: "the .jsonl file to write (required)" },
      format: { type: "string", value: "trl|sdpo", default: "trl", help: "row layout" },
      negatives: {
        type: "string",
        value: "K",
        default: "1",
        help: "rejected responses per prompt",
      },
      scale: {
        type: "string",
        value: "test|tiny|small",
        default: "small",
        help: "the synthetic world's scale",
      },
      input: {
        type: "string",
        value: "FILE",
        help: "a released S-DPO .json file instead of the synthetic world",
      },
      seed: {
        type: "string",
        value: "N",
        default: "0",
        help: "seed of the negatives drawn from a released file",
      },
    },
  },
} as const satisfies Record<string, Command>;

type CommandName = keyof typeof DATA_COMMANDS;
const NAMES = Object.keys(DATA_COMMANDS) as CommandName[];

const ABOUT = "Data tools: fetch the papers' released files, check a data set, build S-DPO and " +
  "DMPO files from raw public data, export preference rows for TRL or S-DPO's trainer.";

/** `--help` of one command, or of all (`deno task data --help`). */
export function dataHelp(name?: CommandName): string {
  const one = (n: CommandName) => {
    const c: Command = DATA_COMMANDS[n];
    return [
      `deno task data ${n}${c.args ? ` ${c.args}` : ""} [flags]`,
      ...wrap(c.about, WIDTH, "  ", "  "),
      flagLines(c.flags).split("\n").map((l) => `  ${l}`).join("\n"),
    ].join("\n");
  };
  if (name) return `usage: ${one(name)}`;
  return [
    "usage: deno task data <command> [flags]",
    "",
    ...wrap(ABOUT, WIDTH),
    "",
    "commands (`deno task data <command> --help` shows one):",
    ...NAMES.flatMap((n) =>
      wrap(
        DATA_COMMANDS[n].about.split(/(?<=[a-z)`])\. /)[0].replace(/\.$/, ""),
        WIDTH,
        `  ${n.padEnd(12)}`,
        " ".repeat(14),
      )
    ),
    "",
    ...NAMES.map(one).join("\n\n").split("\n"),
  ].join("\n");
}

function num(cmd: string, name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === "" || !Number.isFinite(x)) {
    throw new UsageError(`data ${cmd}: --${name}: expected a number, got ${JSON.stringify(v)}`);
  }
  return x;
}

/** Parse a command's flags (`data <cmd>: …` in errors). */
function parse<C extends CommandName>(cmd: C, args: string[]) {
  const flags: (typeof DATA_COMMANDS)[C]["flags"] = DATA_COMMANDS[cmd].flags;
  return parseFlags(`data ${cmd}`, flags, args, true);
}

/** Run the CLI with the given arguments; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  const [cmd, ...rest] = args;
  if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
    if (cmd === undefined) throw new UsageError(`data: no command; allowed: ${NAMES.join(", ")}`);
    console.log(dataHelp());
    return 0;
  }
  if ((NAMES as string[]).includes(cmd) && (rest.includes("--help") || rest.includes("-h"))) {
    console.log(dataHelp(cmd as CommandName));
    return 0;
  }
  if (cmd === "fetch") {
    const { values, positionals } = parse("fetch", rest);
    if (positionals.length > 0) {
      throw new UsageError(`data fetch: unexpected argument ${JSON.stringify(positionals[0])}`);
    }
    const v = values;
    const only = v.only === undefined
      ? undefined
      : [choiceFlag("data fetch", "only", v.only, ["sdpo", "dmpo"] as const)];
    const root = (v.data ?? defaultDataRoot()).replace(/\/+$/, "");
    let last = -1;
    const files = await fetchReleased({
      root,
      only,
      base: v.from,
      retries: num("fetch", "retries", v.retries),
      onFile: (f, i, n) => {
        last = -1;
        console.error(`[data fetch] ${i + 1}/${n} ${f.dest}`);
      },
      onProgress: (b, t) => {
        const pct = t ? Math.floor((100 * b) / t) : -1;
        if (t && t > 1_000_000 && pct !== last && pct % 25 === 0) {
          last = pct;
          console.error(`  ${b} / ${t} bytes`);
        }
      },
    });
    let fetched = 0, bytes = 0;
    for (const f of files) {
      bytes += f.bytes;
      if (f.requests > 0) fetched++;
      console.log(
        `${f.path}: ${f.bytes} bytes, sha256 ${f.sha256}` +
          (f.requests === 0
            ? " (already there, checked)"
            : f.resumedFrom > 0
            ? ` (resumed from byte ${f.resumedFrom})`
            : ""),
      );
    }
    const repos = [...new Set(files.map((f) => f.file.source))].map((k) => RELEASED_REPOS[k]);
    console.log(
      `${files.length} files (${fetched} downloaded, ${files.length - fetched} already there), ` +
        `${(bytes / 1e6).toFixed(1)} MB in ${root}/, each checked against its pinned size and ` +
        "checksum; sources and checksums: SOURCES.json",
    );
    for (const r of repos) console.log(`terms of github.com/${r.repo}: ${r.terms}`);
    console.log(
      "use: deno task reproduce --dataset lastfm|ml-1m|amazon-movie" +
        (v.data ? ` --data ${root}` : ""),
    );
    return 0;
  }
  if (cmd === "audit") {
    const { values, positionals } = parse("audit", rest);
    if (positionals.length !== 1) throw new UsageError("data audit: expected one file or folder");
    const report = await auditPath(positionals[0], {
      examples: num("audit", "examples", values.examples),
    });
    console.log(values.json ? JSON.stringify(report, null, 2) : formatAuditMarkdown(report));
    return 0;
  }
  if (cmd === "build") {
    const { values, positionals } = parse("build", rest);
    const name = positionals[0] as BuildDataset;
    if (positionals.length !== 1 || !BUILD_DATASETS.includes(name)) {
      throw new UsageError(`data build: expected one of ${BUILD_DATASETS.join(", ")}`);
    }
    if (!values.raw || !values.out) {
      throw new UsageError("data build: --raw and --out are required");
    }
    const enc = choiceFlag("data build", "encoding", values.encoding ?? D.encoding, [
      "auto",
      "utf-8",
      "latin1",
    ]);
    const titles = choiceFlag("data build", "titles", values.titles ?? D.titleForm, [
      "full",
      "short",
    ]);
    const tpu = values["train-per-user"];
    const pool = choiceFlag(
      "data build",
      "negative-pool",
      values["negative-pool"] ?? D.negativePool,
      [
        "interacted",
        "catalogue",
      ],
    );
    const options: BuildOptions = {
      seed: num("build", "seed", values.seed),
      maxHistory: num("build", "max-history", values["max-history"]),
      minHistory: num("build", "min-history", values["min-history"]),
      candidates: num("build", "candidates", values.candidates),
      dmpoNegatives: num("build", "k", values.k),
      maxTrainPerUser: tpu === "all" ? Infinity : num("build", "train-per-user", tpu),
      maxUsers: num("build", "max-users", values["max-users"]),
      minRating: num("build", "min-rating", values["min-rating"]),
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
    const { values, positionals } = parse("download", rest);
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
        `data download: expected one dataset name (${Object.keys(RAW_DATASETS).join(", ")}), got ${
          positionals.length ? positionals.map((p) => JSON.stringify(p)).join(" ") : "none"
        }`,
      );
    }
    let last = -1;
    const r = await downloadDataset(positionals[0], {
      root: values.root,
      retries: num("download", "retries", values.retries),
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
      `build with: deno task data build ${
        RAW_DATASETS[positionals[0]].builder
      } --raw ${r.dir} --out <dir>`,
    );
    return 0;
  }
  if (cmd === "export-trl") {
    const { values, positionals } = parse("export-trl", rest);
    if (positionals.length > 0) {
      throw new UsageError(
        `data export-trl: unexpected argument ${JSON.stringify(positionals[0])}`,
      );
    }
    if (!values.out) throw new UsageError("data export-trl: --out <file.jsonl> is required");
    const format = choiceFlag("data export-trl", "format", values.format!, ["trl", "sdpo"]);
    const k = num("export-trl", "negatives", values.negatives)!;
    // Loaded here only: the experiment modules pull in TensorFlow.js.
    const { SCALE_PRESETS, SCALES } = await import("../experiments/common.ts");
    const { releasedSdpoRows, syntheticPreferenceRows, toPairs } = await import(
      "../experiments/export_rows.ts"
    );
    const { toSdpoMultiNegJsonl, toTrlJsonl } = await import("../export.ts");
    const scale = choiceFlag(
      "data export-trl",
      "scale",
      values.scale!,
      SCALES,
    ) as keyof typeof SCALE_PRESETS;
    const rows = values.input
      ? await releasedSdpoRows(values.input, k, num("build", "seed", values.seed) ?? 0)
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
    `data: unknown command ${JSON.stringify(cmd)}; allowed: ${NAMES.join(", ")} ` +
      "(deno task data --help)",
  );
}

if (import.meta.main) await runMain("data", main);
