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
 * `dmpo.sft_dmpo_gt_dmpo_only.auc`, `dpo4rec.rm_gt_random.genre_precision`).
 *
 * @module
 */
import { clusteredBootstrapCI, type ConfidenceInterval } from "../eval/metrics.ts";
import { writeFileAtomic, writeJsonAtomic } from "../io.ts";

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
}

/** Id of the β claim, evaluated from the β sweep by {@link betaInteriorOptimum}. */
export const BETA_CLAIM_ID = "sdpo.beta_interior_optimum.hr1";

/** The claims checked (S-DPO and DMPO main arms, S-DPO ablations). */
export const CLAIMS: ClaimSpec[] = [
  {
    id: "sdpo.sdpo_gt_dpo.hr1",
    paper: "sdpo",
    text: "S-DPO > DPO on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "S-DPO",
    b: "DPO",
  },
  {
    id: "sdpo.dpo_gt_sft.hr1",
    paper: "sdpo",
    text: "DPO > SFT on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "DPO",
    b: "SFT",
  },
  {
    id: "sdpo.sdpo_gt_sft.hr1",
    paper: "sdpo",
    text: "S-DPO > SFT on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "S-DPO",
    b: "SFT",
  },
  {
    id: "sdpo.sdpo_gt_sft_cont.hr1",
    paper: "sdpo",
    text: "S-DPO > SFT-cont (same extra steps of SFT) on HR@1 (ranking)",
    metric: "rank_hits",
    metricLabel: "ranking HR@1",
    a: "S-DPO",
    b: "SFT-cont",
  },
  // The same four comparisons on the expected hit (synthetic world only): per test prompt,
  // the true probability under the world's law that the model's top-1 is the next item.
  ...([
    ["sdpo_gt_dpo", "S-DPO", "DPO", ""],
    ["dpo_gt_sft", "DPO", "SFT", ""],
    ["sdpo_gt_sft", "S-DPO", "SFT", ""],
    ["sdpo_gt_sft_cont", "S-DPO", "SFT-cont", " (same extra steps of SFT)"],
  ] as const).map(([claim, a, b, extra]): ClaimSpec => ({
    id: `sdpo.${claim}.exp_hr1`,
    paper: "sdpo",
    text: `${a} > ${b}${extra} on expected HR@1 (ranking; the world's true probability that ` +
      "the top-1 is the next item)",
    metric: "rank_expected",
    metricLabel: "expected ranking HR@1",
    a,
    b,
  })),
  {
    id: "sdpo.sdpo_keeps_chosen_logp.logp",
    paper: "sdpo",
    text: "S-DPO keeps the chosen likelihood above DPO's (log-prob of the test positive)",
    metric: "pos_logp",
    metricLabel: "summed log-prob of the positive title",
    a: "S-DPO",
    b: "DPO",
  },
  {
    id: "sdpo.dpo_lowers_chosen_logp.logp",
    paper: "sdpo",
    text: "DPO lowers the chosen likelihood: SFT > DPO on the log-prob of the test positive",
    metric: "pos_logp",
    metricLabel: "summed log-prob of the positive title",
    a: "SFT",
    b: "DPO",
  },
  {
    id: "sdpo.sdpo_gt_dpo.gen_hr1",
    paper: "sdpo",
    text: "S-DPO > DPO on HR@1 (generation, invalid = miss)",
    metric: "gen_hits",
    metricLabel: "generation HR@1",
    a: "S-DPO",
    b: "DPO",
  },
  {
    id: "sdpo.sdpo_gt_sft.gen_hr1",
    paper: "sdpo",
    text: "S-DPO > SFT on HR@1 (generation, invalid = miss; the paper's Table 1 metric)",
    metric: "gen_hits",
    metricLabel: "generation HR@1",
    a: "S-DPO",
    b: "SFT",
  },
  {
    id: "sdpo.sdpo_gt_sft.valid_ratio",
    paper: "sdpo",
    text: "S-DPO > SFT on ValidRatio",
    metric: "gen_valid",
    metricLabel: "ValidRatio",
    a: "S-DPO",
    b: "SFT",
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

/** A verdict in findings.json: a tested claim's, or "not tested" (with a reason). */
export type FindingVerdict = Verdict | "not tested";

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
    const rows = m?.[metric];
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
    // The expected-value claims need the synthetic world's law: skipped without their rows.
    else if (!/^the run has no per-row "(rank|pair)_expected"/.test(r)) {
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
  scope: "headline" | "ablation";
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
  /** How a data-dependent comparison was chosen. */
  note?: string;
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
    verdict: c.verdict,
    ...(c.note ? { note: c.note } : {}),
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
    ours: null,
    baseline: null,
    ours_per_seed: [],
    baseline_per_seed: [],
    effect: null,
    ci95: null,
    se: null,
    mde: null,
    resampling: null,
    seeds,
    rows: 0,
    verdict: "not tested",
    reason,
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

/**
 * The S-DPO findings: headline claims on every seed, ablation claims on the ablation seed,
 * or "not tested" with `ablationsOff` as the reason when the ablations did not run.
 */
export function sdpoFindings(
  r: SdpoFindingsInput,
  ablationsOff = "the S-DPO ablations did not run (off by default at scale small; " +
    "`--ablations` runs them)",
): Finding[] {
  const head = claimFindings(
    "sdpo",
    { paper: "sdpo", per_seed: r.per_seed, ...designFields(r) },
    r.seeds,
  );
  const abl = r.ablations;
  const specs = CLAIMS.filter((c) => c.paper === "sdpo-abl");
  return [
    ...head,
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
  return findings.filter((f) => f.scope === scope && f.verdict !== "not tested").map((f) => ({
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
    mde: f.mde,
    resampling: f.resampling?.description ?? null,
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
  "Verdict rule: CI above 0 → **reproduced**, CI entirely below 0 (a significant reversal) " +
  "→ **contradicted**, straddling 0 → **inconclusive**.",
  "MDE is the minimum detectable effect of this design: the true mean difference that a " +
  "two-sided 5 % test would detect with 80 % power, (z₀.₉₇₅ + z₀.₈) · SE ≈ 2.80 · SE, where " +
  "SE is the bootstrap standard error of mean(A − B) from the same resampling; an " +
  "inconclusive claim whose MDE is larger than the effect the paper reports was too small " +
  "a test to decide it, and a true effect well below the MDE would mostly go unseen.",
];

/** The MDE sentence of {@link STATISTICS_TEXT}. */
export const MDE_SENTENCE = STATISTICS_TEXT[2];

const TABLE_HEAD = [
  "| claim | A (per seed) | B (per seed) | mean A − B [95 % CI] | MDE | rows | resampled | " +
  "verdict | claim_id |",
  "|---|---|---|---|---|---|---|---|---|",
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
  return `| ${f.claim} | ${f.ours_method}: ${seeds(f.ours_per_seed)} | ${f.baseline_method}: ${
    seeds(f.baseline_per_seed)
  } | ${f3(f.effect ?? NaN)} [${f3(ci[0])}, ${f3(ci[1])}]${note} | ${
    f.mde === null ? "–" : f.mde.toFixed(3)
  } | ${f.rows} | ${resampledCell(f.resampling ?? null)} | **${f.verdict}** | \`${f.claim_id}\` |`;
}

/**
 * findings.md from the findings list (the only renderer): the tested headline claims, the
 * tested ablation claims (with `ablationNote`), the claims not tested in this run with the
 * reason, then `notes`.
 */
export function renderFindingsMarkdown(
  title: string,
  findings: readonly Finding[],
  notes: readonly string[],
  ablationNote = "",
): string {
  const tested = findings.filter((f) => f.verdict !== "not tested");
  const head = tested.filter((f) => f.scope === "headline");
  const abl = tested.filter((f) => f.scope === "ablation");
  const untested = findings.filter((f) => f.verdict === "not tested");
  const lines = [
    `# Findings: ${title}`,
    "",
    "Rendered from `findings.json` (written beside this file from the per-row numbers in " +
    "`metrics.json`) by `src/report/findings.ts`; no verdict is written by hand.",
    "",
    ...STATISTICS_TEXT.flatMap((t) => [t, ""]),
  ];
  if (head.length) lines.push(...TABLE_HEAD, ...head.map(findingRow));
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
      "| claim | claim_id | why not |",
      "|---|---|---|",
      ...untested.map((f) => `| ${f.claim} | \`${f.claim_id}\` | ${f.reason ?? "–"} |`),
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

/**
 * Write `<dir>/findings.json` (the list) and `<dir>/findings.md` (rendered from it).
 *
 * @returns The markdown.
 */
export async function writeFindings(
  dir: string,
  title: string,
  findings: readonly Finding[],
  notes: readonly string[],
  ablationNote = "",
): Promise<string> {
  const list = jsonSafe(findings) as Finding[];
  const md = renderFindingsMarkdown(title, list, notes, ablationNote);
  await writeJsonAtomic(`${dir}/findings.json`, list);
  await writeFileAtomic(`${dir}/findings.md`, md);
  return md;
}
