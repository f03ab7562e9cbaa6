/**
 * `deno task world`: the world-design table of docs/world-design.md — HR@1 of the oracle,
 * history-Bayes and popularity references on 800 test prompts of the default world and of
 * one-knob variants, with uniform and same-genre candidates, and how often a uniform
 * negative shares the positive's genre. Markdown on stdout.
 *
 * ```sh
 * deno task world [--prompts 800]
 * ```
 *
 * @module
 */
import { type FlagTable, helpText, numberFlag, parseFlags, runMain } from "./_args.ts";
import {
  historyBayesScores,
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
    "how often a uniform negative shares the positive's genre. No model is trained.",
});

/** Run the CLI; returns the exit status. */
export function main(args: string[]): Promise<number> {
  const { values, help } = parseFlags("world", WORLD_FLAGS, args);
  if (help) console.log(HELP);
  else {console.log(
      worldDesignTable(numberFlag("world", "prompts", values.prompts, { integer: true, min: 1 })),
    );}
  return Promise.resolve(0);
}

if (import.meta.main) await runMain("world", main);
