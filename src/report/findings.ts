/**
 * The papers' claims as paired comparisons, with verdicts decided by the numbers: a 95 %
 * bootstrap CI of the mean per-row difference A − B that resamples what was sampled —
 * test clusters (the test user whose prompts the rows are, or the prompt) with the rows of
 * one cluster moving together across seeds, and, when the arms compared have models that
 * differ by seed, the seeds first (two levels; {@link clusteredBootstrapCI}). Models that
 * share a stage are one model: a seed whose A and B models are those of an earlier seed adds
 * no unit (at scale small every seed's SFT row is the one shared stage-0 model). CI above 0 →
 * "reproduced", below 0 → "contradicted", straddling 0 → "inconclusive". A claim the run
 * could not evaluate (its rows were not produced, e.g. ablations switched off) is kept as
 * "not tested" with the reason. Nothing here is hand-written per run.
 *
 * Each paper's run writes the list of {@link Finding}s as `findings.json`, and `findings.md`
 * is rendered from that list by {@link renderFindingsMarkdown} (and only there). Every
 * finding carries the resampling it used and the design's minimum detectable effect,
 * 2.80 × the bootstrap SE of the same resampling ({@link mdeFromSe}).
 *
 * Claim ids are stable: `<paper>.<claim>.<metric>` (`sdpo.sdpo_gt_dpo.hr1`,
 * `dmpo.sft_dmpo_gt_dmpo_only.auc`, `dpo4rec.rm_gt_random.genre_precision`). A claim of the
 * analysis plan (docs/analysis-plan.md) carries its plan id (`plan_id`: "S1", ...), its role
 * (the primary metric, its sampled twin, secondary, mechanism; `exploratory` when the plan
 * does not list it), the target MDE the plan sets and the power label derived from it
 * ({@link powerLabel}). S-DPO runs under the released protocol also get the plan's
 * checkpoint-rule sensitivity rows ({@link checkpointRuleFindings}); findings.md links the
 * plan and lists the run's deviations from it ({@link planDeviations}).
 *
 * @module
 */
import { clusteredBootstrapCI, type ConfidenceInterval } from "../eval/metrics.ts";
import { writeFileAtomic, writeJsonAtomic } from "../io.ts";
import { isAbsolute, relative, resolve } from "node:path";

/** Per-row arrays a claim can compare. */
export type RowMetric =
  | "rank_hits"
  | "rank_expected"
  | "gen_hits"
  | "gen_valid"
  | "pair_correct"
  | "pair_expected"
  | "pos_logp"
  | "precision_rows";

/** Which paper (and, with "-abl", its ablation rows of one seed) a claim belongs to. */
export type ClaimPaper = "sdpo" | "dmpo" | "dpo4rec" | "sdpo-abl" | "dmpo-abl";

/** One claim: "A > B on metric". */
export interface ClaimSpec {
  /** Stable id, `<paper>.<claim>.<metric>`. */
  id: string;
  /** Paper ("-abl": the ablation claims, evaluated on the ablation rows of one seed). */
  paper: ClaimPaper;
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
  /** The analysis plan's id of the claim (docs/analysis-plan.md: "S1", ...); absent: not in the plan. */
  planId?: string;
  /** Its role in the plan (absent: not said). */
  role?: ClaimRole;
  /** The MDE the plan's design aims for, in the metric's units (absent: none set). */
  targetMde?: number;
  /** A run without the arms' rows skips it (e.g. S-DPO K=8, not run on every data set). */
  optional?: boolean;
}

/** Id of the β claim, evaluated from the β sweep by {@link betaInteriorOptimum}. */
export const BETA_CLAIM_ID = "sdpo.beta_interior_optimum.hr1";

/**
 * A claim's role in the analysis plan (docs/analysis-plan.md): the metric that decides it
 * (`primary`), the papers' sampled metric reported beside the primary one (`sampled twin`),
 * a secondary metric or claim, a mechanism, or a comparison the plan does not list
 * (`exploratory`).
 */
export type ClaimRole =
  | "primary"
  | "sampled twin"
  | "secondary"
  | "mechanism"
  | "descriptive"
  | "exploratory";

/**
 * The target MDE the plan sets for the S-DPO claims S1-S5: the S-DPO − DPO gap of a
 * 1B-parameter LastFM reproduction, in HR@1 (docs/analysis-plan.md, "Target MDE").
 */
export const SDPO_TARGET_MDE = 0.014;

/** The plan's S-DPO claims S1-S5, compared on ranking HR@1 (expected: primary; sampled). */
const SDPO_HR1_CLAIMS = [
  ["S1", "sdpo_gt_dpo", "S-DPO", "DPO", "S-DPO beats DPO"],
  ["S2", "sdpo_gt_sft", "S-DPO", "SFT", "S-DPO beats the SFT model it starts from"],
  ["S3", "dpo_gt_sft", "DPO", "SFT", "DPO beats SFT"],
  ["S4", "sdpo_gt_sft_cont", "S-DPO", "SFT-cont", "the gain is not just more training"],
  ["S5", "k8_gt_k3", "S-DPO K=8", "S-DPO", "more negatives help"],
] as const;

/** The claims checked (S-DPO and DMPO main arms, S-DPO ablations). */
export const CLAIMS: ClaimSpec[] = [
  // S1-S5 of the plan: expected HR@1 (synthetic world: per test prompt, the world's true
  // probability that the model's top-1 is the next item) decides; sampled HR@1 beside it.
  ...SDPO_HR1_CLAIMS.flatMap(([planId, claim, a, b, words]): ClaimSpec[] => [
    {
      id: `sdpo.${claim}.exp_hr1`,
      paper: "sdpo",
      text: `${planId} (${words}): ${a} > ${b} on expected HR@1 (ranking; the world's true ` +
        "probability that the top-1 is the next item) — the primary metric",
      metric: "rank_expected",
      metricLabel: "expected ranking HR@1",
      a,
      b,
      planId,
      role: "primary",
      targetMde: SDPO_TARGET_MDE,
      optional: claim === "k8_gt_k3",
    },
    {
      id: `sdpo.${claim}.hr1`,
      paper: "sdpo",
      text: `${planId} (${words}): ${a} > ${b} on sampled HR@1 (ranking) — reported beside ` +
        "the primary expected HR@1, must agree in sign",
      metric: "rank_hits",
      metricLabel: "ranking HR@1",
      a,
      b,
      planId,
      role: "sampled twin",
      targetMde: SDPO_TARGET_MDE,
      optional: claim === "k8_gt_k3",
    },
  ]),
  {
    id: "sdpo.sdpo_gt_sft.gen_hr1",
    paper: "sdpo",
    text: "S2 (secondary metric): S-DPO > SFT on HR@1 (generation, invalid = miss; the " +
      "paper's Table 1 metric)",
    metric: "gen_hits",
    metricLabel: "generation HR@1",
    a: "S-DPO",
    b: "SFT",
    planId: "S2",
    role: "secondary",
  },
  {
    id: "sdpo.sdpo_gt_dpo.gen_hr1",
    paper: "sdpo",
    text: "S1 (secondary metric): S-DPO > DPO on HR@1 (generation, invalid = miss)",
    metric: "gen_hits",
    metricLabel: "generation HR@1",
    a: "S-DPO",
    b: "DPO",
    planId: "S1",
    role: "secondary",
  },
  {
    id: "sdpo.sdpo_keeps_chosen_logp.logp",
    paper: "sdpo",
    text: "S6 (mechanism): S-DPO keeps the chosen likelihood above DPO's (log-prob of the " +
      "test positive)",
    metric: "pos_logp",
    metricLabel: "summed log-prob of the positive title",
    a: "S-DPO",
    b: "DPO",
    planId: "S6",
    role: "mechanism",
  },
  {
    id: "sdpo.sdpo_gt_sft.valid_ratio",
    paper: "sdpo",
    text: "S8 (secondary): S-DPO keeps ValidRatio: S-DPO > SFT on ValidRatio",
    metric: "gen_valid",
    metricLabel: "ValidRatio",
    a: "S-DPO",
    b: "SFT",
    planId: "S8",
    role: "secondary",
  },
  {
    id: "sdpo.dpo_lowers_chosen_logp.logp",
    paper: "sdpo",
    text: "Not in the plan (exploratory): DPO lowers the chosen likelihood: SFT > DPO on the " +
      "log-prob of the test positive",
    metric: "pos_logp",
    metricLabel: "summed log-prob of the positive title",
    a: "SFT",
    b: "DPO",
    role: "exploratory",
  },
  {
    id: "dmpo.sft_dmpo_gt_sft.auc",
    paper: "dmpo",
    text: "SFT+DMPO > SFT on AUC",
    metric: "pair_correct",
    metricLabel: "paired AUC",
    a: "SFT+DMPO K=3",
    b: "SFT",
  },
  {
    id: "dmpo.sft_dmpo_gt_dmpo_only.auc",
    paper: "dmpo",
    text: "SFT+DMPO > DMPO-only on AUC",
    metric: "pair_correct",
    metricLabel: "paired AUC",
    a: "SFT+DMPO K=3",
    b: "DMPO-only K=3",
  },
  {
    id: "dmpo.k3_gt_k1.auc",
    paper: "dmpo",
    text: "DMPO with K=3 negatives > K=1 on AUC",
    metric: "pair_correct",
    metricLabel: "paired AUC",
    a: "SFT+DMPO K=3",
    b: "SFT+DMPO K=1",
  },
  {
    id: "dmpo.k3_gt_k1_equal_steps.auc",
    paper: "dmpo",
    text: "DMPO with K=3 negatives > K=1 on AUC at equal steps (K=3 trained for K=1's steps)",
    metric: "pair_correct",
    metricLabel: "paired AUC",
    a: "SFT+DMPO K=3 (equal steps)",
    b: "SFT+DMPO K=1",
    optional: true,
  },
  {
    id: "dmpo.sft_dmpo_gt_sft_cont.auc",
    paper: "dmpo",
    text: "SFT+DMPO > SFT-cont (same extra steps of SFT) on AUC",
    metric: "pair_correct",
    metricLabel: "paired AUC",
    a: "SFT+DMPO K=3",
    b: "SFT-cont",
  },
  {
    id: "dmpo.released_gt_sft.auc",
    paper: "dmpo",
    text: "SFT+DMPO (released code's loss) > SFT on AUC",
    metric: "pair_correct",
    metricLabel: "paired AUC",
    a: "SFT+DMPO-released K=3",
    b: "SFT",
  },
  // The same comparisons on the expected correctness (synthetic world only): per test pair,
  // the true probability, given the user and the pair, that the item ranked first is liked.
  ...([
    ["sft_dmpo_gt_sft", "SFT+DMPO K=3", "SFT", ""],
    ["sft_dmpo_gt_dmpo_only", "SFT+DMPO K=3", "DMPO-only K=3", ""],
    ["k3_gt_k1", "SFT+DMPO K=3", "SFT+DMPO K=1", ""],
    ["k3_gt_k1_equal_steps", "SFT+DMPO K=3 (equal steps)", "SFT+DMPO K=1", ""],
    ["sft_dmpo_gt_sft_cont", "SFT+DMPO K=3", "SFT-cont", " (same extra steps of SFT)"],
    ["released_gt_sft", "SFT+DMPO-released K=3", "SFT", ""],
  ] as const).map(([claim, a, b, extra]): ClaimSpec => ({
    id: `dmpo.${claim}.exp_auc`,
    paper: "dmpo",
    text: `${a} > ${b}${extra} on expected paired AUC (the world's true probability that ` +
      "the item ranked first is the liked one)",
    metric: "pair_expected",
    metricLabel: "expected paired AUC",
    a,
    b,
  })),
  {
    id: "sdpo.more_negatives_help.hr1",
    paper: "sdpo-abl",
    text: "More negatives help: S-DPO with the largest K > K=1 (DPO) on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "S-DPO K=max",
    b: "S-DPO K=1",
  },
  ...(["popularity", "same-genre", "model-hard"] as const).map((sampler): ClaimSpec => ({
    id: `sdpo.more_negatives_help_${sampler.replace("-", "_")}.hr1`,
    paper: "sdpo-abl",
    text: `More negatives help with ${sampler} negatives: S-DPO with the largest K > K=1 ` +
      "(DPO) on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: `S-DPO K=max (${sampler})`,
    b: `S-DPO K=1 (${sampler})`,
  })),
  // Ablation comparisons on the expected hit (synthetic world; see the headline ones above).
  ...([
    ["more_negatives_help", "S-DPO K=max", "S-DPO K=1", "More negatives help"],
    [
      "sdpo_gt_dpo_same_genre",
      "S-DPO (same-genre)",
      "DPO (same-genre)",
      "With same-genre negatives",
    ],
    [
      "sdpo_gt_dpo_model_hard",
      "S-DPO (model-hard)",
      "DPO (model-hard)",
      "With model-hard negatives",
    ],
    ["model_hard_gt_uniform", "S-DPO (model-hard)", "S-DPO (uniform)", "Model-hard negatives help"],
  ] as const).map(([claim, a, b, what]): ClaimSpec => ({
    id: `sdpo.${claim}.exp_hr1`,
    paper: "sdpo-abl",
    text: `${what}: ${a} > ${b} on expected HR@1 (ranking)`,
    metric: "rank_expected",
    metricLabel: "expected ranking HR@1",
    a,
    b,
  })),
  {
    id: BETA_CLAIM_ID,
    paper: "sdpo-abl",
    text: "β has an interior optimum: the best β of the sweep is neither endpoint and beats " +
      "both endpoints on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "S-DPO β=best",
    b: "S-DPO β=endpoint",
  },
  {
    id: "sdpo.sdpo_gt_dpo_model_hard.hr1",
    paper: "sdpo-abl",
    text: "With model-hard negatives, S-DPO > DPO on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "S-DPO (model-hard)",
    b: "DPO (model-hard)",
  },
  {
    id: "sdpo.sdpo_gt_dpo_same_genre.hr1",
    paper: "sdpo-abl",
    text: "With same-genre negatives, S-DPO > DPO on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "S-DPO (same-genre)",
    b: "DPO (same-genre)",
  },
  {
    id: "sdpo.model_hard_gt_uniform.hr1",
    paper: "sdpo-abl",
    text: "S-DPO with model-hard negatives > S-DPO with uniform negatives on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "S-DPO (model-hard)",
    b: "S-DPO (uniform)",
  },
];

/** A verdict of a tested claim. */
export type Verdict = "reproduced" | "contradicted" | "inconclusive";

/**
 * A verdict in findings.json: a tested claim's, "not tested" (with a reason), or
 * "descriptive" (a claim the plan describes without a verdict, e.g. S7's curves; `note`).
 */
export type FindingVerdict = Verdict | "not tested" | "descriptive";

/** Whether a finding has a verdict from a CI (reproduced, contradicted, inconclusive). */
export function hasVerdict(f: { verdict: FindingVerdict }): boolean {
  return f.verdict !== "not tested" && f.verdict !== "descriptive";
}

/** How a claim's rows were resampled (findings.json's `resampling`). */
export interface Resampling {
  /**
   * `"seeds, then test clusters"` (two levels: the arms compared have models that differ by
   * seed) or `"test clusters"` (one level: one model pair, or one seed).
   */
  levels: "seeds, then test clusters" | "test clusters";
  /** What a test cluster is: the test user (all their prompts) or the test prompt (row). */
  cluster_by: "user" | "prompt";
  /** Distinct test clusters. */
  clusters: number;
  /** Distinct seed units: seeds whose (A model, B model) pair is not an earlier seed's. */
  seed_units: number;
  /** Seeds of the run whose rows were dropped as copies of an earlier seed's models. */
  shared_seeds: number;
  /** Bootstrap resamples. */
  iters: number;
  /** The resampling in words. */
  description: string;
}

/** A claim with its numbers. */
export interface ClaimResult extends ClaimSpec {
  /** Mean of A's rows, per seed. */
  a_per_seed: number[];
  /** Mean of B's rows, per seed. */
  b_per_seed: number[];
  /** Mean of A's rows over the distinct seed units (default: mean of `a_per_seed`). */
  a_mean?: number;
  /** Mean of B's rows over the distinct seed units. */
  b_mean?: number;
  /** Rows compared (distinct seed units × test rows). */
  rows: number;
  /** Mean difference and its 95 % bootstrap CI. */
  diff: ConfidenceInterval;
  /** The verdict. */
  verdict: Verdict;
  /** Minimum detectable effect of the design ({@link mdeFromSe}); null when undefined. */
  mde?: number | null;
  /** Bootstrap SE of the mean difference. */
  se?: number;
  /** How the rows were resampled. */
  resampling?: Resampling;
  /** How a data-dependent comparison was chosen (the β claim). */
  note?: string;
}

/** One seed of an experiment result, as findings read it. */
export interface SeedRows {
  /** Seed. */
  seed: number;
  /** Method → per-row arrays (and other numbers). */
  methods: Record<string, unknown>;
  /** The seed whose stage-0 model this seed used (default: the seed itself). */
  stage0_seed?: number;
}

/** What a claim needs from an experiment result. */
export interface ResultWithRows {
  /** Paper. */
  paper: string;
  /** Per seed: method → per-row arrays. */
  per_seed: SeedRows[];
  /**
   * The test user of each test row, in row order (the same for every seed and method; a
   * metric with fewer rows covers the first ones, as generation does). Rows of one user
   * are one cluster. Absent: every row is its own cluster (the test prompt).
   */
  row_users?: readonly (number | string)[];
  /**
   * Methods whose model is the stage-0 model of the seed's `stage0_seed` (shared by seeds
   * with the same `stage0_seed`); every other method trains one model per seed.
   */
  stage0_methods?: readonly string[];
}

/** The verdict of a CI of A − B. */
export function verdictOf(ci: { lo: number; hi: number }): Verdict {
  if (ci.lo > 0) return "reproduced";
  if (ci.hi < 0) return "contradicted";
  return "inconclusive";
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** z_{0.975}: two-sided 5 % level. */
export const Z_975 = 1.959963984540054;
/** z_{0.8}: 80 % power. */
export const Z_80 = 0.8416212335729143;

/** Bootstrap resamples of every claim. */
export const BOOTSTRAP_ITERS = 2000;

/**
 * Minimum detectable effect from the standard error of the mean difference: the true
 * difference that a two-sided 5 % test detects with 80 % power, `(z_{0.975} + z_{0.8}) · SE`
 * ≈ 2.80 · SE (normal approximation). Null when the SE is not finite.
 */
export function mdeFromSe(se: number): number | null {
  return Number.isFinite(se) ? (Z_975 + Z_80) * se : null;
}

/**
 * Minimum detectable effect of `n` independent paired rows, `(z_{0.975} + z_{0.8}) · sd(d) /
 * √n` (sd with n − 1), where `d` are the per-row differences A − B. Findings use
 * {@link mdeFromSe} with the SE of their own resampling; this is its closed form when every
 * row is its own cluster and there is one seed. Null with fewer than 2 rows.
 */
export function mdePaired(diffs: readonly number[]): number | null {
  const n = diffs.length;
  if (n < 2) return null;
  const m = mean(diffs);
  const sd = Math.sqrt(diffs.reduce((s, d) => s + (d - m) ** 2, 0) / (n - 1));
  return ((Z_975 + Z_80) * sd) / Math.sqrt(n);
}

/** How a comparison's rows are grouped: test clusters, and which seeds share models. */
export interface RowDesign {
  /**
   * Cluster id of each test row (rows in test order, the same for every seed; a metric with
   * fewer rows takes the first ids). Default: the row index (every row its own cluster).
   */
  clusters?: readonly (number | string)[];
  /** What a cluster is (default: "user" when `clusters` is given, else "prompt"). */
  clusterBy?: "user" | "prompt";
  /** Model id of A on each seed (same id = the same model). Default: one model per seed. */
  modelsA?: readonly string[];
  /** Model id of B on each seed. */
  modelsB?: readonly string[];
  /** Bootstrap resamples (default {@link BOOTSTRAP_ITERS}). */
  iters?: number;
}

/**
 * Compare A's and B's per-row values (one array per seed, same rows) under `spec`. Seeds
 * whose (A model, B model) pair repeats an earlier seed's are one unit (their rows averaged:
 * the same model gives the same rows); the per-row differences are resampled by
 * {@link clusteredBootstrapCI} — test clusters, and the seed units too when there are two or
 * more. Verdict from the CI, MDE = 2.80 × its bootstrap SE.
 */
export function compareRows(
  spec: ClaimSpec,
  a: number[][],
  b: number[][],
  design: RowDesign = {},
): ClaimResult {
  if (a.length !== b.length || a.length === 0) {
    throw new Error(`claim ${spec.id}: ${spec.a} has ${a.length} seeds, ${spec.b} has ${b.length}`);
  }
  const n = a[0].length;
  for (let s = 0; s < a.length; s++) {
    if (a[s].length !== n || b[s].length !== n) {
      throw new Error(
        `claim ${spec.id}: seed ${s + 1}: ${spec.a} has ${a[s].length} rows, ${spec.b} has ` +
          `${b[s].length} (expected ${n})`,
      );
    }
  }
  const S = a.length;
  const ma = design.modelsA ?? a.map((_, s) => `seed ${s}`);
  const mb = design.modelsB ?? b.map((_, s) => `seed ${s}`);
  if (ma.length !== S || mb.length !== S) {
    throw new Error(`claim ${spec.id}: expected one model id per seed (${S})`);
  }
  // Seed units: distinct (A model, B model) pairs, in seed order.
  const unitOf = new Map<string, number[]>();
  for (let s = 0; s < S; s++) {
    const key = JSON.stringify([ma[s], mb[s]]);
    unitOf.set(key, [...(unitOf.get(key) ?? []), s]);
  }
  const units = [...unitOf.values()];
  const avg = (xs: number[][], seeds: number[]) =>
    xs[seeds[0]].map((_, r) => mean(seeds.map((s) => xs[s][r])));
  const ua = units.map((ss) => avg(a, ss)), ub = units.map((ss) => avg(b, ss));
  const d = ua.map((row, u) => row.map((x, r) => x - ub[u][r]));
  let clusters: readonly (number | string)[] = Array.from({ length: n }, (_, r) => r);
  let clusterBy: "user" | "prompt" = "prompt";
  if (design.clusters) {
    if (design.clusters.length < n) {
      throw new Error(
        `claim ${spec.id}: ${n} rows but only ${design.clusters.length} cluster ids`,
      );
    }
    clusters = design.clusters.slice(0, n);
    clusterBy = design.clusterBy ?? "user";
  }
  const iters = design.iters ?? BOOTSTRAP_ITERS;
  const ci = clusteredBootstrapCI(d, clusters, { iters });
  const levels = ci.resampledUnits ? "seeds, then test clusters" : "test clusters";
  const what = clusterBy === "user" ? "test users" : "test prompts";
  const resampling: Resampling = {
    levels,
    cluster_by: clusterBy,
    clusters: ci.clusters,
    seed_units: units.length,
    shared_seeds: S - units.length,
    iters,
    description:
      (ci.resampledUnits
        ? `${units.length} seeds, then ${ci.clusters} ${what}`
        : `${ci.clusters} ${what}` + (S > 1 ? ` (one model pair: ${S} seeds share it)` : "")) +
      (clusterBy === "user" ? ", all rows of a user together" : ""),
  };
  const diff = { mean: ci.mean, lo: ci.lo, hi: ci.hi };
  return {
    ...spec,
    a_per_seed: a.map(mean),
    b_per_seed: b.map(mean),
    a_mean: mean(ua.map(mean)),
    b_mean: mean(ub.map(mean)),
    rows: units.length * n,
    diff,
    verdict: verdictOf(diff),
    mde: mdeFromSe(ci.se),
    se: ci.se,
    resampling,
  };
}

/** Rows of a method's metric per seed, or the reason they are missing. */
function rowsOrReason(
  result: ResultWithRows,
  method: string,
  metric: RowMetric,
): number[][] | string {
  const out: number[][] = [];
  for (const s of result.per_seed) {
    const m = s.methods[method] as Record<string, unknown> | undefined;
    if (!m) return `the run has no "${method}" rows (seed ${s.seed})`;
    const rows = m[metric];
    if (!Array.isArray(rows) || rows.length === 0) {
      if (metric === "rank_expected" || metric === "pair_expected") {
        return `the run has no per-row "${metric}" for "${method}": the expected value ` +
          "needs the synthetic world's law, and runs before it was recorded lack it";
      }
      return `the run has no per-row "${metric}" for "${method}" (seed ${s.seed})`;
    }
    out.push(rows as number[]);
  }
  if (out.length === 0) return "the run has no seeds";
  return out;
}

/** Rows of a method's metric concatenated over seeds. */
export function claimRows(result: ResultWithRows, method: string, metric: RowMetric): number[][] {
  const r = rowsOrReason(result, method, metric);
  if (typeof r === "string") throw new Error(r.replace(/^the run has no per-row/, "result has no"));
  return r;
}

/**
 * "β has an interior optimum", from a β sweep (rows per seed for each β): let β* be the β
 * with the highest mean (ties: the smallest such β). If β* is interior, the claim is compared against the endpoint whose
 * CI of (β* − endpoint) has the lower bound nearest 0 (the binding one): reproduced iff both
 * endpoint CIs are above 0. If β* is an endpoint, the best interior β is compared with it
 * (an interval below 0 → contradicted). β* is chosen on the same rows, which favours the
 * claim when β* is interior; `note` says which comparison was made.
 */
export function betaInteriorOptimum(
  spec: ClaimSpec,
  sweep: { beta: number; method: string; rows: number[][] }[],
  design: RowDesign = {},
): ClaimResult {
  if (sweep.length < 3) {
    throw new Error(`claim ${spec.id}: needs ≥ 3 β values, got ${sweep.length}`);
  }
  const s = sweep.slice().sort((x, y) => x.beta - y.beta);
  const m = (r: number[][]) => mean(r.flat());
  const best = s.reduce((a, b) => (m(b.rows) > m(a.rows) ? b : a));
  const ends = [s[0], s[s.length - 1]];
  const f = (x: number) => (x >= 0 ? "+" : "") + x.toFixed(3);
  const means = `mean by β: ${s.map((x) => `${x.beta} ${m(x.rows).toFixed(3)}`).join(", ")}`;
  const as = (c: ClaimResult, note: string): ClaimResult => ({ ...c, note: `${means}; ${note}` });
  if (!ends.includes(best)) {
    const cs = ends.map((e) =>
      compareRows({ ...spec, a: best.method, b: e.method }, best.rows, e.rows, design)
    );
    const binding = cs[0].diff.lo <= cs[1].diff.lo ? cs[0] : cs[1];
    return as(
      binding,
      `best β = ${best.beta} (interior); vs β = ${ends[0].beta}: ${f(cs[0].diff.mean)} ` +
        `[${f(cs[0].diff.lo)}, ${f(cs[0].diff.hi)}], vs β = ${ends[1].beta}: ` +
        `${f(cs[1].diff.mean)} [${f(cs[1].diff.lo)}, ${f(cs[1].diff.hi)}]; the row shows the ` +
        "binding one; β chosen on the same rows",
    );
  }
  const interior = s.slice(1, -1);
  const bestI = interior.reduce((a, b) => (m(b.rows) > m(a.rows) ? b : a));
  return as(
    compareRows({ ...spec, a: bestI.method, b: best.method }, bestI.rows, best.rows, design),
    `best β = ${best.beta} is an endpoint; the row compares the best interior β = ` +
      `${bestI.beta} with it`,
  );
}

/** The β sweep rows of an S-DPO ablation result, from its `S-DPO β=<x>` methods. */
function betaSweepOf(
  result: ResultWithRows,
  metric: RowMetric,
): { beta: number; method: string; rows: number[][] }[] | string {
  const names = Object.keys(result.per_seed[0]?.methods ?? {}).filter((n) =>
    /^S-DPO β=[0-9.eE+-]+$/.test(n)
  );
  if (names.length < 3) {
    return `the β sweep has ${names.length} value(s) ("S-DPO β=<x>" rows); 3 or more needed`;
  }
  const out = [];
  for (const method of names) {
    const rows = rowsOrReason(result, method, metric);
    if (typeof rows === "string") return rows;
    out.push({ beta: Number(method.slice("S-DPO β=".length)), method, rows });
  }
  return out;
}

/**
 * Per-row metrics whose rows are the test rows in order (or their first ones: generation),
 * clustered by `row_users`; any other per-row metric (e.g. DPO4Rec's one row per test user)
 * has every row its own cluster.
 */
export const TEST_ROW_METRICS: readonly string[] = [
  "rank_hits",
  "rank_expected",
  "gen_hits",
  "gen_valid",
  "pos_logp",
  "pair_correct",
  "pair_expected",
  "ndcg_rows",
];

/**
 * The design of comparing `a` with `b` on `metric` of a result: its test clusters
 * (`row_users`, for {@link TEST_ROW_METRICS}) and the model of each method on each seed (a
 * stage-0 method: the stage-0 model of the seed's `stage0_seed`, shared by the seeds with
 * that stage-0 seed; any other: its own seed's).
 */
export function designOf(
  result: ResultWithRows,
  a: string,
  b: string,
  metric: string,
): RowDesign {
  const shared = new Set(result.stage0_methods ?? []);
  const models = (m: string) =>
    result.per_seed.map((s) =>
      shared.has(m) ? `${m} @ stage 0 of seed ${s.stage0_seed ?? s.seed}` : `${m} @ seed ${s.seed}`
    );
  return {
    ...(result.row_users && TEST_ROW_METRICS.includes(metric)
      ? { clusters: result.row_users, clusterBy: "user" as const }
      : {}),
    modelsA: models(a),
    modelsB: models(b),
  };
}

/** Evaluate one spec on a result, or say why it cannot be. */
function evaluateSpec(spec: ClaimSpec, result: ResultWithRows): ClaimResult | string {
  if (spec.id === BETA_CLAIM_ID) {
    const sweep = betaSweepOf(result, spec.metric);
    return typeof sweep === "string"
      ? sweep
      : betaInteriorOptimum(spec, sweep, designOf(result, spec.a, spec.b, spec.metric));
  }
  const a = rowsOrReason(result, spec.a, spec.metric);
  if (typeof a === "string") return a;
  const b = rowsOrReason(result, spec.b, spec.metric);
  if (typeof b === "string") return b;
  return compareRows(spec, a, b, designOf(result, spec.a, spec.b, spec.metric));
}

/**
 * Evaluate the claims of `result.paper` (throws when a claim's rows are missing, except the
 * expected-value claims, skipped on data without a known law).
 */
export function evaluateClaims(result: ResultWithRows): ClaimResult[] {
  const out: ClaimResult[] = [];
  for (const c of CLAIMS.filter((c) => c.paper === result.paper)) {
    const r = evaluateSpec(c, result);
    if (typeof r !== "string") out.push(r);
    // The expected-value claims need the synthetic world's law: skipped without their rows,
    // as are the optional claims (arms a run may not have).
    else if (!c.optional && !c.metric.endsWith("_expected")) {
      throw new Error(r.replace(/^the run has no per-row/, "result has no"));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Findings: the machine-readable list (findings.json) and its one rendering (findings.md)

/** One entry of findings.json. */
export interface Finding {
  /** Stable id, `<paper>.<claim>.<metric>`. */
  claim_id: string;
  /** The claim in words. */
  claim: string;
  /** Paper. */
  paper: "sdpo" | "dmpo" | "dpo4rec";
  /** A main-table claim or an ablation claim (ablations: one seed). */
  /**
   * A main-table claim, an ablation claim (ablations: one seed), or a row of the
   * checkpoint-rule sensitivity analysis (`rule`).
   */
  scope: "headline" | "ablation" | "sensitivity";
  /** Per-row metric compared. */
  metric: string;
  /** Its human name. */
  metric_label: string;
  /** The arm expected to be better (null when not tested and unknown). */
  ours_method: string | null;
  /** The arm it is compared with. */
  baseline_method: string | null;
  /** Mean of `ours_method`'s rows pooled over the distinct seed units. */
  ours: number | null;
  /** Mean of `baseline_method`'s rows pooled over the distinct seed units. */
  baseline: number | null;
  /** Per-seed means of ours. */
  ours_per_seed: number[];
  /** Per-seed means of the baseline. */
  baseline_per_seed: number[];
  /** Mean per-row difference ours − baseline. */
  effect: number | null;
  /** 95 % bootstrap CI of the effect (percentile; resampling: `resampling`). */
  ci95: [number, number] | null;
  /** Bootstrap SE of the effect, from the same resampling. */
  se: number | null;
  /**
   * Minimum detectable effect of the design (80 % power, two-sided 5 %): 2.80 × `se`
   * ({@link mdeFromSe}).
   */
  mde: number | null;
  /** How the rows were resampled (null when not tested). */
  resampling: Resampling | null;
  /** Seeds of the run whose rows enter (seeds sharing both models count once). */
  seeds: number[];
  /** Rows compared (distinct seed units × test rows). */
  rows: number;
  /** Verdict from `ci95` ({@link verdictOf}), or "not tested". */
  verdict: FindingVerdict;
  /** Why the claim was not tested (only when `verdict` is "not tested"). */
  reason?: string;
  /**
   * The target whose gain the CI rules out: present when the amended rule (docs/analysis-plan.md,
   * "Amendment to the decision rule") decided the claim — its CI straddles 0 with the upper
   * bound below the target, so `verdict` is "contradicted" (a gain of the target's size is
   * ruled out; no reversal); {@link ruledOut}.
   */
  ruled_out?: number;
  /** The plan's original three-way verdict, beside an amended one (with `ruled_out`). */
  verdict_original_rule?: Verdict;
  /** How a data-dependent comparison was chosen. */
  note?: string;
  /**
   * The analysis plan's id of the claim ("S1", ...; docs/analysis-plan.md), or the section
   * whose table lists it by claim id ("DMPO", "DPO4Rec"); null: not in the plan.
   */
  plan_id: string | null;
  /** The claim's role in the plan ({@link ClaimRole}); null: not said. */
  role: ClaimRole | null;
  /** The MDE the plan's design aims for (null: the plan sets none for this claim). */
  target_mde: number | null;
  /**
   * The design's power against the plan's target ({@link powerLabel}): "under-powered (MDE x
   * > target y)" for an inconclusive claim whose MDE is above its target — the verdict stays
   * inconclusive, and is no evidence of no effect; null without a target or a verdict.
   */
  power: string | null;
  /**
   * Which checkpoint of each trained arm the rows are (S-DPO main arms, see
   * {@link CHECKPOINT_RULES}); absent where no checkpoint is chosen.
   */
  rule?: CheckpointRule;
  /** Per method, the step of each seed's checkpoint under `rule` (sensitivity rows). */
  checkpoint_steps?: Record<string, number[]>;
  /** The claim's verdict differs between the checkpoint rules (the sensitivity analysis). */
  rule_sensitive?: boolean;
  /**
   * A sampled twin's effect has the sign of its primary's (the plan: sampled HR@1 "must agree
   * in sign" with expected HR@1); absent when either is untested.
   */
  agrees_with_primary?: boolean;
}

/**
 * Mark each tested sampled twin with whether its effect agrees in sign with the primary
 * finding of the same plan id, scope and rule (a zero effect agrees with either sign); a
 * disagreement also goes into its `note`.
 */
export function markTwins(findings: Finding[]): Finding[] {
  for (const f of findings) {
    if (f.role !== "sampled twin" || !hasVerdict(f)) continue;
    const p = findings.find((x) =>
      x.role === "primary" && x.plan_id === f.plan_id && x.scope === f.scope &&
      x.rule === f.rule && hasVerdict(x)
    );
    if (!p) continue;
    f.agrees_with_primary = p.effect! * f.effect! >= 0;
    if (!f.agrees_with_primary) {
      f.note = (f.note ? f.note + "; " : "") +
        `sign differs from the primary (${p.metric_label}: ${f3(p.effect!)})`;
    }
  }
  return findings;
}

/**
 * The amended decision rule (docs/analysis-plan.md, "Amendment to the decision rule"): an
 * inconclusive claim whose 95 % CI has its upper bound below the claim's target effect is
 * decided — "contradicted", a gain of the target's size ruled out (no reversal). Returns the
 * target it rules out, or undefined (no target, or the three-way verdict stands).
 */
export function ruledOut(
  verdict: FindingVerdict,
  ci: { hi: number },
  target: number | null | undefined,
  /**
   * The bootstrap SE: a degenerate interval (SE 0 — every resample gives the same mean, e.g.
   * two arms that agree on every test row) says nothing about a gain the rows could not show.
   */
  se: number | null | undefined,
): number | undefined {
  return verdict === "inconclusive" && target != null && ci.hi < target && se != null && se > 0
    ? target
    : undefined;
}

/** A verdict as findings.md prints it (bold; a ruled-out gain with its qualifier). */
export function verdictText(f: Pick<Finding, "verdict" | "ruled_out">): string {
  return f.ruled_out === undefined
    ? `**${f.verdict}**`
    : `**${f.verdict}** (gain ≥ ${f.ruled_out.toFixed(3)} ruled out; original rule: inconclusive)`;
}

/**
 * The power of a claim's design against the plan's target MDE: under-powered when the claim
 * is inconclusive and its MDE is above the target (the plan's rule), "MDE x ≤ target y" when
 * the design could detect the target, "MDE x > target y (decided anyway)" for a decided claim
 * of a design weaker than planned; null without a target or an MDE.
 */
export function powerLabel(
  verdict: FindingVerdict,
  mde: number | null | undefined,
  target: number | null | undefined,
): string | null {
  if (
    target == null || mde == null || !Number.isFinite(mde) || !hasVerdict({ verdict })
  ) {
    return null;
  }
  const m = mde.toFixed(3), t = target.toFixed(3);
  if (mde <= target) return `MDE ${m} ≤ target ${t}`;
  return verdict === "inconclusive"
    ? `under-powered (MDE ${m} > target ${t})`
    : `MDE ${m} > target ${t} (decided anyway)`;
}

/**
 * The DMPO and DPO4Rec claims of the analysis plan, which lists them by claim id in each
 * paper's table (docs/analysis-plan.md, "DMPO" and "DPO4Rec"): the section (as `plan_id`),
 * the role and the target MDE ("see below" in the plan: none). The expected-AUC twins of the
 * DMPO claims are secondary (the plan's metric is paired AUC).
 */
export const PLAN_CLAIMS: Record<string, { planId: string; role: ClaimRole; targetMde?: number }> =
  {
    ...Object.fromEntries(
      ([
        ["sft_dmpo_gt_sft", 0.02],
        ["sft_dmpo_gt_dmpo_only", 0.03],
        ["k3_gt_k1", 0.02],
        ["k3_gt_k1_equal_steps", 0.02],
        ["sft_dmpo_gt_sft_cont", 0.02],
        ["released_gt_sft", 0.02],
      ] as const).flatMap(([c, t]) => [
        [`dmpo.${c}.auc`, { planId: "DMPO", role: "primary" as const, targetMde: t }],
        [`dmpo.${c}.exp_auc`, { planId: "DMPO", role: "secondary" as const }],
      ]),
    ),
    "dpo4rec.lm_features_improve_sasrec.hr1": {
      planId: "DPO4Rec",
      role: "primary",
      targetMde: 0.03,
    },
    "dpo4rec.dpo_lm_features_improve_sasrec.hr1": {
      planId: "DPO4Rec",
      role: "primary",
      targetMde: 0.03,
    },
    "dpo4rec.rm_gt_random.genre_precision": { planId: "DPO4Rec", role: "primary", targetMde: 0.03 },
    "dpo4rec.rm_gt_random.hr1": { planId: "DPO4Rec", role: "secondary" },
    "dpo4rec.larger_n_helps.genre_precision": {
      planId: "DPO4Rec",
      role: "primary",
      targetMde: 0.03,
    },
    "dpo4rec.larger_n_helps.hr1": { planId: "DPO4Rec", role: "secondary" },
    "dpo4rec.dpo_gt_sft.hr1": { planId: "DPO4Rec", role: "primary" },
    // Added to the plan with the amendment (docs/analysis-plan.md): the plan decides the claims
    // among LM arms on genre precision, and DPO > SFT had no genre-precision twin.
    "dpo4rec.dpo_gt_sft.genre_precision": {
      planId: "DPO4Rec",
      role: "primary",
      targetMde: 0.03,
    },
  };

function planFields(
  c: Pick<ClaimSpec, "id" | "planId" | "role" | "targetMde">,
): Pick<Finding, "plan_id" | "role" | "target_mde"> {
  const p = PLAN_CLAIMS[c.id];
  return {
    plan_id: c.planId ?? p?.planId ?? null,
    role: c.role ?? p?.role ?? null,
    target_mde: c.targetMde ?? p?.targetMde ?? null,
  };
}

function paperScope(p: ClaimPaper): Pick<Finding, "paper" | "scope"> {
  return p.endsWith("-abl")
    ? { paper: p.slice(0, -4) as Finding["paper"], scope: "ablation" }
    : { paper: p as Finding["paper"], scope: "headline" };
}

/** A claim's numbers as a finding. */
export function toFinding(
  c: ClaimResult,
  seeds: number[],
  scope?: Finding["scope"],
): Finding {
  const ps = paperScope(c.paper);
  const plan = planFields(c);
  const out = ruledOut(c.verdict, c.diff, plan.target_mde, c.se);
  const verdict: Verdict = out === undefined ? c.verdict : "contradicted";
  return {
    claim_id: c.id,
    claim: c.text,
    paper: ps.paper,
    scope: scope ?? ps.scope,
    metric: c.metric,
    metric_label: c.metricLabel,
    ours_method: c.a,
    baseline_method: c.b,
    ours: c.a_mean ?? mean(c.a_per_seed),
    baseline: c.b_mean ?? mean(c.b_per_seed),
    ours_per_seed: c.a_per_seed,
    baseline_per_seed: c.b_per_seed,
    effect: c.diff.mean,
    ci95: [c.diff.lo, c.diff.hi],
    se: c.se ?? null,
    mde: c.mde ?? null,
    resampling: c.resampling ?? null,
    seeds,
    rows: c.rows,
    verdict,
    ...(out === undefined ? {} : { ruled_out: out, verdict_original_rule: c.verdict }),
    ...(c.note ? { note: c.note } : {}),
    ...plan,
    power: powerLabel(verdict, c.mde, plan.target_mde),
  };
}

/** The number fields of a finding that has none (not tested, or descriptive). */
function noNumbers() {
  return {
    ours: null,
    baseline: null,
    ours_per_seed: [],
    baseline_per_seed: [],
    effect: null,
    ci95: null,
    se: null,
    mde: null,
    resampling: null,
  };
}

/** A claim the run could not evaluate. */
export function notTested(spec: ClaimSpec, seeds: number[], reason: string): Finding {
  return {
    claim_id: spec.id,
    claim: spec.text,
    ...paperScope(spec.paper),
    metric: spec.metric,
    metric_label: spec.metricLabel,
    ours_method: spec.a,
    baseline_method: spec.b,
    ...noNumbers(),
    seeds,
    rows: 0,
    verdict: "not tested",
    reason,
    ...planFields(spec),
    power: null,
  };
}

/**
 * Findings of `specs` on a result: each spec compared on its rows, or "not tested" with the
 * reason its rows are missing.
 */
export function specFindings(
  specs: readonly ClaimSpec[],
  result: ResultWithRows,
  seeds: number[],
): Finding[] {
  return specs.map((c) => {
    const r = evaluateSpec(c, result);
    return typeof r === "string" ? notTested(c, seeds, r) : toFinding(r, seeds);
  });
}

/** Findings of the {@link CLAIMS} of `paper` on a result. */
export function claimFindings(
  paper: ClaimPaper,
  result: ResultWithRows,
  seeds: number[],
): Finding[] {
  return specFindings(CLAIMS.filter((c) => c.paper === paper), result, seeds);
}

/** What {@link sdpoFindings} reads of an S-DPO result. */
export interface SdpoFindingsInput {
  seeds: number[];
  per_seed: SeedRows[];
  /** Test user of each test row ({@link ResultWithRows.row_users}). */
  row_users?: readonly (number | string)[];
  /** Methods that are the seed's stage-0 model ({@link ResultWithRows.stage0_methods}). */
  stage0_methods?: readonly string[];
  ablations?: { seed: number; methods: Record<string, unknown> };
  /** Per-row hits of the curve prompts at every evaluation ({@link SdpoCurveRows}). */
  curve_hits?: SdpoCurveRows["curve_hits"];
  /** Validation HR@1 versus step ({@link SdpoCurveRows}). */
  hr1_curves?: SdpoCurveRows["hr1_curves"];
  /** The released protocol's record (present: the main arms ran it). */
  protocol?: unknown;
}

/** The design fields of a result (clusters, shared stage-0 methods). */
function designFields(
  r: Pick<ResultWithRows, "row_users" | "stage0_methods">,
): Pick<ResultWithRows, "row_users" | "stage0_methods"> {
  return {
    ...(r.row_users ? { row_users: r.row_users } : {}),
    ...(r.stage0_methods ? { stage0_methods: r.stage0_methods } : {}),
  };
}

// ---------------------------------------------------------------------------------------
// The pre-registered checkpoint-rule sensitivity analysis (S-DPO, docs/analysis-plan.md)

/**
 * The checkpoint rules of the S-DPO sensitivity analysis: the released one (the arm's lowest
 * validation loss, the headline's), the evaluation with the arm's highest validation HR@1,
 * and the last step.
 */
export const CHECKPOINT_RULES = [
  "lowest validation loss (released)",
  "best validation HR@1",
  "last step",
] as const;

/** One of {@link CHECKPOINT_RULES}. */
export type CheckpointRule = typeof CHECKPOINT_RULES[number];

/** The plan ids whose claims the sensitivity analysis re-evaluates. */
export const SENSITIVITY_PLAN_IDS: readonly string[] = ["S1", "S2", "S3", "S4", "S5"];

/** What the sensitivity analysis reads of an S-DPO result (src/experiments/sdpo.ts). */
export interface SdpoCurveRows {
  /**
   * Per-row sampled and expected hits of the curve prompts (the first test prompts) at every
   * evaluation of every trained main arm and seed.
   */
  curve_hits?: readonly {
    method: string;
    seed: number;
    step: number;
    rank_hits: number[];
    rank_expected: number[];
  }[];
  /** Validation HR@1 (and loss) versus step of the main arms (`split: "valid"`). */
  hr1_curves?: readonly {
    method: string;
    seed: number;
    step: number;
    split: string;
    hr1: number;
  }[];
}

/**
 * The step each rule keeps of one arm and seed, or the reason it cannot say: the released
 * rule's step is the arm's `best_step` (its lowest validation loss); the best validation
 * HR@1 is the evaluation (step > 0) with the highest validation HR@1, the earliest on ties (as
 * `load_best_model_at_end` keeps the first best); the last step is the last evaluation.
 */
export function checkpointStep(
  rule: CheckpointRule,
  r: SdpoCurveRows & { per_seed: SeedRows[] },
  method: string,
  seed: number,
): number | string {
  const steps = (r.curve_hits ?? []).filter((h) => h.method === method && h.seed === seed)
    .map((h) => h.step);
  if (steps.length === 0) return `no curve rows of "${method}" (seed ${seed})`;
  if (rule === "last step") return Math.max(...steps);
  if (rule === "lowest validation loss (released)") {
    const m = r.per_seed.find((s) => s.seed === seed)?.methods[method] as
      | { best_step?: number | null }
      | undefined;
    const b = m?.best_step;
    if (typeof b !== "number") return `"${method}" (seed ${seed}) records no best_step`;
    return steps.includes(b) ? b : `no curve rows of "${method}" at its kept step ${b}`;
  }
  let best: { step: number; hr1: number } | undefined;
  const vals = (r.hr1_curves ?? []).filter((p) =>
    p.method === method && p.seed === seed && p.split === "valid" && p.step > 0 &&
    steps.includes(p.step)
  ).sort((x, y) => x.step - y.step);
  for (const p of vals) if (!best || p.hr1 > best.hr1) best = p;
  return best ? best.step : `no validation HR@1 of "${method}" (seed ${seed})`;
}

/**
 * The result the claims see under a checkpoint rule: per seed, every trained main arm's
 * rows at the rule's step (from `curve_hits`), and each stage-0 method's (SFT: step 0) first
 * rows — the curve prompts are the first test prompts. Returns the reason when the run has
 * no curve rows.
 */
export function rowsAtRule(
  rule: CheckpointRule,
  r: SdpoCurveRows & SdpoFindingsInput,
):
  | { result: ResultWithRows; steps: Record<string, number[]>; missing: Map<string, string> }
  | string {
  const hits = r.curve_hits ?? [];
  if (hits.length === 0) {
    return "the run has no per-row curve hits (`result.curve_hits`: S-DPO's released " +
      "protocol on the synthetic world records them)";
  }
  const n = hits[0].rank_hits.length;
  const stage0 = new Set(r.stage0_methods ?? []);
  const trained = [...new Set(hits.map((h) => h.method))];
  const steps: Record<string, number[]> = {};
  const missing = new Map<string, string>();
  const perSeed: SeedRows[] = r.per_seed.map((s) => {
    const methods: Record<string, unknown> = {};
    for (const m of stage0) {
      const row = s.methods[m] as Record<string, number[] | undefined> | undefined;
      if (!row) continue;
      methods[m] = {
        rank_hits: row.rank_hits?.slice(0, n),
        rank_expected: row.rank_expected?.slice(0, n),
      };
      (steps[m] ??= []).push(0);
    }
    for (const m of trained) {
      const step = checkpointStep(rule, r, m, s.seed);
      if (typeof step === "string") {
        missing.set(m, step);
        continue;
      }
      const h = hits.find((x) => x.method === m && x.seed === s.seed && x.step === step)!;
      methods[m] = { rank_hits: h.rank_hits, rank_expected: h.rank_expected };
      (steps[m] ??= []).push(step);
    }
    return { seed: s.seed, methods, stage0_seed: s.stage0_seed };
  });
  return {
    result: { paper: "sdpo", per_seed: perSeed, ...designFields(r) },
    steps,
    missing,
  };
}

/**
 * The pre-registered checkpoint-rule sensitivity analysis: the plan's claims S1-S5 (both
 * metrics) evaluated with the same bootstrap and decision rule at each of
 * {@link CHECKPOINT_RULES}, on the curve prompts that every evaluation scores. Findings of
 * scope "sensitivity" with `rule` and `checkpoint_steps`; a claim whose verdict differs
 * between the rules has `rule_sensitive: true` on every rule's row. Without curve rows:
 * "not tested" with the reason (one row per claim and rule).
 */
export function checkpointRuleFindings(r: SdpoCurveRows & SdpoFindingsInput): Finding[] {
  const specs = CLAIMS.filter((c) =>
    c.paper === "sdpo" && SENSITIVITY_PLAN_IDS.includes(c.planId ?? "") &&
    (c.metric === "rank_hits" || c.metric === "rank_expected")
  );
  const out: Finding[] = [];
  for (const rule of CHECKPOINT_RULES) {
    const at = rowsAtRule(rule, r);
    for (const c of specs) {
      let f: Finding;
      if (typeof at === "string") f = notTested(c, r.seeds, at);
      else {
        const why = at.missing.get(c.a) ?? at.missing.get(c.b);
        const res = why ?? evaluateSpec(c, at.result);
        f = typeof res === "string" ? notTested(c, r.seeds, res) : {
          ...toFinding(res, r.seeds),
          checkpoint_steps: { [c.a]: at.steps[c.a] ?? [], [c.b]: at.steps[c.b] ?? [] },
        };
      }
      out.push({ ...f, scope: "sensitivity", rule });
    }
  }
  for (const c of specs) {
    const vs = out.filter((f) => f.claim_id === c.id && f.verdict !== "not tested");
    const sensitive = new Set(vs.map((f) => f.verdict)).size > 1;
    for (const f of vs) f.rule_sensitive = sensitive;
  }
  return out;
}

/** Id of the plan's S7 (descriptive: S-DPO reaches DPO's accuracy in fewer steps). */
export const S7_CLAIM_ID = "sdpo.sdpo_faster_than_dpo.hr1_curve";

/**
 * S7 of the plan, descriptive (no verdict: 3 seeds, per-seed curve points): from the
 * HR@1-versus-step curves, per split (validation; test = the curve prompts), DPO's best
 * seed-mean HR@1 and its step (the earliest on ties), and the first step at which S-DPO's
 * seed-mean HR@1 reaches it. "not tested" without curves.
 */
export function s7Finding(
  r: Pick<SdpoFindingsInput, "seeds" | "hr1_curves">,
): Finding {
  const base: Finding = {
    claim_id: S7_CLAIM_ID,
    claim: "S7 (descriptive): S-DPO reaches DPO's accuracy in fewer steps (validation and " +
      "test HR@1 versus step; hr1_curves.svg)",
    paper: "sdpo",
    scope: "headline",
    metric: "hr1_curve",
    metric_label: "ranking HR@1 versus step (seed mean)",
    ours_method: "S-DPO",
    baseline_method: "DPO",
    ...noNumbers(),
    seeds: r.seeds,
    rows: 0,
    verdict: "descriptive",
    plan_id: "S7",
    role: "descriptive",
    target_mde: null,
    power: null,
  };
  const pts = (r.hr1_curves ?? []).filter((p) => p.step > 0);
  const parts: string[] = [];
  for (const split of ["valid", "test"]) {
    const curve = (m: string) => {
      const by = new Map<number, number[]>();
      for (const p of pts.filter((p) => p.method === m && p.split === split)) {
        by.set(p.step, [...(by.get(p.step) ?? []), p.hr1]);
      }
      return [...by].sort((a, b) => a[0] - b[0]).map(([step, xs]) => ({ step, hr1: mean(xs) }));
    };
    const dpo = curve("DPO"), sdpo = curve("S-DPO");
    if (!dpo.length || !sdpo.length) continue;
    const best = dpo.reduce((a, b) => (b.hr1 > a.hr1 ? b : a));
    const reach = sdpo.find((p) => p.hr1 >= best.hr1);
    parts.push(
      `${split === "valid" ? "validation" : "test (curve prompts)"}: DPO's best seed-mean ` +
        `HR@1 ${best.hr1.toFixed(3)} at step ${best.step}; S-DPO ` +
        (reach
          ? `reaches it at step ${reach.step} (${reach.hr1.toFixed(3)})`
          : `never reaches it (best ${Math.max(...sdpo.map((p) => p.hr1)).toFixed(3)})`),
    );
  }
  if (!parts.length) {
    const { note: _n, ...rest } = base;
    return {
      ...rest,
      verdict: "not tested",
      reason: "the run has no HR@1-versus-step curves of DPO and S-DPO (`result.hr1_curves`: " +
        "the released protocol records them)",
    };
  }
  return { ...base, note: parts.join("; ") + "; no verdict (the plan's rule for S7)" };
}

/**
 * The S-DPO findings: headline claims on every seed (with the checkpoint rule their rows
 * are at: the released one under the released protocol, else the last step), the
 * checkpoint-rule sensitivity rows ({@link checkpointRuleFindings}) when the run recorded
 * curve rows, and the ablation claims on the ablation seed, or "not tested" with
 * `ablationsOff` as the reason when the ablations did not run.
 */
export function sdpoFindings(
  r: SdpoFindingsInput,
  ablationsOff = "the S-DPO ablations did not run (off by default at scale small; " +
    "`--ablations` runs them)",
): Finding[] {
  const rule: CheckpointRule = r.protocol ? "lowest validation loss (released)" : "last step";
  const head = claimFindings(
    "sdpo",
    { paper: "sdpo", per_seed: r.per_seed, ...designFields(r) },
    r.seeds,
  ).map((f) => ({ ...f, rule }));
  const sens = r.curve_hits?.length ? checkpointRuleFindings(r) : [];
  for (const f of head) {
    if (sens.some((x) => x.claim_id === f.claim_id && x.rule_sensitive)) f.rule_sensitive = true;
  }
  const abl = r.ablations;
  const specs = CLAIMS.filter((c) => c.paper === "sdpo-abl");
  markTwins(head);
  markTwins(sens);
  return [
    ...head,
    s7Finding(r),
    ...sens,
    ...(abl
      ? claimFindings("sdpo-abl", {
        paper: "sdpo-abl",
        per_seed: [{ seed: abl.seed, methods: abl.methods }],
        ...designFields(r),
      }, [abl.seed])
      : specs.map((c) => notTested(c, [], ablationsOff))),
  ];
}

/** The DMPO headline findings (the ablation findings: src/experiments/dmpo_ablations.ts). */
export function dmpoFindings(
  r: {
    seeds: number[];
    per_seed: SeedRows[];
    row_users?: readonly (number | string)[];
    stage0_methods?: readonly string[];
  },
): Finding[] {
  return claimFindings(
    "dmpo",
    { paper: "dmpo", per_seed: r.per_seed, ...designFields(r) },
    r.seeds,
  );
}

/**
 * metrics.json's `claims` / `ablation_claims`: the tested findings of one scope in the shape
 * those fields have always had (`id`, `text`, `a`, `b`, `diff`, ...), plus `mde`.
 */
export function legacyClaims(findings: readonly Finding[], scope: Finding["scope"]) {
  return findings.filter((f) => f.scope === scope && hasVerdict(f)).map((f) => ({
    id: f.claim_id,
    text: f.claim,
    metric: f.metric,
    a: f.ours_method,
    b: f.baseline_method,
    a_per_seed: f.ours_per_seed,
    b_per_seed: f.baseline_per_seed,
    rows: f.rows,
    diff: { mean: f.effect, lo: f.ci95![0], hi: f.ci95![1] },
    verdict: f.verdict,
    ...(f.ruled_out === undefined ? {} : { ruled_out: f.ruled_out }),
    mde: f.mde,
    resampling: f.resampling?.description ?? null,
    plan_id: f.plan_id ?? null,
    power: f.power ?? null,
  }));
}

const f3 = (x: number) => (x >= 0 ? "+" : "") + x.toFixed(3);

/** The sentences findings.md uses to explain the resampling, the verdicts and the MDE. */
export const STATISTICS_TEXT = [
  "Each claim compares per-row values (test prompts or pairs) of two methods. Rows are not " +
  "independent, so the 95 % CI of mean(A − B) comes from a bootstrap (2,000 resamples, " +
  "percentile) that resamples what was sampled: **test clusters** — the test user whose " +
  "prompts the rows are (or the prompt, when the run recorded no users), all of a cluster's " +
  "rows together and the same clusters for every seed, since every seed is scored on the " +
  "same test prompts — and, where seeds train separate models for the arms compared, " +
  "**the seeds first** (two levels: seeds, then clusters; Owen's pigeonhole bootstrap, " +
  "conservative: it counts the seed × prompt noise about three times). Models that share a " +
  "stage are one model: a seed whose two models are an earlier seed's adds nothing (at scale small every seed's SFT row is the one " +
  "stage-0 model: SFT against a preference arm resamples the arm's seeds with SFT held " +
  "fixed, and two shared models are compared on their rows once). The `resampled` column " +
  "and `resampling` in `findings.json` say which was used per claim.",
  "Verdict rule (the plan's, as amended on 2026-12-06; docs/analysis-plan.md): CI above 0 → " +
  "**reproduced**, CI entirely below 0 (a significant reversal) → **contradicted**; a CI " +
  "straddling 0 whose upper bound is below the claim's target (the `power` column; an " +
  "interval of some width, bootstrap SE above 0) → " +
  '**contradicted** with the qualifier "gain ≥ target ruled out" (no reversal: the interval ' +
  "excludes a gain of the size the plan set out to detect; the amendment was written after " +
  "the full run, so on runs before it these verdicts are post hoc); otherwise → " +
  "**inconclusive**.",
  "MDE is the minimum detectable effect of this design: the true mean difference that a " +
  "two-sided 5 % test would detect with 80 % power, (z₀.₉₇₅ + z₀.₈) · SE ≈ 2.80 · SE, where " +
  "SE is the bootstrap standard error of mean(A − B) from the same resampling; an " +
  "inconclusive claim whose MDE is larger than the effect the paper reports was too small " +
  "a test to decide it, and a true effect well below the MDE would mostly go unseen.",
];

/** The MDE sentence of {@link STATISTICS_TEXT}. */
export const MDE_SENTENCE = STATISTICS_TEXT[2];

const TABLE_HEAD = [
  "| claim | plan | A (per seed) | B (per seed) | mean A − B [95 % CI] | MDE | power | rows | " +
  "resampled | verdict | claim_id |",
  "|---|---|---|---|---|---|---|---|---|---|---|",
];

/** The `resampled` cell: "5 seeds × 312 users", "312 users", "400 prompts". */
export function resampledCell(r: Resampling | null): string {
  if (!r) return "–";
  const c = `${r.clusters} ${r.cluster_by}s`;
  return r.levels === "seeds, then test clusters" ? `${r.seed_units} seeds × ${c}` : c;
}

function findingRow(f: Finding): string {
  const seeds = (xs: number[]) => xs.map((x) => x.toFixed(3)).join(", ");
  const ci = f.ci95 ?? [NaN, NaN];
  const note = f.note ? ` (${f.note})` : "";
  const sens = f.rule_sensitive ? " (differs by checkpoint rule: see below)" : "";
  return `| ${f.claim} | ${f.plan_id ?? "–"} | ${f.ours_method}: ${
    seeds(f.ours_per_seed)
  } | ${f.baseline_method}: ${seeds(f.baseline_per_seed)} | ${f3(f.effect ?? NaN)} [${f3(ci[0])}, ${
    f3(ci[1])
  }]${note} | ${f.mde == null ? "–" : f.mde.toFixed(3)} | ${f.power ?? "–"} | ${f.rows} | ${
    resampledCell(f.resampling ?? null)
  } | ${verdictText(f)}${sens} | \`${f.claim_id}\` |`;
}

/** One cell of the sensitivity table: effect, CI, verdict and the kept steps. */
function ruleCell(f: Finding | undefined): string {
  if (!f) return "–";
  if (f.verdict === "not tested") return `not tested: ${f.reason}`;
  const steps = Object.entries(f.checkpoint_steps ?? {}).map(([m, xs]) => `${m} ${xs.join(", ")}`)
    .join("; ");
  const power = f.power?.startsWith("under-powered") ? `, ${f.power}` : "";
  return `${f3(f.effect!)} [${f3(f.ci95![0])}, ${f3(f.ci95![1])}] ${verdictText(f)}${power}` +
    (steps ? ` (steps: ${steps})` : "");
}

/** The sensitivity section of findings.md (empty without sensitivity rows). */
function sensitivityLines(findings: readonly Finding[]): string[] {
  const rows = findings.filter((f) => f.scope === "sensitivity");
  if (!rows.length) return [];
  const ids = [...new Set(rows.map((f) => f.claim_id))];
  const intro = [
    "",
    "## Checkpoint-rule sensitivity (pre-registered)",
    "",
    "The headline uses the released checkpoint rule (each arm's lowest validation loss). The " +
    "analysis plan fixed two other rules before the run: the evaluation with the arm's highest " +
    "validation HR@1 (earliest on ties), and the last step. Each is evaluated here with the " +
    "same bootstrap and decision rule on the test prompts every evaluation scored (the first " +
    "test prompts; SFT is the stage-0 model, step 0), the released rule too, so the three are " +
    "compared on the same rows. A claim whose verdict differs between the rules is flagged.",
    "",
  ];
  const reasons = new Set(rows.map((f) => f.reason));
  if (rows.every((f) => f.verdict === "not tested") && reasons.size === 1) {
    return [...intro, `Not computed: ${[...reasons][0]}.`];
  }
  return [
    ...intro,
    `| claim | plan | ${CHECKPOINT_RULES.join(" | ")} | verdict differs | claim_id |`,
    `|---|---|${CHECKPOINT_RULES.map(() => "---|").join("")}---|---|`,
    ...ids.map((id) => {
      const fs = rows.filter((f) => f.claim_id === id);
      const differs = fs.some((f) => f.rule_sensitive) ? "**yes**" : "no";
      return `| ${fs[0].claim} | ${fs[0].plan_id ?? "–"} | ${
        CHECKPOINT_RULES.map((r) => ruleCell(fs.find((f) => f.rule === r))).join(" | ")
      } | ${differs} | \`${id}\` |`;
    }),
  ];
}

/** What findings.md says about the analysis plan beside the claims. */
export interface PlanContext {
  /**
   * How to reach docs/analysis-plan.md from the findings folder: a relative link, or the
   * repository path as text when the folder is outside the repository ({@link planLink}).
   */
  plan?: { href?: string; text: string };
  /** Deviations of this run from the plan ({@link planDeviations}). */
  deviations?: readonly string[];
}

/**
 * findings.md from the findings list (the only renderer): the tested headline claims, the
 * checkpoint-rule sensitivity table, the tested ablation claims (with `ablationNote`), the
 * claims not tested in this run with the reason, the deviations from the analysis plan, then
 * `notes`.
 */
export function renderFindingsMarkdown(
  title: string,
  findings: readonly Finding[],
  notes: readonly string[],
  ablationNote = "",
  plan: PlanContext = {},
): string {
  const tested = findings.filter(hasVerdict);
  const described = findings.filter((f) => f.verdict === "descriptive");
  const head = tested.filter((f) => f.scope === "headline");
  const abl = tested.filter((f) => f.scope === "ablation");
  const untested = findings.filter((f) => f.verdict === "not tested" && f.scope !== "sensitivity");
  const lines = [
    `# Findings: ${title}`,
    "",
    "Rendered from `findings.json` (written beside this file from the per-row numbers in " +
    "`metrics.json`) by `src/report/findings.ts`; no verdict is written by hand.",
    "",
  ];
  if (plan.plan) {
    const p = plan.plan.href ? `[${plan.plan.text}](${plan.plan.href})` : `\`${plan.plan.text}\``;
    lines.push(
      `Analysis plan: ${p} — each claim (the \`plan\` column), its metric, arms, seeds, target ` +
        "MDE and decision rule, committed before the full run. Deviations of this run from it " +
        "are listed below.",
      "",
    );
  }
  lines.push(...STATISTICS_TEXT.flatMap((t) => [t, ""]));
  if (head.length) lines.push(...TABLE_HEAD, ...head.map(findingRow));
  if (described.length) {
    lines.push(
      "",
      "## Descriptive claims (no verdict, as the plan says)",
      "",
      "| claim | plan | what the run shows | claim_id |",
      "|---|---|---|---|",
      ...described.map((f) =>
        `| ${f.claim} | ${f.plan_id ?? "–"} | ${f.note ?? "–"} | \`${f.claim_id}\` |`
      ),
    );
  }
  lines.push(...sensitivityLines(findings));
  if (abl.length) {
    lines.push(
      "",
      "## Ablation claims",
      "",
      ablationNote || "Same rule, on the ablation rows (one seed).",
      "",
      ...TABLE_HEAD,
      ...abl.map(findingRow),
    );
  }
  if (untested.length) {
    lines.push(
      "",
      "## Not tested in this run",
      "",
      "These claims have no rows in this run, so no verdict; `findings.json` lists them with " +
        '`verdict: "not tested"` and the reason.',
      "",
      "| claim | plan | claim_id | why not |",
      "|---|---|---|---|",
      ...untested.map((f) =>
        `| ${f.claim} | ${f.plan_id ?? "–"} | \`${f.claim_id}\` | ${f.reason ?? "–"} |`
      ),
    );
  }
  if (plan.deviations) {
    lines.push(
      "",
      "## Deviations from the analysis plan",
      "",
      ...(plan.deviations.length ? plan.deviations.map((d) => `- ${d}`) : ["None recorded."]),
    );
  }
  if (notes.length) lines.push("", "## Notes", "", ...notes.map((n) => `- ${n}`));
  lines.push("");
  return lines.join("\n");
}

function isFinding(x: ClaimResult | Finding): x is Finding {
  return (x as Finding).claim_id !== undefined;
}

/**
 * findings.md from claims (as notebooks call it): the claims become findings
 * ({@link toFinding}; ablation claims in the second table) and are rendered by
 * {@link renderFindingsMarkdown}.
 */
export function findingsMarkdown(
  title: string,
  claims: readonly (ClaimResult | Finding)[],
  notes: readonly string[],
  ablationClaims: readonly (ClaimResult | Finding)[] = [],
  ablationNote = "",
): string {
  const conv = (c: ClaimResult | Finding, scope: Finding["scope"]): Finding =>
    isFinding(c) ? c : toFinding(c, [], scope);
  return renderFindingsMarkdown(
    title,
    [...claims.map((c) => conv(c, "headline")), ...ablationClaims.map((c) => conv(c, "ablation"))],
    notes,
    ablationNote,
  );
}

function jsonSafe(x: unknown): unknown {
  return JSON.parse(
    JSON.stringify(x, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v)),
  );
}

/** The analysis plan, relative to the repository root. */
export const PLAN_PATH = "docs/analysis-plan.md";

/** The repository root this module sits in (a local checkout), or undefined. */
function repoRoot(): string | undefined {
  const u = new URL("../../", import.meta.url);
  return u.protocol === "file:" ? resolve(decodeURIComponent(u.pathname)) : undefined;
}

/**
 * How findings.md in `dir` reaches the analysis plan: a relative link when `dir` is inside
 * the repository `root` (default: this checkout), else the repository path as text.
 */
export function planLink(dir: string, root = repoRoot()): { href?: string; text: string } {
  if (root) {
    const rel = relative(resolve(root), resolve(dir));
    if (!rel.startsWith("..") && !isAbsolute(rel)) {
      return { href: relative(resolve(dir), resolve(root, PLAN_PATH)), text: PLAN_PATH };
    }
  }
  return { text: PLAN_PATH };
}

/** The plan's S-DPO design (docs/analysis-plan.md, "S-DPO"). */
export const SDPO_PLAN = {
  scale: "full",
  seeds: 3,
  testPrompts: 1600,
  arms: ["SFT", "SFT-cont", "DPO", "S-DPO", "S-DPO K=8"],
} as const;

const PAPER_SECTION: Record<string, string> = { sdpo: "S-DPO", dmpo: "DMPO", dpo4rec: "DPO4Rec" };

/** Seeds and test rows of each paper's planned full run (docs/analysis-plan.md). */
export const PLAN_DESIGN: Record<string, { seeds: number; test: number; unit: string }> = {
  sdpo: { seeds: SDPO_PLAN.seeds, test: SDPO_PLAN.testPrompts, unit: "test prompts" },
  dmpo: { seeds: 5, test: 1000, unit: "test pairs" },
  dpo4rec: { seeds: 5, test: 800, unit: "test rows" },
};

/**
 * The deviations of a run (its metrics.json, parsed) from the analysis plan, as findings.md
 * lists them: a scale other than `full`; for S-DPO, seeds and test prompts other than the
 * plan's, a run without the released protocol or on a released data set, missing arms, no
 * curve rows for the sensitivity analysis; every departure the run records in
 * `result.protocol.departures`; arms whose rows are missing (from the findings' reasons); a
 * paper whose plan section is not written (`planText`: the plan, when readable).
 */
export function planDeviations(
  // deno-lint-ignore no-explicit-any
  m: any,
  findings: readonly Finding[] = [],
  planText?: string,
): string[] {
  const out: string[] = [];
  const r = m?.result ?? {};
  const paper: string = m?.paper ?? r.paper ?? "";
  const section = PAPER_SECTION[paper];
  if (section && planText !== undefined) {
    const body = planText.split(new RegExp(`^## ${section}\\s*$`, "m"))[1]?.split(/^## /m)[0];
    if (!body || /to be filled in/i.test(body)) {
      out.push(
        `The plan has no ${section} section yet: these claims, metrics and decision rules were ` +
          "not pre-registered for this paper.",
      );
    }
  }
  const scale = m?.scale ?? r.scale?.name;
  const seeds: number = (m?.seeds ?? r.seeds ?? []).length;
  if (scale && scale !== "full") {
    out.push(
      `Scale \`${scale}\`, not the plan's \`full\`: the plan's design and target MDEs are the ` +
        "full run's; this run cannot decide what that design is sized to decide.",
    );
  }
  const design = PLAN_DESIGN[paper];
  if (design) {
    if (seeds && seeds !== design.seeds) {
      out.push(`${seeds} seed(s), not the plan's ${design.seeds}.`);
    }
    const list: unknown[] = m?.seeds ?? r.seeds ?? [];
    if (list.length && list.some((s, i) => s !== i)) {
      out.push(
        `Seeds ${list.join(", ")}, not the plan's 0–${design.seeds - 1}: preference stages on ` +
          "seeds that the plan's run did not use.",
      );
    }
    const n = r.num_test ?? r.scale?.testRows;
    if (typeof n === "number" && n !== design.test) {
      out.push(`${n} ${design.unit}, not the plan's ${design.test}.`);
    }
  }
  if (paper === "sdpo") {
    if (m?.dataset && m.dataset !== "synthetic") {
      out.push(
        `Data set \`${m.dataset}\`: the plan's S-DPO design is the synthetic world's (the ` +
          "expected HR@1 needs its law; the released protocol needs its validation split).",
      );
    } else if (!r.protocol) {
      out.push(
        "The run predates the released protocol (no `result.protocol`): short preference " +
          "stages, the last step of each arm, no validation split.",
      );
    }
    const methods = new Set(
      (r.per_seed ?? []).flatMap((s: { methods?: object }) => Object.keys(s.methods ?? {})),
    );
    const missing = SDPO_PLAN.arms.filter((a) => !methods.has(a));
    if (missing.length) out.push(`Arm(s) of the plan not in the run: ${missing.join(", ")}.`);
    if (r.protocol && !(r.curve_hits?.length)) {
      out.push(
        "No per-row curve hits (`result.curve_hits`): the checkpoint-rule sensitivity " +
          "analysis could not be computed.",
      );
    }
  }
  const deps: unknown = r.protocol?.departures;
  if (Array.isArray(deps) && deps.length) {
    out.push(`Departures from the released scripts that the run records: ${deps.join(" ")}`);
  }
  const gone = new Set<string>();
  for (const f of findings) {
    const arm = f.reason?.match(/^the run has no "([^"]+)" rows/)?.[1];
    if (arm && !(paper === "sdpo" && SDPO_PLAN.arms.includes(arm as never))) gone.add(arm);
  }
  if (gone.size) out.push(`Arm(s) without rows in this run: ${[...gone].join(", ")}.`);
  return out;
}

async function readIfThere(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return undefined;
  }
}

/**
 * Write `<dir>/findings.json` (the list) and `<dir>/findings.md` (rendered from it), with
 * the link to the analysis plan and the run's deviations from it. `metrics`: the run's
 * metrics.json (parsed); default: `<dir>/metrics.json` when it is there (the runs write it
 * first).
 *
 * @returns The markdown.
 */
export async function writeFindings(
  dir: string,
  title: string,
  findings: readonly Finding[],
  notes: readonly string[],
  ablationNote = "",
  metrics?: unknown,
): Promise<string> {
  const list = jsonSafe(findings) as Finding[];
  const m = metrics ?? JSON.parse((await readIfThere(`${dir}/metrics.json`)) ?? "null");
  const root = repoRoot();
  const planText = root ? await readIfThere(`${root}/${PLAN_PATH}`) : undefined;
  const md = renderFindingsMarkdown(title, list, notes, ablationNote, {
    plan: planLink(dir),
    ...(m ? { deviations: planDeviations(m, list, planText) } : {}),
  });
  await writeJsonAtomic(`${dir}/findings.json`, list);
  await writeFileAtomic(`${dir}/findings.md`, md);
  return md;
}
