/**
 * The figures of each experiment, built from what its `metrics.json` records (so
 * `deno task plots` redraws every committed plot from the committed results, and the
 * experiments draw theirs with the same code):
 *
 * - S-DPO: training curves (mean of the seeds with a 95 % band, colour = method) and the
 *   ablations (K, β, negative sampler) with a 95 % interval over the test prompts on every point
 *   and the SFT, chance and oracle lines;
 * - DMPO ablations: paired AUC vs K, vs train prompts, in / cross domain;
 * - DPO4Rec: recommender HR@1 per method, reward of best / worst of N.
 *
 * (The benchmark's plot is drawn by `bench/plot.ts`.)
 *
 * @module
 */
import {
  barChart,
  clusterMeanCI,
  colorScale,
  FULL_LABELS,
  lineChart,
  meanCI,
  type RefLine,
  type VegaLiteSpec,
  wilsonCI,
  writePlot,
} from "./plot.ts";

/** name (file stem) → spec. */
export type Figures = Record<string, VegaLiteSpec>;

/** Write every figure as `<dir>/<name>.svg` + `.vl.json`. */
export async function writeFigures(dir: string, figs: Figures): Promise<string[]> {
  const out: string[] = [];
  for (const [name, spec] of Object.entries(figs)) {
    await writePlot(`${dir}/${name}.svg`, spec);
    out.push(`${dir}/${name}.svg`);
  }
  return out;
}

const f2 = (x: number) => x.toFixed(2);
const f3 = (x: number) => x.toFixed(3);

/** A proportion's row with its Wilson 95 % interval over `n` test rows. */
function withCI(p: number, n: number) {
  const ci = wilsonCI(p, n);
  return { lo: ci.lo, hi: ci.hi };
}

/** Mean of 0/1 (or real) rows with a normal 95 % interval over the rows. */
function rowsCI(rows: readonly number[]): { mean: number; lo: number; hi: number } {
  const n = rows.length;
  const mean = rows.reduce((a, b) => a + b, 0) / n;
  const sd = Math.sqrt(rows.reduce((a, x) => a + (x - mean) ** 2, 0) / Math.max(1, n - 1));
  const h = 1.96 * sd / Math.sqrt(n);
  return { mean, lo: mean - h, hi: mean + h };
}

// ---------------------------------------------------------------------------------------------
// S-DPO

/** Human names of the TRL log keys the preference curves record. */
export const TRL_NAMES: Record<string, string> = {
  "logps/chosen": "log-prob of the chosen item (logps/chosen)",
  "logps/rejected": "log-prob of the rejected items (logps/rejected)",
  "rewards/chosen": "reward of the chosen item (rewards/chosen)",
  "rewards/rejected": "reward of the rejected items (rewards/rejected)",
  "rewards/margins": "reward margin (rewards/margins)",
  "rewards/accuracies": "reward accuracy (rewards/accuracies)",
  loss: "loss",
};

/** What the S-DPO figures read of an S-DPO result (metrics.json `result`). */
export interface SdpoFigureInput {
  seeds?: number[];
  num_test?: number;
  references?: Record<string, { hr1_rank?: number }>;
  per_seed?: { seed: number; methods: Record<string, { hr1_rank?: number | null }> }[];
  curves: { method: string; seed: number; step: number; metric: string; value: number }[];
  ablations?: {
    seed: number;
    k_sweep: { k: number; row: { hr1_rank: number; rank_hits?: number[] } }[];
    sampler_k_sweep?: {
      sampler: string;
      k: number;
      row: { hr1_rank: number; rank_hits?: number[] };
    }[];
    beta_sweep: { beta: number; row: { hr1_rank: number; rank_hits?: number[] } }[];
    samplers: {
      sampler: string;
      method: string;
      row: { hr1_rank: number; rank_hits?: number[] };
    }[];
    neg_weights: { ref_rank: number; weight: number; uniform: number }[];
  };
}

/** SFT (of the given seed), chance and oracle HR@1 lines. */
function sdpoRefs(r: SdpoFigureInput, seed?: number): RefLine[] {
  const refs: RefLine[] = [];
  const ps = r.per_seed?.find((s) => seed === undefined || s.seed === seed);
  const sft = ps?.methods.SFT?.hr1_rank;
  if (typeof sft === "number") refs.push({ label: `SFT ${f3(sft)}`, value: sft });
  const chance = r.references?.Random?.hr1_rank;
  if (typeof chance === "number") refs.push({ label: `chance ${f2(chance)}`, value: chance });
  const oracle = r.references?.Oracle?.hr1_rank;
  if (typeof oracle === "number") refs.push({ label: `oracle ${f3(oracle)}`, value: oracle });
  return refs;
}

/** HR@1 of an ablation row with its 95 % interval over the test prompts. */
function hrRow(row: { hr1_rank: number; rank_hits?: number[] }, nTest: number | undefined) {
  const n = row.rank_hits?.length ?? nTest ?? 0;
  return { hr1: row.hr1_rank, ...(n > 0 ? withCI(row.hr1_rank, n) : { lo: NaN, hi: NaN }), n };
}

/** The S-DPO figures: `curves`, and with ablations `k_sweep`, `beta_sweep`, … */
export function sdpoFigures(r: SdpoFigureInput, opts: { dataset?: string } = {}): Figures {
  const figs: Figures = {};
  const where = opts.dataset ? ` (${opts.dataset})` : "";
  if (r.curves.length) {
    const seeds = [...new Set(r.curves.map((c) => c.seed))];
    const metricOrder = ["logps/chosen", "logps/rejected", "rewards/chosen", "rewards/rejected"];
    const rows = r.curves
      .slice()
      .sort((a, b) => metricOrder.indexOf(a.metric) - metricOrder.indexOf(b.metric))
      .map((c) => ({ ...c, panel: TRL_NAMES[c.metric] ?? c.metric }));
    figs.curves = lineChart(rows, {
      title: `Preference training${where}: DPO vs S-DPO, ` +
        (seeds.length > 1
          ? `mean of ${seeds.length} seeds with a 95 % band over seeds`
          : `seed ${seeds[0]} only (one seed: no interval)`),
      x: "step",
      y: "value",
      color: "method",
      column: "panel",
      seed: "seed",
      xTitle: "training step",
      yTitle: "value (as TRL logs it)",
      colorTitle: "method",
      columnTitle: "quantity logged during training",
      width: 190,
      height: 160,
    });
  }
  const a = r.ablations;
  if (!a) return figs;
  const refs = sdpoRefs(r, a.seed);
  const n = r.num_test;
  const nNote = `95 % interval over the ${a.k_sweep[0]?.row.rank_hits?.length ?? n} test prompts`;
  figs.k_sweep = lineChart(a.k_sweep.map((x) => ({ K: x.k, ...hrRow(x.row, n) })), {
    title: `S-DPO: HR@1 vs number of negatives K (β = 1, seed ${a.seed}; ${nNote})`,
    x: "K",
    y: "hr1",
    yLow: "lo",
    yHigh: "hi",
    integerX: true,
    xTitle: "K (negatives per prompt; K = 1 is DPO)",
    yTitle: "HR@1 (ranking, 20 candidates)",
    refs,
  });
  const sk = a.sampler_k_sweep ?? [];
  if (sk.length) {
    figs.sampler_k_sweep = lineChart(
      sk.map((x) => ({ K: x.k, sampler: x.sampler, ...hrRow(x.row, n) })),
      {
        title: `S-DPO: HR@1 vs K per negative sampler (β = 1, seed ${a.seed}; ${nNote})`,
        x: "K",
        y: "hr1",
        yLow: "lo",
        yHigh: "hi",
        color: "sampler",
        column: "sampler",
        colorByMethod: false,
        independentY: false,
        integerX: true,
        xTitle: "K (negatives per prompt)",
        yTitle: "HR@1 (ranking, 20 candidates)",
        colorTitle: "negative sampler",
        columnTitle: "negative sampler",
        refs,
        width: 170,
        height: 180,
      },
    );
  }
  figs.beta_sweep = lineChart(a.beta_sweep.map((x) => ({ beta: x.beta, ...hrRow(x.row, n) })), {
    title: `S-DPO: HR@1 vs β (K = 3, seed ${a.seed}; ${nNote})`,
    x: "beta",
    y: "hr1",
    yLow: "lo",
    yHigh: "hi",
    xLog: true,
    xTitle: "β (log scale)",
    yTitle: "HR@1 (ranking, 20 candidates)",
    refs,
  });
  figs.samplers = barChart(
    a.samplers.map((x) => ({
      arm: `${x.method}, ${x.sampler} negatives`,
      method: x.method,
      ...hrRow(x.row, n),
    })),
    {
      title: `DPO and S-DPO per negative sampler (seed ${a.seed}; ${nNote})`,
      x: "arm",
      y: "hr1",
      yLow: "lo",
      yHigh: "hi",
      color: "method",
      colorTitle: "method",
      yTitle: "HR@1 (ranking, 20 candidates)",
      horizontal: true,
      refs,
      width: 380,
    },
  );
  const uniform = a.neg_weights[0]?.uniform;
  figs.negative_weights = lineChart(
    a.neg_weights.map((w) => ({ ref_rank: w.ref_rank, weight: w.weight, method: "S-DPO" })),
    {
      title: "S-DPO's softmax weight on a negative vs its rank under the reference (mean over " +
        "test prompts)",
      x: "ref_rank",
      y: "weight",
      color: "method",
      colorTitle: "method",
      integerX: true,
      xTitle: "rank of the negative under the reference model (1 = most likely)",
      yTitle: "mean softmax weight",
      refs: uniform === undefined
        ? undefined
        : [{ label: `uniform 1/${Math.round(1 / uniform)}`, value: uniform }],
      width: 420,
    },
  );
  return figs;
}

/** What the HR@1-versus-step figure reads of an S-DPO result (metrics.json `result`). */
export interface SdpoHr1CurveInput {
  scale?: { sdpoKs?: number[] };
  num_valid?: number;
  /** The test user of each test row (rows of one user are one sampled unit). */
  row_users?: (string | number)[];
  per_seed?: { seed: number; methods: Record<string, { rank_expected?: number[] }> }[];
  /** Sampled ranking HR@1 per method, seed, step and split (step 0 = the SFT model). */
  hr1_curves?: { method: string; seed: number; step: number; split: string; hr1: number }[];
  /** Per-row test hits of the first test prompts at every evaluation (no step 0). */
  curve_hits?: {
    method: string;
    seed: number;
    step: number;
    rank_hits: number[];
    rank_expected: number[];
  }[];
}

/** The rows of {@link sdpoHr1CurveFigures}: one per arm, panel and step, and the SFT lines. */
export interface Hr1CurveRow {
  panel: string;
  kind: "arm" | "ref";
  method: string;
  step: number;
  hr1: number;
  lo: number;
  hi: number;
  label: string;
}

/** The SFT model's row of a curve panel: a labelled reference line at its mean HR@1. */
function sftReference(panel: string, m: number): Hr1CurveRow {
  return {
    panel,
    kind: "ref",
    method: "SFT",
    step: 0,
    hr1: m,
    lo: m,
    hi: m,
    label: `SFT ${f3(m)}`,
  };
}

/**
 * Data of the HR@1-versus-step figure. Test panel (from `curve_hits`): expected HR@1, each test
 * row averaged over the seeds first, then a 95 % interval over the test users (a user's rows
 * together). A split without per-row hits (validation): the sampled HR@1 of `hr1_curves`,
 * averaged over seeds, with a Wilson 95 % interval over its prompts. The SFT model (step 0) of
 * each panel is a reference row.
 */
export function sdpoHr1CurveRows(r: SdpoHr1CurveInput): {
  rows: Hr1CurveRow[];
  seeds: number;
  panels: string[];
  notes: string[];
} {
  const k = r.scale?.sdpoKs?.[0] ?? 3;
  const name = (m: string) => (m === "S-DPO" ? `S-DPO (K=${k})` : m);
  const curves = r.hr1_curves ?? [];
  const hits = r.curve_hits ?? [];
  const seeds = new Set([...curves.map((c) => c.seed), ...hits.map((h) => h.seed)]).size;
  const rows: Hr1CurveRow[] = [];
  const panels: string[] = [];
  const notes: string[] = [];
  const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const splits = [...new Set(curves.map((c) => c.split))].sort((a, b) =>
    (a === "valid" ? 0 : 1) - (b === "valid" ? 0 : 1)
  );
  if (hits.length && !splits.includes("test")) splits.push("test");
  for (const split of splits) {
    const where = split === "valid"
      ? "Validation prompts"
      : split === "test"
      ? "Test prompts"
      : split;
    if (split === "test" && hits.length) {
      const n = hits[0].rank_expected.length;
      const users = r.row_users?.length && r.row_users.length >= n
        ? r.row_users.slice(0, n)
        : Array.from({ length: n }, (_, i) => i);
      const nUsers = new Set(users).size;
      const panel = `${where}: expected HR@1 (first ${n} test prompts)`;
      panels.push(panel);
      notes.push(`test: 95 % interval over ${nUsers} test ${r.row_users ? "users" : "prompts"}`);
      const seedAvg = (lists: readonly number[][]) =>
        Array.from({ length: n }, (_, i) => mean(lists.map((l) => l[i])));
      const groups = new Map<string, { method: string; step: number; lists: number[][] }>();
      for (const h of hits) {
        if (h.rank_expected.length !== n) {
          throw new Error(
            `curve_hits ${h.method} seed ${h.seed} step ${h.step}: ${h.rank_expected.length} ` +
              `rows, expected ${n}`,
          );
        }
        const key = `${h.method}|${h.step}`;
        const g = groups.get(key) ?? { method: h.method, step: h.step, lists: [] };
        g.lists.push(h.rank_expected);
        groups.set(key, g);
      }
      for (const g of groups.values()) {
        const ci = clusterMeanCI(seedAvg(g.lists), users);
        rows.push({
          panel,
          kind: "arm",
          method: name(g.method),
          step: g.step,
          hr1: ci.mean,
          lo: ci.lo,
          hi: ci.hi,
          label: "",
        });
      }
      const sft = (r.per_seed ?? []).map((s) => s.methods.SFT?.rank_expected)
        .filter((x): x is number[] => !!x && x.length >= n).map((x) => x.slice(0, n));
      if (sft.length) rows.push(sftReference(panel, mean(seedAvg(sft))));
      continue;
    }
    const pts = curves.filter((c) => c.split === split);
    const nPrompts = split === "valid" ? r.num_valid : undefined;
    const panel = `${where}: sampled HR@1` + (nPrompts ? ` (${nPrompts} prompts)` : "");
    panels.push(panel);
    if (nPrompts) {
      notes.push(
        `${
          split === "valid" ? "validation" : split
        }: Wilson 95 % interval over ${nPrompts} prompts`,
      );
    }
    const groups = new Map<string, { method: string; step: number; xs: number[] }>();
    const sft = new Map<number, number>();
    for (const p of pts) {
      if (p.step === 0) {
        sft.set(p.seed, p.hr1);
        continue;
      }
      const key = `${p.method}|${p.step}`;
      const g = groups.get(key) ?? { method: p.method, step: p.step, xs: [] };
      g.xs.push(p.hr1);
      groups.set(key, g);
    }
    for (const g of groups.values()) {
      const m = mean(g.xs);
      // Without a prompt count there is no interval to draw (lo = hi = mean).
      const ci = nPrompts ? wilsonCI(m, nPrompts) : { lo: m, hi: m };
      rows.push({
        panel,
        kind: "arm",
        method: name(g.method),
        step: g.step,
        hr1: m,
        lo: ci.lo,
        hi: ci.hi,
        label: "",
      });
    }
    if (sft.size) rows.push(sftReference(panel, mean([...sft.values()])));
  }
  return { rows, seeds, panels, notes };
}

/** Methods in the order a reader meets them (then any others as they appear). */
const CURVE_ORDER = [/^SFT-cont/, /^DPO/, /^S-DPO \(K=/, /^S-DPO/];

/** The curve figures' methods in {@link CURVE_ORDER}, each once. */
function curveArms(methods: readonly string[]): string[] {
  const rank = (m: string) => {
    const i = CURVE_ORDER.findIndex((re) => re.test(m));
    return i < 0 ? CURVE_ORDER.length : i;
  };
  return [...new Set(methods)].sort((a, b) => rank(a) - rank(b));
}

/** A training-step x axis from 0 to the last step, ticks at the steps evaluated. */
function stepAxis(steps: readonly number[], title: string, axis: Record<string, unknown> = {}) {
  const ticks = [...new Set(steps)].sort((a, b) => a - b);
  return {
    field: "step",
    type: "quantitative",
    title,
    scale: { domain: [0, ticks.at(-1) ?? 1], nice: false },
    axis: { values: ticks, format: "d", grid: true, ...axis },
  };
}

/** Colour = method, in the given order, with its legend titled `title`. */
function methodColor(arms: string[], title: string) {
  return { field: "method", type: "nominal", title, scale: colorScale(arms), sort: arms };
}

/** Labels uncut, and a legend of line strokes (the curve figures' lines have no symbol). */
const CURVE_CONFIG = {
  ...FULL_LABELS,
  legend: { ...FULL_LABELS.legend, symbolType: "stroke", symbolOpacity: 1, symbolStrokeWidth: 3 },
};

/**
 * `hr1_curves`: HR@1 versus training step of the main arms, one panel per split (validation,
 * test), colour = method with its legend, a 95 % band, the SFT model as a dashed labelled line
 * and integer step ticks. Empty when the run recorded no curves.
 */
export function sdpoHr1CurveFigures(r: SdpoHr1CurveInput): Figures {
  if (!r.hr1_curves?.length && !r.curve_hits?.length) return {};
  const { rows, seeds, panels, notes } = sdpoHr1CurveRows(r);
  const arms = curveArms(rows.filter((x) => x.kind === "arm").map((x) => x.method));
  const x = stepAxis(rows.map((r) => r.step), "training step (0 = the SFT model)");
  const yTitle = "HR@1 (ranking, 20 candidates)";
  const color = methodColor(arms, "method");
  const isArm = { filter: "datum.kind === 'arm'" };
  const isRef = { filter: "datum.kind === 'ref'" };
  return {
    hr1_curves: {
      title: {
        text: "S-DPO: HR@1 versus training step, per method",
        subtitle: [
          `mean over ${seeds} seed${seeds === 1 ? "" : "s"}; band: ${notes.join("; ")}`,
          "dashed line: the SFT model every arm starts from (step 0)",
        ],
      },
      config: CURVE_CONFIG,
      data: { values: rows },
      facet: {
        column: {
          field: "panel",
          type: "nominal",
          title: null,
          sort: panels,
          header: { labelFontSize: 11, labelFontWeight: "bold" },
        },
      },
      spec: {
        width: 340,
        height: 240,
        layer: [
          {
            transform: [isArm],
            mark: { type: "area", opacity: 0.13 },
            encoding: {
              x,
              y: { field: "lo", type: "quantitative", title: yTitle, scale: { zero: false } },
              y2: { field: "hi" },
              color,
            },
          },
          {
            transform: [isArm],
            mark: { type: "line", point: true },
            encoding: {
              x,
              y: { field: "hr1", type: "quantitative", title: yTitle, scale: { zero: false } },
              color,
            },
          },
          {
            transform: [isRef],
            mark: { type: "rule", strokeDash: [6, 4], color: "#444", strokeWidth: 1.2 },
            encoding: { y: { field: "hr1", type: "quantitative" } },
          },
          {
            transform: [isRef],
            mark: {
              type: "text",
              align: "left",
              baseline: "bottom",
              dx: 3,
              dy: -3,
              fontSize: 10,
              color: "#333",
            },
            encoding: {
              x: { value: 0 },
              y: { field: "hr1", type: "quantitative" },
              text: { field: "label" },
            },
          },
        ],
      },
    },
  };
}

/** What the validation-loss figure reads: the validation points of `hr1_curves`. */
export interface SdpoLossPartsInput {
  /** DPO's curve per learning rate of the selection (seed 0). */
  lr_selection?: {
    lr: number;
    curve?: {
      step: number;
      hr1: number;
      loss?: number | null;
      diagnostics?: Required<SdpoLossPartsInput>["hr1_curves"][number]["diagnostics"];
    }[];
  }[];
  hr1_curves?: {
    method: string;
    seed: number;
    step: number;
    split: string;
    hr1: number;
    loss?: number | null;
    diagnostics?: {
      train_loss: number;
      loss_misranked: number;
      accuracies: number;
      chosen: number;
    };
  }[];
}

/** The panels of {@link sdpoLossPartsFigures}, in order, with what each plots. */
export const LOSS_PART_PANELS: readonly {
  panel: string;
  value: (p: Required<SdpoLossPartsInput>["hr1_curves"][number]) => number;
}[] = [
  { panel: "validation loss (what the released rule minimises)", value: (p) => p.loss! },
  {
    panel: "its part from misranked validation prompts",
    value: (p) => p.diagnostics!.loss_misranked,
  },
  { panel: "the same loss on the arm's train prompts", value: (p) => p.diagnostics!.train_loss },
  { panel: "validation HR@1 (sampled)", value: (p) => p.hr1 },
  {
    panel: "validation pair accuracy (chosen reward > rejected)",
    value: (p) => p.diagnostics!.accuracies,
  },
  { panel: "chosen reward β(π − ref) on validation", value: (p) => p.diagnostics!.chosen },
];

/**
 * `val_loss_parts`: what the validation loss that picks the released checkpoint is made of,
 * per preference arm and evaluation step: the loss, the part carried by prompts the model
 * misranks, the same loss on the arm's own train prompts, validation HR@1, TRL's reward
 * accuracy and the chosen reward. Mean over the seeds whose evaluations recorded diagnostics,
 * with a 95 % t band over those seeds. Empty when no evaluation did.
 */
export function sdpoLossPartsFigures(r: SdpoLossPartsInput): Figures {
  const figs: Figures = {};
  const pts = (r.hr1_curves ?? []).filter((p) =>
    p.split === "valid" && p.step > 0 && p.diagnostics && typeof p.loss === "number"
  );
  if (pts.length) {
    const seeds = [...new Set(pts.map((p) => p.seed))].sort((a, b) => a - b);
    figs.val_loss_parts = lossPartsSpec(
      pts,
      "S-DPO: what the validation loss that picks the checkpoint is made of",
      `mean over seed${seeds.length === 1 ? "" : "s"} ${seeds.join(", ")} (the evaluations ` +
        "that recorded these parts); band: 95 % t interval over those seeds",
      "method",
    );
  }
  const sel = (r.lr_selection ?? []).flatMap((x) =>
    (x.curve ?? []).filter((p) => p.diagnostics && typeof p.loss === "number")
      .map((p) => ({ ...p, method: `lr ${x.lr}`, seed: 0, split: "valid" }))
  );
  if (new Set(sel.map((p) => p.method)).size > 1) {
    figs.lr_selection_parts = lossPartsSpec(
      sel,
      "S-DPO: DPO's validation loss and HR@1 at each learning rate of the selection",
      "DPO, first seed, one run per learning rate (no band: one run each)",
      "DPO learning rate",
    );
  }
  return figs;
}

/** One loss-parts figure: a panel per {@link LOSS_PART_PANELS}, a line per `method`. */
function lossPartsSpec(
  pts: Required<SdpoLossPartsInput>["hr1_curves"],
  title: string,
  subtitle: string,
  colorTitle: string,
): VegaLiteSpec {
  const rows: { panel: string; method: string; step: number; y: number; lo: number; hi: number }[] =
    [];
  const groups = new Map<string, typeof pts>();
  for (const p of pts) {
    const key = `${p.method}|${p.step}`;
    groups.set(key, [...(groups.get(key) ?? []), p]);
  }
  for (const g of groups.values()) {
    for (const { panel, value } of LOSS_PART_PANELS) {
      const ci = meanCI(g.map(value));
      rows.push({
        panel,
        method: g[0].method,
        step: g[0].step,
        y: ci.mean,
        lo: g.length > 1 ? ci.lo : ci.mean,
        hi: g.length > 1 ? ci.hi : ci.mean,
      });
    }
  }
  const arms = curveArms(rows.map((x) => x.method));
  const x = stepAxis(rows.map((r) => r.step), "training step", { labelAngle: -45 });
  const color = methodColor(arms, colorTitle);
  return {
    title: {
      text: title,
      subtitle: [
        subtitle,
        "losses: softplus(logsumexp of β(reward of a negative − reward of the positive)), β = 1",
      ],
    },
    config: CURVE_CONFIG,
    data: { values: rows },
    facet: {
      field: "panel",
      type: "nominal",
      title: null,
      sort: LOSS_PART_PANELS.map((p) => p.panel),
      header: { labelFontSize: 11, labelFontWeight: "bold" },
    },
    columns: 3,
    resolve: { scale: { y: "independent" } },
    spec: {
      width: 260,
      height: 180,
      layer: [
        {
          mark: { type: "area", opacity: 0.13 },
          encoding: {
            x,
            y: {
              field: "lo",
              type: "quantitative",
              title: "the quantity named above the panel",
              scale: { zero: false },
            },
            y2: { field: "hi" },
            color,
          },
        },
        {
          mark: { type: "line", point: true },
          encoding: {
            x,
            y: {
              field: "y",
              type: "quantitative",
              title: "the quantity named above the panel",
              scale: { zero: false },
            },
            color,
          },
        },
      ],
    },
  };
}

// ---------------------------------------------------------------------------------------------
// DMPO ablations

/** What the DMPO ablation figures read (metrics.json `result.ablations`). */
export interface DmpoAblationFigureInput {
  seed: number;
  num_test: number;
  methods?: Record<string, { auc_paired?: number; pair_correct?: number[] }>;
  k_sweep: { sampler: string; k: number; method: string; auc_paired: number }[];
  /** The popularity negatives at equal optimiser steps (K-sweep control), when run. */
  k_equal_steps?: { sampler: string; k: number; method: string; auc_paired: number }[];
  few_shot: { n: number; arm: string; method: string; auc_paired: number }[];
  cross_domain: { model: string; domain: string; method: string; auc_paired: number }[];
}

/** The DMPO ablation figures: `dmpo_negatives`, `dmpo_few_shot`, `dmpo_cross_domain`. */
export function dmpoAblationFigures(
  a: DmpoAblationFigureInput,
  references?: Record<string, Record<string, number>>,
): Figures {
  const n = (method: string) => a.methods?.[method]?.pair_correct?.length ?? a.num_test;
  const auc = (method: string, p: number) => ({ auc: p, ...withCI(p, n(method)) });
  const sft = a.methods?.SFT?.auc_paired ??
    a.cross_domain.find((x) => x.model === "SFT" && x.domain === a.cross_domain[0]?.domain)
      ?.auc_paired;
  const refs: RefLine[] = [];
  if (sft !== undefined) refs.push({ label: `SFT ${f3(sft)}`, value: sft });
  refs.push({ label: "chance 0.50", value: 0.5 });
  const oracle = references?.Oracle?.auc_paired;
  if (oracle !== undefined) refs.push({ label: `oracle ${f3(oracle)}`, value: oracle });
  const nNote = `95 % interval over the ${a.num_test} test pairs`;
  const figs: Figures = {};
  figs.dmpo_negatives = lineChart(
    [
      ...a.k_sweep.map((r) => ({ K: r.k, sampler: r.sampler, ...auc(r.method, r.auc_paired) })),
      ...(a.k_equal_steps ?? []).map((r) => ({
        K: r.k,
        sampler: `${r.sampler} (equal steps)`,
        ...auc(r.method, r.auc_paired),
      })),
    ],
    {
      title: `DMPO: paired AUC vs negatives K, per negative sampler (seed ${a.seed}; ${nNote})`,
      x: "K",
      y: "auc",
      yLow: "lo",
      yHigh: "hi",
      color: "sampler",
      column: "sampler",
      colorByMethod: false,
      independentY: false,
      integerX: true,
      xTitle: "K (negatives per prompt)",
      yTitle: "paired AUC",
      colorTitle: "negative sampler",
      columnTitle: "negative sampler",
      refs,
      width: 160,
      height: 200,
    },
  );
  const armName: Record<string, string> = {
    SFT: "SFT",
    "SFT+DMPO": "SFT+DMPO",
    "DMPO-only": "DMPO-only (no SFT)",
  };
  figs.dmpo_few_shot = lineChart(
    a.few_shot.map((r) => ({
      n: r.n,
      arm: armName[r.arm] ?? r.arm,
      ...auc(r.method, r.auc_paired),
    })),
    {
      title: `DMPO: paired AUC vs number of train prompts (seed ${a.seed}; ${nNote})`,
      x: "n",
      y: "auc",
      yLow: "lo",
      yHigh: "hi",
      color: "arm",
      xLog: true,
      integerX: true,
      xTitle: "N (train prompts, log scale)",
      yTitle: "paired AUC",
      colorTitle: "method",
      refs: refs.filter((r) => !r.label.startsWith("SFT")),
    },
  );
  const domains = [...new Set(a.cross_domain.map((r) => r.domain))];
  figs.dmpo_cross_domain = barChart(
    a.cross_domain.map((r) => ({
      label: `${r.model}, tested on ${r.domain}` +
        (r.domain === domains[0] ? " (trained there)" : " (other domain)"),
      model: r.model,
      ...auc(r.method, r.auc_paired),
    })),
    {
      title: `DMPO: in-domain vs cross-domain (trained on ${domains[0]}; seed ${a.seed}; ${nNote})`,
      x: "label",
      y: "auc",
      yLow: "lo",
      yHigh: "hi",
      color: "model",
      colorTitle: "model",
      yTitle: "paired AUC",
      horizontal: true,
      refs: refs.filter((r) => !r.label.startsWith("SFT")),
      width: 380,
    },
  );
  return figs;
}

// ---------------------------------------------------------------------------------------------
// DPO4Rec

/** What the DPO4Rec figures read (metrics.json `result`). */
export interface Dpo4recFigureInput {
  seeds: number[];
  methods: string[];
  references?: Record<string, { hr1?: number }>;
  per_seed: {
    seed: number;
    methods: Record<string, { hr1: number; rank_hits: number[] }>;
    sampling: { n: number; best_reward: number; worst_reward: number; single_reward: number }[];
  }[];
}

/** The DPO4Rec figures: `hr1` and `reward_vs_n`. */
export function dpo4recFigures(r: Dpo4recFigureInput): Figures {
  const S = r.per_seed.length;
  // HR@1 per method: each test row averaged over the seeds (rows of one test prompt are one
  // unit), then a 95 % interval over the test rows.
  const bars = r.methods.map((m) => {
    const rows = r.per_seed[0].methods[m].rank_hits.map((_, i) =>
      r.per_seed.reduce((a, s) => a + s.methods[m].rank_hits[i], 0) / S
    );
    const ci = rowsCI(rows);
    return { method: m, hr1: ci.mean, lo: ci.lo, hi: ci.hi };
  });
  const refs: RefLine[] = [];
  const chance = r.references?.Random?.hr1;
  if (chance !== undefined) refs.push({ label: `chance ${f2(chance)}`, value: chance });
  const oracle = r.references?.Oracle?.hr1;
  if (oracle !== undefined) refs.push({ label: `oracle ${f3(oracle)}`, value: oracle });
  const nRows = r.per_seed[0]?.methods[r.methods[0]]?.rank_hits.length ?? 0;
  const figs: Figures = {};
  figs.hr1 = barChart(bars, {
    title: `SASRec HR@1 with each method's preference features (${S} seed(s); 95 % interval ` +
      `over the ${nRows} test rows)`,
    x: "method",
    y: "hr1",
    yLow: "lo",
    yHigh: "hi",
    yTitle: "HR@1 (20 candidates)",
    horizontal: true,
    refs,
    width: 420,
  });
  // Best / worst of N relative to a single sample of the same seed and N: the seeds differ by
  // an offset (their SFT LMs), the contrast is what the reward model selects.
  const lines = r.per_seed.flatMap((s) =>
    s.sampling.flatMap((x) => [
      { N: x.n, gain: x.best_reward - x.single_reward, pick: "best of N", seed: s.seed },
      { N: x.n, gain: x.worst_reward - x.single_reward, pick: "worst of N", seed: s.seed },
    ])
  );
  const ns = [...new Set(lines.map((l) => l.N))];
  const mean = (pick: string, n: number) =>
    meanCI(lines.filter((l) => l.pick === pick && l.N === n).map((l) => l.gain)).mean;
  figs.reward_vs_n = lineChart(lines, {
    title: `Reward-model pick vs a single sample, by N (SFT LM, τ = 1; mean of ${S} seed(s)` +
      (S > 1 ? ", 95 % band over seeds)" : ")"),
    x: "N",
    y: "gain",
    color: "pick",
    seed: "seed",
    points: true,
    colorByMethod: false,
    integerX: true,
    xTitle: "N (sampled summaries per prompt)",
    yTitle: "reward − reward of a single sample",
    colorTitle: "summary picked",
    refs: [{
      label: `single sample (best of N at N = ${ns.at(-1)}: +${f3(mean("best of N", ns.at(-1)!))})`,
      value: 0,
    }],
  });
  return figs;
}
