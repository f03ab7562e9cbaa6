/**
 * The papers' claims as paired comparisons, with verdicts decided by the numbers: a paired
 * bootstrap CI (95 %) of the per-row difference A − B over all (seed, test row) rows —
 * CI above 0 → "reproduced", below 0 → "not reproduced", straddling 0 → "inconclusive".
 * Nothing here is hand-written per run.
 *
 * @module
 */
import { type ConfidenceInterval, pairedBootstrapCI } from "../eval/metrics.ts";

/** Per-row arrays a claim can compare. */
export type RowMetric = "rank_hits" | "gen_hits" | "gen_valid" | "pair_correct" | "pos_logp";

/** One claim: "A > B on metric". */
export interface ClaimSpec {
  /** Stable id. */
  id: string;
  /** Paper ("-abl": the ablation claims, evaluated on the ablation rows of one seed). */
  paper: "sdpo" | "dmpo" | "sdpo-abl" | "dmpo-abl";
  /** The claim in words. */
  text: string;
  /** Per-row metric compared. */
  metric: RowMetric;
  /** Human name of the metric. */
  metricLabel: string;
  /** Method expected to be better. */
  a: string;
  /** Method expected to be worse. */
  b: string;
}

/** The claims checked. */
export const CLAIMS: ClaimSpec[] = [
  {
    id: "sdpo-gt-dpo",
    paper: "sdpo",
    text: "S-DPO > DPO on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "S-DPO",
    b: "DPO",
  },
  {
    id: "dpo-gt-sft",
    paper: "sdpo",
    text: "DPO > SFT on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "DPO",
    b: "SFT",
  },
  {
    id: "sdpo-gt-sft",
    paper: "sdpo",
    text: "S-DPO > SFT on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "S-DPO",
    b: "SFT",
  },
  {
    id: "sdpo-gt-sftcont",
    paper: "sdpo",
    text: "S-DPO > SFT-cont (same extra steps of SFT) on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "S-DPO",
    b: "SFT-cont",
  },
  {
    id: "sdpo-keeps-chosen-logp",
    paper: "sdpo",
    text: "S-DPO keeps the chosen likelihood above DPO's (log-prob of the test positive)",
    metric: "pos_logp",
    metricLabel: "summed log-prob of the positive title",
    a: "S-DPO",
    b: "DPO",
  },
  {
    id: "sdpo-gt-dpo-gen",
    paper: "sdpo",
    text: "S-DPO > DPO on HR@1 (generation, invalid = miss)",
    metric: "gen_hits",
    metricLabel: "generation HR@1",
    a: "S-DPO",
    b: "DPO",
  },
  {
    id: "sdpo-gt-sft-valid",
    paper: "sdpo",
    text: "S-DPO > SFT on ValidRatio",
    metric: "gen_valid",
    metricLabel: "ValidRatio",
    a: "S-DPO",
    b: "SFT",
  },
  {
    id: "sftdmpo-gt-sft",
    paper: "dmpo",
    text: "SFT+DMPO > SFT on AUC",
    metric: "pair_correct",
    metricLabel: "paired AUC",
    a: "SFT+DMPO K=3",
    b: "SFT",
  },
  {
    id: "sftdmpo-gt-dmpoonly",
    paper: "dmpo",
    text: "SFT+DMPO > DMPO-only on AUC",
    metric: "pair_correct",
    metricLabel: "paired AUC",
    a: "SFT+DMPO K=3",
    b: "DMPO-only K=3",
  },
  {
    id: "dmpo-k3-gt-k1",
    paper: "dmpo",
    text: "DMPO with K=3 negatives > K=1 on AUC",
    metric: "pair_correct",
    metricLabel: "paired AUC",
    a: "SFT+DMPO K=3",
    b: "SFT+DMPO K=1",
  },
  {
    id: "sftdmpo-gt-sftcont",
    paper: "dmpo",
    text: "SFT+DMPO > SFT-cont (same extra steps of SFT) on AUC",
    metric: "pair_correct",
    metricLabel: "paired AUC",
    a: "SFT+DMPO K=3",
    b: "SFT-cont",
  },
  {
    id: "released-gt-sft",
    paper: "dmpo",
    text: "SFT+DMPO (released code's loss) > SFT on AUC",
    metric: "pair_correct",
    metricLabel: "paired AUC",
    a: "SFT+DMPO-released K=3",
    b: "SFT",
  },
  {
    id: "more-negatives-help",
    paper: "sdpo-abl",
    text: "More negatives help: S-DPO with the largest K > K=1 (DPO) on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "S-DPO K=max",
    b: "S-DPO K=1",
  },
  {
    id: "beta-interior-optimum",
    paper: "sdpo-abl",
    text: "β has an interior optimum: best interior β > best endpoint β on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "β best interior",
    b: "β best endpoint",
  },
  {
    id: "hard-sdpo-gt-dpo",
    paper: "sdpo-abl",
    text: "With model-hard negatives, S-DPO > DPO on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "S-DPO (model-hard)",
    b: "DPO (model-hard)",
  },
  {
    id: "genre-sdpo-gt-dpo",
    paper: "sdpo-abl",
    text: "With same-genre negatives, S-DPO > DPO on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "S-DPO (same-genre)",
    b: "DPO (same-genre)",
  },
  {
    id: "hard-gt-uniform",
    paper: "sdpo-abl",
    text: "S-DPO with model-hard negatives > S-DPO with uniform negatives on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "S-DPO (model-hard)",
    b: "S-DPO (uniform)",
  },
];

/** A verdict. */
export type Verdict = "reproduced" | "not reproduced" | "inconclusive";

/** A claim with its numbers. */
export interface ClaimResult extends ClaimSpec {
  /** Mean of A's rows, per seed. */
  a_per_seed: number[];
  /** Mean of B's rows, per seed. */
  b_per_seed: number[];
  /** Rows compared (seeds × test rows). */
  rows: number;
  /** Mean difference and its 95 % paired bootstrap CI. */
  diff: ConfidenceInterval;
  /** The verdict. */
  verdict: Verdict;
}

/** What a claim needs from an experiment result. */
export interface ResultWithRows {
  /** Paper. */
  paper: string;
  /** Per seed: method → per-row arrays. */
  per_seed: { seed: number; methods: Record<string, unknown> }[];
}

/** The verdict of a CI of A − B. */
export function verdictOf(ci: { lo: number; hi: number }): Verdict {
  if (ci.lo > 0) return "reproduced";
  if (ci.hi < 0) return "not reproduced";
  return "inconclusive";
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Rows of a method's metric concatenated over seeds. */
export function claimRows(result: ResultWithRows, method: string, metric: RowMetric): number[][] {
  return result.per_seed.map((s) => {
    const m = s.methods[method] as Record<string, unknown> | undefined;
    const rows = m?.[metric];
    if (!Array.isArray(rows)) {
      throw new Error(`result has no "${metric}" rows for method "${method}" (seed ${s.seed})`);
    }
    return rows as number[];
  });
}

/** Evaluate the claims of `result.paper`. */
export function evaluateClaims(result: ResultWithRows): ClaimResult[] {
  return CLAIMS.filter((c) => c.paper === result.paper).map((c) => {
    const a = claimRows(result, c.a, c.metric);
    const b = claimRows(result, c.b, c.metric);
    const diff = pairedBootstrapCI(a.flat(), b.flat());
    return {
      ...c,
      a_per_seed: a.map(mean),
      b_per_seed: b.map(mean),
      rows: a.flat().length,
      diff,
      verdict: verdictOf(diff),
    };
  });
}

const f3 = (x: number) => (x >= 0 ? "+" : "") + x.toFixed(3);

/** findings.md (ablation claims, when given, in a second table). */
export function findingsMarkdown(
  title: string,
  claims: ClaimResult[],
  notes: string[],
  ablationClaims: ClaimResult[] = [],
  ablationNote = "",
): string {
  const lines = [
    `# Findings: ${title}`,
    "",
    "Generated from `metrics.json` by `src/report/findings.ts`; no verdict is written by hand.",
    "Each claim compares per-row values (test prompts or pairs) of two methods, pooled over",
    "seeds. Verdict rule: 95 % paired bootstrap CI of mean(A − B) (2,000 resamples) above 0 →",
    "**reproduced**, below 0 → **not reproduced**, straddling 0 → **inconclusive**.",
    "",
    "| claim | A (per seed) | B (per seed) | mean A − B [95 % CI] | rows | verdict |",
    "|---|---|---|---|---|---|",
  ];
  const row = (c: ClaimResult) =>
    `| ${c.text} | ${c.a}: ${c.a_per_seed.map((x) => x.toFixed(3)).join(", ")} | ${c.b}: ${
      c.b_per_seed.map((x) => x.toFixed(3)).join(", ")
    } | ${f3(c.diff.mean)} [${f3(c.diff.lo)}, ${f3(c.diff.hi)}] | ${c.rows} | **${c.verdict}** |`;
  for (const c of claims) lines.push(row(c));
  if (ablationClaims.length) {
    lines.push(
      "",
      "## Ablation claims",
      "",
      ablationNote || "Same rule, on the ablation rows (one seed).",
      "",
      "| claim | A (per seed) | B (per seed) | mean A − B [95 % CI] | rows | verdict |",
      "|---|---|---|---|---|---|",
      ...ablationClaims.map(row),
    );
  }
  lines.push("", "## Notes", "", ...notes.map((n) => `- ${n}`), "");
  return lines.join("\n");
}
