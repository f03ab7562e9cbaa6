/**
 * `deno task world`: the world-design table of docs/world-design.md — HR@1 of the oracle,
 * history-Bayes and popularity references on 800 test prompts of the default world and of
 * one-knob variants, with uniform and same-genre candidates, and how often a uniform
 * negative shares the positive's genre; then the LM-free negative diagnostics of the default
 * world ({@link negativeDiagnosticsTables}): how often the hardest negative is truly worse than
 * the positive, and how many informative negatives K = 1, 3, 8 carry per sampler. Markdown on
 * stdout.
 *
 * ```sh
 * deno task world [--prompts 800]
 * ```
 *
 * @module
 */
import { type FlagTable, helpText, numberFlag, parseFlags, runMain } from "./_args.ts";
import {
  DIAGNOSTIC_SAMPLERS,
  hardestNegativeReport,
  historyBayesScores,
  INFORMATIVE_FACTOR,
  informativeReport,
  makeWorld,
  oracleScores,
  popularityScores,
  type ReferenceScorer,
  sdpoSamples,
  type WorldConfig,
} from "../data/world.ts";
import { hitsAtK } from "../eval/metrics.ts";

/** The variants of the table: the default plus one knob changed. */
export const WORLD_VARIANTS: [string, Partial<WorldConfig>][] = [
  ["default", {}],
  ["tasteConcentration 0.5 (flatter tastes)", { tasteConcentration: 0.5 }],
  ["tasteConcentration 0.05 (peakier tastes)", { tasteConcentration: 0.05 }],
  ["shortTermWeight 0.3 (sequence effect)", { shortTermWeight: 0.3 }],
  ["titleNoise 0", { titleNoise: 0 }],
  ["popularitySigma 0.5", { popularitySigma: 0.5 }],
];

/** The table's markdown rows. */
export function worldDesignTable(n = 800): string {
  const lines = [
    "| world (default + change) | candidates | oracle | history-Bayes | popularity | same-genre negs |",
    "|---|---|---|---|---|---|",
  ];
  for (const [name, cfg] of WORLD_VARIANTS) {
    const w = makeWorld(cfg);
    for (const sampler of ["uniform", "same-genre"] as const) {
      if (sampler === "same-genre" && name !== "default") continue;
      const test = sdpoSamples(w, "test", { negativeSampler: sampler }).slice(0, n);
      const pos = test.map((s) => s.positiveIndex);
      const hr = (f: ReferenceScorer) => {
        const h = hitsAtK({ scores: test.map((s) => f(w, s, s.candidateIds)) }, pos, 1);
        return (h.reduce((a, b) => a + b, 0) / h.length).toFixed(3);
      };
      let same = 0, total = 0;
      for (const s of test) {
        for (const id of s.negativeIds) {
          total++;
          if (w.items[id].genre === w.items[s.positiveId].genre) same++;
        }
      }
      lines.push(
        `| ${name} | ${sampler} | ${hr(oracleScores)} | ${hr(historyBayesScores)} | ` +
          `${hr(popularityScores)} | ${(same / total).toFixed(3)} |`,
      );
    }
  }
  return lines.join("\n");
}

/**
 * The negative diagnostics of a world, as two markdown tables, on its first `n` test prompts
 * (20 uniform candidates, as released): the hardest of the 19 negatives by each criterion and
 * how often it is truly worse than the positive; informative negatives among K drawn per
 * sampler (`q(n) ≥ q(p) / 10`, see `INFORMATIVE_FACTOR` in src/data/world.ts).
 */
export function negativeDiagnosticsTables(
  n = 800,
  config: Partial<WorldConfig> = {},
  ks: readonly number[] = [1, 3, 8],
): string {
  const w = makeWorld(config);
  const test = sdpoSamples(w, "test").slice(0, n);
  const f = (x: number) => x.toFixed(3);
  const hard = hardestNegativeReport(w, test);
  const inf = informativeReport(w, test, ks);
  const cell = (s: string, k: number, key: "informative" | "truly_better" | "any_informative") =>
    f(inf.find((r) => r.sampler === s && r.k === k)![key]);
  return [
    `Hardest of the 19 uniform negatives of ${test.length} test prompts, by criterion:`,
    "",
    "| criterion | prompts | truly worse than the positive | median q(n) / q(p) |",
    "|---|---|---|---|",
    ...hard.map((r) =>
      `| ${r.criterion} | ${r.prompts} | ${f(r.truly_worse)} | ${f(r.median_ratio)} |`
    ),
    "",
    `Informative negatives (q(n) ≥ q(p) / ${INFORMATIVE_FACTOR}) among K drawn per prompt ` +
    "(mean count; in brackets: mean count truly better than the positive; share of prompts " +
    "with at least one informative):",
    "",
    "| sampler | " + ks.map((k) => `K=${k}`).join(" | ") + " |",
    "|---|" + ks.map(() => "---|").join(""),
    ...DIAGNOSTIC_SAMPLERS.map((s) =>
      `| ${s} | ${
        ks.map((k) =>
          `${cell(s, k, "informative")} (${cell(s, k, "truly_better")}; ` +
          `${cell(s, k, "any_informative")})`
        ).join(" | ")
      } |`
    ),
  ].join("\n");
}

/** The flags of `deno task world`. */
export const WORLD_FLAGS = {
  prompts: {
    type: "string",
    value: "N",
    default: "800",
    help: "test prompts per world variant and candidate sampler",
  },
} as const satisfies FlagTable;

const HELP = helpText(WORLD_FLAGS, {
  usage: "deno task world [flags]",
  about: "Print the world-design table of docs/world-design.md (markdown on stdout): HR@1 of " +
    "the oracle, history-Bayes and popularity references on test prompts of the default " +
    "synthetic world and of one-knob variants, with uniform and same-genre candidates, and " +
    "how often a uniform negative shares the positive's genre; then the LM-free negative " +
    "diagnostics of the default world (how often the hardest negative is truly worse than the " +
    "positive, informative negatives per sampler and K = 1, 3, 8). No model is trained.",
});

/** Run the CLI; returns the exit status. */
export function main(args: string[]): Promise<number> {
  const { values, help } = parseFlags("world", WORLD_FLAGS, args);
  if (help) console.log(HELP);
  else {
    const n = numberFlag("world", "prompts", values.prompts, { integer: true, min: 1 });
    console.log(worldDesignTable(n));
    console.log("");
    console.log(negativeDiagnosticsTables(n));
  }
  return Promise.resolve(0);
}

if (import.meta.main) await runMain("world", main);
